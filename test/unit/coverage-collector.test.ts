/**
 * Issue 9 item 7, the collector's half of coverage: a run has an identity and
 * a start, its stats records tile its life from that start (one right at
 * start, one at a clean stop), each acknowledged one is reported so the run
 * state file can say where a crashed run was last known to watch, and the
 * stats record carries all of it (old records read with empty defaults).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Collector, type SessionLike, type StatsSnapshot } from '../../collector/collector.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { createCodec } from '../../collector/codec.ts';
import { RunStateFile, newRunId, parseRunState, formatRunState, stateDir, statePath } from '../../collector/run-state.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../../schemas/index.ts';

class FakeSession implements SessionLike {
  start() {}
  pause() {}
  resume() {}
  async stop() {}
  drops() { return new Array(16).fill(0n); }
  ringPending() { return 0; }
}

/** Holds records until ack(n) acknowledges the oldest n. */
class FakeSink implements EventSink {
  held: OutRecord[] = [];
  sent: OutRecord[] = [];
  counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  cbs: (() => void)[] = [];
  async start() {}
  enqueue(r: readonly OutRecord[]) { this.held.push(...r); this.sent.push(...r); }
  pending() { return this.held.length; }
  onProgress(cb: () => void) { this.cbs.push(cb); }
  ack(n: number) {
    for (const r of this.held.splice(0, n)) this.counters.produced.set(r.type, (this.counters.produced.get(r.type) ?? 0) + 1);
    for (const cb of this.cbs) cb();
  }
  async flush() { this.ack(this.held.length); return true; }
  async close() {}
}

const codec = createCodec({ host: 'h1', bootTimeNs: 5n, dropReasonNames: {} });

function make(statsIntervalMs: number) {
  const sink = new FakeSink();
  let now = 1_000_000_000_000n;
  const acked: bigint[] = [];
  const snaps: StatsSnapshot[] = [];
  const c = new Collector({
    session: new FakeSession(),
    sink,
    transcoder: { transcodeBatch: () => ({ records: 0, unknown: 0 }) },
    topics: new Map([[1, 'ringflow.sched.runqlat.v1']]),
    highWater: 10,
    maxPending: 20,
    statsIntervalMs,
    wallClockNs: () => (now += 7_000_000n),
    encodeStats: (s) => codec.encodeStats(s),
    onStats: (s) => snaps.push(s),
    run: { id: '00112233aabbccdd', previousId: 'ffeeddccbbaa9988', previousEndNs: 999_000_000_000n },
    onStatsAcked: (t) => acked.push(t),
  });
  return { c, sink, acked, snaps };
}

const decoded = (r: OutRecord) => decodeCurrent(r.value).value as Record<string, unknown>;

test('coverage: a run sends a stats record at start and at stop, and its records tile its life from run_start_ns', async () => {
  const { c, sink } = make(3_600_000);
  c.start();
  assert.equal(sink.sent.length, 1, 'a stats record right at start, not only after the first interval');
  const run = c.run!;
  assert.ok(run);
  await c.stop(1000);
  const recs = sink.sent.map(decoded);
  assert.equal(recs.length, 2, 'start and stop');
  // the start record: stamped the run's start, interval 0 (the one record whose time is run_start_ns)
  assert.equal(recs[0]!.time_ns, run.startNs);
  assert.equal(recs[0]!.interval_ns, 0n);
  let from = run.startNs;
  for (const r of recs.slice(1)) {
    assert.equal(r.run_id, '00112233aabbccdd');
    assert.equal(r.run_start_ns, run.startNs);
    assert.equal(r.previous_run_id, 'ffeeddccbbaa9988');
    assert.equal(r.previous_run_end_ns, 999_000_000_000n);
    // (time_ns - interval_ns, time_ns]: each starts where the one before ended, the first at the run's start
    assert.equal((r.time_ns as bigint) - (r.interval_ns as bigint), from);
    assert.ok((r.time_ns as bigint) > from);
    from = r.time_ns as bigint;
  }
});

test('coverage: every acknowledged stats record is reported with its time_ns, the newest once per acknowledgement', async () => {
  const { c, sink, acked } = make(3_600_000);
  c.start();
  assert.deepEqual(acked, []);
  const first = decoded(sink.sent[0]!).time_ns as bigint;
  sink.ack(1);
  assert.deepEqual(acked, [first]);
  sink.ack(0); // progress without a stats record acknowledged: nothing new to say
  assert.deepEqual(acked, [first]);
  await c.stop(1000);
  assert.deepEqual(acked, [first, decoded(sink.sent[1]!).time_ns as bigint], 'the clean stop record too');
});

