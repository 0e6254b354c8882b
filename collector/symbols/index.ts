/**
 * The symboliser: stack addresses of a process -> frames.
 *
 *   kernel address ──► kallsyms.ts (sorted /proc/kallsyms)          kind KERNEL
 *   user address ──► maps.ts (/proc/PID/maps, cached per process image)
 *        ├─ file / deleted file / memfd ──► elf.ts (.symtab/.dynsym, per file) kind USER
 *        ├─ [vdso] ──► elf.ts on the image read from /proc/PID/mem (one per boot) kind USER
 *        └─ anonymous executable, or no mapping ──► perfmap.ts (/tmp/perf-PID.map) kind JIT
 *
 * A frame always keeps its address, its module and its offset in that module,
 * so a frame without a name can still be named later by whoever has the file:
 *   - USER: module = the mapped file's path (as the process sees it), offset =
 *     the FILE offset (address - mapping start + mapping offset; pprof's and
 *     blazesym's normalised address: `readelf -l` turns it into an ELF address);
 *     anonymous memory: module `[anon]` (or its [anon:NAME]), offset from the
 *     mapping's start;
 *   - KERNEL: module `[kernel.kallsyms]` or `[MODNAME]`, offset from the
 *     module's lowest text symbol (`_text` for the kernel: stable under KASLR);
 *   - JIT: module `[jit]` when the perf map names it, offset from the mapping's
 *     start (or the address itself when no mapping holds it); a V8 name gives
 *     the function without its tier mark, and the script and line.
 * `functionOffset` is the address minus the function's start when named.
 *
 * Return addresses: every frame of a stack after the first is where a call
 * returns to, which may be the first byte of the next function (a call to a
 * noreturn function at the very end of its caller). Names for frames after the
 * first are looked up at address - 1, as perf and pprof do; the frame still
 * carries the address it came with (`returnAddresses: false` turns it off).
 *
 * It never throws on a vanished process or an unreadable file: the frame has
 * function null, and the cause is counted by reason in `stats().unknownBy`
 * (the first cause of each reason kept in `stats().causes` for the collector
 * to report once). Caches are bounded in count (processes, files) and bytes.
 * Frame pointers: this only names what the kernel unwound; Debian's libc is
 * built without frame pointers, so user stacks through it stop early.
 */
import fs from 'node:fs';
import { type Kallsyms, readKallsyms } from './kallsyms.ts';
import { createElfCache, type ElfFile, ElfError, parseElf, bufferReader } from './elf.ts';
import { createMapsCache, fileOffsetOf, findMapping, type Mapping, mapFilesPath, moduleOf, processKey, type ProcessMaps } from './maps.ts';
import { openPerfMap, parseJitName, type PerfMapFile } from './perfmap.ts';

export type FrameKind = 'KERNEL' | 'USER' | 'JIT';

const TWO_53 = 1n << 53n;
const VSYSCALL = 0xffffffffff600000n;

export type Frame = {
  address: bigint;
  module: string;
  /** see the file's header: file offset (USER), offset from the module's base (KERNEL), from the mapping (JIT/anon) */
  offset: number;
  function: string | null;
  /** address - the function's start, when named */
  functionOffset: number | null;
  /** JIT frames whose perf map name says so (V8: the script and its line); null otherwise (no DWARF) */
  file: string | null;
  line: number | null;
  kind: FrameKind;
  /** the GNU build id of the module's file, when it has one and was read */
  buildId: string | null;
};

export type UnknownReason =
  | 'process_gone'
  | 'maps_unreadable'
  | 'no_mapping'
  | 'file_unreadable'
  | 'not_elf'
  | 'no_symbol'
  | 'anon_no_perf_map'
  | 'kallsyms_unreadable'
  | 'kallsyms_restricted'
  | 'no_kernel_symbol'
  | 'vdso_unreadable'
  | 'not_user_address'
  /** something this file did not foresee threw: the frame keeps its address, the cause is kept */
  | 'internal_error';

