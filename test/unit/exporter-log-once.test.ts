/**
 * The exporter's fault log: a kind is said once, said again with a count when
 * it keeps recurring, and the memory of kinds is bounded (it was a Set that
 * grew with every distinct message and hid a recurring fault forever).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogOnce } from '../../exporter/log-once.ts';

test('a recurring fault is logged once, then again after repeatMs with how many times it happened', () => {
  let t = 0;
  const lines: string[] = [];
  const once = createLogOnce((l) => lines.push(l), { repeatMs: 60_000, now: () => t });
  once('failure:INVALID_ARGUMENT', 'rejected');
  for (let i = 0; i < 9; i++) {
    t += 1000;
    once('failure:INVALID_ARGUMENT', 'rejected');
  }
  assert.deepEqual(lines, ['rejected']);
  t = 61_000;
  once('failure:INVALID_ARGUMENT', 'rejected');
  assert.deepEqual(lines, ['rejected', 'rejected (10 times in the last 61s)']);
  t += 1000;
  once('failure:INVALID_ARGUMENT', 'rejected');
  assert.equal(lines.length, 2, 'quiet again for repeatMs after a repeat');
});

test('distinct kinds are each logged, and at most maxKinds are remembered', () => {
  const lines: string[] = [];
  const once = createLogOnce((l) => lines.push(l), { maxKinds: 100, now: () => 0 });
  for (let i = 0; i < 10_000; i++) once(`decode:bad record at offset ${i}`, `bad ${i}`);
  assert.equal(lines.length, 10_000);
  assert.equal(once.size, 100);
  // the most recent kinds are the remembered ones
  once('decode:bad record at offset 9999', 'bad 9999');
  assert.equal(lines.length, 10_000);
});

test('a kind seen again moves to the back: the least recently seen is forgotten first', () => {
  const lines: string[] = [];
  const once = createLogOnce((l) => lines.push(l), { maxKinds: 2, now: () => 0 });
  once('a', 'a');
  once('b', 'b');
  once('a', 'a'); // a is now the most recent
  once('c', 'c'); // forgets b
  once('a', 'a');
  assert.deepEqual(lines, ['a', 'b', 'c']);
  once('b', 'b');
  assert.deepEqual(lines, ['a', 'b', 'c', 'b']);
});
