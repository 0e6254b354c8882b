/**
 * The consume-transform-produce loop of a keyed exactly-once stage (spans,
 * profiles): one input topic read in a group, per assigned partition a state
 * of the stage's own, and per fetched batch (and per idle close) one Kafka
 * transaction that holds what the batch produced, its dead letters and
 * rejection records, and the consumer offset with the state's checkpoint as
 * its metadata. What the stage decides (how a record is read, what goes out,
 * where the commit points and what the checkpoint says) it passes in as
 * hooks; the guarantees are kept here, once:
 *
 *   - the state of a partition is rebuilt from its committed offset and
 *     metadata; metadata the stage refuses is ignored (counted, logged once
 *     per partition), since throwing would re-read that batch forever;
 *   - a transaction that fails anywhere (beginning it included: a producer
 *     being replaced while the broker is away) is aborted, the partition's
 *     state dropped and its consumer rewound to the last commit, because the
 *     state has already handed out what the transaction carried (the soak's
 *     lost spans after a broker restart);
 *   - fencing ends the service at once (another instance owns the output
 *     now); other failures are counted and escalated if they persist
 *     (FailureReporter);
 *   - "not now" from the transaction coordinator on sendOffsets is asked
 *     again in the same transaction (kafka/transaction.ts), counted;
 *   - one batch's output can exceed a request's limit: sent in as many
 *     requests as the limits need, a record alone over it dead-lettered;
 *   - partitions taken in a rebalance lose their state (their next owner
 *     replays from the checkpoint);
 *   - a quiet partition is advanced by the clock IDLE_GRACE behind it, but
 *     only while fetches answer (soak finding 5, processor/fetch-watch.ts);
 *   - batch handler and idle clock run one at a time (one open transaction
 *     per transactional producer).
 */
import type { Kafka, Consumer, EachBatchPayload, Transaction, KafkaMessage } from 'kafkajs';
import { CompressionTypes } from '../kafka/kafkajs.ts';
import { MessageLimits, isTooLarge, retrying, sendWithinLimits, type Oversized } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { FailureReporter } from './failures.ts';
import { commitFailureHandler, connectStageClients, type TxProducer } from './stage-clients.ts';
import type { FatalError } from '../common/errors.ts';
import { createSerial } from './serial.ts';
import { oversizedDeadLetter, type OutMessage } from './repartition.ts';
import { IDLE_GRACE_NS } from './partition.ts';
import { FetchWatch } from './fetch-watch.ts';
import { DEADLETTER_TOPIC, REPARTITION_TOPIC } from './topics.ts';

/** The counters every keyed stage keeps; the runner updates these. */
export interface StageRunnerCounters {
  /** Input records read (a replay's re-reads too). */
  records: number;
  transactions: number;
  /** Output records alone over their topic's max.message.bytes: dead-lettered (first bytes), not emitted. */
  oversized: number;
  /** Partitions whose committed metadata could not be used (started from the committed offset alone). */
  checkpointsIgnored: number;
  /** Transaction steps asked again after the coordinator said "not now": retried in the same transaction, not failures. */
  txRetries: number;
}

/** The options every keyed stage takes (its own are added to these). */
export interface KeyedStageOptions {
  kafka: Kafka;
  instanceId: string;
  /** How often quiet partitions are advanced by the clock. */
  idleTickMs: number;
  /**
   * Records dated further than this ahead of the processor's clock are
   * dead-lettered (reason clock_skew): one would raise the partition's
   * watermark, and every other host's records would be late or time out (default 60 s).
   */
  maxClockSkewMs?: number;
  log: (l: string) => void;
  /** For tests: awaited in each transaction after its sends, before its offsets and commit (a broker stopped there). */
  beforeCommit?: (partition: number) => Promise<void>;
  onFatal?: (err: FatalError) => void;
}

export interface StageRunnerOptions<P, O> {
  kafka: Kafka;
  instanceId: string;
  /** The stage as logs, its transactional id and its fencing error name it ('spans': 'processor: spans', 'ringflow-spans-<id>', 'processor spans stage'). */
  name: string;
  inTopic: string;
  group: string;
  outTopic: string;
  counters: StageRunnerCounters;
  log: (l: string) => void;
  onFatal?: (err: FatalError) => void;
  /** For tests: awaited in each transaction after its sends, before its offsets and commit. */
  beforeCommit?: (partition: number) => Promise<void>;
  idleTickMs: number;
  /** A partition with no record for this long (while fetches answer) is advanced by the clock. */
  idleQuietMs: number;

