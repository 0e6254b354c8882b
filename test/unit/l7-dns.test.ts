/**
 * DNS parser: datagrams built with dns-packet's encoder (and by hand where it
 * cannot: compression, loops, odd labels) -> exactly the expected messages;
 * the plausibility check; TCP framing across pushes and gaps; and properties:
 * agreement with dns-packet's decoder, any split of a TCP stream gives the
 * same messages, garbage and mutated packets never throw and stay cheap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import dnsPacket, { type Answer, type Packet, type RecordType } from 'dns-packet';
import { createDnsTcpParser, looksLikeDns, parseDnsMessage } from '../../collector/l7/dns.ts';
import type { L7Message } from '../../collector/l7/types.ts';

const TS = 1_764_000_000_123_456_789n; // above 2^53: times stay BigInt
const { RECURSION_DESIRED: RD, RECURSION_AVAILABLE: RA, TRUNCATED_RESPONSE: TC } = dnsPacket;

const encode = (p: Packet): Uint8Array => Uint8Array.from(dnsPacket.encode(p));
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
/** A name on the wire, uncompressed: each label's length, its bytes, then the root's zero. */
const wireName = (...labels: (string | number[])[]): number[] =>
  [...labels.flatMap((l) => (typeof l === 'string' ? [l.length, ...ascii(l)] : [l.length, ...l])), 0];
const header = (id: number, flags: number, qd: number, an: number, ns: number, ar: number): number[] =>
  [...u16(id), ...u16(flags), ...u16(qd), ...u16(an), ...u16(ns), ...u16(ar)];
const withPrefix = (m: Uint8Array): Uint8Array => Uint8Array.from([...u16(m.length), ...m]);
const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
const patch = (b: Uint8Array, at: number, bytes: number[]): Uint8Array => {
  const c = Uint8Array.from(b);
  c.set(bytes, at);
  return c;
};

/** The message every field of which a case does not override. */
const base = (b: Uint8Array): L7Message => ({
  protocol: 'DNS', kind: 'REQUEST', start_ns: TS, end_ns: TS, stream_id: 0,
  method: null, path: null, status: null, headers: {},
  grpc_service: null, grpc_method: null, grpc_status: null,
  dns_name: null, dns_type: null, dns_rcode: null, dns_answers: 0,
  body_bytes: b.length, truncated: false,
});

const aQuery = encode({ type: 'query', id: 0x1234, flags: RD, questions: [{ type: 'A', name: 'Example.COM' }] });
const aaaaResponseOf = (answers: Answer[]): Uint8Array => encode({
  type: 'response', id: 0xbeef, flags: RD | RA, questions: [{ type: 'AAAA', name: 'example.com' }], answers,
});
const aaaaResponse = aaaaResponseOf([
  { type: 'AAAA', name: 'example.com', ttl: 60, data: '2001:db8::1' },
  { type: 'AAAA', name: 'example.com', ttl: 60, data: '2001:db8::2' },
]);
/** Where the answers begin: the same response without them ends there. */
const afterQuestion = aaaaResponseOf([]).length;
const response = (id: number, flags: number, qtype: string, name: string, extra: Partial<Packet> = {}): Uint8Array =>
  encode({ type: 'response', id, flags, questions: [{ type: qtype as RecordType, name }], ...extra });
const soa = { mname: 'ns.example', rname: 'hostmaster.example', serial: 1, refresh: 60, retry: 60, expire: 60, minimum: 60 };

// Compression by hand (dns-packet does not compress): www.Example.com CNAME web.<example.com>, web.example.com A.
const compressed = ((): Uint8Array => {
  const q = [...header(0x0102, 0x8180, 1, 2, 0, 0), ...wireName('www', 'Example', 'com'), ...u16(1), ...u16(1)];
  const exampleAt = 12 + 4; // after "\x03www"
  const cnameRdataAt = q.length + 2 + 10;
  return Uint8Array.from([
    ...q,
    0xc0, 12, ...u16(5), ...u16(1), 0, 0, 0, 60, ...u16(6), 3, ...ascii('web'), 0xc0, exampleAt,
    0xc0, cnameRdataAt, ...u16(1), ...u16(1), 0, 0, 0, 60, ...u16(4), 192, 0, 2, 1,
  ]);
})();

