/**
 * The direct Avro writer of ringflow.l7.v1 (collector/l7/encode.ts over
 * schemas/avro-writer.ts) writes the bytes avsc writes: the same encoder
 * with `avsc: true` goes through encodeRecord (avsc's Type.encode), and the
 * two must agree byte for byte, key and value, on every shape of record
 * (REQUEST, RESPONSE, EXCHANGE with every outcome) and every field's corner
 * (null / undefined where a default applies, empty, long and non-ASCII
 * strings, header maps, longs past 2^52 and 2^53 up to int64's ends, every
 * enum symbol), and throw where avsc throws (a value of the wrong type).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeRecord, parseType, schemaRegistry, bigLong } from '../../schemas/index.ts';
import { AvroWriter, AvroWriteError } from '../../schemas/avro-writer.ts';
import { createL7Encoder, L7_WRITER_FINGERPRINT, type L7EncoderInput, type L7Outcome } from '../../collector/l7/encode.ts';
import type { L7Message } from '../../collector/l7/types.ts';
import type { L7Context } from '../../collector/l7/tracker.ts';

const BOOT = 1_764_000_000_000_000_000n;
const TWO_63 = 1n << 63n;

// ---- generators ----

const str = fc.oneof(
  { weight: 2, arbitrary: fc.constant('') },
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }, // any code point: 2-, 3- and 4-byte UTF-8
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 60, maxLength: 300 }) }, // length varints of 2 bytes
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 60, maxLength: 200 }) },
);
/** A long as the encoder may be given it: a number (safe integer) or a BigInt in int64, edges weighted. */
const edge = (e: bigint): bigint[] => [e - 1n, e, e + 1n, -e - 1n, -e, -e + 1n];
const longEdges = [0n, 63n, 64n, ...edge(1n << 31n), ...edge(1n << 52n), ...edge(1n << 53n), ...edge(1n << 62n), TWO_63 - 1n, -TWO_63];
const bigLongArb = fc.oneof(fc.constantFrom(...longEdges), fc.bigInt({ min: -TWO_63, max: TWO_63 - 1n }), fc.bigInt({ min: 0n, max: 1n << 40n }));
const numLongArb = fc.oneof(fc.constantFrom(0, -1, 2 ** 52 - 1, 2 ** 52, -(2 ** 52), -(2 ** 52) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
  fc.integer(), fc.maxSafeInteger());
const longArb = fc.oneof(bigLongArb, numLongArb);
const intArb = fc.oneof(fc.constantFrom(0, -1, 63, 64, -64, -65, 2 ** 31 - 1, -(2 ** 31)), fc.integer());
const headersArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant({}) },
  { weight: 5, arbitrary: fc.dictionary(str, str, { maxKeys: 6 }) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ unit: 'grapheme-ascii', maxLength: 8 }), fc.string({ unit: 'grapheme-ascii', minLength: 100, maxLength: 600 }), { maxKeys: 70 }) }, // past the 4 KiB scratch
);
const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null, freq: 3 });

const PROTOCOLS = ['HTTP1', 'HTTP2', 'GRPC', 'DNS', 'UNKNOWN'] as const;
const OUTCOMES: L7Outcome[] = ['RESPONDED', 'CLOSED', 'LOST', 'REQ_ONLY'];

/**
 * Wraps a field's generator: sometimes undefined (the schema default, when
 * the field has one, else avsc throws) or a value of the wrong type.
 */
const BAD = fc.oneof(fc.constant(undefined), fc.constant(null), fc.constantFrom<unknown>(1.5, Number.NaN, 'x', 7n, 2 ** 60, TWO_63, -TWO_63 - 1n, (1n << 64n) + 3n, true, {}, [], 2 ** 31));
let badRate = 0;
const f = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.tuple(fc.noBias(fc.integer({ min: 0, max: 9999 })), a, BAD).map(([p, v, bad]) => (p < badRate * 10000 ? bad as T : v)); // noBias: fast-check leans to 0

/** A field with a schema default: undefined now and then (avsc then writes the default; so must the writer). */
const d = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 6 });

/**
 * A message. `exchanged`: the response of an EXCHANGE, whose start, end,
 * body_bytes, headers and truncated flag become resp_* fields, which have
 * defaults (in a REQUEST or RESPONSE record of its own they have none).
 */
