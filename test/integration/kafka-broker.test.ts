/**
 * Integration test for the local Kafka broker tooling (cli/kafka.ts) and for
 * the kafkajs features ringflow relies on against the pinned broker:
 * topic creation, idempotent zstd and gzip produce with acks=all, consumer groups,
 * transactions (commit, abort, sendOffsets) and read_committed consumers.
 *
 * Needs Java 17+ and Maven (first run resolves the broker jars, ~20 s).
 * Uses a temporary state dir and free ports, so it does not touch a broker
 * started with `ringflow kafka start`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Consumer, EachMessagePayload } from 'kafkajs';
import { CompressionTypes, Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { brokerStatus, kafkaCommand, startBroker, stopBroker } from '../../cli/kafka.ts';
import { freePort } from '../support/integration.ts';
import { retrying, ensureTopics } from '../../kafka/client.ts';

/** Consume from the beginning of `topic` until `expected` values arrived, then linger briefly for extras. */
async function consumeAll(
  consumer: Consumer,
  topic: string,
  expected: number,
  timeoutMs = 30_000,
  lingerMs = 1_000,
): Promise<string[]> {
  const values: string[] = [];
  let reached: () => void = () => {};
  const done = new Promise<void>((r) => (reached = r));
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }: EachMessagePayload) => {
      values.push(message.value?.toString() ?? '');
      if (values.length >= expected) reached();
    },
  });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
  await new Promise((r) => setTimeout(r, lingerMs));
  await consumer.stop();
  return values;
}

