/**
 * Kafka sink: an idempotent kafkajs producer (acks=all) fed in large batches.
 *
 * Ordering and idempotence: kafkajs keeps producer sequence numbers per
 * partition, and the broker keeps only the last 5 batches' metadata per
 * producer, so exactly one sendBatch is in flight at a time (KIP-98's
 * max.in.flight=1 for idempotence in this client); throughput comes from
 * making each request large instead.
 *
 * Size: the broker refuses a partition's record batch larger than the
 * topic's `max.message.bytes` (compressed size; the broker's
 * `message.max.bytes` is its default), and a whole request larger than
 * `socket.request.max.bytes`. Both are read at start (admin describeConfigs).
 * A request is cut by record count and by uncompressed bytes per (topic,
 * predicted partition), which bounds the compressed size; a record that alone
 * is over its budget goes alone, so a rejection never takes others with it
 * (kafkajs reports the first partition error of a request, and resending
 * partitions the broker had already appended under new sequence numbers
 * would be refused as out of order).
 *
 * Failure, by kind (classifySendError):
 * - retriable (broker away, leader moving): counted, logged once per outage
 *   (again at 10, 100, ... failures, and again for a later outage), backed
 *   off and retried with the same records; when the queue drains, one line
 *   says how many records were delivered since the outage began.
 * - too large / rejected (a non-retriable error about the records): the
 *   request is split in halves until the one record at fault is alone; that
 *   record goes to the dead-letter topic with headers naming its topic and
 *   the error (deadLetterOf: kafka/client.ts refusedDeadLetter, the form
 *   every stage writes; a too-large one keeps its first KiB, so the letter fits) or, if
 *   even that is refused, is dropped. Either way it is counted by reason in
 *   counters.drops / counters.lost, never retried forever.
 * - producer state lost (sequence or epoch refused): a new producer is
 *   created (a new producer id) and the same records sent again.
 * - fatal (authorization, unsupported configuration): one line and
 *   onFatal(FatalError): nothing will ever succeed, so the collector exits
 *   non-zero instead of wedging.
 * Memory stays bounded because the collector stops draining the kernel ring
 * while pending() is high (see collector.ts).
 */
import type { Producer, TopicMessages, CompressionTypes as CompressionType, ConfigResourceTypes, Kafka as KafkaClient } from 'kafkajs';
import { CompressionTypes, createPartitioner } from '../kafka/kafkajs.ts';
import { createKafkaClient, connectAdmin, ensureTopics, describeKafkaError, isTooLarge, refusedDeadLetter, DEADLETTER_TOPIC, DEFAULT_MAX_MESSAGE_BYTES } from '../kafka/client.ts';
import { murmur2 } from '../kafka/partitioner.ts';
// kafkajs's record encoder without a Buffer per varint (~21% of the live collector's main thread was its encoding)
import '../kafka/kafkajs-encoder.ts';
import { FatalError, EXIT } from '../common/errors.ts';
import type { EventSink, OutRecord, SinkCounters } from './sink.ts';
import type { DropReason } from './collector.ts';

export type Compression = 'zstd' | 'gzip' | 'none';

// the dead-letter topic and Kafka's default max.message.bytes are the shared ones
export { DEADLETTER_TOPIC, DEFAULT_MAX_MESSAGE_BYTES };
/** Kafka's default socket.request.max.bytes. */
export const DEFAULT_MAX_REQUEST_BYTES = 104_857_600;
/** Record batch v2 header (61 bytes) and the produce request's per-partition framing, rounded up. */
const BATCH_OVERHEAD = 128;
/** Per record in a v2 batch: length, attributes, deltas, key and value lengths, header count (varints), rounded up. */
const RECORD_OVERHEAD = 24;

export interface KafkaSinkOptions {
  brokers: string[];
  clientId: string;
  topics: readonly string[];
  partitions: number;
  compression: Compression;
  /** Records per produce request. */
  maxBatchRecords: number;
  log: (line: string) => void;
  /** How long to keep trying the first connection before giving up. */
  connectTimeoutMs?: number;
  /** An error nothing will fix (authorization, configuration): the caller should stop and exit with err.exitCode. */
  onFatal?: (err: FatalError) => void;
  /**
   * Wraps each producer the sink creates (tests inject a broker's refusal
   * into a real producer's sendBatch: authorization and sequence errors
   * cannot be provoked on the test broker). Identity by default.
   */
  wrapProducer?: (p: Producer) => Producer;
  /** Backoff bounds for retriable failures (ms). */
  backoffMs?: { min: number; max: number };
}

