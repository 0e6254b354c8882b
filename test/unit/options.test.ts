import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDurationNs, parseIntFlag, parseBrokers, parseList, parseComm, parseDurationInRange, parseDurationMs, parsePid, tgidOf, parseHost } from '../../common/options.ts';
import { FatalError } from '../../common/errors.ts';
import { parseCollectArgs, l7SummaryPart, l7CountersSnapshot, cpuSummaryPart } from '../../cli/collect.ts';
import { L7Tracker } from '../../collector/l7/tracker.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';

test('durations: units are exact, bare numbers and junk are rejected', () => {
  const ok: [string, bigint][] = [
    ['1ms', 1_000_000n],
    ['250us', 250_000n],
    ['250µs', 250_000n],
    ['1.5s', 1_500_000_000n],
    ['0.001s', 1_000_000n],
    ['2m', 120_000_000_000n],
    ['1h', 3_600_000_000_000n],
    ['7ns', 7n],
  ];
  for (const [text, ns] of ok) assert.equal(parseDurationNs('--x', text), ns, text);
  for (const bad of ['5', 'ms', '1 ms', '-1ms', '1.ms', '1d', '']) {
    assert.throws(() => parseDurationNs('--min-latency', bad), (e: unknown) => e instanceof FatalError && e.exitCode === 2 && e.message.startsWith('--min-latency:'), bad);
  }
});

test('integers: range and syntax', () => {
  assert.equal(parseIntFlag('--pid', '42', 1, 100), 42);
  for (const bad of ['0', '101', '-1', '1e3', '4.2', 'x', '']) {
    assert.throws(() => parseIntFlag('--pid', bad, 1, 100), FatalError, bad);
  }
});

test('durations in a range: zero, too long and sub-millisecond timers are refused with the bounds', () => {
  const day = 86_400_000_000_000n;
  const ok: [string, bigint, bigint, bigint][] = [
    ['100ms', 100_000_000n, day, 100_000_000n],
    ['24h', 100_000_000n, day, day],
    ['0s', 0n, day, 0n],
  ];
  for (const [text, min, max, want] of ok) assert.equal(parseDurationInRange('--window', text, min, max), want, text);
  const bad: [string, bigint, bigint, RegExp][] = [
    ['0s', 100_000_000n, day, /^--window: 0s is out of range; expected 100ms\.\.24h$/],
    ['99ms', 100_000_000n, day, /^--window: 99ms is out of range; expected 100ms\.\.24h$/],
    ['25h', 0n, day, /^--window: 25h is out of range; expected 0\.\.24h$/],
    ['1ns', 1_000_000n, 2_147_483_647_000_000n, /^--window: 1ns is out of range; expected 1ms\.\.2147483647ms$/],
  ];
  for (const [text, min, max, re] of bad) {
    assert.throws(() => parseDurationInRange('--window', text, min, max), (e: unknown) => e instanceof FatalError && e.exitCode === 2 && re.test(e.message), text);
  }
  assert.equal(parseDurationMs('--timeout', '1.5s', 1), 1500);
  assert.throws(() => parseDurationMs('--timeout', '1500us', 1), /--timeout: 1500us is not a whole number of milliseconds$/);
  assert.throws(() => parseDurationMs('--timeout', '0s', 1), /--timeout: 0s is out of range; expected 1ms\.\.2147483647ms$/);
  // a timer Node would clamp to 1 ms (TimeoutOverflowWarning) is refused
  assert.throws(() => parseDurationMs('--timeout', '600h', 1), /--timeout: 600h is out of range/);
});

