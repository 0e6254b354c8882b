/**
 * Raw L7 capture records (bpf/l7.bpf.c) decoded into plain objects: one
 * record per socket read/write syscall that moved data, or one per close of a
 * tracked connection. Pure: no state, no copy of the payload.
 *
 * Record grammar (little-endian, struct rf_l7_capture in bpf/events.h; the
 * offsets below are pinned to it by test/unit/layout.test.ts):
 *
 *   record  = header capture cut* payload
 *   header  = struct rf_header                    ; 48 bytes, type = RF_EV_L7_CAPTURE, ts_ns = sys_exit time
 *   capture = conn_id:u64 offset:u64 peer_offset:u64 laddr:16 raddr:16
 *             fd:u32 total_len:u32 captured_len:u32 lport:u16 rport:u16 family:u16
 *             direction:u8 syscall:u8 role:u8 protocol:u8 kind:u8 flags:u8
 *             enter_ns:u64 ncuts:u16 pad:6
 *   cut     = at:u32 len:u32                      ; ncuts of them (struct rf_l7_cut)
 *   payload = captured_len bytes                  ; the kept bytes the call moved
 *
 * Without cuts, a data record's payload is the first min(total_len, limit)
 * bytes of what the call moved (fewer with L7_FLAG.COPY_FAILED or
 * L7_FLAG.IOV_LIMIT). An HTTP/2 direction framed in BPF (bpf/l7_h2.h) sends
 * cuts: payloads of DATA, PING, WINDOW_UPDATE and PRIORITY frames that did
 * not leave the kernel, each `len` bytes from position `at` of the call's
 * bytes. The call's bytes are then: payload up to the first cut, the cut,
 * payload up to the next... and what follows the payload's end was not
 * captured (replayCapture says it in order).
 * `offset` is where those bytes start in the connection's byte stream in
 * their direction, so offset + total_len of one record is the next record's
 * offset unless a record was lost (counted in rf_drops[RF_EV_L7_CAPTURE]).
 * A close record carries the totals: offset = bytes egress, peer_offset =
 * bytes ingress.
 */

/** RF_EV_L7_CAPTURE: the record's first byte. */
export const L7_CAPTURE_TYPE = 9;
/** sizeof(struct rf_l7_capture): the cuts, then the payload, start here. */
export const L7_CAPTURE_SIZE = 144;
/** sizeof(struct rf_l7_cut). */
export const L7_CUT_SIZE = 8;
/** RF_L7_MAX_CUTS: most cuts in one record. */
export const L7_MAX_CUTS = 256;
/** RF_L7_MAX_CAPTURE: hard maximum of rf_l7_capture_bytes. */
export const L7_MAX_CAPTURE = 16384;
/** RF_L7_DEFAULT_CAPTURE: rf_l7_capture_bytes when not set. */
export const L7_DEFAULT_CAPTURE = 4096;

/** offsetof(struct rf_l7_capture, ...), header fields included. */
export const L7_OFFSETS = {
  type: 0,
  cpu: 2,
  pid: 4,
  tgid: 8,
  uid: 12,
  ts_ns: 16,
  cgroup_id: 24,
  comm: 32,
  conn_id: 48,
  offset: 56,
  peer_offset: 64,
  laddr: 72,
  raddr: 88,
  fd: 104,
  total_len: 108,
  captured_len: 112,
  lport: 116,
  rport: 118,
  family: 120,
  direction: 122,
  syscall: 123,
  role: 124,
  protocol: 125,
  kind: 126,
  flags: 127,
  enter_ns: 128,
  ncuts: 136,
} as const;

