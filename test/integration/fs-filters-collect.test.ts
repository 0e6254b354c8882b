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
import { REPO_ROOT, rootOrSkip, runCli } from '../support/integration.ts';

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

/** The paths of the child's fs records (sorted, one per call) under collect with these args; the fs type of the last. */
let lastFsType = '';
async function pathsSeen(args: string[]): Promise<string[]> {
  const child = spawn('python3', ['-c', WORK, ...FILES()], { stdio: ['pipe', 'inherit', 'inherit'] });
  await once(child, 'spawn');
  const exited = once(child, 'exit');
  const cli = runCli(['collect', '--signals', 'fs', '--pid', String(child.pid), '--stdout', ...args]);
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
