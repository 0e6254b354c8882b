/**
 * collector/symbols, the cases that need root: a deleted executable read
 * through /proc/PID/map_files (CAP_SYS_ADMIN), a process in its own mount
 * namespace (unshare -m) read through /proc/PID/root, and kernel addresses
 * (/proc/kallsyms shows them to root only): `schedule`, found in
 * /proc/kallsyms itself, and the return-address rule at the function after it.
 * The programs are test/fixtures/symbols's (see symbols-elf.test.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createSymbolizer, KERNEL_MODULE, readKallsyms } from '../../collector/symbols/index.ts';
import { buildIdOf, buildPrograms, startProgram, type Addrs } from '../fixtures/symbols/programs.ts';

let dir = '';
const children: ChildProcess[] = [];

before(() => {
  assert.equal(process.getuid?.(), 0, 'these tests need root');
  dir = buildPrograms();
});

after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const start = (exe: string): Promise<Addrs> => startProgram(exe, children);

test('symbolize: a deleted executable is read through /proc/PID/map_files', async () => {
  const exe = `${dir}/rfsym-deleted`;
  fs.copyFileSync(`${dir}/rfsym-pie`, exe);
  fs.chmodSync(exe, 0o755);
  const p = await start(exe);
  fs.unlinkSync(exe);
  const sym = createSymbolizer();
  const [a] = sym.symbolize(p.pid, [p.alpha + 2n], false);
  assert.equal(a!.function, 'rf_sym_alpha');
  assert.equal(a!.functionOffset, 2);
  assert.equal(a!.module, exe, 'the path the process mapped, without " (deleted)"');
  assert.equal(a!.buildId, buildIdOf(`${dir}/rfsym-pie`));
  p.child.kill('SIGKILL');
});

test('symbolize: a process in its own mount namespace is read through /proc/PID/root, not the host\'s path', async () => {
  // inside: a tmpfs over NS holds the PIE build as NS/app; on the host NS/app is
  // the non-PIE build, whose symbols at the same offsets are other functions
  const ns = `${dir}/ns`;
  fs.mkdirSync(ns, { recursive: true });
  fs.copyFileSync(`${dir}/rfsym-nopie`, `${ns}/app`);
  fs.chmodSync(`${ns}/app`, 0o755);
  const { child, pid, alpha, beta } = await startProgram('unshare', children, ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none ${ns} && cp ${dir}/rfsym-pie ${ns}/app && exec ${ns}/app`]);
  assert.equal(fs.readlinkSync(`/proc/${pid}/exe`), `${ns}/app`);
  const frames = createSymbolizer().symbolize(pid, [alpha + 3n, beta + 3n], false);
  assert.deepEqual(frames.map((f) => f.function), ['rf_sym_alpha', 'rf_sym_beta']);
  assert.equal(frames[0]!.module, `${ns}/app`);
  assert.equal(frames[0]!.buildId, buildIdOf(`${dir}/rfsym-pie`));
  child.kill('SIGKILL');
});

test('symbolize: kernel addresses by /proc/kallsyms (schedule)', () => {
  const line = fs.readFileSync('/proc/kallsyms', 'latin1').split('\n').find((l) => / [tT] schedule$/.test(l))!;
  const start = BigInt(`0x${line.split(' ')[0]}`);
  const text = fs.readFileSync('/proc/kallsyms', 'latin1').split('\n').find((l) => / [tT] _text$/.test(l))!;
  const sym = createSymbolizer();
  const [f, g] = sym.symbolize(0, [start + 4n, start + 8n], true);
  assert.equal(f!.function, 'schedule');
  assert.equal(f!.functionOffset, 4);
  assert.equal(f!.kind, 'KERNEL');
  assert.equal(f!.module, '[kernel.kallsyms]');
  assert.equal(BigInt(f!.offset), start + 4n - BigInt(`0x${text.split(' ')[0]}`), 'offset from _text');
  assert.equal(g!.function, 'schedule');
  assert.equal(g!.functionOffset, 8);

  // a return address at the first byte of the next function belongs to the
  // caller before it (a call at the very end of schedule): frames after the
  // first are named at address - 1; the first frame (the sampled IP) is not
  const next = fs.readFileSync('/proc/kallsyms', 'latin1').split('\n')
    .filter((l) => / [tTwW] /.test(l)).map((l) => BigInt(`0x${l.split(' ')[0]}`))
    .filter((a) => a > start).reduce((m, a) => (a < m ? a : m), 1n << 64n);
  const [ip, ret] = sym.symbolize(0, [next, next], true);
  assert.notEqual(ip!.function, 'schedule', 'the IP at the next function is that function');
  assert.equal(ret!.function, 'schedule', 'the return address is its caller\'s');
  assert.equal(ret!.address, next);
  assert.equal(BigInt(ret!.functionOffset!), next - start);
  const plain = createSymbolizer({ returnAddresses: false }).symbolize(0, [next, next], true);
  assert.equal(plain[1]!.function, ip!.function);
});

test('kallsyms: this kernel\'s `schedule`, from /proc/kallsyms itself', () => {
  const text = fs.readFileSync('/proc/kallsyms', 'latin1');
  const line = text.split('\n').find((l) => / [tT] schedule$/.test(l));
  assert.ok(line, 'schedule in /proc/kallsyms');
  const start = BigInt(`0x${line.split(' ')[0]}`);
  assert.notEqual(start, 0n, 'run as root: kptr_restrict hides addresses otherwise');
  const t0 = process.hrtime.bigint();
  const k = readKallsyms();
  const parseMs = Number(process.hrtime.bigint() - t0) / 1e6;
  for (const off of [0n, 1n, 0x10n]) {
    const s = k.lookup(start + off);
    assert.ok(s);
    assert.equal(s.name, 'schedule');
    assert.equal(BigInt(s.offset), off);
    assert.equal(s.module, KERNEL_MODULE);
  }
  // throughput, for the record only
  const n = 200_000;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) k.lookup(start + BigInt(i & 0xff));
  const sec = Number(process.hrtime.bigint() - t1) / 1e9;
  console.log(`kallsyms: ${k.size} text symbols parsed in ${parseMs.toFixed(0)} ms; ${(n / sec / 1e6).toFixed(2)} M lookups/s`);
});
