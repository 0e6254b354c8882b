/**
 * HTTP/1.x parser for captured socket payloads: one StreamParser per direction
 * of a connection. The responses side learns the request methods from the
 * requests side, because a response's framing depends on its request (a
 * response to HEAD has no body, a 2xx to CONNECT opens a tunnel).
 *
 * Written by hand, not on http-parser-js (the dependency picked for this job):
 * version 0.5.10 breaks the rules of collector/l7/types.ts on captured traffic.
 *  - It hangs. A negative chunk size (`-5`) or a negative Content-Length moves
 *    its read offset backwards, so `execute()` reads the same bytes forever.
 *  - It accepts bad framing without an error. `zz` as a chunk size becomes the
 *    last chunk, and a non-numeric Content-Length swallows the rest of the stream.
 *  - Its header-size cap gives different results for different splits: the
 *    count includes body bytes of the previous message read in the same
 *    `execute()`, and `reinitialize` puts the per-instance limit back to 80 KiB
 *    after the first message. Chunk-size and trailer lines are buffered without a cap.
 *  - It cannot skip bytes that were not captured (`gap`) and has no hook for the
 *    start of a message (start_ns). Both would mean writing to its private
 *    `state`, `offset` and `body_bytes`.
 * Working around all of this would mean replacing most of its states. HTTP/1
 * framing is small enough to state exactly here.
 *
 * Grammar (RFC 9112):
 *   HTTP-message = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
 *   request-line = method SP request-target SP "HTTP/1." DIGIT
 *   status-line  = "HTTP/1." DIGIT SP 3DIGIT [ SP reason-phrase ]
 *   field-line   = field-name ":" OWS field-value OWS      (obs-fold joined with SP, 5.2)
 *   chunked-body = *( chunk-size [ chunk-ext ] CRLF chunk-data CRLF )
 *                  "0" [ chunk-ext ] CRLF *( field-line CRLF ) CRLF
 * A bare LF also ends a line (RFC 9112 2.2). Empty lines before a start line are skipped.
 * The body length (RFC 9112 6.3) is decided by the first rule that applies:
 *   101, or a 2xx response to CONNECT     -> no body; the protocol changes: stop (failed = 'upgrade')
 *   other 1xx, 204, 304, response to HEAD -> no body
 *   Transfer-Encoding ending in chunked   -> chunked (it overrides Content-Length)
 *   any other Transfer-Encoding           -> until close (responses); invalid (requests)
 *   Content-Length (repeats must agree)   -> that many bytes
 *   none of these                         -> no body (requests); until close (responses)
 * A CONNECT request, or a request with `Upgrade` plus `Connection: upgrade`,
 * is reported and then that direction stops (failed = 'upgrade').
 *
 * Loss of sync. After an uncaptured gap the parser knows where it is only if
 * the gap falls inside a body whose length is known. That includes a close-
 * delimited body, and the current chunk as long as the gap ends inside it.
 * In any other case, and on malformed input or a head over MAX_HEAD_BYTES,
 * the parser stops for good and `failed` gives the reason. If the start line of
 * the current message was seen, that message is first reported with
 * truncated = true. The parser does not try to find the next start line:
 * correlation depends on ordinals, and a skipped message would pair each later
 * response with the wrong request.
 *
 * Informational responses (1xx other than 101) are not reported and use no
 * ordinal; the final response that follows answers the request. A response
 * whose request has not been seen (the collector fed the response first, the
 * requests side stopped, or more than MAX_PENDING_METHODS requests are waiting)
 * is framed as if it answered a GET. Trailer fields are skipped, not kept.
 *
 * Each direction is parsed without waiting for the other. So the requests side
 * stops at every CONNECT or upgrade request, even one the server then refuses;
 * requests sent after a refused upgrade are not reported.
 */
import { capturedHeaders, keepHeader, redactTarget } from './headers.ts';
import { DEFAULT_L7_OPTIONS, type L7Kind, type L7Message, type L7ParseOptions, type StreamParser } from './types.ts';

/** Largest head (start line + fields) or trailer section held; longer ones end the direction. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Longest chunk-size line (size + extensions) accepted. */
export const MAX_CHUNK_LINE = 1024;
/** Request methods remembered for responses not yet parsed; the oldest are forgotten past this. */
export const MAX_PENDING_METHODS = 1024;

