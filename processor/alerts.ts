/**
 * Alert rules over ringflow.metrics.v1 points: parsing/validation (YAML) and
 * a pure, serializable evaluator. No Kafka here: see alerts-stage.ts.
 *
 * Evaluation (see docs/alerts.md):
 *   - a point feeds every rule whose metric and `where` filter it matches; per
 *     (rule, window, group) the points merge (ExpHistogram.merge, or summed);
 *   - a rule's window is evaluated, in window order, once every source
 *     partition's clock (latest window start it delivered) has reached the
 *     window's end + graceWindows × window length, or on flush(untilNs);
 *   - a point for a window its rule already evaluated is late: counted, ignored;
 *   - per (rule, group): `for` consecutive true windows -> one FIRING; the
 *     first false window after that -> one RESOLVED. A group with no points in
 *     an evaluated window is false (no data). A window skipped entirely (no
 *     point of the rule) resets the counts and resolves firing groups.
 */
import { parse as parseYaml } from 'yaml';
import { ExpHistogram } from './histogram.ts';
import { METRICS } from './aggregate.ts';

export const STATS = ['p50', 'p90', 'p99', 'p99.9', 'max', 'min', 'mean', 'count', 'sum'] as const;
export type Stat = (typeof STATS)[number];
export const OPS = ['>', '>=', '<', '<='] as const;
export type Op = (typeof OPS)[number];
const QUANTILES: Partial<Record<Stat, number>> = { p50: 0.5, p90: 0.9, p99: 0.99, 'p99.9': 0.999 };

export interface AlertRule {
  readonly name: string;
  readonly metric: string;
  readonly stat: Stat;
  readonly op: Op;
  /** In the metric's unit (seconds for durations). */
  readonly threshold: number;
  readonly for: number;
  /** Sorted, unique attribute keys. */
  readonly by: readonly string[];
  readonly where: Readonly<Record<string, string>>;
}

export class RulesError extends Error {}

const FIELDS = new Set(['name', 'metric', 'stat', 'op', 'threshold', 'for', 'by', 'where']);
const DURATION_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 };

/** "10ms" -> 0.01 (seconds); undefined when not a duration. */
export function parseDurationSeconds(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)$/.exec(text.trim());
  return m ? (Number(m[1]) * DURATION_NS[m[2]!]!) / 1e9 : undefined;
}

/** Parses a rules file (YAML); throws RulesError with one line naming the rule and field. */
export function parseRules(text: string, source = 'rules'): AlertRule[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new RulesError(`${source}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  return validateRules(doc, source);
}

export function validateRules(doc: unknown, source = 'rules'): AlertRule[] {
  const list = (doc as { rules?: unknown } | null)?.rules;
  if (doc === null || typeof doc !== 'object' || !Array.isArray(list)) throw new RulesError(`${source}: expected a top-level "rules:" list`);
  const seen = new Set<string>();
  return list.map((r: unknown, i: number) => {
    const raw = r as Record<string, unknown>;
    const name = raw && typeof raw === 'object' && typeof raw.name === 'string' && raw.name.trim() !== '' ? raw.name : undefined;
    const where = (field: string, msg: string): never => {
      throw new RulesError(`${source}: rule ${name === undefined ? `#${i + 1}` : `"${name}"`}: ${field}: ${msg}`);
    };
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return where('rule', 'expected a mapping');
    if (name === undefined) return where('name', 'missing or empty');
    if (seen.has(name)) where('name', 'duplicate rule name');
    seen.add(name);
    for (const k of Object.keys(raw)) if (!FIELDS.has(k)) where(k, `unknown field (fields: ${[...FIELDS].join(', ')})`);
    const def = METRICS.find((m) => m.name === raw.metric);
    if (!def) return where('metric', `unknown metric ${JSON.stringify(raw.metric)} (known: ${[...new Set(METRICS.map((m) => m.name))].join(', ')})`);
    const stat = raw.stat as Stat;
    if (!STATS.includes(stat)) where('stat', `${JSON.stringify(raw.stat)} is not one of ${STATS.join('|')}`);
    if (def.kind === 'sum' && stat !== 'sum') where('stat', `${def.name} is a sum: only "sum" applies`);
    const op = raw.op as Op;
    if (!OPS.includes(op)) where('op', `${JSON.stringify(raw.op)} is not one of ${OPS.join(' ')}`);
    const durationStat = def.unit === 's' && stat !== 'count';
    let threshold: number | undefined;
    if (typeof raw.threshold === 'number' && Number.isFinite(raw.threshold)) threshold = raw.threshold;
    else if (typeof raw.threshold === 'string' && durationStat) threshold = parseDurationSeconds(raw.threshold);
    if (threshold === undefined) {
      where('threshold', durationStat
        ? `${JSON.stringify(raw.threshold)} is not a duration (e.g. 500us, 10ms, 1.5s) or a number of seconds`
        : `${JSON.stringify(raw.threshold)} is not a number (${def.name}'s ${stat} is in ${def.unit})`);
    }
    const forN = raw.for === undefined ? 1 : raw.for;
    if (typeof forN !== 'number' || !Number.isInteger(forN) || forN < 1 || forN > 10000) where('for', `${JSON.stringify(raw.for)} is not a whole number of windows >= 1`);
    const keys = new Set(def.dimensions.map((d) => d.key));
    const byRaw = raw.by === undefined ? [] : typeof raw.by === 'string' ? [raw.by] : raw.by;
    if (!Array.isArray(byRaw) || !byRaw.every((k) => typeof k === 'string')) return where('by', 'expected a list of attribute keys');
    for (const k of byRaw) if (!keys.has(k)) where('by', `${def.name} has no attribute ${JSON.stringify(k)} (it has: ${[...keys].join(', ')})`);
    const whereRaw = raw.where === undefined || raw.where === null ? {} : raw.where;
    if (typeof whereRaw !== 'object' || Array.isArray(whereRaw)) return where('where', 'expected a mapping of attribute: value');
    const filter: Record<string, string> = {};
    for (const [k, v] of Object.entries(whereRaw as Record<string, unknown>)) {
      if (!keys.has(k)) where('where', `${def.name} has no attribute ${JSON.stringify(k)} (it has: ${[...keys].join(', ')})`);
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') where('where', `${k}: expected a scalar value`);
      filter[k] = String(v);
    }
    return Object.freeze({ name, metric: def.name, stat, op, threshold: threshold!, for: forN as number, by: Object.freeze([...new Set(byRaw as string[])].sort()), where: Object.freeze(filter) });
  });
}

