/**
 * Issue 9 item 7, the processor's half of coverage: the interval arithmetic
 * (pure, table-tested), the stats record -> coverage reading, the metrics
 * record of a coverage point, and stage 2's partition state writing one
 * ringflow.collector.coverage point per (host, signal, window) exactly once,
 * across a collector crash (a gap stated by the next run) and across stage-2
 * restarts and rebalances mid-stream.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addInterval, coverageFraction, coveredNs, runCoverageOf, windowStartsOf, type Interval } from '../../processor/coverage.ts';
import { coverageRecord, COVERAGE_METRIC } from '../../processor/aggregate.ts';
import { createPartitionState } from '../../processor/partition.ts';
import { decodeCurrent, decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { replayWithCrashes } from '../support/replay.ts';

const S = 1_000_000_000n;
const ms = (n: number) => BigInt(n) * 1_000_000n;

test('coverage: covered ns of a window, table', () => {
  const rows: [Interval[], bigint, bigint, bigint][] = [
    [[], 0n, 10n, 0n],
    [[[0n, 10n]], 0n, 10n, 10n],
    [[[-5n, 20n]], 0n, 10n, 10n], // clipped both sides
    [[[2n, 4n]], 0n, 10n, 2n],
    [[[2n, 4n], [3n, 6n]], 0n, 10n, 4n], // overlap counts once
    [[[2n, 4n], [2n, 4n]], 0n, 10n, 2n], // the same record twice
    [[[6n, 8n], [1n, 2n]], 0n, 10n, 3n], // any order
    [[[1n, 2n], [2n, 3n]], 0n, 10n, 2n], // touching
    [[[10n, 20n]], 0n, 10n, 0n], // (10, 20] shares no length with [0, 10)
    [[[-10n, 0n]], 0n, 10n, 0n],
    [[[5n, 5n]], 0n, 10n, 0n], // empty
    [[[8n, 3n]], 0n, 10n, 0n], // backwards: empty
    [[[0n, 3n], [5n, 7n], [9n, 30n]], 0n, 10n, 6n],
    [[[1_700_000_000n * S, 1_700_000_002n * S]], 1_700_000_001n * S, 1_700_000_003n * S, S], // past 2^53
  ];
  for (const [ivs, a, b, want] of rows) assert.equal(coveredNs(ivs, a, b), want, JSON.stringify(ivs.map((x) => x.map(String))));
});

test('coverage: intervals kept per window are clipped and merged, table', () => {
  const rows: [Interval[], Interval, Interval[]][] = [
    [[], [2n, 4n], [[2n, 4n]]],
    [[], [-2n, 40n], [[0n, 10n]]],
    [[[2n, 4n]], [4n, 6n], [[2n, 6n]]],
    [[[2n, 4n]], [5n, 6n], [[2n, 4n], [5n, 6n]]],
    [[[5n, 6n]], [1n, 2n], [[1n, 2n], [5n, 6n]]],
    [[[1n, 2n], [5n, 6n]], [2n, 5n], [[1n, 6n]]],
    [[[1n, 2n]], [20n, 30n], [[1n, 2n]]], // outside: nothing added
  ];
  for (const [have, add, want] of rows) assert.deepEqual(addInterval(have, add, 0n, 10n), want);
});

test('coverage: fraction, table', () => {
  const rows: [bigint, bigint, number][] = [[0n, 10n, 0], [5n, 10n, 0.5], [10n, 10n, 1], [11n, 10n, 1], [-1n, 10n, 0], [3n, 0n, 0]];
  for (const [c, size, want] of rows) assert.equal(coverageFraction(c, size), want);
});

test('coverage: windows an interval touches, table', () => {
  const rows: [bigint, bigint, number, bigint[]][] = [
    [0n, 10n, 100, [0n]],
    [0n, 11n, 100, [0n, 10n]],
    [5n, 10n, 100, [0n]],
    [10n, 20n, 100, [10n]], // (10, 20]: not window 0
    [9n, 10n, 100, [0n]],
    [-5n, 5n, 100, [-10n, 0n]],
    [5n, 5n, 100, []],
    [0n, 100n, 3, [70n, 80n, 90n]], // at most 3: the latest
  ];
  for (const [a, b, max, want] of rows) assert.deepEqual(windowStartsOf(a, b, 10n, max), want, `${a} ${b}`);
});

test('coverage: what a stats record says, table', () => {
  const base = { run_id: 'ab', run_start_ns: 100n, previous_run_id: 'cd', previous_run_end_ns: 40n, time_ns: 100n, interval_ns: 0n };
  const rows: [Record<string, unknown>, ReturnType<typeof runCoverageOf>][] = [
    [{ ...base, run_id: '' }, null], // an older collector: nothing known
    [{ time_ns: 5n, interval_ns: 5n }, null],
    [base, { covered: null, gap: [40n, 100n] }], // the record sent at start
    [{ ...base, time_ns: 105n, interval_ns: 5n }, { covered: [100n, 105n], gap: null }], // the next one: starts at run start too, the gap was said
    [{ ...base, time_ns: 110n, interval_ns: 5n }, { covered: [105n, 110n], gap: null }],
    [{ ...base, interval_ns: 3n }, { covered: [97n, 100n], gap: null }], // not a start record
    [{ ...base, previous_run_end_ns: 0n }, { covered: null, gap: null }], // no predecessor known
    [{ ...base, previous_run_end_ns: 100n }, { covered: null, gap: null }], // no gap
    [{ ...base, previous_run_end_ns: 150n }, { covered: null, gap: null }], // predecessor "after" us (clock step): no gap
    [{ ...base, time_ns: 90n, interval_ns: -5n }, { covered: null, gap: null }],
  ];
  for (const [rec, want] of rows) assert.deepEqual(runCoverageOf(rec as never), want, JSON.stringify(rec, (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
});

test('coverage: a coverage point is a GAUGE of metrics.v1; an older metrics record reads with no gauge', () => {
  const metrics = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const rec = coverageRecord({ host: 'h1', signal: 'ringflow.sched.runqlat.v1', startNs: 10n, endNs: 20n, fraction: 0.25, processor: 'p' });
  const back = decodeCurrent(encodeRecord(metrics, rec)).value as Record<string, unknown>;
  assert.equal(back.name, COVERAGE_METRIC);
  assert.equal(back.kind, 'GAUGE');
  assert.equal(back.unit, '1');
  assert.equal(back.gauge, 0.25);
  assert.equal(back.sum, null);
  assert.deepEqual((back.attributes as object[]).map((a) => ({ ...a })), [{ key: 'host.name', value: 'h1' }, { key: 'signal', value: 'ringflow.sched.runqlat.v1' }]);
  for (const f of [-0.5, 1.5]) assert.equal((coverageRecord({ host: 'h', signal: 's', startNs: 0n, endNs: 1n, fraction: f, processor: 'p' }).gauge as number), f < 0 ? 0 : 1);
  const v0 = schemaRegistry().history.find((h) => h.id === 'metrics.v0');
  assert.ok(v0, 'schemas/history/metrics.v0.avsc');
  const old = decodeCurrent(encodeRecord(v0, { ...rec, kind: 'SUM', sum: 3n, gauge: undefined })).value as Record<string, unknown>;
  assert.equal(old.gauge, null);
  assert.equal(old.sum, 3n);
});

// ---- stage 2: one collector run, a SIGKILL, a gap, the next run -------------------------------

const RUNQ = 'ringflow.sched.runqlat.v1';
const T = 1_800_000_000n * S; // window-aligned (2 s)
const runq = (ts: bigint) => encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
  cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'a', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
});
const stats = (time: bigint, interval: bigint, run: { id: string; start: bigint; prevId: string; prevEnd: bigint }) => encodeRecord(schemaRegistry().byTopic('ringflow.collector.stats.v1')!, {
  host: 'h1', boot_time_ns: 0n, time_ns: time, interval_ns: interval,
  events: [{ event: RUNQ, read: 10n, kernel_drops: 0n, user_drops: 0n, produced: 10n }],
  send_errors: 0n, pending: 0n, ring_bytes: 0n,
  run_id: run.id, run_start_ns: run.start, previous_run_id: run.prevId, previous_run_end_ns: run.prevEnd,
});

/**
 * Run 1 from T+0.5 s (stats each second, the last at T+10.0), SIGKILLed at
 * T+10.3; run 2 from T+gapEnd (stats each second) to T+gapEnd+14.5. Events
 * every 200 ms while a run runs; each stats record lands 300 ms after its time.
 */
