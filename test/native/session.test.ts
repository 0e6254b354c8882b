/**
 * The native layer against the real kernel (run as root): loads
 * bpf/.output/bench.bpf.o, drives getpid() through native/bench/getpid_driver
 * and checks what arrives in JS.
 */
import { before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  Session, forEachRecord, isNativeError, kernelEnum, u32, type NativeError, type SessionOptions,
} from '../../native/index.ts';
import {
  BENCH_OBJ, BENCH_RECORD_SIZE, RF_EV_BENCH, ROOT, SEQ_OFFSET,
  addBench, buildPrerequisites, sleep, spawnDriver,
} from './helpers.ts';

before(() => buildPrerequisites());

/** A Session stopped after the test whatever happens (a running one keeps the process alive). */
function open(t: TestContext, opts?: SessionOptions): Session {
  const s = new Session(opts);
  t.after(() => s.stop());
  return s;
}

/** execFileSync's error when the program itself is not installed (not: it ran and failed). */
function toolchainMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT' && (err as { status?: unknown }).status == null;
}

function assertNativeError(fn: () => unknown, check: (e: NativeError) => void): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown instanceof Error, 'expected an Error to be thrown');
  assert.ok(isNativeError(thrown), `expected op/errno/code on: ${String(thrown)}`);
  check(thrown);
}

describe('Session: draining bench.bpf.o', () => {
  it('delivers exactly the driven records, seq contiguous, no drops', async (t) => {
    const N = 100_000;
    const driver = await spawnDriver(N);
    const session = open(t);
    const info = session.addObject(BENCH_OBJ, { bench_tgid: u32(driver.pid) });
    assert.deepEqual(info, { name: 'bench', programs: ['rf_bench_getpid'], skipped: [] });

    let records = 0;
    let batches = 0;
    let nextSeq = 0n;
    let bad = '';
    session.start((batch) => {
      batches++;
      forEachRecord(batch, (off, len) => {
        if (bad) return;
        if (len !== BENCH_RECORD_SIZE) bad = `record ${records}: length ${len}`;
        else if (batch.readUInt32LE(off - 4) !== 0) bad = `record ${records}: reserved word not 0`;
        else if (batch[off] !== RF_EV_BENCH) bad = `record ${records}: type ${batch[off]}`;
        else if (batch.readUInt32LE(off + 8) !== driver.pid) bad = `record ${records}: tgid`;
        else if (batch.readBigUInt64LE(off + SEQ_OFFSET) !== nextSeq) {
          bad = `record ${records}: seq ${batch.readBigUInt64LE(off + SEQ_OFFSET)} != ${nextSeq}`;
        }
        nextSeq++;
        records++;
      });
    });
    assert.equal(await driver.go(), 0);
    await session.stop();

    assert.equal(bad, '');
    assert.equal(records, N);
    assert.equal(session.drops()[RF_EV_BENCH], 0n);
    assert.ok(session.drops().every((d) => d === 0n));
    const st = session.stats();
    assert.equal(st.records, N);
    assert.equal(st.bytes, N * (8 + BENCH_RECORD_SIZE));
    assert.equal(st.batches, batches);
    assert.ok(batches < N / 100, `records should arrive batched, got ${batches} batches`);
  });

  it('pause() lets the ring fill and the kernel count drops: received + dropped == driven', async (t) => {
    const N = 100_000;
    const driver = await spawnDriver(N);
    const session = open(t, { ringBytes: 64 << 10 });
    addBench(session, driver.pid);
    let received = 0;
    session.start((batch) => {
      forEachRecord(batch, () => received++);
    });
    session.pause();
    assert.equal(await driver.go(), 0);
    await sleep(50);
    // Paused: the thread stops within one record (libbpf has already consumed the
    // record it hands our callback when the pause is seen, so that one is kept).
    assert.ok(received <= 1, `received ${received} while paused`);
    const during = session.drops()[RF_EV_BENCH]!;
    // the full ring: 64 KiB less what could not fit one more 64-byte record (+8 header)
    const pendingWhilePaused = session.stats().ringPending;
    assert.ok(pendingWhilePaused > (64 << 10) - 2 * 72 && pendingWhilePaused <= 64 << 10, `ringPending ${pendingWhilePaused}`);
    session.resume();
    await sleep(50);
    assert.equal(session.stats().ringPending, 0, 'drained after resume');
    await session.stop();

    const dropped = session.drops()[RF_EV_BENCH]!;
    assert.ok(during > 0n, 'drops counted while paused');
    assert.equal(dropped, during, 'no new drops after the load ended');
    assert.ok(received > 0 && received < N, `received ${received}`);
    assert.equal(BigInt(received) + dropped, BigInt(N));
  });

  it('a JS consumer that falls behind blocks the thread (bounded queue) and the kernel drops', async (t) => {
    const N = 200_000;
    const driver = await spawnDriver(N);
    const session = open(t, { ringBytes: 64 << 10, maxBatchBytes: 16 << 10, maxPendingBatches: 1 });
    addBench(session, driver.pid);
    let received = 0;
    const held: Buffer[] = [];
    session.start((batch) => {
      received += forEachRecord(batch, () => {});
      held.push(batch); // batches stay valid while JS holds them
      const until = Date.now() + 5;
      while (Date.now() < until); // a slow consumer
    });
    assert.equal(await driver.go(), 0);
    await session.stop();
    const dropped = session.drops()[RF_EV_BENCH]!;
    assert.ok(dropped > 0n, 'the slow consumer caused drops');
    assert.equal(BigInt(received) + dropped, BigInt(N));
    // earlier batches are intact (not recycled while referenced)
    assert.equal(held[0]!.readUInt32LE(0), BENCH_RECORD_SIZE);
    assert.equal(held[0]!.readBigUInt64LE(8 + SEQ_OFFSET), 0n);
  });

  it('two objects share one ring and one drop array', async (t) => {
    const d1 = await spawnDriver(1000);
    const d2 = await spawnDriver(2000);
    const session = open(t);
    addBench(session, d1.pid);
    addBench(session, d2.pid);
    const perPid = new Map<number, number>();
    session.start((batch) => {
      forEachRecord(batch, (off) => {
        const tgid = batch.readUInt32LE(off + 8);
        perPid.set(tgid, (perPid.get(tgid) ?? 0) + 1);
      });
    });
    assert.deepEqual(await Promise.all([d1.go(), d2.go()]), [0, 0]);
    await session.stop();
    assert.equal(perPid.get(d1.pid), 1000);
    assert.equal(perPid.get(d2.pid), 2000);
  });
});

