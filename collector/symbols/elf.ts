/**
 * An ELF64 little-endian reader for symbolisation: file offset -> function.
 *
 * Why our own: what npm has for ELF (elfy, a few others) is small, unmaintained
 * and reads the whole file into memory; node's own binary is ~120 MB with a
 * 12 MB string table. We need five things and read only their bytes:
 *   - the file header (ELFCLASS64, ELFDATA2LSB, any machine: we never decode code);
 *   - program headers: PT_LOAD turns a file offset into the ELF virtual address
 *     the symbols use (vaddr = off - p_offset + p_vaddr for the segment holding
 *     off; one rule for PIE and non-PIE executables and shared libraries, since
 *     maps.ts already removed the load bias by working in file offsets);
 *   - section headers: .symtab and .dynsym with their string tables;
 *   - FUNC (and GNU_IFUNC) symbols that are defined, with their sizes;
 *   - the GNU build id note (NT_GNU_BUILD_ID in an SHT_NOTE section or PT_NOTE).
 *
 * Symbol tables: both .symtab and .dynsym when present. Debian's binaries and
 * libraries are stripped: only .dynsym (exported functions) is left, so a
 * static function of libc resolves to the exported function before it or to
 * nothing. `.gnu_debuglink` is noted (`debuglink`) but separate debug files
 * and debuginfod are out of scope, as are DWARF (file/line) and C++ demangling.
 *
 * Aliases (several names at one address: libc's `read` and `__read`, `fread`
 * and `_IO_fread`) keep one name: a sized one, then the fewest leading
 * underscores (the name a person wrote), then GLOBAL over WEAK over LOCAL.
 * Names are decoded only when looked up: a table holds typed arrays and the
 * raw string table, whose sizes are `bytes`.
 */
import fs from 'node:fs';

export class ElfError extends Error {
  constructor(message: string) { super(message); this.name = 'ElfError'; }
}

/** Random access to a file's bytes (a Buffer in tests, an fd in use). */
export type ElfReader = {
  readonly size: number;
  read(offset: number, length: number): Buffer;
};

export function bufferReader(buf: Buffer): ElfReader {
  return {
    size: buf.length,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > buf.length) throw new ElfError(`read of ${length} bytes at ${offset} past the end (${buf.length})`);
      return buf.subarray(offset, offset + length);
    },
  };
}

export function fdReader(fd: number, size: number): ElfReader {
  return {
    size,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) throw new ElfError(`read of ${length} bytes at ${offset} past the end (${size})`);
      const b = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const n = fs.readSync(fd, b, got, length - got, offset + got);
        if (n === 0) throw new ElfError(`file shorter than it said (${offset + got} of ${size})`);
        got += n;
      }
      return b;
    },
  };
}

const PT_LOAD = 1;
const PT_NOTE = 4;
const SHT_SYMTAB = 2;
const SHT_NOTE = 7;
const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const NT_GNU_BUILD_ID = 3;
/** decoded names kept per file (~100 bytes each, counted in `bytes`) */
const NAME_CACHE = 4096;

export type ElfType = 'REL' | 'EXEC' | 'DYN' | 'CORE' | 'OTHER';

export type LoadSegment = { offset: number; vaddr: number; filesz: number; memsz: number; flags: number };

export type Section = { name: string; type: number; addr: number; offset: number; size: number; link: number; entsize: number };

export type ElfHeaders = {
  type: ElfType;
  machine: number;
  loads: LoadSegment[];
  sections: Section[];
  buildId: string | null;
  debuglink: string | null;
};

/** u64 little endian as a number; values ≥ 2^53 lose their low bits (never user addresses). */
function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x1_0000_0000;
}

function parseNotes(b: Buffer): string | null {
  let p = 0;
  while (p + 12 <= b.length) {
    const namesz = b.readUInt32LE(p), descsz = b.readUInt32LE(p + 4), type = b.readUInt32LE(p + 8);
    const nameAt = p + 12;
    const descAt = nameAt + ((namesz + 3) & ~3);
    const next = descAt + ((descsz + 3) & ~3);
    if (next > b.length || next <= p) return null;
    if (type === NT_GNU_BUILD_ID && namesz === 4 && b.toString('latin1', nameAt, nameAt + 3) === 'GNU') {
      return b.toString('hex', descAt, descAt + descsz);
    }
    p = next;
  }
  return null;
}