test('dns: the compressed fixture is what dns-packet reads too', () => {
  const d = dnsPacket.decode(Buffer.from(compressed));
  assert.deepEqual(d.answers?.map((a) => [a.name, a.type, 'data' in a ? a.data : null]),
    [['www.Example.com', 'CNAME', 'web.Example.com'], ['web.Example.com', 'A', '192.0.2.1']]);
});

test('dns: datagrams -> messages (or null when not DNS)', () => {
  const label63 = 'a'.repeat(63);
  const cases: [string, Uint8Array, Partial<L7Message> | null][] = [
    ['A query: name lower-cased, no trailing dot, no rcode on a request', aQuery,
      { stream_id: 0x1234, dns_name: 'example.com', dns_type: 'A' }],
    ['AAAA response with 2 answers', aaaaResponse,
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2 }],
    ['NXDOMAIN with an SOA in authority', response(7, RD | RA | 3, 'A', 'nope.example', { authorities: [{ type: 'SOA', name: 'example', ttl: 60, data: soa }] }),
      { kind: 'RESPONSE', stream_id: 7, dns_name: 'nope.example', dns_type: 'A', dns_rcode: 'NXDOMAIN' }],
    ['SERVFAIL', response(8, RD | RA | 2, 'MX', 'example.org'),
      { kind: 'RESPONSE', stream_id: 8, dns_name: 'example.org', dns_type: 'MX', dns_rcode: 'SERVFAIL' }],
    ['REFUSED', response(9, 5, 'TXT', 'example.org'),
      { kind: 'RESPONSE', stream_id: 9, dns_name: 'example.org', dns_type: 'TXT', dns_rcode: 'REFUSED' }],
    ['an rcode without a name here', response(10, 9, 'SRV', '_sip._tcp.example.org'),
      { kind: 'RESPONSE', stream_id: 10, dns_name: '_sip._tcp.example.org', dns_type: 'SRV', dns_rcode: 'RCODE9' }],
    ['EDNS extended rcode (BADCOOKIE = 23: 1 in OPT, 7 in the header)',
      response(11, 7, 'A', 'example.org', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 1, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] }),
      { kind: 'RESPONSE', stream_id: 11, dns_name: 'example.org', dns_type: 'A', dns_rcode: 'RCODE23' }],
    ['compressed names in the answers', compressed,
      { kind: 'RESPONSE', stream_id: 0x0102, dns_name: 'www.example.com', dns_type: 'A', dns_rcode: 'NOERROR', dns_answers: 2 }],
    ['unknown type', encode({ type: 'query', id: 3, questions: [{ type: 'UNKNOWN_65280' as RecordType, name: 'x.example' }] }),
      { stream_id: 3, dns_name: 'x.example', dns_type: 'TYPE65280' }],
    ['HTTPS (65), which dns-packet does not name', encode({ type: 'query', id: 4, questions: [{ type: 'UNKNOWN_65' as RecordType, name: 'x.example' }] }),
      { stream_id: 4, dns_name: 'x.example', dns_type: 'HTTPS' }],
    ['TC bit: truncated though every record frames', response(12, TC | RD | RA, 'A', 'big.example'),
      { kind: 'RESPONSE', stream_id: 12, dns_name: 'big.example', dns_type: 'A', dns_rcode: 'NOERROR', truncated: true }],
    ['capture cut after the question: ANCOUNT still from the header', aaaaResponse.subarray(0, afterQuestion),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['capture cut inside the last RDATA (dns-packet decodes this without error)', aaaaResponse.subarray(0, aaaaResponse.length - 3),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['malformed answer name (0b01 label type) after a valid question', patch(aaaaResponse, afterQuestion, [0x40]),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['answer name pointing forward', patch(aaaaResponse, afterQuestion, [0xc0, afterQuestion + 20]),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['answer name pointing at itself (a loop)', patch(aaaaResponse, afterQuestion, [0xc0, afterQuestion]),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['answer RDLENGTH running past the end', patch(aaaaResponse, aaaaResponse.length - 18, u16(17)),
      { kind: 'RESPONSE', stream_id: 0xbeef, dns_name: 'example.com', dns_type: 'AAAA', dns_rcode: 'NOERROR', dns_answers: 2, truncated: true }],
    ['odd bytes in labels are escaped (RFC 4343)', Uint8Array.from([...header(5, 0x0100, 1, 0, 0, 0), ...wireName([0x61, 0x2e, 0x42], [0x00, 0x5c, 0x7f, 0xc3, 0xa9]), ...u16(16), ...u16(1)]),
      { stream_id: 5, dns_name: 'a\\.b.\\000\\\\\\127\\195\\169', dns_type: 'TXT' }],
    ['the root is "."', Uint8Array.from([...header(6, 0, 1, 0, 0, 0), 0, ...u16(2), ...u16(1)]),
      { stream_id: 6, dns_name: '.', dns_type: 'NS' }],
    ['a name of 255 octets', Uint8Array.from([...header(13, 0, 1, 0, 0, 0), ...wireName(label63, label63, label63, 'b'.repeat(61)), ...u16(1), ...u16(1)]),
      { stream_id: 13, dns_name: `${label63}.${label63}.${label63}.${'b'.repeat(61)}`, dns_type: 'A' }],
    ['no question (FORMERR, header only)', Uint8Array.from(header(14, 0x8001, 0, 0, 0, 0)),
      { kind: 'RESPONSE', stream_id: 14, dns_rcode: 'FORMERR' }],
    ['a name of 256 octets', Uint8Array.from([...header(15, 0, 1, 0, 0, 0), ...wireName(label63, label63, label63, 'b'.repeat(62)), ...u16(1), ...u16(1)]), null],
    ['question name pointing at itself (a loop)', Uint8Array.from([...header(16, 0, 1, 0, 0, 0), 0xc0, 12, ...u16(1), ...u16(1)]), null],
    ['question name pointing into the header', Uint8Array.from([...header(16, 0, 1, 0, 0, 0), 0xc0, 2, ...u16(1), ...u16(1)]), null],
    ['question cut before its class', aQuery.subarray(0, aQuery.length - 1), null],
    ['no question and records that do not frame', Uint8Array.from(header(17, 0x8000, 0, 1, 0, 0)), null],
    ['shorter than a header', aQuery.subarray(0, 11), null],
    ['empty', new Uint8Array(0), null],
  ];
  for (const [name, b, want] of cases) {
    assert.deepEqual(parseDnsMessage(b, TS), want === null ? null : { ...base(b), ...want }, name);
  }
});

test('dns: looksLikeDns accepts DNS flows and rejects other protocols', () => {
  const http = new TextEncoder().encode('GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n');
  const httpResponse = new TextEncoder().encode('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const clientHello = Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...new Array<number>(32).fill(7)]);
  const qclass = aQuery.length - 2;
  const cases: [string, Uint8Array, boolean, boolean][] = [
    ['A query', aQuery, false, true],
    ['A query over TCP', withPrefix(aQuery), true, true],
    ['TCP: the first bytes only, up to the question', withPrefix(aaaaResponse).subarray(0, 2 + afterQuestion), true, true],
    ['AAAA response', aaaaResponse, false, true],
    ['NXDOMAIN response', response(7, RA | 3, 'A', 'nope.example'), false, true],
    ['compressed response', compressed, false, true],
    ['query with an EDNS OPT record', encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'a.example' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] }), false, true],
    ['mDNS unicast-response bit in QCLASS', patch(aQuery, qclass, [0x80, 0x01]), false, true],
    ['HTTP request', http, false, false],
    ['HTTP request on TCP', http, true, false],
    ['HTTP response', httpResponse, false, false],
    ['TLS ClientHello on TCP', clientHello, true, false],
    ['opcode UPDATE', patch(aQuery, 2, [0x28]), false, false],
    ['opcode NOTIFY', patch(aQuery, 2, [0x20]), false, false],
    ['Z bit set', patch(aQuery, 3, [0x40]), false, false],
    ['no question', patch(aQuery, 4, u16(0)), false, false],
    ['two questions', patch(aQuery, 4, u16(2)), false, false],
    ['query carrying an answer', patch(aQuery, 6, u16(1)), false, false],
    ['query with an rcode', patch(aQuery, 3, [0x03]), false, false],
    ['QCLASS 2 (CSNET, obsolete)', patch(aQuery, qclass, u16(2)), false, false],
    ['QTYPE 0', patch(aQuery, qclass - 2, u16(0)), false, false],
    ['response whose counts cannot fit its TCP length', patch(withPrefix(aaaaResponse), 2 + 6, u16(5000)), true, false],
    ['question name with a loop', Uint8Array.from([...header(16, 0, 1, 0, 0, 0), 0xc0, 12, ...u16(1), ...u16(1)]), false, false],
    ['zeros', new Uint8Array(64), false, false],
    ['header only', aQuery.subarray(0, 12), false, false],
    ['TCP: the length prefix only', withPrefix(aQuery).subarray(0, 2), true, false],
    ['TCP: declared length below a header and question', patch(withPrefix(aQuery), 0, u16(12)), true, false],
    ['DNS datagram read as TCP (no prefix)', aQuery, true, false],
  ];
  for (const [name, b, tcp, want] of cases) assert.equal(looksLikeDns(b, tcp), want, name);
});

