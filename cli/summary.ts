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
