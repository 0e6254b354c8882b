import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Collector, countTypes, type SessionLike, type TranscoderLike } from '../../collector/collector.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { buildBatch } from '../../collector/events/index.ts';

/** A raw record of `size` bytes whose first byte is its type. */
const rec = (type: number, size = 64) => {
  const b = Buffer.alloc(size);
  b[0] = type;
  return b;
};

class FakeSession implements SessionLike {
  onBatch: ((b: Buffer) => void) | undefined;
  paused = false;
  pauses = 0;
  kernelDrops: bigint[] = new Array(16).fill(0n);
  stopped = false;
  start(cb: (b: Buffer) => void) { this.onBatch = cb; }
  pause() { this.paused = true; this.pauses++; }
  resume() { this.paused = false; }
  async stop() { this.stopped = true; }
  drops() { return [...this.kernelDrops]; }
  ringBytes = 0;
  ringPending() { return this.ringBytes; }
}

/** Holds records until ack(n) acknowledges the oldest n. */
class FakeSink implements EventSink {
  held: OutRecord[] = [];
  counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  cbs: (() => void)[] = [];
  async start() {}
  enqueue(r: readonly OutRecord[]) { this.held.push(...r); }
  pending() { return this.held.length; }
  onProgress(cb: () => void) { this.cbs.push(cb); }
  ack(n: number) {
    for (const r of this.held.splice(0, n)) this.counters.produced.set(r.type, (this.counters.produced.get(r.type) ?? 0) + 1);
    for (const cb of this.cbs) cb();
  }
  async flush() { return this.held.length === 0; }
  async close() {}
}

/** Passes each record through as its own value. */
const transcoder: TranscoderLike = {
  transcodeBatch(batch, emit) {
    const types = new Map<number, number>();
    const n = countTypes(batch, types);
    let off = 0;
    for (let i = 0; i < n; i++) {
      const len = batch.readUInt32LE(off);
      const type = batch[off + 8]!;
      emit(`t${type}`, type, 'k', batch.subarray(off + 8, off + 8 + len));
      off += 8 + ((len + 7) & ~7);
    }
    return { records: n, unknown: 0 };
  },
};

function make(highWater: number, maxPending: number) {
  const session = new FakeSession();
  const sink = new FakeSink();
  let now = 1_000_000_000n;
  const c = new Collector({
    session,
    sink,
    transcoder,
    topics: new Map([[1, 't1'], [3, 't3']]),
    highWater,
    maxPending,
    statsIntervalMs: 0,
    wallClockNs: () => (now += 1_000_000_000n),
  });
  c.start();
  return { session, sink, c };
}

test('countTypes walks the native batch framing', () => {
  const m = new Map<number, number>();
  assert.equal(countTypes(buildBatch([rec(1), rec(3, 88), rec(1, 61)]), m), 3);
  assert.deepEqual([...m], [[1, 2], [3, 1]]);
});

test('backpressure: pause the ring at high water, resume at half, drop and count past the cap', () => {
  const { session, sink, c } = make(10, 20);
  session.onBatch!(buildBatch(Array.from({ length: 6 }, () => rec(1))));
  assert.equal(session.paused, false);
  session.onBatch!(buildBatch(Array.from({ length: 6 }, () => rec(1))));
  assert.equal(session.paused, true, 'paused once pending reached high water');
  // batches the addon had already queued still arrive while paused and are held up to the cap
  session.onBatch!(buildBatch(Array.from({ length: 8 }, () => rec(3))));
  assert.equal(sink.pending(), 20);
  session.onBatch!(buildBatch([rec(1), rec(3), rec(3)]));
  assert.equal(sink.pending(), 20, 'nothing held past maxPending');
  assert.equal(c.userDrops.get(1), 1);
  assert.equal(c.userDrops.get(3), 2);
  sink.ack(9);
  assert.equal(session.paused, true, 'still above low water (5)');
  sink.ack(6);
  assert.equal(session.paused, false, 'resumed at low water');
  assert.equal(session.pauses, 1);
});

test('stats are deltas per event type and account for every record', () => {
  const { session, sink, c } = make(1000, 2000);
  session.onBatch!(buildBatch([rec(1), rec(1), rec(3)]));
  session.kernelDrops[1] = 5n;
  sink.ack(2);
  const s1 = c.snapshot();
  assert.deepEqual(s1.events, [
    { event: 't1', read: 2, kernel_drops: 5, user_drops: 0, produced: 2 },
    { event: 't3', read: 1, kernel_drops: 0, user_drops: 0, produced: 0 },
  ]);
  assert.equal(s1.pending, 1);
  assert.equal(s1.ring_bytes, 0);
  session.ringBytes = 4096;
  assert.equal(c.snapshot().ring_bytes, 4096, 'ring bytes are read at snapshot time');
  assert.equal(s1.interval_ns, 1_000_000_000n);
  session.kernelDrops[1] = 7n;
  sink.ack(1);
  const s2 = c.snapshot();
  assert.deepEqual(s2.events.map((e) => [e.read, e.kernel_drops, e.produced]), [[0, 2, 0], [0, 0, 1]]);
});

test('stop drains the session, and what the sink could not deliver is reported as user drops', async () => {
  const { session, sink, c } = make(1000, 2000);
  session.onBatch!(buildBatch([rec(1), rec(1), rec(3)]));
  sink.ack(1);
  const { flushed, final } = await c.stop(10);
  assert.equal(session.stopped, true);
  assert.equal(flushed, false);
  assert.deepEqual(final.events.map((e) => [e.event, e.read, e.produced, e.user_drops]), [['t1', 2, 1, 1], ['t3', 1, 0, 1]]);
});

test('stop: after the ring is drained, what per-connection state still holds is emitted, counted and flushed', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  sink.flush = async () => { sink.ack(sink.held.length); return true; }; // Kafka takes everything
  const delivered: string[] = [];
  const ack = sink.ack.bind(sink);
  sink.ack = (n) => { delivered.push(...sink.held.slice(0, n).map((r) => r.value.toString('latin1'))); ack(n); };
  const c = new Collector({
    session, sink,
    transcoder: { ...transcoder, finish(emit) { emit('t3', 3, 'k', Buffer.from('held')); } },
    topics: new Map([[1, 't1'], [3, 't3']]), highWater: 100, maxPending: 200, statsIntervalMs: 0,
  });
  c.start();
  session.onBatch!(buildBatch([rec(3)]));
  const { flushed, final } = await c.stop(1000);
  assert.equal(flushed, true);
  assert.equal(delivered.at(-1), 'held', 'emitted after the ring, before the flush');
  assert.deepEqual(final.events.map((e) => [e.event, e.read, e.produced]), [['t1', 0, 0], ['t3', 2, 2]]);
});
