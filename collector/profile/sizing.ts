/**
 * The on-CPU profiler's stack maps sized per host (issue 11), set by the
 * loader before the load (native Session.addObject's maxEntries).
 *
 * A stack map (bpf/prof_maps.bpf.h, one per stack epoch % 3) holds the stacks
 * of one epoch: STACK_EPOCH_DRAINS intervals. Each sample inserts at most two
 * stacks (user and kernel), so an epoch inserts at most
 *
 *   cpus x hz x interval x drains per epoch x 2
 *
 * stacks, all of them distinct in the worst case. bpf_get_stackid hashes a
 * stack to a bucket and, without BPF_F_REUSE_STACKID, loses a stack whose
 * bucket holds another one (counted: RF_PROF_L_*STACK_COLLISION): the share
 * lost is about the map's fill. Twice the worst case keeps it under half full.
 * The kernel rounds the buckets up to a power of two (and preallocates
 * max_entries elements), so the size is one. Bounded: at least 1024; at most
 * 16384, each entry ~1 KiB (127 frames), three maps ~50 MiB on a big host
 * at a high rate, where the repeats of real stacks keep the fill far below
 * the worst case anyway.
 */
import os from 'node:os';
import { STACK_EPOCH_DRAINS } from './source.ts';

export const STACK_MAP_MIN_ENTRIES = 1024;
export const STACK_MAP_MAX_ENTRIES = 16384;
/** Map entries per worst-case stack: 2 keeps a map at most half full. */
export const STACK_MAP_HEADROOM = 2;
/** Stacks a sample can insert: user and kernel. */
const STACKS_PER_SAMPLE = 2;
/** The on-CPU map set's stack maps (bpf/prof_maps.bpf.h, prefix rf_prof). */
export const PROFILE_STACK_MAPS = ['rf_prof_stacks0', 'rf_prof_stacks1', 'rf_prof_stacks2'] as const;

export interface StackMapHost {
  /** CPUs sampled (one perf event each) */
  cpus: number;
  /** --profile-hz */
  hz: number;
  /** --profile-interval, ms */
  intervalMs: number;
  /** drains per stack epoch (source.ts STACK_EPOCH_DRAINS) */
  epochDrains: number;
}

/** Entries for each stack map on this host: a power of two in [MIN, MAX]; MIN when an input is not a positive number. */
export function stackMapEntries(h: StackMapHost): number {
  const inputs = [h.cpus, h.hz, h.intervalMs, h.epochDrains];
  if (!inputs.every((x) => Number.isFinite(x) && x > 0)) return STACK_MAP_MIN_ENTRIES;
  const worst = h.cpus * h.hz * (h.intervalMs / 1000) * h.epochDrains * STACKS_PER_SAMPLE * STACK_MAP_HEADROOM;
  if (worst >= STACK_MAP_MAX_ENTRIES) return STACK_MAP_MAX_ENTRIES;
  let n = STACK_MAP_MIN_ENTRIES;
  while (n < worst) n *= 2;
  return n;
}

/** Session.addObject's maxEntries for bpf/profile.bpf.o on this host. */
export function profileMapSizes(h: StackMapHost): Record<string, number> {
  const n = stackMapEntries(h);
  return Object.fromEntries(PROFILE_STACK_MAPS.map((m) => [m, n]));
}

/**
 * Session.addObject's maxEntries for a signal's object on this host: the
 * on-CPU stack maps sized for its online CPUs, --profile-hz and drain
 * interval; undefined (the object's own sizes) for the other signals.
 */
export function mapSizesFor(signal: string, hz: number, intervalMs: number, cpus = os.cpus().length): Record<string, number> | undefined {
  if (signal !== 'profile') return undefined;
  return profileMapSizes({ cpus, hz, intervalMs, epochDrains: STACK_EPOCH_DRAINS.profile ?? 1 });
}
