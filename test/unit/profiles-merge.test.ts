/**
 * processor/profiles.ts: ringflow.profile.stacks.v1 records -> per window
 * and series profiles. Table cases for the series, the stack identity, the
 * top-N fold, and that the result is independent of the records' order
 * (what a replay after a crash relies on); the output encodes as
 * schemas/profiles.avsc.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProfileWindow, recordTimeNs, serviceOf, OTHER_FRAME, type ProfileOut, type StackRecordIn } from '../../processor/profiles.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../../schemas/index.ts';

const fn = (name: string, offset = 0x1000) => ({ module: '/usr/bin/spin', offset: BigInt(offset), function: name, file: null, line: null, kind: 'USER' as const });

function rec(over: Partial<StackRecordIn> = {}): StackRecordIn {
  return {
    kind: 'ONCPU', window_start_ns: 0n, window_end_ns: 10_000_000_000n, tgid: 100n, comm: 'spin', process_name: 'spin', value: 1n,
    sample_hz: 19, state: 'RUNNING', user_stack: 'OK', kernel_stack: 'NONE', frames: [fn('spin_a'), fn('main', 0x2000)],
    host: 'h1', boot_time_ns: 1_000_000_000_000_000_000n, ...over,
  };
}

/** The profiles as function-name stacks with values, for readable expectations. */
function named(ps: ProfileOut[]): { series: string; processes: number; records: bigint; total: bigint; other: number; hz: number; stacks: [string, bigint][] }[] {
  return ps.map((p) => ({
    series: `${p.host}|${p.service}|${p.kind}|${p.state}`,
    processes: p.processes, records: p.records, total: p.total, other: p.other_stacks, hz: p.sample_hz,
    stacks: p.stacks.map((s) => [s.frames.map((i) => p.frames[i]!.function).join(';'), s.value]),
  }));
}

function merge(recs: StackRecordIn[], top?: number): ProfileOut[] {
  const w = new ProfileWindow();
  for (const r of recs) w.add(r);
  return w.finish(0n, 10n, top);
}

test('serviceOf: process_name, else unknown_service:<comm>', () => {
  const cases: [string, string, string][] = [['api', 'node', 'api'], ['', 'spin', 'unknown_service:spin'], ['', '', 'unknown_service']];
  for (const [process_name, comm, want] of cases) assert.equal(serviceOf({ process_name, comm }), want, `${process_name}/${comm}`);
});

test('recordTimeNs: the interval midpoint on the wall clock', () => {
  assert.equal(recordTimeNs({ boot_time_ns: 1000n, window_start_ns: 10n, window_end_ns: 30n }), 1020n);
});

