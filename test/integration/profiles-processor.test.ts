/**
 * The processor's profiles stage on a real broker, no BPF: ringflow.profile.stacks.v1
 * records built as the collector builds them (two services, one process each,
 * two stacks 3:1, one record per stack every 250 ms interval) produced live
 * into a 3-partition topic while `ringflow process` runs as a child, which is
 * SIGKILLed mid-stream and restarted. Out, read_committed on
 * ringflow.profiles.v1: every (service, window) once, and per service the
 * stacks' values sum to exactly what was produced (spin_a 3 per interval,
 * spin_b 1), the records and processes counted.
 *
 * Host names are unique per run, so other runs' records do not count.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep, type CliRun } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import type { ProfileOut } from '../../processor/profiles.ts';

const STACKS = 'ringflow.profile.stacks.v1';
const PROFILES = 'ringflow.profiles.v1';
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const HOST = `prof-${RUN}`;

const frame = (fn: string, offset: bigint) => ({ address: 0x400000n + offset, module: '/opt/spin', offset, function: fn, file: null, line: null, kind: 'USER' as const });

/** One interval's records of one process: spin_a 3 samples, spin_b 1, both under main. */
function interval(service: string, tgid: number, startNs: bigint, endNs: bigint): { key: string; value: Buffer }[] {
  const schema = schemaRegistry().byTopic(STACKS)!;
  return ([['spin_a', 0x1100n, 3n], ['spin_b', 0x1200n, 1n]] as const).map(([fn, off, value]) => ({
    key: `${HOST}/${tgid}`,
    value: encodeRecord(schema, {
      kind: 'ONCPU', window_start_ns: startNs, window_end_ns: endNs, pid: 0, tgid, comm: 'spin', process_name: service, value, sample_hz: 19,
      state: 'RUNNING', user_stack: 'OK', kernel_stack: 'NONE', frames: [frame(fn, off), frame('main', 0x1300n)],
      // boot_time 0: the window times are wall-clock ns already
      host: HOST, boot_time_ns: 0n,
    }),
  }));
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

describe('profiles stage: stacks -> profiles per window and service, exactly once', { timeout: 150_000 }, () => {
  let broker: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let proc: CliRun | undefined;
  const args = () => ['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '3', '--instance', `it-profiles-${RUN}`];

  before(async () => {
    broker = await ownBroker();
    kafka = new Kafka({ clientId: 'it-profiles', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [STACKS, PROFILES], 3);
    await admin.disconnect();
    proc = runCli(args());
    await proc.waitFor(/processing as/);
  });

  after(async () => {
    proc?.child.kill('SIGTERM');
    if (proc) await proc.exit;
    await broker?.stop();
  });

  test('killed mid-stream (SIGKILL) and restarted: every window of every service once, values exact', async () => {
    const services: [string, number][] = [['checkout', 101], ['search', 202]];
    const mine = async () => (await readTopic(broker.brokers, PROFILES)).map((r) => r.value as unknown as ProfileOut).filter((p) => p.host === HOST);
    const producer = kafka.producer();
    await producer.connect();
    let intervals = 0;
    try {
      const t0 = Date.now();
      let prev = BigInt(t0) * MS;
      let killed = false;
      while (Date.now() - t0 < 12_000) {
        await sleep(250);
        const now = BigInt(Date.now()) * MS;
        await producer.send({ topic: STACKS, messages: services.flatMap(([s, tgid]) => interval(s, tgid, prev, now)) });
        prev = now;
        intervals++;
        if (!killed && Date.now() - t0 > 5_000) {
          assert.ok((await mine()).length > 0, 'some profiles were written before the kill');
          proc!.child.kill('SIGKILL');
          await proc!.exit;
          killed = true;
          proc = runCli(args());
        }
      }
    } finally {
      await producer.disconnect().catch(() => {});
    }
    // every record is merged once its window closes (the last ones by the idle clock)
    const sumOf = (ps: ProfileOut[]) => ps.reduce((a, p) => a + Number(p.records), 0);
    await until(`${2 * intervals * services.length} records merged`, async () => sumOf(await mine()) >= 2 * intervals * services.length, 60_000);
    await sleep(3000);
    const ps = await mine();
    const windows = ps.map((p) => `${p.service}@${p.window_start_ns}`);
    assert.equal(new Set(windows).size, windows.length, `no (service, window) twice: ${windows.join(' ')}`);
    for (const [service] of services) {
      const of = ps.filter((p) => p.service === service);
      assert.ok(of.length >= 5, `${service}: ${of.length} windows`);
      const by: Record<string, bigint> = {};
      for (const p of of) {
        assert.equal(p.kind, 'ONCPU');
        assert.equal(p.state, 'RUNNING');
        assert.equal(p.sample_hz, 19);
        assert.equal(p.processes, 1);
        assert.equal(p.other_stacks, 0);
        for (const s of p.stacks) {
          const names = s.frames.map((i) => p.frames[i]!.function).join(';');
          by[names] = (by[names] ?? 0n) + BigInt(s.value);
        }
        assert.equal(BigInt(p.total), p.stacks.reduce((a, s) => a + BigInt(s.value), 0n));
      }
      assert.deepEqual(by, { 'spin_a;main': 3n * BigInt(intervals), 'spin_b;main': BigInt(intervals) }, `${service}: every sample once`);
      assert.equal(of.reduce((a, p) => a + Number(p.records), 0), 2 * intervals, `${service}: every record once`);
    }
  });
});
