/**
 * Exponential histogram: indices against an exact BigInt brute force (bucket i
 * covers (base^i, base^(i+1)], base = 2^(2^-scale)), downscaling, exact and
 * order-independent merges (seeded property test), quantile error bounds
 * against sorted data, and the JSON form.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpHistogram, MAX_SCALE, lowerBoundary, mapToIndex, type ExpHistogramJSON } from '../../processor/histogram.ts';
import { mulberry32 } from '../support/prng.ts';

// --- exact reference ------------------------------------------------------

/** v = M * 2^E exactly, M a BigInt. */
function decompose(v: number): [bigint, number] {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  const bits = dv.getBigUint64(0);
  const exp = Number(bits >> 52n);
  const frac = bits & ((1n << 52n) - 1n);
  return exp === 0 ? [frac, -1074] : [frac | (1n << 52n), exp - 1075];
}

/** Exactly: v > 2^(num / 2^den)  <=>  M^(2^den) * 2^(E * 2^den) > 2^num. */
function above(v: number, num: number, den: number): boolean {
  const [m, e] = decompose(v);
  const p = 2 ** den;
  const lhs = m ** BigInt(p);
  const shift = e * p - num;
  return shift >= 0 ? lhs << BigInt(shift) > 1n : lhs > 1n << BigInt(-shift);
}

/** Exact bucket index: the i with base^i < v <= base^(i+1). */
function exactIndex(v: number, scale: number): number {
  const gt = (i: number): boolean => (scale >= 0 ? above(v, i, scale) : above(v, i * 2 ** -scale, 0));
  let i = Math.floor(Math.log2(v) * 2 ** scale);
  while (!gt(i)) i--;
  while (gt(i + 1)) i++;
  return i;
}

function nextUp(v: number): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  dv.setBigUint64(0, dv.getBigUint64(0) + 1n);
  return dv.getFloat64(0);
}
function nextDown(v: number): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  dv.setBigUint64(0, dv.getBigUint64(0) - 1n);
  return dv.getFloat64(0);
}

const prng = mulberry32;

/** Latency-like values: log-uniform over [lo, hi] seconds, some zeros. */
function latencies(rnd: () => number, n: number, lo = 1e-7, hi = 1): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(rnd() < 0.02 ? 0 : lo * (hi / lo) ** rnd());
  return out;
}

/** What a histogram of `values` must hold: the largest scale <= 20 that fits maxSize, and exact bucket counts there. */
function expected(values: readonly number[], maxSize: number): { scale: number; offset: number; buckets: number[]; zero: number } {
  const pos = values.filter((v) => v > 0);
  const zero = values.length - pos.length;
  if (pos.length === 0) return { scale: MAX_SCALE, offset: 0, buckets: [], zero };
  let scale = MAX_SCALE;
  for (;;) {
    const idx = pos.map((v) => mapToIndex(v, scale));
    const lo = Math.min(...idx);
    const hi = Math.max(...idx);
    if (hi - lo + 1 <= maxSize) {
      const buckets = new Array<number>(hi - lo + 1).fill(0);
      for (const i of idx) buckets[i - lo]!++;
      return { scale, offset: lo, buckets, zero };
    }
    scale--;
  }
}

// --- indices ----------------------------------------------------------------

test('histogram index: powers of two and their neighbours, every scale, match the exact brute force', () => {
  // [value, scale, index] from the definition: 2^e closes bucket (e << scale) - 1
  const table: [number, number, number][] = [
    [1, 0, -1], [1, 3, -1], [1, 20, -1], [1, -2, -1],
    [2, 0, 0], [2, 1, 1], [2, 3, 7], [2, 20, 2 ** 20 - 1], [2, -1, 0],
    [4, 0, 1], [4, 2, 7], [4, -1, 0], [4, -2, 0],
    [0.5, 0, -2], [0.5, 1, -3], [0.5, 20, -(2 ** 20) - 1],
    [8, -1, 1], [16, -2, 0], [32, -2, 1],
    [3, 0, 1], [3, 1, 3], [3, -1, 0],
    [Math.SQRT2, 1, 1], [nextDown(Math.SQRT2), 1, 0], [2 ** -30, 4, -30 * 16 - 1], [1e-9, 0, -30], [5e-324, 0, -1075], [Number.MAX_VALUE, 0, 1023],
  ];
  for (const [v, s, i] of table) {
    assert.equal(mapToIndex(v, s), i, `index(${v}) at scale ${s}`);
    if (s <= 12) assert.equal(exactIndex(v, s), i, `brute force index(${v}) at scale ${s}`);
  }
  for (const e of [-40, -30, -10, -1, 0, 1, 2, 10, 30]) {
    const p = 2 ** e;
    for (const v of [p, nextUp(p), nextDown(p), p * 1.0000001, p * 0.9999999]) {
      for (const s of [-4, -2, -1, 0, 1, 2, 3, 5, 8, 10]) assert.equal(mapToIndex(v, s), exactIndex(v, s), `index(${v}) at scale ${s}`);
      // brute force at scale 20 costs 2^20-th powers: check the closed form instead
      if (v === p) assert.equal(mapToIndex(v, 20), e * 2 ** 20 - 1);
    }
  }
});

