/**
 * ringflow native layer: a thin typed surface over the ringflow_native addon
 * (native/src/binding.cc over the plain C core native/src/rf_core.c).
 *
 * Batch wire format handed to onBatch (little-endian, see rf_core.h):
 *
 *   batch  := record*
 *   record := u32 length | u32 0 | length bytes (one ring buffer record) | zero pad to 8-byte alignment
 *
 * A batch Buffer is backed by native memory that returns to a pool when the
 * Buffer is garbage collected: copy out what must outlive the callback.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface SessionOptions {
  /** rf_events ring size: a power of two >= the page size. Default 16 MiB. */
  ringBytes?: number;
  /** ring_buffer__poll timeout; the ring is drained after every poll. Default 10. */
  pollTimeoutMs?: number;
  /** A batch is handed over when it would exceed this, or when the ring is empty. Default 1 MiB. */
  maxBatchBytes?: number;
  /** Batches queued for JS before the poll thread blocks (and stops draining). Default 8. */
  maxPendingBatches?: number;
  /**
   * Wait on the ring edge-triggered (default true): sleep until the BPF side wakes
   * us (>= rf_wakeup_bytes pending) or the poll times out, instead of libbpf's
   * level-triggered epoll, which spins on small drains under load. See README.
   */
  edgeTriggered?: boolean;
}

export interface ObjectInfo {
  /** File name without `.bpf.o`, e.g. `sched`. */
  name: string;
  /**
   * Programs attached, by BPF function name; a perf_event program is listed
   * loaded but waits for Session.attachPerfEvent (no section names its event).
   */
  programs: string[];
  /**
   * Optional programs (section marked '?', e.g. `SEC("?tp_btf/block_io_start")`)
   * left out because their hook is missing on this kernel; the rest of the
   * object is loaded. A program without the mark fails the object instead.
   */
  skipped: SkippedProgram[];
}

export interface SkippedProgram {
  /** BPF function name, e.g. `rf_block_io_start`. */
  program: string;
  /** Its section without the '?', e.g. `tp_btf/block_io_start`: names the hook. */
  section: string;
  /** Why, e.g. `this kernel has no tracepoint 'block_io_start'`. */
  reason: string;
}

export interface SessionStats {
  /** Records delivered to onBatch (or queued for it). */
  records: number;
  batches: number;
  /** Batch bytes, framing included. */
  bytes: number;
  /** ring_buffer__poll calls. */
  polls: number;
  /** Polls that returned because the kernel woke the thread (rf_wakeup_bytes pending). */
  wakeups?: number;
  /** Bytes in the ring not yet consumed, at the time of the call (0 once stopped). */
  ringPending: number;
}

/**
 * Every libbpf/bpf syscall failure: message "<op>(<target>): <text> (errno N)".
 * `errno` is positive (unlike Node's SystemError); `log` holds the last lines
 * libbpf printed during the failed operation (the verifier log's tail on load).
 */
export interface NativeError extends Error {
  op: string;
  target?: string;
  errno: number;
  code: string;
  log?: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).op === 'string' &&
    typeof (e as Partial<NativeError>).errno === 'number';
}

interface NativeSession {
  addObject(path: string, globals: Record<string, Buffer>, maxEntries?: Record<string, number>): ObjectInfo;
  start(onBatch: (batch: Buffer) => void): void;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  drops(): bigint[];
  mapCounters(name: string): bigint[] | null;
  stats(): SessionStats;
  attachPerfEvent(program: string, frequencyHz: number): number;
  profileDrain(prefix: string, epochDrains?: number): ProfileDrain;
  l7Claim(handoverNs: number, staleNs: number): Buffer | null;
}

/**
 * One drain of a profiling map set (bpf/prof_maps.bpf.h; native rf_core.h
 * rf_session_profile_drain), little-endian:
 *
 *   counts := (struct rf_prof_key (24 bytes), u64 value)*        32 bytes each
 *   stacks := (u32 stack_map, u32 id, u32 n, u32 0, u64 ip[n])*
 *   comms  := (u32 tgid, char comm[16])*                         20 bytes each
 *
 * Decoded by collector/profile/drain.ts.
 */
export interface ProfileDrain {
  /** The generation drained (bpf/events.h). */
  generation: bigint;
  counts: Buffer;
  stacks: Buffer;
  comms: Buffer;
}

interface NativeModule {
  Session: new (opts?: SessionOptions) => NativeSession;
  kernelEnum(name: string): Record<number, string>;
  EV_MAX: number;
}

const require = createRequire(import.meta.url);
const ADDON = fileURLToPath(new URL('./build/Release/ringflow_native.node', import.meta.url));

function loadAddon(): NativeModule {
  try {
    return require(ADDON) as NativeModule;
  } catch (e) {
    const err = new Error(
      `ringflow: cannot load the native addon ${ADDON}; build it with ` +
      '`bash scripts/with-node.sh node-gyp rebuild --directory native`', { cause: e });
    throw err;
  }
}

const native = loadAddon();

/** Length of the per-type drop array (RF_EV_MAX in bpf/events.h). */
export const EV_MAX: number = native.EV_MAX;

/**
 * One shared ring buffer (rf_events) and drop array (rf_drops) for any number of
 * BPF objects, drained by one native thread.
 */
export class Session {
  #n: NativeSession;

  /** Creates rf_events and rf_drops (bpf_map_create). */
  constructor(opts: SessionOptions = {}) {
    this.#n = new native.Session(opts);
  }

