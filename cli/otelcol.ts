/**
 * Local OpenTelemetry Collector for integration tests and development.
 *
 *   ringflow otelcol start|stop|status|build [--grpc-port N] [--http-port N] [--state-dir DIR]
 *   node cli/otelcol.ts build           # pre-build the binary (set-up scripts)
 *
 * A minimal collector (OTLP gRPC + HTTP receiver; file and debug exporters;
 * batch processor and health_check extension compiled in) is built with Go
 * from scripts/otelcol (go.mod + go.sum pin every module to one release) into
 * ${RINGFLOW_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ringflow}/otelcol-<version>/otelcol-ringflow,
 * and rebuilt only when a file of scripts/otelcol changes (hash stamp).
 * It runs detached in its own process group; everything it receives is
 * appended as OTLP JSON lines to <state>/otlp.jsonl (flushed every 100 ms).
 * State (config, log, pid file, output) lives in ${RINGFLOW_STATE:-<repo>/.state}/otelcol.
 * See docs/otelcol.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT, FatalError } from '../common/errors.ts';
import { parseIntFlag } from '../common/options.ts';
import { REPO_ROOT } from '../collector/signals/registry.ts';
import { cacheRoot, stateDirFor, freePort, isAlive, isOwnProcess, killAndWait, portOpen, readPidFile, removePidFile, sleep, spawnDetached, stopDaemon, tail } from './daemon.ts';

export const DEFAULT_GRPC_PORT = 4317;
export const DEFAULT_HTTP_PORT = 4318;
/** Fallback when go.mod cannot be read; the real pin is go.opentelemetry.io/collector/otelcol in scripts/otelcol/go.mod. */
const FALLBACK_VERSION = '0.161.0';
/** The Collector's feature gate for the (alpha) OTLP profiles signal: receiver and pipelines (checked on v0.161.0). */
export const PROFILES_FEATURE_GATE = 'service.profilesSupport';
const BINARY_NAME = 'otelcol-ringflow';
/** Bump when the go build command line changes, so cached binaries are rebuilt. */
const BUILD_RECIPE = 'go build -trimpath -buildvcs=false -mod=readonly -ldflags=-s -w v1';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const FLUSH_INTERVAL = '100ms';

const SRC_DIR = path.join(REPO_ROOT, 'scripts', 'otelcol');

type Log = (msg: string) => void;

export interface OtelcolOptions {
  /** Defaults to ${RINGFLOW_STATE:-<repo>/.state}/otelcol. */
  stateDir?: string;
  /** OTLP gRPC port on 127.0.0.1; default: the last start's, else 4317. */
  grpcPort?: number;
  /** OTLP HTTP port on 127.0.0.1; default: the last start's, else 4318 when gRPC is on 4317, else a free port. */
  httpPort?: number;
  log?: Log;
}

export interface OtelcolStartResult {
  /** gRPC endpoint, 'localhost:PORT' (an OTLP gRPC exporter's url is `http://${endpoint}`). */
  endpoint: string;
  /** OTLP/HTTP base url, 'http://localhost:PORT' (POST /v1/metrics, /v1/traces, /v1/logs). */
  httpEndpoint: string;
  pid: number;
  /** JSON lines written by the file exporter (appended across restarts). */
  outputFile: string;
  stateDir: string;
  alreadyRunning: boolean;
}

export interface OtelcolStatus {
  running: boolean;
  pid: number | null;
  endpoint: string | null;
  httpEndpoint: string | null;
  outputFile: string;
  stateDir: string;
}

export interface OtelcolStopResult {
  /** True when a live collector was found and stopped. */
  stopped: boolean;
  pid: number | null;
  /** True when SIGTERM did not end it within 10 s and SIGKILL was sent. */
  killed: boolean;
}

// ---------------------------------------------------------------- locations

export { cacheRoot };

