/**
 * Span edges (issue 10, "true timestamps"): which of a capture's two times
 * (sys_enter = enter_ns, sys_exit = ts_ns) stamps the bytes it carried
 * (messageEdgeNs, collector/l7/tracker.ts), and that with it a server's
 * messages lie inside its client's on one clock, whatever the calls' own
 * durations, for HTTP/1 over TCP and DNS over UDP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L7Tracker, messageEdgeNs, type L7Output } from '../../collector/l7/tracker.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, IPPROTO_UDP, type L7Capture } from '../../collector/l7/capture.ts';

const E = L7Direction.EGRESS;
const I = L7Direction.INGRESS;

test('messageEdgeNs: a send is stamped at its enter, a recv at its exit, whatever the role', () => {
  const cases: [string, Pick<L7Capture, 'direction' | 'ts_ns' | 'enter_ns' | 'kind'>, bigint][] = [
    ['send (request first byte, or response last byte)', { direction: E, kind: L7Kind.DATA, enter_ns: 100n, ts_ns: 400n }, 100n],
    ['recv (request received, or response last byte)', { direction: I, kind: L7Kind.DATA, enter_ns: 100n, ts_ns: 400n }, 400n],
    ['recv that blocked long at its enter', { direction: I, kind: L7Kind.DATA, enter_ns: 1n, ts_ns: 9_000_000n }, 9_000_000n],
    ['send that took no time', { direction: E, kind: L7Kind.DATA, enter_ns: 7n, ts_ns: 7n }, 7n],
    ['close: no bytes, its own time', { direction: E, kind: L7Kind.CLOSE, enter_ns: 5n, ts_ns: 5n }, 5n],
    ['send without an enter time (0): the exit', { direction: E, kind: L7Kind.DATA, enter_ns: 0n, ts_ns: 400n }, 400n],
    ['send whose enter is after its exit (impossible): the exit', { direction: E, kind: L7Kind.DATA, enter_ns: 500n, ts_ns: 400n }, 400n],
  ];
  for (const [name, c, want] of cases) assert.equal(messageEdgeNs(c), want, name);
});

const enc = new TextEncoder();

interface Call { dir: number; data: Uint8Array | string; enter: bigint; exit: bigint }

/** Captures of one connection seen from one side, offsets counted per direction as the kernel does. */
function side(conn: bigint, role: number, proto: number, lport: number, rport: number, calls: readonly Call[]): L7Capture[] {
  const off = [0, 0];
  return calls.map((c) => {
    const payload = typeof c.data === 'string' ? enc.encode(c.data) : c.data;
    const r: L7Capture = {
      cpu: 0, pid: role === L7Role.CLIENT ? 100 : 200, tgid: role === L7Role.CLIENT ? 100 : 200, uid: 0, ts_ns: c.exit, cgroup_id: 1n,
      comm: role === L7Role.CLIENT ? 'client' : 'server', conn_id: conn, offset: off[c.dir]!, peer_offset: off[1 - c.dir]!,
      laddr: Uint8Array.of(127, 0, 0, 1), raddr: Uint8Array.of(127, 0, 0, 1), fd: 3, total_len: payload.length, captured_len: payload.length,
      lport, rport, family: 2, direction: c.dir, syscall: c.dir === E ? 2 : 1, role, protocol: proto, kind: L7Kind.DATA, flags: 0,
      enter_ns: c.enter, payload,
    };
    off[c.dir]! += payload.length;
    return r;
  });
}

/** [start of the request, end of the response] of the one exchange in `out`, and the request's end and response's start. */
function span(out: L7Output[]): { start: bigint; end: bigint; reqEnd: bigint; resStart: bigint } {
  const req = out.find((o) => o.msg.kind === 'REQUEST');
  const res = out.find((o) => o.msg.kind === 'RESPONSE');
  assert.ok(req && res, 'one request and one response');
  return { start: req.msg.start_ns, end: res.msg.end_ns, reqEnd: req.msg.end_ns, resStart: res.msg.start_ns };
}

