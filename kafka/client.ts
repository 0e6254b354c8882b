/**
 * Kafka plumbing every stage uses: client creation, admin (topics and their
 * leaders), consumer supervision and retries of retriable calls. The
 * collector's producer (collector/kafka-sink.ts) and the processor's and
 * exporter's consumers all connect through here.
 */
import type { Kafka as KafkaClient, Admin, Consumer, IHeaders, CompressionTypes } from 'kafkajs';
import kafkajs, { Kafka, logLevel } from './kafkajs.ts';
import { FatalError, EXIT } from '../common/errors.ts';
export function describeKafkaError(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { message?: string } };
  const msg = e?.message ?? String(err);
  const cause = e?.cause?.message && !msg.includes(e.cause.message) ? ` (${e.cause.message})` : '';
  return `${e?.name ?? 'Error'}: ${msg}${cause}`;
}

export function createKafkaClient(brokers: string[], clientId: string, connectTimeoutMs = 5000): KafkaClient {
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: Math.min(connectTimeoutMs, 3000),
    requestTimeout: 30000,
    // kafkajs logs every failed attempt at ERROR; we report failures ourselves, once per kind.
    logLevel: process.env.RINGFLOW_KAFKA_LOG === 'debug' ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 3 },
  });
}

/** Connect an admin client or fail with one line naming the brokers and the fix. */
export async function connectAdmin(kafka: KafkaClient, brokers: string[]): Promise<Admin> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return admin;
  } catch (err) {
    await admin.disconnect().catch(() => {});
    throw new FatalError(
      `cannot reach Kafka at ${brokers.join(',')} (${describeKafkaError(err)}); start a local broker with "ringflow kafka start" or pass --brokers HOST:PORT`,
      { exitCode: EXIT.kafka, cause: err, retriable: true },
    );
  }
}

/**
 * Create missing topics; replication is capped by the cluster's size. Other
 * ringflow processes may be creating the same topics at the same moment
 * (`ringflow up` starts them together): "already exists" and "not hosted yet"
 * just mean look again.
 */
/**
 * A topic another client has just created is listed before its partitions
 * have leaders. A consumer group that joins then is assigned none of its
 * partitions and, in kafkajs, notices only at the next metadata refresh
 * (metadataMaxAge, 5 min): wait until every partition has a leader.
 */
async function waitForLeaders(admin: Admin, topics: readonly string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let why = '';
  for (;;) {
    try {
      const { topics: meta } = await admin.fetchTopicMetadata({ topics: [...topics] });
      const waiting = meta.filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0 || p.partitionErrorCode !== 0));
      if (waiting.length === 0) return;
      why = `no leader yet for ${waiting.map((t) => t.name).join(',')}`;
    } catch (err) {
      why = describeKafkaError(err);
    }
    if (Date.now() > deadline) throw new FatalError(`Kafka topics ${topics.join(',')} have no partition leaders after ${timeoutMs / 1000} s (${why}); check the brokers`, { exitCode: EXIT.kafka });
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function ensureTopics(admin: Admin, topics: readonly string[], partitions: number): Promise<void> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 30; attempt++) {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length === 0) return await waitForLeaders(admin, topics);
    const cluster = await admin.describeCluster();
    const replicationFactor = Math.min(3, cluster.brokers.length);
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions: partitions, replicationFactor })),
      });
      return await waitForLeaders(admin, topics);
    } catch (err) {
      lastErr = err;
      const e = err as { retriable?: boolean; type?: string; errors?: { type?: string }[] };
      const benign = e.retriable === true || e.type === 'TOPIC_ALREADY_EXISTS' || (e.errors ?? []).every((x) => x.type === 'TOPIC_ALREADY_EXISTS');
      if (!benign) break;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw new FatalError(`cannot create Kafka topics ${topics.join(',')} (${describeKafkaError(lastErr)}); create them or grant CreateTopics`, { exitCode: EXIT.kafka, cause: lastErr });
}

/**
 * Consumers refresh metadata this often (kafkajs default 5 min): a group that
 * joined while a topic had no partitions yet rejoins within this.
 */
export const CONSUMER_METADATA_MAX_AGE_MS = 30_000;

/**
 * Errors that only say the broker (or the group's coordinator on it) is not
 * there right now: a fresh broker whose coordinator is not loaded yet, a
 * restarting one refusing connections. kafkajs calls some of them
 * non-retriable (KafkaJSGroupCoordinatorNotFound after its own retries) and
 * then stops the consumer for good; waiting for the broker is the cure. The
 * cause chain is walked (KafkaJSNumberOfRetriesExceeded wraps the last one).
 * Pure; table-tested.
 */
