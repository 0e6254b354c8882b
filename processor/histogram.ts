/**
 * OpenTelemetry base-2 exponential histogram (metrics data model,
 * "ExponentialHistogram"), positive range only: latencies are >= 0.
 *
 *   base = 2^(2^-scale)
 *   bucket i covers (base^i, base^(i+1)]   i.e. index(v) = ceil(log_base(v)) - 1
 *   zero_count counts values <= zero threshold (0)
 *
 * Scale starts at MAX_SCALE (20) and only goes down: when a value would need
 * more than `maxSize` buckets (default 160, the OTel SDK default), the scale
 * drops by the least k that fits and every 2^k adjacent buckets merge into one
 * (index >> k), as the spec's reference implementations do.
 *
 * Exactness. Every index is derived from one canonical index at scale 20,
 * `index(v, s) = index20(v) >> (20 - s)`, so an index computed at a fine scale
 * and shifted down always equals the index computed at the coarse scale. That
 * is what makes merges exact: recording values into several histograms and
 * merging them, in any grouping and order, gives bucket for bucket (and scale,
 * count, zero_count, min, max) what recording them all into one gives. The
 * final scale is the largest one at which all values fit, whatever the order.
 * `sum` is exact too: the running sum is kept as non-overlapping double
 * partials (Shewchuk's algorithm, as Python's math.fsum) and read as their
 * correctly rounded total, so it does not depend on the order or grouping of
 * records and merges either (stage 1's partial aggregates rely on this: see
 * processor/partial.ts).
 *
 * index20 follows the spec's reference mapping: the IEEE exponent for the
 * power-of-two part (exact at powers of two, which map to the bucket they
 * close: index(2^e) = (e << scale) - 1), and Math.log2 of the significand for
 * the sub-bucket. Math.log2 is within ~1 ulp, so a value within ~1e-9 of a
 * scale-20 sub-boundary could land one scale-20 bucket off; when it is that
 * close to a boundary whose exponent has a denominator <= 2^16 (every
 * boundary of scales <= 16) the side is settled exactly with BigInt
 * arithmetic (m^(2^d) vs 2^n). So indices are exact at every boundary of
 * scales <= 16, and deterministic everywhere.
 */

export const MAX_SCALE = 20;
/** The spec's smallest scale: base 2^1024 covers every double in 3 buckets. */
export const MIN_SCALE = -10;
export const DEFAULT_MAX_SIZE = 160;

const SUB20 = 1 << MAX_SCALE; // sub-buckets per power of two at scale 20
const EXACT_DEN_LIMIT = 16;
const NEAR = 1e-9;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer); // little endian: u32[1] is the high word
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

/**
 * Canonical bucket index of `v` (> 0, finite) at scale 20. Lies in
 * [-1075 * 2^20, 1024 * 2^20), inside int32, so `>>` works for any scale >= -10.
 */
export function index20(v: number): number {
  f64[0] = v;
  let hi = u32[HI]!;
  let exp = (hi >>> 20) & 0x7ff;
  let e = exp - 1023;
  if (exp === 0) {
    // subnormal: normalise (times 2^64, exact) and correct the exponent
    f64[0] = v * 18446744073709551616;
    hi = u32[HI]!;
    exp = (hi >>> 20) & 0x7ff;
    e = exp - 1023 - 64;
  }
  const fracHi = hi & 0xfffff;
  if (fracHi === 0 && u32[LO] === 0) {
    // exact power of two: it closes bucket (e << 20) - 1
    return e * SUB20 - 1;
  }
  // significand m in (1, 2): the same fraction bits under a zero exponent
  u32[HI] = fracHi | (1023 << 20);
  const m = f64[0]!;
  const x = Math.log2(m) * SUB20;
  let sub = Math.floor(x);
  const j = Math.round(x);
  if (Math.abs(x - j) < NEAR && j > 0 && j < SUB20) {
    const above = aboveBoundary(m, j);
    if (above !== undefined) sub = above ? j : j - 1;
  }
  if (sub < 0) sub = 0;
  else if (sub > SUB20 - 1) sub = SUB20 - 1;
  return e * SUB20 + sub;
}

/**
 * Whether m (in (1, 2)) > 2^(j / 2^20), exactly, or undefined when the
 * boundary's reduced denominator exceeds 2^EXACT_DEN_LIMIT (too costly).
 * With j = n * 2^(20 - d), n odd: m > 2^(n / 2^d)  <=>  M^(2^d) > 2^(n + 52 * 2^d)
 * where m = M / 2^52. Equality is impossible: the root is irrational for d > 0.
 */
