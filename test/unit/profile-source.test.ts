/**
 * collector/profile/source.ts and Collector.emitRecords: drains become
 * framed ringflow.profile.stacks.v1 records keyed host/tgid with windows that
 * tile the run; a failing drain is counted and said at 1, 10, 100..., never
 * thrown; records from drains are counted as read (their stats entry), and
 * past maxPending user-dropped as backpressure. The kernel side is
 * test/native/profile.test.ts; here the session is a table of buffers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProfileSource, PROFILE_RECORD_TYPE, PROFILE_TOPIC } from '../../collector/profile/source.ts';
import { Collector, type SessionLike } from '../../collector/collector.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { decodeRecord } from '../../schemas/index.ts';
import type { Symbolize } from '../../collector/profile/records.ts';

function drainOf(entries: { tgid: number; value: bigint; kind?: number }[]) {
  const counts = Buffer.alloc(entries.length * 32);
  entries.forEach((e, i) => {
    counts.writeUInt32LE(e.tgid, i * 32);
    counts.writeInt32LE(1, i * 32 + 8); // user stack id 1 in map 0
    counts.writeInt32LE(-1, i * 32 + 12); // no kernel stack
    counts[i * 32 + 16] = e.kind ?? 0;
    counts.writeBigUInt64LE(e.value, i * 32 + 24);
  });
  const stacks = Buffer.alloc(16 + 8);
  stacks.writeUInt32LE(1, 4);
  stacks.writeUInt32LE(1, 8);
  stacks.writeBigUInt64LE(0x401000n, 16);
  return { generation: 0n, counts, stacks, comms: Buffer.alloc(0) };
}

const symbolize: Symbolize = (_t, addrs) => addrs.map((a) => ({ address: a, module: '/bin/x', offset: 0x1000, function: 'hot', kind: 'USER' }));

function source(session: { profileDrain(p: string): ReturnType<typeof drainOf> }, out: OutRecord[][], log: string[], clock: { t: bigint }) {
  return new ProfileSource({
    session, signals: ['profile', 'offcpu'], intervalMs: 1_000_000, sampleHz: 19, host: 'h1', bootTimeNs: 5n,
    symbolize, processName: () => 'svc', emit: (r) => out.push(r), log: (l) => log.push(l), monotonicNs: () => clock.t,
  });
}

test('each drain of each signal becomes framed records keyed host/tgid, windows tiling from start', () => {
  const out: OutRecord[][] = [];
  const log: string[] = [];
  const clock = { t: 100n };
  const asked: string[] = [];
  const s = source({ profileDrain: (p) => { asked.push(p); return drainOf([{ tgid: 7, value: 3n, kind: p === 'rf_offcpu' ? 1 : 0 }]); } }, out, log, clock);
  s.start();
  clock.t = 200n;
  s.drainAll();
  clock.t = 300n;
  s.stop(); // the last drain
  assert.deepEqual(asked, ['rf_prof', 'rf_offcpu', 'rf_prof', 'rf_offcpu']);
  assert.equal(out.length, 4);
  const windows = out.map((batch) => {
    const r = batch[0]!;
    assert.deepEqual([r.topic, r.key, r.type], [PROFILE_TOPIC, 'h1/7', PROFILE_RECORD_TYPE]);
    const v = decodeRecord(r.value).value as Record<string, unknown>;
    assert.equal(v.host, 'h1');
    assert.equal((v.frames as { function: string }[])[0]!.function, 'hot');
    return [v.kind, v.window_start_ns, v.window_end_ns];
  });
  assert.deepEqual(windows, [['ONCPU', 100n, 200n], ['OFFCPU', 100n, 200n], ['ONCPU', 200n, 300n], ['OFFCPU', 200n, 300n]]);
  assert.deepEqual(log, []);
  assert.equal(s.records, 4);
});

test('a failing drain is counted per signal and said at 1, 10 and 100 failures; the other signal goes on', () => {
  const out: OutRecord[][] = [];
  const log: string[] = [];
  const s = source({
    profileDrain: (p) => {
      if (p === 'rf_prof') throw new Error('bpf_map_lookup_batch(rf_prof_counts): Bad address (errno 14)');
      return drainOf([{ tgid: 9, value: 1n, kind: 1 }]);
    },
  }, out, log, { t: 0n });
  for (let i = 0; i < 100; i++) s.drainAll();
  assert.equal(s.failures.get('profile'), 100);
  assert.equal(s.drains.get('offcpu'), 100);
  assert.equal(out.length, 100);
  assert.equal(log.length, 3);
  assert.match(log[0]!, /profile: drain failed \(1 so far; its counts stay in the kernel.*Bad address/);
  assert.match(log[2]!, /\(100 so far/);
});

class Sink implements EventSink {
  held: OutRecord[] = [];
  counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  async start() {}
  enqueue(r: readonly OutRecord[]) { this.held.push(...r); }
  pending() { return this.held.length; }
  onProgress() {}
  async flush() { return true; }
  async close() {}
}

const session: SessionLike = { start() {}, pause() {}, resume() {}, async stop() {}, drops: () => new Array(16).fill(0n), ringPending: () => 0 };

test('Collector.emitRecords: read and handed to the sink under maxPending, user-dropped as backpressure past it; the stats entry of the topic shows both', () => {
  const sink = new Sink();
  let now = 0n;
  const c = new Collector({ session, sink, transcoder: { transcodeBatch: () => ({ records: 0, unknown: 0 }) }, topics: new Map([[PROFILE_RECORD_TYPE, PROFILE_TOPIC]]), highWater: 2, maxPending: 3, statsIntervalMs: 0, wallClockNs: () => (now += 1n) });
  c.start();
  const r = (n: number): OutRecord[] => Array.from({ length: n }, () => ({ topic: PROFILE_TOPIC, key: 'h/1', value: Buffer.alloc(1), type: PROFILE_RECORD_TYPE }));
  c.emitRecords(r(3));
  c.emitRecords(r(2)); // pending 3 >= maxPending: dropped
  c.countLost('profile_encode_error', PROFILE_RECORD_TYPE, 1);
  const s = c.snapshot();
  assert.equal(sink.held.length, 3);
  assert.deepEqual(s.events, [{ event: PROFILE_TOPIC, read: 3, kernel_drops: 0, user_drops: 3, produced: 0 }]);
  assert.deepEqual(s.drop_reasons.sort((a, b) => a.reason.localeCompare(b.reason)), [{ reason: 'backpressure', count: 2 }, { reason: 'profile_encode_error', count: 1 }]);
});

test('collect flags: --profile-hz, --profile-interval, --offcpu-min, --profile-threads; defaults 19 Hz, 10 s, 1 ms, per process; bad values refused', async () => {
  const { parseCollectArgs } = await import('../../cli/collect.ts');
  assert.deepEqual(parseCollectArgs(['--signals', 'profile,offcpu']).profile, { hz: 19, intervalMs: 10_000, offcpuMinNs: 1_000_000n, perThread: false });
  assert.deepEqual(parseCollectArgs(['--signals', 'profile', '--profile-hz', '49', '--profile-interval', '2s', '--offcpu-min', '5ms', '--profile-threads']).profile,
    { hz: 49, intervalMs: 2000, offcpuMinNs: 5_000_000n, perThread: true });
  assert.deepEqual(parseCollectArgs([]).signals.filter((s) => s === 'profile' || s === 'offcpu'), [], 'opt-in');
  for (const bad of [['--profile-hz', '0'], ['--profile-hz', '5000'], ['--profile-interval', '10ms'], ['--offcpu-min', 'x']]) {
    assert.throws(() => parseCollectArgs(bad), /--profile-hz|--profile-interval|--offcpu-min/, bad.join(' '));
  }
});