export type SymbolizerStats = {
  frames: number;
  /** frames answered from what was cached (process table, file, perf map, kallsyms) */
  hits: number;
  /** frames that needed a read first (maps, an ELF file, a perf map, kallsyms) */
  misses: number;
  /** frames without a function name */
  unknown: number;
  unknownBy: Partial<Record<UnknownReason, number>>;
  /** the first cause seen per reason (a message), for the collector's say-once */
  causes: Partial<Record<UnknownReason, string>>;
  processes: number;
  files: number;
  bytes: number;
  /** /proc/kallsyms addresses read as 0 (kptr_restrict): kernel frames keep addresses only */
  kernelRestricted: boolean;
};

export type SymbolizerOptions = {
  procRoot?: string;
  kallsymsPath?: string;
  /** where perf maps are, inside the process's root (default /tmp) */
  perfMapDir?: string;
  maxProcesses?: number;
  maxFiles?: number;
  /** bytes kept across files and perf maps (default 256 MiB) */
  maxBytes?: number;
  /** process identity check at most this often per pid (ms, default 1000) */
  validateMs?: number;
  /** maps or perf map re-read after a miss at most this often per pid (ms, default 1000) */
  rereadMs?: number;
  /** every this many ms (default 10000) processes that exited or exec'ed are dropped with their perf maps, so a host's churn does not fill the caches with the dead */
  sweepMs?: number;
  /**
   * kallsyms re-read after a miss above the core kernel (a module or BPF program
   * loaded since) at most this often (ms, default 60000: a read costs ~100 ms of
   * CPU here, 0.2% of a core at this rate; a miss inside the core kernel never re-reads)
   */
  kallsymsRereadMs?: number;
  /** a kernel symbol farther than this from an address does not hold it (default 256 KiB) */
  maxKernelSymbolSpan?: number;
  returnAddresses?: boolean;
  now?: () => number;
};

export type Symbolizer = {
  /** Frames for one stack of one process (all kernel addresses when `kernel`); never throws. */
  symbolize(pid: number, addresses: readonly (bigint | number)[], kernel: boolean): Frame[];
  /** forget a process (the caller knows it exited) */
  forget(pid: number): void;
  stats(): SymbolizerStats;
};

type FileRef = { file: ElfFile | null; reason?: UnknownReason; cause?: unknown; epoch: number };

type ProcState = {
  generation: number;
  files: Map<string, FileRef>;
  perfMap: PerfMapFile | null;
};

