/**
 * Kernel-side losses that only BPF maps count, by reason: per-reason counters
 * of bpf/block.bpf.c (rf_block_lost), bpf/tcp.bpf.c (rf_tcp_unattributed)
 * and bpf/l7.bpf.c's in-kernel HTTP/1 parsing (rf_l7_parse: heads too long,
 * bad start lines or framing, requests the pending table could not hold,
 * responses with no request, two threads in one direction) and the profile
 * signals' bpf_get_stackid failures and full count maps (rf_prof_lost,
 * rf_offcpu_lost: bpf/prof_maps.bpf.h) and bpf/fs.bpf.c's file calls not
 * reported (rf_fs_lost: in-flight table full, exit missed),
 * read through the addon (Session.mapCounters sums the per-CPU slots), turned
 * into deltas per stats interval for the stats record's drop_reasons.
 *
 *   session ──mapCounters──▶ readKernelLosses (cumulative, per reason) ──▶ kernelLossDeltas(prev, cur) ──▶ { reason: n }
 *
 * Only losses are named here. rf_block_lost[RF_BLOCK_LOST_UNOWNED] is not one
 * (the request was reported, attributed to the task current at issue) and is
 * left out. rf_tcp_unattributed counts retransmits and drops of sockets with
 * no known owner: records are lost only when a task filter is set (without
 * one they are emitted with the current task, see bpf/tcp.bpf.c), so the
 * caller passes `taskFiltered`.
 */

import { L7_PARSE } from './l7/exchange.ts';
import { L7_H2 } from './l7/capture.ts';
import { PROF_LOST } from './profile/drain.ts';

/**
 * enum rf_fs_lost_reason of bpf/fs.bpf.c (RF_FS_LOST_<name> = value; the enum
 * lives in the .bpf.c, not events.h: only the loss counts leave the kernel).
 * test/unit/fs-kernel-losses.test.ts parses the C enum and checks this.
 */
export const FS_LOST = { INFLIGHT_FULL: 0, UNFINISHED: 1, NO_SCRATCH: 2 } as const;

/** One per-reason counter: slot `index` (a BPF enum value) of per-CPU array `map`, named `reason`. */
export interface KernelLossCounter { map: string; index: number; reason: string; onlyFiltered?: boolean }