/** File header, program headers, section headers, build id (throws ElfError on what is not an ELF64 LE file). */
export function readElfHeaders(r: ElfReader): ElfHeaders {
  if (r.size < 64) throw new ElfError('too short for an ELF header');
  const h = r.read(0, 64);
  if (h.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (h[4] !== 2) throw new ElfError('not ELF64');
  if (h[5] !== 1) throw new ElfError('not little endian');
  const et = h.readUInt16LE(16);
  const type: ElfType = et === 1 ? 'REL' : et === 2 ? 'EXEC' : et === 3 ? 'DYN' : et === 4 ? 'CORE' : 'OTHER';
  const machine = h.readUInt16LE(18);
  const phoff = u64(h, 32), shoff = u64(h, 40);
  const phentsize = h.readUInt16LE(54), phnum = h.readUInt16LE(56);
  const shentsize = h.readUInt16LE(58);
  let shnum = h.readUInt16LE(60);
  let shstrndx = h.readUInt16LE(62);

  const loads: LoadSegment[] = [];
  const notes: { offset: number; size: number }[] = [];
  if (phoff !== 0 && phnum > 0) {
    if (phentsize < 56) throw new ElfError(`program header entry size ${phentsize}`);
    const ph = r.read(phoff, phentsize * phnum);
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      const pt = ph.readUInt32LE(o);
      if (pt === PT_LOAD) loads.push({ flags: ph.readUInt32LE(o + 4), offset: u64(ph, o + 8), vaddr: u64(ph, o + 16), filesz: u64(ph, o + 32), memsz: u64(ph, o + 40) });
      else if (pt === PT_NOTE) notes.push({ offset: u64(ph, o + 8), size: u64(ph, o + 32) });
    }
  }

  const sections: Section[] = [];
  if (shoff !== 0) {
    if (shentsize < 64) throw new ElfError(`section header entry size ${shentsize}`);
    // more than 0xff00 sections: the real count and string table index live in section 0
    if (shnum === 0 || shstrndx === 0xffff) {
      const s0 = r.read(shoff, 64);
      if (shnum === 0) shnum = u64(s0, 32);
      if (shstrndx === 0xffff) shstrndx = s0.readUInt32LE(40);
    }
    if (shnum > 1_000_000) throw new ElfError(`${shnum} sections`);
    const sh = r.read(shoff, shentsize * shnum);
    const raw: (Section & { nameOff: number })[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = i * shentsize;
      raw.push({
        nameOff: sh.readUInt32LE(o), name: '', type: sh.readUInt32LE(o + 4), addr: u64(sh, o + 16),
        offset: u64(sh, o + 24), size: u64(sh, o + 32), link: sh.readUInt32LE(o + 40), entsize: u64(sh, o + 56),
      });
    }
    const strSec = raw[shstrndx];
    if (strSec && strSec.size > 0 && strSec.size < 16 << 20) {
      const names = r.read(strSec.offset, strSec.size);
      for (const s of raw) {
        const end = names.indexOf(0, s.nameOff);
        s.name = s.nameOff < names.length ? names.toString('latin1', s.nameOff, end < 0 ? names.length : end) : '';
      }
    }
    for (const { nameOff: _, ...s } of raw) sections.push(s);
  }

  let buildId: string | null = null;
  for (const s of sections) {
    if (s.type !== SHT_NOTE || s.size === 0 || s.size > 1 << 20) continue;
    buildId = parseNotes(r.read(s.offset, s.size));
    if (buildId) break;
  }
  if (!buildId) {
    for (const n of notes) {
      if (n.size === 0 || n.size > 1 << 20) continue;
      buildId = parseNotes(r.read(n.offset, n.size));
      if (buildId) break;
    }
  }
  let debuglink: string | null = null;
  const dl = sections.find((s) => s.name === '.gnu_debuglink');
  if (dl && dl.size > 0 && dl.size < 4096) {
    const b = r.read(dl.offset, dl.size);
    const end = b.indexOf(0);
    debuglink = b.toString('latin1', 0, end < 0 ? b.length : end);
  }
  return { type, machine, loads, sections, buildId, debuglink };
}

/** The ELF virtual address of a file offset (PT_LOAD holding it), or null. */
export function fileOffsetToVaddr(loads: readonly Pick<LoadSegment, 'offset' | 'vaddr' | 'filesz'>[], off: number): number | null {
  for (const l of loads) {
    if (off >= l.offset && off < l.offset + l.filesz) return off - l.offset + l.vaddr;
  }
  return null;
}

export type ElfSymbol = { name: string; start: number; size: number; offset: number };

