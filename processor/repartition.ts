/**
 * Stage 1: re-key events by (input topic, host) so that stage 2 sees every
 * series whole, pre-aggregated: the events of each transaction become one
 * partial aggregate per (topic, host, window) (processor/partial.ts), so
 * stage 2 reads a record per series and window and transaction instead of
 * one per event. No state outlives a transaction, so exactly-once is one
 * Kafka transaction per commit interval: the partials (a deterministic
 * function of the records consumed since the last one), the re-keyed stats
 * records, any dead letters, and the consumed offsets commit together or not
 * at all; an aborted transaction is re-read and rebuilt the same.
 *
 * Without a window size (windowMs) it forwards every record unchanged, as
 * before pre-aggregation; stage 2 takes both.
 *
 * Records of an older writer schema (schemas/history/) are read in the
 * current schema's shape (decodeCurrent) and aggregated as current ones
 * (stats records: forwarded as they are).
 * Records that cannot be decoded (bad magic, unknown schema fingerprint,
 * truncated or corrupt body) go to ringflow.deadletter.v1 with headers naming
 * their source topic, partition, offset and the error, and are counted.
 */
import type { Kafka, Consumer, Producer, EachBatchPayload, IHeaders } from 'kafkajs';
import { decodeCurrent } from '../schemas/index.ts';
import { CompressionTypes, createPartitioner } from '../kafka/kafkajs.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_GROUP, REPARTITION_TOPIC, SESSION_TIMEOUT_MS, SPANS_TOPIC, STATS_TOPIC, repartitionKey } from './topics.ts';
import { PartialAggregator, spanEvent, type EventBase } from './aggregate.ts';
import { createFastDecoder, eventTimeNs, type FastDecoder } from './fast-decode.ts';
import { encodePartial } from './partial.ts';
import { superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS, type Oversized } from '../kafka/client.ts';
import type { FatalError } from '../common/errors.ts';

export interface RepartitionCounters {
  records: number;
  deadLetters: number;
  transactions: number;
  /** Partial aggregates written (each standing for one or more events). */
  partials: number;
}

export interface OutMessage {
  topic: string;
  key: string;
  value: Buffer;
  headers?: IHeaders;
}

/**
 * One consumed record -> what stage 1 writes for it. Pure, so tests can table it.
 * A stats record fans out to every event topic it reports on, keyed like those events.
 */
export function routeRecord(topic: string, partition: number, offset: string, value: Buffer | null): OutMessage[] {
  try {
    if (!value) throw new Error('record has no value');
    const { schema, value: v } = decodeCurrent(value);
    if (schema.topic !== topic) throw new Error(`record of ${schema.topic} found on ${topic}`);
    const host = String(v.host);
    if (topic === STATS_TOPIC) {
      const events = v.events as { event: string }[];
      return events
        .filter((e) => (EVENT_TOPICS as readonly string[]).includes(e.event))
        .map((e) => ({ topic: REPARTITION_TOPIC, key: repartitionKey(e.event, host), value }));
    }
    return [{ topic: REPARTITION_TOPIC, key: repartitionKey(topic, host), value }];
  } catch (err) {
    return [deadLetter(topic, partition, offset, value, err)];
  }
}

/** The dead letter of a record that could not be processed: its bytes, and headers naming its source and the error. */
export function deadLetter(topic: string, partition: number, offset: string, value: Buffer | null, err: unknown): OutMessage {
  const e = err as { code?: string; message?: string };
  return {
    topic: DEADLETTER_TOPIC,
    key: `${topic}/${partition}/${offset}`,
    value: value ?? Buffer.alloc(0),
    headers: {
      'ringflow.source.topic': topic,
      'ringflow.source.partition': String(partition),
      'ringflow.source.offset': offset,
      'ringflow.error': `${e.code ? e.code + ': ' : ''}${e.message ?? String(err)}`,
    },
  };
}

/** Bytes of an oversized record kept in its dead letter (the dead-letter topic has a limit too). */
export const OVERSIZED_KEEP_BYTES = 1024;

/**
 * The dead letter of a record a stage built that alone is over its topic's
 * max.message.bytes: it can never be produced, and retrying would stop the
 * stage on the same input forever. Its first bytes, and headers saying what
 * it was, how large, the limit, and (when known) the input it came from.
 */