test('histogram index: random values and the doubles nearest to non-power-of-two boundaries match the brute force', () => {
  const rnd = prng(7);
  for (let n = 0; n < 3000; n++) {
    const v = 1e-9 * 1e12 ** rnd();
    const s = Math.floor(rnd() * 15) - 4; // -4..10
    assert.equal(mapToIndex(v, s), exactIndex(v, s), `index(${v}) at scale ${s}`);
  }
  // the float nearest base^j and its neighbours: where a log-based index goes wrong
  for (let s = 1; s <= 10; s++) {
    for (let n = 0; n < 40; n++) {
      const j = Math.floor(rnd() * 2 ** s * 60) - 2 ** s * 30;
      const b = 2 ** (j / 2 ** s);
      for (const v of [b, nextUp(b), nextDown(b)]) assert.equal(mapToIndex(v, s), exactIndex(v, s), `index(${v}) near base^${j} at scale ${s}`);
    }
  }
  assert.equal(mapToIndex(Math.SQRT2, 1), exactIndex(Math.SQRT2, 1));
  assert.equal(mapToIndex(nextDown(Math.SQRT2), 1), exactIndex(nextDown(Math.SQRT2), 1));
});

test('histogram index: lowerBoundary(i) < v <= lowerBoundary(i + 1)', () => {
  const rnd = prng(11);
  for (let n = 0; n < 2000; n++) {
    const v = 1e-6 * 1e6 ** rnd();
    for (const s of [-2, 0, 3, 8]) {
      const i = mapToIndex(v, s);
      assert.ok(lowerBoundary(i, s) <= v * (1 + 1e-14) && v <= lowerBoundary(i + 1, s) * (1 + 1e-14), `${v} at scale ${s}`);
    }
  }
  assert.equal(lowerBoundary(3, -2), 2 ** 12);
  assert.equal(lowerBoundary(-1, 0), 0.5);
});

// --- recording and downscaling ---------------------------------------------

test('histogram record: count, sum, min, max, zero count; bad input rejected', () => {
  const h = new ExpHistogram();
  for (const v of [0, 0.001, 0.002, 0, 0.25]) h.record(v);
  h.record(0.5, 3);
  assert.deepEqual(
    { count: h.count, zero: h.zeroCount, min: h.min, max: h.max },
    { count: 8, zero: 2, min: 0, max: 0.5 },
  );
  assert.ok(Math.abs(h.sum - 1.753) < 1e-15);
  for (const bad of [-1, NaN, Infinity, -0.001]) assert.throws(() => h.record(bad), RangeError, String(bad));
  for (const c of [0, -1, 1.5, NaN]) assert.throws(() => h.record(1, c), RangeError, String(c));
  const empty = new ExpHistogram().toJSON();
  assert.deepEqual(empty, { scale: 20, zero_count: 0, positive_offset: 0, positive_buckets: [], count: 0, sum: 0, min: 0, max: 0 });
});

test('histogram downscale: the scale drops by the least k that fits, adjacent buckets merge', () => {
  const cases: { name: string; maxSize: number; values: number[]; scale: number; offset: number; buckets: number[] }[] = [
    // 1 -> -1, 2 -> 2^s - 1 at scale s: span 2^s + 1 <= 4 first at s = 1
    { name: '1 then 2, 4 buckets', maxSize: 4, values: [1, 2], scale: 1, offset: -1, buckets: [1, 0, 1] },
    { name: '1, 2, 4 at 4 buckets', maxSize: 4, values: [1, 2, 4], scale: 0, offset: -1, buckets: [1, 1, 1] },
    { name: '1 and 1024 at 4 buckets', maxSize: 4, values: [1, 1024], scale: -2, offset: -1, buckets: [1, 0, 0, 1] },
    { name: 'single value stays at 20', maxSize: 160, values: [0.123], scale: 20, offset: mapToIndex(0.123, 20), buckets: [1] },
    { name: 'zeros only', maxSize: 160, values: [0, 0], scale: 20, offset: 0, buckets: [] },
  ];
  for (const c of cases) {
    const h = new ExpHistogram({ maxSize: c.maxSize });
    for (const v of c.values) h.record(v);
    const j = h.toJSON();
    assert.deepEqual([j.scale, j.positive_offset, j.positive_buckets], [c.scale, c.offset, c.buckets], c.name);
  }
  // default size 160, microseconds to a second: a realistic latency range lands at scale 3
  const h = new ExpHistogram();
  const rnd = prng(3);
  const values = latencies(rnd, 20000, 1e-6, 1);
  for (const v of values) h.record(v);
  const e = expected(values, 160);
  assert.equal(h.scale, e.scale);
  assert.equal(h.scale, 3);
  assert.deepEqual([h.positiveOffset, h.bucketCounts(), h.zeroCount], [e.offset, e.buckets, e.zero]);
});

