/**
 * Transcode throughput on synthetic sched records (one core):
 *   bash scripts/with-node.sh node collector/events/bench.ts [records-per-batch] [rounds] [sched|tcp]
 */
import { buildBatch, createTranscoder } from './transcode.ts';
import { EventType } from './types.ts';

const perBatch = Number(process.argv[2] ?? 4096);
const rounds = Number(process.argv[3] ?? 500);
const mode = process.argv[4] ?? 'sched';

function runq(i: number): Buffer {
  const b = Buffer.alloc(64);
  b[0] = EventType.RUNQ_LATENCY;
  b.writeUInt16LE(i % 64, 2);
  b.writeUInt32LE(1000 + (i % 5000), 4);
  b.writeUInt32LE(1000 + (i % 500), 8);
  b.writeUInt32LE(i % 3 === 0 ? 0 : 1000, 12);
  b.writeBigUInt64LE(9_000_000_000_000_000n + BigInt(i) * 1000n, 16); // > 2^53: ~104 days of uptime
  b.writeBigUInt64LE(4242n, 24);
  b.write(i % 2 ? 'kworker/3:1' : 'postgres', 32);
  b.writeBigUInt64LE(BigInt(1000 + (i % 100000)), 48);
  b.writeUInt32LE(77, 56);
  b[60] = i % 3;
  return b;
}
function cswitch(i: number): Buffer {
  const b = runq(i);
  b[0] = EventType.CTX_SWITCH;
  b.writeBigUInt64LE(BigInt(i) * 12345n, 16); // < 2^53
  b[60] = i & 1;
  return b;
}

function connect(i: number): Buffer {
  const b = Buffer.alloc(96);
  runq(i).copy(b, 0, 0, 48);
  b[0] = EventType.TCP_CONNECT;
  if (i % 2) {
    b.set([10, 0, (i >> 8) & 255, i & 255], 48);
    b.set([10, 0, 0, 1], 64);
    b.writeUInt16LE(2, 84);
  } else {
    b.write('20010db8000000000000000000000001', 48, 'hex');
    b.write('20010db8000000000000000000001f2a', 64, 'hex');
    b.writeUInt16LE(10, 84);
  }
  b.writeUInt16LE(30000 + (i % 20000), 80);
  b.writeUInt16LE(5432, 82);
  b[86] = 1;
  b.writeBigUInt64LE(BigInt(50000 + i), 88);
  return b;
}

const make = mode === 'tcp' ? connect : (i: number) => (i % 2 ? runq(i) : cswitch(i));
const batch = buildBatch(Array.from({ length: perBatch }, (_, i) => make(i)));
const t = createTranscoder({ host: 'bench-host-01', bootTimeNs: 1_700_000_000_000_000_000n });
let bytes = 0;
const sink = (_s: unknown, _k: string, v: Buffer): void => { bytes += v.length; };
for (let i = 0; i < 50; i++) t.transcodeBatch(batch, sink); // warm up
bytes = 0;
const start = process.hrtime.bigint();
for (let i = 0; i < rounds; i++) t.transcodeBatch(batch, sink);
const ns = Number(process.hrtime.bigint() - start);
const recs = perBatch * rounds;
console.log(`${recs} ${mode} records in ${(ns / 1e6).toFixed(0)} ms: ${(recs / (ns / 1e9) / 1e6).toFixed(2)} M records/s, ${(ns / recs).toFixed(0)} ns/record, ${(bytes / recs).toFixed(1)} bytes/record out`);
