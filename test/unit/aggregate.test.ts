/**
 * What is aggregated (the METRICS table), the per-partition WindowAggregator
 * (exact counts, sums and histograms per closed window, late events, restore)
 * and the second merge stage (seriesKey, mergePoints).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { METRICS, rpcMetrics, WindowAggregator, mergePoints, seriesKey, spanEvent, type SeriesPoint, type TopicEvent } from '../../processor/aggregate.ts';
import { ExpHistogram } from '../../processor/histogram.ts';
import { replayWithCrashes } from '../support/replay.ts';

const S = 1_000_000_000n;
const BOOT = 1_764_000_000n * S; // boot wall time: a multiple of 10 s
const base = { cpu: 0, pid: 10n, tgid: 10n, uid: 0n, cgroup_id: 1n, boot_time_ns: BOOT };

const runq = (host: string, comm: string, tsNs: bigint, latencyNs: bigint): TopicEvent => ({
  topic: 'ringflow.sched.runqlat.v1',
  value: { ...base, host, comm, ts_ns: tsNs, latency_ns: latencyNs, prev_pid: 0n, kind: 'WAKEUP' } as TopicEvent['value'],
});
const cswitch = (host: string, comm: string, tsNs: bigint, offNs: bigint, voluntary: number): TopicEvent => ({
  topic: 'ringflow.sched.cswitch.v1',
  value: { ...base, host, comm, ts_ns: tsNs, off_cpu_ns: offNs, prev_pid: 0n, voluntary } as TopicEvent['value'],
});
const blockIo = (op: string, bytes: bigint, latencyNs: bigint): TopicEvent => ({
  topic: 'ringflow.block.io.v1',
  value: { ...base, host: 'h1', comm: 'dd', ts_ns: 1n * S, latency_ns: latencyNs, sector: 0n, bytes, dev_major: 259n, dev_minor: 1n, queue_depth: 1n, error: 0, op } as TopicEvent['value'],
});
const tcp = { saddr: '10.0.0.1', daddr: '10.0.0.2', sport: 40000, dport: 443, family: 2 };

/** A decoded ringflow.spans.v1 record (schemas/spans.avsc) as the processor's stage 2 sees it, ending 1 s after BOOT. */
function span(kind: string, protocol: string, durNs: bigint, attributes: Record<string, string>, status = 'UNSET'): TopicEvent {
  const end = BOOT + 1n * S;
  const rec = {
    trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', parent_span_id: null, trace_state: null, trace_flags: 1,
    name: 'x', kind, start_ns: end - durNs, end_ns: end, status, status_message: null,
    attributes: { 'host.name': 'h1', 'service.name': 'api', 'network.peer.address': '10.0.0.9', 'process.pid': '7', ...attributes },
    service_name: 'api', host: 'h1', protocol,
  };
  return { topic: 'ringflow.spans.v1', value: spanEvent(rec) };
}

