/**
 * processor/stage-clients.ts commitFailureHandler: what every transactional
 * stage (aggregate, spans, profiles) does with a failed transaction. Fencing
 * (another instance with our transactional id) is fatal at once and said
 * once, however many batches and ticks fail after it; any other failure is
 * the FailureReporter's 'commit' kind (counted, escalated only if it persists).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commitFailureHandler } from '../../processor/stage-clients.ts';
import { FailureReporter } from '../../processor/failures.ts';
import type { FatalError } from '../../common/errors.ts';

const fencedEpoch = Object.assign(new Error('The producer attempted to use a producer id which is not currently assigned'), { type: 'INVALID_PRODUCER_EPOCH' });
const fencedType = Object.assign(new Error('fenced'), { type: 'PRODUCER_FENCED' });
const fencedText = new Error('Producer attempted an operation with an old epoch');
const notNow = Object.assign(new Error('concurrent'), { type: 'CONCURRENT_TRANSACTIONS' });
const down = new Error('Connection error: ECONNREFUSED');

const cases: { name: string; errors: Error[]; fatal: number; commitFailures: number }[] = [
  { name: 'a broker away: counted, not fatal', errors: [down, down, down], fatal: 0, commitFailures: 3 },
  { name: 'the coordinator busy: counted, not fatal', errors: [notNow], fatal: 0, commitFailures: 1 },
  { name: 'fenced (INVALID_PRODUCER_EPOCH): fatal once', errors: [fencedEpoch], fatal: 1, commitFailures: 0 },
  { name: 'fenced (PRODUCER_FENCED), then every later batch fails the same: still once', errors: [fencedType, fencedType, fencedEpoch, fencedText], fatal: 1, commitFailures: 0 },
  { name: 'fenced known by its message alone', errors: [fencedText], fatal: 1, commitFailures: 0 },
  { name: 'outage, then fenced, then outage: fatal once, the outage counted', errors: [down, fencedEpoch, down], fatal: 1, commitFailures: 2 },
];

for (const c of cases) {
  test(`commitFailureHandler: ${c.name}`, () => {
    const lines: string[] = [];
    const fatal: FatalError[] = [];
    const failures = new FailureReporter({ what: 'processor: spans', log: (l) => lines.push(l), onFatal: (e) => fatal.push(e), persistMs: 1e9 });
    const failed = commitFailureHandler({ stage: 'processor spans stage', instanceId: 'i-1', failures, onFatal: (e) => fatal.push(e) });
    for (const e of c.errors) failed(e);
    assert.equal(fatal.length, c.fatal, fatal.map((f) => f.message).join('\n'));
    assert.equal(failures.counts.commit ?? 0, c.commitFailures);
    for (const f of fatal) {
      assert.match(f.message, /^processor spans stage: fenced: another processor runs as --instance i-1 \(.+\); this one stops$/);
      assert.ok(c.errors.includes(f.cause as Error), 'the fencing error is the cause');
    }
  });
}

test('commitFailureHandler: without onFatal a fencing is not thrown (a stage in a test, or stopping)', () => {
  const failures = new FailureReporter({ what: 'x', log: () => {} });
  const failed = commitFailureHandler({ stage: 'x', instanceId: 'i', failures });
  assert.doesNotThrow(() => failed(fencedEpoch));
  assert.equal(failures.counts.commit ?? 0, 0);
});