export interface Http1StreamParser extends StreamParser {
  /** Bytes this direction holds in buffers (at most MAX_HEAD_BYTES). */
  readonly bufferedBytes: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const EMPTY = new Uint8Array(0);
/** Buffers above this size are released once a message's head has been parsed. */
const KEEP_BUFFER = 1024;
const utf8 = new TextDecoder();
/** For header values: a value's leading U+FEFF is data, not a byte-order mark. */
const utf8Value = new TextDecoder('utf-8', { ignoreBOM: true });
const COLON = 0x3a;
const HT = 0x09;

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const IS_TOKEN = new Uint8Array(256);
for (let k = 0; k < TOKEN_CHARS.length; k++) IS_TOKEN[TOKEN_CHARS.charCodeAt(k)] = 1;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP\/(1\.\d)$/;
const STATUS_LINE = /^HTTP\/(1\.\d) ([1-9]\d\d)(?: .*)?$/;
/** At most 12 hex digits keep sizes (and their sums) far below 2^53. */
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/;
const CONTENT_LENGTH = /^\d{1,15}$/;

/** Fields framing needs (RFC 9112 6), kept whatever the captured list says. */
const FRAMING_FIELDS: ReadonlySet<string> = new Set(['transfer-encoding', 'content-length', 'connection', 'upgrade']);

/** Methods that `looksLikeHttp1Request` recognises. The parser itself accepts any token. */
const SNIFF_METHODS: ReadonlySet<string> = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'SEARCH', 'REPORT', 'PURGE',
]);
const SNIFF_SPAN = Math.max(...[...SNIFF_METHODS].map((m) => m.length)) + 1;
const HTTP1_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e]; // 'HTTP/1.'

/** Does a direction's first bytes start with a known method and SP? */
export function looksLikeHttp1Request(b: Uint8Array): boolean {
  const sp = b.subarray(0, SNIFF_SPAN).indexOf(SP);
  if (sp < 3) return false;
  let method = '';
  for (let k = 0; k < sp; k++) method += String.fromCharCode(b[k]!);
  return SNIFF_METHODS.has(method);
}

/** Does a direction's first bytes start with 'HTTP/1.'? */
export function looksLikeHttp1Response(b: Uint8Array): boolean {
  return b.length >= HTTP1_PREFIX.length && HTTP1_PREFIX.every((c, k) => b[k] === c);
}

/** Parsers for the two directions of one connection, sharing the requests' methods. */
export function createHttp1Connection(opts: L7ParseOptions = DEFAULT_L7_OPTIONS): {
  requests: Http1StreamParser;
  responses: Http1StreamParser;
} {
  const log = new MethodLog();
  return { requests: new Http1Direction('REQUEST', opts, log), responses: new Http1Direction('RESPONSE', opts, log) };
}

/** Request methods by ordinal, from the requests side until the responses side takes them. */
class MethodLog {
  private readonly methods = new Map<number, string>();

  record(ordinal: number, method: string): void {
    this.methods.set(ordinal, method);
    // Bounded: the responses side may never catch up (one-way capture, or it stopped).
    if (this.methods.size > MAX_PENDING_METHODS) {
      const oldest = this.methods.keys().next();
      if (!oldest.done) this.methods.delete(oldest.value);
    }
  }

  take(ordinal: number): string | null {
    const m = this.methods.get(ordinal);
    this.methods.delete(ordinal);
    return m ?? null;
  }
}

type State = 'idle' | 'head' | 'sized' | 'close' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers';

/** A head's start line. */
export interface Http1StartLine {
  method: string | null;
  target: string | null;
  status: number | null;
  /** '1.0' or '1.1' (the digits after 'HTTP/' in the start line): network.protocol.version; '' when cut before it. */
  version: string;
}
type StartLine = Http1StartLine;

type Framing = { body: 'none' } | { body: 'sized'; length: number } | { body: 'chunked' } | { body: 'close' } | { error: string };

class Http1Direction implements Http1StreamParser {
  private readonly kind: L7Kind;
  private readonly opts: L7ParseOptions;
  private readonly log: MethodLog;
  /** Captured header names (headers.ts): with FRAMING_FIELDS, the fields a head's parse keeps. */
  private readonly captured: ReadonlySet<string>;
  private state: State = 'idle';
  private failure: string | null = null;
  private ended = false;
  /** Ordinal the next reported message gets. */
  private ordinal = 0;
  /** Unparsed bytes of the current head or chunk-size line. */
  private buf: Uint8Array = EMPTY;
  private bufLen = 0;
  /** Line scanning across pushes: length of the current line so far, and its last byte (a CR alone is an empty line). */
  private lineLen = 0;
  private lineLast = 0;
  private lineDone = false;
  private lineEmpty = false;
  private start: StartLine | null = null;
  /** The message whose body is being read (null in 'idle' and 'head'). */
  private msg: L7Message | null = null;
  /** Bytes left in a sized body or in the current chunk; > 0 in those states. */
  private remaining = 0;
  private trailerLen = 0;
  private sawCR = false;
  private startTs = 0n;
  private lastTs = 0n;
  /** Set once the current message is known to switch protocols when it ends. */
  private stopAfter: string | null = null;

