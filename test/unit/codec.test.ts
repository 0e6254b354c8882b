/**
 * Raw C records with known values -> transcode -> decode with the registry
 * -> exactly the expected objects. Raw records are built at the offsets of the
 * "c" annotations, which layout.test.ts pins to bpf/events.h.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { schemaRegistry, type RegisteredSchema } from '../../schemas/registry.ts';
import { decodeRecord } from '../../schemas/wire.ts';
import { buildBatch, createTranscoder, type TranscodedRecord } from '../../collector/events/transcode.ts';
import { formatInet } from '../../collector/events/inet.ts';
import { toJsonLine } from '../../collector/events/json.ts';
import { rawRecord, type RawValue } from '../fixtures/raw.ts';

const registry = schemaRegistry();
const schema = (id: string): RegisteredSchema => registry.byId(id)!;
const HOST = 'node-7';
const BOOT = 1_732_000_000_123_456_789n;
const transcoder = createTranscoder({
  host: HOST,
  bootTimeNs: BOOT,
  dropReasonNames: new Map([[2, 'SKB_DROP_REASON_NO_SOCKET'], [5, 'TCP_CSUM']]),
});

const V4 = (a: number, b: number, c: number, d: number): string => Buffer.from([a, b, c, d]).toString('hex');

/** Transcodes one raw record through a batch and decodes the framed bytes. */
function roundTrip(raw: Buffer): { rec: TranscodedRecord; value: Record<string, unknown> } {
  const got: TranscodedRecord[] = [];
  const res = transcoder.transcodeBatch(buildBatch([raw]), (s, key, value) => got.push({ schema: s, key, value }));
  assert.deepEqual([res.records, res.unknown], [1, 0]);
  const rec = got[0]!;
  const { schema: writer, value } = decodeRecord(rec.value);
  assert.equal(writer, rec.schema);
  return { rec, value: { ...value } };
}

const header = {
  cpu: 3, pid: 4242, tgid: 4200, uid: 1000, ts_ns: 123_456_789_012n, cgroup_id: 77n, comm: 'postgres',
};
const headerOut = {
  cpu: 3, pid: 4242n, tgid: 4200n, uid: 1000n, ts_ns: 123_456_789_012n, cgroup_id: 77n, comm: 'postgres',
};
const envelope = { host: HOST, boot_time_ns: BOOT };

interface Case {
  readonly name: string;
  readonly schema: string;
  readonly raw: Readonly<Record<string, RawValue>>;
  readonly want: Readonly<Record<string, unknown>>;
  readonly key: string;
}

