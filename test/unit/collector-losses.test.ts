/**
 * Issue 9 item 5, the collectors' losses by cause: a stats record's
 * drop_reasons (location user) and kernel_losses (location kernel) become
 * ringflow.collector.losses{host.name, location, reason} SUM points per window
 * in stage 2, beside ringflow.dropped (not inside it: they overlap its
 * kernel/user totals). Stage 1 hands stage 2 one copy of a stats record per
 * event topic it lists; only the copy of the lead topic (the smallest listed)
 * counts, wherever the copies land. Exactly once across restarts, like
 * ringflow.dropped. The exporter sends the points as a monotonic delta Sum of
 * ints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ValueType } from '@opentelemetry/api';
import { AggregationTemporality, DataPointType, type SumMetricData } from '@opentelemetry/sdk-metrics';
import { createPartitionState } from '../../processor/partition.ts';
import { LOSSES_METRIC, collectorLossesOf, lossesLeadTopic, lossesRecord } from '../../processor/aggregate.ts';
import { REJECTED_PREFIX } from '../../processor/partial.ts';
import { encodeRecord, decodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { toResourceMetrics, type MetricPoint } from '../../exporter/otlp.ts';
import { replayWithCrashes } from '../support/replay.ts';
import { routeRecord } from '../../processor/repartition.ts';
import { REPARTITION_TOPIC, repartitionKey } from '../../processor/topics.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const CSW = 'ringflow.sched.cswitch.v1';
const BLOCK = 'ringflow.block.io.v1';
const S = 1_000_000_000n;
const T = 1_800_000_000n * S; // window-aligned (2 s)

const rc = (o: Record<string, number>) => Object.entries(o).map(([reason, count]) => ({ reason, count: BigInt(count) }));

const runq = (ts: bigint) => encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
  cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'a', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
});
/** A stats record listing RUNQ first and CSW second (the lead is CSW: the smaller name), with losses by cause. */
const stats = (t: bigint, user: Record<string, number>, kernel: Record<string, number>, host = 'h1') => encodeRecord(schemaRegistry().byTopic('ringflow.collector.stats.v1')!, {
  host, boot_time_ns: 0n, time_ns: t, interval_ns: S,
  events: [
    { event: RUNQ, read: 10n, kernel_drops: 1n, user_drops: 2n, produced: 10n },
    { event: CSW, read: 10n, kernel_drops: 0n, user_drops: 0n, produced: 10n },
  ],
  send_errors: 0n, pending: 0n, ring_bytes: 0n,
  drop_reasons: rc(user), kernel_losses: rc(kernel),
});

test('lossesLeadTopic: the smallest listed topic stage 1 routes, whatever the order; null when none', () => {
  const cases: [string[], string | null][] = [
    [[RUNQ, CSW], CSW],
    [[CSW, RUNQ], CSW],
    [[RUNQ], RUNQ],
    [[BLOCK, RUNQ, CSW], BLOCK],
    [['bench.getpid', RUNQ], RUNQ], // an event without a topic: stage 1 sends no copy for it
    // l7 and profile stacks are read by the spans and profiles stages, but their drops are counted in stage 2
    [['a.not.routed', 'ringflow.l7.v1'], 'ringflow.l7.v1'],
    [['ringflow.profile.stacks.v1', RUNQ], 'ringflow.profile.stacks.v1'],
    [['a.not.routed'], null],
    [[], null],
  ];
  for (const [events, want] of cases) assert.equal(lossesLeadTopic(events.map((event) => ({ event }))), want, events.join(','));
});

test('collectorLossesOf: user and kernel causes with a count, stage 1 rejections left out, only in the lead copy', () => {
  const rec = (user: { reason: string; count: bigint }[], kernel?: { reason: string; count: bigint }[]) => ({
    events: [{ event: RUNQ }, { event: CSW }], drop_reasons: user, ...(kernel ? { kernel_losses: kernel } : {}),
  });
  const cases: [string, Record<string, unknown>, string, [string, string, number][]][] = [
    ['both locations', rec(rc({ backpressure: 5, undecodable: 1 }), rc({ block_orphaned: 3 })), CSW, [['user', 'backpressure', 5], ['user', 'undecodable', 1], ['kernel', 'block_orphaned', 3]]],
    ['the other copy counts nothing', rec(rc({ backpressure: 5 }), rc({ block_orphaned: 3 })), RUNQ, []],
    ['zero counts left out', rec(rc({ backpressure: 0 }), rc({ block_map_full: 0, block_untracked: 2 })), CSW, [['kernel', 'block_untracked', 2]]],
    ['a record older than kernel_losses', rec(rc({ too_large_dead_lettered: 4 })), CSW, [['user', 'too_large_dead_lettered', 4]]],
    ['stage 1 rejections are ringflow.dropped reasons, not losses', rec(rc({ [`${REJECTED_PREFIX}invalid_value`]: 1, backpressure: 2 })), CSW, [['user', 'backpressure', 2]]],
    ['nothing', rec([], []), CSW, []],
  ];
  for (const [name, r, topic, want] of cases) assert.deepEqual(collectorLossesOf(r, topic), want, name);
});

