/**
 * exporter/profiles/folded.ts: Brendan Gregg's folded format from profile
 * stack records. Table: each case's records and the exact text expected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderFolded } from '../../exporter/profiles/folded.ts';
import { frameName } from '../../exporter/profiles/stacks.ts';
import { rec, u, k, j } from '../support/profile-cli-records.ts';

const cases: { name: string; records: ReturnType<typeof rec>[]; kind?: 'ONCPU' | 'OFFCPU'; want: string }[] = [
  { name: 'nothing', records: [], want: '' },
  {
    name: 'root first, comm first, leaf last; sorted; one line per stack',
    records: [rec([u('spin_b'), u('main')], 1n), rec([u('spin_a'), u('main')], 3n)],
    want: 'app;main;spin_a 3\napp;main;spin_b 1\n',
  },
  {
    name: 'the same stack in two windows (or two keys) sums to one line',
    records: [rec([u('spin_a'), u('main')], 3n), rec([u('spin_a'), u('main')], 4n, { window_start_ns: 1n })],
    want: 'app;main;spin_a 7\n',
  },
  {
    name: 'kernel frames after the user ones, suffixed _[k]; JIT _[j]',
    records: [rec([k('copy_user'), k('vfs_read'), j('handler', '/srv/a.js', 3), u('main')], 2n)],
    want: 'app;main;handler_[j];vfs_read_[k];copy_user_[k] 2\n',
  },
  {
    name: 'unnamed frames say their module; no module: [unknown]; separators in names replaced',
    records: [rec([u('', 0x7f00n, '/usr/lib/x86_64-linux-gnu/libc.so.6'), u('', 0x10n, ''), u('a;b c')], 1n)],
    want: 'app;a:b c;[unknown];[libc.so.6] 1\n',
  },
  {
    name: 'a lost user stack says so at the root end; NONE says nothing',
    records: [rec([k('schedule')], 5n, { user_stack: 'LOST' }), rec([k('worker')], 1n, { user_stack: 'NONE', comm: 'kworker/0:1' })],
    want: 'app;[user stack LOST];schedule_[k] 5\nkworker/0:1;worker_[k] 1\n',
  },
  {
    name: 'no comm: the pid',
    records: [rec([u('f')], 1n, { comm: '' })],
    want: '[pid 42];f 1\n',
  },
  {
    name: 'off-CPU: the state after the comm, microseconds (rounded), stacks under 0.5 us left out; on-CPU records ignored',
    kind: 'OFFCPU',
    records: [
      rec([k('schedule'), u('read_file')], 2_500_400n, { kind: 'OFFCPU', state: 'DISK', sample_hz: 0 }),
      rec([k('schedule'), u('lock')], 1_000_000n, { kind: 'OFFCPU', state: 'SLEEPING', sample_hz: 0 }),
      rec([k('schedule'), u('tiny')], 400n, { kind: 'OFFCPU', state: 'SLEEPING', sample_hz: 0 }),
      rec([u('spin')], 9n),
    ],
    want: 'app;[DISK];read_file;schedule_[k] 2500\napp;[SLEEPING];lock;schedule_[k] 1000\n',
  },
  {
    name: 'on-CPU: off-CPU records ignored; zero values left out',
    records: [rec([u('x')], 0n), rec([u('y')], 100n, { kind: 'OFFCPU', state: 'SLEEPING' })],
    want: '',
  },
];

for (const c of cases) {
  test(`folded: ${c.name}`, () => {
    assert.equal(renderFolded(c.records, { kind: c.kind ?? 'ONCPU' }), c.want);
  });
}

test('folded: frameName table', () => {
  const t: [Parameters<typeof frameName>[0], string][] = [
    [{ function: 'f', module: '/a', kind: 'USER' }, 'f'],
    [{ function: 'f', module: '[kernel.kallsyms]', kind: 'KERNEL' }, 'f_[k]'],
    [{ function: '', module: '[kernel.kallsyms]', kind: 'KERNEL' }, '[kernel.kallsyms]_[k]'],
    [{ function: '', module: '[anon]', kind: 'JIT' }, '[anon]_[j]'],
    [{ function: '', module: '[vdso]', kind: 'USER' }, '[vdso]'],
    [{ function: 'x\ny', module: '', kind: 'USER' }, 'x?y'],
  ];
  for (const [f, want] of t) assert.equal(frameName(f), want, JSON.stringify(f));
});
