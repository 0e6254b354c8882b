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
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { Session, countRecords } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { type ProgCounters, hookDeltas, parseBpftoolNames, parseProgFdinfo, totalNs } from './l7-figures.ts';

/*
 * L7_OBJS=a.o,b.o: objects measured in turn in each pair (old against new
 * in one run: on a shared host only same-run ratios mean anything).
 */
const OBJS = (process.env.L7_OBJS ?? process.env.L7_OBJ ?? new URL('../../bpf/.output/l7.bpf.o', import.meta.url).pathname).split(',');
/* BENCH_KP=1: the kernel-parse setting alone (default both, 0 then 1) */
const KPS = (process.env.BENCH_KP ?? '0,1').split(',').map(Number);
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const pairs = Number(process.env.BENCH_PAIRS ?? 2);
/*
 * The l7overhead bench's way (test/bench/l7.ts): BENCH_FILTER=0 observes
 * every process (no port filter, as `collect --signals l7`), BENCH_SERVER=bench
 * answers as its server does (writeHead + end(body): node writes that with
 * writev, where res.end('ok') alone is one write).
 */
const filterPort = process.env.BENCH_FILTER !== '0';
const benchServer = process.env.BENCH_SERVER === 'bench';

/*
 * This process's own programs only (their fds in /proc/self): other
 * programs named rf_l7_* (tests running beside the bench) are not counted.
 */
function progTimes(): ProgCounters[] {
  const out = new Map<number, ProgCounters>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== 'anon_inode:bpf-prog') continue;
      const p = parseProgFdinfo(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (p) out.set(p.id, p);
    } catch {
      // an fd closed between readdir and read: not a program of the run
    }
  }
  return [...out.values()];
}

/*
 * wrk started asynchronously: a synchronous exec would block this process's
 * event loop, so the ring would not be read during the run and would fill
 * (kernel drops), and a dropped record costs BPF less than a written one.
 */
async function wrk(port: number): Promise<string> {
  const child = spawn('wrk', ['-t1', '-c8', `-d${seconds}s`, `http://127.0.0.1:${port}${benchServer ? '/users/42' : '/'}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const [code] = await once(child, 'close') as [number | null];
  if (code !== 0) throw new Error(`wrk exited with ${code}`);
  return out;
}

async function measure(obj: string, port: number, kernelParse: number): Promise<Record<string, unknown>> {
  const p = Buffer.alloc(2);
  p.writeUInt16LE(port);
  const session = new Session({ ringBytes: 16 << 20 });
  session.addObject(obj, {
    ...encodeSettings({ selfTgid: process.pid }),
    ...(filterPort ? { rf_filter_port: p } : {}),
    rf_l7_kernel_parse: Buffer.from([kernelParse]),
  });
  let records = 0;
  session.start((batch) => {
    records += countRecords(batch);
  });
  const t0 = progTimes();
  const out = await wrk(port);
  const t1 = progTimes();
  const names = parseBpftoolNames(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' }));
  await session.stop();
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const hooks = hookDeltas(t0, t1, names);
  const ns = totalNs(hooks);
  const per: Record<string, number | null> = {};
  const calls: Record<string, number> = {};
  for (const [name, h] of Object.entries(hooks)) {
    if (h.calls === 0) continue;
    per[name] = h.ns_per_call;
    calls[name] = +(h.calls / requests).toFixed(2);
  }
  return {
    obj,
    kernel_parse: kernelParse,
    requests,
    rps: Math.round(requests / seconds),
    bpf_ns_per_request: Math.round(ns / requests),
    records_per_request: +(records / requests).toFixed(2),
    kernel_drops: session.drops().reduce((a, b) => a + b, 0n).toString(),
    ns_per_run: per,
    runs_per_request: calls,
  };
}

const server = spawn(process.execPath, ['-e', `
  const http = require('node:http');
  const s = http.createServer(${benchServer
    ? `(req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"id":42,"name":"x"}'); }`
    : `(q, r) => { r.setHeader('Content-Length', '2'); r.end('ok'); }`});
  s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
`], { stdio: ['ignore', 'pipe', 'inherit'] });
const [line] = await once(server.stdout!, 'data') as [Buffer];
const port = Number(line.toString().trim());
const stats = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim();
writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1');
try {
  execFileSync('wrk', ['-t1', '-c8', '-d1s', `http://127.0.0.1:${port}/`]); // warm-up
  const runs: Record<string, unknown>[] = [];
  for (let i = 0; i < pairs; i++) {
    for (const obj of OBJS) {
      for (const kp of KPS) {
        const r = await measure(obj, port, kp);
        runs.push(r);
        process.stdout.write(`${JSON.stringify(r)}\n`);
      }
    }
  }
  /* last line: per object and setting, the median over its runs (each run's figure above stays the one to compare in pairs) */
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const summary = OBJS.flatMap((obj) => KPS.map((kp) => {
    const mine = runs.filter((r) => r.obj === obj && r.kernel_parse === kp);
    return { obj, kernel_parse: kp, runs: mine.length, median_bpf_ns_per_request: median(mine.map((r) => r.bpf_ns_per_request as number)) };
  }));
  process.stdout.write(`${JSON.stringify({ summary })}\n`);
} finally {
  writeFileSync('/proc/sys/kernel/bpf_stats_enabled', stats);
  server.kill();
}