  constructor(kind: L7Kind, opts: L7ParseOptions, log: MethodLog) {
    this.kind = kind;
    this.opts = opts;
    this.log = log;
    this.captured = capturedHeaders(opts);
  }

  get failed(): string | null {
    return this.failure;
  }

  get bufferedBytes(): number {
    return this.buf.length;
  }

  private get stopped(): boolean {
    return this.failure !== null || this.ended;
  }

  push(bytes: Uint8Array, ts: bigint): L7Message[] {
    const out: L7Message[] = [];
    let i = 0;
    // Each turn consumes at least one byte or changes state without consuming, so this ends.
    while (i < bytes.length && !this.stopped) {
      if (this.state !== 'idle') this.lastTs = ts;
      switch (this.state) {
        case 'idle':
          i = this.stepIdle(bytes, i, ts);
          break;
        case 'head':
          i = this.stepHead(bytes, i, out);
          break;
        case 'sized':
        case 'chunk-data': {
          const take = Math.min(this.remaining, bytes.length - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.bodyDone(out);
          break;
        }
        case 'close':
          this.msg!.body_bytes += bytes.length - i;
          i = bytes.length;
          break;
        case 'chunk-size':
          i = this.stepChunkSize(bytes, i, out);
          break;
        case 'chunk-crlf':
          i = this.stepChunkCrlf(bytes, i, out);
          break;
        case 'trailers':
          i = this.stepTrailers(bytes, i, out);
          break;
      }
    }
    return out;
  }

  gap(len: number, ts: bigint): L7Message[] {
    const out: L7Message[] = [];
    if (this.stopped || !(len > 0)) return out;
    // The uncaptured bytes belong to the message in progress, so their syscall is its latest.
    if (this.state !== 'idle') this.lastTs = ts;
    switch (this.state) {
      case 'close':
        this.msg!.body_bytes += len;
        break;
      case 'sized':
      case 'chunk-data': {
        if (len < this.remaining) {
          this.remaining -= len;
          break;
        }
        const beyond = len - this.remaining;
        this.remaining = 0;
        if (this.state === 'sized') {
          // The message is whole (its framing was known). The bytes after it are not.
          this.bodyDone(out);
          if (beyond > 0 && !this.stopped) this.fail('gap past message end');
        } else if (beyond === 0) {
          this.bodyDone(out);
        } else {
          this.loseSync('gap across chunk boundary', out);
        }
        break;
      }
      case 'idle':
        this.fail('gap between messages');
        break;
      case 'head':
        this.loseSync('gap in headers', out);
        break;
      default:
        this.loseSync('gap in chunked framing', out);
    }
    return out;
  }

  end(_ts: bigint): L7Message[] {
    const out: L7Message[] = [];
    if (this.stopped) return out;
    // end_ns stays the time of the last byte, not of the close (L7Message.end_ns).
    if (this.state === 'close') this.complete(out);
    else if (this.state !== 'idle') this.reportTruncated(out);
    this.ended = true;
    this.reset();
    return out;
  }

  private stepIdle(bytes: Uint8Array, i: number, ts: bigint): number {
    const b = bytes[i]!;
    if (b === CR || b === LF) return i + 1;
    // Fail on the first byte when it cannot start a message (TLS, binary data) instead of buffering 16 KiB of it.
    if (this.kind === 'REQUEST' ? IS_TOKEN[b] !== 1 : b !== HTTP1_PREFIX[0]) {
      this.fail('bad start line');
      return i;
    }
    this.startTs = ts;
    this.state = 'head';
    this.lineLen = 0;
    return i;
  }

  private stepHead(bytes: Uint8Array, i: number, out: L7Message[]): number {
    const end = this.scanLine(bytes, i);
    // The cap depends only on the head's length, so every split of the stream fails at the same line.
    if (this.bufLen + (end - i) > MAX_HEAD_BYTES) {
      this.loseSync('headers too large', out);
      return end;
    }
    this.append(bytes, i, end);
    if (!this.lineDone) return end;
    if (this.start === null) {
      this.start = parseStartLine(this.kind, this.buf, 0, this.bufLen);
      if (this.start === null) this.fail('bad start line');
    } else if (this.lineEmpty) {
      this.headDone(out);
    }
    return end;
  }

  private stepChunkSize(bytes: Uint8Array, i: number, out: L7Message[]): number {
    const end = this.scanLine(bytes, i);
    if (this.bufLen + (end - i) > MAX_CHUNK_LINE) {
      this.loseSync('chunk size line too long', out);
      return end;
    }
    this.append(bytes, i, end);
    if (!this.lineDone) return end;
    const m = CHUNK_SIZE.exec(stripEol(utf8.decode(this.buf.subarray(0, this.bufLen))));
    this.bufLen = 0;
    if (m === null) {
      this.loseSync('bad chunk size', out);
      return end;
    }
    const size = Number.parseInt(m[1]!, 16);
    const msg = this.msg!;
    msg.body_bytes += size;
    if (msg.body_bytes > Number.MAX_SAFE_INTEGER) {
      this.loseSync('chunked body too large', out);
    } else if (size === 0) {
      this.state = 'trailers';
      this.trailerLen = 0;
    } else {
      this.state = 'chunk-data';
      this.remaining = size;
    }
    return end;
  }

  private stepChunkCrlf(bytes: Uint8Array, i: number, out: L7Message[]): number {
    const b = bytes[i]!;
    if (b === LF) {
      this.state = 'chunk-size';
    } else if (b === CR && !this.sawCR) {
      this.sawCR = true;
    } else {
      this.loseSync('bad chunk terminator', out);
    }
    return i + 1;
  }

  private stepTrailers(bytes: Uint8Array, i: number, out: L7Message[]): number {
    // Trailer fields are not kept (RFC 9110 6.5.1: they must not be merged into the headers blindly), only skipped.
    const end = this.scanLine(bytes, i);
    this.trailerLen += end - i;
    if (this.trailerLen > MAX_HEAD_BYTES) this.loseSync('trailers too large', out);
    else if (this.lineDone && this.lineEmpty) this.complete(out);
    return end;
  }

  /** Consumes up to and including the next LF. Sets lineDone, and lineEmpty when the line had nothing but an optional CR. */
  private scanLine(bytes: Uint8Array, i: number): number {
    const lf = bytes.indexOf(LF, i);
    if (lf < 0) {
      this.lineLen += bytes.length - i;
      this.lineLast = bytes[bytes.length - 1]!;
      this.lineDone = false;
      return bytes.length;
    }
    const len = this.lineLen + (lf - i);
    const last = lf > i ? bytes[lf - 1]! : this.lineLast;
    this.lineEmpty = len === 0 || (len === 1 && last === CR);
    this.lineDone = true;
    this.lineLen = 0;
    return lf + 1;
  }

  private append(bytes: Uint8Array, from: number, to: number): void {
    const need = this.bufLen + (to - from);
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.min(MAX_HEAD_BYTES, Math.max(need, 2 * this.buf.length, 256)));
      grown.set(this.buf.subarray(0, this.bufLen));
      this.buf = grown;
    }
    this.buf.set(bytes.subarray(from, to), this.bufLen);
    this.bufLen = need;
  }

  private headDone(out: L7Message[]): void {
    const head = parseHttp1Head(this.kind, this.buf, this.bufLen, this.captured, this.start!);
    if (head === null || !head.wellFormed) {
      this.loseSync('bad header line', out);
      return;
    }
    const fields = head.fields;
    this.bufLen = 0;
    if (this.buf.length > KEEP_BUFFER) this.buf = EMPTY;
    const start = this.start!;
    if (start.status !== null && start.status < 200 && start.status !== 101) {
      // Informational (RFC 9110 15.2): the final response to the same request is still to come.
      this.reset();
      return;
    }
    const msg = this.newMessage(start, fields);
    this.msg = msg;
    const framing = this.framing(msg, fields);
    if ('error' in framing) {
      this.loseSync(framing.error, out);
    } else if (framing.body === 'none') {
      this.complete(out);
    } else if (framing.body === 'sized') {
      msg.body_bytes = framing.length;
      this.remaining = framing.length;
      this.state = 'sized';
    } else {
      this.state = framing.body === 'chunked' ? 'chunk-size' : 'close';
    }
  }

  /** A message for a start line, taking its ordinal (and, for a response, its request's method). */
  private newMessage(start: StartLine, fields: readonly (readonly [string, string])[]): L7Message {
    const stream_id = this.ordinal++;
    if (start.method !== null) this.log.record(stream_id, start.method);
    return http1Message(this.kind, start, fields, this.opts, stream_id, this.startTs, this.lastTs);
  }

  private framing(msg: L7Message, fields: readonly (readonly [string, string])[]): Framing {
    let te: string | null = null;
    const lengths: string[] = [];
    const connection: string[] = [];
    let upgrade = false;
    for (const [name, value] of fields) {
      if (name === 'transfer-encoding') te = te === null ? value : `${te},${value}`;
      else if (name === 'content-length') lengths.push(...value.split(','));
      else if (name === 'connection') connection.push(...value.toLowerCase().split(',').map((t) => t.trim()));
      else if (name === 'upgrade') upgrade = true;
    }
    if (this.kind === 'REQUEST') {
      if (msg.method === 'CONNECT' || (upgrade && connection.includes('upgrade'))) this.stopAfter = 'upgrade';
    } else {
      const status = msg.status!;
      const method = this.log.take(msg.stream_id);
      if (status === 101 || (method === 'CONNECT' && status < 300)) {
        this.stopAfter = 'upgrade';
        return { body: 'none' };
      }
      if (method === 'HEAD' || status === 204 || status === 304) return { body: 'none' };
    }
    if (te !== null) {
      const codings = te.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '');
      if (codings.at(-1) === 'chunked') return { body: 'chunked' };
      // RFC 9112 6.3: a request whose body is not chunked last cannot be delimited.
      return this.kind === 'REQUEST' ? { error: 'bad transfer-encoding' } : { body: 'close' };
    }
    if (lengths.length > 0) {
      const values = lengths.map((v) => v.trim());
      if (!values.every((v) => CONTENT_LENGTH.test(v) && v === values[0])) return { error: 'bad content-length' };
      const n = Number(values[0]);
      return n === 0 ? { body: 'none' } : { body: 'sized', length: n };
    }
    return this.kind === 'REQUEST' ? { body: 'none' } : { body: 'close' };
  }

  private bodyDone(out: L7Message[]): void {
    if (this.state === 'sized') {
      this.complete(out);
    } else {
      this.state = 'chunk-crlf';
      this.sawCR = false;
    }
  }

  private complete(out: L7Message[]): void {
    const msg = this.msg!;
    msg.end_ns = this.lastTs;
    out.push(msg);
    const stop = this.stopAfter;
    this.reset();
    if (stop !== null) this.fail(stop);
  }

  /** Reports the current message, cut short, if its start line was seen. */
  private reportTruncated(out: L7Message[]): void {
    let msg = this.msg;
    if (msg === null && this.state === 'head' && this.start !== null) {
      const { status } = this.start;
      if (status !== null && status < 200 && status !== 101) return;
      // Only whole field lines: a line the cut went through may hold a value cut short.
      msg = this.newMessage(this.start, parseHttp1Head(this.kind, this.buf, this.bufLen, this.captured, this.start)?.fields ?? []);
    }
    if (msg === null) return;
    msg.truncated = true;
    msg.end_ns = this.lastTs;
    out.push(msg);
  }

  private loseSync(reason: string, out: L7Message[]): void {
    this.reportTruncated(out);
    this.fail(reason);
  }

  private fail(reason: string): void {
    this.failure = reason;
    this.reset();
    this.buf = EMPTY;
  }

  private reset(): void {
    this.state = 'idle';
    this.start = null;
    this.msg = null;
    this.stopAfter = null;
    this.remaining = 0;
    this.bufLen = 0;
    this.lineLen = 0;
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

function stripEol(line: string): string {
  return stripCr(line.endsWith('\n') ? line.slice(0, -1) : line);
}

/** A message head parsed from its bytes: see parseHttp1Head. */
export interface Http1Head {
  start: Http1StartLine;
  /** [lower-case name, value] of framing's fields and the captured ones, in order (the other lines are checked, not kept). */
  fields: [string, string][];
  /** Just past the empty line that ends the head; -1 when the bytes end first (a head cut short). */
  end: number;
  /** False when a line is malformed (RFC 9112 5.1 makes the head invalid; such lines are skipped in `fields`). */
  wellFormed: boolean;
  /** The start line is cut short: `start` holds what its bytes show ('' version, a target perhaps cut). */
  startCut: boolean;
}

/**
 * The HTTP/1 head parser, the one both paths use: the stream parser on the
 * head it has buffered (whole, or cut short by a gap or a close), and
 * exchange.ts on the head bytes of an exchange record (bpf/l7.bpf.c copies
 * the first rf_l7_head_bytes of each message). `buf[0, len)` starts at the
 * start line (CR and LF before it are skipped, RFC 9112 2.2) and may end
 * anywhere: a head cut short keeps its whole field lines only (a line the
 * cut went through may hold a value cut short), and a start line cut short
 * gives what its bytes show (method and the target so far; a status
 * line's version and code once its first 12 bytes are there). Null when
 * the bytes start no start line. `start`: the start line the caller parsed already.
 */
export function parseHttp1Head(kind: L7Kind, buf: Uint8Array, len: number, captured: ReadonlySet<string>, start?: Http1StartLine): Http1Head | null {
  len = Math.min(len, buf.length);
  let from = 0;
  while (from < len && (buf[from] === CR || buf[from] === LF)) from++;
  const lf = indexOfLF(buf, from, len);
  if (lf < 0) {
    const cut = parseCutStartLine(kind, buf, from, len);
    return cut === null ? null : { start: cut, fields: [], end: -1, wellFormed: true, startCut: true };
  }
  const s = start ?? parseStartLine(kind, buf, from, len);
  if (s === null) return null;
  const f = parseFields(buf, lf + 1, len, captured);
  // no spread: it copies property by property through a generic path (8% of the exchange path's samples)
  return { start: s, fields: f.fields, end: f.end, wellFormed: f.wellFormed, startCut: false };
}

/** 'x.y' for the digit y after 'HTTP/1.': shared strings, none built per head. */
const HTTP1_VERSIONS = Array.from({ length: 10 }, (_, d) => `1.${d}`);

/**
 * The start line at buf[from] (it ends at the next LF before `to`), null when there is none or it is malformed.
 * An ASCII line (nearly all) is matched on its bytes, REQUEST_LINE's and STATUS_LINE's rules spelled out,
 * and only method and target become strings (the line's string and the regex were ~1/3 of a head's parse).
 * A line with any other byte goes through the regex on its decoded text: there U+2028/U+2029 are line
 * terminators to the regex's `.`, and invalid UTF-8 is U+FFFD, which the byte rules would have to copy.
 */
function parseStartLine(kind: L7Kind, buf: Uint8Array, from: number, to: number): Http1StartLine | null {
  const lf = indexOfLF(buf, from, to);
  if (lf < 0) return null;
  let e = lf;
  if (e > from && buf[e - 1] === CR) e--;
  // Non-ASCII matters only where the regex would take it (target, reason phrase) and at the start (the
  // decoder drops a leading BOM): elsewhere a byte >= 0x80 fails the byte rules as its character fails the regex's.
  if (buf[from]! >= 0x80) return parseStartLineText(kind, buf, from, lf);
  if (kind === 'REQUEST') {
    // method SP request-target SP "HTTP/1." DIGIT: the target holds no SP, so each part ends at the first byte not its own
    let k = from;
    while (k < e && IS_TOKEN[buf[k]!] === 1) k++;
    if (k === from || k === e || buf[k] !== SP) return null;
    const methodEnd = k++;
    const targetStart = k;
    while (k < e && buf[k]! > SP && buf[k] !== 0x7f) k++;
    for (let j = targetStart; j < k; j++) if (buf[j]! >= 0x80) return parseStartLineText(kind, buf, from, lf);
    if (k === targetStart || e - k !== 9 || buf[k] !== SP || !isHttp1Version(buf, k + 1)) return null;
    return { method: text(buf, from, methodEnd, utf8), target: text(buf, targetStart, k, utf8), status: null, version: HTTP1_VERSIONS[buf[k + 8]! - 0x30]! };
  }
  // "HTTP/1." DIGIT SP [1-9] DIGIT DIGIT [ SP reason ]: in ASCII the regex's `.` takes any byte but CR (LF ended the line)
  if (e - from < 12 || !isHttp1Version(buf, from) || buf[from + 8] !== SP) return null;
  const c0 = buf[from + 9]!;
  const c1 = buf[from + 10]!;
  const c2 = buf[from + 11]!;
  if (c0 < 0x31 || c0 > 0x39 || !isDigit(c1) || !isDigit(c2)) return null;
  if (e > from + 12) {
    if (buf[from + 12] !== SP) return null;
    for (let k = from + 13; k < e; k++) {
      if (buf[k]! >= 0x80) return parseStartLineText(kind, buf, from, lf);
      if (buf[k] === CR) return null;
    }
  }
  return { method: null, target: null, status: (c0 - 0x30) * 100 + (c1 - 0x30) * 10 + (c2 - 0x30), version: HTTP1_VERSIONS[buf[from + 7]! - 0x30]! };
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** buf[at, at + 8) is 'HTTP/1.' and a digit. */
function isHttp1Version(buf: Uint8Array, at: number): boolean {
  for (let k = 0; k < HTTP1_PREFIX.length; k++) if (buf[at + k] !== HTTP1_PREFIX[k]) return false;
  return isDigit(buf[at + 7]!);
}

/** parseStartLine for a line with non-ASCII bytes: REQUEST_LINE or STATUS_LINE on its decoded text (buf[lf] is its LF). */
function parseStartLineText(kind: L7Kind, buf: Uint8Array, from: number, lf: number): Http1StartLine | null {
  const line = stripEol(text(buf, from, lf + 1, utf8));
  if (kind === 'REQUEST') {
    const m = REQUEST_LINE.exec(line);
    return m === null ? null : { method: m[1]!, target: m[2]!, status: null, version: m[3]! };
  }
  const m = STATUS_LINE.exec(line);
  return m === null ? null : { method: null, target: null, status: Number(m[2]), version: m[1]! };
}

const REQUEST_LINE_CUT = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+)(?: (?:H(?:T(?:T(?:P(?:\/(?:1(?:\.\d?)?)?)?)?)?)?)?)?$/;
const STATUS_LINE_CUT = /^HTTP\/(1\.\d) ([1-9]\d\d)(?: .*)?$/;

/** A start line whose bytes end before its LF: what they show, null when they cannot be the start of one. */
function parseCutStartLine(kind: L7Kind, buf: Uint8Array, from: number, to: number): Http1StartLine | null {
  const line = stripCr(text(buf, from, to, utf8));
  if (kind === 'REQUEST') {
    const m = REQUEST_LINE_CUT.exec(line);
    return m === null ? null : { method: m[1]!, target: m[2]!, status: null, version: '' };
  }
  const m = STATUS_LINE_CUT.exec(line);
  return m === null ? null : { method: null, target: null, status: Number(m[2]), version: m[1]! };
}

/** The L7Message of a head (body_bytes 0 and truncated false until the caller knows better). */
export function http1Message(kind: L7Kind, start: Http1StartLine, fields: readonly (readonly [string, string])[], opts: L7ParseOptions,
  stream_id: number, start_ns: bigint, end_ns: bigint): L7Message {
  const headers: Record<string, string> = {};
  for (const [name, value] of fields) keepHeader(headers, name, value, opts);
  return {
    protocol: 'HTTP1',
    kind,
    start_ns,
    end_ns,
    stream_id,
    method: start.method,
    path: start.target === null ? null : redactTarget(start.target, opts),
    status: start.status,
    headers,
    grpc_service: null,
    grpc_method: null,
    grpc_status: null,
    dns_name: null,
    dns_type: null,
    dns_rcode: null,
    dns_answers: null,
    body_bytes: 0,
    truncated: false,
    protocol_version: start.version,
  };
}

/**
 * The field lines in buf[from, to) up to the empty line that ends a head
 * (`end` just past it, -1 when there is none), as [lower-case name, value]
 * for framing's fields and the `captured` ones (the other lines are checked,
 * not kept). A malformed line makes the head invalid (RFC 9112 5.1:
 * wellFormed false) and is skipped, and so is a line not yet ended (it may
 * hold a value cut short). Works on bytes: every delimiter (LF, CR, ':',
 * SP, HT) is ASCII, so no UTF-8 sequence spans one, and only kept values are decoded.
 */
function parseFields(buf: Uint8Array, from: number, to: number, captured: ReadonlySet<string>): { fields: [string, string][]; end: number; wellFormed: boolean } {
  const keptByLength = keptNamesByLength(captured);
  const fields: [string, string][] = [];
  let wellFormed = true;
  let end = -1;
  // obs-fold (RFC 9112 5.2) continues the previous well-formed field line, kept or not.
  let previous: [string, string] | null = null;
  let seenField = false;
  for (let s = from; s < to;) {
    let e = indexOfLF(buf, s, to);
    if (e < 0) break;
    const next = e + 1;
    if (e > s && buf[e - 1] === CR) e--;
    if (e === s) {
      end = next; // the empty line
      break;
    }
    const first = buf[s]!;
    if (first === SP || first === HT) {
      if (!seenField) {
        wellFormed = false;
      } else if (previous !== null) {
        previous[1] = `${previous[1]} ${decodeTrimmed(buf, s, e)}`;
      }
      s = next;
      continue;
    }
    let colon = s;
    while (colon < e && IS_TOKEN[buf[colon]!] === 1) colon++;
    if (colon === s || colon === e || buf[colon] !== COLON) {
      wellFormed = false;
      s = next;
      continue;
    }
    seenField = true;
    previous = null;
    // the name compared in place with the kept names of its length (most lines are not kept):
    // a kept one is the set's own string, no lower-cased copy is built
    const n = colon - s;
    const name = n < keptByLength.length ? keptName(keptByLength[n]!, buf, s) : '';
    if (name !== '') {
      previous = [name, decodeTrimmed(buf, colon + 1, e)];
      fields.push(previous);
    }
    s = next;
  }
  return { fields, end, wellFormed };
}

/**
 * The kept name (a framing field's or a captured header's, lower-case) that
 * buf[from, from + length) spells in any ASCII case, or '' (`names`: the kept
 * names of that length). A token's letters are ASCII: only A-Z fold.
 */
function keptName(names: readonly string[], buf: Uint8Array, from: number): string {
  for (let j = 0; j < names.length; j++) {
    const name = names[j]!;
    let k = 0;
    for (; k < name.length; k++) {
      const c = buf[from + k]!;
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== name.charCodeAt(k)) break;
    }
    if (k === name.length) return name;
  }
  return '';
}