/** Spans in, RED histograms out: requests = the count, errors = the count where error.type is set. */
function spanCases(): { name: string; ev: TopicEvent; want: [string, [string, string][], number][] }[] {
  const hs: [string, string][] = [['host.name', 'h1'], ['service.name', 'api']];
  const sorted = (a: [string, string][]): [string, string][] => [...a, ...hs].sort(([x], [y]) => (x < y ? -1 : 1));
  return [
    {
      name: 'HTTP server span',
      ev: span('SERVER', 'HTTP1', 25_000_000n, { 'http.request.method': 'GET', 'http.route': '/users/{id}', 'http.response.status_code': '200', 'url.path': '/users/42', 'url.scheme': 'http', 'client.address': '10.0.0.9', 'server.port': '8080' }),
      want: [['http.server.request.duration', sorted([['http.request.method', 'GET'], ['http.response.status_code', '200'], ['http.route', '/users/{id}'], ['url.scheme', 'http']]), 0.025]],
    },
    {
      name: 'HTTP/2 server error: error.type',
      ev: span('SERVER', 'HTTP2', 1_000_000n, { 'http.request.method': 'POST', 'http.route': '/orders', 'http.response.status_code': '503', 'error.type': '503', 'network.protocol.version': '2', 'url.scheme': 'http' }, 'ERROR'),
      want: [['http.server.request.duration', sorted([['error.type', '503'], ['http.request.method', 'POST'], ['http.response.status_code', '503'], ['http.route', '/orders'], ['network.protocol.version', '2'], ['url.scheme', 'http']]), 0.001]],
    },
    {
      name: 'HTTP client span',
      ev: span('CLIENT', 'HTTP1', 30_000_000n, { 'http.request.method': 'GET', 'url.template': '/users/{id}', 'url.full': 'http://users:8080/users/42', 'http.response.status_code': '404', 'error.type': '404', 'server.address': 'users', 'server.port': '8080' }, 'ERROR'),
      want: [['http.client.request.duration', sorted([['error.type', '404'], ['http.request.method', 'GET'], ['http.response.status_code', '404'], ['server.address', 'users'], ['server.port', '8080'], ['url.template', '/users/{id}']]), 0.03]],
    },
    {
      name: 'HTTP client timeout: no status code, error.type=timeout',
      ev: span('CLIENT', 'HTTP1', 30n * S, { 'http.request.method': 'GET', 'url.template': '/slow', 'error.type': 'timeout', 'server.address': '10.0.0.2', 'server.port': '80' }, 'ERROR'),
      want: [['http.client.request.duration', sorted([['error.type', 'timeout'], ['http.request.method', 'GET'], ['server.address', '10.0.0.2'], ['server.port', '80'], ['url.template', '/slow']]), 30]],
    },
    {
      name: 'HTTP response missed by the capture: no duration, no metric',
      ev: span('SERVER', 'HTTP1', 1000n, { 'http.request.method': 'GET', 'http.route': '/', 'ringflow.response.missed': 'true' }),
      want: [],
    },
    {
      name: 'HTTP span of unknown role (INTERNAL): no metric',
      ev: span('INTERNAL', 'HTTP1', 1000n, { 'http.request.method': 'GET' }),
      want: [],
    },
    {
      name: 'gRPC server error',
      ev: span('SERVER', 'GRPC', 2_500_000n, { 'rpc.system': 'grpc', 'rpc.service': 'helloworld.Greeter', 'rpc.method': 'SayHello', 'rpc.grpc.status_code': '13', 'error.type': 'INTERNAL', 'server.address': '10.0.0.1', 'server.port': '50051', 'network.protocol.version': '2' }, 'ERROR'),
      want: [['rpc.server.call.duration', sorted([['error.type', 'INTERNAL'], ['rpc.method', 'helloworld.Greeter/SayHello'], ['rpc.response.status_code', 'INTERNAL'], ['rpc.system.name', 'grpc'], ['server.address', '10.0.0.1'], ['server.port', '50051']]), 0.0025]],
    },
    {
      name: 'gRPC client ok',
      ev: span('CLIENT', 'GRPC', 4_000_000n, { 'rpc.system': 'grpc', 'rpc.service': 'helloworld.Greeter', 'rpc.method': 'SayHello', 'rpc.grpc.status_code': '0', 'server.address': 'greeter', 'server.port': '50051' }),
      want: [['rpc.client.call.duration', sorted([['rpc.method', 'helloworld.Greeter/SayHello'], ['rpc.response.status_code', 'OK'], ['rpc.system.name', 'grpc'], ['server.address', 'greeter'], ['server.port', '50051']]), 0.004]],
    },
    {
      name: 'DNS client lookup',
      ev: span('CLIENT', 'DNS', 800_000n, { 'dns.question.name': 'example.com', 'dns.question.type': 'A', 'dns.response_code': 'NOERROR', 'server.address': '10.0.0.53', 'server.port': '53' }),
      want: [['dns.lookup.duration', sorted([['dns.question.name', 'example.com']]), 0.0008]],
    },
    {
      name: 'DNS SERVFAIL',
      ev: span('CLIENT', 'DNS', 1_000_000n, { 'dns.question.name': 'bad.example', 'dns.response_code': 'SERVFAIL', 'error.type': 'SERVFAIL' }, 'ERROR'),
      want: [['dns.lookup.duration', sorted([['dns.question.name', 'bad.example'], ['error.type', 'SERVFAIL']]), 0.001]],
    },
    {
      name: 'DNS NXDOMAIN: a failed lookup, error.type NXDOMAIN',
      ev: span('CLIENT', 'DNS', 1_000_000n, { 'dns.question.name': 'nope.example', 'dns.response_code': 'NXDOMAIN', 'error.type': 'NXDOMAIN' }, 'ERROR'),
      want: [['dns.lookup.duration', sorted([['dns.question.name', 'nope.example'], ['error.type', 'NXDOMAIN']]), 0.001]],
    },
    {
      name: 'DNS seen from the server (a resolver): not a lookup',
      ev: span('SERVER', 'DNS', 1_000_000n, { 'dns.question.name': 'example.com' }),
      want: [],
    },
  ];
}

