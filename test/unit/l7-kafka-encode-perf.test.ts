import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
// only what the collector loads: the sink must bring kafka/kafkajs-encoder.ts with it
import '../../collector/kafka-sink.ts';

const require = createRequire(import.meta.url);
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: { offsetDelta?: number; timestampDelta?: number; key: unknown; value: unknown; headers?: Record<string, unknown> }) => { buffer: Buffer };

test('a record is encoded without a Buffer per varint (kafkajs made 4-5 per record with Buffer.from)', () => {
  const from = Buffer.from;
  let calls = 0;
  (Buffer as { from: unknown }).from = function (this: unknown, ...a: unknown[]) {
    calls++;
    return (from as (...x: unknown[]) => Buffer).apply(this, a);
  };
  try {
    for (let i = 0; i < 10; i++) Record({ offsetDelta: i, timestampDelta: 1000 + i, key: 'bench-l7/42', value: Buffer.alloc(300, i), headers: {} });
  } finally {
    (Buffer as { from: unknown }).from = from;
  }
  assert.equal(calls, 0);
});

