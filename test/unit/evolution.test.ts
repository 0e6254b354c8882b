/**
 * Schema evolution across collector versions: records written with an older
 * schema version (schemas/history/<id>.v<N>.avsc, their own fingerprint) are
 * read in the current schema's shape by the registry (decodeCurrent), routed
 * by stage 1 and aggregated by stage 2 like current records; the history
 * files are valid older versions, kept out of registry.all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SCHEMA_DIR, createRegistry, registerHistory, schemaRegistry, type HistorySchema, type RegisteredSchema } from '../../schemas/registry.ts';
import { SingleObjectFormat, WireError, decodeCurrent, decodeRecord, encodeRecord } from '../../schemas/wire.ts';
import { createTranscoder } from '../../collector/events/transcode.ts';
import { rawRecord } from '../fixtures/raw.ts';
import { routeRecord } from '../../processor/repartition.ts';
import { createPartitionState } from '../../processor/partition.ts';
import { WindowAggregator, type TopicEvent } from '../../processor/aggregate.ts';
import { DEADLETTER_TOPIC, REPARTITION_TOPIC, repartitionKey } from '../../processor/topics.ts';

const registry = schemaRegistry();
const current = registry.byId('sched.runqlat')!;
const v0 = registry.history.find((h) => h.id === 'sched.runqlat.v0')!;
const TOPIC = current.topic;

const S = 1_000_000_000n;
const BOOT = 1_764_000_000n * S; // a multiple of the 10 s window
const HOST = 'old-collector';

/** A run-queue event's fields as both versions have them (v0 lacks `kind`). */
const fields = (comm: string, tsNs: bigint, latencyNs: bigint) => ({
  cpu: 3, pid: 42n, tgid: 40n, uid: 1000n, ts_ns: tsNs, cgroup_id: 7n, comm, latency_ns: latencyNs, prev_pid: 9n, host: HOST, boot_time_ns: BOOT,
});
/** Written by an older collector: single-object framed with v0's own fingerprint. */
const oldRecord = (comm: string, tsNs: bigint, latencyNs: bigint): Buffer => encodeRecord(v0, fields(comm, tsNs, latencyNs));
/** Written by a current collector (the transcoder's hot path), kind UNKNOWN as v0 records read. */
const transcoder = createTranscoder({ host: HOST, bootTimeNs: BOOT });
const newRecord = (comm: string, tsNs: bigint, latencyNs: bigint): Buffer => {
  const f = fields(comm, tsNs, latencyNs);
  // a C value the enum does not list: the transcoder writes the default symbol
  return transcoder.transcodeRecord(rawRecord(current, { cpu: f.cpu, pid: f.pid, tgid: f.tgid, uid: f.uid, ts_ns: f.ts_ns, cgroup_id: f.cgroup_id, comm: f.comm, latency_ns: f.latency_ns, prev_pid: f.prev_pid, kind: 200 }))!.value;
};

test('evolution: sched.runqlat.v0 is loaded as a writer schema of sched.runqlat, not in registry.all', () => {
  assert.ok(v0, 'schemas/history/sched.runqlat.v0.avsc');
  assert.equal(v0.current, current);
  assert.equal(v0.version, 0);
  assert.notEqual(v0.fingerprint, current.fingerprint);
  assert.equal(registry.byFingerprint(v0.fingerprint), v0);
  assert.equal(registry.byFingerprint(current.fingerprint), current);
  assert.ok(!registry.all.some((s) => s.fingerprint === v0.fingerprint));
  // the default added to `kind` is not part of the canonical form: same fingerprint as before
  assert.ok(!current.canonical.includes('default'));
  assert.deepEqual(current.schema.fields.filter((f) => !v0.schema.fields.some((o) => o.name === f.name)).map((f) => [f.name, f.default]), [['kind', 'UNKNOWN']]);
});

test('evolution: a v0 record decodes via the registry into the current shape, the missing field defaulted', () => {
  const buf = oldRecord('nginx', 5n * S, 1_500_000n);
  assert.deepEqual(buf.subarray(2, 10), v0.fingerprintBytes);

  const raw = decodeRecord(buf); // the writer's own view
  assert.equal(raw.schema, v0);
  assert.equal('kind' in raw.value, false);

  const d = decodeCurrent(buf);
  assert.equal(d.schema, current);
  assert.equal(d.writer, v0);
  assert.deepEqual({ ...d.value }, { ...fields('nginx', 5n * S, 1_500_000n), kind: 'UNKNOWN' });
  assert.equal(decodeCurrent(oldRecord('a', 1n, 2n)).value.latency_ns, 2n); // cached resolver, reused

  // a current record: no resolution, the writer is the current schema itself
  const now = decodeCurrent(newRecord('nginx', 5n * S, 1_500_000n));
  assert.equal(now.schema, current);
  assert.equal(now.writer, current);
  assert.deepEqual(now.value, d.value);
});

