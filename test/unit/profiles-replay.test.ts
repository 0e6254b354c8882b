/**
 * ProfilePartition (processor/profiles.ts), the profiles stage's partition
 * logic: fed as the stage feeds it (commit after each batch of `commitEvery`
 * records with commitOffset() and checkpoint(); the idle clock at given
 * offsets), a crash at any offset and a restart from the last commit's
 * checkpoint give exactly the profiles of a run without crashes. And the
 * checkpoint is needed: a window closed by the idle clock stays closed for a
 * straggler read after it, which a state rebuilt from the offset alone
 * would merge into a profile of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProfilePartition, type ProfileOut, type StackRecordIn } from '../../processor/profiles.ts';
import { mulberry32 } from '../support/prng.ts';

const S = 1_000_000_000n;
const OPTS = { windowMs: 2000, latenessMs: 1000, topStacks: 3 };

function rec(tNs: bigint, over: Partial<StackRecordIn> = {}): StackRecordIn {
  return {
    kind: 'ONCPU', window_start_ns: tNs, window_end_ns: tNs, tgid: 7n, comm: 'spin', process_name: 'svc', value: 1n, sample_hz: 19,
    state: 'RUNNING', user_stack: 'OK', kernel_stack: 'NONE', frames: [{ module: '/bin/x', offset: 16n, function: 'f', file: null, line: null, kind: 'USER' }],
    host: 'h', boot_time_ns: 0n, ...over,
  };
}

interface Run { crashAt?: number[]; idle?: ReadonlyMap<number, bigint>; commitEvery?: number; useCheckpoint?: boolean; finalWallNs: bigint }

function replay(input: readonly StackRecordIn[], run: Run): ProfileOut[] {
  const mk = (meta: string | undefined) => new ProfilePartition(OPTS, run.useCheckpoint === false ? undefined : meta);
  const every = run.commitEvery ?? 1;
  const crashes = [...(run.crashAt ?? [])];
  const out: ProfileOut[] = [];
  let committed = { offset: 0, meta: undefined as string | undefined };
  let p = mk(undefined);
  let at = 0;
  let furthest = 0;
  while (at < input.length) {
    p.add(input[at]!, BigInt(at));
    at++;
    const closed = p.closed();
    out.push(...closed);
    if (closed.length > 0 || at % every === 0) committed = { offset: Number(p.commitOffset()), meta: p.checkpoint() };
    // a clock tick happens once, when first read up to there; a replay does not repeat it
    const wall = at > furthest ? run.idle?.get(at) : undefined;
    furthest = Math.max(furthest, at);
    if (wall !== undefined) {
      const c = p.closed(wall);
      if (c.length > 0) {
        out.push(...c);
        committed = { offset: Number(p.commitOffset()), meta: p.checkpoint() };
      }
    }
    if (crashes[0] === at) {
      crashes.shift();
      p = mk(committed.meta);
      at = committed.offset;
    }
  }
  out.push(...p.closed(run.finalWallNs));
  return out;
}

const plain = (ps: ProfileOut[]) => JSON.parse(JSON.stringify(ps, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));

test('crashes anywhere, commits per record or per 7: the same profiles as without a crash', () => {
  const rnd = mulberry32(11);
  const input: StackRecordIn[] = [];
  for (let i = 0; i < 300; i++) {
    // mostly in order, up to 1.5 s back: some late, most not
    const t = 100n * S + BigInt(i) * (S / 10n) - BigInt(Math.floor(rnd() * 1500)) * 1_000_000n;
    input.push(rec(t, { process_name: `svc${i % 3}`, value: BigInt(1 + Math.floor(rnd() * 5)), frames: [{ module: '/bin/x', offset: BigInt(16 * (i % 5)), function: `f${i % 5}`, file: null, line: null, kind: 'USER' }] }));
  }
  const idle = new Map([[150, 120n * S]]);
  for (const commitEvery of [1, 7]) {
    const want = plain(replay(input, { commitEvery, idle, finalWallNs: 1000n * S }));
    assert.ok(want.length > 20);
    for (const crashAt of [[1], [17, 55, 56], [150, 151], [120, 199, 250, 299], [299]]) {
      assert.deepEqual(plain(replay(input, { commitEvery, idle, crashAt, finalWallNs: 1000n * S })), want, `commitEvery ${commitEvery}, crashes at ${crashAt}`);
    }
  }
});

test('a window closed by the idle clock stays closed for a straggler after a restart (the checkpoint carries it)', () => {
  const input = [
    rec(10n * S + S / 2n), // window [10, 12); the idle clock at 100 s closes it
    rec(98n * S + S / 2n), // window [98, 100): open under watermark 99 s
    rec(96n * S + S / 2n), // window [96, 98): closed under 99 s, late
  ];
  const run: Run = { idle: new Map([[1, 100n * S]]), finalWallNs: 1000n * S };
  const windows = (ps: ProfileOut[]) => ps.map((p) => Number(p.window_start_ns / S));
  const want = replay(input, run);
  assert.deepEqual(windows(want), [10, 98]);
  assert.deepEqual(plain(replay(input, { ...run, crashAt: [3] })), plain(want));
  // rebuilt from the committed offset alone, the straggler would make a profile of its own
  assert.deepEqual(windows(replay(input, { ...run, crashAt: [3], useCheckpoint: false })), [10, 96, 98]);
});

test('a checkpoint of another window size, another version or garbage is refused (the stage then starts from the offset alone)', () => {
  const p = new ProfilePartition(OPTS);
  p.add(rec(10n * S), 0n);
  const cp = p.checkpoint();
  assert.doesNotThrow(() => new ProfilePartition(OPTS, cp));
  assert.throws(() => new ProfilePartition({ ...OPTS, windowMs: 4000 }, cp), /window size or lateness changed/);
  assert.throws(() => new ProfilePartition(OPTS, JSON.stringify({ ...JSON.parse(cp), v: 2 })), /unknown version 2/);
  assert.throws(() => new ProfilePartition(OPTS, 'not json'));
});
