/**
 * Schema identity and framing: CRC-64-AVRO vectors of the Avro project
 * (share/test/data/schema-tests.txt), single-object round trips, every
 * WireError code, reader-side evolution, and the pinned binary fixtures.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fingerprint64, fingerprintBytes, parsingCanonicalForm } from '../../schemas/rabin.ts';
import { bigLong, encodeLong, parseType, registerSchema, schemaRegistry, type RecordSchema, type RegisteredSchema } from '../../schemas/registry.ts';
import { SingleObjectFormat, WireError, decodeAs, decodeRecord, encodeRecord, resolve, type Framed, type WireFormat, type WireErrorCode } from '../../schemas/wire.ts';
import { buildBatch, createTranscoder } from '../../collector/events/transcode.ts';
import { toJsonLine } from '../../collector/events/json.ts';
import { rawRecord } from '../fixtures/raw.ts';
import { mulberry32 } from '../support/prng.ts';
import { FIXTURE_BOOT_NS, FIXTURE_DROP_REASONS, FIXTURE_HOST, fixtureCases } from '../fixtures/cases.ts';

const registry = schemaRegistry();
const byId = (id: string): RegisteredSchema => registry.byId(id)!;
const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures');

// [input schema, its Parsing Canonical Form, signed CRC-64-AVRO (as Java prints it) or null]
const SPEC_VECTORS: [string, string, string | null][] = [
  ['"null"', '"null"', '7195948357588979594'],
  ['{"type":"null"}', '"null"', null],
  ['"boolean"', '"boolean"', '-6970731678124411036'],
  ['"int"', '"int"', '8247732601305521295'],
  ['{"type":"int"}', '"int"', null],
  ['"long"', '"long"', '-3434872931120570953'],
  ['"float"', '"float"', '5583340709985441680'],
  ['"double"', '"double"', '-8181574048448539266'],
  ['"bytes"', '"bytes"', '5746618253357095269'],
  ['"string"', '"string"', '-8142146995180207161'],
  ['[  ]', '[]', '-1241056759729112623'],
  ['[ "int"  ]', '["int"]', '-5232228896498058493'],
  ['[ "int" , {"type":"boolean"} ]', '["int","boolean"]', '5392556393470105090'],
  ['{"fields":[], "type":"record", "name":"foo"}', '{"name":"foo","type":"record","fields":[]}', '-4824392279771201922'],
  ['{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', '{"name":"x.y.foo","type":"record","fields":[]}', '5916914534497305771'],
  ['{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}', '{"name":"a.b.foo","type":"record","fields":[]}', '-4616218487480524110'],
  ['{"fields":[], "type":"record", "name":"foo", "doc":"Useful info"}', '{"name":"foo","type":"record","fields":[]}', '-4824392279771201922'],
  ['{"fields":[], "type":"record", "name":"foo", "aliases":["foo","bar"]}', '{"name":"foo","type":"record","fields":[]}', '-4824392279771201922'],
  ['{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}', '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}', '7843277075252814651'],
  ['{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true}, {"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo"}',
    '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}', '-4860222112080293046'],
  ['{"type":"enum", "name":"foo", "symbols":["A1"]}', '{"name":"foo","type":"enum","symbols":["A1"]}', '-6342190197741309591'],
  ['{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}', '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}', '-4448647247586288245'],
  ['{"name":"foo","type":"fixed","size":15}', '{"name":"foo","type":"fixed","size":15}', '1756455273707447556'],
  ['{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}', '{"name":"x.y.z.foo","type":"fixed","size":32}', '-3064184465700546786'],
  ['{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}', '-589620603366471059'],
  ['{ "values":"string", "type":"map"}', '{"type":"map","values":"string"}', '-8732877298790414990'],
  ['{"name":"PigValue","type":"record", "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
    '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}', '-1759257747318642341'],
];

test('wire: Parsing Canonical Form and CRC-64-AVRO match the Avro spec vectors', () => {
  for (const [input, canonical, fp] of SPEC_VECTORS) {
    assert.equal(parsingCanonicalForm(input), canonical, input);
    if (fp !== null) assert.equal(BigInt.asIntN(64, fingerprint64(canonical)).toString(), fp, canonical);
  }
  // Single-object header of "int", as pinned by the Avro Ruby tests.
  assert.equal(Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprintBytes(fingerprint64('"int"'))]).toString('hex'), 'c3018f5c393f1ad57572');
});

test('wire: every registered schema: canonical form = avsc canonical JSON, fingerprint of it, unique', () => {
  const seen = new Set<bigint>();
  for (const s of registry.all) {
    assert.equal(s.canonical, JSON.stringify(s.type.schema({ exportAttrs: false })), s.id);
    assert.equal(s.fingerprint, fingerprint64(s.canonical));
    assert.equal(s.fingerprintBytes.readBigUInt64LE(0), s.fingerprint);
    assert.ok(!seen.has(s.fingerprint));
    seen.add(s.fingerprint);
    assert.equal(registry.byFingerprint(s.fingerprint), s);
    assert.equal(registry.byTopic(s.topic), s);
    if (s.eventType !== null) assert.equal(registry.byEventType(s.eventType), s);
    // Docs and custom attributes do not change identity.
    assert.equal(parsingCanonicalForm(JSON.parse(JSON.stringify(s.schema, (k, v) => (k === 'doc' || k === 'c' || k === 'ringflow' ? undefined : v)))), s.canonical);
  }
});

const stats = {
  host: 'h1', boot_time_ns: 1_700_000_000_000_000_000n, time_ns: 1_732_000_000_000_000_001n, interval_ns: 10_000_000_000n,
  events: [{ event: 'ringflow.tcp.drop.v1', read: 5n, kernel_drops: 0n, user_drops: 1n, produced: 4n }],
  send_errors: 0n, pending: 3n, ring_bytes: 2n ** 40n,
  undecodable: 0n, drop_reasons: [], l7_parse_failures: [], clamped: 0n,
  run_id: '', run_start_ns: 0n, previous_run_id: '', previous_run_end_ns: 0n, kernel_losses: [], kernel_counts: [],
};

test('wire: single-object round trip (avsc encoder and the transcoder)', () => {
  const s = byId('collector.stats');
  const buf = encodeRecord(s, stats);
  assert.deepEqual(buf.subarray(0, 2), Buffer.from([0xc3, 0x01]));
  assert.deepEqual(buf.subarray(2, 10), s.fingerprintBytes);
  const { schema, value } = decodeRecord(buf);
  assert.equal(schema, s);
  assert.deepEqual({ ...value, events: (value.events as object[]).map((e) => ({ ...e })) }, stats);
  // Safe-integer numbers are accepted for longs when encoding.
  assert.deepEqual(encodeRecord(s, { ...stats, pending: 3 }), buf);

  const t = createTranscoder({ host: 'h1', bootTimeNs: 5n });
  const rec = t.transcodeRecord(rawRecord(byId('sched.runqlat'), { pid: 1, kind: 'WAKEUP_NEW' }))!;
  const framed = new SingleObjectFormat().decode(rec.value);
  assert.equal(framed.schema, byId('sched.runqlat'));
  assert.equal(decodeRecord(rec.value).value.kind, 'WAKEUP_NEW');
});

test('wire: encodeRecord past its scratch buffer, and every result its own bytes', () => {
  const s = byId('collector.stats');
  const norm = (v: Record<string, unknown>) => ({ ...v, events: (v.events as object[]).map((e) => ({ ...e })) });
  // 3000 events is ~150 KB: more than the scratch buffer holds, so it grows once
  const sizes = [1, 3000, 2, 5000, 1];
  const values = sizes.map((n, i) => ({
    ...stats, host: `h${i}`,
    events: Array.from({ length: n }, (_, k) => ({ ...stats.events[0]!, event: `ringflow.e${k}.v1`, read: BigInt(k) })),
  }));
  const bufs = values.map((v) => encodeRecord(s, v));
  // decoded after all were encoded: a later record never overwrote an earlier one
  bufs.forEach((b, i) => {
    assert.deepEqual(norm(decodeRecord(b).value), values[i], `record ${i}`);
    assert.deepEqual(b.subarray(0, 10), Buffer.concat([Buffer.from([0xc3, 0x01]), s.fingerprintBytes]));
  });
  assert.ok(bufs[1]!.length > 64 * 1024, String(bufs[1]!.length));
  // a value avsc refuses throws, as before, and the next record is whole
  assert.throws(() => encodeRecord(s, { ...stats, pending: 'x' }));
  assert.deepEqual(norm(decodeRecord(encodeRecord(s, stats)).value), stats);
});

/** The Avro spec's long encoding, bit by bit in BigInt: the reference encodeLong's fast paths must match. */
function referenceLong(v: bigint): number[] {
  let n = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
  const out: number[] = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

test('wire: long varints, both fast paths and every boundary, as the spec encodes them', () => {
  const edges = [0n, 1n, -1n, 63n, -64n, 64n, -65n, 127n, 128n, 8191n, 8192n, (1n << 31n) - 1n, 1n << 31n, -(1n << 31n),
    (1n << 32n) - 1n, 1n << 32n, (1n << 52n) - 1n, 1n << 52n, -(1n << 52n), -(1n << 52n) - 1n, (1n << 53n) - 1n,
    -(1n << 53n) + 1n, 1n << 62n, -(1n << 62n), (1n << 63n) - 1n, -(1n << 63n), 1_764_000_000_000_000_000n];
  const rnd = mulberry32(7);
  const random = Array.from({ length: 5000 }, () => {
    const bits = BigInt(1 + Math.floor(rnd() * 64));
    const mag = (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n | BigInt(Math.floor(rnd() * 2 ** 32))) & ((1n << bits) - 1n);
    return BigInt.asIntN(64, rnd() < 0.5 ? -mag : mag);
  });
  for (const v of [...edges, ...random]) {
    const want = referenceLong(v);
    assert.deepEqual([...encodeLong(v)], want, `bigint ${v}`);
    if (Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v) assert.deepEqual([...encodeLong(Number(v))], want, `number ${v}`);
    // through avsc: a whole buffer of one long, read back exactly
    assert.equal(bigLong.fromBuffer(bigLong.toBuffer(v)), v);
  }
});

function wireError(fn: () => unknown, code: WireErrorCode): void {
  assert.throws(fn, (err: unknown) => err instanceof WireError && err.code === code && err.retriable === false, code);
}

test('wire: every WireError code', () => {
  const good = encodeRecord(byId('collector.stats'), stats);
  wireError(() => decodeRecord(Buffer.alloc(0)), 'TRUNCATED');
  wireError(() => decodeRecord(Buffer.from([0xc3])), 'TRUNCATED');
  wireError(() => decodeRecord(good.subarray(0, 9)), 'TRUNCATED');
  wireError(() => decodeRecord(Buffer.from([0x00, 0x00, 0x00, 0x00, 0x01, 0x02])), 'BAD_MAGIC'); // Confluent framing
  wireError(() => decodeRecord(Buffer.from([0xc3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0])), 'BAD_MAGIC');
  const unknown = Buffer.from(good);
  unknown.writeBigUInt64LE(0x0123456789abcdefn, 2);
  wireError(() => decodeRecord(unknown), 'UNKNOWN_SCHEMA');
  wireError(() => decodeRecord(good.subarray(0, good.length - 3)), 'TRUNCATED'); // body cut
  wireError(() => decodeRecord(Buffer.concat([good, Buffer.from([0])])), 'BAD_BODY'); // trailing byte
  const runq = createTranscoder({ host: 'h', bootTimeNs: 0n }).transcodeRecord(rawRecord(byId('sched.runqlat'), { comm: 'x' }))!.value;
  const badEnum = Buffer.from(runq);
  // Fields before kind: cpu pid tgid uid ts_ns cgroup_id (1 byte each when 0), comm "x" (2), latency_ns, prev_pid.
  const kindAt = 10 + 6 + 2 + 2;
  assert.equal(badEnum[kindAt], 0);
  badEnum[kindAt] = 0x7e; // enum index 63
  wireError(() => decodeRecord(badEnum), 'BAD_BODY');
  const err = (() => { try { decodeRecord(badEnum); } catch (e) { return e as WireError; } return undefined; })();
  assert.ok(err?.cause instanceof Error);
});

test('wire: another framing fits the WireFormat interface (transcoder and decoder)', () => {
  // A toy framing: magic 0x00 + u8 index into the registry (a Schema Registry format would use a 4-byte id).
  const toy: WireFormat = {
    name: 'toy',
    headerSize: () => 2,
    writeHeader: (schema, buf, offset) => {
      buf[offset] = 0;
      buf[offset + 1] = registry.all.indexOf(schema);
      return offset + 2;
    },
    decode: (buf): Framed => {
      if (buf[0] !== 0) throw new WireError('BAD_MAGIC', 'toy');
      const schema = registry.all[buf[1]!];
      if (!schema) throw new WireError('UNKNOWN_SCHEMA', 'toy');
      return { schema, body: buf.subarray(2) };
    },
  };
  const t = createTranscoder({ host: 'h', bootTimeNs: 1n, format: toy });
  const raw = rawRecord(byId('block.io'), { dev_major: 8, op: 'FLUSH' });
  const rec = t.transcodeRecord(raw)!;
  assert.deepEqual(rec.value.subarray(0, 2), Buffer.from([0, registry.all.indexOf(byId('block.io'))]));
  const { value } = decodeRecord(rec.value, toy);
  assert.equal(value.op, 'FLUSH');
  const single = createTranscoder({ host: 'h', bootTimeNs: 1n }).transcodeRecord(raw)!;
  assert.deepEqual(rec.value.subarray(2), single.value.subarray(10));
});

function withField(schema: RecordSchema, field: object, at?: number): RecordSchema {
  const fields = [...schema.fields];
  fields.splice(at ?? fields.length, 0, field as RecordSchema['fields'][number]);
  return { ...schema, fields };
}

test('wire: evolution: a newer reader fills a field the writer lacked with its default', () => {
  const writer = byId('sched.runqlat');
  const reader = parseType(withField(writer.schema, { name: 'numa_node', type: 'int', default: -1, doc: 'NUMA node' }, 7));
  const t = createTranscoder({ host: 'h', bootTimeNs: 7n });
  const framed = t.transcodeRecord(rawRecord(writer, { tgid: 12, latency_ns: 2n ** 55n, kind: 'PREEMPTED' }))!.value;
  const { schema, value } = decodeAs(reader, framed);
  assert.equal(schema, writer);
  assert.equal(value.numa_node, -1);
  assert.equal(value.latency_ns, 2n ** 55n);
  assert.equal(value.kind, 'PREEMPTED');
  assert.equal(value.tgid, 12n);
  assert.equal(resolve(reader, writer), resolve(reader, writer)); // cached

  // The other way round: a record of an older writer (without a field) read with the registered reader.
  const older = registerSchema('sched.cswitch.v0', { ...byId('sched.cswitch').schema, fields: byId('sched.cswitch').schema.fields.filter((f) => f.name !== 'voluntary') });
  const readerNow = parseType(withField({ ...byId('sched.cswitch').schema, fields: byId('sched.cswitch').schema.fields.filter((f) => f.name !== 'voluntary') }, { name: 'voluntary', type: 'int', default: 0, doc: 'x' }, 9));
  const body = older.type.toBuffer({ cpu: 0, pid: 1n, tgid: 1n, uid: 0n, ts_ns: 5n, cgroup_id: 0n, comm: 'a', off_cpu_ns: 9n, prev_pid: 2n, host: 'h', boot_time_ns: 0n });
  assert.equal(resolve(readerNow, older).decode(body).voluntary, 0);
});

test('wire: evolution: an enum symbol the reader does not know becomes its default', () => {
  const writer = byId('block.io');
  const readerSchema = JSON.parse(JSON.stringify(writer.schema)) as { fields: { name: string; type: { symbols?: string[] } }[] };
  readerSchema.fields.find((f) => f.name === 'op')!.type.symbols = ['READ', 'WRITE', 'FLUSH', 'OTHER'];
  const reader = parseType(readerSchema);
  const t = createTranscoder({ host: 'h', bootTimeNs: 0n });
  const framed = t.transcodeRecord(rawRecord(writer, { op: 'DISCARD' }))!.value;
  assert.equal(decodeAs(reader, framed).value.op, 'OTHER');
  assert.equal(decodeAs(reader, t.transcodeRecord(rawRecord(writer, { op: 'WRITE' }))!.value).value.op, 'WRITE');
});

test('wire: pinned fixtures decode to the expected records and re-encode byte for byte', () => {
  const expected = fs.readFileSync(path.join(FIXTURES, 'expected.jsonl'), 'utf8').trim().split('\n');
  const cases = fixtureCases(registry);
  assert.equal(cases.length, expected.length);
  const t = createTranscoder({ host: FIXTURE_HOST, bootTimeNs: FIXTURE_BOOT_NS, dropReasonNames: FIXTURE_DROP_REASONS });
  cases.forEach((c, i) => {
    const bin = fs.readFileSync(path.join(FIXTURES, `${c.name}.bin`));
    const { schema, value } = decodeRecord(bin);
    assert.equal(schema.id, c.schema);
    assert.equal(toJsonLine(schema, value), expected[i], c.name);
    if (c.raw) {
      const raw = fs.readFileSync(path.join(FIXTURES, `${c.name}.raw`));
      assert.deepEqual(raw, c.raw, `${c.name}.raw`);
      assert.deepEqual(t.transcodeRecord(raw)!.value, bin, `${c.name}: transcoder output changed`);
      const viaBatch: Buffer[] = [];
      t.transcodeBatch(buildBatch([raw]), (_s, _k, v) => viaBatch.push(v));
      assert.deepEqual(viaBatch, [bin]);
    } else {
      assert.deepEqual(encodeRecord(schema, c.value), bin);
    }
  });
});
