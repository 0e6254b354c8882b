/**
 * `ringflow collect` and `ringflow up`: wire the native session, the
 * transcoder and a sink into a Collector, and run it until --duration, SIGINT
 * or SIGTERM.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { FatalError, EXIT } from '../common/errors.ts';
import { DAY_NS, MAX_TIMER_MS, parseBrokers, parseComm, parseDurationInRange, parseHost, parseIntFlag, parseList, parsePid } from '../common/options.ts';
import { SIGNALS, SIGNAL_NAMES, DEFAULT_SIGNALS, objectPath, signalByName, skippedProgramsLine } from '../collector/signals/registry.ts';
import { encodeSettings, encodeL7Settings, encodeProfileSettings, type Filters, type L7Settings } from '../collector/signals/settings.ts';
import { encodeFsFilterSettings, kernelFsTypes, parseFsTypes, resolveFsPrefixes, type FsFilterSettings } from '../collector/signals/fs-filter.ts';
import { DEFAULT_CAPTURED_HEADERS, NEVER_CAPTURED_HEADERS, type L7ParseOptions } from '../collector/l7/types.ts';
import { L7_MAX_CAPTURE } from '../collector/l7/capture.ts';
import { checkBtf, checkBuilt, checkPrivileges, ensureTracefs, cgroupIdOf } from '../collector/preflight.ts';
import { Collector, type StatsSnapshot } from '../collector/collector.ts';
import { createKafkaSink, type Compression } from '../collector/kafka-sink.ts';
import { createStdoutSink } from '../collector/stdout-sink.ts';
import { createCodec, bootTimeNs } from '../collector/codec.ts';
import { procIdentities } from '../collector/process-identity.ts';
import { RunStateFile, newRunId, stateDir, statePath } from '../collector/run-state.ts';
import type { EventSink } from '../collector/sink.ts';
import type { L7Counters } from '../collector/l7/tracker.ts';
import { DEFAULT_OFFCPU_MIN_NS, DEFAULT_PROFILE_HZ, PROFILE_PREFIX, PROFILE_PROGRAM, PROFILE_RECORD_TYPE, PROFILE_TOPIC, ProfileSource } from '../collector/profile/source.ts';
import { mapSizesFor } from '../collector/profile/sizing.ts';

export const COLLECT_HELP = `Usage: ringflow collect [options]

Loads CO-RE eBPF programs, drains their ring buffer in batches, encodes every
event as Avro (single-object encoding) and produces it to Kafka topics
ringflow.<signal>.<event>.v1, with a stats record per host every few seconds on
ringflow.collector.stats.v1. Needs root or CAP_BPF+CAP_PERFMON.

Options:
  --brokers H:P[,H:P]   Kafka bootstrap brokers (default 127.0.0.1:9092)
  --signals LIST        comma list of ${SIGNAL_NAMES.join(', ')} (default ${DEFAULT_SIGNALS.join(',')})
${SIGNALS.map((s) => `                          ${s.name}: ${s.summary}`).join('\n')}
  --pid N               only this process (tgid)
  --uid N               only this user id
  --comm NAME           only tasks with this command name (exact, <= 15 bytes)
  --cgroup DIR          only tasks in this cgroup v2 directory
  --min-latency DUR     omit latency events shorter than DUR (e.g. 1ms, 500us); fs: the calls under it
                          are counted per op in the kernel (rf_fs_below), never walked nor sent
  --path DIR            fs: only files under DIR (repeatable, up to 64): DIR is resolved at start
                          (symlinks followed; it must exist) and a file is under it when DIR's inode
                          is an ancestor of the file's, however reached (bind mounts, relative paths)
  --fs TYPE             fs: only file systems of this type, as /proc/filesystems names it (ext4,
                          xfs, tmpfs, fuse...; repeatable or a comma list, up to 8)
  --port N              l7: only sockets with this local or remote port
  --capture-bytes N     l7: payload bytes copied per syscall (default 4096, max ${L7_MAX_CAPTURE})
  --headers LIST        l7: header names kept (default ${DEFAULT_CAPTURED_HEADERS.join(',')});
                          ${[...NEVER_CAPTURED_HEADERS].join(', ')} are never kept
  --keep-query          l7: keep query-string values (default: redacted)
  --l7-kernel-parse on|off
                        l7: frame and pair HTTP/1 in the kernel, one record per exchange
                          (default on); off: capture every syscall and parse here, as before
  --l7-handover DUR     l7: a request the kernel holds with no response for DUR is reported alone
                          (REQ_ONLY; its response, if it comes, goes out on its own) (default 2s)
  --profile-hz N        profile: samples per second per CPU (default 19: the OpenTelemetry eBPF profiler's and
                          Parca's choice, a prime off the beat of 10 ms/1 ms timers, well under 1% of a CPU)
  --profile-interval DUR
                        profile, offcpu: how often the kernel's counts are drained into records (default 10s)
  --profile-threads     profile, offcpu: count per thread (records carry pid) rather than per process
  --offcpu-min DUR      offcpu: blocks shorter than DUR are not counted (default 1ms: shorter ones are mostly lock
                          hand-overs and wake-ups that explain no latency a user sees, and at 100k switches/s
                          they would fill the count map and the records)
  --exclude-pid LIST    l7: processes whose traffic is not parsed (ringflow up passes its own
                          processor and exporter, so their OTLP exports do not become spans)
  --duration DUR        stop after DUR (e.g. 30s); default: until Ctrl-C
  --stdout              print decoded events as JSON lines instead of producing to Kafka
  --partitions N        partitions of topics the collector creates (default 6)
  --compression C       zstd, gzip or none (default zstd)
  --ring-mb N           ring buffer size in MiB, a power of two (default 16)
  --stats-interval DUR  how often to publish the stats record (default 5s)
  --host NAME           host name carried in every record (default: os.hostname())
  -q, --quiet           no periodic summary on stderr (the start line is still printed)
  -h, --help            this help`;

const OPTIONS = {
  brokers: { type: 'string' },
  signals: { type: 'string' },
  pid: { type: 'string' },
  uid: { type: 'string' },
  comm: { type: 'string' },
  cgroup: { type: 'string' },
  'min-latency': { type: 'string' },
  path: { type: 'string', multiple: true },
  fs: { type: 'string', multiple: true },
  port: { type: 'string' },
  'capture-bytes': { type: 'string' },
  headers: { type: 'string' },
  'keep-query': { type: 'boolean' },
  'l7-kernel-parse': { type: 'string' },
  'l7-handover': { type: 'string' },
  'exclude-pid': { type: 'string' },
  'profile-hz': { type: 'string' },
  'profile-interval': { type: 'string' },
  'offcpu-min': { type: 'string' },
  'profile-threads': { type: 'boolean' },
  duration: { type: 'string' },
  stdout: { type: 'boolean' },
  partitions: { type: 'string' },
  compression: { type: 'string' },
  'ring-mb': { type: 'string' },
  'stats-interval': { type: 'string' },
  host: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface CollectConfig {
  brokers: string[];
  signals: string[];
  filters: Filters;
  durationMs?: number;
  stdout: boolean;
  partitions: number;
  compression: Compression;
  ringBytes: number;
  statsIntervalMs: number;
  host: string;
  quiet: boolean;
  l7: L7Settings;
  l7Parse: L7ParseOptions;
  l7Exclude: number[];
  /** the fs signal's own filters (--fs, --path) */
  fs: FsFilterSettings;
  /** the profile and offcpu signals (collector/profile) */
  profile: { hz: number; intervalMs: number; offcpuMinNs: bigint; perThread: boolean };
}

