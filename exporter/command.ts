/**
 * `ringflow export`: the exporter service (see exporter/service.ts) until
 * SIGINT or SIGTERM. The lead wires it into cli/main.ts.
 */
import { parseArgs } from 'node:util';
import { FatalError, EXIT } from '../collector/errors.ts';
import { parseBrokers } from '../collector/options.ts';
import { createKafkaClient, connectAdmin, describeKafkaError } from '../collector/kafka-sink.ts';
import { DEFAULT_BROKERS } from '../cli/collect.ts';
import { createExporter, METRICS_TOPIC, DEFAULT_GROUP_ID } from './service.ts';
import type { HistogramMode } from './otlp.ts';

export const EXPORT_HELP = `Usage: ringflow export [options]

Reads the processor's points from ${METRICS_TOPIC} (read_committed) and ships
them over OTLP gRPC: latency histograms as exponential histograms, counters as
monotonic sums, both with delta temporality, one Resource per host.name.
Offsets are committed only after the backend accepted; while it is down the
points stay in Kafka and the export is retried with backoff.

Options:
  --brokers H:P[,H:P]     Kafka bootstrap brokers (default 127.0.0.1:9092)
  --histograms MODE       exponential (default) or explicit: fixed power-of-two
                          bounds (seconds 2^-20..2^5, bytes 2^6..2^26) for
                          backends without exponential histograms
  --group-id ID           consumer group (default ${DEFAULT_GROUP_ID}); instances
                          in one group share the partitions
  -h, --help              this help

Environment (the OpenTelemetry SDK's):
  OTEL_EXPORTER_OTLP[_METRICS]_ENDPOINT     default http://localhost:4317; host:port
                                            without a scheme is plaintext unless
                                            OTEL_EXPORTER_OTLP_INSECURE=false or a
                                            CA certificate is set
  OTEL_EXPORTER_OTLP[_METRICS]_HEADERS      key=value,... (gRPC metadata)
  OTEL_EXPORTER_OTLP[_METRICS]_INSECURE, _CERTIFICATE, _CLIENT_KEY,
  _CLIENT_CERTIFICATE, _TIMEOUT (ms, default 10000), _COMPRESSION (gzip|none)
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES  Resource (service.name default ringflow)`;

export function parseHistogramMode(text: string): HistogramMode {
  if (text === 'exponential' || text === 'explicit') return text;
  throw new FatalError(`--histograms: "${text}" is not exponential or explicit`, { exitCode: EXIT.usage });
}

export async function exportCommand(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      brokers: { type: 'string' },
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
  const histogramMode = parseHistogramMode(v.histograms ?? 'exponential');
  const log = (line: string) => console.error(line);
  const kafka = createKafkaClient(brokers, 'ringflow-exporter');
  const admin = await connectAdmin(kafka, brokers);
  try {
    // the processor creates the topic; wait for it rather than create it with other settings
    let said = false;
    while (!(await admin.listTopics()).includes(METRICS_TOPIC)) {
      if (!said) log(`ringflow: waiting for ${METRICS_TOPIC} on ${brokers.join(',')} (start "ringflow process")`);
      said = true;
      if (await stopSignal(2000)) return 0;
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const exporter = createExporter({ kafka, histogramMode, log, ...(v['group-id'] ? { groupId: v['group-id'] } : {}) });
  try {
    await exporter.start();
  } catch (err) {
    await exporter.stop();
    throw new FatalError(`export: ${describeKafkaError(err)}`, { exitCode: EXIT.kafka, cause: err });
  }
  log(`ringflow: exporting ${METRICS_TOPIC} from ${brokers.join(',')} to ${exporter.endpoint} (${histogramMode} histograms); Ctrl-C to stop`);
  const fatal = await Promise.race([stopSignal().then(() => undefined), exporter.failed]);
  await exporter.stop();
  const c = exporter.counters;
  log(`ringflow: exported ${c.exported} points (${c.rejected} rejected, ${c.retries} retries, ${c.undecodable} undecodable)`);
  if (fatal) throw fatal;
  return 0;
}

/** Resolves true on SIGINT/SIGTERM, false after ms (never, without ms). */
function stopSignal(ms?: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
      if (t) clearTimeout(t);
      resolve(v);
    };
    const onSig = () => done(true);
    process.once('SIGINT', onSig);
    process.once('SIGTERM', onSig);
    const t = ms === undefined ? undefined : setTimeout(() => done(false), ms);
  });
}
