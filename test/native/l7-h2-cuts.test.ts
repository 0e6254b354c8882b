/**
 * HTTP/2 cuts on the real kernel (issue 10, design slice 5; bpf/l7_h2.h,
 * l7_h2_walk.h): an HTTP/2 direction is framed in BPF and only frame headers
 * and the payloads user space parses leave the kernel; DATA payloads are
 * cuts. Real peers: @grpc/grpc-js client and server (node:http2 underneath:
 * a header iovec and a payload iovec per DATA frame in one writev), and a
 * hand-written client whose frames are split across write() calls at odd
 * offsets against a node:http2 server. The records go through the
 * collector's own decoder and tracker (collector/l7/capture.ts, tracker.ts).
 */
import { before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Session, forEachRecord } from '../../native/index.ts';
import { encodeL7Settings, encodeSettings, type L7Settings } from '../../collector/signals/settings.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { decodeL7Capture, IPPROTO_TCP, L7Kind, L7_CUT_SIZE, L7_H2, type L7Capture } from '../../collector/l7/capture.ts';
import { L7Tracker, type L7Output } from '../../collector/l7/tracker.ts';
import { ROOT } from './helpers.ts';

const L7_OBJ = `${ROOT}bpf/.output/l7.bpf.o`;

function rootOrSkip(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI) throw new Error('native tests need root in CI (CI runs as root)');
  t.skip('needs root (loads BPF programs); run with sudo');
  return false;
}

before(() => {
  if (process.getuid?.() !== 0) return;
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
});

interface Run {
  records: L7Capture[];
  out: Record<string, unknown>;
  h2: number[];
  outputs: L7Output[];
  tracker: L7Tracker;
}

/**
 * Runs a node child (CommonJS, from the repo root so that it finds
 * node_modules) with l7.bpf.o attached and filtered on it: the child prints
 * "ready", waits for a line on stdin, does its work and prints one JSON line.
 */
