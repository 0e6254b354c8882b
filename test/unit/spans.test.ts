/**
 * Span correlation (processor/spans.ts): pairing per protocol, timeouts and
 * unmatched responses, route templates, W3C traceparent, linking the client
 * and server sides of one exchange, deterministic ids, exactly-once across
 * crashes, the maxPending bound, and the ringflow.spans.v1 schema.
 *
 * Records are built as ringflow.l7.v1 values and passed through the l7
 * schema's encoder and decoder, so the correlator sees exactly what a
 * consumer's decodeRecord gives it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { l7Key } from '../../collector/l7/tracker.ts';
import {
  MAX_RAISES, NUMERIC_SPAN_ATTRIBUTES, SpanCorrelator, connectionKey, encodeSpan, parseTraceparent, routeOf, spanToRecord,
  type L7Record, type Span, type SpanCorrelatorOptions,
} from '../../processor/spans.ts';

const S = 1_000_000_000n;
const MS = 1_000_000n;
const T0 = 1_764_000_000n * S; // wall clock of the first request
const registry = schemaRegistry();
const l7 = registry.byId('l7')!;

interface Side {
  host: string;
  boot: bigint;
  tgid: number;
  conn: number;
  comm: string;
  role: 'CLIENT' | 'SERVER' | 'UNKNOWN';
  transport: 'TCP' | 'UDP';
  local: [string, number];
  remote: [string, number];
}

const BOOT_A = T0 - 86_400n * S;
const BOOT_B = T0 - 3_600n * S;
/** Client process on host a, its server on host b, and a server on host a (same clock as the client). */
const CLIENT: Side = { host: 'a', boot: BOOT_A, tgid: 100, conn: 1, comm: 'curl', role: 'CLIENT', transport: 'TCP', local: ['10.0.0.1', 40000], remote: ['10.0.0.2', 8080] };
const SERVER_B: Side = { host: 'b', boot: BOOT_B, tgid: 200, conn: 7, comm: 'api', role: 'SERVER', transport: 'TCP', local: ['10.0.0.2', 8080], remote: ['10.0.0.1', 40000] };
const SERVER_A: Side = { ...SERVER_B, host: 'a', boot: BOOT_A, tgid: 300, conn: 9 };
const RESOLVER: Side = { host: 'a', boot: BOOT_A, tgid: 400, conn: 5, comm: 'app', role: 'CLIENT', transport: 'UDP', local: ['10.0.0.1', 5353], remote: ['10.0.0.53', 53] };

interface Msg {
  kind: 'REQUEST' | 'RESPONSE';
  protocol?: 'HTTP1' | 'HTTP2' | 'GRPC' | 'DNS';
  id: number;
  /** Wall-clock start and end (end defaults to start + 1 ms). */
  at: bigint;
  end?: bigint;
  method?: string;
  path?: string;
  status?: number;
  headers?: Record<string, string>;
  grpc?: [service: string, method: string];
  grpcStatus?: number;
  dns?: [name: string, type: string];
  rcode?: string;
  remote?: [string, number];
  body?: number;
  truncated?: boolean;
  /** HTTP/1 start-line version ('1.0', '1.1'); '' as records from before the field read. */
  version?: string;
}

/** An l7 record as decodeRecord returns it. */
function rec(side: Side, m: Msg): L7Record {
  const remote = m.remote ?? side.remote;
  const value = {
    ts_ns: m.at - side.boot,
    end_ns: (m.end ?? m.at + MS) - side.boot,
    pid: side.tgid,
    tgid: side.tgid,
    uid: 1000,
    comm: side.comm,
    cgroup_id: 1,
    conn_id: side.conn,
    role: side.role,
    transport: side.transport,
    local_addr: side.local[0],
    local_port: side.local[1],
    remote_addr: remote[0],
    remote_port: remote[1],
    protocol: m.protocol ?? 'HTTP1',
    kind: m.kind,
    stream_id: m.id,
    method: m.kind === 'REQUEST' ? (m.method ?? (m.protocol === 'DNS' ? null : 'GET')) : null,
    path: m.kind === 'REQUEST' ? (m.path ?? (m.grpc ? `/${m.grpc[0]}/${m.grpc[1]}` : m.protocol === 'DNS' ? null : '/')) : null,
    status: m.kind === 'RESPONSE' && m.protocol !== 'DNS' ? (m.status ?? 200) : null,
    headers: m.headers ?? {},
    grpc_service: m.grpc?.[0] ?? null,
    grpc_method: m.grpc?.[1] ?? null,
    grpc_status: m.kind === 'RESPONSE' && m.protocol === 'GRPC' ? (m.grpcStatus ?? 0) : null,
    dns_name: m.dns?.[0] ?? null,
    dns_type: m.dns?.[1] ?? null,
    dns_rcode: m.kind === 'RESPONSE' && m.protocol === 'DNS' ? (m.rcode ?? 'NOERROR') : null,
    dns_answers: m.protocol === 'DNS' ? 1 : null,
    body_bytes: m.body ?? 0,
    truncated: m.truncated ?? false,
    protocol_version: m.version ?? '',
    host: side.host,
    boot_time_ns: side.boot,
  };
  return decodeRecord(encodeRecord(l7, value)).value as unknown as L7Record;
}

const OPTS: SpanCorrelatorOptions = { timeoutNs: 10n * S, linkDelayNs: 1n * S, latenessNs: 0n };

/** Feeds the records at offsets 0.., advancing after each, then flushes by an idle raise far ahead. */
function run(records: readonly L7Record[], opts: SpanCorrelatorOptions = OPTS): { spans: Span[]; c: SpanCorrelator } {
  const c = new SpanCorrelator(opts);
  const spans: Span[] = [];
  records.forEach((r, i) => {
    c.add(r, BigInt(i));
    spans.push(...c.advance());
  });
  spans.push(...c.advance(T0 + 1_000_000n * S));
  return { spans, c };
}

const byName = (spans: readonly Span[], name: string): Span => {
  const s = spans.find((x) => x.name === name);
  assert.ok(s, `no span named ${name} in ${spans.map((x) => x.name).join(', ')}`);
  return s;
};

test('spans: HTTP/1 pipelined requests pair FIFO with their responses (n-th response, n-th request)', () => {
  // [method, target, status, span name, span status]
  const cases: [string, string, number, string, string][] = [
    ['GET', '/users/42?fields=REDACTED', 200, 'GET /users/{id}', 'UNSET'],
    ['POST', '/orders', 404, 'POST /orders', 'ERROR'], // client span: >= 400
    ['DELETE', '/carts/3f2b9c1e-8a4d-4e0b-9c1a-2b3c4d5e6f70', 503, 'DELETE /carts/{id}', 'ERROR'],
    ['BREW', '/pot', 200, 'HTTP /pot', 'UNSET'], // not an RFC 9110 method
  ];
  const records: L7Record[] = [];
  cases.forEach(([method, path], i) => records.push(rec(CLIENT, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * MS, method, path, headers: { host: 'api.local:8080', 'user-agent': 'curl/8' } })));
  cases.forEach(([, , status], i) => records.push(rec(CLIENT, { kind: 'RESPONSE', id: i, at: T0 + BigInt(10 + i) * MS, end: T0 + BigInt(11 + i) * MS, status, body: 10 })));
  const { spans, c } = run(records);
  assert.equal(spans.length, cases.length);
  cases.forEach(([, , status, name, st], i) => {
    const s = byName(spans, name);
    assert.equal(s.status, st, name);
    assert.equal(s.attributes['http.response.status_code'], String(status));
    assert.equal(s.start_ns, T0 + BigInt(i) * MS);
    assert.equal(s.end_ns, T0 + BigInt(11 + i) * MS);
    assert.equal(s.kind, 'CLIENT');
    if (st === 'ERROR') assert.equal(s.attributes['error.type'], String(status));
  });
  assert.deepEqual(byName(spans, 'GET /users/{id}').attributes, {
    'host.name': 'a',
    'http.request.method': 'GET',
    'http.response.body.size': '10',
    'http.response.status_code': '200',
    'network.peer.address': '10.0.0.2',
    'network.peer.port': '8080',
    'network.protocol.name': 'http',
    'network.transport': 'tcp',
    'process.pid': '100',
    'server.address': 'api.local',
    'server.port': '8080',
    'service.name': 'curl',
    'url.full': 'http://api.local:8080/users/42?fields=REDACTED',
    'url.path': '/users/42',
    'url.query': 'fields=REDACTED',
    'url.scheme': 'http',
    'url.template': '/users/{id}',
    'user_agent.original': 'curl/8',
  });
  const other = byName(spans, 'HTTP /pot').attributes;
  assert.equal(other['http.request.method'], '_OTHER');
  assert.equal(other['http.request.method_original'], 'BREW');
  assert.equal(c.counters.requests, 4);
  assert.equal(c.counters.responses, 4);
  assert.equal(c.minPendingOffset(), null);
});

