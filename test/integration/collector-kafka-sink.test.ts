/**
 * The collector's Kafka sink against a real broker (issue 9, part A):
 * requests stay under the topic's max.message.bytes, a record over it alone
 * goes to the dead-letter topic (or is dropped when even that refuses it),
 * counted either way; a broker outage is retried, reported with the real
 * number of records delivered once the queue drains, and a second outage is
 * reported again.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type { Producer } from 'kafkajs';
import kafkajs, { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { FatalError, EXIT } from '../../common/errors.ts';
import { createKafkaSink, DEADLETTER_TOPIC } from '../../collector/kafka-sink.ts';
import type { OutRecord } from '../../collector/sink.ts';
import { ownBroker, testBrokers, sleep } from '../support/integration.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';

const require = createRequire(import.meta.url);

interface Got { key: string; value: Buffer; headers: Record<string, string> }

/** Every record of `topic` (raw bytes), read until `want` match or the timeout. */
async function readRaw(brokers: string, topic: string, want: (all: Got[]) => boolean, timeoutMs = 30_000): Promise<Got[]> {
  const kafka = new Kafka({ clientId: 'it-sink-reader', brokers: [brokers], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `it-sink-${process.pid}-${Date.now()}-${Math.random()}` });
  const got: Got[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        got.push({ key: String(message.key), value: message.value!, headers });
      },
    });
    const deadline = Date.now() + timeoutMs;
    while (!want(got) && Date.now() < deadline) await sleep(200);
    await sleep(500); // anything more than wanted shows up too
    return got;
  } finally {
    await consumer.disconnect();
  }
}

const rec = (topic: string, key: string, bytes: number, type = 1): OutRecord => ({ topic, key, type, value: crypto.randomBytes(bytes) });

/** A new topic with max.message.bytes=8192. */
async function smallTopic(prefix: string, partitions: number): Promise<string> {
  const topic = `${prefix}-${process.pid}-${Date.now()}`;
  const admin = new Kafka({ clientId: 'it-sink-admin', brokers: [brokers], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: '8192' }] }] });
  } finally {
    await admin.disconnect();
  }
  return topic;
}

// one broker for the tests that do not stop it (the suite's, or our own when this file runs alone)
let brokers = '';
let stop = async () => {};
before(async () => ({ brokers, stop } = await testBrokers()));
after(async () => stop());

describe('collector Kafka sink: broker size limits and the dead-letter topic', { timeout: 240_000 }, () => {
  test('requests are cut under max.message.bytes; a record alone over it is dead-lettered (its first KiB, as the processor does), counted', async () => {
    const topic = await smallTopic('it-sink-small', 3);

    const lines: string[] = [];
    const sink = createKafkaSink({ brokers: [brokers], clientId: 'it-sink', topics: [topic], partitions: 3, compression: 'zstd', maxBatchRecords: 20_000, log: (l) => lines.push(l) });
    await sink.start();
    try {
      assert.equal(sink.limits().perTopic.get(topic), 8192, 'max.message.bytes read from the topic');
      assert.equal(sink.limits().partitions.get(topic), 3);
      // incompressible, so compression cannot save an oversized request
      const small = Array.from({ length: 300 }, (_, i) => rec(topic, `k${i % 10}`, 1000));
      const overTopic = rec(topic, 'big', 20_000, 2); // over the topic's limit
      const overAll = rec(topic, 'huge', 1_200_000, 3); // over Kafka's default limit too: the dead-letter topic would refuse it whole
      sink.enqueue(small.slice(0, 150));
      sink.enqueue([overTopic]);
      sink.enqueue(small.slice(150));
      sink.enqueue([overAll]);
      assert.equal(await sink.flush(90_000), true, `flushed; log: ${lines.join(' | ')}`);

      assert.equal(sink.counters.produced.get(1), 300);
      assert.deepEqual(Object.fromEntries(sink.counters.drops!), { too_large_dead_lettered: 2 });
      assert.deepEqual(Object.fromEntries(sink.counters.lost!), { 2: 1, 3: 1 });
      assert.equal(lines.filter((l) => /written to ringflow\.deadletter\.v1/.test(l)).length, 1, `one line per kind: ${lines.join('\n')}`);

      const got = await readRaw(brokers, topic, (a) => a.length >= 300);
      assert.equal(got.length, 300, 'each small record once, none of the oversized');
      assert.deepEqual(new Set(got.map((g) => g.value.toString('hex'))), new Set(small.map((r) => r.value.toString('hex'))));

      const mine = (a: Got[]) => a.filter((g) => g.headers['ringflow.target.topic'] === topic);
      const letters = mine(await readRaw(brokers, DEADLETTER_TOPIC, (a) => mine(a).length >= 2)).sort((a, b) => a.key.localeCompare(b.key));
      assert.deepEqual(letters.map((l) => [l.key, l.headers['ringflow.reason'], l.headers['ringflow.target.key'], l.headers['ringflow.value.bytes']]), [
        [`${topic}/oversized/big`, 'oversized', 'big', '20000'],
        [`${topic}/oversized/huge`, 'oversized', 'huge', '1200000'],
      ]);
      assert.deepEqual(letters[0]!.value, overTopic.value.subarray(0, 1024));
      assert.deepEqual(letters[1]!.value, overAll.value.subarray(0, 1024));
      for (const l of letters) assert.match(l.headers['ringflow.error']!, /(MESSAGE_TOO_LARGE|larger than the max message size).*its first 1024 bytes kept/);
    } finally {
      await sink.close();
    }
  });
});

