/**
 * /proc/PID/maps -> which mapping holds a user address, and where in its file.
 *
 *   START-END PERMS PGOFF MAJ:MIN INODE [PATH]
 *   55d0c0a00000-55d0c0a02000 r-xp 00002000 fe:00 247026   /usr/bin/cat
 *
 * An address A in a file mapping is at file offset A - START + PGOFF: that file
 * offset, not the ELF virtual address, is what a frame keeps as its `offset`
 * (pprof's and blazesym's "normalised" address): it needs nothing but this
 * line, and elf.ts turns it into the ELF address its symbols use.
 *
 * User addresses on x86-64 are below 2^47, so they are plain numbers here
 * (exact below 2^53); only [vsyscall] sits above (0xffffffffff600000, exact as
 * a double) and a caller's address above 2^53 is never in any other mapping.
 *
 * Paths: ` (deleted)` is cut and flagged (the file stays readable through
 * /proc/PID/map_files/START-END as root); `/memfd:NAME` is a memfd (JIT
 * engines put code there too); an executable mapping with no file is where
 * JIT code lives (V8's code space, a JVM's code cache): /tmp/perf-PID.map
 * names it, see perfmap.ts.
 *
 * The cache (createMapsCache) keeps one parsed table per pid and re-reads it
 *  - when the process is not the one it read: its start time (pid reuse) or its
 *    executable's (dev, inode) changed (exec keeps the pid and start time);
 *    checked at most once per `validateMs` per pid;
 *  - on a miss (an address in no mapping: a library dlopen'ed, a JIT region
 *    mapped since), at most once per `rereadMs` per pid, so a stream of
 *    addresses nothing maps never turns into a stream of reads.
 */
import fs from 'node:fs';

export type MappingKind =
  | 'file' // a regular file (executable, library, anything mmapped)
  | 'memfd' // /memfd:NAME
  | 'anon' // no file (also [anon:NAME] and [anon_shmem:NAME])
  | 'heap'
  | 'stack' // [stack] and [stack:TID]
  | 'vdso'
  | 'vsyscall'
  | 'vvar'
  | 'other'; // any other [name] the kernel shows ([uprobes], [vvar_vclock], ...)

export type Mapping = {
  readonly start: number;
  readonly end: number;
  /** 'r-xp' */
  readonly perms: string;
  readonly exec: boolean;
  /** the file offset of `start` */
  readonly pgoff: number;
  /** 'fe:00' as the line says it */
  readonly dev: string;
  readonly inode: number;
  /** path without ' (deleted)'; '[vdso]', '[stack]', ... as given; '' for anonymous */
  readonly path: string;
  readonly deleted: boolean;
  readonly kind: MappingKind;
};

function kindOf(path: string, inode: number): MappingKind {
  if (path === '') return 'anon';
  if (path.startsWith('/memfd:')) return 'memfd';
  if (path.startsWith('/')) return inode === 0 && path.startsWith('/dev/zero') ? 'anon' : 'file';
  if (path === '[heap]') return 'heap';
  if (path === '[stack]' || path.startsWith('[stack:')) return 'stack';
  if (path === '[vdso]') return 'vdso';
  if (path === '[vsyscall]') return 'vsyscall';
  if (path === '[vvar]') return 'vvar';
  if (path.startsWith('[anon:') || path.startsWith('[anon_shmem:')) return 'anon';
  return 'other';
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)\s+(\d+)(?:\s+(.*))?$/i;
const DELETED = ' (deleted)';

/** Parses /proc/PID/maps text into mappings sorted by start (pure; bad lines skipped). */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    let path = m[7] ?? '';
    let deleted = false;
    if (path.endsWith(DELETED)) { deleted = true; path = path.slice(0, -DELETED.length); }
    const inode = Number(m[6]);
    const perms = m[3]!;
    out.push({
      start: parseInt(m[1]!, 16),
      end: parseInt(m[2]!, 16),
      perms,
      exec: perms[2] === 'x',
      pgoff: parseInt(m[4]!, 16),
      dev: m[5]!,
      inode,
      path,
      deleted,
      kind: kindOf(path, inode),
    });
  }
  // the kernel lists them in order already; sort anyway, lookups depend on it
  out.sort((a, b) => a.start - b.start);
  return out;
}

/** The mapping holding `address` (binary search), or null. */
export function findMapping(maps: readonly Mapping[], address: number): Mapping | null {
  let lo = 0, hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = maps[mid]!;
    if (address < m.start) hi = mid - 1;
    else if (address >= m.end) lo = mid + 1;
    else return m;
  }
  return null;
}

/** The file offset of `address` inside mapping `m` (pprof's normalised address). */
export function fileOffsetOf(m: Mapping, address: number): number {
  return address - m.start + m.pgoff;
}

/** A frame's module name for a mapping: the file's path, or the kernel's bracketed name. */
export function moduleOf(m: Mapping): string {
  if (m.kind === 'anon') return m.path === '' ? '[anon]' : m.path;
  return m.path;
}