test('spans: HTTP/1 network.protocol.version: the lower of the two start lines\' versions, either alone, none when neither is known', () => {
  // [side, request version, response version (null: no response, timed out), attribute]
  const cases: [Side, string, string | null, string | undefined][] = [
    [CLIENT, '1.1', '1.1', '1.1'],
    [CLIENT, '1.0', '1.1', '1.0'], // curl --http1.0 to node:http, which answers 'HTTP/1.1 200 OK'
    [SERVER_B, '1.0', '1.1', '1.0'],
    [SERVER_B, '1.1', '1.0', '1.0'], // an HTTP/1.0 server: the exchange is 1.0
    [CLIENT, '1.0', null, '1.0'], // no response: the request's
    [CLIENT, '', '1.1', '1.1'], // one side unknown: the other's
    [CLIENT, '', '', undefined], // records from collectors older than the field
  ];
  cases.forEach(([side, reqV, respV, want], i) => {
    const records = [rec(side, { kind: 'REQUEST', id: 0, at: T0, version: reqV })];
    if (respV !== null) records.push(rec(side, { kind: 'RESPONSE', id: 0, at: T0 + 5n * MS, version: respV }));
    const { spans } = run(records);
    assert.equal(spans.length, 1, `case ${i}`);
    assert.equal(spans[0]!.attributes['network.protocol.version'], want, `case ${i}: ${side.role} ${reqV}/${respV}`);
    assert.equal(spans[0]!.attributes['network.protocol.name'], 'http', `case ${i}`);
  });
});

test('spans: HTTP/1 server spans: >= 500 is an error, http.route and client.address set', () => {
  const cases: [number, string][] = [[200, 'UNSET'], [404, 'UNSET'], [499, 'UNSET'], [500, 'ERROR'], [503, 'ERROR']];
  const records: L7Record[] = [];
  cases.forEach(([status], i) => {
    records.push(rec(SERVER_B, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * 10n * MS, path: `/items/${i + 1000}` }));
    records.push(rec(SERVER_B, { kind: 'RESPONSE', id: i, at: T0 + BigInt(i) * 10n * MS + 2n * MS, status }));
  });
  const { spans } = run(records);
  assert.deepEqual(spans.map((s) => s.status), cases.map(([, st]) => st));
  for (const s of spans) {
    assert.equal(s.kind, 'SERVER');
    assert.equal(s.name, 'GET /items/{id}');
    assert.equal(s.attributes['http.route'], '/items/{id}');
    assert.equal(s.attributes['client.address'], '10.0.0.1');
    assert.equal(s.attributes['client.port'], '40000');
    assert.equal(s.attributes['server.address'], '10.0.0.2'); // no Host header: the local end
    assert.equal(s.attributes['server.port'], '8080');
    assert.equal(s.attributes['url.template'], undefined);
  }
});

test('spans: HTTP/1 ordinal hole: requests whose response was missed end as spans marked so, not errors', () => {
  const records = [0, 1, 2].map((i) => rec(CLIENT, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * MS, path: `/p${i}` }));
  records.push(rec(CLIENT, { kind: 'RESPONSE', id: 2, at: T0 + 5n * MS, status: 200 })); // responses 0 and 1 were not captured
  const { spans, c } = run(records);
  assert.deepEqual(spans.map((s) => [s.name, s.status, s.attributes['ringflow.response.missed']]), [
    ['GET /p0', 'UNSET', 'true'],
    ['GET /p1', 'UNSET', 'true'],
    ['GET /p2', 'UNSET', undefined],
  ]);
  assert.equal(c.counters.missedResponses, 2);
  assert.equal(spans[0]!.end_ns, T0 + MS + 0n * MS); // the request's own end: nothing later is known
});

test('spans: HTTP/2 interleaved streams pair by stream id', () => {
  const h2: Side = { ...CLIENT, conn: 2 };
  const ids = [1, 3, 5, 7];
  const records: L7Record[] = ids.map((id, i) => rec(h2, { kind: 'REQUEST', protocol: 'HTTP2', id, at: T0 + BigInt(i) * MS, path: `/s/${id}x` }));
  // responses complete in another order, with their own statuses
  for (const [id, status] of [[5, 201], [1, 200], [7, 500], [3, 204]] as const) {
    records.push(rec(h2, { kind: 'RESPONSE', protocol: 'HTTP2', id, at: T0 + 20n * MS + BigInt(id) * MS, status }));
  }
  const { spans } = run(records);
  const got = new Map(spans.map((s) => [s.attributes['url.path'], s.attributes['http.response.status_code']]));
  assert.deepEqual(Object.fromEntries(got), { '/s/1x': '200', '/s/3x': '204', '/s/5x': '201', '/s/7x': '500' });
  for (const s of spans) assert.equal(s.attributes['network.protocol.version'], '2');
});

test('spans: gRPC names, attributes and error status by side', () => {
  // [role, grpc status, span status, error.type]
  const cases: ['CLIENT' | 'SERVER', number, string, string | undefined][] = [
    ['CLIENT', 0, 'UNSET', undefined],
    ['CLIENT', 5, 'ERROR', 'NOT_FOUND'], // any non-OK code fails the call for the client
    ['SERVER', 5, 'UNSET', undefined], // the server answered as designed
    ['SERVER', 3, 'UNSET', undefined],
    ['SERVER', 2, 'ERROR', 'UNKNOWN'],
    ['SERVER', 4, 'ERROR', 'DEADLINE_EXCEEDED'],
    ['SERVER', 12, 'ERROR', 'UNIMPLEMENTED'],
    ['SERVER', 13, 'ERROR', 'INTERNAL'],
    ['SERVER', 14, 'ERROR', 'UNAVAILABLE'],
    ['SERVER', 15, 'ERROR', 'DATA_LOSS'],
  ];
  cases.forEach(([role, code, status, errorType], i) => {
    const side = role === 'CLIENT' ? CLIENT : SERVER_B;
    const grpc: [string, string] = ['shop.v1.Cart', 'AddItem'];
    const { spans } = run([
      rec(side, { kind: 'REQUEST', protocol: 'GRPC', id: 1, at: T0, grpc, headers: { host: 'cart:50051' } }),
      rec(side, { kind: 'RESPONSE', protocol: 'GRPC', id: 1, at: T0 + MS, grpcStatus: code }),
    ]);
    const s = spans[0]!;
    assert.equal(s.name, 'shop.v1.Cart/AddItem');
    assert.equal(s.protocol, 'GRPC');
    assert.equal(s.status, status, `case ${i}`);
    assert.equal(s.attributes['error.type'], errorType, `case ${i}`);
    assert.equal(s.attributes['rpc.system'], 'grpc');
    assert.equal(s.attributes['rpc.service'], 'shop.v1.Cart');
    assert.equal(s.attributes['rpc.method'], 'AddItem');
    assert.equal(s.attributes['rpc.grpc.status_code'], String(code));
    assert.equal(s.attributes['server.address'], 'cart');
    assert.equal(s.attributes['server.port'], '50051');
    assert.equal(s.attributes['network.protocol.name'], 'http');
    assert.equal(s.attributes['network.protocol.version'], '2');
  });
});

test('spans: IPv4-mapped IPv6 peers are written as IPv4 in the address attributes', () => {
  // a dual-stack server socket reports its IPv4 peers as ::ffff:a.b.c.d
  const dual: Side = { ...SERVER_B, local: ['::ffff:10.0.0.2', 8080], remote: ['::ffff:10.0.0.1', 40000] };
  const server = run([rec(dual, { kind: 'REQUEST', id: 0, at: T0 }), rec(dual, { kind: 'RESPONSE', id: 0, at: T0 + MS })]).spans[0]!;
  assert.equal(server.attributes['client.address'], '10.0.0.1');
  assert.equal(server.attributes['server.address'], '10.0.0.2');
  assert.equal(server.attributes['network.peer.address'], '10.0.0.1');
  const dualClient: Side = { ...CLIENT, local: ['::ffff:10.0.0.1', 40000], remote: ['::ffff:10.0.0.2', 8080] };
  const client = run([rec(dualClient, { kind: 'REQUEST', id: 0, at: T0 }), rec(dualClient, { kind: 'RESPONSE', id: 0, at: T0 + MS })]).spans[0]!;
  assert.equal(client.attributes['server.address'], '10.0.0.2');
  assert.equal(client.attributes['network.peer.address'], '10.0.0.2');
  assert.equal(client.attributes['url.full'], 'http://10.0.0.2:8080/');
  // a real IPv6 peer stays as it is
  const v6: Side = { ...SERVER_B, local: ['fd00::2', 8080], remote: ['fd00::1', 40000] };
  const s6 = run([rec(v6, { kind: 'REQUEST', id: 0, at: T0 }), rec(v6, { kind: 'RESPONSE', id: 0, at: T0 + MS })]).spans[0]!;
  assert.equal(s6.attributes['client.address'], 'fd00::1');
});

