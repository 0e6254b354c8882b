/**
 * `npm run bench`: one JSON object of throughput figures, each measured in this
 * run against a reference measured the same way in the same run, so the
 * ratios mean something on any machine. Not a test: nothing here passes or
 * fails; the goals are printed beside the figures.
 *
 *   drain_ratio          addon events/s delivered to JS / plain C libbpf consumer events/s
 *                        (same bench.bpf.o, same ring size, same getpid driver)
 *   encode_events_per_s  raw records -> framed Avro, on real sched batches captured from the kernel
 *   e2e_events_per_s     ring buffer -> Avro -> Kafka acknowledged (acks=all, idempotent, zstd)
 *   e2e_ratio            e2e / plain kafkajs producing the same pre-encoded records with the same settings
 *   cpu_us_per_event     collector process CPU (user+sys) per delivered event in the e2e run
 *   l7_parse_messages_per_s, http_overhead_ratio, http_added_p99_ms, BPF run time per hook
 *                        and the observer's cost per HTTP request: see test/bench/l7.ts
 *   profile_overhead_ratio, offcpu_overhead_ratio, BPF run time per sample/switch and the
 *                        collector's CPU per interval: see test/bench/profile.ts
 *   fs_overhead_ratio, fs_pipe_overhead_ratio, BPF run time per kept/rejected call, the
 *                        collector's CPU per record: see test/bench/fs.ts
 *
 * Needs root. Starts its own Kafka broker on free ports and stops it.
 */
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import kafkajs from '../../kafka/kafkajs.ts';
import { Session, u32 } from '../../native/index.ts';
import { createCodec, bootTimeNs } from '../../collector/codec.ts';
import { createTranscoder, buildBatch } from '../../collector/events/index.ts';
import { Collector } from '../../collector/collector.ts';
import { createKafkaClient, ensureTopics } from '../../kafka/client.ts';
import { createKafkaSink } from '../../collector/kafka-sink.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { objectPath, REPO_ROOT } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import fs from 'node:fs';
import { ownBroker, freePort } from '../support/integration.ts';
import { KAFKA_VERSION } from '../../cli/kafka.ts';
import { KAFKA_BATCH_RECORDS } from '../../cli/collect.ts';
import { decodeCurrent, decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { WindowAggregator } from '../../processor/index.ts';
import { createFastDecoder, eventTimeNs } from '../../processor/fast-decode.ts';
import { startProcessor } from '../../processor/service.ts';
import { l7Parse, httpOverhead, wakeupCost } from './l7.ts';
import { l7ExchangePath } from './l7-exchange-path.ts';
import { profileOverhead } from './profile.ts';
import { fsOverhead } from './fs.ts';

const { CompressionTypes } = kafkajs;
const { createPartitioner } = await import('../../kafka/kafkajs.ts');
const DRIVER = path.join(REPO_ROOT, 'native/build/bench/getpid_driver');
const C_CONSUMER = path.join(REPO_ROOT, 'native/build/bench/c_consumer');
const BENCH_OBJ = objectPath('bench');
const BENCH_TOPIC = 'ringflow.bench.getpid.v1';
const BENCH_TYPE = 8;
const log = (m: string) => process.stderr.write(`bench: ${m}\n`);

const DRAIN_N = Number(process.env.BENCH_DRAIN_N ?? 5_000_000);
const E2E_N = Number(process.env.BENCH_E2E_N ?? 1_000_000);
// large enough that both sides are timed at their steady rate, not their start-up
const PROCESS_N = Number(process.env.BENCH_PROCESS_N ?? 500_000);
const RUNQ_TOPIC = 'ringflow.sched.runqlat.v1';
const BATCH_RECORDS = KAFKA_BATCH_RECORDS;
const E2E_DRIVERS = 4;

function cConsumer(n: number): { events: number; events_per_s: number; drops: number } {
  const out = execFileSync(C_CONSUMER, [String(n)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop()!);
}

/**
 * The addon's side in a process of its own, as the C consumer runs in its
 * own: in this process (which has loaded the processor, the exporter and
 * OpenTelemetry) garbage collection cost the same drain ~0.15 s of CPU more
 * per 5 M events, a cost of this benchmark process, not of the collector.
 */
function addonProcess(n: number): { events: number; events_per_s: number; drops: number } {
  const out = execFileSync(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(REPO_ROOT, 'native/bench/addon_drain.ts'), String(n)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop()!);
}

async function drain() {
  // alternating, best of two each: the first run of either warms caches
  const c = [];
  const a = [];
  for (let i = 0; i < 2; i++) {
    c.push(cConsumer(DRAIN_N));
    a.push(addonProcess(DRAIN_N));
  }
  const best = <T extends { events_per_s: number }>(xs: T[]) => xs.reduce((p, x) => (x.events_per_s > p.events_per_s ? x : p));
  const cb = best(c);
  const ab = best(a);
  return {
    drain_ratio: +(ab.events_per_s / cb.events_per_s).toFixed(3),
    drain_addon_events_per_s: ab.events_per_s,
    drain_c_events_per_s: cb.events_per_s,
    drain_events: DRAIN_N,
    drain_drops: ab.drops + cb.drops,
    drain_delivered_all: ab.events === DRAIN_N && cb.events === DRAIN_N,
  };
}

/** Real sched records: capture batches from the kernel while 4 busy processes contend for 2 cores. */
async function captureSchedBatches(): Promise<Buffer[]> {
  const session = new Session({ ringBytes: 64 << 20 });
  session.addObject(objectPath('sched'), encodeSettings({ selfTgid: process.pid }));
  const batches: Buffer[] = [];
  session.start((b) => batches.push(Buffer.from(b)));
  const busy = Array.from({ length: 4 }, () => spawn('python3', ['-c', 'import time\nt=time.time()+2\nwhile time.time()<t: pass'], { stdio: 'ignore' }));
  await Promise.all(busy.map((c) => once(c, 'exit')));
  await session.stop();
  return batches;
}

async function encode(batches: Buffer[]) {
  const t = createTranscoder({ host: os.hostname(), bootTimeNs: bootTimeNs() });
  let records = 0;
  for (const b of batches) records += t.transcodeBatch(b, () => {}).records; // warm-up
  const perPass = records;
  let done = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  while (process.hrtime.bigint() - t0 < 2_000_000_000n) {
    for (const b of batches) done += t.transcodeBatch(b, () => {}).records;
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { encode_events_per_s: Math.round(done / cpuSeconds), encode_sample_records: perPass };
}

/**
 * In-memory decode + window assignment + histogram insert, on the captured
 * records as the processor gets them: the decode stage 2 does (partition.ts:
 * the fast decoder, decodeCurrent for what it declines).
 */
function aggregate(batches: Buffer[]) {
  const t = createTranscoder({ host: os.hostname(), bootTimeNs: bootTimeNs() });
  const framed: Buffer[] = [];
  for (const b of batches) t.transcodeBatch(b, (s, _k, v) => { if (s.topic === RUNQ_TOPIC) framed.push(Buffer.from(v)); });
  let done = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  while (process.hrtime.bigint() - t0 < 2_000_000_000n) {
    const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 5_000 });
    const fast = createFastDecoder();
    for (const f of framed) {
      const d = fast.decode(f);
      if (d !== null) agg.addAt(RUNQ_TOPIC, d.value as never, eventTimeNs(d.value));
      else agg.add({ topic: RUNQ_TOPIC, value: decodeCurrent(f).value as never });
    }
    agg.advanceTo(BigInt(Date.now() + 3_600_000) * 1_000_000n);
    done += framed.length;
  }
  const cpu = process.cpuUsage(cpu0);
  return { aggregate_events_per_s: Math.round(done / ((cpu.user + cpu.system) / 1e6)), aggregate_sample_records: framed.length };
}

/**
 * The processor through Kafka (both stages, transactions, exactly once) against
 * a plain kafkajs consumer that only decodes the same records.
 */
async function processThroughKafka(n: number) {
  const k = await ownBroker();
  try {
    const kafka = createKafkaClient([k.brokers], 'ringflow-bench-process');
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ_TOPIC], 6);
    await admin.disconnect();
    const reg = schemaRegistry().byTopic(RUNQ_TOPIC)!;
    const now = BigInt(Date.now()) * 1_000_000n;
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    for (let i = 0; i < n; i += KAFKA_BATCH_RECORDS) {
      const messages = [];
      for (let j = i; j < Math.min(n, i + KAFKA_BATCH_RECORDS); j++) {
        const comm = `proc${j % 40}`;
        // 20 s of event time, in order, so no event is late
        messages.push({ key: `bench/${comm}`, value: encodeRecord(reg, { cpu: 0, pid: 1, tgid: j % 40, uid: 0, ts_ns: now + BigInt(Math.floor((j / n) * 20e9)), cgroup_id: 1n, comm, latency_ns: BigInt(1000 + (j % 5000)), prev_pid: 0, kind: 'WAKEUP', host: `h${j % 4}`, boot_time_ns: 0n }) });
      }
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic: RUNQ_TOPIC, messages }] });
    }
    await producer.disconnect();

    // reference: consume and decode only. Both sides are timed from before
    // they connect (the processor's start connects its clients and joins its
    // groups) to their last record.
    const t0 = process.hrtime.bigint();
    const c = kafka.consumer({ groupId: 'bench-plain-decode' });
    await c.connect();
    await c.subscribe({ topic: RUNQ_TOPIC, fromBeginning: true });
    let seen = 0;
    await new Promise<void>((resolve) => {
      void c.run({ eachBatch: async ({ batch }) => {
        for (const m of batch.messages) decodeRecord(m.value!);
        seen += batch.messages.length;
        if (seen >= n) resolve();
      } });
    });
    const plainS = Number(process.hrtime.bigint() - t0) / 1e9;
    await c.disconnect();

    const t1 = process.hrtime.bigint();
    const p = await startProcessor({ kafka, brokers: [k.brokers], instanceId: 'bench', windowMs: 10_000, latenessMs: 5_000, topK: 100, partitions: 6, log });
    while (p.aggregate.counters.events + p.aggregate.counters.skippedReplay < n) await new Promise((r) => setTimeout(r, 20));
    const procS = Number(process.hrtime.bigint() - t1) / 1e9;
    await p.stop();
    const process_events_per_s = Math.round(n / procS);
    const plain = Math.round(n / plainS);
    return { process_events_per_s, plain_decode_events_per_s: plain, process_ratio: +(process_events_per_s / plain).toFixed(3), process_events: n };
  } finally {
    await k.stop();
  }
}

