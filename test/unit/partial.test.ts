/**
 * Stage 1's pre-aggregation (processor/partial.ts, aggregate.ts
 * PartialAggregator + WindowAggregator.addPartial): events -> partial
 * aggregates per (topic, host, window) and transaction -> stage 2 must give
 * deep-equal points to events -> stage 2 when nothing is late; a partial for
 * a closed window counts all its events late; raw events and partials mix
 * (rolling upgrade); a restart mid-stream replays partials exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PartialAggregator, WindowAggregator, type PartialWindow, type SeriesPoint } from '../../processor/aggregate.ts';
import { createPartitionState } from '../../processor/partition.ts';
import { decodePartial, encodePartial } from '../../processor/partial.ts';
import { eventOf } from '../../processor/repartition.ts';
import { createFastDecoder } from '../../processor/fast-decode.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { repartitionKey, SPANS_TOPIC } from '../../processor/topics.ts';
import { mulberry32 } from '../support/prng.ts';
import { replayWithCrashes } from '../support/replay.ts';

const reg = schemaRegistry();
const S = 1_000_000_000n;
const T0 = 1_764_000_000n * S;
const RUNQ = 'ringflow.sched.runqlat.v1';
const CSW = 'ringflow.sched.cswitch.v1';
const BIO = 'ringflow.block.io.v1';

const rng = mulberry32;

interface Rec {
  topic: string;
  host: string;
  value: Buffer;
}

/**
 * A stream of framed records of every kind stage 2 aggregates (runqlat,
 * cswitch incl. negative durations, block I/O, spans incl. ones no metric
 * takes), event times increasing with a jitter below `jitterNs`, latencies
 * spread over many orders of magnitude (so float sums depend on grouping).
 */
function stream(seed: number, n: number, jitterNs: number): Rec[] {
  const r = rng(seed);
  const out: Rec[] = [];
  for (let i = 0; i < n; i++) {
    const host = `h${Math.floor(r() * 3)}`;
    const comm = `c${Math.floor(r() * 4)}`;
    const t = T0 + BigInt(i) * 7_000_000n + BigInt(Math.floor(r() * jitterNs));
    const lat = BigInt(Math.floor(1e3 * 1e6 ** r()));
    const k = r();
    if (k < 0.45) {
      out.push({ topic: RUNQ, host, value: encodeRecord(reg.byTopic(RUNQ)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: t, cgroup_id: 1n, comm, latency_ns: lat, prev_pid: 0, kind: 'WAKEUP', host, boot_time_ns: 0n }) });
    } else if (k < 0.7) {
      // a u64 beyond 2^63 reads as negative: the histogram rejects it, the switch still counts
      const off = r() < 0.05 ? -5n : lat;
      out.push({ topic: CSW, host, value: encodeRecord(reg.byTopic(CSW)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: t, cgroup_id: 1n, comm, off_cpu_ns: off, prev_pid: 0, voluntary: r() < 0.5 ? 1 : 0, host, boot_time_ns: 0n }) });
    } else if (k < 0.85) {
      const op = ['READ', 'WRITE', 'FLUSH', 'DISCARD'][Math.floor(r() * 4)]!;
      out.push({ topic: BIO, host, value: encodeRecord(reg.byTopic(BIO)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: t, cgroup_id: 1n, comm, latency_ns: lat, sector: 0n, bytes: BigInt(512 * Math.floor(r() * 64)), dev_major: 259n, dev_minor: BigInt(Math.floor(r() * 2)), queue_depth: 1n, error: 0, op, host, boot_time_ns: 0n }) });
    } else {
      const kind = ['SERVER', 'CLIENT', 'INTERNAL'][Math.floor(r() * 3)]!;
      const attributes: Record<string, string> = { 'http.request.method': r() < 0.5 ? 'GET' : 'POST', 'http.route': '/a', 'url.template': '/a', 'http.response.status_code': '200' };
      if (r() < 0.2) attributes['error.type'] = '500';
      if (r() < 0.1) attributes['ringflow.response.missed'] = 'true';
      out.push({ topic: SPANS_TOPIC, host, value: encodeRecord(reg.byTopic(SPANS_TOPIC)!, {
        trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', parent_span_id: null, trace_state: null, trace_flags: 1,
        name: 'GET /a', kind, start_ns: t - lat, end_ns: t, status: 'UNSET', status_message: null, attributes, service_name: comm, host, protocol: 'HTTP1',
      }) });
    }
  }
  return out;
}

