/**
 * The spans stage on a real broker, no BPF: hand-built ringflow.l7.v1 records
 * in (HTTP/1 exchanges seen from both sides, a gRPC error, a DNS query, a
 * request that never gets an answer, two poison records), `ringflow process`
 * run as a child; out, read_committed: the exact spans on ringflow.spans.v1
 * (names, kinds, the server span the child of the client span, the timeout),
 * their RED histograms on ringflow.metrics.v1, the dead letters. Then live
 * traffic with the processor SIGKILLed mid-stream and restarted: every span
 * exactly once.
 *
 * Host names are unique per run, so the suite broker's other records (and
 * other runs) do not count.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep, type CliRun } from '../support/integration.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { l7Key } from '../../collector/l7/tracker.ts';

const L7 = 'ringflow.l7.v1';
const SPANS = 'ringflow.spans.v1';
const METRICS = 'ringflow.metrics.v1';
const DEADLETTER = 'ringflow.deadletter.v1';
const S = 1_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;

interface Side {
  host: string;
  boot: bigint;
  tgid: number;
  conn: number;
  comm: string;
  role: 'CLIENT' | 'SERVER';
  transport: 'TCP' | 'UDP';
  local: [string, number];
  remote: [string, number];
}

interface Msg {
  kind: 'REQUEST' | 'RESPONSE';
  protocol?: 'HTTP1' | 'GRPC' | 'DNS';
  id: number;
  /** Wall-clock start; ends 1 ms later. */
  at: bigint;
  method?: string;
  path?: string;
  status?: number;
  headers?: Record<string, string>;
  grpc?: [string, string];
  grpcStatus?: number;
  dns?: [string, string];
}

const l7Schema = () => schemaRegistry().byId('l7')!;

/** One ringflow.l7.v1 record, keyed as the collector keys it (collector/l7/tracker.ts l7Key). */
function l7(side: Side, m: Msg): { key: string; value: Buffer } {
  const p = m.protocol ?? 'HTTP1';
  const req = m.kind === 'REQUEST';
  const value = encodeRecord(l7Schema(), {
    ts_ns: m.at - side.boot, end_ns: m.at + MS - side.boot, pid: side.tgid, tgid: side.tgid, uid: 1000, comm: side.comm, cgroup_id: 1,
    conn_id: side.conn, role: side.role, transport: side.transport,
    local_addr: side.local[0], local_port: side.local[1], remote_addr: side.remote[0], remote_port: side.remote[1],
    protocol: p, kind: m.kind, stream_id: m.id,
    method: req && p !== 'DNS' ? (m.method ?? (p === 'GRPC' ? 'POST' : 'GET')) : null,
    path: req && p !== 'DNS' ? (m.path ?? (m.grpc ? `/${m.grpc[0]}/${m.grpc[1]}` : '/')) : null,
    status: !req && p !== 'DNS' ? (m.status ?? 200) : null,
    headers: m.headers ?? {},
    grpc_service: m.grpc?.[0] ?? null, grpc_method: m.grpc?.[1] ?? null,
    grpc_status: !req && p === 'GRPC' ? (m.grpcStatus ?? 0) : null,
    dns_name: m.dns?.[0] ?? null, dns_type: m.dns?.[1] ?? null,
    dns_rcode: !req && p === 'DNS' ? 'NOERROR' : null, dns_answers: p === 'DNS' ? 1 : null,
    body_bytes: 0, truncated: false, host: side.host, boot_time_ns: side.boot,
  });
  return { key: l7Key(side.transport, side.local[0], side.local[1], side.remote[0], side.remote[1]), value };
}

/** The two ends of one TCP connection: a client on host `ch`, its server on host `sh` (another clock). */
function connection(ch: string, sh: string, clientComm: string, serverComm: string, clientPort: number, serverPort: number, conn: number): [Side, Side] {
  const now = BigInt(Date.now()) * MS;
  const client: Side = { host: ch, boot: now - 86_400n * S, tgid: 100 + conn, conn, comm: clientComm, role: 'CLIENT', transport: 'TCP', local: ['10.1.0.1', clientPort], remote: ['10.1.0.2', serverPort] };
  const server: Side = { host: sh, boot: now - 3_600n * S, tgid: 200 + conn, conn: 1000 + conn, comm: serverComm, role: 'SERVER', transport: 'TCP', local: ['10.1.0.2', serverPort], remote: ['10.1.0.1', clientPort] };
  return [client, server];
}

