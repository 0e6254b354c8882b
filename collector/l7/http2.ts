/**
 * HTTP/2 over cleartext TCP with prior knowledge (h2c, what gRPC speaks
 * without TLS), and gRPC on top of it. Frames are parsed here; header blocks
 * are decoded with hpack.js. Each direction has its own HPACK decoder because
 * each endpoint's encoder keeps its own dynamic table (RFC 7541 2.2).
 *
 * Wire grammar (RFC 9113 3.4, 4.1, 6):
 *   client  = preface SETTINGS frame*      preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
 *   server  = SETTINGS frame*
 *   frame   = length:u24 type:u8 flags:u8 (R:1 stream:u31) payload[length]
 *   DATA          (0) = [padlen:u8] data [padding]                   END_STREAM 0x1, PADDED 0x8
 *   HEADERS       (1) = [padlen:u8] [E:1 dep:u31 weight:u8] fragment [padding]
 *                                                                    END_STREAM, END_HEADERS 0x4, PADDED, PRIORITY 0x20
 *   PRIORITY      (2) = E:1 dep:u31 weight:u8
 *   RST_STREAM    (3) = error:u32
 *   SETTINGS      (4) = (id:u16 value:u32)*                          ACK 0x1
 *   PUSH_PROMISE  (5) = [padlen:u8] R:1 promised:u31 fragment [padding]
 *   PING (6) = opaque:u64   GOAWAY (7) = R:1 last:u31 error:u32 debug*   WINDOW_UPDATE (8) = R:1 increment:u31
 *   CONTINUATION  (9) = fragment                                     END_HEADERS
 * A header block is one HEADERS or PUSH_PROMISE and the CONTINUATIONs that
 * follow it with nothing in between (RFC 9113 4.3).
 *
 * One message per stream and direction: the REQUEST when the client's side of
 * the stream ends (END_STREAM) or is reset, the RESPONSE when the server's
 * side does. gRPC (content-type application/grpc*) maps /package.Service/Method
 * and grpc-status (RFC-less, see grpc/doc/PROTOCOL-HTTP2.md).
 *
 * Both parsers of a connection share a little state: the request's gRPC
 * service and method (a response carries neither), each side's SETTINGS
 * (the other side's frames are bounded by them), and RST_STREAM (a stream
 * reset by one side ends on the other too).
 *
 * Losses do not stop a direction (issue 10, docs/design/l7-in-kernel.md §3).
 * A gap inside a header block loses that block's fields and the HPACK table:
 * the stream is still reported (truncated) and later blocks are decoded by
 * hpack-partial.ts, which knows what does not depend on the lost part of the
 * table and reports the rest as absent (the message then truncated). A gap
 * across frames (records dropped) loses the framing too: the direction skips
 * to the next write that starts with whole frames (looksLikeHttp2Frames). A
 * connection seen from its middle starts that way (midConnection). What was
 * lost and recovered is counted (takeHttp2Counts); only input no peer writes
 * (malformed frames, HPACK that cannot be decoded) still stops a direction.
 */
import hpack from 'hpack.js';
import type { HpackDecompressor, HpackHeaderField } from 'hpack.js';
import { keepHeader, redactTarget, MAX_HEADER_VALUE, MAX_PATH } from './headers.ts';
import { PartialHpack, type PartialField } from './hpack-partial.ts';
import { DEFAULT_L7_OPTIONS, type L7Kind, type L7Message, type L7ParseOptions, type StreamParser } from './types.ts';

