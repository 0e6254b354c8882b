/**
 * kafka/transaction.ts txRetriableType against the errors kafkajs 2.2.4 really
 * throws, made by its own createErrorFromCode from the broker's error codes:
 * kafkajs names codes 14, 15 and 16 GROUP_LOAD_IN_PROGRESS,
 * GROUP_COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR_FOR_GROUP (the Java
 * client's COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
 * NOT_COORDINATOR). A stage's sendOffsets that meets one of these while the
 * coordinator moves (a broker restart) is to be asked again in the same
 * transaction, not aborted with the partition's state dropped and re-read
 * (seen thrown by TxnOffsetCommit in processor-faults.test.ts's setup:
 * "type: 'NOT_COORDINATOR_FOR_GROUP', code: 16").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { txRetriableType } from '../../kafka/transaction.ts';

const require = createRequire(import.meta.url);
const { createErrorFromCode } = require('kafkajs/src/protocol/error.js') as { createErrorFromCode: (code: number) => Error & { type: string } };

const cases: [number, string, boolean][] = [
  [14, 'GROUP_LOAD_IN_PROGRESS', true],
  [15, 'GROUP_COORDINATOR_NOT_AVAILABLE', true],
  [16, 'NOT_COORDINATOR_FOR_GROUP', true],
  [51, 'CONCURRENT_TRANSACTIONS', true],
  [47, 'INVALID_PRODUCER_EPOCH', false],
  [10, 'MESSAGE_TOO_LARGE', false],
];

for (const [code, type, retried] of cases) {
  test(`txRetriableType: kafkajs's error for code ${code} (${type}) is ${retried ? '' : 'not '}asked again`, () => {
    const err = createErrorFromCode(code);
    assert.equal(err.type, type, 'kafkajs names the code so');
    assert.equal(txRetriableType(err), retried ? type : null);
    // kafkajs's retrier wraps what it gave up on
    assert.equal(txRetriableType(Object.assign(new Error('retries exhausted'), { name: 'KafkaJSNumberOfRetriesExceeded', cause: err })), retried ? type : null);
  });
}