const COMPRESSION: Record<Compression, CompressionType> = {
  zstd: CompressionTypes.ZSTD,
  gzip: CompressionTypes.GZIP,
  none: CompressionTypes.None,
};

export type SendFailure = 'retriable' | 'too_large' | 'rejected' | 'producer_state' | 'fatal';

/** Kafka error types nothing but an operator can fix. */
const FATAL_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE', 'INVALID_REQUIRED_ACKS', 'UNSUPPORTED_VERSION',
  'UNSUPPORTED_COMPRESSION_TYPE', 'UNSUPPORTED_FOR_MESSAGE_FORMAT', 'INVALID_CONFIG', 'INVALID_TOPIC_EXCEPTION', 'POLICY_VIOLATION',
]);
const FATAL_NAMES = new Set(['KafkaJSSASLAuthenticationError', 'KafkaJSInvalidVarIntError']);
/** The broker refused the idempotent producer's state: a new producer id fixes it. */
const PRODUCER_STATE_TYPES = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'INVALID_PRODUCER_EPOCH', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_ID_MAPPING', 'PRODUCER_FENCED']);
/** New producers tried for one request before its records are taken to be the cause. */
const MAX_RENEWALS = 2;
/**
 * Refusals of the records themselves. kafkajs (like Kafka's Java client) marks
 * CORRUPT_MESSAGE retriable, a CRC damaged in transit; it has already retried
 * the request by the time sendBatch fails, so here it is about the records.
 */
const RECORD_TYPES = new Set(['CORRUPT_MESSAGE', 'INVALID_RECORD', 'INVALID_TIMESTAMP']);
/** Errors of the connection, not of the records: kafkajs marks them retriable, but its wrappers do not carry that. */
const CONNECTION_NAMES = new Set([
  'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSBrokerNotFound',
  'KafkaJSMetadataNotLoaded', 'KafkaJSLockTimeout', 'KafkaJSTimeout', 'KafkaJSNumberOfRetriesExceeded',
]);
/** A bug, in kafkajs or here, set off by what was sent: the records at fault are found by splitting. */
const PROGRAM_ERRORS = new Set(['TypeError', 'RangeError']);

/**
 * What to do about a failed sendBatch. kafkajs wraps the broker's error
 * (KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, each with
 * `cause`), so the whole chain is looked at; the most specific answer wins.
 * Pure.
 */
export function classifySendError(err: unknown): SendFailure {
  const chain: { name?: string; type?: string; retriable?: boolean }[] = [];
  for (let e = err as { name?: string; type?: string; retriable?: boolean; cause?: unknown; originalError?: unknown } | undefined, i = 0; e && i < 8; i++) {
    if (typeof e !== 'object') break;
    chain.push(e);
    const next = (e.cause ?? e.originalError) as typeof e;
    if (next === e) break;
    e = next;
  }
  const has = (f: (e: (typeof chain)[number]) => boolean) => chain.some(f);
  if (has((e) => FATAL_TYPES.has(e.type ?? '') || FATAL_NAMES.has(e.name ?? ''))) return 'fatal';
  if (has((e) => PRODUCER_STATE_TYPES.has(e.type ?? ''))) return 'producer_state';
  if (isTooLarge(err)) return 'too_large';
  if (has((e) => PROGRAM_ERRORS.has(e.name ?? '') || RECORD_TYPES.has(e.type ?? ''))) return 'rejected';
  if (has((e) => CONNECTION_NAMES.has(e.name ?? ''))) return 'retriable';
  // the deepest error that says anything decides: a protocol error's own flag
  for (let i = chain.length - 1; i >= 0; i--) {
    const e = chain[i]!;
    if (e.type !== undefined) return e.retriable === false ? 'rejected' : 'retriable';
  }
  // no broker error code: kafkajs's own rule, retriable unless marked otherwise
  return chain[0]?.retriable === false ? 'rejected' : 'retriable';
}

/**
 * Bytes a record takes in a v2 record batch, uncompressed (an upper bound of
 * its share of the compressed batch), cheaply, for the hot path: the key at 3
 * bytes per UTF-16 unit (no UTF-8 encoding per record) and no headers (the
 * collector's records have none). kafka/client.ts recordBytes counts both
 * exactly, for the stages' records that carry headers.
 */
export function cheapRecordBytes(r: OutRecord): number {
  return r.value.length + r.key.length * 3 + RECORD_OVERHEAD;
}

