/**
 * bpf/l7.bpf.c against the real kernel (run as root). A python3 child does
 * real socket I/O and logs every call it made (fd, syscall, the bytes moved,
 * the connection's addresses as it sees them); the records must match that
 * log exactly and in order: syscall, fd, direction, role, protocol, family,
 * addresses, ports, byte offsets, lengths and payload bytes, then a close
 * record with the totals for each tracked connection. The test runner's own
 * socket traffic must never appear.
 */
import { before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Session, forEachRecord, type SessionOptions } from '../../native/index.ts';
import { encodeL7Settings, encodeSettings, type Filters, type L7Settings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import {
  L7_CAPTURE_TYPE, L7_DEFAULT_CAPTURE, L7_DEFAULT_DETECT_RECORDS, L7_FLAG, L7_GATE, L7_MAX_CAPTURE, L7Direction, L7Kind, L7Role, L7Syscall,
  decodeL7Capture, type L7Capture,
} from '../../collector/l7/capture.ts';
import { messageEdgeNs } from '../../collector/l7/tracker.ts';
import { ROOT, startReady, rootOrSkip } from './helpers.ts';

const L7_OBJ = `${ROOT}bpf/.output/l7.bpf.o`;
let PYTHON = 'python3';

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs(); // classic syscall tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  // the interpreter itself, not a version manager's shim, so the pid we filter on is python's
  PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
});

/**
 * Prepended to every child script. go() says "ready" and waits for the test to
 * load the programs; every socket call goes through a logging wrapper; done()
 * prints the log as the last line of stdout.
 */
const PRELUDE = String.raw`
import ctypes, json, os, socket, sys, time
def mmsg_types():
    # libc and struct mmsghdr for the sendmmsg/recvmmsg tests, as globals of the script
    global libc, iovec, msghdr, mmsghdr
    libc = ctypes.CDLL(None, use_errno=True)
    class iovec(ctypes.Structure):
        _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
    class msghdr(ctypes.Structure):
        _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32), ('iov', ctypes.POINTER(iovec)),
                    ('iovlen', ctypes.c_size_t), ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t),
                    ('flags', ctypes.c_int)]
    class mmsghdr(ctypes.Structure):
        _fields_ = [('hdr', msghdr), ('len', ctypes.c_uint)]
LOG = []
CONNS = {}
A4, A6 = socket.AF_INET, socket.AF_INET6
def go():
    sys.stdout.write('ready\n'); sys.stdout.flush(); sys.stdin.read(1)
def ahex(fam, addr):
    return socket.inet_pton(fam, addr).hex()
def track(s, role, flags=0):
    """Expected connection fields of socket s, as the kernel side should report them."""
    fam = s.family
    l = s.getsockname()
    try:
        r = s.getpeername()
    except OSError:
        r = ('0.0.0.0' if fam == A4 else '::', 0)
    CONNS[s.fileno()] = dict(role=role, flags=flags, family=int(fam),
        protocol=6 if s.type == socket.SOCK_STREAM else 17,
        laddr=ahex(fam, l[0]), lport=l[1], raddr=ahex(fam, r[0]), rport=r[1])
def log(s, op, data, n=None, **kw):
    fd = s if isinstance(s, int) else s.fileno()
    # at: CLOCK_MONOTONIC (bpf_ktime_get_ns's clock) after the call returned
    LOG.append(dict(fd=fd, op=op, data=bytes(data).hex(), n=len(data) if n is None else n, conn=dict(CONNS[fd]), at=time.monotonic_ns(), **kw))
def close(s):
    fd = s.fileno()
    LOG.append(dict(fd=fd, op='close', conn=dict(CONNS.pop(fd))))
    s.close()
def send(s, data):
    n = s.send(data); assert n == len(data); log(s, 'sendto', data)
def recv(s, n, flags=0):
    d = s.recv(n, flags); log(s, 'recvfrom', d); return d
def recv_exact(s, n):
    got = b''
    while len(got) < n:
        got += recv(s, n - len(got))
    return got
def done(**extra):
    print(json.dumps(dict(log=LOG, **extra)))
`;

interface Conn {
  role: number; flags: number; family: number; protocol: number;
  laddr: string; lport: number; raddr: string; rport: number;
}

interface LogEntry {
  fd: number;
  op: string;
  conn: Conn;
  /** hex of the bytes the call moved (what the child saw) */
  data?: string;
  /** time.monotonic_ns() just after the call returned (data calls) */
  at?: number;
  /** the call's return value when it differs from data's length (MSG_TRUNC) */
  n?: number;
  /** the fd names a new connection from this call on (it was replaced without a close seen) */
  new?: boolean;
  /** the call's bytes count in the offsets but it has no record (the protocol gate kept it out) */
  hidden?: boolean;
  /** per-call overrides: the datagram's peer (UDP), extra flags, bytes captured */
  raddr?: string;
  rport?: number;
  flags?: number;
  captured?: number;
}

interface ChildRun {
  pid: number;
  records: L7Capture[];
  log: LogEntry[];
  out: Record<string, unknown>;
  drops: bigint[];
}

interface RunOptions {
  /**
   * The object's globals, given the child's pid and what it printed before
   * "ready" (e.g. a port it bound); default: filter on the child's tgid.
   */
  globals?: (pid: number, printed: string[]) => Record<string, Buffer>;
  session?: SessionOptions;
  /** Runs once the programs are attached, before the child is released. */
  whileAttached?: () => Promise<void>;
  /** Runs once the child exited, before the programs are detached. */
  afterChild?: (session: Session) => void;
}