/** The collector release scripts/otelcol/go.mod pins (e.g. '0.161.0'). */
export function otelcolVersion(): string {
  try {
    const gomod = fs.readFileSync(path.join(SRC_DIR, 'go.mod'), 'utf8');
    const m = /^\s*go\.opentelemetry\.io\/collector\/otelcol\s+v(\S+)/m.exec(gomod);
    if (m) return m[1]!;
  } catch {
    /* fall through */
  }
  return FALLBACK_VERSION;
}

/** Where the built binary lives: <cache>/otelcol-<version>/otelcol-ringflow. */
export function binaryPath(): string {
  return path.join(cacheRoot(), `otelcol-${otelcolVersion()}`, BINARY_NAME);
}

export function defaultStateDir(): string {
  return stateDirFor('otelcol');
}

interface Paths {
  stateDir: string;
  config: string;
  pidFile: string;
  log: string;
  output: string;
}

function paths(stateDir: string | undefined): Paths {
  const dir = path.resolve(stateDir ?? defaultStateDir());
  return {
    stateDir: dir,
    config: path.join(dir, 'otelcol.yaml'),
    pidFile: path.join(dir, 'otelcol.pid'),
    log: path.join(dir, 'otelcol.log'),
    output: path.join(dir, 'otlp.jsonl'),
  };
}

// ---------------------------------------------------------------- build

