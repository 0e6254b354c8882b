/**
 * Logging a kind of fault once, without hiding it forever and without
 * growing without bound.
 *
 * The exporter used to keep every fault message it had logged in a Set: the
 * Set grew with every distinct message (they carry offsets, reasons, backend
 * text), and a fault that recurred for hours was said once, at its first
 * occurrence, and never again. Here a kind is logged the first time, then at
 * most once per `repeatMs` with how many times it happened since; at most
 * `maxKinds` kinds are remembered (the least recently seen is forgotten first,
 * so a forgotten kind is at worst logged again, never hidden).
 */
export interface LogOnce {
  /** Logs `line` the first time `kind` is seen, then at most once per repeatMs with the count since. */
  (kind: string, line: string): void;
  /** Kinds remembered now (bounded by maxKinds). */
  readonly size: number;
}

export interface LogOnceOptions {
  /** Default 60 s. */
  repeatMs?: number;
  /** Default 256. */
  maxKinds?: number;
  /** Milliseconds clock (tests). */
  now?: () => number;
}

export function createLogOnce(log: (line: string) => void, opts: LogOnceOptions = {}): LogOnce {
  const repeatMs = opts.repeatMs ?? 60_000;
  const maxKinds = opts.maxKinds ?? 256;
  const now = opts.now ?? Date.now;
  /** kind -> when last logged, occurrences not logged since */
  const seen = new Map<string, { at: number; since: number }>();
  const fn = ((kind: string, line: string) => {
    const t = now();
    const s = seen.get(kind);
    if (s) {
      seen.delete(kind); // re-inserted below: Map order is the recency order
      if (t - s.at < repeatMs) {
        s.since++;
        seen.set(kind, s);
        return;
      }
      log(`${line} (${s.since + 1} times in the last ${Math.round((t - s.at) / 1000)}s)`);
      seen.set(kind, { at: t, since: 0 });
      return;
    }
    log(line);
    seen.set(kind, { at: t, since: 0 });
    if (seen.size > maxKinds) seen.delete(seen.keys().next().value!);
  }) as LogOnce;
  Object.defineProperty(fn, 'size', { get: () => seen.size });
  return fn;
}
