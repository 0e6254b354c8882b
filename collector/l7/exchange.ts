/**
 * HTTP/1 exchange records (bpf/l7.bpf.c, issue 10, docs/design/l7-in-kernel.md
 * §2.5): BPF frames an HTTP/1 connection and pairs each request with its
 * response, and sends ONE record per exchange instead of a capture record per
 * syscall. This file decodes such a record and turns it into the same
 * REQUEST and RESPONSE messages (types.ts) that tracker.ts builds from the
 * capture records of the same conversation, with the same connection
 * context, so encode.ts, the spans stage and everything after see no
 * difference. Pure and per exchange: no state per connection. The codec
 * (collector/codec.ts) then sends a request and its response as ONE
 * EXCHANGE record (encode.ts asExchangeRecord), a response whose request is
 * unknown as a RESPONSE record.
 * DNS over UDP is paired in BPF the same way (app DNS, bpf/l7_dns.h): its
 * heads are the query's and the answer's datagrams, parsed by dns.ts.
 *
 * Record grammar (little-endian, struct rf_l7_exchange in bpf/events.h; the
 * offsets below are pinned to it by test/unit/layout.test.ts):
 *
 *   record   = header exchange req_head resp_head
 *   header   = struct rf_header          ; 48 bytes, type = RF_EV_L7_EXCHANGE, the task that completed it, ts_ns = emit time
 *   exchange = conn_id:u64 req_start_ns:u64 req_end_ns:u64 resp_start_ns:u64 resp_end_ns:u64
 *              req_body_bytes:u64 resp_body_bytes:u64 laddr:16 raddr:16
 *              seq:u32 req_pid:u32 req_tgid:u32 fd:u32 lport:u16 rport:u16 family:u16 status:u16
 *              req_head_len:u16 resp_head_len:u16 app:u8 role:u8 protocol:u8 outcome:u8 flags:u8 retries:u8 pad:6
 *   req_head = req_head_len bytes        ; the request's first bytes (start line, fields), at most rf_l7_head_bytes
 *   resp_head = resp_head_len bytes      ; the same for the response
 *
 * What BPF knows from every byte (boundaries, body sizes by framing, the
 * edge times of messageEdgeNs, the pairing by ordinal) comes from the
 * struct; what needs the heads (method, target, version, status line,
 * captured header values) is parsed here with http1.ts's head parser, the
 * one the stream parser uses, so both paths agree byte for byte.
 *
 * Per outcome (enum rf_l7_outcome):
 *   RESPONDED  REQUEST + RESPONSE
 *   CLOSED     REQUEST (no response before close)
 *   REQ_ONLY   REQUEST (no response within the hand-over time)
 *   RESP_ONLY  RESPONSE (its request is unknown)
 *   LOST       what is known (the request; the response if it began), all of it truncated: the
 *              record does not say which direction lost framing (a request with a bad
 *              Content-Length still gets its 400)
 * A message is `truncated` when its head bytes end before its head does (the
 * head_bytes cap: only whole field lines are kept), when the response's end
 * was not framed (RESP_END_UNKNOWN), when framing was lost (LOST), or when a
 * user buffer could not be read (COPY_FAILED): as the stream parser marks a
 * message a gap or a loss of sync went through.
 */
import { comm, u16, u32, u64n, IPPROTO_UDP, L7_ROLE_NAME } from './capture.ts';
import { capturedHeaders } from './headers.ts';
import { http1Message, parseHttp1Head, type Http1Head } from './http1.ts';
import { parseDnsMessage } from './dns.ts';
import type { L7Message, L7ParseOptions } from './types.ts';
import type { L7Context, L7Output } from './tracker.ts';
import { formatInet } from '../events/inet.ts';
import { attributeAddress } from '../../common/address.ts';

/** RF_EV_L7_EXCHANGE: the record's first byte. */
export const L7_EXCHANGE_TYPE = 10;
/** sizeof(struct rf_l7_exchange): the request head starts here. */
export const L7_EXCHANGE_SIZE = 176;
/** RF_L7_MAX_HEAD: hard maximum of head bytes per side. */
export const L7_MAX_HEAD = 2048;
/** RF_L7_DEFAULT_HEAD: rf_l7_head_bytes when not set. */
export const L7_DEFAULT_HEAD = 512;

