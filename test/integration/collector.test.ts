/**
 * The collector end to end on real parts: the real BPF programs on this
 * kernel, the real `ringflow collect` CLI, a real Kafka broker. Known work is
 * driven from separate processes and the topics are read back and decoded.
 * Records are told apart from other runs and other tests by a unique --host.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { rootOrSkip, testBrokers, readTopic, listTopics, collectorStatsTotals, runCli, run, sleep, TCP_DRIVER, type CliRun, type TopicRecord } from '../support/integration.ts';
import { schemaRegistry } from '../../schemas/index.ts';
import { DEADLETTER_TOPIC } from '../../collector/kafka-sink.ts';

const N_CONNECTS = 25;
const M_WRITES = 12;
const CPU_WORKERS = 4; // more than the 2 cores of our machines

describe('collector: kernel -> Avro -> Kafka', { timeout: 300_000 }, () => {
  let brokers = '';
  let stopBroker = async () => {};
  const host = `it-collect-${process.pid}-${Date.now()}`;
  let collector: CliRun | undefined;
  let tcp = { pid: 0, port: 0 };
  let ddPid = 0;
  const cpuPids: number[] = [];
  const topics = new Map<string, TopicRecord[]>();
  let exitCode: number | null = null;
  let privileged = true;

  before(async (t) => {
    privileged = process.getuid?.() === 0;
    if (!privileged) return;
    ({ brokers, stop: stopBroker } = await testBrokers());
    collector = runCli(['collect', '--brokers', brokers, '--host', host, '--stats-interval', '1s', '--partitions', '3']);
    await collector.waitFor(/collecting sched,block,tcp/);

    // N connects from one python3 process
    const r = await run('python3', ['-c', TCP_DRIVER, String(N_CONNECTS)]);
    assert.equal(r.code, 0, r.stderr);
    const [pid, port] = r.stdout.trim().split(/\s+/).map(Number);
    tcp = { pid: pid!, port: port! };

    // M direct-I/O writes of 64 KiB to a file on a block device (not tmpfs)
    const dir = fs.mkdtempSync(path.join('/var/tmp', 'ringflow-it-'));
    const file = path.join(dir, 'direct.bin');
    await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', `count=${M_WRITES}`, 'conv=fsync', 'status=none']);
    const dd = await run('dd', ['if=/dev/zero', `of=${file}`, 'bs=64k', `count=${M_WRITES}`, 'oflag=direct', 'conv=notrunc', 'status=none']);
    assert.equal(dd.code, 0, dd.stderr);
    ddPid = dd.pid;
    fs.rmSync(dir, { recursive: true, force: true });

    // CPU contention: more busy processes than cores, for 1.5 s
    const busy = 'import time\nt=time.time()+1.5\nwhile time.time()<t: pass';
    await Promise.all(
      Array.from({ length: CPU_WORKERS }, () => new Promise<void>((resolve) => {
        const c = spawn('python3', ['-c', busy], { stdio: 'ignore' });
        cpuPids.push(c.pid!);
        c.on('close', () => resolve());
      })),
    );

    await sleep(1500); // let the poll thread's timeout drain the last records
    collector.child.kill('SIGTERM');
    exitCode = await collector.exit;
    for (const t of await listTopics(brokers)) {
      // the dead-letter topic holds copies of refused records as they were, not records of a schema (the collector creates it at start)
      if (t.startsWith('ringflow.') && t !== DEADLETTER_TOPIC) topics.set(t, (await readTopic(brokers, t)).filter((r) => r.value.host === host));
    }
  });

  after(async () => {
    collector?.child.kill('SIGKILL');
    await stopBroker();
  });

  const ofTopic = (t: string) => topics.get(t) ?? [];

  test('stops cleanly on SIGTERM with exit 0', (t) => {
    if (!rootOrSkip(t)) return;
    assert.equal(exitCode, 0, collector!.stderr());
  });

  test(`${N_CONNECTS} connects give exactly ${N_CONNECTS} connect records with the right port and pid`, (t) => {
    if (!rootOrSkip(t)) return;
    const mine = ofTopic('ringflow.tcp.connect.v1').filter((r) => Number(r.value.dport) === tcp.port);
    assert.equal(mine.length, N_CONNECTS);
    for (const r of mine) {
      assert.equal(Number(r.value.tgid), tcp.pid);
      assert.equal(r.value.comm, 'python3');
      assert.equal(r.value.daddr, '127.0.0.1');
      assert.equal(r.value.state, 'ESTABLISHED');
      assert.ok((r.value.latency_ns as bigint) > 0n);
    }
    // one connection's events share a key, so they share a partition
    const accepts = ofTopic('ringflow.tcp.accept.v1').filter((r) => Number(r.value.sport) === tcp.port);
    assert.equal(accepts.length, N_CONNECTS, 'accepts, local side = listener port');
    for (const r of accepts) assert.equal(Number(r.value.tgid), tcp.pid);
    const connectKeys = new Set(mine.map((r) => r.key));
    for (const a of accepts) assert.ok(connectKeys.has(a.key), `accept key ${a.key} matches its connect's key`);
  });

  test(`${M_WRITES} direct-I/O writes give block records with their byte sizes`, (t) => {
    if (!rootOrSkip(t)) return;
    const mine = ofTopic('ringflow.block.io.v1').filter((r) => Number(r.value.tgid) === ddPid);
    assert.equal(mine.length, M_WRITES, `records of dd (pid ${ddPid})`);
    for (const r of mine) {
      assert.equal(Number(r.value.bytes), 65536);
      assert.equal(r.value.op, 'WRITE');
      assert.ok(Number(r.value.queue_depth) >= 1);
      assert.ok((r.value.latency_ns as bigint) > 0n);
    }
  });

  test('CPU contention gives run-queue latency records for the contending processes', (t) => {
    if (!rootOrSkip(t)) return;
    const rq = ofTopic('ringflow.sched.runqlat.v1');
    for (const pid of cpuPids) {
      const mine = rq.filter((r) => Number(r.value.tgid) === pid);
      assert.ok(mine.length > 0, `run-queue records for busy process ${pid}`);
      assert.ok(mine.some((r) => r.value.kind === 'PREEMPTED'), 'preempted while runnable');
    }
    const cs = ofTopic('ringflow.sched.cswitch.v1').filter((r) => cpuPids.includes(Number(r.value.tgid)));
    assert.ok(cs.some((r) => r.value.voluntary === 0), 'involuntary switches of busy loops');
  });

  test('every record on every topic decodes with the schema its fingerprint names, on its topic', (t) => {
    if (!rootOrSkip(t)) return;
    assert.ok(topics.size >= 8, `topics: ${[...topics.keys()]}`);
    const reg = schemaRegistry();
    for (const [topic, records] of topics) {
      for (const r of records) assert.equal(r.schema.topic, topic); // readTopic already failed on any undecodable record
      assert.ok(reg.byTopic(topic), `a schema for ${topic}`);
    }
  });

  test('stats records account for every event: produced = records on the topic, nothing lost', (t) => {
    if (!rootOrSkip(t)) return;
    const stats = ofTopic('ringflow.collector.stats.v1');
    assert.ok(stats.length >= 2, 'periodic plus final stats');
    const sum = collectorStatsTotals(stats);
    for (const [topic, a] of sum) {
      assert.equal(a.user, 0, `${topic}: no user drops`);
      assert.equal(a.produced, a.read, `${topic}: everything read was acknowledged`);
      assert.equal(ofTopic(topic).length, a.produced, `${topic}: records on the topic = produced`);
    }
    assert.ok(sum.get('ringflow.tcp.connect.v1')!.read >= N_CONNECTS);
  });
});