/**
 * Event time -> the OTLP backend receiving the window, minus the window
 * length, for every point of every window: producer (events stamped now) ->
 * processor -> exporter -> a real OpenTelemetry Collector, whose output file
 * is polled for new points. Dominated by the allowed lateness by design: a
 * window closes once event time passes its end by the lateness.
 */
async function eventToOtlp(windowMs: number, latenessMs: number, seconds: number) {
  const k = await ownBroker();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-bench-otelcol-'));
  const { startOtelcol, stopOtelcol, readOtlpFile } = await import('../../cli/otelcol.ts');
  const { createExporter } = await import('../../exporter/service.ts');
  try {
    const oc = await startOtelcol({ stateDir, grpcPort: await freePort() });
    const kafka = createKafkaClient([k.brokers], 'ringflow-bench-latency');
    const p = await startProcessor({ kafka, brokers: [k.brokers], instanceId: 'bench-latency', windowMs, latenessMs, topK: 100, partitions: 6, log });
    const ex = createExporter({ kafka, histogramMode: 'exponential', log, otlp: { url: `http://${oc.endpoint}` } });
    await ex.start();
    const reg = schemaRegistry().byTopic(RUNQ_TOPIC)!;
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const seen = new Map<string, number>(); // window end (ns) + series -> first time the backend had it (ms)
    const lat: { endMs: number; s: number }[] = [];
    const poll = () => {
      const now = Date.now();
      for (const rm of readOtlpFile(oc.outputFile).metrics as { scopeMetrics: { metrics: { name: string; exponentialHistogram?: { dataPoints: { timeUnixNano: string; attributes: unknown }[] } }[] }[] }[]) {
        for (const sm of rm.scopeMetrics) for (const m of sm.metrics) for (const dp of m.exponentialHistogram?.dataPoints ?? []) {
          const key = `${m.name}|${dp.timeUnixNano}|${JSON.stringify(dp.attributes)}`;
          if (seen.has(key)) continue;
          seen.set(key, now);
          const endMs = Number(BigInt(dp.timeUnixNano) / 1_000_000n);
          lat.push({ endMs, s: (now - endMs) / 1000 });
        }
      }
    };
    const t0 = Date.now();
    let i = 0;
    while (Date.now() - t0 < seconds * 1000) {
      const messages = [];
      for (let j = 0; j < 100; j++, i++) {
        const comm = `proc${i % 8}`;
        messages.push({ key: `bench/${comm}`, value: encodeRecord(reg, { cpu: 0, pid: 1, tgid: i % 8, uid: 0, ts_ns: BigInt(Date.now()) * 1_000_000n, cgroup_id: 1n, comm, latency_ns: 5000n, prev_pid: 0, kind: 'WAKEUP', host: 'bench', boot_time_ns: 0n }) });
      }
      await producer.send({ topic: RUNQ_TOPIC, messages });
      poll();
      await new Promise((r) => setTimeout(r, 50));
    }
    await producer.disconnect();
    const stopMs = Date.now();
    const settle = Date.now();
    while (Date.now() - settle < windowMs + latenessMs + 8000) {
      poll();
      await new Promise((r) => setTimeout(r, 100));
    }
    await ex.stop();
    await p.stop();
    // windows that could close on event time while events flowed; the last ones close by the idle clock
    const steady = lat.filter((l) => l.endMs + latenessMs <= stopMs).map((l) => l.s).sort((a, b) => a - b);
    const q = (x: number) => steady[Math.min(steady.length - 1, Math.floor(x * steady.length))] ?? NaN;
    return {
      event_to_otlp_p99_s: +q(0.99).toFixed(3),
      event_to_otlp_p50_s: +q(0.5).toFixed(3),
      event_to_otlp_points: steady.length,
      event_to_otlp_settings: `window ${windowMs / 1000}s, lateness ${latenessMs / 1000}s; windows closed by event time while events flowed (the last ones, closed by the idle clock 5 s behind, excluded)`,
    };
  } finally {
    await stopOtelcol({ stateDir }).catch(() => {});
    await k.stop();
  }
}

