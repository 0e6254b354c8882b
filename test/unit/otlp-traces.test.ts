/**
 * Span records (as decoded from ringflow.spans.v1) -> the trace SDK's export
 * model, exactly: ids, parent, times to the ns, kinds, status, trace state and
 * flags, typed attributes, and one shared Resource per (service.name, host.name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode, diag } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { decodeRecord } from '../../schemas/index.ts';
import { encodeSpan, type Span } from '../../processor/spans.ts';
import { toReadableSpans, toReadableSpan, spanAttributes, invalidSpan, UNKNOWN_SERVICE, type SpanRecord } from '../../exporter/traces.ts';
import { SCOPE_VERSION, resolveEndpoint, exportOnce } from '../../exporter/otlp.ts';
import { parseSignals } from '../../exporter/command.ts';
import { resourceFromAttributes } from '@opentelemetry/resources';

const T0 = 1_732_590_000_123_456_789n; // beyond 2^53: must stay exact
const RESOURCE = { 'service.name': 'ringflow', 'deployment.environment.name': 'test' };

function span(over: Partial<Span> = {}): Span {
  return {
    key: 'tcp|10.0.0.1:40000|10.0.0.2:8080',
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    span_id: '00f067aa0ba902b7',
    parent_span_id: null,
    trace_state: null,
    trace_flags: 1,
    name: 'GET /users/{id}',
    kind: 'SERVER',
    start_ns: T0,
    end_ns: T0 + 1_234_567n,
    status: 'UNSET',
    status_message: null,
    attributes: {
      'host.name': 'h1',
      'http.request.method': 'GET',
      'http.response.status_code': '200',
      'process.pid': '4242',
      'server.port': '8080',
      'service.name': 'nginx',
      'url.path': '/users/42',
    },
    service_name: 'nginx',
    host: 'h1',
    protocol: 'HTTP1',
    ...over,
  };
}

/** Through the real Avro schema (encodeSpan, then decode), so the mapper sees what the service decodes. */
function record(s: Span): SpanRecord {
  return decodeRecord(encodeSpan(s).value).value as unknown as SpanRecord;
}

