/**
 * The collector's hot path: raw C event records -> framed Avro records, with
 * no JS object per event.
 *
 * Input, a batch from the native addon (records back to back):
 *
 *   batch  = *entry
 *   entry  = length zero record pad
 *   length = u32 LE          ; bytes of record
 *   zero   = u32             ; reserved, ignored
 *   record = struct rf_*_event [trailer], first byte enum rf_event_type
 *   trailer = bytes            ; schemas with a "trailer" field only (fs.io:
 *                              ; path_len path bytes); sizeof + len <= length
 *   pad    = 0-7 zero bytes  ; next entry starts 8-aligned
 *
 * Output per record: wire header (e.g. single-object 0xC3 0x01 + fingerprint)
 * then the Avro binary body, fields in schema order: the C fields read at the
 * offsets of their "c" annotations, derived fields (reason_name), then the
 * envelope (host, boot_time_ns), which is constant for a run and encoded once.
 *
 * One encoder per schema is generated at start from the annotations
 * (new Function), so the per-field work is straight-line byte reads and
 * zigzag varint writes. Records are encoded into a reusable slab; at the end
 * of a batch the used part is copied into one fresh buffer and each value
 * handed to the sink is a view of it (kafkajs may hold them long after).
 */
import { schemaRegistry, writeVarint, type CAnnotation, type FieldSchema, type RegisteredSchema, type SchemaRegistry } from '../../schemas/registry.ts';
import { singleObjectFormat, type WireFormat } from '../../schemas/wire.ts';
import { writeLongHalves } from '../../schemas/avro-writer.ts';
import { BATCH_RECORD_PREFIX } from './types.ts';
import { formatEndpoint, formatInet } from './inet.ts';

/** enum skb_drop_reason value -> name, with or without the SKB_DROP_REASON_ prefix. */
export type DropReasonNames = ReadonlyMap<number, string> | Readonly<Record<number, string>>;

export interface TranscoderOptions {
  /** Envelope field host, and the first part of every key. */
  readonly host: string;
  /** Envelope field boot_time_ns: wall-clock ns at boot. */
  readonly bootTimeNs: bigint;
  /** Names for tcp.drop reason_name (from the kernel's BTF enum skb_drop_reason). */
  readonly dropReasonNames?: DropReasonNames;
  /** Default: Avro single-object encoding. */
  readonly format?: WireFormat;
  /** Default: schemas/*.avsc. */
  readonly registry?: SchemaRegistry;
  /**
   * Record types that are not transcoded field by field (L7 captures, parsed
   * in user space): each such record of a batch is handed here, in order.
   */
  readonly raw?: ReadonlyMap<number, RawHandler>;
}

/** Takes one raw record (batch[off, off + len)); returns false when it could not decode it (counted as unknown). */
export type RawHandler = (batch: Buffer, off: number, len: number) => boolean;

export type RecordSink = (schema: RegisteredSchema, key: string, value: Buffer) => void;

export interface BatchResult {
  /** Records transcoded and handed to the sink. */
  readonly records: number;
  /**
   * Records skipped: unknown event type, shorter than their struct (or than
   * struct + trailer), a trailer length over its schema's max, or cut off at
   * the batch end. Each is skipped alone: the batch framing gives the next.
   */
  readonly unknown: number;
  /** Bytes of all values handed to the sink. */
  readonly bytes: number;
}

export interface TranscodedRecord {
  readonly schema: RegisteredSchema;
  readonly key: string;
  /** Framed Avro bytes. */
  readonly value: Buffer;
}

export interface Transcoder {
  transcodeBatch(batch: Buffer, sink: RecordSink): BatchResult;
  /** One raw record (no batch prefix); null when unknown or too short. */
  transcodeRecord(record: Buffer): TranscodedRecord | null;
  /**
   * One raw record as the plain object a reader of its Avro record gets
   * (longs as BigInt, enums as symbols), envelope included; null when unknown.
   * Slow, for tests and debugging.
   */
  decodeRaw(record: Buffer): { schema: RegisteredSchema; value: Record<string, unknown> } | null;
}

