/**
 * DNS exchange records (app DNS: bpf/l7_dns.h, issue 10 slice 3) through
 * collector/l7/exchange.ts: records built from struct rf_l7_exchange's
 * layout, as the kernel fills them, in; REQUEST and RESPONSE messages out.
 * Table cases per outcome and flag, then a differential property: for random
 * lookups (names, types, RCODEs, answers, either end), the messages and
 * context tracker.ts builds from the two datagrams' capture records equal
 * those exchange.ts builds from the one exchange record BPF sends instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import dnsPacket, { type Packet, type RecordType } from 'dns-packet';
import {
  decodeL7Exchange, exchangeMessages, L7App, L7Outcome, L7_EXCHANGE_OFFSETS as X, L7_EXCHANGE_SIZE, L7_EXCHANGE_TYPE,
  L7_XFLAG, type L7Exchange,
} from '../../collector/l7/exchange.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_UDP, type L7Capture } from '../../collector/l7/capture.ts';
import { L7Tracker } from '../../collector/l7/tracker.ts';
import { DEFAULT_L7_OPTIONS, type L7Message } from '../../collector/l7/types.ts';
import { buildBatch } from '../../collector/events/index.ts';
import { createCodec } from '../../collector/codec.ts';
import { decodeRecord } from '../../schemas/index.ts';

const encode = (p: Packet): Uint8Array => Uint8Array.from(dnsPacket.encode(p));
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'] as const;

function query(id: number, name: string, type: RecordType = 'A'): Uint8Array {
  return encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

function answer(id: number, name: string, rcode: number, n: number, type: RecordType = 'A'): Uint8Array {
  const answers = Array.from({ length: n }, (_, i) => ({ type: 'A' as const, name, class: 'IN' as const, ttl: 60, data: `10.0.0.${i + 1}` }));
  return encode({ type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode, questions: [{ type, name, class: 'IN' }], answers });
}

interface Spec {
  seq: number; outcome: number; role: number; flags?: number; retries?: number; status?: number;
  req?: Uint8Array; resp?: Uint8Array; reqBytes?: number; respBytes?: number;
  times?: [bigint, bigint, bigint, bigint];
  pid?: number; req_pid?: number; comm?: string; lport?: number; rport?: number;
}

/** A record as bpf/l7_dns.h fills struct rf_l7_exchange (offsets pinned to events.h by layout.test.ts). */
function record(s: Spec): Buffer {
  const rh = s.req ?? new Uint8Array(0);
  const sh = s.resp ?? new Uint8Array(0);
  const [a, b, c, d] = s.times ?? [10n, 10n, 20n, 20n];
  const r = Buffer.alloc(L7_EXCHANGE_SIZE + rh.length + sh.length);
  r[X.type] = L7_EXCHANGE_TYPE;
  r.writeUInt32LE(s.pid ?? 100, X.pid);
  r.writeUInt32LE(100, X.tgid);
  r.writeBigUInt64LE(1000n, X.ts_ns);
  r.writeBigUInt64LE(1n, X.cgroup_id);
  r.write(s.comm ?? 'resolver', X.comm, 'latin1');
  r.writeBigUInt64LE(7n, X.conn_id);
  r.writeBigUInt64LE(a, X.req_start_ns);
  r.writeBigUInt64LE(b, X.req_end_ns);
  r.writeBigUInt64LE(c, X.resp_start_ns);
  r.writeBigUInt64LE(d, X.resp_end_ns);
  r.writeBigUInt64LE(BigInt(s.reqBytes ?? rh.length), X.req_body_bytes);
  r.writeBigUInt64LE(BigInt(s.respBytes ?? sh.length), X.resp_body_bytes);
  Buffer.from([127, 0, 0, 1]).copy(r, X.laddr);
  Buffer.from([127, 0, 0, 53]).copy(r, X.raddr);
  r.writeUInt32LE(s.seq, X.seq);
  r.writeUInt32LE(s.req_pid ?? s.pid ?? 100, X.req_pid);
  r.writeUInt32LE(s.outcome === L7Outcome.RESP_ONLY ? 0 : 100, X.req_tgid);
  r.writeUInt32LE(3, X.fd);
  r.writeUInt16LE(s.lport ?? 40000, X.lport);
  r.writeUInt16LE(s.rport ?? 53, X.rport);
  r.writeUInt16LE(2, X.family);
  r.writeUInt16LE(s.status ?? 0, X.status);
  r.writeUInt16LE(rh.length, X.req_head_len);
  r.writeUInt16LE(sh.length, X.resp_head_len);
  r[X.app] = L7App.DNS;
  r[X.role] = s.role;
  r[X.protocol] = IPPROTO_UDP;
  r[X.outcome] = s.outcome;
  r[X.flags] = s.flags ?? 0;
  r[X.retries] = s.retries ?? 0;
  r.set(rh, L7_EXCHANGE_SIZE);
  r.set(sh, L7_EXCHANGE_SIZE + rh.length);
  return r;
}

