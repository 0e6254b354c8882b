/**
 * Every schemas/*.avsc, parsed once. Each event schema names its C struct,
 * event type id, topic and key kind in its top-level "ringflow" attribute and
 * annotates each C-mirrored field with "c": {offset, type}; this module only
 * reads those annotations, collector/events/transcode.ts compiles them.
 *
 * schemas/history/<id>.v<N>.avsc are older versions of a current schema,
 * loaded as writer schemas only: byFingerprint finds them (records of older
 * collectors still name them), `all` does not list them, and each must be
 * resolvable by its current schema (wire.ts decodeCurrent).
 *
 * All Avro longs decode as BigInt (u64 nanosecond times exceed 2^53): see
 * bigLong below. Encoding accepts a bigint or a safe-integer number.
 */
import fs from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { fingerprint64, fingerprintBytes, parsingCanonicalForm } from './rabin.ts';

export type KeyKind = 'process' | 'device' | 'connection' | 'host' | 'series' | 'rule' | 'file';

/** C field kinds of the "c" annotation; "u8" with an "enum" map is an enum-backed u8. */
export type CKind = 'u8' | 'u16' | 'u32' | 's32' | 'u64' | 's64' | 'comm' | 'inet';

export interface CAnnotation {
  readonly offset: number;
  readonly type: CKind;
  /** inet only: name of the field holding the address family. */
  readonly family?: string;
  /** Enum-backed u8: Avro symbol -> C value. Values not listed map to the enum's default symbol. */
  readonly enum?: Readonly<Record<string, number>>;
  /** Enum-backed u8: prefix of the C constants in bpf/events.h (checked by the layout test). */
  readonly cprefix?: string;
}

export interface FieldSchema {
  readonly name: string;
  readonly type: unknown;
  readonly doc?: string;
  readonly default?: unknown;
  readonly c?: CAnnotation;
  /** Filled by user space from another field, e.g. the drop reason's name. */
  readonly derived?: { readonly kind: string; readonly from: string };
  /** Appended by the collector (host, boot_time_ns). */
  readonly envelope?: boolean;
  /** A string made of the bytes that follow the C struct in the ring record (see TrailerAnnotation). */
  readonly trailer?: TrailerAnnotation;
}

/**
 * A variable-length string after the struct: the record is sizeof(struct) +
 * the value of the u16 C field `len` bytes long, at most `max` (the C
 * constant `cmax`, checked by the layout test). At most one per schema, after
 * every "c" field. A record shorter than that, or whose length field exceeds
 * `max`, is not transcoded (counted as undecodable).
 */
export interface TrailerAnnotation {
  readonly len: string;
  readonly max: number;
  readonly cmax?: string;
}

export interface RecordSchema {
  readonly type: 'record';
  readonly name: string;
  readonly namespace?: string;
  readonly doc?: string;
  readonly ringflow: RingflowAttr;
  readonly fields: readonly FieldSchema[];
}

export interface RingflowAttr {
  /** enum rf_event_type value; absent for records with no C struct (collector.stats). */
  readonly type?: number;
  /** Name of the rf_event_type constant, e.g. RF_EV_RUNQ_LATENCY. */
  readonly type_const?: string;
  readonly struct?: string;
  /** sizeof(struct). */
  readonly size?: number;
  readonly topic: string;
  readonly key: KeyKind;
}

export interface RegisteredSchema {
  /** File stem: "<signal>.<event>", e.g. "sched.runqlat". */
  readonly id: string;
  /** Full Avro name, e.g. io.ringflow.sched.RunqLatency. */
  readonly fullName: string;
  /** Event type id, or null for records with no C struct. */
  readonly eventType: number | null;
  readonly struct: string | null;
  /** sizeof the C struct; 0 when there is none. */
  readonly size: number;
  readonly topic: string;
  readonly key: KeyKind;
  /** The .avsc as parsed JSON, custom attributes included. */
  readonly schema: RecordSchema;
  readonly type: avro.Type;
  readonly canonical: string;
  /** CRC-64-AVRO of the canonical form, unsigned. */
  readonly fingerprint: bigint;
  /** The fingerprint as 8 little-endian bytes. */
  readonly fingerprintBytes: Buffer;
}

/** An older version of a current schema (schemas/history/<id>.v<N>.avsc): a writer schema only. */
export interface HistorySchema extends RegisteredSchema {
  /** N of the file name. */
  readonly version: number;
  /** The current schema of the same id, full name and topic, which reads this version's records. */
  readonly current: RegisteredSchema;
}

export interface SchemaRegistry {
  /** The current schemas (schemas/*.avsc). */
  readonly all: readonly RegisteredSchema[];
  /** Older writer versions (schemas/history/), not in `all`. */
  readonly history: readonly HistorySchema[];
  byEventType(type: number): RegisteredSchema | undefined;
  byTopic(topic: string): RegisteredSchema | undefined;
  /** A current schema or a history version (see HistorySchema.current). */
  byFingerprint(fp: bigint): RegisteredSchema | undefined;
  byId(id: string): RegisteredSchema | undefined;
}

