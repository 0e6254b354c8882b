/**
 * DNS (RFC 1035) over UDP and TCP: one L7Message per query or response.
 *
 * Wire grammar (RFC 1035 4.1), all integers big-endian:
 *
 *   message   = header question{QDCOUNT} rr{ANCOUNT} rr{NSCOUNT} rr{ARCOUNT}
 *   header    = ID:16 QR:1 OPCODE:4 AA:1 TC:1 RD:1 RA:1 Z:1 AD:1 CD:1 RCODE:4
 *               QDCOUNT:16 ANCOUNT:16 NSCOUNT:16 ARCOUNT:16             (12 bytes)
 *   question  = name QTYPE:16 QCLASS:16
 *   rr        = name TYPE:16 CLASS:16 TTL:32 RDLENGTH:16 RDATA{RDLENGTH}
 *   name      = label* (0x00 | pointer)
 *   label     = 0b00 LEN:6 byte{LEN}                                    (1..63 bytes)
 *   pointer   = 0b11 OFFSET:14                  (offset from the message's first byte)
 *   over TCP  = (LENGTH:16 message{LENGTH})*                        (RFC 1035 4.2.2)
 *
 * We decode the header and the first question ourselves and only walk the
 * framing of the rest (names and RDLENGTHs), never the record data: that is
 * all the message fields need, it allocates nothing per record, and it is
 * exact about where a capture was cut. dns-packet's `decode` (the tests use it
 * to build packets and as a reference) cannot tell that: it slices past the
 * end of a short buffer without throwing (an A record cut in its RDATA
 * decodes as '1.2.3.undefined'), and it turns labels into UTF-8 strings, so
 * a label containing '.' reads as two labels.
 */
import type { L7Message, StreamParser } from './types.ts';

const HEADER_BYTES = 12;
/** Smallest message with a question: the header, the root name (1 byte), QTYPE and QCLASS. */
const MIN_QUERY_BYTES = HEADER_BYTES + 5;
/** Smallest resource record: the root name (or nothing smaller than it), then TYPE, CLASS, TTL, RDLENGTH. */
const MIN_RR_BYTES = 11;
/** RFC 1035 2.3.4: a name is at most 255 octets on the wire, length bytes and the root's zero included. */
const MAX_NAME_OCTETS = 255;
/**
 * Labels plus pointers followed in one name. 255 octets hold at most 127
 * labels; a real encoder never chains pointers, so this bounds the work on a
 * hostile name (a chain of pointers each two bytes back) without refusing any
 * name that was ever sent.
 */
const MAX_NAME_STEPS = 255;
const TYPE_OPT = 41;

/** Mnemonics of the types worth naming in a question (IANA DNS parameters); others are 'TYPE<n>' (RFC 3597 5). */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'A'], [2, 'NS'], [5, 'CNAME'], [6, 'SOA'], [12, 'PTR'], [15, 'MX'], [16, 'TXT'],
  [28, 'AAAA'], [33, 'SRV'], [64, 'SVCB'], [65, 'HTTPS'], [255, 'ANY'],
]);
const RCODE_NAMES: readonly string[] = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
/** QCLASS values a question can carry: IN, CH, HS, NONE, ANY (RFC 1035 3.2.4, RFC 2136). */
const QCLASSES: ReadonlySet<number> = new Set([1, 3, 4, 254, 255]);

const dnsTypeName = (t: number): string => TYPE_NAMES.get(t) ?? `TYPE${t}`;
const dnsRcodeName = (r: number): string => RCODE_NAMES[r] ?? `RCODE${r}`;

const u16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;

/**
 * Offset just past the name starting at `start` (past its first pointer, if
 * compressed), or -1 when the name runs past the end of `b` or is malformed.
 * When `labels` is given, each label's presentation text is appended to it.
 *
 * A pointer must go to a prior occurrence (RFC 1035 4.1.4): after the header
 * and strictly before the labels it ends. Each jump therefore lands lower
 * than the last, so pointers cannot loop; MAX_NAME_STEPS bounds the work.
 */
function walkName(b: Uint8Array, start: number, labels?: string[]): number {
  let pos = start;
  let after = -1; // where the name ends in the message, once a pointer has been followed
  let floor = start; // start of the run of labels being read: the next pointer must go below it
  let octets = 1; // the terminating zero
  for (let step = 0; step < MAX_NAME_STEPS; step++) {
    if (pos >= b.length) return -1;
    const len = b[pos]!;
    if (len === 0) return after < 0 ? pos + 1 : after;
    const kind = len & 0xc0;
    if (kind === 0) {
      octets += len + 1;
      if (octets > MAX_NAME_OCTETS || pos + 1 + len > b.length) return -1;
      if (labels) labels.push(labelText(b, pos + 1, pos + 1 + len));
      pos += 1 + len;
    } else if (kind === 0xc0) {
      if (pos + 2 > b.length) return -1;
      const target = u16(b, pos) & 0x3fff;
      if (target < HEADER_BYTES || target >= floor) return -1;
      if (after < 0) after = pos + 2;
      pos = floor = target;
    } else {
      return -1; // 0b01/0b10: extended label types, never deployed and retired (RFC 6891 5)
    }
  }
  return -1;
}

