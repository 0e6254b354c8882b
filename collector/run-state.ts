/**
 * A collector run's identity, and what the next run on the host can learn of
 * it after a crash.
 *
 * A SIGKILLed collector writes nothing more, so its end is never stated by
 * itself. Each time Kafka acknowledges one of its stats records, the run
 * writes `{run_id, end_ns}` (end_ns = that record's time_ns: the host is known
 * watched up to there) to a small file per host. The next run reads it at
 * start and puts it in its own stats records (previous_run_id,
 * previous_run_end_ns): from one record the processor knows that nothing
 * watched the host over (previous_run_end_ns, run_start_ns], crash or clean
 * stop alike.
 *
 * The file is written whole to a temporary name and renamed (a crash mid-write
 * leaves the old file, never half of one). Failing to read or write it never
 * stops the collector: it is counted and reported once; the next run then
 * states no predecessor (its gap shows as windows with no coverage point).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const DEFAULT_STATE_DIR = '/var/lib/ringflow';

export interface RunState {
  runId: string;
  /** time_ns of the run's last stats record that Kafka acknowledged. */
  endNs: bigint;
}

/** A new run's identity: 16 random hex digits. */
export function newRunId(): string {
  return crypto.randomBytes(8).toString('hex');
}

/** $RINGFLOW_STATE_DIR, else /var/lib/ringflow. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const d = env.RINGFLOW_STATE_DIR;
  return d !== undefined && d !== '' ? d : DEFAULT_STATE_DIR;
}

/** One file per --host name: several collectors (tests, containers) may share the directory. */
export function statePath(dir: string, host: string): string {
  return path.join(dir, `collector-${host.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/** The file's text -> the state, or null for anything that is not one of ours. Pure; table-tested. */
export function parseRunState(text: string): RunState | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const { run_id: id, end_ns: end } = v as { run_id?: unknown; end_ns?: unknown };
  if (typeof id !== 'string' || !/^[0-9a-f]{1,64}$/.test(id)) return null;
  if (typeof end !== 'string' || !/^\d{1,20}$/.test(end)) return null;
  const endNs = BigInt(end);
  if (endNs <= 0n || endNs > 0x7fffffffffffffffn) return null; // an Avro long
  return { runId: id, endNs };
}

export function formatRunState(s: RunState): string {
  return `${JSON.stringify({ run_id: s.runId, end_ns: String(s.endNs) })}\n`;
}

/**
 * Reads and writes one host's state file. Every failure is counted in
 * `errors`, and reported (with its cause) the first time only.
 */
export class RunStateFile {
  errors = 0;
  private dirMade = false;
  readonly file: string;
  private readonly log: (line: string) => void;
  constructor(file: string, log: (line: string) => void = (l) => console.error(l)) {
    this.file = file;
    this.log = log;
  }

  /** The previous run's state, or null (none, unreadable: said once). */
  read(): RunState | null {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return null; // first run on this host
      this.fail('read', err);
      return null;
    }
    const s = parseRunState(text);
    if (!s) this.fail('read', new Error('not a collector run state (ignored)'));
    return s;
  }

  /** Writes the state (temporary file + rename); false on failure (counted, said once). */
  write(s: RunState): boolean {
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      if (!this.dirMade) {
        fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o755 });
        this.dirMade = true;
      }
      fs.writeFileSync(tmp, formatRunState(s));
      fs.renameSync(tmp, this.file);
      return true;
    } catch (err) {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // nothing more to do: the write already failed and is counted
      }
      this.fail('write', err);
      return false;
    }
  }

  private fail(what: string, err: unknown): void {
    this.errors++;
    if (this.errors > 1) return;
    this.log(`ringflow: collector: cannot ${what} the run state file ${this.file} (${(err as Error)?.message ?? String(err)}); going on, but after a crash the next run cannot state this run's end (counted; further failures are not reported)`);
  }
}
