/**
 * exchange.ts remembers command names (by their 16 bytes) and IPv4
 * attribute addresses (by value) across records, to decode each once
 * (test/bench/l7-exchange-path.ts): a record must still get its own, with
 * more processes and addresses than the command-name slots, alternating, and
 * IPv4 and IPv6 side by side.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeL7Exchange, exchangeOutputs, L7_EXCHANGE_OFFSETS as X, L7_EXCHANGE_SIZE, L7_EXCHANGE_TYPE, L7App, L7Outcome } from '../../collector/l7/exchange.ts';
import { DEFAULT_L7_OPTIONS } from '../../collector/l7/types.ts';
import { parseHttp1Head } from '../../collector/l7/http1.ts';

const REQ = 'GET / HTTP/1.1\r\nHost: h\r\n\r\n';
const RES = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';

function record(comm: string, family: number, laddr: number[], raddr: number[]): Buffer {
  const b = Buffer.alloc(L7_EXCHANGE_SIZE + REQ.length + RES.length);
  b[X.type] = L7_EXCHANGE_TYPE;
  b.writeUInt32LE(1, X.pid);
  b.writeUInt32LE(1, X.tgid);
  b.write(comm, X.comm, 'latin1');
  Buffer.from(laddr).copy(b, X.laddr);
  Buffer.from(raddr).copy(b, X.raddr);
  b.writeUInt32LE(1, X.req_pid);
  b.writeUInt32LE(1, X.req_tgid);
  b.writeUInt16LE(family, X.family);
  b.writeUInt16LE(200, X.status);
  b.writeUInt16LE(REQ.length, X.req_head_len);
  b.writeUInt16LE(RES.length, X.resp_head_len);
  b[X.app] = L7App.HTTP1;
  b[X.role] = 1;
  b[X.protocol] = 6;
  b[X.outcome] = L7Outcome.RESPONDED;
  b.write(REQ + RES, L7_EXCHANGE_SIZE, 'latin1');
  return b;
}

const V6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const MAPPED = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5];
// [comm, family, laddr, raddr, want comm, want local, want remote]: 6 names over 4 slots, in turn, then again;
// names that share a prefix; a name of 16 bytes (no NUL); v4 beside v6 and v4-mapped
const ROWS: [string, number, number[], number[], string, string, string][] = [];
const NAMES = ['wrk', 'node', 'nodejs', 'no', 'curl', 'abcdefghijklmnop'];
for (let round = 0; round < 3; round++) {
  NAMES.forEach((n, i) => {
    ROWS.push([n, 2, [127, 0, 0, 1 + i], [10, 1, round, i], n, `127.0.0.${1 + i}`, `10.1.${round}.${i}`]);
  });
  ROWS.push(['node', 10, V6, MAPPED, 'node', '2001:db8::9', '10.0.0.5']);
}

test('command names and addresses: each record its own, whatever came before', () => {
  for (const [comm, family, laddr, raddr, wantComm, wantLocal, wantRemote] of ROWS) {
    const b = record(comm, family, laddr, raddr);
    const x = decodeL7Exchange(b, 0, b.length);
    assert.ok(x);
    assert.equal(x.comm, wantComm);
    const { outputs } = exchangeOutputs(x, DEFAULT_L7_OPTIONS, () => 'svc');
    assert.equal(outputs.length, 2);
    for (const o of outputs) {
      assert.equal(o.ctx.comm, wantComm);
      assert.equal(o.ctx.local_addr, wantLocal, `${comm} local`);
      assert.equal(o.ctx.remote_addr, wantRemote, `${comm} remote`);
    }
  }
});

// parseFields builds a field's name only when its length is a kept name's: names of those lengths that are
// not kept, and kept ones in any case, beside longer and shorter ones
test('head fields: kept names by length, case and neighbours', () => {
  const captured = new Set(['traceparent', 'user-agent']);
  const cases: [string, [string, string][]][] = [
    ['Host: a\r\nUser-Agent: ua\r\nUser-Agenx: no\r\nuser-agent: ub\r\n\r\n', [['user-agent', 'ua'], ['user-agent', 'ub']]],
    ['TRACEPARENT: t\r\nTraceparenX: no\r\nContent-Length: 3\r\nContent-Lengthy: 4\r\n\r\n', [['traceparent', 't'], ['content-length', '3']]],
    ['X: 1\r\nConnection: close\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\nAVeryLongHeaderNameThatIsKeptNowhere: v\r\n\r\n',
      [['connection', 'close'], ['upgrade', 'h2c'], ['transfer-encoding', 'chunked']]],
    ['Upgradx: 1\r\nUser-Agent:  spaced \r\n\r\n', [['user-agent', 'spaced']]],
  ];
  for (const [fields, want] of cases) {
    const b = Buffer.from(`GET / HTTP/1.1\r\n${fields}`, 'latin1');
    const h = parseHttp1Head('REQUEST', b, b.length, captured);
    assert.ok(h);
    assert.deepEqual(h.fields, want, fields);
    assert.equal(h.wellFormed, true);
  }
});

// the u64 fields are read through a DataView, not capture.ts's u64: exact at 2^32, around 2^53, at the top bit and 2^64-1
test('u64 fields: exact on both sides of 2^53 and at the top', () => {
  const values = [0n, 1n, 0xffffffffn, 0x100000000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 0x1fffff_ffffffffn + 2n, (1n << 64n) - 1n, 0x8000000000000001n];
  for (const v of values) {
    const b = record('node', 2, [1, 2, 3, 4], [5, 6, 7, 8]);
    for (const f of ['ts_ns', 'cgroup_id', 'conn_id', 'req_start_ns', 'req_end_ns', 'resp_start_ns', 'resp_end_ns'] as const) b.writeBigUInt64LE(v, X[f]);
    const x = decodeL7Exchange(b, 0, b.length);
    assert.ok(x);
    for (const f of ['ts_ns', 'cgroup_id', 'conn_id', 'req_start_ns', 'req_end_ns', 'resp_start_ns', 'resp_end_ns'] as const) assert.equal(x[f], v, `${f} ${v}`);
  }
});
