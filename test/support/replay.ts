import type { PartitionState } from '../../processor/partition.ts';

/**
 * Feeds `input` (repartition key, value) through partition states as the
 * aggregate stage does: after each record the closed windows are taken, and a
 * commit (the first offset an open window still needs, with the checkpoint)
 * happens whenever points closed or every `commitEvery` records. After each
 * offset in `crashAt` the state is lost and a new one (`newState` of the last
 * committed checkpoint) goes on from the last committed offset. At the end the
 * idle clock at `idleAtNs` closes what is open. Returns the points' values.
 *
 * `more.idle` (offset -> wall ns): after that offset, the first time it is
 * read only (a clock tick is not replayed), the partition was quiet and the
 * idle clock ran (advanceIdle), committing what it closed as the stage's tick
 * does. After each offset in `more.rewindAt` the consumer goes back to the
 * last committed offset but the state is kept: what kafkajs does after a
 * rebalance that leaves the partition with us (its offsets are fetched from
 * the group again; the stage keeps the states of partitions still its own).
 */
export function replayWithCrashes(
  newState: (checkpoint: string | undefined) => PartitionState,
  input: readonly (readonly [string, Buffer])[],
  crashAt: readonly number[],
  commitEvery: number,
  idleAtNs: bigint,
  more: { idle?: ReadonlyMap<number, bigint>; rewindAt?: readonly number[] } = {},
): Buffer[] {
  const idle = more.idle ?? new Map<number, bigint>();
  const rewinds = [...(more.rewindAt ?? [])];
  const out: Buffer[] = [];
  let committed = { offset: 0, meta: undefined as string | undefined };
  let s = newState(undefined);
  let at = 0;
  let furthest = 0;
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
    const wall = at > furthest ? idle.get(at) : undefined;
    furthest = Math.max(furthest, at);
    if (wall !== undefined && s.advanceIdle(wall)) {
      out.push(...s.takeClosed().map((p) => p.value));
      committed = { offset: Number(s.minOpenOffset() ?? BigInt(at)), meta: s.checkpoint() };
    }
    if (crashes[0] === at) {
      crashes.shift();
      s = newState(committed.meta);
      at = committed.offset;
    } else if (rewinds[0] === at) {
      rewinds.shift();
      at = committed.offset;
    }
  }
  if (s.advanceIdle(idleAtNs)) out.push(...s.takeClosed().map((p) => p.value));
  return out;
}
