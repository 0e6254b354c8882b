/**
 * Background-process plumbing shared by the local services (cli/kafka.ts,
 * cli/otelcol.ts): a pid file, an is-it-alive-and-ours check via /proc, a
 * detached spawn writing to a log file, and stop with SIGTERM then SIGKILL.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../collector/signals/registry.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- pid file

/** The pid recorded in `file`, or null when there is none (or it is garbage). */
export function readPidFile(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function writePidFile(file: string, pid: number): void {
  fs.writeFileSync(file, `${pid}\n`);
}

export function removePidFile(file: string): void {
  fs.rmSync(file, { force: true });
}

// ---------------------------------------------------------------- liveness

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // A zombie (exited, not yet reaped by its parent) still answers kill(0).
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}

/**
 * True when pid is alive and its command line (argv, from /proc) satisfies
 * `ours` (guards against pid reuse). Without /proc the pid file is trusted.
 */
export function isOwnProcess(pid: number, ours: (cmdline: string[]) => boolean): boolean {
  if (!isAlive(pid)) return false;
  try {
    return ours(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
  } catch {
    return true; // no /proc: trust the pid file
  }
}

// ---------------------------------------------------------------- start

export interface DetachedSpawn {
  /** Undefined when the process could not be launched (the pid file is then not written). */
  pid: number | undefined;
  /** Size of the log file before this start's banner: where this run's output begins. */
  logOffset: number;
}

/**
 * Append `banner` to `logFile`, then run `command` detached in its own process
 * group with stdout and stderr on that log, unref it and record its pid in `pidFile`.
 */
export function spawnDetached(
  command: string,
  args: string[],
  opts: { cwd: string; logFile: string; pidFile: string; banner: string },
): DetachedSpawn {
  const out = fs.openSync(opts.logFile, 'a');
  const logOffset = fs.fstatSync(out).size;
  fs.writeSync(out, opts.banner);
  const child = spawn(command, args, { cwd: opts.cwd, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const pid = child.pid;
  if (pid === undefined) return { pid, logOffset };
  child.unref();
  writePidFile(opts.pidFile, pid);
  return { pid, logOffset };
}

// ---------------------------------------------------------------- stop

/**
 * SIGTERM, poll every `pollMs` until it is gone or `timeoutMs` passes, then
 * SIGKILL (and wait up to 5 s more). Returns true when SIGKILL was sent.
 */
export async function killAndWait(pid: number, timeoutMs: number, pollMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return false;
    await sleep(pollMs);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  for (let i = 0; i < 50 && isAlive(pid); i++) await sleep(100);
  return true;
}

export interface DaemonStopResult {
  /** True when a live process of ours was found and stopped. */
  stopped: boolean;
  pid: number | null;
  /** True when SIGTERM did not end it in time and SIGKILL was sent. */
  killed: boolean;
}

/** Stop the process `pidFile` names when `ours(pid)` holds; the pid file is removed either way. */
export async function stopDaemon(pidFile: string, ours: (pid: number) => boolean, timeoutMs: number, pollMs = 100): Promise<DaemonStopResult> {
  const pid = readPidFile(pidFile);
  if (pid === null || !ours(pid)) {
    removePidFile(pidFile);
    return { stopped: false, pid: null, killed: false };
  }
  const killed = await killAndWait(pid, timeoutMs, pollMs);
  removePidFile(pidFile);
  return { stopped: true, pid, killed };
}

// ---------------------------------------------------------------- ports and logs

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** The last `lines` lines of a file; '' when it cannot be read. */
export function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Downloads and builds kept between runs: ${RINGFLOW_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ringflow}. */
export function cacheRoot(): string {
  const env = process.env;
  if (env.RINGFLOW_CACHE) return path.resolve(env.RINGFLOW_CACHE);
  const xdg = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'ringflow');
}

/** A local service's state directory: ${RINGFLOW_STATE:-<repo>/.state}/<name>. */
export function stateDirFor(name: string): string {
  const base = process.env.RINGFLOW_STATE ? path.resolve(process.env.RINGFLOW_STATE) : path.join(REPO_ROOT, '.state');
  return path.join(base, name);
}
