/**
 * Issue 9, part A: nothing in a batch callback or the stats timer ends the
 * collector, and every loss is counted by a fixed reason. Fake session and
 * sink; the real codec (Avro stats record, L7 tracker and encoder).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Collector, clampCount, type SessionLike, type TranscoderLike } from '../../collector/collector.ts';
import { createCodec } from '../../collector/codec.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { buildBatch } from '../../collector/events/index.ts';
import { L7_CAPTURE_SIZE, L7_CAPTURE_TYPE, L7_OFFSETS, L7Direction, L7Kind, IPPROTO_TCP } from '../../collector/l7/capture.ts';
import { decodeRecord } from '../../schemas/index.ts';

class FakeSession implements SessionLike {
  onBatch: ((b: Buffer) => void) | undefined;
  ring = 0;
  start(cb: (b: Buffer) => void) { this.onBatch = cb; }
  pause() {}
  resume() {}
  async stop() {}
  drops() { return new Array<bigint>(16).fill(0n); }
  ringPending() { return this.ring; }
}

class FakeSink implements EventSink {
  held: OutRecord[] = [];
  counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  async start() {}
  enqueue(r: readonly OutRecord[]) { this.held.push(...r); }
  pending() { return this.held.length; }
  onProgress() {}
  async flush() { return true; }
  async close() {}
}

const codec = () => createCodec({ host: 'h', bootTimeNs: 1n, dropReasonNames: {}, log: () => {} });

test('clampCount: a counter that cannot be right is clamped and counted, never thrown', () => {
  const cases: [number | bigint, number, boolean][] = [
    [0, 0, false],
    [42, 42, false],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, false],
    [-1, 0, true],
    [18446744073709488000, Number.MAX_SAFE_INTEGER, true], // issue 9's wrapped ring_pending
    [NaN, 0, true],
    [1.5, Number.MAX_SAFE_INTEGER, true],
    [5n, 5, false],
    [-3n, 0, true],
    [2n ** 64n - 65536n, Number.MAX_SAFE_INTEGER, true],
  ];
  for (const [v, want, clamped] of cases) {
    let n = 0;
    assert.equal(clampCount(v, () => n++), want, String(v));
    assert.equal(n, clamped ? 1 : 0, String(v));
  }
});

test('stats: a wrapped ring position (2^64 - x) is clamped and counted; the stats record still encodes', () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  const cd = codec();
  const c = new Collector({ session, sink, transcoder: cd.transcoder, topics: new Map([[1, 'ringflow.sched.runqlat.v1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0, encodeStats: (s) => cd.encodeStats(s) });
  c.start();
  session.ring = 18446744073709488000; // what rf_session_stats returned when the consumer passed its producer snapshot
  const s = c.snapshot();
  assert.equal(s.ring_bytes, Number.MAX_SAFE_INTEGER);
  assert.equal(s.clamped, 1);
  const rec = decodeRecord(cd.encodeStats(s).value).value as { ring_bytes: number | bigint; clamped: number | bigint };
  assert.equal(Number(rec.clamped), 1);
  session.ring = 10;
  assert.equal(c.snapshot().clamped, 0, 'clamped is a delta');
});

test('stats timer: a throw in it is caught, logged once and counted as stats_error; the collector goes on', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  const lines: string[] = [];
  let calls = 0;
  const c = new Collector({
    session, sink, transcoder: codec().transcoder, topics: new Map([[1, 't1']]), highWater: 100, maxPending: 200, statsIntervalMs: 5,
    encodeStats: () => { calls++; throw new Error('invalid "long": 18446744073709488000'); },
    log: (l) => lines.push(l),
  });
  c.start();
  await new Promise((r) => setTimeout(r, 60));
  const { final } = await c.stop(10);
  assert.ok(calls >= 2, 'the timer kept firing after the first throw');
  assert.ok((c.errors().get('stats') ?? 0) >= 2);
  const n = c.errors().get('stats')!;
  assert.equal(lines.filter((l) => l.includes('error in stats')).length, 1 + Math.floor(Math.log10(n)), `${n} errors: one line for the first, then at 10, 100, ...`);
  assert.match(lines[0]!, /invalid "long"/);
  assert.ok(final.drop_reasons.length === 0 || final.drop_reasons.every((r) => r.reason === 'stats_error'));
  assert.ok(c.drops.get('stats_error')! >= 2);
});

test('batch callback: a transcoder that throws loses only what it had not emitted, counted; nothing escapes', () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  const lines: string[] = [];
  const transcoder: TranscoderLike = {
    transcodeBatch(batch, emit) {
      emit('t1', 1, 'k', Buffer.from('first'));
      throw new Error('boom');
    },
  };
  const c = new Collector({ session, sink, transcoder, topics: new Map([[1, 't1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0, log: (l) => lines.push(l) });
  c.start();
  const rec = () => { const b = Buffer.alloc(16); b[0] = 1; return b; };
  assert.doesNotThrow(() => session.onBatch!(buildBatch([rec(), rec(), rec()])));
  assert.doesNotThrow(() => session.onBatch!(buildBatch([rec()])));
  assert.equal(sink.held.length, 2, 'what was emitted before the throw is kept');
  const s = c.snapshot();
  assert.deepEqual(s.events.map((e) => [e.read, e.user_drops]), [[2, 2]]);
  assert.deepEqual(s.drop_reasons, [{ reason: 'transcode_error', count: 2 }]);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /error in batch callback.*boom/s);
});

/** One L7 capture record: a TCP payload from `tgid` on connection `conn`. */
function capture(tgid: number, conn: bigint, payload: string, ts: bigint, direction: number = L7Direction.EGRESS): Buffer {
  const p = Buffer.from(payload, 'latin1');
  const b = Buffer.alloc(L7_CAPTURE_SIZE + p.length);
  b[L7_OFFSETS.type] = L7_CAPTURE_TYPE;
  b.writeUInt32LE(tgid, L7_OFFSETS.pid);
  b.writeUInt32LE(tgid, L7_OFFSETS.tgid);
  b.writeBigUInt64LE(ts, L7_OFFSETS.ts_ns);
  b.write('curl', L7_OFFSETS.comm, 'latin1');
  b.writeBigUInt64LE(conn, L7_OFFSETS.conn_id);
  b.set([127, 0, 0, 1], L7_OFFSETS.laddr);
  b.set([127, 0, 0, 1], L7_OFFSETS.raddr);
  b.writeUInt32LE(5, L7_OFFSETS.fd);
  b.writeUInt32LE(p.length, L7_OFFSETS.total_len);
  b.writeUInt32LE(p.length, L7_OFFSETS.captured_len);
  b.writeUInt16LE(40000, L7_OFFSETS.lport);
  b.writeUInt16LE(80, L7_OFFSETS.rport);
  b.writeUInt16LE(2, L7_OFFSETS.family);
  b[L7_OFFSETS.direction] = direction;
  b[L7_OFFSETS.protocol] = IPPROTO_TCP;
  b[L7_OFFSETS.kind] = L7Kind.DATA;
  p.copy(b, L7_CAPTURE_SIZE);
  return b;
}

