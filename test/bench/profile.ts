/**
 * Issue 11's cost figures for `npm run bench` (BENCH_ONLY=profile):
 *
 *   profile_overhead_ratio       work done by a CPU-bound workload (2 processes
 *                                hashing a buffer, profile-work.c spin) with
 *                                `ringflow collect --signals profile` at the default
 *                                19 Hz / without ringflow, same run; _99hz at 99 Hz
 *   offcpu_overhead_ratio        round trips of a pipe ping-pong (a context switch
 *                                per hop) with `--signals offcpu` / without
 *   *_bpf_ns_per_sample, offcpu_bpf_ns_per_switch
 *                                BPF run time of the collector's programs
 *                                (kernel.bpf_stats_enabled) per profiler sample /
 *                                per context switch seen
 *   *_collector_cpu_ms_per_interval  the collector's CPU per --profile-interval (10 s)
 *   *_per_cpu_ratio              the same ratios per CPU second the workload used:
 *                                other load on a shared machine moves the wall-clock
 *                                ratios by tens of percent, these much less
 *
 * Every configuration runs both workloads (so profile's cost under switches and
 * offcpu's under a CPU-bound load show too, in `profile_runs`). Each workload is
 * spawned the same way in every run, with and without ringflow; the collector is
 * started before and stopped after its runs (its start-up is not measured). The
 * runs without ringflow come before, between and after (their mean is the
 * reference). Timings are printed, never asserted.
 *
 * BENCH_PROFILE_SECONDS (default 10) sets each run's length.
 */
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { enableBpfStats, progCounters, progNames, procCpuSeconds, startObserver, stopObserver } from './l7.ts';
import { hookDeltas, type HookFigures } from './l7-figures.ts';
import { parseWork, workRatio, perCpuRatio, eventCost, cpuMsPerInterval, rate, type WorkRun } from './profile-figures.ts';

const INTERVAL_MS = 10_000; // collect's default --profile-interval
const SAMPLE_PROGRAM = 'rf_prof_sample';
const SWITCH_PROGRAM = 'rf_offcpu_switch';

interface Measured extends WorkRun {
  collector_cpu_s: number;
  hooks: Record<string, HookFigures> | null;
}

function buildWorkload(dir: string): string {
  const bin = path.join(dir, 'profile-work');
  execFileSync('cc', ['-O2', '-fno-omit-frame-pointer', '-o', bin, path.join(REPO_ROOT, 'test/bench/profile-work.c')], { stdio: ['ignore', 'inherit', 'inherit'] });
  return bin;
}

/** One workload run, spawned asynchronously (this process reads the collector's stderr meanwhile), with the collector's CPU and programs read around it. */
async function measured(bin: string, args: string[], collector?: { pid: number; names: ReadonlyMap<number, string> }): Promise<Measured> {
  const p0 = collector ? progCounters(collector.pid) : [];
  const c0 = collector ? procCpuSeconds(collector.pid) : 0;
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = await once(child, 'exit') as [number | null];
  const c1 = collector ? procCpuSeconds(collector.pid) : 0;
  const hooks = collector ? hookDeltas(p0, progCounters(collector.pid), collector.names) : null;
  if (code !== 0) throw new Error(`${path.basename(bin)} ${args.join(' ')} exited with ${code}`);
  return { ...parseWork(out), collector_cpu_s: c1 - c0, hooks };
}

