/**
 * The Kafka clients of one exactly-once processor stage (aggregate, spans,
 * alerts): an admin (committed offsets and their checkpoints), a
 * transactional producer (its id is the instance's: a restarted instance
 * fences its predecessor), and a read_committed consumer in the stage's
 * group, supervised so that a consumer kafkajs gives up on ends the service
 * (superviseConsumer). What connected is disconnected again if a later step
 * fails.
 */
import type { Kafka, Consumer, Producer, Admin, PartitionAssigner } from 'kafkajs';
import { createPartitioner } from '../kafka/kafkajs.ts';
import { superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS } from '../kafka/client.ts';
import type { FatalError } from '../common/errors.ts';
import { SESSION_TIMEOUT_MS } from './topics.ts';

export interface StageClients {
  admin: Admin;
  producer: Producer;
  consumer: Consumer;
}

export async function connectStageClients(o: {
  kafka: Kafka;
  transactionalId: string;
  groupId: string;
  /** The stage as log lines name it, e.g. 'processor spans stage'. */
  name: string;
  log: (line: string) => void;
  onFatal?: (err: FatalError) => void;
  partitionAssigners?: PartitionAssigner[];
}): Promise<StageClients> {
  const admin = o.kafka.admin();
  const producer = o.kafka.producer({ transactionalId: o.transactionalId, idempotent: true, maxInFlightRequests: 1, createPartitioner });
  const consumer = o.kafka.consumer({
    groupId: o.groupId,
    readUncommitted: false,
    metadataMaxAge: CONSUMER_METADATA_MAX_AGE_MS,
    sessionTimeout: SESSION_TIMEOUT_MS,
    heartbeatInterval: 1000,
    ...(o.partitionAssigners ? { partitionAssigners: o.partitionAssigners } : {}),
  });
  try {
    await admin.connect();
    await producer.connect();
    await consumer.connect();
  } catch (err) {
    await Promise.all([consumer.disconnect(), producer.disconnect(), admin.disconnect()].map((p) => p.catch(() => {})));
    throw err;
  }
  superviseConsumer(consumer, o.name, o.log, o.onFatal ?? (() => {}));
  return { admin, producer, consumer };
}