/** enum rf_l7_kind */
export const L7Kind = { DATA: 0, CLOSE: 1 } as const;
/** enum rf_l7_direction */
export const L7Direction = { EGRESS: 0, INGRESS: 1 } as const;
/** enum rf_l7_role */
export const L7Role = { UNKNOWN: 0, CLIENT: 1, SERVER: 2 } as const;
/** L7Role -> the role a message's context names (tracker.ts Role). */
export const L7_ROLE_NAME: Readonly<Record<number, 'UNKNOWN' | 'CLIENT' | 'SERVER'>> = { 0: 'UNKNOWN', 1: 'CLIENT', 2: 'SERVER' };
/** enum rf_l7_syscall */
export const L7Syscall = {
  READ: 1,
  WRITE: 2,
  READV: 3,
  WRITEV: 4,
  RECVFROM: 5,
  SENDTO: 6,
  RECVMSG: 7,
  SENDMSG: 8,
  RECVMMSG: 9,
  SENDMMSG: 10,
  CLOSE: 11,
} as const;
/** enum rf_l7_flag bits */
export const L7_FLAG = {
  /** Connection first seen after it was set up: offsets count from then, role unknown. */
  MIDSTREAM: 1,
  /** Remote address from the call's sockaddr (UDP sendto/recvfrom/msg_name), not the socket. */
  ADDR_MSG: 2,
  /** Reading the user buffer failed: captured_len is what was copied before. */
  COPY_FAILED: 4,
  /** More iovecs than the kernel side walks: captured_len < min(total_len, limit). */
  IOV_LIMIT: 8,
} as const;

/**
 * Indexes of bpf/l7.bpf.c's per-CPU counter array rf_l7_gate (enum
 * rf_l7_gate_counter): its protocol gate's decisions. Not drops.
 */
export const L7_GATE = {
  /** TCP connections recognised (HTTP/1, HTTP/2 preface, port 53): captured in full. */
  ACCEPTED_CONNS: 0,
  /** TCP connections given up on after rf_l7_detect_records data records: nothing more captured. */
  REJECTED_CONNS: 1,
  /** UDP datagrams neither on port 53 nor with a DNS-like header: not captured. */
  UDP_SKIPPED: 2,
} as const;
/**
 * Indexes of bpf/l7.bpf.c's per-CPU counter array rf_l7_h2 (enum
 * rf_l7_h2_counter): HTTP/2 framing in BPF. Not losses by themselves (a
 * record whose framing was lost goes out uncut; what user space then misses
 * http2.ts counts).
 */
export const L7_H2 = {
  /** Capture records of framed HTTP/2 directions. */
  RECORDS: 0,
  /** Payload bytes that did not leave the kernel. */
  CUT_BYTES: 1,
  /** Calls with more than L7_MAX_CUTS cuts: the rest kept up to the capture size. */
  CUT_LIMIT: 2,
  /** Calls whose kept bytes exceeded the capture size: the rest not captured. */
  KEPT_OVER: 3,
  /** A frame header failed the check (or the walk could not go on): the direction seeks. */
  FRAME_LOST: 4,
  /** A seeking direction found a chain of plausible frames at a call's start. */
  RESYNCED: 5,
} as const;
/** RF_L7_H2_NR: slots of rf_l7_h2. */
export const L7_H2_NR = 8;

