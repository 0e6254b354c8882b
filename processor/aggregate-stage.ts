/**
 * Stage 2: windowed aggregation of the re-keyed events, exactly once.
 *
 * Each partition of the repartition topic is owned by one instance of the
 * consumer group, and every series lives in one partition (see topics.ts), so
 * each point of ringflow.metrics.v1 has exactly one writer.
 *
 * Window state lives in memory; what makes a restart exact is what the
 * transaction commits with the points of the windows it closes:
 *   - the consumer offset = the first offset still needed by an open window
 *     (so a restart re-reads exactly what the lost state held), and
 *   - in that offset's metadata, the checkpoint: the position reached, the
 *     event-time watermark, and the end of the last window emitted.
 * On restart, a re-read record before the checkpointed position whose window
 * was already emitted is skipped (it is in a committed point, or was counted
 * late in one); everything else is processed as the first time. Readers use
 * read_committed, so a crash between transactions shows no partial output.
 *
 * A partition gone quiet has its windows closed by the processing clock
 * (PartitionState.advanceIdle), but only while its silence means something:
 * with the broker away the collectors hold their records and send them, with
 * their true times, once it is back (soak finding 5: ~30% of HTTP requests
 * late in a soak with a broker restart). The idle clock stops while fetches go
 * unanswered, never runs past what the last answered fetch vouches for, and
 * after an outage counts silence only from IDLE_GRACE after the first answer
 * (processor/fetch-watch.ts, as the spans stage).
 */
import { createSerial } from './serial.ts';
import type { Kafka, Consumer, Producer, EachBatchPayload } from 'kafkajs';
import { CompressionTypes } from '../kafka/kafkajs.ts';
import { MessageLimits, isTooLarge, retrying, sendWithinLimits } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { FailureReporter } from './failures.ts';
import { oversizedDeadLetter } from './repartition.ts';
import { commitFailureHandler, connectStageClients, type TxProducer } from './stage-clients.ts';
import type { FatalError } from '../common/errors.ts';
import { AGGREGATE_GROUP, DEADLETTER_TOPIC, METRICS_TOPIC, REPARTITION_TOPIC } from './topics.ts';
import type { PartitionState } from './partition.ts';
import { FetchWatch, IDLE_GRACE_MS } from './fetch-watch.ts';

/** How often the points closed by the batches read are committed, for every partition in one transaction (as stage 1). */
export const COMMIT_INTERVAL_MS = 100;

export interface AggregateCounters {
  /** Events taken (a partial aggregate counts its events). */
  events: number;
  points: number;
  transactions: number;
  skippedReplay: number;
  /** Partitions whose committed checkpoint could not be used (started empty from the committed offset). */
  checkpointsIgnored: number;
  /** Points alone over ringflow.metrics.v1's max.message.bytes: dead-lettered (first bytes), not emitted. */
  oversized: number;
  /** Transactions that failed (their partitions re-read from the last commit). */
  failedCommits: number;
  /** sendOffsets asked again in the same transaction after a "not now" from the coordinator (kafka/transaction.ts). */
  txRetries: number;
}

export interface AggregateStageOptions {
  kafka: Kafka;
  instanceId: string;
  /** A fresh state for a partition, restored from its checkpoint (undefined: none yet). */
  newState: (partition: number, checkpoint: string | undefined) => PartitionState;
  /** How often idle partitions are advanced by processing time. */
  idleTickMs: number;
  /**
   * After fetches answer again (a broker outage, the stage's start), how long
   * past IDLE_GRACE the stage must have been able to read before the idle
   * clock moves (the partitions' own quiet period; default IDLE_GRACE).
   */
  idleQuietMs?: number;
  log: (l: string) => void;
  onPoints?: (points: readonly { value: Buffer }[]) => void;
  /** The consumer stopped for good (see superviseConsumer), or a failure persisted (FailureReporter). */
  onFatal?: (err: FatalError) => void;
  /** Failures of the same kind that last this long with no success end the service (default 60 s). */
  failurePersistMs?: number;
}