/** Hash of every file in scripts/otelcol (names and contents) and of the build recipe. */
function sourceHash(): string {
  const h = createHash('sha256').update(BUILD_RECIPE).update('\0');
  const files = fs
    .readdirSync(SRC_DIR, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();
  for (const name of files) {
    h.update(name).update('\0').update(fs.readFileSync(path.join(SRC_DIR, name))).update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

function stampFile(bin: string): string {
  return `${bin}.stamp`;
}

/** True when the cached binary was built from the current scripts/otelcol. */
export function otelcolBuilt(): boolean {
  const bin = binaryPath();
  try {
    return fs.existsSync(bin) && fs.readFileSync(stampFile(bin), 'utf8').trim() === sourceHash();
  } catch {
    return false;
  }
}

function checkGo(): string {
  const go = process.env.GO ?? 'go';
  const r = spawnSync(go, ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'otelcol: Go not found (needed once to build the collector); install Go 1.26+ (https://go.dev/doc/install) and put it on PATH, or set GO=/path/to/go',
    );
  }
  return go;
}

/**
 * Build scripts/otelcol into binaryPath() with Go, unless the stamp shows the
 * cached binary matches the sources. Returns the binary's path.
 * A cold build (empty module and build caches) takes a few minutes.
 */
export async function ensureOtelcolBuilt(opts: { log?: Log; force?: boolean } = {}): Promise<string> {
  const bin = binaryPath();
  if (!opts.force && otelcolBuilt()) return bin;
  const go = checkGo();
  const dir = path.dirname(bin);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `${BINARY_NAME}.tmp-${process.pid}`);
  const buildLog = path.join(dir, 'build.log');
  const hash = sourceHash();
  opts.log?.(`otelcol: building OpenTelemetry Collector ${otelcolVersion()} from scripts/otelcol into ${bin} (once; a cold build takes ~2 min)`);
  const t0 = Date.now();
  const out = fs.openSync(buildLog, 'w');
  const env = {
    ...process.env,
    // -mod=readonly: go.mod and go.sum are the pin; never rewrite them during a build.
    GOFLAGS: `${process.env.GOFLAGS ?? ''} -mod=readonly`.trim(),
  };
  const code = await new Promise<number>((resolve) => {
    const child = spawn(go, ['build', '-trimpath', '-buildvcs=false', '-ldflags=-s -w', '-o', tmp, '.'], {
      cwd: SRC_DIR,
      env,
      stdio: ['ignore', out, out],
    });
    child.once('error', () => resolve(-1));
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : -1)));
  });
  fs.closeSync(out);
  if (code !== 0 || !fs.existsSync(tmp)) {
    fs.rmSync(tmp, { force: true });
    const why = tail(buildLog, 3).replace(/\n/g, ' | ');
    throw new Error(
      `otelcol: go build failed in ${SRC_DIR} (${why || `exit ${code}`}; log: ${buildLog}); check access to the Go module proxy (GOPROXY) and that go.mod/go.sum are tidy (cd scripts/otelcol && go mod tidy), then retry`,
    );
  }
  fs.renameSync(tmp, bin);
  fs.writeFileSync(stampFile(bin), `${hash}\n`);
  opts.log?.(`otelcol: built ${bin} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return bin;
}

// ---------------------------------------------------------------- processes

/** True when pid is a live otelcol-ringflow (guards against pid reuse). */
function isCollectorProcess(pid: number): boolean {
  return isOwnProcess(pid, (cmdline) => path.basename(cmdline[0] ?? '') === BINARY_NAME);
}

function checkPort(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`otelcol: invalid ${name} ${value}; use 1-65535`);
  return value;
}

/** Ports written into <state>/otelcol.yaml by the last start, if any. */
function configuredPorts(p: Paths): { grpcPort?: number; httpPort?: number } {
  try {
    // The config is written as JSON (a subset of YAML).
    const cfg = JSON.parse(fs.readFileSync(p.config, 'utf8')) as {
      receivers?: { otlp?: { protocols?: { grpc?: { endpoint?: string }; http?: { endpoint?: string } } } };
    };
    const port = (endpoint: string | undefined) => {
      const n = Number(/:(\d+)$/.exec(endpoint ?? '')?.[1]);
      return Number.isInteger(n) && n > 0 ? n : undefined;
    };
    const grpcPort = port(cfg.receivers?.otlp?.protocols?.grpc?.endpoint);
    const httpPort = port(cfg.receivers?.otlp?.protocols?.http?.endpoint);
    return { ...(grpcPort ? { grpcPort } : {}), ...(httpPort ? { httpPort } : {}) };
  } catch {
    return {};
  }
}

function renderConfig(p: Paths, grpcPort: number, httpPort: number): void {
  const pipeline = { receivers: ['otlp'], exporters: ['file', 'debug'] };
  const config = {
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: `127.0.0.1:${grpcPort}` },
          http: { endpoint: `127.0.0.1:${httpPort}` },
        },
      },
    },
    exporters: {
      // One file for every signal: each line is one export request as OTLP JSON
      // ({"resourceMetrics": [...]}, {"resourceSpans": [...]} or {"resourceLogs": [...]}).
      // append: a restart keeps what earlier runs wrote.
      file: { path: p.output, format: 'json', append: true, flush_interval: FLUSH_INTERVAL },
      debug: { verbosity: 'basic' },
    },
    service: {
      telemetry: {
        logs: { level: 'info', encoding: 'console' },
        // No internal metrics endpoint (it would take localhost:8888).
        metrics: { level: 'none' },
      },
      // profiles: the alpha signal, accepted only with the service.profilesSupport gate (start passes it)
      pipelines: { metrics: pipeline, traces: pipeline, logs: pipeline, profiles: pipeline },
    },
  };
  fs.writeFileSync(p.config, `${JSON.stringify(config, null, 2)}\n`);
}

async function waitReady(pid: number, grpcPort: number, httpPort: number, p: Paths, logOffset: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      let why = '';
      try {
        why = fs.readFileSync(p.log, 'utf8').slice(logOffset).trim().split('\n').slice(-5).join('\n');
      } catch {
        /* no log */
      }
      const hint = /address already in use/.test(why)
        ? `a port (${grpcPort} or ${httpPort}) is taken by another process; stop it or pass --grpc-port/--http-port`
        : `see ${p.log}`;
      throw new Error(`otelcol: collector (pid ${pid}) exited during start-up; ${hint}\n${why}`);
    }
    // Receivers start after the exporters, so an open OTLP port means the pipeline is up.
    if ((await portOpen(grpcPort, 500)) && (await portOpen(httpPort, 500))) return;
    await sleep(100);
  }
  throw new Error(`otelcol: collector (pid ${pid}) not listening on 127.0.0.1:${grpcPort} after ${timeoutMs / 1000} s; see ${p.log}`);
}

function result(p: Paths, grpcPort: number, httpPort: number, pid: number, alreadyRunning: boolean): OtelcolStartResult {
  return {
    endpoint: `localhost:${grpcPort}`,
    httpEndpoint: `http://localhost:${httpPort}`,
    pid,
    outputFile: p.output,
    stateDir: p.stateDir,
    alreadyRunning,
  };
}

