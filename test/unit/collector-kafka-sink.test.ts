/**
 * The Kafka sink's pure parts: what a failed send means (from kafkajs's own
 * error objects, wrapped as its producer wraps them) and how a request is cut
 * to stay under the broker's size limits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import kafkajs from '../../kafka/kafkajs.ts';
import { classifySendError, cutRequest, deadLetterOf, keyPartitioner, cheapRecordBytes, DEADLETTER_TOPIC, OVERSIZED_KEEP_BYTES, type SendFailure, type SizeLimits } from '../../collector/kafka-sink.ts';
import { OVERSIZED_KEEP_BYTES as PROCESSOR_KEEP } from '../../processor/repartition.ts';
import { createRingflowPartitioner } from '../../kafka/partitioner.ts';
import { DEADLETTER_TOPIC as PROCESSOR_DEADLETTER } from '../../processor/topics.ts';
import type { OutRecord } from '../../collector/sink.ts';

const require = createRequire(import.meta.url);
const { createErrorFromCode } = require('kafkajs/src/protocol/error.js') as { createErrorFromCode: (code: number) => Error };
const K = kafkajs as unknown as Record<string, new (...a: unknown[]) => Error>;

/** A broker error as kafkajs's produce response parser throws it. */
const protocol = (code: number) => new K.KafkaJSProtocolError!(createErrorFromCode(code));
/** As kafkajs's retrier hands it to sendBatch's caller. */
const nonRetriable = (e: Error) => new K.KafkaJSNonRetriableError!(e, { cause: e });
const retriesExceeded = (e: Error) => new K.KafkaJSNumberOfRetriesExceeded!(e, { retryCount: 3, retryTime: 100 });

test('the dead-letter topic is the processor\'s', () => {
  assert.equal(DEADLETTER_TOPIC, PROCESSOR_DEADLETTER);
});

test('classifySendError (table, kafkajs error objects)', () => {
  const cases: [string, unknown, SendFailure][] = [
    ['MESSAGE_TOO_LARGE (10), bailed', protocol(10), 'too_large'],
    ['MESSAGE_TOO_LARGE wrapped', nonRetriable(protocol(10)), 'too_large'],
    ['RECORD_LIST_TOO_LARGE (18)', nonRetriable(protocol(18)), 'too_large'],
    ['CORRUPT_MESSAGE (2), after kafkajs retried it', retriesExceeded(protocol(2)), 'rejected'],
    ['INVALID_RECORD (87)', protocol(87), 'rejected'],
    ['INVALID_TIMESTAMP (32)', protocol(32), 'rejected'],
    ['TOPIC_AUTHORIZATION_FAILED (29)', nonRetriable(protocol(29)), 'fatal'],
    ['CLUSTER_AUTHORIZATION_FAILED (31)', protocol(31), 'fatal'],
    ['UNSUPPORTED_COMPRESSION_TYPE (76)', nonRetriable(protocol(76)), 'fatal'],
    ['SASL authentication', new K.KafkaJSSASLAuthenticationError!('SASL PLAIN authentication failed'), 'fatal'],
    ['OUT_OF_ORDER_SEQUENCE_NUMBER (45)', nonRetriable(protocol(45)), 'producer_state'],
    ['UNKNOWN_PRODUCER_ID (59)', protocol(59), 'producer_state'],
    ['INVALID_PRODUCER_EPOCH (47)', protocol(47), 'producer_state'],
    ['LEADER_NOT_AVAILABLE (5) after retries', retriesExceeded(protocol(5)), 'retriable'],
    ['NOT_LEADER_FOR_PARTITION (6)', protocol(6), 'retriable'],
    ['NOT_ENOUGH_REPLICAS (19) after retries', retriesExceeded(protocol(19)), 'retriable'],
    ['connection refused after retries', retriesExceeded(new K.KafkaJSConnectionError!('Connection error: connect ECONNREFUSED 127.0.0.1:9092')), 'retriable'],
    ['connection closed', new K.KafkaJSConnectionClosedError!('Closed connection', { host: 'h', port: 1 }), 'retriable'],
    ['request timeout', new K.KafkaJSRequestTimeoutError!('Request Produce(key: 0, version: 7) timed out'), 'retriable'],
    ['a TypeError set off by a record', nonRetriable(new TypeError('The "string" argument must be of type string')), 'rejected'],
    ['a plain error, retriable by kafkajs\'s rule', new Error('something'), 'retriable'],
    ['a KafkaJSError marked non-retriable', new K.KafkaJSNonRetriableError!('nope'), 'rejected'],
  ];
  for (const [name, err, want] of cases) assert.equal(classifySendError(err), want, name);
});

const rec = (topic: string, key: string, bytes: number, type = 1): OutRecord => ({ topic, key, type, value: Buffer.alloc(bytes) });
const limits = (perTopic: [string, number][], partitions: [string, number][] = [], request = 100 << 20): SizeLimits =>
  ({ perTopic: new Map(perTopic), partitions: new Map(partitions), request });
