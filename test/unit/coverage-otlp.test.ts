/**
 * Issue 9 item 7, the exporter's half of coverage: a ringflow.collector.coverage
 * point of metrics.v1 (kind GAUGE) goes to OTLP as a Gauge of doubles, unit
 * "1", start = window start, time = window end, host.name on the Resource and
 * signal on the point; 1 and 0 are exported like any other value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ValueType } from '@opentelemetry/api';
import { DataPointType } from '@opentelemetry/sdk-metrics';
import { JsonMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { encodeRecord, decodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { toResourceMetrics, type MetricPoint } from '../../exporter/otlp.ts';
import { coverageRecord, COVERAGE_METRIC } from '../../processor/aggregate.ts';

const T0 = 1_732_590_000_123_456_789n; // beyond 2^53: must stay exact
const T1 = T0 + 2_000_000_000n;
const RUNQ = 'ringflow.sched.runqlat.v1';

const point = (host: string, fraction: number): MetricPoint => {
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const rec = coverageRecord({ host, signal: RUNQ, startNs: T0, endNs: T1, fraction, processor: 'p' });
  return decodeRecord(encodeRecord(schema, rec)).value as unknown as MetricPoint;
};

test('coverage -> OTLP: a Gauge of doubles per host, window start and end, signal on the point; 1 and 0 exported too', () => {
  const out = toResourceMetrics([point('h1', 1), point('h1', 0.25), point('h2', 0)], { histogramMode: 'exponential', resource: { 'service.name': 'ringflow' } });
  assert.deepEqual(out.invalid, []);
  assert.deepEqual(out.resources.map((r) => [r.host, r.points]), [['h1', 2], ['h2', 1]]);
  const h1 = out.resources[0]!.metrics;
  assert.equal(h1.resource.attributes['host.name'], 'h1');
  const metrics = h1.scopeMetrics[0]!.metrics;
  assert.equal(metrics.length, 1);
  const m = metrics[0]!;
  assert.equal(m.descriptor.name, COVERAGE_METRIC);
  assert.equal(m.descriptor.unit, '1');
  assert.equal(m.descriptor.valueType, ValueType.DOUBLE);
  assert.equal(m.dataPointType, DataPointType.GAUGE);
  assert.deepEqual(m.dataPoints.map((p) => [p.startTime, p.endTime, p.attributes, p.value]), [
    [[1_732_590_000, 123_456_789], [1_732_590_002, 123_456_789], { signal: RUNQ }, 1],
    [[1_732_590_000, 123_456_789], [1_732_590_002, 123_456_789], { signal: RUNQ }, 0.25],
  ]);
  // as the OTLP request carries it: a gauge with double values and exact ns times
  const req = JSON.parse(new TextDecoder().decode(JsonMetricsSerializer.serializeRequest(h1))) as {
    resourceMetrics: { scopeMetrics: { metrics: { name: string; unit: string; gauge?: { dataPoints: { asDouble?: number; startTimeUnixNano: string; timeUnixNano: string }[] } }[] }[] }[];
  };
  const g = req.resourceMetrics[0]!.scopeMetrics[0]!.metrics[0]!;
  assert.equal(g.name, COVERAGE_METRIC);
  assert.equal(g.unit, '1');
  assert.ok(g.gauge, JSON.stringify(g));
  assert.deepEqual(g.gauge.dataPoints.map((d) => [d.asDouble ?? 0, String(d.startTimeUnixNano), String(d.timeUnixNano)]), [
    [1, String(T0), String(T1)],
    [0.25, String(T0), String(T1)],
  ]);
});

test('coverage -> OTLP: a GAUGE point without a finite gauge is invalid, not exported', () => {
  const p = point('h1', 1);
  for (const g of [null, undefined, Number.NaN]) {
    const out = toResourceMetrics([{ ...p, gauge: g }], { histogramMode: 'exponential', resource: {} });
    assert.equal(out.resources.length, 0);
    assert.match(out.invalid[0]!.reason, /GAUGE without a finite gauge/);
  }
});