/** Feeds `chunks` (bytes, or a gap length) to a new TCP parser, then ends it; returns every message and the failure. */
function runTcp(chunks: (Uint8Array | number)[], end = true): { msgs: L7Message[]; failed: string | null } {
  const p = createDnsTcpParser();
  const msgs: L7Message[] = [];
  chunks.forEach((c, i) => msgs.push(...(typeof c === 'number' ? p.gap(c, TS + BigInt(i)) : p.push(c, TS + BigInt(i)))));
  if (end) msgs.push(...p.end(TS + 1000n));
  return { msgs, failed: p.failed };
}
const at = (b: Uint8Array, i: bigint, j: bigint = i): L7Message => ({ ...parseDnsMessage(b, TS)!, start_ns: TS + i, end_ns: TS + j });

test('dns: TCP framing, gaps and the end of the connection', () => {
  const q = withPrefix(aQuery);
  const r = withPrefix(aaaaResponse);
  const cutAnswers = { ...at(aaaaResponse.subarray(0, afterQuestion), 0n, 1n), body_bytes: aaaaResponse.length };
  const notDns = withPrefix(new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'));
  const cases: [string, (Uint8Array | number)[], L7Message[], boolean][] = [
    ['two messages in one push', [concat(q, r)], [at(aQuery, 0n), at(aaaaResponse, 0n)], false],
    ['one message split across pushes, the prefix too', [r.subarray(0, 1), r.subarray(1, 9), r.subarray(9)], [at(aaaaResponse, 0n, 2n)], false],
    ['a message ending mid-push, the next one starting there', [concat(q, r.subarray(0, 5)), r.subarray(5)], [at(aQuery, 0n), at(aaaaResponse, 0n, 1n)], false],
    ['a gap after the question: truncated, in sync', [r.subarray(0, 2 + afterQuestion), aaaaResponse.length - afterQuestion, q],
      [{ ...cutAnswers, truncated: true }, at(aQuery, 2n)], false],
    ['a gap over the question: nothing to report, in sync', [r.subarray(0, 10), r.length - 10, q], [at(aQuery, 2n)], false],
    ['a gap covering a length prefix: failed', [q, 5, r], [at(aQuery, 0n)], true],
    ['a gap running past a message into the next prefix', [r.subarray(0, 2 + afterQuestion), aaaaResponse.length - afterQuestion + 1, q],
      [{ ...cutAnswers, truncated: true }], true],
    ['a complete message that is not DNS: failed, nothing after', [notDns, q], [], true],
    ['a zero-length message: failed', [Uint8Array.from([0, 0]), q], [], true],
    ['closed mid-message: what was captured, truncated', [r.subarray(0, 2 + afterQuestion + 3)],
      [{ ...at(aaaaResponse.subarray(0, afterQuestion + 3), 0n), body_bytes: aaaaResponse.length, truncated: true }], false],
    ['closed mid-prefix: nothing', [q, r.subarray(0, 1)], [at(aQuery, 0n)], false],
    ['empty pushes and zero gaps change nothing', [new Uint8Array(0), q, 0, new Uint8Array(0)], [at(aQuery, 1n)], false],
  ];
  for (const [name, chunks, want, fails] of cases) {
    const got = runTcp(chunks);
    assert.deepEqual(got.msgs, want, name);
    assert.equal(got.failed !== null, fails, `${name}: ${got.failed}`);
  }
});

test('dns: TCP accepts the largest declared length and keeps the framing after it', () => {
  const big = encode({ type: 'response', id: 21, questions: [{ type: 'TXT', name: 'big.example' }],
    answers: [{ type: 'NULL', name: 'big.example', ttl: 1, data: Buffer.alloc(0xffff - 12 - 17 - 23) }] });
  assert.equal(big.length, 0xffff);
  const chunks: Uint8Array[] = [];
  const stream = concat(withPrefix(big), withPrefix(aQuery));
  for (let i = 0; i < stream.length; i += 1500) chunks.push(stream.subarray(i, i + 1500));
  const { msgs, failed } = runTcp(chunks);
  assert.equal(failed, null);
  assert.deepEqual(msgs.map((m) => [m.stream_id, m.dns_type, m.body_bytes, m.truncated]), [[21, 'TXT', 0xffff, false], [0x1234, 'A', aQuery.length, false]]);
});

test('dns: a hostile pointer chain is refused, and many records through a long one stay cheap', () => {
  /** A root question; a NULL record whose data is `hops` pointers, each to the one before; `records` records named by the last. */
  const chain = (hops: number, records: number): Uint8Array => {
    const b = [...header(1, 0x8000, 1, records + 1, 0, 0), 0, ...u16(1), ...u16(1), 0, ...u16(10), ...u16(1), 0, 0, 0, 1, ...u16(2 * hops)];
    let prev = 12; // the question's root name
    for (let k = 0; k < hops; k++) {
      const here = b.length;
      b.push(0xc0 | (prev >> 8), prev & 0xff);
      prev = here;
    }
    for (let k = 0; k < records; k++) b.push(0xc0 | (prev >> 8), prev & 0xff, ...u16(1), ...u16(1), 0, 0, 0, 1, ...u16(0));
    return Uint8Array.from(b);
  };
  const [long, wide] = [chain(8_000, 2_000), chain(250, 5_000)];
  const t0 = performance.now();
  const refused = parseDnsMessage(long, TS);
  const accepted = parseDnsMessage(wide, TS);
  const ms = performance.now() - t0;
  assert.deepEqual([refused?.truncated, refused?.dns_answers], [true, 2_001]);
  assert.deepEqual([accepted?.truncated, accepted?.dns_answers], [false, 5_001]);
  assert.ok(ms < 250, `${ms} ms`);
});

// ---- properties ----

const label = fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/);
const qtypes: RecordType[] = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'PTR', 'SRV', 'NS', 'SOA'];
const packetArb = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }),
  response: fc.boolean(),
  rcode: fc.integer({ min: 0, max: 15 }),
  labels: fc.array(label, { minLength: 1, maxLength: 4 }),
  qtype: fc.constantFrom(...qtypes),
  addresses: fc.array(fc.ipV4(), { maxLength: 3 }),
}).map((p) => {
  const name = p.labels.join('.');
  const bytes = encode({
    type: p.response ? 'response' : 'query', id: p.id, flags: p.response ? RA | p.rcode : RD,
    questions: [{ type: p.qtype, name }],
    answers: p.addresses.map((data): Answer => ({ type: 'A', name, ttl: 30, data })),
  });
  return { ...p, name, bytes };
});