test('spans: DNS pairs by (socket, peer, id): one id to two resolvers, answered in the other order', () => {
  const q = (remote: [string, number], at: bigint): L7Record => rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id: 0x1234, at, dns: ['db.svc', 'A'], remote });
  const r = (remote: [string, number], at: bigint, rcode: string): L7Record => rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id: 0x1234, at, dns: ['db.svc', 'A'], remote, rcode });
  const one: [string, number] = ['10.0.0.53', 53];
  const two: [string, number] = ['10.0.0.54', 53];
  const { spans, c } = run([q(one, T0), q(two, T0 + MS), r(two, T0 + 2n * MS, 'NOERROR'), r(one, T0 + 9n * MS, 'SERVFAIL')]);
  assert.equal(c.counters.unmatchedResponses, 0);
  const byPeer = new Map(spans.map((s) => [s.attributes['network.peer.address'], s]));
  assert.equal(byPeer.get('10.0.0.53')!.status, 'ERROR');
  assert.equal(byPeer.get('10.0.0.53')!.attributes['error.type'], 'SERVFAIL');
  assert.equal(byPeer.get('10.0.0.53')!.end_ns, T0 + 10n * MS);
  assert.equal(byPeer.get('10.0.0.54')!.status, 'UNSET');
  assert.equal(byPeer.get('10.0.0.54')!.end_ns, T0 + 3n * MS);
  const s = byPeer.get('10.0.0.54')!;
  assert.equal(s.name, 'DNS A');
  assert.equal(s.protocol, 'DNS');
  assert.equal(s.attributes['dns.question.name'], 'db.svc');
  assert.equal(s.attributes['dns.question.type'], 'A');
  assert.equal(s.attributes['dns.response_code'], 'NOERROR');
  assert.equal(s.attributes['server.address'], '10.0.0.54');
  assert.equal(s.attributes['network.transport'], 'udp');
  assert.equal(s.key, 'udp/10.0.0.1:5353-10.0.0.54:53');
  // [rcode, status, error.type]: every rcode but NOERROR is a failed lookup, NXDOMAIN included (issue 10)
  const rcodes: [string, string, string | undefined][] = [
    ['NOERROR', 'UNSET', undefined], ['NXDOMAIN', 'ERROR', 'NXDOMAIN'], ['SERVFAIL', 'ERROR', 'SERVFAIL'],
    ['REFUSED', 'ERROR', 'REFUSED'], ['FORMERR', 'ERROR', 'FORMERR'], ['RCODE23', 'ERROR', 'RCODE23'],
  ];
  for (const [rcode, status, errorType] of rcodes) {
    const got = run([q(one, T0), r(one, T0 + MS, rcode)]).spans;
    assert.equal(got[0]!.status, status, rcode);
    assert.equal(got[0]!.attributes['error.type'], errorType, rcode);
  }
});

test('spans: a request with no response within the timeout is an ERROR span; its late response is unmatched', () => {
  const other: Side = { ...CLIENT, conn: 3 };
  const records = [
    rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0, path: '/slow' }),
    rec(other, { kind: 'REQUEST', id: 0, at: T0 + 10_500n * MS, path: '/fast' }), // moves the watermark past the deadline
    rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0 + 10_600n * MS, status: 200 }), // too late: /slow already timed out
    rec(other, { kind: 'RESPONSE', id: 0, at: T0 + 10_700n * MS, status: 200 }),
  ];
  const c = new SpanCorrelator(OPTS);
  c.add(records[0]!, 0n);
  assert.deepEqual(c.advance(), []);
  assert.equal(c.minPendingOffset(), 0n);
  c.add(records[1]!, 1n);
  assert.equal(c.counters.timeouts, 1);
  assert.deepEqual(c.advance(), []); // the timed-out span waits linkDelay like any other
  c.add(records[2]!, 2n);
  c.add(records[3]!, 3n);
  assert.equal(c.counters.unmatchedResponses, 1);
  const spans = c.advance(T0 + 100n * S);
  const slow = byName(spans, 'GET /slow');
  assert.equal(slow.status, 'ERROR');
  assert.equal(slow.status_message, 'no response');
  assert.equal(slow.attributes['error.type'], 'timeout');
  assert.equal(slow.end_ns, T0 + 10n * S);
  assert.equal(byName(spans, 'GET /fast').status, 'UNSET');
  assert.equal(c.minPendingOffset(), null);
});

test('spans: a response with no request is counted and dropped', () => {
  const c = new SpanCorrelator(OPTS);
  c.add(rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0, status: 200 }), 0n);
  c.add(rec(CLIENT, { kind: 'RESPONSE', protocol: 'HTTP2', id: 3, at: T0, status: 200 }), 1n);
  c.add(rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id: 9, at: T0 }), 2n);
  // a response that started before the request (same clock) does not answer it
  c.add(rec(CLIENT, { kind: 'REQUEST', protocol: 'HTTP2', id: 5, at: T0 + 5n * MS }), 3n);
  c.add(rec(CLIENT, { kind: 'RESPONSE', protocol: 'HTTP2', id: 5, at: T0 + 4n * MS }), 4n);
  assert.equal(c.counters.unmatchedResponses, 4);
  assert.equal(c.minPendingOffset(), 3n);
  assert.equal(c.advance(T0 + 11n * S).length, 0); // the request timed out, its span still waits linkDelay
  assert.equal(c.advance(T0 + 12n * S).length, 1);
});

test('spans: route templates collapse id-like segments to {id}', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/users', '/users'],
    ['/users/', '/users/'],
    ['/users/42', '/users/{id}'],
    ['/users/42/orders/7?x=REDACTED', '/users/{id}/orders/{id}'],
    ['/items/3.5', '/items/{id}'],
    ['/o/550e8400-e29b-41d4-a716-446655440000', '/o/{id}'],
    ['/o/550E8400-E29B-41D4-A716-446655440000/x', '/o/{id}/x'],
    ['/blob/0123456789abcdef0123456789abcdef01234567', '/blob/{id}'], // sha-1
    ['/doc/507f1f77bcf86cd799439011', '/doc/{id}'], // ObjectId
    ['/commit/a1b2c3d', '/commit/{id}'], // short commit id
    ['/hex/deadbeef', '/hex/deadbeef'], // a hex word without digits stays
    ['/mail/alice@example.com', '/mail/{id}'],
    ['/orders/INV-2024-0001', '/orders/{id}'],
    ['/static/app.3f9a8c1e.js', '/static/{id}'],
    ['/t/AbCdEfGhIjKlMnOpQrSt9', '/t/{id}'], // opaque token
    ['/api/v2/users', '/api/v2/users'],
    ['/oauth2/token', '/oauth2/token'],
    ['/blog/how-to-run-kafka', '/blog/how-to-run-kafka'],
    ['/files/user123', '/files/user123'], // 3 digits: a name, not an id
    ['/search#frag', '/search'],
    ['http://example.com/users/9?q=REDACTED', '/users/{id}'], // absolute form (to a proxy)
    ['http://example.com', '/'],
    ['*', '*'],
  ];
  for (const [target, route] of cases) assert.equal(routeOf(target), route, target);
});

test('spans: a valid traceparent joins its trace; an invalid one starts a new trace', () => {
  const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
  const pid = '00f067aa0ba902b7';
  // [header, joined?]
  const cases: [string, boolean][] = [
    [`00-${tid}-${pid}-01`, true],
    [`00-${tid}-${pid}-00`, true],
    [` 00-${tid}-${pid}-01 `, true],
    [`01-${tid}-${pid}-01-future`, true], // later versions may append fields
    [`00-${tid}-${pid}-01-extra`, false], // version 00 may not
    [`ff-${tid}-${pid}-01`, false],
    [`00-${'0'.repeat(32)}-${pid}-01`, false],
    [`00-${tid}-${'0'.repeat(16)}-01`, false],
    [`00-${tid.toUpperCase()}-${pid}-01`, false],
    [`00-${tid}-${pid}`, false],
    [`00-${tid}-${pid}-01, 00-${tid}-${pid}-01`, false], // two headers joined by the parser
    ['', false],
  ];
  for (const [header, joined] of cases) {
    assert.equal(parseTraceparent(header) !== null, joined, header);
    const { spans, c } = run([
      rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0, headers: { traceparent: header, tracestate: 'congo=t61rcWkgMzE' } }),
      rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0 + MS }),
    ]);
    const s = spans[0]!;
    assert.equal(s.trace_id === tid, joined, header);
    assert.equal(s.parent_span_id, joined ? pid : null, header);
    assert.equal(s.trace_state, joined ? 'congo=t61rcWkgMzE' : null, header);
    assert.equal(c.counters.traceparentJoins, joined ? 1 : 0);
    assert.match(s.trace_id, /^[0-9a-f]{32}$/);
  }
  assert.equal(parseTraceparent(`00-${tid}-${pid}-00`)!.flags, 0);
});

/** One HTTP/1 exchange seen from both ends: [client request, server request, server response, client response]. */
function exchange(server: Side, o: { id?: number; at?: bigint; skew?: bigint; path?: string; serverPath?: string; headers?: Record<string, string> } = {}): L7Record[] {
  const at = o.at ?? T0;
  const id = o.id ?? 0;
  const skew = o.skew ?? 0n; // how far the server host's clock is ahead
  return [
    rec(CLIENT, { kind: 'REQUEST', id, at, path: o.path ?? '/users/1', headers: o.headers ?? {} }),
    rec(server, { kind: 'REQUEST', id, at: at + MS + skew, path: o.serverPath ?? o.path ?? '/users/1', headers: o.headers ?? {} }),
    rec(server, { kind: 'RESPONSE', id, at: at + 3n * MS + skew, end: at + 4n * MS + skew }),
    rec(CLIENT, { kind: 'RESPONSE', id, at: at + 5n * MS, end: at + 6n * MS }),
  ];
}

