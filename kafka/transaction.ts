/**
 * One step of a Kafka transaction tried again, inside the same transaction,
 * when the transaction coordinator says "not now" rather than "no".
 *
 * Why: the coordinator answers CONCURRENT_TRANSACTIONS while it is still
 * completing our previous transaction (state PrepareCommit: its markers are
 * being written to every partition it touched). Kafka's Java producer
 * re-enqueues the request after a short backoff (TransactionManager:
 * AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn). kafkajs 2.2.4
 * retries it only where the request sits inside its send retrier
 * (AddPartitionsToTxn); its sendOffsets sends AddOffsetsToTxn once and throws.
 * So a transaction that carries offsets only (nothing sent before them),
 * begun right after a commit, fails at once: on a real broker, 10 of 25 such
 * transactions back to back with a bare kafkajs producer (14 of 25 after a
 * broker restart; the stage's case: test/integration/spans-tx-retry.test.ts),
 * and after a broker restart the spans stage's backlog makes exactly such
 * transactions one after the other (soak, test/soak/README.md). A stage that
 * takes this for a failure aborts, drops its state and re-reads: work thrown
 * away, and the failures feed the escalation counter.
 *
 * The coordinator moving or still loading (NOT_COORDINATOR,
 * COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, as right after a
 * broker restart) is retried too: kafkajs looks the coordinator up again on
 * every call. Anything else, and these past `maxMs`, is thrown as it came:
 * the caller's abort path.
 *
 * Not for commit(): kafkajs moves its state to COMMITTING before it sends
 * EndTxn, and a failed commit() cannot be called again (the stage's producer
 * is replaced instead, processor/stage-clients.ts TxProducer).
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Protocol errors that mean "ask again shortly", not "this transaction failed". */
export const TX_RETRIABLE_TYPES: ReadonlySet<string> = new Set([
  'CONCURRENT_TRANSACTIONS',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR',
  // what kafkajs 2.2.4 calls codes 14, 15, 16 (the names above are the Java client's):
  // without these a coordinator moving was never retried, only aborted
  'GROUP_LOAD_IN_PROGRESS',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR_FOR_GROUP',
]);

/**
 * The retriable protocol error type of `err`, or null. kafkajs wraps an
 * error that exhausted its own retries (KafkaJSNumberOfRetriesExceeded,
 * KafkaJSNonRetriableError) and keeps the original as `cause`: the chain is
 * walked. Fencing is never retriable, whatever it is wrapped in.
 */
export function txRetriableType(err: unknown): string | null {
  let found: string | null = null;
  const seen = new Set<unknown>();
  for (let e = err as { type?: unknown; cause?: unknown } | null | undefined; e && typeof e === 'object' && !seen.has(e); e = e.cause as typeof e) {
    seen.add(e);
    const type = typeof e.type === 'string' ? e.type : undefined;
    if (type === 'INVALID_PRODUCER_EPOCH' || type === 'PRODUCER_FENCED' || type === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED') return null;
    if (type !== undefined && TX_RETRIABLE_TYPES.has(type)) found ??= type;
  }
  return found;
}

export interface TxRetryOptions {
  /** Give up (throw the last error) once this much time has gone by (default 15 s). */
  maxMs?: number;
  /** First wait (default 20 ms, as the Java producer's for CONCURRENT_TRANSACTIONS); doubles up to 500 ms. */
  firstWaitMs?: number;
  /** Called before each wait with the error's type: for a counter. */
  onRetry?: (type: string) => void;
  /** For tests. */
  now?: () => number;
  sleep?: (ms: number) => Promise<unknown>;
}

/** Runs `step`, and runs it again after a short backoff while it fails with a retriable coordinator error (txRetriableType). */
export async function retryTxStep<T>(step: () => Promise<T>, opts: TxRetryOptions = {}): Promise<T> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => delay(ms));
  const until = now() + (opts.maxMs ?? 15_000);
  let wait = opts.firstWaitMs ?? 20;
  for (;;) {
    try {
      return await step();
    } catch (err) {
      const type = txRetriableType(err);
      if (type === null || now() + wait > until) throw err;
      opts.onRetry?.(type);
      await sleep(wait);
      wait = Math.min(wait * 2, 500);
    }
  }
}