  /** A partition's state from its committed metadata; throws if the metadata is not one it can use. */
  restore(metadata: string): P;
  /** A partition's state with no (usable) checkpoint. */
  fresh(): P;
  /** Reads one fetched batch into the state; what it dead-letters (and the rejection records that count it) goes into `dead`. */
  read(part: P, partition: number, messages: readonly KafkaMessage[], dead: OutMessage[], nowNs: bigint): void;
  /** What the state lets out after a batch. */
  advance(part: P): readonly O[];
  /** Whether the idle clock has anything to advance in this state. */
  pending(part: P): boolean;
  /** What the state lets out with its watermark raised to `wmNs` by the clock. */
  idle(part: P, wmNs: bigint): readonly O[];
  /** The consumer offset to commit: the first record the state still needs, else the next to read. */
  commitOffset(part: P): bigint;
  /** The offset's metadata. */
  checkpoint(part: P): string;
  encode(o: O): { key: string; value: Buffer };
  /** The log line of an output record over its topic's limit. */
  oversizedLine(partition: number, o: Oversized): string;
  /** After a commit: the stage's own counters of what went out (`oversized` of `out` were dead-lettered instead). */
  committed(out: readonly O[], dead: readonly OutMessage[], oversized: number): void;
  /** After a commit and the counters: the output that was committed (not called when there was none). */
  onOutput?: (out: readonly O[]) => void;
}

export interface PartitionSlot<P> {
  part: P;
  /** The offset last committed (null: none by this instance). */
  committed: bigint | null;
  lastEventAt: number;
}

