/**
 * Per-connection L7 state in the collector: raw socket captures in
 * (collector/l7/capture.ts), parsed requests and responses out.
 *
 * A TCP connection is recognised from its first payload bytes in either
 * direction (an HTTP/1 request or status line, the HTTP/2 client preface, or a
 * DNS message on port 53); its two directions then feed the protocol's pair of
 * stream parsers, the requests side and the responses side. Bytes the kernel
 * saw but did not copy (the capture limit), and records lost on the way (an
 * offset jump), reach the parser as gaps, never as made-up bytes. UDP
 * datagrams are parsed one by one (DNS). Memory is bounded: at most
 * `maxConnections` are tracked (the least recently used is flushed and
 * dropped, counted) and connections idle for `idleNs` are flushed by sweep().
 * HTTP/1 connections that BPF frames and pairs itself (bpf/l7.bpf.c) arrive
 * as one exchange record per request/response instead (exchange()): no
 * state is kept for those here.
 */
import type { L7Message, L7ParseOptions, StreamParser } from './types.ts';
import { DEFAULT_L7_OPTIONS } from './types.ts';
import { L7Direction, L7Kind, L7_FLAG, L7_ROLE_NAME, IPPROTO_TCP, IPPROTO_UDP, replayCapture, type L7Capture } from './capture.ts';
import { createHttp1Connection, looksLikeHttp1Request, looksLikeHttp1Response } from './http1.ts';
import { createHttp2Connection, http2MidstreamSide, looksLikeHttp2Preface, takeHttp2Counts } from './http2.ts';
import { exchangeOutputs, L7App, type L7Exchange } from './exchange.ts';
import { createDnsTcpParser, looksLikeDns, parseDnsMessage } from './dns.ts';
import { formatInet } from '../events/inet.ts';
import { attributeAddress } from '../../common/address.ts';

export type Role = 'UNKNOWN' | 'CLIENT' | 'SERVER';
export type Transport = 'TCP' | 'UDP';

/** Who and where a message was seen: the task of the capture that completed it, and the socket's ends. */
export interface L7Context {
  pid: number;
  tgid: number;
  uid: number;
  comm: string;
  /** Executable name of the process (see L7TrackerOptions.processName). */
  process_name: string;
  cgroup_id: bigint;
  conn_id: bigint;
  role: Role;
  transport: Transport;
  local_addr: string;
  local_port: number;
  remote_addr: string;
  remote_port: number;
}

export interface L7Output {
  msg: L7Message;
  ctx: L7Context;
}

export interface L7TrackerOptions {
  parse?: L7ParseOptions;
  /** Connections tracked at once (default 16384). */
  maxConnections?: number;
  /** A connection with no capture for this long is flushed and forgotten (default 5 min). */
  idleNs?: bigint;
  /** Records of a connection looked at before it is declared not L7 we parse (default 8). */
  detectRecords?: number;
  /**
   * The service name of a process, by tgid (default: none). The collector
   * reads it from /proc (collector/process-identity.ts: OTEL_SERVICE_NAME, the
   * script an interpreter runs, the executable): a thread's comm is often a
   * runtime's name for it.
   */
  processName?: (tgid: number) => string;
  /** Processes whose captures are skipped (ringflow up: its own processor and exporter). */
  ignoreTgids?: ReadonlySet<number>;
}

