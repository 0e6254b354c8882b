/**
 * The soak: the whole pipeline (collector with sched,block,tcp,l7, processor,
 * exporter: what `ringflow up` runs, here as separate supervised processes so
 * each can be killed on its own) into a real OpenTelemetry Collector, under
 * sustained mixed load from third-party clients, while faults are injected:
 *
 *   load (bounded in count and time, all on loopback)      faults (cycle, repeated on long runs)
 *   wrk (paced) and curl -> node:http server               SIGKILL the processor, restart it
 *   Python grpcio client -> grpcio server                  SIGKILL the exporter, restart it
 *   dig -> dnsmasq                                         stop the broker, restart it (same dir, port)
 *   TCP connects (python3) to a listener of its own        SIGSTOP the Collector, SIGCONT it
 *   dd oflag=direct writes (a copy of dd, own comm)
 *   CPU burners
 *
 * Known work is what the clients and servers counted themselves; at the end
 * it must be at the OTLP end exactly once per signal (duplicates reported
 * apart, not counted), and any shortfall must be covered by a counter
 * (collector stats drops, late events in ringflow.metrics.v1, drop metrics at
 * OTLP). A stage that exits when the soak did not kill it is a failure.
 *
 *   node test/soak/soak.ts [--duration 30m] [--faults processor,exporter,broker,backend | --no-faults] [--keep]
 * (npm run soak -- --duration 30m). The CI entry is test/integration/soak.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ownBroker, freePort, readTopic, collectorStatsTotals, run, sleep, REPO_ROOT } from '../support/integration.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { startOtelcol, stopOtelcol, otelcolStatus } from '../../cli/otelcol.ts';
import { parseDurationNs } from '../../common/options.ts';
import { OtlpTally, type PointInfo, type SpanInfo } from './otlp-tally.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** Debian's python3 has python3-grpcio; a pyenv python3 first on PATH may not. */
const PY = '/usr/bin/python3';
const DNS_ANSWER = '10.7.7.7';
/**
 * What tells this run's work apart from anything else on the host (another
 * soak, the L7 tests' servers): every collector sees every process. Letters
 * only, so the processor's route template keeps them (it collapses numbers).
 */
const TAG = process.pid.toString(26).split('').map((c) => String.fromCharCode(97 + parseInt(c, 26))).join('');
/** Our own dnsmasq address on lo (not 127.0.0.54, where the L7 tests' one listens). */
const DNS_ADDR = `127.0.77.${(process.pid % 250) + 2}`;
const GRPC_SERVICE = `rfsoak${TAG}.Soak`;
const HTTP_PATH = `/rfsoak/${TAG}/ping`;
/** dd copied under this name (at most 15 bytes, the kernel's comm): its block I/O is told apart by comm. */
const DD_COMM = `rfdd-${TAG}`.slice(0, 15);

export interface SoakOptions {
  /** How long the load (and the fault cycle) runs. */
  loadMs: number;
  /** How long to wait after the load for the known work to arrive. */
  drainMs?: number;
  /** Which faults to inject (default all of FAULTS); [] for load alone. */
  faults?: readonly Fault[];
  /** Keep the work directory (logs, OTLP file) for a look afterwards. */
  keep?: boolean;
  log?: (line: string) => void;
}

export const FAULTS = ['processor', 'exporter', 'broker', 'backend'] as const;
export type Fault = typeof FAULTS[number];

export interface SignalResult {
  signal: string;
  expected: number;
  seen: number;
  duplicates: number;
  conflicts: number;
  /** Events counted late on our series (seen + late must equal expected), and drops that could explain the rest. */
  counters: Record<string, number>;
  /**
   * exact: all of it at OTLP; conserved: at OTLP or counted late (on our series, in ringflow.metrics.v1
   * and at OTLP); loss accounted: the rest is within the drops counted for its topic; EXCESS: more at
   * OTLP + late than the work done (something counted twice); CONFLICT: one point exported with two values.
   */
  verdict: 'exact' | 'conserved' | 'loss accounted' | 'LOSS UNACCOUNTED' | 'EXCESS' | 'CONFLICT';
}

