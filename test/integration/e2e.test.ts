/**
 * The whole pipeline on real parts: real BPF programs on this kernel, a real
 * Kafka broker, the processor and the exporter, and a real OpenTelemetry
 * Collector (built from the Go module proxy) writing what it receives to a
 * file, all started by `ringflow up`. Known work is driven and the metrics are
 * checked in the Collector's output, where the truth is exact. The Collector
 * is then stopped for 30 s while more work happens, and nothing is lost.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { rootOrSkip, ownBroker, freePort, runCli, run, sleep, readTopic, collectorStatsTotals, TCP_DRIVER, type CliRun } from '../support/integration.ts';
import { startOtelcol, stopOtelcol, readOtlpFile, type OtlpFile } from '../../cli/otelcol.ts';

const N_CONNECTS = 20;
const N_CONNECTS_WHILE_DOWN = 12;
const M_WRITES = 8;

interface Dp { metric: string; unit: string; kind: 'exp' | 'sum'; temporality: number; host: string; attrs: Record<string, string | number>; count: number; raw: Record<string, unknown> }

/** Every data point in the Collector's file, flattened. */
function points(file: OtlpFile): Dp[] {
  const out: Dp[] = [];
  const val = (v: Record<string, unknown>) => (v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue ?? v.doubleValue)) as string | number;
  for (const rm of file.metrics as { resource: { attributes: { key: string; value: Record<string, unknown> }[] }; scopeMetrics: { metrics: Record<string, any>[] }[] }[]) {
    const host = String(val(rm.resource.attributes.find((a) => a.key === 'host.name')!.value));
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        const data = m.exponentialHistogram ?? m.sum;
        const kind = m.exponentialHistogram ? 'exp' : 'sum';
        for (const dp of data?.dataPoints ?? []) {
          out.push({
            metric: m.name, unit: m.unit, kind, temporality: data.aggregationTemporality, host,
            attrs: Object.fromEntries((dp.attributes ?? []).map((a: { key: string; value: Record<string, unknown> }) => [a.key, val(a.value)])),
            count: kind === 'exp' ? Number(dp.count) : Number(dp.asInt), raw: dp,
          });
        }
      }
    }
  }
  return out;
}

/** The last lines `ringflow up` printed: a failure says what the stages said. */
let upLog: () => string = () => '';

