/**
 * `ringflow profile` on the real kernel, through bin/ringflow as a user runs
 * it, read by real tools (go tool pprof, an XML parser, perf):
 *
 * - spin.c (test/fixtures/profile, built here -O0 -fno-omit-frame-pointer)
 *   spins in spin_a and spin_b 3:1 by construction. --format folded at 99 Hz
 *   for 3 s: spin_a's share of the samples in either is 75 % +- 5 points.
 *   In the same run `perf record -F 99 -g` samples the same process: the two
 *   shares agree within +- 3 points (printed either way).
 * - --format pprof: `go tool pprof -top` lists spin_a and spin_b, and -raw
 *   has no sample of the profiler's own pid (run without --pid, so only
 *   rf_self_tgid keeps it out while it symbolises the whole host).
 * - --format svg: Python's xml.etree parses it; both names are in it.
 * - a Node.js program (fixtures/profile/hot.js, --perf-basic-prof, inlining
 *   off as in profile.test.ts) with hotA called 3x per hotB: both named as
 *   JIT frames.
 * ~25 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

test('ringflow profile --format folded: spin_a 3:1 spin_b within 5 points, and within 3 points of perf record -F 99 -g on the same run', async () => {
  const spin = await spinning(path.join(dir, 'spin'), ['30']);
  const perfData = path.join(dir, 'perf.data');
  const ours = profile(['--pid', String(spin.pid), '--duration', '3s', '--hz', '99', '--format', 'folded']);
  const perf = run('perf', ['record', '-F', '99', '-g', '-e', 'cpu-clock', '-p', String(spin.pid), '-o', perfData, '--', 'sleep', '3'], { encoding: 'utf8' });
  const [{ stdout, stderr }] = await Promise.all([ours, perf]);
  const c = foldedCounts(stdout, ['spin_a', 'spin_b']);
  const total = c.get('spin_a')! + c.get('spin_b')!;
  assert.ok(total >= 60, `too few samples to judge (${total}); ${stderr}\n${stdout}`);
  const s = share(c, 'spin_a', 'spin_b');
  // every line starts with the process's comm, and is sorted
  const lines = stdout.trim().split('\n');
  assert.ok(lines.every((l) => l.startsWith('spin;')), stdout);
  assert.deepEqual([...lines].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), lines);
  const script = execFileSync('perf', ['script', '-i', perfData, '-F', 'comm,ip,sym'], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const p = perfCounts(script, ['spin_a', 'spin_b']);
  const ps = share(p, 'spin_a', 'spin_b');
  console.log(`# fidelity: ringflow profile spin_a ${s.toFixed(1)}% of ${total} samples; perf record -F 99 -g ${ps.toFixed(1)}% of ${p.get('spin_a')! + p.get('spin_b')!}; difference ${(s - ps).toFixed(1)} points`);
  assert.ok(Math.abs(s - 75) <= 5, `spin_a share ${s.toFixed(1)}% (want 75 +- 5): ${stdout}`);
  assert.ok(p.get('spin_a')! + p.get('spin_b')! >= 60, `perf saw too few samples: ${script.slice(0, 2000)}`);
  assert.ok(Math.abs(s - ps) <= 3, `ringflow ${s.toFixed(1)}% vs perf ${ps.toFixed(1)}%`);
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
  const { stdout, stderr } = await profile(['--pid', String(node.pid), '--duration', '3s', '--hz', '99']);
  const c = foldedCounts(stdout, ['hotA_[j]', 'hotB_[j]']);
  const total = c.get('hotA_[j]')! + c.get('hotB_[j]')!;
  console.log(`# node: hotA ${total ? share(c, 'hotA_[j]', 'hotB_[j]').toFixed(1) : '-'}% of ${total} samples in hotA or hotB`);
  assert.ok(c.get('hotA_[j]')! > 0 && c.get('hotB_[j]')! > 0, `both named: ${stderr}\n${stdout}`);
  node.kill('SIGKILL');
  rmSync(`/tmp/perf-${node.pid}.map`, { force: true });
});
