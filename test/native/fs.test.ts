/**
 * bpf/fs.bpf.c against the real kernel (root): known file work done by a
 * child (test/native/fs/fs_work.c, built here, exact syscalls) in a tmpfs and
 * an ext4 loop image, both mounted by this test, must come back as exactly
 * one record per call on a regular file, with the file's absolute path
 * walked in BPF, its fs type, dev and ino as stat sees them, bytes and
 * offsets; the same child's socket and pipe reads as none; a path deeper
 * than the walk's bound cut with its last components kept and counted.
 *
 * Records are decoded by offset (struct rf_fs_event in bpf/events.h): the
 * collector's decoder is another part's; the offsets are pinned here too.
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Session, u32 } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { ROOT, startReady } from './helpers.ts';
import { decodeFsRecords as decode, EVENT, F, RF_EV_FS_IO, type FsRecord } from './fs/records.ts';
import { kernelDevOf as kernelDev } from '../../collector/signals/fs-filter.ts';
import { buildFsProgram, makeFsScratch, unmountAll, type FsScratch } from './fs/scratch.ts';

/** Where make puts it; RINGFLOW_BPF_DIR can point at another build (a deliberately broken one, to see these fail). */
const FS_OBJ = join(process.env.RINGFLOW_BPF_DIR ?? `${ROOT}bpf/.output`, 'fs.bpf.o');
/** enum rf_fs_op */
const OP = { READ: 0, WRITE: 1, PREAD: 2, PWRITE: 3, READV: 4, WRITEV: 5, PREADV: 6, PWRITEV: 7, FSYNC: 8, FDATASYNC: 9 } as const;
/** enum rf_fs_cache */
const CACHE = { UNKNOWN: 0, CACHED: 1, BLOCKED_IO: 2, BLOCKED_OTHER: 3 } as const;
const BS = 4096;

/** What the walk keeps of an absolute path: its longest suffix of whole components within the bounds, and how many it drops. */
function expectedCut(abs: string, depth = 32, bytes = 512): { path: string; dropped: number } {
  const comps = abs.split('/').filter(Boolean);
  let kept = 0;
  let used = 0;
  while (kept < comps.length && kept < depth && used + comps[comps.length - 1 - kept]!.length + 1 <= bytes) {
    used += comps[comps.length - 1 - kept]!.length + 1;
    kept++;
  }
  return { path: '/' + comps.slice(comps.length - kept).join('/'), dropped: comps.length - kept };
}

let dir = '';
let work = '';
let slowfuse = '';
let statsHold = '';
let workStatic = '';
let tmpfsDir = '';
let ext4Dir = '';
let mounted: string[] = [];
let scratch: FsScratch | null = null;

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs(); // classic syscall tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  scratch = makeFsScratch('/var/tmp/ringflow-fs-', 'ringflow-fs-test', 64, 64);
  ({ dir, tmpfsDir, ext4Dir, mounted } = scratch);
  work = buildFsProgram(ROOT, scratch, 'fs_work.c', 'fs_work');
  slowfuse = buildFsProgram(ROOT, scratch, 'slowfuse.c', 'slowfuse');
  workStatic = buildFsProgram(ROOT, scratch, 'fs_work.c', 'fs_work_static', ['-static']); // runs in a chroot with nothing else in it
  statsHold = buildFsProgram(ROOT, scratch, 'bpf_stats_hold.c', 'bpf_stats_hold');
});

after(() => unmountAll(scratch));

/** run_cnt and run_time_ns of every BPF program fd this process holds, by program id (0 while statistics are off). */
function ownProgramStats(): Map<number, { cnt: bigint; ns: bigint }> {
  const out = new Map<number, { cnt: bigint; ns: bigint }>();
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the directory listing's own fd, closed by now
    }
    const id = /^prog_id:\s+(\d+)$/m.exec(info);
    const cnt = /^run_cnt:\s+(\d+)$/m.exec(info);
    const ns = /^run_time_ns:\s+(\d+)$/m.exec(info);
    if (id && cnt && ns) out.set(Number(id[1]), { cnt: BigInt(cnt[1]!), ns: BigInt(ns[1]!) }); // link fds name a prog_id too, without these
  }
  return out;
}

