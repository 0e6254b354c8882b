/**
 * The collector's per-connection L7 state (collector/l7/tracker.ts): captures
 * built by hand, as bpf/l7.bpf.c would fill them, in; parsed messages with
 * their connection context out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L7Tracker, l7Key, normalizeAddr } from '../../collector/l7/tracker.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, IPPROTO_UDP, type L7Capture } from '../../collector/l7/capture.ts';
import { createL7Encoder } from '../../collector/l7/encode.ts';
import { decodeRecord } from '../../schemas/index.ts';

const enc = new TextEncoder();
const v4 = (a: string) => Uint8Array.from(a.split('.').map(Number));

function cap(p: Partial<L7Capture> & { data?: string }): L7Capture {
  const payload = p.payload ?? enc.encode(p.data ?? '');
  return {
    cpu: 0, pid: 100, tgid: 100, uid: 0, ts_ns: 1000n, cgroup_id: 1n, comm: 'curl',
    conn_id: 7n, offset: 0, peer_offset: 0, laddr: v4('127.0.0.1'), raddr: v4('127.0.0.1'), fd: 3,
    total_len: payload.length, captured_len: payload.length, lport: 40000, rport: 8080, family: 2,
    direction: L7Direction.EGRESS, syscall: 2, role: L7Role.CLIENT, protocol: IPPROTO_TCP, kind: L7Kind.DATA, flags: 0,
    ...p,
    // a call that took no time unless the case says otherwise
    enter_ns: p.enter_ns ?? p.ts_ns ?? 1000n,
    payload,
  };
}

const REQ = 'GET /users/42?token=s3cret HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer hunter2\r\n\r\n';
const RES = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: sid=hunter3\r\n\r\nhello';

test('HTTP/1 client: request then response, with context, role and a host-free key', () => {
  const t = new L7Tracker();
  const out = [
    ...t.feed(cap({ data: REQ, ts_ns: 10n })),
    ...t.feed(cap({ data: RES, ts_ns: 20n, direction: L7Direction.INGRESS })),
  ];
  assert.deepEqual(out.map((o) => [o.msg.kind, o.msg.method, o.msg.path, o.msg.status, o.msg.start_ns]), [
    ['REQUEST', 'GET', '/users/42?token=REDACTED', null, 10n],
    ['RESPONSE', null, null, 200, 20n],
  ]);
  assert.equal(out[0]!.ctx.role, 'CLIENT');
  assert.equal(out[0]!.ctx.remote_port, 8080);
  assert.equal(t.counters.recognised, 1);
  const json = JSON.stringify(out, (_k, v) => (typeof v === 'bigint' ? String(v) : v));
  for (const secret of ['hunter2', 'hunter3', 's3cret']) assert.ok(!json.includes(secret), secret);
});

test('HTTP/1 server side: requests read (ingress) make the role SERVER when connect/accept was not seen', () => {
  const t = new L7Tracker();
  const out = [
    ...t.feed(cap({ data: REQ, direction: L7Direction.INGRESS, role: L7Role.UNKNOWN })),
    ...t.feed(cap({ data: RES, direction: L7Direction.EGRESS, role: L7Role.UNKNOWN })),
  ];
  assert.deepEqual(out.map((o) => [o.msg.kind, o.ctx.role]), [['REQUEST', 'SERVER'], ['RESPONSE', 'SERVER']]);
});

test('bytes past the capture limit and lost records reach the parser as gaps, not as bytes', () => {
  const t = new L7Tracker();
  const body = 'x'.repeat(10000);
  const head = `POST /upload HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n`;
  const first = enc.encode(head + body).subarray(0, 4096);
  let out = t.feed(cap({ payload: first, total_len: head.length + body.length, captured_len: 4096 }));
  assert.equal(out.length, 1, 'the body was accounted for by the gap');
  assert.equal(out[0]!.msg.body_bytes, 10000);
  assert.equal(t.counters.gapBytes, head.length + body.length - 4096);
  // a record lost in the ring: the next one starts further on
  const next = head.length + body.length;
  const req2 = 'GET /a HTTP/1.1\r\n\r\n';
  out = t.feed(cap({ data: 'xx' + req2, offset: next + 50 }));
  assert.equal(t.counters.lostRecords, 1);
  assert.deepEqual(out.map((o) => o.msg.path), [], 'a gap between messages loses sync: nothing is made up');
  // a syscall that begins with a request line starts the requests again (resync)
  out = t.feed(cap({ data: req2, offset: next + 50 + 2 + req2.length }));
  assert.deepEqual(out.map((o) => o.msg.path), ['/a']);
  assert.equal(t.counters.resyncs, 1);
});

/**
 * A keep-alive HTTP/1 connection of 6 exchanges, seen from one side; `lose`
 * drops capture records (as a full ring would) by index: request i is record
 * 2i, its response 2i + 1 (split: each message is two records, request i
 * 4i and 4i + 1, its response 4i + 2 and 4i + 3). Offsets and peer offsets
 * as the kernel fills them.
 */
