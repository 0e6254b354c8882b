/**
 * Issue 9, item 5: a value outside its physically possible range (a latency
 * of -1 ns from a wrapped u64, one of 2^62 ns = 146 years) is not data: stage
 * 1 sends its record to ringflow.deadletter.v1 with the reason, and the
 * point of its series holds only the valid events; the two are counted in
 * ringflow.metrics.v1 as ringflow.dropped{reason=invalid_value}. Real broker, real processor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const DLQ = 'ringflow.deadletter.v1';

function runq(tsNs: bigint, latencyNs: bigint) {
  return encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
    cpu: 0, pid: 7, tgid: 7, uid: 0, ts_ns: tsNs, cgroup_id: 1n, comm: 'vals', latency_ns: latencyNs, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
  });
}

test('latencies of -1 ns and 2^62 ns are dead-lettered with a reason, not aggregated and not dropped silently', { timeout: 180_000 }, async () => {
  const k = await ownBroker();
  const kafka = new Kafka({ clientId: 'it-drops-invalid', brokers: [k.brokers], logLevel: logLevel.NOTHING });
  const proc = runCli(['process', '--brokers', k.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '1', '--instance', 'it-vals']);
  const consumer = kafka.consumer({ groupId: `it-drops-invalid-${Date.now()}` });
  try {
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ], 1);
    await admin.disconnect();
    await proc.waitFor(/processing as it-vals/);
    const p = kafka.producer();
    await p.connect();
    const t0 = (BigInt(Date.now()) * 1_000_000n / 2_000_000_000n) * 2_000_000_000n - 20_000_000_000n; // a window in the past
    const msgs = Array.from({ length: 10 }, (_, i) => ({ key: 'h1/7', value: runq(t0 + BigInt(i) * 1_000_000n, 1_000_000n) }));
    msgs.splice(3, 0, { key: 'h1/7', value: runq(t0 + 3_500_000n, -1n) });
    msgs.splice(7, 0, { key: 'h1/7', value: runq(t0 + 7_500_000n, 2n ** 62n) });
    await p.send({ topic: RUNQ, messages: msgs });
    await p.disconnect();

    // every dead letter, with its headers; read on after the second to see a duplicate
    const dead: Record<string, string>[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: DLQ, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => {
      dead.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([a, b]) => [a, String(b)])));
    } });
    let points: Record<string, unknown>[] = [];
    let dropped: Record<string, unknown>[] = [];
    for (let i = 0; i < 60 && (points.length === 0 || dropped.length === 0 || dead.length < 2); i++) {
      await sleep(1000);
      const all = (await readTopic(k.brokers, 'ringflow.metrics.v1', 1000)).map((r) => r.value);
      points = all.filter((v) => v.name === 'ringflow.sched.runqueue.latency');
      dropped = all.filter((v) => v.name === 'ringflow.dropped');
    }
    await sleep(3000);
    // counted where every drop is: ringflow.metrics.v1, per reason and signal, in the events' window
    assert.deepEqual(dropped.map((v) => [Object.fromEntries((v.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value])), v.sum, v.window_start_ns]),
      [[{ 'host.name': 'h1', reason: 'invalid_value', signal: RUNQ }, 2n, t0]]);
    assert.equal(points.length, 1, JSON.stringify(points, (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
    const h = points[0]!.histogram as { count: bigint; max: number; min: number };
    assert.equal(h.count, 10n, 'only the valid events');
    assert.equal(h.max, 0.001, 'no 146 years');
    assert.deepEqual(dead.map((d) => [d['ringflow.source.topic'], d['ringflow.reason']]), [[RUNQ, 'invalid_value'], [RUNQ, 'invalid_value']]);
    assert.match(dead[0]!['ringflow.error']!, /latency_ns -1 is negative/);
    assert.match(dead[1]!['ringflow.error']!, /latency_ns 4611686018427387904 is over 3600 s/);
  } finally {
    await consumer.disconnect().catch(() => {});
    proc.child.kill('SIGTERM');
    await proc.exit;
    await k.stop();
  }
});
