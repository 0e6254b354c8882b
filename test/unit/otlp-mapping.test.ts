/**
 * MetricPoint (as decoded from ringflow.metrics.v1) -> the OTel SDK's export
 * model, exactly: times, scale/offset/counts, temporality, attribute types,
 * one Resource per host, and the explicit-bucket conversion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ValueType, diag } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { encodeRecord, decodeRecord, schemaRegistry } from '../../schemas/index.ts';
import {
  toResourceMetrics, toExplicit, toExponential, DROPPED_METRIC, resolveTimeoutMs, nsToHrTime, explicitBoundsFor, baseResourceAttributes, resolveEndpoint, classifyError, exportOnce,
  SCOPE_VERSION, type MetricPoint, type ExpHistogramRecord,
} from '../../exporter/otlp.ts';

const T0 = 1_732_590_000_123_456_789n; // beyond 2^53: must stay exact
const T1 = T0 + 10_000_000_000n;
const RESOURCE = { 'service.name': 'ringflow' };

function hist(over: Partial<ExpHistogramRecord> = {}): ExpHistogramRecord {
  return { scale: 3, zero_count: 1n, positive_offset: -80, positive_buckets: [2n, 0n, 5n], count: 8n, sum: 0.0123, min: 0, max: 0.00125, ...over };
}

function point(over: Partial<MetricPoint> = {}): MetricPoint {
  return {
    name: 'ringflow.sched.runqueue.latency',
    unit: 's',
    kind: 'HISTOGRAM',
    attributes: [{ key: 'host.name', value: 'h1' }, { key: 'process.command', value: 'nginx' }],
    window_start_ns: T0,
    window_end_ns: T1,
    histogram: hist(),
    sum: null,
    late_events: 0n,
    dropped_inputs: 0n,
    processor: 'p1',
    ...over,
  };
}

/** Through the real Avro schema, so the mapper sees what the service decodes. */
function roundTrip(p: MetricPoint): MetricPoint {
  const schema = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  assert.ok(schema.type.isValid(p, { errorHook: (path) => assert.fail(`invalid field ${path.join('.')}`) }));
  return decodeRecord(encodeRecord(schema, p)).value as unknown as MetricPoint;
}

test('times: epoch ns -> HrTime, exact beyond 2^53', () => {
  const cases: [bigint, [number, number]][] = [
    [0n, [0, 0]],
    [999_999_999n, [0, 999_999_999]],
    [1_000_000_000n, [1, 0]],
    [T0, [1_732_590_000, 123_456_789]],
  ];
  for (const [ns, hr] of cases) assert.deepEqual(nsToHrTime(ns), hr, String(ns));
});