describe('Session: errors', () => {
  it('an unknown global throws an Error naming it', (t) => {
    const session = open(t, { ringBytes: 64 << 10 });
    assertNativeError(() => session.addObject(BENCH_OBJ, { no_such_global: u32(1) }), (e) => {
      assert.match(e.message, /no_such_global/);
      assert.equal(e.op, 'set_global');
      assert.equal(e.code, 'ENOENT');
    });
    return session.stop();
  });

  it('a global of the wrong size throws naming it and both sizes', (t) => {
    const session = open(t, { ringBytes: 64 << 10 });
    assertNativeError(() => session.addObject(BENCH_OBJ, { bench_tgid: Buffer.alloc(8) }), (e) => {
      assert.match(e.message, /bench_tgid.*4 bytes.*8/);
      assert.equal(e.code, 'EINVAL');
    });
    return session.stop();
  });

  it('a missing object file throws naming the op, the path and ENOENT', (t) => {
    const session = open(t, { ringBytes: 64 << 10 });
    const path = '/nonexistent/missing.bpf.o';
    assertNativeError(() => session.addObject(path, {}), (e) => {
      assert.equal(e.op, 'bpf_object__open_file');
      assert.equal(e.code, 'ENOENT');
      assert.equal(e.errno, 2);
      assert.equal(e.message, `bpf_object__open_file(${path}): No such file or directory (errno 2)`);
    });
    return session.stop();
  });

  it('a verifier rejection throws from bpf_object__load with the log tail in err.log', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rf-native-'));
    try {
      const src = join(dir, 'bad.bpf.c');
      writeFileSync(src, [
        '#include <linux/bpf.h>',
        '#include <bpf/bpf_helpers.h>',
        'char LICENSE[] SEC("license") = "GPL";',
        'SEC("tracepoint/syscalls/sys_enter_getpid")',
        'int rf_bad(void *ctx) { return *(volatile int *)0; }',
      ].join('\n'));
      try {
        const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
        execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', src,
          '-o', join(dir, 'bad.bpf.o')], { stdio: 'pipe' });
      } catch (err) {
        // only a missing compiler outside CI is a reason to skip; a compile error of this
        // source, or no toolchain in CI (setup.sh installs it), is a failure to look at
        if (!toolchainMissing(err) || process.env.CI) throw err;
        t.skip(`no ${(err as NodeJS.ErrnoException).path} here to build a BPF object (scripts/setup.sh installs it)`);
        return;
      }
      const session = open(t, { ringBytes: 64 << 10 });
      assertNativeError(() => session.addObject(join(dir, 'bad.bpf.o'), {}), (e) => {
        assert.equal(e.op, 'bpf_object__load');
        assert.match(e.message, /^bpf_object__load\(bad\.bpf\.o\): .* \(errno \d+\)$/);
        assert.equal(e.code, 'EACCES');
        assert.ok(e.log && e.log.split('\n').length <= 20, 'at most 20 lines of log');
        assert.match(e.log!, /invalid mem access|R\d+ invalid/);
      });
      return session.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad options', (t) => {
    assertNativeError(() => new Session({ ringBytes: 100_000 }), (e) => {
      assert.match(e.message, /power of two/);
      assert.equal(e.code, 'EINVAL');
    });
    assert.throws(() => new Session({ maxPendingBatches: 0 }), TypeError);
  });
});

