/**
 * Profiles: ringflow.profile.stacks.v1 records merged per window and series
 * into ringflow.profiles.v1 records (schemas/profiles.avsc). Pure: the stage
 * (processor/profiles-stage.ts) feeds records and emits what closes.
 *
 *   series  = (host, service, kind, state); service = process_name, else
 *             'unknown_service:<comm>' (the OTel SDKs' name for an unnamed one)
 *   window  = the processor's tumbling window holding the collector
 *             interval's midpoint (wall clock: boot_time_ns + monotonic):
 *             an interval belongs whole to one window, the one where most
 *             of its time lies when it straddles two
 *   stack   = the frames' identities (function, module, offset, file, line,
 *             kind), leaf first; the address is left out: it differs between
 *             processes of one binary (ASLR) while the file offset does not
 *
 * Values are summed (BigInt: off-CPU ns of many threads over a window can
 * pass 2^53), so merging is associative and commutative: the output depends
 * on the set of records, not their order. That is what lets a single keyed
 * stage replay from a committed offset and write the same profile again.
 *
 * Bounded output: per series the top `topStacks` stacks by value (ties by
 * their key, so the choice is deterministic) are kept, the rest summed into
 * one stack whose only frame is '[other]', their number in other_stacks.
 * A stack part the collector could not read (LOST, EXPIRED, MISSING) becomes
 * a marker frame at the root end ('[lost user stack]'...), so its samples
 * stay visible instead of passing for a short stack.
 */

import { WindowAssigner, type WindowAssignerState } from './window.ts';

export type ProfileKind = 'ONCPU' | 'OFFCPU';
export type ProfileState = 'RUNNING' | 'PREEMPTED' | 'SLEEPING' | 'DISK' | 'OTHER';
export type FrameKind = 'KERNEL' | 'USER' | 'JIT';
export type StackStatus = 'OK' | 'NONE' | 'LOST' | 'EXPIRED' | 'MISSING';

/** A ringflow.profile.stacks.v1 value as decodeCurrent returns it (longs as BigInt). */
export interface StackRecordIn {
  kind: ProfileKind;
  window_start_ns: bigint;
  window_end_ns: bigint;
  tgid: bigint | number;
  comm: string;
  process_name: string;
  value: bigint;
  sample_hz: number;
  state: ProfileState;
  user_stack: StackStatus;
  kernel_stack: StackStatus;
  frames: readonly { module: string; offset: bigint | number; function: string; file: string | null; line: number | null; kind: FrameKind }[];
  host: string;
  boot_time_ns: bigint;
}

export interface ProfileFrameOut {
  function: string;
  module: string;
  offset: bigint;
  file: string | null;
  line: number | null;
  kind: FrameKind;
}

/** A ringflow.profiles.v1 value. */
export interface ProfileOut {
  window_start_ns: bigint;
  window_end_ns: bigint;
  host: string;
  service: string;
  kind: ProfileKind;
  state: ProfileState;
  sample_hz: number;
  processes: number;
  records: bigint;
  total: bigint;
  other_stacks: number;
  frames: ProfileFrameOut[];
  stacks: { frames: number[]; value: bigint }[];
}

export const OTHER_FRAME = '[other]';
export const DEFAULT_TOP_STACKS = 200;

export function serviceOf(r: Pick<StackRecordIn, 'process_name' | 'comm'>): string {
  if (r.process_name !== '') return r.process_name;
  return r.comm !== '' ? `unknown_service:${r.comm}` : 'unknown_service';
}

/** The event time that places a record in a window: its interval's midpoint, wall clock. */
export function recordTimeNs(r: Pick<StackRecordIn, 'window_start_ns' | 'window_end_ns' | 'boot_time_ns'>): bigint {
  return BigInt(r.boot_time_ns) + (BigInt(r.window_start_ns) + BigInt(r.window_end_ns)) / 2n;
}

export function seriesKeyOf(r: StackRecordIn): string {
  return JSON.stringify([r.host, serviceOf(r), r.kind, r.state]);
}

/** The Kafka key of a profile: one series, so its windows stay in order in one partition. */
export function profileKey(p: Pick<ProfileOut, 'host' | 'service' | 'kind' | 'state'>): string {
  return `${p.host}|${p.service}|${p.kind}|${p.state}`;
}