export interface L7Counters {
  /** Capture records fed. */
  records: number;
  /** Exchange records fed (HTTP/1 framed and paired in BPF: exchange.ts). */
  exchanges: number;
  /** Messages produced. */
  messages: number;
  /** Connections recognised, by protocol. */
  recognised: number;
  /** Connections whose first records were not a protocol we parse: their bytes are skipped. */
  unrecognised: number;
  /** Bytes that reached a parser as gaps: capture limit, or lost records (offset jumps). */
  gapBytes: number;
  /** Offset jumps: records lost between the kernel and us (dropped in the ring). */
  lostRecords: number;
  /**
   * Directions whose parser lost sync and stopped, by "<protocol>: <failureReason>" (a bounded set of keys);
   * and, under "<protocol>: record after stop", the records that reached a stopped direction (their messages are lost).
   */
  failed: Map<string, number>;
  /** HTTP/1 connections that lost sync at lost records and waited for the next start lines (see `resync`). */
  resyncs: number;
  /** Of those, the times both directions found their start lines again and parsing went on. */
  resynced: number;
  /** Bytes skipped while waiting for a start line. */
  resyncSkippedBytes: number;
  /** Connections dropped to stay under maxConnections. */
  evicted: number;
  /** UDP datagrams that were not DNS. */
  otherDatagrams: number;
}

/**
 * The time that stamps the bytes of capture `c` in the messages they belong
 * to (a message's start_ns is the stamp of its first byte's record, end_ns
 * that of its last byte's): the ENTER of a send, the EXIT of a recv,
 * whatever the role. Why, on one host (one CLOCK_MONOTONIC), with C the
 * client and S the server:
 *
 *   C sends the request's first byte   (enter e1)  <= S's recv of it returns  (exit x2)
 *   S sends the response's last byte   (enter e3)  <= C's recv of it returns  (exit x4)
 *
 * A byte cannot be received before the call that sends it has begun, but it
 * can be received before that call returns (the send may still be copying,
 * or be descheduled after queueing the bytes; seen: dig's sendmsg returned
 * 1.4 ms after dnsmasq had answered). And a recv may block at its enter
 * long before its bytes exist, so only its exit is after them. The client
 * span [e1, x4] therefore contains the server span [x2, e3] by causality
 * alone, for HTTP/1, HTTP/2/gRPC and DNS alike, and so does every message
 * inside its span: the server's request [x2, exit of the recv of the last
 * request byte] and response [enter of its first send, e3], which hold the
 * handler's time between them. Stamping both directions at the exit (as
 * before) made e1 late by a whole send: client spans started after their
 * server spans and were left unlinked (processor/spans.ts links only a
 * server span within its client span on one clock).
 *
 * A close record has no bytes: its ts_ns (= enter_ns) is returned.
 */
export function messageEdgeNs(c: Pick<L7Capture, 'direction' | 'ts_ns' | 'enter_ns' | 'kind'>): bigint {
  if (c.kind !== L7Kind.DATA || c.direction !== L7Direction.EGRESS) return c.ts_ns;
  // an enter after the exit cannot be (a record from before enter_ns existed reads 0): the exit then
  return c.enter_ns > 0n && c.enter_ns <= c.ts_ns ? c.enter_ns : c.ts_ns;
}

/** "1.2.3.4" for an IPv4-mapped IPv6 address, so both ends of a dual-stack connection name it alike (the processor's attributes use the same function). */
export const normalizeAddr = attributeAddress;

/**
 * The Kafka key of a connection: both ends, in a fixed order, without the host,
 * so both directions, seen from the client host and from the server host,
 * land in one partition, in order.
 */
export function l7Key(transport: Transport, a: string, pa: number, b: string, pb: number): string {
  const x = a.includes(':') ? `[${a}]:${pa}` : `${a}:${pa}`;
  const y = b.includes(':') ? `[${b}]:${pb}` : `${b}:${pb}`;
  return x <= y ? `${transport.toLowerCase()}/${x}-${y}` : `${transport.toLowerCase()}/${y}-${x}`;
}

type Proto = 'HTTP1' | 'HTTP2' | 'DNS';

