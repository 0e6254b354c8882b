/**
 * Alerts stage: evaluates the rules of a rules file (processor/alerts.ts) over
 * ringflow.metrics.v1 (read_committed) and writes FIRING/RESOLVED records to
 * ringflow.alerts.v1, exactly once: each transaction carries the alerts and
 * the consumed offsets, and in every offset's metadata the evaluator state
 * (JSON: per rule the last evaluated window and per group its consecutive
 * count and firing flag). The committed offset of a partition is the first
 * offset still held by an unevaluated window, so a restart re-reads exactly
 * those points; points of windows already evaluated are skipped as late.
 *
 * A rule's group spans series in any partition, so one instance must see all
 * of them: the group's assignor gives every partition to one member (the
 * lowest member id); other instances stand by and take over on rebalance.
 *
 * Offset metadata is capped by the broker (offset.metadata.max.bytes, 4096 by
 * default): when the state is larger, only firing groups are kept (counts of
 * groups not yet firing restart from 0 after a restart); when even that is
 * too large, no state is stored and a restart starts from empty state. Both
 * are logged once. See docs/alerts.md.
 */
import { createSerial } from './serial.ts';
import type { Kafka, Consumer, Producer, EachBatchPayload, PartitionAssigner } from 'kafkajs';
import kafkajs, { CompressionTypes } from '../kafka/kafkajs.ts';
import { MessageLimits, ensureTopics, isTooLarge, retrying, sendWithinLimits } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { FailureReporter } from './failures.ts';
import { oversizedDeadLetter } from './repartition.ts';
import { commitFailureHandler, connectStageClients, isFenced, type TxProducer } from './stage-clients.ts';
import type { FatalError } from '../common/errors.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { AlertEvaluator, alertKey, type AlertRecord, type AlertRule, type EvaluatorJSON, type MetricPointValue } from './alerts.ts';
import { DEADLETTER_TOPIC, METRICS_TOPIC } from './topics.ts';

export const ALERTS_TOPIC = 'ringflow.alerts.v1';
export const ALERTS_GROUP = 'ringflow-processor-alerts';
export const DEFAULT_METADATA_MAX_BYTES = 4096;

export interface AlertsCounters {
  points: number;
  undecodable: number;
  alerts: number;
  transactions: number;
  /** Alert records alone over ringflow.alerts.v1's max.message.bytes: dead-lettered (first bytes). */
  oversized: number;
  /** sendOffsets asked again in the same transaction after a "not now" from the coordinator. */
  txRetries: number;
}

export interface AlertsStageOptions {
  kafka: Kafka;
  /** The consumer stopped for good (see superviseConsumer). */
  onFatal?: (err: FatalError) => void;
  instanceId: string;
  rules: readonly AlertRule[];
  /** Partitions when the alerts topic is created. */
  partitions: number;
  /** Extra windows every partition must pass before a window is evaluated (default 1). */
  graceWindows?: number;
  /** When no batch came for idleMs, windows ending before now - flushAfterMs are evaluated (defaults 2000, 30000). */
  idleMs?: number;
  flushAfterMs?: number;
  tickMs?: number;
  /** The broker's offset.metadata.max.bytes (default 4096). */
  metadataMaxBytes?: number;
  log: (l: string) => void;
  onAlerts?: (alerts: readonly AlertRecord[]) => void;
}

