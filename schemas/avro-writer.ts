/**
 * Avro binary primitives written straight into one growable scratch buffer,
 * for hand-written record writers on a hot path (collector/l7/encode.ts
 * writes `ringflow.l7.v1` with it): no value object is built for avsc, no
 * schema walk, one copy out per record.
 *
 * Encoding (Avro spec, "Binary Encoding"), what each method writes:
 *
 *   long, int   = zigzag varint                 ; writeVarint of registry.ts below 2^52,
 *                                                ; writeLongHalves (here) beyond
 *   string      = long(byte length) UTF-8 bytes
 *   boolean     = %x00 / %x01
 *   enum        = int(symbol index)
 *   union       = long(branch index) value       ; ["null", T]: 0, or 1 then T
 *   map<string> = *(long(n) n*(string string)) long(0)  ; one block, keys in
 *                                                 ; Object.keys order, as avsc
 *
 * Values are checked as avsc's own `_write` checks them (a long is a safe
 * integer or a BigInt in int64, an int an int32, a string a string...): a
 * bad value throws AvroWriteError naming the field, as avsc would throw, so a
 * caller that counted avsc's failures counts these. One deliberate
 * difference: a lone UTF-16 surrogate is written as U+FFFD (valid UTF-8, what
 * Buffer.write does); avsc's own loop writes it as 3 CESU bytes in strings of
 * up to 64 bytes. Parsers here never produce one (they decode latin1 or
 * UTF-8 with replacement), and readers get U+FFFD either way.
 *
 * Overflow: typed arrays ignore writes past their end, so every method just
 * advances `pos`; `end()` tells whether the record fit and the caller writes
 * it again after `grow()`. Only `Buffer.write` (non-ASCII strings) checks.
 */
import { writeVarint, zigzag } from './registry.ts';

export class AvroWriteError extends Error {
  /** Writing the same value again cannot succeed. */
  readonly retriable = false;
  readonly field: string;
  constructor(field: string, value: unknown) {
    super(`invalid value for ${field}: ${describe(value)}`);
    this.name = 'AvroWriteError';
    this.field = field;
  }
}

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  try {
    return `${typeof v} ${JSON.stringify(v)}`;
  } catch {
    return typeof v;
  }
}

const TWO_52 = 4503599627370496;
const BIG_TWO_52 = 1n << 52n;
const BIG_TWO_63 = 1n << 63n;
const BIG_TWO_64 = 1n << 64n;

/**
 * A 64-bit value given as 32-bit halves (two's complement: a u64 reads as
 * the int64 of the same bits) as an Avro long: zigzag over the halves, then
 * the varint, with no BigInt arithmetic. Shared with the collector's
 * generated encoders (collector/events/transcode.ts).
 */
export function writeLongHalves(out: Uint8Array, pos: number, lo: number, hi: number): number {
  const sign = -(hi >>> 31); // 0 or -1 (all ones)
  let zlo = ((lo << 1) ^ sign) >>> 0;
  let zhi = (((hi << 1) | (lo >>> 31)) ^ sign) >>> 0;
  while (zhi !== 0 || zlo > 127) {
    out[pos++] = (zlo & 127) | 128;
    zlo = ((zlo >>> 7) | (zhi << 25)) >>> 0;
    zhi >>>= 7;
  }
  out[pos++] = zlo;
  return pos;
}

/** A BigInt's two halves: one DataView write and two reads (~20 ns) where shifts and masks make a BigInt each (~150 ns with encodeLong). */
const HALVES = new DataView(new ArrayBuffer(8));

export class AvroWriter {
  buf: Buffer;
  pos = 0;

  constructor(size = 4096) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Starts a record at `pos` (after a wire header the caller wrote). */
  start(pos: number): void {
    this.pos = pos;
  }

  /** True when everything written since start() is in the buffer. */
  fits(): boolean {
    return this.pos <= this.buf.length;
  }

  /** Makes room for at least the last attempt's size; the caller writes the record again. */
  grow(): void {
    this.buf = Buffer.allocUnsafe(Math.max(2 * this.buf.length, 2 * this.pos));
  }

  /** A new buffer of `size` bytes to write into; the old one stays with whoever holds views of it. */
  fresh(size: number): void {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
  }