test('spans: client and server sides of one exchange link: the server span is the client span\'s child', () => {
  const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
  const pid = '00f067aa0ba902b7';
  // [case, server side, records -> partition order, linked?]
  const cases: [string, Side, (r: L7Record[]) => L7Record[], boolean][] = [
    ['same host', SERVER_A, (r) => r, true],
    ['same host, server records first', SERVER_A, (r) => [r[1]!, r[2]!, r[0]!, r[3]!], true],
    ['two hosts', SERVER_B, (r) => r, true],
    ['two hosts, 300 ms skew', SERVER_B, (r) => r, true],
    ['two hosts, 5 s skew', SERVER_B, (r) => r, false],
    ['same host, server clock before the client (impossible on one clock)', SERVER_A, (r) => r, false],
    ['ordinals drifted: another request', SERVER_B, (r) => r, false],
    ['traceparent on both', SERVER_B, (r) => r, true],
  ];
  for (const [name, server, order, linked] of cases) {
    const o: Parameters<typeof exchange>[1] = {};
    if (name.includes('300 ms')) o.skew = 300n * MS;
    if (name.includes('5 s')) o.skew = 5n * S;
    if (name.includes('impossible')) o.skew = -2n * MS;
    if (name.includes('drifted')) o.serverPath = '/users/2';
    if (name.includes('traceparent')) o.headers = { traceparent: `00-${tid}-${pid}-01` };
    const { spans, c } = run(order(exchange(server, o)), { ...OPTS, latenessNs: 0n, linkDelayNs: 20n * S });
    assert.equal(spans.length, 2, name);
    const client = spans.find((s) => s.kind === 'CLIENT')!;
    const srv = spans.find((s) => s.kind === 'SERVER')!;
    assert.equal(srv.parent_span_id === client.span_id, linked, name);
    assert.equal(srv.trace_id === client.trace_id, linked || name.includes('traceparent'), name);
    assert.equal(c.counters.linked, linked ? 1 : 0, name);
    if (name.includes('traceparent')) {
      assert.equal(client.trace_id, tid);
      assert.equal(client.parent_span_id, pid);
    } else if (!linked) {
      assert.equal(srv.parent_span_id, null, name);
    }
  }
});

test('spans: linking waits linkDelay of event time: a counterpart later than that is not linked', () => {
  const [cReq, sReq, sResp, cResp] = exchange(SERVER_B);
  const later = rec({ ...CLIENT, conn: 4 }, { kind: 'REQUEST', id: 0, at: T0 + 3n * S }); // moves the watermark 3 s on
  for (const [delay, linked] of [[5n * S, true], [1n * S, false]] as const) {
    const { spans } = run([cReq!, cResp!, later, sReq!, sResp!], { ...OPTS, linkDelayNs: delay });
    const client = spans.find((s) => s.kind === 'CLIENT' && s.name === 'GET /users/{id}')!;
    const srv = spans.find((s) => s.kind === 'SERVER')!;
    assert.equal(srv.parent_span_id === client.span_id, linked, `linkDelay ${delay}`);
  }
});

test('spans: ids are deterministic functions of the request, whatever its outcome', () => {
  const records = [...exchange(SERVER_B), ...exchange(SERVER_B, { id: 1, at: T0 + S })];
  const a = run(records).spans;
  const b = run(records).spans;
  assert.deepEqual(a, b);
  assert.equal(new Set(a.map((s) => s.span_id)).size, a.length);
  for (const s of a) {
    assert.match(s.span_id, /^[0-9a-f]{16}$/);
    assert.match(s.trace_id, /^[0-9a-f]{32}$/);
  }
  // the same request timed out instead of answered: same ids
  const alone = run([records[0]!]).spans[0]!;
  const answered = a.find((s) => s.kind === 'CLIENT' && s.start_ns === T0)!;
  assert.equal(alone.status, 'ERROR');
  assert.equal(alone.span_id, answered.span_id);
  assert.equal(alone.trace_id, answered.trace_id);
  // another connection: other ids
  const other = run([rec({ ...CLIENT, conn: 99 }, { kind: 'REQUEST', id: 0, at: T0, path: '/users/1' })]).spans[0]!;
  assert.notEqual(other.span_id, answered.span_id);
});

test('spans: maxPending bounds memory: the oldest waiting requests are dropped and counted', () => {
  const h2: Side = { ...CLIENT, conn: 2 };
  const c = new SpanCorrelator({ ...OPTS, maxPending: 4 });
  for (let i = 0; i < 10; i++) c.add(rec(h2, { kind: 'REQUEST', protocol: 'HTTP2', id: 2 * i + 1, at: T0 + BigInt(i) * MS }), BigInt(i));
  assert.equal(c.counters.evicted, 6);
  assert.equal(c.size, 4);
  assert.equal(c.minPendingOffset(), 6n);
  for (let i = 0; i < 10; i++) c.add(rec(h2, { kind: 'RESPONSE', protocol: 'HTTP2', id: 2 * i + 1, at: T0 + 20n * MS }), BigInt(10 + i));
  assert.equal(c.counters.unmatchedResponses, 6);
  assert.equal(c.size, 4); // completed spans waiting linkDelay count too
  const spans = c.advance(T0 + 100n * S);
  assert.deepEqual(spans.map((s) => s.start_ns), [6n, 7n, 8n, 9n].map((i) => T0 + i * MS));
  assert.equal(c.size, 0);
  assert.equal(c.minPendingOffset(), null);
});

// ---------------------------------------------------------------------------
// exactly-once across crashes

/** A seeded stream mixing every case: linked exchanges on two hosts, HTTP/2, DNS, timeouts, late and stray responses, an idle gap. */
function workload(seed: number): { records: L7Record[]; idle: Map<number, bigint> } {
  let x = seed;
  const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const ev: { arrive: bigint; r: L7Record }[] = [];
  const push = (r: L7Record, delay: bigint = 0n): void => {
    ev.push({ arrive: r.boot_time_ns + r.end_ns + delay, r });
  };
  const ordinals = new Map<number, number>();
  for (let i = 0; i < 120; i++) {
    const gap = i >= 60 ? 30n * S : 0n; // the partition goes quiet between the halves
    const t = T0 + gap + BigInt(i) * 150n * MS + BigInt(Math.floor(rnd() * 50)) * MS;
    const conn = 10 + (i % 3);
    switch (i % 6) {
      case 0: case 3: { // HTTP/1 exchange seen on both hosts; the server host's records arrive up to 400 ms late,
        // or (case 3) 1.5 s late: past the link window, so they are emitted unlinked as soon as they arrive
        const n = ordinals.get(conn) ?? 0;
        ordinals.set(conn, n + 1);
        const cl: Side = { ...CLIENT, conn, local: ['10.0.0.1', 41000 + conn] };
        const sv: Side = { ...SERVER_B, conn: conn + 100, remote: ['10.0.0.1', 41000 + conn] };
        const skew = 100n * MS;
        const lag = i % 6 === 3 ? 1_500n * MS : BigInt(Math.floor(rnd() * 400)) * MS;
        const path = `/users/${i}`;
        push(rec(cl, { kind: 'REQUEST', id: n, at: t, path }));
        push(rec(sv, { kind: 'REQUEST', id: n, at: t + MS + skew, path }), lag);
        push(rec(sv, { kind: 'RESPONSE', id: n, at: t + 3n * MS + skew, status: i % 4 === 0 ? 500 : 200 }), lag);
        push(rec(cl, { kind: 'RESPONSE', id: n, at: t + 5n * MS, status: i % 4 === 0 ? 500 : 200 }));
        break;
      }
      case 1: { // HTTP/2 on one host, two streams answered out of order
        const cl: Side = { ...CLIENT, conn: 500 + i, local: ['10.0.0.1', 42000 + i] };
        push(rec(cl, { kind: 'REQUEST', protocol: 'HTTP2', id: 1, at: t, path: '/a' }));
        push(rec(cl, { kind: 'REQUEST', protocol: 'HTTP2', id: 3, at: t + MS, path: '/b' }));
        push(rec(cl, { kind: 'RESPONSE', protocol: 'HTTP2', id: 3, at: t + 2n * MS }));
        push(rec(cl, { kind: 'RESPONSE', protocol: 'HTTP2', id: 1, at: t + 4n * MS, status: 503 }));
        break;
      }
      case 2: { // DNS: answered, or answered after the timeout (late), or never
        const id = i * 7;
        push(rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id, at: t, dns: ['db.svc', 'AAAA'] }));
        if (i === 50) {
          // answered in time, but the answer reaches Kafka after the quiet gap: the idle raise has timed the request out
          push(rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id, at: t + 2n * MS }), 29n * S);
        } else if (i % 4 === 2) push(rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id, at: t + 2n * MS, rcode: 'NXDOMAIN' }));
        else if (i % 12 === 5 || i % 12 === 8) push(rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id, at: t + 2n * MS }), 3n * S);
        break;
      }
      case 4: // a stray response
        push(rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id: 60000 + i, at: t }));
        break;
      case 5: { // a request that never gets an answer
        const cl: Side = { ...CLIENT, conn: 900 + i, local: ['10.0.0.1', 43000 + i] };
        push(rec(cl, { kind: 'REQUEST', id: 0, at: t, path: '/never' }));
        break;
      }
    }
  }
  ev.sort((a, b) => (a.arrive < b.arrive ? -1 : a.arrive > b.arrive ? 1 : 0));
  const records = ev.map((e) => e.r);
  // the consumer raises the watermark by its clock once, in the quiet gap: enough to time out
  // request 50 (deadline ~9.5 s), not request 59 (~10.85 s), which stays pending across the raise
  const firstLate = ev.findIndex((e) => e.arrive > T0 + 25n * S);
  assert.equal(ev[firstLate]!.r.kind, 'RESPONSE');
  return { records, idle: new Map([[firstLate, T0 + 10n * S]]) };
}

