import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertEvaluator, RulesError, alertKey, compare, parseRules, statValue, type AlertRecord, type AlertRule, type MetricPointValue } from '../../processor/alerts.ts';
import { ExpHistogram } from '../../processor/index.ts';
import { encodeRecord, decodeRecord, schemaRegistry } from '../../schemas/index.ts';

const RUNQ = 'ringflow.sched.runqueue.latency';
const W = 10_000_000_000n;

function rule(extra: string): AlertRule {
  return parseRules(`rules:\n  - name: r\n    metric: ${RUNQ}\n${extra}`)[0]!;
}

function hist(values: number[]): Record<string, unknown> {
  const h = new ExpHistogram();
  for (const v of values) h.record(v);
  return h.toJSON() as unknown as Record<string, unknown>;
}

function point(window: number, host: string, values: number[], comm = 'app', name = RUNQ): MetricPointValue {
  return {
    name, kind: 'HISTOGRAM',
    attributes: [{ key: 'host.name', value: host }, { key: 'process.command', value: comm }],
    window_start_ns: BigInt(window) * W, window_end_ns: BigInt(window + 1) * W, histogram: hist(values), sum: null,
  };
}

const brief = (a: AlertRecord[]) => a.map((x) => `${x.state} ${x.group.map((g) => g.value).join(',')} w${x.window_start_ns / W} n${x.windows}`);

test('parse: the example rule, durations and defaults', () => {
  const [r] = parseRules(`rules:
  - name: runqueue-latency-high
    metric: ${RUNQ}
    stat: p99
    op: ">"
    threshold: 10ms
    for: 3
    by: [host.name]
    where: { process.command: postgres }
`);
  assert.deepEqual({ ...r, by: [...r!.by], where: { ...r!.where } }, {
    name: 'runqueue-latency-high', metric: RUNQ, stat: 'p99', op: '>', threshold: 0.01, for: 3, by: ['host.name'], where: { 'process.command': 'postgres' },
  });
  for (const [t, s] of [['250us', 0.00025], ['1.5s', 1.5], ['2000ns', 0.000002], ['0.02', 0.02]] as const) {
    assert.equal(rule(`    stat: max\n    op: ">"\n    threshold: ${t}\n`).threshold, s, t);
  }
  const d = rule('    stat: count\n    op: "<"\n    threshold: 5\n');
  assert.equal(d.for, 1);
  assert.deepEqual(d.by, []);
});