const points = (ps: readonly SeriesPoint[]): string[] => ps.map((p) => `${p.name} ${p.attributes.map(([k, v]) => `${k}=${v}`).join(',')}`);

test('aggregate: the METRICS table (names, units, kinds, sorted dimensions per topic)', () => {
  const want: [string, string, string, string, string[]][] = [
    ['ringflow.sched.runqlat.v1', 'ringflow.sched.runqueue.latency', 's', 'histogram', ['host.name', 'process.command']],
    ['ringflow.sched.cswitch.v1', 'ringflow.sched.offcpu.duration', 's', 'histogram', ['host.name', 'process.command']],
    ['ringflow.sched.cswitch.v1', 'ringflow.sched.context_switches', '{switch}', 'sum', ['host.name', 'process.command', 'ringflow.switch.voluntary']],
    ['ringflow.block.io.v1', 'ringflow.block.io.latency', 's', 'histogram', ['disk.io.direction', 'host.name', 'process.command', 'ringflow.block.op', 'system.device']],
    ['ringflow.block.io.v1', 'ringflow.block.io.size', 'By', 'sum', ['disk.io.direction', 'host.name', 'process.command', 'ringflow.block.op', 'system.device']],
    ['ringflow.tcp.connect.v1', 'ringflow.tcp.connect.duration', 's', 'histogram', ['host.name', 'process.command', 'server.address', 'server.port']],
    ['ringflow.tcp.retransmit.v1', 'ringflow.tcp.retransmits', '{segment}', 'sum', ['host.name', 'ringflow.tcp.state']],
    ['ringflow.tcp.drop.v1', 'ringflow.tcp.drops', '{segment}', 'sum', ['host.name', 'ringflow.tcp.drop.reason']],
    ['ringflow.fs.io.v1', 'ringflow.fs.io.duration', 's', 'histogram', ['host.name', 'process.command', 'ringflow.fs.op', 'ringflow.fs.path.prefix', 'ringflow.fs.syscall', 'system.filesystem.type']],
    ['ringflow.fs.io.v1', 'ringflow.fs.io.size', 'By', 'sum', ['host.name', 'process.command', 'ringflow.fs.op', 'ringflow.fs.path.prefix', 'ringflow.fs.syscall', 'system.filesystem.type']],
    ['ringflow.spans.v1', 'http.server.request.duration', 's', 'histogram', ['container.id', 'error.type', 'host.name', 'http.request.method', 'http.response.status_code', 'http.route', 'network.protocol.version', 'service.name', 'url.scheme']],
    ['ringflow.spans.v1', 'http.client.request.duration', 's', 'histogram', ['container.id', 'error.type', 'host.name', 'http.request.method', 'http.response.status_code', 'network.protocol.version', 'server.address', 'server.port', 'service.name', 'url.template']],
    ['ringflow.spans.v1', 'rpc.server.call.duration', 's', 'histogram', ['container.id', 'error.type', 'host.name', 'rpc.method', 'rpc.response.status_code', 'rpc.system.name', 'server.address', 'server.port', 'service.name']],
    ['ringflow.spans.v1', 'rpc.client.call.duration', 's', 'histogram', ['container.id', 'error.type', 'host.name', 'rpc.method', 'rpc.response.status_code', 'rpc.system.name', 'server.address', 'server.port', 'service.name']],
    ['ringflow.spans.v1', 'dns.lookup.duration', 's', 'histogram', ['container.id', 'dns.question.name', 'error.type', 'host.name', 'service.name']],
  ];
  assert.deepEqual(METRICS.map((m) => [m.topic, m.name, m.unit, m.kind, m.dimensions.map((d) => d.key)]), want);
  for (const m of METRICS) assert.deepEqual(m.dimensions.map((d) => d.key), [...m.dimensions.map((d) => d.key)].sort(), m.name);
});

