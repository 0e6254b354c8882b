/**
 * The profiles stage: ringflow.profile.stacks.v1 -> ringflow.profiles.v1,
 * exactly once, one transaction per fetched batch (and per idle close).
 *
 * Per assigned partition a WindowAssigner (processor/window.ts, the
 * processor's --window and --lateness) places each stacks record in the
 * window holding its collector interval's midpoint, and a ProfileWindow
 * (processor/profiles.ts) per open window merges them per series. When the
 * watermark closes a window its profiles go out, keyed by series.
 *
 * One keyed stage, no partials + final as the metrics take: a stacks record
 * is already one interval's counts of one process (the kernel aggregated the
 * samples), so there is no per-event volume to cut down before a shuffle,
 * and merging is a sum (associative, commutative), so whatever the order of
 * records within a window the profile is the same. What a second hop would
 * add is a re-key from process (host/tgid, the collectors' key) to series
 * (host, service): without it, processes of one service on one host that
 * hash to different partitions give one profile each per window (each
 * exact, summing to the truth; top-N is then per process group). A
 * single-process service is one writer. A pass-through re-key hop (stacks
 * re-keyed host|service onto an internal topic in transactions, then this
 * stage) was tried and dropped: after a restart the hop drains each source
 * partition's backlog in its own batch, so the merge partition receives
 * the processes' records out of time order by up to the backlog, and past
 * the lateness they were counted late, i.e. lost from the profiles (seen
 * with the SIGKILL test: 10+ late records per restart at 1 s lateness).
 * Read per process partition, records arrive in time order whatever the
 * backlog. A hop that keeps exactness needs what the metrics' stage 1 does
 * (partials per transaction across partitions): not done yet.
 *
 * Exactly once, as the spans stage does it: each transaction commits, with
 * the profiles, the consumer offset = the first record an open window still
 * needs (else the next to read) and in its metadata the assigner's state as
 * of the last record read. A restart (SIGKILL included) restores that state
 * and re-reads from the offset: a record of a window the state says is
 * closed was emitted (or counted late) before and is skipped; one of an open
 * window is merged again; so every window goes out once, whole. Only records
 * at or past the metadata's `read` are judged late (counted, and a rejection
 * record tells stage 2's ringflow.dropped{reason=late}); records that do not
 * decode, or are dated beyond --max-clock-skew ahead of our clock (one would
 * raise the partition's watermark and make every other host's records late),
 * are dead-lettered once the same way. The per-partition logic is pure
 * (ProfilePartition in processor/profiles.ts), its replay rule unit-tested.
 */
import type { Kafka, Consumer, EachBatchPayload, Transaction } from 'kafkajs';
import { CompressionTypes } from '../kafka/kafkajs.ts';
import { MessageLimits, describeKafkaError, isTooLarge, retrying, sendWithinLimits } from '../kafka/client.ts';
import { retryTxStep } from '../kafka/transaction.ts';
import { FailureReporter } from './failures.ts';
import { connectStageClients, isFenced, type TxProducer } from './stage-clients.ts';
import { FatalError } from '../common/errors.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { createSerial } from './serial.ts';
import { ProfilePartition, profileKey, recordTimeNs, type ProfileOut, type StackRecordIn } from './profiles.ts';
import { DEFAULT_MAX_CLOCK_SKEW_MS, RejectedRecord, clockSkewError, deadLetter, oversizedDeadLetter, type OutMessage } from './repartition.ts';
import { IDLE_GRACE_NS } from './partition.ts';
import { FetchWatch } from './fetch-watch.ts';
import { rejectionRecord } from './partial.ts';
import { DEADLETTER_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_GROUP, PROFILES_TOPIC, REPARTITION_TOPIC, repartitionKey } from './topics.ts';

export interface ProfilesStageCounters {
  /** Stacks records read (a replay's re-reads too). */
  records: number;
  /** Profiles written. */
  profiles: number;
  /** Records whose window had closed when first read: counted, not merged. */
  late: number;
  deadLetters: number;
  transactions: number;
  /** Profiles alone over ringflow.profiles.v1's max.message.bytes: dead-lettered (first bytes). */
  oversized: number;
  checkpointsIgnored: number;
  /** Records dated beyond the allowed clock skew: dead-lettered (in deadLetters too). */
  clockSkew: number;
  txRetries: number;
}

export interface ProfilesStageOptions {
  kafka: Kafka;
  instanceId: string;
  windowMs: number;
  latenessMs: number;
  /** Stacks kept per profile, the rest folded into '[other]' (default 200). */
  topStacks?: number;
  idleTickMs: number;
  /** A partition with no record for this long is closed by the clock (IDLE_GRACE behind it). */
  idleQuietMs: number;
  /**
   * Records dated further than this ahead of the processor's clock are
   * dead-lettered (reason clock_skew): one would raise the partition's
   * watermark and make every other host's records late (default 60 s).
   */
  maxClockSkewMs?: number;
  log: (l: string) => void;
  /** For tests: awaited in each transaction after its sends, before its offsets and commit. */
  beforeCommit?: (partition: number) => Promise<void>;
  onProfiles?: (profiles: readonly ProfileOut[]) => void;
  onFatal?: (err: FatalError) => void;
}