test('merge: table of cases', () => {
  const cases: { name: string; recs: StackRecordIn[]; top?: number; want: ReturnType<typeof named> }[] = [
    {
      name: 'two processes of one service, same stack at different addresses: one stack, summed',
      recs: [rec({ tgid: 1n, value: 3n }), rec({ tgid: 2n, value: 4n })],
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 2, records: 2n, total: 7n, other: 0, hz: 19, stacks: [['spin_a;main', 7n]] }],
    },
    {
      name: 'stacks ranked by value, 3:1',
      recs: [rec({ value: 1n, frames: [fn('spin_b', 0x1100), fn('main', 0x2000)] }), rec({ value: 3n })],
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 1, records: 2n, total: 4n, other: 0, hz: 19, stacks: [['spin_a;main', 3n], ['spin_b;main', 1n]] }],
    },
    {
      name: 'same name, other file offset: two stacks (identity is the location, not the name)',
      recs: [rec({ frames: [fn('f', 1)] }), rec({ frames: [fn('f', 2)] })],
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 1, records: 2n, total: 2n, other: 0, hz: 19, stacks: [['f', 1n], ['f', 1n]] }],
    },
    {
      name: 'series split by host, service, kind and state',
      recs: [
        rec({ host: 'h2' }), rec({ process_name: 'api' }),
        rec({ kind: 'OFFCPU', state: 'SLEEPING', sample_hz: 0, value: 5_000_000n }), rec({ kind: 'OFFCPU', state: 'DISK', sample_hz: 0, value: 7n }),
      ],
      want: [
        { series: 'h1|api|ONCPU|RUNNING', processes: 1, records: 1n, total: 1n, other: 0, hz: 19, stacks: [['spin_a;main', 1n]] },
        { series: 'h1|spin|OFFCPU|DISK', processes: 1, records: 1n, total: 7n, other: 0, hz: 0, stacks: [['spin_a;main', 7n]] },
        { series: 'h1|spin|OFFCPU|SLEEPING', processes: 1, records: 1n, total: 5_000_000n, other: 0, hz: 0, stacks: [['spin_a;main', 5_000_000n]] },
        { series: 'h2|spin|ONCPU|RUNNING', processes: 1, records: 1n, total: 1n, other: 0, hz: 19, stacks: [['spin_a;main', 1n]] },
      ],
    },
    {
      name: 'top 2 of 4: the rest folded into [other], counted',
      recs: [rec({ value: 9n, frames: [fn('a')] }), rec({ value: 5n, frames: [fn('b')] }), rec({ value: 2n, frames: [fn('c')] }), rec({ value: 1n, frames: [fn('d')] })],
      top: 2,
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 1, records: 4n, total: 17n, other: 2, hz: 19, stacks: [['a', 9n], ['b', 5n], [OTHER_FRAME, 3n]] }],
    },
    {
      name: 'ties ranked by stack key: deterministic top-N',
      recs: [rec({ value: 1n, frames: [fn('z')] }), rec({ value: 1n, frames: [fn('y')] })],
      top: 1,
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 1, records: 2n, total: 2n, other: 1, hz: 19, stacks: [['y', 1n], [OTHER_FRAME, 1n]] }],
    },
    {
      name: 'unreadable stack parts become marker frames at the root end',
      recs: [rec({ user_stack: 'LOST', frames: [] }), rec({ kernel_stack: 'EXPIRED', user_stack: 'MISSING', frames: [] })],
      want: [{ series: 'h1|spin|ONCPU|RUNNING', processes: 1, records: 2n, total: 2n, other: 0, hz: 19, stacks: [['[expired kernel stack];[missing user stack]', 1n], ['[lost user stack]', 1n]] }],
    },
    {
      name: 'off-CPU ns beyond 2^53 summed exactly',
      recs: [rec({ kind: 'OFFCPU', state: 'SLEEPING', value: 2n ** 53n }), rec({ kind: 'OFFCPU', state: 'SLEEPING', value: 1n })],
      want: [{ series: 'h1|spin|OFFCPU|SLEEPING', processes: 1, records: 2n, total: 2n ** 53n + 1n, other: 0, hz: 0, stacks: [['spin_a;main', 2n ** 53n + 1n]] }],
    },
  ];
  for (const c of cases) assert.deepEqual(named(merge(c.recs, c.top)), c.want, c.name);
});

test('merge: the same records in any order give the same profiles', () => {
  const recs: StackRecordIn[] = [];
  for (let i = 0; i < 60; i++) recs.push(rec({ tgid: BigInt(i % 3), value: BigInt(1 + (i * 7) % 5), frames: [fn(`f${i % 11}`), fn(`g${i % 4}`)], state: 'RUNNING' }));
  const want = merge(recs, 5);
  for (let k = 1; k < 6; k++) {
    const shuffled = recs.map((r, i) => [(i * 31 * k) % 61, r] as const).sort((a, b) => a[0] - b[0]).map(([, r]) => r);
    assert.deepEqual(merge(shuffled, 5), want);
  }
});

test('a profile encodes as ringflow.profiles.v1 and decodes to itself', () => {
  const schema = schemaRegistry().byTopic('ringflow.profiles.v1');
  assert.ok(schema, 'schemas/profiles.avsc is registered');
  const [p] = merge([rec({ value: 3n }), rec({ value: 1n, frames: [fn('spin_b', 0x1100), fn('main', 0x2000)] })]);
  const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)));
  assert.deepEqual(plain(decodeCurrent(encodeRecord(schema, p)).value), plain(p));
});
