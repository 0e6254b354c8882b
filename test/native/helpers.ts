/**
 * Shared by the native tests: builds what they need (getpid_driver, bench.bpf.o
 * if missing) and drives bench.bpf.o through a Session.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Session, u32 } from '../../native/index.ts';
import { ensureTracefs } from '../../collector/preflight.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BENCH_OBJ = `${ROOT}bpf/.output/bench.bpf.o`;
export const DRIVER = `${ROOT}native/build/bench/getpid_driver`;
/** RF_EV_BENCH in bpf/events.h */
export const RF_EV_BENCH = 8;
/** struct rf_bench_event: 48-byte header, then u64 seq. */
export const BENCH_RECORD_SIZE = 64;
export const SEQ_OFFSET = 48;

export function buildPrerequisites(): void {
  ensureTracefs(); // bench.bpf.o attaches a classic tracepoint (syscalls:sys_enter_getpid)
  execFileSync('make', ['-s', '-C', `${ROOT}native/bench`], { stdio: 'inherit' });
  if (!existsSync(BENCH_OBJ)) execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
}

export interface Driver {
  child: ChildProcess;
  pid: number;
  /** Starts the getpid loop; resolves with the exit code when it is done. */
  go(): Promise<number | null>;
}

/** Spawns getpid_driver n, parked until go(). */
export async function spawnDriver(n: number): Promise<Driver> {
  const child = spawn(DRIVER, [String(n)], { stdio: ['pipe', 'ignore', 'inherit'] });
  await once(child, 'spawn');
  const exited = once(child, 'exit');
  return {
    child,
    pid: child.pid!,
    async go() {
      child.stdin!.end('g');
      const [code] = await exited;
      return code as number | null;
    },
  };
}

/** Loads bench.bpf.o into the session, filtered to the driver's pid. */
export function addBench(session: Session, pid: number): void {
  session.addObject(BENCH_OBJ, { bench_tgid: u32(pid) });
}

/** True as root; otherwise the test is skipped, except in CI, where BPF tests must run (CI runs as root). */
export function rootOrSkip(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI) throw new Error('native tests need root in CI (CI runs as root)');
  t.skip('needs root (loads BPF programs); run with sudo');
  return false;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A child started by startReady: its stdout lines so far (the "ready" line included) and its exit. */
export interface ReadyChild {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown[]>;
  readonly lines: string[];
}

/**
 * Spawns cmd (stdin a pipe, stdout read line by line, stderr inherited) and
 * resolves once it prints the line "ready": the point where a test attaches
 * its programs before releasing the child with a byte on stdin. Rejects if
 * it exits first. The child is killed when the test ends.
 */
export async function startReady(t: TestContext, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ReadyChild> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], ...opts });
  const exited = once(child, 'exit');
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((resolve, reject) => {
    rl.on('line', (l) => {
      lines.push(l);
      if (l === 'ready') resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before it was ready`)));
  });
  ready.catch(() => {});
  t.after(() => child.kill());
  await ready;
  return { child, exited, lines };
}

/** Ids of the BPF maps named `name` (bpftool shows the first 15 characters): take them before loading, to tell ours apart. */
export function mapIdsNamed(name: string): Set<number> {
  return new Set((JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8' })) as { id: number; name: string }[])
    .filter((m) => m.name === name).map((m) => m.id));
}

/** Per-CPU __u64 counters of the one map of that (15-character) name not in `notIn`, summed per index, by bpftool. */
export function bpftoolSums(name: string, notIn: Set<number>): bigint[] {
  const ids = [...mapIdsNamed(name)].filter((id) => !notIn.has(id));
  if (ids.length !== 1) throw new Error(`expected one new ${name} map (ours), found ${ids.length}`);
  const out = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(ids[0])], { encoding: 'utf8' })) as
    { formatted: { key: number; values: { value: number }[] } }[];
  const sums: bigint[] = [];
  for (const e of out) sums[e.formatted.key] = e.formatted.values.reduce((a, v) => a + BigInt(v.value), 0n);
  return sums;
}
