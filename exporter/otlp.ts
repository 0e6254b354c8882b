/**
 * ringflow.metrics.v1 points -> OTLP, and one export through the OTLP gRPC exporter.
 *
 * Our points are already aggregated (one per series and closed window, written
 * once by the processor), so there is no MeterProvider here: we build the SDK's
 * own export model (ResourceMetrics / ScopeMetrics / MetricData) and hand it to
 * OTLPMetricExporter.export() ourselves.
 *
 * Mapping (MetricPoint field -> OTLP):
 *   attributes["host.name"]      -> Resource attribute host.name (one ResourceMetrics per host and
 *                                   observed service)
 *   attributes service.name,     -> Resource attributes (POINT_RESOURCE_KEYS): the RED metrics'
 *     container.id ...              observed service, over the exporter's own service.name
 *   other attributes             -> data point attributes; integer conventions (server.port...)
 *                                   become ints, a folded "other" value stays a string
 *   name, unit                   -> Metric name and unit, unchanged
 *   window_start_ns/_end_ns      -> start_time_unix_nano / time_unix_nano (exact ns)
 *   kind HISTOGRAM + histogram   -> ExponentialHistogram, DELTA: scale, zero_count,
 *                                   positive {offset, bucket_counts}, negative empty,
 *                                   count, sum, min, max (min/max omitted when count is 0)
 *                                   or, with histogramMode 'explicit', a Histogram with the
 *                                   fixed power-of-two bounds of EXPLICIT_BOUNDS
 *   kind SUM + sum               -> monotonic Sum of ints, DELTA (each point is one window's total;
 *                                   also ringflow.collector.losses{location, reason}, unit {record}:
 *                                   the collectors' losses by cause, a breakdown that overlaps
 *                                   DROPPED_METRIC's kernel/user totals, not added to them)
 *   kind GAUGE + gauge           -> Gauge of doubles (e.g. ringflow.collector.coverage, unit "1":
 *                                   the fraction of the window the host's collectors watched; 1 is
 *                                   exported too: it says the window was fully watched)
 *   late_events > 0              -> a point of DROPPED_METRIC (monotonic delta Sum of ints):
 *                                   the series' attributes + reason "late" + signal = the
 *                                   metric's name, same window; late events are drops
 *   a point carrying no data     -> not exported as data: a HISTOGRAM with count 0, or a SUM
 *                                   of 0 with late events (stage 2 opens a series in the oldest
 *                                   open window to count its late events; the point exists for
 *                                   them, and they go out as DROPPED_METRIC)
 *   dropped_inputs, processor: not exported (dropped_inputs repeats the collector's drops on
 *                                   every series of the topic; stage 2 writes them once per
 *                                   reason as DROPPED_METRIC points of their own)
 * Scope: name "ringflow", version of package.json. Resource: service.name "ringflow"
 * under OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (the SDK's env detectors),
 * under the point's host.name (the observed host, not the exporter's).
 */
import { ValueType, diag, DiagLogLevel, type Attributes, type HrTime, type DiagLogger } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import type { ResourceMetrics, MetricData, DataPoint, ExponentialHistogram, Histogram } from '@opentelemetry/sdk-metrics';
import { detectResources, resourceFromAttributes, resourceAttributesEnvDetector, serviceNameEnvDetector, type Resource } from '@opentelemetry/resources';
import type { OTLPGRPCExporterConfigNode } from '@opentelemetry/otlp-grpc-exporter-base';
import pkg from '../package.json' with { type: 'json' };

export type HistogramMode = 'exponential' | 'explicit';

export const SCOPE_NAME = 'ringflow';
export const SCOPE_VERSION: string = pkg.version;
export const DEFAULT_SERVICE_NAME = 'ringflow';
/**
 * Every drop of every kind goes out as this counter (a delta Sum of events),
 * with attributes `reason` (late, the collector's kernel/user drops, invalid
 * values ...) and `signal` (the metric or topic that lost them).
 */
export const DROPPED_METRIC = 'ringflow.dropped';
export const DROPPED_UNIT = '{event}';

/** A decoded schemas/metrics.avsc record (longs as BigInt, the enum as its symbol). */
export interface MetricPoint {
  name: string;
  unit: string;
  kind: 'HISTOGRAM' | 'SUM' | 'GAUGE';
  attributes: { key: string; value: string }[];
  window_start_ns: bigint;
  window_end_ns: bigint;
  histogram: ExpHistogramRecord | null;
  sum: bigint | null;
  /** Set when kind is GAUGE; absent in records of an older processor (read as null). */
  gauge?: number | null;
  late_events: bigint;
  dropped_inputs: bigint;
  processor: string;
}