test('lossesRecord: a SUM of ringflow.metrics.v1, unit {record}, attributes sorted', () => {
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const r = decodeRecord(encodeRecord(schema, lossesRecord({ host: 'h1', reason: 'backpressure', location: 'user', startNs: T, endNs: T + 2n * S, count: 7, processor: 'p' }))).value;
  assert.deepEqual([r.name, r.unit, r.kind, r.sum, r.window_start_ns, r.window_end_ns], [LOSSES_METRIC, '{record}', 'SUM', 7n, T, T + 2n * S]);
  assert.deepEqual((r.attributes as { key: string; value: string }[]).map((a) => ({ ...a })), [{ key: 'host.name', value: 'h1' }, { key: 'location', value: 'user' }, { key: 'reason', value: 'backpressure' }]);
});

/** `window host location reason=count` of the losses points among `values`. */
function lossLines(values: Buffer[]): string[] {
  return values
    .map((v) => decodeRecord(v).value as Record<string, unknown>)
    .filter((r) => r.name === LOSSES_METRIC)
    .map((r) => {
      const a = Object.fromEntries((r.attributes as { key: string; value: string }[]).map((x) => [x.key, x.value]));
      return `${(r.window_start_ns as bigint - T) / S}s ${a['host.name']} ${a.location} ${a.reason}=${r.sum}`;
    })
    .sort();
}

