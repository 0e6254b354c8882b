/**
 * `ringflow profile` on the real kernel, through bin/ringflow as a user runs
 * it, read by real tools (go tool pprof, an XML parser, perf):
 *
 * - spin.c (test/fixtures/profile, built here -O0 -fno-omit-frame-pointer)
 *   spins in spin_a and spin_b 3:1 by construction. --format folded at 499 Hz,
 *   3 s runs until 1200 samples: spin_a's share is 75 % +- 5 points. In the
 *   same runs `perf record -F 499 -g` samples the same process: the difference
 *   is printed, not asserted: the 3 points are not stable on 2 shared
 *   cores at load 5 (seen: -1.1 to +1.6 points in most runs of 250-500
 *   samples, but -8.3 twice, and -10.5 and +16.4 at ~80 samples, perf's own
 *   share ranging 67-83 %).
 * - --format pprof: `go tool pprof -top` lists spin_a and spin_b, and -raw
 *   has no sample of the profiler's own pid (run without --pid, so only
 *   rf_self_tgid keeps it out while it symbolises the whole host).
 * - --format svg: Python's xml.etree parses it; both names are in it.
 * - a Node.js program (fixtures/profile/hot.js, --perf-basic-prof, inlining
 *   off as in profile.test.ts) with hotA called 3x per hotB: both named as
 *   JIT frames; in pprof with their script and line.
 * - --offcpu: block.c's known sleeps and pipe wait, in microseconds.
 * - SIGINT ends a run early and the profile is still written.
 * ~35 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers.ts';

const run = promisify(execFile);
const RINGFLOW = `${ROOT}bin/ringflow`;
const FIXTURES = `${ROOT}test/fixtures/profile`;
let dir = '';
const children: ChildProcess[] = [];

before(() => {
  if (!existsSync(`${ROOT}bpf/.output/profile.bpf.o`)) execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  dir = mkdtempSync(path.join(tmpdir(), 'rf-profile-cli-'));
  execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-o', path.join(dir, 'spin'), path.join(FIXTURES, 'spin.c')]);
});

after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A fixture spinning from now on for `secs` (it waits for a byte on stdin). */
async function spinning(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<ChildProcess & { pid: number }> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'inherit'], cwd: opts.cwd ?? dir });
  children.push(child);
  await once(child, 'spawn');
  child.stdin!.end('g');
  return child as ChildProcess & { pid: number };
}

