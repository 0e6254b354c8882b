/**
 * The exporter's own counters as OTLP: cumulative monotonic sums per signal,
 * possible_duplicates among them (issue 9, item 8: retries after a timeout
 * may duplicate, and that count must reach the backend).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import { ownMetrics, OWN_METRICS } from '../../exporter/self-metrics.ts';
import { nsToHrTime } from '../../exporter/otlp.ts';

test('ownMetrics: one cumulative monotonic sum per counter, one point per signal', () => {
  const start = 1_732_590_000_000_000_000n;
  const now = start + 30_000_000_000n;
  const rm = ownMetrics([
    { signal: 'metrics', counters: { exported: 300, rejected: 1, retries: 4, possibleDuplicates: 25, undecodable: 2 } },
    { signal: 'traces', counters: { exported: 7, rejected: 0, retries: 0, possibleDuplicates: 0, undecodable: 0 } },
  ], { 'service.name': 'ringflow', 'host.name': 'x' }, start, now);
  assert.deepEqual(rm.resource.attributes, { 'service.name': 'ringflow', 'host.name': 'x' });
  const metrics = rm.scopeMetrics[0]!.metrics;
  assert.deepEqual(metrics.map((m) => m.descriptor.name), OWN_METRICS.map((m) => m.name));
  const values = Object.fromEntries(metrics.map((m) => {
    assert.equal(m.dataPointType, DataPointType.SUM);
    assert.equal(m.aggregationTemporality, AggregationTemporality.CUMULATIVE);
    assert.equal((m as { isMonotonic?: boolean }).isMonotonic, true);
    for (const d of m.dataPoints) assert.deepEqual([d.startTime, d.endTime], [nsToHrTime(start), nsToHrTime(now)]);
    return [m.descriptor.name, m.dataPoints.map((d) => [d.attributes.signal, d.value])];
  }));
  assert.deepEqual(values, {
    'ringflow.exporter.exported': [['metrics', 300], ['traces', 7]],
    'ringflow.exporter.rejected': [['metrics', 1], ['traces', 0]],
    'ringflow.exporter.undecodable': [['metrics', 2], ['traces', 0]],
    'ringflow.exporter.retries': [['metrics', 4], ['traces', 0]],
    'ringflow.exporter.possible_duplicates': [['metrics', 25], ['traces', 0]],
  });
});
