/**
 * Span correlation: the decoded `ringflow.l7.v1` records of ONE partition in,
 * OpenTelemetry spans (`ringflow.spans.v1`, schemas/spans.avsc) out. Pure and
 * deterministic: no clock, no randomness; the same records in the same order
 * give the same spans, ids included.
 *
 * Pairing, per observer = (host, boot time, tgid, conn_id):
 *   HTTP/1    the n-th response answers the n-th request (stream_id is the
 *             ordinal the parser gave each message on its direction). A
 *             response with ordinal n while requests < n wait means those
 *             responses were missed (a capture gap): the requests end at once
 *             as spans marked ringflow.response.missed, status UNSET (our
 *             loss, not the application's error). A request ordinal that goes
 *             back (a new parse of the connection) does the same to the waiting ones.
 *   HTTP/2    by stream id; gRPC is HTTP/2 with its own attributes.
 *   DNS       by (observer, peer address, peer port, message id): one UDP
 *             socket talks to many resolvers. Retransmits (same id) pair FIFO.
 *   EXCHANGE  records (HTTP/1 paired in the kernel, one record per exchange)
 *             are their request followed at once by their response, paired
 *             with each other: the same span, ids, links and RED metrics as
 *             the REQUEST + RESPONSE pair. One without a response is its
 *             REQUEST alone (a later RESPONSE may answer it; else it times out).
 * A response never pairs with a request that started after it (same clock).
 * A request with no response within `timeoutNs` becomes an ERROR span ('no
 * response'); a response with no waiting request is counted and dropped.
 * "Within" is judged by the time of its own host's records (same host and
 * boot time) that came after it, or by an idle raise made after it arrived:
 * a request delivered below an earlier raise (held by its collector through
 * a broker outage) waits for its response, which follows it in the partition
 * (soak finding 5; see expire()), and one host catching up first after an
 * outage, far ahead of another on the same partition, does not time out the
 * other's requests (their responses are still held by their collector). Only
 * a host lagging the partition by more than `hostLagNs` is overruled by the
 * others' time, so that a host gone silent does not hold its requests forever.
 * A span's link wait runs on the records' own time (or ends at a later raise).
 *
 * Linking without header injection: when the client side and the server side
 * of one exchange are both observed (same partition, as the key is the
 * connection), the server span becomes a child of the client span. Same
 * exchange = same transport, client endpoint, server endpoint, protocol
 * family and stream id / ordinal / DNS id, plus the same method and path
 * (gRPC method, DNS question), so ordinals that drifted apart (one collector
 * started mid-connection) do not link the wrong pair. Time: on one clock
 * (same host and boot time) the server's request starts no earlier than the
 * client's and its response ends no later; across hosts clocks only agree
 * within `clockSkewNs`, so the same test is applied with that slack. A server
 * span whose own traceparent names another trace is not linked. Among several
 * candidates the one whose start is nearest wins (then the smaller span id).
 * To allow this, every completed span waits `linkDelayNs` of event time
 * before it is emitted, and a client span stays a candidate meanwhile.
 *
 * Trace context: a valid W3C traceparent in the request joins its trace
 * (parent = its parent-id, tracestate kept); a linked server span takes the
 * client span's trace and has it as parent; otherwise a new trace. Ids are
 * hashes of the request's identity, never random, and do not depend on the
 * outcome (matched, timed out, missed): a replay regenerates them.
 *
 * Time and exactly-once. Event time is wall time (boot_time_ns + ts_ns). The
 * watermark is max(wall time of the records added - latenessNs, raises) and
 * every decision (timeout, the end of a span's link wait) is taken in add(),
 * record by record, against it: so the outcome depends on the order of the
 * records only, not on when advance() is called (as processor/window.ts).
 * advance(w) may raise the watermark for a partition gone idle; such a raise
 * is logged with its position and carried in the checkpoint, so a replay
 * takes it at the same point. A consumer commits minPendingOffset() (the
 * first record a waiting request or span still needs, including the client
 * span a waiting server span links to) with checkpoint(): the watermark state
 * just before that record, the raises since, and what was already emitted
 * (every span whose wait ended at or below the last advance()'s watermark and
 * whose records all came before that advance). Restarting there re-executes
 * exactly; spans already emitted are rebuilt and suppressed.
 *
 * Not exact under overload: past maxPending the oldest waiting request (else
 * span) is dropped; a replay, holding fewer items, may drop other ones: a
 * span can then be lost, never emitted twice (spans end their wait no later
 * than deadline + linkDelay whatever their outcome, which keeps suppression
 * sound when a replay decides differently; a request delivered below a raise
 * is the exception: its timeout waits for the watermark that decides it, so
 * under overload such a span may, rarely, be emitted twice). The same holds
 * if more than MAX_RAISES idle raises fall inside one pending interval.
 */
import { createHash } from 'node:crypto';
import { encodeRecord, schemaRegistry } from '../schemas/index.ts';
import { attributeAddress, GRPC_CODES } from './semconv.ts';

export const SPANS_SCHEMA_ID = 'spans';
export const SPANS_TOPIC = 'ringflow.spans.v1';

type Role = 'UNKNOWN' | 'CLIENT' | 'SERVER';
export type L7RecordProtocol = 'UNKNOWN' | 'HTTP1' | 'HTTP2' | 'GRPC' | 'DNS';

/** A decoded ringflow.l7.v1 record (schemas/l7.avsc) as decodeRecord returns it: longs as BigInt. */
export interface L7Record {
  readonly host: string;
  readonly boot_time_ns: bigint;
  readonly ts_ns: bigint;
  readonly end_ns: bigint;
  readonly pid: bigint;
  readonly tgid: bigint;
  readonly comm: string;
  /** service.name of the process (schemas/l7.avsc: OTEL_SERVICE_NAME, script or executable); empty when the collector could not read it. */
  readonly process_name?: string;
  /** container.id of the process ('' or absent: none known). */
  readonly container_id?: string;
  readonly conn_id: bigint;
  readonly role: Role;
  readonly transport: 'UNKNOWN' | 'TCP' | 'UDP';
  readonly local_addr: string;
  readonly local_port: number;
  readonly remote_addr: string;
  readonly remote_port: number;
  readonly protocol: L7RecordProtocol;
  /** EXCHANGE: a request and its response in one record (schemas/l7.avsc): its own fields are the request's, resp_* and the response-only ones (status, grpc_status, dns_rcode) the response's. */
  readonly kind: 'REQUEST' | 'RESPONSE' | 'EXCHANGE';
  readonly stream_id: bigint;
  readonly method: string | null;
  readonly path: string | null;
  readonly status: number | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly grpc_service: string | null;
  readonly grpc_method: string | null;
  readonly grpc_status: number | null;
  readonly dns_name: string | null;
  readonly dns_type: string | null;
  readonly dns_rcode: string | null;
  /** DNS paired in the kernel (EXCHANGE): sends of the query after the first, same id and peer (null or absent: not known). */
  readonly dns_retries?: number | null;
  readonly body_bytes: bigint;
  readonly truncated: boolean;
  /** HTTP1: '1.0' or '1.1' from the start line ('' or absent: not HTTP/1, or a record from before the field). */
  readonly protocol_version?: string;
  /** EXCHANGE: the response's times, body size, headers, truncated flag and version; resp_end_ns null (or absent: older records) when it got no response. */
  readonly resp_start_ns?: bigint | null;
  readonly resp_end_ns?: bigint | null;
  readonly resp_body_bytes?: bigint | null;
  readonly resp_headers?: Readonly<Record<string, string>>;
  readonly resp_truncated?: boolean;
  readonly resp_protocol_version?: string;
  /** EXCHANGE: how it ended (RESPONDED, CLOSED, LOST, REQ_ONLY; UNKNOWN); null on REQUEST and RESPONSE. */
  readonly outcome?: string | null;
}

