/**
 * The live collector's CPU per L7 record, for comparing collector builds in
 * one run (part C of issue 10): one broker, one node:http server under
 * `wrk -t1 -c8`, and `ringflow collect --signals l7` started from each tree in
 * L7_PROFILE_TREES (comma-separated repo roots; default this one), alternated
 * L7_PROFILE_ROUNDS times, L7_PROFILE_SECONDS each. Per run: wrk's rate, the
 * collector's CPU (from /proc over the wrk run) per request and per exchange
 * record. With L7_PROFILE_CPU_PROF=dir each collector writes a V8 CPU profile
 * there (summarise with test/bench/cpuprofile-summary.ts). L7_PROFILE_ARGS:
 * extra collector arguments per tree (';' between trees; a tree may be listed
 * twice to compare arguments). The machine is
 * shared: compare trees within one run (ratios), never across runs.
 * L7_PROFILE_PERF=dir: perf record -g of the collector over each wrk run
 * (`perf report -i FILE --no-children --sort dso,sym`): on-CPU time of every
 * thread, kernel included, where the V8 profile counts wall time of the main
 * thread only (a socket write that wakes the broker looks expensive there).
 *
 * Needs root (BPF) and wrk. Run:
 *   . scripts/node-env.sh && node test/bench/l7-live-profile.ts
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ownBroker } from '../support/integration.ts';
import { startObserver, stopObserver, procCpuSeconds } from './l7.ts';
import { parseWrk, collectorTotals } from './l7-figures.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { once } from 'node:events';

const trees = (process.env.L7_PROFILE_TREES ?? REPO_ROOT).split(',').filter(Boolean);
const rounds = Number(process.env.L7_PROFILE_ROUNDS ?? 2);
const seconds = Number(process.env.L7_PROFILE_SECONDS ?? 5);
const profDir = process.env.L7_PROFILE_CPU_PROF;
/** With L7_PROFILE_PERF=dir: `perf record -g` of the collector (all its threads, kernel included) over each wrk run, JIT symbols from --perf-basic-prof. */
const perfDir = process.env.L7_PROFILE_PERF;
/** Per tree, extra collector arguments (L7_PROFILE_ARGS: one list per tree, ';' between trees, e.g. '--compression none;'). */
const extraArgs = (process.env.L7_PROFILE_ARGS ?? '').split(';').map((a) => a.split(' ').filter(Boolean));

function startServer() {
  return spawn(process.execPath, ['-e', `
    const http = require('node:http');
    const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"id":42,"name":"x"}'); });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function wrk(port: number, s: number) {
  const child = spawn('wrk', ['-t1', '-c8', `-d${s}s`, '--latency', `http://127.0.0.1:${port}/users/42`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  return parseWrk(out);
}

// --perf-basic-prof also writes V8's isolate-*.log into the collector's working directory: keep them with the perf data
if (perfDir) process.chdir(perfDir);

const k = await ownBroker();
const server = startServer();
try {
  const [line] = (await once(server.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  await wrk(port, 2);
  for (let round = 0; round < rounds; round++) {
    for (const [ti, tree] of trees.entries()) {
      const env = { ...process.env };
      if (perfDir) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --perf-basic-prof`;
      if (profDir) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${profDir}/${path.basename(tree)}-${round}`;
      const c = await startObserver(path.join(tree, 'bin/ringflow'), ['collect', '--signals', 'l7', '--brokers', k.brokers, '--stats-interval', '1s', '--host', 'bench-l7', ...(extraArgs[ti] ?? [])], /collecting l7/, 'collector', env);
      let r;
      let cpu;
      try {
        const c0 = procCpuSeconds(c.child.pid!);
        const perf = perfDir ? spawn('perf', ['record', '-q', '-F', '499', '-g', '-p', String(c.child.pid), '-o', `${perfDir}/${path.basename(tree)}-${round}.data`, '--', 'sleep', String(seconds)], { stdio: 'inherit' }) : null;
        r = await wrk(port, seconds);
        if (perf && perf.exitCode === null) await once(perf, 'exit');
        cpu = procCpuSeconds(c.child.pid!) - c0;
      } finally {
        await stopObserver(c.child);
      }
      const t = collectorTotals(c.err());
      const perReq = (cpu * 1e6) / r.requests;
      if (round === 0 && process.env.L7_PROFILE_STDERR) console.error(c.err());
      console.log(JSON.stringify({ tree: path.basename(tree), args: (extraArgs[ti] ?? []).join(' '), round, rps: Math.round(r.rps), cpu_cores: +(cpu / seconds).toFixed(2), cpu_us_per_request: +perReq.toFixed(2), cpu_us_per_record: +(perReq / 2).toFixed(2), read: t.read, kernel_drops: t.kernel_drops, records_per_request: +(t.read / r.requests).toFixed(2) }));
    }
  }
} finally {
  server.kill();
  await k.stop();
}
