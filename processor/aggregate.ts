/**
 * What the processor aggregates (METRICS, the one table) and the per-partition
 * aggregator that turns decoded events into closed window points.
 *
 * Naming follows the OpenTelemetry semantic conventions where they have a
 * name: attributes host.name, process.command, system.device,
 * disk.io.direction, server.address, server.port; UCUM units as OTel writes
 * them (s, By, {switch}, {segment}); latencies in seconds. The conventions
 * have no run-queue, off-CPU, block-latency or TCP-connect-latency metric,
 * so the metric names live under `ringflow.`, as do the attributes with no
 * convention (ringflow.switch.voluntary, ringflow.block.op, ringflow.tcp.state,
 * ringflow.tcp.drop.reason). The RED metrics of spans (ringflow.spans.v1) do
 * have conventions: http.{server,client}.request.duration, rpc.{server,client}.call.duration
 * (and the older rpc.{server,client}.duration with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup)
 * and dns.lookup.duration, with the conventions' attributes.
 *
 * Attribute values are strings (server.port "443", ringflow.switch.voluntary
 * "true"), as in ringflow.metrics.v1; an exporter converts conventions that
 * are typed (server.port is an int). Value strings come from C strings and
 * never hold NUL, which the series keys use as a separator.
 */
import { ExpHistogram, type ExpHistogramJSON, type ExpHistogramOptions } from './histogram.ts';
import { WindowAssigner, type Window, type WindowAssignerOptions, type WindowAssignerState } from './window.ts';
import { ACCOUNTED_TOPICS, FS_IO_TOPIC, SPANS_TOPIC } from './topics.ts';
import { REJECTED_PREFIX } from './partial.ts';
import { attributeAddress, grpcStatusName, rpcConventions, type RpcConventions } from './semconv.ts';

/**
 * Fields every decoded event has (schemas/*.avsc: Avro longs decode as BigInt).
 *
 * Stage 2 decodes the collectors' events with processor/fast-decode.ts, which
 * hands longs below 2^52 over as numbers and passes the event time to
 * WindowAggregator.addAt itself: the value, accept and dimension functions
 * of METRICS rows for event topics must read longs only through Number(),
 * String() or a template literal (same result for both), never BigInt
 * arithmetic. test/unit/aggregate-fast.test.ts checks the two paths agree.
 */
export interface EventBase {
  readonly host: string;
  readonly boot_time_ns: bigint;
  readonly ts_ns: bigint;
}

export interface RunqlatEvent extends EventBase {
  readonly comm: string;
  readonly latency_ns: bigint;
}
export interface CswitchEvent extends EventBase {
  readonly comm: string;
  readonly off_cpu_ns: bigint;
  readonly voluntary: number;
}
export interface BlockIoEvent extends EventBase {
  readonly comm: string;
  readonly latency_ns: bigint;
  readonly bytes: bigint;
  readonly dev_major: bigint;
  readonly dev_minor: bigint;
  readonly op: string;
}
export interface TcpConnectEvent extends EventBase {
  readonly comm: string;
  readonly daddr: string;
  readonly dport: number;
  readonly latency_ns: bigint;
}
export interface TcpRetransmitEvent extends EventBase {
  readonly state: string;
}
export interface TcpDropEvent extends EventBase {
  readonly reason_name: string;
}
/** A ringflow.fs.io.v1 record (schemas/fs.io.avsc): one file syscall on a regular file. */
export interface FsIoEvent extends EventBase {
  readonly comm: string;
  readonly latency_ns: bigint;
  /** Bytes moved (read/write family), the new fd (open), 0, or -errno. */
  readonly ret: bigint;
  /** FsOp symbol: READ, PREAD, FSYNC, OPEN, ... */
  readonly op: string;
  readonly fs_type: string;
  readonly path: string;
  /** enum rf_fs_flag bits: 1 PATH_CUT, 16 PATH_FAILED matter here. */
  readonly flags: number;
}

/**
 * A ringflow.spans.v1 record (schemas/spans.avsc) as a metric event
 * (spanEvent): its event time is its end, when the request's duration is
 * known (OpenTelemetry instruments record it then too).
 */
export interface SpanEvent extends EventBase {
  readonly kind: 'INTERNAL' | 'SERVER' | 'CLIENT';
  readonly protocol: 'UNKNOWN' | 'HTTP1' | 'HTTP2' | 'GRPC' | 'DNS';
  readonly start_ns: bigint;
  readonly end_ns: bigint;
  readonly service_name: string;
  /** Semantic-convention attributes as text (processor/spans.ts). */
  readonly attributes: Readonly<Record<string, string>>;
}

/** A decoded span record -> its metric event: ts_ns = end_ns on an epoch "boot" (spans carry wall-clock times). */
export function spanEvent(rec: Record<string, unknown>): SpanEvent {
  return { ...(rec as unknown as SpanEvent), boot_time_ns: 0n, ts_ns: rec.end_ns as bigint };
}

export type MetricKind = 'histogram' | 'sum';
export type Attribute = [key: string, value: string];

export interface DimensionDef<E> {
  readonly key: string;
  /** The value, or undefined when the attribute does not apply to this event (left out). */
  get(e: E): string | undefined;
}

export interface MetricDef<E extends EventBase = EventBase> {
  /** Input topic. */
  readonly topic: string;
  readonly name: string;
  readonly unit: string;
  readonly kind: MetricKind;
  readonly description: string;
  /** Histogram: the value recorded (finite, >= 0); sum: the amount added (an integer >= 0). */
  value(e: E): number;
  /** Whether this event counts for this metric at all (default: every event of the topic). */
  accept?(e: E): boolean;
  /** Sorted by key, unique. */
  readonly dimensions: readonly DimensionDef<E>[];
}

/** ns -> s, correctly rounded (a division: 1e-9 is not exact, so multiplying is not). */
const ns = (v: bigint): number => Number(v) / 1e9;

const hostName = { key: 'host.name', get: (e: EventBase) => e.host }; // semconv (resource)
const command = { key: 'process.command', get: (e: { comm: string }) => e.comm }; // semconv; comm is the kernel's task name (16 bytes)

const BLOCK_DIRECTION: Record<string, string> = { READ: 'read', WRITE: 'write' };

const spanSeconds = (e: SpanEvent): number => ns(e.end_ns - e.start_ns);
const spanMillis = (e: SpanEvent): number => Number(e.end_ns - e.start_ns) / 1e6;
const isHttp = (e: SpanEvent): boolean => e.protocol === 'HTTP1' || e.protocol === 'HTTP2';
/**
 * A request whose response the capture missed (ringflow.response.missed) has
 * no duration: its span ends with the request. Left out rather than counted
 * with a made-up one; a request with no response at all (a timeout) counts,
 * with error.type=timeout and the timeout as its duration.
 */
const measured = (e: SpanEvent): boolean => e.attributes['ringflow.response.missed'] === undefined;

function metric<E extends EventBase>(d: MetricDef<E>): MetricDef<E> {
  const keys = d.dimensions.map((x) => x.key);
  const sorted = [...keys].sort();
  if (keys.some((k, i) => k !== sorted[i] || keys.indexOf(k) !== i)) throw new Error(`${d.name}: dimensions must be sorted and unique`);
  return d;
}

/** Everything the processor aggregates: one row per output metric. */
/**
 * Every drop of every kind reaches ringflow.metrics.v1 as a SUM point of this
 * metric per (host, reason, signal) and window (a delta): reason kernel (the
 * ring was full) or user (the collector could not hold it) from the
 * collectors' stats, signal the event topic. Late events stay on their
 * series' points (late_events); the exporter sends both to OTLP under this
 * name (exporter/otlp.ts DROPPED_METRIC).
 */