function scenario(gapEndMs: number) {
  const input: [string, Buffer][] = [];
  const key = `${RUNQ}|h1`;
  const items: [bigint, Buffer][] = [];
  const run = (startMs: number, endMs: number, lastStatsMs: number, r: { id: string; prevId: string; prevEnd: bigint }) => {
    const start = T + ms(startMs);
    for (let t = startMs; t <= endMs; t += 200) items.push([T + ms(t), runq(T + ms(t))]);
    const times = [startMs];
    for (let t = startMs + 1000; t <= lastStatsMs; t += 1000) times.push(t);
    if (times[times.length - 1] !== lastStatsMs) times.push(lastStatsMs);
    for (let i = 0; i < times.length; i++) {
      const time = T + ms(times[i]!);
      const interval = i === 0 ? 0n : ms(times[i]! - times[i - 1]!);
      items.push([time + ms(300) + 1n, stats(time, interval, { ...r, start })]);
    }
  };
  run(500, 10_300, 10_000, { id: 'aaaa', prevId: '', prevEnd: 0n });
  run(gapEndMs, gapEndMs + 14_500, gapEndMs + 14_500, { id: 'bbbb', prevId: 'aaaa', prevEnd: T + ms(10_000) });
  items.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [, v] of items) input.push([key, v]);
  // the offset of run 2's first record: the partition was quiet before it
  const firstOfRun2 = items.findIndex(([t]) => t >= T + ms(gapEndMs));
  return { input, firstOfRun2 };
}