const DROP_REASON_PREFIX = 'SKB_DROP_REASON_';

// ---- encoding primitives shared by the generated encoders ----

/** A u64 given as 32-bit halves, reinterpreted as a signed Avro long, as a zigzag varint (shared with schemas/avro-writer.ts). */
const wU64 = writeLongHalves;

/** char comm[16] as an Avro string: bytes up to the first NUL; non-UTF-8 bytes become U+FFFD. */
function wComm(s: Buffer, o: number, out: Buffer, pos: number): number {
  let n = 0;
  let high = 0;
  while (n < 16) {
    const c = s[o + n]!;
    if (c === 0) break;
    high |= c;
    n++;
  }
  if (high < 128) {
    out[pos++] = n << 1;
    for (let i = 0; i < n; i++) out[pos + i] = s[o + i]!;
    return pos + n;
  }
  const text = Buffer.from(s.toString('utf8', o, o + n), 'utf8'); // at most 16 * 3 bytes
  out[pos++] = text.length << 1;
  text.copy(out, pos);
  return pos + text.length;
}

/**
 * n bytes at s[o] (a trailer, n <= its schema's max) as an Avro string; bytes
 * that are not UTF-8 become U+FFFD (as comm).
 */
function wBytesString(s: Buffer, o: number, n: number, out: Buffer, pos: number): number {
  let high = 0;
  for (let i = 0; i < n; i++) high |= s[o + i]!;
  if (high < 128) {
    pos = writeVarint(out, pos, n * 2);
    s.copy(out, pos, o, o + n);
    return pos + n;
  }
  const text = Buffer.from(s.toString('utf8', o, o + n), 'utf8'); // at most 3 bytes per input byte
  pos = writeVarint(out, pos, text.length * 2);
  text.copy(out, pos);
  return pos + text.length;
}

/** A u64 at s[o] as decimal text (an inode number in a key): exact past 2^53 too. */
function u64Text(s: Buffer, o: number): string {
  const lo = s.readUInt32LE(o);
  const hi = s.readUInt32LE(o + 4);
  return hi < 2097152 ? String(hi * 4294967296 + lo) : s.readBigUInt64LE(o).toString();
}

/** An ASCII string of at most 63 chars (addresses) as an Avro string. */
function wAscii(out: Buffer, pos: number, str: string): number {
  const n = str.length;
  out[pos++] = n << 1;
  for (let i = 0; i < n; i++) out[pos + i] = str.charCodeAt(i);
  return pos + n;
}

/** Avro string bytes (length varint + UTF-8). */
function avroString(str: string): Buffer {
  const body = Buffer.from(str, 'utf8');
  const out = Buffer.allocUnsafe(body.length + 10);
  const pos = writeVarint(out, 0, body.length * 2);
  body.copy(out, pos);
  return out.subarray(0, pos + body.length);
}

/** Avro long bytes of a bigint. */
function avroLong(v: bigint): Buffer {
  const out = Buffer.allocUnsafe(10);
  const u = BigInt.asUintN(64, v);
  return out.subarray(0, wU64(out, 0, Number(u & 0xffffffffn), Number(u >> 32n)));
}

/** Same order of both ends of a connection, so both directions share a key. */
function connectionKey(prefix: string, s: Buffer, os: number, od: number, sport: number, dport: number, family: number, sa: string, da: string): string {
  let c = 0;
  for (let i = 0; i < 16 && c === 0; i++) c = s[os + i]! - s[od + i]!;
  if (c === 0) c = sport - dport;
  const a = formatEndpoint(sa, sport, family);
  const b = formatEndpoint(da, dport, family);
  return c <= 0 ? `${prefix}${a}-${b}` : `${prefix}${b}-${a}`;
}

// ---- per-schema compilation ----

const C_SIZE: Record<string, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, s64: 8, comm: 16, inet: 16 };
/** Worst-case Avro bytes per C kind. */
const MAX_OUT: Record<string, number> = { u8: 2, u16: 3, u32: 5, s32: 5, u64: 10, s64: 10, comm: 1 + 48, inet: 1 + 39 };
/** Derived fields computed from a u32 C field, as an Avro long: the kernel's dev_t encoding split (MAJOR/MINOR of kdev_t.h). */
const DERIVED_U32: Record<string, string> = { dev_major: '>>> 20', dev_minor: '& 1048575' };

