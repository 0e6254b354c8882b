/**
 * The fs benchmark's pure figures (test/bench/fs-figures.ts): the collector's
 * summary lines summed, BPF run time per call of given syscalls, runs summed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectorTotals, syscallCost, sumRuns, sumHooks, cpuUsPerRecord } from '../bench/fs-figures.ts';

test('collectorTotals sums every summary line (the one printed at stop included) and skips other lines', () => {
  const cases: { name: string; stderr: string; want: ReturnType<typeof collectorTotals> }[] = [
    { name: 'no summary line', stderr: 'ringflow: run abc\nringflow: collecting fs as h into Kafka x; Ctrl-C to stop\n', want: { read: {}, produced: 0, kernel_drops: 0, user_drops: 0, kernel_losses: {}, lines: 0 } },
    {
      name: 'two intervals, an idle one and kernel losses',
      stderr: [
        'ringflow: collecting fs as h into Kafka x; Ctrl-C to stop',
        'ringflow: 10.0s: read 1200 (fs.io 1200), produced 1190, kernel drops 3, user drops 0, send errors 0, pending 10, cpu 40%',
        'ringflow: 10.0s: read 0, produced 0, kernel drops 0, user drops 0, send errors 0, pending 0, cpu 0%',
        'ringflow: 1.5s: read 15 (fs.io 10, sched.runqlat 5), produced 25, kernel drops 0, user drops 2, send errors 0, pending 0; lost by reason: x 2; lost in the kernel by reason: fs_unfinished 4, fs_inflight_full 1, cpu 3%',
      ].join('\n'),
      want: { read: { 'fs.io': 1210, 'sched.runqlat': 5 }, produced: 1215, kernel_drops: 3, user_drops: 2, kernel_losses: { fs_unfinished: 4, fs_inflight_full: 1 }, lines: 3 },
    },
    {
      name: 'kernel losses followed by the cpu and l7 parts',
      stderr: 'ringflow: 5.0s: read 2 (fs.io 2), produced 2, kernel drops 0, user drops 0, send errors 0, pending 0; lost in the kernel by reason: fs_unfinished 1, cpu 1%; l7: captures 0, messages 0, records lost 0',
      want: { read: { 'fs.io': 2 }, produced: 2, kernel_drops: 0, user_drops: 0, kernel_losses: { fs_unfinished: 1 }, lines: 1 },
    },
  ];
  for (const c of cases) assert.deepEqual(collectorTotals(c.stderr), c.want, c.name);
});

test('collectorTotals throws on a summary line it cannot read (a changed format is not zero records)', () => {
  for (const line of [
    'ringflow: 10.0s: read 12 (fs.io twelve), produced 12, kernel drops 0, user drops 0',
    'ringflow: 10.0s: read 12, written 12, kernel drops 0, user drops 0',
  ]) assert.throws(() => collectorTotals(line), /cannot read the collector's summary line/, line);
});

test('syscallCost: enter + exit run time of the named syscalls per call seen at enter', () => {
  const h = (calls: number, total_ns: number) => ({ calls, ns_per_call: calls ? total_ns / calls : null, total_ns });
  const hooks = {
    rf_fs_enter_pread64: h(100, 20_000),
    rf_fs_exit_pread64: h(100, 70_000),
    rf_fs_enter_pwrite64: h(100, 20_000),
    rf_fs_exit_pwrite64: h(100, 80_000),
    rf_fs_enter_read: h(5, 500), // another syscall's: not counted
    rf_fs_exit_read: h(5, 500),
  };
  const cases = [
    { name: 'kept pair', syscalls: ['pread64', 'pwrite64'], work: 190, want: { calls_seen: 200, bpf_ns_per_call: 950, workload_share: 0.95 } },
    { name: 'one syscall', syscalls: ['pread64'], work: 100, want: { calls_seen: 100, bpf_ns_per_call: 900, workload_share: 1 } },
    { name: 'programs absent', syscalls: ['fsync'], work: 10, want: { calls_seen: 0, bpf_ns_per_call: null, workload_share: null } },
  ];
  for (const c of cases) assert.deepEqual(syscallCost(hooks, c.syscalls, c.work), c.want, c.name);
  assert.equal(syscallCost(null, ['read'], 1), null, 'no bpf_stats');
});

test('sumRuns and sumHooks: several runs of a workload as one', () => {
  assert.deepEqual(sumRuns([{ work: 100, seconds: 2, cpu_s: 1 }, { work: 50, seconds: 1, cpu_s: 0.5 }]), { work: 150, seconds: 3, cpu_s: 1.5 });
  assert.deepEqual(sumRuns([{ work: 100, seconds: 2, cpu_s: 1 }, { work: 50, seconds: 1 }]), { work: 150, seconds: 3 }, 'cpu only when every run has it');
  assert.deepEqual(sumRuns([]), { work: 0, seconds: 0 });
  assert.deepEqual(sumHooks([
    { a: { calls: 2, ns_per_call: 5, total_ns: 10 } },
    { a: { calls: 3, ns_per_call: 10, total_ns: 30 }, b: { calls: 0, ns_per_call: null, total_ns: 0 } },
  ]), { a: { calls: 5, ns_per_call: 8, total_ns: 40 }, b: { calls: 0, ns_per_call: null, total_ns: 0 } });
  assert.equal(sumHooks([{ a: { calls: 1, ns_per_call: 1, total_ns: 1 } }, null]), null, 'a run without bpf_stats');
  assert.equal(sumHooks([]), null);
});

test('cpuUsPerRecord', () => {
  assert.equal(cpuUsPerRecord(1.5, 300_000), 5);
  assert.equal(cpuUsPerRecord(1.5, 0), null);
});
