/**
 * Issue 9 item 7 in `ringflow up`'s live summary: coverage points (which
 * settle after their window's other points, so usually come alone) say
 * something only when a host was not fully watched, and a collector run that
 * started after a predecessor is reported once, with the time unwatched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CollectorLosses, coverageClause, summarizeWindow, type SummaryPoint } from '../../cli/summary.ts';

const T = 1_800_000_000_000_000_000n;
const cov = (host: string, signal: string, gauge: number): SummaryPoint => ({
  name: 'ringflow.collector.coverage', attributes: [{ key: 'host.name', value: host }, { key: 'signal', value: signal }],
  window_start_ns: T, window_end_ns: T + 2_000_000_000n, histogram: null, sum: null, gauge, dropped_inputs: 0n,
});
const sum = (): SummaryPoint => ({
  name: 'ringflow.sched.context_switches', attributes: [{ key: 'host.name', value: 'h1' }],
  window_start_ns: T, window_end_ns: T + 2_000_000_000n, histogram: null, sum: 5n, dropped_inputs: 0n,
});

test('coverage in the summary: only hosts not fully watched, each by its least covered signal, table', () => {
  const rows: [SummaryPoint[], string][] = [
    [[], ''],
    [[sum()], ''],
    [[cov('h1', 'a', 1), cov('h1', 'b', 1)], ''],
    [[cov('h1', 'a', 1), cov('h1', 'b', 0.355)], 'collectors watched only: h1 35%'],
    [[cov('h1', 'a', 0), cov('h2', 'a', 0.5), cov('h3', 'a', 1)], 'collectors watched only: h1 0%, h2 50%'],
  ];
  for (const [pts, want] of rows) assert.equal(coverageClause(pts), want);
});

test('coverage in the summary: a window of coverage points alone is a line only when a host was not fully watched; not counted as series', () => {
  assert.equal(summarizeWindow([cov('h1', 'a', 1), cov('h1', 'b', 1)]), '');
  assert.match(summarizeWindow([cov('h1', 'a', 0.5)]), /^window \d\d:\d\d:\d\d-\d\d:\d\d:\d\d: collectors watched only: h1 50%$/);
  const mixed = summarizeWindow([sum(), cov('h1', 'a', 0)]);
  assert.match(mixed, /: 1 series, 0 latency events; collectors watched only: h1 0%$/);
  assert.match(summarizeWindow([sum(), cov('h1', 'a', 1)]), /: 1 series, 0 latency events$/);
});

test('collector restarts in the summary: a run\'s start record naming a predecessor, once', () => {
  const l = new CollectorLosses();
  const base = { events: [], host: 'h1', run_id: 'bbbb', run_start_ns: 20_000_000_000n, previous_run_id: 'aaaa', previous_run_end_ns: 12_500_000_000n };
  l.add({ ...base, time_ns: 20_000_000_000n }); // the start record
  l.add({ ...base, time_ns: 21_000_000_000n }); // the next ones carry the predecessor too: not a second restart
  assert.equal(l.take(), '; collectors: restarted: h1 run bbbb after aaaa, 7.5s unwatched');
  assert.equal(l.take(), '');
  l.add({ ...base, previous_run_id: '', time_ns: 20_000_000_000n }); // a first run: nothing to say
  l.add({ events: [], time_ns: 5n }); // an older collector
  assert.equal(l.take(), '');
});