/**
 * Runs fs_work with jobs under fs.bpf.o filtered to its pid; resolves with
 * its records once it exited and the session drained the ring, the counters
 * of the kernel side, and each program's runs and run time during the jobs
 * (by name; zero unless BPF statistics are on).
 */
async function run(t: TestContext, jobs: string[], globals: Record<string, Buffer> = {}, wrap: { cmd: string; args: string[] } | null = null) {
  // wrap: a command that execs fs_work (chroot, unshare): exec keeps the pid the filter is set to
  const child = wrap ? await startReady(t, wrap.cmd, [...wrap.args, ...jobs]) : await startReady(t, work, jobs);
  const session = new Session();
  t.after(() => session.stop());
  const records: FsRecord[] = [];
  const before = new Set(ownProgramStats().keys());
  session.addObject(FS_OBJ, { ...encodeSettings({ selfTgid: process.pid, pid: child.child.pid! }), ...globals });
  session.start((batch) => decode(batch, records));
  const start = new Map([...ownProgramStats()].filter(([id]) => !before.has(id)));
  child.child.stdin!.end('g');
  const [code] = await child.exited;
  assert.equal(code, 0, 'fs_work did its jobs');
  const end = ownProgramStats();
  const lost = session.mapCounters('rf_fs_lost'); // final: the child is gone (after stop() it would be null, never read)
  const names = new Map((JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { id: number; name?: string }[])
    .filter((p) => start.has(p.id)).map((p) => [p.id, p.name ?? `id ${p.id}`]));
  const progs = new Map([...start].map(([id, s0]) => [names.get(id) ?? `id ${id}`, { cnt: end.get(id)!.cnt - s0.cnt, ns: end.get(id)!.ns - s0.ns }]));
  await session.stop();
  const drops = session.drops()[RF_EV_FS_IO];
  return { pid: child.child.pid!, records, lost, drops, progs };
}

const hex2 = (b: number) => b.toString(16).padStart(2, '0');
/** Maps of that name on the host (other tests may have their own): id and value size. */
const mapsNamed = (name: string) => (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { id: number; name: string; bytes_value: number }[])
  .filter((m) => m.name === name);

/** The records of one file and op, in order. */
const of = (records: FsRecord[], path: string, op: number) => records.filter((r) => r.path === path && r.op === op);

function assertFile(r: FsRecord, path: string, fsType: string, mountPoint: string): void {
  const st = statSync(path, { bigint: true });
  assert.equal(r.path, path, 'absolute path');
  assert.equal(r.pathLen, Buffer.byteLength(path), 'path_len');
  assert.equal(r.length, EVENT + r.pathLen, 'record = event + path bytes');
  assert.equal(r.mntLen, mountPoint.length, `mnt_len: the mount point ${mountPoint}`);
  assert.equal(r.fsType, fsType, 'fs type');
  assert.equal(r.ino, st.ino, 'ino = stat');
  assert.equal(r.dev, kernelDev(st.dev), 'dev = stat');
  assert.equal(r.flags & (F.PATH_CUT | F.PATH_FAILED | F.DELETED), 0, 'whole path, file not deleted');
  assert.equal(r.comm, 'fs_work');
}