test('L7: one capture whose tracker throws is counted as l7_tracker_error; the rest of its batch is parsed', () => {
  const lines: string[] = [];
  const cd = createCodec({
    host: 'h', bootTimeNs: 1n, dropReasonNames: {}, log: (l) => lines.push(l),
    l7: { processName: (tgid) => { if (tgid === 666) throw new Error('poisoned'); return 'curl'; } },
  });
  const session = new FakeSession();
  const sink = new FakeSink();
  const c = new Collector({ session, sink, transcoder: cd.transcoder, topics: new Map([[L7_CAPTURE_TYPE, 'ringflow.l7.v1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0, log: (l) => lines.push(l) });
  c.start();
  const req = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
  const batch = buildBatch([capture(100, 1n, req, 1000n), capture(666, 2n, req, 1001n), capture(666, 3n, req, 1002n), capture(101, 4n, req, 1003n)]);
  assert.doesNotThrow(() => session.onBatch!(batch));
  assert.equal(c.errors().size, 0, 'guarded per record, not per batch');
  const s = c.snapshot();
  assert.deepEqual(s.drop_reasons, [{ reason: 'l7_tracker_error', count: 2 }]);
  assert.equal(s.undecodable, 0);
  assert.equal(lines.filter((l) => l.includes('l7_tracker_error')).length, 1, 'one line per kind');
  assert.deepEqual([cd.l7!.tracker.counters.records, cd.l7!.tracker.counters.recognised], [4, 2], 'the good connections after the bad ones were parsed');
});

test('L7: a message the encoder refuses is counted as l7_encode_error; the other connections\' messages go out', () => {
  const lines: string[] = [];
  const cd = createCodec({
    host: 'h', bootTimeNs: 1n, dropReasonNames: {}, log: (l) => lines.push(l),
    // not a string: the Avro encoder refuses messages of this process
    l7: { processName: (tgid) => (tgid === 666 ? (123 as unknown as string) : 'curl') },
  });
  const session = new FakeSession();
  const sink = new FakeSink();
  const c = new Collector({ session, sink, transcoder: cd.transcoder, topics: new Map([[L7_CAPTURE_TYPE, 'ringflow.l7.v1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0 });
  c.start();
  const req = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
  const res = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
  const batch = buildBatch([
    capture(666, 2n, req, 1000n), capture(100, 1n, req, 1001n),
    capture(666, 2n, res, 1002n, L7Direction.INGRESS), capture(100, 1n, res, 1003n, L7Direction.INGRESS),
  ]);
  assert.doesNotThrow(() => session.onBatch!(batch));
  assert.equal(c.errors().size, 0);
  assert.equal(sink.held.length, 2, 'request and response of the good connection');
  const s = c.snapshot();
  assert.deepEqual(s.drop_reasons, [{ reason: 'l7_encode_error', count: 2 }]);
  assert.deepEqual(s.events, [{ event: 'ringflow.l7.v1', read: 2, kernel_drops: 0, user_drops: 0, produced: 0 }]);
  assert.equal(lines.length, 1, 'one line per kind');
  assert.match(lines[0]!, /l7_encode_error: AvroWriteError: invalid value for process_name: number 123/);
});

test('records the sink refused (dead-lettered or dropped) are user drops of their type and reasons in the stats, counted once at stop', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  const lost = new Map<number, number>();
  const drops = new Map<string, number>();
  sink.counters = { produced: new Map(), sendErrors: 0, lost, drops };
  sink.flush = async () => false; // what is still held at stop is lost with the process
  const c = new Collector({ session, sink, transcoder: { transcodeBatch(batch, emit) { for (let i = 0; i < 4; i++) emit('t1', 1, 'k', Buffer.from('x')); return { records: 4, unknown: 0 }; } }, topics: new Map([[1, 't1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0 });
  c.start();
  session.onBatch!(Buffer.alloc(0));
  // the sink: one produced, one dead-lettered for its size, two still held
  sink.counters.produced.set(1, 1);
  lost.set(1, 1);
  drops.set('too_large_dead_lettered', 1);
  const s = c.snapshot();
  assert.deepEqual(s.events, [{ event: 't1', read: 4, kernel_drops: 0, user_drops: 1, produced: 1 }]);
  assert.deepEqual(s.drop_reasons, [{ reason: 'too_large_dead_lettered', count: 1 }]);
  const { final } = await c.stop(10);
  assert.deepEqual(final.events, [{ event: 't1', read: 0, kernel_drops: 0, user_drops: 2, produced: 0 }], 'the two held, not the dead-lettered one again');
  assert.deepEqual(final.drop_reasons, [{ reason: 'unacknowledged_at_stop', count: 2 }]);
});

test('stats: the BPF maps\' per-reason losses reach the stats record as deltas (kernel_losses); tcp ones only under a task filter; a failed read is logged, not thrown', () => {
  class MapSession extends FakeSession {
    maps = new Map<string, bigint[]>([['rf_block_lost', [0n, 0n, 0n, 0n]], ['rf_tcp_unattributed', [0n, 0n]]]);
    fail = false;
    mapCounters(name: string) {
      if (this.fail) throw new Error('map gone');
      return this.maps.get(name) ?? null;
    }
  }
  for (const taskFiltered of [false, true]) {
    const session = new MapSession();
    const sink = new FakeSink();
    const cd = codec();
    const lines: string[] = [];
    const c = new Collector({ session, sink, transcoder: cd.transcoder, topics: new Map([[1, 'ringflow.block.io.v1']]), highWater: 100, maxPending: 200, statsIntervalMs: 0, encodeStats: (s) => cd.encodeStats(s), taskFiltered, log: (l) => lines.push(l) });
    session.maps.set('rf_block_lost', [5n, 0n, 0n, 0n]); // before start: not this run's
    c.start();
    session.maps.set('rf_block_lost', [7n, 1n, 0n, 0n]);
    session.maps.set('rf_tcp_unattributed', [3n, 0n]);
    const s = c.snapshot();
    const want = [{ reason: 'block_orphaned', count: 2 }, { reason: 'block_untracked', count: 1 }, ...(taskFiltered ? [{ reason: 'tcp_retransmit_unattributed', count: 3 }] : [])];
    assert.deepEqual(s.kernel_losses, want, `taskFiltered ${taskFiltered}`);
    const rec = decodeRecord(cd.encodeStats(s).value).value as { kernel_losses: { reason: string; count: bigint }[] };
    assert.deepEqual(rec.kernel_losses.map((r) => ({ reason: r.reason, count: Number(r.count) })), want, 'in the Avro record');
    assert.deepEqual(c.snapshot().kernel_losses, [], 'a delta: nothing new');
    session.fail = true;
    assert.deepEqual(c.snapshot().kernel_losses, [], 'a failed read counts nothing');
    assert.equal(lines.filter((l) => l.includes('kernel_losses')).length, 1, 'said once');
    session.fail = false;
    session.maps.set('rf_block_lost', [8n, 1n, 0n, 0n]);
    assert.deepEqual(c.snapshot().kernel_losses, [{ reason: 'block_orphaned', count: 1 }], 'after a failed read: from the last good reading');
  }
});