const cases: Case[] = [
  {
    name: 'runqlat, wake-up', schema: 'sched.runqlat',
    raw: { ...header, latency_ns: 15_000n, prev_pid: 0, kind: 'WAKEUP' },
    want: { ...headerOut, latency_ns: 15_000n, prev_pid: 0n, kind: 'WAKEUP', ...envelope }, key: 'node-7/4200',
  },
  {
    name: 'runqlat, u64 > 2^53, u32 > 2^31, comm of 16 bytes without NUL', schema: 'sched.runqlat',
    raw: { ...header, uid: 4_294_967_294, ts_ns: 2n ** 60n + 12_345n, cgroup_id: 2n ** 53n + 1n, comm: 'abcdefghijklmnop', latency_ns: 2n ** 32n, prev_pid: 2 ** 31, kind: 'WAKEUP_NEW' },
    want: { ...headerOut, uid: 4_294_967_294n, ts_ns: 2n ** 60n + 12_345n, cgroup_id: 2n ** 53n + 1n, comm: 'abcdefghijklmnop', latency_ns: 2n ** 32n, prev_pid: 2n ** 31n, kind: 'WAKEUP_NEW', ...envelope },
    key: 'node-7/4200',
  },
  {
    name: 'runqlat, preempted, UTF-8 comm', schema: 'sched.runqlat',
    raw: { ...header, comm: 'héllo-wörld', kind: 'PREEMPTED' },
    want: { ...headerOut, comm: 'héllo-wörld', latency_ns: 0n, prev_pid: 0n, kind: 'PREEMPTED', ...envelope }, key: 'node-7/4200',
  },
  {
    name: 'runqlat, unknown kind and non-UTF-8 comm', schema: 'sched.runqlat',
    raw: { ...header, comm: Buffer.from([0x61, 0xff, 0x62, 0]), kind: 9 },
    want: { ...headerOut, comm: 'a\ufffdb', latency_ns: 0n, prev_pid: 0n, kind: 'UNKNOWN', ...envelope }, key: 'node-7/4200',
  },
  {
    name: 'runqlat, u64 2^64-1 wraps to the Avro long -1 and 2^63 to -2^63', schema: 'sched.runqlat',
    raw: { ...header, ts_ns: 2n ** 64n - 1n, cgroup_id: 2n ** 63n, comm: '' },
    want: { ...headerOut, ts_ns: -1n, cgroup_id: -(2n ** 63n), comm: '', latency_ns: 0n, prev_pid: 0n, kind: 'WAKEUP', ...envelope }, key: 'node-7/4200',
  },
  {
    name: 'cswitch, voluntary', schema: 'sched.cswitch',
    raw: { ...header, off_cpu_ns: 2n ** 53n + 1n, prev_pid: 99, voluntary: 1 },
    want: { ...headerOut, off_cpu_ns: 2n ** 53n + 1n, prev_pid: 99n, voluntary: 1, ...envelope }, key: 'node-7/4200',
  },
  ...(['READ', 'WRITE', 'FLUSH', 'DISCARD', 'OTHER'] as const).map((op, i): Case => ({
    name: `block, ${op}`, schema: 'block.io',
    raw: { ...header, latency_ns: 250_000n, sector: 2n ** 40n + BigInt(i), bytes: 4096 * (i + 1), dev_major: 259, dev_minor: i, queue_depth: 32, error: i === 4 ? -5 : 0, op },
    want: { ...headerOut, latency_ns: 250_000n, sector: 2n ** 40n + BigInt(i), bytes: BigInt(4096 * (i + 1)), dev_major: 259n, dev_minor: BigInt(i), queue_depth: 32n, error: i === 4 ? -5 : 0, op, ...envelope },
    key: `node-7/259:${i}`,
  })),
  {
    name: 'block, unknown op, extreme s32/u32', schema: 'block.io',
    raw: { ...header, bytes: 4_294_967_295, dev_major: 8, dev_minor: 16, error: -(2 ** 31), op: 200 },
    want: { ...headerOut, latency_ns: 0n, sector: 0n, bytes: 4_294_967_295n, dev_major: 8n, dev_minor: 16n, queue_depth: 0n, error: -(2 ** 31), op: 'OTHER', ...envelope },
    key: 'node-7/8:16',
  },
  {
    name: 'tcp connect, IPv4', schema: 'tcp.connect',
    raw: { ...header, saddr: V4(10, 0, 0, 2), daddr: V4(10, 0, 0, 1), sport: 43_210, dport: 5432, family: 2, state: 'ESTABLISHED', latency_ns: 180_000n },
    want: { ...headerOut, saddr: '10.0.0.2', daddr: '10.0.0.1', sport: 43_210, dport: 5432, family: 2, state: 'ESTABLISHED', latency_ns: 180_000n, ...envelope },
    key: 'node-7/10.0.0.1:5432-10.0.0.2:43210',
  },
  {
    name: 'tcp accept, IPv6', schema: 'tcp.accept',
    raw: { ...header, saddr: '20010db8000000000000000000000001', daddr: 'fe8000000000000001fffe23456700ff', sport: 443, dport: 51_000, family: 10, state: 'ESTABLISHED', backlog: 3, max_backlog: 4096 },
    want: { ...headerOut, saddr: '2001:db8::1', daddr: 'fe80::1ff:fe23:4567:ff', sport: 443, dport: 51_000, family: 10, state: 'ESTABLISHED', backlog: 3n, max_backlog: 4096n, ...envelope },
    key: 'node-7/[2001:db8::1]:443-[fe80::1ff:fe23:4567:ff]:51000',
  },
  {
    name: 'tcp retransmit, IPv4-mapped IPv6', schema: 'tcp.retransmit',
    raw: { ...header, saddr: '00000000000000000000ffffc0000201', daddr: '00000000000000000000ffffc6336407', sport: 8080, dport: 40_000, family: 10, state: 'FIN_WAIT1' },
    want: { ...headerOut, saddr: '::ffff:192.0.2.1', daddr: '::ffff:198.51.100.7', sport: 8080, dport: 40_000, family: 10, state: 'FIN_WAIT1', ...envelope },
    key: 'node-7/[::ffff:192.0.2.1]:8080-[::ffff:198.51.100.7]:40000',
  },
  {
    name: 'tcp drop, named reason (prefix stripped)', schema: 'tcp.drop',
    raw: { ...header, saddr: V4(127, 0, 0, 1), daddr: V4(127, 0, 0, 1), sport: 9000, dport: 35_000, family: 2, state: 'CLOSE_WAIT', reason: 2 },
    want: { ...headerOut, saddr: '127.0.0.1', daddr: '127.0.0.1', sport: 9000, dport: 35_000, family: 2, state: 'CLOSE_WAIT', reason: 2n, reason_name: 'NO_SOCKET', ...envelope },
    key: 'node-7/127.0.0.1:9000-127.0.0.1:35000',
  },
  {
    name: 'tcp drop, name given without prefix', schema: 'tcp.drop',
    raw: { ...header, family: 2, reason: 5 },
    want: { ...headerOut, saddr: '0.0.0.0', daddr: '0.0.0.0', sport: 0, dport: 0, family: 2, state: 'UNKNOWN', reason: 5n, reason_name: 'TCP_CSUM', ...envelope },
    key: 'node-7/0.0.0.0:0-0.0.0.0:0',
  },
  {
    name: 'tcp drop, unknown reason, unknown socket (family 0)', schema: 'tcp.drop',
    raw: { ...header, saddr: V4(1, 2, 3, 4), reason: 4_000_000_000 },
    want: { ...headerOut, saddr: '', daddr: '', sport: 0, dport: 0, family: 0, state: 'UNKNOWN', reason: 4_000_000_000n, reason_name: 'UNKNOWN_4000000000', ...envelope },
    key: 'node-7/:0-:0',
  },
];