/** rf_l7_detect_records default: data records a TCP connection gets to be recognised in. */
export const L7_DEFAULT_DETECT_RECORDS = 4;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface L7Capture {
  // rf_header
  cpu: number;
  pid: number;
  tgid: number;
  uid: number;
  /** bpf_ktime_get_ns() at the call's sys_exit (CLOCK_MONOTONIC); close: at close()'s enter. */
  ts_ns: bigint;
  cgroup_id: bigint;
  comm: string;
  // capture
  /** Unique per (tgid, fd) connection lifetime. */
  conn_id: bigint;
  /** Bytes seen in this record's direction before it (close: total egress). */
  offset: number;
  /** Bytes seen in the other direction so far (close: total ingress). */
  peer_offset: number;
  /** Local address: 4 bytes for AF_INET, 16 for AF_INET6 (views into the record). */
  laddr: Uint8Array;
  raddr: Uint8Array;
  fd: number;
  /** The syscall's return value: bytes it moved (0 for close). */
  total_len: number;
  /** payload.length. */
  captured_len: number;
  lport: number;
  rport: number;
  /** AF_INET (2) or AF_INET6 (10). */
  family: number;
  /** L7Direction */
  direction: number;
  /** L7Syscall */
  syscall: number;
  /** L7Role */
  role: number;
  /** IPPROTO_TCP or IPPROTO_UDP. */
  protocol: number;
  /** L7Kind */
  kind: number;
  /** L7_FLAG bits. */
  flags: number;
  /**
   * bpf_ktime_get_ns() at the call's sys_enter (<= ts_ns); close: = ts_ns.
   * Which of the two edges stamps a message: see messageEdgeNs (tracker.ts).
   */
  enter_ns: bigint;
  /** cuts.length / 2 (decoded records always say it). */
  ncuts?: number;
  /** Cuts (HTTP/2 payloads not captured): [at0, len0, at1, len1, ...], ascending and disjoint; empty (or absent) for most records. */
  cuts?: readonly number[];
  /** The captured (kept) bytes: a view into the record, not a copy. */
  payload: Uint8Array;
}

const NO_CUTS: readonly number[] = Object.freeze([]);

/**
 * The cuts of a record at `o` (ncuts of them, `captured` payload bytes
 * after them, `total` bytes moved), checked: ascending, disjoint, within the
 * call, and the payload bytes they leave between them no more than were
 * captured. null when they are not (the record is not decoded).
 */
function readCuts(buf: Uint8Array, o: number, ncuts: number, captured: number, total: number): readonly number[] | null {
  if (ncuts === 0) return NO_CUTS;
  if (ncuts > L7_MAX_CUTS) return null;
  const cuts = new Array<number>(2 * ncuts);
  let end = 0;
  let kept = 0;
  for (let i = 0; i < ncuts; i++) {
    const at = u32(buf, o + i * L7_CUT_SIZE);
    const len = u32(buf, o + i * L7_CUT_SIZE + 4);
    if (at < end || len === 0 || at + len > total) return null;
    kept += at - end;
    end = at + len;
    cuts[2 * i] = at;
    cuts[2 * i + 1] = len;
  }
  return kept <= captured ? cuts : null;
}

/**
 * The call's bytes in order, as a parser is to see them: `push` the kept
 * bytes, `cut` a payload not captured (a known-size hole inside a frame,
 * not a loss), and `gap` what follows the captured bytes (not captured:
 * past the capture size, a copy fault, an iovec limit). Subarrays of
 * c.payload, no copies.
 */
export function replayCapture(c: L7Capture, push: (bytes: Uint8Array) => void, cut: (len: number) => void, gap: (len: number) => void): void {
  const cuts = c.cuts ?? NO_CUTS;
  let pos = 0; // in the call's bytes
  let k = 0; // in the payload
  for (let i = 0; i < cuts.length; i += 2) {
    const at = cuts[i]!;
    if (at > pos) push(c.payload.subarray(k, k + at - pos));
    k += at - pos;
    cut(cuts[i + 1]!);
    pos = at + cuts[i + 1]!;
  }
  if (k < c.captured_len) push(c.payload.subarray(k));
  pos += c.captured_len - k;
  if (c.total_len > pos) gap(c.total_len - pos);
}

// Little-endian readers shared with collector/l7/exchange.ts (the exchange record is decoded the same way).

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | b[o + 1]! << 8;
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | b[o + 1]! << 8 | b[o + 2]! << 16 | b[o + 3]! << 24) >>> 0;
}

export function u64(b: Uint8Array, o: number): bigint {
  return BigInt(u32(b, o)) | BigInt(u32(b, o + 4)) << 32n;
}

/** A u64 byte count as a number (exact below 2^53, i.e. 8 PiB). */
export function u64n(b: Uint8Array, o: number): number {
  return u32(b, o + 4) * 4294967296 + u32(b, o);
}

const UTF8 = new TextDecoder();

