/**
 * Bad input and faults, through the real CLI: each gets one line naming the
 * cause and the fix and a non-zero exit; Kafka going away mid-run loses
 * nothing the collector still holds.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { rootOrSkip, ownBroker, readTopic, runCli, run, sleep, TCP_DRIVER } from '../support/integration.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';

/** The CLI's error output is exactly one line starting with "ringflow: ". */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^ringflow: /);
  return lines[0]!;
}

/** A thread of this test process that is not its main thread (V8 and libuv start several). */
function aThreadId(): number {
  const tid = fs.readdirSync('/proc/self/task').map(Number).find((t) => t !== process.pid);
  assert.ok(tid, 'this process has a second thread');
  return tid;
}

describe('bad input', { timeout: 180_000 }, () => {
  // 127.0.0.1:1 refuses connections: a flag checked only after connecting would
  // end as "cannot reach Kafka" (exit 5) instead of its own line (exit 2)
  const nowhere = ['--brokers', '127.0.0.1:1'];
  const cases: [string, string[], number, RegExp][] = [
    ['unknown signal', ['collect', '--signals', 'sched,nfs'], 2, /unknown "nfs"; choose from sched, block, tcp/],
    ['bad duration', ['collect', '--min-latency', '10'], 2, /--min-latency: "10" is not a duration/],
    ['bad pid', ['collect', '--pid', 'x'], 2, /--pid: "x" is not a whole number/],
    // pids are below pid_max, which is at most 4194304: this one never exists
    ['pid of no process', ['collect', '--stdout', '--pid', '4194304'], 2, /--pid: no process 4194304 is running/],
    ['pid of no process (up)', ['up', ...nowhere, '--pid', '4194304'], 2, /--pid: no process 4194304 is running/],
    ['pid of a thread', ['collect', '--stdout', '--pid', String(aThreadId())], 2, new RegExp(`--pid: \\d+ is a thread of process ${process.pid}; the filter takes a process id: --pid ${process.pid}`)],
    ['comm longer than the kernel keeps', ['collect', '--stdout', '--comm', 'sixteen-chars-xx'], 2, /--comm: "sixteen-chars-xx" must be 1\.\.15 bytes/],
    ['zero window (process)', ['process', ...nowhere, '--window', '0s'], 2, /--window: 0s is out of range; expected 100ms\.\.24h/],
    ['zero window (up)', ['up', ...nowhere, '--window', '0s'], 2, /--window: 0s is out of range; expected 100ms\.\.24h/],
    ['window not whole milliseconds', ['process', ...nowhere, '--window', '100500us'], 2, /--window: 100500us is not a whole number of milliseconds/],
    ['negative window', ['process', ...nowhere, '--window=-1s'], 2, /--window: "-1s" is not a duration/],
    ['lateness beyond a day', ['up', ...nowhere, '--lateness', '25h'], 2, /--lateness: 25h is out of range; expected 0\.\.24h/],
    ['zero span timeout', ['process', ...nowhere, '--span-timeout', '0s'], 2, /--span-timeout: 0s is out of range; expected 1ms\.\.24h/],
    ['zero duration', ['collect', '--stdout', '--duration', '0s'], 2, /--duration: 0s is out of range; expected 1ms\.\./],
    ['zero tail timeout', ['tail', 'tcp.connect', ...nowhere, '--timeout', '0s'], 2, /--timeout: 0s is out of range; expected 1ms\.\./],
    ['port out of range', ['collect', '--stdout', '--signals', 'l7', '--port', '0'], 2, /--port: 0 is out of range; expected 1\.\.65535/],
    // beyond the kernel filter's u64 (a RangeError and a stack trace before)
    ['min latency beyond a day', ['collect', '--stdout', '--min-latency', '99999999999999h'], 2, /--min-latency: 99999999999999h is out of range; expected 0\.\.24h/],
    // a timer Node cannot arm fires every millisecond (a stats record per ms before)
    ['stats interval beyond an hour', ['collect', '--stdout', '--stats-interval', '1000h'], 2, /--stats-interval: 1000h is out of range; expected 100ms\.\.1h/],
    ['empty host name', ['collect', '--stdout', '--host='], 2, /--host: "" must be 1\.\.255 printable characters without spaces/],
    ['empty instance id', ['process', ...nowhere, '--instance='], 2, /--instance: "" must be 1\.\.255 printable characters without spaces/],
    ['broker port out of range', ['kafka', 'status', '--port', '70000'], 2, /--port: 70000 is out of range; expected 1\.\.65535/],
    ['unknown flag', ['collect', '--frobnicate'], 2, /Unknown option '--frobnicate'; see --help/],
    ['unknown command', ['frob'], 2, /unknown command "frob"/],
    ['Kafka unreachable at start', ['collect', '--brokers', '127.0.0.1:1', '--signals', 'tcp'], 5, /cannot reach Kafka at 127\.0\.0\.1:1 .*ECONNREFUSED.*ringflow kafka start/],
  ];
  for (const [name, args, code, re] of cases) {
    test(name, async (t) => {
      if (name.startsWith('Kafka') && !rootOrSkip(t)) return;
      const r = runCli(args);
      // a bad value accepted silently runs on (a collector filtering on a pid that
      // does not exist never stops): give it 20 s, then fail naming that
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([r.exit, new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), 20_000)))]);
      clearTimeout(timer);
      if (exit === 'running') r.child.kill('SIGKILL');
      assert.equal(exit, code, `ringflow ${args.join(' ')}: ${exit === 'running' ? 'still running after 20 s' : `exit ${exit}`}; stderr:\n${r.stderr()}`);
      assert.match(oneLine(r.stderr()), re);
    });
  }

  test('not privileged: root without capabilities is refused before anything loads', async (t) => {
    if (!rootOrSkip(t)) return;
    // uid 0 with an empty bounding set: what a container without CAP_BPF/CAP_PERFMON looks like
    const r = runCli(['collect', '--stdout', '--signals', 'tcp'], { wrap: ['setpriv', '--bounding-set=-all', '--inh-caps=-all'] });
    assert.equal(await r.exit, 3, r.stderr());
    assert.match(oneLine(r.stderr()), /needs root or CAP_BPF\+CAP_PERFMON; run with sudo/);
  });

  test('help for every command', async () => {
    for (const args of [['--help'], ['collect', '--help'], ['tail', '--help'], ['kafka', '--help'], ['up', '--help']]) {
      const r = runCli(args);
      assert.equal(await r.exit, 0, `${args}: ${r.stderr()}`);
      assert.match(r.stdout(), /Usage: ringflow/);
    }
  });
});

