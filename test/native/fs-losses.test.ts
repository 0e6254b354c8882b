/**
 * The fs signal's loss counters on the real kernel (root): the loaded
 * bpf/fs.bpf.o has the per-CPU array rf_fs_lost that collector/kernel-losses.ts
 * reads by name, RF_FS_LOST_NR slots wide, summed as bpftool sums them, and
 * readKernelLosses names every reason of it (fs_*), so the stats record's
 * kernel_losses carries them. Provoking a loss (16 k threads in a file call at
 * once, or a missed exit) is not done here; the names and indexes are checked
 * against the C enum by test/unit/fs-kernel-losses.test.ts.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Session } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { FS_LOST, readKernelLosses } from '../../collector/kernel-losses.ts';
import { ROOT } from './helpers.ts';

const NAME = 'rf_fs_lost'; // 10 characters: bpftool shows it whole

const mapIds = (): Set<number> =>
  new Set((JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8' })) as { id: number; name: string }[])
    .filter((m) => m.name === NAME).map((m) => m.id));

/** Per-CPU __u64 slots of our (new) rf_fs_lost, summed per index, by bpftool. */
function bpftoolSums(notIn: Set<number>): bigint[] {
  const ids = [...mapIds()].filter((id) => !notIn.has(id));
  assert.equal(ids.length, 1, `one new ${NAME} map (ours)`);
  const out = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(ids[0])], { encoding: 'utf8' })) as
    { formatted: { key: number; values: { value: number }[] } }[];
  const sums: bigint[] = [];
  for (const e of out) sums[e.formatted.key] = e.formatted.values.reduce((a, v) => a + BigInt(v.value), 0n);
  return sums;
}

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs(); // classic syscall tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
});

test('fs.bpf.o: rf_fs_lost is read by name, as bpftool sums it, and every slot reaches kernel_losses as fs_*', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs)' : false, timeout: 60_000 }, async (t) => {
  const before = mapIds();
  const session = new Session({ ringBytes: 1 << 20 });
  t.after(() => session.stop());
  session.addObject(objectPath('fs'), encodeSettings({ selfTgid: process.pid, pid: process.pid }));
  session.start(() => {});
  const counters = session.mapCounters(NAME);
  assert.ok(counters, 'the loaded fs object has rf_fs_lost');
  assert.deepEqual(counters, bpftoolSums(before));
  assert.ok(Object.values(FS_LOST).every((i) => i < counters.length), `every reason indexes the map (${counters.length} slots)`);
  const reading = readKernelLosses(session, { taskFiltered: true });
  const fsReasons = Object.keys(reading).filter((r) => r.startsWith('fs_')).sort();
  assert.deepEqual(fsReasons, ['fs_inflight_full', 'fs_no_scratch', 'fs_unfinished']);
  for (const [name, index] of [['fs_inflight_full', FS_LOST.INFLIGHT_FULL], ['fs_unfinished', FS_LOST.UNFINISHED], ['fs_no_scratch', FS_LOST.NO_SCRATCH]] as const) {
    assert.equal(reading[name], counters[index], name);
  }
});
