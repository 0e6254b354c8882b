/**
 * bpf/offcpu.bpf.c walks a blocked task's stacks only once its block has
 * turned out to last --offcpu-min (rf_offcpu_back, tp_btf/sched_exit_tp, in
 * the task's own context), not at every switch-out: a pipe ping-pong (a switch
 * per hop, each block a few microseconds) with a minimum no block reaches
 * leaves the stack maps empty. Before, every switch-out walked its user and
 * kernel stacks into them, whatever the block lasted (the ping-pong ran at
 * 0.3-0.5x). That blocks past the minimum keep their stacks and times is
 * test/native/profile.test.ts's off-CPU cases.
 *
 * The stack maps are this session's own, found by map id from this
 * process's fds (another test's or helper's collector has maps of the same
 * names).
 *
 * A block is pending in task-local storage from switch-out to its end: 18000
 * threads blocked at once are all counted (an LRU hash of 16384 entries,
 * before, dropped the oldest pending blocks unseen). ~150 MB.
 *
 * On a kernel without sched_exit_tp (before 6.16) rf_offcpu_back is left out
 * and every switch-out walks its stacks, the block counted at switch-in: that
 * path runs here from a build without the program (-DRF_OFFCPU_NO_BACK).
 * ~10 s in all.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Session } from '../../native/index.ts';
import { encodeProfileSettings, encodeSettings } from '../../collector/signals/settings.ts';
import { decodeProfileDrain } from '../../collector/profile/drain.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { ROOT } from './helpers.ts';

// RINGFLOW_BPF_DIR runs it against another build (as the collector would load it)
const OFFCPU_OBJ = objectPath('offcpu');
let bin = '';
let many = '';
let noBack = '';

before(() => {
  if (!existsSync(OFFCPU_OBJ)) execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  const dir = mkdtempSync(path.join(tmpdir(), 'rf-offcpu-lazy-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  bin = path.join(dir, 'profile-work');
  execFileSync('cc', ['-O2', '-fno-omit-frame-pointer', '-o', bin, `${ROOT}test/bench/profile-work.c`]);
  many = path.join(dir, 'offcpu_many');
  execFileSync('cc', ['-O2', '-pthread', '-o', many, `${ROOT}test/fixtures/profile/offcpu_many.c`]);
  // the flags of bpf/Makefile, and the macro that leaves rf_offcpu_back out
  const arch = ({ x64: 'x86', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;
  noBack = path.join(dir, 'offcpu-no-back.bpf.o');
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', `-D__TARGET_ARCH_${arch}`, '-DRF_OFFCPU_NO_BACK', `-I${ROOT}bpf`, '-Wall', '-Werror',
    '-c', `${ROOT}bpf/offcpu.bpf.c`, '-o', noBack]);
});

/** Map ids of the BPF maps this process holds an fd of. */
function ownMapIds(): Set<number> {
  const ids = new Set<number>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== 'anon_inode:bpf-map') continue;
      const id = /^map_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (id) ids.add(Number(id));
    } catch {
      // an fd closed meanwhile: not one of the session's maps
    }
  }
  return ids;
}

/** Entries of each of this process's maps whose name starts with `prefix` (bpftool: the kernel keeps 15 characters of a name). */
function entriesByMap(prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const id of ownMapIds()) {
    const info = JSON.parse(execFileSync('bpftool', ['map', 'show', 'id', String(id), '-j'], { encoding: 'utf8' })) as { name?: string };
    if (!info.name?.startsWith(prefix)) continue;
    const dump = JSON.parse(execFileSync('bpftool', ['map', 'dump', 'id', String(id), '-j'], { encoding: 'utf8' })) as unknown[];
    out.set(`${info.name} (id ${id})`, dump.length);
  }
  return out;
}

test('off-CPU: a pipe ping-pong whose blocks never reach --offcpu-min walks no stack (the stack maps stay empty), counts nothing', async () => {
  const child = spawn(bin, ['pingpong', '1'], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, PROFILE_WORK_PARK: '1' } });
  await once(child, 'spawn');
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const session = new Session({ ringBytes: 1 << 16 });
  try {
    // a minimum no hop of the ping-pong reaches, however loaded the machine (a preempted hop waits for a CPU)
    session.addObject(OFFCPU_OBJ, { ...encodeSettings({ selfTgid: process.pid, pid: child.pid! }), ...encodeProfileSettings({ offcpuMinNs: 60_000_000_000n }, true) });
    child.stdin!.end('g');
    const [code] = await exited;
    assert.equal(code, 0);
    const trips = (JSON.parse(out.trim()) as { work: number }).work;
    assert.ok(trips >= 1000, `the ping-pong made ${trips} round trips: a switch-out each way`);
    const stacks = entriesByMap('rf_offcpu_stack');
    assert.equal(stacks.size, 3, `the session's three stack maps found: ${JSON.stringify([...stacks])}`);
    assert.deepEqual([...stacks.values()], [0, 0, 0], `no stack walked for ${trips} round trips of short blocks: ${JSON.stringify([...stacks])}`);
    assert.equal(decodeProfileDrain(session.profileDrain('rf_offcpu')).counts.length, 0, 'no block counted');
  } finally {
    child.kill('SIGKILL');
    await session.stop();
  }
});

