/**
 * Issue 10 slice 1, a connection set up before the collector started (a
 * long-lived keep-alive connection of a running service): no connect() or
 * accept() was seen, so the role comes from which direction carries the
 * requests. With HTTP/1 framed in BPF (exchange records) the l7 messages must
 * name the same roles, ordinals and fields as with --l7-kernel-parse off
 * (capture records parsed by tracker.ts): CLIENT on the side that sends the
 * requests, SERVER on the side that receives them, so the spans stage makes
 * client and server spans and links them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { rootOrSkip, runCli, sleep } from '../support/integration.ts';
import { expandL7Records } from '../support/l7-exchange-records.ts';

type Msg = Record<string, unknown>;

async function observe(kernelParse: 'on' | 'off'): Promise<{ msgs: Msg[]; stderr: string }> {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (p: string) => new Promise<void>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
  // the connection and its first exchange exist before the collector does
  await get('/before');
  const c = runCli(['collect', '--stdout', '--signals', 'l7', '--port', String(port), '--stats-interval', '1s', '--l7-kernel-parse', kernelParse]);
  try {
    await c.waitFor(/collecting l7/, 60_000);
    await get('/after/1');
    await get('/after/2');
    await sleep(2500);
    c.child.kill('SIGINT');
    assert.equal(await c.exit, 0, c.stderr());
  } finally {
    c.child.kill('SIGKILL');
    agent.destroy();
    srv.close();
  }
  return { msgs: expandL7Records(c.stdout().split('\n').filter((l) => l.includes('"event":"ringflow.l7.v1"')).map((l) => JSON.parse(l) as Msg)), stderr: c.stderr() };
}

const view = (m: Msg) => `${m.role} ${m.kind} ${m.stream_id} ${m.path ?? m.status}`;

test('a connection set up before the collector: the same roles and ordinals from exchange records as from capture records', { timeout: 300_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const kernel = await observe('on');
  const user = await observe('off');
  const want = ['CLIENT REQUEST 0 /after/1', 'CLIENT REQUEST 1 /after/2', 'CLIENT RESPONSE 0 200', 'CLIENT RESPONSE 1 200',
    'SERVER REQUEST 0 /after/1', 'SERVER REQUEST 1 /after/2', 'SERVER RESPONSE 0 200', 'SERVER RESPONSE 1 200'];
  assert.deepEqual(user.msgs.map(view).sort(), want, `capture records\n${user.stderr}`);
  assert.deepEqual(kernel.msgs.map(view).sort(), want, `exchange records\n${kernel.stderr}`);
  assert.match(kernel.stderr, /HTTP\/1 exchanges from the kernel [1-9]/);
});