test('histogram: any recording order gives the largest scale that fits and the exact bucket counts', () => {
  const rnd = prng(99);
  for (let trial = 0; trial < 60; trial++) {
    const maxSize = [4, 7, 20, 160][trial % 4]!;
    const values = latencies(rnd, 1 + Math.floor(rnd() * 400), 10 ** -(1 + rnd() * 8), 10 ** (rnd() * 2));
    const h = new ExpHistogram({ maxSize });
    for (const v of values) h.record(v);
    const e = expected(values, maxSize);
    const j = h.toJSON();
    assert.deepEqual([j.scale, j.positive_offset, j.positive_buckets, j.zero_count, j.count], [e.scale, e.offset, e.buckets, e.zero, values.length], `trial ${trial}`);
  }
});

// --- merging ------------------------------------------------------------------

function withoutSum(j: ExpHistogramJSON): Omit<ExpHistogramJSON, 'sum'> {
  const { sum: _, ...rest } = j;
  return rest;
}

test('histogram merge: random groups merged in random order equal recording everything into one, bucket for bucket', () => {
  const rnd = prng(2024);
  for (let trial = 0; trial < 200; trial++) {
    const maxSize = [4, 10, 40, 160][trial % 4]!;
    const n = 1 + Math.floor(rnd() * 600);
    const values = latencies(rnd, n, 10 ** -(rnd() * 9), 10 ** (rnd() * 3));
    const whole = new ExpHistogram({ maxSize });
    for (const v of values) whole.record(v);
    // random groups (some empty), recorded separately
    const parts = Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => new ExpHistogram({ maxSize }));
    for (const v of values) parts[Math.floor(rnd() * parts.length)]!.record(v);
    // merge in a random tree: pick two, merge one into the other
    while (parts.length > 1) {
      const a = parts.splice(Math.floor(rnd() * parts.length), 1)[0]!;
      const b = parts.splice(Math.floor(rnd() * parts.length), 1)[0]!;
      parts.push(rnd() < 0.5 ? a.merge(b) : b.merge(a));
    }
    const merged = parts[0]!.toJSON();
    const want = whole.toJSON();
    assert.deepEqual(withoutSum(merged), withoutSum(want), `trial ${trial} (${n} values, maxSize ${maxSize})`);
    assert.ok(Math.abs(merged.sum - want.sum) <= 1e-12 * want.sum, `sum, trial ${trial}`);
  }
});

test('histogram merge: commutative, associative, empty is the identity, inputs survive JSON', () => {
  const rnd = prng(5);
  const mk = (vals: number[]): ExpHistogram => {
    const h = new ExpHistogram({ maxSize: 20 });
    for (const v of vals) h.record(v);
    return h;
  };
  const [a, b, c] = [latencies(rnd, 50, 1e-6, 1e-3), latencies(rnd, 50, 1e-2, 10), latencies(rnd, 5, 0.5, 0.6)];
  const ab = mk(a).merge(mk(b)).toJSON();
  const ba = mk(b).merge(mk(a)).toJSON();
  assert.deepEqual(withoutSum(ab), withoutSum(ba));
  const abc1 = mk(a).merge(mk(b)).merge(mk(c)).toJSON();
  const abc2 = mk(a).merge(mk(b).merge(mk(c))).toJSON();
  assert.deepEqual(withoutSum(abc1), withoutSum(abc2));
  assert.deepEqual(mk(a).merge(new ExpHistogram({ maxSize: 20 })).toJSON(), mk(a).toJSON());
  assert.deepEqual(new ExpHistogram({ maxSize: 20 }).merge(mk(a)).toJSON(), mk(a).toJSON());
  // merging JSON round trips gives the same as merging the originals
  const viaJson = ExpHistogram.fromJSON(mk(a).toJSON(), { maxSize: 20 }).merge(ExpHistogram.fromJSON(mk(b).toJSON(), { maxSize: 20 }));
  assert.deepEqual(viaJson.toJSON(), ab);
  // zeros-only merges into anything without touching its scale
  const z = new ExpHistogram({ maxSize: 20 });
  z.record(0, 4);
  const withZeros = mk(c).merge(z).toJSON();
  assert.deepEqual([withZeros.scale, withZeros.zero_count, withZeros.min], [mk(c).scale, 4, 0]);
});