// ---------------------------------------------------------------- evaluator

/** A decoded MetricPoint (schemas/metrics.avsc; longs as bigint or number). */
export interface MetricPointValue {
  name: string;
  kind: string;
  attributes: readonly { key: string; value: string }[];
  window_start_ns: bigint | number;
  window_end_ns: bigint | number;
  histogram: Record<string, unknown> | null;
  sum: bigint | number | null;
}

export type AlertState = 'FIRING' | 'RESOLVED';

/** One record of ringflow.alerts.v1 (schemas/alerts.avsc). */
export interface AlertRecord {
  rule: string;
  state: AlertState;
  group: { key: string; value: string }[];
  metric: string;
  stat: string;
  value: number;
  threshold: number;
  window_start_ns: bigint;
  window_end_ns: bigint;
  windows: number;
  processor: string;
}

/** Kafka key of an alert: rule + group, e.g. `runq-high{host.name="h1"}`. */
export function alertKey(a: Pick<AlertRecord, 'rule' | 'group'>): string {
  return `${a.rule}{${a.group.map((g) => `${g.key}=${JSON.stringify(g.value)}`).join(',')}}`;
}

export interface Source {
  partition: number;
  offset: bigint;
}

interface GroupAcc {
  attrs: [string, string][];
  hist: ExpHistogram | null;
  sum: number;
}

interface PendingWindow {
  start: bigint;
  end: bigint;
  groups: Map<string, GroupAcc>;
}

interface GroupState {
  a: [string, string][];
  /** Consecutive windows the condition held. */
  c: number;
  /** Firing. */
  f: boolean;
}

interface RuleState {
  /** Last evaluated window [start, end), as decimal strings in JSON. */
  lastStart: bigint | null;
  lastEnd: bigint | null;
  groups: Map<string, GroupState>;
}

export interface EvaluatorOptions {
  processor: string;
  /** Extra windows every source must have passed before a window is evaluated (default 0). */
  graceWindows?: number;
}

export interface EvaluatorCounters {
  matched: number;
  late: number;
  kindMismatch: number;
  evaluated: number;
}

export interface EvaluatorJSON {
  v: 1;
  rules: Record<string, { s: string | null; e: string | null; g: Record<string, GroupState> }>;
  clocks: Record<string, string>;
}

const toBig = (v: bigint | number): bigint => (typeof v === 'bigint' ? v : BigInt(v));
const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : (v as number));

function histogramOf(h: Record<string, unknown>): ExpHistogram {
  return ExpHistogram.fromJSON({
    scale: num(h.scale),
    zero_count: num(h.zero_count),
    positive_offset: num(h.positive_offset),
    positive_buckets: (h.positive_buckets as unknown[]).map(num),
    count: num(h.count),
    sum: num(h.sum),
    min: num(h.min),
    max: num(h.max),
  });
}

