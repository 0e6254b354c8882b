/**
 * The soak's missing spans after a broker restart (test/soak/README.md): the
 * spans of requests made in the seconds before the broker stopped never
 * reached ringflow.spans.v1 (read_uncommitted showed some written in aborted
 * transactions, most not at all), although every l7 record was there and the
 * spans stage held nothing at the end.
 *
 * Cause: the stage's emit took its transaction (producer.transaction()) before
 * its failure path. A transaction whose commit fails with the broker gone
 * leaves kafkajs's producer in COMMITTING; the stage replaces it at the next
 * transaction() (processor/stage-clients.ts), whose connect fails while the
 * broker is away. That throw skipped the failure path: the partition's state,
 * whose advance() had already handed out its spans, lived on saying they were
 * emitted, and the re-read after the outage skipped their records.
 *
 * Here, deterministically: a real broker, the spans stage in this process,
 * two partitions each with a span ready in one fetch; the broker is stopped
 * inside the first partition's transaction, between its sends and its commit
 * (the stage's beforeCommit seam), so the second partition's transaction()
 * meets the broken producer with the broker down. After the broker is back
 * every span must be in ringflow.spans.v1, once.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { createSpansStage, type SpansStage } from '../../processor/spans-stage.ts';
import { DEADLETTER_TOPIC, L7_TOPIC, SPANS_TOPIC } from '../../processor/topics.ts';

const S = 1_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;

/** One boot time for every record: the observer (host, boot, process, connection) pairs them. */
const BOOT = BigInt(Date.now()) * MS - 86_400n * S;

function l7(kind: 'REQUEST' | 'RESPONSE', at: bigint, conn: number, path: string): Buffer {
  const boot = BOOT;
  const req = kind === 'REQUEST';
  return encodeRecord(schemaRegistry().byId('l7')!, {
    ts_ns: at - boot, end_ns: at + MS - boot, pid: 101, tgid: 101, uid: 1000, comm: 'load', cgroup_id: 1,
    conn_id: conn, role: 'CLIENT', transport: 'TCP', local_addr: '10.5.0.1', local_port: 41000 + conn, remote_addr: '10.5.0.2', remote_port: 8080,
    protocol: 'HTTP1', kind, stream_id: 1, method: req ? 'GET' : null, path: req ? path : null, status: req ? null : 200,
    headers: {}, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: 0, truncated: false, host: `lost-${RUN}`, boot_time_ns: boot,
  });
}

/** One exchange on `partition`, and a request 10 s later on another connection: its time releases the exchange's span. */
function round(partition: number, at: bigint, tag: string): { partition: number; key: string; value: Buffer }[] {
  const conn = 10 * partition + 1;
  return [
    { partition, key: `p${partition}`, value: l7('REQUEST', at, conn, `/${tag}/${partition}`) },
    { partition, key: `p${partition}`, value: l7('RESPONSE', at + MS, conn, '') },
    { partition, key: `p${partition}`, value: l7('REQUEST', at + 10n * S, conn + 1, `/later/${partition}`) },
  ];
}

let stage: SpansStage | undefined;
let broker: Awaited<ReturnType<typeof ownBroker>> | undefined;
after(async () => {
  await stage?.stop();
  await broker?.stop();
});

test('spans stage: spans handed out before a transaction that cannot even begin (broker away, producer being replaced) are emitted after the outage', { timeout: 240_000 }, async (t) => {
  broker = await ownBroker();
  const b = broker;
  const kafka = createKafkaClient([b.brokers], `it-spans-lost-${RUN}`);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, [L7_TOPIC, SPANS_TOPIC, DEADLETTER_TOPIC], 2);
  await admin.disconnect();
  const lines: string[] = [];
  let stopAt: number | null = null; // the partition whose next transaction stops the broker
  let stopped = false;
  stage = createSpansStage({
    kafka, instanceId: `it-lost-${RUN}`, latenessNs: 1n * S, linkDelayNs: 100n * MS, idleTickMs: 60_000, log: (l) => lines.push(l),
    beforeCommit: async (partition) => {
      if (stopAt === null || partition !== stopAt || stopped) return;
      stopped = true;
      await stopBroker({ stateDir: b.stateDir });
    },
  });
  await stage.start();
  const producer = kafka.producer();
  await producer.connect();
  // round 1: both partitions' states exist and have committed (their next batches need no admin)
  const t1 = BigInt(Date.now()) * MS - 20n * S;
  await producer.send({ topic: L7_TOPIC, messages: [...round(0, t1, 'first'), ...round(1, t1, 'first')] });
  for (let i = 0; i < 60 && stage.counters.spans < 2; i++) await sleep(500);
  assert.equal(stage.counters.spans, 2, `round 1 emitted (${JSON.stringify(stage.counters)} ${JSON.stringify(stage.correlators())}); the stage's log:\n${lines.join('\n')}`);
  // round 2: one produce request for both partitions, so that one fetch brings both batches
  const t2 = t1 + 11n * S;
  stopAt = 0;
  await producer.send({ topic: L7_TOPIC, messages: [...round(0, t2, 'second'), ...round(1, t2, 'second')] });
  await producer.disconnect();
  for (let i = 0; i < 120 && !stopped; i++) await sleep(250);
  assert.ok(stopped, 'the broker was stopped inside a transaction');
  await sleep(8000); // partition 0's commit fails, partition 1's transaction meets the broken producer
  await startBroker({ stateDir: b.stateDir, port: b.port, controllerPort: b.controllerPort });
  // the stage reads again what it had not committed and emits it
  const want = ['/first/0', '/first/1', '/second/0', '/second/1'];
  const ours = async () => (await readTopic(b.brokers, SPANS_TOPIC)).map((r) => String((r.value.attributes as Record<string, string>)['url.path'])).filter((p) => !p.startsWith('/later/')).sort();
  let got: string[] = [];
  for (let i = 0; i < 90; i++) {
    got = await ours().catch(() => []);
    if (got.length >= want.length) break;
    await sleep(1000);
  }
  await sleep(3000); // a duplicate would show by now
  got = await ours();
  t.diagnostic(`stage log:\n${lines.join('\n')}`);
  assert.deepEqual(got, want, `spans in ${SPANS_TOPIC} (read_committed); the stage's log:\n${lines.join('\n')}`);
});