describe('Session: lifecycle', () => {
  it("loads while a profiler's SIGPROF hits the thread every millisecond (the verifier gives up on a pending signal)", () => {
    // the largest object: its verification takes many milliseconds; before signals were blocked around
    // bpf_object__load it failed here every time with EAGAIN
    const dir = mkdtempSync(join(tmpdir(), 'ringflow-prof-'));
    try {
      const script = join(dir, 'load.ts');
      writeFileSync(script, [
        `import { Session } from ${JSON.stringify(join(ROOT, 'native/index.ts'))};`,
        `import { encodeSettings, encodeL7Settings } from ${JSON.stringify(join(ROOT, 'collector/signals/settings.ts'))};`,
        `import { objectPath } from ${JSON.stringify(join(ROOT, 'collector/signals/registry.ts'))};`,
        'const s = new Session({});',
        "const info = s.addObject(objectPath('l7'), { ...encodeSettings({ selfTgid: process.pid }), ...encodeL7Settings({}) });",
        'console.log(`loaded ${info.name}, ${info.programs.length} programs`);',
        'await s.stop();',
      ].join('\n'));
      for (let i = 0; i < 2; i++) {
        const out = execFileSync(process.execPath, ['--disable-warning=ExperimentalWarning', '--cpu-prof', `--cpu-prof-dir=${dir}`, script], { encoding: 'utf8' });
        assert.match(out, /^loaded l7, \d+ programs/);
      }
      assert.ok(readdirSync(dir).some((f) => f.endsWith('.cpuprofile')), 'the profiler ran');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stop() is idempotent, before and after start, and concurrent calls all resolve', async (t) => {
    const idle = open(t, { ringBytes: 64 << 10 });
    await idle.stop();
    await idle.stop();

    const driver = await spawnDriver(1000);
    // a ring that holds all 1000 records, so the count cannot depend on how fast we drain
    const session = open(t, { ringBytes: 1 << 20 });
    addBench(session, driver.pid);
    let received = 0;
    session.start((b) => {
      received += forEachRecord(b, () => {});
    });
    await driver.go();
    await Promise.all([session.stop(), session.stop()]);
    assert.equal(received, 1000);
    await session.stop();
    assert.equal(session.drops().length, 16);
    assert.equal(session.stats().records, 1000);
    assertNativeError(() => session.addObject(BENCH_OBJ, {}), (e) => assert.equal(e.code, 'ESHUTDOWN'));
    assert.throws(() => session.start(() => {}), /stopped/);
  });

  it('a Worker that exits without stop() joins its thread and detaches its programs', async (t) => {
    const bpfFds = () => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return /bpf|perf_event/.test(readlinkSync(`/proc/self/fd/${fd}`));
      } catch {
        return false;
      }
    }).length;
    const before = bpfFds();
    const w = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.index).then(({ Session, u32 }) => {
        const s = new Session({ ringBytes: 1 << 16 });
        s.addObject(workerData.obj, { bench_tgid: u32(process.pid) });
        s.start(() => {});
        parentPort.postMessage('running');
      });
    `, { eval: true, workerData: { index: `${ROOT}native/index.ts`, obj: BENCH_OBJ } });
    const [msg] = await new Promise<unknown[]>((resolve, reject) => {
      w.once('message', (m) => resolve([m]));
      w.once('error', reject);
    });
    assert.equal(msg, 'running');
    assert.ok(bpfFds() > before, 'the worker holds BPF fds');
    await w.terminate();
    assert.equal(bpfFds(), before, 'all BPF fds closed (programs detached)');
  });
});

describe('kernelEnum', () => {
  it('names skb_drop_reason values from the kernel BTF, as bpftool reads them', () => {
    const e = kernelEnum('skb_drop_reason');
    // an independent reader of the same BTF: every value and name must agree,
    // not just one name found by itself
    const bpftool = ['/usr/sbin/bpftool', '/usr/bin/bpftool', '/sbin/bpftool'].find((p) => existsSync(p)) ?? 'bpftool';
    const dump = execFileSync(bpftool, ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    const at = dump.search(/^\[\d+\] ENUM 'skb_drop_reason' /m);
    assert.ok(at >= 0, 'bpftool lists enum skb_drop_reason');
    const want: Record<number, string> = {};
    for (const line of dump.slice(at).split('\n').slice(1)) {
      const m = /^\t'(\w+)' val=(\d+)$/.exec(line);
      if (!m) break;
      want[Number(m[2])] = m[1]!;
    }
    assert.ok(Object.keys(want).length > 10, `bpftool gave ${Object.keys(want).length} values`);
    assert.deepEqual(e, want);
  });

  it('an unknown enum throws naming it', (t) => {
    assertNativeError(() => kernelEnum('no_such_enum_rf'), (e) => {
      assert.match(e.message, /no_such_enum_rf/);
      assert.equal(e.code, 'ENOENT');
    });
  });
});
