/**
 * Kernel-side counts that are not losses, by fixed name: bpf/fs.bpf.c's file
 * calls the user asked to leave out or that had no file to report, per
 * enum rf_fs_op (bpf/events.h):
 *   rf_fs_below   calls under --min-latency: never walked nor emitted
 *                 -> fs_below_min_latency_<syscall>
 *   rf_fs_failed  failed calls with no file (today only a failed open: no
 *                 inode, dev or path) -> fs_failed_<syscall>
 * They are not kernel_losses (nothing went missing that was asked for), but
 * nothing is left out silently: the stats record's kernel_counts carries
 * them as deltas per interval, read and differenced exactly as kernel_losses
 * (readKernelLosses with these counters, kernelLossDeltas).
 */
import type { KernelLossCounter } from './kernel-losses.ts';

/**
 * enum rf_fs_op of bpf/events.h by value, lower-cased as the processor's
 * ringflow.fs.syscall says it (the FsOp symbols of schemas/fs.io.avsc).
 * test/unit/fs-kernel-counts.test.ts parses the C enum and checks this.
 */
export const FS_OP_SYSCALLS: readonly string[] = [
  'read', 'write', 'pread', 'pwrite', 'readv', 'writev', 'preadv', 'pwritev',
  'fsync', 'fdatasync', 'sync_file_range', 'open', 'ftruncate', 'fallocate', 'rename', 'unlink',
];

export const FS_BELOW_PREFIX = 'fs_below_min_latency_';
export const FS_FAILED_PREFIX = 'fs_failed_';

/** Where each count is read: index = enum rf_fs_op. A fixed set of names (schemas/collector.stats.avsc kernel_counts). */
export const KERNEL_COUNT_COUNTERS: readonly KernelLossCounter[] = [
  ...FS_OP_SYSCALLS.map((s, index) => ({ map: 'rf_fs_below', index, reason: `${FS_BELOW_PREFIX}${s}` })),
  ...FS_OP_SYSCALLS.map((s, index) => ({ map: 'rf_fs_failed', index, reason: `${FS_FAILED_PREFIX}${s}` })),
];

/** Pure: the calls under --min-latency in one kernel_counts list (what `up` and the collector's summary say). */
export function belowMinLatency(counts: readonly { reason: string; count: bigint | number }[] | undefined): number {
  let n = 0;
  for (const r of counts ?? []) if (r.reason.startsWith(FS_BELOW_PREFIX)) n += Number(r.count);
  return n;
}