/** One exchange seen from both ends: client request, server request, server response, client response. */
function exchange(c: Side, s: Side, id: number, at: bigint, m: Omit<Msg, 'kind' | 'id' | 'at'>, resp: Partial<Msg> = {}): { key: string; value: Buffer }[] {
  return [
    l7(c, { ...m, kind: 'REQUEST', id, at }),
    l7(s, { ...m, kind: 'REQUEST', id, at: at + MS }),
    l7(s, { ...m, ...resp, kind: 'RESPONSE', id, at: at + 3n * MS }),
    l7(c, { ...m, ...resp, kind: 'RESPONSE', id, at: at + 5n * MS }),
  ];
}

interface SpanRec { key: string; trace_id: string; span_id: string; parent_span_id: string | null; name: string; kind: string; status: string; status_message: string | null; host: string; service_name: string; attributes: Record<string, string>; start_ns: bigint; end_ns: bigint }
interface Point { name: string; attrs: Record<string, string>; count: number; sum: number; late: number }

/** Everything committed to the topics the test watches, as it arrives (read_committed). */
function watch(kafka: InstanceType<typeof Kafka>) {
  const spans: SpanRec[] = [];
  const points: Point[] = [];
  const dead: Record<string, string>[] = [];
  const c = kafka.consumer({ groupId: `it-spans-watch-${RUN}`, readUncommitted: false });
  const started = (async () => {
    await c.connect();
    await c.subscribe({ topics: [SPANS, METRICS, DEADLETTER], fromBeginning: true });
    await c.run({
      eachMessage: async ({ topic, message }) => {
        if (topic === DEADLETTER) {
          dead.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([a, b]) => [a, String(b)])));
          return;
        }
        const v = decodeRecord(message.value!).value as Record<string, unknown>;
        if (topic === SPANS) spans.push({ ...(v as unknown as SpanRec), key: message.key?.toString() ?? '' });
        else {
          const h = v.histogram as { count: bigint; sum: number } | null;
          points.push({
            name: v.name as string,
            attrs: Object.fromEntries((v.attributes as { key: string; value: string }[]).map((a) => [a.key, a.value])),
            count: h ? Number(h.count) : Number(v.sum),
            sum: h ? h.sum : 0,
            late: Number(v.late_events),
          });
        }
      },
    });
  })();
  return { spans, points, dead, started, stop: () => c.disconnect() };
}

async function until(what: string, f: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** Counts of the RED histogram points of `hosts`, summed over windows, as 'name k=v,...' -> count. */
function red(points: readonly Point[], hosts: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of points) {
    if (!hosts.includes(p.attrs['host.name']!) || !/^(http|rpc|dns)\./.test(p.name)) continue;
    const k = `${p.name} ${Object.entries(p.attrs).filter(([a]) => a !== 'host.name').map(([a, v]) => `${a}=${v}`).join(',')}`;
    out[k] = (out[k] ?? 0) + p.count;
  }
  return out;
}