function readExpr(c: CAnnotation): string {
  const k = c.offset;
  switch (c.type) {
    case 'u8': return `s[o + ${k}]`;
    case 'u16': return `(s[o + ${k}] | s[o + ${k + 1}] << 8)`;
    case 'u32': return `((s[o + ${k}] | s[o + ${k + 1}] << 8 | s[o + ${k + 2}] << 16 | s[o + ${k + 3}] << 24) >>> 0)`;
    case 's32': return `(s[o + ${k}] | s[o + ${k + 1}] << 8 | s[o + ${k + 2}] << 16 | s[o + ${k + 3}] << 24)`;
    default: throw new Error(`no scalar read for ${c.type}`);
  }
}

/** Varint of v, a zigzagged value below 2^32. */
const VARINT_V = 'while (v > 127) { out[pos++] = (v & 127) | 128; v >>>= 7; } out[pos++] = v;';

interface Compiled {
  readonly schema: RegisteredSchema;
  readonly size: number;
  readonly maxOut: number;
  readonly encode: (s: Buffer, o: number, out: Buffer, pos: number) => number;
  readonly decodeRaw: (s: Buffer) => Record<string, unknown>;
  /** Offset of the trailer's u16 length field, or -1 when the schema has no trailer. */
  readonly trailerLenAt: number;
  /** Largest trailer length a valid record has. */
  readonly trailerMax: number;
}

/** Whether record s[o, o + len) holds its whole trailer and that trailer is within its max (len >= size already checked). */
function trailerFits(enc: Compiled, s: Buffer, o: number, len: number): boolean {
  const n = s[o + enc.trailerLenAt]! | s[o + enc.trailerLenAt + 1]! << 8;
  return n <= enc.trailerMax && len - enc.size >= n;
}

interface Shared {
  readonly host: string;
  readonly bootTimeNs: bigint;
  readonly state: { key: string };
  readonly reasonBytes: (v: number) => Buffer;
  readonly reasonName: (v: number) => string;
  readonly maxReasonBytes: number;
  readonly format: WireFormat;
}

function enumInfo(field: FieldSchema): { symbols: readonly string[]; table: Uint8Array } {
  const t = field.type as { type?: string; symbols?: string[]; default?: string };
  const c = field.c!;
  if (typeof t !== 'object' || t.type !== 'enum' || !t.symbols || !c.enum) throw new Error(`${field.name}: "enum" annotation needs an Avro enum type`);
  const def = t.default === undefined ? -1 : t.symbols.indexOf(t.default);
  if (def < 0) throw new Error(`${field.name}: enum needs a default symbol for C values it does not list`);
  if (t.symbols.length > 63) throw new Error(`${field.name}: enum index must fit one varint byte`);
  const table = new Uint8Array(256).fill(def);
  for (const [sym, cval] of Object.entries(c.enum)) {
    const i = t.symbols.indexOf(sym);
    if (i < 0) throw new Error(`${field.name}: C enum names unknown symbol ${sym}`);
    table[cval] = i;
  }
  return { symbols: t.symbols, table };
}

function isLongField(f: FieldSchema): boolean {
  return f.type === 'long';
}

