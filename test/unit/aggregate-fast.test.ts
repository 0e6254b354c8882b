/**
 * The aggregation fast path (processor/fast-decode.ts + WindowAggregator.addAt,
 * as stage 2 uses them) against the avsc path (decodeCurrent +
 * WindowAggregator.add): the same framed records, random field values
 * including the 64-bit and 2^53 boundaries, every event schema the METRICS
 * table aggregates and every history version, must give deep-equal closed
 * points and equal counters. Records the fast decoder declines (corrupt
 * bodies, other schemas) must be exactly the ones it returns null for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { METRICS, WindowAggregator, type EventBase, type SeriesPoint } from '../../processor/aggregate.ts';
import { createFastDecoder, eventTimeNs, type FastDecoder } from '../../processor/fast-decode.ts';
import { decodeCurrent, encodeRecord, schemaRegistry, type RegisteredSchema } from '../../schemas/index.ts';
import { SPANS_TOPIC } from '../../processor/topics.ts';
import { mulberry32 } from '../support/prng.ts';

const reg = schemaRegistry();
const EVENT_TOPICS = [...new Set(METRICS.map((m) => m.topic))].filter((t) => t !== SPANS_TOPIC);
const CURRENT = EVENT_TOPICS.map((t) => reg.byTopic(t)!);
const WRITERS: RegisteredSchema[] = [...CURRENT, ...reg.history.filter((h) => EVENT_TOPICS.includes(h.topic))];

const rng = mulberry32;

const TWO_63 = 1n << 63n;
/** Longs around every boundary the decoders treat differently: varint lengths, 2^53, 2^63 (u64 as signed). */
const LONG_EDGES: bigint[] = [0n, 1n, -1n, 63n, 64n, -64n, -65n, (1n << 48n) - 1n, 1n << 48n, (1n << 49n) - 1n, 1n << 49n, (1n << 51n) + 1n, (1n << 52n) - 1n, 1n << 52n, -(1n << 52n), -(1n << 52n) - 1n, (1n << 52n) + 1n,
  (1n << 53n) - 1n, 1n << 53n, -(1n << 53n) + 1n, -(1n << 53n), (1n << 53n) + 1n, (1n << 55n) + 3n, (1n << 56n) - 1n, 1n << 56n, TWO_63 - 1n, -TWO_63, -TWO_63 + 1n];
const INT_EDGES = [0, 1, -1, 63, 64, -65, 2 ** 31 - 1, -(2 ** 31), 443, 65535];
const STRINGS = ['', 'a', 'bash', 'kworker/0:1', 'x'.repeat(15), 'é€😀', 'host-1', 'host-2', 'h'.repeat(64), 'h'.repeat(65), 'NO_SOCKET', '10.0.0.1', '::1'];

function randomLong(r: () => number, edges: number): bigint {
  if (r() < edges) return LONG_EDGES[Math.floor(r() * LONG_EDGES.length)]!;
  const bits = Math.floor(r() * 64);
  let v = 0n;
  for (let i = 0; i < bits; i += 16) v = (v << 16n) | BigInt(Math.floor(r() * 65536));
  v = BigInt.asIntN(64, v & ((1n << BigInt(bits)) - 1n));
  return r() < 0.2 ? -v : v;
}

function randomString(r: () => number): string {
  if (r() < 0.8) return STRINGS[Math.floor(r() * STRINGS.length)]!;
  const n = Math.floor(r() * 80);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCodePoint(r() < 0.9 ? 32 + Math.floor(r() * 95) : 0xa0 + Math.floor(r() * 0x3000));
  return s;
}

/**
 * A random value of `schema`. Times: `wild` puts boundary values in ts_ns and
 * boot_time_ns too; otherwise a few hosts' boot times and a mostly
 * increasing clock with jitter (late events, several windows).
 */
