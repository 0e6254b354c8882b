/**
 * Issue 12's cost figures for `npm run bench` (BENCH_ONLY=fs), design
 * docs/design/fs.md section 8 item 6:
 *
 *   fs_overhead_ratio            pread/pwrite calls (4 KiB, cached, tmpfs) per
 *                                second with `ringflow collect --signals fs` /
 *                                without, same run, same start method; every call
 *                                is a kept one (a record each)
 *   fs_pipe_overhead_ratio       the same for write+read on a pipe: calls the fs
 *                                programs see and reject at enter (not S_ISREG)
 *   fs_fsync_overhead_ratio      pwrite + fsync on ext4 (/var/tmp): the flush
 *                                dominates, fs's cost should be noise
 *   *_per_cpu_ratio              the same per CPU second of the workload (other load
 *                                on a shared machine moves the wall-clock ratios)
 *   fs_bpf_ns_per_kept_call      BPF run time (kernel.bpf_stats_enabled) of the
 *                                pread64/pwrite64 enter + exit programs per call:
 *                                the S_ISREG gate, the in-flight entry, the path
 *                                walk, the record
 *   fs_bpf_ns_per_rejected_call  the read/write programs' per pipe call
 *   fs_collector_cpu_us_per_record  the collector's CPU per fs record it produced
 *   fs_records_per_call          records / calls of the rw workload (1 unless the ring
 *                                dropped: fs_records_and_drops_per_call must be 1)
 *   fs_kernel_drops              ring drops + the programs' own losses, all runs
 *
 * The collector runs with `--comm fs-work` (the workloads' command name) so
 * records are the workload's alone; the host's other reads and writes still
 * run the programs and are rejected by the task filter (workload_share says
 * what part of the calls seen were the workload's). A collector is started
 * per workload run (its records and CPU are that run's; its start-up is not
 * measured); the runs without ringflow come before, between and after.
 * Timings are printed, never asserted.
 *
 * What a kept call's cost is made of (scratch builds of fs.bpf.c at 724d597
 * loaded through RINGFLOW_BPF_DIR, same run, alternating, rw workload, 2
 * loaded CPUs; the workload's CPU per call alone 0.41-0.45 us):
 *   programs attached but returning at once   ~80 ns BPF, 0.59-0.60 us per call:
 *       the classic syscall tracepoints themselves (perf_syscall_enter/exit,
 *       2 per call) cost more than the rejected path's BPF (pipe: empty 0.58-0.64
 *       us, full 0.61-0.69 us, alone 0.28-0.45)
 *   enter + the in-flight hash entry, exit returning after its lookup/delete
 *       ~360 ns BPF (enter ~200, exit ~160), 0.89-0.91 us per call
 *   the whole record                          810-1440 ns BPF, 1.40-2.3 us per call:
 *       the path walk ~500 ns of it (exit 1060 -> 556 without it), the ring
 *       output 130-360 ns, the other fields ~100-250 ns
 * Cuts measured the same way (not applied: bpf/ is F1's):
 *   the walk step's reads as direct loads through bpf_rdonly_cast (as
 *       l7.bpf.c does) rather than BPF_CORE_READ's probe-read helper calls:
 *       exit 747/653/979/694 -> 629/523/592/492 ns over 4 alternating pairs
 *       (kept call ~-20%), same paths on tmpfs, ext4 and across the /dev/shm mount
 *   the in-flight entry in task storage rather than the tid-keyed HASH
 *       (bucket lock + freelist at enter and exit): ~100 ns per kept call
 *       (enter + exit without the record 331/462 -> 238/342 ns)
 *
 * BENCH_FS_SECONDS (default 10) sets each run's length. kernel.bpf_stats_enabled
 * is on for the whole part (runs with and without ringflow alike); it costs
 * every program run two clock reads, 4 per kept or rejected call here:
 * BENCH_FS_BPF_STATS=0 leaves it alone (the ratios without that cost, no BPF
 * figures).
 */
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { enableBpfStats, progCounters, progNames, procCpuSeconds, startObserver, stopObserver } from './l7.ts';
import { hookDeltas, type HookFigures } from './l7-figures.ts';
import { parseWork, workRatio, perCpuRatio, rate, type WorkRun } from './profile-figures.ts';
import { collectorTotals, syscallCost, sumRuns, sumHooks, cpuUsPerRecord, type CollectorTotals } from './fs-figures.ts';

