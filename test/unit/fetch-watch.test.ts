/**
 * FetchWatch (processor/fetch-watch.ts): what the idle clock may conclude from
 * silence, given when fetches answered. Each case feeds answered fetches at
 * the given times (ms) and asks at `at`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FetchWatch, FETCH_GAP_MS, FETCH_MAX_WAIT_MS, IDLE_GRACE_MS } from '../../processor/fetch-watch.ts';

// the defaults the stages use: a gap of 10 s, a grace of 5 s, kafkajs's 5 s fetch wait
const GAP = 10_000;
const GRACE = 5_000;
const WAIT = 5_000;

test('the defaults are the spans stage\'s (10 s gap, 5 s grace) and kafkajs\'s fetch wait', () => {
  assert.deepEqual([FETCH_GAP_MS, IDLE_GRACE_MS, FETCH_MAX_WAIT_MS], [GAP, GRACE, WAIT]);
});

const T = 1_000_000;
interface Case {
  name: string;
  fetches: number[];
  at: number;
  quietFrom: number | null;
  vouchedUntil: number;
}
const cases: Case[] = [
  { name: 'no fetch answered yet: silence means nothing', fetches: [], at: T, quietFrom: null, vouchedUntil: -Infinity },
  { name: 'first answer: silence counts from a grace after it', fetches: [T], at: T + 1000, quietFrom: T + GRACE, vouchedUntil: T + 1000 },
  { name: 'answering steadily: counted from the first answer', fetches: [T, T + 5000, T + 10_000, T + 15_000], at: T + 16_000, quietFrom: T + GRACE, vouchedUntil: T + 16_000 },
  { name: 'a long poll still waiting (within the fetch wait): vouched until now', fetches: [T, T + 5000], at: T + 5000 + WAIT, quietFrom: T + GRACE, vouchedUntil: T + 5000 + WAIT },
  { name: 'no answer for longer than the fetch wait: the clock stops at last answer + wait', fetches: [T, T + 5000], at: T + 5000 + WAIT + 3000, quietFrom: T + GRACE, vouchedUntil: T + 5000 + WAIT },
  { name: 'exactly the gap since the last answer: still answering', fetches: [T], at: T + GAP, quietFrom: T + GRACE, vouchedUntil: T + WAIT },
  { name: 'past the gap: the broker is away', fetches: [T], at: T + GAP + 1, quietFrom: null, vouchedUntil: T + WAIT },
  { name: 'answers again after an outage: counted from a grace after the first new answer', fetches: [T, T + 30_000], at: T + 31_000, quietFrom: T + 30_000 + GRACE, vouchedUntil: T + 31_000 },
  { name: 'after an outage, answering again steadily', fetches: [T, T + 30_000, T + 34_000, T + 38_000], at: T + 40_000, quietFrom: T + 30_000 + GRACE, vouchedUntil: T + 40_000 },
  { name: 'answers exactly a gap apart: no outage', fetches: [T, T + GAP], at: T + GAP + 1, quietFrom: T + GRACE, vouchedUntil: T + GAP + 1 },
  { name: 'answers a gap + 1 ms apart: an outage', fetches: [T, T + GAP + 1], at: T + GAP + 2, quietFrom: T + GAP + 1 + GRACE, vouchedUntil: T + GAP + 2 },
  { name: 'the clock stepped back: the last answer stays where it was', fetches: [T + 5000, T], at: T + 6000, quietFrom: T + 5000 + GRACE, vouchedUntil: T + 6000 },
];

for (const c of cases) {
  test(`FetchWatch: ${c.name}`, () => {
    const w = new FetchWatch();
    for (const f of c.fetches) w.answered(f);
    assert.equal(w.quietFrom(c.at), c.quietFrom, 'quietFrom');
    assert.equal(w.answering(c.at), c.quietFrom !== null, 'answering');
    assert.equal(w.vouchedUntil(c.at), c.vouchedUntil, 'vouchedUntil');
  });
}

// quiet(now, lastEventAt, quietMs): the spans stage's rule, silence from max(last record, quietFrom)
const quietCases: { name: string; fetches: number[]; at: number; lastEventAt: number; quietMs: number; quiet: boolean }[] = [
  { name: 'last record long ago, answering for long: quiet', fetches: [T, T + 5000, T + 10_000], at: T + 12_000, lastEventAt: T - 60_000, quietMs: 1000, quiet: true },
  { name: 'last record too recent: not quiet', fetches: [T, T + 5000, T + 10_000], at: T + 12_000, lastEventAt: T + 11_500, quietMs: 1000, quiet: false },
  { name: 'last record exactly quietMs ago: quiet', fetches: [T, T + 5000, T + 10_000], at: T + 12_000, lastEventAt: T + 11_000, quietMs: 1000, quiet: true },
  { name: 'broker away: never quiet', fetches: [T], at: T + GAP + 1, lastEventAt: T - 60_000, quietMs: 1000, quiet: false },
  { name: 'back for less than grace + quietMs: not quiet yet', fetches: [T, T + 30_000], at: T + 30_000 + GRACE + 999, lastEventAt: T - 60_000, quietMs: 1000, quiet: false },
  { name: 'back for grace + quietMs: quiet', fetches: [T, T + 30_000, T + 35_000], at: T + 30_000 + GRACE + 1000, lastEventAt: T - 60_000, quietMs: 1000, quiet: true },
  { name: 'a record after the grace: counted from it', fetches: [T, T + 30_000, T + 35_000], at: T + 37_000, lastEventAt: T + 36_500, quietMs: 1000, quiet: false },
];

for (const c of quietCases) {
  test(`FetchWatch.quiet: ${c.name}`, () => {
    const w = new FetchWatch();
    for (const f of c.fetches) w.answered(f);
    assert.equal(w.quiet(c.at, c.lastEventAt, c.quietMs), c.quiet);
  });
}

test('FetchWatch: options replace the defaults', () => {
  const w = new FetchWatch({ gapMs: 100, graceMs: 10, maxWaitMs: 50 });
  w.answered(T);
  assert.equal(w.quietFrom(T + 100), T + 10);
  assert.equal(w.quietFrom(T + 101), null);
  assert.equal(w.vouchedUntil(T + 80), T + 50);
});
