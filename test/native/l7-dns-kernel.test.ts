/**
 * DNS over UDP paired in the kernel (issue 10, design slice 3: bpf/l7_dns.h)
 * against the real kernel and real parts: dig and glibc's getaddrinfo
 * against dnsmasq, a python responder that ignores the first query, a
 * query nobody answers (the sweep, Session.l7Claim), a 10-message sendmmsg.
 * Each lookup must come out as ONE exchange record (app DNS, protocol 17,
 * seq = the DNS id, status = RCODE) per observed end, and no capture
 * record; the records go through the collector's decoder
 * (collector/l7/exchange.ts) to the same DNS fields the capture path gives.
 *
 * Each test uses its own loopback address (other tests may run dnsmasq on
 * port 53 at the same time; the session filters on port 53 only) and keeps
 * only the records that name it.
 */
import { before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { Session, forEachRecord } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { L7Kind, L7_CAPTURE_TYPE, decodeL7Capture } from '../../collector/l7/capture.ts';
import { L7App, L7Outcome, L7_EXCHANGE_TYPE, L7_PARSE, decodeL7Exchange, exchangeMessages, type L7Exchange } from '../../collector/l7/exchange.ts';
import { formatInet } from '../../collector/events/inet.ts';
import { ROOT, sleep, startReady, rootOrSkip } from './helpers.ts';

/** RINGFLOW_TEST_L7_OBJ: an object built elsewhere (e.g. a private tree while the shared one is being edited). */
const L7_OBJ = process.env.RINGFLOW_TEST_L7_OBJ ?? `${ROOT}bpf/.output/l7.bpf.o`;
let PYTHON = 'python3';
/** A loopback address of this test process: octet 3 picks the test, octet 4 the process. */
const addr = (k: number): string => `127.${80 + k}.${(process.pid % 200) + 20}.${(process.pid >> 8) % 250 + 2}`;

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs();
  if (!process.env.RINGFLOW_TEST_L7_OBJ) execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
});

/** An exchange record, copied out of the ring's batch. */
type X = L7Exchange & { local: string; remote: string };

interface Run {
  exchanges: X[];
  /** capture records: addresses, payload length, close or data */
  captures: { local: string; remote: string; lport: number; rport: number; len: number; close: boolean }[];
  parse: bigint[];
  drops: bigint[];
  printed: string[];
  session: Session;
  /** what the sweep claimed (sweepHandoverNs) */
  claimed: X[];
}

interface RunOptions {
  /** filter on port 53 instead of the child's tgid (dig, dnsmasq, several processes) */
  dnsPort?: boolean;
  kernelParse?: boolean;
  /** keep the session until the caller stops it (to sweep) */
  keep?: boolean;
  /** sweep rf_l7_pending every 100 ms with this hand-over, as the collector does every second */
  sweepHandoverNs?: number;
}

function globals(pid: number, o: RunOptions): Record<string, Buffer> {
  const port = Buffer.alloc(2);
  port.writeUInt16LE(o.dnsPort ? 53 : 0);
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  return {
    ...encodeSettings({ pid: o.dnsPort ? 0 : pid, selfTgid: process.pid }),
    rf_l7_capture_bytes: u32(4096),
    rf_filter_port: port,
    rf_l7_detect_records: Buffer.from([4]),
    rf_l7_kernel_parse: Buffer.from([o.kernelParse === false ? 0 : 1]),
    rf_l7_dual: Buffer.from([0]),
    rf_l7_head_bytes: u32(512),
  };
}

function copyExchange(batch: Buffer, off: number, len: number): X | null {
  const own = Buffer.from(batch.subarray(off, off + len));
  const x = decodeL7Exchange(own, 0, own.length);
  if (!x) return null;
  return { ...x, local: formatInet(x.laddr, 0, x.family), remote: formatInet(x.raddr, 0, x.family) };
}

