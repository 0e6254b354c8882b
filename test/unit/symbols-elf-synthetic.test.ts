/**
 * collector/symbols/elf.ts as a pure decoder: ELF images built here byte by
 * byte (a small writer below, following the ELF-64 object file format) for the
 * cases a compiler does not produce on demand: aliases and which name wins,
 * zero-sized and nested symbols, imported/data/zero-valued symbols skipped,
 * file offsets through several PT_LOAD segments with different biases, the
 * build id from a section or, without section headers, from PT_NOTE, the
 * extended section count, and files that are not ELF64 little endian or are
 * cut short (ElfError, never another exception).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bufferReader, ElfError, fileOffsetToVaddr, parseElf } from '../../collector/symbols/elf.ts';

type Sym = { name: string; value: number; size: number; type?: number; bind?: number; shndx?: number };
type Load = { offset: number; vaddr: number; filesz: number };
type Spec = {
  loads?: Load[];
  symtab?: Sym[];
  dynsym?: Sym[];
  buildId?: string;
  /** put the build id note in a PT_NOTE only and write no section headers */
  noSections?: boolean;
  /** write e_shnum = 0 and the count in section 0's sh_size (as for > 0xff00 sections) */
  extendedCount?: boolean;
  debuglink?: string;
  type?: number;
};

const STT_FUNC = 2, STT_OBJECT = 1, STB_GLOBAL = 1, STB_WEAK = 2, STB_LOCAL = 0;

function strtab(names: string[]): { buf: Buffer; off: Map<string, number> } {
  const off = new Map<string, number>();
  const parts: Buffer[] = [Buffer.from([0])];
  let at = 1;
  for (const n of names) {
    if (off.has(n)) continue;
    off.set(n, at);
    const b = Buffer.from(`${n}\0`, 'utf8');
    parts.push(b);
    at += b.length;
  }
  return { buf: Buffer.concat(parts), off };
}

function symbols(syms: Sym[], strs: Map<string, number>): Buffer {
  const b = Buffer.alloc(24 * (syms.length + 1)); // entry 0: the null symbol
  syms.forEach((s, i) => {
    const o = 24 * (i + 1);
    b.writeUInt32LE(strs.get(s.name)!, o);
    b[o + 4] = ((s.bind ?? STB_GLOBAL) << 4) | (s.type ?? STT_FUNC);
    b.writeUInt16LE(s.shndx ?? 1, o + 6);
    b.writeBigUInt64LE(BigInt(s.value), o + 8);
    b.writeBigUInt64LE(BigInt(s.size), o + 16);
  });
  return b;
}

function note(buildId: string): Buffer {
  const desc = Buffer.from(buildId, 'hex');
  const b = Buffer.alloc(12 + 4 + ((desc.length + 3) & ~3));
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(desc.length, 4);
  b.writeUInt32LE(3, 8); // NT_GNU_BUILD_ID
  b.write('GNU\0', 12, 'latin1');
  desc.copy(b, 16);
  return b;
}

