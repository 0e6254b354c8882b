/**
 * True timestamps on real parts (issue 10): `ringflow up --signals l7` (BPF
 * on this kernel, a Kafka broker of its own, the spans stage) while
 * concurrent clients and servers on this one host exchange requests:
 * node:http on 4 keep-alive connections and on a new connection per request,
 * grpc-js unary calls interleaved on one HTTP/2 connection, and several dig
 * lookups against dnsmasq at once. On ringflow.spans.v1: every client span
 * has exactly one server span as its child (100% linked), every server span
 * lies inside its client span, and the handlers' known delay lies inside
 * the server span. Spans are stamped from the right syscall edges
 * (messageEdgeNs, collector/l7/tracker.ts); stamped at the exits they were
 * not all linked (a send returns after its peer has read the bytes).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { rootOrSkip, ownBroker, runCli, run, sleep, readTopic, REPO_ROOT, type CliRun } from '../support/integration.ts';
import { SPANS_TOPIC } from '../../processor/topics.ts';

/** Not 127.0.0.54 (e2e-l7's): both may run at once on one host. */
const DNS_ADDR = '127.0.0.73';
const SLOW_MS = 50;
const HTTP_N = 24; // concurrent-traffic.ts: 12 keep-alive + 12 new connections
const GRPC_N = 8;
const DNS_N = 6;
const MS = 1_000_000n;

interface SpanRec { trace_id: string; span_id: string; parent_span_id: string | null; name: string; kind: string; host: string; attributes: Record<string, string>; start_ns: bigint; end_ns: bigint }