export interface SizeLimits {
  /** Largest record batch per partition, per topic (max.message.bytes). */
  perTopic: ReadonlyMap<string, number>;
  /** Partitions per topic, to predict which batch a record joins. */
  partitions: ReadonlyMap<string, number>;
  /** Largest produce request (socket.request.max.bytes). */
  request: number;
}

/**
 * Cuts the next request off the front of `records`: at most maxRecords, each
 * (topic, partition) batch within its topic's limit, the request within the
 * request limit. A record over its batch budget alone is returned alone.
 * Returns how many records from the front to send. Pure.
 */
export function cutRequest(records: readonly OutRecord[], maxRecords: number, limits: SizeLimits, partitionOf: (r: OutRecord, partitions: number) => number): number {
  const used = new Map<string, Float64Array>();
  const requestBudget = limits.request / 2; // headroom for the request's own framing and for zstd's worst case
  let total = 0;
  let n = 0;
  // records come in runs of one topic: look its limits up once per run
  let topic: string | undefined;
  let budget = 0;
  let parts = 1;
  let u: Float64Array = new Float64Array(1);
  for (const r of records) {
    if (n >= maxRecords) break;
    if (r.topic !== topic) {
      topic = r.topic;
      budget = (limits.perTopic.get(topic) ?? DEFAULT_MAX_MESSAGE_BYTES) - BATCH_OVERHEAD;
      parts = limits.partitions.get(topic) ?? 1;
      let t = used.get(topic);
      if (!t) used.set(topic, (t = new Float64Array(parts)));
      u = t;
    }
    const size = cheapRecordBytes(r);
    if (size > budget) return n === 0 ? 1 : n; // alone: a refusal then concerns this record only
    const p = parts > 1 ? partitionOf(r, parts) : 0;
    if (u[p]! + size > budget || total + size > requestBudget) break;
    u[p]! += size;
    total += size;
    n++;
  }
  return n;
}

/**
 * The partition kafka/partitioner.ts gives a keyed record (murmur2 of the
 * key, positive, modulo the partition count; every record here has a key),
 * without its per-call objects: cutRequest asks for every record of a request.
 * Hashes are cached per key; the cache starts afresh when full.
 */
export function keyPartitioner(): (r: OutRecord, partitions: number) => number {
  const cache = new Map<string, number>();
  return (r, partitions) => {
    let h = cache.get(r.key);
    if (h === undefined) {
      if (cache.size >= 65_536) cache.clear();
      h = murmur2(Buffer.from(r.key)) & 0x7fffffff; // Kafka's toPositive
      cache.set(r.key, h);
    }
    return h % partitions;
  };
}

/** Bytes of a too-large record kept in its dead letter (kafka/client.ts, shared with the processor's stages). */
export { OVERSIZED_KEEP_BYTES } from '../kafka/client.ts';

/**
 * The dead letter of one record Kafka refused for its topic, in the one form
 * every stage writes (kafka/client.ts refusedDeadLetter); never written, so no
 * source partition or offset. A too-large record keeps its first
 * OVERSIZED_KEEP_BYTES (so the letter itself fits), a refused one all of it.
 * Pure.
 */
export function deadLetterOf(r: OutRecord, kind: 'too_large' | 'rejected', error: string): { key: string; value: Buffer; headers: Record<string, string> } {
  return kind === 'too_large'
    ? refusedDeadLetter(r, 'oversized', (kept) => `${error}; a record of ${r.value.length} bytes for ${r.topic}, its first ${kept} bytes kept`)
    : refusedDeadLetter(r, 'rejected', () => error);
}