/**
 * This file checks capture records (the syscall mechanics, the gate, filters):
 * HTTP/1 framed in the kernel, the collector's default, would turn its HTTP
 * connections into exchange records, which l7-exchange.test.ts checks.
 */
const CAPTURE: L7Settings = { kernelParse: false };

/**
 * The globals the collector gives l7.bpf.o (cli/collect.ts), filtered on the
 * child's tgid. The protocol gate is off unless l7 sets detectRecords: most
 * tests here check the capture mechanics on arbitrary bytes; the gate's own
 * tests (and the collector) use the default.
 */
function settings(pid: number, l7: L7Settings = {}, filters: Filters = {}): Record<string, Buffer> {
  return { ...encodeSettings({ pid, ...filters, selfTgid: process.pid }), ...encodeL7Settings({ ...CAPTURE, detectRecords: 0, ...l7 }) };
}

/** A deep copy: batch buffers return to a pool after the callback. */
function copyRecord(r: L7Capture): L7Capture {
  return { ...r, laddr: Buffer.from(r.laddr), raddr: Buffer.from(r.raddr), payload: Buffer.from(r.payload) };
}

/** Runs PRELUDE + script in python3 with l7.bpf.o attached; every L7 record of the run comes back. */
async function runChild(t: TestContext, script: string, opts: RunOptions = {}): Promise<ChildRun> {
  const { child, exited, lines } = await startReady(t, PYTHON, ['-c', PRELUDE + script]);

  const session = new Session({ ringBytes: 16 << 20, ...opts.session });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, (opts.globals ?? ((pid) => settings(pid)))(child.pid!, lines.slice(0, -1)));
  const records: L7Capture[] = [];
  let bad = ''; // asserted after stop(): a throw here would escape into the addon's callback
  session.start((batch) => {
    forEachRecord(batch, (off, len) => {
      const r = decodeL7Capture(batch, off, len);
      if (r) records.push(copyRecord(r));
      else bad ||= `record of type ${batch[off]}, ${len} bytes, does not decode as L7`;
    });
  });
  await opts.whileAttached?.();
  child.stdin!.end('g');
  const [code] = await exited;
  opts.afterChild?.(session);
  await session.stop();
  assert.equal(code, 0, 'the child script succeeded');
  assert.equal(bad, '', 'only L7 records in the ring, each decodes');
  const out = JSON.parse(lines.at(-1)!) as { log: LogEntry[] } & Record<string, unknown>;
  return { pid: child.pid!, records, log: out.log, out, drops: session.drops() };
}

const SYSCALL: Record<string, number> = {
  read: L7Syscall.READ, write: L7Syscall.WRITE, readv: L7Syscall.READV, writev: L7Syscall.WRITEV,
  recvfrom: L7Syscall.RECVFROM, sendto: L7Syscall.SENDTO, recvmsg: L7Syscall.RECVMSG, sendmsg: L7Syscall.SENDMSG,
  recvmmsg: L7Syscall.RECVMMSG, sendmmsg: L7Syscall.SENDMMSG, close: L7Syscall.CLOSE,
};
const INGRESS = new Set(['read', 'readv', 'recvfrom', 'recvmsg', 'recvmmsg']);

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * Every record, in order, against the child's log: the exact fields of each
 * call, offsets recomputed from the log, one conn_id per connection, and the
 * close records' totals.
 */