export interface SoakResult {
  failures: string[];
  signals: SignalResult[];
  summary: string;
  workDir: string;
}

const TCP_DRIVER = `
import socket, sys, time
n, pause, deadline = int(sys.argv[1]), float(sys.argv[2]), time.time() + float(sys.argv[3])
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(64)
print('port', srv.getsockname()[1], flush=True)
done = 0
while done < n and time.time() < deadline:
    c = socket.create_connection(('127.0.0.1', srv.getsockname()[1])); a, _ = srv.accept(); a.close(); c.close()
    done += 1
    time.sleep(pause)
print('done', done, flush=True)
`;

const BURNER = `
import sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    t = time.time() + 0.2
    while time.time() < t: pass
    time.sleep(0.1)
`;

/** One pipeline stage as its own process; an exit the soak did not cause is recorded as a crash. */
class Stage {
  child: ChildProcess | undefined;
  private expectExit = false;
  private tail: string[] = [];
  readonly crashes: string[] = [];
  restarts = 0;
  /** Set when the soak ends: no restart after that, whatever is pending. */
  retired = false;
  private exited: Promise<void> = Promise.resolve();

  readonly name: string;
  private readonly args: () => string[];
  private readonly env: NodeJS.ProcessEnv;
  private readonly logFile: string;
  private readonly log: (l: string) => void;

  constructor(name: string, args: () => string[], env: NodeJS.ProcessEnv, logFile: string, log: (l: string) => void) {
    this.name = name;
    this.args = args;
    this.env = env;
    this.logFile = logFile;
    this.log = log;
  }

  /** While this resolves later (the broker deliberately down), a crashed stage waits to restart. */
  holdRestart: () => Promise<void> = async () => {};

  start(): void {
    this.expectExit = false;
    this.tail = [];
    const child = spawn(path.join(REPO_ROOT, 'bin', 'ringflow'), this.args(), { env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    fs.appendFileSync(this.logFile, `--- ${new Date().toISOString()} start ${this.name} pid ${child.pid}\n`);
    const out = fs.createWriteStream(this.logFile, { flags: 'a' });
    for (const s of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: s }).on('line', (l) => {
        out.write(`${l}\n`);
        this.tail.push(l);
        if (this.tail.length > 40) this.tail.shift();
      });
    }
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        out.end(`--- ${new Date().toISOString()} exit ${code ?? signal}\n`);
        if (!this.expectExit) {
          const why = `${new Date().toISOString().slice(11, 19)} ${this.name} exited on its own (${signal ?? `code ${code}`}); its last lines:\n    ${this.tail.slice(-12).join('\n    ')}`;
          this.crashes.push(why);
          this.log(`CRASH ${why}`);
          // keep the soak going so the rest is still measured (the crash fails it); a stage started
          // while the soak holds the broker down would only say "cannot reach Kafka" and exit
          void sleep(1000).then(() => this.holdRestart()).then(() => { if (this.child === child && !this.retired) this.start(); });
        }
        resolve();
      });
    });
  }

  async stop(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    this.expectExit = true;
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 45_000);
    await this.exited;
    clearTimeout(t);
    return child.exitCode;
  }

  async restart(): Promise<void> {
    await this.stop('SIGKILL');
    this.restarts++;
    this.start();
  }

  lastLines(n: number): string[] {
    return this.tail.slice(-n);
  }

  waitFor(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return (async () => {
      while (!fs.readFileSync(this.logFile, 'utf8').match(re)) {
        if (Date.now() > deadline) throw new Error(`${this.name}: no ${re} within ${timeoutMs / 1000} s; log:\n${this.tail.join('\n')}`);
        await sleep(250);
      }
    })();
  }
}

/** A long-running helper process speaking lines on stdin/stdout. */
function peer(cmd: string, args: string[]): { child: ChildProcess; next: () => Promise<string> } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const it = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, next: async () => String((await it.next()).value ?? '') };
}