const OUTAGE_NAMES = new Set([
  'KafkaJSGroupCoordinatorNotFound', 'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound', 'KafkaJSMetadataNotLoaded', 'KafkaJSLockTimeout', 'KafkaJSStaleTopicMetadataAssignment',
]);
const OUTAGE_TYPES = new Set([
  'GROUP_COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR', 'NOT_COORDINATOR_FOR_GROUP', 'COORDINATOR_LOAD_IN_PROGRESS', 'COORDINATOR_NOT_AVAILABLE',
  'GROUP_LOAD_IN_PROGRESS', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION', 'NOT_LEADER_OR_FOLLOWER', 'REQUEST_TIMED_OUT', 'NETWORK_EXCEPTION',
  'REBALANCE_IN_PROGRESS',
]);
const OUTAGE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
export function isBrokerOutage(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let e = err as { name?: string; type?: string; code?: string; cause?: unknown; originalError?: unknown } | undefined; e && typeof e === 'object' && !seen.has(e); e = (e.cause ?? e.originalError) as typeof e) {
    seen.add(e);
    if ((e.name && OUTAGE_NAMES.has(e.name)) || (e.type && OUTAGE_TYPES.has(e.type)) || (e.code && OUTAGE_CODES.has(e.code))) return true;
  }
  return false;
}

/** How long a consumer may go without reaching its group before it is given up (a supervisor then sees the exit). */
export const CONSUMER_OUTAGE_LIMIT_MS = 5 * 60_000;

export interface SuperviseOptions {
  /** Escalate (onFatal) after this long without the group being joined again. Default CONSUMER_OUTAGE_LIMIT_MS. */
  outageLimitMs?: number;
  /** First wait before running a consumer kafkajs stopped; doubles up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * kafkajs restarts a consumer after a retriable crash, but after any other it
 * disconnects and stays stopped while the process lives on doing nothing,
 * silently (its own logging is off). Every long-running consumer goes through
 * this (called before its `run`):
 * - a crash because the broker or the coordinator is not there
 *   (isBrokerOutage) runs the consumer again with backoff: kafkajs has
 *   disconnected it but kept its subscription, and `run` with the same
 *   arguments connects and joins again (the committed position is where it
 *   resumes). kafkajs's own restarts are part of the same outage.
 * - an outage is logged once when it starts and once when the group is
 *   joined again, with how many crashes and how long; one that lasts
 *   outageLimitMs becomes `onFatal`, so a broker that never comes back still
 *   ends the service with one line.
 * - any other crash kafkajs does not restart becomes `onFatal` at once.
 * The consumer's `run`, `stop` and `disconnect` are wrapped to learn the
 * run's arguments and that the stage itself is stopping (no restart then).
 */
export function superviseConsumer(consumer: Consumer, what: string, log: (l: string) => void, onFatal: (err: FatalError) => void, o: SuperviseOptions = {}): void {
  const limitMs = o.outageLimitMs ?? CONSUMER_OUTAGE_LIMIT_MS;
  const initialBackoff = o.initialBackoffMs ?? 500;
  const maxBackoff = o.maxBackoffMs ?? 10_000;
  let runArgs: Parameters<Consumer['run']>[0] | undefined;
  let stopping = false;
  let given = false;
  let timer: NodeJS.Timeout | undefined;
  let outage: { since: number; crashes: number; kinds: Set<string>; backoff: number; said: boolean } | null = null;
  // a crash that recurs with a rejoin in between each time (a retriable error of the stage's own) is one
  // outage per crash: said at most once a minute per kind, not twice per crash
  const lastSaid = new Map<string, number>();
  const run = consumer.run.bind(consumer);
  const stop = consumer.stop.bind(consumer);
  const disconnect = consumer.disconnect.bind(consumer);
  consumer.run = (config) => {
    runArgs = config;
    stopping = false;
    return run(config);
  };
  consumer.stop = () => {
    stopping = true;
    clearTimeout(timer);
    return stop();
  };
  consumer.disconnect = () => {
    stopping = true;
    clearTimeout(timer);
    return disconnect();
  };
  const giveUp = (err: FatalError): void => {
    if (given) return;
    given = true;
    clearTimeout(timer);
    // kafkajs would go on restarting it after a retriable crash: a stage given up consumes nothing more.
    // Deferred: kafkajs schedules its restart only after the CRASH listeners return, and stop() clears it.
    setImmediate(() => void disconnect().catch(() => {}));
    onFatal(err);
  };
  consumer.on(consumer.events.GROUP_JOIN, () => {
    if (!outage) return;
    if (outage.said) log(`ringflow: ${what}: consumer back in its group after ${((Date.now() - outage.since) / 1000).toFixed(1)} s (${outage.crashes} crash${outage.crashes === 1 ? '' : 'es'}: ${[...outage.kinds].join('; ')})`);
    outage = null;
  });
  consumer.on(consumer.events.CRASH, (e) => {
    if (stopping || given) return;
    const err = e.payload.error;
    const why = describeKafkaError(err);
    const restartable = e.payload.restart || isBrokerOutage(err);
    if (!restartable) {
      giveUp(new FatalError(`${what}: consumer stopped after ${why}; restart ringflow (the committed position is safe)`, { cause: err }));
      return;
    }
    const now = Date.now();
    if (!outage) {
      const said = now - (lastSaid.get(why) ?? -Infinity) >= 60_000;
      outage = { since: now, crashes: 0, kinds: new Set(), backoff: initialBackoff, said };
      if (said) {
        lastSaid.set(why, now);
        log(`ringflow: ${what}: consumer restarting after ${why} (gives up after ${Math.round(limitMs / 1000)} s without getting back into its group)`);
      }
    }
    outage.crashes++;
    outage.kinds.add(why);
    if (now - outage.since >= limitMs) {
      giveUp(new FatalError(`${what}: consumer could not reach its group for ${Math.round((now - outage.since) / 1000)} s (${outage.crashes} crashes, last ${why}); check the brokers, then restart ringflow (the committed position is safe)`, { exitCode: EXIT.kafka, cause: err }));
      return;
    }
    if (e.payload.restart) return; // kafkajs runs it again itself
    const wait = outage.backoff;
    outage.backoff = Math.min(outage.backoff * 2, maxBackoff);
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (stopping || given || !runArgs) return;
      // a failed start crashes again through this handler; a throw here is a bug in what kafkajs was given
      run(runArgs).catch((err2: unknown) => giveUp(new FatalError(`${what}: consumer could not be run again (${describeKafkaError(err2)})`, { cause: err2 })));
    }, wait);
  });
}

