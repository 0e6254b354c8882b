/**
 * What the one-off renderers (folded.ts, flamegraph.ts, pprof.ts) share:
 * a ringflow.profile.stacks.v1 record (collector/profile/records.ts) turned
 * into a root-first list of frame names, and records of one kind folded into
 * one value per unique stack.
 *
 * Frame names follow Brendan Gregg's stackcollapse conventions so our folded
 * output merges and diffs with perf's and bcc's: the process's comm is the
 * root, kernel frames end in `_[k]`, JIT frames in `_[j]` (flamegraph.pl
 * colours both). A frame symbolisation could not name is `[module]` (perf and
 * bcc say `[unknown]`; the module says where to look and still merges every
 * unnamed frame of one file). A stack the kernel could not keep whole says
 * so as a frame at its root end (`[user stack LOST]`, ...) rather than
 * passing as a short stack. Off-CPU stacks carry the task's state as the
 * frame after the comm (`[SLEEPING]`, `[DISK]`...): the "why did it
 * switch", one tower per reason.
 */
import type { ProfileStackRecord } from '../../collector/profile/records.ts';

export type { ProfileStackRecord };
export type ProfileKind = ProfileStackRecord['kind'];
type Frame = ProfileStackRecord['frames'][number];

/**
 * ';' separates frames and the last ' ' the count in the folded format, and
 * an SVG/XML file cannot carry C0 controls: a name keeps everything else.
 */
export function cleanName(s: string): string {
  return s.replace(/;/g, ':').replace(/[\x00-\x1f\x7f]/g, '?');
}

function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? p : p.slice(i + 1);
}

/** One frame's name in the folded/flame graph conventions. */
export function frameName(f: Pick<Frame, 'function' | 'module' | 'kind'>): string {
  const base = f.function !== '' ? f.function : f.module !== '' ? `[${basename(f.module).replace(/^\[|\]$/g, '')}]` : '[unknown]';
  const suffix = f.kind === 'KERNEL' ? '_[k]' : f.kind === 'JIT' ? '_[j]' : '';
  return cleanName(base) + suffix;
}

/** A stack the kernel did not keep whole; NONE (no such stack) and OK say nothing. */
function statusFrame(which: 'user' | 'kernel', status: ProfileStackRecord['user_stack']): string | null {
  return status === 'LOST' || status === 'EXPIRED' || status === 'MISSING' ? `[${which} stack ${status}]` : null;
}

/** Root first: comm, [state] for off-CPU, what was lost, then user frames, then kernel frames; the leaf last. */
export function rootFirstNames(r: ProfileStackRecord): string[] {
  const out = [r.comm !== '' ? cleanName(r.comm) : `[pid ${r.tgid}]`];
  if (r.kind === 'OFFCPU') out.push(`[${r.state}]`);
  const u = statusFrame('user', r.user_stack);
  if (u) out.push(u);
  const k = statusFrame('kernel', r.kernel_stack);
  if (k) out.push(k);
  for (let i = r.frames.length - 1; i >= 0; i--) out.push(frameName(r.frames[i]!));
  return out;
}

export interface FoldedStack {
  /** root first */
  frames: string[];
  /** samples (ONCPU) or ns (OFFCPU), summed over every record with these names */
  value: bigint;
}

/** Records of `kind` summed per unique root-first name list; others are left out. */
export function foldStacks(records: readonly ProfileStackRecord[], kind: ProfileKind): FoldedStack[] {
  const m = new Map<string, FoldedStack>();
  for (const r of records) {
    if (r.kind !== kind || r.value <= 0n) continue;
    const frames = rootFirstNames(r);
    const key = frames.join(';');
    const s = m.get(key);
    if (s) s.value += r.value;
    else m.set(key, { frames, value: r.value });
  }
  return [...m.values()];
}

/** The kind a one-off renders when not told: on-CPU when there is any. */
export function defaultKind(records: readonly ProfileStackRecord[]): ProfileKind {
  return records.some((r) => r.kind === 'ONCPU') || !records.some((r) => r.kind === 'OFFCPU') ? 'ONCPU' : 'OFFCPU';
}