/** Stage 1 as repartition.ts runs it: each transaction's records -> partial records, keyed by (topic, host). */
function stage1(recs: Rec[], txSizes: () => number, windowMs: number): [string, Buffer][] {
  const fast = createFastDecoder();
  const agg = new PartialAggregator({ sizeMs: windowMs });
  const out: [string, Buffer][] = [];
  let i = 0;
  while (i < recs.length) {
    const end = Math.min(recs.length, i + txSizes());
    for (; i < end; i++) {
      const e = eventOf(fast, recs[i]!.topic, recs[i]!.value);
      assert.ok(agg.add(recs[i]!.topic, e.host, e.ev, e.ns));
    }
    for (const p of agg.take()) out.push([repartitionKey(p.topic, p.host), encodePartial(p)]);
  }
  return out;
}

type Point = Record<string, unknown>;

/** Records through a stage-2 partition state, a transaction per `every` records; then every window closed. */
function stage2(input: [string, Buffer][], cfg: { windowMs: number; latenessMs: number }, every = 10): Point[] {
  const s = createPartitionState({ ...cfg, topK: 1000, processorId: 'u' }, 0, undefined);
  const out: Point[] = [];
  input.forEach(([k, v], i) => {
    assert.notEqual(s.add(k, v, BigInt(i)), 'invalid');
    if (i % every === every - 1) {
      s.advance();
      out.push(...s.takeClosed().map((p) => decodeRecord(p.value).value as Point));
    }
  });
  s.advance();
  out.push(...s.takeClosed().map((p) => decodeRecord(p.value).value as Point));
  // lateness 0 in these tests: the idle close needs no quiet period
  assert.ok(s.advanceIdle(T0 + 100_000n * S));
  out.push(...s.takeClosed().map((p) => decodeRecord(p.value).value as Point));
  const key = (p: Point) => JSON.stringify([p.name, String(p.window_start_ns), p.attributes]);
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

test('partial: events -> partials per transaction -> stage 2 gives the points of events -> stage 2 (bit for bit, sums included)', () => {
  const recs = stream(1, 6000, 0);
  const cfg = { windowMs: 2000, latenessMs: 0 };
  const raw = stage2(recs.map((r) => [repartitionKey(r.topic, r.host), r.value]), cfg);
  assert.ok(raw.length > 100, 'many points');
  assert.ok(raw.some((p) => (p.name as string).startsWith('http.')), 'span metrics too');
  assert.equal(raw.reduce((a, p) => a + Number(p.late_events), 0), 0, 'nothing late');
  for (const [seed, max] of [[2, 1], [3, 7], [4, 300], [5, 5000]] as const) {
    const r = rng(seed);
    const partials = stage1(recs, () => 1 + Math.floor(r() * max), cfg.windowMs);
    assert.ok(partials.length < recs.length || max === 1);
    assert.deepEqual(stage2(partials, cfg), raw, `transactions of up to ${max} records`);
  }
});

test('partial: with disorder below the lateness, partials are not late where events were not', () => {
  const recs = stream(9, 4000, 1_500_000_000); // jitter 1.5 s, lateness 2 s
  const a = new WindowAggregator({ sizeMs: 1000, latenessMs: 2000 });
  const b = new WindowAggregator({ sizeMs: 1000, latenessMs: 2000 });
  const fast = createFastDecoder();
  const pa = new PartialAggregator({ sizeMs: 1000 });
  const r = rng(3);
  let left = 0;
  for (const x of recs) {
    const e = eventOf(fast, x.topic, x.value);
    a.addAt(x.topic, e.ev, e.ns);
    pa.add(x.topic, e.host, e.ev, e.ns);
    if (--left <= 0) {
      for (const p of pa.take()) b.addPartial(p);
      left = 1 + Math.floor(r() * 400);
    }
  }
  for (const p of pa.take()) b.addPartial(p);
  assert.equal(a.counters.late, 0);
  assert.equal(b.counters.late, 0);
  assert.deepEqual(b.counters, a.counters);
  assert.deepEqual(b.advanceTo(T0 + 10_000n * S), a.advanceTo(T0 + 10_000n * S));
});

/** A partial of `n` runqlat events of host h, comm c, in [start, start + 1 s), one with an invalid (negative) value via the histogram series. */
function runqPartial(start: bigint, times: bigint[], comm = 'c'): PartialWindow {
  const pa = new PartialAggregator({ sizeMs: 1000 });
  for (const t of times) pa.add(RUNQ, 'h', { host: 'h', boot_time_ns: 0n, ts_ns: t, comm, latency_ns: 1000n } as never, t);
  const [p] = pa.take();
  assert.equal(p!.windowStartNs, start);
  return p!;
}

test('partial: a partial for a closed window counts all its events late, in the oldest open window, and merges nothing', () => {
  const W = T0;
  const a = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  assert.equal(a.addPartial(runqPartial(W + S, [W + S + 10n, W + S + 20n])), 'ok');
  // window W closed by the one above: all 3 events late
  assert.equal(a.addPartial(runqPartial(W, [W + 1n, W + 2n, W + 3n], 'late-comm')), 'late');
  assert.equal(a.addPartial(runqPartial(W, [W + 5n])), 'late');
  assert.deepEqual(a.counters, { events: 2, late: 4, skipped: 0, invalid: 0 });
  const ps = a.advanceTo(T0 + 100n * S);
  assert.deepEqual(ps.map((p) => [p.windowStartNs, p.attributes[1]![1], p.count, p.lateEvents]), [
    [W + S, 'c', 2, 1],
    [W + S, 'late-comm', 0, 3],
  ]);
  // the same as events one by one
  const b = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  for (const [t, comm] of [[W + S + 10n, 'c'], [W + S + 20n, 'c'], [W + 1n, 'late-comm'], [W + 2n, 'late-comm'], [W + 3n, 'late-comm'], [W + 5n, 'c']] as const) {
    b.addAt(RUNQ, { host: 'h', boot_time_ns: 0n, ts_ns: t, comm, latency_ns: 1000n } as never, t);
  }
  assert.deepEqual(b.counters, a.counters);
  assert.deepEqual(b.advanceTo(T0 + 100n * S), ps);
});

test('partial: a late partial counts events whose values were all invalid; on time they make no series', () => {
  const pa = new PartialAggregator({ sizeMs: 1000 });
  const ev = (t: bigint, off: bigint) => ({ host: 'h', boot_time_ns: 0n, ts_ns: t, comm: 'x', off_cpu_ns: off, voluntary: 1 }) as never;
  pa.add(CSW, 'h', ev(T0 + 1n, -5n), T0 + 1n);
  pa.add(CSW, 'h', ev(T0 + 2n, -5n), T0 + 2n);
  const [p] = pa.take();
  const hist = p!.series.find((s) => s.name === 'ringflow.sched.offcpu.duration')!;
  assert.deepEqual([hist.count, hist.events], [0, 2]);
  const onTime = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  onTime.addPartial(p!);
  assert.deepEqual(onTime.advanceTo(T0 + 100n * S).map((x) => [x.name, x.count]), [['ringflow.sched.context_switches', 2]]);
  assert.equal(onTime.counters.invalid, 2);
  const late = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  late.addPartial(runqPartial(T0 + 5n * S, [T0 + 5n * S]));
  assert.equal(late.addPartial(p!), 'late');
  const pts = late.advanceTo(T0 + 100n * S).filter((x) => x.name !== 'ringflow.sched.runqueue.latency');
  assert.deepEqual(pts.map((x) => [x.name, x.windowStartNs, x.count, x.lateEvents]), [
    ['ringflow.sched.offcpu.duration', T0 + 5n * S, 0, 2],
    ['ringflow.sched.context_switches', T0 + 5n * S, 0, 2],
  ]);
});

test('partial: encode/decode round trip keeps the histogram and its exact sum', () => {
  const pa = new PartialAggregator({ sizeMs: 1000 });
  for (const v of [1n, 3n, 1_000_000_007n, 123_456_789n, 0n]) pa.add(RUNQ, 'h', { host: 'h', boot_time_ns: 0n, ts_ns: T0, comm: 'c', latency_ns: v } as never, T0);
  const [p] = pa.take();
  const back = decodePartial(encodePartial(p!))!;
  assert.deepEqual({ ...back, series: back.series.map((s) => ({ ...s, histogram: s.histogram?.toJSON(), parts: s.histogram?.sumParts() })) },
    { ...p!, series: p!.series.map((s) => ({ ...s, histogram: s.histogram?.toJSON(), parts: s.histogram?.sumParts() })) });
  assert.equal(decodePartial(encodeRecord(reg.byTopic(RUNQ)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: 0n, cgroup_id: 1n, comm: 'c', latency_ns: 1n, prev_pid: 0, kind: 'WAKEUP', host: 'h', boot_time_ns: 0n })), null);
});