export interface AlertsStage {
  counters: AlertsCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** All partitions of every subscribed topic to the member with the lowest id. */
export const singleOwnerAssigner: PartitionAssigner = ({ cluster }) => ({
  name: 'RingflowSingleOwner',
  version: 1,
  async assign({ members, topics }) {
    const ids = members.map((m) => m.memberId).sort();
    const assignment: Record<string, number[]> = {};
    for (const t of topics) assignment[t] = cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId).sort((a, b) => a - b);
    const { MemberAssignment } = kafkajs.AssignerProtocol;
    return ids.map((memberId, i) => ({
      memberId,
      memberAssignment: MemberAssignment.encode({ version: 1, assignment: i === 0 ? assignment : {}, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'RingflowSingleOwner', metadata: kafkajs.AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) };
  },
});

export function createAlertsStage(opts: AlertsStageOptions): AlertsStage {
  const counters: AlertsCounters = { points: 0, undecodable: 0, alerts: 0, transactions: 0, oversized: 0, txRetries: 0 };
  const failures = new FailureReporter({ what: 'alerts', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  // fenced: another instance with this --instance owns the output now; fatal at once, said once
  const fencedFatal = commitFailureHandler({ stage: 'processor alerts stage', instanceId: opts.instanceId, failures, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  let limits: MessageLimits | undefined;
  const evalOpts = { processor: opts.instanceId, graceWindows: opts.graceWindows ?? 1 };
  const maxBytes = opts.metadataMaxBytes ?? DEFAULT_METADATA_MAX_BYTES;
  const schema = schemaRegistry().byTopic(ALERTS_TOPIC)!;
  let evaluator: AlertEvaluator | undefined;
  /** A transaction failed: the consumer's position is past the committed state; seek back before going on. */
  let rewind = false;
  let assigned: number[] = [];
  /** Next offset to read, per partition consumed since the state was restored. */
  const positions = new Map<number, bigint>();
  let seq = 0;
  let lastBatchAt = Date.now();
  const logged = new Set<string>();
  const once = (k: string, l: string) => {
    if (!logged.has(k)) {
      logged.add(k);
      opts.log(l);
    }
  };
  let consumer: Consumer | undefined;
  let producer: TxProducer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  const serial = createSerial();

  /** The evaluator, restored from the last commit when needed; undefined: this batch is stale (rewound). */
  async function restore(): Promise<AlertEvaluator | undefined> {
    if (evaluator) return evaluator;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: ALERTS_GROUP, topics: [METRICS_TOPIC] }));
    let best: { seq: number; state: EvaluatorJSON | undefined } | undefined;
    for (const p of committed[0]?.partitions ?? []) {
      if (p.offset === '-1' || !p.metadata) continue;
      try {
        const m = JSON.parse(p.metadata) as { seq: number; state?: EvaluatorJSON };
        if (!best || m.seq > best.seq) best = { seq: m.seq, state: m.state };
      } catch {
        once('badmeta', `alerts: unreadable state in the offset metadata of ${METRICS_TOPIC}[${p.partition}]; ignored`);
      }
    }
    if (rewind) {
      for (const p of assigned) {
        const c = committed[0]?.partitions.find((x) => x.partition === p);
        consumer!.seek({ topic: METRICS_TOPIC, partition: p, offset: c && c.offset !== '-1' ? c.offset : '0' });
      }
      rewind = false;
      return undefined;
    }
    seq = best?.seq ?? 0;
    if (best && !best.state) opts.log('alerts: the last commit stored no state (too large for offset metadata): starting from empty alert state');
    evaluator = AlertEvaluator.fromJSON(opts.rules, evalOpts, best?.state);
    evaluator.setSources(assigned);
    positions.clear();
    return evaluator;
  }

  function metadata(e: AlertEvaluator): string {
    const full = JSON.stringify({ seq, state: e.toJSON() });
    if (Buffer.byteLength(full) <= maxBytes) return full;
    const firing = JSON.stringify({ seq, state: e.toJSON(true) });
    if (Buffer.byteLength(firing) <= maxBytes) {
      once('meta:firing', `alerts: state is ${Buffer.byteLength(full)} bytes, over offset.metadata.max.bytes (${maxBytes}): storing firing groups only`);
      return firing;
    }
    once('meta:none', `alerts: state of firing groups alone is ${Buffer.byteLength(firing)} bytes, over ${maxBytes}: storing no state (a restart starts empty)`);
    return JSON.stringify({ seq });
  }

  /** One transaction: the alerts, and every consumed partition's offset with the state. */
  async function commit(e: AlertEvaluator, alerts: AlertRecord[]): Promise<void> {
    if (positions.size === 0 && alerts.length === 0) return;
    seq++;
    const meta = metadata(e);
    const held = e.minPendingOffsets();
    let oversized = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        oversized = await transact(alerts, held, meta);
        break;
      } catch (err) {
        if (isTooLarge(err)) await limits?.refresh();
        // a fresh producer's first transactions may meet CONCURRENT_TRANSACTIONS while the
        // coordinator completes the previous one: the aborted attempt can simply be redone
        const e = err as { retriable?: boolean; type?: string; name?: string };
        const retriable = e.retriable === true || e.type === 'CONCURRENT_TRANSACTIONS' || e.name === 'KafkaJSNumberOfRetriesExceeded';
        if (!retriable || attempt >= 10) {
          if (isFenced(err)) {
            fencedFatal(err);
            throw err;
          }
          once(`tx:${(err as Error).name}`, `alerts: transaction failed (${(err as Error).message}); re-reading from the last commit`);
          evaluator = undefined; // restored from the last commit on the next batch
          rewind = true;
          throw err;
        }
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
    counters.transactions++;
    counters.oversized += oversized;
    counters.alerts += alerts.length - oversized;
    if (alerts.length > 0) opts.onAlerts?.(alerts);
  }

  /** One transaction; returns how many alert records were over the topic's limit (dead-lettered instead). */
  async function transact(alerts: AlertRecord[], held: Map<number, bigint>, meta: string): Promise<number> {
    let oversized = 0;
    const tx = await producer!.transaction();
    try {
      if (alerts.length > 0) {
        const sent = await sendWithinLimits(tx, [{ topic: ALERTS_TOPIC, messages: alerts.map((a) => ({ key: alertKey(a), value: encodeRecord(schema, a) })) }], {
          limitOf: limits!.limitOf,
          compression: CompressionTypes.GZIP,
          replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o)] }),
        });
        oversized = sent.oversized.length;
        for (const o of sent.oversized) once(`oversized:${o.topic}`, `alerts: a ${o.bytes}-byte record for ${o.topic} is over its max.message.bytes (${o.limit}) -> dead letter (first bytes)`);
      }
      const partitions = [...positions].map(([partition, next]) => {
        const h = held.get(partition);
        return { partition, offset: String(h !== undefined && h < next ? h : next), metadata: meta };
      });
      // offsets alone (no alert): refused with CONCURRENT_TRANSACTIONS while the coordinator completes
      // the transaction before; asked again in this one (kafka/transaction.ts)
      if (partitions.length > 0) await retryTxStep(() => tx.sendOffsets({ consumerGroupId: ALERTS_GROUP, topics: [{ topic: METRICS_TOPIC, partitions: partitions as never }] }), { onRetry: () => counters.txRetries++ });
      await tx.commit();
    } catch (err) {
      await producer!.abort(tx, err);
      throw err;
    }
    return oversized;
  }