/**
 * Starts cmd, waits for its "ready" line, attaches l7.bpf.o, releases it
 * (a byte on stdin) and collects every record until it exits.
 */
async function run(t: TestContext, cmd: string, args: string[], o: RunOptions = {}): Promise<Run> {
  const { child, exited, lines: printed } = await startReady(t, cmd, args);
  const session = new Session({ ringBytes: 16 << 20 });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, globals(child.pid!, o));
  const exchanges: X[] = [];
  const captures: Run['captures'] = [];
  let bad = '';
  session.start((batch) => {
    forEachRecord(batch, (off, len) => {
      if (batch[off] === L7_EXCHANGE_TYPE) {
        const x = copyExchange(batch, off, len);
        if (x) exchanges.push(x);
        else bad ||= 'an exchange record that does not decode';
      } else if (batch[off] === L7_CAPTURE_TYPE) {
        const r = decodeL7Capture(batch, off, len);
        if (r) {
          captures.push({ local: formatInet(r.laddr, 0, r.family), remote: formatInet(r.raddr, 0, r.family), lport: r.lport, rport: r.rport, len: r.captured_len, close: r.kind === L7Kind.CLOSE });
        }
      }
    });
  });
  const claimed: X[] = [];
  const sweep = o.sweepHandoverNs === undefined ? undefined : setInterval(() => {
    const b = session.l7Claim(o.sweepHandoverNs!, 30_000_000_000);
    if (b) forEachRecord(b, (off, len) => {
      const x = copyExchange(b, off, len);
      if (x) claimed.push(x);
    });
  }, 100);
  t.after(() => clearInterval(sweep));
  child.stdin!.end('g');
  const [code] = await exited;
  await sleep(200); // the last records land
  clearInterval(sweep);
  const parse = session.mapCounters('rf_l7_parse') ?? [];
  if (!o.keep) await session.stop();
  assert.equal(code, 0, 'the child succeeded');
  assert.equal(bad, '', 'every record decodes');
  return { exchanges, captures, parse, drops: session.drops(), printed, session, claimed };
}

