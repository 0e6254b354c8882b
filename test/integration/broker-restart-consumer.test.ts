/**
 * Issue 9, soak finding 2: a consumer kafkajs stops for good because the
 * group's coordinator cannot be found (KafkaJSGroupCoordinatorNotFound, as on a
 * fresh or loaded broker that does not answer yet) is run again by
 * superviseConsumer once the broker answers, and one that cannot reach its
 * group for outageLimitMs still ends the stage (onFatal), so a supervisor sees
 * a permanent failure.
 *
 * The fault: the test's own broker is frozen (SIGSTOP) between the consumer's
 * connect and its run, so the coordinator lookup of the join times out on the
 * only broker. kafkajs then crashes with exactly the soak's error and does not
 * restart. The client's requestTimeout is 3 s here (the stages' is 30 s) to
 * keep the test short; the crash is the same.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from '../../kafka/kafkajs.ts';
import { superviseConsumer } from '../../kafka/client.ts';
import type { FatalError } from '../../common/errors.ts';
import { ownBroker, sleep } from '../support/integration.ts';

const { Kafka, logLevel } = kafkajs;

let broker: Awaited<ReturnType<typeof ownBroker>>;
let frozen = false;
const freeze = () => {
  process.kill(broker.pid, 'SIGSTOP');
  frozen = true;
};
const thaw = () => {
  if (frozen) process.kill(broker.pid, 'SIGCONT');
  frozen = false;
};

before(async () => {
  broker = await ownBroker();
});
after(async () => {
  thaw();
  await broker.stop();
});

const client = () => new Kafka({
  clientId: 'it-supervise', brokers: [broker.brokers], connectionTimeout: 3000, requestTimeout: 3000,
  logLevel: logLevel.NOTHING, retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 3 },
});

async function topicWith(topic: string, from: number, n: number): Promise<void> {
  const producer = client().producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: Array.from({ length: n }, (_, i) => ({ value: String(from + i) })) });
  await producer.disconnect();
}

async function waitFor(what: string, fn: () => boolean, timeoutMs: number, lines: string[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; supervisor said:\n${lines.join('\n')}`);
    await sleep(200);
  }
}

/** A supervised consumer of a new topic, connected and subscribed, not yet run. */
async function supervised(name: string, outageLimitMs: number) {
  const topic = `rf.it.${name}`;
  const admin = client().admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();
  await topicWith(topic, 0, 5);
  const lines: string[] = [];
  const got: number[] = [];
  let fatal: FatalError | undefined;
  let fatals = 0;
  const consumer = client().consumer({ groupId: `rf-it-${name}`, maxWaitTimeInMs: 500 });
  superviseConsumer(consumer, name, (l) => lines.push(l), (e) => {
    fatal = e;
    fatals++;
  }, { outageLimitMs, initialBackoffMs: 200, maxBackoffMs: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const run = () => consumer.run({ eachMessage: async ({ message }) => void got.push(Number(message.value!.toString())) });
  return { topic, consumer, run, lines, got, fatal: () => fatal, fatals: () => fatals };
}

test('a consumer whose group coordinator cannot be found at its join is run again once the broker answers', { timeout: 120_000 }, async (t) => {
  const c = await supervised('coordinator-not-found', 5 * 60_000);
  t.after(() => c.consumer.disconnect().catch(() => {}));
  freeze();
  t.after(thaw);
  await c.run();
  await waitFor('the crash to be reported or escalated', () => c.lines.length > 0 || c.fatal() !== undefined, 30_000, c.lines);
  await sleep(5000); // it keeps failing meanwhile
  assert.equal(c.fatal()?.message, undefined, `escalated while the broker was frozen:\n${c.lines.join('\n')}`);
  thaw();

  await waitFor('the first 5 records', () => c.got.length >= 5, 60_000, c.lines);
  await topicWith(c.topic, 5, 5);
  await waitFor('all 10 records', () => c.got.length >= 10, 30_000, c.lines);
  assert.deepEqual([...new Set(c.got)].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(c.fatal(), undefined, c.lines.join('\n'));
  assert.match(c.lines[0]!, /coordinator-not-found: consumer restarting after .*GroupCoordinatorNotFound/);
  assert.ok(c.lines.some((l) => /back in its group after [\d.]+ s \(\d+ crash/.test(l)), c.lines.join('\n'));
  t.diagnostic(c.lines.join(' | '));
});

test('a consumer that cannot reach its group for outageLimitMs ends the stage (onFatal), once', { timeout: 120_000 }, async (t) => {
  const c = await supervised('outage-limit', 6000);
  t.after(() => c.consumer.disconnect().catch(() => {}));
  freeze();
  t.after(thaw);
  await c.run();
  await waitFor('the escalation', () => c.fatal() !== undefined, 60_000, c.lines);
  thaw();
  assert.match(c.fatal()!.message, /outage-limit: consumer could not reach its group for \d+ s \(\d+ crashes, last .*\); check the brokers/);
  assert.equal(c.fatal()!.exitCode, 5);
  // no run after giving up: nothing is consumed even now that the broker answers
  await sleep(5000);
  assert.equal(c.got.length, 0, c.lines.join('\n'));
  assert.equal(c.fatals(), 1);
});

test('a crash kafkajs restarts again and again, each time back in the group, is said once a minute, not twice per crash', { timeout: 120_000 }, async (t) => {
  const c0 = await supervised('recurring', 5 * 60_000);
  const { consumer, lines, topic } = c0;
  t.after(() => consumer.disconnect().catch(() => {}));
  let crashes = 0;
  consumer.on(consumer.events.CRASH, () => void crashes++);
  const got: number[] = [];
  // a retriable error of the stage's own: kafkajs retries the batch, then crashes and restarts the consumer
  const KafkaJSError = (kafkajs as unknown as Record<string, new (m: string) => Error>).KafkaJSError!;
  await consumer.run({
    eachMessage: async ({ message }) => {
      if (crashes < 3) throw new KafkaJSError('not yet');
      got.push(Number(message.value!.toString()));
    },
  });
  await waitFor(`the 5 records after 3 crashes (${topic})`, () => got.length >= 5, 90_000, lines);
  assert.equal(crashes, 3);
  assert.equal(c0.fatal(), undefined, lines.join('\n'));
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[0]!, /recurring: consumer restarting after KafkaJS\w+: not yet/);
  assert.match(lines[1]!, /recurring: consumer back in its group after/);
});