function messageArb(kind: 'REQUEST' | 'RESPONSE', exchanged = false): fc.Arbitrary<L7Message> {
  const r = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => (exchanged ? d(a) : a);
  return fc.record({
    protocol: f(fc.constantFrom(...PROTOCOLS)),
    kind: f(fc.constant(kind)),
    start_ns: f(r(longArb)),
    end_ns: f(r(longArb)),
    stream_id: f(longArb),
    method: f(d(nullable(str))),
    path: f(d(nullable(str))),
    status: f(d(nullable(intArb))),
    headers: f(d(headersArb)),
    grpc_service: f(d(nullable(str))),
    grpc_method: f(d(nullable(str))),
    grpc_status: f(d(nullable(intArb))),
    dns_name: f(d(nullable(str))),
    dns_type: f(d(nullable(str))),
    dns_rcode: f(d(nullable(str))),
    dns_answers: f(d(nullable(intArb))),
    dns_retries: f(d(nullable(intArb))),
    body_bytes: f(r(longArb)),
    truncated: f(r(fc.boolean())),
    protocol_version: f(d(fc.oneof(fc.constantFrom('1.0', '1.1', ''), str))),
  }) as fc.Arbitrary<L7Message>;
}

const ctxArb: fc.Arbitrary<L7Context> = fc.record({
  pid: f(longArb),
  tgid: f(fc.integer({ min: 0, max: 2 ** 22 })), // also the containerId lookup's key
  uid: f(longArb),
  comm: f(str),
  process_name: f(d(str)),
  cgroup_id: f(longArb),
  conn_id: f(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), // u64 from the kernel, written as int64
  role: f(fc.constantFrom('UNKNOWN', 'CLIENT', 'SERVER')),
  transport: f(fc.constantFrom('UNKNOWN', 'TCP', 'UDP')),
  local_addr: f(fc.oneof(str, fc.ipV4(), fc.ipV6())),
  local_port: f(intArb),
  remote_addr: f(fc.oneof(str, fc.ipV4(), fc.ipV6())),
  remote_port: f(intArb),
}) as fc.Arbitrary<L7Context>;

/** One encoder input: a REQUEST or RESPONSE record, or an EXCHANGE with each outcome (with and without a response). */
const inputArb: fc.Arbitrary<L7EncoderInput> = fc.oneof(
  fc.record({ msg: messageArb('REQUEST'), ctx: ctxArb }),
  fc.record({ msg: messageArb('RESPONSE'), ctx: ctxArb }),
  fc.tuple(messageArb('REQUEST'), messageArb('RESPONSE', true), ctxArb, fc.constantFrom<L7Outcome>('RESPONDED', 'LOST'))
    .map(([msg, response, ctx, outcome]) => ({ msg, ctx, exchange: { response, outcome } })),
  fc.tuple(messageArb('REQUEST'), ctxArb, fc.constantFrom<L7Outcome>('CLOSED', 'LOST', 'REQ_ONLY'))
    .map(([msg, ctx, outcome]) => ({ msg, ctx, exchange: { response: null, outcome } })),
);

const hostArb = fc.oneof(fc.constantFrom('bench-host', ''), str);
const containerArb = fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9a-f]{64}$/), str);

type Outcome = { ok: true; key: string; value: Buffer } | { ok: false };
function run(f: () => { key: string; value: Buffer }): Outcome {
  try {
    return { ok: true, ...f() };
  } catch {
    return { ok: false };
  }
}

/** How many inputs each encoder took and refused: a generator that spoils every record (or none) would prove little. */
const seen = { encoded: 0, refused: 0 };

function same(host: string, container: string, bootTimeNs: bigint, o: L7EncoderInput): void {
  const direct = createL7Encoder({ host, bootTimeNs, containerId: () => container });
  const avsc = createL7Encoder({ host, bootTimeNs, containerId: () => container, avsc: true });
  assert.equal(direct.direct, true);
  assert.equal(avsc.direct, false);
  const a = run(() => avsc.encode(o));
  const d = run(() => direct.encode(o));
  assert.equal(d.ok, a.ok, a.ok ? 'avsc encodes it, the writer threw' : 'avsc threw, the writer encoded it');
  seen[a.ok ? 'encoded' : 'refused']++;
  if (a.ok && d.ok) {
    assert.equal(d.key, a.key);
    if (!d.value.equals(a.value)) assert.fail(`bytes differ\n avsc   ${a.value.toString('hex')}\n direct ${d.value.toString('hex')}`);
  }
}

