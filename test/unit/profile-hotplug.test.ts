/**
 * collector/profile/source.ts's reattach hook (hot-plugged CPUs, issue 11):
 * called before each drain when the profile signal runs (not for offcpu
 * alone); CPUs it attached are counted and said each time some are; a throw
 * is counted and said at 1, 10, 100 and never stops the drains. The kernel
 * side is test/native/profile-hotplug.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProfileSource } from '../../collector/profile/source.ts';

const empty = () => ({ generation: 0n, counts: Buffer.alloc(0), stacks: Buffer.alloc(0), comms: Buffer.alloc(0) });

function source(signals: string[], reattach: () => number, log: string[]) {
  return new ProfileSource({
    session: { profileDrain: empty }, signals, intervalMs: 1_000_000, sampleHz: 19, host: 'h', bootTimeNs: 0n,
    symbolize: () => [], processName: () => '', emit: () => {}, log: (l) => log.push(l), reattach,
  });
}

test('reattach runs before each drain; CPUs attached late are counted and said when some are', () => {
  const log: string[] = [];
  const answers = [0, 1, 0, 2];
  let calls = 0;
  const s = source(['profile'], () => answers[calls++] ?? 0, log);
  for (let i = 0; i < 4; i++) s.drainAll();
  assert.equal(calls, 4);
  assert.equal(s.cpusAttachedLate, 3);
  assert.equal(log.length, 2);
  assert.match(log[0]!, /profile: 1 CPU\(s\) online without a running perf event .* now sampled \(1 so far\)/);
  assert.match(log[1]!, /2 CPU\(s\).*\(3 so far\)/);
  assert.equal(s.drains.get('profile'), 4);
});

test('offcpu alone has no perf event: reattach is not called', () => {
  let calls = 0;
  const s = source(['offcpu'], () => ++calls, []);
  s.drainAll();
  assert.equal(calls, 0);
});

test('a throwing reattach is counted, said at 1, 10, 100; the drains go on', () => {
  const log: string[] = [];
  const s = source(['profile'], () => { throw new Error('perf_event_open(profile.bpf.o/rf_prof_sample): Too many open files (errno 24)'); }, log);
  for (let i = 0; i < 100; i++) s.drainAll();
  assert.equal(s.reattachFailures, 100);
  assert.equal(s.drains.get('profile'), 100);
  assert.equal(log.length, 3);
  assert.match(log[0]!, /re-attaching hot-plugged CPUs failed \(1 so far.*Too many open files/);
});
