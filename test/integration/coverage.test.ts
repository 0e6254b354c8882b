/**
 * Issue 9 item 7, end to end with real parts: a real collector (BPF, sched),
 * a real broker and the real processor. The collector runs, is SIGKILLed
 * (it writes nothing more), the host goes unwatched for a few windows, a new
 * collector run starts (it reads the run state file the killed one kept) and
 * is later stopped cleanly. ringflow.metrics.v1 (read_committed) must then
 * hold exactly one ringflow.collector.coverage point per window of that
 * span: 1 inside a run, 0 for windows wholly inside the gap, strictly between
 * for the windows holding the kill and the restart. Then `ringflow export`
 * ships them to a real OpenTelemetry Collector: the same values arrive as an
 * OTLP Gauge (unit 1, start/end = the window, signal on the point).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { freePort, ownBroker, readTopic, rootOrSkip, runCli, sleep } from '../support/integration.ts';
import { readOtlpFile, startOtelcol, stopOtelcol } from '../../cli/otelcol.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const CSWITCH = 'ringflow.sched.cswitch.v1';
const STATS = 'ringflow.collector.stats.v1';
const W = 2_000_000_000n;

test('coverage: a SIGKILLed collector leaves windows of coverage 0, its runs 1, the edges between; each window once', { timeout: 240_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const k = await ownBroker();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cov-state-'));
  const host = `it-cov-${process.pid}`;
  // a little scheduling activity of our own: the collector watches only it (--pid)
  const busy = spawn('python3', ['-c', 'import time\nwhile True: time.sleep(0.01)'], { stdio: 'ignore' });
  const collect = () => runCli(['collect', '--brokers', k.brokers, '--signals', 'sched', '--pid', String(busy.pid), '--host', host, '--stats-interval', '1s', '--partitions', '1'], { env: { RINGFLOW_STATE_DIR: stateDir } });
  const proc = runCli(['process', '--brokers', k.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '1', '--instance', 'it-cov']);
  let c1: ReturnType<typeof runCli> | undefined;
  let c2: ReturnType<typeof runCli> | undefined;
  let exp: ReturnType<typeof runCli> | undefined;
  const colDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-cov-otelcol-'));
  try {
    const kafka = new Kafka({ clientId: 'it-coverage', brokers: [k.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [RUNQ, CSWITCH, STATS], 1);
    await admin.disconnect();
    await proc.waitFor(/processing as it-cov/);

    c1 = collect();
    await c1.waitFor(/ringflow: collecting/);
    const m1 = /ringflow: run ([0-9a-f]{16})\b/.exec(c1.stderr());
    assert.ok(m1, c1.stderr());
    const run1 = m1[1]!;
    await sleep(7000);
    c1.child.kill('SIGKILL');
    await c1.exit;
    await sleep(6000); // ~3 windows nobody watches

    c2 = collect();
    // the new run read what the killed one kept: its id and where it was last known to watch
    await c2.waitFor(new RegExp(`ringflow: run [0-9a-f]{16}, after run ${run1}`));
    await sleep(7000);
    c2.child.kill('SIGTERM');
    assert.equal(await c2.exit, 0, c2.stderr());

    // the runs as their stats records state them
    const stats = (await readTopic(k.brokers, STATS)).map((r) => r.value).filter((v) => v.host === host);
    const run2Recs = stats.filter((v) => v.run_id !== run1);
    const start = (stats.find((v) => v.run_id === run1)!.run_start_ns as bigint);
    const r2 = run2Recs[0]!;
    assert.equal(r2.previous_run_id, run1);
    const prevEnd = r2.previous_run_end_ns as bigint;
    const start2 = r2.run_start_ns as bigint;
    const end2 = run2Recs.reduce((m, v) => ((v.time_ns as bigint) > m ? (v.time_ns as bigint) : m), 0n);
    assert.ok(prevEnd > start && start2 - prevEnd >= 2n * W, `gap ${prevEnd}..${start2}`);
    const lastRun1 = stats.filter((v) => v.run_id === run1).reduce((m, v) => ((v.time_ns as bigint) > m ? (v.time_ns as bigint) : m), 0n);
    assert.equal(prevEnd, lastRun1, 'the state file kept the time of the killed run\'s last acknowledged stats record');

    const first = (start / W) * W;
    const last = (end2 / W) * W; // the window holding the clean stop
    type Pt = { start: bigint; value: number };
    let pts: Pt[] = [];
    for (const deadline = Date.now() + 90_000; Date.now() < deadline; await sleep(2000)) {
      pts = (await readTopic(k.brokers, 'ringflow.metrics.v1'))
        .map((r) => r.value)
        .filter((v) => v.name === 'ringflow.collector.coverage')
        .filter((v) => (v.attributes as { key: string; value: string }[]).some((a) => a.key === 'host.name' && a.value === host))
        .filter((v) => (v.attributes as { key: string; value: string }[]).some((a) => a.key === 'signal' && a.value === RUNQ))
        .map((v) => ({ start: v.window_start_ns as bigint, value: v.gauge as number }));
      if (pts.some((p) => p.start === last)) break;
    }
    const byStart = new Map<bigint, number[]>();
    for (const p of pts) byStart.set(p.start, [...(byStart.get(p.start) ?? []), p.value]);
    const lines: string[] = [];
    for (let s = first; s <= last; s += W) lines.push(`${(s - first) / W}: ${JSON.stringify(byStart.get(s) ?? [])}`);
    const show = `run 1 ${start}..${prevEnd} (killed), run 2 ${start2}..${end2}, windows from ${first}:\n${lines.join('\n')}`;
    t.diagnostic(show);
    for (let s = first; s <= last; s += W) {
      const got = byStart.get(s) ?? [];
      assert.equal(got.length, 1, `window ${(s - first) / W}: one point, got ${JSON.stringify(got)}\n${show}`);
      const v = got[0]!;
      const e = s + W;
      const inside = (a: bigint, b: bigint) => s >= a && e <= b;
      const holds = (x: bigint) => s < x && x < e;
      if (inside(start, prevEnd) || inside(start2, end2)) assert.equal(v, 1, `window ${(s - first) / W} inside a run\n${show}`);
      else if (inside(prevEnd, start2)) assert.equal(v, 0, `window ${(s - first) / W} inside the gap\n${show}`);
      else if (holds(start) || holds(prevEnd) || holds(start2) || holds(end2)) assert.ok(v > 0 && v < 1, `edge window ${(s - first) / W}: ${v}\n${show}`);
    }
    // windows wholly inside the gap exist (the test would prove little otherwise)
    assert.ok([...byStart.entries()].some(([s, v]) => s >= prevEnd && s + W <= start2 && v[0] === 0), show);

    // the OTLP end: the same values, as a Gauge
    const grpcPort = await freePort();
    const { outputFile } = await startOtelcol({ stateDir: colDir, grpcPort });
    exp = runCli(['export', '--brokers', k.brokers, '--signals', 'metrics'], { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` } });
    await exp.waitFor(/exporting/);
    const want = [...byStart.entries()].filter(([s]) => s >= first && s <= last).map(([s, v]) => `${s} ${v[0]}`).sort();
    let got: string[] = [];
    let meta: { unit?: string; start?: string; end?: string; hasSignal?: boolean } = {};
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(1000)) {
      got = [];
      for (const rm of readOtlpFile(outputFile).metrics) {
        if (!rm.resource?.attributes?.some((a: { key: string; value: { stringValue?: string } }) => a.key === 'host.name' && a.value.stringValue === host)) continue;
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            if (m.name !== 'ringflow.collector.coverage') continue;
            for (const dp of m.gauge?.dataPoints ?? []) {
              if (!dp.attributes?.some((a: { key: string; value: { stringValue?: string } }) => a.key === 'signal' && a.value.stringValue === RUNQ)) continue;
              const startNs = BigInt(dp.startTimeUnixNano);
              if (startNs < first || startNs > last) continue;
              got.push(`${startNs} ${dp.asDouble ?? 0}`);
              meta = { unit: m.unit, start: dp.startTimeUnixNano, end: dp.timeUnixNano, hasSignal: true };
            }
          }
        }
      }
      got.sort();
      if (got.length >= want.length) break;
    }
    assert.deepEqual(got, want, `OTLP coverage points of ${host}\n${show}`);
    assert.equal(meta.unit, '1');
    assert.equal(BigInt(meta.end!) - BigInt(meta.start!), W);
  } finally {
    busy.kill('SIGKILL');
    for (const c of [c1, c2]) if (c && c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    if (exp) {
      exp.child.kill('SIGTERM');
      await exp.exit;
    }
    await stopOtelcol({ stateDir: colDir }).catch(() => {});
    fs.rmSync(colDir, { recursive: true, force: true });
    proc.child.kill('SIGTERM');
    await proc.exit;
    await k.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});