// ---------------------------------------------------------------- API

export async function otelcolStatus(opts: { stateDir?: string } = {}): Promise<OtelcolStatus> {
  const p = paths(opts.stateDir);
  const pid = readPidFile(p.pidFile);
  if (pid === null || !isCollectorProcess(pid)) {
    return { running: false, pid: null, endpoint: null, httpEndpoint: null, outputFile: p.output, stateDir: p.stateDir };
  }
  const ports = configuredPorts(p);
  const grpcPort = ports.grpcPort ?? DEFAULT_GRPC_PORT;
  const httpPort = ports.httpPort ?? DEFAULT_HTTP_PORT;
  return {
    running: true,
    pid,
    endpoint: `localhost:${grpcPort}`,
    httpEndpoint: `http://localhost:${httpPort}`,
    outputFile: p.output,
    stateDir: p.stateDir,
  };
}

/**
 * Start the collector from `stateDir` (build it first if needed) and wait until
 * its OTLP ports accept connections. Idempotent: when a collector from the same
 * state dir is running, returns it (alreadyRunning). Without ports, a restart
 * reuses the previous start's ports.
 */
export async function startOtelcol(opts: OtelcolOptions = {}): Promise<OtelcolStartResult> {
  const log = opts.log ?? (() => {});
  const p = paths(opts.stateDir);
  const previous = configuredPorts(p);

  const existing = readPidFile(p.pidFile);
  if (existing !== null) {
    if (isCollectorProcess(existing)) {
      const grpcPort = previous.grpcPort ?? DEFAULT_GRPC_PORT;
      const httpPort = previous.httpPort ?? DEFAULT_HTTP_PORT;
      if ((opts.grpcPort !== undefined && opts.grpcPort !== grpcPort) || (opts.httpPort !== undefined && opts.httpPort !== httpPort)) {
        throw new Error(
          `otelcol: a collector from ${p.stateDir} is already running on gRPC ${grpcPort} / HTTP ${httpPort} (pid ${existing}); stop it first to change the ports`,
        );
      }
      await waitReady(existing, grpcPort, httpPort, p, 0, READY_TIMEOUT_MS);
      return result(p, grpcPort, httpPort, existing, true);
    }
    log(`otelcol: removing stale pid file ${p.pidFile} (pid ${existing} is gone)`);
    removePidFile(p.pidFile);
  }

  const grpcPort = checkPort('gRPC port', opts.grpcPort ?? previous.grpcPort ?? DEFAULT_GRPC_PORT);
  let httpPort: number;
  if (opts.httpPort !== undefined) httpPort = checkPort('HTTP port', opts.httpPort);
  else if (previous.httpPort !== undefined && previous.httpPort !== grpcPort) httpPort = previous.httpPort;
  else if (grpcPort === DEFAULT_GRPC_PORT) httpPort = DEFAULT_HTTP_PORT;
  else {
    // A custom gRPC port (tests): don't collide on 4318 with a developer's collector.
    do httpPort = await freePort();
    while (httpPort === grpcPort);
  }
  if (grpcPort === httpPort) throw new Error(`otelcol: gRPC and HTTP ports are both ${grpcPort}; pick two different ports`);
  for (const [name, value, flag] of [['gRPC port', grpcPort, '--grpc-port'], ['HTTP port', httpPort, '--http-port']] as const) {
    if (await portOpen(value, 500)) {
      throw new Error(`otelcol: ${name} 127.0.0.1:${value} is already in use by another process; stop it or pass ${flag}`);
    }
  }

  const bin = await ensureOtelcolBuilt({ log });

  fs.mkdirSync(p.stateDir, { recursive: true });
  renderConfig(p, grpcPort, httpPort);
  // OTLP profiles are alpha: the receiver takes them, and a profiles pipeline is valid, only behind this gate
  const { pid, logOffset } = spawnDetached(bin, ['--config', `file:${p.config}`, `--feature-gates=${PROFILES_FEATURE_GATE}`], {
    cwd: p.stateDir,
    logFile: p.log,
    pidFile: p.pidFile,
    banner: `\n--- ringflow: starting OpenTelemetry Collector ${otelcolVersion()} at ${new Date().toISOString()} ---\n`,
  });
  if (pid === undefined) {
    throw new Error(`otelcol: could not launch ${bin}; remove it to force a rebuild (${tail(p.log, 3)})`);
  }

  try {
    await waitReady(pid, grpcPort, httpPort, p, logOffset, READY_TIMEOUT_MS);
  } catch (err) {
    if (isAlive(pid)) await killAndWait(pid, 5_000, 50);
    removePidFile(p.pidFile);
    throw err;
  }
  return result(p, grpcPort, httpPort, pid, false);
}