  /**
   * Opens, configures, loads and attaches a BPF object. Its rf_events/rf_drops
   * maps are replaced by the session's; `globals` sets `const volatile` globals by
   * name (each Buffer exactly the variable's size; see u32/u64/cstr below);
   * `maxEntries` sets maps' sizes by name before the load (sized per host, e.g.
   * the profile stack maps: collector/profile/sizing.ts); an unknown map throws.
   */
  addObject(path: string, globals: Record<string, Buffer> = {}, maxEntries?: Record<string, number>): ObjectInfo {
    return this.#n.addObject(path, globals, maxEntries);
  }

  /**
   * Starts the poll thread; onBatch runs on the JS thread, one call per batch.
   * onBatch should not throw: it is called from the addon's thread-safe
   * function (binding.cc CallJs), where a throw becomes an uncaughtException
   * that ends the process unless handled. The batch itself is not leaked (its
   * external buffer is released when collected). The collector guards its
   * callback (collector.ts).
   */
  start(onBatch: (batch: Buffer) => void): void {
    this.#n.start(onBatch);
  }

  /** Stop consuming: the ring fills and the kernel counts drops (backpressure). */
  pause(): void {
    this.#n.pause();
  }

  resume(): void {
    this.#n.resume();
  }

  /**
   * Detaches every program, drains the ring, delivers the remaining batches,
   * joins the thread and closes everything. Idempotent.
   */
  stop(): Promise<void> {
    return this.#n.stop();
  }

  /** Records lost because the ring was full, per event type (index = type). Last values after stop(). */
  drops(): bigint[] {
    return this.#n.drops();
  }

  /**
   * Per-index counts of a counter map of the loaded objects (an ARRAY or
   * PERCPU_ARRAY of u64 keyed by u32, e.g. `rf_block_lost`), per-CPU values
   * summed; null when no loaded object has that map. After stop(), the last
   * values of a map read before it.
   */
  mapCounters(name: string): bigint[] | null {
    return this.#n.mapCounters(name);
  }

  stats(): SessionStats {
    return this.#n.stats();
  }

  /**
   * Attaches a loaded perf_event program (left unattached by addObject) to the
   * software cpu-clock event of every online CPU, sampling at frequencyHz.
   * Returns the number of CPUs; detached with the other programs on stop().
   * Called again, it keeps the events that run and attaches CPUs online now
   * without one (hot-plugged after the start, or offline and back: the kernel
   * never restarts an event whose CPU went offline); returns how many it
   * attached then, 0 when nothing changed.
   */
  attachPerfEvent(program: string, frequencyHz: number): number {
    return this.#n.attachPerfEvent(program, frequencyHz);
  }

  /**
   * Takes every count aggregated in the kernel since the previous drain out of
   * the map set `prefix` (`rf_prof`, `rf_offcpu`), each increment exactly once,
   * with the frames of the stacks they name. Blocks the calling thread for one
   * RCU grace period (milliseconds). A new stack epoch begins every
   * `stackEpochDrains` drains (default 1): an off-CPU block keeps its stack if
   * it ends before the epoch after the one it began in (bpf/events.h).
   */
  profileDrain(prefix: string, opts: { stackEpochDrains?: number } = {}): ProfileDrain {
    return this.#n.profileDrain(prefix, opts.stackEpochDrains ?? 1);
  }

  /**
   * The hand-over sweep of in-kernel HTTP/1 (docs/design/l7-in-kernel.md
   * §2.7): claims each pending request without a response for handoverNs
   * (and anything else idle for staleNs), as exchange records (outcome
   * REQ_ONLY) in the ring batch format, for the same decoder as onBatch's.
   * null when no loaded object has rf_l7_pending.
   */
  l7Claim(handoverNs: number, staleNs: number): Buffer | null {
    return this.#n.l7Claim(handoverNs, staleNs);
  }

  /** Bytes in the ring not yet consumed (the collector's stats report it). */
  ringPending(): number {
    return this.#n.stats().ringPending;
  }
}

/** Names of a kernel enum by value, from /sys/kernel/btf/vmlinux. */
export function kernelEnum(name: string): Record<number, string> {
  return native.kernelEnum(name);
}

/**
 * Calls fn(offset, length) for each record of a batch, where offset is where the
 * record's bytes start in `batch`. No allocation per record.
 */
export function forEachRecord(batch: Buffer, fn: (offset: number, length: number) => void): number {
  let off = 0;
  let n = 0;
  while (off + 8 <= batch.length) {
    const len = batch.readUInt32LE(off);
    fn(off + 8, len);
    off += 8 + ((len + 7) & ~7);
    n++;
  }
  return n;
}

/** Counts the records of a batch. */
export function countRecords(batch: Buffer): number {
  let off = 0;
  let n = 0;
  while (off + 8 <= batch.length) {
    off += 8 + ((batch.readUInt32LE(off) + 7) & ~7);
    n++;
  }
  return n;
}

/** Buffers for `const volatile` globals. */
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function u64(v: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

/** A NUL-padded char array of `size` bytes (the string must leave room for the NUL). */
export function cstr(s: string, size: number): Buffer {
  const b = Buffer.alloc(size);
  const n = b.write(s, 'utf8');
  if (n >= size) throw new RangeError(`cstr: '${s}' does not fit in ${size} bytes with its NUL`);
  return b;
}
