/**
 * In-kernel HTTP/1's hand-over (issue 10, docs/design/l7-in-kernel.md §2.7)
 * against the real kernel: a request that gets no response stays in BPF's
 * rf_l7_pending; the sweep (Session.l7Claim) claims it after the hand-over
 * time as ONE REQ_ONLY exchange per observed end, and the response that
 * comes later goes out of the ring RESP_ONLY with the same seq, never as a
 * second copy of the request. A process that exits without close() leaves
 * its requests in the map (the kernel closes its fds, no syscall): the sweep
 * claims them too.
 *
 * One python process holds both ends (client and server), so each exchange
 * is seen twice: role client (1) and role server (2).
 */
import { before, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Session, forEachRecord } from '../../native/index.ts';
import { encodeSettings, encodeL7Settings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { ROOT, sleep } from './helpers.ts';

const L7_OBJ = `${ROOT}bpf/.output/l7.bpf.o`;
const EXCHANGE_TYPE = 10; // RF_EV_L7_EXCHANGE
const EXCHANGE_SIZE = 176;
const OUT = { RESPONDED: 0, CLOSED: 1, RESP_ONLY: 2, LOST: 3, REQ_ONLY: 4 } as const;
const HANDOVER_NS = 1_000_000_000;

interface X {
  ts_ns: bigint;
  conn_id: bigint;
  req_start_ns: bigint;
  seq: number;
  role: number;
  status: number;
  outcome: number;
  tgid: number;
  req_head: string;
  resp_head: string;
}

function decode(b: Buffer, off: number, len: number): X {
  assert.equal(b[off], EXCHANGE_TYPE, 'an exchange record');
  const reqLen = b.readUInt16LE(off + 160);
  const respLen = b.readUInt16LE(off + 162);
  assert.equal(len, EXCHANGE_SIZE + reqLen + respLen, 'record = struct + both heads');
  return {
    ts_ns: b.readBigUInt64LE(off + 16),
    tgid: b.readUInt32LE(off + 8),
    conn_id: b.readBigUInt64LE(off + 48),
    req_start_ns: b.readBigUInt64LE(off + 56),
    seq: b.readUInt32LE(off + 136),
    status: b.readUInt16LE(off + 158),
    role: b[off + 165]!,
    outcome: b[off + 167]!,
    req_head: b.toString('latin1', off + EXCHANGE_SIZE, off + EXCHANGE_SIZE + reqLen),
    resp_head: b.toString('latin1', off + EXCHANGE_SIZE + reqLen, off + EXCHANGE_SIZE + reqLen + respLen),
  };
}

let PYTHON = 'python3';
before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
});

// A: a request the server reads and answers only when told; B: a request never answered, then exit without close()
const SCRIPT = String.raw`
import os, socket, sys
def pair():
    ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(8)
    c = socket.create_connection(ls.getsockname())
    s, _ = ls.accept()
    return ls, c, s
def say(w):
    sys.stdout.write(w + '\n'); sys.stdout.flush()
REQ = b'GET /slow HTTP/1.1\r\nHost: x\r\n\r\n'
say('ready'); sys.stdin.read(1)
ls, c, s = pair()
c.sendall(REQ); assert s.recv(4096) == REQ
say('asked'); sys.stdin.read(1)
s.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
got = b''
while not got.endswith(b'ok'): got += c.recv(4096)
say('answered'); sys.stdin.read(1)
ls2, c2, s2 = pair()
c2.sendall(b'GET /never HTTP/1.1\r\nHost: x\r\n\r\n'); s2.recv(4096)
say('exiting')
os._exit(0)
`;

