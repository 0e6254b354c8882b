/**
 * bpf/fs.bpf.c's calls other than reads and writes (docs/design/fs.md
 * section 2), against the real kernel (root): known calls made by a child
 * (test/native/fs/fs_calls.c, built here, exact syscalls) in a tmpfs and an
 * ext4 loop image mounted by this test must come back as exactly one record
 * per call with its op, return, len/offset and the file's path; a call that
 * fails on a regular file is a record with ret < 0.
 *
 * RINGFLOW_BPF_DIR can point at another build (an older object, to see
 * these fail). Records are decoded by offset (struct rf_fs_event in
 * bpf/events.h), as test/native/fs.test.ts does.
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { ROOT, startReady } from './helpers.ts';
import { decodeFsRecords as decode, EVENT, F, RF_EV_FS_IO, type FsRecord } from './fs/records.ts';
import { kernelDevOf as kernelDev } from '../../collector/signals/fs-filter.ts';
import { buildFsProgram, makeFsScratch, unmountAll, type FsScratch } from './fs/scratch.ts';

const FS_OBJ = join(process.env.RINGFLOW_BPF_DIR ?? `${ROOT}bpf/.output`, 'fs.bpf.o');
/** enum rf_fs_op */
const OP = { SYNC_FILE_RANGE: 10, OPEN: 11, FTRUNCATE: 12, FALLOCATE: 13 } as const;
const BS = 4096;
const EINVAL = 22;

let dir = '';
let calls = '';
let tmpfsDir = '';
let ext4Dir = '';
let mounted: string[] = [];
let scratch: FsScratch | null = null;

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs(); // classic syscall tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  scratch = makeFsScratch('/var/tmp/ringflow-fs-calls-', 'ringflow-fs-calls-test', 64, 64);
  ({ dir, tmpfsDir, ext4Dir, mounted } = scratch);
  calls = buildFsProgram(ROOT, scratch, 'fs_calls.c', 'fs_calls');
});

after(() => unmountAll(scratch));

/** Runs fs_calls with jobs under fs.bpf.o filtered to its pid; its records once it exited and the ring drained, and the kernel side's counters. */
async function run(t: TestContext, jobs: string[]) {
  const child = await startReady(t, calls, jobs);
  const session = new Session();
  t.after(() => session.stop());
  const records: FsRecord[] = [];
  session.addObject(FS_OBJ, encodeSettings({ selfTgid: process.pid, pid: child.child.pid! }));
  session.start((batch) => decode(batch, records));
  child.child.stdin!.end('g');
  const [code] = await child.exited;
  assert.equal(code, 0, 'fs_calls did its jobs');
  const lost = session.mapCounters('rf_fs_lost');
  const failed = session.mapCounters('rf_fs_failed');
  await session.stop();
  return { pid: child.child.pid!, records: records.filter((r) => r.tgid === child.child.pid), lost, failed, drops: session.drops()[RF_EV_FS_IO] };
}

function assertFile(r: FsRecord, path: string, fsType: string, mountPoint: string): void {
  const st = statSync(path, { bigint: true });
  assert.equal(r.path, path, 'absolute path');
  assert.equal(r.length, EVENT + Buffer.byteLength(path), 'record = event + path bytes');
  assert.equal(r.mntLen, mountPoint.length, `mnt_len: the mount point ${mountPoint}`);
  assert.equal(r.fsType, fsType, 'fs type');
  assert.equal(r.ino, st.ino, 'ino = stat');
  assert.equal(r.dev, kernelDev(st.dev), 'dev = stat');
  assert.equal(r.flags & (F.PATH_CUT | F.PATH_FAILED | F.DELETED), 0, 'whole path, file not deleted');
  assert.equal(r.comm, 'fs_calls');
  assert.ok(r.latencyNs > 0n && r.latencyNs < 5_000_000_000n, 'latency');
}

const opsOf = (records: FsRecord[], path: string, op: number) => records.filter((r) => r.path === path && r.op === op);