function aboveBoundary(m: number, j: number): boolean | undefined {
  let n = j;
  let d = MAX_SCALE;
  while ((n & 1) === 0 && d > 0) {
    n >>= 1;
    d--;
  }
  if (d > EXACT_DEN_LIMIT) return undefined;
  let p = BigInt(m * 4503599627370496); // M = m * 2^52, an integer
  for (let i = 0; i < d; i++) p *= p;
  return p > 1n << BigInt(n + 52 * 2 ** d);
}

/** Bucket index of `v` (> 0, finite) at `scale` (MIN_SCALE..MAX_SCALE). */
export function mapToIndex(v: number, scale: number): number {
  return index20(v) >> (MAX_SCALE - scale);
}

/** Lower (exclusive) boundary of bucket `index` at `scale`: base^index. Exact for scale <= 0. */
export function lowerBoundary(index: number, scale: number): number {
  return scale <= 0 ? 2 ** (index * 2 ** -scale) : 2 ** (index / 2 ** scale);
}

export interface ExpHistogramJSON {
  scale: number;
  zero_count: number;
  positive_offset: number;
  positive_buckets: number[];
  count: number;
  sum: number;
  /** 0 when count is 0. */
  min: number;
  /** 0 when count is 0. */
  max: number;
}

export interface ExpHistogramOptions {
  /** Most buckets kept (>= 4); the scale drops to fit. Default 160. */
  maxSize?: number;
  /** Starting (largest) scale, <= 20. Default 20. */
  maxScale?: number;
}

export class ExpHistogram {
  readonly maxSize: number;
  readonly maxScale: number;
  scale: number;
  zeroCount = 0;
  count = 0;
  min = Infinity;
  max = -Infinity;
  // buckets low..high live in a ring: index i at slot mod(i, counts.length);
  // slots outside low..high are always 0
  private counts: Float64Array;
  private low = 0;
  private high = -1; // high < low: no buckets
  /** The exact sum of the values: non-overlapping doubles, increasing magnitude (see the header). */
  private parts: number[] = [];

  /** Sum of the values, correctly rounded from the exact sum. */
  get sum(): number {
    return fsumParts(this.parts);
  }

  /** The exact sum as non-overlapping doubles (their exact total is the sum): what a partial aggregate carries. */
  sumParts(): number[] {
    return this.parts.slice();
  }

  /** Adds an exact sum given as doubles (sumParts() of another histogram) to this one's sum. */
  addSumParts(parts: readonly number[]): void {
    for (const x of parts) addPart(this.parts, x);
  }

  constructor(opts: ExpHistogramOptions = {}) {
    this.maxSize = opts.maxSize ?? DEFAULT_MAX_SIZE;
    this.maxScale = opts.maxScale ?? MAX_SCALE;
    if (!Number.isInteger(this.maxSize) || this.maxSize < 4) throw new RangeError(`maxSize must be an integer >= 4, got ${this.maxSize}`);
    if (!Number.isInteger(this.maxScale) || this.maxScale > MAX_SCALE || this.maxScale < MIN_SCALE) {
      throw new RangeError(`maxScale must be an integer in [${MIN_SCALE}, ${MAX_SCALE}], got ${this.maxScale}`);
    }
    this.scale = this.maxScale;
    this.counts = new Float64Array(Math.min(8, this.maxSize));
  }

  /** Records `value` (seconds, finite, >= 0) `count` times (a positive integer). */
  record(value: number, count = 1): void {
    if (!(value >= 0) || value === Infinity) throw new RangeError(`histogram value must be finite and >= 0, got ${value}`);
    if (!(count > 0) || !Number.isInteger(count)) throw new RangeError(`count must be a positive integer, got ${count}`);
    this.count += count;
    addPart(this.parts, value * count);
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    if (value === 0) {
      this.zeroCount += count;
      return;
    }
    const i20 = index20(value);
    let idx = i20 >> (MAX_SCALE - this.scale);
    if (this.high < this.low) {
      this.low = this.high = idx;
    } else if (idx < this.low || idx > this.high) {
      const lo = Math.min(idx, this.low);
      const hi = Math.max(idx, this.high);
      const k = this.shiftNeeded(lo, hi);
      if (k > 0) {
        this.downscale(k);
        idx = i20 >> (MAX_SCALE - this.scale);
      }
      this.widen(Math.min(idx, this.low), Math.max(idx, this.high));
    }
    this.addAt(idx, count);
  }

