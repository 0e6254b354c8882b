/**
 * The processor on a real Kafka broker: known events in, exact windows out,
 * exactly once (also across SIGKILL), poison records to the dead-letter topic.
 * Each test runs its own broker: the processor's consumer groups are global.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, readTopicRaw, runCli, sleep, uncommittedRecords, type CliRun } from '../support/integration.ts';
import { DEADLETTER_TOPIC, REPARTITION_GROUP } from '../../processor/topics.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { ExpHistogram } from '../../processor/index.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const STATS = 'ringflow.collector.stats.v1';
const WINDOW_NS = 2_000_000_000n;

function runq(host: string, comm: string, tsNs: bigint, latencyNs: bigint) {
  return encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
    cpu: 0, pid: 42, tgid: 42, uid: 0, ts_ns: tsNs, cgroup_id: 1n, comm, latency_ns: latencyNs, prev_pid: 0, kind: 'WAKEUP', host, boot_time_ns: 0n,
  });
}

function stats(host: string, timeNs: bigint, drops: number) {
  return encodeRecord(schemaRegistry().byTopic(STATS)!, {
    host, boot_time_ns: 0n, time_ns: timeNs, interval_ns: 1_000_000_000n,
    events: [{ event: RUNQ, read: 100n, kernel_drops: BigInt(drops), user_drops: 0n, produced: 100n }],
    send_errors: 0n, pending: 0n, ring_bytes: 0n,
  });
}

interface Point { name: string; attrs: Record<string, string>; start: bigint; count: number; late: number; dropped: number; hist: Record<string, unknown> | null }

async function metricPoints(brokers: string): Promise<Point[]> {
  return (await readTopic(brokers, 'ringflow.metrics.v1')).map((r) => {
    const v = r.value as Record<string, unknown>;
    const h = v.histogram as Record<string, unknown> | null;
    return {
      name: v.name as string,
      attrs: Object.fromEntries((v.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value])),
      start: v.window_start_ns as bigint,
      count: h ? Number(h.count) : Number(v.sum),
      late: Number(v.late_events),
      dropped: Number(v.dropped_inputs),
      hist: h,
    };
  });
}

describe('processor: exact windows', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let proc: CliRun | undefined;
  const base = (BigInt(Date.now()) * 1_000_000n / WINDOW_NS) * WINDOW_NS - 20n * WINDOW_NS; // aligned, in the past
  const W0 = base;
  const W1 = base + WINDOW_NS;

  before(async () => {
    k = await ownBroker();
    const kafka = new Kafka({ clientId: 'it-processor', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ, STATS], 3);
    await admin.disconnect();
    const p = kafka.producer();
    await p.connect();
    const msgs: { key: string; value: Buffer }[] = [];
    const add = (host: string, comm: string, start: bigint, n: number, latNs: bigint) => {
      for (let i = 0; i < n; i++) msgs.push({ key: `${host}/${comm}`, value: runq(host, comm, start + BigInt(i) * 1_000_000n, latNs) });
    };
    add('h1', 'a', W0, 100, 1_000_000n);
    add('h1', 'b', W0, 30, 250_000n);
    add('h1', 'a', W1, 50, 4_000_000n);
    add('h2', 'a', W1, 70, 1_000_000n);
    await p.send({ topic: RUNQ, messages: msgs });
    await p.send({ topic: STATS, messages: [{ key: 'h1', value: stats('h1', W0 + 500_000_000n, 7) }] });
    // a poison record: not an Avro single-object record at all
    await p.send({ topic: RUNQ, messages: [{ key: 'junk', value: Buffer.from('not avro') }] });
    await p.disconnect();

    proc = runCli(['process', '--brokers', k.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '3', '--instance', 'it-a']);
    await proc.waitFor(/processing as it-a/);
    // windows close when the partitions fall idle for the lateness period
    for (let i = 0; i < 60; i++) {
      await sleep(1000);
      const pts = (await metricPoints(k.brokers)).filter((p) => p.name === 'ringflow.sched.runqueue.latency');
      if (pts.length >= 4) break;
    }
    await sleep(2000); // anything extra (a duplicate) would show up by now
  });

  after(async () => {
    proc?.child.kill('SIGTERM');
    if (proc) await proc.exit;
    await k?.stop();
  });

  test('each series and window exactly once, with exact counts, histograms and drops', async () => {
    const pts = (await metricPoints(k.brokers)).filter((p) => p.name === 'ringflow.sched.runqueue.latency');
    const got = pts.map((p) => `${p.attrs['host.name']}/${p.attrs['process.command']}/${p.start === W0 ? 'W0' : p.start === W1 ? 'W1' : p.start}=${p.count} dropped ${p.dropped}`).sort();
    assert.deepEqual(got, ['h1/a/W0=100 dropped 7', 'h1/a/W1=50 dropped 0', 'h1/b/W0=30 dropped 7', 'h2/a/W1=70 dropped 0']);
    const h1a0 = pts.find((p) => p.attrs['host.name'] === 'h1' && p.attrs['process.command'] === 'a' && p.start === W0)!;
    const expect = new ExpHistogram();
    expect.record(0.001, 100);
    assert.deepEqual({ ...h1a0.hist, sum: Number((h1a0.hist!.sum as number).toFixed(9)) }, { ...expect.toJSON(), count: 100n, zero_count: 0n, positive_buckets: expect.toJSON().positive_buckets.map(BigInt), sum: 0.1 });
    for (const p of pts) assert.equal(p.late, 0);
  });

  test('a record that cannot be decoded goes to the dead-letter topic with its source, once', async () => {
    // read the dead-letter topic to its end only once the processor has committed past the
    // poison record: stopping at the first letter could never see a second copy of it
    const deadline = Date.now() + 60_000;
    while ((await uncommittedRecords(k.brokers, REPARTITION_GROUP, RUNQ)).length > 0) {
      assert.ok(Date.now() < deadline, `the processor did not commit ${RUNQ} to its end in 60 s`);
      await sleep(500);
    }
    const seen = (await readTopicRaw(k.brokers, DEADLETTER_TOPIC)).map((r) => r.headers).filter((h) => h['ringflow.source.topic'] === RUNQ);
    assert.equal(seen.length, 1, `one dead letter for the one poison record: ${JSON.stringify(seen)}`);
    assert.equal(seen[0]!['ringflow.source.topic'], RUNQ);
    assert.match(seen[0]!['ringflow.source.offset']!, /^\d+$/);
    assert.match(seen[0]!['ringflow.error']!, /BAD_MAGIC/);
    assert.match(proc!.stderr(), /dead letter/);
  });
});

describe('processor: exactly once across SIGKILL', { timeout: 300_000 }, () => {
  test('killed mid-stream and restarted, every window is emitted once with exact counts', async () => {
    const k = await ownBroker();
    const kafka = new Kafka({ clientId: 'it-processor-kill', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ, STATS], 3);
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    const args = ['process', '--brokers', k.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '3', '--instance', 'it-kill'];
    let proc = runCli(args);
    const expected = new Map<string, number>();
    try {
      await proc.waitFor(/processing as it-kill/);
      const t0 = Date.now();
      let killed = false;
      let restarted = false;
      let seq = 0;
      // 12 s of events stamped with the current time, from 3 hosts x 2 commands
      while (Date.now() - t0 < 12_000) {
        const msgs: { key: string; value: Buffer }[] = [];
        for (const host of ['h1', 'h2', 'h3']) {
          for (const comm of ['c1', 'c2']) {
            for (let i = 0; i < 10; i++) {
              const ts = BigInt(Date.now()) * 1_000_000n + BigInt(seq++ % 1000);
              msgs.push({ key: `${host}/${comm}`, value: runq(host, comm, ts, 1_000_000n) });
              const w = `${host}/${comm}/${(ts / WINDOW_NS) * WINDOW_NS}`;
              expected.set(w, (expected.get(w) ?? 0) + 1);
            }
          }
        }
        await producer.send({ topic: RUNQ, messages: msgs });
        if (!killed && Date.now() - t0 > 4_000) {
          assert.ok((await metricPoints(k.brokers)).length > 0, 'some windows were emitted before the kill');
          proc.child.kill('SIGKILL');
          await proc.exit;
          killed = true;
        }
        if (killed && !restarted && Date.now() - t0 > 6_000) {
          proc = runCli(args);
          restarted = true;
        }
        await sleep(100);
      }
      // every window closes once its partition is idle for the lateness
      const want = [...expected.entries()].map(([w, n]) => `${w}=${n}`).sort();
      let got: string[] = [];
      const deadline = Date.now() + 75_000;
      while (Date.now() < deadline) {
        await sleep(1000);
        const pts = (await metricPoints(k.brokers)).filter((p) => p.name === 'ringflow.sched.runqueue.latency');
        got = pts.map((p) => `${p.attrs['host.name']}/${p.attrs['process.command']}/${p.start}=${p.count}`).sort();
        if (got.length >= want.length) break;
      }
      await sleep(3000);
      const pts = (await metricPoints(k.brokers)).filter((p) => p.name === 'ringflow.sched.runqueue.latency');
      got = pts.map((p) => `${p.attrs['host.name']}/${p.attrs['process.command']}/${p.start}=${p.count}`).sort();
      assert.deepEqual(got, want, 'one point per series and window, each with the exact count');
      assert.equal(pts.reduce((a, p) => a + p.late, 0), 0, 'no event was late');
    } finally {
      await producer.disconnect();
      proc.child.kill('SIGTERM');
      await proc.exit;
      await k.stop();
    }
  });
});
