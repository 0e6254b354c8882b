/**
 * The map operations an HTTP/1 exchange pays on rf_l7_pending (issue 10,
 * "where the bar is"): each is a hash of the 32-byte key and a bucket walk,
 * on every exchange. Read from the compiled object (bpf/.output/l7.bpf.o,
 * `make -C bpf`), without loading it: the framing events (rf_l7_h1_on) look
 * the entry up once per event that needs it (a response's start, a head's
 * end, a message's end, a give-up: 4 sites), insert a new one without
 * looking it up again (everything a message's start sets is set in the
 * staged copy), and send the exchange they complete from the entry they
 * hold (the copy and the delete there, not a second lookup through
 * rf_l7_x_emit from the walk's callback).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const OBJ = path.resolve(import.meta.dirname, '..', '..', 'bpf', '.output', 'l7.bpf.o');

const HELPERS: Record<number, string> = { 1: 'lookup', 2: 'update', 3: 'delete' };

/** Per function: its map helper calls as "op map", and the global functions it calls. */
export function mapOps(disassembly: string): Map<string, { ops: string[]; calls: string[] }> {
  const out = new Map<string, { ops: string[]; calls: string[] }>();
  let cur: { ops: string[]; calls: string[] } | undefined;
  let lastMap = '';
  for (const line of disassembly.split('\n')) {
    const fn = /^[0-9a-f]+ <([A-Za-z_][\w.]*)>:/.exec(line)?.[1];
    // LBB<n>_<m> are branch targets inside a function, not functions
    if (fn !== undefined && !/^LBB\d/.test(fn)) {
      cur = { ops: [], calls: [] };
      out.set(fn, cur);
      lastMap = '';
      continue;
    }
    if (!cur) continue;
    const map = /R_BPF_64_64\s+(\S+)/.exec(line)?.[1];
    if (map !== undefined) lastMap = map;
    const glob = /R_BPF_64_32\s+(\S+)/.exec(line)?.[1];
    if (glob !== undefined) cur.calls.push(glob);
    const helper = HELPERS[Number(/:\s+call (\d+)$/.exec(line)?.[1])];
    if (helper !== undefined) cur.ops.push(`${helper} ${lastMap}`);
  }
  return out;
}

const count = (ops: string[], op: string) => ops.filter((o) => o === op).length;

test('mapOps reads helper calls, their map and global calls from a disassembly', () => {
  const dis = `
0000000000000000 <f>:
       0:	r1 = 0 ll
		0000000000000000:  R_BPF_64_64	rf_l7_pending
       2:	call 1
       3:	if r0 == 0 goto +1 <LBB0_2>

0000000000000020 <LBB0_2>:
       4:	call 3
       5:	call -1
		0000000000000028:  R_BPF_64_32	rf_l7_x_emit
       6:	exit

0000000000000038 <g>:
       7:	call 2
       8:	exit
`;
  const m = mapOps(dis);
  assert.deepEqual(m.get('f'), { ops: ['lookup rf_l7_pending', 'delete rf_l7_pending'], calls: ['rf_l7_x_emit'] });
  assert.deepEqual(m.get('g'), { ops: ['update '], calls: [] });
});

test('HTTP/1 framing events: one lookup of rf_l7_pending per event that needs the entry, none after an insert, the exchange sent from the entry held', () => {
  const dis = execFileSync('llvm-objdump', ['-dr', '--no-show-raw-insn', OBJ], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const m = mapOps(dis);
  const on = m.get('rf_l7_h1_on');
  const step = m.get('rf_l7_h1_step');
  assert.ok(on && step, 'rf_l7_h1_on and rf_l7_h1_step in l7.bpf.o');
  // a response's start, a head's end, a message's end, a give-up; the inserts (request, unknown request) not re-read
  assert.equal(count(on.ops, 'lookup rf_l7_pending'), 4, on.ops.join(', '));
  assert.equal(count(on.ops, 'update rf_l7_pending'), 2, on.ops.join(', '));
  // the send (copy to the ring, then the delete that decides it against the sweep) is here, from the entry held
  assert.ok(count(on.ops, 'delete rf_l7_pending') >= 1, on.ops.join(', '));
  assert.ok(!on.calls.includes('rf_l7_x_emit'), 'rf_l7_h1_on sends through rf_l7_x_emit (a second lookup)');
  assert.ok(!step.calls.includes('rf_l7_x_emit'), 'the walk callback sends through rf_l7_x_emit (a second lookup)');
});

/** Sizes of the named structs in an object's BTF (bpftool's raw dump). */
export function btfStructSizes(raw: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of raw.matchAll(/^\[\d+\] STRUCT '(\w+)' size=(\d+)/gm)) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

test('btfStructSizes reads a raw BTF dump', () => {
  const raw = "[19] STRUCT 'rf_l7_pend' size=1208 vlen=6\n\t'x' type_id=20 bits_offset=0\n[20] STRUCT 'rf_l7_exchange' size=176 vlen=27\n";
  assert.deepEqual([...btfStructSizes(raw)], [['rf_l7_pend', 1208], ['rf_l7_exchange', 176]]);
});

test('a pending entry is its exchange, 8 bytes of state and the two heads: no slack copied in at every insert', () => {
  const raw = execFileSync('bpftool', ['btf', 'dump', 'file', OBJ, 'format', 'raw'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const sizes = btfStructSizes(raw);
  const x = sizes.get('rf_l7_exchange');
  assert.ok(x !== undefined, 'struct rf_l7_exchange in l7.bpf.o');
  // RF_L7_PEND_HEAD (512) per side; native/src/rf_core.c's rf_l7_pend_u mirrors it (its sweep checks the map's value size)
  assert.equal(sizes.get('rf_l7_pend'), x + 8 + 2 * 512);
});
