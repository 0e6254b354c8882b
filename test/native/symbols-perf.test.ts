/**
 * collector/symbols against perf (Debian's linux-perf), on the same samples:
 * the fixture program spins in its functions and its library's (and enters the
 * kernel now and then); `perf record -g` samples it; every frame perf names,
 * user and kernel, is symbolised here from the live process's address, and our
 * function must start where perf's does (aliases may differ in name, not in
 * start). perf also reads /usr/lib/debug (libc's static functions): those
 * frames we may leave unnamed (debuglink is out of scope), and only those.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createSymbolizer, parseMaps } from '../../collector/symbols/index.ts';
import { buildPrograms, parseAddrs } from '../fixtures/symbols/programs.ts';

const children: ChildProcess[] = [];
let dir = '';
after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

type PerfFrame = { ip: bigint; sym: string; off: bigint; dso: string };

/** `perf script -F ip,sym,symoff,dso`: samples separated by blank lines, one frame per line, leaf first. */
function perfSamples(text: string): PerfFrame[][] {
  const out: PerfFrame[][] = [];
  let cur: PerfFrame[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([0-9a-f]+) (.+?)\+0x([0-9a-f]+) \((.*)\)$/.exec(line);
    if (m) { cur.push({ ip: BigInt(`0x${m[1]}`), sym: m[2]!, off: BigInt(`0x${m[3]}`), dso: m[4]! }); continue; }
    if (line.trim() === '' && cur.length > 0) { out.push(cur); cur = []; }
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** PT_LOAD segments by `readelf -lW` (the truth for ELF address -> file offset, not our reader). */
function loads(file: string): { offset: bigint; vaddr: bigint; filesz: bigint }[] {
  const out: { offset: bigint; vaddr: bigint; filesz: bigint }[] = [];
  for (const l of execFileSync('readelf', ['-lW', file], { encoding: 'utf8' }).split('\n')) {
    const m = /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/.exec(l);
    if (m) out.push({ offset: BigInt(`0x${m[1]}`), vaddr: BigInt(`0x${m[2]}`), filesz: BigInt(`0x${m[3]}`) });
  }
  return out;
}

test('symbolize agrees with perf on sampled stacks of a live process (user and kernel frames)', async (t) => {
  try { execFileSync('perf', ['--version'], { stdio: 'ignore' }); } catch { return t.skip('perf is not installed (Debian: linux-perf)'); }
  dir = buildPrograms();
  const exe = `${dir}/rfsym-pie`;
  const child = spawn(exe, ['spin'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const line = await new Promise<string>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.split('\n')[0]!); });
  });
  parseAddrs(line);
  const pid = child.pid!;
  const data = `${dir}/perf.data`;
  execFileSync('perf', ['record', '-q', '-F', '499', '-g', '-o', data, '-p', String(pid), '--', 'sleep', '1'], { stdio: 'ignore', timeout: 60_000 });
  const samples = perfSamples(execFileSync('perf', ['script', '-i', data, '-F', 'ip,sym,symoff,dso'], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.ok(samples.length > 50, `perf sampled ${samples.length} stacks`);

  const maps = parseMaps(fs.readFileSync(`/proc/${pid}/maps`, 'latin1'));
  const segs = new Map<string, ReturnType<typeof loads>>();
  /** perf prints user frames as ELF addresses of their dso: back to this process's runtime address */
  const runtime = (f: PerfFrame): bigint | null => {
    if (!segs.has(f.dso)) segs.set(f.dso, fs.existsSync(f.dso) ? loads(f.dso) : []);
    const seg = segs.get(f.dso)!.find((s) => f.ip >= s.vaddr && f.ip < s.vaddr + s.filesz);
    if (!seg) return null;
    const off = Number(f.ip - seg.vaddr + seg.offset);
    const m = maps.find((x) => x.path === f.dso && off >= x.pgoff && off < x.pgoff + (x.end - x.start));
    return m ? BigInt(m.start + off - m.pgoff) : null;
  };

  const sym = createSymbolizer();
  let compared = 0, kernelCompared = 0;
  const unnamed = new Map<string, number>();
  for (const s of samples) {
    const kernel = s.filter((f) => f.dso === '[kernel.kallsyms]');
    const user = s.filter((f) => f.dso.startsWith('/'));
    const ua = user.map(runtime);
    if (ua.some((a) => a === null)) continue;
    const ours = [...sym.symbolize(0, kernel.map((f) => f.ip), true), ...sym.symbolize(pid, ua as bigint[], false)];
    const theirs = [...kernel.map((f) => ({ f, start: f.ip - f.off })), ...user.map((f, i) => ({ f, start: ua[i]! - f.off }))];
    ours.forEach((o, i) => {
      const { f, start } = theirs[i]!;
      if (o.function === null) {
        unnamed.set(`${f.sym} (${f.dso})`, (unnamed.get(`${f.sym} (${f.dso})`) ?? 0) + 1);
        return;
      }
      assert.equal(o.address - BigInt(o.functionOffset!), start, `${o.function} vs perf's ${f.sym}+0x${f.off.toString(16)} (${f.dso})`);
      compared++;
      if (o.kind === 'KERNEL') kernelCompared++;
    });
  }
  // what we may leave unnamed: libc's functions perf found in /usr/lib/debug
  for (const [what] of unnamed) assert.match(what, /\(\/usr\/lib\/x86_64-linux-gnu\/libc\.so\.6\)$/, `unnamed by us: ${what}`);
  const names = new Set(samples.flat().map((f) => f.sym));
  for (const want of ['rf_sym_alpha', 'rf_sym_beta', 'rf_lib_gamma', 'main']) assert.ok(names.has(want), `perf saw ${want}`);
  assert.ok(compared > 200, `${compared} frames compared`);
  console.log(`symbols vs perf: ${samples.length} stacks, ${compared} frames agree (${kernelCompared} kernel), unnamed by us only: ${JSON.stringify(Object.fromEntries(unnamed))}`);
  child.kill('SIGKILL');
});
