/**
 * A flame graph of our own as one self-contained SVG (no script: a browser
 * opens it, hovering a frame shows its <title>), drawn as flamegraph.pl
 * draws one: the root ("all") at the bottom, each frame's children stacked
 * on it, a rectangle's width its share of the total, siblings in name order
 * (so the x axis is not time, and two runs look alike), names clipped to
 * the rectangle with ".." and left out when under three characters wide.
 * Frames narrower than MIN_WIDTH_PX are not drawn (they would be invisible
 * and can be most of the file); the title line says how many.
 *
 * Colours as flamegraph.pl's default palette says what a frame is: kernel
 * (`_[k]`) orange, JIT (`_[j]`) green, native user code red to yellow, the
 * process and the pseudo frames (`[...]`) grey; hue from a hash of the name,
 * so a function has one colour everywhere and in every run.
 */
import { foldStacks, type FoldedStack, type ProfileKind, type ProfileStackRecord } from './stacks.ts';

export interface FlamegraphOptions {
  kind: ProfileKind;
  /** the heading; default "Flame graph" */
  title?: string;
  /** image width in px (default 1200) */
  width?: number;
  /** ONCPU: samples per second (the title says how many seconds of CPU a sample is) */
  sampleHz?: number;
}

export const FRAME_HEIGHT = 16;
export const MIN_WIDTH_PX = 0.1;
const CHAR_PX = 7; // 12 px monospace, a little wide so a clipped name never spills
const PAD = 10;
const TOP = 40;
const BOTTOM = 10;

interface Node {
  name: string;
  value: bigint;
  children: Map<string, Node>;
}

/** The call tree of folded stacks under a root named "all". */
export function buildTree(stacks: readonly FoldedStack[]): Node {
  const root: Node = { name: 'all', value: 0n, children: new Map() };
  for (const s of stacks) {
    root.value += s.value;
    let n = root;
    for (const f of s.frames) {
      let c = n.children.get(f);
      if (!c) n.children.set(f, (c = { name: f, value: 0n, children: new Map() }));
      c.value += s.value;
      n = c;
    }
  }
  return root;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** The name as it fits in `px` pixels: whole, cut with "..", or nothing. */
export function clipName(name: string, px: number): string {
  const chars = Math.floor((px - 4) / CHAR_PX);
  if (chars < 3) return '';
  return name.length <= chars ? name : name.slice(0, chars - 2) + '..';
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0) / 0xffffffff;
}

export function frameColour(name: string, depth: number): string {
  const v = hash(name);
  if (depth <= 1 || name.startsWith('[')) return `rgb(${170 + Math.round(30 * v)},${170 + Math.round(30 * v)},${175 + Math.round(30 * v)})`;
  if (name.endsWith('_[k]')) return `rgb(${220 + Math.round(25 * v)},${130 + Math.round(50 * v)},${30 + Math.round(30 * v)})`;
  if (name.endsWith('_[j]')) return `rgb(${50 + Math.round(60 * v)},${180 + Math.round(50 * v)},${50 + Math.round(40 * v)})`;
  return `rgb(${205 + Math.round(50 * v)},${Math.round(230 * v)},${Math.round(55 * v)})`;
}

function describe(value: bigint, total: bigint, kind: ProfileKind, hz: number | undefined): string {
  const pct = total > 0n ? (Number((value * 1_000_000n) / total) / 10_000).toFixed(2) : '0.00';
  if (kind === 'OFFCPU') return `${(Number(value) / 1e6).toFixed(3)} ms off CPU, ${pct}%`;
  const secs = hz ? `, ${(Number(value) / hz).toFixed(2)} s of CPU` : '';
  return `${value} sample${value === 1n ? '' : 's'}${secs}, ${pct}%`;
}

export function renderFlamegraph(records: readonly ProfileStackRecord[], opts: FlamegraphOptions): string {
  const width = opts.width ?? 1200;
  const root = buildTree(foldStacks(records, opts.kind));
  let depthMax = 0;
  const measure = (n: Node, d: number) => {
    depthMax = Math.max(depthMax, d);
    for (const c of n.children.values()) measure(c, d + 1);
  };
  measure(root, 0);
  const height = TOP + (depthMax + 1) * FRAME_HEIGHT + BOTTOM;
  const inner = width - 2 * PAD;
  const total = root.value;
  const scale = total > 0n ? inner / Number(total) : 0;
  const out: string[] = [];
  let hidden = 0;
  // x in units of value (a bigint sum stays exact; only the pixel is a float)
  const draw = (n: Node, x: bigint, d: number) => {
    const w = Number(n.value) * scale;
    if (w < MIN_WIDTH_PX && d > 0) {
      hidden++;
      return;
    }
    const px = PAD + Number(x) * scale;
    const y = height - BOTTOM - (d + 1) * FRAME_HEIGHT;
    const label = clipName(n.name, w);
    out.push(
      `<g><title>${escapeXml(`${n.name} (${describe(n.value, total, opts.kind, opts.sampleHz)})`)}</title>` +
        `<rect x="${px.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${FRAME_HEIGHT - 1}" rx="2" fill="${frameColour(n.name, d)}"/>` +
        (label ? `<text x="${(px + 3).toFixed(2)}" y="${y + FRAME_HEIGHT - 4}">${escapeXml(label)}</text>` : '') +
        `</g>`,
    );
    let cx = x;
    const kids = [...n.children.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of kids) {
      draw(c, cx, d + 1);
      cx += c.value;
    }
  };
  if (total > 0n) draw(root, 0n, 0);
  const title = opts.title ?? 'Flame graph';
  const note = total === 0n ? 'no samples' : `${describe(total, total, opts.kind, opts.sampleHz).replace(/, 100\.00%$/, '')}${hidden ? `; ${hidden} frames narrower than ${MIN_WIDTH_PX} px (with what they call) not drawn` : ''}`;
  return [
    `<?xml version="1.0" encoding="UTF-8" standalone="no"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<style>text{font-family:monospace;font-size:12px;fill:#000;pointer-events:none}g:hover rect{stroke:#000;stroke-width:0.7}.h{font-size:16px;text-anchor:middle}.n{fill:#555}</style>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#f8f8f0"/>`,
    `<text class="h" x="${width / 2}" y="20">${escapeXml(title)}</text>`,
    `<text class="n" x="${PAD}" y="34">${escapeXml(note)}; hover a frame for its name and share</text>`,
    ...out,
    `</svg>`,
    '',
  ].join('\n');
}
