/**
 * Soak finding 5, stage 2's side: the broker goes away while a window is
 * open; the collectors hold what happens meanwhile and send it, with its true
 * (older) event times, a few seconds after the broker is back (their
 * back-off). Stage 2 must count those events in their window, not as late: a
 * partition's silence says nothing while the stage cannot fetch, nor until the
 * producers have had time to re-send, and the idle clock must not run past
 * what an answered fetch vouches for (the first seconds of an outage, before
 * it shows as a gap).
 *
 * Real broker (its own), stopped and started on the same state; `ringflow
 * process` as a child with the soak's window (2 s) and lateness (3 s), so an
 * outage of 12 s is far past lateness + idle grace (8 s).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ownBroker, readTopic, runCli, sleep, type CliRun } from '../support/integration.ts';
import { encodeRecord, schemaRegistry } from '../../schemas/index.ts';
import { Kafka, logLevel } from '../../kafka/kafkajs.ts';
import { ensureTopics } from '../../kafka/client.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';

const RUNQ = 'ringflow.sched.runqlat.v1';
const METRICS = 'ringflow.metrics.v1';
const METRIC = 'ringflow.sched.runqueue.latency';
const WINDOW_NS = 2_000_000_000n;
const MS = 1_000_000n;
const RUN = `${process.pid}${Date.now().toString(36)}`;
const HOST = `agg-outage-${RUN}`;
/** How long the broker stays away: past lateness (3 s) + idle grace (5 s) + the fetch gap (10 s). */
const OUTAGE_MS = 12_000;
/**
 * When the held event reaches Kafka after stages 1 and 2 are back: a
 * collector's back-off (up to the idle grace, 5 s) and stage 1's catching up.
 * Past the partition's quiet period (5 s) after stage 2 reads again, so a
 * clock counting silence from the re-read closes the window first; within
 * grace + quiet (10 s) from stage 2's first answered fetch.
 */
const RESEND_AFTER_MS = Number(process.env.AGG_OUTAGE_RESEND_MS ?? 7000);

function runq(at: bigint, pid: number) {
  return {
    key: `${HOST}/${pid}`,
    value: encodeRecord(schemaRegistry().byTopic(RUNQ)!, {
      cpu: 0, pid, tgid: pid, uid: 0, ts_ns: at, cgroup_id: 1n, comm: 'held', latency_ns: 1_000_000n, prev_pid: 0, kind: 'WAKEUP', host: HOST, boot_time_ns: 0n,
    }),
  };
}

/** Resolves when the part of `proc`'s stderr from `from` on matches `re`. */
async function logged(p: CliRun, re: RegExp, from: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.stderr().slice(from))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in stderr:\n${p.stderr()}`);
    await sleep(100);
  }
  return Date.now();
}

let broker: Awaited<ReturnType<typeof ownBroker>> | undefined;
let proc: CliRun | undefined;

// in reverse order of set-up (node runs these in the order added): the broker stops last
after(async () => {
  proc?.child.kill('SIGTERM');
  if (proc) await proc.exit;
  await broker?.stop();
});

/** A fresh producer per send, as a collector's may span a broker restart. */
async function send(brokers: string, messages: { key: string; value: Buffer }[]): Promise<void> {
  const kafka = new Kafka({ clientId: 'it-agg-outage', brokers: [brokers], logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({ topic: RUNQ, messages });
  } finally {
    await producer.disconnect();
  }
}

interface Tally {
  /** window start -> events counted in it */
  counted: Map<string, number>;
  /** late_events of this host's run-queue points */
  late: number;
}

async function tally(brokers: string): Promise<Tally> {
  const t: Tally = { counted: new Map(), late: 0 };
  for (const r of await readTopic(brokers, METRICS)) {
    const v = r.value as { name: string; window_start_ns: bigint; attributes: { key: string; value: string }[]; histogram: { count: bigint } | null; late_events: bigint };
    if (v.name !== METRIC || !v.attributes.some((a) => a.key === 'host.name' && a.value === HOST)) continue;
    const k = String(v.window_start_ns);
    t.counted.set(k, (t.counted.get(k) ?? 0) + Number(v.histogram?.count ?? 0n));
    t.late += Number(v.late_events);
  }
  return t;
}

test('events a collector held through a broker outage are counted in their window, not late', { timeout: 240_000 }, async (t) => {
  broker = await ownBroker();
  const b = broker;
  const kafka = new Kafka({ clientId: 'it-agg-outage', brokers: [b.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, [RUNQ, METRICS], 1);
  await admin.disconnect();
  proc = runCli(['process', '--brokers', b.brokers, '--window', '2s', '--lateness', '3s', '--partitions', '1', '--instance', `it-agg-outage-${RUN}`]);
  await proc.waitFor(/processing as/);
  await sleep(3000); // the stages are fetching

  // the window's first event reaches stage 2 before the outage
  const at = BigInt(Date.now()) * MS;
  const windowStart = String((at / WINDOW_NS) * WINDOW_NS);
  await send(b.brokers, [runq(at, 1)]);
  await sleep(1000);
  const down = Date.now();
  const logFrom = proc.stderr().length;
  await stopBroker({ stateDir: b.stateDir });
  await sleep(Math.max(0, OUTAGE_MS - (Date.now() - down)));
  await startBroker({ stateDir: b.stateDir, port: b.port, controllerPort: b.controllerPort });
  const up = Date.now();
  // stage 2 (and stage 1, which forwards the held event) read again; kafkajs rejoins after a broker restart
  const [back, back1] = await Promise.all([
    logged(proc, /stage 2 \(aggregate\): consumer back in its group/, logFrom, 120_000),
    logged(proc, /stage 1 \(repartition\): consumer back in its group/, logFrom, 120_000),
  ]);
  // the event the collector held, with its true time (in the same window), sent after its back-off
  await sleep(Math.max(0, back + RESEND_AFTER_MS - Date.now()));
  await send(b.brokers, [runq(at + 1000n, 2)]);
  t.diagnostic(`broker down ${((up - down) / 1000).toFixed(1)} s; stage 2 back ${((back - up) / 1000).toFixed(1)} s after, stage 1 ${((back1 - up) / 1000).toFixed(1)} s; the held event sent ${((Date.now() - back) / 1000).toFixed(1)} s after that`);

  // both events are accounted for, counted or late, once the window closed (the idle clock closes it)
  const deadline = Date.now() + 90_000;
  let seen = await tally(b.brokers);
  const total = (x: Tally) => [...x.counted.values()].reduce((a, c) => a + c, 0) + x.late;
  while (total(seen) < 2 && Date.now() < deadline) {
    await sleep(1000);
    seen = await tally(b.brokers);
  }
  await sleep(3000); // a late count or a duplicate would show by now
  seen = await tally(b.brokers);
  t.diagnostic(`counted ${JSON.stringify([...seen.counted])}, late ${seen.late}`);
  assert.deepEqual({ window: seen.counted.get(windowStart) ?? 0, late: seen.late }, { window: 2, late: 0 }, `processor log:\n${proc.stderr()}`);
});