interface Conn {
  key: bigint;
  ctx: L7Context;
  /** Next expected offset per direction (egress, ingress); -1 before the first record. */
  next: [number, number];
  /** Parser per direction, once recognised. */
  parsers: [StreamParser, StreamParser] | null;
  /** Direction carrying the requests (only with parsers). */
  reqDir: number;
  proto: Proto | null;
  ignored: boolean;
  looked: number;
  lastNs: bigint;
  /** lastNs when the connection last moved to the end of the LRU order. */
  movedNs: bigint;
  saidFailed: [boolean, boolean];
  /**
   * Records seen before the protocol was recognised, replayed once it is: an
   * HTTP/2 server writes its SETTINGS before it reads the client's preface.
   */
  early: L7Capture[];
  earlyBytes: number;
  /**
   * HTTP/1 after records were lost (an offset jump the parser could not
   * bridge): both directions skip bytes until a capture begins with a start
   * line. Syscalls usually carry whole messages, so one soon does. First the
   * request direction (a request line: fresh parsers from there, at offset
   * reqAt), then the response direction, with a status line sent or read
   * after that request began (its peer offset is past reqAt): a response to a
   * request from before the loss is never paired with one after it. Without
   * this, a burst of ring drops left a keep-alive connection dark for the
   * rest of its life.
   */
  resync: { reqAt: number | null } | null;
}

const DNS_PORT = 53;
/** Bytes of early records kept per connection while its protocol is unknown. */
const MAX_EARLY_BYTES = 16384;

export class L7Tracker {
  readonly counters: L7Counters = {
    records: 0, exchanges: 0, messages: 0, recognised: 0, unrecognised: 0, gapBytes: 0, lostRecords: 0, failed: new Map(), evicted: 0, otherDatagrams: 0,
    resyncs: 0, resynced: 0, resyncSkippedBytes: 0,
  };
  private readonly conns = new Map<bigint, Conn>();
  private readonly opts: L7ParseOptions;
  private readonly max: number;
  private readonly idleNs: bigint;
  /** How stale the LRU order may get: sweep() flushes a connection at most this late. */
  private readonly moveNs: bigint;
  private readonly detectRecords: number;

  constructor(o: L7TrackerOptions = {}) {
    this.opts = o.parse ?? DEFAULT_L7_OPTIONS;
    this.max = o.maxConnections ?? 16384;
    this.idleNs = o.idleNs ?? 300_000_000_000n;
    this.moveNs = this.idleNs / 64n;
    this.detectRecords = o.detectRecords ?? 8;
    this.processName = o.processName ?? (() => '');
    this.ignore = o.ignoreTgids ?? new Set();
  }

  private readonly ignore: ReadonlySet<number>;

  private readonly processName: (tgid: number) => string;

  get size(): number {
    return this.conns.size;
  }

  feed(c: L7Capture): L7Output[] {
    this.counters.records++;
    if (this.ignore.has(c.tgid)) return [];
    if (c.protocol === IPPROTO_UDP) return this.datagram(c);
    if (c.protocol !== IPPROTO_TCP && c.kind !== L7Kind.CLOSE) return [];
    let conn = this.conns.get(c.conn_id);
    if (c.kind === L7Kind.CLOSE) {
      if (!conn) return [];
      this.conns.delete(c.conn_id);
      return this.finish(conn, c.ts_ns);
    }
    const out: L7Output[] = [];
    if (!conn) {
      if (this.conns.size >= this.max) out.push(...this.evictOldest(c.ts_ns));
      conn = this.open(c);
    } else if (c.ts_ns - conn.movedNs > this.moveNs) {
      // least recently used first: Map keeps insertion order, so re-insert.
      // Only now and then: a delete and a set of a bigint key per record were
      // a visible part of feed(), and an order right to within moveNs is
      // all eviction and sweep() need.
      this.conns.delete(c.conn_id);
      this.conns.set(c.conn_id, conn);
      conn.movedNs = c.ts_ns;
    }
    conn.lastNs = c.ts_ns;
    this.refreshTask(conn, c);
    if (conn.ignored) return out;
    const dir = c.direction === L7Direction.INGRESS ? 1 : 0;
    if (!conn.parsers) {
      if (c.captured_len === 0) return out;
      if (!this.recognise(conn, c, dir)) {
        if (++conn.looked >= this.detectRecords) {
          conn.ignored = true;
          conn.early = [];
          this.counters.unrecognised++;
        } else if (conn.earlyBytes + c.captured_len <= MAX_EARLY_BYTES) {
          conn.early.push(c);
          conn.earlyBytes += c.captured_len;
        }
        return out;
      }
      // parsing starts here; the other direction's early records (sent before
      // this one was recognised) go first, from where that direction began
      conn.next[dir] = c.offset;
      const early = conn.early.filter((e) => e.direction !== c.direction);
      // The other direction had sent peer_offset bytes when this record was
      // captured; what it sends from now on starts there. So a lost first
      // record of it (a server's first response) shows as a gap, as any other
      // loss does, instead of the next one being taken for it.
      conn.next[1 - dir] = early.reduce((m, e) => Math.min(m, e.offset), c.peer_offset);
      conn.early = [];
      conn.earlyBytes = 0;
      for (const e of early) this.data(conn, e, 1 - dir, out);
    }
    this.data(conn, c, dir, out);
    return out;
  }

