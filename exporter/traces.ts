/**
 * ringflow.spans.v1 spans -> OTLP, through the OTLP gRPC trace exporter.
 *
 * The processor's spans are finished (one record per span, written once), so
 * there is no TracerProvider here: we build the trace SDK's export model
 * (ReadableSpan) from each record and hand a batch to OTLPTraceExporter.export().
 *
 * Mapping (Span record field -> OTLP):
 *   trace_id, span_id           -> trace_id, span_id (hex, exact)
 *   parent_span_id              -> parent_span_id; the parent is remote for a SERVER span
 *                                  (it lives across the connection), local otherwise
 *                                  (a CLIENT span's traceparent names its own process's span)
 *   trace_state, trace_flags    -> trace_state (the captured text, unchanged), flags (low byte)
 *   name                        -> name
 *   kind INTERNAL|SERVER|CLIENT -> SPAN_KIND_INTERNAL|SERVER|CLIENT
 *   start_ns, end_ns            -> start_time_unix_nano, end_time_unix_nano (exact ns)
 *   status, status_message      -> status {code UNSET|OK|ERROR, message}
 *   attributes                  -> attributes: NUMERIC_SPAN_ATTRIBUTES as ints, BOOLEAN_SPAN_ATTRIBUTES
 *                                  as bools, the rest strings; service.name, host.name, process.pid
 *                                  (an int) and container.id are Resource attributes, not repeated
 *                                  on the span
 *   service_name, host          -> Resource service.name (the observed process), host.name
 *                                  (one Resource per observed process, over OTEL_RESOURCE_ATTRIBUTES)
 *   protocol                    -> not exported (the attributes already say it)
 * Scope: name "ringflow", version of package.json. No events, no links.
 */
import { SpanKind, SpanStatusCode, isValidSpanId, isValidTraceId, type Attributes, type SpanContext, type SpanStatus, type TraceState } from '@opentelemetry/api';
import { TraceState as W3CTraceState } from '@opentelemetry/core';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { BOOLEAN_SPAN_ATTRIBUTES, NUMERIC_SPAN_ATTRIBUTES, type Span } from '../processor/spans.ts';
import { grpcExporterConfig, nsToHrTime, SCOPE_NAME, SCOPE_VERSION, type CreatedOtlpExporter, type OtlpExporterLike, type OtlpOptions } from './otlp.ts';

/** A decoded schemas/spans.avsc record (longs as BigInt, enums as their symbols). */
export type SpanRecord = Omit<Span, 'key'>;

export type SpanExporterLike = OtlpExporterLike<ReadableSpan[]>;

/** service.name of a span whose record has none (the OTel resource spec's fallback). */
export const UNKNOWN_SERVICE = 'unknown_service';

/**
 * Span attributes that identify the Resource (the observed process): carried
 * there, not on each span. process.pid is one (issue 10): a Resource per
 * observed process, as an SDK inside it would have made.
 */
const RESOURCE_KEYS: ReadonlySet<string> = new Set(['service.name', 'host.name', 'process.pid', 'service.namespace', 'service.instance.id', 'container.id']);
/** Resource attributes of the span's own process besides service.name and host.name, typed. */
function processResource(attrs: Readonly<Record<string, string>>): Attributes {
  const out: Attributes = {};
  for (const key of RESOURCE_KEYS) {
    if (key === 'service.name' || key === 'host.name') continue;
    const v = attrs[key];
    if (v === undefined || v === '') continue;
    out[key] = key === 'process.pid' && /^\d{1,15}$/.test(v) ? Number(v) : v;
  }
  return out;
}

const KINDS: Readonly<Record<SpanRecord['kind'], SpanKind>> = { INTERNAL: SpanKind.INTERNAL, SERVER: SpanKind.SERVER, CLIENT: SpanKind.CLIENT };
const STATUS: Readonly<Record<SpanRecord['status'], SpanStatusCode>> = { UNSET: SpanStatusCode.UNSET, OK: SpanStatusCode.OK, ERROR: SpanStatusCode.ERROR };

/**
 * The record's attribute text, typed: integers and booleans as the processor
 * documents them (a value that is not one stays text rather than being lost).
 */
export function spanAttributes(attrs: Readonly<Record<string, string>>): Attributes {
  const out: Attributes = {};
  for (const [key, value] of Object.entries(attrs)) {
    if (RESOURCE_KEYS.has(key)) continue;
    if (NUMERIC_SPAN_ATTRIBUTES.has(key) && /^-?\d+$/.test(value) && Number.isSafeInteger(Number(value))) out[key] = Number(value);
    else if (BOOLEAN_SPAN_ATTRIBUTES.has(key) && (value === 'true' || value === 'false')) out[key] = value === 'true';
    else out[key] = value;
  }
  return out;
}

/**
 * The tracestate of the record as captured: serialize() gives back the exact
 * text (the SDK's TraceState would re-serialise it, dropping what it does not
 * parse); get/set/unset work on the parsed list.
 */
