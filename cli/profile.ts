/**
 * `ringflow profile`: a one-off profile of this host, like bcc's `profile`
 * (or `offcputime` with --offcpu) piped into flamegraph.pl. No Kafka: the
 * collector's profiling programs (bpf/profile.bpf.c, bpf/offcpu.bpf.c) run in
 * this process, and their kernel counts become ringflow.profile.stacks.v1
 * records exactly as the collector builds them (collector/profile drain.ts +
 * records.ts, frames named by collector/symbols), then one file
 * (exporter/profiles: folded, pprof or svg).
 *
 *   kernel counts ──profileDrain (every DRAIN_MS, and once at the end)──▶ decode ──▶ records (symbolised then,
 *   while the processes still live) ──▶ kept in memory ──▶ one renderer at the end ──▶ --output or stdout
 *
 * Failure: a drain that throws leaves its counts in the kernel for the next
 * one (collector/profile/source.ts's rule): counted, said at 1, 10, 100...,
 * and the final summary says how many failed. Counts the kernel could not
 * keep (stack collisions, full maps) are read from rf_prof_lost /
 * rf_offcpu_lost and said in the summary: a profile never looks more
 * complete than it is.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { FatalError, EXIT } from '../common/errors.ts';
import { DAY_NS, parseComm, parseDurationInRange, parseIntFlag, parsePid } from '../common/options.ts';
import { objectPath } from '../collector/signals/registry.ts';
import { encodeProfileSettings, encodeSettings, type Filters } from '../collector/signals/settings.ts';
import { cgroupIdOf, checkBtf, checkBuilt, checkPrivileges } from '../collector/preflight.ts';
import { procIdentities } from '../collector/process-identity.ts';
import { decodeProfileDrain, PROF_LOST } from '../collector/profile/drain.ts';
import { buildStackRecords, type ProfileStackRecord, type SymbolizedFrame } from '../collector/profile/records.ts';
import { DEFAULT_OFFCPU_MIN_NS, PROFILE_PREFIX, PROFILE_PROGRAM, STACK_EPOCH_DRAINS } from '../collector/profile/source.ts';
import { mapSizesFor } from '../collector/profile/sizing.ts';
import { parseMaps, type Mapping } from '../collector/symbols/maps.ts';
import { openElf, type ElfFile } from '../collector/symbols/elf.ts';
import { renderFolded } from '../exporter/profiles/folded.ts';
import { renderPprof, type MappingInfo } from '../exporter/profiles/pprof.ts';
import { renderFlamegraph } from '../exporter/profiles/flamegraph.ts';
import { loadError } from './collect.ts';

/**
 * 49 Hz: a one-off wants more samples in 30 s than the always-on collector's
 * 19 Hz gives (~1500 per busy CPU rather than ~570), and 49, like 19 and 99,
 * is off the beat of the 10 ms / 1 ms timers programs run on, so sampling
 * does not lock onto their phase. bcc's profile defaults to 49 for the same
 * reason.
 */
export const DEFAULT_ONE_OFF_HZ = 49;
/** drains during the run: symbolised while the processes live; kernel maps stay small */
export const DRAIN_MS = 2000;
/** how often --pid targets' /proc/PID/maps are read (one small file each) */
export const MAPS_REFRESH_MS = 250;

