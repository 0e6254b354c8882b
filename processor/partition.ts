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
 * rebuilt and then suppressed, never emitted twice. The idle clock's advances
 * since then (no function of the records) are in the checkpoint too, and are
 * made again before the same record. A record read again by a state that
 * already holds it (kafkajs reads from the commit after a rebalance, and the
 * stage keeps the state of a partition it keeps) is skipped.
 *
 * Records are stage 1's partial aggregates (processor/partial.ts: merged
 * whole, late or not as a whole; WindowAggregator.addPartial), raw events
 * (from a stage 1 of an older version: a rolling upgrade) and stats records.
 *
 * Two lanes, each its own aggregator and watermark: the collectors' events,
 * and the spans the spans stage derives from ringflow.l7.v1. Spans reach us
 * only once the correlator's watermark passed them (its lateness + link delay
 * behind the l7 records), so on one watermark with live events nearly every
 * span would be late. Each lane checkpoints its assigner state before its own
 * first held record and the offset it resumes at; the commit is the lowest
 * of the lanes' holds, and on replay a lane skips its records below its own
 * resume offset (their effect is in its restored state or emitted windows).
 *
 * Coverage (ringflow.collector.coverage): the stats records of collectors
 * with a run identity say which intervals each host was watched
 * (processor/coverage.ts). Per (topic, host, window) the covered intervals
 * are kept until the window is settled: the events lane's watermark has
 * passed its end + the settle delay (the largest stats interval seen, 5-60 s:
 * the record covering a window's last part arrives up to one interval after
 * it). A contribution to a settled window is ignored (late), so what a window
 * holds is a function of the record order, as for events. A run's first
 * record also states the gap since its predecessor: windows wholly inside it
 * that are settled already are written at once with coverage 0, the others
 * wait like any window. Each window's first contributing record is held like
 * an open window's; the checkpoint carries how far coverage was written, the
 * offset after the last record whose gap was written, and the settle delay as
 * of its resume offset.
 */
