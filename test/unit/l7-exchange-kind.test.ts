/**
 * Kind EXCHANGE of ringflow.l7.v1 (issue 10, design l7-in-kernel §6 slice 4):
 * one record carries a request and its response (collector/l7/encode.ts
 * encodeExchange), the spans stage makes of it the span and RED metrics the
 * REQUEST + RESPONSE pair gives (processor/spans.ts), and the schema evolves
 * so that readers of either version read the other's records
 * (schemas/history/l7.v2.avsc is the version before).
 *
 * Messages come from the HTTP/1 parser on real bytes, records go through the
 * real encoder and the registry's decoder, spans through the correlator and
 * the RED metric definitions of processor/aggregate.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleObjectFormat, WireError, createRegistry, decodeAs, decodeCurrent, decodeRecord, encodeRecord, registerSchema, schemaRegistry, type RecordSchema } from '../../schemas/index.ts';
import { createHttp1Connection } from '../../collector/l7/http1.ts';
import { asExchangeRecord, createL7Encoder, type L7Outcome } from '../../collector/l7/encode.ts';
import type { L7Output } from '../../collector/l7/tracker.ts';
import type { L7Message } from '../../collector/l7/types.ts';
import { SpanCorrelator, type L7Record, type Span } from '../../processor/spans.ts';
import { METRICS, spanEvent } from '../../processor/aggregate.ts';
import { SPANS_TOPIC } from '../../processor/topics.ts';

const S = 1_000_000_000n;
const MS = 1_000_000n;
const BOOT = 1_764_000_000n * S;
const registry = schemaRegistry();
const current = registry.byId('l7')!;
const v2 = registry.history.find((h) => h.id === 'l7.v2')!;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function ctx(role: 'CLIENT' | 'SERVER', conn = 3n): L7Output['ctx'] {
  const [local, remote]: [[string, number], [string, number]] = role === 'SERVER' ? [['10.0.0.2', 8080], ['10.0.0.1', 40000]] : [['10.0.0.1', 40000], ['10.0.0.2', 8080]];
  return {
    pid: 7, tgid: 7, uid: 0, comm: 'node', process_name: 'traffic', cgroup_id: 1n, conn_id: conn, role, transport: 'TCP',
    local_addr: local[0], local_port: local[1], remote_addr: remote[0], remote_port: remote[1],
  } as L7Output['ctx'];
}

const enc = createL7Encoder({ host: 'h1', bootTimeNs: BOOT, containerId: () => 'c0ffee' });

/** A conversation's bytes through the HTTP/1 parser: its requests and their responses, by ordinal. */
function conversation(requests: string, responses: string): [L7Message, L7Message | null][] {
  const conn = createHttp1Connection();
  const reqs = conn.requests.push(bytes(requests), 10n * S);
  const resps = [...conn.responses.push(bytes(responses), 10n * S + 3n * MS), ...conn.responses.end(10n * S + 4n * MS)];
  return reqs.map((q) => [q, resps.find((r) => r.stream_id === q.stream_id) ?? null]);
}