async function countOf(p: { child: ChildProcess; next: () => Promise<string> }): Promise<number> {
  p.child.stdin!.write('count\n');
  const line = await p.next();
  const m = /^count (\d+)$/.exec(line);
  if (!m) throw new Error(`expected "count N", got "${line}"`);
  return Number(m[1]);
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`soak: ${l}\n`));
  const faults = new Set<Fault>(opts.faults ?? FAULTS);
  const drainMs = opts.drainMs ?? 120_000;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-soak-'));
  const ioDir = fs.mkdtempSync(path.join('/var/tmp', 'ringflow-soak-')); // O_DIRECT needs a real block device, not tmpfs
  const host = `soak-${process.pid}`;
  const dnsName = `${host}.ringflow.test`;
  const failures: string[] = [];
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const t0 = Date.now();
  const at = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
  const say = (l: string) => log(`[${at()}] ${l}`);

  try {
    // ---- the backend and the broker
    say(`work dir ${workDir}`);
    const broker = await ownBroker();
    cleanups.push(() => broker.stop());
    const otelDir = path.join(workDir, 'otelcol');
    const grpcPortOtel = await freePort();
    const { outputFile } = await startOtelcol({ stateDir: otelDir, grpcPort: grpcPortOtel });
    cleanups.push(() => stopOtelcol({ stateDir: otelDir }));
    say(`broker ${broker.brokers}, OpenTelemetry Collector on ${grpcPortOtel}`);

    // ---- the pipeline, each stage on its own
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPortOtel}` };
    const stageLog = (n: string) => path.join(workDir, `${n}.log`);
    const processor = new Stage('process', () => ['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '3s'], env, stageLog('process'), say);
    const exporter = new Stage('export', () => ['export', '--brokers', broker.brokers], env, stageLog('export'), say);
    processor.start();
    exporter.start();
    // the first processor and exporter are left out of L7 parsing as `ringflow up` does; restarted
    // ones are not (new pids): their OTLP and Kafka traffic is parsed, on ports the soak does not count
    const own = [processor.child!.pid, exporter.child!.pid].join(',');
    const collector = new Stage('collect', () => [
      'collect', '--brokers', broker.brokers, '--host', host, '--signals', 'sched,block,tcp,l7', '--stats-interval', '1s', '--quiet', '--exclude-pid', own,
    ], env, stageLog('collect'), say);
    collector.start();
    const stages = [collector, processor, exporter];
    let brokerBack: Promise<void> = Promise.resolve();
    for (const s of stages) s.holdRestart = () => brokerBack;
    cleanups.push(async () => {
      for (const s of stages) {
        s.retired = true;
        await s.stop('SIGKILL');
      }
    });
    await collector.waitFor(/collecting sched,block,tcp,l7/, 90_000);
    await exporter.waitFor(/exporting/, 90_000);
    say('pipeline up');

    // ---- servers
    const httpSrv = peer(process.execPath, [path.join(HERE, 'http-server.ts')]);
    say(`this run's tag: ${TAG} (HTTP ${HTTP_PATH}, gRPC ${GRPC_SERVICE}, DNS ${DNS_ADDR}, dd as ${DD_COMM})`);
    cleanups.push(() => httpSrv.child.kill('SIGKILL'));
    const httpPort = Number((await httpSrv.next()).split(' ')[1]);
    const grpcSrv = peer(PY, [path.join(HERE, 'grpc-peer.py'), 'server', GRPC_SERVICE]);
    cleanups.push(() => grpcSrv.child.kill('SIGKILL'));
    const grpcPort = Number((await grpcSrv.next()).split(' ')[1]);
    if (!httpPort || !grpcPort) throw new Error(`servers did not start (http ${httpPort}, grpc ${grpcPort}); is python3-grpcio installed for ${PY}?`);
    const dnsmasq = spawn('dnsmasq', [
      '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll', `--pid-file=${path.join(workDir, 'dnsmasq.pid')}`,
      `--listen-address=${DNS_ADDR}`, '--bind-interfaces', '--port=53', '--local=/ringflow.test/', `--address=/${dnsName}/${DNS_ANSWER}`,
    ], { stdio: 'ignore' });
    cleanups.push(() => dnsmasq.kill('SIGTERM'));
    const ddBin = path.join(ioDir, DD_COMM);
    fs.copyFileSync('/usr/bin/dd', ddBin);
    fs.chmodSync(ddBin, 0o755);
    const ddFile = path.join(ioDir, 'direct.bin');
    // allocated by python, not by our dd, so every block write of DD_COMM is one of its direct writes
    await run(PY, ['-c', `import os\nf=open(${JSON.stringify(ddFile)},'wb'); f.write(b'\\0'*65536*4); f.flush(); os.fsync(f.fileno())`]);
    await sleep(1000);
    say(`servers: http ${httpPort}, grpc ${grpcPort}, dns ${DNS_ADDR}`);

    // ---- load: every loop bounded in count and time, counting its own work
    const loadEnd = Date.now() + opts.loadMs;
    const known = { tcp: 0, wrk: 0, curl: 0, grpcClient: 0, dig: 0, ddWrites: 0 };
    const loopErrors: string[] = [];
    let tcpPort = 0;
    const loops: Promise<void>[] = [];
    const every = async (pauseMs: number, body: () => Promise<void>) => {
      while (Date.now() < loadEnd) {
        try {
          await body();
        } catch (err) {
          if (loopErrors.length < 20) loopErrors.push((err as Error).message);
        }
        await sleep(pauseMs);
      }
    };
    // TCP connects: one process, a connect every 50 ms, at most the load's length
    loops.push((async () => {
      const p = peer(PY, ['-c', TCP_DRIVER, String(Math.ceil(opts.loadMs / 50)), '0.05', String(opts.loadMs / 1000)]);
      tcpPort = Number((await p.next()).split(' ')[1]);
      known.tcp = Number((await p.next()).split(' ')[1]);
    })());
    const url = `http://127.0.0.1:${httpPort}${HTTP_PATH}`;
    loops.push(every(500, async () => {
      const secs = Math.max(1, Math.min(5, Math.floor((loadEnd - Date.now()) / 1000)));
      const r = await run('wrk', ['-t1', '-c2', `-d${secs}s`, '-s', path.join(HERE, 'wrk-pace.lua'), url]);
      const m = /(\d+) requests in/.exec(r.stdout);
      if (!m) throw new Error(`wrk: ${r.stdout}${r.stderr}`);
      known.wrk += Number(m[1]);
    }));
    loops.push(every(300, async () => {
      const r = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}\\n', ...Array(10).fill(url)]);
      known.curl += r.stdout.split('\n').filter((l) => l === '200').length;
    }));
    loops.push(every(200, async () => {
      const r = await run(PY, [path.join(HERE, 'grpc-peer.py'), 'client', GRPC_SERVICE, String(grpcPort), '40', '20', '0.01']);
      const m = /^ok (\d+)/m.exec(r.stdout);
      if (!m) throw new Error(`grpc client: ${r.stdout}${r.stderr}`);
      known.grpcClient += Number(m[1]);
    }));
    loops.push(every(150, async () => {
      const r = await run('dig', [`@${DNS_ADDR}`, dnsName, 'A', '+tries=1', '+time=2', '+short']);
      if (r.stdout.trim() === DNS_ANSWER) known.dig++;
    }));
    loops.push(every(2000, async () => {
      const r = await run(ddBin, ['if=/dev/zero', `of=${ddFile}`, 'bs=64k', 'count=4', 'oflag=direct', 'conv=notrunc', 'status=none']);
      if (r.code !== 0) throw new Error(`dd: ${r.stderr}`);
      known.ddWrites += 4;
    }));
    for (let i = 0; i < 2; i++) loops.push(run(PY, ['-c', BURNER, String(opts.loadMs / 1000)]).then(() => {}));

    // ---- faults: one cycle per up to 2 minutes of load, each fault in its own slot
    const faultLog: string[] = [];
    const faultLoop = (async () => {
      if (faults.size === 0) return;
      const cycle = Math.min(opts.loadMs, 120_000);
      for (let start = Date.now(); start + cycle <= loadEnd + 1000; start += cycle) {
        const slot = async (frac: number) => { const w = start + cycle * frac - Date.now(); if (w > 0) await sleep(w); };
        const note = (l: string) => { faultLog.push(`${at()} ${l}`); say(`fault: ${l}`); };
        await slot(0.1);
        if (faults.has('processor')) {
          note('SIGKILL processor');
          await processor.restart();
        }
        await slot(0.25);
        if (faults.has('exporter')) {
          note('SIGKILL exporter');
          await exporter.restart();
        }
        await slot(0.4);
        if (faults.has('broker')) {
          note('broker stop');
          let back = () => {};
          brokerBack = new Promise((r) => (back = r));
          await stopBroker({ stateDir: broker.stateDir });
          await sleep(3000);
          await startBroker({ stateDir: broker.stateDir, port: broker.port, controllerPort: broker.controllerPort });
          back();
          note('broker started again');
        }
        await slot(0.65);
        const pid = faults.has('backend') ? (await otelcolStatus({ stateDir: otelDir })).pid : null;
        if (pid) {
          note('SIGSTOP OpenTelemetry Collector');
          process.kill(pid, 'SIGSTOP');
          await sleep(Math.min(15_000, cycle * 0.15));
          process.kill(pid, 'SIGCONT');
          note('SIGCONT OpenTelemetry Collector');
        }
      }
    })();
    await Promise.all([...loops, faultLoop]);
    const served = { http: await countOf(httpSrv), grpc: await countOf(grpcSrv) };
    say(`load done: ${JSON.stringify({ ...known, ...served })}`);
    if (loopErrors.length) say(`load errors: ${loopErrors.join(' | ')}`);

    // ---- drain: wait for the known work at the OTLP end
    const classifyPoint = (p: PointInfo): string | undefined => {
      if (p.resource['host.name'] !== host && p.attrs['host.name'] !== host) return undefined;
      // the exporter's drop counter on the series it belongs to: ringflow.dropped{reason, signal=<metric>}
      if (p.metric === 'ringflow.dropped' && p.attrs.signal) {
        const { reason, signal, ...rest } = p.attrs;
        const ours = classifyPoint({ ...p, metric: signal, attrs: rest });
        if (ours && !ours.startsWith('counter ')) return `dropped ${reason ?? '?'} ${ours}`;
      }
      switch (p.metric) {
        case 'ringflow.tcp.connect.duration': return p.attrs['server.port'] === String(tcpPort) ? 'tcp.connect' : undefined;
        case 'ringflow.block.io.latency': return p.attrs['process.command'] === DD_COMM && p.attrs['disk.io.direction'] === 'write' ? 'dd.write' : undefined;
        case 'http.server.request.duration': return p.attrs['http.route'] === HTTP_PATH ? 'http.server' : undefined;
        case 'http.client.request.duration': return p.attrs['server.port'] === String(httpPort) ? 'http.client' : undefined;
        case 'rpc.server.call.duration': return String(p.attrs['rpc.method'] ?? '').startsWith(`${GRPC_SERVICE}/`) ? 'grpc.server' : undefined;
        case 'rpc.client.call.duration': return String(p.attrs['rpc.method'] ?? '').startsWith(`${GRPC_SERVICE}/`) ? 'grpc.client' : undefined;
        case 'dns.lookup.duration': return p.attrs['dns.question.name'] === dnsName ? 'dns.lookup' : undefined;
        // loss counters by name ('late' as a word: ringflow.sched.runqueue.latency is no counter)
        default: return /^ringflow\..*(dropped|drops|\blate(_events)?\b|lost|orphan|dead|incomplete|duplicate)/.test(p.metric) ? `counter ${p.metric}` : undefined;
      }
    };
    // A span whose response the capture missed (ringflow.response.missed) has no duration and is
    // left out of the RED metric; a timeout (no response within --span-timeout, e.g. a request wrk
    // sent just before its deadline and never read the answer of) is in it, as an error
    const spanSignal = (s: SpanInfo): string | undefined => {
      if (s.kind === 2 && s.attrs['url.path'] === HTTP_PATH) return 'http.server';
      if (s.kind === 3 && s.attrs['server.port'] === String(httpPort)) return 'http.client';
      if (s.attrs['rpc.service'] === GRPC_SERVICE) return s.kind === 2 ? 'grpc.server' : 'grpc.client';
      if (s.kind === 3 && s.attrs['dns.question.name'] === dnsName) return 'dns.lookup';
      return undefined;
    };
    const classifySpan = (s: SpanInfo): string | undefined => {
      const base = spanSignal(s);
      if (base === undefined) return undefined;
      if (s.attrs['ringflow.response.missed'] === 'true') return `${base} missed`;
      return s.attrs['error.type'] === 'timeout' ? `${base} timeout` : base;
    };
    const spansOf = (base: string) => ['', ' missed', ' timeout'].reduce((a, x) => a + tally.span(base + x).unique, 0);
    const tally = new OtlpTally(outputFile, classifyPoint, classifySpan);
    // wrk stops mid-request at its deadline: a request the server answered then is still a client span
    // (a timeout if wrk never read the answer), so the client's truth is what the server answered;
    // the L7 signals' metric truth is their spans less the missed ones (set after the drain)
    const expected: Record<string, number> = {
      'tcp.connect': known.tcp, 'dd.write': known.ddWrites, 'http.server': served.http, 'http.client': served.http,
      'grpc.server': served.grpc, 'grpc.client': known.grpcClient, 'dns.lookup': known.dig,
    };
    // arrived = points seen + events counted late on our series (ringflow.dropped{reason=late} at OTLP)
    const lateAt = (signal: string) => [...tally.metrics].filter(([k]) => k.startsWith('dropped late ') && k.endsWith(` ${signal}`)).reduce((a, [, t]) => a + t.unique, 0);
    const spanTruth: Record<string, number> = { 'http.server': served.http, 'http.client': served.http, 'grpc.server': served.grpc, 'grpc.client': known.grpcClient, 'dns.lookup': known.dig };
    const short = () => [
      ...Object.entries(expected).filter(([s, n]) => tally.metric(s).unique + lateAt(s) < n - tally.span(`${s} missed`).unique),
      ...Object.entries(spanTruth).filter(([s, n]) => spansOf(s) < n).map(([s, n]) => [`${s} spans`, n] as [string, number]),
    ];
    const drainEnd = Date.now() + drainMs;
    // stop early once nothing of ours arrived for this long: the rest is not coming
    const STALL_MS = 45_000;
    let progress = -1;
    let progressAt = Date.now();
    for (;;) {
      tally.update();
      const now = [...tally.metrics.values(), ...tally.spans.values()].reduce((a, t) => a + t.unique + t.duplicates, 0);
      if (now !== progress) { progress = now; progressAt = Date.now(); }
      if (short().length === 0 || Date.now() > drainEnd || Date.now() - progressAt > STALL_MS) break;
      await sleep(2000);
    }
    // what each stage said last: a stage alive but stuck shows here. A failure only with a
    // verdict below: a shortfall the collector's drops account for (kernel drops on a loaded
    // host) is a loss accounted, not a stall
    const drainNotes = short().length ? stages.map((st) => `drain ended short; ${st.name} said last:\n    ${st.lastLines(4).join('\n    ')}`) : [];
    say(short().length ? `drain ended short: ${short().map(([s, n]) => `${s} ${s.endsWith(' spans') ? spansOf(s.slice(0, -6)) : `${tally.metric(s).unique}+${lateAt(s)} late`}/${n}`).join(', ')}` : 'all known work arrived');
    await sleep(6000); // a late duplicate would show by now
    tally.update();
    // ---- the counters that could account for a shortfall: late events per series of ours
    // (ringflow.metrics.v1 carries them on the series they belong to), collector drops per topic
    const statsRecords = await readTopic(broker.brokers, 'ringflow.collector.stats.v1').catch(() => []);
    const stats = collectorStatsTotals(statsRecords);
    const parseFailures = new Map<string, number>();
    for (const r of statsRecords) {
      for (const f of (r.value.l7_parse_failures ?? []) as { reason: string; count: bigint | number }[]) parseFailures.set(f.reason, (parseFailures.get(f.reason) ?? 0) + Number(f.count));
    }
    const parseFailed = [...parseFailures.values()].reduce((a, b) => a + b, 0);
    const drops = (topic: string) => {
      const s = stats.get(topic);
      return s ? s.kernel + s.user : 0;
    };
    for (const sig of ['http.server', 'http.client', 'grpc.server', 'grpc.client', 'dns.lookup']) expected[sig] = expected[sig]! - tally.span(`${sig} missed`).unique;
    // every request counted here was answered (the server counted its response, the client read it),
    // so with no L7 record dropped a timeout span is wrong data: only wrk's unread last requests may time out
    if (drops('ringflow.l7.v1') === 0) {
      for (const sig of Object.keys(spanTruth)) {
        const allowed = sig === 'http.client' ? served.http - known.wrk - known.curl : 0;
        const n = tally.span(`${sig} timeout`).unique;
        if (n > allowed) failures.push(`${sig}: ${n} spans are timeouts (error.type=timeout) of answered requests (${allowed} allowed), with no L7 record dropped`);
      }
    }

    const late = new Map<string, number>();
    const lateOurs = new Map<string, number>();
    for (const r of await readTopic(broker.brokers, 'ringflow.metrics.v1').catch(() => [])) {
      const name = String(r.value.name);
      const n = Number(r.value.late_events);
      if (n === 0) continue;
      late.set(name, (late.get(name) ?? 0) + n);
      const attrs = Object.fromEntries((r.value.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value]));
      const signal = classifyPoint({ metric: name, resource: {}, attrs, count: n });
      if (signal) lateOurs.set(signal, (lateOurs.get(signal) ?? 0) + n);
    }
    const topicOf: Record<string, string> = { 'tcp.connect': 'ringflow.tcp.connect.v1', 'dd.write': 'ringflow.block.io.v1' };
    // spans have no lateness: every request the server answered is one server span and one client span
    // (a measured one, or a timeout when wrk stopped before reading its response)
    const expectedSpans = spanTruth;
    const judge = (exp: number, seen: number, conflicts: number, lateN: number, dropN: number): SignalResult['verdict'] => {
      if (conflicts > 0) return 'CONFLICT';
      if (seen + lateN > exp) return 'EXCESS';
      if (seen + lateN === exp) return lateN === 0 ? 'exact' : 'conserved';
      return dropN >= exp - seen - lateN ? 'loss accounted' : 'LOSS UNACCOUNTED';
    };
    const signals: SignalResult[] = [];
    for (const [signal, exp] of Object.entries(expected)) {
      const t = tally.metric(signal);
      const topic = topicOf[signal] ?? 'ringflow.l7.v1';
      const lateAtOtlp = lateAt(signal);
      if (lateAtOtlp !== (lateOurs.get(signal) ?? 0)) {
        failures.push(`${signal}: ${lateOurs.get(signal) ?? 0} events counted late in ringflow.metrics.v1, ${lateAtOtlp} at OTLP (ringflow.dropped{reason=late})`);
      }
      const counters = { late: lateOurs.get(signal) ?? 0, 'late at OTLP': lateAtOtlp, [`${topic} drops`]: drops(topic), ...(topic === 'ringflow.l7.v1' ? { 'l7 parse losses and recoveries': parseFailed } : {}) };
      signals.push({ signal, expected: exp, seen: t.unique, duplicates: t.duplicates, conflicts: t.conflicts, counters, verdict: judge(exp, t.unique, t.conflicts, counters.late, drops(topic)) });
    }
    for (const [signal, exp] of Object.entries(expectedSpans)) {
      const t = { ...tally.span(signal), unique: spansOf(signal) };
      t.duplicates += tally.span(`${signal} missed`).duplicates + tally.span(`${signal} timeout`).duplicates;
      const counters = { missed: tally.span(`${signal} missed`).unique, timeouts: tally.span(`${signal} timeout`).unique, 'ringflow.l7.v1 drops': drops('ringflow.l7.v1'), 'l7 parse losses and recoveries': parseFailed };
      signals.push({ signal: `${signal} spans`, expected: exp, seen: t.unique, duplicates: t.duplicates, conflicts: 0, counters, verdict: judge(exp, t.unique, 0, 0, drops('ringflow.l7.v1')) });
    }
    let badVerdicts = 0;
    for (const s of signals) {
      if (s.verdict === 'exact' || s.verdict === 'conserved' || s.verdict === 'loss accounted') continue;
      badVerdicts++;
      failures.push(`${s.signal}: ${s.verdict}: expected ${s.expected}, seen ${s.seen} at OTLP (${s.duplicates} duplicates, ${s.conflicts} conflicting); counters ${JSON.stringify(s.counters)}`);
    }
    if (badVerdicts > 0) failures.push(...drainNotes);
    if (tally.badLines) failures.push(`${tally.badLines} lines of the Collector's file did not parse`);
    if (known.tcp === 0 || served.http === 0 || served.grpc === 0 || known.dig === 0 || known.ddWrites === 0) {
      failures.push(`some load did not run: ${JSON.stringify({ ...known, ...served })}; errors: ${loopErrors.join(' | ')}`);
    }

    // ---- every stage stops cleanly, and none crashed
    for (const s of [collector, processor, exporter]) {
      s.retired = true;
      const code = await s.stop('SIGINT');
      if (code !== 0) failures.push(`${s.name} exited ${code} on SIGINT; see ${stageLog(s.name)}`);
    }
    for (const s of stages) failures.push(...s.crashes);

    // ---- the summary
    const pad = (v: string | number, n: number) => String(v).padStart(n);
    const lines = [
      `soak: ${(opts.loadMs / 1000).toFixed(0)} s of load${faults.size ? `, faults: ${faultLog.join('; ')}` : ', no faults'}`,
      `known work: ${JSON.stringify({ ...known, httpServed: served.http, grpcServed: served.grpc })}`,
      `${'signal (metric points; spans)'.padEnd(28)} ${pad('expected', 9)} ${pad('seen', 9)} ${pad('dups', 6)}  verdict; counters`,
      ...signals.map((s) => {
        const c = Object.entries(s.counters).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ');
        return `${s.signal.padEnd(28)} ${pad(s.expected, 9)} ${pad(s.seen, 9)} ${pad(s.duplicates, 6)}  ${s.verdict}${c ? `; ${c}` : ''}`;
      }),
      `collector stats (read/kernel drops/user drops): ${[...stats].map(([e, a]) => `${e.replace(/^ringflow\.|\.v1$/g, '')} ${a.read}/${a.kernel}/${a.user}`).join(', ')}`,
      `l7 parse failures (collector stats): ${[...parseFailures].map(([r, n]) => `${r} ${n}`).join(', ') || 'none'}`,
      `late events in ringflow.metrics.v1: ${[...late].filter(([, n]) => n > 0).map(([m, n]) => `${m} ${n}`).join(', ') || 'none'}`,
      `drop/late metrics at OTLP: ${[...tally.metrics].filter(([k]) => k.startsWith('counter ')).map(([k, t]) => `${k.slice(8)} ${t.unique}`).join(', ') || 'none'}`,
      `restarts by the soak: processor ${processor.restarts}, exporter ${exporter.restarts}; crashes: ${stages.map((s) => s.crashes.length).reduce((a, b) => a + b, 0)}`,
      failures.length ? `FAILED:\n  ${failures.join('\n  ')}` : 'PASSED',
    ];
    const summary = lines.join('\n');
    return { failures, signals, summary, workDir };
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort: the next cleanup still runs
      }
    }
    fs.rmSync(ioDir, { recursive: true, force: true });
    if (!opts.keep && failures.length === 0) fs.rmSync(workDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const flag = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const loadMs = Number(parseDurationNs('--duration', flag('--duration') ?? '5m') / 1_000_000n);
  if (process.getuid?.() !== 0) {
    console.error('soak: needs root (loads BPF programs); run with sudo');
    process.exit(2);
  }
  const only = flag('--faults');
  const faults = argv.includes('--no-faults') ? [] : only === undefined ? FAULTS : only.split(',').filter(Boolean) as Fault[];
  for (const f of faults) {
    if (!FAULTS.includes(f)) {
      console.error(`soak: --faults: unknown fault "${f}"; use a comma list of ${FAULTS.join(', ')}`);
      process.exit(2);
    }
  }
  const r = await runSoak({ loadMs, faults, keep: argv.includes('--keep') });
  console.log(r.summary);
  if (r.failures.length) console.log(`logs and the OTLP file: ${r.workDir}`);
  process.exit(r.failures.length ? 1 : 0);
}
