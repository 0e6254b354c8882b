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
 * exact, summing to the truth; top-N is then per process group). The
 * single-process services of the tests and the common case are one writer.
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
 * decode are dead-lettered once the same way.
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
import { WindowAssigner, type WindowAssignerState } from './window.ts';
import { ProfileWindow, DEFAULT_TOP_STACKS, profileKey, recordTimeNs, type ProfileOut, type StackRecordIn } from './profiles.ts';
import { deadLetter, oversizedDeadLetter, type OutMessage } from './repartition.ts';
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

interface Metadata {
  v: 1;
  /** Records below this were read (late ones counted, bad ones dead-lettered) before the commit. */
  read: string;
  windows: WindowAssignerState;
}

interface OpenProfiles {
  acc: ProfileWindow;
  /** The first offset merged into it: the commit may not pass it while it is open. */
  minOffset: bigint;
}

interface PartitionProfiles {
  assigner: WindowAssigner;
  open: Map<bigint, OpenProfiles>;
  next: bigint;
  /** The metadata's read offset this state was restored from (0: none). */
  readFrom: bigint;
  committed: bigint | null;
  lastEventAt: number;
}

export function createProfilesStage(opts: ProfilesStageOptions): ProfilesStage {
  const counters: ProfilesStageCounters = { records: 0, profiles: 0, late: 0, deadLetters: 0, transactions: 0, oversized: 0, checkpointsIgnored: 0, txRetries: 0 };
  const failures = new FailureReporter({ what: 'processor: profiles', log: opts.log, ...(opts.onFatal ? { onFatal: opts.onFatal } : {}) });
  const schema = schemaRegistry().byTopic(PROFILES_TOPIC)!;
  const topStacks = opts.topStacks ?? DEFAULT_TOP_STACKS;
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
  const newAssigner = (): WindowAssigner => new WindowAssigner({ sizeMs: opts.windowMs, latenessMs: opts.latenessMs });

  async function stateFor(partition: number): Promise<PartitionProfiles> {
    let s = states.get(partition);
    if (s) return s;
    const committed = await retrying(() => admin!.fetchOffsets({ groupId: PROFILES_GROUP, topics: [PROFILE_STACKS_TOPIC] }));
    const p = committed[0]?.partitions.find((x) => x.partition === partition);
    let assigner: WindowAssigner | undefined;
    let readFrom = 0n;
    if (p && p.offset !== '-1' && p.metadata) {
      try {
        const meta = JSON.parse(p.metadata) as Metadata;
        if (meta === null || typeof meta !== 'object' || meta.v !== 1) throw new Error(`unknown version ${String((meta as { v?: unknown } | null)?.v)}`);
        if (!/^\d+$/.test(String(meta.read))) throw new Error('no read offset');
        assigner = WindowAssigner.restore(meta.windows);
        // another --window or --lateness since: the old windows cannot be continued
        if (assigner.sizeNs !== newAssigner().sizeNs || assigner.latenessNs !== newAssigner().latenessNs) throw new Error('window size or lateness changed');
        readFrom = BigInt(meta.read);
      } catch (err) {
        // the committed offset alone is all we can use; throwing would re-read this batch forever
        counters.checkpointsIgnored++;
        opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${partition}]: ignoring the commit's metadata (${(err as Error).message})`);
        assigner = undefined;
        readFrom = 0n;
      }
    }
    s = { assigner: assigner ?? newAssigner(), open: new Map(), next: -1n, readFrom, committed: p && p.offset !== '-1' ? BigInt(p.offset) : null, lastEventAt: Date.now() };
    states.set(partition, s);
    return s;
  }

  /** The profiles of the windows the watermark closed, oldest first. */
  function closed(s: PartitionProfiles, wallNs?: bigint): ProfileOut[] {
    const out: ProfileOut[] = [];
    for (const w of wallNs === undefined ? s.assigner.advance() : s.assigner.advanceTo(wallNs)) {
      const o = s.open.get(w.startNs);
      if (!o) continue;
      s.open.delete(w.startNs);
      out.push(...o.acc.finish(w.startNs, w.endNs, topStacks));
    }
    return out;
  }

  /** One transaction: the profiles, dead letters and rejections, and the commit of what `s` still needs. */
  async function emit(partition: number, s: PartitionProfiles, profiles: readonly ProfileOut[], dead: readonly OutMessage[]): Promise<boolean> {
    let commitOffset = s.next;
    for (const o of s.open.values()) if (o.minOffset < commitOffset) commitOffset = o.minOffset;
    if (profiles.length === 0 && dead.length === 0 && commitOffset === s.committed) return false;
    const read = s.next > s.readFrom ? s.next : s.readFrom;
    const meta: Metadata = { v: 1, read: String(read), windows: s.assigner.state() };
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
        topics: [{ topic: PROFILE_STACKS_TOPIC, partitions: [{ partition, offset: String(commitOffset), metadata: JSON.stringify(meta) } as never] }],
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
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              // at or past what the checkpoint read, and not read by this state yet: judged now
              const fresh = offset >= s.readFrom && offset >= s.next;
              if (offset + 1n > s.next) s.next = offset + 1n;
              let rec: StackRecordIn;
              try {
                if (!m.value) throw new Error('record has no value');
                const d = decodeCurrent(m.value);
                if (d.schema.topic !== PROFILE_STACKS_TOPIC) throw new Error(`record of ${d.schema.topic} found on ${PROFILE_STACKS_TOPIC}`);
                rec = d.value as unknown as StackRecordIn;
              } catch (err) {
                if (fresh) {
                  const o = deadLetter(PROFILE_STACKS_TOPIC, batch.partition, m.offset, m.value, err);
                  opts.log(`processor: ${PROFILE_STACKS_TOPIC}[${batch.partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})`);
                  dead.push(o);
                }
                continue;
              }
              const w = s.assigner.observe(recordTimeNs(rec));
              if (w === null) {
                // closed: emitted before the checkpoint (a replay), or late now
                if (fresh) {
                  counters.late++;
                  const n = counters.late;
                  if (n === 1 || /^10+$/.test(String(n))) opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${batch.partition}]@${m.offset}: its window had closed (late; ${n} so far): counted in ringflow.dropped{reason=late}, not merged`);
                  dead.push({ topic: REPARTITION_TOPIC, key: repartitionKey(PROFILE_STACKS_TOPIC, rec.host), value: rejectionRecord(PROFILE_STACKS_TOPIC, rec.host, recordTimeNs(rec), 'late') });
                }
                continue;
              }
              let o = s.open.get(w.startNs);
              if (!o) s.open.set(w.startNs, (o = { acc: new ProfileWindow(), minOffset: offset }));
              o.acc.add(rec);
            }
            counters.records += batch.messages.length;
            s.lastEventAt = Date.now();
            try {
              if (await emit(batch.partition, s, closed(s), dead)) failures.ok('commit');
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
            if (s.open.size === 0 || !fetches.quiet(now, s.lastEventAt, opts.idleQuietMs)) continue;
            did = (await emit(partition, s, closed(s, BigInt(now) * 1_000_000n - IDLE_GRACE_NS), [])) || did;
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
