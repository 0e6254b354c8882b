/**
 * Cardinality cap: top-K series by event count per metric and window, the
 * rest folded into "other" (host.name kept) with exact merges, independent of
 * the input order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capCardinality } from '../../processor/cardinality.ts';
import { seriesKey, type SeriesPoint } from '../../processor/aggregate.ts';
import { ExpHistogram } from '../../processor/histogram.ts';

const W = { windowStartNs: 0n, windowEndNs: 10_000_000_000n };

function sum(host: string, reason: string, count: number, late = 0, window = W): SeriesPoint {
  return { name: 'ringflow.tcp.drops', unit: '{segment}', kind: 'sum', ...window, attributes: [['host.name', host], ['ringflow.tcp.drop.reason', reason]], count, sum: count, lateEvents: late };
}

function hist(host: string, comm: string, values: number[]): SeriesPoint {
  const h = new ExpHistogram();
  for (const v of values) h.record(v);
  return {
    name: 'ringflow.sched.runqueue.latency', unit: 's', kind: 'histogram', ...W,
    attributes: [['host.name', host], ['process.command', comm]], count: values.length, histogram: h.toJSON(), lateEvents: 0,
  };
}

const view = (ps: readonly SeriesPoint[]): [string, number | undefined, number, number][] =>
  ps.map((p) => [p.attributes.map(([, v]) => v).join('/'), p.sum, p.count, p.lateEvents]);

function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('cardinality: top-K by count kept, the rest folded per host into "other", totals exact', () => {
  const input = [sum('a', 'R1', 50), sum('a', 'R2', 40), sum('a', 'R3', 3, 1), sum('b', 'R4', 30), sum('b', 'R5', 2), sum('b', 'R6', 1, 2)];
  const cases: { k: number; want: [string, number, number, number][] }[] = [
    { k: 10, want: [['a/R1', 50, 50, 0], ['a/R2', 40, 40, 0], ['a/R3', 3, 3, 1], ['b/R4', 30, 30, 0], ['b/R5', 2, 2, 0], ['b/R6', 1, 1, 2]] },
    { k: 6, want: [['a/R1', 50, 50, 0], ['a/R2', 40, 40, 0], ['a/R3', 3, 3, 1], ['b/R4', 30, 30, 0], ['b/R5', 2, 2, 0], ['b/R6', 1, 1, 2]] },
    { k: 3, want: [['a/R1', 50, 50, 0], ['a/R2', 40, 40, 0], ['a/other', 3, 3, 1], ['b/R4', 30, 30, 0], ['b/other', 3, 3, 2]] },
    { k: 1, want: [['a/R1', 50, 50, 0], ['a/other', 43, 43, 1], ['b/other', 33, 33, 2]] },
    { k: 0, want: [['a/other', 93, 93, 1], ['b/other', 33, 33, 2]] },
  ];
  for (const c of cases) {
    const got = capCardinality(input, { topK: c.k });
    assert.deepEqual(view(got), c.want, `K=${c.k}`);
    assert.equal(got.reduce((n, p) => n + p.sum!, 0), 126, `K=${c.k}: total kept`);
  }
  assert.equal(capCardinality(input).length, 6, 'default K = 100');
  assert.throws(() => capCardinality(input, { topK: -1 }), RangeError);
});

test('cardinality: ties broken by series key; the result does not depend on the input order', () => {
  const input = [sum('a', 'Z', 5), sum('a', 'Y', 5), sum('a', 'X', 5), sum('b', 'W', 5), sum('a', 'V', 1)];
  const want = capCardinality(input, { topK: 2 });
  assert.deepEqual(view(want), [['a/X', 5, 5, 0], ['a/Y', 5, 5, 0], ['a/other', 6, 6, 0], ['b/other', 5, 5, 0]]);
  for (let seed = 1; seed < 20; seed++) assert.deepEqual(capCardinality(shuffle(input, seed), { topK: 2 }), want, `seed ${seed}`);
});

test('cardinality: groups are per metric and window (or per host); folded histograms merge exactly', () => {
  const w2 = { windowStartNs: 10_000_000_000n, windowEndNs: 20_000_000_000n };
  const input = [
    sum('a', 'R1', 9), sum('a', 'R2', 8), sum('a', 'R1', 1, 0, w2), sum('a', 'R2', 2, 0, w2),
    hist('a', 'nginx', [0.001, 0.002, 0.003]), hist('a', 'redis', [0.5]), hist('a', 'java', [0.004, 0.25]),
  ];
  const got = capCardinality(input, { topK: 1 });
  assert.deepEqual(got.map((p) => [p.name, String(p.windowStartNs), p.attributes.map(([, v]) => v).join('/'), p.count]), [
    ['ringflow.sched.runqueue.latency', '0', 'a/nginx', 3],
    ['ringflow.sched.runqueue.latency', '0', 'a/other', 3],
    ['ringflow.tcp.drops', '0', 'a/R1', 9],
    ['ringflow.tcp.drops', '0', 'a/other', 8],
    ['ringflow.tcp.drops', '10000000000', 'a/R2', 2],
    ['ringflow.tcp.drops', '10000000000', 'a/other', 1],
  ]);
  const other = got[1]!.histogram!;
  const h = new ExpHistogram();
  for (const v of [0.5, 0.004, 0.25]) h.record(v);
  assert.deepEqual({ ...other, sum: 0 }, { ...h.toJSON(), sum: 0 });
  assert.ok(Math.abs(other.sum - 0.754) < 1e-15);
  // perHost: K counts per host
  const hosts = [sum('a', 'R1', 9), sum('a', 'R2', 8), sum('b', 'R1', 1), sum('b', 'R3', 2)];
  assert.deepEqual(view(capCardinality(hosts, { topK: 1, perHost: true })), [['a/R1', 9, 9, 0], ['a/other', 8, 8, 0], ['b/R3', 2, 2, 0], ['b/other', 1, 1, 0]]);
  assert.deepEqual(view(capCardinality(hosts, { topK: 1 })), [['a/R1', 9, 9, 0], ['a/other', 8, 8, 0], ['b/other', 3, 3, 0]]);
});

test('cardinality: a kept series already valued "other" absorbs the fold: one point per series', () => {
  const input = [sum('a', 'other', 10), sum('a', 'R1', 9), sum('a', 'R2', 1)];
  const got = capCardinality(input, { topK: 2 });
  assert.deepEqual(view(got), [['a/R1', 9, 9, 0], ['a/other', 11, 11, 0]]);
  assert.equal(new Set(got.map(seriesKey)).size, got.length);
  // custom keep list: no attribute kept folds everything into one series
  assert.deepEqual(view(capCardinality([sum('a', 'R1', 3), sum('b', 'R2', 2)], { topK: 0, keep: [] })), [['other/other', 5, 5, 0]]);
});
