/**
 * HTTP/1.x parser: framing (content-length, chunked, close, HEAD/1xx/204/304),
 * pipelining, timestamps, privacy (secret headers, query redaction), gaps,
 * loss of sync and upgrades, then properties: a valid stream split anywhere
 * gives the same messages as the whole, and garbage never throws, hangs or
 * grows the buffers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  createHttp1Connection,
  looksLikeHttp1Request,
  looksLikeHttp1Response,
  MAX_HEAD_BYTES,
  type Http1StreamParser,
} from '../../collector/l7/http1.ts';
import { DEFAULT_CAPTURED_HEADERS, type L7Message, type L7ParseOptions } from '../../collector/l7/types.ts';

/** Latin-1 string to bytes, so cases can hold binary bytes ('\x16'). */
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
const concat = (parts: readonly Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** One syscall's worth: bytes, uncaptured bytes, or the connection's close. Step k has ts k + 1. */
type Step = string | { gap: number } | 'EOF';

function feed(p: Http1StreamParser, steps: readonly Step[]): L7Message[] {
  const out: L7Message[] = [];
  steps.forEach((s, k) => {
    const ts = BigInt(k + 1);
    if (s === 'EOF') out.push(...p.end(ts));
    else if (typeof s === 'string') out.push(...p.push(bytes(s), ts));
    else out.push(...p.gap(s.gap, ts));
  });
  return out;
}

/** The fields of `got` that `want` names. */
function pick(got: L7Message, want: Partial<L7Message>): Partial<L7Message> {
  return Object.fromEntries(Object.keys(want).map((k) => [k, got[k as keyof L7Message]])) as Partial<L7Message>;
}

interface Case {
  name: string;
  opts?: L7ParseOptions;
  /** Fed whole before the responses, as the collector does: requests go out first. */
  requests?: Step[];
  responses?: Step[];
  want: {
    requests?: Partial<L7Message>[];
    responses?: Partial<L7Message>[];
    requestsFailed?: string | null;
    responsesFailed?: string | null;
  };
}

const OK0 = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';

const cases: Case[] = [
  {
    name: 'GET with headers: selected ones kept, split head timed from first to last push',
    requests: [
      'GET /users/42?id=7&debug HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n',
      'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Request-Id: abc\r\n\r\n',
    ],
    responses: ['HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nServer: x\r\n\r\n{}'],
    want: {
      requests: [{
        protocol: 'HTTP1', kind: 'REQUEST', stream_id: 0, method: 'GET', path: '/users/42?id=REDACTED&debug', status: null,
        headers: { host: 'api.example.com', 'user-agent': 'curl/8.5.0', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
        body_bytes: 0, start_ns: 1n, end_ns: 2n, truncated: false, grpc_service: null, dns_name: null,
      }],
      responses: [{
        protocol: 'HTTP1', kind: 'RESPONSE', stream_id: 0, method: null, path: null, status: 200,
        headers: { 'content-type': 'application/json' }, body_bytes: 2, start_ns: 1n, end_ns: 1n, truncated: false,
      }],
    },
  },
  {
    name: 'headers: names case-insensitive, repeats joined, obs-fold continued, custom list',
    opts: { headers: ['x-tenant', 'host'], keepQueryValues: false },
    requests: ['GET / HTTP/1.1\r\nX-Tenant: a\r\nx-tenant:b  \r\nHost: h\r\n  folded\r\nUser-Agent: u\r\n\r\n'],
    want: { requests: [{ headers: { 'x-tenant': 'a, b', host: 'h folded' } }] },
  },
  {
    name: 'POST with content-length across pushes, then the next request',
    requests: ['POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n', '{"a":', '12345}', 'GET /next HTTP/1.1\r\n\r\n'],
    want: {
      requests: [
        { stream_id: 0, method: 'POST', path: '/upload', body_bytes: 11, start_ns: 1n, end_ns: 3n, truncated: false },
        { stream_id: 1, method: 'GET', path: '/next', body_bytes: 0, start_ns: 4n, end_ns: 4n },
      ],
    },
  },
  {
    name: 'chunked with extensions and trailers: body is the sum of chunk sizes, ends with the trailers',
    requests: ['PUT /obj HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n', '5;name=value\r\npedia\r\n0\r\n\r\n'],
    responses: [
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\nTrailer: X-Checksum\r\n\r\n1a\r\n',
      `${'a'.repeat(26)}\r\n`,
      '0\r\nX-Checksum: abc\r\nX-Other: 1\r\n',
      '\r\n',
    ],
    want: {
      requests: [{ method: 'PUT', body_bytes: 9, start_ns: 1n, end_ns: 2n, truncated: false }],
      responses: [{ status: 200, body_bytes: 26, start_ns: 1n, end_ns: 4n, truncated: false, headers: {} }],
    },
  },
  {
    name: 'pipelined requests and responses, several in one write each',
    requests: ['GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcDELETE /3 HTTP/1.1\r\n\r\n'],
    responses: [
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n',
    ],
    want: {
      requests: [
        { stream_id: 0, method: 'GET', path: '/1', body_bytes: 0, headers: { host: 'a' } },
        { stream_id: 1, method: 'POST', path: '/2', body_bytes: 3 },
        { stream_id: 2, method: 'DELETE', path: '/3', body_bytes: 0 },
      ],
      responses: [
        { stream_id: 0, status: 200, body_bytes: 1 },
        { stream_id: 1, status: 201, body_bytes: 2 },
        { stream_id: 2, status: 204, body_bytes: 0 },
      ],
    },
  },
  {
    name: 'empty lines before a request are skipped (RFC 9112 2.2); bare LF ends lines',
    requests: ['\r\n', 'GET / HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.0\n\n'],
    want: { requests: [{ stream_id: 0, path: '/', start_ns: 2n }, { stream_id: 1, path: '/b', start_ns: 2n }] },
  },
  {
    name: 'HEAD response has no body despite its Content-Length',
    requests: ['HEAD /file HTTP/1.1\r\n\r\nGET /file HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'],
    want: { responses: [{ stream_id: 0, status: 200, body_bytes: 0 }, { stream_id: 1, status: 200, body_bytes: 2 }] },
  },
  {
    name: '100 Continue and 103 Early Hints are not final: the 200 answers request 0',
    requests: ['POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n', 'data'],
    responses: ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n', OK0],
    want: {
      requests: [{ stream_id: 0, method: 'POST', body_bytes: 4, start_ns: 1n, end_ns: 2n }],
      responses: [{ stream_id: 0, status: 200, body_bytes: 0, start_ns: 3n, end_ns: 3n }],
    },
  },
  {
    name: '204 No Content has no body',
    requests: ['DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 204 No Content\r\nDate: today\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx'],
    want: { responses: [{ stream_id: 0, status: 204, body_bytes: 0, start_ns: 1n, end_ns: 1n }, { stream_id: 1, status: 200, body_bytes: 1, start_ns: 2n }] },
  },
  {
    name: '304 Not Modified has no body despite its Content-Length',
    requests: ['GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'],
    want: { responses: [{ stream_id: 0, status: 304, body_bytes: 0 }, { stream_id: 1, status: 200, body_bytes: 3 }] },
  },
  {
    name: 'response without length is closed by EOF; end_ns is its last byte',
    requests: ['GET / HTTP/1.0\r\n\r\n'],
    responses: ['HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n', '<html>', '</html>', 'EOF'],
    want: { responses: [{ status: 200, body_bytes: 13, start_ns: 1n, end_ns: 3n, truncated: false, headers: { 'content-type': 'text/html' } }] },
  },
  {
    name: 'response with a non-chunked Transfer-Encoding is read until EOF',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'abcd', 'EOF'],
    want: { responses: [{ status: 200, body_bytes: 4, end_ns: 2n, truncated: false }] },
  },
  {
    name: 'EOF inside a sized body or a head reports the message truncated',
    requests: ['GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: cut', 'EOF'],
    responses: ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', 'EOF'],
    want: {
      requests: [{ method: 'GET', path: '/x', headers: { host: 'h' }, truncated: true, end_ns: 1n }],
      responses: [{ status: 200, body_bytes: 10, truncated: true, end_ns: 1n }],
    },
  },
  {
    name: 'query values redacted by default, names kept, fragment dropped',
    requests: ['GET /search?q=cats&page=2&flag#frag HTTP/1.1\r\n\r\n'],
    want: { requests: [{ path: '/search?q=REDACTED&page=REDACTED&flag' }] },
  },
  {
    name: 'query values kept when keepQueryValues',
    opts: { headers: DEFAULT_CAPTURED_HEADERS, keepQueryValues: true },
    requests: ['GET /search?q=cats&page=2&flag#frag HTTP/1.1\r\n\r\n'],
    want: { requests: [{ path: '/search?q=cats&page=2&flag' }] },
  },
  {
    name: 'gap inside a sized body: accounted, the next response parses',
    requests: ['GET /big HTTP/1.1\r\n\r\nGET /missing HTTP/1.1\r\n\r\n'],
    responses: [`HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n${'x'.repeat(100)}`, { gap: 9900 }, 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'],
    want: {
      responses: [
        { stream_id: 0, status: 200, body_bytes: 10000, start_ns: 1n, end_ns: 2n, truncated: false },
        { stream_id: 1, status: 404, start_ns: 3n },
      ],
    },
  },
  {
    name: 'gap inside a chunk that ends in it: accounted',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n${'y'.repeat(1000)}`, { gap: 3096 }, '\r\n0\r\n\r\n'],
    want: { responses: [{ status: 200, body_bytes: 0x1000, end_ns: 3n, truncated: false }] },
  },
  {
    name: 'gap inside a close-delimited body: accounted',
    requests: ['GET / HTTP/1.0\r\n\r\n'],
    responses: ['HTTP/1.0 200 OK\r\n\r\nabc', { gap: 5000 }, 'def', 'EOF'],
    want: { responses: [{ status: 200, body_bytes: 5006, end_ns: 3n, truncated: false }] },
  },
  {
    name: 'gap past the end of a sized body: the message is whole, then the direction stops',
    requests: ['GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab', { gap: 100 }, OK0],
    want: { responses: [{ status: 200, body_bytes: 5, end_ns: 2n, truncated: false }], responsesFailed: 'gap past message end' },
  },
  {
    name: 'gap across a chunk boundary: truncated, stops',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab', { gap: 100 }, '0\r\n\r\n'],
    want: { responses: [{ status: 200, body_bytes: 5, truncated: true, end_ns: 2n }], responsesFailed: 'gap across chunk boundary' },
  },
  {
    name: 'gap inside headers: what is known reported truncated, then nothing more',
    requests: ['GET /a?token=abc HTTP/1.1\r\nHost: h\r\nUser-Ag', { gap: 5000 }, 'GET /b HTTP/1.1\r\n\r\n'],
    want: {
      requests: [{ stream_id: 0, method: 'GET', path: '/a?token=REDACTED', headers: { host: 'h' }, truncated: true, start_ns: 1n, end_ns: 2n }],
      requestsFailed: 'gap in headers',
    },
  },
  {
    name: 'gap inside the start line: nothing known, nothing reported',
    requests: ['GET /a-very-long-pa', { gap: 10 }, 'GET / HTTP/1.1\r\n\r\n'],
    want: { requests: [], requestsFailed: 'gap in headers' },
  },
  {
    name: 'gap between messages: the next start is unknown',
    requests: ['GET / HTTP/1.1\r\n\r\n', { gap: 10 }, 'GET / HTTP/1.1\r\n\r\n'],
    want: { requests: [{ stream_id: 0 }], requestsFailed: 'gap between messages' },
  },
  {
    name: 'oversized headers: truncated with the whole lines before the cap, then stops',
    requests: ['GET /big HTTP/1.1\r\nHost: h\r\n', `X-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, 'GET / HTTP/1.1\r\n\r\n'],
    want: { requests: [{ method: 'GET', path: '/big', headers: { host: 'h' }, truncated: true }], requestsFailed: 'headers too large' },
  },
  {
    name: 'Upgrade: websocket request and 101 response stop both directions',
    requests: ['GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x85frame', 'GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello'],
    want: {
      requests: [{ method: 'GET', path: '/chat', stream_id: 0 }],
      responses: [{ status: 101, stream_id: 0 }],
      requestsFailed: 'upgrade',
      responsesFailed: 'upgrade',
    },
  },
  {
    name: 'CONNECT and its 2xx open a tunnel: both directions stop',
    requests: ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x02\x00'],
    responses: ['HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03\x00\x7a'],
    want: {
      requests: [{ method: 'CONNECT', path: 'example.com:443', headers: { host: 'example.com:443' } }],
      responses: [{ status: 200, body_bytes: 0 }],
      requestsFailed: 'upgrade',
      responsesFailed: 'upgrade',
    },
  },
  {
    name: 'Upgrade header without Connection: upgrade is only informational',
    requests: ['GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\nGET /2 HTTP/1.1\r\n\r\n'],
    want: { requests: [{ stream_id: 0 }, { stream_id: 1, path: '/2' }] },
  },
  {
    name: 'TLS bytes on an HTTP/1 direction: fails on the first byte',
    requests: ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'],
    want: { requests: [], requestsFailed: 'bad start line' },
  },
  {
    name: 'HTTP/2 preface is not HTTP/1',
    requests: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    want: { requests: [], requestsFailed: 'bad start line' },
  },
  {
    name: 'negative Content-Length (loops http-parser-js forever): truncated, stops',
    requests: ['GET / HTTP/1.1\r\nContent-Length: -39\r\n\r\nX'],
    want: { requests: [{ method: 'GET', truncated: true }], requestsFailed: 'bad content-length' },
  },
  {
    name: 'conflicting Content-Length values: stops',
    requests: ['POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'],
    want: { requests: [{ method: 'POST', truncated: true }], requestsFailed: 'bad content-length' },
  },
  {
    name: 'repeated equal Content-Length values are one length',
    requests: ['POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc'],
    want: { requests: [{ method: 'POST', body_bytes: 3, truncated: false }] },
  },
  {
    name: 'request with a non-chunked Transfer-Encoding cannot be delimited',
    requests: ['POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc'],
    want: { requests: [{ method: 'POST', truncated: true }], requestsFailed: 'bad transfer-encoding' },
  },
  {
    name: 'negative chunk size (hangs http-parser-js): truncated, stops',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabcdef'],
    want: { responses: [{ status: 200, truncated: true }], responsesFailed: 'bad chunk size' },
  },
  {
    name: 'non-hex chunk size (last chunk for http-parser-js): truncated, stops',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n', OK0],
    want: { responses: [{ status: 200, truncated: true }], responsesFailed: 'bad chunk size' },
  },
  {
    name: 'chunk data not followed by CRLF: truncated, stops',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n'],
    want: { responses: [{ status: 200, body_bytes: 3, truncated: true }], responsesFailed: 'bad chunk terminator' },
  },
  {
    name: 'header line without a colon: truncated, stops',
    requests: ['GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n'],
    want: { requests: [{ method: 'GET', headers: { host: 'h' }, truncated: true }], requestsFailed: 'bad header line' },
  },
  {
    name: 'bad status line: stops without a message',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 OK\r\n\r\n'],
    want: { responses: [], responsesFailed: 'bad start line' },
  },
  // network.protocol.version: each message keeps the version its own start line names
  {
    name: 'version: an HTTP/1.0 request answered with an HTTP/1.1 status line (as node:http does)',
    requests: ['GET /old HTTP/1.0\r\nHost: h\r\n\r\n'],
    responses: ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'],
    want: { requests: [{ method: 'GET', protocol_version: '1.0' }], responses: [{ status: 200, protocol_version: '1.1' }] },
  },
  {
    name: 'version: pipelined requests of different versions keep their own',
    requests: ['GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n'],
    responses: ['HTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'],
    want: {
      requests: [{ path: '/a', protocol_version: '1.1' }, { path: '/b', protocol_version: '1.0' }],
      responses: [{ status: 204, protocol_version: '1.1' }, { status: 200, protocol_version: '1.0' }],
    },
  },
  {
    name: 'version: a 1xx then the final response: the final one\'s',
    requests: ['GET / HTTP/1.1\r\n\r\n'],
    responses: ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'],
    want: { responses: [{ status: 200, protocol_version: '1.0' }] },
  },
  {
    name: 'version: a head cut short by a gap still names it',
    requests: ['GET /cut HTTP/1.0\r\nHost: h\r\n', { gap: 100 }],
    want: { requests: [{ path: '/cut', truncated: true, protocol_version: '1.0' }], requestsFailed: 'gap in headers' },
  },
];

for (const c of cases) {
  test(`http1: ${c.name}`, () => {
    const conn = createHttp1Connection(c.opts);
    const got = { requests: feed(conn.requests, c.requests ?? []), responses: feed(conn.responses, c.responses ?? []) };
    for (const dir of ['requests', 'responses'] as const) {
      const want = c.want[dir];
      if (want !== undefined) {
        assert.equal(got[dir].length, want.length, `${dir}: ${json(got[dir])}`);
        want.forEach((w, k) => assert.deepEqual(pick(got[dir][k]!, w), w, `${dir}[${k}]`));
      }
      assert.equal(conn[dir].failed, c.want[dir === 'requests' ? 'requestsFailed' : 'responsesFailed'] ?? null, `${dir}.failed`);
    }
  });
}

test('http1: secret headers and query values appear nowhere in the output, even when listed', () => {
  const secrets = ['sk-live-SECRET1', 'SECRET2', 'U0VDUkVUMw==', 'SECRET4', 'SECRET5', 'SECRET6', 'SECRET7'];
  const request = 'GET /login?api_key=SECRET5 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk-live-SECRET1\r\n'
    + 'Cookie: session=SECRET2\r\n  SECRET7\r\nProxy-Authorization: Basic U0VDUkVUMw==\r\n\r\n';
  const response = 'HTTP/1.1 200 OK\r\nSet-Cookie: id=SECRET4; HttpOnly\r\nSet-Cookie: other=SECRET6\r\nContent-Length: 0\r\n\r\n';
  const everything: L7ParseOptions = {
    headers: [...DEFAULT_CAPTURED_HEADERS, 'authorization', 'proxy-authorization', 'cookie', 'set-cookie'],
    keepQueryValues: false,
  };
  // [options, request steps, response steps]: whole, and cut inside the secret lines by a gap or EOF
  const runs: [L7ParseOptions | undefined, Step[], Step[]][] = [
    [undefined, [request], [response]],
    [everything, [request], [response]],
    // names in the list match whatever their case: so do the secret ones
    [{ ...everything, headers: everything.headers.map((h) => h.toUpperCase()) }, [request], [response]],
    [everything, [request.slice(0, 90), { gap: 10 }], [response.slice(0, 60), 'EOF']],
    [everything, [request.slice(0, 120), 'EOF'], [response.slice(0, 40), { gap: 3 }]],
  ];
  for (const [opts, req, resp] of runs) {
    const conn = createHttp1Connection(opts);
    const out = [...feed(conn.requests, req), ...feed(conn.responses, resp)];
    assert.ok(out.length >= 2, json(out));
    const text = json(out);
    for (const s of secrets) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
    for (const m of out) {
      for (const h of ['authorization', 'proxy-authorization', 'cookie', 'set-cookie']) assert.ok(!(h in m.headers), h);
    }
  }
});

test('http1: looksLikeHttp1Request / looksLikeHttp1Response', () => {
  const requests: [string, boolean][] = [
    ['GET / HTTP/1.1\r\n', true],
    ['POST /x', true],
    ['PROPPATCH /x', true],
    ['OPTIONS * HTTP/1.1', true],
    ['GET ', true],
    ['GET', false], // no SP yet
    ['get / HTTP/1.1', false],
    ['GETX / HTTP/1.1', false],
    ['BREW /pot HTTP/1.1', false],
    ['HTTP/1.1 200 OK', false],
    ['PRI * HTTP/2.0', false],
    ['\x16\x03\x01\x02\x00', false],
    ['', false],
  ];
  for (const [s, want] of requests) assert.equal(looksLikeHttp1Request(bytes(s)), want, `request ${json(s)}`);
  const responses: [string, boolean][] = [
    ['HTTP/1.1 200 OK\r\n', true],
    ['HTTP/1.0 404', true],
    ['HTTP/1.', true],
    ['HTTP/1', false],
    ['HTTP/2 200', false],
    ['GET / HTTP/1.1', false],
    ['', false],
  ];
  for (const [s, want] of responses) assert.equal(looksLikeHttp1Response(bytes(s)), want, `response ${json(s)}`);
});

test('http1: buffers stay bounded: endless head, endless chunk-size line, endless trailers', () => {
  // [direction, prefix, an endless filler, reason]
  const floods: ['requests' | 'responses', string, string, string][] = [
    ['requests', 'GET / HTTP/1.1\r\n', 'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n', 'headers too large'],
    ['requests', 'GET /', 'a'.repeat(64), 'headers too large'],
    ['responses', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1', '0'.repeat(64), 'chunk size line too long'],
    ['responses', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n', 'X-T: 1\r\n', 'trailers too large'],
  ];
  for (const [dir, prefix, filler, reason] of floods) {
    const conn = createHttp1Connection();
    conn.requests.push(bytes('GET / HTTP/1.1\r\n\r\n'), 0n);
    const p = conn[dir];
    p.push(bytes(prefix), 1n);
    const chunk = bytes(filler.repeat(Math.ceil(4096 / filler.length)));
    for (let k = 0; k < 64 && p.failed === null; k++) {
      p.push(chunk, 2n);
      assert.ok(p.bufferedBytes <= MAX_HEAD_BYTES, `${reason}: ${p.bufferedBytes} buffered`);
    }
    assert.equal(p.failed, reason);
    assert.equal(p.bufferedBytes, 0);
    assert.deepEqual(p.push(bytes('GET / HTTP/1.1\r\n\r\n'), 3n), [], 'nothing after failing');
  }
});

test('http1: a response whose request method was forgotten (past MAX_PENDING_METHODS) is framed as a GET', () => {
  const conn = createHttp1Connection();
  conn.requests.push(bytes('HEAD / HTTP/1.1\r\n\r\n'.repeat(1100)), 1n);
  // Request 0 was a HEAD, but the responses side was 1100 behind: its Content-Length is read as a body.
  const out = conn.responses.push(bytes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'), 2n);
  assert.deepEqual(out.map((m) => [m.stream_id, m.body_bytes]), [[0, 3]]);
  // Request 1099 is still remembered.
  const late = createHttp1Connection();
  late.requests.push(bytes('HEAD / HTTP/1.1\r\n\r\n'), 1n);
  assert.deepEqual(late.responses.push(bytes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n'), 2n).map((m) => m.body_bytes), [0]);
});

// ---- properties --------------------------------------------------------------------------

interface Body {
  chunked: boolean;
  data: Uint8Array;
  /** Where a chunked body is cut into chunks. */
  cuts: number[];
}

interface Exchange {
  method: string;
  path: string;
  host: boolean;
  eol: string;
  reqBody: Body | null;
  informational: boolean;
  status: number;
  respBody: Body | null;
  trailers: boolean;
}

const arbBody: fc.Arbitrary<Body> = fc.record({
  chunked: fc.boolean(),
  data: fc.uint8Array({ maxLength: 40 }),
  cuts: fc.array(fc.nat(40), { maxLength: 4 }),
});
const arbExchange: fc.Arbitrary<Exchange> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
  path: fc.constantFrom('/', '/a', '/users/42', '/search?q=x&n=2', '/p?flag'),
  host: fc.boolean(),
  eol: fc.constantFrom('\r\n', '\n'),
  reqBody: fc.option(arbBody),
  informational: fc.boolean(),
  status: fc.constantFrom(200, 201, 204, 301, 304, 404, 500),
  respBody: fc.option(arbBody),
  trailers: fc.boolean(),
});
/** A connection: its exchanges, and whether the last response is delimited by the close. */
const arbConversation = fc.record({ exchanges: fc.array(arbExchange, { minLength: 1, maxLength: 3 }), closeLast: fc.boolean() });

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
  return { head: `Transfer-Encoding: chunked${eol}`, body: concat(parts) };
}

interface Expected {
  method: string;
  path: string;
  reqBody: number;
  status: number;
  respBody: number;
}

function encodeConversation(conv: { exchanges: Exchange[]; closeLast: boolean }): {
  req: Uint8Array; resp: Uint8Array; eof: boolean; expected: Expected[];
} {
  const req: Uint8Array[] = [];
  const resp: Uint8Array[] = [];
  const expected: Expected[] = [];
  let eof = false;
  conv.exchanges.forEach((x, k) => {
    const rb = encodeBody(x.reqBody, x.eol, x.trailers);
    req.push(bytes(`${x.method} ${x.path} HTTP/1.1${x.eol}${x.host ? `Host: h${k}${x.eol}` : ''}${rb.head}${x.eol}`), rb.body);
    if (x.informational) resp.push(bytes(`HTTP/1.1 100 Continue${x.eol}${x.eol}`));
    const bodiless = x.method === 'HEAD' || x.status === 204 || x.status === 304;
    const last = k === conv.exchanges.length - 1;
    let respBody = 0;
    if (last && conv.closeLast && !bodiless) {
      const data = x.respBody?.data ?? new Uint8Array(0);
      resp.push(bytes(`HTTP/1.1 ${x.status} X${x.eol}${x.eol}`), data);
      respBody = data.length;
      eof = true;
    } else {
      const b = encodeBody(x.respBody, x.eol, x.trailers);
      // Without a length a response would run to the close.
      const head = x.respBody === null ? `Content-Length: 0${x.eol}` : b.head;
      resp.push(bytes(`HTTP/1.1 ${x.status} Reason Phrase${x.eol}${head}${x.eol}`));
      if (!bodiless) {
        resp.push(b.body);
        respBody = x.respBody?.data.length ?? 0;
      }
    }
    expected.push({ method: x.method, path: x.path, reqBody: x.reqBody?.data.length ?? 0, status: x.status, respBody });
  });
  return { req: concat(req), resp: concat(resp), eof, expected };
}

/** `b` cut at `cuts` (any order, repeats give empty pushes). */
function pieces(b: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = cuts.map((c) => c % (b.length + 1)).sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const to of [...at, b.length]) {
    out.push(b.slice(from, to));
    from = to;
  }
  return out;
}

interface Outcome {
  requests: L7Message[];
  responses: L7Message[];
  requestsFailed: string | null;
  responsesFailed: string | null;
}

/** Feeds both directions, all at one time so that only the bytes matter; checks the bounds on the way. */
function converse(req: readonly Uint8Array[], resp: readonly Uint8Array[], eof: boolean): Outcome {
  const conn = createHttp1Connection();
  const run = (p: Http1StreamParser, parts: readonly Uint8Array[]): L7Message[] => {
    const out: L7Message[] = [];
    for (const part of parts) {
      const wasFailed = p.failed !== null;
      const got = p.push(part, 7n);
      if (wasFailed) assert.deepEqual(got, [], 'nothing after failing');
      assert.ok(p.bufferedBytes <= MAX_HEAD_BYTES);
      out.push(...got);
    }
    if (eof) out.push(...p.end(7n));
    return out;
  };
  const requests = run(conn.requests, req);
  const responses = run(conn.responses, resp);
  return { requests, responses, requestsFailed: conn.requests.failed, responsesFailed: conn.responses.failed };
}

test('http1 property: valid conversations parse to their model; every single split point gives the same', () => {
  fc.assert(
    fc.property(arbConversation, (conv) => {
      const { req, resp, eof, expected } = encodeConversation(conv);
      const whole = converse([req], [resp], eof);
      assert.equal(whole.requestsFailed, null);
      assert.equal(whole.responsesFailed, null);
      assert.deepEqual(
        whole.requests.map((m) => [m.stream_id, m.method, m.body_bytes, m.truncated]),
        expected.map((e, k) => [k, e.method, e.reqBody, false]),
      );
      assert.deepEqual(whole.requests.map((m) => m.path), expected.map((e) => e.path.replace(/=[^&]*/g, '=REDACTED')));
      assert.deepEqual(
        whole.responses.map((m) => [m.stream_id, m.status, m.body_bytes, m.truncated]),
        expected.map((e, k) => [k, e.status, e.respBody, false]),
      );
      for (let k = 0; k <= Math.max(req.length, resp.length); k++) {
        assert.deepEqual(converse(pieces(req, [k]), pieces(resp, [k]), eof), whole, `split at ${k}`);
      }
    }),
    { numRuns: 40 },
  );
});

test('http1 property: random multi-splits (including empty pushes) give the same messages', () => {
  fc.assert(
    fc.property(arbConversation, fc.array(fc.nat(), { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 40 }), (conv, reqCuts, respCuts) => {
      const { req, resp, eof } = encodeConversation(conv);
      assert.deepEqual(converse(pieces(req, reqCuts), pieces(resp, respCuts), eof), converse([req], [resp], eof));
    }),
    { numRuns: 150 },
  );
});

/** HTTP lines and fragments after a valid start line, so that random streams reach heads, bodies and chunks. */
const soup = (start: string): fc.Arbitrary<Uint8Array> => fc
  .array(
    fc.constantFrom(
      'GET / HTTP/1.1\r\n', 'HEAD /h HTTP/1.1\r\n', 'CONNECT h:1 HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'HTTP/1.1 100 Continue\r\n',
      'HTTP/1.1 101 S\r\n', 'HTTP/1.0 204 N\r\n', 'Content-Length: 5\r\n', 'Content-Length: ', 'Transfer-Encoding: chunked\r\n',
      'Connection: upgrade\r\n', 'Upgrade: x\r\n', 'Host: h\r\n', '5\r\nhello\r\n', '0\r\n', 'a;x=y\r\n', 'hello',
      '\r\n', '\r\n', '\r\n', '\n', '\r', ' ', ':', '-', '0', 'f', 'zz', '\x00', '\xff',
    ),
    { maxLength: 120 },
  )
  .map((ts) => bytes(start + ts.join('')));

test('http1 property: garbage never throws, hangs or grows the buffers, and is split-invariant too', () => {
  const requests = fc.oneof(fc.uint8Array({ maxLength: 3000 }), soup('GET / HTTP/1.1\r\n'));
  const responses = fc.oneof(fc.uint8Array({ maxLength: 3000 }), soup('HTTP/1.1 200 OK\r\n'));
  fc.assert(
    fc.property(requests, responses, fc.array(fc.nat(), { maxLength: 20 }), fc.boolean(), (req, resp, cuts, eof) => {
      const t0 = performance.now();
      const whole = converse([req], [resp], eof);
      assert.deepEqual(converse(pieces(req, cuts), pieces(resp, cuts), eof), whole);
      // Every message needs at least a start line and an empty line.
      assert.ok(whole.requests.length <= req.length / 14 + 1 && whole.responses.length <= resp.length / 14 + 1);
      assert.ok(performance.now() - t0 < 1000, 'bounded time');
    }),
    { numRuns: 400 },
  );
});

test('http1 property: mutated valid streams, with gaps anywhere, never throw or grow the buffers', () => {
  const arbMutation = fc.record({
    at: fc.nat(),
    op: fc.constantFrom('set', 'insert', 'delete'),
    with: fc.constantFrom('-', '\r', '\n', ':', ' ', '0', 'f', 'x', '\x00', '\r\n\r\n', 'Content-Length: -1\r\n', 'Transfer-Encoding: chunked\r\n'),
  });
  const arbGap = fc.record({ at: fc.nat(), len: fc.integer({ min: 0, max: 5000 }) });
  fc.assert(
    fc.property(arbConversation, fc.array(arbMutation, { minLength: 1, maxLength: 6 }), fc.array(arbGap, { maxLength: 3 }), (conv, muts, gaps) => {
      const { req, resp, eof } = encodeConversation(conv);
      const mutate = (b: Uint8Array): Uint8Array => {
        let out = b;
        for (const m of muts) {
          const at = m.at % (out.length + 1);
          const w = bytes(m.with);
          if (m.op === 'set' && at < out.length) out = concat([out.subarray(0, at), w.subarray(0, 1), out.subarray(at + 1)]);
          else if (m.op === 'insert') out = concat([out.subarray(0, at), w, out.subarray(at)]);
          else out = concat([out.subarray(0, at), out.subarray(at + w.length)]);
        }
        return out;
      };
      const [mreq, mresp] = [mutate(req), mutate(resp)];
      const t0 = performance.now();
      assert.deepEqual(converse(pieces(mreq, gaps.map((g) => g.at)), [mresp], eof), converse([mreq], [mresp], eof));
      // Gaps between the pieces: whatever they hit, no throw and bounded buffers.
      const conn = createHttp1Connection();
      for (const [p, b] of [[conn.requests, mreq], [conn.responses, mresp]] as const) {
        pieces(b, gaps.map((g) => g.at)).forEach((part, k) => {
          p.push(part, BigInt(k));
          p.gap(gaps[k]?.len ?? 0, BigInt(k));
          assert.ok(p.bufferedBytes <= MAX_HEAD_BYTES);
        });
        p.end(99n);
      }
      assert.ok(performance.now() - t0 < 1000, 'bounded time');
    }),
    { numRuns: 300 },
  );
});