describe('collector Kafka sink: its own callbacks', { timeout: 120_000 }, () => {
  test('a progress listener that throws is reported; delivery and flush go on, no unhandled rejection', async () => {
    const topic = `it-sink-cb-${process.pid}-${Date.now()}`;
    const lines: string[] = [];
    const sink = createKafkaSink({ brokers: [brokers], clientId: 'it-sink-cb', topics: [topic], partitions: 1, compression: 'zstd', maxBatchRecords: 10, log: (l) => lines.push(l) });
    let calls = 0;
    sink.onProgress(() => {
      calls++;
      throw new Error('listener fault');
    });
    await sink.start();
    try {
      sink.enqueue(Array.from({ length: 35 }, (_, i) => rec(topic, `k${i}`, 50)));
      assert.equal(await sink.flush(30_000), true, lines.join(' | '));
      assert.equal(sink.counters.produced.get(1), 35);
      assert.equal(calls, 4, 'one call per acknowledged request');
      assert.equal(lines.filter((l) => /internal error.*listener fault/s.test(l)).length, 1, lines.join('\n'));
    } finally {
      await sink.close();
    }
  });
});

/** kafkajs's own error for a broker error code, as sendBatch rejects with it after its retrier gave up on it. */
function brokerRefusal(code: number): Error {
  const { createErrorFromCode } = require('kafkajs/src/protocol/error.js') as { createErrorFromCode: (code: number) => Error };
  const K = kafkajs as unknown as Record<string, new (...a: unknown[]) => Error>;
  const e = new K.KafkaJSProtocolError!(createErrorFromCode(code));
  return new K.KafkaJSNonRetriableError!(e, { cause: e });
}

/** A real producer whose next `times` sendBatch calls are refused with `err` before reaching the broker. */
function refusing(err: () => Error, times: number, made: Producer[]): (p: Producer) => Producer {
  return (p) => {
    made.push(p);
    const real = p.sendBatch.bind(p);
    p.sendBatch = async (b) => {
      if (times > 0) {
        times--;
        throw err();
      }
      return real(b);
    };
    return p;
  };
}

