/**
 * ringflow.fs.io.v1 from raw ring records: struct rf_fs_event (built at the
 * offsets layout.test.ts pins to bpf/events.h) followed by path_len path
 * bytes -> transcoder -> framed Avro -> decoded with the registry. A table of
 * records (each op, each cache state, each flag, a cut path, invalid UTF-8,
 * the largest path) must decode to exactly the expected values, with the
 * file key; records whose trailer does not fit are skipped alone and counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { schemaRegistry } from '../../schemas/registry.ts';
import { decodeRecord } from '../../schemas/wire.ts';
import { buildBatch, createTranscoder, type TranscodedRecord } from '../../collector/events/transcode.ts';
import { EventType } from '../../collector/events/types.ts';
import { rawRecord, type RawValue } from '../fixtures/raw.ts';

const registry = schemaRegistry();
const FS = registry.byId('fs.io')!;
const HOST = 'node-7';
const BOOT = 1_732_000_000_123_456_789n;
const transcoder = createTranscoder({ host: HOST, bootTimeNs: BOOT });

const PATH_MAX = FS.schema.fields.find((f) => f.name === 'path')!.trailer!.max; // = RF_FS_PATH_MAX (layout test)
const dev = (major: number, minor: number): number => (major << 20 | minor) >>> 0;

/** struct rf_fs_event + path bytes; path_len = the path's length unless given. */
function fsRecord(values: Readonly<Record<string, RawValue>>, path: Buffer | string): Buffer {
  const p = typeof path === 'string' ? Buffer.from(path) : path;
  return Buffer.concat([rawRecord(FS, { path_len: p.length, ...values }), p]);
}

const base = {
  cpu: 1, pid: 501, tgid: 500, uid: 0, ts_ns: 9_000_000_000n, cgroup_id: 12n, comm: 'pg',
  latency_ns: 35_000n, offset: 8192n, len: 4096n, ret: 4096n, ino: 131_074n, storage_bytes: 0n,
  dev: dev(8, 1), fd: 7, mnt_len: 1, op: 'PREAD', cache: 'CACHED', flags: 0, path_dropped: 0, fs_type: 'ext4',
} as const;
const baseOut = {
  cpu: 1, pid: 501n, tgid: 500n, uid: 0n, ts_ns: 9_000_000_000n, cgroup_id: 12n, comm: 'pg',
  latency_ns: 35_000n, offset: 8192n, len: 4096n, ret: 4096n, ino: 131_074n, storage_bytes: 0n,
  dev: BigInt(dev(8, 1)), dev_major: 8n, dev_minor: 1n, fd: 7n, mnt_len: 1, op: 'PREAD', cache: 'CACHED',
  flags: 0, path_dropped: 0, fs_type: 'ext4', host: HOST, boot_time_ns: BOOT,
};

const OPS = ['READ', 'WRITE', 'PREAD', 'PWRITE', 'READV', 'WRITEV', 'PREADV', 'PWRITEV', 'FSYNC', 'FDATASYNC',
  'SYNC_FILE_RANGE', 'OPEN', 'FTRUNCATE', 'FALLOCATE', 'RENAME', 'UNLINK'];
const CACHES = ['CACHE_UNKNOWN', 'CACHED', 'BLOCKED_IO', 'BLOCKED_OTHER'];

interface Case {
  readonly name: string;
  readonly raw: Readonly<Record<string, RawValue>>;
  readonly path: Buffer | string;
  /** Fields that differ from baseOut (path_len and path are checked for every case). */
  readonly want: Readonly<Record<string, unknown>>;
  readonly wantPath: string;
  readonly key?: string;
}

