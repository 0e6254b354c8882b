/**
 * bpf/l7.bpf.c's in-kernel HTTP/1 (issue 10) against the real kernel: a
 * connection the gate accepts by an HTTP/1 start line is framed and paired in
 * BPF and reported as ONE exchange record (struct rf_l7_exchange + request
 * head + response head) per request and observed end, and no capture record.
 * Real clients and servers (python sockets, node:http, curl against python's
 * http.server); each record's seq, status, body sizes, heads, outcome and the
 * order of its four edge times are checked, and with rf_l7_dual = 1 the
 * exchanges equal what tracker.ts (user space) builds from the capture
 * records of the same run.
 *
 * The exchange struct is decoded here by its offsets in bpf/events.h.
 */
import { before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Session, forEachRecord } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { L7_CAPTURE_TYPE, decodeL7Capture, type L7Capture } from '../../collector/l7/capture.ts';
import { L7Tracker } from '../../collector/l7/tracker.ts';
import { ROOT, startReady, rootOrSkip } from './helpers.ts';

const L7_OBJ = `${ROOT}bpf/.output/l7.bpf.o`;
/** RF_EV_L7_EXCHANGE */
const EXCHANGE_TYPE = 10;
const EXCHANGE_SIZE = 176;
/** enum rf_l7_outcome */
const OUT = { RESPONDED: 0, CLOSED: 1, RESP_ONLY: 2, LOST: 3, REQ_ONLY: 4 } as const;
/** enum rf_l7_parse_counter: the in-kernel losses and give-ups (all must stay 0 on clean traffic) */
const P_LOSSES = [1, 2, 3, 7, 8, 9];
let PYTHON = 'python3';

interface Exchange {
  tgid: number;
  conn_id: bigint;
  req_start_ns: bigint;
  req_end_ns: bigint;
  resp_start_ns: bigint;
  resp_end_ns: bigint;
  req_body_bytes: bigint;
  resp_body_bytes: bigint;
  seq: number;
  req_tgid: number;
  fd: number;
  lport: number;
  rport: number;
  status: number;
  app: number;
  role: number;
  outcome: number;
  flags: number;
  req_head: string;
  resp_head: string;
}

function decodeExchange(b: Buffer, off: number, len: number): Exchange {
  assert.ok(len >= EXCHANGE_SIZE, `exchange record of ${len} bytes`);
  const reqLen = b.readUInt16LE(off + 160);
  const respLen = b.readUInt16LE(off + 162);
  assert.equal(len, EXCHANGE_SIZE + reqLen + respLen, 'record = struct + both heads');
  const u64 = (o: number): bigint => b.readBigUInt64LE(off + o);
  return {
    tgid: b.readUInt32LE(off + 8),
    conn_id: u64(48),
    req_start_ns: u64(56),
    req_end_ns: u64(64),
    resp_start_ns: u64(72),
    resp_end_ns: u64(80),
    req_body_bytes: u64(88),
    resp_body_bytes: u64(96),
    seq: b.readUInt32LE(off + 136),
    req_tgid: b.readUInt32LE(off + 144),
    fd: b.readUInt32LE(off + 148),
    lport: b.readUInt16LE(off + 152),
    rport: b.readUInt16LE(off + 154),
    status: b.readUInt16LE(off + 158),
    app: b[off + 164]!,
    role: b[off + 165]!,
    outcome: b[off + 167]!,
    flags: b[off + 168]!,
    req_head: b.toString('latin1', off + EXCHANGE_SIZE, off + EXCHANGE_SIZE + reqLen),
    resp_head: b.toString('latin1', off + EXCHANGE_SIZE + reqLen, off + EXCHANGE_SIZE + reqLen + respLen),
  };
}

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
});

interface Run {
  exchanges: Exchange[];
  captures: L7Capture[];
  parse: bigint[];
  drops: bigint[];
  printed: string[];
}

