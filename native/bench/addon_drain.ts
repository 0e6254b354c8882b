/**
 * addon_drain: the drain benchmark through the addon, step for step the same as
 * native/bench/c_consumer.c (same driver, same object, same ring size, same
 * poll(10 ms) + consume strategy), so the two events/s figures compare the addon
 * (batching + the hand-over to JS + a JS walk over every record) with plain C.
 *
 * Usage: node native/bench/addon_drain.ts [--level] N [RING_BYTES]
 * --level: libbpf's level-triggered epoll instead of the addon's default edge-triggered one.
 * Prints {"events":N,"seconds":S,"events_per_s":X,"drops":D,"cpu_s":C}, plus batches and
 * polls on stderr. Needs root, bpf/.output/bench.bpf.o, the built addon and
 * `make -C native/bench` (for getpid_driver).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Session, countRecords, u32 } from '../index.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const BENCH_OBJ = `${root}bpf/.output/bench.bpf.o`;
const DRIVER = `${root}native/build/bench/getpid_driver`;

export interface DrainResult {
  events: number;
  seconds: number;
  events_per_s: number;
  drops: number;
  /** CPU time of this process (JS thread, poll thread, GC...) over the run. */
  cpu_s: number;
}

export async function addonDrain(n: number, ringBytes = 16 << 20, edgeTriggered = true): Promise<DrainResult> {
  // 1. the driver, parked on its stdin
  const child = spawn(DRIVER, [String(n)], { stdio: ['pipe', 'ignore', 'inherit'] });
  await once(child, 'spawn');
  const exited = once(child, 'exit');

  // 2. load bench.bpf.o for that pid
  const session = new Session({ ringBytes, edgeTriggered });
  session.addObject(BENCH_OBJ, { bench_tgid: u32(child.pid!) });
  let events = 0;
  session.start((batch) => {
    events += countRecords(batch);
  });

  // 3. go; 4. when the driver has exited, drain. As in c_consumer.c, the clock
  // stops once everything the driver produced has been consumed (here: handed
  // to JS), before teardown: detaching the programs and joining the thread
  // (stop()) take ~80 ms here, which c_consumer does after its clock too.
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  child.stdin!.end('g');
  const [code] = await exited;
  const deadline = Date.now() + 2000;
  while (events < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  let seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let cpu = process.cpuUsage(c0);
  const delivered = events;
  await session.stop(); // delivers what is left, if anything was (then the teardown is timed too)
  if (events !== delivered) {
    seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    cpu = process.cpuUsage(c0);
  }
  if (code !== 0) process.stderr.write(`addon_drain: driver exited with ${code}\n`);

  const drops = session.drops().reduce((a, b) => a + b, 0n);
  const st = session.stats();
  process.stderr.write(`addon_drain: batches=${st.batches} polls=${st.polls} wakeups=${st.wakeups}\n`);
  return { events, seconds, events_per_s: Math.round(events / seconds), drops: Number(drops),
    cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)) };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const level = args[0] === '--level';
  if (level) args.shift();
  const n = Number(args[0] ?? 5_000_000);
  const ring = args[1] ? Number(args[1]) : undefined;
  const r = await addonDrain(n, ring, !level);
  process.stdout.write(JSON.stringify({ ...r, seconds: Number(r.seconds.toFixed(6)) }) + '\n');
}
