/**
 * Decodes one drain of a profiling map set (native Session.profileDrain; the
 * kernel side is bpf/prof_maps.bpf.h, the layout bpf/events.h): the counts
 * aggregated in the kernel over one generation, the frames of the stacks they
 * name, and each process's command. Pure.
 *
 *   counts := (struct rf_prof_key, u64 value)*                   32 bytes each
 *     rf_prof_key := u32 tgid | u32 pid | s32 user_stack_id | s32 kernel_stack_id
 *                    | u8 kind | u8 slot | u8 stack_map | u8 state | u8 _pad[4]
 *   stacks := (u32 stack_map, u32 id, u32 n, u32 0, u64 ip[n])*   leaf first
 *   comms  := (u32 tgid, char comm[16])*                         20 bytes each
 */

/** enum rf_prof_kind */
export const PROF_KIND = { ONCPU: 0, OFFCPU: 1 } as const;
export type ProfKind = 'ONCPU' | 'OFFCPU';

/** enum rf_prof_state, by value */
export const PROF_STATES = ['RUNNING', 'PREEMPTED', 'SLEEPING', 'DISK', 'OTHER'] as const;
export type ProfState = (typeof PROF_STATES)[number];

/** RF_PROF_STACK_* (negative stack ids) */
export const PROF_STACK = { NONE: -1, LOST: -2, EXPIRED: -3 } as const;

/** enum rf_prof_lost_reason: indexes of <prefix>_lost */
export const PROF_LOST = { USTACK_COLLISION: 0, KSTACK_COLLISION: 1, STACK_MAP_FULL: 2, COUNTS_FULL: 3, OFFCPU_EXPIRED: 4, OFFCPU_UNTRACKED: 5 } as const;

export const PROF_KEY_SIZE = 24;
export const PROF_COUNT_SIZE = 32;
/** offsetof(struct rf_prof_key, ...) (test/unit/profile-layout.test.ts checks them with gcc) */
export const PROF_KEY = { tgid: 0, pid: 4, user_stack_id: 8, kernel_stack_id: 12, kind: 16, slot: 17, stack_map: 18, state: 19 } as const;

/**
 * What a stack id gave: the frames (leaf first), or why there are none:
 * none = the task has no stack of that kind (a kernel thread's user stack, a
 * sample in user mode's kernel stack); lost = bpf_get_stackid failed (counted
 * in the kernel); expired = an off-CPU block older than its stack map;
 * missing = the id was not in its map when read (never expected).
 */
export type StackRead = { status: 'ok'; frames: bigint[] } | { status: 'none' | 'lost' | 'expired' | 'missing'; frames: [] };

export interface ProfileCount {
  tgid: number;
  /** thread id when counted per thread, else 0 */
  pid: number;
  kind: ProfKind;
  state: ProfState;
  /** samples (ONCPU) or ns blocked (OFFCPU) */
  value: bigint;
  user: StackRead;
  kernel: StackRead;
}

export interface DecodedDrain {
  generation: bigint;
  counts: ProfileCount[];
  /** tgid -> process command ('' when the kernel map no longer had it) */
  comms: Map<number, string>;
  /** stacks the drain listed twice or cut short: a malformed buffer, counted, never thrown */
  malformed: number;
}

function cstring(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

export function decodeProfileDrain(d: { generation: bigint; counts: Buffer; stacks: Buffer; comms: Buffer }): DecodedDrain {
  let malformed = 0;
  const stacks = new Map<string, bigint[]>();
  for (let off = 0; off + 16 <= d.stacks.length;) {
    const map = d.stacks.readUInt32LE(off);
    const id = d.stacks.readUInt32LE(off + 4);
    const n = d.stacks.readUInt32LE(off + 8);
    if (off + 16 + n * 8 > d.stacks.length) {
      malformed++;
      break;
    }
    const frames: bigint[] = [];
    for (let i = 0; i < n; i++) frames.push(d.stacks.readBigUInt64LE(off + 16 + i * 8));
    stacks.set(`${map}/${id}`, frames);
    off += 16 + n * 8;
  }
  const read = (map: number, id: number): StackRead => {
    if (id === PROF_STACK.NONE) return { status: 'none', frames: [] };
    if (id === PROF_STACK.LOST) return { status: 'lost', frames: [] };
    if (id === PROF_STACK.EXPIRED) return { status: 'expired', frames: [] };
    const f = id >= 0 ? stacks.get(`${map}/${id}`) : undefined;
    // an id the map no longer had reads as 0 frames from the native side
    return f && f.length > 0 ? { status: 'ok', frames: f } : { status: 'missing', frames: [] };
  };
  const counts: ProfileCount[] = [];
  if (d.counts.length % PROF_COUNT_SIZE !== 0) malformed++;
  for (let off = 0; off + PROF_COUNT_SIZE <= d.counts.length; off += PROF_COUNT_SIZE) {
    const map = d.counts[off + PROF_KEY.stack_map]!;
    const kind = d.counts[off + PROF_KEY.kind]!;
    const state = d.counts[off + PROF_KEY.state]!;
    counts.push({
      tgid: d.counts.readUInt32LE(off + PROF_KEY.tgid),
      pid: d.counts.readUInt32LE(off + PROF_KEY.pid),
      kind: kind === PROF_KIND.OFFCPU ? 'OFFCPU' : 'ONCPU',
      state: PROF_STATES[state] ?? 'OTHER',
      value: d.counts.readBigUInt64LE(off + PROF_KEY_SIZE),
      user: read(map, d.counts.readInt32LE(off + PROF_KEY.user_stack_id)),
      kernel: read(map, d.counts.readInt32LE(off + PROF_KEY.kernel_stack_id)),
    });
  }
  const comms = new Map<number, string>();
  for (let off = 0; off + 20 <= d.comms.length; off += 20) comms.set(d.comms.readUInt32LE(off), cstring(d.comms, off + 4, 16));
  return { generation: d.generation, counts, comms, malformed };
}
