// The discovered set of a pool, from one answer to the next: joins, drains, returns, removals, and the TTL's bounds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressName, BackendSet, namesOf, nextLookupIn } from '../../src/discovery/backend-set';
import { srvWeights } from '../../src/discovery/dns-lookup';

void describe('discovered backend set', () => {
  void it('2 addresses, then 3, then 2 others: joins, then drains the vanished ones', () => {
    const set = new BackendSet();
    assert.deepEqual(set.apply(['10.0.0.1:9001', '10.0.0.2:9001'], 0), { joined: ['10.0.0.1:9001', '10.0.0.2:9001'], vanished: [], returned: [] });
    assert.deepEqual(set.apply(['10.0.0.1:9001', '10.0.0.2:9001', '10.0.0.3:9001'], 1000), { joined: ['10.0.0.3:9001'], vanished: [], returned: [] });
    const change = set.apply(['10.0.0.4:9001', '10.0.0.5:9001'], 2000);
    assert.deepEqual(change.joined, ['10.0.0.4:9001', '10.0.0.5:9001']);
    assert.deepEqual(change.vanished.sort(), ['10.0.0.1:9001', '10.0.0.2:9001', '10.0.0.3:9001']);
    assert.equal(set.live, 2);
    assert.equal(set.names().length, 5, 'the vanished stay, draining');
    assert.ok(set.isDraining('10.0.0.1:9001'));
    assert.ok(!set.isDraining('10.0.0.4:9001'));
  });

  void it('a draining backend back in the answer is ready again, not new', () => {
    const set = new BackendSet();
    set.apply(['a:1', 'b:1'], 0);
    set.apply(['a:1'], 100);
    assert.ok(set.isDraining('b:1'));
    assert.deepEqual(set.apply(['a:1', 'b:1'], 200), { joined: [], vanished: [], returned: ['b:1'] });
    assert.ok(!set.isDraining('b:1'));
    // The same answer again changes nothing.
    assert.deepEqual(set.apply(['a:1', 'b:1'], 300), { joined: [], vanished: [], returned: [] });
  });

  void it('a vanished backend is removed when its tunnels are gone (after the settle time) or at the drain deadline', () => {
    const set = new BackendSet();
    set.apply(['a:1', 'b:1', 'c:1'], 0);
    set.apply(['c:1'], 1000);
    const tunnels: Record<string, number> = { 'a:1': 0, 'b:1': 4 };
    const count = (name: string): number => tunnels[name] ?? 0;
    assert.deepEqual(set.removeDrained(1500, 10_000, 1000, count), [], 'not before the settle time, even with no tunnel');
    assert.deepEqual(set.removeDrained(2000, 10_000, 1000, count), [{ name: 'a:1', timedOut: false }]);
    assert.deepEqual(set.removeDrained(5000, 10_000, 1000, count), [], 'b still holds tunnels');
    assert.deepEqual(set.removeDrained(11_000, 10_000, 1000, count), [{ name: 'b:1', timedOut: true }]);
    assert.deepEqual(set.names(), ['c:1']);
  });

  void it('names: distinct, in order, at most maxBackends; IPv6 in brackets as in a URL', () => {
    const answer = { ttl: 5, addresses: [{ host: '10.0.0.9', port: 80 }, { host: '10.0.0.1', port: 80 }, { host: '10.0.0.1', port: 80 }, { host: 'fd00::1', port: 80 }] };
    assert.deepEqual(namesOf(answer, 10), { names: ['10.0.0.1:80', '10.0.0.9:80', '[fd00::1]:80'], left: 0, weights: new Map() });
    assert.deepEqual(namesOf(answer, 2), { names: ['10.0.0.1:80', '10.0.0.9:80'], left: 1, weights: new Map() });
    assert.equal(addressName({ host: '::1', port: 9 }), '[::1]:9');
  });

  void it('the next lookup is at the TTL, bounded by minTtl and maxTtl', () => {
    const bounds = { minTtl: 1000, maxTtl: 300_000 };
    assert.equal(nextLookupIn(30, bounds), 30_000);
    assert.equal(nextLookupIn(0, bounds), 1000);
    assert.equal(nextLookupIn(86_400, bounds), 300_000);
    assert.equal(nextLookupIn(Infinity, bounds), 300_000);
  });
});

void describe('SRV weights', () => {
  void it('kept as they are up to 256 (0 counts as 1), else scaled so the largest is 256; each name keeps its record\'s', () => {
    assert.deepEqual(srvWeights([10, 30, 0]), [10, 30, 1]);
    assert.deepEqual(srvWeights([1000, 500, 1]), [256, 128, 1]);
    const answer = { addresses: [{ host: '10.0.0.1', port: 80, weight: 3 }, { host: '10.0.0.2', port: 81, weight: 1 }], ttl: 5 };
    assert.deepEqual(namesOf(answer, 10).weights, new Map([['10.0.0.1:80', 3], ['10.0.0.2:81', 1]]));
  });
});
