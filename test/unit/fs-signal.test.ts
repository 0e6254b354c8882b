/**
 * The fs signal's registration (collector/signals/registry.ts): opt-in, its
 * event type, what --help says of it (the estimate, what is not covered:
 * docs/design/fs.md sections 4 and 7), the tracefs need of its classic
 * syscall tracepoints, and `collect --signals fs` without its object built:
 * one clear line and the build exit code, no stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_SIGNALS, REPO_ROOT, SIGNALS, signalByName } from '../../collector/signals/registry.ts';
import { EventType } from '../../collector/events/types.ts';
import { schemaRegistry } from '../../schemas/registry.ts';
import { COLLECT_HELP } from '../../cli/collect.ts';

test('fs: opt-in, emits FS_IO, whose schema is ringflow.fs.io.v1 keyed by file', () => {
  const s = signalByName('fs');
  assert.deepEqual(s.eventTypes, [EventType.FS_IO]);
  assert.equal(s.optIn, true);
  assert.ok(!DEFAULT_SIGNALS.includes('fs'), 'not on by default until its cost is benchmarked');
  const schema = schemaRegistry().byEventType(EventType.FS_IO)!;
  assert.deepEqual([schema.topic, schema.key], ['ringflow.fs.io.v1', 'file']);
});

test('fs: --help says the cache state is an estimate and what is not covered', () => {
  const line = COLLECT_HELP.split('\n').find((l) => l.trim().startsWith('fs: '));
  assert.ok(line, 'the signal list of --help has an fs line');
  for (const want of ['ESTIMATE', 'readahead', 'io_uring', 'sendfile', 'splice', "mmap'd", 'aio', 'opt-in', 'ringflow.fs.io.v1']) {
    assert.ok(line.includes(want), `fs help mentions ${want}`);
  }
});

test('fs: --help names every syscall bpf/fs.bpf.c times, and no other', () => {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'bpf', 'fs.bpf.c'), 'utf8');
  const hooked = [...src.matchAll(/SEC\("tracepoint\/syscalls\/sys_exit_(\w+)"\)/g)].map((m) => m[1]!);
  assert.ok(hooked.length > 0);
  const listed = /^file syscalls on regular files \(([^;]*);/.exec(signalByName('fs').summary)?.[1]?.split(', ');
  assert.deepEqual([...(listed ?? [])].sort(), [...new Set(hooked)].sort());
});

test('classicTracepoints is set exactly for the signals whose BPF source attaches tracepoint/ sections', () => {
  for (const s of SIGNALS) {
    const src = fs.readFileSync(path.join(REPO_ROOT, 'bpf', `${s.name}.bpf.c`), 'utf8');
    assert.equal(Boolean(s.classicTracepoints), /SEC\("tracepoint\//.test(src), `${s.name}: classicTracepoints`);
  }
});

test('collect --signals fs without bpf/.output/fs.bpf.o: one line naming it, exit code 6, no stack', { skip: process.getuid?.() !== 0 ? 'collect checks privileges first (root)' : false }, () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-fs-noobj-'));
  try {
    const r = spawnSync(path.join(REPO_ROOT, 'bin', 'ringflow'), ['collect', '--signals', 'fs', '--stdout', '--duration', '1s'], {
      encoding: 'utf8', env: { ...process.env, RINGFLOW_BPF_DIR: empty }, timeout: 60_000,
    });
    assert.equal(r.status, 6, r.stderr);
    const lines = r.stderr.trim().split('\n').filter((l) => !/mounted tracefs/.test(l));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^ringflow: BPF object .*fs\.bpf\.o is not built; run: npm run setup$/);
    assert.equal(r.stdout, '');
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});