  private data(conn: Conn, c: L7Capture, dir: number, out: L7Output[]): void {
    if (conn.resync !== null && !this.resynced(conn, c, dir)) return;
    const p = conn.parsers![dir]!;
    const expected = conn.next[dir]!;
    if (expected >= 0 && c.offset > expected) {
      this.counters.lostRecords++;
      this.counters.gapBytes += c.offset - expected;
      const wasFailed = p.failed !== null;
      // the lost bytes came before this call: their time is no later than its edge
      this.collect(conn, p.gap(c.offset - expected, messageEdgeNs(c)), out);
      // this gap lost it (not an upgrade or a bad start line from before)
      if (conn.proto === 'HTTP1' && !wasFailed && p.failed !== null) {
        this.noteFailure(conn, dir);
        conn.resync = { reqAt: null };
        this.counters.resyncs++;
        return this.data(conn, c, dir, out); // this record may be where it starts again
      }
    }
    if (expected >= 0 && c.offset < expected) return; // already fed (cannot happen unless ids repeat)
    if (p.failed !== null) this.noteLostRecord(conn, p.failed);
    const at = messageEdgeNs(c);
    if (c.cuts !== undefined && c.cuts.length > 0) {
      // HTTP/2 framed in BPF (capture.ts replayCapture): a cut is a payload left in the kernel on purpose, not a loss
      replayCapture(c, (b) => this.collect(conn, p.push(b, at), out), (n) => this.collect(conn, p.gap(n, at, true), out), (n) => {
        this.counters.gapBytes += n;
        this.collect(conn, p.gap(n, at), out);
      });
    } else {
      if (c.captured_len > 0) this.collect(conn, p.push(c.payload, at), out);
      if (c.total_len > c.captured_len) {
        this.counters.gapBytes += c.total_len - c.captured_len;
        this.collect(conn, p.gap(c.total_len - c.captured_len, at), out);
      }
    }
    conn.next[dir] = c.offset + c.total_len;
    this.noteFailure(conn, dir);
    this.noteCounts(conn, p);
  }

  /** HTTP/2 losses it went on from and its recoveries (HPACK partly decoded, resynced): next to the stops, by fixed reason. */
  private noteCounts(conn: Conn, p: StreamParser): void {
    const counts = takeHttp2Counts(p);
    if (counts === null) return;
    for (const [why, n] of counts) {
      const k = `${conn.proto}: ${why}`;
      this.counters.failed.set(k, (this.counters.failed.get(k) ?? 0) + n);
    }
  }