test('histogram and sum points -> exact OTLP data', () => {
  const cases: { name: string; in: MetricPoint; check: (rm: ResourceMetrics) => void }[] = [
    {
      name: 'exponential histogram',
      in: point(),
      check(rm) {
        const [m] = rm.scopeMetrics[0]!.metrics;
        assert.equal(m!.dataPointType, DataPointType.EXPONENTIAL_HISTOGRAM);
        assert.equal(m!.aggregationTemporality, AggregationTemporality.DELTA);
        assert.deepEqual(m!.descriptor, { name: 'ringflow.sched.runqueue.latency', description: '', unit: 's', valueType: ValueType.DOUBLE });
        assert.deepEqual(m!.dataPoints, [{
          startTime: [1_732_590_000, 123_456_789],
          endTime: [1_732_590_010, 123_456_789],
          attributes: { 'process.command': 'nginx' },
          value: { count: 8, sum: 0.0123, scale: 3, zeroCount: 1, positive: { offset: -80, bucketCounts: [2, 0, 5] }, negative: { offset: 0, bucketCounts: [] }, min: 0, max: 0.00125 },
        }]);
      },
    },
    {
      name: 'monotonic delta sum of ints, server.port as an int',
      in: point({
        name: 'ringflow.tcp.retransmits', unit: '{segment}', kind: 'SUM', histogram: null, sum: 42n,
        attributes: [{ key: 'host.name', value: 'h1' }, { key: 'server.address', value: '10.0.0.1' }, { key: 'server.port', value: '443' }],
      }),
      check(rm) {
        const m = rm.scopeMetrics[0]!.metrics[0]!;
        assert.equal(m.dataPointType, DataPointType.SUM);
        assert.equal(m.aggregationTemporality, AggregationTemporality.DELTA);
        assert.equal((m as { isMonotonic?: boolean }).isMonotonic, true);
        assert.deepEqual(m.descriptor, { name: 'ringflow.tcp.retransmits', description: '', unit: '{segment}', valueType: ValueType.INT });
        assert.deepEqual(m.dataPoints, [{ startTime: nsToHrTime(T0), endTime: nsToHrTime(T1), attributes: { 'server.address': '10.0.0.1', 'server.port': 443 }, value: 42 }]);
      },
    },
    {
      name: 'a folded "other" port stays a string',
      in: point({ kind: 'SUM', histogram: null, sum: 1n, attributes: [{ key: 'host.name', value: 'h1' }, { key: 'server.port', value: 'other' }] }),
      check(rm) {
        assert.deepEqual(rm.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.attributes, { 'server.port': 'other' });
      },
    },
  ];
  for (const c of cases) {
    const out = toResourceMetrics([roundTrip(c.in)], { histogramMode: 'exponential', resource: RESOURCE });
    assert.equal(out.invalid.length, 0, c.name);
    assert.equal(out.resources.length, 1, c.name);
    const rm = out.resources[0]!.metrics;
    assert.deepEqual(rm.resource.attributes, { 'service.name': 'ringflow', 'host.name': 'h1' }, c.name);
    assert.deepEqual(rm.scopeMetrics.map((s) => s.scope), [{ name: 'ringflow', version: SCOPE_VERSION }], c.name);
    c.check(rm);
  }
});

test('one Resource per host; one MetricData per (kind, name, unit) within it', () => {
  const pts = [
    point({ attributes: [{ key: 'host.name', value: 'a' }, { key: 'process.command', value: 'x' }] }),
    point({ attributes: [{ key: 'host.name', value: 'b' }] }),
    point({ attributes: [{ key: 'host.name', value: 'a' }, { key: 'process.command', value: 'y' }] }),
    point({ kind: 'SUM', name: 'ringflow.sched.switches', unit: '{switch}', histogram: null, sum: 7n, attributes: [{ key: 'host.name', value: 'a' }] }),
    point({ kind: 'SUM', histogram: null, sum: null }), // invalid: no value
  ];
  const out = toResourceMetrics(pts, { histogramMode: 'exponential', resource: RESOURCE });
  assert.deepEqual(out.resources.map((r) => [r.host, r.points, r.metrics.resource.attributes['host.name']]), [['a', 3, 'a'], ['b', 1, 'b']]);
  const a = out.resources[0]!.metrics.scopeMetrics[0]!.metrics;
  assert.deepEqual(a.map((m) => [m.descriptor.name, m.dataPoints.length]), [['ringflow.sched.runqueue.latency', 2], ['ringflow.sched.switches', 1]]);
  assert.deepEqual(a[0]!.dataPoints.map((d) => d.attributes), [{ 'process.command': 'x' }, { 'process.command': 'y' }]);
  assert.equal(out.invalid.length, 1);
  assert.match(out.invalid[0]!.reason, /SUM without a sum/);
});