const TCP_STATES = ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'BOUND_INACTIVE'];
TCP_STATES.forEach((state, i) => {
  cases.push({
    name: `tcp retransmit, state ${state} = ${i + 1}`, schema: 'tcp.retransmit',
    raw: { ...header, saddr: V4(10, 1, 1, 1), daddr: V4(10, 1, 1, 2), sport: 1, dport: 2, family: 2, state: i + 1 },
    want: { ...headerOut, saddr: '10.1.1.1', daddr: '10.1.1.2', sport: 1, dport: 2, family: 2, state, ...envelope },
    key: 'node-7/10.1.1.1:1-10.1.1.2:2',
  });
});

for (const c of cases) {
  test(`codec: ${c.name}`, () => {
    const s = schema(c.schema);
    const raw = rawRecord(s, c.raw);
    const { rec, value } = roundTrip(raw);
    assert.equal(rec.schema, s);
    assert.deepEqual(value, c.want);
    assert.equal(rec.key, c.key);
    assert.ok(s.type.isValid(value, { errorHook: (p) => assert.fail(`invalid at ${p.join('.')}`) }));
    // decodeRaw (the slow path) agrees, and so does encoding the value with avsc.
    assert.deepEqual({ ...transcoder.decodeRaw(raw)!.value }, c.want);
    assert.deepEqual(rec.value.subarray(10), s.type.toBuffer(value));
    assert.deepEqual(transcoder.transcodeRecord(raw), rec);
  });
}