/** offsetof(struct rf_l7_exchange, ...), header fields included. */
export const L7_EXCHANGE_OFFSETS = {
  type: 0,
  cpu: 2,
  pid: 4,
  tgid: 8,
  uid: 12,
  ts_ns: 16,
  cgroup_id: 24,
  comm: 32,
  conn_id: 48,
  req_start_ns: 56,
  req_end_ns: 64,
  resp_start_ns: 72,
  resp_end_ns: 80,
  req_body_bytes: 88,
  resp_body_bytes: 96,
  laddr: 104,
  raddr: 120,
  seq: 136,
  req_pid: 140,
  req_tgid: 144,
  fd: 148,
  lport: 152,
  rport: 154,
  family: 156,
  status: 158,
  req_head_len: 160,
  resp_head_len: 162,
  app: 164,
  role: 165,
  protocol: 166,
  outcome: 167,
  flags: 168,
  retries: 169,
} as const;

/** enum rf_l7_app: how BPF parses a connection's bytes. */
export const L7App = { RAW: 0, HTTP1: 1, DNS: 2 } as const;
/** enum rf_l7_outcome: how an exchange ended. */
export const L7Outcome = { RESPONDED: 0, CLOSED: 1, RESP_ONLY: 2, LOST: 3, REQ_ONLY: 4 } as const;
/** enum rf_l7_xflag bits. */
export const L7_XFLAG = {
  /** The request head is longer than the bytes that follow. */
  REQ_HEAD_CUT: 1,
  /** The response head is longer than the bytes that follow. */
  RESP_HEAD_CUT: 2,
  /** The response's end was not framed (emitted at the end of its head): resp_end_ns is that time. */
  RESP_END_UNKNOWN: 4,
  /** First exchange after framing was lost and found again. */
  RESYNCED: 8,
  /** The connection was tracked from mid-stream (no connect()/accept() seen). */
  MIDSTREAM: 16,
  /** CONNECT or Upgrade: the connection is a tunnel after this exchange. */
  UPGRADE: 32,
  /** Reading a user buffer failed during the exchange. */
  COPY_FAILED: 64,
} as const;

/**
 * Indexes of bpf/l7.bpf.c's per-CPU counter array rf_l7_parse (enum
 * rf_l7_parse_counter). The losses among them reach kernel_losses
 * (collector/kernel-losses.ts).
 */
export const L7_PARSE = {
  EXCHANGES: 0,
  H1_HEAD_TOO_LONG: 1,
  H1_BAD_START: 2,
  H1_BAD_FRAMING: 3,
  H1_UPGRADE: 4,
  H1_RESYNCED: 5,
  H1_END_UNKNOWN: 6,
  PENDING_FULL: 7,
  RESP_ORPHAN: 8,
  CONCURRENT: 9,
  MMSG_OVER_LIMIT: 10,
} as const;
/** RF_L7_P_NR: slots of rf_l7_parse. */
export const L7_PARSE_NR = 16;

export interface L7Exchange {
  // rf_header: the task that completed the exchange
  cpu: number;
  pid: number;
  tgid: number;
  uid: number;
  /** Emit time (CLOCK_MONOTONIC). */
  ts_ns: bigint;
  cgroup_id: bigint;
  comm: string;
  conn_id: bigint;
  /** Edges (messageEdgeNs) of the syscalls that moved the request's first and last byte, and the response's; 0 when there is none. */
  req_start_ns: bigint;
  req_end_ns: bigint;
  resp_start_ns: bigint;
  resp_end_ns: bigint;
  /** Body bytes as framed (Content-Length, chunk sizes), copied or not. */
  req_body_bytes: number;
  resp_body_bytes: number;
  /** 4 bytes for AF_INET, 16 for AF_INET6 (views into the record). */
  laddr: Uint8Array;
  raddr: Uint8Array;
  /** Ordinal of the request on its connection from capture start. */
  seq: number;
  /** The task that moved the request's first byte. */
  req_pid: number;
  req_tgid: number;
  fd: number;
  lport: number;
  rport: number;
  family: number;
  /** Status code from the response's start line, 0 if none. */
  status: number;
  /** L7App */
  app: number;
  /** L7Role (capture.ts) */
  role: number;
  protocol: number;
  /** L7Outcome */
  outcome: number;
  /** L7_XFLAG bits */
  flags: number;
  /** DNS: queries sent again with the same key (saturating at 255); the exchange starts at the first. */
  retries: number;
  /** The request head's first bytes (a view into the record). */
  req_head: Uint8Array;
  /** The response head's first bytes (a view into the record). */
  resp_head: Uint8Array;
}

