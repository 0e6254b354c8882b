/**
 * Issue 9, soak findings 2 and 3: the exporter survives a broker that goes
 * away and comes back, on a real broker stopped and started again on the same
 * state dir and port, and a real OpenTelemetry Collector.
 *
 * - finding 3: the exporter starts while the broker is down (as when it was
 *   restarted just before the broker went): its start waits for the broker
 *   instead of failing with "cannot consume ... ECONNREFUSED", and exports
 *   what was produced before and after.
 * - `ringflow export` waiting for its topic (the processor creates it) while
 *   the broker restarts: it waits for the broker too, instead of exiting 5.
 * - a running exporter whose broker goes down for ~15 s exports what is
 *   produced after the broker is back, without escalating. (This one passed
 *   before the fix too: kafkajs restarts a consumer whose crash has a
 *   retriable cause, as ECONNREFUSED has; it guards "an exporter that is alive
 *   resumes" now that superviseConsumer restarts consumers itself.
 *   broker-restart-consumer.test.ts has the crash kafkajs does not restart.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import kafkajs from '../../kafka/kafkajs.ts';
import { createKafkaClient } from '../../kafka/client.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { startOtelcol, stopOtelcol, readOtlpFile, type OtelcolStartResult } from '../../cli/otelcol.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { createExporter, METRICS_TOPIC, type Exporter } from '../../exporter/service.ts';
import type { MetricPoint } from '../../exporter/otlp.ts';
import type { FatalError } from '../../common/errors.ts';
import { ownBroker, freePort, sleep, runCli } from '../support/integration.ts';

const { Kafka, logLevel } = kafkajs;
const T0 = 1_732_590_000_000_000_000n;

let broker: Awaited<ReturnType<typeof ownBroker>>;
let col: OtelcolStartResult;
let colDir: string;

before(async () => {
  broker = await ownBroker();
  colDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-it-brokerrestart-'));
  const grpcPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === grpcPort) httpPort = await freePort();
  col = await startOtelcol({ stateDir: colDir, grpcPort, httpPort });
});

after(async () => {
  await stopOtelcol({ stateDir: colDir }).catch(() => {});
  fs.rmSync(colDir, { recursive: true, force: true });
  await broker.stop();
});

const stopKafka = () => stopBroker({ stateDir: broker.stateDir });
const startKafka = () => startBroker({ stateDir: broker.stateDir, port: broker.port, controllerPort: broker.controllerPort });

function makePoint(name: string, i: number): MetricPoint {
  return {
    name, unit: '{event}', kind: 'SUM',
    attributes: [{ key: 'host.name', value: 'h0' }, { key: 'test.seq', value: String(i) }],
    window_start_ns: T0 + BigInt(i) * 10_000_000_000n, window_end_ns: T0 + BigInt(i + 1) * 10_000_000_000n,
    histogram: null, sum: BigInt(i + 1), late_events: 0n, dropped_inputs: 0n, processor: 'it',
  };
}

/** The distinct test.seq of every point named `name` in the collector's file. */
function seqsOf(name: string): Set<number> {
  const out = new Set<number>();
  for (const rm of readOtlpFile(col.outputFile).metrics) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        if (m.name !== name) continue;
        for (const dp of m.sum?.dataPoints ?? []) out.add(Number(dp.attributes?.find((a: { key: string }) => a.key === 'test.seq')?.value?.stringValue));
      }
    }
  }
  return out;
}

