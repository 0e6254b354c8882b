/**
 * fs metrics (issue 12, docs/design/fs.md section 6): ringflow.fs.io.v1
 * records -> ringflow.fs.io.duration / ringflow.fs.io.size, their dimension
 * functions, the physical range of a file syscall's latency, and the path
 * prefix cap (the top N prefixes per window, the rest folded into "other").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_FS_METRIC_DEPTH, FS_PREFIX_CUT, setFsMetricDepth, FS_PREFIX_UNKNOWN, METRICS, WindowAggregator, fsMetrics, fsOpClass, fsPathPrefix, invalidValue,
  type EventBase, type SeriesPoint,
} from '../../processor/aggregate.ts';
import { DEFAULT_VALUE_CAPS, OTHER, capCardinality, foldValues } from '../../processor/cardinality.ts';
import { ExpHistogram } from '../../processor/histogram.ts';
import { FS_IO_TOPIC } from '../../processor/topics.ts';
import { createFastDecoder, eventTimeNs } from '../../processor/fast-decode.ts';
import { decodeCurrent, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../collector/signals/registry.ts';

test('fsOpClass: every FsOp symbol of the schema has its class', () => {
  const schema = schemaRegistry().byTopic(FS_IO_TOPIC)!;
  const op = schema.schema.fields.find((f) => f.name === 'op')!.type as { symbols: string[] };
  const want: Record<string, string> = {
    READ: 'read', WRITE: 'write', PREAD: 'read', PWRITE: 'write', READV: 'read', WRITEV: 'write', PREADV: 'read', PWRITEV: 'write',
    FSYNC: 'sync', FDATASYNC: 'sync', SYNC_FILE_RANGE: 'sync', OPEN: 'open',
    FTRUNCATE: 'other', FALLOCATE: 'other', RENAME: 'other', UNLINK: 'other', OTHER: 'other',
  };
  assert.deepEqual([...op.symbols].sort(), Object.keys(want).sort(), 'the table covers the schema');
  for (const s of op.symbols) assert.equal(fsOpClass(s), want[s], s);
  assert.equal(fsOpClass('SOMETHING_NEW'), 'other');
});

test('fsPathPrefix: the first depth directory components, never the file name', () => {
  const cases: [path: string, flags: number, depth: number, want: string][] = [
    ['/var/lib/postgresql/16/main/base/5/1259', 0, 3, '/var/lib/postgresql'],
    ['/var/lib/postgresql/16/main/base/5/1259', 0, 1, '/var'],
    ['/var/lib/postgresql/16/main/base/5/1259', 0, 5, '/var/lib/postgresql/16/main'],
    ['/var/lib/postgresql/16/main/base/5/1259', 0, 100, '/var/lib/postgresql/16/main/base/5'],
    ['/etc/passwd', 0, 3, '/etc'],
    ['/a/b/c', 0, 3, '/a/b'],
    ['/a/b/c/d', 0, 3, '/a/b/c'],
    ['/swapfile', 0, 3, '/'],
    ['/', 0, 3, '/'],
    ['//a//b///c/f', 0, 3, '/a/b/c'],
    ['/a/b/', 0, 3, '/a/b'],
    ['/tmp/x', 8, 3, '/tmp'], // DELETED: the path it had, still a path
    ['/a\u0000b/c/f', 0, 3, '/a\ufffdb/c'], // a NUL would split a series key
    ['', 0, 3, FS_PREFIX_UNKNOWN],
    ['/var/log/syslog', 16, 3, FS_PREFIX_UNKNOWN], // PATH_FAILED
    ['relative/not/a/path', 0, 3, FS_PREFIX_UNKNOWN],
    ['/c/d/e/f/file', 1, 3, FS_PREFIX_CUT], // PATH_CUT: the start is not the file's start
    ['/c/d/e/f/file', 1 | 16, 3, FS_PREFIX_UNKNOWN],
    ['/é€/😀/x/y', 0, 2, '/é€/😀'],
  ];
  for (const [path, flags, depth, want] of cases) assert.equal(fsPathPrefix(path, flags, depth), want, `${path} flags ${flags} depth ${depth}`);
  assert.throws(() => fsMetrics(0), /depth/);
  assert.equal(DEFAULT_FS_METRIC_DEPTH, 3);
});

test('invalidValue: a file syscall may take hours (a sync, a hard NFS mount), not over a day', () => {
  const DAY = 86_400_000_000_000n;
  const ev = (latency_ns: bigint | number): EventBase => ({ host: 'h', boot_time_ns: 0n, ts_ns: 3n * DAY, latency_ns } as unknown as EventBase);
  assert.equal(invalidValue(FS_IO_TOPIC, ev(5n * 60n * 1_000_000_000n)), null, 'a 5-minute fsync');
  assert.equal(invalidValue(FS_IO_TOPIC, ev(DAY)), null, 'exactly a day');
  assert.match(invalidValue(FS_IO_TOPIC, ev(DAY + 1n)) ?? '', /latency_ns \d+ is over 86400 s/);
  assert.match(invalidValue(FS_IO_TOPIC, ev(-1n)) ?? '', /negative/);
  assert.match(invalidValue(FS_IO_TOPIC, ev(-1)) ?? '', /negative/, 'a number from the fast decoder');
});

const HOST_BOOT = 1_700_000_000_000_000_000n;

/** A whole ringflow.fs.io.v1 record (every schema field) with these values. */
function fsRecord(o: { op: string; path: string; latencyNs: bigint; ret: bigint; comm?: string; fsType?: string; flags?: number; tsNs?: bigint }): Record<string, unknown> {
  return {
    cpu: 0, pid: 10n, tgid: 10n, uid: 0n, ts_ns: o.tsNs ?? 1_000_000_000n, cgroup_id: 1n, comm: o.comm ?? 'postgres',
    latency_ns: o.latencyNs, offset: 0n, len: 4096n, ret: o.ret, ino: 12n, storage_bytes: 0n, dev: (8 << 20) | 1, dev_major: 8n, dev_minor: 1n, fd: 3n,
    path_len: Buffer.byteLength(o.path), mnt_len: 1, op: o.op, cache: 'CACHED', flags: o.flags ?? 0, path_dropped: 0, fs_type: o.fsType ?? 'ext4', path: o.path,
    host: 'h1', boot_time_ns: HOST_BOOT,
  };
}