class CapturedTraceState implements TraceState {
  readonly #raw: string;
  constructor(raw: string) {
    this.#raw = raw;
  }
  get(key: string): string | undefined {
    return new W3CTraceState(this.#raw).get(key);
  }
  set(key: string, value: string): TraceState {
    return new W3CTraceState(this.#raw).set(key, value);
  }
  unset(key: string): TraceState {
    return new W3CTraceState(this.#raw).unset(key);
  }
  serialize(): string {
    return this.#raw;
  }
}

/** Why a record cannot become an OTLP span, or null. */
export function invalidSpan(r: SpanRecord): string | null {
  if (!isValidTraceId(r.trace_id)) return `trace_id "${r.trace_id}" is not 32 hex digits, not all zero`;
  if (!isValidSpanId(r.span_id)) return `span_id "${r.span_id}" is not 16 hex digits, not all zero`;
  if (r.parent_span_id !== null && !isValidSpanId(r.parent_span_id)) return `parent_span_id "${r.parent_span_id}" is not 16 hex digits, not all zero`;
  if (!(r.kind in KINDS)) return `unknown kind ${String(r.kind)}`;
  if (!(r.status in STATUS)) return `unknown status ${String(r.status)}`;
  return null;
}

/** One record as a ReadableSpan of `resource`. */
export function toReadableSpan(r: SpanRecord, resource: Resource): ReadableSpan {
  const traceFlags = r.trace_flags & 0xff;
  const ctx: SpanContext = {
    traceId: r.trace_id,
    spanId: r.span_id,
    traceFlags,
    ...(r.trace_state !== null ? { traceState: new CapturedTraceState(r.trace_state) } : {}),
  };
  const status: SpanStatus = { code: STATUS[r.status], ...(r.status_message !== null ? { message: r.status_message } : {}) };
  const end = r.end_ns < r.start_ns ? r.start_ns : r.end_ns;
  return {
    name: r.name,
    kind: KINDS[r.kind],
    spanContext: () => ctx,
    ...(r.parent_span_id !== null
      ? { parentSpanContext: { traceId: r.trace_id, spanId: r.parent_span_id, traceFlags, isRemote: r.kind === 'SERVER' } }
      : {}),
    startTime: nsToHrTime(r.start_ns),
    endTime: nsToHrTime(end),
    duration: nsToHrTime(end - r.start_ns),
    ended: true,
    status,
    attributes: spanAttributes(r.attributes),
    links: [],
    events: [],
    resource,
    instrumentationScope: { name: SCOPE_NAME, version: SCOPE_VERSION },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

export interface TraceMapOptions {
  /** Attributes of every Resource (OTEL_RESOURCE_ATTRIBUTES ...); service.name and host.name come from each span. */
  resource: Attributes;
}

export interface MappedSpans {
  /** One per observed process (service.name, host.name, process.pid...), in order of first appearance; each span holds that Resource object. */
  resources: { service: string; host: string; resource: Resource; spans: ReadableSpan[] }[];
  /** Every mapped span, in record order (what one export sends). */
  spans: ReadableSpan[];
  /** Records that could not be mapped, with why. */
  invalid: { span: SpanRecord; reason: string }[];
}

/**
 * Pure: records -> ReadableSpans, one Resource object per (service.name,
 * host.name) shared by its spans: the OTLP serializer groups spans by
 * Resource identity, so a batch becomes one ResourceSpans per pair.
 */
export function toReadableSpans(records: readonly SpanRecord[], opts: TraceMapOptions): MappedSpans {
  const groups = new Map<string, MappedSpans['resources'][number]>();
  const spans: ReadableSpan[] = [];
  const invalid: MappedSpans['invalid'] = [];
  for (const r of records) {
    const reason = invalidSpan(r);
    if (reason) {
      invalid.push({ span: r, reason });
      continue;
    }
    const service = r.service_name === '' ? UNKNOWN_SERVICE : r.service_name;
    const own = processResource(r.attributes);
    const id = JSON.stringify([service, r.host, Object.entries(own)]);
    let g = groups.get(id);
    if (!g) {
      const attrs: Attributes = { ...opts.resource, ...own, 'service.name': service };
      if (r.host !== '') attrs['host.name'] = r.host;
      else delete attrs['host.name'];
      groups.set(id, (g = { service, host: r.host, resource: resourceFromAttributes(attrs), spans: [] }));
    }
    const s = toReadableSpan(r, g.resource);
    g.spans.push(s);
    spans.push(s);
  }
  return { resources: [...groups.values()], spans, invalid };
}

/**
 * An OTLPTraceExporter reading the standard variables itself
 * (OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION, certificates),
 * with the endpoint and plaintext choice of resolveEndpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT first).
 */
export async function createOtlpTraceExporter(opts: OtlpOptions = {}): Promise<CreatedOtlpExporter<ReadableSpan[]>> {
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc');
  const { endpoint, config, timeoutMs, warnings } = await grpcExporterConfig(opts, 'TRACES');
  return { exporter: new OTLPTraceExporter(config), endpoint, timeoutMs, warnings };
}