const keptByLengthBySet = new WeakMap<ReadonlySet<string>, readonly (readonly string[])[]>();

/** [n]: the framing fields' and captured headers' names n characters long (captured sets are few and long-lived: headers.ts caches them per options). */
function keptNamesByLength(captured: ReadonlySet<string>): readonly (readonly string[])[] {
  let l = keptByLengthBySet.get(captured);
  if (l === undefined) {
    const names = [...new Set([...FRAMING_FIELDS, ...captured])];
    const byLength: string[][] = Array.from({ length: Math.max(0, ...names.map((n) => n.length)) + 1 }, () => []);
    for (const n of names) byLength[n.length]!.push(n);
    l = byLength;
    keptByLengthBySet.set(captured, l);
  }
  return l;
}

/**
 * The first LF in buf[from, to), -1 when there is none. A loop, not buf.indexOf: the heads are
 * Buffers, whose indexOf goes through JS argument checks into C++ per call, for lines of some 20 bytes.
 */
function indexOfLF(buf: Uint8Array, from: number, to: number): number {
  // to <= buf.length: parseHttp1Head clamps its len, the stream parser's bufLen is within its buffer
  for (let k = from; k < to; k++) if (buf[k] === LF) return k;
  return -1;
}

/** buf[from, to) as UTF-8 without leading or trailing SP and HT (OWS). */
function decodeTrimmed(buf: Uint8Array, from: number, to: number): string {
  let a = from;
  let b = to;
  while (a < b && (buf[a] === SP || buf[a] === HT)) a++;
  while (b > a && (buf[b - 1] === SP || buf[b - 1] === HT)) b--;
  return a === b ? '' : text(buf, a, b, utf8Value);
}

