/**
 * `ringflow up`: the whole pipeline on one machine. Starts the local Kafka
 * broker (unless --brokers is given), then the collector, the processor and
 * the exporter as child processes (each also runs alone for multi-host
 * deployments), and prints a summary of every closed window. Ctrl-C stops
 * everything, the broker it started included (its data stays).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { FatalError, EXIT } from '../common/errors.ts';
import { REPO_ROOT } from '../collector/signals/registry.ts';
import { createKafkaClient, connectAdmin, ensureTopics } from '../kafka/client.ts';
import { decodeRecord } from '../schemas/index.ts';
import { parseCollectArgs, COLLECT_HELP } from './collect.ts';
import { DAY_MS, parseLatenessMs, parseWindowMs } from './process.ts';
import { parseDurationMs, parseIntFlag } from '../common/options.ts';
import { summarizeWindow, CollectorLosses, type CollectorLossInput, type SummaryPoint } from './summary.ts';
import { METRICS_TOPIC, STATS_TOPIC } from '../processor/topics.ts';
import { ALERTS_TOPIC } from '../processor/alerts-stage.ts';
import { DEFAULT_SIGNALS as EXPORT_DEFAULT_SIGNALS } from '../exporter/command.ts';

interface AlertLine {
  rule: string;
  state: string;
  group: { key: string; value: string }[];
  stat: string;
  metric: string;
  value: number;
  threshold: number;
  window_end_ns: bigint;
}

/** One alert transition as a line of the live summary. */
export function alertLine(a: AlertLine): string {
  const group = a.group.length ? ` {${a.group.map((g) => `${g.key}=${g.value}`).join(', ')}}` : '';
  const at = new Date(Number(a.window_end_ns / 1_000_000n)).toISOString().slice(11, 19);
  return `ALERT ${a.state} ${a.rule}${group}: ${a.stat}(${a.metric}) = ${a.value} (threshold ${a.threshold}) at ${at}`;
}

const UP_HELP = `Usage: ringflow up [collect options] [--window DUR] [--lateness DUR] [--max-clock-skew DUR]

Runs the whole pipeline on this machine: the local Apache Kafka broker (unless
--brokers is given), then the collector, the processor and the exporter, and
prints a summary of each closed window (worst p99 run-queue, disk and connect
latencies; with --signals fs the slowest file syscalls by path prefix). OTLP goes to OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317);
when nothing listens there the exporter says so once and the points wait in
Kafka. Ctrl-C stops everything, including the broker it started (its data
stays). Each stage also runs alone: ringflow collect | process | export.
With --signals profile or offcpu the exporter also sends OTLP profiles.

  --window DUR     processor window size (default 10s)
  --lateness DUR   processor allowed lateness (default 5s)
  --max-clock-skew DUR
                   events dated further ahead of this machine's clock are
                   dead-lettered by the processor (reason clock_skew; default 60s)
  --fs-metric-depth N
                   directory components of the fs metrics' path prefix (default 3)
  --rules FILE     alert rules (YAML, docs/alerts.md): the processor writes
                   FIRING/RESOLVED records to ringflow.alerts.v1 and each
                   transition is printed here as it happens

Collect options:
${COLLECT_HELP.split('\n').slice(COLLECT_HELP.split('\n').findIndex((l) => l.startsWith('Options:')) + 1).join('\n')}`;

/**
 * A window's points come from several partitions, each closing it on its own
 * watermark: print a window once no point of it arrived for this long.
 */
const SUMMARY_DELAY_MS = 4000;

