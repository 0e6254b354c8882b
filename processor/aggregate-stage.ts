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
import { CompressionTypes } from '../collector/kafkajs.ts';
import { retrying, superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS } from '../collector/kafka-sink.ts';
import type { FatalError } from '../collector/errors.ts';
import { AGGREGATE_GROUP, METRICS_TOPIC, REPARTITION_TOPIC, SESSION_TIMEOUT_MS } from './topics.ts';
import type { PartitionState } from './partition.ts';

export interface AggregateCounters {
  events: number;
  points: number;
  transactions: number;
  skippedReplay: number;
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
  const counters: AggregateCounters = { events: 0, points: 0, transactions: 0, skippedReplay: 0 };
  const states = new Map<number, PartitionState>();
  /** Per partition, the offset last committed (or read back at restore): where a failed transaction rewinds to. */
  const committedAt = new Map<number, bigint>();
  let consumer: Consumer | undefined;
  let producer: Producer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  const serial = createSerial();

  async function stateFor(partition: number): Promise<PartitionState> {
    let s = states.get(partition);
    if (s) return s;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: AGGREGATE_GROUP, topics: [REPARTITION_TOPIC] }));
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    const meta = p && p.offset !== '-1' && p.metadata ? p.metadata : undefined;
    committedAt.set(partition, p && p.offset !== '-1' ? BigInt(p.offset) : 0n);
    s = opts.newState(partition, meta);
    states.set(partition, s);
    return s;
  }

  /** Emit what `s` closed, committing its checkpoint with the points. */
  async function emit(partition: number, s: PartitionState, nextOffset: bigint, force: boolean): Promise<void> {
    const points = s.takeClosed();
    if (points.length === 0 && !force) return;
    const commitOffset = s.minOpenOffset() ?? nextOffset;
    const tx = await producer!.transaction();
    try {
      if (points.length > 0) {
        await tx.send({ topic: METRICS_TOPIC, acks: -1, compression: CompressionTypes.GZIP, messages: points.map((p) => ({ key: p.key, value: p.value })) });
      }
      await tx.sendOffsets({
        consumerGroupId: AGGREGATE_GROUP,
        topics: [{ topic: REPARTITION_TOPIC, partitions: [{ partition, offset: String(commitOffset), metadata: s.checkpoint() } as never] }],
      });
      await tx.commit();
    } catch (err) {
      await tx.abort().catch(() => {});
      // the points are lost with this state: drop it and read again from the last commit
      // (a failure in the idle tick is no consumer crash: nothing else would rewind)
      states.delete(partition);
      consumer?.seek({ topic: REPARTITION_TOPIC, partition, offset: String(committedAt.get(partition) ?? 0n) });
      throw err;
    }
    committedAt.set(partition, commitOffset);
    counters.points += points.length;
    counters.transactions++;
    opts.onPoints?.(points);
  }

  return {
    counters,
    async start() {
      admin = opts.kafka.admin();
      await admin.connect();
      producer = opts.kafka.producer({ transactionalId: `ringflow-aggregate-${opts.instanceId}`, idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      consumer = opts.kafka.consumer({ groupId: AGGREGATE_GROUP, readUncommitted: false, metadataMaxAge: CONSUMER_METADATA_MAX_AGE_MS, sessionTimeout: SESSION_TIMEOUT_MS, heartbeatInterval: 1000 });
      await consumer.connect();
      superviseConsumer(consumer, 'processor stage 2 (aggregate)', opts.log, opts.onFatal ?? (() => {}));
      // partitions taken from us lose their in-memory state; their next owner replays from the checkpoint
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[REPARTITION_TOPIC] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
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
              if (r === 'replayed') counters.skippedReplay++;
              else counters.events++;
            }
            const next = BigInt(batch.messages[batch.messages.length - 1]!.offset) + 1n;
            s.advance();
            await emit(batch.partition, s, next, false);
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
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
      await consumer?.disconnect().catch(() => {});
      await serial.idle();
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
