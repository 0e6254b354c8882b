/**
 * The profile signals end to end on real parts (issue 11): `ringflow collect
 * --signals profile,offcpu` on this kernel into a real Kafka broker, while a
 * fixture spins in spin_a and spin_b (3:1) and then sleeps. Records are read
 * back from ringflow.profile.stacks.v1 and told apart by a unique --host.
 *
 * - every record the stats say was read was produced, and the topic holds
 *   exactly that many (no silent loss, nothing twice), keyed host/tgid;
 * - the spin's on-CPU records name spin_a and spin_b (3:1 within 10 points);
 * - its off-CPU records hold its 500 ms sleep, state SLEEPING, within 10 %.
 * ~40 s (a broker of its own when run alone).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootOrSkip, testBrokers, readTopic, collectorStatsTotals, runCli, sleep, REPO_ROOT, type CliRun, type TopicRecord } from '../support/integration.ts';

const TOPIC = 'ringflow.profile.stacks.v1';
/** Sleeps 500 ms in nanosleep (the off-CPU stack is not checked here: libc has no frame pointers). */
const SLEEPER = `
#include <time.h>
int main(void) { struct timespec ts = { 0, 500 * 1000 * 1000 }; nanosleep(&ts, 0); return 0; }
`;

describe('profile signals: kernel -> drain -> Avro -> Kafka', { timeout: 300_000 }, () => {
  let brokers = '';
  let stopBroker = async () => {};
  const host = `it-profile-${process.pid}-${Date.now()}`;
  let collector: CliRun | undefined;
  let spinPid = 0;
  let sleepPid = 0;
  let spinBin = '';
  let records: TopicRecord[] = [];
  let stats: TopicRecord[] = [];
  let exitCode: number | null = null;
  let privileged = true;

  before(async () => {
    privileged = process.getuid?.() === 0;
    if (!privileged) return;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-it-profile-'));
    spinBin = path.join(dir, 'spin');
    execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-no-pie', '-o', spinBin, path.join(REPO_ROOT, 'test/fixtures/profile/spin.c')]);
    fs.writeFileSync(path.join(dir, 'sleeper.c'), SLEEPER);
    // named spin too: its comm passes the collector's --comm filter
    fs.mkdirSync(path.join(dir, 's'));
    execFileSync('gcc', ['-O0', '-o', path.join(dir, 's', 'spin'), path.join(dir, 'sleeper.c')]);
    ({ brokers, stop: stopBroker } = await testBrokers());
    // the spinner parked on stdin, so its pid can be the filter before it runs
    const spin = spawn(spinBin, ['1.5'], { stdio: ['pipe', 'ignore', 'inherit'] });
    await once(spin, 'spawn');
    spinPid = spin.pid!;
    collector = runCli(['collect', '--brokers', brokers, '--host', host, '--signals', 'profile,offcpu', '--comm', 'spin',
      '--profile-hz', '99', '--profile-interval', '1s', '--stats-interval', '1s', '--partitions', '2', '-q']);
    await collector.waitFor(/collecting profile,offcpu/);
    const spun = once(spin, 'exit');
    spin.stdin!.end('g');
    await spun;
    const sleeper = spawn(path.join(dir, 's', 'spin'), [], { stdio: 'ignore' });
    sleepPid = sleeper.pid!;
    await once(sleeper, 'exit');
    await sleep(2500); // two drains and two stats records
    collector.child.kill('SIGTERM');
    exitCode = await collector.exit;
    records = (await readTopic(brokers, TOPIC)).filter((r) => r.value.host === host);
    stats = (await readTopic(brokers, 'ringflow.collector.stats.v1')).filter((r) => r.value.host === host);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  after(async () => {
    collector?.child.kill('SIGKILL');
    await stopBroker();
  });

  test('stops cleanly; every record read was produced, and the topic holds each once, keyed host/tgid', (t) => {
    if (!privileged) return void rootOrSkip(t);
    assert.equal(exitCode, 0, collector?.stderr());
    const totals = collectorStatsTotals(stats).get(TOPIC);
    assert.ok(totals, `the stats records have an entry for ${TOPIC}`);
    assert.ok(records.length > 0);
    assert.deepEqual(totals, { read: records.length, produced: records.length, kernel: 0, user: 0 });
    for (const r of records) assert.equal(r.key, `${host}/${r.value.tgid}`);
  });

  test('on-CPU: the spin is named spin_a and spin_b from its binary, 3:1 within 10 points', (t) => {
    if (!privileged) return void rootOrSkip(t);
    let a = 0n, b = 0n;
    for (const r of records.filter((x) => x.value.kind === 'ONCPU' && x.value.tgid === BigInt(spinPid))) {
      const leaf = (r.value.frames as { function: string; kind: string; module: string }[]).find((f) => f.kind === 'USER');
      if (leaf?.function === 'spin_a') a += r.value.value as bigint;
      if (leaf?.function === 'spin_b') b += r.value.value as bigint;
      if (leaf?.function === 'spin_a' || leaf?.function === 'spin_b') assert.equal(leaf.module, spinBin);
    }
    assert.ok(a + b >= 40n, `samples: ${a} + ${b}`);
    const share = Number(a) / Number(a + b);
    assert.ok(Math.abs(share - 0.75) <= 0.1, `spin_a share ${(share * 100).toFixed(1)} %`);
  });

  test('off-CPU: the 500 ms nanosleep is there, SLEEPING, within 10 %', (t) => {
    if (!privileged) return void rootOrSkip(t);
    const slept = records.filter((x) => x.value.kind === 'OFFCPU' && x.value.tgid === BigInt(sleepPid) && x.value.state === 'SLEEPING')
      .reduce((s, r) => s + (r.value.value as bigint), 0n);
    assert.ok(Math.abs(Number(slept) / 1e6 - 500) <= 50, `slept ${Number(slept) / 1e6} ms`);
  });
});