test('RED metrics: the observed service (service.name, container.id) is the Resource, one per service, not a point attribute under service.name ringflow', () => {
  const red = (service: string, route: string, extra: { key: string; value: string }[] = []): MetricPoint => point({
    name: 'http.server.request.duration',
    attributes: [{ key: 'host.name', value: 'h1' }, { key: 'http.route', value: route }, { key: 'service.name', value: service }, ...extra],
  });
  const pts = [
    red('checkout', '/a'),
    red('http.server', '/b'),
    point(), // ringflow's own metric on h1: under the exporter's Resource
    red('checkout', '/c'),
    red('cart', '/d', [{ key: 'container.id', value: 'c0ffee' }]),
  ];
  const out = toResourceMetrics(pts.map(roundTrip), { histogramMode: 'exponential', resource: { ...RESOURCE, 'deployment.environment.name': 'test' } });
  assert.deepEqual(out.resources.map((r) => [r.metrics.resource.attributes, r.points]), [
    [{ 'service.name': 'checkout', 'deployment.environment.name': 'test', 'host.name': 'h1' }, 2],
    [{ 'service.name': 'http.server', 'deployment.environment.name': 'test', 'host.name': 'h1' }, 1],
    [{ 'service.name': 'ringflow', 'deployment.environment.name': 'test', 'host.name': 'h1' }, 1],
    [{ 'service.name': 'cart', 'deployment.environment.name': 'test', 'host.name': 'h1', 'container.id': 'c0ffee' }, 1],
  ]);
  const checkout = out.resources[0]!.metrics.scopeMetrics[0]!.metrics[0]!;
  assert.deepEqual(checkout.dataPoints.map((d) => d.attributes), [{ 'http.route': '/a' }, { 'http.route': '/c' }]);
  for (const r of out.resources) {
    for (const m of r.metrics.scopeMetrics[0]!.metrics) {
      for (const d of m.dataPoints) assert.ok(!('service.name' in d.attributes) && !('container.id' in d.attributes), 'no resource attribute on a point');
    }
  }
});

test('explicit buckets: whole exponential buckets move, counts sum to count', () => {
  const s = explicitBoundsFor('s'); // 2^-20 .. 2^5
  assert.equal(s.length, 26);
  assert.equal(s[0], 2 ** -20);
  assert.equal(s[25], 32);
  const at = (j: number, n: number) => Object.assign(new Array(27).fill(0), { [j]: n });
  const cases: { name: string; h: ExpHistogramRecord; counts: number[] }[] = [
    // scale 0: bucket i is (2^i, 2^(i+1)]; i = -11 is (2^-11, 2^-10] -> bound 2^-10 (index 10)
    { name: 'scale 0', h: hist({ scale: 0, zero_count: 0n, positive_offset: -11, positive_buckets: [4n], count: 4n }), counts: at(10, 4) },
    // scale 3: i = -81 is (2^-10.125, 2^-10] -> index 10; i = -80 is (2^-10, 2^-9.875] -> index 11
    {
      name: 'scale 3, both sides of a bound',
      h: hist({ scale: 3, zero_count: 3n, positive_offset: -81, positive_buckets: [1n, 2n, 0n, 7n], count: 13n }),
      counts: Object.assign(at(10, 1), { 0: 3, 11: 9 }),
    },
    // beyond the last bound (32 s): (32, 64] -> overflow bucket
    { name: 'overflow', h: hist({ scale: 0, zero_count: 0n, positive_offset: 5, positive_buckets: [2n], count: 2n }), counts: at(26, 2) },
    // below the first bound: (2^-25, 2^-24] -> first bucket
    { name: 'underflow', h: hist({ scale: 0, zero_count: 0n, positive_offset: -25, positive_buckets: [6n], count: 6n }), counts: at(0, 6) },
    // scale -1: base 4, i = -5 is (2^-10, 2^-8], straddles 2^-9: goes to the bound above its upper edge (2^-8, index 12)
    { name: 'negative scale straddle', h: hist({ scale: -1, zero_count: 0n, positive_offset: -5, positive_buckets: [3n], count: 3n }), counts: at(12, 3) },
  ];
  for (const c of cases) {
    const e = toExplicit(c.h, s);
    assert.deepEqual(e.buckets.counts, c.counts, c.name);
    assert.equal(e.buckets.counts.reduce((x, y) => x + y, 0), e.count, `${c.name}: counts sum to count`);
    assert.deepEqual(e.buckets.boundaries, [...s], c.name);
    assert.equal(e.sum, c.h.sum);
  }
  // the mode switch produces HISTOGRAM points with those bounds and DELTA
  const out = toResourceMetrics([point({ histogram: cases[1]!.h })], { histogramMode: 'explicit', resource: RESOURCE });
  const m = out.resources[0]!.metrics.scopeMetrics[0]!.metrics[0]!;
  assert.equal(m.dataPointType, DataPointType.HISTOGRAM);
  assert.equal(m.aggregationTemporality, AggregationTemporality.DELTA);
  assert.deepEqual(m.dataPoints[0]!.value, { buckets: { boundaries: [...s], counts: cases[1]!.counts }, count: 13, sum: 0.0123, min: 0, max: 0.00125 });
  assert.equal(explicitBoundsFor('By')[0], 64);
  assert.equal(explicitBoundsFor('{switch}')[0], 1);
});

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const old: Record<string, string | undefined> = {};
  for (const k of Object.keys(vars)) {
    old[k] = process.env[k];
    if (vars[k] === undefined) delete process.env[k];
    else process.env[k] = vars[k];
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(old)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}

