/**
 * `--stdout`: decoded events as JSON lines, one per event, as bcc tools print
 * them. It honours the stream's backpressure like the Kafka sink honours acks.
 */
import type { Writable } from 'node:stream';
import type { EventSink, OutRecord, SinkCounters } from './sink.ts';

export function createStdoutSink(out: Writable, toLine: (r: OutRecord) => string): EventSink {
  const counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  let blocked = 0; // records written while the stream reported it was full
  const cbs: (() => void)[] = [];
  let waiters: (() => void)[] = [];
  out.on('drain', () => {
    blocked = 0;
    for (const cb of cbs) cb();
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  return {
    counters,
    async start() {},
    enqueue(records: readonly OutRecord[]) {
      if (records.length === 0) return;
      let text = '';
      for (const r of records) {
        text += toLine(r) + '\n';
        counters.produced.set(r.type, (counters.produced.get(r.type) ?? 0) + 1);
      }
      if (!out.write(text)) blocked += records.length;
    },
    pending: () => blocked,
    onProgress(cb) {
      cbs.push(cb);
    },
    flush(timeoutMs) {
      if (blocked === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        waiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
      });
    },
    async close() {},
  };
}