test('l7 writer: the current l7.avsc is the one the writer follows (a changed schema falls back to avsc: update the writer and L7_WRITER_FINGERPRINT)', () => {
  const schema = schemaRegistry().byId('l7')!;
  assert.equal(schema.fingerprint, L7_WRITER_FINGERPRINT, `l7.avsc is now 0x${schema.fingerprint.toString(16)}`);
  assert.equal(createL7Encoder({ host: 'h', bootTimeNs: BOOT }).direct, true);
});

test('l7 writer: byte-identical to avsc on valid records of every kind, outcome and field corner', () => {
  badRate = 0;
  seen.encoded = seen.refused = 0;
  fc.assert(fc.property(hostArb, containerArb, bigLongArb, inputArb, (host, container, boot, o) => same(host, container, boot, o)), { numRuns: 3000, seed: 20261207 });
  assert.deepEqual(seen, { encoded: 3000, refused: 0 });
});

test('l7 writer: with a wrong value or undefined in any field, encodes what avsc encodes (defaults) and throws where avsc throws', () => {
  badRate = 0.02; // about one spoilt field per record
  try {
    seen.encoded = seen.refused = 0;
    fc.assert(fc.property(hostArb, containerArb, bigLongArb, inputArb, (host, container, boot, o) => same(host, container, boot, o)), { numRuns: 4000, seed: 7 });
    assert.ok(seen.encoded > 1000 && seen.refused > 1000, `encoded ${seen.encoded}, refused ${seen.refused}`);
  } finally {
    badRate = 0;
  }
});

test('l7 writer: records handed out earlier keep their bytes while later ones are written (views of a shared slab; some larger than it)', () => {
  const direct = createL7Encoder({ host: 'h', bootTimeNs: BOOT, containerId: () => 'c' });
  const avsc = createL7Encoder({ host: 'h', bootTimeNs: BOOT, containerId: () => 'c', avsc: true });
  badRate = 0;
  const big = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`h${i}`, 'v'.repeat(500)])); // ~20 KiB
  const inputs = fc.sample(inputArb, { numRuns: 600, seed: 99 }).map((o, i) => (i % 97 === 50 ? { ...o, msg: { ...o.msg, headers: big } } : o));
  const kept = inputs.map((o) => direct.encode(o).value);
  assert.ok(kept.some((v) => v.length > 16 * 1024), 'a record larger than a slab');
  assert.ok(kept.length > 200 && new Set(kept.map((v) => v.buffer)).size < kept.length / 10, 'records share slabs');
  inputs.forEach((o, i) => assert.ok(kept[i]!.equals(avsc.encode(o).value), `record ${i} changed after it was handed out`));
});

test('l7 writer: what it writes decodes to the values given (one exchange, every field set)', () => {
  const enc = createL7Encoder({ host: 'höst', bootTimeNs: BOOT, containerId: () => 'c0ffee' });
  const req: L7Message = {
    protocol: 'HTTP1', kind: 'REQUEST', start_ns: (1n << 60n) + 5n, end_ns: (1n << 53n) + 1n, stream_id: 3, method: 'GET', path: '/ü/€/😀',
    status: null, headers: { host: 'a', traceparent: 'x'.repeat(200) }, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null, body_bytes: 0, truncated: false, protocol_version: '1.1',
  };
  const resp: L7Message = { ...req, kind: 'RESPONSE', method: null, path: null, status: 503, headers: {}, start_ns: 9n, end_ns: 10n, body_bytes: 2 ** 40, truncated: true, protocol_version: '1.0' };
  const ctx: L7Context = {
    pid: 1, tgid: 2, uid: -1, comm: 'wörker', process_name: 'svc', cgroup_id: 1n << 62n, conn_id: (1n << 64n) - 1n, role: 'SERVER', transport: 'TCP',
    local_addr: '::1', local_port: 8080, remote_addr: '10.0.0.1', remote_port: 65535,
  };
  const v = decodeRecord(enc.encodeExchange(req, resp, ctx, 'LOST').value).value;
  assert.deepEqual(
    [v.ts_ns, v.end_ns, v.uid, v.comm, v.container_id, v.cgroup_id, v.conn_id, v.role, v.path, v.status, v.headers, v.kind, v.body_bytes, v.resp_body_bytes, v.resp_truncated, v.resp_protocol_version, v.outcome, v.host, v.boot_time_ns],
    [(1n << 60n) + 5n, (1n << 53n) + 1n, -1n, 'wörker', 'c0ffee', 1n << 62n, -1n, 'SERVER', '/ü/€/😀', 503, { host: 'a', traceparent: 'x'.repeat(200) }, 'EXCHANGE', 0n, BigInt(2 ** 40), true, '1.0', 'LOST', 'höst', BOOT]);
});

