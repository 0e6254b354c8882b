/**
 * Partial aggregates on the repartition topic (schemas/processor.repartition.avsc).
 *
 * Stage 1 turns the records of each transaction into one PartialWindow per
 * (input topic, host, window) (aggregate.ts PartialAggregator) and writes
 * those instead of the raw events; stage 2 merges them into its windows
 * (WindowAggregator.addPartial). Every event used to cross Kafka twice; now a
 * transaction's worth of events of one series and window crosses once, as
 * one record.
 *
 * Results are unchanged when nothing is late: histograms merge exactly
 * (histogram.ts, the sum included), sums and counts add. What changes is the
 * granularity of lateness: stage 2 judges a partial as a whole, against the
 * watermark before it, then advances the watermark by its latest event, so
 * events of one transaction no longer make each other late.
 *
 * Stage 2 still takes raw event records on the topic (stage 1 instances of
 * an older version during a rolling upgrade): the two merge into the same series.
 */
import { decodeCurrent, encodeRecord, schemaRegistry, type RegisteredSchema } from '../schemas/index.ts';
import { ExpHistogram } from './histogram.ts';
import type { Attribute, PartialWindow } from './aggregate.ts';
import { REPARTITION_TOPIC, STATS_TOPIC } from './topics.ts';

interface PartialRecord {
  topic: string;
  host: string;
  window_start_ns: bigint;
  window_end_ns: bigint;
  events: bigint | number;
  min_event_ns: bigint;
  max_event_ns: bigint;
  series: {
    name: string;
    attributes: { key: string; value: string }[];
    count: bigint | number;
    events: bigint | number;
    histogram: {
      scale: number;
      zero_count: bigint | number;
      positive_offset: number;
      positive_buckets: (bigint | number)[];
      count: bigint | number;
      sum_parts: number[];
      min: number;
      max: number;
    } | null;
    sum: bigint | number | null;
  }[];
}

let schema: RegisteredSchema | undefined;

/** The partial aggregates' schema (the repartition topic's own records). */
export function partialSchema(): RegisteredSchema {
  schema ??= schemaRegistry().byTopic(REPARTITION_TOPIC)!;
  return schema;
}

/** A partial -> its framed Avro record. */
export function encodePartial(p: PartialWindow): Buffer {
  const rec: PartialRecord = {
    topic: p.topic,
    host: p.host,
    window_start_ns: p.windowStartNs,
    window_end_ns: p.windowEndNs,
    events: p.events,
    min_event_ns: p.minEventNs,
    max_event_ns: p.maxEventNs,
    series: p.series.map((s) => {
      const h = s.histogram?.toJSON();
      return {
        name: s.name,
        attributes: s.attributes.map(([key, value]) => ({ key, value })),
        count: s.count,
        events: s.events,
        histogram: h === undefined ? null : {
          scale: h.scale,
          zero_count: h.zero_count,
          positive_offset: h.positive_offset,
          positive_buckets: h.positive_buckets,
          count: h.count,
          sum_parts: s.histogram!.sumParts(),
          min: h.min,
          max: h.max,
        },
        sum: s.sum === undefined ? null : s.sum,
      };
    }),
  };
  return encodeRecord(partialSchema(), rec as unknown as Record<string, unknown>);
}

/** Whether a decoded record is a partial (else an event or stats record). */
export function isPartial(decoded: { schema: RegisteredSchema }): boolean {
  return decoded.schema === partialSchema();
}

/** A decoded partial record (decodeCurrent(...).value) -> the PartialWindow. */
export function partialOf(value: Record<string, unknown>): PartialWindow {
  const r = value as unknown as PartialRecord;
  return {
    topic: r.topic,
    host: r.host,
    windowStartNs: BigInt(r.window_start_ns),
    windowEndNs: BigInt(r.window_end_ns),
    events: Number(r.events),
    minEventNs: BigInt(r.min_event_ns),
    maxEventNs: BigInt(r.max_event_ns),
    series: r.series.map((s) => {
      const out: PartialWindow['series'][number] = {
        name: s.name,
        attributes: s.attributes.map(({ key, value: v }): Attribute => [key, v]),
        count: Number(s.count),
        events: Number(s.events),
      };
      if (s.histogram !== null) {
        const j = s.histogram;
        const h = ExpHistogram.fromJSON({
          scale: j.scale,
          zero_count: Number(j.zero_count),
          positive_offset: j.positive_offset,
          positive_buckets: j.positive_buckets.map(Number),
          count: Number(j.count),
          sum: 0,
          min: j.min,
          max: j.max,
        });
        h.addSumParts(j.sum_parts);
        out.histogram = h;
      }
      if (s.sum !== null) out.sum = Number(s.sum);
      return out;
    }),
  };
}

/** Framed bytes -> the PartialWindow, or null when they hold another record. Throws on bytes that do not decode. */
export function decodePartial(buf: Buffer): PartialWindow | null {
  const d = decodeCurrent(buf);
  return isPartial(d) ? partialOf(d.value) : null;
}

/**
 * Stage 1's rejections travel to stage 2 as collector.stats records of their
 * (topic, host), with one drop_reasons entry named REJECTED_PREFIX + reason
 * (invalid_value, clock_skew) and zeros elsewhere: stage 2 already takes
 * stats records per (topic, host, window) and writes their drops as
 * ringflow.dropped points when the window closes, exactly once (they commit
 * in stage 1's transaction with the dead letter). Such records exist only on
 * the repartition topic, never on ringflow.collector.stats.v1. Stage 2 takes
 * only the prefixed entries of drop_reasons: the collector's own are per
 * host, not per topic, and a stats record is routed once per topic.
 */
export const REJECTED_PREFIX = 'processor:';

/** One event stage 1 rejected (dead-lettered) -> the record that counts it in stage 2. */
export function rejectionRecord(topic: string, host: string, timeNs: bigint, reason: string): Buffer {
  return encodeRecord(schemaRegistry().byTopic(STATS_TOPIC)!, {
    host, boot_time_ns: 0n, time_ns: timeNs, interval_ns: 0n,
    events: [{ event: topic, read: 0n, kernel_drops: 0n, user_drops: 0n, produced: 0n }],
    send_errors: 0n, pending: 0n, ring_bytes: 0n, undecodable: 0n,
    drop_reasons: [{ reason: `${REJECTED_PREFIX}${reason}`, count: 1n }],
    l7_parse_failures: [], clamped: 0n,
  });
}

/** The stage-1 rejections a stats record carries: reason (without the prefix) -> count. */
export function rejectionsOf(stats: Record<string, unknown>): [string, number][] {
  const out: [string, number][] = [];
  for (const r of (stats.drop_reasons as { reason: string; count: bigint }[] | undefined) ?? []) {
    if (r.reason.startsWith(REJECTED_PREFIX)) out.push([r.reason.slice(REJECTED_PREFIX.length), Number(r.count)]);
  }
  return out;
}