describe('Kafka going away mid-run', { timeout: 300_000 }, () => {
  test('the collector keeps counting, retries, and delivers everything it held once Kafka is back', async (t) => {
    if (!rootOrSkip(t)) return;
    const k = await ownBroker();
    const host = `it-faults-${process.pid}-${Date.now()}`;
    const opts = { stateDir: k.stateDir, port: k.port, controllerPort: k.controllerPort };
    const c = runCli(['collect', '--brokers', k.brokers, '--host', host, '--signals', 'tcp', '--stats-interval', '1s']);
    try {
      await c.waitFor(/collecting tcp/);
      const ports: number[] = [];
      const connects = async (n: number) => {
        const r = await run('python3', ['-c', TCP_DRIVER, String(n)]);
        assert.equal(r.code, 0, r.stderr);
        ports.push(Number(r.stdout.trim().split(/\s+/)[1]));
      };
      await connects(10);
      await sleep(1500);
      await stopBroker({ stateDir: k.stateDir });
      await connects(15); // while Kafka is down
      await c.waitFor(/kafka: send failed/, 30_000);
      await sleep(2000);
      await startBroker(opts);
      await connects(5);
      await c.waitFor(/sending again; delivered/, 60_000);
      await sleep(1500);
      c.child.kill('SIGTERM');
      assert.equal(await c.exit, 0, c.stderr());

      const got = (await readTopic(k.brokers, 'ringflow.tcp.connect.v1')).filter((r) => r.value.host === host);
      for (const [i, n] of [[0, 10], [1, 15], [2, 5]] as const) {
        const mine = got.filter((r) => Number(r.value.dport) === ports[i]);
        // at-least-once: a batch whose ack was lost with the broker may be resent
        const unique = new Set(mine.map((r) => `${r.value.sport}`));
        assert.equal(unique.size, n, `round ${i}: every connect delivered (${mine.length} records, ${unique.size} distinct)`);
      }
      const stats = (await readTopic(k.brokers, 'ringflow.collector.stats.v1')).filter((r) => r.value.host === host);
      const sendErrors = stats.reduce((a, s) => a + Number(s.value.send_errors), 0);
      assert.ok(sendErrors > 0, 'send errors were counted in the stats records');
      const userDrops = stats.flatMap((s) => s.value.events as { user_drops: bigint }[]).reduce((a, e) => a + Number(e.user_drops), 0);
      assert.equal(userDrops, 0);
    } finally {
      c.child.kill('SIGKILL');
      await k.stop();
    }
  });
});

describe('a tracepoint missing on this kernel', () => {
  test('names the signal and the fix, exit 4', async (t) => {
    if (!rootOrSkip(t)) return;
    const { execFileSync } = await import('node:child_process');
    const os = await import('node:os');
    const path = await import('node:path');
    const { Session } = await import('../../native/index.ts');
    const { loadError } = await import('../../cli/collect.ts');
    const { ensureTracefs } = await import('../../collector/preflight.ts');
    ensureTracefs();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-tp-'));
    const src = path.join(dir, 'missing.bpf.c');
    fs.writeFileSync(src, 'char LICENSE[] __attribute__((section("license"))) = "GPL";\n' +
      '__attribute__((section("tracepoint/ringflow_test/no_such_tracepoint"), used)) int missing(void *ctx) { return 0; }\n');
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-c', src, '-o', path.join(dir, 'missing.bpf.o')]);
    const session = new Session({ ringBytes: 1 << 16 });
    try {
      let err: unknown;
      try {
        session.addObject(path.join(dir, 'missing.bpf.o'), {});
      } catch (e) {
        err = e;
      }
      assert.ok(err, 'attaching to a tracepoint the kernel lacks throws');
      const fatal = loadError('demo', err);
      assert.equal(fatal.exitCode, 4);
      // the line must name the tracepoint the kernel lacks, not just say one is missing
      assert.match(fatal.message, /^signal demo needs a tracepoint this kernel lacks \(.*section 'tracepoint\/ringflow_test\/no_such_tracepoint'.*\); leave it out with --signals$/);
      assert.match(fatal.message, /leave it out with --signals/);
      assert.ok(!fatal.message.includes('\n'));
    } finally {
      await session.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