  /**
   * While an HTTP/1 connection resyncs (Conn.resync): true when capture `c`
   * is where its direction starts again (the parsers and offsets are set for
   * it to be fed as usual); false when it is skipped.
   */
  private resynced(conn: Conn, c: L7Capture, dir: number): boolean {
    const r = conn.resync!;
    const skip = () => {
      conn.next[dir] = c.offset + c.total_len;
      this.counters.resyncSkippedBytes += c.total_len;
      return false;
    };
    if (dir === conn.reqDir) {
      if (r.reqAt !== null) return true;
      if (c.captured_len === 0 || !looksLikeHttp1Request(c.payload)) return skip();
      const pair = createHttp1Connection(this.opts);
      conn.parsers = conn.reqDir === 0 ? [pair.requests, pair.responses] : [pair.responses, pair.requests];
      conn.saidFailed = [false, false];
      r.reqAt = c.offset;
      conn.next[dir] = c.offset;
      return true;
    }
    if (r.reqAt === null || !(c.peer_offset > r.reqAt) || c.captured_len === 0 || !looksLikeHttp1Response(c.payload)) return skip();
    conn.resync = null;
    conn.next[dir] = c.offset;
    this.counters.resynced++;
    return true;
  }

  /**
   * One exchange record: BPF framed and paired the HTTP/1 exchange, so no
   * connection state is kept here; its messages come out with their context
   * (exchange.ts). A message it stands for that cannot be reported (head
   * bytes that are no start line) is counted in `failed` under
   * 'HTTP1: exchange <why>' ('DNS: exchange <why>' for a DNS one), as a
   * stopped direction's losses are.
   */
  exchange(x: L7Exchange): L7Output[] {
    this.counters.exchanges++;
    if (this.ignore.has(x.tgid) || this.ignore.has(x.req_tgid)) return [];
    const { outputs, unreported } = exchangeOutputs(x, this.opts, this.processName);
    for (const why of unreported) {
      const k = `${x.app === L7App.DNS ? 'DNS' : 'HTTP1'}: exchange ${why}`;
      this.counters.failed.set(k, (this.counters.failed.get(k) ?? 0) + 1);
    }
    this.counters.messages += outputs.length;
    return outputs;
  }

  /** Flushes and forgets connections idle for longer than idleNs (call every few seconds). */
  sweep(nowNs: bigint): L7Output[] {
    const out: L7Output[] = [];
    for (const [id, conn] of this.conns) {
      // least recently used first: the rest were used later (or at most moveNs
      // earlier, flushed by a later sweep)
      if (nowNs - conn.lastNs < this.idleNs) break;
      this.conns.delete(id);
      out.push(...this.finish(conn, nowNs));
    }
    return out;
  }

  /** Flushes every connection (the collector is stopping). */
  flushAll(nowNs: bigint): L7Output[] {
    const out: L7Output[] = [];
    for (const conn of this.conns.values()) out.push(...this.finish(conn, nowNs));
    this.conns.clear();
    return out;
  }

  private open(c: L7Capture): Conn {
    const conn: Conn = {
      key: c.conn_id,
      ctx: {
        pid: c.pid, tgid: c.tgid, uid: c.uid, comm: c.comm, process_name: this.processName(c.tgid), cgroup_id: c.cgroup_id, conn_id: c.conn_id,
        role: L7_ROLE_NAME[c.role] ?? 'UNKNOWN',
        transport: 'TCP',
        local_addr: normalizeAddr(formatInet(c.laddr, 0, c.family)),
        local_port: c.lport,
        remote_addr: normalizeAddr(formatInet(c.raddr, 0, c.family)),
        remote_port: c.rport,
      },
      next: [-1, -1],
      parsers: null,
      reqDir: 0,
      proto: null,
      ignored: false,
      looked: 0,
      lastNs: c.ts_ns,
      movedNs: c.ts_ns,
      saidFailed: [false, false],
      early: [],
      earlyBytes: 0,
      resync: null,
    };
    this.conns.set(c.conn_id, conn);
    return conn;
  }

