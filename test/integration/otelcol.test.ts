/**
 * Integration test for the local OpenTelemetry Collector tooling
 * (cli/otelcol.ts): build (or reuse) the binary, start it on free ports in a
 * temporary state dir, push one OTLP/gRPC metrics export (a Sum and an
 * ExponentialHistogram) with the real JS exporter, read it back from the file
 * exporter's JSON lines, then stop, restart on the same port and export again
 * with the same exporter (it must reconnect).
 *
 * Needs Go the first time (cold build: ~2 min); a few seconds once cached.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ValueType } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import {
  ensureOtelcolBuilt,
  otelcolCommand,
  otelcolStatus,
  readOtlpFile,
  startOtelcol,
  stopOtelcol,
  waitForOtlp,
  type OtlpFile,
} from '../../cli/otelcol.ts';
import { freePort } from '../support/integration.ts';

const SUM_NAME = 'ringflow.test.bytes';
const HIST_NAME = 'ringflow.test.latency';

/** One ResourceMetrics with a cumulative monotonic int Sum and a delta ExponentialHistogram; `run` tags both. */
function resourceMetrics(run: string): ResourceMetrics {
  const start: [number, number] = [1_760_000_000, 0];
  const end: [number, number] = [1_760_000_010, 500];
  return {
    resource: resourceFromAttributes({ 'service.name': 'ringflow-otelcol-test', 'host.name': 'h1' }),
    scopeMetrics: [
      {
        scope: { name: 'ringflow.test', version: '1.2.3' },
        metrics: [
          {
            descriptor: { name: SUM_NAME, description: 'bytes seen', unit: 'By', valueType: ValueType.INT },
            aggregationTemporality: AggregationTemporality.CUMULATIVE,
            dataPointType: DataPointType.SUM,
            isMonotonic: true,
            dataPoints: [{ startTime: start, endTime: end, attributes: { run, 'dev.major': 8, dir: 'read' }, value: 42 }],
          },
          {
            descriptor: { name: HIST_NAME, description: 'run queue latency', unit: 'ns', valueType: ValueType.DOUBLE },
            aggregationTemporality: AggregationTemporality.DELTA,
            dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM,
            dataPoints: [
              {
                startTime: start,
                endTime: end,
                attributes: { run, comm: 'kworker' },
                value: {
                  count: 6,
                  sum: 21.5,
                  min: 0,
                  max: 10,
                  scale: 2,
                  zeroCount: 1,
                  positive: { offset: -1, bucketCounts: [1, 2, 0, 2] },
                  negative: { offset: 0, bucketCounts: [] },
                },
              },
            ],
          },
        ],
      },
    ],
  };
}

function exportOnce(exporter: OTLPMetricExporter, rm: ResourceMetrics): Promise<ExportResult> {
  return new Promise((resolve) => exporter.export(rm, resolve));
}

/** OTLP JSON attribute list → plain object ({ key: stringValue | intValue | ... }). */
function attrs(list: { key: string; value: Record<string, unknown> }[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((a) => [a.key, Object.values(a.value)[0]]));
}

/** Every metric named `name` whose first data point has attribute run=`run`, with its resource and scope. */
function findMetric(data: OtlpFile, name: string, run: string): { resource: any; scope: any; metric: any }[] {
  const found: { resource: any; scope: any; metric: any }[] = [];
  for (const rm of data.metrics) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const metric of sm.metrics ?? []) {
        const dp = (metric.sum ?? metric.exponentialHistogram ?? metric.gauge ?? metric.histogram)?.dataPoints?.[0];
        if (metric.name === name && attrs(dp?.attributes).run === run) found.push({ resource: rm.resource, scope: sm.scope, metric });
      }
    }
  }
  return found;
}

const hasRun = (run: string) => (data: OtlpFile) => findMetric(data, SUM_NAME, run).length > 0 && findMetric(data, HIST_NAME, run).length > 0;

