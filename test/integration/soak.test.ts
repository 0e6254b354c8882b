/**
 * The soak in CI (test/soak/soak.ts): the whole pipeline into a real
 * OpenTelemetry Collector under third-party clients (wrk, curl, Python
 * grpcio, dig against dnsmasq, dd oflag=direct, CPU burners) while the
 * processor and the exporter are killed, the broker restarted and the
 * backend stalled. Known work must arrive
 * exactly (duplicates reported apart), any shortfall must be covered by a
 * counter, and no stage may exit on its own.
 * Bounded for CI: ~100 s of load, ~4 min in all; `npm run soak -- --duration 30m`
 * runs it longer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rootOrSkip } from '../support/integration.ts';
import { runSoak, FAULTS, type Fault } from '../soak/soak.ts';

const LOAD_MS = Number(process.env.RINGFLOW_SOAK_LOAD_MS ?? 100_000);
/**
 * A comma list of faults (processor,exporter,broker,backend), '' for none.
 * All four by default, as `npm run soak`.
 */
const CI_FAULTS: readonly Fault[] = FAULTS;
const ONLY = process.env.RINGFLOW_SOAK_FAULTS;
const faults = ONLY === undefined ? [...CI_FAULTS] : ONLY.split(',').filter(Boolean) as Fault[];

test('soak: mixed third-party load and faults, known work conserved at the OTLP end', { timeout: LOAD_MS + 330_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const r = await runSoak({ loadMs: LOAD_MS, drainMs: 90_000, faults, log: (l) => t.diagnostic(l) });
  // the summary goes out whatever the verdict: per signal expected, seen, duplicates, drops
  for (const l of r.summary.split('\n')) t.diagnostic(l);
  assert.deepEqual(r.failures, [], `${r.summary}\nlogs and the OTLP file: ${r.workDir}`);
});