  /** The task fields follow the latest capture: a message is attributed to the task that completed it. */
  private refreshTask(conn: Conn, c: L7Capture): void {
    const x = conn.ctx;
    if (x.pid === c.pid && x.uid === c.uid && x.comm === c.comm) return;
    conn.ctx = { ...x, pid: c.pid, tgid: c.tgid, uid: c.uid, comm: c.comm, cgroup_id: c.cgroup_id, ...(c.tgid === x.tgid ? {} : { process_name: this.processName(c.tgid) }) };
  }

  private recognise(conn: Conn, c: L7Capture, dir: number): boolean {
    const b = c.payload;
    let proto: Proto | null = null;
    let reqDir = dir;
    let midstream = false;
    if (looksLikeHttp2Preface(b)) proto = 'HTTP2';
    else if (looksLikeHttp1Request(b)) proto = 'HTTP1';
    else if (looksLikeHttp1Response(b)) {
      proto = 'HTTP1';
      reqDir = 1 - dir;
    } else if ((conn.ctx.local_port === DNS_PORT || conn.ctx.remote_port === DNS_PORT) && looksLikeDns(b, true)) {
      proto = 'DNS';
      // QR bit of the first message (after the 2-byte length): a query travels from the client
      reqDir = b.length > 4 && (b[4]! & 0x80) !== 0 ? 1 - dir : dir;
    } else if ((c.flags & L7_FLAG.MIDSTREAM) !== 0) {
      // set up before ringflow started: HTTP/2 shows as whole frames, its client side by a request's pseudo-headers
      const side = http2MidstreamSide(b);
      if (side !== null) {
        proto = 'HTTP2';
        midstream = true;
        reqDir = side === 'REQUEST' ? dir : 1 - dir;
      }
    }
    if (!proto) return false;
    conn.proto = proto;
    conn.reqDir = reqDir;
    if (proto === 'DNS') {
      conn.parsers = [createDnsTcpParser(), createDnsTcpParser()];
    } else {
      const pair = proto === 'HTTP2' ? createHttp2Connection(this.opts, { midConnection: midstream }) : createHttp1Connection(this.opts);
      conn.parsers = reqDir === 0 ? [pair.requests, pair.responses] : [pair.responses, pair.requests];
    }
    if (conn.ctx.role === 'UNKNOWN') conn.ctx = { ...conn.ctx, role: reqDir === 0 ? 'CLIENT' : 'SERVER' };
    this.counters.recognised++;
    return true;
  }

  private collect(conn: Conn, msgs: L7Message[], out: L7Output[]): void {
    for (const msg of msgs) {
      out.push({ msg, ctx: conn.ctx });
      this.counters.messages++;
    }
  }

  private noteFailure(conn: Conn, dir: number): void {
    const why = conn.parsers![dir]!.failed;
    if (why === null || conn.saidFailed[dir]) return;
    conn.saidFailed[dir] = true;
    const k = `${conn.proto}: ${failureReason(why)}`;
    this.counters.failed.set(k, (this.counters.failed.get(k) ?? 0) + 1);
  }

  /**
   * A record reached a direction whose parser had already stopped: whatever
   * messages it carried are lost. A stop is counted once per direction, but a
   * long-lived connection (a gRPC channel) goes on carrying requests after
   * it, so each such record is counted too (under RECORD_AFTER_STOP, next to
   * the stops in the stats record's l7_parse_failures): stops plus records
   * after them bound the messages lost from above. A connection that left
   * HTTP for another protocol (upgrade) loses nothing we would have parsed.
   */
  private noteLostRecord(conn: Conn, why: string): void {
    if (why === 'upgrade') return;
    const k = `${conn.proto}: ${RECORD_AFTER_STOP}`;
    this.counters.failed.set(k, (this.counters.failed.get(k) ?? 0) + 1);
  }

  private finish(conn: Conn, ts: bigint): L7Output[] {
    const out: L7Output[] = [];
    if (!conn.parsers) return out;
    // requests first: a response completed by the close answers a request completed before it
    const order = conn.reqDir === 0 ? [0, 1] : [1, 0];
    for (const d of order) {
      this.collect(conn, conn.parsers[d]!.end(ts), out);
      this.noteCounts(conn, conn.parsers[d]!);
    }
    return out;
  }

