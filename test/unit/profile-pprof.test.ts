/**
 * exporter/profiles/pprof.ts: what we encode decodes (a small protobuf
 * reader here, independent of the writer) to the profile we meant, and the
 * real reader, `go tool pprof` from the Go distribution, reads the file and
 * lists the functions with the values we put in (-raw, -top).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { renderPprof, encodePprofMessage } from '../../exporter/profiles/pprof.ts';
import { PbWriter as ProtoWriter } from '../../common/protobuf.ts';
import { rec, u, k, j } from '../support/profile-cli-records.ts';

// ---- a minimal protobuf reader: field -> list of (varint bigint | bytes)
type Field = bigint | Buffer;
function readVarint(b: Buffer, p: { i: number }): bigint {
  let x = 0n, s = 0n;
  for (;;) {
    const c = b[p.i++];
    if (c === undefined) throw new Error('varint past the end');
    x |= BigInt(c & 0x7f) << s;
    if (c < 0x80) return x;
    s += 7n;
  }
}
function fields(b: Buffer): Map<number, Field[]> {
  const m = new Map<number, Field[]>();
  const p = { i: 0 };
  while (p.i < b.length) {
    const tag = Number(readVarint(b, p));
    const f = tag >> 3, wire = tag & 7;
    let v: Field;
    if (wire === 0) v = readVarint(b, p);
    else if (wire === 2) {
      const n = Number(readVarint(b, p));
      v = b.subarray(p.i, p.i + n);
      p.i += n;
      assert.ok(p.i <= b.length, 'length past the end');
    } else throw new Error(`wire type ${wire}`);
    if (!m.has(f)) m.set(f, []);
    m.get(f)!.push(v);
  }
  return m;
}
const num = (m: Map<number, Field[]>, f: number): bigint => (m.get(f)?.[0] as bigint | undefined) ?? 0n;
function packedVarints(b: Buffer | undefined): bigint[] {
  if (!b) return [];
  const p = { i: 0 }, out: bigint[] = [];
  while (p.i < b.length) out.push(readVarint(b, p));
  return out;
}

interface Decoded {
  types: string[];
  samples: { stack: string[]; values: bigint[]; labels: Record<string, string | bigint> }[];
  mappings: { file: string; buildId: string; start: bigint; limit: bigint; offset: bigint }[];
  period: bigint;
  periodType: string;
  defaultType: string;
  durationNanos: bigint;
}
function decode(buf: Buffer): Decoded {
  const p = fields(buf);
  const strs = (p.get(6) ?? []).map((b) => (b as Buffer).toString('utf8'));
  assert.equal(strs[0], '', 'string_table[0] is ""');
  const s = (i: bigint) => { assert.ok(i < BigInt(strs.length), `string index ${i}`); return strs[Number(i)]!; };
  const vt = (b: Buffer) => { const m = fields(b); return `${s(num(m, 1))}/${s(num(m, 2))}`; };
  const fns = new Map<bigint, string>();
  for (const b of p.get(5) ?? []) { const m = fields(b as Buffer); fns.set(num(m, 1), s(num(m, 2))); }
  const maps = new Map<bigint, Decoded['mappings'][number]>();
  for (const b of p.get(3) ?? []) {
    const m = fields(b as Buffer);
    maps.set(num(m, 1), { file: s(num(m, 5)), buildId: s(num(m, 6)), start: num(m, 2), limit: num(m, 3), offset: num(m, 4) });
  }
  const locs = new Map<bigint, string>();
  for (const b of p.get(4) ?? []) {
    const m = fields(b as Buffer);
    assert.ok(maps.has(num(m, 2)), 'every location has a mapping that exists');
    const line = fields(m.get(4)![0] as Buffer);
    const name = fns.get(num(line, 1));
    assert.ok(name !== undefined, 'every line names a function that exists');
    locs.set(num(m, 1), name);
  }
  const samples = (p.get(2) ?? []).map((b) => {
    const m = fields(b as Buffer);
    const labels: Record<string, string | bigint> = {};
    for (const lb of m.get(3) ?? []) { const l = fields(lb as Buffer); labels[s(num(l, 1))] = l.has(2) ? s(num(l, 2)) : num(l, 3); }
    return { stack: packedVarints(m.get(1)?.[0] as Buffer).map((id) => { assert.ok(locs.has(id)); return locs.get(id)!; }), values: packedVarints(m.get(2)?.[0] as Buffer), labels };
  });
  return {
    types: (p.get(1) ?? []).map((b) => vt(b as Buffer)), samples, mappings: [...maps.values()],
    period: num(p, 12), periodType: vt(p.get(11)![0] as Buffer), defaultType: s(num(p, 14)), durationNanos: num(p, 10),
  };
}

test('pprof: ProtoWriter varints (table: the protobuf spec examples, negatives as 10 bytes)', () => {
  const t: [bigint | number, string][] = [[0, '00'], [1, '01'], [127, '7f'], [128, '8001'], [150, '9601'], [300, 'ac02'], [-1n, 'ffffffffffffffffff01'], [(1n << 63n), '80808080808080808001']];
  for (const [v, hex] of t) assert.equal(new ProtoWriter().varint(v).finish().toString('hex'), hex, String(v));
  // field 1 = 150 is the spec's 08 96 01; zero scalars are left out; strings length-prefixed
  assert.equal(new ProtoWriter().int(1, 150).int(2, 0).string(2, 'testing').finish().toString('hex'), '089601' + '120774657374696e67');
  assert.equal(new ProtoWriter().packed(4, [3, 270, 86942]).finish().toString('hex'), '2206038e029ea705');
});

const onCpu = [
  rec([u('spin_a', 0x401136n), u('main', 0x4011a0n)], 30n),
  rec([u('spin_b', 0x401156n), u('main', 0x4011a8n)], 10n),
  rec([k('asm_sysvec_apic_timer_interrupt'), u('spin_a', 0x401137n), u('main', 0x4011a0n)], 2n, { pid: 43 }),
  rec([j('hot', '/srv/a.js', 7), u('', 0x7f0000n, '/usr/lib/libc.so.6', 0x1000n)], 5n, { tgid: 7, comm: 'node', user_stack: 'OK' }),
  rec([k('schedule')], 1n, { user_stack: 'LOST', comm: 'x', tgid: 9 }),
];

const appMapping = (_tgid: number, module: string) => (module === '/bin/app' ? { start: 0x401000n, limit: 0x402000n, offset: 0x1000n, buildId: 'abcd' } : undefined);

test('pprof: on-CPU decodes to samples/count + cpu/nanoseconds, period 1e9/hz, leaf-first stacks, labels, mappings', () => {
  const buf = encodePprofMessage(onCpu, {
    timeNanos: 1_700_000_000_000_000_000n, durationNanos: 3_000_000_000n,
    mappingOf: appMapping,
  });
  const d = decode(buf);
  assert.deepEqual(d.types, ['samples/count', 'cpu/nanoseconds']);
  assert.equal(d.period, 10101010n);
  assert.equal(d.periodType, 'cpu/nanoseconds');
  assert.equal(d.defaultType, 'cpu');
  assert.equal(d.durationNanos, 3_000_000_000n);
  const by = (fn: string) => d.samples.filter((s) => s.stack[0] === fn);
  assert.equal(d.samples.length, 5);
  assert.deepEqual(by('spin_a').map((s) => [s.stack, s.values, s.labels.pid, s.labels.tid ?? null]), [[['spin_a', 'main'], [30n, 303030300n], 42n, null]]);
  assert.deepEqual(by('asm_sysvec_apic_timer_interrupt').map((s) => [s.stack, s.values, s.labels.tid]), [[['asm_sysvec_apic_timer_interrupt', 'spin_a', 'main'], [2n, 20202020n], 43n]]);
  assert.deepEqual(by('hot').map((s) => [s.stack, s.labels.comm, s.labels.pid, s.labels.state]), [[['hot', '[libc.so.6]'], 'node', 7n, 'RUNNING']]);
  assert.deepEqual(by('schedule').map((s) => s.stack), [['schedule', '[user stack LOST]']]);
  const app = d.mappings.filter((m) => m.file === '/bin/app');
  assert.deepEqual(app, [{ file: '/bin/app', buildId: 'abcd', start: 0x401000n, limit: 0x402000n, offset: 0x1000n }]);
  assert.ok(d.mappings.some((m) => m.file === '[kernel.kallsyms]'));
  assert.ok(d.mappings.some((m) => m.file === '/usr/lib/libc.so.6' && m.start === 0n));
});

test('pprof: off-CPU alone is offcpu/nanoseconds with the state label; mixed has all three types, zeros in the others', () => {
  const off = [rec([k('schedule'), u('read_file')], 2_000_000n, { kind: 'OFFCPU', state: 'DISK', sample_hz: 0 })];
  const d = decode(encodePprofMessage(off, { timeNanos: 0n, durationNanos: 1n }));
  assert.deepEqual(d.types, ['offcpu/nanoseconds']);
  assert.equal(d.defaultType, 'offcpu');
  assert.deepEqual(d.samples.map((s) => [s.stack, s.values, s.labels.state]), [[['schedule', 'read_file'], [2_000_000n], 'DISK']]);
  const mixed = decode(encodePprofMessage([...off, onCpu[0]!], { timeNanos: 0n, durationNanos: 1n }));
  assert.deepEqual(mixed.types, ['samples/count', 'cpu/nanoseconds', 'offcpu/nanoseconds']);
  assert.deepEqual(mixed.samples.map((s) => s.values).sort(), [[0n, 0n, 2_000_000n], [30n, 303_030_300n, 0n]]);
});

test('pprof: identical stacks from two windows are one sample, summed', () => {
  const d = decode(encodePprofMessage([onCpu[0]!, { ...onCpu[0]!, window_start_ns: 5n }], { timeNanos: 0n, durationNanos: 1n }));
  assert.deepEqual(d.samples.map((s) => s.values), [[60n, 606_060_600n]]);
});

test('pprof: go tool pprof reads the gzipped file: -raw has our samples, -top lists spin_a 3:1 against spin_b', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rf-pprof-'));
  try {
    const file = path.join(dir, 'p.pb.gz');
    const opts = { timeNanos: 1_700_000_000_000_000_000n, durationNanos: 3_000_000_000n, comments: ['ringflow profile test'], mappingOf: appMapping };
    const gz = renderPprof(onCpu, opts);
    assert.deepEqual(gunzipSync(gz), encodePprofMessage(onCpu, opts));
    writeFileSync(file, gz);
    const env = { ...process.env, HOME: process.env.HOME ?? '/root', PPROF_TMPDIR: dir };
    const raw = execFileSync('go', ['tool', 'pprof', '-raw', file], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(raw, /samples\/count cpu\/nanoseconds\[dflt\]/, raw);
    assert.match(raw, /^\s+30\s+303030300: \d+ \d+\s*$/m, raw);
    assert.match(raw, /^\s*\d+: 0x401000\/0x402000\/0x1000 \/bin\/app abcd \[FN\]$/m, raw);
    assert.match(raw, /ringflow profile test/);
    const top = execFileSync('go', ['tool', 'pprof', '-top', '-sample_index=samples', '-nodecount=20', file], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
    const flat = (fn: string) => Number(new RegExp(`^\\s*(\\d+)\\s+[\\d.]+%.*\\s${fn.replace(/[[\]]/g, '\\$&')}\\s*$`, 'm').exec(top)?.[1]);
    assert.equal(flat('spin_a'), 30, top);
    assert.equal(flat('spin_b'), 10, top);
    assert.equal(flat('hot'), 5, top);
    assert.equal(flat('asm_sysvec_apic_timer_interrupt'), 2, top);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
