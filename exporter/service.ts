/**
 * The exporter service: ringflow.metrics.v1 and ringflow.spans.v1 -> OTLP
 * gRPC, offsets committed only after the backend accepted. One code path for
 * both signals; a SignalSpec says what differs (topic, record type, mapping,
 * which OTLP exporter). One consumer group per signal.
 *
 * Delivery: read_committed (the processor writes through transactions), one
 * partition batch at a time (kafkajs eachBatch), cut into chunks of at most
 * maxPerExport records. A chunk becomes one or more OTLP requests (metrics:
 * one per host, one Resource each; traces: one, a ResourceSpans per
 * service.name and host.name). A chunk's offsets are committed once every one
 * of its requests was accepted (or rejected for good); a request already
 * accepted is not sent again when another request of the chunk is retried.
 *
 * Backend down (UNAVAILABLE, DEADLINE_EXCEEDED ...): the same requests are
 * retried with exponential backoff (initialBackoffMs doubling to maxBackoffMs)
 * for as long as it takes, from inside eachBatch: kafkajs fetches nothing new
 * for us meanwhile, so memory holds one batch; we heartbeat so the group keeps
 * our partitions. Logged once per kind of failure per outage, and once on recovery.
 *
 * Rejected for good (INVALID_ARGUMENT ..., or a partial success naming
 * rejected points or spans): counted, logged once per kind (again every
 * minute with a count while it recurs: exporter/log-once.ts), committed:
 * retrying cannot make the backend accept the same data.
 *
 * At-least-once: an export the backend accepted whose offsets could not be
 * committed (a rebalance, a crash between the two) is sent again by the next
 * owner of the partition. Nothing is committed before it was accepted.
 */
import type { Kafka, Consumer, EachBatchPayload } from 'kafkajs';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { decodeCurrent } from '../schemas/index.ts';
import { describeKafkaError, isBrokerOutage, superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS, CONSUMER_OUTAGE_LIMIT_MS } from '../kafka/client.ts';
import type { FatalError } from '../common/errors.ts';
import { SPANS_TOPIC } from '../processor/spans.ts';
import {
  toResourceMetrics, baseResourceAttributes, createOtlpExporter, exportOnce, onSdkWarnings,
  type CreatedOtlpExporter, type ExportOutcome, type HistogramMode, type MetricPoint, type MetricExporterLike, type OtlpExporterLike, type OtlpOptions, type ResolvedEndpoint,
} from './otlp.ts';
import { createLogOnce } from './log-once.ts';
import { toReadableSpans, createOtlpTraceExporter, type SpanRecord, type SpanExporterLike } from './traces.ts';
import { toProfilesRequests, createOtlpProfilesExporter, PROFILES_TOPIC, DEFAULT_PROFILES_GROUP_ID } from './otlp-profiles.ts';
import type { ProfileOut } from '../processor/profiles.ts';

export const METRICS_TOPIC = 'ringflow.metrics.v1';
export const TRACES_TOPIC = SPANS_TOPIC;
export const DEFAULT_GROUP_ID = 'ringflow-exporter';
export const DEFAULT_TRACES_GROUP_ID = 'ringflow-exporter-traces';

/** What differs between signals. */
export interface SignalSpec<R, P> {
  /** 'metrics', 'traces'. */
  readonly signal: string;
  readonly topic: string;
  readonly groupId: string;
  /** Full name of the topic's Avro record; any other record is skipped as undecodable. */
  readonly recordName: string;
  /** What one record is called in messages: 'points', 'spans'. */
  readonly unit: string;
  /** Names the consumer in superviseConsumer's messages. */
  readonly consumerName: string;
  readonly maxPerExport: number;
  /** Pure: one chunk -> the requests that carry it (items: records in each), and the records that cannot be mapped. */
  map(records: R[]): { requests: { items: number; payload: P }[]; invalid: { reason: string; example: string }[] };
  createExporter(otlp: OtlpOptions | undefined): Promise<CreatedOtlpExporter<P>>;
}

/** What every signal's exporter takes. */
export interface ServiceOptions<P> {
  kafka: Kafka;
  groupId?: string;
  log: (line: string) => void;
  otlp?: OtlpOptions;
  /** Use this instead of an OTLP exporter built from `otlp` (tests). */
  exporter?: OtlpExporterLike<P>;
  topic?: string;
  /** Records per export chunk (each chunk is committed on its own). */
  maxPerExport?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a start or a running consumer waits for an absent broker before the exporter fails. Default CONSUMER_OUTAGE_LIMIT_MS. */
  outageLimitMs?: number;
}