/**
 * Records per produce request (one request in flight: see kafka-sink.ts).
 * Measured here with collector/kafkajs.ts's linear grouping: 5000 -> ~135k
 * records/s, 20000 -> ~170k/s, 50000 -> ~165k/s, one or six partitions alike.
 */
export const KAFKA_BATCH_RECORDS = 20000;

export const DEFAULT_BROKERS = ['127.0.0.1:9092'];

/** Flags -> config; every bad value is a one-line FatalError (exit 2). */
export function parseCollectArgs(argv: string[]): CollectConfig & { help: boolean; brokersGiven: boolean } {
  const { values: v } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
  const filters: Filters = {};
  if (v.pid !== undefined) filters.pid = parsePid('--pid', v.pid);
  if (v.uid !== undefined) filters.uid = parseIntFlag('--uid', v.uid, 0, 0xfffffffe);
  if (v.comm !== undefined) filters.comm = parseComm(v.comm);
  if (v.cgroup !== undefined) filters.cgroupId = cgroupIdOf(v.cgroup);
  if (v['min-latency'] !== undefined) filters.minLatencyNs = parseDurationInRange('--min-latency', v['min-latency'], 0n, DAY_NS); // the kernel filter is a u64
  const compression = v.compression ?? 'zstd';
  if (compression !== 'zstd' && compression !== 'gzip' && compression !== 'none') {
    throw new FatalError(`--compression: "${compression}" is not supported; use zstd, gzip or none`, { exitCode: EXIT.usage });
  }
  const ringMb = v['ring-mb'] === undefined ? 16 : parseIntFlag('--ring-mb', v['ring-mb'], 1, 1024);
  if ((ringMb & (ringMb - 1)) !== 0) throw new FatalError(`--ring-mb: ${ringMb} is not a power of two`, { exitCode: EXIT.usage });
  const durationNs = v.duration === undefined ? undefined : parseDurationInRange('--duration', v.duration, 1_000_000n, BigInt(MAX_TIMER_MS) * 1_000_000n);
  // a timer: beyond 2^31-1 ms Node fires it every 1 ms instead
  const statsNs = parseDurationInRange('--stats-interval', v['stats-interval'] ?? '5s', 100_000_000n, 3_600_000_000_000n);
  const signals = v.signals === undefined ? [...DEFAULT_SIGNALS] : parseList('--signals', v.signals, SIGNAL_NAMES);
  // the fs signal's own filters: given without it they would filter nothing, silently
  for (const flag of ['path', 'fs'] as const) {
    if (v[flag] !== undefined && !signals.includes('fs')) throw new FatalError(`--${flag} filters the fs signal only; add fs to --signals`, { exitCode: EXIT.usage });
  }
  return {
    help: v.help ?? false,
    brokersGiven: v.brokers !== undefined,
    brokers: v.brokers === undefined ? DEFAULT_BROKERS : parseBrokers(v.brokers),
    signals,
    filters,
    ...(durationNs === undefined ? {} : { durationMs: Number(durationNs / 1_000_000n) }),
    stdout: v.stdout ?? false,
    partitions: v.partitions === undefined ? 6 : parseIntFlag('--partitions', v.partitions, 1, 1000),
    compression,
    ringBytes: ringMb * 1024 * 1024,
    statsIntervalMs: Number(statsNs / 1_000_000n),
    host: v.host === undefined ? os.hostname() : parseHost(v.host),
    quiet: v.quiet ?? false,
    l7: {
      ...(v.port === undefined ? {} : { port: parseIntFlag('--port', v.port, 1, 65535) }),
      ...(v['capture-bytes'] === undefined ? {} : { captureBytes: parseIntFlag('--capture-bytes', v['capture-bytes'], 0, L7_MAX_CAPTURE) }),
      ...(v['l7-kernel-parse'] === undefined ? {} : { kernelParse: parseOnOff('--l7-kernel-parse', v['l7-kernel-parse']) }),
      // well under the spans stage's 30 s request timeout, which pairs the late response by ordinal
      handoverNs: parseDurationInRange('--l7-handover', v['l7-handover'] ?? '2s', 100_000_000n, 20_000_000_000n),
    },
    profile: {
      hz: v['profile-hz'] === undefined ? DEFAULT_PROFILE_HZ : parseIntFlag('--profile-hz', v['profile-hz'], 1, 1000),
      intervalMs: Number(parseDurationInRange('--profile-interval', v['profile-interval'] ?? '10s', 100_000_000n, 3_600_000_000_000n) / 1_000_000n),
      offcpuMinNs: v['offcpu-min'] === undefined ? DEFAULT_OFFCPU_MIN_NS : parseDurationInRange('--offcpu-min', v['offcpu-min'], 0n, DAY_NS),
      perThread: v['profile-threads'] ?? false,
    },
    fs: {
      ...(v.fs === undefined ? {} : { types: parseFsTypes(v.fs, kernelFsTypes()) }),
      ...(v.path === undefined ? {} : { prefixes: resolveFsPrefixes(v.path) }),
    },
    l7Exclude: v['exclude-pid'] === undefined ? [] : v['exclude-pid'].split(',').map((p) => parseIntFlag('--exclude-pid', p.trim(), 1, 4194304)),
    l7Parse: {
      headers: v.headers === undefined ? DEFAULT_CAPTURED_HEADERS : v.headers.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== ''),
      keepQueryValues: v['keep-query'] ?? false,
    },
  };
}

