// collector/kernel-losses.ts: per-reason kernel counters -> deltas per interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelLossDeltas, readKernelLosses, KERNEL_LOSS_COUNTERS, type KernelLossReading } from '../../collector/kernel-losses.ts';

test('kernelLossDeltas: differences per reason, zero ones left out, restarts and missing reasons handled', () => {
  const cases: { name: string; prev: KernelLossReading | null; cur: KernelLossReading; deltas: Record<string, number>; reading: KernelLossReading }[] = [
    { name: 'first reading: all of it', prev: null, cur: { block_orphaned: 3n, tcp_drop_unattributed: 0n }, deltas: { block_orphaned: 3 }, reading: { block_orphaned: 3n, tcp_drop_unattributed: 0n } },
    { name: 'growth', prev: { block_orphaned: 3n, block_map_full: 1n }, cur: { block_orphaned: 10n, block_map_full: 1n }, deltas: { block_orphaned: 7 }, reading: { block_orphaned: 10n, block_map_full: 1n } },
    { name: 'nothing new', prev: { block_untracked: 5n }, cur: { block_untracked: 5n }, deltas: {}, reading: { block_untracked: 5n } },
    { name: 'counter restarted (objects loaded again): all new', prev: { block_orphaned: 100n }, cur: { block_orphaned: 4n }, deltas: { block_orphaned: 4 }, reading: { block_orphaned: 4n } },
    { name: 'a reason missing from cur (failed read) keeps its value, not counted again from 0', prev: { block_orphaned: 9n, tcp_drop_unattributed: 2n }, cur: { tcp_drop_unattributed: 3n }, deltas: { tcp_drop_unattributed: 1 }, reading: { block_orphaned: 9n, tcp_drop_unattributed: 3n } },
    { name: 'a new reason (signal added)', prev: { block_orphaned: 1n }, cur: { block_orphaned: 1n, tcp_retransmit_unattributed: 6n }, deltas: { tcp_retransmit_unattributed: 6 }, reading: { block_orphaned: 1n, tcp_retransmit_unattributed: 6n } },
  ];
  for (const c of cases) assert.deepEqual(kernelLossDeltas(c.prev, c.cur), { deltas: c.deltas, reading: c.reading }, c.name);
});

test('readKernelLosses: fixed names by map index, absent maps absent, tcp only with a task filter, a failed read reported', () => {
  const maps: Record<string, bigint[] | null | Error> = { rf_block_lost: [1n, 2n, 3n, 40n], rf_tcp_unattributed: [5n, 6n] };
  const session = { mapCounters: (n: string) => { const v = maps[n]; if (v instanceof Error) throw v; return v ?? null; } };
  assert.deepEqual(readKernelLosses(session, { taskFiltered: true }),
    { block_orphaned: 1n, block_untracked: 2n, block_map_full: 3n, tcp_retransmit_unattributed: 5n, tcp_drop_unattributed: 6n });
  // index 3 (RF_BLOCK_LOST_UNOWNED) is not a loss; unattributed TCP records are emitted when nothing filters tasks
  assert.deepEqual(readKernelLosses(session, { taskFiltered: false }), { block_orphaned: 1n, block_untracked: 2n, block_map_full: 3n });
  maps.rf_block_lost = null; // block not loaded
  assert.deepEqual(readKernelLosses(session, { taskFiltered: true }), { tcp_retransmit_unattributed: 5n, tcp_drop_unattributed: 6n });
  maps.rf_tcp_unattributed = new Error('EPERM');
  const errors: string[] = [];
  assert.deepEqual(readKernelLosses(session, { taskFiltered: true, onError: (m) => errors.push(m) }), {});
  assert.deepEqual(errors, ['rf_tcp_unattributed']);
});

test('reason names are unique and each names its signal', () => {
  const names = KERNEL_LOSS_COUNTERS.map((c) => c.reason);
  assert.equal(new Set(names).size, names.length);
  const prefix: Record<string, RegExp> = { rf_block_lost: /^block_/, rf_tcp_unattributed: /^tcp_/, rf_l7_parse: /^l7_/, rf_l7_h2: /^l7_h2_/, rf_prof_lost: /^profile_/, rf_offcpu_lost: /^offcpu_/, rf_fs_lost: /^fs_/ };
  for (const c of KERNEL_LOSS_COUNTERS) assert.match(c.reason, prefix[c.map]!);
});

test('HTTP/2 framing counters: only the call whose header bytes overflowed the record is a loss (l7_h2_kept_over)', () => {
  // enum rf_l7_h2_counter: records, cut bytes, cut limit, kept over, frame lost, resynced
  const session = { mapCounters: (n: string) => (n === 'rf_l7_h2' ? [100n, 9000n, 1n, 2n, 3n, 4n, 0n, 0n] : null) };
  assert.deepEqual(readKernelLosses(session, { taskFiltered: false }), { l7_h2_kept_over: 2n });
});