const decode = (s: Spec): L7Exchange => {
  const b = record(s);
  const x = decodeL7Exchange(b, 0, b.length);
  assert.ok(x, 'decodes');
  return x;
};

type Want = Partial<L7Message>;
const pick = (got: L7Message, want: Want): Want => Object.fromEntries(Object.keys(want).map((k) => [k, got[k as keyof L7Message]])) as Want;

test('DNS exchange records -> messages: one table case per outcome and flag', () => {
  const q = query(0x1234, 'svc.example.com');
  const a = answer(0x1234, 'svc.example.com', 0, 2);
  const cases: { name: string; rec: Spec; want: Want[]; unreported?: string[] }[] = [
    {
      name: 'RESPONDED: the query and its answer, sizes and times from the struct',
      rec: { seq: 0x1234, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, req: q, resp: a, times: [10n, 11n, 20n, 21n] },
      want: [
        { protocol: 'DNS', kind: 'REQUEST', stream_id: 0x1234, dns_name: 'svc.example.com', dns_type: 'A', dns_rcode: null, dns_answers: 0, body_bytes: q.length, start_ns: 10n, end_ns: 11n, truncated: false },
        { protocol: 'DNS', kind: 'RESPONSE', stream_id: 0x1234, dns_name: 'svc.example.com', dns_type: 'A', dns_rcode: 'NOERROR', dns_answers: 2, body_bytes: a.length, start_ns: 20n, end_ns: 21n, truncated: false },
      ],
    },
    {
      name: 'NXDOMAIN (status 3), AAAA',
      rec: { seq: 9, outcome: L7Outcome.RESPONDED, role: L7Role.SERVER, status: 3, req: query(9, 'nope.test', 'AAAA'), resp: answer(9, 'nope.test', 3, 0, 'AAAA') },
      want: [{ kind: 'REQUEST', dns_type: 'AAAA' }, { kind: 'RESPONSE', dns_rcode: 'NXDOMAIN', dns_answers: 0, dns_type: 'AAAA' }],
    },
    {
      name: 'REQ_ONLY (claimed by the sweep): the query alone',
      rec: { seq: 0x1234, outcome: L7Outcome.REQ_ONLY, role: L7Role.CLIENT, req: q, times: [10n, 10n, 0n, 0n] },
      want: [{ kind: 'REQUEST', dns_name: 'svc.example.com' }],
    },
    {
      name: 'CLOSED: the query alone',
      rec: { seq: 0x1234, outcome: L7Outcome.CLOSED, role: L7Role.CLIENT, req: q, times: [10n, 10n, 0n, 0n] },
      want: [{ kind: 'REQUEST' }],
    },
    {
      name: 'RESP_ONLY (no query seen): the answer alone, whatever request bytes there are',
      rec: { seq: 0x1234, outcome: L7Outcome.RESP_ONLY, role: L7Role.CLIENT, req: q, resp: a, times: [0n, 0n, 20n, 20n] },
      want: [{ kind: 'RESPONSE', dns_answers: 2, start_ns: 20n }],
    },
    {
      name: 'an answer longer than the head cap: the header and question read, truncated, its size from the struct',
      rec: { seq: 0x1234, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, req: q, resp: a.subarray(0, a.length - 7), respBytes: a.length, flags: L7_XFLAG.RESP_HEAD_CUT },
      want: [{ kind: 'REQUEST', truncated: false }, { kind: 'RESPONSE', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true, body_bytes: a.length }],
    },
    {
      name: 'a query cut (REQ_HEAD_CUT): truncated',
      rec: { seq: 0x1234, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, req: q, reqBytes: q.length + 40, resp: a, flags: L7_XFLAG.REQ_HEAD_CUT },
      want: [{ kind: 'REQUEST', truncated: true, body_bytes: q.length + 40 }, { kind: 'RESPONSE', truncated: false }],
    },
    {
      name: 'heads that are no DNS message (question cut before QTYPE): counted, not reported',
      rec: { seq: 1, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, req: q.subarray(0, 14), resp: a.subarray(0, 12) },
      want: [],
      unreported: ['query unparsed', 'answer unparsed'],
    },
  ];
  for (const c of cases) {
    const x = decode(c.rec);
    const { messages, unreported } = exchangeMessages(x, DEFAULT_L7_OPTIONS);
    assert.deepEqual(messages.map((m, i) => pick(m, c.want[i] ?? {})), c.want, c.name);
    assert.deepEqual(unreported, c.unreported ?? [], `${c.name}: unreported`);
  }
});

