/**
 * The BPF HTTP/1 framing machine (bpf/l7_h1.h) against the reference parser
 * (collector/l7/http1.ts): the same conversations, whole and split at every
 * byte, must give the same message boundaries (ordinal, status, body bytes,
 * first and last syscall) and give up where http1.ts fails, for the same
 * kind of reason. The C machine is compiled once for the host
 * (test/support/l7-h1-driver.c, cc -DRF_HOST) and run once on every
 * conversation of this file.
 *
 * Not compared (l7_h1.h's header says why they differ on purpose): what
 * follows a give-up (BPF re-synchronises, http1.ts stops), upgrades and
 * CONNECT (own cases below), field lines other than the framing ones, gaps
 * (BPF never skips uncaptured bytes: it frames every byte moved).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createHttp1Connection, type Http1StreamParser } from '../../collector/l7/http1.ts';
import type { L7Message } from '../../collector/l7/types.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** One syscall's bytes, or the end of the side. Step k has ts k + 1. */
type Step = Uint8Array | 'EOF';
interface Conv {
  name: string;
  requests: Step[];
  responses: Step[];
}

/** A message boundary as both sides can state it: [ordinal, status, body bytes, first ts, last ts]. */
type Msg = [number, number, number, number, number];
interface Side {
  msgs: Msg[];
  /** rf_l7_parse_counter index of the give-up (1 head too long, 2 bad start, 3 bad framing), or null. */
  gaveUp: number | null;
}
interface Result {
  requests: Side;
  responses: Side;
}

/** http1.ts failure reasons as the BPF give-up they correspond to; undefined: not comparable. */
const WHY: Record<string, number | undefined> = {
  'bad start line': 2,
  'headers too large': 1,
  'trailers too large': 1,
  'bad content-length': 3,
  'bad transfer-encoding': 3,
  'bad chunk size': 3,
  'bad chunk terminator': 3,
  'chunk size line too long': 3,
};

function reference(c: Conv): Result | null {
  const conn = createHttp1Connection();
  const run = (p: Http1StreamParser, steps: Step[]): Side | null => {
    const out: L7Message[] = [];
    steps.forEach((s, k) => out.push(...(s === 'EOF' ? p.end(BigInt(k + 1)) : p.push(s, BigInt(k + 1)))));
    const failed = p.failed;
    if (failed !== null && WHY[failed] === undefined) return null;
    return {
      msgs: out.filter((m) => !m.truncated).map((m) => [m.stream_id, m.status ?? 0, m.body_bytes, Number(m.start_ns), Number(m.end_ns)]),
      gaveUp: failed === null ? null : WHY[failed]!,
    };
  };
  const requests = run(conn.requests, c.requests);
  const responses = run(conn.responses, c.responses);
  return requests === null || responses === null ? null : { requests, responses };
}

let driver: string | null = null;
function buildDriver(): string {
  if (driver === null) {
    driver = join(mkdtempSync(join(tmpdir(), 'rf-l7h1-')), 'l7-h1-driver');
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', driver, `${ROOT}test/support/l7-h1-driver.c`], { stdio: 'inherit' });
  }
  return driver;
}

/** Runs every conversation through the C machine in one process. */
function kernel(convs: readonly Conv[]): Result[] {
  const lines: string[] = [];
  for (const c of convs) {
    lines.push('C');
    for (const [side, steps] of [['Q', c.requests], ['S', c.responses]] as const) {
      steps.forEach((s, k) => lines.push(s === 'EOF' ? `${side}E ${k + 1}` : `${side} ${k + 1} ${hex(s)}`));
    }
    lines.push('.');
  }
  const out = execFileSync(buildDriver(), { input: `${lines.join('\n')}\n`, maxBuffer: 1 << 28 }).toString();
  const results: Result[] = [];
  let cur: Result = { requests: { msgs: [], gaveUp: null }, responses: { msgs: [], gaveUp: null } };
  for (const line of out.split('\n')) {
    if (line === '.') {
      results.push(cur);
      cur = { requests: { msgs: [], gaveUp: null }, responses: { msgs: [], gaveUp: null } };
      continue;
    }
    const [side, ev, ...rest] = line.split(' ');
    if (side === undefined || ev === undefined) continue;
    const s = side === 'Q' ? cur.requests : cur.responses;
    // Compared up to the first give-up: what follows is resynchronisation, which http1.ts does not do.
    if (s.gaveUp !== null) continue;
    if (ev === 'END') s.msgs.push(rest.map(Number) as Msg);
    else if (ev === 'GIVEUP') s.gaveUp = Number(rest[0]);
  }
  assert.equal(results.length, convs.length, 'one result per conversation');
  return results;
}

