/**
 * What the L7 parsers produce: one parsed request or response, never the raw
 * payload. The collector's per-connection state (collector/l7/conn.ts) feeds
 * each direction of a connection's captured bytes to a protocol parser, which
 * returns these; they become `ringflow.l7.v1` records (schemas/l7.message.avsc).
 *
 * Parsers are pure and incremental: bytes may arrive split at any point, a
 * capture may be cut short (`gap`: the kernel saw more bytes than it copied),
 * and garbage must never throw, hang or grow memory without bound. The same
 * stream split differently gives the same messages.
 */

export type L7Protocol = 'HTTP1' | 'HTTP2' | 'GRPC' | 'DNS';
export type L7Kind = 'REQUEST' | 'RESPONSE';

export interface L7Message {
  protocol: L7Protocol;
  kind: L7Kind;
  /** Time of the syscall that carried the message's first byte (monotonic ns, as pushed). */
  start_ns: bigint;
  /** Time of the syscall that carried its last byte (the end of the body, or the trailers). */
  end_ns: bigint;
  /**
   * Correlation id within the connection: HTTP/2 stream id; DNS message id;
   * HTTP/1 the message's ordinal on its direction (0, 1, 2...: the n-th response answers the n-th request).
   */
  stream_id: number;
  /** HTTP request method (requests only), e.g. 'GET'; null otherwise. */
  method: string | null;
  /** HTTP request target's path with the query redacted per the parser options ('/users/42?id=REDACTED'); gRPC ':path'. */
  path: string | null;
  /** HTTP status code (responses), null otherwise. */
  status: number | null;
  /** Selected headers, lower-case names, in the configured list; never authorization/cookie/set-cookie. */
  headers: Record<string, string>;
  /** gRPC: 'package.Service' and 'Method' from ':path' /package.Service/Method; null when not gRPC. */
  grpc_service: string | null;
  grpc_method: string | null;
  /** gRPC: grpc-status from trailers (or trailers-only headers), null when absent. */
  grpc_status: number | null;
  /** DNS: first question's name (no trailing dot), type ('A', 'AAAA', ...), response code ('NOERROR', 'NXDOMAIN', ...), answer count. */
  dns_name: string | null;
  dns_type: string | null;
  dns_rcode: string | null;
  dns_answers: number | null;
  /** DNS paired in the kernel: the query's sends after the first with the same id and peer (its REQUEST only); absent elsewhere. */
  dns_retries?: number | null;
  /** Body bytes as the protocol declares or frames them (content-length, chunks, DATA frames), captured or not. */
  body_bytes: number;
  /** True when part of the message was not captured (a gap) or the parser gave up on it; what is known is still reported. */
  truncated: boolean;
  /**
   * HTTP/1: the version its start line names ('1.0', '1.1'), which spans and RED
   * metrics carry as network.protocol.version. Absent for HTTP/2, gRPC and DNS,
   * whose version the protocol itself implies (the processor sets '2' for HTTP/2).
   */
  protocol_version?: string;
}

/** Parser options shared by the protocols. */
export interface L7ParseOptions {
  /** Header names to keep (lower case). Authorization, Cookie and Set-Cookie are dropped whatever this says. */
  headers: readonly string[];
  /** Keep query-string values (default false: `?a=1&b=2` becomes `?a=REDACTED&b=REDACTED`). */
  keepQueryValues: boolean;
}

export const DEFAULT_CAPTURED_HEADERS: readonly string[] = ['host', 'content-type', 'user-agent', 'traceparent', 'tracestate'];
export const NEVER_CAPTURED_HEADERS: ReadonlySet<string> = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
export const DEFAULT_L7_OPTIONS: L7ParseOptions = { headers: DEFAULT_CAPTURED_HEADERS, keepQueryValues: false };

/**
 * One direction of one connection. `push` gives bytes in order with the time
 * of the syscall that carried them; `gap` says `len` bytes went by uncaptured
 * (the capture limit); `end` flushes what a closed connection completed.
 * A parser that loses sync stops producing for that direction (and says so
 * via `failed`) rather than guess; memory stays bounded whatever it is fed.
 */
export interface StreamParser {
  push(bytes: Uint8Array, ts: bigint): L7Message[];
  /** `cut`: the bytes are a frame payload left out on purpose (HTTP/2 cuts in BPF), not a loss. */
  gap(len: number, ts: bigint, cut?: boolean): L7Message[];
  end(ts: bigint): L7Message[];
  /** Why the parser stopped producing (null while it is in sync). */
  readonly failed: string | null;
}