/**
 * Run a Kafka call again while it fails with an error kafkajs marks retriable
 * (e.g. NOT_COORDINATOR while a restarted broker loads a group's offsets),
 * which some admin calls do not retry themselves.
 */
export async function retrying<T>(f: () => Promise<T>, attempts = 20, delayMs = 250): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (err) {
      if (i >= attempts || (err as { retriable?: boolean }).retriable !== true) throw err;
      await new Promise((r) => setTimeout(r, Math.min(delayMs * i, 2000)));
    }
  }
}

// ---------------------------------------------------------------------------
// Producing within the broker's limits

/** A record to produce: what kafkajs's sendBatch takes, with the key and value as the stages build them. */
export interface OutRecord {
  key: string | Buffer | null;
  value: Buffer;
  headers?: IHeaders;
}

export interface TopicRecords {
  topic: string;
  messages: OutRecord[];
}

/** A record that alone exceeds its topic's limit: it can never be produced as it is. */
export interface Oversized {
  topic: string;
  message: OutRecord;
  /** Its size in a record batch (an upper bound, before compression). */
  bytes: number;
  limit: number;
}

/**
 * Kafka's record batch (v2) header is 61 bytes; a record adds at most 5-byte
 * varints for its length, offset and key/value lengths, a 10-byte timestamp
 * delta, an attributes byte and a header count: 40 is an upper bound.
 */
const BATCH_OVERHEAD = 61;
const RECORD_OVERHEAD = 40;
/** The broker's default message.max.bytes (and a topic's max.message.bytes): 1 MiB + 12. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
/**
 * Where every stage, the collector included, writes what it could not
 * process or Kafka refused, with headers saying why.
 */
export const DEADLETTER_TOPIC = 'ringflow.deadletter.v1';
/**
 * Bytes of records per produce request across all its topics: the broker
 * refuses a request above socket.request.max.bytes (100 MiB by default), and a
 * transaction's requests go one at a time anyway; 16 MiB keeps each one short.
 */
