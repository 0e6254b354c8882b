/**
 * The verifier's instruction budget, measured on this kernel: every program
 * the collector loads (sched, block, tcp, l7; the optional ones where their
 * hook exists), loaded by the collector's own loader with its settings, must
 * verify in under a quarter of the kernel's 1 M processed instructions. A
 * program that loads today at 900 k is one branch from "BPF program is too
 * large"; the in-kernel L7 work (issue 10) adds parsers to the very programs
 * that already take ~64 k, so each one's figure is pinned here, printed as a
 * table, and a growth that eats the headroom fails with the program named.
 *
 * The figure is the kernel's own: `verified_insns` in /proc/self/fdinfo of
 * each program fd the load opened (names from bpftool, which reads them from
 * BTF: the kernel keeps 15 characters). A refused program has none: its
 * figure comes from the verifier log's "processed N insns", and a refusal is
 * reported like an excess, never passed.
 *
 * Also here, because only a load can tell: the stack test's premise (the
 * kernel adds a bpf_loop callback's frame to its caller's; the fixture
 * test/fixtures/bpf-stack/loop-callback.bpf.c is refused for it), and that
 * l7.bpf.c built with -mcpu=v3 is still refused (design l7-in-kernel §4: its
 * rf_l7_iov_step callback states never converge).
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session, isNativeError } from '../../native/index.ts';
import { encodeL7Settings, encodeSettings } from '../../collector/signals/settings.ts';
import { SIGNAL_NAMES, objectPath } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { ROOT } from './helpers.ts';

/** The kernel's limit on processed instructions per program (BPF_COMPLEXITY_LIMIT_INSNS). */
const KERNEL_LIMIT = 1_000_000;
const BUDGET = KERNEL_LIMIT / 4;
const FIXTURES = `${ROOT}test/fixtures/bpf-stack/`;
/** As bpf/Makefile finds it: on PATH, else Debian's /usr/sbin (not on a non-root PATH). */
const BPFTOOL = existsSync('/usr/sbin/bpftool') ? '/usr/sbin/bpftool' : 'bpftool';

interface Row {
  readonly object: string;
  readonly program: string;
  /** processed instructions: verified_insns, or the log's figure for a refused program */
  readonly insns: number;
  /** why the kernel refused the program, when it did */
  readonly refused?: string;
}

/** prog_id -> verified_insns of every BPF program fd this process holds (link fds have no verified_insns). */
function ownPrograms(): Map<number, number> {
  const progs = new Map<number, number>();
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the fd of the directory listing itself, closed by now
    }
    const id = /^prog_id:\s+(\d+)$/m.exec(info);
    const insns = /^verified_insns:\s+(\d+)$/m.exec(info);
    if (id && insns) progs.set(Number(id[1]), Number(insns[1]));
  }
  return progs;
}

