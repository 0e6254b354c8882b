/**
 * Exactly-once of stage 2 for events counted late too: after a crash (state
 * lost, restored from the committed checkpoint) or a rebalance that leaves the
 * partition with us (state kept, kafkajs reading again from the committed
 * offset), every event is in exactly one point: merged into its window's
 * count, or counted late in another window (soak finding 6: seen + late
 * exceeded the work after a processor restart).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPartitionState, parseCheckpoint } from '../../processor/partition.ts';
import { PartialAggregator } from '../../processor/aggregate.ts';
import { encodePartial } from '../../processor/partial.ts';
import { eventOf } from '../../processor/repartition.ts';
import { createFastDecoder } from '../../processor/fast-decode.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { repartitionKey } from '../../processor/topics.ts';
import { mulberry32 } from '../support/prng.ts';
import { replayWithCrashes } from '../support/replay.ts';

const reg = schemaRegistry();
const S = 1_000_000_000n;
const T0 = 1_764_000_000n * S;
const RUNQ = 'ringflow.sched.runqlat.v1';
const N = 1500;
const STEP_NS = 20_000_000n;

/**
 * N runqlat events of two hosts, 20 ms apart with a jitter of `jitterNs`
 * (beyond the lateness: some are late), as stage 2 reads them: raw, or as
 * stage 1's partials of transactions of 1..30 events.
 */
function input(jitterNs: number, partials: boolean): [string, Buffer][] {
  const r = mulberry32(7);
  const fast = createFastDecoder();
  const pa = new PartialAggregator({ sizeMs: 1000 });
  const out: [string, Buffer][] = [];
  let left = 0;
  for (let i = 0; i < N; i++) {
    const host = `h${Math.floor(r() * 2)}`;
    const t = T0 + BigInt(i) * STEP_NS + BigInt(Math.floor(r() * jitterNs));
    const v = encodeRecord(reg.byTopic(RUNQ)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: t, cgroup_id: 1n, comm: 'c', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host, boot_time_ns: 0n });
    if (!partials) {
      out.push([repartitionKey(RUNQ, host), v]);
      continue;
    }
    const e = eventOf(fast, RUNQ, v);
    pa.add(RUNQ, e.host, e.ev, e.ns);
    if (--left <= 0) {
      for (const p of pa.take()) out.push([repartitionKey(p.topic, p.host), encodePartial(p)]);
      left = 1 + Math.floor(r() * 30);
    }
  }
  for (const p of pa.take()) out.push([repartitionKey(p.topic, p.host), encodePartial(p)]);
  return out;
}

const cfg = { windowMs: 1000, latenessMs: 500, idleQuietMs: 0, topK: 1000, processorId: 'u' };
type Point = Record<string, unknown>;
const key = (p: Point) => JSON.stringify([p.name, String(p.window_start_ns), p.attributes]);

function run(inp: [string, Buffer][], crashAt: number[], more: Parameters<typeof replayWithCrashes>[5] = {}): { points: Point[]; seen: number; late: number } {
  const points = replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), inp, crashAt, 4, T0 + 100_000n * S, more)
    .map((v) => decodeRecord(v).value as Point)
    .filter((p) => p.name === 'ringflow.sched.runqueue.latency')
    .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const seen = points.reduce((a, p) => a + Number((p.histogram as { count: bigint }).count), 0);
  const late = points.reduce((a, p) => a + Number(p.late_events), 0);
  return { points, seen, late };
}