describe('collector Kafka sink: refusals the test broker cannot be made to give', { timeout: 120_000 }, () => {
  test('an authorization refusal: one line, onFatal with the Kafka exit code, nothing retried', async () => {
    const topic = `it-sink-authz-${process.pid}-${Date.now()}`;
    const lines: string[] = [];
    const fatals: FatalError[] = [];
    const made: Producer[] = [];
    const sink = createKafkaSink({
      brokers: [brokers], clientId: 'it-sink-authz', topics: [topic], partitions: 1, compression: 'zstd', maxBatchRecords: 100, log: (l) => lines.push(l),
      onFatal: (e) => fatals.push(e), wrapProducer: refusing(() => brokerRefusal(29 /* TOPIC_AUTHORIZATION_FAILED */), 1_000, made),
    });
    await sink.start();
    try {
      sink.enqueue(Array.from({ length: 5 }, (_, i) => rec(topic, `k${i}`, 10)));
      assert.equal(await sink.flush(3000), false);
      sink.enqueue([rec(topic, 'later', 10)]);
      await sleep(500);
      assert.equal(fatals.length, 1);
      assert.equal(fatals[0]!.exitCode, EXIT.kafka);
      assert.match(fatals[0]!.message, /TOPIC_AUTHORIZATION_FAILED|Not authorized/i);
      assert.equal(sink.counters.sendErrors, 1, 'not retried');
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /will not accept them later.*holding 5 events and stopping/);
      assert.equal(sink.pending(), 6, 'held, not silently dropped');
    } finally {
      await sink.close();
    }
  });

  test('a too-large record the dead-letter topic refuses too is dropped and counted as too_large, never retried', async () => {
    const topic = await smallTopic('it-sink-nodlq', 1);
    const lines: string[] = [];
    const made: Producer[] = [];
    const sink = createKafkaSink({
      brokers: [brokers], clientId: 'it-sink-nodlq', topics: [topic], partitions: 1, compression: 'zstd', maxBatchRecords: 100, log: (l) => lines.push(l),
      // the dead-letter write (producer.send) refused as an invalid record; the topic's own requests untouched
      wrapProducer: (p) => {
        made.push(p);
        p.send = async () => { throw brokerRefusal(87 /* INVALID_RECORD */); };
        return p;
      },
    });
    await sink.start();
    try {
      sink.enqueue([rec(topic, 'a', 100), rec(topic, 'big', 20_000, 2), rec(topic, 'b', 100)]);
      assert.equal(await sink.flush(30_000), true, lines.join(' | '));
      assert.equal(sink.counters.produced.get(1), 2);
      assert.deepEqual(Object.fromEntries(sink.counters.drops!), { too_large: 1 });
      assert.deepEqual(Object.fromEntries(sink.counters.lost!), { 2: 1 });
      assert.equal(lines.filter((l) => /could not be dead-lettered.*dropped and counted as too_large/.test(l)).length, 1, lines.join('\n'));
      assert.equal(made.length, 1);
    } finally {
      await sink.close();
    }
  });

  test('a refused sequence state: a new producer sends the same records, all delivered once', async () => {
    const topic = `it-sink-seq-${process.pid}-${Date.now()}`;
    const lines: string[] = [];
    const made: Producer[] = [];
    const sink = createKafkaSink({
      brokers: [brokers], clientId: 'it-sink-seq', topics: [topic], partitions: 2, compression: 'zstd', maxBatchRecords: 100, log: (l) => lines.push(l),
      wrapProducer: refusing(() => brokerRefusal(45 /* OUT_OF_ORDER_SEQUENCE_NUMBER */), 1, made),
    });
    await sink.start();
    try {
      const records = Array.from({ length: 30 }, (_, i) => rec(topic, `k${i}`, 50));
      sink.enqueue(records);
      assert.equal(await sink.flush(30_000), true, lines.join(' | '));
      assert.equal(made.length, 2, 'a second producer');
      assert.equal(sink.counters.produced.get(1), 30);
      assert.equal(lines.filter((l) => /starting a new producer/.test(l)).length, 1, lines.join('\n'));
      const got = await readRaw(brokers, topic, (a) => a.length >= 30);
      assert.equal(got.length, 30);
    } finally {
      await sink.close();
    }
  });
});

describe('collector Kafka sink: broker outages', { timeout: 300_000 }, () => {
  test('retried until Kafka is back; the drain line counts every record delivered since the outage began; a second outage is reported again', async () => {
    const k = await ownBroker();
    const opts = { stateDir: k.stateDir, port: k.port, controllerPort: k.controllerPort };
    const topic = `it-sink-outage-${process.pid}`;
    const lines: string[] = [];
    const sink = createKafkaSink({ brokers: [k.brokers], clientId: 'it-sink-outage', topics: [topic], partitions: 2, compression: 'zstd', maxBatchRecords: 20_000, log: (l) => lines.push(l), backoffMs: { min: 100, max: 1000 } });
    const waitLine = async (re: RegExp, from: number, ms = 60_000) => {
      const deadline = Date.now() + ms;
      while (!lines.slice(from).some((l) => re.test(l))) {
        if (Date.now() > deadline) throw new Error(`no line ${re} in: ${lines.join(' | ')}`);
        await sleep(100);
      }
      return lines.slice(from).find((l) => re.test(l))!;
    };
    try {
      await sink.start();
      sink.enqueue(Array.from({ length: 10 }, (_, i) => rec(topic, `k${i}`, 100)));
      assert.equal(await sink.flush(30_000), true);

      for (const [round, chunks] of [[1, [5, 200, 295]], [2, [7]]] as const) {
        const from = lines.length;
        await stopBroker({ stateDir: k.stateDir });
        // the first chunk is taken into a request that fails; the rest wait behind it
        let n = 0;
        for (const c of chunks) {
          sink.enqueue(Array.from({ length: c }, (_, i) => rec(topic, `k${i}`, 100)));
          n += c;
          await sleep(300);
        }
        await waitLine(/kafka: send failed/, from);
        assert.equal(sink.pending(), n);
        await startBroker(opts);
        assert.equal(await sink.flush(90_000), true, `round ${round} flushed: ${lines.join(' | ')}`);
        const drained = await waitLine(/sending again; delivered/, from);
        assert.match(drained, new RegExp(`delivered ${n} events since the outage began`), `round ${round}`);
      }
      assert.equal(sink.counters.produced.get(1), 10 + 5 + 200 + 295 + 7);
      assert.ok(sink.counters.sendErrors >= 2);
    } finally {
      await sink.close();
      await k.stop();
    }
  });
});