describe('spans stage: l7 records -> spans and RED metrics, exactly once', { timeout: 120_000 }, () => {
  let broker: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let w: ReturnType<typeof watch>;
  let proc: CliRun | undefined;
  const C = `client-${RUN}`;
  const SV = `server-${RUN}`;
  const args = () => ['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '1s', '--span-timeout', '2s', '--partitions', '3', '--instance', `it-spans-${RUN}`];

  before(async () => {
    // a broker of its own: the event times here are 40 s in the past, and real l7 records
    // another test left on a shared broker would move the partitions' watermarks past them
    broker = await ownBroker();
    kafka = new Kafka({ clientId: 'it-spans', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [L7, SPANS, METRICS, DEADLETTER], 3);
    await admin.disconnect();
    w = watch(kafka);
    await w.started;

    // 40 s in the past: the first idle advance decides everything
    const t = BigInt(Date.now()) * MS - 40n * S;
    const [hc, hs] = connection(C, SV, 'curl', 'api', 40001, 8080, 1);
    const [gc, gs] = connection(C, SV, 'greeter-cli', 'greeter', 40002, 50051, 2);
    const [tc] = connection(C, SV, 'curl', 'api', 40003, 8080, 3);
    const dnsClient: Side = { host: C, boot: hc.boot, tgid: 150, conn: 4, comm: 'app', role: 'CLIENT', transport: 'UDP', local: ['10.1.0.1', 5353], remote: ['10.1.0.53', 53] };
    const host = { host: 'users:8080' };
    const msgs = [
      ...exchange(hc, hs, 1, t, { path: '/users/42', headers: host }),
      ...exchange(hc, hs, 2, t + 100n * MS, { path: '/users/7?x=1', headers: host }),
      ...exchange(hc, hs, 3, t + 200n * MS, { method: 'POST', path: '/orders', headers: host }, { status: 503 }),
      ...exchange(gc, gs, 1, t + 300n * MS, { protocol: 'GRPC', grpc: ['helloworld.Greeter', 'SayHello'] }, { grpcStatus: 13 }),
      l7(dnsClient, { kind: 'REQUEST', protocol: 'DNS', id: 0x1234, at: t + 400n * MS, dns: ['example.com', 'A'] }),
      l7(dnsClient, { kind: 'RESPONSE', protocol: 'DNS', id: 0x1234, at: t + 402n * MS, dns: ['example.com', 'A'] }),
      // never answered: its span ends at the timeout (2 s), just before the others end, so that
      // stage 2 (lateness 1 s) cannot count any of them late whichever l7 partition it hears first
      l7(tc, { kind: 'REQUEST', id: 1, at: t - 2100n * MS, path: '/slow', headers: host }),
    ];
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: L7, messages: msgs });
    // poison: not Avro at all, and a record of another schema on the l7 topic
    const runq = encodeRecord(schemaRegistry().byTopic('ringflow.sched.runqlat.v1')!, {
      cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: 1n, cgroup_id: 1n, comm: 'x', latency_ns: 1n, prev_pid: 0, kind: 'WAKEUP', host: C, boot_time_ns: 0n,
    });
    await producer.send({ topic: L7, messages: [{ key: `poison-${RUN}`, value: Buffer.from('not avro') }, { key: `poison-${RUN}`, value: runq }] });
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

  test('exact spans: names, kinds, the server span a child of the client span, the timeout', async () => {
    const mine = () => w.spans.filter((s) => s.host === C || s.host === SV);
    await until('10 spans', () => mine().length >= 10, 30_000);
    await sleep(1500); // a duplicate would show by now
    const spans = mine();
    assert.deepEqual(spans.map((s) => `${s.kind} ${s.name} ${s.status}`).sort(), [
      'CLIENT DNS A UNSET',
      'CLIENT GET /slow ERROR',
      'CLIENT GET /users/{id} UNSET',
      'CLIENT GET /users/{id} UNSET',
      'CLIENT POST /orders ERROR',
      'CLIENT helloworld.Greeter/SayHello ERROR',
      'SERVER GET /users/{id} UNSET',
      'SERVER GET /users/{id} UNSET',
      'SERVER POST /orders ERROR',
      'SERVER helloworld.Greeter/SayHello ERROR',
    ]);
    assert.equal(new Set(spans.map((s) => s.span_id)).size, 10, 'span ids are unique');
    // every server span is the child of its client span: same trace, parent = the client span
    for (const srv of spans.filter((s) => s.kind === 'SERVER')) {
      const parent = spans.find((c) => c.span_id === srv.parent_span_id);
      assert.ok(parent, `server span ${srv.name} has its client span as parent`);
      assert.deepEqual([parent.kind, parent.name, parent.trace_id, parent.host, parent.attributes['url.path']], ['CLIENT', srv.name, srv.trace_id, C, srv.attributes['url.path']]);
      assert.equal(srv.host, SV);
    }
    for (const c of spans.filter((s) => s.kind === 'CLIENT')) assert.equal(c.parent_span_id, null);
    const slow = spans.find((s) => s.name === 'GET /slow')!;
    assert.deepEqual([slow.status_message, slow.attributes['error.type'], slow.end_ns - slow.start_ns], ['no response', 'timeout', 2n * S]);
    const grpc = spans.find((s) => s.kind === 'CLIENT' && s.name === 'helloworld.Greeter/SayHello')!;
    assert.deepEqual([grpc.attributes['rpc.grpc.status_code'], grpc.attributes['error.type']], ['13', 'INTERNAL']);
    // keyed by connection, as the l7 records
    assert.ok(spans.every((s) => /^(tcp|udp)\//.test(s.key)));
  });

  test('RED metrics: one duration histogram per kind, exact counts; errors carry error.type', async () => {
    const want = {
      'dns.lookup.duration dns.question.name=example.com,service.name=app': 1,
      'http.client.request.duration error.type=503,http.request.method=POST,http.response.status_code=503,server.address=users,server.port=8080,service.name=curl,url.template=/orders': 1,
      'http.client.request.duration error.type=timeout,http.request.method=GET,server.address=users,server.port=8080,service.name=curl,url.template=/slow': 1,
      'http.client.request.duration http.request.method=GET,http.response.status_code=200,server.address=users,server.port=8080,service.name=curl,url.template=/users/{id}': 2,
      'http.server.request.duration error.type=503,http.request.method=POST,http.response.status_code=503,http.route=/orders,service.name=api,url.scheme=http': 1,
      'http.server.request.duration http.request.method=GET,http.response.status_code=200,http.route=/users/{id},service.name=api,url.scheme=http': 2,
      'rpc.client.call.duration error.type=INTERNAL,rpc.method=helloworld.Greeter/SayHello,rpc.response.status_code=INTERNAL,rpc.system.name=grpc,server.address=10.1.0.2,server.port=50051,service.name=greeter-cli': 1,
      'rpc.server.call.duration error.type=INTERNAL,rpc.method=helloworld.Greeter/SayHello,rpc.response.status_code=INTERNAL,rpc.system.name=grpc,server.address=10.1.0.2,server.port=50051,service.name=greeter': 1,
    };
    const total = () => Object.values(red(w.points, [C, SV])).reduce((a, b) => a + b, 0);
    await until('10 requests in RED metrics', () => total() >= 10, 30_000);
    await sleep(1500);
    assert.deepEqual(red(w.points, [C, SV]), want);
    assert.equal(w.points.filter((p) => p.attrs['host.name'] === C || p.attrs['host.name'] === SV).reduce((a, p) => a + p.late, 0), 0, 'no span late');
    // the timeout's duration is the timeout; rpc.*.call.duration is in s
    const slow = w.points.find((p) => p.attrs['url.template'] === '/slow' && p.attrs['host.name'] === C)!;
    assert.equal(slow.sum, 2);
    const rpc = w.points.find((p) => p.name === 'rpc.client.call.duration' && p.attrs['host.name'] === C)!;
    assert.equal(rpc.sum, 0.006); // from the client request's first byte (t) to its response's last (t + 5 ms + 1 ms)
  });

  test('poison records go to the dead-letter topic with their source, once', async () => {
    const mine = () => w.dead.filter((d) => d['ringflow.source.topic'] === L7);
    await until('2 dead letters', () => mine().length >= 2, 20_000);
    // keyed by source offset, so they may sit in different partitions: in error order
    const d = mine().sort((a, b) => (a['ringflow.error']! < b['ringflow.error']! ? -1 : 1));
    assert.equal(d.length, 2);
    for (const x of d) assert.match(x['ringflow.source.offset']!, /^\d+$/);
    assert.match(d[0]!['ringflow.error']!, /BAD_MAGIC/);
    assert.match(d[1]!['ringflow.error']!, /record of ringflow\.sched\.runqlat\.v1 found on ringflow\.l7\.v1/);
    assert.match(proc!.stderr(), /dead letter/);
  });

  test('killed mid-stream (SIGKILL) and restarted: every span exactly once', async () => {
    const KC = `kc-${RUN}`;
    const KS = `ks-${RUN}`;
    const conns = [1, 2, 3, 4].map((i) => connection(KC, KS, 'load', 'web', 41000 + i, 8080, 10 + i));
    const producer = kafka.producer();
    await producer.connect();
    const mine = () => w.spans.filter((s) => s.host === KC || s.host === KS);
    let requests = 0;
    let ordinal = 0;
    try {
      const t0 = Date.now();
      let killed = false;
      while (Date.now() - t0 < 10_000) {
        ordinal++;
        const at = BigInt(Date.now()) * MS;
        const msgs = conns.flatMap(([c, s], i) => exchange(c, s, ordinal, at + BigInt(i) * MS, { path: `/items/${ordinal}`, headers: { host: 'web' } }));
        requests += 2 * conns.length;
        await producer.send({ topic: L7, messages: msgs });
        if (!killed && Date.now() - t0 > 5_000) {
          assert.ok(mine().length > 0, 'some spans were emitted before the kill');
          proc!.child.kill('SIGKILL');
          await proc!.exit;
          killed = true;
          proc = runCli(args());
        }
        await sleep(150);
      }
      await producer.disconnect();
      await until(`${requests} spans`, () => mine().length >= requests, 45_000);
      await sleep(2000);
      // independently of the watcher: read the topic to its end
      const all = (await readTopic(broker.brokers, SPANS)).map((r) => r.value as unknown as SpanRec).filter((s) => s.host === KC || s.host === KS);
      for (const spans of [mine(), all]) {
        assert.equal(spans.length, requests, 'one span per request');
        assert.equal(new Set(spans.map((s) => s.span_id)).size, requests, 'no span twice');
        assert.equal(spans.filter((s) => s.kind === 'SERVER' && s.parent_span_id !== null).length, requests / 2, 'every server span linked');
        assert.ok(spans.every((s) => s.status === 'UNSET' && s.name === 'GET /items/{id}'));
      }
      // the first part's spans, metrics and dead letters were not repeated by the restart
      assert.equal(w.spans.filter((s) => s.host === C || s.host === SV).length, 10);
      assert.equal(Object.values(red(w.points, [C, SV])).reduce((a, b) => a + b, 0), 10);
      assert.equal(w.dead.filter((d) => d['ringflow.source.topic'] === L7).length, 2);
    } finally {
      await producer.disconnect().catch(() => {});
    }
  });
});