/** Where each reason is counted: index = the BPF enum value (bpf/block.bpf.c, bpf/tcp.bpf.c, bpf/events.h). */
export const KERNEL_LOSS_COUNTERS: readonly KernelLossCounter[] = [
  // enum rf_block_lost_reason
  { map: 'rf_block_lost', index: 0, reason: 'block_orphaned' },
  { map: 'rf_block_lost', index: 1, reason: 'block_untracked' },
  { map: 'rf_block_lost', index: 2, reason: 'block_map_full' },
  // enum rf_tcp_unattributed_index
  { map: 'rf_tcp_unattributed', index: 0, reason: 'tcp_retransmit_unattributed', onlyFiltered: true },
  { map: 'rf_tcp_unattributed', index: 1, reason: 'tcp_drop_unattributed', onlyFiltered: true },
  // enum rf_l7_parse_counter (bpf/events.h; L7_PARSE in collector/l7/exchange.ts): the in-kernel
  // HTTP/1 parsing's losses. Its other slots (exchanges, upgrades, resyncs, ends not framed) are not losses.
  { map: 'rf_l7_parse', index: L7_PARSE.H1_HEAD_TOO_LONG, reason: 'l7_h1_head_too_long' },
  { map: 'rf_l7_parse', index: L7_PARSE.H1_BAD_START, reason: 'l7_h1_bad_start' },
  { map: 'rf_l7_parse', index: L7_PARSE.H1_BAD_FRAMING, reason: 'l7_h1_bad_framing' },
  { map: 'rf_l7_parse', index: L7_PARSE.PENDING_FULL, reason: 'l7_pending_full' },
  { map: 'rf_l7_parse', index: L7_PARSE.RESP_ORPHAN, reason: 'l7_resp_orphan' },
  { map: 'rf_l7_parse', index: L7_PARSE.CONCURRENT, reason: 'l7_h1_concurrent' },
  { map: 'rf_l7_parse', index: L7_PARSE.MMSG_OVER_LIMIT, reason: 'l7_mmsg_over_limit' },
  // enum rf_l7_h2_counter (L7_H2 in collector/l7/capture.ts): the one HTTP/2 framing count that is bytes
  // not captured (a call whose kept header bytes exceeded the capture size); the others are not losses
  { map: 'rf_l7_h2', index: L7_H2.KEPT_OVER, reason: 'l7_h2_kept_over' },
  // enum rf_prof_lost_reason (bpf/events.h; PROF_LOST in collector/profile/drain.ts), one array per profile
  // signal. A stack lost keeps its sample or block (reported with stack LOST); a full count map loses it
  ...(['profile', 'offcpu'] as const).flatMap((sig) => {
    const map = sig === 'profile' ? 'rf_prof_lost' : 'rf_offcpu_lost';
    return [
      { map, index: PROF_LOST.USTACK_COLLISION, reason: `${sig}_user_stack_collision` },
      { map, index: PROF_LOST.KSTACK_COLLISION, reason: `${sig}_kernel_stack_collision` },
      { map, index: PROF_LOST.STACK_MAP_FULL, reason: `${sig}_stack_map_full` },
      { map, index: PROF_LOST.COUNTS_FULL, reason: `${sig}_counts_full` },
    ];
  }),
  { map: 'rf_offcpu_lost', index: PROF_LOST.OFFCPU_EXPIRED, reason: 'offcpu_expired' },
  { map: 'rf_offcpu_lost', index: PROF_LOST.OFFCPU_UNTRACKED, reason: 'offcpu_untracked' },
  // enum rf_fs_lost_reason (bpf/fs.bpf.c; FS_LOST below, checked against the C enum by test/unit/fs-kernel-losses):
  // each a file call that is not reported. A full ring is rf_drops[RF_EV_FS_IO], as for every signal
  { map: 'rf_fs_lost', index: FS_LOST.INFLIGHT_FULL, reason: 'fs_inflight_full' },
  { map: 'rf_fs_lost', index: FS_LOST.UNFINISHED, reason: 'fs_unfinished' },
  { map: 'rf_fs_lost', index: FS_LOST.NO_SCRATCH, reason: 'fs_no_scratch' },
];

/** Cumulative counts per reason since the objects were loaded. */
export type KernelLossReading = Readonly<Record<string, bigint>>;

/** What readKernelLosses needs of native Session. */
export interface CounterMaps {
  mapCounters(name: string): bigint[] | null;
}

/**
 * The cumulative counts of every reason whose map is loaded (a signal not
 * loaded has none: its reasons are absent). A map that cannot be read is
 * reported through onError and its reasons are absent from this reading
 * (kernelLossDeltas carries their previous values over). Never throws.
 * `counters`: another fixed set read the same way (collector/kernel-counts.ts).
 */
export function readKernelLosses(session: CounterMaps, opts: { taskFiltered: boolean; onError?: (map: string, err: unknown) => void; counters?: readonly KernelLossCounter[] }): KernelLossReading {
  const out: Record<string, bigint> = {};
  const maps = new Map<string, bigint[] | null>();
  for (const c of opts.counters ?? KERNEL_LOSS_COUNTERS) {
    if (c.onlyFiltered && !opts.taskFiltered) continue;
    if (!maps.has(c.map)) {
      try {
        maps.set(c.map, session.mapCounters(c.map));
      } catch (err) {
        maps.set(c.map, null);
        opts.onError?.(c.map, err);
      }
    }
    const v = maps.get(c.map)?.[c.index];
    if (v !== undefined) out[c.reason] = v;
  }
  return out;
}

/**
 * Two successive readings -> what each reason lost in between (reasons with
 * none left out), and the reading to pass as `prev` next time (a reason
 * missing from `cur`, e.g. a failed read, keeps its previous value, so its
 * count is not taken again from zero). A counter lower than before was
 * restarted (the objects were loaded again): all of it is new. Pure.
 */
export function kernelLossDeltas(prev: KernelLossReading | null, cur: KernelLossReading): { deltas: Record<string, number>; reading: KernelLossReading } {
  const deltas: Record<string, number> = {};
  for (const [reason, n] of Object.entries(cur)) {
    const before = prev?.[reason] ?? 0n;
    const d = n >= before ? n - before : n;
    if (d > 0n) deltas[reason] = Number(d);
  }
  return { deltas, reading: { ...(prev ?? {}), ...cur } };
}