/** Splits up's own flags from the collector's. */
export function splitUpArgs(argv: string[]): { window: string; lateness: string; rules?: string; maxClockSkew?: string; fsMetricDepth?: string; collect: string[] } {
  const collect: string[] = [];
  let window = '10s';
  let lateness = '5s';
  let rules: string | undefined;
  // absent unless given: the processor's own default (60s) then applies, stated in one place
  let maxClockSkew: string | undefined;
  let fsMetricDepth: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    if (flag === '--rules') {
      rules = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (rules === undefined) throw new FatalError('--rules: missing value', { exitCode: EXIT.usage });
    } else if (flag === '--max-clock-skew') {
      const val = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (val === undefined) throw new FatalError('--max-clock-skew: missing value', { exitCode: EXIT.usage });
      // the same bounds as process's flag, checked before anything starts
      parseDurationMs('--max-clock-skew', val, 0, DAY_MS);
      maxClockSkew = val;
    } else if (flag === '--fs-metric-depth') {
      const val = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (val === undefined) throw new FatalError('--fs-metric-depth: missing value', { exitCode: EXIT.usage });
      parseIntFlag('--fs-metric-depth', val, 1, 32); // process's bounds, before anything starts
      fsMetricDepth = val;
    } else if (flag === '--window' || flag === '--lateness') {
      const val = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (val === undefined) throw new FatalError(`${flag}: missing value`, { exitCode: EXIT.usage });
      // checked here, before the broker and three children start, with process's own bounds
      if (flag === '--window') {
        parseWindowMs(val);
        window = val;
      } else {
        parseLatenessMs(val);
        lateness = val;
      }
    } else collect.push(a);
  }
  return { window, lateness, ...(rules === undefined ? {} : { rules }), ...(maxClockSkew === undefined ? {} : { maxClockSkew }), ...(fsMetricDepth === undefined ? {} : { fsMetricDepth }), collect };
}

/** The processor child's command line from up's own flags. */
export function processorArgs(brokers: string, f: { window: string; lateness: string; rules?: string | undefined; maxClockSkew?: string | undefined; fsMetricDepth?: string | undefined }): string[] {
  return ['process', '--brokers', brokers, '--window', f.window, '--lateness', f.lateness,
    ...(f.rules ? ['--rules', f.rules] : []), ...(f.maxClockSkew ? ['--max-clock-skew', f.maxClockSkew] : []), ...(f.fsMetricDepth ? ['--fs-metric-depth', f.fsMetricDepth] : [])];
}

/**
 * The exporter child's command line. Profiles are opt-in for `ringflow export`
 * (the OTLP signal is alpha), but when this collector makes stacks (profile,
 * offcpu) the user asked for profiles: export them too, else the processor's
 * ringflow.profiles.v1 would fill up unread.
 */
export function exporterArgs(brokers: string, collectSignals: readonly string[]): string[] {
  const profiles = collectSignals.includes('profile') || collectSignals.includes('offcpu');
  return ['export', '--brokers', brokers, ...(profiles ? ['--signals', [...EXPORT_DEFAULT_SIGNALS, 'profiles'].join(',')] : [])];
}

function child(name: string, args: string[]): ChildProcess {
  const c = spawn(path.join(REPO_ROOT, 'bin', 'ringflow'), args, { stdio: ['ignore', 'inherit', 'pipe'], detached: false });
  let buf = '';
  c.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) process.stderr.write(`[${name}] ${line.replace(/^ringflow: /, '')}\n`);
    }
  });
  return c;
}

