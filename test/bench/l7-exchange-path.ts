/**
 * The collector's cost per HTTP/1 exchange record (issue 10: observer CPU <=
 * 5 µs per request, BPF already ~6 µs, so the collector must be well under
 * 10 µs per exchange record): real struct rf_l7_exchange records for a wrk
 * GET with a node:http 200 (6 request and 5 response header lines), 8
 * connections as wrk -c8 has them, through what the codec's
 * L7_EXCHANGE_TYPE handler does: decodeL7Exchange -> tracker.exchange ->
 * asExchangeRecord -> encoder (Avro + key). One core, no Kafka. Prints one
 * JSON object: µs per exchange for the whole path and for its steps
 * (encode_avsc: the encode step through avsc instead of the direct writer).
 * head_us / head_ref_us: the A/B of the head parser alone, µs per exchange
 * (request + response head): collector/l7/http1.ts parseHttp1Head against
 * the b9062a8 parser kept in test/unit/l7-head-reference.ts, rounds alternating
 * in one run so both see the same load.
 *
 *   bash scripts/with-node.sh node test/bench/l7-exchange-path.ts
 *   (or BENCH_ONLY=l7exchange in test/bench/bench.ts)
 */
import { decodeL7Exchange, L7_EXCHANGE_OFFSETS as X, L7_EXCHANGE_SIZE, L7_EXCHANGE_TYPE, L7App, L7Outcome, type L7Exchange } from '../../collector/l7/exchange.ts';
import { L7Role, IPPROTO_TCP } from '../../collector/l7/capture.ts';
import { L7Tracker, type L7Output } from '../../collector/l7/tracker.ts';
import { asExchangeRecord, createL7Encoder } from '../../collector/l7/encode.ts';
import { parseHttp1Head } from '../../collector/l7/http1.ts';
import { capturedHeaders } from '../../collector/l7/headers.ts';
import { DEFAULT_L7_OPTIONS } from '../../collector/l7/types.ts';
import { referenceParseHttp1Head } from '../unit/l7-head-reference.ts';

const REQ = 'GET /api/items/42?limit=10 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk/4.2\r\nAccept: */*\r\n' +
  'Accept-Encoding: gzip\r\nConnection: keep-alive\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n';
const RES = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 07 Dec 2026 17:00:00 GMT\r\nConnection: keep-alive\r\n' +
  'Keep-Alive: timeout=5\r\nContent-Length: 12\r\n\r\n';
const CONNS = 8;

/** One record as bpf/l7.bpf.c fills it (offsets from exchange.ts, pinned to events.h by layout.test.ts). */
function record(conn: number, seq: number, role: number): Buffer {
  const rh = Buffer.from(REQ, 'latin1');
  const sh = Buffer.from(RES, 'latin1');
  const b = Buffer.alloc(L7_EXCHANGE_SIZE + rh.length + sh.length);
  const t = 1_000_000_000n + BigInt(seq) * 100_000n;
  b[X.type] = L7_EXCHANGE_TYPE;
  b.writeUInt16LE(1, X.cpu);
  b.writeUInt32LE(4000 + conn, X.pid);
  b.writeUInt32LE(4000, X.tgid);
  b.writeBigUInt64LE(t + 50_000n, X.ts_ns);
  b.writeBigUInt64LE(4242n, X.cgroup_id);
  b.write(role === L7Role.SERVER ? 'node' : 'wrk', X.comm, 'latin1');
  // as bpf/l7.bpf.c rf_l7_new_id makes it: 32 random bits over a sequence number (a long of 9 or 10 varint bytes)
  const id = BigInt(conn) + (role === L7Role.SERVER ? 100n : 0n);
  b.writeBigUInt64LE((((0x9e3779b9n * (id + 1n)) & 0xffffffffn) << 32n) | id, X.conn_id);
  b.writeBigUInt64LE(t, X.req_start_ns);
  b.writeBigUInt64LE(t + 1000n, X.req_end_ns);
  b.writeBigUInt64LE(t + 30_000n, X.resp_start_ns);
  b.writeBigUInt64LE(t + 31_000n, X.resp_end_ns);
  b.writeBigUInt64LE(12n, X.resp_body_bytes);
  Buffer.from([127, 0, 0, 1]).copy(b, X.laddr);
  Buffer.from([127, 0, 0, 1]).copy(b, X.raddr);
  b.writeUInt32LE(seq, X.seq);
  b.writeUInt32LE(4000 + conn, X.req_pid);
  b.writeUInt32LE(4000, X.req_tgid);
  b.writeUInt32LE(10 + conn, X.fd);
  b.writeUInt16LE(role === L7Role.SERVER ? 8080 : 40000 + conn, X.lport);
  b.writeUInt16LE(role === L7Role.SERVER ? 40000 + conn : 8080, X.rport);
  b.writeUInt16LE(2, X.family);
  b.writeUInt16LE(200, X.status);
  b.writeUInt16LE(rh.length, X.req_head_len);
  b.writeUInt16LE(sh.length, X.resp_head_len);
  b[X.app] = L7App.HTTP1;
  b[X.role] = role;
  b[X.protocol] = IPPROTO_TCP;
  b[X.outcome] = L7Outcome.RESPONDED;
  b.set(rh, L7_EXCHANGE_SIZE);
  b.set(sh, L7_EXCHANGE_SIZE + rh.length);
  return b;
}

