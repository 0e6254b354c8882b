/**
 * HTTP/2 cuts (issue 10, design slice 5): BPF (bpf/l7_h2.h, l7_h2_walk.h)
 * leaves DATA, PING, WINDOW_UPDATE and PRIORITY payloads in the kernel and
 * lists them as cuts in the capture record; collector/l7/capture.ts decodes
 * them and replays a record as push(kept) / gap(cut) / push(kept)... on the
 * unchanged http2.ts framing. Here: the record grammar (decode, bad cuts
 * refused), the replay, and a property: every stream cut the way the kernel
 * cuts it (a model of l7_h2_walk.h's rule, written from its comments), at any
 * syscall split, parses to exactly the messages of the whole stream, nothing
 * marked truncated; and a read of several frames over the capture size no
 * longer loses its frames ("gap across frames") once cut.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import hpack from 'hpack.js';
import fc from 'fast-check';
import {
  decodeL7Capture, replayCapture, L7_CAPTURE_SIZE, L7_CAPTURE_TYPE, L7_CUT_SIZE, L7_H2, L7_H2_NR, L7_MAX_CUTS, L7_OFFSETS, type L7Capture,
} from '../../collector/l7/capture.ts';
import { createHttp2Connection, takeHttp2Counts } from '../../collector/l7/http2.ts';
import { DEFAULT_L7_OPTIONS, type L7Message, type StreamParser } from '../../collector/l7/types.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

// ---------------------------------------------------------------------------
// Frames

const PREFACE = new TextEncoder().encode('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const DATA = 0, HEADERS = 1, PRIORITY = 2, SETTINGS = 4, PING = 6, WINDOW_UPDATE = 8;
const END_STREAM = 0x1, END_HEADERS = 0x4, PADDED = 0x8;

function cat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new Uint8Array(9);
  h[0] = payload.length >>> 16;
  h[1] = (payload.length >>> 8) & 0xff;
  h[2] = payload.length & 0xff;
  h[3] = type;
  h[4] = flags;
  new DataView(h.buffer).setUint32(5, stream);
  return cat(h, payload);
}

class Encoder {
  readonly comp = hpack.compressor.create({ table: { maxSize: 4096 } });
  block(fields: readonly [string, string][]): Uint8Array {
    this.comp.write(fields.map(([name, value]) => ({ name, value })));
    return new Uint8Array(this.comp.read() ?? []);
  }
}

const grpcMessage = (len: number): Uint8Array => {
  const m = new Uint8Array(5 + len).fill(7);
  m[0] = 0;
  new DataView(m.buffer).setUint32(1, len);
  return m;
};

/** A DATA payload as frames of at most 16384 bytes, END_STREAM on the last when asked. */
function dataFrames(stream: number, body: Uint8Array, end: boolean): Uint8Array {
  const out: Uint8Array[] = [];
  for (let o = 0; o < body.length; o += 16384) {
    const last = o + 16384 >= body.length;
    out.push(frame(DATA, last && end ? END_STREAM : 0, stream, body.subarray(o, o + 16384)));
  }
  return cat(...out);
}

/** A gRPC conversation: calls with large messages both ways, PING, WINDOW_UPDATE, PRIORITY, a padded DATA. */
function conversation(calls: number, size: number): { req: Uint8Array; resp: Uint8Array } {
  const c = new Encoder();
  const s = new Encoder();
  const req: Uint8Array[] = [PREFACE, frame(SETTINGS, 0, 0, new Uint8Array(6)), frame(WINDOW_UPDATE, 0, 0, Uint8Array.of(0, 1, 0, 0))];
  const resp: Uint8Array[] = [frame(SETTINGS, 0, 0, new Uint8Array(12)), frame(SETTINGS, 1, 0)];
  for (let i = 0; i < calls; i++) {
    const id = 1 + 2 * i;
    req.push(frame(HEADERS, END_HEADERS, id, c.block([[':method', 'POST'], [':scheme', 'http'], [':path', `/ringflow.test.Store/Put${i}`],
      [':authority', 'localhost'], ['content-type', 'application/grpc'], ['te', 'trailers']])));
    req.push(frame(PRIORITY, 0, id, Uint8Array.of(0, 0, 0, 0, 16)));
    req.push(dataFrames(id, grpcMessage(size + i), true));
    req.push(frame(PING, 0, 0, new Uint8Array(8).fill(i)));
    resp.push(frame(HEADERS, END_HEADERS, id, s.block([[':status', '200'], ['content-type', 'application/grpc']])));
    resp.push(frame(WINDOW_UPDATE, 0, id, Uint8Array.of(0, 0, 0x40, 0)));
    // a padded DATA frame (kept whole by the kernel: http2.ts reads its pad length)
    resp.push(frame(DATA, PADDED, id, cat(Uint8Array.of(3), grpcMessage(2), new Uint8Array(3))));
    resp.push(dataFrames(id, grpcMessage(size), false));
    resp.push(frame(HEADERS, END_HEADERS | END_STREAM, id, s.block([['grpc-status', String(i % 3)], ['grpc-message', 'ok']])));
    resp.push(frame(PING, 1, 0, new Uint8Array(8).fill(i)));
  }
  return { req: cat(...req), resp: cat(...resp) };
}

