/**
 * collector/profile/drain.ts reads struct rf_prof_key and the profiling
 * enums of bpf/events.h by hand (they are map keys, not ring records, so no
 * schema mirrors them): gcc compiles the header and prints every offset, size
 * and constant, which must equal drain.ts's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROF_COUNT_SIZE, PROF_KEY, PROF_KEY_SIZE, PROF_KIND, PROF_LOST, PROF_STACK, PROF_STATES } from '../../collector/profile/drain.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

function measure(lines: string[]): Map<string, number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-prof-layout-'));
  try {
    const src = path.join(dir, 'l.c');
    fs.writeFileSync(src, ['#include <stdio.h>', '#include <stddef.h>', '#include "events.h"', 'int main(void) {', ...lines, 'return 0; }'].join('\n'));
    const cc = spawnSync('gcc', ['-Wpadded', '-Werror', '-I', path.join(ROOT, 'bpf'), '-o', path.join(dir, 'l'), src], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const run = spawnSync(path.join(dir, 'l'), { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return new Map(run.stdout.trim().split('\n').map((l) => {
      const [k, v] = l.split(' ');
      return [k!, Number(v)];
    }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('struct rf_prof_key and rf_prof_ctl: offsets and sizes as drain.ts and rf_core.c read them', () => {
  const fields = Object.keys(PROF_KEY);
  const m = measure([
    ...fields.map((f) => `printf("${f} %zu\\n", offsetof(struct rf_prof_key, ${f}));`),
    'printf("key %zu\\n", sizeof(struct rf_prof_key));',
    'printf("ctl %zu\\n", sizeof(struct rf_prof_ctl));',
    'printf("max_frames %d\\n", RF_PROF_MAX_FRAMES);',
  ]);
  for (const f of fields) assert.equal(m.get(f), PROF_KEY[f as keyof typeof PROF_KEY], `offsetof(rf_prof_key, ${f})`);
  assert.equal(m.get('key'), PROF_KEY_SIZE);
  assert.equal(PROF_COUNT_SIZE, PROF_KEY_SIZE + 8, 'a drained count is the key and a u64');
  assert.equal(m.get('ctl'), 24, 'rf_session_profile_drain checks the ctl value is 24 bytes');
  assert.equal(m.get('max_frames'), 127, 'PERF_MAX_STACK_DEPTH: a stack map value of 127 u64');
});

test('profiling enums and stack id markers: values as drain.ts names them', () => {
  const consts: [string, number][] = [
    ['RF_PROF_ONCPU', PROF_KIND.ONCPU], ['RF_PROF_OFFCPU', PROF_KIND.OFFCPU],
    ['RF_PROF_STACK_NONE', PROF_STACK.NONE], ['RF_PROF_STACK_LOST', PROF_STACK.LOST], ['RF_PROF_STACK_EXPIRED', PROF_STACK.EXPIRED],
    ['RF_PROF_L_USTACK_COLLISION', PROF_LOST.USTACK_COLLISION], ['RF_PROF_L_KSTACK_COLLISION', PROF_LOST.KSTACK_COLLISION],
    ['RF_PROF_L_STACK_MAP_FULL', PROF_LOST.STACK_MAP_FULL], ['RF_PROF_L_COUNTS_FULL', PROF_LOST.COUNTS_FULL],
    ['RF_PROF_L_OFFCPU_EXPIRED', PROF_LOST.OFFCPU_EXPIRED], ['RF_PROF_L_OFFCPU_UNTRACKED', PROF_LOST.OFFCPU_UNTRACKED],
    ...PROF_STATES.map((s, i): [string, number] => [`RF_PROF_ST_${s}`, i]),
  ];
  const m = measure(consts.map(([c]) => `printf("${c} %d\\n", (int)(${c}));`));
  for (const [c, v] of consts) assert.equal(m.get(c), v, c);
});
