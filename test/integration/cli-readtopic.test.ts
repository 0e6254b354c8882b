/**
 * The test support's topic reader (test/support/integration.ts), which the
 * exactly-once and no-secrets checks trust to have read everything: it must
 * read every committed record to the end offsets, through commit markers and
 * aborted transactions, and through a broker that stalls mid-read, and
 * uncommittedRecords must see exactly what a group has not committed.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, readTopicRaw, uncommittedRecords, waitCommitted } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const PARTITIONS = 3;

function runq(seq: number) {
  return {
    key: `k${seq}`,
    value: encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
      cpu: 0, pid: seq, tgid: seq, uid: 0, ts_ns: 1n, cgroup_id: 1n, comm: 'reader', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'it-reader', boot_time_ns: 0n,
    }),
  };
}

describe('test support: reading a topic to its end', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  const topic = `${RUNQ}.it-reader-${process.pid}`;
  const committed: number[] = [];

  before(async () => {
    k = await ownBroker();
    kafka = new Kafka({ clientId: 'it-reader', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }] });
    await admin.disconnect();
    // committed transactions over every partition, then an aborted one: every
    // partition ends in a marker, which no consumer is handed as a message
    const tx = kafka.producer({ transactionalId: `it-reader-${process.pid}`, idempotent: true, maxInFlightRequests: 1 });
    await tx.connect();
    for (let round = 0; round < 3; round++) {
      const t = await tx.transaction();
      const seqs = Array.from({ length: 60 }, (_, i) => round * 60 + i);
      await t.send({ topic, messages: seqs.map((s) => ({ ...runq(s), partition: s % PARTITIONS })) });
      await t.commit();
      committed.push(...seqs);
    }
    const t = await tx.transaction();
    await t.send({ topic, messages: [0, 1, 2].map((p) => ({ ...runq(1000 + p), partition: p })) });
    await t.abort();
    await tx.disconnect();
  });

  after(async () => {
    await k?.stop();
  });

  test('every committed record, none aborted, past the trailing markers', async () => {
    const got = await readTopic(k.brokers, topic, { timeoutMs: 30_000 });
    assert.deepEqual(got.map((r) => Number(r.value.pid)).sort((a, b) => a - b), committed);
  });

  test('a broker that stalls after the reader joined: still every record, not what arrived before a quiet period', async () => {
    let stalled = false;
    const got = await readTopic(k.brokers, topic, {
      timeoutMs: 60_000,
      onGroupJoin: () => {
        if (stalled) return;
        stalled = true;
        // longer than the 2.5 s quiet period the reader used to stop after
        process.kill(k.pid, 'SIGSTOP');
        setTimeout(() => process.kill(k.pid, 'SIGCONT'), 5000);
      },
    });
    assert.ok(stalled, 'the fault was injected');
    assert.deepEqual(got.map((r) => Number(r.value.pid)).sort((a, b) => a - b), committed);
  });

  test('uncommittedRecords: exactly the records past a group\'s committed offsets', async () => {
    const groupId = `it-reader-group-${process.pid}`;
    const admin = kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(topic);
    // nothing committed on partition 0, offset 10 on partition 1, the end on partition 2
    await admin.setOffsets({ groupId, topic, partitions: [{ partition: 1, offset: '10' }, { partition: 2, offset: ends.find((e) => e.partition === 2)!.high }] });
    await admin.disconnect();
    const all = await readTopicRaw(k.brokers, topic);
    const want = all.filter((r) => r.partition === 0 || (r.partition === 1 && BigInt(r.offset) >= 10n));
    const got = await uncommittedRecords(k.brokers, groupId, topic);
    assert.deepEqual(got.map((r) => `${r.partition}@${r.offset}`), want.map((r) => `${r.partition}@${r.offset}`));
    assert.ok(want.length > 60, `${want.length} records`);
  });

  test('waitCommitted: done once the group committed what the topic held, else a timeout naming what is left', async () => {
    const groupId = `it-reader-wait-${process.pid}`;
    await assert.rejects(waitCommitted(k.brokers, groupId, topic, 1000), new RegExp(`${groupId} did not commit ${topic.replace(/\./g, '\\.')} up to .* in 1 s; ${committed.length} records left`));
    const admin = kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(topic);
    await admin.setOffsets({ groupId, topic, partitions: ends.map((e) => ({ partition: e.partition, offset: e.high })) });
    await admin.disconnect();
    await waitCommitted(k.brokers, groupId, topic, 5000);
  });
});