async function until(what: string, f: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

it('a request with no response is claimed once per end as REQ_ONLY, its late response goes out RESP_ONLY, an exited process\'s request is claimed', async (t: TestContext) => {
  if (process.getuid?.() !== 0) {
    if (process.env.CI) throw new Error('native tests need root in CI');
    return t.skip('needs root (loads BPF programs)');
  }
  const child = spawn(PYTHON, ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  t.after(() => child.kill());
  const said: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => said.push(l));
  await until('ready', () => said.includes('ready'));

  const session = new Session({ ringBytes: 4 << 20 });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, { ...encodeSettings({ pid: child.pid!, selfTgid: process.pid }), ...encodeL7Settings({ kernelParse: true }) });
  const ring: X[] = [];
  const claimed: X[] = [];
  let bad = '';
  const collect = (into: X[]) => (batch: Buffer) => forEachRecord(batch, (off, len) => {
    try {
      into.push(decode(batch, off, len));
    } catch (e) {
      bad ||= String(e);
    }
  });
  session.start(collect(ring));
  // the collector sweeps once a second; faster here, to see that nothing is claimed before the hand-over
  const sweep = setInterval(() => {
    const b = session.l7Claim(HANDOVER_NS, 30_000_000_000);
    assert.ok(b !== null, 'the l7 object has rf_l7_pending');
    collect(claimed)(b);
  }, 100);
  t.after(() => clearInterval(sweep));

  child.stdin!.write('g');
  await until('asked', () => said.includes('asked'));
  const askedAt = process.hrtime.bigint();
  await until('two claims of the unanswered request', () => claimed.length >= 2);
  await sleep(300); // a third would be a duplicate
  assert.equal(bad, '');
  assert.equal(claimed.length, 2, 'one claim per observed end');
  assert.deepEqual(claimed.map((x) => x.role).sort(), [1, 2], 'client and server ends');
  for (const x of claimed) {
    assert.equal(x.outcome, OUT.REQ_ONLY);
    assert.equal(x.seq, 0);
    assert.equal(x.tgid, child.pid, 'the request\'s process');
    assert.match(x.req_head, /^GET \/slow HTTP\/1\.1\r\n/);
    assert.equal(x.resp_head, '');
    assert.ok(x.ts_ns - x.req_start_ns >= BigInt(HANDOVER_NS), `claimed after the hand-over (${x.ts_ns - x.req_start_ns} ns)`);
    assert.ok(x.ts_ns >= askedAt, 'not claimed before the request was even made');
  }
  assert.equal(ring.length, 0, `nothing from the ring while no response came: ${JSON.stringify(ring.map((x) => x.outcome))}`);

  child.stdin!.write('g');
  await until('answered', () => said.includes('answered'));
  await until('the two late responses', () => ring.length >= 2);
  await sleep(300);
  assert.equal(ring.length, 2, 'one late response per end, no duplicate');
  for (const x of ring) {
    assert.equal(x.outcome, OUT.RESP_ONLY, 'its request was handed over');
    assert.equal(x.seq, 0, 'the same ordinal as the claimed request');
    assert.equal(x.status, 200);
    assert.equal(x.req_head, '');
    assert.match(x.resp_head, /^HTTP\/1\.1 200 OK\r\n/);
  }
  assert.deepEqual(ring.map((x) => x.conn_id).sort(), claimed.map((x) => x.conn_id).sort(), 'the same connections');
  assert.equal(claimed.length, 2, 'the response did not bring another claim');

  child.stdin!.write('g');
  const [code] = await exited;
  assert.equal(code, 0);
  assert.ok(said.includes('exiting'));
  await until('the exited process\'s request claimed at both ends', () => claimed.length >= 4);
  await sleep(300);
  const gone = claimed.slice(2);
  assert.equal(gone.length, 2);
  for (const x of gone) {
    assert.equal(x.outcome, OUT.REQ_ONLY);
    assert.equal(x.seq, 0);
    assert.match(x.req_head, /^GET \/never HTTP\/1\.1\r\n/);
  }
  assert.equal(ring.length, 2, 'nothing else from the ring');
  clearInterval(sweep);
  await session.stop();
});

// Many exchanges answered at once while the sweep claims with a hand-over of 0: BPF's own emission
// and the claim race on every entry, and exactly one of them may report each half.
const RACE = String.raw`
import socket, sys
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(8)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
for sock in (c, s): sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sys.stdout.write('ready\n'); sys.stdout.flush(); sys.stdin.read(1)
REQ = b'GET /r HTTP/1.1\r\nHost: x\r\n\r\n'
RESP = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
for i in range(int(sys.argv[1])):
    c.sendall(REQ)
    got = b''
    while len(got) < len(REQ): got += s.recv(4096)
    s.sendall(RESP)
    got = b''
    while len(got) < len(RESP): got += c.recv(4096)
sys.stdout.write('done\n'); sys.stdout.flush(); sys.stdin.read(1)
`;

it('the sweep and BPF racing for the same entries: each request and each response is reported once', async (t: TestContext) => {
  if (process.getuid?.() !== 0) return t.skip('needs root (loads BPF programs)');
  const N = 10000;
  const child = spawn(PYTHON, ['-c', RACE, String(N)], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => child.kill());
  const said: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => said.push(l));
  await until('ready', () => said.includes('ready'));
  const session = new Session({ ringBytes: 16 << 20 });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, { ...encodeSettings({ pid: child.pid!, selfTgid: process.pid }), ...encodeL7Settings({ kernelParse: true }) });
  const all: X[] = [];
  const take = (batch: Buffer) => forEachRecord(batch, (off, len) => { all.push(decode(batch, off, len)); });
  session.start(take);
  child.stdin!.write('g');
  let claims = 0;
  while (!said.includes('done')) {
    const b = session.l7Claim(0, 60_000_000_000)!;
    const before = all.length;
    take(b);
    claims += all.length - before;
    await new Promise((r) => setImmediate(r));
  }
  await sleep(300);
  take(session.l7Claim(0, 0)!); // the last ones, response or not
  const drops = session.drops();
  const parse = session.mapCounters('rf_l7_parse') ?? [];
  child.stdin!.write('g');
  await session.stop();
  assert.equal(drops[EXCHANGE_TYPE] ?? 0n, 0n, 'no exchange record dropped');
  const reqs = new Map<string, number>();
  const resps = new Map<string, number>();
  for (const x of all) {
    const k = `${x.conn_id}:${x.seq}`;
    if (x.outcome !== OUT.RESP_ONLY) reqs.set(k, (reqs.get(k) ?? 0) + 1);
    if (x.outcome === OUT.RESPONDED || x.outcome === OUT.RESP_ONLY) resps.set(k, (resps.get(k) ?? 0) + 1);
  }
  const twice = [...reqs].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `a request reported twice (${claims} claims, parse counters ${parse.join(',')})`);
  assert.deepEqual([...resps].filter(([, n]) => n > 1), [], 'a response reported twice');
  assert.equal(reqs.size, 2 * N, `every request of both ends reported (${claims} by the sweep)`);
  assert.ok(claims > 0, 'the sweep claimed some');
});
