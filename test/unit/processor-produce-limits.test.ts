/**
 * kafka/client.ts planRequests: a transaction's records split into produce
 * requests the broker takes (each topic's records per request within its
 * max.message.bytes, the request within a total), order kept, a record that
 * alone is over its limit set apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batchBudget, isTooLarge, planRequests, recordBytes, type OutRecord, type TopicRecords } from '../../kafka/client.ts';

const rec = (i: number, bytes: number, key = `k${i}`): OutRecord => ({ key, value: Buffer.alloc(bytes, i % 256) });

test('recordBytes bounds a record in a batch: key, value, headers and framing', () => {
  assert.equal(recordBytes({ key: 'ab', value: Buffer.alloc(10) }), 40 + 2 + 10);
  assert.equal(recordBytes({ key: null, value: Buffer.alloc(0), headers: { h: 'xyz', b: Buffer.alloc(4) } }), 40 + (10 + 1 + 3) + (10 + 1 + 4));
  assert.equal(recordBytes({ key: 'é', value: Buffer.alloc(1) }), 40 + 2 + 1, 'UTF-8 bytes, not characters');
});

const LIMIT = 10_000;
const budget = batchBudget(LIMIT);
const cases: { name: string; input: TopicRecords[]; limits?: Record<string, number>; max?: number; requests: number[][]; oversized: number }[] = [
  { name: 'nothing', input: [], requests: [], oversized: 0 },
  { name: 'all in one request', input: [{ topic: 'a', messages: [rec(0, 100), rec(1, 100)] }], requests: [[2]], oversized: 0 },
  // each record ~1040 bytes in a batch: 9 per 10 000-byte batch
  { name: 'split by the topic limit', input: [{ topic: 'a', messages: Array.from({ length: 20 }, (_, i) => rec(i, 1000)) }], requests: [[9], [9], [2]], oversized: 0 },
  { name: 'two topics share a request, each within its own limit', input: [{ topic: 'a', messages: Array.from({ length: 5 }, (_, i) => rec(i, 1000)) }, { topic: 'b', messages: Array.from({ length: 5 }, (_, i) => rec(i, 1000)) }], requests: [[5, 5]], oversized: 0 },
  { name: 'a topic with a smaller limit splits alone', input: [{ topic: 'a', messages: Array.from({ length: 4 }, (_, i) => rec(i, 1000)) }], limits: { a: 3000 }, requests: [[2], [2]], oversized: 0 },
  { name: 'the request total bounds it too', input: [{ topic: 'a', messages: [rec(0, 1000)] }, { topic: 'b', messages: [rec(1, 1000)] }], max: 1500, requests: [[1], [1]], oversized: 0 },
  { name: 'a record alone over the limit is set apart, the rest goes', input: [{ topic: 'a', messages: [rec(0, 100), rec(1, LIMIT), rec(2, 100)] }], requests: [[2]], oversized: 1 },
  { name: 'exactly the budget fits', input: [{ topic: 'a', messages: [rec(0, budget - 40 - 2)] }], requests: [[1]], oversized: 0 },
  { name: 'one byte over the budget does not', input: [{ topic: 'a', messages: [rec(0, budget - 40 - 1)] }], requests: [], oversized: 1 },
];

for (const c of cases) {
  test(`planRequests: ${c.name}`, () => {
    const limitOf = (t: string) => c.limits?.[t] ?? LIMIT;
    const { requests, oversized } = planRequests(c.input, limitOf, c.max);
    assert.deepEqual(requests.map((r) => r.map((t) => t.messages.length)), c.requests);
    assert.equal(oversized.length, c.oversized);
    for (const r of requests) {
      for (const t of r) assert.ok(t.messages.reduce((a, m) => a + recordBytes(m), 0) <= batchBudget(limitOf(t.topic)), 'each topic within its limit per request');
    }
    // every record once, in order per topic, in a request or set apart
    for (const { topic, messages } of c.input) {
      const sent = requests.flatMap((r) => r.filter((t) => t.topic === topic).flatMap((t) => t.messages));
      assert.deepEqual([...sent, ...oversized.filter((o) => o.topic === topic).map((o) => o.message)].sort((x, y) => String(x.key).localeCompare(String(y.key))), [...messages].sort((x, y) => String(x.key).localeCompare(String(y.key))));
      assert.deepEqual(sent, messages.filter((m) => !oversized.some((o) => o.message === m)), 'order kept');
    }
  });
}

test('isTooLarge finds the broker error, wrapped or not', () => {
  assert.equal(isTooLarge({ type: 'MESSAGE_TOO_LARGE' }), true);
  assert.equal(isTooLarge({ name: 'KafkaJSNonRetriableError', cause: { type: 'RECORD_LIST_TOO_LARGE' } }), true);
  assert.equal(isTooLarge({ type: 'NOT_LEADER_FOR_PARTITION' }), false);
  assert.equal(isTooLarge(new Error('x')), false);
  assert.equal(isTooLarge(undefined), false);
});
