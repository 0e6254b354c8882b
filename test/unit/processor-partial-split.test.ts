/**
 * processor/partial-split.ts: a partial aggregate over the repartition topic's
 * limit becomes several partials of the same window, each within it, that
 * stage 2 turns into exactly the points of the whole (nothing lost to the
 * dead-letter topic, nothing counted twice).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PartialAggregator } from '../../processor/aggregate.ts';
import { createPartitionState } from '../../processor/partition.ts';
import { splitPartial } from '../../processor/partial-split.ts';
import { eventOf } from '../../processor/repartition.ts';
import { createFastDecoder } from '../../processor/fast-decode.ts';
import { encodePartial } from '../../processor/partial.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { recordBytes } from '../../kafka/client.ts';
import { repartitionKey } from '../../processor/topics.ts';

const CONNECT = 'ringflow.tcp.connect.v1';
const S = 1_000_000_000n;
const T0 = 1_764_000_000n * S;

/** One window of one host's connects to `n` endpoints (a series each), 3 connects per endpoint. */
function partialOf(n: number) {
  const fast = createFastDecoder();
  const agg = new PartialAggregator({ sizeMs: 10_000 });
  for (let i = 0; i < 3 * n; i++) {
    const v = encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
      cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: T0 + BigInt(i) * 1_000_000n, cgroup_id: 1n, comm: 'client', saddr: '10.0.0.1', daddr: `10.1.${(i % n) >> 8}.${(i % n) & 255}`,
      sport: 40000, dport: 443, family: 2, state: 'ESTABLISHED', latency_ns: BigInt(1000 + 37 * i), host: 'h', boot_time_ns: 0n,
    });
    const e = eventOf(fast, CONNECT, v);
    assert.ok(agg.add(CONNECT, e.host, e.ev, e.ns));
  }
  const [p, ...rest] = agg.take();
  assert.equal(rest.length, 0);
  return p!;
}

/** Stage 2's points for these partial records, all windows closed. */
function points(values: Buffer[]): unknown[] {
  const s = createPartitionState({ windowMs: 10_000, latenessMs: 0, topK: 100_000, processorId: 'u' }, 0, undefined);
  values.forEach((v, i) => assert.equal(s.add(repartitionKey(CONNECT, 'h'), v, BigInt(i)), 'ok'));
  s.advance();
  assert.ok(s.advanceIdle(T0 + 1000n * S));
  const out = s.takeClosed().map((p) => decodeRecord(p.value).value as Record<string, unknown>);
  const key = (p: Record<string, unknown>) => JSON.stringify(p.attributes);
  return out.sort((a, b) => (key(a) < key(b) ? -1 : 1));
}

test('splitPartial: a partial over the limit becomes parts within it; stage 2 makes the same points of them', () => {
  const p = partialOf(500);
  const key = repartitionKey(CONNECT, 'h');
  const whole = encodePartial(p);
  const limit = 8_000;
  assert.ok(recordBytes({ key, value: whole }) > 4 * limit, `the partial is ${whole.length} bytes`);
  const parts = splitPartial(p, key, limit);
  assert.ok(parts.length > 4);
  for (const x of parts) assert.ok(recordBytes({ key, value: x.value }) <= limit);
  assert.deepEqual(parts.flatMap((x) => x.partial.series), p.series, 'every series once, in order');
  assert.equal(parts.reduce((a, x) => a + x.partial.events, 0), p.events, 'the events counted once');
  assert.deepEqual(points(parts.map((x) => x.value)), points([whole]));
});

test('splitPartial: a partial within the limit is one record; one series over it is returned as it is', () => {
  const p = partialOf(3);
  const key = repartitionKey(CONNECT, 'h');
  assert.deepEqual(splitPartial(p, key, 1_000_000).map((x) => x.value), [encodePartial(p)]);
  const one = { ...p, series: p.series.slice(0, 1) };
  assert.equal(splitPartial(one, key, 10).length, 1);
});
