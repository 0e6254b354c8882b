/**
 * The exporter on real parts: a Kafka broker (the suite's, or our own), known
 * MetricPoints produced with kafkajs (committed, plus an aborted transaction
 * that read_committed must hide), and a real OpenTelemetry Collector
 * (cli/otelcol.ts: OTLP gRPC receiver -> file exporter) whose JSON lines we check.
 *
 * Then the collector is stopped, more points are produced, the exporter must
 * hold and retry them (not commit, not drop), and after the collector restarts
 * on the same port every point must arrive exactly once: each point carries a
 * unique test.seq attribute, and the file (appended across restarts) must hold
 * every seq once. No duplicates are expected: a request either was accepted
 * (and then committed) or failed before the collector got it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import kafkajs from '../../kafka/kafkajs.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { startOtelcol, stopOtelcol, readOtlpFile } from '../../cli/otelcol.ts';
import { createExporter } from '../../exporter/service.ts';
import { SCOPE_VERSION, type MetricPoint, type MetricExporterLike } from '../../exporter/otlp.ts';
import { diag } from '@opentelemetry/api';
import { testBrokers, freePort, sleep, uncommittedRecords } from '../support/integration.ts';

const { Kafka, logLevel } = kafkajs;
const T0 = 1_732_590_000_000_000_000n + 123_456_789n;
const WINDOW = 10_000_000_000n;

/** Point i: even = exponential histogram on host h0/h1, odd = a sum with server.port. */
function makePoint(i: number): MetricPoint {
  const start = T0 + BigInt(i) * WINDOW;
  const host = { key: 'host.name', value: `h${i % 4 < 2 ? 0 : 1}` };
  const seq = { key: 'test.seq', value: String(i) };
  if (i % 2 === 0) {
    return {
      name: 'ringflow.sched.runqueue.latency', unit: 's', kind: 'HISTOGRAM',
      attributes: [host, { key: 'process.command', value: 'worker' }, seq],
      window_start_ns: start, window_end_ns: start + WINDOW,
      histogram: { scale: 3, zero_count: BigInt(i % 3), positive_offset: -80 + i, positive_buckets: [1n, 0n, BigInt(i)], count: BigInt(1 + i + (i % 3)), sum: 0.001 * i, min: 0, max: 0.5 },
      sum: null, late_events: 0n, dropped_inputs: 0n, processor: 'it',
    };
  }
  return {
    name: 'ringflow.tcp.connect.count', unit: '{connection}', kind: 'SUM',
    attributes: [host, seq, { key: 'server.port', value: String(8000 + i) }],
    window_start_ns: start, window_end_ns: start + WINDOW,
    histogram: null, sum: BigInt(i * 1000), late_events: 0n, dropped_inputs: 0n, processor: 'it',
  };
}

const attrValue = (v: Record<string, unknown>) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v);
const attrs = (list: { key: string; value: Record<string, unknown> }[] = []): Record<string, any> => Object.fromEntries(list.map((a) => [a.key, attrValue(a.value)]));

interface Seen { seq: number; host: string; service: string; scope: unknown; metric: any; dp: any }

