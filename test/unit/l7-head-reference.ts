/**
 * The HTTP/1 head parser as it was at b9062a8 (collector/l7/http1.ts
 * parseHttp1Head and its helpers, copied verbatim): the reference the
 * differential test (l7-head-diff.test.ts) compares the current parser
 * with, and the A side of the head A/B in test/bench/l7-exchange-path.ts.
 * Not a test file itself (no .test.ts): nothing runs it alone.
 */
import type { L7Kind } from '../../collector/l7/types.ts';
import type { Http1Head, Http1StartLine } from '../../collector/l7/http1.ts';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const COLON = 0x3a;
const HT = 0x09;
const utf8 = new TextDecoder();
const utf8Value = new TextDecoder('utf-8', { ignoreBOM: true });
const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const IS_TOKEN = new Uint8Array(256);
for (let k = 0; k < TOKEN_CHARS.length; k++) IS_TOKEN[TOKEN_CHARS.charCodeAt(k)] = 1;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP\/(1\.\d)$/;
const STATUS_LINE = /^HTTP\/(1\.\d) ([1-9]\d\d)(?: .*)?$/;
const FRAMING_FIELDS: ReadonlySet<string> = new Set(['transfer-encoding', 'content-length', 'connection', 'upgrade']);

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

function stripEol(line: string): string {
  return stripCr(line.endsWith('\n') ? line.slice(0, -1) : line);
}

/** A message head parsed from its bytes: see parseHttp1Head. */
export function referenceParseHttp1Head(kind: L7Kind, buf: Uint8Array, len: number, captured: ReadonlySet<string>, start?: Http1StartLine): Http1Head | null {
  let from = 0;
  while (from < len && (buf[from] === CR || buf[from] === LF)) from++;
  const lf = buf.indexOf(LF, from);
  if (lf < 0 || lf >= len) {
    const cut = parseCutStartLine(kind, buf, from, len);
    return cut === null ? null : { start: cut, fields: [], end: -1, wellFormed: true, startCut: true };
  }
  const s = start ?? parseStartLine(kind, buf, from, len);
  if (s === null) return null;
  const f = parseFields(buf, lf + 1, len, captured);
  // no spread: it copies property by property through a generic path (8% of the exchange path's samples)
  return { start: s, fields: f.fields, end: f.end, wellFormed: f.wellFormed, startCut: false };
}

/** The start line at buf[from] (it ends at the next LF before `to`), null when there is none or it is malformed. */
function parseStartLine(kind: L7Kind, buf: Uint8Array, from: number, to: number): Http1StartLine | null {
  const lf = buf.indexOf(LF, from);
  if (lf < 0 || lf >= to) return null;
  const line = stripEol(text(buf, from, lf + 1, utf8));
  if (kind === 'REQUEST') {
    const m = REQUEST_LINE.exec(line);
    return m === null ? null : { method: m[1]!, target: m[2]!, status: null, version: m[3]! };
  }
  const m = STATUS_LINE.exec(line);
  return m === null ? null : { method: null, target: null, status: Number(m[2]), version: m[1]! };
}

const REQUEST_LINE_CUT = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+)(?: (?:H(?:T(?:T(?:P(?:\/(?:1(?:\.\d?)?)?)?)?)?)?)?)?$/;
const STATUS_LINE_CUT = /^HTTP\/(1\.\d) ([1-9]\d\d)(?: .*)?$/;

/** A start line whose bytes end before its LF: what they show, null when they cannot be the start of one. */
function parseCutStartLine(kind: L7Kind, buf: Uint8Array, from: number, to: number): Http1StartLine | null {
  const line = stripCr(text(buf, from, to, utf8));
  if (kind === 'REQUEST') {
    const m = REQUEST_LINE_CUT.exec(line);
    return m === null ? null : { method: m[1]!, target: m[2]!, status: null, version: '' };
  }
  const m = STATUS_LINE_CUT.exec(line);
  return m === null ? null : { method: null, target: null, status: Number(m[2]), version: m[1]! };
}

/**
 * The field lines in buf[from, to) up to the empty line that ends a head
 * (`end` just past it, -1 when there is none), as [lower-case name, value]
 * for framing's fields and the `captured` ones (the other lines are checked,
 * not kept). A malformed line makes the head invalid (RFC 9112 5.1:
 * wellFormed false) and is skipped, and so is a line not yet ended (it may
 * hold a value cut short). Works on bytes: every delimiter (LF, CR, ':',
 * SP, HT) is ASCII, so no UTF-8 sequence spans one, and only kept values are decoded.
 */