export const PROFILE_HELP = `Usage: ringflow profile [options]

Samples the stacks of this host's processes for a while and writes one
profile, like bcc's profile (or offcputime, with --offcpu) and flamegraph.pl.
Runs the collector's profiling BPF programs in this process (no Kafka); this
process is never sampled. Needs root or CAP_BPF+CAP_PERFMON.

Options:
  --pid N             only this process (tgid); repeat for several (one is filtered in the
                        kernel, several after the drain); ends early once all have exited
  --comm NAME         only tasks with this command name (exact, <= 15 bytes)
  --uid N             only tasks of this user id
  --cgroup DIR        only tasks in this cgroup v2 directory (a container, a systemd unit)
  --duration DUR      how long to sample (default 30s); Ctrl-C ends early and still writes
  --hz N              on-CPU samples per second per CPU (default ${DEFAULT_ONE_OFF_HZ}: more samples than the
                        collector's always-on 19 Hz for a short run, still a prime off the beat of
                        10 ms/1 ms timers; as bcc's profile)
  --offcpu            off-CPU instead: time blocked per stack and task state at switch-out
                        (SLEEPING: lock, futex, socket, sleep; DISK: uninterruptible, I/O; PREEMPTED);
                        a block is counted when it ends, so one still going at the end is not
  --offcpu-min DUR    --offcpu: blocks shorter than DUR are not counted (default 1ms)
  --threads           count per thread (pprof: a tid label) rather than per process
  --format F          folded (default): Brendan Gregg's folded stacks, one line per stack,
                        comm first, kernel frames suffixed _[k], JIT frames _[j]; counts are
                        samples, or microseconds with --offcpu (as bcc's -f output)
                      pprof: a gzipped profile.proto (go tool pprof -top FILE, -http=:8080 FILE)
                      svg: a flame graph to open in a browser (hover a frame for its share)
  --output FILE       write there (default: stdout)
  -h, --help          this help

Which stacks stop early, and why:
  User stacks are walked in the kernel by frame pointers. Code built without them
  ends its stack early or skips a frame: Debian's libc and most distribution
  libraries (a sample inside libc loses the frame that called it, or the stack
  stops there), and -O2 builds without -fno-omit-frame-pointer. Build your own
  code with -fno-omit-frame-pointer. Node.js: run it with --perf-basic-prof so
  its JIT functions are named (from /tmp/perf-PID.map; without it they show as
  [anon] or [jit]); interpreted functions show as V8's interpreter builtins unless
  node also runs with --interpreted-frames-native-stack. The JVM needs a perf
  map agent the same way. Only .symtab/.dynsym names are read (no debuginfo
  files, no DWARF lines); an unnamed frame shows as [its file]. A stack the kernel
  could not store (a stack-map collision or a full map) shows as
  [user stack LOST] / [kernel stack LOST] and is counted in the summary.`;