describe('local Kafka broker (cli/kafka.ts)', { timeout: 180_000 }, () => {
  let stateDir = '';
  let port = 0;
  let controllerPort = 0;
  let brokers = '';
  const logs: string[] = [];
  const opts = () => ({ stateDir, port, controllerPort, log: (m: string) => logs.push(m) });
  const kafka = () =>
    new Kafka({
      clientId: 'ringflow-kafka-test',
      brokers: [brokers],
      logLevel: logLevel.NOTHING,
      retry: { initialRetryTime: 100, retries: 8 },
    });

  before(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-kafka-test-'));
    port = await freePort();
    do controllerPort = await freePort();
    while (controllerPort === port);
  });

  after(async () => {
    await stopBroker({ stateDir }).catch(() => {});
    if (process.env.RINGFLOW_KEEP_TEST_STATE) console.log(`state kept in ${stateDir}`);
    else fs.rmSync(stateDir, { recursive: true, force: true });
  });

  test('starts and becomes ready', async () => {
    const t0 = Date.now();
    const r = await startBroker(opts());
    assert.equal(r.alreadyRunning, false);
    assert.equal(r.brokers, `127.0.0.1:${port}`);
    assert.ok(r.pid > 0);
    console.log(`# broker ready in ${Date.now() - t0} ms (pid ${r.pid})`);
    brokers = r.brokers;
    const cfg = fs.readFileSync(path.join(stateDir, 'server.properties'), 'utf8');
    assert.match(cfg, /^auto\.create\.topics\.enable=false$/m);
    assert.match(cfg, /^transaction\.state\.log\.min\.isr=1$/m);
    assert.equal(fs.readFileSync(path.join(stateDir, 'kafka.pid'), 'utf8').trim(), String(r.pid));

    const again = await startBroker(opts());
    assert.equal(again.alreadyRunning, true);
    assert.equal(again.pid, r.pid);

    const s = await brokerStatus({ stateDir });
    assert.deepEqual(s, { running: true, pid: r.pid, brokers });
  });

  test('idempotent producer (acks=all), zstd and gzip batches -> consumer group reads exactly 1000', async () => {
    const k = kafka();
    const admin = k.admin();
    await admin.connect();
    assert.equal(await admin.createTopics({ topics: [{ topic: 'rf.test.events', numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true }), true);
    const meta = await admin.fetchTopicMetadata({ topics: ['rf.test.events'] });
    assert.equal(meta.topics[0]?.partitions.length, 3);
    await admin.disconnect();

    const producer = k.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    for (let batch = 0; batch < 10; batch++) {
      await producer.send({
        topic: 'rf.test.events',
        acks: -1,
        // zstd is the collector's default (collector/kafkajs.ts registers it): the broker must take it
        compression: batch % 2 ? CompressionTypes.ZSTD : CompressionTypes.GZIP,
        messages: Array.from({ length: 100 }, (_, i) => ({ key: `k${(batch * 100 + i) % 17}`, value: `event-${batch * 100 + i}` })),
      });
    }
    await producer.disconnect();

    const consumer = k.consumer({ groupId: 'rf-test-group', maxWaitTimeInMs: 200 });
    await consumer.connect();
    const values = await consumeAll(consumer, 'rf.test.events', 1000);
    await consumer.disconnect();
    assert.equal(values.length, 1000);
    assert.equal(new Set(values).size, 1000);

    const admin2 = k.admin();
    await admin2.connect();
    const offsets = await admin2.fetchOffsets({ groupId: 'rf-test-group', topics: ['rf.test.events'] });
    const committed = offsets[0]!.partitions.reduce((sum, p) => sum + Number(p.offset), 0);
    assert.equal(committed, 1000);
    await admin2.disconnect();
  });

  test('transactions: commit 10, abort 10, read_committed sees 10; sendOffsets', async () => {
    const k = kafka();
    const admin = k.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: 'rf.test.tx', numPartitions: 3, replicationFactor: 1 },
        { topic: 'rf.test.tx-in', numPartitions: 1, replicationFactor: 1 },
      ],
      waitForLeaders: true,
    });

    const producer = k.producer({ transactionalId: 'rf-test-tx', idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    const committedTx = await producer.transaction();
    await committedTx.send({
      topic: 'rf.test.tx',
      compression: CompressionTypes.GZIP,
      messages: Array.from({ length: 10 }, (_, i) => ({ value: `committed-${i}` })),
    });
    await committedTx.commit();
    const abortedTx = await producer.transaction();
    await abortedTx.send({ topic: 'rf.test.tx', messages: Array.from({ length: 10 }, (_, i) => ({ value: `aborted-${i}` })) });
    await abortedTx.abort();

    const rc = k.consumer({ groupId: 'rf-test-rc', readUncommitted: false, maxWaitTimeInMs: 200 });
    await rc.connect();
    const seen = await consumeAll(rc, 'rf.test.tx', 10, 20_000, 1_500);
    await rc.disconnect();
    assert.deepEqual(seen.sort(), Array.from({ length: 10 }, (_, i) => `committed-${i}`).sort());

    // Consume-transform-produce: offsets of the input committed inside the transaction.
    const inProducer = k.producer({ idempotent: true, maxInFlightRequests: 1 });
    await inProducer.connect();
    await inProducer.send({ topic: 'rf.test.tx-in', acks: -1, messages: Array.from({ length: 5 }, (_, i) => ({ value: `in-${i}` })) });
    await inProducer.disconnect();

    const tx = await producer.transaction();
    await tx.send({ topic: 'rf.test.tx', messages: [{ value: 'derived' }] });
    await tx.sendOffsets({
      consumerGroupId: 'rf-test-eos',
      topics: [{ topic: 'rf.test.tx-in', partitions: [{ partition: 0, offset: '5' }] }],
    });
    await tx.commit();
    await producer.disconnect();

    // The commit marker reaches __consumer_offsets asynchronously after EndTxn: poll briefly.
    let offset = '-1';
    for (let i = 0; i < 50 && offset !== '5'; i++) {
      const offsets = await admin.fetchOffsets({ groupId: 'rf-test-eos', topics: ['rf.test.tx-in'] });
      offset = offsets[0]?.partitions[0]?.offset ?? '-1';
      if (offset !== '5') await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(offset, '5');
    await admin.disconnect();
  });

  test('ensureTopics racing other creators: a group joining right after is assigned every partition', async () => {
    // as in "ringflow up": one topic exists already, the collector creates the
    // others at the same moment as the processor, which then joins its group
    const k = kafka();
    const admin = k.admin();
    const other = k.admin();
    await admin.connect();
    await other.connect();
    const topics = Array.from({ length: 6 }, (_, i) => `rf.test.race-${i}`);
    await ensureTopics(admin, [topics[0]!], 6);
    await Promise.all([
      other.createTopics({ topics: topics.slice(1).map((topic) => ({ topic, numPartitions: 6, replicationFactor: 1 })) }).catch(() => {}),
      ensureTopics(admin, topics, 6),
    ]);
    const consumer = k.consumer({ groupId: 'rf-test-race', maxWaitTimeInMs: 200 });
    const assigned = new Promise<Record<string, number[]>>((resolve) =>
      consumer.on(consumer.events.GROUP_JOIN, (e) => resolve(e.payload.memberAssignment as Record<string, number[]>)),
    );
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({ eachMessage: async () => {} });
    const a = await assigned;
    await consumer.disconnect();
    await other.disconnect();
    await admin.disconnect();
    for (const t of topics) assert.deepEqual([...(a[t] ?? [])].sort(), [0, 1, 2, 3, 4, 5], `${t}: every partition assigned`);
  });

  test('CLI status, stop, status', async () => {
    const lines: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(' '));
    let statusRc: number, stopRc: number, stoppedRc: number;
    try {
      statusRc = await kafkaCommand(['status', '--state-dir', stateDir]);
      stopRc = await kafkaCommand(['stop', '--state-dir', stateDir]);
      stoppedRc = await kafkaCommand(['status', '--state-dir', stateDir]);
    } finally {
      console.log = orig;
    }
    assert.equal(statusRc, 0);
    assert.match(lines[0] ?? '', new RegExp(`^kafka: running at ${brokers.replace(/\./g, '\\.')} \\(pid \\d+, state `));
    assert.equal(stopRc, 0);
    assert.match(lines[1] ?? '', /^kafka: stopped \(pid \d+/);
    assert.equal(stoppedRc, 3);
    assert.match(lines[2] ?? '', /^kafka: stopped \(state /);
    assert.equal(fs.existsSync(path.join(stateDir, 'kafka.pid')), false);
    assert.deepEqual(await brokerStatus({ stateDir }), { running: false, pid: null, brokers: null });
  });

  test('restart on the same state dir keeps the data', async () => {
    const t0 = Date.now();
    const r = await startBroker(opts());
    console.log(`# broker restarted in ${Date.now() - t0} ms`);
    assert.equal(r.alreadyRunning, false);
    assert.equal(r.brokers, brokers);

    const k = kafka();
    const admin = k.admin();
    await admin.connect();
    const topics = await admin.listTopics();
    assert.ok(topics.includes('rf.test.events'));
    const offsets = await admin.fetchTopicOffsets('rf.test.events');
    assert.equal(offsets.reduce((sum, p) => sum + Number(p.high), 0), 1000);
    // the coordinator may still be loading the group's offsets right after the restart
    const group = await retrying(() => admin.fetchOffsets({ groupId: 'rf-test-group', topics: ['rf.test.events'] }));
    assert.equal(group[0]!.partitions.reduce((sum, p) => sum + Number(p.offset), 0), 1000);
    await admin.disconnect();

    // A fresh group still reads back all 1000 records.
    const consumer = k.consumer({ groupId: 'rf-test-group-2', maxWaitTimeInMs: 200 });
    await consumer.connect();
    const values = await consumeAll(consumer, 'rf.test.events', 1000, 30_000, 500);
    await consumer.disconnect();
    assert.equal(values.length, 1000);

    const stopped = await stopBroker({ stateDir });
    assert.equal(stopped.stopped, true);
    assert.equal((await brokerStatus({ stateDir })).running, false);
  });
});