export interface ProfilesStage {
  counters: ProfilesStageCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface PartitionProfiles {
  p: ProfilePartition;
  /** The offset last committed (null: none by this instance). */
  committed: bigint | null;
  lastEventAt: number;
}

export function createProfilesStage(opts: ProfilesStageOptions): ProfilesStage {
  const counters: ProfilesStageCounters = { records: 0, profiles: 0, late: 0, deadLetters: 0, transactions: 0, oversized: 0, checkpointsIgnored: 0, clockSkew: 0, txRetries: 0 };
  const maxSkewNs = BigInt(opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS) * 1_000_000n;
  const partitionOpts = { windowMs: opts.windowMs, latenessMs: opts.latenessMs, ...(opts.topStacks !== undefined ? { topStacks: opts.topStacks } : {}) };
  const failures = new FailureReporter({ what: 'processor: profiles', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  const schema = schemaRegistry().byTopic(PROFILES_TOPIC)!;
  let fenced = false;
  const commitFailed = (err: unknown): void => {
    if (!isFenced(err)) return failures.failed('commit', err);
    if (fenced) return;
    fenced = true;
    opts.onFatal?.(new FatalError(`processor profiles stage: fenced: another processor runs as --instance ${opts.instanceId} (${describeKafkaError(err)}); this one stops`, { cause: err }));
  };
  let limits: MessageLimits | undefined;
  const states = new Map<number, PartitionProfiles>();
  let consumer: Consumer | undefined;
  let producer: TxProducer | undefined;
  let admin: ReturnType<Kafka['admin']> | undefined;
  let tick: NodeJS.Timeout | undefined;
  const serial = createSerial();
  const fetches = new FetchWatch();

  async function stateFor(partition: number): Promise<PartitionProfiles> {
    let s = states.get(partition);
    if (s) return s;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: PROFILES_GROUP, topics: [PROFILE_STACKS_TOPIC] }));
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    let part: ProfilePartition | undefined;
    if (p && p.offset !== '-1' && p.metadata) {
      try {
        part = new ProfilePartition(partitionOpts, p.metadata);
      } catch (err) {
        // the committed offset alone is all we can use; throwing would re-read this batch forever
        counters.checkpointsIgnored++;
        opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${partition}]: ignoring the commit's metadata (${(err as Error).message})`);
      }
    }
    s = { p: part ?? new ProfilePartition(partitionOpts), committed: p && p.offset !== '-1' ? BigInt(p.offset) : null, lastEventAt: Date.now() };
    states.set(partition, s);
    return s;
  }

  /** One transaction: the profiles, dead letters and rejections, and the commit of what `s` still needs. */
  async function emit(partition: number, s: PartitionProfiles, profiles: readonly ProfileOut[], dead: readonly OutMessage[]): Promise<boolean> {
    const commitOffset = s.p.commitOffset();
    if (profiles.length === 0 && dead.length === 0 && commitOffset === s.committed) return false;
    const meta = s.p.checkpoint();
    let oversized = 0;
    let tx: Transaction | undefined;
    try {
      const t = (tx = await producer!.transaction());
      const topicMessages: { topic: string; messages: { key: string; value: Buffer; headers?: OutMessage['headers'] }[] }[] = [];
      if (profiles.length > 0) topicMessages.push({ topic: PROFILES_TOPIC, messages: profiles.map((p) => ({ key: profileKey(p), value: encodeRecord(schema, p) })) });
      for (const topic of new Set(dead.map((d) => d.topic))) {
        topicMessages.push({ topic, messages: dead.filter((d) => d.topic === topic).map((d) => ({ key: d.key, value: d.value, ...(d.headers ? { headers: d.headers } : {}) })) });
      }
      const sent = await sendWithinLimits(t, topicMessages, {
        limitOf: limits!.limitOf,
        compression: CompressionTypes.GZIP,
        replace: (o) => ({ topic: DEADLETTER_TOPIC, messages: [oversizedDeadLetter(o, { topic: PROFILE_STACKS_TOPIC, partition })] }),
      });
      oversized = sent.oversized.length;
      for (const o of sent.oversized) opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${partition}]: a ${o.bytes}-byte profile is over ${o.topic}'s max.message.bytes (${o.limit}) -> dead letter (first bytes)`);
      await opts.beforeCommit?.(partition);
      await retryTxStep(() => t.sendOffsets({
        consumerGroupId: PROFILES_GROUP,
        topics: [{ topic: PROFILE_STACKS_TOPIC, partitions: [{ partition, offset: String(commitOffset), metadata: meta } as never] }],
      }), { onRetry: () => counters.txRetries++ });
      await t.commit();
    } catch (err) {
      if (tx) await producer!.abort(tx, err);
      // the closed windows are gone from this state: drop it and rebuild from the last commit
      states.delete(partition);
      try {
        consumer?.seek({ topic: PROFILE_STACKS_TOPIC, partition, offset: String(s.committed ?? 0n) });
      } catch {
        // not running: its restart reads from the committed offset anyway
      }
      if (isTooLarge(err)) await limits!.refresh();
      throw err;
    }
    s.committed = commitOffset;
    counters.oversized += oversized;
    counters.profiles += profiles.length - oversized;
    counters.deadLetters += dead.filter((d) => d.topic === DEADLETTER_TOPIC).length;
    counters.transactions++;
    if (profiles.length > 0) opts.onProfiles?.(profiles);
    return true;
  }

  return {
    counters,
    async start() {
      ({ admin, producer, consumer } = await connectStageClients({
        kafka: opts.kafka, transactionalId: `ringflow-profiles-${opts.instanceId}`, groupId: PROFILES_GROUP,
        name: 'processor profiles stage', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
      }));
      limits = new MessageLimits(admin, [PROFILES_TOPIC, DEADLETTER_TOPIC, REPARTITION_TOPIC], opts.log);
      await limits.refresh();
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        const mine = new Set((e.payload.memberAssignment[PROFILE_STACKS_TOPIC] ?? []) as number[]);
        for (const p of [...states.keys()]) if (!mine.has(p)) states.delete(p);
      });
      consumer.on(consumer.events.FETCH, () => fetches.answered(Date.now()));
      await consumer.subscribe({ topic: PROFILE_STACKS_TOPIC, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload: EachBatchPayload) =>
          serial.run(async () => {
            const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
            if (batch.messages.length === 0 || !isRunning() || isStale()) return;
            const s = await stateFor(batch.partition);
            const dead: OutMessage[] = [];
            const nowNs = BigInt(Date.now()) * 1_000_000n;
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              // at or past what the checkpoint read, and not read by this state yet: judged now
              const fresh = s.p.isFresh(offset);
              let rec: StackRecordIn | undefined;
              try {
                if (!m.value) throw new Error('record has no value');
                const d = decodeCurrent(m.value);
                if (d.schema.topic !== PROFILE_STACKS_TOPIC) throw new Error(`record of ${d.schema.topic} found on ${PROFILE_STACKS_TOPIC}`);
                rec = d.value as unknown as StackRecordIn;
                // judged against the clock when first read; a replay (not fresh) judges it the same unless a day passed
                const skew = clockSkewError(recordTimeNs(rec), nowNs, maxSkewNs);
                if (skew) throw skew;
              } catch (err) {
                s.p.skip(offset);
                if (fresh) {
                  const o = deadLetter(PROFILE_STACKS_TOPIC, batch.partition, m.offset, m.value, err);
                  const isSkew = err instanceof RejectedRecord && err.reason === 'clock_skew';
                  if (isSkew) counters.clockSkew++;
                  const n = counters.clockSkew;
                  if (!isSkew || n === 1 || /^10+$/.test(String(n))) opts.log(`processor: ${PROFILE_STACKS_TOPIC}[${batch.partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})${isSkew ? `; ${n} so far` : ''}`);
                  dead.push(o);
                  if (err instanceof RejectedRecord && rec !== undefined) dead.push({ topic: REPARTITION_TOPIC, key: repartitionKey(PROFILE_STACKS_TOPIC, rec.host), value: rejectionRecord(PROFILE_STACKS_TOPIC, rec.host, nowNs, err.reason) });
                }
                continue;
              }
              if (s.p.add(rec, offset) === 'late') {
                counters.late++;
                const n = counters.late;
                if (n === 1 || /^10+$/.test(String(n))) opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${batch.partition}]@${m.offset}: its window had closed (late; ${n} so far): counted in ringflow.dropped{reason=late}, not merged`);
                dead.push({ topic: REPARTITION_TOPIC, key: repartitionKey(PROFILE_STACKS_TOPIC, rec.host), value: rejectionRecord(PROFILE_STACKS_TOPIC, rec.host, recordTimeNs(rec), 'late') });
              }
            }
            counters.records += batch.messages.length;
            s.lastEventAt = Date.now();
            try {
              if (await emit(batch.partition, s, s.p.closed(), dead)) failures.ok('commit');
            } catch (err) {
              commitFailed(err);
              return;
            }
            resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
            await heartbeat();
          }),
      });
      // quiet partitions close their last windows by the clock, IDLE_GRACE behind it
      tick = setInterval(() => {
        void serial.run(async () => {
          const now = Date.now();
          if (!fetches.answering(now)) return;
          let did = false;
          for (const [partition, s] of states) {
            if (s.p.openWindows === 0 || !fetches.quiet(now, s.lastEventAt, opts.idleQuietMs)) continue;
            did = (await emit(partition, s, s.p.closed(BigInt(now) * 1_000_000n - IDLE_GRACE_NS), [])) || did;
          }
          if (did) failures.ok('commit');
        }).catch((err) => commitFailed(err));
      }, opts.idleTickMs);
    },
    async stop() {
      if (tick) clearInterval(tick);
      await consumer?.disconnect().catch(() => {});
      await serial.idle();
      await producer?.disconnect().catch(() => {});
      await admin?.disconnect().catch(() => {});
    },
  };
}
