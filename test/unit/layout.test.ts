/**
 * bpf/events.h and schemas/*.avsc cannot drift apart: gcc compiles the header
 * and prints offsetof/sizeof of every "c"-annotated field (the C source is
 * generated from the schemas), and the header's struct members, parsed here,
 * must each appear in their schema in order, so a new C field without a
 * schema field fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { schemaRegistry, type CKind, type RegisteredSchema } from '../../schemas/registry.ts';
import { EventType } from '../../collector/events/types.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const HEADER = path.join(ROOT, 'bpf', 'events.h');
const registry = schemaRegistry();
const events = registry.all.filter((s) => s.struct !== null);

interface CMember { readonly path: string; readonly name: string; readonly ctype: string; readonly array?: string }

/** Struct definitions and enum constants of events.h, comments stripped. */
function parseHeader(): { structs: Map<string, CMember[]>; enums: Map<string, string[]> } {
  const src = fs.readFileSync(HEADER, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const raw = new Map<string, { ctype: string; name: string; array?: string }[]>();
  for (const m of src.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}\s*;/g)) {
    const members = m[2]!.split(';').map((x) => x.trim()).filter(Boolean).map((decl) => {
      const d = /^(struct\s+\w+|[\w ]+?)\s+(\w+)\s*(?:\[([^\]]+)\])?$/.exec(decl.replace(/\s+/g, ' '));
      if (!d) throw new Error(`cannot parse member "${decl}" of struct ${m[1]}`);
      return d[3] === undefined ? { ctype: d[1]!, name: d[2]! } : { ctype: d[1]!, name: d[2]!, array: d[3] };
    });
    raw.set(m[1]!, members);
  }
  const flatten = (struct: string, prefix: string): CMember[] => raw.get(struct)!.flatMap((mem) => {
    const nested = /^struct (\w+)$/.exec(mem.ctype);
    if (nested) return flatten(nested[1]!, `${prefix}${mem.name}.`);
    return [{ path: `${prefix}${mem.name}`, name: mem.name, ctype: mem.ctype, ...(mem.array ? { array: mem.array } : {}) }];
  });
  const structs = new Map([...raw.keys()].map((s) => [s, flatten(s, '')]));
  const enums = new Map<string, string[]>();
  for (const m of src.matchAll(/enum\s+(\w+)\s*\{([^}]*)\}\s*;/g)) {
    enums.set(m[1]!, m[2]!.split(',').map((x) => x.trim().split(/\s*=\s*/)[0]!).filter(Boolean));
  }
  return { structs, enums };
}

const { structs, enums } = parseHeader();

/** The C member path of each schema field that mirrors one: hdr.pid, tuple.saddr, latency_ns, ... */
function memberPaths(s: RegisteredSchema): Map<string, CMember> {
  const members = structs.get(s.struct!);
  assert.ok(members, `struct ${s.struct} of ${s.id} is not in events.h`);
  return new Map(members.map((m) => [m.name, m]));
}

const C_TYPES: Record<CKind, (m: CMember) => boolean> = {
  u8: (m) => m.ctype === '__u8' && !m.array,
  u16: (m) => m.ctype === '__u16' && !m.array,
  u32: (m) => m.ctype === '__u32' && !m.array,
  s32: (m) => m.ctype === '__s32' && !m.array,
  u64: (m) => m.ctype === '__u64' && !m.array,
  comm: (m) => m.ctype === 'char' && m.array === 'RF_COMM_LEN',
  inet: (m) => m.ctype === '__u8' && m.array === '16',
};

interface Measured { sizes: Map<string, number>; fields: Map<string, { offset: number; size: number }>; consts: Map<string, number> }

