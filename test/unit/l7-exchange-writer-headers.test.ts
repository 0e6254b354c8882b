/**
 * The per-header work of the exchange path, cut without changing a result
 * (issue 10, the collector's cost per exchange): keepHeader looks a name up
 * as it comes (both parsers give lower-case names) before lower-casing it,
 * and http1.ts's field parser compares a name's bytes with the kept names of
 * its length instead of building a lower-case copy, and turns ASCII values
 * into strings with one latin1 copy. These tests hold the old behaviour: a
 * table of keepHeader, and the field parser against a plain reference
 * (split the lines, lower-case the name, keep it when it is a framing
 * field or a captured header, UTF-8 decode the trimmed value).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { capturedHeaders, keepHeader, redactTarget, MAX_HEADER_VALUE, MAX_PATH } from '../../collector/l7/headers.ts';
import { parseHttp1Head } from '../../collector/l7/http1.ts';
import { DEFAULT_L7_OPTIONS, type L7ParseOptions } from '../../collector/l7/types.ts';

const ODD: L7ParseOptions = { headers: ['X-Tenant', 'HOST', 'x_y', 'Authorization', 'content-length'], keepQueryValues: false };

const KEEP: [string, L7ParseOptions, [string, string][], Record<string, string>][] = [
  ['lower-case name, default list', DEFAULT_L7_OPTIONS, [['host', 'a']], { host: 'a' }],
  ['mixed-case names are stored lower-case', DEFAULT_L7_OPTIONS, [['Host', 'a'], ['User-Agent', 'curl'], ['TRACEPARENT', 't']], { host: 'a', 'user-agent': 'curl', traceparent: 't' }],
  ['a name not in the list', DEFAULT_L7_OPTIONS, [['accept', '*/*'], ['Accept', '*/*'], ['x-tenant', '1']], {}],
  ['secret headers never, whatever the list says', ODD, [['authorization', 'Bearer x'], ['Authorization', 'Bearer y'], ['cookie', 'c']], {}],
  ['the list in any case: names compared lower-case', ODD, [['x-tenant', '7'], ['X-TENANT', '8'], ['host', 'h'], ['x_y', 'z'], ['X_Y', 'w']], { 'x-tenant': '7, 8', host: 'h', x_y: 'z, w' }],
  ['a repeated header joined with ", " (RFC 9110 5.3)', DEFAULT_L7_OPTIONS, [['tracestate', 'a=1'], ['Tracestate', 'b=2']], { tracestate: 'a=1, b=2' }],
  ['a value cut to MAX_HEADER_VALUE, and so is a join', DEFAULT_L7_OPTIONS, [['host', 'x'.repeat(600)], ['host', 'y']], { host: `${'x'.repeat(MAX_HEADER_VALUE)}, y`.slice(0, MAX_HEADER_VALUE) }],
  ['framing fields only when the list names them', ODD, [['content-length', '5'], ['Content-Length', '6']], { 'content-length': '5, 6' }],
  ['an empty name', DEFAULT_L7_OPTIONS, [['', 'v']], {}],
];

for (const [what, opts, headers, want] of KEEP) {
  test(`keepHeader: ${what}`, () => {
    const out: Record<string, string> = {};
    for (const [n, v] of headers) keepHeader(out, n, v, opts);
    assert.deepEqual(out, want);
  });
}

test('keepHeader: two options objects in turn each keep their own list (the last one asked is remembered, not the first)', () => {
  const a: Record<string, string> = {};
  const b: Record<string, string> = {};
  for (let i = 0; i < 3; i++) {
    keepHeader(a, 'x-tenant', `${i}`, DEFAULT_L7_OPTIONS);
    keepHeader(b, 'x-tenant', `${i}`, ODD);
  }
  assert.deepEqual([a, b], [{}, { 'x-tenant': '0, 1, 2' }]);
  assert.equal(capturedHeaders(ODD).has('x-tenant'), true);
  assert.equal(capturedHeaders(DEFAULT_L7_OPTIONS).has('x-tenant'), false);
});

// ---- the field parser against a reference ----

const FRAMING = ['transfer-encoding', 'content-length', 'connection', 'upgrade'];
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const enc = new TextEncoder();
const TOKEN = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Each field line's [lower-case name, trimmed UTF-8 value] when the name is kept: what parseFields must give. */
function reference(lines: readonly [string, Uint8Array][], captured: ReadonlySet<string>): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of lines) {
    const n = name.toLowerCase();
    if (!FRAMING.includes(n) && !captured.has(n)) continue;
    let a = 0;
    let b = value.length;
    while (a < b && (value[a] === 0x20 || value[a] === 0x09)) a++;
    while (b > a && (value[b - 1] === 0x20 || value[b - 1] === 0x09)) b--;
    out.push([n, utf8.decode(value.subarray(a, b))]);
  }
  return out;
}