/** SIGTERM (the file exporter flushes on shutdown), SIGKILL after 10 s. */
export async function stopOtelcol(opts: { stateDir?: string } = {}): Promise<OtelcolStopResult> {
  const p = paths(opts.stateDir);
  return stopDaemon(p.pidFile, isCollectorProcess, STOP_TIMEOUT_MS, 50);
}

// ---------------------------------------------------------------- output

export interface OtlpFile {
  /** Every ResourceMetrics of every line, in file order (OTLP JSON: 64-bit ints are strings, enums numbers). */
  metrics: any[];
  /** Every ResourceSpans. */
  traces: any[];
  /** Every ResourceLogs. */
  logs: any[];
  /** Every profiles request (OTLP JSON): its ResourceProfiles and the dictionary their indexes point into. */
  profiles: { resourceProfiles: any[]; dictionary: any }[];
}

/**
 * Parse the file exporter's JSON lines. A missing file reads as empty; a last
 * line still being written (no newline yet) is ignored.
 */
export function readOtlpFile(file: string): OtlpFile {
  const out: OtlpFile = { metrics: [], traces: [], logs: [], profiles: [] };
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  const lines = text.split('\n');
  lines.pop(); // after the last '\n': empty, or a partial line
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let doc: { resourceMetrics?: unknown[]; resourceSpans?: unknown[]; resourceLogs?: unknown[]; resourceProfiles?: unknown[]; dictionary?: unknown };
    try {
      doc = JSON.parse(line);
    } catch (err) {
      throw new Error(`otelcol: ${file}:${i + 1} is not JSON (${(err as Error).message})`);
    }
    if (doc.resourceMetrics) out.metrics.push(...doc.resourceMetrics);
    if (doc.resourceSpans) out.traces.push(...doc.resourceSpans);
    if (doc.resourceLogs) out.logs.push(...doc.resourceLogs);
    if (doc.resourceProfiles) out.profiles.push({ resourceProfiles: doc.resourceProfiles, dictionary: doc.dictionary ?? {} });
  }
  return out;
}

