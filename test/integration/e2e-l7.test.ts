/**
 * L7 end to end on real parts: `ringflow up --signals l7` (BPF on this kernel,
 * a Kafka broker, the processor's spans stage and RED metrics, the exporter)
 * and a real OpenTelemetry Collector writing what it receives to a file. Real
 * clients and servers (curl and Node's http against node:http, @grpc/grpc-js,
 * dig against dnsmasq) make known requests; the Collector's file must hold
 * exactly their spans: names, kinds, statuses, durations that contain the
 * handler's delay, the server span as the child of its client span, the
 * traceparent's trace joined, RED histograms with exact counts, and no secret.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { rootOrSkip, ownBroker, freePort, runCli, run, sleep, waitCommitted, REPO_ROOT, type CliRun } from '../support/integration.ts';
import { SPANS_TOPIC } from '../../processor/topics.ts';
import { DEFAULT_TRACES_GROUP_ID } from '../../exporter/service.ts';
import { startOtelcol, stopOtelcol, readOtlpFile } from '../../cli/otelcol.ts';

const DNS_ADDR = '127.0.0.54';
const SLOW_MS = 150;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const SECRETS = ['CURL-SECRET-TOKEN', 'CURL-SECRET-COOKIE', 'SERVER-SECRET-COOKIE', 'NODE-SECRET-TOKEN', 'GRPC-SECRET-TOKEN', 'query-secret-value'];

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  start: bigint;
  end: bigint;
  status: number;
  attrs: Record<string, string | number | boolean>;
  service: string;
}
const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
const val = (v: AnyValue) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue ?? v.doubleValue) as string | number | boolean;
const attrsOf = (a: { key: string; value: AnyValue }[] | undefined) => Object.fromEntries((a ?? []).map((x) => [x.key, val(x.value)]));

function spansIn(file: string): Span[] {
  const out: Span[] = [];
  for (const rs of readOtlpFile(file).traces as { resource: { attributes: { key: string; value: AnyValue }[] }; scopeSpans: { spans: Record<string, any>[] }[] }[]) {
    const service = String(attrsOf(rs.resource.attributes)['service.name']);
    for (const ss of rs.scopeSpans) {
      for (const s of ss.spans) {
        out.push({
          traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind,
          start: BigInt(s.startTimeUnixNano), end: BigInt(s.endTimeUnixNano), status: s.status?.code ?? 0, attrs: attrsOf(s.attributes), service,
        });
      }
    }
  }
  return out;
}

describe('L7 end to end: ringflow up --signals l7 -> OpenTelemetry Collector traces and RED metrics', { timeout: 300_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>> | undefined;
  let up: CliRun | undefined;
  let traffic: ChildProcess | undefined;
  let dnsmasq: ChildProcess | undefined;
  let stateDir = '';
  let outputFile = '';
  const host = `it-e2e-l7-${process.pid}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    k = await ownBroker();
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-e2e-l7-'));
    const grpcPort = await freePort();
    ({ outputFile } = await startOtelcol({ stateDir, grpcPort }));
    up = runCli(['up', '--brokers', k.brokers, '--host', host, '--signals', 'l7', '--window', '2s', '--lateness', '2s', '--stats-interval', '1s'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` },
    });
    await up.waitFor(/\[collect\] collecting l7/);
    await up.waitFor(/\[export\] exporting ringflow\.spans\.v1/, 90_000);
    dnsmasq = spawn('dnsmasq', [
      '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll', `--pid-file=${path.join(stateDir, 'dnsmasq.pid')}`,
      `--listen-address=${DNS_ADDR}`, '--bind-interfaces', '--port=53', '--local=/ringflow.test/', '--address=/svc.ringflow.test/10.1.2.3',
    ], { stdio: 'ignore' });
  });

  after(async () => {
    traffic?.kill('SIGTERM');
    dnsmasq?.kill('SIGTERM');
    if (up) {
      up.child.kill('SIGINT');
      await up.exit;
    }
    if (stateDir) await stopOtelcol({ stateDir }).catch(() => {});
    await k?.stop();
  });

  test('real requests become exact spans and RED metrics in the Collector', async (t) => {
    if (!rootOrSkip(t)) return;
    traffic = spawn(process.execPath, [path.join(REPO_ROOT, 'test/integration/l7/traffic.ts'), String(SLOW_MS)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: traffic.stdout! })[Symbol.asyncIterator]();
    const [httpPort, grpcPort] = ((await lines.next()).value as string).split(' ').slice(1).map(Number) as [number, number];
    const curl = (p: string, extra: string[] = []) =>
      run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Authorization: Bearer CURL-SECRET-TOKEN', '-H', 'Cookie: sid=CURL-SECRET-COOKIE', ...extra, `http://127.0.0.1:${httpPort}${p}`]);
    assert.equal((await curl('/users/42?token=query-secret-value', ['-H', `traceparent: 00-${TRACE_ID}-${PARENT_ID}-01`])).stdout, '200');
    // HTTP/1.0 and an explicit HTTP/1.1: network.protocol.version (node:http answers both with 'HTTP/1.1')
    assert.equal((await curl('/missing', ['--http1.0'])).stdout, '404');
    assert.equal((await curl('/boom', ['--http1.1'])).stdout, '500');
    assert.equal((await curl('/slow')).stdout, '200');
    traffic.stdin!.write('go\n');
    assert.equal((await lines.next()).value, 'done');
    assert.match((await run('dig', [`@${DNS_ADDR}`, 'svc.ringflow.test', 'A', '+tries=1', '+time=2'])).stdout, /10\.1\.2\.3/);
    assert.match((await run('dig', [`@${DNS_ADDR}`, 'nope.ringflow.test', 'AAAA', '+tries=1', '+time=2'])).stdout, /NXDOMAIN/);

    const onPort = (s: Span, port: number) => s.attrs['server.port'] === port || s.attrs['network.peer.port'] === port;
    const http = (ss: Span[]) => ss.filter((s) => onPort(s, httpPort) && s.attrs['http.request.method'] !== undefined);
    let spans: Span[] = [];
    const deadline = Date.now() + 120_000;
    for (;;) {
      spans = spansIn(outputFile);
      const h = http(spans);
      const g = spans.filter((s) => s.attrs['rpc.system'] === 'grpc' && onPort(s, grpcPort));
      const d = spans.filter((s) => String(s.attrs['dns.question.name'] ?? '').endsWith('.ringflow.test') && s.kind === CLIENT);
      if (h.length >= 14 && g.length >= 4 && d.length >= 2) break;
      if (Date.now() > deadline) {
        throw new Error(`timed out: ${h.length} HTTP, ${g.length} gRPC, ${d.length} DNS spans; ringflow up said:\n${up!.stderr().split('\n').slice(-60).join('\n')}`);
      }
      await sleep(1000);
    }
    // a duplicate (OTLP is at-least-once: a resend after a timeout) would show once the
    // exporter has committed every span there is now: it commits only after the backend
    // accepted; a fixed sleep can end before a late resend. (The processor's spans are
    // exactly once, and it commits L7 only up to its oldest unanswered request, which
    // other traffic on this host can hold back: its group is not waited for.)
    await waitCommitted(k!.brokers, DEFAULT_TRACES_GROUP_ID, SPANS_TOPIC);
    spans = spansIn(outputFile);

    // HTTP: 7 requests (4 from curl, 3 from Node's client), each one CLIENT and one SERVER span, none twice
    const h = http(spans);
    const count = (kind: number) => h.filter((s) => s.kind === kind).map((s) => s.name).sort();
    assert.deepEqual(count(SERVER), ['GET /boom', 'GET /missing', 'GET /slow', 'GET /users/{id}', 'GET /users/{id}', 'GET /users/{id}', 'GET /users/{id}']);
    assert.equal(count(CLIENT).length, 7, JSON.stringify(count(CLIENT)));
    assert.equal(new Set(h.map((s) => s.spanId)).size, h.length, 'unique span ids');

    // the server span is the child of its client span, in one trace; with a traceparent, that trace
    const byPath = (kind: number, p: string) => h.filter((s) => s.kind === kind && s.attrs['url.path'] === p);
    const [c42] = byPath(CLIENT, '/users/42');
    const [s42] = byPath(SERVER, '/users/42');
    assert.ok(c42 && s42, 'both sides of /users/42');
    assert.equal(c42.traceId, TRACE_ID, 'the client span joined the traceparent\'s trace');
    assert.equal(c42.parentSpanId, PARENT_ID);
    assert.equal(s42.traceId, TRACE_ID);
    assert.equal(s42.parentSpanId, c42.spanId, 'server span is the client span\'s child');
    for (const s of byPath(SERVER, '/boom')) {
      const c = byPath(CLIENT, '/boom')[0]!;
      assert.equal(s.parentSpanId, c.spanId);
      assert.equal(s.traceId, c.traceId);
    }

    // statuses: 500 is an error on both sides, 404 only for the client
    const status = (kind: number, p: string) => byPath(kind, p).map((s) => s.status);
    assert.deepEqual(status(SERVER, '/boom'), [ERROR]);
    assert.deepEqual(status(CLIENT, '/boom'), [ERROR]);
    assert.deepEqual(status(CLIENT, '/missing'), [ERROR]);
    assert.notEqual(status(SERVER, '/missing')[0], ERROR);
    assert.equal(byPath(SERVER, '/boom')[0]!.attrs['http.response.status_code'], 500);

    // network.protocol.version from the start lines: curl --http1.0's exchange is 1.0 on both
    // sides, every other request (curl's default, Node's client) 1.1
    const versions = (p: string) => [SERVER, CLIENT].map((kind) => byPath(kind, p).map((s) => s.attrs['network.protocol.version']));
    assert.deepEqual(versions('/missing'), [['1.0'], ['1.0']]);
    assert.deepEqual(versions('/boom'), [['1.1'], ['1.1']]);
    assert.deepEqual([...new Set(h.filter((s) => s.attrs['url.path'] !== '/missing').map((s) => s.attrs['network.protocol.version']))], ['1.1']);

    // durations contain the handler's known delay
    for (const kind of [SERVER, CLIENT]) {
      const s = byPath(kind, '/slow')[0]!;
      assert.ok(s.end - s.start >= BigInt(SLOW_MS) * 1_000_000n, `${kind}: ${s.end - s.start} ns`);
    }
    assert.equal(byPath(SERVER, '/slow')[0]!.service, 'traffic', 'service.name: the script node runs (l7/traffic.ts)');

    // gRPC: Echo OK, Fail NOT_FOUND (an error for the client only, per the conventions)
    const g = spans.filter((s) => s.attrs['rpc.system'] === 'grpc' && onPort(s, grpcPort));
    assert.deepEqual(g.map((s) => `${s.kind} ${s.name} ${s.attrs['rpc.grpc.status_code']}`).sort(), [
      `${SERVER} ringflow.test.Greeter/Echo 0`, `${SERVER} ringflow.test.Greeter/Fail 5`,
      `${CLIENT} ringflow.test.Greeter/Echo 0`, `${CLIENT} ringflow.test.Greeter/Fail 5`,
    ].sort());
    assert.equal(g.find((s) => s.kind === CLIENT && s.name.endsWith('/Fail'))!.status, ERROR);

    // DNS: dig's queries to dnsmasq, names and response codes (NXDOMAIN is a failed lookup: ERROR)
    const d = spans.filter((s) => String(s.attrs['dns.question.name'] ?? '').endsWith('.ringflow.test') && s.kind === CLIENT);
    assert.deepEqual(d.map((s) => [s.name, s.attrs['dns.question.name'], s.attrs['dns.response_code'], s.status]).sort(), [
      ['DNS A', 'svc.ringflow.test', 'NOERROR', 0],
      ['DNS AAAA', 'nope.ringflow.test', 'NXDOMAIN', ERROR],
    ]);
    assert.equal(d.find((s) => s.attrs['dns.response_code'] === 'NXDOMAIN')!.attrs['error.type'], 'NXDOMAIN');

    // RED metrics: server request durations per route, exact counts
    let red = 0;
    const redServices = new Set<string>();
    let redVersions: Record<string, number> = {};
    for (let i = 0; i < 30 && red < 7; i++) {
      red = 0;
      redVersions = {};
      for (const rm of readOtlpFile(outputFile).metrics as { resource: { attributes: { key: string; value: AnyValue }[] }; scopeMetrics: { metrics: Record<string, any>[] }[] }[]) {
        for (const sm of rm.scopeMetrics) {
          for (const m of sm.metrics) {
            if (m.name !== 'http.server.request.duration') continue;
            for (const dp of (m.exponentialHistogram ?? m.histogram)?.dataPoints ?? []) {
              // this Collector hears only this run's exporter; the route tells HTTP server spans, and
              // the Resource those of the traffic's server (ringflow up observes every process on the
              // host: other HTTP servers there, e.g. other tests', add their own requests)
              if (attrsOf(dp.attributes)['http.route'] === undefined) continue;
              if (attrsOf(rm.resource.attributes)['service.name'] !== 'traffic') continue;
              red += Number(dp.count);
              const v = String(attrsOf(dp.attributes)['network.protocol.version']);
              redVersions[v] = (redVersions[v] ?? 0) + Number(dp.count);
              // the observed service is the Resource, not a point attribute (issue 10)
              redServices.add(String(attrsOf(rm.resource.attributes)['service.name']));
              assert.equal(attrsOf(dp.attributes)['service.name'], undefined, 'service.name on the Resource only');
            }
          }
        }
      }
      if (red < 7) await sleep(1000);
    }
    assert.equal(red, 7, 'one server request duration per HTTP request');
    assert.deepEqual(redVersions, { '1.0': 1, '1.1': 6 }, 'network.protocol.version: a dimension of the RED metric');
    assert.deepEqual([...redServices], ['traffic'], 'RED metrics under the observed service\'s Resource');

    // no secret anywhere in what the backend received or in what ringflow printed
    const all = fs.readFileSync(outputFile, 'utf8') + up!.stderr() + up!.stdout();
    for (const s of SECRETS) assert.ok(!all.includes(s), `${s} leaked`);
  });
});
