/**
 * Issue 9, item 5: the collectors' drops reach ringflow.metrics.v1 as
 * ringflow.dropped points per host, reason (kernel, user) and signal (the
 * event topic), once per window: also for a window in which every event was
 * dropped (no series point to carry dropped_inputs). The collector's losses
 * by cause (drop_reasons, kernel_losses) reach it as ringflow.collector.losses
 * {host.name, location, reason}, once per stats record although stage 1 hands
 * stage 2 a copy per listed topic. Then `ringflow export` ships both to a
 * real OpenTelemetry Collector: monotonic delta Sums of ints, the same counts.
 * Real broker, real processor, real collector.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, ownBroker, readTopic, runCli, sleep } from '../support/integration.ts';
import { readOtlpFile, startOtelcol, stopOtelcol } from '../../cli/otelcol.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const STATS = 'ringflow.collector.stats.v1';
const CSW = 'ringflow.sched.cswitch.v1';
const W = 2_000_000_000n;

function runq(tsNs: bigint) {
  return encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
    cpu: 0, pid: 9, tgid: 9, uid: 0, ts_ns: tsNs, cgroup_id: 1n, comm: 'd', latency_ns: 1_000_000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
  });
}

function stats(timeNs: bigint, kernel: number, user: number) {
  // two topics: stage 1 fans the record out to both (their losses must count once)
  return encodeRecord(schemaRegistry().byTopic(STATS)!, {
    host: 'h1', boot_time_ns: 0n, time_ns: timeNs, interval_ns: 1_000_000_000n,
    events: [
      { event: RUNQ, read: 100n, kernel_drops: BigInt(kernel), user_drops: BigInt(user), produced: 100n },
      { event: CSW, read: 0n, kernel_drops: 0n, user_drops: 0n, produced: 0n },
    ],
    send_errors: 0n, pending: 0n, ring_bytes: 0n,
    drop_reasons: user > 0 ? [{ reason: 'backpressure', count: BigInt(user) }] : [],
    kernel_losses: [{ reason: 'block_orphaned', count: BigInt(kernel + 1) }],
  });
}

test('collector drops reach ringflow.metrics.v1 as ringflow.dropped{reason, signal} per window, once; losses by cause as ringflow.collector.losses, once per stats record', { timeout: 180_000 }, async () => {
  const k = await ownBroker();
  const kafka = new Kafka({ clientId: 'it-drops-metrics', brokers: [k.brokers], logLevel: logLevel.NOTHING });
  const proc = runCli(['process', '--brokers', k.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '1', '--instance', 'it-drops']);
  let exp: ReturnType<typeof runCli> | undefined;
  const colDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-drops-otelcol-'));
  try {
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ, STATS], 1);
    await admin.disconnect();
    await proc.waitFor(/processing as it-drops/);
    const base = (BigInt(Date.now()) * 1_000_000n / W) * W - 20n * W; // aligned, in the past
    const p = kafka.producer();
    await p.connect();
    // W0: events and drops; W2: drops only (every event of the window lost); W4: events that close both
    await p.send({ topic: RUNQ, messages: [0, 1, 2].map((i) => ({ key: 'h1/9', value: runq(base + BigInt(i) * 1_000_000n) })) });
    await p.send({ topic: STATS, messages: [
      { key: 'h1', value: stats(base + 500_000_000n, 7, 3) },
      { key: 'h1', value: stats(base + 2n * W + 500_000_000n, 11, 0) },
    ] });
    // later, as time goes on (in one stage-1 transaction, stats records follow the partials:
    // a W4 event in it would have closed W0 and W2 first, and their drops would count in W4, as late events do)
    await sleep(3000);
    await p.send({ topic: RUNQ, messages: [{ key: 'h1/9', value: runq(base + 4n * W) }] });
    await p.disconnect();

    const want = [`${base}|kernel=7`, `${base}|user=3`, `${base + 2n * W}|kernel=11`];
    const wantLosses = [`${base}|user|backpressure=3`, `${base}|kernel|block_orphaned=8`, `${base + 2n * W}|kernel|block_orphaned=12`].sort();
    let got: string[] = [];
    let losses: string[] = [];
    for (let i = 0; i < 60; i++) {
      await sleep(1000);
      const values = (await readTopic(k.brokers, 'ringflow.metrics.v1', 1000)).map((r) => r.value);
      losses = values
        .filter((v) => v.name === 'ringflow.collector.losses')
        .map((v) => {
          const a = Object.fromEntries((v.attributes as { key: string; value: string }[]).map((x) => [x.key, x.value]));
          assert.deepEqual([a['host.name'], v.kind, v.unit, (v.window_end_ns as bigint) - (v.window_start_ns as bigint)], ['h1', 'SUM', '{record}', W]);
          return `${v.window_start_ns}|${a.location}|${a.reason}=${v.sum}`;
        })
        .sort();
      got = values
        .filter((v) => v.name === 'ringflow.dropped')
        .map((v) => {
          const a = Object.fromEntries((v.attributes as { key: string; value: string }[]).map((x) => [x.key, x.value]));
          assert.deepEqual([a['host.name'], a.signal, v.kind, v.unit], ['h1', RUNQ, 'SUM', '{event}']);
          assert.equal((v.window_end_ns as bigint) - (v.window_start_ns as bigint), W);
          return `${v.window_start_ns}|${a.reason}=${v.sum}`;
        })
        .sort();
      if (got.length >= want.length && losses.length >= wantLosses.length) break;
    }
    await sleep(3000);
    const all = await readTopic(k.brokers, 'ringflow.metrics.v1', 1000);
    const again = all.filter((r) => r.value.name === 'ringflow.dropped').length;
    assert.deepEqual(got, want.sort());
    assert.equal(again, want.length, 'each once');
    assert.deepEqual(losses, wantLosses);
    assert.equal(all.filter((r) => r.value.name === 'ringflow.collector.losses').length, wantLosses.length, 'losses once, not once per topic copy');

    // the OTLP end: the same counts, as monotonic delta Sums of ints (host.name on the Resource)
    const grpcPort = await freePort();
    const { outputFile } = await startOtelcol({ stateDir: colDir, grpcPort });
    exp = runCli(['export', '--brokers', k.brokers, '--signals', 'metrics'], { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` } });
    await exp.waitFor(/exporting/);
    const str = (attrs: { key: string; value: { stringValue?: string } }[] | undefined, key: string) => attrs?.find((a) => a.key === key)?.value.stringValue;
    let otlp: string[] = [];
    const wantOtlp = [...want.map((w) => `ringflow.dropped|{event}|${w}`), ...wantLosses.map((w) => `ringflow.collector.losses|{record}|${w}`)].sort();
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(1000)) {
      otlp = [];
      for (const rm of readOtlpFile(outputFile).metrics) {
        if (str(rm.resource?.attributes, 'host.name') !== 'h1') continue;
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            if (m.name !== 'ringflow.dropped' && m.name !== 'ringflow.collector.losses') continue;
            assert.deepEqual([m.sum?.aggregationTemporality, m.sum?.isMonotonic], [1, true], `${m.name}: a monotonic DELTA Sum`); // 1: AGGREGATION_TEMPORALITY_DELTA
            for (const dp of m.sum.dataPoints) {
              assert.equal(BigInt(dp.timeUnixNano) - BigInt(dp.startTimeUnixNano), W);
              const what = m.name === 'ringflow.dropped' ? str(dp.attributes, 'reason') : `${str(dp.attributes, 'location')}|${str(dp.attributes, 'reason')}`;
              otlp.push(`${m.name}|${m.unit}|${dp.startTimeUnixNano}|${what}=${dp.asInt}`);
            }
          }
        }
      }
      otlp.sort();
      if (otlp.length >= wantOtlp.length) break;
    }
    assert.deepEqual(otlp, wantOtlp);
  } finally {
    if (exp) {
      exp.child.kill('SIGTERM');
      await exp.exit;
    }
    await stopOtelcol({ stateDir: colDir }).catch(() => {});
    fs.rmSync(colDir, { recursive: true, force: true });
    proc.child.kill('SIGTERM');
    await proc.exit;
    await k.stop();
  }
});