function measure(): Measured {
  const lines = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <linux/types.h>',
    '#include "events.h"',
    'int main(void) {',
  ];
  const consts = new Set<string>(Object.keys(EventType).map((k) => `RF_EV_${k}`));
  for (const s of events) {
    lines.push(`  printf("size %s %zu\\n", "${s.struct}", sizeof(struct ${s.struct}));`);
    if (s.schema.ringflow.type_const) consts.add(s.schema.ringflow.type_const);
    const paths = memberPaths(s);
    for (const f of s.schema.fields) {
      if (!f.c) continue;
      const m = paths.get(f.name);
      if (!m) continue; // reported by the member test
      lines.push(`  printf("field %s %s %zu %zu\\n", "${s.id}", "${f.name}", offsetof(struct ${s.struct}, ${m.path}), sizeof(((struct ${s.struct} *)0)->${m.path}));`);
      if (f.c.cprefix) for (const sym of Object.keys(f.c.enum ?? {})) consts.add(`${f.c.cprefix}${sym}`);
    }
  }
  for (const c of consts) lines.push(`  printf("const %s %d\\n", "${c}", (int)${c});`);
  lines.push('  return 0;', '}', '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-layout-'));
  try {
    fs.writeFileSync(path.join(dir, 'layout.c'), lines.join('\n'));
    // -Wpadded -Werror: the header promises explicit padding only (see its top comment).
    const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Wpadded', '-Werror', '-I', path.join(ROOT, 'bpf'), '-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')], { encoding: 'utf8' });
    if (cc.error) throw new Error(`gcc is needed for this test: ${cc.error.message}`);
    assert.equal(cc.status, 0, `gcc failed:\n${cc.stderr}\n--- generated source ---\n${lines.join('\n')}`);
    const run = spawnSync(path.join(dir, 'layout'), { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const out: Measured = { sizes: new Map(), fields: new Map(), consts: new Map() };
    for (const line of run.stdout.trim().split('\n')) {
      const p = line.split(' ');
      if (p[0] === 'size') out.sizes.set(p[1]!, Number(p[2]));
      else if (p[0] === 'field') out.fields.set(`${p[1]}.${p[2]}`, { offset: Number(p[3]), size: Number(p[4]) });
      else if (p[0] === 'const') out.consts.set(p[1]!, Number(p[2]));
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const measured = measure();
const SIZE: Record<CKind, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, comm: 16, inet: 16 };

test('every event type in enum rf_event_type has a schema, and every event struct too', () => {
  const consts = enums.get('rf_event_type');
  assert.ok(consts);
  const notEvents = new Set(['RF_EV_MAX']);
  for (const c of consts.filter((x) => !notEvents.has(x))) {
    const s = events.find((x) => x.schema.ringflow.type_const === c);
    assert.ok(s, `${c} has no schemas/*.avsc with "ringflow": {"type_const": "${c}"}`);
    assert.equal(s.eventType, measured.consts.get(c), `${s.id}: ringflow.type`);
  }
  for (const struct of structs.keys()) {
    if (!/^rf_\w+_event$/.test(struct)) continue;
    assert.ok(events.some((s) => s.struct === struct), `struct ${struct} has no schema`);
  }
});

test('EventType in collector/events/types.ts matches enum rf_event_type', () => {
  for (const [k, v] of Object.entries(EventType)) assert.equal(v, measured.consts.get(`RF_EV_${k}`), `EventType.${k}`);
  assert.equal(Object.keys(EventType).length, enums.get('rf_event_type')!.length, 'EventType lacks a constant of rf_event_type');
});

for (const s of events) {
  test(`${s.id}: sizeof(struct ${s.struct}) = ringflow.size`, () => {
    assert.equal(measured.sizes.get(s.struct!), s.size);
  });

  test(`${s.id}: every "c" annotation matches offsetof/sizeof and the C type`, () => {
    const paths = memberPaths(s);
    for (const f of s.schema.fields) {
      if (!f.c) continue;
      const m = paths.get(f.name);
      assert.ok(m, `${f.name} is not a member of struct ${s.struct}`);
      assert.deepEqual(measured.fields.get(`${s.id}.${f.name}`), { offset: f.c.offset, size: SIZE[f.c.type] }, `${f.name} (${m.path})`);
      assert.ok(C_TYPES[f.c.type](m), `${f.name}: C type ${m.ctype}${m.array ? `[${m.array}]` : ''} is not "${f.c.type}"`);
      if (f.c.type === 'inet') assert.ok(paths.has(f.c.family ?? ''), `${f.name}: family field ${f.c.family}`);
      if (f.c.cprefix) {
        for (const [sym, val] of Object.entries(f.c.enum ?? {})) assert.equal(measured.consts.get(`${f.c.cprefix}${sym}`), val, `${f.c.cprefix}${sym}`);
      }
    }
  });

  test(`${s.id}: every non-pad member of struct ${s.struct} has its schema field, in order`, () => {
    const cMembers = structs.get(s.struct!)!.filter((m) => !m.name.startsWith('_pad') && m.path !== 'hdr.type').map((m) => m.name);
    const schemaC = s.schema.fields.filter((f) => f.c).map((f) => f.name);
    assert.deepEqual(schemaC, cMembers);
  });

  test(`${s.id}: fields without "c" are derived or envelope (host, boot_time_ns last), every field documented`, () => {
    const fields = s.schema.fields;
    for (const f of fields) {
      assert.ok(f.doc && f.doc.length > 3, `${f.name} has no doc`);
      if (!f.c) assert.ok(f.derived || f.envelope, `${f.name}: neither "c", "derived" nor "envelope"`);
    }
    assert.deepEqual(fields.slice(-2).map((f) => [f.name, f.type, f.envelope]), [['host', 'string', true], ['boot_time_ns', 'long', true]]);
  });
}

test('collector.stats is registered and documented', () => {
  const s = registry.byTopic('ringflow.collector.stats.v1');
  assert.ok(s);
  assert.equal(s.eventType, null);
  const walk = (fields: readonly { name: string; doc?: string; type: unknown }[]): void => {
    for (const f of fields) {
      assert.ok(f.doc, `${f.name} has no doc`);
      const t = f.type as { items?: { fields?: [] } };
      if (t.items?.fields) walk(t.items.fields);
    }
  };
  walk(s.schema.fields);
});

test('topics, namespaces and keys follow the naming scheme', () => {
  const expected: Record<string, string> = {
    'sched.runqlat': 'process', 'sched.cswitch': 'process', 'block.io': 'device',
    'tcp.connect': 'connection', 'tcp.accept': 'connection', 'tcp.retransmit': 'connection', 'tcp.drop': 'connection',
    'collector.stats': 'host', 'bench.getpid': 'process', metrics: 'series', alerts: 'rule',
  };
  assert.deepEqual(registry.all.map((s) => s.id).sort(), Object.keys(expected).sort());
  for (const s of registry.all) {
    assert.equal(s.topic, `ringflow.${s.id}.v1`);
    assert.equal(s.key, expected[s.id]);
    assert.equal(s.schema.namespace, `io.ringflow.${s.id.split('.')[0]}`);
  }
});
