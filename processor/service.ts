/**
 * The processor: its stages in one process (repartition, aggregate, spans, profiles;
 * alerts with rules). Run as many instances as there are partitions to share;
 * each stage is its own consumer group.
 */
import type { Kafka } from 'kafkajs';
import { connectAdmin, ensureTopics } from '../kafka/client.ts';
import type { FatalError } from '../common/errors.ts';
import { createRepartitionStage, type RepartitionStage } from './repartition.ts';
import { createAggregateStage, type AggregateStage } from './aggregate-stage.ts';
import { createAlertsStage, ALERTS_TOPIC, type AlertsStage } from './alerts-stage.ts';
import type { AlertRule } from './alerts.ts';
import { createPartitionState, IDLE_GRACE_NS, type PartitionConfig } from './partition.ts';
import { createSpansStage, DEFAULT_SPAN_LINK_DELAY_NS, DEFAULT_SPAN_TIMEOUT_NS, type SpansStage } from './spans-stage.ts';
import { createProfilesStage, type ProfilesStage } from './profiles-stage.ts';
import { DEADLETTER_TOPIC, EVENT_TOPICS, L7_TOPIC, METRICS_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_TOPIC, REPARTITION_TOPIC, SPANS_TOPIC, STATS_TOPIC } from './topics.ts';

export interface ProcessorOptions extends PartitionConfig {
  kafka: Kafka;
  brokers: string[];
  instanceId: string;
  partitions: number;
  idleTickMs?: number;
  /** Spans stage: a request with no response this long becomes an ERROR span (default 30 s). */
  spanTimeoutNs?: bigint;
  /** Spans stage: how long a completed span waits for its other side (default 2 s). */
  spanLinkDelayNs?: bigint;
  /** Events dated further than this ahead of the processor's clock are dead-lettered (--max-clock-skew; default 60 s). */
  maxClockSkewMs?: number;
  /** Profiles stage: stacks kept per profile, the rest folded into '[other]' (default 200). */
  profileTopStacks?: number;
  /** Alert rules (processor/alerts.ts): when given, the alerts stage runs too. */
  rules?: readonly AlertRule[];
  log: (l: string) => void;
}

export interface Processor {
  repartition: RepartitionStage;
  aggregate: AggregateStage;
  spans: SpansStage;
  profiles: ProfilesStage;
  alerts?: AlertsStage;
  /** Resolves when a stage's consumer stopped for good: the service cannot go on. */
  failed: Promise<FatalError>;
  stop(): Promise<void>;
}

export async function startProcessor(opts: ProcessorOptions): Promise<Processor> {
  const admin = await connectAdmin(opts.kafka, opts.brokers);
  try {
    // inputs too: a processor may start before any collector has created them
    await ensureTopics(admin, [...new Set([...EVENT_TOPICS, STATS_TOPIC, L7_TOPIC, SPANS_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_TOPIC, REPARTITION_TOPIC, METRICS_TOPIC, DEADLETTER_TOPIC, ...(opts.rules ? [ALERTS_TOPIC] : [])])], opts.partitions);
  } finally {
    await admin.disconnect();
  }
  let onFatal!: (err: FatalError) => void;
  const failed = new Promise<FatalError>((resolve) => (onFatal = resolve));
  const repartition = createRepartitionStage({
    kafka: opts.kafka, instanceId: opts.instanceId, windowMs: opts.windowMs, log: opts.log, onFatal,
    ...(opts.maxClockSkewMs !== undefined ? { maxClockSkewMs: opts.maxClockSkewMs } : {}),
  });
  const latenessNs = BigInt(opts.latenessMs) * 1_000_000n;
  const spanLinkDelayNs = opts.spanLinkDelayNs ?? DEFAULT_SPAN_LINK_DELAY_NS;
  // spans reach stage 2 once the correlator's watermark (lateness, or the idle grace) passed their end + the link delay
  const lagNs = (latenessNs > IDLE_GRACE_NS ? latenessNs : IDLE_GRACE_NS) + spanLinkDelayNs;
  const spanLagMs = opts.spanLagMs ?? Number(lagNs / 1_000_000n);
  // a partition is quiet after a lateness period without events (at least the idle grace): the
  // stage's fetch watch and the partitions' idle clocks use the same period
  const idleQuietMs = opts.idleQuietMs ?? Math.max(opts.latenessMs, Number(IDLE_GRACE_NS / 1_000_000n));
  const aggregate = createAggregateStage({
    kafka: opts.kafka,
    instanceId: opts.instanceId,
    idleTickMs: opts.idleTickMs ?? 1000,
    idleQuietMs,
    log: opts.log,
    onFatal,
    newState: (partition, checkpoint) => createPartitionState({ ...opts, spanLagMs, idleQuietMs, processorId: opts.instanceId }, partition, checkpoint),
  });
  const spans = createSpansStage({
    kafka: opts.kafka,
    instanceId: opts.instanceId,
    timeoutNs: opts.spanTimeoutNs ?? DEFAULT_SPAN_TIMEOUT_NS,
    linkDelayNs: spanLinkDelayNs,
    latenessNs,
    idleTickMs: opts.idleTickMs ?? 1000,
    ...(opts.maxClockSkewMs !== undefined ? { maxClockSkewMs: opts.maxClockSkewMs } : {}),
    log: opts.log,
    onFatal,
  });
  const profiles = createProfilesStage({
    kafka: opts.kafka,
    instanceId: opts.instanceId,
    windowMs: opts.windowMs,
    latenessMs: opts.latenessMs,
    ...(opts.profileTopStacks !== undefined ? { topStacks: opts.profileTopStacks } : {}),
    idleTickMs: opts.idleTickMs ?? 1000,
    idleQuietMs,
    ...(opts.maxClockSkewMs !== undefined ? { maxClockSkewMs: opts.maxClockSkewMs } : {}),
    log: opts.log,
    onFatal,
  });
  const alerts = opts.rules ? createAlertsStage({ kafka: opts.kafka, instanceId: opts.instanceId, rules: opts.rules, partitions: opts.partitions, log: opts.log, onFatal }) : undefined;
  // independent consumer groups and producers: connecting and joining them one after another only added up
  await Promise.all([repartition.start(), aggregate.start(), spans.start(), profiles.start(), alerts?.start()]);
  return {
    repartition,
    aggregate,
    spans,
    profiles,
    alerts,
    failed,
    async stop() {
      await repartition.stop();
      await aggregate.stop();
      await spans.stop();
      await profiles.stop();
      await alerts?.stop();
    },
  };
}
