import { test } from 'node:test';
import assert from 'node:assert/strict';
import { effectiveCaps, canLoadBpf, checkPrivileges, checkBtf, ensureTracefs } from '../../collector/preflight.ts';
import { FatalError } from '../../common/errors.ts';

const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;

test('capabilities: root, CAP_BPF+CAP_PERFMON, or CAP_SYS_ADMIN', () => {
  const cases: [string, boolean][] = [
    ['000001ffffffffff', true], // root
    ['0000000000000000', false],
    [(1n << 39n | 1n << 38n).toString(16).padStart(16, '0'), true], // bpf + perfmon
    [(1n << 39n).toString(16).padStart(16, '0'), false], // bpf alone cannot attach tracing programs
    [(1n << 21n).toString(16).padStart(16, '0'), true], // sys_admin
  ];
  for (const [mask, ok] of cases) assert.equal(canLoadBpf(effectiveCaps(status(mask))), ok, mask);
  assert.equal(effectiveCaps('garbage'), 0n);
});

test('not privileged: one line naming the cause and the fix, exit 3', () => {
  assert.throws(
    () => checkPrivileges({ procStatus: status('0000000000000000') }),
    (e: unknown) => e instanceof FatalError && e.exitCode === 3 && /needs root or CAP_BPF\+CAP_PERFMON; run with sudo/.test(e.message) && !e.message.includes('\n'),
  );
});

test('no BTF: names the path and the kernel option, exit 4', () => {
  assert.throws(() => checkBtf({ btfPath: '/nonexistent/vmlinux' }), (e: unknown) => e instanceof FatalError && e.exitCode === 4 && /CONFIG_DEBUG_INFO_BTF=y/.test(e.message));
  checkBtf(); // this machine has BTF
});

test('tracefs: mounted when missing, clear error when mounting fails', () => {
  const mounted: string[] = [];
  const logs: string[] = [];
  ensureTracefs({ tracefsRoots: ['/nonexistent/tracing'], mount: (d) => mounted.push(d), log: (l) => logs.push(l) });
  assert.deepEqual(mounted, ['/nonexistent/tracing']);
  assert.match(logs[0]!, /mounted tracefs/);
  assert.throws(
    () => ensureTracefs({ tracefsRoots: ['/nonexistent/tracing'], mount: () => { throw new Error('permission denied'); } }),
    (e: unknown) => e instanceof FatalError && e.exitCode === 4 && /mount -t tracefs nodev \/nonexistent\/tracing/.test(e.message),
  );
});