test('l7 writer: a lone UTF-16 surrogate is written as U+FFFD (avsc writes CESU bytes in short strings; readers get U+FFFD either way)', () => {
  const enc = createL7Encoder({ host: 'h', bootTimeNs: BOOT });
  const msg: L7Message = {
    protocol: 'HTTP1', kind: 'REQUEST', start_ns: 1n, end_ns: 2n, stream_id: 0, method: 'GET', path: 'a\ud800b', status: null, headers: {},
    grpc_service: null, grpc_method: null, grpc_status: null, dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null, body_bytes: 0, truncated: false,
  };
  const ctx: L7Context = { pid: 1, tgid: 1, uid: 0, comm: 'c', process_name: '', cgroup_id: 0n, conn_id: 1n, role: 'CLIENT', transport: 'TCP', local_addr: '', local_port: 0, remote_addr: '', remote_port: 0 };
  assert.equal(decodeRecord(enc.encode({ msg, ctx }).value).value.path, 'a\ufffdb');
});

// ---- the primitives on their own, against avsc's types ----

const LONG = parseType('long');
const INT = parseType('int');

test('avro writer: long and int at every varint length and sign edge equal avsc (BigInt long, int)', () => {
  const w = new AvroWriter(16);
  const longs: (bigint | number)[] = [...longEdges, 0, -1, 1, 2 ** 52 - 1, -(2 ** 52), 2 ** 52, -(2 ** 52) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER];
  for (let k = 0n; k < 63n; k += 7n) longs.push((1n << k) - 1n, 1n << k, -(1n << k), -(1n << k) - 1n);
  for (const v of longs) {
    w.start(0);
    w.long(v, 'x');
    assert.equal(w.copy().toString('hex'), LONG.toBuffer(v).toString('hex'), `long ${v}`);
    assert.equal(bigLong.isValid(v), true);
  }
  for (const v of [0, 1, -1, 63, -64, 64, -65, 8191, 8192, 2 ** 31 - 1, -(2 ** 31)]) {
    w.start(0);
    w.int(v, 'x');
    assert.equal(w.copy().toString('hex'), INT.toBuffer(v).toString('hex'), `int ${v}`);
  }
  for (const bad of [TWO_63, -TWO_63 - 1n, 2 ** 53, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1', null, undefined]) {
    assert.throws(() => w.long(bad as bigint, 'f'), AvroWriteError, `long ${String(bad)}`);
  }
  for (const bad of [2 ** 31, -(2 ** 31) - 1, 1.5, Number.NaN, '1', null]) assert.throws(() => w.int(bad as number, 'f'), AvroWriteError, `int ${String(bad)}`);
});

test('avro writer: u64 writes what long(BigInt.asIntN(64, v)) writes, at the edges of 2^52, 2^63 and 2^64', () => {
  const w = new AvroWriter(16);
  const TWO_64 = 1n << 64n;
  const u64s = [0n, 1n, 127n, 128n, ...edge(1n << 52n), ...edge(1n << 53n), TWO_63 - 1n, TWO_63, TWO_63 + 1n, TWO_64 - 1n, TWO_64, TWO_64 + 5n, -1n, -TWO_63, 0xdeadbeefn << 32n | 7n];
  for (const v of u64s) {
    w.start(0);
    w.u64(v, 'x');
    assert.equal(w.copy().toString('hex'), LONG.toBuffer(BigInt.asIntN(64, v)).toString('hex'), `u64 ${v}`);
  }
  assert.throws(() => w.u64(5 as unknown as bigint, 'x'), TypeError);
});

test('avro writer: a record larger than the scratch buffer is written whole after grow()', () => {
  const w = new AvroWriter(8);
  const s = 'é'.repeat(50) + 'a'.repeat(50);
  for (;;) {
    w.start(0);
    w.string(s, 's');
    w.stringMap({ k: s }, 'm');
    if (w.fits()) break;
    w.grow();
  }
  const t = parseType({ type: 'record', name: 'R', fields: [{ name: 's', type: 'string' }, { name: 'm', type: { type: 'map', values: 'string' } }] });
  assert.equal(w.copy().toString('hex'), t.toBuffer({ s, m: { k: s } }).toString('hex'));
});
