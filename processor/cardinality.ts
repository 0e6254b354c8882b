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
 *
 * Before that, value caps (DEFAULT_VALUE_CAPS) bound one attribute of its
 * own: per metric and window (and host with `perHost`), the N values of the
 * attribute with the most events stay, every other value becomes "other"
 * and its series merge (foldValues). The fs metrics' path prefix is one: a
 * host touching thousands of directories keeps its top 100 prefixes, the
 * rest is one "other" prefix per (process, op, ...) whose events are all
 * still counted, while the other attributes stay as they are.
 */
import { mergePoints, seriesKey, type Attribute, type SeriesPoint } from './aggregate.ts';
import type { ExpHistogramOptions } from './histogram.ts';

export const OTHER = 'other';
export const DEFAULT_TOP_K = 100;

/** One attribute whose values are capped per metric and window (foldValues). */
export interface ValueCap {
  readonly key: string;
  /** Values kept; default 100. */
  readonly topN: number;
}

/** ringflow.fs.path.prefix (processor/aggregate.ts fsMetrics): the top 100 prefixes per window (docs/design/fs.md section 6). */
export const DEFAULT_VALUE_CAPS: readonly ValueCap[] = [{ key: 'ringflow.fs.path.prefix', topN: 100 }];

export interface CardinalityOptions {
  /** Attribute value caps applied before the series cap; default DEFAULT_VALUE_CAPS. */
  valueCaps?: readonly ValueCap[];
  /** Series kept per group; default 100. */
  topK?: number;
  /** Attribute keys never folded; default ['host.name']. */
  keep?: readonly string[];
  /** Group (and count K) per host.name value too, not only per metric and window. */
  perHost?: boolean;
  histogram?: ExpHistogramOptions;
}

/** Caps `points` (any metrics and windows, one point per series and window); returns them sorted by seriesKey. */
export function capCardinality(input: readonly SeriesPoint[], opts: CardinalityOptions = {}): SeriesPoint[] {
  const k = opts.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`topK must be an integer >= 0, got ${k}`);
  const keep = new Set(opts.keep ?? ['host.name']);
  let points = input;
  for (const cap of opts.valueCaps ?? DEFAULT_VALUE_CAPS) points = foldValues(points, cap, opts);
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

/**
 * Pure: caps the values of attribute `cap.key`: per group (metric and window,
 * and host.name with `perHost`), values ranked by the events of their series
 * (count + late events, so a prefix seen only late still ranks), ties by value
 * ascending; the top `cap.topN` stay, the rest become "other" and the series
 * that then coincide merge (histograms merge, counts and sums add: nothing is
 * lost, only the value's name). Points without the attribute, and groups with
 * at most topN values, pass through unchanged (the same objects). Output in
 * input order of each series' first point.
 */
export function foldValues(points: readonly SeriesPoint[], cap: ValueCap, opts: Pick<CardinalityOptions, 'perHost' | 'histogram'> = {}): SeriesPoint[] {
  const n = cap.topN;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`topN of ${cap.key} must be an integer >= 0, got ${n}`);
  const groupOf = (p: SeriesPoint): string => {
    const host = opts.perHost ? (p.attributes.find(([a]) => a === 'host.name')?.[1] ?? '') : '';
    return JSON.stringify([p.name, String(p.windowStartNs), String(p.windowEndNs), host]);
  };
  // events per value per group
  const weights = new Map<string, Map<string, number>>();
  for (const p of points) {
    const v = p.attributes.find(([a]) => a === cap.key)?.[1];
    if (v === undefined) continue;
    const g = groupOf(p);
    let m = weights.get(g);
    if (!m) weights.set(g, (m = new Map()));
    m.set(v, (m.get(v) ?? 0) + p.count + p.lateEvents);
  }
  const kept = new Map<string, Set<string>>();
  for (const [g, m] of weights) {
    if (m.size <= n) continue;
    const ranked = [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    kept.set(g, new Set(ranked.slice(0, n).map(([v]) => v)));
  }
  if (kept.size === 0) return [...points];
  const out = new Map<string, SeriesPoint>();
  for (const p of points) {
    const i = p.attributes.findIndex(([a]) => a === cap.key);
    const keepSet = i >= 0 ? kept.get(groupOf(p)) : undefined;
    let q = p;
    if (keepSet !== undefined && !keepSet.has(p.attributes[i]![1])) {
      q = { ...p, attributes: p.attributes.map(([k, v], j): Attribute => [k, j === i ? OTHER : v]) };
    }
    const key = seriesKey(q);
    const prev = out.get(key);
    out.set(key, prev ? mergePoints(prev, q, opts.histogram) : q);
  }
  return [...out.values()];
}

function fold(p: SeriesPoint, keep: ReadonlySet<string>): SeriesPoint {
  return { ...p, attributes: p.attributes.map(([k, v]): Attribute => [k, keep.has(k) ? v : OTHER]) };
}
