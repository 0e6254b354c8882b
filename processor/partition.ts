/**
 * The state of one partition of the repartition topic: window aggregation,
 * drop counts from the collectors' stats, and the checkpoint that makes a
 * restart exact (see aggregate-stage.ts for the protocol).
 *
 * Replay is deterministic re-execution: the checkpoint holds the window
 * assigner's state as it was just before the first record still needed by an
 * open window (the committed offset), so re-reading from there takes every
 * decision (window, late or not, oldest open window) exactly as the first
 * time. Windows that had already been emitted (end <= emittedThroughNs) are
 * rebuilt and then suppressed, never emitted twice.
 */
import { decodeCurrent, encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { METRICS, WindowAggregator, capCardinality, type SeriesPoint, type WindowAssignerState, type EventBase } from './index.ts';
import { METRICS_TOPIC, STATS_TOPIC, parseRepartitionKey } from './topics.ts';

export interface PartitionConfig {
  windowMs: number;
  latenessMs: number;
  topK: number;
}

export interface EncodedPoint {
  key: string;
  value: Buffer;
}

export type AddOutcome = 'ok' | 'late' | 'replayed' | 'invalid';

export interface PartitionState {
  /** One record of the repartition topic at `offset`. */
  add(key: string, value: Buffer, offset: bigint): AddOutcome;
  /** Close windows by event time. */
  advance(): void;
  /** Close windows by processing time when the partition is idle; true if any closed. */
  advanceIdle(wallNs: bigint): boolean;
  /** Encoded points of the windows closed so far, once. */
  takeClosed(): EncodedPoint[];
  /** First offset an open window still needs, or null. */
  minOpenOffset(): bigint | null;
  /** Offset after the last record added. */
  position(): bigint;
  /** Offset-commit metadata to store with the commit of `minOpenOffset() ?? position()`. */
  checkpoint(): string;
}

interface Checkpoint {
  v: 1;
  /** Assigner state as of the committed offset. */
  windows: WindowAssignerState;
  /** Windows ending at or before this were emitted. */
  emittedThroughNs: string;
}

interface Hold {
  offset: bigint;
  before: WindowAssignerState;
}

/** How far behind the wall clock an idle partition's events may still be arriving. */
export const IDLE_GRACE_NS = 5_000_000_000n;

const metricTopic = new Map(METRICS.map((m) => [m.name, m.topic]));

export function createPartitionState(cfg: PartitionConfig & { processorId: string }, partition: number, checkpoint: string | undefined): PartitionState {
  const metrics = schemaRegistry().byTopic(METRICS_TOPIC)!;
  const cp = checkpoint ? (JSON.parse(checkpoint) as Checkpoint) : undefined;
  const agg = cp
    ? WindowAggregator.restore({ windows: cp.windows, open: [], counters: { events: 0, late: 0, skipped: 0, invalid: 0 } })
    : new WindowAggregator({ sizeMs: cfg.windowMs, latenessMs: cfg.latenessMs });
  let emittedThrough = cp ? BigInt(cp.emittedThroughNs) : -1n;
  /** window start -> first offset it needs, and the assigner state just before that offset */
  const holds = new Map<bigint, Hold>();
  /** `${topic}|${host}|${windowStart}` -> events the collectors reported dropped */
  const drops = new Map<string, number>();
  let closed: SeriesPoint[] = [];
  let lastIdleCheck = -1n;
  let pos = -1n;
  let lastEventAt = Date.now();

  function hold(windowStart: bigint, offset: bigint, before: WindowAssignerState | undefined): void {
    if (holds.has(windowStart)) return;
    if (!before) throw new Error(`window ${windowStart}: first record held without the assigner's state`);
    holds.set(windowStart, { offset, before });
  }

  /** The window that takes a record for time `ns`: its own, or the oldest open one if that closed. */
  function targetWindow(ns: bigint): bigint {
    const w = agg.assigner.windowOf(ns);
    if (!agg.assigner.isClosed(w.endNs)) return w.startNs;
    return agg.assigner.oldestOpen().startNs;
  }

  function collect(points: SeriesPoint[]): void {
    for (const p of points) {
      // already emitted before a restart: rebuilt from the replay, not written again
      if (p.windowEndNs > emittedThrough) closed.push(p);
    }
    const open = new Set(agg.assigner.openWindows().map((w) => w.startNs));
    for (const start of [...holds.keys()]) if (!open.has(start)) holds.delete(start);
  }

  return {
    add(key, value, offset) {
      pos = offset + 1n;
      lastEventAt = Date.now();
      const route = parseRepartitionKey(key);
      let rec: Record<string, unknown>;
      let isStats: boolean;
      try {
        if (!route) throw new Error(`bad key "${key}"`);
        const d = decodeCurrent(value); // an older writer version reads as the current one
        rec = d.value;
        isStats = d.schema.topic === STATS_TOPIC;
      } catch {
        return 'invalid'; // stage 1 only forwards records it could decode
      }
      if (isStats) {
        const before = agg.assigner.state();
        // a stats record routed for one event topic: the drops reported for it
        const e = (rec.events as { event: string; kernel_drops: bigint; user_drops: bigint }[]).find((x) => x.event === route!.topic);
        const n = e ? Number(e.kernel_drops + e.user_drops) : 0;
        if (agg.assigner.watermarkNs === null && n === 0) return 'ok';
        const t = rec.time_ns as bigint;
        const start = agg.assigner.watermarkNs === null ? agg.assigner.windowOf(t).startNs : targetWindow(t);
        hold(start, offset, before);
        const k = `${route!.topic}|${route!.host}|${start}`;
        drops.set(k, (drops.get(k) ?? 0) + n);
        return 'ok';
      }
      const ns = (rec.boot_time_ns as bigint) + (rec.ts_ns as bigint);
      const own = agg.assigner.windowOf(ns);
      // the assigner's state is needed only by the first record a window holds (or a late one):
      // snapshotting it for every record was most of this function's cost
      const before = agg.assigner.isClosed(own.endNs) || !holds.has(own.startNs) ? agg.assigner.state() : undefined;
      const r = agg.add({ topic: route!.topic, value: rec as unknown as EventBase });
      if (r === 'ok' || r === 'late') {
        const start = r === 'ok' ? own.startNs : agg.assigner.oldestOpen().startNs;
        hold(start, offset, before);
        return r;
      }
      return 'invalid';
    },
    advance() {
      collect(agg.advance());
    },
    advanceIdle(wallNs) {
      // only a partition that has been quiet for a lateness period is moved by the clock
      if (Date.now() - lastEventAt < cfg.latenessMs || wallNs === lastIdleCheck) return false;
      lastIdleCheck = wallNs;
      const before = closed.length;
      // the clock runs ahead of events still on their way (ring poll, produce, stage 1's
      // transaction): only assume event time has reached now - IDLE_GRACE
      collect(agg.advanceTo(wallNs - IDLE_GRACE_NS));
      return closed.length > before;
    },
    takeClosed() {
      if (closed.length === 0) return [];
      const points = capCardinality(closed, { topK: cfg.topK, perHost: true });
      closed = [];
      const out: EncodedPoint[] = [];
      for (const p of points) {
        if (p.windowEndNs > emittedThrough) emittedThrough = p.windowEndNs;
        const host = p.attributes.find(([k]) => k === 'host.name')?.[1] ?? '';
        const start = p.windowStartNs;
        const dropped = drops.get(`${metricTopic.get(p.name)}|${host}|${start}`) ?? 0;
        const value = encodeRecord(metrics, {
          name: p.name,
          unit: p.unit,
          kind: p.kind === 'histogram' ? 'HISTOGRAM' : 'SUM',
          attributes: p.attributes.map(([key, v]) => ({ key, value: v })),
          window_start_ns: p.windowStartNs,
          window_end_ns: p.windowEndNs,
          histogram: p.kind === 'histogram' ? p.histogram : null,
          sum: p.kind === 'sum' ? BigInt(p.sum ?? 0) : null,
          late_events: p.lateEvents,
          dropped_inputs: dropped,
          processor: cfg.processorId,
        });
        out.push({ key: `${p.name}|${p.attributes.map(([k, v]) => `${k}=${v}`).join(',')}`, value });
      }
      // drop counts of windows no longer open are no longer needed
      const open = new Set(agg.assigner.openWindows().map((w) => String(w.startNs)));
      for (const k of [...drops.keys()]) if (!open.has(k.slice(k.lastIndexOf('|') + 1))) drops.delete(k);
      return out;
    },
    minOpenOffset() {
      let min: bigint | null = null;
      for (const h of holds.values()) if (min === null || h.offset < min) min = h.offset;
      return min;
    },
    position() {
      return pos;
    },
    checkpoint() {
      let first: Hold | undefined;
      for (const h of holds.values()) if (!first || h.offset < first.offset) first = h;
      const c: Checkpoint = {
        v: 1,
        windows: first ? first.before : agg.assigner.state(),
        emittedThroughNs: String(emittedThrough),
      };
      return JSON.stringify(c);
    },
  };
}
