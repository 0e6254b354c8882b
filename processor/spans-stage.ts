/**
 * The spans stage: ringflow.l7.v1 -> ringflow.spans.v1, exactly once.
 *
 * The l7 records are keyed by connection, so both sides of an exchange seen
 * on one host, and every request with its response, share a partition: one
 * SpanCorrelator (processor/spans.ts) per assigned partition pairs them,
 * links server spans to their client spans and times requests out.
 *
 * Exactly once, as the aggregate stage does it: the correlator's state lives
 * in memory, and each transaction commits, with the spans it produced, the
 * consumer offset = the first record a waiting request or span still needs
 * (minPendingOffset) and in that offset's metadata the correlator's
 * checkpoint. A restart (SIGKILL included) re-reads from there, re-executes
 * every decision identically (ids are hashes of the input, the watermark and
 * its idle raises are in the checkpoint) and suppresses the spans already
 * emitted. Records that do not decode, or are of another schema, go to
 * ringflow.deadletter.v1 in the same transaction, with stage 1's headers;
 * the metadata also says how far records were read, so a replay does not
 * dead-letter a record twice.
 *
 * A partition gone quiet (no record for the lateness period) is advanced by
 * the clock, IDLE_GRACE_NS behind it as the aggregate stage does, so that
 * its last requests time out and its last spans end their link wait. Quiet
 * counts only while fetches answer, and from IDLE_GRACE after they answer
 * again: through a broker outage the collectors hold the responses of the
 * requests waiting here (soak finding 5).
 */
import { decodeCurrent } from '../schemas/index.ts';
import { SpanCorrelator, encodeSpan, type L7Record, type Span, type SpanCounters } from './spans.ts';
import { DEFAULT_MAX_CLOCK_SKEW_MS, RejectedRecord, clockSkewError, deadLetter, type OutMessage } from './repartition.ts';
import { createStageRunner, type KeyedStageOptions, type StageRunnerCounters } from './stage-runner.ts';
import { L7_TOPIC, REPARTITION_TOPIC, SPANS_GROUP, SPANS_TOPIC, repartitionKey } from './topics.ts';
import { rejectionRecord } from './partial.ts';

export const DEFAULT_SPAN_TIMEOUT_NS = 30_000_000_000n;
export const DEFAULT_SPAN_LINK_DELAY_NS = 2_000_000_000n;

export interface SpansStageCounters extends StageRunnerCounters {
  spans: number;
  /** Dead letters and the rejection records that count them in ringflow.dropped. */
  deadLetters: number;
  /** Records the correlator threw on (a bug, or a record it cannot take): dead-lettered, the rest of the batch goes on. */
  failedRecords: number;
  /** Records dead-lettered for a time beyond the allowed clock skew (in deadLetters too). */
  clockSkew: number;
}

export interface SpansStageOptions extends KeyedStageOptions {
  /** A request with no response this long (event time) becomes an ERROR span. */
  timeoutNs?: bigint;
  /** How long a completed span waits for its counterpart (server/client) before it is emitted. */
  linkDelayNs?: bigint;
  /** The correlator's watermark trails the newest record by this (the processor's --lateness). */
  latenessNs: bigint;
  onSpans?: (spans: readonly Span[]) => void;
}

