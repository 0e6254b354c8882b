/**
 * `ringflow process`: the processor service (see processor/service.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { parseBrokers, parseDurationInRange, parseDurationMs, parseHost, parseIntFlag } from '../common/options.ts';
import { createKafkaClient } from '../kafka/client.ts';
import { DEFAULT_BROKERS } from './collect.ts';
import { EXIT, FatalError } from '../common/errors.ts';
import type { AlertRule } from '../processor/alerts.ts';

const HELP = `Usage: ringflow process [options]

Aggregates the collectors' events into event-time windows of exponential
histograms and sums, and writes each closed window exactly once to
ringflow.metrics.v1 (Kafka transactions; read it with read_committed).
Pairs the L7 requests and responses of ringflow.l7.v1 into spans, written
exactly once to ringflow.spans.v1, and aggregates those into RED metrics
(http.server.request.duration, rpc.client.call.duration, dns.lookup.duration...).
Merges the stacks of ringflow.profile.stacks.v1 per window and service into
profiles (top 200 stacks, the rest as "[other]"), written exactly once to
ringflow.profiles.v1 (export them with ringflow export --signals profiles).
Run several instances to share the partitions.

Options:
  --brokers H:P[,H:P]  Kafka bootstrap brokers (default 127.0.0.1:9092)
  --instance ID        this instance's id: stable across restarts (default: host name)
  --window DUR         tumbling window size (default 10s)
  --lateness DUR       allowed lateness: a window closes when event time passes its end by this (default 5s)
  --top-k N            series kept per metric, host and window before folding into "other" (default 100)
  --fs-metric-depth N  directory components of ringflow.fs.path.prefix in the fs metrics
                       (default 3: /var/lib/postgresql); the top 100 prefixes per window stay,
                       the rest is "other"
  --span-timeout DUR   a request with no response this long (event time) becomes an
                       ERROR span, error.type=timeout (default 30s)
  --partitions N       partitions of topics the processor creates (default 6)
  --max-clock-skew DUR events dated further ahead of this machine's clock go to
                       ringflow.deadletter.v1 (reason clock_skew), so that one host's
                       clock cannot close the windows of others (default 60s)
  --rules FILE         alert rules (YAML, see docs/alerts.md): also write FIRING/RESOLVED
                       records to ringflow.alerts.v1
  -h, --help           this help`;

/** Bounds of the duration flags, checked before anything connects (up checks them too). */
export const DAY_MS = 86_400_000;
export const WINDOW_MIN_MS = 100;
export const parseWindowMs = (text: string): number => parseDurationMs('--window', text, WINDOW_MIN_MS, DAY_MS);
export const parseLatenessMs = (text: string): number => parseDurationMs('--lateness', text, 0, DAY_MS);

export async function processCommand(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      brokers: { type: 'string' },
      instance: { type: 'string' },
      window: { type: 'string' },
      lateness: { type: 'string' },
      'top-k': { type: 'string' },
      'fs-metric-depth': { type: 'string' },
      partitions: { type: 'string' },
      'span-timeout': { type: 'string' },
      'max-clock-skew': { type: 'string' },
      rules: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const brokers = v.brokers === undefined ? DEFAULT_BROKERS : parseBrokers(v.brokers);
  const windowMs = parseWindowMs(v.window ?? '10s');
  const latenessMs = parseLatenessMs(v.lateness ?? '5s');
  const topK = v['top-k'] === undefined ? 100 : parseIntFlag('--top-k', v['top-k'], 1, 100000);
  const partitions = v.partitions === undefined ? 6 : parseIntFlag('--partitions', v.partitions, 1, 1000);
  const fsDepth = v['fs-metric-depth'] === undefined ? undefined : parseIntFlag('--fs-metric-depth', v['fs-metric-depth'], 1, 32);
  const spanTimeoutNs = parseDurationInRange('--span-timeout', v['span-timeout'] ?? '30s', 1_000_000n, BigInt(DAY_MS) * 1_000_000n);
  const maxClockSkewMs = parseDurationMs('--max-clock-skew', v['max-clock-skew'] ?? '60s', 0, DAY_MS);
  // part of transactional ids: fencing a zombie instance relies on it being stable and non-empty
  const instanceId = v.instance === undefined ? os.hostname() : parseHost(v.instance, '--instance');
  let rules: AlertRule[] | undefined;
  if (v.rules !== undefined) {
    const { parseRules, RulesError } = await import('../processor/alerts.ts');
    try {
      rules = parseRules(fs.readFileSync(v.rules, 'utf8'), v.rules);
    } catch (err) {
      if (err instanceof RulesError || (err as NodeJS.ErrnoException).code !== undefined) throw new FatalError(`--rules: ${(err as Error).message}`, { exitCode: EXIT.usage });
      throw err;
    }
  }
  // before the stages start: both read the METRICS table's fs rows
  if (fsDepth !== undefined) (await import('../processor/aggregate.ts')).setFsMetricDepth(fsDepth);
  const { startProcessor } = await import('../processor/service.ts');
  const log = (l: string) => console.error(l);
  const p = await startProcessor({ kafka: createKafkaClient(brokers, `ringflow-processor-${instanceId}`), brokers, instanceId, windowMs, latenessMs, topK, partitions, spanTimeoutNs, maxClockSkewMs, rules, log });
  log(`ringflow: processing as ${instanceId} on ${brokers.join(',')} (windows ${windowMs / 1000}s, lateness ${latenessMs / 1000}s, span timeout ${Number(spanTimeoutNs / 1_000_000n) / 1000}s${rules ? `, ${rules.length} alert rules` : ''}); Ctrl-C to stop`);
  const fatal = await Promise.race([
    new Promise<undefined>((resolve) => {
      process.once('SIGINT', () => resolve(undefined));
      process.once('SIGTERM', () => resolve(undefined));
    }),
    p.failed,
  ]);
  await p.stop();
  if (fatal) throw fatal;
  return 0;
}