async function waitFor(file: string, what: string, pred: (ps: Dp[]) => boolean, timeoutMs: number, seen: (ps: Dp[]) => string = () => ''): Promise<Dp[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ps = points(readOtlpFile(file));
    if (pred(ps)) return ps;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${ps.length} points so far${seen(ps)}; ringflow up said:\n${upLog().split('\n').slice(-80).join('\n')}`);
    await sleep(1000);
  }
}

/**
 * For a timeout: the events ringflow.metrics.v1 counted late per metric (in
 * OTLP they are ringflow.dropped{reason=late}, beside the metric awaited) and
 * what the collector read and dropped per topic, so a failure tells lateness,
 * loss and absence apart.
 */
async function pipelineDiagnosis(brokers: string): Promise<string> {
  const late = new Map<string, bigint>();
  for (const r of await readTopic(brokers, 'ringflow.metrics.v1').catch(() => [])) {
    const n = BigInt(r.value.late_events as bigint | number);
    if (n > 0n) late.set(String(r.value.name), (late.get(String(r.value.name)) ?? 0n) + n);
  }
  const stats = collectorStatsTotals(await readTopic(brokers, 'ringflow.collector.stats.v1').catch(() => []));
  return `\nlate events in ringflow.metrics.v1: ${late.size ? [...late].map(([m, n]) => `${m} ${n}`).join(', ') : 'none'}`
    + `\ncollector stats (read/kernel drops/user drops): ${[...stats].map(([e, a]) => `${e} ${a.read}/${a.kernel}/${a.user}`).join(', ')}`;
}

const connectsTo = (ps: Dp[], port: number) =>
  ps.filter((p) => p.metric === 'ringflow.tcp.connect.duration' && p.attrs['server.port'] === port).reduce((a, p) => a + p.count, 0);

describe('end to end: kernel -> Kafka -> processor -> exporter -> OpenTelemetry Collector', { timeout: 420_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>> | undefined;
  let up: CliRun | undefined;
  let stateDir = '';
  let outputFile = '';
  let grpcPort = 0;
  const host = `it-e2e-${process.pid}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    k = await ownBroker();
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-e2e-otelcol-'));
    grpcPort = await freePort();
    ({ outputFile } = await startOtelcol({ stateDir, grpcPort }));
    up = runCli(['up', '--brokers', k.brokers, '--host', host, '--window', '2s', '--lateness', '3s', '--stats-interval', '1s'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` },
    });
    const cli = up;
    upLog = () => `${cli.stderr()}\n(stdout)\n${cli.stdout()}`;
    await up.waitFor(/\[collect\] collecting sched,block,tcp/);
    await up.waitFor(/\[export\] exporting/);
  });

  after(async () => {
    if (up) {
      up.child.kill('SIGINT');
      await up.exit;
    }
    if (stateDir) await stopOtelcol({ stateDir }).catch(() => {});
    await k?.stop();
  });

  test('known work arrives as the right metrics, with exact counts where the truth is exact', async (t) => {
    if (!rootOrSkip(t)) return;
    const tcp = await run('python3', ['-c', TCP_DRIVER, String(N_CONNECTS)]);
    assert.equal(tcp.code, 0, tcp.stderr);
    const port = Number(tcp.stdout.trim().split(/\s+/)[1]);

    const dir = fs.mkdtempSync(path.join('/var/tmp', 'ringflow-e2e-'));
    const file = path.join(dir, 'direct.bin');
    // allocate the file from python (not dd), so every block record of dd is one of its direct writes
    await run('python3', ['-c', `import os\nf=open(${JSON.stringify(file)},'wb'); f.write(b'\\0'*65536*${M_WRITES}); f.flush(); os.fsync(f.fileno())`]);
    const dd = await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', `count=${M_WRITES}`, 'oflag=direct', 'conv=notrunc', 'status=none']);
    assert.equal(dd.code, 0, dd.stderr);
    fs.rmSync(dir, { recursive: true, force: true });

    const busy = 'import time\nt=time.time()+1.5\nwhile time.time()<t: pass';
    await Promise.all(Array.from({ length: 4 }, () => new Promise((r) => spawn('python3', ['-c', busy], { stdio: 'ignore' }).on('close', r))));

    const isDdWrite = (p: Dp) => p.attrs['process.command'] === 'dd' && p.attrs['disk.io.direction'] === 'write';
    const ddWrites = (ps: Dp[]) => ps.filter((p) => p.metric === 'ringflow.block.io.latency' && isDdWrite(p)).reduce((a, p) => a + p.count, 0);
    const python3Runq = (ps: Dp[]) => ps.filter((p) => p.metric === 'ringflow.sched.runqueue.latency' && p.attrs['process.command'] === 'python3').length;
    const ps = await waitFor(outputFile, `${N_CONNECTS} connects to port ${port}, ${M_WRITES} dd writes and python3 run-queue points`,
      (ps) => connectsTo(ps, port) >= N_CONNECTS && ddWrites(ps) >= M_WRITES && python3Runq(ps) > 0, 120_000,
      (ps) => ` (connects ${connectsTo(ps, port)}, dd writes ${ddWrites(ps)}, python3 run-queue points ${python3Runq(ps)})`,
    ).catch(async (err: Error) => {
      err.message += await pipelineDiagnosis(k!.brokers);
      throw err;
    });
    await sleep(5000); // a duplicate would show by now

    // connects: one exponential histogram series per window, exact total, right attributes
    const conn = ps.filter((p) => p.metric === 'ringflow.tcp.connect.duration' && p.attrs['server.port'] === port);
    assert.equal(connectsTo(points(readOtlpFile(outputFile)), port), N_CONNECTS, 'exactly N connect durations, none twice');
    for (const p of conn) {
      assert.equal(p.unit, 's');
      assert.equal(p.kind, 'exp');
      assert.equal(p.temporality, 1, 'delta temporality');
      assert.equal(p.host, host, 'host.name on the resource');
      assert.equal(p.attrs['server.address'], '127.0.0.1');
      assert.equal(p.attrs['process.command'], 'python3');
      assert.ok(Number(p.raw.startTimeUnixNano) < Number(p.raw.timeUnixNano), 'start = window start, time = window end');
    }
    // block I/O: dd's direct writes, exact count and bytes
    // (dd also reads its own pages in when it starts: only its writes are known exactly)
    const ddLat = points(readOtlpFile(outputFile)).filter((p) => p.metric === 'ringflow.block.io.latency' && isDdWrite(p));
    assert.equal(ddLat.reduce((a, p) => a + p.count, 0), M_WRITES);
    const ddBytes = points(readOtlpFile(outputFile)).filter((p) => p.metric === 'ringflow.block.io.size' && isDdWrite(p));
    assert.equal(ddBytes.reduce((a, p) => a + p.count, 0), M_WRITES * 65536);
    for (const p of ddBytes) {
      assert.equal(p.unit, 'By');
      assert.equal(p.kind, 'sum');
      assert.equal(p.temporality, 1);
    }
    // CPU contention: run-queue latency of the busy processes
    assert.ok(ps.some((p) => p.metric === 'ringflow.sched.runqueue.latency' && p.attrs['process.command'] === 'python3' && p.count > 0));
  });

  test('the Collector down for 30 s loses nothing', async (t) => {
    if (!rootOrSkip(t)) return;
    await stopOtelcol({ stateDir });
    const tcp = await run('python3', ['-c', TCP_DRIVER, String(N_CONNECTS_WHILE_DOWN)]);
    assert.equal(tcp.code, 0, tcp.stderr);
    const port = Number(tcp.stdout.trim().split(/\s+/)[1]);
    await sleep(30_000);
    assert.equal(connectsTo(points(readOtlpFile(outputFile)), port), 0, 'nothing could arrive while it was down');
    await startOtelcol({ stateDir, grpcPort });
    await waitFor(outputFile, `${N_CONNECTS_WHILE_DOWN} connects made while the Collector was down`, (ps) => connectsTo(ps, port) >= N_CONNECTS_WHILE_DOWN, 90_000);
    await sleep(3000);
    assert.equal(connectsTo(points(readOtlpFile(outputFile)), port), N_CONNECTS_WHILE_DOWN);
    assert.match(up!.stderr(), /\[export\].*(unavailable|retrying)/i, 'the exporter said the backend was down');
  });

  test('Ctrl-C stops every stage cleanly', async (t) => {
    if (!rootOrSkip(t)) return;
    up!.child.kill('SIGINT');
    assert.equal(await up!.exit, 0, up!.stderr());
    up = undefined;
  });
});
