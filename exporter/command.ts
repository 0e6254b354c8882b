/**
 * `ringflow export`: the exporter services (see exporter/service.ts), one per
 * signal, until SIGINT or SIGTERM. The lead wires it into cli/main.ts.
 */
import { parseArgs } from 'node:util';
import type { Admin } from 'kafkajs';
import { FatalError, EXIT } from '../common/errors.ts';
import { parseBrokers } from '../common/options.ts';
import { createKafkaClient, connectAdmin, describeKafkaError, isBrokerOutage, CONSUMER_OUTAGE_LIMIT_MS } from '../kafka/client.ts';
import { DEFAULT_BROKERS } from '../cli/collect.ts';
import { createExporter, createTraceExporter, createProfilesExporter, METRICS_TOPIC, TRACES_TOPIC, DEFAULT_GROUP_ID, type Exporter } from './service.ts';
import { PROFILES_TOPIC } from './otlp-profiles.ts';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { baseResourceAttributes, type HistogramMode } from './otlp.ts';
import { startOwnMetrics, type OwnMetricsReporter } from './self-metrics.ts';

export type Signal = 'metrics' | 'traces' | 'profiles';
export const SIGNALS: readonly Signal[] = ['metrics', 'traces', 'profiles'];
/** Exported unless --signals says otherwise: profiles are opt-in, the OTLP signal is alpha and most backends refuse it. */
export const DEFAULT_SIGNALS: readonly Signal[] = ['metrics', 'traces'];
const TOPICS: Readonly<Record<Signal, string>> = { metrics: METRICS_TOPIC, traces: TRACES_TOPIC, profiles: PROFILES_TOPIC };

export const EXPORT_HELP = `Usage: ringflow export [options]

Ships the processor's output over OTLP gRPC, each signal from its topic
(read_committed), with its own consumer group:
  metrics  ${METRICS_TOPIC}: latency histograms as exponential histograms,
           counters as monotonic sums, both with delta temporality, one
           Resource per host.name
  traces   ${TRACES_TOPIC}: one span per record, one Resource per
           (service.name = the observed process, host.name = the observing host)
  profiles ${PROFILES_TOPIC} (opt-in): OTLP profiles, the alpha
           profiles/v1development signal, one Resource per (service.name,
           host.name); a Collector needs --feature-gates=service.profilesSupport
Offsets are committed only after the backend accepted; while it is down the
records stay in Kafka and the export is retried with backoff. A topic that
does not exist yet is waited for (the processor creates it).

Options:
  --brokers H:P[,H:P]     Kafka bootstrap brokers (default 127.0.0.1:9092)
  --signals LIST          which signals, comma-separated: metrics, traces,
                          profiles (default metrics,traces)
  --histograms MODE       exponential (default) or explicit: fixed power-of-two
                          bounds (seconds 2^-20..2^5, bytes 2^6..2^26) for
                          backends without exponential histograms
  --group-id ID           consumer group of metrics (default ${DEFAULT_GROUP_ID});
                          traces use ID-traces; instances in one group share
                          the partitions
  -h, --help              this help

Environment (the OpenTelemetry SDK's; SIGNAL is METRICS or TRACES, the
signal's variable wins over the generic one):
  OTEL_EXPORTER_OTLP[_SIGNAL]_ENDPOINT      default http://localhost:4317; host:port
                                            without a scheme is plaintext unless
                                            OTEL_EXPORTER_OTLP_INSECURE=false or a
                                            CA certificate is set
  OTEL_EXPORTER_OTLP[_SIGNAL]_HEADERS       key=value,... (gRPC metadata)
  OTEL_EXPORTER_OTLP[_SIGNAL]_INSECURE, _CERTIFICATE, _CLIENT_KEY,
  _CLIENT_CERTIFICATE, _TIMEOUT (ms, default 10000), _COMPRESSION (gzip|none)
  OTEL_RESOURCE_ATTRIBUTES                  added to every Resource
  OTEL_SERVICE_NAME                         service.name of metrics (default
                                            ringflow); a span's is its process's

Delivery is at-least-once: a request with no answer within the timeout is
sent again, and the backend may have kept the first copy too. What was resent
after a timeout is counted and exported every 10 s with the exporter's other
counters (ringflow.exporter.possible_duplicates{signal}, cumulative).`;

export function parseHistogramMode(text: string): HistogramMode {
  if (text === 'exponential' || text === 'explicit') return text;
  throw new FatalError(`--histograms: "${text}" is not exponential or explicit`, { exitCode: EXIT.usage });
}

export function parseSignals(text: string): Signal[] {
  const out: Signal[] = [];
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (!SIGNALS.includes(part as Signal)) throw new FatalError(`--signals: "${part}" is not ${SIGNALS.join(' or ')}`, { exitCode: EXIT.usage });
    if (!out.includes(part as Signal)) out.push(part as Signal);
  }
  if (out.length === 0) throw new FatalError(`--signals: name at least one of ${SIGNALS.join(', ')}`, { exitCode: EXIT.usage });
  return out;
}