export const DROPPED_METRIC = 'ringflow.dropped';
export const DROPPED_UNIT = '{event}';

/** Pure: one drop count -> a schemas/metrics.avsc record (attributes sorted by key). */
export function droppedRecord(o: { host: string; reason: string; signal: string; startNs: bigint; endNs: bigint; count: number; processor: string }): Record<string, unknown> {
  return accountingPoint(DROPPED_METRIC, DROPPED_UNIT, [['host.name', o.host], ['reason', o.reason], ['signal', o.signal]], o, { sum: BigInt(o.count) });
}

/**
 * Pure: a point of the processor's own accounting (drops, losses, coverage)
 * -> a schemas/metrics.avsc record: a SUM (`sum`) or a GAUGE (`gauge`) over
 * one window, attributes given sorted by key, no late events or drops of its own.
 */
function accountingPoint(name: string, unit: string, attributes: [string, string][], o: { startNs: bigint; endNs: bigint; processor: string }, value: { sum: bigint } | { gauge: number }): Record<string, unknown> {
  return {
    name,
    unit,
    kind: 'sum' in value ? 'SUM' : 'GAUGE',
    attributes: attributes.map(([key, v]) => ({ key, value: v })),
    window_start_ns: o.startNs,
    window_end_ns: o.endNs,
    histogram: null,
    sum: 'sum' in value ? value.sum : null,
    ...('gauge' in value ? { gauge: value.gauge } : {}),
    late_events: 0n,
    dropped_inputs: 0n,
    processor: o.processor,
  };
}

/**
 * The collectors' losses by cause, per (host, reason, location) and window:
 * a SUM (a delta) beside ringflow.dropped, never inside it. location "user":
 * the stats record's drop_reasons (backpressure, undecodable,
 * too_large_dead_lettered, ...), already inside ringflow.dropped{reason=user}
 * of the topics; location "kernel": its kernel_losses (block_orphaned,
 * block_map_full, tcp_*_unattributed, ...), counted in the BPF maps and partly
 * inside ringflow.dropped{reason=kernel} (schemas/collector.stats.avsc). So it
 * is the breakdown of those totals: adding it to them would count twice, and
 * it is a metric of its own so that summing ringflow.dropped by reason stays
 * right. Per collector, not per topic: the record lists no topic per cause.
 */
export const LOSSES_METRIC = 'ringflow.collector.losses';
export const LOSSES_UNIT = '{record}';
/** "counted": the stats record's kernel_counts, not losses: they become FS_UNREPORTED_METRIC, not LOSSES_METRIC (collectorPoint). */
export type LossLocation = 'user' | 'kernel' | 'counted';

/**
 * File calls a collector counted in the kernel but did not report, on
 * purpose (the stats record's kernel_counts, collector/kernel-counts.ts), per
 * (host, reason, ringflow.fs.syscall) and window: a SUM. reason
 * below_min_latency: faster than --min-latency; failed: failed with no file
 * to report (a failed open of any task the task filters pass: --path and --fs
 * cannot apply without a file, so the count is host-wide for those tasks). Not losses, so not in ringflow.collector.losses
 * nor ringflow.dropped: what the fs.io metrics leave out by the user's choice.
 */
export const FS_UNREPORTED_METRIC = 'ringflow.fs.calls.unreported';
export const FS_UNREPORTED_UNIT = '{call}';

/**
 * Pure: a kernel_counts name -> [reason, syscall] of FS_UNREPORTED_METRIC
 * (fs_below_min_latency_pread -> below_min_latency, pread). A name this
 * processor does not know (a newer collector's) is kept whole as the reason,
 * syscall "other": counted, never dropped.
 */
export function fsUnreportedOf(name: string): [string, string] {
  const m = /^fs_(below_min_latency|failed)_([a-z_0-9]+)$/.exec(name);
  return m ? [m[1]!, m[2]!] : [name, 'other'];
}

/** Pure: one count of file calls not reported -> a schemas/metrics.avsc record (attributes sorted by key). */
export function fsUnreportedRecord(o: { host: string; name: string; startNs: bigint; endNs: bigint; count: number; processor: string }): Record<string, unknown> {
  const [reason, syscall] = fsUnreportedOf(o.name);
  return accountingPoint(FS_UNREPORTED_METRIC, FS_UNREPORTED_UNIT, [['host.name', o.host], ['reason', reason], ['ringflow.fs.syscall', syscall]], o, { sum: BigInt(o.count) });
}

/**
 * One [location, reason, count] of collectorLossesOf -> its point and key:
 * ringflow.collector.losses for user and kernel, ringflow.fs.calls.unreported
 * for counted.
 */
export function collectorPoint(o: { host: string; reason: string; location: LossLocation; startNs: bigint; endNs: bigint; count: number; processor: string }): { key: string; record: Record<string, unknown> } {
  if (o.location === 'counted') {
    const [reason, syscall] = fsUnreportedOf(o.reason);
    return { key: `${FS_UNREPORTED_METRIC}|host.name=${o.host},reason=${reason},ringflow.fs.syscall=${syscall}`, record: fsUnreportedRecord({ ...o, name: o.reason }) };
  }
  return { key: `${LOSSES_METRIC}|host.name=${o.host},location=${o.location},reason=${o.reason}`, record: lossesRecord(o) };
}

/** Pure: one loss count -> a schemas/metrics.avsc record (attributes sorted by key). */
export function lossesRecord(o: { host: string; reason: string; location: LossLocation; startNs: bigint; endNs: bigint; count: number; processor: string }): Record<string, unknown> {
  return accountingPoint(LOSSES_METRIC, LOSSES_UNIT, [['host.name', o.host], ['location', o.location], ['reason', o.reason]], o, { sum: BigInt(o.count) });
}

/**
 * The event topic in whose lane stage 2 counts a stats record's losses: stage
 * 1 hands the record to stage 2 once per event topic it lists (keyed by
 * topic|host, so possibly to different partitions and instances), and the
 * breakdown is per collector, so exactly one of those copies may count it.
 * The smallest listed topic stage 1 routes (ACCOUNTED_TOPICS): every copy can tell
 * on its own whether it is the one, and the choice does not depend on the
 * order in which the collector lists its topics. null: no copy reaches stage 2.
 */
export function lossesLeadTopic(events: readonly { event: string }[]): string | null {
  let lead: string | null = null;
  for (const { event } of events) if (ACCOUNTED_TOPICS.includes(event) && (lead === null || event < lead)) lead = event;
  return lead;
}

/**
 * Pure: what one copy of a stats record, routed for event topic `topic`,
 * counts of the collector's losses: [location, reason, count] (and, location
 * counted, its kernel_counts: not losses, see collectorPoint), only reasons
 * with a count, and nothing unless `topic` is the record's lead topic.
 * drop_reasons prefixed REJECTED_PREFIX are stage 1's rejections, not the
 * collector's: those are ringflow.dropped reasons of their own. Table-tested
 * (test/unit/collector-losses.test.ts).
 */
export function collectorLossesOf(stats: Record<string, unknown>, topic: string): [LossLocation, string, number][] {
  if (lossesLeadTopic((stats.events as { event: string }[] | undefined) ?? []) !== topic) return [];
  const out: [LossLocation, string, number][] = [];
  const take = (location: LossLocation, list: unknown) => {
    for (const r of (list as { reason: string; count: bigint | number }[] | undefined) ?? []) {
      const n = Number(r.count);
      if (n > 0 && !r.reason.startsWith(REJECTED_PREFIX)) out.push([location, r.reason, n]);
    }
  };
  take('user', stats.drop_reasons);
  take('kernel', stats.kernel_losses);
  take('counted', stats.kernel_counts);
  return out;
}