/**
 * Decodes the record of `length` bytes at `offset` in `buf` (for a native
 * batch: the offset and length forEachRecord gives). Returns null when it is
 * not an exchange record, or is shorter than its struct and heads say. The
 * heads and addresses are views into `buf`.
 */
/**
 * A DataView of the batch `buf` is in, made once per batch: the u64s are read
 * through it (~16 ns each against ~38 for capture.ts's u64, four BigInts), and
 * its ArrayBuffer backs the record's views. `buf.buffer` of a native batch
 * (external memory) is a call into V8's runtime (JSTypedArray::GetBuffer,
 * 1.3% of the live collector's on-CPU time under perf when it was asked five
 * times per record). Only the last batch is held: the native batch is not
 * pinned beyond its records' use.
 */
let lastBatch: Uint8Array | null = null;
let lastView: DataView | null = null;

function batchView(buf: Uint8Array): DataView {
  if (buf !== lastBatch || lastView === null) {
    lastView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    lastBatch = buf;
  }
  return lastView;
}

export function decodeL7Exchange(buf: Uint8Array, offset: number, length: number): L7Exchange | null {
  const o = offset;
  const O = L7_EXCHANGE_OFFSETS;
  if (length < L7_EXCHANGE_SIZE || o < 0 || o + length > buf.length || buf[o] !== L7_EXCHANGE_TYPE) return null;
  const reqLen = u16(buf, o + O.req_head_len);
  const respLen = u16(buf, o + O.resp_head_len);
  if (reqLen + respLen > length - L7_EXCHANGE_SIZE) return null;
  const family = u16(buf, o + O.family);
  const alen = family === 2 ? 4 : 16;
  const heads = o + L7_EXCHANGE_SIZE;
  const dv = batchView(buf);
  const ab = dv.buffer;
  const base = buf.byteOffset;
  // plain Uint8Array views: a Buffer's indexOf goes through a native call, the head parser makes one per line
  const view = (from: number, n: number) => new Uint8Array(ab, base + from, n);
  return {
    cpu: u16(buf, o + O.cpu),
    pid: u32(buf, o + O.pid),
    tgid: u32(buf, o + O.tgid),
    uid: u32(buf, o + O.uid),
    ts_ns: dv.getBigUint64(o + O.ts_ns, true),
    cgroup_id: dv.getBigUint64(o + O.cgroup_id, true),
    comm: commOf(buf, o + O.comm),
    conn_id: dv.getBigUint64(o + O.conn_id, true),
    req_start_ns: dv.getBigUint64(o + O.req_start_ns, true),
    req_end_ns: dv.getBigUint64(o + O.req_end_ns, true),
    resp_start_ns: dv.getBigUint64(o + O.resp_start_ns, true),
    resp_end_ns: dv.getBigUint64(o + O.resp_end_ns, true),
    req_body_bytes: u64n(buf, o + O.req_body_bytes),
    resp_body_bytes: u64n(buf, o + O.resp_body_bytes),
    laddr: view(o + O.laddr, alen),
    raddr: view(o + O.raddr, alen),
    seq: u32(buf, o + O.seq),
    req_pid: u32(buf, o + O.req_pid),
    req_tgid: u32(buf, o + O.req_tgid),
    fd: u32(buf, o + O.fd),
    lport: u16(buf, o + O.lport),
    rport: u16(buf, o + O.rport),
    family,
    status: u16(buf, o + O.status),
    app: buf[o + O.app]!,
    role: buf[o + O.role]!,
    protocol: buf[o + O.protocol]!,
    outcome: buf[o + O.outcome]!,
    flags: buf[o + O.flags]!,
    retries: buf[o + O.retries]!,
    req_head: view(heads, reqLen),
    resp_head: view(heads + reqLen, respLen),
  };
}

/**
 * Command names by their 16 bytes, the last few seen: with both ends of a
 * connection observed, records of two (or a few) processes alternate, and
 * capture.ts's comm() remembers one. Compared as four u32 words; a miss
 * decodes with comm().
 */
const COMM_SLOTS = 4;
const commWords = new Uint32Array(COMM_SLOTS * 4);
const commNames: string[] = new Array<string>(COMM_SLOTS).fill('');
const commValid = new Uint8Array(COMM_SLOTS);
let commNext = 0;

