/**
 * The exporter's own counters as OTLP metrics, sent through the metrics
 * exporter's OTLP exporter every interval and once when it stops.
 *
 * OTLP is at-least-once: a request whose deadline passed may still be taken
 * by the backend (one frozen by SIGSTOP takes it when it resumes), and our
 * retry then delivers the same points or spans a second time. We cannot tell
 * afterwards whether it did; we count what we resent after a timeout
 * (`possible_duplicates`), so a reader of the backend can bound the
 * duplicates. Exported for each running signal, with attribute `signal`:
 *   ringflow.exporter.exported             items the backend accepted
 *   ringflow.exporter.rejected             items refused for good or unmappable
 *   ringflow.exporter.undecodable          records that did not decode (skipped)
 *   ringflow.exporter.retries              export attempts repeated
 *   ringflow.exporter.possible_duplicates  items resent after a timed-out request
 * All are CUMULATIVE monotonic sums from the exporter's start: an export of
 * them that fails loses nothing, the next carries the totals.
 */
import os from 'node:os';
import { ValueType, type Attributes } from '@opentelemetry/api';
import { AggregationTemporality, DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SCOPE_NAME, SCOPE_VERSION, nsToHrTime } from './otlp.ts';
import type { Exporter, ExporterCounters } from './service.ts';
import { createLogOnce } from './log-once.ts';

export const OWN_METRICS: readonly { name: string; counter: keyof ExporterCounters; description: string }[] = [
  { name: 'ringflow.exporter.exported', counter: 'exported', description: 'Points or spans the OTLP backend accepted.' },
  { name: 'ringflow.exporter.rejected', counter: 'rejected', description: 'Points or spans the backend refused for good, or that could not be mapped.' },
  { name: 'ringflow.exporter.undecodable', counter: 'undecodable', description: 'Records of the input topic that did not decode (skipped).' },
  { name: 'ringflow.exporter.retries', counter: 'retries', description: 'Export attempts repeated after a retryable failure.' },
  {
    name: 'ringflow.exporter.possible_duplicates',
    counter: 'possibleDuplicates',
    description: 'Points or spans sent again after their request timed out; the backend may hold each twice.',
  },
];

/** Pure: the counters of each signal -> one ResourceMetrics of cumulative sums from startNs to nowNs. */
export function ownMetrics(signals: readonly { signal: string; counters: ExporterCounters }[], resource: Attributes, startNs: bigint, nowNs: bigint): ResourceMetrics {
  const startTime = nsToHrTime(startNs);
  const endTime = nsToHrTime(nowNs);
  const metrics: MetricData[] = OWN_METRICS.map((m) => ({
    descriptor: { name: m.name, description: m.description, unit: '{item}', valueType: ValueType.INT },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM,
    isMonotonic: true,
    dataPoints: signals.map((s) => ({ startTime, endTime, attributes: { signal: s.signal }, value: s.counters[m.counter] })),
  }));
  return {
    resource: resourceFromAttributes(resource),
    scopeMetrics: [{ scope: { name: SCOPE_NAME, version: SCOPE_VERSION }, metrics }],
  };
}

export interface OwnMetricsReporter {
  /** Sends the totals now. */
  flush(): Promise<void>;
  /** Stops the interval (flush first for the last totals). */
  stop(): void;
}

/**
 * Every intervalMs, sends the counters of `signals()` through `via` (the
 * metrics exporter). A failed send is logged (once per kind, again every
 * minute while it lasts) and not retried: the next one carries the totals.
 */
export function startOwnMetrics(
  via: Pick<Exporter<ResourceMetrics>, 'send'>,
  signals: () => readonly { signal: string; counters: ExporterCounters }[],
  opts: { log: (line: string) => void; resource: Attributes; intervalMs?: number },
): OwnMetricsReporter {
  const startNs = BigInt(Date.now()) * 1_000_000n;
  const resource = { ...opts.resource, 'host.name': os.hostname() };
  const once = createLogOnce(opts.log);
  let sending: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    sending = sending.then(async () => {
      try {
        const out = await via.send(ownMetrics(signals(), resource, startNs, BigInt(Date.now()) * 1_000_000n));
        if (out.status !== 'success') once(`own:${out.kind}`, `otlp: the exporter's own metrics were not sent (${out.message}); the next send carries the totals`);
      } catch (err) {
        once(`own:${(err as Error).message}`, `otlp: the exporter's own metrics were not sent (${(err as Error).message}); the next send carries the totals`);
      }
    });
    return sending;
  };
  const timer = setInterval(() => void flush(), opts.intervalMs ?? 10_000);
  timer.unref();
  return { flush, stop: () => clearInterval(timer) };
}
