/**
 * The producers' partitioner: the same partition for every key as kafkajs's
 * DefaultPartitioner and the Java client's (murmur2 of the key's bytes,
 * positive, modulo the partition count), so records of one key land where any
 * other Kafka client would put them, but computed with 32-bit integer
 * arithmetic (Math.imul).
 *
 * Why not kafkajs's own: its murmur2 does every multiply and xor on a 64-bit
 * Long object, and it converts every string key to a Buffer first. Profiling
 * `collect --signals l7` under load (about 140 k records/s) put a fifth of the
 * collector's CPU in that function. Here a string key's hash is also cached
 * (L7 connection keys and process keys repeat for every record of theirs).
 */

/** Murmur2 as Kafka's Utils.murmur2: seed 0x9747b28c, the key's bytes as little-endian 32-bit words. */
export function murmur2(data: Uint8Array): number {
  const M = 0x5bd1e995;
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  // the last 1-3 bytes (Java's switch falling through from case 3 to case 1)
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's toPositive: the sign bit cleared (not the absolute value). */
const toPositive = (x: number) => x & 0x7fffffff;

/** Cached string keys; the cache starts afresh when it is full (keys of short-lived connections come and go). */
const CACHE_MAX = 65_536;

interface PartitionerArgs {
  topic: string;
  partitionMetadata: { partitionId: number; leader: number }[];
  message: { key?: Buffer | string | null; partition?: number | null };
}

/**
 * A kafkajs `createPartitioner`: an explicit partition wins; a key picks
 * murmur2(key) modulo the partition count (whether or not that partition has
 * a leader now, as Kafka does, so a key never moves); records without a key
 * go round-robin over the partitions that have a leader.
 */
export function createRingflowPartitioner(): (args: PartitionerArgs) => number {
  const cache = new Map<string, number>();
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    const n = partitionMetadata.length;
    const key = message.key;
    if (key !== null && key !== undefined) {
      if (typeof key !== 'string') return toPositive(murmur2(key)) % n;
      let h = cache.get(key);
      if (h === undefined) {
        if (cache.size >= CACHE_MAX) cache.clear();
        h = toPositive(murmur2(Buffer.from(key)));
        cache.set(key, h);
      }
      return h % n;
    }
    const c = (counters.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1;
    counters.set(topic, c);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) return available[toPositive(c) % available.length]!.partitionId;
    return toPositive(c) % n;
  };
}