test('pids: the filter is on the tgid, so a missing process or a thread id is refused', () => {
  const tasks = new Map<number, number>([[100, 100], [101, 100]]); // pid 100 with a second thread 101
  const tgid = (pid: number) => tasks.get(pid);
  assert.equal(parsePid('--pid', '100', tgid), 100);
  const bad: [string, RegExp][] = [
    ['102', /^--pid: no process 102 is running \(the filter would match nothing\); check the pid with: ps -p 102$/],
    ['101', /^--pid: 101 is a thread of process 100; the filter takes a process id: --pid 100$/],
    ['0', /^--pid: 0 is out of range; expected 1\.\.4194304$/],
    ['x', /^--pid: "x" is not a whole number/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parsePid('--pid', text, tgid), (e: unknown) => e instanceof FatalError && e.exitCode === 2 && re.test(e.message), text);
  }
  // the real /proc: this process is its own tgid; a pid at PID_MAX never exists
  assert.equal(tgidOf(process.pid), process.pid);
  assert.equal(tgidOf(4_194_304), undefined);
  assert.equal(tgidOf(1, '/nonexistent'), undefined);
});

test('host and instance names: non-empty, printable, no spaces', () => {
  for (const ok of ['web-1', 'db01.example.com', 'a']) assert.equal(parseHost(ok), ok);
  for (const bad of ['', 'two words', 'tab\there', 'x'.repeat(256), 'nl\n']) {
    assert.throws(() => parseHost(bad, '--instance'), (e: unknown) => e instanceof FatalError && e.exitCode === 2 && e.message.startsWith('--instance: '), JSON.stringify(bad));
  }
});

test('collect: timers and kernel filters are bounded', () => {
  assert.throws(() => parseCollectArgs(['--min-latency', '99999999999999h']), /--min-latency: 99999999999999h is out of range; expected 0\.\.24h/);
  assert.throws(() => parseCollectArgs(['--stats-interval', '1000h']), /--stats-interval: 1000h is out of range; expected 100ms\.\.1h/);
  assert.throws(() => parseCollectArgs(['--stats-interval', '10ms']), /--stats-interval: 10ms is out of range/);
  assert.throws(() => parseCollectArgs(['--host=']), /--host: "" must be/);
  assert.equal(parseCollectArgs(['--min-latency', '24h']).filters.minLatencyNs, 86_400_000_000_000n);
});

test('brokers and lists', () => {
  assert.deepEqual(parseBrokers('a:1, b.example:9092,[::1]:9093'), ['a:1', 'b.example:9092', '[::1]:9093']);
  for (const bad of ['', 'nohost', 'a:0', 'a:70000', 'a:b']) assert.throws(() => parseBrokers(bad), FatalError, bad);
  assert.deepEqual(parseList('--signals', 'tcp,sched,tcp', ['sched', 'block', 'tcp']), ['tcp', 'sched']);
  assert.deepEqual(parseList('--signals', 'all', ['sched', 'block', 'tcp']), ['sched', 'block', 'tcp']);
  assert.throws(() => parseList('--signals', 'tcp,nfs', ['sched', 'block', 'tcp']), /unknown "nfs"; choose from sched, block, tcp/);
});

test('comm must fit the kernel limit', () => {
  assert.equal(parseComm('postgres'), 'postgres');
  assert.throws(() => parseComm('a-very-long-command-name'), /15 bytes/);
  assert.throws(() => parseComm(''), FatalError);
});

