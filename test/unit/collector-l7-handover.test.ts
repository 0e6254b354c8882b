/**
 * The collector's side of the hand-over sweep (issue 10, design §2.7): what
 * Session.l7Claim returns (ring-format exchange records, outcome REQ_ONLY) goes
 * through the same codec path as ring batches, is counted in l7Claimed, is
 * not claimed while the collector is paused, and a session without the map
 * stops being asked. Fake session and sink; the real codec. The kernel half
 * is test/native/l7-handover.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Collector, type SessionLike } from '../../collector/collector.ts';
import { createCodec, L7_TOPIC } from '../../collector/codec.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { decodeRecord } from '../../schemas/index.ts';
import { parseCollectArgs, l7HandoverOptions } from '../../cli/collect.ts';

/** One struct rf_l7_exchange (bpf/events.h offsets) + request head, framed as a native batch. */
function claimedBatch(seq: number): Buffer {
  const head = Buffer.from('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1');
  const x = Buffer.alloc(176);
  x[0] = 10; // RF_EV_L7_EXCHANGE
  x.writeUInt32LE(7, 4); // pid
  x.writeUInt32LE(7, 8); // tgid
  x.writeBigUInt64LE(3_000_000_000n, 16); // ts_ns: the claim
  x.writeBigUInt64LE(0xabcn, 48); // conn_id
  x.writeBigUInt64LE(1_000_000_000n, 56); // req_start_ns
  x.writeBigUInt64LE(1_000_000_100n, 64); // req_end_ns
  x.set([127, 0, 0, 1], 104); // laddr
  x.set([127, 0, 0, 1], 120); // raddr
  x.writeUInt32LE(seq, 136);
  x.writeUInt32LE(7, 140); // req_pid
  x.writeUInt32LE(7, 144); // req_tgid
  x.writeUInt32LE(5, 148); // fd
  x.writeUInt16LE(40000, 152);
  x.writeUInt16LE(8080, 154);
  x.writeUInt16LE(2, 156); // AF_INET
  x.writeUInt16LE(head.length, 160);
  x[164] = 1; // app HTTP1
  x[165] = 1; // role client
  x[166] = 6; // TCP
  x[167] = 4; // REQ_ONLY
  const rec = Buffer.concat([x, head]);
  const framed = Buffer.alloc(8 + Math.ceil(rec.length / 8) * 8);
  framed.writeUInt32LE(rec.length, 0);
  rec.copy(framed, 8);
  return framed;
}

class FakeSession implements SessionLike {
  claims: Buffer[] = [];
  asked = 0;
  start() {}
  pause() {}
  resume() {}
  async stop() {}
  drops() { return new Array<bigint>(16).fill(0n); }
  ringPending() { return 0; }
  finalClaim: Buffer | undefined;
  l7Claim(handoverNs: number, staleNs: number): Buffer | null {
    this.asked++;
    if (handoverNs === 0 && staleNs === 0) return this.finalClaim ?? Buffer.alloc(0);
    assert.equal(handoverNs, 2e9);
    assert.equal(staleNs, 30e9);
    return this.claims.shift() ?? Buffer.alloc(0);
  }
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function collector(session: SessionLike, sink: FakeSink, highWater = 100): Collector {
  const cd = createCodec({ host: 'h', bootTimeNs: 1n, dropReasonNames: {}, log: () => {}, l7: {} });
  return new Collector({
    session, sink, transcoder: cd.transcoder, topics: cd.topicsFor([10]), highWater, maxPending: 200, statsIntervalMs: 0,
    l7Handover: { handoverNs: 2e9, staleNs: 30e9, sweepMs: 10 },
  });
}

test('l7 hand-over: a claimed request goes out as one REQ_ONLY exchange on the l7 topic and is counted', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  session.claims.push(claimedBatch(0));
  const c = collector(session, sink);
  c.start();
  await sleep(60);
  await c.stop(100);
  assert.ok(session.asked >= 2, 'swept every sweepMs');
  assert.equal(c.l7Claimed, 1);
  const l7 = sink.held.filter((r) => r.topic === L7_TOPIC);
  assert.equal(l7.length, 1, 'one message for the claimed request');
  const v = decodeRecord(l7[0]!.value).value as { kind: string; outcome: string | null; resp_start_ns: unknown };
  assert.equal(v.kind, 'EXCHANGE');
  assert.equal(v.outcome, 'REQ_ONLY');
  assert.equal(v.resp_start_ns, null, 'the request alone');
});

test('l7 hand-over: no claim while paused (the entries wait in the kernel); a session without the map is not asked again', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  // highWater 1: the first claimed record pauses the collector
  session.claims.push(claimedBatch(0), claimedBatch(1));
  const c = collector(session, sink, 1);
  c.start();
  await sleep(60);
  assert.equal(c.l7Claimed, 1, 'paused after the first: the second is left in the map');
  assert.equal(session.claims.length, 1);
  await c.stop(100);

  let asked = 0;
  const none: SessionLike = { ...new FakeSession(), start() {}, pause() {}, resume() {}, async stop() {}, drops: () => [], ringPending: () => 0, l7Claim: () => { asked++; return null; } };
  const c2 = collector(none, new FakeSink());
  c2.start();
  await sleep(60);
  await c2.stop(100);
  assert.equal(asked, 1);
});

test('--l7-handover: a duration, default 2s, within 100ms..20s (well under the spans stage\'s 30 s timeout)', () => {
  const cases: [string[], number | Error][] = [
    [[], 2e9],
    [['--l7-handover', '500ms'], 5e8],
    [['--l7-handover', '20s'], 20e9],
    [['--l7-handover', '10ms'], new Error('too short')],
    [['--l7-handover', '1m'], new Error('too long')],
    [['--l7-handover', 'soon'], new Error('not a duration')],
  ];
  for (const [argv, want] of cases) {
    if (want instanceof Error) {
      assert.throws(() => parseCollectArgs(argv), /--l7-handover/, `${argv.join(' ')}: ${want.message}`);
      continue;
    }
    const h = l7HandoverOptions(parseCollectArgs(argv).l7.handoverNs);
    assert.deepEqual(h, { handoverNs: want, staleNs: 30e9, sweepMs: 1000 }, argv.join(' '));
  }
});

test('l7 hand-over: on stop, what the kernel still holds is claimed whatever its age (the map goes with the programs)', async () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  session.finalClaim = claimedBatch(3);
  const c = collector(session, sink);
  c.start();
  await c.stop(100);
  assert.equal(c.l7Claimed, 1);
  assert.equal(sink.held.filter((r) => r.topic === L7_TOPIC).length, 1);
});
