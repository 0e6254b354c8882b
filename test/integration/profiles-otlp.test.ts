/**
 * Profiles through the whole back half on real parts: a real broker, the real
 * processor (`ringflow process`), the real exporter (`ringflow export
 * --signals profiles`) and a real OpenTelemetry Collector (built from
 * scripts/otelcol, started by cli/otelcol.ts with service.profilesSupport)
 * writing what it receives to a file.
 *
 * Input: ringflow.profile.stacks.v1 records built as the collector builds
 * them (collector/profile/records.ts: two services, one process each, stacks
 * spin_a and spin_b under main at 3:1 each 250 ms interval) and produced with
 * a Kafka producer, not a live `ringflow collect --signals profile` on a
 * spinner: that one's 3:1 holds only within sampling noise (profile.test.ts
 * checks it, ±10 points at 19 Hz), while here the truth is exact, so a lost or
 * doubled window shows. The processor is SIGKILLed mid-stream and restarted.
 *
 * Checked in the Collector's file: one Resource per service with service.name
 * and host.name, function names through the dictionary, values exactly 3:1
 * and exactly what was produced (every sample once), each (service, window)
 * once.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ownBroker, freePort, runCli, sleep, type CliRun } from '../support/integration.ts';
import { startOtelcol, stopOtelcol, readOtlpFile } from '../../cli/otelcol.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import type { ProfileStackRecord } from '../../collector/profile/records.ts';

const STACKS = 'ringflow.profile.stacks.v1';
const PROFILES = 'ringflow.profiles.v1';
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const HOST = `otlp-prof-${RUN}`;

const frame = (fn: string, offset: bigint): ProfileStackRecord['frames'][number] =>
  ({ address: 0x555500000000n + offset, module: '/opt/spin', offset, function: fn, file: null, line: null, kind: 'USER' });

function interval(service: string, tgid: number, startNs: bigint, endNs: bigint): { key: string; value: Buffer }[] {
  const schema = schemaRegistry().byTopic(STACKS)!;
  return ([['spin_a', 0x1100n, 3n], ['spin_b', 0x1200n, 1n]] as const).map(([fn, off, value]) => {
    const r: ProfileStackRecord = {
      kind: 'ONCPU', window_start_ns: startNs, window_end_ns: endNs, pid: 0, tgid, comm: 'spin', process_name: service, value, sample_hz: 19,
      state: 'RUNNING', user_stack: 'OK', kernel_stack: 'NONE', frames: [frame(fn, off), frame('main', 0x1300n)],
    };
    // boot_time 0: the window times are wall-clock ns already
    return { key: `${HOST}/${tgid}`, value: encodeRecord(schema, { ...r, host: HOST, boot_time_ns: 0n }) };
  });
}

interface Seen { service: string; host: string; window: string; stacks: Record<string, number> }

/** Every profile of our host in the Collector's file, names resolved through each request's dictionary. */
function seen(file: string): Seen[] {
  const out: Seen[] = [];
  for (const { resourceProfiles, dictionary: d } of readOtlpFile(file).profiles) {
    const str = (i: number | undefined) => (d.stringTable ?? [])[i ?? 0] ?? '';
    // the Collector may re-intern attributes into the dictionary
    const attr = (a: any): [string, string] => [a.key ?? str(a.keyStrindex), a.value?.stringValue ?? str(a.value?.stringValueStrindex)];
    for (const rp of resourceProfiles) {
      const res = Object.fromEntries((rp.resource?.attributes ?? []).map(attr));
      if (res['host.name'] !== HOST) continue;
      for (const sp of rp.scopeProfiles ?? []) {
        for (const p of sp.profiles ?? []) {
          const stacks: Record<string, number> = {};
          for (const s of p.samples ?? []) {
            const locs: number[] = d.stackTable[s.stackIndex ?? 0].locationIndices ?? [];
            const names = locs.map((l) => str(d.functionTable[d.locationTable[l].lines?.[0]?.functionIndex ?? 0]?.nameStrindex)).join(';');
            stacks[names] = (stacks[names] ?? 0) + Number(s.values?.[0] ?? 0);
          }
          out.push({ service: res['service.name'], host: res['host.name'], window: String(p.timeUnixNano), stacks });
        }
      }
    }
  }
  return out;
}

describe('profiles: stacks -> processor -> exporter -> OTel Collector (OTLP profiles), exactly once', { timeout: 300_000 }, () => {
  let broker: Awaited<ReturnType<typeof ownBroker>>;
  let kafka: InstanceType<typeof Kafka>;
  let proc: CliRun | undefined;
  let exp: CliRun | undefined;
  let stateDir = '';
  let outputFile = '';
  const args = () => ['process', '--brokers', broker.brokers, '--window', '2s', '--lateness', '1s', '--partitions', '3', '--instance', `it-prof-otlp-${RUN}`];

  before(async () => {
    broker = await ownBroker();
    kafka = new Kafka({ clientId: 'it-profiles-otlp', brokers: [broker.brokers], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [STACKS, PROFILES], 3);
    await admin.disconnect();
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-prof-otelcol-'));
    const grpcPort = await freePort();
    ({ outputFile } = await startOtelcol({ stateDir, grpcPort }));
    proc = runCli(args());
    exp = runCli(['export', '--brokers', broker.brokers, '--signals', 'profiles', '--group-id', `it-prof-otlp-${RUN}`], { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `localhost:${grpcPort}` } });
    await proc.waitFor(/processing as/);
  });

  after(async () => {
    for (const c of [proc, exp]) c?.child.kill('SIGTERM');
    for (const c of [proc, exp]) if (c) await c.exit;
    if (stateDir) await stopOtelcol({ stateDir }).catch(() => {});
    await broker?.stop();
  });

  test('the Collector receives each service as a Resource, spin_a:spin_b exactly 3:1, every sample once across a processor SIGKILL', async () => {
    const services: [string, number][] = [['checkout', 101], ['search', 202]];
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
          proc!.child.kill('SIGKILL');
          await proc!.exit;
          killed = true;
          proc = runCli(args());
        }
      }
    } finally {
      await producer.disconnect().catch(() => {});
    }
    const total = (ss: Seen[]) => ss.reduce((a, s) => a + Object.values(s.stacks).reduce((x, y) => x + y, 0), 0);
    const want = 4 * intervals * services.length;
    const t1 = Date.now();
    while (total(seen(outputFile)) < want && Date.now() - t1 < 90_000) await sleep(1000);
    await sleep(3000);
    const ss = seen(outputFile);
    const windows = ss.map((s) => `${s.service}@${s.window}`);
    assert.equal(new Set(windows).size, windows.length, `each (service, window) once: ${windows.join(' ')}`);
    for (const [service] of services) {
      const of = ss.filter((s) => s.service === service);
      assert.ok(of.length >= 5, `${service}: ${of.length} profiles`);
      const sum: Record<string, number> = {};
      for (const s of of) for (const [k, v] of Object.entries(s.stacks)) sum[k] = (sum[k] ?? 0) + v;
      assert.deepEqual(sum, { 'spin_a;main': 3 * intervals, 'spin_b;main': intervals }, `${service}: every sample once, 3:1`);
    }
  });
});
