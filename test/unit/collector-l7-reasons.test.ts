/**
 * Issue 9, item 5: the L7 tracker's parser-failure counters are keyed by a
 * fixed reason, never by a text carrying lengths, counts or error messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L7Tracker, failureReason } from '../../collector/l7/tracker.ts';
import { L7Direction, L7Kind, L7Role, IPPROTO_TCP, type L7Capture } from '../../collector/l7/capture.ts';

test('failureReason: parser failure texts -> a fixed reason (table)', () => {
  const cases: [string, string][] = [
    ['bad start line', 'bad start line'],
    ['upgrade', 'upgrade'],
    ['bad content-length', 'bad content-length'],
    ['gap across frames', 'gap across frames'],
    ['malformed frame (padding)', 'malformed frame (padding)'],
    ['malformed frame (type 9)', 'malformed frame'],
    ['malformed frame (type 250)', 'malformed frame'],
    ['message 2 (812 bytes) is not DNS: framing lost or not DNS over TCP', 'not DNS'],
    ['message 7 (13 bytes) is not DNS: framing lost or not DNS over TCP', 'not DNS'],
    ['a gap of 4096 bytes covered a length prefix: framing lost', 'gap over a length prefix'],
    ['hpack: index 71 out of range', 'hpack error'],
    ['internal error: Cannot read properties of undefined (reading \'x\')', 'internal error'],
    ['something a future parser says about 42 things', 'other'],
    ['', 'other'],
  ];
  for (const [why, want] of cases) assert.equal(failureReason(why), want, why);
  for (const [, want] of cases) assert.doesNotMatch(want, /\d/, 'no numbers in a reason');
});

/** A length-prefixed DNS query (RFC 1035 4.2.2), the first message of a DNS-over-TCP connection. */
function dnsTcpQuery(): Uint8Array {
  const q = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x77, 0x77, 0x77, 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0, 0, 1, 0, 1]);
  const b = Buffer.alloc(2 + q.length);
  b.writeUInt16BE(q.length, 0);
  q.copy(b, 2);
  return b;
}

function cap(conn: bigint, payload: Uint8Array, offset: number, ts: bigint): L7Capture {
  return {
    cpu: 0, pid: 100, tgid: 100, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'dig',
    conn_id: conn, offset, peer_offset: 0, laddr: Uint8Array.from([127, 0, 0, 1]), raddr: Uint8Array.from([127, 0, 0, 1]), fd: 3,
    total_len: payload.length, captured_len: payload.length, lport: 40000, rport: 53, family: 2,
    direction: L7Direction.EGRESS, syscall: 2, role: L7Role.CLIENT, protocol: IPPROTO_TCP, kind: L7Kind.DATA, flags: 0, enter_ns: ts,
    payload,
  };
}

test('L7 tracker: 200 DNS connections failing with 200 different lengths make one failure key', () => {
  const t = new L7Tracker();
  for (let i = 0; i < 200; i++) {
    const conn = BigInt(1000 + i);
    const q = dnsTcpQuery();
    t.feed(cap(conn, q, 0, BigInt(10 * i)));
    // then a "message" that is not DNS, of a length that differs per connection
    const junk = Buffer.alloc(2 + 20 + i, 0xff);
    junk.writeUInt16BE(20 + i, 0);
    t.feed(cap(conn, junk, q.length, BigInt(10 * i + 1)));
  }
  assert.equal(t.counters.recognised, 200);
  assert.deepEqual([...t.counters.failed], [['DNS: not DNS', 200]]);
});