/** bin/ringflow profile ARGS; stderr kept for the failure message. */
async function profile(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(RINGFLOW, ['profile', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** Per-function counts of folded lines whose stack holds the function (spin_a and spin_b never nest). */
function foldedCounts(text: string, names: readonly string[]): Map<string, number> {
  const m = new Map(names.map((n) => [n, 0]));
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const sp = line.lastIndexOf(' ');
    assert.ok(sp > 0 && /^\d+$/.test(line.slice(sp + 1)), `folded line: ${line}`);
    const frames = line.slice(0, sp).split(';');
    for (const n of names) if (frames.includes(n)) m.set(n, m.get(n)! + Number(line.slice(sp + 1)));
  }
  return m;
}

/** perf script's stacks: counts of samples whose stack holds each function. */
function perfCounts(text: string, names: readonly string[]): Map<string, number> {
  const m = new Map(names.map((n) => [n, 0]));
  for (const block of text.split(/\n\s*\n/)) {
    const syms = new Set(block.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[1]?.replace(/\+0x[0-9a-f]+$/, '')));
    for (const n of names) if (syms.has(n)) m.set(n, m.get(n)! + 1);
  }
  return m;
}

const share = (m: Map<string, number>, a: string, b: string) => (100 * m.get(a)!) / (m.get(a)! + m.get(b)!);

/**
 * The share of a 3:1 split measured from n samples is binomial: one
 * standard deviation is 100 * sqrt(0.75 * 0.25 / n) points. A CI run at 99
 * Hz took one 3 s run of ~290 samples (sd 2.5) and read 68.8 %, 2.5 sd off:
 * +-5 at that n fails about 1 run in 80. At 499 Hz runs of 3 s repeat until
 * 1200 samples are in (sd 1.25: +-5 is 4 sd), up to 6 runs when other jobs
 * hold these 2 cores; the shares are of the sum.
 */
const HZ = '499';
const MIN_SAMPLES = 1200;

test('ringflow profile --format folded: spin_a 3:1 spin_b within 5 points; perf record -F 499 -g on the same runs (the figure printed)', async () => {
  const spin = await spinning(path.join(dir, 'spin'), ['60']);
  const c = new Map([['spin_a', 0], ['spin_b', 0]]);
  const p = new Map([['spin_a', 0], ['spin_b', 0]]);
  const perRun: string[] = [];
  for (let i = 0; i < 6 && c.get('spin_a')! + c.get('spin_b')! < MIN_SAMPLES; i++) {
    const perfData = path.join(dir, `perf${i}.data`);
    const ours = profile(['--pid', String(spin.pid), '--duration', '3s', '--hz', HZ, '--format', 'folded']);
    const perf = run('perf', ['record', '-F', HZ, '-g', '-e', 'cpu-clock', '-p', String(spin.pid), '-o', perfData, '--', 'sleep', '3'], { encoding: 'utf8' });
    const [{ stdout, stderr }] = await Promise.all([ours, perf]);
    // every line starts with the process's comm, and the lines are sorted
    const lines = stdout.trim().split('\n');
    assert.ok(lines.every((l) => l.startsWith('spin;')), `${stderr}\n${stdout}`);
    assert.deepEqual([...lines].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)), lines);
    const one = foldedCounts(stdout, ['spin_a', 'spin_b']);
    const script = execFileSync('perf', ['script', '-i', perfData, '-F', 'comm,ip,sym'], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
    const po = perfCounts(script, ['spin_a', 'spin_b']);
    for (const n of ['spin_a', 'spin_b']) {
      c.set(n, c.get(n)! + one.get(n)!);
      p.set(n, p.get(n)! + po.get(n)!);
    }
    perRun.push(`${share(one, 'spin_a', 'spin_b').toFixed(1)}/${share(po, 'spin_a', 'spin_b').toFixed(1)}`);
    if (/not counted by the kernel/.test(stderr)) console.log(`# ${stderr.trim().split('\n').at(-1)}`);
  }
  const total = c.get('spin_a')! + c.get('spin_b')!;
  const ptotal = p.get('spin_a')! + p.get('spin_b')!;
  const s = share(c, 'spin_a', 'spin_b');
  const ps = share(p, 'spin_a', 'spin_b');
  console.log(`# fidelity: ringflow profile spin_a ${s.toFixed(1)}% of ${total} samples; perf record -F ${HZ} -g ${ps.toFixed(1)}% of ${ptotal}; difference ${(s - ps).toFixed(1)} points (per 3 s run, ours/perf: ${perRun.join(', ')})`);
  assert.ok(total >= MIN_SAMPLES, `too few samples to judge (${total} in ${perRun.length} runs)`);
  assert.ok(Math.abs(s - 75) <= 5, `spin_a share ${s.toFixed(1)}% (want 75 +- 5)`);
  assert.ok(ptotal >= MIN_SAMPLES / 2, `perf saw too few samples (${ptotal})`);
  spin.kill('SIGKILL');
});