  private evictOldest(ts: bigint): L7Output[] {
    const first = this.conns.entries().next();
    if (first.done) return [];
    const [id, conn] = first.value;
    this.conns.delete(id);
    this.counters.evicted++;
    return this.finish(conn, ts);
  }

  private datagram(c: L7Capture): L7Output[] {
    if (c.kind === L7Kind.CLOSE || c.captured_len === 0) return [];
    const local = normalizeAddr(formatInet(c.laddr, 0, c.family));
    const remote = normalizeAddr(formatInet(c.raddr, 0, c.family));
    if (!(c.lport === DNS_PORT || c.rport === DNS_PORT || looksLikeDns(c.payload, false))) {
      this.counters.otherDatagrams++;
      return [];
    }
    const msg = parseDnsMessage(c.payload, messageEdgeNs(c));
    if (!msg) {
      this.counters.otherDatagrams++;
      return [];
    }
    if (c.total_len > c.captured_len) msg.truncated = true;
    const egress = c.direction === L7Direction.EGRESS;
    // a query sent, or a response received, makes this process the client
    const client = (msg.kind === 'REQUEST') === egress;
    this.counters.messages++;
    return [{
      msg,
      ctx: {
        pid: c.pid, tgid: c.tgid, uid: c.uid, comm: c.comm, process_name: this.processName(c.tgid), cgroup_id: c.cgroup_id, conn_id: c.conn_id,
        role: client ? 'CLIENT' : 'SERVER', transport: 'UDP',
        local_addr: local, local_port: c.lport, remote_addr: remote, remote_port: c.rport,
      },
    }];
  }
}

/** The reason, after the protocol, counting records fed to a direction whose parser had stopped (one per record, not per direction). */
export const RECORD_AFTER_STOP = 'record after stop';

/**
 * Parser failure texts that are already fixed strings (http1.ts, http2.ts,
 * dns.ts): kept as they are.
 */
const FIXED_FAILURES: ReadonlySet<string> = new Set([
  // HTTP/1
  'upgrade', 'gap past message end', 'gap across chunk boundary', 'gap between messages', 'gap in headers',
  'gap in chunked framing', 'bad start line', 'headers too large', 'chunk size line too long', 'bad chunk size',
  'chunked body too large', 'bad chunk terminator', 'trailers too large', 'bad header line',
  'bad transfer-encoding', 'bad content-length',
  // HTTP/2
  'CONTINUATION without HEADERS', 'bad gap length', 'frame larger than SETTINGS_MAX_FRAME_SIZE', 'gap across frames',
  'gap in connection preface', 'header block interrupted', 'header block too large', 'hpack desync',
  'malformed frame (SETTINGS_MAX_FRAME_SIZE)', 'malformed frame (padding)', 'no SETTINGS preface', 'no connection preface',
]);

/** Failure texts that carry numbers or an error's message: their fixed reason. */
const FAILURE_PATTERNS: readonly [RegExp, string][] = [
  [/^message \d+ \(\d+ bytes\) is not DNS/, 'not DNS'],
  [/^a gap of \d+ bytes covered a length prefix/, 'gap over a length prefix'],
  [/^malformed frame \(type \d+\)$/, 'malformed frame'],
  [/^hpack: /, 'hpack error'],
  [/^internal error: /, 'internal error'],
];

/**
 * A parser's failure text -> a reason from a fixed set, so the counters keyed
 * by it (and the stats record's l7_parse_failures) stay bounded: texts with
 * counts, lengths or error messages in them would make one key per
 * connection. Pure; anything not listed here is 'other'.
 */
export function failureReason(why: string): string {
  if (FIXED_FAILURES.has(why)) return why;
  for (const [re, reason] of FAILURE_PATTERNS) if (re.test(why)) return reason;
  return 'other';
}

