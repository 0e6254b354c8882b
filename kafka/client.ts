/**
 * Kafka plumbing every stage uses: client creation, admin (topics and their
 * leaders), consumer supervision and retries of retriable calls. The
 * collector's producer (collector/kafka-sink.ts) and the processor's and
 * exporter's consumers all connect through here.
 */
import type { Kafka as KafkaClient, Admin, Consumer } from 'kafkajs';
import { Kafka, logLevel } from './kafkajs.ts';
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
