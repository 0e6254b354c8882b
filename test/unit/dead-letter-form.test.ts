// One dead-letter form for records that can never be produced (kafka/client.ts refusedDeadLetter):
// the collector's (deadLetterOf) and the stages' (oversizedDeadLetter) letters carry the same headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refusedDeadLetter, OVERSIZED_KEEP_BYTES, DEADLETTER_TOPIC } from '../../kafka/client.ts';
import { deadLetterOf } from '../../collector/kafka-sink.ts';
import { oversizedDeadLetter } from '../../processor/repartition.ts';

test('refusedDeadLetter: oversized keeps the first KiB, rejected all; source headers only when known (table)', () => {
  const big = Buffer.alloc(5000, 7);
  const cases = [
    { reason: 'oversized' as const, value: big, key: 'k', source: undefined, kept: OVERSIZED_KEEP_BYTES },
    { reason: 'oversized' as const, value: Buffer.alloc(10), key: null, source: { topic: 'in', partition: 3, offset: '42' }, kept: 10 },
    { reason: 'rejected' as const, value: big, key: Buffer.from('bk'), source: { topic: 'in', partition: 1 }, kept: 5000 },
  ];
  for (const c of cases) {
    const l = refusedDeadLetter({ topic: 't', key: c.key, value: c.value }, c.reason, (kept) => `E ${kept}`, c.source);
    const key = c.key === null ? '' : c.key.toString();
    assert.equal(l.key, `t/${c.reason}/${key}`);
    assert.equal(l.value.length, c.kept);
    assert.deepEqual(l.headers, {
      ...(c.source ? { 'ringflow.source.topic': 'in', 'ringflow.source.partition': String(c.source.partition) } : {}),
      ...(c.source && 'offset' in c.source ? { 'ringflow.source.offset': c.source.offset } : {}),
      'ringflow.reason': c.reason, 'ringflow.error': `E ${c.kept}`, 'ringflow.target.topic': 't', 'ringflow.target.key': key, 'ringflow.value.bytes': String(c.value.length),
    });
  }
});

test('the collector\'s and the stages\' oversized letters have one shape', () => {
  const value = Buffer.alloc(3000, 1);
  const sink = deadLetterOf({ topic: 'ringflow.l7.message.v1', key: 'h/1', value } as Parameters<typeof deadLetterOf>[0], 'too_large', 'MESSAGE_TOO_LARGE');
  const stage = oversizedDeadLetter({ topic: 'ringflow.l7.message.v1', message: { key: 'h/1', value }, bytes: 3040, limit: 2000 });
  assert.equal(stage.topic, DEADLETTER_TOPIC);
  assert.equal(sink.key, stage.key);
  assert.deepEqual(sink.value, stage.value);
  assert.deepEqual(Object.keys(sink.headers).sort(), Object.keys(stage.headers!).sort());
  assert.equal(stage.headers!['ringflow.error'], 'MESSAGE_TOO_LARGE: a record of 3040 bytes for ringflow.l7.message.v1, over its max.message.bytes (2000); its first 1024 bytes kept');
  assert.equal(sink.headers['ringflow.error'], 'MESSAGE_TOO_LARGE; a record of 3000 bytes for ringflow.l7.message.v1, its first 1024 bytes kept');
});