test('codec: u64 and u32 boundaries take every encoder path', () => {
  const s = schema('sched.runqlat');
  const u64 = [0n, 1n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 52n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 0xdead_beef_cafe_f00dn];
  const u32 = [0, 1, 2 ** 30 - 1, 2 ** 30, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
  for (const v of u64) {
    for (const p of u32) {
      const { value } = roundTrip(rawRecord(s, { ts_ns: v, latency_ns: v, pid: p, prev_pid: p }));
      assert.equal(value.ts_ns, BigInt.asIntN(64, v), `ts_ns ${v}`);
      assert.equal(value.latency_ns, BigInt.asIntN(64, v));
      assert.equal(value.pid, BigInt(p), `pid ${p}`);
      assert.equal(value.prev_pid, BigInt(p));
    }
  }
  const b = schema('block.io');
  for (const e of [0, 1, -1, 63, -64, 64, -65, 2 ** 31 - 1, -(2 ** 31)]) {
    assert.equal(roundTrip(rawRecord(b, { error: e })).value.error, e, `error ${e}`);
  }
});

test('codec: both directions of one connection share a key', () => {
  const pairs: [string, string, number, number, number][] = [
    [V4(10, 0, 0, 1), V4(10, 0, 0, 2), 5432, 43_210, 2],
    [V4(127, 0, 0, 1), V4(127, 0, 0, 1), 9000, 35_000, 2], // same address: ports decide
    ['20010db8000000000000000000000002', '20010db8000000000000000000000001', 443, 443, 10],
  ];
  for (const id of ['tcp.connect', 'tcp.accept', 'tcp.retransmit', 'tcp.drop']) {
    for (const [a, b, pa, pb, family] of pairs) {
      const fwd = transcoder.transcodeRecord(rawRecord(schema(id), { saddr: a, daddr: b, sport: pa, dport: pb, family }))!;
      const rev = transcoder.transcodeRecord(rawRecord(schema(id), { saddr: b, daddr: a, sport: pb, dport: pa, family }))!;
      assert.equal(fwd.key, rev.key, `${id} ${fwd.key}`);
    }
  }
});

test('codec: unknown types, short records and cut-off batches are counted, not thrown', () => {
  const runq = rawRecord(schema('sched.runqlat'), header);
  const short = runq.subarray(0, 63);
  const bench = Buffer.alloc(64);
  bench[0] = 9; // an event type with no schema
  const bogus = Buffer.alloc(96);
  bogus[0] = 200;
  const longer = Buffer.concat([runq, Buffer.alloc(16, 0xaa)]); // a newer, longer struct still decodes
  const batch = buildBatch([runq, short, bench, Buffer.alloc(0), bogus, longer, runq]);
  const keys: string[] = [];
  const res = transcoder.transcodeBatch(batch, (_s, key) => keys.push(key));
  assert.deepEqual(res.records, 3);
  assert.deepEqual(res.unknown, 4);
  assert.deepEqual(keys, ['node-7/4200', 'node-7/4200', 'node-7/4200']);

  // The last record's length runs past the end of the batch.
  const cut = batch.subarray(0, batch.length - 8);
  assert.deepEqual(transcoder.transcodeBatch(cut, () => {}), { records: 2, unknown: 5, bytes: res.bytes * 2 / 3 });
  // Trailing bytes too short for a length prefix.
  assert.equal(transcoder.transcodeBatch(Buffer.concat([buildBatch([runq]), Buffer.alloc(4)]), () => {}).unknown, 1);
  assert.deepEqual(transcoder.transcodeBatch(Buffer.alloc(0), () => assert.fail()), { records: 0, unknown: 0, bytes: 0 });
  assert.equal(transcoder.transcodeRecord(short), null);
  assert.equal(transcoder.decodeRaw(bench), null, 'unknown type');
});

test('codec: values of a batch stay intact after later batches reuse the slab', () => {
  const s = schema('sched.cswitch');
  const many = (base: number): Buffer[] => Array.from({ length: 5000 }, (_, i) => rawRecord(s, { ...header, pid: base + i, off_cpu_ns: BigInt(base + i) * 1_000_000_007n }));
  const first: Buffer[] = [];
  transcoder.transcodeBatch(buildBatch(many(0)), (_s, _k, v) => first.push(v));
  const copies = first.map((v) => Buffer.from(v));
  transcoder.transcodeBatch(buildBatch(many(100_000)), () => {}); // > 1 MiB of output: the slab grows too
  assert.equal(first.length, 5000);
  first.forEach((v, i) => assert.ok(v.equals(copies[i]!), `record ${i} changed`));
  const last = decodeRecord(first[4999]!).value;
  assert.equal(last.pid, 4999n);
  assert.equal(last.off_cpu_ns, 4999n * 1_000_000_007n);
});

test('inet: RFC 5952 text forms', () => {
  const table: [string, number, string][] = [
    ['c0a80001', 2, '192.168.0.1'],
    ['00000000', 2, '0.0.0.0'],
    ['ffffffff', 2, '255.255.255.255'],
    ['00000000000000000000000000000000', 10, '::'],
    ['00000000000000000000000000000001', 10, '::1'],
    ['20010db8000000000000000000000001', 10, '2001:db8::1'],
    ['20010db8000000010001000100010001', 10, '2001:db8:0:1:1:1:1:1'], // 4.2.2: one zero group stays
    ['20010000000000010000000000000001', 10, '2001:0:0:1::1'], // 4.2.1: longest run
    ['20010db8000000000001000000000001', 10, '2001:db8::1:0:0:1'], // 4.2.3: first of equal runs
    ['20010DB8AAAABBBBCCCCDDDDEEEE0001'.toLowerCase(), 10, '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'],
    ['fe800000000000000000000000000000', 10, 'fe80::'],
    ['00000000000000000000ffff7f000001', 10, '::ffff:127.0.0.1'],
    ['000000000000000000000000c0000201', 10, '::c000:201'], // IPv4-compatible (deprecated) stays hex
    ['c0a80001', 0, ''],
  ];
  for (const [hex, family, want] of table) {
    const b = Buffer.alloc(16);
    Buffer.from(hex, 'hex').copy(b);
    assert.equal(formatInet(b, 0, family), want, hex);
  }
});

test('json: BigInt safe as number, unsafe as string, enums as symbols, event names the topic', () => {
  const s = schema('sched.runqlat');
  const { value } = roundTrip(rawRecord(s, { ...header, ts_ns: 2n ** 60n, kind: 'PREEMPTED' }));
  const line = toJsonLine(s, value);
  assert.ok(!line.includes('\n'));
  assert.deepEqual(JSON.parse(line), {
    event: 'ringflow.sched.runqlat.v1', cpu: 3, pid: 4242, tgid: 4200, uid: 1000, ts_ns: String(2n ** 60n), cgroup_id: 77,
    comm: 'postgres', latency_ns: 0, prev_pid: 0, kind: 'PREEMPTED', host: 'node-7', boot_time_ns: String(BOOT),
  });
  assert.ok(line.startsWith('{"event":"ringflow.sched.runqlat.v1","cpu":3,'));
});
