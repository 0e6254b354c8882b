/**
 * collector/symbols/maps.ts: /proc/PID/maps lines (table: deleted files,
 * anonymous, [vdso], [stack], memfd, JIT-like executable anonymous regions),
 * the stat start-time field, and the cache on real processes: exec under the
 * same pid is a new table, a mapping added later is found by a rate-limited
 * re-read on a miss, a vanished process is a reason, not a throw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createMapsCache, fileOffsetOf, findMapping, moduleOf, parseMaps, startTimeOfStat } from '../../collector/symbols/maps.ts';

const MAPS = `562811d52000-562811d54000 r--p 00000000 fe:00 247026                     /usr/bin/cat
562811d54000-562811d59000 r-xp 00002000 fe:00 247026                     /usr/bin/cat
562848f17000-562848f38000 rw-p 00000000 00:00 0                          [heap]
7fd767fc2000-7fd767fe4000 rwxp 00000000 00:00 0 
7fd767fe4000-7fd767fe5000 r-xp 00001000 fe:00 99                         /srv/app/old lib.so (deleted)
7fd767fe5000-7fd767fe6000 r-xp 00000000 00:01 2048                       /memfd:jit-code (deleted)
7fd767fe6000-7fd767fe7000 r--p 00000000 00:00 0                          [anon:v8 heap]
7ffd1c0a0000-7ffd1c0c1000 rw-p 00000000 00:00 0                          [stack]
7ffd1c1d6000-7ffd1c1d8000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
not a maps line
`;

test('maps: lines to mappings, kinds and file offsets (table)', () => {
  const maps = parseMaps(MAPS);
  assert.equal(maps.length, 10);
  const cases: [string, number, { kind: string; path: string; deleted?: boolean; exec?: boolean; module: string; offset?: number } | null][] = [
    ['executable text', 0x562811d54010, { kind: 'file', path: '/usr/bin/cat', exec: true, module: '/usr/bin/cat', offset: 0x2010 }],
    ['first page of the file', 0x562811d52000, { kind: 'file', path: '/usr/bin/cat', exec: false, module: '/usr/bin/cat', offset: 0 }],
    ['heap', 0x562848f17100, { kind: 'heap', path: '[heap]', module: '[heap]' }],
    ['anonymous rwx (JIT)', 0x7fd767fc2abc, { kind: 'anon', path: '', exec: true, module: '[anon]' }],
    ['deleted file, path with a space', 0x7fd767fe4008, { kind: 'file', path: '/srv/app/old lib.so', deleted: true, module: '/srv/app/old lib.so', offset: 0x1008 }],
    ['memfd', 0x7fd767fe5000, { kind: 'memfd', path: '/memfd:jit-code', deleted: true, exec: true, module: '/memfd:jit-code' }],
    ['named anonymous', 0x7fd767fe6001, { kind: 'anon', path: '[anon:v8 heap]', module: '[anon:v8 heap]' }],
    ['stack', 0x7ffd1c0b0000, { kind: 'stack', path: '[stack]', module: '[stack]' }],
    ['vdso', 0x7ffd1c1d7000, { kind: 'vdso', path: '[vdso]', exec: true, module: '[vdso]' }],
    ['vsyscall (above 2^53, exact)', 0xffffffffff600000, { kind: 'vsyscall', path: '[vsyscall]', module: '[vsyscall]' }],
    ['end is exclusive', 0x562811d59000, null],
    ['a gap', 0x600000000000, null],
    ['below everything', 0x1000, null],
  ];
  for (const [name, addr, want] of cases) {
    const m = findMapping(maps, addr);
    if (want === null) { assert.equal(m, null, name); continue; }
    assert.ok(m, name);
    assert.equal(m.kind, want.kind, name);
    assert.equal(m.path, want.path, name);
    assert.equal(moduleOf(m), want.module, name);
    if (want.deleted !== undefined) assert.equal(m.deleted, want.deleted, name);
    if (want.exec !== undefined) assert.equal(m.exec, want.exec, name);
    if (want.offset !== undefined) assert.equal(fileOffsetOf(m, addr), want.offset, name);
  }
});

test('maps: start time from /proc/PID/stat, comm with spaces and parentheses (table)', () => {
  const tail = 'R 13803 13803 11790 0 -1 4194304 119 0 0 0 0 0 0 0 20 0 1 0 2461069 3133440 362';
  const cases: [string, string, string | null][] = [
    ['plain', `13809 (cat) ${tail}`, '2461069'],
    ['spaces and parens in comm', `13809 (a) b (c)) ${tail}`, '2461069'],
    ['truncated', '13809 (cat) R 1 2', null],
    ['no comm', 'garbage', null],
  ];
  for (const [name, stat, want] of cases) assert.equal(startTimeOfStat(stat), want, name);
});

function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

test('maps cache: exec under the same pid, a library mapped later (re-read on a miss, rate-limited), a gone process', async () => {
  let clock = 0;
  const cache = createMapsCache({ validateMs: 1000, rereadMs: 1000, now: () => clock });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sym-maps-'));
  const lib = path.join(dir, 'late-mapped.bin');
  fs.writeFileSync(lib, Buffer.alloc(8192, 1));
  // a shell that maps a file later (python's mmap), then execs sleep
  const script = `
import mmap, os, sys, time
sys.stdout.write('ready\\n'); sys.stdout.flush()
sys.stdin.readline()
f = open(${JSON.stringify(lib)}, 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
sys.stdout.write('mapped\\n'); sys.stdout.flush()
sys.stdin.readline()
os.execv('/bin/sleep', ['sleep', '30'])
`;
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    await waitFor(() => out.includes('ready'), 'python ready');
    const pid = child.pid!;
    const first = cache.lookup(pid);
    assert.ok(first.ok);
    assert.equal(first.cached, false);
    assert.ok(first.proc.maps.some((m) => m.path.includes('python')), 'python in its maps');
    assert.equal(first.proc.maps.some((m) => m.path === lib), false);
    child.stdin.write('\n');
    await waitFor(() => out.includes('mapped'), 'file mapped');
    const real = parseMaps(fs.readFileSync(`/proc/${pid}/maps`, 'latin1')).find((m) => m.path === lib);
    assert.ok(real, 'the file is mapped now');
    // a miss within rereadMs of the read: no re-read
    const readsBefore = cache.reads;
    const early = cache.lookup(pid, real.start + 10);
    assert.ok(early.ok);
    assert.equal(early.mapping, null);
    assert.equal(cache.reads, readsBefore);
    // after rereadMs: the miss re-reads once and finds it
    clock += 1000;
    const late = cache.lookup(pid, real.start + 10);
    assert.ok(late.ok);
    assert.equal(late.mapping?.path, lib);
    assert.equal(fileOffsetOf(late.mapping!, real.start + 10), 10);
    assert.equal(cache.reads, readsBefore + 1);
    // a hit costs no read
    cache.lookup(pid, real.start + 20);
    assert.equal(cache.reads, readsBefore + 1);
    // exec: same pid, same start time, another executable
    const gen = late.proc.generation;
    child.stdin.write('\n');
    // the exe link changes before the new image is mapped (begin_new_exec, then
    // load_elf_binary maps it): wait for the mapping, not the link
    await waitFor(() => { try { return fs.readFileSync(`/proc/${pid}/maps`, 'latin1').includes('/sleep'); } catch { return false; } }, 'exec of sleep');
    const sameWindow = cache.lookup(pid);
    assert.ok(sameWindow.ok);
    assert.equal(sameWindow.proc.generation, gen, 'identity checked at most once per validateMs');
    clock += 1000;
    const after = cache.lookup(pid);
    assert.ok(after.ok);
    assert.notEqual(after.proc.generation, gen);
    assert.ok(after.proc.maps.some((m) => m.path.endsWith('/sleep')), 'the new image');
    assert.equal(after.proc.maps.some((m) => m.path.includes('python')), false);
    // gone
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await waitFor(() => !fs.existsSync(`/proc/${pid}`), 'reaped');
    clock += 1000;
    const gone = cache.lookup(pid, 0x1000);
    assert.equal(gone.ok, false);
    if (!gone.ok) assert.equal(gone.reason, 'process_gone');
    const never = cache.lookup(pid);
    assert.equal(never.ok, false);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
