/**
 * The protobuf wire format, as much as profile.proto needs (hand-written: no
 * protobuf library is a dependency, and this is ~60 lines):
 *
 *   message := (tag value)*        tag := varint(field << 3 | wire type)
 *   wire type 0: varint            int64/uint64, two's complement for negatives (10 bytes)
 *   wire type 2: varint(len) bytes strings, embedded messages, packed repeated varints
 *
 * Zero scalars are written anyway only where a caller asks (proto3 omits
 * them; a reader treats absent as 0 either way).
 */
const MASK64 = (1n << 64n) - 1n;

export class ProtoWriter {
  private chunks: Buffer[] = [];
  private cur: number[] = [];

  private flushBytes(): void {
    if (this.cur.length > 0) {
      this.chunks.push(Buffer.from(this.cur));
      this.cur = [];
    }
  }

  /** Unsigned LEB128 of v's low 64 bits (a negative int64 is its two's complement). */
  varint(v: bigint | number): this {
    let x = BigInt(v) & MASK64;
    if (x < 0x80n) {
      this.cur.push(Number(x));
      return this;
    }
    while (x >= 0x80n) {
      this.cur.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.cur.push(Number(x));
    return this;
  }

  private tag(field: number, wire: 0 | 2): this {
    return this.varint((field << 3) | wire);
  }

  /** A varint field; 0 left out (the proto3 default) */
  uint(field: number, v: bigint | number): this {
    if (BigInt(v) === 0n) return this;
    return this.tag(field, 0).varint(v);
  }

  bool(field: number, v: boolean): this {
    return v ? this.uint(field, 1) : this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    this.flushBytes();
    this.chunks.push(Buffer.from(b));
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const w = new ProtoWriter();
    build(w);
    return this.bytes(field, w.finish());
  }

  /** repeated varint, packed (proto3's default encoding for it); nothing when empty */
  packed(field: number, vs: readonly (bigint | number)[]): this {
    if (vs.length === 0) return this;
    const w = new ProtoWriter();
    for (const v of vs) w.varint(v);
    return this.bytes(field, w.finish());
  }

  finish(): Buffer {
    this.flushBytes();
    return Buffer.concat(this.chunks);
  }
}
