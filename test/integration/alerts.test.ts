/**
 * The alerts stage on a real broker: MetricPoints of 4 windows for two hosts
 * in, exactly one FIRING and one RESOLVED for the hot host out
 * (read_committed), and nothing more after a restart.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, sleep, uncommittedRecords } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { ExpHistogram } from '../../processor/index.ts';
import { parseRules } from '../../processor/alerts.ts';
import { ALERTS_GROUP, ALERTS_TOPIC, createAlertsStage, type AlertsStage } from '../../processor/alerts-stage.ts';

const METRICS = 'ringflow.metrics.v1';
const NAME = 'ringflow.sched.runqueue.latency';
const WINDOW_NS = 10_000_000_000n;

const RULES = parseRules(`rules:
  - name: runqueue-latency-high
    metric: ${NAME}
    stat: p99
    op: ">"
    threshold: 10ms
    for: 3
    by: [host.name]
`);

function point(host: string, start: bigint, latencyS: number) {
  const h = new ExpHistogram();
  for (let i = 0; i < 100; i++) h.record(latencyS);
  return {
    key: `${NAME}|host.name=${host}`,
    value: encodeRecord(schemaRegistry().byTopic(METRICS)!, {
      name: NAME, unit: 's', kind: 'HISTOGRAM',
      attributes: [{ key: 'host.name', value: host }, { key: 'process.command', value: 'app' }],
      window_start_ns: start, window_end_ns: start + WINDOW_NS, histogram: h.toJSON(), sum: null, late_events: 0n, dropped_inputs: 0n, processor: 'it',
    }),
  };
}

interface Alert { rule: string; state: string; host: string; start: bigint; windows: number; value: number }

async function alerts(brokers: string): Promise<Alert[]> {
  return (await readTopic(brokers, ALERTS_TOPIC)).map((r) => {
    const v = r.value as Record<string, unknown>;
    const g = v.group as { key: string; value: string }[];
    return { rule: v.rule as string, state: v.state as string, host: g.find((x) => x.key === 'host.name')!.value, start: v.window_start_ns as bigint, windows: v.windows as number, value: v.value as number };
  });
}

async function waitFor(brokers: string, n: number): Promise<Alert[]> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const a = await alerts(brokers);
    if (a.length >= n || Date.now() > deadline) return a;
    await sleep(1000);
  }
}

describe('alerts stage: firing and resolved, exactly once', { timeout: 240_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let stage: AlertsStage | undefined;
  const base = (BigInt(Date.now()) * 1_000_000n / WINDOW_NS) * WINDOW_NS - 12n * WINDOW_NS; // aligned, older than flushAfter
  const logs: string[] = [];
  const newStage = () => createAlertsStage({ kafka, instanceId: 'it-alerts', rules: RULES, partitions: 3, log: (l) => logs.push(l), idleMs: 1000, tickMs: 250 });

  before(async () => {
    k = await ownBroker();
    kafka = new Kafka({ clientId: 'it-alerts', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [METRICS], 3);
    await admin.disconnect();
    const p = kafka.producer();
    await p.connect();
    const hot = [0.05, 0.05, 0.05, 0.001];
    for (let w = 0; w < 4; w++) {
      const start = base + BigInt(w) * WINDOW_NS;
      await p.send({ topic: METRICS, messages: [point('hot', start, hot[w]!), point('cold', start, 0.001)] });
    }
    await p.disconnect();
  });

  after(async () => {
    await stage?.stop();
    await k?.stop();
  });

  test('one FIRING after window 3 and one RESOLVED after window 4 for the hot host only', async () => {
    stage = newStage();
    await stage.start();
    const a = await waitFor(k.brokers, 2);
    assert.deepEqual(a.map((x) => [x.rule, x.state, x.host, x.start - base, x.windows]), [
      ['runqueue-latency-high', 'FIRING', 'hot', 2n * WINDOW_NS, 3],
      ['runqueue-latency-high', 'RESOLVED', 'hot', 3n * WINDOW_NS, 3],
    ]);
    assert.ok(a[0]!.value > 0.01 && a[1]!.value < 0.01);
    assert.ok(stage.counters.points >= 8); // more when a transaction failed (a fresh producer's first may) and was re-read
    assert.equal(stage.counters.alerts, 2);
  });

  test('a restarted stage resumes from the committed state: nothing twice', async () => {
    await stage!.stop();
    // what the first stage read is committed with its transactions: nothing past the group's offsets
    assert.deepEqual(await uncommittedRecords(k.brokers, ALERTS_GROUP, METRICS), [], 'the stopped stage committed every point it read');
    stage = newStage();
    await stage.start();
    // a count after a fixed sleep is also what a stage that has not joined yet gives: hand
    // the restarted stage one new point (no transition) and wait until it has read and
    // committed it; by then anything it re-read from before would have been evaluated again
    const p = kafka.producer();
    await p.connect();
    await p.send({ topic: METRICS, messages: [point('cold', base + 4n * WINDOW_NS, 0.001)] });
    await p.disconnect();
    const deadline = Date.now() + 60_000;
    while (stage.counters.points < 1 || (await uncommittedRecords(k.brokers, ALERTS_GROUP, METRICS)).length > 0) {
      assert.ok(Date.now() < deadline, `the restarted stage did not read and commit the new point in 60 s (points ${stage.counters.points})`);
      await sleep(250);
    }
    assert.ok(stage.counters.points < 8, `the restarted stage re-read old points: ${stage.counters.points}`);
    assert.equal((await alerts(k.brokers)).length, 2);
    assert.equal(stage.counters.alerts, 0);
    assert.deepEqual(logs.filter((l) => /unreadable|no state|idle flush failed/.test(l)), []);
  });
});