export interface ExporterOptions extends ServiceOptions<ResourceMetrics> {
  histogramMode: HistogramMode;
  exporter?: MetricExporterLike;
  /** Points per export chunk. Default 2000. */
  maxPointsPerExport?: number;
}

export interface TraceExporterOptions extends ServiceOptions<ReadableSpan[]> {
  exporter?: SpanExporterLike;
  /** Spans per export chunk (and per request). Default 1000. */
  maxSpansPerExport?: number;
}

export interface ExporterCounters {
  /** Points or spans the backend accepted. */
  exported: number;
  /** Points or spans the backend refused for good (non-retryable errors, partial success) or we could not map. */
  rejected: number;
  /** Export attempts repeated after a retryable failure. */
  retries: number;
  /**
   * Points or spans sent again after their request timed out
   * (DEADLINE_EXCEEDED): the backend may have received and kept the first
   * copy as well (a frozen backend accepts it when it resumes), so each may
   * now be there twice. An upper bound on the duplicates our retries made.
   */
  possibleDuplicates: number;
  /** Records that did not decode (skipped and committed). */
  undecodable: number;
}

export interface Exporter<P = unknown> {
  /** 'metrics' or 'traces'. */
  readonly signal: string;
  readonly topic: string;
  /** What one record is called: 'points', 'spans'. */
  readonly unit: string;
  readonly counters: ExporterCounters;
  readonly endpoint: string;
  /** Connects and starts consuming; resolves once the consumer runs. */
  start(): Promise<void>;
  /** True while exports are failing and being retried. */
  holding(): boolean;
  /** Resolves when the consumer stopped for good (see superviseConsumer): the exporter cannot go on. */
  readonly failed: Promise<FatalError>;
  /** One export of our own payload through this signal's OTLP exporter (the exporter's own metrics); needs start(). */
  send(payload: P): Promise<ExportOutcome>;
  stop(): Promise<void>;
}

/** ringflow.metrics.v1 -> OTLP metrics. */
export function createExporter(opts: ExporterOptions): Exporter<ResourceMetrics> {
  const resource = baseResourceAttributes();
  const spec: SignalSpec<MetricPoint, ResourceMetrics> = {
    signal: 'metrics',
    topic: opts.topic ?? METRICS_TOPIC,
    groupId: opts.groupId ?? DEFAULT_GROUP_ID,
    recordName: 'io.ringflow.metrics.MetricPoint',
    unit: 'points',
    consumerName: 'exporter',
    maxPerExport: opts.maxPerExport ?? opts.maxPointsPerExport ?? 2000,
    map(points) {
      const mapped = toResourceMetrics(points, { histogramMode: opts.histogramMode, resource });
      return {
        requests: mapped.resources.map((r) => ({ items: r.points, payload: r.metrics })),
        invalid: mapped.invalid.map((b) => ({ reason: b.reason, example: b.point.name })),
      };
    },
    createExporter: createOtlpExporter,
  };
  return createSignalExporter(spec, opts);
}

/** ringflow.spans.v1 -> OTLP traces. */
export function createTraceExporter(opts: TraceExporterOptions): Exporter<ReadableSpan[]> {
  const resource = baseResourceAttributes();
  const spec: SignalSpec<SpanRecord, ReadableSpan[]> = {
    signal: 'traces',
    topic: opts.topic ?? TRACES_TOPIC,
    groupId: opts.groupId ?? DEFAULT_TRACES_GROUP_ID,
    recordName: 'io.ringflow.spans.Span',
    unit: 'spans',
    consumerName: 'trace exporter',
    maxPerExport: opts.maxPerExport ?? opts.maxSpansPerExport ?? 1000,
    map(records) {
      const mapped = toReadableSpans(records, { resource });
      return {
        requests: mapped.spans.length > 0 ? [{ items: mapped.spans.length, payload: mapped.spans }] : [],
        invalid: mapped.invalid.map((b) => ({ reason: b.reason, example: `${b.span.name} ${b.span.span_id}` })),
      };
    },
    createExporter: createOtlpTraceExporter,
  };
  return createSignalExporter(spec, opts);
}