function compile(schema: RegisteredSchema, sh: Shared): Compiled {
  const fields = schema.schema.fields;
  const byName = new Map(fields.map((f) => [f.name, f]));
  const cField = (name: string, why: string): FieldSchema => {
    const f = byName.get(name);
    if (!f?.c) throw new Error(`${schema.id}: ${why} needs C field ${name}`);
    return f;
  };
  const hdr = Buffer.alloc(sh.format.headerSize(schema));
  sh.format.writeHeader(schema, hdr, 0);

  // Scalars other fields or the key refer to are read once into locals.
  const locals = new Set<string>();
  const strings = new Set<string>(); // inet fields whose text the key reuses
  for (const f of fields) {
    if (f.c?.type === 'inet') locals.add(cField(f.c.family ?? '', `${f.name} (inet)`).name);
    if (f.derived) locals.add(cField(f.derived.from, f.name).name);
    if (f.trailer) locals.add(cField(f.trailer.len, `${f.name} (trailer)`).name);
  }
  const trailers = fields.filter((f) => f.trailer);
  if (trailers.length > 1) throw new Error(`${schema.id}: at most one trailer field`);
  const trailer = trailers[0];
  if (trailer) {
    const t = trailer.trailer!;
    if (byName.get(t.len)!.c!.type !== 'u16') throw new Error(`${schema.id}: trailer length ${t.len} must be a u16`);
    if (!Number.isInteger(t.max) || t.max < 0 || t.max > 65535) throw new Error(`${schema.id}: trailer max ${t.max}`);
    if (fields.indexOf(trailer) < Math.max(...fields.map((f, i) => (f.c ? i : -1)))) throw new Error(`${schema.id}: the trailer must follow every C field`);
  }
  switch (schema.key) {
    case 'process': locals.add(cField('tgid', 'key process').name); break;
    case 'device': locals.add(cField('dev_major', 'key device').name); locals.add(cField('dev_minor', 'key device').name); break;
    case 'connection':
      for (const n of ['sport', 'dport', 'family']) locals.add(cField(n, 'key connection').name);
      for (const n of ['saddr', 'daddr']) strings.add(cField(n, 'key connection').name);
      break;
    case 'file': locals.add(cField('dev', 'key file').name); cField('ino', 'key file'); break;
    case 'host': break;
    default: throw new Error(`${schema.id}: unknown key kind ${String(schema.key)}`);
  }

  const env: Buffer[] = [];
  const enums: Record<string, Uint8Array> = {};
  const body: string[] = [];
  let maxOut = hdr.length;
  let seenEnvelope = false;
  for (const n of locals) body.push(`const f_${n} = ${readExpr(byName.get(n)!.c!)};`);
  for (const n of strings) {
    const c = byName.get(n)!.c!;
    body.push(`const a_${n} = inet(s, o + ${c.offset}, f_${c.family});`);
  }
  body.push('let v = 0, lo = 0, hi = 0;');
  body.push(`for (let i = 0; i < ${hdr.length}; i++) out[pos + i] = HDR[i];`, `pos += ${hdr.length};`);
  for (const f of fields) {
    if (f.envelope) {
      seenEnvelope = true;
      if (f.name === 'host') env.push(avroString(sh.host));
      else if (f.name === 'boot_time_ns') env.push(avroLong(sh.bootTimeNs));
      else throw new Error(`${schema.id}: unknown envelope field ${f.name}`);
      continue;
    }
    if (seenEnvelope) throw new Error(`${schema.id}: envelope fields must come last (${f.name})`);
    if (f.derived && DERIVED_U32[f.derived.kind] !== undefined) {
      if (byName.get(f.derived.from)!.c!.type !== 'u32') throw new Error(`${schema.id}: ${f.name} needs a u32 field, ${f.derived.from} is not`);
      body.push(`v = (f_${f.derived.from} ${DERIVED_U32[f.derived.kind]}) * 2; if (v < 4294967296) { ${VARINT_V} } else pos = wNum(out, pos, v);`);
      maxOut += 5;
      continue;
    }
    if (f.trailer) {
      // after the struct; its length was checked against the record (trailerFits) before encode is called
      body.push(`pos = wBytes(s, o + ${schema.size}, f_${f.trailer.len}, out, pos);`);
      maxOut += 3 + 3 * f.trailer.max;
      continue;
    }
    if (f.derived) {
      if (f.derived.kind !== 'drop_reason_name') throw new Error(`${schema.id}: unknown derived kind ${f.derived.kind}`);
      body.push(`{ const b = reasonBytes(f_${f.derived.from}); for (let i = 0; i < b.length; i++) out[pos + i] = b[i]; pos += b.length; }`);
      maxOut += sh.maxReasonBytes;
      continue;
    }
    const c = f.c;
    if (!c) throw new Error(`${schema.id}: field ${f.name} has neither "c", "derived" nor "envelope"`);
    if (C_SIZE[c.type] === undefined) throw new Error(`${schema.id}: field ${f.name} has unknown C kind ${c.type}`);
    const k = c.offset;
    const local = locals.has(f.name) ? `f_${f.name}` : undefined;
    if (c.enum) {
      enums[f.name] = enumInfo(f).table;
      body.push(`out[pos++] = E_${f.name}[s[o + ${k}]] << 1;`);
      maxOut += 1;
      continue;
    }
    maxOut += MAX_OUT[c.type]!;
    switch (c.type) {
      case 'u8':
      case 'u16':
        body.push(`v = ${local ?? readExpr(c)} << 1; ${VARINT_V}`);
        break;
      case 'u32':
        body.push(`v = ${local ?? readExpr(c)} * 2; if (v < 4294967296) { ${VARINT_V} } else pos = wNum(out, pos, v);`);
        break;
      case 's32':
        body.push(`v = ${local ?? readExpr(c)}; v = ((v << 1) ^ (v >> 31)) >>> 0; ${VARINT_V}`);
        break;
      case 'u64':
      case 's64': // the same bits: a u64 of 2^63 or more is a negative long anyway
        body.push(
          `lo = ${readExpr({ offset: k, type: 'u32' })}; hi = ${readExpr({ offset: k + 4, type: 'u32' })};`,
          `if (hi === 0 && lo < 2147483648) { v = lo * 2; ${VARINT_V} }`,
          `else if (hi < 2097152) pos = wNum(out, pos, (hi * 4294967296 + lo) * 2);`,
          'else pos = wU64(out, pos, lo, hi);',
        );
        break;
      case 'comm':
        body.push(`pos = wComm(s, o + ${k}, out, pos);`);
        break;
      case 'inet':
        body.push(strings.has(f.name) ? `pos = wAscii(out, pos, a_${f.name});` : `pos = wAscii(out, pos, inet(s, o + ${k}, f_${c.family}));`);
        break;
    }
  }
  const envBytes = Buffer.concat(env);
  maxOut += envBytes.length;
  body.push(`for (let i = 0; i < ${envBytes.length}; i++) out[pos + i] = ENV[i];`, `pos += ${envBytes.length};`);
  switch (schema.key) {
    case 'process': body.push('st.key = PFX + f_tgid;'); break;
    case 'device': body.push('st.key = PFX + f_dev_major + ":" + f_dev_minor;'); break;
    case 'connection': {
      const os = byName.get('saddr')!.c!.offset;
      const od = byName.get('daddr')!.c!.offset;
      body.push(`st.key = connKey(PFX, s, o + ${os}, o + ${od}, f_sport, f_dport, f_family, a_saddr, a_daddr);`);
      break;
    }
    case 'file': // host/major:minor/ino: one file's events on one partition, in order
      body.push(`st.key = PFX + (f_dev >>> 20) + ":" + (f_dev & 1048575) + "/" + u64Text(s, o + ${byName.get('ino')!.c!.offset});`);
      break;
    case 'host': body.push('st.key = HOST;'); break;
  }
  body.push('return pos;');

  const helpers: Record<string, unknown> = {
    wNum: writeVarint, wU64, wComm, wAscii, wBytes: wBytesString, u64Text, inet: formatInet, connKey: connectionKey, reasonBytes: sh.reasonBytes,
    st: sh.state, HDR: hdr, ENV: envBytes, PFX: `${sh.host}/`, HOST: sh.host,
  };
  for (const [name, table] of Object.entries(enums)) helpers[`E_${name}`] = table;
  const names = Object.keys(helpers);
  const fnName = `encode_${schema.id.replace(/\W/g, '_')}`;
  const src = `return function ${fnName}(s, o, out, pos) {\n  ${body.join('\n  ')}\n};`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const encode = new Function(...names, src)(...names.map((n) => helpers[n])) as Compiled['encode'];

  const decodeRaw = (s: Buffer): Record<string, unknown> => {
    const value: Record<string, unknown> = {};
    const num = (f: FieldSchema): number => {
      const c = f.c!;
      switch (c.type) {
        case 'u8': return s.readUInt8(c.offset);
        case 'u16': return s.readUInt16LE(c.offset);
        case 'u32': return s.readUInt32LE(c.offset);
        case 's32': return s.readInt32LE(c.offset);
        default: throw new Error(`not a scalar: ${f.name}`);
      }
    };
    for (const f of fields) {
      const c = f.c;
      if (f.envelope) value[f.name] = f.name === 'host' ? sh.host : sh.bootTimeNs;
      else if (f.trailer) value[f.name] = s.toString('utf8', schema.size, schema.size + num(byName.get(f.trailer.len)!));
      else if (f.derived?.kind === 'dev_major') value[f.name] = BigInt(num(byName.get(f.derived.from)!) >>> 20);
      else if (f.derived?.kind === 'dev_minor') value[f.name] = BigInt(num(byName.get(f.derived.from)!) & 0xfffff);
      else if (f.derived) value[f.name] = sh.reasonName(num(byName.get(f.derived.from)!));
      else if (!c) throw new Error('unreachable');
      else if (c.enum) value[f.name] = enumInfo(f).symbols[enumInfo(f).table[s[c.offset]!]!];
      else if (c.type === 'u64' || c.type === 's64') value[f.name] = BigInt.asIntN(64, s.readBigUInt64LE(c.offset));
      else if (c.type === 'comm') {
        const end = s.subarray(c.offset, c.offset + 16).indexOf(0);
        value[f.name] = s.toString('utf8', c.offset, c.offset + (end < 0 ? 16 : end));
      } else if (c.type === 'inet') value[f.name] = formatInet(s, c.offset, num(byName.get(c.family!)!));
      else value[f.name] = isLongField(f) ? BigInt(num(f)) : num(f);
    }
    return value;
  };

  const trailerLenAt = trailer ? byName.get(trailer.trailer!.len)!.c!.offset : -1;
  return { schema, size: schema.size, maxOut, encode, decodeRaw, trailerLenAt, trailerMax: trailer?.trailer!.max ?? 0 };
}