/** The stat of a merged group; NaN when undefined (no values). */
export function statValue(stat: Stat, acc: { hist: ExpHistogram | null; sum: number }): number {
  const h = acc.hist;
  if (!h) return stat === 'sum' ? acc.sum : NaN;
  if (stat === 'count') return h.count;
  if (stat === 'sum') return h.sum;
  if (h.count === 0) return NaN;
  const q = QUANTILES[stat];
  if (q !== undefined) return h.quantile(q);
  const j = h.toJSON();
  return stat === 'max' ? j.max : stat === 'min' ? j.min : j.sum / j.count;
}

export function compare(op: Op, value: number, threshold: number): boolean {
  if (Number.isNaN(value)) return false;
  return op === '>' ? value > threshold : op === '>=' ? value >= threshold : op === '<' ? value < threshold : value <= threshold;
}

export class AlertEvaluator {
  readonly rules: readonly AlertRule[];
  readonly counters: EvaluatorCounters = { matched: 0, late: 0, kindMismatch: 0, evaluated: 0 };
  private readonly processor: string;
  private readonly grace: bigint;
  private readonly state = new Map<string, RuleState>();
  private readonly pending = new Map<string, Map<bigint, PendingWindow>>();
  /** Per source partition: latest window start delivered. */
  private readonly clocks = new Map<number, bigint>();
  /** Min offset of the points held by pending windows, per source partition. */
  private readonly pendingOffsets = new Map<string, Map<number, bigint>>();
  private sources: readonly number[] | null = null;

  constructor(rules: readonly AlertRule[], opts: EvaluatorOptions) {
    this.rules = rules;
    this.processor = opts.processor;
    this.grace = BigInt(opts.graceWindows ?? 0);
    for (const r of rules) {
      this.state.set(r.name, { lastStart: null, lastEnd: null, groups: new Map() });
      this.pending.set(r.name, new Map());
    }
  }

  /**
   * The source partitions whose clocks gate evaluation (the stage's assignment).
   * Null (default): the partitions seen so far.
   */
  setSources(partitions: readonly number[] | null): void {
    this.sources = partitions === null ? null : [...partitions];
  }

  /** Feeds one point; returns the alerts of the windows it completed. */
  add(p: MetricPointValue, source: Source = { partition: 0, offset: 0n }): AlertRecord[] {
    const start = toBig(p.window_start_ns);
    const end = toBig(p.window_end_ns);
    const attrs = new Map(p.attributes.map((a) => [a.key, a.value]));
    for (const r of this.rules) {
      if (r.metric !== p.name) continue;
      if (!Object.entries(r.where).every(([k, v]) => attrs.get(k) === v)) continue;
      const rs = this.state.get(r.name)!;
      if (rs.lastStart !== null && start <= rs.lastStart) {
        this.counters.late++;
        continue;
      }
      const isHist = p.kind === 'HISTOGRAM' && p.histogram !== null;
      if (isHist !== (METRICS.find((m) => m.name === r.metric)!.kind === 'histogram')) {
        this.counters.kindMismatch++;
        continue;
      }
      this.counters.matched++;
      const wins = this.pending.get(r.name)!;
      let w = wins.get(start);
      if (!w) wins.set(start, (w = { start, end, groups: new Map() }));
      const gAttrs: [string, string][] = r.by.map((k) => [k, attrs.get(k) ?? '']);
      const gk = JSON.stringify(gAttrs);
      let g = w.groups.get(gk);
      if (!g) w.groups.set(gk, (g = { attrs: gAttrs, hist: null, sum: 0 }));
      if (isHist) {
        const h = histogramOf(p.histogram!);
        if (g.hist) g.hist.merge(h);
        else g.hist = h;
      } else g.sum += num(p.sum ?? 0);
      const key = `${r.name}\u0000${start}`;
      let offs = this.pendingOffsets.get(key);
      if (!offs) this.pendingOffsets.set(key, (offs = new Map()));
      const o = offs.get(source.partition);
      if (o === undefined || source.offset < o) offs.set(source.partition, source.offset);
    }
    const c = this.clocks.get(source.partition);
    if (c === undefined || start > c) this.clocks.set(source.partition, start);
    return this.evaluateReady();
  }

  /** The clock every source has reached; null while a source has delivered nothing. */
  private clock(): bigint | null {
    const parts = this.sources ?? [...this.clocks.keys()];
    if (parts.length === 0) return null;
    let min: bigint | null = null;
    for (const p of parts) {
      const c = this.clocks.get(p);
      if (c === undefined) return null;
      if (min === null || c < min) min = c;
    }
    return min;
  }

  private evaluateReady(): AlertRecord[] {
    const clock = this.clock();
    if (clock === null) return [];
    return this.evaluateWhile((w) => w.end + this.grace * (w.end - w.start) <= clock);
  }