function assertMatchesLog(run: ChildRun, limit = L7_DEFAULT_CAPTURE): void {
  const { records, log, pid } = run;
  const brief = (r: L7Capture): string => `fd ${r.fd} sys ${r.syscall} kind ${r.kind} len ${r.total_len}`;
  assert.deepEqual(records.map((r) => [r.fd, r.kind === L7Kind.CLOSE ? 'close' : r.syscall]),
    log.filter((e) => !e.hidden).map((e) => [e.fd, e.op === 'close' ? 'close' : SYSCALL[e.op]]),
    'one record per logged call, in order');
  const bytes = new Map<number, [number, number]>(); // fd -> [egress, ingress]
  const ids = new Map<number, bigint>(); // fd -> conn_id of its current connection
  const seenIds = new Set<bigint>();
  let i = -1;
  for (const e of log) {
    if (e.new) bytes.delete(e.fd);
    if (e.hidden) {
      if (e.op === 'close') {
        ids.delete(e.fd);
        bytes.delete(e.fd);
        continue;
      }
      if (!bytes.has(e.fd)) bytes.set(e.fd, [0, 0]);
      bytes.get(e.fd)![INGRESS.has(e.op) ? 1 : 0] += e.n ?? e.data!.length / 2;
      continue;
    }
    const r = records[++i]!;
    const at = `record ${i} (${brief(r)}, log op ${e.op})`;
    assert.equal(r.tgid, pid, `${at}: tgid`);
    assert.equal(r.pid, pid, `${at}: pid`);
    assert.equal(r.fd, e.fd, `${at}: fd`);
    assert.equal(r.role, e.conn.role, `${at}: role`);
    assert.equal(r.protocol, e.conn.protocol, `${at}: protocol`);
    assert.equal(r.family, e.conn.family, `${at}: family`);
    assert.equal(hex(r.laddr), e.conn.laddr, `${at}: laddr`);
    assert.equal(r.lport, e.conn.lport, `${at}: lport`);
    assert.equal(hex(r.raddr), (e.raddr ?? e.conn.raddr), `${at}: raddr`);
    assert.equal(r.rport, e.rport ?? e.conn.rport, `${at}: rport`);
    assert.equal(r.flags, e.conn.flags | (e.flags ?? 0), `${at}: flags`);

    if (e.new) ids.delete(e.fd);
    let id = ids.get(e.fd);
    if (id === undefined) {
      assert.ok(!seenIds.has(r.conn_id), `${at}: a new connection gets a new conn_id`);
      id = r.conn_id;
      ids.set(e.fd, id);
      seenIds.add(id);
      if (!bytes.has(e.fd)) bytes.set(e.fd, [0, 0]);
    }
    assert.equal(r.conn_id, id, `${at}: conn_id`);
    const b = bytes.get(e.fd)!;

    if (e.op === 'close') {
      assert.equal(r.kind, L7Kind.CLOSE, `${at}: kind`);
      assert.equal(r.syscall, L7Syscall.CLOSE, `${at}: syscall`);
      assert.equal(r.direction, L7Direction.EGRESS, `${at}: direction`);
      assert.deepEqual([r.offset, r.peer_offset], b, `${at}: totals (egress, ingress)`);
      assert.equal(r.total_len, 0, `${at}: total_len`);
      assert.equal(r.captured_len, 0, `${at}: captured_len`);
      ids.delete(e.fd);
      bytes.delete(e.fd);
      continue;
    }
    const data = Buffer.from(e.data!, 'hex');
    const n = e.n ?? data.length;
    const dir = INGRESS.has(e.op) ? L7Direction.INGRESS : L7Direction.EGRESS;
    const captured = e.captured ?? Math.min(n, limit, data.length);
    assert.equal(r.kind, L7Kind.DATA, `${at}: kind`);
    assert.equal(r.syscall, SYSCALL[e.op], `${at}: syscall`);
    assert.equal(r.direction, dir, `${at}: direction`);
    assert.equal(r.total_len, n, `${at}: total_len`);
    assert.equal(r.captured_len, captured, `${at}: captured_len`);
    assert.equal(r.payload.length, captured, `${at}: payload length`);
    assert.equal(hex(r.payload), data.subarray(0, captured).toString('hex'), `${at}: payload bytes`);
    assert.equal(r.offset, b[dir], `${at}: offset`);
    assert.equal(r.peer_offset, b[1 - dir], `${at}: peer_offset`);
    // both edges of the call, in order, before the child saw it return
    assert.ok(r.enter_ns > 0n && r.enter_ns <= r.ts_ns, `${at}: enter ${r.enter_ns} <= exit ${r.ts_ns}`);
    if (e.at !== undefined) assert.ok(r.ts_ns <= BigInt(e.at), `${at}: exit ${r.ts_ns} <= returned ${e.at}`);
    b[dir] += n;
  }
  assert.equal(run.drops[L7_CAPTURE_TYPE], 0n, 'no drops');
}