export async function profileOverhead(brokers: string, seconds = 10): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-bench-profile-'));
  const restoreStats = enableBpfStats();
  try {
    const bin = buildWorkload(dir);
    const runFor = (s: number): Record<string, string[]> => ({ cpu: ['spin', '2', String(s)], pingpong: ['pingpong', String(s)] });
    const workloads = runFor(seconds);
    const alone = async () => {
      const r: Record<string, Measured> = {};
      for (const [w, args] of Object.entries(workloads)) r[w] = await measured(bin, args);
      return r;
    };
    const withCollector = async (signal: string, extra: string[]) => {
      const c = await startObserver(path.join(REPO_ROOT, 'bin/ringflow'),
        ['collect', '--signals', signal, '--brokers', brokers, '--host', 'bench-profile', '--stats-interval', '10s', ...extra], /collecting/, 'collector');
      try {
        const names = progNames();
        const r: Record<string, Measured> = {};
        for (const [w, args] of Object.entries(workloads)) r[w] = await measured(bin, args, { pid: c.child.pid!, names });
        return r;
      } finally {
        await stopObserver(c.child);
      }
    };
    for (const args of Object.values(runFor(1))) await measured(bin, args); // warm-up
    const base: Record<string, Measured>[] = [await alone()];
    const p19 = await withCollector('profile', []);
    base.push(await alone());
    const p99 = await withCollector('profile', ['--profile-hz', '99']);
    const off = await withCollector('offcpu', []);
    base.push(await alone());

    const ref = (w: string) => base.map((b) => b[w]!);
    const figures = (r: Record<string, Measured>, eventProgram: string) => Object.fromEntries(Object.entries(r).map(([w, m]) => {
      const cost = eventCost(m.hooks, eventProgram);
      return [w, {
        work_ratio: workRatio(m, ref(w)),
        work_per_cpu_ratio: perCpuRatio(m, ref(w)),
        work_per_s: Math.round(rate(m)),
        events: cost?.events ?? null,
        bpf_ns_per_event: cost?.bpf_ns_per_event ?? null,
        // the kernel side's whole cost over the run, in cores (noise of other load does not move it)
        bpf_cores: cost ? +(cost.bpf_total_ns / 1e9 / m.seconds).toFixed(5) : null,
        collector_cpu_cores: +(m.collector_cpu_s / m.seconds).toFixed(3),
        collector_cpu_ms_per_interval: cpuMsPerInterval(m.collector_cpu_s, m.seconds, INTERVAL_MS),
        bpf_hooks: m.hooks,
      }];
    }));
    const runs = {
      'profile 19 Hz': figures(p19, SAMPLE_PROGRAM),
      'profile 99 Hz': figures(p99, SAMPLE_PROGRAM),
      'offcpu (--offcpu-min 1ms)': figures(off, SWITCH_PROGRAM),
    };
    const perSample = (r: Record<string, Measured>) => eventCost(r.cpu!.hooks, SAMPLE_PROGRAM)?.bpf_ns_per_event ?? null;
    return {
      profile_overhead_ratio: workRatio(p19.cpu!, ref('cpu')),
      profile_overhead_ratio_99hz: workRatio(p99.cpu!, ref('cpu')),
      profile_overhead_per_cpu_ratio: perCpuRatio(p19.cpu!, ref('cpu')),
      profile_overhead_per_cpu_ratio_99hz: perCpuRatio(p99.cpu!, ref('cpu')),
      profile_bpf_ns_per_sample: perSample(p19),
      profile_bpf_ns_per_sample_99hz: perSample(p99),
      profile_collector_cpu_ms_per_interval: cpuMsPerInterval(p19.cpu!.collector_cpu_s, p19.cpu!.seconds, INTERVAL_MS),
      profile_collector_cpu_ms_per_interval_99hz: cpuMsPerInterval(p99.cpu!.collector_cpu_s, p99.cpu!.seconds, INTERVAL_MS),
      offcpu_overhead_ratio: workRatio(off.pingpong!, ref('pingpong')),
      offcpu_overhead_per_cpu_ratio: perCpuRatio(off.pingpong!, ref('pingpong')),
      offcpu_bpf_ns_per_switch: eventCost(off.pingpong!.hooks, SWITCH_PROGRAM)?.bpf_ns_per_event ?? null,
      offcpu_collector_cpu_ms_per_interval: cpuMsPerInterval(off.pingpong!.collector_cpu_s, off.pingpong!.seconds, INTERVAL_MS),
      profile_without: Object.fromEntries(Object.keys(workloads).map((w) => [w, ref(w).map((m) => Math.round(rate(m)))])),
      profile_runs: runs,
      profile_run_seconds: seconds,
      profile_workloads: 'cpu: 2 processes hashing a 64 KiB buffer (hashes/s); pingpong: 1 byte over two pipes between 2 processes (round trips/s); test/bench/profile-work.c',
    };
  } finally {
    restoreStats();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
