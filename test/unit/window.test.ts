/**
 * Tumbling event-time windows: assignment at the edges, watermark progression,
 * late events, out-of-order events within the lateness, idle advance, and
 * restoring from a snapshot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WindowAssigner, type Window } from '../../processor/window.ts';

const S = 1_000_000_000n; // 1 s in ns
const T0 = 1_764_000_000n * S; // a wall-clock time that is a multiple of 10 s
const starts = (ws: readonly Window[]): bigint[] => ws.map((w) => w.startNs);

test('window: assignment at the edges ([start, start + size))', () => {
  const a = new WindowAssigner({ sizeMs: 10_000, latenessMs: 5_000 });
  const cases: [bigint, bigint][] = [
    [T0, T0],
    [T0 + 1n, T0],
    [T0 + 10n * S - 1n, T0],
    [T0 + 10n * S, T0 + 10n * S],
    [T0 - 1n, T0 - 10n * S],
    [0n, 0n],
    [-1n, -10n * S],
    [-10n * S, -10n * S],
    [1_764_000_003_999_999_999n, T0], // above 2^53: BigInt, no precision lost
  ];
  for (const [t, start] of cases) assert.deepEqual(a.windowOf(t), { startNs: start, endNs: start + 10n * S }, String(t));
  const b = new WindowAssigner({ sizeMs: 250, latenessMs: 0 });
  assert.deepEqual(b.windowOf(T0 + 260_000_000n), { startNs: T0 + 250_000_000n, endNs: T0 + 500_000_000n });
  assert.throws(() => new WindowAssigner({ sizeMs: 0 }), RangeError);
  assert.throws(() => new WindowAssigner({ sizeMs: 1.5 }), RangeError);
  assert.throws(() => new WindowAssigner({ latenessMs: -1 }), RangeError);
});

test('window: watermark = max event time - lateness; windows close once it reaches their end', () => {
  const a = new WindowAssigner(); // 10 s windows, 5 s lateness
  assert.equal(a.watermarkNs, null);
  assert.deepEqual(a.advance(), []);
  // [event offset from T0 in s, watermark after (offset from T0), windows closed by advance()]
  const steps: [bigint, bigint, bigint[]][] = [
    [1n, -4n, []],
    [3n, -2n, []],
    [2n, -2n, []], // older event: the watermark does not move back
    [12n, 7n, []],
    [14n, 9n, []],
    [15n, 10n, [T0]], // end of [T0, T0+10) == watermark: closed
    [29n, 24n, [T0 + 10n * S]],
    [35n, 30n, [T0 + 20n * S]],
  ];
  for (const [t, wm, closed] of steps) {
    assert.notEqual(a.observe(T0 + t * S), null, `event at ${t}s`);
    assert.equal(a.watermarkNs, T0 + wm * S, `watermark after ${t}s`);
    assert.deepEqual(starts(a.advance()), closed, `closed after ${t}s`);
  }
  assert.equal(a.maxEventNs, T0 + 35n * S);
  assert.deepEqual(starts(a.openWindows()), [T0 + 30n * S]);
});

test('window: late events (their window has closed) return null; out of order within the lateness is kept', () => {
  const a = new WindowAssigner({ sizeMs: 10_000, latenessMs: 5_000 });
  // [event offset in ms, on time?]
  const events: [bigint, boolean][] = [
    [9_000n, true],
    [12_000n, true],
    [8_000n, true], // 4 s behind the newest: within the lateness, window [0, 10) still open
    [14_999n, true],
    [9_999n, true], // watermark 9.999 s < 10 s: still open
    [15_000n, true], // watermark reaches 10 s: [0, 10) closes
    [9_999n, false], // late
    [0n, false],
    [10_000n, true], // window [10, 20) is open
    [-1n, false], // a window never observed, long closed: late too
    [26_000n, true], // watermark 21 s: [10, 20) closes
    [19_999n, false],
    [20_000n, true],
  ];
  for (const [ms, onTime] of events) {
    const w = a.observe(T0 + ms * 1_000_000n);
    assert.equal(w !== null, onTime, `event at ${ms} ms`);
    if (w) assert.ok(w.startNs <= T0 + ms * 1_000_000n && T0 + ms * 1_000_000n < w.endNs);
  }
  // closing depends on the events only, not on when advance() is called
  assert.deepEqual(starts(a.advance()), [T0, T0 + 10n * S]);
  assert.deepEqual(starts(a.openWindows()), [T0 + 20n * S]);
});

test('window: advance() returns each closed window once, in order, whenever it is called', () => {
  const times = [3n, 1n, 14n, 11n, 27n, 22n, 33n, 5n, 41n, 38n, 52n, 70n].map((s) => T0 + s * S);
  const eager = new WindowAssigner();
  const lazy = new WindowAssigner();
  const eagerClosed: bigint[] = [];
  const verdicts: [boolean, boolean][] = [];
  for (const t of times) {
    const we = eager.observe(t);
    eagerClosed.push(...starts(eager.advance()));
    const wl = lazy.observe(t);
    verdicts.push([we === null, wl === null]);
  }
  for (const [e, l] of verdicts) assert.equal(e, l);
  assert.deepEqual(starts(lazy.advance()), eagerClosed);
  assert.deepEqual(eagerClosed, [0n, 10n, 20n, 30n, 40n, 50n].map((s) => T0 + s * S));
  assert.deepEqual(lazy.advance(), []);
});

test('window: oldestOpen() is the window holding the watermark, registered for advance()', () => {
  const a = new WindowAssigner();
  assert.throws(() => a.oldestOpen());
  a.observe(T0 + 1n * S);
  a.observe(T0 + 27n * S); // watermark 22 s: [0,10) and [10,20) closed, [20,30) holds it
  assert.equal(a.observe(T0 + 2n * S), null);
  const w = a.oldestOpen();
  assert.deepEqual(w, { startNs: T0 + 20n * S, endNs: T0 + 30n * S, closeAtNs: T0 + 35n * S });
  assert.equal(a.oldestOpen(), w); // the same object each time
  assert.deepEqual(starts(a.advance()), [T0]);
  assert.deepEqual(starts(a.openWindows()), [T0 + 20n * S]);
  assert.ok(a.isClosed(T0 + 20n * S) && !a.isClosed(T0 + 30n * S));
});

test('window: advanceTo(wall) closes an idle partition by processing time, never moves back', () => {
  const a = new WindowAssigner();
  a.observe(T0 + 4n * S);
  assert.deepEqual(a.advanceTo(T0 + 14n * S), []); // watermark 9 s
  assert.deepEqual(starts(a.advanceTo(T0 + 15n * S)), [T0]);
  assert.equal(a.watermarkNs, T0 + 10n * S);
  assert.deepEqual(a.advanceTo(T0), []); // an older wall time changes nothing
  assert.equal(a.watermarkNs, T0 + 10n * S);
  assert.equal(a.maxEventNs, T0 + 4n * S); // the event maximum is the events'
  assert.equal(a.observe(T0 + 9n * S), null); // now late
  const b = new WindowAssigner();
  assert.deepEqual(b.advanceTo(T0), []); // before any event: only sets the watermark
  assert.equal(b.watermarkNs, T0 - 5n * S);
  assert.equal(b.observe(T0 - 16n * S), null); // [T0-20, T0-10) ends before the watermark
  assert.notEqual(b.observe(T0 - 6n * S), null); // [T0-10, T0) is open
});

test('window: state() / restore() continues exactly where the snapshot was taken', () => {
  const rnd = (() => {
    let x = 12345;
    return () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  })();
  const times = Array.from({ length: 400 }, (_, i) => T0 + BigInt(i) * 100_000_000n - BigInt(Math.floor(rnd() * 7e9)));
  const run = (cut: number | null): [boolean[], bigint[]] => {
    let a = new WindowAssigner({ sizeMs: 2_000, latenessMs: 3_000 });
    const late: boolean[] = [];
    const closed: bigint[] = [];
    times.forEach((t, i) => {
      if (i === cut) a = WindowAssigner.restore(JSON.parse(JSON.stringify(a.state())));
      late.push(a.observe(t) === null);
      if (i % 7 === 0) closed.push(...starts(a.advance()));
    });
    closed.push(...starts(a.advanceTo(T0 + 1000n * S)));
    return [late, closed];
  };
  const whole = run(null);
  assert.ok(whole[0].some((l) => l) && whole[0].some((l) => !l), 'the stream has late and on-time events');
  for (const cut of [0, 1, 57, 200, 399]) assert.deepEqual(run(cut), whole, `restored at ${cut}`);
  const s = new WindowAssigner().state();
  assert.deepEqual(s, { sizeNs: '10000000000', latenessNs: '5000000000', maxEventNs: null, horizonNs: null, open: [] });
  assert.throws(() => WindowAssigner.restore({ ...s, open: ['123'] }), RangeError);
});