  /** A copy of [0, pos): the scratch buffer is reused by the next record (kafkajs may hold values long after). */
  copy(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  /** Avro long of a BigInt in int64 or a safe-integer number. */
  long(v: bigint | number, field: string): void {
    if (typeof v === 'number') {
      if (v >= -TWO_52 && v < TWO_52 && Number.isInteger(v)) {
        this.pos = writeVarint(this.buf, this.pos, zigzag(v));
        return;
      }
      if (!Number.isSafeInteger(v)) throw new AvroWriteError(field, v);
      this.#halves(BigInt(v));
      return;
    }
    if (typeof v !== 'bigint') throw new AvroWriteError(field, v);
    // Number() rounds monotonically and 2^52 is a double: |n| < 2^52 exactly when |v| is (no BigInt compares)
    const n = Number(v);
    if (n >= -TWO_52 && n < TWO_52) {
      this.pos = writeVarint(this.buf, this.pos, zigzag(n));
      return;
    }
    if (v < -BIG_TWO_63 || v >= BIG_TWO_63) throw new AvroWriteError(field, v);
    this.#halves(v); // 2^52 and beyond (a connection id always, CLOCK_MONOTONIC ns after 52 days up)
  }

  /**
   * A u64 (a kernel id) written as the int64 of the same bits: what
   * long(BigInt.asIntN(64, v)) writes, without making that BigInt.
   */
  u64(v: bigint, field: string): void {
    if (typeof v === 'bigint' && v >= 0n && v < BIG_TWO_64) {
      if (v < BIG_TWO_52) {
        this.pos = writeVarint(this.buf, this.pos, Number(v) * 2);
        return;
      }
      HALVES.setBigUint64(0, v, true);
      this.pos = writeLongHalves(this.buf, this.pos, HALVES.getUint32(0, true), HALVES.getUint32(4, true));
      return;
    }
    this.long(BigInt.asIntN(64, v), field); // not a u64: as asIntN makes it (a TypeError for a non-BigInt)
  }

  #halves(v: bigint): void {
    HALVES.setBigInt64(0, v, true);
    this.pos = writeLongHalves(this.buf, this.pos, HALVES.getUint32(0, true), HALVES.getUint32(4, true));
  }

  /** Avro int (int32). */
  int(v: number, field: string): void {
    if (v !== (v | 0)) throw new AvroWriteError(field, v);
    this.pos = writeVarint(this.buf, this.pos, zigzag(v));
  }

  bool(v: boolean, field: string): void {
    if (typeof v !== 'boolean') throw new AvroWriteError(field, v);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  /** Enum symbol by its index in `symbols` (a Map built once per enum). */
  enumOf(symbols: ReadonlyMap<string, number>, v: string, field: string): void {
    const i = symbols.get(v);
    if (i === undefined) throw new AvroWriteError(field, v);
    this.buf[this.pos++] = i * 2; // enums here have < 64 symbols: one varint byte
  }

  /** ["null", string]. */
  nullableString(v: string | null, field: string): void {
    if (v === null) {
      this.buf[this.pos++] = 0;
      return;
    }
    if (typeof v !== 'string') throw new AvroWriteError(field, v);
    this.buf[this.pos++] = 2;
    this.string(v, field);
  }

  /** ["null", int]. */
  nullableInt(v: number | null, field: string): void {
    if (v === null) {
      this.buf[this.pos++] = 0;
      return;
    }
    if (v !== (v | 0)) throw new AvroWriteError(field, v);
    this.buf[this.pos++] = 2;
    this.pos = writeVarint(this.buf, this.pos, zigzag(v));
  }

  /** ["null", long]. */
  nullableLong(v: bigint | number | null, field: string): void {
    if (v === null) {
      this.buf[this.pos++] = 0;
      return;
    }
    if (typeof v !== 'bigint' && typeof v !== 'number') throw new AvroWriteError(field, v);
    this.buf[this.pos++] = 2;
    this.long(v, field);
  }

  /** ["null", enum]. */
  nullableEnum(symbols: ReadonlyMap<string, number>, v: string | null, field: string): void {
    if (v === null) {
      this.buf[this.pos++] = 0;
      return;
    }
    const i = symbols.get(v);
    if (i === undefined) throw new AvroWriteError(field, v);
    this.buf[this.pos++] = 2;
    this.buf[this.pos++] = i * 2;
  }

  /**
   * Avro string. ASCII (nearly every value here: methods, paths, header
   * values, addresses) is copied char by char with its length known up front;
   * the first char >= 0x80 starts the string again through Buffer.write.
   */
  string(s: string, field: string): void {
    if (typeof s !== 'string') throw new AvroWriteError(field, s);
    const n = s.length;
    const buf = this.buf;
    const at = this.pos;
    const p = writeVarint(buf, at, n * 2);
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.#utf8(s, at);
        return;
      }
      buf[p + i] = c;
    }
    this.pos = p + n;
  }

  #utf8(s: string, at: number): void {
    const len = Buffer.byteLength(s, 'utf8');
    const p = writeVarint(this.buf, at, len * 2);
    if (p + len <= this.buf.length) this.buf.write(s, p, len, 'utf8');
    this.pos = p + len;
  }

  /** map<string>: one block of every entry, then the empty block (avsc writes the same). */
  stringMap(m: Readonly<Record<string, string>>, field: string): void {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new AvroWriteError(field, m);
    const keys = Object.keys(m);
    const n = keys.length;
    if (n !== 0) {
      this.pos = writeVarint(this.buf, this.pos, n * 2);
      for (let i = 0; i < n; i++) {
        const k = keys[i]!;
        this.string(k, field);
        this.string(m[k]!, field);
      }
    }
    this.buf[this.pos++] = 0;
  }

  /** Bytes written as they are (a pre-encoded envelope, constant bytes). */
  bytes(b: Uint8Array): void {
    this.#bytes(b);
  }

  #bytes(b: Uint8Array): void {
    if (this.pos + b.length <= this.buf.length) this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

/** Symbol -> index of an Avro enum, for AvroWriter.enumOf. */
export function enumIndex(symbols: readonly string[]): ReadonlyMap<string, number> {
  if (symbols.length > 63) throw new RangeError('AvroWriter.enumOf writes one varint byte: at most 63 symbols');
  return new Map(symbols.map((s, i) => [s, i]));
}