const cfg = { windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' };

function coverageOf(values: Buffer[]): string[] {
  return values
    .map((v) => decodeRecord(v).value as Record<string, unknown>)
    .filter((r) => r.name === COVERAGE_METRIC)
    .map((r) => {
      const a = Object.fromEntries((r.attributes as { key: string; value: string }[]).map((x) => [x.key, x.value]));
      return `${(r.window_start_ns as bigint - T) / S}s ${a['host.name']} ${a.signal} ${r.kind} ${r.gauge}`;
    })
    .sort((x, y) => parseInt(x) - parseInt(y));
}

function expected(gapEndS: number): string[] {
  const out: string[] = [];
  const at = (s: number, f: number) => out.push(`${s}s h1 ${RUNQ} GAUGE ${f}`);
  at(0, 0.75); // run 1 from 0.5 s
  for (let s = 2; s < 10; s += 2) at(s, 1);
  for (let s = 10; s < Math.floor(gapEndS / 2) * 2; s += 2) at(s, 0); // the gap: nobody watched
  const edge = Math.floor(gapEndS / 2) * 2;
  at(edge, (edge + 2 - gapEndS) / 2); // run 2 from gapEnd
  const end = gapEndS + 14.5;
  for (let s = edge + 2; s + 2 <= end; s += 2) at(s, 1);
  const last = Math.floor(end / 2) * 2;
  if (end > last) at(last, (end - last) / 2);
  return out;
}

test('coverage: stage 2 writes one coverage point per window: 1 inside a run, 0 in the gap a crash left, the edges between, once across restarts', () => {
  // a gap of ~5 s: its windows are not yet settled when run 2 states it
  const { input } = scenario(15_500);
  const run = (crashAt: number[], rewindAt: number[] = []) =>
    coverageOf(replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), input, crashAt, 4, T + 1000n * S, { rewindAt }));
  const once = run([]);
  assert.deepEqual(once, expected(15.5), once.join('\n'));
  const n = input.length;
  for (const crashAt of [[3], [20, 21], [60], [Math.floor(n / 2)], [n - 40, n - 10], [n - 1]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
  assert.deepEqual(run([], [30, 70, n - 5]), once, 'rewinds (rebalance keeping the partition)');
});

test('coverage: a long gap whose windows settled before the next run stated it: written 0 from the revealing record, once across restarts', () => {
  const { input, firstOfRun2 } = scenario(30_500);
  // the partition was quiet through the gap: the idle clock closed its windows (horizon T+30 s)
  const idle = new Map([[firstOfRun2, T + 35n * S]]);
  const run = (crashAt: number[]) =>
    coverageOf(replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), input, crashAt, 4, T + 1000n * S, { idle }));
  const once = run([]);
  assert.deepEqual(once, expected(30.5), once.join('\n'));
  for (const crashAt of [[firstOfRun2 + 1], [firstOfRun2 + 2, firstOfRun2 + 5], [firstOfRun2 + 40], [input.length - 3]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
});

test('coverage: stats records of an older collector (no run identity) make no coverage points', () => {
  const s = createPartitionState(cfg, 0, undefined);
  const old = stats(T + S, S, { id: '', start: 0n, prevId: '', prevEnd: 0n });
  s.add(`${RUNQ}|h1`, runq(T), 0n);
  s.add(`${RUNQ}|h1`, old, 1n);
  s.advanceIdle(T + 1000n * S);
  assert.deepEqual(coverageOf(s.takeClosed().map((p) => p.value)), []);
});

test('coverage: a restart judges late contributions with the settle delay as of its resume offset, not the one it had at the checkpoint', () => {
  const key = `${RUNQ}|h1`;
  const run = { id: 'cccc', start: T, prevId: '', prevEnd: 0n };
  // settle delay 5 s (the floor) until the 8 s interval of the last record raises it to 8 s
  const input: Buffer[] = [
    stats(T + ms(3500), S, run), // covers (2.5, 3.5]: window [2, 4) held here, settle 5 s
    runq(T + 10n * S), // watermark T+9 s: [2, 4) is settled under 5 s (4 + 5 <= 9), not under 8 s
    stats(T + ms(4500), S, run), // (3.5, 4.5]: late for [2, 4) (settled), counted for [4, 6)
    stats(T + ms(12_500), 8n * S, run), // (4.5, 12.5]: settle delay now 8 s
  ];
  const tail = [runq(T + 40n * S)];
  const feed = (s: ReturnType<typeof createPartitionState>, from: number, recs: Buffer[], base = 0) => {
    for (let i = from; i < recs.length; i++) s.add(key, recs[i]!, BigInt(base + i));
  };
  const points = (s: ReturnType<typeof createPartitionState>) => {
    feed(s, 0, tail, input.length);
    s.advance();
    s.advanceIdle(T + 1000n * S);
    return coverageOf(s.takeClosed().map((p) => p.value));
  };
  const a = createPartitionState(cfg, 0, undefined);
  feed(a, 0, input);
  const once = points(a);
  assert.ok(once.includes(`2s h1 ${RUNQ} GAUGE 0.5`), once.join('\n'));
  // the same, with a restart from the checkpoint taken after the last record
  const b = createPartitionState(cfg, 0, undefined);
  feed(b, 0, input);
  const resume = Number(b.minOpenOffset());
  assert.equal(resume, 0);
  const c = createPartitionState(cfg, 0, b.checkpoint());
  feed(c, resume, input);
  assert.deepEqual(points(c), once);
});
