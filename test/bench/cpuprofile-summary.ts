/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by component
 * (kafkajs by file, our files by folder, GC, idle, program) and the top
 * functions, as shares of the non-idle time. Used with l7-live-profile.ts.
 *   node test/bench/cpuprofile-summary.ts FILE.cpuprofile [top=30]
 */
import fs from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const file = process.argv[2]!;
const top = Number(process.argv[3] ?? 30);
// the window to look at, seconds from the profile's start (default all): the collector's start (BPF load) and stop are not per record
const from = Number(process.argv[4] ?? 0) * 1e6;
const to = Number(process.argv[5] ?? Infinity) * 1e6;
const p = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
const perSecond: number[] = [];
let t = 0;
for (let i = 0; i < p.samples.length; i++) {
  const d = p.timeDeltas[i] ?? 0;
  t += d;
  const idleSample = byId.get(p.samples[i]!)!.callFrame.functionName === '(idle)';
  if (!idleSample) perSecond[Math.floor(t / 1e6)] = (perSecond[Math.floor(t / 1e6)] ?? 0) + d;
  if (t < from || t > to) continue;
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + d);
}
console.log('busy per second:', perSecond.map((us) => ((us ?? 0) / 1e6).toFixed(2)).join(' '));

function component(n: Node): string {
  const { url, functionName } = n.callFrame;
  if (!url) return functionName.startsWith('(') ? functionName : `native:${functionName || '(anon)'}`;
  const kj = /node_modules\/kafkajs\/src\/(.*)$/.exec(url);
  if (kj) return `kafkajs/${kj[1]!.replace(/\/[^/]*$/, '')}`;
  if (url.startsWith('node:')) return url;
  const ours = /ringflow[^/]*\/(.*)$|\/main\/(.*)$/.exec(url);
  const rel = ours ? (ours[1] ?? ours[2])! : url;
  return rel.replace(/^file:\/\//, '');
}

const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
/** node:, native and GC-free frames are charged to the nearest caller of ours or kafkajs's: who made the Buffer. */
function owner(id: number): string {
  for (let i: number | undefined = id; i !== undefined; i = parent.get(i)) {
    const n = byId.get(i)!;
    const u = n.callFrame.url;
    if (u && !u.startsWith('node:')) return `${n.callFrame.functionName || '(anon)'} ${component(n)}:${n.callFrame.lineNumber + 1}`;
  }
  return component(byId.get(id)!);
}
const owners = new Map<string, number>();
const comp = new Map<string, number>();
const fn = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, us] of self) {
  const n = byId.get(id)!;
  if (n.callFrame.functionName === '(idle)') { idle += us; continue; }
  total += us;
  const c = component(n);
  comp.set(c, (comp.get(c) ?? 0) + us);
  const f = `${n.callFrame.functionName || '(anon)'} ${c}:${n.callFrame.lineNumber + 1}`;
  fn.set(f, (fn.get(f) ?? 0) + us);
  const u = n.callFrame.url;
  if (!u || u.startsWith('node:')) {
    const o = owner(id);
    owners.set(o, (owners.get(o) ?? 0) + us);
  }
}
const pct = (us: number) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
console.log(`busy ${(total / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s`);
console.log('-- by component (self)');
for (const [c, us] of [...comp].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(us), c);
console.log('-- by function (self)');
for (const [f, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(us), f);
console.log('-- node: and native self time by the caller of ours that asked for it');
for (const [f, us] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(pct(us), f);
