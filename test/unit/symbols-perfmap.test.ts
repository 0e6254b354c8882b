/**
 * collector/symbols/perfmap.ts: perf map lines (table), later entries winning
 * over earlier ones they overlap (against a naive model, for random maps: the
 * append, splice and rebuild paths), reading a growing file incrementally
 * (a half-written last line is read again), NSpid; and a live
 * `node --perf-basic-prof` process running a named hot function: its perf map
 * lists it and `symbolize` names an address from the map as that function (JIT).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { nsPidOfStatus, openPerfMap, parseJitName, parsePerfMapLines, PerfMapTable, type JitName, type PerfMapEntry } from '../../collector/symbols/perfmap.ts';
import { createSymbolizer } from '../../collector/symbols/index.ts';

const children: ChildProcess[] = [];
after(() => { for (const c of children) c.kill('SIGKILL'); });

test('perf map: lines (table)', () => {
  // [name, text, entries, what is left unread for the next refresh]
  const cases: [string, string, PerfMapEntry[], string][] = [
    ['node', '7f71a8003c00 2a8 JS:*rfHotLoop [eval]:1:19\n', [{ start: 0x7f71a8003c00, size: 0x2a8, name: 'JS:*rfHotLoop [eval]:1:19' }], ''],
    ['0x prefixes (JVM agents)', '0x7f00001000 0x40 Ljava/lang/String;hashCode()I\n', [{ start: 0x7f00001000, size: 0x40, name: 'Ljava/lang/String;hashCode()I' }], ''],
    ['name with spaces', '1000 10 Builtin: a b c\n', [{ start: 0x1000, size: 0x10, name: 'Builtin: a b c' }], ''],
    ['half-written last line is left for later', '1000 10 a\n2000 1', [{ start: 0x1000, size: 0x10, name: 'a' }], '2000 1'],
    ['no newline yet', '1000 10 a', [], '1000 10 a'],
    ['CRLF', '1000 10 a\r\n', [{ start: 0x1000, size: 0x10, name: 'a' }], ''],
    ['bad lines skipped', 'zz 10 a\n1000 0 empty\n1000 10\n\n3000 8 ok\n', [{ start: 0x3000, size: 8, name: 'ok' }], ''],
    ['above user space is no address', 'ffffffffff600000 10 x\n', [], ''],
  ];
  for (const [name, text, entries, left] of cases) {
    const r = parsePerfMapLines(text);
    assert.deepEqual(r.entries, entries, name);
    assert.equal(text.slice(r.consumed), left, name);
  }
});

/** The model: the last entry in file order that holds the address. */
function naive(entries: readonly PerfMapEntry[], a: number): string | null {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (a >= e.start && a < e.start + e.size) return e.name;
  }
  return null;
}

test('perf map: a later entry wins where it overlaps earlier ones (property, append/splice/rebuild)', () => {
  const entry = fc.record({ start: fc.integer({ min: 0, max: 400 }), size: fc.integer({ min: 1, max: 60 }) });
  // spliceMax 0: every out-of-order batch rebuilds; 1e9: every entry is spliced; 32: both, as in use
  fc.assert(fc.property(fc.constantFrom(0, 32, 1e9), fc.array(fc.array(entry, { maxLength: 80 }), { minLength: 1, maxLength: 4 }), (spliceMax, batches) => {
    const t = new PerfMapTable(spliceMax);
    const all: PerfMapEntry[] = [];
    let k = 0;
    for (const batch of batches) {
      const es = batch.map((e) => ({ ...e, name: `f${k++}` }));
      t.add(es);
      all.push(...es);
      for (let a = 0; a < 470; a++) {
        const got = t.lookup(a);
        assert.equal(got?.name ?? null, naive(all, a), `address ${a}`);
        if (got) {
          const e = all.find((x) => x.name === got.name)!;
          assert.equal(got.start, e.start);
          assert.equal(got.offset, a - e.start);
        }
      }
    }
  }), { numRuns: 400 });
});