const cases: Case[] = [
  ...OPS.map((op, i): Case => ({
    name: `op ${op}`, raw: { op: i }, path: `/var/lib/pg/base/${i}`, want: { op }, wantPath: `/var/lib/pg/base/${i}`,
  })),
  { name: 'op value this schema does not know -> OTHER', raw: { op: 16 }, path: '/x', want: { op: 'OTHER' }, wantPath: '/x' },
  ...CACHES.map((cache, i): Case => ({ name: `cache ${cache}`, raw: { cache: i }, path: '/c', want: { cache }, wantPath: '/c' })),
  { name: 'cache value unknown -> CACHE_UNKNOWN', raw: { cache: 200 }, path: '/c', want: { cache: 'CACHE_UNKNOWN' }, wantPath: '/c' },
  {
    name: 'a read from storage', raw: { cache: 'BLOCKED_IO', storage_bytes: 65_536n, latency_ns: 2_500_000n },
    path: '/data/big', want: { cache: 'BLOCKED_IO', storage_bytes: 65_536n, latency_ns: 2_500_000n }, wantPath: '/data/big',
  },
  ...[1, 2, 4, 8, 16].map((flag): Case => ({ name: `flag ${flag}`, raw: { flags: flag }, path: flag === 16 ? '' : '/f', want: { flags: flag }, wantPath: flag === 16 ? '' : '/f' })),
  {
    name: 'a cut path: last components kept, 3 dropped', raw: { flags: 1 | 2, path_dropped: 3 },
    path: 'deep/er/file.dat', want: { flags: 3, path_dropped: 3 }, wantPath: 'deep/er/file.dat',
  },
  {
    name: 'invalid UTF-8 in the path becomes U+FFFD', raw: {},
    path: Buffer.concat([Buffer.from('/tmp/a'), Buffer.from([0xff, 0xfe]), Buffer.from('b-é')]), want: {}, wantPath: '/tmp/a\ufffd\ufffdb-é',
  },
  { name: 'the empty path (PATH_FAILED)', raw: { flags: 16 }, path: '', want: { flags: 16 }, wantPath: '' },
  { name: `a path of RF_FS_PATH_MAX bytes`, raw: {}, path: '/' + 'p'.repeat(PATH_MAX - 1), want: {}, wantPath: '/' + 'p'.repeat(PATH_MAX - 1) },
  {
    name: 'a failed open: ret -ENOENT, fd the returned one', raw: { op: 'OPEN', ret: -2n, len: 0n, offset: 0n, fd: 4294967295 },
    path: '/etc/missing', want: { op: 'OPEN', ret: -2n, len: 0n, offset: 0n, fd: 4294967295n }, wantPath: '/etc/missing',
  },
  {
    name: 'mount point, tmpfs on 0:45', raw: { dev: dev(0, 45), mnt_len: 4, fs_type: 'tmpfs' }, path: '/run/lock/x',
    want: { dev: BigInt(dev(0, 45)), dev_major: 0n, dev_minor: 45n, mnt_len: 4, fs_type: 'tmpfs' }, wantPath: '/run/lock/x', key: `${HOST}/0:45/131074`,
  },
  {
    name: 'largest major/minor, inode past 2^53 in the key', raw: { dev: 0xffffffff, ino: 0xfedcba9876543210n }, path: '/i',
    want: { dev: 0xffffffffn, dev_major: 4095n, dev_minor: 1048575n, ino: BigInt.asIntN(64, 0xfedcba9876543210n) },
    wantPath: '/i', key: `${HOST}/4095:1048575/${0xfedcba9876543210n}`,
  },
  {
    name: 'fs_type of 16 bytes, no NUL', raw: { fs_type: 'fuse.sshfs-xyz12' }, path: '/mnt/s', want: { fs_type: 'fuse.sshfs-xyz12' }, wantPath: '/mnt/s',
  },
];

function decode(rec: TranscodedRecord): Record<string, unknown> {
  const { schema, value } = decodeRecord(rec.value);
  assert.equal(schema, FS);
  return { ...value };
}

