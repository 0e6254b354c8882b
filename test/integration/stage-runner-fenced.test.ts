/**
 * The keyed stages' shared loop (processor/stage-runner.ts) when another
 * instance with the same --instance fences its transactional producer, on a
 * real broker: the spans, profiles and alerts stages each say so through onFatal,
 * once, naming itself, with no unhandled rejection; batches and idle ticks
 * that fail after it are not reported again. Stage 1 has the same test in
 * processor-faults.test.ts; this path of the keyed stages had none.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, sleep } from '../support/integration.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { createSpansStage } from '../../processor/spans-stage.ts';
import { createProfilesStage } from '../../processor/profiles-stage.ts';
import { createAlertsStage } from '../../processor/alerts-stage.ts';
import type { FatalError } from '../../common/errors.ts';
import { DEADLETTER_TOPIC, L7_TOPIC, METRICS_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_TOPIC, REPARTITION_TOPIC, SPANS_TOPIC } from '../../processor/topics.ts';
import { ALERTS_TOPIC } from '../../processor/alerts-stage.ts';

interface Stage {
  counters: { transactions: number };
  start(): Promise<void>;
  stop(): Promise<void>;
}

describe('processor: a keyed stage fenced by another instance', { timeout: 300_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  const stages: Stage[] = [];
  const rejections: unknown[] = [];
  const onRejection = (r: unknown) => void rejections.push(r);

  before(async () => {
    k = await ownBroker();
    process.on('unhandledRejection', onRejection);
    kafka = new Kafka({ clientId: 'it-stage-runner-fence', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [L7_TOPIC, SPANS_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_TOPIC, DEADLETTER_TOPIC, REPARTITION_TOPIC, METRICS_TOPIC, ALERTS_TOPIC], 1);
    await admin.disconnect();
  });
  after(async () => {
    process.off('unhandledRejection', onRejection);
    for (const s of stages) await s.stop().catch(() => {});
    await k?.stop();
  });

  /**
   * Starts the stage, has it commit (a record that does not decode is a dead letter: one
   * transaction per batch, whatever the stage), then fences it and feeds it more.
   */
  async function fence(name: string, topic: string, make: (log: (l: string) => void, onFatal: (e: FatalError) => void) => Stage): Promise<{ fatal: FatalError[]; log: string[] }> {
    const log: string[] = [];
    const fatal: FatalError[] = [];
    const stage = make((l) => log.push(l), (e) => fatal.push(e));
    stages.push(stage);
    await stage.start();
    const p = kafka.producer();
    await p.connect();
    const send = () => p.send({ topic, messages: [{ key: 'k', value: Buffer.from('not avro') }] });
    await send();
    for (let i = 0; i < 300 && stage.counters.transactions === 0; i++) await sleep(100);
    assert.ok(stage.counters.transactions > 0, `committed before the fence; the stage said:\n${log.join('\n')}`);

    // another instance with the same --instance: its producer's initTransactions fences ours
    const other = kafka.producer({ transactionalId: `ringflow-${name}-it-fence`, idempotent: true, maxInFlightRequests: 1 });
    await other.connect();
    await (await other.transaction()).abort(); // kafkajs inits a transactional id with its first transaction
    for (let i = 0; i < 5; i++) {
      await send();
      await sleep(500);
    }
    for (let i = 0; i < 100 && fatal.length === 0; i++) await sleep(100);
    await sleep(1500); // more batches and idle ticks: each fails again, none may say so again
    await other.disconnect();
    await p.disconnect();
    return { fatal, log };
  }

  test('the spans stage: one FatalError naming it, no unhandled rejection', async () => {
    const { fatal, log } = await fence('spans', L7_TOPIC, (l, f) => createSpansStage({ kafka, instanceId: 'it-fence', latenessNs: 0n, idleTickMs: 200, log: l, onFatal: f }));
    assert.deepEqual(rejections.map(String), [], 'no unhandled rejection');
    assert.equal(fatal.length, 1, `one FatalError (${fatal.map((e) => e.message).join(" | ")}); the stage said:\n${log.join("\n")}`);
    assert.match(fatal[0]!.message, /^processor spans stage: fenced: another processor runs as --instance it-fence/);
  });

  test('the profiles stage: one FatalError naming it, no unhandled rejection', async () => {
    const { fatal, log } = await fence('profiles', PROFILE_STACKS_TOPIC, (l, f) => createProfilesStage({ kafka, instanceId: 'it-fence', windowMs: 1000, latenessMs: 0, idleTickMs: 200, idleQuietMs: 200, log: l, onFatal: f }));
    assert.deepEqual(rejections.map(String), [], 'no unhandled rejection');
    assert.equal(fatal.length, 1, `one FatalError (${fatal.map((e) => e.message).join(" | ")}); the stage said:\n${log.join("\n")}`);
    assert.match(fatal[0]!.message, /^processor profiles stage: fenced: another processor runs as --instance it-fence/);
  });

  // the alerts stage keeps its own loop (one evaluator for all partitions); before, a fenced alerts
  // stage only logged a failed transaction and went on failing: never fatal
  test('the alerts stage: one FatalError naming it, no unhandled rejection', async () => {
    const { fatal, log } = await fence('alerts', METRICS_TOPIC, (l, f) => createAlertsStage({ kafka, instanceId: 'it-fence', rules: [], partitions: 1, idleMs: 200, tickMs: 200, log: l, onFatal: f }));
    assert.deepEqual(rejections.map(String), [], 'no unhandled rejection');
    assert.equal(fatal.length, 1, `one FatalError (${fatal.map((e) => e.message).join(" | ")}); the stage said:\n${log.join("\n")}`);
    assert.match(fatal[0]!.message, /^processor alerts stage: fenced: another processor runs as --instance it-fence/);
  });
});