describe('l7.bpf.o: TCP', () => {
  it('HTTP/1 over 127.0.0.1: every syscall kind, client/server roles, offsets, payloads, close', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
REQ = b'GET /x HTTP/1.1\r\nHost: example.test\r\nUser-Agent: rf\r\n\r\n'
RESP = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello'
send(c, REQ)
assert recv_exact(s, len(REQ)) == REQ
assert os.write(s.fileno(), RESP) == len(RESP); log(s, 'write', RESP)
d = os.read(c.fileno(), 4096); log(c, 'read', d); assert d == RESP
assert os.writev(c.fileno(), [b'GET /y', b' HTTP/1.1\r\n', b'\r\n']) == 19; log(c, 'writev', b'GET /y HTTP/1.1\r\n\r\n')
bufs = [bytearray(4), bytearray(5), bytearray(64)]
n = os.readv(s.fileno(), bufs); log(s, 'readv', b''.join(bufs)[:n]); assert n == 19
assert c.sendmsg([b'ab', b'', b'cdef']) == 6; log(c, 'sendmsg', b'abcdef')
d, _, _, _ = s.recvmsg(4096); log(s, 'recvmsg', d); assert d == b'abcdef'
# nothing moved: EAGAIN and EOF-free errors are not recorded
s.setblocking(False)
try:
    s.recv(10); raise SystemExit('expected EAGAIN')
except BlockingIOError:
    pass
s.setblocking(True)
# MSG_PEEK leaves the data queued: only the real read is recorded
send(c, b'peek')
assert s.recv(4, socket.MSG_PEEK) == b'peek'
assert recv(s, 4) == b'peek'
# TCP MSG_TRUNC discards the bytes it counts: recorded, nothing captured (the buffer holds none of them)
send(c, b'gone')
assert len(s.recv(4, socket.MSG_TRUNC)) == 4; log(s, 'recvfrom', b'', n=4)
# not sockets, or not inet: never recorded
r, w = os.pipe(); os.write(w, b'pipe'); os.read(r, 4); os.close(r); os.close(w)
u1, u2 = socket.socketpair(); u1.send(b'unix'); u2.recv(4); u1.close(); u2.close()
with open('/dev/null', 'wb') as f: f.write(b'file')
close(c); close(s); srv.close()
done()
`);
    assert.deepEqual(run.log.map((e) => e.op), ['sendto', 'recvfrom', 'write', 'read', 'writev', 'readv',
      'sendmsg', 'recvmsg', 'sendto', 'recvfrom', 'sendto', 'recvfrom', 'close', 'close']);
    assertMatchesLog(run);
    const http = run.records[0]!;
    assert.equal(Buffer.from(http.payload).toString('latin1'), 'GET /x HTTP/1.1\r\nHost: example.test\r\nUser-Agent: rf\r\n\r\n');
    assert.equal(http.family, 2);
    assert.equal(hex(http.laddr), '7f000001');
    assert.ok(http.ts_ns > 0n && http.cgroup_id > 0n && /^python/.test(http.comm), `header: ${http.comm}`);
    const ts = run.records.map((r) => r.ts_ns);
    assert.deepEqual([...ts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), ts, 'one thread: records in call order');
  });

  it('payload beyond the limit: total 10000, captured 4096; a raised limit is clamped to 16384', async (t) => {
    if (!rootOrSkip(t)) return;
    const script = String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
N = 10000
BIG = bytes(i * 7 % 251 for i in range(N))
send(c, BIG)
assert recv_exact(s, len(BIG)) == BIG
# many iovecs (gRPC C-core writes ~28 in one call): every one is walked, none cut short
parts = [bytes([65 + i]) * 10 for i in range(30)]
assert os.writev(c.fileno(), parts) == 300; log(c, 'writev', b''.join(parts))
assert recv_exact(s, 300) == b''.join(parts)
# UIO_MAXIOV (1024) tiny iovecs, more bytes than the limit: captured up to the limit
parts = [bytes([65 + i % 26]) * 5 for i in range(1024)]
assert os.writev(c.fileno(), parts) == 5120; log(c, 'writev', b''.join(parts))
assert recv_exact(s, 5120) == b''.join(parts)
close(c); close(s); srv.close()
done(n=N)
`;
    const run = await runChild(t, script);
    assertMatchesLog(run);
    const big = run.records[0]!;
    assert.deepEqual([big.syscall, big.total_len, big.captured_len], [L7Syscall.SENDTO, 10000, 4096]);

    // rf_l7_capture_bytes above the hard maximum is clamped to it
    const run2 = await runChild(t, script.replace('N = 10000', 'N = 40000'), {
      globals: (pid) => settings(pid, { captureBytes: 1 << 20 }),
    });
    assertMatchesLog(run2, L7_MAX_CAPTURE);
    assert.deepEqual([run2.records[0]!.total_len, run2.records[0]!.captured_len], [40000, L7_MAX_CAPTURE]);
  });

  it('a connection set up before the programs were loaded: role unknown, MIDSTREAM, offsets from first sight', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname())
s, _ = srv.accept()
c.sendall(b'before'); s.recv(6)
go()
track(c, 0, flags=1); track(s, 0, flags=1)
send(c, b'after')
recv_exact(s, 5)
send(s, b'reply')
recv_exact(c, 5)
close(c); close(s); srv.close()
done()
`);
    assertMatchesLog(run);
  });

  it('span edges: a recv blocked before the send began exits after the send entered; the send is stamped at its enter', async (t) => {
    if (!rootOrSkip(t)) return;
    // The server's recv waits ~100 ms at its enter; a thread sends only then.
    // The send's bytes exist from its enter on, the recv has them only at its
    // exit: the edges the tracker stamps (messageEdgeNs) keep that order,
    // the recv's enter (before the send) and the send's exit would not.
    const run = await runChild(t, String.raw`
import threading
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
T = {}
def later():
    time.sleep(0.1)
    T['send_before'] = time.monotonic_ns()
    assert c.send(b'GET /edge HTTP/1.1\r\n\r\n') == 22
    T['send_after'] = time.monotonic_ns()
th = threading.Thread(target=later)
T['recv_before'] = time.monotonic_ns()
th.start()
d = s.recv(4096)
T['recv_after'] = time.monotonic_ns()
th.join()
assert d == b'GET /edge HTTP/1.1\r\n\r\n'
done(T=T)
`);
    const T = Object.fromEntries(Object.entries(run.out.T as Record<string, number>).map(([k, v]) => [k, BigInt(v)]));
    const send = run.records.find((r) => r.direction === L7Direction.EGRESS && r.kind === L7Kind.DATA);
    const recv = run.records.find((r) => r.direction === L7Direction.INGRESS && r.kind === L7Kind.DATA);
    assert.ok(send && recv, 'the send and the recv were captured');
    assert.ok(T.send_before! <= send.enter_ns && send.enter_ns <= send.ts_ns && send.ts_ns <= T.send_after!, 'send: both edges inside the call');
    assert.ok(T.recv_before! <= recv.enter_ns && recv.enter_ns < T.send_before!, 'recv: entered before the send began');
    assert.ok(recv.ts_ns >= send.enter_ns && recv.ts_ns <= T.recv_after!, 'recv: exited after the send entered');
    assert.ok(recv.ts_ns - recv.enter_ns >= 90_000_000n, `recv blocked ${recv.ts_ns - recv.enter_ns} ns`);
    assert.ok(messageEdgeNs(send) <= messageEdgeNs(recv), 'the stamps keep the causal order');
    assert.equal(messageEdgeNs(send), send.enter_ns);
    assert.equal(messageEdgeNs(recv), recv.ts_ns);
  });

  it('IPv6 over ::1: family 10 and 16-byte addresses', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(A6); srv.bind(('::1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()[:2]); track(c, 1)
s, _ = srv.accept(); track(s, 2)
send(c, b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
recv_exact(s, 24)
close(c); close(s); srv.close()
done()
`);
    assertMatchesLog(run);
    assert.equal(run.records[0]!.family, 10);
    assert.equal(hex(run.records[0]!.raddr), '00000000000000000000000000000001');
  });

  it('an fd reused without a close seen (dup2): a file there is not recorded, another socket is a new connection', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
send(c, b'one')
recv_exact(s, 3)
fd = c.detach()
# /dev/null dup2()ed over the tracked socket's fd (dup2 is not traced): not a socket any more
f = os.open('/dev/null', os.O_WRONLY)
os.dup2(f, fd)
assert os.write(fd, b'not a socket') == 12
# another connection dup2()ed over it: seen first at its data, so a new connection, role unknown
c2 = socket.create_connection(srv.getsockname()); track(c2, 1)
s2, _ = srv.accept(); track(s2, 2)
os.dup2(c2.fileno(), fd)
CONNS[fd] = dict(CONNS[c2.fileno()], role=0, flags=1)
assert os.write(fd, b'two') == 3; log(fd, 'write', b'two', new=True)
recv_exact(s2, 3)
LOG.append(dict(fd=fd, op='close', conn=CONNS.pop(fd))); os.close(fd)
close(s); close(s2); close(c2); os.close(f); srv.close()
done()
`);
    assertMatchesLog(run);
    const onFd = run.records.filter((r) => r.fd === run.log[0]!.fd);
    assert.equal(new Set(onFd.map((r) => r.conn_id)).size, 2, 'two connections on one fd');
    assert.ok(!onFd.some((r) => Buffer.from(r.payload).toString() === 'not a socket'));
  });
});

describe('l7.bpf.o: UDP', () => {
  it('unconnected sendto/recvfrom and sendmsg/recvmsg take the peer from the call; connected UDP is a client', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
go()
a = socket.socket(A4, socket.SOCK_DGRAM); a.bind(('127.0.0.1', 0)); track(a, 0, flags=1)
b = socket.socket(A4, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0)); track(b, 0, flags=1)
pa, pb = a.getsockname()[1], b.getsockname()[1]
lo = ahex(A4, '127.0.0.1')
Q = bytes.fromhex('123401000001000000000000076578616d706c6504746573740000010001')
assert a.sendto(Q, b.getsockname()) == len(Q); log(a, 'sendto', Q, raddr=lo, rport=pb, flags=2)
d, peer = b.recvfrom(512); log(b, 'recvfrom', d, raddr=lo, rport=pa, flags=2); assert d == Q and peer[1] == pa
assert b.sendmsg([b'ans', b'wer'], [], 0, a.getsockname()) == 6; log(b, 'sendmsg', b'answer', raddr=lo, rport=pa, flags=2)
d, _, _, peer = a.recvmsg(512); log(a, 'recvmsg', d, raddr=lo, rport=pb, flags=2); assert d == b'answer'
# MSG_TRUNC: recvfrom returns the datagram's length, only the buffer's bytes exist
a.sendto(b'x' * 100, b.getsockname()); log(a, 'sendto', b'x' * 100, raddr=lo, rport=pb, flags=2)
d = b.recv(10, socket.MSG_TRUNC); log(b, 'recvfrom', b'x' * 10, n=100)
# connected UDP: connect() makes it a client, the socket holds the peer
c = socket.socket(A4, socket.SOCK_DGRAM); c.connect(b.getsockname()); track(c, 1)
send(c, b'conn')
d, peer = b.recvfrom(512); log(b, 'recvfrom', d, raddr=lo, rport=c.getsockname()[1], flags=2)
close(a); close(b); close(c)
done()
`);
    assertMatchesLog(run);
    const q = run.records[0]!;
    assert.equal(q.protocol, 17);
    assert.ok(q.flags & L7_FLAG.ADDR_MSG);
  });

  it('sendmmsg/recvmmsg: one record per message', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
mmsg_types()
go()
b = socket.socket(A4, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0)); track(b, 0, flags=1)
c = socket.socket(A4, socket.SOCK_DGRAM); c.connect(b.getsockname()); track(c, 1)
lo = ahex(A4, '127.0.0.1')
# glibc's resolver sends its A and AAAA queries with one sendmmsg
msgs = [b'query-A', b'query-AAAA']
keep = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
vecs = [iovec(ctypes.cast(k, ctypes.c_void_p), len(m)) for k, m in zip(keep, msgs)]
mm = (mmsghdr * 2)()
for i in range(2):
    mm[i].hdr.iov = ctypes.pointer(vecs[i]); mm[i].hdr.iovlen = 1
