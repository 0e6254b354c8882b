/**
 * `ringflow collect --signals fs` end to end (issue 12 slice 4): a real child
 * does known file work (N pwrite + fsync pairs, M preads, on a file in
 * /var/tmp) and the collector, filtered to that child, writes exactly those
 * calls, nothing else of it, to ringflow.fs.io.v1 on a real broker, each with
 * the file's path, dev and inode as stat sees them, and keyed by the file
 * (host/major:minor/ino); and prints the same records as JSON lines with
 * --stdout. The kernel side (tmpfs, ext4 loop images, O_DIRECT, cache states)
 * is test/native/fs.test.ts's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { collectorStatsTotals, readTopic, REPO_ROOT, rootOrSkip, runCli, testBrokers } from '../support/integration.ts';

const TOPIC = 'ringflow.fs.io.v1';
const N = 5;
const M = 3;
const BLOCK = 4096;

/** Parked until a line on stdin, then exactly: open, N x (pwrite, fsync), M x pread, close; prints what stat says. */
const WORK = `
import os, sys
p = sys.argv[1]; n = int(sys.argv[2]); m = int(sys.argv[3]); b = int(sys.argv[4])
sys.stdin.readline()
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(n):
    os.pwrite(fd, b'x' * b, i * b)
    os.fsync(fd)
for i in range(m):
    os.pread(fd, b, i * b)
os.close(fd)
st = os.stat(p)
print(fd, os.major(st.st_dev), os.minor(st.st_dev), st.st_ino, flush=True)
`;

type Rec = Record<string, unknown>;
interface Work { pid: number; fd: number; major: number; minor: number; ino: number; file: string }

let dir = '';
before(() => {
  if (process.getuid?.() !== 0) return;
  execFileSync('make', ['-s', '-C', path.join(REPO_ROOT, 'bpf')], { stdio: 'inherit' });
  // on the root file system (a real disk file system), not the tmpfs /tmp may be
  dir = fs.realpathSync(fs.mkdtempSync('/var/tmp/ringflow-fs-collect-'));
});
after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

/** Runs collect (extra args) filtered to a parked child, lets the child work, stops collect; the child's facts and the CLI. */
async function collectWork(name: string, args: string[]): Promise<{ work: Work; cli: ReturnType<typeof runCli> }> {
  const file = path.join(dir, `${name}.dat`);
  const child = spawn('python3', ['-c', WORK, file, String(N), String(M), String(BLOCK)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(child, 'spawn');
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const cli = runCli(['collect', '--signals', 'fs', '--pid', String(child.pid), '--stats-interval', '1s', ...args]);
  try {
    await cli.waitFor(/collecting fs/);
    child.stdin!.end('go\n');
    const [code] = await exited;
    assert.equal(code, 0, 'the work child');
    // no wait: a stopping collector drains what the ring holds before it exits
  } finally {
    cli.child.kill('SIGINT');
  }
  assert.equal(await cli.exit, 0, cli.stderr());
  const [fd, major, minor, ino] = out.trim().split(' ').map(Number);
  return { work: { pid: child.pid!, fd: fd!, major: major!, minor: minor!, ino: ino!, file }, cli };
}

/** Exactly the child's calls, in order, with the fields that identify them. */
function assertExactly(recs: Rec[], w: Work): void {
  const mine = recs.filter((r) => Number(r.tgid) === w.pid);
  const want: [string, number, number, number][] = [['OPEN', 0, 0, w.fd]]; // its openat: the file of the fd it returned
  for (let i = 0; i < N; i++) want.push(['PWRITE', i * BLOCK, BLOCK, BLOCK], ['FSYNC', 0, 0, 0]);
  for (let i = 0; i < M; i++) want.push(['PREAD', i * BLOCK, BLOCK, BLOCK]);
  mine.sort((a, b) => (BigInt(a.ts_ns as bigint) < BigInt(b.ts_ns as bigint) ? -1 : 1));
  assert.deepEqual(mine.map((r) => [r.op, Number(r.offset), Number(r.len), Number(r.ret)]), want, JSON.stringify(mine.map((r) => [r.op, r.path])));
  for (const r of mine) {
    assert.equal(r.path, w.file, 'the path, walked in BPF');
    assert.deepEqual([Number(r.ino), Number(r.dev_major), Number(r.dev_minor), Number(r.fd)], [w.ino, w.major, w.minor, w.fd], 'dev, ino, fd as stat and the child see them');
    assert.equal(r.comm, 'python3');
    assert.ok(Number(r.latency_ns) > 0, 'latency');
    assert.ok(['ext4', 'ext3', 'ext2', 'xfs', 'btrfs', 'overlay'].includes(String(r.fs_type)), `fs_type ${String(r.fs_type)}`);
    assert.equal(Number(r.flags) & 1, 0, 'not cut');
  }
}

test('collect --signals fs --pid: exactly the child\'s N pwrite+fsync and M preads in ringflow.fs.io.v1, keyed by file', { timeout: 240_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { brokers, stop } = await testBrokers();
  try {
    const host = `fs-collect-${process.pid}`;
    const { work } = await collectWork('kafka', ['--brokers', brokers, '--host', host]);
    const recs = (await readTopic(brokers, TOPIC)).filter((r) => r.value.host === host);
    assertExactly(recs.map((r) => r.value), work);
    for (const r of recs.filter((x) => Number(x.value.tgid) === work.pid)) {
      assert.equal(r.key, `${host}/${work.major}:${work.minor}/${work.ino}`, 'key: one file, one partition');
    }
    assert.equal(new Set(recs.filter((x) => Number(x.value.tgid) === work.pid).map((r) => r.partition)).size, 1, 'one partition');
    // every record the kernel wrote was transcoded (none undecodable: the path trailer fits), none lost
    const stats = (await readTopic(brokers, 'ringflow.collector.stats.v1')).filter((r) => r.value.host === host);
    assert.ok(stats.length > 0, 'stats records');
    assert.equal(stats.reduce((n, r) => n + Number(r.value.undecodable), 0), 0, 'undecodable');
    const fsTotals = collectorStatsTotals(stats).get(TOPIC);
    assert.ok(fsTotals, 'the fs topic in the stats');
    assert.deepEqual([fsTotals.read, fsTotals.produced, fsTotals.kernel, fsTotals.user], [recs.length, recs.length, 0, 0]);
    // rf_fs_lost is read (the signal's losses reach the stats record) and counted nothing here
    assert.deepEqual(stats.flatMap((r) => (r.value.kernel_losses as { reason: string }[]).map((l) => l.reason)).filter((x) => x.startsWith('fs_')), []);
  } finally {
    await stop();
  }
});

test('collect --signals fs --stdout: the same calls as JSON lines, path included', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { work, cli } = await collectWork('stdout', ['--stdout']);
  const recs = cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec).filter((r) => r.event === TOPIC);
  assertExactly(recs, work);
});
