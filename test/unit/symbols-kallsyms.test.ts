/**
 * collector/symbols/kallsyms.ts: the parser on table cases (text types only,
 * modules, aliases, kptr_restrict zeros), and when the symboliser reads a
 * kallsyms file again (a file of ours, grown like the kernel's). This machine's /proc/kallsyms (root
 * only) is read in test/native/symbols-root.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KERNEL_MODULE, parseKallsyms } from '../../collector/symbols/kallsyms.ts';
import { createSymbolizer } from '../../collector/symbols/index.ts';

const TEXT = [
  'ffffffff81000000 T _text',
  'ffffffff81000100 t helper_a',
  'ffffffff81000180 D some_data', // data: never a function boundary
  'ffffffff81000200 T func_b',
  'ffffffff81000200 T func_b_alias', // an alias at the same address: the first one wins
  'ffffffff81000300 W weak_c',
  'ffffffffc0010000 t mod_fn\t[ext4]',
  'ffffffffc0010040 T mod_fn2\t[ext4]',
  'ffffffffc0200000 t bpf_prog_abc_rf_x\t[bpf]',
  'garbage line',
  '',
].join('\n');

test('kallsyms: addresses to function + offset + module (table)', () => {
  const k = parseKallsyms(TEXT);
  assert.equal(k.restricted, false);
  const cases: [string, bigint, string | null, number, string][] = [
    ['before the first symbol', 0xffffffff80ffffffn, null, 0, ''],
    ['a function start', 0xffffffff81000100n, 'helper_a', 0, KERNEL_MODULE],
    ['inside, across a data symbol', 0xffffffff810001c0n, 'helper_a', 0xc0, KERNEL_MODULE],
    ['alias: first name in file order', 0xffffffff81000208n, 'func_b', 8, KERNEL_MODULE],
    ['weak symbol', 0xffffffff81000301n, 'weak_c', 1, KERNEL_MODULE],
    ['module symbol', 0xffffffffc0010010n, 'mod_fn', 0x10, '[ext4]'],
    ['second module symbol', 0xffffffffc0010044n, 'mod_fn2', 4, '[ext4]'],
    ['a BPF program', 0xffffffffc0200020n, 'bpf_prog_abc_rf_x', 0x20, '[bpf]'],
  ];
  for (const [name, addr, fn, off, mod] of cases) {
    const s = k.lookup(addr);
    if (fn === null) { assert.equal(s, null, name); continue; }
    assert.ok(s, name);
    assert.equal(s.name, fn, name);
    assert.equal(s.offset, off, name);
    assert.equal(s.module, mod, name);
  }
});

test('kallsyms: module bases and the core kernel\'s end', () => {
  const k = parseKallsyms(TEXT);
  assert.equal(k.base(KERNEL_MODULE), 0xffffffff81000000n);
  assert.equal(k.base('[ext4]'), 0xffffffffc0010000n);
  assert.equal(k.base('[nope]'), null);
  assert.equal(k.coreEnd, 0xffffffff81000300n);
});

test('symbolize: kallsyms is read again for a miss above the core kernel (a module loaded since), at most once per kallsymsRereadMs, never for a miss inside it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-sym-kallsyms-'));
  try {
    const file = path.join(dir, 'kallsyms');
    // a core kernel whose text goes on far past weak_c
    fs.writeFileSync(file, `${TEXT}ffffffff81400000 T core_last\n`);
    let clock = 0;
    const sym = createSymbolizer({ kallsymsPath: file, now: () => clock, kallsymsRereadMs: 60_000 });
    const inNewModule = 0xffffffffc0300010n;
    const farInCore = 0xffffffff81100000n; // 1 MiB past weak_c, below core_last: a hole in the core kernel
    assert.equal(sym.symbolize(0, [inNewModule], true)[0]!.function, null);
    fs.appendFileSync(file, 'ffffffffc0300000 t newmod_fn\t[newmod]\nffffffff810ff000 T late_core_fn\n');
    clock += 30_000;
    assert.equal(sym.symbolize(0, [inNewModule], true)[0]!.function, null, 'within the rate limit');
    clock += 30_000;
    assert.equal(sym.symbolize(0, [farInCore], true)[0]!.function, null, 'a core miss does not re-read');
    const [f] = sym.symbolize(0, [inNewModule], true);
    assert.equal(f!.function, 'newmod_fn');
    assert.equal(f!.module, '[newmod]');
    assert.equal(f!.offset, 0x10);
    // the re-read table also has the core symbol now
    assert.equal(sym.symbolize(0, [farInCore], true)[0]!.function, 'late_core_fn');
    assert.equal(sym.stats().unknownBy.no_kernel_symbol, 3);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('kallsyms: kptr_restrict (every address 0) reads as restricted and resolves nothing', () => {
  const k = parseKallsyms('0000000000000000 T _text\n0000000000000000 T schedule\n0000000000000000 t x\t[ext4]\n');
  assert.equal(k.restricted, true);
  assert.equal(k.size, 0);
  assert.equal(k.lookup(0xffffffff81000000n), null);
});
