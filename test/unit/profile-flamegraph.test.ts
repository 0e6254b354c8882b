/**
 * exporter/profiles/flamegraph.ts: the SVG is well-formed XML (parsed by
 * Python's xml.etree, a real parser, not a regex), every drawn frame has a
 * <title> with its name and share, widths are proportional to the values,
 * children sit on their parent, names are escaped and clipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { renderFlamegraph, clipName, buildTree } from '../../exporter/profiles/flamegraph.ts';
import { foldStacks } from '../../exporter/profiles/stacks.ts';
import { rec, u, k } from '../support/profile-cli-records.ts';

interface Drawn { title: string; x: number; y: number; width: number; text: string | null }

/** Parses the SVG with a real XML parser and lists its frames (a <g> holding title, rect, maybe text). */
function parse(svg: string): { root: string; frames: Drawn[] } {
  const py = `
import sys, json, xml.etree.ElementTree as ET
ns = '{http://www.w3.org/2000/svg}'
root = ET.fromstring(sys.stdin.buffer.read())
out = []
for g in root.iter(ns + 'g'):
    r = g.find(ns + 'rect'); t = g.find(ns + 'title'); x = g.find(ns + 'text')
    out.append(dict(title=t.text, x=float(r.get('x')), y=float(r.get('y')), width=float(r.get('width')), text=None if x is None else x.text))
print(json.dumps(dict(root=root.tag, frames=out)))
`;
  return JSON.parse(execFileSync('python3', ['-c', py], { input: svg, encoding: 'utf8' }));
}

const records = [
  rec([u('spin_a'), u('main')], 300n),
  rec([u('spin_b'), u('main')], 100n),
  rec([k('tick'), u('spin_a'), u('main')], 0n), // zero: not drawn
  rec([u('x<&>"\'y'), u('main')], 1n, { tgid: 5, comm: 'weird' }),
];

test('flamegraph: well-formed SVG; one <g><title> per frame; widths proportional; children on their parent', () => {
  const svg = renderFlamegraph(records, { kind: 'ONCPU', title: 'ringflow profile <test>', sampleHz: 100 });
  const { root, frames } = parse(svg);
  assert.equal(root, '{http://www.w3.org/2000/svg}svg');
  const by = (name: string) => {
    const f = frames.filter((d) => d.title.startsWith(`${name} (`) && !d.title.includes('0.25%'));
    assert.equal(f.length, 1, `${name} drawn once: ${frames.map((d) => d.title).join(' | ')}`);
    return f[0]!;
  };
  const all = by('all'), app = by('app'), main = by('main'), a = by('spin_a'), b = by('spin_b');
  const w = frames.find((d) => d.title.startsWith('weird ('))!;
  assert.equal(frames.filter((d) => d.title.startsWith('main (')).length, 2, 'main under app and under weird');
  assert.match(all.title, /^all \(401 samples, 4\.01 s of CPU, 100\.00%\)$/);
  assert.match(a.title, /^spin_a \(300 samples, 3\.00 s of CPU, 74\.81%\)$/);
  assert.ok(frames.some((d) => d.title === 'x<&>"\'y (1 sample, 0.01 s of CPU, 0.25%)'));
  assert.ok(Math.abs(a.width / b.width - 3) < 0.01, `${a.width} / ${b.width}`);
  assert.ok(Math.abs((a.width + b.width) - main.width) < 0.02);
  assert.ok(Math.abs(app.width + w.width - all.width) < 0.02);
  // root at the bottom, one row per depth, a child starts within its parent
  assert.ok(all.y > app.y && app.y > main.y && main.y > a.y);
  assert.equal(main.y - a.y, 16);
  assert.ok(a.x >= main.x - 0.01 && a.x + a.width <= main.x + main.width + 0.02);
  // siblings in name order, side by side
  assert.ok(a.x < b.x && Math.abs(a.x + a.width - b.x) < 0.02);
  assert.equal(frames.some((d) => d.title.startsWith('tick')), false, 'zero-valued stack drawn');
  // the text is the name (wide frames) and the title is in the file escaped
  assert.equal(a.text, 'spin_a');
  assert.ok(svg.includes('ringflow profile &lt;test&gt;'));
});

test('flamegraph: off-CPU titles are milliseconds; an empty profile is still a valid SVG', () => {
  const off = [rec([k('schedule'), u('read')], 2_500_000n, { kind: 'OFFCPU', state: 'DISK' })];
  const { frames } = parse(renderFlamegraph(off, { kind: 'OFFCPU' }));
  assert.deepEqual(frames.map((f) => f.title), ['all (2.500 ms off CPU, 100.00%)', 'app (2.500 ms off CPU, 100.00%)', '[DISK] (2.500 ms off CPU, 100.00%)', 'read (2.500 ms off CPU, 100.00%)', 'schedule_[k] (2.500 ms off CPU, 100.00%)']);
  assert.deepEqual(parse(renderFlamegraph([], { kind: 'ONCPU' })).frames, []);
});

test('flamegraph: frames too narrow to see are not drawn, and the header says how many', () => {
  const many = [rec([u('big')], 1_000_000n), ...Array.from({ length: 50 }, (_, i) => rec([u(`tiny${i}`)], 1n, { tgid: 100 + i, comm: `c${i}` }))];
  const svg = renderFlamegraph(many, { kind: 'ONCPU', width: 1200 });
  const { frames } = parse(svg);
  assert.equal(frames.length, 3);
  assert.match(svg, /50 frames narrower than 0\.1 px \(with what they call\) not drawn/);
});

test('flamegraph: clipName table', () => {
  const t: [string, number, string][] = [
    ['spin_a', 200, 'spin_a'], ['spin_a', 46, 'spin_a'], ['spin_a', 45, 'spi..'], ['spin_a', 25, 's..'], ['spin_a', 24, ''], ['x', 2, ''],
  ];
  for (const [name, px, want] of t) assert.equal(clipName(name, px), want, `${name} in ${px}px`);
});

test('flamegraph: buildTree sums values along paths', () => {
  const root = buildTree(foldStacks(records, 'ONCPU'));
  assert.equal(root.value, 401n);
  assert.equal(root.children.get('app')!.value, 400n);
  assert.equal(root.children.get('app')!.children.get('main')!.children.get('spin_a')!.value, 300n);
});
