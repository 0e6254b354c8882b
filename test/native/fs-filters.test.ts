/**
 * The fs signal's in-kernel filters (docs/design/fs.md section 5) against the
 * real kernel (root): bpf/fs.bpf.o loaded with the globals the collector
 * writes, a child (test/native/fs/fs_work.c) doing known file work, and
 * slowfuse (test/native/fs/slowfuse.c: 40 ms in each READ and FSYNC) for
 * calls slow by construction.
 *
 *  --min-latency: calls under it are not emitted, and are counted per op in
 *  rf_fs_below (so the fast ones are never silent).
 *  --fs TYPE: by s_type->name (tmpfs vs an ext4 loop image).
 *  --path DIR: files whose dentry has DIR's inode as an ancestor, however
 *  they were reached (a symlinked prefix, a bind mount of the prefix or of a
 *  subdirectory of it, a path relative to the working directory).
 *
 * Records are decoded by offset only as far as the filters need (the whole
 * layout is pinned by test/native/fs.test.ts).
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from '../../native/index.ts';
import { encodeSettings, type LoadSettings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { FS_MAX_PREFIXES, FS_MAX_TYPES, encodeFsFilterSettings, parseFsTypes, resolveFsPrefixes } from '../../collector/signals/fs-filter.ts';
import { ROOT, startReady } from './helpers.ts';
import { decodeFsRecords as decode, type FsRecord } from './fs/records.ts';
import { buildFsProgram, makeFsScratch, unmountAll, type FsScratch } from './fs/scratch.ts';

const FS_OBJ = join(process.env.RINGFLOW_BPF_DIR ?? `${ROOT}bpf/.output`, 'fs.bpf.o');
const OP = { READ: 0, WRITE: 1, PREAD: 2, PWRITE: 3, FSYNC: 8 } as const;

type Rec = FsRecord;

let dir = '';
let work = '';
let slowfuse = '';
let statsHold = '';
let tmpfsDir = '';
let ext4Dir = '';
let mounted: string[] = [];
let scratch: FsScratch | null = null;

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  scratch = makeFsScratch('/var/tmp/ringflow-fsf-', 'ringflow-fsf-test', 16, 32);
  ({ dir, tmpfsDir, ext4Dir, mounted } = scratch);
  work = buildFsProgram(ROOT, scratch, 'fs_work.c', 'fs_work');
  slowfuse = buildFsProgram(ROOT, scratch, 'slowfuse.c', 'slowfuse');
  statsHold = buildFsProgram(ROOT, scratch, 'bpf_stats_hold.c', 'bpf_stats_hold');
});

after(() => unmountAll(scratch));

/** fs_work's jobs under the object loaded with these settings (pid: the child's) and extra globals: the child's records and rf_fs_below. */
async function run(t: TestContext, jobs: string[], settings: Partial<LoadSettings> = {}, globals: Record<string, Buffer> = {}, cwd?: string) {
  const child = await startReady(t, work, jobs, cwd ? { cwd } : {});
  const session = new Session();
  t.after(() => session.stop());
  const records: Rec[] = [];
  const before = new Set(runStats(new Set()).keys());
  session.addObject(FS_OBJ, { ...encodeSettings({ selfTgid: process.pid, pid: child.child.pid!, ...settings }), ...globals });
  session.start((batch) => decode(batch, records));
  const start = runStats(before);
  child.child.stdin!.end('g');
  const [code] = await child.exited;
  assert.equal(code, 0, 'fs_work did its jobs');
  const end = runStats(before);
  const below = session.mapCounters('rf_fs_below');
  await session.stop();
  /** run_cnt and run_time_ns of this session's programs over the jobs, summed (0 unless BPF statistics are on) */
  let cnt = 0n;
  let ns = 0n;
  for (const [id, s0] of start) {
    cnt += end.get(id)!.cnt - s0.cnt;
    ns += end.get(id)!.ns - s0.ns;
  }
  return { pid: child.child.pid!, records: records.filter((r) => r.tgid === child.child.pid), below, cnt, ns };
}

/** run_cnt and run_time_ns of every BPF program fd this process holds, but those in `old`, by program id. */
function runStats(old: Set<number>): Map<number, { cnt: bigint; ns: bigint }> {
  const out = new Map<number, { cnt: bigint; ns: bigint }>();
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info = '';
    try { info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'); } catch { continue; }
    const id = /^prog_id:\s+(\d+)$/m.exec(info);
    const cnt = /^run_cnt:\s+(\d+)$/m.exec(info);
    const ns = /^run_time_ns:\s+(\d+)$/m.exec(info);
    if (id && cnt && ns && !old.has(Number(id[1]))) out.set(Number(id[1]), { cnt: BigInt(cnt[1]!), ns: BigInt(ns[1]!) });
  }
  return out;
}