export interface ExpHistogramRecord {
  scale: number;
  zero_count: bigint;
  positive_offset: number;
  positive_buckets: bigint[];
  count: bigint;
  sum: number;
  min: number;
  max: number;
}

/** Semantic-convention attributes whose values are integers (OTel semconv: server.port, the HTTP and gRPC status codes are ints). */
export const INT_ATTRIBUTES: ReadonlySet<string> = new Set([
  'server.port', 'client.port', 'network.peer.port', 'network.local.port', 'source.port', 'destination.port',
  'http.response.status_code', 'rpc.grpc.status_code', 'ringflow.dns.retries',
]);

/**
 * Bounds of explicit-bucket histograms, by unit. All are powers of two: every
 * base-2 exponential bucket at scale >= 0 covers (2^(i/2^s), 2^((i+1)/2^s)],
 * which never straddles a power of two, so the conversion moves whole buckets
 * and is exact (at negative scales it is exact when the bounds fall on bucket
 * edges, else a straddling bucket goes to the bound above its upper edge).
 *   s:   2^-20 .. 2^5 s  (~0.95 us .. 32 s; latencies)
 *   By:  2^6 .. 2^26 By  (64 B .. 64 MiB; I/O sizes)
 *   else 2^0 .. 2^30     (1 .. ~1.07e9; counts)
 */
export const EXPLICIT_BOUNDS: Readonly<Record<string, readonly number[]>> = {
  s: powersOfTwo(-20, 5),
  By: powersOfTwo(6, 26),
  default: powersOfTwo(0, 30),
};

function powersOfTwo(from: number, to: number): number[] {
  const out: number[] = [];
  for (let k = from; k <= to; k++) out.push(2 ** k);
  return out;
}

export function explicitBoundsFor(unit: string): readonly number[] {
  return EXPLICIT_BOUNDS[unit] ?? EXPLICIT_BOUNDS.default!;
}