describe('local OpenTelemetry Collector (cli/otelcol.ts)', { timeout: 600_000 }, () => {
  let stateDir = '';
  let grpcPort = 0;
  let httpPort = 0;
  let outputFile = '';
  let exporter: OTLPMetricExporter | undefined;
  const logs: string[] = [];
  const log = (m: string) => logs.push(m);

  before(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-otelcol-test-'));
    grpcPort = await freePort();
    do httpPort = await freePort();
    while (httpPort === grpcPort);
    // The only slow step, and only on a machine that never built it (~2 min).
    await ensureOtelcolBuilt({ log });
  });

  after(async () => {
    await exporter?.shutdown().catch(() => {});
    await stopOtelcol({ stateDir }).catch(() => {});
    if (process.env.RINGFLOW_KEEP_TEST_STATE) console.log(`state kept in ${stateDir}`);
    else fs.rmSync(stateDir, { recursive: true, force: true });
  });

  test('starts, is idempotent, and reports its status', async () => {
    const r = await startOtelcol({ stateDir, grpcPort, httpPort, log });
    assert.equal(r.alreadyRunning, false);
    assert.equal(r.endpoint, `localhost:${grpcPort}`);
    assert.equal(r.outputFile, path.join(stateDir, 'otlp.jsonl'));
    assert.ok(r.pid > 0);
    outputFile = r.outputFile;
    assert.ok(fs.readFileSync(path.join(stateDir, 'otelcol.pid'), 'utf8').startsWith(String(r.pid)));

    const again = await startOtelcol({ stateDir, grpcPort });
    assert.equal(again.alreadyRunning, true);
    assert.equal(again.pid, r.pid);
    await assert.rejects(startOtelcol({ stateDir, grpcPort: grpcPort === 65535 ? 65534 : grpcPort + 1 }), /already running .*stop it first/);

    const s = await otelcolStatus({ stateDir });
    assert.deepEqual([s.running, s.pid, s.endpoint], [true, r.pid, `localhost:${grpcPort}`]);
    assert.equal(await otelcolCommand(['status', '--state-dir', stateDir]), 0);
  });

  test('a second collector on a taken port fails with cause and fix', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-otelcol-test-other-'));
    try {
      await assert.rejects(startOtelcol({ stateDir: other, grpcPort, log }), /gRPC port 127\.0\.0\.1:\d+ is already in use .*--grpc-port/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('an OTLP/gRPC metrics export lands in the file as OTLP JSON', async () => {
    exporter = new OTLPMetricExporter({ url: `http://localhost:${grpcPort}`, timeoutMillis: 10_000 });
    const res = await exportOnce(exporter, resourceMetrics('first'));
    assert.equal(res.code, ExportResultCode.SUCCESS, `export failed: ${res.error?.message}`);

    const data = await waitForOtlp(outputFile, hasRun('first'), 10_000);
    const [sum] = findMetric(data, SUM_NAME, 'first');
    assert.ok(sum);
    assert.deepEqual(attrs(sum.resource.attributes), { 'service.name': 'ringflow-otelcol-test', 'host.name': 'h1' });
    assert.equal(sum.scope.name, 'ringflow.test');
    assert.equal(sum.scope.version, '1.2.3');
    assert.equal(sum.metric.unit, 'By');
    assert.equal(sum.metric.description, 'bytes seen');
    assert.equal(sum.metric.sum.aggregationTemporality, 2); // AGGREGATION_TEMPORALITY_CUMULATIVE
    assert.equal(sum.metric.sum.isMonotonic, true);
    const sdp = sum.metric.sum.dataPoints[0];
    assert.equal(sum.metric.sum.dataPoints.length, 1);
    assert.equal(sdp.asInt, '42'); // OTLP JSON: 64-bit integers are strings
    assert.deepEqual(attrs(sdp.attributes), { run: 'first', 'dev.major': '8', dir: 'read' });
    assert.equal(sdp.startTimeUnixNano, '1760000000000000000');
    assert.equal(sdp.timeUnixNano, '1760000010000000500');

    const [hist] = findMetric(data, HIST_NAME, 'first');
    assert.ok(hist);
    assert.equal(hist.metric.unit, 'ns');
    const eh = hist.metric.exponentialHistogram;
    assert.equal(eh.aggregationTemporality, 1); // AGGREGATION_TEMPORALITY_DELTA
    const hdp = eh.dataPoints[0];
    assert.deepEqual(attrs(hdp.attributes), { run: 'first', comm: 'kworker' });
    assert.equal(hdp.scale, 2);
    assert.equal(hdp.count, '6');
    assert.equal(hdp.sum, 21.5);
    assert.equal(hdp.zeroCount, '1');
    assert.equal(hdp.min, 0);
    assert.equal(hdp.max, 10);
    assert.equal(hdp.positive.offset, -1);
    assert.deepEqual(hdp.positive.bucketCounts, ['1', '2', '0', '2']);
    assert.deepEqual(hdp.negative?.bucketCounts ?? [], []);
  });

  test('OTLP/HTTP traces land in the same file', async () => {
    const s = await otelcolStatus({ stateDir });
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'ringflow-otelcol-test' } }] },
          scopeSpans: [
            {
              spans: [
                {
                  traceId: '5b8efff798038103d269b633813fc60c',
                  spanId: 'eee19b7ec3c1b174',
                  name: 'tcp.connect',
                  kind: 3,
                  startTimeUnixNano: '1760000000000000000',
                  endTimeUnixNano: '1760000000000250000',
                },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(`${s.httpEndpoint}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.text());
    const data = await waitForOtlp(outputFile, (d) => d.traces.length > 0, 10_000);
    const span = data.traces[0].scopeSpans[0].spans[0];
    assert.equal(span.name, 'tcp.connect');
    assert.equal(span.traceId, '5b8efff798038103d269b633813fc60c');
  });

  test('stop, restart on the same port, export again with the same exporter: both runs are in the file', async () => {
    const stopped = await stopOtelcol({ stateDir });
    assert.equal(stopped.stopped, true);
    assert.equal(stopped.killed, false);
    assert.equal((await otelcolStatus({ stateDir })).running, false);
    assert.equal(await otelcolCommand(['status', '--state-dir', stateDir]), 3);
    assert.equal((await stopOtelcol({ stateDir })).stopped, false); // stopping twice is fine

    // No ports given: a restart reuses the previous start's.
    const r = await startOtelcol({ stateDir, log });
    assert.equal(r.alreadyRunning, false);
    assert.equal(r.endpoint, `localhost:${grpcPort}`);
    assert.equal(r.httpEndpoint, `http://localhost:${httpPort}`);

    assert.ok(exporter);
    let res = await exportOnce(exporter, resourceMetrics('second'));
    // gRPC may report the channel's old failure once before it reconnects.
    for (let i = 0; i < 10 && res.code !== ExportResultCode.SUCCESS; i++) {
      await new Promise((done) => setTimeout(done, 500));
      res = await exportOnce(exporter, resourceMetrics('second'));
    }
    assert.equal(res.code, ExportResultCode.SUCCESS, `export after restart failed: ${res.error?.message}`);

    const data = await waitForOtlp(outputFile, (d) => hasRun('first')(d) && hasRun('second')(d), 10_000);
    assert.equal(findMetric(data, SUM_NAME, 'first').length, 1, 'the first run is kept (append)');
    assert.ok(findMetric(data, HIST_NAME, 'second').length >= 1);
    assert.equal(data.traces.length, 1);

    assert.equal((await stopOtelcol({ stateDir })).stopped, true);
    // Whatever was flushed on shutdown is still readable.
    assert.ok(hasRun('second')(readOtlpFile(outputFile)));
  });
});