function keepAlive(side: 'client' | 'server', lose: number[], split = false) {
  const t = new L7Tracker();
  const reqDir = side === 'client' ? L7Direction.EGRESS : L7Direction.INGRESS;
  const resDir = side === 'client' ? L7Direction.INGRESS : L7Direction.EGRESS;
  let tx = 0;
  let rx = 0;
  const out = [];
  let n = 0;
  for (let i = 0; i < 6; i++) {
    const body = `r${i}`;
    const parts: [number, string][] = [
      [reqDir, `GET /item/${i} HTTP/1.1\r\nHost: a\r\n\r\n`],
      [resDir, `HTTP/1.1 ${400 + i} Err\r\nContent-Length: ${body.length}\r\n\r\n${body}`],
    ];
    for (const [direction, text] of parts) {
      // split: each message in two syscalls, so a loss can fall inside one
      const chunks = split ? [text.slice(0, 9), text.slice(9)] : [text];
      for (const chunk of chunks) {
        const egress = direction === L7Direction.EGRESS;
        const offset = egress ? tx : rx;
        const peer_offset = egress ? rx : tx;
        if (egress) tx += chunk.length;
        else rx += chunk.length;
        if (lose.includes(n)) {
          n++;
          continue;
        }
        n++;
        out.push(...t.feed(cap({ data: chunk, direction, offset, peer_offset, role: L7Role.UNKNOWN })));
      }
    }
  }
  return { t, got: out.map((o) => (o.msg.kind === 'REQUEST' ? o.msg.path : o.msg.status)) };
}

test('HTTP/1 resync after lost records: both directions restart at start lines, responses never paired across the loss', () => {
  const cases: { name: string; side: 'client' | 'server'; lose: number[]; split?: boolean; want: (string | number)[]; resyncs: number }[] = [
    { name: 'nothing lost', side: 'server', lose: [], want: ['/item/0', 400, '/item/1', 401, '/item/2', 402, '/item/3', 403, '/item/4', 404, '/item/5', 405], resyncs: 0 },
    { name: 'a whole exchange lost', side: 'server', lose: [4, 5], want: ['/item/0', 400, '/item/1', 401, '/item/3', 403, '/item/4', 404, '/item/5', 405], resyncs: 1 },
    // /item/2's response is lost; /item/3 was sent before the gap showed, so 403 could answer either: it is
    // skipped, both stay unanswered, and pairing starts again with the next request
    { name: 'a response lost', side: 'client', lose: [5], want: ['/item/0', 400, '/item/1', 401, '/item/2', '/item/3', '/item/4', 404, '/item/5', 405], resyncs: 1 },
    // the server's response to the lost request is written before the next request shows the loss: it goes out
    // alone (the spans stage counts it unmatched), and pairing goes on from /item/3
    { name: 'a request lost', side: 'server', lose: [4], want: ['/item/0', 400, '/item/1', 401, 402, '/item/3', 403, '/item/4', 404, '/item/5', 405], resyncs: 1 },
    // the second half of request 2 lost: no request 2; its response goes out alone; /item/3 starts again
    { name: 'half a request lost', side: 'client', lose: [9], split: true, want: ['/item/0', 400, '/item/1', 401, 402, '/item/3', 403, '/item/4', 404, '/item/5', 405], resyncs: 1 },
    { name: 'two losses', side: 'server', lose: [1, 8], want: ['/item/0', '/item/1', '/item/2', 402, '/item/3', 403, 404, '/item/5', 405], resyncs: 2 },
    // the first response lost: seen as a loss too (the response direction starts at the request's peer offset)
    { name: 'the first response lost', side: 'client', lose: [1], want: ['/item/0', '/item/1', '/item/2', 402, '/item/3', 403, '/item/4', 404, '/item/5', 405], resyncs: 1 },
  ];
  for (const c of cases) {
    const { t, got } = keepAlive(c.side, c.lose, c.split);
    assert.deepEqual(got, c.want, `${c.name}: ${JSON.stringify(got)}`);
    assert.equal(t.counters.resyncs, c.resyncs, `${c.name}: resyncs`);
    assert.equal(t.counters.resynced, c.resyncs, `${c.name}: each resync found its start lines`);
  }
});