export interface StageRunner<P> {
  /** The states of the partitions held now. */
  parts(): IterableIterator<P>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createStageRunner<P, O>(opts: StageRunnerOptions<P, O>): StageRunner<P> {
  const { counters, inTopic, group } = opts;
  const failures = new FailureReporter({ what: `processor: ${opts.name}`, log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  const commitFailed = commitFailureHandler({ stage: `processor ${opts.name} stage`, instanceId: opts.instanceId, failures, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  let limits: MessageLimits | undefined;
  const states = new Map<number, PartitionSlot<P>>();
  let consumer: Consumer | undefined;
  let producer: TxProducer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  const serial = createSerial();
  /** Whether fetches answer, and since when (processor/fetch-watch.ts). */
  const fetches = new FetchWatch();

  async function stateFor(partition: number): Promise<PartitionSlot<P>> {
    let s = states.get(partition);
    if (s) return s;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: group, topics: [inTopic] }));
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    let part: P | undefined;
    if (p && p.offset !== '-1' && p.metadata) {
      try {
        part = opts.restore(p.metadata);
      } catch (err) {
        // not ours (or a future version, or a checkpoint the stage refuses): the committed
        // offset alone is all we can use; throwing here would re-read this batch forever
        counters.checkpointsIgnored++;
        opts.log(`processor: ${opts.name}: ${inTopic}[${partition}]: ignoring the commit's metadata (${(err as Error).message})`);
      }
    }
    s = { part: part ?? opts.fresh(), committed: p && p.offset !== '-1' ? BigInt(p.offset) : null, lastEventAt: Date.now() };
    states.set(partition, s);
    return s;
  }

  /** One transaction: `out` and `dead`, and the commit of what `s` still needs with its checkpoint. Skipped when there is nothing new. */
  async function emit(partition: number, s: PartitionSlot<P>, out: readonly O[], dead: readonly OutMessage[]): Promise<boolean> {
    const commitOffset = opts.commitOffset(s.part);
    if (out.length === 0 && dead.length === 0 && commitOffset === s.committed) return false;
    const meta = opts.checkpoint(s.part);
    let oversized = 0;
    let tx: Transaction | undefined;
    try {
      // inside the failure path too: the state has handed this output out already, and a
      // transaction() that throws (a producer being replaced while the broker is away) must
      // drop the state as any failure does; else the state lives on, saying it was
      // emitted, and it is lost (the soak's missing spans after a broker restart)
      const t = (tx = await producer!.transaction());
      const topicMessages: { topic: string; messages: { key: string; value: Buffer; headers?: OutMessage['headers'] }[] }[] = [];
      if (out.length > 0) topicMessages.push({ topic: opts.outTopic, messages: out.map(opts.encode) });
      // dead letters, and the rejection records that count them in ringflow.dropped (stage 2)
      for (const topic of new Set(dead.map((d) => d.topic))) {
        topicMessages.push({ topic, messages: dead.filter((d) => d.topic === topic).map((d) => ({ key: d.key, value: d.value, ...(d.headers ? { headers: d.headers } : {}) })) });
      }
      // one fetched batch's output can be far over the broker's limit for one request (33 k
      // requests/s did it to the spans): as many requests as the limits need, in this one transaction
      const sent = await sendWithinLimits(t, topicMessages, {
        limitOf: limits!.limitOf,
        compression: CompressionTypes.GZIP,
        replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o, { topic: inTopic, partition })] }),
      });
      oversized = sent.oversized.length;
      for (const o of sent.oversized) opts.log(opts.oversizedLine(partition, o));
      await opts.beforeCommit?.(partition);
      // a transaction of offsets alone, begun while the coordinator still writes the markers of
      // the one before, is refused with CONCURRENT_TRANSACTIONS, which kafkajs does not retry
      // there (kafka/transaction.ts): asked again shortly, in this same transaction
      await retryTxStep(() => t.sendOffsets({
        consumerGroupId: group,
        topics: [{ topic: inTopic, partitions: [{ partition, offset: String(commitOffset), metadata: meta } as never] }],
      }), { onRetry: () => counters.txRetries++ });
      await t.commit();
    } catch (err) {
      if (tx) await producer!.abort(tx, err);
      // the output is lost with this state: drop it and read again from the last commit
      // (the idle tick's failures included, which no consumer restart would rewind)
      states.delete(partition);
      try {
        consumer?.seek({ topic: inTopic, partition, offset: String(s.committed ?? 0n) });
      } catch {
        // not running (restarting after a crash): its restart reads from the committed offset anyway
      }
      // the topic's limit may have been lowered since we read it
      if (isTooLarge(err)) await limits!.refresh();
      throw err;
    }
    s.committed = commitOffset;
    counters.oversized += oversized;
    opts.committed(out, dead, oversized);
    counters.transactions++;
    if (out.length > 0) opts.onOutput?.(out);
    return true;
  }

  return {
    parts: () => [...states.values()].map((s) => s.part).values(),
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-${opts.name}-${opts.instanceId}`, groupId: group,
        name: `processor ${opts.name} stage`, log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      }));
      limits = new MessageLimits(admin, [opts.outTopic, DEADLETTER_TOPIC, REPARTITION_TOPIC], opts.log);
      await limits.refresh();
      // partitions taken from us lose their state; their next owner replays from the checkpoint
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[inTopic] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
      });
      consumer.on(consumer.events.FETCH, () => fetches.answered(Date.now()));
      await consumer.subscribe({ topic: inTopic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload: EachBatchPayload) =>
          serial.run(async () => {
            const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            const s = await stateFor(batch.partition);
            const dead: OutMessage[] = [];
            opts.read(s.part, batch.partition, batch.messages, dead, BigInt(Date.now()) * 1_000_000n);
            counters.records += batch.messages.length;
            s.lastEventAt = Date.now();
            try {
              // a success is a transaction committed, not a batch with nothing to commit
              if (await emit(batch.partition, s, opts.advance(s.part), dead)) failures.ok('commit');
            } catch (err) {
              // emit rewound this partition to its last commit: the next fetch re-reads it
              commitFailed(err);
              return;
            }
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
      // quiet partitions are advanced by the clock, IDLE_GRACE behind it
      tick = setInterval(() => {
        // the same transactions as the batches': failures of both are one kind
        void serial.run(async () => {
          const now = Date.now();
          // a partition's silence is evidence only while we can read it: with the broker away
          // (soak finding 5) the collectors hold their records and send them when it is back,
          // in order, after their own back-off (up to IDLE_GRACE); the clock must not close or
          // time out what they hold, so the silence counts from then
          if (!fetches.answering(now)) return;
          const wm = BigInt(now) * 1_000_000n - IDLE_GRACE_NS;
          let did = false;
          for (const [partition, s] of states) {
            if (!opts.pending(s.part) || !fetches.quiet(now, s.lastEventAt, opts.idleQuietMs)) continue;
            did = (await emit(partition, s, opts.idle(s.part, wm), [])) || did;
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
