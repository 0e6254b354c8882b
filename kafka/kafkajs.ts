/**
 * kafkajs, loaded once for the whole project, with one fix.
 *
 * kafkajs 2.2.4 (its last release) groups a request's messages by partition
 * with `[...current, message]` per message (src/producer/groupMessagesPerPartition.js),
 * which copies the partition's list every time: quadratic in the messages per
 * partition. Measured here: 20000 records to one partition ran at 9.5k
 * records/s. We put a linear grouping with the same result (same partitions,
 * same order, same empty-metadata case) into Node's module cache before
 * kafkajs loads, so its producer uses it. Everything else is kafkajs as
 * published. Import kafkajs from here, never directly.
 */
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import type * as KafkaJS from 'kafkajs';
import { createRingflowPartitioner } from './partitioner.ts';

const require = createRequire(import.meta.url);

interface GroupArgs {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: (a: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;
}

export function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: GroupArgs): Record<number, unknown[]> {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

const target = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
if (!require.cache[target]) {
  const Module = require('node:module') as { new (id: string): NodeJS.Module };
  const m = new Module(target);
  m.filename = target;
  m.loaded = true;
  m.exports = groupMessagesPerPartition;
  require.cache[target] = m;
}

// kafkajs is CommonJS: take everything from its exports object.
const kafkajs = require('kafkajs') as typeof KafkaJS;

/** Whether kafkajs's producer got our grouping (checked by a test). */
export const groupingPatched = require(target) === groupMessagesPerPartition;

export const { Kafka, CompressionTypes, CompressionCodecs, logLevel, Partitioners } = kafkajs;

/**
 * Compression codecs, registered in kafkajs's codec table.
 *
 * Zstandard comes from Node's own zlib (Node >= 22.15); kafkajs ships no
 * ZSTD codec. It is the collector's default: with gzip, compressing L7
 * records cost the collector, and decompressing them to validate every batch
 * cost the broker, more CPU than parsing them (`npm run bench`, l7overhead).
 * Consumers in any language read it (Kafka >= 2.1, librdkafka, the Java client).
 *
 * Both codecs, gzip included (replacing kafkajs's), run synchronously: an
 * async zlib call costs ~100 µs of set-up and thread-pool hand-off whatever
 * its size, and a produce request compresses each partition's records
 * separately, often a few dozen of them: measured here, 50 L7-sized records
 * took 139 µs async and 38 µs sync with zstd, 117 µs and 24 µs with gzip; 20000
 * records (the largest request) take ~1 ms sync.
 */
export const ZSTD_LEVEL = 1;
export const zstdCodec = {
  async compress(encoder: { buffer: Buffer }): Promise<Buffer> {
    return zlib.zstdCompressSync(encoder.buffer, { params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } });
  },
  async decompress(buffer: Buffer): Promise<Buffer> {
    return zlib.zstdDecompressSync(buffer);
  },
};
export const gzipCodec = {
  async compress(encoder: { buffer: Buffer }): Promise<Buffer> {
    return zlib.gzipSync(encoder.buffer);
  },
  async decompress(buffer: Buffer): Promise<Buffer> {
    // unzip, as kafkajs's: gzip or zlib framing
    return zlib.unzipSync(buffer);
  },
};
const codecs = CompressionCodecs as Record<number, () => unknown>;
codecs[CompressionTypes.ZSTD] = () => zstdCodec;
codecs[CompressionTypes.GZIP] = () => gzipCodec;
export default kafkajs;

/** Every producer's partitioner (collector/partitioner.ts): kafkajs's partitions, without its 64-bit Long murmur2. */
export const createPartitioner = createRingflowPartitioner as unknown as KafkaJS.ICustomPartitioner;