assert libc.sendmmsg(c.fileno(), mm, 2, 0) == 2
for m in msgs: log(c, 'sendmmsg', m)
rbufs = [ctypes.create_string_buffer(64) for _ in range(2)]
names = [ctypes.create_string_buffer(16) for _ in range(2)]
rvecs = [iovec(ctypes.cast(rb, ctypes.c_void_p), 64) for rb in rbufs]
rm = (mmsghdr * 2)()
for i in range(2):
    rm[i].hdr.iov = ctypes.pointer(rvecs[i]); rm[i].hdr.iovlen = 1
    rm[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p); rm[i].hdr.namelen = 16
assert libc.recvmmsg(b.fileno(), rm, 2, 0, None) == 2
for i in range(2):
    log(b, 'recvmmsg', rbufs[i].raw[:rm[i].len], raddr=lo, rport=c.getsockname()[1], flags=2)
close(b); close(c)
done()
`);
    assertMatchesLog(run);
    assert.deepEqual(run.records.filter((r) => r.kind === L7Kind.DATA).map((r) => r.syscall),
      [L7Syscall.SENDMMSG, L7Syscall.SENDMMSG, L7Syscall.RECVMMSG, L7Syscall.RECVMMSG]);
  });

  it('sendmmsg past RF_L7_MAX_MMSG (8) messages: the first 8 captured, the rest counted (rf_l7_parse mmsg_over_limit), not left out silently', async (t) => {
    if (!rootOrSkip(t)) return;
    let over: bigint | undefined;
    const run = await runChild(t, String.raw`