/**
 * buf[from, to) as a string: ASCII (nearly every head) without a call into
 * TextDecoder, anything else through `decoder` (UTF-8, invalid bytes as U+FFFD).
 */
function text(buf: Uint8Array, from: number, to: number, decoder: { decode(b: Uint8Array): string }): string {
  const n = to - from;
  if (n > ASCII_MAX) return decoder.decode(buf.subarray(from, to));
  if (n === 0) return '';
  // Most of what is kept repeats from head to head (method, host, user-agent, connection, content-type):
  // the string built last time for the same bytes is reused when they match, instead of a new one to collect.
  // The slot's bytes are kept beside it (a byte compare, not charCodeAt); only ASCII is stored, so a hit is ASCII.
  const slot = (n * 31 + buf[from]! * 7 + buf[to - 1]! * 3 + buf[from + (n >> 1)]!) & (ASCII_SLOTS - 1);
  const base = slot * ASCII_MAX;
  if (asciiCache[slot]!.length === n) {
    let k = 0;
    while (k < n && asciiBytes[base + k] === buf[from + k]) k++;
    if (k === n) return asciiCache[slot]!;
  }
  for (let k = from; k < to; k++) if (buf[k]! >= 0x80) return decoder.decode(buf.subarray(from, to));
  for (let k = 0; k < n; k++) asciiBytes[base + k] = buf[from + k]!;
  let s: string;
  // ASCII: latin1 is the same string; one native copy where `s += char` made a string per char (~10x for a traceparent)
  if (n > 8) {
    s = latin1Slice.call(buf, from, to);
  } else {
    s = '';
    for (let k = from; k < to; k++) s += String.fromCharCode(buf[k]!);
  }
  asciiCache[slot] = s;
  return s;
}

/** text()'s strings by a hash of their bytes, one per slot (at most 512 x 256 chars held). */
const ASCII_SLOTS = 512;
/** Longest string text() builds itself (longer ones go to the decoder) and so the most a slot holds. */
const ASCII_MAX = 256;
const asciiCache: string[] = new Array<string>(ASCII_SLOTS).fill('');
/** Slot i's bytes at [i * ASCII_MAX, i * ASCII_MAX + asciiCache[i].length). */
const asciiBytes = new Uint8Array(ASCII_SLOTS * ASCII_MAX);

/** Buffer's latin1 decoder, on any Uint8Array (the heads are plain views). */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, from: number, to: number): string }).latin1Slice;