export function createSymbolizer(opts: SymbolizerOptions = {}): Symbolizer {
  const procRoot = opts.procRoot ?? '/proc';
  const now = opts.now ?? Date.now;
  const rereadMs = opts.rereadMs ?? 1000;
  const maxProcesses = opts.maxProcesses ?? 1024;
  const maxBytes = opts.maxBytes ?? 256 << 20;
  const kallsymsRereadMs = opts.kallsymsRereadMs ?? 60_000;
  const maxKernelSpan = opts.maxKernelSymbolSpan ?? 256 << 10;
  const adjust = opts.returnAddresses ?? true;
  const sweepMs = opts.sweepMs ?? 10_000;
  let sweptAt = now();
  const maps = createMapsCache({ procRoot, validateMs: opts.validateMs ?? 1000, rereadMs, maxProcesses, now });
  const elfs = createElfCache({ maxFiles: opts.maxFiles ?? 256, maxBytes });
  const procs = new Map<number, ProcState>();
  let vdso: { key: string; file: ElfFile | null } | null = null;
  let vdsoFailedAt = -Infinity;
  let vdsoCause: unknown = undefined;
  let kallsyms: Kallsyms | null = null;
  let kallsymsAt = -Infinity;
  const st: SymbolizerStats = { frames: 0, hits: 0, misses: 0, unknown: 0, unknownBy: {}, causes: {}, processes: 0, files: 0, bytes: 0, kernelRestricted: false };

  function unknown(reason: UnknownReason, cause?: unknown): void {
    st.unknownBy[reason] = (st.unknownBy[reason] ?? 0) + 1;
    because(reason, cause);
  }
  function because(reason: UnknownReason, cause: unknown): void {
    if (cause !== undefined && st.causes[reason] === undefined) st.causes[reason] = cause instanceof Error ? cause.message : String(cause);
  }

  function perfMapBytes(): number {
    let b = 0;
    for (const p of procs.values()) b += p.perfMap?.bytes ?? 0;
    return b;
  }

  function procState(pid: number, proc: ProcessMaps): ProcState {
    let p = procs.get(pid);
    if (p && p.generation !== proc.generation) {
      // same image re-read (a miss): files stay valid unless the image changed;
      // a new image (exec) has new files and a new JIT
      const sameImage = procKeys.get(pid) === proc.key;
      p = sameImage ? { ...p, generation: proc.generation } : undefined;
    }
    if (!p) p = { generation: proc.generation, files: new Map(), perfMap: null };
    procKeys.set(pid, proc.key);
    procs.delete(pid);
    procs.set(pid, p);
    while (procs.size > maxProcesses) {
      const oldest = procs.keys().next().value as number;
      procs.delete(oldest);
      procKeys.delete(oldest);
    }
    return p;
  }
  const procKeys = new Map<number, string>();
  // the mapping objects of a table read: a frame in a known mapping costs no string key
  const byMapping = new WeakMap<Mapping, FileRef & { cached: boolean }>();
  let perfMapsRead = false;

  function elfFor(pid: number, p: ProcState, m: Mapping): FileRef & { cached: boolean } {
    // what a process holds is reused only while the file cache evicted nothing
    // since: an evicted table is read again through the cache, never kept alive here
    const fast = byMapping.get(m);
    if (fast && fast.epoch === elfs.evictions) return fast;
    const key = `${m.dev}:${m.inode}:${m.path}`;
    const had = p.files.get(key);
    if (had && had.epoch === elfs.evictions) { const r = { ...had, cached: true }; byMapping.set(m, r); return r; }
    // deleted files and memfds are only reachable through the mapping itself
    const viaMapFiles = m.deleted || m.kind === 'memfd';
    let load = elfs.get(viaMapFiles ? mapFilesPath(procRoot, pid, m) : `${procRoot}/${pid}/root${m.path}`);
    if (!load.ok && load.reason === 'file_unreadable' && !viaMapFiles) load = elfs.get(mapFilesPath(procRoot, pid, m));
    const epoch = elfs.evictions;
    const r = load.ok ? { file: load.file, epoch } : { file: null, reason: load.reason as UnknownReason, cause: load.cause, epoch };
    p.files.set(key, r);
    byMapping.set(m, { ...r, cached: true });
    return { ...r, cached: load.cached };
  }

  function vdsoFor(pid: number, m: Mapping): { file: ElfFile | null; cached: boolean; cause?: unknown } {
    // one vDSO per kernel: keyed by its size, read once from the first process asked about
    const key = `${m.end - m.start}`;
    if (vdso && vdso.key === key) return { file: vdso.file, cached: true };
    // /proc/PID/mem needs ptrace rights over the process: a failure is tried again
    // at most once per minute (and with another process), not once per frame
    if (now() - vdsoFailedAt < 60_000) return { file: null, cached: true, cause: vdsoCause };
    try {
      const fd = fs.openSync(`${procRoot}/${pid}/mem`, 'r');
      try {
        const len = m.end - m.start;
        const b = Buffer.alloc(len);
        const n = fs.readSync(fd, b, 0, len, m.start);
        vdso = { key, file: parseElf(bufferReader(b.subarray(0, n))) };
      } finally { fs.closeSync(fd); }
      return { file: vdso.file, cached: false };
    } catch (cause) {
      vdsoFailedAt = now();
      vdsoCause = cause;
      return { file: null, cached: false, cause };
    }
  }

  function loadKallsyms(): void {
    kallsymsAt = now();
    try {
      kallsyms = readKallsyms(opts.kallsymsPath);
      st.kernelRestricted = kallsyms.restricted;
    } catch (cause) {
      // a table read before stays in use; the frames count the reason
      because('kallsyms_unreadable', cause);
    }
  }

  function kernelFrame(address: bigint, lookupAt: bigint): Frame {
    let cached = true;
    if (kallsyms === null && now() - kallsymsAt >= kallsymsRereadMs) { loadKallsyms(); cached = false; }
    const frame: Frame = { address, module: '[kernel.kallsyms]', offset: 0, function: null, functionOffset: null, file: null, line: null, kind: 'KERNEL', buildId: null };
    if (kallsyms === null) { unknown('kallsyms_unreadable'); miss(cached); return frame; }
    if (kallsyms.restricted) { unknown('kallsyms_restricted'); miss(cached); return frame; }
    let s = kallsyms.lookup(lookupAt);
    if ((s === null || s.offset > maxKernelSpan) && lookupAt > kallsyms.coreEnd && now() - kallsymsAt >= kallsymsRereadMs) {
      // a module or BPF program loaded since: read again (rate-limited)
      loadKallsyms();
      cached = false;
      s = kallsyms.lookup(lookupAt);
    }
    miss(cached);
    if (s === null || s.offset > maxKernelSpan) { unknown('no_kernel_symbol'); return frame; }
    const base = kallsyms.base(s.module);
    frame.module = s.module;
    frame.offset = base === null ? 0 : Number(address - base);
    frame.function = s.name;
    frame.functionOffset = Number(address - s.start);
    return frame;
  }

  function miss(cached: boolean): void {
    if (cached) st.hits++; else st.misses++;
  }

  /** One stack's view of its process: validated once per call, not per frame. */
  type Ctx = { pid: number; proc: ProcessMaps; p: ProcState; fresh: boolean } | { pid: number; reason: UnknownReason; cause: unknown };

  function context(pid: number): Ctx {
    const r = maps.lookup(pid);
    if (!r.ok) { procs.delete(pid); procKeys.delete(pid); return { pid, reason: r.reason, cause: r.cause }; }
    return { pid, proc: r.proc, p: procState(pid, r.proc), fresh: !r.cached };
  }

  function userFrame(ctx: Ctx, address: bigint, lookupAt: bigint): Frame {
    const frame: Frame = { address, module: '', offset: 0, function: null, functionOffset: null, file: null, line: null, kind: 'USER', buildId: null };
    const a = Number(address);
    const at = Number(lookupAt);
    if (address >= TWO_53 && address < VSYSCALL) { unknown('not_user_address'); st.hits++; return frame; }
    if (!('proc' in ctx)) { unknown(ctx.reason, ctx.cause); miss(false); return frame; }
    const pid = ctx.pid;
    let m = findMapping(ctx.proc.maps, a);
    let cached = !ctx.fresh;
    ctx.fresh = false;
    if (m === null) {
      // mapped since the last read (dlopen, a new JIT region): re-read, rate-limited
      const r = maps.lookup(pid, a);
      if (r.ok && r.proc !== ctx.proc) {
        ctx.proc = r.proc;
        ctx.p = procState(pid, r.proc);
        cached = false;
      }
      if (r.ok) m = r.mapping;
    }
    const p = ctx.p;
    if (m && (m.kind === 'file' || m.kind === 'memfd')) {
      frame.module = moduleOf(m);
      frame.offset = fileOffsetOf(m, a);
      const e = elfFor(pid, p, m);
      cached &&= e.cached;
      miss(cached);
      if (!e.file) {
        // JIT code in a memfd (or any executable mapping of something not ELF): the perf map may name it
        const j = m.exec ? jit(pid, p, a, at) : null;
        if (j) { Object.assign(frame, j); return frame; }
        unknown(e.reason ?? 'file_unreadable', e.cause);
        return frame;
      }
      frame.buildId = e.file.buildId;
      const s = e.file.lookupFileOffset(fileOffsetOf(m, at));
      if (!s) {
        // a memfd or file without symbols may still be JIT code the perf map names
        const j = m.exec ? jit(pid, p, a, at) : null;
        if (j) { Object.assign(frame, j); return frame; }
        unknown('no_symbol');
        return frame;
      }
      frame.function = s.name;
      frame.functionOffset = s.offset + (a - at);
      return frame;
    }
    if (m && m.kind === 'vdso') {
      frame.module = '[vdso]';
      frame.offset = a - m.start;
      const v = vdsoFor(pid, m);
      miss(cached && v.cached);
      if (!v.file) { unknown('vdso_unreadable', v.cause); return frame; }
      frame.buildId = v.file.buildId;
      const s = v.file.lookupFileOffset(at - m.start);
      if (!s) { unknown('no_symbol'); return frame; }
      frame.function = s.name;
      frame.functionOffset = s.offset + (a - at);
      return frame;
    }
    // anonymous (JIT code lives there), any other special mapping, or none
    const before = p.perfMap?.exists ?? false;
    const j = jit(pid, p, a, at);
    miss(cached && before);
    if (m) { frame.module = moduleOf(m); frame.offset = a - m.start; } else { frame.module = ''; frame.offset = a; }
    if (j) { Object.assign(frame, j); return frame; }
    unknown(m ? (p.perfMap?.exists ? 'no_symbol' : 'anon_no_perf_map') : 'no_mapping');
    return frame;
  }

  function jit(pid: number, p: ProcState, a: number, at: number): Partial<Frame> | null {
    if (!p.perfMap) p.perfMap = openPerfMap(procRoot, pid, { minIntervalMs: rereadMs, ...(opts.perfMapDir ? { dir: opts.perfMapDir } : {}) });
    const t = now();
    let s = p.perfMap.lookup(at);
    if (!s) {
      // new code since the last read: the file has grown (read at most once per rereadMs)
      p.perfMap.refresh(t);
      perfMapsRead = true;
      s = p.perfMap.lookup(at);
    }
    if (!s) return null;
    const n = parseJitName(s.name);
    return { module: '[jit]', function: n.function, file: n.file, line: n.line, functionOffset: s.offset + (a - at), kind: 'JIT' };
  }

  /** Drops what is held for processes that are gone or are another image now (one stat per process). */
  function sweep(): void {
    sweptAt = now();
    for (const pid of maps.pids()) {
      const key = processKey(procRoot, pid);
      if (key === null || key !== procKeys.get(pid)) forgetPid(pid);
    }
    for (const pid of [...procs.keys()]) if (!procKeys.has(pid)) procs.delete(pid);
  }

  function forgetPid(pid: number): void {
    maps.forget(pid);
    procs.delete(pid);
    procKeys.delete(pid);
  }

  function boundPerfMaps(): void {
    // perf maps of long-running JITs grow: past the budget, drop the least recently used processes' tables
    let total = perfMapBytes() + elfs.bytes();
    for (const [pid, p] of procs) {
      if (total <= maxBytes || procs.size <= 1) break;
      if (!p.perfMap) continue; // dropping it would free nothing counted here
      total -= p.perfMap.bytes;
      procs.delete(pid);
      procKeys.delete(pid);
    }
  }

  return {
    symbolize(pid, addresses, kernel) {
      if (now() - sweptAt >= sweepMs) {
        try { sweep(); } catch (cause) { because('maps_unreadable', cause); }
      }
      const out: Frame[] = [];
      perfMapsRead = false;
      let ctx: Ctx | null = null;
      for (let i = 0; i < addresses.length; i++) {
        const raw = addresses[i]!;
        const address = typeof raw === 'bigint' ? raw : BigInt(raw);
        const lookupAt = adjust && i > 0 && address > 0n ? address - 1n : address;
        let f: Frame;
        try {
          if (kernel) f = kernelFrame(address, lookupAt);
          else f = userFrame(ctx ??= context(pid), address, lookupAt);
        } catch (cause) {
          // a bug or an unforeseen file: the frame keeps its address, the cause is counted
          f = { address, module: '', offset: 0, function: null, functionOffset: null, file: null, line: null, kind: kernel ? 'KERNEL' : 'USER', buildId: null };
          unknown(cause instanceof ElfError ? 'not_elf' : 'internal_error', cause);
          st.misses++;
        }
        st.frames++;
        if (f.function === null) st.unknown++;
        out.push(f);
      }
      if (perfMapsRead) boundPerfMaps();
      return out;
    },
    forget: forgetPid,
    stats() {
      return {
        ...st,
        unknownBy: { ...st.unknownBy },
        causes: { ...st.causes },
        processes: maps.size,
        files: elfs.size,
        bytes: maps.bytes() + elfs.bytes() + perfMapBytes() + (kallsyms?.bytes ?? 0),
      };
    },
  };
}

export { parseKallsyms, readKallsyms, KERNEL_MODULE } from './kallsyms.ts';
export type { Kallsyms, KernelSymbol } from './kallsyms.ts';
export { parseMaps, findMapping, fileOffsetOf, createMapsCache } from './maps.ts';
export type { Mapping, MappingKind } from './maps.ts';
export { parseElf, openElf, readElfHeaders, fileOffsetToVaddr, createElfCache, ElfError } from './elf.ts';
export type { ElfFile, ElfSymbol, ElfHeaders } from './elf.ts';
export { parsePerfMapLines, parseJitName, PerfMapTable, openPerfMap } from './perfmap.ts';
export type { PerfMapEntry, JitSymbol, JitName } from './perfmap.ts';
