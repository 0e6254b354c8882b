/**
 * bpf/l7_h1.h's whole-line units (rf_h1_fast: a status or request line, a
 * field line, a Content-Length or "chunked" value, a chunk-size line, a
 * CRLF, in one unit) against the byte-wise machine they shortcut: the host
 * driver test/support/l7-h1-units.c is built twice, as shipped and with
 * -DRF_H1_BYTEWISE (every unit a byte or a run), and both must give the same
 * events and the same framing state after every syscall, on heads and
 * bodies both well-formed and broken, split anywhere.
 *
 * And the point of them: each unit is one bpf_loop step in BPF (~25 ns of
 * callback and global-function call besides its work), so the units a
 * common message takes are pinned. node:http's chunked response to wrk
 * (the l7overhead bench's server) took 70 units byte-wise-and-runs, wrk's
 * request 15.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'rf-l7h1u-'));
const built = new Map<string, string>();
function driver(bytewise: boolean): string {
  const key = bytewise ? 'bytewise' : 'fast';
  let bin = built.get(key);
  if (bin === undefined) {
    bin = join(dir, `l7-h1-units-${key}`);
    execFileSync('cc', ['-O2', '-Wall', '-Werror', ...(bytewise ? ['-DRF_H1_BYTEWISE'] : []), '-o', bin, `${ROOT}test/support/l7-h1-units.c`], { stdio: 'inherit' });
    built.set(key, bin);
  }
  return bin;
}

/** A connection: syscalls in order, each on the requests (Q) or responses (S) side. */
type Call = ['Q' | 'S', string];

function run(bytewise: boolean, convs: Call[][]): string[][] {
  const input = convs.map((c) => ['C', ...c.map(([side, s], k) => `${side} ${k + 1} ${Buffer.from(s, 'latin1').toString('hex')}`)].join('\n')).join('\n');
  const out = execFileSync(driver(bytewise), { input: `${input}\n`, maxBuffer: 1 << 28 }).toString().split('\n');
  // split the output back per connection: each call ends with exactly one ST line
  const per: string[][] = [];
  let at = 0;
  for (const c of convs) {
    const lines: string[] = [];
    for (let n = 0; n < c.length; at++) {
      lines.push(out[at]!);
      if (out[at]!.includes(' ST ')) n++;
    }
    per.push(lines);
  }
  return per;
}

const units = (lines: string[]): number[] => lines.filter((l) => l.includes(' ST ')).map((l) => Number(/UNITS (\d+)$/.exec(l)![1]));
const noUnits = (lines: string[]): string[] => lines.map((l) => l.replace(/ UNITS \d+$/, ''));

// what the l7overhead bench and the parse-cost script exchange (node:http, wrk)
const WRK_GET = 'GET /users/42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n';
const NODE_CHUNKED = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nDate: Mon, 07 Dec 2026 22:24:23 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n{"id":42,"name":"x"}\r\n0\r\n\r\n';
const NODE_CL = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: Mon, 07 Dec 2026 22:24:23 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok';

test('l7_h1 units: a common message takes a unit per line (request 3, chunked response 12, sized response 7)', () => {
  const table: [string, Call[], number[]][] = [
    ['wrk GET', [['Q', WRK_GET]], [3]],
    ['node:http chunked response', [['Q', WRK_GET], ['S', NODE_CHUNKED]], [3, 12]],
    ['node:http sized response', [['Q', WRK_GET], ['S', NODE_CL]], [3, 7]],
    ['POST with a body', [['Q', 'POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello']], [5]],
    ['bare LF line ends', [['Q', 'GET / HTTP/1.0\nHost: h\n\n']], [3]],
  ];
  const got = run(false, table.map(([, c]) => c));
  table.forEach(([name, , want], k) => assert.deepEqual(units(got[k]!), want, name));
});

