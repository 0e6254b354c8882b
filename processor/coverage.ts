/**
 * Coverage arithmetic: how much of a window a host's collector runs watched.
 * Pure functions, table-tested (test/unit/coverage.test.ts); stage 2's state
 * (partition.ts) keeps the intervals per (topic, host, window).
 *
 * A stats record of a run covers (time_ns - interval_ns, time_ns]; a run's
 * records tile its life from run_start_ns (collector/collector.ts). Windows
 * are [start, end). Only lengths matter here (a point has no length), so the
 * covered nanoseconds of a window are the length of the union of the
 * intervals intersected with it. A new run's first record also states the
 * gap since its predecessor's last known record: (previous_run_end_ns,
 * run_start_ns] was watched by nobody.
 */

/** A half-open interval (fromNs, toNs] of wall-clock ns; empty when toNs <= fromNs. */
export type Interval = readonly [fromNs: bigint, toNs: bigint];

/**
 * Covered ns of the window [startNs, endNs): the length of the union of
 * `intervals` intersected with it. Overlapping or repeated intervals (a stats
 * record read twice, two records overlapping after a clock step) count once.
 */
export function coveredNs(intervals: readonly Interval[], startNs: bigint, endNs: bigint): bigint {
  let total = 0n;
  for (const [a, b] of mergeClipped(intervals, startNs, endNs)) total += b - a;
  return total;
}

/**
 * `intervals` plus one more, clipped to [startNs, endNs) and merged where they
 * overlap or touch: what a window keeps, bounded by the number of gaps in its
 * coverage, not by the number of records.
 */
export function addInterval(intervals: readonly Interval[], add: Interval, startNs: bigint, endNs: bigint): Interval[] {
  return mergeClipped([...intervals, add], startNs, endNs);
}

/** The intervals clipped to [startNs, endNs), sorted, overlapping or touching ones merged. */
function mergeClipped(intervals: readonly Interval[], startNs: bigint, endNs: bigint): [bigint, bigint][] {
  const all = intervals
    .map(([a, b]): [bigint, bigint] => [a > startNs ? a : startNs, b < endNs ? b : endNs])
    .filter(([a, b]) => b > a)
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [a, b] of all) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) {
      if (b > last[1]) last[1] = b;
    } else {
      out.push([a, b]);
    }
  }
  return out;
}

/** The fraction of a window covered, in [0, 1]. */
export function coverageFraction(covered: bigint, sizeNs: bigint): number {
  if (sizeNs <= 0n || covered <= 0n) return 0;
  if (covered >= sizeNs) return 1;
  return Number(covered) / Number(sizeNs);
}

/**
 * Starts of the windows of `sizeNs` (aligned to multiples of it) that share a
 * positive length with (fromNs, toNs], ascending; at most `max`, the latest
 * ones (an interval of days after a clock step must not make millions).
 */
export function windowStartsOf(fromNs: bigint, toNs: bigint, sizeNs: bigint, max: number): bigint[] {
  if (toNs <= fromNs || sizeNs <= 0n || max <= 0) return [];
  const floor = (t: bigint) => t - (((t % sizeNs) + sizeNs) % sizeNs);
  const first = floor(fromNs); // [first, first + size) holds fromNs, and (fromNs, ...] enters it unless it ends there
  const last = floor(toNs - 1n); // the window holding the interval's last covered ns
  const out: bigint[] = [];
  for (let s = last; s >= first && out.length < max; s -= sizeNs) {
    if (s + sizeNs > fromNs) out.push(s);
  }
  return out.reverse();
}

/** What a stats record says about coverage (schemas/collector.stats.avsc). */
export interface RunCoverage {
  /** (time_ns - interval_ns, time_ns]: watched by this run. Null when the record covers nothing. */
  covered: Interval | null;
  /** (previous_run_end_ns, run_start_ns]: watched by nobody; only on the record a run sends at start. */
  gap: Interval | null;
}

/**
 * A decoded stats record -> what it says about coverage, or null for a record
 * that says nothing (an older collector without a run identity). Pure.
 */
export function runCoverageOf(rec: { run_id?: unknown; run_start_ns?: unknown; previous_run_end_ns?: unknown; time_ns: unknown; interval_ns: unknown }): RunCoverage | null {
  if (typeof rec.run_id !== 'string' || rec.run_id === '') return null;
  const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : 0n);
  const time = big(rec.time_ns);
  const interval = big(rec.interval_ns);
  const runStart = big(rec.run_start_ns);
  const prevEnd = big(rec.previous_run_end_ns);
  const from = time - interval;
  const covered: Interval | null = interval > 0n ? [from, time] : null;
  // the record a run sends at its start is stamped run_start_ns (collector.ts): only it states
  // the gap, so the gap is said once per run whichever of the run's records carry the predecessor
  // (its next record also starts at run_start_ns, and may carry the same predecessor)
  const first = runStart > 0n && time === runStart && interval === 0n;
  const gap: Interval | null = first && prevEnd > 0n && runStart > prevEnd ? [prevEnd, runStart] : null;
  return { covered, gap };
}