import { decodeCurrent, encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { METRICS, WindowAggregator, capCardinality, type SeriesPoint, type WindowAssignerState, type EventBase } from './index.ts';
import { COVERAGE_METRIC, DROPPED_METRIC, collectorLossesOf, collectorPoint, coverageRecord, droppedRecord, spanEvent, type LossLocation, type PartialWindow } from './aggregate.ts';
import { addInterval, coverageFraction, coveredNs, runCoverageOf, windowStartsOf, type Interval } from './coverage.ts';
import { isPartial, partialOf, rejectionsOf } from './partial.ts';
import { createFastDecoder, eventTimeNs } from './fast-decode.ts';
import { METRICS_TOPIC, SPANS_TOPIC, STATS_TOPIC, parseRepartitionKey } from './topics.ts';

export interface PartitionConfig {
  windowMs: number;
  latenessMs: number;
  topK: number;
  /** How far span end times trail the clock when they reach stage 2 (default DEFAULT_SPAN_LAG_MS). */
  spanLagMs?: number;
  /**
   * How long a partition must have received nothing before the clock closes
   * its windows (default latenessMs). The service uses at least the idle
   * grace (5 s): after a restart stage 2 is through its backlog of partials
   * long before stage 1 has committed its own backlog (its first transaction
   * waits for the fenced one), and closing by the clock meanwhile would make
   * those events late.
   */
  idleQuietMs?: number;
}

export interface EncodedPoint {
  key: string;
  value: Buffer;
}

export type AddOutcome = 'ok' | 'late' | 'replayed' | 'invalid';

export interface PartitionState {
  /**
   * One record of the repartition topic at `offset`: an event, a partial
   * aggregate of stage 1, or a stats record. A record below position() (read
   * again by this state, as after a rebalance) is 'replayed': already in it.
   */
  add(key: string, value: Buffer, offset: bigint): AddOutcome;
  /** Events the last add() stood for: a partial's events, else 1. */
  lastEvents(): number;
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
  /**
   * Why the checkpoint given at creation was ignored (unreadable, or a state
   * the aggregator refuses), or null. The state then starts empty from the
   * committed offset: windows emitted before may be emitted again, which beats
   * throwing on every batch and re-reading the same one forever.
   */
  readonly restoreError: string | null;
}

type LaneId = 'events' | 'spans';

interface LaneCheckpoint {
  /** Assigner state as of `from`. */
  windows: WindowAssignerState;
  /** Windows ending at or before this were emitted. */
  emittedThroughNs: string;
  /** This lane's records below this offset are in `windows` already: skipped on replay. */
  from: string;
  /**
   * The idle clock's advances since `from` ([offset, horizon ns]: made when
   * the records below that offset had been read), re-made on replay before
   * the record at that offset. Absent: none.
   */
  idle?: [string, string][];
  /**
   * Events lane only: [coverage written through (window end ns), first offset whose
   * run gap is still to be written, settle delay ns as of `from`]. Absent: none yet.
   */
  cov?: [string, string, string];
}

/** v1: one lane (events), resuming at the committed offset. */
type Checkpoint = { v: 1; windows: WindowAssignerState; emittedThroughNs: string } | { v: 2; lanes: Partial<Record<LaneId, LaneCheckpoint>> };

interface Hold {
  offset: bigint;
  before: WindowAssignerState;
  /** The coverage settle delay just before that offset. */
  settleNs: bigint;
}

/** How far behind the wall clock an idle partition's events may still be arriving. */
export const IDLE_GRACE_NS = 5_000_000_000n;
/**
 * How far behind the wall clock spans may still be arriving, beyond
 * IDLE_GRACE_NS, by default: a span leaves the spans stage once the l7
 * watermark (its lateness, or the idle grace for a quiet partition) passed its
 * end + the link delay (2 s).
 */
export const DEFAULT_SPAN_LAG_MS = 7_000;

/** Idle-clock advances a lane's checkpoint carries at most (about 45 bytes each). */
const MAX_IDLE_LOG = 8;

/** Bounds of the coverage settle delay (the largest stats interval seen). */
export const COVERAGE_SETTLE_MIN_NS = 5_000_000_000n;
export const COVERAGE_SETTLE_MAX_NS = 60_000_000_000n;
/** Windows one stats record (its interval, or its run gap) may mark at most: the latest ones. */
const MAX_COVERAGE_WINDOWS = 512;

const metricTopic = new Map(METRICS.map((m) => [m.name, m.topic]));

/**
 * Offset-commit metadata -> the lanes' checkpoints ({} for none). Throws on
 * anything that is not a checkpoint of ours: text another tool committed, a
 * future version, a truncated value. Pure; table-tested.
 */
export function parseCheckpoint(text: string | undefined): Partial<Record<LaneId, LaneCheckpoint>> {
  if (text === undefined || text === '') return {};
  let cp: Checkpoint;
  try {
    cp = JSON.parse(text) as Checkpoint;
  } catch (err) {
    throw new Error(`unreadable checkpoint (${(err as Error).message})`);
  }
  if (cp === null || typeof cp !== 'object') throw new Error('checkpoint is not an object');
  if (cp.v === 1) {
    if (typeof cp.windows !== 'object' || cp.windows === null || typeof cp.emittedThroughNs !== 'string') throw new Error('checkpoint v1 without its window state');
    return { events: { windows: cp.windows, emittedThroughNs: cp.emittedThroughNs, from: '0' } };
  }
  if (cp.v === 2) {
    if (typeof cp.lanes !== 'object' || cp.lanes === null) throw new Error('checkpoint v2 without lanes');
    for (const [id, l] of Object.entries(cp.lanes)) {
      if (id !== 'events' && id !== 'spans') throw new Error(`checkpoint: unknown lane ${id}`);
      if (!l || typeof l.windows !== 'object' || l.windows === null || typeof l.emittedThroughNs !== 'string' || typeof l.from !== 'string') throw new Error(`checkpoint: lane ${id} incomplete`);
      if (!/^-?\d+$/.test(l.emittedThroughNs) || !/^\d+$/.test(l.from)) throw new Error(`checkpoint: lane ${id} has a bad number`);
      if (l.idle !== undefined && !(Array.isArray(l.idle) && l.idle.every((x) => Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && typeof x[1] === 'string' && /^\d+$/.test(x[0]) && /^-?\d+$/.test(x[1])))) {
        throw new Error(`checkpoint: lane ${id} has a bad idle clock`);
      }
      if (l.cov !== undefined && !(Array.isArray(l.cov) && l.cov.length === 3 && /^-?\d+$/.test(String(l.cov[0])) && /^\d+$/.test(String(l.cov[1])) && /^\d+$/.test(String(l.cov[2])))) {
        throw new Error(`checkpoint: lane ${id} has a bad coverage state`);
      }
    }
    return cp.lanes;
  }
  throw new Error(`checkpoint of unknown version ${String((cp as { v?: unknown }).v)}`);
}

export function createPartitionState(cfg: PartitionConfig & { processorId: string }, partition: number, checkpoint: string | undefined): PartitionState {
  const metrics = schemaRegistry().byTopic(METRICS_TOPIC)!;
  let restoreError: string | null = null;
  let saved: Partial<Record<LaneId, LaneCheckpoint>> = {};
  try {
    saved = parseCheckpoint(checkpoint);
  } catch (err) {
    restoreError = (err as Error).message;
  }
  const spanLagNs = BigInt(cfg.spanLagMs ?? DEFAULT_SPAN_LAG_MS) * 1_000_000n;

  interface Lane {
    readonly agg: WindowAggregator;
    /** window start -> first offset it needs, and the assigner state just before that offset */
    readonly holds: Map<bigint, Hold>;
    emittedThrough: bigint;
    readonly from: bigint;
    readonly idleGraceNs: bigint;
    /**
     * The idle clock's advances of this lane (before the record at `at`, to
     * `ns`) since its first held record: not in that record's `before` state,
     * so the checkpoint carries them and a replay makes them again at the same
     * place. Made by the clock, they are no function of the records: without
     * them a replay judged lateness differently (events late the first time,
     * counted in a window not yet emitted, went on replay into a window
     * already emitted: lost).
     */
    idleLog: { at: bigint; ns: bigint }[];
    /** Advances of the checkpoint still to re-make, ascending by `at`. */
    readonly replayIdle: { at: bigint; ns: bigint }[];
  }
  function lane(id: LaneId, idleGraceNs: bigint): Lane {
    const defs = METRICS.filter((m) => (m.topic === SPANS_TOPIC) === (id === 'spans'));
    const c = saved[id];
    const agg = c
      ? WindowAggregator.restore({ windows: c.windows, open: [], counters: { events: 0, late: 0, skipped: 0, invalid: 0 } }, { metrics: defs })
      : new WindowAggregator({ sizeMs: cfg.windowMs, latenessMs: cfg.latenessMs, metrics: defs });
    const replayIdle = (c?.idle ?? []).map(([at, ns]) => ({ at: BigInt(at), ns: BigInt(ns) }));
    return { agg, holds: new Map(), emittedThrough: c ? BigInt(c.emittedThroughNs) : -1n, from: c ? BigInt(c.from) : 0n, idleGraceNs, idleLog: [...replayIdle], replayIdle };
  }
  let lanes: Record<LaneId, Lane>;
  try {
    lanes = { events: lane('events', IDLE_GRACE_NS), spans: lane('spans', IDLE_GRACE_NS + spanLagNs) };
  } catch (err) {
    // well-formed JSON the window assigner refuses (another window size, a start off the grid, ...)
    restoreError = `window state: ${(err as Error).message}`;
    saved = {};
    lanes = { events: lane('events', IDLE_GRACE_NS), spans: lane('spans', IDLE_GRACE_NS + spanLagNs) };
  }
  const laneList = [lanes.events, lanes.spans];
  /** `${topic}|${host}|${windowStart}` -> events the collectors reported dropped */
  const drops = new Map<string, number>();
  /**
   * the same drops per reason, until their window closes: then written as ringflow.dropped points;
   * with the collector's losses by cause (`${location}|${reason}`), written as ringflow.collector.losses
   * (location counted: its kernel_counts, written as ringflow.fs.calls.unreported; collectorPoint)
   */
  const dropsBy = new Map<string, { topic: string; host: string; startNs: bigint; counts: Map<string, number>; losses: Map<string, number> }>();
  let closed: SeriesPoint[] = [];
  /** `${topic}|${host}|${windowStart}` -> intervals watched, until the window is settled */
  const coverage = new Map<string, { topic: string; host: string; startNs: bigint; endNs: bigint; intervals: Interval[]; hold: Hold }>();
  /** run gaps' windows settled already: written with coverage 0 at the next takeClosed */
  let gapPoints: { topic: string; host: string; startNs: bigint; endNs: bigint }[] = [];
  const savedCov = saved.events?.cov;
  let covThrough = savedCov ? BigInt(savedCov[0]) : -1n;
  let gapFrom = savedCov ? BigInt(savedCov[1]) : 0n;
  let covSettle = savedCov ? BigInt(savedCov[2]) : COVERAGE_SETTLE_MIN_NS;
  let lastIdleCheck = -1n;
  let pos = -1n;
  // per lane, when it last received an event or partial: stats records do not count (the
  // collectors send one every 5 s, which kept a partition from ever being quiet, so a quiet
  // series' last window waited for an unrelated event), nor does the other lane
  const lastEventAt = new Map<object, number>(laneList.map((l) => [l, Date.now()]));
  let lastEvents = 1;
  // collectors' events take the fast decoder (no avsc, no BigInt per long: see
  // fast-decode.ts); spans, stats and anything it declines take decodeCurrent
  const fast = createFastDecoder();

  function hold(l: Lane, windowStart: bigint, offset: bigint, before: WindowAssignerState | undefined, settleNs = covSettle): void {
    if (l.holds.has(windowStart)) return;
    if (!before) throw new Error(`window ${windowStart}: first record held without the assigner's state`);
    l.holds.set(windowStart, { offset, before, settleNs });
  }

  /** The window that takes a record for time `ns`: its own, or the oldest open one if that closed. */
  function targetWindow(agg: WindowAggregator, ns: bigint): bigint {
    const w = agg.assigner.windowOf(ns);
    if (!agg.assigner.isClosed(w.endNs)) return w.startNs;
    return agg.assigner.oldestOpen().startNs;
  }

  function collect(l: Lane, points: SeriesPoint[]): void {
    for (const p of points) {
      // already emitted before a restart: rebuilt from the replay, not written again
      if (p.windowEndNs > l.emittedThrough) closed.push(p);
    }
    const open = new Set(l.agg.assigner.openWindows().map((w) => w.startNs));
    for (const start of [...l.holds.keys()]) if (!open.has(start)) l.holds.delete(start);
  }

  function dropClosed(d: { startNs: bigint }): boolean {
    return lanes.events.agg.assigner.isClosed(lanes.events.agg.assigner.windowOf(d.startNs).endNs);
  }

  /**
   * The collectors' drops of windows now closed, one ringflow.dropped point
   * per host, topic and reason; windows emitted before a restart (replayed)
   * are not written again.
   */
  function takeDropPoints(): EncodedPoint[] {
    const out: EncodedPoint[] = [];
    const l = lanes.events;
    const emitted = l.emittedThrough;
    for (const [k, d] of dropsBy) {
      if (!dropClosed(d)) continue;
      dropsBy.delete(k);
      const endNs = l.agg.assigner.windowOf(d.startNs).endNs;
      if (endNs <= emitted) continue;
      if (endNs > l.emittedThrough) l.emittedThrough = endNs;
      for (const [reason, count] of d.counts) {
        const rec = droppedRecord({ host: d.host, reason, signal: d.topic, startNs: d.startNs, endNs, count, processor: cfg.processorId });
        out.push({ key: `${DROPPED_METRIC}|host.name=${d.host},reason=${reason},signal=${d.topic}`, value: encodeRecord(metrics, rec) });
      }
      for (const [lr, count] of d.losses) {
        const i = lr.indexOf('|');
        const location = lr.slice(0, i) as LossLocation;
        const reason = lr.slice(i + 1);
        const p = collectorPoint({ host: d.host, reason, location, startNs: d.startNs, endNs, count, processor: cfg.processorId });
        out.push({ key: p.key, value: encodeRecord(metrics, p.record) });
      }
    }
    return out;
  }

  /** Coverage of a window is settled once the events lane's watermark passed its end + the settle delay. */
  function covSettled(endNs: bigint): boolean {
    return lanes.events.agg.assigner.isClosed(endNs + covSettle);
  }

  /** What a stats record (of `topic`, `host`) says of coverage, into the windows it touches. */
  function addCoverage(topic: string, host: string, rec: Record<string, unknown>, offset: bigint, before: WindowAssignerState): void {
    const rc = runCoverageOf(rec as Parameters<typeof runCoverageOf>[0]);
    if (!rc) return; // a collector older than run identities: nothing known
    const size = lanes.events.agg.assigner.sizeNs;
    const settleBefore = covSettle;
    if (rc.covered) {
      const iv = rc.covered[1] - rc.covered[0];
      const d = iv < COVERAGE_SETTLE_MIN_NS ? COVERAGE_SETTLE_MIN_NS : iv > COVERAGE_SETTLE_MAX_NS ? COVERAGE_SETTLE_MAX_NS : iv;
      if (d > covSettle) covSettle = d;
    }
    const entry = (start: bigint) => {
      const k = `${topic}|${host}|${start}`;
      let e = coverage.get(k);
      if (!e) coverage.set(k, (e = { topic, host, startNs: start, endNs: start + size, intervals: [], hold: { offset, before, settleNs: settleBefore } }));
      return e;
    };
    if (rc.covered) {
      for (const start of windowStartsOf(rc.covered[0], rc.covered[1], size, MAX_COVERAGE_WINDOWS)) {
        if (covSettled(start + size)) continue; // settled (maybe written) without it: late, as an event would be
        const e = entry(start);
        e.intervals = addInterval(e.intervals, rc.covered, e.startNs, e.endNs);
      }
    }
    if (rc.gap) {
      const [gapLo, gapHi] = rc.gap;
      for (const start of windowStartsOf(gapLo, gapHi, size, MAX_COVERAGE_WINDOWS)) {
        const end = start + size;
        if (!covSettled(end)) {
          entry(start); // written when settled, with whatever the runs around the gap covered of it
          continue;
        }
        // settled already: a window wholly inside the gap was watched by nobody. One that holds
        // the predecessor's end was written from its records; one that holds this run's start
        // gets this run's records late: neither is written here
        if (start >= gapLo && end <= gapHi && offset >= gapFrom) gapPoints.push({ topic, host, startNs: start, endNs: end });
      }
      // a replay from before this record must not write its gap's windows again
      if (offset >= gapFrom) gapFrom = offset + 1n;
    }
  }

  function coverageSettledAny(): boolean {
    if (gapPoints.length > 0) return true;
    for (const e of coverage.values()) if (covSettled(e.endNs)) return true;
    return false;
  }

  /** Coverage points of the windows settled so far (and of run gaps), each once across restarts. */
  function takeCoveragePoints(): EncodedPoint[] {
    const out: EncodedPoint[] = [];
    const write = (e: { topic: string; host: string; startNs: bigint; endNs: bigint }, fraction: number) => {
      const rec = coverageRecord({ host: e.host, signal: e.topic, startNs: e.startNs, endNs: e.endNs, fraction, processor: cfg.processorId });
      out.push({ key: `${COVERAGE_METRIC}|host.name=${e.host},signal=${e.topic}`, value: encodeRecord(metrics, rec) });
    };
    for (const g of gapPoints) write(g, 0);
    gapPoints = [];
    const done = [...coverage].filter(([, e]) => covSettled(e.endNs)).sort(([, a], [, b]) => (a.endNs < b.endNs ? -1 : a.endNs > b.endNs ? 1 : 0));
    let through = covThrough;
    for (const [k, e] of done) {
      coverage.delete(k);
      // written before a restart: rebuilt by the replay, not written again
      if (e.endNs > covThrough) write(e, coverageFraction(coveredNs(e.intervals, e.startNs, e.endNs), e.endNs - e.startNs));
      if (e.endNs > through) through = e.endNs;
    }
    covThrough = through;
    return out;
  }

  /** The idle clock moves lane `l` to `ns` before the record at `at`; logged for the checkpoint. */
  function idleAdvance(l: Lane, at: bigint, ns: bigint): void {
    const wm = l.agg.assigner.watermarkNs;
    if (wm !== null && ns - l.agg.assigner.latenessNs <= wm) return collect(l, l.agg.advance()); // moves nothing
    const last = l.idleLog[l.idleLog.length - 1];
    if (last && last.at === at) last.ns = ns;
    else l.idleLog.push({ at, ns });
    // the checkpoint is offset-commit metadata (offset.metadata.max.bytes, 4096 by default): a
    // window held open through many quiet spells (a host's clock ahead) keeps only the last
    // advances; a replay then judges by the records before them, as before this log
    if (l.idleLog.length > MAX_IDLE_LOG) l.idleLog.splice(0, l.idleLog.length - MAX_IDLE_LOG);
    collect(l, l.agg.advanceTo(ns));
  }

  function firstHold(l: Lane): Hold | undefined {
    let first: Hold | undefined;
    for (const h of l.holds.values()) if (!first || h.offset < first.offset) first = h;
    // a window's coverage not yet settled needs its records as an open window does
    if (l === lanes.events) for (const e of coverage.values()) if (!first || e.hold.offset < first.offset) first = e.hold;
    return first;
  }

  return {
    restoreError,
    add(key, value, offset) {
      // read again with this state: kafkajs goes back to the committed offset (the first one an
      // open window needs) after every rebalance, and the stage keeps the states of the
      // partitions it keeps; adding those records again counted them twice (soak finding 6)
      const reread = offset < pos;
      if (!reread) pos = offset + 1n;
      lastEvents = 1;
      // replay: the idle clock's advances where it made them the first time
      for (const l of laneList) {
        while (l.replayIdle.length > 0 && l.replayIdle[0]!.at <= offset) {
          const { ns } = l.replayIdle.shift()!;
          collect(l, l.agg.advanceTo(ns));
        }
      }
      const route = parseRepartitionKey(key);
      let rec: Record<string, unknown>;
      let isStats: boolean;
      let partial: PartialWindow | null = null;
      // event time of a fast-decoded record (its longs may be numbers); null: rec is avsc's
      let fastNs: bigint | null = null;
      try {
        if (!route) throw new Error(`bad key "${key}"`);
        const f = route.topic === SPANS_TOPIC ? null : fast.decode(value);
        if (f !== null && f.schema.topic !== STATS_TOPIC) {
          rec = f.value;
          isStats = false;
          fastNs = eventTimeNs(rec);
        } else {
          const d = decodeCurrent(value); // an older writer version reads as the current one
          rec = d.value;
          isStats = d.schema.topic === STATS_TOPIC;
          if (isPartial(d)) {
            partial = partialOf(rec);
            lastEvents = partial.events;
            if (partial.topic !== route.topic || partial.host !== route.host) throw new Error(`partial of ${partial.topic}|${partial.host} keyed ${key}`);
          }
        }
      } catch {
        return 'invalid'; // stage 1 only forwards records it could decode
      }
      const l = route!.topic === SPANS_TOPIC && !isStats ? lanes.spans : lanes.events;
      // replay: this lane's state already holds this record
      if (!isStats) lastEventAt.set(l, Date.now());
      if (reread || offset < l.from) return 'replayed';
      const agg = l.agg;
      if (isStats) {
        const before = agg.assigner.state();
        const settleBefore = covSettle; // the record may raise it: a hold keeps the state before it
        addCoverage(route!.topic, route!.host, rec, offset, before);
        // a stats record routed for one event topic: the drops reported for it
        const e = (rec.events as { event: string; kernel_drops: bigint; user_drops: bigint }[]).find((x) => x.event === route!.topic);
        const n = e ? Number(e.kernel_drops + e.user_drops) : 0;
        // events stage 1 dead-lettered (invalid values, clock skew): partial.ts rejectionRecord
        const rejected = rejectionsOf(rec);
        // the collector's losses by cause: only in the copy of the record routed for its lead topic
        // (stage 1 sends one copy per listed topic; the breakdown is per collector)
        const losses = collectorLossesOf(rec, route!.topic);
        if (agg.assigner.watermarkNs === null && n === 0 && rejected.length === 0 && losses.length === 0) return 'ok';
        const t = rec.time_ns as bigint;
        const start = agg.assigner.watermarkNs === null ? agg.assigner.windowOf(t).startNs : targetWindow(agg, t);
        hold(l, start, offset, before, settleBefore);
        const k = `${route!.topic}|${route!.host}|${start}`;
        drops.set(k, (drops.get(k) ?? 0) + n);
        const entry = () => {
          let d = dropsBy.get(k);
          if (!d) dropsBy.set(k, (d = { topic: route!.topic, host: route!.host, startNs: start, counts: new Map(), losses: new Map() }));
          return d;
        };
        const add = (reason: string, c: number) => {
          if (c <= 0) return;
          const d = entry();
          d.counts.set(reason, (d.counts.get(reason) ?? 0) + c);
        };
        for (const [location, reason, c] of losses) {
          const d = entry();
          const lk = `${location}|${reason}`;
          d.losses.set(lk, (d.losses.get(lk) ?? 0) + c);
        }
        if (e) {
          add('kernel', Number(e.kernel_drops));
          add('user', Number(e.user_drops));
        }
        for (const [reason, c] of rejected) add(reason, c);
        return 'ok';
      }
      if (partial !== null) {
        // as for an event: the assigner's state before the first partial a window holds, or a late one
        const before = agg.assigner.isClosed(partial.windowEndNs) || !l.holds.has(partial.windowStartNs) ? agg.assigner.state() : undefined;
        let r;
        try {
          r = agg.addPartial(partial);
        } catch {
          return 'invalid'; // another window size, metric or dimensions: nothing was changed
        }
        if (r === 'ok' || r === 'late') {
          hold(l, r === 'ok' ? partial.windowStartNs : agg.assigner.oldestOpen().startNs, offset, before);
          return r;
        }
        return 'invalid';
      }
      const ev = l === lanes.spans ? spanEvent(rec) : (rec as unknown as EventBase);
      const ns = fastNs ?? ev.boot_time_ns + ev.ts_ns;
      const own = agg.assigner.windowOf(ns);
      // the assigner's state is needed only by the first record a window holds (or a late one):
      // snapshotting it for every record was most of this function's cost
      const before = agg.assigner.isClosed(own.endNs) || !l.holds.has(own.startNs) ? agg.assigner.state() : undefined;
      const r = agg.addAt(route!.topic, ev, ns);
      if (r === 'ok' || r === 'late') {
        const start = r === 'ok' ? own.startNs : agg.assigner.oldestOpen().startNs;
        hold(l, start, offset, before);
        return r;
      }
      return 'invalid';
    },
    lastEvents() {
      return lastEvents;
    },
    advance() {
      for (const l of laneList) collect(l, l.agg.advance());
    },
    advanceIdle(wallNs) {
      // only a lane that has been quiet for a lateness period is moved by the clock
      const quiet = laneList.filter((l) => Date.now() - lastEventAt.get(l)! >= (cfg.idleQuietMs ?? cfg.latenessMs));
      if (quiet.length === 0 || wallNs === lastIdleCheck) return false;
      lastIdleCheck = wallNs;
      const before = closed.length;
      // the clock runs ahead of events still on their way (ring poll, produce, stage 1's
      // transaction; for spans also the correlator's wait): only assume event time has
      // reached now - the lane's grace
      for (const l of quiet) idleAdvance(l, pos < 0n ? l.from : pos, wallNs - l.idleGraceNs);
      return closed.length > before || [...dropsBy.values()].some(dropClosed) || coverageSettledAny();
    },
    takeClosed() {
      const dropped = takeDropPoints().concat(takeCoveragePoints());
      if (closed.length === 0) return dropped;
      const points = capCardinality(closed, { topK: cfg.topK, perHost: true });
      closed = [];
      const out: EncodedPoint[] = [];
      for (const p of points) {
        const l = metricTopic.get(p.name) === SPANS_TOPIC ? lanes.spans : lanes.events;
        if (p.windowEndNs > l.emittedThrough) l.emittedThrough = p.windowEndNs;
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
      const open = new Set(lanes.events.agg.assigner.openWindows().map((w) => String(w.startNs)));
      for (const k of [...drops.keys()]) if (!open.has(k.slice(k.lastIndexOf('|') + 1))) drops.delete(k);
      return out.concat(dropped);
    },
    minOpenOffset() {
      let min: bigint | null = null;
      for (const l of laneList) for (const h of l.holds.values()) if (min === null || h.offset < min) min = h.offset;
      for (const e of coverage.values()) if (min === null || e.hold.offset < min) min = e.hold.offset;
      return min;
    },
    position() {
      return pos;
    },
    checkpoint() {
      const c: Checkpoint = { v: 2, lanes: {} };
      for (const id of ['events', 'spans'] as const) {
        const l = lanes[id];
        const first = firstHold(l);
        // no window open: the state now, and every record so far is in it
        const from = first ? first.offset : pos > l.from ? pos : l.from;
        // advances made before the record at `from` are in its state
        l.idleLog = l.idleLog.filter((x) => x.at > from);
        const lc: LaneCheckpoint = { windows: first ? first.before : l.agg.assigner.state(), emittedThroughNs: String(l.emittedThrough), from: String(from) };
        if (l.idleLog.length > 0) lc.idle = l.idleLog.map((x) => [String(x.at), String(x.ns)]);
        if (id === 'events' && (covThrough >= 0n || gapFrom > 0n || coverage.size > 0 || covSettle !== COVERAGE_SETTLE_MIN_NS)) {
          lc.cov = [String(covThrough), String(gapFrom), String(first ? first.settleNs : covSettle)];
        }
        c.lanes[id] = lc;
      }
      return JSON.stringify(c);
    },
  };
}