/** Writes an ELF64 LE image: header, program headers, section data, section headers. */
function buildElf(spec: Spec): Buffer {
  const loads = spec.loads ?? [{ offset: 0, vaddr: 0, filesz: 0x10000 }];
  const nt = spec.buildId ? note(spec.buildId) : null;
  const phnum = loads.length + (nt ? 1 : 0);
  const chunks: { name: string; type: number; data: Buffer; link?: number; entsize?: number }[] = [];
  if (nt) chunks.push({ name: '.note.gnu.build-id', type: 7, data: nt });
  const addTable = (syms: Sym[] | undefined, name: string, strName: string, type: number): void => {
    if (!syms) return;
    const s = strtab(syms.map((x) => x.name));
    chunks.push({ name: strName, type: 3, data: s.buf });
    chunks.push({ name, type, data: symbols(syms, s.off), link: chunks.length - 1, entsize: 24 }); // the string table just pushed
  };
  addTable(spec.dynsym, '.dynsym', '.dynstr', 11);
  addTable(spec.symtab, '.symtab', '.strtab', 2);
  if (spec.debuglink) chunks.push({ name: '.gnu_debuglink', type: 1, data: Buffer.concat([Buffer.from(`${spec.debuglink}\0`), Buffer.alloc(8)]) });
  const sh = strtab(['.shstrtab', ...chunks.map((c) => c.name)]);
  chunks.push({ name: '.shstrtab', type: 3, data: sh.buf });

  let at = 64 + 56 * phnum;
  const placed = chunks.map((c) => { at = (at + 7) & ~7; const p = { ...c, offset: at }; at += c.data.length; return p; });
  at = (at + 7) & ~7;
  const shoff = spec.noSections ? 0 : at;
  const shnum = spec.noSections ? 0 : placed.length + 1; // + the null section
  const size = Math.max(shoff + 64 * shnum, at, ...loads.map((l) => l.offset + l.filesz));
  const b = Buffer.alloc(size);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; b[5] = 1; b[6] = 1;
  b.writeUInt16LE(spec.type ?? 3, 16);
  b.writeUInt16LE(62, 18);
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(64n, 32);
  b.writeBigUInt64LE(BigInt(shoff), 40);
  b.writeUInt16LE(64, 52);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(phnum, 56);
  b.writeUInt16LE(64, 58);
  b.writeUInt16LE(spec.extendedCount ? 0 : shnum, 60);
  b.writeUInt16LE(spec.noSections ? 0 : placed.length, 62); // .shstrtab is the last section
  loads.forEach((l, i) => {
    const o = 64 + 56 * i;
    b.writeUInt32LE(1, o); // PT_LOAD
    b.writeUInt32LE(5, o + 4);
    b.writeBigUInt64LE(BigInt(l.offset), o + 8);
    b.writeBigUInt64LE(BigInt(l.vaddr), o + 16);
    b.writeBigUInt64LE(BigInt(l.filesz), o + 32);
    b.writeBigUInt64LE(BigInt(l.filesz), o + 40);
  });
  if (nt) {
    const o = 64 + 56 * loads.length;
    b.writeUInt32LE(4, o); // PT_NOTE
    b.writeBigUInt64LE(BigInt(placed[0]!.offset), o + 8);
    b.writeBigUInt64LE(BigInt(nt.length), o + 32);
  }
  for (const c of placed) c.data.copy(b, c.offset);
  if (!spec.noSections) {
    if (spec.extendedCount) b.writeBigUInt64LE(BigInt(shnum), shoff + 32);
    placed.forEach((c, i) => {
      const o = shoff + 64 * (i + 1);
      b.writeUInt32LE(sh.off.get(c.name)!, o);
      b.writeUInt32LE(c.type, o + 4);
      b.writeBigUInt64LE(BigInt(c.offset), o + 24);
      b.writeBigUInt64LE(BigInt(c.data.length), o + 32);
      b.writeUInt32LE(c.link !== undefined ? c.link + 1 : 0, o + 40); // +1: the null section
      b.writeBigUInt64LE(BigInt(c.entsize ?? 0), o + 56);
    });
  }
  return b;
}

const elf = (spec: Spec) => parseElf(bufferReader(buildElf(spec)));

