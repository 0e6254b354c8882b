/**
 * The protobuf wire format, as much as ringflow's hand-written encoders need
 * (pprof's profile.proto in exporter/profiles/pprof.ts, OTLP profiles in
 * exporter/otlp-profiles.ts). Hand-written because no protobuf library is a
 * dependency and this is ~80 lines; one writer so that both encode a varint,
 * a negative int64 or an empty field the same way.
 *
 *   message := (tag value)*        tag := varint(field << 3 | wire type)
 *   wire type 0: varint            int32/int64/uint32/uint64/enum/bool; negatives as ten bytes of two's complement
 *   wire type 1: 8 bytes LE        fixed64
 *   wire type 2: varint(len) bytes strings, bytes, embedded messages, packed repeated varints
 *
 * Zero scalars, empty strings and empty messages are left out (proto3's
 * defaults: a reader treats absent as zero) unless the caller says `always`:
 * an entry of a repeated field is there even when empty (a string table's
 * "" at index 0, an empty Sample), or the indices after it shift.
 */
export class PbWriter {
  private chunks: Buffer[] = [];
  private len = 0;
  /** bytes of varints not yet in chunks: most of a message is small varints */
  private cur: number[] = [];

  private flushBytes(): void {
    if (this.cur.length > 0) {
      this.chunks.push(Buffer.from(this.cur));
      this.len += this.cur.length;
      this.cur = [];
    }
  }

  private push(b: Uint8Array): void {
    this.flushBytes();
    this.chunks.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.len += b.byteLength;
  }

  /** A bare varint (no tag): unsigned LEB128 of v's low 64 bits, so a negative int64 is its two's complement. */
  varint(v: bigint | number): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.cur.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.cur.push(Number(x));
    return this;
  }

  private tag(field: number, wire: 0 | 1 | 2): this {
    return this.varint((field << 3) | wire);
  }

  /** A varint field (int32/int64/uint32/uint64/enum); zero left out. */
  int(field: number, v: bigint | number): this {
    if (v === 0 || v === 0n) return this;
    return this.tag(field, 0).varint(v);
  }

  bool(field: number, v: boolean): this {
    return v ? this.int(field, 1) : this;
  }

  /** A fixed64 field, little-endian; zero left out. */
  fixed64(field: number, v: bigint): this {
    if (v === 0n) return this;
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.push(b);
    return this;
  }

  /** A length-delimited field, written even when empty. */
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.byteLength);
    this.push(b);
    return this;
  }

  /** A string; `always` writes it even when empty (repeated string_table entries). */
  string(field: number, s: string, always = false): this {
    if (s === '' && !always) return this;
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }

  /** An embedded message, given as a writer or built in place; `always` writes it even when empty (repeated entries). */
  message(field: number, m: PbWriter | ((w: PbWriter) => void), always = false): this {
    let w: PbWriter;
    if (typeof m === 'function') m((w = new PbWriter()));
    else w = m;
    const body = w.finish();
    if (body.length === 0 && !always) return this;
    return this.bytes(field, body);
  }

  /** A packed repeated varint field (proto3's default encoding for it); nothing when empty. */
  packed(field: number, vs: readonly (bigint | number)[]): this {
    if (vs.length === 0) return this;
    const inner = new PbWriter();
    for (const v of vs) inner.varint(v);
    return this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    this.flushBytes();
    return Buffer.concat(this.chunks, this.len);
  }
}