export interface SpansStage {
  counters: SpansStageCounters;
  /** The correlators' counters, summed over the partitions held now. */
  correlators(): SpanCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Offset-commit metadata: the correlator's checkpoint, and the offset after the last record read. */
interface Metadata {
  v: 1;
  /** Records below this were read (dead letters written) before the commit. */
  read: string;
  spans: string;
}

interface PartitionSpans {
  c: SpanCorrelator;
  /** Offset after the last record read. */
  next: bigint;
  /** Records below this were dead-lettered (if bad) before the checkpoint this state came from. */
  deadFrom: bigint;
}

/** The consume / transaction / commit loop is the shared one (processor/stage-runner.ts); what is the spans' own is here. */
export function createSpansStage(opts: SpansStageOptions): SpansStage {
  const counters: SpansStageCounters = { records: 0, spans: 0, deadLetters: 0, transactions: 0, oversized: 0, failedRecords: 0, checkpointsIgnored: 0, clockSkew: 0, txRetries: 0 };
  const maxSkewNs = BigInt(opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS) * 1_000_000n;
  const timeoutNs = opts.timeoutNs ?? DEFAULT_SPAN_TIMEOUT_NS;
  const linkDelayNs = opts.linkDelayNs ?? DEFAULT_SPAN_LINK_DELAY_NS;
  const latenessMs = Number(opts.latenessNs / 1_000_000n);

  /** The record that counts one L7 record this stage dead-lettered in stage 2's ringflow.dropped (partial.ts rejectionRecord). */
  function rejectionOf(host: string, atNs: bigint, reason: string): OutMessage {
    return { topic: REPARTITION_TOPIC, key: repartitionKey(L7_TOPIC, host), value: rejectionRecord(L7_TOPIC, host, atNs, reason) };
  }

  function read(s: PartitionSpans, partition: number, messages: readonly { offset: string; value: Buffer | null }[], dead: OutMessage[], nowNs: bigint): void {
    for (const m of messages) {
      const offset = BigInt(m.offset);
      let rec: L7Record | undefined;
      try {
        if (!m.value) throw new Error('record has no value');
        const d = decodeCurrent(m.value); // an older writer version reads as the current one
        if (d.schema.topic !== L7_TOPIC) throw new Error(`record of ${d.schema.topic} found on ${L7_TOPIC}`);
        rec = d.value as unknown as L7Record;
        // judged against the clock when first read; the dead letter commits with the
        // read offset, and a replay (below deadFrom) judges it the same unless a day passed
        const skew = clockSkewError(BigInt(rec.boot_time_ns) + BigInt(rec.ts_ns), nowNs, maxSkewNs);
        if (skew) throw skew;
      } catch (err) {
        // below deadFrom: dead-lettered before the checkpoint we replay from
        if (offset >= s.deadFrom && offset >= s.next) {
          if (err instanceof RejectedRecord && err.reason === 'clock_skew') counters.clockSkew++;
          const o = deadLetter(L7_TOPIC, partition, m.offset, m.value, err);
          // a host an hour ahead sends thousands: its first, then every 10th, 100th, ...
          const n = counters.clockSkew;
          const quiet = err instanceof RejectedRecord && err.reason === 'clock_skew' && n > 1 && !/^10+$/.test(String(n));
          if (!quiet) opts.log(`processor: ${L7_TOPIC}[${partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})${err instanceof RejectedRecord ? `; ${n} so far` : ''}`);
          dead.push(o);
          // counted in ringflow.metrics.v1 as ringflow.dropped{reason, signal=ringflow.l7.v1} by stage 2,
          // committed with the dead letter (as stage 1 counts its rejections); a skewed time names no real window
          if (err instanceof RejectedRecord && rec !== undefined) dead.push(rejectionOf(String(rec.host), nowNs, err.reason));
        }
        if (offset + 1n > s.next) s.next = offset + 1n;
        continue;
      }
      try {
        s.c.add(rec, offset);
      } catch (err) {
        // a record the correlator cannot take must not stop the partition: it is
        // dead-lettered (once: below deadFrom it was before the checkpoint) and the rest goes on
        counters.failedRecords++;
        if (offset >= s.deadFrom && offset >= s.next) {
          const o = deadLetter(L7_TOPIC, partition, m.offset, m.value, err);
          o.headers!['ringflow.reason'] = 'correlator';
          const n = counters.failedRecords;
          if (n === 1 || (n % 10 === 0 && /^10*$/.test(String(n)))) opts.log(`processor: spans: ${L7_TOPIC}[${partition}]@${m.offset}: the correlator failed (${(err as Error).message}) -> dead letter (${n} so far)`);
          dead.push(o);
          dead.push(rejectionOf(String(rec.host), BigInt(rec.boot_time_ns) + BigInt(rec.ts_ns), 'correlator'));
        }
      }
      if (offset + 1n > s.next) s.next = offset + 1n;
    }
  }

  const runner = createStageRunner<PartitionSpans, Span>({
    kafka: opts.kafka, instanceId: opts.instanceId, name: 'spans',
    inTopic: L7_TOPIC, group: SPANS_GROUP, outTopic: SPANS_TOPIC,
    counters, log: opts.log,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    ...(opts.beforeCommit ? { beforeCommit: opts.beforeCommit } : {}),
    idleTickMs: opts.idleTickMs,
    // quiet partitions: their last requests time out and their last spans end their wait by the clock
    idleQuietMs: latenessMs,
    restore(metadata) {
      const meta = JSON.parse(metadata) as Metadata;
      if (meta === null || typeof meta !== 'object' || meta.v !== 1) throw new Error(`unknown version ${String((meta as { v?: unknown } | null)?.v)}`);
      if (!/^\d+$/.test(String(meta.read))) throw new Error('no read offset');
      const c = new SpanCorrelator({ timeoutNs, linkDelayNs, latenessNs: opts.latenessNs, checkpoint: meta.spans });
      return { c, next: -1n, deadFrom: BigInt(meta.read) };
    },
    fresh: () => ({ c: new SpanCorrelator({ timeoutNs, linkDelayNs, latenessNs: opts.latenessNs }), next: -1n, deadFrom: 0n }),
    read,
    advance: (s) => s.c.advance(),
    pending: (s) => s.c.size !== 0,
    idle: (s, wm) => s.c.advance(wm),
    // the first record a waiting request or span still needs, else the next to read
    commitOffset: (s) => s.c.minPendingOffset() ?? s.next,
    checkpoint: (s) => JSON.stringify({ v: 1, read: String(s.next), spans: s.c.checkpoint() } satisfies Metadata),
    encode: encodeSpan,
    oversizedLine: (partition, o) => `processor: spans: ${L7_TOPIC}[${partition}]: a ${o.bytes}-byte record for ${o.topic} is over its max.message.bytes (${o.limit}) -> dead letter (first bytes)`,
    committed(spans, dead, oversized) {
      counters.spans += spans.length - oversized;
      counters.deadLetters += dead.length;
    },
    ...(opts.onSpans ? { onOutput: opts.onSpans } : {}),
  });

  return {
    counters,
    correlators() {
      const sum: Record<string, number> = {};
      for (const s of runner.parts()) for (const [k, v] of Object.entries(s.c.counters)) sum[k] = (sum[k] ?? 0) + v;
      return sum as unknown as SpanCounters;
    },
    start: () => runner.start(),
    stop: () => runner.stop(),
  };
}
