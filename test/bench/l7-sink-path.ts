/**
 * The collector's CPU per L7 exchange record with Kafka behind it (issue 10,
 * part C): what l7-exchange-path.ts measures (decode, tracker, Avro) plus
 * the Kafka sink (kafkajs encoding, zstd, the socket) into a real broker, as
 * `collect` runs it (createKafkaSink: 6 partitions, zstd, 20000 records per
 * request). No wrk and no BPF, so far steadier than the live bench on a
 * shared machine; CPU of the whole process (every thread: GC, libuv), not
 * wall time, per record.
 *
 * Figures per record: `sink_us` (prebuilt records through enqueue -> acked),
 * `path_us` (the exchange path without Kafka), `whole_us` (both, as the codec
 * hands them over: one enqueue per batch of 1024 ring records).
 *
 * `--encode`: kafkajs's produce request encoding alone (20000 L7 records,
 * 6 partitions, zstd, as one sendBatch makes it), kafkajs as published
 * against kafka/kafkajs-encoder.ts, alternated in one process, best of
 * rounds: the steadiest figure for the encoder change; and the same values
 * L7_SINK_GROUP (8) to a Kafka record, per exchange: what several exchanges
 * per record would save in kafkajs (not built).
 *
 * Old against new code in one run: L7_SINK_TREES=/tmp/old,/tmp/new (repo
 * roots; this file is copied into a tree that lacks it) alternated
 * L7_SINK_ROUNDS times, each in a fresh process against one broker.
 *   . scripts/node-env.sh && node test/bench/l7-sink-path.ts
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeL7Exchange } from '../../collector/l7/exchange.ts';
import { L7Tracker } from '../../collector/l7/tracker.ts';
import { asExchangeRecord, createL7Encoder } from '../../collector/l7/encode.ts';
import { createKafkaSink } from '../../collector/kafka-sink.ts';
import type { OutRecord } from '../../collector/sink.ts';
import { batch } from './l7-exchange-path.ts';

const TOPIC = 'ringflow.bench.l7sink';
const BATCH = 1024;
const cpuUs = (c0: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(c0);
  return c.user + c.system;
};

async function child(brokers: string, records: number): Promise<Record<string, number>> {
  const { buf, offs, lens } = batch(BATCH);
  const tracker = new L7Tracker({ processName: (tgid) => `svc-${tgid}` });
  const enc = createL7Encoder({ host: 'bench-host', bootTimeNs: 1_700_000_000_000_000_000n, containerId: () => '' });
  const toRecords = (): OutRecord[] => {
    const out: OutRecord[] = [];
    for (let i = 0; i < BATCH; i++) {
      const x = decodeL7Exchange(buf, offs[i]!, lens[i]!)!;
      for (const o of asExchangeRecord(tracker.exchange(x), x.outcome)) {
        const kv = enc.encode(o);
        out.push({ topic: TOPIC, key: kv.key, value: kv.value, type: 9 });
      }
    }
    return out;
  };
  const sink = createKafkaSink({ brokers: [brokers], clientId: 'ringflow-bench-l7sink', topics: [TOPIC], partitions: 6, compression: 'zstd', maxBatchRecords: 20_000, log: () => {} });
  await sink.start();
  try {
    const rounds = Math.ceil(records / BATCH);
    // warm-up: JIT and the broker's first segments
    for (let r = 0; r < 20; r++) sink.enqueue(toRecords());
    if (!(await sink.flush(60_000))) throw new Error('warm-up not acknowledged');
    // the exchange path alone
    let c0 = process.cpuUsage();
    let n = 0;
    const prebuilt: OutRecord[][] = [];
    for (let r = 0; r < rounds; r++) {
      const rs = toRecords();
      n += rs.length;
      prebuilt.push(rs);
    }
    const path = cpuUs(c0) / n;
    // the sink alone, fed as the collector feeds it (while the previous request is in flight, so requests fill up)
    c0 = process.cpuUsage();
    for (const rs of prebuilt) {
      sink.enqueue(rs);
      if (sink.pending() > 200_000) await new Promise((r) => setImmediate(r));
    }
    if (!(await sink.flush(120_000))) throw new Error('not acknowledged');
    const sinkUs = cpuUs(c0) / n;
    prebuilt.length = 0;
    // both, interleaved as in the collector: a batch is built while kafkajs waits for the broker
    c0 = process.cpuUsage();
    for (let r = 0; r < rounds; r++) {
      sink.enqueue(toRecords());
      await new Promise((r) => setImmediate(r));
    }
    if (!(await sink.flush(120_000))) throw new Error('not acknowledged');
    const whole = cpuUs(c0) / n;
    const f = (v: number) => +v.toFixed(2);
    return { records: n, path_us: f(path), sink_us: f(sinkUs), whole_us: f(whole) };
  } finally {
    await sink.close();
  }
}

/** kafkajs's produce request encoding, as published and with kafka/kafkajs-encoder.ts, alternated; CPU µs per record, best of `rounds`. */
async function encodeAB(rounds: number): Promise<Record<string, number>> {
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const { CompressionTypes } = await import('../../kafka/kafkajs.ts');
  const { patchEncoder } = await import('../../kafka/kafkajs-encoder.ts');
  const { murmur2 } = await import('../../kafka/partitioner.ts');
  const produce = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (a: Record<string, unknown>) => { encode(): Promise<{ size(): number }> };
  const { buf, offs, lens } = batch(BATCH);
  const tracker = new L7Tracker({ processName: (tgid) => `svc-${tgid}` });
  const enc = createL7Encoder({ host: 'bench-host', bootTimeNs: 1_700_000_000_000_000_000n, containerId: () => '' });
  const byPartition: OutRecord[][] = Array.from({ length: 6 }, () => []);
  let n = 0;
  while (n < 20_000) {
    for (let i = 0; i < BATCH && n < 20_000; i++) {
      const x = decodeL7Exchange(buf, offs[i]!, lens[i]!)!;
      for (const o of asExchangeRecord(tracker.exchange(x), x.outcome)) {
        const kv = enc.encode(o);
        byPartition[(murmur2(Buffer.from(kv.key)) & 0x7fffffff) % 6]!.push({ topic: TOPIC, key: kv.key, value: kv.value, type: 9 });
        n++;
      }
    }
  }
  // what several exchanges per Kafka record would save (not built: it changes what readers get): the same
  // values, `group` of one connection's concatenated per record, through the same encoding
  const group = Number(process.env.L7_SINK_GROUP ?? 8);
  const grouped = byPartition.map((recs) => {
    const out: OutRecord[] = [];
    for (let i = 0; i < recs.length; i += group) {
      const g = recs.slice(i, i + group);
      out.push({ topic: TOPIC, key: g[0]!.key, value: Buffer.concat(g.map((r) => r.value)), type: 9 });
    }
    return out;
  });
  const request = (parts: OutRecord[][]) => produce({ acks: -1, timeout: 30_000, compression: CompressionTypes.ZSTD, producerId: 7, producerEpoch: 0,
    topicData: [{ topic: TOPIC, partitions: parts.map((messages, partition) => ({ partition, firstSequence: 0, messages })) }] });
  const once = async (parts: OutRecord[][] = byPartition) => {
    const c0 = process.cpuUsage();
    const e = await request(parts).encode();
    if (e.size() === 0) throw new Error('empty request');
    return cpuUs(c0) / n;
  };
  const restore = patchEncoder();
  let published = Infinity;
  let patched = Infinity;
  let groupedUs = Infinity;
  for (let r = 0; r < rounds; r++) {
    restore();
    published = Math.min(published, await once());
    patchEncoder();
    patched = Math.min(patched, await once());
    groupedUs = Math.min(groupedUs, await once(grouped));
  }
  const f = (v: number) => +v.toFixed(3);
  return { records: n, kafkajs_encode_us: f(published), patched_encode_us: f(patched), [`patched_encode_us_per_exchange_${group}_per_record`]: f(groupedUs) };
}

