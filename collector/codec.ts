/**
 * The collector's view of schemas/ and collector/events/: topics per event
 * type, the batch transcoder, the stats record, and JSON lines for people.
 */
import { schemaRegistry, encodeRecord, decodeRecord } from '../schemas/index.ts';
import { createTranscoder, toJsonLine, type DropReasonNames } from './events/index.ts';
import type { StatsSnapshot, TranscoderLike } from './collector.ts';
import type { OutRecord } from './sink.ts';
import { decodeL7Capture, L7_CAPTURE_TYPE } from './l7/capture.ts';
import { decodeL7Exchange, L7_EXCHANGE_TYPE } from './l7/exchange.ts';
import { L7Tracker, type L7TrackerOptions, type L7Output } from './l7/tracker.ts';
import { asExchangeRecord, createL7Encoder } from './l7/encode.ts';
import { procIdentities } from './process-identity.ts';

export const L7_TOPIC = 'ringflow.l7.v1';

/** How often (in capture time) idle L7 connections are swept. */
const L7_SWEEP_NS = 1_000_000_000n;

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
  /** Present when L7 parsing is on: its per-connection state and counters. */
  readonly l7: { readonly tracker: L7Tracker } | undefined;
  topicsFor(eventTypes: readonly number[]): Map<number, string>;
  encodeStats(s: StatsSnapshot): OutRecord;
  toJsonLine(value: Buffer): string;
}

export interface CodecOptions {
  host: string;
  bootTimeNs: bigint;
  dropReasonNames: DropReasonNames;
  /** L7 captures are parsed per connection (collector/l7/): the tracker's options. */
  l7?: L7TrackerOptions;
  /** Where a record that throws is reported (once per kind). */
  log?: (line: string) => void;
}

export function createCodec(opts: CodecOptions): Codec {
  const registry = schemaRegistry();
  // L7 captures become parsed messages; they are emitted into the batch being transcoded
  let emitL7: ((o: L7Output, type?: number) => void) | undefined;
  let l7: Codec['l7'];
  const raw = new Map<number, (batch: Buffer, off: number, len: number) => boolean>();
  // Losses by DropReason (collector.ts): one capture or message that throws is
  // counted and skipped, the rest of its batch goes on.
  const drops = new Map<string, number>();
  const reported = new Set<string>();
  const lose = (reason: 'l7_tracker_error' | 'l7_encode_error', err: unknown): void => {
    drops.set(reason, (drops.get(reason) ?? 0) + 1);
    if (reported.has(reason)) return; // one line per kind; the count goes on in the stats
    reported.add(reason);
    const e = err as { stack?: string; message?: string };
    (opts.log ?? ((l: string) => console.error(l)))(`ringflow: collector: ${reason}: ${e?.stack ?? e?.message ?? String(err)} (counted in the stats as drop_reasons ${reason}; further ones are counted only)`);
  };
  if (opts.l7) {
    const ids = procIdentities(); // service.name and container.id: collector/process-identity.ts
    const tracker = new L7Tracker({ processName: (tgid) => ids(tgid).serviceName, ...opts.l7 });
    const enc = createL7Encoder({ host: opts.host, bootTimeNs: opts.bootTimeNs, containerId: (tgid) => ids(tgid).containerId });
    let lastSweep = 0n;
    l7 = { tracker };
    raw.set(L7_CAPTURE_TYPE, (batch, off, len) => {
      const c = decodeL7Capture(batch, off, len);
      if (!c) return false;
      // parsers may keep bytes across records: never pin the native batch
      c.payload = c.payload.slice();
      let outs: L7Output[];
      try {
        outs = tracker.feed(c);
        if (c.ts_ns - lastSweep >= L7_SWEEP_NS) {
          lastSweep = c.ts_ns;
          outs = outs.concat(tracker.sweep(c.ts_ns));
        }
      } catch (err) {
        lose('l7_tracker_error', err);
        return true; // decoded, and counted as lost: not also undecodable
      }
      for (const o of outs) emitL7!(o);
      return true;
    });
    // HTTP/1 exchanges framed and paired in BPF: one record, its messages (collector/l7/exchange.ts)
    raw.set(L7_EXCHANGE_TYPE, (batch, off, len) => {
      const x = decodeL7Exchange(batch, off, len);
      if (!x) return false;
      let outs: L7Output[];
      try {
        // one EXCHANGE record per exchange where it fits (encode.ts), its messages otherwise
        outs = asExchangeRecord(tracker.exchange(x), x.outcome);
        // the capture records' connections are swept by time too when only exchange records flow
        if (x.ts_ns - lastSweep >= L7_SWEEP_NS) {
          lastSweep = x.ts_ns;
          outs = outs.concat(tracker.sweep(x.ts_ns));
        }
      } catch (err) {
        lose('l7_tracker_error', err);
        return true;
      }
      for (const o of outs) emitL7!(o, L7_EXCHANGE_TYPE);
      return true;
    });
    emitL7 = (o, type = L7_CAPTURE_TYPE) => {
      let kv: { key: string; value: Buffer };
      try {
        kv = enc.encode(o);
      } catch (err) {
        return lose('l7_encode_error', err);
      }
      currentEmit!(L7_TOPIC, type, kv.key, kv.value);
    };
  }
  let currentEmit: ((topic: string, type: number, key: string, value: Buffer) => void) | undefined;
  const t = createTranscoder({ host: opts.host, bootTimeNs: opts.bootTimeNs, dropReasonNames: opts.dropReasonNames, raw });
  const stats = registry.byTopic(STATS_TOPIC);
  if (!stats) throw new Error(`schema for ${STATS_TOPIC} missing from schemas/`);
  return {
    statsTopic: STATS_TOPIC,
    transcoder: {
      drops,
      get parseFailures() {
        return l7?.tracker.counters.failed;
      },
      transcodeBatch(batch, emit) {
        currentEmit = emit;
        return t.transcodeBatch(batch, (s, key, value) => emit(s.topic, s.eventType ?? 0, key, value));
      },
      finish(emit) {
        if (!l7) return;
        currentEmit = emit;
        // CLOCK_MONOTONIC now, as bpf_ktime_get_ns() counts: the end of what is still open
        for (const o of l7.tracker.flushAll(process.hrtime.bigint())) emitL7!(o);
      },
    },
    topicsFor(eventTypes) {
      const m = new Map<number, string>();
      for (const type of eventTypes) {
        if (type === L7_CAPTURE_TYPE || type === L7_EXCHANGE_TYPE) {
          m.set(type, L7_TOPIC);
          continue;
        }
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
        undecodable: s.undecodable,
        drop_reasons: s.drop_reasons,
        l7_parse_failures: s.l7_parse_failures,
        clamped: s.clamped,
        kernel_losses: s.kernel_losses ?? [],
        kernel_counts: s.kernel_counts ?? [],
        run_id: s.run?.id ?? '',
        run_start_ns: s.run?.startNs ?? 0n,
        previous_run_id: s.run?.previousId ?? '',
        previous_run_end_ns: s.run?.previousEndNs ?? 0n,
      });
      return { topic: STATS_TOPIC, key: opts.host, value, type: 0 };
    },
    toJsonLine: decodeToJsonLine,
    l7,
  };
}

/** Any ringflow record (framed) -> one JSON line, decoded with the schema its header names. */
export function decodeToJsonLine(value: Buffer): string {
  const { schema, value: obj } = decodeRecord(value);
  return toJsonLine(schema, obj as Record<string, unknown>);
}
