/**
 * `ringflow up`'s live summary with the fs signal (issue 12, design section
 * 6): the slowest file series of the window (path prefix, syscall, slowest
 * call, process), like fileslower's list, from the ringflow.fs.io.duration
 * points the line is made of.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slowestFiles, slowestFilesClause, summarizeWindow, type SummaryPoint } from '../../cli/summary.ts';
import { ExpHistogram } from '../../processor/histogram.ts';

const T = 1_800_000_000_000_000_000n;

function fs(prefix: string, syscall: string, comm: string, values: number[], host = 'h1', name = 'ringflow.fs.io.duration'): SummaryPoint {
  const h = new ExpHistogram();
  for (const v of values) h.record(v);
  const j = h.toJSON();
  return {
    name,
    attributes: [
      { key: 'host.name', value: host }, { key: 'process.command', value: comm }, { key: 'ringflow.fs.op', value: 'read' },
      { key: 'ringflow.fs.path.prefix', value: prefix }, { key: 'ringflow.fs.syscall', value: syscall }, { key: 'system.filesystem.type', value: 'ext4' },
    ],
    window_start_ns: T, window_end_ns: T + 10_000_000_000n,
    histogram: { ...j, count: BigInt(j.count), zero_count: BigInt(j.zero_count), positive_buckets: j.positive_buckets.map(BigInt) },
    sum: null, dropped_inputs: 0n,
  };
}

test('slowestFiles: the series with the slowest calls (histogram max), ties in a fixed order, table', () => {
  const a = fs('/var/lib/pg', 'fsync', 'postgres', [0.002, 1.5, 0.01]);
  const b = fs('/etc', 'open', 'curl', [0.00003]);
  const c = fs('/home/u', 'pread', 'rg', [0.2, 0.0001]);
  const d = fs('/srv/data', 'pwrite', 'db', [0.2]);
  const empty = { ...fs('/x', 'read', 'z', []) };
  const notFs = fs('/y', 'read', 'z', [99], 'h1', 'ringflow.block.io.latency');
  const show = (fs: ReturnType<typeof slowestFiles>) => fs.map((f) => `${f.prefix} ${f.syscall} ${f.maxS} ${f.command} ${f.host} ${f.calls}`);
  const rows: [SummaryPoint[], number, string[]][] = [
    [[], 3, []],
    [[notFs, empty], 3, []],
    [[b, a, c], 3, ['/var/lib/pg fsync 1.5 postgres h1 3', '/home/u pread 0.2 rg h1 2', '/etc open 0.00003 curl h1 1']],
    [[b, a, c], 1, ['/var/lib/pg fsync 1.5 postgres h1 3']],
    [[d, c, b], 2, ['/home/u pread 0.2 rg h1 2', '/srv/data pwrite 0.2 db h1 1']], // tie at 0.2: by prefix
    [[c, d, b], 2, ['/home/u pread 0.2 rg h1 2', '/srv/data pwrite 0.2 db h1 1']], // same whatever the order
  ];
  for (const [pts, n, want] of rows) assert.deepEqual(show(slowestFiles(pts, n)), want);
});

test('slowestFilesClause and the summary line: named with prefix, syscall, latency, process; absent without fs points', () => {
  assert.equal(slowestFilesClause([]), '');
  const pts = [fs('/var/lib/pg', 'fsync', 'postgres', [0.002, 1.5]), fs('/etc', 'open', 'curl', [0.00003])];
  assert.equal(slowestFilesClause(slowestFiles(pts)), 'slowest files: /var/lib/pg fsync 1.50s (postgres on h1, 2 calls), /etc open 30.0µs (curl on h1, 1 call)');
  assert.match(summarizeWindow(pts), /^window \d\d:\d\d:\d\d-\d\d:\d\d:\d\d: 2 series, 3 latency events; slowest files: \/var\/lib\/pg fsync 1\.50s \(postgres on h1, 2 calls\), \/etc open 30\.0µs/);
  const other: SummaryPoint = { ...fs('/q', 'read', 'z', [0.001]), name: 'ringflow.sched.runqueue.latency', attributes: [{ key: 'host.name', value: 'h1' }, { key: 'process.command', value: 'z' }] };
  assert.doesNotMatch(summarizeWindow([other]), /slowest files/);
});
