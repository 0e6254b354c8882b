/**
 * /tmp/perf-PID.map: names for JIT code (Node's --perf-basic-prof, the JVM's
 * perf-map agents, LuaJIT, .NET with DOTNET_PerfMapEnabled).
 *
 *   START SIZE NAME         hex START and SIZE (with or without 0x), NAME to the end of the line
 *   3ef414c0d420 2c LazyCompile:*hot /srv/app.js:3:13
 *
 * The file only grows while the process runs: the writer appends one line per
 * code object it creates. We read what was appended since the last read (from
 * the last complete line on), so a busy JIT costs us its new lines, not the
 * whole file again. Code can be freed and its addresses reused by later code:
 * a later line wins over an earlier one at the same address, and over an
 * earlier one it overlaps, which is what perf does with these files too.
 *
 * PID is the process's pid in its own pid namespace (the last NSpid of
 * /proc/PID/status), and the file is read through /proc/PID/root so a
 * containerised Node's map is found. `--perf-basic-prof-only-functions` keeps
 * only functions; `--interpreted-frames-native-stack` is needed for
 * interpreted (Ignition) frames to be seen as their own function rather than
 * as the shared interpreter's builtins.
 */
import fs from 'node:fs';

export type JitSymbol = { name: string; start: number; size: number; offset: number };

export type PerfMapEntry = { start: number; size: number; name: string };

/**
 * Parses complete lines of a perf map (pure). Returns the entries and the
 * number of characters consumed (up to and including the last newline), so a
 * partly written last line is read again next time.
 */
export function parsePerfMapLines(text: string): { entries: PerfMapEntry[]; consumed: number } {
  const entries: PerfMapEntry[] = [];
  const last = text.lastIndexOf('\n');
  if (last < 0) return { entries, consumed: 0 };
  let pos = 0;
  while (pos <= last) {
    const nl = text.indexOf('\n', pos);
    const line = text.slice(pos, nl);
    pos = nl + 1;
    const s1 = line.indexOf(' ');
    const s2 = s1 < 0 ? -1 : line.indexOf(' ', s1 + 1);
    if (s2 < 0) continue;
    const start = parseHex(line.slice(0, s1));
    const size = parseHex(line.slice(s1 + 1, s2));
    const name = line.slice(s2 + 1).replace(/\r$/, '');
    if (start === null || size === null || size === 0 || name === '') continue;
    entries.push({ start, size, name });
  }
  return { entries, consumed: last + 1 };
}

function parseHex(s: string): number | null {
  const h = s.startsWith('0x') || s.startsWith('0X') ? s.slice(2) : s;
  if (h.length === 0 || h.length > 13 || !/^[0-9a-fA-F]+$/.test(h)) return null; // < 2^52: user space
  return parseInt(h, 16);
}

type Seg = { s: number; e: number; name: string; fnStart: number; fnSize: number };

/**
 * A lookup table over entries in file order: later entries win where they
 * overlap earlier ones. Kept as disjoint sorted segments (a later entry cuts
 * the earlier ones it overlaps), so a lookup is one binary search. Entries
 * beyond everything so far (a JIT allocating upwards) append; a few others are
 * spliced in; many at once rebuild the table in one sweep (O(n log n)).
 */
export class PerfMapTable {
  private segs: Seg[] = [];
  private pending: PerfMapEntry[] = [];
  private nameBytes = 0;

  /** @param spliceMax at most this many out-of-order entries per flush are spliced in; more rebuild */
  private readonly spliceMax: number;
  constructor(spliceMax = 32) { this.spliceMax = spliceMax; }

  add(entries: readonly PerfMapEntry[]): void {
    for (const e of entries) this.pending.push(e);
  }

  get size(): number { this.flush(); return this.segs.length; }
  get bytes(): number { return this.segs.length * 48 + this.nameBytes + this.pending.length * 64; }