test('elf (synthetic): which name an address gets (table)', () => {
  const f = elf({
    symtab: [
      { name: '__read', value: 0x1000, size: 0x20 },
      { name: 'read', value: 0x1000, size: 0x20 },
      { name: '_read', value: 0x1000, size: 0x20, bind: STB_WEAK },
      { name: '_IO_fread', value: 0x1100, size: 0x40 },
      { name: 'fread', value: 0x1100, size: 0x40, bind: STB_WEAK },
      { name: 'label_zero', value: 0x1200, size: 0 },
      { name: '__sized', value: 0x1200, size: 0x10 },
      { name: 'local_b', value: 0x1300, size: 0x10, bind: STB_LOCAL },
      { name: 'global_b', value: 0x1300, size: 0x10 },
      { name: 'outer', value: 0x2000, size: 0x100 },
      { name: 'inner', value: 0x2010, size: 0x10 },
      { name: 'asm_entry', value: 0x3000, size: 0 },
      { name: 'after_asm', value: 0x3100, size: 0x10 },
      { name: 'imported', value: 0x4000, size: 0x10, shndx: 0 },
      { name: 'a_table', value: 0x5000, size: 0x100, type: STT_OBJECT },
      { name: 'at_zero', value: 0, size: 0x100 },
      { name: 'héllo_ünicode', value: 0x6000, size: 0x10 },
    ],
  });
  const cases: [string, number, string | null, number?][] = [
    ['aliases: the fewest leading underscores', 0x1004, 'read', 4],
    ['aliases: weak but without underscores beats global _IO_', 0x1100, 'fread', 0],
    ['aliases: sized beats zero-sized', 0x1204, '__sized', 4],
    ['aliases: global beats local', 0x1308, 'global_b', 8],
    ['nested: inside the inner one', 0x2014, 'inner', 4],
    ['nested: past the inner one, the outer still holds it', 0x2050, 'outer', 0x50],
    ['zero-sized symbol reaches the next one', 0x3080, 'asm_entry', 0x80],
    ['past a sized symbol, nothing encloses', 0x1340, null],
    ['an imported (undefined) symbol is no function here', 0x4004, null],
    ['a data object is no function', 0x5004, null],
    ['value 0 is skipped', 0x10, null],
    ['UTF-8 names', 0x6001, 'héllo_ünicode', 1],
  ];
  for (const [name, vaddr, want, off] of cases) {
    const s = f.symbols.lookup(vaddr);
    assert.equal(s?.name ?? null, want, name);
    if (want !== null && off !== undefined) assert.equal(s!.offset, off, name);
  }
});

test('elf (synthetic): file offsets through PT_LOAD segments, PIE and non-PIE (table)', () => {
  const cases: [string, Load[], number, number | null][] = [
    ['PIE: offset = address', [{ offset: 0, vaddr: 0, filesz: 0x3000 }], 0x1234, 0x1234],
    ['non-PIE: 0x400000 base', [{ offset: 0, vaddr: 0x400000, filesz: 0x3000 }], 0x1234, 0x401234],
    ['second segment with its own bias (data after a page gap)', [{ offset: 0, vaddr: 0, filesz: 0x1000 }, { offset: 0x1000, vaddr: 0x3000, filesz: 0x1000 }], 0x1010, 0x3010],
    ['libc-like text segment', [{ offset: 0, vaddr: 0, filesz: 0x25388 }, { offset: 0x26000, vaddr: 0x26000, filesz: 0x1550fc }], 0x26010, 0x26010],
    ['between segments: nothing', [{ offset: 0, vaddr: 0, filesz: 0x1000 }, { offset: 0x2000, vaddr: 0x2000, filesz: 0x1000 }], 0x1800, null],
    ['past the end', [{ offset: 0, vaddr: 0, filesz: 0x1000 }], 0x1000, null],
  ];
  for (const [name, loads, off, want] of cases) assert.equal(fileOffsetToVaddr(loads, off), want, name);
  // and through parseElf: a non-PIE executable's symbol found from its file offset
  const f = elf({ type: 2, loads: [{ offset: 0, vaddr: 0x400000, filesz: 0x4000 }], symtab: [{ name: 'main', value: 0x401100, size: 0x40 }] });
  assert.equal(f.headers.type, 'EXEC');
  assert.equal(f.lookupFileOffset(0x1120)?.name, 'main');
  assert.equal(f.lookupFileOffset(0x1120)?.offset, 0x20);
  assert.equal(f.lookupFileOffset(0x9000), null);
});