test('off-CPU: 18000 threads blocked at once each have their block counted, none dropped for room (per thread, state S, at least the hold)', async () => {
  const threads = 18_000;
  // woken 1000 at a time every 150 ms while this test drains every 100 ms: no drain holds more than a few batches' per-thread keys
  const child = spawn(many, [String(threads), '300', '1000', '150'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(child, 'spawn');
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let done = false;
  const exited = once(child, 'exit').then(([code]) => { done = true; return code as number | null; });
  const session = new Session({ ringBytes: 1 << 16 });
  const slept = new Map<number, bigint>();
  let lost: bigint[] = [];
  const drain = () => {
    for (const c of decodeProfileDrain(session.profileDrain('rf_offcpu')).counts) {
      if (c.tgid === child.pid && c.state === 'SLEEPING') slept.set(c.pid, (slept.get(c.pid) ?? 0n) + c.value);
    }
  };
  try {
    session.addObject(OFFCPU_OBJ, { ...encodeSettings({ selfTgid: process.pid, pid: child.pid! }), ...encodeProfileSettings({ offcpuMinNs: 1_000_000n, perThread: true }, true) });
    child.stdin!.end('g');
    while (!done) {
      await new Promise((r) => setTimeout(r, 100));
      drain();
    }
    assert.equal(await exited, 0);
    drain();
    drain(); // the slot the last drain flipped to
    lost = session.mapCounters('rf_offcpu_lost') ?? [];
  } finally {
    child.kill('SIGKILL');
    await session.stop();
  }
  const f = new Map(out.trim().split('\n').map((l) => l.split(' ') as [string, string]));
  assert.equal(Number(f.get('threads')), threads);
  const holdNs = BigInt(f.get('hold_ns')!);
  assert.ok(holdNs >= 300_000_000n, `the hold lasted ${holdNs} ns`);
  assert.equal(lost[3] ?? 0n, 0n, 'no count lost for room in the counts map (counts_full): the test drains too seldom');
  // every thread blocked before the hold began and was woken after it ended (the main thread is one more)
  const counted = [...slept.values()].filter((ns) => ns * 100n >= holdNs * 95n).length;
  assert.ok(counted >= threads, `${counted} of ${threads} threads have at least the hold (${Number(holdNs) / 1e6} ms) of S time`);
});

test('off-CPU without sched_exit_tp (rf_offcpu_back left out): switch-outs walk their stacks and each blocked thread is counted at switch-in, with its kernel stack', async () => {
  const threads = 50;
  const child = spawn(many, [String(threads), '300'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(child, 'spawn');
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const session = new Session({ ringBytes: 1 << 16 });
  const slept = new Map<number, bigint>();
  let programs: string[] = [];
  try {
    const info = session.addObject(noBack, { ...encodeSettings({ selfTgid: process.pid, pid: child.pid! }), ...encodeProfileSettings({ offcpuMinNs: 1_000_000n, perThread: true }, true) });
    programs = info.programs;
    child.stdin!.end('g');
    const [code] = await exited;
    assert.equal(code, 0);
    for (const c of decodeProfileDrain(session.profileDrain('rf_offcpu')).counts) {
      // the futex wait's block: S, with the kernel stack walked at its switch-out
      if (c.tgid === child.pid && c.state === 'SLEEPING' && c.kernel.status === 'ok') slept.set(c.pid, (slept.get(c.pid) ?? 0n) + c.value);
    }
  } finally {
    child.kill('SIGKILL');
    await session.stop();
  }
  assert.deepEqual(programs, ['rf_offcpu_switch'], 'the build has no rf_offcpu_back');
  const holdNs = BigInt(new Map(out.trim().split('\n').map((l) => l.split(' ') as [string, string])).get('hold_ns')!);
  const counted = [...slept.values()].filter((ns) => ns * 100n >= holdNs * 95n).length;
  assert.ok(counted >= threads, `${counted} of ${threads} threads have at least the hold (${Number(holdNs) / 1e6} ms) of S time under a kernel stack`);
});
