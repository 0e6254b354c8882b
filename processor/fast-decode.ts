/**
 * A decoder for the aggregation hot path: framed single-object records of the
 * flat event schemas (ints, longs, strings, enums) -> the current schema's
 * shape, without avsc and without a BigInt per long.
 *
 * Why: profiling stage 2 (decodeCurrent + WindowAggregator.add on runqlat
 * records) put ~40% of the time in avsc's long reading (the BigInt long type
 * of schemas/registry.ts: a Buffer slice plus a BigInt for every long, seven
 * per runqlat record) and the header lookup by BigInt fingerprint. The METRICS
 * table only ever reads longs through Number() or a template string, where a
 * number and a BigInt of the same value give the same result, so here a long
 * is a number when its zigzag varint is below 2^53 (-2^52 <= v < 2^52: far
 * beyond any latency, size or count) and a BigInt otherwise. The
 * event time (boot_time_ns + ts_ns, beyond 2^53) is computed by eventTimeNs.
 *
 * Exactness: a varint of up to 8 bytes is summed in doubles, 7 bits at a
 * time, each partial sum an integer below 2^56; only a total below 2^53 (then
 * exact) is kept as a number, anything larger is redone in BigInt as
 * registry.ts decodeLong does.
 *
 * Anything unusual returns null and the caller takes the avsc path, which
 * then fails or succeeds exactly as before: a body that is truncated, has
 * trailing bytes, a negative length, a bad enum index or an int beyond 49
 * bits; a writer schema with another field type (records, unions, arrays:
 * spans, stats); a history version whose resolution needs more than defaults
 * and enum symbol mapping. The differential test (test/unit/aggregate-fast.test.ts)
 * checks the two paths agree.
 *
 * The decoder is generated per writer schema (new Function, as avsc itself
 * does): one straight-line read per field and an object literal in the
 * current schema's field order, so every record of a schema gets the same
 * hidden class and the reads inline.
 */
import { type RegisteredSchema, type HistorySchema } from '../schemas/registry.ts';
import { singleObjectFormat, type WireFormat } from '../schemas/wire.ts';

/** A long as decoded here: a number for -2^52 <= v < 2^52, else a BigInt (either way exact). */
export type FastLong = number | bigint;

export interface FastDecoded {
  /** The current schema (a history version's records read as it). */
  readonly schema: RegisteredSchema;
  /** Fields of the current schema; longs as FastLong. */
  readonly value: Record<string, unknown>;
}

const TWO_53 = 9007199254740992;
/** Strings up to this many bytes go through the Reader's cache (comm is 16, host names are short). */
const STR_CACHE_MAX_LEN = 64;
const STR_CACHE_SIZE = 1024;

/**
 * Node's Buffer#utf8Slice: what buf.toString('utf8', start, end) calls after
 * its argument checks, and what avsc reads strings with (same result,
 * invalid sequences as U+FFFD). Untyped in @types/node.
 */
type NodeBuffer = Buffer & { utf8Slice(start: number, end: number): string };

/** Cursor over one Avro body; `ok` turns false at the first anomaly. */
class Reader {
  buf: NodeBuffer = Buffer.alloc(0) as NodeBuffer;
  pos = 0;
  ok = true;
  /** boot_time_ns repeats on every record of a host: its varint bytes and value, reused while they match. */
  private lastBig: Uint8Array = new Uint8Array(10);
  private lastBigLen = 0;
  private lastBigValue: bigint = 0n;
  private readonly strBytes: (Uint8Array | undefined)[] = new Array(STR_CACHE_SIZE).fill(undefined);
  private readonly strValues: (string | undefined)[] = new Array(STR_CACHE_SIZE).fill(undefined);

  reset(buf: Buffer, pos: number): void {
    this.buf = buf as NodeBuffer;
    this.pos = pos;
    this.ok = true;
  }

  /** Zigzag varint: a number when the varint is below 2^53 (then exact), else a BigInt. */
  long(): FastLong {
    const buf = this.buf;
    const start = this.pos;
    let n = 0;
    let mul = 1;
    let p = start;
    for (;;) {
      if (p >= buf.length) return this.fail();
      const b = buf[p++]!;
      n += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
      if (p - start === 8) return this.bigLong(start); // a 9th byte: beyond 56 bits
    }
    this.pos = p;
    if (n >= TWO_53) return this.bigLong(start);
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }

  /** The whole varint at `start` in BigInt (as registry.ts decodeLong); cached for a repeated value. */
  private bigLong(start: number): FastLong {
    const buf = this.buf;
    let p = start;
    while (p < buf.length && buf[p]! >= 0x80 && p - start < 10) p++;
    if (p >= buf.length || p - start >= 10) return this.fail();
    p++;
    const len = p - start;
    this.pos = p;
    if (len === this.lastBigLen) {
      let same = true;
      for (let i = 0; i < len; i++) if (this.lastBig[i] !== buf[start + i]) { same = false; break; }
      if (same) return this.lastBigValue;
    }
    let n = 0n;
    let shift = 0n;
    for (let i = start; i < p; i++) {
      n |= BigInt(buf[i]! & 0x7f) << shift;
      shift += 7n;
    }
    n = BigInt.asUintN(64, n);
    const v = (n >> 1n) ^ -(n & 1n);
    for (let i = 0; i < len; i++) this.lastBig[i] = buf[start + i]!;
    this.lastBigLen = len;
    this.lastBigValue = v;
    return v;
  }

  /** Avro int (avsc reads it as a long): a number; anything over 49 bits is left to avsc. */
  int(): number {
    const v = this.long();
    if (typeof v !== 'number' || v > 0x7fffffff || v < -0x80000000) return this.fail();
    return v;
  }

  str(): string {
    const len = this.long();
    if (typeof len !== 'number' || len < 0) return this.fail();
    const start = this.pos;
    const end = start + len;
    const buf = this.buf;
    if (end > buf.length) return this.fail();
    this.pos = end;
    if (len > STR_CACHE_MAX_LEN) return buf.utf8Slice(start, end);
    // the strings here (host, comm, addresses, enum-like names) repeat from
    // record to record: a small cache by content saves the native utf8Slice
    // call and an allocation, and hands the aggregator's Maps strings whose
    // hash is already computed
    let h = len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
    const slot = (h >>> 0) & (STR_CACHE_SIZE - 1);
    const bytes = this.strBytes[slot];
    if (bytes !== undefined && bytes.length === len) {
      let i = 0;
      while (i < len && bytes[i] === buf[start + i]) i++;
      if (i === len) return this.strValues[slot]!;
    }
    const v = buf.utf8Slice(start, end);
    this.strBytes[slot] = new Uint8Array(buf.subarray(start, end)); // a copy: the record's buffer is not ours to keep
    this.strValues[slot] = v;
    return v;
  }

  /** Enum index -> the reader's symbol (or its default for a symbol it lacks). */
  sym(symbols: readonly string[]): string {
    const i = this.long();
    const s = typeof i === 'number' ? symbols[i] : undefined;
    if (s === undefined) return this.fail();
    return s;
  }

  private fail(): never {
    this.ok = false;
    // abandon the record: the generated code checks `ok` once, at the end,
    // so keep reading harmlessly from the end of the buffer
    this.pos = this.buf.length;
    return undefined as never;
  }
}

type Compiled = (buf: Buffer, pos: number) => Record<string, unknown> | null;

interface FieldDef {
  readonly name: string;
  readonly type: unknown;
  readonly default?: unknown;
}

function enumOf(t: unknown): { symbols: string[]; default?: string; name: string } | undefined {
  const o = t as { type?: unknown; symbols?: unknown };
  return typeof o === 'object' && o !== null && o.type === 'enum' && Array.isArray(o.symbols) ? (o as { symbols: string[]; default?: string; name: string }) : undefined;
}

const PRIMS = new Set(['int', 'long', 'string']);

/**
 * Generates the decoder of `writer` records into `reader`'s shape, or null
 * when a field needs more than this file handles (see the header).
 */