/** Every data point in the collector's file, with its resource and metric. */
function seenPoints(file: string): Seen[] {
  const out: Seen[] = [];
  for (const rm of readOtlpFile(file).metrics) {
    const r = attrs(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const dps = m.exponentialHistogram?.dataPoints ?? m.sum?.dataPoints ?? m.histogram?.dataPoints ?? [];
        for (const dp of dps) out.push({ seq: Number(attrs(dp.attributes)['test.seq']), host: r['host.name'], service: r['service.name'], scope: sm.scope, metric: m, dp });
      }
    }
  }
  return out;
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function checkPoint(s: Seen): void {
  const p = makePoint(s.seq);
  const host = p.attributes[0]!.value;
  assert.equal(s.host, host);
  assert.equal(s.service, 'ringflow');
  assert.deepEqual(s.scope, { name: 'ringflow', version: SCOPE_VERSION });
  assert.equal(s.metric.name, p.name);
  assert.equal(s.metric.unit, p.unit);
  assert.equal(s.dp.startTimeUnixNano, String(p.window_start_ns));
  assert.equal(s.dp.timeUnixNano, String(p.window_end_ns));
  if (p.kind === 'HISTOGRAM') {
    const h = p.histogram!;
    assert.equal(s.metric.exponentialHistogram.aggregationTemporality, 1); // AGGREGATION_TEMPORALITY_DELTA
    assert.deepEqual(attrs(s.dp.attributes), { 'process.command': 'worker', 'test.seq': String(s.seq) });
    assert.equal(s.dp.scale, h.scale);
    assert.equal(String(s.dp.zeroCount ?? '0'), String(h.zero_count));
    assert.equal(s.dp.positive.offset ?? 0, h.positive_offset);
    assert.deepEqual(s.dp.positive.bucketCounts, h.positive_buckets.map(String));
    assert.deepEqual(s.dp.negative ?? {}, {});
    assert.equal(s.dp.count, String(h.count));
    assert.equal(s.dp.sum ?? 0, h.sum);
    assert.equal(s.dp.min ?? 0, h.min);
    assert.equal(s.dp.max, h.max);
  } else {
    assert.equal(s.metric.sum.aggregationTemporality, 1);
    assert.equal(s.metric.sum.isMonotonic, true);
    assert.equal(s.dp.asInt, String(p.sum));
    // server.port arrives as an OTLP int
    const port = s.dp.attributes.find((a: { key: string }) => a.key === 'server.port');
    assert.deepEqual(port.value, { intValue: String(8000 + s.seq) });
  }
}