export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

/** Bytes of a refused or oversized record kept in its dead letter (the dead-letter topic has a limit too). */
export const OVERSIZED_KEEP_BYTES = 1024;

/**
 * The dead letter of one record that can never be produced to its topic:
 * `oversized` (alone over the topic's max.message.bytes: its first
 * OVERSIZED_KEEP_BYTES kept, so the letter itself fits) or `rejected` (refused
 * by Kafka for another reason: all of it kept). Headers say why (`error` gets
 * the bytes kept), the target topic and key, the value's size, and when known
 * the input it came from. Every stage and the collector write this one form
 * (topic DEADLETTER_TOPIC). Pure.
 */
export function refusedDeadLetter(
  r: { topic: string; key: string | Buffer | null; value: Buffer },
  reason: 'oversized' | 'rejected',
  error: (kept: number) => string,
  source?: { topic: string; partition: number; offset?: string },
): { key: string; value: Buffer; headers: Record<string, string> } {
  const key = r.key === null ? '' : r.key.toString();
  const kept = reason === 'oversized' ? Math.min(r.value.length, OVERSIZED_KEEP_BYTES) : r.value.length;
  return {
    key: `${r.topic}/${reason}/${key}`,
    value: r.value.subarray(0, kept),
    headers: {
      ...(source ? { 'ringflow.source.topic': source.topic, 'ringflow.source.partition': String(source.partition) } : {}),
      ...(source?.offset !== undefined ? { 'ringflow.source.offset': source.offset } : {}),
      'ringflow.reason': reason,
      'ringflow.error': error(kept),
      'ringflow.target.topic': r.topic,
      'ringflow.target.key': key.slice(0, 256),
      'ringflow.value.bytes': String(r.value.length),
    },
  };
}

const strBytes = (s: string | Buffer | null | undefined): number => (s == null ? 0 : typeof s === 'string' ? Buffer.byteLength(s) : s.length);

/**
 * An upper bound on a record's size inside a record batch, before
 * compression: key and headers counted byte for byte (UTF-8). The collector's
 * hot path uses a cheaper bound (collector/kafka-sink.ts cheapRecordBytes).
 */
export function recordBytes(m: OutRecord): number {
  let n = RECORD_OVERHEAD + strBytes(m.key) + m.value.length;
  if (m.headers) {
    for (const [k, v] of Object.entries(m.headers)) {
      for (const x of Array.isArray(v) ? v : [v]) n += 10 + Buffer.byteLength(k) + strBytes(x as string | Buffer | undefined);
    }
  }
  return n;
}

/**
 * What one batch of a topic may hold: its limit less the batch header and a
 * margin for compression that does not shrink (gzip and zstd add a few bytes
 * per block to incompressible data).
 */
export function batchBudget(limit: number): number {
  return Math.floor(limit * 0.98) - BATCH_OVERHEAD - 64;
}

/**
 * Splits a transaction's records into produce requests that the broker will
 * take: per topic at most its limit (max.message.bytes) per request, so each
 * partition's batch is too, and at most `maxRequestBytes` in all. Order is
 * kept (records go to requests in order, requests are sent in order), so each
 * partition's records stay in order. A record that alone exceeds its topic's
 * budget is returned in `oversized`, in no request. Pure; table-tested.
 */
export function planRequests(
  topicMessages: readonly TopicRecords[],
  limitOf: (topic: string) => number,
  maxRequestBytes = MAX_REQUEST_BYTES,
): { requests: TopicRecords[][]; oversized: Oversized[] } {
  const requests: TopicRecords[][] = [];
  const oversized: Oversized[] = [];
  let cur = new Map<string, TopicRecords>();
  let curBytes = new Map<string, number>();
  let total = 0;
  const close = (): void => {
    if (cur.size > 0) requests.push([...cur.values()]);
    cur = new Map();
    curBytes = new Map();
    total = 0;
  };
  for (const { topic, messages } of topicMessages) {
    const limit = limitOf(topic);
    const budget = batchBudget(limit);
    for (const m of messages) {
      const b = recordBytes(m);
      if (b > budget) {
        oversized.push({ topic, message: m, bytes: b, limit });
        continue;
      }
      if ((curBytes.get(topic) ?? 0) + b > budget || total + b > maxRequestBytes) close();
      let t = cur.get(topic);
      if (!t) cur.set(topic, (t = { topic, messages: [] }));
      t.messages.push(m);
      curBytes.set(topic, (curBytes.get(topic) ?? 0) + b);
      total += b;
    }
  }
  close();
  return { requests, oversized };
}

