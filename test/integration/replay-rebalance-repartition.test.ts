/**
 * Stage 1 on a real broker through rebalances that leave it partitions: each
 * event consumed goes into exactly one committed partial (soak finding 6:
 * seen + late exceeded the work after a processor restart).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopicRaw, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { createRepartitionStage, type RepartitionStage } from '../../processor/repartition.ts';
import { decodePartial } from '../../processor/partial.ts';
import type { FatalError } from '../../common/errors.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_GROUP, REPARTITION_TOPIC, STATS_TOPIC } from '../../processor/topics.ts';

const CONNECT = 'ringflow.tcp.connect.v1';
const S = 1_000_000_000n;

function connect(host: string, wallNs: bigint): Buffer {
  return encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
    cpu: 0, pid: 9, tgid: 9, uid: 0, ts_ns: wallNs - 1000n * S, cgroup_id: 1n, comm: 'curl', saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 80,
    family: 2, state: 'ESTABLISHED', latency_ns: 1_000_000n, host, boot_time_ns: 1000n * S,
  });
}

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
