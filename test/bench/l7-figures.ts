/**
 * Pure parsing and arithmetic behind the l7overhead benchmark's figures
 * (test/bench/l7.ts), kept apart so they have table tests
 * (test/unit/bench-l7-figures.test.ts) and the benchmark file only measures.
 *
 *   wrk's output           -> requests, requests/s, p99
 *   /proc/PID/fdinfo/FD    -> a BPF program's id and its bpf_stats counters
 *                             (run_cnt, run_time_ns: counted only while
 *                             kernel.bpf_stats_enabled=1)
 *   bpftool prog show -j   -> program names (fdinfo has only ids)
 *   two fdinfo snapshots   -> per hook: calls, ns per call, total
 *   the collector's stats lines -> L7 captures, messages, kernel drops, CPU
 */

export interface WrkResult {
  /** requests completed in the run (wrk's "N requests in Xs") */
  requests: number;
  rps: number;
  p99_ms: number;
}

export function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in /.exec(out)?.[1]);
  const m = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(out);
  if (!Number.isFinite(rps) || !Number.isFinite(requests) || !m) throw new Error(`cannot read wrk's output:\n${out}`);
  const p99 = Number(m[1]) * (m[2] === 'us' ? 1e-3 : m[2] === 's' ? 1e3 : 1);
  return { requests, rps, p99_ms: p99 };
}

export interface ProgCounters {
  id: number;
  run_time_ns: bigint;
  run_cnt: bigint;
}

/**
 * One BPF program fd's /proc/PID/fdinfo text (kernel/bpf/syscall.c
 * bpf_prog_show_fdinfo: "prog_id:\t12\nrun_time_ns:\t..."); null for an fd
 * that is not a program (maps, links and perf events have other fields).
 * Counters are u64 in the kernel: kept as bigint.
 */