function parseOnOff(flag: string, v: string): boolean {
  if (v === 'on') return true;
  if (v === 'off') return false;
  throw new FatalError(`${flag}: "${v}" is neither on nor off`, { exitCode: EXIT.usage });
}

/** Native errors carry op/code; turn the ones a user can fix into one line. */
export function loadError(signal: string, err: unknown): FatalError {
  const e = err as { message?: string; code?: string; op?: string };
  const msg = e?.message ?? String(err);
  if (e?.code === 'EPERM' || e?.code === 'EACCES') {
    return new FatalError(`loading signal ${signal} was refused by the kernel (${msg}); run as root or with CAP_BPF+CAP_PERFMON (kernel lockdown can also forbid it)`, { exitCode: EXIT.privileges, cause: err });
  }
  if (e?.code === 'ENOENT' && e?.op?.includes('attach')) {
    return new FatalError(`signal ${signal} needs a tracepoint this kernel lacks (${msg}); leave it out with --signals`, { exitCode: EXIT.kernel, cause: err });
  }
  return new FatalError(`loading signal ${signal} failed: ${msg}`, { exitCode: EXIT.kernel, cause: err });
}

export function summaryLine(s: StatsSnapshot): string {
  let read = 0, kd = 0, ud = 0, prod = 0;
  const parts: string[] = [];
  for (const e of s.events) {
    read += e.read; kd += e.kernel_drops; ud += e.user_drops; prod += e.produced;
    if (e.read > 0) parts.push(`${e.event.replace(/^ringflow\.|\.v1$/g, '')} ${e.read}`);
  }
  const secs = Number(s.interval_ns) / 1e9;
  return `ringflow: ${secs.toFixed(1)}s: read ${read}${parts.length ? ` (${parts.join(', ')})` : ''}, produced ${prod}, kernel drops ${kd}, user drops ${ud}, send errors ${s.send_errors}, pending ${s.pending}` +
    lossesSummaryPart(s);
}

