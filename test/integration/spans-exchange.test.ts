/**
 * EXCHANGE records (one ringflow.l7.v1 record per exchange, issue 10 slice 4)
 * through the spans stage on a real broker, no BPF: records built by the
 * collector's encoder (collector/l7/encode.ts encodeExchange) from HTTP/1
 * messages, `ringflow process` run as a child; out, read_committed: the exact
 * spans (the server span the child of its client span, whether each end sent
 * exchanges or REQUEST + RESPONSE pairs), an exchange without a response
 * timed out, a handed-over request answered by a later RESPONSE record, the
 * RED histograms; then live exchanges with the processor SIGKILLed and
 * restarted: every span exactly once.
 *
 * Host names are unique per run, so other runs' records do not count.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep, type CliRun } from '../support/integration.ts';
import { decodeRecord } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { createL7Encoder, type L7Encoder } from '../../collector/l7/encode.ts';
import type { L7Context } from '../../collector/l7/tracker.ts';
import type { L7Message } from '../../collector/l7/types.ts';

const L7 = 'ringflow.l7.v1';
const SPANS = 'ringflow.spans.v1';
const METRICS = 'ringflow.metrics.v1';
const S = 1_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;

interface Side {
  boot: bigint;
  enc: L7Encoder;
  ctx: L7Context;
}

/** How one end reports an exchange: one EXCHANGE record, a REQUEST + RESPONSE pair, an EXCHANGE without response (closed), or one handed over (REQ_ONLY, then a RESPONSE). */
type Mode = 'exchange' | 'pair' | 'closed' | 'handover';

interface Req {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  status?: number;
}

function message(kind: 'REQUEST' | 'RESPONSE', id: number, start: bigint, r: Req): L7Message {
  const req = kind === 'REQUEST';
  return {
    protocol: 'HTTP1', kind, start_ns: start, end_ns: start + MS, stream_id: id,
    method: req ? (r.method ?? 'GET') : null, path: req ? r.path : null, status: req ? null : (r.status ?? 200),
    headers: req ? (r.headers ?? {}) : { 'content-type': 'text/plain' },
    grpc_service: null, grpc_method: null, grpc_status: null, dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: req ? 0 : 2, truncated: false, protocol_version: '1.1',
  };
}

/** One end's records of exchange `id`: its request at wall time `reqAt`, its response at `respAt`. */
function records(side: Side, mode: Mode, id: number, reqAt: bigint, respAt: bigint, r: Req): { key: string; value: Buffer }[] {
  const q = message('REQUEST', id, reqAt - side.boot, r);
  const p = message('RESPONSE', id, respAt - side.boot, r);
  switch (mode) {
    case 'exchange': return [side.enc.encodeExchange(q, p, side.ctx)];
    case 'pair': return [side.enc.encode({ msg: q, ctx: side.ctx }), side.enc.encode({ msg: p, ctx: side.ctx })];
    case 'closed': return [side.enc.encodeExchange(q, null, side.ctx)];
    case 'handover': return [side.enc.encodeExchange(q, null, side.ctx, 'REQ_ONLY'), side.enc.encode({ msg: p, ctx: side.ctx })];
  }
}

/** The two ends of one TCP connection: a client on host `ch`, its server on host `sh` (another clock). */
function connection(ch: string, sh: string, clientComm: string, serverComm: string, clientPort: number, conn: number): [Side, Side] {
  const now = BigInt(Date.now()) * MS;
  const side = (host: string, boot: bigint, ctx: L7Context): Side => ({ boot, enc: createL7Encoder({ host, bootTimeNs: boot }), ctx });
  const base = { uid: 1000, cgroup_id: 1n, transport: 'TCP' } as const;
  return [
    side(ch, now - 86_400n * S, { ...base, pid: 100 + conn, tgid: 100 + conn, comm: clientComm, process_name: clientComm, conn_id: BigInt(conn), role: 'CLIENT', local_addr: '10.1.0.1', local_port: clientPort, remote_addr: '10.1.0.2', remote_port: 8080 }),
    side(sh, now - 3_600n * S, { ...base, pid: 200 + conn, tgid: 200 + conn, comm: serverComm, process_name: serverComm, conn_id: BigInt(1000 + conn), role: 'SERVER', local_addr: '10.1.0.2', local_port: 8080, remote_addr: '10.1.0.1', remote_port: clientPort }),
  ];
}

/** One exchange seen from both ends, in the order the records end: the server's, then the client's. */
function both(c: Side, s: Side, id: number, at: bigint, r: Req, modes: [client: Mode, server: Mode] = ['exchange', 'exchange']): { key: string; value: Buffer }[] {
  const server = records(s, modes[1], id, at + MS, at + 3n * MS, r);
  const client = records(c, modes[0], id, at, at + 5n * MS, r);
  // a pair's request goes out when it was sent, before the other end's records
  return modes[0] === 'pair' ? [client[0]!, ...server, client[1]!] : [...server, ...client];
}