test('ringflow profile --format pprof (go tool pprof -top lists both functions; the profiler never samples itself) and --format svg (parsed; both names)', async () => {
  const spin = await spinning(path.join(dir, 'spin'), ['30']);
  const pb = path.join(dir, 'cpu.pb.gz');
  const svg = path.join(dir, 'cpu.svg');
  // pprof of the whole host (no --pid): the profiler symbolises everything it sees, so it is on a CPU often.
  // bin/ringflow execs node: the child's pid is the profiler's tgid
  const whole = spawn(RINGFLOW, ['profile', '--duration', '3s', '--hz', '99', '--format', 'pprof', '--output', pb], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(whole);
  let wholeErr = '';
  whole.stderr!.on('data', (d) => (wholeErr += d));
  const [[code]] = await Promise.all([
    once(whole, 'exit'),
    profile(['--pid', String(spin.pid), '--duration', '3s', '--hz', '99', '--format', 'svg', '--output', svg]),
  ]);
  assert.equal(code, 0, wholeErr);
  const env = { ...process.env, PPROF_TMPDIR: dir };
  const top = execFileSync('go', ['tool', 'pprof', '-top', '-nodecount=200', '-sample_index=samples', pb], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  assert.match(top, /\sspin_a\s*$/m, top);
  assert.match(top, /\sspin_b\s*$/m, top);
  const raw = execFileSync('go', ['tool', 'pprof', '-raw', pb], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  assert.match(raw, /samples\/count cpu\/nanoseconds/);
  // the pids sampled: the spin's is there, the profiler's is not
  const pids = new Set([...raw.matchAll(/pid:\[(\d+)\]/g)].map((m) => Number(m[1])));
  assert.ok(pids.has(spin.pid), `spin ${spin.pid} sampled: ${[...pids].join(',')}`);
  assert.ok(!pids.has(whole.pid!), `the profiler (pid ${whole.pid}) sampled itself`);
  const { stdout: parsed } = await run('python3', ['-c', `
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print('\\n'.join(t.text for t in root.iter('{http://www.w3.org/2000/svg}title')))`, svg], { encoding: 'utf8' });
  assert.match(parsed, /^spin_a \(/m, parsed);
  assert.match(parsed, /^spin_b \(/m, parsed);
  spin.kill('SIGKILL');
});

test('ringflow profile: a Node.js program run with --perf-basic-prof has both hot JS functions named', async () => {
  const node = await spinning(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', '--no-maglev-inlining', path.join(FIXTURES, 'hot.js'), '30000']);
  // give V8 a moment to tier the functions up (and write their perf map lines)
  await new Promise((r) => setTimeout(r, 500));
  const pb = path.join(dir, 'node.pb.gz');
  const [{ stdout, stderr }] = await Promise.all([
    profile(['--pid', String(node.pid), '--duration', '3s', '--hz', '99']),
    profile(['--pid', String(node.pid), '--duration', '3s', '--hz', '99', '--format', 'pprof', '--output', pb]),
  ]);
  // pprof's locations carry the script and line the perf map names (hot.js:5 and :6)
  const raw = execFileSync('go', ['tool', 'pprof', '-raw', pb], { encoding: 'utf8', env: { ...process.env, PPROF_TMPDIR: dir }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  assert.match(raw, /\shotA \S*hot\.js:5:/, raw.slice(0, 4000));
  assert.match(raw, /\shotB \S*hot\.js:6:/, raw.slice(0, 4000));
  const c = foldedCounts(stdout, ['hotA_[j]', 'hotB_[j]']);
  const total = c.get('hotA_[j]')! + c.get('hotB_[j]')!;
  console.log(`# node: hotA ${total ? share(c, 'hotA_[j]', 'hotB_[j]').toFixed(1) : '-'}% of ${total} samples in hotA or hotB`);
  assert.ok(c.get('hotA_[j]')! > 0 && c.get('hotB_[j]')! > 0, `both named: ${stderr}\n${stdout}`);
  node.kill('SIGKILL');
  rmSync(`/tmp/perf-${node.pid}.map`, { force: true });
});

/** bin/ringflow profile ARGS as a child: ready when it says it samples; done with its exit code and output. */
function startProfile(args: string[]) {
  const child = spawn(RINGFLOW, ['profile', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.stderr!.on('data', (d) => {
    stderr += d;
    if (stderr.includes('ringflow profile: sampling')) onReady();
  });
  const done = once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return { child, ready: Promise.race([ready, done.then((d) => { throw new Error(`profile exited before sampling: ${d.stderr}`); })]), done };
}

test('ringflow profile --offcpu: block.c sleeps 10 x 200 ms and reads a pipe 500 ms: [SLEEPING] under block_sleep 2000 ms, block_pipe 500 ms (+- 10 %, microseconds); ends when the --pid exits', async () => {
  execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-no-pie', '-o', path.join(dir, 'block'), path.join(FIXTURES, 'block.c')]);
  const block = spawn(path.join(dir, 'block'), [], { stdio: ['pipe', 'ignore', 'inherit'] });
  children.push(block);
  await once(block, 'spawn');
  const p = startProfile(['--offcpu', '--pid', String(block.pid), '--duration', '20s', '--format', 'folded']);
  await p.ready;
  const t0 = Date.now();
  block.stdin!.end('g');
  const { code, stdout, stderr } = await p.done;
  assert.equal(code, 0, stderr);
  assert.ok(Date.now() - t0 < 10_000, `ended when the process exited, not at --duration: ${stderr}`);
  assert.match(stderr, /every --pid exited/);
  let sleep = 0, pipe = 0;
  for (const line of stdout.trim().split('\n')) {
    const sp = line.lastIndexOf(' ');
    const frames = line.slice(0, sp).split(';');
    if (frames[1] !== '[SLEEPING]') continue;
    if (frames.includes('block_sleep')) sleep += Number(line.slice(sp + 1));
    if (frames.includes('block_pipe')) pipe += Number(line.slice(sp + 1));
  }
  assert.ok(Math.abs(sleep - 2_000_000) <= 200_000, `block_sleep ${sleep} us: ${stdout}`);
  assert.ok(Math.abs(pipe - 500_000) <= 50_000, `block_pipe ${pipe} us: ${stdout}`);
});

test('ringflow profile: Ctrl-C (SIGINT) ends the run early and the profile is still written', async () => {
  const spin = await spinning(path.join(dir, 'spin'), ['30']);
  const out = path.join(dir, 'int.folded');
  const p = startProfile(['--pid', String(spin.pid), '--duration', '60s', '--hz', '99', '--output', out]);
  await p.ready;
  await new Promise((r) => setTimeout(r, 1500));
  const t0 = Date.now();
  p.child.kill('SIGINT');
  const { code, stderr } = await p.done;
  assert.equal(code, 0, stderr);
  assert.ok(Date.now() - t0 < 5000, 'stopped promptly');
  assert.match(stderr, /\(interrupted\)/);
  const c = foldedCounts(readFileSync(out, 'utf8'), ['spin_a', 'spin_b']);
  assert.ok(c.get('spin_a')! > 0 && c.get('spin_b')! > 0, stderr);
  spin.kill('SIGKILL');
});