mmsg_types()
go()
b = socket.socket(A4, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0))
c = socket.socket(A4, socket.SOCK_DGRAM); c.connect(b.getsockname())
msgs = [b'reply-%02d' % i for i in range(11)]
keep = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
vecs = [iovec(ctypes.cast(k, ctypes.c_void_p), len(m)) for k, m in zip(keep, msgs)]
mm = (mmsghdr * 11)()
for i in range(11):
    mm[i].hdr.iov = ctypes.pointer(vecs[i]); mm[i].hdr.iovlen = 1
assert libc.sendmmsg(c.fileno(), mm, 11, 0) == 11
b.close(); c.close()
done()
`, { afterChild: (s) => (over = s.mapCounters('rf_l7_parse')?.[10]) });
    const sent = run.records.filter((r) => r.kind === L7Kind.DATA && r.syscall === L7Syscall.SENDMMSG);
    assert.deepEqual(sent.map((r) => r.payload.toString()), Array.from({ length: 8 }, (_, i) => `reply-${String(i).padStart(2, '0')}`));
    assert.equal(over, 3n, 'the 3 messages past the 8th are counted (a loss reason of their own: kernel_losses)');
    assert.equal(run.drops[L7_CAPTURE_TYPE] ?? 0n, 0n, 'not also as capture drops');
  });
});

describe('l7.bpf.o: filters and accounting', () => {
  it('rf_filter_port keeps only connections with that local or remote port', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
other = socket.socket(); other.bind(('127.0.0.1', 0)); other.listen()
print(srv.getsockname()[1]); sys.stdout.flush()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
send(c, b'kept')
recv_exact(s, 4)
x = socket.create_connection(other.getsockname()); y, _ = other.accept()
x.sendall(b'filtered'); y.recv(8)
u = socket.socket(A4, socket.SOCK_DGRAM); u.sendto(b'dropped', ('127.0.0.1', 9))
x.close(); y.close(); u.close(); close(c); close(s); srv.close(); other.close()
done()
`, {
      globals: (pid, printed) => settings(pid, { port: Number(printed[0]) }),
    });
    assertMatchesLog(run);
  });

  it('rf_self_tgid: with no other filter, the runner\'s own traffic never appears, a child\'s does', async (t) => {
    if (!rootOrSkip(t)) return;
    // a TCP exchange inside this process, on a port the child also talks to
    const server = net.createServer((sock) => sock.on('data', (d) => sock.write(d)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const selfExchange = async (): Promise<void> => {
      const sock = net.connect(port, '127.0.0.1');
      await once(sock, 'connect');
      sock.write('runner-marker');
      await once(sock, 'data');
      sock.destroy();
    };
    const script = String.raw`
go()
c = socket.create_connection(('127.0.0.1', PORT)); track(c, 1)
send(c, b'child-marker')
recv_exact(c, 12)
close(c)
done()
`.replace('PORT', String(port));
    const unfiltered = (selfTgid: number) => () => ({ ...encodeSettings({ selfTgid }), ...encodeL7Settings(CAPTURE) });
    const run = await runChild(t, script, { globals: unfiltered(process.pid), whileAttached: selfExchange });
    assert.equal(run.records.filter((r) => r.tgid === process.pid).length, 0, 'nothing from the runner');
    assertMatchesLog({ ...run, records: run.records.filter((r) => r.tgid === run.pid) });

    // control: without rf_self_tgid the same exchanges do show the runner (both ends of its echo)
    const control = await runChild(t, script, { globals: unfiltered(0), whileAttached: selfExchange });
    const runner = control.records.filter((r) => r.tgid === process.pid && r.kind === L7Kind.DATA);
    const has = (role: number, dir: number, text: string): boolean => runner.some((r) =>
      r.role === role && r.direction === dir && Buffer.from(r.payload).toString() === text);
    assert.ok(has(L7Role.CLIENT, L7Direction.EGRESS, 'runner-marker'), 'the runner\'s client write');
    assert.ok(has(L7Role.SERVER, L7Direction.INGRESS, 'runner-marker'), 'the runner\'s server read');
    assert.ok(has(L7Role.SERVER, L7Direction.EGRESS, 'child-marker'), 'the runner echoing the child');
  });

  it('rf_filter_comm keeps the child by its command name; rf_filter_uid of another user drops it', async (t) => {
    if (!rootOrSkip(t)) return;
    const script = String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
send(c, b'GET / HTTP/1.1\r\n\r\n')
recv_exact(s, 18)
close(c); close(s); srv.close()
done()
`;
    let comm = '';
    const byComm = await runChild(t, script, {
      globals: (pid) => {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        return { ...encodeSettings({ comm, selfTgid: process.pid }), ...encodeL7Settings(CAPTURE) };
      },
    });
    assert.ok(byComm.records.every((r) => r.comm === comm), `only ${comm}`);
    assertMatchesLog({ ...byComm, records: byComm.records.filter((r) => r.tgid === byComm.pid) });

    const byUid = await runChild(t, script, { globals: (pid) => settings(pid, {}, { uid: 4242 }) });
    assert.equal(byUid.log.length, 4);
    assert.equal(byUid.records.length, 0, 'uid 4242 does nothing here');
  });

  it('a full ring: records that do not fit are counted in rf_drops[RF_EV_L7_CAPTURE]', async (t) => {
    if (!rootOrSkip(t)) return;
    // 4 KiB ring: a 128-byte header + 4096 payload bytes never fits, a close record does
    const run = await runChild(t, String.raw`
go()
a = socket.socket(A4, socket.SOCK_DGRAM); a.bind(('127.0.0.1', 0))
b = socket.socket(A4, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0))
for i in range(10):
    a.sendto(bytes([i]) * 5000, b.getsockname()); b.recv(8192)
a.close(); b.close()
done()
`, { session: { ringBytes: 4096 } });
    assert.equal(run.drops[L7_CAPTURE_TYPE], 20n, '10 sends + 10 receives dropped');
    assert.deepEqual(run.records.map((r) => r.kind), [L7Kind.CLOSE, L7Kind.CLOSE]);
    assert.deepEqual(run.records.map((r) => [r.offset, r.peer_offset]), [[50000, 0], [0, 50000]], 'totals count dropped records too');
  });
});

/** The collector's L7 globals (the protocol gate at its default), filtered on the child's tgid. */
const gated = (pid: number): Record<string, Buffer> =>
  ({ ...encodeSettings({ pid, selfTgid: process.pid }), ...encodeL7Settings(CAPTURE) });

/**
 * rf_l7_gate summed over CPUs, of this test's own session (by map name in a
 * newest-id bpftool lookup it was whichever l7.bpf.o loaded last on the host:
 * another test's collector made the gate count 0 once).
 */
function gateCounters(session: Session): number[] {
  const v = session.mapCounters('rf_l7_gate');
  assert.ok(v, 'rf_l7_gate is in the object');
  return [0, 1, 2].map((i) => Number(v[i] ?? 0n));
}

/** Marks what the gate keeps out: a TCP fd's data calls after its first `n`, and its close. */
function hideAfter(log: LogEntry[], fds: number[], n = L7_DEFAULT_DETECT_RECORDS): LogEntry[] {
  const seen = new Map<number, number>();
  return log.map((e) => {
    if (!fds.includes(e.fd)) return e;
    if (e.op === 'close') return { ...e, hidden: true };
    const k = (seen.get(e.fd) ?? 0) + 1;
    seen.set(e.fd, k);
    return k > n ? { ...e, hidden: true } : e;
  });
}

describe('l7.bpf.o: protocol gate (rf_l7_detect_records)', () => {
  it('a binary TCP protocol: its first rf_l7_detect_records data records, then nothing (no close record)', async (t) => {
    if (!rootOrSkip(t)) return;
    let gate: number[] = [];
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
for i in range(10):
    m = b'\x00\x00\x00\x10kafkaish' + bytes([i]) * 7
    send(c, m)
    assert recv_exact(s, len(m)) == m
    send(s, b'\x00\x00\x00\x04ack' + bytes([i]))
    recv_exact(c, 8)
close(c); close(s); srv.close()
done()
`, { globals: gated, afterChild: (session) => { gate = gateCounters(session); } });
    const fds = [...new Set(run.log.map((e) => e.fd))];
    assert.equal(fds.length, 2);
    const per = fds.map((fd) => run.records.filter((r) => r.fd === fd));
    for (const recs of per) {
      assert.equal(recs.length, L7_DEFAULT_DETECT_RECORDS, 'rf_l7_detect_records data records per connection');
      assert.ok(recs.every((r) => r.kind === L7Kind.DATA));
    }
    assertMatchesLog({ ...run, log: hideAfter(run.log, fds) });
    assert.equal(gate[L7_GATE.REJECTED_CONNS], 2, 'two rejected connections');
    assert.equal(gate[L7_GATE.ACCEPTED_CONNS], 0);
  });

  it('HTTP/1 keep-alive: recognised at its first request, every call captured on both sides', async (t) => {
    if (!rootOrSkip(t)) return;
    let gate: number[] = [];
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
for i in range(4):
    head = b'POST /items/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n' % i
    send(c, head); send(c, b'body')
    recv_exact(s, len(head)); recv_exact(s, 4)
    resp = b'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n'
    send(s, resp); send(s, b'ok')
    recv_exact(c, len(resp)); recv_exact(c, 2)
close(c); close(s); srv.close()
done()
`, { globals: gated, afterChild: (session) => { gate = gateCounters(session); } });
    assert.ok(run.log.length > 30);
    assertMatchesLog(run);
    assert.equal(gate[L7_GATE.ACCEPTED_CONNS], 2);
    assert.equal(gate[L7_GATE.REJECTED_CONNS], 0);
  });

  it('HTTP/2: the server writes its binary SETTINGS before it reads the preface; both sides captured in full', async (t) => {
    if (!rootOrSkip(t)) return;
    let gate: number[] = [];
    const run = await runChild(t, String.raw`
def frame(typ, flags, stream, payload=b''):
    return len(payload).to_bytes(3, 'big') + bytes([typ, flags]) + stream.to_bytes(4, 'big') + payload
PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
# server: SETTINGS first (binary, no signature), then it reads the client's preface
send(s, frame(4, 0, 0, b'\x00\x03\x00\x00\x00\x64'))
recv_exact(c, 15)
send(c, PREFACE + frame(4, 0, 0))
recv_exact(s, 24 + 9)
send(s, frame(4, 1, 0)); recv_exact(c, 9)     # SETTINGS ack
send(c, frame(4, 1, 0)); recv_exact(s, 9)
for sid in (1, 3, 5):
    h = frame(1, 5, sid, b'\x82\x86\x84\x41\x8a\xa0\xe4\x1d\x13\x9d\x09\xb8\xf0\x1e\x07')
    send(c, h); recv_exact(s, len(h))
    r = frame(1, 4, sid, b'\x88') + frame(0, 1, sid, b'hello')
    send(s, r); recv_exact(c, len(r))
close(c); close(s); srv.close()
done()
`, { globals: gated, afterChild: (session) => { gate = gateCounters(session); } });
    assertMatchesLog(run);
    assert.ok(run.records.filter((r) => r.kind === L7Kind.DATA).length >= 2 * 10);
    assert.equal(gate[L7_GATE.ACCEPTED_CONNS], 2, 'client at its preface write, server at its preface read');
    assert.equal(gate[L7_GATE.REJECTED_CONNS], 0);
  });

  it('UDP: only port 53 or a DNS-like header; TCP on port 53 is accepted whatever its bytes', async (t) => {
    if (!rootOrSkip(t)) return;
    let gate: number[] = [];
    const run = await runChild(t, String.raw`
go()
lo = ahex(A4, '127.0.0.1')
a = socket.socket(A4, socket.SOCK_DGRAM); a.bind(('127.0.0.1', 0)); track(a, 0, flags=1)
b = socket.socket(A4, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0)); track(b, 0, flags=1)
pa, pb = a.getsockname()[1], b.getsockname()[1]
# not DNS, no port 53: neither end captured (the bytes still count in the totals)
J = b'\x01\x02\x03\x04 not dns, just bytes'
a.sendto(J, b.getsockname()); log(a, 'sendto', J, raddr=lo, rport=pb, flags=2, hidden=True)
d = b.recv(512); log(b, 'recvfrom', d, hidden=True)
# a DNS query header (QDCOUNT 1, opcode 0) on another port: captured
Q = bytes.fromhex('123401000001000000000000076578616d706c6504746573740000010001')
a.sendto(Q, b.getsockname()); log(a, 'sendto', Q, raddr=lo, rport=pb, flags=2)
d, _ = b.recvfrom(512); log(b, 'recvfrom', d, raddr=lo, rport=pa, flags=2)
# opcode 2 (STATUS) and QDCOUNT 2: not DNS-like
for h in ('123410000001000000000000', '123401000002000000000000'):
    x = bytes.fromhex(h)
    a.sendto(x, b.getsockname()); log(a, 'sendto', x, raddr=lo, rport=pb, flags=2, hidden=True)
    d = b.recv(512); log(b, 'recvfrom', d, hidden=True)
# port 53: captured whatever the bytes
d53 = socket.socket(A4, socket.SOCK_DGRAM)
for host in ('127.0.0.1', '127.0.0.153', '127.0.0.253'):
    try:
        d53.bind((host, 53)); break
    except OSError:
        pass
track(d53, 0, flags=1)
c = socket.socket(A4, socket.SOCK_DGRAM); c.connect(d53.getsockname()); track(c, 1)
send(c, J)
d, peer = d53.recvfrom(512); log(d53, 'recvfrom', d, raddr=lo, rport=c.getsockname()[1], flags=2)
# TCP port 53: accepted at its first record, binary bytes and all
t53 = socket.socket(); t53.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t53.bind((d53.getsockname()[0], 53)); t53.listen()
tc = socket.create_connection(t53.getsockname()); track(tc, 1)
ts, _ = t53.accept(); track(ts, 2)
for i in range(6):
    send(tc, b'\x00\x05zone' + bytes([i])); recv_exact(ts, 7)
close(a); close(b); close(d53); close(c); close(tc); close(ts); t53.close()
done()
`, { globals: gated, afterChild: (session) => { gate = gateCounters(session); } });
    assertMatchesLog(run);
    assert.ok(!run.records.some((r) => Buffer.from(r.payload).includes(Buffer.from('not dns')) && r.lport !== 53 && r.rport !== 53));
    assert.equal(gate[L7_GATE.UDP_SKIPPED], 6, '3 datagrams, each end');
    assert.equal(gate[L7_GATE.ACCEPTED_CONNS], 2, 'the TCP port 53 connection, both ends');
  });

  it('rf_l7_detect_records = 0 turns the gate off: the binary protocol is captured in full', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, String.raw`
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
go()
c = socket.create_connection(srv.getsockname()); track(c, 1)
s, _ = srv.accept(); track(s, 2)
for i in range(10):
    send(c, b'\x00\x00\x00\x10kafkaish' + bytes([i]) * 7); recv_exact(s, 19)
close(c); close(s); srv.close()
done()
`, { globals: (pid) => settings(pid, { detectRecords: 0 }) });
    assertMatchesLog(run);
    assert.equal(run.records.length, 22);
  });
});