/** The collector's own path: bench.bpf.o -> Session -> Collector -> transcoder -> Kafka sink. */
async function e2e(brokers: string, n: number) {
  // several driver processes, so events carry several keys as a host's do (one key = one partition)
  const children = Array.from({ length: E2E_DRIVERS }, () => spawn(DRIVER, [String(n / E2E_DRIVERS)], { stdio: ['pipe', 'ignore', 'inherit'] }));
  await Promise.all(children.map((c) => once(c, 'spawn')));
  const exited = Promise.all(children.map((c) => once(c, 'exit')));
  // large enough to hold the whole run: this measures throughput, not loss
  const session = new Session({ ringBytes: 256 << 20 });
  session.addObject(BENCH_OBJ, { ...encodeSettings({ selfTgid: process.pid, comm: 'getpid_driver' }), bench_tgid: u32(0) });
  const codec = createCodec({ host: 'bench', bootTimeNs: bootTimeNs(), dropReasonNames: {} });
  const sink = createKafkaSink({ brokers: [brokers], clientId: 'ringflow-bench', topics: [BENCH_TOPIC], partitions: 6, compression: 'zstd', maxBatchRecords: BATCH_RECORDS, log });
  await sink.start();
  const collector = new Collector({
    session, transcoder: codec.transcoder, sink, topics: new Map([[BENCH_TYPE, BENCH_TOPIC]]),
    highWater: 200_000, maxPending: 400_000, statsIntervalMs: 0,
  });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  collector.start();
  for (const c of children) c.stdin!.end('g');
  await exited;
  const { flushed, final } = await collector.stop(120_000);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await sink.close();
  const delivered = sink.counters.produced.get(BENCH_TYPE) ?? 0;
  const kernelDrops = Number(session.drops()[BENCH_TYPE] ?? 0n);
  const userDrops = collector.userDrops.get(BENCH_TYPE) ?? 0;
  return {
    e2e_events_per_s: Math.round(delivered / seconds),
    e2e_delivered: delivered,
    e2e_kernel_drops: kernelDrops,
    e2e_user_drops: userDrops,
    e2e_unaccounted: n - delivered - kernelDrops - userDrops,
    e2e_flushed: flushed && final.pending === 0,
    cpu_us_per_event: +(((cpu.user + cpu.system) / Math.max(delivered, 1))).toFixed(3),
  };
}