/** Reads max.message.bytes per topic and socket.request.max.bytes (the broker's) from the cluster. */
async function readLimits(kafka: KafkaClient, brokers: string[], topics: readonly string[]): Promise<{ perTopic: Map<string, number>; partitions: Map<string, number>; request: number }> {
  const admin = await connectAdmin(kafka, brokers);
  try {
    const perTopic = new Map<string, number>();
    const partitions = new Map<string, number>();
    const { topics: meta } = await admin.fetchTopicMetadata({ topics: [...topics] });
    for (const t of meta) partitions.set(t.name, Math.max(1, t.partitions.length));
    const TOPIC = 2 as ConfigResourceTypes; // kafkajs ConfigResourceTypes.TOPIC
    const BROKER = 4 as ConfigResourceTypes; // kafkajs ConfigResourceTypes.BROKER
    const cluster = await admin.describeCluster();
    const res = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        ...topics.map((name) => ({ type: TOPIC, name, configNames: ['max.message.bytes'] })),
        ...cluster.brokers.map((b) => ({ type: BROKER, name: String(b.nodeId), configNames: ['message.max.bytes', 'socket.request.max.bytes'] })),
      ],
    });
    let brokerMax = Infinity;
    let request = Infinity;
    for (const r of res.resources) {
      for (const e of r.configEntries) {
        const v = Number(e.configValue);
        if (!Number.isSafeInteger(v) || v <= 0) continue;
        if (r.resourceType === TOPIC && e.configName === 'max.message.bytes') perTopic.set(r.resourceName, v);
        if (r.resourceType === BROKER && e.configName === 'message.max.bytes') brokerMax = Math.min(brokerMax, v);
        if (r.resourceType === BROKER && e.configName === 'socket.request.max.bytes') request = Math.min(request, v);
      }
    }
    // a topic whose config could not be read: the brokers' default for every topic
    for (const t of topics) if (!perTopic.has(t)) perTopic.set(t, Number.isFinite(brokerMax) ? brokerMax : DEFAULT_MAX_MESSAGE_BYTES);
    return { perTopic, partitions, request: Number.isFinite(request) ? request : DEFAULT_MAX_REQUEST_BYTES };
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