  /** Evaluates every pending window ending at or before untilNs (e.g. by processing time). */
  flush(untilNs: bigint): AlertRecord[] {
    return this.evaluateWhile((w) => w.end <= untilNs);
  }

  private evaluateWhile(ready: (w: PendingWindow) => boolean): AlertRecord[] {
    const out: AlertRecord[] = [];
    for (const r of this.rules) {
      const wins = this.pending.get(r.name)!;
      for (const start of [...wins.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
        const w = wins.get(start)!;
        if (!ready(w)) break;
        wins.delete(start);
        this.pendingOffsets.delete(`${r.name}\u0000${start}`);
        out.push(...this.evaluate(r, w));
      }
    }
    return out;
  }

  private evaluate(r: AlertRule, w: PendingWindow): AlertRecord[] {
    this.counters.evaluated++;
    const rs = this.state.get(r.name)!;
    const out: AlertRecord[] = [];
    const record = (state: AlertState, g: GroupState, value: number, start: bigint, end: bigint): AlertRecord => ({
      rule: r.name, state, group: g.a.map(([key, value]) => ({ key, value })), metric: r.metric, stat: r.stat, value, threshold: r.threshold,
      window_start_ns: start, window_end_ns: end, windows: g.c, processor: this.processor,
    });
    // a window with no point of the rule at all: false for every group
    if (rs.lastEnd !== null && w.start > rs.lastEnd) {
      for (const g of [...rs.groups.values()].sort(byAttrs)) if (g.f) out.push(record('RESOLVED', g, NaN, rs.lastEnd, w.start));
      rs.groups.clear();
    }
    const keys = new Set([...rs.groups.keys(), ...w.groups.keys()]);
    for (const gk of [...keys].sort()) {
      const acc = w.groups.get(gk);
      let g = rs.groups.get(gk);
      if (!g) g = { a: acc!.attrs, c: 0, f: false };
      const value = acc ? statValue(r.stat, acc) : NaN;
      if (compare(r.op, value, r.threshold)) {
        g.c++;
        if (!g.f && g.c >= r.for) {
          g.f = true;
          out.push(record('FIRING', g, value, w.start, w.end));
        }
      } else {
        if (g.f) out.push(record('RESOLVED', g, value, w.start, w.end));
        g.f = false;
        g.c = 0;
      }
      if (g.c === 0 && !g.f) rs.groups.delete(gk);
      else rs.groups.set(gk, g);
    }
    rs.lastStart = w.start;
    rs.lastEnd = w.end;
    return out;
  }

  /** Per source partition, the lowest offset of a point still held by a pending window. */
  minPendingOffsets(): Map<number, bigint> {
    const out = new Map<number, bigint>();
    for (const offs of this.pendingOffsets.values()) {
      for (const [p, o] of offs) {
        const cur = out.get(p);
        if (cur === undefined || o < cur) out.set(p, o);
      }
    }
    return out;
  }

  /**
   * Everything but pending windows (re-read from the committed offsets after a
   * restart). `firingOnly` drops the counts of groups not yet firing (smaller).
   */
  toJSON(firingOnly = false): EvaluatorJSON {
    const rules: EvaluatorJSON['rules'] = {};
    for (const [name, rs] of this.state) {
      const g: Record<string, GroupState> = {};
      for (const [k, v] of rs.groups) if (!firingOnly || v.f) g[k] = v;
      rules[name] = { s: rs.lastStart?.toString() ?? null, e: rs.lastEnd?.toString() ?? null, g };
    }
    const clocks: Record<string, string> = {};
    for (const [p, c] of this.clocks) clocks[p] = c.toString();
    return { v: 1, rules, clocks };
  }

  static fromJSON(rules: readonly AlertRule[], opts: EvaluatorOptions, j: EvaluatorJSON | undefined): AlertEvaluator {
    const e = new AlertEvaluator(rules, opts);
    if (!j) return e;
    if (j.v !== 1) throw new Error(`alert state version ${String(j.v)} unknown`);
    for (const [name, s] of Object.entries(j.rules)) {
      const rs = e.state.get(name);
      if (!rs) continue; // rule removed from the file
      rs.lastStart = s.s === null ? null : BigInt(s.s);
      rs.lastEnd = s.e === null ? null : BigInt(s.e);
      for (const [k, g] of Object.entries(s.g)) rs.groups.set(k, { a: g.a, c: g.c, f: g.f });
    }
    for (const [p, c] of Object.entries(j.clocks)) e.clocks.set(Number(p), BigInt(c));
    return e;
  }
}

function byAttrs(a: GroupState, b: GroupState): number {
  const x = JSON.stringify(a.a);
  const y = JSON.stringify(b.a);
  return x < y ? -1 : x > y ? 1 : 0;
}
