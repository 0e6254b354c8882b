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
 */
import type { EventSink, OutRecord } from './sink.ts';

export interface SessionLike {
  start(onBatch: (batch: Buffer) => void): void;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  drops(): bigint[];
  /** Bytes written to the ring and not yet consumed. */
  ringPending(): number;
}

export interface TranscoderLike {
  /** Calls emit once per decodable record; returns how many records the batch held that it could not decode. */
  transcodeBatch(batch: Buffer, emit: (topic: string, type: number, key: string, value: Buffer) => void): { records: number; unknown: number };
  /** Once the ring is drained on stop: emit what per-connection state still holds (L7 messages a close would have completed). */
  finish?(emit: (topic: string, type: number, key: string, value: Buffer) => void): void;
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

export class Collector {
  readonly read = new Map<number, number>();
  readonly userDrops = new Map<number, number>();
  undecodable = 0;
  private paused = false;
  /** scratch per-batch counts by event type id (a u8 on the wire) */
  private readonly perType = new Uint32Array(256);
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private last: { time: bigint; read: Map<number, number>; user: Map<number, number>; produced: Map<number, number>; kernel: bigint[]; sendErrors: number; undecodable: number };
  private readonly opts: CollectorOptions;
  private readonly lowWater: number;
  private readonly now: () => bigint;

  constructor(opts: CollectorOptions) {
    this.opts = opts;
    this.lowWater = Math.floor(opts.highWater / 2);
    this.now = opts.wallClockNs ?? (() => BigInt(Date.now()) * 1_000_000n);
    this.last = { time: this.now(), read: new Map(), user: new Map(), produced: new Map(), kernel: [], sendErrors: 0, undecodable: 0 };
    opts.sink.onProgress(() => this.maybeResume());
  }

  start(): void {
    this.last.kernel = this.opts.session.drops();
    this.opts.session.start((batch) => this.onBatch(batch));
    if (this.opts.statsIntervalMs > 0) {
      this.timer = setInterval(() => this.publishStats(), this.opts.statsIntervalMs);
    }
  }

  private onBatch(batch: Buffer): void {
    const { sink, transcoder } = this.opts;
    // while stopping, the ring's remaining contents are bounded by its size: take them all
    if (!this.stopping && sink.pending() >= this.opts.maxPending) {
      // already paused and still over the cap: this batch cannot be held
      countTypes(batch, this.userDrops);
      return;
    }
    const out: OutRecord[] = [];
    const perType = this.perType.fill(0);
    const res = transcoder.transcodeBatch(batch, (topic, type, key, value) => {
      out.push({ topic, type, key, value });
      perType[type]!++;
    });
    for (let t = 0; t < perType.length; t++) if (perType[t]! > 0) this.read.set(t, (this.read.get(t) ?? 0) + perType[t]!);
    this.undecodable += res.unknown;
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

  /** Deltas since the previous snapshot. */
  snapshot(): StatsSnapshot {
    const time = this.now();
    const kernel = this.opts.session.drops();
    const produced = this.opts.sink.counters.produced;
    const events: StatsEvent[] = [];
    for (const [type, topic] of this.opts.topics) {
      const d = (m: Map<number, number>, prev: Map<number, number>) => (m.get(type) ?? 0) - (prev.get(type) ?? 0);
      events.push({
        event: topic,
        read: d(this.read, this.last.read),
        kernel_drops: Number((kernel[type] ?? 0n) - (this.last.kernel[type] ?? 0n)),
        user_drops: d(this.userDrops, this.last.user),
        produced: d(produced, this.last.produced),
      });
    }
    const snap: StatsSnapshot = {
      time_ns: time,
      interval_ns: time - this.last.time,
      events,
      send_errors: this.opts.sink.counters.sendErrors - this.last.sendErrors,
      pending: this.opts.sink.pending(),
      ring_bytes: this.opts.session.ringPending(),
      undecodable: this.undecodable - this.last.undecodable,
    };
    this.last = { time, read: new Map(this.read), user: new Map(this.userDrops), produced: new Map(produced), kernel, sendErrors: this.opts.sink.counters.sendErrors, undecodable: this.undecodable };
    return snap;
  }

  private publishStats(): void {
    const s = this.snapshot();
    this.opts.onStats?.(s);
    if (this.opts.encodeStats) this.opts.sink.enqueue([this.opts.encodeStats(s)]);
  }

  /**
   * Stop: the native side drains the ring and delivers its last batches, the
   * sink flushes, a final stats record goes out. Returns false if the sink
   * could not deliver everything within flushTimeoutMs (those are counted as
   * user drops in the final stats).
   */
  async stop(flushTimeoutMs: number): Promise<{ flushed: boolean; final: StatsSnapshot }> {
    if (this.timer) clearInterval(this.timer);
    this.stopping = true;
    if (this.paused) {
      this.paused = false;
      this.opts.session.resume();
    }
    await this.opts.session.stop();
    if (this.opts.transcoder.finish) {
      const out: OutRecord[] = [];
      this.opts.transcoder.finish((topic, type, key, value) => {
        out.push({ topic, type, key, value });
        this.read.set(type, (this.read.get(type) ?? 0) + 1);
      });
      this.opts.sink.enqueue(out);
    }
    let flushed = await this.opts.sink.flush(flushTimeoutMs);
    const final = this.snapshot();
    if (!flushed) {
      // what is still pending is lost with this process: say so in the last record
      // what the sink still holds dies with this process: count it, per type, as user drops
      const produced = this.opts.sink.counters.produced;
      for (const [type, topic] of this.opts.topics) {
        const lost = (this.read.get(type) ?? 0) - (produced.get(type) ?? 0);
        const e = final.events.find((x) => x.event === topic);
        if (e && lost > 0) e.user_drops += lost;
      }
    }
    this.opts.onStats?.(final);
    if (this.opts.encodeStats) {
      this.opts.sink.enqueue([this.opts.encodeStats(final)]);
      flushed = (await this.opts.sink.flush(Math.min(flushTimeoutMs, 5000))) && flushed;
    }
    return { flushed, final };
  }
}