function frameKey(f: ProfileFrameOut): string {
  return JSON.stringify([f.function, f.module, String(f.offset), f.file, f.line, f.kind]);
}

const MARKER: Partial<Record<StackStatus, string>> = { LOST: 'lost', EXPIRED: 'expired', MISSING: 'missing' };

function marker(status: StackStatus, part: 'user' | 'kernel'): ProfileFrameOut | null {
  const m = MARKER[status];
  return m ? { function: `[${m} ${part} stack]`, module: '', offset: 0n, file: null, line: null, kind: part === 'kernel' ? 'KERNEL' : 'USER' } : null;
}

/** The frames a record's stack merges by: its own, then markers for unreadable parts (root end). */
export function stackFrames(r: StackRecordIn): ProfileFrameOut[] {
  const out: ProfileFrameOut[] = r.frames.map((f) => ({ function: f.function, module: f.module, offset: BigInt(f.offset), file: f.file ?? null, line: f.line ?? null, kind: f.kind }));
  const k = marker(r.kernel_stack, 'kernel');
  const u = marker(r.user_stack, 'user');
  if (k) out.push(k);
  if (u) out.push(u);
  return out;
}

interface SeriesAcc {
  host: string;
  service: string;
  kind: ProfileKind;
  state: ProfileState;
  sampleHz: number;
  records: bigint;
  tgids: Set<string>;
  /** stack key -> its frames and summed value */
  stacks: Map<string, { frames: ProfileFrameOut[]; value: bigint }>;
}

/** One window's profiles being merged: every series seen in it. */
export class ProfileWindow {
  private readonly series = new Map<string, SeriesAcc>();

  get size(): number {
    return this.series.size;
  }

  add(r: StackRecordIn): void {
    const sk = seriesKeyOf(r);
    let s = this.series.get(sk);
    if (!s) {
      s = { host: r.host, service: serviceOf(r), kind: r.kind, state: r.state, sampleHz: 0, records: 0n, tgids: new Set(), stacks: new Map() };
      this.series.set(sk, s);
    }
    s.records++;
    s.tgids.add(String(r.tgid));
    if (r.sample_hz > s.sampleHz) s.sampleHz = r.sample_hz;
    const frames = stackFrames(r);
    const key = frames.map(frameKey).join('\n');
    const st = s.stacks.get(key);
    if (st) st.value += BigInt(r.value);
    else s.stacks.set(key, { frames, value: BigInt(r.value) });
  }

  /** The window's profiles, series in key order (deterministic), each bounded to topStacks + '[other]'. */
  finish(startNs: bigint, endNs: bigint, topStacks = DEFAULT_TOP_STACKS): ProfileOut[] {
    const out: ProfileOut[] = [];
    for (const sk of [...this.series.keys()].sort()) out.push(finishSeries(this.series.get(sk)!, startNs, endNs, topStacks));
    return out;
  }
}

function finishSeries(s: SeriesAcc, startNs: bigint, endNs: bigint, topStacks: number): ProfileOut {
  const ranked = [...s.stacks.entries()].sort(([ka, a], [kb, b]) => (a.value === b.value ? (ka < kb ? -1 : ka > kb ? 1 : 0) : a.value > b.value ? -1 : 1));
  const kept = ranked.slice(0, Math.max(0, topStacks));
  const rest = ranked.slice(kept.length);
  const frames: ProfileFrameOut[] = [];
  const index = new Map<string, number>();
  const idx = (f: ProfileFrameOut): number => {
    const k = frameKey(f);
    let i = index.get(k);
    if (i === undefined) {
      i = frames.length;
      frames.push(f);
      index.set(k, i);
    }
    return i;
  };
  let total = 0n;
  const stacks = kept.map(([, st]) => {
    total += st.value;
    return { frames: st.frames.map(idx), value: st.value };
  });
  if (rest.length > 0) {
    let v = 0n;
    for (const [, st] of rest) v += st.value;
    total += v;
    stacks.push({ frames: [idx({ function: OTHER_FRAME, module: '', offset: 0n, file: null, line: null, kind: 'USER' })], value: v });
  }
  return {
    window_start_ns: startNs, window_end_ns: endNs, host: s.host, service: s.service, kind: s.kind, state: s.state,
    sample_hz: s.kind === 'ONCPU' ? s.sampleHz : 0, processes: s.tgids.size, records: s.records, total, other_stacks: rest.length, frames, stacks,
  };
}