// ---------------------------------------------------------------------------
// The kernel's rule (l7_h2_walk.h), modelled: per direction, across calls

interface DirState { prefaceLeft: number; frameLeft: number; cut: boolean; hdr: number[] }

const newState = (client: boolean): DirState => ({ prefaceLeft: client ? 24 : 0, frameLeft: 0, cut: false, hdr: [] });

/** Payloads the kernel leaves out: DATA unless padded, PING, WINDOW_UPDATE, PRIORITY. */
const cutsPayload = (type: number, flags: number): boolean =>
  type === DATA ? (flags & PADDED) === 0 : type === PING || type === WINDOW_UPDATE || type === PRIORITY;

/** One call's bytes as the kernel sends them: a capture record's cuts and kept bytes (limit: RF_L7_MAX_CAPTURE in the kernel; smaller ones tried too). */
function kernelCall(st: DirState, bytes: Uint8Array, limit: number): { cuts: number[]; kept: Uint8Array } {
  const cuts: number[] = [];
  const kept: number[] = [];
  let full = false;
  const keep = (a: number, b: number): void => {
    for (let i = a; i < b && !full; i++) {
      if (kept.length >= limit) full = true;
      else kept.push(bytes[i]!);
    }
  };
  let pos = 0;
  while (pos < bytes.length) {
    if (st.prefaceLeft > 0) {
      const k = Math.min(st.prefaceLeft, bytes.length - pos);
      keep(pos, pos + k);
      st.prefaceLeft -= k;
      pos += k;
    } else if (st.frameLeft > 0) {
      const k = Math.min(st.frameLeft, bytes.length - pos);
      const last = cuts.length - 2;
      if (st.cut && !full && last >= 0 && cuts[last]! + cuts[last + 1]! === pos) cuts[last + 1]! += k; // the same payload, next iovec
      else if (st.cut && !full && k > L7_CUT_SIZE && cuts.length < 2 * L7_MAX_CUTS) cuts.push(pos, k); // a cut costs 8 bytes
      else keep(pos, pos + k);
      st.frameLeft -= k;
      pos += k;
    } else {
      const k = Math.min(9 - st.hdr.length, bytes.length - pos);
      st.hdr.push(...bytes.subarray(pos, pos + k));
      keep(pos, pos + k);
      pos += k;
      if (st.hdr.length === 9) {
        const h = st.hdr;
        st.frameLeft = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
        st.cut = cutsPayload(h[3]!, h[4]!);
        st.hdr = [];
      }
    }
  }
  return { cuts, kept: Uint8Array.from(kept) };
}

/** A decoded capture record as BPF would write it (struct rf_l7_capture + cuts + kept bytes). */
function record(total: number, cuts: readonly number[], kept: Uint8Array, offset = 0): Uint8Array {
  const n = cuts.length / 2;
  const b = new Uint8Array(L7_CAPTURE_SIZE + n * L7_CUT_SIZE + kept.length);
  const v = new DataView(b.buffer);
  b[0] = L7_CAPTURE_TYPE;
  v.setUint16(L7_OFFSETS.family, 2, true);
  v.setBigUint64(L7_OFFSETS.conn_id, 7n, true);
  v.setBigUint64(L7_OFFSETS.offset, BigInt(offset), true);
  v.setUint32(L7_OFFSETS.total_len, total, true);
  v.setUint32(L7_OFFSETS.captured_len, kept.length, true);
  v.setUint16(L7_OFFSETS.ncuts, n, true);
  b[L7_OFFSETS.protocol] = 6;
  for (let i = 0; i < n; i++) {
    v.setUint32(L7_CAPTURE_SIZE + i * L7_CUT_SIZE, cuts[2 * i]!, true);
    v.setUint32(L7_CAPTURE_SIZE + i * L7_CUT_SIZE + 4, cuts[2 * i + 1]!, true);
  }
  b.set(kept, L7_CAPTURE_SIZE + n * L7_CUT_SIZE);
  return b;
}

function decode(b: Uint8Array): L7Capture | null {
  return decodeL7Capture(b, 0, b.length);
}

