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
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, type L7Capture } from '../../collector/l7/capture.ts';
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
      name: 'LOST in the response: the request whole, the response as far as known, truncated',
      rec: { ...TIMES, outcome: L7Outcome.LOST, status: 200, reqHead: 'GET / HTTP/1.1\r\n\r\n', respHead: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', resp_body_bytes: 4 },
      want: [{ kind: 'REQUEST', truncated: false }, { kind: 'RESPONSE', status: 200, body_bytes: 4, truncated: true }],
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

test('the collector\'s codec: an exchange record in a batch becomes its l7 messages on ringflow.l7.v1, as type 10', () => {
  const codec = createCodec({ host: 'h1', bootTimeNs: 5n, dropReasonNames: {}, l7: { processName: () => 'svc' } });
  assert.deepEqual([...codec.topicsFor([9, 10])], [[9, 'ringflow.l7.v1'], [10, 'ringflow.l7.v1']]);
  const out: { topic: string; type: number; key: string; value: Buffer }[] = [];
  const res = codec.transcoder.transcodeBatch(
    buildBatch([record({ ...TIMES, seq: 2, status: 200, resp_body_bytes: 5, reqHead: REQ, respHead: RES })]),
    (topic, type, key, value) => out.push({ topic, type, key, value }),
  );
  assert.equal(res.unknown, 0, 'decoded, not undecodable');
  assert.deepEqual(out.map((o) => [o.topic, o.type, o.key]), [
    ['ringflow.l7.v1', 10, 'tcp/127.0.0.1:40000-127.0.0.1:8080'],
    ['ringflow.l7.v1', 10, 'tcp/127.0.0.1:40000-127.0.0.1:8080'],
  ]);
  const vals = out.map((o) => decodeRecord(o.value).value);
  assert.deepEqual(vals.map((v) => [v.kind, v.stream_id, v.method, v.path, v.status, v.body_bytes, v.ts_ns, v.end_ns, v.role, v.process_name, v.protocol_version, v.host]), [
    ['REQUEST', 2n, 'GET', '/users/42?token=REDACTED', null, 0n, 10n, 11n, 'CLIENT', 'svc', '1.1', 'h1'],
    ['RESPONSE', 2n, null, null, 200, 5n, 20n, 21n, 'CLIENT', 'svc', '1.1', 'h1'],
  ]);
  for (const o of out) assert.ok(!o.value.toString('latin1').includes('hunter'));
  assert.equal(codec.l7!.tracker.counters.exchanges, 1);
  assert.equal(codec.l7!.tracker.counters.messages, 2);
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