interface RunOptions {
  /** rf_l7_dual: capture records too */
  dual?: boolean;
  kernelParse?: boolean;
  /** filter on this port instead of the child's tgid (several processes) */
  port?: number;
  /** the port is the first line the child prints before "ready" */
  portFromChild?: boolean;
  headBytes?: number;
}

function l7Globals(pid: number, o: RunOptions): Record<string, Buffer> {
  const port = Buffer.alloc(2);
  port.writeUInt16LE(o.port ?? 0);
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  return {
    ...encodeSettings({ pid: o.port === undefined ? pid : 0, selfTgid: process.pid }),
    rf_l7_capture_bytes: u32(4096),
    rf_filter_port: port,
    rf_l7_detect_records: Buffer.from([4]),
    rf_l7_kernel_parse: Buffer.from([o.kernelParse === false ? 0 : 1]),
    rf_l7_dual: Buffer.from([o.dual ? 1 : 0]),
    rf_l7_head_bytes: u32(o.headBytes ?? 512),
  };
}

/**
 * Starts cmd, waits for its "ready" line, attaches l7.bpf.o, releases it
 * (a byte on stdin) and collects every record until it exits.
 */
async function run(t: TestContext, cmd: string, args: string[], o: RunOptions = {}): Promise<Run> {
  const { child, exited, lines: printed } = await startReady(t, cmd, args);
  const session = new Session({ ringBytes: 16 << 20 });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, l7Globals(child.pid!, o.portFromChild ? { ...o, port: Number(printed[0]) } : o));
  const exchanges: Exchange[] = [];
  const captures: L7Capture[] = [];
  let bad = '';
  session.start((batch) => {
    forEachRecord(batch, (off, len) => {
      if (batch[off] === EXCHANGE_TYPE) {
        try {
          exchanges.push(decodeExchange(batch, off, len));
        } catch (e) {
          bad ||= String(e);
        }
      } else if (batch[off] === L7_CAPTURE_TYPE) {
        const r = decodeL7Capture(batch, off, len);
        if (r) captures.push({ ...r, laddr: Buffer.from(r.laddr), raddr: Buffer.from(r.raddr), payload: Buffer.from(r.payload) });
      } else {
        bad ||= `record of type ${batch[off]}`;
      }
    });
  });
  child.stdin!.end('g');
  const [code] = await exited;
  // the server side of a script may still be closing: let the last records land
  await new Promise((r) => setTimeout(r, 200));
  const parse = session.mapCounters('rf_l7_parse') ?? [];
  await session.stop();
  assert.equal(code, 0, 'the child succeeded');
  assert.equal(bad, '', 'every record decodes');
  return { exchanges, captures, parse, drops: session.drops(), printed };
}

const PY_PRELUDE = String.raw`
import socket, sys, threading, time
def go():
    sys.stdout.write('ready\n'); sys.stdout.flush(); sys.stdin.read(1)
def pair():
    """A listening socket, a connected client and the accepted server end (one process: both ends observed)."""
    ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(8)
    c = socket.create_connection(ls.getsockname())
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s, _ = ls.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ls, c, s
def recv_until(s, n):
    got = b''
    while len(got) < n:
        d = s.recv(n - len(got))
        assert d, 'EOF'
        got += d
    return got
`;

/** Edge times in order, as both ends of a span need them. */
function assertOrdered(x: Exchange, what: string): void {
  assert.ok(x.req_start_ns > 0n, `${what}: req_start`);
  assert.ok(x.req_start_ns <= x.req_end_ns, `${what}: req_start ${x.req_start_ns} <= req_end ${x.req_end_ns}`);
  assert.ok(x.req_end_ns <= x.resp_start_ns, `${what}: req_end ${x.req_end_ns} <= resp_start ${x.resp_start_ns}`);
  assert.ok(x.resp_start_ns <= x.resp_end_ns, `${what}: resp_start <= resp_end`);
}

function assertClean(r: Run): void {
  assert.deepEqual(P_LOSSES.map((i) => r.parse[i] ?? 0n), P_LOSSES.map(() => 0n), `no in-kernel losses: ${r.parse.join(',')}`);
  assert.equal(r.drops[EXCHANGE_TYPE] ?? 0n, 0n, 'no exchange record dropped');
}

