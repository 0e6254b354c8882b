/**
 * HTTP/1 exchange records (collector/l7/exchange.ts, issue 10 slice 1):
 * records built here from struct rf_l7_exchange's layout, as bpf/l7.bpf.c
 * fills them, in; REQUEST and RESPONSE messages with their context out.
 * Table cases per outcome and flag, then a differential property: for random
 * HTTP/1 conversations, the messages tracker.ts builds from capture records
 * equal those exchange.ts builds from the exchange records BPF would emit for
 * the same conversation (boundaries and times from the tracker's own output,
 * head bytes = the first N bytes of each message), cut heads, pipelining,
 * CLOSED, LOST and RESP_ONLY included. Then the plumbing: the collector's
 * codec dispatches the record type, the stats merge the two l7 record types
 * into one topic entry, the in-kernel parsing's losses reach kernel_losses,
 * and the load-time settings and the CLI option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeL7Exchange, exchangeMessages, exchangeOutputs, L7App, L7Outcome, L7_EXCHANGE_OFFSETS as X, L7_EXCHANGE_SIZE, L7_EXCHANGE_TYPE,
  L7_PARSE, L7_XFLAG, type L7Exchange,
} from '../../collector/l7/exchange.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, L7_OFFSETS, L7_CAPTURE_SIZE, type L7Capture } from '../../collector/l7/capture.ts';
import { L7Tracker, type L7Output } from '../../collector/l7/tracker.ts';
import { DEFAULT_L7_OPTIONS, NEVER_CAPTURED_HEADERS, type L7Message, type L7ParseOptions } from '../../collector/l7/types.ts';
import { redactTarget } from '../../collector/l7/headers.ts';
import { buildBatch } from '../../collector/events/index.ts';
import { createCodec } from '../../collector/codec.ts';
import { decodeRecord } from '../../schemas/index.ts';
import { readKernelLosses } from '../../collector/kernel-losses.ts';
import { Collector, type SessionLike } from '../../collector/collector.ts';
import type { EventSink, OutRecord, SinkCounters } from '../../collector/sink.ts';
import { SIGNALS } from '../../collector/signals/registry.ts';
import { encodeL7Settings } from '../../collector/signals/settings.ts';
import { parseCollectArgs } from '../../cli/collect.ts';

const enc = new TextEncoder();
/** Latin-1 string to bytes. */
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));

interface RecordSpec {
  pid?: number; tgid?: number; uid?: number; ts_ns?: bigint; cgroup_id?: bigint; comm?: string;
  conn_id?: bigint; req_start_ns?: bigint; req_end_ns?: bigint; resp_start_ns?: bigint; resp_end_ns?: bigint;
  req_body_bytes?: number; resp_body_bytes?: number; laddr?: number[]; raddr?: number[]; seq?: number;
  req_pid?: number; req_tgid?: number; fd?: number; lport?: number; rport?: number; family?: number; status?: number;
  app?: number; role?: number; protocol?: number; outcome?: number; flags?: number;
  reqHead?: Uint8Array | string; respHead?: Uint8Array | string;
}

/** A record as bpf/l7.bpf.c fills struct rf_l7_exchange (offsets from exchange.ts, pinned to events.h by layout.test.ts). */
function record(s: RecordSpec): Buffer {
  const rh = typeof s.reqHead === 'string' ? bytes(s.reqHead) : s.reqHead ?? new Uint8Array(0);
  const sh = typeof s.respHead === 'string' ? bytes(s.respHead) : s.respHead ?? new Uint8Array(0);
  const b = Buffer.alloc(L7_EXCHANGE_SIZE + rh.length + sh.length);
  b[X.type] = L7_EXCHANGE_TYPE;
  b.writeUInt16LE(1, X.cpu);
  b.writeUInt32LE(s.pid ?? 100, X.pid);
  b.writeUInt32LE(s.tgid ?? 100, X.tgid);
  b.writeUInt32LE(s.uid ?? 0, X.uid);
  b.writeBigUInt64LE(s.ts_ns ?? 1000n, X.ts_ns);
  b.writeBigUInt64LE(s.cgroup_id ?? 1n, X.cgroup_id);
  b.write(s.comm ?? 'node', X.comm, 'latin1');
  b.writeBigUInt64LE(s.conn_id ?? 7n, X.conn_id);
  b.writeBigUInt64LE(s.req_start_ns ?? 0n, X.req_start_ns);
  b.writeBigUInt64LE(s.req_end_ns ?? 0n, X.req_end_ns);
  b.writeBigUInt64LE(s.resp_start_ns ?? 0n, X.resp_start_ns);
  b.writeBigUInt64LE(s.resp_end_ns ?? 0n, X.resp_end_ns);
  b.writeBigUInt64LE(BigInt(s.req_body_bytes ?? 0), X.req_body_bytes);
  b.writeBigUInt64LE(BigInt(s.resp_body_bytes ?? 0), X.resp_body_bytes);
  Buffer.from(s.laddr ?? [127, 0, 0, 1]).copy(b, X.laddr);
  Buffer.from(s.raddr ?? [127, 0, 0, 1]).copy(b, X.raddr);
  b.writeUInt32LE(s.seq ?? 0, X.seq);
  b.writeUInt32LE(s.req_pid ?? s.pid ?? 100, X.req_pid);
  b.writeUInt32LE(s.req_tgid ?? s.tgid ?? 100, X.req_tgid);
  b.writeUInt32LE(s.fd ?? 3, X.fd);
  b.writeUInt16LE(s.lport ?? 40000, X.lport);
  b.writeUInt16LE(s.rport ?? 8080, X.rport);
  b.writeUInt16LE(s.family ?? 2, X.family);
  b.writeUInt16LE(s.status ?? 0, X.status);
  b.writeUInt16LE(rh.length, X.req_head_len);
  b.writeUInt16LE(sh.length, X.resp_head_len);
  b[X.app] = s.app ?? L7App.HTTP1;
  b[X.role] = s.role ?? L7Role.CLIENT;
  b[X.protocol] = s.protocol ?? IPPROTO_TCP;
  b[X.outcome] = s.outcome ?? L7Outcome.RESPONDED;
  b[X.flags] = s.flags ?? 0;
  b.set(rh, L7_EXCHANGE_SIZE);
  b.set(sh, L7_EXCHANGE_SIZE + rh.length);
  return b;
}

