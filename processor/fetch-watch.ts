/**
 * What a stage's idle clock may conclude from a partition's silence, given
 * when its consumer's fetches last answered (soak finding 5).
 *
 * A quiet partition is closed (stage 2) or timed out (spans stage) by the
 * processing clock, on the grounds that nothing older is on its way. That
 * holds only while the stage can read: with the broker away, the collectors
 * hold their records and send them once it is back, after their own back-off
 * (up to IDLE_GRACE), with their true (older) event times. So:
 *   - no fetch answered for gapMs: the broker is away, silence means nothing
 *     (quietFrom is null);
 *   - once fetches answer again, silence counts only from graceMs after the
 *     first answer (the producers' back-off), not from the last record read;
 *   - and the clock never runs past what an answered fetch vouches for
 *     (vouchedUntil): kafkajs answers even an empty fetch within its
 *     maxWaitTimeInMs (5 s), so a fetch answered at F has shown what reached
 *     the broker until about F. Without this, the first gapMs of an outage
 *     (10 s) still advanced the clock to now - grace and closed the windows of
 *     records the collectors were already holding (lateness < 5 s: the soak's 3 s).
 *
 * Pure: fed by kafkajs's consumer FETCH event (answered) and asked with a
 * clock reading; times are ms of one clock (Date.now in the stages, so they
 * compare with the stages' lastEventAt).
 */
import { IDLE_GRACE_NS } from './partition.ts';

/** No fetch answered for this long: the broker is away (kafkajs answers even an empty fetch within its maxWaitTimeInMs, 5 s). */
export const FETCH_GAP_MS = 10_000;
/** kafkajs's maxWaitTimeInMs (the stages leave it at its default): the longest an answered fetch leaves unseen. */
export const FETCH_MAX_WAIT_MS = 5_000;
export const IDLE_GRACE_MS = Number(IDLE_GRACE_NS / 1_000_000n);

export interface FetchWatchOptions {
  gapMs?: number;
  graceMs?: number;
  maxWaitMs?: number;
}

export class FetchWatch {
  readonly gapMs: number;
  readonly graceMs: number;
  readonly maxWaitMs: number;
  /** When a fetch last answered (-Infinity: none yet). */
  private answeredAt = -Infinity;
  /** When fetches began to answer without a gap of gapMs. */
  private since = -Infinity;

  constructor(opts: FetchWatchOptions = {}) {
    this.gapMs = opts.gapMs ?? FETCH_GAP_MS;
    this.graceMs = opts.graceMs ?? IDLE_GRACE_MS;
    this.maxWaitMs = opts.maxWaitMs ?? FETCH_MAX_WAIT_MS;
  }

  /** A fetch answered at `now` (kafkajs's consumer.events.FETCH). */
  answered(now: number): void {
    if (!(now - this.answeredAt <= this.gapMs)) this.since = now;
    // a clock stepped back must not move the last answer back (it would open a gap)
    if (now > this.answeredAt) this.answeredAt = now;
  }

  /** True while fetches answer (none missed for gapMs). */
  answering(now: number): boolean {
    return now - this.answeredAt <= this.gapMs;
  }

  /**
   * From when a partition's silence is evidence that nothing older is on its
   * way: graceMs after fetches began to answer again; null while they go
   * unanswered (or before the first).
   */
  quietFrom(now: number): number | null {
    return this.answering(now) ? this.since + this.graceMs : null;
  }

  /**
   * Whether a partition whose last record was read at `lastEventAt` has been
   * quiet for `quietMs` of time in which it could have received one.
   */
  quiet(now: number, lastEventAt: number, quietMs: number): boolean {
    const from = this.quietFrom(now);
    return from !== null && now - Math.max(lastEventAt, from) >= quietMs;
  }

  /**
   * The latest processing time the idle clock may use at `now`: what the
   * last answered fetch vouches for (its answer + maxWaitMs), and never
   * beyond now. Only meaningful where quietFrom is not null.
   */
  vouchedUntil(now: number): number {
    return Math.min(now, this.answeredAt + this.maxWaitMs);
  }
}
