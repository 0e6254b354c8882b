/** Topics the processor reads and writes, and its consumer groups. */
export const STATS_TOPIC = 'ringflow.collector.stats.v1';
/** Raw events re-keyed by (input topic, host): stage 1 -> stage 2. Internal. */
export const REPARTITION_TOPIC = 'ringflow.processor.repartition.v1';
export const METRICS_TOPIC = 'ringflow.metrics.v1';
export { DEADLETTER_TOPIC } from '../kafka/client.ts';
/** Parsed L7 requests and responses (schemas/l7.avsc): the spans stage's input. */
export const L7_TOPIC = 'ringflow.l7.v1';
/** Spans built from them (schemas/spans.avsc, processor/spans.ts): the spans stage's output, read_committed. */
export const SPANS_TOPIC = 'ringflow.spans.v1';
/** File syscalls (schemas/fs.io.avsc): aggregated into ringflow.fs.io.* (processor/aggregate.ts fsMetrics). */
export const FS_IO_TOPIC = 'ringflow.fs.io.v1';

/** Stacks with counts per collector interval and process (schemas/profile.stacks.avsc): the profiles stage's input. */
export const PROFILE_STACKS_TOPIC = 'ringflow.profile.stacks.v1';
/** Profiles per window and series (schemas/profiles.avsc, processor/profiles.ts): its output, read_committed. */
export const PROFILES_TOPIC = 'ringflow.profiles.v1';

export const REPARTITION_GROUP = 'ringflow-processor-repartition';
export const AGGREGATE_GROUP = 'ringflow-processor-aggregate';
export const SPANS_GROUP = 'ringflow-processor-spans';
export const PROFILES_GROUP = 'ringflow-processor-profiles';

/**
 * Topics the processor aggregates (see processor/aggregate.ts for what each
 * becomes): the collectors' event topics, and the spans the spans stage
 * derives from ringflow.l7.v1 (RED metrics), re-keyed by stage 1 like the rest.
 */
export const EVENT_TOPICS = [
  'ringflow.sched.runqlat.v1',
  'ringflow.sched.cswitch.v1',
  'ringflow.block.io.v1',
  'ringflow.tcp.connect.v1',
  'ringflow.tcp.retransmit.v1',
  'ringflow.tcp.drop.v1',
  FS_IO_TOPIC,
  SPANS_TOPIC,
] as const;

/**
 * Topics whose collector drops and losses stage 2 counts (ringflow.dropped,
 * ringflow.collector.losses, coverage): every topic a collector writes. Stage
 * 1 routes one copy of a stats record per listed topic among these; the L7
 * and profile stacks topics are not aggregated by stage 2 (the spans and
 * profiles stages read them), but their drops are counted there all the
 * same, under their own names, as those stages' rejections already are.
 * Without them a collector running only l7 or profile reached OTLP with none
 * of its drops.
 */
export const ACCOUNTED_TOPICS: readonly string[] = [...EVENT_TOPICS, L7_TOPIC, PROFILE_STACKS_TOPIC];

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