const CLEAN_ENV = {
  OTEL_EXPORTER_OTLP_ENDPOINT: undefined, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: undefined,
  OTEL_EXPORTER_OTLP_INSECURE: undefined, OTEL_EXPORTER_OTLP_METRICS_INSECURE: undefined,
  OTEL_EXPORTER_OTLP_CERTIFICATE: undefined, OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE: undefined,
  OTEL_SERVICE_NAME: undefined, OTEL_RESOURCE_ATTRIBUTES: undefined,
};

test('resource: service.name ringflow, overridden by OTEL_RESOURCE_ATTRIBUTES then OTEL_SERVICE_NAME', () => {
  const cases: [Record<string, string>, Record<string, string>][] = [
    [{}, { 'service.name': 'ringflow' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,service.name=rf' }, { 'service.name': 'rf', 'deployment.environment.name': 'prod' }],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'service.name=rf', OTEL_SERVICE_NAME: 'mine' }, { 'service.name': 'mine' }],
  ];
  for (const [vars, want] of cases) assert.deepEqual(withEnv({ ...CLEAN_ENV, ...vars }, baseResourceAttributes), want, JSON.stringify(vars));
});

test('endpoint: host:port without a scheme is plaintext unless TLS is asked for', () => {
  const cases: [Record<string, string>, string | undefined, { url: string; insecure: boolean }][] = [
    [{}, undefined, { url: 'http://localhost:4317', insecure: true }],
    [{}, 'localhost:4317', { url: 'localhost:4317', insecure: true }],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' }, undefined, { url: 'collector:4317', insecure: true }],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'a:1', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'https://b:443' }, undefined, { url: 'https://b:443', insecure: false }],
    [{ OTEL_EXPORTER_OTLP_INSECURE: 'false' }, 'otlp.example:4317', { url: 'otlp.example:4317', insecure: false }],
    [{ OTEL_EXPORTER_OTLP_CERTIFICATE: '/etc/ca.pem' }, 'otlp.example:4317', { url: 'otlp.example:4317', insecure: false }],
    [{ OTEL_EXPORTER_OTLP_INSECURE: 'true' }, 'https://x:1', { url: 'https://x:1', insecure: false }],
  ];
  for (const [vars, url, want] of cases) {
    assert.deepEqual(withEnv({ ...CLEAN_ENV, ...vars }, () => resolveEndpoint(url === undefined ? {} : { url })), want, `${JSON.stringify(vars)} ${url}`);
  }
});

test('gRPC failures: held and retried, or rejected for good', () => {
  const cases: [unknown, boolean, string][] = [
    [{ code: 14, details: 'No connection established' }, true, 'UNAVAILABLE'],
    [{ code: 4, details: 'Deadline exceeded' }, true, 'DEADLINE_EXCEEDED'],
    [{ code: 8, details: 'throttled' }, true, 'RESOURCE_EXHAUSTED'],
    [{ code: 16, details: 'bad token' }, true, 'UNAUTHENTICATED'],
    [{ code: 3, details: 'bad point' }, false, 'INVALID_ARGUMENT'],
    [{ code: 13, details: 'boom' }, false, 'INTERNAL'],
    [{ code: 9, details: 'nope' }, false, 'FAILED_PRECONDITION'],
    [new Error('Concurrent export limit reached'), true, 'Error'],
  ];
  for (const [err, retryable, kind] of cases) {
    const c = classifyError(err);
    assert.equal(c.retryable, retryable, kind);
    assert.equal(c.kind, kind);
  }
});

test('exportOnce: success, partial success (from the SDK warning), failures as values', async () => {
  const rm = toResourceMetrics([point()], { histogramMode: 'exponential', resource: RESOURCE }).resources[0]!.metrics;
  const stub = (fn: (cb: (r: { code: ExportResultCode; error?: Error }) => void) => void) => ({ export: (_m: ResourceMetrics, cb: (r: { code: ExportResultCode; error?: Error }) => void) => fn(cb), shutdown: async () => {} });
  assert.deepEqual(await exportOnce(stub((cb) => cb({ code: ExportResultCode.SUCCESS })), rm), { status: 'success', rejected: 0, message: '' });
  // what otlp-export-delegate does on a partial success: warn, then call back in the same step
  const partial = stub((cb) => setImmediate(() => {
    diag.warn('Received Partial Success response:', JSON.stringify({ rejectedDataPoints: 3, errorMessage: 'too old' }));
    cb({ code: ExportResultCode.SUCCESS });
  }));
  assert.deepEqual(await exportOnce(partial, rm), { status: 'success', rejected: 3, message: 'too old' });
  const unavailable = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: 'No connection established' });
  assert.deepEqual(await exportOnce(stub((cb) => cb({ code: ExportResultCode.FAILED, error: unavailable })), rm), { status: 'retryable', kind: 'UNAVAILABLE', message: 'UNAVAILABLE: No connection established' });
  const invalid = Object.assign(new Error('3 INVALID_ARGUMENT: bad'), { code: 3, details: 'bad' });
  assert.deepEqual(await exportOnce(stub((cb) => cb({ code: ExportResultCode.FAILED, error: invalid })), rm), { status: 'failure', kind: 'INVALID_ARGUMENT', message: 'INVALID_ARGUMENT: bad' });
});

