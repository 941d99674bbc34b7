// A small authoritative DNS server on loopback UDP (dns-packet), whose answers a test changes:
// A, AAAA and SRV records with their TTLs, or a failure (SERVFAIL) for every question. It records
// when each name was asked, so a test can see the balancer's lookups.
import { createSocket, type Socket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';

export interface SrvTarget {
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

interface Records {
  a?: string[];
  aaaa?: string[];
  srv?: SrvTarget[];
  ttl: number;
}

const SERVFAIL = 2;
const NXDOMAIN = 3;

export interface DnsServer {
  /** 127.0.0.1:port, as a resolver setting. */
  address: string;
  port: number;
  /** The name's records from now on (replacing what it had). */
  set(name: string, records: Records): void;
  /** Every question answered SERVFAIL from now on (true), or as the records say (false). */
  servfail(on: boolean): void;
  /** When each name was asked (epoch ms), any type, in order. */
  queries(name: string): number[];
  close(): Promise<void>;
}

export async function startDnsServer(port = 0): Promise<DnsServer> {
  const records = new Map<string, Records>();
  const asked = new Map<string, number[]>();
  let failing = false;
  const socket: Socket = createSocket('udp4');
  socket.on('message', (msg, peer) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (question === undefined) return;
    const name = question.name.toLowerCase();
    (asked.get(name) ?? asked.set(name, []).get(name)!).push(Date.now());
    const r = records.get(name);
    const answers: dnsPacket.Answer[] = [];
    let rcode = 0;
    if (failing) rcode = SERVFAIL;
    else if (r === undefined) rcode = NXDOMAIN;
    else if (question.type === 'A') for (const data of r.a ?? []) answers.push({ type: 'A', name: question.name, ttl: r.ttl, data });
    else if (question.type === 'AAAA') for (const data of r.aaaa ?? []) answers.push({ type: 'AAAA', name: question.name, ttl: r.ttl, data });
    else if (question.type === 'SRV') {
      for (const s of r.srv ?? []) answers.push({ type: 'SRV', name: question.name, ttl: r.ttl, data: { target: s.target, port: s.port, priority: s.priority ?? 10, weight: s.weight ?? 10 } });
    }
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | rcode,
      questions: [question],
      answers,
    });
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, '127.0.0.1', () => resolve());
  });
  const bound = socket.address().port;
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    set: (name, r) => void records.set(name.toLowerCase(), r),
    servfail: (on) => void (failing = on),
    queries: (name) => [...(asked.get(name.toLowerCase()) ?? [])],
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