test('aggregate: each topic becomes its metrics, values and attributes (table)', () => {
  const cases: { name: string; ev: TopicEvent; want: [string, [string, string][], number][] }[] = [
    {
      name: 'runqlat',
      ev: runq('h1', 'nginx', 1n * S, 1_500_000n),
      want: [['ringflow.sched.runqueue.latency', [['host.name', 'h1'], ['process.command', 'nginx']], 0.0015]],
    },
    {
      name: 'cswitch voluntary',
      ev: cswitch('h1', 'java', 1n * S, 2_000_000_000n, 1),
      want: [
        ['ringflow.sched.offcpu.duration', [['host.name', 'h1'], ['process.command', 'java']], 2],
        ['ringflow.sched.context_switches', [['host.name', 'h1'], ['process.command', 'java'], ['ringflow.switch.voluntary', 'true']], 1],
      ],
    },
    {
      name: 'cswitch preempted',
      ev: cswitch('h1', 'java', 1n * S, 1000n, 0),
      want: [
        ['ringflow.sched.offcpu.duration', [['host.name', 'h1'], ['process.command', 'java']], 1e-6],
        ['ringflow.sched.context_switches', [['host.name', 'h1'], ['process.command', 'java'], ['ringflow.switch.voluntary', 'false']], 1],
      ],
    },
    {
      name: 'block read',
      ev: blockIo('READ', 4096n, 250_000n),
      want: [
        ['ringflow.block.io.latency', [['disk.io.direction', 'read'], ['host.name', 'h1'], ['process.command', 'dd'], ['system.device', '259:1']], 0.00025],
        ['ringflow.block.io.size', [['disk.io.direction', 'read'], ['host.name', 'h1'], ['process.command', 'dd'], ['system.device', '259:1']], 4096],
      ],
    },
    {
      name: 'block flush: no direction, ringflow.block.op instead',
      ev: blockIo('FLUSH', 0n, 3_000_000n),
      want: [
        ['ringflow.block.io.latency', [['host.name', 'h1'], ['process.command', 'dd'], ['ringflow.block.op', 'flush'], ['system.device', '259:1']], 0.003],
        ['ringflow.block.io.size', [['host.name', 'h1'], ['process.command', 'dd'], ['ringflow.block.op', 'flush'], ['system.device', '259:1']], 0],
      ],
    },
    {
      name: 'tcp connect',
      ev: { topic: 'ringflow.tcp.connect.v1', value: { ...base, ...tcp, host: 'h2', comm: 'curl', ts_ns: S, state: 'ESTABLISHED', latency_ns: 120_000n } as TopicEvent['value'] },
      want: [['ringflow.tcp.connect.duration', [['host.name', 'h2'], ['process.command', 'curl'], ['server.address', '10.0.0.2'], ['server.port', '443']], 0.00012]],
    },
    {
      name: 'tcp retransmit',
      ev: { topic: 'ringflow.tcp.retransmit.v1', value: { ...base, ...tcp, host: 'h2', comm: 'x', ts_ns: S, state: 'ESTABLISHED' } as TopicEvent['value'] },
      want: [['ringflow.tcp.retransmits', [['host.name', 'h2'], ['ringflow.tcp.state', 'established']], 1]],
    },
    {
      name: 'tcp drop',
      ev: { topic: 'ringflow.tcp.drop.v1', value: { ...base, ...tcp, host: 'h2', comm: 'x', ts_ns: S, state: 'UNKNOWN', reason: 2n, reason_name: 'NO_SOCKET' } as TopicEvent['value'] },
      want: [['ringflow.tcp.drops', [['host.name', 'h2'], ['ringflow.tcp.drop.reason', 'NO_SOCKET']], 1]],
    },
  ];
  cases.push({
    name: 'tcp connect to an IPv4-mapped peer: server.address as IPv4',
    ev: { topic: 'ringflow.tcp.connect.v1', value: { ...base, ...tcp, daddr: '::ffff:10.0.0.2', family: 10, host: 'h2', comm: 'curl', ts_ns: S, state: 'ESTABLISHED', latency_ns: 120_000n } as TopicEvent['value'] },
    want: [['ringflow.tcp.connect.duration', [['host.name', 'h2'], ['process.command', 'curl'], ['server.address', '10.0.0.2'], ['server.port', '443']], 0.00012]],
  });
  for (const c of [...cases, ...spanCases()]) {
    const a = new WindowAggregator();
    assert.equal(a.add(c.ev), 'ok', c.name);
    const got = a.advanceTo(BOOT + 100n * S);
    assert.deepEqual(
      got.map((p) => [p.name, p.attributes, p.kind === 'histogram' ? p.histogram!.sum : p.sum]),
      c.want,
      c.name,
    );
    for (const p of got) {
      assert.deepEqual([p.windowStartNs, p.windowEndNs, p.count, p.lateEvents], [BOOT, BOOT + 10n * S, 1, 0], c.name);
      if (p.kind === 'histogram') assert.deepEqual([p.histogram!.count, p.histogram!.min, p.histogram!.max], [1, p.histogram!.sum, p.histogram!.sum]);
    }
  }
});

