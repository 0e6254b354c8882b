/**
 * Tumbling event-time windows and the watermark of one partition.
 *
 * Times are wall-clock ns since the Unix epoch as BigInt (boot_time_ns +
 * ts_ns exceeds 2^53); windows are [startNs, endNs) with startNs a multiple of
 * the size. The watermark is `max(event time seen, idle wall time) - lateness`:
 * a window is closed once `endNs <= watermark`, and an event whose window is
 * closed is late (observe() returns null): the caller counts it, never merges it.
 *
 * Closing depends only on the order of events, not on when advance() is
 * called: an event is judged against the watermark including every event
 * observed before it. So replaying a partition from the same offset (and the
 * same restored state) assigns and rejects exactly the same events, which is
 * what an exactly-once restart needs. advanceTo() is the one exception (see it).
 */

export interface Window {
  readonly startNs: bigint;
  readonly endNs: bigint;
}

export interface WindowAssignerOptions {
  /** Window length; default 10 s. */
  sizeMs?: number;
  /** Allowed lateness: how far behind the newest event an event may be; default 5 s. */
  latenessMs?: number;
}

/** JSON-safe snapshot of a WindowAssigner (BigInts as decimal strings). */
export interface WindowAssignerState {
  sizeNs: string;
  latenessNs: string;
  /** Largest event time observed, or null. */
  maxEventNs: string | null;
  /** max(maxEventNs, largest idle wall time): watermark = horizonNs - latenessNs. */
  horizonNs: string | null;
  /** Starts of the windows observed and not yet returned by advance(). */
  open: string[];
}

interface OpenWindow extends Window {
  /** endNs + lateness: closed once the horizon reaches it. */
  readonly closeAtNs: bigint;
}

export const DEFAULT_WINDOW_MS = 10_000;
export const DEFAULT_LATENESS_MS = 5_000;

function msToNs(ms: number, what: string): bigint {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`${what} must be an integer number of ms >= 0, got ${ms}`);
  return BigInt(ms) * 1_000_000n;
}

export class WindowAssigner {
  readonly sizeNs: bigint;
  readonly latenessNs: bigint;
  private maxEvent: bigint | null = null;
  private horizon: bigint | null = null;
  /** Observed windows not yet returned by advance(), ascending by start. */
  private open: OpenWindow[] = [];

  constructor(opts: WindowAssignerOptions = {}) {
    this.sizeNs = msToNs(opts.sizeMs ?? DEFAULT_WINDOW_MS, 'sizeMs');
    this.latenessNs = msToNs(opts.latenessMs ?? DEFAULT_LATENESS_MS, 'latenessMs');
    if (this.sizeNs === 0n) throw new RangeError('sizeMs must be > 0');
  }

  /** Watermark: max(event time seen, idle wall time) - lateness; null before anything. */
  get watermarkNs(): bigint | null {
    return this.horizon === null ? null : this.horizon - this.latenessNs;
  }

  get maxEventNs(): bigint | null {
    return this.maxEvent;
  }

  /** The window [start, start + size) holding `eventNs`. */
  windowOf(eventNs: bigint): Window {
    const r = eventNs % this.sizeNs;
    const startNs = eventNs - (r < 0n ? r + this.sizeNs : r);
    return { startNs, endNs: startNs + this.sizeNs };
  }

  /**
   * Assigns an event: its (shared, open) window, or null when that window is
   * already closed (the event is late). Advances the watermark.
   */
  observe(eventNs: bigint): Window | null {
    if (this.maxEvent === null || eventNs > this.maxEvent) this.maxEvent = eventNs;
    if (this.horizon === null || eventNs > this.horizon) this.horizon = eventNs;
    const open = this.open;
    // newest first: in-order streams hit the last window
    for (let i = open.length - 1; i >= 0; i--) {
      const w = open[i]!;
      if (eventNs >= w.startNs) {
        if (eventNs < w.endNs) return w.closeAtNs <= this.horizon ? null : w;
        break;
      }
    }
    const { startNs, endNs } = this.windowOf(eventNs);
    if (endNs + this.latenessNs <= this.horizon) return null;
    return this.intern(startNs);
  }

