/**
 * collector/symbols/kallsyms.ts: the parser on table cases (text types only,
 * modules, aliases, kptr_restrict zeros). This machine's /proc/kallsyms (root
 * only) is read in test/native/symbols-root.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KERNEL_MODULE, parseKallsyms } from '../../collector/symbols/kallsyms.ts';

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

test('kallsyms: kptr_restrict (every address 0) reads as restricted and resolves nothing', () => {
  const k = parseKallsyms('0000000000000000 T _text\n0000000000000000 T schedule\n0000000000000000 t x\t[ext4]\n');
  assert.equal(k.restricted, true);
  assert.equal(k.size, 0);
  assert.equal(k.lookup(0xffffffff81000000n), null);
});