export const SCHEMA_DIR = import.meta.dirname;

const TWO_63 = 1n << 63n;

function isLong(v: unknown): boolean {
  if (typeof v === 'bigint') return v >= -TWO_63 && v < TWO_63;
  return typeof v === 'number' && Number.isSafeInteger(v);
}

const TWO_52 = 1n << 52n;
const MASK_32 = 0xffffffffn;
/*
 * avsc copies what encodeLong returns into its output at once (Tap.writeFixed),
 * so one scratch buffer and a view of each varint length serve every call:
 * the L7 collector writes ~6 longs per message, and a fresh Buffer (and BigInt
 * shifts per 7 bits) for each was ~1/8 of its CPU.
 */
const LONG_SCRATCH = Buffer.alloc(10);
const LONG_VIEWS = Array.from({ length: 11 }, (_, i) => LONG_SCRATCH.subarray(0, i));

/**
 * Zigzag varint bytes of a 64-bit signed value (a view that is valid until the
 * next call). |v| < 2^52 in doubles (the zigzag value stays exact); beyond,
 * the 64-bit zigzag value in two 32-bit halves.
 */
export function encodeLong(v: bigint | number): Buffer {
  const s = LONG_SCRATCH;
  let i = 0;
  if (typeof v === 'bigint') {
    if (v >= -TWO_52 && v < TWO_52) return encodeSmallLong(Number(v));
    const z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    let hi = Number(z >> 32n);
    let lo = Number(z & MASK_32);
    while (hi !== 0 || lo > 0x7f) {
      s[i++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | ((hi & 0x7f) << 25)) >>> 0;
      hi >>>= 7;
    }
    s[i++] = lo;
    return LONG_VIEWS[i]!;
  }
  if (v >= -4503599627370496 && v < 4503599627370496) return encodeSmallLong(v);
  return encodeLong(BigInt(v));
}

/** |v| < 2^52: its zigzag value is < 2^53, exact in a double. */
function encodeSmallLong(v: number): Buffer {
  return LONG_VIEWS[writeVarint(LONG_SCRATCH, 0, zigzag(v))]!;
}

/** Avro's zigzag of a long with |v| < 2^52 (exact in a double): 0, -1, 1, -2... -> 0, 1, 2, 3... */
export function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

/**
 * Writes n, a non-negative integer held exactly by a double (a zigzag value
 * below 2^53), as a varint at out[pos]; returns the position after it. Shared
 * with the collector's generated encoders (collector/events/transcode.ts).
 */
