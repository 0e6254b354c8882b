/**
 * Stage 1: re-key events by (input topic, host) so that stage 2 sees every
 * series whole, pre-aggregated: the events of each transaction become one
 * partial aggregate per (topic, host, window) (processor/partial.ts), so
 * stage 2 reads a record per series and window and transaction instead of
 * one per event. No state outlives a transaction, so exactly-once is one
 * Kafka transaction per commit interval: the partials (a deterministic
 * function of the records consumed since the last one), the re-keyed stats
 * records, any dead letters, and the consumed offsets commit together or not
 * at all; an aborted transaction is re-read and rebuilt the same. After a
 * rebalance that leaves it a partition, kafkajs reads it again from the
 * committed offset while what was consumed since is still on its way to a
 * commit: those records are skipped (consumedTo), not aggregated twice.
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
 *
 * Clock skew: stage 2's watermark is per partition, and several hosts share
 * a partition, so one record dated a day ahead would close every window of
 * the others and make all their events late. A record whose event time is
 * more than maxClockSkewMs ahead of this processor's clock is dead-lettered
 * (reason clock_skew) and counted instead. It is judged here, against the
 * wall clock, because stage 1 commits each routing decision in the
 * transaction that consumes the record: once committed, a decision is final
 * and stage 2's replays (which must be deterministic) never judge it again.
 * An aborted transaction is re-read and judged afresh, which is fine since
 * nothing of it was seen. The record's Kafka timestamp would not do: the
 * collector that sets it runs on the same wrong clock.
 *
 * Every produce request stays within the output topics' max.message.bytes
 * (sendWithinLimits); a partial over it is split by series into several
 * partials of its window (partial-split.ts), and only a single series still
 * over it is dead-lettered (reason oversized) and counted. A failed commit
 * is counted and retried by re-reading from the last commit; a producer left unusable is replaced; a producer
 * fenced by another instance with the same --instance, or a failure that
 * persists, ends the service through onFatal (FailureReporter).
 */
import type { Kafka, Consumer, Producer, EachBatchPayload, IHeaders, Admin } from 'kafkajs';
import { decodeCurrent } from '../schemas/index.ts';
import { CompressionTypes, createPartitioner } from '../kafka/kafkajs.ts';
import { ACCOUNTED_TOPICS, DEADLETTER_TOPIC, EVENT_TOPICS, REPARTITION_GROUP, REPARTITION_TOPIC, SESSION_TIMEOUT_MS, SPANS_TOPIC, STATS_TOPIC, repartitionKey } from './topics.ts';
import { PartialAggregator, invalidValue, spanEvent, type EventBase } from './aggregate.ts';
import { createFastDecoder, eventTimeNs, type FastDecoder } from './fast-decode.ts';
import { encodePartial, rejectionRecord } from './partial.ts';
import { superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS, MessageLimits, batchBudget, describeKafkaError, isTooLarge, refusedDeadLetter, sendWithinLimits, type Oversized } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { splitPartial } from './partial-split.ts';
import { FatalError } from '../common/errors.ts';
import { createSerial } from './serial.ts';
import { FailureReporter } from './failures.ts';

export interface RepartitionCounters {
  records: number;
  /** Dead letters written by committed transactions (an aborted one is re-read: counted once, on its commit). */
  deadLetters: number;
  transactions: number;
  /** Partial aggregates written (each standing for one or more events). */
  partials: number;
  /** Records dead-lettered for an event time beyond the allowed clock skew (in deadLetters too). */
  clockSkew: number;
  /** Events whose measured value is outside its physical range (aggregate.ts VALUE_RANGES), dead-lettered. */
  invalidValues: number;
  /** Records (partials, forwarded records) alone over their topic's max.message.bytes: dead-lettered, first bytes only. */
  oversized: number;
  /** sendOffsets asked again in the same transaction after a "not now" from the coordinator (kafka/transaction.ts). */
  txRetries: number;
  /** Transactions that failed (their records were re-read from the last commit). */
  failedCommits: number;
}

/**
 * How far ahead of the processor's clock an event may be dated (--max-clock-skew).
 * NTP keeps hosts within milliseconds; a minute allows for a host that is
 * syncing or a VM just resumed. What a host ahead by up to this does to
 * others on its partition is bounded by it: their events are at most this
 * much early-closed (counted late), never frozen for a day.
 */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;