/** Feeds one record to a parser the way tracker.ts does (replayCapture: cuts as `cut` gaps). */
function feedRecord(p: StreamParser, c: L7Capture, ts: bigint): L7Message[] {
  const out: L7Message[] = [];
  replayCapture(c, (b) => out.push(...p.push(b, ts)), (n) => out.push(...p.gap(n, ts, true)), (n) => out.push(...p.gap(n, ts)));
  return out;
}

/** Splits bytes into calls at the given fractions. */
function calls(bytes: Uint8Array, fractions: readonly number[]): Uint8Array[] {
  const at = [...new Set(fractions.map((f) => Math.floor(f * bytes.length)))].filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const x of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, x));
    prev = x;
  }
  return out;
}

interface Parsed { requests: L7Message[]; responses: L7Message[]; failed: (string | null)[]; counts: [string, number][]; keptBytes: number }

/** Both directions (requests first, as each call comes at its own time), raw or cut by the kernel model. */
function parse(req: readonly Uint8Array[], resp: readonly Uint8Array[], how: 'whole' | 'kernel' | 'raw', limit = how === 'raw' ? 4096 : 16384): Parsed {
  const conn = createHttp2Connection(DEFAULT_L7_OPTIONS);
  const out: Parsed = { requests: [], responses: [], failed: [], counts: [], keptBytes: 0 };
  const sides: [StreamParser, readonly Uint8Array[], L7Message[], DirState][] = [
    [conn.requests, req, out.requests, newState(true)], [conn.responses, resp, out.responses, newState(false)],
  ];
  let ts = 1n;
  for (let i = 0; i < Math.max(req.length, resp.length); i++) {
    for (const [p, cs, into, st] of sides) {
      const b = cs[i];
      if (b === undefined) continue;
      ts++;
      if (how === 'whole') {
        into.push(...p.push(b, ts));
        continue;
      }
      const k = how === 'kernel' ? kernelCall(st, b, limit) : { cuts: [], kept: b.subarray(0, limit) };
      const c = decode(record(b.length, k.cuts, k.kept));
      assert.ok(c, 'the record decodes');
      out.keptBytes += c.captured_len + c.cuts!.length / 2 * L7_CUT_SIZE;
      into.push(...feedRecord(p, c, ts));
    }
  }
  for (const [p, , into] of sides) {
    into.push(...p.end(ts + 1n));
    out.failed.push(p.failed);
    out.counts.push(...(takeHttp2Counts(p) ?? []));
  }
  return out;
}

// ---------------------------------------------------------------------------

test('h2 cuts: decode reads ncuts and the cuts, the payload after them', () => {
  const c = decode(record(100, [10, 20, 40, 5], new Uint8Array(75).fill(1)));
  assert.ok(c);
  assert.equal(c.ncuts, 2);
  assert.deepEqual(c.cuts, [10, 20, 40, 5]);
  assert.equal(c.payload.length, 75);
  const none = decode(record(10, [], new Uint8Array(10)));
  assert.equal(none?.ncuts, 0);
  assert.deepEqual(none?.cuts, []);
});

test('h2 cuts: records whose cuts do not add up are not decoded', () => {
  const bad: [string, number, number[], number][] = [
    // name, total, cuts, kept
    ['overlapping', 100, [10, 20, 25, 5], 75],
    ['out of order', 100, [40, 5, 10, 20], 75],
    ['past the call', 100, [90, 20], 90],
    ['empty cut', 100, [10, 0], 100],
    ['kept bytes before a cut more than the payload', 100, [50, 10], 20],
  ];
  for (const [name, total, cuts, kept] of bad) assert.equal(decode(record(total, cuts, new Uint8Array(kept))), null, name);
  // more than RF_L7_MAX_CUTS
  const many: number[] = [];
  for (let i = 0; i <= L7_MAX_CUTS; i++) many.push(i * 2 + 1, 1);
  assert.equal(decode(record(1000, many, new Uint8Array(10))), null, 'over the cut limit');
  // payload shorter than ncuts says
  const r = record(100, [10, 20], new Uint8Array(80));
  assert.equal(decodeL7Capture(r, 0, r.length - 1), null, 'truncated record');
});

