/**
 * The trace exporter on real parts: the suite's Kafka broker, hand-built span
 * records (encodeSpan, as the processor writes them) produced through a
 * transaction (plus an aborted one that read_committed must hide), and a real
 * OpenTelemetry Collector (cli/otelcol.ts: OTLP gRPC receiver -> file
 * exporter) whose JSON lines we check field by field.
 *
 * Then the collector is stopped for ~15 s while more spans are produced: the
 * exporter must say the backend is unavailable, hold and retry them (not
 * commit, not drop), and after the collector restarts on the same port every
 * span must be in the file exactly once (span ids are unique; the file is
 * appended across restarts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import kafkajs from '../../kafka/kafkajs.ts';
import { startOtelcol, stopOtelcol, readOtlpFile } from '../../cli/otelcol.ts';
import { encodeSpan, type Span } from '../../processor/spans.ts';
import { createTraceExporter } from '../../exporter/service.ts';
import { SCOPE_VERSION } from '../../exporter/otlp.ts';
import { testBrokers, freePort, sleep, uncommittedRecords } from '../support/integration.ts';

const { Kafka, logLevel } = kafkajs;
const T0 = 1_732_590_000_000_000_000n + 123_456_789n; // beyond 2^53: must arrive exact
const KINDS = ['SERVER', 'CLIENT', 'INTERNAL'] as const;
const SERVICES = ['nginx', 'curl', 'postgres'];

const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

/** Span i: three kinds, three services on two hosts, every third an error, some with parents. */
function makeSpan(i: number): Span {
  const kind = KINDS[i % 3]!;
  const start = T0 + BigInt(i) * 1_000_000_007n;
  const error = i % 3 === 2;
  const attributes: Record<string, string> = {
    'http.request.method': 'GET',
    'http.response.status_code': error ? '503' : '200',
    'server.port': String(8000 + i),
    'process.pid': String(1000 + i),
    'url.path': `/items/${i}`,
    'service.name': SERVICES[i % 3]!,
    'host.name': `h${i % 2}`,
  };
  if (i % 4 === 1) attributes['ringflow.truncated'] = 'true';
  return {
    key: `tcp|10.0.0.1:${40000 + i}|10.0.0.2:8080`,
    trace_id: `${hex(0xabc, 16)}${hex(i + 1, 16)}`,
    span_id: hex(0x1000 + i, 16),
    parent_span_id: i % 2 === 0 ? hex(0x9000 + i, 16) : null,
    trace_state: i % 5 === 0 ? `rojo=${hex(i, 16)},congo=t61rcWkgMzE` : null,
    trace_flags: i % 7 === 3 ? 0 : 1,
    name: `GET /items/{id}`,
    kind,
    start_ns: start,
    end_ns: start + BigInt(1000 + i * 37),
    status: error ? 'ERROR' : 'UNSET',
    status_message: error ? `upstream ${i} failed` : null,
    attributes,
    service_name: SERVICES[i % 3]!,
    host: `h${i % 2}`,
    protocol: 'HTTP1',
  };
}

const attrValue = (v: Record<string, unknown>) =>
  v.stringValue ?? (v.intValue !== undefined ? { int: Number(v.intValue) } : v.boolValue !== undefined ? { bool: v.boolValue } : v);
const attrs = (list: { key: string; value: Record<string, unknown> }[] = []): Record<string, unknown> => Object.fromEntries(list.map((a) => [a.key, attrValue(a.value)]));

interface Seen { resource: Record<string, unknown>; scope: unknown; span: any }

/** Every span in the collector's file, with its resource. */
function seenSpans(file: string): Seen[] {
  const out: Seen[] = [];
  for (const rs of readOtlpFile(file).traces) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) out.push({ resource, scope: ss.scope, span });
  }
  return out;
}

/** Index of the span a seen span was made from (by its unique span id). */
const indexOf = (s: Seen) => parseInt(s.span.spanId, 16) - 0x1000;

