/**
 * The BPF stack budget, checked from the compiled objects without loading them.
 *
 * The verifier refuses a program when its stack plus the stacks of the
 * functions it calls exceeds 512 bytes, each frame rounded up to 32. How a
 * kernel sizes a frame changed between 6.18 releases: l7.bpf.o loaded on one
 * and was refused on the next ("combined stack size of 2 calls is 544"). This
 * test reads each frame from the disassembly (the deepest r10 - N it touches)
 * and keeps every call chain a margin below the limit, so a struct added to a
 * frame fails here, with the chain named, before a kernel notices. The
 * disassembly's figure is an upper bound of the verifier's, which counts only
 * the slots a path touches: for the refused l7.bpf.o it gives 576, where the
 * kernel counted 544.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const OUTPUT = path.join(ROOT, 'bpf', '.output');
const MAX_BPF_STACK = 512;
/** Headroom for a kernel that sizes frames less tightly than the disassembly shows. */
const MARGIN = 64;

interface Frame { readonly section: string; readonly stack: number; readonly calls: ReadonlySet<string> }

/**
 * Functions of `llvm-objdump -dr` output: section, deepest stack offset, and
 * the functions it calls (a BPF-to-BPF call is `call -1` with an R_BPF_64_32
 * relocation naming the callee; helper calls carry no relocation).
 */
function framesOf(disassembly: string): Map<string, Frame> {
  const frames = new Map<string, { section: string; stack: number; calls: Set<string> }>();
  let section = '';
  let current: { section: string; stack: number; calls: Set<string> } | null = null;
  let callPending = false;
  for (const line of disassembly.split('\n')) {
    const sec = /^Disassembly of section (\S+):/.exec(line);
    if (sec) {
      section = sec[1]!;
      current = null;
      continue;
    }
    const fn = /^[0-9a-f]+ <([\w.]+)>:/.exec(line);
    // LBB<n>_<m> are branch targets inside a function, not functions
    if (fn && !/^LBB\d+_\d+$/.test(fn[1]!)) {
      current = { section, stack: 0, calls: new Set() };
      frames.set(fn[1]!, current);
      continue;
    }
    if (current === null) continue;
    for (const m of line.matchAll(/r10 - (\d+)/g)) current.stack = Math.max(current.stack, Number(m[1]));
    const reloc = /R_BPF_64_32\s+([\w.]+)/.exec(line);
    if (reloc && callPending) current.calls.add(reloc[1]!);
    callPending = /\tcall -1\b/.test(line);
  }
  return frames;
}

const round32 = (n: number) => Math.ceil(Math.max(n, 1) / 32) * 32;

/** The deepest chain from `name`: [bytes as the verifier counts them, the chain]. */
function chainDepth(frames: Map<string, Frame>, name: string, seen: readonly string[] = []): [number, string[]] {
  const f = frames.get(name);
  if (f === undefined) throw new Error(`call to ${name}, which the disassembly does not define`);
  if (seen.includes(name)) throw new Error(`recursion through ${[...seen, name].join(' -> ')}`);
  // a static function is called through its section's symbol: assume the deepest one there
  const callees = [...f.calls].flatMap((c) => (frames.has(c) ? [c] : [...frames].filter(([, g]) => g.section === c).map(([n]) => n)));
  let best: [number, string[]] = [0, []];
  for (const c of callees) {
    const d = chainDepth(frames, c, [...seen, name]);
    if (d[0] > best[0]) best = d;
  }
  return [round32(f.stack) + best[0], [name, ...best[1]]];
}

/** Every program (a function outside .text) with its deepest chain. */
function programDepths(disassembly: string): { program: string; bytes: number; chain: string[] }[] {
  const frames = framesOf(disassembly);
  return [...frames].filter(([, f]) => f.section !== '.text').map(([program]) => {
    const [bytes, chain] = chainDepth(frames, program);
    return { program, bytes, chain };
  });
}

const SYNTHETIC = `
Disassembly of section .text:

0000000000000000 <helper>:
       0:	*(u64 *)(r10 - 344) = r1
       1:	exit

Disassembly of section tracepoint/syscalls/sys_exit_recvmmsg:

0000000000000000 <prog>:
       0:	*(u64 *)(r10 - 8) = r1

0000000000000008 <LBB1_2>:
       1:	*(u64 *)(r10 - 168) = r1
       2:	call -1
		0000000000000010:  R_BPF_64_32	helper
       3:	call 5
       4:	exit
`;

test('bpf stack: frames, calls and the verifier\'s rounding, on a known disassembly', () => {
  const frames = framesOf(SYNTHETIC);
  assert.equal(frames.get('prog')!.stack, 168);
  assert.deepEqual([...frames.get('prog')!.calls], ['helper']);
  assert.equal(frames.get('helper')!.section, '.text');
  // 168 -> 192, 344 -> 352: 544, over the limit
  assert.deepEqual(programDepths(SYNTHETIC), [{ program: 'prog', bytes: 544, chain: ['prog', 'helper'] }]);
  // a helper call (no relocation) adds nothing
  assert.deepEqual(programDepths(SYNTHETIC.replace(/\t\t0+10:.*\n/, '')), [{ program: 'prog', bytes: 192, chain: ['prog'] }]);
});

test(`bpf stack: every program of bpf/.output, with what it calls, stays ${MARGIN} bytes below ${MAX_BPF_STACK}`, () => {
  const objects = fs.existsSync(OUTPUT) ? fs.readdirSync(OUTPUT).filter((f) => f.endsWith('.bpf.o')) : [];
  assert.ok(objects.length > 0, `no BPF objects in ${OUTPUT}: run bash scripts/setup.sh --build-only`);
  const over: string[] = [];
  let programs = 0;
  for (const o of objects) {
    const dis = execFileSync('llvm-objdump', ['-dr', '--no-show-raw-insn', path.join(OUTPUT, o)], { encoding: 'utf8', maxBuffer: 256 << 20 });
    for (const p of programDepths(dis)) {
      programs++;
      if (p.bytes > MAX_BPF_STACK - MARGIN) over.push(`${o}: ${p.chain.join(' -> ')} uses ${p.bytes} bytes`);
    }
  }
  assert.ok(programs >= objects.length, 'each object has programs');
  assert.deepEqual(over, []);
});
