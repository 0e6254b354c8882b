/**
 * The one place signals are registered. A signal is one BPF object
 * (bpf/<name>.bpf.c, built to bpf/.output/<name>.bpf.o) and the event types it
 * emits; each event type's schema (schemas/<signal>.<event>.avsc) names its
 * struct, topic and key, so adding a signal is: its .bpf.c, its struct in
 * bpf/events.h, its .avsc files, and one entry below.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface SignalDef {
  readonly name: string;
  readonly summary: string;
  /** Event type ids (enum rf_event_type, or RF_EV_L7_CAPTURE / RF_EV_L7_EXCHANGE) this signal's object emits. */
  readonly eventTypes: readonly number[];
  /**
   * Off unless asked for with --signals: l7 hooks every socket read/write on
   * the host and copies payload bytes, a cost a user should choose.
   */
  readonly optIn?: boolean;
  /**
   * What the signal loses without each of its optional programs (section
   * marked '?', left out by the loader where the kernel lacks the hook):
   * said once, with the program's name, when the collector starts.
   */
  readonly optionalPrograms?: Readonly<Record<string, string>>;
  /**
   * Counted in the kernel and drained every interval (collector/profile):
   * no ring records (eventTypes empty), ringflow.profile.stacks.v1 records instead.
   */
  readonly drained?: boolean;
  /** Attaches classic tracepoints (tracepoint/<category>/<name>), which need tracefs mounted (preflight mounts it). */
  readonly classicTracepoints?: boolean;
}

export const SIGNALS: readonly SignalDef[] = [
  { name: 'sched', summary: 'run-queue latency per wake-up/preemption; context switches with off-CPU time', eventTypes: [1, 2] },
  {
    name: 'block',
    summary: 'block I/O request latency, size, operation, device and queue depth, attributed to the submitting task; ' +
      'requests whose completion or issue was missed are counted as kernel drops, never reported stale',
    eventTypes: [3],
    optionalPrograms: {
      rf_block_io_start: 'requests are attributed to the task that issues them (often a kworker), not to the one that submitted them (block_io_start needs kernel 6.5+)',
    },
  },
  {
    name: 'tcp',
    // retransmits and drops happen in softirq: filters and pid/comm are the socket owner's (bpf/tcp.bpf.c)
    summary: 'TCP connect latency, accepts, retransmits and drops (with drop reason); retransmits and drops are ' +
      "attributed to the socket's owner (connect/listen/accept seen by the collector) and filtered as it; " +
      'with --pid/--uid/--comm/--cgroup, those of sockets set up before the collector started or with no socket ' +
      '(e.g. NO_SOCKET drops) are left out and counted (rf_tcp_unattributed)',
    eventTypes: [4, 5, 6, 7],
    classicTracepoints: true,
  },
  // 9: capture records (HTTP/2, DNS, undecided, kernel parsing off), 10: HTTP/1 exchanges framed and paired in BPF
  { name: 'l7', summary: 'HTTP/1.x, HTTP/2 + gRPC and DNS requests and responses parsed from socket syscalls (opt-in); ' +
      'HTTP/1.x is framed and paired in the kernel, one record per exchange (--l7-kernel-parse off: parsed here)', eventTypes: [9, 10], optIn: true, classicTracepoints: true },
  // issue 11: counted in the kernel and drained every --profile-interval (collector/profile), no ring records.
  // Opt-in until their cost is measured (issue 11's bench: profile_overhead_ratio, collector CPU)
  {
    name: 'profile',
    summary: 'on-CPU stacks (kernel + user) sampled on every CPU at --profile-hz, counted per process and stack in the ' +
      'kernel, one ringflow.profile.stacks.v1 record per stack per interval; user stacks are walked by frame pointers: ' +
      "code built without them (Debian's libc, most distribution libraries) ends its stack early (opt-in until " +
      'issue 11 benchmarks its cost; at 19 Hz none showed above this VM\'s noise)',
    eventTypes: [],
    optIn: true,
    drained: true,
  },
  {
    name: 'offcpu',
    summary: 'time blocked per process, stack and state at switch-out (S sleeping: locks, futexes, sockets; D: I/O; ' +
      "preempted), blocks of at least --offcpu-min, counted in the kernel like profile; stacks as profile's (opt-in: " +
      'every switch-out is stamped, ~300 ns of BPF; the stacks are walked only for blocks of at least --offcpu-min, ' +
      'at every switch-out on kernels before 6.16; a pipe ping-pong did ~0.8 of its work per CPU second with it)',
    eventTypes: [],
    optIn: true,
    drained: true,
  },
  // issue 12 (docs/design/fs.md): opt-in until its cost is benchmarked (fs_overhead_ratio, design slice 6)
  {
    name: 'fs',
    summary: 'file syscalls on regular files (read, write, pread64, pwrite64, readv, writev, preadv, pwritev, preadv2, ' +
      'pwritev2, fsync, fdatasync, ftruncate, fallocate, sync_file_range, openat, openat2; sockets, pipes and ttys are left out in the kernel): latency, bytes, offset, errno, fs type, dev/inode and the path, walked in BPF ' +
      '(32 components / 512 bytes; a longer path keeps its last components, flagged), one ringflow.fs.io.v1 record ' +
      'per call keyed by file. Its page-cache state is an ESTIMATE from the task\'s own counters (never slept: ' +
      'CACHED; slept and read from storage: BLOCKED_IO; slept otherwise: BLOCKED_OTHER): readahead issued by an ' +
      'earlier call, or another task\'s I/O, is not counted to this one. Not covered: io_uring, sendfile/splice/' +
      "copy_file_range, mmap'd access (page faults), aio (io_submit), direct block-device access (the block " +
      'signal), NFS server side (opt-in until its cost is benchmarked)',
    eventTypes: [11],
    optIn: true,
    classicTracepoints: true, // tracepoint/syscalls/sys_{enter,exit}_*
  },
];

/** What --signals defaults to: every signal that is not opt-in. */
export const DEFAULT_SIGNALS: readonly string[] = SIGNALS.filter((s) => !s.optIn).map((s) => s.name);

export const SIGNAL_NAMES: readonly string[] = SIGNALS.map((s) => s.name);

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BPF_OUTPUT_DIR = process.env.RINGFLOW_BPF_DIR ?? path.join(REPO_ROOT, 'bpf', '.output');

export function objectPath(name: string): string {
  return path.join(BPF_OUTPUT_DIR, `${name}.bpf.o`);
}

export function signalByName(name: string): SignalDef {
  const s = SIGNALS.find((x) => x.name === name);
  if (!s) throw new Error(`unknown signal ${name}`);
  return s;
}

/**
 * The one line the collector says when the loader left optional programs of a
 * signal out (native ObjectInfo.skipped), naming each and what is lost; null
 * when none was. Pure.
 */
export function skippedProgramsLine(signal: string, skipped: readonly { program: string; section: string; reason: string }[]): string | null {
  if (skipped.length === 0) return null;
  const notes = SIGNALS.find((x) => x.name === signal)?.optionalPrograms ?? {};
  const parts = skipped.map((k) => `${k.program} (${k.section}: ${k.reason})${notes[k.program] ? `: ${notes[k.program]}` : ''}`);
  return `ringflow: signal ${signal} runs without ${parts.join('; ')}`;
}
