import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Encoder, original, patchEncoder, encoderPatched } from '../../kafka/kafkajs-encoder.ts';

const require = createRequire(import.meta.url);
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: { offsetDelta?: number; timestampDelta?: number; key: unknown; value: unknown; headers?: Record<string, unknown> }) => { buffer: Buffer };
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch: (a: Record<string, unknown>) => Promise<{ buffer: Buffer }> };

test("kafkajs's source still sizes buffers only where kafka/kafkajs-encoder.ts expects (its first-buffer change relies on it)", () => {
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  const root = path.dirname(require.resolve('kafkajs/src/protocol/encoder.js', {})).replace(/protocol$/, '');
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (e.name.endsWith('.js') && !e.name.endsWith('.spec.js')) files.push(path.join(d, e.name));
    }
  };
  walk(root);
  const uses: string[] = [];
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/.*nextPowerOfTwo\(.*|.*new Encoder\([^)].*/g)) uses.push(`${path.relative(root, f)}: ${m[0].trim()}`);
  }
  assert.deepEqual(uses, [
    'protocol/encoder.js: static nextPowerOfTwo(value) {',
    'protocol/encoder.js: this.buf = Buffer.alloc(Encoder.nextPowerOfTwo(initialSize))',
    'protocol/encoder.js: const newLength = Encoder.nextPowerOfTwo(this.offset + length)',
  ]);
});

/** A small deterministic PRNG (xorshift32): the same cases on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

test('writeUVarInt: the same bytes as kafkajs for any number', () => {
  const r = rng(7);
  const cases: number[] = [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5, -1, -128, -(2 ** 31), 1.5, -0.5, NaN, Infinity, -Infinity, -0];
  for (let i = 0; i < 2000; i++) cases.push(Math.floor(r() * 2 ** (1 + Math.floor(r() * 40))) * (r() < 0.2 ? -1 : 1));
  for (const v of cases) {
    const want = original.writeUVarInt.call(new Encoder(), v) as unknown as { buffer: Buffer };
    const got = new Encoder().writeUVarInt(v) as unknown as { buffer: Buffer };
    assert.deepEqual(got.buffer, want.buffer, `writeUVarInt(${v})`);
    // and through writeVarInt (zig-zag first), as records use it
    const wantI = original.writeUVarInt.call(new Encoder(), ((v << 1) ^ (v >> 31))) as unknown as { buffer: Buffer };
    assert.deepEqual(new Encoder().writeVarInt(v).buffer, wantI.buffer, `writeVarInt(${v})`);
  }
});

test('writeVarLong and sizeOfVarLong: the same bytes and sizes as kafkajs (numbers, bigints, past 2^52)', () => {
  const r = rng(11);
  const cases: unknown[] = [0, 1, -1, 63, 64, -64, -65, 2 ** 31, -(2 ** 31) - 1, 2 ** 52 - 1, -(2 ** 52) + 1, 2 ** 52, -(2 ** 52), 2 ** 53, 2 ** 60, -(2 ** 60), Date.now(), -Date.now(), -0, 5n, -(2n ** 62n), '12345'];
  for (let i = 0; i < 2000; i++) cases.push(Math.floor(r() * 2 ** Math.floor(r() * 56)) * (r() < 0.3 ? -1 : 1));
  for (const v of cases) {
    const want = original.writeVarLong.call(new Encoder(), v) as unknown as { buffer: Buffer };
    assert.deepEqual((new Encoder().writeVarLong(v) as unknown as { buffer: Buffer }).buffer, want.buffer, `writeVarLong(${String(v)})`);
    assert.equal(Encoder.sizeOfVarLong(v), original.sizeOfVarLong.call(Encoder, v), `sizeOfVarLong(${String(v)})`);
    assert.equal(Encoder.sizeOfVarLong(v), want.buffer.length, `sizeOfVarLong(${String(v)}) is the written length`);
  }
});

test('whole record batches: the same bytes as kafkajs (keys, values, headers, growth past the initial buffer)', async () => {
  const r = rng(3);
  const records = Array.from({ length: 300 }, (_, i) => ({
    offsetDelta: i,
    timestampDelta: Math.floor(r() * 2 ** (i % 45)),
    key: i % 3 === 0 ? `host/${i}/é` : i % 3 === 1 ? Buffer.from([i & 0xff, 1, 2]) : null,
    value: Buffer.alloc(Math.floor(r() * (i % 10 === 0 ? 5000 : 400)), i & 0xff),
    headers: i % 4 === 0 ? { 'ringflow.topic': `t${i}`, multi: ['a', 'b'] } : {},
  }));
  const batch = async () => (await RecordBatch({ records: records.map(Record), firstTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_999, producerId: 42, producerEpoch: 1, firstSequence: 7, lastOffsetDelta: 299 })).buffer;
  const patched = await batch();
  const restore = patchEncoder();
  restore();
  let want: Buffer;
  try {
    assert.equal(encoderPatched(), false);
    want = await batch();
  } finally {
    patchEncoder();
  }
  assert.equal(encoderPatched(), true);
  assert.ok(want.length > 100_000);
  assert.deepEqual(patched, want);
});
