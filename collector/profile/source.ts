/**
 * The profile signals' records (issue 11): every interval, each loaded map
 * set is drained (native Session.profileDrain: the counts the kernel
 * aggregated since the last drain, each exactly once), decoded (drain.ts),
 * turned into ringflow.profile.stacks.v1 records (records.ts, frames named
 * by collector/symbols) and handed to the collector, which counts them as
 * read and gives them to the sink like the ring's records.
 *
 *   kernel counts ──profileDrain (every intervalMs)──▶ decode ──▶ build + symbolize ──▶ Avro ──▶ Collector.emitRecords
 *
 * Failure: a drain that throws leaves its counts in the kernel (nothing was
 * deleted before the read, or the read was whole): the next interval takes
 * them. Each failure is counted per map set and said with its cause the first
 * time, then at 10, 100, ... repeats; a record that cannot be built or encoded
 * is counted (profile_encode_error) and the others go on.
 */
import { encodeRecord, schemaRegistry, type RegisteredSchema } from '../../schemas/index.ts';
import type { OutRecord } from '../sink.ts';
import { decodeProfileDrain } from './drain.ts';
import { buildStackRecords, type Symbolize } from './records.ts';

export const PROFILE_TOPIC = 'ringflow.profile.stacks.v1';
/**
 * The per-type accounting id of profile records (stats read/produced/user
 * drops): never a ring record type, which are below RF_EV_MAX (16).
 */
export const PROFILE_RECORD_TYPE = 32;
/** The perf_event program of bpf/profile.bpf.c, attached per CPU by the caller. */
export const PROFILE_PROGRAM = 'rf_prof_sample';
/** Map set prefixes (bpf/prof_maps.bpf.h) per signal. */
export const PROFILE_PREFIX: Readonly<Record<string, string>> = { profile: 'rf_prof', offcpu: 'rf_offcpu' };

/**
 * 19 Hz: the OpenTelemetry eBPF profiler's and Parca agent's default. A prime
 * off the beat of the 10 ms, 100 Hz and 1 kHz timers programs run on, so
 * sampling does not lock onto their phase; low enough that the interrupt and
 * stack walk cost well under 1 % of a CPU (issue 11's ceiling).
 */
export const DEFAULT_PROFILE_HZ = 19;
export const DEFAULT_PROFILE_INTERVAL_MS = 10_000;
export const DEFAULT_OFFCPU_MIN_NS = 1_000_000n;
/**
 * Drains per stack epoch (bpf/events.h), per signal. On-CPU stacks are read
 * at the drain after they were taken: one. An off-CPU block keeps its stack
 * if it ends before the epoch after the one it began in, so at least 6
 * intervals (60 s at the default 10 s); longer ones are reported without
 * stacks and counted (offcpu_expired). More drains per epoch keep more
 * stacks in a map at once (more collisions, counted).
 */
export const STACK_EPOCH_DRAINS: Readonly<Record<string, number>> = { profile: 1, offcpu: 6 };

export interface DrainingSession {
  profileDrain(prefix: string, opts?: { stackEpochDrains?: number }): { generation: bigint; counts: Buffer; stacks: Buffer; comms: Buffer };
}

export interface ProfileSourceOptions {
  session: DrainingSession;
  /** signals to drain: 'profile' and/or 'offcpu' */
  signals: readonly string[];
  intervalMs: number;
  sampleHz: number;
  host: string;
  bootTimeNs: bigint;
  symbolize: Symbolize;
  processName: (tgid: number) => string;
  emit: (records: OutRecord[]) => void;
  /** records that could not be built or encoded (Collector.countLost 'profile_encode_error') */
  onLost?: (n: number) => void;
  log: (line: string) => void;
  /**
   * Re-attaches the on-CPU program (native Session.attachPerfEvent called
   * again): CPUs online now without a running perf event (hot-plugged after
   * the start, or offline and back) are attached; returns how many. Called
   * before each drain when the profile signal runs.
   */
  reattach?: () => number;
  /** CLOCK_MONOTONIC ns (the kernel's bpf_ktime_get_ns clock); default process.hrtime.bigint */
  monotonicNs?: () => bigint;
}

