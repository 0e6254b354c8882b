// The collector's one line about optional programs the loader left out (native ObjectInfo.skipped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skippedProgramsLine, SIGNALS } from '../../collector/signals/registry.ts';

test('skippedProgramsLine: null when nothing was left out, else one line naming each program, its hook and what is lost', () => {
  const cases: { signal: string; skipped: { program: string; section: string; reason: string }[]; want: RegExp | null }[] = [
    { signal: 'block', skipped: [], want: null },
    {
      signal: 'block',
      skipped: [{ program: 'rf_block_io_start', section: 'tp_btf/block_io_start', reason: "this kernel has no tracepoint 'block_io_start'" }],
      want: /^ringflow: signal block runs without rf_block_io_start \(tp_btf\/block_io_start: this kernel has no tracepoint 'block_io_start'\): requests are attributed to the task that issues them .*kernel 6\.5\+\)$/,
    },
    {
      signal: 'tcp',
      skipped: [{ program: 'a', section: 'tp_btf/x', reason: 'r1' }, { program: 'b', section: 'tracepoint/c/y', reason: 'r2' }],
      want: /^ringflow: signal tcp runs without a \(tp_btf\/x: r1\); b \(tracepoint\/c\/y: r2\)$/,
    },
  ];
  for (const c of cases) {
    const line = skippedProgramsLine(c.signal, c.skipped);
    if (c.want === null) assert.equal(line, null);
    else assert.match(line ?? '', c.want);
    assert.ok(!(line ?? '').includes('\n'));
  }
});

test('every optional program a signal describes is a BPF program name of that signal', () => {
  for (const s of SIGNALS) for (const p of Object.keys(s.optionalPrograms ?? {})) assert.match(p, /^rf_[a-z0-9_]+$/, `${s.name}: ${p}`);
});
