/**
 * Local Apache Kafka broker for development and integration tests.
 *
 *   ringflow kafka start|stop|status [--port N] [--controller-port N] [--state-dir DIR]
 *   node cli/kafka.ts resolve          # pre-resolve the broker jars (set-up scripts)
 *
 * The broker is a single KRaft node (combined broker+controller) run straight
 * from Maven Central jars: scripts/kafka/pom.xml resolves the runtime classpath
 * once into ${RINGFLOW_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ringflow}/kafka-<version>/libs,
 * and `java -cp '<libs>/*' kafka.Kafka <state>/server.properties` runs detached
 * in its own process group. State (data, logs, pid file) lives in
 * ${RINGFLOW_STATE:-<repo>/.state}/kafka. See docs/kafka.md.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from '../kafka/kafkajs.ts';
import { EXIT, FatalError } from '../common/errors.ts';
import { parseIntFlag } from '../common/options.ts';
import { REPO_ROOT } from '../collector/signals/registry.ts';
import { cacheRoot, stateDirFor, isAlive, isOwnProcess, killAndWait, portOpen, readPidFile, removePidFile, sleep, spawnDetached, stopDaemon, tail } from './daemon.ts';

/** Pinned broker release; keep in sync with <kafka.version> in scripts/kafka/pom.xml. */
export const KAFKA_VERSION = '3.9.2';
export const DEFAULT_PORT = 9092;
export const DEFAULT_CONTROLLER_PORT = 9093;

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const HEAP_OPTS = ['-Xmx512m', '-Xms256m'];

const KAFKA_SCRIPTS = path.join(REPO_ROOT, 'scripts', 'kafka');
const POM = path.join(KAFKA_SCRIPTS, 'pom.xml');

export interface BrokerOptions {
  /** Defaults to ${RINGFLOW_STATE:-<repo>/.state}/kafka. */
  stateDir?: string;
  /** PLAINTEXT listener port on 127.0.0.1; default 9092 (or the port of the running broker / last start). */
  port?: number;
  /** CONTROLLER listener port on 127.0.0.1; default 9093 (or the last start's). */
  controllerPort?: number;
  log?: (msg: string) => void;
}

export interface StartResult {
  brokers: string;
  pid: number;
  alreadyRunning: boolean;
}

export interface BrokerStatus {
  running: boolean;
  pid: number | null;
  brokers: string | null;
}

export interface StopResult {
  /** True when a live broker was found and stopped. */
  stopped: boolean;
  pid: number | null;
  /** True when SIGTERM did not end it within 30 s and SIGKILL was sent. */
  killed: boolean;
}

// ---------------------------------------------------------------- locations

export { cacheRoot };

/** Directory holding the broker's jars (the classpath is '<libsDir>/*'). */
export function libsDir(): string {
  return path.join(cacheRoot(), `kafka-${KAFKA_VERSION}`, 'libs');
}

export function defaultStateDir(): string {
  return stateDirFor('kafka');
}

interface Paths {
  stateDir: string;
  dataDir: string;
  logsDir: string;
  config: string;
  pidFile: string;
  stdoutLog: string;
}

function paths(stateDir: string | undefined): Paths {
  const dir = path.resolve(stateDir ?? defaultStateDir());
  return {
    stateDir: dir,
    dataDir: path.join(dir, 'data'),
    logsDir: path.join(dir, 'logs'),
    config: path.join(dir, 'server.properties'),
    pidFile: path.join(dir, 'kafka.pid'),
    stdoutLog: path.join(dir, 'kafka.log'),
  };
}

// ---------------------------------------------------------------- tools

function javaBin(): string {
  const home = process.env.JAVA_HOME;
  if (home) {
    const candidate = path.join(home, 'bin', 'java');
    if (fs.existsSync(candidate)) return candidate;
  }
  return 'java';
}

function checkJava(): string {
  const java = javaBin();
  const r = spawnSync(java, ['-version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'kafka: Java not found (needed to run the broker); install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME',
    );
  }
  const m = /version "(\d+)(?:\.(\d+))?/.exec(r.stderr);
  const major = m ? (m[1] === '1' ? Number(m[2]) : Number(m[1])) : 0;
  if (major && major < 11) {
    throw new Error(`kafka: Java ${major} is too old for Kafka ${KAFKA_VERSION}; install a JDK 17+ or point JAVA_HOME at one`);
  }
  return java;
}