/** Poll readOtlpFile until `done` holds (returns that content) or time runs out (throws). */
export async function waitForOtlp(file: string, done: (data: OtlpFile) => boolean, timeoutMs = 10_000): Promise<OtlpFile> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const data = readOtlpFile(file);
    if (done(data)) return data;
    if (Date.now() >= deadline) {
      throw new Error(
        `otelcol: expected data not in ${file} after ${timeoutMs / 1000} s (${data.metrics.length} resourceMetrics, ${data.traces.length} resourceSpans, ${data.logs.length} resourceLogs)`,
      );
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------- CLI

const USAGE = `Usage: ringflow otelcol <command> [options]

Runs a local OpenTelemetry Collector (built from scripts/otelcol) that writes
everything it receives over OTLP to <state-dir>/otlp.jsonl.

commands:
  start     build if needed, start the collector (no-op when already running), wait until ready
  stop      stop the collector (SIGTERM, SIGKILL after 10 s)
  status    print whether the collector is running (exit 0 running, 3 stopped)
  build     build the collector binary into the cache (done by start too)

options:
  --grpc-port N    OTLP gRPC on 127.0.0.1 (default: last start's, else ${DEFAULT_GRPC_PORT})
  --http-port N    OTLP HTTP on 127.0.0.1 (default: last start's, else ${DEFAULT_HTTP_PORT})
  --state-dir DIR  config, log, pid file and otlp.jsonl (default \${RINGFLOW_STATE:-<repo>/.state}/otelcol)
  --force          with build: rebuild even when the cached binary is current
  -h, --help       show this help

binary: \${RINGFLOW_CACHE:-\${XDG_CACHE_HOME:-~/.cache}/ringflow}/otelcol-<version>/otelcol-ringflow
reset:  ringflow otelcol stop && rm -rf <state-dir>`;

export async function otelcolCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'grpc-port': { type: 'string' },
      'http-port': { type: 'string' },
      'state-dir': { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help || positionals.includes('help')) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new FatalError(`unexpected argument '${positionals[1]}'; see 'ringflow otelcol --help'`, { exitCode: EXIT.usage });
  if (v['state-dir'] === '') throw new FatalError(`--state-dir needs a value; see 'ringflow otelcol --help'`, { exitCode: EXIT.usage });
  const opts: OtelcolOptions = { log: (msg) => console.error(msg) };
  if (v['grpc-port'] !== undefined) opts.grpcPort = parseIntFlag('--grpc-port', v['grpc-port'], 1, 65535);
  if (v['http-port'] !== undefined) opts.httpPort = parseIntFlag('--http-port', v['http-port'], 1, 65535);
  if (v['state-dir'] !== undefined) opts.stateDir = path.resolve(v['state-dir']);
  const force = v.force ?? false;
  const command = positionals[0];

  try {
    switch (command) {
      case 'start': {
        const r = await startOtelcol(opts);
        console.log(
          `otelcol: ${r.alreadyRunning ? 'already running' : 'running'} at ${r.endpoint} (gRPC), ${r.httpEndpoint} (HTTP) (pid ${r.pid}, output ${r.outputFile})`,
        );
        return 0;
      }
      case 'stop': {
        const r = await stopOtelcol(opts);
        const stateDir = paths(opts.stateDir).stateDir;
        console.log(
          r.stopped
            ? `otelcol: stopped (pid ${r.pid}${r.killed ? ', killed after 10 s' : ''}, state ${stateDir})`
            : `otelcol: not running (state ${stateDir})`,
        );
        return 0;
      }
      case 'status': {
        const s = await otelcolStatus(opts);
        console.log(
          s.running
            ? `otelcol: running at ${s.endpoint} (gRPC), ${s.httpEndpoint} (HTTP) (pid ${s.pid}, output ${s.outputFile})`
            : `otelcol: stopped (state ${s.stateDir})`,
        );
        return s.running ? 0 : 3;
      }
      case 'build': {
        const bin = await ensureOtelcolBuilt({ ...(opts.log ? { log: opts.log } : {}), force });
        console.log(`otelcol: OpenTelemetry Collector ${otelcolVersion()} at ${bin}`);
        return 0;
      }
      case undefined:
        console.error(USAGE);
        return 2;
      default:
        console.error(`otelcol: unknown command '${command}'; see 'ringflow otelcol --help'`);
        return 2;
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 1;
  }
}

if (import.meta.main) {
  const { reportError } = await import('./main.ts');
  process.exitCode = await otelcolCommand(process.argv.slice(2)).catch(reportError);
}