/**
 * A label in presentation form (RFC 1035 5.1, RFC 4343 2.1): ASCII letters
 * lower-cased, '.' and '\' escaped, bytes outside printable ASCII as \DDD.
 * Lower case because names compare case-insensitively (RFC 4343) and
 * resolvers randomise the case of the names they send (DNS 0x20): kept as
 * sent, one name would count as many. Escaping keeps the text unambiguous (a
 * label may contain a dot) and free of control characters.
 */
function labelText(b: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c >= 0x41 && c <= 0x5a) s += String.fromCharCode(c | 0x20);
    else if (c === 0x2e || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

interface Decoded {
  id: number;
  response: boolean;
  /** First question's name; '.' for the root; null when QDCOUNT is 0. */
  name: string | null;
  qtype: number | null;
  /** 4 bits from the header, extended by the OPT record's 8 when it was read (RFC 6891 6.1.3). */
  rcode: number;
  ancount: number;
  /** Every record's framing fits in the bytes given, and TC is clear. */
  complete: boolean;
}

/**
 * The header and first question, then a walk over the remaining records'
 * framing. Null when the header or the first question cannot be read, or
 * when a message without a question does not frame (nothing then says it is DNS).
 */
function decode(b: Uint8Array): Decoded | null {
  if (b.length < HEADER_BYTES) return null;
  const flags = u16(b, 2);
  const qdcount = u16(b, 4);
  const ancount = u16(b, 6);
  const records = ancount + u16(b, 8) + u16(b, 10);
  const additionalsFrom = records - u16(b, 10);
  let pos = HEADER_BYTES;
  let name: string | null = null;
  let qtype: number | null = null;
  if (qdcount > 0) {
    const labels: string[] = [];
    pos = walkName(b, pos, labels);
    if (pos < 0 || pos + 4 > b.length) return null;
    name = labels.length === 0 ? '.' : labels.join('.');
    qtype = u16(b, pos);
    pos += 4;
  }
  let rcode = flags & 0x0f;
  let sawOpt = false;
  let complete = true;
  for (let i = 1; i < qdcount && complete; i++) {
    pos = walkName(b, pos);
    complete = pos >= 0 && pos + 4 <= b.length;
    pos += 4;
  }
  // Each record takes at least MIN_RR_BYTES, so this loop ends within b.length / 11 turns.
  for (let i = 0; i < records && complete; i++) {
    pos = walkName(b, pos);
    if (pos < 0 || pos + 10 > b.length) {
      complete = false;
      break;
    }
    if (!sawOpt && i >= additionalsFrom && u16(b, pos) === TYPE_OPT) {
      sawOpt = true;
      rcode |= b[pos + 4]! << 4; // the OPT TTL's top byte holds RCODE's upper 8 bits
    }
    pos += 10 + u16(b, pos + 8);
    complete = pos <= b.length;
  }
  if (qdcount === 0 && !complete) return null;
  const tc = (flags & 0x0200) !== 0;
  return { id: u16(b, 0), response: (flags & 0x8000) !== 0, name, qtype, rcode, ancount, complete: complete && !tc };
}

function toMessage(d: Decoded, bodyBytes: number, startNs: bigint, endNs: bigint, cut: boolean): L7Message {
  return {
    protocol: 'DNS',
    kind: d.response ? 'RESPONSE' : 'REQUEST',
    start_ns: startNs,
    end_ns: endNs,
    stream_id: d.id,
    method: null,
    path: null,
    status: null,
    headers: {},
    grpc_service: null,
    grpc_method: null,
    grpc_status: null,
    dns_name: d.name,
    dns_type: d.qtype === null ? null : dnsTypeName(d.qtype),
    // A query's RCODE is not an outcome (RFC 1035 4.1.1 sets it in responses); null like an HTTP request's status.
    dns_rcode: d.response ? dnsRcodeName(d.rcode) : null,
    dns_answers: d.ancount,
    body_bytes: bodyBytes,
    truncated: cut || !d.complete,
  };
}

/**
 * One UDP datagram (or one TCP-framed message body) -> at most one message;
 * null when it is not DNS: shorter than a header, or its first question
 * cannot be read (a malformed name, a name over 255 octets, a pointer that
 * does not go back, or cut before QTYPE/QCLASS). A message with no question
 * (QDCOUNT 0, e.g. some FORMERR responses) is kept only when all of it frames.
 *
 * Once the question is read a message is always returned: records that run
 * past the end (a capture limit) or do not frame mark it `truncated`, as does
 * the TC bit; dns_answers is the header's ANCOUNT whatever was read.
 * body_bytes is the length given, which is the datagram's only if it was
 * captured whole.
 */
export function parseDnsMessage(b: Uint8Array, ts: bigint): L7Message | null {
  const d = decode(b);
  return d === null ? null : toMessage(d, b.length, ts, ts, false);
}

/**
 * Cheap plausibility check for the first datagram (or first bytes, `tcp`:
 * with their 2-byte length prefix) of a flow. Needs the header and the first
 * question in `b`; fewer bytes say no. Checks: OPCODE QUERY, Z clear,
 * QDCOUNT exactly 1 (RFC 9619), a well-formed first name, a real QCLASS; a
 * query has RCODE 0, no answer or authority records and at most 2 additional
 * ones (OPT, TSIG: so mDNS known-answer queries say no); a response's counts
 * fit its length (TCP) or the largest message (UDP: the datagram may be cut).
 */
export function looksLikeDns(b: Uint8Array, tcp: boolean): boolean {
  let declared = 0xffff;
  let m = b;
  if (tcp) {
    if (b.length < 2) return false;
    declared = u16(b, 0);
    m = b.subarray(2, 2 + declared); // pointers count from the message, not the prefix
  }
  if (declared < MIN_QUERY_BYTES || m.length < MIN_QUERY_BYTES) return false;
  const flags = u16(m, 2);
  if ((flags & 0x7800) !== 0 || (flags & 0x0040) !== 0) return false;
  if (u16(m, 4) !== 1) return false;
  const [an, ns, ar] = [u16(m, 6), u16(m, 8), u16(m, 10)];
  if ((flags & 0x8000) === 0) {
    if ((flags & 0x000f) !== 0 || an !== 0 || ns !== 0 || ar > 2) return false;
  } else if (MIN_QUERY_BYTES + MIN_RR_BYTES * (an + ns + ar) > declared) {
    return false;
  }
  const pos = walkName(m, HEADER_BYTES);
  if (pos < 0 || pos + 4 > m.length) return false;
  // The top bit of QCLASS is mDNS's unicast-response flag (RFC 6762 5.4); QTYPE 0 is reserved.
  return u16(m, pos) !== 0 && QCLASSES.has(u16(m, pos + 2) & 0x7fff);
}

/**
 * DNS over TCP: each message is preceded by its 2-byte big-endian length
 * (RFC 1035 4.2.2), and pushes split the stream anywhere. Memory is one
 * message (at most 65535 bytes, the largest the prefix can declare).
 *
 * A gap inside a message keeps sync (its length is known): what was captured
 * before the gap is parsed and the message is `truncated`. A gap that covers
 * a length prefix loses the framing, and so does a complete message that is
 * not DNS: the parser then fails rather than read lengths out of payload.
 */
export function createDnsTcpParser(): StreamParser {
  let failed: string | null = null;
  let prefixBytes = 0; // 0 or 1 byte of the next length prefix read
  let prefixHigh = 0;
  let body: Uint8Array | null = null; // the current message, sized as declared
  let filled = 0; // bytes of it seen, captured or gapped
  let captured = 0; // bytes captured before its first gap: what can be parsed
  let gapped = false;
  let startNs = 0n;
  let lastNs = 0n;
  let seen = 0;

  const reset = (): void => {
    prefixBytes = 0;
    body = null;
    filled = 0;
    captured = 0;
    gapped = false;
  };
  const fail = (why: string): void => {
    failed = why;
    reset();
  };
  /** Reports the current message; `cut` when it ended before its declared length (the connection closed). */
  const finish = (out: L7Message[], cut: boolean): void => {
    const msg = body!;
    const d = decode(gapped || cut ? msg.subarray(0, captured) : msg);
    seen++;
    if (d !== null) out.push(toMessage(d, msg.length, startNs, lastNs, gapped || cut));
    else if (!gapped && !cut) return fail(`message ${seen} (${msg.length} bytes) is not DNS: framing lost or not DNS over TCP`);
    reset();
  };

  return {
    get failed() {
      return failed;
    },
    push(bytes: Uint8Array, ts: bigint): L7Message[] {
      const out: L7Message[] = [];
      let i = 0;
      while (i < bytes.length && failed === null) {
        if (body === null) {
          if (prefixBytes === 0) {
            startNs = ts; // the message starts with its length prefix
            prefixHigh = bytes[i++]!;
            prefixBytes = 1;
            continue;
          }
          body = new Uint8Array((prefixHigh << 8) | bytes[i++]!);
          lastNs = ts;
          if (body.length === 0) finish(out, false);
          continue;
        }
        const n = Math.min(bytes.length - i, body.length - filled);
        if (!gapped) {
          body.set(bytes.subarray(i, i + n), filled);
          captured += n;
        }
        filled += n;
        i += n;
        lastNs = ts;
        if (filled === body.length) finish(out, false);
      }
      return out;
    },
    gap(len: number, ts: bigint): L7Message[] {
      if (failed !== null || !(len > 0)) return [];
      const out: L7Message[] = [];
      let left = len;
      if (body !== null) {
        const n = Math.min(left, body.length - filled);
        filled += n;
        left -= n;
        gapped = true;
        lastNs = ts;
        if (filled === body.length) finish(out, false);
      }
      if (left > 0 && failed === null) fail(`a gap of ${len} bytes covered a length prefix: framing lost`);
      return out;
    },
    end(_ts: bigint): L7Message[] {
      const out: L7Message[] = [];
      // A message the connection cut short is still reported (truncated) if its question was captured.
      if (failed === null && body !== null) finish(out, true);
      reset();
      return out;
    },
  };
}