export function oversizedDeadLetter(o: Oversized, source?: { topic: string; partition: number; offset?: string }): OutMessage {
  const key = o.message.key === null ? '' : o.message.key.toString();
  const kept = Math.min(o.message.value.length, OVERSIZED_KEEP_BYTES);
  return {
    topic: DEADLETTER_TOPIC,
    key: `${o.topic}/oversized/${key}`,
    value: o.message.value.subarray(0, kept),
    headers: {
      ...(source ? { 'ringflow.source.topic': source.topic, 'ringflow.source.partition': String(source.partition) } : {}),
      ...(source?.offset !== undefined ? { 'ringflow.source.offset': source.offset } : {}),
      'ringflow.reason': 'oversized',
      'ringflow.error': `MESSAGE_TOO_LARGE: a record of ${o.bytes} bytes for ${o.topic}, over its max.message.bytes (${o.limit}); its first ${kept} bytes kept`,
      'ringflow.target.topic': o.topic,
      'ringflow.target.key': key.slice(0, 256),
      'ringflow.value.bytes': String(o.message.value.length),
    },
  };
}

export interface RepartitionStage {
  counters: RepartitionCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** How often buffered records and offsets are committed (Kafka Streams' commit.interval.ms under EOS). */
export const COMMIT_INTERVAL_MS = 100;
/**
 * eachBatch waits for a commit once this many messages are buffered for it:
 * records forwarded as they are, and partial aggregates (series kept). Events
 * pre-aggregated into series already held cost nothing more, so a commit in
 * flight does not stop the consumption of the next ones.
 */
const MAX_BUFFERED = 50_000;

/**
 * One consumed event record -> its event for the METRICS table and its time,
 * checked as routeRecord checks it (throws where routeRecord dead-letters).
 * Collectors' events take the fast decoder (see fast-decode.ts); spans and
 * anything it declines take decodeCurrent.
 */
export function eventOf(fast: FastDecoder, topic: string, value: Buffer | null): { host: string; ev: EventBase; ns: bigint } {
  if (!value) throw new Error('record has no value');
  const f = topic === SPANS_TOPIC ? null : fast.decode(value);
  if (f !== null) {
    if (f.schema.topic !== topic) throw new Error(`record of ${f.schema.topic} found on ${topic}`);
    return { host: String(f.value.host), ev: f.value as unknown as EventBase, ns: eventTimeNs(f.value) };
  }
  const { schema, value: v } = decodeCurrent(value);
  if (schema.topic !== topic) throw new Error(`record of ${schema.topic} found on ${topic}`);
  const ev = topic === SPANS_TOPIC ? spanEvent(v) : (v as unknown as EventBase);
  return { host: String(v.host), ev, ns: ev.boot_time_ns + ev.ts_ns };
}

export function createRepartitionStage(opts: {
  kafka: Kafka;
  instanceId: string;
  /** Stage 2's window size (--window): when set, events are pre-aggregated per window; else forwarded unchanged. */
  windowMs?: number;
  log: (l: string) => void;
  onFatal?: (err: FatalError) => void;
}): RepartitionStage {
  const counters: RepartitionCounters = { records: 0, deadLetters: 0, transactions: 0, partials: 0 };
  const partials = opts.windowMs === undefined ? undefined : new PartialAggregator({ sizeMs: opts.windowMs });
  const fast = createFastDecoder();
  let consumer: Consumer | undefined;
  let producer: Producer | undefined;
  let timer: NodeJS.Timeout | undefined;
  /*
   * One transaction per commit interval for every partition fetched, not one per
   * partition batch: a transaction costs tens of ms, and doing them one
   * partition after another delayed some partitions' events by seconds behind
   * others, which stage 2's watermark then counted as late.
   */
  let buffer: OutMessage[] = [];
  let records = 0;
  /** topic -> partition -> offset after the last buffered record */
  let offsets = new Map<string, Map<number, bigint>>();
  /** topic -> partition -> offset committed (where a failed transaction must resume) */
  const committed = new Map<string, Map<number, bigint>>();
  let flushing: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    flushing = flushing.then(async () => {
      if (offsets.size === 0) return;
      // partials first: what stage 1 forwarded before them, it consumed before them
      const parts = partials?.take() ?? [];
      const out = parts.map((p): OutMessage => ({ topic: REPARTITION_TOPIC, key: repartitionKey(p.topic, p.host), value: encodePartial(p) }));
      for (const o of buffer) out.push(o);
      const offs = offsets;
      const n = records;
      buffer = [];
      offsets = new Map();
      records = 0;
      const tx = await producer!.transaction();
      try {
        const byTopic = new Map<string, OutMessage[]>();
        for (const o of out) {
          let l = byTopic.get(o.topic);
          if (!l) byTopic.set(o.topic, (l = []));
          l.push(o);
        }
        if (byTopic.size > 0) {
          await tx.sendBatch({ acks: -1, compression: CompressionTypes.GZIP, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
        }
        await tx.sendOffsets({
          consumerGroupId: REPARTITION_GROUP,
          topics: [...offs].map(([topic, ps]) => ({ topic, partitions: [...ps].map(([partition, offset]) => ({ partition, offset: String(offset) })) })),
        });
        await tx.commit();
      } catch (err) {
        await tx.abort().catch(() => {});
        // nothing of this transaction happened: read those partitions again from their last commit;
        // what was consumed since it started follows them, so it is dropped too (else read twice)
        partials?.take();
        buffer = [];
        records = 0;
        const since = offsets;
        offsets = new Map();
        for (const [topic, ps] of [...offs, ...since]) {
          for (const partition of ps.keys()) {
            const at = committed.get(topic)?.get(partition);
            if (at !== undefined) consumer!.seek({ topic, partition, offset: String(at) });
          }
        }
        opts.log(`processor: repartition commit failed (${(err as Error).message}); re-reading from the last commit`);
        return;
      }
      for (const [topic, ps] of offs) {
        let m = committed.get(topic);
        if (!m) committed.set(topic, (m = new Map()));
        for (const [p, o] of ps) m.set(p, o);
      }
      counters.records += n;
      counters.partials += parts.length;
      counters.transactions++;
    });
    return flushing;
  };

  return {
    counters,
    async start() {
      producer = opts.kafka.producer({
        transactionalId: `ringflow-repartition-${opts.instanceId}`,
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner,
      });
      await producer.connect();
      consumer = opts.kafka.consumer({ groupId: REPARTITION_GROUP, readUncommitted: false, metadataMaxAge: CONSUMER_METADATA_MAX_AGE_MS, sessionTimeout: SESSION_TIMEOUT_MS, heartbeatInterval: 1000 });
      await consumer.connect();
      superviseConsumer(consumer, 'processor stage 1 (repartition)', opts.log, opts.onFatal ?? (() => {}));
      await consumer.subscribe({ topics: [...EVENT_TOPICS, STATS_TOPIC], fromBeginning: true });
      timer = setInterval(() => void flush(), COMMIT_INTERVAL_MS);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
          if (batch.messages.length === 0 || !isRunning() || isStale()) return;
          let c = committed.get(batch.topic);
          if (!c) committed.set(batch.topic, (c = new Map()));
          // the first record fetched after an assignment sits at the committed offset
          if (!c.has(batch.partition)) c.set(batch.partition, BigInt(batch.messages[0]!.offset));
          const pre = partials !== undefined && batch.topic !== STATS_TOPIC && partials.handles(batch.topic);
          for (const m of batch.messages) {
            if (pre) {
              let e: ReturnType<typeof eventOf> | undefined;
              try {
                e = eventOf(fast, batch.topic, m.value);
              } catch {
                // not an event we can read: dead-lettered as routeRecord does it
              }
              if (e !== undefined) {
                partials.add(batch.topic, e.host, e.ev, e.ns);
                continue;
              }
            }
            for (const o of routeRecord(batch.topic, batch.partition, m.offset, m.value)) {
              if (o.topic === DEADLETTER_TOPIC) {
                counters.deadLetters++;
                opts.log(`processor: ${o.headers!['ringflow.source.topic']}[${batch.partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})`);
              }
              buffer.push(o);
            }
          }
          const last = batch.messages[batch.messages.length - 1]!.offset;
          let t = offsets.get(batch.topic);
          if (!t) offsets.set(batch.topic, (t = new Map()));
          t.set(batch.partition, BigInt(last) + 1n);
          records += batch.messages.length;
          resolveOffset(last);
          if (buffer.length + (partials?.series ?? 0) >= MAX_BUFFERED) await flush();
          await heartbeat();
        },
      });
    },
    async stop() {
      if (timer) clearInterval(timer);
      await consumer?.disconnect().catch(() => {});
      await flush().catch(() => {});
      await producer?.disconnect().catch(() => {});
    },
  };
}