export type SymbolTable = {
  readonly size: number;
  readonly bytes: number;
  /** which tables it was built from */
  readonly sources: readonly ('.symtab' | '.dynsym')[];
  lookup(vaddr: number): ElfSymbol | null;
};

/** Builds the function table from .symtab and .dynsym (either may be absent). */
export function readSymbols(r: ElfReader, headers: ElfHeaders): SymbolTable {
  const tables: { syms: Buffer; strs: Buffer; entsize: number; name: '.symtab' | '.dynsym' }[] = [];
  for (const type of [SHT_SYMTAB, SHT_DYNSYM]) {
    const s = headers.sections.find((x) => x.type === type);
    if (!s || s.size === 0) continue;
    const str = headers.sections[s.link];
    if (!str) continue;
    const entsize = s.entsize || 24;
    if (entsize < 24) throw new ElfError(`symbol entry size ${entsize}`);
    tables.push({ syms: r.read(s.offset, s.size), strs: r.read(str.offset, str.size), entsize, name: type === SHT_SYMTAB ? '.symtab' : '.dynsym' });
  }
  let total = 0;
  for (const t of tables) total += Math.floor(t.syms.length / t.entsize);
  const addr = new Float64Array(total);
  const size = new Float64Array(total);
  const nameOff = new Uint32Array(total);
  const table = new Uint8Array(total);
  const rank = new Float64Array(total);
  let n = 0;
  tables.forEach((t, ti) => {
    const count = Math.floor(t.syms.length / t.entsize);
    for (let i = 1; i < count; i++) { // entry 0 is the null symbol
      const o = i * t.entsize;
      const info = t.syms[o + 4]!;
      const st = info & 0xf;
      if (st !== STT_FUNC && st !== STT_GNU_IFUNC) continue;
      if (t.syms.readUInt16LE(o + 6) === 0) continue; // SHN_UNDEF: imported, not here
      const value = u64(t.syms, o + 8);
      if (value === 0) continue;
      const no = t.syms.readUInt32LE(o);
      if (no >= t.strs.length || t.strs[no] === 0) continue;
      const sz = u64(t.syms, o + 16);
      let us = 0;
      while (us < 8 && t.strs[no + us] === 0x5f) us++;
      const bind = info >> 4; // 0 LOCAL, 1 GLOBAL, 2 WEAK
      const bindRank = bind === 1 ? 0 : bind === 2 ? 1 : 2;
      addr[n] = value; size[n] = sz; nameOff[n] = no; table[n] = ti;
      rank[n] = (sz > 0 ? 0 : 1000) + us * 10 + bindRank + ti * 0.1;
      n++;
    }
  });
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => (addr[a]! - addr[b]!) || (rank[a]! - rank[b]!));
  // one entry per address: the best-ranked alias
  const A = new Float64Array(n), S = new Float64Array(n), N = new Uint32Array(n), T = new Uint8Array(n);
  let m = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    if (m > 0 && A[m - 1] === addr[i]) continue;
    A[m] = addr[i]!; S[m] = size[i]!; N[m] = nameOff[i]!; T[m] = table[i]!; m++;
  }
  // names decoded once, when first asked for (a profile names the same hot functions again and again)
  const decoded = new Map<number, string>();
  const nameOf = (j: number): string => {
    const hit = decoded.get(j);
    if (hit !== undefined) return hit;
    const name = decodeName(j);
    // bounded: a table that names everything over time starts again rather than growing
    if (decoded.size >= NAME_CACHE) decoded.clear();
    decoded.set(j, name);
    return name;
  };
  const decodeName = (j: number): string => {
    const strs = tables[T[j]!]!.strs;
    const o = N[j]!;
    const end = strs.indexOf(0, o);
    return strs.toString('utf8', o, end < 0 ? strs.length : end);
  };
  const symbol = (j: number, vaddr: number): ElfSymbol => ({ name: nameOf(j), start: A[j]!, size: S[j]!, offset: vaddr - A[j]! });
  const bytes = m * (8 + 8 + 4 + 1) + tables.reduce((b, t) => b + t.strs.length, 0) + Math.min(m, NAME_CACHE) * 100;
  return {
    size: m,
    bytes,
    sources: tables.map((t) => t.name),
    lookup(vaddr) {
      let lo = 0, hi = m - 1, at = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        if (A[mid]! <= vaddr) { at = mid; lo = mid + 1; } else hi = mid - 1;
      }
      if (at < 0) return null;
      if (S[at]! === 0 || vaddr < A[at]! + S[at]!) return symbol(at, vaddr);
      // past the nearest function's end: an enclosing one (a function with a
      // nested label symbol, or a cold part) may still hold it
      for (let j = at - 1; j >= 0 && j >= at - 8; j--) {
        if (S[j]! > 0 && vaddr < A[j]! + S[j]!) return symbol(j, vaddr);
      }
      return null;
    },
  };
}