describe('fs.bpf.o: ftruncate, fallocate, sync_file_range', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs, mounts)' : false }, () => {
  for (const [fsType, mnt] of [['tmpfs', () => tmpfsDir], ['ext4', () => ext4Dir]] as const) {
    it(`${fsType}: one record per call with its length or range; ftruncate of a read-only fd is one record with -EINVAL`, async (t) => {
      const N = 3;
      const f = (n: string) => join(mnt(), 'calls', n);
      mkdirSync(join(mnt(), 'calls'), { recursive: true });
      const res = await run(t, [`t:${f('t')}:${N}`, `T:${f('T')}:${N}`, `a:${f('a')}:${N}`, `s:${f('s')}:${N}`]);
      const mine = res.records;
      t.diagnostic(`records ${mine.length}, lost ${res.lost?.join(',')}, ring drops ${res.drops}`);
      const idx = Array.from({ length: N }, (_, i) => i);

      const tr = opsOf(mine, f('t'), OP.FTRUNCATE);
      assert.deepEqual(tr.map((x) => [x.ret, x.len, x.offset]), idx.map((i) => [0n, BigInt((i + 1) * BS), 0n]), 'ftruncate: ret 0, len = the new length, no offset');
      const bad = opsOf(mine, f('T'), OP.FTRUNCATE);
      assert.deepEqual(bad.map((x) => [x.ret, x.len]), idx.map(() => [BigInt(-EINVAL), BigInt(BS)]), 'ftruncate of a read-only fd: ret -EINVAL');
      const fa = opsOf(mine, f('a'), OP.FALLOCATE);
      assert.deepEqual(fa.map((x) => [x.ret, x.len, x.offset]), idx.map((i) => [0n, BigInt(BS), BigInt((i + 4) * BS)]), 'fallocate: the range');
      const sr = opsOf(mine, f('s'), OP.SYNC_FILE_RANGE);
      assert.deepEqual(sr.map((x) => [x.ret, x.len, x.offset]), idx.map((i) => [0n, BigInt(BS), BigInt(i * BS)]), 'sync_file_range: the range');
      for (const [rs, p] of [[tr, f('t')], [bad, f('T')], [fa, f('a')], [sr, f('s')]] as const) for (const x of rs) assertFile(x, p, fsType, mnt());
      assert.equal(mine.length, 4 * N, `only those calls: ${mine.map((x) => `${x.op}:${x.path}`).join(' ')}`);
      assert.deepEqual(res.lost, [0n, 0n, 0n, 0n], 'nothing lost in the kernel');
      assert.equal(res.drops, 0n);
    });
  }
});

describe('fs.bpf.o: openat, openat2', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs, mounts)' : false }, () => {
  for (const [fsType, mnt] of [['tmpfs', () => tmpfsDir], ['ext4', () => ext4Dir]] as const) {
    it(`${fsType}: one record per open, the file the returned fd's (path, flags); a failed open is counted in rf_fs_failed, not emitted; a pipe's open none`, async (t) => {
      const N = 3;
      const f = (n: string) => join(mnt(), 'opens', n);
      mkdirSync(join(mnt(), 'opens'), { recursive: true });
      const res = await run(t, [`o:${f('o')}:${N}`, `q:${f('q')}:${N}`, `d:${f('d')}:${N}`, `O:${f('missing')}:${N}`, 'p:-:2']);
      const mine = res.records;
      t.diagnostic(`records ${mine.length}, lost ${res.lost?.join(',')}, failed ${res.failed?.join(',')}, ring drops ${res.drops}`);
      for (const [name, flags] of [['o', 0], ['q', 0], ['d', F.DIRECT | F.SYNC]] as const) {
        const rs = opsOf(mine, f(name), OP.OPEN);
        assert.equal(rs.length, N, `${N} open records of ${name}`);
        for (const x of rs) {
          assertFile(x, f(name), fsType, mnt());
          assert.ok(x.ret > 2n, 'ret: the new fd');
          assert.equal(BigInt(x.fd), x.ret, 'fd: the returned one');
          assert.deepEqual([x.len, x.offset], [0n, 0n]);
          assert.equal(x.flags & (F.DIRECT | F.SYNC), flags, `flags of ${name}`);
        }
      }
      assert.equal(mine.length, 3 * N, `only the opens of regular files: ${mine.map((x) => `${x.op}:${x.path}`).join(' ')}`);
      assert.ok(res.failed, 'the object has rf_fs_failed');
      assert.equal(res.failed[OP.OPEN], BigInt(N), 'the failed opens, counted');
      assert.equal(res.failed.reduce((a, b) => a + b, 0n), BigInt(N), 'nothing else counted failed');
      assert.deepEqual(res.lost, [0n, 0n, 0n, 0n], 'nothing lost in the kernel');
      assert.equal(res.drops, 0n);
    });
  }
});
