/**
 * collector/symbols: ELF symbolisation on real files and live processes (no
 * root needed: our own children). A C program and a shared library of its own
 * (test/fixtures/symbols), built with gcc -O0 -fno-omit-frame-pointer as PIE,
 * -no-pie and stripped (-rdynamic, so only .dynsym is left, as in Debian's
 * packages), print their functions' runtime addresses; `symbolize` must name
 * addresses inside them exactly, as `nm` names them, and libc's `read` through
 * its .dynsym. Also: a mapped file that is no ELF, a vanished process, the
 * build id against `readelf -n`, bounded caches, the vDSO. Throughput figures
 * are printed, not asserted. What needs root (map_files, mount namespaces,
 * kernel addresses) is in test/native/symbols-root.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createSymbolizer, openElf, parseMaps, type Frame } from '../../collector/symbols/index.ts';
import { buildIdOf, buildPrograms, nm, startProgram, type Addrs } from '../fixtures/symbols/programs.ts';

let dir = '';
const children: ChildProcess[] = [];

before(() => { dir = buildPrograms(); });

after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const start = (exe: string): Promise<Addrs> => startProgram(exe, children);

function expectFrame(f: Frame, fn: string | null, functionOffset: number | null, moduleEnds: string, name: string): void {
  assert.equal(f.function, fn, `${name}: function`);
  if (functionOffset !== null) assert.equal(f.functionOffset, functionOffset, `${name}: offset in function`);
  assert.ok(f.module.endsWith(moduleEnds), `${name}: module ${f.module} ends with ${moduleEnds}`);
  assert.equal(f.kind, 'USER', `${name}: kind`);
}

const LIBC = '/libc.so.6';

for (const variant of ['pie', 'nopie'] as const) {
  test(`symbolize: a live ${variant === 'pie' ? 'PIE' : 'non-PIE'} executable, its shared library and libc's read, named as nm names them`, async () => {
    const exe = `${dir}/rfsym-${variant}`;
    const p = await start(exe);
    const sym = createSymbolizer();
    const stack = [p.alpha + 5n, p.beta + 9n, p.gamma + 3n, p.read + 2n];
    const frames = sym.symbolize(p.pid, stack, false);
    expectFrame(frames[0]!, 'rf_sym_alpha', 5, `/rfsym-${variant}`, 'alpha (.symtab, global)');
    expectFrame(frames[1]!, 'rf_sym_beta', 9, `/rfsym-${variant}`, 'beta (.symtab, static)');
    expectFrame(frames[2]!, 'rf_lib_gamma', 3, '/librfsym.so', 'gamma (shared library)');
    expectFrame(frames[3]!, 'read', 2, LIBC, 'read (libc .dynsym)');
    for (const f of frames) assert.equal(f.address, stack[frames.indexOf(f)]);

    // module offsets are file offsets: the same as the live maps say, and the
    // ELF address of that offset is nm's address + the function offset
    const maps = parseMaps(fs.readFileSync(`/proc/${p.pid}/maps`, 'latin1'));
    const m = maps.find((x) => x.path === exe && Number(p.alpha) >= x.start && Number(p.alpha) < x.end)!;
    assert.equal(frames[0]!.offset, Number(p.alpha) + 5 - m.start + m.pgoff);
    const truth = nm(exe);
    const elf = openElf(exe);
    const fromElf = elf.lookupFileOffset(frames[0]!.offset)!;
    assert.equal(BigInt(fromElf.start), truth.get('rf_sym_alpha'));
    assert.equal(BigInt(elf.lookupFileOffset(frames[1]!.offset)!.start), truth.get('rf_sym_beta'));
    const libTruth = nm(`${dir}/librfsym.so`);
    assert.equal(BigInt(openElf(`${dir}/librfsym.so`).lookupFileOffset(frames[2]!.offset)!.start), libTruth.get('rf_lib_gamma'));
    assert.equal(frames[0]!.buildId, buildIdOf(exe));
    assert.equal(frames[2]!.buildId, buildIdOf(`${dir}/librfsym.so`));
    assert.equal(elf.headers.type, variant === 'pie' ? 'DYN' : 'EXEC');
    // libc is stripped on Debian: .dynsym only, and that is what named read
    const libc = frames[3]!.module;
    const libcElf = openElf(libc);
    assert.deepEqual([...libcElf.symbols.sources], libcElf.headers.sections.some((s) => s.name === '.symtab') ? ['.symtab', '.dynsym'] : ['.dynsym']);
    assert.equal(BigInt(libcElf.lookupFileOffset(frames[3]!.offset)!.start), nm(libc, true).get('read'));
    const s = sym.stats();
    assert.equal(s.frames, 4);
    assert.equal(s.unknown, 0);
    p.child.kill('SIGKILL');
  });
}

test('symbolize: a stripped executable (.dynsym only, as Debian ships them) names its exported functions, not its static ones', async () => {
  const exe = `${dir}/rfsym-stripped`;
  const elf = openElf(exe);
  assert.deepEqual([...elf.symbols.sources], ['.dynsym']);
  const p = await start(exe);
  const sym = createSymbolizer();
  const [a, b] = sym.symbolize(p.pid, [p.alpha + 1n, p.beta + 1n], false);
  expectFrame(a!, 'rf_sym_alpha', 1, '/rfsym-stripped', 'exported (-rdynamic)');
  // the static function has no symbol left, and alpha's size ends before it
  assert.equal(b!.function, null);
  assert.ok(b!.module.endsWith('/rfsym-stripped'));
  assert.equal(sym.stats().unknownBy.no_symbol, 1);
  p.child.kill('SIGKILL');
});

test('symbolize: a vanished process, an unmapped address, a mapped file that is no ELF: frames without names, counted, never a throw', async () => {
  const sym = createSymbolizer();
  const p = await start(`${dir}/rfsym-pie`);
  const before = sym.symbolize(p.pid, [p.alpha + 1n, 0x10n], false);
  assert.equal(before[0]!.function, 'rf_sym_alpha');
  assert.equal(before[1]!.function, null);
  assert.equal(sym.stats().unknownBy.no_mapping, 1);
  p.child.kill('SIGKILL');
  await new Promise((r) => p.child.once('exit', r));
  for (let i = 0; i < 200 && fs.existsSync(`/proc/${p.pid}`); i++) await new Promise((r) => setTimeout(r, 10));
  const gone = createSymbolizer().symbolize(p.pid, [p.alpha + 1n], false);
  assert.equal(gone.length, 1);
  assert.equal(gone[0]!.function, null);
  assert.equal(gone[0]!.address, p.alpha + 1n);

  // a data file mapped executable: module + offset kept, reason not_elf
  const data = `${dir}/data.bin`;
  fs.writeFileSync(data, Buffer.alloc(8192, 0x90));
  const py = spawn('python3', ['-c', `import mmap,sys\nf=open(${JSON.stringify(data)},'rb')\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ|mmap.PROT_EXEC)\nprint('ok',flush=True)\nsys.stdin.read()`], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(py);
  await new Promise<void>((resolve) => py.stdout!.once('data', () => resolve()));
  const m = parseMaps(fs.readFileSync(`/proc/${py.pid}/maps`, 'latin1')).find((x) => x.path === data)!;
  const s2 = createSymbolizer();
  const [f] = s2.symbolize(py.pid!, [BigInt(m.start + 0x123)], false);
  assert.equal(f!.function, null);
  assert.equal(f!.module, data);
  assert.equal(f!.offset, 0x123);
  assert.equal(s2.stats().unknownBy.not_elf, 1);
  assert.ok(s2.stats().causes.not_elf, 'its cause is kept');
  py.kill('SIGKILL');
});

test('symbolize: bounded caches: one file and one process kept still name every frame right, and say what they hold', async () => {
  const a = await start(`${dir}/rfsym-pie`);
  const b = await start(`${dir}/rfsym-nopie`);
  const sym = createSymbolizer({ maxFiles: 1, maxProcesses: 1 });
  for (let round = 0; round < 3; round++) {
    for (const p of [a, b]) {
      const fr = sym.symbolize(p.pid, [p.alpha + 1n, p.gamma + 1n, p.read + 1n, p.beta + 1n], false);
      assert.deepEqual(fr.map((f) => f.function), ['rf_sym_alpha', 'rf_lib_gamma', 'read', 'rf_sym_beta'], `round ${round}`);
    }
  }
  const s = sym.stats();
  assert.equal(s.files, 1);
  assert.equal(s.processes, 1);
  assert.ok(s.misses > 4, 'evicted files were read again');
  assert.equal(s.unknown, 0);
  // one process, three files, room for one: what the cache evicted is read again
  // through it, not kept alive by the process's own references (the byte bound holds)
  const one = createSymbolizer({ maxFiles: 1 });
  one.symbolize(a.pid, [a.alpha + 1n, a.gamma + 1n, a.read + 1n], false);
  const m1 = one.stats().misses;
  const again = one.symbolize(a.pid, [a.alpha + 1n, a.gamma + 1n, a.read + 1n], false);
  assert.deepEqual(again.map((f) => f.function), ['rf_sym_alpha', 'rf_lib_gamma', 'read']);
  assert.ok(one.stats().misses > m1, 'evicted files read again');
  assert.equal(one.stats().files, 1);
  // unbounded: everything is read once, then hits
  const warm = createSymbolizer();
  for (let round = 0; round < 3; round++) warm.symbolize(a.pid, [a.alpha + 1n, a.gamma + 1n, a.read + 1n], false);
  const w = warm.stats();
  assert.equal(w.files, 3);
  assert.equal(w.hits, 6);
  assert.ok(w.bytes > 0);
  a.child.kill('SIGKILL');
  b.child.kill('SIGKILL');
});

test('symbolize: processes that exited are dropped from the caches by the periodic sweep', async () => {
  let clock = 0;
  const sym = createSymbolizer({ now: () => clock, sweepMs: 1000 });
  const a = await start(`${dir}/rfsym-pie`);
  const b = await start(`${dir}/rfsym-nopie`);
  sym.symbolize(a.pid, [a.alpha + 1n], false);
  sym.symbolize(b.pid, [b.alpha + 1n], false);
  assert.equal(sym.stats().processes, 2);
  a.child.kill('SIGKILL');
  await new Promise((r) => a.child.once('exit', r));
  for (let i = 0; i < 200 && fs.existsSync(`/proc/${a.pid}`); i++) await new Promise((r) => setTimeout(r, 10));
  sym.symbolize(b.pid, [b.beta + 1n], false);
  assert.equal(sym.stats().processes, 2, 'not before sweepMs');
  clock += 1000;
  const [f] = sym.symbolize(b.pid, [b.beta + 1n], false);
  assert.equal(f!.function, 'rf_sym_beta');
  assert.equal(sym.stats().processes, 1, 'the exited one is gone');
  b.child.kill('SIGKILL');
});

test('symbolize: the vDSO (read from the process\'s memory) names clock_gettime', () => {
  // our own process: the vDSO image from /proc/self/mem gives the truth's address
  const maps = parseMaps(fs.readFileSync('/proc/self/maps', 'latin1'));
  const v = maps.find((m) => m.kind === 'vdso');
  assert.ok(v, 'a [vdso] mapping');
  const fd = fs.openSync('/proc/self/mem', 'r');
  const img = Buffer.alloc(v.end - v.start);
  fs.readSync(fd, img, 0, img.length, v.start);
  fs.closeSync(fd);
  fs.writeFileSync(`${dir}/vdso.so`, img);
  const out = execFileSync('nm', ['-D', '--defined-only', `${dir}/vdso.so`], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => / (__vdso_clock_gettime|clock_gettime)(@.*)?$/.test(l));
  assert.ok(line, `clock_gettime in the vDSO's symbols:\n${out}`);
  const [addrHex, , name] = line.trim().split(/\s+/);
  // the vDSO is linked at 0 and mapped from its first byte: its ELF address is its offset in the mapping
  const addr = BigInt(v.start) + BigInt(`0x${addrHex}`) + 2n;
  const [f] = createSymbolizer().symbolize(process.pid, [addr], false);
  assert.equal(f!.module, '[vdso]');
  assert.match(f!.function ?? '', /clock_gettime$/);
  // clock_gettime is a weak alias of __vdso_clock_gettime: the one without underscores is kept
  const aliases = out.split('\n').filter((l) => l.startsWith(addrHex!)).map((l) => l.trim().split(/\s+/)[2]!.replace(/@.*/, ''));
  assert.ok(aliases.includes(name!.replace(/@.*/, '')));
  assert.equal(f!.function, aliases.includes('clock_gettime') ? 'clock_gettime' : name!.replace(/@.*/, ''));
  assert.equal(f!.functionOffset, 2);
});