const WOPTS: SpanCorrelatorOptions = { timeoutNs: 2n * S, linkDelayNs: 500n * MS, latenessNs: 200n * MS };
const FLUSH = T0 + 1_000_000n * S;

interface Consumer {
  /** Spans of committed transactions. */
  committed: Span[];
  incarnations: number;
  maxCheckpoint: number;
}

/**
 * A consumer: reads from the committed offset with the committed checkpoint,
 * advances every `batch` records (and by its clock at the idle points),
 * producing each advance's spans and committing minPendingOffset() ?? position
 * with checkpoint() in one transaction. A crash before record k aborts the
 * open transaction and restarts from the last commit.
 */
function consume(records: readonly L7Record[], idle: ReadonlyMap<number, bigint>, crashes: readonly number[], batch: (incarnation: number) => number): Consumer {
  const out: Consumer = { committed: [], incarnations: 0, maxCheckpoint: 0 };
  let commit = { offset: 0n, cp: undefined as string | undefined };
  const todo = [...crashes];
  for (;;) {
    const inc = out.incarnations++;
    const c = new SpanCorrelator(commit.cp === undefined ? WOPTS : { ...WOPTS, checkpoint: commit.cp });
    const b = batch(inc);
    let crashed = false;
    const produce = (spans: Span[]): void => {
      const cp = c.checkpoint();
      out.maxCheckpoint = Math.max(out.maxCheckpoint, Buffer.byteLength(cp));
      out.committed.push(...spans);
      commit = { offset: c.minPendingOffset() ?? c.position, cp };
    };
    for (let i = Number(commit.offset); i < records.length; i++) {
      if (todo.length > 0 && i === todo[0]) {
        todo.shift();
        crashed = true;
        break;
      }
      const w = idle.get(i);
      if (w !== undefined) produce(c.advance(w));
      c.add(records[i]!, BigInt(i));
      if ((i + 1) % b === 0) produce(c.advance());
    }
    if (crashed) continue;
    produce(c.advance(FLUSH));
    return out;
  }
}

const sortSpans = (s: readonly Span[]): Span[] => [...s].sort((a, b) => (a.span_id < b.span_id ? -1 : a.span_id > b.span_id ? 1 : 0));

test('spans: crash and replay from minPendingOffset + checkpoint emit every span exactly once', () => {
  const { records, idle } = workload(7);
  const whole = consume(records, idle, [], () => 5);
  const spans = whole.committed;
  // the workload exercises every path
  const c = new SpanCorrelator(WOPTS);
  records.forEach((r, i) => {
    const w = idle.get(i);
    if (w !== undefined) c.advance(w);
    c.add(r, BigInt(i));
  });
  c.advance(FLUSH);
  assert.ok(c.counters.linked >= 10, `linked ${c.counters.linked}`);
  assert.ok(c.counters.timeouts >= 10, `timeouts ${c.counters.timeouts}`);
  assert.ok(c.counters.unmatchedResponses >= 10, `unmatched ${c.counters.unmatchedResponses}`);
  assert.equal(new Set(spans.map((s) => s.span_id)).size, spans.length, 'no duplicate in the uninterrupted run');
  // advancing after every record or every 17: the same spans (decisions follow the records, not the calls)
  assert.deepEqual(sortSpans(consume(records, idle, [], () => 1).committed), sortSpans(spans));
  assert.deepEqual(sortSpans(consume(records, idle, [], () => 17).committed), sortSpans(spans));

  const n = records.length;
  const idleAt = [...idle.keys()][0]!;
  const crashSets: number[][] = [
    [1], [6], [23], [Math.floor(n / 3)], [idleAt], [idleAt + 1], [idleAt + 3], [n - 1],
    [40, 41], [30, 31, 32], [50, 90, 130, 170, 210], // crashes during a replay, too
    Array.from({ length: Math.floor(n / 11) }, (_, k) => 11 * (k + 1)),
  ];
  for (const crashes of crashSets) {
    for (const batch of [(k: number) => (k === 0 ? 5 : 3), () => 5, (k: number) => 1 + (k % 4)]) {
      const got = consume(records, idle, crashes, batch);
      assert.ok(got.incarnations > 1, `crashes ${crashes}`);
      assert.equal(new Set(got.committed.map((s) => s.span_id)).size, got.committed.length, `duplicates with crashes at ${crashes}`);
      assert.deepEqual(sortSpans(got.committed), sortSpans(spans), `crashes at ${crashes}`);
      assert.ok(got.maxCheckpoint < 1024, `checkpoint of ${got.maxCheckpoint} bytes`);
    }
  }
});

test('spans: a restored instance ignores idle raises until it has re-read what its checkpoint covers', () => {
  const records = [rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0 }), rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0 + MS })];
  const first = new SpanCorrelator(OPTS);
  records.forEach((r, i) => first.add(r, BigInt(i)));
  assert.deepEqual(first.advance(), []); // the span waits linkDelay
  const cp = first.checkpoint();
  assert.equal(first.minPendingOffset(), 0n);
  const again = new SpanCorrelator({ ...OPTS, checkpoint: cp });
  assert.equal(again.position, 0n);
  assert.deepEqual(again.advance(T0 + 1000n * S), []); // an idle raise before re-reading: ignored, it would time the request out
  records.forEach((r, i) => again.add(r, BigInt(i)));
  const spans = again.advance(T0 + 1000n * S); // now past what the checkpoint covered: honoured
  assert.deepEqual(spans.map((s) => s.status), ['UNSET']);
  assert.equal(again.counters.timeouts, 0);
});

test('spans: checkpoint stays under 1 KiB with the most idle raises it carries', () => {
  const c = new SpanCorrelator(WOPTS);
  c.add(rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0, path: '/' }), 0n); // holds the commit point
  for (let i = 1; i <= MAX_RAISES + 5; i++) {
    c.add(rec({ ...CLIENT, conn: 50 + i }, { kind: 'RESPONSE', id: 0, at: T0 }), BigInt(i));
    c.advance(T0 + BigInt(i) * 100n * MS); // each above the watermark, below the request's deadline
  }
  const cp = c.checkpoint();
  assert.ok(Buffer.byteLength(cp) < 1024, `${Buffer.byteLength(cp)} bytes`);
  assert.equal((JSON.parse(cp) as { raises: unknown[] }).raises.length, MAX_RAISES);
  assert.equal(c.counters.raisesDropped, 5);
  assert.equal(JSON.parse(cp).from, '0');
  assert.throws(() => new SpanCorrelator({ ...WOPTS, checkpoint: JSON.stringify({ v: 2 }) }));
});

// ---------------------------------------------------------------------------
// schema

test('spans: ringflow.spans.v1 is registered, documented, and round-trips a span through the wire format', () => {
  const schema = registry.byTopic('ringflow.spans.v1');
  assert.ok(schema);
  assert.equal(schema.id, 'spans');
  assert.equal(schema.key, 'connection');
  assert.equal(schema.struct, null);
  for (const f of schema.schema.fields) assert.ok(f.doc && f.doc.length > 10, `${f.name} has no doc`);
  const { spans } = run([
    ...exchange(SERVER_B, { headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'a=b' } }),
    rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id: 1, at: T0, dns: ['x', 'A'] }),
  ]);
  assert.equal(spans.length, 3);
  for (const s of spans) {
    const { key, value } = encodeSpan(s);
    assert.equal(key, s.key);
    const d = decodeRecord(value);
    assert.equal(d.schema, schema);
    assert.deepEqual({ ...d.value }, spanToRecord(s));
    assert.ok(schema.type.isValid(spanToRecord(s)));
    for (const k of Object.keys(s.attributes)) {
      if (NUMERIC_SPAN_ATTRIBUTES.has(k)) assert.match(s.attributes[k]!, /^\d+$/, k);
    }
  }
});

