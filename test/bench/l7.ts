/**
 * L7 figures for `npm run bench`:
 *
 *   l7_parse_messages_per_s  {http1, http2, dns}: messages parsed per second on one
 *                            core through the collector's tracker (capture records in,
 *                            parsed messages out), on synthetic but well-formed traffic
 *   http_overhead_ratio      requests/s of a local node:http server under wrk with the
 *                            l7 collector running (into Kafka) / without it, same run;
 *                            http_added_p99_ms the difference of wrk's p99 latencies;
 *                            with what the collector read and what the kernel dropped
 *   http_overhead_capture_ratio  the same with only the kernel side running
 *                            (l7-capture.ts: BPF programs + the addon's drain, records
 *                            discarded): how much of the overhead is the kernel's
 *   http_overhead_cpu_reference_ratio  the same with, instead of ringflow, a process
 *                            that only burns as much CPU as the collector used during
 *                            its run (http_collector_cpu_cores): what that much CPU
 *                            costs the server here whatever it is spent on
 *   http_l7_collector_cpu_us_per_message  the collector's CPU (its stats lines) per
 *                            L7 message over its whole run; http_host_cpu_cores_* the
 *                            machine's busy cores (/proc/stat) without and with it
 *   http_l7_bpf_hooks        per BPF program of the collector over the measured run
 *                            (kernel.bpf_stats_enabled): calls, ns_per_call, total_ns;
 *                            http_capture_only_bpf_hooks the same for the kernel side alone
 *   http_l7_bpf_ns_per_request, http_l7_collector_cpu_us_per_request,
 *   http_l7_observer_us_per_request  per wrk request: BPF run time, collector CPU,
 *                            their sum (the observer's whole cost per request)
 *   http_l7_records_per_exchange, http_l7_messages_per_exchange, http_l7_kernel_drops
 *                            capture records / parsed messages per HTTP/1 exchange
 *                            and what the kernel could not hand over, at wrk's rate
 *
 * BENCH_L7_SECONDS (default 10) sets each run's length (a short run only checks
 * the output); BENCH_L7_BPF_STATS=0 leaves kernel.bpf_stats_enabled alone.
 */
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import hpack from 'hpack.js';
import dnsPacket from 'dns-packet';
import { L7Tracker } from '../../collector/l7/tracker.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, IPPROTO_UDP, type L7Capture } from '../../collector/l7/capture.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { parseWrk, parseProgFdinfo, parseBpftoolNames, hookDeltas, totalNs, perRequest, collectorTotals, ratio, irqWorkCount, type WrkResult, type ProgCounters, type HookFigures } from './l7-figures.ts';

const enc = new TextEncoder();

/** Capture records of one connection, as the kernel side would produce them (one record per syscall). */
class Conn {
  private off: [number, number] = [0, 0];
  private readonly recs: L7Capture[] = [];
  private readonly id: bigint;
  private readonly proto: number;
  constructor(id: bigint, proto: number) {
    this.id = id;
    this.proto = proto;
  }
  push(dir: number, payload: Uint8Array): void {
    this.recs.push({
      cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: BigInt(this.recs.length), cgroup_id: 1n, comm: 'bench',
      conn_id: this.id, offset: this.off[dir]!, peer_offset: 0, laddr: Uint8Array.of(127, 0, 0, 1), raddr: Uint8Array.of(127, 0, 0, 1), fd: 3,
      total_len: payload.length, captured_len: payload.length, lport: 40000, rport: this.proto === IPPROTO_UDP ? 53 : 8080, family: 2,
      direction: dir, syscall: 2, role: L7Role.CLIENT, protocol: this.proto, kind: L7Kind.DATA, flags: 0, enter_ns: BigInt(this.recs.length), payload,
    });
    this.off[dir]! += payload.length;
  }
  records(): readonly L7Capture[] {
    return this.recs;
  }
}