/** /proc/PID/map_files/START-END: opens the mapped file itself, even deleted or a memfd (root only). */
export function mapFilesPath(procRoot: string, pid: number, m: Mapping): string {
  return `${procRoot}/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or null (pure). */
export function startTimeOfStat(stat: string): string | null {
  // comm (field 2) may hold spaces and parentheses: fields count from the last ')'
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const f = stat.slice(close + 2).split(' ');
  // f[0] is field 3 (state): field 22 is f[19]
  return f[19] ?? null;
}

/** What tells one process image from the next under the same pid: start time and executable. */
export function processKey(procRoot: string, pid: number): string | null {
  let stat: string;
  try { stat = fs.readFileSync(`${procRoot}/${pid}/stat`, 'latin1'); } catch { return null; }
  const start = startTimeOfStat(stat);
  if (start === null) return null;
  let exe = '-';
  try {
    const st = fs.statSync(`${procRoot}/${pid}/exe`);
    exe = `${st.dev}:${st.ino}`;
  } catch { /* a kernel thread, or a process gone: start time alone */ }
  return `${start}/${exe}`;
}

export type MapsCacheOptions = {
  procRoot?: string;
  /** at most one process identity check per pid per this many ms (default 1000) */
  validateMs?: number;
  /** at most one re-read after a miss per pid per this many ms (default 1000) */
  rereadMs?: number;
  /** at most this many processes kept (least recently used dropped; default 1024) */
  maxProcesses?: number;
  now?: () => number;
};

export type ProcessMaps = {
  readonly pid: number;
  /** changes whenever the table is (re)read: callers key per-mapping state on it */
  readonly generation: number;
  readonly key: string;
  readonly maps: readonly Mapping[];
};

export type MapsLookup =
  | { ok: true; proc: ProcessMaps; mapping: Mapping | null; cached: boolean }
  | { ok: false; reason: 'process_gone' | 'maps_unreadable'; cause: unknown };

export type MapsCache = {
  /** the process's table, re-read per the rules above; `address` (if given) found in it */
  lookup(pid: number, address?: number): MapsLookup;
  /** forget a pid (its process is known gone) */
  forget(pid: number): void;
  /** the pids held, least recently used first */
  pids(): number[];
  readonly size: number;
  /** rough bytes held */
  bytes(): number;
  /** number of /proc/PID/maps reads so far */
  readonly reads: number;
};

type Entry = ProcessMaps & { checkedAt: number; readAt: number; bytes: number };

export function createMapsCache(opts: MapsCacheOptions = {}): MapsCache {
  const procRoot = opts.procRoot ?? '/proc';
  const validateMs = opts.validateMs ?? 1000;
  const rereadMs = opts.rereadMs ?? 1000;
  const maxProcesses = Math.max(1, opts.maxProcesses ?? 1024);
  const now = opts.now ?? Date.now;
  const byPid = new Map<number, Entry>();
  let generation = 0;
  let reads = 0;
  let held = 0;

  function read(pid: number, key: string): Entry | { reason: 'process_gone' | 'maps_unreadable'; cause: unknown } {
    let text: string;
    try {
      text = fs.readFileSync(`${procRoot}/${pid}/maps`, 'latin1');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      return { reason: code === 'ENOENT' || code === 'ESRCH' ? 'process_gone' : 'maps_unreadable', cause };
    }
    reads++;
    const maps = parseMaps(text);
    const t = now();
    // ~ what the objects cost: a number of fields and the path strings
    const bytes = maps.reduce((n, m) => n + 120 + m.path.length * 2, 64);
    return { pid, key, maps, generation: ++generation, checkedAt: t, readAt: t, bytes };
  }

  function put(pid: number, e: Entry): void {
    const old = byPid.get(pid);
    if (old) { held -= old.bytes; byPid.delete(pid); }
    byPid.set(pid, e);
    held += e.bytes;
    while (byPid.size > maxProcesses) {
      const [oldest, o] = byPid.entries().next().value as [number, Entry];
      byPid.delete(oldest);
      held -= o.bytes;
    }
  }

  return {
    lookup(pid, address) {
      const t = now();
      let e = byPid.get(pid);
      let cached = true;
      if (e && t - e.checkedAt >= validateMs) {
        const key = processKey(procRoot, pid);
        if (key === null) { this.forget(pid); return { ok: false, reason: 'process_gone', cause: new Error(`pid ${pid} has no /proc entry`) }; }
        if (key !== e.key) e = undefined; // exec or pid reuse: another image
        else e.checkedAt = t;
      }
      if (!e) {
        const key = processKey(procRoot, pid);
        if (key === null) return { ok: false, reason: 'process_gone', cause: new Error(`pid ${pid} has no /proc entry`) };
        const r = read(pid, key);
        if (!('maps' in r)) return { ok: false, ...r };
        e = r;
        cached = false;
        put(pid, e);
      } else {
        // most recently used last
        byPid.delete(pid);
        byPid.set(pid, e);
      }
      if (address === undefined) return { ok: true, proc: e, mapping: null, cached };
      let mapping = findMapping(e.maps, address);
      if (mapping === null && cached && t - e.readAt >= rereadMs) {
        const r = read(pid, e.key);
        if ('maps' in r) {
          e = r;
          put(pid, e);
          cached = false;
          mapping = findMapping(e.maps, address);
        }
      }
      return { ok: true, proc: e, mapping, cached };
    },
    forget(pid) {
      const e = byPid.get(pid);
      if (e) { held -= e.bytes; byPid.delete(pid); }
    },
    pids: () => [...byPid.keys()],
    get size() { return byPid.size; },
    bytes: () => held,
    get reads() { return reads; },
  };
}