test('spans: the span key is the l7 records\' connection key, the same from both ends', () => {
  const cases: [string, string, number, string, number][] = [
    ['TCP', '10.0.0.1', 40000, '10.0.0.2', 8080],
    ['TCP', '10.0.0.2', 8080, '10.0.0.1', 40000],
    ['UDP', '::1', 5353, 'fe80::1', 53],
    ['TCP', '', 0, '', 0],
  ];
  for (const [t, a, pa, b, pb] of cases) {
    assert.equal(connectionKey(t, a, pa, b, pb), l7Key(t as 'TCP' | 'UDP', a, pa, b, pb));
    assert.equal(connectionKey(t, a, pa, b, pb), connectionKey(t, b, pb, a, pa));
  }
});

test('spans: a deep pipelined HTTP/1 backlog costs what as many shallow ones cost (no indexOf + splice per request)', () => {
  // The same 60 k requests and responses, pipelined on one connection or on 30 (2 k deep
  // each): linear removal takes the same time for both, a removal that scans or shifts the
  // connection's queue costs more the deeper it is. Same records, same spans, same garbage:
  // a ratio the machine's load does not bend much (measured on a loaded 2-core machine:
  // 1.1-1.2 now, 3.2-4.4 with the old indexOf + splice). Requests wait, then their
  // responses come in order; only that part is timed.
  const TOTAL = 60_000;
  // one decoded record of each kind, copied with its connection, ordinal and time
  const req = rec(CLIENT, { kind: 'REQUEST', id: 1, at: T0 });
  const resp = rec(CLIENT, { kind: 'RESPONSE', id: 1, at: T0 });
  const at = (r: L7Record, conn: number, id: number, t: number): L7Record =>
    ({ ...r, conn_id: BigInt(conn), stream_id: BigInt(id), ts_ns: r.ts_ns + BigInt(t) * 1000n, end_ns: r.end_ns + BigInt(t) * 1000n });
  const time = (total: number, conns: number): number => {
    const depth = total / conns;
    const c = new SpanCorrelator({ ...OPTS, timeoutNs: 1000n * S, maxPending: 2 * total });
    let off = 0n;
    for (let k = 0; k < conns; k++) for (let i = 1; i <= depth; i++) c.add(at(req, k, i, i), off++);
    const answers: L7Record[] = [];
    for (let k = 0; k < conns; k++) for (let i = 1; i <= depth; i++) answers.push(at(resp, k, i, depth + i));
    const t = performance.now();
    for (const r of answers) c.add(r, off++);
    const spans = c.advance(T0 + 10_000n * S);
    const ms = performance.now() - t;
    assert.equal(spans.length, total);
    return ms;
  };
  time(3_000, 3); // warm-up
  const ratio = time(TOTAL, 1) / time(TOTAL, 30);
  assert.ok(ratio < 2.5, `60 k requests pipelined on one connection took ${ratio.toFixed(1)} times as long as on 30`);
});

/**
 * Soak finding 5: an idle raise is a guess by the processor's clock that a
 * quiet partition will bring nothing older. During a broker outage the
 * collector holds its records and delivers them afterwards, older than that
 * raise: such a request must wait for its response (the next records) and
 * time out only by the records' own watermark or by a later raise.
 */
test('spans: records held back past an idle raise (broker outage) pair; only their own time or a later raise times them out', () => {
  const at = (conn: number): Side => ({ ...CLIENT, conn, local: ['10.0.0.1', 40000 + conn] });
  const srv: Side = { ...SERVER_A, conn: 92, remote: ['10.0.0.1', 40002] }; // at(2)'s server, same clock
  const records = [
    rec(at(1), { kind: 'REQUEST', id: 0, at: T0, path: '/lost' }), // never answered: the raise times it out
    // held back, delivered after the raise to T0 + 10 s, all older than it; both sides of /held
    rec(at(2), { kind: 'REQUEST', id: 0, at: T0 + 1n * S, path: '/held' }),
    rec(srv, { kind: 'REQUEST', id: 0, at: T0 + 1_001n * MS, path: '/held' }),
    rec(srv, { kind: 'RESPONSE', id: 0, at: T0 + 1_090n * MS, status: 200 }),
    rec(at(2), { kind: 'RESPONSE', id: 0, at: T0 + 1_100n * MS, status: 200 }),
    rec(at(3), { kind: 'REQUEST', id: 0, at: T0 + 2n * S, path: '/late-lost' }), // no answer: times out by the records' time
    rec(at(4), { kind: 'REQUEST', id: 0, at: T0 + 2_500n * MS, path: '/held2' }),
    rec(at(4), { kind: 'RESPONSE', id: 0, at: T0 + 2_600n * MS, status: 200 }),
    rec(at(5), { kind: 'REQUEST', id: 0, at: T0 + 5_500n * MS, path: '/last' }), // its time passes /late-lost's deadline
  ];
  const idle = new Map<number, bigint>([[1, T0 + 10n * S]]);
  const whole = consume(records, idle, [], () => 1);
  const status = (spans: readonly Span[]): Record<string, string> =>
    Object.fromEntries(spans.map((s) => [`${s.kind} ${s.name}`, s.attributes['error.type'] === 'timeout' ? 'timeout' : s.status]));
  assert.deepEqual(status(whole.committed), {
    'CLIENT GET /lost': 'timeout', 'CLIENT GET /held': 'UNSET', 'SERVER GET /held': 'UNSET', 'CLIENT GET /late-lost': 'timeout',
    'CLIENT GET /held2': 'UNSET', 'CLIENT GET /last': 'timeout',
  });
  // their link wait ran on their own time: the server side is still the child of the client side
  const client = whole.committed.find((s) => s.kind === 'CLIENT' && s.name === 'GET /held')!;
  const server = whole.committed.find((s) => s.kind === 'SERVER')!;
  assert.deepEqual([server.trace_id, server.parent_span_id], [client.trace_id, client.span_id]);
  // /late-lost timed out when /last moved the records' watermark past its deadline, before the flush
  const c = new SpanCorrelator(WOPTS);
  c.add(records[0]!, 0n);
  c.advance(T0 + 10n * S);
  assert.equal(c.counters.timeouts, 1);
  records.slice(1, 8).forEach((r, i) => c.add(r, BigInt(i + 1)));
  assert.equal(c.counters.timeouts, 1, 'a record older than the raise is not timed out by it');
  assert.equal(c.counters.unmatchedResponses, 0);
  c.add(records[8]!, 8n);
  assert.equal(c.counters.timeouts, 2);
  // a later raise times out what arrived before it
  const d = new SpanCorrelator(WOPTS);
  d.add(records[0]!, 0n);
  d.advance(T0 + 10n * S);
  d.add(records[5]!, 1n);
  assert.equal(d.counters.timeouts, 1);
  d.advance(T0 + 10n * S + MS);
  assert.equal(d.counters.timeouts, 2);
  // exactly once across crashes, whatever the batching
  for (const crashes of [[1], [2], [3], [4], [5], [7], [8], [2, 4], [3, 5, 7], [1, 3, 5, 8]]) {
    for (const batch of [() => 1, () => 2, (k: number) => 1 + (k % 3)]) {
      const got = consume(records, idle, crashes, batch);
      assert.deepEqual(sortSpans(got.committed), sortSpans(whole.committed), `crashes at ${crashes}`);
    }
  }
});

test('spans: a stretch of records held back past an idle raise: exactly once across crashes, no answered request timed out', () => {
  for (const seed of [7, 11, 23]) {
    const { records: all } = workload(seed);
    // an "outage": what arrived in [T0 + 4 s, T0 + 8 s) reaches the consumer only after a raise by its clock to T0 + 12 s
    const arrive = (r: L7Record): bigint => r.boot_time_ns + r.end_ns;
    const early = all.filter((r) => arrive(r) < T0 + 4n * S);
    const held = all.filter((r) => arrive(r) >= T0 + 4n * S && arrive(r) < T0 + 8n * S);
    const rest = all.filter((r) => arrive(r) >= T0 + 8n * S);
    const records = [...early, ...held, ...rest];
    const idle = new Map([[early.length, T0 + 12n * S]]);
    const whole = consume(records, idle, [], () => 5);
    const spans = whole.committed;
    assert.ok(held.length > 20, `${held.length} held`);
    assert.equal(new Set(spans.map((s) => s.span_id)).size, spans.length, 'no duplicate in the uninterrupted run');
    // every /users request is answered within 1.5 s (WOPTS's timeout is 2 s)
    const users = spans.filter((s) => s.name.endsWith('/users/{id}'));
    assert.ok(users.length >= 80, `${users.length} /users spans`);
    assert.deepEqual(users.filter((s) => s.attributes['error.type'] === 'timeout').map((s) => s.attributes['url.path']), []);
    // the linked ones of the held stretch too: every server span whose client span came in time has it as parent
    assert.ok(spans.filter((s) => s.kind === 'SERVER' && s.parent_span_id !== null).length >= 10);
    assert.deepEqual(sortSpans(consume(records, idle, [], () => 1).committed), sortSpans(spans));
    const n = records.length;
    const at = early.length;
    for (const crashes of [[at], [at + 1], [at + 2], [at + 7], [at + held.length - 1], [at + held.length], [at, at + 3, at + 9], [Math.floor(n / 2)], Array.from({ length: Math.floor(n / 13) }, (_, k) => 13 * (k + 1))]) {
      for (const batch of [() => 5, (k: number) => 1 + (k % 4)]) {
        const got = consume(records, idle, crashes, batch);
        assert.equal(new Set(got.committed.map((s) => s.span_id)).size, got.committed.length, `duplicates with crashes at ${crashes} (seed ${seed})`);
        assert.deepEqual(sortSpans(got.committed), sortSpans(spans), `crashes at ${crashes} (seed ${seed})`);
      }
    }
  }
});