const view = (ps: readonly SeriesPoint[]): string[] =>
  ps.map((p) => `${p.name} ${p.attributes.map(([k, v]) => `${k}=${v}`).join(',')} count=${p.count}${p.sum !== undefined ? ` sum=${p.sum}` : ` max=${p.histogram!.max}`}`);

test('aggregate: fs records (Avro, both decode paths) -> fs.io.duration per (fs type, op, syscall, process, prefix) and fs.io.size of reads and writes', () => {
  const schema = schemaRegistry().byTopic(FS_IO_TOPIC)!;
  const recs = [
    fsRecord({ op: 'PREAD', path: '/var/lib/pg/base/1', latencyNs: 2_000_000n, ret: 8192n }),
    fsRecord({ op: 'PREAD', path: '/var/lib/pg/base/2', latencyNs: 4_000_000n, ret: 4096n }),
    fsRecord({ op: 'PWRITE', path: '/var/lib/pg/wal/3', latencyNs: 1_000_000n, ret: 100n }),
    fsRecord({ op: 'FSYNC', path: '/var/lib/pg/wal/3', latencyNs: 1_500_000_000n, ret: 0n }),
    fsRecord({ op: 'PREAD', path: '/var/lib/pg/base/1', latencyNs: 1_000n, ret: -5n }), // EIO: timed, moves no bytes
    fsRecord({ op: 'OPEN', path: '/etc/hosts', latencyNs: 30_000n, ret: 4n, comm: 'curl', fsType: 'overlay' }), // ret is an fd, not bytes
    fsRecord({ op: 'READ', path: '/x/y/z/w', latencyNs: 7_000n, ret: 10n, flags: 1 }),
  ];
  const fast = createFastDecoder();
  for (const path of ['avsc', 'fast'] as const) {
    const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 0 });
    for (const r of recs) {
      const buf = encodeRecord(schema, r);
      if (path === 'avsc') assert.equal(agg.add({ topic: FS_IO_TOPIC, value: decodeCurrent(buf).value as unknown as EventBase }), 'ok');
      else {
        const d = fast.decode(buf)!;
        assert.ok(d, 'the fast decoder reads fs records');
        assert.equal(agg.addAt(FS_IO_TOPIC, d.value as unknown as EventBase, eventTimeNs(d.value)), 'ok');
      }
    }
    assert.equal(agg.counters.invalid, 0);
    const got = view(agg.advanceTo(1n << 70n));
    const base = 'host.name=h1,process.command=postgres';
    assert.deepEqual(got, [
      `ringflow.fs.io.duration host.name=h1,process.command=curl,ringflow.fs.op=open,ringflow.fs.path.prefix=/etc,ringflow.fs.syscall=open,system.filesystem.type=overlay count=1 max=0.00003`,
      `ringflow.fs.io.duration ${base},ringflow.fs.op=read,ringflow.fs.path.prefix=/var/lib/pg,ringflow.fs.syscall=pread,system.filesystem.type=ext4 count=3 max=0.004`,
      `ringflow.fs.io.duration ${base},ringflow.fs.op=read,ringflow.fs.path.prefix=cut,ringflow.fs.syscall=read,system.filesystem.type=ext4 count=1 max=0.000007`,
      `ringflow.fs.io.duration ${base},ringflow.fs.op=sync,ringflow.fs.path.prefix=/var/lib/pg,ringflow.fs.syscall=fsync,system.filesystem.type=ext4 count=1 max=1.5`,
      `ringflow.fs.io.duration ${base},ringflow.fs.op=write,ringflow.fs.path.prefix=/var/lib/pg,ringflow.fs.syscall=pwrite,system.filesystem.type=ext4 count=1 max=0.001`,
      `ringflow.fs.io.size ${base},ringflow.fs.op=read,ringflow.fs.path.prefix=/var/lib/pg,ringflow.fs.syscall=pread,system.filesystem.type=ext4 count=2 sum=12288`,
      `ringflow.fs.io.size ${base},ringflow.fs.op=read,ringflow.fs.path.prefix=cut,ringflow.fs.syscall=read,system.filesystem.type=ext4 count=1 sum=10`,
      `ringflow.fs.io.size ${base},ringflow.fs.op=write,ringflow.fs.path.prefix=/var/lib/pg,ringflow.fs.syscall=pwrite,system.filesystem.type=ext4 count=1 sum=100`,
    ], path);
  }
});