function feedAll(caps: L7Capture[]): L7Output[] {
  const t = new L7Tracker();
  return caps.flatMap((c) => t.feed(c));
}

test('HTTP/1 on one clock: the server span lies inside the client span, the handler time inside the server span', () => {
  // One exchange as the kernel interleaves it. The client's write of the
  // request is descheduled after queueing the bytes: the server reads them
  // (exit 200) before that write returns (400). The response is written in
  // two calls; the client reads its last byte (1100) before the second write returns (1300).
  const head = 'POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n';
  const resHead = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
  const client = side(1n, L7Role.CLIENT, IPPROTO_TCP, 40000, 8080, [
    { dir: E, data: head, enter: 100n, exit: 150n },
    { dir: E, data: 'body', enter: 160n, exit: 400n },
    { dir: I, data: resHead, enter: 450n, exit: 1010n },
    { dir: I, data: 'hello', enter: 1020n, exit: 1100n },
  ]);
  const server = side(2n, L7Role.SERVER, IPPROTO_TCP, 8080, 40000, [
    { dir: I, data: head, enter: 50n, exit: 155n },
    { dir: I, data: 'body', enter: 170n, exit: 200n },
    // the handler runs from 200 to 1000
    { dir: E, data: resHead, enter: 1000n, exit: 1005n },
    { dir: E, data: 'hello', enter: 1060n, exit: 1300n },
  ]);
  const c = span(feedAll(client));
  const s = span(feedAll(server));
  assert.deepEqual(c, { start: 100n, end: 1100n, reqEnd: 160n, resStart: 1010n }, 'client: first send enter -> last recv exit');
  assert.deepEqual(s, { start: 155n, end: 1060n, reqEnd: 200n, resStart: 1000n }, 'server: first recv exit -> last send enter');
  assert.ok(c.start <= s.start && s.end <= c.end, `server [${s.start}, ${s.end}] inside client [${c.start}, ${c.end}]`);
  assert.ok(s.reqEnd <= 200n && s.resStart >= 1000n, 'the handler time (200 -> 1000) lies between request end and response start');
});

/** A DNS message: id, flags, one question a.example A IN, no records. */
function dns(id: number, flags: number): Uint8Array {
  const name = [1, 97, 7, ...enc.encode('example'), 0];
  return Uint8Array.from([id >> 8, id & 255, flags >> 8, flags & 255, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
}

test('DNS over UDP on one clock: the resolver span lies inside the lookup span (dig sendmsg returning after dnsmasq answered)', () => {
  // As seen with dig and dnsmasq: dig's sendmsg of the query returned 1.4 ms
  // after dnsmasq had already answered it.
  const q = dns(0x1234, 0x0100);
  const a = dns(0x1234, 0x8180);
  const client = side(3n, L7Role.UNKNOWN, IPPROTO_UDP, 40001, 53, [
    { dir: E, data: q, enter: 1_000n, exit: 1_500_000n },
    { dir: I, data: a, enter: 2_000n, exit: 1_600_000n },
  ]);
  const server = side(4n, L7Role.UNKNOWN, IPPROTO_UDP, 53, 40001, [
    { dir: I, data: q, enter: 500n, exit: 50_000n },
    { dir: E, data: a, enter: 90_000n, exit: 100_000n },
  ]);
  const co = feedAll(client);
  const so = feedAll(server);
  assert.deepEqual(co.map((o) => o.ctx.role), ['CLIENT', 'CLIENT']);
  assert.deepEqual(so.map((o) => o.ctx.role), ['SERVER', 'SERVER']);
  const c = span(co);
  const s = span(so);
  assert.deepEqual([c.start, c.end], [1_000n, 1_600_000n]);
  assert.deepEqual([s.start, s.end], [50_000n, 90_000n]);
  assert.ok(c.start <= s.start && s.end <= c.end, `server [${s.start}, ${s.end}] inside client [${c.start}, ${c.end}]`);
});