function randomRecord(schema: RegisteredSchema, r: () => number, clock: { ts: bigint }, wild: boolean): Record<string, unknown> {
  const v: Record<string, unknown> = {};
  for (const f of schema.schema.fields) {
    const t = f.type as string | { type: string; symbols: string[] };
    if (t === 'long') v[f.name] = randomLong(r, 0.3);
    else if (t === 'int') v[f.name] = r() < 0.5 ? INT_EDGES[Math.floor(r() * INT_EDGES.length)]! : Math.floor(r() * 2 ** 32) - 2 ** 31;
    else if (t === 'string') v[f.name] = randomString(r);
    else if (typeof t === 'object' && t.type === 'enum') v[f.name] = t.symbols[Math.floor(r() * t.symbols.length)];
    else throw new Error(`${schema.id}.${f.name}: field type the test does not generate`);
  }
  if (!wild) {
    const hosts = ['host-1', 'host-2', 'host-3'];
    const h = Math.floor(r() * hosts.length);
    v.host = hosts[h];
    v.boot_time_ns = 1_764_000_000_000_000_000n + BigInt(h) * 123_456_789n;
    clock.ts += BigInt(Math.floor(r() * 40_000_000));
    // uptimes beyond 2^53 ns (104 days) too; some events up to 8 s behind (late at 5 s lateness)
    v.ts_ns = clock.ts - (r() < 0.1 ? BigInt(Math.floor(r() * 8e9)) : 0n);
    if (r() < 0.5) v.comm = ['bash', 'sshd', 'kworker/0:1', 'é€😀'][Math.floor(r() * 4)];
  }
  return v;
}

function records(seed: number, n: number, wild: boolean, startTs: bigint): { topic: string; buf: Buffer }[] {
  const r = rng(seed);
  const clock = { ts: startTs };
  const out: { topic: string; buf: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const w = WRITERS[Math.floor(r() * WRITERS.length)]!;
    out.push({ topic: w.topic, buf: encodeRecord(w, randomRecord(w, r, clock, wild)) });
  }
  return out;
}

/** The avsc path: what stage 2 did before the fast decoder. */
function slowPath(recs: { topic: string; buf: Buffer }[]): { points: SeriesPoint[]; counters: unknown } {
  const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 5_000 });
  const points: SeriesPoint[] = [];
  for (const { topic, buf } of recs) agg.add({ topic, value: decodeCurrent(buf).value as unknown as EventBase });
  points.push(...agg.advance(), ...agg.advanceTo(1n << 70n));
  return { points, counters: { ...agg.counters } };
}

/** The fast path, as processor/partition.ts runs it. */
function fastPath(recs: { topic: string; buf: Buffer }[], fast: FastDecoder): { points: SeriesPoint[]; counters: unknown; declined: number } {
  const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 5_000 });
  let declined = 0;
  for (const { topic, buf } of recs) {
    const d = fast.decode(buf);
    if (d !== null) {
      agg.addAt(topic, d.value as unknown as EventBase, eventTimeNs(d.value));
    } else {
      declined++;
      agg.add({ topic, value: decodeCurrent(buf).value as unknown as EventBase });
    }
  }
  const points = [...agg.advance(), ...agg.advanceTo(1n << 70n)];
  return { points, counters: { ...agg.counters }, declined };
}

test('every event schema of METRICS and its history versions have a fast decoder', () => {
  assert.deepEqual(EVENT_TOPICS.sort(), ['ringflow.block.io.v1', 'ringflow.fs.io.v1', 'ringflow.sched.cswitch.v1', 'ringflow.sched.runqlat.v1', 'ringflow.tcp.connect.v1', 'ringflow.tcp.drop.v1', 'ringflow.tcp.retransmit.v1']);
  assert.ok(WRITERS.length > CURRENT.length, 'a history version is exercised');
  const fast = createFastDecoder();
  const r = rng(7);
  for (const w of WRITERS) assert.notEqual(fast.decode(encodeRecord(w, randomRecord(w, r, { ts: 0n }, true))), null, w.id);
});