const here = fileURLToPath(import.meta.url);
if (process.argv[2] === '--encode') {
  process.stdout.write(JSON.stringify(await encodeAB(Number(process.argv[3] ?? 15))) + '\n');
} else if (process.argv[2] === '--child') {
  const r = await child(process.argv[3]!, Number(process.argv[4] ?? 400_000));
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const { ownBroker } = await import('../support/integration.ts');
  const repo = path.resolve(path.dirname(here), '../..');
  const trees = (process.env.L7_SINK_TREES ?? repo).split(',').filter(Boolean);
  const rounds = Number(process.env.L7_SINK_ROUNDS ?? 3);
  const records = Number(process.env.L7_SINK_RECORDS ?? 400_000);
  const k = await ownBroker();
  try {
    for (const t of trees) {
      const dst = path.join(t, 'test/bench/l7-sink-path.ts');
      if (path.resolve(dst) !== here && !fs.existsSync(dst)) fs.copyFileSync(here, dst);
    }
    for (let round = 0; round < rounds; round++) {
      for (const t of trees) {
        const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(t, 'test/bench/l7-sink-path.ts'), '--child', k.brokers, String(records)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
        console.log(JSON.stringify({ tree: path.basename(t), round, ...JSON.parse(r.stdout.trim() || '{}') }));
      }
    }
  } finally {
    await k.stop();
  }
}