async function mountSlowfuse(t: TestContext, delayMs: number): Promise<string> {
  const fuseDir = join(dir, `fuse-${mounted.length}`);
  mkdirSync(fuseDir);
  mounted.push(fuseDir);
  await startReady(t, slowfuse, [fuseDir, String(delayMs)]);
  t.after(() => { try { execFileSync('umount', [fuseDir], { stdio: 'ignore' }); } catch { /* after() tries again */ } });
  return fuseDir;
}

describe('fs.bpf.o filters on the real kernel', { skip: process.getuid?.() !== 0 ? 'needs root (loads BPF programs, mounts)' : false }, () => {
  it('--min-latency 10ms: only the slow calls (FUSE, 40 ms) come; the fast cached preads are counted per op in rf_fs_below', async (t) => {
    const N = 3;
    const M = 20;
    const fuseDir = await mountSlowfuse(t, 40);
    const slow = join(fuseDir, 'slow.dat');
    const fast = join(tmpfsDir, 'fast.dat');
    const res = await run(t, [`r:${fast}:${M}`, `F:${slow}:${N}`], { minLatencyNs: 10_000_000n });
    assert.deepEqual(res.records.map((r) => `${r.op} ${r.path}`).sort(),
      [...Array(N).fill(`${OP.PREAD} ${slow}`), ...Array(N).fill(`${OP.FSYNC} ${slow}`)].sort(), 'only the FUSE calls');
    for (const r of res.records) assert.ok(r.latencyNs >= 10_000_000n, `latency ${r.latencyNs} ns is over the threshold`);
    assert.ok(res.below, 'the object has rf_fs_below');
    assert.equal(res.below[OP.PREAD], BigInt(M), 'the M fast preads counted as under the threshold');
    assert.equal(res.below.reduce((a, b) => a + b, 0n), BigInt(M), 'nothing else was under it');

    const all = await run(t, [`r:${fast}:${M}`], {});
    assert.equal(all.records.length, M, 'without the threshold, every call comes');
    assert.equal(all.below!.reduce((a, b) => a + b, 0n), 0n, 'and none is counted under it');
  });

  it('--fs: only the file systems named (s_type->name): ext4 alone, tmpfs and ext4, a type with no file none', async (t) => {
    const M = 3;
    const onTmpfs = join(tmpfsDir, 'type.dat');
    const onExt4 = join(ext4Dir, 'type.dat');
    const jobs = [`r:${onTmpfs}:${M}`, `r:${onExt4}:${M}`];
    const paths = async (types: string[]) => (await run(t, jobs, {}, encodeFsFilterSettings({ types: parseFsTypes(types) }))).records.map((r) => `${r.fsType} ${r.path}`).sort();
    assert.deepEqual(await paths(['ext4']), Array(M).fill(`ext4 ${onExt4}`));
    assert.deepEqual(await paths(['tmpfs', 'ext4']), [...Array(M).fill(`ext4 ${onExt4}`), ...Array(M).fill(`tmpfs ${onTmpfs}`)]);
    assert.deepEqual(await paths(['xfs']), []);
    assert.equal((await run(t, jobs)).records.length, 2 * M, 'no --fs: both');
  });

  it('--path: files under two prefixes (one given through a symlink) are kept, however reached (bind mount of the prefix, of a subdirectory, a relative path); the others not', async (t) => {
    const base = join(tmpfsDir, 'paths');
    for (const d of ['a/in/deep', 'b', 'out', 'ab']) mkdirSync(join(base, d), { recursive: true });
    const link = join(dir, 'link-to-a');
    symlinkSync(join(base, 'a'), link);
    const bindB = join(dir, 'bind-b');
    const bindSub = join(dir, 'bind-a-in');
    for (const [src, dst] of [[join(base, 'b'), bindB], [join(base, 'a', 'in'), bindSub]] as const) {
      mkdirSync(dst);
      execFileSync('mount', ['--bind', src, dst]);
      mounted.push(dst);
      t.after(() => { try { execFileSync('umount', [dst], { stdio: 'ignore' }); } catch { /* after() tries again */ } });
    }
    const kept = [join(base, 'a', 'f1'), join(base, 'a', 'in', 'deep', 'f2'), join(base, 'b', 'f3'), join(bindB, 'f4'), join(bindSub, 'f5'), join(ext4Dir, 'lost+found', 'f6')];
    const dropped = [join(base, 'out', 'g1'), join(base, 'ab', 'g2'), join(base, 'g3'), join(dir, 'g5')]; // ext4Dir: a prefix that is a mount point (the mounted root's inode);
    const prefixes = resolveFsPrefixes([link, join(base, 'b'), ext4Dir]);
    assert.equal(prefixes[0]!.path, join(base, 'a'), 'the symlink resolved at start');
    const res = await run(t, [...kept, ...dropped].map((f) => `r:${f}:1`).concat(['r:rel.dat:1']), {}, encodeFsFilterSettings({ prefixes }), join(base, 'b'));
    assert.deepEqual(res.records.map((r) => r.path).sort(), [...kept, join(base, 'b', 'rel.dat')].sort(), 'the files under a prefix, by the path the process used');

    const all = await run(t, [...kept, ...dropped].map((f) => `r:${f}:1`));
    assert.equal(all.records.length, kept.length + dropped.length, 'no --path: every file');
  });

  it('every filter at its maximum (64 prefixes, 8 types, a threshold): every program verifies under a quarter of the 1 M limit', async (t) => {
    // verifier-budget.test.ts loads the object without --fs/--path: their code is dead there (const volatile 0)
    const insns = () => new Map(readdirSync('/proc/self/fdinfo').flatMap((fd) => {
      let info = '';
      try { info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'); } catch { return []; }
      const id = /^prog_id:\s+(\d+)$/m.exec(info);
      const n = /^verified_insns:\s+(\d+)$/m.exec(info);
      return id && n ? [[Number(id[1]), Number(n[1])] as const] : [];
    }));
    const before = new Set(insns().keys());
    const session = new Session();
    t.after(() => session.stop());
    const prefixes = Array.from({ length: FS_MAX_PREFIXES }, (_, i) => ({ given: `/p${i}`, path: `/p${i}`, dev: i + 1, ino: BigInt(i + 100) }));
    const types = Array.from({ length: FS_MAX_TYPES }, (_, i) => `type${i}`);
    session.addObject(FS_OBJ, { ...encodeSettings({ selfTgid: process.pid, pid: 1, minLatencyNs: 1000n }), ...encodeFsFilterSettings({ types, prefixes }) });
    const mine = [...insns()].filter(([id]) => !before.has(id));
    t.diagnostic(`fs.bpf.o, filters at max: verified_insns ${mine.map(([, n]) => n).join(',')}`);
    assert.ok(mine.length >= 24, `the 24 fs programs loaded (${mine.length})`);
    for (const [id, n] of mine) assert.ok(n < 250_000, `program ${id}: ${n} verified insns`);
  });

  it('BPF run time per call with --path (64 prefixes: one matching, or none: the whole ancestry walked) and --fs, against none: printed, not asserted', async (t) => {
    const CALLS = 3000;
    const hold = await startReady(t, statsHold, []); // BPF_ENABLE_STATS while it runs
    t.after(() => hold.child.stdin!.end());
    const deep = join(tmpfsDir, 'cost', 'a', 'b', 'c');
    mkdirSync(deep, { recursive: true });
    const f = join(deep, 'cost.dat');
    const fake = Array.from({ length: FS_MAX_PREFIXES - 1 }, (_, i) => ({ given: `/p${i}`, path: `/p${i}`, dev: 0xfff00000 + i, ino: BigInt(i + 1) }));
    const cases: [string, Record<string, Buffer>, number][] = [
      ['no fs filter', {}, CALLS],
      ['--fs tmpfs (8 names)', encodeFsFilterSettings({ types: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'tmpfs'] }), CALLS],
      ['--path: 64 prefixes, the last the tmpfs mount', encodeFsFilterSettings({ prefixes: [...fake, ...resolveFsPrefixes([tmpfsDir])] }), CALLS],
      ['--path: 64 prefixes, none an ancestor', encodeFsFilterSettings({ prefixes: [...fake, ...resolveFsPrefixes([join(tmpfsDir, 'elsewhere-' + Date.now())].map((d) => (mkdirSync(d), d)))] }), 0],
    ];
    for (const [label, globals, want] of cases) {
      const r = await run(t, [`r:${f}:${CALLS}`], {}, globals);
      assert.equal(r.records.length, want, label);
      t.diagnostic(`${label}: ${r.cnt ? Number(r.ns / BigInt(CALLS)) : NaN} ns of BPF per call of the child (enter + exit; the host's other calls, rejected by --pid, are in the sum too; depth of ${f})`);
    }
  });
});