test('toExponential: a histogram with count 0 has no min/max', () => {
  const v = toExponential(hist({ zero_count: 0n, positive_offset: 0, positive_buckets: [], count: 0n, sum: 0, min: 0, max: 0 }));
  assert.deepEqual(v, { count: 0, sum: 0, scale: 3, zeroCount: 0, positive: { offset: 0, bucketCounts: [] }, negative: { offset: 0, bucketCounts: [] } });
});

test('late events go out as ringflow.dropped{reason=late, signal=metric}; points without data are not exported as data', () => {
  const empty = hist({ zero_count: 0n, positive_offset: 0, positive_buckets: [], count: 0n, sum: 0, min: 0, max: 0 });
  const attrs = [{ key: 'host.name', value: 'h1' }, { key: 'process.command', value: 'nginx' }];
  const sumOf = (over: Partial<MetricPoint>) => point({ name: 'ringflow.sched.context_switches', unit: '{switch}', kind: 'SUM', histogram: null, ...over });
  const cases: { name: string; in: MetricPoint[]; out: [string, unknown][] }[] = [
    { name: 'empty histogram, nothing late: nothing at all', in: [point({ histogram: empty })], out: [] },
    {
      name: 'empty histogram with late events: only the drop counter',
      in: [point({ histogram: empty, late_events: 307n })],
      out: [[DROPPED_METRIC, { 'process.command': 'nginx', reason: 'late', signal: 'ringflow.sched.runqueue.latency', value: 307 }]],
    },
    {
      name: 'histogram with data and late events: both',
      in: [point({ late_events: 2n })],
      out: [
        [DROPPED_METRIC, { 'process.command': 'nginx', reason: 'late', signal: 'ringflow.sched.runqueue.latency', value: 2 }],
        ['ringflow.sched.runqueue.latency', { 'process.command': 'nginx', value: 8 }],
      ],
    },
    {
      name: 'a sum of 0 that exists for its late events: only the drop counter',
      in: [sumOf({ sum: 0n, late_events: 5n })],
      out: [[DROPPED_METRIC, { 'process.command': 'nginx', reason: 'late', signal: 'ringflow.sched.context_switches', value: 5 }]],
    },
    { name: 'a sum of 0 with nothing late is data (a delta of 0)', in: [sumOf({ sum: 0n })], out: [['ringflow.sched.context_switches', { 'process.command': 'nginx', value: 0 }]] },
  ];
  for (const c of cases) {
    const out = toResourceMetrics(c.in.map((p) => roundTrip({ ...p, attributes: attrs })), { histogramMode: 'exponential', resource: RESOURCE });
    assert.equal(out.invalid.length, 0, c.name);
    const got: [string, unknown][] = [];
    for (const r of out.resources) {
      for (const m of r.metrics.scopeMetrics[0]!.metrics) {
        if (m.descriptor.name === DROPPED_METRIC) {
          assert.equal(m.dataPointType, DataPointType.SUM, c.name);
          assert.equal((m as { isMonotonic?: boolean }).isMonotonic, true, c.name);
          assert.equal(m.descriptor.unit, '{event}', c.name);
        }
        for (const d of m.dataPoints) {
          assert.deepEqual([d.startTime, d.endTime], [nsToHrTime(T0), nsToHrTime(T1)], c.name);
          const v = d.value as number | { count: number };
          got.push([m.descriptor.name, { ...d.attributes, value: typeof v === 'number' ? v : v.count }]);
        }
      }
    }
    assert.deepEqual(got, c.out, c.name);
  }
});