test('perf map file: read as it grows, a half-written line read again, a recreated file read from its start', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sym-perfmap-'));
  try {
    // our own process: /proc/self/root is /, so the file is DIR/perf-PID.map
    const file = path.join(dir, `perf-${process.pid}.map`);
    const pm = openPerfMap('/proc', process.pid, { minIntervalMs: 100, dir });
    assert.equal(pm.refresh(0), false, 'absent');
    assert.equal(pm.exists, false);
    fs.writeFileSync(file, '1000 100 first\n2000 10');
    assert.equal(pm.refresh(100), true);
    assert.equal(pm.lookup(0x1010)?.name, 'first');
    assert.equal(pm.lookup(0x2001), null, 'half a line is not an entry');
    fs.appendFileSync(file, '0 second\n3000 10 third\n');
    assert.equal(pm.refresh(150), true);
    assert.equal(pm.lookup(0x2001), null, 'rate-limited: not read again yet');
    pm.refresh(200);
    assert.equal(pm.lookup(0x2001)?.name, 'second');
    assert.equal(pm.lookup(0x3000)?.name, 'third');
    // code freed and the range reused: the later line wins
    fs.appendFileSync(file, '1000 80 reused\n');
    pm.refresh(300);
    assert.equal(pm.lookup(0x1010)?.name, 'reused');
    assert.equal(pm.lookup(0x1090)?.name, 'first', 'the old entry keeps what the new one does not cover');
    // a new file under the name (smaller than what was read): read from its start
    fs.rmSync(file);
    fs.writeFileSync(file, '5000 10 fresh\n');
    pm.refresh(400);
    assert.equal(pm.lookup(0x5004)?.name, 'fresh');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('perf map file: a map that outgrows maxFileBytes keeps its tail (the newest code), never a line read from its middle', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sym-perfmap-'));
  try {
    const file = path.join(dir, `perf-${process.pid}.map`);
    // lines of varying length, so the cut falls inside lines; addresses whose
    // suffixes are valid hex (a line read from its middle would name a wrong address)
    const all: PerfMapEntry[] = [];
    const lines = (from: number, n: number): string => {
      let t = '';
      for (let i = from; i < from + n; i++) {
        const e = { start: 0x7f0000100000 + i * 0x40, size: 0x40, name: `fn_${i}_${'x'.repeat(i % 23)}` };
        all.push(e);
        t += `${e.start.toString(16)} ${e.size.toString(16)} ${e.name}\n`;
      }
      return t;
    };
    fs.writeFileSync(file, lines(0, 300));
    // the line the cut falls into: read from the cut on, it must not become an entry
    const text = fs.readFileSync(file, 'latin1');
    const cut = text.length - 2048;
    const suffix = parsePerfMapLines(text.slice(cut, text.indexOf('\n', cut) + 1)).entries;
    assert.equal(suffix.length, 1, 'the test cuts a line into something that parses');
    const pm = openPerfMap('/proc', process.pid, { minIntervalMs: 0, dir, maxFileBytes: 4096 });
    let clock = 0;
    const check = (): number => {
      let named = 0;
      for (const e of all) {
        for (const a of [e.start, e.start + 0x3f]) {
          const got = pm.lookup(a);
          if (got) { named++; assert.equal(got.name, naive(all, a), `address ${a.toString(16)}`); }
        }
      }
      return named;
    };
    pm.refresh(clock++);
    assert.equal(pm.truncations, 1);
    assert.equal(pm.lookup(suffix[0]!.start), null, `the cut line's end (${JSON.stringify(suffix[0])}) is not an entry`);
    assert.equal(pm.lookup(all[0]!.start), null, 'the oldest code is dropped');
    assert.equal(pm.lookup(all[299]!.start)?.name, all[299]!.name, 'the newest is held');
    const first = check();
    assert.ok(first > 40 && first < 300, `about half the budget held: ${first / 2} entries`);
    // growing by less than the budget: appended, no cut
    fs.appendFileSync(file, lines(300, 20));
    pm.refresh(clock++);
    assert.equal(pm.truncations, 1);
    assert.equal(pm.lookup(all[319]!.start)?.name, all[319]!.name);
    // growing past it again: cut again, still only whole lines
    fs.appendFileSync(file, lines(320, 200));
    pm.refresh(clock++);
    assert.equal(pm.truncations, 2);
    assert.equal(pm.lookup(all[519]!.start)?.name, all[519]!.name);
    check();
    assert.ok(pm.bytes < 64 * 1024, `bytes held ${pm.bytes}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('perf map: V8 names to function, script and line, the tier mark apart (table)', () => {
  const j = (fn: string, file: string | null, line: number | null, tier: string): JitName => ({ function: fn, file, line, tier });
  const cases: [string, string, JitName][] = [
    ['TurboFan (Node >= 20)', 'JS:*rfHotLoop [eval]:1:19', j('rfHotLoop', '[eval]', 1, '*')],
    ['interpreted', 'JS:~rfHotLoop [eval]:1:19', j('rfHotLoop', '[eval]', 1, '~')],
    ['Maglev', 'JS:+handle /srv/app/server.js:42:7', j('handle', '/srv/app/server.js', 42, '+')],
    ['Sparkplug', 'JS:^parse node:internal/url:120:3', j('parse', 'node:internal/url', 120, '^')],
    ['the quote after the mark (Node 24)', "JS:*'rfHotLoop [eval]:1:19", j('rfHotLoop', '[eval]', 1, '*')],
    ['anonymous', 'JS:~ /app/index.js:10:5', j('(anonymous)', '/app/index.js', 10, '~')],
    ['a name with a space', 'JS:*get size /app/a.js:3:14', j('get size', '/app/a.js', 3, '*')],
    ['older Node: LazyCompile with a space', 'LazyCompile: *processData app.js:42:1', j('processData', 'app.js', 42, '*')],
    ['older Node: Script', 'Script:~ /app/main.js:1:1', j('(anonymous)', '/app/main.js', 1, '~')],
    ['a path with colons', 'JS:*f file:///app/x.mjs:7:2', j('f', 'file:///app/x.mjs', 7, '*')],
    ['no position', 'JS:*f', j('f', null, null, '*')],
    ['builtin: kept whole', 'Builtin:ArrayPrototypePush', j('Builtin:ArrayPrototypePush', null, null, '')],
    ['bytecode handler: kept whole', 'BytecodeHandler:LdaZero', j('BytecodeHandler:LdaZero', null, null, '')],
    ['JVM agent: kept whole', 'Ljava/lang/String;hashCode()I', j('Ljava/lang/String;hashCode()I', null, null, '')],
  ];
  for (const [name, raw, want] of cases) assert.deepEqual(parseJitName(raw), want, name);
});

test('perf map: NSpid (the pid inside the container names the file) (table)', () => {
  const cases: [string, string, number][] = [
    ['host process', 'Name:\tnode\nNSpid:\t4242\n', 4242],
    ['in a container', 'Name:\tnode\nNSpid:\t4242\t17\n', 17],
    ['nested', 'NSpid:\t4242 17 1\n', 1],
    ['old kernel, no NSpid', 'Name:\tnode\n', 4242],
  ];
  for (const [name, status, want] of cases) assert.equal(nsPidOfStatus(status, 4242), want, name);
});

const v8LogDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-v8log-'));
after(() => fs.rmSync(v8LogDir, { recursive: true, force: true }));

test('symbolize: a node --perf-basic-prof process\'s hot JS function is named from its perf map (JIT)', async () => {
  const script = 'function rfHotLoop(n){let s=0;for(let i=0;i<n;i++)s+=i%7;return s}\n' +
    'process.stdout.write("ready\\n"); setInterval(()=>{}, 1000); for(;;){ rfHotLoop(1e5); }';
  const child = spawn(process.execPath, ['--perf-basic-prof', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: v8LogDir }); // V8 writes an isolate-*.log into its cwd
  children.push(child);
  const pid = child.pid!;
  const mapFile = `/tmp/perf-${pid}.map`;
  try {
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    // wait for the optimising compiler's code for it (a `*` entry), else any entry
    let line: string | undefined;
    for (let i = 0; i < 500; i++) {
      const text = fs.existsSync(mapFile) ? fs.readFileSync(mapFile, 'utf8') : '';
      const lines = text.split('\n').filter((l) => /\brfHotLoop\b/.test(l));
      line = lines.find((l) => / JS:\*rfHotLoop /.test(l)) ?? (i > 200 ? lines[0] : undefined);
      if (line) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(line, 'the perf map lists rfHotLoop');
    const [startHex, sizeHex] = line.split(' ');
    const start = BigInt(`0x${startHex}`);
    const size = parseInt(sizeHex!, 16);
    const sym = createSymbolizer();
    const inside = start + BigInt(Math.min(size - 1, 7));
    const [f] = sym.symbolize(pid, [inside], false);
    // one name whatever tier the code is at; the script and line from the map
    assert.equal(f!.function, 'rfHotLoop');
    assert.equal(f!.file, '[eval]');
    assert.equal(f!.line, 1);
    assert.equal(f!.kind, 'JIT');
    assert.equal(f!.module, '[jit]');
    assert.equal(f!.functionOffset, Number(inside - start));
    assert.equal(f!.address, inside);
    // node's own native code next to it is named from its ELF, not the perf map
    const exe = fs.readlinkSync(`/proc/${pid}/exe`);
    const text = fs.readFileSync(`/proc/${pid}/maps`, 'latin1').split('\n').find((l) => l.includes(' r-xp ') && l.endsWith(exe))!;
    const [lo] = text.split(' ')[0]!.split('-');
    const [g] = sym.symbolize(pid, [BigInt(`0x${lo}`) + 0x1000n], false);
    assert.equal(g!.kind, 'USER');
    assert.equal(g!.module, exe);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(mapFile, { force: true });
  }
});

test('symbolize: JIT code in a memfd (no ELF) is named from the perf map; without one it keeps memfd + offset', async () => {
  const py = spawn('python3', ['-c', [
    'import mmap, os, sys',
    'fd = os.memfd_create("rfjit")',
    'os.write(fd, b"\\xc3" * 8192)',
    'm = mmap.mmap(fd, 8192, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_EXEC)',
    'print("ok", flush=True)',
    'sys.stdin.read()',
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(py);
  const pid = py.pid!;
  const mapFile = `/tmp/perf-${pid}.map`;
  try {
    await new Promise<void>((resolve) => py.stdout!.once('data', () => resolve()));
    const line = fs.readFileSync(`/proc/${pid}/maps`, 'latin1').split('\n').find((l) => l.includes('/memfd:rfjit'));
    assert.ok(line, 'the memfd is mapped');
    const start = parseInt(line.split('-')[0]!, 16);
    const before = createSymbolizer().symbolize(pid, [BigInt(start + 0x10)], false)[0]!;
    assert.equal(before.function, null);
    assert.equal(before.module, '/memfd:rfjit');
    assert.equal(before.offset, 0x10);
    fs.writeFileSync(mapFile, `${start.toString(16)} 100 jitted_fn\n`);
    const [f] = createSymbolizer().symbolize(pid, [BigInt(start + 0x10)], false);
    assert.equal(f!.function, 'jitted_fn');
    assert.equal(f!.kind, 'JIT');
    assert.equal(f!.functionOffset, 0x10);
  } finally {
    py.kill('SIGKILL');
    fs.rmSync(mapFile, { force: true });
  }
});