/** ringflow.profiles.v1 -> OTLP profiles (alpha: the backend must accept profiles, e.g. a Collector with service.profilesSupport). */
export function createProfilesExporter(opts: ServiceOptions<Buffer> & { maxProfilesPerExport?: number }): Exporter<Buffer> {
  const resource = baseResourceAttributes();
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(resource)) if (typeof v === 'string') extra[k] = v;
  // service.name and host.name are the observed process's and host's (toProfilesRequest puts them last)
  delete extra['service.name'];
  const spec: SignalSpec<ProfileOut, Buffer> = {
    signal: 'profiles',
    topic: opts.topic ?? PROFILES_TOPIC,
    groupId: opts.groupId ?? DEFAULT_PROFILES_GROUP_ID,
    recordName: 'io.ringflow.profiles.Profile',
    unit: 'profiles',
    consumerName: 'profiles exporter',
    // a profile holds up to 200 stacks: 50 keep a request in the low MiB
    maxPerExport: opts.maxPerExport ?? opts.maxProfilesPerExport ?? 50,
    map(records) {
      return { requests: toProfilesRequests(records, extra), invalid: [] };
    },
    createExporter: createOtlpProfilesExporter,
  };
  return createSignalExporter(spec, opts);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The delivery logic every signal shares (see the top of this file). */
