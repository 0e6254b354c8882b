/**
 * The collector's core: ring buffer batches in, framed Avro records out to a
 * sink, with accounting that lets downstream stages say how complete they are.
 *
 *   native Session --batch--> transcoder --records--> sink (Kafka | stdout)
 *          ^                                             |
 *          +------ pause()/resume() on pending() --------+
 *
 * Backpressure: when the sink holds more than `highWater` unacknowledged
 * records, the native thread stops draining the ring; the ring (a fixed size)
 * absorbs the burst, and once it is full the BPF programs count what they
 * cannot reserve (kernel drops). Memory therefore stays bounded by
 * maxPending + the batches already queued in the addon. Anything handed over
 * past `maxPending` is dropped here and counted (user drops), except on stop,
 * when the final drain of the ring (bounded by the ring's size) is kept whole.
 *
 * Failure: nothing thrown in the batch callback, the stats timer or a sink
 * callback leaves the collector (a throw in the addon's callback would be an
 * uncaughtException). The transcoder guards each record it can (codec.ts),
 * the collector each batch; each place is counted and reported with its cause
 * once, then at 10, 100, ... repeats. Every record lost in user space is
 * counted per type (user_drops) and by a fixed reason (DROP_REASONS), by
 * whichever part lost it: here, the transcoder or the sink; the stats record
 * carries them all. Stats values are clamped to what Avro longs and the
 * reader can take (clampCount), and the clamps counted.
 *
 * Coverage: a run has an identity (run_id) and a start (run_start_ns, taken
 * as its ring starts being read). Its stats records tile its life without a
 * gap: one right at start (stamped run_start_ns, interval 0), one per
 * interval, one at a clean stop, each covering (previous time_ns, time_ns]. Each acknowledged one is reported to
 * onStatsAcked (the run state file, run-state.ts), so the next run can state
 * where this one is last known to have watched, even after a SIGKILL.
 */
import type { EventSink, OutRecord } from './sink.ts';
import { kernelLossDeltas, readKernelLosses, type KernelLossReading } from './kernel-losses.ts';
import { KERNEL_COUNT_COUNTERS } from './kernel-counts.ts';

/**
 * Why records were lost in user space: a fixed set, so the stats record and
 * the summary line stay bounded whatever the input (no numbers, no free text).
 * - backpressure: handed over while the sink already held maxPending records
 * - unacknowledged_at_stop: still unacknowledged when stop's flush timed out
 * - undecodable: unknown type or short record (the transcoder's `unknown`)
 * - transcode_error: a batch's transcoder threw; the records it had not emitted
 * - l7_tracker_error / l7_encode_error: one L7 capture or message threw (codec.ts)
 * - too_large_dead_lettered / rejected_dead_lettered: refused by Kafka for
 *   their topic, written to the dead-letter topic instead (kafka-sink.ts)
 * - too_large / rejected: refused by Kafka and not even dead-lettered
 * - stats_error: a stats record that could not be built or sent
 * - format_error / output_error: --stdout could not print a record / the
 *   stream had failed (stdout-sink.ts)
 * - profile_encode_error: a profile stack record that could not be built or
 *   encoded (collector/profile/source.ts)
 */
