/**
 * The profile benchmark's pure parts (test/bench/profile-figures.ts): the
 * workload's output line, work-done ratios, BPF run time per event and the
 * collector's CPU per interval.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseWork, workRatio, perCpuRatio, eventCost, cpuMsPerInterval } from '../bench/profile-figures.ts';

test('parseWork: the last JSON line of the workload; anything else throws with the output', () => {
  assert.deepEqual(parseWork('{"work":20163,"unit":"64KiB hashes","seconds":2.000}\n'), { work: 20163, seconds: 2 });
  assert.deepEqual(parseWork('noise\n{"work":0,"unit":"round trips","seconds":1.5}'), { work: 0, seconds: 1.5 });
  assert.deepEqual(parseWork('{"work":3584,"unit":"64KiB hashes","seconds":1.000,"cpu_s":0.328}'), { work: 3584, seconds: 1, cpu_s: 0.328 });
  for (const bad of ['{"work":5,"seconds":1,"cpu_s":-1}', '{"work":5,"seconds":1,"cpu_s":"1"}', 'Segmentation fault', '{"work":-1,"seconds":1}', '{"work":5,"seconds":0}', '{"work":"5","seconds":1}', 'null']) {
    assert.throws(() => parseWork(bad), /cannot read the workload's output/, bad);
  }
});

test('workRatio: rate with over the mean rate of the references; null without a usable reference', () => {
  const cases: [Parameters<typeof workRatio>[0], Parameters<typeof workRatio>[1], number | null][] = [
    [{ work: 90, seconds: 1 }, [{ work: 100, seconds: 1 }], 0.9],
    // rates, not totals: a longer run does not look faster
    [{ work: 200, seconds: 2 }, [{ work: 100, seconds: 1 }], 1],
    // the mean of the references' rates (80 and 120 -> 100)
    [{ work: 50, seconds: 1 }, [{ work: 80, seconds: 1 }, { work: 240, seconds: 2 }], 0.5],
    [{ work: 1, seconds: 3 }, [{ work: 1, seconds: 1 }], 0.333],
    [{ work: 5, seconds: 1 }, [], null],
    [{ work: 5, seconds: 1 }, [{ work: 0, seconds: 1 }], null],
  ];
  for (const [w, ref, want] of cases) assert.equal(workRatio(w, ref), want, JSON.stringify([w, ref]));
});

test('perCpuRatio: work per CPU second with over the references\' mean; null unless every run has CPU figures', () => {
  const cases: [Parameters<typeof perCpuRatio>[0], Parameters<typeof perCpuRatio>[1], number | null][] = [
    // the wall-clock rate halved by other load, the work per CPU second the same
    [{ work: 50, seconds: 1, cpu_s: 0.5 }, [{ work: 100, seconds: 1, cpu_s: 1 }], 1],
    [{ work: 90, seconds: 1, cpu_s: 1 }, [{ work: 100, seconds: 1, cpu_s: 1 }, { work: 50, seconds: 1, cpu_s: 0.5 }], 0.9],
    [{ work: 90, seconds: 1 }, [{ work: 100, seconds: 1, cpu_s: 1 }], null],
    [{ work: 90, seconds: 1, cpu_s: 1 }, [{ work: 100, seconds: 1 }], null],
    [{ work: 90, seconds: 1, cpu_s: 0 }, [{ work: 100, seconds: 1, cpu_s: 1 }], null],
    [{ work: 90, seconds: 1, cpu_s: 1 }, [], null],
  ];
  for (const [w, ref, want] of cases) assert.equal(perCpuRatio(w, ref), want, JSON.stringify([w, ref]));
});

test('eventCost: every program\'s run time over the event program\'s runs', () => {
  const h = (calls: number, total_ns: number) => ({ calls, ns_per_call: calls ? total_ns / calls : null, total_ns });
  // a stack walk moved to another hook still counts against the switches
  assert.deepEqual(eventCost({ rf_offcpu_switch: h(1000, 300_000), rf_offcpu_back: h(1000, 100_000) }, 'rf_offcpu_switch'),
    { events: 1000, bpf_ns_per_event: 400, bpf_total_ns: 400_000 });
  assert.deepEqual(eventCost({ rf_prof_sample: h(3, 1000) }, 'rf_prof_sample'), { events: 3, bpf_ns_per_event: 333.3, bpf_total_ns: 1000 });
  // the event program never ran (or is missing): no figure rather than a division by zero
  assert.deepEqual(eventCost({ rf_prof_sample: h(0, 0) }, 'rf_prof_sample'), { events: 0, bpf_ns_per_event: null, bpf_total_ns: 0 });
  assert.deepEqual(eventCost({ other: h(2, 10) }, 'rf_prof_sample'), { events: 0, bpf_ns_per_event: null, bpf_total_ns: 10 });
  assert.equal(eventCost(null, 'rf_prof_sample'), null);
});

test('cpuMsPerInterval: CPU seconds over a run scaled to one drain interval', () => {
  const cases: [number, number, number, number | null][] = [
    [0.4, 10, 10_000, 400],
    [0.1, 5, 10_000, 200],
    [0, 10, 10_000, 0],
    [1, 0, 10_000, null],
  ];
  for (const [cpu, s, iv, want] of cases) assert.equal(cpuMsPerInterval(cpu, s, iv), want, `${cpu} ${s} ${iv}`);
});
