/**
 * Issue 12: the fs signal's calls under --min-latency (rf_fs_below) and its
 * failed opens (rf_fs_failed), counted per enum rf_fs_op in per-CPU arrays,
 * reach the user: the collector reads them per stats interval as deltas into
 * the stats record's kernel_counts (a new field, collector.stats v2 kept as
 * history), stage 2 turns them into ringflow.fs.calls.unreported{host.name,
 * reason, ringflow.fs.syscall} SUM points, and `up`'s summary says how many
 * calls ran under --min-latency. Not losses: not in kernel_losses nor
 * ringflow.collector.losses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Collector, type SessionLike } from '../../collector/collector.ts';
import { createCodec } from '../../collector/codec.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { FS_OP_SYSCALLS, KERNEL_COUNT_COUNTERS, belowMinLatency } from '../../collector/kernel-counts.ts';
import { KERNEL_LOSS_COUNTERS, kernelLossDeltas, readKernelLosses } from '../../collector/kernel-losses.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { createPartitionState } from '../../processor/partition.ts';
import { FS_UNREPORTED_METRIC, LOSSES_METRIC, collectorLossesOf, collectorPoint, fsUnreportedOf } from '../../processor/aggregate.ts';
import { decodeCurrent, decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { CollectorLosses } from '../../cli/summary.ts';
import { ValueType } from '@opentelemetry/api';
import { AggregationTemporality, DataPointType, type SumMetricData } from '@opentelemetry/sdk-metrics';
import { toResourceMetrics, type MetricPoint } from '../../exporter/otlp.ts';

const S = 1_000_000_000n;
const T = 1_800_000_000n * S; // window-aligned (2 s)
const FS = 'ringflow.fs.io.v1';

class FakeSession implements SessionLike {
  maps = new Map<string, bigint[]>();
  fail = false;
  start() {}
  pause() {}
  resume() {}
  async stop() {}
  drops() { return new Array<bigint>(16).fill(0n); }
  ringPending() { return 0; }
  mapCounters(name: string) {
    if (this.fail) throw new Error('map gone');
    return this.maps.get(name) ?? null;
  }
}

class FakeSink implements EventSink {
  held: OutRecord[] = [];
  counters: SinkCounters = { produced: new Map(), sendErrors: 0 };
  async start() {}
  enqueue(r: readonly OutRecord[]) { this.held.push(...r); }
  pending() { return this.held.length; }
  onProgress() {}
  async flush() { return true; }
  async close() {}
}

const ops = (o: Record<string, number>) => {
  const a = new Array<bigint>(16).fill(0n);
  for (const [k, v] of Object.entries(o)) a[FS_OP_SYSCALLS.indexOf(k)] = BigInt(v);
  return a;
};

test('FS_OP_SYSCALLS mirrors enum rf_fs_op (bpf/events.h) and the FsOp symbols of schemas/fs.io.avsc', () => {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'bpf', 'events.h'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const body = /enum\s+rf_fs_op\s*\{([^}]*)\}/.exec(src);
  assert.ok(body, 'enum rf_fs_op is in bpf/events.h');
  const c = new Map<string, number>();
  for (const m of body[1]!.matchAll(/RF_FS_(\w+)\s*=\s*(\d+)/g)) c.set(m[1]!, Number(m[2]));
  const nr = c.get('OP_NR')!;
  c.delete('OP_NR');
  assert.deepEqual([...c].map(([k, v]) => [k.toLowerCase(), v]), FS_OP_SYSCALLS.map((s, i) => [s, i]));
  assert.ok(FS_OP_SYSCALLS.length <= nr, 'each op indexes the maps (RF_FS_OP_SLOTS)');
  const op = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'schemas', 'fs.io.avsc'), 'utf8')).fields as { name: string; type: { symbols: string[] } }[]).find((f) => f.name === 'op')!;
  assert.deepEqual(op.type.symbols.filter((s) => s !== 'OTHER').map((s) => s.toLowerCase()), [...FS_OP_SYSCALLS]);
});

test('kernel_counts names: a fixed set, none a kernel_losses name, each parsed by the processor into (reason, syscall)', () => {
  const names = KERNEL_COUNT_COUNTERS.map((c) => c.reason);
  assert.equal(new Set(names).size, names.length);
  assert.equal(names.length, 2 * FS_OP_SYSCALLS.length);
  const losses = new Set(KERNEL_LOSS_COUNTERS.map((c) => c.reason));
  for (const n of names) assert.ok(!losses.has(n), n);
  const cases: [string, [string, string]][] = [
    ['fs_below_min_latency_pread', ['below_min_latency', 'pread']],
    ['fs_below_min_latency_sync_file_range', ['below_min_latency', 'sync_file_range']],
    ['fs_failed_open', ['failed', 'open']],
    ['fs_failed_unlink', ['failed', 'unlink']],
    ['something_newer', ['something_newer', 'other']],
  ];
  for (const [name, want] of cases) assert.deepEqual(fsUnreportedOf(name), want, name);
  for (const c of KERNEL_COUNT_COUNTERS) assert.equal(fsUnreportedOf(c.reason)[1], FS_OP_SYSCALLS[c.index], c.reason);
});

test('readKernelLosses with KERNEL_COUNT_COUNTERS: rf_fs_below/rf_fs_failed by name; deltas per interval; a signal not loaded: absent', () => {
  const maps: Record<string, bigint[] | null> = { rf_fs_below: ops({ pread: 40, read: 3 }), rf_fs_failed: ops({ open: 2 }) };
  const session = { mapCounters: (n: string) => maps[n] ?? null };
  const r1 = readKernelLosses(session, { taskFiltered: false, counters: KERNEL_COUNT_COUNTERS });
  assert.equal(r1.fs_below_min_latency_pread, 40n);
  assert.equal(r1.fs_below_min_latency_read, 3n);
  assert.equal(r1.fs_failed_open, 2n);
  assert.equal(r1.fs_failed_read, 0n);
  assert.ok(!('block_orphaned' in r1), 'only the counters asked for');
  maps.rf_fs_below = ops({ pread: 45, read: 3 });
  const d = kernelLossDeltas(r1, readKernelLosses(session, { taskFiltered: false, counters: KERNEL_COUNT_COUNTERS }));
  assert.deepEqual(d.deltas, { fs_below_min_latency_pread: 5 });
  maps.rf_fs_below = maps.rf_fs_failed = null;
  assert.deepEqual(readKernelLosses(session, { taskFiltered: false, counters: KERNEL_COUNT_COUNTERS }), {});
});

test('collector: rf_fs_below and rf_fs_failed reach the stats record as kernel_counts deltas (not kernel_losses); a failed read is said once, not thrown', () => {
  const session = new FakeSession();
  const sink = new FakeSink();
  const cd = createCodec({ host: 'h', bootTimeNs: 1n, dropReasonNames: {}, log: () => {} });
  const lines: string[] = [];
  const c = new Collector({ session, sink, transcoder: cd.transcoder, topics: new Map([[1, FS]]), highWater: 100, maxPending: 200, statsIntervalMs: 0, encodeStats: (s) => cd.encodeStats(s), log: (l) => lines.push(l) });
  session.maps.set('rf_fs_below', ops({ pread: 7 })); // before start: not this run's
  c.start();
  session.maps.set('rf_fs_below', ops({ pread: 47, fsync: 1 }));
  session.maps.set('rf_fs_failed', ops({ open: 2 }));
  const s = c.snapshot();
  const want = [{ reason: 'fs_below_min_latency_pread', count: 40 }, { reason: 'fs_below_min_latency_fsync', count: 1 }, { reason: 'fs_failed_open', count: 2 }];
  assert.deepEqual(s.kernel_counts, want);
  assert.deepEqual(s.kernel_losses, [], 'not losses');
  const rec = decodeRecord(cd.encodeStats(s).value).value as { kernel_counts: { reason: string; count: bigint }[] };
  assert.deepEqual(rec.kernel_counts.map((r) => ({ reason: r.reason, count: Number(r.count) })), want, 'in the Avro record');
  assert.deepEqual(c.snapshot().kernel_counts, [], 'a delta: nothing new');
  session.fail = true;
  assert.deepEqual(c.snapshot().kernel_counts, [], 'a failed read counts nothing');
  c.snapshot();
  assert.equal(lines.filter((l) => l.includes('kernel_counts')).length, 1, 'said once');
  session.fail = false;
  session.maps.set('rf_fs_below', ops({ pread: 50, fsync: 1 }));
  assert.deepEqual(c.snapshot().kernel_counts, [{ reason: 'fs_below_min_latency_pread', count: 3 }], 'after a failed read: from the last good reading');
});

test('evolution: a collector.stats v2 record (before kernel_counts) reads with kernel_counts []; a current one keeps them', () => {
  const reg = schemaRegistry();
  const v2 = reg.history.find((h) => h.id === 'collector.stats.v2');
  assert.ok(v2, 'schemas/history/collector.stats.v2.avsc');
  const base = {
    host: 'h1', boot_time_ns: 0n, time_ns: 10n, interval_ns: 5n, events: [], send_errors: 0n, pending: 0n, ring_bytes: 0n,
    undecodable: 0n, drop_reasons: [], l7_parse_failures: [], clamped: 0n, kernel_losses: [{ reason: 'fs_unfinished', count: 1n }],
  };
  const old = decodeCurrent(encodeRecord(v2, base)).value as Record<string, unknown>;
  assert.deepEqual(old.kernel_counts, []);
  assert.deepEqual((old.kernel_losses as unknown[]).length, 1);
  const cur = decodeCurrent(encodeRecord(reg.byTopic('ringflow.collector.stats.v1')!, { ...base, kernel_counts: [{ reason: 'fs_failed_open', count: 3n }] })).value as Record<string, unknown>;
  assert.deepEqual((cur.kernel_counts as { reason: string; count: bigint }[]).map((r) => [r.reason, r.count]), [['fs_failed_open', 3n]]);
});

const statsRec = (t: bigint, counts: Record<string, number>, losses: Record<string, number> = {}) => encodeRecord(schemaRegistry().byTopic('ringflow.collector.stats.v1')!, {
  host: 'h1', boot_time_ns: 0n, time_ns: t, interval_ns: S,
  events: [{ event: FS, read: 10n, kernel_drops: 0n, user_drops: 0n, produced: 10n }],
  send_errors: 0n, pending: 0n, ring_bytes: 0n,
  drop_reasons: [], kernel_losses: Object.entries(losses).map(([reason, n]) => ({ reason, count: BigInt(n) })),
  kernel_counts: Object.entries(counts).map(([reason, n]) => ({ reason, count: BigInt(n) })),
});

test('collectorLossesOf / collectorPoint: kernel_counts are location counted and become ringflow.fs.calls.unreported, not losses', () => {
  const rec = decodeRecord(statsRec(T, { fs_below_min_latency_pread: 40, fs_failed_open: 2 }, { fs_unfinished: 1 })).value;
  const got = collectorLossesOf(rec, FS);
  assert.deepEqual(got, [['kernel', 'fs_unfinished', 1], ['counted', 'fs_below_min_latency_pread', 40], ['counted', 'fs_failed_open', 2]]);
  const metrics = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const p = collectorPoint({ host: 'h1', location: 'counted', reason: 'fs_failed_open', startNs: T, endNs: T + 2n * S, count: 2, processor: 'p' });
  assert.equal(p.key, `${FS_UNREPORTED_METRIC}|host.name=h1,reason=failed,ringflow.fs.syscall=open`);
  const r = decodeRecord(encodeRecord(metrics, p.record)).value;
  assert.deepEqual([r.name, r.unit, r.kind, r.sum], [FS_UNREPORTED_METRIC, '{call}', 'SUM', 2n]);
  assert.deepEqual((r.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value]), [['host.name', 'h1'], ['reason', 'failed'], ['ringflow.fs.syscall', 'open']]);
  assert.equal(collectorPoint({ host: 'h1', location: 'kernel', reason: 'fs_unfinished', startNs: T, endNs: T, count: 1, processor: 'p' }).record.name, LOSSES_METRIC);
});

test('stage 2: a stats record\'s kernel_counts become ringflow.fs.calls.unreported points per window (summed), its losses stay ringflow.collector.losses', () => {
  const st = createPartitionState({ windowMs: 2000, latenessMs: 1000, idleQuietMs: 0, topK: 100, processorId: 'u' }, 0, undefined);
  st.add(`${FS}|h1`, statsRec(T + 500_000_000n, { fs_below_min_latency_pread: 40, fs_failed_open: 2 }, { fs_unfinished: 1 }), 0n);
  st.add(`${FS}|h1`, statsRec(T + 1_500_000_000n, { fs_below_min_latency_pread: 5 }), 1n);
  assert.equal(st.advanceIdle(T + 100n * S), true);
  const lines = st.takeClosed().map((x) => decodeRecord(x.value).value as Record<string, unknown>)
    .filter((r) => r.name === FS_UNREPORTED_METRIC || r.name === LOSSES_METRIC)
    .map((r) => `${r.name} ${(r.attributes as { key: string; value: string }[]).map((a) => `${a.key}=${a.value}`).join(',')} ${r.sum}`)
    .sort();
  assert.deepEqual(lines, [
    `${LOSSES_METRIC} host.name=h1,location=kernel,reason=fs_unfinished 1`,
    `${FS_UNREPORTED_METRIC} host.name=h1,reason=below_min_latency,ringflow.fs.syscall=pread 45`,
    `${FS_UNREPORTED_METRIC} host.name=h1,reason=failed,ringflow.fs.syscall=open 2`,
  ].sort());
});

test('up: the summary says how many file calls ran under --min-latency (and failed ones with no file), summed, only when > 0', () => {
  const ev = [{ kernel_drops: 0n, user_drops: 0n }];
  const cases: [string, { reason: string; count: bigint }[][], string][] = [
    ['none', [[]], ''],
    ['an older record', [], ''],
    ['summed over records', [[{ reason: 'fs_below_min_latency_pread', count: 40n }], [{ reason: 'fs_below_min_latency_read', count: 2n }]], '; collectors: 42 file calls under --min-latency'],
    ['with failed opens', [[{ reason: 'fs_below_min_latency_pread', count: 1n }, { reason: 'fs_failed_open', count: 3n }]], '; collectors: 1 file calls under --min-latency, 3 failed opens (no file: --path/--fs not applied)'],
  ];
  for (const [name, recs, want] of cases) {
    const t = new CollectorLosses();
    if (recs.length === 0) t.add({ events: ev });
    for (const k of recs) t.add({ events: ev, kernel_counts: k });
    assert.equal(t.take(), want, name);
    assert.equal(t.take(), '', `${name}: take() starts again`);
  }
  assert.equal(belowMinLatency([{ reason: 'fs_failed_open', count: 3n }, { reason: 'fs_below_min_latency_fsync', count: 2 }]), 2);
});

test('OTLP: ringflow.fs.calls.unreported goes out as a monotonic delta Sum of ints, unit {call}, with reason and ringflow.fs.syscall', () => {
  const metrics = schemaRegistry().byTopic('ringflow.metrics.v1')!;
  const point = (name: string, count: number) =>
    decodeRecord(encodeRecord(metrics, collectorPoint({ host: 'h1', location: 'counted', reason: name, startNs: T, endNs: T + 2n * S, count, processor: 'p' }).record)).value as unknown as MetricPoint;
  const out = toResourceMetrics([point('fs_below_min_latency_pread', 40), point('fs_failed_open', 2)], { histogramMode: 'exponential', resource: { 'service.name': 'ringflow' } });
  assert.deepEqual(out.invalid, []);
  const ms = out.resources[0]!.metrics.scopeMetrics[0]!.metrics;
  assert.equal(ms.length, 1);
  const m = ms[0] as SumMetricData;
  assert.deepEqual([m.descriptor.name, m.descriptor.unit, m.descriptor.valueType, m.dataPointType, m.isMonotonic, m.aggregationTemporality], [
    FS_UNREPORTED_METRIC, '{call}', ValueType.INT, DataPointType.SUM, true, AggregationTemporality.DELTA,
  ]);
  assert.deepEqual(m.dataPoints.map((p) => [p.attributes, p.value]), [
    [{ reason: 'below_min_latency', 'ringflow.fs.syscall': 'pread' }, 40],
    [{ reason: 'failed', 'ringflow.fs.syscall': 'open' }, 2],
  ]);
});
