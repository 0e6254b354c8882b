/**
 * The processor: both stages in one process. Run as many instances as there
 * are partitions to share; each stage is its own consumer group.
 */
import type { Kafka } from 'kafkajs';
import { connectAdmin, ensureTopics } from '../collector/kafka-sink.ts';
import type { FatalError } from '../collector/errors.ts';
import { createRepartitionStage, type RepartitionStage } from './repartition.ts';
import { createAggregateStage, type AggregateStage } from './aggregate-stage.ts';
import { createAlertsStage, ALERTS_TOPIC, type AlertsStage } from './alerts-stage.ts';
import type { AlertRule } from './alerts.ts';
import { createPartitionState, type PartitionConfig } from './partition.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, METRICS_TOPIC, REPARTITION_TOPIC, STATS_TOPIC } from './topics.ts';

export interface ProcessorOptions extends PartitionConfig {
  kafka: Kafka;
  brokers: string[];
  instanceId: string;
  partitions: number;
  idleTickMs?: number;
  /** Alert rules (processor/alerts.ts): when given, the alerts stage runs too. */
  rules?: readonly AlertRule[];
  log: (l: string) => void;
}

export interface Processor {
  repartition: RepartitionStage;
  aggregate: AggregateStage;
  alerts?: AlertsStage;
  /** Resolves when a stage's consumer stopped for good: the service cannot go on. */
  failed: Promise<FatalError>;
  stop(): Promise<void>;
}

export async function startProcessor(opts: ProcessorOptions): Promise<Processor> {
  const admin = await connectAdmin(opts.kafka, opts.brokers);
  try {
    // inputs too: a processor may start before any collector has created them
    await ensureTopics(admin, [...EVENT_TOPICS, STATS_TOPIC, REPARTITION_TOPIC, METRICS_TOPIC, DEADLETTER_TOPIC, ...(opts.rules ? [ALERTS_TOPIC] : [])], opts.partitions);
  } finally {
    await admin.disconnect();
  }
  let onFatal!: (err: FatalError) => void;
  const failed = new Promise<FatalError>((resolve) => (onFatal = resolve));
  const repartition = createRepartitionStage({ kafka: opts.kafka, instanceId: opts.instanceId, log: opts.log, onFatal });
  const aggregate = createAggregateStage({
    kafka: opts.kafka,
    instanceId: opts.instanceId,
    idleTickMs: opts.idleTickMs ?? 1000,
    log: opts.log,
    onFatal,
    newState: (partition, checkpoint) => createPartitionState({ ...opts, processorId: opts.instanceId }, partition, checkpoint),
  });
  const alerts = opts.rules ? createAlertsStage({ kafka: opts.kafka, instanceId: opts.instanceId, rules: opts.rules, partitions: opts.partitions, log: opts.log, onFatal }) : undefined;
  await repartition.start();
  await aggregate.start();
  await alerts?.start();
  return {
    repartition,
    aggregate,
    alerts,
    failed,
    async stop() {
      await repartition.stop();
      await aggregate.stop();
      await alerts?.stop();
    },
  };
}