/** Starts dnsmasq on ip:53 answering svc.ringflow.test with 10.1.2.3 and nothing else in ringflow.test. */
async function dnsmasq(t: TestContext, ip: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-dns-kernel-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const d = spawn('dnsmasq', [
    '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll', `--pid-file=${path.join(dir, 'pid')}`,
    `--listen-address=${ip}`, '--bind-interfaces', '--port=53',
    '--local=/ringflow.test/', '--address=/svc.ringflow.test/10.1.2.3',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  d.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  t.after(() => d.kill('SIGTERM'));
  // ready when it answers
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('dig', [`@${ip}`, '+short', '+tries=1', '+time=1', 'svc.ringflow.test', 'A'], { encoding: 'utf8' });
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`dnsmasq on ${ip} did not answer: ${err}`);
}

/** The records of one end: client (rport 53 to ip) or server (lport 53 on ip). */
function ends(xs: X[], ip: string): [X[], X[]] {
  return [xs.filter((x) => x.remote === ip && x.rport === 53), xs.filter((x) => x.local === ip && x.lport === 53)];
}

function fields(x: X): unknown[] {
  const { messages, unreported } = exchangeMessages(x, { capturedHeaders: [] } as never);
  assert.deepEqual(unreported, [], 'every message of the exchange decodes');
  return messages.map((m) => [m.kind, m.dns_name, m.dns_type, m.dns_rcode, m.dns_answers, m.stream_id]);
}

describe('l7.bpf.o: DNS over UDP in the kernel', () => {
  it('dig against dnsmasq: ONE exchange per lookup per end, NXDOMAIN as rcode 3, no capture record', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(0);
    await dnsmasq(t, ip);
    const r = await run(t, 'bash', ['-c', `echo ready; read -n 1; dig @${ip} +tries=1 +time=2 svc.ringflow.test A >/dev/null && dig @${ip} +tries=1 +time=2 nope.ringflow.test A >/dev/null`], { dnsPort: true });
    const [client, server] = ends(r.exchanges, ip);
    // not even a close record: user space reads nothing from a UDP one, and glibc and dig open sockets per lookup
    assert.deepEqual(r.captures.filter((c) => c.local === ip || c.remote === ip), [], 'no capture record for DNS on port 53');
    for (const [side, xs, role] of [['dig', client, 1], ['dnsmasq', server, 2]] as const) {
      assert.equal(xs.length, 2, `${side}: one exchange per lookup`);
      const byName = new Map(xs.map((x) => [(fields(x)[0] as unknown[])[1] as string, x]));
      const ok = byName.get('svc.ringflow.test')!;
      const nx = byName.get('nope.ringflow.test')!;
      assert.ok(ok && nx, `${side}: both names`);
      for (const x of xs) {
        assert.equal(x.app, L7App.DNS);
        assert.equal(x.protocol, 17);
        assert.equal(x.role, role, `${side}: role`);
        assert.equal(x.outcome, L7Outcome.RESPONDED);
        assert.equal(x.retries, 0);
        assert.equal(x.seq, (x.req_head[0]! << 8) | x.req_head[1]!, 'seq = the DNS id');
        assert.equal(x.req_body_bytes, x.req_head.length, 'the query whole in the head');
        assert.equal(x.resp_body_bytes, x.resp_head.length, 'the answer whole in the head');
        assert.ok(x.req_start_ns > 0n && x.req_start_ns <= x.resp_start_ns && x.resp_start_ns <= x.resp_end_ns, `${side}: edges in order`);
      }
      assert.equal(ok.status, 0);
      assert.equal(nx.status, 3, 'NXDOMAIN');
      assert.deepEqual(fields(ok), [['REQUEST', 'svc.ringflow.test', 'A', null, 0, ok.seq], ['RESPONSE', 'svc.ringflow.test', 'A', 'NOERROR', 1, ok.seq]]);
      assert.deepEqual(fields(nx), [['REQUEST', 'nope.ringflow.test', 'A', null, 0, nx.seq], ['RESPONSE', 'nope.ringflow.test', 'A', 'NXDOMAIN', 0, nx.seq]]);
    }
    // the client's and the server's exchange of one lookup share the id
    assert.deepEqual(client.map((x) => x.seq).sort(), server.map((x) => x.seq).sort());
  });

  it('glibc getaddrinfo (A + AAAA in one sendmmsg): one exchange per query per end', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(1);
    await dnsmasq(t, ip);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-resolv-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'resolv.conf'), `nameserver ${ip}\noptions attempts:1 timeout:2\n`);
    // glibc reads /etc/resolv.conf: ours only inside a private mount namespace
    const py = `import socket, sys
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
got = socket.getaddrinfo('svc.ringflow.test', 80, 0, socket.SOCK_STREAM)
assert any(a[4][0] == '10.1.2.3' for a in got), got
print('resolved')`;
    const r = await run(t, 'unshare', ['-m', 'sh', '-c', `mount --bind ${path.join(dir, 'resolv.conf')} /etc/resolv.conf && exec ${PYTHON} -c "$0"`, py], { dnsPort: true });
    assert.ok(r.printed.includes('resolved'));
    const [client, server] = ends(r.exchanges, ip);
    assert.deepEqual(r.captures.filter((c) => c.local === ip || c.remote === ip), [], 'no capture record');
    for (const [side, xs] of [['getaddrinfo', client], ['dnsmasq', server]] as const) {
      assert.deepEqual(xs.map((x) => (fields(x)[1] as unknown[]).slice(1, 4)).sort(),
        // dnsmasq answers the name's A (--address) and says NXDOMAIN for the rest of its --local domain
        [['svc.ringflow.test', 'A', 'NOERROR'], ['svc.ringflow.test', 'AAAA', 'NXDOMAIN']], `${side}: A and AAAA, one exchange each`);
      assert.ok(xs.every((x) => x.outcome === L7Outcome.RESPONDED && x.retries === 0), side);
    }
  });

  it('a retransmitted query (the responder ignores the first): ONE exchange with retries = 1 from the first send, per end', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(2);
    const r = await run(t, PYTHON, ['-c', String.raw`
import socket, sys, struct, time
q = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0) + b'\x05retry\x08ringflow\x04test\x00' + struct.pack('>HH', 1, 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('${ip}', 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('${ip}', 53))
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
c.send(q)
_, peer = srv.recvfrom(512)          # ignored: the client times out and sends it again
time.sleep(0.05)
c.send(q)
got, peer = srv.recvfrom(512)
ans = bytearray(got); ans[2] |= 0x80; ans[3] = 0x83   # QR, RA, NXDOMAIN
srv.sendto(bytes(ans), peer)
assert c.recv(512)[3] & 0x0f == 3
c.close(); srv.close()
`]);
    const [client, server] = ends(r.exchanges, ip);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.equal(xs.length, 1, `${side}: one exchange for the query and its retransmit`);
      const x = xs[0]!;
      assert.equal(x.retries, 1, `${side}: retries`);
      assert.equal(x.seq, 0x4242);
      assert.equal(x.status, 3);
      assert.equal(x.outcome, L7Outcome.RESPONDED);
      assert.ok(x.resp_start_ns - x.req_start_ns >= 50_000_000n, `${side}: from the first send (${x.resp_start_ns - x.req_start_ns} ns)`);
    }
    assert.deepEqual(r.captures, [], 'no capture record, not even close records of the two sockets');
  });

  it('a retransmit after the HTTP hand-over time (resolvers wait 5 s) still folds into the exchange: the sweep waits longer for DNS', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(6);
    const r = await run(t, PYTHON, ['-c', String.raw`
import socket, sys, struct, time
q = struct.pack('>HHHHHH', 0x5151, 0x0100, 1, 0, 0, 0) + b'\x04slow\x08ringflow\x04test\x00' + struct.pack('>HH', 1, 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('${ip}', 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('${ip}', 53))
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
c.send(q)
srv.recvfrom(512)
time.sleep(1.6)                      # past the 1 s hand-over the sweep uses here
c.send(q)
got, peer = srv.recvfrom(512)
ans = bytearray(got); ans[2] |= 0x80
srv.sendto(bytes(ans), peer); c.recv(512)
`], { sweepHandoverNs: 1_000_000_000 });
    assert.deepEqual(ends(r.claimed, ip), [[], []], 'nothing claimed: the query was still within the DNS hand-over');
    const [client, server] = ends(r.exchanges, ip);
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.deepEqual(xs.map((x) => [x.outcome, x.retries, x.seq]), [[L7Outcome.RESPONDED, 1, 0x5151]], side);
      assert.ok(xs[0]!.resp_start_ns - xs[0]!.req_start_ns >= 1_600_000_000n, `${side}: from the first send`);
    }
  });

  it('an unanswered query stays pending and the sweep claims it REQ_ONLY (the DNS key through the native mirror); a late answer goes out RESP_ONLY', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(3);
    const r = await run(t, PYTHON, ['-c', String.raw`
import socket, sys, struct
q = struct.pack('>HHHHHH', 0x0777, 0x0100, 1, 0, 0, 0) + b'\x04lost\x08ringflow\x04test\x00' + struct.pack('>HH', 28, 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('${ip}', 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('${ip}', 53))
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
c.send(q)
srv.recvfrom(512)
`], { keep: true });
    const { session } = r;
    assert.deepEqual(ends(r.exchanges, ip), [[], []], 'nothing while unanswered');
    const claimed: X[] = [];
    const batch = session.l7Claim(0, 0);
    assert.ok(batch !== null);
    forEachRecord(batch, (off, len) => {
      const x = copyExchange(batch, off, len);
      if (x) claimed.push(x);
    });
    const [client, server] = ends(claimed, ip);
    await session.stop();
    for (const [side, xs] of [['client', client], ['server', server]] as const) {
      assert.equal(xs.length, 1, `${side}: claimed once`);
      assert.equal(xs[0]!.outcome, L7Outcome.REQ_ONLY);
      assert.equal(xs[0]!.app, L7App.DNS);
      assert.equal(xs[0]!.seq, 0x0777);
      assert.deepEqual(fields(xs[0]!), [['REQUEST', 'lost.ringflow.test', 'AAAA', null, 0, 0x0777]]);
    }
  });

  it('an answer with no query seen: RESP_ONLY, the answer decoded', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(4);
    const r = await run(t, PYTHON, ['-c', String.raw`
import socket, sys, struct
a = struct.pack('>HHHHHH', 0x0999, 0x8180, 1, 0, 0, 0) + b'\x04late\x08ringflow\x04test\x00' + struct.pack('>HH', 1, 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('${ip}', 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('${ip}', 53))
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
srv.sendto(a, c.getsockname())
c.recv(512)
`]);
    const [client, server] = ends(r.exchanges, ip);
    assert.equal(client.length, 1);
    assert.equal(server.length, 1);
    for (const x of [...client, ...server]) {
      assert.equal(x.outcome, L7Outcome.RESP_ONLY);
      assert.deepEqual(fields(x), [['RESPONSE', 'late.ringflow.test', 'A', 'NOERROR', 0, 0x0999]]);
    }
    assert.deepEqual([client[0]!.role, server[0]!.role], [1, 2], 'an answer received: client; sent: server');
  });

  it('--l7-kernel-parse off: DNS stays capture records, no exchange', async (t) => {
    if (!rootOrSkip(t)) return;
    const ip = addr(5);
    const r = await run(t, PYTHON, ['-c', String.raw`
import socket, sys, struct
q = struct.pack('>HHHHHH', 0x0123, 0x0100, 1, 0, 0, 0) + b'\x03raw\x08ringflow\x04test\x00' + struct.pack('>HH', 1, 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(('${ip}', 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('${ip}', 53))
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
c.send(q)
got, peer = srv.recvfrom(512)
ans = bytearray(got); ans[2] |= 0x80
srv.sendto(bytes(ans), peer); c.recv(512)
c.close(); srv.close()
`], { kernelParse: false });
    assert.equal(r.exchanges.length, 0);
    assert.equal(r.captures.filter((c) => !c.close).length, 4, 'query and answer, sent and received');
    assert.equal(r.captures.filter((c) => c.close).length, 2, 'and the close records, as before');
  });

  it('a 10-message sendmmsg: the 2 past RF_L7_MAX_MMSG counted in rf_l7_parse mmsg_over_limit', async (t) => {
    if (!rootOrSkip(t)) return;
    const r = await run(t, PYTHON, ['-c', String.raw`
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32), ('iov', ctypes.POINTER(iovec)),
                ('iovlen', ctypes.c_size_t), ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t), ('flags', ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [('hdr', msghdr), ('len', ctypes.c_uint)]
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(('127.0.0.1', 0))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(b.getsockname())
print('ready'); sys.stdout.flush(); sys.stdin.read(1)
msgs = [b'msg-%02d' % i for i in range(10)]
keep = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
vecs = [iovec(ctypes.cast(k, ctypes.c_void_p), len(m)) for k, m in zip(keep, msgs)]
mm = (mmsghdr * 10)()
for i in range(10):
    mm[i].hdr.iov = ctypes.pointer(vecs[i]); mm[i].hdr.iovlen = 1
assert libc.sendmmsg(c.fileno(), mm, 10, 0) == 10
b.close(); c.close()
`], { kernelParse: true });
    assert.equal(r.parse[L7_PARSE.MMSG_OVER_LIMIT], 2n, `rf_l7_parse: ${r.parse.join(',')}`);
  });
});