export const DROP_REASONS = [
  'backpressure', 'unacknowledged_at_stop', 'undecodable', 'transcode_error', 'l7_tracker_error', 'l7_encode_error',
  'too_large_dead_lettered', 'rejected_dead_lettered', 'too_large', 'rejected', 'stats_error', 'format_error', 'output_error',
  'profile_encode_error',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface ReasonCount {
  reason: string;
  count: number;
}

/**
 * A counter for the stats record: a non-negative safe integer. Anything else
 * (a wrapped unsigned difference, NaN, a bigint past 2^53) cannot be right:
 * it is clamped into range and `onClamp` counts it, rather than letting the
 * Avro encoder throw in a timer (issue 9: `invalid "long": 18446744073709488000`).
 */
export function clampCount(v: number | bigint, onClamp: () => void): number {
  const n = typeof v === 'bigint' ? (v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v < 0n ? -1 : Infinity) : v;
  if (Number.isSafeInteger(n) && n >= 0) return n;
  onClamp();
  return n > 0 ? Number.MAX_SAFE_INTEGER : 0;
}

export interface SessionLike {
  start(onBatch: (batch: Buffer) => void): void;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  drops(): bigint[];
  /** Bytes written to the ring and not yet consumed. */
  ringPending(): number;
  /** A loaded map's u64 counters (per-CPU summed); null when no loaded object has it. */
  mapCounters?(name: string): bigint[] | null;
  /** In-kernel HTTP/1's hand-over claim (native/index.ts): a batch of REQ_ONLY exchange records; null: no such map. */
  l7Claim?(handoverNs: number, staleNs: number): Buffer | null;
}

export interface TranscoderLike {
  /** Calls emit once per decodable record; returns how many records the batch held that it could not decode. */
  transcodeBatch(batch: Buffer, emit: (topic: string, type: number, key: string, value: Buffer) => void): { records: number; unknown: number };
  /** Once the ring is drained on stop: emit what per-connection state still holds (L7 messages a close would have completed). */
  finish?(emit: (topic: string, type: number, key: string, value: Buffer) => void): void;
  /** Records it lost, by DropReason (cumulative), e.g. one L7 capture whose parser threw. */
  readonly drops?: ReadonlyMap<string, number>;
  /** L7 parser directions stopped, by fixed reason (cumulative). */
  readonly parseFailures?: ReadonlyMap<string, number>;
}

export interface StatsEvent {
  event: string;
  read: number;
  kernel_drops: number;
  user_drops: number;
  produced: number;
}

export interface StatsSnapshot {
  time_ns: bigint;
  interval_ns: bigint;
  events: StatsEvent[];
  send_errors: number;
  pending: number;
  ring_bytes: number;
  /** records the transcoder could not decode (unknown type or short record) */
  undecodable: number;
  /** Records lost in user space over the interval, by DropReason (only reasons with a count). */
  drop_reasons: ReasonCount[];
  /** L7 parser directions that stopped over the interval, by fixed reason (see l7/tracker.ts). */
  l7_parse_failures: ReasonCount[];
  /** Stats values over the interval that could not be right and were clamped (see clampCount). */
  clamped: number;
  /** Losses the BPF programs counted by reason in their maps over the interval (collector/kernel-losses.ts). */
  kernel_losses: ReasonCount[];
  /** Calls the BPF programs counted but did not report, not losses (collector/kernel-counts.ts): under --min-latency, failed opens. */
  kernel_counts?: ReasonCount[];
  /** The run these stats belong to (absent: the collector was given no run identity). */
  run?: RunInfo;
}

/** A collector run's identity, as its stats records carry it (schemas/collector.stats.avsc). */
export interface RunInfo {
  id: string;
  /** Wall clock when this run began reading its ring; its first stats record covers from here. */
  startNs: bigint;
  /** The run before this one on the host, from the run state file ('' and 0n: none known). */
  previousId: string;
  previousEndNs: bigint;
}

export interface CollectorOptions {
  session: SessionLike;
  transcoder: TranscoderLike;
  sink: EventSink;
  /** event type id -> topic (every type any loaded signal can emit) */
  topics: ReadonlyMap<number, string>;
  highWater: number;
  maxPending: number;
  statsIntervalMs: number;
  /** Build the framed stats record; undefined disables stats publishing (stdout mode). */
  encodeStats?: (s: StatsSnapshot) => OutRecord;
  onStats?: (s: StatsSnapshot) => void;
  wallClockNs?: () => bigint;
  /** Where errors caught in callbacks and timers are reported (once per kind, then at 10, 100, ... repeats). */
  log?: (line: string) => void;
  /** This run's identity and its predecessor's (startNs is set by start()). */
  run?: Omit<RunInfo, 'startNs'>;
  /** A stats record of this run was acknowledged by the sink: the host is known watched up to timeNs. */
  onStatsAcked?: (timeNs: bigint) => void;
  /**
   * A task filter (--pid/--uid/--comm/--cgroup) is set: TCP events of sockets with no known
   * owner are then lost in the kernel (without one they are emitted), so they count as losses.
   */
  taskFiltered?: boolean;
  /**
   * In-kernel HTTP/1 (docs/design/l7-in-kernel.md §2.7): every sweepMs the
   * requests BPF still holds with no response for handoverNs are claimed
   * from its pending map and go through the transcoder like ring records
   * (outcome REQ_ONLY); anything else pending is claimed once idle for
   * staleNs (its process may have exited without close()).
   */
  l7Handover?: { handoverNs: number; staleNs: number; sweepMs: number };
}

/** Walks a native batch ([u32 len][u32 0][record][pad to 8])*, yielding each record's type byte. */
export function countTypes(batch: Buffer, into: Map<number, number>): number {
  let off = 0;
  let n = 0;
  while (off + 8 <= batch.length) {
    const len = batch.readUInt32LE(off);
    if (len === 0 || off + 8 + len > batch.length) break;
    const type = batch[off + 8]!;
    into.set(type, (into.get(type) ?? 0) + 1);
    n++;
    off += 8 + ((len + 7) & ~7);
  }
  return n;
}

/** Sums cumulative reason counters from several sources into `into`. */
function addReasons(into: Map<string, number>, from: ReadonlyMap<string, number> | undefined): void {
  if (from) for (const [k, v] of from) into.set(k, (into.get(k) ?? 0) + v);
}

/** now - prev per reason, only the reasons that moved. */
function reasonDeltas(now: ReadonlyMap<string, number>, prev: ReadonlyMap<string, number>): ReasonCount[] {
  const out: ReasonCount[] = [];
  for (const [reason, n] of now) {
    const d = n - (prev.get(reason) ?? 0);
    if (d !== 0) out.push({ reason, count: d });
  }
  return out;
}

type Emit = (topic: string, type: number, key: string, value: Buffer) => void;

export class Collector {
  readonly read = new Map<number, number>();
  readonly userDrops = new Map<number, number>();
  /** The collector's own losses by DropReason (the transcoder and the sink count theirs). */
  readonly drops = new Map<string, number>();
  undecodable = 0;
  /** Stats values clamped (see clampCount). */
  clamped = 0;
  private paused = false;
  /** scratch per-batch counts by event type id (a u8 on the wire) */
  private readonly perType = new Uint32Array(256);
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private claimTimer: NodeJS.Timeout | undefined;
  /** Pending HTTP/1 requests claimed from the kernel by the hand-over sweep (REQ_ONLY and the like). */
  l7Claimed = 0;
  /** the BPF maps' loss counters at the previous snapshot (cumulative, per reason) */
  private lastKernelLosses: KernelLossReading | null = null;
  private lastKernelCounts: KernelLossReading | null = null;
  private last: { time: bigint; read: Map<number, number>; user: Map<number, number>; produced: Map<number, number>; kernel: bigint[]; sendErrors: number; undecodable: number; drops: Map<string, number>; parse: Map<string, number>; clamped: number; sinkLost: Map<number, number> };
  private readonly opts: CollectorOptions;
  private readonly lowWater: number;
  private readonly now: () => bigint;
  private readonly errorsByKind = new Map<string, number>();
  /** This run's identity once started. */
  run: RunInfo | undefined;
  /** time_ns of the stats records handed to the sink, oldest first, until acknowledged */
  private readonly statsInFlight: bigint[] = [];
  /** stats records (type 0) the sink had acknowledged or refused, as last seen */
  private statsSettled = 0;
  private statsProduced = 0;

  constructor(opts: CollectorOptions) {
    this.opts = opts;
    this.lowWater = Math.floor(opts.highWater / 2);
    this.now = opts.wallClockNs ?? (() => BigInt(Date.now()) * 1_000_000n);
    this.last = { time: this.now(), read: new Map(), user: new Map(), produced: new Map(), kernel: [], sendErrors: 0, undecodable: 0, drops: new Map(), parse: new Map(), clamped: 0, sinkLost: new Map() };
    opts.sink.onProgress(() => {
      this.guard('resume', () => this.maybeResume());
      this.guard('stats_ack', () => this.noteStatsAcks());
    });
  }

  start(): void {
    this.last.kernel = this.opts.session.drops();
    this.lastKernelLosses = this.readKernelLosses();
    this.lastKernelCounts = this.readKernelLosses(true);
    // the run starts as its ring starts being read: the first stats record covers from here
    const startNs = this.now();
    this.last.time = startNs;
    if (this.opts.run) this.run = { ...this.opts.run, startNs };
    // a throw here would reach the addon's callback and become an uncaughtException: never let one out
    this.opts.session.start((batch) => this.guard('batch', () => this.onBatch(batch)));
    if (this.opts.statsIntervalMs > 0) {
      // one record right away: it says the run began (and where its predecessor was last known to
      // watch) without waiting an interval. It is stamped exactly startNs (interval 0): the one
      // record of a run with time_ns = run_start_ns, which is how the processor knows to read the
      // gap from it once (the next record also starts at startNs when the clock has not moved)
      if (this.opts.encodeStats) this.guard('stats', () => this.publishStats(false, startNs));
      this.timer = setInterval(() => this.guard('stats', () => this.publishStats()), this.opts.statsIntervalMs);
    }
    const h = this.opts.l7Handover;
    if (h && this.opts.session.l7Claim) this.claimTimer = setInterval(() => this.guard('l7_claim', () => this.claimL7(h)), h.sweepMs);
  }

  /**
   * One hand-over sweep. Skipped while paused (backpressure): what is
   * pending stays in the kernel's map until the sink catches up, rather than
   * being claimed only to be dropped here.
   */
  private claimL7(h: { handoverNs: number; staleNs: number }): void {
    if (this.paused || this.stopping) return;
    const batch = this.opts.session.l7Claim!(h.handoverNs, h.staleNs);
    if (batch === null) {
      // no object has the map (in-kernel parsing not loaded): nothing to sweep, ever
      clearInterval(this.claimTimer);
      this.claimTimer = undefined;
      return;
    }
    this.takeClaimed(batch);
  }

  private takeClaimed(batch: Buffer | null): void {
    if (batch === null || batch.length === 0) return;
    this.l7Claimed += countTypes(batch, new Map());
    this.onBatch(batch);
  }

  /**
   * Stats records are the sink's type 0, in one key's order: the n-th one
   * settled (acknowledged, or refused and dead-lettered: rare, stats records
   * are small) is the n-th one sent. The newest settled one is reported when
   * any was acknowledged.
   */
  private noteStatsAcks(): void {
    const c = this.opts.sink.counters;
    const produced = c.produced.get(0) ?? 0;
    const settled = produced + (c.lost?.get(0) ?? 0);
    let acked: bigint | undefined;
    while (this.statsSettled < settled && this.statsInFlight.length > 0) {
      acked = this.statsInFlight.shift()!;
      this.statsSettled++;
    }
    if (produced === this.statsProduced) acked = undefined;
    this.statsProduced = produced;
    if (acked !== undefined) this.opts.onStatsAcked?.(acked);
  }

  /** Errors caught in a callback or timer, by where they happened. */
  errors(): ReadonlyMap<string, number> {
    return this.errorsByKind;
  }

  /**
   * Runs f; a throw is counted and reported with its cause the first time for
   * its kind, then again at 10, 100, 1000... repeats, so a persistent fault
   * stays visible without a line per batch.
   */
  private guard(where: string, f: () => void): void {
    try {
      f();
    } catch (err) {
      const n = (this.errorsByKind.get(where) ?? 0) + 1;
      this.errorsByKind.set(where, n);
      if (where === 'stats') this.countDrop('stats_error', 1);
      if (n === 1 || Number.isInteger(Math.log10(n))) {
        const e = err as { stack?: string; message?: string };
        (this.opts.log ?? ((l: string) => console.error(l)))(`ringflow: collector: error in ${where} callback (${n} so far; counted, going on): ${e?.stack ?? e?.message ?? String(err)}`);
      }
    }
  }

  /**
   * Records made outside the ring (the profile signals' drains,
   * collector/profile/source.ts), handed over whole: counted as read per type
   * and given to the sink like the ring's, or, past maxPending, user-dropped
   * and counted as backpressure (there is no ring to hold them back).
   */
  emitRecords(out: OutRecord[]): void {
    this.guard('records', () => {
      if (!this.stopping && this.opts.sink.pending() >= this.opts.maxPending) {
        for (const r of out) this.userDrops.set(r.type, (this.userDrops.get(r.type) ?? 0) + 1);
        this.countDrop('backpressure', out.length);
        return;
      }
      for (const r of out) this.read.set(r.type, (this.read.get(r.type) ?? 0) + 1);
      this.opts.sink.enqueue(out);
    });
  }

  /** Records of `type` lost before they could be handed over (e.g. a profile record that could not be encoded). */
  countLost(reason: DropReason, type: number, n: number): void {
    if (n <= 0) return;
    this.userDrops.set(type, (this.userDrops.get(type) ?? 0) + n);
    this.countDrop(reason, n);
  }

  private countDrop(reason: DropReason, n: number): void {
    if (n > 0) this.drops.set(reason, (this.drops.get(reason) ?? 0) + n);
  }

  private onBatch(batch: Buffer): void {
    const { sink, transcoder } = this.opts;
    // while stopping, the ring's remaining contents are bounded by its size: take them all
    if (!this.stopping && sink.pending() >= this.opts.maxPending) {
      // already paused and still over the cap: this batch cannot be held
      this.countDrop('backpressure', countTypes(batch, this.userDrops));
      return;
    }
    const out: OutRecord[] = [];
    const perType = this.perType.fill(0);
    const emit: Emit = (topic, type, key, value) => {
      out.push({ topic, type, key, value });
      perType[type]!++;
    };
    try {
      const res = transcoder.transcodeBatch(batch, emit);
      this.undecodable += res.unknown;
    } catch (err) {
      // The transcoder guards each record it can; this is the last line: what
      // was emitted before the throw is kept, the batch's other records are
      // counted as lost (per type, as read and user-dropped) and the error reported.
      const inBatch = new Map<number, number>();
      countTypes(batch, inBatch);
      let lost = 0;
      for (const [type, n] of inBatch) {
        const l = Math.max(0, n - perType[type]!);
        if (l === 0) continue;
        lost += l;
        // like backpressure drops: user-dropped, not read (read + user_drops = what left the ring)
        this.userDrops.set(type, (this.userDrops.get(type) ?? 0) + l);
      }
      this.countDrop('transcode_error', lost);
      this.afterBatch(out);
      throw err;
    }
    this.afterBatch(out);
  }

  private afterBatch(out: OutRecord[]): void {
    const { sink } = this.opts;
    const perType = this.perType;
    for (let t = 0; t < perType.length; t++) if (perType[t]! > 0) this.read.set(t, (this.read.get(t) ?? 0) + perType[t]!);
    sink.enqueue(out);
    if (!this.paused && sink.pending() >= this.opts.highWater) {
      this.paused = true;
      this.opts.session.pause();
    }
  }

  private maybeResume(): void {
    if (this.paused && this.opts.sink.pending() <= this.lowWater) {
      this.paused = false;
      this.opts.session.resume();
    }
  }

  /** Every loss by reason, cumulative: the collector's, the transcoder's and the sink's. */
  private allDrops(): Map<string, number> {
    const m = new Map<string, number>();
    addReasons(m, this.drops);
    if (this.undecodable > 0) m.set('undecodable', this.undecodable);
    addReasons(m, this.opts.transcoder.drops);
    addReasons(m, this.opts.sink.counters.drops);
    return m;
  }

  /** Deltas since the previous snapshot; every number is a non-negative safe integer (clampCount). */
  snapshot(at?: bigint): StatsSnapshot {
    const time = at ?? this.now();
    const c = (v: number | bigint) => clampCount(v, () => this.clamped++);
    const kernel = this.opts.session.drops();
    const produced = this.opts.sink.counters.produced;
    // read but refused by the destination (dead-lettered or dropped): user drops of their type
    const sinkLost = this.opts.sink.counters.lost ?? new Map<number, number>();
    // one entry per topic: several event types can feed one (l7: capture records and exchange
    // records), and the processor takes a topic's first entry and fans a stats record out per entry
    const events: StatsEvent[] = [];
    const byTopic = new Map<string, StatsEvent>();
    for (const [type, topic] of this.opts.topics) {
      const d = (m: Map<number, number>, prev: Map<number, number>) => c((m.get(type) ?? 0) - (prev.get(type) ?? 0));
      const e: StatsEvent = {
        event: topic,
        read: d(this.read, this.last.read),
        kernel_drops: c((kernel[type] ?? 0n) - (this.last.kernel[type] ?? 0n)),
        user_drops: c(d(this.userDrops, this.last.user) + d(sinkLost, this.last.sinkLost)),
        produced: d(produced, this.last.produced),
      };
      const same = byTopic.get(topic);
      if (same === undefined) {
        byTopic.set(topic, e);
        events.push(e);
        continue;
      }
      same.read = c(same.read + e.read);
      same.kernel_drops = c(same.kernel_drops + e.kernel_drops);
      same.user_drops = c(same.user_drops + e.user_drops);
      same.produced = c(same.produced + e.produced);
    }
    const drops = this.allDrops();
    const parse = new Map(this.opts.transcoder.parseFailures ?? []);
    const snap: StatsSnapshot = {
      time_ns: time,
      interval_ns: time - this.last.time,
      events,
      send_errors: c(this.opts.sink.counters.sendErrors - this.last.sendErrors),
      pending: c(this.opts.sink.pending()),
      ring_bytes: c(this.opts.session.ringPending()),
      undecodable: c(this.undecodable - this.last.undecodable),
      drop_reasons: reasonDeltas(drops, this.last.drops).map((r) => ({ reason: r.reason, count: c(r.count) })),
      l7_parse_failures: reasonDeltas(parse, this.last.parse).map((r) => ({ reason: r.reason, count: c(r.count) })),
      clamped: 0,
      kernel_losses: [],
    };
    const losses = kernelLossDeltas(this.lastKernelLosses, this.readKernelLosses());
    this.lastKernelLosses = losses.reading;
    for (const [reason, n] of Object.entries(losses.deltas)) snap.kernel_losses.push({ reason, count: c(n) });
    const counts = kernelLossDeltas(this.lastKernelCounts, this.readKernelLosses(true));
    this.lastKernelCounts = counts.reading;
    snap.kernel_counts = Object.entries(counts.deltas).map(([reason, n]) => ({ reason, count: c(n) }));
    if (this.run) snap.run = this.run;
    if (snap.interval_ns < 0n) {
      // the wall clock stepped back: an interval cannot be negative
      this.clamped++;
      snap.interval_ns = 0n;
    }
    snap.clamped = this.clamped - this.last.clamped;
    this.last = { time, read: new Map(this.read), user: new Map(this.userDrops), produced: new Map(produced), kernel, sendErrors: this.opts.sink.counters.sendErrors, undecodable: this.undecodable, drops, parse, clamped: this.clamped, sinkLost: new Map(sinkLost) };
    return snap;
  }

  /** The BPF maps' per-reason loss counters now (cumulative), or with `counts` the non-loss ones (kernel_counts); a failed read is said once, never thrown. */
  private readKernelLosses(counts = false): KernelLossReading {
    const session = this.opts.session;
    if (!session.mapCounters) return {};
    return readKernelLosses({ mapCounters: (name) => session.mapCounters!(name) }, {
      taskFiltered: this.opts.taskFiltered ?? false,
      ...(counts ? { counters: KERNEL_COUNT_COUNTERS } : {}),
      onError: (map, err) => this.guard(counts ? 'kernel_counts' : 'kernel_losses', () => {
        throw new Error(`reading ${map}: ${(err as Error)?.message ?? String(err)}`);
      }),
    });
  }

  private publishStats(report = true, at?: bigint): void {
    const s = this.snapshot(at);
    if (report) this.opts.onStats?.(s);
    if (this.opts.encodeStats) this.enqueueStats(this.opts.encodeStats(s), s.time_ns);
  }

  private enqueueStats(r: OutRecord, timeNs: bigint): void {
    this.opts.sink.enqueue([r]);
    this.statsInFlight.push(timeNs);
  }

  /**
   * Stop: the native side drains the ring and delivers its last batches, the
   * sink flushes, a final stats record goes out. Returns false if the sink
   * could not deliver everything within flushTimeoutMs (those are counted as
   * user drops in the final stats).
   */
  async stop(flushTimeoutMs: number): Promise<{ flushed: boolean; final: StatsSnapshot }> {
    if (this.timer) clearInterval(this.timer);
    const sweeping = this.claimTimer !== undefined;
    if (this.claimTimer) clearInterval(this.claimTimer);
    this.stopping = true;
    if (this.paused) {
      this.paused = false;
      this.opts.session.resume();
    }
    // the pending map goes with the programs: what it still holds is reported (REQ_ONLY), not lost
    if (sweeping) this.guard('l7_claim', () => this.takeClaimed(this.opts.session.l7Claim!(0, 0)));
    await this.opts.session.stop();
    const finish = this.opts.transcoder.finish;
    if (finish) {
      const out: OutRecord[] = [];
      this.guard('finish', () => finish.call(this.opts.transcoder, (topic, type, key, value) => {
        out.push({ topic, type, key, value });
        this.read.set(type, (this.read.get(type) ?? 0) + 1);
      }));
      this.opts.sink.enqueue(out);
    }
    let flushed = await this.opts.sink.flush(flushTimeoutMs);
    const final = this.snapshot();
    if (!flushed) {
      // what the sink still holds dies with this process: count it, per type, as user drops
      const produced = this.opts.sink.counters.produced;
      let lostAll = 0;
      for (const [type, topic] of this.opts.topics) {
        const lost = (this.read.get(type) ?? 0) - (produced.get(type) ?? 0) - (this.opts.sink.counters.lost?.get(type) ?? 0);
        const e = final.events.find((x) => x.event === topic);
        if (e && lost > 0) {
          e.user_drops += lost;
          lostAll += lost;
        }
      }
      if (lostAll > 0) final.drop_reasons.push({ reason: 'unacknowledged_at_stop', count: lostAll });
    }
    this.guard('stats', () => this.opts.onStats?.(final));
    if (this.opts.encodeStats) {
      const enc = this.opts.encodeStats;
      this.guard('stats', () => this.enqueueStats(enc(final), final.time_ns));
      flushed = (await this.opts.sink.flush(Math.min(flushTimeoutMs, 5000))) && flushed;
    }
    return { flushed, final };
  }
}