test('l7_h1 units: the whole-line units leave what the byte-wise machine leaves (table, split at every byte)', () => {
  const msgs: [string, string][] = [
    [WRK_GET, NODE_CHUNKED],
    [WRK_GET, NODE_CL],
    ['POST /u HTTP/1.1\r\ncontent-LENGTH:  12 \r\nX: y\r\n\r\nabcdefghijkl', 'HTTP/1.1 201 Created\r\nTransfer-Encoding:chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n'],
    ['PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1;e=1\r\na\r\n0\r\n\r\n', 'HTTP/1.1 200\r\nContent-Length: 3, 3\r\n\r\nabc'],
    ['GET /a HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\n', 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n'],
    ['GET  /two-spaces HTTP/1.1\r\n\r\n', 'HTTP/1.1 200 O\rK\r\n\r\n'],
    ['FOO / HTTP/1.1\r\n\r\n', 'HTTP/1.1 099 X\r\n\r\n'],
    ['GET / HTTP/1.1\r\nContent-Length: 5\rX\r\n\r\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\nA\r\n0123456789\r\n0\n\n'],
    ['GET / HTTP/1.1\r\nTransfer-Encoding: chun ked\r\n\r\n', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n1000000000000\r\n'],
    ['GET / HTTP/1.1\r\ncontent-length\r\n  folded\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n'],
    ['POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 123456789012345\r\n\r\n'],
    ['GET /\r\n\r\n', 'HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n'],
  ];
  const convs: Call[][] = [];
  for (const [q, s] of msgs) {
    for (let k = 0; k <= Math.max(q.length, s.length); k++) {
      convs.push([['Q', q.slice(0, k)], ['Q', q.slice(k)], ['S', s.slice(0, k)], ['S', s.slice(k)]]);
    }
  }
  const fast = run(false, convs);
  const ref = run(true, convs);
  convs.forEach((c, k) => assert.deepEqual(noUnits(fast[k]!), noUnits(ref[k]!), JSON.stringify(c)));
});

/** mulberry32: a seeded generator, so that a failure is reproduced by its seed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('l7_h1 units: random heads and chunked bodies, well-formed and not, split at random points, same as byte-wise', () => {
  const r = rng(12);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const eol = () => pick(['\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n', '']);
  const ows = () => pick(['', ' ', '  ', '\t', ' \t ']);
  const digits = (n: number) => Array.from({ length: n }, () => pick('0123456789'.split(''))).join('');
  const value = () => pick([
    () => `${ows()}${digits(Math.floor(r() * 18))}${ows()}`,
    () => `${ows()}${pick(['chunked', 'CHUNKED', 'Chunked', 'chunke', 'chunkedx', 'chun ked', 'gzip, chunked', 'chunked, gzip'])}${ows()}`,
    () => `${ows()}${digits(2)},${ows()}${digits(2)}`,
    () => `${ows()}${digits(1 + Math.floor(r() * 3))}${pick([' ', '\t', '  '])}${digits(1)}${ows()}`,
    () => pick(['application/json', 'keep-alive', 'x\ry', '', ':', '\x7f\x00']),
  ])();
  const name = () => pick(['Content-Length', 'content-length', 'CONTENT-LENGTH', 'Transfer-Encoding', 'transfer-encoding',
    'Content-Type', 'content-', 'Content-Lengthx', 'Content-Length ', 'Transfer-Encodin', 'Host', 'c', 't', 'X-Pad', ' folded', '']);
  const field = () => `${name()}${pick([':', ': ', ' :', ''])}${value()}${eol()}`;
  const head = (resp: boolean) => {
    const start = resp
      ? `HTTP/1.${pick(['1', '0', 'x'])} ${pick(['200', '204', '304', '404', '099', '20', '2000', '100'])}${pick([' OK', '', ' ', ' A B', ' O\rK', 'X'])}${eol()}`
      : `${pick(['GET', 'POST', 'PUT', 'HEAD', 'PROPPATCH', 'FOO', 'get', 'GETX'])}${pick([' ', '  '])}${pick(['/', '/a?b=c', '/x\x01y', ''])}${pick([' HTTP/1.1', ' HTTP/1.0', ' HTTP/2.0', '', ' HTTX/1.1'])}${eol()}`;
    const fields = Array.from({ length: Math.floor(r() * 5) }, field).join('');
    return `${start}${fields}${eol()}`;
  };
  const chunked = () => {
    const n = Math.floor(r() * 3);
    let out = '';
    for (let k = 0; k < n; k++) {
      const len = 1 + Math.floor(r() * 20);
      out += `${len.toString(16)}${pick(['', ';x=1', ' ', 'g'])}${eol()}${'d'.repeat(len)}${eol()}`;
    }
    return `${out}0${eol()}${r() < 0.3 ? `X-T: 1${eol()}` : ''}${eol()}`;
  };
  const convs: Call[][] = [];
  for (let k = 0; k < 3000; k++) {
    const calls: Call[] = [];
    for (const side of ['Q', 'S'] as const) {
      let bytes = '';
      for (let m = 1 + Math.floor(r() * 2); m > 0; m--) bytes += head(side === 'S') + (r() < 0.5 ? chunked() : 'b'.repeat(Math.floor(r() * 4)));
      // 1 to 4 syscalls, cut anywhere
      const cuts = Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * (bytes.length + 1))).sort((a, b) => a - b);
      let from = 0;
      for (const c of [...cuts, bytes.length]) {
        calls.push([side, bytes.slice(from, c)]);
        from = c;
      }
    }
    convs.push(calls);
  }
  const fast = run(false, convs);
  const ref = run(true, convs);
  convs.forEach((c, k) => assert.deepEqual(noUnits(fast[k]!), noUnits(ref[k]!), JSON.stringify(c)));
});
