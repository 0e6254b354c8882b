import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { murmur2, createRingflowPartitioner } from '../../kafka/partitioner.ts';
import { Partitioners } from '../../kafka/kafkajs.ts';

const require = createRequire(import.meta.url);
/** kafkajs's own (Java-compatible) murmur2, on 64-bit Longs: the reference. */
const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer | string) => number;

test('murmur2: the hash of kafkajs and the Java client, for every tail length and byte value', () => {
  // Kafka's own test vectors (Utils.murmur2 in the Java client)
  const vectors: [string, number][] = [['21', -973932308], ['foobar', -790332482], ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829], ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971], ['abc', 479470107]];
  for (const [key, want] of vectors) {
    assert.equal(murmur2(Buffer.from(key)), want, key);
    assert.equal(kafkajsMurmur2(key), want, `reference, ${key}`);
  }
  for (let len = 0; len < 24; len++) {
    const b = Buffer.alloc(len, 0xff);
    assert.equal(murmur2(b), kafkajsMurmur2(b), `0xff * ${len}`);
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => murmur2(bytes) === kafkajsMurmur2(Buffer.from(bytes))), { numRuns: 2000 });
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => murmur2(Buffer.from(s)) === kafkajsMurmur2(s)), { numRuns: 1000 });
});

test("partitioner: kafkajs's DefaultPartitioner's partition for every keyed record; explicit partitions win; keyless ones go round-robin over partitions with a leader", () => {
  const ours = createRingflowPartitioner();
  const theirs = Partitioners.DefaultPartitioner();
  for (const n of [1, 3, 6, 7]) {
    const partitionMetadata = Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: partitionId === 1 ? -1 : 1 }));
    for (let i = 0; i < 500; i++) {
      for (const key of [`tcp/10.0.0.${i}:${40000 + i}`, Buffer.from(`h/${i}`), `é/${i}`]) {
        // twice: the second answer for a string key comes from the cache
        for (let r = 0; r < 2; r++) {
          const message = { key, value: Buffer.alloc(0) };
          assert.equal(ours({ topic: 't', partitionMetadata, message }), theirs({ topic: 't', partitionMetadata, message } as never), `${String(key)} of ${n}`);
        }
      }
    }
    assert.equal(ours({ topic: 't', partitionMetadata, message: { key: 'k', partition: 0 } }), 0);
    const seen = new Set<number>();
    for (let i = 0; i < 4 * n; i++) seen.add(ours({ topic: 't', partitionMetadata, message: { key: null } }));
    assert.deepEqual([...seen].sort(), partitionMetadata.filter((p) => p.leader >= 0).map((p) => p.partitionId), 'every partition with a leader, and only those');
  }
});
