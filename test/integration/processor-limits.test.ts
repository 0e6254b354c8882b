/**
 * Every record a processor stage produces stays within the broker's limits,
 * on a real broker (its own: topic configs are per broker). ringflow.spans.v1
 * is created with max.message.bytes = 20 000; one fetched batch of l7 records
 * makes ~90 KB of spans after compression (their paths are random, so gzip
 * cannot hide it), and one span alone is over the limit. The spans stage must
 * emit every other span (several produce requests in one transaction), send
 * the oversized one to the dead-letter topic with a reason, count it, and
 * never stop (crash 2 of issue 9: it sent a whole batch's spans in one
 * request, died with MESSAGE_TOO_LARGE, and died again on every restart).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ownBroker, readTopic, sleep } from '../support/integration.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { l7Key } from '../../collector/l7/tracker.ts';
import { createSpansStage, type SpansStage } from '../../processor/spans-stage.ts';
import { startProcessor, type Processor } from '../../processor/service.ts';
import { REPARTITION_TOPIC } from '../../processor/topics.ts';
import type { FatalError } from '../../common/errors.ts';

const L7 = 'ringflow.l7.v1';
const SPANS = 'ringflow.spans.v1';
const DEADLETTER = 'ringflow.deadletter.v1';
const CONNECT = 'ringflow.tcp.connect.v1';
const MS = 1_000_000n;
const S = 1_000_000_000n;
const LIMIT = 20_000;
const N = 400;

/** A client's HTTP/1 request and its response on one connection, `path` as given. */
function exchange(i: number, path: string, at: bigint): { key: string; value: Buffer }[] {
  const boot = at - 3600n * S;
  const side = { local: ['10.9.0.1', 40000 + (i % 1000)] as const, remote: ['10.9.0.2', 8080] as const };
  const rec = (kind: 'REQUEST' | 'RESPONSE', t: bigint) => encodeRecord(schemaRegistry().byId('l7')!, {
    ts_ns: t - boot, end_ns: t + MS - boot, pid: 7, tgid: 7, uid: 0, comm: 'client', cgroup_id: 1, conn_id: i, role: 'CLIENT', transport: 'TCP',
    local_addr: side.local[0], local_port: side.local[1], remote_addr: side.remote[0], remote_port: side.remote[1],
    protocol: 'HTTP1', kind, stream_id: 1, method: kind === 'REQUEST' ? 'GET' : null, path: kind === 'REQUEST' ? path : null,
    status: kind === 'RESPONSE' ? 200 : null, headers: {}, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null, body_bytes: 0, truncated: false, host: 'limits-host', boot_time_ns: boot,
  });
  const key = l7Key('TCP', side.local[0], side.local[1], side.remote[0], side.remote[1]);
  return [{ key, value: rec('REQUEST', at) }, { key, value: rec('RESPONSE', at + 2n * MS) }];
}

