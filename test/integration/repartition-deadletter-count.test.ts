/**
 * Stage 1 counts a dead letter when its transaction commits, not when the
 * record is read. A failed transaction is re-read from the last commit: its
 * dead letters used to be counted once per attempt (issue 9, "Stage 1 counts
 * dead letters when read"). On a real broker, the dead-letter topic is removed
 * (auto-creation is off) so that every transaction holding a dead letter fails,
 * then put back: the records are read at least twice, written and counted once.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopicRaw, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { createRepartitionStage, type RepartitionStage } from '../../processor/repartition.ts';
import type { FatalError } from '../../common/errors.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_TOPIC, STATS_TOPIC } from '../../processor/topics.ts';

const CONNECT = 'ringflow.tcp.connect.v1';
const S = 1_000_000_000n;

function connect(host: string, wallNs: bigint): Buffer {
  return encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
    cpu: 0, pid: 9, tgid: 9, uid: 0, ts_ns: wallNs - 1000n * S, cgroup_id: 1n, comm: 'curl', saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 80,
    family: 2, state: 'ESTABLISHED', latency_ns: 1_000_000n, host, boot_time_ns: 1000n * S,
  });
}

describe('processor stage 1: dead letters of a failed transaction', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: RepartitionStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('are counted once, when the transaction that writes them commits', async () => {
    const kafka = new Kafka({ clientId: 'it-repartition-dlq-count', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [...EVENT_TOPICS, STATS_TOPIC, REPARTITION_TOPIC, DEADLETTER_TOPIC], 1);
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createRepartitionStage({ kafka, instanceId: 'it-dlq-count', windowMs: 2000, failurePersistMs: 200_000, log: (l) => log.push(l), onFatal: (e) => fatal.push(e) });
    await stage.start();
    await admin.deleteTopics({ topics: [DEADLETTER_TOPIC] });

    const p = kafka.producer();
    await p.connect();
    const now = BigInt(Date.now()) * 1_000_000n;
    // three records that do not decode and one dated a day ahead (clock_skew), among good ones
    await p.send({ topic: CONNECT, messages: [
      { value: connect('good', now) },
      { value: Buffer.from('not avro 1') },
      { value: Buffer.from('not avro 2') },
      { value: connect('bad-clock', now + 86_400n * S) },
      { value: Buffer.from('not avro 3') },
      { value: connect('good', now + 1n) },
    ] });
    await p.disconnect();

    // the transactions fail while the topic is gone; the stage re-reads from its last commit each time
    for (let i = 0; i < 1200 && stage.counters.failedCommits < 2; i++) await sleep(100);
    assert.ok(stage.counters.failedCommits >= 2, `failed ${stage.counters.failedCommits} times; the stage said:\n${log.join('\n')}`);
    assert.equal(stage.counters.deadLetters, 0, 'nothing committed, nothing counted');
    await ensureTopics(admin, [DEADLETTER_TOPIC], 1);
    await admin.disconnect();

    for (let i = 0; i < 1200 && stage.counters.records < 6; i++) await sleep(100);
    assert.equal(stage.counters.records, 6, `committed; the stage said:\n${log.join('\n')}`);
    await sleep(1000); // a re-read that would count again has had its chance
    const dead = await readTopicRaw(k.brokers, DEADLETTER_TOPIC);
    assert.equal(dead.length, 4, 'each dead letter written once (exactly once)');
    assert.equal(stage.counters.deadLetters, 4, `counted once each over ${stage.counters.failedCommits} failed transactions`);
    assert.equal(stage.counters.clockSkew, 1);
    assert.deepEqual(fatal, []);
  });
});
