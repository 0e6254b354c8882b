/**
 * Processor stages against one bad peer, on a real broker (each test its own):
 *  - one host's clock a day ahead, on the same repartition partition as
 *    another host: the other's windows still close and are exported with
 *    exact counts; the bad record is dead-lettered (reason clock_skew) and
 *    counted (crash 3 of issue 9: it froze the partition's watermark);
 *  - stage 1's transactional producer fenced by another instance with the
 *    same --instance: the stage says so through onFatal, once, with no
 *    unhandled rejection (it used to stall silently);
 *  - the same bad clock on an l7 partition: the other host's request still
 *    pairs with its response (its watermark used to jump a day and time out
 *    every waiting request); the bad record is dead-lettered and counted.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, sleep } from '../support/integration.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { retryTxStep } from '../../kafka/transaction.ts';
import { startProcessor, type Processor } from '../../processor/service.ts';
import { createRepartitionStage, type RepartitionStage } from '../../processor/repartition.ts';
import { createSpansStage, type SpansStage } from '../../processor/spans-stage.ts';
import { createAggregateStage, type AggregateStage } from '../../processor/aggregate-stage.ts';
import { createPartitionState } from '../../processor/partition.ts';
import type { FatalError } from '../../common/errors.ts';
import { EVENT_TOPICS, REPARTITION_TOPIC, STATS_TOPIC } from '../../processor/topics.ts';

const CONNECT = 'ringflow.tcp.connect.v1';
const DEADLETTER = 'ringflow.deadletter.v1';
const S = 1_000_000_000n;
const WINDOW_NS = 2n * S;

function connect(host: string, wallNs: bigint, latencyNs: bigint): Buffer {
  return encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
    cpu: 0, pid: 9, tgid: 9, uid: 0, ts_ns: wallNs - 1000n * S, cgroup_id: 1n, comm: 'curl', saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 80,
    family: 2, state: 'ESTABLISHED', latency_ns: latencyNs, host, boot_time_ns: 1000n * S,
  });
}

/** Headers of every dead letter so far (values may not decode: they are read raw). */
async function deadLetters(kafka: InstanceType<typeof Kafka>, ms = 4000): Promise<Record<string, string>[]> {
  const seen: Record<string, string>[] = [];
  const c = kafka.consumer({ groupId: `it-faults-dlq-${Date.now()}-${Math.random()}` });
  await c.connect();
  await c.subscribe({ topic: DEADLETTER, fromBeginning: true });
  await c.run({ eachMessage: async ({ message }) => void seen.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([h, v]) => [h, String(v)]))) });
  await sleep(ms);
  await c.disconnect();
  return seen;
}