test('dns: property: agrees with dns-packet on packets it encodes', () => {
  fc.assert(fc.property(packetArb, (p) => {
    const d = dnsPacket.decode(Buffer.from(p.bytes));
    const m = parseDnsMessage(p.bytes, TS);
    assert.deepEqual(m, {
      ...base(p.bytes),
      kind: d.type === 'response' ? 'RESPONSE' : 'REQUEST',
      stream_id: d.id,
      dns_name: d.questions![0]!.name.toLowerCase(),
      dns_type: d.questions![0]!.type,
      dns_rcode: p.response ? ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'][p.rcode] ?? `RCODE${p.rcode}` : null,
      dns_answers: d.answers!.length,
    });
  }), { numRuns: 200 });
});

test('dns: property: a TCP stream split at any point gives the same messages', () => {
  const stream = concat(withPrefix(aQuery), withPrefix(compressed), withPrefix(aaaaResponse));
  const push = (chunks: Uint8Array[]): L7Message[] => {
    const p = createDnsTcpParser();
    const out = chunks.flatMap((c) => p.push(c, TS));
    assert.equal(p.failed, null);
    return [...out, ...p.end(TS)];
  };
  const whole = push([stream]);
  assert.equal(whole.length, 3);
  for (let i = 0; i <= stream.length; i++) {
    assert.deepEqual(push([stream.subarray(0, i), stream.subarray(i)]), whole, `split at ${i}`);
  }
  fc.assert(fc.property(fc.array(packetArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), (packets, cuts) => {
    const s = concat(...packets.map((p) => withPrefix(p.bytes)));
    const points = [...new Set(cuts.map((c) => c % (s.length + 1)))].sort((a, b) => a - b);
    const chunks = [0, ...points].map((from, k) => s.subarray(from, points[k] ?? s.length));
    const expected = packets.map((p) => parseDnsMessage(p.bytes, TS));
    assert.deepEqual(push(chunks), expected);
  }), { numRuns: 200 });
});

