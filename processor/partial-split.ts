/**
 * Stage 1's partial aggregates within the repartition topic's
 * max.message.bytes. A partial of very many series (one host's connects to
 * thousands of endpoints in one window) can be over it, and dead-lettering it
 * would lose every one of its events. Its series are split into several
 * partials of the same (topic, host, window), which stage 2 merges exactly as
 * it merges the partials of consecutive transactions: each series stays whole
 * in one part, and the window cannot close between the parts (each part's
 * events end before the window does, so its watermark stays below the
 * window's close). The first part carries the partial's event count, the
 * others 0 (stage 2 counts events per series for lateness and validity; the
 * partial's count is only its counter). Pure.
 */
import { recordBytes } from '../kafka/client.ts';
import type { PartialWindow } from './aggregate.ts';
import { encodePartial } from './partial.ts';

/**
 * `p` as encoded partials whose records (with `key`) are at most `maxBytes`
 * each. A part of one series still over it is returned as it is: the caller
 * dead-letters it (sendWithinLimits does).
 */
export function splitPartial(p: PartialWindow, key: string, maxBytes: number): { partial: PartialWindow; value: Buffer }[] {
  const value = encodePartial(p);
  if (p.series.length <= 1 || recordBytes({ key, value }) <= maxBytes) return [{ partial: p, value }];
  const half = Math.ceil(p.series.length / 2);
  return [
    ...splitPartial({ ...p, series: p.series.slice(0, half) }, key, maxBytes),
    ...splitPartial({ ...p, events: 0, series: p.series.slice(half) }, key, maxBytes),
  ];
}