/** A record refused for a reason other than its encoding: `reason` goes into the dead letter's headers. */
export class RejectedRecord extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'RejectedRecord';
    this.reason = reason;
  }
}

/** The clock-skew verdict for a record dated `eventNs` judged at `nowNs`: null if fine. Pure. */
export function clockSkewError(eventNs: bigint, nowNs: bigint, maxSkewNs: bigint): RejectedRecord | null {
  if (eventNs <= nowNs + maxSkewNs) return null;
  const ahead = Number((eventNs - nowNs) / 1_000_000n) / 1000;
  return new RejectedRecord('clock_skew', `event time ${eventNs} is ${ahead} s ahead of the processor's clock (allowed: ${Number(maxSkewNs / 1_000_000n) / 1000} s; --max-clock-skew)`);
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
export function routeRecord(topic: string, partition: number, offset: string, value: Buffer | null, skew?: { nowNs: bigint; maxSkewNs: bigint }): OutMessage[] {
  try {
    if (!value) throw new Error('record has no value');
    const { schema, value: v } = decodeCurrent(value);
    if (schema.topic !== topic) throw new Error(`record of ${schema.topic} found on ${topic}`);
    if (skew) {
      const ns = topic === STATS_TOPIC ? (v.time_ns as bigint) : topic === SPANS_TOPIC ? eventNsOf(spanEvent(v)) : eventNsOf(v as unknown as EventBase);
      const e = clockSkewError(BigInt(ns), skew.nowNs, skew.maxSkewNs);
      if (e) throw e;
    }
    const host = String(v.host);
    if (topic === STATS_TOPIC) {
      const events = v.events as { event: string }[];
      return events
        .filter((e) => ACCOUNTED_TOPICS.includes(e.event))
        .map((e) => ({ topic: REPARTITION_TOPIC, key: repartitionKey(e.event, host), value }));
    }
    return [{ topic: REPARTITION_TOPIC, key: repartitionKey(topic, host), value }];
  } catch (err) {
    return [deadLetter(topic, partition, offset, value, err)];
  }
}

const eventNsOf = (ev: EventBase): bigint => BigInt(ev.boot_time_ns) + BigInt(ev.ts_ns);

/** The dead letter of a record that could not be processed: its bytes, and headers naming its source and the error. */
export function deadLetter(topic: string, partition: number, offset: string, value: Buffer | null, err: unknown): OutMessage {
  const e = err as { code?: string; message?: string; reason?: string };
  return {
    topic: DEADLETTER_TOPIC,
    key: `${topic}/${partition}/${offset}`,
    value: value ?? Buffer.alloc(0),
    headers: {
      'ringflow.source.topic': topic,
      'ringflow.source.partition': String(partition),
      'ringflow.source.offset': offset,
      'ringflow.error': `${e.code ? e.code + ': ' : ''}${e.message ?? String(err)}`,
      ...(err instanceof RejectedRecord ? { 'ringflow.reason': err.reason } : {}),
    },
  };
}

/** Bytes of an oversized record kept in its dead letter (kafka/client.ts, shared with the collector). */
export { OVERSIZED_KEEP_BYTES } from '../kafka/client.ts';

/**
 * The dead letter of a record a stage built that alone is over its topic's
 * max.message.bytes: it can never be produced, and retrying would stop the
 * stage on the same input forever. The one form (kafka/client.ts
 * refusedDeadLetter): its first bytes, and headers saying what it was, how
 * large, the limit, and (when known) the input it came from.
 */
export function oversizedDeadLetter(o: Oversized, source?: { topic: string; partition: number; offset?: string }): OutMessage {
  return {
    topic: DEADLETTER_TOPIC,
    ...refusedDeadLetter({ topic: o.topic, key: o.message.key, value: o.message.value }, 'oversized',
      (kept) => `MESSAGE_TOO_LARGE: a record of ${o.bytes} bytes for ${o.topic}, over its max.message.bytes (${o.limit}); its first ${kept} bytes kept`, source),
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
  /** How far ahead of this processor's clock an event may be dated (default DEFAULT_MAX_CLOCK_SKEW_MS). */
  maxClockSkewMs?: number;
  log: (l: string) => void;
  onFatal?: (err: FatalError) => void;
  /** Failures of the same kind that last this long with no success end the service (default 60 s). */
  failurePersistMs?: number;
}): RepartitionStage {
  const counters: RepartitionCounters = { records: 0, deadLetters: 0, transactions: 0, partials: 0, clockSkew: 0, invalidValues: 0, oversized: 0, failedCommits: 0, txRetries: 0 };
  const maxSkewNs = BigInt(opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS) * 1_000_000n;
  const onFatal = opts.onFatal ?? (() => {});
  const failures = new FailureReporter({ what: 'processor: repartition', log: opts.log, onFatal, ...(opts.failurePersistMs !== undefined ? { persistMs: opts.failurePersistMs } : {}) });
  const serial = createSerial();
  let admin: Admin | undefined;
  let limits: MessageLimits | undefined;
  /** The producer's transaction state is unknown (an abort failed): replace it before the next transaction. */
  let producerBroken = false;
  let fenced = false;
  const transactionalId = `ringflow-repartition-${opts.instanceId}`;
  const newProducer = (): Producer => opts.kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1, createPartitioner });
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
  /**
   * topic -> partition -> offset after the last record consumed while the
   * partition is ours. After every rebalance kafkajs reads again from the
   * group's committed offset, which lags what was consumed (the records of the
   * transaction in flight or not yet begun, committed later): read twice, they
   * went into two partials, and stage 2 counted their events twice (late for
   * windows already emitted; soak finding 6). Records below it are skipped.
   * Dropped with the partition (GROUP_JOIN) and when a failed transaction
   * rewinds it.
   */
  const consumedTo = new Map<string, Map<number, bigint>>();

  /**
   * Counts and reports a dead letter of a committed transaction, with its
   * reason. Called on commit, not when the record is read: a failed
   * transaction is re-read from its last commit, and counting at read time
   * counted its dead letters once per attempt.
   */
  function deadLettered(o: OutMessage): void {
    const partition = o.headers!['ringflow.source.partition'];
    const offset = o.headers!['ringflow.source.offset'];
    counters.deadLetters++;
    const reason = o.headers!['ringflow.reason'];
    if (reason === 'invalid_value') {
      // as for clock skew: a broken probe can send nothing but such values
      const n = ++counters.invalidValues;
      if (n === 1 || /^10+$/.test(String(n))) opts.log(`processor: ${o.headers!['ringflow.source.topic']}[${partition}]@${offset} -> dead letter (${o.headers!['ringflow.error']}); ${n} invalid values so far`);
      return;
    }
    if (reason === 'clock_skew') {
      counters.clockSkew++;
      // one line per topic and reason, then every 10, 100, ...: a host an hour ahead sends thousands
      const n = counters.clockSkew;
      if (n === 1 || /^10+$/.test(String(n))) opts.log(`processor: ${o.headers!['ringflow.source.topic']}[${partition}]@${offset} -> dead letter (${o.headers!['ringflow.error']}); ${n} so far`);
      return;
    }
    opts.log(`processor: ${o.headers!['ringflow.source.topic']}[${partition}]@${offset} -> dead letter (${o.headers!['ringflow.error']})`);
  }

  /** A fresh producer with our transactional id: initTransactions aborts whatever the old one left open. */
  async function renewProducer(): Promise<void> {
    await producer?.disconnect().catch(() => {});
    producer = newProducer();
    await producer.connect();
    producerBroken = false;
  }

  /**
   * One transaction: the partials and records consumed since the last one,
   * and their offsets. Never throws (it runs from a timer and from eachBatch):
   * a failure rewinds the consumed partitions to their last commit, is
   * counted and reported, and escalates through FailureReporter if it
   * persists. Runs in `serial`, so one failure cannot poison later commits.
   */
  async function flushOnce(): Promise<void> {
    if (offsets.size === 0 || fenced) return;
    // partials first: what stage 1 forwarded before them, it consumed before them
    const parts = partials?.take() ?? [];
    // a partial over the repartition topic's limit goes as several (splitPartial), not to the dead letters
    const budget = batchBudget(limits!.limitOf(REPARTITION_TOPIC));
    const out: OutMessage[] = [];
    for (const p of parts) {
      const key = repartitionKey(p.topic, p.host);
      for (const { value } of splitPartial(p, key, budget)) out.push({ topic: REPARTITION_TOPIC, key, value });
    }
    for (const o of buffer) out.push(o);
    const offs = offsets;
    const n = records;
    buffer = [];
    offsets = new Map();
    records = 0;
    let oversized: Oversized[] = [];
    try {
      if (producerBroken) await renewProducer();
      let tx;
      try {
        tx = await producer!.transaction();
      } catch (err) {
        producerBroken = true; // a transaction left open, or a state kafkajs will not leave
        throw err;
      }
      try {
        const byTopic = new Map<string, OutMessage[]>();
        for (const o of out) {
          let l = byTopic.get(o.topic);
          if (!l) byTopic.set(o.topic, (l = []));
          l.push(o);
        }
        ({ oversized } = await sendWithinLimits(tx, [...byTopic].map(([topic, messages]) => ({ topic, messages })), {
          limitOf: limits!.limitOf,
          compression: CompressionTypes.GZIP,
          // a partial of one series still over the repartition topic's limit, or a forwarded record
          replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o)] }),
        }));
        // CONCURRENT_TRANSACTIONS and coordinator moves: asked again in this transaction (kafka/transaction.ts)
        await retryTxStep(() => tx.sendOffsets({
          consumerGroupId: REPARTITION_GROUP,
          topics: [...offs].map(([topic, ps]) => ({ topic, partitions: [...ps].map(([partition, offset]) => ({ partition, offset: String(offset) })) })),
        }), { onRetry: () => counters.txRetries++ });
        await tx.commit();
      } catch (err) {
        await tx.abort().catch(() => {
          producerBroken = true;
        });
        throw err;
      }
    } catch (err) {
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
          try {
            if (at !== undefined) consumer?.seek({ topic, partition, offset: String(at) });
          } catch {
            // the consumer is not running (stopping): its next owner starts from the commit anyway
          }
        }
      }
      for (const [topic, ps] of [...offs, ...since]) for (const partition of ps.keys()) consumedTo.get(topic)?.delete(partition);
      counters.failedCommits++;
      const e = err as { type?: string };
      if (e.type === 'INVALID_PRODUCER_EPOCH' || e.type === 'PRODUCER_FENCED' || /INVALID_PRODUCER_EPOCH|PRODUCER_FENCED/.test(String(describeKafkaError(err)))) {
        // another instance runs with our transactional id (--instance): it owns the output now;
        // replacing our producer would fence it in turn, so this one stops
        fenced = true;
        onFatal(new FatalError(`processor stage 1 (repartition): fenced: another processor runs as --instance ${opts.instanceId} (${describeKafkaError(err)}); this one stops`, { cause: err }));
        return;
      }
      if (isTooLarge(err)) await limits?.refresh();
      failures.failed('commit', err);
      return;
    }
    failures.ok('commit');
    for (const [topic, ps] of offs) {
      let m = committed.get(topic);
      if (!m) committed.set(topic, (m = new Map()));
      for (const [p, o] of ps) m.set(p, o);
    }
    for (const o of out) if (o.topic === DEADLETTER_TOPIC) deadLettered(o);
    for (const o of oversized) opts.log(`processor: repartition: a ${o.bytes}-byte record for ${o.topic} is over its max.message.bytes (${o.limit}) -> dead letter (first bytes)`);
    counters.oversized += oversized.length;
    counters.records += n;
    counters.partials += parts.length;
    counters.transactions++;
  }

  const flush = (): Promise<void> => serial.run(flushOnce);

  return {
    counters,
    async start() {
      admin = opts.kafka.admin();
      await admin.connect();
      limits = new MessageLimits(admin, [REPARTITION_TOPIC, DEADLETTER_TOPIC], opts.log);
      await limits.refresh();
      producer = newProducer();
      await producer.connect();
      consumer = opts.kafka.consumer({ groupId: REPARTITION_GROUP, readUncommitted: false, metadataMaxAge: CONSUMER_METADATA_MAX_AGE_MS, sessionTimeout: SESSION_TIMEOUT_MS, heartbeatInterval: 1000 });
      await consumer.connect();
      superviseConsumer(consumer, 'processor stage 1 (repartition)', opts.log, opts.onFatal ?? (() => {}));
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = e.payload.memberAssignment as Record<string, number[]>;
        for (const [topic, ps] of consumedTo) for (const partition of [...ps.keys()]) if (!(mine[topic] ?? []).includes(partition)) ps.delete(partition);
      });
      await consumer.subscribe({ topics: [...EVENT_TOPICS, STATS_TOPIC], fromBeginning: true });
      // flush never rejects (failures are counted and reported in it); the catch is for a bug
      timer = setInterval(() => void flush().catch((err) => failures.failed('commit', err)), COMMIT_INTERVAL_MS);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
          if (batch.messages.length === 0 || !isRunning() || isStale()) return;
          let done = consumedTo.get(batch.topic);
          if (!done) consumedTo.set(batch.topic, (done = new Map()));
          const from = done.get(batch.partition) ?? -1n;
          const last = batch.messages[batch.messages.length - 1]!.offset;
          if (BigInt(last) < from) {
            // all consumed before (a rebalance went back to the commit): nothing to do, nor to commit
            resolveOffset(last);
            await heartbeat();
            return;
          }
          const messages = batch.messages.filter((m) => BigInt(m.offset) >= from);
          let c = committed.get(batch.topic);
          if (!c) committed.set(batch.topic, (c = new Map()));
          // the first record fetched after an assignment sits at the committed offset
          if (!c.has(batch.partition)) c.set(batch.partition, BigInt(messages[0]!.offset));
          const pre = partials !== undefined && batch.topic !== STATS_TOPIC && partials.handles(batch.topic);
          const skew = { nowNs: BigInt(Date.now()) * 1_000_000n, maxSkewNs };
          const horizonNs = skew.nowNs + maxSkewNs;
          for (const m of messages) {
            if (pre) {
              let e: ReturnType<typeof eventOf> | undefined;
              try {
                e = eventOf(fast, batch.topic, m.value);
                // one host's clock must not move the partition's watermark for the others
                if (e.ns > horizonNs) throw clockSkewError(e.ns, skew.nowNs, maxSkewNs)!;
                // a value that cannot be physically right is not data (aggregate.ts VALUE_RANGES)
                const bad = invalidValue(batch.topic, e.ev);
                if (bad !== null) throw new RejectedRecord('invalid_value', bad);
              } catch (err) {
                if (err instanceof RejectedRecord) {
                  const o = deadLetter(batch.topic, batch.partition, m.offset, m.value, err);
                  buffer.push(o);
                  // and counted in ringflow.metrics.v1 (ringflow.dropped{reason}) by stage 2, in this transaction
                  if (e !== undefined) {
                    const at = err.reason === 'clock_skew' ? skew.nowNs : e.ns; // a skewed time names no real window
                    buffer.push({ topic: REPARTITION_TOPIC, key: repartitionKey(batch.topic, e.host), value: rejectionRecord(batch.topic, e.host, at, err.reason) });
                  }
                  continue;
                }
                e = undefined; // not an event we can read: dead-lettered as routeRecord does it
              }
              if (e !== undefined) {
                try {
                  partials.add(batch.topic, e.host, e.ev, e.ns);
                } catch (err) {
                  // an event the aggregator refuses must not stop the partition
                  const o = deadLetter(batch.topic, batch.partition, m.offset, m.value, err);
                  buffer.push(o);
                }
                continue;
              }
            }
            for (const o of routeRecord(batch.topic, batch.partition, m.offset, m.value, skew)) {
              buffer.push(o);
            }
          }
          let t = offsets.get(batch.topic);
          if (!t) offsets.set(batch.topic, (t = new Map()));
          t.set(batch.partition, BigInt(last) + 1n);
          done.set(batch.partition, BigInt(last) + 1n);
          records += messages.length;
          resolveOffset(last);
          if (buffer.length + (partials?.series ?? 0) >= MAX_BUFFERED) await flush();
          await heartbeat();
        },
      });
    },
    async stop() {
      if (timer) clearInterval(timer);
      await consumer?.disconnect().catch(() => {});
      const before = counters.failedCommits;
      const pending = records;
      await flush().catch(() => {});
      if (counters.failedCommits > before) failures.final('final commit', new Error('the last transaction failed'), `${pending} records consumed since the last commit were not committed: the group's next member re-reads them`);
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
