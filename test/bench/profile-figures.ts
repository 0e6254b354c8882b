/**
 * Pure parsing and arithmetic behind the profile benchmark's figures
 * (test/bench/profile.ts), apart so they have table tests
 * (test/unit/bench-profile-figures.test.ts) and the benchmark only measures.
 *
 *   the workload's JSON line      -> work done and the seconds it ran
 *   runs with and without ringflow -> the work-done ratio (rates, so runs of
 *                                    slightly different lengths compare)
 *   bpf_stats deltas per hook      -> BPF run time per event (per sample for
 *                                    profile, per context switch for offcpu)
 *   the collector's CPU over a run -> its CPU per drain interval
 */
import type { HookFigures } from './l7-figures.ts';

export interface WorkRun {
  /** units of work done (hashes of the buffer, round trips) */
  work: number;
  seconds: number;
  /** CPU seconds the workload used (its processes, user + system); absent from older output */
  cpu_s?: number;
}

/** The last line of profile-work's stdout: {"work":N,"unit":"...","seconds":S,"cpu_s":C}. */
export function parseWork(stdout: string): WorkRun {
  const line = stdout.trim().split('\n').pop() ?? '';
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error(`cannot read the workload's output: ${JSON.stringify(stdout)}`);
  }
  const { work, seconds, cpu_s } = (v ?? {}) as { work?: unknown; seconds?: unknown; cpu_s?: unknown };
  if (typeof work !== 'number' || !(work >= 0) || typeof seconds !== 'number' || !(seconds > 0) || (cpu_s !== undefined && (typeof cpu_s !== 'number' || !(cpu_s >= 0)))) {
    throw new Error(`cannot read the workload's output: ${JSON.stringify(stdout)}`);
  }
  return cpu_s === undefined ? { work, seconds } : { work, seconds, cpu_s };
}

export const rate = (r: WorkRun): number => r.work / r.seconds;

/**
 * Work per second with ringflow over the mean rate of the runs without it
 * (interleaved before, between and after, so drift of a shared machine shows
 * less); null without a reference run or when the references did nothing.
 */
export function workRatio(withRun: WorkRun, without: readonly WorkRun[], digits = 3): number | null {
  if (without.length === 0) return null;
  const base = without.reduce((a, r) => a + rate(r), 0) / without.length;
  return base > 0 ? +(rate(withRun) / base).toFixed(digits) : null;
}

/**
 * Work per CPU second of the workload with ringflow over the mean of the runs
 * without it. Other load on a shared machine takes CPU from the workload and
 * moves the wall-clock ratio by tens of percent; what each unit of work costs
 * in CPU moves much less. The cost of BPF programs run in interrupts
 * (profile's samples) may be accounted as IRQ time rather than the task's:
 * bpf_ns_per_event says that part. null without CPU figures on every run.
 */
export function perCpuRatio(withRun: WorkRun, without: readonly WorkRun[], digits = 3): number | null {
  const perCpu = (r: WorkRun) => (r.cpu_s !== undefined && r.cpu_s > 0 ? r.work / r.cpu_s : null);
  const w = perCpu(withRun);
  const refs = without.map(perCpu);
  if (w === null || refs.length === 0 || refs.some((x) => x === null)) return null;
  const base = (refs as number[]).reduce((a, x) => a + x, 0) / refs.length;
  return base > 0 ? +(w / base).toFixed(digits) : null;
}

export interface EventCost {
  /** runs of the event's own program (samples taken, context switches seen) */
  events: number;
  /** BPF run time of all of the collector's programs per event; null without events */
  bpf_ns_per_event: number | null;
  /** the same, all programs, over the run */
  bpf_total_ns: number;
}

/**
 * BPF run time per event of `eventProgram` (the program that runs once per
 * event, e.g. rf_offcpu_switch per context switch). Every program of the
 * collector is summed, so work a signal moves to another hook (a lazily taken
 * stack) still counts against the same events. null hooks: no bpf_stats.
 */
export function eventCost(hooks: Record<string, HookFigures> | null, eventProgram: string): EventCost | null {
  if (!hooks) return null;
  const events = hooks[eventProgram]?.calls ?? 0;
  const total = Object.values(hooks).reduce((a, h) => a + h.total_ns, 0);
  return { events, bpf_ns_per_event: events > 0 ? +(total / events).toFixed(1) : null, bpf_total_ns: total };
}

/** The collector's CPU (ms) per drain interval, from its CPU seconds over a run of `seconds`. */
export function cpuMsPerInterval(cpuSeconds: number, seconds: number, intervalMs: number): number | null {
  if (!(seconds > 0)) return null;
  return +((cpuSeconds / seconds) * intervalMs).toFixed(1);
}