function checkSpan(s: Seen): void {
  const i = indexOf(s);
  const want = makeSpan(i);
  const o = s.span;
  // the observed process is the Resource: its service.name, host and pid (issue 10)
  assert.deepEqual(s.resource, { 'service.name': want.service_name, 'host.name': want.host, 'process.pid': { int: 1000 + i } }, `span ${i}: resource`);
  assert.deepEqual(s.scope, { name: 'ringflow', version: SCOPE_VERSION });
  assert.equal(o.traceId, want.trace_id);
  assert.equal(o.spanId, want.span_id);
  assert.equal(o.parentSpanId || null, want.parent_span_id, `span ${i}: parent`);
  assert.equal(o.traceState || null, want.trace_state, `span ${i}: trace state`);
  // W3C flags in the low byte, plus HAS_IS_REMOTE (0x100) and, for a server span's parent, IS_REMOTE (0x200)
  const remote = want.parent_span_id !== null && want.kind === 'SERVER' ? 0x200 : 0;
  assert.equal(o.flags, want.trace_flags | 0x100 | remote, `span ${i}: flags`);
  assert.equal(o.name, want.name);
  assert.equal(o.kind, { INTERNAL: 1, SERVER: 2, CLIENT: 3 }[want.kind], `span ${i}: kind`);
  assert.equal(o.startTimeUnixNano, String(want.start_ns), `span ${i}: start`);
  assert.equal(o.endTimeUnixNano, String(want.end_ns), `span ${i}: end`);
  if (want.status === 'ERROR') assert.deepEqual(o.status, { code: 2, message: want.status_message });
  else assert.deepEqual(o.status ?? {}, {});
  const typed: Record<string, unknown> = {
    'http.request.method': 'GET',
    'http.response.status_code': { int: Number(want.attributes['http.response.status_code']) },
    'server.port': { int: 8000 + i },
    'url.path': `/items/${i}`,
  };
  if (want.attributes['ringflow.truncated']) typed['ringflow.truncated'] = { bool: true };
  assert.deepEqual(attrs(o.attributes), typed, `span ${i}: attributes`);
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

const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);

