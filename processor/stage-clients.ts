/**
 * The Kafka clients of one exactly-once processor stage (aggregate, spans,
 * alerts): an admin (committed offsets and their checkpoints), a
 * transactional producer (its id is the instance's: a restarted instance
 * fences its predecessor), and a read_committed consumer in the stage's
 * group, supervised so that a consumer kafkajs gives up on ends the service
 * (superviseConsumer). What connected is disconnected again if a later step
 * fails.
 */
import type { Kafka, Consumer, Producer, Admin, PartitionAssigner, Transaction } from 'kafkajs';
import { createPartitioner } from '../kafka/kafkajs.ts';
import { superviseConsumer, CONSUMER_METADATA_MAX_AGE_MS, describeKafkaError } from '../kafka/client.ts';
import { FatalError } from '../common/errors.ts';
import type { FailureReporter } from './failures.ts';
import { SESSION_TIMEOUT_MS } from './topics.ts';

export interface StageClients {
  admin: Admin;
  producer: TxProducer;
  consumer: Consumer;
}

/** Whether a transactional call failed because another producer with our transactional id fenced us. */
export function isFenced(err: unknown): boolean {
  const e = err as { type?: string };
  return e?.type === 'INVALID_PRODUCER_EPOCH' || e?.type === 'PRODUCER_FENCED' || /INVALID_PRODUCER_EPOCH|PRODUCER_FENCED|old epoch/.test(describeKafkaError(err));
}

/**
 * What a stage does with a failed transaction: fencing ends the service at
 * once, said once (another instance with our transactional id owns the
 * output now; going on would only fail again), any other failure is counted
 * under 'commit' and escalated if it persists (FailureReporter).
 * `stage` names it in the fatal error, e.g. 'processor spans stage'.
 */
export function commitFailureHandler(o: { stage: string; instanceId: string; failures: FailureReporter; onFatal?: (err: FatalError) => void }): (err: unknown) => void {
  let fenced = false;
  return (err) => {
    if (!isFenced(err)) return o.failures.failed('commit', err);
    if (fenced) return;
    fenced = true;
    o.onFatal?.(new FatalError(`${o.stage}: fenced: another processor runs as --instance ${o.instanceId} (${describeKafkaError(err)}); this one stops`, { cause: err }));
  };
}

/**
 * A stage's transactional producer that recovers from a state kafkajs never
 * leaves: after a broker restart a commit or abort that failed mid-way leaves
 * it in COMMITTING or ABORTING, and every later transaction() throws
 * ('Cannot call "beginTransaction" in state "ABORTING"') forever (seen in the
 * soak: stage 2 stopped writing metrics). Such a producer is replaced by a
 * new one with the same transactional id before the next transaction: its
 * initTransactions aborts whatever the old one left open, so nothing of it
 * commits. Not after fencing: a new producer would fence the instance that
 * fenced us, which owns the output now.
 */
export class TxProducer {
  private producer: Producer;
  private broken = false;
  private readonly make: () => Producer;
  /** Producers replaced so far. */
  renewals = 0;

  constructor(make: () => Producer) {
    this.make = make;
    this.producer = make();
  }

  connect(): Promise<void> {
    return this.producer.connect();
  }

  async transaction(): Promise<Transaction> {
    if (this.broken) {
      await this.producer.disconnect().catch(() => {});
      this.producer = this.make();
      this.renewals++;
      await this.producer.connect(); // throws: still broken, tried again next time
      this.broken = false;
    }
    try {
      return await this.producer.transaction();
    } catch (err) {
      if (!isFenced(err)) this.broken = true;
      throw err;
    }
  }

  /** Aborts `tx`; if even that fails the producer's state is unknown: replaced before the next transaction. */
  async abort(tx: Transaction, cause: unknown): Promise<void> {
    try {
      await tx.abort();
    } catch {
      if (!isFenced(cause)) this.broken = true;
    }
  }

  disconnect(): Promise<void> {
    return this.producer.disconnect();
  }
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
  const producer = new TxProducer(() => o.kafka.producer({ transactionalId: o.transactionalId, idempotent: true, maxInFlightRequests: 1, createPartitioner }));
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
