/**
 * Issue 10 slice 1 on real parts, A/B: the same HTTP/1 traffic (node:http
 * keep-alive, HEAD, 204, 304, a POST with a body, a chunked response, three
 * requests pipelined in one write, curl --http1.0) observed by the real
 * collector twice: once with HTTP/1 framed and paired in BPF (exchange
 * records, the default) and once with --l7-kernel-parse off (capture
 * records parsed by tracker.ts, as before). The l7 messages must be the
 * same, field for field (times, ports and connection ids aside; an EXCHANGE
 * record read as its request and response); the first run must get them
 * from exchange records only (no capture record for these connections), one
 * EXCHANGE record per exchange and end, with no in-kernel parsing loss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { rootOrSkip, runCli, run, sleep } from '../support/integration.ts';
import { expandL7Records } from '../support/l7-exchange-records.ts';

type Msg = Record<string, unknown>;

/** The traffic, against a fresh node:http server on `port`. */
async function traffic(port: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const request = (method: string, p: string, body?: string, headers: Record<string, string> = {}) => new Promise<void>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers: { authorization: 'Bearer AB-SECRET', ...headers } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end(body);
  });
  await request('GET', '/users/42?token=AB-QUERY-SECRET', undefined, { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  await request('POST', '/items', '{"a":1}', { 'content-type': 'application/json' });
  await request('HEAD', '/head');
  await request('GET', '/empty');
  await request('GET', '/cached');
  await request('GET', '/missing');
  agent.destroy();
  // three requests pipelined in one write, on a connection of their own
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('GET /p/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    });
    s.on('data', () => {});
    s.on('end', () => resolve());
    s.on('error', reject);
  });
  const c = await run('curl', ['-s', '-o', '/dev/null', '--http1.0', '-H', 'Cookie: sid=AB-COOKIE', `http://127.0.0.1:${port}/old`]);
  assert.equal(c.code, 0);
}

function server(): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/empty') return void res.writeHead(204).end();
      if (req.url === '/cached') return void res.writeHead(304).end();
      if (req.url === '/missing') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
      if (req.url === '/items') {
        // chunked: two writes without a length
        res.writeHead(201, { 'content-type': 'application/json' });
        res.write('{"id":');
        return void setTimeout(() => res.end('7}'), 5);
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': 'sid=AB-SET-COOKIE' }).end('hello');
    });
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

/** One collector run around the traffic: its l7 messages (JSON lines) and its stderr. */
async function observe(kernelParse: 'on' | 'off'): Promise<{ msgs: Msg[]; records: Msg[]; stderr: string }> {
  const srv = await server();
  const port = (srv.address() as net.AddressInfo).port;
  const c = runCli(['collect', '--stdout', '--signals', 'l7', '--port', String(port), '--stats-interval', '1s', '--l7-kernel-parse', kernelParse]);
  try {
    await c.waitFor(/collecting l7/, 60_000);
    await traffic(port);
    await sleep(2500); // a stats line after the last exchange
    c.child.kill('SIGINT');
    assert.equal(await c.exit, 0, c.stderr());
  } finally {
    c.child.kill('SIGKILL');
    srv.close();
  }
  const records = c.stdout().split('\n').filter((l) => l.includes('"event":"ringflow.l7.v1"')).map((l) => JSON.parse(l) as Msg);
  // an EXCHANGE record (kernel path) stands for a REQUEST and a RESPONSE (capture path)
  return { msgs: expandL7Records(records), records, stderr: c.stderr() };
}

/** What must not differ: everything but times, ports, connection ids and the task's thread. */
function comparable(m: Msg): string {
  const { role, kind, stream_id, method, path, status, headers, body_bytes, truncated, protocol_version, comm, process_name, tgid } = m;
  const peer = role === 'CLIENT' ? 'client' : 'server';
  // the server's port differs between the runs, and Host names it
  const h = { ...(headers as Record<string, string>) };
  if (h.host) h.host = h.host.replace(/:\d+$/, ':PORT');
  return JSON.stringify({ peer, kind, stream_id, method, path, status, headers: h, body_bytes, truncated, protocol_version, comm, process_name, ours: tgid === process.pid });
}

/** Sums of a number in the collector's stats lines ("HTTP/1 exchanges from the kernel N"). */
const total = (stderr: string, re: RegExp): number => [...stderr.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);

test('HTTP/1 framed in BPF (exchange records) gives the same l7 messages as capture records parsed in the collector', { timeout: 300_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const kernel = await observe('on');
  const user = await observe('off');
  // each run: both ends of 6 + 3 + 1 exchanges, a request and a response each
  for (const [name, r] of [['on', kernel], ['off', user]] as const) assert.equal(r.msgs.length, 40, `${name}: ${r.msgs.length} messages\n${r.stderr}`);
  assert.deepEqual(kernel.msgs.map(comparable).sort(), user.msgs.map(comparable).sort());
  // one Kafka record per exchange and end from the kernel path, two from the capture path
  assert.equal(kernel.records.filter((r) => r.kind === 'EXCHANGE').length, 20);
  assert.equal(user.records.filter((r) => r.kind === 'EXCHANGE').length, 0);
  // the first run from exchange records only, and none lost in the kernel's parsing
  assert.equal(total(kernel.stderr, /HTTP\/1 exchanges from the kernel (\d+)/g), 20, kernel.stderr);
  assert.equal(total(kernel.stderr, /l7: captures (\d+)/g), 0, kernel.stderr);
  assert.doesNotMatch(kernel.stderr, /lost in the kernel by reason|l7 parse losses and recoveries/);
  assert.equal(total(user.stderr, /HTTP\/1 exchanges from the kernel (\d+)/g), 0, user.stderr);
  // the pipelined three: ordinals 0, 1, 2 on one connection, each side
  for (const role of ['CLIENT', 'SERVER']) {
    const p = kernel.msgs.filter((m) => m.role === role && m.kind === 'REQUEST' && String(m.path).startsWith('/p/'));
    assert.deepEqual(p.map((m) => [m.path, m.stream_id]).sort(), [['/p/1', 0], ['/p/2', 1], ['/p/3', 2]], role);
    assert.equal(new Set(p.map((m) => m.conn_id)).size, 1, role);
  }
  const all = JSON.stringify(kernel.msgs) + kernel.stderr;
  for (const s of ['AB-SECRET', 'AB-QUERY-SECRET', 'AB-COOKIE', 'AB-SET-COOKIE']) assert.ok(!all.includes(s), `${s} leaked`);
});