export function parseProgFdinfo(text: string): ProgCounters | null {
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\d+)\\s*$`, 'm').exec(text)?.[1];
  const id = field('prog_id');
  if (id === undefined) return null;
  return { id: Number(id), run_time_ns: BigInt(field('run_time_ns') ?? 0), run_cnt: BigInt(field('run_cnt') ?? 0) };
}

/**
 * `bpftool prog show -j`: program id -> name. bpftool gives the full function
 * name from BTF where the kernel's own name is cut at 15 characters.
 */
export function parseBpftoolNames(json: string): Map<number, string> {
  const names = new Map<number, string>();
  const list = JSON.parse(json) as unknown;
  if (!Array.isArray(list)) throw new Error('bpftool prog show -j: not a list');
  for (const p of list as { id?: unknown; name?: unknown }[]) {
    if (typeof p?.id === 'number') names.set(p.id, typeof p.name === 'string' && p.name !== '' ? p.name : `prog ${p.id}`);
  }
  return names;
}

export interface HookFigures {
  calls: number;
  ns_per_call: number | null;
  total_ns: number;
}

/**
 * What each hook ran between two snapshots of the same process's programs,
 * by name (programs of one name are summed), largest total first. A program
 * only in `after` counts from zero; one gone by `after` is left out (it ran
 * for an unknown part of the interval). Counters going backwards (a program
 * replaced by another of the same id: never, ids are not reused while the
 * kernel runs) would be a bug: they throw rather than print a negative.
 */
export function hookDeltas(before: readonly ProgCounters[], after: readonly ProgCounters[], names: ReadonlyMap<number, string>): Record<string, HookFigures> {
  const prev = new Map(before.map((p) => [p.id, p]));
  const byName = new Map<string, { calls: bigint; ns: bigint }>();
  for (const a of after) {
    const b = prev.get(a.id);
    const calls = a.run_cnt - (b?.run_cnt ?? 0n);
    const ns = a.run_time_ns - (b?.run_time_ns ?? 0n);
    if (calls < 0n || ns < 0n) throw new Error(`bpf_stats of program ${a.id} went backwards`);
    const name = names.get(a.id) ?? `prog ${a.id}`;
    const s = byName.get(name) ?? { calls: 0n, ns: 0n };
    s.calls += calls;
    s.ns += ns;
    byName.set(name, s);
  }
  const rows = [...byName].sort((x, y) => (y[1].ns > x[1].ns ? 1 : y[1].ns < x[1].ns ? -1 : x[0].localeCompare(y[0])));
  return Object.fromEntries(rows.map(([name, s]) => [name, {
    calls: Number(s.calls),
    ns_per_call: s.calls > 0n ? +(Number(s.ns) / Number(s.calls)).toFixed(1) : null,
    total_ns: Number(s.ns),
  }]));
}

export function totalNs(hooks: Record<string, HookFigures>): number {
  return Object.values(hooks).reduce((a, h) => a + h.total_ns, 0);
}

export interface PerRequest {
  bpf_ns_per_request: number | null;
  collector_cpu_us_per_request: number | null;
  observer_us_per_request: number | null;
}

/**
 * The observer's cost per HTTP request over one measured interval: BPF run
 * time (charged to the traced processes, wrk and the server, not to the
 * collector) plus the collector process's CPU. The two barely overlap: the
 * hooks also run on the collector's own syscalls (and return early on its
 * tgid), a few hundred ns per collector syscall counted in both.
 * null when no request completed (nothing to divide by).
 */
export function perRequest(bpfNs: number, collectorCpuSeconds: number, requests: number): PerRequest {
  if (!(requests > 0)) return { bpf_ns_per_request: null, collector_cpu_us_per_request: null, observer_us_per_request: null };
  const bpfUs = bpfNs / 1e3 / requests;
  const cpuUs = collectorCpuSeconds * 1e6 / requests;
  return {
    bpf_ns_per_request: +(bpfNs / requests).toFixed(1),
    collector_cpu_us_per_request: +cpuUs.toFixed(2),
    observer_us_per_request: +(bpfUs + cpuUs).toFixed(2),
  };
}

export interface CollectorTotals {
  /** records read off the ring, all types (the stats line's "read N") */
  read: number;
  /** L7 capture records into the tracker and messages out of it ("l7: captures N, messages M") */
  captures: number;
  /** HTTP/1 exchange records framed in the kernel ("HTTP/1 exchanges from the kernel N"): records too */
  exchanges: number;
  messages: number;
  kernel_drops: number;
  /** CPU seconds from each line's interval and "cpu N%" (whole percent: rough) */
  cpu_seconds: number;
  lines: number;
}

/** Sums of `ringflow collect`'s stats lines (cli/collect.ts summaryLine, l7SummaryPart, cpuSummaryPart) on its stderr. */
export function collectorTotals(stderr: string): CollectorTotals {
  const t: CollectorTotals = { read: 0, captures: 0, exchanges: 0, messages: 0, kernel_drops: 0, cpu_seconds: 0, lines: 0 };
  for (const line of stderr.split('\n')) {
    const head = /ringflow: ([\d.]+)s: read (\d+)\b/.exec(line);
    if (!head) continue;
    t.lines++;
    t.read += Number(head[2]);
    t.kernel_drops += Number(/, kernel drops (\d+)/.exec(line)?.[1] ?? 0);
    const l7 = /; l7: captures (\d+), messages (\d+)/.exec(line);
    if (l7) {
      t.captures += Number(l7[1]);
      t.messages += Number(l7[2]);
    }
    t.exchanges += Number(/HTTP\/1 exchanges from the kernel (\d+)/.exec(line)?.[1] ?? 0);
    const cpu = /, cpu (\d+)%/.exec(line);
    if (cpu) t.cpu_seconds += Number(head[1]) * Number(cpu[1]) / 100;
  }
  return t;
}

/** a / b rounded, or null when b is 0 (no exchange measured). */
export function ratio(a: number, b: number, digits = 2): number | null {
  return b > 0 ? +(a / b).toFixed(digits) : null;
}

/**
 * IRQ work interrupts so far, all CPUs (/proc/interrupts "IWI"): a ring
 * submit with BPF_RB_FORCE_WAKEUP (ringflow's programs force one on every
 * record while the consumer is rf_wakeup_bytes behind) raises one to wake the
 * consumer, inside the program's own run time. Host-wide: the runs without an
 * observer give the machine's background. null where the line is missing.
 */
export function irqWorkCount(interrupts: string): number | null {
  const line = /^\s*IWI:((?:\s+\d+)+)/m.exec(interrupts);
  if (!line) return null;
  return line[1]!.trim().split(/\s+/).reduce((a, n) => a + Number(n), 0);
}