test('trace exporter: Kafka spans -> OTLP gRPC -> a real collector, exact, and nothing lost or doubled while it is down', { timeout: 120_000 }, async (t) => {
  const broker = await testBrokers();
  t.after(() => broker.stop());
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-it-traces-'));
  const grpcPort = await freePort();
  let httpPort = await freePort();
  while (httpPort === grpcPort) httpPort = await freePort();
  const col = await startOtelcol({ stateDir, grpcPort, httpPort });
  t.after(async () => {
    await stopOtelcol({ stateDir }).catch(() => {});
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  // our own topic and group: the suite's broker is shared
  const topic = `ringflow.spans.v1.it-${process.pid}-${Date.now()}`;
  const kafka = new Kafka({ clientId: 'ringflow-traces-it', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  await admin.disconnect();
  const producer = kafka.producer({ transactionalId: `ringflow-traces-it-${process.pid}-${Date.now()}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  t.after(() => producer.disconnect());
  const produce = async (indices: number[], abort = false) => {
    const txn = await producer.transaction();
    await txn.send({ topic, messages: indices.map((i) => encodeSpan(makeSpan(i))) });
    await (abort ? txn.abort() : txn.commit());
  };

  const N1 = 30;
  const N2 = 24;
  await produce(range(0, N1));
  await produce([9999], true); // read_committed never shows it

  const lines: string[] = [];
  const groupId = `ringflow-exporter-traces-it-${process.pid}-${Date.now()}`;
  const exporter = createTraceExporter({
    kafka: new Kafka({ clientId: 'ringflow-exporter-traces', brokers: [broker.brokers], logLevel: logLevel.NOTHING }),
    groupId,
    topic,
    log: (l) => lines.push(l),
    // a plain host:port: must be dialled in plaintext
    otlp: { url: col.endpoint, timeoutMillis: 3000 },
    maxSpansPerExport: 8,
  });
  t.after(() => exporter.stop());
  await exporter.start();

  // phase 1: every span arrives, exactly as produced
  await waitFor('the first spans in the collector', () => seenSpans(col.outputFile).length >= N1, 30_000);
  await sleep(500);
  let seen = seenSpans(col.outputFile);
  assert.deepEqual(seen.map(indexOf).sort((a, b) => a - b), range(0, N1), 'each span once, the aborted one never');
  for (const s of seen) checkSpan(s);
  assert.equal(new Set(seen.map((s) => `${s.resource['service.name']} ${s.resource['host.name']}`)).size, 6, 'three services on two hosts');
  assert.deepEqual(exporter.counters, { exported: N1, rejected: 0, retries: 0, possibleDuplicates: 0, undecodable: 0 });

  // phase 2: the backend goes away for ~15 s while spans keep coming
  const down = Date.now();
  await stopOtelcol({ stateDir });
  await produce(range(N1, N2));
  await waitFor('the exporter to hold and retry', () => exporter.holding() && exporter.counters.retries > 0, 15_000);
  await sleep(Math.max(0, 15_000 - (Date.now() - down)));
  assert.equal(exporter.counters.exported, N1, 'nothing exported while the collector is down');
  assert.ok(exporter.holding());
  const held = lines.filter((l) => /otlp: backend at .* unavailable \(.*\); holding \d+ spans, retrying/.test(l));
  assert.ok(held.length >= 1, `said the backend is unavailable: ${lines.join('\n')}`);
  assert.ok(held.length <= 2, `once per kind, not per retry: ${held.join('\n')}`);

  // phase 3: the collector returns on the same port; every span arrives, once
  await startOtelcol({ stateDir, grpcPort, httpPort });
  await waitFor('the held spans after the restart', () => seenSpans(col.outputFile).length >= N1 + N2, 30_000);
  await sleep(1000);
  seen = seenSpans(col.outputFile);
  assert.deepEqual(seen.map(indexOf).sort((a, b) => a - b), range(0, N1 + N2), 'every span once: none lost, none doubled');
  for (const s of seen) checkSpan(s);
  assert.equal(exporter.counters.exported, N1 + N2);
  assert.equal(exporter.counters.rejected, 0);
  assert.ok(!exporter.holding());
  assert.ok(lines.some((l) => /accepting again after .*; delivering the \d+ held spans/.test(l)), lines.join('\n'));
  t.diagnostic(`collector down ${((Date.now() - down) / 1000).toFixed(1)} s; ${exporter.counters.retries} retries`);
  for (const l of lines) t.diagnostic(l);

  // the offsets are committed: nothing is past them, so the same group, started again, sends only what is new
  await exporter.stop();
  assert.deepEqual(await uncommittedRecords(broker.brokers, groupId, topic), [], 'the stopped exporter committed every span it exported');
  let resent = 0;
  const again = createTraceExporter({
    kafka: new Kafka({ clientId: 'ringflow-exporter-traces-2', brokers: [broker.brokers], logLevel: logLevel.NOTHING }),
    groupId, topic, log: (l) => lines.push(l),
    exporter: { export: (spans, cb) => { resent += spans.length; cb({ code: 0 }); }, shutdown: async () => {} },
  });
  await again.start();
  // a count after a fixed sleep is also what an exporter that has not fetched yet gives:
  // hand it one new span and wait until its group has committed to the end again
  await produce([N1 + N2]);
  const deadline = Date.now() + 30_000;
  while (resent < 1 || (await uncommittedRecords(broker.brokers, groupId, topic)).length > 0) {
    assert.ok(Date.now() < deadline, `the restarted exporter did not send and commit the new span in 30 s (sent ${resent})`);
    await sleep(250);
  }
  await again.stop();
  assert.equal(resent, 1, 'a restarted exporter sends the new span and none it had sent before');
});