/**
 * The topics' max.message.bytes (the broker's message.max.bytes unless the
 * topic overrides it), read from the broker with describeConfigs. Until read,
 * or when the broker will not say (no DescribeConfigs permission), Kafka's
 * default. `refresh()` reads them again: after a MESSAGE_TOO_LARGE the
 * limit may have been lowered since.
 */
export class MessageLimits {
  private readonly limits = new Map<string, number>();
  private said = false;
  private readonly admin: Admin;
  private readonly topics: readonly string[];
  private readonly log: (l: string) => void;
  constructor(admin: Admin, topics: readonly string[], log: (l: string) => void) {
    this.admin = admin;
    this.topics = topics;
    this.log = log;
  }

  limitOf = (topic: string): number => this.limits.get(topic) ?? DEFAULT_MAX_MESSAGE_BYTES;

  async refresh(): Promise<void> {
    const read = async (topics: readonly string[], attempts: number): Promise<void> => {
      const r = await retrying(() =>
        this.admin.describeConfigs({
          includeSynonyms: false,
          resources: topics.map((name) => ({ type: kafkajs.ConfigResourceTypes.TOPIC, name, configNames: ['max.message.bytes'] })),
        }), attempts,
      );
      for (const res of r.resources) {
        const e = res.configEntries.find((c) => c.configName === 'max.message.bytes');
        const n = e ? Number(e.configValue) : NaN;
        if (res.errorCode === 0 && Number.isSafeInteger(n) && n > 0) this.limits.set(res.resourceName, n);
      }
    };
    try {
      await read(this.topics, 20);
    } catch (err) {
      // one topic that does not exist (yet) fails the whole request: the others' limits must
      // still be known (a spans topic with a small limit was produced to at the default and
      // refused forever while a topic the stage rarely writes was missing)
      const missed: string[] = [];
      for (const topic of this.topics) {
        try {
          await read([topic], 2);
        } catch {
          missed.push(topic);
        }
      }
      if (missed.length > 0 && !this.said) {
        this.log(`ringflow: cannot read max.message.bytes of ${missed.join(',')} (${describeKafkaError(err)}); assuming ${DEFAULT_MAX_MESSAGE_BYTES} bytes for ${missed.length === 1 ? 'it' : 'them'}`);
        this.said = true;
      }
    }
  }
}

/** Whether a produce failed because a batch or a record was over the broker's limit. */
export function isTooLarge(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let e = err as { type?: string; cause?: unknown; originalError?: unknown } | undefined; e && !seen.has(e); e = (e.cause ?? e.originalError) as typeof e) {
    seen.add(e);
    if (e.type === 'MESSAGE_TOO_LARGE' || e.type === 'RECORD_LIST_TOO_LARGE') return true;
  }
  return false;
}

/** What sendWithinLimits needs of a transaction (or producer). */
export interface BatchSender {
  sendBatch(batch: { acks?: number; compression?: CompressionTypes; topicMessages: { topic: string; messages: OutRecord[] }[] }): Promise<unknown>;
}

/**
 * Sends a transaction's records in as many produce requests as the topics'
 * limits need (several sendBatch calls inside one transaction commit or abort
 * together). A record that alone is over its topic's limit is handed to
 * `replace` (e.g. a dead letter naming it, truncated), which is sent instead
 * if it fits, and is returned either way: the caller counts it. Returns the
 * number of requests sent.
 */
export async function sendWithinLimits(
  tx: BatchSender,
  topicMessages: readonly TopicRecords[],
  o: { limitOf: (topic: string) => number; compression: CompressionTypes; replace?: (x: Oversized) => TopicRecords | null },
): Promise<{ requests: number; oversized: Oversized[] }> {
  const plan = planRequests(topicMessages, o.limitOf);
  let requests = plan.requests;
  if (plan.oversized.length > 0 && o.replace) {
    const repl = plan.oversized.map(o.replace).filter((x): x is TopicRecords => x !== null);
    // a replacement that is itself too large is dropped (it is counted with its record)
    requests = [...requests, ...planRequests(repl, o.limitOf).requests];
  }
  for (const topicMessages of requests) await tx.sendBatch({ acks: -1, compression: o.compression, topicMessages });
  return { requests: requests.length, oversized: plan.oversized };
}