export class ProfileSource {
  /** drains done, per signal */
  readonly drains = new Map<string, number>();
  /** drain failures, per signal */
  readonly failures = new Map<string, number>();
  records = 0;
  encodeErrors = 0;
  /** stack or count buffers the decoder found cut */
  malformed = 0;
  /** CPUs attached after the start (reattach): hot-plugged, or back online */
  cpusAttachedLate = 0;
  /** reattach calls that threw */
  reattachFailures = 0;
  private readonly opts: ProfileSourceOptions;
  private readonly schema: RegisteredSchema;
  private readonly windowStart = new Map<string, bigint>();
  private readonly now: () => bigint;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: ProfileSourceOptions) {
    this.opts = opts;
    this.now = opts.monotonicNs ?? (() => process.hrtime.bigint());
    const s = schemaRegistry().byTopic(PROFILE_TOPIC);
    if (!s) throw new Error(`schema for ${PROFILE_TOPIC} missing from schemas/`);
    this.schema = s;
  }

  start(): void {
    const t = this.now();
    for (const s of this.opts.signals) this.windowStart.set(s, t);
    this.timer = setInterval(() => this.drainAll(), this.opts.intervalMs);
  }

  /** The last drain (before the session stops: its maps go with it). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.drainAll();
  }

  /** One drain of every signal; never throws. */
  drainAll(): void {
    if (this.opts.reattach && this.opts.signals.includes('profile')) this.reattach(this.opts.reattach);
    for (const signal of this.opts.signals) {
      const prefix = PROFILE_PREFIX[signal];
      if (!prefix) continue;
      try {
        this.drainOne(signal, prefix);
      } catch (err) {
        const n = (this.failures.get(signal) ?? 0) + 1;
        this.failures.set(signal, n);
        if (n === 1 || Number.isInteger(Math.log10(n))) {
          const e = err as { message?: string };
          this.opts.log(`ringflow: ${signal}: drain failed (${n} so far; its counts stay in the kernel for the next one): ${e?.message ?? String(err)}`);
        }
      }
    }
  }

  /**
   * A CPU that came online after the start has no perf event, and one that
   * went offline lost its own for good: without this its samples would be
   * missing without a word. Each such CPU is said once, when attached.
   */
  private reattach(attach: () => number): void {
    try {
      const n = attach();
      if (n > 0) {
        this.cpusAttachedLate += n;
        this.opts.log(`ringflow: profile: ${n} CPU(s) online without a running perf event (hot-plugged or back online) now sampled (${this.cpusAttachedLate} so far); their samples since they came online until now are missing`);
      }
    } catch (err) {
      this.reattachFailures++;
      if (this.reattachFailures === 1 || Number.isInteger(Math.log10(this.reattachFailures))) {
        this.opts.log(`ringflow: profile: re-attaching hot-plugged CPUs failed (${this.reattachFailures} so far; the CPUs attached keep sampling): ${(err as Error)?.message ?? String(err)}`);
      }
    }
  }

  private drainOne(signal: string, prefix: string): void {
    const raw = this.opts.session.profileDrain(prefix, { stackEpochDrains: STACK_EPOCH_DRAINS[signal] ?? 1 });
    const end = this.now();
    const start = this.windowStart.get(signal) ?? end;
    this.windowStart.set(signal, end);
    this.drains.set(signal, (this.drains.get(signal) ?? 0) + 1);
    const d = decodeProfileDrain(raw);
    this.malformed += d.malformed;
    const recs = buildStackRecords(d, {
      windowStartNs: start,
      windowEndNs: end,
      sampleHz: this.opts.sampleHz,
      processName: this.opts.processName,
      symbolize: this.opts.symbolize,
    });
    const out: OutRecord[] = [];
    const prefixKey = `${this.opts.host}/`;
    for (const r of recs) {
      try {
        const value = encodeRecord(this.schema, { ...r, host: this.opts.host, boot_time_ns: this.opts.bootTimeNs });
        out.push({ topic: PROFILE_TOPIC, key: prefixKey + r.tgid, value, type: PROFILE_RECORD_TYPE });
      } catch (err) {
        this.encodeErrors++;
        this.opts.onLost?.(1);
        if (this.encodeErrors === 1 || Number.isInteger(Math.log10(this.encodeErrors))) {
          this.opts.log(`ringflow: ${signal}: a stack record could not be encoded (${this.encodeErrors} so far; counted, going on): ${(err as Error)?.message ?? String(err)}`);
        }
      }
    }
    this.records += out.length;
    if (out.length > 0) this.opts.emit(out);
  }
}