test('evolution: stage 1 routes a v0 record like a current one; an unknown fingerprint still dead-letters', () => {
  const buf = oldRecord('nginx', 5n * S, 1_500_000n);
  assert.deepEqual(routeRecord(TOPIC, 0, '12', buf), [{ topic: REPARTITION_TOPIC, key: repartitionKey(TOPIC, HOST), value: buf }]);
  assert.deepEqual(routeRecord(TOPIC, 0, '13', newRecord('nginx', 5n * S, 1n)).map((o) => [o.topic, o.key]), [[REPARTITION_TOPIC, repartitionKey(TOPIC, HOST)]]);

  const unknown = Buffer.from(buf);
  unknown.writeBigUInt64LE(v0.fingerprint ^ 1n, 2);
  const [dl] = routeRecord(TOPIC, 0, '14', unknown);
  assert.equal(dl!.topic, DEADLETTER_TOPIC);
  assert.match(String(dl!.headers!['ringflow.error']), /^UNKNOWN_SCHEMA: /);

  // a registry without the history is what a reader knew before: v0 was unknown to it
  const noHistory = new SingleObjectFormat(createRegistry(registry.all));
  assert.throws(() => decodeCurrent(buf, noHistory), (e: unknown) => e instanceof WireError && e.code === 'UNKNOWN_SCHEMA');
});

test('evolution: stage 2 aggregates v0 records exactly like current ones', () => {
  const events: [string, bigint, bigint][] = [['nginx', 1n * S, 1_500_000n], ['nginx', 2n * S, 40_000n], ['java', 3n * S, 900_000_000n]];
  const closer = newRecord('x', 30n * S, 1n); // closes the first window by event time

  // the WindowAggregator fed decoded events, as test/unit/aggregate.test.ts feeds it
  const aggregate = (encode: typeof oldRecord) => {
    const agg = new WindowAggregator({ sizeMs: 10_000, latenessMs: 5_000 });
    for (const [c, t, l] of events) assert.equal(agg.add({ topic: TOPIC, value: decodeCurrent(encode(c, t, l)).value as unknown as TopicEvent['value'] }), 'ok');
    agg.add({ topic: TOPIC, value: decodeCurrent(closer).value as unknown as TopicEvent['value'] });
    return { points: agg.advance(), counters: { ...agg.counters } };
  };
  const oldAgg = aggregate(oldRecord);
  assert.equal(oldAgg.points.length, 2);
  assert.equal(oldAgg.points.reduce((n, p) => n + p.count, 0), 3);
  assert.deepEqual(oldAgg, aggregate(newRecord));

  // the stage 2 partition state, fed the repartition topic's records (what stage 1 forwarded)
  const partition = (encode: typeof oldRecord) => {
    const st = createPartitionState({ windowMs: 10_000, latenessMs: 5_000, topK: 100, processorId: 'p' }, 0, undefined);
    let offset = 0n;
    for (const [c, t, l] of events) {
      const [out] = routeRecord(TOPIC, 0, String(offset), encode(c, t, l));
      assert.equal(st.add(out!.key, out!.value, offset++), 'ok');
    }
    st.add(repartitionKey(TOPIC, HOST), closer, offset);
    st.advance();
    return st.takeClosed().map((p) => ({ key: p.key, value: decodeCurrent(p.value).value }));
  };
  const oldPoints = partition(oldRecord);
  assert.equal(oldPoints.length, 2);
  assert.deepEqual(oldPoints.map((p) => p.value.name), ['ringflow.sched.runqueue.latency', 'ringflow.sched.runqueue.latency']);
  assert.deepEqual(oldPoints, partition(newRecord));
});

test('evolution: every history file names a current schema and is resolvable by it', () => {
  const dir = path.join(SCHEMA_DIR, 'history');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
  assert.deepEqual(registry.history.map((h) => `${h.id}.avsc`).sort(), files);
  const currentIds = fs.readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.avsc')).map((f) => f.slice(0, -'.avsc'.length)).sort();
  assert.deepEqual(registry.all.map((s) => s.id).sort(), currentIds); // registry.all unchanged: current schemas only
  for (const h of registry.history) {
    const m = /^(.+)\.v(\d+)$/.exec(h.id)!;
    assert.ok(m, h.id);
    assert.equal(h.current, registry.byId(m[1]!), h.id);
    assert.ok(registry.all.includes(h.current), h.id);
    assert.equal(h.version, Number(m[2]));
    assert.equal(h.fullName, h.current.fullName, h.id);
    assert.equal(h.topic, h.current.topic, h.id);
    assert.doesNotThrow(() => h.current.type.createResolver(h.type), h.id);
    // the layout-style view of the same rule: a field only the current version has needs a default
    for (const f of h.current.schema.fields) {
      if (!h.schema.fields.some((o) => o.name === f.name)) assert.ok('default' in f, `${h.current.id}.${f.name} has no default for ${h.id}`);
    }
    assert.equal(registry.byFingerprint(h.fingerprint), h);
  }
});

test('evolution: registerHistory rejects a version the current schema cannot read', () => {
  const lacking = (name: string) => ({ ...v0.schema, fields: v0.schema.fields.filter((f) => f.name !== name) });
  assert.throws(() => registerHistory(current, 9, lacking('latency_ns')), /sched\.runqlat\.v9.*cannot read it/);
  assert.throws(() => registerHistory(current, 9, { ...v0.schema, name: 'Other' }), /is not io\.ringflow\.sched\.RunqLatency/);
  const h: HistorySchema = registerHistory(current, 9, lacking('kind'));
  assert.equal(h.fingerprint, v0.fingerprint); // same canonical form as v0
  assert.throws(() => createRegistry(registry.all, [v0, h]), /collides/);
  assert.throws(() => createRegistry(registry.all.filter((s: RegisteredSchema) => s !== current), [v0]), /not registered/);
});