describe('processor: produce requests within the broker limits', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let stage: SpansStage | undefined;
  const log: string[] = [];
  const fatal: FatalError[] = [];

  before(async () => {
    k = await ownBroker();
    kafka = new Kafka({ clientId: 'it-processor-limits', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: SPANS, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: String(LIMIT) }] }] });
    await ensureTopics(admin, [L7, SPANS, DEADLETTER], 1);
    await admin.disconnect();
  });

  after(async () => {
    await stage?.stop().catch(() => {});
    await k?.stop();
  });

  test('a batch of spans far over max.message.bytes goes out in several requests; a span alone over it is dead-lettered and counted', async () => {
    const at = BigInt(Date.now()) * MS - 120n * S; // well behind the clock: the idle tick ends every wait
    const msgs: { key: string; value: Buffer }[] = [];
    for (let i = 0; i < N; i++) msgs.push(...exchange(i, `/items/${randomBytes(150).toString('base64url')}`, at + BigInt(i) * MS));
    // one request whose span alone is over the limit (its path is in url.path and url.full)
    msgs.push(...exchange(N, `/huge/${randomBytes(30_000).toString('base64url')}`, at + BigInt(N) * MS));
    const p = kafka.producer();
    await p.connect();
    // one produce: the stage fetches it in one batch (a 1 MiB fetch holds all of it)
    await p.send({ topic: L7, messages: msgs });
    await p.disconnect();

    stage = createSpansStage({
      kafka, instanceId: 'it-limits', latenessNs: 0n, linkDelayNs: 0n, timeoutNs: 10n * S, idleTickMs: 200,
      log: (l) => log.push(l), onFatal: (e) => fatal.push(e),
    });
    await stage.start();

    // everything committed to the spans and dead-letter topics, as it arrives (read_committed)
    const spans = new Set<string>();
    const dead: Record<string, string>[] = [];
    const c = kafka.consumer({ groupId: `it-limits-watch-${process.pid}`, readUncommitted: false });
    await c.connect();
    await c.subscribe({ topics: [SPANS, DEADLETTER], fromBeginning: true });
    await c.run({
      eachMessage: async ({ topic, message }) => {
        if (topic === SPANS) spans.add(String((decodeRecord(message.value!).value as { span_id: string }).span_id));
        else dead.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([h, v]) => [h, String(v)])));
      },
    });
    const deadline = Date.now() + 120_000;
    while ((spans.size < N || dead.length < 1) && fatal.length === 0 && Date.now() < deadline) await sleep(250);
    await sleep(1000); // anything more (a duplicate) would show now
    await c.disconnect();

    assert.deepEqual(fatal.map((e) => e.message), [], `the stage stopped; it said:\n${log.join('\n')}`);
    assert.equal(spans.size, N, `every span that fits was emitted; the stage said:\n${log.join('\n')}`);
    assert.equal(dead.length, 1, 'one dead letter');
    assert.equal(dead[0]!['ringflow.reason'], 'oversized');
    assert.equal(dead[0]!['ringflow.target.topic'], SPANS);
    assert.match(dead[0]!['ringflow.error']!, /MESSAGE_TOO_LARGE: a record of \d+ bytes for ringflow\.spans\.v1, over its max\.message\.bytes \(20000\)/);
    assert.equal(stage.counters.oversized, 1);
    assert.equal(stage.counters.spans, N);
    assert.ok(log.some((l) => /over its max\.message\.bytes \(20000\) -> dead letter/.test(l)), log.join('\n'));
  });
});

describe('processor: stage 1 partials within the repartition topic\'s limit', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let proc: Processor | undefined;
  after(async () => {
    await proc?.stop().catch(() => {});
    await k?.stop();
  });

  test('a partial of many series over max.message.bytes goes as several: every event reaches its point, nothing dead-lettered', async () => {
    k = await ownBroker();
    const kafka = new Kafka({ clientId: 'it-processor-partials', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: REPARTITION_TOPIC, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '8000' }] }] });
    await ensureTopics(admin, [CONNECT], 1);
    await admin.disconnect();
    // one host's connects to 300 endpoints in one window: one partial of 300 series (~30 KB)
    const W = ((BigInt(Date.now()) * MS) / (2n * S)) * 2n * S - 60n * S;
    const msgs = Array.from({ length: 900 }, (_, i) => ({
      key: `h/${i}`,
      value: encodeRecord(schemaRegistry().byTopic(CONNECT)!, {
        cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: W + BigInt(i) * MS, cgroup_id: 1n, comm: 'client', saddr: '10.0.0.1', daddr: `10.1.${(i % 300) >> 8}.${(i % 300) & 255}`,
        sport: 40000, dport: 443, family: 2, state: 'ESTABLISHED', latency_ns: BigInt(1000 + i), host: 'many', boot_time_ns: 0n,
      }),
    }));
    const log: string[] = [];
    proc = await startProcessor({ kafka, brokers: [k.brokers], instanceId: 'it-partials', partitions: 1, windowMs: 2000, latenessMs: 1000, topK: 1000, idleTickMs: 200, log: (l) => log.push(l) });
    const p = kafka.producer();
    await p.connect();
    await p.send({ topic: CONNECT, messages: msgs }); // one fetch, one transaction of stage 1
    await p.disconnect();
    let count = 0;
    let series = 0;
    for (let i = 0; i < 90 && count < 900; i++) {
      await sleep(1000);
      const pts = (await readTopic(k.brokers, 'ringflow.metrics.v1', 1000).catch(() => [])).map((r) => r.value).filter((v) => v.name === 'ringflow.tcp.connect.duration');
      count = pts.reduce((a, v) => a + Number((v.histogram as { count: bigint }).count), 0);
      series = pts.length;
    }
    assert.equal(count, 900, `every event in a point; the processor said:\n${log.join('\n')}`);
    assert.equal(series, 300);
    assert.equal(proc.repartition.counters.oversized, 0);
    assert.equal(proc.repartition.counters.deadLetters, 0);
  });
});
