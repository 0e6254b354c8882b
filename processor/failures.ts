/**
 * How a processor stage's long-running loops (commit timers, idle ticks,
 * batch handlers) treat a failure: as data. Each kind of failure is said once
 * with its cause, then counted (and said again at 10, 100, 1000, ...
 * occurrences, so a recurring fault stays visible without a line per tick);
 * the next success of that kind says it recovered. When the same kind keeps
 * failing past `persistMs` with no success between, the stage cannot do its
 * job: `onFatal` gets a FatalError, the service exits non-zero and a
 * supervisor restarts it (a fresh process reconnects and re-reads from the
 * last commit, which in-process retries may not get right).
 */
import { FatalError } from '../common/errors.ts';
import { describeKafkaError } from '../kafka/client.ts';

/** A failure that has lasted this long with no success between is escalated (default). */
export const DEFAULT_FAILURE_PERSIST_MS = 60_000;

interface Streak {
  since: number;
  count: number;
  last: string;
}

export class FailureReporter {
  /** Failures per kind since the start (never reset). */
  readonly counts: Record<string, number> = {};
  private readonly streaks = new Map<string, Streak>();
  private escalated = false;
  private readonly what: string;
  private readonly log: (l: string) => void;
  private readonly onFatal: ((err: FatalError) => void) | undefined;
  private readonly persistMs: number;
  private readonly now: () => number;

  constructor(o: { what: string; log: (l: string) => void; onFatal?: (err: FatalError) => void; persistMs?: number; now?: () => number }) {
    this.what = o.what;
    this.log = o.log;
    this.onFatal = o.onFatal;
    this.persistMs = o.persistMs ?? DEFAULT_FAILURE_PERSIST_MS;
    this.now = o.now ?? Date.now;
  }

  /** One failure of `kind` (e.g. 'commit', 'idle advance'). */
  failed(kind: string, err: unknown): void {
    const cause = describeKafkaError(err);
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    const t = this.now();
    let s = this.streaks.get(kind);
    if (!s) this.streaks.set(kind, (s = { since: t, count: 0, last: cause }));
    s.count++;
    const changed = s.last !== cause;
    s.last = cause;
    const n = this.counts[kind];
    if (s.count === 1 || changed || isPowerOf10(n)) this.log(`${this.what}: ${kind} failed (${cause})${n > 1 ? `; ${n} times so far` : ''}; will retry`);
    if (!this.escalated && t - s.since >= this.persistMs && this.onFatal) {
      this.escalated = true;
      this.onFatal(new FatalError(`${this.what}: ${kind} has failed ${s.count} times over ${Math.round((t - s.since) / 1000)} s (last: ${cause}); exiting so that a restart re-reads from the last commit`, { cause: err }));
    }
  }

  /** `kind` succeeded: its failures, if any, are over. */
  ok(kind: string): void {
    const s = this.streaks.get(kind);
    if (!s) return;
    this.streaks.delete(kind);
    this.log(`${this.what}: ${kind} works again after ${s.count} failure${s.count === 1 ? '' : 's'} over ${Math.round((this.now() - s.since) / 1000)} s`);
  }

  /** A failure there is no next time for (the final flush at stop): said with what it leaves behind. */
  final(kind: string, err: unknown, consequence: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.log(`${this.what}: ${kind} failed (${describeKafkaError(err)}); ${consequence}`);
  }
}

function isPowerOf10(n: number): boolean {
  if (n < 10) return false;
  while (n % 10 === 0) n /= 10;
  return n === 1;
}
