/**
 * The live summary `ringflow up` prints: per closed window, the worst p99
 * run-queue, disk and connect latencies with their series and event counts.
 * Pure: points in, lines out.
 */
import { ExpHistogram, type ExpHistogramJSON } from '../processor/index.ts';

export interface SummaryPoint {
  name: string;
  attributes: { key: string; value: string }[];
  window_start_ns: bigint;
  window_end_ns: bigint;
  histogram: (Omit<ExpHistogramJSON, 'count' | 'zero_count' | 'positive_buckets'> & { count: bigint; zero_count: bigint; positive_buckets: bigint[] }) | null;
  sum: bigint | null;
  dropped_inputs: bigint;
}

const WATCHED: [metric: string, label: string, dims: string[]][] = [
  ['ringflow.sched.runqueue.latency', 'run queue', ['process.command', 'host.name']],
  ['ringflow.block.io.latency', 'disk', ['system.device', 'disk.io.direction', 'host.name']],
  ['ringflow.tcp.connect.duration', 'connect', ['server.address', 'server.port', 'host.name']],
];

export function formatSeconds(s: number): string {
  if (s >= 1) return `${s.toFixed(2)}s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(2)}ms`;
  return `${(s * 1e6).toFixed(1)}µs`;
}

function clock(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString().slice(11, 19);
}

/** One line for one window's points. */
export function summarizeWindow(points: readonly SummaryPoint[]): string {
  const first = points[0];
  if (!first) return '';
  const parts: string[] = [];
  let events = 0;
  let dropped = 0;
  for (const p of points) {
    if (p.histogram) events += Number(p.histogram.count);
    dropped += Number(p.dropped_inputs);
  }
  for (const [metric, label, dims] of WATCHED) {
    let worst: { p99: number; n: number; who: string } | undefined;
    for (const p of points) {
      if (p.name !== metric || !p.histogram || p.histogram.count === 0n) continue;
      const h = ExpHistogram.fromJSON({
        ...p.histogram,
        count: Number(p.histogram.count),
        zero_count: Number(p.histogram.zero_count),
        positive_buckets: p.histogram.positive_buckets.map(Number),
      });
      const p99 = h.quantile(0.99);
      if (!worst || p99 > worst.p99) {
        const attrs = new Map(p.attributes.map((a) => [a.key, a.value]));
        worst = { p99, n: Number(p.histogram.count), who: dims.map((d) => attrs.get(d)).filter(Boolean).join(' ') };
      }
    }
    if (worst) parts.push(`${label} p99 ${formatSeconds(worst.p99)} (${worst.who}, ${worst.n} events)`);
  }
  const head = `window ${clock(first.window_start_ns)}-${clock(first.window_end_ns)}: ${points.length} series, ${events} latency events${dropped ? `, ${dropped} dropped by collectors` : ''}`;
  return parts.length ? `${head}; worst ${parts.join('; ')}` : head;
}

/** What `up` reads of a collector stats record (schemas/collector.stats.avsc; longs decode as bigint). */
export interface CollectorLossInput {
  events: { kernel_drops: bigint | number; user_drops: bigint | number }[];
  drop_reasons?: { reason: string; count: bigint | number }[];
  l7_parse_failures?: { reason: string; count: bigint | number }[];
  clamped?: bigint | number;
}

/**
 * The collectors' losses between two summary lines, from their stats records:
 * `up` runs the collector with --quiet, so its own summary line is not seen;
 * this carries the same losses (kernel and user drops, user losses by reason,
 * L7 parser stops by reason, clamped values) onto up's line. Reasons are a
 * fixed set (collector.ts DROP_REASONS), so the maps stay small.
 */
export class CollectorLosses {
  private kernel = 0;
  private user = 0;
  private clamped = 0;
  private readonly reasons = new Map<string, number>();
  private readonly parse = new Map<string, number>();

  add(s: CollectorLossInput): void {
    for (const e of s.events) {
      this.kernel += Number(e.kernel_drops);
      this.user += Number(e.user_drops);
    }
    for (const r of s.drop_reasons ?? []) this.reasons.set(r.reason, (this.reasons.get(r.reason) ?? 0) + Number(r.count));
    for (const r of s.l7_parse_failures ?? []) this.parse.set(r.reason, (this.parse.get(r.reason) ?? 0) + Number(r.count));
    this.clamped += Number(s.clamped ?? 0);
  }

  /** A clause for the summary line covering everything added since the last take(), then starts again; '' when nothing was lost. */
  take(): string {
    const list = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
    const parts: string[] = [];
    if (this.kernel > 0 || this.user > 0) parts.push(`kernel drops ${this.kernel}, user drops ${this.user}`);
    const reasons = list(this.reasons);
    if (reasons) parts.push(`lost by reason: ${reasons}`);
    const parse = list(this.parse);
    if (parse) parts.push(`l7 parsers stopped: ${parse}`);
    if (this.clamped > 0) parts.push(`stats values clamped ${this.clamped}`);
    this.kernel = this.user = this.clamped = 0;
    this.reasons.clear();
    this.parse.clear();
    return parts.length ? `; collectors: ${parts.join('; ')}` : '';
  }
}
