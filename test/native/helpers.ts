/**
 * Shared by the native tests: builds what they need (getpid_driver, bench.bpf.o
 * if missing) and drives bench.bpf.o through a Session.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
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

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
