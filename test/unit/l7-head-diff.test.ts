/**
 * Differential test of collector/l7/http1.ts parseHttp1Head: on random heads
 * (well-formed, malformed, non-ASCII, cut anywhere) it gives exactly what the
 * parser of b9062a8 gave (test/unit/l7-head-reference.ts), for both kinds and
 * several captured-header sets. The head parser's byte-level rewrites (start
 * line without a regex over a decoded string) must change no output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseHttp1Head } from '../../collector/l7/http1.ts';
import { capturedHeaders } from '../../collector/l7/headers.ts';
import { DEFAULT_L7_OPTIONS } from '../../collector/l7/types.ts';
import { referenceParseHttp1Head } from './l7-head-reference.ts';

const bytes = (s: string) => Buffer.from(s, 'latin1');
/** Byte runs that sit on the edges of the start-line rules. */
const ODD = ['\r', '\t', ' ', '\x00', '\x7f', '\xe2\x80\xa8', '\xe2\x80\xa9', '\xc3\xa9', '\xff', '\xe2\x80', '\xef\xbb\xbf', ':', '?', '#', '%', '\n'];
const arbOdd = fc.constantFrom(...ODD);
const arbText = fc.array(fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'Z', '/', '0', '9', '.', '-', '=', '&', 'x1', '/api/items/42') },
  { weight: 2, arbitrary: arbOdd },
), { maxLength: 8 }).map((a) => a.join(''));
const arbMethod = fc.oneof(
  fc.constantFrom('GET', 'POST', 'HEAD', 'CONNECT', 'PUT', 'get', 'M-SEARCH', "!#$%&'*+-.^_`|~", 'G'),
  arbText,
);
const arbVersion = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/1.7') },
  fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/1.9', 'HTTP/2.0', 'HTTP/1.', 'HTTP/1.x', 'HTTP/1.11', 'http/1.1', 'HTTP/1', 'HTTP', 'H', ''),
  arbText,
);
const arbStatus = fc.oneof(fc.constantFrom('200', '101', '100', '404', '099', '600', '1000', '20', '2x0', ''), fc.integer({ min: 0, max: 999 }).map(String));
const arbRequestLine = fc.tuple(arbMethod, fc.constantFrom(' ', ' ', ' ', ' ', '  ', '', '\t'), arbText, fc.constantFrom(' ', ' ', ' ', ' ', '', '  '), arbVersion, fc.constantFrom('', '', '\r', '\r', ' ', '\r\r'))
  .map(([m, s1, t, s2, v, tail]) => m + s1 + t + s2 + v + tail);
const arbStatusLine = fc.tuple(arbVersion, fc.constantFrom(' ', ' ', ' ', ' ', '', '  '), arbStatus, fc.oneof(fc.constantFrom('', ' OK', ' Not Found', ' ', '\r', ' \r'), arbText.map((t) => ` ${t}`), arbText))
  .map(([v, s, c, r]) => v + s + c + r);
const arbName = fc.oneof(
  fc.constantFrom('Host', 'host', 'Content-Length', 'CONTENT-LENGTH', 'Transfer-Encoding', 'Connection', 'Upgrade', 'User-Agent',
    'user-agent', 'traceparent', 'X-Request-Id', 'Content-Type', 'Accept', 'content-lengthx', 'Hos', ''),
  arbText,
);
const arbField = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(arbName, fc.constantFrom(':', ': ', ' :', ':\t', ''), arbText, fc.constantFrom('', ' ', '\t')).map(([n, c, v, w]) => n + c + v + w) },
  { weight: 1, arbitrary: arbText.map((t) => ` ${t}`) }, // obs-fold
  { weight: 1, arbitrary: arbText },
);
const arbEol = fc.constantFrom('\r\n', '\n', '\r\n', '\r');
const arbHead = fc.tuple(
  fc.constantFrom('', '\r\n', '\n', '\r\n\r\n'),
  fc.boolean(),
  arbRequestLine,
  arbStatusLine,
  fc.array(fc.tuple(arbField, arbEol), { maxLength: 8 }),
  fc.constantFrom('\r\n', '\n', '', '\r\n\r\n', '\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n'),
  arbText,
).map(([lead, isReq, rl, sl, fields, endLine, rest]) => ({
  kind: (isReq ? 'REQUEST' : 'RESPONSE') as 'REQUEST' | 'RESPONSE',
  text: lead + (isReq ? rl : sl) + '\r\n' + fields.map(([f, e]) => f + e).join('') + endLine + rest,
}));
const capturedSets = [
  capturedHeaders(DEFAULT_L7_OPTIONS),
  capturedHeaders({ headers: [], keepQueryValues: false }),
  capturedHeaders({ headers: ['Host', 'user-agent', 'TraceParent', 'x-request-id', 'content-type', 'accept'], keepQueryValues: false }),
];

