/**
 * The live summary `ringflow up` prints: per closed window, the worst p99
 * run-queue, disk and connect latencies with their series and event counts,
 * and with the fs signal the slowest file syscalls (slowestFiles).
 * Pure: points in, lines out.
 */
import { ExpHistogram, type ExpHistogramJSON } from '../processor/index.ts';
import { FS_FAILED_PREFIX, belowMinLatency } from '../collector/kernel-counts.ts';

export interface SummaryPoint {
  name: string;
  attributes: { key: string; value: string }[];
  window_start_ns: bigint;
  window_end_ns: bigint;
  histogram: (Omit<ExpHistogramJSON, 'count' | 'zero_count' | 'positive_buckets'> & { count: bigint; zero_count: bigint; positive_buckets: bigint[] }) | null;
  sum: bigint | null;
  /** Set on GAUGE points (ringflow.collector.coverage); absent in older records. */
  gauge?: number | null;
  dropped_inputs: bigint;
}

const COVERAGE_METRIC = 'ringflow.collector.coverage';

/**
 * The coverage points of a window, as a clause: hosts whose collectors did not
 * watch the whole window (the least covered signal of each), '' when all did.
 */
export function coverageClause(points: readonly SummaryPoint[]): string {
  const worst = new Map<string, number>();
  for (const p of points) {
    if (p.name !== COVERAGE_METRIC || typeof p.gauge !== 'number') continue;
    const host = p.attributes.find((a) => a.key === 'host.name')?.value ?? '';
    worst.set(host, Math.min(worst.get(host) ?? 1, p.gauge));
  }
  const short = [...worst].filter(([, f]) => f < 1).map(([h, f]) => `${h} ${Math.floor(f * 100)}%`);
  return short.length ? `collectors watched only: ${short.join(', ')}` : '';
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

const FS_DURATION_METRIC = 'ringflow.fs.io.duration';
/** How many of the window's slowest file series the line names. */
export const SLOWEST_FILES = 3;

export interface SlowFile {
  /** ringflow.fs.path.prefix: a directory (the processor keeps no whole paths), "other", "cut" or "unknown". */
  prefix: string;
  /** ringflow.fs.syscall (pread, fsync, ...). */
  syscall: string;
  /** The slowest call of the series in the window, s (the histogram's max: exact, not a bucket bound). */
  maxS: number;
  /** process.command of the calling task. */
  command: string;
  host: string;
  /** Calls of the series in the window. */
  calls: number;
}

/**
 * Pure: the `n` slowest file series of a window's points, like fileslower's
 * list but per series: the ringflow.fs.io.duration points ranked by their
 * slowest call (the histogram's max), ties by prefix, syscall, command, host
 * so the pick does not depend on the points' order. A file is named by its
 * path prefix: the metrics carry no whole paths (their cardinality), the
 * records in ringflow.fs.io.v1 do (ringflow tail).
 */
export function slowestFiles(points: readonly SummaryPoint[], n = SLOWEST_FILES): SlowFile[] {
  const all: SlowFile[] = [];
  for (const p of points) {
    if (p.name !== FS_DURATION_METRIC || !p.histogram || p.histogram.count === 0n) continue;
    const a = new Map(p.attributes.map((x) => [x.key, x.value]));
    all.push({
      prefix: a.get('ringflow.fs.path.prefix') ?? '?',
      syscall: a.get('ringflow.fs.syscall') ?? '?',
      maxS: p.histogram.max,
      command: a.get('process.command') ?? '?',
      host: a.get('host.name') ?? '',
      calls: Number(p.histogram.count),
    });
  }
  const key = (f: SlowFile): string => `${f.prefix}\u0000${f.syscall}\u0000${f.command}\u0000${f.host}`;
  all.sort((x, y) => y.maxS - x.maxS || (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
  return all.slice(0, n);
}

/** Pure: the slowest files as a clause of the summary line, '' when the window has none. */
export function slowestFilesClause(files: readonly SlowFile[]): string {
  if (files.length === 0) return '';
  return `slowest files: ${files.map((f) => `${f.prefix} ${f.syscall} ${formatSeconds(f.maxS)} (${f.command}${f.host ? ` on ${f.host}` : ''}, ${f.calls} call${f.calls === 1 ? '' : 's'})`).join(', ')}`;
}

/** One line for one window's points. */
export function summarizeWindow(all: readonly SummaryPoint[]): string {
  // coverage is settled well after its window's points: it usually comes alone, and says
  // something only when a collector was not running for part of the window
  const coverage = coverageClause(all);
  const points = all.filter((p) => p.name !== COVERAGE_METRIC);
  const first = points[0];
  if (!first) return coverage && all[0] ? `window ${clock(all[0].window_start_ns)}-${clock(all[0].window_end_ns)}: ${coverage}` : '';
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
  const files = slowestFilesClause(slowestFiles(points));
  const worst = parts.length ? `${head}; worst ${parts.join('; ')}` : head;
  const line = files ? `${worst}; ${files}` : worst;
  return coverage ? `${line}; ${coverage}` : line;
}

/** What `up` reads of a collector stats record (schemas/collector.stats.avsc; longs decode as bigint). */
export interface CollectorLossInput {
  events: { kernel_drops: bigint | number; user_drops: bigint | number }[];
  drop_reasons?: { reason: string; count: bigint | number }[];
  kernel_losses?: { reason: string; count: bigint | number }[];
  /** Calls counted in the kernel, not reported, not losses (collector/kernel-counts.ts). */
  kernel_counts?: { reason: string; count: bigint | number }[];
  l7_parse_failures?: { reason: string; count: bigint | number }[];
  clamped?: bigint | number;
  host?: string;
  time_ns?: bigint | number;
  run_id?: string;
  run_start_ns?: bigint | number;
  previous_run_id?: string;
  previous_run_end_ns?: bigint | number;
}

/**
 * The collectors' losses between two summary lines, from their stats records:
 * `up` runs the collector with --quiet, so its own summary line is not seen;
 * this carries the same losses (kernel and user drops, user and kernel losses by reason,
 * L7 parser stops by reason, clamped values) onto up's line. Reasons are a
 * fixed set (collector.ts DROP_REASONS), so the maps stay small.
 */
export class CollectorLosses {
  private kernel = 0;
  private user = 0;
  private clamped = 0;
  /** File calls under --min-latency, and failed ones with no file (kernel_counts): not losses, but never unsaid. */
  private fsBelow = 0;
  private fsFailed = 0;
  private readonly reasons = new Map<string, number>();
  private readonly kernelReasons = new Map<string, number>();
  private readonly parse = new Map<string, number>();
  /** Collector runs that started after a predecessor (restart or crash) since the last take(); bounded. */
  private restarts: string[] = [];
  private restartsMore = 0;

  add(s: CollectorLossInput): void {
    // a run's start record (stamped run_start_ns) names its predecessor: a restart, said once
    if (s.run_id && s.previous_run_id && s.run_start_ns !== undefined && s.time_ns !== undefined && BigInt(s.time_ns) === BigInt(s.run_start_ns)) {
      const gap = Number(BigInt(s.run_start_ns) - BigInt(s.previous_run_end_ns ?? s.run_start_ns)) / 1e9;
      if (this.restarts.length < 4) this.restarts.push(`${s.host ?? '?'} run ${s.run_id} after ${s.previous_run_id}, ${gap.toFixed(1)}s unwatched`);
      else this.restartsMore++;
    }
    for (const e of s.events) {
      this.kernel += Number(e.kernel_drops);
      this.user += Number(e.user_drops);
    }
    for (const r of s.drop_reasons ?? []) this.reasons.set(r.reason, (this.reasons.get(r.reason) ?? 0) + Number(r.count));
    for (const r of s.kernel_losses ?? []) this.kernelReasons.set(r.reason, (this.kernelReasons.get(r.reason) ?? 0) + Number(r.count));
    for (const r of s.l7_parse_failures ?? []) this.parse.set(r.reason, (this.parse.get(r.reason) ?? 0) + Number(r.count));
    this.clamped += Number(s.clamped ?? 0);
    this.fsBelow += belowMinLatency(s.kernel_counts);
    for (const r of s.kernel_counts ?? []) if (r.reason.startsWith(FS_FAILED_PREFIX)) this.fsFailed += Number(r.count);
  }

  /** A clause for the summary line covering everything added since the last take(), then starts again; '' when nothing was lost. */
  take(): string {
    const list = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
    const parts: string[] = [];
    if (this.kernel > 0 || this.user > 0) parts.push(`kernel drops ${this.kernel}, user drops ${this.user}`);
    const reasons = list(this.reasons);
    if (reasons) parts.push(`lost by reason: ${reasons}`);
    const kernelReasons = list(this.kernelReasons);
    if (kernelReasons) parts.push(`lost in the kernel by reason: ${kernelReasons}`);
    const parse = list(this.parse);
    if (parse) parts.push(`l7 parse losses and recoveries: ${parse}`);
    if (this.clamped > 0) parts.push(`stats values clamped ${this.clamped}`);
    if (this.fsBelow > 0 || this.fsFailed > 0) {
      parts.push([this.fsBelow > 0 ? `${this.fsBelow} file calls under --min-latency` : '', this.fsFailed > 0 ? `${this.fsFailed} failed opens (no file: --path/--fs not applied)` : ''].filter(Boolean).join(', '));
    }
    if (this.restarts.length > 0) parts.push(`restarted: ${this.restarts.join('; ')}${this.restartsMore ? ` and ${this.restartsMore} more` : ''}`);
    this.restarts = [];
    this.restartsMore = 0;
    this.kernel = this.user = this.clamped = this.fsBelow = this.fsFailed = 0;
    this.reasons.clear();
    this.kernelReasons.clear();
    this.parse.clear();
    return parts.length ? `; collectors: ${parts.join('; ')}` : '';
  }
}
