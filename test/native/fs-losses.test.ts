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
import { ROOT, bpftoolSums, mapIdsNamed } from './helpers.ts';

const NAME = 'rf_fs_lost'; // 10 characters: bpftool shows it whole

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs(); // classic syscall tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
});

test('fs.bpf.o: rf_fs_lost is read by name, as bpftool sums it, and every slot reaches kernel_losses as fs_*', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs)' : false, timeout: 60_000 }, async (t) => {
  const before = mapIdsNamed(NAME);
  const session = new Session({ ringBytes: 1 << 20 });
  t.after(() => session.stop());
  session.addObject(objectPath('fs'), encodeSettings({ selfTgid: process.pid, pid: process.pid }));
  session.start(() => {});
  const counters = session.mapCounters(NAME);
  assert.ok(counters, 'the loaded fs object has rf_fs_lost');
  assert.deepEqual(counters, bpftoolSums(NAME, before));
  assert.ok(Object.values(FS_LOST).every((i) => i < counters.length), `every reason indexes the map (${counters.length} slots)`);
  const reading = readKernelLosses(session, { taskFiltered: true });
  const fsReasons = Object.keys(reading).filter((r) => r.startsWith('fs_')).sort();
  assert.deepEqual(fsReasons, ['fs_inflight_full', 'fs_no_scratch', 'fs_unfinished']);
  for (const [name, index] of [['fs_inflight_full', FS_LOST.INFLIGHT_FULL], ['fs_unfinished', FS_LOST.UNFINISHED], ['fs_no_scratch', FS_LOST.NO_SCRATCH]] as const) {
    assert.equal(reading[name], counters[index], name);
  }
});
