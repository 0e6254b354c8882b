/**
 * Stage 1 (repartition) meets CONCURRENT_TRANSACTIONS on its offsets-only
 * transactions, as the spans stage did (spans-tx-retry.test.ts,
 * kafka/transaction.ts): one transaction per 100 ms commit interval, and one
 * whose records wrote nothing (a stats record that reports on no event topic:
 * routeRecord fans it out to nothing) sends its offsets alone, right after
 * the commit before. The coordinator refuses AddOffsetsToTxn while it still
 * writes that commit's markers, and kafkajs does not retry it there. Before
 * d13aa4d the stage aborted, counted a failed commit and re-read the records.
 *
 * Here: a real broker, stage 1 in this process, and rounds of such stats
 * records to 8 partitions at once, a commit interval and a bit apart, so that
 * every transaction carries offsets only and follows the previous one
 * closely. The test wants no failed commit, every record committed once, and
 * the offsets committed to the end.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { createRepartitionStage, type RepartitionStage } from '../../processor/repartition.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_GROUP, REPARTITION_TOPIC, STATS_TOPIC } from '../../processor/topics.ts';

const PARTITIONS = 8;
const ROUNDS = 30;
const RUN = `${process.pid}${Date.now().toString(36)}`;

/** A collector stats record listing no event topic: stage 1 writes nothing for it, only commits its offset. */
function emptyStats(id: number): Buffer {
  return encodeRecord(schemaRegistry().byTopic(STATS_TOPIC)!, {
    host: `txretry-${RUN}-${id}`, boot_time_ns: 0n, time_ns: BigInt(Date.now()) * 1_000_000n, interval_ns: 1_000_000_000n,
    events: [], send_errors: 0n, pending: 0n, ring_bytes: 0n, drop_reasons: [], kernel_losses: [],
  });
}

let stage: RepartitionStage | undefined;
let stopBroker: (() => Promise<void>) | undefined;
after(async () => {
  // in reverse order of set-up: the stage needs the broker to leave its group
  await stage?.stop();
  await stopBroker?.();
});

test('stage 1: back-to-back offsets-only transactions commit without CONCURRENT_TRANSACTIONS failures or re-reads', { timeout: 120_000 }, async (t) => {
  // its own broker even in the suite: the repartition group must be ours alone
  const b = await ownBroker();
  stopBroker = b.stop;
  const kafka = createKafkaClient([b.brokers], `it-repartition-txretry-${RUN}`);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [...EVENT_TOPICS, STATS_TOPIC, REPARTITION_TOPIC, DEADLETTER_TOPIC], PARTITIONS);
    const lines: string[] = [];
    stage = createRepartitionStage({ kafka, instanceId: `it-txretry-${RUN}`, windowMs: 2000, failurePersistMs: 600_000, log: (l) => lines.push(l) });
    await stage.start();
    await sleep(3000); // in its group, fetching
    const producer = kafka.producer();
    await producer.connect();
    let sent = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const messages = Array.from({ length: PARTITIONS }, (_, p) => ({ partition: p, key: `k${p}`, value: emptyStats(r * PARTITIONS + p) }));
      await producer.send({ topic: STATS_TOPIC, messages });
      sent += messages.length;
      await sleep(120); // past the 100 ms commit interval: one transaction per round, right after the one before
    }
    await producer.disconnect();
    const ends = await admin.fetchTopicOffsets(STATS_TOPIC);
    const deadline = Date.now() + 60_000;
    let committed: { partition: number; offset: string }[] = [];
    for (;;) {
      const [c] = await admin.fetchOffsets({ groupId: REPARTITION_GROUP, topics: [STATS_TOPIC] });
      committed = c?.partitions ?? [];
      const done = ends.every((e) => committed.find((x) => x.partition === e.partition)?.offset === e.offset);
      if (done || Date.now() > deadline) break;
      await sleep(500);
    }
    t.diagnostic(`transactions ${stage.counters.transactions}, steps retried ${stage.counters.txRetries}, failed commits ${stage.counters.failedCommits}`);
    assert.equal(stage.counters.failedCommits, 0, `failed commits; the stage's log:\n${lines.join('\n')}`);
    assert.deepEqual(lines.filter((l) => /commit|dead letter/.test(l)), [], `the stage's log:\n${lines.join('\n')}`);
    for (const e of ends) {
      assert.equal(Number(e.offset), ROUNDS, `partition ${e.partition} holds our ${ROUNDS} records`);
      assert.equal(committed.find((x) => x.partition === e.partition)?.offset, e.offset, `partition ${e.partition} committed to its end`);
    }
    assert.equal(stage.counters.records, sent, 'every record committed once');
    assert.equal(stage.counters.deadLetters, 0);
    assert.equal(stage.counters.partials, 0, 'nothing written: every transaction carried offsets only');
    assert.ok(stage.counters.transactions >= ROUNDS / 2, `transactions ${stage.counters.transactions}: several, back to back`);
  } finally {
    await admin.disconnect();
  }
});
