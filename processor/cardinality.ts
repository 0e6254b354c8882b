/**
 * Cardinality cap: per metric and window (optionally also per host), keep the
 * K series with the most events and fold the rest into "other" series.
 *
 * Folding replaces the value of every attribute except the kept ones
 * (host.name by default) with "other", then merges exactly what lands on the
 * same attributes (histograms merge, sums, counts and late events add). So
 * the folded remainder stays one series per host: which host is noisy stays
 * visible, and totals per host stay exact. Output is at most K + (hosts among
 * the folded series) points per metric and window; with `perHost` the K is
 * per host.
 *
 * Ranking: count descending, ties broken by seriesKey ascending, so the result
 * does not depend on the input order. A folded series whose attributes equal
 * a kept one's (a kept series already valued "other") merges into it: the
 * output never holds two points of one series and window.
 *
 * Cap after the last merge stage: top-K of partial aggregates is not the
 * top-K of their merge.
 */
import { mergePoints, seriesKey, type Attribute, type SeriesPoint } from './aggregate.ts';
import type { ExpHistogramOptions } from './histogram.ts';

export const OTHER = 'other';
export const DEFAULT_TOP_K = 100;

export interface CardinalityOptions {
  /** Series kept per group; default 100. */
  topK?: number;
  /** Attribute keys never folded; default ['host.name']. */
  keep?: readonly string[];
  /** Group (and count K) per host.name value too, not only per metric and window. */
  perHost?: boolean;
  histogram?: ExpHistogramOptions;
}

/** Caps `points` (any metrics and windows, one point per series and window); returns them sorted by seriesKey. */
export function capCardinality(points: readonly SeriesPoint[], opts: CardinalityOptions = {}): SeriesPoint[] {
  const k = opts.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`topK must be an integer >= 0, got ${k}`);
  const keep = new Set(opts.keep ?? ['host.name']);
  const groups = new Map<string, { key: string; p: SeriesPoint }[]>();
  for (const p of points) {
    const host = opts.perHost ? (p.attributes.find(([a]) => a === 'host.name')?.[1] ?? '') : '';
    const g = JSON.stringify([p.name, String(p.windowStartNs), String(p.windowEndNs), host]);
    let l = groups.get(g);
    if (!l) groups.set(g, (l = []));
    l.push({ key: seriesKey(p), p });
  }
  const out = new Map<string, SeriesPoint>();
  const put = (p: SeriesPoint): void => {
    const key = seriesKey(p);
    const prev = out.get(key);
    out.set(key, prev ? mergePoints(prev, p, opts.histogram) : p);
  };
  for (const list of groups.values()) {
    if (list.length <= k) {
      for (const { p } of list) put(p);
      continue;
    }
    list.sort((a, b) => b.p.count - a.p.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (let i = 0; i < k; i++) put(list[i]!.p);
    // fold in rank order so merges happen in an order independent of the input
    for (let i = k; i < list.length; i++) put(fold(list[i]!.p, keep));
  }
  return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
}

function fold(p: SeriesPoint, keep: ReadonlySet<string>): SeriesPoint {
  return { ...p, attributes: p.attributes.map(([k, v]): Attribute => [k, keep.has(k) ? v : OTHER]) };
}