function http1Conn(id: bigint, n: number): readonly L7Capture[] {
  const c = new Conn(id, IPPROTO_TCP);
  for (let i = 0; i < n; i++) {
    c.push(L7Direction.EGRESS, enc.encode(`GET /api/users/${i}?page=2 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n`));
    c.push(L7Direction.INGRESS, enc.encode(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\nDate: Thu, 26 Nov 2026 05:00:00 GMT\r\n\r\n{"id":${String(i).padStart(6, '0')},"name":"x"}`));
  }
  return c.records();
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  f[0] = payload.length >> 16; f[1] = (payload.length >> 8) & 255; f[2] = payload.length & 255;
  f[3] = type; f[4] = flags;
  new DataView(f.buffer).setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

function block(comp: ReturnType<typeof hpack.compressor.create>, fields: [string, string][]): Uint8Array {
  comp.write(fields.map(([name, value]) => ({ name, value })));
  const parts: Buffer[] = [];
  for (let b = comp.read(); b; b = comp.read()) parts.push(b as Buffer);
  return new Uint8Array(Buffer.concat(parts));
}

/** gRPC unary calls on one h2c connection: HEADERS + DATA from the client, HEADERS + DATA + trailers from the server. */
function http2Conn(id: bigint, n: number): readonly L7Capture[] {
  const c = new Conn(id, IPPROTO_TCP);
  const cc = hpack.compressor.create({ table: { maxSize: 4096 } });
  const sc = hpack.compressor.create({ table: { maxSize: 4096 } });
  const settings = frame(4, 0, 0, new Uint8Array(0));
  c.push(L7Direction.EGRESS, new Uint8Array([...enc.encode('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), ...settings]));
  c.push(L7Direction.INGRESS, settings);
  const msg = new Uint8Array(5 + 20).fill(7);
  msg[0] = 0; msg[4] = 20;
  for (let i = 0; i < n; i++) {
    const s = 1 + 2 * i;
    const req = block(cc, [[':method', 'POST'], [':scheme', 'http'], [':path', '/shop.Catalog/GetItem'], [':authority', 'catalog:50051'], ['content-type', 'application/grpc'], ['te', 'trailers'], ['grpc-timeout', '5S']]);
    c.push(L7Direction.EGRESS, new Uint8Array([...frame(1, 4, s, req), ...frame(0, 1, s, msg)]));
    const res = block(sc, [[':status', '200'], ['content-type', 'application/grpc']]);
    const tr = block(sc, [['grpc-status', i % 10 === 0 ? '5' : '0']]);
    c.push(L7Direction.INGRESS, new Uint8Array([...frame(1, 4, s, res), ...frame(0, 0, s, msg), ...frame(1, 5, s, tr)]));
  }
  return c.records();
}

function dnsConn(id: bigint, n: number): readonly L7Capture[] {
  const c = new Conn(id, IPPROTO_UDP);
  for (let i = 0; i < n; i++) {
    const q = { id: i & 0xffff, type: 'query' as const, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A' as const, name: `svc${i % 50}.ns.svc.cluster.local` }] };
    c.push(L7Direction.EGRESS, new Uint8Array(dnsPacket.encode(q)));
    c.push(L7Direction.INGRESS, new Uint8Array(dnsPacket.encode({ ...q, type: 'response', flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, answers: [{ type: 'A', name: q.questions[0]!.name, ttl: 30, data: '10.0.0.1' }] })));
  }
  return c.records();
}

/** Messages per second through a fresh tracker, feeding the same connection's records again and again for `ms`. */
function rate(make: (id: bigint) => readonly L7Capture[], ms: number): number {
  const t = new L7Tracker();
  let messages = 0;
  let id = 0n;
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(ms) * 1_000_000n;
  let now = t0;
  while (now < deadline) {
    const recs = make(++id);
    for (const r of recs) messages += t.feed(r).length;
    messages += t.feed({ ...recs[0]!, kind: L7Kind.CLOSE, captured_len: 0, total_len: 0, payload: new Uint8Array(0) }).length;
    now = process.hrtime.bigint();
  }
  return Math.round(messages / (Number(now - t0) / 1e9));
}

export function l7Parse(ms = 2000): Record<string, unknown> {
  // the records are built once per connection and fed many times: measure parsing, not building
  const h1 = http1Conn(0n, 500);
  const h2 = http2Conn(0n, 500);
  const dns = dnsConn(0n, 500);
  const reuse = (recs: readonly L7Capture[]) => (id: bigint) => recs.map((r) => ({ ...r, conn_id: id }));
  return {
    l7_parse_messages_per_s: {
      http1: rate(reuse(h1), ms),
      http2: rate(reuse(h2), ms),
      dns: rate(reuse(dns), ms),
    },
  };
}

const wrkArgs = (port: number, seconds: number) => ['-t1', '-c8', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/users/42`];

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU seconds (user + system, all threads) a live process has used. */
export function procCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // after "pid (comm) ": state is field 3, utime 14, stime 15
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait). */
function hostBusySeconds(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return (f.reduce((a, n) => a + n, 0) - f[3]! - f[4]!) / CLK_TCK;
}

const BPF_STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';

/**
 * Turns kernel.bpf_stats_enabled on (run_cnt and run_time_ns of every BPF
 * program are counted only while it is) and returns what puts the old value
 * back. The counting itself costs each program run two clock reads: on for
 * the whole l7overhead part so the with-ringflow and capture-only runs pay
 * it alike; BENCH_L7_BPF_STATS=0 leaves it alone (no per-hook figures then).
 */
export function enableBpfStats(): () => void {
  const old = fs.readFileSync(BPF_STATS_SYSCTL, 'utf8').trim();
  fs.writeFileSync(BPF_STATS_SYSCTL, '1');
  const restore = () => fs.writeFileSync(BPF_STATS_SYSCTL, old);
  // a benchmark stopped by Ctrl-C must not leave every BPF program on the host counting
  const interrupted = (sig: NodeJS.Signals) => {
    restore();
    process.kill(process.pid, sig); // the handlers are gone (once): ends as it would have
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  return () => {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    restore();
  };
}

/** The bpf_stats counters of every BPF program `pid` holds an fd of (the collector's own: other helpers' programs are not counted). */
export function progCounters(pid: number): ProgCounters[] {
  const out = new Map<number, ProgCounters>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:bpf-prog') continue;
      const p = parseProgFdinfo(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (p) out.set(p.id, p); // several fds of one program: counted once
    } catch {
      // an fd closed between readdir and read: not a program of the run
    }
  }
  return [...out.values()];
}

/** Program names by id (fdinfo has only ids); without bpftool the hooks are named by id. */
export function progNames(): Map<number, string> {
  try {
    return parseBpftoolNames(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    process.stderr.write(`bench: bpftool prog show failed, hooks named by id: ${(err as Error).message}\n`);
    return new Map();
  }
}

interface Run extends WrkResult {
  seconds: number;
  /** the machine's busy cores over the run (/proc/stat) */
  host_cores: number;
  /** the observer's (collector's or capture process's) CPU seconds over the run; 0 without one */
  observer_cpu_s: number;
  /** what each of the observer's BPF programs ran over the run; null without an observer or without bpf_stats */
  hooks: Record<string, HookFigures> | null;
  /** IRQ work interrupts on the host over the run (the ring's forced wake-ups among them); null where /proc/interrupts has none */
  irq_work: number | null;
}

const irqWork = () => irqWorkCount(fs.readFileSync('/proc/interrupts', 'utf8'));

/**
 * One measured load run, the only way any run here is made (warm-up,
 * without ringflow, with it, kernel side only, CPU reference): wrk spawned
 * asynchronously, the host's busy cores, and, when an observer process is
 * given, its CPU and its programs' bpf_stats read just before and just after.
 * Until this, the runs without ringflow (and the warm-up) ran wrk through a
 * synchronous execFileSync and the runs with it through an async spawn, and
 * only two runs measured the host's CPU: the two sides were not timed alike.
 */
async function measuredRun(port: number, seconds: number, observer?: { pid: number; names: ReadonlyMap<number, string> | null }): Promise<Run> {
  const p0 = observer?.names ? progCounters(observer.pid) : [];
  const c0 = observer ? procCpuSeconds(observer.pid) : 0;
  const i0 = irqWork();
  const h0 = hostBusySeconds();
  const t0 = performance.now();
  const r = await wrkAsync(port, seconds);
  const s = (performance.now() - t0) / 1000;
  const h1 = hostBusySeconds();
  const i1 = irqWork();
  const c1 = observer ? procCpuSeconds(observer.pid) : 0;
  const hooks = observer?.names ? hookDeltas(p0, progCounters(observer.pid), observer.names) : null;
  return { ...r, seconds: s, host_cores: (h1 - h0) / s, observer_cpu_s: c1 - c0, hooks, irq_work: i0 === null || i1 === null ? null : i1 - i0 };
}

/**
 * Processes that do nothing but use `cores` of CPU between them (each busy for
 * its share of every 10 ms), as the collector did, for the reference ratio.
 */
function burn(cores: number): () => void {
  const n = Math.max(1, Math.ceil(cores));
  const kids = Array.from({ length: n }, () => spawn(process.execPath, ['-e', `
    const duty = ${Math.min(1, cores / n)};
    for (;;) {
      const t = performance.now();
      while (performance.now() - t < 10 * duty);
      if (duty < 1) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 * (1 - duty));
    }
  `], { stdio: 'ignore' }));
  return () => kids.forEach((k) => k.kill('SIGKILL'));
}

/** wrk without blocking this process's event loop (a child's stderr is being read meanwhile). */
async function wrkAsync(port: number, seconds: number): Promise<WrkResult> {
  const child = spawn('wrk', wrkArgs(port, seconds), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'exit');
  return parseWrk(out);
}

/** Starts a child and waits for `ready` on its stderr; its stderr so far and on, for the figures. */
export async function startObserver(cmd: string, args: string[], ready: RegExp, what: string, env: NodeJS.ProcessEnv = process.env): Promise<{ child: ReturnType<typeof spawn>; err: () => string; out: () => string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 300 && !ready.test(err) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  if (!ready.test(err)) {
    child.kill('SIGKILL');
    throw new Error(`${what} did not start:\n${err}`);
  }
  return { child, err: () => err, out: () => out };
}

export async function stopObserver(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGINT');
  await exited;
}

/** The traced server: node:http answering a small JSON body; prints its port. */
function startServer(): ReturnType<typeof spawn> {
  return spawn(process.execPath, ['-e', `
    const http = require('node:http');
    const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"id":42,"name":"x"}'); });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function serverPort(server: ReturnType<typeof spawn>): Promise<number> {
  const [line] = await once(server.stdout!, 'data') as [Buffer];
  return Number(line.toString().trim());
}

/**
 * A node:http server under wrk: alone, with `ringflow collect --signals l7`
 * producing into Kafka, alone, with only the kernel side (l7-capture.ts),
 * with a CPU burner, alone again (interleaved: the baseline is the mean of
 * the three runs alone, so drift shows less). Every run goes through
 * measuredRun after one warm-up through it too.
 *
 * Per HTTP request (one wrk request = one HTTP/1 exchange, seen by the hooks
 * on both wrk's and the server's side): the BPF run time of the collector's
 * programs over the measured run (bpf_stats), the collector's CPU over the
 * same run, and their sum; L7 records and messages per exchange from the
 * collector's stats lines, which cover its whole life (start-up and stop
 * add a few idle seconds, and any other process's traffic on the host is
 * captured too: an over-count on a shared machine, never an under-count).
 */
export async function httpOverhead(brokers: string, seconds = 10): Promise<Record<string, unknown>> {
  const withStats = process.env.BENCH_L7_BPF_STATS !== '0';
  const restoreStats = withStats ? enableBpfStats() : () => {};
  const server = startServer();
  try {
    const port = await serverPort(server);
    await measuredRun(port, Math.min(2, seconds)); // warm-up
    const before = await measuredRun(port, seconds);

    const collector = await startObserver(path.join(REPO_ROOT, 'bin/ringflow'), ['collect', '--signals', 'l7', '--brokers', brokers, '--stats-interval', '1s', '--host', 'bench-l7'], /collecting l7/, 'collector');
    let during: Run;
    try {
      // bin/ringflow execs node: the pid is the collector's
      during = await measuredRun(port, seconds, { pid: collector.child.pid!, names: withStats ? progNames() : null });
    } finally {
      await stopObserver(collector.child);
    }
    // the collector's stats lines: what it read and parsed, what the kernel could not hand it, its CPU
    const totals = collectorTotals(collector.err());
    const after = await measuredRun(port, seconds);

    // the kernel side alone
    const capture = await startObserver(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(REPO_ROOT, 'test/bench/l7-capture.ts')], /capturing/, 'l7-capture');
    let captureOnly: Run;
    try {
      captureOnly = await measuredRun(port, seconds, { pid: capture.child.pid!, names: withStats ? progNames() : null });
    } finally {
      await stopObserver(capture.child);
    }
    const captured = JSON.parse(capture.out().trim() || '{}') as { records?: number; kernel_drops?: number };

    // the reference: as much CPU as the collector used, spent on nothing
    const collectorCores = during.observer_cpu_s / during.seconds;
    const stopBurning = burn(collectorCores);
    let reference: Run;
    try {
      reference = await measuredRun(port, seconds);
    } finally {
      stopBurning();
    }
    const last = await measuredRun(port, seconds);

    const base = { rps: (before.rps + after.rps + last.rps) / 3, p99_ms: (before.p99_ms + after.p99_ms + last.p99_ms) / 3 };
    const bpfHooks = (r: Run) => (r.hooks ? totalNs(r.hooks) : NaN);
    const withL7 = perRequest(bpfHooks(during), during.observer_cpu_s, during.requests);
    const captureOnlyPer = perRequest(bpfHooks(captureOnly), captureOnly.observer_cpu_s, captureOnly.requests);
    const irqPerRequest = (r: Run) => (r.irq_work === null ? null : ratio(r.irq_work, r.requests, 3));
    // hooks that never ran (readv, sendmmsg... under wrk and node:http) would only lengthen the output
    const called = (h: Record<string, HookFigures> | null) => (h ? Object.fromEntries(Object.entries(h).filter(([, f]) => f.calls > 0)) : null);
    const orNull = (n: number | null) => (n === null || Number.isNaN(n) ? null : n);
    return {
      http_rps_without: Math.round(base.rps),
      http_rps_with_l7: Math.round(during.rps),
      http_overhead_ratio: +(during.rps / base.rps).toFixed(3),
      http_p99_ms_without: +base.p99_ms.toFixed(3),
      http_p99_ms_with_l7: +during.p99_ms.toFixed(3),
      http_added_p99_ms: +(during.p99_ms - base.p99_ms).toFixed(3),
      http_l7_messages_parsed: totals.read,
      http_l7_kernel_drops: totals.kernel_drops,
      http_l7_collector_cpu_us_per_message: totals.read > 0 ? +(totals.cpu_seconds * 1e6 / totals.read).toFixed(2) : null,
      http_collector_cpu_cores: +collectorCores.toFixed(2),
      http_host_cpu_cores_without: +before.host_cores.toFixed(2),
      http_host_cpu_cores_with_l7: +during.host_cores.toFixed(2),
      // per HTTP request of the with-ringflow run (see httpOverhead's comment)
      http_requests_with_l7: during.requests,
      http_l7_bpf_ns_per_request: orNull(withL7.bpf_ns_per_request),
      http_l7_collector_cpu_us_per_request: withL7.collector_cpu_us_per_request,
      http_l7_observer_us_per_request: withStats ? withL7.observer_us_per_request : null,
      // capture records, and the exchange records of HTTP/1 framed in the kernel
      http_l7_records_per_exchange: ratio(totals.captures + totals.exchanges, during.requests),
      http_l7_messages_per_exchange: ratio(totals.messages, during.requests),
      http_l7_bpf_hooks: called(during.hooks),
      http_rps_with_capture_only: Math.round(captureOnly.rps),
      http_overhead_capture_ratio: +(captureOnly.rps / base.rps).toFixed(3),
      http_capture_only_records: captured.records ?? null,
      http_capture_only_kernel_drops: captured.kernel_drops ?? null,
      http_capture_only_records_per_exchange: captured.records === undefined ? null : ratio(captured.records, captureOnly.requests),
      http_capture_only_bpf_ns_per_request: orNull(captureOnlyPer.bpf_ns_per_request),
      http_capture_only_bpf_hooks: called(captureOnly.hooks),
      http_host_cpu_cores_capture_only: +captureOnly.host_cores.toFixed(2),
      // the ring's forced wake-ups show here (host-wide: the run alone before is the background)
      http_irq_work_per_request_without: irqPerRequest(before),
      http_irq_work_per_request_with_l7: irqPerRequest(during),
      http_irq_work_per_request_capture_only: irqPerRequest(captureOnly),
      http_rps_with_cpu_reference: Math.round(reference.rps),
      http_overhead_cpu_reference_ratio: +(reference.rps / base.rps).toFixed(3),
      http_l7_run_seconds: seconds,
      http_l7_bpf_stats: withStats ? 'kernel.bpf_stats_enabled=1 during this part (restored after)' : 'off (BENCH_L7_BPF_STATS=0)',
    };
  } finally {
    server.kill();
    restoreStats();
  }
}

/**
 * What the ring's forced wake-ups cost the traced server (`BENCH_ONLY=l7wakeup`,
 * not in the default run). The BPF side submits with BPF_RB_FORCE_WAKEUP
 * whenever the ring holds rf_wakeup_bytes or more (common.bpf.h rf_submit,
 * l7.bpf.c): once the consumer lags that far, on every record, each one an
 * IRQ work interrupt inside the program's run time. The kernel side alone
 * (l7-capture.ts) with a consumer slowed to `usPerRecord` per record, as the
 * collector lags, alternately with rf_wakeup_bytes as the collector has it and
 * past the ring (never forced: the native thread's poll timeout still drains
 * it), `pairs` times; the same server and wrk as httpOverhead.
 */
export async function wakeupCost(seconds = 5, pairs = 3, usPerRecord = 8): Promise<Record<string, unknown>> {
  const restoreStats = enableBpfStats();
  const server = startServer();
  try {
    const port = await serverPort(server);
    await measuredRun(port, Math.min(2, seconds)); // warm-up
    const runs: Record<string, unknown>[] = [];
    for (let i = 0; i < pairs; i++) {
      for (const forced of [true, false]) {
        const env = { ...process.env, L7_CAPTURE_US_PER_RECORD: String(usPerRecord), ...(forced ? {} : { L7_CAPTURE_WAKEUP_BYTES: String(2 ** 40) }) };
        const capture = await startObserver(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(REPO_ROOT, 'test/bench/l7-capture.ts')], /capturing/, 'l7-capture', env);
        let r: Run;
        try {
          r = await measuredRun(port, seconds, { pid: capture.child.pid!, names: progNames() });
        } finally {
          await stopObserver(capture.child);
        }
        const exits = Object.entries(r.hooks ?? {}).filter(([n]) => /_exit_/.test(n)).reduce((a, [, h]) => ({ calls: a.calls + h.calls, ns: a.ns + h.total_ns }), { calls: 0, ns: 0 });
        runs.push({
          wakeups: forced ? 'forced past rf_wakeup_bytes (as the collector runs)' : 'never forced',
          rps: Math.round(r.rps),
          bpf_ns_per_request: r.hooks ? ratio(totalNs(r.hooks), r.requests, 1) : null,
          exit_ns_per_call: ratio(exits.ns, exits.calls, 1),
          irq_work_per_request: r.irq_work === null ? null : ratio(r.irq_work, r.requests, 3),
        });
      }
    }
    return { l7_wakeup_runs: runs, l7_wakeup_settings: `kernel side alone, consumer busy ${usPerRecord} us per record, ${seconds} s per run, alternating` };
  } finally {
    server.kill();
    restoreStats();
  }
}