/** Exchanges by observed end: [client side, server side], each sorted by seq. */
function byRole(xs: Exchange[]): [Exchange[], Exchange[]] {
  const sort = (a: Exchange[]): Exchange[] => a.sort((p, q) => p.seq - q.seq);
  return [sort(xs.filter((x) => x.role === 1)), sort(xs.filter((x) => x.role === 2))];
}

describe('l7.bpf.o: HTTP/1 exchanges in the kernel', () => {
  it('3 pipelined requests in one write, answered in one write: 3 exchanges per end, seq 0-2, bodies, heads; no capture record', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
reqs = b'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcDELETE /3 HTTP/1.1\r\n\r\n'
c.sendall(reqs)
recv_until(s, len(reqs))
resps = b'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n'
s.sendall(resps)
recv_until(c, len(resps))
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    assert.equal(r.captures.length, 0, 'no capture record for an HTTP/1 connection');
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.req_body_bytes), Number(x.resp_body_bytes), x.outcome, x.app]),
        [[0, 200, 0, 1, OUT.RESPONDED, 1], [1, 201, 3, 2, OUT.RESPONDED, 1], [2, 204, 0, 0, OUT.RESPONDED, 1]], `${side} exchanges`);
      assert.deepEqual(xs.map((x) => x.req_head), ['GET /1 HTTP/1.1\r\nHost: a\r\n\r\n', 'POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\n', 'DELETE /3 HTTP/1.1\r\n\r\n']);
      assert.deepEqual(xs.map((x) => x.resp_head), ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n',
        'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n', 'HTTP/1.1 204 No Content\r\n\r\n']);
      xs.forEach((x) => assertOrdered(x, `${side} seq ${x.seq}`));
      assert.equal(new Set(xs.map((x) => x.conn_id)).size, 1, 'one connection');
    }
  });

  it('a request head split at every byte (a write per piece, TCP_NODELAY): one exchange per request with the whole head', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
req = b'GET /split HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok'
resp = b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'
# whole first: the gate recognises a connection by its first bytes (a 1-byte first write would stay RAW)
c.sendall(req); recv_until(s, len(req)); s.sendall(resp); recv_until(c, len(resp))
for k in range(1, len(req)):
    c.sendall(req[:k]); time.sleep(0.0005); c.sendall(req[k:])
    recv_until(s, len(req))
    s.sendall(resp[:k % len(resp)]); time.sleep(0.0005); s.sendall(resp[k % len(resp):])
    recv_until(c, len(resp))
print(len(req))
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    assert.equal(r.captures.length, 0);
    const n = Number(r.printed.at(-1));
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.equal(xs.length, n, `${side}: one exchange per request`);
      xs.forEach((x, k) => {
        assert.equal(x.seq, k);
        assert.equal(x.status, 200);
        assert.equal(x.req_head, 'GET /split HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n', `${side} ${k}: request head`);
        assert.equal(x.resp_head, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', `${side} ${k}: response head`);
        assert.deepEqual([x.req_body_bytes, x.resp_body_bytes], [2n, 5n]);
        assert.equal(x.outcome, OUT.RESPONDED);
        assertOrdered(x, `${side} ${k}`);
      });
    }
  });

  it('HEAD, 204, 304 and 100-continue on one keep-alive connection', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
def ex(req, resps, body=b''):
    c.sendall(req); recv_until(s, len(req))
    for p in resps:
        s.sendall(p); recv_until(c, len(p))
    if body:
        c.sendall(body); recv_until(s, len(body))
ex(b'HEAD /f HTTP/1.1\r\n\r\n', [b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n'])
ex(b'DELETE /x HTTP/1.1\r\n\r\n', [b'HTTP/1.1 204 No Content\r\n\r\n'])
ex(b'GET /c HTTP/1.1\r\nIf-None-Match: "x"\r\n\r\n', [b'HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n'])
# 100-continue: the head, the interim answer, the body, the final answer
req = b'POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n'
c.sendall(req); recv_until(s, len(req))
s.sendall(b'HTTP/1.1 100 Continue\r\n\r\n'); recv_until(c, 25)
c.sendall(b'data'); recv_until(s, 4)
fin = b'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok'
s.sendall(fin); recv_until(c, len(fin))
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    assert.equal(r.captures.length, 0);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.req_body_bytes), Number(x.resp_body_bytes), x.outcome]),
        [[0, 200, 0, 0, 0], [1, 204, 0, 0, 0], [2, 304, 0, 0, 0], [3, 201, 4, 2, 0]], `${side}`);
      // the final response's head, not the 100's; its start after the request body
      assert.equal(xs[3]!.resp_head, 'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n');
      xs.forEach((x) => assertOrdered(x, `${side} seq ${x.seq}`));
    }
  });

  it('requests unanswered at close() go out CLOSED; a response read until close ends at the close', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
req = b'GET /a HTTP/1.0\r\n\r\n'
c.sendall(req); recv_until(s, len(req))
s.sendall(b'HTTP/1.0 200 OK\r\n\r\nuntil'); s.sendall(b' close'); s.close()
got = b''
while True:
    d = c.recv(100)
    if not d: break
    got += d
assert got.endswith(b'until close')
c.close()
# a connection whose 3 pipelined requests get no answer
ls2, c2, s2 = pair()
three = b'GET /x HTTP/1.1\r\n\r\n' * 3
c2.sendall(three); recv_until(s2, len(three))
c2.close(); s2.close(); ls.close(); ls2.close()
# deeper than a fixed loop would go: 20 unanswered
ls3, c3, s3 = pair()
many = b'GET /m HTTP/1.1\r\n\r\n' * 20
c3.sendall(many); recv_until(s3, len(many))
c3.close(); s3.close(); ls3.close()
`]);
    assertClean(r);
    assert.equal(r.captures.length, 0);
    const ids = [...new Set(r.exchanges.map((x) => x.conn_id))];
    const first = r.exchanges.filter((x) => x.outcome === OUT.RESPONDED);
    assert.equal(first.length, 2, 'the until-close exchange, once per end');
    for (const x of first) {
      assert.equal(x.status, 200);
      assert.equal(x.resp_body_bytes, 11n);
      assertOrdered(x, 'until close');
    }
    const deep = r.exchanges.filter((x) => x.outcome === OUT.CLOSED && x.req_head.startsWith('GET /m '));
    assert.deepEqual(byRole(deep).map((xs) => xs.map((x) => x.seq)), [0, 1].map(() => [...Array(20).keys()]), '20 CLOSED per end');
    const closed = r.exchanges.filter((x) => x.outcome === OUT.CLOSED && !x.req_head.startsWith('GET /m '));
    assert.equal(closed.length, 6, `3 CLOSED per end (${ids.length} connections)`);
    for (const x of closed) assert.deepEqual([x.status, x.resp_start_ns, x.resp_end_ns, x.req_head], [0, 0n, 0n, 'GET /x HTTP/1.1\r\n\r\n']);
    assert.deepEqual(byRole(closed).map((xs) => xs.map((x) => x.seq)), [[0, 1, 2], [0, 1, 2]]);
  });

  it('node:http keep-alive, 3 requests on one connection, rf_l7_dual = 1: the exchanges equal what tracker.ts builds from the capture records', async (t) => {
    if (!rootOrSkip(t)) return;
    const script = String.raw`
const http = require('node:http');
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => {
    if (req.url === '/chunked') { res.write('abc'); res.write('defg'); res.end(); return; }
    res.setHeader('Content-Length', String(n + 2)); res.end('x'.repeat(n + 2));
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('ready\n');
  process.stdin.once('data', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const { port } = server.address();
    const one = (method, path, body) => new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, agent }, (res) => {
        res.resume(); res.on('end', () => resolve(res.statusCode));
      });
      req.on('error', reject);
      req.end(body);
    });
    await one('GET', '/a');
    await one('POST', '/b', 'hello world');
    await one('GET', '/chunked');
    agent.destroy();
    server.close();
  });
});
`;
    const r = await run(t, process.execPath, ['-e', script], { dual: true });
    assertClean(r);
    assert.ok(r.captures.length > 0, 'dual: capture records too');
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.req_body_bytes), Number(x.resp_body_bytes), x.outcome]),
        [[0, 200, 0, 2, 0], [1, 200, 11, 13, 0], [2, 200, 0, 7, 0]], side);
      assert.equal(new Set(xs.map((x) => x.conn_id)).size, 1, `${side}: one connection`);
      assert.match(xs[1]!.req_head, /^POST \/b HTTP\/1\.1\r\n/);
      assert.match(xs[2]!.resp_head, /^HTTP\/1\.1 200 OK\r\n[^]*Transfer-Encoding: chunked\r\n/i);
      assert.ok(xs[2]!.resp_head.endsWith('\r\n\r\n'), 'the whole response head');
      xs.forEach((x) => assertOrdered(x, `${side} seq ${x.seq}`));
    }
    // the differential: user space's parse of the same syscalls gives the same exchanges, edge times included
    const tracker = new L7Tracker();
    const msgs = [...r.captures.flatMap((c) => tracker.feed(c)), ...tracker.flushAll(0n)];
    for (const x of r.exchanges) {
      const of = (kind: string) => msgs.find((m) => m.ctx.conn_id === x.conn_id && m.msg.kind === kind && m.msg.stream_id === x.seq)?.msg;
      const q = of('REQUEST');
      const a = of('RESPONSE');
      assert.ok(q && a, `tracker has both messages of conn ${x.conn_id} seq ${x.seq}`);
      assert.deepEqual(
        [x.req_start_ns, x.req_end_ns, x.resp_start_ns, x.resp_end_ns, x.status, x.req_body_bytes, x.resp_body_bytes],
        [q.start_ns, q.end_ns, a.start_ns, a.end_ns, a.status, BigInt(q.body_bytes), BigInt(a.body_bytes)],
        `conn ${x.conn_id} seq ${x.seq}: kernel exchange vs tracker.ts`);
    }
    assert.equal(msgs.length, 2 * r.exchanges.length, 'no message the kernel did not report');
  });

  it('curl against python http.server (HTTP/1.0, body until close), filtered by port: one exchange per end', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', String.raw`