/**
 * How much of a window a host's collector runs watched, per (host, signal)
 * and window: a GAUGE in [0, 1] (processor/coverage.ts, partition.ts). 1 is
 * said too: it is the statement that the window was fully watched.
 */
export const COVERAGE_METRIC = 'ringflow.collector.coverage';
export const COVERAGE_UNIT = '1';

/** Pure: one window's coverage -> a schemas/metrics.avsc record (attributes sorted by key). */
export function coverageRecord(o: { host: string; signal: string; startNs: bigint; endNs: bigint; fraction: number; processor: string }): Record<string, unknown> {
  return accountingPoint(COVERAGE_METRIC, COVERAGE_UNIT, [['host.name', o.host], ['signal', o.signal]], o, { gauge: Math.min(1, Math.max(0, o.fraction)) });
}

const HOUR_NS = 3_600_000_000_000n;
const DAY_NS = 24n * HOUR_NS;

/**
 * The physically possible range of each measured duration. A value outside
 * it is not an observation but a broken one (a u64 subtraction that wrapped:
 * -1 ns; a stale in-flight entry: 2^62 ns went out as 146 years), and stage 1
 * dead-letters its record with the reason rather than aggregate it or drop it
 * silently. Durations are never negative; the upper bounds, and why:
 *   runq latency    1 h     a task runnable and not run for that long is a hung CPU; the
 *                           kernel's own stall detectors (RCU: 21 s, hung task: 120 s) fire long before
 *   block latency   1 h     the block layer times a command out after 30 s (SCSI, NVMe), retried
 *                           at most 5 times; beyond that the request failed and no completion comes
 *   connect latency 1 h     SYN retries give up after ~127 s by default (tcp_syn_retries 6)
 *   off-CPU time    uptime  a task may sleep for days; it cannot have slept since before boot
 *                           (the end is ts_ns, CLOCK_MONOTONIC: the time since boot)
 *   span duration   1 day   a span ends at its response or at --span-timeout; a response a day
 *                           after its request is a pairing error
 *   file syscall    1 day   an fsync of gigabytes of dirty pages on a slow or network file system
 *                           takes minutes, and a call on a hard-mounted NFS export whose server is
 *                           away waits for it (hours are real); a day is beyond any such wait, and
 *                           is what a stale in-flight entry (a missed sys_exit) would look like
 * Pure; table-tested (test/unit/drops-values.test.ts).
 */
export const VALUE_RANGES: readonly { topic: string; field: string; maxNs: bigint | 'uptime'; duration(e: Record<string, unknown>): bigint | number }[] = [
  { topic: 'ringflow.sched.runqlat.v1', field: 'latency_ns', maxNs: HOUR_NS, duration: (e) => e.latency_ns as bigint },
  { topic: 'ringflow.sched.cswitch.v1', field: 'off_cpu_ns', maxNs: 'uptime', duration: (e) => e.off_cpu_ns as bigint },
  { topic: 'ringflow.block.io.v1', field: 'latency_ns', maxNs: HOUR_NS, duration: (e) => e.latency_ns as bigint },
  { topic: 'ringflow.tcp.connect.v1', field: 'latency_ns', maxNs: HOUR_NS, duration: (e) => e.latency_ns as bigint },
  { topic: FS_IO_TOPIC, field: 'latency_ns', maxNs: DAY_NS, duration: (e) => e.latency_ns as bigint },
  { topic: SPANS_TOPIC, field: 'end_ns - start_ns', maxNs: DAY_NS, duration: (e) => BigInt(e.end_ns as bigint) - BigInt(e.start_ns as bigint) },
];
const rangeOf = new Map(VALUE_RANGES.map((r) => [r.topic, r]));

/**
 * Why an event's measured value cannot be right, or null if it can (or the
 * topic measures none). Longs may be numbers (the fast decoder's) or BigInts.
 */
export function invalidValue(topic: string, e: EventBase): string | null {
  const r = rangeOf.get(topic);
  if (!r) return null;
  const raw = r.duration(e as unknown as Record<string, unknown>);
  if (raw === undefined || raw === null) return null;
  const v = BigInt(raw);
  const max = r.maxNs === 'uptime' ? BigInt(e.ts_ns) : r.maxNs;
  if (v < 0n) return `${r.field} ${v} is negative`;
  if (v > max) return `${r.field} ${v} is over ${r.maxNs === 'uptime' ? `the time since boot (ts_ns ${max})` : `${max / 1_000_000_000n} s`}`;
  return null;
}

/** Path components of ringflow.fs.path.prefix by default (the processor's --fs-metric-depth). */
export const DEFAULT_FS_METRIC_DEPTH = 3;
export const MAX_FS_METRIC_DEPTH = 32; // the BPF path walk's component bound (schemas/fs.io.avsc path)
let fsMetricDepth = DEFAULT_FS_METRIC_DEPTH;

/**
 * The processor's --fs-metric-depth, for the fs rows of METRICS: set once at
 * start, before any event (both stages of a processor read METRICS, so they
 * agree; instances should be given the same depth, else a window's series of
 * one host are cut at two depths, which merge without error but do not add up
 * per prefix).
 */
export function setFsMetricDepth(depth: number): void {
  checkFsDepth(depth);
  fsMetricDepth = depth;
}

function checkFsDepth(depth: number): void {
  if (!Number.isInteger(depth) || depth < 1 || depth > MAX_FS_METRIC_DEPTH) throw new RangeError(`fs metric depth must be an integer in [1, ${MAX_FS_METRIC_DEPTH}], got ${depth}`);
}

