/**
 * `ringflow collect --stdout | head`: when the reader of the pipe goes away,
 * the collector stops as a filter does (exit 0, no stack trace) instead of
 * dying of an unhandled EPIPE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rootOrSkip, runCli, sleep } from '../support/integration.ts';

test('collect --stdout: the reader closing the pipe ends the run cleanly', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const c = runCli(['collect', '--stdout', '--signals', 'sched', '--duration', '90s', '--quiet']);
  try {
    await c.waitFor(/collecting sched/);
    const deadline = Date.now() + 20_000;
    while (!c.stdout().includes('\n') && Date.now() < deadline) await sleep(100);
    assert.match(c.stdout(), /"event":"ringflow\.sched\./, 'events were printed');
    c.child.stdout!.destroy(); // what head does after its first lines
    const started = Date.now();
    const code = await c.exit;
    assert.equal(code, 0, c.stderr());
    assert.ok(Date.now() - started < 30_000, 'stopped soon, not at --duration');
    assert.doesNotMatch(c.stderr(), /EPIPE|Unhandled|at .*\.ts:\d+/);
  } finally {
    c.child.kill('SIGKILL');
  }
});