test('spans: a request times out by its own host\'s records or a raise after it, not by another host far ahead on its partition', () => {
  const at = (side: Side, conn: number): Side => ({ ...side, conn, local: [side.local[0], 40000 + conn] });
  const A = at(CLIENT, 1);
  const A2 = at(CLIENT, 2); // same host and boot, another connection
  const B: Side = { ...at(CLIENT, 3), host: 'b', boot: BOOT_B, local: ['10.0.0.3', 40003] };
  const A_REBOOTED: Side = { ...at(CLIENT, 4), boot: BOOT_A + 5n * S };
  const req = (side: Side, path: string, t: bigint) => rec(side, { kind: 'REQUEST', id: 0, at: t, path });
  const resp = (side: Side, t: bigint) => rec(side, { kind: 'RESPONSE', id: 0, at: t, status: 200 });
  // WOPTS: timeout 2 s, lateness 200 ms, hostLag the default 5 min
  const cases: [string, L7Record[], Map<number, bigint>, Record<string, string>][] = [
    ['another host 60 s ahead (it caught up first after an outage): the request waits, its held response pairs',
      [req(A, '/held', T0), req(B, '/b', T0 + 60n * S), resp(B, T0 + 60n * S + MS), resp(A, T0 + 500n * MS)],
      new Map(), { 'GET /held': 'UNSET', 'GET /b': 'UNSET' }],
    ['its own host\'s later records (another connection) time it out: the response after them is unmatched',
      [req(A, '/lost', T0), req(B, '/b', T0 + 60n * S), resp(B, T0 + 60n * S + MS), req(A2, '/own', T0 + 2_300n * MS), resp(A2, T0 + 2_301n * MS), resp(A, T0 + 500n * MS)],
      new Map(), { 'GET /lost': 'timeout', 'GET /b': 'UNSET', 'GET /own': 'UNSET' }],
    ['own records not yet past deadline + lateness: still waiting',
      [req(A, '/held', T0), req(B, '/b', T0 + 60n * S), req(A2, '/own', T0 + 2_100n * MS), resp(A2, T0 + 2_101n * MS), resp(B, T0 + 60n * S + MS), resp(A, T0 + 1_900n * MS)],
      new Map(), { 'GET /held': 'UNSET', 'GET /b': 'UNSET', 'GET /own': 'UNSET' }],
    ['an idle raise made after it arrived times it out',
      [req(A, '/lost', T0), resp(A, T0 + 500n * MS)],
      new Map([[1, T0 + 10n * S]]), { 'GET /lost': 'timeout' }],
    ['arrived after a raise and after another host far ahead: neither times it out',
      [req(B, '/b', T0 + 60n * S), resp(B, T0 + 60n * S + MS), req(A, '/held', T0), resp(A, T0 + 500n * MS)],
      new Map([[2, T0 + 61n * S]]), { 'GET /held': 'UNSET', 'GET /b': 'UNSET' }],
    ['another boot of the same host is another clock',
      [req(A, '/held', T0), req(A_REBOOTED, '/r', T0 + 60n * S), resp(A_REBOOTED, T0 + 60n * S + MS), resp(A, T0 + 500n * MS)],
      new Map(), { 'GET /held': 'UNSET', 'GET /r': 'UNSET' }],
    ['a host lagging the partition by more than hostLag (gone silent) is overruled by the others\' time',
      [req(A, '/lost', T0), req(B, '/b', T0 + 400n * S), resp(B, T0 + 400n * S + MS), resp(A, T0 + 500n * MS)],
      new Map(), { 'GET /lost': 'timeout', 'GET /b': 'UNSET' }],
  ];
  const outcome = (spans: readonly Span[]): Record<string, string> =>
    Object.fromEntries(spans.map((s) => [s.name, s.attributes['error.type'] === 'timeout' ? 'timeout' : s.status]));
  for (const [what, records, idle, want] of cases) {
    const whole = consume(records, idle, [], () => 1);
    assert.deepEqual(outcome(whole.committed), want, what);
    // decided by the records and the logged raises only: the same across crashes, whatever the batching
    for (let k = 1; k < records.length; k++) {
      for (const batch of [() => 1, () => 2]) {
        assert.deepEqual(sortSpans(consume(records, idle, [k], batch).committed), sortSpans(whole.committed), `${what}: crash at ${k}`);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// EXCHANGE records: a request and its response paired by the kernel, one record

/** The EXCHANGE record a collector pairing in the kernel writes for `req` and its `resp` (none: not answered), as a consumer decodes it. */
function exchangeOf(req: L7Record, resp: L7Record | null, outcome: string = resp ? 'RESPONDED' : 'CLOSED'): L7Record {
  const r = resp as (L7Record & { dns_answers: number | null }) | null;
  const value = {
    ...(req as unknown as Record<string, unknown>),
    kind: 'EXCHANGE',
    status: r?.status ?? null,
    grpc_status: r?.grpc_status ?? null,
    dns_rcode: r?.dns_rcode ?? null,
    dns_answers: r ? r.dns_answers : (req as L7Record & { dns_answers: number | null }).dns_answers,
    resp_start_ns: r?.ts_ns ?? null,
    resp_end_ns: r?.end_ns ?? null,
    resp_body_bytes: r?.body_bytes ?? null,
    resp_headers: r?.headers ?? {},
    resp_truncated: r?.truncated ?? false,
    resp_protocol_version: r?.protocol_version ?? '',
    outcome,
  };
  return decodeRecord(encodeRecord(l7, value)).value as unknown as L7Record;
}

/**
 * The same conversation as EXCHANGE records: each REQUEST with the first
 * RESPONSE of its observer and id after it becomes one record at that
 * response's place (the kernel emits an exchange when its response ends); a
 * REQUEST never answered becomes an EXCHANGE without a response at its own
 * place. `which` picks the requests to turn (default all: the rest stay pairs).
 */
function asExchanges(records: readonly L7Record[], which: (r: L7Record) => boolean = () => true): L7Record[] {
  return exchangesFrom(records, which).records;
}

/** asExchanges, and the index in `records` each output record stands at. */
function exchangesFrom(records: readonly L7Record[], which: (r: L7Record) => boolean): { records: L7Record[]; from: number[] } {
  const id = (r: L7Record): string => [r.host, r.boot_time_ns, r.tgid, r.conn_id, r.protocol, r.protocol === 'DNS' ? `${r.remote_addr}:${r.remote_port}` : '', r.stream_id].join('|');
  const waiting = new Map<string, L7Record[]>();
  const answerOf = new Map<L7Record, L7Record>();
  const requestOf = new Map<L7Record, L7Record>();
  for (const r of records) {
    if (r.kind === 'REQUEST') {
      if (!which(r)) continue;
      const q = waiting.get(id(r)) ?? [];
      waiting.set(id(r), [...q, r]);
    } else {
      const q = waiting.get(id(r));
      const req = q?.shift();
      if (req) {
        answerOf.set(req, r);
        requestOf.set(r, req);
      }
    }
  }
  const out: L7Record[] = [];
  const from: number[] = [];
  records.forEach((r, i) => {
    if (r.kind === 'REQUEST' && which(r)) {
      if (answerOf.has(r)) return;
      out.push(exchangeOf(r, null));
    } else if (r.kind === 'RESPONSE' && requestOf.has(r)) out.push(exchangeOf(requestOf.get(r)!, r));
    else out.push(r);
    from.push(i);
  });
  return { records: out, from };
}

test('spans: a DNS EXCHANGE whose query was sent again carries ringflow.dns.retries; one sent once does not', () => {
  const q = rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id: 0x77, at: T0, dns: ['db.svc', 'A'] });
  const a = rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id: 0x77, at: T0 + 5n * S, rcode: 'NOERROR', dns: ['db.svc', 'A'] });
  const x = exchangeOf(q, a);
  for (const [retries, want] of [[2, '2'], [0, undefined], [null, undefined]] as const) {
    const { spans } = run([{ ...x, dns_retries: retries } as L7Record]);
    assert.equal(spans.length, 1);
    assert.equal(spans[0]!.attributes['ringflow.dns.retries'], want, `dns_retries ${retries}`);
    assert.equal(spans[0]!.start_ns, T0, 'timed from the first send');
  }
});

test('spans: EXCHANGE records give the spans, links and counters of their REQUEST + RESPONSE pairs', () => {
  const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
  const pid = '00f067aa0ba902b7';
  const LINK: SpanCorrelatorOptions = { ...OPTS, linkDelayNs: 20n * S };
  const pipelined: L7Record[] = [];
  (['GET /users/42?fields=REDACTED 200', 'POST /orders 404', 'DELETE /carts/3f2b9c1e-8a4d-4e0b-9c1a-2b3c4d5e6f70 503', 'BREW /pot 200'] as const).forEach((c, i) => {
    const [method, path] = c.split(' ');
    pipelined.push(rec(CLIENT, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * MS, method, path, headers: { host: 'api.local:8080', 'user-agent': 'curl/8' }, version: '1.1' }));
  });
  [200, 404, 503, 200].forEach((status, i) => pipelined.push(rec(CLIENT, { kind: 'RESPONSE', id: i, at: T0 + BigInt(10 + i) * MS, end: T0 + BigInt(11 + i) * MS, status, body: 10, version: '1.1' })));
  const server = [200, 404, 500, 503].flatMap((status, i) => [
    rec(SERVER_B, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * 10n * MS, path: `/items/${i + 1000}`, method: 'PUT', body: 7, version: '1.0' }),
    rec(SERVER_B, { kind: 'RESPONSE', id: i, at: T0 + BigInt(i) * 10n * MS + 2n * MS, status, version: '1.1', headers: { 'content-type': 'text/plain' } }),
  ]);
  const q = (remote: [string, number], at: bigint, id = 0x1234): L7Record => rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id, at, dns: ['db.svc', 'A'], remote });
  const a = (remote: [string, number], at: bigint, rcode: string, id = 0x1234): L7Record => rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id, at, dns: ['db.svc', 'A'], remote, rcode });
  const one: [string, number] = ['10.0.0.53', 53];
  const two: [string, number] = ['10.0.0.54', 53];
  const other: Side = { ...CLIENT, conn: 3 };
  const isClient = (r: L7Record): boolean => r.role === 'CLIENT';
  // [case, records as pairs, which requests become exchanges, options, spans expected]
  const cases: [string, L7Record[], ((r: L7Record) => boolean) | undefined, SpanCorrelatorOptions, number][] = [
    ['HTTP/1 client, pipelined: names, errors >= 400, _OTHER method, url.*, body sizes, version', pipelined, undefined, OPTS, 4],
    ['HTTP/1 server: errors >= 500, http.route, client.address, request body, 1.0/1.1 -> 1.0', server, undefined, OPTS, 4],
    ['HTTP/1 ordinal hole: the requests before an answered one are missed', [
      ...[0, 1, 2].map((i) => rec(CLIENT, { kind: 'REQUEST', id: i, at: T0 + BigInt(i) * MS, path: `/p${i}` })),
      rec(CLIENT, { kind: 'RESPONSE', id: 2, at: T0 + 5n * MS, status: 200 })], undefined, OPTS, 3],
    ['HTTP/1 no response: an ERROR span \'no response\' at the timeout', [
      rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0, path: '/slow' }),
      rec(other, { kind: 'REQUEST', id: 0, at: T0 + 10_500n * MS, path: '/fast' }),
      rec(other, { kind: 'RESPONSE', id: 0, at: T0 + 10_700n * MS, status: 200 })], undefined, OPTS, 2],
    ['HTTP/1 truncated response, response headers not on the span', [
      rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0 }),
      rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0 + MS, truncated: true, body: 1 << 20 })], undefined, OPTS, 1],
    ['traceparent joins its trace', [
      rec(CLIENT, { kind: 'REQUEST', id: 0, at: T0, headers: { traceparent: `00-${tid}-${pid}-01`, tracestate: 'congo=t61rcWkgMzE' } }),
      rec(CLIENT, { kind: 'RESPONSE', id: 0, at: T0 + MS })], undefined, OPTS, 1],
    ['linked, same host', exchange(SERVER_A), undefined, LINK, 2],
    ['linked, same host, server records first', ((r) => [r[1]!, r[2]!, r[0]!, r[3]!])(exchange(SERVER_A)), undefined, LINK, 2],
    ['linked, two hosts, 300 ms skew', exchange(SERVER_B, { skew: 300n * MS }), undefined, LINK, 2],
    ['not linked: two hosts, 5 s skew', exchange(SERVER_B, { skew: 5n * S }), undefined, LINK, 2],
    ['not linked: ordinals drifted', exchange(SERVER_B, { serverPath: '/users/2' }), undefined, LINK, 2],
    ['linked: the client side as exchanges, the server side as pairs', exchange(SERVER_A, { id: 3 }), isClient, LINK, 2],
    ['linked: the server side as exchanges, the client side as pairs', exchange(SERVER_B, { id: 3 }), (r) => !isClient(r), LINK, 2],
    ['DNS: one id to two resolvers, NOERROR and SERVFAIL', [q(one, T0), q(two, T0 + MS), a(two, T0 + 2n * MS, 'NOERROR'), a(one, T0 + 9n * MS, 'SERVFAIL')], undefined, OPTS, 2],
    ['DNS: NXDOMAIN is an error', [q(one, T0, 7), a(one, T0 + MS, 'NXDOMAIN', 7)], undefined, OPTS, 1],
    ['gRPC: a client error code', [
      rec(CLIENT, { kind: 'REQUEST', protocol: 'GRPC', id: 1, at: T0, grpc: ['shop.Cart', 'Add'] }),
      rec(CLIENT, { kind: 'RESPONSE', protocol: 'GRPC', id: 1, at: T0 + MS, grpc: ['shop.Cart', 'Add'], grpcStatus: 14 })], undefined, OPTS, 1],
  ];
  for (const [what, records, which, opts, n] of cases) {
    const pairs = run(records, opts);
    const exchanges = asExchanges(records, which);
    assert.ok(exchanges.some((r) => r.kind === 'EXCHANGE') && exchanges.length < records.length, what);
    const got = run(exchanges, opts);
    assert.equal(pairs.spans.length, n, what);
    assert.deepEqual(sortSpans(got.spans), sortSpans(pairs.spans), what);
    assert.deepEqual(got.c.counters, pairs.c.counters, what);
    assert.equal(got.c.minPendingOffset(), null, what);
  }
});