for (const partials of [false, true]) {
  const what = partials ? 'partials' : 'events';
  const inp = input(3_000_000_000, partials);

  test(`replay-late (${what}): a crash anywhere gives the same points, late counts included`, () => {
    const once = run(inp, []);
    assert.ok(once.late > 100, `some late: ${once.late}`);
    assert.equal(once.seen + once.late, N);
    for (let c = 1; c < inp.length; c += 7) {
      const r = run(inp, [c]);
      assert.deepEqual([r.seen, r.late], [once.seen, once.late], `crash after ${c}`);
      assert.deepEqual(r.points, once.points, `crash after ${c}`);
    }
  });

  test(`replay-late (${what}): a rebalance that keeps the partition (read again from the commit, state kept) counts nothing twice`, () => {
    const once = run(inp, []);
    for (let c = 1; c < inp.length; c += 7) {
      const r = run(inp, [], { rewindAt: [c] });
      assert.deepEqual([r.seen, r.late], [once.seen, once.late], `rebalance after ${c}`);
      assert.deepEqual(r.points, once.points, `rebalance after ${c}`);
    }
    // and a crash after a rebalance
    const n = inp.length;
    const r = run(inp, [Math.floor(n / 2) + 3], { rewindAt: [Math.floor(n / 3), Math.floor(n / 2)] });
    assert.deepEqual(r.points, once.points);
  });

  test(`replay-late (${what}): a crash after the idle clock closed windows (not replayed) gives the same points`, () => {
    // disorder within the lateness: only the idle clock, running just ahead of the events
    // (a pause upstream), makes events late; it runs once every 53 records, the first time only
    const inp = input(1_000_000_000, partials);
    const idle = new Map<number, bigint>();
    for (let i = 37; i < inp.length; i += 53) idle.set(i, T0 + BigInt(Math.floor((i * N) / inp.length)) * STEP_NS + 7n * S);
    const once = run(inp, [], { idle });
    assert.ok(once.late > 50, `the idle clock made some late: ${once.late}`);
    assert.equal(once.seen + once.late, N);
    for (let c = 1; c < inp.length; c += 3) {
      // and a second crash during the replay of the first, before or after the clock's advance is made again
      const r = run(inp, c % 2 === 0 ? [c] : [c, c + 2], { idle });
      assert.deepEqual([r.seen, r.late], [once.seen, once.late], `crash after ${c}`);
      assert.deepEqual(r.points, once.points, `crash after ${c}`);
    }
  });
}

test('replay-late: the checkpoint carries the idle clock\'s advances; a bad one is refused', () => {
  const windows = { sizeNs: '1000000000', latenessNs: '0', maxEventNs: null, horizonNs: null, open: [] };
  const lane = { windows, emittedThroughNs: '-1', from: '5' };
  const cases: [unknown, string | null][] = [
    [[['7', '1764000000000000000']], null],
    [[], null],
    [[['7']], 'bad idle clock'],
    [[[7, '1']], 'bad idle clock'],
    [[['-7', '1']], 'bad idle clock'],
    [[['7', 'x']], 'bad idle clock'],
    ['7:1', 'bad idle clock'],
  ];
  for (const [idle, err] of cases) {
    const text = JSON.stringify({ v: 2, lanes: { events: { ...lane, idle } } });
    if (err === null) assert.deepEqual(parseCheckpoint(text).events!.idle, idle);
    else assert.throws(() => parseCheckpoint(text), new RegExp(err), JSON.stringify(idle));
  }
  assert.equal(parseCheckpoint(JSON.stringify({ v: 2, lanes: { events: lane } })).events!.idle, undefined, 'older checkpoints have none');
});

test('replay-late: a window held open through many quiet spells keeps the checkpoint small (offset metadata is capped)', () => {
  const s = createPartitionState(cfg, 0, undefined);
  const ev = (t: bigint) => encodeRecord(reg.byTopic(RUNQ)!, { cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: t, cgroup_id: 1n, comm: 'c', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h', boot_time_ns: 0n });
  // one window open all along; between its records the idle clock moves the watermark a little
  for (let i = 0; i < 50; i++) {
    assert.equal(s.add(repartitionKey(RUNQ, 'h'), ev(T0 + 1000n * BigInt(i)), BigInt(i)), 'ok');
    s.advanceIdle(T0 + 5n * S + 1_000_000n * BigInt(i)); // IDLE_GRACE_NS behind: T0 + i ms
  }
  const cp = JSON.parse(s.checkpoint());
  assert.equal(cp.lanes.events.from, '0', 'the window is still held');
  assert.equal(cp.lanes.events.idle.length, 8);
  assert.deepEqual(cp.lanes.events.idle.at(-1), ['50', String(T0 + 49_000_000n)]);
});
