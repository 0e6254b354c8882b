/**
 * collector/profile/sizing.ts: the on-CPU stack maps' size from the host
 * (CPUs x Hz x interval x drains per epoch x 2 stacks x 2 headroom), a power
 * of two bounded to [1024, 16384]; bad inputs fall back to the minimum.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stackMapEntries, profileMapSizes, mapSizesFor, STACK_MAP_MIN_ENTRIES, STACK_MAP_MAX_ENTRIES, type StackMapHost } from '../../collector/profile/sizing.ts';

const host = (cpus: number, hz: number, intervalMs = 10_000, epochDrains = 1): StackMapHost => ({ cpus, hz, intervalMs, epochDrains });

test('stackMapEntries: worst-case stacks per epoch x 2, rounded up to a power of two, bounded', () => {
  const cases: [StackMapHost, number][] = [
    // this machine at the default: 2 x 19 x 10 s x 2 stacks = 760, x 2 = 1520 -> 2048
    [host(2, 19), 2048],
    // 2 x 99 x 10 x 2 x 2 = 7920 -> 8192
    [host(2, 99), 8192],
    // a small worst case is raised to the minimum: 1 x 1 x 1 s x 2 x 2 = 4
    [host(1, 1, 1000), STACK_MAP_MIN_ENTRIES],
    // exactly a power of two stays: 1 x 64 x 4 s x 2 drains x 2 x 2 = 2048
    [host(1, 64, 4000, 2), 2048],
    // a big host is capped: 64 x 19 x 10 x 2 x 2 = 48640
    [host(64, 19), STACK_MAP_MAX_ENTRIES],
    // more drains per epoch keep more stacks at once: 2 x 19 x 10 x 6 x 4 = 9120 -> 16384
    [host(2, 19, 10_000, 6), 16384],
    // a short interval needs fewer: 2 x 499 x 0.5 s x 4 = 1996 -> 2048
    [host(2, 499, 500), 2048],
  ];
  for (const [h, want] of cases) assert.equal(stackMapEntries(h), want, JSON.stringify(h));
});

test('stackMapEntries: an input that is not a positive number gives the minimum, never NaN or 0', () => {
  for (const bad of [host(0, 19), host(2, 0), host(2, 19, -1), host(2, 19, 10_000, 0), host(NaN, 19), host(2, Infinity)]) {
    assert.equal(stackMapEntries(bad), STACK_MAP_MIN_ENTRIES, JSON.stringify(bad));
  }
});

test('profileMapSizes: the three epoch maps of rf_prof, one size', () => {
  assert.deepEqual(profileMapSizes(host(2, 99)), { rf_prof_stacks0: 8192, rf_prof_stacks1: 8192, rf_prof_stacks2: 8192 });
});

test('mapSizesFor: the on-CPU object only, from its Hz and interval (one drain per stack epoch)', () => {
  assert.deepEqual(mapSizesFor('profile', 99, 10_000, 2), profileMapSizes(host(2, 99)));
  assert.deepEqual(mapSizesFor('profile', 19, 2000, 2), profileMapSizes(host(2, 19, 2000)));
  assert.equal(mapSizesFor('offcpu', 19, 10_000, 2), undefined);
  assert.equal(mapSizesFor('l7', 19, 10_000, 2), undefined);
});
