// The descriptor limit as /proc/self/limits gives it, and what workerConnections "auto" makes of it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { autoWorkerConnections, descriptorsNeeded, parseDescriptorLimit, readDescriptorLimit, UNKNOWN_LIMIT_CONNECTIONS } from '../src/descriptors';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

void describe('descriptor limit', () => {
  void it('reads the soft and hard "Max open files" from /proc/<pid>/limits', () => {
    assert.deepEqual(parseDescriptorLimit(LIMITS), { soft: 1024, hard: 524288 });
    assert.deepEqual(parseDescriptorLimit(LIMITS.replace('1024 ', 'unlimited')), { soft: Infinity, hard: 524288 });
    assert.equal(parseDescriptorLimit('no such line'), undefined);
  });

  void it("reads this process's own limit, whose soft limit Node has raised to the hard one", () => {
    const limit = readDescriptorLimit();
    assert.ok(limit, 'readable on Linux');
    assert.equal(limit.soft, limit.hard);
  });

  void it('auto: two descriptors per connection, after what is in use and a slack of an eighth (at least 16)', () => {
    assert.equal(autoWorkerConnections({ soft: 80, hard: 80 }, 38), Math.floor((80 - 38 - 16) / 2));
    assert.equal(autoWorkerConnections({ soft: 1024, hard: 1024 }, 40), Math.floor((984 - 123) / 2));
    assert.equal(autoWorkerConnections({ soft: 1_048_576, hard: 1_048_576 }, 40), Math.floor((1_048_536 - 131_067) / 2));
    assert.equal(autoWorkerConnections({ soft: 30, hard: 30 }, 38), 1, 'never below one');
    assert.equal(autoWorkerConnections({ soft: 1024, hard: 1024 }, 40, 4), Math.floor((984 - 123) / 4), 'four per connection behind the PROXY protocol front');
    assert.equal(autoWorkerConnections(undefined, 38), UNKNOWN_LIMIT_CONNECTIONS);
  });

  void it('auto fits what it needs in the limit', () => {
    for (const soft of [64, 80, 256, 1024, 4096, 65_536, 1_048_576]) {
      const n = autoWorkerConnections({ soft, hard: soft }, 38);
      if (soft > 38 + 16 + 2) assert.ok(descriptorsNeeded(n, 38) <= soft - 16, `soft ${soft}: ${n} connections need ${descriptorsNeeded(n, 38)}`);
    }
  });
});