const CONVERSATIONS: [string, 'CLIENT' | 'SERVER', string, string][] = [
  ['keep-alive, two pipelined, 200 and 500', 'SERVER',
    'GET /users/42?x=1 HTTP/1.1\r\nHost: api:8080\r\nUser-Agent: curl/8\r\nCookie: s=1\r\n\r\nPOST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\n\r\nabc',
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: t=2\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n'],
  ['client, 1.0 request, chunked 404', 'CLIENT',
    'GET /missing HTTP/1.0\r\nHost: api\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n',
    'HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n'],
  ['client, unanswered', 'CLIENT', 'DELETE /carts/9 HTTP/1.1\r\nHost: api\r\n\r\n', ''],
];

const decode = (b: Buffer): L7Record => decodeCurrent(b).value as unknown as L7Record;

/** Spans of the records in order (offsets 0..), flushed by a raise far ahead. */
function spansOf(records: readonly L7Record[]): Span[] {
  const c = new SpanCorrelator({ timeoutNs: 10n * S, linkDelayNs: 0n, latenessNs: 0n });
  records.forEach((r, i) => c.add(r, BigInt(i)));
  return [...c.advance(), ...c.advance(BOOT + 1_000n * S)].sort((a, b) => (a.span_id < b.span_id ? -1 : 1));
}

/** What each RED metric (and any other metric of the spans topic) records for a span: [name, value, dimensions]. */
function red(span: Span): [string, number, [string, string | undefined][]][] {
  const e = spanEvent(span as unknown as Record<string, unknown>);
  return METRICS.filter((m) => m.topic === SPANS_TOPIC && (m.accept === undefined || m.accept(e as never)))
    .map((m) => [m.name, m.value(e as never), m.dimensions.map((d): [string, string | undefined] => [d.key, d.get(e as never)])]);
}

for (const [what, role, requests, responses] of CONVERSATIONS) {
  test(`exchange kind: ${what}: one EXCHANGE record per exchange gives the spans and RED metrics of its REQUEST + RESPONSE records`, () => {
    const pairs = conversation(requests, responses);
    const c = ctx(role);
    const asPairs = pairs.flatMap(([q, r]) => [q, ...(r ? [r] : [])]).map((msg) => enc.encode({ msg, ctx: c }));
    const asExchanges = pairs.map(([q, r]) => enc.encodeExchange(q, r, c));
    assert.equal(asExchanges.length, pairs.length);
    assert.ok(asExchanges.every((x, i) => x.key === asPairs[i]!.key), 'the same key: the connection');
    const want = spansOf(asPairs.map((x) => decode(x.value)));
    const got = spansOf(asExchanges.map((x) => decode(x.value)));
    assert.equal(got.length, pairs.length);
    assert.deepEqual(got, want);
    assert.deepEqual(got.map(red), want.map(red));
    assert.ok(got.every((s) => red(s).length === 1), 'each span feeds its RED histogram');
  });
}

test('exchange kind: encodeExchange round trip: request fields, response fields, outcome', () => {
  const [[q, r]] = conversation(CONVERSATIONS[0]![2], CONVERSATIONS[0]![3]) as [[L7Message, L7Message]];
  const out = enc.encodeExchange(q, r, ctx('SERVER'));
  assert.deepEqual(out.value.subarray(0, 10), Buffer.concat([Buffer.from([0xc3, 0x01]), current.fingerprintBytes]));
  const d = decodeRecord(out.value);
  assert.equal(d.schema, current);
  const v = { ...d.value };
  assert.deepEqual(v, {
    ts_ns: 10n * S, end_ns: 10n * S, pid: 7n, tgid: 7n, uid: 0n, comm: 'node', process_name: 'traffic', container_id: 'c0ffee', cgroup_id: 1n, conn_id: 3n,
    role: 'SERVER', transport: 'TCP', local_addr: '10.0.0.2', local_port: 8080, remote_addr: '10.0.0.1', remote_port: 40000,
    protocol: 'HTTP1', kind: 'EXCHANGE', stream_id: 0n, method: 'GET', path: '/users/42?x=REDACTED', status: 200,
    headers: { host: 'api:8080', 'user-agent': 'curl/8' }, // never the cookie
    grpc_service: null, grpc_method: null, grpc_status: null, dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: 0n, truncated: false, protocol_version: '1.1',
    resp_start_ns: 10n * S + 3n * MS, resp_end_ns: 10n * S + 3n * MS, resp_body_bytes: 2n,
    resp_headers: { 'content-type': 'text/plain' }, // never set-cookie
    resp_truncated: false, resp_protocol_version: '1.1', outcome: 'RESPONDED', dns_retries: null,
    host: 'h1', boot_time_ns: BOOT,
  });
  // encode() of an output with `exchange` set is the same record (the tracker's path)
  assert.deepEqual(enc.encode({ msg: q, ctx: ctx('SERVER'), exchange: { response: r, outcome: 'RESPONDED' } }), out);
  // a REQUEST or RESPONSE record: no exchange fields
  const plain = decodeRecord(enc.encode({ msg: r, ctx: ctx('SERVER') }).value).value;
  assert.deepEqual([plain.kind, plain.status, plain.body_bytes, plain.outcome, plain.resp_start_ns, plain.resp_end_ns, plain.resp_body_bytes, plain.resp_headers, plain.resp_truncated, plain.resp_protocol_version],
    ['RESPONSE', 200, 2n, null, null, null, null, {}, false, '']);
});

test('exchange kind: outcomes without a response, LOST with or without one; mismatches throw (the codec counts them as l7_encode_error)', () => {
  const [[q, r]] = conversation(CONVERSATIONS[0]![2], CONVERSATIONS[0]![3]) as [[L7Message, L7Message]];
  const fields = (response: L7Message | null, outcome?: L7Outcome) => {
    const v = decodeRecord(enc.encodeExchange(q, response, ctx('SERVER'), outcome).value).value;
    return [v.kind, v.outcome, v.status, v.resp_start_ns, v.resp_end_ns, v.resp_body_bytes, v.method];
  };
  // [response, outcome, kind, outcome read, status, resp_start_ns, resp_end_ns, resp_body_bytes, method]
  const cases: [L7Message | null, L7Outcome | undefined, unknown[]][] = [
    [null, undefined, ['EXCHANGE', 'CLOSED', null, null, null, null, 'GET']],
    [null, 'REQ_ONLY', ['EXCHANGE', 'REQ_ONLY', null, null, null, null, 'GET']],
    [null, 'LOST', ['EXCHANGE', 'LOST', null, null, null, null, 'GET']],
    [r, 'LOST', ['EXCHANGE', 'LOST', 200, 10n * S + 3n * MS, 10n * S + 3n * MS, 2n, 'GET']],
    [r, undefined, ['EXCHANGE', 'RESPONDED', 200, 10n * S + 3n * MS, 10n * S + 3n * MS, 2n, 'GET']],
  ];
  for (const [response, outcome, want] of cases) assert.deepEqual(fields(response, outcome), want, `${outcome} ${response ? 'with' : 'without'} a response`);
  assert.throws(() => enc.encodeExchange(r, q, ctx('SERVER')), /the request is a RESPONSE/);
  assert.throws(() => enc.encodeExchange(q, q, ctx('SERVER')), /the response is a REQUEST/);
  assert.throws(() => enc.encodeExchange(q, null, ctx('SERVER'), 'RESPONDED'), /outcome RESPONDED without a response/);
  assert.throws(() => enc.encodeExchange(q, r, ctx('SERVER'), 'CLOSED'), /outcome CLOSED with a response/);
  assert.throws(() => enc.encodeExchange(q, r, ctx('SERVER'), 'REQ_ONLY'), /outcome REQ_ONLY with a response/);
});

test('exchange kind: asExchangeRecord (the kernel exchange path\'s switch): one EXCHANGE output when the request is known and the outcome fits, else the messages as before', () => {
  const [[q, r]] = conversation(CONVERSATIONS[0]![2], CONVERSATIONS[0]![3]) as [[L7Message, L7Message]];
  const reqCtx = { ...ctx('SERVER'), pid: 8 };
  const respCtx = ctx('SERVER');
  // [messages, outcome (name or bpf/events.h C value), records as [kind, outcome, status, pid]]
  const cases: [L7Message[], L7Outcome | 'RESP_ONLY' | number, [string, unknown, unknown, bigint][]][] = [
    [[q, r], 'RESPONDED', [['EXCHANGE', 'RESPONDED', 200, 8n]]],
    [[q, r], 0, [['EXCHANGE', 'RESPONDED', 200, 8n]]],
    [[q], 1, [['EXCHANGE', 'CLOSED', null, 8n]]],
    [[q, r], 3, [['EXCHANGE', 'LOST', 200, 8n]]],
    [[q], 'LOST', [['EXCHANGE', 'LOST', null, 8n]]],
    [[q], 4, [['EXCHANGE', 'REQ_ONLY', null, 8n]]],
    [[r], 2, [['RESPONSE', null, 200, 7n]]], // RESP_ONLY: the request is unknown
    [[r], 'RESPONDED', [['RESPONSE', null, 200, 7n]]], // its request head did not parse
    [[q], 'RESPONDED', [['REQUEST', null, null, 8n]]], // its response head did not parse: the request alone, as before
    [[q, r], 'CLOSED', [['REQUEST', null, null, 8n], ['RESPONSE', null, 200, 7n]]], // does not fit: as before
    [[q, r], 9, [['REQUEST', null, null, 8n], ['RESPONSE', null, 200, 7n]]], // an outcome this collector does not know
    [[], 0, []],
  ];
  for (const [messages, outcome, want] of cases) {
    const outputs = messages.map((msg) => ({ msg, ctx: msg.kind === 'REQUEST' ? reqCtx : respCtx }));
    const got = asExchangeRecord(outputs, outcome).map((o) => decodeRecord(enc.encode(o).value).value);
    assert.deepEqual(got.map((v) => [v.kind, v.outcome, v.status, v.pid]), want, `${messages.map((m) => m.kind)} ${outcome}`);
  }
});

// ---------------------------------------------------------------------------
// Evolution

test('exchange kind: the version before is kept as history l7.v2; EXCHANGE is a new last symbol with reader default REQUEST; every new field has a default', () => {
  assert.ok(v2, 'schemas/history/l7.v2.avsc');
  assert.notEqual(v2.fingerprint, current.fingerprint);
  const kindOf = (s: RecordSchema) => s.fields.find((f) => f.name === 'kind')!.type as { symbols: string[]; default?: string };
  assert.deepEqual(kindOf(v2.schema).symbols, ['REQUEST', 'RESPONSE']);
  assert.deepEqual(kindOf(current.schema).symbols, ['REQUEST', 'RESPONSE', 'EXCHANGE']);
  assert.equal(kindOf(current.schema).default, 'REQUEST');
  const added = current.schema.fields.filter((f) => !v2.schema.fields.some((o) => o.name === f.name));
  assert.deepEqual(added.map((f) => [f.name, f.default]), [
    ['resp_start_ns', null], ['resp_end_ns', null], ['resp_body_bytes', null], ['resp_headers', {}],
    ['resp_truncated', false], ['resp_protocol_version', ''], ['outcome', null], ['dns_retries', null], // dns_retries: v4 (history l7.v3)
  ]);
  for (const f of added) assert.ok(typeof f.doc === 'string' && f.doc.length > 40, `${f.name} is documented for the data teams`);
  // the shared fields keep their order and types: old readers skip only the new ones
  assert.deepEqual(current.schema.fields.filter((f) => !added.includes(f)).map((f) => f.name), v2.schema.fields.map((f) => f.name));
});

test('exchange kind: new readers read records of every older version (v0, v1, v2) as they were written, the exchange fields defaulted', () => {
  const [[q, r]] = conversation(CONVERSATIONS[0]![2], CONVERSATIONS[0]![3]) as [[L7Message, L7Message]];
  const now = [q, r].map((msg) => ({ ...decodeRecord(enc.encode({ msg, ctx: ctx('SERVER') }).value).value }));
  for (const id of ['l7.v0', 'l7.v1', 'l7.v2', 'l7.v3']) {
    const old = registry.history.find((h) => h.id === id)!;
    assert.ok(old, `schemas/history/${id}.avsc`);
    const written = now.map((v) => encodeRecord(old, v));
    const read = written.map((b) => decodeCurrent(b));
    for (const [i, d] of read.entries()) {
      assert.equal(d.writer, old, id);
      assert.equal(d.schema, current, id);
      const v = d.value;
      assert.equal(v.kind, ['REQUEST', 'RESPONSE'][i], id);
      assert.deepEqual([v.outcome, v.resp_start_ns, v.resp_end_ns, v.resp_body_bytes, v.resp_headers, v.resp_truncated, v.resp_protocol_version], [null, null, null, null, {}, false, ''], id);
      for (const f of old.schema.fields) assert.deepEqual(v[f.name], now[i]![f.name], `${id}.${f.name}`);
    }
    // and make the spans records of the current version make (fields the version lacks aside)
    const spans = spansOf(read.map((d) => d.value as unknown as L7Record));
    assert.equal(spans.length, 1, id);
    assert.equal(spans[0]!.name, 'GET /users/{id}', id);
    assert.equal(spans[0]!.attributes['http.response.status_code'], '200', id);
  }
});

test('exchange kind: an old reader with the reader default reads an EXCHANGE as its REQUEST; without it, or as an old processor, it refuses loudly', () => {
  const [[q, r]] = conversation(CONVERSATIONS[0]![2], CONVERSATIONS[0]![3]) as [[L7Message, L7Message]];
  const x = enc.encodeExchange(q, r, ctx('SERVER')).value;
  const asRequest = { ...decodeRecord(enc.encode({ msg: q, ctx: ctx('SERVER') }).value).value };

  // the previous schema with "default": "REQUEST" on L7Kind, as schemas/README.md tells readers to add:
  // a default is not part of the canonical form, so it is the same schema (same fingerprint)
  const withDefault = structuredClone(v2.schema) as RecordSchema;
  (withDefault.fields.find((f) => f.name === 'kind')!.type as { default?: string }).default = 'REQUEST';
  const oldReader = registerSchema('l7', withDefault);
  assert.equal(oldReader.fingerprint, v2.fingerprint);
  const read = { ...decodeAs(oldReader, x).value };
  assert.equal(read.kind, 'REQUEST'); // falls back
  assert.deepEqual(Object.keys(read), v2.schema.fields.map((f) => f.name)); // the resp_ fields skipped
  // the request as its own REQUEST record gives it, but the response-only fields are the response's
  assert.deepEqual({ ...read, status: null }, Object.fromEntries(v2.schema.fields.map((f) => [f.name, asRequest[f.name]])));
  assert.equal(read.status, 200);
  // REQUEST and RESPONSE records of the new version read as they were written
  for (const msg of [q, r]) assert.equal(decodeAs(oldReader, enc.encode({ msg, ctx: ctx('SERVER') }).value).value.kind, msg.kind);

  // the previous file as it was published (no default on L7Kind) cannot resolve the new version at all (avsc
  // resolves per schema, not per record): such readers need the new file or the default (README, rollout)
  assert.throws(() => v2.type.createResolver(current.type), /L7Kind|resolve/i);
  // a processor of the previous version does not know the new fingerprint: UNKNOWN_SCHEMA, which its
  // spans stage dead-letters and counts (ringflow.dropped), never a silent drop; processors go first
  const oldRegistry = createRegistry([...registry.all.filter((s) => s.id !== 'l7'), registerSchema('l7', v2.schema)]);
  assert.throws(() => decodeCurrent(x, new SingleObjectFormat(oldRegistry)), (e: unknown) => e instanceof WireError && e.code === 'UNKNOWN_SCHEMA');
});