const PREFACE = new TextEncoder().encode('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const SETTINGS_MAX_FRAME_SIZE = 0x5;

/** RFC 9113 6.5.2: the initial SETTINGS_MAX_FRAME_SIZE and the largest value it may take. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
const LARGEST_MAX_FRAME_SIZE = 16_777_215;
/**
 * Largest header block (HEADERS/PUSH_PROMISE + CONTINUATIONs) buffered for
 * decoding; a larger one fails the direction. Real blocks are far smaller
 * (gRPC's default metadata limit is 8 KiB, nghttp2's header list 64 KiB decoded).
 */
export const MAX_HEADER_BLOCK = 65_536;
/** RFC 7541 4.2 / RFC 9113 6.5.2: every encoder's dynamic table starts at 4096 octets. */
const INITIAL_HPACK_TABLE = 4_096;
/**
 * Largest dynamic table size update accepted. The real ceiling is the
 * decoder's SETTINGS_HEADER_TABLE_SIZE, but that travels on the other
 * direction, which may be fed later or lost; a fixed ceiling keeps the result
 * independent of that order and bounds the table's memory. Common stacks
 * (nghttp2, Go, Netty) advertise 4096.
 */
export const MAX_HPACK_TABLE = 65_536;
/** Streams open at once per direction; past it the oldest is reported truncated. */
export const MAX_OPEN_STREAMS = 1_000;
/** Bound on the id sets kept per connection (closed streams, pending resets, requests' gRPC names). */
const MAX_REMEMBERED = 1_024;
/** SETTINGS octets looked at (a frame holds 6 per setting; real ones hold a handful). */
const MAX_SETTINGS_KEPT = 1_024;
const MAX_METHOD = 64;
/** grpc-status is 0..16 today; anything that is not a short decimal is no status. */
const GRPC_STATUS = /^[0-9]{1,4}$/;
const GRPC_PATH = /^\/([^/?#]+)\/([^/?#]+)$/;
const NON_ASCII = /[^\x00-\x7f]/;

/** True when `b` starts with the client connection preface (at least its request line, 16 bytes, when shorter). */
export function looksLikeHttp2Preface(b: Uint8Array): boolean {
  const n = Math.min(b.length, PREFACE.length);
  if (n < 16) return false;
  for (let i = 0; i < n; i++) if (b[i] !== PREFACE[i]) return false;
  return true;
}

/**
 * True when `b` (the captured start of one syscall's bytes) reads as whole
 * HTTP/2 frames: a plausible frame header (a known type, its stream id, length
 * and flags as RFC 9113 6 allows them; a block's CONTINUATION only right after
 * it) followed by more of them, ending exactly at the end of `b` or, for a
 * capture cut short, running past it after at least two. Where a direction that
 * lost its framing starts again: senders write whole frames per syscall, and a
 * chain makes a false start on a frame's inside rare (one header alone is
 * what Coroot checks; two are the design's, §3).
 */
export function looksLikeHttp2Frames(b: Uint8Array): boolean {
  let o = 0;
  let frames = 0;
  let open = false; // a header block without END_HEADERS: only its CONTINUATION may follow
  while (o + 9 <= b.length) {
    const len = (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
    const type = b[o + 3]!;
    const flags = b[o + 4]!;
    const stream = (((b[o + 5]! << 24) | (b[o + 6]! << 16) | (b[o + 7]! << 8) | b[o + 8]!) >>> 0);
    if (stream > 0x7fffffff || len > LARGEST_MAX_FRAME_SIZE) return false;
    if (open !== (type === CONTINUATION)) return false;
    let ok: boolean;
    switch (type) {
      case DATA: ok = stream !== 0 && (flags & ~(FLAG_END_STREAM | FLAG_PADDED)) === 0; break;
      case HEADERS: ok = stream !== 0 && (flags & ~(FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY)) === 0; break;
      case PRIORITY: ok = stream !== 0 && len === 5 && flags === 0; break;
      case RST_STREAM: ok = stream !== 0 && len === 4 && flags === 0; break;
      case SETTINGS: ok = stream === 0 && len % 6 === 0 && (flags & ~FLAG_ACK) === 0 && ((flags & FLAG_ACK) === 0 || len === 0); break;
      case PUSH_PROMISE: ok = stream !== 0 && (flags & ~(FLAG_END_HEADERS | FLAG_PADDED)) === 0; break;
      case PING: ok = stream === 0 && len === 8 && (flags & ~FLAG_ACK) === 0; break;
      case GOAWAY: ok = stream === 0 && len >= 8 && flags === 0; break;
      case WINDOW_UPDATE: ok = len === 4 && flags === 0; break;
      case CONTINUATION: ok = stream !== 0 && (flags & ~FLAG_END_HEADERS) === 0; break;
      default: ok = false;
    }
    if (!ok) return false;
    if (type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) open = (flags & FLAG_END_HEADERS) === 0;
    frames++;
    o += 9 + len;
  }
  return o === b.length ? frames >= 1 : frames >= 2;
}

/**
 * For a connection seen only from its middle (ringflow started after it): when
 * `b`, one syscall's captured bytes, reads as whole frames (looksLikeHttp2Frames)
 * holding a whole header block whose pseudo-header fields can be known without
 * the connection's HPACK tables, which side wrote it: 'REQUEST' for :method,
 * :path, :scheme or :authority, 'RESPONSE' for :status; else null. Static-table
 * references and literals with static names are how every encoder writes the
 * common pseudo-headers (RFC 7541 Appendix A puts them first in the table).
 */
export function http2MidstreamSide(b: Uint8Array): L7Kind | null {
  if (!looksLikeHttp2Frames(b)) return null;
  for (let o = 0; o + 9 <= b.length;) {
    const len = (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
    const type = b[o + 3]!;
    const flags = b[o + 4]!;
    if (type === HEADERS && (flags & FLAG_END_HEADERS) !== 0 && o + 9 + len <= b.length) {
      let from = o + 9;
      let to = from + len;
      if ((flags & FLAG_PADDED) !== 0) to -= b[from++]!;
      if ((flags & FLAG_PRIORITY) !== 0) from += 5;
      if (from > to) return null;
      let fields: PartialField[];
      try {
        // a throwaway table: what this block inserts is decoded again, for real, by the parser
        fields = new PartialHpack(MAX_HPACK_TABLE).decode(b.subarray(from, to));
      } catch {
        return null;
      }
      for (const f of fields) {
        if (f.name === ':status') return 'RESPONSE';
        if (f.name === ':method' || f.name === ':path' || f.name === ':scheme' || f.name === ':authority') return 'REQUEST';
      }
    }
    o += 9 + len;
  }
  return null;
}

/** Counts a direction keeps besides its stop reason (takeHttp2Counts): what it lost and what it recovered. */
export const H2_COUNT = {
  /** A message decoded while the HPACK table was partly unknown: some of its fields are absent (it is marked truncated). */
  hpackPartial: 'hpack_partial',
  /** The dynamic table became fully known again after a loss. */
  hpackResynced: 'hpack_resynced',
  /** Framing found again after a loss (looksLikeHttp2Frames). */
  frameResync: 'frame_resync',
  /** Records skipped while the framing was lost: their messages are lost. */
  seekSkipped: 'record skipped seeking frames',
} as const;

/**
 * The counts (by reason) a direction made since the last call, then forgets
 * them; null when there are none or `p` is not an HTTP/2 direction. Losses are
 * counted by the reason a stop used to have ('hpack desync', 'gap across
 * frames'), recoveries under H2_COUNT.
 */
export function takeHttp2Counts(p: StreamParser): [string, number][] | null {
  if (!(p instanceof Direction) || p.counts.size === 0) return null;
  const out = [...p.counts];
  p.counts.clear();
  return out;
}

export interface Http2ConnectionOptions {
  /**
   * The connection was under way before its first bytes seen here (ringflow
   * started mid-connection): no preface or SETTINGS first, framing found at
   * the first syscall that starts with whole frames, HPACK tables unknown.
   */
  midConnection?: boolean;
}

/** The two parsers of one TCP connection: `requests` is fed what the client sent, `responses` what the server sent. */
export function createHttp2Connection(opts: L7ParseOptions = DEFAULT_L7_OPTIONS, o: Http2ConnectionOptions = {}): { requests: StreamParser; responses: StreamParser } {
  const shared: Shared = { requests: new Map() };
  const requests = new Direction('REQUEST', opts, shared, o.midConnection === true);
  const responses = new Direction('RESPONSE', opts, shared, o.midConnection === true);
  requests.peer = responses;
  responses.peer = requests;
  return { requests, responses };
}

/** What a response needs from its request: gRPC names appear only in the request's :path. */
interface RequestInfo {
  grpc: boolean;
  service: string | null;
  method: string | null;
}

interface Shared {
  requests: Map<number, RequestInfo>;
}

interface Stream {
  id: number;
  startNs: bigint;
  lastNs: bigint;
  /** Header blocks applied so far (the first carries the pseudo-headers; later ones are 1xx finals or trailers). */
  blocks: number;
  method: string | null;
  path: string | null;
  status: number | null;
  headers: Record<string, string>;
  grpc: boolean;
  grpcService: string | null;
  grpcMethod: string | null;
  grpcStatus: number | null;
  body: number;
  truncated: boolean;
  /** Some field referred to the unknown part of the HPACK table (or a whole block was lost). */
  partial: boolean;
}

interface Block {
  stream: number;
  startNs: bigint;
  endStream: boolean;
  /** PUSH_PROMISE: decoded to keep the table in sync, not reported (gRPC never pushes). */
  promise: boolean;
  parts: Uint8Array[];
  size: number;
  /** Octets of it were not captured: its fields are unknown and the table is lost after it. */
  lost: boolean;
}

const S_PREFACE = 0;
const S_HEADER = 1;
const S_PAYLOAD = 2;

const EMPTY = new Uint8Array(0);

class Direction implements StreamParser {
  failed: string | null = null;
  /** The other direction of the same connection (set right after both exist). */
  peer: Direction = this;
  /** Whether this side's SETTINGS were seen, and the largest SETTINGS_MAX_FRAME_SIZE it advertised: the bound on the peer's frames. */
  settingsSeen = false;
  maxFrameAdvertised = DEFAULT_MAX_FRAME_SIZE;

  private readonly kind: L7Kind;
  private readonly opts: L7ParseOptions;
  private readonly shared: Shared;
  private decoder: HpackDecompressor | null;
  private hpackError: Error | null = null;
  /** Set at the first loss of the HPACK table: decodes from then on (hpack.js needs the whole table). */
  private partial: PartialHpack | null = null;
  private partialResyncs = 0;
  /** The framing was lost: bytes are skipped until a push starts with whole frames (looksLikeHttp2Frames). */
  private seeking = false;
  /** See takeHttp2Counts. */
  readonly counts = new Map<string, number>();
  private ended = false;
  private out: L7Message[] = [];

  private state: number;
  private prefaceGot = 0;
  private framesSeen = 0;
  private readonly hdr = new Uint8Array(9);
  private hdrGot = 0;
  private frameStartNs = 0n;
  private fLen = 0;
  private fType = 0;
  private fFlags = 0;
  private fStream = 0;
  /** Payload octets consumed, captured or gap. */
  private fGot = 0;
  /** The payload's leading octets that the frame's handling needs, and how many of them were captured. */
  private fKeep: Uint8Array = EMPTY;
  private fKeepGot = 0;
  private fGapped = false;

  private block: Block | null = null;
  private readonly streams = new Map<number, Stream>();
  /** Recently ended stream ids: late frames for them (trailers after a reset...) open nothing. */
  private readonly closed = new Set<number>();
  /** Client streams open in increasing id order (RFC 9113 5.1.1): an id at or below this one that is not open has ended. */
  private maxOpened = 0;
  /** RST_STREAMs seen on the other direction: stream id -> time, applied at this side's first frame at or after it. */
  private readonly peerResets = new Map<number, bigint>();

  constructor(kind: L7Kind, opts: L7ParseOptions, shared: Shared, midConnection: boolean) {
    this.kind = kind;
    this.opts = opts;
    this.shared = shared;
    this.state = kind === 'REQUEST' && !midConnection ? S_PREFACE : S_HEADER;
    if (midConnection) {
      this.decoder = null;
      this.partial = new PartialHpack(MAX_HPACK_TABLE);
      this.seeking = true;
      this.framesSeen = 1; // its SETTINGS went by before
      return;
    }
    const d = hpack.decompressor.create({ table: { maxSize: MAX_HPACK_TABLE } });
    d.updateTableSize(INITIAL_HPACK_TABLE);
    // hpack.js reports bad input by emitting 'error' from execute(); keep it rather than have it thrown.
    d.on('error', (err) => { this.hpackError = err; });
    this.decoder = d;
  }

  push(bytes: Uint8Array, ts: bigint): L7Message[] {
    if (this.failed !== null || this.ended) return [];
    if (this.seeking) {
      // Each push is the start of a syscall's bytes (the tracker's records): where framing may start again.
      if (!looksLikeHttp2Frames(bytes)) {
        this.count(H2_COUNT.seekSkipped);
        return [];
      }
      this.seeking = false;
      this.count(H2_COUNT.frameResync);
    }
    return this.run(() => this.consume(bytes, ts));
  }

  /**
   * `cut`: a payload BPF left in the kernel on purpose (DATA, PING,
   * WINDOW_UPDATE, PRIORITY; bpf/l7_h2.h): its size is known and it holds
   * nothing parsed, so a DATA frame cut whole is not `truncated`. A cut
   * anywhere else is treated as the loss any gap is.
   */
  gap(len: number, ts: bigint, cut = false): L7Message[] {
    if (this.failed !== null || this.ended || !(len > 0) || this.seeking) return [];
    return this.run(() => this.skip(len, ts, cut));
  }

  end(ts: bigint): L7Message[] {
    if (this.failed !== null || this.ended) return [];
    return this.run(() => {
      this.applyPeerResets(ts);
      // The connection is gone: what is open will never complete; report what is known.
      for (const s of [...this.streams.values()]) this.close(s, true);
      this.ended = true;
      this.release();
    });
  }

  /** Runs one call's work; a bug or an unforeseen input fails the direction instead of throwing into the collector. */
  private run(work: () => void): L7Message[] {
    const out: L7Message[] = [];
    this.out = out;
    try {
      work();
    } catch (err) {
      this.fail(`internal error: ${String((err as Error)?.message ?? err).slice(0, 80)}`);
    }
    this.out = [];
    return out;
  }

  private consume(bytes: Uint8Array, ts: bigint): void {
    const n = bytes.length;
    let i = 0;
    while (i < n && this.failed === null) {
      if (this.state === S_PREFACE) {
        const k = Math.min(PREFACE.length - this.prefaceGot, n - i);
        for (let j = 0; j < k; j++) {
          if (bytes[i + j] !== PREFACE[this.prefaceGot + j]) return this.fail('no connection preface');
        }
        this.prefaceGot += k;
        i += k;
        if (this.prefaceGot === PREFACE.length) this.state = S_HEADER;
      } else if (this.state === S_HEADER) {
        if (this.hdrGot === 0) {
          this.frameStartNs = ts;
          this.applyPeerResets(ts);
        }
        const k = Math.min(9 - this.hdrGot, n - i);
        this.hdr.set(bytes.subarray(i, i + k), this.hdrGot);
        this.hdrGot += k;
        i += k;
        if (this.hdrGot === 9) {
          this.hdrGot = 0;
          this.beginFrame();
          if (this.failed === null && this.fLen === 0) this.finishFrame(ts);
        }
      } else {
        const k = Math.min(this.fLen - this.fGot, n - i);
        if (!this.fGapped && this.fKeepGot < this.fKeep.length) {
          const c = Math.min(this.fKeep.length - this.fKeepGot, k);
          this.fKeep.set(bytes.subarray(i, i + c), this.fKeepGot);
          this.fKeepGot += c;
        }
        this.fGot += k;
        i += k;
        if (this.fGot === this.fLen) this.finishFrame(ts);
      }
    }
  }

  /** `len` octets went by uncaptured. Only the inside of a frame whose octets are not needed can be skipped. */
  private skip(len: number, ts: bigint, cut = false): void {
    // Not a count of octets (Infinity, 1.5): where the stream resumes is unknown.
    if (!Number.isSafeInteger(len)) return this.fail('bad gap length');
    if (this.state === S_PREFACE) return this.fail('gap in connection preface');
    // A lost frame header loses the framing; if a header block was open, its CONTINUATION is what was lost.
    if (this.state === S_HEADER) return this.loseFraming(this.block !== null ? 'hpack desync' : 'gap across frames', ts);
    // Header block octets feed the HPACK dynamic table: missing any of them leaves it unknown from here
    // (the block's own fields too); the frame layer goes on, and so do the fields that do not need the table.
    const blockFrame = this.fType === HEADERS || this.fType === CONTINUATION || this.fType === PUSH_PROMISE;
    if (blockFrame) {
      this.loseTable('hpack desync');
      if (this.block !== null) this.block.lost = true;
    }
    const remaining = this.fLen - this.fGot;
    // A cut inside a frame whose payload is not read (none of it kept: fKeep is empty) loses nothing.
    const harmless = cut && !blockFrame && len <= remaining && this.fKeep.length === 0;
    this.fGot += Math.min(len, remaining);
    if (!harmless) this.fGapped = true;
    if (this.fGot === this.fLen) this.finishFrame(ts);
    // The gap ran past this frame: the frames it hid (maybe HEADERS) cannot be known.
    if (len > remaining && this.failed === null) this.loseFraming(blockFrame ? null : 'gap across frames', ts);
  }

  /**
   * Where the next frame starts is unknown: an open header block is finished
   * as lost (its stream is still reported), the table is lost (the hidden
   * frames may have changed it), and bytes are skipped until a push starts
   * with whole frames. `reason`: the loss to count (null: counted already).
   */
  private loseFraming(reason: string | null, ts: bigint): void {
    if (reason !== null) this.count(reason);
    if (this.block !== null) {
      this.block.lost = true;
      this.completeBlock(ts);
    }
    this.loseTable(null);
    this.seeking = true;
    this.state = S_HEADER;
    this.hdrGot = 0;
    this.fKeep = EMPTY;
  }

  /** The HPACK table is no longer known: decoding goes on in PartialHpack (what it can still know: see there). */
  private loseTable(reason: string | null): void {
    if (reason !== null) this.count(reason);
    this.decoder = null;
    this.partial ??= new PartialHpack(MAX_HPACK_TABLE);
    this.partial.lose();
  }

  private count(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  private beginFrame(): void {
    const h = this.hdr;
    const len = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
    const type = h[3]!;
    const flags = h[4]!;
    const stream = ((h[5]! & 0x7f) << 24) | (h[6]! << 16) | (h[7]! << 8) | h[8]!;
    this.fLen = len;
    this.fType = type;
    this.fFlags = flags;
    this.fStream = stream;
    this.fGot = 0;
    this.fKeepGot = 0;
    this.fGapped = false;
    this.fKeep = EMPTY;
    this.state = S_PAYLOAD;

    // RFC 9113 3.4: each side's first frame is its SETTINGS; anything else is not HTTP/2 (an HTTP/1 reply, say).
    if (this.framesSeen++ === 0 && (type !== SETTINGS || (flags & FLAG_ACK) !== 0)) return this.fail('no SETTINGS preface');
    // Lenient until the peer's SETTINGS are seen: they travel on the other direction, which may be fed later.
    const limit = this.peer.settingsSeen ? this.peer.maxFrameAdvertised : LARGEST_MAX_FRAME_SIZE;
    if (len > limit) return this.fail('frame larger than SETTINGS_MAX_FRAME_SIZE');
    if (this.block !== null && (type !== CONTINUATION || stream !== this.block.stream)) return this.fail('header block interrupted');

    let keep = 0;
    let ok = true;
    switch (type) {
      case DATA:
        ok = stream !== 0 && ((flags & FLAG_PADDED) === 0 || len >= 1);
        keep = (flags & FLAG_PADDED) !== 0 ? 1 : 0;
        break;
      case HEADERS:
      case PUSH_PROMISE:
        ok = stream !== 0;
        if (len > MAX_HEADER_BLOCK) return this.fail('header block too large');
        keep = len;
        break;
      case CONTINUATION:
        if (this.block === null) return this.fail('CONTINUATION without HEADERS');
        if (this.block.size + len > MAX_HEADER_BLOCK) return this.fail('header block too large');
        keep = len;
        break;
      case PRIORITY:
        ok = stream !== 0 && len === 5;
        break;
      case RST_STREAM:
        ok = stream !== 0 && len === 4;
        break;
      case SETTINGS:
        ok = stream === 0 && len % 6 === 0 && ((flags & FLAG_ACK) === 0 || len === 0);
        keep = Math.min(len, MAX_SETTINGS_KEPT);
        break;
      case PING:
        ok = stream === 0 && len === 8;
        break;
      case GOAWAY:
        ok = stream === 0 && len >= 8;
        break;
      case WINDOW_UPDATE:
        ok = len === 4;
        break;
      default:
        // RFC 9113 5.5: frames of unknown types are ignored (extensions).
        break;
    }
    if (!ok) return this.fail(`malformed frame (type ${type})`);
    if (keep > 0) this.fKeep = new Uint8Array(keep);
  }

  /** The frame's last octet arrived at `ts` (captured or in a gap). */
  private finishFrame(ts: bigint): void {
    this.state = S_HEADER;
    const p = this.fKeep.subarray(0, this.fKeepGot);
    this.fKeep = EMPTY;
    switch (this.fType) {
      case DATA: {
        let data = this.fLen;
        if ((this.fFlags & FLAG_PADDED) !== 0) {
          // A pad length lost in a gap counts as no padding: padding is rare and only ever hides sizes.
          const pad = p.length > 0 ? p[0]! : 0;
          if (pad > this.fLen - 1) return this.fail('malformed frame (padding)');
          data = this.fLen - 1 - pad;
        }
        const s = this.streams.get(this.fStream);
        if (s === undefined) return;
        s.body += data;
        s.lastNs = ts;
        if (this.fGapped) s.truncated = true;
        if ((this.fFlags & FLAG_END_STREAM) !== 0) this.close(s, false);
        return;
      }
      case HEADERS:
      case PUSH_PROMISE: {
        if (this.fGapped) {
          // Its fields are unknown (the table was lost with them); its stream and END_STREAM are not.
          this.block = {
            stream: this.fStream, startNs: this.frameStartNs, endStream: this.fType === HEADERS && (this.fFlags & FLAG_END_STREAM) !== 0,
            promise: this.fType === PUSH_PROMISE, parts: [], size: 0, lost: true,
          };
          if ((this.fFlags & FLAG_END_HEADERS) !== 0) this.completeBlock(ts);
          return;
        }
        let off = 0;
        let pad = 0;
        if ((this.fFlags & FLAG_PADDED) !== 0) {
          pad = p[0] ?? 0;
          off = 1;
        }
        if (this.fType === HEADERS && (this.fFlags & FLAG_PRIORITY) !== 0) off += 5;
        if (this.fType === PUSH_PROMISE) off += 4;
        if (off + pad > p.length) return this.fail('malformed frame (padding)');
        this.block = {
          stream: this.fStream,
          startNs: this.frameStartNs,
          endStream: this.fType === HEADERS && (this.fFlags & FLAG_END_STREAM) !== 0,
          promise: this.fType === PUSH_PROMISE,
          parts: [p.subarray(off, p.length - pad)],
          size: p.length - off - pad,
          lost: false,
        };
        if ((this.fFlags & FLAG_END_HEADERS) !== 0) this.completeBlock(ts);
        return;
      }
      case CONTINUATION: {
        const b = this.block;
        if (b === null) return;
        if (!b.lost) b.parts.push(p);
        b.size += p.length;
        if ((this.fFlags & FLAG_END_HEADERS) !== 0) this.completeBlock(ts);
        return;
      }
      case RST_STREAM: {
        const s = this.streams.get(this.fStream);
        if (s !== undefined) {
          s.lastNs = ts;
          this.close(s, true);
        }
        this.peer.postReset(this.fStream, ts);
        return;
      }
      case SETTINGS: {
        if ((this.fFlags & FLAG_ACK) !== 0) return;
        this.settingsSeen = true;
        for (let o = 0; o + 6 <= p.length; o += 6) {
          const id = (p[o]! << 8) | p[o + 1]!;
          const v = ((p[o + 2]! << 24) | (p[o + 3]! << 16) | (p[o + 4]! << 8) | p[o + 5]!) >>> 0;
          if (id !== SETTINGS_MAX_FRAME_SIZE) continue;
          if (v < DEFAULT_MAX_FRAME_SIZE || v > LARGEST_MAX_FRAME_SIZE) return this.fail('malformed frame (SETTINGS_MAX_FRAME_SIZE)');
          // The largest ever advertised: a frame sent before a lower value was acknowledged is still valid.
          if (v > this.maxFrameAdvertised) this.maxFrameAdvertised = v;
        }
        return;
      }
      default:
        // SETTINGS_HEADER_TABLE_SIZE needs nothing here: the encoder announces its table size in-band (RFC 7541 6.3).
        return;
    }
  }

  private completeBlock(ts: bigint): void {
    const b = this.block;
    if (b === null) return;
    this.block = null;
    const fields = b.lost ? LOST_BLOCK : this.decode(b);
    if (fields === null || b.promise) return;
    // Even ids are server-pushed streams: gRPC never pushes and they answer no request seen here.
    if (b.stream % 2 === 0) return;
    let s = this.streams.get(b.stream);
    if (s === undefined) {
      if (this.closed.has(b.stream) || (this.kind === 'REQUEST' && b.stream <= this.maxOpened)) return;
      s = this.open(b.stream, b.startNs);
    }
    s.lastNs = ts;
    this.apply(s, fields);
    if (b.endStream) this.close(s, false);
  }

  /** Every block is decoded, reported or not: each one may change the dynamic table the next ones index into. */
  private decode(b: Block): readonly PartialField[] | null {
    const data = b.parts.length === 1 ? b.parts[0]! : concat(b.parts, b.size);
    if (this.partial !== null) return this.decodePartial(this.partial, data);
    const d = this.decoder;
    if (d === null) return null;
    const fields: HpackHeaderField[] = [];
    try {
      if (data.length > 0) {
        d.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        d.execute();
      }
      for (let f = d.read(); f !== null; f = d.read()) fields.push(f);
    } catch (err) {
      this.hpackError ??= err as Error;
    }
    if (this.hpackError !== null) {
      this.fail(`hpack: ${String(this.hpackError.message).slice(0, 80)}`);
      return null;
    }
    return fields;
  }

  private decodePartial(h: PartialHpack, data: Uint8Array): readonly PartialField[] | null {
    let fields: PartialField[];
    try {
      fields = h.decode(data);
    } catch (err) {
      this.fail(`hpack: ${String((err as Error)?.message ?? err).slice(0, 80)}`);
      return null;
    }
    if (h.resyncs !== this.partialResyncs) {
      this.partialResyncs = h.resyncs;
      this.count(H2_COUNT.hpackResynced);
    }
    return fields;
  }

  private apply(s: Stream, fields: readonly PartialField[]): void {
    const req = this.kind === 'REQUEST';
    if (fields === LOST_BLOCK) {
      s.partial = true;
      s.truncated = true;
    }
    for (const { name, value } of fields) {
      // Referred to the unknown part of the table: absent, and the message says it is incomplete.
      if (name === null || value === null) {
        s.partial = true;
        s.truncated = true;
        continue;
      }
      if (name.startsWith(':')) {
        if (name === ':method' && req && s.method === null) s.method = text(value, MAX_METHOD);
        else if (name === ':path' && req && s.path === null) {
          // Cut before redacting (bounded work); redactTarget cuts the result to MAX_PATH.
          s.path = redactTarget(text(value, 4 * MAX_PATH), this.opts);
          const m = value.length <= MAX_PATH ? GRPC_PATH.exec(value) : null;
          if (m !== null) {
            s.grpcService = text(m[1]!, MAX_PATH);
            s.grpcMethod = text(m[2]!, MAX_PATH);
          }
        } else if (name === ':status' && !req && (s.status === null || s.status < 200)) {
          // A 1xx is followed by the final status in a later block (RFC 9113 8.1).
          s.status = /^[0-9]{3}$/.test(value) ? Number(value) : s.status;
        } else if (name === ':authority') keepHeader(s.headers, 'host', text(value, 4 * MAX_HEADER_VALUE), this.opts);
        continue;
      }
      if (name === 'content-type' && value.toLowerCase().startsWith('application/grpc')) s.grpc = true;
      else if (name === 'grpc-status') s.grpcStatus = GRPC_STATUS.test(value) ? Number(value) : null;
      // grpc-message is free text written by the server, often quoting the request: never kept.
      else if (name === 'grpc-message') continue;
      keepHeader(s.headers, name, text(value, 4 * MAX_HEADER_VALUE), this.opts);
    }
    // After a loss, a stream's first block seen here with no pseudo-header known may be
    // the trailers of a stream that began in the lost part: its start is not known.
    if (s.blocks === 0 && this.partial !== null && !s.truncated && !fields.some((f) => f.name !== null && f.name.startsWith(':'))) s.truncated = true;
    s.blocks++;
    if (req && s.blocks === 1) {
      const m = this.shared.requests;
      m.set(s.id, { grpc: s.grpc, service: s.grpcService, method: s.grpcMethod });
      if (m.size > MAX_REMEMBERED) deleteOldest(m);
    }
  }

  private open(id: number, startNs: bigint): Stream {
    if (this.streams.size >= MAX_OPEN_STREAMS) {
      const oldest = this.streams.values().next().value;
      if (oldest !== undefined) this.close(oldest, true);
    }
    const s: Stream = {
      id, startNs, lastNs: startNs, blocks: 0, method: null, path: null, status: null, headers: {},
      grpc: false, grpcService: null, grpcMethod: null, grpcStatus: null, body: 0, truncated: false, partial: false,
    };
    this.streams.set(id, s);
    if (id > this.maxOpened) this.maxOpened = id;
    return s;
  }

  /** Ends a stream on this direction and reports it; `cut`: it did not end normally (reset, evicted, connection gone). */
  private close(s: Stream, cut: boolean): void {
    this.streams.delete(s.id);
    this.closed.add(s.id);
    if (this.closed.size > MAX_REMEMBERED) deleteOldest(this.closed);
    const req = this.kind === 'REQUEST';
    if (s.partial) this.count(H2_COUNT.hpackPartial);
    // A partly decoded message may have lost its content-type; grpc-status is said only by gRPC.
    let grpc = s.grpc || (s.partial && s.grpcStatus !== null);
    let service: string | null = null;
    let method: string | null = null;
    if (req) {
      service = s.grpcService;
      method = s.grpcMethod;
    } else {
      const info = this.shared.requests.get(s.id);
      this.shared.requests.delete(s.id);
      if (info !== undefined) {
        grpc ||= info.grpc;
        service = info.service;
        method = info.method;
      }
    }
    this.out.push({
      protocol: grpc ? 'GRPC' : 'HTTP2',
      kind: this.kind,
      start_ns: s.startNs,
      end_ns: s.lastNs,
      stream_id: s.id,
      method: req ? s.method : null,
      path: req ? s.path : null,
      status: req ? null : s.status,
      headers: s.headers,
      grpc_service: grpc ? service : null,
      grpc_method: grpc ? method : null,
      grpc_status: grpc ? s.grpcStatus : null,
      dns_name: null,
      dns_type: null,
      dns_rcode: null,
      dns_answers: null,
      body_bytes: s.body,
      truncated: s.truncated || cut,
    });
  }

  /** The other direction saw RST_STREAM for `id` at `ts`. */
  postReset(id: number, ts: bigint): void {
    if (this.failed !== null || this.ended) return;
    this.peerResets.set(id, ts);
    if (this.peerResets.size > MAX_REMEMBERED) deleteOldest(this.peerResets);
  }

  /**
   * A stream reset by the peer ends here at this side's first frame at or after
   * the reset: by time rather than at once, so the result does not depend on how
   * the two directions' calls interleave or how this one's bytes are split.
   */
  private applyPeerResets(now: bigint): void {
    if (this.peerResets.size === 0) return;
    for (const [id, t] of this.peerResets) {
      if (t > now) continue;
      this.peerResets.delete(id);
      const s = this.streams.get(id);
      if (s !== undefined) this.close(s, true);
    }
  }

  /** Stops producing; what is known of the open streams is still reported, marked truncated. */
  private fail(reason: string): void {
    if (this.failed !== null) return;
    this.failed = reason;
    for (const s of [...this.streams.values()]) this.close(s, true);
    this.release();
  }

  private release(): void {
    this.streams.clear();
    this.peerResets.clear();
    this.block = null;
    this.fKeep = EMPTY;
    this.decoder = null;
    this.partial = null;
  }
}

/** The fields of a block whose octets were lost (Block.lost): none known. */
const LOST_BLOCK: readonly PartialField[] = Object.freeze([]);

function concat(parts: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * hpack.js gives octets as latin1; non-ASCII values are UTF-8 in practice.
 * Cut to `max` octets first so the work is bounded (max is in octets, so a
 * caller's cut in characters still finds enough of them).
 */
function text(latin1: string, max: number): string {
  const v = latin1.length > max ? latin1.slice(0, max) : latin1;
  return NON_ASCII.test(v) ? Buffer.from(v, 'latin1').toString('utf8') : v;
}

function deleteOldest(c: Map<number, unknown> | Set<number>): void {
  const first = c.keys().next();
  if (first.done !== true) c.delete(first.value);
}
