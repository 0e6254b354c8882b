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
import { decodeCurrent, encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { ProfilePartition, profileKey, recordTimeNs, type ProfileOut, type StackRecordIn } from './profiles.ts';
import { DEFAULT_MAX_CLOCK_SKEW_MS, RejectedRecord, clockSkewError, deadLetter, type OutMessage } from './repartition.ts';
import { createStageRunner, type KeyedStageOptions, type StageRunnerCounters } from './stage-runner.ts';
import { rejectionRecord } from './partial.ts';
import { DEADLETTER_TOPIC, PROFILE_STACKS_TOPIC, PROFILES_GROUP, PROFILES_TOPIC, REPARTITION_TOPIC, repartitionKey } from './topics.ts';

export interface ProfilesStageCounters extends StageRunnerCounters {
  /** Profiles written. */
  profiles: number;
  /** Records whose window had closed when first read: counted, not merged. */
  late: number;
  /** Dead letters alone (the rejection records that count late and skewed records are not). */
  deadLetters: number;
  /** Records dated beyond the allowed clock skew: dead-lettered (in deadLetters too). */
  clockSkew: number;
}

export interface ProfilesStageOptions extends KeyedStageOptions {
  windowMs: number;
  latenessMs: number;
  /** Stacks kept per profile, the rest folded into '[other]' (default 200). */
  topStacks?: number;
  /** A partition with no record for this long is closed by the clock (IDLE_GRACE behind it). */
  idleQuietMs: number;
  onProfiles?: (profiles: readonly ProfileOut[]) => void;
}

export interface ProfilesStage {
  counters: ProfilesStageCounters;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The consume / transaction / commit loop is the shared one (processor/stage-runner.ts); what is the profiles' own is here. */
export function createProfilesStage(opts: ProfilesStageOptions): ProfilesStage {
  const counters: ProfilesStageCounters = { records: 0, profiles: 0, late: 0, deadLetters: 0, transactions: 0, oversized: 0, checkpointsIgnored: 0, clockSkew: 0, txRetries: 0 };
  const maxSkewNs = BigInt(opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS) * 1_000_000n;
  const partitionOpts = { windowMs: opts.windowMs, latenessMs: opts.latenessMs, ...(opts.topStacks !== undefined ? { topStacks: opts.topStacks } : {}) };
  const schema = schemaRegistry().byTopic(PROFILES_TOPIC)!;

  function read(p: ProfilePartition, partition: number, messages: readonly { offset: string; value: Buffer | null }[], dead: OutMessage[], nowNs: bigint): void {
    for (const m of messages) {
      const offset = BigInt(m.offset);
      // at or past what the checkpoint read, and not read by this state yet: judged now
      const fresh = p.isFresh(offset);
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
        p.skip(offset);
        if (fresh) {
          const o = deadLetter(PROFILE_STACKS_TOPIC, partition, m.offset, m.value, err);
          const isSkew = err instanceof RejectedRecord && err.reason === 'clock_skew';
          if (isSkew) counters.clockSkew++;
          const n = counters.clockSkew;
          if (!isSkew || n === 1 || /^10+$/.test(String(n))) opts.log(`processor: ${PROFILE_STACKS_TOPIC}[${partition}]@${m.offset} -> dead letter (${o.headers!['ringflow.error']})${isSkew ? `; ${n} so far` : ''}`);
          dead.push(o);
          if (err instanceof RejectedRecord && rec !== undefined) dead.push({ topic: REPARTITION_TOPIC, key: repartitionKey(PROFILE_STACKS_TOPIC, rec.host), value: rejectionRecord(PROFILE_STACKS_TOPIC, rec.host, nowNs, err.reason) });
        }
        continue;
      }
      if (p.add(rec, offset) === 'late') {
        counters.late++;
        const n = counters.late;
        if (n === 1 || /^10+$/.test(String(n))) opts.log(`processor: profiles: ${PROFILE_STACKS_TOPIC}[${partition}]@${m.offset}: its window had closed (late; ${n} so far): counted in ringflow.dropped{reason=late}, not merged`);
        dead.push({ topic: REPARTITION_TOPIC, key: repartitionKey(PROFILE_STACKS_TOPIC, rec.host), value: rejectionRecord(PROFILE_STACKS_TOPIC, rec.host, recordTimeNs(rec), 'late') });
      }
    }
  }

  const runner = createStageRunner<ProfilePartition, ProfileOut>({
    kafka: opts.kafka, instanceId: opts.instanceId, name: 'profiles',
    inTopic: PROFILE_STACKS_TOPIC, group: PROFILES_GROUP, outTopic: PROFILES_TOPIC,
    counters, log: opts.log,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    ...(opts.beforeCommit ? { beforeCommit: opts.beforeCommit } : {}),
    idleTickMs: opts.idleTickMs,
    // quiet partitions close their last windows by the clock, IDLE_GRACE behind it
    idleQuietMs: opts.idleQuietMs,
    restore: (metadata) => new ProfilePartition(partitionOpts, metadata),
    fresh: () => new ProfilePartition(partitionOpts),
    read,
    advance: (p) => p.closed(),
    pending: (p) => p.openWindows !== 0,
    idle: (p, wm) => p.closed(wm),
    commitOffset: (p) => p.commitOffset(),
    checkpoint: (p) => p.checkpoint(),
    encode: (p) => ({ key: profileKey(p), value: encodeRecord(schema, p) }),
    oversizedLine: (partition, o) => `processor: profiles: ${PROFILE_STACKS_TOPIC}[${partition}]: a ${o.bytes}-byte profile is over ${o.topic}'s max.message.bytes (${o.limit}) -> dead letter (first bytes)`,
    committed(profiles, dead, oversized) {
      counters.profiles += profiles.length - oversized;
      // rejection records (late, clock skew) are not dead letters
      counters.deadLetters += dead.filter((d) => d.topic === DEADLETTER_TOPIC).length;
    },
    ...(opts.onProfiles ? { onOutput: opts.onProfiles } : {}),
  });

  return { counters, start: () => runner.start(), stop: () => runner.stop() };
}