/** Plain kafkajs, same settings, same records already encoded: the reference for e2e. */
async function plainKafkajs(brokers: string, n: number) {
  const t = createTranscoder({ host: 'bench', bootTimeNs: bootTimeNs() });
  const raw: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const r = Buffer.alloc(64);
    const tgid = 4242 + (i % E2E_DRIVERS); // the same keys as the e2e run's drivers
    r[0] = BENCH_TYPE;
    r.writeUInt32LE(tgid, 4);
    r.writeUInt32LE(tgid, 8);
    r.write('getpid_driver', 32);
    r.writeBigUInt64LE(BigInt(i), 48);
    raw.push(r);
  }
  const messages: { key: string; value: Buffer }[] = [];
  for (let i = 0; i < n; i += 10_000) t.transcodeBatch(buildBatch(raw.slice(i, i + 10_000)), (_s, key, value) => messages.push({ key, value }));
  const kafka = createKafkaClient([brokers], 'ringflow-bench-plain');
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, [BENCH_TOPIC], 6);
  await admin.disconnect();
  // the collector's settings, its partitioner included (the same partitions as kafkajs's, faster): the ratio is the pipeline's cost
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner });
  await producer.connect();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < messages.length; i += BATCH_RECORDS) {
    await producer.sendBatch({ acks: -1, compression: CompressionTypes.ZSTD, topicMessages: [{ topic: BENCH_TOPIC, messages: messages.slice(i, i + BATCH_RECORDS) }] });
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await producer.disconnect();
  return { plain_kafkajs_events_per_s: Math.round(messages.length / seconds) };
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the benchmark loads BPF programs: run it as root (sudo npm run bench)');
  ensureTracefs({ log });
  const out: Record<string, unknown> = {
    machine: { cpus: os.availableParallelism(), kernel: os.release(), node: process.version, kafka: KAFKA_VERSION },
  };
  const only = process.env.BENCH_ONLY?.split(',');
  const want = (part: string) => !only || only.includes(part);
  if (want('drain')) {
    log(`drain: ${DRAIN_N} events through the C consumer and the addon`);
    Object.assign(out, await drain());
  }
  if (want('encode') || want('aggregate')) {
    const batches = await captureSchedBatches();
    if (want('encode')) {
      log('encode: transcoding captured sched batches for 2 s');
      Object.assign(out, await encode(batches));
    }
    if (want('aggregate')) {
      log('aggregate: decode + window + histogram insert of the captured records for 2 s');
      Object.assign(out, aggregate(batches));
    }
  }
  if (want('latency')) {
    log('latency: event time -> OTLP backend, through the processor and the exporter, 30 s of events');
    Object.assign(out, await eventToOtlp(10_000, 1_000, 30));
  }
  if (want('process')) {
    log(`process: ${PROCESS_N} records through the processor (Kafka, transactions) and through a decode-only consumer`);
    Object.assign(out, await processThroughKafka(PROCESS_N));
  }
  if (want('l7parse')) {
    log('l7parse: HTTP/1, HTTP/2 (gRPC) and DNS messages through the collector\'s tracker, 2 s each');
    Object.assign(out, l7Parse());
  }
  if (want('l7exchange')) {
    log('l7exchange: HTTP/1 exchange records (wrk GET, node:http 200) through decode, tracker.exchange, asExchangeRecord and the encoder, one core');
    Object.assign(out, l7ExchangePath());
  }
  if (want('l7overhead')) {
    const seconds = Number(process.env.BENCH_L7_SECONDS ?? 10);
    if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`BENCH_L7_SECONDS must be a whole number of seconds >= 1, not ${process.env.BENCH_L7_SECONDS}`);
    log(`l7overhead: a node:http server under wrk, ${seconds} s each: alone, with ringflow collect --signals l7, alone, with the kernel side only, with a CPU burner using what the collector used, alone; BPF run time per hook from kernel.bpf_stats_enabled`);
    const k = await ownBroker();
    try {
      Object.assign(out, await httpOverhead(k.brokers, seconds));
    } finally {
      await k.stop();
    }
  }
  if (want('profile')) {
    const seconds = Number(process.env.BENCH_PROFILE_SECONDS ?? 10);
    if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`BENCH_PROFILE_SECONDS must be a whole number of seconds >= 1, not ${process.env.BENCH_PROFILE_SECONDS}`);
    log(`profile: a CPU-bound workload and a pipe ping-pong, ${seconds} s each: alone, with ringflow collect --signals profile (19 Hz), alone, at 99 Hz, with --signals offcpu, alone; BPF run time per sample/switch from kernel.bpf_stats_enabled`);
    const k = await ownBroker();
    try {
      Object.assign(out, await profileOverhead(k.brokers, seconds));
    } finally {
      await k.stop();
    }
  }
  if (want('fs')) {
    const seconds = Number(process.env.BENCH_FS_SECONDS ?? 10);
    if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`BENCH_FS_SECONDS must be a whole number of seconds >= 1, not ${process.env.BENCH_FS_SECONDS}`);
    log(`fs: pread/pwrite on a cached tmpfs file, write/read on a pipe, pwrite+fsync on /var/tmp, ${seconds} s each: alone, with ringflow collect --signals fs --comm fs-work, alone, with, alone; BPF run time per call from kernel.bpf_stats_enabled`);
    const k = await ownBroker();
    try {
      Object.assign(out, await fsOverhead(k.brokers, seconds));
    } finally {
      await k.stop();
    }
  }
  // opt-in: an experiment on the kernel side's wake-ups, not a figure with a goal
  if (only?.includes('l7wakeup')) {
    log('l7wakeup: the kernel side alone with a lagging consumer, ring wake-ups forced as the collector has them vs never, 3 pairs of 5 s');
    Object.assign(out, await wakeupCost());
  }
  if (!want('e2e')) {
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    return;
  }
  log('e2e: starting a Kafka broker');
  const k = await ownBroker();
  try {
    log(`e2e: warm-up, then ${E2E_N} events through the collector and through plain kafkajs`);
    await e2e(k.brokers, 100_000);
    await plainKafkajs(k.brokers, 100_000);
    const e = await e2e(k.brokers, E2E_N);
    const p = await plainKafkajs(k.brokers, E2E_N);
    Object.assign(out, e, p, { e2e_ratio: +(e.e2e_events_per_s / p.plain_kafkajs_events_per_s).toFixed(3), e2e_events: E2E_N });
  } finally {
    await k.stop();
  }
  out.goals = {
    drain_ratio: '>= 0.9 with 0 drops', encode_events_per_s: '>= 1000000', e2e_events_per_s: '>= 100000', e2e_ratio: '>= 0.8 with 0 unaccounted',
    aggregate_events_per_s: '>= 1000000', process_ratio: '>= 0.7', event_to_otlp_p99_s: '<= 2', http_overhead_ratio: '>= 0.9',
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

await main();