test('HTTP/1 resync: an upgraded connection (101) is not resynced by a later gap', () => {
  const t = new L7Tracker();
  t.feed(cap({ data: 'GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' }));
  const res = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  t.feed(cap({ data: res, direction: L7Direction.INGRESS, peer_offset: 60 }));
  const out = t.feed(cap({ data: 'HTTP/1.1 200 OK\r\n\r\n', direction: L7Direction.INGRESS, offset: res.length + 100, peer_offset: 60 }));
  assert.deepEqual(out, []);
  assert.equal(t.counters.resyncs, 0);
});

test('connections that are not HTTP or DNS are given up after a few records; the close frees them', () => {
  const t = new L7Tracker({ detectRecords: 3 });
  for (let i = 0; i < 5; i++) assert.deepEqual(t.feed(cap({ data: '\x00\x00\x00\x10kafka', offset: i * 9, conn_id: 9n })), []);
  assert.equal(t.counters.unrecognised, 1);
  assert.equal(t.size, 1);
  t.feed(cap({ kind: L7Kind.CLOSE, conn_id: 9n, data: '' }));
  assert.equal(t.size, 0);
});

test('a close flushes a response delimited by the end of the connection', () => {
  const t = new L7Tracker();
  t.feed(cap({ data: 'GET / HTTP/1.0\r\n\r\n' }));
  assert.deepEqual(t.feed(cap({ data: 'HTTP/1.0 200 OK\r\n\r\npartial body', direction: L7Direction.INGRESS })), []);
  const out = t.feed(cap({ kind: L7Kind.CLOSE, data: '', ts_ns: 99n }));
  assert.deepEqual(out.map((o) => [o.msg.kind, o.msg.status, o.msg.body_bytes]), [['RESPONSE', 200, 12]]);
});

test('bounded: the least recently used connection is flushed and dropped past maxConnections', () => {
  const t = new L7Tracker({ maxConnections: 2 });
  for (const id of [1n, 2n, 3n]) t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: id }));
  assert.equal(t.size, 2);
  assert.equal(t.counters.evicted, 1);
});

test('bounded: a connection used since is kept; the order is kept to within idleNs / 64', () => {
  const t = new L7Tracker({ maxConnections: 2 }); // idle 300 s: order to within ~4.7 s
  const s = 1_000_000_000n;
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 1n, ts_ns: 0n }));
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 2n, ts_ns: 1n * s }));
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 1n, ts_ns: 10n * s }));
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 3n, ts_ns: 11n * s }));
  assert.equal(t.counters.evicted, 1);
  // 2 went, 1 and 3 stay: closing each of them shrinks the table
  for (const [id, size] of [[2n, 2], [1n, 1], [3n, 0]] as const) {
    t.feed(cap({ kind: L7Kind.CLOSE, data: '', conn_id: id, ts_ns: 12n * s }));
    assert.equal(t.size, size, `after closing ${id}`);
  }
});

test('idle connections are swept', () => {
  const t = new L7Tracker({ idleNs: 100n });
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 1n, ts_ns: 0n }));
  t.feed(cap({ data: 'GET / HTTP/1.1\r\n\r\n', conn_id: 2n, ts_ns: 150n }));
  t.sweep(200n);
  assert.equal(t.size, 1);
});

