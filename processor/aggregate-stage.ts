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
 */
import { createSerial } from './serial.ts';
import type { Kafka, Consumer, Producer, EachBatchPayload } from 'kafkajs';
import { CompressionTypes } from '../kafka/kafkajs.ts';
import { retrying } from '../kafka/client.ts';
import { connectStageClients } from './stage-clients.ts';
import type { FatalError } from '../common/errors.ts';
import { AGGREGATE_GROUP, METRICS_TOPIC, REPARTITION_TOPIC } from './topics.ts';
import type { PartitionState } from './partition.ts';

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
}

export interface AggregateStageOptions {
  kafka: Kafka;
  instanceId: string;
  /** A fresh state for a partition, restored from its checkpoint (undefined: none yet). */
  newState: (partition: number, checkpoint: string | undefined) => PartitionState;
  /** How often idle partitions are advanced by processing time. */
  idleTickMs: number;
  log: (l: string) => void;
  onPoints?: (points: readonly { value: Buffer }[]) => void;
  /** The consumer stopped for good (see superviseConsumer). */
  onFatal?: (err: FatalError) => void;
}

export interface AggregateStage {
  counters: AggregateCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createAggregateStage(opts: AggregateStageOptions): AggregateStage {
  const counters: AggregateCounters = { events: 0, points: 0, transactions: 0, skippedReplay: 0, checkpointsIgnored: 0 };
  const states = new Map<number, PartitionState>();
  /** Per partition, the offset last committed (or read back at restore): where a failed transaction rewinds to. */
  const committedAt = new Map<number, bigint>();
  let consumer: Consumer | undefined;
  let producer: Producer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  let flushTimer: NodeJS.Timeout | undefined;
  const serial = createSerial();

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
  function emit(partition: number, s: PartitionState, nextOffset: bigint, force: boolean): Promise<void> {
    return emitMany([{ partition, s, nextOffset }], force);
  }

  /**
   * Emit what the states closed, in one transaction: every partition's points
   * with its offset (the first one an open window still needs) and, in its
   * metadata, its checkpoint. One transaction for all of them, not one per
   * partition: a transaction costs tens to hundreds of ms on a loaded broker.
   */
  async function emitMany(list: { partition: number; s: PartitionState; nextOffset: bigint }[], force: boolean): Promise<void> {
    const parts = list.map((e) => ({ ...e, points: e.s.takeClosed() })).filter((e) => force || e.points.length > 0);
    if (parts.length === 0) return;
    const commits = parts.map((e) => ({ partition: e.partition, offset: e.s.minOpenOffset() ?? e.nextOffset, metadata: e.s.checkpoint() }));
    const points = parts.flatMap((e) => e.points);
    const tx = await producer!.transaction();
    try {
      if (points.length > 0) {
        await tx.send({ topic: METRICS_TOPIC, acks: -1, compression: CompressionTypes.GZIP, messages: points.map((p) => ({ key: p.key, value: p.value })) });
      }
      await tx.sendOffsets({
        consumerGroupId: AGGREGATE_GROUP,
        topics: [{ topic: REPARTITION_TOPIC, partitions: commits.map((c) => ({ partition: c.partition, offset: String(c.offset), metadata: c.metadata }) as never) }],
      });
      await tx.commit();
    } catch (err) {
      await tx.abort().catch(() => {});
      // the points are lost with these states: drop them and read again from the last commit
      // (a failure in a timer is no consumer crash: nothing else would rewind)
      committedOffsets = undefined;
      for (const { partition, s } of parts) {
        if (states.get(partition) === s) states.delete(partition);
        consumer?.seek({ topic: REPARTITION_TOPIC, partition, offset: String(committedAt.get(partition) ?? 0n) });
      }
      throw err;
    }
    for (const c of commits) committedAt.set(c.partition, c.offset);
    counters.points += points.length;
    counters.transactions++;
    opts.onPoints?.(points);
  }

  /** Partitions read since the last flush: partition -> its state then and the offset after its last record. */
  let pending = new Map<number, { s: PartitionState; nextOffset: bigint }>();
  /** Emits what the batches read since the last call closed (run in `serial`). */
  async function flushPending(): Promise<void> {
    const list = [...pending].map(([partition, e]) => ({ partition, ...e })).filter((e) => states.get(e.partition) === e.s); // revoked since: not ours to commit
    pending = new Map();
    await emitMany(list, false);
  }

  return {
    counters,
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-aggregate-${opts.instanceId}`, groupId: AGGREGATE_GROUP,
        name: 'processor stage 2 (aggregate)', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      }));
      // partitions taken from us lose their in-memory state; their next owner replays from the checkpoint
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[REPARTITION_TOPIC] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
        committedOffsets = undefined;
      });
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
        void serial.run(flushPending).catch((err) => opts.log(`processor: aggregate commit failed (${(err as Error).message}); re-reading from the last commit`));
      }, COMMIT_INTERVAL_MS);
      // idle partitions still close their windows, by processing time
      tick = setInterval(() => {
        void serial.run(async () => {
          for (const [partition, s] of states) {
            if (s.advanceIdle(BigInt(Date.now()) * 1_000_000n)) await emit(partition, s, s.position(), false);
          }
        }).catch((err) => opts.log(`processor: idle advance failed (${(err as Error).message}); will retry`));
      }, opts.idleTickMs);
    },
    async stop() {
      if (tick) clearInterval(tick);
      if (flushTimer) clearInterval(flushTimer);
      await consumer?.disconnect().catch(() => {});
      await serial.run(flushPending).catch(() => {});
      await serial.idle();
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