/**
 * The response half of an EXCHANGE record as the RESPONSE record of the pair
 * would have it, or null when the exchange has none (no response before
 * close, handed over, lost): then the record is exactly its REQUEST.
 */
export function exchangeResponse(r: L7Record): L7Record | null {
  if (r.resp_end_ns === null || r.resp_end_ns === undefined) return null;
  return {
    ...r,
    kind: 'RESPONSE',
    ts_ns: r.resp_start_ns ?? r.resp_end_ns,
    end_ns: r.resp_end_ns,
    method: null,
    path: null,
    headers: r.resp_headers ?? {},
    body_bytes: r.resp_body_bytes ?? 0n,
    truncated: r.resp_truncated ?? false,
    protocol_version: r.resp_protocol_version ?? '',
  };
}

/** The process's executable name, else its thread's comm (records from before process_name existed). */
function serviceName(r: L7Record): string {
  return r.process_name || r.comm;
}

export type SpanKind = 'INTERNAL' | 'SERVER' | 'CLIENT';
export type SpanStatus = 'UNSET' | 'OK' | 'ERROR';

/** One span: the fields of schemas/spans.avsc, plus its Kafka key. */
export interface Span {
  /** Kafka key: the connection, as the l7 records' key (not a field of the record). */
  key: string;
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  trace_state: string | null;
  trace_flags: number;
  name: string;
  kind: SpanKind;
  start_ns: bigint;
  end_ns: bigint;
  status: SpanStatus;
  status_message: string | null;
  /** Sorted by key; values as text (see NUMERIC_SPAN_ATTRIBUTES). */
  attributes: Record<string, string>;
  service_name: string;
  host: string;
  protocol: L7RecordProtocol;
}

/** Attributes whose text is an integer: exporters send them as int. */
export const NUMERIC_SPAN_ATTRIBUTES: ReadonlySet<string> = new Set([
  'client.port', 'http.request.body.size', 'http.response.body.size', 'http.response.status_code',
  'network.peer.port', 'process.pid', 'rpc.grpc.status_code', 'server.port',
]);
/** Attributes whose text is 'true': exporters send them as bool. */
export const BOOLEAN_SPAN_ATTRIBUTES: ReadonlySet<string> = new Set(['ringflow.response.missed', 'ringflow.truncated']);

export interface SpanCorrelatorOptions {
  /** A request with no response this long after its start (event time) ends as an ERROR span. */
  timeoutNs: bigint;
  /** How long (event time) a completed span waits for its counterpart before it is emitted. */
  linkDelayNs: bigint;
  /** Watermark = max wall time of the records - this (default 5 s, as processor/window.ts). */
  latenessNs?: bigint;
  /** Clock disagreement tolerated between two hosts when linking (default 1 s). */
  clockSkewNs?: bigint;
  /** Waiting requests + waiting spans held at most (default 100 000): the oldest is dropped past it. */
  maxPending?: number;
  /**
   * A request times out by its own host's records; past this much behind the
   * partition's records (a host gone silent, or lagging) the others' time
   * decides too (default 5 min: longer than the broker outages collectors ride out).
   */
  hostLagNs?: bigint;
  /** checkpoint() of a previous instance: continue from it (the caller re-reads from its offset). */
  checkpoint?: string;
}

export interface SpanCounters {
  requests: number;
  responses: number;
  /** Spans returned by advance(). */
  spans: number;
  /** Responses with no waiting request (never seen, timed out already, or before the replay's start). */
  unmatchedResponses: number;
  /** Requests that got no response within timeoutNs: ERROR spans. */
  timeouts: number;
  /** Requests whose HTTP/1 response was missed (an ordinal hole): spans marked ringflow.response.missed. */
  missedResponses: number;
  /** Requests or spans dropped to stay within maxPending. */
  evicted: number;
  /** Server spans emitted as children of an observed client span. */
  linked: number;
  /** Spans emitted in the trace of their request's traceparent. */
  traceparentJoins: number;
  /** Spans rebuilt by a replay and not emitted again (emitted before the checkpoint). */
  suppressed: number;
  /** Records ignored: offset below the position (already added), or protocol UNKNOWN. */
  skipped: number;
  /** Idle raises left out of the checkpoint (more than MAX_RAISES in one pending interval). */
  raisesDropped: number;
}

export const DEFAULT_SPAN_LATENESS_NS = 5_000_000_000n;
export const DEFAULT_CLOCK_SKEW_NS = 1_000_000_000n;
export const DEFAULT_MAX_PENDING = 100_000;
export const DEFAULT_HOST_LAG_NS = 300_000_000_000n;
/** Idle raises carried in a checkpoint at most (keeps it well under 1 KiB). */
export const MAX_RAISES = 12;

// ---------------------------------------------------------------------------
// Names, routes, trace context

/** RFC 9110 methods plus PATCH: the conventions' known methods; others are _OTHER. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

/** Codes that make a gRPC SERVER span an error (semconv rpc spans, v1.37); any non-zero code does for a client. */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);
/**
 * DNS answers that are not errors. NXDOMAIN is one (issue 10, and the
 * conventions: a lookup that found no such name failed, getaddrinfo's
 * host_not_found), as are SERVFAIL, REFUSED and the rest.
 */
const DNS_NOT_ERRORS = new Set(['NOERROR']);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NUMBER = /^[+-]?\d+(?:[.,]\d+)?$/;
const HEX = /^(?:0x)?[0-9a-f]+$/i;

/**
 * Whether a path segment names an instance rather than a resource, so that
 * routes stay low-cardinality: numbers, UUIDs, hex of 16+ digits (hashes,
 * ObjectIds) or of 7+ mixing digits and letters (short commit ids), anything
 * with an '@' (e-mail addresses), anything with 4+ digits (order numbers,
 * dates, hashed asset names), long opaque tokens (20+ chars of base64url with
 * a digit). Words, slugs and versions like v2 stay.
 */
export function isIdSegment(seg: string): boolean {
  if (seg === '') return false;
  if (NUMBER.test(seg) || UUID.test(seg) || seg.includes('@')) return true;
  if (HEX.test(seg) && (seg.length >= 16 || (seg.length >= 7 && /\d/.test(seg) && /[a-f]/i.test(seg)))) return true;
  let digits = 0;
  for (let i = 0; i < seg.length; i++) if (seg.charCodeAt(i) >= 48 && seg.charCodeAt(i) <= 57) digits++;
  if (digits >= 4) return true;
  return seg.length >= 20 && digits > 0 && /^[A-Za-z0-9_-]+$/.test(seg);
}

