// One lookup against a real DNS server on loopback (dns-packet over UDP): A and AAAA with their
// TTLs, SRV with the records' ports, and the errors that keep the last good set.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createResolver, lookup } from '../../src/discovery/dns-lookup';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';

void describe('DNS lookup', () => {
  let dns: DnsServer;
  before(async () => {
    dns = await startDnsServer();
  });
  after(() => dns.close());
  const resolver = () => createResolver({ resolver: [dns.address], timeout: 300 });

  void it('A and AAAA: every address with the pool port, and the smallest TTL', async () => {
    dns.set('chat.test', { a: ['127.0.0.2', '127.0.0.3'], aaaa: ['::1'], ttl: 7 });
    const answer = await lookup(resolver(), { dns: 'chat.test', port: 9001 });
    assert.deepEqual(answer.addresses.map((a) => `${a.host}:${a.port}`).sort(), ['127.0.0.2:9001', '127.0.0.3:9001', '::1:9001']);
    assert.equal(answer.ttl, 7);
  });

  void it('SRV: the targets\' addresses with each record\'s port; TTL from the targets', async () => {
    dns.set('_chat._tcp.chat.test', { srv: [{ target: 'a.chat.test', port: 9101 }, { target: 'b.chat.test', port: 9102 }], ttl: 60 });
    dns.set('a.chat.test', { a: ['127.0.0.4'], ttl: 20 });
    dns.set('b.chat.test', { a: ['127.0.0.5'], ttl: 30 });
    const answer = await lookup(resolver(), { dns: '_chat._tcp.chat.test', port: undefined });
    assert.deepEqual(answer.addresses.map((a) => `${a.host}:${a.port}`).sort(), ['127.0.0.4:9101', '127.0.0.5:9102']);
    assert.equal(answer.ttl, 20);
  });

  void it('SERVFAIL, an unknown name and a server that does not answer fail the lookup', async () => {
    await assert.rejects(lookup(resolver(), { dns: 'nowhere.test', port: 1 }), (err: NodeJS.ErrnoException) => err.code === 'ENOTFOUND');
    dns.servfail(true);
    try {
      await assert.rejects(lookup(resolver(), { dns: 'chat.test', port: 1 }), (err: NodeJS.ErrnoException) => err.code === 'ESERVFAIL');
    } finally {
      dns.servfail(false);
    }
    const silent = await startDnsServer();
    const port = silent.port;
    await silent.close();
    const r = createResolver({ resolver: [`127.0.0.1:${port}`], timeout: 200 });
    await assert.rejects(lookup(r, { dns: 'chat.test', port: 1 }), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED' || err.code === 'ETIMEOUT');
  });
});