/** The last command name decoded and its bytes: records come in runs from one process, so most decodes are repeats. */
const lastCommBytes = new Uint8Array(16);
let lastCommLength = -1;
let lastComm = '';

/** char[16] up to the first NUL, as UTF-8 (invalid bytes become U+FFFD, as the transcoder does). */
export function comm(b: Uint8Array, o: number): string {
  let n = 0;
  let high = 0;
  let same = true;
  while (n < 16 && b[o + n] !== 0) {
    const c = b[o + n]!;
    high |= c;
    if (c !== lastCommBytes[n]) same = false;
    n++;
  }
  if (same && n === lastCommLength) return lastComm;
  const s = high < 128 ? String.fromCharCode(...b.subarray(o, o + n)) : UTF8.decode(b.subarray(o, o + n));
  lastCommBytes.fill(0).set(b.subarray(o, o + n));
  lastCommLength = n;
  lastComm = s;
  return s;
}

/**
 * Decodes the record of `length` bytes at `offset` in `buf` (for a native
 * batch: the offset and length forEachRecord gives). Returns null when it is
 * not an L7 capture record, or is shorter than its header and payload say.
 * `payload`, `laddr` and `raddr` are views into `buf`: copy what must outlive it.
 */
export function decodeL7Capture(buf: Uint8Array, offset: number, length: number): L7Capture | null {
  const o = offset;
  if (length < L7_CAPTURE_SIZE || o < 0 || o + length > buf.length || buf[o] !== L7_CAPTURE_TYPE) return null;
  const captured = u32(buf, o + L7_OFFSETS.captured_len);
  const ncuts = u16(buf, o + L7_OFFSETS.ncuts);
  const start = L7_CAPTURE_SIZE + ncuts * L7_CUT_SIZE; // the payload's
  if (captured > length - start) return null;
  const total = u32(buf, o + L7_OFFSETS.total_len);
  const cuts = readCuts(buf, o + L7_CAPTURE_SIZE, ncuts, captured, total);
  if (cuts === null) return null;
  const family = u16(buf, o + L7_OFFSETS.family);
  const alen = family === 2 ? 4 : 16;
  return {
    cpu: u16(buf, o + L7_OFFSETS.cpu),
    pid: u32(buf, o + L7_OFFSETS.pid),
    tgid: u32(buf, o + L7_OFFSETS.tgid),
    uid: u32(buf, o + L7_OFFSETS.uid),
    ts_ns: u64(buf, o + L7_OFFSETS.ts_ns),
    cgroup_id: u64(buf, o + L7_OFFSETS.cgroup_id),
    comm: comm(buf, o + L7_OFFSETS.comm),
    conn_id: u64(buf, o + L7_OFFSETS.conn_id),
    offset: u64n(buf, o + L7_OFFSETS.offset),
    peer_offset: u64n(buf, o + L7_OFFSETS.peer_offset),
    laddr: buf.subarray(o + L7_OFFSETS.laddr, o + L7_OFFSETS.laddr + alen),
    raddr: buf.subarray(o + L7_OFFSETS.raddr, o + L7_OFFSETS.raddr + alen),
    fd: u32(buf, o + L7_OFFSETS.fd),
    total_len: total,
    captured_len: captured,
    lport: u16(buf, o + L7_OFFSETS.lport),
    rport: u16(buf, o + L7_OFFSETS.rport),
    family,
    direction: buf[o + L7_OFFSETS.direction]!,
    syscall: buf[o + L7_OFFSETS.syscall]!,
    role: buf[o + L7_OFFSETS.role]!,
    protocol: buf[o + L7_OFFSETS.protocol]!,
    kind: buf[o + L7_OFFSETS.kind]!,
    flags: buf[o + L7_OFFSETS.flags]!,
    enter_ns: u64(buf, o + L7_OFFSETS.enter_ns),
    ncuts,
    cuts,
    payload: buf.subarray(o + start, o + start + captured),
  };
}