function commOf(buf: Uint8Array, o: number): string {
  const w0 = u32(buf, o);
  const w1 = u32(buf, o + 4);
  const w2 = u32(buf, o + 8);
  const w3 = u32(buf, o + 12);
  for (let k = 0; k < COMM_SLOTS; k++) {
    const j = k * 4;
    if (commValid[k] === 1 && commWords[j] === w0 && commWords[j + 1] === w1 && commWords[j + 2] === w2 && commWords[j + 3] === w3) return commNames[k]!;
  }
  const name = comm(buf, o);
  const k = commNext;
  commNext = (commNext + 1) % COMM_SLOTS;
  commWords[k * 4] = w0;
  commWords[k * 4 + 1] = w1;
  commWords[k * 4 + 2] = w2;
  commWords[k * 4 + 3] = w3;
  commNames[k] = name;
  commValid[k] = 1;
  return name;
}

/** What an exchange record turns into: its messages, and what could not be reported, by a fixed reason. */
export interface ExchangeMessages {
  messages: L7Message[];
  /** 'request head unparsed', 'response head unparsed', 'not HTTP/1'; DNS: 'query unparsed', 'answer unparsed': a message the record stands for and that is not reported. */
  unreported: string[];
}

/**
 * The messages of one exchange, as tracker.ts's stream parsers would give
 * them for the same bytes: requests before responses, stream_id = seq.
 * Pure.
 */
export function exchangeMessages(x: L7Exchange, opts: L7ParseOptions): ExchangeMessages {
  const out: ExchangeMessages = { messages: [], unreported: [] };
  if (x.app === L7App.DNS) return dnsExchangeMessages(x);
  if (x.app !== L7App.HTTP1) {
    out.unreported.push('not HTTP/1');
    return out;
  }
  const captured = capturedHeaders(opts);
  const lost = x.outcome === L7Outcome.LOST;
  const copyFailed = (x.flags & L7_XFLAG.COPY_FAILED) !== 0;
  const hasReq = x.outcome !== L7Outcome.RESP_ONLY && (x.req_head.length > 0 || x.req_start_ns !== 0n);
  const hasResp = x.outcome === L7Outcome.RESPONDED || x.outcome === L7Outcome.RESP_ONLY ||
    (lost && (x.resp_head.length > 0 || x.status !== 0 || x.resp_start_ns !== 0n));
  if (hasReq) {
    const head = parseHttp1Head('REQUEST', x.req_head, x.req_head.length, captured);
    if (head === null || head.start.method === null) {
      out.unreported.push('request head unparsed');
    } else {
      const m = http1Message('REQUEST', head.start, head.fields, opts, x.seq, x.req_start_ns, x.req_end_ns);
      m.body_bytes = x.req_body_bytes;
      m.truncated = cut(head) || (x.flags & L7_XFLAG.REQ_HEAD_CUT) !== 0 || copyFailed || lost;
      out.messages.push(m);
    }
  }
  if (hasResp) {
    const head = finalResponseHead(x.resp_head, captured);
    const status = head?.start.status ?? (x.status !== 0 ? x.status : null);
    if (status === null) {
      out.unreported.push('response head unparsed');
    } else {
      const start = head?.start ?? { method: null, target: null, status, version: '' };
      const m = http1Message('RESPONSE', start, head?.fields ?? [], opts, x.seq, x.resp_start_ns, x.resp_end_ns);
      m.body_bytes = x.resp_body_bytes;
      m.truncated = head === null || cut(head) || (x.flags & (L7_XFLAG.RESP_HEAD_CUT | L7_XFLAG.RESP_END_UNKNOWN)) !== 0 || copyFailed || lost;
      out.messages.push(m);
    }
  }
  return out;
}

/**
 * The messages of a DNS exchange (app DNS, bpf/l7_dns.h): each head is its
 * datagram's first bytes (header and question at least), parsed by dns.ts
 * as the capture path parses a datagram, so both paths give the same fields;
 * times, sizes and cuts come from the struct. A retransmitted query is one
 * REQUEST from its first send (x.retries says how many followed). Pure.
 *
 *   RESPONDED            REQUEST + RESPONSE
 *   REQ_ONLY / CLOSED    REQUEST (the sweep claimed it: no answer within the hand-over time)
 *   RESP_ONLY            RESPONSE (its query is unknown, or was claimed by the sweep)
 */