describe('processor: one host\'s clock a day ahead', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let proc: Processor | undefined;
  const log: string[] = [];
  const fatal: FatalError[] = [];

  before(async () => {
    k = await ownBroker();
    kafka = new Kafka({ clientId: 'it-processor-faults', brokers: [k.brokers], logLevel: logLevel.NOTHING });
  });
  after(async () => {
    await proc?.stop().catch(() => {});
    await k?.stop();
  });

  test('the other host\'s windows close and are exported; the bad record is dead-lettered with its reason and counted', async () => {
    const admin = kafka.admin();
    await admin.connect();
    // one partition everywhere: both hosts' keys share stage 2's partition (as any two hosts may)
    await ensureTopics(admin, [CONNECT], 1);
    await admin.disconnect();
    const now = BigInt(Date.now()) * 1_000_000n;
    const W = (now / WINDOW_NS) * WINDOW_NS - 30n * WINDOW_NS; // a window a minute ago
    proc = await startProcessor({
      kafka, brokers: [k.brokers], instanceId: 'it-skew', partitions: 1, windowMs: 2000, latenessMs: 1000, topK: 100, idleTickMs: 200,
      log: (l) => log.push(l),
    });
    void proc.failed.then((e) => fatal.push(e));
    const p = kafka.producer();
    await p.connect();
    // the bad clock first, committed by stage 1 on its own: it reaches stage 2 before the good host's
    // events (in one transaction stage 1 would write the earlier window first)
    await p.send({ topic: CONNECT, messages: [{ key: 'bad/1', value: connect('bad', now + 86_400n * S, 1_000_000n) }] });
    for (let i = 0; i < 300 && proc.repartition.counters.records === 0; i++) await sleep(100);
    assert.equal(proc.repartition.counters.records, 1, 'stage 1 committed the bad record on its own');
    await p.send({ topic: CONNECT, messages: Array.from({ length: 50 }, (_, i) => ({ key: 'good/1', value: connect('good', W + BigInt(i) * 10_000_000n, 2_000_000n) })) });
    await p.disconnect();

    let good: Record<string, unknown>[] = [];
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && good.length === 0) {
      await sleep(1000);
      good = (await readTopic(k.brokers, 'ringflow.metrics.v1', 1000).catch(() => []))
        .map((r) => r.value)
        .filter((v) => v.name === 'ringflow.tcp.connect.duration' && (v.attributes as { key: string; value: string }[]).some((a) => a.key === 'host.name' && a.value === 'good'));
    }
    assert.deepEqual(fatal, []);
    assert.equal(good.length, 1, `the good host's window was exported; the processor said:\n${log.join('\n')}`);
    const h = good[0]!.histogram as { count: bigint };
    assert.equal(good[0]!.window_start_ns, W);
    assert.equal(Number(h.count), 50);
    assert.equal(Number(good[0]!.late_events), 0, 'none of the good host\'s events late');

    const dead = await deadLetters(kafka);
    assert.equal(dead.length, 1, JSON.stringify(dead));
    assert.equal(dead[0]!['ringflow.reason'], 'clock_skew');
    assert.equal(dead[0]!['ringflow.source.topic'], CONNECT);
    assert.match(dead[0]!['ringflow.error']!, /86\d{3}(\.\d+)? s ahead of the processor's clock \(allowed: 60 s; --max-clock-skew\)/);
    assert.equal(proc.repartition.counters.clockSkew, 1);
    assert.ok(log.some((l) => /dead letter .*ahead of the processor's clock/.test(l)), log.join('\n'));
  });

  test('the commit metadata of the processor\'s groups is UTF-8 text (JSON) that other Kafka tools can read', async () => {
    const commits = (await rawCommits(kafka)).filter((c) => c.group.startsWith('ringflow-processor-'));
    assert.ok(commits.some((c) => c.group === 'ringflow-processor-aggregate' && c.metadata !== null && c.metadata.length > 0), 'stage 2 committed a checkpoint');
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    for (const c of commits) {
      if (c.metadata === null || c.metadata.length === 0) continue;
      let text = '';
      assert.doesNotThrow(() => (text = utf8.decode(c.metadata!)), `${c.group} ${c.topic}[${c.partition}]: not UTF-8`);
      assert.doesNotThrow(() => JSON.parse(text), `${c.group} ${c.topic}[${c.partition}]: not JSON`);
    }
  });
});

/**
 * Every offset commit of the processor's groups as the broker stores it
 * (__consumer_offsets, read raw): group, topic, partition and the metadata's
 * bytes. Issue 9 item 10 says other Kafka tools could not read a group's
 * commit metadata as UTF-8; this reads the bytes themselves, not kafkajs's
 * lossy decoding of them.
 */
async function rawCommits(kafka: InstanceType<typeof Kafka>): Promise<{ group: string; topic: string; partition: number; metadata: Buffer | null }[]> {
  const out: { group: string; topic: string; partition: number; metadata: Buffer | null }[] = [];
  const c = kafka.consumer({ groupId: `it-faults-offsets-${Date.now()}` });
  await c.connect();
  await c.subscribe({ topic: '__consumer_offsets', fromBeginning: true });
  const str = (b: Buffer, at: number): [Buffer | null, number] => {
    const n = b.readInt16BE(at);
    return n < 0 ? [null, at + 2] : [b.subarray(at + 2, at + 2 + n), at + 2 + n];
  };
  await c.run({
    eachMessage: async ({ message }) => {
      const key = message.key!;
      const kv = key.readInt16BE(0);
      if (kv > 1 || !message.value) return; // group metadata, or a tombstone
      let [group, at] = str(key, 2);
      let topic: Buffer | null;
      [topic, at] = str(key, at);
      const partition = key.readInt32BE(at);
      const v = message.value;
      const vv = v.readInt16BE(0);
      // OffsetCommitValue: offset int64, (v3: leader epoch int32), metadata string, ...
      const [metadata] = str(v, 2 + 8 + (vv >= 3 ? 4 : 0));
      out.push({ group: group!.toString(), topic: topic!.toString(), partition, metadata });
    },
  });
  await sleep(4000);
  await c.disconnect();
  return out;
}

describe('processor: stage 1 fenced by another instance', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: RepartitionStage | undefined;
  const rejections: unknown[] = [];
  const onRejection = (r: unknown) => void rejections.push(r);

  before(async () => {
    k = await ownBroker();
    process.on('unhandledRejection', onRejection);
  });
  after(async () => {
    process.off('unhandledRejection', onRejection);
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('its failed commits are reported and end in one FatalError, never an unhandled rejection', async () => {
    const kafka = new Kafka({ clientId: 'it-processor-fence', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [...EVENT_TOPICS, STATS_TOPIC, REPARTITION_TOPIC, DEADLETTER], 1);
    await admin.disconnect();
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createRepartitionStage({ kafka, instanceId: 'it-fence', windowMs: 2000, log: (l) => log.push(l), onFatal: (e) => fatal.push(e) });
    await stage.start();
    const p = kafka.producer();
    await p.connect();
    const send = () => p.send({ topic: CONNECT, messages: [{ key: 'h/1', value: connect('h', BigInt(Date.now()) * 1_000_000n, 1_000_000n) }] });
    await send();
    for (let i = 0; i < 100 && stage.counters.transactions === 0; i++) await sleep(100);
    assert.ok(stage.counters.transactions > 0, 'committed before the fence');

    // another instance with the same --instance: its producer's initTransactions fences ours
    const other = kafka.producer({ transactionalId: 'ringflow-repartition-it-fence', idempotent: true, maxInFlightRequests: 1 });
    await other.connect();
    await (await other.transaction()).abort(); // kafkajs inits a transactional id with its first transaction
    for (let i = 0; i < 5; i++) {
      await send();
      await sleep(500);
    }
    for (let i = 0; i < 100 && fatal.length === 0; i++) await sleep(100);
    await sleep(1500); // more ticks: a poisoned chain would reject on each
    await other.disconnect();
    await p.disconnect();

    assert.deepEqual(rejections.map(String), [], "no unhandled rejection");
    assert.equal(fatal.length, 1, `one FatalError; the stage said:\n${log.join('\n')}`);
    assert.match(fatal[0]!.message, /fenced: another processor runs as --instance it-fence/);
  });
});

/** An HTTP/1 request or response seen by a client on `host`, at wall time `at`. */
const BOOT = (BigInt(Date.now()) - 3_600_000n) * 1_000_000n;
function l7(host: string, kind: 'REQUEST' | 'RESPONSE', at: bigint): { key: string; value: Buffer } {
  const boot = BOOT; // one boot per run: request and response of one observer
  return {
    key: `tcp|10.0.0.1:40000|10.0.0.2:80`, // one connection key: one partition, as any two hosts may share
    value: encodeRecord(schemaRegistry().byId('l7')!, {
      ts_ns: at - boot, end_ns: at + 1_000_000n - boot, pid: 7, tgid: 7, uid: 0, comm: 'client', cgroup_id: 1, conn_id: 1, role: 'CLIENT', transport: 'TCP',
      local_addr: '10.0.0.1', local_port: 40000, remote_addr: '10.0.0.2', remote_port: 80, protocol: 'HTTP1', kind, stream_id: 1,
      method: kind === 'REQUEST' ? 'GET' : null, path: kind === 'REQUEST' ? '/ok' : null, status: kind === 'RESPONSE' ? 200 : null, headers: {},
      grpc_service: null, grpc_method: null, grpc_status: null, dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
      body_bytes: 0, truncated: false, host, boot_time_ns: boot,
    }),
  };
}

describe('processor: spans stage, one host\'s clock a day ahead', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: SpansStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('the other host\'s request still pairs with its response (no timeout); the bad record is dead-lettered and counted', async () => {
    const kafka = new Kafka({ clientId: 'it-processor-spans-skew', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, ['ringflow.l7.v1', 'ringflow.spans.v1', DEADLETTER, REPARTITION_TOPIC], 1);
    await admin.disconnect();
    const now = BigInt(Date.now()) * 1_000_000n;
    const T = now - 60n * S;
    const p = kafka.producer();
    await p.connect();
    // the good host's request, the bad host's record dated a day ahead, then the good response
    await p.send({ topic: 'ringflow.l7.v1', messages: [l7('good', 'REQUEST', T), l7('bad', 'REQUEST', now + 86_400n * S), l7('good', 'RESPONSE', T + 5_000_000n)] });
    await p.disconnect();
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createSpansStage({ kafka, instanceId: 'it-spans-skew', latenessNs: 0n, linkDelayNs: 0n, timeoutNs: 10n * S, idleTickMs: 200, log: (l) => log.push(l), onFatal: (e) => fatal.push(e) });
    await stage.start();
    const spans: { host: string; status: string; attributes: Record<string, string> }[] = [];
    const c = kafka.consumer({ groupId: `it-spans-skew-watch-${process.pid}`, readUncommitted: false });
    await c.connect();
    await c.subscribe({ topic: 'ringflow.spans.v1', fromBeginning: true });
    await c.run({ eachMessage: async ({ message }) => void spans.push(decodeRecord(message.value!).value as never) });
    for (let i = 0; i < 300 && spans.length === 0; i++) await sleep(100);
    await sleep(1500);
    await c.disconnect();
    const dead = await deadLetters(kafka);

    assert.deepEqual(fatal, []);
    assert.equal(spans.length, 1, `one span; the stage said:\n${log.join('\n')}`);
    assert.equal(spans[0]!.host, 'good');
    assert.equal(spans[0]!.attributes['error.type'], undefined, `answered, not timed out: ${JSON.stringify(spans[0]!.attributes)}`);
    assert.equal(spans[0]!.attributes['http.response.status_code'], '200');
    assert.equal(dead.length, 1, JSON.stringify(dead));
    assert.equal(dead[0]!['ringflow.reason'], 'clock_skew');
    assert.equal(stage.counters.clockSkew, 1);
    // and counted for stage 2's ringflow.dropped{reason=clock_skew, signal=ringflow.l7.v1}, committed
    // with the dead letter, once (partial.ts rejectionRecord: a stats-shaped record on the repartition topic)
    const counted = (await readTopic(k.brokers, REPARTITION_TOPIC)).map((r) => ({ key: r.key, reasons: (r.value.drop_reasons as { reason: string; count: bigint }[]).map((x) => `${x.reason}=${x.count}`) }));
    assert.deepEqual(counted, [{ key: 'ringflow.l7.v1|bad', reasons: ['processor:clock_skew=1'] }]);
  });
});

describe('processor: spans stage, commit metadata it cannot use', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: SpansStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('a checkpoint the correlator refuses is ignored and counted; the partition is processed from the committed offset', async () => {
    const kafka = new Kafka({ clientId: 'it-processor-spans-meta', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, ['ringflow.l7.v1', 'ringflow.spans.v1', DEADLETTER], 1);
    await admin.disconnect();
    const T = BigInt(Date.now()) * 1_000_000n - 60n * S;
    const p = kafka.producer({ transactionalId: 'it-spans-meta-writer', idempotent: true, maxInFlightRequests: 1 });
    await p.connect();
    await p.send({ topic: 'ringflow.l7.v1', messages: [l7('good', 'REQUEST', T), l7('good', 'RESPONSE', T + 5_000_000n)] });
    // a commit at offset 0 whose metadata is ours in shape but holds a checkpoint that is not one
    // (another build, a truncated value): the stage used to throw on it for every batch, forever
    const tx = await p.transaction();
    // on a fresh broker the group's coordinator may still be loading (NOT_COORDINATOR_FOR_GROUP,
    // 2 of 3 runs on a loaded host): asked again, as the stages do
    await retryTxStep(() => tx.sendOffsets({
      consumerGroupId: 'ringflow-processor-spans',
      topics: [{ topic: 'ringflow.l7.v1', partitions: [{ partition: 0, offset: '0', metadata: JSON.stringify({ v: 1, read: '0', spans: '{not a checkpoint' }) } as never] }],
    }));
    await tx.commit();
    await p.disconnect();

    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createSpansStage({ kafka, instanceId: 'it-spans-meta', latenessNs: 0n, linkDelayNs: 0n, timeoutNs: 10n * S, idleTickMs: 200, log: (l) => log.push(l), onFatal: (e) => fatal.push(e) });
    await stage.start();
    for (let i = 0; i < 300 && stage.counters.spans === 0 && fatal.length === 0; i++) await sleep(100);
    assert.deepEqual(fatal, []);
    assert.equal(stage.counters.spans, 1, `the partition was processed; the stage said:\n${log.join('\n')}`);
    assert.equal(stage.counters.checkpointsIgnored, 1);
    assert.ok(log.some((l) => /ignoring the commit's metadata/.test(l)), log.join('\n'));
  });
});

describe('processor: stage 2 commits failing for good', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let stage: AggregateStage | undefined;
  before(async () => {
    k = await ownBroker();
  });
  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('the failure is said once with a count, not every 100 ms tick, and escalates once it persists', async () => {
    const kafka = new Kafka({ clientId: 'it-processor-agg-fence', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [REPARTITION_TOPIC, 'ringflow.metrics.v1', DEADLETTER], 1);
    await admin.disconnect();
    const log: string[] = [];
    const fatal: FatalError[] = [];
    stage = createAggregateStage({
      kafka, instanceId: 'it-agg-fence', idleTickMs: 200, failurePersistMs: 3000, log: (l) => log.push(l), onFatal: (e) => fatal.push(e),
      newState: (partition, cp) => createPartitionState({ windowMs: 2000, latenessMs: 0, topK: 100, processorId: 'it' }, partition, cp),
    });
    await stage.start();
    const p = kafka.producer();
    await p.connect();
    let t = (BigInt(Date.now()) * 1_000_000n / WINDOW_NS) * WINDOW_NS - 600n * S;
    // raw events (stage 2 takes them as from an older stage 1), each closing the window before it
    const send = async () => {
      await p.send({ topic: REPARTITION_TOPIC, messages: [{ key: `${CONNECT}|h`, value: connect('h', t, 1_000_000n) }] });
      t += WINDOW_NS;
    };
    await send();
    await send();
    for (let i = 0; i < 100 && stage.counters.transactions === 0; i++) await sleep(100);
    assert.ok(stage.counters.transactions > 0, 'committed before the fence');
    // the output topic goes away (auto-creation is off): every commit fails from now on
    const a = kafka.admin();
    await a.connect();
    await a.deleteTopics({ topics: ['ringflow.metrics.v1'] });
    await a.disconnect();
    await send();
    for (let i = 0; i < 600 && fatal.length === 0; i++) await sleep(100);
    await sleep(1000);
    await p.disconnect();

    const said = log.filter((l) => /failed/.test(l));
    assert.equal(fatal.length, 1, `escalated once; the stage said:\n${log.join('\n')}`);
    assert.match(fatal[0]!.message, /processor: aggregate: commit has failed \d+ times over \d+ s/);
    assert.ok(stage.counters.failedCommits >= 2, `failed ${stage.counters.failedCommits} times`);
    // each kind (commit, idle advance) once, again at its 10th: not one line per tick
    assert.ok(said.length <= 4, `said ${said.length} times for ${stage.counters.failedCommits} failures:\n${said.join('\n')}`);
  });
});
