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
import * as l7 from '../../collector/l7/capture.ts';
import * as x7 from '../../collector/l7/exchange.ts';

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
  s64: (m) => m.ctype === '__s64' && !m.array,
  // a NUL-padded char[16] name: comm, fs_type (sizeof is checked against SIZE below)
  comm: (m) => m.ctype === 'char' && (m.array === 'RF_COMM_LEN' || m.array === 'RF_FS_TYPE_LEN'),
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
    for (const f of s.schema.fields) if (f.trailer?.cmax) consts.add(f.trailer.cmax);
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
const SIZE: Record<CKind, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, s64: 8, comm: 16, inet: 16 };

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
      if (!f.c) assert.ok(f.derived || f.envelope || f.trailer, `${f.name}: neither "c", "derived", "trailer" nor "envelope"`);
      // the trailer's bound is the C constant the BPF side writes to
      if (f.trailer) assert.equal(f.trailer.max, measured.consts.get(f.trailer.cmax ?? ''), `${f.name}: trailer max = ${f.trailer.cmax}`);
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
    'collector.stats': 'host', 'bench.getpid': 'process', metrics: 'series', alerts: 'rule', l7: 'connection',
    spans: 'connection', 'processor.repartition': 'host', 'profile.stacks': 'process', profiles: 'series', 'fs.io': 'file',
  };
  assert.deepEqual(registry.all.map((s) => s.id).sort(), Object.keys(expected).sort());
  for (const s of registry.all) {
    assert.equal(s.topic, `ringflow.${s.id}.v1`);
    assert.equal(s.key, expected[s.id]);
    assert.equal(s.schema.namespace, `io.ringflow.${s.id.split('.')[0]}`);
  }
});

/*
 * struct rf_l7_capture has no schema: collector/l7/capture.ts decodes it by
 * hand, so its offsets, constants and enums are checked against the header
 * here, and a record filled in C with a distinct value per field must decode
 * to exactly those values (widths and byte order included).
 */
const L7_ENUMS: Record<string, { prefix: string; values: Readonly<Record<string, number>> }> = {
  rf_l7_kind: { prefix: 'RF_L7_KIND_', values: l7.L7Kind },
  rf_l7_direction: { prefix: 'RF_L7_', values: l7.L7Direction },
  rf_l7_role: { prefix: 'RF_L7_ROLE_', values: l7.L7Role },
  rf_l7_syscall: { prefix: 'RF_L7_SYS_', values: l7.L7Syscall },
  rf_l7_flag: { prefix: 'RF_L7_F_', values: l7.L7_FLAG },
};

