/**
 * The soak's OTLP tally (test/soak/otlp-tally.ts): a point exported twice is a
 * duplicate and counted once, a point repeated with another value is a
 * conflict, spans are keyed by trace and span id, and only the file's
 * appended complete lines are read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OtlpTally, attrsOf } from '../soak/otlp-tally.ts';

const hist = (name: string, port: number, count: number, start = '1000', end = '3000') => ({
  resourceMetrics: [{
    resource: { attributes: [{ key: 'host.name', value: { stringValue: 'h' } }] },
    scopeMetrics: [{ metrics: [{ name, exponentialHistogram: { dataPoints: [{ attributes: [{ key: 'server.port', value: { intValue: port } }], startTimeUnixNano: start, timeUnixNano: end, count: String(count) }] } }] }],
  }],
});
const sum = (name: string, asInt: number) => ({
  resourceMetrics: [{ resource: { attributes: [] }, scopeMetrics: [{ metrics: [{ name, sum: { dataPoints: [{ startTimeUnixNano: '1', timeUnixNano: '2', asInt: String(asInt) }] } }] }] }],
});
const span = (traceId: string, spanId: string, kind: number) => ({
  resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans: [{ traceId, spanId, name: 'GET', kind, attributes: [{ key: 'server.port', value: { intValue: '80' } }] }] }] }],
});

const classify = (p: { metric: string; attrs: Record<string, string> }) =>
  p.metric === 'conn' && p.attrs['server.port'] === '80' ? 'conn' : p.metric === 'ringflow.dropped' ? 'dropped' : undefined;
const classifySpan = (s: { kind: number; attrs: Record<string, string> }) => (s.attrs['server.port'] === '80' ? `k${s.kind}` : undefined);

const cases: { name: string; lines: unknown[]; metric?: Record<string, [number, number, number]>; span?: Record<string, [number, number]>; bad?: number }[] = [
  { name: 'distinct windows add up', lines: [hist('conn', 80, 3), hist('conn', 80, 4, '3000', '5000')], metric: { conn: [7, 0, 0] } },
  { name: 'the same point twice is a duplicate, counted once', lines: [hist('conn', 80, 3), hist('conn', 80, 3)], metric: { conn: [3, 3, 0] } },
  { name: 'the same point with another value is a conflict', lines: [hist('conn', 80, 3), hist('conn', 80, 5)], metric: { conn: [3, 0, 5] } },
  { name: 'other series are ignored', lines: [hist('conn', 81, 3), hist('other', 80, 3)], metric: { conn: [0, 0, 0] } },
  { name: 'sums count their value', lines: [sum('ringflow.dropped', 9)], metric: { dropped: [9, 0, 0] } },
  { name: 'spans by trace and span id', lines: [span('t', 'a', 2), span('t', 'a', 2), span('t', 'b', 3)], span: { k2: [1, 1], k3: [1, 0] } },
  { name: 'a line that is not JSON is counted', lines: ['{"resourceMetrics": ['], bad: 1 },
];

for (const c of cases) {
  test(`otlp tally: ${c.name}`, () => {
    const t = new OtlpTally('/nonexistent', classify, classifySpan);
    for (const l of c.lines) t.line(typeof l === 'string' ? l : JSON.stringify(l));
    for (const [s, [unique, duplicates, conflicts]] of Object.entries(c.metric ?? {})) assert.deepEqual(t.metric(s), { unique, duplicates, conflicts }, s);
    for (const [s, [unique, duplicates]] of Object.entries(c.span ?? {})) assert.deepEqual(t.span(s), { unique, duplicates, conflicts: 0 }, s);
    assert.equal(t.badLines, c.bad ?? 0);
  });
}

test('otlp tally: reads only complete appended lines, each once', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soak-tally-'));
  const file = path.join(dir, 'otlp.jsonl');
  const t = new OtlpTally(file, classify, classifySpan);
  t.update(); // no file yet
  const a = JSON.stringify(hist('conn', 80, 2));
  const b = JSON.stringify(hist('conn', 80, 5, '3000', '5000'));
  fs.writeFileSync(file, `${a}\n${b.slice(0, 20)}`);
  t.update();
  assert.deepEqual(t.metric('conn'), { unique: 2, duplicates: 0, conflicts: 0 });
  fs.appendFileSync(file, `${b.slice(20)}\n`);
  t.update();
  t.update();
  assert.deepEqual(t.metric('conn'), { unique: 7, duplicates: 0, conflicts: 0 });
  fs.rmSync(dir, { recursive: true, force: true });
});

test('otlp tally: attribute values as strings, whatever their OTLP JSON type', () => {
  assert.deepEqual(attrsOf([
    { key: 's', value: { stringValue: 'x' } }, { key: 'i', value: { intValue: '42' } }, { key: 'n', value: { intValue: 7 } },
    { key: 'b', value: { boolValue: false } }, { key: 'd', value: { doubleValue: 0.5 } },
  ]), { s: 'x', i: '42', n: '7', b: 'false', d: '0.5' });
});
