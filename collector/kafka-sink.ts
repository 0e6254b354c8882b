/**
 * Kafka sink: an idempotent kafkajs producer (acks=all) fed in large batches.
 *
 * Ordering and idempotence: kafkajs keeps producer sequence numbers per
 * partition, and the broker keeps only the last 5 batches' metadata per
 * producer, so exactly one sendBatch is in flight at a time (KIP-98's
 * max.in.flight=1 for idempotence in this client); throughput comes from
 * making each request large instead.
 *
 * Failure: a failed send is counted, logged once per kind of error, backed off
 * and retried with the same records, for as long as it takes: records leave
 * the queue only when acknowledged. Memory stays bounded because the collector
 * stops draining the kernel ring while pending() is high (see collector.ts).
 */
import type { Kafka as KafkaClient, Producer, Admin, Consumer, TopicMessages, CompressionTypes as CompressionType } from 'kafkajs';
import { Kafka, CompressionTypes, logLevel, createPartitioner } from './kafkajs.ts';
import { FatalError, EXIT } from './errors.ts';
import type { EventSink, OutRecord, SinkCounters } from './sink.ts';

export type Compression = 'zstd' | 'gzip' | 'none';

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
}

const COMPRESSION: Record<Compression, CompressionType> = {
  zstd: CompressionTypes.ZSTD,
  gzip: CompressionTypes.GZIP,
  none: CompressionTypes.None,
};

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
 * kafkajs restarts a consumer after a retriable crash, but after any other it
 * disconnects and stays stopped while the process lives on doing nothing,
 * silently (its own logging is off). Every long-running consumer goes through
 * this: a restart is said once per kind, a stop becomes `onFatal`, so the
 * service exits non-zero with one line and a supervisor can restart it.
 */
export function superviseConsumer(consumer: Consumer, what: string, log: (l: string) => void, onFatal: (err: FatalError) => void): void {
  const said = new Set<string>();
  consumer.on(consumer.events.CRASH, (e) => {
    const err = e.payload.error;
    const why = describeKafkaError(err);
    if (e.payload.restart) {
      if (!said.has(why)) log(`ringflow: ${what}: consumer restarting after ${why}`);
      said.add(why);
      return;
    }
    onFatal(new FatalError(`${what}: consumer stopped after ${why}; restart ringflow (the committed position is safe)`, { cause: err }));
  });
}

export function createKafkaSink(opts: KafkaSinkOptions): EventSink {
  const kafka = createKafkaClient(opts.brokers, opts.clientId, opts.connectTimeoutMs);
  let producer: Producer | undefined;
  const queue: OutRecord[][] = [];
  let queueHead = 0; // index into queue[0]
  let queued = 0;
  let inFlight: OutRecord[] | null = null;
  let closed = false;
  let backoffMs = 0;
  const counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  const progressCbs: (() => void)[] = [];
  const seenErrors = new Set<string>();
  let waiters: (() => void)[] = [];

  function take(max: number): OutRecord[] {
    const out: OutRecord[] = [];
    while (out.length < max && queue.length > 0) {
      const chunk = queue[0]!;
      const n = Math.min(max - out.length, chunk.length - queueHead);
      for (let i = 0; i < n; i++) out.push(chunk[queueHead + i]!);
      queueHead += n;
      if (queueHead >= chunk.length) {
        queue.shift();
        queueHead = 0;
      }
    }
    queued -= out.length;
    return out;
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

  function settle(): void {
    for (const cb of progressCbs) cb();
    if (queued === 0 && inFlight === null) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  }

  function pump(): void {
    if (closed || inFlight !== null || !producer) return;
    if (queued === 0) return;
    const batch = take(opts.maxBatchRecords);
    inFlight = batch;
    send(batch);
  }

  function send(batch: OutRecord[]): void {
    producer!
      .sendBatch({ topicMessages: toTopicMessages(batch), acks: -1, compression: COMPRESSION[opts.compression] })
      .then(
        () => {
          countProduced(batch);
          if (backoffMs > 0) opts.log(`kafka: sending again; delivered ${batch.length} held events`);
          backoffMs = 0;
          inFlight = null;
          settle();
          pump();
        },
        (err: unknown) => {
          counters.sendErrors++;
          const kind = (err as { name?: string })?.name ?? 'Error';
          if (!seenErrors.has(kind)) {
            seenErrors.add(kind);
            opts.log(`kafka: send failed (${describeKafkaError(err)}); holding ${queued + batch.length} events and retrying`);
          }
          if (closed) return;
          backoffMs = Math.min(Math.max(backoffMs * 2, 200), 5000);
          setTimeout(() => send(batch), backoffMs).unref?.();
        },
      );
  }

  return {
    counters,
    async start() {
      const admin = await connectAdmin(kafka, opts.brokers);
      try {
        await ensureTopics(admin, opts.topics, opts.partitions);
      } finally {
        await admin.disconnect();
      }
      producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner });
      try {
        await producer.connect();
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
      return queued + (inFlight?.length ?? 0);
    },
    onProgress(cb) {
      progressCbs.push(cb);
    },
    flush(timeoutMs) {
      if (queued === 0 && inFlight === null) return Promise.resolve(true);
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