test('aggregate: windows hold exact counts, sums and histograms; late events are counted, not merged', () => {
  const a = new WindowAggregator(); // 10 s windows, 5 s lateness
  const lat = [1_000n, 2_000n, 4_000n, 1_000_000n]; // ns
  const results: string[] = [];
  // window [0, 10): nginx x4, redis x1; window [10, 20): nginx x1
  for (const [i, l] of lat.entries()) results.push(a.add(runq('h1', 'nginx', BigInt(i + 1) * S, l)));
  results.push(a.add(runq('h1', 'redis', 9n * S, 3_000n)));
  results.push(a.add(runq('h1', 'nginx', 12n * S, 5_000n)));
  results.push(a.add(runq('h1', 'nginx', 8n * S, 6_000n))); // 4 s behind: still in [0, 10)
  assert.deepEqual(a.advance(), []);
  results.push(a.add(runq('h1', 'nginx', 16n * S, 7_000n))); // watermark 11 s: [0, 10) closed
  results.push(a.add(runq('h1', 'redis', 9n * S, 1n))); // late: counted in [10, 20)
  results.push(a.add({ topic: 'ringflow.tcp.accept.v1', value: runq('h1', 'x', 16n * S, 1n).value })); // no metric
  assert.deepEqual(results, ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'late', 'skipped']);
  assert.deepEqual(a.counters, { events: 8, late: 1, skipped: 1, invalid: 0 });

  const first = a.advance();
  assert.deepEqual(points(first), ['ringflow.sched.runqueue.latency host.name=h1,process.command=nginx', 'ringflow.sched.runqueue.latency host.name=h1,process.command=redis']);
  const nginx = first[0]!;
  const h = new ExpHistogram();
  for (const l of [...lat, 6_000n]) h.record(Number(l) / 1e9);
  assert.deepEqual(nginx.histogram, h.toJSON());
  assert.deepEqual([nginx.count, nginx.lateEvents, nginx.windowStartNs, nginx.windowEndNs], [5, 0, BOOT, BOOT + 10n * S]);
  assert.deepEqual([first[1]!.count, first[1]!.histogram!.max], [1, 3e-6]);

  const second = a.advanceTo(BOOT + 100n * S);
  assert.deepEqual(points(second), ['ringflow.sched.runqueue.latency host.name=h1,process.command=nginx', 'ringflow.sched.runqueue.latency host.name=h1,process.command=redis']);
  assert.deepEqual(second.map((p) => [p.windowStartNs, p.count, p.lateEvents, p.histogram!.count]), [
    [BOOT + 10n * S, 2, 0, 2],
    [BOOT + 10n * S, 0, 1, 0], // redis: only the late event
  ]);
});

