/**
 * A user who cannot run ringflow gets one line naming the fix, before anything
 * is installed: run as `nobody` (setpriv, so this needs root to start) on a
 * machine whose Node.js on PATH is older than 24 (Debian's /usr/bin/node here),
 * which is when the scripts would fetch one into the user's cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, rootOrSkip } from '../support/integration.ts';

const NOBODY = 65534;

function asNobody(args: string[], env: Record<string, string>): { code: number | null; lines: string[]; stderr: string } {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, lines: r.stderr.split('\n').filter((l) => l.trim() !== ''), stderr: r.stderr };
}

/** A home directory nobody can write: anything installed would land in it. */
function nobodysHome(t: { after: (fn: () => void) => void }): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-nobody-'));
  fs.chownSync(home, NOBODY, NOBODY);
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  return home;
}

/** Node.js on the PATH the tests give nobody is older than 24: the scripts would install one. */
function oldNodeOnPath(): boolean {
  const r = spawnSync('/usr/bin/node', ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' });
  return r.status === 0 && Number(r.stdout.trim()) < 24;
}

function assertOneLine(r: { code: number | null; lines: string[]; stderr: string }, code: number, re: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  assert.equal(r.lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(r.lines[0]!, re);
  assert.doesNotMatch(r.stderr, /mkdir|Permission denied|npm (ERR|error)/);
}

test('npm start as a user without privileges: one line, exit 3, nothing installed', (t) => {
  if (!rootOrSkip(t)) return;
  const home = nobodysHome(t);
  // what `npm start` runs first, with what npm sets (offline: the old code fetched Node.js here)
  const r = asNobody(['bash', 'scripts/setup.sh'], { HOME: home, npm_lifecycle_event: 'start', npm_config_offline: 'true' });
  assertOneLine(r, 3, /^ringflow: loading eBPF programs needs root or CAP_BPF\+CAP_PERFMON; run with sudo: sudo npm start$/);
  assert.deepEqual(fs.readdirSync(home), [], 'nothing was written to the home directory');
});

test('ringflow up / collect as a user without privileges: one line, exit 3, nothing installed', (t) => {
  if (!rootOrSkip(t)) return;
  const home = nobodysHome(t);
  for (const args of [['up', '--signals', 'tcp'], ['collect', '--stdout']]) {
    const r = asNobody([path.join(REPO_ROOT, 'bin', 'ringflow'), ...args], { HOME: home, npm_config_offline: 'true' });
    assertOneLine(r, 3, new RegExp(`^ringflow: ${args[0]}: loading eBPF programs needs root or CAP_BPF\\+CAP_PERFMON; run with sudo: sudo \\S*bin/ringflow ${args.join(' ')}$`));
  }
  assert.deepEqual(fs.readdirSync(home), [], 'nothing was written to the home directory');
});

test('a home directory that cannot be written: one line naming it and the fix, no mkdir error', (t) => {
  if (!rootOrSkip(t)) return;
  if (!oldNodeOnPath()) return t.skip('/usr/bin/node is >= 24 here: nothing would be installed');
  // a command that needs no privileges, so only the Node.js install is in the way
  const r = asNobody([path.join(REPO_ROOT, 'bin', 'ringflow'), 'tail', 'tcp.connect'], { HOME: '/nonexistent', npm_config_offline: 'true' });
  assertOneLine(r, 1, /^ringflow: needs Node\.js >= 24 and cannot install it into \/nonexistent\/\.cache\/ringflow \(\/ is not writable by nobody\); run with sudo, or set RINGFLOW_CACHE to a directory you can write$/);
});

test('setup in a tree the user cannot write: one line naming the directory and its owner', (t) => {
  if (!rootOrSkip(t)) return;
  const st = fs.statSync(REPO_ROOT);
  if (st.uid === NOBODY || (st.mode & 0o002) !== 0) return t.skip(`${REPO_ROOT} is writable by nobody`);
  const home = nobodysHome(t);
  const r = asNobody(['bash', 'scripts/setup.sh'], { HOME: home, npm_config_offline: 'true' });
  assertOneLine(r, 1, /^ringflow: setup cannot write \/\S+ as nobody \(owned by \w+\); run it as that user or with sudo: sudo bash scripts\/setup\.sh$/);
  assert.deepEqual(fs.readdirSync(home), [], 'nothing was written to the home directory');
});
