/**
 * Kernel addresses -> function + offset (+ module), from /proc/kallsyms.
 *
 * /proc/kallsyms is `ADDR TYPE NAME [MODULE]` per line, ~150-250 k lines, in
 * the kernel's own order (not sorted across modules). We parse it once into
 * parallel typed arrays sorted by address and binary-search them: a lookup is
 * ~18 BigInt comparisons, no string is built until a name is asked for.
 *
 * Only text symbols count (types t/T/w/W): a stack holds return addresses, and
 * data symbols in between would cut a function's range short. kallsyms has no
 * sizes, so a function ends where the next text symbol starts; an address past
 * the last symbol of the core kernel or of a module is taken by that last
 * symbol (perf and bcc do the same), past `_etext`/module ends we cannot tell.
 *
 * kptr_restrict: without CAP_SYSLOG (kernel.kptr_restrict=1) or for everyone
 * (=2) every address reads as 0. Such a table is `restricted`: it resolves
 * nothing, so every kernel frame keeps its address and has function null; the
 * collector runs as root, where kptr_restrict=1 still shows the addresses.
 */
import fs from 'node:fs';

export type KernelSymbol = {
  /** function name, e.g. `schedule` */
  readonly name: string;
  /** the function's first address */
  readonly start: bigint;
  /** address - start */
  readonly offset: number;
  /** `[kernel.kallsyms]` for the core kernel, else the module's name in brackets, `[ext4]` */
  readonly module: string;
};

export const KERNEL_MODULE = '[kernel.kallsyms]';

export type Kallsyms = {
  /** number of text symbols kept */
  readonly size: number;
  /** every address read as 0: kptr_restrict hides them from this reader */
  readonly restricted: boolean;
  /** bytes held (typed arrays and names), for the symboliser's stats */
  readonly bytes: number;
  lookup(address: bigint): KernelSymbol | null;
  /** the lowest text address of a module (`_text` for the core kernel): frames' offsets count from it */
  base(module: string): bigint | null;
  /** the highest core-kernel text symbol: above it are modules, BPF programs and trampolines, which come and go */
  readonly coreEnd: bigint;
};

const TEXT_TYPES = new Set(['t', 'T', 'w', 'W']);

/** Parses the text of /proc/kallsyms (pure). */
export function parseKallsyms(text: string): Kallsyms {
  const addrs: bigint[] = [];
  const names: string[] = [];
  const mods: string[] = [];
  let lines = 0;
  let zero = 0;
  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    // ADDR TYPE NAME[\t[MODULE]]: look at the type letter before cutting anything
    const s1 = text.indexOf(' ', pos);
    if (s1 < 0 || s1 >= nl || text.charCodeAt(s1 + 2) !== 32 /* ' ' */) { pos = nl + 1; continue; }
    lines++;
    const type = text[s1 + 1]!;
    if (!TEXT_TYPES.has(type)) { pos = nl + 1; continue; }
    const hex = text.slice(pos, s1);
    let addr: bigint;
    try { addr = BigInt(`0x${hex}`); } catch { pos = nl + 1; continue; }
    if (hex.length > 16 || hex.length === 0) { pos = nl + 1; continue; }
    if (addr === 0n) { zero++; pos = nl + 1; continue; }
    let name = text.slice(s1 + 3, nl);
    pos = nl + 1;
    let mod = KERNEL_MODULE;
    const br = name.indexOf('[');
    if (br >= 0) {
      const end = name.indexOf(']', br);
      if (end > br) mod = name.slice(br, end + 1);
      name = name.slice(0, br);
    }
    name = name.trim();
    if (name === '') continue;
    addrs.push(addr);
    names.push(name);
    mods.push(mod);
  }
  const order = addrs.map((_, i) => i).sort((a, b) => {
    const x = addrs[a]!, y = addrs[b]!;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
  const sorted = new BigUint64Array(order.length);
  const sNames: string[] = new Array(order.length);
  const sMods: string[] = new Array(order.length);
  let nameBytes = 0;
  const bases = new Map<string, bigint>();
  let coreEnd = 0n;
  order.forEach((i, k) => {
    sorted[k] = addrs[i]!;
    sNames[k] = names[i]!;
    sMods[k] = mods[i]!;
    if (!bases.has(mods[i]!)) bases.set(mods[i]!, addrs[i]!);
    if (mods[i] === KERNEL_MODULE) coreEnd = addrs[i]!;
    nameBytes += names[i]!.length + 16;
  });
  const restricted = sorted.length === 0 && zero > 0 && lines > 0;
  return {
    size: sorted.length,
    restricted,
    bytes: sorted.byteLength + nameBytes,
    base: (module) => bases.get(module) ?? null,
    coreEnd,
    lookup(address: bigint): KernelSymbol | null {
      // last symbol whose start <= address
      let lo = 0, hi = sorted.length - 1, at = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        if (sorted[mid]! <= address) { at = mid; lo = mid + 1; } else hi = mid - 1;
      }
      if (at < 0) return null;
      // several names at one address (aliases): the first in file order is the
      // one the kernel prints in its own stack dumps; keep the lowest index
      while (at > 0 && sorted[at - 1] === sorted[at]) at--;
      const start = sorted[at]!;
      return { name: sNames[at]!, start, offset: Number(address - start), module: sMods[at]! };
    },
  };
}

/** Reads and parses /proc/kallsyms (or `path`); throws what the read throws. */
export function readKallsyms(path = '/proc/kallsyms'): Kallsyms {
  return parseKallsyms(fs.readFileSync(path, 'latin1'));
}