test('aggregate: sums and invalid values', () => {
  const a = new WindowAggregator({ sizeMs: 2000, latenessMs: 0 });
  for (const v of [1, 1, 0, 1]) a.add(cswitch('h1', 'java', S / 2n, 10n, v));
  a.add(blockIo('WRITE', 4096n, 1n));
  a.add(blockIo('WRITE', 8192n, 1n));
  a.add(cswitch('h1', 'java', S / 2n, -5n, 1)); // negative duration: the histogram rejects it, the switch still counts
  const ps = a.advanceTo(BOOT + 10n * S);
  const sums = ps.filter((p) => p.kind === 'sum').map((p) => [p.name, p.attributes.at(-1)![1], p.sum, p.count]);
  assert.deepEqual(sums, [
    ['ringflow.sched.context_switches', 'false', 1, 1],
    ['ringflow.sched.context_switches', 'true', 4, 4],
    ['ringflow.block.io.size', '259:1', 12288, 2],
  ]);
  assert.equal(a.counters.invalid, 1);
  assert.equal(ps.find((p) => p.name === 'ringflow.sched.offcpu.duration')!.count, 4);
});

/** A deterministic stream for one partition: several hosts, comms and windows, some out of order and late. */
function stream(seed: number, n: number): TopicEvent[] {
  let x = seed;
  const rnd = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const out: TopicEvent[] = [];
  for (let i = 0; i < n; i++) {
    const ts = BigInt(i) * 50_000_000n - BigInt(Math.floor(rnd() * 8e9)) + 10n * S;
    const host = `h${Math.floor(rnd() * 3)}`;
    const comm = `c${Math.floor(rnd() * 4)}`;
    if (rnd() < 0.7) out.push(runq(host, comm, ts, BigInt(Math.floor(1e3 * 1e6 ** rnd()))));
    else out.push(cswitch(host, comm, ts, BigInt(Math.floor(1e3 * 1e6 ** rnd())), rnd() < 0.5 ? 1 : 0));
  }
  return out;
}

test('aggregate: state() / restore() mid-stream gives the same points as an uninterrupted run', () => {
  const events = stream(77, 3000);
  const run = (cut: number | null): SeriesPoint[] => {
    let a = new WindowAggregator({ sizeMs: 5000, latenessMs: 2000 });
    const out: SeriesPoint[] = [];
    events.forEach((e, i) => {
      if (i === cut) a = WindowAggregator.restore(JSON.parse(JSON.stringify(a.state())));
      a.add(e);
      if (i % 100 === 99) out.push(...a.advance());
    });
    out.push(...a.advanceTo(BOOT + 10_000n * S));
    return out;
  };
  const whole = run(null);
  assert.ok(whole.some((p) => p.lateEvents > 0), 'the stream has late events');
  assert.ok(new Set(whole.map((p) => p.windowStartNs)).size > 10, 'the stream spans many windows');
  for (const cut of [1, 250, 1777, 2999]) assert.deepEqual(run(cut), whole, `restored at ${cut}`);
});

