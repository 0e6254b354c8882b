/**
 * Issue 9, item 6: every kind of loss the stats record carries is on the
 * collector's live summary line too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summaryLine, lossesSummaryPart } from '../../cli/collect.ts';
import type { StatsSnapshot } from '../../collector/collector.ts';
import { CollectorLosses, type CollectorLossInput } from '../../cli/summary.ts';

const base: StatsSnapshot = {
  time_ns: 0n, interval_ns: 5_000_000_000n,
  events: [{ event: 'ringflow.tcp.connect.v1', read: 10, kernel_drops: 2, user_drops: 3, produced: 7 }],
  send_errors: 1, pending: 4, ring_bytes: 0, undecodable: 0, drop_reasons: [], l7_parse_failures: [], clamped: 0, kernel_losses: [],
};

test('summary line: losses by reason, kernel counts, L7 parser stops by reason, clamped values (table)', () => {
  const cases: [string, Partial<StatsSnapshot>, string][] = [
    ['nothing lost: nothing added', {}, ''],
    ['losses by reason', { drop_reasons: [{ reason: 'backpressure', count: 3 }, { reason: 'too_large_dead_lettered', count: 1 }] }, '; lost by reason: backpressure 3, too_large_dead_lettered 1'],
    ['L7 parse losses and recoveries', { l7_parse_failures: [{ reason: 'HTTP1: bad start line', count: 2 }] }, '; l7 parse losses and recoveries: HTTP1: bad start line 2'],
    ['clamped', { clamped: 1 }, '; stats values clamped 1'],
    ['kernel losses by reason', { kernel_losses: [{ reason: 'block_orphaned', count: 2 }, { reason: 'tcp_drop_unattributed', count: 1 }] }, '; lost in the kernel by reason: block_orphaned 2, tcp_drop_unattributed 1'],
    ['calls the kernel counted and did not send (fs)', { kernel_counts: [{ reason: 'fs_below_min_latency_pread', count: 3 }, { reason: 'fs_failed_open', count: 1 }] },
      '; counted in the kernel, not sent: fs_below_min_latency_pread 3, fs_failed_open 1'],
    ['all', { drop_reasons: [{ reason: 'undecodable', count: 5 }], l7_parse_failures: [{ reason: 'DNS: not DNS', count: 1 }], clamped: 2 },
      '; lost by reason: undecodable 5; l7 parse losses and recoveries: DNS: not DNS 1; stats values clamped 2'],
  ];
  const head = 'ringflow: 5.0s: read 10 (tcp.connect 10), produced 7, kernel drops 2, user drops 3, send errors 1, pending 4';
  for (const [name, over, want] of cases) {
    const s = { ...base, ...over };
    assert.equal(lossesSummaryPart(s), want, name);
    assert.equal(summaryLine(s), head + want, name);
  }
});

test('up: the collectors\' losses from their stats records, between two summary lines (table)', () => {
  const cases: [string, CollectorLossInput[], string][] = [
    ['nothing', [], ''],
    ['no loss', [{ events: [{ kernel_drops: 0n, user_drops: 0n }], drop_reasons: [], l7_parse_failures: [], clamped: 0n }], ''],
    ['an old collector (v0 record: no breakdown)', [{ events: [{ kernel_drops: 4n, user_drops: 1n }] }], '; collectors: kernel drops 4, user drops 1'],
    ['summed over records and hosts', [
      { events: [{ kernel_drops: 1n, user_drops: 2n }, { kernel_drops: 0n, user_drops: 1n }], drop_reasons: [{ reason: 'backpressure', count: 2n }, { reason: 'too_large_dead_lettered', count: 1n }], l7_parse_failures: [{ reason: 'HTTP1: bad start line', count: 1n }], clamped: 0n },
      { events: [{ kernel_drops: 2n, user_drops: 0n }], drop_reasons: [{ reason: 'backpressure', count: 1n }], l7_parse_failures: [], clamped: 1n },
    ], '; collectors: kernel drops 3, user drops 3; lost by reason: backpressure 3, too_large_dead_lettered 1; l7 parse losses and recoveries: HTTP1: bad start line 1; stats values clamped 1'],
    ['kernel losses by reason, summed', [
      { events: [{ kernel_drops: 0n, user_drops: 0n }], kernel_losses: [{ reason: 'block_orphaned', count: 1n }] },
      { events: [{ kernel_drops: 0n, user_drops: 0n }], kernel_losses: [{ reason: 'block_orphaned', count: 2n }, { reason: 'block_untracked', count: 1n }] },
    ], '; collectors: lost in the kernel by reason: block_orphaned 3, block_untracked 1'],
  ];
  for (const [name, records, want] of cases) {
    const t = new CollectorLosses();
    for (const r of records) t.add(r);
    assert.equal(t.take(), want, name);
    assert.equal(t.take(), '', `${name}: take() starts again`);
  }
});