/** A batch as the ring gives it: records back to back (both ends observed: client and server records alternate). */
export function batch(n: number): { buf: Buffer; offs: number[]; lens: number[] } {
  const recs: Buffer[] = [];
  for (let i = 0; i < n; i++) recs.push(record(i % CONNS, i >> 1, i % 2 === 0 ? L7Role.CLIENT : L7Role.SERVER));
  const offs: number[] = [];
  const lens: number[] = [];
  let o = 0;
  for (const r of recs) {
    offs.push(o);
    lens.push(r.length);
    o += r.length;
  }
  return { buf: Buffer.concat(recs), offs, lens };
}

/**
 * CPU µs (user + system of this process, not wall time: the host is shared,
 * and time spent waiting for a core is not the collector's cost) per record
 * of `f` over the batch, best of `rounds` runs of ~`ms` CPU ms each.
 */
function time(n: number, ms: number, rounds: number, f: () => void): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    let done = 0;
    const c0 = process.cpuUsage();
    let dt = 0;
    do {
      f();
      done += n;
      const c = process.cpuUsage(c0);
      dt = c.user + c.system;
    } while (dt < ms * 1e3);
    best = Math.min(best, dt / done);
  }
  return best;
}

export function l7ExchangePath(ms = Number(process.env.BENCH_MS ?? 1000), rounds = Number(process.env.BENCH_ROUNDS ?? 3)): Record<string, number> {
  const N = 1024;
  const { buf, offs, lens } = batch(N);
  const tracker = new L7Tracker({ processName: (tgid) => `svc-${tgid}` });
  const enc = createL7Encoder({ host: 'bench-host', bootTimeNs: 1_700_000_000_000_000_000n, containerId: () => '' });
  // the same records through avsc (encodeRecord): the direct writer's A/B in one run
  const encAvsc = createL7Encoder({ host: 'bench-host', bootTimeNs: 1_700_000_000_000_000_000n, containerId: () => '', avsc: true });
  let sink = 0;
  const xs: L7Exchange[] = offs.map((o, i) => decodeL7Exchange(buf, o, lens[i]!)!);
  const outs: L7Output[][] = xs.map((x) => tracker.exchange(x));
  const recs: L7Output[][] = outs.map((o, i) => asExchangeRecord(o, xs[i]!.outcome));
  const full = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) {
      const x = decodeL7Exchange(buf, offs[i]!, lens[i]!)!;
      for (const o of asExchangeRecord(tracker.exchange(x), x.outcome)) sink += enc.encode(o).value.length;
    }
  });
  const decode = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) sink += decodeL7Exchange(buf, offs[i]!, lens[i]!)!.seq;
  });
  const exchange = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) sink += tracker.exchange(xs[i]!).length;
  });
  const pair = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) sink += asExchangeRecord(outs[i]!, xs[i]!.outcome).length;
  });
  const encode = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) for (const o of recs[i]!) sink += enc.encode(o).value.length;
  });
  const encodeAvsc = time(N, ms, rounds, () => {
    for (let i = 0; i < N; i++) for (const o of recs[i]!) sink += encAvsc.encode(o).value.length;
  });
  const captured = capturedHeaders(DEFAULT_L7_OPTIONS);
  const heads = headAB(xs, captured, ms, rounds, (n) => {
    sink += n;
  });
  if (sink === 0) throw new Error('nothing encoded');
  const r = (v: number) => +v.toFixed(3);
  return {
    l7_exchange_us: r(full),
    l7_exchange_per_s: Math.round(1e6 / full),
    l7_exchange_decode_us: r(decode),
    l7_exchange_tracker_us: r(exchange),
    l7_exchange_pair_us: r(pair),
    l7_exchange_encode_us: r(encode),
    l7_exchange_encode_avsc_us: r(encodeAvsc),
    l7_exchange_head_us: r(heads.cur),
    l7_exchange_head_ref_us: r(heads.ref),
  };
}

/** Best µs per exchange of the current and the reference head parser, one round of each in turn. */
function headAB(xs: readonly L7Exchange[], captured: ReadonlySet<string>, ms: number, rounds: number, use: (n: number) => void): { cur: number; ref: number } {
  const run = (parse: typeof parseHttp1Head) => () => {
    let n = 0;
    for (const x of xs) {
      n += parse('REQUEST', x.req_head, x.req_head.length, captured)!.fields.length;
      n += parse('RESPONSE', x.resp_head, x.resp_head.length, captured)!.fields.length;
    }
    use(n);
  };
  const cur = run(parseHttp1Head);
  const ref = run(referenceParseHttp1Head);
  let best = { cur: Infinity, ref: Infinity };
  for (let r = 0; r < rounds; r++) {
    best = { ref: Math.min(best.ref, time(xs.length, ms, 1, ref)), cur: Math.min(best.cur, time(xs.length, ms, 1, cur)) };
  }
  return best;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(l7ExchangePath(), null, 2) + '\n');
}