test('aggregate: points of one series from several partitions merge (mergePoints) to the single-partition result', () => {
  const events = stream(5, 2000);
  // in order, so no event is late in either layout
  events.sort((p, q) => Number(p.value.ts_ns - q.value.ts_ns));
  const single = new WindowAggregator();
  for (const e of events) single.add(e);
  const want = single.advanceTo(BOOT + 10_000n * S);
  const parts = [new WindowAggregator(), new WindowAggregator(), new WindowAggregator()];
  events.forEach((e, i) => parts[(i * 7) % 3]!.add(e));
  const merged = new Map<string, SeriesPoint>();
  for (const p of parts.flatMap((a) => a.advanceTo(BOOT + 10_000n * S)).reverse()) {
    const k = seriesKey(p);
    const prev = merged.get(k);
    merged.set(k, prev ? mergePoints(prev, p) : p);
  }
  const got = [...merged.values()].sort((p, q) => (seriesKey(p) < seriesKey(q) ? -1 : 1));
  const sorted = [...want].sort((p, q) => (seriesKey(p) < seriesKey(q) ? -1 : 1));
  const strip = (p: SeriesPoint): unknown => ({ ...p, histogram: p.histogram && { ...p.histogram, sum: Math.round(p.histogram.sum * 1e9) } });
  assert.deepEqual(got.map(strip), sorted.map(strip));
});

test('aggregate: seriesKey is stable and distinguishes name, window and attributes; mergePoints checks them', () => {
  const p: SeriesPoint = {
    name: 'ringflow.tcp.drops', unit: '{segment}', kind: 'sum', windowStartNs: 10n, windowEndNs: 20n,
    attributes: [['host.name', 'a'], ['ringflow.tcp.drop.reason', 'X']], count: 2, sum: 2, lateEvents: 1,
  };
  assert.equal(seriesKey(p), '["ringflow.tcp.drops","10","20",[["host.name","a"],["ringflow.tcp.drop.reason","X"]]]');
  const variants: SeriesPoint[] = [
    { ...p, name: 'ringflow.tcp.retransmits' },
    { ...p, windowStartNs: 0n },
    { ...p, attributes: [['host.name', 'a'], ['ringflow.tcp.drop.reason', 'Y']] },
    { ...p, attributes: [['host.name', 'a,ringflow.tcp.drop.reason=X']] },
  ];
  for (const v of variants) {
    assert.notEqual(seriesKey(v), seriesKey(p));
    assert.throws(() => mergePoints(p, v));
  }
  assert.deepEqual(mergePoints(p, { ...p, count: 3, sum: 5, lateEvents: 0 }), { ...p, count: 5, sum: 7, lateEvents: 1 });
  assert.equal(p.sum, 2, 'inputs are not modified');
});