test('fast decode gives avsc\'s values, longs as numbers when exact and BigInts otherwise', () => {
  const fast = createFastDecoder();
  for (const { buf } of records(1, 3000, true, 0n)) {
    const want = decodeCurrent(buf);
    const got = fast.decode(buf)!;
    assert.equal(got.schema, want.schema);
    assert.deepEqual(Object.keys(got.value), Object.keys(want.value), 'current schema field order');
    for (const [k, w] of Object.entries(want.value)) {
      const g = got.value[k];
      if (typeof w === 'bigint') {
        assert.equal(BigInt(g as number | bigint), w, k);
        assert.equal(typeof g, w >= -(2n ** 52n) && w < 2n ** 52n ? 'number' : 'bigint', `${k} = ${w}`);
        assert.equal(Number(g), Number(w), k);
        assert.equal(`${g}`, `${w}`, k);
      } else {
        assert.equal(g, w, k);
      }
    }
    assert.equal(eventTimeNs(got.value), (want.value.boot_time_ns as bigint) + (want.value.ts_ns as bigint));
  }
});

for (const [name, seed, wild, startTs] of [
  ['realistic clock, boundary values elsewhere', 2, false, 3_600_000_000_000n],
  ['uptime beyond 2^53 ns', 3, false, (1n << 53n) - 20_000_000_000n],
  ['boundary values in the times too', 4, true, 0n],
] as const) {
  test(`fast path and avsc path aggregate identically: ${name}`, () => {
    const recs = records(seed, 20_000, wild, startTs);
    const want = slowPath(recs);
    const got = fastPath(recs, createFastDecoder());
    assert.equal(got.declined, 0);
    assert.ok(want.points.length > 50, `${want.points.length} points`);
    assert.deepEqual(got.points, want.points);
    assert.deepEqual(got.counters, want.counters);
    const c = want.counters as { events: number; late: number; invalid: number };
    if (!wild) assert.ok(c.late > 0 && c.invalid > 0 && c.events > 0, JSON.stringify(c));
  });
}

test('records the fast decoder declines are exactly those avsc rejects, or of other schemas', () => {
  const fast = createFastDecoder();
  const r = rng(5);
  const runq = reg.byTopic('ringflow.sched.runqlat.v1')!;
  const good = encodeRecord(runq, randomRecord(runq, r, { ts: 0n }, true));
  const cases: [string, Buffer][] = [
    ['truncated', good.subarray(0, good.length - 1)],
    ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
    ['header only', good.subarray(0, 10)],
    ['bad magic', Buffer.concat([Buffer.from([0xc3, 0x02]), good.subarray(2)])],
    ['unknown fingerprint', Buffer.concat([good.subarray(0, 2), Buffer.alloc(8, 0xab), good.subarray(10)])],
    ['varint of 11 bytes', Buffer.concat([good.subarray(0, 10), Buffer.alloc(10, 0xff), Buffer.from([1]), good.subarray(11)])],
  ];
  // a bad enum index: with every long 0 and comm empty each field is one byte, kind the 10th
  const small = encodeRecord(runq, { cpu: 0, pid: 0n, tgid: 0n, uid: 0n, ts_ns: 0n, cgroup_id: 0n, comm: '', latency_ns: 0n, prev_pid: 0n, kind: 'WAKEUP', host: 'h', boot_time_ns: 0n });
  assert.equal(small.length, 10 + 13);
  assert.notEqual(fast.decode(small), null);
  const badEnum = Buffer.from(small);
  badEnum[10 + 9] = 40; // zigzag 20: no such symbol
  cases.push(['bad enum index', badEnum]);
  for (const [name, buf] of cases) {
    assert.equal(fast.decode(buf), null, name);
    assert.throws(() => decodeCurrent(buf), Error, name);
  }
  assert.notEqual(fast.decode(good), null);
  // records of schemas with records, arrays or unions: left to avsc
  const stats = reg.byTopic('ringflow.collector.stats.v1');
  if (stats) {
    const s = reg.byTopic(SPANS_TOPIC)!;
    for (const sch of [stats, s]) {
      const probe = Buffer.concat([Buffer.from([0xc3, 0x01]), sch.fingerprintBytes, Buffer.from([0])]);
      assert.equal(fast.decode(probe), null, sch.id);
    }
  }
});
