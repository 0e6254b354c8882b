/**
 * Privacy rules shared by the HTTP/1 and HTTP/2 parsers: which headers are
 * kept, and how a request target's query string is redacted.
 */
import { NEVER_CAPTURED_HEADERS, type L7ParseOptions } from './types.ts';

/** Longest header value kept; longer values are cut (a bound on memory, not a privacy rule). */
export const MAX_HEADER_VALUE = 512;
/** Longest path kept. */
export const MAX_PATH = 1024;

const capturedByOpts = new WeakMap<L7ParseOptions, ReadonlySet<string>>();
// A process has one options object in practice: the last one asked is answered without the WeakMap.
let lastOpts: L7ParseOptions | null = null;
let lastCaptured: ReadonlySet<string> | null = null;

/**
 * The header names the options capture, lower-case, the secret ones taken out;
 * computed once per options object (every kept field of every message asks).
 */
export function capturedHeaders(opts: L7ParseOptions): ReadonlySet<string> {
  if (opts === lastOpts) return lastCaptured!;
  let c = capturedByOpts.get(opts);
  if (c === undefined) {
    c = new Set(opts.headers.map((h) => h.toLowerCase()).filter((h) => !NEVER_CAPTURED_HEADERS.has(h)));
    capturedByOpts.set(opts, c);
  }
  lastOpts = opts;
  lastCaptured = c;
  return c;
}

/**
 * Adds `name: value` to `out` when the options select it. Secret headers
 * (authorization, cookie, set-cookie...) are never kept, whatever the list says.
 * A repeated header keeps its values joined with ', ' (RFC 9110 5.3).
 * Names come lower-case already from both parsers (http1.ts parseFields,
 * HPACK): one found as it is in the (lower-case) set needs no lower-casing;
 * only a miss is lower-cased and looked up again, unless that changes nothing.
 */
export function keepHeader(out: Record<string, string>, name: string, value: string, opts: L7ParseOptions): void {
  const captured = capturedHeaders(opts);
  let n = name;
  if (!captured.has(n)) {
    n = name.toLowerCase();
    if (n === name || !captured.has(n)) return;
  }
  const v = value.length > MAX_HEADER_VALUE ? value.slice(0, MAX_HEADER_VALUE) : value;
  out[n] = n in out ? `${out[n]}, ${v}`.slice(0, MAX_HEADER_VALUE) : v;
}

/**
 * The request target as it may be stored: the query's values become
 * `REDACTED`, the word the OpenTelemetry conventions use for url.query (names
 * stay: they tell what kind of request it was) unless
 * the options keep them; the fragment is dropped; the result is cut to MAX_PATH.
 */
export function redactTarget(target: string, opts: L7ParseOptions): string {
  let t = target;
  const hash = t.indexOf('#');
  if (hash >= 0) t = t.slice(0, hash);
  const q = t.indexOf('?');
  if (q >= 0 && !opts.keepQueryValues) t = redactQuery(t, q);
  return t.length > MAX_PATH ? t.slice(0, MAX_PATH) : t;
}

/**
 * t with each '&'-separated part after the '?' at q cut after its first '='
 * and REDACTED put there (a part without '=' stays). One pass (no split, map,
 * join: ~1/2 of the time per request target), each '=' searched for once
 * (linear even for a long query of parts without one).
 */
function redactQuery(t: string, q: number): string {
  let out = t.slice(0, q + 1);
  let eq = t.indexOf('=', q + 1);
  for (let i = q + 1; ;) {
    const amp = t.indexOf('&', i);
    const end = amp < 0 ? t.length : amp;
    if (eq >= 0 && eq < i) eq = t.indexOf('=', i);
    out += eq >= 0 && eq < end ? `${t.slice(i, eq)}=REDACTED` : t.slice(i, end);
    if (amp < 0) return out;
    out += '&';
    i = amp + 1;
  }
}