test('aggregate: stage 2 keeps spans in their own lane: not late behind live events, and a restart mid-stream emits the same points once', async () => {
  const { createPartitionState } = await import('../../processor/partition.ts');
  const { encodeRecord, decodeRecord, schemaRegistry } = await import('../../schemas/index.ts');
  const reg = schemaRegistry();
  const cfg = { windowMs: 2000, latenessMs: 0, topK: 100, processorId: 'u' }; // lateness 0: the final idle close needs no quiet period
  const T = BOOT + 100n * S;
  const runqRec = (ts: bigint) => encodeRecord(reg.byTopic('ringflow.sched.runqlat.v1')!, {
    cpu: 0, pid: 1, tgid: 1, uid: 0, ts_ns: ts, cgroup_id: 1n, comm: 'a', latency_ns: 1000n, prev_pid: 0, kind: 'WAKEUP', host: 'h1', boot_time_ns: 0n,
  });
  const spanRec = (end: bigint) => encodeRecord(reg.byTopic('ringflow.spans.v1')!, {
    trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', parent_span_id: null, trace_state: null, trace_flags: 1,
    name: 'GET /', kind: 'SERVER', start_ns: end - 1_000_000n, end_ns: end, status: 'UNSET', status_message: null,
    attributes: { 'http.request.method': 'GET', 'http.route': '/', 'http.response.status_code': '200' }, service_name: 'api', host: 'h1', protocol: 'HTTP1',
  });
  // live events at T + i/10 s; spans trailing them by 8 s (the correlator's lateness + link delay)
  const input: [string, Buffer][] = [];
  for (let i = 0; i < 100; i++) {
    input.push(['ringflow.sched.runqlat.v1|h1', runqRec(T + BigInt(i) * 100_000_000n)]);
    input.push(['ringflow.spans.v1|h1', spanRec(T - 8n * S + BigInt(i) * 100_000_000n)]);
  }
  type Out = { name: string; start: bigint; count: number; late: number };
  const decode = (v: Buffer): Out => {
    const r = decodeRecord(v).value as Record<string, unknown>;
    const h = r.histogram as { count: bigint } | null;
    return { name: r.name as string, start: r.window_start_ns as bigint, count: Number(h!.count), late: Number(r.late_events) };
  };
  /** Runs the input through states as the aggregate stage does, crashing (state lost) after each offset in `crashAt`. */
  const run = (crashAt: number[]): Out[] => {
    // a transaction per 5 records (or with points)
    const out = replayWithCrashes((cp) => createPartitionState(cfg, 0, cp), input, crashAt, 5, T + 1000n * S).map(decode);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : Number(a.start - b.start)));
  };
  const once = run([]);
  const spans = once.filter((p) => p.name === 'http.server.request.duration');
  assert.equal(spans.reduce((a, p) => a + p.count, 0), 100, 'every span counted');
  assert.equal(once.reduce((a, p) => a + p.late, 0), 0, 'no span and no event late');
  assert.equal(once.filter((p) => p.name === 'ringflow.sched.runqueue.latency').reduce((a, p) => a + p.count, 0), 100);
  for (const crashAt of [[7], [33, 34], [50, 120, 151], [199]]) assert.deepEqual(run(crashAt), once, `crash after ${crashAt}`);
});

test('aggregate: OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup adds the v1.37 rpc.*.duration (ms) beside the stable rpc.*.call.duration (s)', () => {
  const ev = span('SERVER', 'GRPC', 2_500_000n, { 'rpc.system': 'grpc', 'rpc.service': 'helloworld.Greeter', 'rpc.method': 'SayHello', 'rpc.grpc.status_code': '13', 'error.type': 'INTERNAL', 'server.address': '10.0.0.1', 'server.port': '50051' }, 'ERROR').value as Parameters<ReturnType<typeof rpcMetrics>[number]['value']>[0];
  const emitted = (rows: ReturnType<typeof rpcMetrics>): [string, string, number, string][] => rows.filter((m) => m.accept?.(ev) ?? true).map((m) => [
    m.name, m.unit, m.value(ev), m.dimensions.flatMap((d) => { const v = d.get(ev); return v === undefined ? [] : [`${d.key}=${v}`]; }).join(','),
  ]);
  const stable: [string, string, number, string] = ['rpc.server.call.duration', 's', 0.0025,
    'error.type=INTERNAL,host.name=h1,rpc.method=helloworld.Greeter/SayHello,rpc.response.status_code=INTERNAL,rpc.system.name=grpc,server.address=10.0.0.1,server.port=50051,service.name=api'];
  const old: [string, string, number, string] = ['rpc.server.duration', 'ms', 2.5,
    'error.type=INTERNAL,host.name=h1,rpc.grpc.status_code=13,rpc.method=SayHello,rpc.service=helloworld.Greeter,rpc.system=grpc,server.address=10.0.0.1,server.port=50051,service.name=api'];
  assert.deepEqual(emitted(rpcMetrics({ stable: true, old: false })), [stable]);
  assert.deepEqual(emitted(rpcMetrics({ stable: true, old: true })), [stable, old]);
});
