/**
 * processor/stage-clients.ts TxProducer on a real broker that goes away in
 * the middle of a transaction: the abort fails, which leaves a kafkajs
 * transactional producer in ABORTING for good ('Cannot call
 * "beginTransaction" in state "ABORTING"' on every later transaction: the
 * soak's stage 2 stopped writing metrics after a broker restart). Once the
 * broker is back, the next transaction must work, on a new producer with the
 * same transactional id, and what the aborted one sent must never commit.
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, sleep } from '../support/integration.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { TxProducer } from '../../processor/stage-clients.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';

const TOPIC = 'it-processor-producer';

describe('processor: a transactional producer across a broker restart', { timeout: 300_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>> | undefined;
  let tp: TxProducer | undefined;
  after(async () => {
    await tp?.disconnect().catch(() => {});
    await k?.stop();
  });

  test('a transaction whose abort failed while the broker was down is followed by working ones once it is back', async () => {
    k = await ownBroker();
    const kafka = createKafkaClient([k.brokers], 'it-processor-producer');
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [TOPIC], 1);
    await admin.disconnect();
    tp = new TxProducer(() => kafka.producer({ transactionalId: 'it-processor-producer-tx', idempotent: true, maxInFlightRequests: 1 }));
    await tp.connect();
    const ok = await tp.transaction();
    await ok.send({ topic: TOPIC, messages: [{ key: 'k', value: 'committed-1' }] });
    await ok.commit();

    const doomed = await tp.transaction();
    await doomed.send({ topic: TOPIC, messages: [{ key: 'k', value: 'aborted' }] });
    await stopBroker({ stateDir: k.stateDir });
    await tp.abort(doomed, new Error('the broker went away'));
    await startBroker({ stateDir: k.stateDir, port: k.port, controllerPort: k.controllerPort });

    // the coordinator loads its state after a restart: the first attempts may be refused
    let err: unknown;
    for (let i = 0; i < 60; i++) {
      try {
        const tx = await tp.transaction();
        await tx.send({ topic: TOPIC, messages: [{ key: 'k', value: 'committed-2' }] });
        await tx.commit();
        err = undefined;
        break;
      } catch (e) {
        err = e;
        await sleep(1000);
      }
    }
    assert.equal(err, undefined, `no transaction worked after the restart: ${String((err as Error)?.message)}`);
    assert.equal(tp.renewals, 1, 'the producer left in ABORTING was replaced once');

    // read_committed: the two committed records, not the aborted one
    const seen: string[] = [];
    const c = new Kafka({ clientId: 'it-processor-producer-read', brokers: [k.brokers], logLevel: logLevel.NOTHING }).consumer({ groupId: `it-pp-${Date.now()}`, readUncommitted: false });
    await c.connect();
    await c.subscribe({ topic: TOPIC, fromBeginning: true });
    await c.run({ eachMessage: async ({ message }) => void seen.push(String(message.value)) });
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(100);
    await sleep(1500);
    await c.disconnect();
    assert.deepEqual(seen, ['committed-1', 'committed-2']);
  });
});
