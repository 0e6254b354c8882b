/**
 * Soak finding 6 (seen + late exceeded the work after a processor restart):
 * after a rebalance that leaves a stage its partition, kafkajs reads that
 * partition again from the committed offset while the stage keeps its state.
 * On a real broker (one per stage: each sizes the topics its own way):
 * - stage 2: every event is in exactly one point, merged into its window's
 *   count or counted late, never both, never twice;
 * - stage 1: each event consumed goes into exactly one committed partial.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, readTopicRaw, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { createAggregateStage, type AggregateStage } from '../../processor/aggregate-stage.ts';
import { createPartitionState } from '../../processor/partition.ts';
import type { FatalError } from '../../common/errors.ts';
import { AGGREGATE_GROUP, DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_GROUP, REPARTITION_TOPIC, STATS_TOPIC } from '../../processor/topics.ts';
import { createRepartitionStage, type RepartitionStage } from '../../processor/repartition.ts';
import { decodePartial } from '../../processor/partial.ts';

const CONNECT = 'ringflow.tcp.connect.v1';
const S = 1_000_000_000n;

function connect(host: string, wallNs: bigint): Buffer {
  return encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
    cpu: 0, pid: 9, tgid: 9, uid: 0, ts_ns: wallNs - 1000n * S, cgroup_id: 1n, comm: 'curl', saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 80,
    family: 2, state: 'ESTABLISHED', latency_ns: 1_000_000n, host, boot_time_ns: 1000n * S,
  });
}

describe('processor stage 2: a rebalance that leaves it a partition', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: AggregateStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('counts every event once, seen or late', async () => {
    const kafka = new Kafka({ clientId: 'it-replay-rebalance', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [REPARTITION_TOPIC], 2);
    await ensureTopics(admin, ['ringflow.metrics.v1', 'ringflow.deadletter.v1'], 1);
    await admin.disconnect();
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createAggregateStage({
      kafka, instanceId: 'it-replay-rebalance', idleTickMs: 200, log: (l) => log.push(l), onFatal: (e) => fatal.push(e),
      newState: (partition, cp) => createPartitionState({ windowMs: 2000, latenessMs: 1000, topK: 100, processorId: 'it' }, partition, cp),
    });
    await stage.start();
    const p = kafka.producer();
    await p.connect();
    // event time runs about as fast as the clock, 2 s behind it (the idle clock, 5 s behind, closes nothing
    // early); every 7th event is 4 s behind the others (late)
    let t = BigInt(Date.now()) * 1_000_000n - 2n * S;
    let sent = 0;
    const round = async () => {
      const messages = [];
      for (let i = 0; i < 20; i++) {
        const partition = i % 2;
        const at = t + BigInt(i) * 10_000_000n - (sent % 7 === 6 ? 4n * S : 0n);
        messages.push({ key: `${CONNECT}|h${partition}`, value: connect(`h${partition}`, at), partition });
        sent++;
      }
      await p.send({ topic: REPARTITION_TOPIC, messages });
      t += 200_000_000n;
      await sleep(150);
    };
    for (let i = 0; i < 15; i++) await round();
    for (let i = 0; i < 100 && stage.counters.transactions === 0; i++) await sleep(100);
    assert.ok(stage.counters.transactions > 0, 'committed before the rebalance');

    // another member joins the group (taking one partition, reading nothing of it) and leaves again
    const other = kafka.consumer({ groupId: AGGREGATE_GROUP, sessionTimeout: 10_000, heartbeatInterval: 500 });
    await other.connect();
    let assigned = false;
    other.on(other.events.GROUP_JOIN, () => void (assigned = true));
    await other.subscribe({ topic: REPARTITION_TOPIC, fromBeginning: true });
    await other.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
    for (let i = 0; i < 40 && !assigned; i++) await round();
    assert.ok(assigned, 'the other member joined');
    for (let i = 0; i < 10; i++) await round();
    await other.disconnect();
    for (let i = 0; i < 15; i++) await round();
    await p.disconnect();

    // everything closes by the idle clock once the partitions are quiet
    const deadline = Date.now() + 90_000;
    let seen = 0;
    let late = 0;
    let points: Record<string, unknown>[] = [];
    while (Date.now() < deadline) {
      await sleep(2000);
      points = (await readTopic(k.brokers, 'ringflow.metrics.v1').catch(() => [])).map((r) => r.value).filter((v) => v.name === 'ringflow.tcp.connect.duration');
      seen = points.reduce((a, v) => a + Number((v.histogram as { count: bigint }).count), 0);
      late = points.reduce((a, v) => a + Number(v.late_events), 0);
      if (seen + late >= sent) break;
    }
    await sleep(3000);
    points = (await readTopic(k.brokers, 'ringflow.metrics.v1')).map((r) => r.value).filter((v) => v.name === 'ringflow.tcp.connect.duration');
    seen = points.reduce((a, v) => a + Number((v.histogram as { count: bigint }).count), 0);
    late = points.reduce((a, v) => a + Number(v.late_events), 0);
    const keys = points.map((v) => JSON.stringify([v.attributes, String(v.window_start_ns)]));
    assert.deepEqual(fatal, []);
    assert.equal(new Set(keys).size, keys.length, 'no point twice');
    assert.ok(late > 0, 'some events late');
    assert.equal(seen + late, sent, `${seen} seen + ${late} late for ${sent} sent; replayed ${stage.counters.skippedReplay}; the stage said:\n${log.join('\n')}`);
    assert.ok(stage.counters.skippedReplay > 0, 'the partition kept was read again from the commit');
  });
});

describe('processor stage 1: rebalances that leave it partitions', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: RepartitionStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('every event is in one committed partial', async () => {
    const kafka = new Kafka({ clientId: 'it-replay-rebalance-1', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [CONNECT], 2);
    await ensureTopics(admin, [...EVENT_TOPICS.filter((t) => t !== CONNECT), STATS_TOPIC, REPARTITION_TOPIC, DEADLETTER_TOPIC], 1);
    await admin.disconnect();
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createRepartitionStage({ kafka, instanceId: 'it-replay-rebalance-1', windowMs: 2000, log: (l) => log.push(l), onFatal: (e) => fatal.push(e) });
    await stage.start();
    const p = kafka.producer();
    await p.connect();
    let sent = 0;
    // a stream with no pause: records are always consumed and not yet committed when a rebalance comes
    const round = async () => {
      const now = BigInt(Date.now()) * 1_000_000n;
      await p.send({ topic: CONNECT, messages: Array.from({ length: 10 }, (_, i) => ({ key: `h${i % 2}/1`, value: connect(`h${i % 2}`, now + BigInt(i)), partition: i % 2 })) });
      sent += 10;
      await sleep(20);
    };
    for (let i = 0; i < 50; i++) await round();
    for (let n = 0; n < 3; n++) {
      // another member joins (taking a partition, reading nothing of it) and leaves
      const other = kafka.consumer({ groupId: REPARTITION_GROUP, sessionTimeout: 10_000, heartbeatInterval: 500 });
      await other.connect();
      let assigned = false;
      other.on(other.events.GROUP_JOIN, () => void (assigned = true));
      await other.subscribe({ topic: CONNECT, fromBeginning: true });
      await other.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
      for (let i = 0; i < 200 && !assigned; i++) await round();
      assert.ok(assigned, 'the other member joined');
      for (let i = 0; i < 20; i++) await round();
      await other.disconnect();
      for (let i = 0; i < 50; i++) await round();
    }
    await p.disconnect();
    let events = 0;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      await sleep(2000);
      events = 0;
      for (const r of await readTopicRaw(k.brokers, REPARTITION_TOPIC)) events += decodePartial(r.value!)?.events ?? 0;
      if (events >= sent) break;
    }
    await sleep(2000);
    events = 0;
    for (const r of await readTopicRaw(k.brokers, REPARTITION_TOPIC)) events += decodePartial(r.value!)?.events ?? 0;
    assert.deepEqual(fatal, []);
    assert.equal(events, sent, `${events} events in partials for ${sent} sent; the stage said:\n${log.join('\n')}`);
  });
});