function parseFields(buf: Uint8Array, from: number, to: number, captured: ReadonlySet<string>): { fields: [string, string][]; end: number; wellFormed: boolean } {
  const keptByLength = keptNamesByLength(captured);
  const fields: [string, string][] = [];
  let wellFormed = true;
  let end = -1;
  // obs-fold (RFC 9112 5.2) continues the previous well-formed field line, kept or not.
  let previous: [string, string] | null = null;
  let seenField = false;
  for (let s = from; s < to;) {
    let e = buf.indexOf(LF, s);
    if (e < 0 || e >= to) break;
    const next = e + 1;
    if (e > s && buf[e - 1] === CR) e--;
    if (e === s) {
      end = next; // the empty line
      break;
    }
    const first = buf[s]!;
    if (first === SP || first === HT) {
      if (!seenField) {
        wellFormed = false;
      } else if (previous !== null) {
        previous[1] = `${previous[1]} ${decodeTrimmed(buf, s, e)}`;
      }
      s = next;
      continue;
    }
    let colon = s;
    while (colon < e && IS_TOKEN[buf[colon]!] === 1) colon++;
    if (colon === s || colon === e || buf[colon] !== COLON) {
      wellFormed = false;
      s = next;
      continue;
    }
    seenField = true;
    previous = null;
    // the name compared in place with the kept names of its length (most lines are not kept):
    // a kept one is the set's own string, no lower-cased copy is built
    const n = colon - s;
    const name = n < keptByLength.length ? keptName(keptByLength[n]!, buf, s) : '';
    if (name !== '') {
      previous = [name, decodeTrimmed(buf, colon + 1, e)];
      fields.push(previous);
    }
    s = next;
  }
  return { fields, end, wellFormed };
}

/**
 * The kept name (a framing field's or a captured header's, lower-case) that
 * buf[from, from + length) spells in any ASCII case, or '' (`names`: the kept
 * names of that length). A token's letters are ASCII: only A-Z fold.
 */
function keptName(names: readonly string[], buf: Uint8Array, from: number): string {
  for (let j = 0; j < names.length; j++) {
    const name = names[j]!;
    let k = 0;
    for (; k < name.length; k++) {
      const c = buf[from + k]!;
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== name.charCodeAt(k)) break;
    }
    if (k === name.length) return name;
  }
  return '';
}

const keptByLengthBySet = new WeakMap<ReadonlySet<string>, readonly (readonly string[])[]>();

/** [n]: the framing fields' and captured headers' names n characters long (captured sets are few and long-lived: headers.ts caches them per options). */
function keptNamesByLength(captured: ReadonlySet<string>): readonly (readonly string[])[] {
  let l = keptByLengthBySet.get(captured);
  if (l === undefined) {
    const names = [...new Set([...FRAMING_FIELDS, ...captured])];
    const byLength: string[][] = Array.from({ length: Math.max(0, ...names.map((n) => n.length)) + 1 }, () => []);
    for (const n of names) byLength[n.length]!.push(n);
    l = byLength;
    keptByLengthBySet.set(captured, l);
  }
  return l;
}

/** buf[from, to) as UTF-8 without leading or trailing SP and HT (OWS). */
function decodeTrimmed(buf: Uint8Array, from: number, to: number): string {
  let a = from;
  let b = to;
  while (a < b && (buf[a] === SP || buf[a] === HT)) a++;
  while (b > a && (buf[b - 1] === SP || buf[b - 1] === HT)) b--;
  return a === b ? '' : text(buf, a, b, utf8Value);
}

/**
 * buf[from, to) as a string: ASCII (nearly every head) without a call into
 * TextDecoder, anything else through `decoder` (UTF-8, invalid bytes as U+FFFD).
 */
function text(buf: Uint8Array, from: number, to: number, decoder: { decode(b: Uint8Array): string }): string {
  if (to - from > 256) return decoder.decode(buf.subarray(from, to));
  for (let k = from; k < to; k++) if (buf[k]! >= 0x80) return decoder.decode(buf.subarray(from, to));
  // ASCII: latin1 is the same string; one native copy where `s += char` made a string per char (~10x for a traceparent)
  if (to - from > 8) return latin1Slice.call(buf, from, to);
  let s = '';
  for (let k = from; k < to; k++) s += String.fromCharCode(buf[k]!);
  return s;
}

/** Buffer's latin1 decoder, on any Uint8Array (the heads are plain views). */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, from: number, to: number): string }).latin1Slice;
