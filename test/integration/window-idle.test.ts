/**
 * Issue 9, item 4: a quiet series' last window closes within window +
 * lateness + the idle grace (+ a little) of its last event, whatever else
 * keeps flowing through its partition.
 *
 * The collectors' stats records (every 5 s in production, every second here)
 * share the partition with the events (stage 1 keys both by topic and host).
 * They used to count as activity for stage 2's idle clock, so a partition
 * that only received stats was never "quiet": its last window waited ~60 s
 * for an unrelated event. Real broker, real processor; the delay is measured
 * from the moment the last event was produced to the moment its window's
 * point was readable (read_committed) in ringflow.metrics.v1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, runCli, sleep } from '../support/integration.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { IDLE_GRACE_NS } from '../../processor/partition.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const STATS = 'ringflow.collector.stats.v1';
const WINDOW_MS = 2000;
const LATENESS_MS = 1000;
/** Slack beyond window + lateness + idle grace: the idle tick (1 s), stage 1's 100 ms transactions, stage 2's flush. */
const SLACK_MS = 4000;

function runq(host: string, tsNs: bigint) {
  return encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
    cpu: 0, pid: 42, tgid: 42, uid: 0, ts_ns: tsNs, cgroup_id: 1n, comm: 'quiet', latency_ns: 1_000_000n, prev_pid: 0, kind: 'WAKEUP', host, boot_time_ns: 0n,
  });
}

function stats(host: string, timeNs: bigint) {
  return encodeRecord(schemaRegistry().byTopic(STATS)!, {
    host, boot_time_ns: 0n, time_ns: timeNs, interval_ns: 1_000_000_000n,
    events: [{ event: RUNQ, read: 0n, kernel_drops: 0n, user_drops: 0n, produced: 0n }],
    send_errors: 0n, pending: 0n, ring_bytes: 0n,
  });
}

test('a quiet series\' last window closes within window + lateness + idle grace while stats records keep flowing', { timeout: 180_000 }, async (t) => {
  const k = await ownBroker();
  const kafka = new Kafka({ clientId: 'it-window-idle', brokers: [k.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, [RUNQ, STATS], 1);
  await admin.disconnect();
  const proc = runCli(['process', '--brokers', k.brokers, '--window', `${WINDOW_MS / 1000}s`, '--lateness', `${LATENESS_MS / 1000}s`, '--partitions', '1', '--instance', 'it-idle']);
  const producer = kafka.producer();
  const consumer = kafka.consumer({ groupId: `it-window-idle-${Date.now()}`, readUncommitted: false });
  let statsTimer: NodeJS.Timeout | undefined;
  try {
    await proc.waitFor(/processing as it-idle/);
    await producer.connect();
    const arrived = new Map<string, number>(); // window start -> when its point was readable
    await consumer.connect();
    await consumer.subscribe({ topic: 'ringflow.metrics.v1', fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const v = decodeCurrent(message.value!).value as { name: string; window_start_ns: bigint };
        if (v.name === 'ringflow.sched.runqueue.latency' && !arrived.has(String(v.window_start_ns))) arrived.set(String(v.window_start_ns), Date.now());
      },
    });
    // stats from the start, as a collector sends them: every second, more often than the idle quiet period
    const sendStats = () => void producer.send({ topic: STATS, messages: [{ key: 'h1', value: stats('h1', BigInt(Date.now()) * 1_000_000n) }] }).catch(() => {});
    sendStats();
    statsTimer = setInterval(sendStats, 1000);
    await sleep(3000); // the groups have joined and stage 1 forwards stats
    const eventNs = BigInt(Date.now()) * 1_000_000n;
    await producer.send({ topic: RUNQ, messages: [{ key: 'h1/42', value: runq('h1', eventNs) }, { key: 'h1/42', value: runq('h1', eventNs + 1_000n) }] });
    const sentAt = Date.now();
    const windowStart = String((eventNs / BigInt(WINDOW_MS * 1e6)) * BigInt(WINDOW_MS * 1e6));
    const bound = WINDOW_MS + LATENESS_MS + Number(IDLE_GRACE_NS / 1_000_000n) + SLACK_MS;
    const until = sentAt + bound + 15_000; // wait past the bound, to measure how late a failing close is
    while (!arrived.has(windowStart) && Date.now() < until) await sleep(200);
    const delay = arrived.has(windowStart) ? arrived.get(windowStart)! - sentAt : Infinity;
    t.diagnostic(`last window closed ${delay} ms after its last event (bound ${bound} ms)`);
    assert.ok(delay <= bound, `the window closed ${delay} ms after its last event (stats records kept flowing); bound ${bound} ms`);
  } finally {
    clearInterval(statsTimer);
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    proc.child.kill('SIGTERM');
    await proc.exit;
    await k.stop();
  }
});