  lookup(address: number): JitSymbol | null {
    this.flush();
    let lo = 0, hi = this.segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const g = this.segs[mid]!;
      if (address < g.s) hi = mid - 1;
      else if (address >= g.e) lo = mid + 1;
      else return { name: g.name, start: g.fnStart, size: g.fnSize, offset: address - g.fnStart };
    }
    return null;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const pending = this.pending;
    this.pending = [];
    const rest: PerfMapEntry[] = [];
    for (const e of pending) {
      const last = this.segs[this.segs.length - 1];
      if (rest.length === 0 && (!last || e.start >= last.e)) {
        this.segs.push({ s: e.start, e: e.start + e.size, name: e.name, fnStart: e.start, fnSize: e.size });
        this.nameBytes += e.name.length * 2;
      } else rest.push(e);
    }
    if (rest.length === 0) return;
    if (rest.length <= this.spliceMax) for (const e of rest) this.splice(e);
    else this.rebuild(rest);
  }

  private splice(e: PerfMapEntry): void {
    const start = e.start, end = e.start + e.size;
    const segs = this.segs;
    // first segment ending after start
    let lo = 0, hi = segs.length;
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (segs[mid]!.e <= start) lo = mid + 1; else hi = mid; }
    let j = lo;
    const ins: Seg[] = [];
    while (j < segs.length && segs[j]!.s < end) {
      const g = segs[j]!;
      if (g.s < start) ins.push({ ...g, e: start });
      j++;
    }
    ins.push({ s: start, e: end, name: e.name, fnStart: start, fnSize: e.size });
    const lastCut = segs[j - 1];
    if (j > lo && lastCut && lastCut.e > end) ins.push({ ...lastCut, s: end });
    for (let k = lo; k < j; k++) this.nameBytes -= segs[k]!.name.length * 2;
    for (const g of ins) this.nameBytes += g.name.length * 2;
    segs.splice(lo, j - lo, ...ins);
  }

  /** Paints every segment and entry in order (later wins) with a sweep over their bounds. */
  private rebuild(rest: readonly PerfMapEntry[]): void {
    type Item = { s: number; e: number; seq: number; g: Seg };
    const items: Item[] = [];
    let seq = 0;
    for (const g of this.segs) items.push({ s: g.s, e: g.e, seq: seq++, g });
    for (const e of rest) items.push({ s: e.start, e: e.start + e.size, seq: seq++, g: { s: e.start, e: e.start + e.size, name: e.name, fnStart: e.start, fnSize: e.size } });
    items.sort((a, b) => a.s - b.s);
    const bounds = [...new Set(items.flatMap((i) => [i.s, i.e]))].sort((a, b) => a - b);
    // max-heap on seq of the items covering the current point (ended ones dropped lazily)
    const heap: Item[] = [];
    const up = (k: number): void => { while (k > 0) { const p = (k - 1) >> 1; if (heap[p]!.seq >= heap[k]!.seq) break; [heap[p], heap[k]] = [heap[k]!, heap[p]!]; k = p; } };
    const down = (k: number): void => {
      for (;;) {
        const l = 2 * k + 1, r = l + 1;
        let m = k;
        if (l < heap.length && heap[l]!.seq > heap[m]!.seq) m = l;
        if (r < heap.length && heap[r]!.seq > heap[m]!.seq) m = r;
        if (m === k) return;
        [heap[m], heap[k]] = [heap[k]!, heap[m]!];
        k = m;
      }
    };
    const out: Seg[] = [];
    let next = 0;
    this.nameBytes = 0;
    for (let b = 0; b + 1 < bounds.length; b++) {
      const x = bounds[b]!, y = bounds[b + 1]!;
      while (next < items.length && items[next]!.s <= x) { heap.push(items[next]!); up(heap.length - 1); next++; }
      while (heap.length > 0 && heap[0]!.e <= x) { const last = heap.pop()!; if (heap.length > 0) { heap[0] = last; down(0); } }
      const top = heap[0];
      if (!top) continue;
      const prev = out[out.length - 1];
      if (prev && prev.e === x && prev.fnStart === top.g.fnStart && prev.name === top.g.name) prev.e = y;
      else { out.push({ ...top.g, s: x, e: y }); this.nameBytes += top.g.name.length * 2; }
    }
    this.segs = out;
  }
}

export type JitName = {
  /** the function's name without V8's kind prefix and tier mark; '(anonymous)' for an unnamed JS function */
  function: string;
  /** the script (a path, `node:internal/...`, `[eval]`), when the name says */
  file: string | null;
  line: number | null;
  /** V8's tier mark: ~ interpreted, ^ baseline (Sparkplug), + Maglev, * TurboFan; '' when none */
  tier: string;
};

const V8_JS_KINDS = ['JS:', 'LazyCompile:', 'Function:', 'Script:', 'Eval:'];

/**
 * A perf map name as a frame's function, file and line (pure). V8 writes JS code
 * as `JS:<mark><name> <script>:<line>:<column>` (Node >= 20; before: `LazyCompile:`,
 * `Function:`, `Script:` with an optional space after the colon), with <mark>
 * the tier the code was compiled at. The same function compiled at several
 * tiers is one function to a profile, so the mark goes into `tier`, not the
 * name; so does a `'` that follows the mark on some entries (Node 24; on-stack
 * replacement code as far as we can tell). Anything else (V8's `Builtin:` and
 * `BytecodeHandler:` entries, JVM agents' `Lpkg/Class;method()V`) is kept whole.
 */