/** Epoch nanoseconds -> [seconds, nanoseconds], exact (no float division). */
export function nsToHrTime(ns: bigint): HrTime {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

/** A long as a JS number; counts beyond 2^53 cannot be carried exactly by the SDK's number fields. */
function toNumber(v: bigint | number): number {
  return typeof v === 'number' ? v : Number(v);
}

export function pointAttributes(attrs: readonly { key: string; value: string }[]): { host: string; attributes: Attributes; resource: Attributes } {
  let host = '';
  const attributes: Attributes = {};
  const resource: Attributes = {};
  for (const { key, value } of attrs) {
    if (key === 'host.name') host = value;
    else if (POINT_RESOURCE_KEYS.has(key)) {
      if (value !== '') resource[key] = value;
    } else if (INT_ATTRIBUTES.has(key) && /^\d{1,15}$/.test(value)) attributes[key] = Number(value);
    else attributes[key] = value;
  }
  return { host, attributes, resource };
}

/**
 * Point attributes that describe the observed process, not the measurement:
 * the RED metrics carry the observed service's service.name (and its
 * container, when known) as dimensions; OTLP puts them on the Resource, one
 * Resource per observed service, under which ringflow's own service.name
 * does not stand (issue 10). process.pid is not a metric dimension (a
 * series per process would explode the cardinality), so it is not here.
 */
export const POINT_RESOURCE_KEYS: ReadonlySet<string> = new Set(['service.name', 'service.namespace', 'service.instance.id', 'container.id']);

export function toExponential(h: ExpHistogramRecord): ExponentialHistogram {
  const count = toNumber(h.count);
  const out: ExponentialHistogram = {
    count,
    sum: h.sum,
    scale: h.scale,
    zeroCount: toNumber(h.zero_count),
    positive: { offset: h.positive_offset, bucketCounts: h.positive_buckets.map(toNumber) },
    negative: { offset: 0, bucketCounts: [] },
  };
  if (count > 0) {
    out.min = h.min;
    out.max = h.max;
  }
  return out;
}

/**
 * Moves each exponential bucket's count to the explicit bucket holding it.
 * Explicit bucket j is (bounds[j-1], bounds[j]] (the last is (bounds[n-1], +inf)),
 * exponential bucket i is (2^(i/2^s), 2^((i+1)/2^s)]; with bounds 2^k, bucket i
 * goes to the first j whose bound is >= its upper edge, i.e. the number of k
 * with k < (i+1)/2^s. Zero values go to the first bucket.
 */
export function toExplicit(h: ExpHistogramRecord, bounds: readonly number[]): Histogram {
  const exps = bounds.map((b) => Math.log2(b));
  const counts = new Array<number>(bounds.length + 1).fill(0);
  counts[0]! += toNumber(h.zero_count);
  const perUnit = 2 ** h.scale; // exact: a power of two
  h.positive_buckets.forEach((c, i) => {
    if (c === 0n) return;
    const upper = h.positive_offset + i + 1; // upper edge is 2^(upper / 2^scale)
    let j = 0;
    while (j < exps.length && exps[j]! * perUnit < upper) j++;
    counts[j]! += toNumber(c);
  });
  const count = toNumber(h.count);
  const out: Histogram = { buckets: { boundaries: [...bounds], counts }, count, sum: h.sum };
  if (count > 0) {
    out.min = h.min;
    out.max = h.max;
  }
  return out;
}

export interface MapOptions {
  histogramMode: HistogramMode;
  /** Attributes of every Resource (service.name ...); host.name is added per host. */
  resource: Attributes;
}

export interface MappedBatch {
  /** One per (host, observed service: POINT_RESOURCE_KEYS), in order of first appearance. */
  resources: { host: string; metrics: ResourceMetrics; points: number }[];
  /** Points that could not be mapped (kind without its value), with why. */
  invalid: { point: MetricPoint; reason: string }[];
}

/** Pure: points -> one ResourceMetrics per host, one MetricData per (name, unit, kind). */
export function toResourceMetrics(points: readonly MetricPoint[], opts: MapOptions): MappedBatch {
  const groups = new Map<string, { host: string; resource: Attributes; metrics: Map<string, MetricData>; points: number }>();
  const invalid: MappedBatch['invalid'] = [];
  const groupOf = (host: string, resource: Attributes): { metrics: Map<string, MetricData>; points: number } => {
    const id = JSON.stringify([host, Object.entries(resource).sort(([a], [b]) => (a < b ? -1 : 1))]);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { host, resource, metrics: new Map(), points: 0 }));
    return g;
  };
  for (const p of points) {
    const reason = p.kind === 'HISTOGRAM' ? (p.histogram ? null : 'kind HISTOGRAM without a histogram')
      : p.kind === 'SUM' ? (p.sum === null || p.sum === undefined ? 'kind SUM without a sum' : null)
      : p.kind === 'GAUGE' ? (typeof p.gauge !== 'number' || !Number.isFinite(p.gauge) ? 'kind GAUGE without a finite gauge' : null)
      : `unknown kind ${String(p.kind)}`;
    if (reason) {
      invalid.push({ point: p, reason });
      continue;
    }
    if (p.kind === 'GAUGE') {
      const { host, attributes, resource } = pointAttributes(p.attributes);
      const h = groupOf(host, resource);
      h.points++;
      addGauge(h.metrics, p.name, p.unit, { startTime: nsToHrTime(p.window_start_ns), endTime: nsToHrTime(p.window_end_ns), attributes, value: p.gauge! });
      continue;
    }
    const late = toNumber(p.late_events ?? 0n);
    const empty = p.kind === 'HISTOGRAM' ? toNumber(p.histogram!.count) === 0 : toNumber(p.sum!) === 0 && late > 0;
    if (empty && late === 0) continue; // nothing to say: no data, no drop
    const { host, attributes, resource } = pointAttributes(p.attributes);
    const startTime = nsToHrTime(p.window_start_ns);
    const endTime = nsToHrTime(p.window_end_ns);
    const h = groupOf(host, resource);
    h.points++;
    if (late > 0) {
      addSum(h.metrics, DROPPED_METRIC, DROPPED_UNIT, { startTime, endTime, attributes: { ...attributes, reason: 'late', signal: p.name }, value: late });
    }
    if (empty) continue;
    if (p.kind === 'SUM') {
      addSum(h.metrics, p.name, p.unit, { startTime, endTime, attributes, value: toNumber(p.sum!) });
      continue;
    }
    const id = `${p.kind}\u0000${p.name}\u0000${p.unit}`;
    let m = h.metrics.get(id);
    const descriptor = { name: p.name, description: '', unit: p.unit, valueType: ValueType.DOUBLE };
    if (opts.histogramMode === 'explicit') {
      m ??= { descriptor, aggregationTemporality: AggregationTemporality.DELTA, dataPointType: DataPointType.HISTOGRAM, dataPoints: [] };
      (m.dataPoints as DataPoint<Histogram>[]).push({ startTime, endTime, attributes, value: toExplicit(p.histogram!, explicitBoundsFor(p.unit)) });
    } else {
      m ??= { descriptor, aggregationTemporality: AggregationTemporality.DELTA, dataPointType: DataPointType.EXPONENTIAL_HISTOGRAM, dataPoints: [] };
      (m.dataPoints as DataPoint<ExponentialHistogram>[]).push({ startTime, endTime, attributes, value: toExponential(p.histogram!) });
    }
    h.metrics.set(id, m);
  }
  const resources = [...groups.values()].map((g) => {
    // the observed service's attributes over the exporter's own (OTEL_RESOURCE_ATTRIBUTES, service.name ringflow)
    const attrs: Attributes = { ...opts.resource, ...g.resource };
    if (g.host !== '') attrs['host.name'] = g.host;
    return {
      host: g.host,
      points: g.points,
      metrics: {
        resource: resourceFromAttributes(attrs),
        scopeMetrics: [{ scope: { name: SCOPE_NAME, version: SCOPE_VERSION }, metrics: [...g.metrics.values()] }],
      },
    };
  });
  return { resources, invalid };
}

