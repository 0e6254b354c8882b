/**
 * ringflow.dropped points of stage 2 (the collectors' kernel/user drops and
 * stage 1's rejections, from stats records on the repartition topic) are
 * written once per (host, reason, signal, window) when the window closes,
 * and a restart that re-reads from the committed offset (SIGKILL: state
 * lost) writes none of them twice and loses none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPartitionState } from '../../processor/partition.ts';
import { rejectionRecord } from '../../processor/partial.ts';
import { encodeRecord, decodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { replayWithCrashes } from '../support/replay.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const S = 1_000_000_000n;
const T = 1_800_000_000n * S; // window-aligned (2 s)

const runq = (ts: bigint) => encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
  cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'a', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
});
const stats = (t: bigint, kernel: number, user: number) => encodeRecord(schemaRegistry().byTopic('ringflow.collector.stats.v1')!, {
  host: 'h1', boot_time_ns: 0n, time_ns: t, interval_ns: S,
  events: [{ event: RUNQ, read: 10n, kernel_drops: BigInt(kernel), user_drops: BigInt(user), produced: 10n }],
  send_errors: 0n, pending: 0n, ring_bytes: 0n,
});

test('drops are written once per window and reason, also across restarts mid-stream', () => {
  const key = `${RUNQ}|h1`;
  const input: [string, Buffer][] = [];
  // 10 windows of 2 s: events every 200 ms, a stats record per second with drops, a rejected event every 2 s
  for (let i = 0; i < 100; i++) {
    const t = T + BigInt(i) * 200_000_000n;
    input.push([key, runq(t)]);
    // a stats record reports the second before it: it often lands after the next window's first events,
    // so a restart re-reads it from that window's hold (the case that could write a window's drops twice)
    if (i % 5 === 0) input.push([key, stats(t - 1_100_000_000n, 2, 1)]);
    if (i % 10 === 3) input.push([key, rejectionRecord(RUNQ, 'h1', t + 2n, 'invalid_value')]);
  }
  const cfg = { windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' };
  const run = (crashAt: number[]): string[] =>
    replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), input, crashAt, 4, T + 1000n * S)
      .map((v) => decodeRecord(v).value as Record<string, unknown>)
      .filter((r) => r.name === 'ringflow.dropped')
      .map((r) => {
        const a = Object.fromEntries((r.attributes as { key: string; value: string }[]).map((x) => [x.key, x.value]));
        return `${(r.window_start_ns as bigint - T) / S}s ${a['host.name']} ${a.signal} ${a.reason}=${r.sum}`;
      })
      .sort();
  const once = run([]);
  const total = (reason: string) => once.filter((l) => l.includes(` ${reason}=`)).reduce((a, l) => a + Number(l.split('=')[1]), 0);
  assert.deepEqual([total('kernel'), total('user'), total('invalid_value')], [40, 20, 10], once.join('\n'));
  assert.equal(new Set(once.map((l) => l.split('=')[0])).size, once.length, 'one point per window and reason');
  for (const crashAt of [[5], [17, 18], [40, 41, 90], [60, 120], [129]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
});