const COMM = 'fs-work';
const FS_TOPIC_EVENT = 'fs.io';
const FILE_BYTES = 1 << 20; // 1 MiB: cached throughout

interface Measured extends WorkRun {
  collector_cpu_s: number;
  hooks: Record<string, HookFigures> | null;
  totals: CollectorTotals | null;
}

/**
 * Linked statically where the C library allows it: a dynamic one's loader
 * read()s libc.so at start, records of the workload's comm that are none of
 * its measured calls (records per call would read a little over 1).
 */
function buildWorkload(dir: string): string {
  const bin = path.join(dir, COMM); // the comm the collector filters on
  const src = path.join(REPO_ROOT, 'test/bench/fs-work.c');
  try {
    execFileSync('cc', ['-O2', '-static', '-o', bin, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch {
    process.stderr.write('bench: fs: no static C library, fs-work linked dynamically (its loader\'s reads of libc are records too)\n');
    execFileSync('cc', ['-O2', '-o', bin, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return bin;
}

/** A 1 MiB file written and read once by this process (not the workload's comm: none of it is recorded), so the workload finds it cached. */
function makeFile(dir: string): string {
  const f = path.join(dir, 'work.dat');
  fs.writeFileSync(f, Buffer.alloc(FILE_BYTES, 'r'));
  fs.readFileSync(f);
  return f;
}

async function runWork(bin: string, args: string[]): Promise<WorkRun> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = await once(child, 'exit') as [number | null];
  if (code !== 0) throw new Error(`${path.basename(bin)} ${args.join(' ')} exited with ${code}`);
  return parseWork(out);
}

export async function fsOverhead(brokers: string, seconds = 10): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-bench-fs-'));
  const shm = fs.mkdtempSync('/dev/shm/ringflow-bench-fs-'); // tmpfs
  const ext = fs.mkdtempSync('/var/tmp/ringflow-bench-fs-'); // the root fs (ext4 here)
  const withStats = process.env.BENCH_FS_BPF_STATS !== '0';
  const restoreStats = withStats ? enableBpfStats() : () => {};
  try {
    const bin = buildWorkload(dir);
    const runFor = (s: number): Record<string, string[]> => ({
      rw: ['rw', String(s), makeFile(shm)],
      pipe: ['pipe', String(s)],
      fsync: ['fsync', String(s), makeFile(ext)],
    });
    const workloads = runFor(seconds);
    const alone = async () => {
      const r: Record<string, Measured> = {};
      for (const [w, args] of Object.entries(workloads)) r[w] = { ...await runWork(bin, args), collector_cpu_s: 0, hooks: null, totals: null };
      return r;
    };
    // one collector per workload run: its records, drops and CPU are that run's
    const withCollector = async () => {
      const r: Record<string, Measured> = {};
      for (const [w, args] of Object.entries(workloads)) {
        const c = await startObserver(path.join(REPO_ROOT, 'bin/ringflow'),
          ['collect', '--signals', 'fs', '--comm', COMM, '--brokers', brokers, '--host', 'bench-fs', '--stats-interval', '10s'], /collecting/, 'collector');
        try {
          const names = progNames();
          const pid = c.child.pid!;
          const p0 = progCounters(pid);
          const c0 = procCpuSeconds(pid);
          const run = await runWork(bin, args);
          const hooks = withStats ? hookDeltas(p0, progCounters(pid), names) : null;
          // the records of the run's last moments are still being sent: let them go, then read the CPU
          await new Promise((res) => setTimeout(res, 1000));
          const c1 = procCpuSeconds(pid);
          await stopObserver(c.child);
          r[w] = { ...run, collector_cpu_s: c1 - c0, hooks, totals: collectorTotals(c.err()) };
        } finally {
          await stopObserver(c.child);
        }
      }
      return r;
    };
    for (const args of Object.values(runFor(1))) await runWork(bin, args); // warm-up
    const base: Record<string, Measured>[] = [await alone()];
    const withs: Record<string, Measured>[] = [await withCollector()];
    base.push(await alone());
    withs.push(await withCollector());
    base.push(await alone());

    const ref = (w: string) => base.map((b) => b[w]!);
    const merged = (w: string) => sumRuns(withs.map((x) => x[w]!));
    const mergedHooks = (w: string) => sumHooks(withs.map((x) => x[w]!.hooks));
    const records = (w: string) => withs.reduce((a, x) => a + (x[w]!.totals?.read[FS_TOPIC_EVENT] ?? 0), 0);
    const ringDrops = (w: string) => withs.reduce((a, x) => a + (x[w]!.totals?.kernel_drops ?? 0), 0);
    const collectorCpu = (w: string) => withs.reduce((a, x) => a + x[w]!.collector_cpu_s, 0);
    const kept = syscallCost(mergedHooks('rw'), ['pread64', 'pwrite64'], merged('rw').work);
    const rejected = syscallCost(mergedHooks('pipe'), ['read', 'write'], merged('pipe').work);
    const fsyncCost = syscallCost(mergedHooks('fsync'), ['pwrite64', 'fsync'], merged('fsync').work);
    const drops = withs.flatMap((x) => Object.values(x)).reduce((a, m) => {
      const t = m.totals!;
      return a + t.kernel_drops + Object.entries(t.kernel_losses).filter(([k]) => k.startsWith('fs_')).reduce((b, [, n]) => b + n, 0);
    }, 0);
    const runs = withs.map((x) => Object.fromEntries(Object.entries(x).map(([w, m]) => [w, {
      work_ratio: workRatio(m, ref(w)),
      work_per_cpu_ratio: perCpuRatio(m, ref(w)),
      calls_per_s: Math.round(rate(m)),
      records: m.totals?.read[FS_TOPIC_EVENT] ?? 0,
      produced: m.totals?.produced ?? 0,
      kernel_drops: m.totals?.kernel_drops ?? 0,
      user_drops: m.totals?.user_drops ?? 0,
      kernel_losses: m.totals?.kernel_losses ?? {},
      collector_cpu_cores: +(m.collector_cpu_s / m.seconds).toFixed(3),
      bpf_hooks: m.hooks,
    }])));
    return {
      fs_overhead_ratio: workRatio(merged('rw'), ref('rw')),
      fs_overhead_per_cpu_ratio: perCpuRatio(merged('rw'), ref('rw')),
      fs_pipe_overhead_ratio: workRatio(merged('pipe'), ref('pipe')),
      fs_pipe_overhead_per_cpu_ratio: perCpuRatio(merged('pipe'), ref('pipe')),
      fs_fsync_overhead_ratio: workRatio(merged('fsync'), ref('fsync')),
      fs_fsync_overhead_per_cpu_ratio: perCpuRatio(merged('fsync'), ref('fsync')),
      fs_bpf_ns_per_kept_call: kept?.bpf_ns_per_call ?? null,
      fs_bpf_ns_per_rejected_call: rejected?.bpf_ns_per_call ?? null,
      fs_bpf_ns_per_fsync_run_call: fsyncCost?.bpf_ns_per_call ?? null,
      fs_bpf_calls: { kept_rw: kept, rejected_pipe: rejected, fsync: fsyncCost },
      fs_collector_cpu_us_per_record: cpuUsPerRecord(collectorCpu('rw'), records('rw')),
      fs_records_per_call: merged('rw').work > 0 ? records('rw') / merged('rw').work : null,
      // below 1 when the collector falls behind and the ring drops: then with the drops it must be exactly 1 (none lost silently)
      fs_records_and_drops_per_call: merged('rw').work > 0 ? (records('rw') + ringDrops('rw')) / merged('rw').work : null,
      fs_pipe_records: records('pipe'),
      fs_kernel_drops: drops,
      fs_without: Object.fromEntries(Object.keys(workloads).map((w) => [w, ref(w).map((m) => Math.round(rate(m)))])),
      fs_runs: runs,
      fs_run_seconds: seconds,
      fs_bpf_stats: withStats ? 'kernel.bpf_stats_enabled=1 during this part (restored after)' : 'off (BENCH_FS_BPF_STATS=0)',
      fs_workloads: `rw: pread+pwrite 4 KiB on a cached 1 MiB tmpfs file (calls/s); pipe: 1-byte write+read on a pipe, one thread (calls/s); fsync: pwrite 4 KiB + fsync on ${path.dirname(ext)} (calls/s); test/bench/fs-work.c, collector --comm ${COMM}`,
    };
  } finally {
    restoreStats();
    for (const d of [dir, shm, ext]) fs.rmSync(d, { recursive: true, force: true });
  }
}
