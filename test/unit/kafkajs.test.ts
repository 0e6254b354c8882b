import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { groupMessagesPerPartition, groupingPatched, Partitioners, CompressionTypes, zstdCodec, gzipCodec } from '../../kafka/kafkajs.ts';

test("kafkajs's producer uses the linear per-partition grouping", () => {
  assert.equal(groupingPatched, true);
});

test('grouping: same partitions and order as kafkajs, linear in the messages', () => {
  const partitionMetadata = [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionId, leader: 1 }));
  const partitioner = Partitioners.DefaultPartitioner();
  const messages = Array.from({ length: 50 }, (_, i) => ({ key: `host/${i % 7}`, value: Buffer.from([i]) }));
  const got = groupMessagesPerPartition({ topic: 't', partitionMetadata, messages, partitioner: partitioner as never });
  // kafkajs's own algorithm, written out: each message appended to its partition's list in order
  const want: Record<number, unknown[]> = {};
  for (const m of messages) {
    const p = partitioner({ topic: 't', partitionMetadata, message: m } as never);
    want[p] = [...(want[p] ?? []), m];
  }
  assert.deepEqual(got, want);
  assert.deepEqual(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner: partitioner as never }), {});
});

test('codecs: zstd (Node zlib) and gzip registered in kafkajs, round trip through its own lookup', async () => {
  const require = createRequire(import.meta.url);
  const { lookupCodec, lookupCodecByAttributes, Types } = require('kafkajs/src/protocol/message/compression/index.js') as {
    lookupCodec: (t: number) => { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> };
    lookupCodecByAttributes: (a: number) => { decompress(b: Buffer): Promise<Buffer> };
    Types: Record<string, number>;
  };
  assert.equal(lookupCodec(CompressionTypes.ZSTD), zstdCodec);
  assert.equal(lookupCodec(CompressionTypes.GZIP), gzipCodec);
  const data = Buffer.from('GET /users/42 HTTP/1.1\r\n'.repeat(200));
  for (const t of [Types.ZSTD!, Types.GZIP!]) {
    const packed = await lookupCodec(t).compress({ buffer: data });
    assert.ok(packed.length < data.length / 10, `type ${t} compresses`);
    assert.deepEqual(await lookupCodecByAttributes(t).decompress(packed), data);
  }
  // the formats others write: a zstd frame (magic 28 b5 2f fd) and a gzip member (1f 8b)
  assert.deepEqual([...(await zstdCodec.compress({ buffer: data })).subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
  assert.deepEqual(await zstdCodec.decompress(zstdCompressSync(data)), data);
  assert.deepEqual([...(await gzipCodec.compress({ buffer: data })).subarray(0, 2)], [0x1f, 0x8b]);
  assert.deepEqual(await gzipCodec.decompress(gzipSync(data)), data);
});
