/**
 * Brendan Gregg's folded stacks (the input of flamegraph.pl, speedscope,
 * inferno): one line per unique stack,
 *
 *   line  := frame (';' frame)* ' ' count '\n'      root first, the leaf last
 *
 * sorted (as stackcollapse-perf.pl sorts, so two runs diff line by line).
 * Frame names: stacks.ts. On-CPU counts are samples (as bcc `profile -f`);
 * off-CPU counts are microseconds blocked (as bcc `offcputime -f`), a stack
 * whose total rounds to 0 us is left out.
 */
import { foldStacks, type ProfileKind, type ProfileStackRecord } from './stacks.ts';

export interface FoldedOptions {
  /** which records; default: on-CPU when there are any */
  kind: ProfileKind;
}

export function renderFolded(records: readonly ProfileStackRecord[], opts: FoldedOptions): string {
  const lines: string[] = [];
  for (const s of foldStacks(records, opts.kind)) {
    const count = opts.kind === 'OFFCPU' ? (s.value + 500n) / 1000n : s.value;
    if (count > 0n) lines.push(`${s.frames.join(';')} ${count}`);
  }
  // code-unit order, as `LC_ALL=C sort` (what stackcollapse's sort gives for ASCII)
  lines.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}