// --- quantiles ----------------------------------------------------------------

test('histogram quantiles: within base - 1 of the exact nearest-rank quantile', () => {
  const rnd = prng(31337);
  for (let trial = 0; trial < 100; trial++) {
    const maxSize = [20, 80, 160][trial % 3]!;
    const n = 1 + Math.floor(rnd() * 3000);
    const values = latencies(rnd, n, 10 ** -(3 + rnd() * 5), 10 ** -(rnd() * 2));
    const h = new ExpHistogram({ maxSize });
    for (const v of values) h.record(v);
    const sorted = [...values].sort((x, y) => x - y);
    const bound = h.relativeError();
    assert.equal(bound, 2 ** (2 ** -h.scale) - 1);
    for (const q of [0, 0.5, 0.9, 0.99, 0.999, 1]) {
      const exact = sorted[Math.max(1, Math.ceil(q * n)) - 1]!;
      const est = h.quantile(q);
      if (exact === 0) assert.equal(est, 0, `q${q} of zeros`);
      else assert.ok(Math.abs(est - exact) / exact <= bound * (1 + 1e-9), `trial ${trial} q${q}: ${est} vs ${exact}, bound ${bound}`);
      assert.ok(est >= h.min && est <= h.max);
    }
    assert.equal(h.quantile(0), sorted[0]);
    assert.equal(h.quantile(1), sorted[n - 1]);
  }
});

test('histogram quantiles: fixed cases', () => {
  const h = new ExpHistogram();
  assert.ok(Number.isNaN(h.quantile(0.5)));
  h.record(0.01);
  assert.deepEqual([h.quantile(0), h.quantile(0.5), h.quantile(0.99)], [0.01, 0.01, 0.01]);
  const z = new ExpHistogram();
  z.record(0, 9);
  z.record(1);
  assert.deepEqual([z.quantile(0.5), z.quantile(0.9), z.quantile(0.95), z.quantile(1)], [0, 0, 1, 1]);
  for (const bad of [-0.1, 1.1, NaN]) assert.throws(() => h.quantile(bad), RangeError);
  // 1000 values 1..1000 ms: p50 ~ 0.5 s, p99 ~ 0.99 s within scale 4's 4.4%
  const m = new ExpHistogram();
  for (let i = 1; i <= 1000; i++) m.record(i / 1000);
  assert.equal(m.scale, 4);
  for (const [q, exact] of [[0.5, 0.5], [0.9, 0.9], [0.99, 0.99], [0.999, 0.999]] as const) {
    assert.ok(Math.abs(m.quantile(q) - exact) / exact <= m.relativeError(), `p${q * 100}: ${m.quantile(q)}`);
  }
});

// --- JSON ----------------------------------------------------------------------

test('histogram JSON: round trip, trimming, downscale to fit, malformed input rejected', () => {
  const rnd = prng(8);
  const h = new ExpHistogram();
  for (const v of latencies(rnd, 500, 1e-5, 1e-1)) h.record(v);
  const j = h.toJSON();
  assert.deepEqual(JSON.parse(JSON.stringify(j)), j);
  assert.deepEqual(ExpHistogram.fromJSON(j).toJSON(), j);
  assert.deepEqual(h.clone().toJSON(), j);
  // leading/trailing empty buckets are trimmed
  const padded = { ...j, positive_offset: j.positive_offset - 2, positive_buckets: [0, 0, ...j.positive_buckets, 0] };
  assert.deepEqual(ExpHistogram.fromJSON(padded).toJSON(), j);
  // a histogram wider than maxSize downscales on the way in, exactly as merge would
  const narrow = ExpHistogram.fromJSON(j, { maxSize: 10 });
  const direct = new ExpHistogram({ maxSize: 10 }).merge(h);
  assert.deepEqual(narrow.toJSON(), direct.toJSON());
  assert.ok(narrow.positiveOffset !== undefined && narrow.bucketCounts().length <= 10);
  const bad: [string, ExpHistogramJSON][] = [
    ['count mismatch', { ...j, count: j.count + 1 }],
    ['negative bucket', { ...j, positive_buckets: [-1, ...j.positive_buckets], count: j.count - 1 }],
    ['fractional scale', { ...j, scale: 1.5 }],
    ['scale too large', { ...j, scale: 21 }],
  ];
  for (const [name, b] of bad) assert.throws(() => ExpHistogram.fromJSON(b), Error, name);
});