export function parseJitName(raw: string): JitName {
  const kind = V8_JS_KINDS.find((k) => raw.startsWith(k));
  if (!kind) return { function: raw, file: null, line: null, tier: '' };
  let rest = raw.slice(kind.length).trimStart();
  let tier = '';
  if (rest.length > 0 && '~^+*'.includes(rest[0]!)) { tier = rest[0]!; rest = rest.slice(1); }
  if (rest.startsWith("'")) rest = rest.slice(1);
  // the script and position are the last space-separated part: names may hold spaces (`get x`), paths rarely
  let name = rest;
  let file: string | null = null;
  let line: number | null = null;
  const sp = rest.lastIndexOf(' ');
  const loc = /^(.+):(\d+):(\d+)$/.exec(sp >= 0 ? rest.slice(sp + 1) : rest);
  if (loc) {
    name = sp >= 0 ? rest.slice(0, sp) : '';
    file = loc[1]!;
    line = Number(loc[2]);
  }
  name = name.trim();
  return { function: name === '' ? '(anonymous)' : name, file, line, tier };
}

/** The pid a process sees itself as (its innermost pid namespace), from /proc/PID/status text (pure). */
export function nsPidOfStatus(status: string, pid: number): number {
  const m = /^NSpid:\s*([\d\s]+)$/m.exec(status);
  if (!m) return pid;
  const ids = m[1]!.trim().split(/\s+/);
  const last = Number(ids[ids.length - 1]);
  return Number.isInteger(last) && last > 0 ? last : pid;
}

export type PerfMapFile = {
  /** reads what was appended since the last refresh (at most once per `minIntervalMs`); false if the file is absent */
  refresh(now: number): boolean;
  lookup(address: number): JitSymbol | null;
  readonly exists: boolean;
  readonly path: string;
  readonly bytes: number;
  /** times the file outgrew maxFileBytes and only its tail was kept */
  readonly truncations: number;
};

/** One process's perf map, read incrementally as it grows. */
export function openPerfMap(procRoot: string, pid: number, opts: { minIntervalMs?: number; dir?: string; maxFileBytes?: number } = {}): PerfMapFile {
  let nspid = pid;
  try { nspid = nsPidOfStatus(fs.readFileSync(`${procRoot}/${pid}/status`, 'latin1'), pid); } catch { /* gone: the refresh will say so */ }
  const dir = opts.dir ?? '/tmp';
  const path = `${procRoot}/${pid}/root${dir}/perf-${nspid}.map`;
  const minInterval = opts.minIntervalMs ?? 1000;
  // a long-running JIT's map only grows (GBs over weeks): we hold at most its
  // last maxFileBytes, the newest code, and start again from the tail past that
  const maxFileBytes = Math.max(4096, opts.maxFileBytes ?? 64 << 20);
  let table = new PerfMapTable();
  let heldFrom = 0;
  let readTo = 0;
  let ino = -1;
  let lastRefresh = -Infinity;
  let exists = false;
  let truncations = 0;
  // after a cut into the file's tail: the bytes up to the first newline are the
  // end of a line whose start we did not read, and are dropped (a suffix of
  // `7f0123 20 f` can look like a valid line at another address)
  let skipping = false;
  return {
    path,
    get exists() { return exists; },
    get bytes() { return table.bytes + 128; },
    get truncations() { return truncations; },
    refresh(now) {
      if (now - lastRefresh < minInterval) return exists;
      lastRefresh = now;
      let fd: number;
      try { fd = fs.openSync(path, 'r'); } catch { exists = false; return false; }
      try {
        const st = fs.fstatSync(fd);
        if (st.ino !== ino || st.size < readTo) {
          // another file under the name (recreated, or truncated): read it from
          // the start; its lines come after the old ones, so they win
          ino = st.ino;
          readTo = 0;
          heldFrom = 0;
        }
        exists = true;
        if (st.size - heldFrom > maxFileBytes) {
          // keep the tail: a fresh table from half the budget before the end
          truncations++;
          table = new PerfMapTable();
          heldFrom = readTo = st.size - Math.floor(maxFileBytes / 2);
          const prev = Buffer.alloc(1);
          skipping = fs.readSync(fd, prev, 0, 1, readTo - 1) === 1 && prev[0] !== 0x0a;
        }
        if (st.size > readTo) {
          const len = st.size - readTo;
          const b = Buffer.allocUnsafe(len);
          let got = 0;
          while (got < len) {
            const n = fs.readSync(fd, b, got, len - got, readTo + got);
            if (n === 0) break;
            got += n;
          }
          let from = 0;
          if (skipping) {
            const nl = b.subarray(0, got).indexOf(0x0a);
            if (nl >= 0) { from = nl + 1; skipping = false; } else from = got;
          }
          // complete lines only (cut at a newline byte, so no UTF-8 name is split)
          const last = b.lastIndexOf(0x0a, got - 1);
          if (last >= from) {
            table.add(parsePerfMapLines(b.toString('utf8', from, last + 1)).entries);
            readTo += last + 1;
          } else if (!skipping) {
            readTo += from; // the dropped end of a line (from is 0 otherwise)
          }
        }
      } finally {
        fs.closeSync(fd);
      }
      return exists;
    },
    lookup: (address) => table.lookup(address),
  };
}
