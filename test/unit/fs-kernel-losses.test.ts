/**
 * The fs signal's kernel losses (rf_fs_lost, per-CPU u64 by enum
 * rf_fs_lost_reason of bpf/fs.bpf.c) reach the stats record's kernel_losses
 * by fixed names: FS_LOST mirrors the C enum (parsed from the source, so a
 * reason added or renumbered there fails here), every reason but the count
 * slot has its name, and readKernelLosses turns a map reading into them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FS_LOST, KERNEL_LOSS_COUNTERS, readKernelLosses } from '../../collector/kernel-losses.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';

/** RF_FS_LOST_* name -> value of enum rf_fs_lost_reason in bpf/fs.bpf.c. */
function cEnum(): Map<string, number> {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'bpf', 'fs.bpf.c'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const body = /enum\s+rf_fs_lost_reason\s*\{([^}]*)\}/.exec(src);
  assert.ok(body, 'enum rf_fs_lost_reason is in bpf/fs.bpf.c');
  const out = new Map<string, number>();
  for (const m of body[1]!.matchAll(/RF_FS_LOST_(\w+)\s*=\s*(\d+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

test('FS_LOST mirrors enum rf_fs_lost_reason (bpf/fs.bpf.c), NR left out', () => {
  const c = cEnum();
  const nr = c.get('NR');
  assert.ok(nr !== undefined, 'RF_FS_LOST_NR');
  c.delete('NR');
  assert.deepEqual(Object.entries(FS_LOST), [...c.entries()]);
  for (const v of Object.values(FS_LOST)) assert.ok(v < nr, 'each reason indexes the map');
});

test('every rf_fs_lost reason has one kernel_losses name (fs_*), none twice', () => {
  const rows = KERNEL_LOSS_COUNTERS.filter((r) => r.map === 'rf_fs_lost');
  assert.deepEqual(rows.map((r) => r.index).sort(), Object.values(FS_LOST).sort());
  for (const r of rows) assert.match(r.reason, /^fs_[a-z_]+$/);
  assert.equal(new Set(rows.map((r) => r.reason)).size, rows.length);
});

test('readKernelLosses: rf_fs_lost counts reach kernel_losses by name, with or without a task filter; not loaded: absent', () => {
  const maps: Record<string, bigint[] | null> = { rf_fs_lost: [7n, 2n, 1n, 0n] };
  const session = { mapCounters: (n: string) => maps[n] ?? null };
  const want = { fs_inflight_full: 7n, fs_unfinished: 2n, fs_no_scratch: 1n };
  assert.deepEqual(readKernelLosses(session, { taskFiltered: false }), want);
  assert.deepEqual(readKernelLosses(session, { taskFiltered: true }), want);
  maps.rf_fs_lost = null;
  assert.deepEqual(readKernelLosses(session, { taskFiltered: false }), {});
});