test('partial: stage 2 rejects a partial of another window size, keyed for another series, or with unknown dimensions; state unchanged', () => {
  const s = createPartitionState({ windowMs: 2000, latenessMs: 0, topK: 10, processorId: 'u' }, 0, undefined);
  const p = runqPartial(T0, [T0 + 1n]); // 1 s windows
  assert.equal(s.add(repartitionKey(RUNQ, 'h'), encodePartial(p), 0n), 'invalid');
  const q = runqPartial(T0, [T0 + 1n]);
  assert.equal(s.add(repartitionKey(RUNQ, 'other'), encodePartial(q), 1n), 'invalid');
  const w = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  const bad = runqPartial(T0, [T0 + 1n]);
  bad.series[0]!.attributes.push(['zzz', '1']);
  assert.throws(() => w.addPartial(bad), /not its dimensions/);
  assert.equal(w.watermarkNs, null, 'nothing observed');
});

test('partial: raw events and partials mix on the repartition topic (rolling upgrade) and a restart replays partials exactly', () => {
  const recs = stream(21, 3000, 0);
  const cfg = { windowMs: 2000, latenessMs: 0 };
  const raw: [string, Buffer][] = recs.map((r) => [repartitionKey(r.topic, r.host), r.value]);
  const want = stage2(raw, cfg);
  // first half raw (old stage 1), then partials (upgraded stage 1)
  const r = rng(8);
  const mixed = [...raw.slice(0, 1500), ...stage1(recs.slice(1500), () => 1 + Math.floor(r() * 200), cfg.windowMs)];
  assert.deepEqual(stage2(mixed, cfg), want);

  // the aggregate stage's protocol with crashes: commit minOpenOffset() with checkpoint() every few records
  const input = stage1(recs, () => 1 + Math.floor(r() * 50), cfg.windowMs);
  const run = (crashAt: number[]): Point[] => {
    const out = replayWithCrashes((cp) => createPartitionState({ ...cfg, topK: 1000, processorId: 'u' }, 0, cp), input, crashAt, 3, T0 + 100_000n * S)
      .map((v) => decodeRecord(v).value as Point);
    const key = (p: Point) => JSON.stringify([p.name, String(p.window_start_ns), p.attributes]);
    return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  };
  const once = run([]);
  assert.deepEqual(once, want);
  const n = input.length;
  for (const crashAt of [[5], [Math.floor(n / 3), Math.floor(n / 3) + 1], [Math.floor(n / 2), n - 1]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
});

test('partial: the histogram sum is exact, whatever the grouping', () => {
  const vals = Array.from({ length: 500 }, (_, i) => (1 + ((i * 7919) % 1000)) / 1e9 * 10 ** (i % 7));
  const pa = new PartialAggregator({ sizeMs: 1000 });
  const one = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  const merged = new WindowAggregator({ sizeMs: 1000, latenessMs: 0 });
  vals.forEach((v, i) => {
    const e = { host: 'h', boot_time_ns: 0n, ts_ns: T0, comm: 'c', latency_ns: BigInt(Math.round(v * 1e9)) } as never;
    one.addAt(RUNQ, e, T0);
    pa.add(RUNQ, 'h', e, T0);
    if (i % 13 === 12) for (const p of pa.take()) merged.addPartial(p);
  });
  for (const p of pa.take()) merged.addPartial(p);
  const [x] = one.advanceTo(T0 + 100n * S) as SeriesPoint[];
  const [y] = merged.advanceTo(T0 + 100n * S) as SeriesPoint[];
  assert.deepEqual(y, x);
});