export const METRICS: readonly MetricDef[] = [
  metric<RunqlatEvent>({
    topic: 'ringflow.sched.runqlat.v1',
    name: 'ringflow.sched.runqueue.latency',
    unit: 's',
    kind: 'histogram',
    description: 'Time a task waited on a run queue, from wake-up or preemption until it ran.',
    value: (e) => ns(e.latency_ns),
    dimensions: [hostName, command],
  }),
  metric<CswitchEvent>({
    topic: 'ringflow.sched.cswitch.v1',
    name: 'ringflow.sched.offcpu.duration',
    unit: 's',
    kind: 'histogram',
    description: 'Time a task spent off CPU, from being switched out until switched back in.',
    value: (e) => ns(e.off_cpu_ns),
    dimensions: [hostName, command],
  }),
  metric<CswitchEvent>({
    topic: 'ringflow.sched.cswitch.v1',
    name: 'ringflow.sched.context_switches',
    unit: '{switch}',
    kind: 'sum',
    description: 'Context switches: voluntary (the task blocked) or not (it was preempted).',
    value: () => 1,
    dimensions: [hostName, command, { key: 'ringflow.switch.voluntary', get: (e) => (e.voluntary ? 'true' : 'false') }],
  }),
  metric<BlockIoEvent>({
    topic: 'ringflow.block.io.v1',
    name: 'ringflow.block.io.latency',
    unit: 's',
    kind: 'histogram',
    description: 'Block I/O request latency, from issue to completion.',
    value: (e) => ns(e.latency_ns),
    dimensions: blockDimensions(),
  }),
  metric<BlockIoEvent>({
    topic: 'ringflow.block.io.v1',
    name: 'ringflow.block.io.size',
    unit: 'By',
    kind: 'sum',
    description: 'Bytes of block I/O requests completed.',
    value: (e) => Number(e.bytes),
    dimensions: blockDimensions(),
  }),
  metric<TcpConnectEvent>({
    topic: 'ringflow.tcp.connect.v1',
    name: 'ringflow.tcp.connect.duration',
    unit: 's',
    kind: 'histogram',
    description: 'Active TCP connect latency, SYN_SENT to ESTABLISHED.',
    value: (e) => ns(e.latency_ns),
    dimensions: [
      hostName,
      command,
      { key: 'server.address', get: (e) => attributeAddress(e.daddr) }, // semconv (an IPv4-mapped peer as IPv4)
      { key: 'server.port', get: (e) => String(e.dport) }, // semconv (an int: exporters convert)
    ],
  }),
  metric<TcpRetransmitEvent>({
    topic: 'ringflow.tcp.retransmit.v1',
    name: 'ringflow.tcp.retransmits',
    unit: '{segment}',
    kind: 'sum',
    description: 'TCP segments retransmitted, by connection state.',
    value: () => 1,
    // values lower-cased like semconv's network.connection.state ("established")
    dimensions: [hostName, { key: 'ringflow.tcp.state', get: (e) => e.state.toLowerCase() }],
  }),
  metric<TcpDropEvent>({
    topic: 'ringflow.tcp.drop.v1',
    name: 'ringflow.tcp.drops',
    unit: '{segment}',
    kind: 'sum',
    description: 'TCP packets dropped by the kernel, by drop reason (enum skb_drop_reason name, e.g. NO_SOCKET).',
    value: () => 1,
    dimensions: [hostName, { key: 'ringflow.tcp.drop.reason', get: (e) => e.reason_name }],
  }),
  ...fsMetrics(() => fsMetricDepth),
  // RED metrics from spans: one duration histogram per kind of exchange. Its
  // count is the Requests, its count where error.type is set the Errors, its
  // buckets the Duration (as the semantic conventions intend: no separate counters).
  metric<SpanEvent>({
    topic: SPANS_TOPIC,
    name: 'http.server.request.duration',
    unit: 's',
    kind: 'histogram',
    description: 'Duration of HTTP server requests.',
    value: spanSeconds,
    accept: (e) => e.kind === 'SERVER' && isHttp(e) && measured(e),
    dimensions: spanDimensions(['error.type', 'http.request.method', 'http.response.status_code', 'http.route', 'network.protocol.version', 'url.scheme']),
  }),
  metric<SpanEvent>({
    topic: SPANS_TOPIC,
    name: 'http.client.request.duration',
    unit: 's',
    kind: 'histogram',
    description: 'Duration of HTTP client requests.',
    value: spanSeconds,
    accept: (e) => e.kind === 'CLIENT' && isHttp(e) && measured(e),
    dimensions: spanDimensions(['error.type', 'http.request.method', 'http.response.status_code', 'network.protocol.version', 'server.address', 'server.port', 'url.template']),
  }),
  ...rpcMetrics(rpcConventions(process.env.OTEL_SEMCONV_STABILITY_OPT_IN)),
  metric<SpanEvent>({
    topic: SPANS_TOPIC,
    name: 'dns.lookup.duration',
    unit: 's',
    kind: 'histogram',
    description: 'Duration of DNS queries, as the client saw them.',
    value: spanSeconds,
    accept: (e) => e.kind === 'CLIENT' && e.protocol === 'DNS' && measured(e),
    dimensions: spanDimensions(['dns.question.name', 'error.type']),
  }),
];

/**
 * The RPC duration metrics the conventions selected (semconv.ts rpcConventions,
 * from OTEL_SEMCONV_STABILITY_OPT_IN, read by the processor at start).
 *
 * Stable (release candidate, the default): rpc.{server,client}.call.duration
 * in s with rpc.system.name, rpc.method as the fully-qualified
 * 'package.Service/Method', rpc.response.status_code as the code's name,
 * error.type, server.address/port. The spans keep the v1.37 attribute names
 * (rpc.system, rpc.service, rpc.method = the method alone,
 * rpc.grpc.status_code), so the stable values are derived from them here.
 *
 * Old (v1.37, only with rpc/dup, beside the stable ones):
 * rpc.{server,client}.duration in ms with the span's attributes as they are.
 */
export function rpcMetrics(conv: RpcConventions): MetricDef<SpanEvent>[] {
  const rows: MetricDef<SpanEvent>[] = [];
  const server = (e: SpanEvent): boolean => e.kind === 'SERVER' && e.protocol === 'GRPC' && measured(e);
  const client = (e: SpanEvent): boolean => e.kind === 'CLIENT' && e.protocol === 'GRPC' && measured(e);
  if (conv.stable) {
    const stableDims = (): DimensionDef<SpanEvent>[] => withSpanResource([
      { key: 'error.type', get: (e) => e.attributes['error.type'] },
      {
        key: 'rpc.method',
        get: (e) => {
          const svc = e.attributes['rpc.service'];
          const m = e.attributes['rpc.method'];
          return svc !== undefined && m !== undefined ? `${svc}/${m}` : undefined;
        },
      },
      { key: 'rpc.response.status_code', get: (e) => grpcStatusName(e.attributes['rpc.grpc.status_code']) },
      { key: 'rpc.system.name', get: (e) => e.attributes['rpc.system'] },
      { key: 'server.address', get: (e) => e.attributes['server.address'] },
      { key: 'server.port', get: (e) => e.attributes['server.port'] },
    ]);
    rows.push(
      metric<SpanEvent>({
        topic: SPANS_TOPIC, name: 'rpc.server.call.duration', unit: 's', kind: 'histogram',
        description: 'Measures the duration of an incoming Remote Procedure Call (RPC).',
        value: spanSeconds, accept: server, dimensions: stableDims(),
      }),
      metric<SpanEvent>({
        topic: SPANS_TOPIC, name: 'rpc.client.call.duration', unit: 's', kind: 'histogram',
        description: 'Measures the duration of an outgoing Remote Procedure Call (RPC).',
        value: spanSeconds, accept: client, dimensions: stableDims(),
      }),
    );
  }
  if (conv.old) {
    const oldKeys = ['error.type', 'rpc.grpc.status_code', 'rpc.method', 'rpc.service', 'rpc.system', 'server.address', 'server.port'];
    rows.push(
      metric<SpanEvent>({
        topic: SPANS_TOPIC, name: 'rpc.server.duration', unit: 'ms', kind: 'histogram',
        description: 'Duration of inbound RPCs.', value: spanMillis, accept: server, dimensions: spanDimensions(oldKeys),
      }),
      metric<SpanEvent>({
        topic: SPANS_TOPIC, name: 'rpc.client.duration', unit: 'ms', kind: 'histogram',
        description: 'Duration of outbound RPCs.', value: spanMillis, accept: client, dimensions: spanDimensions(oldKeys),
      }),
    );
  }
  return rows;
}

/**
 * Block I/O: disk.io.direction (semconv: read | write only) for reads and
 * writes; the other operations have no direction and carry
 * ringflow.block.op = flush | discard | other instead. Exactly one of the
 * two is set, so `sum by disk.io.direction` is the data traffic.
 */
function blockDimensions(): DimensionDef<BlockIoEvent>[] {
  return [
    { key: 'disk.io.direction', get: (e) => BLOCK_DIRECTION[e.op] },
    hostName,
    command,
    { key: 'ringflow.block.op', get: (e) => (BLOCK_DIRECTION[e.op] === undefined ? e.op.toLowerCase() : undefined) },
    { key: 'system.device', get: (e) => `${e.dev_major}:${e.dev_minor}` }, // semconv; major:minor as /proc/diskstats and lsblk
  ];
}

// ---- fs (issue 12, docs/design/fs.md section 6) ----

/** FsOp symbol -> ringflow.fs.op, the class of the call (the syscall itself is ringflow.fs.syscall). */
const FS_OP_CLASS: Readonly<Record<string, string>> = {
  READ: 'read', PREAD: 'read', READV: 'read', PREADV: 'read',
  WRITE: 'write', PWRITE: 'write', WRITEV: 'write', PWRITEV: 'write',
  FSYNC: 'sync', FDATASYNC: 'sync', SYNC_FILE_RANGE: 'sync',
  OPEN: 'open',
};

