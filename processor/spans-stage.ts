/**
 * The spans stage: ringflow.l7.v1 -> ringflow.spans.v1, exactly once.
 *
 * The l7 records are keyed by connection, so both sides of an exchange seen
 * on one host, and every request with its response, share a partition: one
 * SpanCorrelator (processor/spans.ts) per assigned partition pairs them,
 * links server spans to their client spans and times requests out.
 *
 * Exactly once, as the aggregate stage does it: the correlator's state lives
 * in memory, and each transaction commits, with the spans it produced, the
 * consumer offset = the first record a waiting request or span still needs
 * (minPendingOffset) and in that offset's metadata the correlator's
 * checkpoint. A restart (SIGKILL included) re-reads from there, re-executes
 * every decision identically (ids are hashes of the input, the watermark and
 * its idle raises are in the checkpoint) and suppresses the spans already
 * emitted. Records that do not decode, or are of another schema, go to
 * ringflow.deadletter.v1 in the same transaction, with stage 1's headers;
 * the metadata also says how far records were read, so a replay does not
 * dead-letter a record twice.
 *
 * A partition gone quiet (no record for the lateness period) is advanced by
 * the clock, IDLE_GRACE_NS behind it as the aggregate stage does, so that
 * its last requests time out and its last spans end their link wait. Quiet
 * counts only while fetches answer, and from IDLE_GRACE after they answer
 * again: through a broker outage the collectors hold the responses of the
 * requests waiting here (soak finding 5).
 */
import type { Kafka, Consumer, Producer, EachBatchPayload, Transaction } from 'kafkajs';
import { CompressionTypes } from '../kafka/kafkajs.ts';
import { MessageLimits, describeKafkaError, isTooLarge, retrying, sendWithinLimits } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { FailureReporter } from './failures.ts';
import { connectStageClients, isFenced, type TxProducer } from './stage-clients.ts';
import { FatalError } from '../common/errors.ts';
import { decodeCurrent } from '../schemas/index.ts';
import { createSerial } from './serial.ts';
import { SpanCorrelator, encodeSpan, type L7Record, type Span, type SpanCounters } from './spans.ts';
import { DEFAULT_MAX_CLOCK_SKEW_MS, RejectedRecord, clockSkewError, deadLetter, oversizedDeadLetter, type OutMessage } from './repartition.ts';
import { IDLE_GRACE_NS } from './partition.ts';
import { FetchWatch } from './fetch-watch.ts';
import { DEADLETTER_TOPIC, L7_TOPIC, REPARTITION_TOPIC, SPANS_GROUP, SPANS_TOPIC, repartitionKey } from './topics.ts';
import { rejectionRecord } from './partial.ts';

export const DEFAULT_SPAN_TIMEOUT_NS = 30_000_000_000n;
export const DEFAULT_SPAN_LINK_DELAY_NS = 2_000_000_000n;

export interface SpansStageCounters {
  /** l7 records read (dead letters included; a replay's re-reads too). */
  records: number;
  spans: number;
  deadLetters: number;
  transactions: number;
  /** Spans alone over ringflow.spans.v1's max.message.bytes: dead-lettered (first bytes), not emitted. */
  oversized: number;
  /** Records the correlator threw on (a bug, or a record it cannot take): dead-lettered, the rest of the batch goes on. */
  failedRecords: number;
  /** Partitions whose committed metadata could not be used (started from the committed offset alone). */
  checkpointsIgnored: number;
  /** Records dead-lettered for a time beyond the allowed clock skew (in deadLetters too). */
  clockSkew: number;
  /**
   * Transaction steps asked again after the coordinator said "not now"
   * (CONCURRENT_TRANSACTIONS while it completes the previous commit, or a
   * coordinator moving or loading): retried in the same transaction, not failures.
   */
  txRetries: number;
}

export interface SpansStageOptions {
  kafka: Kafka;
  instanceId: string;
  /** A request with no response this long (event time) becomes an ERROR span. */
  timeoutNs?: bigint;
  /** How long a completed span waits for its counterpart (server/client) before it is emitted. */
  linkDelayNs?: bigint;
  /** The correlator's watermark trails the newest record by this (the processor's --lateness). */
  latenessNs: bigint;
  /** How often quiet partitions are advanced by the clock. */
  idleTickMs: number;
  /**
   * l7 records dated further than this ahead of the processor's clock are
   * dead-lettered (reason clock_skew): one would raise the partition's
   * watermark and time out every other host's waiting request (default 60 s).
   */
  maxClockSkewMs?: number;
  log: (l: string) => void;
  /** For tests: awaited in each transaction after its sends, before its offsets and commit (a broker stopped there). */
  beforeCommit?: (partition: number) => Promise<void>;
  onSpans?: (spans: readonly Span[]) => void;
  onFatal?: (err: FatalError) => void;
}