const OPTIONS = {
  pid: { type: 'string', multiple: true },
  comm: { type: 'string' },
  uid: { type: 'string' },
  cgroup: { type: 'string' },
  duration: { type: 'string' },
  hz: { type: 'string' },
  offcpu: { type: 'boolean' },
  'offcpu-min': { type: 'string' },
  threads: { type: 'boolean' },
  format: { type: 'string' },
  output: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type ProfileFormat = 'folded' | 'pprof' | 'svg';

export interface ProfileConfig {
  pids: number[];
  comm?: string;
  uid?: number;
  /** cgroup v2 directory (its id is read when the run starts) */
  cgroup?: string;
  durationMs: number;
  hz: number;
  offcpu: boolean;
  offcpuMinNs: bigint;
  perThread: boolean;
  format: ProfileFormat;
  output?: string;
  help: boolean;
}

/** Flags -> config; every bad value is a one-line FatalError (exit 2). */
export function parseProfileArgs(argv: string[], tgid?: (pid: number) => number | undefined): ProfileConfig {
  const { values: v } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  const format = v.format ?? 'folded';
  if (format !== 'folded' && format !== 'pprof' && format !== 'svg') {
    throw new FatalError(`--format: "${format}" is not one of folded, pprof, svg`, { exitCode: EXIT.usage });
  }
  if (v.output === '') throw new FatalError('--output: empty file name', { exitCode: EXIT.usage });
  if (v.help) return { pids: [], durationMs: 0, hz: 0, offcpu: false, offcpuMinNs: 0n, perThread: false, format, help: true };
  return {
    pids: [...new Set((v.pid ?? []).map((p) => parsePid('--pid', p, tgid)))],
    ...(v.comm !== undefined ? { comm: parseComm(v.comm) } : {}),
    ...(v.uid !== undefined ? { uid: parseIntFlag('--uid', v.uid, 0, 0xfffffffe) } : {}),
    ...(v.cgroup !== undefined ? { cgroup: v.cgroup } : {}),
    durationMs: Number(parseDurationInRange('--duration', v.duration ?? '30s', 100_000_000n, DAY_NS) / 1_000_000n),
    hz: v.hz === undefined ? DEFAULT_ONE_OFF_HZ : parseIntFlag('--hz', v.hz, 1, 1000),
    offcpu: v.offcpu ?? false,
    offcpuMinNs: v['offcpu-min'] === undefined ? DEFAULT_OFFCPU_MIN_NS : parseDurationInRange('--offcpu-min', v['offcpu-min'], 0n, DAY_NS),
    perThread: v.threads ?? false,
    format,
    ...(v.output !== undefined ? { output: v.output } : {}),
    help: false,
  };
}

const LOST_NAMES = Object.fromEntries(Object.entries(PROF_LOST).map(([k, i]) => [i, k.toLowerCase()])) as Record<number, string>;

/** What the kernel could not count, by reason ('' when nothing). */
export function lostSummary(counters: readonly bigint[] | null): string {
  if (!counters) return '';
  const parts = counters.flatMap((n, i) => (n > 0n ? [`${LOST_NAMES[i] ?? `reason_${i}`} ${n}`] : []));
  return parts.length ? `; not counted by the kernel: ${parts.join(', ')}` : '';
}

/**
 * User mappings as pprof wants them (range, file offset, build id), from
 * /proc/PID/maps read at each drain (and more often for --pid targets),
 * while the process lives. They also name the frames of a process that
 * exited before the drain that took its last counts (the symboliser can no
 * longer read its maps then): an off-CPU block is counted when it ends, and
 * a process's last block often ends with its exit, so without this the end
 * of every short-lived process was [unknown] (seen with block.c: its final
 * sleep and pipe wait).
 */
export function createMappingTable(procRoot = '/proc') {
  const maps = new Map<number, Mapping[]>();
  const buildIds = new Map<string, string>();
  const elves = new Map<string, ElfFile | null>();
  const find = (tgid: number, a: number) => maps.get(tgid)?.find((x) => a >= x.start && a < x.end) ?? null;
  return {
    /** re-read the maps of these processes (one that is gone keeps its last table) */
    refresh(tgids: Iterable<number>): void {
      for (const t of tgids) {
        try {
          maps.set(t, parseMaps(fs.readFileSync(`${procRoot}/${t}/maps`, 'utf8')));
        } catch {
          // exited: its last table (if any) still describes its frames
        }
      }
    },
    noteBuildId(module: string, id: string | null): void {
      if (id) buildIds.set(module, id);
    },
    mappingOf(tgid: number, module: string, address: bigint): MappingInfo | undefined {
      const a = Number(address);
      const m = maps.get(tgid)?.find((x) => x.path === module && a >= x.start && a < x.end);
      return m ? { start: BigInt(m.start), limit: BigInt(m.end), offset: BigInt(m.pgoff), buildId: buildIds.get(module) ?? '' } : undefined;
    },
    /**
     * A user frame the symboliser left without a module, named from the
     * process's last known maps and the file's ELF symbols (read by path:
     * the file outlives the process). `returnAddress`: not the leaf, so the
     * call is at address - 1, as the symboliser does.
     */
    nameFromLastMaps(tgid: number, address: bigint, returnAddress: boolean): SymbolizedFrame | null {
      if (address >= 1n << 53n) return null;
      const m = find(tgid, Number(address));
      if (!m || !m.path.startsWith('/')) return null;
      const offset = Number(address) - m.start + m.pgoff;
      let elf = elves.get(m.path);
      if (elf === undefined) {
        try {
          elf = openElf(m.path);
        } catch {
          elf = null;
        }
        elves.set(m.path, elf);
      }
      if (elf?.buildId) buildIds.set(m.path, elf.buildId);
      const sym = elf?.lookupFileOffset(returnAddress ? offset - 1 : offset) ?? null;
      return { address, module: m.path, offset, function: sym?.name ?? null, kind: 'USER' };
    },
  };
}

export async function runProfile(cfg: ProfileConfig, hooks: { log?: (l: string) => void; ready?: () => void } = {}): Promise<number> {
  const log = hooks.log ?? ((l: string) => console.error(l));
  const signal = cfg.offcpu ? 'offcpu' : 'profile';
  const prefix = PROFILE_PREFIX[signal]!;
  checkPrivileges();
  checkBtf();
  checkBuilt([signal]);
  if (cfg.format === 'pprof' && cfg.output === undefined && process.stdout.isTTY) {
    throw new FatalError('--format pprof is gzipped binary: give --output FILE (or redirect stdout)', { exitCode: EXIT.usage });
  }
  // fail on an unwritable --output now, not after the whole run
  if (cfg.output !== undefined) {
    try {
      fs.closeSync(fs.openSync(cfg.output, 'a'));
    } catch (err) {
      throw new FatalError(`--output: cannot write ${cfg.output} (${(err as Error).message})`, { exitCode: EXIT.usage, cause: err });
    }
  }
  const native = await import('../native/index.ts');
  const { createSymbolizer } = await import('../collector/symbols/index.ts');
  const sym = createSymbolizer();
  const mappings = createMappingTable();
  // source file and line of JIT frames (V8's perf map names carry them): records.ts keeps neither, pprof can show both
  const sourceOf = new Map<string, { file: string; line: number | null }>();
  const named = { frames: 0, unnamed: 0 };
  const symbolize = (tgid: number, addrs: readonly bigint[], kernel: boolean): SymbolizedFrame[] =>
    sym.symbolize(tgid, addrs, kernel).map((f, i) => {
      let out: SymbolizedFrame = { address: f.address, module: f.module, offset: f.offset, function: f.function, kind: f.kind };
      if (!kernel) {
        mappings.noteBuildId(f.module, f.buildId);
        // in no mapping the symboliser could read: the process is gone; its last maps we read may know
        if (f.module === '' && f.function === null) out = mappings.nameFromLastMaps(tgid, f.address, i > 0) ?? out;
        if (f.file !== null) sourceOf.set(`${tgid}:${f.address}`, { file: f.file, line: f.line });
      }
      named.frames++;
      if (out.function === null || out.function === '') named.unnamed++;
      return out;
    });
  const addSources = (r: ProfileStackRecord) => {
    if (sourceOf.size === 0) return r;
    for (const f of r.frames) {
      const src = f.kind === 'KERNEL' ? undefined : sourceOf.get(`${r.tgid}:${BigInt.asUintN(64, f.address)}`);
      if (src) {
        f.file = src.file;
        f.line = src.line;
      }
    }
    return r;
  };
  const ids = procIdentities();
  const only = cfg.pids.length > 1 ? new Set(cfg.pids) : undefined;

  const filters: Filters = {};
  if (cfg.pids.length === 1) filters.pid = cfg.pids[0]!;
  if (cfg.comm !== undefined) filters.comm = cfg.comm;
  if (cfg.uid !== undefined) filters.uid = cfg.uid;
  if (cfg.cgroup !== undefined) filters.cgroupId = cgroupIdOf(cfg.cgroup);
  const session = new native.Session({ ringBytes: 4096 * 16 });
  const records: ProfileStackRecord[] = [];
  let failures = 0;
  let malformed = 0;
  const startWall = BigInt(Date.now()) * 1_000_000n;
  const startMono = process.hrtime.bigint();
  let windowStart = startMono;
  /** one drain; false when it failed (counted and said) */
  const drain = (): boolean => {
    try {
      const raw = session.profileDrain(prefix, { stackEpochDrains: STACK_EPOCH_DRAINS[signal] ?? 1 });
      const end = process.hrtime.bigint();
      const d = decodeProfileDrain(raw);
      malformed += d.malformed;
      if (only) d.counts = d.counts.filter((c) => only.has(c.tgid));
      mappings.refresh(new Set(d.counts.map((c) => c.tgid)));
      for (const r of buildStackRecords(d, { windowStartNs: windowStart, windowEndNs: end, sampleHz: cfg.hz, processName: (t) => ids(t).serviceName, symbolize })) records.push(addSources(r));
      windowStart = end;
      return true;
    } catch (err) {
      failures++;
      if (failures === 1 || Number.isInteger(Math.log10(failures))) {
        log(`ringflow profile: drain failed (${failures} so far; its counts stay in the kernel for the next one): ${(err as Error)?.message ?? String(err)}`);
      }
      return false;
    }
  };

  let lost: bigint[] | null = null;
  try {
    try {
      session.addObject(objectPath(signal), {
        ...encodeSettings({ ...filters, selfTgid: process.pid }),
        ...encodeProfileSettings({ perThread: cfg.perThread, offcpuMinNs: cfg.offcpuMinNs }, cfg.offcpu),
      }, mapSizesFor(signal, cfg.hz, DRAIN_MS));
      if (!cfg.offcpu) session.attachPerfEvent(PROFILE_PROGRAM, cfg.hz);
    } catch (err) {
      throw loadError(signal, err);
    }
    mappings.refresh(cfg.pids);
    const what = cfg.offcpu ? 'off-CPU time' : `on-CPU stacks at ${cfg.hz} Hz`;
    const whom = [cfg.pids.length ? `pid ${cfg.pids.join(',')}` : '', cfg.comm !== undefined ? `comm ${cfg.comm}` : '', cfg.uid !== undefined ? `uid ${cfg.uid}` : '', cfg.cgroup !== undefined ? `cgroup ${cfg.cgroup}` : '']
      .filter((x) => x !== '').join(', ') || 'every process';
    log(`ringflow profile: sampling ${what} of ${whom} for ${cfg.durationMs / 1000}s; Ctrl-C to stop early`);
    hooks.ready?.();
    let reason = 'duration';
    await new Promise<void>((resolve) => {
      const done = (why: string) => {
        reason = why;
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        clearTimeout(timer);
        clearInterval(tick);
        clearInterval(watch);
        resolve();
      };
      const onInt = () => done('interrupted');
      const onTerm = () => done('terminated');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      const timer = setTimeout(() => done('duration'), cfg.durationMs);
      // --pid targets' maps, often: their frames stay nameable after they exit (createMappingTable)
      const watch = cfg.pids.length > 0 ? setInterval(() => mappings.refresh(cfg.pids), MAPS_REFRESH_MS) : undefined;
      const tick = setInterval(() => {
        drain();
        if (cfg.pids.length > 0 && cfg.pids.every((p) => !fs.existsSync(`/proc/${p}`))) done('every --pid exited');
      }, DRAIN_MS);
    });
    // the last counts, while the maps still exist; if that fails they are lost with the session: written anyway, exit 1
    const lastOk = drain();
    lost = session.mapCounters(`${prefix}_lost`);
    const secs = Number(process.hrtime.bigint() - startMono) / 1e9;
    const out = render(records, cfg, startWall, BigInt(Math.round(secs * 1e9)), mappings.mappingOf);
    if (cfg.output !== undefined) fs.writeFileSync(cfg.output, out);
    else if (!(await writeStdout(out))) return 1;
    const total = records.reduce((a, r) => a + r.value, 0n);
    const procs = new Set(records.map((r) => r.tgid)).size;
    const amount = cfg.offcpu ? `${(Number(total) / 1e6).toFixed(1)} ms blocked` : `${total} samples`;
    log(`ringflow profile: ${secs.toFixed(1)}s (${reason}): ${amount} in ${records.length} stack records of ${procs} process${procs === 1 ? '' : 'es'}; ` +
      `wrote ${cfg.format} to ${cfg.output ?? 'stdout'}${lostSummary(lost)}` +
      `${named.unnamed ? `; ${named.unnamed} of ${named.frames} frames unnamed (stripped code, or no perf map: see --help)` : ''}` +
      `${sym.stats().kernelRestricted ? '; kernel frames unnamed: /proc/kallsyms shows no addresses (kptr_restrict; run as root)' : ''}${failures ? `; ${failures} drains failed` : ''}${malformed ? `; ${malformed} malformed stacks` : ''}`);
    if (!lastOk) log('ringflow profile: the last drain failed: the counts since the one before are not in the profile');
    return lastOk ? 0 : 1;
  } finally {
    await session.stop().catch(() => {});
  }
}

function render(records: readonly ProfileStackRecord[], cfg: ProfileConfig, timeNanos: bigint, durationNanos: bigint, mappingOf: (tgid: number, module: string, address: bigint) => MappingInfo | undefined): string | Buffer {
  const kind = cfg.offcpu ? 'OFFCPU' : 'ONCPU';
  if (cfg.format === 'folded') return renderFolded(records, { kind });
  if (cfg.format === 'svg') {
    const who = cfg.pids.length ? ` pid ${cfg.pids.join(',')}` : cfg.comm !== undefined ? ` ${cfg.comm}` : '';
    const title = cfg.offcpu ? `Off-CPU time${who}` : `CPU${who}, ${cfg.hz} Hz`;
    return renderFlamegraph(records, { kind, title: `${title}, ${(Number(durationNanos) / 1e9).toFixed(1)} s`, sampleHz: cfg.hz });
  }
  return renderPprof(records.filter((r) => r.kind === kind), {
    timeNanos,
    durationNanos,
    mappingOf,
    comments: [`ringflow profile${cfg.offcpu ? ' --offcpu' : ''} --hz ${cfg.hz}`],
  });
}

/** stdout may be a pipe: wait for it to take the bytes; false when it could not (a reader that closed early: EPIPE, said too). */
function writeStdout(out: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    process.stdout.once('error', () => {}); // the callback below reports it; an 'error' event must not crash us
    process.stdout.write(out, (err) => {
      if (err) console.error(`ringflow profile: cannot write to stdout (${err.message})`);
      resolve(!err);
    });
  });
}

export async function profileCommand(argv: string[]): Promise<number> {
  const cfg = parseProfileArgs(argv);
  if (cfg.help) {
    console.log(PROFILE_HELP);
    return 0;
  }
  return runProfile(cfg);
}