  /** Merges `other` into this one, exactly (see the header). Returns this. */
  merge(other: ExpHistogram): this {
    if (other.count === 0) return this;
    this.count += other.count;
    this.addSumParts(other.parts);
    this.zeroCount += other.zeroCount;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    if (other.high < other.low) return this;
    // a histogram without buckets has no scale constraint: take the finer side's
    const target = this.high < this.low ? Math.min(this.maxScale, other.scale) : Math.min(this.scale, other.scale);
    let lo = other.low >> (other.scale - target);
    let hi = other.high >> (other.scale - target);
    if (this.high >= this.low) {
      lo = Math.min(lo, this.low >> (this.scale - target));
      hi = Math.max(hi, this.high >> (this.scale - target));
    }
    const k = this.shiftNeeded(lo, hi);
    const scale = target - k;
    if (this.high < this.low) this.scale = scale;
    else if (scale < this.scale) this.downscale(this.scale - scale);
    const shift = other.scale - this.scale;
    const nlo = other.low >> shift;
    const nhi = other.high >> shift;
    if (this.high < this.low) {
      this.low = nlo;
      this.high = nlo;
    }
    this.widen(Math.min(nlo, this.low), Math.max(nhi, this.high));
    const oc = other.counts;
    const on = oc.length;
    for (let i = other.low; i <= other.high; i++) {
      const c = oc[mod(i, on)]!;
      if (c !== 0) this.addAt(i >> shift, c);
    }
    return this;
  }