  return {
    counters,
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-alerts-${opts.instanceId}`, groupId: ALERTS_GROUP,
        name: 'processor alerts stage', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}), partitionAssigners: [singleOwnerAssigner],
      }));
      await ensureTopics(admin, [METRICS_TOPIC, ALERTS_TOPIC], opts.partitions);
      limits = new MessageLimits(admin, [ALERTS_TOPIC, DEADLETTER_TOPIC], opts.log);
      await limits.refresh();
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        assigned = [...((e.payload.memberAssignment[METRICS_TOPIC] ?? []) as number[])].sort((a, b) => a - b);
        evaluator = undefined; // re-read from the committed state
      });
      await consumer.subscribe({ topic: METRICS_TOPIC, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload: EachBatchPayload) =>
          serial.run(async () => {
            const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            lastBatchAt = Date.now();
            const e = await restore();
            if (!e) return;
            const alerts: AlertRecord[] = [];
            for (const m of batch.messages) {
              if (!m.value) continue;
              let value: MetricPointValue;
              try {
                const d = decodeCurrent(m.value);
                if (d.schema.topic !== METRICS_TOPIC) throw new Error(`a ${d.schema.fullName} record`);
                value = d.value as unknown as MetricPointValue;
              } catch (err) {
                counters.undecodable++;
                once(`decode:${(err as Error).message}`, `alerts: ${batch.topic}[${batch.partition}]@${m.offset} is not a MetricPoint (${(err as Error).message}); skipped`);
                continue;
              }
              counters.points++;
              alerts.push(...e.add(value, { partition: batch.partition, offset: BigInt(m.offset) }));
            }
            positions.set(batch.partition, BigInt(batch.messages[batch.messages.length - 1]!.offset) + 1n);
            try {
              await commit(e, alerts);
            } catch (err) {
              // fenced: already fatal (said once); thrown on, kafkajs would crash the consumer and say it again
              if (isFenced(err)) return;
              throw err;
            }
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
      // the last windows: no later point will come while the metrics stream is idle
      tick = setInterval(() => {
        void serial.run(async () => {
          if (!evaluator || Date.now() - lastBatchAt < (opts.idleMs ?? 2000)) return;
          const until = (BigInt(Date.now()) - BigInt(opts.flushAfterMs ?? 30_000)) * 1_000_000n;
          const before = evaluator.counters.evaluated;
          const alerts = evaluator.flush(until);
          if (evaluator.counters.evaluated === before) return false;
          await commit(evaluator, alerts);
          return true;
        }).then((did) => did && failures.ok('idle flush'), (err) => failures.failed('idle flush', err));
      }, opts.tickMs ?? 1000);
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