function compile(writer: RegisteredSchema, reader: RegisteredSchema): Compiled | null {
  const wf = writer.schema.fields as readonly FieldDef[];
  const rf = reader.schema.fields as readonly FieldDef[];
  const consts: unknown[] = [];
  const konst = (v: unknown): string => `k[${consts.push(v) - 1}]`;
  const lines: string[] = [];
  const local = new Map<string, string>();
  for (let i = 0; i < wf.length; i++) {
    const f = wf[i]!;
    const r = rf.find((x) => x.name === f.name);
    const v = `f${i}`;
    const en = enumOf(f.type);
    if (typeof f.type === 'string' && PRIMS.has(f.type)) {
      if (r && r.type !== f.type) return null; // a promotion (int -> long ...): avsc's business
      lines.push(`const ${v} = r.${f.type === 'int' ? 'int' : f.type === 'long' ? 'long' : 'str'}();`);
    } else if (en) {
      let symbols = en.symbols;
      if (r) {
        const ren = enumOf(r.type);
        if (!ren || ren.name !== en.name) return null;
        // a writer symbol the reader lacks reads as the reader's default (Avro schema resolution)
        const mapped = en.symbols.map((s) => (ren.symbols.includes(s) ? s : ren.default));
        if (mapped.some((s) => s === undefined)) return null;
        symbols = mapped as string[];
      }
      lines.push(`const ${v} = r.sym(${konst(Object.freeze(symbols))});`);
    } else {
      return null;
    }
    if (r) local.set(f.name, v);
  }
  const props: string[] = [];
  for (const r of rf) {
    const v = local.get(r.name);
    if (v !== undefined) {
      props.push(`${JSON.stringify(r.name)}: ${v}`);
      continue;
    }
    // a field the writer lacks: the reader's default, as avsc's resolver gives it
    if (!('default' in r)) return null;
    const d = r.default;
    let value: unknown;
    if (r.type === 'long' && (typeof d === 'number' || typeof d === 'string')) {
      const b = BigInt(d);
      value = b >= -(1n << 52n) && b < 1n << 52n ? Number(b) : b;
    } else if ((r.type === 'int' && typeof d === 'number') || (r.type === 'string' && typeof d === 'string')) {
      value = d;
    } else if (enumOf(r.type) && typeof d === 'string' && enumOf(r.type)!.symbols.includes(d)) {
      value = d;
    } else {
      return null;
    }
    props.push(`${JSON.stringify(r.name)}: ${konst(value)}`);
  }
  const src = `return function decode(buf, pos) {
  r.reset(buf, pos);
  ${lines.join('\n  ')}
  if (!r.ok || r.pos !== buf.length) return null;
  return { ${props.join(', ')} };
};`;
  // the source holds only field names (JSON-quoted) and the Reader's method names; symbols and defaults go in through k
  return new Function('r', 'k', src)(new Reader(), consts) as Compiled;
}

/** Header + compiled decoder of one writer schema; the last one used is tried first. */
interface Entry {
  readonly lo: number;
  readonly hi: number;
  readonly schema: RegisteredSchema;
  readonly decode: Compiled | null;
}

export interface FastDecoder {
  /**
   * Framed bytes -> the current schema and the value in its shape, longs as
   * FastLong; null when this record is for the avsc path (decodeCurrent).
   */
  decode(buf: Buffer): FastDecoded | null;
}

export function createFastDecoder(format: WireFormat = singleObjectFormat()): FastDecoder {
  // the header is read here directly: only for the single-object format
  const single = format.name === 'avro-single-object';
  const bySchema = new Map<RegisteredSchema, Entry>();
  let last: Entry | null = null;
  function entryOf(buf: Buffer, lo: number, hi: number): Entry | null {
    let writer: RegisteredSchema;
    try {
      writer = format.decode(buf).schema;
    } catch {
      return null; // bad magic, unknown schema: decodeCurrent throws the WireError
    }
    let e = bySchema.get(writer);
    if (!e) {
      const current = (writer as Partial<HistorySchema>).current ?? writer;
      e = { lo, hi, schema: current, decode: compile(writer, current) };
      bySchema.set(writer, e);
    }
    return e;
  }
  return {
    decode(buf) {
      // single-object header (wire.ts): C3 01, fingerprint as two u32s, so no BigInt for the lookup
      if (!single || buf.length < 10 || buf[0] !== 0xc3 || buf[1] !== 0x01) return null;
      const lo = buf.readUInt32LE(2);
      const hi = buf.readUInt32LE(6);
      let e = last;
      if (e === null || e.lo !== lo || e.hi !== hi) {
        e = entryOf(buf, lo, hi);
        if (e === null) return null;
        last = e;
      }
      if (e.decode === null) return null;
      const value = e.decode(buf, 10);
      return value === null ? null : { schema: e.schema, value };
    },
  };
}

/** boot_time_ns + ts_ns of a fast-decoded event, exactly, as a BigInt. */
export function eventTimeNs(v: Record<string, unknown>): bigint {
  const boot = v.boot_time_ns as FastLong;
  const ts = v.ts_ns as FastLong;
  return (typeof boot === 'bigint' ? boot : BigInt(boot)) + (typeof ts === 'bigint' ? ts : BigInt(ts));
}
