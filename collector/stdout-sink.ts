/**
 * `--stdout`: decoded events as JSON lines, one per event, as bcc tools print
 * them. It honours the stream's backpressure like the Kafka sink honours acks.
 *
 * Failure: a record that cannot be printed is counted (format_error) and
 * skipped, the rest of its batch printed. When the stream fails (EPIPE once
 * the reader of a pipe is gone, a full disk), the error is reported once
 * through onError and every later record is counted as output_error: nothing
 * more can be written, and an 'error' event with no listener would end the
 * process.
 */
import type { Writable } from 'node:stream';
import type { EventSink, OutRecord, SinkCounters } from './sink.ts';
import type { DropReason } from './collector.ts';

export interface StdoutSinkOptions {
  /** The stream failed: nothing more will be written. Called once. */
  onError?: (err: Error) => void;
  /** A record that could not be printed (once per run; the rest are counted). */
  log?: (line: string) => void;
}

export function createStdoutSink(out: Writable, toLine: (r: OutRecord) => string, opts: StdoutSinkOptions = {}): EventSink {
  const counters: SinkCounters & { drops: Map<string, number>; lost: Map<number, number> } = { produced: new Map(), sendErrors: 0, drops: new Map(), lost: new Map() };
  let blocked = 0; // records written while the stream reported it was full
  let failed: Error | undefined;
  let saidFormat = false;
  const cbs: (() => void)[] = [];
  let waiters: ((ok: boolean) => void)[] = [];
  const lose = (r: OutRecord, reason: DropReason) => {
    counters.drops.set(reason, (counters.drops.get(reason) ?? 0) + 1);
    counters.lost.set(r.type, (counters.lost.get(r.type) ?? 0) + 1);
  };
  const wake = (ok: boolean) => {
    for (const cb of cbs) cb();
    const w = waiters;
    waiters = [];
    for (const f of w) f(ok);
  };
  out.on('drain', () => {
    blocked = 0;
    wake(true);
  });
  out.on('error', (err: Error) => {
    if (failed) return;
    failed = err;
    // what the stream held is gone with it; pending() must fall so the collector does not stay paused
    blocked = 0;
    counters.sendErrors++;
    opts.onError?.(err);
    wake(false);
  });
  return {
    counters,
    async start() {},
    enqueue(records: readonly OutRecord[]) {
      if (records.length === 0) return;
      if (failed) {
        for (const r of records) lose(r, 'output_error');
        return;
      }
      let text = '';
      for (const r of records) {
        let line: string;
        try {
          line = toLine(r);
        } catch (err) {
          lose(r, 'format_error');
          if (!saidFormat) {
            saidFormat = true;
            (opts.log ?? ((l: string) => console.error(l)))(`ringflow: a ${r.topic} record could not be printed (${(err as Error)?.message ?? String(err)}); skipped and counted as format_error (further ones are counted only)`);
          }
          continue;
        }
        text += line + '\n';
        counters.produced.set(r.type, (counters.produced.get(r.type) ?? 0) + 1);
      }
      if (text !== '' && !out.write(text)) blocked += records.length;
    },
    pending: () => blocked,
    onProgress(cb) {
      cbs.push(cb);
    },
    flush(timeoutMs) {
      if (failed) return Promise.resolve(false);
      if (blocked === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        waiters.push((ok) => {
          clearTimeout(t);
          resolve(ok);
        });
      });
    },
    async close() {},
  };
}