import http.server, socketserver, subprocess, sys, threading
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        body = b'y' * 1234
        self.send_response(200); self.send_header('Content-Type', 'text/plain'); self.end_headers()
        self.wfile.write(body[:1000]); self.wfile.flush(); self.wfile.write(body[1000:])
    def log_message(self, *a): pass
srv = socketserver.TCPServer(('127.0.0.1', 0), H)
port = srv.server_address[1]
threading.Thread(target=srv.serve_forever, daemon=True).start()
print(port); sys.stdout.write('ready\n'); sys.stdout.flush(); sys.stdin.read(1)
out = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', 'http://127.0.0.1:%d/f' % port], capture_output=True, check=True).stdout
assert out == b'200 1234', out
srv.shutdown(); srv.server_close()
`], { portFromChild: true });
    assertClean(r);
    assert.equal(r.captures.length, 0);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['curl', client], ['http.server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.resp_body_bytes), x.outcome]), [[0, 200, 1234, 0]], side);
      assert.match(xs[0]!.req_head, /^GET \/f HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nUser-Agent: curl/);
      assert.match(xs[0]!.resp_head, /^HTTP\/1\.0 200 OK\r\n/);
      assertOrdered(xs[0]!, side);
    }
  });

  it('a bad Content-Length: the exchange goes out LOST and counted; the next request, in a later write, starts again RESYNCED', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
def ex(req, resp):
    c.sendall(req); recv_until(s, len(req)); s.sendall(resp); recv_until(c, len(resp))
ex(b'GET /ok HTTP/1.1\r\n\r\n', b'HTTP/1.1 204 No Content\r\n\r\n')
ex(b'POST /bad HTTP/1.1\r\nContent-Length: 1x\r\n\r\n', b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
ex(b'GET /again HTTP/1.1\r\n\r\n', b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
c.close(); s.close(); ls.close()
`]);
    // both ends gave up on the bad request, and both found the next start line
    assert.equal(r.parse[3], 2n, `h1_bad_framing: ${r.parse.join(',')}`);
    assert.equal(r.parse[5], 2n, 'h1_resynced');
    assert.equal(r.captures.length, 0);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, x.outcome, x.flags & 8]),
        [[0, 204, OUT.RESPONDED, 0], [1, 400, OUT.LOST, 0], [2, 200, OUT.RESPONDED, 8]], side);
      assert.equal(xs[1]!.req_head, 'POST /bad HTTP/1.1\r\nContent-Length: 1x\r\n\r\n', `${side}: what was known of the lost request`);
    }
  });

  it('a body that ends past the capture window, then a pipelined response in the same call: the window starts after the body', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
reqs = b'GET /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n'
c.sendall(reqs); recv_until(s, len(reqs))
head = b'HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n'
second = b'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok'
s.sendall(head + b'b' * 1000); recv_until(c, len(head) + 1000)
# one write and (all queued before it) one read: the body's last 9000 bytes, then the next response
s.sendall(b'b' * 9000 + second)
time.sleep(0.1)
got = c.recv(65536)
assert len(got) == 9000 + len(second), len(got)
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.resp_body_bytes), x.outcome]), [[0, 200, 10000, 0], [1, 201, 2, 0]], side);
      assert.equal(xs[1]!.resp_head, 'HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n');
    }
  });

  it('pipelined responses with bodies larger than the window in one write and one read: the window is refilled at each head', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
reqs = b'GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n'
c.sendall(reqs); recv_until(s, len(reqs))
def resp(n):
    return b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % n + b'z' * n
out = resp(6000) + resp(9000) + resp(3)
s.sendall(out)
time.sleep(0.1)
got = c.recv(65536)
assert len(got) == len(out), len(got)
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, Number(x.resp_body_bytes), x.outcome]), [[0, 200, 6000, 0], [1, 200, 9000, 0], [2, 200, 3, 0]], side);
      assert.deepEqual(xs.map((x) => x.resp_head), [6000, 9000, 3].map((n) => `HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`));
    }
  });

  it('a connection set up before loading: MIDSTREAM, and the side that sends the requests is the CLIENT', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
ls, c, s = pair()
def ex(path):
    req = b'GET %s HTTP/1.1\r\n\r\n' % path
    c.sendall(req); recv_until(s, len(req)); s.sendall(b'HTTP/1.1 204 No Content\r\n\r\n'); recv_until(c, 27)
ex(b'/before')
go()
ex(b'/after/1'); ex(b'/after/2')
c.close(); s.close(); ls.close()
`]);
    assertClean(r);
    assert.equal(r.captures.length, 0);
    const [client, server] = byRole(r.exchanges);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.seq, x.status, x.flags & 16, x.req_head]),
        [[0, 204, 16, 'GET /after/1 HTTP/1.1\r\n\r\n'], [1, 204, 16, 'GET /after/2 HTTP/1.1\r\n\r\n']], side);
    }
    assert.notEqual(client[0]!.fd, server[0]!.fd, 'the two ends');
  });

  it('rf_l7_kernel_parse = 0: everything stays capture records, as before', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', PY_PRELUDE + String.raw`
go()
ls, c, s = pair()
c.sendall(b'GET / HTTP/1.1\r\n\r\n'); recv_until(s, 18)
s.sendall(b'HTTP/1.1 204 No Content\r\n\r\n'); recv_until(c, 27)
c.close(); s.close(); ls.close()
`], { kernelParse: false });
    assert.equal(r.exchanges.length, 0);
    assert.equal(r.captures.length, 6, '4 data records and 2 close records');
  });
});