interface SpanRec { trace_id: string; span_id: string; parent_span_id: string | null; name: string; kind: string; status: string; status_message: string | null; host: string; attributes: Record<string, string>; start_ns: bigint; end_ns: bigint }
interface Point { name: string; attrs: Record<string, string>; count: number; sum: number }

function watch(kafka: InstanceType<typeof Kafka>) {
  const spans: SpanRec[] = [];
  const points: Point[] = [];
  const c = kafka.consumer({ groupId: `it-spans-exchange-watch-${RUN}`, readUncommitted: false });
  const started = (async () => {
    await c.connect();
    await c.subscribe({ topics: [SPANS, METRICS], fromBeginning: true });
    await c.run({
      eachMessage: async ({ topic, message }) => {
        const v = decodeRecord(message.value!).value as Record<string, unknown>;
        if (topic === SPANS) spans.push(v as unknown as SpanRec);
        else {
          const h = v.histogram as { count: bigint; sum: number } | null;
          points.push({ name: v.name as string, attrs: Object.fromEntries((v.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value])), count: h ? Number(h.count) : Number(v.sum), sum: h ? h.sum : 0 });
        }
      },
    });
  })();
  return { spans, points, started, stop: () => c.disconnect() };
}

async function until(what: string, f: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('spans stage: EXCHANGE records -> spans and RED metrics, exactly once', { timeout: 150_000 }, () => {
  let broker: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let w: ReturnType<typeof watch>;
  let proc: CliRun | undefined;
  const C = `xclient-${RUN}`;
  const SV = `xserver-${RUN}`;
  const args = () => ['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '1s', '--span-timeout', '2s', '--partitions', '3', '--instance', `it-spans-exchange-${RUN}`];

  before(async () => {
    broker = await ownBroker(); // event times 40 s in the past: no other test's records on these partitions
    kafka = new Kafka({ clientId: 'it-spans-exchange', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [L7, SPANS, METRICS], 3);
    await admin.disconnect();
    w = watch(kafka);
    await w.started;

    const t = BigInt(Date.now()) * MS - 40n * S;
    const host = { host: 'users:8080' };
    const [c1, s1] = connection(C, SV, 'curl', 'api', 40001, 1);
    const [c2, s2] = connection(C, SV, 'curl', 'api', 40002, 2);
    const [c3] = connection(C, SV, 'curl', 'api', 40003, 3);
    const [c4] = connection(C, SV, 'curl', 'api', 40004, 4);
    const msgs = [
      ...both(c1, s1, 0, t, { path: '/users/42', headers: host }),
      ...both(c1, s1, 1, t + 100n * MS, { path: '/users/7?x=REDACTED', headers: host }),
      ...both(c1, s1, 2, t + 200n * MS, { method: 'POST', path: '/orders', headers: host, status: 503 }),
      // one end as a pair, the other as an exchange: still one exchange, linked
      ...both(c2, s2, 0, t + 300n * MS, { path: '/items/5', headers: host }, ['pair', 'exchange']),
      // handed over before its response: the later RESPONSE record answers it
      ...records(c4, 'handover', 0, t + 400n * MS, t + 700n * MS, { path: '/handed', headers: host, status: 201 }),
      // closed without a response: its span ends at the timeout (2 s), just before the others end,
      // so stage 2 (lateness 1 s) counts none of them late whichever partition it hears first
      ...records(c3, 'closed', 0, t - 2100n * MS, t, { path: '/slow', headers: host }),
    ];
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: L7, messages: msgs });
    await producer.disconnect();

    proc = runCli(args());
    await proc.waitFor(/processing as/);
  });

  after(async () => {
    proc?.child.kill('SIGTERM');
    if (proc) await proc.exit;
    await w?.stop().catch(() => {});
    await broker?.stop();
  });

  test('exact spans: server spans children of their client spans, the closed one timed out, the handed-over one answered', async () => {
    const mine = () => w.spans.filter((s) => s.host === C || s.host === SV);
    await until('10 spans', () => mine().length >= 10, 30_000);
    await sleep(1500); // a duplicate would show by now
    const spans = mine();
    assert.deepEqual(spans.map((s) => `${s.kind} ${s.name} ${s.status} ${s.attributes['http.response.status_code'] ?? '-'}`).sort(), [
      'CLIENT GET /handed UNSET 201',
      'CLIENT GET /items/{id} UNSET 200',
      'CLIENT GET /slow ERROR -',
      'CLIENT GET /users/{id} UNSET 200',
      'CLIENT GET /users/{id} UNSET 200',
      'CLIENT POST /orders ERROR 503',
      'SERVER GET /items/{id} UNSET 200',
      'SERVER GET /users/{id} UNSET 200',
      'SERVER GET /users/{id} UNSET 200',
      'SERVER POST /orders ERROR 503',
    ]);
    assert.equal(new Set(spans.map((s) => s.span_id)).size, 10);
    for (const srv of spans.filter((s) => s.kind === 'SERVER')) {
      const parent = spans.find((c) => c.span_id === srv.parent_span_id);
      assert.ok(parent, `server span ${srv.name} has its client span as parent`);
      assert.deepEqual([parent.kind, parent.trace_id, parent.attributes['url.path']], ['CLIENT', srv.trace_id, srv.attributes['url.path']]);
      // the server's exchange lies inside the client's
      assert.ok(srv.start_ns >= parent.start_ns && srv.end_ns <= parent.end_ns);
    }
    const slow = spans.find((s) => s.name === 'GET /slow')!;
    assert.deepEqual([slow.status_message, slow.attributes['error.type'], slow.end_ns - slow.start_ns], ['no response', 'timeout', 2n * S]);
    const users = spans.find((s) => s.kind === 'CLIENT' && s.attributes['url.path'] === '/users/42')!;
    assert.equal(users.end_ns - users.start_ns, 6n * MS); // request's first byte to response's last
    assert.equal(users.attributes['http.response.body.size'], '2');
    assert.equal(users.attributes['network.protocol.version'], '1.1');
  });

  test('RED metrics: exact counts from the exchanges', async () => {
    const red = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const p of w.points) {
        if ((p.attrs['host.name'] !== C && p.attrs['host.name'] !== SV) || !p.name.startsWith('http.')) continue;
        const k = `${p.name} ${p.attrs['http.request.method']} ${p.attrs['http.route'] ?? p.attrs['url.template']} ${p.attrs['http.response.status_code'] ?? p.attrs['error.type']}`;
        out[k] = (out[k] ?? 0) + p.count;
      }
      return out;
    };
    await until('10 requests in RED metrics', () => Object.values(red()).reduce((a, b) => a + b, 0) >= 10, 30_000);
    await sleep(1500);
    assert.deepEqual(red(), {
      'http.client.request.duration GET /handed 201': 1,
      'http.client.request.duration GET /items/{id} 200': 1,
      'http.client.request.duration GET /slow timeout': 1,
      'http.client.request.duration GET /users/{id} 200': 2,
      'http.client.request.duration POST /orders 503': 1,
      'http.server.request.duration GET /items/{id} 200': 1,
      'http.server.request.duration GET /users/{id} 200': 2,
      'http.server.request.duration POST /orders 503': 1,
    });
  });

  test('killed mid-stream (SIGKILL) and restarted: every exchange\'s span exactly once', async () => {
    const KC = `xkc-${RUN}`;
    const KS = `xks-${RUN}`;
    const conns = [1, 2, 3].map((i) => connection(KC, KS, 'load', 'web', 41000 + i, 10 + i));
    const producer = kafka.producer();
    await producer.connect();
    const mine = () => w.spans.filter((s) => s.host === KC || s.host === KS);
    let requests = 0;
    let ordinal = 0;
    try {
      const t0 = Date.now();
      let killed = false;
      while (Date.now() - t0 < 8_000) {
        const at = BigInt(Date.now()) * MS;
        const msgs = conns.flatMap(([c, s], i) => both(c, s, ordinal, at + BigInt(i) * MS, { path: `/items/${ordinal}`, headers: { host: 'web' } }));
        ordinal++;
        requests += 2 * conns.length;
        await producer.send({ topic: L7, messages: msgs });
        if (!killed && Date.now() - t0 > 4_000) {
          assert.ok(mine().length > 0, 'some spans were emitted before the kill');
          proc!.child.kill('SIGKILL');
          await proc!.exit;
          killed = true;
          proc = runCli(args());
        }
        await sleep(150);
      }
      await producer.disconnect();
      await until(`${requests} spans`, () => mine().length >= requests, 60_000);
      await sleep(2000);
      const all = (await readTopic(broker.brokers, SPANS)).map((r) => r.value as unknown as SpanRec).filter((s) => s.host === KC || s.host === KS);
      for (const spans of [mine(), all]) {
        assert.equal(spans.length, requests, 'one span per exchange and end');
        assert.equal(new Set(spans.map((s) => s.span_id)).size, requests, 'no span twice');
        assert.equal(spans.filter((s) => s.kind === 'SERVER' && s.parent_span_id !== null).length, requests / 2, 'every server span linked');
        assert.ok(spans.every((s) => s.status === 'UNSET' && s.name === 'GET /items/{id}'));
      }
      assert.equal(w.spans.filter((s) => s.host === C || s.host === SV).length, 10, 'the first part\'s spans not repeated');
    } finally {
      await producer.disconnect().catch(() => {});
    }
  });
});