test('export timeout: option, then OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT, then OTEL_EXPORTER_OTLP_TIMEOUT, then 10 s; bad values skipped', () => {
  const cases: { name: string; opt?: number; env: Record<string, string>; signal: 'METRICS' | 'TRACES'; ms: number; warnings: number }[] = [
    { name: 'default', env: {}, signal: 'METRICS', ms: 10_000, warnings: 0 },
    { name: 'generic', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '2500' }, signal: 'METRICS', ms: 2500, warnings: 0 },
    { name: 'signal wins', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '2500', OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: '700' }, signal: 'METRICS', ms: 700, warnings: 0 },
    { name: 'other signal ignored', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '2500', OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: '700' }, signal: 'TRACES', ms: 2500, warnings: 0 },
    { name: 'option wins', opt: 1234, env: { OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: '700' }, signal: 'METRICS', ms: 1234, warnings: 0 },
    { name: 'bad signal value falls back', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '2500', OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: '10s' }, signal: 'METRICS', ms: 2500, warnings: 1 },
    { name: 'zero and negative are not timeouts', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '0', OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '-5' }, signal: 'TRACES', ms: 10_000, warnings: 2 },
    { name: 'blank is unset', env: { OTEL_EXPORTER_OTLP_TIMEOUT: '  ' }, signal: 'METRICS', ms: 10_000, warnings: 0 },
  ];
  for (const c of cases) {
    const r = resolveTimeoutMs(c.opt === undefined ? {} : { timeoutMillis: c.opt }, c.signal, c.env);
    assert.equal(r.ms, c.ms, c.name);
    assert.equal(r.warnings.length, c.warnings, c.name);
  }
});