test('collect flags -> config', () => {
  const c = parseCollectArgs(['--signals', 'tcp', '--pid', String(process.pid), '--uid', '0', '--comm', 'curl', '--min-latency', '2ms', '--duration', '30s', '--stdout', '--ring-mb', '64']);
  assert.deepEqual(c.signals, ['tcp']);
  assert.deepEqual(c.filters, { pid: process.pid, uid: 0, comm: 'curl', minLatencyNs: 2_000_000n });
  assert.equal(c.durationMs, 30_000);
  assert.equal(c.stdout, true);
  assert.equal(c.ringBytes, 64 << 20);
  assert.equal(c.brokersGiven, false);
  const d = parseCollectArgs([]);
  assert.deepEqual(d.signals, ['sched', 'block', 'tcp']);
  assert.deepEqual(d.brokers, ['127.0.0.1:9092']);
  assert.equal(d.durationMs, undefined);
  assert.throws(() => parseCollectArgs(['--ring-mb', '3']), /power of two/);
  assert.throws(() => parseCollectArgs(['--compression', 'lz4']), /gzip or none/);
  assert.throws(() => parseCollectArgs(['--nope']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
});

test('load-time settings: names, sizes and values match common.bpf.h', () => {
  const g = encodeSettings({ selfTgid: 99, pid: 5, comm: 'nginx', minLatencyNs: 1_000_000n });
  assert.deepEqual(Object.keys(g).sort(), ['rf_filter_cgroup_id', 'rf_filter_comm', 'rf_filter_tgid', 'rf_filter_uid', 'rf_min_latency_ns', 'rf_self_tgid', 'rf_wakeup_bytes']);
  assert.equal(g.rf_filter_tgid!.readUInt32LE(), 5);
  assert.equal(g.rf_filter_uid!.readUInt32LE(), 0xffffffff, 'no uid filter = any');
  assert.equal(g.rf_filter_comm!.length, 16);
  assert.equal(g.rf_filter_comm!.toString('latin1').replace(/\0+$/, ''), 'nginx');
  assert.equal(g.rf_min_latency_ns!.readBigUInt64LE(), 1_000_000n);
  assert.equal(g.rf_self_tgid!.readUInt32LE(), 99);
  assert.equal(g.rf_wakeup_bytes!.readBigUInt64LE(), 1n << 20n);
  // every global named here is declared in common.bpf.h with the same size
  // (the native loader also rejects unknown names and wrong sizes at load)
});

test('up: --rules goes to the processor; alert transitions print as one line', async () => {
  const { splitUpArgs, alertLine } = await import('../../cli/up.ts');
  assert.deepEqual(splitUpArgs(['--rules', 'r.yaml', '--window=2s', '--signals', 'tcp']), { window: '2s', lateness: '5s', rules: 'r.yaml', collect: ['--signals', 'tcp'] });
  assert.deepEqual(splitUpArgs(['--pid', '1']), { window: '10s', lateness: '5s', collect: ['--pid', '1'] });
  assert.throws(() => splitUpArgs(['--rules']), /--rules: missing value/);
  // up checks process's bounds itself, before it starts a broker and three children
  assert.throws(() => splitUpArgs(['--window', '0s']), /--window: 0s is out of range; expected 100ms\.\.24h$/);
  assert.throws(() => splitUpArgs(['--lateness=25h']), /--lateness: 25h is out of range; expected 0\.\.24h$/);
  assert.equal(
    alertLine({ rule: 'slow-runqueue', state: 'FIRING', group: [{ key: 'host.name', value: 'web1' }], stat: 'p99', metric: 'ringflow.sched.runqueue.latency', value: 0.012, threshold: 0.01, window_end_ns: 1_700_000_010_000_000_000n }),
    'ALERT FIRING slow-runqueue {host.name=web1}: p99(ringflow.sched.runqueue.latency) = 0.012 (threshold 0.01) at 22:13:30',
  );
});

test("collect's L7 summary: the tracker's counters since the previous line", () => {
  const t = new L7Tracker();
  const prev = l7CountersSnapshot(t.counters);
  Object.assign(t.counters, { records: 120, messages: 40, lostRecords: 3, resyncs: 2 });
  t.counters.failed.set('HTTP2: gap', 1);
  assert.equal(l7SummaryPart(t.counters, prev), '; l7: captures 120, messages 40, records lost 3, HTTP/1 resyncs 2, parsers stopped 1, HTTP/1 exchanges from the kernel 0');
  const next = l7CountersSnapshot(t.counters);
  t.counters.records += 5;
  t.counters.exchanges += 7;
  assert.equal(l7SummaryPart(t.counters, next), '; l7: captures 5, messages 0, records lost 0, HTTP/1 resyncs 0, parsers stopped 0, HTTP/1 exchanges from the kernel 7');
});

test("collect's summary: its own CPU over the interval, in % of one core", () => {
  for (const [cpuUs, intervalNs, want] of [
    [870_000, 1_000_000_000n, ', cpu 87%'],
    [3_000_000, 2_000_000_000n, ', cpu 150%'], // two threads busy
    [4_000, 10_000_000_000n, ', cpu 0%'],
    [5_000, 0n, ', cpu 0%'],
  ] as const) assert.equal(cpuSummaryPart(cpuUs, intervalNs), want);
});
