/**
 * Parsing of the collector's option values. Pure functions: every bad value
 * becomes a FatalError whose message names the flag, the value and what is accepted.
 */
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