  /**
   * Estimated q-quantile (0 <= q <= 1) by nearest rank r = max(1, ceil(q * count)):
   * the bucket holding the r-th smallest value, log-linearly interpolated
   * within it ((k - 0.5) / c of the way through its c values, geometrically),
   * then clamped to [min, max]; r = 1 gives min and r = count gives max exactly.
   * The r-th value and the estimate share a bucket (base^i, base^(i+1)], so
   * |estimate - exact| / exact < base - 1 = 2^(2^-scale) - 1 (0.55% at scale 7,
   * 4.4% at scale 4). NaN when empty.
   */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${q}`);
    if (this.count === 0) return NaN;
    const r = Math.max(1, Math.ceil(q * this.count));
    if (r <= 1) return this.min;
    if (r >= this.count) return this.max;
    if (r <= this.zeroCount) return 0;
    let cum = this.zeroCount;
    const n = this.counts.length;
    for (let i = this.low; i <= this.high; i++) {
      const c = this.counts[mod(i, n)]!;
      if (c === 0) continue;
      if (cum + c >= r) {
        const frac = (r - cum - 0.5) / c;
        const est = lowerBoundary(i, this.scale) * 2 ** (frac / 2 ** this.scale);
        return Math.min(this.max, Math.max(this.min, est));
      }
      cum += c;
    }
    return this.max; // unreachable while count == zero_count + sum(buckets)
  }

  /** Relative error bound of quantile() at the current scale: base - 1. */
  relativeError(): number {
    return 2 ** (2 ** -this.scale) - 1;
  }

  get positiveOffset(): number {
    return this.high < this.low ? 0 : this.low;
  }

  /** Counts of buckets positiveOffset.. (empty when there are none). */
  bucketCounts(): number[] {
    const out: number[] = [];
    const n = this.counts.length;
    for (let i = this.low; i <= this.high; i++) out.push(this.counts[mod(i, n)]!);
    return out;
  }

  clone(): ExpHistogram {
    const h = ExpHistogram.fromJSON(this.toJSON(), { maxSize: this.maxSize, maxScale: this.maxScale });
    h.parts = this.parts.slice();
    return h;
  }

  toJSON(): ExpHistogramJSON {
    return {
      scale: this.scale,
      zero_count: this.zeroCount,
      positive_offset: this.positiveOffset,
      positive_buckets: this.bucketCounts(),
      count: this.count,
      sum: this.sum,
      min: this.count === 0 ? 0 : this.min,
      max: this.count === 0 ? 0 : this.max,
    };
  }

  /**
   * Rebuilds a histogram from toJSON() (or an OTLP-shaped point). Leading and
   * trailing empty buckets are trimmed; a histogram with more buckets than
   * maxSize is downscaled to fit.
   */
  static fromJSON(j: ExpHistogramJSON, opts: ExpHistogramOptions = {}): ExpHistogram {
    const h = new ExpHistogram(opts);
    const ints = [j.scale, j.zero_count, j.positive_offset, j.count];
    if (!ints.every(Number.isInteger) || !Array.isArray(j.positive_buckets)) throw new TypeError('malformed exponential histogram JSON');
    if (j.scale > MAX_SCALE || j.scale < MIN_SCALE) throw new RangeError(`scale ${j.scale} out of [${MIN_SCALE}, ${MAX_SCALE}]`);
    let total = j.zero_count;
    for (const c of j.positive_buckets) {
      if (!Number.isInteger(c) || c < 0) throw new TypeError('bucket counts must be integers >= 0');
      total += c;
    }
    if (total !== j.count) throw new RangeError(`count ${j.count} != zero_count + buckets (${total})`);
    h.count = j.count;
    if (j.sum !== 0) h.parts.push(j.sum);
    h.zeroCount = j.zero_count;
    h.min = j.count === 0 ? Infinity : j.min;
    h.max = j.count === 0 ? -Infinity : j.max;
    const b = j.positive_buckets;
    let first = 0;
    let last = b.length - 1;
    while (first <= last && b[first] === 0) first++;
    while (last >= first && b[last] === 0) last--;
    if (first > last) {
      h.scale = Math.min(h.maxScale, j.scale);
      return h;
    }
    const lo = j.positive_offset + first;
    const hi = j.positive_offset + last;
    const target = Math.min(h.maxScale, j.scale);
    const shift0 = j.scale - target;
    const k = h.shiftNeeded(lo >> shift0, hi >> shift0);
    h.scale = target - k;
    const shift = j.scale - h.scale;
    h.low = h.high = lo >> shift;
    h.widen(lo >> shift, hi >> shift);
    for (let i = first; i <= last; i++) if (b[i]! > 0) h.addAt((j.positive_offset + i) >> shift, b[i]!);
    return h;
  }

  /** Least k such that lo..hi (at this.scale) fits maxSize after >> k. */
  private shiftNeeded(lo: number, hi: number): number {
    let k = 0;
    while ((hi >> k) - (lo >> k) + 1 > this.maxSize) k++;
    if (this.scale - k < MIN_SCALE) throw new RangeError('exponential histogram below the minimum scale');
    return k;
  }

  private downscale(k: number): void {
    if (k <= 0) return;
    this.scale -= k;
    if (this.high < this.low) return;
    const old = this.counts;
    const on = old.length;
    const lo = this.low >> k;
    const hi = this.high >> k;
    this.counts = new Float64Array(capacityFor(hi - lo + 1, this.maxSize, old.length));
    const n = this.counts.length;
    for (let i = this.low; i <= this.high; i++) {
      const c = old[mod(i, on)]!;
      if (c !== 0) this.counts[mod(i >> k, n)]! += c;
    }
    this.low = lo;
    this.high = hi;
  }

  /** Extends low..high to lo..hi (span <= maxSize), growing the ring when needed. */
  private widen(lo: number, hi: number): void {
    const span = hi - lo + 1;
    if (span > this.counts.length) {
      const old = this.counts;
      const on = old.length;
      this.counts = new Float64Array(capacityFor(span, this.maxSize, on));
      const n = this.counts.length;
      for (let i = this.low; i <= this.high; i++) this.counts[mod(i, n)] = old[mod(i, on)]!;
    }
    this.low = lo;
    this.high = hi;
  }

  private addAt(idx: number, c: number): void {
    const n = this.counts.length;
    this.counts[((idx % n) + n) % n]! += c;
  }
}

function mod(i: number, n: number): number {
  return ((i % n) + n) % n;
}

function capacityFor(span: number, maxSize: number, current: number): number {
  let c = Math.max(8, current);
  while (c < span) c *= 2;
  return Math.min(c, maxSize) < span ? span : Math.min(c, maxSize);
}

/**
 * Adds `x` to the exact sum held in `parts` (Shewchuk, "Adaptive Precision
 * Floating-Point Arithmetic", grow-expansion with zero elimination): each
 * step is a TwoSum, so nothing is rounded away.
 */
function addPart(parts: number[], x: number): void {
  let i = 0;
  for (let j = 0; j < parts.length; j++) {
    let y = parts[j]!;
    if (Math.abs(x) < Math.abs(y)) {
      const t = x;
      x = y;
      y = t;
    }
    const hi = x + y;
    const lo = y - (hi - x);
    if (lo !== 0) parts[i++] = lo;
    x = hi;
  }
  parts.length = i;
  parts.push(x);
}

/** The correctly rounded (half to even) value of the exact sum held in `parts` (math.fsum's final step). */
function fsumParts(parts: readonly number[]): number {
  let n = parts.length;
  if (n === 0) return 0;
  let hi = parts[--n]!;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = parts[--n]!;
    hi = x + y;
    lo = y - (hi - x);
    if (lo !== 0) break;
  }
  // halfway case: the rest of the partials says which way to round
  if (n > 0 && ((lo < 0 && parts[n - 1]! < 0) || (lo > 0 && parts[n - 1]! > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  return hi;
}