const randomCase = (s: string) => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length })
  .map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(''));
/** A kept name, or one of the same length a letter off, or any token. */
const nameArb = (kept: readonly string[]) => fc.oneof(
  fc.constantFrom(...kept).chain(randomCase),
  fc.tuple(fc.constantFrom(...kept), fc.nat(), fc.constantFrom(...TOKEN)).map(([n, i, c]) => n.slice(0, i % n.length) + c + n.slice(i % n.length + 1)).chain(randomCase),
  fc.string({ unit: fc.constantFrom(...TOKEN), minLength: 1, maxLength: 20 }),
);
/** A value's bytes: ASCII (around the 8-byte latin1 threshold and past 256), UTF-8, invalid bytes; no CR or LF. */
const valueArb = fc.oneof(
  fc.string({ unit: 'grapheme-ascii', maxLength: 12 }).map((s) => enc.encode(s)),
  fc.string({ unit: 'grapheme-ascii', maxLength: 300 }).map((s) => enc.encode(s)),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => enc.encode(s)),
  fc.uint8Array({ maxLength: 40 }),
).map((b) => b.filter((c) => c !== 0x0d && c !== 0x0a));

test('parseHttp1Head: field lines of any case, near-miss names and any value bytes give what the reference gives', () => {
  for (const opts of [DEFAULT_L7_OPTIONS, ODD]) {
    const captured = capturedHeaders(opts);
    const kept = [...FRAMING, ...captured];
    fc.assert(fc.property(fc.array(fc.tuple(nameArb(kept), valueArb, fc.constantFrom('', ' ', '\t ')), { maxLength: 12 }), (lines) => {
      const parts: Uint8Array[] = [enc.encode('GET /x HTTP/1.1\r\n')];
      for (const [name, value, ows] of lines) parts.push(enc.encode(`${name}:${ows}`), value, enc.encode(`${ows}\r\n`));
      parts.push(enc.encode('\r\n'));
      const head = Buffer.concat(parts);
      const got = parseHttp1Head('REQUEST', head, head.length, captured);
      assert.ok(got !== null);
      assert.equal(got.wellFormed, true);
      assert.equal(got.end, head.length);
      assert.deepEqual(got.fields, reference(lines.map(([n, v]) => [n, v]), captured));
    }), { numRuns: 1500, seed: 1207 });
  }
});

// ---- redactTarget against its old form ----

/** redactTarget as it was (split, map, join): the reference. */
function redactTargetOld(target: string, opts: L7ParseOptions): string {
  let t = target;
  const hash = t.indexOf('#');
  if (hash >= 0) t = t.slice(0, hash);
  const q = t.indexOf('?');
  if (q >= 0 && !opts.keepQueryValues) {
    const query = t.slice(q + 1);
    const redacted = query === '' ? '' : query.split('&').map((kv) => {
      const eq = kv.indexOf('=');
      return eq < 0 ? kv : `${kv.slice(0, eq)}=REDACTED`;
    }).join('&');
    t = `${t.slice(0, q)}?${redacted}`;
  }
  return t.length > MAX_PATH ? t.slice(0, MAX_PATH) : t;
}

const TARGETS = ['/', '/a?', '/a?x', '/a?x=', '/a?=1', '/a?x=1&y=2', '/a?x=1&&y', '/a?&', '/a?x=1=2&y', '/a?x&y=1#f=2', '/a#?x=1', '?x=1', '/a?x=1?y=2&z',
  `/p?${'k&'.repeat(2000)}v=1`, `/p?${'a=b&'.repeat(400)}`, '/ü?ä=ö&€'];

test('redactTarget: the table and random targets give what the old split/map/join form gives', () => {
  for (const keepQueryValues of [false, true]) {
    const opts = { headers: [], keepQueryValues };
    for (const t of TARGETS) assert.equal(redactTarget(t, opts), redactTargetOld(t, opts), t);
    const part = fc.string({ unit: fc.constantFrom('a', 'b', '=', '&', '?', '#', '/', '%', 'é'), maxLength: 12 });
    fc.assert(fc.property(fc.array(part, { maxLength: 8 }).map((ps) => ps.join('')), fc.string({ maxLength: 1200 }), (t, long) => {
      assert.equal(redactTarget(t, opts), redactTargetOld(t, opts));
      assert.equal(redactTarget(`/x?${long}`, opts), redactTargetOld(`/x?${long}`, opts));
    }), { numRuns: 3000, seed: 45 });
  }
});
