/**
 * processor/failures.ts: a failing loop is said once per kind with its cause,
 * counted, said again at 10, 100, ...; recovery is said; the same failure
 * persisting past the bound with no success escalates once (FatalError).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailureReporter } from '../../processor/failures.ts';
import { FatalError } from '../../common/errors.ts';

function setup(persistMs = 10_000) {
  let now = 0;
  const lines: string[] = [];
  const fatal: FatalError[] = [];
  const r = new FailureReporter({ what: 'stage', log: (l) => lines.push(l), onFatal: (e) => fatal.push(e), persistMs, now: () => now });
  return { r, lines, fatal, tick: (ms: number) => (now += ms) };
}

test('failures: one line per kind, not one per tick; counted; said again at 10, 100', () => {
  const { r, lines, fatal, tick } = setup(1e9);
  for (let i = 0; i < 150; i++) {
    r.failed('commit', new Error('broker down'));
    tick(100);
  }
  r.failed('idle advance', new Error('x'));
  assert.equal(r.counts.commit, 150);
  assert.deepEqual(lines.map((l) => l.replace(/\(.*?\)/, '()')), [
    'stage: commit failed (); will retry',
    'stage: commit failed (); 10 times so far; will retry',
    'stage: commit failed (); 100 times so far; will retry',
    'stage: idle advance failed (); will retry',
  ]);
  assert.match(lines[0]!, /broker down/);
  assert.equal(fatal.length, 0);
});

test('failures: a changed cause is said; a success ends the streak and is said', () => {
  const { r, lines, tick } = setup();
  r.failed('commit', new Error('a'));
  r.failed('commit', new Error('a'));
  r.failed('commit', new Error('b'));
  tick(2000);
  r.ok('commit');
  r.ok('commit'); // nothing to say
  assert.equal(lines.length, 3);
  assert.match(lines[1]!, /\(Error: b\)/);
  assert.match(lines[2]!, /commit works again after 3 failures over 2 s/);
});

const escalation: { name: string; steps: (['fail', number] | ['ok'])[]; fatal: number }[] = [
  { name: 'failing past the bound escalates', steps: [['fail', 0], ['fail', 6000], ['fail', 6000]], fatal: 1 },
  { name: 'just under the bound does not', steps: [['fail', 0], ['fail', 9999]], fatal: 0 },
  { name: 'a success between resets the streak', steps: [['fail', 0], ['fail', 6000], ['ok'], ['fail', 0], ['fail', 6000]], fatal: 0 },
  { name: 'escalates once however long it goes on', steps: [['fail', 0], ['fail', 20_000], ['fail', 20_000], ['fail', 20_000]], fatal: 1 },
];
for (const c of escalation) {
  test(`failures: ${c.name}`, () => {
    const { r, fatal, tick } = setup(10_000);
    for (const s of c.steps) {
      if (s[0] === 'ok') r.ok('commit');
      else {
        tick(s[1]);
        r.failed('commit', new Error('stuck'));
      }
    }
    assert.equal(fatal.length, c.fatal);
    if (c.fatal) {
      assert.ok(fatal[0] instanceof FatalError);
      assert.match(fatal[0]!.message, /commit has failed \d+ times over \d+ s \(last: Error: stuck\)/);
    }
  });
}

test('failures: a final failure is said with its consequence and counted', () => {
  const { r, lines } = setup();
  r.final('final flush', new Error('gone'), '12 records not committed: the next owner re-reads them');
  assert.equal(r.counts['final flush'], 1);
  assert.match(lines[0]!, /final flush failed \(Error: gone\); 12 records not committed/);
});