describe('fs.bpf.o on the real kernel', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs, mounts)' : false }, () => {
  it('tmpfs: N pwrite+fsync, N pwrite+fdatasync, M cached preads, read/write at f_pos -> exactly those records; socket and pipe reads none', async (t) => {
    const N = 5;
    const M = 7;
    const w = join(tmpfsDir, 'w.dat');
    const y = join(tmpfsDir, 'y.dat');
    const r = join(tmpfsDir, 'sub', 'r.dat');
    const rw = join(tmpfsDir, 'rw.dat');
    mkdirSync(join(tmpfsDir, 'sub'), { recursive: true });
    const res = await run(t, [`w:${w}:${N}`, `y:${y}:${N}`, `r:${r}:${M}`, `R:${rw}:2`, `W:${rw}:3`, 's:-:4', 'p:-:4']);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    t.diagnostic(`records ${mine.length}, lost ${res.lost?.join(',')}, ring drops ${res.drops}`);

    const pw = of(mine, w, OP.PWRITE);
    const fs = of(mine, w, OP.FSYNC);
    assert.equal(pw.length, N, 'N pwrite records');
    assert.equal(fs.length, N, 'N fsync records');
    pw.forEach((x, i) => {
      assertFile(x, w, 'tmpfs', tmpfsDir);
      assert.equal(x.ret, BigInt(BS), 'bytes written');
      assert.equal(x.len, BigInt(BS), 'bytes asked');
      assert.equal(x.offset, BigInt(i * BS), 'pwrite offset');
      assert.notEqual(x.cache, CACHE.BLOCKED_IO, 'a tmpfs write never reads storage');
      assert.notEqual(x.cache, CACHE.UNKNOWN);
    });
    for (const x of fs) {
      assertFile(x, w, 'tmpfs', tmpfsDir);
      assert.equal(x.ret, 0n);
      assert.equal(x.offset, 0n);
    }
    assert.equal(of(mine, y, OP.PWRITE).length, N, 'N pwrite records (fdatasync file)');
    assert.equal(of(mine, y, OP.FDATASYNC).length, N, 'N fdatasync records');

    const pr = of(mine, r, OP.PREAD);
    assert.equal(pr.length, M, 'M pread records');
    pr.forEach((x, i) => {
      assertFile(x, r, 'tmpfs', tmpfsDir);
      assert.equal(x.ret, BigInt(BS), 'bytes read');
      assert.equal(x.offset, BigInt(i * BS), 'pread offset');
      assert.equal(x.cache, CACHE.CACHED, 'a cached read');
      assert.equal(x.storageBytes, 0n);
      assert.equal(x.flags & F.DIRECT, 0);
    });

    // read/write without an offset: the file position at enter
    const rd = of(mine, rw, OP.READ);
    const wr = of(mine, rw, OP.WRITE);
    assert.deepEqual(rd.map((x) => x.offset), [BigInt(BS), BigInt(2 * BS)], 'read offsets: f_pos after lseek(4096)');
    assert.deepEqual(wr.map((x) => x.offset), [2n * BigInt(BS), 3n * BigInt(BS), 4n * BigInt(BS)], 'write offsets: f_pos after lseek(8192)');
    for (const x of [...rd, ...wr]) assertFile(x, rw, 'tmpfs', tmpfsDir);

    // nothing else: the 4 socket and 4 pipe reads (and the stdin read) are not regular files
    assert.equal(mine.length, 2 * N + 2 * N + M + 2 + 3, `only the regular-file calls: ${mine.filter((x) => ![w, y, r, rw].includes(x.path)).map((x) => `${x.op}:${x.path}`).join(' ')}`);
    assert.ok(mine.every((x) => x.latencyNs > 0n && x.latencyNs < 5_000_000_000n), 'latencies');
    assert.deepEqual(res.lost, [0n, 0n, 0n, 0n], 'nothing lost in the kernel');
    assert.equal(res.drops, 0n);
  });

  it('tmpfs: vectored calls (readv, writev, preadv, pwritev, preadv2 at f_pos, pwritev2), O_SYNC writes, reads of an unlinked file', async (t) => {
    const N = 3;
    const f = (n: string) => join(tmpfsDir, 'vec', n);
    mkdirSync(join(tmpfsDir, 'vec'), { recursive: true });
    const gone = f('gone.dat');
    writeFileSync(gone, '');
    const goneStat = statSync(gone, { bigint: true }); // the child opens this inode, then unlinks it
    const res = await run(t, [`v:${f('v')}:${N}`, `V:${f('V')}:${N}`, `u:${f('u')}:${N}`, `U:${f('U')}:${N}`, `x:${f('x')}:${N}`,
      `X:${f('X')}:${N}`, `S:${f('S')}:${N}`, `D:${gone}:${N}`, 's:-:2']);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    const at = (from: number) => Array.from({ length: N }, (_, i) => BigInt((from + i) * BS));
    const check = (path: string, op: number, offsets: bigint[]) => {
      const rs = of(mine, path, op);
      assert.deepEqual(rs.map((x) => x.offset), offsets, `offsets of op ${op} on ${path}`);
      for (const x of rs) {
        assertFile(x, path, 'tmpfs', tmpfsDir);
        assert.equal(x.ret, BigInt(BS), 'bytes moved');
      }
      return rs;
    };
    check(f('v'), OP.PREADV, at(0));
    check(f('V'), OP.PWRITEV, at(0));
    check(f('u'), OP.PREADV, at(1)); // offset -1: the file position (lseek 4096)
    check(f('U'), OP.PWRITEV, at(0));
    check(f('x'), OP.READV, at(1));
    check(f('X'), OP.WRITEV, at(2));
    for (const x of check(f('S'), OP.PWRITE, at(0))) assert.equal(x.flags & F.SYNC, F.SYNC, 'O_SYNC');
    assert.ok(mine.filter((x) => x.path !== f('S')).every((x) => (x.flags & F.SYNC) === 0), 'O_SYNC only where opened so');
    const del = mine.filter((x) => x.op === OP.PREAD);
    assert.equal(del.length, N, 'the unlinked file\'s reads');
    for (const x of del) {
      assert.equal(x.flags & F.DELETED, F.DELETED, 'flagged deleted');
      assert.equal(x.path, gone, 'its last path (as d_path, without " (deleted)")');
      assert.equal(x.ino, goneStat.ino);
      assert.equal(x.dev, kernelDev(goneStat.dev));
    }
    assert.equal(mine.length, 8 * N, 'nothing else (the socket reads none)');
    assert.deepEqual(res.lost, [0n, 0n, 0n, 0n]);
  });

  it('a memfd (a file of no mount\'s tree): its name as d_path gives it, "/memfd:<name>", not "/"', async (t) => {
    const res = await run(t, ['M:rf-memfd:2']);
    const mine = res.records.filter((x) => x.tgid === res.pid && x.op === OP.PWRITE);
    assert.equal(mine.length, 2, 'the two pwrites');
    for (const x of mine) {
      assert.equal(x.path, '/memfd:rf-memfd');
      assert.equal(x.flags & (F.PATH_CUT | F.PATH_FAILED), 0);
      assert.equal(x.ret, BigInt(BS));
    }
  });

  it('the path as the task sees it: in a chroot, from its root (the walk stops there, mid-mount); in a new mount namespace, the same as outside', async (t) => {
    const jail = join(tmpfsDir, 'jail');
    mkdirSync(jail, { recursive: true });
    copyFileSync(workStatic, join(jail, 'fs_work'));
    chmodSync(join(jail, 'fs_work'), 0o755);
    const inJail = await run(t, ['r:/in-jail.dat:2'], {}, { cmd: 'chroot', args: [jail, '/fs_work'] });
    const jr = inJail.records.filter((x) => x.tgid === inJail.pid);
    assert.deepEqual(jr.map((x) => x.path), ['/in-jail.dat', '/in-jail.dat'], 'the chroot\'s path');
    for (const x of jr) {
      assert.equal(x.mntLen, 1, 'the mount point is outside the chroot: "/"');
      assert.equal(x.ino, statSync(join(jail, 'in-jail.dat'), { bigint: true }).ino);
      assert.equal(x.fsType, 'tmpfs');
      assert.equal(x.flags & (F.PATH_CUT | F.PATH_FAILED), 0);
    }
    const f = join(tmpfsDir, 'ns.dat');
    const inNs = await run(t, [`r:${f}:2`], {}, { cmd: 'unshare', args: ['-m', '--propagation', 'private', work] });
    const nr = inNs.records.filter((x) => x.tgid === inNs.pid);
    assert.equal(nr.length, 2);
    for (const x of nr) assertFile(x, f, 'tmpfs', tmpfsDir);
  });

  it('through a bind mount of a subdirectory: the path the process used (the walk stops at the mount\'s root dentry, not the file system\'s)', async (t) => {
    const src = join(tmpfsDir, 'bind-src', 'inner');
    mkdirSync(src, { recursive: true });
    const target = join(dir, 'bind');
    mkdirSync(target);
    mounted.push(target);
    execFileSync('mount', ['--bind', join(tmpfsDir, 'bind-src'), target]);
    t.after(() => { try { execFileSync('umount', [target], { stdio: 'ignore' }); } catch { /* after() tries again */ } });
    const f = join(target, 'inner', 'b.dat');
    const res = await run(t, [`r:${f}:2`]);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    assert.equal(mine.length, 2);
    for (const x of mine) assertFile(x, f, 'tmpfs', target);
  });

  it('programs attached while a thread is mid-call: no record from an enter whose exit was not yet attached (stale entry)', async (t) => {
    // The loader attaches the programs one by one, in the object's order. With enter_write before exit_write,
    // a write() on a file entered in between left an entry no exit took, and the thread's next socket read
    // exit turned it into a record with the socket's return (1 run in 3). fs.bpf.c defines every exit first.
    const f = join(tmpfsDir, 'attach-race.dat');
    const ROUNDS = 300000;
    const child = await startReady(t, work, ['--now', `L:${f}:${ROUNDS}`]); // already looping when we attach
    const session = new Session();
    t.after(() => session.stop());
    const records: FsRecord[] = [];
    session.addObject(FS_OBJ, encodeSettings({ selfTgid: process.pid, pid: child.child.pid! }));
    session.start((batch) => decode(batch, records));
    const [code] = await child.exited;
    assert.equal(code, 0);
    const lost = session.mapCounters('rf_fs_lost');
    await session.stop();
    const mine = records.filter((x) => x.tgid === child.child.pid);
    t.diagnostic(`records ${mine.length} of ${ROUNDS} rounds; lost ${lost?.join(',')}`);
    assert.ok(mine.length > 0, 'attached while it ran');
    assert.equal(lost?.[1], 0n, 'no entry without its exit: each exit was attached before its enter');
    const bad = mine.filter((x) => x.op !== OP.WRITE || x.ret !== BigInt(BS) || x.path !== f);
    assert.deepEqual(bad.slice(0, 3).map((x) => `op ${x.op} ret ${x.ret} ${x.path} ${x.latencyNs} ns`), [], 'only the file writes, each with its own return');
  });

  it('an entry whose exit was missed (written into rf_fs_inflight) is never taken by another call\'s exit: dropped and counted', async (t) => {
    // what the attach window above leaves, made deterministic: an entry for the child's thread of a read()
    // on fd 12345 (never open); the child's one pipe read() exits with it in the map
    const child = await startReady(t, work, ['p:-:1']);
    const session = new Session();
    t.after(() => session.stop());
    const records: FsRecord[] = [];
    const before = new Set(mapsNamed('rf_fs_inflight').map((m) => m.id));
    session.addObject(FS_OBJ, encodeSettings({ selfTgid: process.pid, pid: child.child.pid! }));
    session.start((batch) => decode(batch, records));
    const ours = mapsNamed('rf_fs_inflight').filter((m) => !before.has(m.id));
    assert.equal(ours.length, 1, 'our rf_fs_inflight');
    // struct rf_fs_inflight: enter_ns, file, offset, len, nvcsw, read_bytes (u64 each), fd u32, nr s32, op u8
    const value = Buffer.alloc(ours[0]!.bytes_value);
    value.writeBigUInt64LE(1n, 0); // entered long ago
    value.writeUInt32LE(12345, 48);
    if (value.length >= 64) value.writeInt32LE(process.arch === 'arm64' ? 63 : 0, 52); // read's number
    const key = Buffer.alloc(4);
    key.writeUInt32LE(child.child.pid!);
    execFileSync('bpftool', ['map', 'update', 'id', String(ours[0]!.id), 'key', 'hex', ...[...key].map(hex2), 'value', 'hex', ...[...value].map(hex2)]);
    child.child.stdin!.end('g');
    const [code] = await child.exited;
    assert.equal(code, 0);
    const lost = session.mapCounters('rf_fs_lost');
    await session.stop();
    const mine = records.filter((x) => x.tgid === child.child.pid);
    assert.deepEqual(mine.map((x) => `op ${x.op} ret ${x.ret} fd ${x.fd}`), [], 'no record from the stale entry');
    assert.equal(lost?.[1], 1n, 'counted: rf_fs_lost[RF_FS_LOST_UNFINISHED]');
  });

  it('a path deeper than the walk\'s bound: PATH_CUT, its last components kept, the dropped ones counted', async (t) => {
    const deep = join(tmpfsDir, ...Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(2, '0')}`));
    mkdirSync(deep, { recursive: true });
    const f = join(deep, 'f.dat');
    // and a bytes bound: 4 components of 200 bytes are past 512
    const long = join(tmpfsDir, ...Array.from({ length: 4 }, (_, i) => `${i}`.repeat(200)));
    mkdirSync(long, { recursive: true });
    const g = join(long, 'g.dat');
    const res = await run(t, [`r:${f}:1`, `r:${g}:1`]);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    assert.equal(mine.length, 2, mine.map((x) => x.path).join(' '));
    for (const [x, abs] of [[mine[0]!, f], [mine[1]!, g]] as const) {
      const want = expectedCut(abs);
      assert.ok(want.dropped > 0, 'the test path is past a bound');
      assert.equal(x.path, want.path, 'the last components');
      assert.equal(x.flags & F.PATH_CUT, F.PATH_CUT, 'flagged cut');
      assert.equal(x.pathDropped, want.dropped, 'components dropped at the front');
      assert.equal(x.mntLen, 0, 'mount point cut away');
      assert.equal(x.fsType, 'tmpfs');
      assert.equal(x.ino, statSync(abs, { bigint: true }).ino);
    }
    // a lower bound from the collector: 4 components
    const res4 = await run(t, [`r:${f}:1`], { rf_fs_path_depth: u32(4) });
    const cut = res4.records.filter((x) => x.tgid === res4.pid);
    assert.deepEqual(cut.map((x) => x.path), [expectedCut(f, 4).path]);
  });

  it('FUSE with a known delay (slowfuse: 40 ms in each READ and FSYNC): the latencies contain it, fs type fuse', async (t) => {
    const N = 3;
    const DELAY_MS = 40;
    const fuseDir = join(dir, 'fuse');
    mkdirSync(fuseDir);
    mounted.push(fuseDir); // after() unmounts it if this test could not
    await startReady(t, slowfuse, [fuseDir, String(DELAY_MS)]);
    t.after(() => { try { execFileSync('umount', [fuseDir], { stdio: 'ignore' }); } catch { /* after() tries again, lazily */ } });
    const file = join(fuseDir, 'slow.dat');
    const res = await run(t, [`F:${file}:${N}`]);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    const reads = of(mine, file, OP.PREAD);
    const syncs = of(mine, file, OP.FSYNC);
    t.diagnostic(`fuse latencies (ms): pread ${reads.map((x) => (Number(x.latencyNs) / 1e6).toFixed(1)).join(',')}; fsync ${syncs.map((x) => (Number(x.latencyNs) / 1e6).toFixed(1)).join(',')}`);
    assert.equal(reads.length, N, 'N pread records');
    assert.equal(syncs.length, N, 'N fsync records');
    assert.equal(mine.length, 2 * N, 'nothing else');
    reads.forEach((x, i) => {
      assertFile(x, file, 'fuse', fuseDir);
      assert.equal(x.offset, BigInt(i * BS));
      assert.equal(x.ret, BigInt(BS));
      assert.equal(x.cache, CACHE.BLOCKED_OTHER, 'slept, and not on a block device');
      assert.equal(x.storageBytes, 0n);
    });
    for (const x of syncs) {
      assertFile(x, file, 'fuse', fuseDir);
      assert.equal(x.ret, 0n);
    }
    for (const x of [...reads, ...syncs]) assert.ok(x.latencyNs >= BigInt(DELAY_MS * 1e6), `latency ${x.latencyNs} ns contains the server's ${DELAY_MS} ms`);
  });

  it('ext4 loop image: N pwrite+fsync, M cached preads, K O_DIRECT preads (BLOCKED_IO, storage bytes) -> exactly those records', async (t) => {
    const N = 4;
    const M = 6;
    const K = 5;
    const w = join(ext4Dir, 'w.dat');
    const r = join(ext4Dir, 'r.dat');
    const d = join(ext4Dir, 'dir', 'd.dat');
    mkdirSync(join(ext4Dir, 'dir'), { recursive: true });
    const res = await run(t, [`w:${w}:${N}`, `r:${r}:${M}`, `d:${d}:${K}`, 's:-:2', 'p:-:2']);
    const mine = res.records.filter((x) => x.tgid === res.pid);
    const pw = of(mine, w, OP.PWRITE);
    const fs = of(mine, w, OP.FSYNC);
    const pr = of(mine, r, OP.PREAD);
    const dr = of(mine, d, OP.PREAD);
    assert.equal(pw.length, N, 'N pwrite records');
    assert.equal(fs.length, N, 'N fsync records');
    assert.equal(pr.length, M, 'M cached pread records');
    assert.equal(dr.length, K, 'K direct pread records');
    assert.equal(mine.length, N + N + M + K, 'nothing else');
    pw.forEach((x, i) => {
      assertFile(x, w, 'ext4', ext4Dir);
      assert.equal(x.offset, BigInt(i * BS));
      assert.equal(x.ret, BigInt(BS));
    });
    for (const x of fs) {
      assertFile(x, w, 'ext4', ext4Dir);
      assert.equal(x.ret, 0n);
    }
    pr.forEach((x, i) => {
      assertFile(x, r, 'ext4', ext4Dir);
      assert.equal(x.offset, BigInt(i * BS));
      assert.equal(x.ret, BigInt(BS));
      assert.equal(x.cache, CACHE.CACHED, 'served from the page cache');
      assert.equal(x.storageBytes, 0n);
      assert.equal(x.flags & F.DIRECT, 0);
    });
    dr.forEach((x, i) => {
      assertFile(x, d, 'ext4', ext4Dir);
      assert.equal(x.offset, BigInt(i * BS));
      assert.equal(x.ret, BigInt(BS));
      assert.equal(x.flags & F.DIRECT, F.DIRECT, 'O_DIRECT');
      assert.equal(x.cache, CACHE.BLOCKED_IO, 'read from storage');
      assert.ok(x.storageBytes > 0n, `storage bytes ${x.storageBytes}`);
    });
    t.diagnostic(`ext4 latencies (us): fsync ${fs.map((x) => Number(x.latencyNs / 1000n)).join(',')}; direct ${dr.map((x) => Number(x.latencyNs / 1000n)).join(',')}; cached ${pr.map((x) => Number(x.latencyNs / 1000n)).join(',')}`);
    assert.deepEqual(res.lost, [0n, 0n, 0n, 0n], 'nothing lost in the kernel');
    assert.equal(res.drops, 0n);
  });
  it('BPF run time per kept call (cached pread on tmpfs) and per rejected one (socket read), from bpf_stats: printed, not asserted', async (t) => {
    const CALLS = 5000; // 20 MiB of tmpfs for the reads
    const hold = await startReady(t, statsHold, []); // BPF_ENABLE_STATS while it runs (the kernel counts holders)
    t.after(() => hold.child.stdin!.end());
    const f = join(tmpfsDir, 'stats.dat');
    const kept = await run(t, [`r:${f}:${CALLS}`]);
    const rejected = await run(t, [`s:-:${CALLS}`]);
    assert.equal(kept.records.filter((x) => x.tgid === kept.pid).length, CALLS, 'every kept call reported');
    assert.equal(rejected.records.filter((x) => x.tgid === rejected.pid).length, 0, 'no socket read reported');
    // the hooks run for every process's calls: the host's others (rejected by the pid filter, cheaply) are in these sums too
    const line = (label: string, progs: Map<string, { cnt: bigint; ns: bigint }>, enter: string, exit: string) => {
      const e = progs.get(enter) ?? { cnt: 0n, ns: 0n };
      const x = progs.get(exit) ?? { cnt: 0n, ns: 0n };
      const per = (p: { cnt: bigint; ns: bigint }) => (p.cnt ? Number(p.ns / p.cnt) : NaN);
      t.diagnostic(`${label}: enter ${per(e)} ns/run (${e.cnt} runs), exit ${per(x)} ns/run (${x.cnt} runs); ` +
        `(enter + exit) / the child's ${CALLS} calls = ${Number((e.ns + x.ns) / BigInt(CALLS))} ns`);
    };
    line('kept (pread64 on tmpfs, record + path walk)', kept.progs, 'rf_fs_enter_pread64', 'rf_fs_exit_pread64');
    line('rejected (read on a socket: S_ISREG gate)', rejected.progs, 'rf_fs_enter_read', 'rf_fs_exit_read');
  });
});