async function runChild(t: TestContext, script: string, l7: L7Settings = {}): Promise<Run> {
  const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  const exited = once(child, 'exit');
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((resolve, reject) => {
    rl.on('line', (l) => {
      lines.push(l);
      if (l === 'ready') resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before it was ready`)));
  });
  ready.catch(() => {});
  t.after(() => child.kill());
  await ready;
  const session = new Session({ ringBytes: 64 << 20 });
  t.after(() => session.stop());
  session.addObject(L7_OBJ, { ...encodeSettings({ pid: child.pid!, selfTgid: process.pid }), ...encodeL7Settings(l7) });
  const records: L7Capture[] = [];
  let bad = '';
  session.start((batch) => {
    forEachRecord(batch, (off, len) => {
      if (batch[off] !== 9) return; // exchange records (HTTP/1) are not this test's
      const r = decodeL7Capture(batch, off, len);
      if (r) records.push({ ...r, laddr: Buffer.from(r.laddr), raddr: Buffer.from(r.raddr), payload: Buffer.from(r.payload) });
      else bad ||= `a capture record of ${len} bytes does not decode`;
    });
  });
  child.stdin!.end('g\n');
  const [code] = await exited;
  const counters = session.mapCounters('rf_l7_h2');
  await session.stop();
  assert.equal(code, 0, 'the child succeeded');
  assert.equal(bad, '', 'every capture record decodes (its cuts add up)');
  assert.ok(counters, 'rf_l7_h2 is in the object');
  const tracker = new L7Tracker();
  const outputs: L7Output[] = [];
  for (const r of records) outputs.push(...tracker.feed(r));
  return { records, out: JSON.parse(lines.at(-1)!) as Record<string, unknown>, h2: Array.from({ length: 8 }, (_, i) => Number(counters[i] ?? 0n)), outputs, tracker };
}

/** Bytes that left the kernel for a connection's data records: struct excluded, cuts and kept bytes counted. */
const shipped = (rs: readonly L7Capture[]): number => rs.reduce((n, r) => n + r.captured_len + (r.cuts?.length ?? 0) / 2 * L7_CUT_SIZE, 0);
const moved = (rs: readonly L7Capture[]): number => rs.reduce((n, r) => n + r.total_len, 0);

const GRPC_CHILD = String.raw`
const grpc = require('@grpc/grpc-js');
const bytes = (b) => b;
const def = { Put: { path: '/ringflow.test.Store/Put', requestStream: false, responseStream: false,
  requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } };
const BIG = { 'grpc.max_send_message_length': 8 << 20, 'grpc.max_receive_message_length': 8 << 20 };
(async () => {
  const server = new grpc.Server(BIG);
  server.addService(def, { Put: (call, cb) => {
    if (call.request.length === 1) cb({ code: grpc.status.NOT_FOUND, details: 'no such key' });
    else cb(null, Buffer.alloc(call.request.length, 9));
  } });
  const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  console.log('ready');
  await new Promise((res) => process.stdin.once('data', res));
  const Client = grpc.makeGenericClientConstructor(def, 'Store');
  const client = new Client('127.0.0.1:' + port, grpc.credentials.createInsecure(), BIG);
  const call = (b) => new Promise((res) => client.Put(b, (err, r) => res({ code: err ? err.code : 0, len: r ? r.length : 0 })));
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await call(Buffer.alloc(1 << 20, i)));
  results.push(await call(Buffer.alloc(1)));
  client.close();
  await new Promise((res) => setTimeout(res, 100));
  server.forceShutdown();
  await new Promise((res) => setTimeout(res, 100));
  console.log(JSON.stringify({ results, port }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe('l7.bpf.o: HTTP/2 cuts', () => {
  it('grpc-js, 1 MiB messages both ways: only headers leave the kernel, spans and grpc status right at both ends', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, GRPC_CHILD);
    const results = run.out.results as { code: number; len: number }[];
    assert.deepEqual(results, [...[0, 1, 2, 3].map(() => ({ code: 0, len: 1 << 20 })), { code: 5, len: 0 }]);
    const port = run.out.port as number;
    const h2 = run.records.filter((r) => r.protocol === IPPROTO_TCP && r.kind === L7Kind.DATA && (r.lport === port || r.rport === port));
    const total = moved(h2);
    const out = shipped(h2);
    const perCall = out / results.length;
    t.diagnostic(`h2 records ${h2.length}, bytes moved ${total}, shipped ${out} (${Math.round(perCall)} per call, both ends), cuts ${h2.reduce((n, r) => n + (r.cuts?.length ?? 0) / 2, 0)}; counters ${JSON.stringify(run.h2)}`);
    assert.ok(total > 16 * (1 << 20), `both ends moved the messages (${total} bytes)`);
    // headers only: a call's HEADERS, trailers, SETTINGS and frame headers, both ends, with room
    assert.ok(perCall < 16384, `shipped ${Math.round(perCall)} bytes per call (without cuts: ~270 KB)`);
    assert.equal(run.h2[L7_H2.FRAME_LOST], 0, 'framing never lost');
    assert.equal(run.h2[L7_H2.KEPT_OVER], 0);
    assert.equal(run.h2[L7_H2.CUT_LIMIT], 0);
    assert.ok(run.h2[L7_H2.CUT_BYTES]! >= 16 * (1 << 20), 'the payloads were cut');
    // the collector's tracker: every call at both ends, method, status, body sizes, nothing truncated
    const msgs = run.outputs.filter((o) => o.msg.protocol === 'GRPC');
    for (const role of ['CLIENT', 'SERVER']) {
      const mine = msgs.filter((o) => o.ctx.role === role);
      const req = mine.filter((o) => o.msg.kind === 'REQUEST');
      const resp = mine.filter((o) => o.msg.kind === 'RESPONSE');
      assert.deepEqual(req.map((o) => [o.msg.grpc_method, o.msg.body_bytes, o.msg.truncated]),
        [...[0, 1, 2, 3].map(() => ['Put', 5 + (1 << 20), false]), ['Put', 6, false]], `${role} requests`);
      assert.deepEqual(resp.map((o) => [o.msg.grpc_status, o.msg.body_bytes, o.msg.truncated]),
        [...[0, 1, 2, 3].map(() => [0, 5 + (1 << 20), false]), [5, 0, false]], `${role} responses`);
    }
    assert.deepEqual([...run.tracker.counters.failed], [], 'no parser loss or recovery');
  });
});
