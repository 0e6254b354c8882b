/**
 * Kafka sink: an idempotent kafkajs producer (acks=all) fed in large batches.
 *
 * Ordering and idempotence: kafkajs keeps producer sequence numbers per
 * partition, and the broker keeps only the last 5 batches' metadata per
 * producer, so exactly one sendBatch is in flight at a time (KIP-98's
 * max.in.flight=1 for idempotence in this client); throughput comes from
 * making each request large instead.
 *
 * Failure: a failed send is counted, logged once per kind of error, backed off
 * and retried with the same records, for as long as it takes: records leave
 * the queue only when acknowledged. Memory stays bounded because the collector
 * stops draining the kernel ring while pending() is high (see collector.ts).
 */
import type { Producer, TopicMessages, CompressionTypes as CompressionType } from 'kafkajs';
import { CompressionTypes, createPartitioner } from '../kafka/kafkajs.ts';
import { createKafkaClient, connectAdmin, ensureTopics, describeKafkaError } from '../kafka/client.ts';
import { FatalError, EXIT } from '../common/errors.ts';
import type { EventSink, OutRecord, SinkCounters } from './sink.ts';

export type Compression = 'zstd' | 'gzip' | 'none';

export interface KafkaSinkOptions {
  brokers: string[];
  clientId: string;
  topics: readonly string[];
  partitions: number;
  compression: Compression;
  /** Records per produce request. */
  maxBatchRecords: number;
  log: (line: string) => void;
  /** How long to keep trying the first connection before giving up. */
  connectTimeoutMs?: number;
}

const COMPRESSION: Record<Compression, CompressionType> = {
  zstd: CompressionTypes.ZSTD,
  gzip: CompressionTypes.GZIP,
  none: CompressionTypes.None,
};

export function createKafkaSink(opts: KafkaSinkOptions): EventSink {
  const kafka = createKafkaClient(opts.brokers, opts.clientId, opts.connectTimeoutMs);
  let producer: Producer | undefined;
  const queue: OutRecord[][] = [];
  let queueHead = 0; // index into queue[0]
  let queued = 0;
  let inFlight: OutRecord[] | null = null;
  let closed = false;
  let backoffMs = 0;
  const counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  const progressCbs: (() => void)[] = [];
  const seenErrors = new Set<string>();
  let waiters: (() => void)[] = [];

  function take(max: number): OutRecord[] {
    const out: OutRecord[] = [];
    while (out.length < max && queue.length > 0) {
      const chunk = queue[0]!;
      const n = Math.min(max - out.length, chunk.length - queueHead);
      for (let i = 0; i < n; i++) out.push(chunk[queueHead + i]!);
      queueHead += n;
      if (queueHead >= chunk.length) {
        queue.shift();
        queueHead = 0;
      }
    }
    queued -= out.length;
    return out;
  }

  // an OutRecord already has the key and value kafkajs reads from a message: pass it as is
  function toTopicMessages(records: OutRecord[]): TopicMessages[] {
    const byTopic = new Map<string, OutRecord[]>();
    for (const r of records) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      list.push(r);
    }
    return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
  }

  function countProduced(batch: OutRecord[]): void {
    let type = -1;
    let run = 0;
    const flush = () => {
      if (run > 0) counters.produced.set(type, (counters.produced.get(type) ?? 0) + run);
    };
    for (const r of batch) {
      if (r.type !== type) {
        flush();
        type = r.type;
        run = 0;
      }
      run++;
    }
    flush();
  }

  function settle(): void {
    for (const cb of progressCbs) cb();
    if (queued === 0 && inFlight === null) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  }

  function pump(): void {
    if (closed || inFlight !== null || !producer) return;
    if (queued === 0) return;
    const batch = take(opts.maxBatchRecords);
    inFlight = batch;
    send(batch);
  }

  function send(batch: OutRecord[]): void {
    producer!
      .sendBatch({ topicMessages: toTopicMessages(batch), acks: -1, compression: COMPRESSION[opts.compression] })
      .then(
        () => {
          countProduced(batch);
          if (backoffMs > 0) opts.log(`kafka: sending again; delivered ${batch.length} held events`);
          backoffMs = 0;
          inFlight = null;
          settle();
          pump();
        },
        (err: unknown) => {
          counters.sendErrors++;
          const kind = (err as { name?: string })?.name ?? 'Error';
          if (!seenErrors.has(kind)) {
            seenErrors.add(kind);
            opts.log(`kafka: send failed (${describeKafkaError(err)}); holding ${queued + batch.length} events and retrying`);
          }
          if (closed) return;
          backoffMs = Math.min(Math.max(backoffMs * 2, 200), 5000);
          setTimeout(() => send(batch), backoffMs).unref?.();
        },
      );
  }

  return {
    counters,
    async start() {
      const admin = await connectAdmin(kafka, opts.brokers);
      try {
        await ensureTopics(admin, opts.topics, opts.partitions);
      } finally {
        await admin.disconnect();
      }
      producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner });
      try {
        await producer.connect();
      } catch (err) {
        throw new FatalError(`cannot start a Kafka producer on ${opts.brokers.join(',')} (${describeKafkaError(err)})`, { exitCode: EXIT.kafka, cause: err });
      }
      pump();
    },
    enqueue(records) {
      if (records.length === 0) return;
      queue.push(records as OutRecord[]);
      queued += records.length;
      pump();
    },
    pending() {
      return queued + (inFlight?.length ?? 0);
    },
    onProgress(cb) {
      progressCbs.push(cb);
    },
    flush(timeoutMs) {
      if (queued === 0 && inFlight === null) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        waiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
        pump();
      });
    },
    async close() {
      closed = true;
      await producer?.disconnect().catch(() => {});
    },
  };
}