/** Runs every entry point on `b`; a throw fails the property. */
function exercise(b: Uint8Array, cut: number): void {
  const m = parseDnsMessage(b, TS);
  if (m !== null) assert.equal(m.stream_id, (b[0]! << 8) | b[1]!);
  looksLikeDns(b, false);
  looksLikeDns(b, true);
  const p = createDnsTcpParser();
  p.push(b.subarray(0, cut), TS);
  p.gap(cut % 7, TS);
  p.push(b.subarray(cut), TS);
  p.end(TS);
  p.push(withPrefix(b), TS); // the same bytes, framed
  p.end(TS);
}

test('dns: property: random bytes never throw', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(), (b, cut) => exercise(b, cut % (b.length + 1))), { numRuns: 500 });
});

test('dns: property: mutated and cut valid packets never throw; their question survives a mutation after it', () => {
  const mutation = fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }));
  fc.assert(fc.property(packetArb, fc.array(mutation, { maxLength: 6 }), fc.nat(), (p, muts, cut) => {
    const b = Uint8Array.from(p.bytes);
    for (const [pos, v] of muts) b[pos % b.length] = v;
    const end = cut % (b.length + 1);
    exercise(b.subarray(0, end), cut % (end + 1));
    // A mutation only in the records leaves the header and question readable: a message, whatever the rest.
    const qEnd = 12 + p.name.length + 2 + 4;
    const tail = Uint8Array.from(p.bytes);
    for (const [pos, v] of muts) if (tail.length > qEnd) tail[qEnd + (pos % (tail.length - qEnd))] = v;
    const m = parseDnsMessage(tail, TS);
    assert.deepEqual([m?.stream_id, m?.dns_name, m?.dns_answers], [p.id, p.name.toLowerCase(), p.addresses.length]);
  }), { numRuns: 300 });
});