test('h2 cuts: replayCapture gives kept bytes, cuts and the uncaptured tail in call order', () => {
  const table: [string, number, number[], string, string[]][] = [
    // name, total, cuts, kept, expected calls
    ['no cuts, all captured', 5, [], 'abcde', ['push abcde']],
    ['no cuts, tail not captured', 8, [], 'abcde', ['push abcde', 'gap 3']],
    ['cut in the middle', 10, [3, 4], 'abcdef', ['push abc', 'cut 4', 'push def']],
    ['cut first and last', 10, [0, 2, 7, 3], 'abcde', ['cut 2', 'push abcde', 'cut 3']],
    ['two cuts back to back with kept between', 12, [2, 3, 6, 4], 'abcde', ['push ab', 'cut 3', 'push c', 'cut 4', 'push de']],
    ['window full after a cut', 20, [2, 3], 'abcd', ['push ab', 'cut 3', 'push cd', 'gap 13']],
  ];
  for (const [name, total, cuts, kept, want] of table) {
    const c = decode(record(total, cuts, new TextEncoder().encode(kept)));
    assert.ok(c, name);
    const got: string[] = [];
    replayCapture(c, (b) => got.push(`push ${new TextDecoder().decode(b)}`), (n) => got.push(`cut ${n}`), (n) => got.push(`gap ${n}`));
    assert.deepEqual(got, want, name);
  }
});

test('h2 cuts: enum rf_l7_h2_counter and RF_L7_MAX_CUTS in bpf/events.h line up with capture.ts', () => {
  const h = fs.readFileSync(path.join(ROOT, 'bpf/events.h'), 'utf8');
  const body = /enum rf_l7_h2_counter \{([^}]*)\}/.exec(h)?.[1];
  assert.ok(body, 'enum rf_l7_h2_counter is in events.h');
  const got = Object.fromEntries([...body.matchAll(/RF_L7_H2_(\w+)\s*=\s*(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  assert.deepEqual(got, { ...L7_H2, NR: L7_H2_NR });
  assert.equal(Number(/#define RF_L7_MAX_CUTS\s+(\d+)/.exec(h)?.[1]), L7_MAX_CUTS);
  assert.match(h, /struct rf_l7_cut \{\s*__u32 at;\s*__u32 len;\s*\};/);
});

test('h2 cuts: a conversation of 1 MiB gRPC messages, cut as the kernel cuts it, parses to what the whole bytes give, nothing truncated', () => {
  const { req, resp } = conversation(3, 1 << 20);
  const rq = calls(req, [0.001, 0.3, 0.5, 0.77]);
  const rs = calls(resp, [0.1, 0.5, 0.9]);
  const whole = parse(rq, rs, 'whole');
  assert.deepEqual(whole.failed, [null, null]);
  assert.equal(whole.requests.length, 3);
  const cut = parse(rq, rs, 'kernel');
  assert.deepEqual(cut.failed, [null, null]);
  assert.deepEqual(cut.requests, whole.requests);
  assert.deepEqual(cut.responses, whole.responses);
  for (const m of [...cut.requests, ...cut.responses]) assert.equal(m.truncated, false);
  assert.deepEqual(cut.responses.map((m) => m.grpc_status), [0, 1, 2]);
  assert.deepEqual(cut.requests.map((m) => m.body_bytes), [0, 1, 2].map((i) => 5 + (1 << 20) + i));
  // what left the kernel: headers only (3 calls, ~6 MiB moved)
  assert.ok(cut.keptBytes < 8192, `kept ${cut.keptBytes} bytes`);
  assert.deepEqual(cut.counts, []);
});

test('h2 cuts: a read of several frames over the capture size: raw loses the frames after it ("gap across frames"), cut it does not', () => {
  // an OTLP-like request: HEADERS, then DATA frames of 16 KiB and a small one, read in one call
  const { req, resp } = conversation(2, 40_000);
  const raw = parse([req], [resp], 'raw');
  assert.ok(raw.counts.some(([k]) => k === 'gap across frames'), `raw: ${JSON.stringify(raw.counts)}`);
  const cut = parse([req], [resp], 'kernel');
  assert.deepEqual(cut.counts, []);
  assert.deepEqual(cut.requests, parse([req], [resp], 'whole').requests);
});

test('h2 cuts property: any split of any conversation into calls parses to the whole stream\'s messages', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 40_000 }),
    fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
    fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
    fc.constantFrom(64, 512, 4096, 16384),
    (n, size, fr, fs2, limit) => {
      const { req, resp } = conversation(n, size);
      const rq = calls(req, fr);
      const rs = calls(resp, fs2);
      const whole = parse(rq, rs, 'whole');
      const cut = parse(rq, rs, 'kernel', limit);
      if (limit >= 4096) {
        // headers always fit: exactly the same messages
        assert.deepEqual(cut.requests, whole.requests);
        assert.deepEqual(cut.responses, whole.responses);
        assert.deepEqual(cut.failed, [null, null]);
      } else {
        // a small capture loses header bytes past it: never a crash, never more messages than there were
        assert.ok(cut.requests.length <= whole.requests.length + n);
      }
    },
  ), { numRuns: 60 });
});