/** Full program names by id (bpftool reads them from BTF; the kernel's own name stops at 15 characters). */
function programNames(ids: Iterable<number>): Map<number, string> {
  const all = JSON.parse(execFileSync(BPFTOOL, ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { id: number; name?: string }[];
  const wanted = new Set(ids);
  return new Map(all.filter((p) => wanted.has(p.id)).map((p) => [p.id, p.name ?? `id ${p.id}`]));
}

/**
 * Loads one object with the collector's loader (optional programs left out
 * where their hook is missing) and returns each program's processed
 * instructions; a refusal is one row with the log's figure and the reason.
 */
async function measure(label: string, file: string, globals: Record<string, Buffer>): Promise<{ rows: Row[]; programs: string[]; skipped: string[] }> {
  const before = new Set(ownPrograms().keys());
  const session = new Session({ ringBytes: 1 << 16 });
  try {
    let programs: string[];
    let skipped: string[];
    try {
      const info = session.addObject(file, globals);
      programs = info.programs;
      skipped = info.skipped.map((k) => `${k.program} (${k.reason})`);
    } catch (e) {
      if (!isNativeError(e)) throw e;
      const log = e.log ?? '';
      const program = /prog '(\w+)': failed to load/.exec(log)?.[1] ?? '?';
      const processed = [...log.matchAll(/processed (\d+) insns/g)].at(-1)?.[1];
      // the verifier's own words for the limits this test is about; otherwise the errno
      const why = /BPF program is too large[^\n]*|The sequence of \d+ jumps is too complex|combined stack size of \d+ calls is \d+\. Too large|callback function not static/.exec(log)?.[0];
      return { rows: [{ object: label, program, insns: processed === undefined ? NaN : Number(processed), refused: why ?? `${e.code ?? e.errno}: ${e.message}` }], programs: [], skipped: [] };
    }
    const mine = [...ownPrograms()].filter(([id]) => !before.has(id));
    const names = programNames(mine.map(([id]) => id));
    const rows = mine.map(([id, insns]) => ({ object: label, program: names.get(id) ?? `id ${id}`, insns }));
    return { rows: rows.sort((a, b) => a.program.localeCompare(b.program)), programs, skipped };
  } finally {
    await session.stop();
  }
}

/** One line per program over the budget or refused; none when all fit. */
function overBudget(rows: readonly Row[]): string[] {
  return rows.filter((r) => r.refused !== undefined || !(r.insns < BUDGET)).map((r) =>
    r.refused !== undefined
      ? `${r.object}: ${r.program} refused after ${r.insns} insns (${r.refused})`
      : `${r.object}: ${r.program} verified in ${r.insns} insns, over the budget of ${BUDGET} (${KERNEL_LIMIT} / 4)`);
}

function printTable(t: TestContext, rows: readonly Row[]): void {
  for (const r of rows) {
    const pct = ((100 * r.insns) / KERNEL_LIMIT).toFixed(1);
    t.diagnostic(`${r.object.padEnd(22)} ${r.program.padEnd(26)} ${String(r.insns).padStart(8)} insns ${pct.padStart(5)}%${r.refused ? `  REFUSED: ${r.refused}` : ''}`);
  }
}

const arch = process.arch === 'arm64' ? 'arm64' : 'x86';
let dir = '';
/** Builds a source with clang -target bpf (extra flags appended), as bpf/Makefile does. */
function build(src: string, out: string, flags: string[] = []): string {
  const obj = join(dir, out);
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', `-D__TARGET_ARCH_${arch}`, '-I', `${ROOT}bpf`, '-Wall', '-Werror', ...flags, '-c', src, '-o', obj]);
  return obj;
}

before(() => {
  ensureTracefs(); // the l7 and tcp objects attach classic tracepoints
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'ringflow-verifier-'));
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

describe('verifier budget', () => {
  it(`every program the collector loads verifies in under ${BUDGET} instructions (${KERNEL_LIMIT} / 4), with and without filters`, async (t) => {
    const plain = encodeSettings({ selfTgid: process.pid });
    // every filter set: the code behind them is live (const volatile globals are known to the verifier)
    const filtered = encodeSettings({ selfTgid: process.pid, pid: 1, uid: 0, comm: 'ringflow-none', cgroupId: 1n, minLatencyNs: 1000n });
    const rows: Row[] = [];
    for (const [config, globals] of [['defaults', plain], ['filters', filtered]] as const) {
      for (const signal of SIGNAL_NAMES) {
        const l7 = signal === 'l7' ? encodeL7Settings(config === 'filters' ? { port: 8080, captureBytes: 16384, detectRecords: 0 } : {}) : {};
        const m = await measure(`${signal}.bpf.o ${config}`, objectPath(signal), { ...globals, ...l7 });
        // every program the loader says it loaded has a figure: none is passed for want of one
        assert.equal(m.rows.filter((r) => r.refused === undefined).length, m.programs.length, `${signal}: ${m.rows.map((r) => r.program).join(',')}`);
        assert.ok(m.programs.length > 0 || m.rows.length > 0, `${signal}: nothing loaded`);
        rows.push(...m.rows);
        // an optional program whose hook this kernel lacks is not loaded, so not measured: say so
        for (const k of m.skipped) t.diagnostic(`${signal}.bpf.o ${config}: not loaded here: ${k}`);
      }
    }
    printTable(t, rows);
    assert.ok(rows.some((r) => r.program === 'rf_l7_exit_read'), 'l7 data exits measured');
    assert.deepEqual(overBudget(rows), []);
  });

  it('a program that loads but over the budget is reported, not passed (fixture budget-heavy.bpf.c)', async (t) => {
    const m = await measure('budget-heavy.bpf.o', build(`${FIXTURES}budget-heavy.bpf.c`, 'budget-heavy.bpf.o'), {});
    printTable(t, m.rows);
    assert.deepEqual(m.programs, ['rf_fixture_heavy'], 'it loads');
    assert.ok(m.rows[0]!.insns > BUDGET && m.rows[0]!.insns < KERNEL_LIMIT, `between budget and limit: ${m.rows[0]!.insns}`);
    assert.deepEqual(overBudget(m.rows), [`budget-heavy.bpf.o: rf_fixture_heavy verified in ${m.rows[0]!.insns} insns, over the budget of ${BUDGET} (${KERNEL_LIMIT} / 4)`]);
  });

  it('today\'s l7.bpf.c built with -mcpu=v3 loads within the budget too (what turning -mcpu=v3 on in bpf/Makefile needs)', async (t) => {
    // design l7-in-kernel §4: v3 tracks 32-bit subregisters; the object of the
    // seventh session never converged in rf_l7_iov_step's bpf_loop callback
    // (refused at the 1 M limit). The in-kernel HTTP/1 rewrite (eighth session)
    // loads with v3 under the budget: this keeps it so until bpf/Makefile
    // turns v3 on (not yet: it would change every object the suite has run).
    const m = await measure('l7.bpf.o -mcpu=v3', build(`${ROOT}bpf/l7.bpf.c`, 'l7-v3.bpf.o', ['-mcpu=v3']), { ...encodeSettings({ selfTgid: process.pid }), ...encodeL7Settings({}) });
    printTable(t, m.rows);
    assert.ok(m.rows.some((r) => r.program === 'rf_l7_exit_read' && r.refused === undefined), 'the data exits load');
    assert.deepEqual(overBudget(m.rows), []);
  });

  it('the kernel adds a bpf_loop callback\'s frame to its caller\'s (what test/unit/bpf-stack.test.ts counts): loop-callback.bpf.c is refused', async (t) => {
    const m = await measure('loop-callback.bpf.o', build(`${FIXTURES}loop-callback.bpf.c`, 'loop-callback.bpf.o'), {});
    printTable(t, m.rows);
    assert.equal(m.rows.length, 1);
    assert.match(m.rows[0]!.refused ?? 'loaded', /combined stack size of 2 calls is (\d+)\. Too large/);
    const bytes = Number(/is (\d+)\./.exec(m.rows[0]!.refused!)![1]);
    // the program's frame alone is under 512: only the callback's frame on top makes it too large
    assert.ok(bytes > 512 && bytes <= 544, `combined ${bytes}`);
  });
});
