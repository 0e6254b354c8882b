/**
 * BPF run time per HTTP request of bpf/l7.bpf.o with rf_l7_kernel_parse 0
 * (capture records, as before) and 1 (HTTP/1 framed and paired in BPF,
 * exchange records): a node:http keep-alive server under wrk -t1 -c8, both
 * ends observed (filtered on the server's port), kernel.bpf_stats_enabled
 * on, the programs' run_time_ns summed over the run and divided by the
 * requests wrk made. The two settings alternate (BENCH_PAIRS, default 2) so
 * that a shared host's drift falls on both. One JSON line per run.
 *
 *   bash scripts/with-node.sh node test/bench/l7-kernel-parse-cost.ts
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session, countRecords } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';

const OBJ = process.env.L7_OBJ ?? new URL('../../bpf/.output/l7.bpf.o', import.meta.url).pathname;
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const pairs = Number(process.env.BENCH_PAIRS ?? 2);

function progTimes(): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as { name?: string; run_time_ns?: number; run_cnt?: number }[];
  for (const p of progs) {
    if (!p.name?.startsWith('rf_l7_')) continue;
    const [t, c] = out.get(p.name) ?? [0, 0];
    out.set(p.name, [t + (p.run_time_ns ?? 0), c + (p.run_cnt ?? 0)]);
  }
  return out;
}

async function measure(port: number, kernelParse: number): Promise<Record<string, unknown>> {
  const p = Buffer.alloc(2);
  p.writeUInt16LE(port);
  const session = new Session({ ringBytes: 16 << 20 });
  session.addObject(OBJ, {
    ...encodeSettings({ selfTgid: process.pid }),
    rf_filter_port: p,
    rf_l7_kernel_parse: Buffer.from([kernelParse]),
  });
  let records = 0;
  session.start((batch) => {
    records += countRecords(batch);
  });
  const t0 = progTimes();
  const out = execFileSync('wrk', ['-t1', '-c8', `-d${seconds}s`, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  const t1 = progTimes();
  await session.stop();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  let ns = 0;
  const per: Record<string, number> = {};
  for (const [name, [t, c]] of t1) {
    const dt = t - (t0.get(name)?.[0] ?? 0);
    const dc = c - (t0.get(name)?.[1] ?? 0);
    ns += dt;
    if (dc > 0) per[name] = Math.round(dt / dc);
  }
  return {
    kernel_parse: kernelParse,
    requests,
    rps: Math.round(requests / seconds),
    bpf_ns_per_request: Math.round(ns / requests),
    records_per_request: +(records / requests).toFixed(2),
    kernel_drops: session.drops().reduce((a, b) => a + b, 0n).toString(),
    ns_per_run: per,
  };
}

const server = spawn(process.execPath, ['-e', `
  const http = require('node:http');
  const s = http.createServer((q, r) => { r.setHeader('Content-Length', '2'); r.end('ok'); });
  s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
`], { stdio: ['ignore', 'pipe', 'inherit'] });
const [line] = await once(server.stdout!, 'data') as [Buffer];
const port = Number(line.toString().trim());
const stats = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim();
writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
try {
  execFileSync('wrk', ['-t1', '-c8', '-d1s', `http://127.0.0.1:${port}/`]); // warm-up
  for (let i = 0; i < pairs; i++) {
    for (const kp of [0, 1]) process.stdout.write(`${JSON.stringify(await measure(port, kp))}\n`);
  }
} finally {
  writeFileSync('/proc/sys/kernel/bpf_stats_enabled', stats);
  server.kill();
}