test('parse: one line naming the rule and the bad field', () => {
  const base = (f: Record<string, string>) => {
    const o: Record<string, string> = { name: 'bad', metric: RUNQ, stat: 'p99', op: '">"', threshold: '10ms', ...f };
    return `rules:\n  - ${Object.entries(o).filter(([, v]) => v !== '').map(([k, v]) => `${k}: ${v}`).join('\n    ')}\n`;
  };
  const cases: [string, string, RegExp][] = [
    ['no rules', 'foo: 1\n', /expected a top-level "rules:" list/],
    ['yaml', 'rules: [\n', /not valid YAML/],
    ['name', base({ name: '' }), /rule #1: name: missing/],
    ['metric', base({ metric: 'nope' }), /rule "bad": metric: unknown metric "nope"/],
    ['stat', base({ stat: 'p98' }), /rule "bad": stat: "p98" is not one of/],
    ['stat of a sum', base({ metric: 'ringflow.tcp.retransmits', stat: 'p99', threshold: '3' }), /rule "bad": stat: ringflow.tcp.retransmits is a sum/],
    ['op', base({ op: '"=="' }), /rule "bad": op: "==" is not one of/],
    ['threshold', base({ threshold: '10 parsecs' }), /rule "bad": threshold: "10 parsecs" is not a duration/],
    ['threshold on a count', base({ stat: 'count', threshold: '10ms' }), /rule "bad": threshold: "10ms" is not a number/],
    ['for', base({ for: '0' }), /rule "bad": for: 0 is not a whole number/],
    ['for float', base({ for: '1.5' }), /rule "bad": for: 1.5/],
    ['by', base({ by: '[pod]' }), /rule "bad": by: .* has no attribute "pod"/],
    ['where', base({ where: '{ pod: x }' }), /rule "bad": where: .* has no attribute "pod"/],
    ['unknown field', base({ severity: 'page' }), /rule "bad": severity: unknown field/],
  ];
  for (const [what, text, re] of cases) {
    assert.throws(() => parseRules(text), (e: Error) => e instanceof RulesError && re.test(e.message) && !e.message.includes('\n'), what);
  }
  assert.throws(() => parseRules(`rules:\n  - {name: a, metric: ${RUNQ}, stat: max, op: ">", threshold: 1}\n  - {name: a, metric: ${RUNQ}, stat: max, op: ">", threshold: 1}\n`), /rule "a": name: duplicate/);
});

test('stats and ops', () => {
  const values = Array.from({ length: 1000 }, (_, i) => (i + 1) / 1000); // 1ms..1s
  const h = ExpHistogram.fromJSON(hist(values) as never);
  const acc = { hist: h, sum: 0 };
  const near = (a: number, b: number) => Math.abs(a - b) / b < 0.01;
  assert.ok(near(statValue('p50', acc), 0.5));
  assert.ok(near(statValue('p90', acc), 0.9));
  assert.ok(near(statValue('p99', acc), 0.99));
  assert.ok(near(statValue('p99.9', acc), 0.999));
  assert.equal(statValue('max', acc), 1);
  assert.equal(statValue('min', acc), 0.001);
  assert.ok(near(statValue('mean', acc), 0.5005));
  assert.equal(statValue('count', acc), 1000);
  assert.ok(near(statValue('sum', acc), 500.5));
  assert.equal(statValue('sum', { hist: null, sum: 7 }), 7);
  assert.ok(Number.isNaN(statValue('p99', { hist: new ExpHistogram(), sum: 0 })));
  const table: [Parameters<typeof compare>[0], number, number, boolean][] = [
    ['>', 2, 1, true], ['>', 1, 1, false], ['>=', 1, 1, true], ['>=', 0, 1, false],
    ['<', 0, 1, true], ['<', 1, 1, false], ['<=', 1, 1, true], ['<=', 2, 1, false], ['>', NaN, 1, false], ['<', NaN, 1, false],
  ];
  for (const [op, v, t, want] of table) assert.equal(compare(op, v, t), want, `${v} ${op} ${t}`);
});

test('for counting, firing once, resolve; groups merge across series', () => {
  const r = rule('    stat: p99\n    op: ">"\n    threshold: 10ms\n    for: 3\n    by: [host.name]\n');
  const e = new AlertEvaluator([r], { processor: 't' });
  const out: AlertRecord[] = [];
  // hot: two series (commands) per window merged; only the merge is above 10ms in window 0
  const hot = [[[0.001], [0.02, 0.03]], [[0.05]], [[0.05]], [[0.05]], [[0.05]], [[0.001]], [[0.05]]];
  for (let w = 0; w < hot.length; w++) {
    hot[w]!.forEach((v, i) => out.push(...e.add(point(w, 'hot', v, `c${i}`))));
    out.push(...e.add(point(w, 'cold', [0.001])));
  }
  out.push(...e.flush(BigInt(hot.length) * W));
  // hot true in windows 0-4: FIRING after window 2 (once), RESOLVED at 5; window 6 true again: count 1 only
  assert.deepEqual(brief(out), ['FIRING hot w2 n3', 'RESOLVED hot w5 n5']);
  assert.equal(out[0]!.threshold, 0.01);
  assert.ok(out[0]!.value > 0.01 && out[1]!.value < 0.01);
  assert.equal(alertKey(out[0]!), 'r{host.name="hot"}');
  assert.equal(e.counters.evaluated, hot.length);
});

test('evaluation waits for every source; late points are counted, not merged', () => {
  const r = rule('    stat: max\n    op: ">="\n    threshold: 1s\n');
  const e = new AlertEvaluator([r], { processor: 't' });
  e.setSources([0, 1]);
  assert.deepEqual(e.add(point(0, 'a', [2]), { partition: 0, offset: 5n }), []);
  assert.deepEqual(e.add(point(1, 'a', [0.1]), { partition: 0, offset: 6n }), []); // partition 1 has not reached window 1
  assert.deepEqual(e.minPendingOffsets(), new Map([[0, 5n]]));
  assert.deepEqual(brief(e.add(point(1, 'b', [0.1]), { partition: 1, offset: 0n })), ['FIRING  w0 n1']);
  assert.deepEqual(e.minPendingOffsets(), new Map([[0, 6n], [1, 0n]]));
  e.add(point(0, 'a', [5]), { partition: 1, offset: 1n });
  assert.equal(e.counters.late, 1);
  // grace: one more window
  const g = new AlertEvaluator([r], { processor: 't', graceWindows: 1 });
  assert.deepEqual(g.add(point(0, 'a', [2])), []);
  assert.deepEqual(g.add(point(1, 'a', [2])), []);
  assert.deepEqual(brief(g.add(point(2, 'a', [2]))), ['FIRING  w0 n1']);
});

test('where filter, other metrics, sums, missing data and gaps', () => {
  const r = rule('    stat: count\n    op: ">"\n    threshold: 1\n    by: [host.name]\n    where: { process.command: postgres }\n');
  const e = new AlertEvaluator([r], { processor: 't' });
  const out: AlertRecord[] = [];
  out.push(...e.add(point(0, 'h', [1, 2, 3], 'nginx')));
  out.push(...e.add(point(0, 'h', [1, 2, 3], 'postgres', 'ringflow.block.io.latency')));
  out.push(...e.flush(W));
  assert.equal(out.length, 0);
  assert.equal(e.counters.matched, 0);
  out.push(...e.add(point(1, 'h', [1, 2], 'postgres')), ...e.flush(2n * W));
  assert.deepEqual(brief(out), ['FIRING h w1 n1']);
  // window 2: no point for h (another host only) -> no data -> resolved
  out.push(...e.add(point(2, 'other', [1], 'postgres')), ...e.flush(3n * W));
  assert.deepEqual(brief(out).slice(1), ['RESOLVED h w2 n1']);
  assert.ok(Number.isNaN(out[1]!.value));
  // gap: windows 4 and 5 have no point of the rule at all
  out.length = 0;
  out.push(...e.add(point(3, 'h', [1, 2], 'postgres')), ...e.flush(4n * W));
  out.push(...e.add(point(6, 'h', [1], 'postgres')), ...e.flush(7n * W));
  assert.deepEqual(brief(out), ['FIRING h w3 n1', 'RESOLVED h w4 n1']);
  assert.equal(out[1]!.window_end_ns, 6n * W);

  const s = parseRules('rules:\n  - {name: s, metric: ringflow.tcp.retransmits, stat: sum, op: ">=", threshold: 10, by: [host.name]}\n')[0]!;
  const es = new AlertEvaluator([s], { processor: 't' });
  const sum = (w: number, n: number, state: string): MetricPointValue => ({
    name: 'ringflow.tcp.retransmits', kind: 'SUM', attributes: [{ key: 'host.name', value: 'h' }, { key: 'ringflow.tcp.state', value: state }],
    window_start_ns: BigInt(w) * W, window_end_ns: BigInt(w + 1) * W, histogram: null, sum: BigInt(n),
  });
  es.add(sum(0, 6, 'established'));
  es.add(sum(0, 4, 'syn_sent'));
  assert.deepEqual(brief(es.flush(W)), ['FIRING h w0 n1']);
  es.add(point(1, 'h', [1], 'x', 'ringflow.tcp.retransmits')); // a histogram where a sum is expected
  assert.equal(es.counters.kindMismatch, 1);
});

test('state round trip: a restored evaluator continues exactly', () => {
  const r = rule('    stat: p50\n    op: ">"\n    threshold: 10ms\n    for: 2\n    by: [host.name]\n');
  const windows = [0.05, 0.05, 0.05, 0.001, 0.05, 0.05];
  const run = (): string[] => {
    const e = new AlertEvaluator([r], { processor: 't' });
    const out: AlertRecord[] = [];
    for (let w = 0; w < windows.length; w++) {
      out.push(...e.add(point(w, 'h', [windows[w]!])));
    }
    out.push(...e.flush(BigInt(windows.length) * W));
    return brief(out);
  };
  const want = ['FIRING h w1 n2', 'RESOLVED h w3 n3', 'FIRING h w5 n2'];
  assert.deepEqual(run(), want);
  for (let cut = 1; cut < windows.length; cut++) {
    // the pending window is not in the state: replay its points as the stage does (from minPendingOffsets)
    let e = new AlertEvaluator([r], { processor: 't' });
    const out: AlertRecord[] = [];
    for (let w = 0; w < windows.length; w++) {
      if (w === cut) {
        e = AlertEvaluator.fromJSON([r], { processor: 't' }, JSON.parse(JSON.stringify(e.toJSON())));
        out.push(...e.add(point(w - 1, 'h', [windows[w - 1]!]))); // re-read: either pending (merged) or late (skipped)
      }
      out.push(...e.add(point(w, 'h', [windows[w]!])));
    }
    out.push(...e.flush(BigInt(windows.length) * W));
    assert.deepEqual(brief(out), want, `cut at ${cut}`);
  }
  assert.ok(JSON.stringify(new AlertEvaluator([r], { processor: 't' }).toJSON()).length < 200);
});

test('alert records encode with schemas/alerts.avsc', () => {
  const s = schemaRegistry().byTopic('ringflow.alerts.v1')!;
  const a: AlertRecord = {
    rule: 'r', state: 'FIRING', group: [{ key: 'host.name', value: 'h' }], metric: RUNQ, stat: 'p99', value: 0.05, threshold: 0.01,
    window_start_ns: 1n, window_end_ns: 2n, windows: 3, processor: 'p',
  };
  const back = decodeRecord(encodeRecord(s, a)).value;
  assert.deepEqual({ ...back, group: (back.group as object[]).map((g) => ({ ...g })) }, a);
  assert.ok(Number.isNaN(decodeRecord(encodeRecord(s, { ...a, value: NaN })).value.value));
});