function dnsExchangeMessages(x: L7Exchange): ExchangeMessages {
  const out: ExchangeMessages = { messages: [], unreported: [] };
  if (x.outcome !== L7Outcome.RESP_ONLY) {
    const m = parseDnsMessage(x.req_head, x.req_start_ns);
    if (m === null || m.kind !== 'REQUEST') {
      out.unreported.push('query unparsed');
    } else {
      m.end_ns = x.req_end_ns;
      m.body_bytes = x.req_body_bytes;
      m.dns_retries = x.retries;
      if ((x.flags & L7_XFLAG.REQ_HEAD_CUT) !== 0) m.truncated = true;
      out.messages.push(m);
    }
  }
  if (x.outcome === L7Outcome.RESPONDED || x.outcome === L7Outcome.RESP_ONLY) {
    const m = parseDnsMessage(x.resp_head, x.resp_start_ns);
    if (m === null || m.kind !== 'RESPONSE') {
      out.unreported.push('answer unparsed');
    } else {
      m.end_ns = x.resp_end_ns;
      m.body_bytes = x.resp_body_bytes;
      // the head cap cut it: dns.ts already marks records that do not frame in the bytes given
      if ((x.flags & L7_XFLAG.RESP_HEAD_CUT) !== 0) m.truncated = true;
      out.messages.push(m);
    }
  }
  return out;
}

/** The head bytes ended before the head did, or held a malformed line: what they show is reported, truncated. */
function cut(h: Http1Head): boolean {
  return h.end < 0 || h.startCut || !h.wellFormed;
}

/**
 * The final response's head: informational responses (1xx other than 101)
 * before it are skipped, as the stream parser does (RFC 9110 15.2: the
 * final response answers the request; its start and version are the ones
 * reported).
 */
function finalResponseHead(bytes: Uint8Array, captured: ReadonlySet<string>): Http1Head | null {
  let b = bytes;
  for (;;) {
    const head = parseHttp1Head('RESPONSE', b, b.length, captured);
    if (head === null) return null;
    const s = head.start.status!;
    if (s >= 200 || s === 101) return head;
    // the final head did not fit: the struct's status stands for it
    if (head.end < 0 || head.end >= b.length) return null;
    b = b.subarray(head.end);
  }
}

/**
 * The exchange's messages with their connection context, as tracker.ts
 * gives them: the request attributed to the task that moved its first
 * byte, the response to the one that completed the exchange; the same
 * role, addresses (IPv4-mapped as IPv4), transport and service name.
 */
export function exchangeOutputs(x: L7Exchange, opts: L7ParseOptions, processName: (tgid: number) => string): { outputs: L7Output[]; unreported: string[] } {
  const { messages, unreported } = exchangeMessages(x, opts);
  if (messages.length === 0) return { outputs: [], unreported };
  const base: L7Context = {
    pid: x.pid, tgid: x.tgid, uid: x.uid, comm: x.comm, process_name: processName(x.tgid), cgroup_id: x.cgroup_id, conn_id: x.conn_id,
    role: L7_ROLE_NAME[x.role] ?? 'UNKNOWN',
    transport: x.protocol === IPPROTO_UDP ? 'UDP' : 'TCP',
    local_addr: addressOf(x.laddr, x.family),
    local_port: x.lport,
    remote_addr: addressOf(x.raddr, x.family),
    remote_port: x.rport,
  };
  const reqTask = x.req_tgid === 0 || (x.req_pid === x.pid && x.req_tgid === x.tgid)
    ? base
    : { ...base, pid: x.req_pid, tgid: x.req_tgid, process_name: x.req_tgid === x.tgid ? base.process_name : processName(x.req_tgid) };
  return { outputs: messages.map((msg) => ({ msg, ctx: msg.kind === 'REQUEST' ? reqTask : base })), unreported };
}

/**
 * IPv4 addresses as attributes, formatted once: a host talks with few
 * addresses, and every exchange record names two. Bounded: emptied when full.
 */
const V4_CACHE_MAX = 4096;
const v4Names = new Map<number, string>();

function addressOf(a: Uint8Array, family: number): string {
  if (family !== 2 || a.length !== 4) return attributeAddress(formatInet(a, 0, family));
  const k = u32(a, 0);
  let s = v4Names.get(k);
  if (s === undefined) {
    s = attributeAddress(formatInet(a, 0, family));
    if (v4Names.size >= V4_CACHE_MAX) v4Names.clear();
    v4Names.set(k, s);
  }
  return s;
}