/**
 * What the stats record says was lost or set aside besides the per-type
 * counts: user-space losses by reason (dead-lettered ones included), losses
 * the BPF programs counted by reason (kernel_losses), calls they counted and
 * did not send (kernel_counts: fs calls under --min-latency, failed opens), L7
 * parser directions stopped by reason, clamped counters. Empty when none.
 */
export function lossesSummaryPart(s: Pick<StatsSnapshot, 'drop_reasons' | 'l7_parse_failures' | 'clamped'> & Partial<Pick<StatsSnapshot, 'kernel_losses' | 'kernel_counts'>>): string {
  const list = (rs: readonly { reason: string; count: number }[]) => rs.map((r) => `${r.reason} ${r.count}`).join(', ');
  let out = '';
  if (s.drop_reasons.length > 0) out += `; lost by reason: ${list(s.drop_reasons)}`;
  if (s.kernel_losses && s.kernel_losses.length > 0) out += `; lost in the kernel by reason: ${list(s.kernel_losses)}`;
  if (s.kernel_counts && s.kernel_counts.length > 0) out += `; counted in the kernel, not sent: ${list(s.kernel_counts)}`;
  if (s.l7_parse_failures.length > 0) out += `; l7 parse losses and recoveries: ${list(s.l7_parse_failures)}`;
  if (s.clamped > 0) out += `; stats values clamped ${s.clamped}`;
  return out;
}