test('symbolize: throughput over node\'s own binary (cold: parse ~150 k symbols; cached), printed only', () => {
  const exe = fs.readlinkSync('/proc/self/exe');
  const truth = nm(exe);
  const fns = [...truth.entries()].filter(([n]) => n.startsWith('_ZN2v88internal')).slice(0, 2000);
  const maps = parseMaps(fs.readFileSync('/proc/self/maps', 'latin1'));
  const elf = openElf(exe);
  // runtime address of an ELF address: through the PT_LOAD holding it and the mapping of that file offset
  const runtime = (v: bigint): bigint | null => {
    const seg = elf.headers.loads.find((l) => Number(v) >= l.vaddr && Number(v) < l.vaddr + l.filesz);
    if (!seg) return null;
    const off = Number(v) - seg.vaddr + seg.offset;
    const m = maps.find((x) => x.path === exe && off >= x.pgoff && off < x.pgoff + (x.end - x.start));
    return m ? BigInt(m.start + off - m.pgoff) : null;
  };
  // function starts: some are 1-byte functions (a lone ret), start + 1 is past them
  const addrs = fns.map(([, v]) => runtime(v)).filter((a): a is bigint => a !== null);
  assert.ok(addrs.length > 100, 'node functions mapped');
  const sym = createSymbolizer();
  const t0 = process.hrtime.bigint();
  const cold = sym.symbolize(process.pid, addrs.slice(0, 1), false);
  const coldMs = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.ok(cold[0]!.function?.startsWith('_ZN2v88internal'), `cold frame named: ${cold[0]!.function}`);
  const rounds = 50;
  const t1 = process.hrtime.bigint();
  let named = 0;
  for (let r = 0; r < rounds; r++) {
    // one address per "stack" (index 0: no return-address adjustment) so each is exact
    for (const a of addrs) if (sym.symbolize(process.pid, [a], false)[0]!.function !== null) named++;
  }
  const sec = Number(process.hrtime.bigint() - t1) / 1e9;
  assert.equal(named, rounds * addrs.length);
  const st = sym.stats();
  console.log(`symbolize: node binary cold ${coldMs.toFixed(0)} ms (${elf.symbols.size} functions, ${(st.bytes / 2 ** 20).toFixed(1)} MiB held); cached ${((rounds * addrs.length) / sec / 1e3).toFixed(0)} k addresses/s`);
});