export async function exportCommand(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      brokers: { type: 'string' },
      signals: { type: 'string' },
      histograms: { type: 'string' },
      'group-id': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(EXPORT_HELP);
    return 0;
  }
  const brokers = v.brokers === undefined ? DEFAULT_BROKERS : parseBrokers(v.brokers);
  const signals = parseSignals(v.signals ?? DEFAULT_SIGNALS.join(','));
  const histogramMode = parseHistogramMode(v.histograms ?? 'exponential');
  const groupId = v['group-id'];
  const log = (line: string) => console.error(line);
  const kafka = createKafkaClient(brokers, 'ringflow-exporter');
  const make: Record<Signal, () => Exporter> = {
    metrics: () => createExporter({ kafka, histogramMode, log, ...(groupId ? { groupId } : {}) }),
    traces: () => createTraceExporter({ kafka, log, ...(groupId ? { groupId: `${groupId}-traces` } : {}) }),
    profiles: () => createProfilesExporter({ kafka, log, ...(groupId ? { groupId: `${groupId}-profiles` } : {}) }),
  };
  const admin: Admin = await connectAdmin(kafka, brokers);
  // what ends the command: a signal, or an exporter that cannot go on
  const stop = stopSignal();
  let fatal: FatalError | undefined;
  let onFatal!: () => void;
  const failed = new Promise<void>((resolve) => (onFatal = resolve));
  const fail = (err: FatalError) => {
    fatal ??= err;
    onFatal();
  };
  const over = () => stop.stopped() || fatal !== undefined;
  const ended = Promise.race([stop.promise, failed]);
  const running: Exporter[] = [];
  let own: OwnMetricsReporter | undefined;
  const waiting = [...signals];
  const said = new Set<Signal>();
  try {
    // the processor creates the topics; wait for each rather than create it with
    // other settings, and export the signals whose topic is there meanwhile
    let unreachable: { since: number; tries: number } | null = null;
    while (waiting.length > 0 && !over()) {
      let topics: string[];
      try {
        topics = await admin.listTopics();
      } catch (err) {
        // the broker went away while we wait (a restart of both, soak finding 3): wait for it too, within the
        // bound a running consumer waits; past it, or for anything else, the loop's catch ends the command
        if (!isBrokerOutage(err)) throw err;
        unreachable ??= { since: Date.now(), tries: 0 };
        if (unreachable.tries++ === 0) log(`ringflow: export: lost Kafka at ${brokers.join(',')} while waiting for topics (${describeKafkaError(err)}); retrying`);
        if (Date.now() - unreachable.since >= CONSUMER_OUTAGE_LIMIT_MS) throw err;
        await pauseUnless(2000, ended);
        continue;
      }
      if (unreachable) log(`ringflow: export: Kafka at ${brokers.join(',')} answers again after ${((Date.now() - unreachable.since) / 1000).toFixed(1)} s`);
      unreachable = null;
      for (const signal of [...waiting]) {
        if (over()) break;
        if (!topics.includes(TOPICS[signal])) {
          if (!said.has(signal)) log(`ringflow: waiting for ${TOPICS[signal]} on ${brokers.join(',')} (start "ringflow process")`);
          said.add(signal);
          continue;
        }
        waiting.splice(waiting.indexOf(signal), 1);
        const exporter = make[signal]();
        // a start waits out a broker outage (minutes at most): a signal meanwhile stops it
        let stopped: Promise<void> | undefined;
        const stopIt = () => (stopped ??= exporter.stop());
        let starting = true;
        void ended.then(() => (starting ? stopIt() : undefined));
        try {
          await exporter.start();
        } catch (err) {
          await stopIt();
          fail(new FatalError(`export: ${describeKafkaError(err)}`, { exitCode: EXIT.kafka, cause: err }));
          break;
        } finally {
          starting = false;
        }
        if (over()) {
          await stopIt();
          break;
        }
        running.push(exporter);
        void exporter.failed.then(fail);
        // the exporter's own counters (retries that may have duplicated ...) go out through the metrics exporter
        if (signal === 'metrics') own = startOwnMetrics(exporter as Exporter<ResourceMetrics>, () => running, { log, resource: baseResourceAttributes() });
        log(`ringflow: exporting ${exporter.topic} from ${brokers.join(',')} to ${exporter.endpoint}${signal === 'metrics' ? ` (${histogramMode} histograms)` : ''}; Ctrl-C to stop`);
      }
      if (waiting.length > 0 && !over()) await pauseUnless(2000, ended);
    }
  } catch (err) {
    // Kafka went away while we waited: stop what runs, then report it
    await Promise.all(running.map((e) => e.stop()));
    stop.dispose();
    throw new FatalError(`export: ${describeKafkaError(err)}`, { exitCode: EXIT.kafka, cause: err });
  } finally {
    await admin.disconnect().catch(() => {});
  }
  await ended;
  own?.stop();
  await own?.flush(); // the last totals, before the metrics exporter shuts down
  await Promise.all(running.map((e) => e.stop()));
  stop.dispose();
  for (const e of running) {
    const c = e.counters;
    log(`ringflow: exported ${c.exported} ${e.unit} (${c.rejected} rejected, ${c.retries} retries, ${c.possibleDuplicates} possibly duplicated by a retry after a timeout, ${c.undecodable} undecodable)`);
  }
  if (fatal) throw fatal;
  return 0;
}

/**
 * Waits ms or until `ended`. The timer is not unref'd: while the broker is down
 * nothing else may hold the event loop, and Node would then end the process,
 * silently and with status 0, in the middle of the wait.
 */
async function pauseUnless(ms: number, ended: Promise<void>): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([new Promise<void>((r) => (t = setTimeout(r, ms))), ended]);
  clearTimeout(t);
}

/** Resolves on the first SIGINT/SIGTERM; until dispose(), those no longer end the process. */
function stopSignal(): { promise: Promise<void>; stopped: () => boolean; dispose: () => void } {
  let got = false;
  let onSig!: () => void;
  const promise = new Promise<void>((resolve) => (onSig = () => {
    got = true;
    resolve();
  }));
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  return {
    promise,
    stopped: () => got,
    dispose() {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
    },
  };
}