describe('L7 true timestamps: concurrent exchanges on one host, 100% linked, server inside client', { timeout: 300_000 }, () => {
  let k: Awaited<ReturnType<typeof ownBroker>> | undefined;
  let up: CliRun | undefined;
  let traffic: ChildProcess | undefined;
  let dnsmasq: ChildProcess | undefined;
  let stateDir = '';
  const host = `it-l7-linking-${process.pid}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    k = await ownBroker();
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-l7-linking-'));
    // no OTLP backend: the spans are read from Kafka (the exporter waits, saying so once)
    up = runCli(['up', '--brokers', k.brokers, '--host', host, '--signals', 'l7', '--window', '2s', '--lateness', '2s', '--stats-interval', '1s'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:1' },
    });
    await up.waitFor(/\[collect\] collecting l7/);
    await up.waitFor(/\[process\] processing as/, 90_000);
    dnsmasq = spawn('dnsmasq', [
      '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll', `--pid-file=${path.join(stateDir, 'dnsmasq.pid')}`,
      `--listen-address=${DNS_ADDR}`, '--bind-interfaces', '--port=53', '--address=/h3.test/10.9.8.7',
    ], { stdio: 'ignore' });
  });

  after(async () => {
    traffic?.stdin?.write('exit\n');
    traffic?.kill('SIGTERM');
    dnsmasq?.kill('SIGTERM');
    if (up) {
      up.child.kill('SIGINT');
      await up.exit;
    }
    await k?.stop();
    if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  });

  test('every client span has its server span as child, inside it, and the handler delay inside that', async (t) => {
    if (!rootOrSkip(t)) return;
    traffic = spawn(process.execPath, [path.join(REPO_ROOT, 'test/integration/l7/concurrent-traffic.ts'), String(SLOW_MS)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: traffic.stdout! })[Symbol.asyncIterator]();
    const ready = (await lines.next()).value as string;
    assert.match(ready, /^ready \d+ \d+$/);
    // dnsmasq is up by now (it was started long before); all clients at once
    traffic.stdin!.write('go\n');
    const digs = await Promise.all(Array.from({ length: DNS_N }, (_, i) =>
      run('dig', [`@${DNS_ADDR}`, `n${i}.h3.test`, 'A', '+tries=1', '+time=3'])));
    assert.equal((await lines.next()).value, `done ${HTTP_N} ${GRPC_N}`, 'every request answered');
    for (const d of digs) assert.match(d.stdout, /10\.9\.8\.7/, 'dnsmasq answered');

    const kindOf = (s: SpanRec): 'http' | 'grpc' | 'dns' | null => {
      if ((s.attributes['url.path'] ?? '').startsWith('/h3/')) return 'http';
      if (s.name.startsWith('ringflow.h3.Greeter/')) return 'grpc';
      if ((s.attributes['dns.question.name'] ?? '').endsWith('.h3.test')) return 'dns';
      return null;
    };
    const want = { http: HTTP_N, grpc: GRPC_N, dns: DNS_N };
    let spans: SpanRec[] = [];
    const counts = () => {
      const c: Record<string, number> = {};
      for (const s of spans) c[`${kindOf(s)} ${s.kind}`] = (c[`${kindOf(s)} ${s.kind}`] ?? 0) + 1;
      return c;
    };
    const complete = () => Object.entries(want).every(([p, n]) => (counts()[`${p} CLIENT`] ?? 0) >= n && (counts()[`${p} SERVER`] ?? 0) >= n);
    const read = async () => (await readTopic(k!.brokers, SPANS_TOPIC)).map((r) => r.value as unknown as SpanRec).filter((s) => s.host === host && kindOf(s) !== null);
    const deadline = Date.now() + 120_000;
    for (;;) {
      // the spans topic may still be getting its leader: asked again below
      spans = await read().catch(() => spans);
      if (complete()) break;
      if (Date.now() > deadline) throw new Error(`timed out: ${JSON.stringify(counts())}; ringflow up said:\n${up!.stderr().split('\n').slice(-40).join('\n')}`);
      await sleep(1000);
    }
    await sleep(3000); // a span emitted twice, or a late unlinked one, would show by now
    spans = await read();
    assert.deepEqual(counts(), {
      'http CLIENT': HTTP_N, 'http SERVER': HTTP_N, 'grpc CLIENT': GRPC_N, 'grpc SERVER': GRPC_N, 'dns CLIENT': DNS_N, 'dns SERVER': DNS_N,
    }, 'one client and one server span per exchange');

    const bySpanId = new Map(spans.map((s) => [s.span_id, s]));
    const problems: string[] = [];
    const childOf = new Map<string, SpanRec[]>();
    for (const s of spans.filter((x) => x.kind === 'SERVER')) {
      const c = s.parent_span_id === null ? undefined : bySpanId.get(s.parent_span_id);
      const what = `${kindOf(s)} ${s.name} ${s.attributes['url.path'] ?? s.attributes['dns.question.name'] ?? ''}`;
      if (!c || c.kind !== 'CLIENT') {
        problems.push(`${what}: not linked to a client span`);
        continue;
      }
      childOf.set(c.span_id, [...(childOf.get(c.span_id) ?? []), s]);
      if (c.trace_id !== s.trace_id) problems.push(`${what}: another trace than its parent`);
      if (kindOf(c) !== kindOf(s) || (c.attributes['url.path'] ?? '') !== (s.attributes['url.path'] ?? '')) problems.push(`${what}: linked to ${c.name} ${c.attributes['url.path'] ?? ''}`);
      // inside by construction: no slack
      if (s.start_ns < c.start_ns || s.end_ns > c.end_ns) {
        problems.push(`${what}: server [${s.start_ns}, ${s.end_ns}] not inside client [${c.start_ns}, ${c.end_ns}] (start ${s.start_ns - c.start_ns} ns, end ${c.end_ns - s.end_ns} ns)`);
      }
      const slow = kindOf(s) === 'grpc' || (s.attributes['url.path'] ?? '').startsWith('/h3/slow/');
      if (slow && s.end_ns - s.start_ns < BigInt(SLOW_MS) * MS) problems.push(`${what}: server span ${s.end_ns - s.start_ns} ns < the handler's ${SLOW_MS} ms`);
    }
    for (const c of spans.filter((x) => x.kind === 'CLIENT')) {
      const n = childOf.get(c.span_id)?.length ?? 0;
      if (n !== 1) problems.push(`${kindOf(c)} client ${c.name} ${c.attributes['url.path'] ?? c.attributes['dns.question.name'] ?? ''}: ${n} server children`);
    }
    assert.deepEqual(problems, [], `${problems.length} problems among ${spans.length} spans`);
  });
});
