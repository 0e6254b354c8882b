/**
 * The collector's view of schemas/ and collector/events/: topics per event
 * type, the batch transcoder, the stats record, and JSON lines for people.
 */
import { schemaRegistry, encodeRecord, decodeRecord } from '../schemas/index.ts';
import { createTranscoder, toJsonLine, type DropReasonNames } from './events/index.ts';
import type { StatsSnapshot, TranscoderLike } from './collector.ts';
import type { OutRecord } from './sink.ts';

export const STATS_TOPIC = 'ringflow.collector.stats.v1';

/**
 * Wall-clock time of boot in ns: bpf_ktime_get_ns() and process.hrtime() both
 * read CLOCK_MONOTONIC, so wall = boot + ts_ns. Taken once per run, as the
 * processors convert event times with it.
 */
export function bootTimeNs(): bigint {
  const wall = BigInt(Date.now()) * 1_000_000n;
  return wall - process.hrtime.bigint();
}

export interface Codec {
  readonly statsTopic: string;
  readonly transcoder: TranscoderLike;
  topicsFor(eventTypes: readonly number[]): Map<number, string>;
  encodeStats(s: StatsSnapshot): OutRecord;
  toJsonLine(value: Buffer): string;
}

export function createCodec(opts: { host: string; bootTimeNs: bigint; dropReasonNames: DropReasonNames }): Codec {
  const registry = schemaRegistry();
  const t = createTranscoder({ host: opts.host, bootTimeNs: opts.bootTimeNs, dropReasonNames: opts.dropReasonNames });
  const stats = registry.byTopic(STATS_TOPIC);
  if (!stats) throw new Error(`schema for ${STATS_TOPIC} missing from schemas/`);
  return {
    statsTopic: STATS_TOPIC,
    transcoder: {
      transcodeBatch(batch, emit) {
        return t.transcodeBatch(batch, (s, key, value) => emit(s.topic, s.eventType ?? 0, key, value));
      },
    },
    topicsFor(eventTypes) {
      const m = new Map<number, string>();
      for (const type of eventTypes) {
        const s = registry.byEventType(type);
        if (!s) throw new Error(`no schema registered for event type ${type}`);
        m.set(type, s.topic);
      }
      return m;
    },
    encodeStats(s) {
      const value = encodeRecord(stats, {
        host: opts.host,
        boot_time_ns: opts.bootTimeNs,
        time_ns: s.time_ns,
        interval_ns: s.interval_ns,
        events: s.events,
        send_errors: s.send_errors,
        pending: s.pending,
        ring_bytes: s.ring_bytes,
      });
      return { topic: STATS_TOPIC, key: opts.host, value, type: 0 };
    },
    toJsonLine: decodeToJsonLine,
  };
}

/** Any ringflow record (framed) -> one JSON line, decoded with the schema its header names. */
export function decodeToJsonLine(value: Buffer): string {
  const { schema, value: obj } = decodeRecord(value);
  return toJsonLine(schema, obj as Record<string, unknown>);
}
