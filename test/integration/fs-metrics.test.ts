/**
 * fs metrics end to end (issue 12, design section 6): `ringflow up --signals
 * fs --pid` with a real OpenTelemetry Collector behind the exporter, a child
 * doing known file work (N pwrite + fsync pairs, M preads on one file in
 * /var/tmp/<dir>/a/b). In the Collector's output: ringflow.fs.io.duration
 * with exactly N pwrite, N fsync and M pread calls under the path prefix
 * /var/tmp/<dir>/a (up --fs-metric-depth 4), system.filesystem.type of the root file system,
 * process.command python3, and ringflow.fs.io.size with exactly the bytes
 * written and read; up's summary line names the slowest file series. Real
 * kernel, broker, processor, exporter and Collector: nothing mocked.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, ownBroker, REPO_ROOT, rootOrSkip, runCli, sleep, type CliRun } from '../support/integration.ts';
import { readOtlpFile, startOtelcol, stopOtelcol, type OtlpFile } from '../../cli/otelcol.ts';

const N = 6;
const M = 4;
const BLOCK = 4096;

/** Parked until a line on stdin, then: open, N x (pwrite, fsync), M x pread, close. */
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
`;

interface Dp { metric: string; unit: string; kind: 'exp' | 'sum'; temporality: number; host: string; attrs: Record<string, string>; count: number; value: number }

function points(file: OtlpFile): Dp[] {
  const out: Dp[] = [];
  const val = (v: Record<string, unknown>) => String(v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue);
  for (const rm of file.metrics as { resource: { attributes: { key: string; value: Record<string, unknown> }[] }; scopeMetrics: { metrics: Record<string, any>[] }[] }[]) {
    const host = val(rm.resource.attributes.find((a) => a.key === 'host.name')!.value);
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        const data = m.exponentialHistogram ?? m.sum;
        const kind = m.exponentialHistogram ? 'exp' : 'sum';
        for (const dp of data?.dataPoints ?? []) {
          out.push({
            metric: m.name, unit: m.unit, kind, temporality: data.aggregationTemporality, host,
            attrs: Object.fromEntries((dp.attributes ?? []).map((a: { key: string; value: Record<string, unknown> }) => [a.key, val(a.value)])),
            count: kind === 'exp' ? Number(dp.count) : Number(dp.asInt), value: kind === 'exp' ? Number(dp.max ?? 0) : Number(dp.asInt),
          });
        }
      }
    }
  }
  return out;
}

let dir = '';
let stateDir = '';
before(() => {
  if (process.getuid?.() !== 0) return;
  execFileSync('make', ['-s', '-C', path.join(REPO_ROOT, 'bpf')], { stdio: 'inherit' });
  // on the root file system (a disk file system), not a tmpfs; two levels below the prefix
  dir = fs.realpathSync(fs.mkdtempSync('/var/tmp/ringflow-fs-metrics-'));
  fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
});
after(async () => {
  if (stateDir) await stopOtelcol({ stateDir }).catch(() => {});
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('up --signals fs: exact fs.io.duration calls and fs.io.size bytes per syscall under the path prefix in OTLP; the slowest files in the summary', { timeout: 300_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const k = await ownBroker();
  let up: CliRun | undefined;
  const child = spawn('python3', ['-c', WORK, path.join(dir, 'a', 'b', 'f.dat'), String(N), String(M), String(BLOCK)], { stdio: ['pipe', 'ignore', 'inherit'] });
  try {
    await once(child, 'spawn');
    const exited = once(child, 'exit');
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-fs-metrics-otelcol-'));
    const grpcPort = await freePort();
    let httpPort = await freePort();
    while (httpPort === grpcPort) httpPort = await freePort();
    const { outputFile } = await startOtelcol({ stateDir, grpcPort, httpPort });
    const host = `it-fs-metrics-${process.pid}`;
    up = runCli(['up', '--brokers', k.brokers, '--host', host, '--signals', 'fs', '--fs-metric-depth', '4', '--pid', String(child.pid), '--window', '2s', '--lateness', '3s', '--stats-interval', '1s'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` },
    });
    const cli = up;
    await up.waitFor(/\[collect\] collecting fs/);
    await up.waitFor(/\[export\] exporting/);
    child.stdin!.end('go\n');
    const [code] = await exited;
    assert.equal(code, 0, 'the work child');

    const prefix = `${dir}/a`; // --fs-metric-depth 4: /var/tmp/<dir>/a, passed by up to the processor
    const mine = (ps: Dp[], metric: string) => ps.filter((p) => p.metric === metric && p.host === host && p.attrs['ringflow.fs.path.prefix'] === prefix);
    const calls = (ps: Dp[], syscall: string) => mine(ps, 'ringflow.fs.io.duration').filter((p) => p.attrs['ringflow.fs.syscall'] === syscall).reduce((n, p) => n + p.count, 0);
    const done = (ps: Dp[]) => calls(ps, 'pwrite') >= N && calls(ps, 'fsync') >= N && calls(ps, 'pread') >= M;
    const deadline = Date.now() + 120_000;
    let ps = points(readOtlpFile(outputFile));
    while (!done(ps)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out: pwrite ${calls(ps, 'pwrite')}/${N}, fsync ${calls(ps, 'fsync')}/${N}, pread ${calls(ps, 'pread')}/${M}; fs points ${JSON.stringify(ps.filter((p) => p.metric.startsWith('ringflow.fs.')).slice(0, 20))}\n${cli.stderr().split('\n').slice(-60).join('\n')}`);
      }
      await sleep(1000);
      ps = points(readOtlpFile(outputFile));
    }
    await sleep(5000); // a duplicate would show by now
    ps = points(readOtlpFile(outputFile));
    assert.deepEqual([calls(ps, 'pwrite'), calls(ps, 'fsync'), calls(ps, 'pread')], [N, N, M], 'exactly the child\'s calls, none twice');
    const dur = mine(ps, 'ringflow.fs.io.duration');
    for (const p of dur) {
      assert.equal(p.unit, 's');
      assert.equal(p.kind, 'exp');
      assert.equal(p.temporality, 1, 'delta');
      assert.equal(p.attrs['process.command'], 'python3');
      assert.ok(['ext4', 'ext3', 'ext2', 'xfs', 'btrfs', 'overlay'].includes(p.attrs['system.filesystem.type']!), p.attrs['system.filesystem.type']);
      assert.equal(p.attrs['ringflow.fs.op'], { pwrite: 'write', fsync: 'sync', pread: 'read' }[p.attrs['ringflow.fs.syscall']!] ?? p.attrs['ringflow.fs.op']);
    }
    const bytes = (syscall: string) => mine(ps, 'ringflow.fs.io.size').filter((p) => p.attrs['ringflow.fs.syscall'] === syscall);
    assert.equal(bytes('pwrite').reduce((n, p) => n + p.value, 0), N * BLOCK, 'bytes written');
    assert.equal(bytes('pread').reduce((n, p) => n + p.value, 0), M * BLOCK, 'bytes read');
    assert.deepEqual(bytes('fsync'), [], 'a sync moves no bytes');
    for (const p of [...bytes('pwrite'), ...bytes('pread')]) assert.deepEqual([p.unit, p.kind, p.temporality], ['By', 'sum', 1]);
    // up's live summary names the slowest file series of a window with the child's calls
    const slowLine = new RegExp(`slowest files: [^;]*${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (pwrite|fsync|pread) [\\d.]+(s|ms|µs) \\(python3 on ${host}`);
    // (printed on stdout, SUMMARY_DELAY_MS after a window's last point)
    const until = Date.now() + 30_000;
    while (!slowLine.test(cli.stdout()) && Date.now() < until) await sleep(500);
    assert.match(cli.stdout(), slowLine, 'a summary line names the child\'s files');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (up) {
      up.child.kill('SIGINT');
      assert.equal(await up.exit, 0, up.stderr());
    }
    await k.stop();
  }
});