function measureL7(): { out: Map<string, string>; record: Buffer; payload: Buffer } {
  const members = structs.get('rf_l7_capture');
  assert.ok(members, 'struct rf_l7_capture is in events.h');
  const consts = ['RF_EV_L7_CAPTURE', 'RF_L7_MAX_CAPTURE', 'RF_L7_DEFAULT_CAPTURE'];
  for (const [, e] of Object.entries(L7_ENUMS)) for (const k of Object.keys(e.values)) consts.push(`${e.prefix}${k}`);
  const lines = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <string.h>',
    '#include <linux/types.h>',
    '#include "events.h"',
    'int main(void) {',
    '  struct { struct rf_l7_capture r; unsigned char payload[8]; } b;',
    '  unsigned char *p = (unsigned char *)&b;',
    '  printf("size %zu\\n", sizeof(struct rf_l7_capture));',
  ];
  // every byte distinct-ish, then fields that must hold meaningful values
  lines.push('  for (size_t i = 0; i < sizeof(b); i++) p[i] = (unsigned char)(i * 13 + 7);');
  lines.push('  b.r.hdr.type = RF_EV_L7_CAPTURE;', '  memcpy(b.r.hdr.comm, "curl\\0zzzzzzzzzzz", 16);');
  lines.push('  b.r.hdr.ts_ns = 0xfedcba9876543210ULL;', '  b.r.conn_id = 0x8000000100000002ULL;');
  lines.push('  b.r.offset = 0x001fffffffffffffULL;', '  b.r.peer_offset = 4294967296ULL + 5;');
  lines.push('  b.r.family = 10;', '  b.r.captured_len = 5;', '  memcpy(b.payload, "hello", 5);');
  // no cuts (HTTP/2 records with cuts: test/unit/l7-h2-cuts.test.ts); total_len bounds them
  lines.push('  b.r.ncuts = 0;');
  for (const m of members) {
    lines.push(`  printf("field ${m.name} %zu %zu\\n", offsetof(struct rf_l7_capture, ${m.path}), sizeof(((struct rf_l7_capture *)0)->${m.path}));`);
  }
  for (const c of consts) lines.push(`  printf("const ${c} %d\\n", (int)${c});`);
  lines.push('  printf("bytes ");', '  for (size_t i = 0; i < sizeof(b); i++) printf("%02x", p[i]);', '  printf("\\n");');
  lines.push('  return 0;', '}', '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-layout-l7-'));
  try {
    fs.writeFileSync(path.join(dir, 'l7.c'), lines.join('\n'));
    const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Wpadded', '-Werror', '-I', path.join(ROOT, 'bpf'), '-o', path.join(dir, 'l7'), path.join(dir, 'l7.c')], { encoding: 'utf8' });
    if (cc.error) throw new Error(`gcc is needed for this test: ${cc.error.message}`);
    assert.equal(cc.status, 0, `gcc failed:\n${cc.stderr}\n--- generated source ---\n${lines.join('\n')}`);
    const run = spawnSync(path.join(dir, 'l7'), { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const out = new Map<string, string>();
    let bytes = '';
    for (const line of run.stdout.trim().split('\n')) {
      const p = line.split(' ');
      if (p[0] === 'bytes') bytes = p[1]!;
      else out.set(p[0] === 'size' ? 'size' : `${p[0]} ${p[1]}`, p.slice(p[0] === 'size' ? 1 : 2).join(' '));
    }
    const all = Buffer.from(bytes, 'hex');
    const size = Number(out.get('size'));
    return { out, record: all, payload: all.subarray(size, size + 5) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('collector/l7/capture.ts: offsets, size and constants match struct rf_l7_capture', () => {
  const { out } = measureL7();
  assert.equal(Number(out.get('size')), l7.L7_CAPTURE_SIZE, 'sizeof(struct rf_l7_capture)');
  const members = structs.get('rf_l7_capture')!.filter((m) => !m.name.startsWith('_pad'));
  assert.deepEqual(members.map((m) => m.name), Object.keys(l7.L7_OFFSETS), 'L7_OFFSETS names every member, in order');
  for (const m of members) {
    const [offset] = out.get(`field ${m.name}`)!.split(' ').map(Number);
    assert.equal(offset, l7.L7_OFFSETS[m.name as keyof typeof l7.L7_OFFSETS], `offsetof ${m.path}`);
  }
  assert.equal(Number(out.get('const RF_EV_L7_CAPTURE')), l7.L7_CAPTURE_TYPE);
  assert.equal(Number(out.get('const RF_L7_MAX_CAPTURE')), l7.L7_MAX_CAPTURE);
  assert.equal(Number(out.get('const RF_L7_DEFAULT_CAPTURE')), l7.L7_DEFAULT_CAPTURE);
  assert.ok(!Object.values(EventType).includes(l7.L7_CAPTURE_TYPE as never), 'RF_EV_L7_CAPTURE is not a schema-backed event type');
  assert.ok(l7.L7_CAPTURE_TYPE < EventType.MAX, 'RF_EV_L7_CAPTURE indexes rf_drops');
  for (const [name, e] of Object.entries(L7_ENUMS)) {
    assert.deepEqual(enums.get(name), Object.keys(e.values).map((k) => `${e.prefix}${k}`), `enum ${name}: same constants, same order`);
    for (const [k, v] of Object.entries(e.values)) assert.equal(Number(out.get(`const ${e.prefix}${k}`)), v, `${e.prefix}${k}`);
  }
});

test('collector/l7/capture.ts: a record filled in C decodes field for field', () => {
  const { record, payload } = measureL7();
  const members = structs.get('rf_l7_capture')!.filter((m) => !m.name.startsWith('_pad'));
  const WIDTH: Record<string, number> = { __u8: 1, __u16: 2, __u32: 4, __u64: 8 };
  const d = l7.decodeL7Capture(record, 0, record.length);
  assert.ok(d);
  const got = d as unknown as Record<string, unknown>;
  for (const m of members) {
    if (m.name === 'type') continue; // the decoder checks it rather than returning it
    const o = l7.L7_OFFSETS[m.name as keyof typeof l7.L7_OFFSETS];
    let want: unknown;
    if (m.name === 'comm') want = 'curl';
    else if (m.array) want = record.subarray(o, o + (d.family === 2 ? 4 : 16)); // addresses: family says how many bytes
    else if (WIDTH[m.ctype] === 8) want = ['offset', 'peer_offset'].includes(m.name) ? Number(record.readBigUInt64LE(o)) : record.readBigUInt64LE(o);
    else want = record.readUIntLE(o, WIDTH[m.ctype]!);
    assert.deepEqual(got[m.name] instanceof Uint8Array ? Buffer.from(got[m.name] as Uint8Array) : got[m.name],
      want instanceof Uint8Array ? Buffer.from(want) : want, `${m.name} (${m.ctype})`);
  }
  assert.equal(d.ts_ns, 0xfedcba9876543210n);
  assert.equal(d.conn_id, 0x8000000100000002n);
  assert.equal(d.offset, 2 ** 53 - 1);
  assert.equal(d.peer_offset, 2 ** 32 + 5);
  assert.equal(Buffer.from(d.payload).toString(), 'hello');
  assert.equal(d.payload.buffer, record.buffer, 'payload is a view, not a copy');
  assert.deepEqual(Buffer.from(d.payload), payload);
  // not an L7 record, or shorter than it says: null
  assert.equal(l7.decodeL7Capture(record, 0, l7.L7_CAPTURE_SIZE + 4), null, 'captured_len beyond the record');
  assert.equal(l7.decodeL7Capture(record, 0, l7.L7_CAPTURE_SIZE - 1), null, 'shorter than the struct');
  const other = Buffer.from(record);
  other[0] = EventType.BENCH;
  assert.equal(l7.decodeL7Capture(other, 0, other.length), null, 'another event type');
  // at an offset inside a larger buffer (as in a native batch)
  const framed = Buffer.concat([Buffer.alloc(8), record]);
  assert.equal(l7.decodeL7Capture(framed, 8, record.length)?.conn_id, 0x8000000100000002n);
  // command names one after another (the decoder reuses the previous one's string when the bytes repeat)
  const co = l7.L7_OFFSETS.comm;
  for (const name of ['curl', 'cur', 'curl', 'curlx', 'curl', 'é-ü', 'é-ü', 'sixteen_bytes_xy', 'sixteen_bytes_xz', '', 'curl']) {
    const r = Buffer.from(record);
    r.fill(0, co, co + 16);
    Buffer.from(name).copy(r, co);
    assert.equal(l7.decodeL7Capture(r, 0, r.length)?.comm, name.slice(0, 16));
  }
});

/*
 * struct rf_l7_exchange (issue 10: one record per HTTP/1 exchange) has no
 * schema either: collector/l7/exchange.ts decodes it by hand. Same checks as
 * rf_l7_capture: offsets, size, constants and enums against the header, and a
 * record filled in C (two heads after the struct) decoding field for field.
 */
const EXCHANGE_ENUMS: Record<string, { prefix: string; values: Readonly<Record<string, number>>; extra?: Readonly<Record<string, number>> }> = {
  rf_l7_app: { prefix: 'RF_L7_APP_', values: x7.L7App },
  rf_l7_outcome: { prefix: 'RF_L7_OUT_', values: x7.L7Outcome },
  rf_l7_xflag: { prefix: 'RF_L7_X_', values: x7.L7_XFLAG },
  rf_l7_parse_counter: { prefix: 'RF_L7_P_', values: x7.L7_PARSE, extra: { NR: x7.L7_PARSE_NR } },
};

function measureExchange(): { out: Map<string, string>; record: Buffer } {
  const members = structs.get('rf_l7_exchange');
  assert.ok(members, 'struct rf_l7_exchange is in events.h');
  const consts = ['RF_EV_L7_EXCHANGE', 'RF_L7_MAX_HEAD', 'RF_L7_DEFAULT_HEAD'];
  for (const e of Object.values(EXCHANGE_ENUMS)) for (const k of Object.keys({ ...e.values, ...e.extra })) consts.push(`${e.prefix}${k}`);
  const lines = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <string.h>',
    '#include <linux/types.h>',
    '#include "events.h"',
    'int main(void) {',
    '  struct { struct rf_l7_exchange r; char heads[40]; } b;',
    '  unsigned char *p = (unsigned char *)&b;',
    '  printf("size %zu\\n", sizeof(struct rf_l7_exchange));',
    '  for (size_t i = 0; i < sizeof(b); i++) p[i] = (unsigned char)(i * 13 + 7);',
    '  b.r.hdr.type = RF_EV_L7_EXCHANGE;',
    '  memcpy(b.r.hdr.comm, "node\\0zzzzzzzzzzz", 16);',
    '  b.r.conn_id = 0x8000000100000002ULL;',
    '  b.r.req_start_ns = 0xfedcba9876543210ULL;',
    '  b.r.req_body_bytes = 0x001fffffffffffffULL;',
    '  b.r.resp_body_bytes = 4294967296ULL + 5;',
    '  b.r.family = 2;',
    '  b.r.req_head_len = 19;',
    '  b.r.resp_head_len = 19;',
    '  memcpy(b.heads, "GET /x HTTP/1.1\\r\\n\\r\\nHTTP/1.1 204 No\\r\\n\\r\\n", 38);',
  ];
  for (const m of members) {
    lines.push(`  printf("field ${m.name} %zu %zu\\n", offsetof(struct rf_l7_exchange, ${m.path}), sizeof(((struct rf_l7_exchange *)0)->${m.path}));`);
  }
  for (const c of consts) lines.push(`  printf("const ${c} %d\\n", (int)${c});`);
  lines.push('  printf("bytes ");', '  for (size_t i = 0; i < sizeof(b); i++) printf("%02x", p[i]);', '  printf("\\n");');
  lines.push('  return 0;', '}', '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-layout-x7-'));
  try {
    fs.writeFileSync(path.join(dir, 'x7.c'), lines.join('\n'));
    const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-Wpadded', '-Werror', '-I', path.join(ROOT, 'bpf'), '-o', path.join(dir, 'x7'), path.join(dir, 'x7.c')], { encoding: 'utf8' });
    if (cc.error) throw new Error(`gcc is needed for this test: ${cc.error.message}`);
    assert.equal(cc.status, 0, `gcc failed:\n${cc.stderr}\n--- generated source ---\n${lines.join('\n')}`);
    const run = spawnSync(path.join(dir, 'x7'), { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const out = new Map<string, string>();
    let bytes = '';
    for (const line of run.stdout.trim().split('\n')) {
      const p = line.split(' ');
      if (p[0] === 'bytes') bytes = p[1]!;
      else out.set(p[0] === 'size' ? 'size' : `${p[0]} ${p[1]}`, p.slice(p[0] === 'size' ? 1 : 2).join(' '));
    }
    return { out, record: Buffer.from(bytes, 'hex') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('collector/l7/exchange.ts: offsets, size, constants and enums match struct rf_l7_exchange', () => {
  const { out } = measureExchange();
  assert.equal(Number(out.get('size')), x7.L7_EXCHANGE_SIZE, 'sizeof(struct rf_l7_exchange)');
  const members = structs.get('rf_l7_exchange')!.filter((m) => !m.name.startsWith('_pad'));
  assert.deepEqual(members.map((m) => m.name), Object.keys(x7.L7_EXCHANGE_OFFSETS), 'L7_EXCHANGE_OFFSETS names every member, in order');
  for (const m of members) {
    const [offset] = out.get(`field ${m.name}`)!.split(' ').map(Number);
    assert.equal(offset, x7.L7_EXCHANGE_OFFSETS[m.name as keyof typeof x7.L7_EXCHANGE_OFFSETS], `offsetof ${m.path}`);
  }
  assert.equal(Number(out.get('const RF_EV_L7_EXCHANGE')), x7.L7_EXCHANGE_TYPE);
  assert.equal(Number(out.get('const RF_L7_MAX_HEAD')), x7.L7_MAX_HEAD);
  assert.equal(Number(out.get('const RF_L7_DEFAULT_HEAD')), x7.L7_DEFAULT_HEAD);
  assert.ok(!Object.values(EventType).includes(x7.L7_EXCHANGE_TYPE as never), 'RF_EV_L7_EXCHANGE is not a schema-backed event type');
  assert.ok(x7.L7_EXCHANGE_TYPE < EventType.MAX, 'RF_EV_L7_EXCHANGE indexes rf_drops');
  for (const [name, e] of Object.entries(EXCHANGE_ENUMS)) {
    const all = { ...e.values, ...e.extra };
    assert.deepEqual(enums.get(name), Object.keys(all).map((k) => `${e.prefix}${k}`), `enum ${name}: same constants, same order`);
    for (const [k, v] of Object.entries(all)) assert.equal(Number(out.get(`const ${e.prefix}${k}`)), v, `${e.prefix}${k}`);
  }
});

test('collector/l7/exchange.ts: a record filled in C decodes field for field, heads included', () => {
  const { record } = measureExchange();
  const members = structs.get('rf_l7_exchange')!.filter((m) => !m.name.startsWith('_pad'));
  const WIDTH: Record<string, number> = { __u8: 1, __u16: 2, __u32: 4, __u64: 8 };
  const d = x7.decodeL7Exchange(record, 0, record.length);
  assert.ok(d);
  const got = d as unknown as Record<string, unknown>;
  const asNumber = new Set(['req_body_bytes', 'resp_body_bytes']);
  const notReturned = new Set(['type', 'req_head_len', 'resp_head_len']); // checked, or the heads' lengths
  for (const m of members) {
    if (notReturned.has(m.name)) continue;
    const o = x7.L7_EXCHANGE_OFFSETS[m.name as keyof typeof x7.L7_EXCHANGE_OFFSETS];
    let want: unknown;
    if (m.name === 'comm') want = 'node';
    else if (m.array) want = Buffer.from(record.subarray(o, o + 4)); // AF_INET: 4 bytes
    else if (WIDTH[m.ctype] === 8) want = asNumber.has(m.name) ? Number(record.readBigUInt64LE(o)) : record.readBigUInt64LE(o);
    else want = record.readUIntLE(o, WIDTH[m.ctype]!);
    assert.deepEqual(got[m.name] instanceof Uint8Array ? Buffer.from(got[m.name] as Uint8Array) : got[m.name], want, `${m.name} (${m.ctype})`);
  }
  assert.equal(d.conn_id, 0x8000000100000002n);
  assert.equal(d.req_start_ns, 0xfedcba9876543210n);
  assert.equal(d.req_body_bytes, 2 ** 53 - 1);
  assert.equal(d.resp_body_bytes, 2 ** 32 + 5);
  assert.equal(Buffer.from(d.req_head).toString(), 'GET /x HTTP/1.1\r\n\r\n');
  assert.equal(Buffer.from(d.resp_head).toString(), 'HTTP/1.1 204 No\r\n\r\n');
  assert.equal(d.req_head.buffer, record.buffer, 'heads are views, not copies');
  assert.equal(x7.decodeL7Exchange(record, 0, x7.L7_EXCHANGE_SIZE + 37), null, 'heads beyond the record');
  assert.equal(x7.decodeL7Exchange(record, 0, x7.L7_EXCHANGE_SIZE - 1), null, 'shorter than the struct');
  const other = Buffer.from(record);
  other[0] = l7.L7_CAPTURE_TYPE;
  assert.equal(x7.decodeL7Exchange(other, 0, other.length), null, 'a capture record');
  const framed = Buffer.concat([Buffer.alloc(8), record]);
  assert.equal(x7.decodeL7Exchange(framed, 8, record.length)?.seq, record.readUInt32LE(x7.L7_EXCHANGE_OFFSETS.seq));
});
