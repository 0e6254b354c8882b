import type { PartitionState } from '../../processor/partition.ts';

/**
 * Feeds `input` (repartition key, value) through partition states as the
 * aggregate stage does: after each record the closed windows are taken, and a
 * commit (the first offset an open window still needs, with the checkpoint)
 * happens whenever points closed or every `commitEvery` records. After each
 * offset in `crashAt` the state is lost and a new one (`newState` of the last
 * committed checkpoint) goes on from the last committed offset. At the end the
 * idle clock at `idleAtNs` closes what is open. Returns the points' values.
 */
export function replayWithCrashes(
  newState: (checkpoint: string | undefined) => PartitionState,
  input: readonly (readonly [string, Buffer])[],
  crashAt: readonly number[],
  commitEvery: number,
  idleAtNs: bigint,
): Buffer[] {
  const out: Buffer[] = [];
  let committed = { offset: 0, meta: undefined as string | undefined };
  let s = newState(undefined);
  let at = 0;
  const crashes = [...crashAt];
  while (at < input.length) {
    s.add(input[at]![0], input[at]![1], BigInt(at));
    at++;
    s.advance();
    const pts = s.takeClosed();
    if (pts.length > 0 || at % commitEvery === 0) {
      out.push(...pts.map((p) => p.value));
      committed = { offset: Number(s.minOpenOffset() ?? BigInt(at)), meta: s.checkpoint() };
    }
    if (crashes[0] === at) {
      crashes.shift();
      s = newState(committed.meta);
      at = committed.offset;
    }
  }
  if (s.advanceIdle(idleAtNs)) out.push(...s.takeClosed().map((p) => p.value));
  return out;
}
