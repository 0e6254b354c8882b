import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupMessagesPerPartition, groupingPatched, Partitioners } from '../../collector/kafkajs.ts';

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