export interface AggregateStage {
  counters: AggregateCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createAggregateStage(opts: AggregateStageOptions): AggregateStage {
  const counters: AggregateCounters = { events: 0, points: 0, transactions: 0, skippedReplay: 0, checkpointsIgnored: 0, oversized: 0, failedCommits: 0, txRetries: 0 };
  const failures = new FailureReporter({
    what: 'processor: aggregate', log: opts.log,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}), ...(opts.failurePersistMs !== undefined ? { persistMs: opts.failurePersistMs } : {}),
  });
  const commitFailed = commitFailureHandler({ stage: 'processor stage 2 (aggregate)', instanceId: opts.instanceId, failures, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  let limits: MessageLimits | undefined;
  const states = new Map<number, PartitionState>();
  /** Per partition, the offset last committed (or read back at restore): where a failed transaction rewinds to. */
  const committedAt = new Map<number, bigint>();
  let consumer: Consumer | undefined;
  let producer: TxProducer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  let flushTimer: NodeJS.Timeout | undefined;
  const serial = createSerial();
  const fetches = new FetchWatch();
  const idleQuietMs = opts.idleQuietMs ?? IDLE_GRACE_MS;

  /**
   * The group's committed offsets and checkpoints, fetched once for every
   * partition when the first one assigned to us needs its state (one round
   * trip, not one per partition: that delayed the first batches). Valid
   * until the assignment changes or a commit of ours fails (only partitions
   * with no state read it; a state is dropped only then).
   */
  let committedOffsets: Promise<Awaited<ReturnType<ReturnType<Kafka['admin']>['fetchOffsets']>>> | undefined;
  async function stateFor(partition: number): Promise<PartitionState> {
    let s = states.get(partition);
    if (s) return s;
    committedOffsets ??= retrying(() => admin!.fetchOffsets({ groupId: AGGREGATE_GROUP, topics: [REPARTITION_TOPIC] }));
    let committed;
    try {
      committed = await committedOffsets;
    } catch (err) {
      committedOffsets = undefined;
      throw err;
    }
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    const meta = p && p.offset !== '-1' && p.metadata ? p.metadata : undefined;
    committedAt.set(partition, p && p.offset !== '-1' ? BigInt(p.offset) : 0n);
    s = opts.newState(partition, meta);
    if (s.restoreError !== null) {
      // not a checkpoint of ours: throwing here would re-read this batch forever
      counters.checkpointsIgnored++;
      opts.log(`processor: aggregate: ${REPARTITION_TOPIC}[${partition}]: ignoring the commit's checkpoint (${s.restoreError}); starting empty from offset ${committedAt.get(partition)}`);
    }
    states.set(partition, s);
    return s;
  }

  /** Emit what `s` closed, committing its checkpoint with the points. */
  function emit(partition: number, s: PartitionState, nextOffset: bigint, force: boolean): Promise<boolean> {
    return emitMany([{ partition, s, nextOffset }], force);
  }

  /**
   * Emit what the states closed, in one transaction: every partition's points
   * with its offset (the first one an open window still needs) and, in its
   * metadata, its checkpoint. One transaction for all of them, not one per
   * partition: a transaction costs tens to hundreds of ms on a loaded broker.
   * True if a transaction committed (false: there was nothing to commit).
   */
  async function emitMany(list: { partition: number; s: PartitionState; nextOffset: bigint }[], force: boolean): Promise<boolean> {
    const parts = list.map((e) => ({ ...e, points: e.s.takeClosed() })).filter((e) => force || e.points.length > 0);
    if (parts.length === 0) return false;
    const commits = parts.map((e) => ({ partition: e.partition, offset: e.s.minOpenOffset() ?? e.nextOffset, metadata: e.s.checkpoint() }));
    const points = parts.flatMap((e) => e.points);
    let oversized = 0;
    let tx: Awaited<ReturnType<TxProducer['transaction']>> | undefined;
    try {
      // inside the try: with the broker away transaction() itself throws, and the points
      // taken above must then be rebuilt from the last commit like those of a failed commit
      // (outside it, the windows closed by an idle tick during an outage were lost)
      tx = await producer!.transaction();
      if (points.length > 0) {
        // within the topic's max.message.bytes per request; a point alone over it is dead-lettered
        const sent = await sendWithinLimits(tx, [{ topic: METRICS_TOPIC, messages: points.map((p) => ({ key: p.key, value: p.value })) }], {
          limitOf: limits!.limitOf,
          compression: CompressionTypes.GZIP,
          replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o)] }),
        });
        oversized = sent.oversized.length;
        for (const o of sent.oversized) opts.log(`processor: aggregate: a ${o.bytes}-byte point for ${o.topic} is over its max.message.bytes (${o.limit}) -> dead letter (first bytes)`);
      }
      // an idle tick's transaction often carries offsets alone: refused with CONCURRENT_TRANSACTIONS
      // while the coordinator completes the one before, asked again in this transaction
      await retryTxStep(() => tx!.sendOffsets({
        consumerGroupId: AGGREGATE_GROUP,
        topics: [{ topic: REPARTITION_TOPIC, partitions: commits.map((c) => ({ partition: c.partition, offset: String(c.offset), metadata: c.metadata }) as never) }],
      }), { onRetry: () => counters.txRetries++ });
      await tx.commit();
    } catch (err) {
      if (tx) await producer!.abort(tx, err);
      // the points are lost with these states: drop them and read again from the last commit
      // (a failure in a timer is no consumer crash: nothing else would rewind)
      committedOffsets = undefined;
      for (const { partition, s } of parts) {
        if (states.get(partition) === s) states.delete(partition);
        try {
          consumer?.seek({ topic: REPARTITION_TOPIC, partition, offset: String(committedAt.get(partition) ?? 0n) });
        } catch {
          // not running (stopping): the partition's next owner starts from the commit anyway
        }
      }
      counters.failedCommits++;
      if (isTooLarge(err)) await limits?.refresh();
      throw err;
    }
    for (const c of commits) committedAt.set(c.partition, c.offset);
    counters.oversized += oversized;
    counters.points += points.length - oversized;
    counters.transactions++;
    opts.onPoints?.(points);
    return true;
  }

  /** Partitions read since the last flush: partition -> its state then and the offset after its last record. */
  let pending = new Map<number, { s: PartitionState; nextOffset: bigint }>();
  /** Emits what the batches read since the last call closed (run in `serial`). */
  async function flushPending(): Promise<boolean> {
    const list = [...pending].map(([partition, e]) => ({ partition, ...e })).filter((e) => states.get(e.partition) === e.s); // revoked since: not ours to commit
    pending = new Map();
    return await emitMany(list, false);
  }

  return {
    counters,
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-aggregate-${opts.instanceId}`, groupId: AGGREGATE_GROUP,
        name: 'processor stage 2 (aggregate)', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      }));
      limits = new MessageLimits(admin, [METRICS_TOPIC, DEADLETTER_TOPIC], opts.log);
      await limits.refresh();
      // partitions taken from us lose their in-memory state; their next owner replays from the checkpoint.
      // Those we keep keep theirs, while kafkajs reads them again from the committed offset: the
      // state skips what it already holds (PartitionState.add: 'replayed')
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[REPARTITION_TOPIC] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
        committedOffsets = undefined;
      });
      consumer.on(consumer.events.FETCH, () => fetches.answered(Date.now()));
      await consumer.subscribe({ topic: REPARTITION_TOPIC, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload: EachBatchPayload) =>
          serial.run(async () => {
            const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            const s = await stateFor(batch.partition);
            for (const m of batch.messages) {
              const r = s.add(m.key?.toString() ?? '', m.value!, BigInt(m.offset));
              // a partial aggregate of stage 1 stands for its events
              if (r === 'replayed') counters.skippedReplay += s.lastEvents();
              else counters.events += s.lastEvents();
            }
            const next = BigInt(batch.messages[batch.messages.length - 1]!.offset) + 1n;
            s.advance();
            // emitted by the next flush, with the other partitions' points: one transaction per interval
            pending.set(batch.partition, { s, nextOffset: next });
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
      flushTimer = setInterval(() => {
        if (pending.size === 0) return;
        // a failure is said once per kind and counted (not every 100 ms), escalated if it persists
        // a success is a transaction committed: with nothing to commit (states dropped by the
        // failure) nothing was shown to work, so the failure's streak goes on
        void serial.run(flushPending).then((did) => did && failures.ok('commit'), (err) => commitFailed(err));
      }, COMMIT_INTERVAL_MS);
      // idle partitions still close their windows, by processing time
      tick = setInterval(() => {
        // the same transactions as the commit timer's: failures of both are one kind
        void serial.run(async () => {
          // a partition's silence is evidence only while we can read it (soak finding 5)
          const now = Date.now();
          if (!fetches.quiet(now, -Infinity, idleQuietMs)) return false;
          const wallNs = BigInt(fetches.vouchedUntil(now)) * 1_000_000n;
          let did = false;
          for (const [partition, s] of states) {
            if (s.advanceIdle(wallNs)) did = (await emit(partition, s, s.position(), false)) || did;
          }
          return did;
        }).then((did) => did && failures.ok('commit'), (err) => commitFailed(err));
      }, opts.idleTickMs);
    },
    async stop() {
      if (tick) clearInterval(tick);
      if (flushTimer) clearInterval(flushTimer);
      await consumer?.disconnect().catch(() => {});
      const open = pending.size;
      await serial.run(flushPending).catch((err) => failures.final('final commit', err, `the points of ${open} partitions were not committed: the group's next member rebuilds them from the last commit`));
      await serial.idle();
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