/** Pure: read | write | sync | open | other (ftruncate, fallocate, rename, unlink, a symbol this code does not know). */
export function fsOpClass(op: string): string {
  return FS_OP_CLASS[op] ?? 'other';
}

/** FsOp symbol -> ringflow.fs.syscall, lower-cased once per symbol (not a fresh string per event: the series lookup hashes it). */
const FS_SYSCALL = new Map<string, string>();
function fsSyscall(op: string): string {
  let v = FS_SYSCALL.get(op);
  if (v === undefined) {
    v = op.toLowerCase();
    // symbols are a fixed set (schemas/fs.io.avsc FsOp); the bound is for a schema that grows
    if (FS_SYSCALL.size < 64) FS_SYSCALL.set(op, v);
  }
  return v;
}

/** rf_fs_flag bits the prefix reads (schemas/fs.io.avsc flags). */
const FS_PATH_CUT = 1;
const FS_PATH_FAILED = 16;
/** Prefix values that are not paths (a path starts with "/", so they cannot clash with one). */
export const FS_PREFIX_UNKNOWN = 'unknown';
export const FS_PREFIX_CUT = 'cut';

/**
 * Pure: ringflow.fs.path.prefix of a path, the directory a file's series is
 * counted under: its first `depth` directory components ("/var/lib/postgresql"
 * for /var/lib/postgresql/16/main/base/5/1259 at depth 3). The file's own name
 * is never part of it (/etc/passwd -> "/etc", /x -> "/"): a prefix that could
 * be a file name would make a series per temporary file. Empty components
 * ("//", a trailing "/") are skipped; a NUL (no Linux name has one) becomes
 * U+FFFD, as series keys separate values with NUL. A path the kernel could not walk
 * (PATH_FAILED, or empty) is "unknown"; a path cut at the front (PATH_CUT:
 * its first components are lost, so its start is not a prefix) is "cut".
 * Table-tested (test/unit/fs-metrics.test.ts).
 */
export function fsPathPrefix(path: string, flags: number, depth: number): string {
  if ((flags & FS_PATH_FAILED) !== 0 || path === '' || path[0] !== '/') return FS_PREFIX_UNKNOWN;
  if ((flags & FS_PATH_CUT) !== 0) return FS_PREFIX_CUT;
  const last = path.lastIndexOf('/');
  let out = '';
  let n = 0;
  let i = 1;
  while (n < depth && i < last) {
    let j = path.indexOf('/', i);
    if (j < 0 || j > last) j = last;
    if (j > i) {
      out += path.slice(i - 1, j);
      n++;
    }
    i = j + 1;
  }
  if (out === '') return '/';
  // series keys use NUL as their separator; Linux names never hold one, a broken record might
  return out.includes('\u0000') ? out.replaceAll('\u0000', '\ufffd') : out;
}

/**
 * The fs metrics' dimensions. The path prefix of consecutive events is
 * usually the same file's (the topic is keyed by file), so the last one is
 * remembered: one string scan per file change, not per event and metric.
 */
function fsDimensions(depthOf: () => number): DimensionDef<FsIoEvent>[] {
  let lastPath = '';
  let lastFlags = -1;
  let lastDepth = -1;
  let lastPrefix = '';
  const prefix = (e: FsIoEvent): string => {
    const flags = Number(e.flags);
    const depth = depthOf();
    if (e.path !== lastPath || flags !== lastFlags || depth !== lastDepth) {
      lastPath = e.path;
      lastFlags = flags;
      lastDepth = depth;
      lastPrefix = fsPathPrefix(e.path, flags, depth);
    }
    return lastPrefix;
  };
  return [
    hostName,
    command,
    { key: 'ringflow.fs.op', get: (e) => fsOpClass(e.op) },
    { key: 'ringflow.fs.path.prefix', get: prefix },
    { key: 'ringflow.fs.syscall', get: (e) => fsSyscall(e.op) }, // pread, fsync, sync_file_range ...: the FsOp symbol
    { key: 'system.filesystem.type', get: (e) => e.fs_type }, // semconv (ext4, tmpfs, overlay, fuse ...)
  ];
}

/**
 * The metrics of ringflow.fs.io.v1 with the path prefix `depth` components
 * deep (a function: METRICS reads setFsMetricDepth's). Slow calls are not
 * counted apart: the histogram's buckets count the calls over any threshold
 * a query picks (a fixed --slow setting would only repeat one of them).
 * Failed calls (ret < 0) are timed like the others, with no error attribute
 * (yet: the errno is in the record).
 * The path prefixes are capped per window (processor/cardinality.ts
 * DEFAULT_VALUE_CAPS: the top 100, the rest folded into "other").
 */
export function fsMetrics(depth: number | (() => number)): MetricDef<FsIoEvent>[] {
  if (typeof depth === 'number') checkFsDepth(depth);
  const dims = fsDimensions(typeof depth === 'number' ? () => depth : depth);
  return [
    metric<FsIoEvent>({
      topic: FS_IO_TOPIC,
      name: 'ringflow.fs.io.duration',
      unit: 's',
      kind: 'histogram',
      description: 'Duration of file syscalls on regular files (read/write/sync/open/other families), sys_enter to sys_exit, as the calling task waited for them.',
      value: (e) => ns(e.latency_ns),
      dimensions: dims,
    }),
    metric<FsIoEvent>({
      topic: FS_IO_TOPIC,
      name: 'ringflow.fs.io.size',
      unit: 'By',
      kind: 'sum',
      description: 'Bytes moved by file read and write syscalls on regular files (their return values; failed calls move none).',
      value: (e) => Number(e.ret),
      accept: (e) => Number(e.ret) > 0 && (FS_OP_CLASS[e.op] === 'read' || FS_OP_CLASS[e.op] === 'write'),
      dimensions: dims,
    }),
  ];
}

/**
 * The span's own attributes named in `keys` (each present only when the span
 * has it: error.type only on errors), plus host.name and service.name (the
 * observed process: its comm), sorted. Routes are already templates
 * (spans.ts routeOf), and the cardinality cap folds whatever exceeds top-K.
 */
function spanDimensions(keys: readonly string[]): DimensionDef<SpanEvent>[] {
  return withSpanResource(keys.map((key) => ({ key, get: (e: SpanEvent) => e.attributes[key] })));
}

/**
 * dims plus the observed process's Resource attributes (host.name,
 * service.name, container.id when it has one: the exporter lifts them to the
 * Resource), sorted. process.pid is left out: a series per process would
 * multiply the series by every restart and worker.
 */
