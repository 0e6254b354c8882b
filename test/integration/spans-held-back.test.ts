/**
 * Soak finding 5 on a real broker: records delivered after an idle raise
 * that is already past their deadline. Through a broker outage the collector
 * holds its l7 records and sends them, in order, when the broker is back;
 * meanwhile the spans stage has advanced the quiet partition by its clock
 * (IDLE_GRACE behind it). Here the outage is played by holding part of the
 * records back: a request that is never answered makes the partition hold
 * something, the stage times it out by the clock (its span is the proof the
 * raise happened), and only then are an exchange's records, older than that
 * raise, produced. Every one of them was answered: no timeout may come out.
 *
 * `ringflow process` runs as a child on a broker of its own (event times in
 * the past would be judged against other tests' records otherwise).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, runCli, sleep, type CliRun } from '../support/integration.ts';
import { decodeRecord, encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { l7Key } from '../../collector/l7/tracker.ts';

const L7 = 'ringflow.l7.v1';
const SPANS = 'ringflow.spans.v1';
const S = 1_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const CLIENT_HOST = `held-client-${RUN}`;
const SERVER_HOST = `held-server-${RUN}`;
const LOST_HOST = `held-lost-${RUN}`;

interface Side { host: string; boot: bigint; tgid: number; conn: number; comm: string; role: 'CLIENT' | 'SERVER'; local: [string, number]; remote: [string, number] }

function l7(side: Side, kind: 'REQUEST' | 'RESPONSE', id: number, at: bigint, path: string): { key: string; value: Buffer } {
  const req = kind === 'REQUEST';
  const value = encodeRecord(schemaRegistry().byId('l7')!, {
    ts_ns: at - side.boot, end_ns: at + MS - side.boot, pid: side.tgid, tgid: side.tgid, uid: 1000, comm: side.comm, cgroup_id: 1,
    conn_id: side.conn, role: side.role, transport: 'TCP',
    local_addr: side.local[0], local_port: side.local[1], remote_addr: side.remote[0], remote_port: side.remote[1],
    protocol: 'HTTP1', kind, stream_id: id, method: req ? 'GET' : null, path: req ? path : null, status: req ? null : 200,
    headers: { host: 'web' }, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: 0, truncated: false, host: side.host, boot_time_ns: side.boot,
  });
  // the collector's key: both ends of the connection, so every record here shares one partition
  return { key: l7Key('TCP', side.local[0], side.local[1], side.remote[0], side.remote[1]), value };
}

interface SpanRec { name: string; kind: string; status: string; host: string; trace_id: string; span_id: string; parent_span_id: string | null; attributes: Record<string, string> }

describe('spans stage: records held back past an idle raise (broker outage) still pair', { timeout: 120_000 }, () => {
  let broker: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let proc: CliRun | undefined;
  const spans: SpanRec[] = [];
  let watcher: ReturnType<InstanceType<typeof Kafka>['consumer']> | undefined;

  before(async () => {
    broker = await ownBroker();
    kafka = new Kafka({ clientId: 'it-spans-held', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [L7, SPANS], 3);
    await admin.disconnect();
    watcher = kafka.consumer({ groupId: `it-spans-held-${RUN}`, readUncommitted: false });
    await watcher.connect();
    await watcher.subscribe({ topics: [SPANS], fromBeginning: true });
    await watcher.run({
      eachMessage: async ({ message }) => {
        const v = decodeRecord(message.value!).value as unknown as SpanRec;
        if ([CLIENT_HOST, SERVER_HOST, LOST_HOST].includes(v.host)) spans.push(v);
      },
    });
    proc = runCli(['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '1s', '--span-timeout', '2s', '--partitions', '3', '--instance', `it-spans-held-${RUN}`]);
    await proc.waitFor(/processing as/);
  });

  after(async () => {
    proc?.child.kill('SIGTERM');
    if (proc) await proc.exit;
    await watcher?.disconnect().catch(() => {});
    await broker?.stop();
  });

  test('an answered request delivered below the raise is a span with its response, not a timeout', async () => {
    const t = BigInt(Date.now()) * MS - 10n * S;
    const client: Side = { host: CLIENT_HOST, boot: t - 86_400n * S, tgid: 101, conn: 1, comm: 'load', role: 'CLIENT', local: ['10.2.0.1', 42001], remote: ['10.2.0.2', 8080] };
    const server: Side = { host: SERVER_HOST, boot: t - 3_600n * S, tgid: 201, conn: 2, comm: 'web', role: 'SERVER', local: ['10.2.0.2', 8080], remote: ['10.2.0.1', 42001] };
    // another observer of the same connection (same key, same partition): a request never answered
    const lost: Side = { ...server, host: LOST_HOST, tgid: 301, conn: 3 };
    const producer = kafka.producer();
    await producer.connect();
    try {
      await producer.send({ topic: L7, messages: [l7(lost, 'REQUEST', 1, t, '/lost')] });
      // the stage advances the quiet partition by its clock (5 s behind it) past /lost's deadline
      // (t + 2 s) and its link wait (+ 2 s): the timeout's span proves the raise
      const deadline = Date.now() + 30_000;
      while (!spans.some((s) => s.host === LOST_HOST)) {
        if (Date.now() > deadline) throw new Error(`no timeout span for /lost within 30 s; processor log:\n${proc!.stderr()}`);
        await sleep(200);
      }
      // the held-back records: made 1 s after /lost, all of them below the raise, and answered
      const held = t + 1n * S;
      await producer.send({
        topic: L7,
        messages: [
          l7(client, 'REQUEST', 1, held, '/held'),
          l7(server, 'REQUEST', 1, held + MS, '/held'),
          l7(server, 'RESPONSE', 1, held + 3n * MS, '/held'),
          l7(client, 'RESPONSE', 1, held + 5n * MS, '/held'),
        ],
      });
      const until = Date.now() + 30_000;
      while (spans.filter((s) => s.host !== LOST_HOST).length < 2 && Date.now() < until) await sleep(200);
      await sleep(2000); // a duplicate or a stray timeout would show by now
    } finally {
      await producer.disconnect();
    }
    const show = (s: SpanRec): string => `${s.kind} ${s.name} ${s.status}${s.attributes['error.type'] ? ` error.type=${s.attributes['error.type']}` : ''}`;
    assert.deepEqual(spans.map(show).sort(), [
      'CLIENT GET /held UNSET',
      'SERVER GET /held UNSET',
      'SERVER GET /lost ERROR error.type=timeout',
    ]);
    // their link wait ran on their own time: the server span is still the child of the client span
    const c = spans.find((s) => s.kind === 'CLIENT')!;
    const srv = spans.find((s) => s.kind === 'SERVER' && s.host === SERVER_HOST)!;
    assert.deepEqual([srv.parent_span_id, srv.trace_id], [c.span_id, c.trace_id]);
    assert.match(proc!.stderr(), /processing as/);
  });
});