  /**
   * The oldest window that is not closed: the one holding the watermark,
   * registered as open so advance() returns it. Late events are counted
   * there. Throws before any event or advanceTo().
   */
  oldestOpen(): Window {
    const wm = this.watermarkNs;
    if (wm === null) throw new Error('no watermark yet');
    return this.intern(this.windowOf(wm).startNs);
  }

  /** Windows observed so far and not yet closed-and-returned, ascending. */
  openWindows(): readonly Window[] {
    return this.open;
  }

  /** Whether a window ending at `endNs` is closed under the current watermark. */
  isClosed(endNs: bigint): boolean {
    return this.horizon !== null && endNs + this.latenessNs <= this.horizon;
  }

  /**
   * Returns, ascending, the observed windows that the watermark has closed
   * since the last call (endNs <= watermark), and forgets them.
   */
  advance(): Window[] {
    const h = this.horizon;
    if (h === null) return [];
    let n = 0;
    while (n < this.open.length && this.open[n]!.closeAtNs <= h) n++;
    return n === 0 ? [] : this.open.splice(0, n);
  }

  /**
   * Idle advance: moves the horizon to at least `wallNs` (the processing-time
   * clock, ns since the epoch), so the watermark becomes at least
   * `wallNs - lateness`, then advance(). For a partition that has gone quiet:
   * without it its last windows would wait for the next event forever.
   *
   * Caveats: it trusts the processor's clock against the collectors' (a
   * collector whose clock lags by more than the lateness will see its events
   * counted late), and it makes the result depend on when it is called, not
   * only on the events: call it only after a partition has been idle for a
   * while, and record the resulting watermark (state()) with the output it
   * produced so a restart continues from it rather than re-deciding.
   */
  advanceTo(wallNs: bigint): Window[] {
    if (this.horizon === null || wallNs > this.horizon) this.horizon = wallNs;
    return this.advance();
  }

  state(): WindowAssignerState {
    return {
      sizeNs: String(this.sizeNs),
      latenessNs: String(this.latenessNs),
      maxEventNs: this.maxEvent === null ? null : String(this.maxEvent),
      horizonNs: this.horizon === null ? null : String(this.horizon),
      open: this.open.map((w) => String(w.startNs)),
    };
  }

  static restore(s: WindowAssignerState): WindowAssigner {
    const sizeNs = BigInt(s.sizeNs);
    const latenessNs = BigInt(s.latenessNs);
    if (sizeNs % 1_000_000n !== 0n || latenessNs % 1_000_000n !== 0n) throw new RangeError('window state: size and lateness must be whole ms');
    const a = new WindowAssigner({ sizeMs: Number(sizeNs / 1_000_000n), latenessMs: Number(latenessNs / 1_000_000n) });
    a.maxEvent = s.maxEventNs === null ? null : BigInt(s.maxEventNs);
    a.horizon = s.horizonNs === null ? null : BigInt(s.horizonNs);
    for (const start of s.open) {
      const st = BigInt(start);
      if (a.windowOf(st).startNs !== st) throw new RangeError(`window state: ${start} is not a window start`);
      a.intern(st);
    }
    return a;
  }

  /** The open window starting at `startNs`, created (in order) if missing. */
  private intern(startNs: bigint): OpenWindow {
    const open = this.open;
    let i = open.length;
    while (i > 0 && open[i - 1]!.startNs >= startNs) {
      if (open[i - 1]!.startNs === startNs) return open[i - 1]!;
      i--;
    }
    const endNs = startNs + this.sizeNs;
    const w: OpenWindow = { startNs, endNs, closeAtNs: endNs + this.latenessNs };
    open.splice(i, 0, w);
    return w;
  }
}