/** Adds a point to the Gauge of doubles (name, unit) of `metrics`. */
function addGauge(metrics: Map<string, MetricData>, name: string, unit: string, point: DataPoint<number>): void {
  const id = `GAUGE\u0000${name}\u0000${unit}`;
  let m = metrics.get(id);
  if (!m) {
    m = {
      descriptor: { name, description: '', unit, valueType: ValueType.DOUBLE },
      // a gauge has no temporality in OTLP; the SDK's type wants one and the transformer ignores it
      aggregationTemporality: AggregationTemporality.DELTA,
      dataPointType: DataPointType.GAUGE,
      dataPoints: [],
    };
    metrics.set(id, m);
  }
  (m.dataPoints as DataPoint<number>[]).push(point);
}

/** Adds a point to the monotonic delta Sum of ints (name, unit) of `metrics`. */
function addSum(metrics: Map<string, MetricData>, name: string, unit: string, point: DataPoint<number>): void {
  const id = `SUM\u0000${name}\u0000${unit}`;
  let m = metrics.get(id);
  if (!m) {
    m = {
      descriptor: { name, description: '', unit, valueType: ValueType.INT },
      aggregationTemporality: AggregationTemporality.DELTA,
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      dataPoints: [],
    };
    metrics.set(id, m);
  }
  (m.dataPoints as DataPoint<number>[]).push(point);
}

/**
 * The Resource attributes every host shares: service.name "ringflow", then
 * OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME (the SDK's detectors, later wins).
 * Reads the environment.
 */
export function baseResourceAttributes(): Attributes {
  const detected: Resource = detectResources({ detectors: [resourceAttributesEnvDetector, serviceNameEnvDetector] });
  return resourceFromAttributes({ 'service.name': DEFAULT_SERVICE_NAME }).merge(detected).attributes;
}

// ---- export -----------------------------------------------------------------

