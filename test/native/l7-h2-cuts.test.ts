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
import { decodeL7Capture, IPPROTO_TCP, L7Kind, L7Syscall, L7_CUT_SIZE, L7_H2, type L7Capture } from '../../collector/l7/capture.ts';
import { L7Tracker, type L7Output } from '../../collector/l7/tracker.ts';
import { ROOT, startReady, rootOrSkip } from './helpers.ts';

const L7_OBJ = `${ROOT}bpf/.output/l7.bpf.o`;

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
  const { child, exited, lines } = await startReady(t, process.execPath, ['-e', script], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
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
    // node:http2 writes a frame header and its payload as separate iovecs: the walk's iovec cursor cut those
    const bySys = new Map<number, number>();
    for (const r of h2) if (r.cuts?.length) bySys.set(r.syscall, (bySys.get(r.syscall) ?? 0) + 1);
    t.diagnostic(`records with cuts by syscall: ${JSON.stringify([...bySys])}`);
    assert.ok((bySys.get(L7Syscall.WRITEV) ?? 0) > 0, 'writev records were cut (iovec cursor)');
    assert.ok((bySys.get(L7Syscall.READ) ?? 0) + (bySys.get(L7Syscall.RECVFROM) ?? 0) > 0, 'read records were cut (one buffer)');
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

  it('a client whose frames are split across write() calls at odd offsets, and an OTLP-sized request read several frames at a time: same spans, no frame lost', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, SPLIT_CHILD);
    const { port, splits, status } = run.out as { port: number; splits: number; status: number[] };
    assert.deepEqual(status, [200, 200]);
    const conn = run.records.filter((r) => r.protocol === IPPROTO_TCP && r.kind === L7Kind.DATA && (r.lport === port || r.rport === port));
    const clientWrites = conn.filter((r) => r.rport === port && r.direction === 0);
    t.diagnostic(`records ${conn.length}, client writes ${clientWrites.length} (splits ${splits}), moved ${moved(conn)}, shipped ${shipped(conn)}; counters ${JSON.stringify(run.h2)}`);
    assert.ok(clientWrites.length >= splits, 'each piece was its own write()');
    // several frames over the 4 KiB capture in one call: the reads of the large request
    assert.ok(conn.some((r) => r.lport === port && r.direction === 1 && r.total_len > 3 * 16393), 'the server read several DATA frames in one call');
    assert.equal(run.h2[L7_H2.FRAME_LOST], 0, 'framing never lost');
    assert.ok(shipped(conn) < 16384, `shipped ${shipped(conn)} of ${moved(conn)} bytes`);
    const msgs = run.outputs.map((o) => o.msg).filter((m) => m.protocol === 'HTTP2');
    const summary = (role: string, kind: string) => run.outputs.filter((o) => o.ctx.role === role && o.msg.kind === kind && o.msg.protocol === 'HTTP2')
      .map((o) => [o.msg.method, o.msg.path, o.msg.status, o.msg.body_bytes, o.msg.truncated]);
    assert.ok(msgs.length >= 4, JSON.stringify(msgs, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    t.diagnostic(`tracker: ${JSON.stringify([...run.tracker.counters.failed])}`);
    assert.deepEqual(summary('CLIENT', 'REQUEST'), [['POST', '/odd', null, 3 * 10_000 + 7, false], ['POST', '/v1/traces', null, 300_000, false]]);
    assert.deepEqual(summary('CLIENT', 'RESPONSE'), [[null, null, 200, 6, false], [null, null, 200, 6, false]]);
    assert.deepEqual(summary('SERVER', 'REQUEST'), summary('CLIENT', 'REQUEST'));
    assert.deepEqual(summary('SERVER', 'RESPONSE'), summary('CLIENT', 'RESPONSE'));
    assert.deepEqual([...run.tracker.counters.failed], [], 'no parser loss or recovery (no "gap across frames")');
  });

  it('framing lost at an implausible frame header: that call goes out uncut, the direction resyncs at a call whose frames chain, then cuts again', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, SEEK_CHILD);
    const { port } = run.out as { port: number };
    const sent = run.records.filter((r) => r.protocol === IPPROTO_TCP && r.kind === L7Kind.DATA && r.rport === port && r.direction === 0);
    const brief = sent.map((r) => [r.total_len, r.captured_len, (r.cuts?.length ?? 0) / 2]);
    t.diagnostic(`client writes [total, captured, cuts]: ${JSON.stringify(brief)}; counters ${JSON.stringify(run.h2)}`);
    assert.deepEqual(brief, [
      [24 + 9 + 9 + 20_000, 24 + 9 + 9, 1], // preface, SETTINGS, DATA header kept; its payload cut
      [9 + 20_000, 9, 1], // the same, framed across calls
      [20, 9, 0], // not a frame header: framing lost there; what came before it kept, the rest not captured
      [9 + 20_000, 4096, 0], // seeking: one frame that goes on past the call is no chain yet; uncut, as before
      [10_000, 4096, 0], // the rest of that frame: no frame header at its start; uncut
      [9 + 6, 15, 0], // SETTINGS that ends with its call: framing found (the check walk), and kept
      [9 + 20_000, 9, 1], // cut again
    ]);
    assert.ok(run.h2[L7_H2.FRAME_LOST]! >= 1, 'the loss is counted');
    assert.ok(run.h2[L7_H2.RESYNCED]! >= 1, 'the resync is counted');
  });

  it('Python grpcio (C-core: preface, SETTINGS, HEADERS and DATA in one sendmsg of many iovecs): its sendmsg records are cut, every call a client and a server span', async (t) => {
    if (!rootOrSkip(t)) return;
    const service = `rfh2cuts${process.pid}.Test`;
    const server = spawn('/usr/bin/python3', [`${ROOT}test/soak/grpc-peer.py`, 'server', service], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.after(() => server.kill());
    const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
    const port = Number(((await lines.next()).value as string).split(' ')[1]);
    assert.ok(port > 0, 'the grpcio server started (python3-grpcio)');
    const session = new Session({ ringBytes: 64 << 20 });
    t.after(() => session.stop());
    session.addObject(L7_OBJ, { ...encodeSettings({ selfTgid: process.pid }), ...encodeL7Settings({ port }) });
    const records: L7Capture[] = [];
    session.start((batch) => {
      forEachRecord(batch, (off, len) => {
        const r = batch[off] === 9 ? decodeL7Capture(batch, off, len) : null;
        if (r) records.push({ ...r, laddr: Buffer.from(r.laddr), raddr: Buffer.from(r.raddr), payload: Buffer.from(r.payload) });
      });
    });
    const calls = 10;
    const client = spawn('/usr/bin/python3', [`${ROOT}test/soak/grpc-peer.py`, 'client', service, String(port), String(calls), '5'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let said = '';
    client.stdout!.on('data', (d: Buffer) => { said += d.toString(); });
    const [code] = await once(client, 'exit');
    await new Promise((r) => setTimeout(r, 300));
    const counters = session.mapCounters('rf_l7_h2')!;
    await session.stop();
    server.stdin!.end();
    assert.equal(code, 0);
    assert.equal(said.trim(), `ok ${calls}`);
    const h2 = records.filter((r) => r.kind === L7Kind.DATA);
    const sendmsg = h2.filter((r) => r.syscall === L7Syscall.SENDMSG);
    t.diagnostic(`records ${h2.length}, sendmsg ${sendmsg.length} (${sendmsg.filter((r) => r.cuts?.length).length} cut), moved ${moved(h2)}, shipped ${shipped(h2)}; counters ${JSON.stringify(counters.map(Number))}`);
    assert.ok(sendmsg.some((r) => (r.cuts?.length ?? 0) > 0), 'sendmsg records were cut (the iovec cursor)');
    assert.equal(Number(counters[L7_H2.FRAME_LOST]), 0, 'framing never lost');
    const tracker = new L7Tracker();
    const outputs = records.flatMap((r) => tracker.feed(r));
    for (const role of ['CLIENT', 'SERVER']) {
      const mine = outputs.filter((o) => o.ctx.role === role && o.msg.protocol === 'GRPC');
      assert.deepEqual(mine.filter((o) => o.msg.kind === 'REQUEST').map((o) => o.msg.path), Array(calls).fill(`/${service}/Ping`), role);
      assert.deepEqual(mine.filter((o) => o.msg.kind === 'RESPONSE').map((o) => [o.msg.grpc_status, o.msg.truncated]), Array(calls).fill([0, false]), role);
    }
    assert.deepEqual([...tracker.counters.failed], [], 'no parser loss or recovery');
  });

  it('header blocks of many streams in one write, over the 4 KiB capture size: all kept (up to 16 KiB), every request decoded', async (t) => {
    if (!rootOrSkip(t)) return;
    const run = await runChild(t, HEADERS_CHILD);
    const { port, streams, values } = run.out as { port: number; streams: number; values: string[] };
    const sent = run.records.filter((r) => r.protocol === IPPROTO_TCP && r.kind === L7Kind.DATA && r.rport === port && r.direction === 0);
    t.diagnostic(`client writes [total, captured, cuts]: ${JSON.stringify(sent.map((r) => [r.total_len, r.captured_len, (r.cuts?.length ?? 0) / 2]))}; counters ${JSON.stringify(run.h2)}`);
    assert.ok(sent.some((r) => r.total_len > 4096 && r.captured_len === r.total_len), 'the large write went out whole');
    assert.equal(run.h2[L7_H2.KEPT_OVER], 0, 'nothing over the window');
    const reqs = run.outputs.filter((o) => o.ctx.role === 'CLIENT' && o.msg.kind === 'REQUEST');
    assert.equal(reqs.length, streams);
    assert.deepEqual(reqs.map((o) => [o.msg.path, o.msg.truncated]), values.map((_v, i) => [`/many/${i}`, false]));
    assert.deepEqual([...run.tracker.counters.failed], [], 'no HPACK loss');
  });
});

/*
 * Many HTTP/2 requests' HEADERS in one write (a client starting many calls
 * at once), each with a large literal header: a plain TCP server reads them.
 */
const HEADERS_CHILD = String.raw`
const net = require('node:net');
const crypto = require('node:crypto');
const hpack = require('hpack.js');
const frame = (type, flags, stream, payload = Buffer.alloc(0)) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
const comp = hpack.compressor.create({ table: { maxSize: 4096 } });
const block = (fields) => { comp.write(fields); return Buffer.from(comp.read()); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const server = net.createServer((s) => { s.on('data', () => {}); s.on('error', () => {}); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  console.log('ready');
  await new Promise((res) => process.stdin.once('data', res));
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise((r) => sock.once('connect', r));
  const streams = 30;
  const values = [];
  const frames = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0)];
  for (let i = 0; i < streams; i++) {
    const v = crypto.randomBytes(150).toString('base64');
    values.push(v);
    frames.push(frame(1, 4 | 1, 1 + 2 * i, block([
      { name: ':method', value: 'GET' }, { name: ':scheme', value: 'http' }, { name: ':path', value: '/many/' + i },
      { name: ':authority', value: 'localhost' }, { name: 'x-large', value: v, neverIndex: true, huffman: false },
    ])));
  }
  await new Promise((r) => sock.write(Buffer.concat(frames), r));
  await sleep(100);
  sock.end();
  await sleep(100);
  server.close();
  console.log(JSON.stringify({ port, streams, values }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;

/*
 * A plain TCP server that reads and discards; the client writes an HTTP/2
 * stream with a broken frame header in the middle, one write() per step.
 */
const SEEK_CHILD = String.raw`
const net = require('node:net');
const frame = (type, flags, stream, payload = Buffer.alloc(0)) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const server = net.createServer((s) => { s.on('data', () => {}); s.on('error', () => {}); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  console.log('ready');
  await new Promise((res) => process.stdin.once('data', res));
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  await new Promise((r) => sock.once('connect', r));
  const steps = [
    Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0), frame(0, 0, 1, Buffer.alloc(20000, 1))]),
    frame(0, 0, 1, Buffer.alloc(20000, 2)),
    Buffer.alloc(20, 0xff), // reserved bit set, unknown type: no frame header
    frame(0, 0, 1, Buffer.alloc(30000, 3)).subarray(0, 9 + 20000),
    Buffer.alloc(10000, 3),
    frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100])),
    frame(0, 0, 1, Buffer.alloc(20000, 4)),
  ];
  for (const b of steps) {
    await new Promise((r) => sock.write(b, r));
    await sleep(30);
  }
  sock.end();
  await sleep(100);
  server.close();
  console.log(JSON.stringify({ port }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;

/*
 * node:http2 server; the client is a raw socket writing a hand-encoded h2
 * stream (hpack.js): request 1 split at odd offsets (inside the preface, a
 * frame header, a HEADERS block, DATA payloads), one write() per piece;
 * request 2 an OTLP-sized POST (300 000 bytes in 16 KiB DATA frames) in one
 * write, which the server reads several frames at a time.
 */
const SPLIT_CHILD = String.raw`
const http2 = require('node:http2');
const net = require('node:net');
const hpack = require('hpack.js');
const frame = (type, flags, stream, payload = Buffer.alloc(0)) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3); h[3] = type; h[4] = flags; h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
const comp = hpack.compressor.create({ table: { maxSize: 4096 } });
const block = (fields) => { comp.write(fields.map(([name, value]) => ({ name, value }))); return Buffer.from(comp.read()); };
const data = (stream, body, end) => {
  const out = [];
  for (let o = 0; o < body.length; o += 16384) out.push(frame(0, end && o + 16384 >= body.length ? 1 : 0, stream, body.subarray(o, o + 16384)));
  return Buffer.concat(out);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const server = http2.createServer();
  server.on('stream', (st, headers) => {
    let n = 0;
    st.on('data', (d) => { n += d.length; });
    st.on('end', () => { st.respond({ ':status': 200 }); st.end('ok ' + String(n % 1000).padStart(3, '0').slice(0, 3)); });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  console.log('ready');
  await new Promise((res) => process.stdin.once('data', res));
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  const got = [];
  sock.on('data', (d) => got.push(d));
  await new Promise((r) => sock.once('connect', r));
  const hdr = (path) => block([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'localhost'], ['content-type', 'application/octet-stream']]);
  const one = Buffer.concat([
    Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0), frame(8, 0, 0, Buffer.from([0, 0x10, 0, 0])),
    frame(1, 4, 1, hdr('/odd')),
    frame(0, 0, 1, Buffer.alloc(10000, 1)), frame(6, 0, 0, Buffer.alloc(8, 2)), frame(0, 0, 1, Buffer.alloc(10000, 3)),
    frame(0, 1, 1, Buffer.alloc(10007, 4)),
  ]);
  // odd offsets: in the preface (past the 16 bytes the protocol gate reads), in a frame header, in HEADERS, in and across DATA payloads
  const cuts = [19, 24 + 4, 24 + 9 + 3, 24 + 9 + 13 + 7, 24 + 9 + 13 + 9 + 5, 200, 4097, 10001, 10019, 16411, 20000, 20041, 25555];
  let prev = 0;
  for (const c of [...cuts, one.length]) {
    await new Promise((r) => sock.write(one.subarray(prev, c), r));
    prev = c;
    await sleep(15);
  }
  await sleep(200);
  const two = Buffer.concat([frame(1, 4, 3, hdr('/v1/traces')), data(3, Buffer.alloc(300000, 5), true)]);
  await new Promise((r) => sock.write(two, r));
  await sleep(500);
  sock.end();
  await sleep(100);
  server.close();
  // the responses' :status, decoded from what the client read
  const all = Buffer.concat(got);
  const dec = hpack.decompressor.create({ table: { maxSize: 4096 } });
  const status = [];
  for (let o = 0; o + 9 <= all.length;) {
    const len = all.readUIntBE(o, 3), type = all[o + 3];
    if (type === 1) {
      dec.write(all.subarray(o + 9, o + 9 + len)); dec.execute();
      let f; while ((f = dec.read())) if (f.name === ':status') status.push(Number(f.value));
    }
    o += 9 + len;
  }
  console.log(JSON.stringify({ port, splits: cuts.length + 1, status }));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;