function checkMaven(): string {
  const r = spawnSync('mvn', ['-v'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error('kafka: Maven (mvn) not found (needed once to fetch the broker jars); install it (apt-get install maven) and retry');
  }
  return 'mvn';
}

function pomHash(): string {
  return createHash('sha256').update(fs.readFileSync(POM)).digest('hex').slice(0, 16);
}

function stampFile(): string {
  return path.join(libsDir(), '.resolved');
}

/** True when the cached jars match the current pom.xml. */
export function jarsResolved(): boolean {
  try {
    return fs.readFileSync(stampFile(), 'utf8').trim() === `${KAFKA_VERSION} ${pomHash()}`;
  } catch {
    return false;
  }
}

/**
 * Resolve the broker's runtime classpath into libsDir() with Maven, unless a
 * stamp file shows it is already there for this pom.xml. Returns the libs dir.
 */
export function ensureJarsResolved(opts: { log?: (msg: string) => void; force?: boolean } = {}): string {
  const libs = libsDir();
  if (!opts.force && jarsResolved()) return libs;
  checkJava();
  const mvn = checkMaven();
  const versionDir = path.dirname(libs);
  fs.mkdirSync(versionDir, { recursive: true });
  const tmp = path.join(versionDir, `libs.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  const mvnLog = path.join(versionDir, 'resolve.log');
  opts.log?.(`kafka: resolving Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs} (once)`);
  const t0 = Date.now();
  const r = spawnSync(
    mvn,
    ['-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${tmp}`],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  fs.writeFileSync(mvnLog, `${r.stdout ?? ''}${r.stderr ?? ''}`);
  const jars = fs.existsSync(tmp) ? fs.readdirSync(tmp).filter((f) => f.endsWith('.jar')) : [];
  if (r.error || r.status !== 0 || !jars.some((f) => f.startsWith(`kafka_2.13-${KAFKA_VERSION}`))) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(
      `kafka: Maven could not resolve the Kafka ${KAFKA_VERSION} jars (log: ${mvnLog}); check access to Maven Central (~/.m2/settings.xml proxy/mirror) and retry`,
    );
  }
  fs.writeFileSync(path.join(tmp, '.resolved'), `${KAFKA_VERSION} ${pomHash()}\n`);
  fs.rmSync(libs, { recursive: true, force: true });
  try {
    fs.renameSync(tmp, libs);
  } catch (err) {
    // A concurrent resolve won the race; its result is equivalent.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!jarsResolved()) throw err;
  }
  opts.log?.(`kafka: resolved ${jars.length} jars in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return libs;
}

// ---------------------------------------------------------------- processes

/** True when pid is a live JVM running kafka.Kafka (guards against pid reuse). */
function isBrokerProcess(pid: number): boolean {
  return isOwnProcess(pid, (cmdline) => cmdline.includes('kafka.Kafka'));
}

/** Ports recorded in <state>/server.properties by the last start, if any. */
function configuredPorts(p: Paths): { port?: number; controllerPort?: number } {
  try {
    const text = fs.readFileSync(p.config, 'utf8');
    const listeners = /^listeners=(.*)$/m.exec(text)?.[1] ?? '';
    const port = /PLAINTEXT:\/\/[^:,]+:(\d+)/.exec(listeners)?.[1];
    const controllerPort = /CONTROLLER:\/\/[^:,]+:(\d+)/.exec(listeners)?.[1];
    return {
      ...(port ? { port: Number(port) } : {}),
      ...(controllerPort ? { controllerPort: Number(controllerPort) } : {}),
    };
  } catch {
    return {};
  }
}

function checkPort(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`kafka: invalid ${name} ${value}; use 1-65535`);
  return value;
}

/** kafkajs admin connect + describeCluster; true when the broker answers. */
async function brokerAnswers(brokers: string, timeoutMs = 3000): Promise<boolean> {
  const kafka = new Kafka({
    clientId: 'ringflow-kafka-probe',
    brokers: [brokers],
    logLevel: logLevel.NOTHING,
    connectionTimeout: Math.min(timeoutMs, 1000),
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    if (!(cluster.brokers.length > 0 && cluster.controller !== null && cluster.controller >= 0)) return false;
    // A broker restarted on its old state dir answers before every partition
    // it holds is back online (its logs load after it registers): "ready" also
    // means every partition has a leader, so a producer or an offsets read
    // right after start finds the data (kafka-broker test, restart case).
    const { topics } = await admin.fetchTopicMetadata();
    return topics.every((t) => t.partitions.every((p) => p.partitionErrorCode === 0 && p.leader >= 0));
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

function clusterId(): string {
  // Kafka Uuid string form: 16 random bytes, URL-safe base64 without padding.
  // Avoid a leading '-', which a command line would read as an option.
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function renderConfig(p: Paths, port: number, controllerPort: number): void {
  const template = fs.readFileSync(path.join(KAFKA_SCRIPTS, 'server.properties.template'), 'utf8');
  const values: Record<string, string> = {
    PORT: String(port),
    CONTROLLER_PORT: String(controllerPort),
    LOG_DIRS: p.dataDir,
  };
  const text = template.replace(/@@([A-Z_]+)@@/g, (whole, name: string) => values[name] ?? whole);
  fs.writeFileSync(p.config, text);
}

function formatStorage(java: string, libs: string, p: Paths): void {
  if (fs.existsSync(path.join(p.dataDir, 'meta.properties'))) return;
  const id = clusterId();
  const r = spawnSync(
    java,
    [...HEAP_OPTS, '-cp', path.join(libs, '*'), ...log4jOpts(p), 'kafka.tools.StorageTool', 'format', '-t', id, '-c', p.config, '--ignore-formatted'],
    { encoding: 'utf8', cwd: p.stateDir },
  );
  if (r.error || r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ');
    throw new Error(`kafka: formatting storage in ${p.dataDir} failed (${out || r.error?.message}); remove ${p.stateDir} to reset`);
  }
}

function log4jOpts(p: Paths): string[] {
  return [`-Dlog4j.configuration=file:${path.join(KAFKA_SCRIPTS, 'log4j.properties')}`, `-Dkafka.logs.dir=${p.logsDir}`];
}

// ---------------------------------------------------------------- API

export async function brokerStatus(opts: BrokerOptions = {}): Promise<BrokerStatus> {
  const p = paths(opts.stateDir);
  const pid = readPidFile(p.pidFile);
  if (pid === null || !isBrokerProcess(pid)) return { running: false, pid: null, brokers: null };
  const port = configuredPorts(p).port ?? opts.port ?? DEFAULT_PORT;
  return { running: true, pid, brokers: `127.0.0.1:${port}` };
}

export async function startBroker(opts: BrokerOptions = {}): Promise<StartResult> {
  const log = opts.log ?? (() => {});
  const p = paths(opts.stateDir);
  const previous = configuredPorts(p);

  // Already running from this state dir?
  const existing = readPidFile(p.pidFile);
  if (existing !== null) {
    if (isBrokerProcess(existing)) {
      const runningPort = previous.port ?? DEFAULT_PORT;
      if (opts.port !== undefined && opts.port !== runningPort) {
        throw new Error(
          `kafka: a broker from ${p.stateDir} is already running on port ${runningPort} (pid ${existing}); stop it first to change the port`,
        );
      }
      const brokers = `127.0.0.1:${runningPort}`;
      await waitReady(brokers, existing, p, READY_TIMEOUT_MS);
      return { brokers, pid: existing, alreadyRunning: true };
    }
    log(`kafka: removing stale pid file ${p.pidFile} (pid ${existing} is gone)`);
    removePidFile(p.pidFile);
  }

  const port = checkPort('port', opts.port ?? previous.port ?? DEFAULT_PORT);
  const controllerPort = checkPort('controller port', opts.controllerPort ?? previous.controllerPort ?? DEFAULT_CONTROLLER_PORT);
  if (port === controllerPort) throw new Error(`kafka: port and controller port are both ${port}; pick two different ports`);
  for (const [name, value] of [['port', port], ['controller port', controllerPort]] as const) {
    if (await portOpen(value, 500)) {
      throw new Error(`kafka: ${name} 127.0.0.1:${value} is already in use by another process; stop it or pass --port/--controller-port`);
    }
  }

  const java = checkJava();
  const libs = ensureJarsResolved({ log });

  fs.mkdirSync(p.dataDir, { recursive: true });
  fs.mkdirSync(p.logsDir, { recursive: true });
  renderConfig(p, port, controllerPort);
  formatStorage(java, libs, p);

  const { pid } = spawnDetached(
    java,
    [
      ...HEAP_OPTS,
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-XX:InitiatingHeapOccupancyPercent=35',
      '-XX:+ExplicitGCInvokesConcurrent',
      '-Djava.awt.headless=true',
      ...log4jOpts(p),
      '-cp',
      path.join(libs, '*'),
      'kafka.Kafka',
      p.config,
    ],
    {
      cwd: p.stateDir,
      logFile: p.stdoutLog,
      pidFile: p.pidFile,
      banner: `\n--- ringflow: starting Kafka ${KAFKA_VERSION} at ${new Date().toISOString()} ---\n`,
    },
  );
  if (pid === undefined) {
    throw new Error(`kafka: could not launch ${java} (${tail(p.stdoutLog, 3)})`);
  }

  const brokers = `127.0.0.1:${port}`;
  try {
    await waitReady(brokers, pid, p, READY_TIMEOUT_MS);
  } catch (err) {
    if (isAlive(pid)) await killAndWait(pid, 5_000);
    removePidFile(p.pidFile);
    throw err;
  }
  return { brokers, pid, alreadyRunning: false };
}

async function waitReady(brokers: string, pid: number, p: Paths, timeoutMs: number): Promise<void> {
  const port = Number(brokers.split(':')[1]);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) {
      const why = tail(p.stdoutLog, 5) || tail(path.join(p.logsDir, 'server.log'), 5);
      throw new Error(`kafka: broker (pid ${pid}) exited during start-up; see ${p.stdoutLog} and ${p.logsDir}/server.log\n${why}`);
    }
    if ((await portOpen(port, 500)) && (await brokerAnswers(brokers))) return;
    await sleep(250);
  }
  throw new Error(`kafka: broker (pid ${pid}) not ready at ${brokers} after ${timeoutMs / 1000} s; see ${p.logsDir}/server.log`);
}

export async function stopBroker(opts: BrokerOptions = {}): Promise<StopResult> {
  const p = paths(opts.stateDir);
  return stopDaemon(p.pidFile, isBrokerProcess, STOP_TIMEOUT_MS);
}

// ---------------------------------------------------------------- CLI

const USAGE = `Usage: ringflow kafka <command> [options]

Runs a local single-node Apache Kafka ${KAFKA_VERSION} broker (KRaft) for development.

commands:
  start     start the broker (no-op when already running) and wait until ready
  stop      stop the broker (SIGTERM, SIGKILL after 30 s)
  status    print whether the broker is running (exit 0 running, 3 stopped)
  resolve   fetch the broker jars with Maven into the cache (done by start too)

options:
  --port N             PLAINTEXT listener on 127.0.0.1 (default ${DEFAULT_PORT})
  --controller-port N  KRaft controller listener on 127.0.0.1 (default ${DEFAULT_CONTROLLER_PORT})
  --state-dir DIR      data, logs and pid file (default \${RINGFLOW_STATE:-<repo>/.state}/kafka)
  -h, --help           show this help

jars: \${RINGFLOW_CACHE:-\${XDG_CACHE_HOME:-~/.cache}/ringflow}/kafka-${KAFKA_VERSION}/libs
reset: ringflow kafka stop && rm -rf <state-dir>`;

export async function kafkaCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      'controller-port': { type: 'string' },
      'state-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help || positionals.includes('help')) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new FatalError(`unexpected argument '${positionals[1]}'; see 'ringflow kafka --help'`, { exitCode: EXIT.usage });
  if (v['state-dir'] === '') throw new FatalError(`--state-dir needs a value; see 'ringflow kafka --help'`, { exitCode: EXIT.usage });
  const opts: BrokerOptions = { log: (msg) => console.error(msg) };
  if (v.port !== undefined) opts.port = parseIntFlag('--port', v.port, 1, 65535);
  if (v['controller-port'] !== undefined) opts.controllerPort = parseIntFlag('--controller-port', v['controller-port'], 1, 65535);
  if (v['state-dir'] !== undefined) opts.stateDir = path.resolve(v['state-dir']);
  const command = positionals[0];

  const stateDir = paths(opts.stateDir).stateDir;
  try {
    switch (command) {
      case 'start': {
        const r = await startBroker(opts);
        console.log(`kafka: ${r.alreadyRunning ? 'already running' : 'running'} at ${r.brokers} (pid ${r.pid}, state ${stateDir})`);
        return 0;
      }
      case 'stop': {
        const r = await stopBroker(opts);
        console.log(
          r.stopped
            ? `kafka: stopped (pid ${r.pid}${r.killed ? ', killed after 30 s' : ''}, state ${stateDir})`
            : `kafka: not running (state ${stateDir})`,
        );
        return 0;
      }
      case 'status': {
        const s = await brokerStatus(opts);
        console.log(s.running ? `kafka: running at ${s.brokers} (pid ${s.pid}, state ${stateDir})` : `kafka: stopped (state ${stateDir})`);
        return s.running ? 0 : 3;
      }
      case 'resolve': {
        const libs = ensureJarsResolved(opts);
        console.log(`kafka: Kafka ${KAFKA_VERSION} jars in ${libs}`);
        return 0;
      }
      case undefined:
        console.error(USAGE);
        return 2;
      default:
        console.error(`kafka: unknown command '${command}'; see 'ringflow kafka --help'`);
        return 2;
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  // kafkajs 2.2.4 passes a negative delay to setTimeout in its request queue
  // (harmless, clamped to 1 ms); Node >= 23 prints a TimeoutNegativeWarning for it.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.name !== 'TimeoutNegativeWarning') console.error(`${w.name}: ${w.message}`);
  });
  const { reportError } = await import('./main.ts');
  process.exitCode = await kafkaCommand(process.argv.slice(2)).catch(reportError);
}
