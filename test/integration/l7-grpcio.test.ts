/**
 * L7 capture of a Python grpcio client and server (gRPC C-core's HTTP/2 and
 * HPACK, not grpc-js): bpf/l7.bpf.c on this kernel, the collector's parsers,
 * a real Kafka broker. C-core writes the connection preface, SETTINGS, the
 * HEADERS block and DATA in one sendmsg of ~28 iovecs; when the BPF side
 * walked only the first 16, the end of the HEADERS block was lost, HPACK
 * desynced and not one client-side request of grpcio was ever captured (soak
 * finding 1). Every unary call must show as one client and one server
 * request with its :path.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { rootOrSkip, testBrokers, readTopic, runCli, run, sleep, REPO_ROOT, type CliRun, type TopicRecord } from '../support/integration.ts';

const PY = '/usr/bin/python3';
const PEER = path.join(REPO_ROOT, 'test/soak/grpc-peer.py');
/** Unary calls, and calls per channel: several connections, so each one's first sendmsg (the 28 iovecs) is seen more than once. */
const CALLS = 30;
const PER_CHANNEL = 10;

type Msg = Record<string, unknown>;

describe('L7: a Python grpcio client and server, every call captured from both sides', { timeout: 180_000 }, () => {
  let brokers = '';
  let stopBrokers: () => Promise<void> = async () => {};
  let collector: CliRun | undefined;
  let server: ChildProcess | undefined;
  const host = `it-l7-grpcio-${process.pid}`;
  // this run's own service: every collector on the host sees every process
  const service = `rfgrpcio${process.pid}.Test`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    ({ brokers, stop: stopBrokers } = await testBrokers());
    collector = runCli(['collect', '--signals', 'l7', '--brokers', brokers, '--host', host, '--stats-interval', '1s']);
    await collector.waitFor(/collecting l7/);
  });

  after(async () => {
    server?.stdin?.end();
    server?.kill('SIGTERM');
    if (collector) {
      collector.child.kill('SIGINT');
      assert.equal(await collector.exit, 0, collector.stderr());
    }
    await stopBrokers();
  });

  test(`${CALLS} unary calls: ${CALLS} client and ${CALLS} server requests with the right :path`, async (t) => {
    if (!rootOrSkip(t)) return;
    server = spawn(PY, [PEER, 'server', service], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
    const port = Number(((await lines.next()).value as string).split(' ')[1]);
    assert.ok(port > 0, 'the grpcio server started (is python3-grpcio installed?)');
    const client = await run(PY, [PEER, 'client', service, String(port), String(CALLS), String(PER_CHANNEL)]);
    assert.equal(client.stdout.trim(), `ok ${CALLS}`, client.stderr);

    const want = `/${service}/Ping`;
    const ours = (rs: TopicRecord[]) => rs.map((r) => r.value as Msg).filter((m) => m.protocol === 'GRPC' && m.host === host && m.grpc_service === service);
    let msgs: Msg[] = [];
    const reqs = (role: string) => msgs.filter((m) => m.role === role && m.kind === 'REQUEST');
    for (let i = 0; i < 30; i++) {
      msgs = ours(await readTopic(brokers, 'ringflow.l7.v1'));
      if (reqs('CLIENT').length >= CALLS && reqs('SERVER').length >= CALLS) break;
      await sleep(1000);
    }
    for (const role of ['SERVER', 'CLIENT']) {
      const r = reqs(role);
      assert.equal(r.length, CALLS, `${role} requests: ${r.length} of ${CALLS}`);
      for (const m of r) {
        assert.equal(m.path, want, role);
        assert.equal(m.grpc_method, 'Ping', role);
        // by process, not comm: grpcio's C core writes from threads of its own
        // (seen as 'default-executo'), like dig's isc-net threads
        if (role === 'SERVER') assert.equal(Number(m.tgid), server!.pid, role);
        else assert.notEqual(Number(m.tgid), server!.pid, role);
        // service.name of a Python process: the script it runs (grpc-peer.py), not python3.x (issue 10)
        assert.equal((m as { process_name?: string }).process_name, 'grpc-peer', role);
      }
      const res = msgs.filter((m) => m.role === role && m.kind === 'RESPONSE');
      assert.equal(res.length, CALLS, `${role} responses`);
      assert.ok(res.every((m) => m.grpc_status === 0), `${role} statuses: ${res.map((m) => m.grpc_status).join(',')}`);
    }
    assert.equal(new Set(reqs('CLIENT').map((m) => m.conn_id)).size, CALLS / PER_CHANNEL, 'one connection per channel');
  });
});
