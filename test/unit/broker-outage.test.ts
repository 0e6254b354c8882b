/**
 * isBrokerOutage (kafka/client.ts): which consumer crashes mean "the broker or
 * its coordinator is not there right now" (run the consumer again) and which
 * end the stage. Built from kafkajs's own error classes, as the consumer
 * raises them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import kafkajs from '../../kafka/kafkajs.ts';
import { isBrokerOutage } from '../../kafka/client.ts';

// kafkajs's type declarations leave out some classes and constructor arguments it has
type ErrorClass = new (e: unknown, o?: Record<string, unknown>) => Error;
const K = kafkajs as unknown as Record<string, ErrorClass | undefined>;
const cls = (n: string): ErrorClass => {
  const c = K[n];
  assert.equal(typeof c, 'function', `kafkajs exports ${n}`);
  return c!;
};
const KafkaJSGroupCoordinatorNotFound = cls('KafkaJSGroupCoordinatorNotFound');
const KafkaJSConnectionError = cls('KafkaJSConnectionError');
const KafkaJSConnectionClosedError = cls('KafkaJSConnectionClosedError');
const KafkaJSNumberOfRetriesExceeded = cls('KafkaJSNumberOfRetriesExceeded');
const KafkaJSProtocolError = cls('KafkaJSProtocolError');
const KafkaJSNonRetriableError = cls('KafkaJSNonRetriableError');
const KafkaJSRequestTimeoutError = cls('KafkaJSRequestTimeoutError');
const KafkaJSError = cls('KafkaJSError');

/** A protocol error as kafkajs builds it from a broker's error code. */
const protocol = (type: string, code: number, retriable = true) => new KafkaJSProtocolError({ message: type, type, code, retriable } as never);
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), { code: 'ECONNREFUSED' });

const cases: [string, unknown, boolean][] = [
  // a fresh broker: the coordinator is not loaded yet (soak finding 2)
  ['KafkaJSGroupCoordinatorNotFound', new KafkaJSGroupCoordinatorNotFound('Failed to find group coordinator'), true],
  ['GROUP_COORDINATOR_NOT_AVAILABLE', protocol('GROUP_COORDINATOR_NOT_AVAILABLE', 15), true],
  ['NOT_COORDINATOR', protocol('NOT_COORDINATOR', 16), true],
  ['COORDINATOR_LOAD_IN_PROGRESS', protocol('COORDINATOR_LOAD_IN_PROGRESS', 14), true],
  // a restarting broker (soak finding 3)
  ['KafkaJSConnectionError', new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), true],
  ['KafkaJSConnectionClosedError', new KafkaJSConnectionClosedError('Closed connection'), true],
  ['KafkaJSRequestTimeoutError', new KafkaJSRequestTimeoutError('Request fetch(key: 1) timed out'), true],
  // kafkajs's retrier bails out with the error it was given as the cause (retry/index.js)
  ['a bailed-out connection error (as the consumer crashed in the real-broker test)', new KafkaJSNonRetriableError(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), { cause: new KafkaJSConnectionError('Connection error: connect ECONNREFUSED') }), true],
  ['a bailed-out ECONNREFUSED', new KafkaJSNonRetriableError(refused(), { cause: refused() }), true],
  ['a bailed-out authorization failure', new KafkaJSNonRetriableError(protocol('GROUP_AUTHORIZATION_FAILED', 30, false), { cause: protocol('GROUP_AUTHORIZATION_FAILED', 30, false) }), false],
  ['NumberOfRetriesExceeded wrapping a connection error', new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), { retryCount: 3, retryTime: 2000 }), true],
  ['NumberOfRetriesExceeded wrapping NOT_COORDINATOR', new KafkaJSNumberOfRetriesExceeded(protocol('NOT_COORDINATOR', 16), { retryCount: 3, retryTime: 2000 }), true],
  ['a bare ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), true],
  // what waiting cannot cure: the stage ends
  ['GROUP_AUTHORIZATION_FAILED', protocol('GROUP_AUTHORIZATION_FAILED', 30, false), false],
  ['TOPIC_AUTHORIZATION_FAILED', protocol('TOPIC_AUTHORIZATION_FAILED', 29, false), false],
  ['UNKNOWN_TOPIC_OR_PARTITION', protocol('UNKNOWN_TOPIC_OR_PARTITION', 3), false],
  ['INVALID_SESSION_TIMEOUT', protocol('INVALID_SESSION_TIMEOUT', 26, false), false],
  ['NumberOfRetriesExceeded wrapping an authorization failure', new KafkaJSNumberOfRetriesExceeded(protocol('GROUP_AUTHORIZATION_FAILED', 30, false), { retryCount: 3, retryTime: 2000 }), false],
  ['a bug in eachBatch', new TypeError("Cannot read properties of undefined (reading 'x')"), false],
  ['a plain kafkajs error', new KafkaJSError('something else'), false],
  ['not an error', 'ECONNREFUSED', false],
  ['undefined', undefined, false],
];

for (const [name, err, want] of cases) {
  test(`isBrokerOutage: ${name} -> ${want}`, () => {
    assert.equal(isBrokerOutage(err), want);
  });
}

test('isBrokerOutage: a cause chain that loops ends', () => {
  const a = new Error('a') as Error & { cause?: unknown };
  const b = new Error('b', { cause: a });
  a.cause = b;
  assert.equal(isBrokerOutage(a), false);
});
