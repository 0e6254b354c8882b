/**
 * The alerts stage and CONCURRENT_TRANSACTIONS (kafka/transaction.ts): one
 * transaction per partition batch, and a batch of points that raise no alert
 * commits its offsets (and the evaluator's state) alone, right after the
 * batch before. Here: a real broker, the alerts stage in this process, and
 * rounds of quiet points to 8 partitions at once. The test wants no
 * "transaction failed" line, every point read once (a failed transaction
 * rewinds to the last commit and reads them again), and the offsets committed.
 *
 * What it guards: on this load about 100 of some 130 sendOffsets are refused
 * with CONCURRENT_TRANSACTIONS and asked again (retryTxStep, since d13aa4d).
 * Before that commit the stage redid the whole transaction (its attempt
 * loop, after an abort and a 100 ms wait): no failure either, but about a
 * third as many transactions for the same points. With neither, the stage
 * logged "transaction failed", its consumer crashed and restarted, and it
 * read 951 points for these 240.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { ExpHistogram } from '../../processor/index.ts';
import { parseRules } from '../../processor/alerts.ts';
import { ALERTS_GROUP, ALERTS_TOPIC, createAlertsStage, type AlertsStage } from '../../processor/alerts-stage.ts';
import { DEADLETTER_TOPIC, METRICS_TOPIC } from '../../processor/topics.ts';

const NAME = 'ringflow.sched.runqueue.latency';
const WINDOW_NS = 2_000_000_000n;
const PARTITIONS = 8;
const ROUNDS = 30;
/** Points per partition whose windows the evaluator has not judged yet (grace 1): their offsets stay uncommitted. */
const HELD = 3;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const RULES = parseRules(`rules:
  - name: runqueue-latency-high
    metric: ${NAME}
    stat: p99
    op: ">"
    threshold: 10ms
    for: 3
    by: [host.name]
`);

/** A point far below the rule's threshold: evaluated, never an alert. */
function quietPoint(host: string, start: bigint): Buffer {
  const h = new ExpHistogram();
  for (let i = 0; i < 10; i++) h.record(0.0001);
  return encodeRecord(schemaRegistry().byTopic(METRICS_TOPIC)!, {
    name: NAME, unit: 's', kind: 'HISTOGRAM', attributes: [{ key: 'host.name', value: host }],
    window_start_ns: start, window_end_ns: start + WINDOW_NS, histogram: h.toJSON(), sum: null, late_events: 0n, dropped_inputs: 0n, processor: 'it',
  });
}

let stage: AlertsStage | undefined;
let stopBroker: (() => Promise<void>) | undefined;
after(async () => {
  await stage?.stop();
  await stopBroker?.();
});

test('alerts stage: back-to-back offsets-only transactions commit without a failed transaction or re-reads', { timeout: 120_000 }, async (t) => {
  const b = await ownBroker();
  stopBroker = b.stop;
  const kafka = createKafkaClient([b.brokers], `it-alerts-txretry-${RUN}`);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [METRICS_TOPIC, ALERTS_TOPIC, DEADLETTER_TOPIC], PARTITIONS);
    const lines: string[] = [];
    stage = createAlertsStage({ kafka, instanceId: `it-txretry-${RUN}`, rules: RULES, partitions: PARTITIONS, log: (l) => lines.push(l), idleMs: 60_000, tickMs: 60_000 });
    await stage.start();
    await sleep(3000); // in its group, fetching
    const producer = kafka.producer();
    await producer.connect();
    let at = (BigInt(Date.now()) * 1_000_000n / WINDOW_NS) * WINDOW_NS - 600n * 1_000_000_000n;
    let sent = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const messages = Array.from({ length: PARTITIONS }, (_, p) => ({ partition: p, key: `${NAME}|host.name=h${p}`, value: quietPoint(`h${p}`, at) }));
      await producer.send({ topic: METRICS_TOPIC, messages });
      sent += messages.length;
      at += WINDOW_NS;
      await sleep(120);
    }
    await producer.disconnect();
    const ends = await admin.fetchTopicOffsets(METRICS_TOPIC);
    const deadline = Date.now() + 60_000;
    let committed: { partition: number; offset: string }[] = [];
    for (;;) {
      const [c] = await admin.fetchOffsets({ groupId: ALERTS_GROUP, topics: [METRICS_TOPIC] });
      committed = c?.partitions ?? [];
      // the points of windows not yet evaluated (the grace window, the open one) hold the offset back
      const done = ends.every((e) => Number(committed.find((x) => x.partition === e.partition)?.offset ?? -1) >= Number(e.offset) - HELD);
      if ((done && stage.counters.points >= sent) || Date.now() > deadline) break;
      await sleep(500);
    }
    t.diagnostic(`transactions ${stage.counters.transactions}, steps retried ${stage.counters.txRetries}, points ${stage.counters.points}, alerts ${stage.counters.alerts}`);
    assert.deepEqual(lines.filter((l) => /transaction failed/.test(l)), [], `the stage's log:\n${lines.join('\n')}`);
    for (const e of ends) {
      assert.equal(Number(e.offset), ROUNDS, `partition ${e.partition} holds our ${ROUNDS} points`);
      const at = Number(committed.find((x) => x.partition === e.partition)?.offset ?? -1);
      assert.ok(at >= ROUNDS - HELD, `partition ${e.partition} committed to ${at}, its end but the points the evaluator still holds`);
    }
    assert.equal(stage.counters.points, sent, 'every point read once');
    assert.equal(stage.counters.alerts, 0);
  } finally {
    await admin.disconnect();
  }
});