/*
 * bpf/l7_h2.h's frame check and cut rule, compiled for the host (it is pure
 * C: no helpers, no maps) and run on a table of frame headers.
 */
test('h2 cuts: l7_h2.h rf_h2_plausible and rf_h2_cuts on a table of frame headers (host build)', () => {
  const hdr = (len: number, type: number, flags: number, stream: number, reserved = false): string => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(len, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE((stream | (reserved ? 0x80000000 : 0)) >>> 0, 5);
    return h.toString('hex');
  };
  // [name, header, plausible (lenient), plausible (strict: a seeking direction's first), cut]
  const table: [string, string, boolean, boolean, boolean][] = [
    ['DATA', hdr(16384, DATA, 0, 1), true, true, true],
    ['DATA padded: its pad length is read', hdr(100, DATA, PADDED, 1), true, true, false],
    ['DATA on stream 0', hdr(10, DATA, 0, 0), false, false, true],
    ['HEADERS', hdr(200, HEADERS, END_HEADERS, 3), true, true, false],
    ['HEADERS on stream 0', hdr(200, HEADERS, END_HEADERS, 0), false, false, false],
    ['PRIORITY', hdr(5, PRIORITY, 0, 3), true, true, true],
    ['PRIORITY of 4 bytes', hdr(4, PRIORITY, 0, 3), false, false, true],
    ['RST_STREAM', hdr(4, 3, 0, 3), true, true, false],
    ['RST_STREAM of 8 bytes', hdr(8, 3, 0, 3), false, false, false],
    ['SETTINGS', hdr(18, SETTINGS, 0, 0), true, true, false],
    ['SETTINGS of 7 bytes', hdr(7, SETTINGS, 0, 0), false, false, false],
    ['SETTINGS ACK', hdr(0, SETTINGS, 1, 0), true, true, false],
    ['SETTINGS ACK with a payload', hdr(6, SETTINGS, 1, 0), false, false, false],
    ['SETTINGS on a stream', hdr(6, SETTINGS, 0, 1), false, false, false],
    ['PUSH_PROMISE', hdr(20, 5, END_HEADERS, 2), true, true, false],
    ['PING', hdr(8, PING, 0, 0), true, true, true],
    ['PING of 9 bytes', hdr(9, PING, 0, 0), false, false, true],
    ['GOAWAY', hdr(8, 7, 0, 0), true, true, false],
    ['GOAWAY too short', hdr(7, 7, 0, 0), false, false, false],
    ['WINDOW_UPDATE', hdr(4, WINDOW_UPDATE, 0, 0), true, true, true],
    ['WINDOW_UPDATE of 5 bytes', hdr(5, WINDOW_UPDATE, 0, 1), false, false, true],
    ['CONTINUATION', hdr(100, 9, END_HEADERS, 1), true, true, false],
    ['an extension type (ALTSVC): kept whole, not a resync point', hdr(30, 10, 0, 0), true, false, false],
    ['reserved bit set', hdr(10, DATA, 0, 1, true), false, false, true],
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-l7-h2-'));
  try {
    const src = [
      '#include <stdio.h>', '#include <stdlib.h>', '#include <linux/types.h>',
      '#ifndef __always_inline', '#define __always_inline inline __attribute__((always_inline))', '#endif',
      '#include "l7_h2.h"',
      'int main(int argc, char **argv) {',
      '  for (int a = 1; a < argc; a++) {',
      '    __u8 h[9];',
      '    for (int i = 0; i < 9; i++) { char b[3] = { argv[a][2 * i], argv[a][2 * i + 1], 0 }; h[i] = (__u8)strtoul(b, NULL, 16); }',
      '    printf("%d %d %d\\n", rf_h2_plausible(h, 0), rf_h2_plausible(h, 1), rf_h2_cuts(h));',
      '  }',
      '  return 0;',
      '}', '',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'h2.c'), src);
    const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Werror', '-I', path.join(ROOT, 'bpf'), '-o', path.join(dir, 'h2'), path.join(dir, 'h2.c')], { encoding: 'utf8' });
    if (cc.error) throw new Error(`gcc is needed for this test: ${cc.error.message}`);
    assert.equal(cc.status, 0, cc.stderr);
    const r = spawnSync(path.join(dir, 'h2'), table.map((x) => x[1]), { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = r.stdout.trim().split('\n');
    table.forEach(([name, , lenient, strict, cut], i) => {
      assert.equal(got[i], `${Number(lenient)} ${Number(strict)} ${Number(cut)}`, name);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
