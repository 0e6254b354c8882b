/**
 * cli/profile.ts without root: flags -> config (defaults, every bad value
 * one FatalError with exit 2), what the summary says the kernel lost, and
 * the mapping table's fallback naming of a process that exited (a fake
 * /proc whose maps point at a real ELF file: this test's own node binary).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FatalError } from '../../common/errors.ts';
import { parseProfileArgs, lostSummary, createMappingTable, DEFAULT_ONE_OFF_HZ, PROFILE_HELP } from '../../cli/profile.ts';

const alive = (pid: number) => (pid === 4242 || pid === 77 ? pid : pid === 4243 ? 4242 : undefined);

test('profile args: defaults', () => {
  const c = parseProfileArgs([], alive);
  assert.deepEqual(c, { pids: [], durationMs: 30_000, hz: DEFAULT_ONE_OFF_HZ, offcpu: false, offcpuMinNs: 1_000_000n, perThread: false, format: 'folded', help: false });
  assert.equal(DEFAULT_ONE_OFF_HZ, 49);
});

test('profile args: table of good values', () => {
  const t: [string[], Partial<ReturnType<typeof parseProfileArgs>>][] = [
    [['--pid', '4242'], { pids: [4242] }],
    [['--pid', '4242', '--pid', '77', '--pid', '4242'], { pids: [4242, 77] }],
    [['--comm', 'postgres'], { comm: 'postgres' }],
    [['--uid', '1000', '--cgroup', '/sys/fs/cgroup/system.slice'], { uid: 1000, cgroup: '/sys/fs/cgroup/system.slice' }],
    [['--duration', '3s', '--hz', '99'], { durationMs: 3000, hz: 99 }],
    [['--offcpu', '--offcpu-min', '10ms'], { offcpu: true, offcpuMinNs: 10_000_000n }],
    [['--threads'], { perThread: true }],
    [['--format', 'pprof', '--output', '/tmp/x.pb.gz'], { format: 'pprof', output: '/tmp/x.pb.gz' }],
    [['--format', 'svg'], { format: 'svg' }],
  ];
  for (const [argv, want] of t) {
    const c = parseProfileArgs(argv, alive);
    for (const [k, v] of Object.entries(want)) assert.deepEqual((c as unknown as Record<string, unknown>)[k], v, `${argv.join(' ')}: ${k}`);
  }
});

test('profile args: table of bad values, each a one-line usage error', () => {
  const t: [string[], RegExp][] = [
    [['--format', 'json'], /--format: "json" is not one of folded, pprof, svg/],
    [['--pid', '5'], /no process 5 is running/],
    [['--pid', '4243'], /thread of process 4242/],
    [['--hz', '0'], /--hz/],
    [['--hz', '5000'], /--hz/],
    [['--duration', '0s'], /--duration: 0s is out of range/],
    [['--duration', 'soon'], /--duration/],
    [['--comm', 'a-name-longer-than-15'], /comm/],
    [['--output', ''], /--output: empty/],
    [['--uid', 'root'], /--uid/],
  ];
  for (const [argv, re] of t) {
    assert.throws(() => parseProfileArgs(argv, alive), (e: unknown) => e instanceof FatalError && e.exitCode === 2 && re.test(e.message), argv.join(' '));
  }
  assert.throws(() => parseProfileArgs(['--bogus'], alive), /bogus/);
});

test('profile --help says which stacks stop early and why', () => {
  assert.match(PROFILE_HELP, /frame pointers/);
  assert.match(PROFILE_HELP, /Debian's libc/);
  assert.match(PROFILE_HELP, /--perf-basic-prof/);
});

test('profile summary: kernel losses by reason, nothing when none', () => {
  assert.equal(lostSummary(null), '');
  assert.equal(lostSummary([0n, 0n, 0n, 0n, 0n]), '');
  assert.equal(lostSummary([2n, 0n, 0n, 5n, 0n, 3n]), '; not counted by the kernel: ustack_collision 2, counts_full 5, offcpu_untracked 3');
  assert.equal(lostSummary([0n, 0n, 0n, 0n, 0n, 0n, 1n]), '; not counted by the kernel: reason_6 1');
});

test('profile mapping table: a process gone names its frames from its last maps and the file\'s ELF symbols', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rf-profile-maps-'));
  try {
    // a real ELF with symbols: this node binary; one of its functions by nm -D (dynamic symbols: always there)
    const bin = process.execPath;
    const nm = execFileSync('nm', ['-D', '--defined-only', bin], { encoding: 'utf8', maxBuffer: 256 << 20 }).split('\n');
    const fn = nm.map((l) => l.trim().split(/\s+/)).find((p) => p.length === 3 && /^[tT]$/.test(p[1]!) && p[2] === 'napi_create_object');
    assert.ok(fn, 'nm -D lists napi_create_object');
    const vaddr = BigInt(`0x${fn![0]}`);
    // node's text segment: file offset == vaddr - (p_vaddr - p_offset); read it from readelf
    const load = execFileSync('readelf', ['-lW', bin], { encoding: 'utf8' }).split('\n').map((l) => l.trim().split(/\s+/))
      .filter((p) => p[0] === 'LOAD' && p.at(-2)?.includes('E'))
      .map((p) => ({ off: BigInt(p[1]!), vaddr: BigInt(p[2]!), filesz: BigInt(p[4]!) }))
      .find((l) => vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz);
    assert.ok(load, 'an executable PT_LOAD holds the symbol');
    const fileOff = vaddr - load!.vaddr + load!.off;
    const start = 0x555500000000n, pgoff = load!.off & ~0xfffn;
    mkdirSync(path.join(dir, '9'));
    writeFileSync(path.join(dir, '9', 'maps'), `${start.toString(16)}-${(start + load!.filesz + 0x2000n).toString(16)} r-xp ${pgoff.toString(16)} fe:00 123 ${bin}\n`);
    const t = createMappingTable(dir);
    t.refresh([9]);
    rmSync(path.join(dir, '9'), { recursive: true }); // the process exits
    t.refresh([9]); // keeps the last table
    const addr = start + (fileOff - pgoff) + 1n;
    const f = t.nameFromLastMaps(9, addr, false);
    assert.equal(f?.function, 'napi_create_object');
    assert.equal(f?.module, bin);
    assert.equal(BigInt(f!.offset), fileOff + 1n);
    assert.ok(t.mappingOf(9, bin, addr)?.start === start);
    // a return address at the function's first byte is the call at the end of the one before
    assert.notEqual(t.nameFromLastMaps(9, addr - 1n, true)?.function, 'napi_create_object');
    assert.equal(t.nameFromLastMaps(10, addr, false), null, 'a process never seen');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