export interface SpansStage {
  counters: SpansStageCounters;
  /** The correlators' counters, summed over the partitions held now. */
  correlators(): SpanCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Offset-commit metadata: the correlator's checkpoint, and the offset after the last record read. */
interface Metadata {
  v: 1;
  /** Records below this were read (dead letters written) before the commit. */
  read: string;
  spans: string;
}

interface PartitionSpans {
  c: SpanCorrelator;
  /** Offset after the last record read. */
  next: bigint;
  /** Records below this were dead-lettered (if bad) before the checkpoint this state came from. */
  deadFrom: bigint;
  /** The offset last committed (null: none by this instance). */
  committed: bigint | null;
  lastEventAt: number;
}

export function createSpansStage(opts: SpansStageOptions): SpansStage {
  const counters: SpansStageCounters = { records: 0, spans: 0, deadLetters: 0, transactions: 0, oversized: 0, failedRecords: 0, checkpointsIgnored: 0, clockSkew: 0, txRetries: 0 };
  const maxSkewNs = BigInt(opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS) * 1_000_000n;
  const failures = new FailureReporter({ what: 'processor: spans', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  let fenced = false;
  /** A transaction's failure: fencing ends the service at once (another instance owns our output now), the rest is counted and escalated if it persists. */
  const commitFailed = (err: unknown): void => {
    if (!isFenced(err)) return failures.failed('commit', err);
    if (fenced) return;
    fenced = true;
    opts.onFatal?.(new FatalError(`processor spans stage: fenced: another processor runs as --instance ${opts.instanceId} (${describeKafkaError(err)}); this one stops`, { cause: err }));
  };
  let limits: MessageLimits | undefined;
  const states = new Map<number, PartitionSpans>();
  const timeoutNs = opts.timeoutNs ?? DEFAULT_SPAN_TIMEOUT_NS;
  const linkDelayNs = opts.linkDelayNs ?? DEFAULT_SPAN_LINK_DELAY_NS;
  const latenessMs = Number(opts.latenessNs / 1_000_000n);
  let consumer: Consumer | undefined;
  let producer: TxProducer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  const serial = createSerial();
  /** Whether fetches answer, and since when (processor/fetch-watch.ts). */
  const fetches = new FetchWatch();

  async function stateFor(partition: number): Promise<PartitionSpans> {
    let s = states.get(partition);
    if (s) return s;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: SPANS_GROUP, topics: [L7_TOPIC] }));
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    let meta: Metadata | undefined;
    let c: SpanCorrelator | undefined;
    if (p && p.offset !== '-1' && p.metadata) {
      try {
        meta = JSON.parse(p.metadata) as Metadata;
        if (meta === null || typeof meta !== 'object' || meta.v !== 1) throw new Error(`unknown version ${String((meta as { v?: unknown } | null)?.v)}`);
        if (!/^\d+$/.test(String(meta.read))) throw new Error('no read offset');
        c = new SpanCorrelator({ timeoutNs, linkDelayNs, latenessNs: opts.latenessNs, checkpoint: meta.spans });
      } catch (err) {
        // not ours (or a future version, or a checkpoint the correlator refuses): the committed
        // offset alone is all we can use; throwing here would re-read this batch forever
        counters.checkpointsIgnored++;
        opts.log(`processor: spans: ${L7_TOPIC}[${partition}]: ignoring the commit's metadata (${(err as Error).message})`);
        meta = undefined;
        c = undefined;
      }
    }
    c ??= new SpanCorrelator({ timeoutNs, linkDelayNs, latenessNs: opts.latenessNs });
    s = { c, next: -1n, deadFrom: meta ? BigInt(meta.read) : 0n, committed: p && p.offset !== '-1' ? BigInt(p.offset) : null, lastEventAt: Date.now() };
    states.set(partition, s);
    return s;
  }

  /** The record that counts one L7 record this stage dead-lettered in stage 2's ringflow.dropped (partial.ts rejectionRecord). */
  function rejectionOf(host: string, atNs: bigint, reason: string): OutMessage {
    return { topic: REPARTITION_TOPIC, key: repartitionKey(L7_TOPIC, host), value: rejectionRecord(L7_TOPIC, host, atNs, reason) };
  }

