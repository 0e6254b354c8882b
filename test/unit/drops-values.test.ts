/**
 * Values outside the physically possible range (processor/aggregate.ts
 * VALUE_RANGES) are named with why; stage 1 dead-letters their records. A
 * latency of -1 ns (a wrapped u64 subtraction) was dropped with no word, and
 * one of 2^62 ns went to OTLP as 146 years.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invalidValue, type EventBase } from '../../processor/aggregate.ts';

const HOUR = 3_600_000_000_000n;
const UP = 86_400_000_000_000n * 3n; // ts_ns: three days since boot

function ev(fields: Record<string, unknown>): EventBase {
  return { host: 'h', boot_time_ns: 1_700_000_000_000_000_000n, ts_ns: UP, ...fields } as unknown as EventBase;
}

test('invalidValue: durations outside their physical range, per topic', () => {
  const cases: { name: string; topic: string; e: EventBase; bad: RegExp | null }[] = [
    { name: 'runq 1 ms', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: 1_000_000n }), bad: null },
    { name: 'runq 0', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: 0n }), bad: null },
    { name: 'runq -1 ns (a wrapped u64)', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: -1n }), bad: /latency_ns -1 is negative/ },
    { name: 'runq 2^62 ns (146 years)', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: 2n ** 62n }), bad: /latency_ns 4611686018427387904 is over 3600 s/ },
    { name: 'runq exactly 1 h', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: HOUR }), bad: null },
    { name: 'runq 1 h + 1 ns', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: HOUR + 1n }), bad: /over 3600 s/ },
    { name: 'runq as a number (fast decoder)', topic: 'ringflow.sched.runqlat.v1', e: ev({ latency_ns: -5 }), bad: /negative/ },
    { name: 'block 30 s', topic: 'ringflow.block.io.v1', e: ev({ latency_ns: 30_000_000_000n }), bad: null },
    { name: 'block 2 h', topic: 'ringflow.block.io.v1', e: ev({ latency_ns: 2n * HOUR }), bad: /over 3600 s/ },
    { name: 'connect -1', topic: 'ringflow.tcp.connect.v1', e: ev({ latency_ns: -1n }), bad: /negative/ },
    { name: 'off-CPU two days (asleep)', topic: 'ringflow.sched.cswitch.v1', e: ev({ off_cpu_ns: 2n * 86_400_000_000_000n }), bad: null },
    { name: 'off-CPU since before boot', topic: 'ringflow.sched.cswitch.v1', e: ev({ off_cpu_ns: UP + 1n }), bad: /over the time since boot/ },
    { name: 'off-CPU 2^62', topic: 'ringflow.sched.cswitch.v1', e: ev({ off_cpu_ns: 2n ** 62n }), bad: /over the time since boot/ },
    { name: 'span 5 ms', topic: 'ringflow.spans.v1', e: ev({ start_ns: 1_000n, end_ns: 5_001_000n }), bad: null },
    { name: 'span ending before it starts', topic: 'ringflow.spans.v1', e: ev({ start_ns: 2_000n, end_ns: 1_000n }), bad: /end_ns - start_ns -1000 is negative/ },
    { name: 'span of two days', topic: 'ringflow.spans.v1', e: ev({ start_ns: 0n, end_ns: 48n * HOUR }), bad: /over 86400 s/ },
    { name: 'a topic without a duration', topic: 'ringflow.tcp.retransmit.v1', e: ev({}), bad: null },
  ];
  for (const c of cases) {
    const got = invalidValue(c.topic, c.e);
    if (c.bad === null) assert.equal(got, null, c.name);
    else assert.match(got ?? '(valid)', c.bad, c.name);
  }
});