/**
 * The L7 tracker's counters since the previous line: captures and (last)
 * HTTP/1 exchange records in, messages out, and what went missing on the way (records the ring lost, HTTP/1
 * connections that had to resync, parser directions that stopped for good).
 * Loss inside the L7 stream would otherwise show only as fewer messages.
 */
export function l7SummaryPart(counters: L7Counters, prev: L7CountersSnapshot): string {
  const now = l7CountersSnapshot(counters);
  return `; l7: captures ${now.records - prev.records}, messages ${now.messages - prev.messages}, records lost ${now.lostRecords - prev.lostRecords}, ` +
    `HTTP/1 resyncs ${now.resyncs - prev.resyncs}, parsers stopped ${now.failed - prev.failed}, HTTP/1 exchanges from the kernel ${now.exchanges - prev.exchanges}`;
}

/**
 * The collector process's own CPU over a summary interval, in % of one core
 * (user + system, all its threads): what observing costs the host, next to
 * what was observed.
 */
export function cpuSummaryPart(cpuUs: number, intervalNs: bigint): string {
  const secs = Number(intervalNs) / 1e9;
  return `, cpu ${secs > 0 ? Math.round(cpuUs / 1e4 / secs) : 0}%`;
}

export interface L7CountersSnapshot { records: number; exchanges: number; messages: number; lostRecords: number; resyncs: number; failed: number }

export function l7CountersSnapshot(c: L7Counters): L7CountersSnapshot {
  return { records: c.records, exchanges: c.exchanges, messages: c.messages, lostRecords: c.lostRecords, resyncs: c.resyncs, failed: [...c.failed.values()].reduce((a, n) => a + n, 0) };
}

/**
 * The hand-over sweep's timing (docs/design/l7-in-kernel.md §2.7): once a
 * second; a response under way is claimed only when idle for the spans
 * stage's 30 s (its process exited without close()).
 */
export function l7HandoverOptions(handoverNs: bigint | undefined): { handoverNs: number; staleNs: number; sweepMs: number } {
  return { handoverNs: Number(handoverNs ?? 2_000_000_000n), staleNs: 30_000_000_000, sweepMs: 1000 };
}