test('elf (synthetic): tables, build id, debuglink, extended section count', () => {
  const id = '0123456789abcdef0123456789abcdef01234567';
  const both = elf({ buildId: id, symtab: [{ name: 'static_fn', value: 0x1000, size: 8, bind: STB_LOCAL }], dynsym: [{ name: 'exported', value: 0x2000, size: 8 }], debuglink: 'libx.so.debug' });
  assert.equal(both.buildId, id);
  assert.deepEqual([...both.symbols.sources].sort(), ['.dynsym', '.symtab']);
  assert.equal(both.symbols.lookup(0x1001)?.name, 'static_fn');
  assert.equal(both.symbols.lookup(0x2001)?.name, 'exported');
  assert.equal(both.headers.debuglink, 'libx.so.debug');
  // stripped (Debian): .dynsym only
  const stripped = elf({ dynsym: [{ name: 'exported', value: 0x2000, size: 8 }] });
  assert.deepEqual([...stripped.symbols.sources], ['.dynsym']);
  assert.equal(stripped.buildId, null);
  // no section headers at all: the build id from PT_NOTE, no symbols, no throw
  const bare = elf({ buildId: id, noSections: true, symtab: [{ name: 'x', value: 0x1000, size: 8 }] });
  assert.equal(bare.buildId, id);
  assert.equal(bare.symbols.size, 0);
  assert.equal(bare.lookupFileOffset(0x1000), null);
  // e_shnum = 0: the count is in section 0
  const ext = elf({ extendedCount: true, symtab: [{ name: 'far', value: 0x1000, size: 8 }] });
  assert.equal(ext.symbols.lookup(0x1004)?.name, 'far');
});

test('elf (synthetic): not ELF64 LE, or cut short: ElfError (table)', () => {
  const good = buildElf({ symtab: [{ name: 'f', value: 0x1000, size: 8 }] });
  const patch = (at: number, v: number): Buffer => { const b = Buffer.from(good); b[at] = v; return b; };
  const shoff = Number(good.readBigUInt64LE(40));
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /too short/],
    ['text', Buffer.from('#!/bin/sh\n'.padEnd(80, ' ')), /too short|not an ELF/],
    ['not ELF magic', patch(0, 0x7e), /not an ELF/],
    ['ELF32', patch(4, 1), /not ELF64/],
    ['big endian', patch(5, 2), /not little endian/],
    ['section headers past the end', good.subarray(0, shoff + 10), /past the end/],
    ['program headers past the end', good.subarray(0, 80), /past the end/],
  ];
  for (const [name, buf, msg] of cases) {
    assert.throws(() => parseElf(bufferReader(buf)), (e: unknown) => e instanceof ElfError && msg.test(e.message), name);
  }
});

test('elf (synthetic): damaged images (random bytes changed, cut anywhere) give a table or an ElfError, never another exception (property)', () => {
  const good = buildElf({
    buildId: '00112233445566778899aabbccddeeff00112233',
    loads: [{ offset: 0, vaddr: 0x400000, filesz: 0x2000 }, { offset: 0x2000, vaddr: 0x602000, filesz: 0x800 }],
    symtab: [{ name: 'a', value: 0x401000, size: 0x10 }, { name: 'b', value: 0x401010, size: 0 }],
    dynsym: [{ name: 'c', value: 0x401020, size: 0x20 }],
    debuglink: 'x.debug',
  });
  fc.assert(fc.property(
    fc.array(fc.record({ at: fc.nat(good.length - 1), v: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 12 }),
    fc.option(fc.nat(good.length), { nil: undefined }),
    (edits, cutAt) => {
      const b = Buffer.from(good);
      for (const e of edits) b[e.at] = e.v;
      const img = cutAt === undefined ? b : b.subarray(0, cutAt);
      let f;
      try { f = parseElf(bufferReader(img)); } catch (e) {
        assert.ok(e instanceof ElfError, `${(e as Error)?.name}: ${(e as Error)?.message}`);
        return;
      }
      for (const off of [0, 0x1000, 0x1004, 0x1020, 0x2000, 0x5000]) f.lookupFileOffset(off);
    },
  ), { numRuns: 2000 });
});