export function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 4294967296) {
    out[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  while (n > 127) {
    out[pos++] = (n & 127) | 128;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}

/** Inverse of encodeLong; takes exactly one varint's bytes. */
function decodeLong(buf: Buffer): bigint {
  if (buf.length <= 7) { // up to 49 bits: exact in a double
    let n = 0;
    let mul = 1;
    for (let i = 0; i < buf.length; i++) {
      n += (buf[i]! & 0x7f) * mul;
      mul *= 128;
    }
    return BigInt(n % 2 === 0 ? n / 2 : -(n + 1) / 2);
  }
  let n = 0n;
  let shift = 0n;
  for (let i = 0; i < buf.length; i++) {
    n |= BigInt(buf[i]! & 0x7f) << shift;
    shift += 7n;
  }
  n = BigInt.asUintN(64, n);
  return (n >> 1n) ^ -(n & 1n);
}

/**
 * Avro long as BigInt, full 64-bit precision. noUnpack: avsc hands us the raw
 * varint bytes, which is cheaper than its 8-byte two's complement unpacking.
 */
export const bigLong: avro.types.LongType = avro.types.LongType.__with({
  fromBuffer: decodeLong,
  toBuffer: encodeLong,
  fromJSON: (v: unknown) => BigInt(v as bigint | number | string),
  toJSON: (v: bigint | number) => (typeof v === 'bigint' && (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) ? v.toString() : Number(v)),
  isValid: isLong,
  compare: (a: bigint | number, b: bigint | number) => {
    const x = BigInt(a);
    const y = BigInt(b);
    return x === y ? 0 : x < y ? -1 : 1;
  },
}, true);

/** Type.forSchema with the BigInt long; a fresh avsc registry each time (it collects named types). */
export function parseType(schema: unknown): avro.Type {
  return avro.Type.forSchema(schema as avro.Schema, { registry: { long: bigLong } });
}

function register(id: string, schema: RecordSchema): RegisteredSchema {
  const rf = schema.ringflow;
  if (!rf || typeof rf.topic !== 'string' || typeof rf.key !== 'string') throw new Error(`${id}.avsc: missing "ringflow" {topic, key}`);
  const canonical = parsingCanonicalForm(schema);
  const fp = fingerprint64(canonical);
  const type = parseType(schema);
  return Object.freeze({
    id,
    fullName: type.name ?? schema.name,
    eventType: rf.type ?? null,
    struct: rf.struct ?? null,
    size: rf.size ?? 0,
    topic: rf.topic,
    key: rf.key,
    schema,
    type,
    canonical,
    fingerprint: fp,
    fingerprintBytes: fingerprintBytes(fp),
  });
}

/** True for an older writer version loaded from schemas/history/. */
export function isHistory(s: RegisteredSchema): s is HistorySchema {
  return (s as Partial<HistorySchema>).current !== undefined;
}

/**
 * Registers `schema` as version `version` of `current`: same full name and
 * topic, and resolvable (every field `current` has and the old one lacks
 * needs a default); throws otherwise.
 */
export function registerHistory(current: RegisteredSchema, version: number, schema: RecordSchema): HistorySchema {
  const id = `${current.id}.v${version}`;
  const old = register(id, schema);
  if (old.fullName !== current.fullName) throw new Error(`history/${id}.avsc: ${old.fullName} is not ${current.fullName}`);
  if (old.topic !== current.topic) throw new Error(`history/${id}.avsc: topic ${old.topic} is not ${current.topic}`);
  try {
    current.type.createResolver(old.type);
  } catch (err) {
    throw new Error(`history/${id}.avsc: ${current.id}.avsc cannot read it: ${(err as Error).message}`, { cause: err });
  }
  return Object.freeze({ ...old, version, current });
}

function readSchema(file: string): RecordSchema {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as RecordSchema;
}

/** Loads and indexes every *.avsc of a directory and of its history/ (the default registry uses schemas/). */
export function loadRegistry(dir: string = SCHEMA_DIR): SchemaRegistry {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort();
  const all = files.map((f) => register(f.slice(0, -'.avsc'.length), readSchema(path.join(dir, f))));
  const history: HistorySchema[] = [];
  const histDir = path.join(dir, 'history');
  const histFiles = fs.existsSync(histDir) ? fs.readdirSync(histDir).filter((f) => f.endsWith('.avsc')).sort() : [];
  for (const f of histFiles) {
    const m = /^(.+)\.v(\d+)\.avsc$/.exec(f);
    if (!m) throw new Error(`history/${f}: not named <id>.v<N>.avsc`);
    const current = all.find((s) => s.id === m[1]);
    if (!current) throw new Error(`history/${f}: no current schema ${m[1]}.avsc`);
    history.push(registerHistory(current, Number(m[2]), readSchema(path.join(histDir, f))));
  }
  return createRegistry(all, history);
}

/** Indexes already registered schemas; throws on a duplicate type id, topic or fingerprint, or a history version of a schema not in `all`. */
export function createRegistry(all: readonly RegisteredSchema[], history: readonly HistorySchema[] = []): SchemaRegistry {
  const types = new Map<number, RegisteredSchema>();
  const topics = new Map<string, RegisteredSchema>();
  const fps = new Map<bigint, RegisteredSchema>();
  const ids = new Map<string, RegisteredSchema>();
  for (const s of all) {
    if (s.eventType !== null) {
      if (types.has(s.eventType)) throw new Error(`event type ${s.eventType} registered twice (${s.id}, ${types.get(s.eventType)!.id})`);
      types.set(s.eventType, s);
    }
    if (topics.has(s.topic)) throw new Error(`topic ${s.topic} registered twice`);
    topics.set(s.topic, s);
    if (fps.has(s.fingerprint)) throw new Error(`fingerprint of ${s.id} collides with ${fps.get(s.fingerprint)!.id}`);
    fps.set(s.fingerprint, s);
    ids.set(s.id, s);
  }
  for (const h of history) {
    if (ids.get(h.current.id) !== h.current) throw new Error(`${h.id}: its current schema ${h.current.id} is not registered`);
    if (fps.has(h.fingerprint)) throw new Error(`fingerprint of ${h.id} collides with ${fps.get(h.fingerprint)!.id}`);
    fps.set(h.fingerprint, h);
  }
  return Object.freeze({
    all: Object.freeze([...all]),
    history: Object.freeze([...history]),
    byEventType: (t: number) => types.get(t),
    byTopic: (t: string) => topics.get(t),
    byFingerprint: (fp: bigint) => fps.get(fp),
    byId: (id: string) => ids.get(id),
  });
}

/** Registers one schema given as JSON (tests, tools); not added to any registry. */
export function registerSchema(id: string, schema: RecordSchema): RegisteredSchema {
  return register(id, schema);
}

let defaultRegistry: SchemaRegistry | undefined;

/** The registry of schemas/*.avsc, loaded on first use. */
export function schemaRegistry(): SchemaRegistry {
  defaultRegistry ??= loadRegistry();
  return defaultRegistry;
}