export type ElfFile = {
  readonly headers: ElfHeaders;
  readonly symbols: SymbolTable;
  readonly buildId: string | null;
  readonly bytes: number;
  /** the function holding this file offset (maps.ts's normalised address), or null */
  lookupFileOffset(off: number): ElfSymbol | null;
};

export function parseElf(r: ElfReader): ElfFile {
  const headers = readElfHeaders(r);
  const symbols = readSymbols(r, headers);
  return {
    headers,
    symbols,
    buildId: headers.buildId,
    bytes: symbols.bytes + 512 + headers.sections.length * 64,
    lookupFileOffset(off) {
      const v = fileOffsetToVaddr(headers.loads, off);
      return v === null ? null : symbols.lookup(v);
    },
  };
}

/** Opens and parses one file; throws (ENOENT, EACCES, ElfError...) for the cache to count. */
export function openElf(path: string): ElfFile {
  const fd = fs.openSync(path, 'r');
  try {
    return parseElf(fdReader(fd, fs.fstatSync(fd).size));
  } finally {
    fs.closeSync(fd);
  }
}

export type ElfCacheOptions = {
  /** files kept (least recently used dropped; default 256) */
  maxFiles?: number;
  /** bytes of symbol tables kept (default 256 MiB: node's own binary takes ~20) */
  maxBytes?: number;
};

export type ElfLoad =
  | { ok: true; file: ElfFile; cached: boolean }
  | { ok: false; reason: 'file_unreadable' | 'not_elf'; cause: unknown; cached: boolean };

export type ElfCache = {
  /**
   * The parsed file at `path` (opened as given: callers pass /proc/PID/root/...
   * or /proc/PID/map_files/...), keyed by its (dev, inode, mtime): a file
   * replaced on disk is read again, the same file seen through another path
   * (another process, another container root) is not. A file that failed is
   * remembered as failed under the same key, so it is not read again and again.
   */
  get(path: string): ElfLoad;
  readonly size: number;
  bytes(): number;
  /** files parsed so far */
  readonly parsed: number;
  /** files evicted so far: a holder of an ElfFile checks this did not move before reusing it without get() */
  readonly evictions: number;
};

type CacheEntry = { load: ElfLoad; bytes: number };

export function createElfCache(opts: ElfCacheOptions = {}): ElfCache {
  const maxFiles = Math.max(1, opts.maxFiles ?? 256);
  const maxBytes = opts.maxBytes ?? 256 << 20;
  const byKey = new Map<string, CacheEntry>();
  const byBuildId = new Map<string, ElfFile>();
  let held = 0;
  let parsed = 0;
  let evictions = 0;

  function evict(): void {
    while (byKey.size > maxFiles || (held > maxBytes && byKey.size > 1)) {
      const [k, e] = byKey.entries().next().value as [string, CacheEntry];
      byKey.delete(k);
      held -= e.bytes;
      evictions++;
      if (e.load.ok && e.load.file.buildId && byBuildId.get(e.load.file.buildId) === e.load.file) byBuildId.delete(e.load.file.buildId);
    }
  }

  return {
    get(path) {
      let st: fs.Stats;
      try { st = fs.statSync(path); } catch (cause) { return { ok: false, reason: 'file_unreadable', cause, cached: false }; }
      const key = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}`;
      const hit = byKey.get(key);
      if (hit) {
        byKey.delete(key);
        byKey.set(key, hit);
        return { ...hit.load, cached: true };
      }
      let load: ElfLoad;
      let bytes = 64 + key.length;
      try {
        let file = openElf(path);
        parsed++;
        // the same build (a library in the host and in a container): one table
        const same = file.buildId ? byBuildId.get(file.buildId) : undefined;
        if (same) file = same;
        else {
          bytes += file.bytes;
          if (file.buildId) byBuildId.set(file.buildId, file);
        }
        load = { ok: true, file, cached: false };
      } catch (cause) {
        load = { ok: false, reason: cause instanceof ElfError ? 'not_elf' : 'file_unreadable', cause, cached: false };
      }
      byKey.set(key, { load, bytes });
      held += bytes;
      evict();
      return load;
    },
    get size() { return byKey.size; },
    bytes: () => held,
    get parsed() { return parsed; },
    get evictions() { return evictions; },
  };
}