test('ids, parent, times, kind, status: exact', () => {
  const cases: { name: string; in: Span; check: (s: ReturnType<typeof toReadableSpan>) => void }[] = [
    {
      name: 'root server span',
      in: span(),
      check(s) {
        assert.equal(s.name, 'GET /users/{id}');
        assert.equal(s.kind, SpanKind.SERVER);
        assert.deepEqual(s.spanContext(), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 });
        assert.equal(s.parentSpanContext, undefined);
        assert.deepEqual(s.startTime, [1_732_590_000, 123_456_789]);
        assert.deepEqual(s.endTime, [1_732_590_000, 124_691_356]);
        assert.deepEqual(s.duration, [0, 1_234_567]);
        assert.deepEqual(s.status, { code: SpanStatusCode.UNSET });
        assert.equal(s.ended, true);
        assert.deepEqual([s.links, s.events, s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount], [[], [], 0, 0, 0]);
        assert.deepEqual(s.instrumentationScope, { name: 'ringflow', version: SCOPE_VERSION });
      },
    },
    {
      name: 'server span linked to a client span: remote parent',
      in: span({ parent_span_id: 'b7ad6b7169203331', trace_flags: 0 }),
      check(s) {
        assert.deepEqual(s.parentSpanContext, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'b7ad6b7169203331', traceFlags: 0, isRemote: true });
        assert.equal(s.spanContext().traceFlags, 0);
      },
    },
    {
      name: 'client span from a traceparent: its parent is in its own process',
      in: span({ kind: 'CLIENT', parent_span_id: 'b7ad6b7169203331', trace_state: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' }),
      check(s) {
        assert.equal(s.kind, SpanKind.CLIENT);
        assert.equal(s.parentSpanContext?.isRemote, false);
        assert.equal(s.spanContext().traceState?.serialize(), 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
        assert.equal(s.spanContext().traceState?.get('congo'), 't61rcWkgMzE');
      },
    },
    {
      name: 'trace state kept as captured, even what the SDK would drop',
      in: span({ trace_state: 'a=1,Bad Key=2' }),
      check(s) {
        assert.equal(s.spanContext().traceState?.serialize(), 'a=1,Bad Key=2');
      },
    },
    {
      name: 'internal span, error status with its message',
      in: span({ kind: 'INTERNAL', status: 'ERROR', status_message: 'no response', end_ns: T0 + 30_000_000_000n }),
      check(s) {
        assert.equal(s.kind, SpanKind.INTERNAL);
        assert.deepEqual(s.status, { code: SpanStatusCode.ERROR, message: 'no response' });
        assert.deepEqual(s.endTime, [1_732_590_030, 123_456_789]);
        assert.deepEqual(s.duration, [30, 0]);
      },
    },
    {
      name: 'OK status, flags beyond the low byte cut',
      in: span({ status: 'OK', trace_flags: 0x101 }),
      check(s) {
        assert.deepEqual(s.status, { code: SpanStatusCode.OK });
        assert.equal(s.spanContext().traceFlags, 1);
      },
    },
    {
      name: 'times at the second boundary and zero length',
      in: span({ start_ns: 1_000_000_000n, end_ns: 1_000_000_000n }),
      check(s) {
        assert.deepEqual([s.startTime, s.endTime, s.duration], [[1, 0], [1, 0], [0, 0]]);
      },
    },
  ];
  const resource = resourceFromAttributes(RESOURCE);
  for (const c of cases) {
    const s = toReadableSpan(record(c.in), resource);
    assert.equal(s.resource, resource);
    c.check(s);
  }
});

test('attributes: ints, booleans, strings; service.name, host.name, process.pid and container.id go to the Resource', () => {
  const cases: [Record<string, string>, Record<string, string | number | boolean>][] = [
    [span().attributes, { 'http.request.method': 'GET', 'http.response.status_code': 200, 'server.port': 8080, 'url.path': '/users/42' }],
    [{ 'container.id': 'abc', 'process.pid': '7', 'url.path': '/' }, { 'url.path': '/' }],
    [
      { 'client.port': '51234', 'network.peer.port': '0', 'rpc.grpc.status_code': '14', 'http.request.body.size': '9007199254740991', 'http.response.body.size': '12' },
      { 'client.port': 51234, 'network.peer.port': 0, 'rpc.grpc.status_code': 14, 'http.request.body.size': 9007199254740991, 'http.response.body.size': 12 },
    ],
    [{ 'ringflow.truncated': 'true', 'ringflow.response.missed': 'false' }, { 'ringflow.truncated': true, 'ringflow.response.missed': false }],
    // not what the processor writes: kept as text rather than lost or made up
    [
      { 'server.port': 'http', 'http.request.body.size': '9007199254740993', 'ringflow.truncated': 'yes', 'url.query': '1' },
      { 'server.port': 'http', 'http.request.body.size': '9007199254740993', 'ringflow.truncated': 'yes', 'url.query': '1' },
    ],
    [{}, {}],
  ];
  for (const [attrs, want] of cases) assert.deepEqual(spanAttributes(attrs), want, JSON.stringify(attrs));
  // through Avro too
  assert.deepEqual(toReadableSpan(record(span()), resourceFromAttributes({})).attributes, cases[0]![1]);
});

test('resources: one per observed process (service.name, host.name, process.pid), shared by its spans, in order of first appearance', () => {
  const records = [
    span({ span_id: '0000000000000001' }),
    span({ span_id: '0000000000000002', service_name: 'curl', kind: 'CLIENT' }),
    span({ span_id: '0000000000000003' }),
    span({ span_id: '0000000000000004', host: 'h2' }),
    span({ span_id: '0000000000000005', service_name: '', host: '' }),
    span({ span_id: '0000000000000006', service_name: 'curl' }),
    span({ span_id: '0000000000000007', attributes: { ...span().attributes, 'process.pid': '5151' } }), // a second nginx worker
  ].map(record);
  const mapped = toReadableSpans(records, { resource: { ...RESOURCE, 'host.name': 'exporter-host' } });
  assert.deepEqual(mapped.invalid, []);
  assert.deepEqual(mapped.spans.map((s) => s.spanContext().spanId), records.map((r) => r.span_id), 'every span, in record order');
  assert.deepEqual(
    mapped.resources.map((r) => [r.service, r.host, r.spans.map((s) => s.spanContext().spanId.slice(-1))]),
    [['nginx', 'h1', ['1', '3']], ['curl', 'h1', ['2', '6']], ['nginx', 'h2', ['4']], [UNKNOWN_SERVICE, '', ['5']], ['nginx', 'h1', ['7']]],
  );
  assert.deepEqual(
    mapped.resources.map((r) => r.resource.attributes),
    [
      { 'service.name': 'nginx', 'deployment.environment.name': 'test', 'host.name': 'h1', 'process.pid': 4242 },
      { 'service.name': 'curl', 'deployment.environment.name': 'test', 'host.name': 'h1', 'process.pid': 4242 },
      { 'service.name': 'nginx', 'deployment.environment.name': 'test', 'host.name': 'h2', 'process.pid': 4242 },
      // no host: not the exporter's own host.name either
      { 'service.name': UNKNOWN_SERVICE, 'deployment.environment.name': 'test', 'process.pid': 4242 },
      { 'service.name': 'nginx', 'deployment.environment.name': 'test', 'host.name': 'h1', 'process.pid': 5151 },
    ],
  );
  // the OTLP serializer groups by Resource identity: spans of one pair share the object
  for (const r of mapped.resources) for (const s of r.spans) assert.equal(s.resource, r.resource);
});

test('records that cannot be OTLP spans are set aside with why', () => {
  const cases: [Partial<Span>, RegExp | null][] = [
    [{}, null],
    [{ trace_id: '00000000000000000000000000000000' }, /trace_id .* not all zero/],
    [{ trace_id: 'abc' }, /trace_id "abc"/],
    [{ span_id: '0000000000000000' }, /span_id/],
    [{ span_id: 'zzzzzzzzzzzzzzzz' }, /span_id/],
    [{ parent_span_id: '123' }, /parent_span_id "123"/],
  ];
  for (const [over, want] of cases) {
    const r = record(span(over));
    const why = invalidSpan(r);
    if (want === null) assert.equal(why, null);
    else assert.match(why ?? '', want);
    const mapped = toReadableSpans([r], { resource: RESOURCE });
    assert.equal(mapped.invalid.length, want === null ? 0 : 1);
    assert.equal(mapped.spans.length, want === null ? 1 : 0);
  }
});

const SIGNAL_VARS = ['ENDPOINT', 'INSECURE', 'CERTIFICATE'].flatMap((v) => ['', 'METRICS_', 'TRACES_'].map((s) => `OTEL_EXPORTER_OTLP_${s}${v}`));

function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  const old = Object.fromEntries(SIGNAL_VARS.map((k) => [k, process.env[k]]));
  for (const k of SIGNAL_VARS) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const k of SIGNAL_VARS) delete process.env[k];
    for (const [k, v] of Object.entries(old)) if (v !== undefined) process.env[k] = v;
  }
}