test('exporter: Kafka -> OTLP gRPC -> a real collector, exact, and nothing lost while it is down', { timeout: 180_000 }, async (t) => {
  const broker = await testBrokers();
  t.after(() => broker.stop());
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-it-otelcol-'));
  const grpcPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === grpcPort) httpPort = await freePort();
  const col = await startOtelcol({ stateDir, grpcPort, httpPort });
  t.after(async () => {
    await stopOtelcol({ stateDir }).catch(() => {});
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  // our own topic and group: the suite's broker is shared with the processor's tests
  const topic = `ringflow.metrics.v1.it-${process.pid}-${Date.now()}`;
  const kafka = new Kafka({ clientId: 'ringflow-exporter-it', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  await admin.disconnect();
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const encode = (i: number) => {
    const p = makePoint(i);
    assert.ok(schema.type.isValid(p, { errorHook: (f) => assert.fail(`point ${i}: bad field ${f.join('.')}`) }));
    return { key: `series-${i % 7}`, value: encodeRecord(schema, p) };
  };
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  t.after(() => producer.disconnect());

  const N1 = 40;
  const N2 = 30;
  await producer.send({ topic, acks: -1, messages: Array.from({ length: N1 }, (_, i) => encode(i)) });
  // an aborted transaction: read_committed must never show this point
  const tx = kafka.producer({ transactionalId: `ringflow-exporter-it-${process.pid}`, idempotent: true, maxInFlightRequests: 1 });
  await tx.connect();
  const txn = await tx.transaction();
  await txn.send({ topic, messages: [encode(9999)] });
  await txn.abort();
  await tx.disconnect();

  const lines: string[] = [];
  const groupId = `ringflow-exporter-it-${process.pid}-${Date.now()}`;
  const exporter = createExporter({
    kafka: new Kafka({ clientId: 'ringflow-exporter', brokers: [broker.brokers], logLevel: logLevel.NOTHING }),
    groupId,
    topic,
    histogramMode: 'exponential',
    log: (l) => lines.push(l),
    // a plain host:port: must be dialled in plaintext
    otlp: { url: col.endpoint, timeoutMillis: 3000 },
    maxPointsPerExport: 16,
  });
  t.after(() => exporter.stop());
  await exporter.start();

  // phase 1: everything arrives, exactly as produced
  await waitFor('the first points in the collector', () => seenPoints(col.outputFile).length >= N1, 30_000);
  await sleep(500);
  let seen = seenPoints(col.outputFile);
  assert.deepEqual(seen.map((s) => s.seq).sort((a, b) => a - b), Array.from({ length: N1 }, (_, i) => i), 'each point once, the aborted one never');
  for (const s of seen) checkPoint(s);
  assert.deepEqual(new Set(seen.map((s) => s.host)), new Set(['h0', 'h1']));
  assert.equal(exporter.counters.exported, N1);
  assert.equal(exporter.counters.rejected, 0);

  // phase 2: the backend goes away; points keep coming; nothing is committed or dropped
  await stopOtelcol({ stateDir });
  await producer.send({ topic, acks: -1, messages: Array.from({ length: N2 }, (_, i) => encode(N1 + i)) });
  await waitFor('the exporter to hold and retry', () => exporter.holding() && exporter.counters.retries > 0, 15_000);
  await sleep(6000);
  assert.equal(exporter.counters.exported, N1, 'nothing exported while the collector is down');
  assert.ok(exporter.holding());
  const held = lines.filter((l) => /otlp: backend at .* unavailable \(.*\); holding \d+ points, retrying/.test(l));
  assert.ok(held.length >= 1, `logged the outage: ${lines.join('\n')}`);
  assert.ok(held.length <= 2, `logged once per kind, not per retry: ${held.join('\n')}`);

  // phase 3: the collector returns on the same port; everything arrives, once
  const restarted = Date.now();
  await startOtelcol({ stateDir, grpcPort, httpPort });
  await waitFor('the held points after the restart', () => seenPoints(col.outputFile).length >= N1 + N2, 40_000);
  const recoveredMs = Date.now() - restarted;
  await sleep(1000);
  seen = seenPoints(col.outputFile);
  assert.deepEqual(seen.map((s) => s.seq).sort((a, b) => a - b), Array.from({ length: N1 + N2 }, (_, i) => i), 'every point once: none lost, none duplicated');
  for (const s of seen) checkPoint(s);
  assert.equal(exporter.counters.exported, N1 + N2);
  assert.equal(exporter.counters.rejected, 0);
  assert.ok(!exporter.holding());
  assert.ok(lines.some((l) => /accepting again/.test(l)), lines.join('\n'));
  t.diagnostic(`recovered ${recoveredMs} ms after the restart; ${exporter.counters.retries} retries`);
  for (const l of lines) t.diagnostic(l);

  // the offsets are committed: nothing is past them, so a second exporter in the same group sends only what is new
  await exporter.stop();
  assert.deepEqual(await uncommittedRecords(broker.brokers, groupId, topic), [], 'the stopped exporter committed every point it exported');
  let resent = 0;
  const again = createExporter({
    kafka: new Kafka({ clientId: 'ringflow-exporter-2', brokers: [broker.brokers], logLevel: logLevel.NOTHING }),
    groupId, topic, histogramMode: 'exponential', log: (l) => lines.push(l),
    exporter: { export: (m, cb) => { resent += m.scopeMetrics[0]!.metrics.reduce((n, x) => n + x.dataPoints.length, 0); cb({ code: 0 }); }, shutdown: async () => {} },
  });
  await again.start();
  await producer.send({ topic, acks: -1, messages: [encode(N1 + N2)] });
  await exportedAndCommitted(broker.brokers, groupId, topic, () => resent, 30_000);
  await again.stop();
  assert.equal(resent, 1, 'a restarted exporter sends the new point and none it had sent before');
});

/**
 * Waits until a restarted exporter has sent something and committed all there
 * is: a count checked after a fixed sleep cannot tell "resent nothing" from
 * "has not joined its group yet"; once the group has committed up to the end,
 * everything the exporter was handed has been counted.
 */
async function exportedAndCommitted(brokers: string, groupId: string, topic: string, sent: () => number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (sent() < 1 || (await uncommittedRecords(brokers, groupId, topic)).length > 0) {
    if (Date.now() > deadline) throw new Error(`the restarted exporter did not send and commit a new point in ${timeoutMs / 1000} s (sent ${sent()})`);
    await sleep(250);
  }
}

test('exporter: retryable failures are retried, rejections counted and committed, not retried forever', { timeout: 120_000 }, async (t) => {
  const broker = await testBrokers();
  t.after(() => broker.stop());
  const topic = `ringflow.metrics.v1.it-reject-${process.pid}-${Date.now()}`;
  const kafka = new Kafka({ clientId: 'ringflow-exporter-it', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const N = 10;
  await producer.send({ topic, acks: -1, messages: [...Array.from({ length: N }, (_, i) => ({ value: encodeRecord(schema, makePoint(i * 4)) })), { value: Buffer.from('not avro') }] });
  await producer.disconnect();

  // a backend that is down twice, then refuses a request, then accepts all but one point of each
  let calls = 0;
  const backend: MetricExporterLike = {
    export(m, cb) {
      calls++;
      const n = m.scopeMetrics[0]!.metrics.reduce((k, x) => k + x.dataPoints.length, 0);
      if (calls <= 2) return cb({ code: 1, error: Object.assign(new Error('14 UNAVAILABLE'), { code: 14, details: 'connection refused' }) });
      if (calls === 3) return cb({ code: 1, error: Object.assign(new Error('3 INVALID_ARGUMENT'), { code: 3, details: 'bad data point' }) });
      setImmediate(() => {
        if (n > 1) diag.warn('Received Partial Success response:', JSON.stringify({ rejectedDataPoints: 1, errorMessage: 'too old' }));
        cb({ code: 0 });
      });
    },
    shutdown: async () => {},
  };
  const lines: string[] = [];
  const groupId = `ringflow-exporter-it-reject-${process.pid}-${Date.now()}`;
  const opts = { kafka, groupId, topic, histogramMode: 'exponential' as const, log: (l: string) => lines.push(l), maxPointsPerExport: 4, initialBackoffMs: 50 };
  const exporter = createExporter({ ...opts, exporter: backend });
  t.after(() => exporter.stop());
  await exporter.start();
  const c = exporter.counters;
  await waitFor('every point settled', () => c.exported + c.rejected >= N && c.undecodable === 1, 30_000);
  await exporter.stop();
  assert.equal(c.exported + c.rejected, N);
  assert.equal(c.retries, 2);
  assert.ok(c.rejected >= 2, `the refused request and a partial rejection: ${JSON.stringify(c)}`);
  assert.equal(lines.filter((l) => /unavailable \(UNAVAILABLE: connection refused\); holding \d+ points, retrying/.test(l)).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => /rejected \d+ points \(INVALID_ARGUMENT: bad data point\); counted, not retried/.test(l)).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => /rejected 1 of \d+ points \(too old\)/.test(l)).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => /does not decode/.test(l)).length, 1, lines.join('\n'));

  // all committed, the undecodable record and the rejected points too: the same group starts past them
  assert.deepEqual(await uncommittedRecords(broker.brokers, groupId, topic), [], 'every record committed');
  let resent = 0;
  const again = createExporter({ ...opts, exporter: { export: (_m, cb) => { resent++; cb({ code: 0 }); }, shutdown: async () => {} } });
  await again.start();
  const more = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await more.connect();
  await more.send({ topic, acks: -1, messages: [{ value: encodeRecord(schema, makePoint(N * 4)) }] });
  await more.disconnect();
  await exportedAndCommitted(broker.brokers, groupId, topic, () => resent, 30_000);
  await again.stop();
  assert.equal(resent, 1, 'one export request, of the new point only');
});