const W = { windowStartNs: 0n, windowEndNs: 10_000_000_000n };
function fsPoint(host: string, prefix: string, comm: string, values: number[], window = W): SeriesPoint {
  const h = new ExpHistogram();
  for (const v of values) h.record(v);
  return {
    name: 'ringflow.fs.io.duration', unit: 's', kind: 'histogram', ...window,
    attributes: [['host.name', host], ['process.command', comm], ['ringflow.fs.op', 'read'], ['ringflow.fs.path.prefix', prefix]],
    count: values.length, histogram: h.toJSON(), lateEvents: 0,
  };
}
const brief = (ps: readonly SeriesPoint[]): string[] => ps.map((p) => `${p.attributes.map(([, v]) => v).join('/')}:${p.count}:${p.histogram?.max}`);

test('foldValues: the top N values of the attribute per metric, window (and host) stay; the rest become "other", merged, nothing lost', () => {
  const cap = { key: 'ringflow.fs.path.prefix', topN: 2 };
  const cases: { name: string; in: SeriesPoint[]; perHost?: boolean; want: string[] }[] = [
    {
      name: 'at most N values: unchanged',
      in: [fsPoint('h1', '/a', 'p', [1]), fsPoint('h1', '/b', 'p', [2])],
      want: ['h1/p/read//a:1:1', 'h1/p/read//b:1:2'],
    },
    {
      name: 'ranked by events across the series of a value; the others fold per remaining attributes',
      in: [fsPoint('h1', '/a', 'p', [1]), fsPoint('h1', '/a', 'q', [1]), fsPoint('h1', '/b', 'p', [2, 2, 2]), fsPoint('h1', '/c', 'p', [5]), fsPoint('h1', '/d', 'p', [7]), fsPoint('h1', '/d', 'q', [0.5])],
      want: ['h1/p/read//a:1:1', 'h1/q/read//a:1:1', 'h1/p/read//b:3:2', `h1/p/read/${OTHER}:2:7`, `h1/q/read/${OTHER}:1:0.5`],
    },
    {
      name: 'ties by value ascending',
      in: [fsPoint('h1', '/z', 'p', [1]), fsPoint('h1', '/y', 'p', [1]), fsPoint('h1', '/x', 'p', [1])],
      want: [`h1/p/read/${OTHER}:1:1`, 'h1/p/read//y:1:1', 'h1/p/read//x:1:1'],
    },
    {
      name: 'per host with perHost: each host keeps its own N',
      perHost: true,
      in: [fsPoint('h1', '/a', 'p', [1]), fsPoint('h1', '/b', 'p', [1]), fsPoint('h2', '/c', 'p', [1]), fsPoint('h2', '/d', 'p', [1])],
      want: ['h1/p/read//a:1:1', 'h1/p/read//b:1:1', 'h2/p/read//c:1:1', 'h2/p/read//d:1:1'],
    },
    {
      name: 'across hosts without perHost: the hosts\' values rank together, the folded keep their host',
      in: [fsPoint('h1', '/a', 'p', [1, 1]), fsPoint('h1', '/b', 'p', [1]), fsPoint('h2', '/c', 'p', [1, 1, 1]), fsPoint('h2', '/d', 'p', [1])],
      want: ['h1/p/read//a:2:1', `h1/p/read/${OTHER}:1:1`, 'h2/p/read//c:3:1', `h2/p/read/${OTHER}:1:1`],
    },
    {
      name: 'windows apart',
      in: [fsPoint('h1', '/a', 'p', [1]), fsPoint('h1', '/b', 'p', [1]), fsPoint('h1', '/c', 'p', [1], { windowStartNs: 10_000_000_000n, windowEndNs: 20_000_000_000n })],
      want: ['h1/p/read//a:1:1', 'h1/p/read//b:1:1', 'h1/p/read//c:1:1'],
    },
  ];
  for (const c of cases) {
    const out = foldValues(c.in, cap, { perHost: c.perHost });
    assert.deepEqual(brief(out), c.want, c.name);
    const events = (ps: readonly SeriesPoint[]) => ps.reduce((n, p) => n + p.count, 0);
    assert.equal(events(out), events(c.in), `${c.name}: every event still counted`);
  }
  assert.throws(() => foldValues([], { key: 'k', topN: -1 }), /topN/);
});