test('endpoint of traces: OTEL_EXPORTER_OTLP_TRACES_* over the generic ones, never the metrics ones', () => {
  const cases: [Record<string, string>, { url: string; insecure: boolean }][] = [
    [{}, { url: 'http://localhost:4317', insecure: true }],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317' }, { url: 'collector:4317', insecure: true }],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'a:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t:443' }, { url: 'https://t:443', insecure: false }],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'a:1', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'https://m:443' }, { url: 'a:1', insecure: true }],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 't:4317', OTEL_EXPORTER_OTLP_TRACES_INSECURE: 'false' }, { url: 't:4317', insecure: false }],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 't:4317', OTEL_EXPORTER_OTLP_METRICS_INSECURE: 'false' }, { url: 't:4317', insecure: true }],
  ];
  for (const [vars, want] of cases) assert.deepEqual(withEnv(vars, () => resolveEndpoint({}, 'TRACES')), want, JSON.stringify(vars));
});

test('exportOnce: a partial success names rejected spans', async () => {
  const spans = toReadableSpans([record(span())], { resource: RESOURCE }).spans;
  const exporter = {
    export: (_s: unknown, cb: (r: { code: ExportResultCode }) => void) => setImmediate(() => {
      diag.warn('Received Partial Success response:', JSON.stringify({ rejectedSpans: 2, errorMessage: 'span too large' }));
      cb({ code: ExportResultCode.SUCCESS });
    }),
    shutdown: async () => {},
  };
  assert.deepEqual(await exportOnce(exporter, spans), { status: 'success', rejected: 2, message: 'span too large' });
});

test('--signals: metrics and/or traces, once each', () => {
  const cases: [string, string[] | RegExp][] = [
    ['metrics,traces', ['metrics', 'traces']],
    ['traces', ['traces']],
    [' traces , metrics,traces', ['traces', 'metrics']],
    ['logs', /"logs" is not metrics or traces/],
    [',', /at least one/],
  ];
  for (const [text, want] of cases) {
    if (Array.isArray(want)) assert.deepEqual(parseSignals(text), want, text);
    else assert.throws(() => parseSignals(text), want, text);
  }
});