export async function runCollector(cfg: CollectConfig, hooks: { log?: (l: string) => void; ready?: () => void } = {}): Promise<number> {
  const log = hooks.log ?? ((l: string) => console.error(l));
  checkPrivileges();
  checkBtf();
  if (cfg.signals.some((s) => signalByName(s).classicTracepoints)) ensureTracefs({ log });
  checkBuilt(cfg.signals);

  // imported here so --help and flag errors work before the addon is built
  const native = await import('../native/index.ts');
  const eventTypes = cfg.signals.flatMap((s) => signalByName(s).eventTypes);
  const codec = createCodec({
    host: cfg.host,
    bootTimeNs: bootTimeNs(),
    dropReasonNames: cfg.signals.includes('tcp') ? native.kernelEnum('skb_drop_reason') : {},
    ...(cfg.signals.includes('l7') ? { l7: { parse: cfg.l7Parse, ignoreTgids: new Set(cfg.l7Exclude) } } : {}),
    log,
  });
  const topics = codec.topicsFor(eventTypes);
  // the profile signals' records come from drains, not the ring: one accounting type for their topic
  const drained = cfg.signals.filter((s) => PROFILE_PREFIX[s] !== undefined);
  if (drained.length > 0) topics.set(PROFILE_RECORD_TYPE, PROFILE_TOPIC);

  let fatal: FatalError | undefined;
  let outputGone = false;
  let stopNow: (() => void) | undefined;
  const sink: EventSink = cfg.stdout
    ? createStdoutSink(process.stdout, (r) => codec.toJsonLine(r.value), {
        log,
        // EPIPE: the reader of the pipe is gone (`| head`): stop as a filter does; anything else is a failure
        onError: (err) => {
          if ((err as { code?: string }).code !== 'EPIPE') fatal ??= new FatalError(`cannot write to stdout (${err.message})`, { exitCode: 1, cause: err });
          outputGone = true;
          stopNow?.();
        },
      })
    : createKafkaSink({
        brokers: cfg.brokers,
        clientId: `ringflow-collector-${cfg.host}`,
        topics: [...topics.values(), codec.statsTopic],
        partitions: cfg.partitions,
        compression: cfg.compression,
        maxBatchRecords: KAFKA_BATCH_RECORDS,
        log,
        // Kafka will never take these records (authorization, configuration): stop rather than hold them forever
        onFatal: (err) => {
          fatal ??= err;
          stopNow?.();
        },
      });
  await sink.start();

  const session = new native.Session({ ringBytes: cfg.ringBytes });
  let started = false;
  try {
    const globals = encodeSettings({ ...cfg.filters, selfTgid: process.pid });
    for (const s of cfg.signals) {
      try {
        const own = s === 'l7' ? encodeL7Settings(cfg.l7) : s === 'fs' ? encodeFsFilterSettings(cfg.fs) : PROFILE_PREFIX[s] ? encodeProfileSettings({ offcpuMinNs: cfg.profile.offcpuMinNs, perThread: cfg.profile.perThread }, s === 'offcpu') : {};
        const info = session.addObject(objectPath(s), { ...globals, ...own }, mapSizesFor(s, cfg.profile.hz, cfg.profile.intervalMs));
        // perf_event programs are not auto-attached: the cpu-clock event of every online CPU
        if (s === 'profile') session.attachPerfEvent(PROFILE_PROGRAM, cfg.profile.hz);
        // an optional program whose hook this kernel lacks was left out: said once, by name
        const without = skippedProgramsLine(s, info.skipped);
        if (without) log(without);
      } catch (err) {
        throw loadError(s, err);
      }
    }
    // the run's identity, and what the state file says of the run before it (crash or clean stop)
    const runId = newRunId();
    const stateFile = cfg.stdout ? undefined : new RunStateFile(statePath(stateDir(), cfg.host), log);
    const previous = stateFile?.read() ?? null;
    let l7Prev: L7CountersSnapshot = { records: 0, exchanges: 0, messages: 0, lostRecords: 0, resyncs: 0, failed: 0 };
    let cpuPrev = process.cpuUsage();
    let l7ClaimedPrev = 0;
    const collector = new Collector({
      session,
      transcoder: codec.transcoder,
      sink,
      topics,
      highWater: 200_000,
      maxPending: 400_000,
      statsIntervalMs: cfg.statsIntervalMs,
      log,
      ...(cfg.stdout ? {} : { encodeStats: (s: StatsSnapshot) => codec.encodeStats(s) }),
      run: { id: runId, previousId: previous?.runId ?? '', previousEndNs: previous?.endNs ?? 0n },
      onStatsAcked: (endNs) => stateFile?.write({ runId, endNs }),
      ...(cfg.signals.includes('l7') ? { l7Handover: l7HandoverOptions(cfg.l7.handoverNs) } : {}),
      taskFiltered: cfg.filters.pid !== undefined || cfg.filters.uid !== undefined || cfg.filters.comm !== undefined || cfg.filters.cgroupId !== undefined,
      onStats: (s) => {
        const cpu = process.cpuUsage(cpuPrev);
        cpuPrev = process.cpuUsage();
        if (cfg.quiet) return;
        const line = summaryLine(s) + cpuSummaryPart(cpu.user + cpu.system, s.interval_ns);
        const tracker = codec.l7?.tracker;
        if (!tracker) return log(line);
        // requests the kernel held with no response, handed over by the sweep (REQ_ONLY)
        const handed = collector.l7Claimed - l7ClaimedPrev;
        l7ClaimedPrev = collector.l7Claimed;
        log(line + l7SummaryPart(tracker.counters, l7Prev) + `, handed over without a response ${handed}`);
        l7Prev = l7CountersSnapshot(tracker.counters);
      },
    });
    collector.start();
    started = true;
    const profile = drained.length === 0 ? undefined : new ProfileSource({
      session,
      signals: drained,
      intervalMs: cfg.profile.intervalMs,
      sampleHz: cfg.profile.hz,
      host: cfg.host,
      bootTimeNs: bootTimeNs(),
      symbolize: ((sym) => (tgid: number, addrs: readonly bigint[], kernel: boolean) => sym.symbolize(tgid, addrs, kernel))((await import('../collector/symbols/index.ts')).createSymbolizer()),
      processName: (() => { const ids = procIdentities(); return (tgid: number) => ids(tgid).serviceName; })(),
      emit: (records) => collector.emitRecords(records),
      onLost: (n) => collector.countLost('profile_encode_error', PROFILE_RECORD_TYPE, n),
      log,
      reattach: () => session.attachPerfEvent(PROFILE_PROGRAM, cfg.profile.hz),
    });
    profile?.start();
    if (!cfg.quiet && !cfg.stdout) {
      const since = previous ? `, after run ${previous.runId} (last known watching at ${new Date(Number(previous.endNs / 1_000_000n)).toISOString()})` : '';
      log(`ringflow: run ${runId}${since}`);
    }
    // printed even with --quiet: it says the programs are attached (scripts and tests wait for it)
    log(`ringflow: collecting ${cfg.signals.join(',')} as ${cfg.host} into ${cfg.stdout ? 'stdout' : `Kafka ${cfg.brokers.join(',')}`}; Ctrl-C to stop`);
    hooks.ready?.();

    await new Promise<void>((resolve) => {
      const done = () => {
        process.off('SIGINT', done);
        process.off('SIGTERM', done);
        if (timer) clearTimeout(timer);
        resolve();
      };
      process.on('SIGINT', done);
      process.on('SIGTERM', done);
      const timer = cfg.durationMs === undefined ? undefined : setTimeout(done, cfg.durationMs);
      stopNow = done;
      if (fatal || outputGone) done();
    });
    // the last counts, while the maps still exist (collector.stop stops the session)
    profile?.stop();
    // after a fatal sink error nothing more will be delivered: do not wait for it
    const { flushed, final } = await collector.stop(fatal || outputGone ? 0 : 30_000);
    await sink.close();
    if (fatal) {
      log(`ringflow: stopped: ${fatal.message}; ${final.pending} events not delivered`);
      return fatal.exitCode;
    }
    if (outputGone) return 0; // the reader closed the pipe: what it did not read, it did not want
    if (!flushed) {
      log(`ringflow: stopped with ${final.pending} events not acknowledged by Kafka; they are counted as user drops`);
      return EXIT.kafka;
    }
    return 0;
  } finally {
    if (!started) {
      await session.stop().catch(() => {});
      await sink.close();
    }
  }
}

export async function collectCommand(argv: string[]): Promise<number> {
  const cfg = parseCollectArgs(argv);
  if (cfg.help) {
    console.log(COLLECT_HELP);
    return 0;
  }
  return runCollector(cfg);
}
