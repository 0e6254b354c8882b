/** kafka/transaction.ts: which coordinator answers are retried in the same transaction, and the bounded backoff. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retryTxStep, txRetriableType } from '../../kafka/transaction.ts';

const protocol = (type: string, cause?: unknown) => Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type, ...(cause ? { cause } : {}) });
const wrapped = (name: string, cause: unknown) => Object.assign(new Error('wrapped'), { name, cause });

test('txRetriableType: coordinator "not now" answers, through kafkajs wrappers; fencing and the rest are not', () => {
  const cases: [string, unknown, string | null][] = [
    ['CONCURRENT_TRANSACTIONS as thrown by AddOffsetsToTxn', protocol('CONCURRENT_TRANSACTIONS'), 'CONCURRENT_TRANSACTIONS'],
    ['coordinator loading', protocol('COORDINATOR_LOAD_IN_PROGRESS'), 'COORDINATOR_LOAD_IN_PROGRESS'],
    ['coordinator moved', protocol('NOT_COORDINATOR'), 'NOT_COORDINATOR'],
    ['coordinator not there', protocol('COORDINATOR_NOT_AVAILABLE'), 'COORDINATOR_NOT_AVAILABLE'],
    ['retries exhausted by kafkajs', wrapped('KafkaJSNumberOfRetriesExceeded', protocol('CONCURRENT_TRANSACTIONS')), 'CONCURRENT_TRANSACTIONS'],
    ['two wrappers deep', wrapped('KafkaJSNonRetriableError', wrapped('KafkaJSNumberOfRetriesExceeded', protocol('NOT_COORDINATOR'))), 'NOT_COORDINATOR'],
    ['fenced', protocol('PRODUCER_FENCED'), null],
    ['old epoch', protocol('INVALID_PRODUCER_EPOCH'), null],
    ['fenced, wrapping a retriable one', protocol('INVALID_PRODUCER_EPOCH', protocol('CONCURRENT_TRANSACTIONS')), null],
    ['too large', protocol('MESSAGE_TOO_LARGE'), null],
    ['state machine refusal', Object.assign(new Error('Transaction state exception: Invalid state COMMITTING'), { name: 'KafkaJSNonRetriableError' }), null],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED'), { name: 'KafkaJSConnectionError', code: 'ECONNREFUSED' }), null],
    ['not an object', 'CONCURRENT_TRANSACTIONS', null],
    ['null', null, null],
    ['undefined', undefined, null],
  ];
  for (const [what, err, want] of cases) assert.equal(txRetriableType(err), want, what);
  const loop: { type: string; cause?: unknown } = { type: 'X' };
  loop.cause = loop;
  assert.equal(txRetriableType(loop), null, 'a cause cycle ends');
});

/** A fake clock: sleeping advances it. */
function clock() {
  let t = 0;
  const waits: number[] = [];
  return { waits, now: () => t, sleep: async (ms: number) => { waits.push(ms); t += ms; } };
}

test('retryTxStep: same step again after 20, 40, ... ms (capped at 500) until it succeeds; each retry counted', async () => {
  const c = clock();
  let calls = 0;
  const kinds: string[] = [];
  const v = await retryTxStep(async () => {
    if (++calls < 7) throw protocol('CONCURRENT_TRANSACTIONS');
    return 'ok';
  }, { now: c.now, sleep: c.sleep, onRetry: (k) => kinds.push(k) });
  assert.equal(v, 'ok');
  assert.equal(calls, 7);
  assert.deepEqual(c.waits, [20, 40, 80, 160, 320, 500]);
  assert.equal(kinds.length, 6);
});

test('retryTxStep: a non-retriable error is thrown at once, unchanged', async () => {
  const c = clock();
  const err = protocol('PRODUCER_FENCED');
  let calls = 0;
  await assert.rejects(retryTxStep(async () => { calls++; throw err; }, { now: c.now, sleep: c.sleep }), (e) => e === err);
  assert.equal(calls, 1);
  assert.deepEqual(c.waits, []);
});

test('retryTxStep: a retriable error that persists past maxMs is thrown (the caller aborts), not retried forever', async () => {
  const c = clock();
  let calls = 0;
  const err = protocol('CONCURRENT_TRANSACTIONS');
  await assert.rejects(retryTxStep(async () => { calls++; throw err; }, { now: c.now, sleep: c.sleep, maxMs: 2000 }), (e) => e === err);
  assert.ok(c.waits.reduce((a, b) => a + b, 0) <= 2000, `waited ${c.waits.join('+')}`);
  assert.equal(calls, c.waits.length + 1);
  assert.ok(calls >= 5);
});