test('tracker.exchange: a DNS exchange whose heads do not parse is counted under DNS, not HTTP1', () => {
  const tracker = new L7Tracker({ processName: () => '' });
  const q = query(1, 'a.b');
  assert.deepEqual(tracker.exchange(decode({ seq: 1, outcome: L7Outcome.REQ_ONLY, role: L7Role.CLIENT, req: q.subarray(0, 13) })), []);
  assert.deepEqual([...tracker.counters.failed], [['DNS: exchange query unparsed', 1]]);
});

test('DNS exchange record: retries and app decoded', () => {
  const x = decode({ seq: 5, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, retries: 3, req: query(5, 'a.b'), resp: answer(5, 'a.b', 0, 1) });
  assert.equal(x.retries, 3);
  assert.equal(x.app, L7App.DNS);
  assert.equal(x.protocol, IPPROTO_UDP);
  assert.equal(decode({ seq: 5, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, retries: 255 }).retries, 255, 'saturates at a byte');
});

/**
 * One lookup seen at one end as capture records (query and answer
 * datagrams), and as the exchange record BPF sends for it.
 */
function lookup(id: number, name: string, type: RecordType, rcode: number, n: number, client: boolean): { caps: L7Capture[]; x: L7Exchange } {
  const q = query(id, name, type);
  const a = answer(id, name, rcode, n, type);
  const base = {
    cpu: 0, pid: 101, tgid: 100, uid: 0, cgroup_id: 1n, comm: 'resolver', conn_id: 7n, laddr: Uint8Array.of(127, 0, 0, 1), raddr: Uint8Array.of(127, 0, 0, 53),
    fd: 3, lport: client ? 40000 : 53, rport: client ? 53 : 40000, family: 2, syscall: 10, role: client ? L7Role.CLIENT : L7Role.UNKNOWN,
    protocol: IPPROTO_UDP, kind: L7Kind.DATA, flags: 0, offset: 0, peer_offset: 0,
  };
  // a send's edge is its enter, a receive's its exit (messageEdgeNs)
  const qDir = client ? L7Direction.EGRESS : L7Direction.INGRESS;
  const aDir = client ? L7Direction.INGRESS : L7Direction.EGRESS;
  const caps: L7Capture[] = [
    { ...base, direction: qDir, enter_ns: 1000n, ts_ns: 1005n, total_len: q.length, captured_len: q.length, payload: q },
    { ...base, direction: aDir, enter_ns: 2000n, ts_ns: 2005n, total_len: a.length, captured_len: a.length, payload: a },
  ];
  const edge = (dir: number, enter: bigint, exit: bigint): bigint => (dir === L7Direction.EGRESS ? enter : exit);
  const qEdge = edge(qDir, 1000n, 1005n);
  const aEdge = edge(aDir, 2000n, 2005n);
  const x = decode({
    seq: id, outcome: L7Outcome.RESPONDED, role: client ? L7Role.CLIENT : L7Role.SERVER, status: rcode, req: q, resp: a,
    times: [qEdge, qEdge, aEdge, aEdge], pid: 101, req_pid: 101, lport: base.lport, rport: base.rport,
  });
  return { caps, x };
}

