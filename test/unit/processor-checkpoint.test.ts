/**
 * Stage 2's offset-commit metadata (processor/partition.ts): whatever another
 * tool, an older build or a truncation left there, creating the partition's
 * state must not throw (the aggregate stage would re-read the same batch
 * forever); it starts empty from the committed offset and says why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPartitionState, parseCheckpoint } from '../../processor/partition.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';

const cfg = { windowMs: 2000, latenessMs: 0, topK: 100, processorId: 'u' };
const S = 1_000_000_000n;
const T = 1_764_000_000n * S;

function runq(ts: bigint): Buffer {
  return encodeRecord(schemaRegistry().byTopic('ringflow.sched.runqlat.v1')!, {
    cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'a', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
  });
}

test('partition state: a valid checkpoint restores; none is empty', () => {
  const a = createPartitionState(cfg, 0, undefined);
  assert.equal(a.restoreError, null);
  assert.equal(a.add('ringflow.sched.runqlat.v1|h1', runq(T), 0n), 'ok');
  const b = createPartitionState(cfg, 0, a.checkpoint());
  assert.equal(b.restoreError, null);
  assert.deepEqual(parseCheckpoint(a.checkpoint()), JSON.parse(a.checkpoint()).lanes);
  assert.deepEqual(parseCheckpoint(undefined), {});
  assert.deepEqual(parseCheckpoint(''), {});
});

const good = JSON.stringify({ v: 2, lanes: { events: { windows: { sizeNs: '2000000000', latenessNs: '0', maxEventNs: null, horizonNs: null, open: [] }, emittedThroughNs: '-1', from: '0' } } });
const bad: [string, string, RegExp][] = [
  ['not JSON', 'garbage{', /unreadable/],
  ['truncated', good.slice(0, good.length - 5), /unreadable/],
  ['a JSON number', '42', /not an object/],
  ['null', 'null', /not an object/],
  ['a future version', JSON.stringify({ v: 9 }), /unknown version 9/],
  ['v2 without lanes', JSON.stringify({ v: 2 }), /without lanes/],
  ['an unknown lane', JSON.stringify({ v: 2, lanes: { other: {} } }), /unknown lane/],
  ['a lane without its window state', JSON.stringify({ v: 2, lanes: { events: { emittedThroughNs: '1', from: '0' } } }), /incomplete/],
  ['a bad number', good.replace('"from":"0"', '"from":"x"'), /bad number/],
  ['v1 without windows', JSON.stringify({ v: 1, emittedThroughNs: '1' }), /without its window state/],
  // well-formed, but the assigner refuses it: a window size not in whole ms
  ['a state the assigner refuses', good.replace('"sizeNs":"2000000000"', '"sizeNs":"1"'), /window state/],
];

for (const [what, text, why] of bad) {
  test(`partition state: metadata that is ${what} starts empty and says why, never throws`, () => {
    const s = createPartitionState(cfg, 0, text);
    assert.match(s.restoreError ?? '', why);
    // and it works: records are taken and windows close as from no checkpoint
    assert.equal(s.add('ringflow.sched.runqlat.v1|h1', runq(T), 5n), 'ok');
    assert.equal(s.add('ringflow.sched.runqlat.v1|h1', runq(T + 10n * S), 6n), 'ok');
    s.advance();
    assert.equal(s.takeClosed().length, 1);
  });
}