/** What the exporter needs of an OTLP exporter of payload T (OTLPMetricExporter, OTLPTraceExporter; tests pass their own). */
export interface OtlpExporterLike<T> {
  export(data: T, resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

export type MetricExporterLike = OtlpExporterLike<ResourceMetrics>;

/** gRPC status codes (grpc/status.h), by number. */
export const GRPC_STATUS: readonly string[] = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

/**
 * Retryable per the OTLP spec's gRPC table (CANCELLED, DEADLINE_EXCEEDED,
 * ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS), plus codes that say nothing
 * about the data but about the backend or our configuration: RESOURCE_EXHAUSTED
 * (throttled), UNAUTHENTICATED / PERMISSION_DENIED (a bad token) and
 * UNIMPLEMENTED / NOT_FOUND (not an OTLP endpoint). Dropping data because a
 * header is wrong would lose it all; holding it keeps it in Kafka until fixed.
 * Errors without a gRPC code (client-side) are held too.
 */
const RETRYABLE = new Set([1, 4, 5, 7, 8, 10, 11, 12, 14, 15, 16]);

export type ExportOutcome =
  | { status: 'success'; rejected: number; message: string }
  | { status: 'retryable'; kind: string; message: string }
  | { status: 'failure'; kind: string; message: string };

export function classifyError(err: unknown): { retryable: boolean; kind: string; message: string } {
  const e = err as { code?: unknown; details?: string; message?: string } | undefined;
  // grpc-js details can span lines and end in an empty "Resolution note:"
  const message = String(e?.details || e?.message || err).replace(/\s*\.?\s*Resolution note:\s*$/, '').replace(/\s+/g, ' ').trim();
  if (typeof e?.code === 'number') {
    const name = GRPC_STATUS[e.code] ?? `code ${e.code}`;
    return { retryable: RETRYABLE.has(e.code), kind: name, message: `${name}: ${message}` };
  }
  return { retryable: true, kind: (err as Error)?.name ?? 'Error', message };
}

// Partial success reaches us only as the exporter's diag warning, logged in the
// same synchronous step as its SUCCESS callback (otlp-export-delegate): a global
// diag logger notes it and the callback collects it, with nothing in between.
let partial: { rejectedDataPoints?: number; rejectedSpans?: number; errorMessage?: string } | null = null;
const diagListeners = new Set<(line: string) => void>();
let diagInstalled = false;

function installDiag(): void {
  if (diagInstalled) return;
  diagInstalled = true;
  const seen = new Set<string>();
  const forward = (level: string) => (message: string, ...args: unknown[]) => {
    if (message.startsWith('Received Partial Success response')) {
      try {
        partial = JSON.parse(String(args[0])) as typeof partial;
      } catch {
        partial = { errorMessage: String(args[0]) };
      }
      return;
    }
    const line = `otlp: ${level}: ${message}${args.length ? ' ' + args.map(String).join(' ') : ''}`;
    if (seen.has(line)) return;
    seen.add(line);
    for (const l of diagListeners) l(line);
  };
  const logger: DiagLogger = { error: forward('error'), warn: forward('warning'), info: () => {}, debug: () => {}, verbose: () => {} };
  diag.setLogger(logger, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
}

/** Routes the SDK's own warnings (once each) to `log`; returns the undo. */
export function onSdkWarnings(log: (line: string) => void): () => void {
  installDiag();
  diagListeners.add(log);
  return () => diagListeners.delete(log);
}

/** One export call as a value: success (maybe with rejected points or spans), retryable or failure. */
export function exportOnce<T>(exporter: OtlpExporterLike<T>, data: T): Promise<ExportOutcome> {
  installDiag();
  return new Promise((resolve) => {
    partial = null;
    exporter.export(data, (result) => {
      const ps = partial;
      partial = null;
      if (result.code === ExportResultCode.SUCCESS) {
        resolve({ status: 'success', rejected: Number(ps?.rejectedDataPoints ?? ps?.rejectedSpans ?? 0), message: ps?.errorMessage ?? '' });
        return;
      }
      const c = classifyError(result.error);
      resolve({ status: c.retryable ? 'retryable' : 'failure', kind: c.kind, message: c.message });
    });
  });
}

// ---- the OTLP gRPC exporter ---------------------------------------------------

export interface OtlpOptions {
  /** Endpoint, e.g. localhost:4317, http://collector:4317, https://otlp.example:443. */
  url?: string;
  /** gRPC metadata added to OTEL_EXPORTER_OTLP_[<SIGNAL>_]HEADERS (these win on a clash). */
  headers?: Record<string, string>;
  timeoutMillis?: number;
}

export interface ResolvedEndpoint {
  /** What we dial, as the user gave it (for messages). */
  url: string;
  /** Plaintext gRPC. */
  insecure: boolean;
}

/** Which OTEL_EXPORTER_OTLP_<SIGNAL>_* variables win over the generic ones. */
export type OtlpSignal = 'METRICS' | 'TRACES' | 'PROFILES';

function env(name: string, signal: OtlpSignal): string | undefined {
  const v = process.env[`OTEL_EXPORTER_OTLP_${signal}_${name}`]?.trim() || process.env[`OTEL_EXPORTER_OTLP_${name}`]?.trim();
  return v || undefined;
}

/** The SDK's default export timeout (OTLP exporter spec: 10 s). */
export const DEFAULT_OTLP_TIMEOUT_MS = 10_000;

/**
 * How long one export request may take before it counts as failed:
 * opts.timeoutMillis, else OTEL_EXPORTER_OTLP_<SIGNAL>_TIMEOUT, else
 * OTEL_EXPORTER_OTLP_TIMEOUT (ms, as the spec says), else 10 s. A value that
 * is not a positive number is skipped (with why), as the SDK does. We resolve
 * it ourselves and hand it to the SDK, so the timeout we name in messages and
 * the one gRPC applies are the same.
 */
export function resolveTimeoutMs(opts: OtlpOptions = {}, signal: OtlpSignal = 'METRICS', e: NodeJS.ProcessEnv = process.env): { ms: number; warnings: string[] } {
  const warnings: string[] = [];
  if (opts.timeoutMillis !== undefined && Number.isFinite(opts.timeoutMillis) && opts.timeoutMillis > 0) return { ms: opts.timeoutMillis, warnings };
  for (const name of [`OTEL_EXPORTER_OTLP_${signal}_TIMEOUT`, 'OTEL_EXPORTER_OTLP_TIMEOUT']) {
    const raw = e[name]?.trim();
    if (!raw) continue;
    const ms = Number(raw);
    if (Number.isFinite(ms) && ms > 0) return { ms, warnings };
    warnings.push(`${name}=${raw} is not a positive number of milliseconds; ignored`);
  }
  return { ms: DEFAULT_OTLP_TIMEOUT_MS, warnings };
}

/**
 * Which endpoint and whether it is plaintext. The SDK alone treats a URL
 * without a scheme as TLS unless OTEL_EXPORTER_OTLP_INSECURE=true, so a plain
 * "localhost:4317" would fail its handshake against a local collector; we dial
 * such an endpoint in plaintext unless TLS is asked for (OTEL_EXPORTER_OTLP_INSECURE=false
 * or a CA certificate given). http:// is plaintext, https:// is TLS, as in the SDK.
 */
export function resolveEndpoint(opts: OtlpOptions = {}, signal: OtlpSignal = 'METRICS'): ResolvedEndpoint {
  const url = (opts.url ?? env('ENDPOINT', signal) ?? 'http://localhost:4317').trim();
  if (/^https:\/\//i.test(url)) return { url, insecure: false };
  if (/^http:\/\//i.test(url)) return { url, insecure: true };
  const insecure = env('INSECURE', signal)?.toLowerCase();
  if (insecure === 'true') return { url, insecure: true };
  if (insecure === 'false' || env('CERTIFICATE', signal) !== undefined) return { url, insecure: false };
  return { url, insecure: true };
}

/**
 * An OTLPMetricExporter reading the standard variables itself (headers, timeout,
 * compression, certificates, client key/cert), with the endpoint and
 * plaintext choice of resolveEndpoint.
 */
export async function createOtlpExporter(opts: OtlpOptions = {}): Promise<CreatedOtlpExporter<ResourceMetrics>> {
  const { OTLPMetricExporter } = await import('@opentelemetry/exporter-metrics-otlp-grpc');
  const { endpoint, config, timeoutMs, warnings } = await grpcExporterConfig(opts, 'METRICS');
  return { exporter: new OTLPMetricExporter(config), endpoint, timeoutMs, warnings };
}

/** An OTLP exporter as built from the options and the environment. */
export interface CreatedOtlpExporter<T> {
  exporter: OtlpExporterLike<T>;
  endpoint: ResolvedEndpoint;
  /** The export timeout it applies (resolveTimeoutMs). */
  timeoutMs: number;
  /** Settings that were ignored, with why. */
  warnings: string[];
}

/**
 * The constructor options of an OTLP gRPC exporter of `signal` (the exporter
 * reads the other OTEL_EXPORTER_OTLP_[<SIGNAL>_]* variables itself), with the
 * endpoint and plaintext choice of resolveEndpoint.
 */
export async function grpcExporterConfig(opts: OtlpOptions, signal: OtlpSignal): Promise<{ endpoint: ResolvedEndpoint; config: OTLPGRPCExporterConfigNode; timeoutMs: number; warnings: string[] }> {
  const { createEmptyMetadata, createInsecureCredentials } = await import('@opentelemetry/otlp-grpc-exporter-base');
  const endpoint = resolveEndpoint(opts, signal);
  const timeout = resolveTimeoutMs(opts, signal);
  let metadata;
  if (opts.headers && Object.keys(opts.headers).length > 0) {
    metadata = createEmptyMetadata();
    for (const [k, v] of Object.entries(opts.headers)) metadata.set(k, v);
  }
  const config: OTLPGRPCExporterConfigNode = {
    url: endpoint.url,
    ...(endpoint.insecure && !/^http:\/\//i.test(endpoint.url) ? { credentials: createInsecureCredentials() } : {}),
    ...(metadata ? { metadata } : {}),
    timeoutMillis: timeout.ms,
  };
  return { endpoint, config, timeoutMs: timeout.ms, warnings: timeout.warnings };
}
