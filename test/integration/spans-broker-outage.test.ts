/**
 * Soak finding 5, the spans stage's side: the broker goes away while a
 * request waits for its response, and the response (held by its collector
 * through the outage) reaches Kafka a few seconds after the broker is back,
 * as a collector's back-off makes it. The stage must not time the request out
 * by its clock meanwhile: a partition's silence says nothing while the stage
 * cannot fetch, nor until the producers have had time to re-send.
 *
 * Real broker (its own), stopped and started on the same state; `ringflow
 * process` as a child with a 2 s span timeout, so an outage of ~8 s is far
 * past it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep, type CliRun } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { l7Key } from '../../collector/l7/tracker.ts';

const L7 = 'ringflow.l7.v1';
const SPANS = 'ringflow.spans.v1';
const S = 1_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const HOST = `outage-${RUN}`;

function l7(kind: 'REQUEST' | 'RESPONSE', at: bigint, boot: bigint, id = 1, path = '/across'): { key: string; value: Buffer } {
  const req = kind === 'REQUEST';
  const value = encodeRecord(schemaRegistry().byId('l7')!, {
    ts_ns: at - boot, end_ns: at + MS - boot, pid: 101, tgid: 101, uid: 1000, comm: 'load', cgroup_id: 1,
    conn_id: 1, role: 'CLIENT', transport: 'TCP', local_addr: '10.3.0.1', local_port: 43001, remote_addr: '10.3.0.2', remote_port: 8080,
    protocol: 'HTTP1', kind, stream_id: id, method: req ? 'GET' : null, path: req ? path : null, status: req ? null : 200,
    headers: { host: 'web' }, grpc_service: null, grpc_method: null, grpc_status: null,
    dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null,
    body_bytes: 0, truncated: false, host: HOST, boot_time_ns: boot,
  });
  return { key: l7Key('TCP', '10.3.0.1', 43001, '10.3.0.2', 8080), value };
}

let broker: Awaited<ReturnType<typeof ownBroker>> | undefined;
let proc: CliRun | undefined;

after(async () => {
  proc?.child.kill('SIGTERM');
  if (proc) await proc.exit;
  await broker?.stop();
});

/** A fresh producer per send: it may span a broker restart. */
async function send(brokers: string, messages: { key: string; value: Buffer }[]): Promise<void> {
  const kafka = new Kafka({ clientId: 'it-spans-outage', brokers: [brokers], logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({ topic: L7, messages });
  } finally {
    await producer.disconnect();
  }
}

test('a request waiting across a broker outage pairs with the response re-sent after it, not a timeout', { timeout: 180_000 }, async (t) => {
  broker = await ownBroker();
  const b = broker;
  const kafka = new Kafka({ clientId: 'it-spans-outage', brokers: [b.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, [L7, SPANS], 3);
  await admin.disconnect();
  proc = runCli(['process', '--brokers', b.brokers, '--window', '2s', '--lateness', '1s', '--span-timeout', '2s', '--partitions', '3', '--instance', `it-spans-outage-${RUN}`]);
  await proc.waitFor(/processing as/);
  await sleep(3000); // the stage is fetching

  const at = BigInt(Date.now()) * MS;
  const boot = at - 86_400n * S;
  await send(b.brokers, [l7('REQUEST', at, boot)]);
  await sleep(1500); // read and held by the stage (its deadline is at + 2 s; the clock passes it at + 7 s)
  const down = Date.now();
  await stopBroker({ stateDir: b.stateDir });
  await sleep(Math.max(0, 8000 - (Date.now() - down)));
  await startBroker({ stateDir: b.stateDir, port: b.port, controllerPort: b.controllerPort });
  const up = Date.now();
  // the stage reads again (the request, from its last commit) once its consumer is back
  await proc.waitFor(/spans stage: consumer back in its group/, 90_000);
  const back = Date.now();
  // then the collector's back-off (up to 5 s) before it re-sends what it held: here 4 s, past
  // the partition's lateness (1 s) and an idle tick, so a raise by the clock would come first
  await sleep(4000);
  await send(b.brokers, [l7('RESPONSE', at + 10n * MS, boot)]);
  t.diagnostic(`broker down ${((up - down) / 1000).toFixed(1)} s; the stage read again ${((back - up) / 1000).toFixed(1)} s after; the response sent ${((Date.now() - back) / 1000).toFixed(1)} s after that`);

  const mine = async (): Promise<Record<string, unknown>[]> => (await readTopic(b.brokers, SPANS)).map((r) => r.value).filter((v) => v.host === HOST);
  const show = (s: Record<string, unknown>): string => `${s.name as string} ${s.status as string} ${(s.attributes as Record<string, string>)['error.type'] ?? ''}`.trim();
  const waitSpans = async (n: number): Promise<Record<string, unknown>[]> => {
    const deadline = Date.now() + 60_000;
    let spans = await mine();
    while (spans.length < n && Date.now() < deadline) {
      await sleep(1000);
      spans = await mine();
    }
    await sleep(2000); // a duplicate or a stray timeout would show by now
    return mine();
  };
  assert.deepEqual((await waitSpans(1)).map(show), ['GET /across UNSET'], `processor log:\n${proc.stderr()}`);
  // the clock still times out what gets no answer after the outage (the tick was not left off)
  await send(b.brokers, [l7('REQUEST', BigInt(Date.now()) * MS, boot, 2, '/after')]);
  assert.deepEqual((await waitSpans(2)).map(show), ['GET /across UNSET', 'GET /after ERROR timeout'], `processor log:\n${proc.stderr()}`);
});