export async function upCommand(argv: string[]): Promise<number> {
  const { window, lateness, rules, maxClockSkew, fsMetricDepth, collect } = splitUpArgs(argv);
  const cfg = parseCollectArgs(collect); // validates the collector's flags before anything starts
  if (cfg.help) {
    console.log(UP_HELP);
    return 0;
  }
  if (cfg.stdout) throw new FatalError('up: --stdout makes no sense here; use ringflow collect --stdout', { exitCode: EXIT.usage });
  let stopBroker: (() => Promise<unknown>) | undefined;
  let brokers = cfg.brokers;
  if (!cfg.brokersGiven) {
    const k = await import('./kafka.ts');
    const b = await k.startBroker({ log: (m: string) => console.error(`ringflow: ${m}`) });
    brokers = [b.brokers];
    console.error(`ringflow: Kafka ${b.alreadyRunning ? 'already running' : 'started'} at ${b.brokers}`);
    if (!b.alreadyRunning) stopBroker = () => k.stopBroker();
  }
  const b = brokers.join(',');
  const kafka = createKafkaClient(brokers, 'ringflow-up');
  const admin = await connectAdmin(kafka, brokers);
  // the summary reads the collectors' stats too: the topic must exist before the collector has made it
  await ensureTopics(admin, rules ? [METRICS_TOPIC, ALERTS_TOPIC, STATS_TOPIC] : [METRICS_TOPIC, STATS_TOPIC], 6);
  await admin.disconnect();

  // the processor and the exporter first: the collector leaves their traffic out
  // (bin/ringflow execs node, so these pids are theirs), else with --signals l7 the
  // exporter's own OTLP calls would come back as spans
  const processor = child('process', processorArgs(b, { window, lateness, rules, maxClockSkew, fsMetricDepth }));
  const exporter = child('export', exporterArgs(b, cfg.signals));
  const own = [processor.pid, exporter.pid].filter((p): p is number => p !== undefined).join(',');
  const children = new Map<string, ChildProcess>([
    ['collect', child('collect', ['collect', '--brokers', b, '--quiet', ...(own ? ['--exclude-pid', own] : []), ...collect.filter((a, i) => !(a === '--brokers' || collect[i - 1] === '--brokers' || a.startsWith('--brokers=')))])],
    ['process', processor],
    ['export', exporter],
  ]);

  // the live summary: read the committed points and print each window once it has gone quiet
  const consumer = kafka.consumer({ groupId: `ringflow-up-${process.pid}-${Date.now()}`, readUncommitted: false });
  await consumer.connect();
  // the collector's stats too: it runs --quiet, so its losses reach the summary through them
  await consumer.subscribe({ topics: rules ? [METRICS_TOPIC, ALERTS_TOPIC, STATS_TOPIC] : [METRICS_TOPIC, STATS_TOPIC], fromBeginning: false });
  const windows = new Map<bigint, { points: SummaryPoint[]; timer: NodeJS.Timeout }>();
  const losses = new CollectorLosses();
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (topic === STATS_TOPIC) {
        try {
          losses.add(decodeRecord(message.value!).value as unknown as CollectorLossInput);
        } catch {
          // the processor dead-letters a stats record it cannot read; the summary just skips it
        }
        return;
      }
      if (topic === ALERTS_TOPIC) {
        try {
          console.log(alertLine(decodeRecord(message.value!).value as unknown as AlertLine));
        } catch {
          // counted by the stage that wrote it; the summary just skips it
        }
        return;
      }
      try {
        const p = decodeRecord(message.value!).value as unknown as SummaryPoint;
        let w = windows.get(p.window_start_ns);
        if (!w) {
          const key = p.window_start_ns;
          w = { points: [], timer: setTimeout(() => {
            const done = windows.get(key);
            windows.delete(key);
            // '' for a window of coverage points only, all fully watched (they settle after the window's points)
            const line = done ? summarizeWindow(done.points) + losses.take() : '';
            if (line) console.log(line);
          }, SUMMARY_DELAY_MS) };
          windows.set(key, w);
        }
        w.points.push(p);
      } catch {
        // the exporter and the processor count bad records; the summary just skips them
      }
    },
  });

  let failed: string | undefined;
  let stopping = false;
  const exited = new Promise<void>((resolve) => {
    for (const [name, c] of children) {
      c.on('exit', (code, signal) => {
        children.delete(name);
        if (!stopping) {
          failed = `${name} exited (${signal ?? `code ${code}`})`;
          resolve();
        }
        if (children.size === 0) resolve();
      });
    }
  });
  const stopSignal = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  console.error(`ringflow: up: collecting, processing (${window} windows) and exporting over ${b}; Ctrl-C to stop`);
  await Promise.race([stopSignal, exited]);
  stopping = true;
  for (const c of children.values()) c.kill('SIGINT');
  await new Promise<void>((resolve) => {
    if (children.size === 0) return resolve();
    const t = setTimeout(() => {
      for (const c of children.values()) c.kill('SIGKILL');
      resolve();
    }, 45_000);
    const check = setInterval(() => {
      if (children.size === 0) {
        clearTimeout(t);
        clearInterval(check);
        resolve();
      }
    }, 100);
  });
  for (const w of windows.values()) clearTimeout(w.timer);
  await consumer.disconnect().catch(() => {});
  if (stopBroker) {
    await stopBroker();
    console.error('ringflow: Kafka stopped; its data stays for the next "ringflow up" or "ringflow kafka start"');
  }
  if (failed) {
    console.error(`ringflow: up: stopped because ${failed}`);
    return 1;
  }
  return 0;
}