const str = (steps: (string | 'EOF')[]): Step[] => steps.map((s) => (s === 'EOF' ? s : bytes(s)));
const OK0 = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';

/** Conversations of test/unit/l7-http1.test.ts (those without gaps, upgrades or custom header checks), and more. */
const table: Conv[] = ([
  ['GET with headers, split head', [
    'GET /users/42?id=7&debug HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n',
    'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Request-Id: abc\r\n\r\n',
  ], ['HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nServer: x\r\n\r\n{}']],
  ['header names case-insensitive, obs-fold', ['GET / HTTP/1.1\r\nX-Tenant: a\r\nx-tenant:b  \r\nHost: h\r\n  folded\r\nUser-Agent: u\r\n\r\n'], []],
  ['POST with content-length across pushes, then the next request',
    ['POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n', '{"a":', '12345}', 'GET /next HTTP/1.1\r\n\r\n'], []],
  ['chunked with extensions and trailers', ['PUT /obj HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n', '5;name=value\r\npedia\r\n0\r\n\r\n'], [
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\nTrailer: X-Checksum\r\n\r\n1a\r\n',
    `${'a'.repeat(26)}\r\n`, '0\r\nX-Checksum: abc\r\nX-Other: 1\r\n', '\r\n',
  ]],
  ['pipelined requests and responses, several in one write each',
    ['GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcDELETE /3 HTTP/1.1\r\n\r\n'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n']],
  ['empty lines before a request; bare LF ends lines', ['\r\n', 'GET / HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.0\n\n'], []],
  ['HEAD response has no body despite its Content-Length', ['HEAD /file HTTP/1.1\r\n\r\nGET /file HTTP/1.1\r\n\r\n'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok']],
  ['100 Continue and 103 Early Hints are not final', ['POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n', 'data'],
    ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n', OK0]],
  ['204 has no body', ['DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n'],
    ['HTTP/1.1 204 No Content\r\nDate: today\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx']],
  ['304 has no body despite its Content-Length', ['GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n'],
    ['HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc']],
  ['response without length is closed by EOF', ['GET / HTTP/1.0\r\n\r\n'],
    ['HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n', '<html>', '</html>', 'EOF']],
  ['non-chunked Transfer-Encoding response read until EOF', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'abcd', 'EOF']],
  ['EOF inside a sized body or a head', ['GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: cut', 'EOF'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', 'EOF']],
  ['oversized headers', ['GET /big HTTP/1.1\r\nHost: h\r\n', `X-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, 'GET / HTTP/1.1\r\n\r\n'], []],
  ['head of exactly 16 KiB is kept', [`GET / HTTP/1.1\r\nX: ${'a'.repeat(16384 - 16 - 5 - 2)}\r\n\r\n`], [OK0]],
  ['head of 16 KiB + 1 is too long', [`GET / HTTP/1.1\r\nX: ${'a'.repeat(16384 - 16 - 5 - 1)}\r\n\r\n`], [OK0]],
  // the whole-token steps (status, version, Content-Length name) count head bytes as the byte-wise ones do
  ['16 KiB head with a Content-Length', [`GET / HTTP/1.1\r\nContent-Length: 0\r\nX: ${'a'.repeat(16384 - 16 - 19 - 7)}\r\n\r\n`], [OK0]],
  ['16 KiB + 1 head with a Content-Length', [`GET / HTTP/1.1\r\nContent-Length: 0\r\nX: ${'a'.repeat(16384 - 16 - 19 - 6)}\r\n\r\n`], [OK0]],
  ['16 KiB response head', ['GET / HTTP/1.1\r\n\r\n'], [`HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ${'a'.repeat(16384 - 17 - 19 - 7)}\r\n\r\n`, OK0]],
  ['16 KiB + 1 response head', ['GET / HTTP/1.1\r\n\r\n'], [`HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ${'a'.repeat(16384 - 17 - 19 - 6)}\r\n\r\n`, OK0]],
  ['Upgrade header without Connection: upgrade', ['GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\nGET /2 HTTP/1.1\r\n\r\n'], []],
  ['TLS bytes on an HTTP/1 direction', ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'], []],
  ['HTTP/2 preface is not HTTP/1', ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'], []],
  ['negative Content-Length', ['GET / HTTP/1.1\r\nContent-Length: -39\r\n\r\nX'], []],
  ['conflicting Content-Length values', ['POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'], []],
  ['repeated equal Content-Length values', ['POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc'], []],
  ['empty Content-Length element', ['POST / HTTP/1.1\r\nContent-Length: 3,\r\n\r\nabc'], []],
  ['Content-Length of 16 digits', ['POST / HTTP/1.1\r\nContent-Length: 1234567890123456\r\n\r\nabc'], []],
  ['Content-Length: 0 and a chunked Transfer-Encoding: chunked wins', ['POST / HTTP/1.1\r\nContent-length: 0\r\ntransfer-ENCODING: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], []],
  ['bad Content-Length ignored under chunked', ['POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'], []],
  ['chunked not last: request cannot be delimited', ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc'], []],
  ['chunked across two Transfer-Encoding fields', ['POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding:  chunked \r\n\r\n1\r\na\r\n0\r\n\r\n'], []],
  ['a coding with a space inside is not chunked', ['POST / HTTP/1.1\r\nTransfer-Encoding: chun ked\r\n\r\n'], []],
  ['request with a non-chunked Transfer-Encoding', ['POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc'], []],
  ['negative chunk size', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcdef']],
  ['non-hex chunk size', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n', OK0]],
  ['chunk size of 13 hex digits', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n']],
  ['chunk-size line over 1 KiB', ['GET / HTTP/1.1\r\n\r\n'], [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;${'e'.repeat(1100)}\r\na\r\n0\r\n\r\n`]],
  ['chunk size with whitespace and extension', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA \t;x="1"\r\n0123456789\r\n0\r\n\r\n', OK0]],
  ['chunk data not followed by CRLF', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n']],
  ['chunk data followed by LF alone', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n', OK0]],
  ['bad status line', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 OK\r\n\r\n']],
  ['status 099 is no status', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 099 X\r\n\r\n']],
  ['status line without reason', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx']],
  ['request line without version', ['GET /\r\n\r\n'], []],
  ['request line with two spaces', ['GET  / HTTP/1.1\r\n\r\n'], []],
  ['HTTP/1.0 request answered by 1.1', ['GET /old HTTP/1.0\r\nHost: h\r\n\r\n'], ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok']],
  ['a 1xx then the final response', ['GET / HTTP/1.1\r\n\r\n'], ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n']],
  ['every method of the gate', [
    ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'SEARCH', 'REPORT', 'PURGE']
      .map((m) => `${m} /x HTTP/1.1\r\n\r\n`).join(''),
  ], []],
] as [string, (string | 'EOF')[], (string | 'EOF')[]][]).map(([name, q, s]) => ({ name, requests: str(q), responses: str(s) }));

/** Each side's bytes (EOF kept last) cut at k: [0, k) and [k, n), the second with ts 2. */
function splitAt(steps: Step[], k: number): Step[] {
  const eof = steps.at(-1) === 'EOF';
  const parts = steps.filter((s): s is Uint8Array => s !== 'EOF');
  const all = Buffer.concat(parts);
  const out: Step[] = [all.subarray(0, Math.min(k, all.length)), all.subarray(Math.min(k, all.length))];
  return eof ? [...out, 'EOF'] : out;
}

function compare(convs: Conv[]): number {
  const refs = convs.map(reference);
  const got = kernel(convs);
  let compared = 0;
  convs.forEach((c, i) => {
    const want = refs[i];
    if (want === null || want === undefined) return;
    assert.deepEqual(got[i], want, `${c.name}: C machine vs http1.ts`);
    compared++;
  });
  return compared;
}

test('l7_h1 vs http1.ts: the table conversations as written', () => {
  const n = compare(table);
  assert.equal(n, table.length, "every table conversation is comparable");
});

test('l7_h1 vs http1.ts: the table conversations split at every byte (both sides at once)', () => {
  const convs: Conv[] = [];
  for (const c of table) {
    const len = Math.max(...[c.requests, c.responses].map((s) => s.reduce((n, p) => n + (p === 'EOF' ? 0 : p.length), 0)));
    // Long heads: every byte near the edges and each 97th elsewhere keeps the run short.
    for (let k = 0; k <= len; k++) {
      if (len > 2000 && k > 40 && k < len - 40 && k % 97 !== 0 && Math.abs(k - 16384) > 40) continue;
      convs.push({ name: `${c.name} @${k}`, requests: splitAt(c.requests, k), responses: splitAt(c.responses, k) });
    }
  }
  compare(convs);
});

test('l7_h1: give-ups re-synchronise at a syscall that starts with a start line; not in the middle of one', () => {
  const [r] = kernel([{
    name: 'resync',
    requests: str(['GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n', 'garbage GET / HTTP/1.1\r\n\r\n', 'GET /ok HTTP/1.1\r\n\r\n']),
    responses: str(['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n']),
  }]);
  // the first request's ordinal is used by the lost message; the resynchronised one is #1
  const out = execFileSync(buildDriver(), {
    input: ['C', `Q 1 ${hex(bytes('GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n'))}`, `Q 2 ${hex(bytes('garbage GET / HTTP/1.1\r\n\r\n'))}`,
      `Q 3 ${hex(bytes('GET /ok HTTP/1.1\r\n\r\n'))}`, '.', ''].join('\n'),
  }).toString();
  assert.equal(r!.requests.gaveUp, 3);
  assert.deepEqual(out.split('\n').filter((l) => l !== ''), ['Q GIVEUP 3', 'Q RESYNC', 'Q END 1 0 0 3 3', '.']);
});

test('l7_h1: a 101 or a 2xx to CONNECT ends the response and leaves a tunnel (no give-up on what follows)', () => {
  const results = kernel([
    {
      name: 'websocket',
      requests: str(['GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n']),
      responses: str(['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello', '\x81\x05again']),
    },
    {
      name: 'connect',
      requests: str(['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x02\x00']),
      responses: str(['HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03\x00\x7a']),
    },
  ]);
  assert.deepEqual(results[0]!.responses, { msgs: [[0, 101, 0, 1, 1]], gaveUp: null });
  assert.deepEqual(results[1]!.requests, { msgs: [[0, 0, 0, 1, 1]], gaveUp: null });
  assert.deepEqual(results[1]!.responses, { msgs: [[0, 200, 0, 1, 1]], gaveUp: null });
});

// ---- property: random valid conversations, every split point ---------------------------------

const arbBody = fc.option(fc.record({ chunked: fc.boolean(), len: fc.nat(40), cut: fc.nat(40) }));
const arbExchange = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
  eol: fc.constantFrom('\r\n', '\n'),
  reqBody: arbBody,
  informational: fc.boolean(),
  status: fc.constantFrom(200, 201, 204, 301, 304, 404, 500),
  respBody: arbBody,
  trailers: fc.boolean(),
  padHead: fc.nat(3),
});

function body(b: { chunked: boolean; len: number; cut: number } | null, eol: string, trailers: boolean): [string, string] {
  if (b === null) return ['', ''];
  const data = 'b'.repeat(b.len);
  if (!b.chunked) return [`Content-Length: ${b.len}${eol}`, data];
  const cut = b.len ? b.cut % b.len : 0;
  const chunks = [data.slice(0, cut), data.slice(cut)].filter((d) => d.length > 0).map((d) => `${d.length.toString(16)}${eol}${d}${eol}`);
  return [`Transfer-Encoding: chunked${eol}`, `${chunks.join('')}0${eol}${trailers ? `X-T: t${eol}` : ''}${eol}`];
}

test('l7_h1 vs http1.ts property: random valid conversations give the same boundaries at every split point', () => {
  const convs: Conv[] = [];
  fc.assert(
    fc.property(fc.array(arbExchange, { minLength: 1, maxLength: 3 }), fc.boolean(), (xs, closeLast) => {
      let req = '';
      let resp = '';
      xs.forEach((x, k) => {
        const [rh, rb] = body(x.reqBody, x.eol, x.trailers);
        req += `${x.method} /p${k} HTTP/1.1${x.eol}${'X-Pad: 1'.repeat(x.padHead ? 1 : 0)}${x.padHead ? x.eol : ''}${rh}${x.eol}${rb}`;
        if (x.informational) resp += `HTTP/1.1 100 Continue${x.eol}${x.eol}`;
        const bodiless = x.method === 'HEAD' || x.status === 204 || x.status === 304;
        if (k === xs.length - 1 && closeLast && !bodiless) {
          resp += `HTTP/1.1 ${x.status} X${x.eol}${x.eol}${'c'.repeat(x.respBody?.len ?? 0)}`;
        } else {
          const [h, b] = body(x.respBody, x.eol, x.trailers);
          resp += `HTTP/1.1 ${x.status} Reason${x.eol}${x.respBody === null ? `Content-Length: 0${x.eol}` : h}${x.eol}${bodiless ? '' : b}`;
        }
      });
      const eof = closeLast;
      const base: Conv = { name: 'prop', requests: [bytes(req)], responses: eof ? [bytes(resp), 'EOF'] : [bytes(resp)] };
      for (let k = 0; k <= Math.max(req.length, resp.length); k++) {
        convs.push({ name: `prop ${JSON.stringify(req)} / ${JSON.stringify(resp)} @${k}`, requests: splitAt(base.requests, k), responses: splitAt(base.responses, k) });
      }
    }),
    { numRuns: 60, seed: 10 },
  );
  const n = compare(convs);
  assert.equal(n, convs.length, 'every generated conversation is comparable');
});
