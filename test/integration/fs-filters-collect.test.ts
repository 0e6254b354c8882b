/**
 * collect --signals fs with the fs signal's own filters (--path, --fs,
 * --min-latency; bpf/fs_filter.h), end to end through the CLI: the flags
 * reach the fs object and only the calls they let through come out
 * (--stdout: the filters act in the kernel, the sink does not matter). The
 * cases (bind mounts, symlinks, fs types) are test/native/fs-filters.test.ts's.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { readTopic, REPO_ROOT, rootOrSkip, runCli, testBrokers } from '../support/integration.ts';

const TOPIC = 'ringflow.fs.io.v1';

/** Parked until a line on stdin, then one pwrite + one pread on each file given; prints the fs type of the first. */
const WORK = `
import os, sys
sys.stdin.readline()
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b'x' * 4096, 0)
    os.pread(fd, 4096, 0)
    os.close(fd)
`;

let dir = '';
before(() => {
  if (process.getuid?.() !== 0) return;
  execFileSync('make', ['-s', '-C', path.join(REPO_ROOT, 'bpf')], { stdio: 'inherit' });
  dir = fs.realpathSync(fs.mkdtempSync('/var/tmp/ringflow-fs-filters-'));
  for (const d of ['in/sub', 'out']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.symlinkSync(path.join(dir, 'in'), path.join(dir, 'in-link'));
});
after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

const FILES = () => [path.join(dir, 'in', 'a.dat'), path.join(dir, 'in', 'sub', 'b.dat'), path.join(dir, 'out', 'c.dat'), path.join(dir, 'd.dat')];

/** WORK, then FAILED_OPENS opens of a path that does not exist (ENOENT: no file, counted in rf_fs_failed). */
const FAILED_OPENS = 3;
const WORK_AND_FAIL = `${WORK}
for i in range(${FAILED_OPENS}):
    try:
        os.open(os.path.join(os.path.dirname(sys.argv[1]), 'missing', 'x'), os.O_RDONLY)
    except FileNotFoundError:
        pass
`;

/** The paths of the child's fs records (sorted, one per call) under collect with these args; the fs type of the last. */
let lastFsType = '';
async function pathsSeen(args: string[], opts: { stdout?: boolean; work?: string } = {}): Promise<string[]> {
  const child = spawn('python3', ['-c', opts.work ?? WORK, ...FILES()], { stdio: ['pipe', 'inherit', 'inherit'] });
  await once(child, 'spawn');
  const exited = once(child, 'exit');
  const cli = runCli(['collect', '--signals', 'fs', '--pid', String(child.pid), ...(opts.stdout === false ? [] : ['--stdout']), ...args]);
  try {
    await cli.waitFor(/collecting fs/);
    child.stdin!.end('go\n');
    const [code] = await exited;
    assert.equal(code, 0, 'the work child');
  } finally {
    cli.child.kill('SIGINT');
  }
  assert.equal(await cli.exit, 0, cli.stderr());
  const recs = cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.event === TOPIC && Number(r.tgid) === child.pid);
  lastFsType = recs.length ? String(recs.at(-1)!.fs_type) : '';
  return recs.map((r) => String(r.path)).sort();
}

const perFile = (ps: string[]) => ps.flatMap((p) => [p, p, p]).sort(); // an openat, a pwrite and a pread each

test('collect --signals fs: --path (through a symlink) keeps the files under it, --fs the named types, --min-latency the slow calls', { timeout: 240_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const [a, b] = FILES();
  assert.deepEqual(await pathsSeen(['--path', path.join(dir, 'in-link')]), perFile([a!, b!]), '--path: only under in/');
  assert.deepEqual(await pathsSeen([]), perFile(FILES()), 'no filter: every file');
  const type = lastFsType; // s_type->name of the disk /var/tmp is on (ext4, xfs...)
  t.diagnostic(`${dir} is on ${type}`);
  assert.ok(type !== '' && type !== 'tmpfs' && type !== 'fuse', type);
  assert.deepEqual(await pathsSeen(['--fs', 'tmpfs,fuse']), [], '--fs of other types: none');
  assert.deepEqual(await pathsSeen(['--fs', `tmpfs,${type}`]), perFile(FILES()), `--fs tmpfs,${type}: every file`);
  assert.deepEqual(await pathsSeen(['--min-latency', '10s']), [], '--min-latency 10s: none of these cached calls');
});

test('collect --signals fs --min-latency 10s into Kafka: the stats records\' kernel_counts carry every call the child made under it (an openat, a pwrite and a pread per file) and its failed opens', { timeout: 240_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { brokers, stop } = await testBrokers();
  try {
    const host = `fs-filters-${process.pid}`;
    const seen = await pathsSeen(['--brokers', brokers, '--host', host, '--stats-interval', '1s', '--min-latency', '10s'], { stdout: false, work: WORK_AND_FAIL });
    assert.deepEqual(seen, [], 'stdout: nothing (Kafka)');
    const recs = (await readTopic(brokers, TOPIC)).filter((r) => r.value.host === host);
    assert.deepEqual(recs.map((r) => r.value.path), [], 'no record: every call was under 10 s');
    const stats = (await readTopic(brokers, 'ringflow.collector.stats.v1')).filter((r) => r.value.host === host);
    assert.ok(stats.length >= 2, `${stats.length} stats records (one at start, one at stop)`);
    const counts: Record<string, number> = {};
    for (const r of stats) for (const c of (r.value.kernel_counts as { reason: string; count: bigint }[])) counts[c.reason] = (counts[c.reason] ?? 0) + Number(c.count);
    const n = FILES().length;
    assert.deepEqual(counts, {
      fs_below_min_latency_open: n,
      fs_below_min_latency_pwrite: n,
      fs_below_min_latency_pread: n,
      fs_failed_open: FAILED_OPENS,
    });
    // not losses
    assert.deepEqual(stats.flatMap((r) => (r.value.kernel_losses as { reason: string }[]).map((l) => l.reason)).filter((x) => x.startsWith('fs_')), []);
  } finally {
    await stop();
  }
});
