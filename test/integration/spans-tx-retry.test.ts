/**
 * The soak's CONCURRENT_TRANSACTIONS after a broker restart, reproduced
 * without the restart. What the restart did: the collectors' held records
 * arrived as a backlog, so the spans stage committed one transaction per
 * partition batch back to back, many of them carrying offsets only (requests
 * still waiting, spans still in their link wait, nothing to emit). The
 * coordinator refuses AddOffsetsToTxn with CONCURRENT_TRANSACTIONS while it is
 * still writing the markers of the transaction before, and kafkajs does not
 * retry it there (kafka/transaction.ts). The stage then aborted, dropped the
 * partition's state and re-read it.
 *
 * Here: a real broker, the spans stage in this process, and rounds of
 * records to 8 partitions at once, each a response nobody waits for (counted
 * unmatched, no span): every partition batch is an offsets-only transaction,
 * right after the previous one. Before the fix 10-14 of 25 such transactions
 * failed in a bare kafkajs loop; here the stage logged `commit failed (...
 * another concurrent operation ...)` and read records again. The test wants
 * no failed commit, every record read once, and the offsets committed.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { logLevel } from '../../kafka/kafkajs.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { createSpansStage, type SpansStage } from '../../processor/spans-stage.ts';
import { DEADLETTER_TOPIC, L7_TOPIC, SPANS_GROUP, SPANS_TOPIC } from '../../processor/topics.ts';

const S = 1_000_000_000n;
const MS = 1_000_000n;
const PARTITIONS = 8;
const ROUNDS = 6;
const RUN = `${process.pid}${Date.now().toString(36)}`;

function response(at: bigint, id: number): Buffer {
  const boot = at - 86_400n * S;
  return encodeRecord(schemaRegistry().byId('l7')!, {
    ts_ns: at - boot, end_ns: at + MS - boot, pid: 101, tgid: 101, uid: 1000, comm: 'load', cgroup_id: 1,
    conn_id: id, role: 'CLIENT', transport: 'TCP', local_addr: '10.4.0.1', local_port: 40000 + id, remote_addr: '10.4.0.2', remote_port: 8080,
    protocol: 'HTTP1', kind: 'RESPONSE', stream_id: 1, method: null, path: null, status: 200,
    headers: {}, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: 0, truncated: false, host: `txretry-${RUN}`, boot_time_ns: boot,
  });
}

let stage: SpansStage | undefined;
let stopBroker: (() => Promise<void>) | undefined;
after(async () => {
  // in reverse order of set-up: the stage needs the broker to leave its group
  await stage?.stop();
  await stopBroker?.();
});

test('spans stage: back-to-back offsets-only transactions commit without CONCURRENT_TRANSACTIONS failures or re-reads', { timeout: 150_000 }, async (t) => {
  // its own broker even in the suite: the spans group must be ours alone
  const b = await ownBroker();
  stopBroker = b.stop;
  const kafka = createKafkaClient([b.brokers], `it-spans-txretry-${RUN}`);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [L7_TOPIC, SPANS_TOPIC, DEADLETTER_TOPIC], PARTITIONS);
    const lines: string[] = [];
    stage = createSpansStage({ kafka, instanceId: `it-txretry-${RUN}`, latenessNs: 1n * S, idleTickMs: 60_000, log: (l) => lines.push(l) });
    await stage.start();
    await sleep(3000); // in its group, fetching
    const before = stage.counters.records;
    const producer = kafka.producer();
    await producer.connect();
    let sent = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const at = BigInt(Date.now()) * MS;
      const messages = Array.from({ length: PARTITIONS }, (_, p) => ({ partition: p, key: `k${p}`, value: response(at, r * PARTITIONS + p) }));
      await producer.send({ topic: L7_TOPIC, messages });
      sent += messages.length;
      await sleep(400);
    }
    await producer.disconnect();
    const ends = await admin.fetchTopicOffsets(L7_TOPIC);
    const deadline = Date.now() + 60_000;
    let committed: { partition: number; offset: string }[] = [];
    for (;;) {
      const [c] = await admin.fetchOffsets({ groupId: SPANS_GROUP, topics: [L7_TOPIC] });
      committed = c?.partitions ?? [];
      const done = ends.every((e) => committed.find((x) => x.partition === e.partition)?.offset === e.offset);
      if (done || Date.now() > deadline) break;
      await sleep(500);
    }
    t.diagnostic(`transactions ${stage.counters.transactions}, steps retried ${stage.counters.txRetries}`);
    const failed = lines.filter((l) => /commit failed|dead letter/.test(l));
    assert.deepEqual(failed, [], `the stage's log:\n${lines.join('\n')}`);
    for (const e of ends) {
      assert.equal(Number(e.offset), ROUNDS, `partition ${e.partition} holds our ${ROUNDS} records`);
      assert.equal(committed.find((x) => x.partition === e.partition)?.offset, e.offset, `partition ${e.partition} committed to its end`);
    }
    // read once: a failed transaction rewinds the partition and its records are read again
    assert.equal(stage.counters.records - before, sent, `records read (txRetries ${stage.counters.txRetries}, transactions ${stage.counters.transactions})`);
    assert.equal(stage.correlators().unmatchedResponses, sent);
  } finally {
    await admin.disconnect();
  }
});