export function createSignalExporter<R, P>(spec: SignalSpec<R, P>, opts: ServiceOptions<P>): Exporter<P> {
  let onFatal!: (err: FatalError) => void;
  const failed = new Promise<FatalError>((resolve) => (onFatal = resolve));
  const { topic, groupId, unit } = spec;
  const maxPerExport = spec.maxPerExport;
  const initialBackoff = opts.initialBackoffMs ?? 250;
  const maxBackoff = opts.maxBackoffMs ?? 5000;
  const outageLimitMs = opts.outageLimitMs ?? CONSUMER_OUTAGE_LIMIT_MS;
  const counters: ExporterCounters = { exported: 0, rejected: 0, retries: 0, possibleDuplicates: 0, undecodable: 0 };
  let timeoutMs: number | undefined = opts.otlp?.timeoutMillis;
  const log = opts.log;
  // bounded, and a fault that keeps happening is said again (with a count) every minute
  const once = createLogOnce(opts.log);
  let outage: { kinds: Set<string>; since: number; held: number } | null = null;
  let stopping = false;
  let wake: (() => void) | null = null;
  let consumer: Consumer | undefined;
  let exporter: OtlpExporterLike<P> | undefined = opts.exporter;
  let endpoint: ResolvedEndpoint = { url: opts.otlp?.url ?? '(given exporter)', insecure: true };
  const undoWarnings = onSdkWarnings(log);

  /** Waits ms, or less if stopping; heartbeats on the way. */
  async function pause(ms: number, heartbeat: () => Promise<void>): Promise<void> {
    const until = Date.now() + ms;
    while (!stopping && Date.now() < until) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(1000, until - Date.now()));
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
      await heartbeat().catch(() => {}); // a failed heartbeat shows up as isStale() / a rejoin
    }
  }

  /**
   * Exports one chunk until each of its requests is accepted or refused for
   * good. False when the consumer lost the partition or is stopping: then the
   * chunk must not be committed.
   */
  async function exportChunk(records: R[], held: number, p: EachBatchPayload): Promise<boolean> {
    const mapped = spec.map(records);
    for (const bad of mapped.invalid) {
      counters.rejected++;
      once(`invalid:${bad.reason}`, `otlp: skipping ${unit} that cannot be mapped (${bad.reason}, e.g. ${bad.example}); counted as rejected`);
    }
    for (const r of mapped.requests) {
      let backoff = initialBackoff;
      for (;;) {
        if (stopping || !p.isRunning() || p.isStale()) return false;
        const out = await exportOnce(exporter!, r.payload);
        if (out.status === 'success') {
          counters.exported += r.items - out.rejected;
          if (out.rejected > 0) {
            counters.rejected += out.rejected;
            once(`partial:${out.message}`, `otlp: backend at ${endpoint.url} rejected ${out.rejected} of ${r.items} ${unit} (${out.message || 'no reason given'}); counted, not retried`);
          } else if (out.message) {
            once(`partial-warning:${out.message}`, `otlp: backend at ${endpoint.url} accepted with a warning: ${out.message}`);
          }
          break;
        }
        if (out.status === 'failure') {
          counters.rejected += r.items;
          once(`failure:${out.kind}`, `otlp: backend at ${endpoint.url} rejected ${r.items} ${unit} (${out.message}); counted, not retried`);
          break;
        }
        outage ??= { kinds: new Set(), since: Date.now(), held };
        // a request that timed out was sent and may still be taken: resending it may duplicate its items
        const timedOut = out.kind === 'DEADLINE_EXCEEDED';
        if (!outage.kinds.has(out.kind)) {
          outage.kinds.add(out.kind);
          log(`otlp: backend at ${endpoint.url} unavailable (${out.message}${timedOut && timeoutMs !== undefined ? `: no answer within ${timeoutMs} ms` : ''}); holding ${held} ${unit}, retrying${timedOut ? '; a timed-out request may still be accepted, so retries may duplicate (counted)' : ''}`);
        }
        counters.retries++;
        if (timedOut) counters.possibleDuplicates += r.items;
        await pause(backoff, p.heartbeat);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
    if (outage) {
      log(`otlp: backend at ${endpoint.url} accepting again after ${((Date.now() - outage.since) / 1000).toFixed(1)}s; delivering the ${outage.held} held ${unit}`);
      outage = null;
    }
    return true;
  }

  async function eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    let chunk: R[] = [];
    let lastOffset: string | null = null;
    let done = 0; // messages of the batch before this chunk
    const flush = async (i: number): Promise<boolean> => {
      if (lastOffset === null) return true;
      // held: this chunk and the rest of the batch, which waits behind it
      if (chunk.length > 0 && !(await exportChunk(chunk, batch.messages.length - done, p))) return false;
      if (stopping || p.isStale()) return false;
      p.resolveOffset(lastOffset);
      await consumer!.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(lastOffset) + 1n).toString() }]);
      chunk = [];
      lastOffset = null;
      done = i;
      return true;
    };
    for (let i = 0; i < batch.messages.length; i++) {
      const m = batch.messages[i]!;
      if (m.value) {
        try {
          const { schema, value } = decodeCurrent(m.value);
          if (schema.fullName !== spec.recordName) throw new Error(`a ${schema.fullName} record, not a ${spec.recordName}`);
          chunk.push(value as unknown as R);
        } catch (err) {
          counters.undecodable++;
          once(`decode:${(err as Error).message}`, `otlp: ${batch.topic}[${batch.partition}]@${m.offset} does not decode (${(err as Error).message}); skipped`);
        }
      }
      lastOffset = m.offset;
      if (chunk.length >= maxPerExport && !(await flush(i + 1))) return;
    }
    await flush(batch.messages.length);
  }

  return {
    signal: spec.signal,
    topic,
    unit,
    counters,
    get endpoint() {
      return endpoint.url;
    },
    holding: () => outage !== null,
    failed,
    send: (payload: P) => (exporter ? exportOnce(exporter, payload) : Promise.resolve({ status: 'retryable', kind: 'NotStarted', message: 'exporter not started' } as const)),
    async start() {
      if (!exporter) {
        const created = await spec.createExporter(opts.otlp);
        exporter = created.exporter;
        endpoint = created.endpoint;
        timeoutMs = created.timeoutMs;
        for (const w of created.warnings) log(`otlp: ${w}`);
      }
      // The broker may go away while we start (a restart of both, soak finding 3): connect and
      // subscribe are tried again with backoff for as long as a running consumer would wait for it.
      const since = Date.now();
      let backoff = initialBackoff;
      let attempts = 0;
      for (;;) {
        if (stopping) return;
        consumer = opts.kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false, metadataMaxAge: CONSUMER_METADATA_MAX_AGE_MS });
        superviseConsumer(consumer, spec.consumerName, log, onFatal, { outageLimitMs });
        try {
          attempts++;
          await consumer.connect();
          // a new group starts at the beginning: records written before the first start are exported too
          await consumer.subscribe({ topic, fromBeginning: true });
          break;
        } catch (err) {
          await consumer.disconnect().catch(() => {});
          if (!isBrokerOutage(err) || Date.now() - since >= outageLimitMs) {
            throw new Error(`export: cannot consume ${topic} (${describeKafkaError(err)}${attempts > 1 ? `; ${attempts} attempts over ${Math.round((Date.now() - since) / 1000)} s` : ''})`, { cause: err });
          }
          if (attempts === 1) log(`ringflow: ${spec.consumerName}: cannot reach Kafka to consume ${topic} (${describeKafkaError(err)}); retrying`);
          await pause(backoff, async () => {});
          backoff = Math.min(backoff * 2, maxBackoff);
        }
      }
      if (stopping) {
        await consumer.disconnect().catch(() => {});
        return;
      }
      if (attempts > 1) log(`ringflow: ${spec.consumerName}: consuming ${topic} after ${attempts} attempts over ${((Date.now() - since) / 1000).toFixed(1)} s`);
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch });
    },
    async stop() {
      stopping = true;
      wake?.();
      await consumer?.disconnect().catch(() => {});
      await exporter?.shutdown().catch(() => {});
      undoWarnings();
    },
  };
}