test('coverage: the timer records go on tiling after the start record', async () => {
  const { c, sink } = make(20);
  c.start();
  await new Promise((r) => setTimeout(r, 120));
  await c.stop(1000);
  const recs = sink.sent.map(decoded);
  assert.ok(recs.length >= 3, `${recs.length} records`);
  assert.equal((recs[0]!.time_ns as bigint) - (recs[0]!.interval_ns as bigint), c.run!.startNs);
  for (let i = 1; i < recs.length; i++) assert.equal((recs[i]!.time_ns as bigint) - (recs[i]!.interval_ns as bigint), recs[i - 1]!.time_ns);
});

test('coverage: a stats record of an older collector (collector.stats.v1) reads with no run identity', () => {
  const v1 = schemaRegistry().history.find((h) => h.id === 'collector.stats.v1');
  assert.ok(v1, 'schemas/history/collector.stats.v1.avsc');
  const old = encodeRecord(v1, {
    host: 'h1', boot_time_ns: 0n, time_ns: 10n, interval_ns: 5n, events: [], send_errors: 0n, pending: 0n, ring_bytes: 0n,
    undecodable: 0n, drop_reasons: [], l7_parse_failures: [], clamped: 0n,
  });
  const r = decodeCurrent(old).value as Record<string, unknown>;
  assert.deepEqual([r.run_id, r.run_start_ns, r.previous_run_id, r.previous_run_end_ns], ['', 0n, '', 0n]);
});

test('coverage: run state file text, table', () => {
  const rows: [string, ReturnType<typeof parseRunState>][] = [
    ['{"run_id":"00ff","end_ns":"1700000000000000000"}', { runId: '00ff', endNs: 1_700_000_000_000_000_000n }],
    [formatRunState({ runId: 'abcdef0123456789', endNs: 5n }), { runId: 'abcdef0123456789', endNs: 5n }],
    ['', null],
    ['{', null],
    ['null', null],
    ['[]', null],
    ['{"run_id":"00ff"}', null],
    ['{"run_id":"00ff","end_ns":17}', null], // a number would lose ns past 2^53
    ['{"run_id":"00ff","end_ns":"0"}', null],
    ['{"run_id":"00ff","end_ns":"-5"}', null],
    ['{"run_id":"00ff","end_ns":"9223372036854775808"}', null], // past an Avro long
    ['{"run_id":"XYZ","end_ns":"5"}', null],
    ['{"run_id":"","end_ns":"5"}', null],
  ];
  for (const [text, want] of rows) assert.deepEqual(parseRunState(text), want, text);
  assert.match(newRunId(), /^[0-9a-f]{16}$/);
  assert.notEqual(newRunId(), newRunId());
  assert.equal(stateDir({}), '/var/lib/ringflow');
  assert.equal(stateDir({ RINGFLOW_STATE_DIR: '/tmp/x' }), '/tmp/x');
  assert.equal(path.basename(statePath('/d', 'a/b c')), 'collector-a_b_c.json');
});

test('coverage: the run state file is written whole (created with its directory), read back, and failures are counted and said once', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-runstate-'));
  try {
    const lines: string[] = [];
    const f = new RunStateFile(statePath(path.join(dir, 'sub', 'dir'), 'h1'), (l) => lines.push(l));
    assert.equal(f.read(), null, 'no file: first run, nothing to say');
    assert.equal(f.write({ runId: 'aa', endNs: 7n }), true);
    assert.equal(f.write({ runId: 'aa', endNs: 9n }), true);
    assert.deepEqual(f.read(), { runId: 'aa', endNs: 9n });
    assert.deepEqual(fs.readdirSync(path.dirname(f.file)), ['collector-h1.json'], 'no temporary file left');
    assert.equal(f.errors, 0);
    // a file where the directory should be: cannot write, never throws
    fs.writeFileSync(path.join(dir, 'blocked'), '');
    const g = new RunStateFile(statePath(path.join(dir, 'blocked'), 'h1'), (l) => lines.push(l));
    assert.equal(g.write({ runId: 'aa', endNs: 7n }), false);
    assert.equal(g.write({ runId: 'aa', endNs: 8n }), false);
    assert.equal(g.errors, 2);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /cannot write the run state file/);
    // garbage in the file: ignored, said
    fs.writeFileSync(f.file, 'not json');
    assert.equal(f.read(), null);
    assert.equal(f.errors, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
