/**
 * One drain of the kernel's profiling counts (drain.ts) -> ringflow.profile.stacks.v1
 * records (schemas/profile.stacks.avsc): one per (process, thread when
 * counted per thread, kind, state, stack), value summed. Pure: frames are
 * named by the `symbolize` it is given (collector/symbols createSymbolizer in
 * the collector; a table in tests).
 *
 * Frames are leaf first, kernel then user, as perf and pprof order a stack:
 * a sample taken in the kernel has its kernel frames nearest the leaf.
 * Two keys of the kernel map can name the same stacks (an off-CPU block's
 * stacks live in the stack map of the stack epoch it started in, so one
 * stack can have ids in two maps): they merge here into one record.
 */
import type { DecodedDrain, ProfileCount, ProfKind, ProfState, StackRead } from './drain.ts';

export type FrameKind = 'KERNEL' | 'USER' | 'JIT';

/** What symbolisation says of an address (collector/symbols Frame, the fields a record keeps). */
export interface SymbolizedFrame {
  address: bigint;
  module: string;
  offset: number;
  function: string | null;
  /** source file and line when symbolisation knows them (V8's perf map names them for JIT frames) */
  file?: string | null;
  line?: number | null;
  kind: FrameKind;
}

export type Symbolize = (tgid: number, addresses: readonly bigint[], kernel: boolean) => SymbolizedFrame[];

export type StackStatus = 'OK' | 'NONE' | 'LOST' | 'EXPIRED' | 'MISSING';

/** A ringflow.profile.stacks.v1 value, envelope (host, boot_time_ns) excluded. */
export interface ProfileStackRecord {
  kind: ProfKind;
  window_start_ns: bigint;
  window_end_ns: bigint;
  pid: number;
  tgid: number;
  comm: string;
  process_name: string;
  value: bigint;
  sample_hz: number;
  state: ProfState;
  user_stack: StackStatus;
  kernel_stack: StackStatus;
  frames: { address: bigint; module: string; offset: bigint; function: string; file: string | null; line: number | null; kind: FrameKind }[];
}

export interface BuildContext {
  windowStartNs: bigint;
  windowEndNs: bigint;
  /** the on-CPU sampling frequency (records of kind ONCPU carry it) */
  sampleHz: number;
  /** service.name of a process ('' unknown) */
  processName: (tgid: number) => string;
  symbolize: Symbolize;
}

const STATUS: Record<StackRead['status'], StackStatus> = { ok: 'OK', none: 'NONE', lost: 'LOST', expired: 'EXPIRED', missing: 'MISSING' };

/** An Avro long holds a u64 address as its two's complement (kernel addresses are above 2^63). */
export function asLong(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

function frameKey(c: ProfileCount): string {
  return `${c.tgid}/${c.pid}/${c.kind}/${c.state}/${c.user.status}/${c.kernel.status}/${c.kernel.frames.join(',')}/${c.user.frames.join(',')}`;
}

export function buildStackRecords(drain: DecodedDrain, ctx: BuildContext): ProfileStackRecord[] {
  const merged = new Map<string, ProfileCount>();
  for (const c of drain.counts) {
    const k = frameKey(c);
    const m = merged.get(k);
    if (m) m.value += c.value;
    else merged.set(k, { ...c });
  }
  const out: ProfileStackRecord[] = [];
  for (const c of merged.values()) {
    const frames: ProfileStackRecord['frames'] = [];
    const add = (read: StackRead, kernel: boolean) => {
      if (read.status !== 'ok' || read.frames.length === 0) return;
      const named = ctx.symbolize(c.tgid, read.frames, kernel);
      read.frames.forEach((address, i) => {
        const f = named[i];
        frames.push({
          address: asLong(address),
          module: f?.module ?? '',
          offset: BigInt(f?.offset ?? 0),
          function: f?.function ?? '',
          file: f?.file ?? null,
          line: f?.line ?? null,
          kind: f?.kind ?? (kernel ? 'KERNEL' : 'USER'),
        });
      });
    };
    add(c.kernel, true);
    add(c.user, false);
    out.push({
      kind: c.kind,
      window_start_ns: ctx.windowStartNs,
      window_end_ns: ctx.windowEndNs,
      pid: c.pid,
      tgid: c.tgid,
      comm: drain.comms.get(c.tgid) ?? '',
      process_name: ctx.processName(c.tgid),
      value: c.value,
      sample_hz: c.kind === 'ONCPU' ? ctx.sampleHz : 0,
      state: c.state,
      user_stack: STATUS[c.user.status],
      kernel_stack: STATUS[c.kernel.status],
      frames,
    });
  }
  return out;
}