test('spans: an EXCHANGE without a response waits as its REQUEST would: a later RESPONSE (hand-over) answers it, else it times out', () => {
  const req = rec(CLIENT, { kind: 'REQUEST', id: 4, at: T0, path: '/handed' });
  const resp = rec(CLIENT, { kind: 'RESPONSE', id: 4, at: T0 + 3n * S, status: 201 });
  for (const outcome of ['REQ_ONLY', 'CLOSED', 'LOST']) {
    const handed = run([exchangeOf(req, null, outcome), resp]);
    assert.deepEqual(handed.spans, run([req, resp]).spans, outcome);
    assert.equal(handed.spans[0]!.attributes['http.response.status_code'], '201', outcome);
    assert.equal(handed.spans[0]!.end_ns, T0 + 3n * S + MS, outcome);
    const alone = run([exchangeOf(req, null, outcome)]);
    assert.deepEqual(alone.spans, run([req]).spans, outcome);
    assert.equal(alone.spans[0]!.status_message, 'no response', outcome);
    assert.equal(alone.c.counters.timeouts, 1, outcome);
  }
});

test('spans: an EXCHANGE pairs with its own request, not with an earlier one waiting under the same DNS id (a retransmit is one exchange)', () => {
  const first = rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id: 9, at: T0, dns: ['db.svc', 'A'] });
  const again = rec(RESOLVER, { kind: 'REQUEST', protocol: 'DNS', id: 9, at: T0 + S, dns: ['db.svc', 'A'] });
  const answer = rec(RESOLVER, { kind: 'RESPONSE', protocol: 'DNS', id: 9, at: T0 + S + MS, dns: ['db.svc', 'A'] });
  const { spans } = run([first, exchangeOf(again, answer)]);
  const answered = spans.find((s) => s.status !== 'ERROR')!;
  assert.equal(answered.start_ns, T0 + S);
  assert.equal(answered.end_ns, T0 + S + 2n * MS);
  assert.equal(spans.find((s) => s.start_ns === T0)!.status_message, 'no response');
});

test('spans: EXCHANGE records (HTTP/1) in the mixed workload: every span exactly once across crashes, the same as their pairs give', () => {
  const { records, idle } = workload(11);
  const { records: exchanges, from } = exchangesFrom(records, (r) => r.protocol === 'HTTP1');
  assert.ok(exchanges.filter((r) => r.kind === 'EXCHANGE').length >= 50);
  // the records moved (a request now comes with its response): the idle raise stays before the same record
  const moved = new Map([...idle].map(([i, w]) => [from.findIndex((j) => j >= i), w]));
  const pairs = consume(records, idle, [], () => 5).committed;
  const whole = consume(exchanges, moved, [], () => 5).committed;
  assert.equal(new Set(whole.map((s) => s.span_id)).size, whole.length);
  assert.deepEqual(sortSpans(whole), sortSpans(pairs));
  const n = exchanges.length;
  for (const crashes of [[1], [7], [Math.floor(n / 2)], [n - 1], [20, 21, 22], Array.from({ length: Math.floor(n / 9) }, (_, k) => 9 * (k + 1))]) {
    const got = consume(exchanges, moved, crashes, (k) => 1 + (k % 4));
    assert.equal(new Set(got.committed.map((s) => s.span_id)).size, got.committed.length, `duplicates with crashes at ${crashes}`);
    assert.deepEqual(sortSpans(got.committed), sortSpans(whole), `crashes at ${crashes}`);
  }
});