const decode = (s: RecordSpec): L7Exchange => {
  const b = record(s);
  const x = decodeL7Exchange(b, 0, b.length);
  assert.ok(x, 'decodes');
  return x;
};

const REQ = 'GET /users/42?token=s3cret HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer hunter2\r\nCookie: sid=hunter4\r\nUser-Agent: curl/8\r\n\r\n';
const RES = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nSet-Cookie: sid=hunter3\r\n\r\n';
const TIMES = { req_start_ns: 10n, req_end_ns: 11n, resp_start_ns: 20n, resp_end_ns: 21n };

type Want = Partial<L7Message>;

/** The fields of `got` that `want` names. */
const pick = (got: L7Message, want: Want): Want => Object.fromEntries(Object.keys(want).map((k) => [k, got[k as keyof L7Message]])) as Want;

test('exchange records -> messages: one table case per outcome and flag', () => {
  const cases: { name: string; rec: RecordSpec; opts?: L7ParseOptions; want: Want[]; unreported?: string[] }[] = [
    {
      name: 'RESPONDED: request and response, captured headers only, query redacted, body sizes and times from the struct',
      rec: { ...TIMES, seq: 3, status: 200, req_body_bytes: 0, resp_body_bytes: 5, reqHead: REQ, respHead: RES },
      want: [
        { protocol: 'HTTP1', kind: 'REQUEST', stream_id: 3, method: 'GET', path: '/users/42?token=REDACTED', status: null, headers: { host: 'api', 'user-agent': 'curl/8' }, body_bytes: 0, start_ns: 10n, end_ns: 11n, truncated: false, protocol_version: '1.1' },
        { protocol: 'HTTP1', kind: 'RESPONSE', stream_id: 3, method: null, path: null, status: 200, headers: { 'content-type': 'text/plain' }, body_bytes: 5, start_ns: 20n, end_ns: 21n, truncated: false, protocol_version: '1.1' },
      ],
    },
    {
      name: '--keep-query and another header list',
      opts: { headers: ['x-tenant', 'authorization'], keepQueryValues: true },
      rec: { ...TIMES, status: 204, reqHead: 'DELETE /a?b=1 HTTP/1.0\r\nX-Tenant: t1\r\nAuthorization: x\r\n\r\n', respHead: 'HTTP/1.0 204 No Content\r\n\r\n' },
      want: [
        { method: 'DELETE', path: '/a?b=1', headers: { 'x-tenant': 't1' }, protocol_version: '1.0' },
        { status: 204, headers: {}, protocol_version: '1.0' },
      ],
    },
    {
      name: 'request head cut by the head-bytes cap: whole field lines only, truncated (REQ_HEAD_CUT)',
      rec: { ...TIMES, status: 200, flags: L7_XFLAG.REQ_HEAD_CUT, reqHead: 'POST /up HTTP/1.1\r\nHost: h\r\nUser-Agent: cut-he', respHead: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', req_body_bytes: 10 },
      want: [
        { method: 'POST', path: '/up', headers: { host: 'h' }, body_bytes: 10, truncated: true, protocol_version: '1.1' },
        { status: 200, truncated: false },
      ],
    },
    {
      name: 'head cut inside the request line: the method and the target so far, no version',
      rec: { ...TIMES, status: 200, flags: L7_XFLAG.REQ_HEAD_CUT, reqHead: 'GET /very/long/path?q=sec', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ method: 'GET', path: '/very/long/path?q=REDACTED', headers: {}, truncated: true, protocol_version: '' }, { status: 200 }],
    },
    {
      name: 'head cut inside the version: the whole target',
      rec: { ...TIMES, status: 200, reqHead: 'GET /v HTTP/1', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ method: 'GET', path: '/v', truncated: true, protocol_version: '' }, { status: 200 }],
    },
    {
      name: 'a cut the bytes show even without the flag (head bytes end before the empty line)',
      rec: { ...TIMES, status: 200, reqHead: 'GET / HTTP/1.1\r\nHost: a\r\n', respHead: 'HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n' },
      want: [{ headers: { host: 'a' }, truncated: true }, { headers: { 'content-type': 'a/b' }, truncated: true }],
    },
    {
      name: 'response head cut (RESP_HEAD_CUT) inside its status line: the struct status stands',
      rec: { ...TIMES, status: 503, flags: L7_XFLAG.RESP_HEAD_CUT, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 5' },
      want: [{ truncated: false }, { status: 503, headers: {}, truncated: true, protocol_version: '' }],
    },
    {
      name: 'CLOSED: the request alone',
      rec: { req_start_ns: 10n, req_end_ns: 11n, outcome: L7Outcome.CLOSED, seq: 4, reqHead: 'GET /slow HTTP/1.1\r\n\r\n' },
      want: [{ kind: 'REQUEST', stream_id: 4, path: '/slow', truncated: false }],
    },
    {
      name: 'REQ_ONLY (handed over): the request alone',
      rec: { req_start_ns: 10n, req_end_ns: 11n, outcome: L7Outcome.REQ_ONLY, seq: 5, reqHead: 'PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n', req_body_bytes: 3 },
      want: [{ kind: 'REQUEST', stream_id: 5, method: 'PUT', body_bytes: 3 }],
    },
    {
      name: 'RESP_ONLY: the response alone, with its seq',
      rec: { resp_start_ns: 20n, resp_end_ns: 21n, outcome: L7Outcome.RESP_ONLY, seq: 6, status: 404, respHead: 'HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n', resp_body_bytes: 9 },
      want: [{ kind: 'RESPONSE', stream_id: 6, status: 404, body_bytes: 9, start_ns: 20n, end_ns: 21n, truncated: false }],
    },
    {
      name: 'RESP_ONLY with no head bytes: the status from the struct, truncated',
      rec: { resp_start_ns: 20n, resp_end_ns: 21n, outcome: L7Outcome.RESP_ONLY, status: 200 },
      want: [{ kind: 'RESPONSE', status: 200, truncated: true, protocol_version: '' }],
    },
    {
      name: 'LOST with a response: both as far as known, both truncated (which direction lost framing is not said)',
      rec: { ...TIMES, outcome: L7Outcome.LOST, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', resp_body_bytes: 4 },
      want: [{ kind: 'REQUEST', truncated: true }, { kind: 'RESPONSE', status: 200, body_bytes: 4, truncated: true }],
    },
    {
      name: 'LOST before any response: the request, truncated',
      rec: { req_start_ns: 10n, req_end_ns: 11n, outcome: L7Outcome.LOST, reqHead: 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', req_body_bytes: 2 },
      want: [{ kind: 'REQUEST', method: 'POST', body_bytes: 2, truncated: true }],
    },
    {
      name: 'RESP_END_UNKNOWN (chunked or until close in slice 1): the response ends at its head, truncated',
      rec: { ...TIMES, status: 200, flags: L7_XFLAG.RESP_END_UNKNOWN, reqHead: 'GET / HTTP/1.0\r\n\r\n', respHead: 'HTTP/1.0 200 OK\r\n\r\n' },
      want: [{ truncated: false }, { status: 200, truncated: true, end_ns: 21n }],
    },
    {
      name: 'COPY_FAILED: both truncated',
      rec: { ...TIMES, status: 200, flags: L7_XFLAG.COPY_FAILED, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ truncated: true }, { truncated: true }],
    },
    {
      name: '100-continue before the final response: skipped, the final status and version reported',
      rec: { ...TIMES, status: 201, reqHead: 'POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n', respHead: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Type: x/y\r\n\r\n' },
      want: [{ method: 'POST' }, { status: 201, headers: { 'content-type': 'x/y' }, truncated: false, protocol_version: '1.1' }],
    },
    {
      name: 'only the 100-continue fitted: the struct status, truncated',
      rec: { ...TIMES, status: 201, flags: L7_XFLAG.RESP_HEAD_CUT, reqHead: 'POST / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2' },
      want: [{ method: 'POST' }, { status: 201, headers: {}, truncated: true, protocol_version: '' }],
    },
    {
      name: '101 upgrade: both reported (the tunnel after it is not parsed)',
      rec: { ...TIMES, status: 101, flags: L7_XFLAG.UPGRADE, reqHead: 'GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', respHead: 'HTTP/1.1 101 Switching Protocols\r\n\r\n' },
      want: [{ path: '/ws', truncated: false }, { status: 101, truncated: false }],
    },
    {
      name: 'a malformed field line: the others kept, truncated (the stream parser stops there with the same message)',
      rec: { ...TIMES, status: 200, reqHead: 'GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ headers: { host: 'h' }, truncated: true }, { status: 200, truncated: false }],
    },
    {
      name: 'request head bytes that are no request line: not reported (counted), the response still is',
      rec: { ...TIMES, status: 200, reqHead: '\x16\x03\x01garbage', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ kind: 'RESPONSE', status: 200 }],
      unreported: ['request head unparsed'],
    },
    {
      name: 'response head bytes that are no status line and no status: not reported (counted)',
      rec: { ...TIMES, status: 0, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'garbage' },
      want: [{ kind: 'REQUEST' }],
      unreported: ['response head unparsed'],
    },
    {
      name: 'an app this collector does not know: nothing, counted',
      rec: { ...TIMES, app: 7, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [],
      unreported: ['not HTTP/1'],
    },
    {
      name: 'leading CRLF before a start line is skipped (RFC 9112 2.2)',
      rec: { ...TIMES, status: 200, reqHead: '\r\nGET /k HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' },
      want: [{ path: '/k', truncated: false }, { status: 200 }],
    },
  ];
  for (const c of cases) {
    const got = exchangeMessages(decode(c.rec), c.opts ?? DEFAULT_L7_OPTIONS);
    assert.equal(got.messages.length, c.want.length, `${c.name}: ${json(got)}`);
    got.messages.forEach((m, k) => assert.deepEqual(pick(m, c.want[k]!), c.want[k], `${c.name}: message ${k}`));
    assert.deepEqual(got.unreported, c.unreported ?? [], `${c.name}: unreported`);
    for (const secret of ['hunter2', 'hunter3', 'hunter4', 's3cret']) assert.ok(!json(got).includes(secret), `${c.name}: ${secret}`);
  }
});

test('exchange records -> context: the tracker\'s, the request attributed to its own task, v4-mapped addresses as IPv4', () => {
  const v6mapped = (a: number[]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];
  const x = decode({
    ...TIMES, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n',
    pid: 201, tgid: 200, uid: 33, comm: 'worker', cgroup_id: 9n, req_pid: 301, req_tgid: 300, conn_id: 0xfedcba9876543210n,
    family: 10, laddr: v6mapped([10, 0, 0, 1]), raddr: v6mapped([10, 0, 0, 2]), lport: 8080, rport: 51000, role: L7Role.SERVER,
  });
  const names: Record<number, string> = { 200: 'api', 300: 'front' };
  const { outputs } = exchangeOutputs(x, DEFAULT_L7_OPTIONS, (tgid) => names[tgid] ?? '');
  const common = { uid: 33, comm: 'worker', cgroup_id: 9n, conn_id: 0xfedcba9876543210n, role: 'SERVER', transport: 'TCP', local_addr: '10.0.0.1', local_port: 8080, remote_addr: '10.0.0.2', remote_port: 51000 };
  assert.deepEqual(outputs.map((o) => o.ctx), [
    { ...common, pid: 301, tgid: 300, process_name: 'front' },
    { ...common, pid: 201, tgid: 200, process_name: 'api' },
  ]);
  // unknown role stays unknown (the spans stage makes such spans INTERNAL); a request task of 0 is the completing task
  const y = decode({ ...TIMES, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n', role: L7Role.UNKNOWN, req_pid: 0, req_tgid: 0 });
  assert.deepEqual(exchangeOutputs(y, DEFAULT_L7_OPTIONS, () => 'p').outputs.map((o) => [o.ctx.role, o.ctx.pid, o.ctx.process_name]), [['UNKNOWN', 100, 'p'], ['UNKNOWN', 100, 'p']]);
});

test('decodeL7Exchange: short or foreign records are null, never a throw', () => {
  const b = record({ reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' });
  assert.ok(decodeL7Exchange(b, 0, b.length));
  assert.equal(decodeL7Exchange(b, 0, b.length - 1), null, 'heads past the record');
  assert.equal(decodeL7Exchange(b, 0, L7_EXCHANGE_SIZE - 1), null, 'shorter than the struct');
  assert.equal(decodeL7Exchange(b, 1, b.length), null, 'past the buffer');
  const c = Buffer.from(b);
  c[0] = 9;
  assert.equal(decodeL7Exchange(c, 0, c.length), null, 'a capture record');
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 400 }), (junk) => {
    const r = Buffer.from(junk);
    if (r.length > 0) r[0] = L7_EXCHANGE_TYPE;
    const x = decodeL7Exchange(r, 0, r.length);
    if (x) exchangeMessages(x, DEFAULT_L7_OPTIONS); // never throws either
  }), { numRuns: 300 });
});

test('the collector\'s codec: an exchange record in a batch becomes one EXCHANGE record on ringflow.l7.v1, as type 10', () => {
  const codec = createCodec({ host: 'h1', bootTimeNs: 5n, dropReasonNames: {}, l7: { processName: () => 'svc' } });
  assert.deepEqual([...codec.topicsFor([9, 10])], [[9, 'ringflow.l7.v1'], [10, 'ringflow.l7.v1']]);
  const out: { topic: string; type: number; key: string; value: Buffer }[] = [];
  const res = codec.transcoder.transcodeBatch(
    buildBatch([record({ ...TIMES, seq: 2, status: 200, resp_body_bytes: 5, reqHead: REQ, respHead: RES })]),
    (topic, type, key, value) => out.push({ topic, type, key, value }),
  );
  assert.equal(res.unknown, 0, 'decoded, not undecodable');
  assert.deepEqual(out.map((o) => [o.topic, o.type, o.key]), [['ringflow.l7.v1', 10, 'tcp/127.0.0.1:40000-127.0.0.1:8080']]);
  const v = decodeRecord(out[0]!.value).value;
  assert.deepEqual(
    [v.kind, v.outcome, v.stream_id, v.method, v.path, v.headers, v.status, v.body_bytes, v.ts_ns, v.end_ns, v.resp_start_ns, v.resp_end_ns, v.resp_body_bytes, v.resp_headers, v.resp_truncated, v.role, v.process_name, v.protocol_version, v.resp_protocol_version, v.host],
    ['EXCHANGE', 'RESPONDED', 2n, 'GET', '/users/42?token=REDACTED', { host: 'api', 'user-agent': 'curl/8' }, 200, 0n, 10n, 11n, 20n, 21n, 5n, { 'content-type': 'text/plain' }, false, 'CLIENT', 'svc', '1.1', '1.1', 'h1'],
  );
  // a response whose request is unknown stays a RESPONSE record; a request closed unanswered is an EXCHANGE without response
  const kinds = (spec: RecordSpec) => {
    const o: Buffer[] = [];
    codec.transcoder.transcodeBatch(buildBatch([record(spec)]), (_t, _ty, _k, value) => o.push(value));
    return o.map((b) => { const d = decodeRecord(b).value; return [d.kind, d.outcome]; });
  };
  assert.deepEqual(kinds({ outcome: L7Outcome.RESP_ONLY, status: 404, respHead: 'HTTP/1.1 404 No\r\n\r\n' }), [['RESPONSE', null]]);
  assert.deepEqual(kinds({ outcome: L7Outcome.CLOSED, reqHead: 'GET / HTTP/1.1\r\n\r\n' }), [['EXCHANGE', 'CLOSED']]);
  assert.deepEqual(kinds({ ...TIMES, outcome: L7Outcome.LOST, status: 400, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 400 Bad\r\n\r\n' }), [['EXCHANGE', 'LOST']]);
  for (const o of out) assert.ok(!o.value.toString('latin1').includes('hunter'));
  assert.equal(codec.l7!.tracker.counters.exchanges, 4);
  assert.equal(codec.l7!.tracker.counters.messages, 2 + 1 + 1 + 2);
  // a record whose heads cannot be reported is counted where stopped parsers are (stats l7_parse_failures)
  codec.transcoder.transcodeBatch(buildBatch([record({ ...TIMES, status: 0, reqHead: 'garbage', respHead: 'junk' })]), () => {});
  assert.deepEqual([...codec.transcoder.parseFailures!], [['HTTP1: exchange request head unparsed', 1], ['HTTP1: exchange response head unparsed', 1]]);
  // a short one is undecodable, counted as such
  assert.equal(codec.transcoder.transcodeBatch(buildBatch([record({ reqHead: 'GET / HTTP/1.1\r\n\r\n' }).subarray(0, 100)]), () => {}).unknown, 1);
});

test('the l7 signal emits both record types; the stats give the l7 topic one entry, both types summed', () => {
  assert.deepEqual(SIGNALS.find((s) => s.name === 'l7')!.eventTypes, [9, 10]);
  const kernelDrops: bigint[] = new Array(16).fill(0n);
  const parse: bigint[] = new Array(16).fill(0n);
  const session: SessionLike = {
    start() {}, pause() {}, resume() {}, async stop() {}, drops: () => [...kernelDrops], ringPending: () => 0,
    mapCounters: (name) => (name === 'rf_l7_parse' ? [...parse] : null),
  };
  const counters: SinkCounters = { produced: new Map([[9, 3], [10, 4]]), sendErrors: 0 };
  const sink: EventSink = {
    counters, async start() {}, enqueue(_r: readonly OutRecord[]) {}, pending: () => 0, onProgress() {}, async flush() { return true; }, async close() {},
  };
  let now = 1_000_000_000n;
  const c = new Collector({
    session, sink, transcoder: { transcodeBatch: () => ({ records: 0, unknown: 0 }) },
    topics: new Map([[1, 'ringflow.sched.runqlat.v1'], [9, 'ringflow.l7.v1'], [10, 'ringflow.l7.v1']]),
    highWater: 10, maxPending: 20, statsIntervalMs: 0, wallClockNs: () => (now += 1_000_000_000n),
  });
  c.start();
  kernelDrops[9] = 2n;
  kernelDrops[10] = 3n;
  [50n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n].forEach((v, i) => (parse[i] = v));
  c.read.set(9, 3);
  c.read.set(10, 4);
  const s = c.snapshot();
  assert.deepEqual(s.events.map((e) => e.event), ['ringflow.sched.runqlat.v1', 'ringflow.l7.v1'], 'one entry per topic');
  assert.deepEqual(s.events[1], { event: 'ringflow.l7.v1', read: 7, kernel_drops: 5, user_drops: 0, produced: 7 });
  // the in-kernel parsing's losses (rf_l7_parse's loss slots only) reach kernel_losses with their reasons
  const losses = Object.fromEntries(s.kernel_losses.map((r) => [r.reason, r.count]));
  assert.deepEqual(losses, { l7_h1_head_too_long: 1, l7_h1_bad_start: 2, l7_h1_bad_framing: 3, l7_pending_full: 7, l7_resp_orphan: 8, l7_h1_concurrent: 9 });
});

test('rf_l7_parse: each loss slot by its enum index; exchanges, upgrades, resyncs and ends not framed are not losses', () => {
  const got = Object.fromEntries(Object.entries(L7_PARSE).map(([k, i]) => {
    const r = readKernelLosses({ mapCounters: (n) => (n === 'rf_l7_parse' ? Array.from({ length: 16 }, (_, j) => (j === i ? 1n : 0n)) : null) }, { taskFiltered: false });
    return [k, Object.entries(r).filter(([, v]) => v > 0n).map(([name]) => name)];
  }));
  assert.deepEqual(got, {
    EXCHANGES: [], H1_HEAD_TOO_LONG: ['l7_h1_head_too_long'], H1_BAD_START: ['l7_h1_bad_start'], H1_BAD_FRAMING: ['l7_h1_bad_framing'],
    H1_UPGRADE: [], H1_RESYNCED: [], H1_END_UNKNOWN: [], PENDING_FULL: ['l7_pending_full'], RESP_ORPHAN: ['l7_resp_orphan'], CONCURRENT: ['l7_h1_concurrent'],
    MMSG_OVER_LIMIT: ['l7_mmsg_over_limit'],
  });
});

test('load-time settings and --l7-kernel-parse: written only when set, so an object without the globals still loads', () => {
  const none = encodeL7Settings({});
  for (const g of ['rf_l7_kernel_parse', 'rf_l7_dual', 'rf_l7_head_bytes']) assert.ok(!(g in none), g);
  const set = encodeL7Settings({ kernelParse: false, dual: true, headBytes: 1024 });
  assert.deepEqual([...set.rf_l7_kernel_parse!], [0]);
  assert.deepEqual([...set.rf_l7_dual!], [1]);
  assert.deepEqual([...set.rf_l7_head_bytes!], [0, 4, 0, 0]);
  assert.deepEqual([...encodeL7Settings({ kernelParse: true }).rf_l7_kernel_parse!], [1]);
  assert.equal(parseCollectArgs([]).l7.kernelParse, undefined);
  assert.equal(parseCollectArgs(['--l7-kernel-parse', 'off']).l7.kernelParse, false);
  assert.equal(parseCollectArgs(['--l7-kernel-parse=on']).l7.kernelParse, true);
  assert.throws(() => parseCollectArgs(['--l7-kernel-parse', 'maybe']), /--l7-kernel-parse: "maybe" is neither on nor off/);
});

// ---- differential: tracker.ts over capture records vs exchange.ts over the records BPF would emit ----------------

interface Body { chunked: boolean; data: Uint8Array; cuts: number[] }
interface GenExchange {
  method: string; path: string; headers: string[]; eol: string; reqBody: Body | null;
  informational: boolean; status: number; respBody: Body | null; trailers: boolean;
}
type Variant = 'plain' | 'closed' | 'lost' | 'respOnly';
interface Conversation {
  exchanges: GenExchange[]; closeLast: boolean; side: 'client' | 'server'; variant: Variant;
  /** rf_l7_head_bytes: head bytes each side of a record carries. */
  n: number;
  reqCuts: number[]; respCuts: number[]; pick: number; lostAt: number;
}

const arbBody: fc.Arbitrary<Body> = fc.record({ chunked: fc.boolean(), data: fc.uint8Array({ maxLength: 40 }), cuts: fc.array(fc.nat(40), { maxLength: 4 }) });
const HEADER_LINES = ['Host: api.test', 'User-Agent: ua/1.0', 'Content-Type: text/plain', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  'Authorization: Bearer hunter2', 'Cookie: sid=hunter4', 'X-Other: zzz', 'host: second', 'Accept: */*'];
const arbExchange: fc.Arbitrary<GenExchange> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
  path: fc.constantFrom('/', '/a', '/users/42', '/search?q=x&n=2', '/p?flag', `/long/${'x'.repeat(120)}?k=v`),
  headers: fc.array(fc.constantFrom(...HEADER_LINES), { maxLength: 6 }),
  eol: fc.constantFrom('\r\n', '\n'),
  reqBody: fc.option(arbBody),
  informational: fc.boolean(),
  status: fc.constantFrom(200, 201, 204, 301, 304, 404, 500),
  respBody: fc.option(arbBody),
  trailers: fc.boolean(),
});
const arbConversation: fc.Arbitrary<Conversation> = fc.record({
  exchanges: fc.array(arbExchange, { minLength: 1, maxLength: 4 }),
  closeLast: fc.boolean(),
  side: fc.constantFrom('client' as const, 'server' as const),
  variant: fc.constantFrom<Variant>('plain', 'plain', 'closed', 'lost', 'respOnly'),
  n: fc.oneof(fc.integer({ min: 1, max: 80 }), fc.integer({ min: 80, max: 600 })),
  reqCuts: fc.array(fc.nat(), { maxLength: 12 }),
  respCuts: fc.array(fc.nat(), { maxLength: 12 }),
  pick: fc.nat(),
  lostAt: fc.nat(),
});

function encodeBody(b: Body | null, eol: string, trailers: boolean): { head: string; body: Uint8Array } {
  if (b === null) return { head: '', body: new Uint8Array(0) };
  if (!b.chunked) return { head: `Content-Length: ${b.data.length}${eol}`, body: b.data };
  const cuts = [...new Set(b.cuts.filter((c) => c > 0 && c < b.data.length))].sort((x, y) => x - y);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const to of [...cuts, b.data.length]) {
    if (to > from) parts.push(bytes(`${(to - from).toString(16)}${eol}`), b.data.subarray(from, to), bytes(eol));
    from = to;
  }
  parts.push(bytes(`0${eol}${trailers ? `X-Trailer: t${eol}` : ''}${eol}`));
  return { head: `Transfer-Encoding: chunked${eol}`, body: Buffer.concat(parts) };
}

/** One message on its direction's stream: where it starts, its 1xx heads' length, its (final) head. */
interface Msg { at: number; pre: number; head: string; length: number }

function encodeConversation(conv: Conversation): { req: Uint8Array; resp: Uint8Array; reqs: Msg[]; resps: (Msg | null)[] } {
  const req: Uint8Array[] = [];
  const resp: Uint8Array[] = [];
  const reqs: Msg[] = [];
  const resps: (Msg | null)[] = [];
  let reqAt = 0;
  let respAt = 0;
  conv.exchanges.forEach((x, k) => {
    const last = k === conv.exchanges.length - 1;
    const rb = encodeBody(x.reqBody, x.eol, x.trailers);
    const head = `${x.method} ${x.path} HTTP/1.1${x.eol}${x.headers.map((h) => h + x.eol).join('')}${rb.head}${x.eol}`;
    req.push(bytes(head), rb.body);
    reqs.push({ at: reqAt, pre: 0, head, length: head.length + rb.body.length });
    reqAt += head.length + rb.body.length;
    if (last && conv.variant === 'closed') {
      resps.push(null);
      return;
    }
    const pre = x.informational ? `HTTP/1.1 100 Continue${x.eol}${x.eol}` : '';
    const bodiless = x.method === 'HEAD' || x.status === 204 || x.status === 304;
    const hdrs = x.headers.filter((h) => !/^(host|authorization|accept)/i.test(h)).map((h) => h + x.eol).join('');
    let rhead: string;
    let body: Uint8Array = new Uint8Array(0);
    if (last && conv.closeLast && conv.variant === 'plain' && !bodiless) {
      rhead = `HTTP/1.1 ${x.status} X${x.eol}${hdrs}${x.eol}`;
      body = x.respBody?.data ?? new Uint8Array(0);
    } else {
      const b = encodeBody(x.respBody, x.eol, x.trailers);
      rhead = `HTTP/1.1 ${x.status} Reason Phrase${x.eol}${hdrs}${x.respBody === null ? `Content-Length: 0${x.eol}` : b.head}${x.eol}`;
      if (!bodiless) body = b.body;
    }
    resp.push(bytes(pre + rhead), body);
    resps.push({ at: respAt, pre: pre.length, head: rhead, length: pre.length + rhead.length + body.length });
    respAt += pre.length + rhead.length + body.length;
  });
  return { req: Buffer.concat(req), resp: Buffer.concat(resp), reqs, resps };
}

/** `b` cut at `cuts` into syscalls (non-empty). */
function chunks(b: Uint8Array, cuts: readonly number[]): { at: number; bytes: Uint8Array }[] {
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: { at: number; bytes: Uint8Array }[] = [];
  let from = 0;
  for (const to of [...at, b.length]) {
    if (to > from) out.push({ at: from, bytes: b.slice(from, to) });
    from = to;
  }
  return out;
}

const CAPTURED = new Set(DEFAULT_L7_OPTIONS.headers.filter((h) => !NEVER_CAPTURED_HEADERS.has(h)));

/**
 * The message exchange.ts must give when only `visible` bytes of a head are
 * in the record: the oracle's message with what those bytes show (a model
 * written here, line by line, not with http1.ts): whole field lines only,
 * the start line's method and target so far, no version unless the status
 * line's first 12 bytes are there, truncated. Null: nothing to report.
 */
function cutModel(m: L7Message, msg: Msg, visible: number): L7Message | null {
  const v = visible - msg.pre;
  const lines = msg.head.split(/(?<=\n)/);
  const sl = lines[0]!;
  const strip = (l: string) => l.replace(/\r?\n$/, '').replace(/\r$/, '');
  const headers: Record<string, string> = {};
  let version = '';
  let path = m.path;
  if (v < 0 || (m.kind === 'RESPONSE' && v < 12)) {
    if (m.kind === 'REQUEST') return null;
  } else if (v < sl.length) {
    if (m.kind === 'REQUEST') {
      const r = /^(\S+) (\S+)/.exec(strip(sl.slice(0, v)));
      if (r === null) return null;
      path = redactTarget(r[2]!, DEFAULT_L7_OPTIONS);
    } else {
      version = m.protocol_version!;
    }
  } else {
    version = m.protocol_version!;
    let end = sl.length;
    for (const line of lines.slice(1)) {
      end += line.length;
      if (end > v || strip(line) === '') break;
      const c = line.indexOf(':');
      const name = line.slice(0, c).toLowerCase();
      if (!CAPTURED.has(name)) continue;
      const value = strip(line.slice(c + 1)).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
  }
  return { ...m, path, headers, protocol_version: version, truncated: true };
}

function runDifferential(conv: Conversation): void {
  const { req, resp, reqs, resps } = encodeConversation(conv);
  const client = conv.side === 'client';
  const reqDir = client ? L7Direction.EGRESS : L7Direction.INGRESS;
  const respDir = client ? L7Direction.INGRESS : L7Direction.EGRESS;
  const processName = (tgid: number) => (tgid === 100 ? 'svc' : '');
  // the oracle: capture records through tracker.ts (requests pipelined, then the responses; each syscall cut at random)
  const tracker = new L7Tracker({ processName });
  const caps: L7Capture[] = [];
  let t = 1000n;
  const base = {
    cpu: 0, tgid: 100, uid: 0, cgroup_id: 1n, comm: 'app', conn_id: 7n, laddr: Uint8Array.of(127, 0, 0, 1), raddr: Uint8Array.of(127, 0, 0, 2), fd: 3,
    lport: client ? 40000 : 8080, rport: client ? 8080 : 40000, family: 2, syscall: 2, role: client ? L7Role.CLIENT : L7Role.SERVER,
    protocol: IPPROTO_TCP, kind: L7Kind.DATA, flags: 0,
  };
  // the first syscall holds the first start line whole: the tracker recognises a connection from one record's bytes
  const firstLine = reqs[0]!.head.indexOf('\n') + 1;
  for (const c of chunks(req, conv.reqCuts.filter((k) => k % (req.length + 1) >= firstLine))) {
    caps.push({ ...base, pid: 101, direction: reqDir, offset: c.at, peer_offset: 0, enter_ns: t, ts_ns: t + 5n, total_len: c.bytes.length, captured_len: c.bytes.length, payload: c.bytes });
    t += 10n;
  }
  // LOST: the last response's head is cut by a gap (a record copied short) past its status line; nothing after
  const lastResp = resps.at(-1);
  const lostAt = conv.variant === 'lost' && lastResp
    ? lastResp.at + lastResp.pre + lastResp.head.indexOf('\n') + 1 + conv.lostAt % (lastResp.head.length - lastResp.head.indexOf('\n') - 1)
    : -1;
  for (const c of chunks(resp, lostAt >= 0 ? [...conv.respCuts, lostAt] : conv.respCuts)) {
    if (lostAt >= 0 && c.at > lostAt) break;
    const captured = lostAt >= 0 && c.at + c.bytes.length > lostAt ? lostAt - c.at : c.bytes.length;
    caps.push({ ...base, pid: 102, direction: respDir, offset: c.at, peer_offset: req.length, enter_ns: t, ts_ns: t + 5n, total_len: c.bytes.length, captured_len: captured, payload: c.bytes.subarray(0, captured) });
    t += 10n;
  }
  caps.push({ ...base, pid: 102, direction: L7Direction.EGRESS, kind: L7Kind.CLOSE, offset: 0, peer_offset: 0, enter_ns: t, ts_ns: t, total_len: 0, captured_len: 0, payload: new Uint8Array(0) });
  const oracle: L7Output[] = caps.flatMap((c) => tracker.feed(c));
  assert.ok(oracle.every((o) => o.msg.kind === 'REQUEST' || o.msg.kind === 'RESPONSE'));
  const byId = (kind: string, k: number) => oracle.find((o) => o.msg.kind === kind && o.msg.stream_id === k);
  // the model of a cut agrees with the oracle on whole heads (so it is a model of the parser, not of itself)
  for (const [k, m] of reqs.entries()) {
    const o = byId('REQUEST', k)!;
    assert.deepEqual(cutModel(o.msg, m, m.head.length)?.headers, o.msg.headers, 'model: request headers');
  }

  // what BPF would emit for the same conversation: one record per exchange, from the oracle's boundaries and times
  const respOnly = conv.variant === 'respOnly' ? conv.pick % reqs.length : -1;
  const want: L7Output[] = [];
  const got: L7Output[] = [];
  const x7 = new L7Tracker({ processName });
  for (const [k, rm] of reqs.entries()) {
    const sm = resps[k] ?? null;
    const rq = byId('REQUEST', k);
    const rs = byId('RESPONSE', k);
    assert.ok(rq, `request ${k} in the oracle`);
    const lost = conv.variant === 'lost' && k === reqs.length - 1;
    if (sm !== null) assert.ok(rs, `response ${k} in the oracle`);
    const reqHeadLen = rm.head.length;
    const respAvail = sm === null ? 0 : lost ? lostAt - sm.at : sm.pre + sm.head.length;
    const outcome = k === respOnly ? L7Outcome.RESP_ONLY : sm === null ? L7Outcome.CLOSED : lost ? L7Outcome.LOST : L7Outcome.RESPONDED;
    const task = rs?.ctx ?? rq.ctx;
    const spec: RecordSpec = {
      pid: task.pid, tgid: task.tgid, uid: task.uid, comm: task.comm, cgroup_id: task.cgroup_id, conn_id: task.conn_id,
      req_pid: k === respOnly ? 0 : rq.ctx.pid, req_tgid: k === respOnly ? 0 : rq.ctx.tgid,
      laddr: [127, 0, 0, 1], raddr: [127, 0, 0, 2], lport: base.lport, rport: base.rport, role: base.role, seq: k, outcome,
      flags: (k !== respOnly && conv.n < reqHeadLen ? L7_XFLAG.REQ_HEAD_CUT : 0) | (sm !== null && conv.n < respAvail ? L7_XFLAG.RESP_HEAD_CUT : 0),
      ...(k === respOnly ? {} : { req_start_ns: rq.msg.start_ns, req_end_ns: rq.msg.end_ns, req_body_bytes: rq.msg.body_bytes, reqHead: req.subarray(rm.at, rm.at + Math.min(conv.n, reqHeadLen)) }),
      ...(rs ? { resp_start_ns: rs.msg.start_ns, resp_end_ns: rs.msg.end_ns, resp_body_bytes: rs.msg.body_bytes, status: rs.msg.status!, respHead: resp.subarray(sm!.at, sm!.at + Math.min(conv.n, respAvail)) } : {}),
    };
    got.push(...x7.exchange(decode(spec)));
    if (k !== respOnly) {
      const m = conv.n >= reqHeadLen ? rq.msg : cutModel(rq.msg, rm, conv.n);
      // LOST: the record does not say which direction lost framing, so the request is truncated too
      if (m) want.push({ msg: lost ? { ...m, truncated: true } : m, ctx: rq.ctx });
    }
    if (rs) {
      const m = conv.n >= respAvail ? rs.msg : cutModel(rs.msg, sm!, Math.min(conv.n, respAvail));
      want.push({ msg: m!, ctx: rs.ctx });
    }
  }
  assert.deepEqual(got.map((o) => ({ msg: { ...o.msg }, ctx: o.ctx })), want.map((o) => ({ msg: { ...o.msg }, ctx: o.ctx })));
  for (const secret of ['hunter2', 'hunter4']) assert.ok(!json(got).includes(secret), secret);
}

test('differential: the messages exchange.ts builds from BPF\'s exchange records equal those tracker.ts builds from capture records', () => {
  fc.assert(fc.property(arbConversation, runDifferential), { numRuns: 400 });
});

test('differential: fixed cases (pipelined, 100-continue, a head cut at every byte, LOST, CLOSED, RESP_ONLY)', () => {
  const x = (o: Partial<GenExchange>): GenExchange => ({
    method: 'GET', path: '/a?b=c', headers: ['Host: api.test', 'Authorization: Bearer hunter2', 'User-Agent: ua/1.0'], eol: '\r\n', reqBody: null,
    informational: false, status: 200, respBody: { chunked: false, data: bytes('hello'), cuts: [] }, trailers: false, ...o,
  });
  const conv = (o: Partial<Conversation>): Conversation => ({
    exchanges: [x({}), x({ method: 'POST', reqBody: { chunked: true, data: bytes('abcdef'), cuts: [2] }, informational: true, status: 201 }), x({ method: 'HEAD' })],
    closeLast: false, side: 'server', variant: 'plain', n: 512, reqCuts: [3, 70, 71], respCuts: [10], pick: 1, lostAt: 3, ...o,
  });
  for (let n = 1; n <= 120; n++) runDifferential(conv({ n }));
  for (const variant of ['closed', 'lost', 'respOnly'] as const) for (const n of [5, 30, 512]) runDifferential(conv({ variant, n, side: 'client' }));
  runDifferential(conv({ closeLast: true, exchanges: [x({}), x({ status: 404 })] }));
});

test('the codec sweeps idle capture-record connections by the exchange records\' time too', () => {
  const C = L7_OFFSETS;
  const payload = bytes('GET / HTTP/1.1\r\n\r\n');
  const cap = Buffer.alloc(L7_CAPTURE_SIZE + payload.length);
  cap[C.type] = 9;
  cap.writeBigUInt64LE(1_000_000_000n, C.ts_ns);
  cap.writeBigUInt64LE(1_000_000_000n, C.enter_ns);
  cap.writeBigUInt64LE(99n, C.conn_id);
  cap.writeUInt32LE(payload.length, C.total_len);
  cap.writeUInt32LE(payload.length, C.captured_len);
  cap.writeUInt16LE(2, C.family);
  cap[C.protocol] = IPPROTO_TCP;
  cap.set(payload, L7_CAPTURE_SIZE);
  const codec = createCodec({ host: 'h1', bootTimeNs: 5n, dropReasonNames: {}, l7: { idleNs: 10_000_000_000n } });
  codec.transcoder.transcodeBatch(buildBatch([cap]), () => {});
  assert.equal(codec.l7!.tracker.size, 1, 'an HTTP/1 connection seen through capture records (kernel parsing off, or dual)');
  codec.transcoder.transcodeBatch(buildBatch([record({ ts_ns: 20_000_000_000n, ...TIMES, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\n\r\n' })]), () => {});
  assert.equal(codec.l7!.tracker.size, 0, 'idle for longer than idleNs by the exchange record\'s clock: swept');
});