function same(kind: 'REQUEST' | 'RESPONSE', b: Uint8Array, len: number, captured: ReadonlySet<string>): void {
  const want = referenceParseHttp1Head(kind, b, len, captured);
  const got = parseHttp1Head(kind, b, len, captured);
  assert.deepStrictEqual(got, want, `${kind} ${JSON.stringify(Buffer.from(b.subarray(0, len)).toString('latin1'))}`);
}

test('parseHttp1Head matches the reference on random heads, whole and cut anywhere', () => {
  fc.assert(fc.property(arbHead, fc.nat(), fc.nat(2), ({ kind, text }, cutAt, c) => {
    const b = bytes(text);
    const captured = capturedSets[c]!;
    same(kind, b, b.length, captured);
    same(kind, b, cutAt % (b.length + 1), captured);
  }), { numRuns: 20000 });
});

test('parseHttp1Head matches the reference on random bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (b, isReq) => {
    same(isReq ? 'REQUEST' : 'RESPONSE', b, b.length, capturedSets[0]!);
  }), { numRuns: 5000 });
});

test('parseHttp1Head matches the reference on the edge start lines', () => {
  const lines = [
    'GET / HTTP/1.1', 'GET / HTTP/1.1\r', 'GET / HTTP/1.1\r\r', 'GET /\xe2\x80\xa8 HTTP/1.1', 'GET /\xff HTTP/1.1', 'GET /\xe2\x80 HTTP/1.1',
    'GET  / HTTP/1.1', 'GET / HTTP/1.1 ', 'GET / HTTP/1.x', 'G\xc3\xa9T / HTTP/1.1', 'GET\t/ HTTP/1.1', 'GET / HTTP/1.10',
    'HTTP/1.1 200 OK', 'HTTP/1.1 200', 'HTTP/1.1 200 ', 'HTTP/1.1 200 OK\r', 'HTTP/1.1 200 O\rK', 'HTTP/1.1 200 \xe2\x80\xa8',
    'HTTP/1.1 200 \xe2\x80\xa9x', 'HTTP/1.1 200 caf\xc3\xa9', 'HTTP/1.1 200 \xff', 'HTTP/1.1 2000', 'HTTP/1.1 099 x', 'HTTP/1.1 200x',
    'HTTP/1.1  200', 'HTTP/1.0 404 Not Found', 'HTTP/2.0 200 OK', 'HTTP/1.1 200 \x00\x7f',
    '\xef\xbb\xbfGET / HTTP/1.1', '\xef\xbb\xbfHTTP/1.1 200 OK', '\xef\xbb\xbf\xef\xbb\xbfGET / HTTP/1.1', 'GET\xef\xbb\xbf / HTTP/1.1', 'GET / HTTP/1.1\xef\xbb\xbf',
    'GET /\x7f HTTP/1.1', 'GET /\x00 HTTP/1.1', 'GET /\x1f HTTP/1.1', 'GET /~! HTTP/1.1', 'GET / HTTP/1.1\x00', 'GET / HTTP/1.1\r\x00',
  ];
  for (const l of lines) {
    for (const kind of ['REQUEST', 'RESPONSE'] as const) {
      const b = bytes(`${l}\r\nHost: a\r\nContent-Length: 3\r\n\r\n`);
      for (let n = 0; n <= b.length; n++) same(kind, b, n, capturedSets[0]!);
    }
  }
});

test('parseHttp1Head: values whose hashed bytes agree are still told apart (text() reuses strings by a hash of first, middle and last byte)', () => {
  const captured = capturedSets[2]!;
  // same length, first, middle and last byte: one cache slot; the other bytes differ
  for (const v of ['a1m2z', 'a3m4z', 'a1m2z', 'aXmXz', 'traceparent-00-aaaa-01', 'traceparent-00-bbbb-01']) {
    const b = bytes(`GET /${v} HTTP/1.1\r\nX-Request-Id: ${v}\r\n\r\n`);
    const h = parseHttp1Head('REQUEST', b, b.length, captured)!;
    assert.equal(h.start.target, `/${v}`);
    assert.deepEqual(h.fields, [['x-request-id', v]]);
  }
});
