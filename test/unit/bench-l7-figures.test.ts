/**
 * The l7overhead benchmark's pure parts (test/bench/l7-figures.ts): wrk's
 * output, BPF program fdinfo, bpftool's names, per-hook deltas of bpf_stats,
 * per-request arithmetic and the collector's stats lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseWrk, parseProgFdinfo, parseBpftoolNames, hookDeltas, totalNs, perRequest, collectorTotals, ratio, irqWorkCount } from '../bench/l7-figures.ts';

const wrkOut = (p99: string, requests = '48376') => `Running 2s test @ http://127.0.0.1:40123/users/42
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   326.12us  101.22us   3.10ms   91.56%
    Req/Sec    24.31k     1.02k   25.60k    80.00%
  Latency Distribution
     50%  305.00us
     75%  339.00us
     90%  401.00us
     99%  ${p99}
  ${requests} requests in 2.00s, 7.15MB read
Requests/sec:  24187.61
Transfer/sec:      3.57MB
`;

test('parseWrk: requests, rate and p99 in any unit wrk prints', () => {
  const cases: [string, { requests: number; rps: number; p99_ms: number }][] = [
    [wrkOut('735.00us'), { requests: 48376, rps: 24187.61, p99_ms: 0.735 }],
    [wrkOut('12.50ms'), { requests: 48376, rps: 24187.61, p99_ms: 12.5 }],
    [wrkOut('1.20s', '7'), { requests: 7, rps: 24187.61, p99_ms: 1200 }],
  ];
  for (const [out, want] of cases) {
    const got = parseWrk(out);
    assert.equal(got.requests, want.requests);
    assert.equal(got.rps, want.rps);
    assert.ok(Math.abs(got.p99_ms - want.p99_ms) < 1e-9, `${got.p99_ms} vs ${want.p99_ms}`);
  }
  // without --latency there is no 99% line; a failed connect prints no rate
  assert.throws(() => parseWrk(wrkOut('735.00us').replace(/\s+99%.*\n/, '\n')), /cannot read wrk/);
  assert.throws(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused\n'), /cannot read wrk/);
});

test('parseProgFdinfo: a program fd gives id and counters; other bpf fds give null', () => {
  const prog = 'pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2078\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\t4f8d1a2b3c4d5e6f\nmemlock:\t8192\nprog_id:\t812\nrun_time_ns:\t18446744073709551615\nrun_cnt:\t3\nrecursion_misses:\t0\nverified_insns:\t1234\n';
  assert.deepEqual(parseProgFdinfo(prog), { id: 812, run_time_ns: 18446744073709551615n, run_cnt: 3n });
  // stats never enabled on an old kernel: the fields are absent, read as 0
  assert.deepEqual(parseProgFdinfo('prog_type:\t5\nprog_id:\t9\n'), { id: 9, run_time_ns: 0n, run_cnt: 0n });
  const map = 'pos:\t0\nflags:\t02000002\nmap_type:\t27\nkey_size:\t0\nvalue_size:\t0\nmax_entries:\t16777216\nmap_flags:\t0x0\nmap_id:\t77\n';
  assert.equal(parseProgFdinfo(map), null);
  const link = 'link_type:\tperf\nlink_id:\t5\nprog_tag:\tab\nprog_id:\t812\n'.replace('prog_id', 'xprog_id');
  assert.equal(parseProgFdinfo(link), null);
});

test('parseBpftoolNames: id -> full name, unnamed programs by id', () => {
  const names = parseBpftoolNames(JSON.stringify([
    { id: 812, type: 'tracepoint', name: 'rf_l7_enter_read', tag: 'ab', run_time_ns: 10, run_cnt: 1 },
    { id: 813, type: 'tracepoint', name: '', tag: 'cd' },
    { id: 814, type: 'cgroup_skb', tag: 'ef' },
  ]));
  assert.deepEqual([...names], [[812, 'rf_l7_enter_read'], [813, 'prog 813'], [814, 'prog 814']]);
  assert.deepEqual([...parseBpftoolNames('[]')], []);
  assert.throws(() => parseBpftoolNames('{"error":"x"}'), /not a list/);
});

test('hookDeltas: per name, calls and ns over the interval, largest first', () => {
  const names = new Map([[1, 'rf_l7_enter_read'], [2, 'rf_l7_exit_read'], [3, 'rf_l7_exit_write'], [4, 'rf_l7_exit_write']]);
  const before = [
    { id: 1, run_cnt: 100n, run_time_ns: 10_000n },
    { id: 2, run_cnt: 100n, run_time_ns: 50_000n },
    { id: 3, run_cnt: 0n, run_time_ns: 0n },
    { id: 9, run_cnt: 5n, run_time_ns: 5n }, // gone by `after`: left out
  ];
  const after = [
    { id: 1, run_cnt: 300n, run_time_ns: 30_000n },
    { id: 2, run_cnt: 300n, run_time_ns: 150_000n },
    { id: 3, run_cnt: 10n, run_time_ns: 2_000n },
    { id: 4, run_cnt: 10n, run_time_ns: 3_000n }, // new since `before`: from zero, summed with id 3 (same name)
    { id: 5, run_cnt: 0n, run_time_ns: 0n }, // never ran, no name
  ];
  const h = hookDeltas(before, after, names);
  assert.deepEqual(Object.keys(h), ['rf_l7_exit_read', 'rf_l7_enter_read', 'rf_l7_exit_write', 'prog 5']);
  assert.deepEqual(h.rf_l7_exit_read, { calls: 200, ns_per_call: 500, total_ns: 100_000 });
  assert.deepEqual(h.rf_l7_enter_read, { calls: 200, ns_per_call: 100, total_ns: 20_000 });
  assert.deepEqual(h.rf_l7_exit_write, { calls: 20, ns_per_call: 250, total_ns: 5_000 });
  assert.deepEqual(h['prog 5'], { calls: 0, ns_per_call: null, total_ns: 0 });
  assert.equal(totalNs(h), 125_000);
  assert.throws(() => hookDeltas(after, before, names), /went backwards/);
});

test('perRequest: BPF ns, collector µs and their sum per request; null with no request', () => {
  const cases: [number, number, number, ReturnType<typeof perRequest>][] = [
    // 2 ms of BPF and 0.5 s of collector CPU over 100 000 requests: 20 ns + 5 µs
    [2_000_000, 0.5, 100_000, { bpf_ns_per_request: 20, collector_cpu_us_per_request: 5, observer_us_per_request: 5.02 }],
    [4_000_000_000, 0, 1_000_000, { bpf_ns_per_request: 4000, collector_cpu_us_per_request: 0, observer_us_per_request: 4 }],
    [1, 1, 0, { bpf_ns_per_request: null, collector_cpu_us_per_request: null, observer_us_per_request: null }],
  ];
  for (const [ns, cpu, n, want] of cases) assert.deepEqual(perRequest(ns, cpu, n), want);
  assert.equal(ratio(4, 0), null);
  assert.equal(ratio(400_000, 100_000), 4);
  assert.equal(ratio(1, 3), 0.33);
});

test('collectorTotals: sums of the stats lines, other lines ignored', () => {
  const stderr = [
    'ringflow: run 0f3c',
    'ringflow: collecting l7 as bench-l7 into Kafka 127.0.0.1:9092; Ctrl-C to stop',
    'ringflow: 1.0s: read 40000 (l7.capture 40000), produced 20000, kernel drops 0, user drops 0, send errors 0, pending 12, cpu 95%; l7: captures 40000, messages 20000, records lost 0, HTTP/1 resyncs 0, parsers stopped 0',
    'ringflow: 2.0s: read 30000 (l7.capture 30000), produced 15000, kernel drops 64000, user drops 2, send errors 0, pending 0; lost in the kernel by reason: ring_full 64000, cpu 50%; l7: captures 30000, messages 15000, records lost 3, HTTP/1 resyncs 1, parsers stopped 0',
    'ringflow: 0.5s: read 0, produced 0, kernel drops 0, user drops 0, send errors 0, pending 0, cpu 2%',
    // HTTP/1 framed in the kernel: exchange records, one EXCHANGE message each
    'ringflow: 1.0s: read 5000 (l7 5000), produced 5000, kernel drops 0, user drops 0, send errors 0, pending 0, cpu 20%; l7: captures 0, messages 10000, records lost 0, HTTP/1 resyncs 0, parsers stopped 0, HTTP/1 exchanges from the kernel 5000',
  ].join('\n');
  assert.deepEqual(collectorTotals(stderr), { read: 75000, captures: 70000, exchanges: 5000, messages: 45000, kernel_drops: 64000, cpu_seconds: 0.95 + 1 + 0.01 + 0.2, lines: 4 });
  assert.deepEqual(collectorTotals(''), { read: 0, captures: 0, exchanges: 0, messages: 0, kernel_drops: 0, cpu_seconds: 0, lines: 0 });
});

test('irqWorkCount: the IWI line summed over CPUs, null without one', () => {
  const two = '           CPU0       CPU1       \n 24:          1          0  IO-APIC   5-edge      ACPI:Ged\nIWI:    2571093    4702420   IRQ work interrupts\nRES:    2035174    1665861   Rescheduling interrupts\n';
  const cases: [string, number | null][] = [
    [two, 2571093 + 4702420],
    ['           CPU0\nIWI:          7   IRQ work interrupts\n', 7],
    ['           CPU0\nRES:          7   Rescheduling interrupts\n', null],
    ['', null],
  ];
  for (const [text, want] of cases) assert.equal(irqWorkCount(text), want);
});