// ---- one partition's windows, with its checkpoint ----------------------------------


/** Offset-commit metadata of a partition (JSON). */
interface ProfileCheckpoint {
  v: 1;
  /** Records below this were read (late ones counted, bad ones dead-lettered) before the commit. */
  read: string;
  windows: WindowAssignerState;
}

export type AddOutcome = 'merged' | 'late' | 'replayed';

/**
 * One partition of the profiles stage, pure: records in by offset, closed
 * windows' profiles out, and what to commit. Replay rule: a state restored
 * from checkpoint() and fed again from commitOffset() makes the same
 * decisions and emits nothing twice. The assigner's state is what carries
 * that: a window closed by the idle clock (advanceTo) is closed for a record
 * read after it, which a fresh assigner fed from the commit would not know.
 */
export class ProfilePartition {
  private readonly assigner: WindowAssigner;
  private readonly open = new Map<bigint, { acc: ProfileWindow; minOffset: bigint }>();
  /** Offset after the last record read (-1: none yet). */
  next = -1n;
  /** The read offset of the checkpoint this state was restored from (0: none). */
  readonly readFrom: bigint;

  private readonly opts: { windowMs: number; latenessMs: number; topStacks?: number };

  constructor(opts: { windowMs: number; latenessMs: number; topStacks?: number }, checkpoint?: string) {
    this.opts = opts;
    const fresh = new WindowAssigner({ sizeMs: opts.windowMs, latenessMs: opts.latenessMs });
    if (checkpoint === undefined) {
      this.assigner = fresh;
      this.readFrom = 0n;
      return;
    }
    // throws on anything not ours: the stage then starts from the committed offset alone
    const c = JSON.parse(checkpoint) as ProfileCheckpoint;
    if (c === null || typeof c !== 'object' || c.v !== 1) throw new Error(`unknown version ${String((c as { v?: unknown } | null)?.v)}`);
    if (!/^\d+$/.test(String(c.read))) throw new Error('no read offset');
    const a = WindowAssigner.restore(c.windows);
    // another --window or --lateness since: the old windows cannot be continued
    if (a.sizeNs !== fresh.sizeNs || a.latenessNs !== fresh.latenessNs) throw new Error('window size or lateness changed');
    this.assigner = a;
    this.readFrom = BigInt(c.read);
  }

  /** Whether the record at `offset` is judged now (not read before the checkpoint, nor by this state). */
  isFresh(offset: bigint): boolean {
    return offset >= this.readFrom && offset >= this.next;
  }

  /** Reads a record that does not take part (undecodable, skewed): only moves the read offset. */
  skip(offset: bigint): void {
    if (offset + 1n > this.next) this.next = offset + 1n;
  }

  add(r: StackRecordIn, offset: bigint): AddOutcome {
    const fresh = this.isFresh(offset);
    this.skip(offset);
    const w = this.assigner.observe(recordTimeNs(r));
    // closed: emitted before the checkpoint (a replay), or late now
    if (w === null) return fresh ? 'late' : 'replayed';
    let o = this.open.get(w.startNs);
    if (!o) this.open.set(w.startNs, (o = { acc: new ProfileWindow(), minOffset: offset }));
    o.acc.add(r);
    return 'merged';
  }

  get openWindows(): number {
    return this.open.size;
  }

  /** The profiles of the windows the watermark closed (by the idle clock at `wallNs` when given), oldest first. */
  closed(wallNs?: bigint): ProfileOut[] {
    const out: ProfileOut[] = [];
    for (const w of wallNs === undefined ? this.assigner.advance() : this.assigner.advanceTo(wallNs)) {
      const o = this.open.get(w.startNs);
      if (!o) continue;
      this.open.delete(w.startNs);
      out.push(...o.acc.finish(w.startNs, w.endNs, this.opts.topStacks));
    }
    return out;
  }

  /** The offset to commit: the first record an open window still needs, else the next to read. */
  commitOffset(): bigint {
    let c = this.next < 0n ? this.readFrom : this.next;
    for (const o of this.open.values()) if (o.minOffset < c) c = o.minOffset;
    return c;
  }

  checkpoint(): string {
    const read = this.next > this.readFrom ? this.next : this.readFrom;
    const c: ProfileCheckpoint = { v: 1, read: String(read), windows: this.assigner.state() };
    return JSON.stringify(c);
  }
}