test('capCardinality folds path prefixes beyond the top 100 by default, before its own series cap', () => {
  assert.deepEqual(DEFAULT_VALUE_CAPS, [{ key: 'ringflow.fs.path.prefix', topN: 100 }]);
  const pts: SeriesPoint[] = [];
  for (let i = 0; i < 150; i++) pts.push(fsPoint('h1', `/d${String(i).padStart(3, '0')}`, 'p', i < 100 ? [1, 1] : [3]));
  const out = capCardinality(pts, { topK: 1000, perHost: true });
  assert.equal(out.length, 101);
  const other = out.find((p) => p.attributes.some(([k, v]) => k === 'ringflow.fs.path.prefix' && v === OTHER))!;
  assert.equal(other.count, 50);
  assert.equal(other.histogram!.max, 3);
  assert.deepEqual(capCardinality(pts, { topK: 1000, valueCaps: [] }).length, 150, 'valueCaps [] turns it off');
  // the default table has the metrics the cap names
  assert.ok(METRICS.some((m) => m.topic === FS_IO_TOPIC && m.dimensions.some((d) => d.key === DEFAULT_VALUE_CAPS[0]!.key)));
});

test('--fs-metric-depth: METRICS cuts prefixes at the set depth (both stages read it); out of range is a usage error before anything connects', () => {
  const prefixes = (): string[] => {
    const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 0 });
    agg.add({ topic: FS_IO_TOPIC, value: fsRecord({ op: 'PREAD', path: '/var/lib/pg/base/1/2', latencyNs: 1000n, ret: 1n }) as unknown as EventBase });
    return agg.advanceTo(1n << 70n).map((p) => p.attributes.find(([k]) => k === 'ringflow.fs.path.prefix')![1]);
  };
  try {
    assert.deepEqual(prefixes(), ['/var/lib/pg', '/var/lib/pg']);
    setFsMetricDepth(1);
    assert.deepEqual(prefixes(), ['/var', '/var']);
    setFsMetricDepth(5);
    assert.deepEqual(prefixes(), ['/var/lib/pg/base/1', '/var/lib/pg/base/1']);
    assert.throws(() => setFsMetricDepth(0), /depth/);
    assert.throws(() => setFsMetricDepth(33), /depth/);
  } finally {
    setFsMetricDepth(DEFAULT_FS_METRIC_DEPTH);
  }
  for (const bad of ['0', '33', 'x']) {
    const r = spawnSync(path.join(REPO_ROOT, 'bin', 'ringflow'), ['process', '--brokers', '127.0.0.1:1', '--fs-metric-depth', bad], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--fs-metric-depth/);
  }
  const help = spawnSync(path.join(REPO_ROOT, 'bin', 'ringflow'), ['process', '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.match(help.stdout, /--fs-metric-depth N/);
});

test('up --fs-metric-depth: checked before anything starts, passed to the processor child', async () => {
  const { splitUpArgs, processorArgs } = await import('../../cli/up.ts');
  const f = splitUpArgs(['--signals', 'fs', '--fs-metric-depth', '4', '--pid', '1']);
  assert.deepEqual(f, { window: '10s', lateness: '5s', fsMetricDepth: '4', collect: ['--signals', 'fs', '--pid', '1'] });
  assert.deepEqual(processorArgs('b:1', f), ['process', '--brokers', 'b:1', '--window', '10s', '--lateness', '5s', '--fs-metric-depth', '4']);
  assert.deepEqual(splitUpArgs(['--fs-metric-depth=2']).fsMetricDepth, '2');
  assert.throws(() => splitUpArgs(['--fs-metric-depth', '0']), /--fs-metric-depth: 0 is out of range/);
  assert.throws(() => splitUpArgs(['--fs-metric-depth']), /missing value/);
  assert.deepEqual(processorArgs('b:1', splitUpArgs([])), ['process', '--brokers', 'b:1', '--window', '10s', '--lateness', '5s'], 'absent: the processor\'s default');
});