for (const c of cases) {
  test(`fs.io: ${c.name}`, () => {
    const raw = fsRecord({ ...base, ...c.raw }, c.path);
    const got: TranscodedRecord[] = [];
    const res = transcoder.transcodeBatch(buildBatch([raw]), (schema, key, value) => got.push({ schema, key, value }));
    assert.deepEqual([res.records, res.unknown], [1, 0]);
    const pathLen = typeof c.path === 'string' ? Buffer.byteLength(c.path) : c.path.length;
    const want = { ...baseOut, path_len: pathLen, ...c.want, path: c.wantPath };
    const value = decode(got[0]!);
    // the schema's field order, every field
    assert.deepEqual(Object.keys(value), FS.schema.fields.map((f) => f.name));
    assert.deepEqual(value, Object.fromEntries(Object.keys(value).map((k) => [k, (want as Record<string, unknown>)[k]])));
    assert.equal(got[0]!.key, c.key ?? `${HOST}/8:1/131074`);
    assert.equal(got[0]!.schema.topic, 'ringflow.fs.io.v1');
    // the generated encoder writes what avsc writes for the same value
    const body = FS.type.toBuffer(value);
    assert.deepEqual(got[0]!.value.subarray(got[0]!.value.length - body.length), body);
    // single-record path and decodeRaw agree
    assert.deepEqual(transcoder.transcodeRecord(raw)!.value, got[0]!.value);
    assert.deepEqual(transcoder.decodeRaw(raw)!.value, value);
  });
}

/** Invalid records: each skipped alone and counted, its neighbours intact. */
const invalid: { name: string; raw: () => Buffer }[] = [
  { name: 'record shorter than struct + path_len (path cut off)', raw: () => fsRecord({ ...base, path_len: 20 }, '/only/ten') },
  { name: 'path_len over RF_FS_PATH_MAX, bytes present', raw: () => fsRecord({ ...base }, '/' + 'q'.repeat(PATH_MAX)) },
  { name: 'path_len 65535, record of struct size', raw: () => rawRecord(FS, { ...base, path_len: 65535 }) },
  { name: 'shorter than the struct', raw: () => fsRecord({ ...base }, '/a').subarray(0, FS.size - 1) },
];

for (const c of invalid) {
  test(`fs.io invalid: ${c.name} -> skipped, counted, nothing else lost`, () => {
    const good = (n: number): Buffer => fsRecord({ ...base, fd: n }, `/ok/${n}`);
    const got: TranscodedRecord[] = [];
    const res = transcoder.transcodeBatch(buildBatch([good(1), c.raw(), good(2)]), (schema, key, value) => got.push({ schema, key, value }));
    assert.deepEqual([res.records, res.unknown], [2, 1]);
    assert.deepEqual(got.map((r) => [decode(r).fd, decode(r).path]), [[1n, '/ok/1'], [2n, '/ok/2']]);
    assert.equal(transcoder.transcodeRecord(c.raw()), null);
    assert.equal(transcoder.decodeRaw(c.raw()), null);
  });
}

test('fs.io: bytes after struct + path_len (ring alignment) are ignored', () => {
  const raw = Buffer.concat([fsRecord({ ...base }, '/x/y'), Buffer.from([0xaa, 0xbb, 0xcc])]);
  const v = transcoder.decodeRaw(raw)!.value;
  assert.equal(v.path, '/x/y');
  assert.equal(decode(transcoder.transcodeRecord(raw)!).path, '/x/y');
});

test('fs.io: registered as event type FS_IO, its enums mirror rf_fs_op and rf_fs_cache in order', () => {
  assert.equal(registry.byEventType(EventType.FS_IO), FS);
  const op = FS.schema.fields.find((f) => f.name === 'op')!;
  assert.deepEqual(Object.keys(op.c!.enum!), OPS);
  assert.deepEqual(Object.values(op.c!.enum!), OPS.map((_, i) => i));
  assert.deepEqual(Object.keys(FS.schema.fields.find((f) => f.name === 'cache')!.c!.enum!), CACHES);
});