test('differential: the capture path (tracker.ts) and the exchange path give the same DNS messages and context', () => {
  const processName = (tgid: number) => (tgid === 100 ? 'resolver-svc' : '');
  const label = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 0xffff }), fc.array(label, { minLength: 1, maxLength: 5 }), fc.constantFrom<RecordType>('A', 'AAAA', 'MX', 'TXT', 'SRV'),
    fc.integer({ min: 0, max: RCODES.length - 1 }), fc.integer({ min: 0, max: 4 }), fc.boolean(),
    (id, labels, type, rcode, n, client) => {
      const { caps, x } = lookup(id, labels.join('.'), type, rcode, n, client);
      const oracle = caps.flatMap((c) => new L7Tracker({ processName }).feed(c));
      const got = new L7Tracker({ processName }).exchange(x);
      assert.equal(oracle.length, 2);
      // the one field only the kernel path knows: sends of the query after the first (0 here)
      assert.equal(got[0]!.msg.dns_retries, 0);
      delete got[0]!.msg.dns_retries;
      assert.deepEqual(got, oracle);
    },
  ), { numRuns: 300 });
});

test('the codec: a DNS exchange record is ONE Kafka EXCHANGE record on ringflow.l7.v1 with the query and answer fields', () => {
  const codec = createCodec({ host: 'h1', bootTimeNs: 5n, dropReasonNames: {}, l7: { processName: () => 'svc' } });
  const records = (s: Spec) => {
    const out: { topic: string; key: string; v: Record<string, unknown> }[] = [];
    const res = codec.transcoder.transcodeBatch(buildBatch([record(s)]), (topic, _type, key, value) => out.push({ topic, key, v: decodeRecord(value).value as Record<string, unknown> }));
    assert.equal(res.unknown, 0);
    return out;
  };
  const q = query(0x2a2a, 'svc.example.com', 'AAAA');
  const a = answer(0x2a2a, 'svc.example.com', 3, 0, 'AAAA');
  const got = records({ seq: 0x2a2a, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, status: 3, req: q, resp: a, times: [10n, 10n, 20n, 20n] });
  assert.equal(got.length, 1, 'one record per exchange');
  assert.equal(got[0]!.topic, 'ringflow.l7.v1');
  assert.equal(got[0]!.key, 'udp/127.0.0.1:40000-127.0.0.53:53');
  const v = got[0]!.v;
  assert.deepEqual([v.kind, v.outcome, v.protocol, v.transport, v.role, v.stream_id, v.dns_name, v.dns_type, v.dns_rcode, v.dns_answers, v.ts_ns, v.end_ns, v.resp_start_ns, v.resp_end_ns, v.body_bytes, v.resp_body_bytes, v.dns_retries],
    ['EXCHANGE', 'RESPONDED', 'DNS', 'UDP', 'CLIENT', 0x2a2an, 'svc.example.com', 'AAAA', 'NXDOMAIN', 0, 10n, 10n, 20n, 20n, BigInt(q.length), BigInt(a.length), 0]);
  // a query sent three times before its answer: dns_retries 2 reaches Kafka
  assert.deepEqual(records({ seq: 0x2a2a, outcome: L7Outcome.RESPONDED, role: L7Role.CLIENT, status: 3, retries: 2, req: q, resp: a, times: [10n, 10n, 20n, 20n] }).map((o) => [o.v.kind, o.v.dns_retries]), [['EXCHANGE', 2]]);
  // claimed by the sweep: an EXCHANGE without answer; an answer with no query: a RESPONSE record
  assert.deepEqual(records({ seq: 1, outcome: L7Outcome.REQ_ONLY, role: L7Role.SERVER, req: query(1, 'x.y') }).map((o) => [o.v.kind, o.v.outcome, o.v.role]), [['EXCHANGE', 'REQ_ONLY', 'SERVER']]);
  assert.deepEqual(records({ seq: 1, outcome: L7Outcome.RESP_ONLY, role: L7Role.CLIENT, resp: answer(1, 'x.y', 0, 1) }).map((o) => [o.v.kind, o.v.outcome, o.v.dns_answers]), [['RESPONSE', null, 1]]);
});