async function waitFor(what: string, fn: () => boolean, timeoutMs: number, lines: string[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; exporter said:\n${lines.join('\n')}`);
    await sleep(200);
  }
}

/** A topic of our own with `n` points in it, and a producer for more. */
async function topicWith(name: string, n: number, pointName = name) {
  const topic = name === METRICS_TOPIC ? name : `ringflow.metrics.v1.${name}-${process.pid}`;
  const kafka = new Kafka({ clientId: 'it-broker-restart', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const produce = async (from: number, count: number) => {
    // a fresh producer each time: the broker may have restarted since the last
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: Array.from({ length: count }, (_, i) => ({ key: `k${from + i}`, value: encodeRecord(schema, makePoint(pointName, from + i)) })) });
    await producer.disconnect();
  };
  await produce(0, n);
  return { topic, produce };
}

function exporterOn(topic: string, name: string, lines: string[]): { exporter: Exporter; fatal: () => FatalError | undefined } {
  let fatal: FatalError | undefined;
  const exporter = createExporter({
    // the exporter command's client (its retries and timeouts), not a test-tuned one
    kafka: createKafkaClient([broker.brokers], 'ringflow-exporter'),
    groupId: `ringflow-exporter-${name}-${process.pid}`,
    topic,
    histogramMode: 'exponential',
    log: (l) => lines.push(l),
    otlp: { url: col.endpoint },
    initialBackoffMs: 100,
    maxBackoffMs: 1000,
  });
  void exporter.failed.then((e) => (fatal = e));
  return { exporter, fatal: () => fatal };
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

test('an exporter started while the broker is down waits for it, then exports everything (finding 3)', { timeout: 180_000 }, async (t) => {
  const name = 'rf.it.start-down';
  const { topic, produce } = await topicWith(name, 10);
  const lines: string[] = [];
  const { exporter, fatal } = exporterOn(topic, name, lines);
  t.after(() => exporter.stop());

  await stopKafka();
  let startErr: unknown;
  let started = false;
  const starting = exporter.start().then(() => (started = true), (err) => (startErr = err));
  await sleep(8000); // several failed connects: each kafkajs connect gives up after 3 retries
  const restartAt = Date.now();
  await startKafka();
  await starting;
  assert.equal(startErr, undefined, `start failed: ${String(startErr)}\n${lines.join('\n')}`);
  assert.ok(started);
  t.diagnostic(`started ${((Date.now() - restartAt) / 1000).toFixed(1)} s after the broker was back`);

  await produce(10, 10);
  await waitFor('all 20 points at the collector', () => seqsOf(name).size >= 20, 90_000, lines);
  assert.deepEqual([...seqsOf(name)].sort((a, b) => a - b), range(0, 20));
  assert.equal(fatal(), undefined, lines.join('\n'));
});

test('a running exporter whose broker restarts (~15 s down) goes on exporting, without escalating (findings 2 and 3)', { timeout: 240_000 }, async (t) => {
  const name = 'rf.it.running-down';
  const { topic, produce } = await topicWith(name, 10);
  const lines: string[] = [];
  const { exporter, fatal } = exporterOn(topic, name, lines);
  t.after(() => exporter.stop());
  await exporter.start();
  await waitFor('the first 10 points at the collector', () => seqsOf(name).size >= 10, 60_000, lines);

  await stopKafka();
  await sleep(15_000);
  assert.equal(fatal(), undefined, `escalated while the broker was down:\n${lines.join('\n')}`);
  await startKafka();

  await produce(10, 10);
  await waitFor('all 20 points at the collector', () => seqsOf(name).size >= 20, 120_000, lines);
  assert.deepEqual([...seqsOf(name)].sort((a, b) => a - b), range(0, 20));
  assert.equal(fatal(), undefined, lines.join('\n'));
  t.diagnostic(lines.join(' | '));
});

test('ringflow export waiting for its topic rides out a broker restart, then exports it', { timeout: 180_000 }, async (t) => {
  const name = 'rf.it.cli-wait';
  const cli = runCli(['export', '--brokers', broker.brokers, '--signals', 'metrics', '--group-id', `ringflow-exporter-cli-${process.pid}`], {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://${col.endpoint}`, RINGFLOW_KAFKA_LOG: '' },
  });
  t.after(() => {
    if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
  });
  await cli.waitFor(/waiting for ringflow\.metrics\.v1/, 60_000);
  await stopKafka();
  await sleep(8000); // listTopics fails meanwhile (ECONNREFUSED, after kafkajs's own retries)
  assert.equal(cli.child.exitCode, null, `ringflow export exited while the broker was down:\n${cli.stderr()}`);
  await startKafka();
  await topicWith(METRICS_TOPIC, 10, name);
  await waitFor('the 10 points at the collector', () => seqsOf(name).size >= 10, 90_000, [cli.stderr()]);
  assert.deepEqual([...seqsOf(name)].sort((a, b) => a - b), range(0, 10));
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exit, 0, cli.stderr());
  t.diagnostic(cli.stderr().trim().split('\n').join(' | '));
});