function withSpanResource(dims: DimensionDef<SpanEvent>[]): DimensionDef<SpanEvent>[] {
  dims.push(hostName, { key: 'service.name', get: (e) => e.service_name }, { key: 'container.id', get: (e) => e.attributes['container.id'] });
  return dims.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** One metric series over one closed window. */
export interface SeriesPoint {
  name: string;
  unit: string;
  kind: MetricKind;
  /** Inclusive, wall-clock ns since the epoch. */
  windowStartNs: bigint;
  /** Exclusive. */
  windowEndNs: bigint;
  /** Sorted by key. */
  attributes: Attribute[];
  /** Events merged into this point (the cardinality cap ranks by it). */
  count: number;
  /** kind 'histogram'. */
  histogram?: ExpHistogramJSON;
  /** kind 'sum': total over the window (a delta). */
  sum?: number;
  /**
   * Events of this series that arrived after their own window had closed,
   * counted here: in the oldest window still open when they arrived (the one
   * holding the watermark). A point may carry only late events (count 0).
   */
  lateEvents: number;
}

/** Stable identity of a point's series and window: equal iff mergePoints may merge them. */
export function seriesKey(p: Pick<SeriesPoint, 'name' | 'windowStartNs' | 'windowEndNs' | 'attributes'>): string {
  return JSON.stringify([p.name, String(p.windowStartNs), String(p.windowEndNs), p.attributes]);
}

/**
 * Merges two points of the same series and window (partial aggregates from a
 * first stage): histograms merge exactly, sums, counts and late events add.
 * Neither input is modified.
 */
export function mergePoints(a: SeriesPoint, b: SeriesPoint, histogram: ExpHistogramOptions = {}): SeriesPoint {
  if (seriesKey(a) !== seriesKey(b) || a.kind !== b.kind || a.unit !== b.unit) {
    throw new Error(`mergePoints: different series or kind: ${seriesKey(a)} vs ${seriesKey(b)}`);
  }
  const out: SeriesPoint = {
    name: a.name,
    unit: a.unit,
    kind: a.kind,
    windowStartNs: a.windowStartNs,
    windowEndNs: a.windowEndNs,
    attributes: a.attributes.map(([k, v]): Attribute => [k, v]),
    count: a.count + b.count,
    lateEvents: a.lateEvents + b.lateEvents,
  };
  if (a.kind === 'histogram') {
    const h = ExpHistogram.fromJSON(a.histogram ?? emptyHistogram(), histogram);
    h.merge(ExpHistogram.fromJSON(b.histogram ?? emptyHistogram(), histogram));
    out.histogram = h.toJSON();
  } else {
    out.sum = (a.sum ?? 0) + (b.sum ?? 0);
  }
  return out;
}

function emptyHistogram(): ExpHistogramJSON {
  return new ExpHistogram().toJSON();
}

export interface TopicEvent {
  topic: string;
  /** The decoded record (schemas/*.avsc). */
  value: EventBase;
}

export type AddResult = 'ok' | 'late' | 'skipped';

export interface AggregatorCounters {
  /** Events merged into an open window. */
  events: number;
  /** Events whose window had closed: counted in points' lateEvents, not merged. */
  late: number;
  /** Events of a topic with no metric. */
  skipped: number;
  /** Metric values rejected (histogram value not finite or < 0, sum not a finite number >= 0). */
  invalid: number;
}

export interface WindowAggregatorOptions extends WindowAssignerOptions {
  /** Default METRICS. */
  metrics?: readonly MetricDef[];
  histogram?: ExpHistogramOptions;
}

/** JSON-safe snapshot of a WindowAggregator: BigInts as strings, histograms as JSON. */
export interface WindowAggregatorState {
  windows: WindowAssignerState;
  open: {
    startNs: string;
    series: {
      name: string;
      attributes: Attribute[];
      count: number;
      lateEvents: number;
      histogram?: ExpHistogramJSON;
      /** The histogram's exact sum (ExpHistogram.sumParts): restored exactly, so later records sum as without the restore. */
      sumParts?: number[];
      sum?: number;
    }[];
  }[];
  counters: AggregatorCounters;
}

interface Series {
  attributes: Attribute[];
  count: number;
  late: number;
  hist: ExpHistogram | null;
  sum: number;
}

interface Compiled {
  def: MetricDef;
  index: number;
  histogram: boolean;
  dims: readonly DimensionDef<EventBase>[];
}

interface WindowData {
  window: Window;
  /** Per metric index: series by dimension key. */
  series: Map<string, Series>[];
  /**
   * Per metric index: the same series by dimension value, one Map level per
   * dimension (undefined for an absent value). A lookup cache in front of
   * `series`: building the NUL-joined key for every event and hashing it (a
   * fresh concatenated string each time) was the aggregator's largest cost;
   * the values' own hashes are computed once per string. Filled on a miss
   * from `series`, which stays the source of truth (point order, restore).
   */
  byValue: ValueTrie[];
}

interface ValueTrie extends Map<string | undefined, ValueTrie | Series> {}

/**
 * Aggregates the events of ONE partition into tumbling event-time windows:
 * create one per assigned partition, so its watermark, state and restore go
 * with the partition through rebalances. Points of one series and window
 * coming from several partitions or instances merge with mergePoints.
 */
export class WindowAggregator {
  readonly assigner: WindowAssigner;
  readonly counters: AggregatorCounters = { events: 0, late: 0, skipped: 0, invalid: 0 };
  private readonly metrics: readonly Compiled[];
  private readonly byTopic = new Map<string, Compiled[]>();
  private readonly histOpts: ExpHistogramOptions;
  private readonly windows = new Map<Window, WindowData>();
  private lastWindow: Window | null = null;
  private lastData: WindowData | null = null;

  constructor(opts: WindowAggregatorOptions = {}) {
    this.assigner = new WindowAssigner(opts);
    this.histOpts = opts.histogram ?? {};
    this.metrics = (opts.metrics ?? METRICS).map((def, index) => ({ def, index, histogram: def.kind === 'histogram', dims: def.dimensions }));
    for (const m of this.metrics) {
      let l = this.byTopic.get(m.def.topic);
      if (!l) this.byTopic.set(m.def.topic, (l = []));
      l.push(m);
    }
  }

  get watermarkNs(): bigint | null {
    return this.assigner.watermarkNs;
  }

  /** Whether some metric reads `topic`. */
  handles(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  add(ev: TopicEvent): AddResult {
    return this.addAt(ev.topic, ev.value, ev.value.boot_time_ns + ev.value.ts_ns);
  }

  /**
   * add() with the event time (boot_time_ns + ts_ns) computed by the caller:
   * for events from processor/fast-decode.ts, whose longs may be numbers
   * (the METRICS table reads them only through Number() and templates).
   */
  addAt(topic: string, e: EventBase, eventNs: bigint): AddResult {
    const ms = this.byTopic.get(topic);
    if (ms === undefined) {
      this.counters.skipped++;
      return 'skipped';
    }
    const w = this.assigner.observe(eventNs);
    if (w === null) {
      const data = this.dataOf(this.assigner.oldestOpen());
      for (let i = 0; i < ms.length; i++) if (ms[i]!.def.accept?.(e) !== false) this.seriesOf(data, ms[i]!, e).late++;
      this.counters.late++;
      return 'late';
    }
    const data = this.dataOf(w);
    for (let i = 0; i < ms.length; i++) {
      const m = ms[i]!;
      if (m.def.accept !== undefined && !m.def.accept(e)) continue;
      const v = m.def.value(e);
      if (!(v >= 0 && v < Infinity)) {
        this.counters.invalid++;
        continue;
      }
      const s = this.seriesOf(data, m, e);
      s.count++;
      if (m.histogram) s.hist!.record(v);
      else s.sum += v;
    }
    this.counters.events++;
    return 'ok';
  }

  /**
   * Merges a partial aggregate of stage 1 (processor/partial.ts): every event
   * of one topic and host in one window, from one stage-1 transaction.
   * Lateness is decided for the partial as a whole, as it would be for each
   * of its events judged against the watermark before it: its window closed
   * -> each series counts its events late (in the oldest open window) and
   * nothing is merged; else everything merges. Then the watermark advances
   * by its latest event (observing the max decides both: its own window is
   * the partial's). Throws on a partial that does not fit this aggregator
   * (other window size, unknown metric or attributes).
   */
  addPartial(p: PartialWindow): AddResult {
    const ms = this.byTopic.get(p.topic);
    if (ms === undefined) {
      this.counters.skipped += p.events;
      return 'skipped';
    }
    const own = this.assigner.windowOf(p.maxEventNs);
    if (own.startNs !== p.windowStartNs || own.endNs !== p.windowEndNs || p.minEventNs < own.startNs || p.minEventNs > p.maxEventNs) {
      throw new RangeError(`partial of window [${p.windowStartNs}, ${p.windowEndNs}) (events ${p.minEventNs}..${p.maxEventNs}) does not fit windows of ${this.assigner.sizeNs} ns`);
    }
    // everything checked before anything changes
    const defs = p.series.map((s) => {
      const m = ms.find((x) => x.def.name === s.name);
      if (m === undefined) throw new RangeError(`partial: metric ${s.name} does not read ${p.topic}`);
      if (m.histogram !== (s.histogram !== undefined)) throw new RangeError(`partial: metric ${s.name} is a ${m.def.kind}`);
      if (!(Number.isInteger(s.count) && s.count >= 0 && s.events >= s.count)) throw new RangeError(`partial: ${s.name}: count ${s.count} of ${s.events} events`);
      return m;
    });
    const keys = p.series.map((s, i) => attributesKey(defs[i]!, s.attributes));
    const w = this.assigner.observe(p.maxEventNs);
    if (w === null) {
      const data = this.dataOf(this.assigner.oldestOpen());
      for (let i = 0; i < p.series.length; i++) {
        const s = p.series[i]!;
        if (s.events > 0) this.seriesByAttributes(data, defs[i]!, keys[i]!, s.attributes).late += s.events;
      }
      this.counters.late += p.events;
      return 'late';
    }
    const data = this.dataOf(w);
    for (let i = 0; i < p.series.length; i++) {
      const s = p.series[i]!;
      const m = defs[i]!;
      this.counters.invalid += s.events - s.count;
      // every value invalid: the per-event path would not have created the series either
      if (s.count === 0) continue;
      const series = this.seriesByAttributes(data, m, keys[i]!, s.attributes);
      series.count += s.count;
      if (m.histogram) series.hist!.merge(s.histogram!);
      else series.sum += s.sum ?? 0;
    }
    this.counters.events += p.events;
    return 'ok';
  }

  /** Points of every window the watermark has closed since the last call. */
  advance(): SeriesPoint[] {
    return this.emit(this.assigner.advance());
  }

  /** Idle advance by processing time (see WindowAssigner.advanceTo for the caveats). */
  advanceTo(wallNs: bigint): SeriesPoint[] {
    return this.emit(this.assigner.advanceTo(wallNs));
  }

  state(): WindowAggregatorState {
    return {
      windows: this.assigner.state(),
      open: this.assigner.openWindows().map((w) => ({
        startNs: String(w.startNs),
        series: this.pointsOf(w, true).map((p) => {
          const s: WindowAggregatorState['open'][number]['series'][number] = { name: p.name, attributes: p.attributes, count: p.count, lateEvents: p.lateEvents };
          if (p.histogram) s.histogram = p.histogram;
          if (p.sumParts) s.sumParts = p.sumParts;
          if (p.sum !== undefined) s.sum = p.sum;
          return s;
        }),
      })),
      counters: { ...this.counters },
    };
  }

  /** A new aggregator continuing from state(); `opts` must name the same metrics and histogram options. */
  static restore(state: WindowAggregatorState, opts: Omit<WindowAggregatorOptions, 'sizeMs' | 'latenessMs'> = {}): WindowAggregator {
    const assigner = WindowAssigner.restore(state.windows);
    const a = new WindowAggregator({
      ...opts,
      sizeMs: Number(assigner.sizeNs / 1_000_000n),
      latenessMs: Number(assigner.latenessNs / 1_000_000n),
    });
    (a as { assigner: WindowAssigner }).assigner = assigner;
    Object.assign(a.counters, state.counters);
    const byName = new Map(a.metrics.map((m) => [m.def.name, m]));
    const windows = new Map(assigner.openWindows().map((w) => [String(w.startNs), w]));
    for (const ow of state.open) {
      const w = windows.get(ow.startNs);
      if (!w) throw new Error(`aggregator state: window ${ow.startNs} is not open in the window state`);
      const data = a.dataOf(w);
      for (const s of ow.series) {
        const m = byName.get(s.name);
        if (!m) throw new Error(`aggregator state: unknown metric ${s.name}`);
        const values = m.dims.map((d) => s.attributes.find(([k]) => k === d.key)?.[1]);
        const series = a.seriesFor(data, m, dimensionKey(values), () => s.attributes.map(([k, v]): Attribute => [k, v]));
        series.count = s.count;
        series.late = s.lateEvents;
        if (m.histogram) {
          // the exact sum when the state has it (else the rounded one: states written before it)
          series.hist = ExpHistogram.fromJSON(s.sumParts ? { ...(s.histogram ?? emptyHistogram()), sum: 0 } : (s.histogram ?? emptyHistogram()), a.histOpts);
          if (s.sumParts) series.hist.addSumParts(s.sumParts);
        }
        else series.sum = s.sum ?? 0;
      }
    }
    return a;
  }

  private emit(closed: Window[]): SeriesPoint[] {
    const out: SeriesPoint[] = [];
    for (const w of closed) {
      out.push(...this.pointsOf(w));
      this.windows.delete(w);
      if (this.lastWindow === w) {
        this.lastWindow = null;
        this.lastData = null;
      }
    }
    return out;
  }

  /** Points of window `w`, by metric (table order) then attributes. */
  private pointsOf(w: Window, withSumParts: true): (SeriesPoint & { sumParts?: number[] })[];
  private pointsOf(w: Window): SeriesPoint[];
  private pointsOf(w: Window, withSumParts = false): (SeriesPoint & { sumParts?: number[] })[] {
    const data = this.windows.get(w);
    if (!data) return [];
    const out: (SeriesPoint & { sumParts?: number[] })[] = [];
    for (const m of this.metrics) {
      const map = data.series[m.index]!;
      const keys = [...map.keys()].sort();
      for (const k of keys) {
        const s = map.get(k)!;
        const p: SeriesPoint = {
          name: m.def.name,
          unit: m.def.unit,
          kind: m.def.kind,
          windowStartNs: w.startNs,
          windowEndNs: w.endNs,
          attributes: s.attributes.map(([k, v]): Attribute => [k, v]),
          count: s.count,
          lateEvents: s.late,
        };
        if (m.histogram) {
          p.histogram = s.hist!.toJSON();
          if (withSumParts) (p as SeriesPoint & { sumParts?: number[] }).sumParts = s.hist!.sumParts();
        } else p.sum = s.sum;
        out.push(p);
      }
    }
    return out;
  }

  private dataOf(w: Window): WindowData {
    if (w === this.lastWindow) return this.lastData!;
    let d = this.windows.get(w);
    if (!d) {
      d = { window: w, series: this.metrics.map(() => new Map<string, Series>()), byValue: this.metrics.map((): ValueTrie => new Map()) };
      this.windows.set(w, d);
    }
    this.lastWindow = w;
    this.lastData = d;
    return d;
  }

  private seriesOf(data: WindowData, m: Compiled, e: EventBase): Series {
    const dims = m.dims;
    const n = dims.length;
    if (n === 0) return this.seriesByKey(data, m, e);
    let node = data.byValue[m.index]!;
    for (let i = 0; i < n - 1; i++) {
      const v = dims[i]!.get(e);
      let next = node.get(v) as ValueTrie | undefined;
      if (next === undefined) node.set(v, (next = new Map()));
      node = next;
    }
    const v = dims[n - 1]!.get(e);
    let s = node.get(v) as Series | undefined;
    if (s === undefined) node.set(v, (s = this.seriesByKey(data, m, e)));
    return s;
  }

  private seriesByKey(data: WindowData, m: Compiled, e: EventBase): Series {
    return this.seriesFor(data, m, eventKey(m.dims, e), () => eventAttributes(m.dims, e));
  }

  /** The series of `attributes` (as a point or partial names them: sorted, absent dimensions left out). */
  private seriesByAttributes(data: WindowData, m: Compiled, key: string, attributes: readonly Attribute[]): Series {
    return this.seriesFor(data, m, key, () => attributes.map(([k, v]): Attribute => [k, v]));
  }

  private seriesFor(data: WindowData, m: Compiled, key: string, attributes: () => Attribute[]): Series {
    const map = data.series[m.index]!;
    let s = map.get(key);
    if (s === undefined) {
      s = { attributes: attributes(), count: 0, late: 0, hist: m.histogram ? new ExpHistogram(this.histOpts) : null, sum: 0 };
      map.set(key, s);
    }
    return s;
  }
}

/** The series key of `attributes` (sorted, absent dimensions left out) under metric `m`; throws if they are not its dimensions. */
function attributesKey(m: Compiled, attributes: readonly Attribute[]): string {
  const values = m.dims.map((d) => attributes.find(([k]) => k === d.key)?.[1]);
  let n = 0;
  for (const v of values) if (v !== undefined) n++;
  if (n !== attributes.length) throw new RangeError(`${m.def.name}: attributes ${JSON.stringify(attributes)} are not its dimensions`);
  return dimensionKey(values);
}

/**
 * A series' key: each dimension value then NUL; an absent value is U+0001
 * (C-string values never hold NUL, nor are they exactly U+0001).
 */
function dimensionKey(values: readonly (string | undefined)[]): string {
  let key = '';
  for (const v of values) key += v === undefined ? '\u0001\u0000' : v + '\u0000';
  return key;
}

/** dimensionKey of event `e`'s values, without an array in between (hot path). */
function eventKey(dims: readonly DimensionDef<EventBase>[], e: EventBase): string {
  let key = '';
  for (let i = 0; i < dims.length; i++) {
    const v = dims[i]!.get(e);
    key += v === undefined ? '\u0001\u0000' : v + '\u0000';
  }
  return key;
}

/** Event `e`'s attributes under `dims`, absent dimensions left out. */
function eventAttributes(dims: readonly DimensionDef<EventBase>[], e: EventBase): Attribute[] {
  const attrs: Attribute[] = [];
  for (const d of dims) {
    const v = d.get(e);
    if (v !== undefined) attrs.push([d.key, v]);
  }
  return attrs;
}

/** One series of a PartialWindow. */
export interface PartialSeries {
  /** Metric name (a METRICS row of the partial's topic). */
  name: string;
  /** Sorted by key, as the point will carry them. */
  attributes: Attribute[];
  /** Values merged: events the metric accepted with a valid value. */
  count: number;
  /** Events the metric accepted, valid value or not: what the series counts late if the partial is late. */
  events: number;
  /** Histogram metrics: the values. */
  histogram?: ExpHistogram;
  /** Sum metrics: their total. */
  sum?: number;
}

/**
 * A partial aggregate: what the events of one input topic from one host in
 * one window add to stage 2's windows (WindowAggregator.addPartial). Stage 1
 * builds one per (topic, host, window) from the records of a transaction.
 */
export interface PartialWindow {
  topic: string;
  host: string;
  windowStartNs: bigint;
  windowEndNs: bigint;
  /** Events of the topic in the window, whether a metric took them or not (they all move the watermark). */
  events: number;
  minEventNs: bigint;
  maxEventNs: bigint;
  /** Every series some event touched, by metric (table order) then first event. */
  series: PartialSeries[];
}

interface PartialGroup {
  readonly pw: PartialWindow;
  /** Per metric of the topic (index in byTopic's list): series by dimension key. */
  readonly series: Map<string, PartialSeries>[];
}

/**
 * Stage 1's side of pre-aggregation: groups events by (topic, host, window)
 * into PartialWindows, with the METRICS table's accept, value and dimension
 * functions and the window assignment WindowAggregator uses, without any
 * watermark (lateness is stage 2's decision, per partial). Events of topics
 * no metric reads are not taken (add returns false).
 */
export class PartialAggregator {
  private readonly sizeNs: bigint;
  private readonly histOpts: ExpHistogramOptions;
  private readonly byTopic = new Map<string, MetricDef[]>();
  private groups = new Map<string, PartialGroup>();
  private last: PartialGroup | null = null;
  private n = 0;
  private nSeries = 0;

  constructor(opts: { sizeMs: number; metrics?: readonly MetricDef[]; histogram?: ExpHistogramOptions }) {
    this.sizeNs = new WindowAssigner({ sizeMs: opts.sizeMs }).sizeNs;
    this.histOpts = opts.histogram ?? {};
    for (const m of opts.metrics ?? METRICS) {
      let l = this.byTopic.get(m.topic);
      if (!l) this.byTopic.set(m.topic, (l = []));
      l.push(m);
    }
  }

  handles(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  /** Events added since the last take(). */
  get size(): number {
    return this.n;
  }

  /** Series held (what take() will carry). */
  get series(): number {
    return this.nSeries;
  }

  /** Adds one event (time `eventNs`, as WindowAggregator.addAt takes it); false if no metric reads `topic`. */
  add(topic: string, host: string, e: EventBase, eventNs: bigint): boolean {
    const defs = this.byTopic.get(topic);
    if (defs === undefined) return false;
    let g = this.last;
    if (g === null || g.pw.topic !== topic || g.pw.host !== host || eventNs < g.pw.windowStartNs || eventNs >= g.pw.windowEndNs) {
      const r = eventNs % this.sizeNs;
      const start = eventNs - (r < 0n ? r + this.sizeNs : r);
      const key = `${topic}\u0000${host}\u0000${start}`;
      g = this.groups.get(key) ?? null;
      if (g === null) {
        g = {
          pw: { topic, host, windowStartNs: start, windowEndNs: start + this.sizeNs, events: 0, minEventNs: eventNs, maxEventNs: eventNs, series: [] },
          series: defs.map(() => new Map()),
        };
        this.groups.set(key, g);
      }
      this.last = g;
    }
    const pw = g.pw;
    pw.events++;
    this.n++;
    if (eventNs < pw.minEventNs) pw.minEventNs = eventNs;
    if (eventNs > pw.maxEventNs) pw.maxEventNs = eventNs;
    for (let i = 0; i < defs.length; i++) {
      const d = defs[i]!;
      if (d.accept !== undefined && !d.accept(e)) continue;
      const key = eventKey(d.dimensions, e);
      const map = g.series[i]!;
      let s = map.get(key);
      if (s === undefined) {
        s = { name: d.name, attributes: eventAttributes(d.dimensions, e), count: 0, events: 0 };
        if (d.kind === 'histogram') s.histogram = new ExpHistogram(this.histOpts);
        else s.sum = 0;
        map.set(key, s);
        this.nSeries++;
      }
      s.events++;
      const v = d.value(e);
      if (!(v >= 0 && v < Infinity)) continue;
      s.count++;
      if (s.histogram !== undefined) s.histogram.record(v);
      else s.sum! += v;
    }
    return true;
  }

  /**
   * The partials of everything added since the last call, by window start
   * (then in the order their first events came); then starts afresh. Earlier
   * windows first: stage 2 judges each partial against the watermark the
   * ones before it moved, and a later window's partial would otherwise make
   * an earlier one of the same transaction late although none of its events
   * was (with disorder below the lateness).
   */
  take(): PartialWindow[] {
    const out: PartialWindow[] = [];
    for (const g of this.groups.values()) {
      for (const m of g.series) for (const s of m.values()) g.pw.series.push(s);
      out.push(g.pw);
    }
    out.sort((a, b) => (a.windowStartNs < b.windowStartNs ? -1 : a.windowStartNs > b.windowStartNs ? 1 : 0));
    this.groups = new Map();
    this.last = null;
    this.n = 0;
    this.nSeries = 0;
    return out;
  }
}