/** The path of a request target: query and fragment dropped; an absolute-form target ('http://h/p') loses its scheme and authority. */
export function urlPath(target: string): string {
  let t = target;
  const cut = t.search(/[?#]/);
  if (cut >= 0) t = t.slice(0, cut);
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(t);
  if (scheme) t = t.slice(scheme[0].length) || '/';
  return t;
}

/** Route template of a request target: its path, id-like segments (isIdSegment) as {id}. '/users/42?x=1' -> '/users/{id}'. */
export function routeOf(target: string): string {
  const path = urlPath(target);
  if (!path.startsWith('/')) return path; // '*' (OPTIONS *), authority-form
  return path.split('/').map((s) => (isIdSegment(s) ? '{id}' : s)).join('/');
}

export interface TraceParent {
  traceId: string;
  parentId: string;
  flags: number;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * W3C Trace Context traceparent (section 3.2): version-traceid-parentid-flags,
 * lowercase hex. Version ff and all-zero ids are invalid; version 00 has
 * nothing after the flags; a later version may (its extra fields are ignored).
 */
export function parseTraceparent(value: string | undefined): TraceParent | null {
  if (value === undefined) return null;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return null;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null;
  if (/^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return null;
  return { traceId: traceId!, parentId: parentId!, flags: Number.parseInt(flags!, 16) };
}

/** `addr:port`, IPv6 in brackets. */
function endpoint(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/**
 * The Kafka key of a connection, the same for both ends (collector/l7/tracker.ts
 * l7Key, which the l7 records are keyed by; the tests check they agree).
 */
export function connectionKey(transport: string, a: string, pa: number, b: string, pb: number): string {
  const x = endpoint(a, pa);
  const y = endpoint(b, pb);
  return x <= y ? `${transport.toLowerCase()}/${x}-${y}` : `${transport.toLowerCase()}/${y}-${x}`;
}

/** Host and port of a Host header / :authority ('example.com:8080', '[::1]:80'); port null when absent. */
function parseAuthority(v: string): { host: string; port: number | null } | null {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(v.trim());
  if (!m || m[1] === '') return null;
  const port = m[2] === undefined ? null : Number(m[2]);
  return { host: m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!, port: port !== null && port <= 65535 ? port : null };
}

function hexId(parts: readonly (string | bigint | number)[], chars: number): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, chars);
  return /^0+$/.test(h) ? `${h.slice(0, -1)}1` : h; // all zero is invalid (W3C)
}

// ---------------------------------------------------------------------------
// Correlator

type Family = 'h1' | 'h2' | 'dns';
type Outcome = 'response' | 'timeout' | 'missed';

/** The watermark's inputs: wall-time maximum of the records, and the highest raise. */
interface Clock {
  maxWall: bigint | null;
  floor: bigint | null;
}

interface Pending {
  readonly seq: number;
  readonly rec: L7Record;
  readonly offset: bigint;
  /** Watermark state just before this record: where a replay from it starts. */
  readonly before: Clock;
  readonly family: Family;
  readonly obs: string;
  readonly key: string;
  readonly startNs: bigint;
  readonly deadlineNs: bigint;
  /** host + boot time: the clock whose records decide its timeout. */
  readonly clock: string;
  done: boolean;
  /** Arrived after an idle raise had passed its deadline: waits in `late` (see expire()). */
  late: boolean;
  /** A record of its own clock that came after it is past its deadline (+ lateness). */
  ownDue: boolean;
}

interface Completed {
  readonly seq: number;
  /** The span as its own records make it; a server span's link is applied when it is emitted. */
  readonly span: Span;
  readonly role: Role;
  readonly exchange: string | null;
  /** What both sides of one exchange agree on: method + path, gRPC method, DNS question. */
  readonly signature: string;
  /** The trace id of the request's own traceparent. */
  readonly headerTraceId: string | null;
  /** host + boot time: spans on one clock compare times strictly. */
  readonly clock: string;
  readonly startNs: bigint;
  /** The response's last byte, or null when there was none (timeout, missed). */
  readonly endNs: bigint | null;
  /** Emitted once the watermark reaches this: completion (capped at the deadline) + linkDelay. */
  readonly readyNs: bigint;
  /** Offset of the last record that decided the span. */
  readonly lastOffset: bigint;
  /** Completed below an earlier raise, ready by it: waits in `lateReady` for its own time or a later raise (see expire()). */
  readonly late: boolean;
  readonly holdOffset: bigint;
  readonly holdBefore: Clock;
  /** SERVER: the client span it is the child of. */
  link: Completed | null;
  done: boolean;
}

interface Exchange {
  clients: Completed[];
  servers: Completed[];
}

interface CheckpointV1 {
  v: 1;
  /** The offset the consumer resumes from; the state below holds just before it. */
  from: string;
  maxWall: string | null;
  floor: string | null;
  /** Spans whose wait ended at or below emittedWm and whose records are all below until were emitted. */
  emittedWm: string | null;
  until: string;
  /** Idle raises [position, watermark] at positions after `from`. */
  raises: [string, string][];
  /** Late spans (see expire()) emitted: ready at or below the records' own watermark emittedOwn, with their records below until... */
  emittedOwn?: string | null;
  /** ...or completed before the raise emittedRaise [position, watermark] and ready at or below it. */
  emittedRaise?: [string, string] | null;
}

/**
 * One observer's waiting HTTP/1 requests in ordinal order. Requests leave it
 * almost always at the head (answered, missed, timed out in order), but a
 * deep pipelined backlog made Array#indexOf + splice quadratic: removal here
 * is lazy (an item leaves once marked done, `Pending.done`) and the array is
 * only compacted when its dead head outweighs the rest.
 */
class PendingQueue {
  private items: Pending[] = [];
  private head = 0;

  push(p: Pending): void {
    this.items.push(p);
  }

  /** Drops done items at both ends; call after marking one done. */
  trim(): void {
    const items = this.items;
    while (this.head < items.length && items[this.head]!.done) this.head++;
    while (items.length > this.head && items[items.length - 1]!.done) items.pop();
    if (this.head === items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= items.length) {
      this.items = items.slice(this.head);
      this.head = 0;
    }
  }

  first(): Pending | undefined {
    return this.items[this.head];
  }

  last(): Pending | undefined {
    return this.items.length > this.head ? this.items[this.items.length - 1] : undefined;
  }

  get empty(): boolean {
    return this.head >= this.items.length;
  }

  /** The waiting (not done) requests, in order. */
  live(): Pending[] {
    const out: Pending[] = [];
    for (let i = this.head; i < this.items.length; i++) if (!this.items[i]!.done) out.push(this.items[i]!);
    return out;
  }
}

/** A binary min-heap. */
class Heap<T> {
  private a: T[] = [];
  private readonly less: (x: T, y: T) => boolean;
  constructor(less: (x: T, y: T) => boolean) {
    this.less = less;
  }
  get size(): number {
    return this.a.length;
  }
  peek(): T | undefined {
    return this.a[0];
  }
  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
  /** Rebuilds from `items` (drops entries no longer live). */
  reset(items: Iterable<T>): void {
    this.a = [];
    for (const v of items) this.push(v);
  }
}

/**
 * network.protocol.version of an HTTP/1 exchange: the lower of the versions its
 * two start lines name (an HTTP/1.0 peer makes the exchange 1.0 whatever the
 * other side can speak: RFC 9110 2.5; a 1.1 server answers a 1.0 request with
 * 'HTTP/1.1' in its status line), either one when only one is known, null when
 * neither is (records from collectors older than the field).
 */
function http1Version(req: L7Record, resp: L7Record | null): string | null {
  const versions = [req.protocol_version, resp?.protocol_version].filter((v): v is string => v !== undefined && v !== '');
  return versions.length === 0 ? null : versions.reduce((a, b) => (b < a ? b : a));
}

const familyOf = (p: L7RecordProtocol): Family => (p === 'HTTP1' ? 'h1' : p === 'DNS' ? 'dns' : 'h2');
const wallStart = (r: L7Record): bigint => r.boot_time_ns + r.ts_ns;
const wallEnd = (r: L7Record): bigint => r.boot_time_ns + r.end_ns;
const observerOf = (r: L7Record): string => `${r.host}\u0000${r.boot_time_ns}\u0000${r.tgid}\u0000${r.conn_id}`;
const clockOf = (r: L7Record): string => `${r.host}\u0000${r.boot_time_ns}`;
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const absBig = (a: bigint): bigint => (a < 0n ? -a : a);

function matchKey(family: Family, obs: string, r: L7Record): string {
  return family === 'dns'
    ? `${obs}\u0000dns\u0000${r.remote_addr}\u0000${r.remote_port}\u0000${r.stream_id}`
    : `${obs}\u0000${family}\u0000${r.stream_id}`;
}

export class SpanCorrelator {
  readonly counters: SpanCounters = {
    requests: 0, responses: 0, spans: 0, unmatchedResponses: 0, timeouts: 0, missedResponses: 0,
    evicted: 0, linked: 0, traceparentJoins: 0, suppressed: 0, skipped: 0, raisesDropped: 0,
  };
  private readonly timeoutNs: bigint;
  private readonly linkDelayNs: bigint;
  private readonly latenessNs: bigint;
  private readonly skewNs: bigint;
  private readonly maxPending: number;
  private readonly hostLagNs: bigint;

  private maxWall: bigint | null = null;
  private floor: bigint | null = null;
  /** Offset after the last record added. */
  private pos = 0n;
  private seq = 0;
  /** Raises applied, [position, watermark], positions ascending. */
  private raises: [bigint, bigint][] = [];
  /** Raises of the checkpoint not yet reached by the replay. */
  private replayRaises: [bigint, bigint][] = [];
  private emittedWm: bigint | null = null;
  private until = 0n;
  /** The last raise applied (original or replayed): [position, watermark]. Not in the checkpoint: a replay only holds records after the raises it dropped. */
  private lastRaise: [bigint, bigint] | null = null;
  /** The records' own watermark at the last advance(), and the last raise made by then: what finish() needs for late spans. */
  private emittedOwn: bigint | null = null;
  private emittedRaise: [bigint, bigint] | null = null;

  /** Waiting requests in arrival (= offset) order. */
  private readonly pending = new Map<number, Pending>();
  private readonly byKey = new Map<string, Pending[]>();
  /** HTTP/1 waiting requests per observer, by ordinal. */
  private readonly h1 = new Map<string, PendingQueue>();
  private readonly deadlines = new Heap<Pending>((a, b) => a.deadlineNs < b.deadlineNs || (a.deadlineNs === b.deadlineNs && a.seq < b.seq));
  /** Requests that arrived after a raise above their deadline (delivered late, e.g. held by a collector through a broker outage). */
  private readonly late = new Heap<Pending>((a, b) => a.deadlineNs < b.deadlineNs || (a.deadlineNs === b.deadlineNs && a.seq < b.seq));
  /** Per clock (host + boot time), its waiting requests not yet due by its own records, by deadline. */
  private readonly byClock = new Map<string, Heap<Pending>>();
  private byClockEntries = 0;
  /** Late requests found due by their own clock's records, to time out in expire(). */
  private freed: Pending[] = [];
  /** Completed spans waiting out linkDelay, in completion order. */
  private readonly completed = new Map<number, Completed>();
  private readonly readyHeap = new Heap<Completed>((a, b) => a.readyNs < b.readyNs || (a.readyNs === b.readyNs && a.seq < b.seq));
  private readonly lateReady = new Heap<Completed>((a, b) => a.readyNs < b.readyNs || (a.readyNs === b.readyNs && a.seq < b.seq));
  private readonly exchanges = new Map<string, Exchange>();
  private out: Span[] = [];

  constructor(opts: SpanCorrelatorOptions) {
    if (opts.timeoutNs <= 0n) throw new RangeError('timeoutNs must be > 0');
    if (opts.linkDelayNs < 0n) throw new RangeError('linkDelayNs must be >= 0');
    this.timeoutNs = opts.timeoutNs;
    this.linkDelayNs = opts.linkDelayNs;
    this.latenessNs = opts.latenessNs ?? DEFAULT_SPAN_LATENESS_NS;
    this.skewNs = opts.clockSkewNs ?? DEFAULT_CLOCK_SKEW_NS;
    this.maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.hostLagNs = opts.hostLagNs ?? DEFAULT_HOST_LAG_NS;
    if (this.hostLagNs < 0n) throw new RangeError('hostLagNs must be >= 0');
    if (this.latenessNs < 0n || this.skewNs < 0n) throw new RangeError('latenessNs and clockSkewNs must be >= 0');
    if (!Number.isInteger(this.maxPending) || this.maxPending < 1) throw new RangeError('maxPending must be an integer >= 1');
    if (opts.checkpoint !== undefined) this.restore(opts.checkpoint);
  }

  /** Event-time watermark: max(max wall time added - lateness, highest raise); null before anything. */
  get watermarkNs(): bigint | null {
    const w = this.maxWall === null ? null : this.maxWall - this.latenessNs;
    if (this.floor === null) return w;
    return w === null || this.floor > w ? this.floor : w;
  }

  /** The records' own watermark: max wall time added - lateness, without the idle raises. */
  private get ownWatermark(): bigint | null {
    return this.maxWall === null ? null : this.maxWall - this.latenessNs;
  }

  /** Offset after the last record added (the checkpoint's offset before any). */
  get position(): bigint {
    return this.pos;
  }

  /** Requests and spans held (bounded by maxPending). */
  get size(): number {
    return this.pending.size + this.completed.size;
  }

  /** One decoded l7 record at partition offset `offset` (offsets ascending; lower ones are ignored). */
  add(rec: L7Record, offset: bigint): void {
    if (offset < this.pos) {
      this.counters.skipped++;
      return;
    }
    this.applyReplayRaises(offset);
    const before: Clock = { maxWall: this.maxWall, floor: this.floor };
    this.pos = offset + 1n;
    this.saw(rec);
    if (rec.protocol === 'UNKNOWN') this.counters.skipped++;
    else if (rec.kind === 'RESPONSE') this.response(rec, offset);
    else {
      // REQUEST, or EXCHANGE: its request, then its response as the pair's RESPONSE record would
      // come (times, watermark, missed ordinals), paired with it directly: the kernel paired them
      const p = this.request(rec, offset, before);
      const resp = rec.kind === 'EXCHANGE' ? exchangeResponse(rec) : null;
      if (resp !== null) {
        this.saw(resp);
        this.answer(p, resp, offset);
      }
    }
    this.expire();
  }

  /** A record's (or an exchange's response's) start: the watermark's input, and its own clock's time. */
  private saw(r: L7Record): void {
    const wall = wallStart(r);
    if (this.maxWall === null || wall > this.maxWall) this.maxWall = wall;
    this.clockSaw(clockOf(r), wall);
  }

  /**
   * Spans final since the last call, in the order they became final. With
   * `watermarkNs` above the current watermark, raises it first: only for a
   * partition gone idle (the records' own times move it otherwise). A raise
   * while a restored instance is still re-reading what the checkpoint covered
   * is ignored: the checkpoint already says where the original raised.
   */
  advance(watermarkNs?: bigint): Span[] {
    this.applyReplayRaises(this.pos);
    if (watermarkNs !== undefined && this.pos >= this.until) {
      const wm = this.watermarkNs;
      if (wm === null || watermarkNs > wm) {
        this.floor = watermarkNs;
        this.logRaise(this.pos, watermarkNs);
        this.expire();
      }
    }
    const wm = this.watermarkNs;
    if (wm !== null && (this.emittedWm === null || wm > this.emittedWm)) this.emittedWm = wm;
    const own = this.ownWatermark;
    if (own !== null && (this.emittedOwn === null || own > this.emittedOwn)) this.emittedOwn = own;
    const r = this.lastRaise;
    if (r !== null && (this.emittedRaise === null || r[0] > this.emittedRaise[0])) this.emittedRaise = [r[0], r[1]];
    if (this.pos > this.until) this.until = this.pos;
    const out = this.out;
    this.out = [];
    this.counters.spans += out.length;
    return out;
  }

  /** The lowest offset a waiting request or span still needs (the offset to commit), or null. */
  minPendingOffset(): bigint | null {
    return this.minHold()?.offset ?? null;
  }

  /**
   * Offset-commit metadata (JSON, < 1 KiB) to store with the commit of
   * `minPendingOffset() ?? position`, taken right after advance() handed out
   * what it returned: `new SpanCorrelator({ ...opts, checkpoint })` re-reading
   * from that offset emits every later span once and nothing already emitted.
   */
  checkpoint(): string {
    const hold = this.minHold();
    const from = hold ? hold.offset : this.pos;
    const clock = hold ? hold.before : { maxWall: this.maxWall, floor: this.floor };
    const raises = [...this.raises, ...this.replayRaises].filter(([p]) => p > from);
    const c: CheckpointV1 = {
      v: 1,
      from: String(from),
      maxWall: clock.maxWall === null ? null : String(clock.maxWall),
      floor: clock.floor === null ? null : String(clock.floor),
      emittedWm: this.emittedWm === null ? null : String(this.emittedWm),
      until: String(this.until),
      raises: raises.map(([p, w]): [string, string] => [String(p), String(w)]),
      emittedOwn: this.emittedOwn === null ? null : String(this.emittedOwn),
      emittedRaise: this.emittedRaise === null ? null : [String(this.emittedRaise[0]), String(this.emittedRaise[1])],
    };
    return JSON.stringify(c);
  }

  // -------------------------------------------------------------------------

  private restore(text: string): void {
    const c = JSON.parse(text) as CheckpointV1;
    if (c.v !== 1) throw new Error(`span checkpoint: unknown version ${String(c.v)}`);
    const big = (s: string | null): bigint | null => (s === null ? null : BigInt(s));
    this.pos = BigInt(c.from);
    this.maxWall = big(c.maxWall);
    this.floor = big(c.floor);
    this.emittedWm = big(c.emittedWm);
    this.until = BigInt(c.until);
    this.emittedOwn = big(c.emittedOwn ?? null);
    this.emittedRaise = c.emittedRaise ? [BigInt(c.emittedRaise[0]), BigInt(c.emittedRaise[1])] : null;
    this.replayRaises = c.raises.map(([p, w]): [bigint, bigint] => [BigInt(p), BigInt(w)]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Takes the checkpoint's raises at positions up to `limit`, as the original did before the record there. */
  private applyReplayRaises(limit: bigint): void {
    let changed = false;
    while (this.replayRaises.length > 0 && this.replayRaises[0]![0] <= limit) {
      const [p, w] = this.replayRaises.shift()!;
      if (this.floor === null || w > this.floor) this.floor = w;
      this.logRaise(p, w);
      changed = true;
    }
    if (changed) this.expire();
  }

  private logRaise(pos: bigint, w: bigint): void {
    this.lastRaise = [pos, w];
    const last = this.raises.at(-1);
    // raises with no record between them act as the last one alone
    if (last && last[0] === pos) last[1] = w;
    else this.raises.push([pos, w]);
    if (this.raises.length <= MAX_RAISES) return;
    const keepFrom = this.minHold()?.offset ?? this.pos;
    this.raises = this.raises.filter(([p]) => p > keepFrom);
    while (this.raises.length > MAX_RAISES) {
      this.raises.shift();
      this.counters.raisesDropped++;
    }
  }

  private request(rec: L7Record, offset: bigint, before: Clock): Pending {
    this.counters.requests++;
    const family = familyOf(rec.protocol);
    const obs = observerOf(rec);
    if (family === 'h1') {
      const q = this.h1.get(obs);
      // the ordinal went back: a new parse of the connection; the waiting requests will get no answer
      const tail = q?.last();
      if (q && tail && tail.rec.stream_id >= rec.stream_id) {
        for (const p of q.live()) this.complete(p, null, 'missed', wallStart(rec), offset);
      }
    }
    while (this.pending.size + this.completed.size >= this.maxPending) this.evictOne();
    const startNs = wallStart(rec);
    const p: Pending = {
      seq: this.seq++, rec, offset, before, family, obs, key: matchKey(family, obs, rec),
      startNs, deadlineNs: startNs + this.timeoutNs, clock: clockOf(rec), done: false, late: false, ownDue: false,
    };
    this.pending.set(p.seq, p);
    let list = this.byKey.get(p.key);
    if (!list) this.byKey.set(p.key, (list = []));
    list.push(p);
    if (family === 'h1') {
      let q = this.h1.get(obs);
      if (!q) this.h1.set(obs, (q = new PendingQueue()));
      q.push(p);
    }
    this.deadlines.push(p);
    if (this.deadlines.size > 2 * this.pending.size + 1024) this.deadlines.reset([...this.pending.values()].filter((x) => !x.late));
    let h = this.byClock.get(p.clock);
    if (!h) this.byClock.set(p.clock, (h = new Heap<Pending>((a, b) => a.deadlineNs < b.deadlineNs || (a.deadlineNs === b.deadlineNs && a.seq < b.seq))));
    h.push(p);
    if (++this.byClockEntries > 2 * this.pending.size + 1024) this.rebuildClocks();
    return p;
  }

  /**
   * A record of `clock` at wall time `wall`: its waiting requests whose
   * deadline is at or below wall - lateness are due by their own host's time
   * (all of them arrived before this record). Depends only on the records
   * from each request on: a replay from a checkpoint decides the same.
   */
  private clockSaw(clock: string, wall: bigint): void {
    const h = this.byClock.get(clock);
    if (!h) return;
    const w = wall - this.latenessNs;
    for (let p = h.peek(); p !== undefined && (p.done || p.deadlineNs <= w); p = h.peek()) {
      h.pop();
      this.byClockEntries--;
      if (p.done) continue;
      p.ownDue = true;
      // already set aside by the partition's watermark: expire() times it out now
      if (p.late) this.freed.push(p);
    }
    if (h.size === 0) this.byClock.delete(clock);
  }

  /** Drops entries no longer waiting (answered requests stay in their clock's heap until popped). */
  private rebuildClocks(): void {
    this.byClock.clear();
    this.byClockEntries = 0;
    for (const p of this.pending.values()) {
      if (p.ownDue) continue;
      let h = this.byClock.get(p.clock);
      if (!h) this.byClock.set(p.clock, (h = new Heap<Pending>((a, b) => a.deadlineNs < b.deadlineNs || (a.deadlineNs === b.deadlineNs && a.seq < b.seq))));
      h.push(p);
      this.byClockEntries++;
    }
  }

  private response(rec: L7Record, offset: bigint): void {
    this.counters.responses++;
    const family = familyOf(rec.protocol);
    const obs = observerOf(rec);
    const startNs = wallStart(rec);
    let match: Pending | undefined;
    if (family === 'h1') {
      const q = this.h1.get(obs);
      // responses come in request order: earlier requests still waiting lost theirs
      for (let h = q?.first(); h !== undefined && h.rec.stream_id < rec.stream_id; h = q!.first()) this.complete(h, null, 'missed', startNs, offset);
      const head = this.h1.get(obs)?.first();
      if (head && head.rec.stream_id === rec.stream_id && head.startNs <= startNs) match = head;
    } else {
      match = this.byKey.get(matchKey(family, obs, rec))?.find((p) => p.startNs <= startNs);
    }
    if (match) this.complete(match, rec, 'response', wallEnd(rec), offset);
    else this.counters.unmatchedResponses++;
  }

  /**
   * An EXCHANGE's response: what response() does for the pair's RESPONSE
   * record (HTTP/1 requests before it lost theirs), but the request is the
   * one it came with, whatever else waits under its key (a DNS retransmit
   * is one exchange with its retries in the kernel, not FIFO).
   */
  private answer(p: Pending, resp: L7Record, offset: bigint): void {
    this.counters.responses++;
    if (p.family === 'h1') {
      const q = this.h1.get(p.obs);
      for (let h = q?.first(); h !== undefined && h !== p && h.rec.stream_id < resp.stream_id; h = q!.first()) this.complete(h, null, 'missed', wallStart(resp), offset);
    }
    this.complete(p, resp, 'response', wallEnd(resp), offset);
  }

  private unlinkPending(p: Pending): void {
    p.done = true;
    this.pending.delete(p.seq);
    const list = this.byKey.get(p.key);
    if (list) {
      const i = list.indexOf(p);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byKey.delete(p.key);
    }
    if (p.family === 'h1') {
      const q = this.h1.get(p.obs);
      if (q) {
        q.trim(); // p is done: gone from the ends at once, from the middle when the ends reach it
        if (q.empty) this.h1.delete(p.obs);
      }
    }
  }

  /** A request's outcome is known: it becomes a span that waits linkDelay. `atNs`: the response's end, or when the loss showed. */
  private complete(p: Pending, resp: L7Record | null, outcome: Outcome, atNs: bigint, lastOffset: bigint, readyFloorNs: bigint | null = null): void {
    this.unlinkPending(p);
    if (outcome === 'timeout') this.counters.timeouts++;
    else if (outcome === 'missed') this.counters.missedResponses++;
    const built = buildSpan(p.rec, resp, outcome, this.timeoutNs);
    const req = p.rec;
    const readyNs = maxBig(minBig(atNs, p.deadlineNs) + this.linkDelayNs, readyFloorNs ?? 0n);
    // ready already, but only by a raise its records came after (delivered late): its link wait
    // runs on the records' own time, as if they had come in time (see expire())
    const wm = this.watermarkNs;
    const own = this.ownWatermark;
    const late = readyFloorNs === null && wm !== null && readyNs <= wm && (own === null || readyNs > own);
    const c: Completed = {
      seq: this.seq++,
      span: built.span,
      role: req.role,
      exchange: exchangeKey(req, p.family),
      signature: built.signature,
      headerTraceId: built.headerTraceId,
      clock: `${req.host}\u0000${req.boot_time_ns}`,
      startNs: p.startNs,
      endNs: resp ? wallEnd(resp) : null,
      // a span waits from its completion, but never past deadline + linkDelay: whatever a
      // replay decides for this request, its span is final by then (see the top comment)
      readyNs,
      lastOffset,
      late,
      holdOffset: p.offset,
      holdBefore: p.before,
      link: null,
      done: false,
    };
    this.completed.set(c.seq, c);
    if (late) {
      this.lateReady.push(c);
      if (this.lateReady.size > 2 * this.completed.size + 1024) this.lateReady.reset([...this.completed.values()].filter((x) => x.late));
    } else {
      this.readyHeap.push(c);
      if (this.readyHeap.size > 2 * this.completed.size + 1024) this.readyHeap.reset([...this.completed.values()].filter((x) => !x.late));
    }
    if (c.exchange === null || (c.role !== 'CLIENT' && c.role !== 'SERVER')) return;
    let ex = this.exchanges.get(c.exchange);
    if (!ex) this.exchanges.set(c.exchange, (ex = { clients: [], servers: [] }));
    if (c.role === 'SERVER') {
      for (const x of ex.clients) if (this.better(x, c.link, c)) c.link = x;
      ex.servers.push(c);
    } else {
      ex.clients.push(c);
      for (const y of ex.servers) if (this.better(c, y.link, y)) y.link = c;
    }
  }

  /** Whether client span `x` is a better parent for server span `y` than `cur`. */
  private better(x: Completed, cur: Completed | null, y: Completed): boolean {
    if (x.signature !== y.signature) return false;
    if (y.headerTraceId !== null && y.headerTraceId !== x.span.trace_id) return false;
    const slack = x.clock === y.clock ? 0n : this.skewNs;
    if (y.startNs < x.startNs - slack) return false;
    if (x.endNs !== null && y.endNs !== null && y.endNs > x.endNs + slack) return false;
    if (cur === null) return true;
    const dx = absBig(y.startNs - x.startNs);
    const dc = absBig(y.startNs - cur.startNs);
    return dx < dc || (dx === dc && x.span.span_id < cur.span.span_id);
  }

  /**
   * Applies the watermark: timeouts, then spans whose wait is over.
   *
   * An idle raise is the processor's clock guessing that a quiet partition
   * will bring nothing older; records that arrive below it prove the guess
   * wrong for them (a collector holding its records through a broker outage
   * delivers them in order, afterwards: soak finding 5). So a request times
   * out when the records' own watermark passes its deadline, or when a raise
   * made after it arrived does; one that arrived above an earlier raise waits
   * in `late` for its response. Both tests follow the records and the logged
   * raise positions only: a replay decides the same.
   */
  private expire(): void {
    const wm = this.watermarkNs;
    if (wm === null) return;
    const own = this.ownWatermark;
    const r = this.lastRaise;
    // by its own host's records after it (clockSaw), by a raise after it, or by the partition's
    // records when its host lags them by more than hostLagNs
    const lagged = own === null ? null : own - this.hostLagNs;
    const due = (p: Pending): boolean => p.ownDue || (r !== null && r[0] > p.offset && p.deadlineNs <= r[1]) || (lagged !== null && p.deadlineNs <= lagged);
    for (let p = this.deadlines.peek(); p !== undefined && p.deadlineNs <= wm; p = this.deadlines.peek()) {
      this.deadlines.pop();
      if (p.done) continue;
      if (due(p)) this.complete(p, null, 'timeout', p.deadlineNs, p.offset);
      else {
        p.late = true;
        this.late.push(p);
        if (this.late.size > 2 * this.pending.size + 1024) this.late.reset([...this.pending.values()].filter((x) => x.late));
      }
    }
    // late ones freed by their own clock's records, in the order those records found them
    const freed = this.freed;
    this.freed = [];
    for (const p of freed) if (!p.done) this.complete(p, null, 'timeout', p.deadlineNs, this.pos - 1n, wm);
    // in deadline order; stopping at the first not due is exact: a raise times out every late
    // request below it at once (all arrived before it), the lag rule every one below own - hostLag,
    // and the ones their own clock frees (any order) are done by now and skipped
    for (let p = this.late.peek(); p !== undefined && (p.done || due(p)); p = this.late.peek()) {
      this.late.pop();
      // decided here, at watermark wm, not when its deadline passed: it is ready no earlier than
      // wm, so finish() cannot take it for a span emitted before (readyNs <= emittedWm with its
      // records below `until`), as a raise is always above the watermark it finds
      if (!p.done) this.complete(p, null, 'timeout', p.deadlineNs, this.pos - 1n, wm);
    }
    for (let c = this.readyHeap.peek(); c !== undefined && c.readyNs <= wm; c = this.readyHeap.peek()) {
      this.readyHeap.pop();
      if (!c.done) this.finish(c);
    }
    // late spans wait out linkDelay on the records' own time, or until a later raise (same argument)
    const ready = (c: Completed): boolean => (own !== null && c.readyNs <= own) || (r !== null && r[0] > c.lastOffset && c.readyNs <= r[1]);
    for (let c = this.lateReady.peek(); c !== undefined && (c.done || ready(c)); c = this.lateReady.peek()) {
      this.lateReady.pop();
      if (!c.done) this.finish(c);
    }
  }

  private forget(c: Completed): void {
    c.done = true;
    this.completed.delete(c.seq);
    if (c.exchange === null) return;
    const ex = this.exchanges.get(c.exchange);
    if (!ex) return;
    const list = c.role === 'SERVER' ? ex.servers : ex.clients;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
    if (ex.clients.length === 0 && ex.servers.length === 0) this.exchanges.delete(c.exchange);
  }

  private finish(c: Completed): void {
    this.forget(c);
    // emitted before the checkpoint this instance was restored from (or by this instance)
    const emitted = c.late
      ? (this.emittedOwn !== null && c.readyNs <= this.emittedOwn && c.lastOffset < this.until) ||
        (this.emittedRaise !== null && this.emittedRaise[0] > c.lastOffset && c.readyNs <= this.emittedRaise[1])
      : this.emittedWm !== null && c.readyNs <= this.emittedWm && c.lastOffset < this.until;
    if (emitted) {
      this.counters.suppressed++;
      return;
    }
    const span = { ...c.span };
    if (c.role === 'SERVER' && c.link !== null) {
      const x = c.link.span;
      span.trace_id = x.trace_id;
      span.parent_span_id = x.span_id;
      span.trace_state = x.trace_state;
      span.trace_flags = x.trace_flags;
      this.counters.linked++;
    } else if (c.headerTraceId !== null) {
      this.counters.traceparentJoins++;
    }
    this.out.push(span);
  }

  private evictOne(): void {
    this.counters.evicted++;
    const p = this.pending.values().next();
    if (!p.done) {
      this.unlinkPending(p.value);
      return;
    }
    const c = this.completed.values().next();
    if (!c.done) this.forget(c.value);
  }

  /** The waiting item whose replay must start earliest, and the watermark state just before it. */
  private minHold(): { offset: bigint; before: Clock } | null {
    let best: { offset: bigint; before: Clock } | null = null;
    const first = this.pending.values().next();
    if (!first.done) best = { offset: first.value.offset, before: first.value.before };
    for (const c of this.completed.values()) {
      let o = c.holdOffset;
      let b = c.holdBefore;
      // a server span linked to a client span needs that span's records too
      if (c.link !== null && c.link.holdOffset < o) {
        o = c.link.holdOffset;
        b = c.link.holdBefore;
      }
      if (best === null || o < best.offset) best = { offset: o, before: b };
    }
    return best;
  }
}

/** The exchange both sides of one request share: transport, client end, server end, protocol family, id. */
function exchangeKey(r: L7Record, family: Family): string | null {
  if (r.role === 'UNKNOWN' || r.local_addr === '' || r.remote_addr === '') return null;
  const local = endpoint(r.local_addr, r.local_port);
  const remote = endpoint(r.remote_addr, r.remote_port);
  const [client, server] = r.role === 'CLIENT' ? [local, remote] : [remote, local];
  return `${r.transport}|${client}|${server}|${family}|${r.stream_id}`;
}

// ---------------------------------------------------------------------------
// Span building

interface Built {
  span: Span;
  signature: string;
  headerTraceId: string | null;
}

/**
 * Names, attributes and status of one exchange (OpenTelemetry semantic
 * conventions: HTTP stable, RPC v1.37, DNS question name from the registry;
 * dns.question.type and dns.response_code are the Elastic Common Schema names,
 * which OpenTelemetry has not defined yet).
 */
function buildSpan(req: L7Record, resp: L7Record | null, outcome: Outcome, timeoutNs: bigint): Built {
  const family = familyOf(req.protocol);
  const grpc = req.protocol === 'GRPC' || resp?.protocol === 'GRPC';
  const kind: SpanKind = req.role === 'CLIENT' ? 'CLIENT' : req.role === 'SERVER' ? 'SERVER' : 'INTERNAL';
  const a: Record<string, string> = {};
  const set = (k: string, v: string | number | bigint | null | undefined): void => {
    if (v !== null && v !== undefined && v !== '') a[k] = String(v);
  };
  let status: SpanStatus = 'UNSET';
  let message: string | null = null;
  let errorType: string | null = null;

  // where the exchange went: the URI authority (Host, :authority) when the request names one
  const authority = req.headers.host === undefined ? null : parseAuthority(req.headers.host);
  const localSide = kind === 'SERVER';
  if (kind !== 'INTERNAL') {
    const addr = localSide ? req.local_addr : req.remote_addr;
    const port = localSide ? req.local_port : req.remote_port;
    const named = family !== 'dns' && authority !== null;
    set('server.address', named ? authority.host : attributeAddress(addr));
    set('server.port', named && authority.port !== null ? authority.port : port);
  }
  if (kind === 'SERVER') {
    set('client.address', attributeAddress(req.remote_addr));
    set('client.port', req.remote_port);
  }
  set('network.peer.address', attributeAddress(req.remote_addr));
  if (req.remote_addr !== '') set('network.peer.port', req.remote_port);
  if (req.transport !== 'UNKNOWN') set('network.transport', req.transport.toLowerCase());

  let name: string;
  let signature: string;
  if (family === 'dns') {
    name = `DNS ${req.dns_type ?? 'query'}`;
    signature = `${req.dns_name} ${req.dns_type}`;
    set('dns.question.name', req.dns_name);
    set('dns.question.type', req.dns_type);
    // no semantic convention for it: a resolver's retransmits, one span timed from the first send
    if (req.dns_retries != null && req.dns_retries > 0) set('ringflow.dns.retries', req.dns_retries);
    if (resp) {
      set('dns.response_code', resp.dns_rcode);
      // NXDOMAIN counts as a failed lookup too (error.type NXDOMAIN): a search list's
      // misses (ndots:5) show as such, sorted apart by error.type
      if (resp.dns_rcode !== null && !DNS_NOT_ERRORS.has(resp.dns_rcode)) {
        status = 'ERROR';
        errorType = resp.dns_rcode;
      }
    }
  } else if (grpc) {
    const service = req.grpc_service ?? resp?.grpc_service ?? null;
    const method = req.grpc_method ?? resp?.grpc_method ?? null;
    name = service !== null && method !== null ? `${service}/${method}` : req.path !== null ? urlPath(req.path).replace(/^\//, '') || 'grpc' : 'grpc';
    signature = name;
    set('rpc.system', 'grpc');
    set('rpc.service', service);
    set('rpc.method', method);
    // gRPC runs over HTTP/2 (the collector sees gRPC only there)
    set('network.protocol.name', 'http');
    set('network.protocol.version', '2');
    if (resp) {
      const code = resp.grpc_status;
      if (code !== null) {
        set('rpc.grpc.status_code', code);
        if (kind === 'SERVER' ? GRPC_SERVER_ERRORS.has(code) : code !== 0) {
          status = 'ERROR';
          errorType = GRPC_CODES[code] ?? String(code);
        }
      } else if (resp.status !== null && resp.status !== 200) {
        // no grpc-status at all: the HTTP/2 status says what went wrong (gRPC over HTTP/2, "HTTP to gRPC status mapping")
        set('http.response.status_code', resp.status);
        status = 'ERROR';
        errorType = String(resp.status);
      }
    }
  } else {
    const known = req.method !== null && KNOWN_METHODS.has(req.method);
    const m = known ? req.method! : 'HTTP';
    const route = req.path === null ? null : routeOf(req.path);
    name = route === null ? m : `${m} ${route}`;
    signature = `${req.method} ${req.path === null ? '' : urlPath(req.path)}`;
    set('http.request.method', known ? req.method : req.method === null ? null : '_OTHER');
    if (!known) set('http.request.method_original', req.method);
    if (req.path !== null) {
      set('url.path', urlPath(req.path));
      const q = req.path.indexOf('?');
      if (q >= 0) set('url.query', req.path.slice(q + 1).replace(/#.*$/, ''));
      set('url.scheme', 'http'); // the collector parses cleartext only
      if (kind === 'SERVER') set('http.route', route);
      if (kind === 'CLIENT') {
        set('url.template', route);
        const host = req.headers.host ?? endpoint(attributeAddress(req.remote_addr), req.remote_port);
        set('url.full', /^[a-z][a-z0-9+.-]*:\/\//i.test(req.path) ? req.path : `http://${host}${req.path}`);
      }
    }
    set('network.protocol.name', 'http');
    if (family === 'h2') set('network.protocol.version', '2');
    else set('network.protocol.version', http1Version(req, resp));
    set('user_agent.original', req.headers['user-agent']);
    if (req.body_bytes > 0n) set('http.request.body.size', req.body_bytes);
    if (resp) {
      if (resp.body_bytes > 0n) set('http.response.body.size', resp.body_bytes);
      if (resp.status !== null) {
        set('http.response.status_code', resp.status);
        if (resp.status >= (kind === 'CLIENT' ? 400 : 500)) {
          status = 'ERROR';
          errorType = String(resp.status);
        }
      }
    }
  }
  if (outcome === 'timeout') {
    status = 'ERROR';
    message = 'no response';
    errorType = 'timeout';
  } else if (outcome === 'missed') {
    set('ringflow.response.missed', 'true');
  }
  if (errorType !== null) set('error.type', errorType);
  if (req.truncated || resp?.truncated) set('ringflow.truncated', 'true');
  set('service.name', serviceName(req));
  set('host.name', req.host);
  set('process.pid', req.tgid);
  set('container.id', req.container_id); // a Resource attribute, as service.name (the exporter lifts it)

  const tp = parseTraceparent(req.headers.traceparent);
  // the request's identity: the same request gives the same ids whatever its outcome
  const ident = [req.host, req.boot_time_ns, req.tgid, req.conn_id, family, req.remote_addr, req.remote_port, req.stream_id, req.ts_ns];
  const start = wallStart(req);
  const end = resp ? wallEnd(resp) : outcome === 'timeout' ? start + timeoutNs : wallEnd(req);
  const attributes: Record<string, string> = {};
  for (const k of Object.keys(a).sort()) attributes[k] = a[k]!;
  const span: Span = {
    key: connectionKey(req.transport, req.local_addr, req.local_port, req.remote_addr, req.remote_port),
    trace_id: tp ? tp.traceId : hexId(['trace', ...ident], 32),
    span_id: hexId(['span', ...ident], 16),
    parent_span_id: tp ? tp.parentId : null,
    trace_state: tp ? (req.headers.tracestate ?? null) : null,
    trace_flags: tp ? tp.flags : 1,
    name,
    kind,
    start_ns: start,
    end_ns: end < start ? start : end,
    status,
    status_message: message,
    attributes,
    service_name: serviceName(req),
    host: req.host,
    protocol: grpc ? 'GRPC' : req.protocol,
  };
  return { span, signature, headerTraceId: tp ? tp.traceId : null };
}

// ---------------------------------------------------------------------------
// Encoding

/** The ringflow.spans.v1 record of a span (its fields without the key). */
export function spanToRecord(s: Span): Record<string, unknown> {
  return {
    trace_id: s.trace_id,
    span_id: s.span_id,
    parent_span_id: s.parent_span_id,
    trace_state: s.trace_state,
    trace_flags: s.trace_flags,
    name: s.name,
    kind: s.kind,
    start_ns: s.start_ns,
    end_ns: s.end_ns,
    status: s.status,
    status_message: s.status_message,
    attributes: s.attributes,
    service_name: s.service_name,
    host: s.host,
    protocol: s.protocol,
  };
}

/** Key and framed value (Avro single-object) of a span for ringflow.spans.v1. */
export function encodeSpan(s: Span): { key: string; value: Buffer } {
  const schema = schemaRegistry().byId(SPANS_SCHEMA_ID);
  if (!schema) throw new Error(`schemas/${SPANS_SCHEMA_ID}.avsc is missing`);
  return { key: s.key, value: encodeRecord(schema, spanToRecord(s)) };
}
