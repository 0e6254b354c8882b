/**
 * Pure parsing and arithmetic behind the fs benchmark's figures
 * (test/bench/fs.ts), apart so they have table tests
 * (test/unit/fs-bench-figures.test.ts) and the benchmark only measures.
 * The work ratios themselves are profile-figures.ts's (workRatio,
 * perCpuRatio): the same arithmetic on the same kind of workload line.
 *
 *   the collector's summary lines  -> records of a topic, kernel and user drops,
 *                                     kernel losses by reason, over its life
 *   bpf_stats deltas per hook      -> BPF run time per call of given syscalls
 *                                     (enter + exit programs)
 *   several runs of one workload   -> one run (sums), for the headline ratios
 */
import type { HookFigures } from './l7-figures.ts';
import type { WorkRun } from './profile-figures.ts';

export interface CollectorTotals {
  /** records read from the ring, by event ("fs.io") */
  read: Record<string, number>;
  produced: number;
  kernel_drops: number;
  user_drops: number;
  /** the BPF programs' own loss counters by reason ("fs_unfinished") */
  kernel_losses: Record<string, number>;
  /** summary lines seen (0: the collector printed none, the figures mean nothing) */
  lines: number;
}

const SUMMARY = /^ringflow: [\d.]+s: read (\d+)(?: \(([^)]*)\))?, produced (\d+), kernel drops (\d+), user drops (\d+)/;

/**
 * Sums `ringflow collect`'s per-interval summary lines (stderr; the last one
 * is printed at stop, so the sum covers the whole session). Other lines are
 * skipped. Throws on a line that starts like a summary but does not parse:
 * a changed format must not read as zero records.
 */
export function collectorTotals(stderr: string): CollectorTotals {
  const t: CollectorTotals = { read: {}, produced: 0, kernel_drops: 0, user_drops: 0, kernel_losses: {}, lines: 0 };
  for (const line of stderr.split('\n')) {
    if (!/^ringflow: [\d.]+s: read /.test(line)) continue;
    const m = SUMMARY.exec(line);
    if (!m) throw new Error(`cannot read the collector's summary line: ${JSON.stringify(line)}`);
    t.lines++;
    for (const part of (m[2] ?? '').split(', ').filter((x) => x !== '')) {
      const p = /^(\S+) (\d+)$/.exec(part);
      if (!p) throw new Error(`cannot read the collector's summary line: ${JSON.stringify(line)}`);
      t.read[p[1]!] = (t.read[p[1]!] ?? 0) + Number(p[2]);
    }
    t.produced += Number(m[3]);
    t.kernel_drops += Number(m[4]);
    t.user_drops += Number(m[5]);
    // the list runs to the next "; " part; the CPU part (", cpu N%") follows the last one
    const k = /; lost in the kernel by reason: ([^;]*?)(?:, cpu \d+%)?(?:;|$)/.exec(line);
    for (const part of (k?.[1] ?? '').split(', ').filter((x) => x !== '')) {
      const p = /^(\S+) (\d+)$/.exec(part);
      if (!p) throw new Error(`cannot read the collector's summary line: ${JSON.stringify(line)}`);
      t.kernel_losses[p[1]!] = (t.kernel_losses[p[1]!] ?? 0) + Number(p[2]);
    }
  }
  return t;
}

export interface SyscallCost {
  /** runs of the enter programs of these syscalls (every caller on the host: others are rejected by the task filter) */
  calls_seen: number;
  /** BPF run time (enter + exit programs) per call seen; null without calls */
  bpf_ns_per_call: number | null;
  /** the workload's calls / calls seen: near 1, bpf_ns_per_call is the workload's own */
  workload_share: number | null;
}

/**
 * BPF run time per call of `syscalls`, from the programs `<prefix>enter_<sc>`
 * and `<prefix>exit_<sc>` (bpftool's names: the full name from BTF). Programs
 * of other syscalls are not counted. null hooks: no bpf_stats.
 */
export function syscallCost(hooks: Record<string, HookFigures> | null, syscalls: readonly string[], workloadCalls: number, prefix = 'rf_fs_'): SyscallCost | null {
  if (!hooks) return null;
  let calls = 0;
  let ns = 0;
  for (const sc of syscalls) {
    const enter = hooks[`${prefix}enter_${sc}`];
    const exit = hooks[`${prefix}exit_${sc}`];
    calls += enter?.calls ?? 0;
    ns += (enter?.total_ns ?? 0) + (exit?.total_ns ?? 0);
  }
  return {
    calls_seen: calls,
    bpf_ns_per_call: calls > 0 ? +(ns / calls).toFixed(1) : null,
    workload_share: calls > 0 ? +(workloadCalls / calls).toFixed(3) : null,
  };
}

/** Several runs of one workload as one: work, seconds and CPU summed (cpu_s only when every run has it). */
export function sumRuns(runs: readonly WorkRun[]): WorkRun {
  const work = runs.reduce((a, r) => a + r.work, 0);
  const seconds = runs.reduce((a, r) => a + r.seconds, 0);
  if (runs.length === 0 || runs.some((r) => r.cpu_s === undefined)) return { work, seconds };
  return { work, seconds, cpu_s: runs.reduce((a, r) => a + r.cpu_s!, 0) };
}

/** bpf_stats deltas of several runs summed per hook; null if any run has none. */
export function sumHooks(runs: readonly (Record<string, HookFigures> | null)[]): Record<string, HookFigures> | null {
  if (runs.length === 0 || runs.some((h) => h === null)) return null;
  const out: Record<string, { calls: number; total_ns: number }> = {};
  for (const h of runs) {
    for (const [name, f] of Object.entries(h!)) {
      const s = (out[name] ??= { calls: 0, total_ns: 0 });
      s.calls += f.calls;
      s.total_ns += f.total_ns;
    }
  }
  return Object.fromEntries(Object.entries(out).map(([name, s]) => [name, { calls: s.calls, ns_per_call: s.calls > 0 ? +(s.total_ns / s.calls).toFixed(1) : null, total_ns: s.total_ns }]));
}

/** Collector CPU µs per record; null without records. */
export function cpuUsPerRecord(cpuSeconds: number, records: number): number | null {
  return records > 0 ? +((cpuSeconds * 1e6) / records).toFixed(2) : null;
}