  /** One transaction: `spans` and `dead`, and the commit of what `s` still needs with its checkpoint. Skipped when there is nothing new. */
  async function emit(partition: number, s: PartitionSpans, spans: readonly Span[], dead: readonly OutMessage[]): Promise<boolean> {
    const commitOffset = s.c.minPendingOffset() ?? s.next;
    if (spans.length === 0 && dead.length === 0 && commitOffset === s.committed) return false;
    const meta: Metadata = { v: 1, read: String(s.next), spans: s.c.checkpoint() };
    let oversized = 0;
    let tx: Transaction | undefined;
    try {
      // inside the failure path too: advance() has handed these spans out already, and a
      // transaction() that throws (a producer being replaced while the broker is away) must
      // drop the state as any failure does; else the state lives on, saying they were
      // emitted, and they are lost (the soak's missing spans after a broker restart)
      const t = (tx = await producer!.transaction());
      const topicMessages: { topic: string; messages: { key: string; value: Buffer; headers?: OutMessage['headers'] }[] }[] = [];
      if (spans.length > 0) topicMessages.push({ topic: SPANS_TOPIC, messages: spans.map(encodeSpan) });
      // dead letters, and the rejection records that count them in ringflow.dropped (stage 2)
      for (const topic of new Set(dead.map((d) => d.topic))) {
        topicMessages.push({ topic, messages: dead.filter((d) => d.topic === topic).map((d) => ({ key: d.key, value: d.value, ...(d.headers ? { headers: d.headers } : {}) })) });
      }
      // one fetched batch's spans can be far over the broker's limit for one request (33 k
      // requests/s did it): as many requests as the limits need, in this one transaction
      const sent = await sendWithinLimits(t, topicMessages, {
        limitOf: limits!.limitOf,
        compression: CompressionTypes.GZIP,
        replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o, { topic: L7_TOPIC, partition })] }),
      });
      oversized = sent.oversized.length;
      for (const o of sent.oversized) {
        opts.log(`processor: spans: ${L7_TOPIC}[${partition}]: a ${o.bytes}-byte record for ${o.topic} is over its max.message.bytes (${o.limit}) -> dead letter (first bytes)`);
      }
      await opts.beforeCommit?.(partition);
      // a transaction of offsets alone, begun while the coordinator still writes the markers of
      // the one before, is refused with CONCURRENT_TRANSACTIONS, which kafkajs does not retry
      // there (kafka/transaction.ts): asked again shortly, in this same transaction
      await retryTxStep(() => t.sendOffsets({
        consumerGroupId: SPANS_GROUP,
        topics: [{ topic: L7_TOPIC, partitions: [{ partition, offset: String(commitOffset), metadata: JSON.stringify(meta) } as never] }],
      }), { onRetry: () => counters.txRetries++ });
      await t.commit();
    } catch (err) {
      if (tx) await producer!.abort(tx, err);
      // the spans are lost with this state: drop it and read again from the last commit
      // (the idle tick's failures included, which no consumer restart would rewind)
      states.delete(partition);
      try {
        consumer?.seek({ topic: L7_TOPIC, partition, offset: String(s.committed ?? 0n) });
      } catch {
        // not running (restarting after a crash): its restart reads from the committed offset anyway
      }
      // the topic's limit may have been lowered since we read it
      if (isTooLarge(err)) await limits!.refresh();
      throw err;
    }
    s.committed = commitOffset;
    counters.oversized += oversized;
    counters.spans += spans.length - oversized;
    counters.deadLetters += dead.length;
    counters.transactions++;
    if (spans.length > 0) opts.onSpans?.(spans);
    return true;
  }

  return {
    counters,
    correlators() {
      const sum: Record<string, number> = {};
      for (const s of states.values()) for (const [k, v] of Object.entries(s.c.counters)) sum[k] = (sum[k] ?? 0) + v;
      return sum as unknown as SpanCounters;
    },
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-spans-${opts.instanceId}`, groupId: SPANS_GROUP,
        name: 'processor spans stage', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      }));
      limits = new MessageLimits(admin, [SPANS_TOPIC, DEADLETTER_TOPIC, REPARTITION_TOPIC], opts.log);
      await limits.refresh();
      // partitions taken from us lose their correlator; their next owner replays from the checkpoint
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[L7_TOPIC] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
      });
      consumer.on(consumer.events.FETCH, () => fetches.answered(Date.now()));
      await consumer.subscribe({ topic: L7_TOPIC, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload: EachBatchPayload) =>
          serial.run(async () => {
            const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            const s = await stateFor(batch.partition);
            const dead: OutMessage[] = [];
            const nowNs = BigInt(Date.now()) * 1_000_000n;
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              let rec: L7Record | undefined;
              try {
                if (!m.value) throw new Error('record has no value');
                const d = decodeCurrent(m.value); // an older writer version reads as the current one
                if (d.schema.topic !== L7_TOPIC) throw new Error(`record of ${d.schema.topic} found on ${L7_TOPIC}`);
                rec = d.value as unknown as L7Record;
                // judged against the clock when first read; the dead letter commits with the
                // read offset, and a replay (below deadFrom) judges it the same unless a day passed
                const skew = clockSkewError(BigInt(rec.boot_time_ns) + BigInt(rec.ts_ns), nowNs, maxSkewNs);
                if (skew) throw skew;
              } catch (err) {
                // below deadFrom: dead-lettered before the checkpoint we replay from
                if (offset >= s.deadFrom && offset >= s.next) {
                  if (err instanceof RejectedRecord && err.reason === 'clock_skew') counters.clockSkew++;
                  const o = deadLetter(L7_TOPIC, batch.partition, m.offset, m.value, err);
                  // a host an hour ahead sends thousands: its first, then every 10th, 100th, ...
                  const n = counters.clockSkew;
                  const quiet = err instanceof RejectedRecord && err.reason === 'clock_skew' && n > 1 && !/^10+$/.test(String(n));
                  if (!quiet) opts.log(`processor: ${L7_TOPIC}[${batch.partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})${err instanceof RejectedRecord ? `; ${n} so far` : ''}`);
                  dead.push(o);
                  // counted in ringflow.metrics.v1 as ringflow.dropped{reason, signal=ringflow.l7.v1} by stage 2,
                  // committed with the dead letter (as stage 1 counts its rejections); a skewed time names no real window
                  if (err instanceof RejectedRecord && rec !== undefined) dead.push(rejectionOf(String(rec.host), nowNs, err.reason));
                }
                if (offset + 1n > s.next) s.next = offset + 1n;
                continue;
              }
              try {
                s.c.add(rec, offset);
              } catch (err) {
                // a record the correlator cannot take must not stop the partition: it is
                // dead-lettered (once: below deadFrom it was before the checkpoint) and the rest goes on
                counters.failedRecords++;
                if (offset >= s.deadFrom && offset >= s.next) {
                  const o = deadLetter(L7_TOPIC, batch.partition, m.offset, m.value, err);
                  o.headers!['ringflow.reason'] = 'correlator';
                  const n = counters.failedRecords;
                  if (n === 1 || (n % 10 === 0 && /^10*$/.test(String(n)))) opts.log(`processor: spans: ${L7_TOPIC}[${batch.partition}]@${m.offset}: the correlator failed (${(err as Error).message}) -> dead letter (${n} so far)`);
                  dead.push(o);
                  dead.push(rejectionOf(String(rec.host), BigInt(rec.boot_time_ns) + BigInt(rec.ts_ns), 'correlator'));
                }
              }
              if (offset + 1n > s.next) s.next = offset + 1n;
            }
            counters.records += batch.messages.length;
            s.lastEventAt = Date.now();
            try {
              // a success is a transaction committed, not a batch with nothing to commit
              if (await emit(batch.partition, s, s.c.advance(), dead)) failures.ok('commit');
            } catch (err) {
              // emit rewound this partition to its last commit: the next fetch re-reads it
              commitFailed(err);
              return;
            }
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
      // quiet partitions: their last requests time out and their last spans end their wait by the clock
      tick = setInterval(() => {
        // the same transactions as the batches': failures of both are one kind
        void serial.run(async () => {
          const now = Date.now();
          // a partition's silence is evidence only while we can read it: with the broker away
          // (soak finding 5) the collectors hold their records and send them when it is back,
          // in order, after their own back-off (up to IDLE_GRACE); the clock must not time out
          // a request whose response is among them, so the silence counts from then
          if (!fetches.answering(now)) return;
          const wm = BigInt(now) * 1_000_000n - IDLE_GRACE_NS;
          let did = false;
          for (const [partition, s] of states) {
            if (s.c.size === 0 || !fetches.quiet(now, s.lastEventAt, latenessMs)) continue;
            did = (await emit(partition, s, s.c.advance(wm), [])) || did;
          }
          if (did) failures.ok('commit');
        }).catch((err) => commitFailed(err));
      }, opts.idleTickMs);
    },
    async stop() {
      if (tick) clearInterval(tick);
      await consumer?.disconnect().catch(() => {});
      await serial.idle();
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
