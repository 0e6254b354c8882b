/**
 * collector/profile: the drain decoder (drain.ts) and the record builder
 * (records.ts), table-driven, and every built record valid for
 * schemas/profile.stacks.avsc. The kernel side is test/native/profile.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeProfileDrain, PROF_STACK, type DecodedDrain } from '../../collector/profile/drain.ts';
import { buildStackRecords, type Symbolize } from '../../collector/profile/records.ts';
import { schemaRegistry } from '../../schemas/index.ts';

interface Key { tgid: number; pid?: number; user: number; kernel: number; kind?: number; slot?: number; map?: number; state?: number; value: bigint }

function counts(keys: Key[]): Buffer {
  const b = Buffer.alloc(keys.length * 32);
  keys.forEach((k, i) => {
    const o = i * 32;
    b.writeUInt32LE(k.tgid, o);
    b.writeUInt32LE(k.pid ?? 0, o + 4);
    b.writeInt32LE(k.user, o + 8);
    b.writeInt32LE(k.kernel, o + 12);
    b[o + 16] = k.kind ?? 0;
    b[o + 17] = k.slot ?? 0;
    b[o + 18] = k.map ?? 0;
    b[o + 19] = k.state ?? 0;
    b.writeBigUInt64LE(k.value, o + 24);
  });
  return b;
}

function stacks(list: { map: number; id: number; ips: bigint[] }[]): Buffer {
  const parts = list.map((s) => {
    const b = Buffer.alloc(16 + s.ips.length * 8);
    b.writeUInt32LE(s.map, 0);
    b.writeUInt32LE(s.id, 4);
    b.writeUInt32LE(s.ips.length, 8);
    s.ips.forEach((ip, i) => b.writeBigUInt64LE(ip, 16 + i * 8));
    return b;
  });
  return Buffer.concat(parts);
}

function comms(list: [number, string][]): Buffer {
  const b = Buffer.alloc(list.length * 20);
  list.forEach(([tgid, c], i) => {
    b.writeUInt32LE(tgid, i * 20);
    b.write(c, i * 20 + 4, 16, 'utf8');
  });
  return b;
}

const K1 = 0xffffffff81000010n;
const K2 = 0xffffffff81000200n;

test('decodeProfileDrain: keys, stack statuses, comms', () => {
  const cases: { name: string; key: Key; user: string; kernel: string; userFrames?: bigint[]; kind: string; state: string }[] = [
    { name: 'on-CPU with both stacks', key: { tgid: 10, user: 1, kernel: 2, value: 5n }, user: 'ok', kernel: 'ok', userFrames: [0x401000n, 0x401100n], kind: 'ONCPU', state: 'RUNNING' },
    { name: 'kernel thread: no user stack', key: { tgid: 11, user: PROF_STACK.NONE, kernel: 2, value: 1n }, user: 'none', kernel: 'ok', kind: 'ONCPU', state: 'RUNNING' },
    { name: 'collision: stack lost, sample kept', key: { tgid: 12, user: PROF_STACK.LOST, kernel: PROF_STACK.NONE, value: 1n }, user: 'lost', kernel: 'none', kind: 'ONCPU', state: 'RUNNING' },
    { name: 'off-CPU, expired', key: { tgid: 13, user: PROF_STACK.EXPIRED, kernel: PROF_STACK.EXPIRED, kind: 1, state: 2, value: 7_000_000n }, user: 'expired', kernel: 'expired', kind: 'OFFCPU', state: 'SLEEPING' },
    { name: 'id not in the drained stacks', key: { tgid: 14, user: 99, kernel: 2, map: 0, value: 1n }, user: 'missing', kernel: 'ok', kind: 'ONCPU', state: 'RUNNING' },
    { name: 'id of another stack map', key: { tgid: 15, user: 1, kernel: 2, map: 2, value: 1n }, user: 'missing', kernel: 'missing', kind: 'ONCPU', state: 'RUNNING' },
    { name: 'off-CPU, D state, stack map 1', key: { tgid: 16, user: 1, kernel: 3, map: 1, kind: 1, state: 3, value: 9n }, user: 'ok', kernel: 'ok', userFrames: [0x500000n], kind: 'OFFCPU', state: 'DISK' },
    { name: 'unknown state value', key: { tgid: 17, user: PROF_STACK.NONE, kernel: PROF_STACK.NONE, kind: 1, state: 200, value: 1n }, user: 'none', kernel: 'none', kind: 'OFFCPU', state: 'OTHER' },
  ];
  const d = decodeProfileDrain({
    generation: 4n,
    counts: counts(cases.map((c) => c.key)),
    stacks: stacks([
      { map: 0, id: 1, ips: [0x401000n, 0x401100n] },
      { map: 0, id: 2, ips: [K1, K2] },
      { map: 1, id: 1, ips: [0x500000n] },
      { map: 1, id: 3, ips: [K1] },
    ]),
    comms: comms([[10, 'spin'], [13, 'a-long-comm-name']]),
  });
  assert.equal(d.generation, 4n);
  assert.equal(d.malformed, 0);
  assert.equal(d.counts.length, cases.length);
  cases.forEach((c, i) => {
    const got = d.counts[i]!;
    assert.equal(got.tgid, c.key.tgid, c.name);
    assert.equal(got.value, c.key.value, c.name);
    assert.equal(got.user.status, c.user, `${c.name}: user`);
    assert.equal(got.kernel.status, c.kernel, `${c.name}: kernel`);
    assert.equal(got.kind, c.kind, c.name);
    assert.equal(got.state, c.state, c.name);
    if (c.userFrames) assert.deepEqual(got.user.frames, c.userFrames, c.name);
  });
  assert.equal(d.comms.get(10), 'spin');
  assert.equal(d.comms.get(13), 'a-long-comm-name', 'a full 16-byte comm (no NUL) is read whole');
});

test('decodeProfileDrain: a cut stack or count buffer is counted as malformed, never thrown', () => {
  const s = stacks([{ map: 0, id: 1, ips: [1n, 2n] }]);
  const d = decodeProfileDrain({ generation: 0n, counts: counts([{ tgid: 1, user: 1, kernel: -1, value: 1n }, { tgid: 2, user: 1, kernel: -1, value: 1n }]).subarray(0, 40), stacks: s.subarray(0, s.length - 4), comms: Buffer.alloc(0) });
  assert.equal(d.malformed, 2);
  assert.equal(d.counts.length, 1);
  assert.equal(d.counts[0]!.user.status, 'missing');
});

const names: Record<string, string> = { '401000': 'spin_a', '401100': 'main', ffffffff81000010: 'schedule', ffffffff81000200: 'do_nanosleep' };
const symbolize: Symbolize = (_tgid, addrs, kernel) => addrs.map((a) => ({
  address: a,
  module: kernel ? '[kernel.kallsyms]' : '/bin/spin',
  offset: kernel ? Number(a - 0xffffffff81000000n) : Number(a - 0x400000n),
  function: names[a.toString(16)] ?? null,
  // a JIT-like frame with its script and line (V8's perf map names them)
  ...(a === 0x401100n ? { file: 'app.js', line: 12 } : {}),
  kind: kernel ? 'KERNEL' : 'USER',
}));

function drainOf(keys: Key[]): DecodedDrain {
  return decodeProfileDrain({
    generation: 1n,
    counts: counts(keys),
    stacks: stacks([
      { map: 0, id: 1, ips: [0x401000n, 0x401100n] },
      { map: 0, id: 2, ips: [K1, K2] },
      { map: 1, id: 5, ips: [0x401000n, 0x401100n] },
      { map: 1, id: 6, ips: [K1, K2] },
    ]),
    comms: comms([[10, 'spin']]),
  });
}

const CTX = { windowStartNs: 1_000n, windowEndNs: 2_000n, sampleHz: 19, processName: (t: number) => (t === 10 ? 'spin-svc' : ''), symbolize };

test('buildStackRecords: frames kernel then user, leaf first, named; statuses; sample_hz only for ONCPU', () => {
  const recs = buildStackRecords(drainOf([
    { tgid: 10, user: 1, kernel: 2, value: 3n },
    { tgid: 10, user: 1, kernel: PROF_STACK.NONE, value: 4n },
    { tgid: 20, user: PROF_STACK.LOST, kernel: 2, kind: 1, state: 1, value: 1_500_000n },
  ]), CTX);
  assert.equal(recs.length, 3);
  const [a, b, c] = recs;
  assert.deepEqual(a!.frames.map((f) => [f.function, f.kind]), [['schedule', 'KERNEL'], ['do_nanosleep', 'KERNEL'], ['spin_a', 'USER'], ['main', 'USER']]);
  assert.equal(a!.frames[0]!.address, BigInt.asIntN(64, K1), 'a kernel address is its two\'s complement long');
  assert.equal(a!.frames[2]!.offset, 0x1000n);
  assert.deepEqual(a!.frames.map((f) => [f.file, f.line]), [[null, null], [null, null], [null, null], ['app.js', 12]], 'file and line when symbolisation has them');
  assert.deepEqual([a!.comm, a!.process_name, a!.value, a!.sample_hz, a!.user_stack, a!.kernel_stack], ['spin', 'spin-svc', 3n, 19, 'OK', 'OK']);
  assert.deepEqual(b!.frames.map((f) => f.function), ['spin_a', 'main']);
  assert.equal(b!.kernel_stack, 'NONE');
  assert.deepEqual([c!.kind, c!.state, c!.sample_hz, c!.user_stack, c!.comm, c!.frames.length], ['OFFCPU', 'PREEMPTED', 0, 'LOST', '', 2]);
  for (const r of recs) assert.deepEqual([r.window_start_ns, r.window_end_ns], [1_000n, 2_000n]);
});

test('buildStackRecords: the same stacks under ids of two stack maps make one record, values summed; other states or threads do not merge', () => {
  const table: { name: string; keys: Key[]; want: bigint[] }[] = [
    { name: 'off-CPU block begun in the previous generation', keys: [
      { tgid: 10, user: 1, kernel: 2, map: 0, kind: 1, state: 2, value: 200n },
      { tgid: 10, user: 5, kernel: 6, map: 1, kind: 1, state: 2, value: 300n },
    ], want: [500n] },
    { name: 'different state', keys: [
      { tgid: 10, user: 1, kernel: 2, map: 0, kind: 1, state: 2, value: 200n },
      { tgid: 10, user: 5, kernel: 6, map: 1, kind: 1, state: 3, value: 300n },
    ], want: [200n, 300n] },
    { name: 'different threads', keys: [
      { tgid: 10, pid: 11, user: 1, kernel: 2, value: 1n },
      { tgid: 10, pid: 12, user: 1, kernel: 2, value: 1n },
    ], want: [1n, 1n] },
    { name: 'on- and off-CPU of one stack', keys: [
      { tgid: 10, user: 1, kernel: 2, value: 1n },
      { tgid: 10, user: 1, kernel: 2, kind: 1, state: 2, value: 1n },
    ], want: [1n, 1n] },
    { name: 'two expired blocks', keys: [
      { tgid: 10, user: -3, kernel: -3, map: 0, kind: 1, state: 2, value: 5n },
      { tgid: 10, user: -3, kernel: -3, map: 1, kind: 1, state: 2, value: 6n },
    ], want: [11n] },
  ];
  for (const t of table) assert.deepEqual(buildStackRecords(drainOf(t.keys), CTX).map((r) => r.value), t.want, t.name);
});

test('every built record is valid for schemas/profile.stacks.avsc (with its envelope)', () => {
  const s = schemaRegistry().byTopic('ringflow.profile.stacks.v1');
  assert.ok(s, 'profile.stacks is registered');
  const recs = buildStackRecords(drainOf([
    { tgid: 10, user: 1, kernel: 2, value: 3n },
    { tgid: 10, user: -1, kernel: -2, value: 1n },
    { tgid: 20, user: -3, kernel: -3, kind: 1, state: 4, value: 1n },
  ]), CTX);
  for (const r of recs) {
    const paths: string[] = [];
    const ok = s.type.isValid({ ...r, host: 'h', boot_time_ns: 1n }, { errorHook: (p: string[]) => paths.push(p.join('.')) });
    assert.ok(ok, `invalid at ${paths.join(', ')}`);
  }
});
