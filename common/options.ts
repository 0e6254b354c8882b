/**
 * Parsing of the CLI's option values. Pure functions (tgidOf reads /proc, and
 * parsePid takes it as a parameter): every bad value becomes a FatalError whose
 * message names the flag, the value and what is accepted, with exit code EXIT.usage.
 */
import fs from 'node:fs';
import { FatalError, EXIT } from './errors.ts';

const DURATION_UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** "1ms", "250us", "1.5s", "2m" -> nanoseconds. A bare number is rejected: units are required. */
export function parseDurationNs(flag: string, text: string): bigint {
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(text.trim());
  if (!m) {
    throw new FatalError(`${flag}: "${text}" is not a duration; use a number with a unit, e.g. 500us, 1ms, 2s, 5m`, { exitCode: EXIT.usage });
  }
  const [, num, unit] = m as unknown as [string, string, string];
  const scale = DURATION_UNITS[unit]!;
  const [int, frac = ''] = num.split('.');
  // exact decimal arithmetic: 1.5s must be 1500000000 ns, not a float approximation
  const fracDigits = frac.length;
  const value = BigInt(int! + frac) * scale / 10n ** BigInt(fracDigits);
  return value;
}

export function parseIntFlag(flag: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) {
    throw new FatalError(`${flag}: "${text}" is not a whole number; expected ${min}..${max}`, { exitCode: EXIT.usage });
  }
  const n = Number(text);
  if (n < min || n > max) {
    throw new FatalError(`${flag}: ${n} is out of range; expected ${min}..${max}`, { exitCode: EXIT.usage });
  }
  return n;
}

/** Kernel command names are at most 15 bytes (TASK_COMM_LEN - 1); longer never matches. */
export function parseComm(text: string): string {
  const bytes = Buffer.byteLength(text);
  if (bytes === 0 || bytes > 15) {
    throw new FatalError(`--comm: "${text}" must be 1..15 bytes, as the kernel truncates command names to 15 bytes`, { exitCode: EXIT.usage });
  }
  return text;
}

/** "host:port[,host:port]" -> list. */
export function parseBrokers(text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new FatalError(`--brokers: empty; expected host:port[,host:port...]`, { exitCode: EXIT.usage });
  for (const b of list) {
    const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(b);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new FatalError(`--brokers: "${b}" is not host:port`, { exitCode: EXIT.usage });
    }
  }
  return list;
}

/** Comma list validated against the known names; "all" means every one. */
export function parseList(flag: string, text: string, known: readonly string[]): string[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 1 && items[0] === 'all') return [...known];
  if (items.length === 0) throw new FatalError(`${flag}: empty; choose from ${known.join(', ')}`, { exitCode: EXIT.usage });
  for (const it of items) {
    if (!known.includes(it)) {
      throw new FatalError(`${flag}: unknown "${it}"; choose from ${known.join(', ')} (or all)`, { exitCode: EXIT.usage });
    }
  }
  return [...new Set(items)];
}

export const DAY_NS = 86_400_000_000_000n;

/**
 * A name carried in every record (--host) or in a transactional id
 * (--instance): an empty one would make every host's series one, and a name
 * with spaces or control characters breaks ids and attribute values.
 */
export function parseHost(text: string, flag = '--host'): string {
  if (!/^[\x21-\x7e]{1,255}$/.test(text)) {
    throw new FatalError(`${flag}: "${text}" must be 1..255 printable characters without spaces`, { exitCode: EXIT.usage });
  }
  return text;
}

/** Longest timer Node keeps as given (2^31-1 ms); a longer one fires after 1 ms with a warning. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const fmtNs = (ns: bigint): string => {
  for (const [unit, scale] of [['h', 3_600_000_000_000n], ['m', 60_000_000_000n], ['s', 1_000_000_000n], ['ms', 1_000_000n], ['us', 1_000n]] as const) {
    if (ns >= scale && ns % scale === 0n) return `${ns / scale}${unit}`;
  }
  return `${ns}ns`;
};

/**
 * A duration that must lie in [minNs, maxNs]: a zero window or a timer
 * longer than Node can arm is refused here, as one line, before anything
 * connects, instead of failing later deep inside a stage.
 */
export function parseDurationInRange(flag: string, text: string, minNs: bigint, maxNs: bigint): bigint {
  const ns = parseDurationNs(flag, text);
  if (ns < minNs || ns > maxNs) {
    throw new FatalError(`${flag}: ${text.trim()} is out of range; expected ${minNs === 0n ? '0' : fmtNs(minNs)}..${fmtNs(maxNs)}`, { exitCode: EXIT.usage });
  }
  return ns;
}

/** A duration for a millisecond timer: in range and a whole number of milliseconds. */
export function parseDurationMs(flag: string, text: string, minMs: number, maxMs: number = MAX_TIMER_MS): number {
  const ns = parseDurationInRange(flag, text, BigInt(minMs) * 1_000_000n, BigInt(maxMs) * 1_000_000n);
  if (ns % 1_000_000n !== 0n) {
    throw new FatalError(`${flag}: ${text.trim()} is not a whole number of milliseconds`, { exitCode: EXIT.usage });
  }
  return Number(ns / 1_000_000n);
}

/** The task ids of Linux: 1..PID_MAX_LIMIT (4194304). */
export const PID_MAX = 4_194_304;

/** What /proc says about a pid: its status file's Tgid, or undefined when no such task exists. */
export function tgidOf(pid: number, procRoot = '/proc'): number | undefined {
  let status: string;
  try {
    status = fs.readFileSync(`${procRoot}/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^Tgid:\s*(\d+)$/m.exec(status);
  return m ? Number(m[1]) : undefined;
}

/**
 * --pid filters on the kernel's tgid. A pid with no process behind it, or a
 * thread id, is accepted by the kernel filter and then matches nothing, and
 * the collector would run silently forever: refuse both here.
 */
export function parsePid(flag: string, text: string, tgid: (pid: number) => number | undefined = tgidOf): number {
  const pid = parseIntFlag(flag, text, 1, PID_MAX);
  const owner = tgid(pid);
  if (owner === undefined) {
    throw new FatalError(`${flag}: no process ${pid} is running (the filter would match nothing); check the pid with: ps -p ${pid}`, { exitCode: EXIT.usage });
  }
  if (owner !== pid) {
    throw new FatalError(`${flag}: ${pid} is a thread of process ${owner}; the filter takes a process id: ${flag} ${owner}`, { exitCode: EXIT.usage });
  }
  return pid;
}