test('a stats record fanned out to two topics counts its losses once: copies on one partition or on two', () => {
  const cfg = { windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' };
  const rec = stats(T + 500_000_000n, { backpressure: 5 }, { block_orphaned: 3 });
  const want = ['0s h1 kernel block_orphaned=3', '0s h1 user backpressure=5'];
  // one partition: both copies, one after the other
  const one = createPartitionState(cfg, 0, undefined);
  one.add(`${RUNQ}|h1`, rec, 0n);
  one.add(`${CSW}|h1`, rec, 1n);
  assert.equal(one.advanceIdle(T + 100n * S), true);
  const got1 = one.takeClosed().map((p) => p.value);
  assert.deepEqual(lossLines(got1), want);
  // the ringflow.dropped points are the RUNQ copy's, as before
  assert.deepEqual(got1.map((v) => decodeRecord(v).value.name).sort(), ['ringflow.collector.losses', 'ringflow.collector.losses', 'ringflow.dropped', 'ringflow.dropped']);
  // two partitions (two instances, maybe): each copy alone
  const points: Buffer[] = [];
  for (const [p, key] of [[1, `${RUNQ}|h1`], [2, `${CSW}|h1`]] as const) {
    const s = createPartitionState(cfg, p, undefined);
    s.add(key, rec, 0n);
    s.advanceIdle(T + 100n * S);
    points.push(...s.takeClosed().map((x) => x.value));
  }
  assert.deepEqual(lossLines(points), want);
});

test('losses are written once per window, host, location and reason, also across restarts mid-stream', () => {
  const input: [string, Buffer][] = [];
  // 10 windows of 2 s: events every 200 ms, a stats record per second (both its copies) with losses
  for (let i = 0; i < 100; i++) {
    const t = T + BigInt(i) * 200_000_000n;
    input.push([`${RUNQ}|h1`, runq(t)]);
    if (i % 5 === 0) {
      // reports the second before it: often lands after the next window's first events (read again from its hold after a crash)
      const r = stats(t - 1_100_000_000n, { backpressure: 2, undecodable: 1 }, { block_orphaned: 1 });
      input.push([`${RUNQ}|h1`, r], [`${CSW}|h1`, r]);
    }
  }
  const cfg = { windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' };
  const run = (crashAt: number[]) => lossLines(replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), input, crashAt, 4, T + 1000n * S));
  const once = run([]);
  const total = (what: string) => once.filter((l) => l.includes(` ${what}=`)).reduce((a, l) => a + Number(l.split('=')[1]), 0);
  assert.deepEqual([total('backpressure'), total('undecodable'), total('block_orphaned')], [40, 20, 20], once.join('\n'));
  assert.equal(new Set(once.map((l) => l.split('=')[0])).size, once.length, 'one point per window, location and reason');
  for (const crashAt of [[5], [17, 18], [40, 41, 90], [60, 120], [139]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
});

test('losses -> OTLP: a monotonic delta Sum of ints, unit {record}, location and reason on the point, host.name on the Resource', () => {
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const T0 = 1_732_590_000_123_456_789n; // beyond 2^53: must stay exact
  const point = (host: string, location: 'user' | 'kernel', reason: string, count: number) =>
    decodeRecord(encodeRecord(schema, lossesRecord({ host, reason, location, startNs: T0, endNs: T0 + 2n * S, count, processor: 'p' }))).value as unknown as MetricPoint;
  const out = toResourceMetrics([point('h1', 'user', 'backpressure', 5), point('h1', 'kernel', 'block_orphaned', 3), point('h2', 'user', 'undecodable', 1)], {
    histogramMode: 'exponential', resource: { 'service.name': 'ringflow' },
  });
  assert.deepEqual(out.invalid, []);
  assert.deepEqual(out.resources.map((r) => [r.host, r.points]), [['h1', 2], ['h2', 1]]);
  const h1 = out.resources[0]!.metrics;
  assert.equal(h1.resource.attributes['host.name'], 'h1');
  const ms = h1.scopeMetrics[0]!.metrics;
  assert.equal(ms.length, 1);
  const m = ms[0] as SumMetricData;
  assert.deepEqual([m.descriptor.name, m.descriptor.unit, m.descriptor.valueType, m.dataPointType, m.isMonotonic, m.aggregationTemporality], [
    LOSSES_METRIC, '{record}', ValueType.INT, DataPointType.SUM, true, AggregationTemporality.DELTA,
  ]);
  assert.deepEqual(m.dataPoints.map((p) => [p.startTime, p.endTime, p.attributes, p.value]), [
    [[1_732_590_000, 123_456_789], [1_732_590_002, 123_456_789], { location: 'user', reason: 'backpressure' }, 5],
    [[1_732_590_000, 123_456_789], [1_732_590_002, 123_456_789], { location: 'kernel', reason: 'block_orphaned' }, 3],
  ]);
});

test('stage 1 routes a stats record of a collector running only l7 or profile to stage 2, so its drops reach ringflow.dropped (they reached no metric before)', () => {
  const only = (event: string) => encodeRecord(schemaRegistry().byTopic('ringflow.collector.stats.v1')!, {
    host: 'h1', boot_time_ns: 0n, time_ns: T, interval_ns: S,
    events: [{ event, read: 10n, kernel_drops: 7n, user_drops: 1n, produced: 2n }],
    send_errors: 0n, pending: 0n, ring_bytes: 0n, drop_reasons: rc({ ring_full: 7 }), kernel_losses: [],
  });
  for (const event of ['ringflow.l7.v1', 'ringflow.profile.stacks.v1']) {
    const value = only(event);
    assert.deepEqual(routeRecord('ringflow.collector.stats.v1', 0, '1', value).map((o) => [o.topic, o.key]), [[REPARTITION_TOPIC, repartitionKey(event, 'h1')]], event);
    // and stage 2 counts its drops under the topic's own name
    const st = createPartitionState({ windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' }, 0, undefined);
    st.add(repartitionKey(event, 'h1'), value, 0n);
    st.advanceIdle(T + 100n * S);
    const points = st.takeClosed().map((p) => decodeRecord(p.value).value as { name: string; attributes: { key: string; value: string }[]; sum: bigint | null });
    const attr = (p: (typeof points)[number], k: string) => p.attributes.find((a) => a.key === k)?.value;
    const dropped = points.filter((p) => p.name === 'ringflow.dropped' && attr(p, 'signal') === event);
    assert.deepEqual(dropped.map((p) => [attr(p, 'reason'), Number(p.sum)]).sort(), [['kernel', 7], ['user', 1]], event);
    assert.deepEqual(lossLines(st.takeClosed().map((p) => p.value)), [], 'taken once');
  }
});