const byKey = (r: OutRecord, n: number) => Number(r.key) % n;

test('cutRequest: by count, by bytes per (topic, partition), alone when over, by request size (table)', () => {
  const big = 10_000;
  const size = cheapRecordBytes(rec('a', '0', 1000)); // ~1 KB each
  const cases: [string, OutRecord[], number, SizeLimits, number][] = [
    ['count bound', Array.from({ length: 50 }, (_, i) => rec('a', String(i), 10)), 20, limits([['a', big]]), 20],
    ['everything fits', Array.from({ length: 5 }, (_, i) => rec('a', String(i), 10)), 100, limits([['a', big]]), 5],
    ['one partition: bytes bound', Array.from({ length: 30 }, () => rec('a', '0', 1000)), 1000, limits([['a', big]]), Math.floor((big - 128) / size)],
    ['two partitions: twice as much', Array.from({ length: 30 }, (_, i) => rec('a', String(i), 1000)), 1000, limits([['a', big]], [['a', 2]]), 2 * Math.floor((big - 128) / size)],
    ['each topic its own limit', [...Array.from({ length: 3 }, () => rec('small', '0', 1000)), ...Array.from({ length: 3 }, () => rec('a', '0', 1000))], 1000, limits([['a', big], ['small', 2500]]), 2],
    ['a record over its limit first: alone', [rec('a', '0', 20_000), rec('a', '1', 10)], 1000, limits([['a', big]]), 1],
    ['a record over its limit later: cut before it', [rec('a', '0', 10), rec('a', '1', 10), rec('a', '2', 20_000)], 1000, limits([['a', big]]), 2],
    ['request size bound (half of socket.request.max.bytes)', Array.from({ length: 30 }, (_, i) => rec(`t${i}`, '0', 1000)), 1000, limits([], [], 10 * size), 5],
    ['unknown topic: Kafka\'s default limit', Array.from({ length: 3 }, () => rec('x', '0', 600_000)), 1000, limits([]), 1],
    ['nothing', [], 10, limits([]), 0],
  ];
  for (const [name, records, max, l, want] of cases) assert.equal(cutRequest(records, max, l, byKey), want, name);
});

test('keyPartitioner agrees with the producer\'s partitioner for keyed records', () => {
  const ours = keyPartitioner();
  const producer = createRingflowPartitioner();
  for (const n of [1, 3, 6, 7]) {
    const meta = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: i % 2 === 0 ? 0 : -1 }));
    for (let i = 0; i < 2000; i++) {
      const key = i % 3 === 0 ? `host-${i}/1234/${i * 7}` : `é-${i}`;
      assert.equal(ours(rec('t', key, 1), n), producer({ topic: 't', partitionMetadata: meta, message: { key } }), `${key} of ${n}`);
    }
  }
});

test('deadLetterOf: a too-large record keeps its first KiB as the processor\'s oversized letters do; a refused one all of it (table)', () => {
  assert.equal(OVERSIZED_KEEP_BYTES, PROCESSOR_KEEP);
  const big: OutRecord = { topic: 'ringflow.l7.v1', key: 'h/1', type: 9, value: Buffer.alloc(5000, 7) };
  const small: OutRecord = { topic: 'ringflow.l7.v1', key: 'h/2', type: 9, value: Buffer.alloc(10, 1) };
  const cases: [string, OutRecord, 'too_large' | 'rejected', string, number, Record<string, string>][] = [
    ['too large', big, 'too_large', 'ringflow.l7.v1/oversized/h/1', 1024, {
      'ringflow.reason': 'oversized',
      'ringflow.error': 'KafkaJSProtocolError: too big; a record of 5000 bytes for ringflow.l7.v1, its first 1024 bytes kept',
      'ringflow.target.topic': 'ringflow.l7.v1', 'ringflow.target.key': 'h/1', 'ringflow.value.bytes': '5000',
    }],
    ['too large but short (a batch limit under 1 KiB)', small, 'too_large', 'ringflow.l7.v1/oversized/h/2', 10, {
      'ringflow.reason': 'oversized',
      'ringflow.error': 'KafkaJSProtocolError: too big; a record of 10 bytes for ringflow.l7.v1, its first 10 bytes kept',
      'ringflow.target.topic': 'ringflow.l7.v1', 'ringflow.target.key': 'h/2', 'ringflow.value.bytes': '10',
    }],
    ['rejected', big, 'rejected', 'ringflow.l7.v1/rejected/h/1', 5000, {
      'ringflow.reason': 'rejected', 'ringflow.error': 'KafkaJSProtocolError: too big',
      'ringflow.target.topic': 'ringflow.l7.v1', 'ringflow.target.key': 'h/1', 'ringflow.value.bytes': '5000',
    }],
  ];
  for (const [name, r, kind, key, kept, headers] of cases) {
    const l = deadLetterOf(r, kind, 'KafkaJSProtocolError: too big');
    assert.equal(l.key, key, name);
    assert.deepEqual(l.value, r.value.subarray(0, kept), name);
    assert.deepEqual(l.headers, headers, name);
  }
});

