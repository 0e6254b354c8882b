/**
 * In-kernel filters, through `ringflow collect --stdout` on the real kernel:
 * the same known work, seen or not seen depending on the filter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rootOrSkip, runCli, run, sleep, TCP_DRIVER } from '../support/integration.ts';

const N = 8;

/** Runs the collector with `filters`, drives N connects, returns the connect records to the driver's port. */
async function connectsSeen(filters: string[]): Promise<{ records: Record<string, unknown>[]; pid: number }> {
  const c = runCli(['collect', '--stdout', '--signals', 'tcp', ...filters]);
  await c.waitFor(/collecting tcp/); // printed once every program is attached
  const r = await run('python3', ['-c', TCP_DRIVER, String(N)]);
  assert.equal(r.code, 0, r.stderr);
  const [pid, port] = r.stdout.trim().split(/\s+/).map(Number);
  await sleep(1500);
  c.child.kill('SIGINT');
  assert.equal(await c.exit, 0, c.stderr());
  const records = c
    .stdout()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.event === 'ringflow.tcp.connect.v1' && e.dport === port);
  return { records, pid: pid! };
}

test('comm, uid and min-latency filters pass or stop exactly the driven connects', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const seen = await connectsSeen(['--comm', 'python3']);
  assert.equal(seen.records.length, N, 'matching comm: all seen');
  for (const e of seen.records) assert.equal(e.tgid, seen.pid);
  assert.equal((await connectsSeen(['--comm', 'not-python'])).records.length, 0, 'other comm: none');
  assert.equal((await connectsSeen(['--uid', '0'])).records.length, N, 'uid 0 (we are root): all');
  assert.equal((await connectsSeen(['--uid', '4242'])).records.length, 0, 'other uid: none');
  assert.equal((await connectsSeen(['--min-latency', '10s'])).records.length, 0, 'loopback connects are far under 10s');
});
