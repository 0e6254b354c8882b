/** Topics the processor reads and writes, and its consumer groups. */
export const STATS_TOPIC = 'ringflow.collector.stats.v1';
/** Raw events re-keyed by (input topic, host): stage 1 -> stage 2. Internal. */
export const REPARTITION_TOPIC = 'ringflow.processor.repartition.v1';
export const METRICS_TOPIC = 'ringflow.metrics.v1';
export const DEADLETTER_TOPIC = 'ringflow.deadletter.v1';

export const REPARTITION_GROUP = 'ringflow-processor-repartition';
export const AGGREGATE_GROUP = 'ringflow-processor-aggregate';

/** Event topics the processor aggregates (see processor/aggregate.ts for what each becomes). */
export const EVENT_TOPICS = [
  'ringflow.sched.runqlat.v1',
  'ringflow.sched.cswitch.v1',
  'ringflow.block.io.v1',
  'ringflow.tcp.connect.v1',
  'ringflow.tcp.retransmit.v1',
  'ringflow.tcp.drop.v1',
] as const;

/**
 * Stage 2 keys: all events of one input topic from one host share a partition,
 * so every series (a metric of that topic + its dimensions, host.name among
 * them) and that host's drop counts for the topic are seen by one instance.
 */
export function repartitionKey(topic: string, host: string): string {
  return `${topic}|${host}`;
}

export function parseRepartitionKey(key: string): { topic: string; host: string } | null {
  const i = key.indexOf('|');
  return i < 0 ? null : { topic: key.slice(0, i), host: key.slice(i + 1) };
}

/**
 * A killed instance's partitions move to the others once its session expires:
 * 10 s (kafkajs defaults to 30 s) keeps the gap short; the broker's minimum is 6 s.
 */
export const SESSION_TIMEOUT_MS = 10_000;
