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


test("a record's Encoder takes its buffer from Node's pool (kafkajs zero-filled 512 bytes of its own per record)", () => {
  const rec = Record({ offsetDelta: 1, timestampDelta: 5, key: 'bench-l7/42', value: Buffer.alloc(300, 1), headers: {} }) as unknown as { buf: Buffer };
  assert.equal(rec.buf.length, 512);
  assert.equal(rec.buf.buffer.byteLength, Buffer.poolSize);
});