function reasonTable(names: DropReasonNames | undefined): (v: number) => string | undefined {
  if (!names) return () => undefined;
  if (names instanceof Map) return (v) => (names as ReadonlyMap<number, string>).get(v);
  const rec = names as Readonly<Record<number, string>>;
  return (v) => (Object.hasOwn(rec, v) ? rec[v] : undefined);
}

export function createTranscoder(opts: TranscoderOptions): Transcoder {
  const registry = opts.registry ?? schemaRegistry();
  const format = opts.format ?? singleObjectFormat();
  const lookup = reasonTable(opts.dropReasonNames);
  const reasonName = (v: number): string => {
    const n = lookup(v);
    if (n === undefined) return `UNKNOWN_${v}`;
    return n.startsWith(DROP_REASON_PREFIX) ? n.slice(DROP_REASON_PREFIX.length) : n;
  };
  const reasonCache = new Map<number, Buffer>();
  const reasonBytes = (v: number): Buffer => {
    let b = reasonCache.get(v);
    if (b === undefined) {
      b = avroString(reasonName(v));
      if (reasonCache.size < 4096) reasonCache.set(v, b); // values are u32: bound what garbage can fill
    }
    return b;
  };
  let maxReasonBytes = avroString(`UNKNOWN_${0xffffffff}`).length;
  if (opts.dropReasonNames) {
    const all = opts.dropReasonNames instanceof Map ? [...opts.dropReasonNames.values()] : Object.values(opts.dropReasonNames);
    for (const n of all) maxReasonBytes = Math.max(maxReasonBytes, avroString(n).length);
  }
  const state = { key: '' };
  const shared: Shared = { host: opts.host, bootTimeNs: opts.bootTimeNs, state, reasonBytes, reasonName, maxReasonBytes, format };

  const byType: (Compiled | undefined)[] = new Array(256).fill(undefined);
  for (const s of registry.all) {
    if (s.eventType === null) continue;
    if (s.eventType < 0 || s.eventType > 255) throw new Error(`${s.id}: event type ${s.eventType} is not a u8`);
    byType[s.eventType] = compile(s, shared);
  }

  let slab = Buffer.allocUnsafe(1 << 20);
  // Per-batch bookkeeping, reused: record i is slab[starts[i], starts[i + 1]).
  let starts = new Int32Array(4096);
  let schemas: RegisteredSchema[] = [];
  let keys: string[] = [];

  const grow = (need: number): void => {
    let size = slab.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    slab.copy(next, 0, 0, slab.length);
    slab = next;
  };

  const transcodeBatch = (batch: Buffer, sink: RecordSink): BatchResult => {
    const end = batch.length;
    let off = 0;
    let pos = 0;
    let n = 0;
    let unknown = 0;
    while (off + BATCH_RECORD_PREFIX <= end) {
      const len = (batch[off]! | batch[off + 1]! << 8 | batch[off + 2]! << 16 | batch[off + 3]! << 24) >>> 0;
      const rec = off + BATCH_RECORD_PREFIX;
      if (len > end - rec) { // cut off: the rest of the batch cannot be framed
        unknown++;
        off = end;
        break;
      }
      off = rec + ((len + 7) & ~7);
      const enc = len > 0 ? byType[batch[rec]!] : undefined;
      if (enc === undefined || len < enc.size || (enc.trailerLenAt >= 0 && !trailerFits(enc, batch, rec, len))) {
        const h = enc === undefined && len > 0 ? opts.raw?.get(batch[rec]!) : undefined;
        if (h === undefined || !h(batch, rec, len)) unknown++;
        continue;
      }
      if (pos + enc.maxOut > slab.length) grow(pos + enc.maxOut);
      if (n + 1 >= starts.length) {
        const next = new Int32Array(starts.length * 2);
        next.set(starts);
        starts = next;
      }
      starts[n] = pos;
      pos = enc.encode(batch, rec, slab, pos);
      schemas[n] = enc.schema;
      keys[n] = state.key;
      n++;
    }
    if (off < end) unknown++; // trailing bytes too short for a length prefix
    starts[n] = pos;
    if (n > 0) {
      const out = Buffer.allocUnsafe(pos);
      slab.copy(out, 0, 0, pos);
      for (let i = 0; i < n; i++) sink(schemas[i]!, keys[i]!, out.subarray(starts[i]!, starts[i + 1]!));
    }
    if (schemas.length > 65536) { // do not pin a huge batch's keys forever
      schemas = [];
      keys = [];
    }
    return { records: n, unknown, bytes: pos };
  };

  const transcodeRecord = (record: Buffer): TranscodedRecord | null => {
    const enc = record.length > 0 ? byType[record[0]!] : undefined;
    if (enc === undefined || record.length < enc.size || (enc.trailerLenAt >= 0 && !trailerFits(enc, record, 0, record.length))) return null;
    const out = Buffer.allocUnsafe(enc.maxOut);
    const len = enc.encode(record, 0, out, 0);
    return { schema: enc.schema, key: state.key, value: out.subarray(0, len) };
  };

  const decodeRaw = (record: Buffer): { schema: RegisteredSchema; value: Record<string, unknown> } | null => {
    const enc = record.length > 0 ? byType[record[0]!] : undefined;
    if (enc === undefined || record.length < enc.size || (enc.trailerLenAt >= 0 && !trailerFits(enc, record, 0, record.length))) return null;
    return { schema: enc.schema, value: enc.decodeRaw(record) };
  };

  return { transcodeBatch, transcodeRecord, decodeRaw };
}

/** Frames raw records the way the native addon does ([u32 len][u32 0][record][pad to 8]); for tests and benchmarks. */
export function buildBatch(records: readonly Buffer[]): Buffer {
  let size = 0;
  for (const r of records) size += BATCH_RECORD_PREFIX + ((r.length + 7) & ~7);
  const out = Buffer.alloc(size);
  let off = 0;
  for (const r of records) {
    out.writeUInt32LE(r.length, off);
    r.copy(out, off + BATCH_RECORD_PREFIX);
    off += BATCH_RECORD_PREFIX + ((r.length + 7) & ~7);
  }
  return out;
}