export function createKafkaSink(opts: KafkaSinkOptions): EventSink & { readonly limits: () => SizeLimits } {
  const kafka = createKafkaClient(opts.brokers, opts.clientId, opts.connectTimeoutMs);
  const backoff = opts.backoffMs ?? { min: 200, max: 5000 };
  const topics = [...new Set([...opts.topics, DEADLETTER_TOPIC])];
  let producer: Producer | undefined;
  let producerReady = false;
  const queue: OutRecord[][] = [];
  let queueHead = 0; // index into queue[0]
  let queued = 0;
  /** Halves of refused requests, sent before anything new (last in, first out: the queue's order). */
  const splits: OutRecord[][] = [];
  let splitHeld = 0;
  let inFlight: OutRecord[] | null = null;
  let closed = false;
  let fatal: FatalError | undefined;
  let backoffMs = 0;
  const counters: SinkCounters & { drops: Map<string, number>; lost: Map<number, number> } = { produced: new Map(), sendErrors: 0, drops: new Map(), lost: new Map() };
  const progressCbs: (() => void)[] = [];
  let waiters: (() => void)[] = [];
  let limits: SizeLimits = { perTopic: new Map(), partitions: new Map(), request: DEFAULT_MAX_REQUEST_BYTES };
  const partitionOf = keyPartitioner();
  /** Lines already said, by kind, and how often each kind happened: said again at 10, 100, ... */
  const said = new Map<string, number>();
  const report = (kind: string, line: (n: number) => string): void => {
    const n = (said.get(kind) ?? 0) + 1;
    said.set(kind, n);
    if (n === 1 || Number.isInteger(Math.log10(n))) opts.log(line(n));
  };
  /** New producers started for a request the broker refused for its sequence state. */
  const renewed = new WeakMap<OutRecord[], number>();
  /** The current outage of retriable failures: when it began and what was delivered since. */
  let outage: { start: number; failures: number; delivered: number; recovered: boolean } | null = null;

  function cutFromQueue(): OutRecord[] {
    // look at up to maxBatchRecords records from the front without copying chunks
    const view: OutRecord[] = [];
    let ci = 0;
    let off = queueHead;
    while (view.length < opts.maxBatchRecords && ci < queue.length) {
      const chunk = queue[ci]!;
      const n = Math.min(opts.maxBatchRecords - view.length, chunk.length - off);
      for (let i = 0; i < n; i++) view.push(chunk[off + i]!);
      ci++;
      off = 0;
    }
    const n = cutRequest(view, opts.maxBatchRecords, limits, partitionOf);
    let left = n;
    while (left > 0) {
      const chunk = queue[0]!;
      const k = Math.min(left, chunk.length - queueHead);
      queueHead += k;
      left -= k;
      if (queueHead >= chunk.length) {
        queue.shift();
        queueHead = 0;
      }
    }
    queued -= n;
    return n === view.length ? view : view.slice(0, n);
  }

  // an OutRecord already has the key and value kafkajs reads from a message: pass it as is
  function toTopicMessages(records: OutRecord[]): TopicMessages[] {
    const byTopic = new Map<string, OutRecord[]>();
    for (const r of records) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      list.push(r);
    }
    return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
  }

  function countProduced(batch: OutRecord[]): void {
    let type = -1;
    let run = 0;
    const flush = () => {
      if (run > 0) counters.produced.set(type, (counters.produced.get(type) ?? 0) + run);
    };
    for (const r of batch) {
      if (r.type !== type) {
        flush();
        type = r.type;
        run = 0;
      }
      run++;
    }
    flush();
  }

  function held(): number {
    return queued + splitHeld + (inFlight?.length ?? 0);
  }

  function settle(): void {
    for (const cb of progressCbs) {
      try {
        cb();
      } catch (err) {
        internalError(err); // one listener's fault must not stop the waiters below or the next send
      }
    }
    if (held() === 0) {
      if (outage) {
        opts.log(`kafka: sending again; delivered ${outage.delivered} events since the outage began ${((Date.now() - outage.start) / 1000).toFixed(1)} s ago (${outage.failures} failed attempts); nothing held`);
        outage = null;
      }
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  }

  function pump(): void {
    if (closed || fatal || inFlight !== null || !producer) return;
    let batch = splits.pop();
    if (batch) splitHeld -= batch.length;
    else if (queued > 0) batch = cutFromQueue();
    if (!batch || batch.length === 0) return;
    inFlight = batch;
    send(batch);
  }

  function done(batch: OutRecord[]): void {
    if (outage) {
      outage.delivered += batch.length;
      if (!outage.recovered) {
        outage.recovered = true;
        said.delete('retriable'); // a later outage is reported again
      }
    }
    backoffMs = 0;
    inFlight = null;
    settle();
    pump();
  }

  function lose(r: OutRecord, reason: DropReason): void {
    counters.drops.set(reason, (counters.drops.get(reason) ?? 0) + 1);
    counters.lost.set(r.type, (counters.lost.get(r.type) ?? 0) + 1);
  }

  /** The producer, connected first if it is a new one (renewProducer): a failed connect is retried like a failed send. */
  async function connected(): Promise<Producer> {
    const p = producer!;
    if (!producerReady) {
      await p.connect();
      if (p === producer) producerReady = true;
    }
    return p;
  }

  function send(batch: OutRecord[]): void {
    connected()
      .then((p) => p.sendBatch({ topicMessages: toTopicMessages(batch), acks: -1, compression: COMPRESSION[opts.compression] }))
      .then(
        () => {
          countProduced(batch);
          done(batch);
        },
        (err: unknown) => failed(batch, err),
      )
      .catch(internalError);
  }

  /** A throw in our own handlers (a progress callback, a log function): reported, never an unhandled rejection. */
  function internalError(err: unknown): void {
    const e = err as { stack?: string; message?: string };
    report('internal', (n) => `kafka: internal error in the sink's send handling (${n} so far): ${e?.stack ?? e?.message ?? String(err)}`);
  }

  function failed(batch: OutRecord[], err: unknown): void {
    counters.sendErrors++;
    if (closed) return;
    let kind = classifySendError(err);
    const what = describeKafkaError(err);
    if (kind === 'fatal') {
      fatal = new FatalError(`Kafka refuses this collector's records and will not accept them later (${what}); check the ACLs and broker configuration for ${opts.clientId} on ${opts.brokers.join(',')}`, { exitCode: EXIT.kafka, cause: err });
      opts.log(`kafka: ${fatal.message}; holding ${held()} events and stopping`);
      opts.onFatal?.(fatal);
      return;
    }
    // a new producer that is refused again for the same records: the records are the cause (split and find them)
    const renewals = (renewed.get(batch) ?? 0) + (kind === 'producer_state' ? 1 : 0);
    if (kind === 'producer_state' && renewals > MAX_RENEWALS) kind = 'rejected';
    if (kind === 'too_large' || kind === 'rejected') {
      if (batch.length > 1) {
        report(`split:${kind}`, (n) => `kafka: a request of ${batch.length} records was refused (${what}); splitting it to find the records at fault (${n} time${n > 1 ? 's' : ''} so far)`);
        const half = batch.length >> 1;
        splits.push(batch.slice(half), batch.slice(0, half));
        splitHeld += batch.length;
        inFlight = null;
        pump();
        return;
      }
      deadLetter(batch, kind, err);
      return;
    }
    if (kind === 'producer_state') {
      renewed.set(batch, renewals);
      report('producer_state', (n) => `kafka: the broker refused the producer's sequence state (${what}); starting a new producer and sending the same records (${n} time${n > 1 ? 's' : ''} so far)`);
      void renewProducer().then(() => (closed ? undefined : send(batch)), (e) => retryLater(batch, e)).catch(internalError);
      return;
    }
    retryLater(batch, err);
  }

  function retryLater(batch: OutRecord[], err: unknown): void {
    if (closed) return;
    // a failure before the queue drained from the last outage continues it: the drain line covers both
    if (!outage) outage = { start: Date.now(), failures: 0, delivered: 0, recovered: false };
    outage.recovered = false;
    outage.failures++;
    report('retriable', (n) => `kafka: send failed (${describeKafkaError(err)}); holding ${held()} events and retrying${n > 1 ? ` (${n} failed attempts in this outage)` : ''}`);
    backoffMs = Math.min(Math.max(backoffMs * 2, backoff.min), backoff.max);
    setTimeout(() => (closed ? undefined : send(batch)), backoffMs).unref?.();
  }

  /** One record Kafka refused for its topic: to the dead-letter topic, or dropped; counted either way. */
  function deadLetter(batch: OutRecord[], kind: 'too_large' | 'rejected', err: unknown): void {
    const r = batch[0]!;
    const error = describeKafkaError(err);
    const letter = deadLetterOf(r, kind, error);
    const dropped = (why: unknown) => {
      lose(r, kind);
      report(`drop:${kind}`, (n) => `kafka: a ${r.value.length}-byte record for ${r.topic} was refused (${error}) and could not be dead-lettered (${describeKafkaError(why)}); dropped and counted as ${kind} (${n} so far)`);
      done([]);
    };
    if (r.topic === DEADLETTER_TOPIC) return dropped(err);
    connected().then((p) => p.send({ topic: DEADLETTER_TOPIC, messages: [letter], acks: -1, compression: COMPRESSION[opts.compression] })).then(
      () => {
        const reason: DropReason = kind === 'too_large' ? 'too_large_dead_lettered' : 'rejected_dead_lettered';
        lose(r, reason);
        report(`dlq:${kind}`, (n) => `kafka: a ${r.value.length}-byte record for ${r.topic} was refused (${error}); written to ${DEADLETTER_TOPIC} and counted as ${reason} (${n} so far)`);
        done([]);
      },
      (dlqErr: unknown) => {
        counters.sendErrors++;
        const k = classifySendError(dlqErr);
        // the dead-letter topic is away for now: try the record again later (it will be refused and come back here)
        if (k === 'retriable' || k === 'producer_state') return retryLater(batch, dlqErr);
        dropped(dlqErr);
      },
    ).catch(internalError);
  }

  function newProducer(): Producer {
    const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner });
    return opts.wrapProducer ? opts.wrapProducer(p) : p;
  }

  /** A new producer, so a new producer id and sequence numbers from 0; connected by the next send. */
  async function renewProducer(): Promise<void> {
    const old = producer;
    producer = newProducer();
    producerReady = false;
    await old?.disconnect().catch(() => {});
  }

  return {
    counters,
    limits: () => limits,
    async start() {
      const admin = await connectAdmin(kafka, opts.brokers);
      try {
        await ensureTopics(admin, topics, opts.partitions);
      } finally {
        await admin.disconnect();
      }
      try {
        limits = await readLimits(kafka, opts.brokers, topics);
      } catch (err) {
        // not fatal: sending works without knowing, and a refusal is split anyway
        opts.log(`kafka: could not read the topics' max.message.bytes (${describeKafkaError(err)}); assuming Kafka's default ${DEFAULT_MAX_MESSAGE_BYTES}`);
      }
      producer = newProducer();
      try {
        await producer.connect();
        producerReady = true;
      } catch (err) {
        throw new FatalError(`cannot start a Kafka producer on ${opts.brokers.join(',')} (${describeKafkaError(err)})`, { exitCode: EXIT.kafka, cause: err });
      }
      pump();
    },
    enqueue(records) {
      if (records.length === 0) return;
      queue.push(records as OutRecord[]);
      queued += records.length;
      pump();
    },
    pending() {
      return held();
    },
    onProgress(cb) {
      progressCbs.push(cb);
    },
    flush(timeoutMs) {
      if (held() === 0) return Promise.resolve(true);
      if (fatal) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        waiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
        pump();
      });
    },
    async close() {
      closed = true;
      await producer?.disconnect().catch(() => {});
    },
  };
}