function dnsQuery(id: number, name: string, response = false): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...enc.encode(l)]);
  return Uint8Array.from([id >> 8, id & 255, response ? 0x81 : 0x01, response ? 0x83 : 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

test('UDP DNS: each datagram is a message; a query sent makes the process the client', () => {
  const t = new L7Tracker();
  const q = t.feed(cap({ protocol: IPPROTO_UDP, payload: dnsQuery(0x1234, 'svc.test'), rport: 53, role: L7Role.UNKNOWN }));
  const r = t.feed(cap({ protocol: IPPROTO_UDP, payload: dnsQuery(0x1234, 'svc.test', true), rport: 53, direction: L7Direction.INGRESS, role: L7Role.UNKNOWN }));
  assert.deepEqual([...q, ...r].map((o) => [o.msg.kind, o.msg.stream_id, o.msg.dns_name, o.msg.dns_rcode, o.ctx.role, o.ctx.transport]), [
    ['REQUEST', 0x1234, 'svc.test', null, 'CLIENT', 'UDP'],
    ['RESPONSE', 0x1234, 'svc.test', 'NXDOMAIN', 'CLIENT', 'UDP'],
  ]);
  assert.equal(t.feed(cap({ protocol: IPPROTO_UDP, data: 'not dns at all', rport: 5000 })).length, 0);
  assert.equal(t.counters.otherDatagrams, 1);
});

test('keys: both ends in a fixed order, v4-mapped addresses as IPv4, no host', () => {
  const rows: [string, number, string, number][] = [
    ['127.0.0.1', 40000, '127.0.0.1', 8080],
    ['127.0.0.1', 8080, '127.0.0.1', 40000],
  ];
  const keys = rows.map(([a, pa, b, pb]) => l7Key('TCP', a, pa, b, pb));
  assert.equal(keys[0], keys[1]);
  assert.equal(keys[0], 'tcp/127.0.0.1:40000-127.0.0.1:8080');
  assert.equal(normalizeAddr('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(normalizeAddr('::1'), '::1');
  assert.equal(l7Key('UDP', '::1', 53, '::1', 5353), 'udp/[::1]:53-[::1]:5353');
});

test('encoded records decode with schemas/l7.avsc, secrets absent', () => {
  const t = new L7Tracker();
  const e = createL7Encoder({ host: 'h1', bootTimeNs: 5n });
  const outs = [...t.feed(cap({ data: REQ })), ...t.feed(cap({ data: RES, direction: L7Direction.INGRESS }))];
  for (const o of outs) {
    const { key, value } = e.encode(o);
    assert.equal(key, 'tcp/127.0.0.1:40000-127.0.0.1:8080');
    const d = decodeRecord(value);
    assert.equal(d.schema.topic, 'ringflow.l7.v1');
    assert.equal(d.value.host, 'h1');
    assert.ok(!value.toString('latin1').includes('hunter'));
  }
  assert.equal((decodeRecord(e.encode(outs[0]!).value).value.headers as Record<string, string>).host, 'api');
});

test('process_name: the process\'s service name, not the thread name (Node names its main thread MainThread)', async () => {
  // the collector's reader (collector/codec.ts): this test runs as `node <this file>`, a script
  const { procIdentities } = await import('../../collector/process-identity.ts');
  const names = (tgid: number) => procIdentities()(tgid).serviceName;
  assert.equal(names(process.pid), (await import('node:path')).basename(process.argv[1]!, '.ts'));
  assert.equal(names(0x3fffffff), '', 'a process that is gone');
  const t = new L7Tracker({ processName: (tgid) => (tgid === 100 ? 'node' : '') });
  const [o] = t.feed(cap({ data: REQ, comm: 'MainThread' }));
  assert.deepEqual([o!.ctx.comm, o!.ctx.process_name], ['MainThread', 'node']);
});

test('ignoreTgids: a process left out (ringflow up\'s own exporter) yields nothing', () => {
  const t = new L7Tracker({ ignoreTgids: new Set([100]) });
  assert.deepEqual(t.feed(cap({ data: REQ })), []);
  assert.equal(t.size, 0);
  assert.equal(new L7Tracker().feed(cap({ data: REQ })).length, 1);
});
