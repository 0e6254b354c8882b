/**
 * kafkajs's protocol Encoder, cheaper per record, same bytes.
 *
 * kafkajs 2.2.4 encodes every record of a produce request with a new
 * Encoder (src/protocol/recordBatch/record/v0) and writes each varint of it
 * through `Buffer.from([...bytes])` (a JS array and a Buffer per varint, 4-5
 * per record), each varlong through BigInt-backed Long objects, and grows
 * its buffers with zero-filled `Buffer.alloc` plus a copy. In the live
 * collector (test/bench/l7-live-profile.ts under --cpu-prof) kafkajs's
 * request encoding and the Buffers it made were ~21% of the main thread;
 * an encode of 2000 300-byte records went from ~4.2-6.8 to ~2.7-3.1 µs of
 * CPU per record with the methods below (one batch, uncompressed, same run).
 *
 * Replaced, on the class kafkajs itself uses (so no load order matters):
 * - writeUVarInt: the LEB128 bytes written in place (the same loop, the same
 *   ToInt32/ToUint32 conversions, so any input gives the same bytes);
 * - writeVarLong / sizeOfVarLong: a number |v| < 2^52 zig-zagged in plain
 *   arithmetic (exact below 2^53); anything else (Long, bigint, string,
 *   larger or non-integer numbers) goes to kafkajs's own code;
 * - ensureAvailable: growth with Buffer.allocUnsafe (from Node's pool below
 *   4 KiB) and to at least INITIAL_BYTES: an Encoder never exposes bytes past
 *   `offset` (its `buffer` is `buf.slice(0, offset)`, and every write fills
 *   exactly the bytes it advances over), so zero-filling bought nothing;
 * - the first buffer: kafkajs's constructor allocates a zero-filled
 *   `Buffer.alloc(Encoder.nextPowerOfTwo(initialSize))`, 512 bytes outside the
 *   pool, one per record (3.5% of the live collector after the changes above).
 *   Encoder.nextPowerOfTwo is read at each call and is used by nothing else
 *   (its only other caller was ensureAvailable, replaced here; the test
 *   checks kafkajs's source for this), so it answers 0: the constructor's
 *   buffer is empty and the first write takes INITIAL_BYTES from the pool.
 *   No kafkajs caller passes an initialSize.
 * test/unit/kafkajs-encoder.test.ts holds the bytes equal to kafkajs's, per
 * method on random inputs and for whole record batches.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface EncoderInstance {
  buf: Buffer;
  readonly buffer: Buffer;
  offset: number;
  ensureAvailable(length: number): void;
  writeUVarInt(value: number): EncoderInstance;
  writeVarLong(value: unknown): EncoderInstance;
}
export interface EncoderClass {
  new (initialSize?: number): EncoderInstance & { writeVarInt(v: number): EncoderInstance; writeVarIntBytes(v: unknown): EncoderInstance };
  nextPowerOfTwo(value: number): number;
  sizeOfVarLong(value: unknown): number;
  prototype: EncoderInstance;
}

/** kafkajs's Encoder: the module its producer requires (one resolved path, one module instance). */
export const Encoder = require('kafkajs/src/protocol/encoder.js') as EncoderClass;

/** kafkajs's own methods, for the equivalence tests and restore(). */
export const original = {
  writeUVarInt: Encoder.prototype.writeUVarInt,
  writeVarLong: Encoder.prototype.writeVarLong,
  ensureAvailable: Encoder.prototype.ensureAvailable,
  sizeOfVarLong: Encoder.sizeOfVarLong,
  nextPowerOfTwo: Encoder.nextPowerOfTwo,
};

/** The size kafkajs gives a new Encoder's buffer (511 rounded up): the first write's allocation here. */
export const INITIAL_BYTES = 512;

/** kafkajs's nextPowerOfTwo: the power of two above `value` (for a power of two, the next one). */
const nextPowerOfTwo = (value: number) => 1 << (31 - Math.clz32(value) + 1);

/** Below this magnitude a varlong's zig-zag value (at most 2^53 - 1) is exact in a double. */
const FAST_LONG = 2 ** 52;

function fastLong(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value < FAST_LONG && value > -FAST_LONG;
}

function writeUVarInt(this: EncoderInstance, value: number): EncoderInstance {
  this.ensureAvailable(5); // a uint32 after the first step: at most 5 bytes
  const b = this.buf;
  let o = this.offset;
  while ((value & 0xffffff80) !== 0) {
    b[o++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  b[o++] = value & 0x7f;
  this.offset = o;
  return this;
}

function writeVarLong(this: EncoderInstance, value: unknown): EncoderInstance {
  if (!fastLong(value)) return original.writeVarLong.call(this, value);
  let z = value >= 0 ? value * 2 : -value * 2 - 1;
  this.ensureAvailable(8); // z < 2^53: at most 8 bytes of 7 bits
  const b = this.buf;
  let o = this.offset;
  while (z >= 0x80) {
    b[o++] = (z % 0x80) | 0x80;
    z = Math.floor(z / 0x80);
  }
  b[o++] = z;
  this.offset = o;
  return this;
}

function sizeOfVarLong(this: unknown, value: unknown): number {
  if (!fastLong(value)) return original.sizeOfVarLong.call(this, value);
  let z = value >= 0 ? value * 2 : -value * 2 - 1;
  let bytes = 1;
  while (z >= 0x80) {
    bytes++;
    z = Math.floor(z / 0x80);
  }
  return bytes;
}

/** What kafkajs's constructor sizes its first buffer with, now: nothing (see the top of this file). */
function emptyFirstBuffer(): number {
  return 0;
}

function ensureAvailable(this: EncoderInstance, length: number): void {
  if (this.offset + length > this.buf.length) {
    const grown = Buffer.allocUnsafe(Math.max(INITIAL_BYTES, nextPowerOfTwo(this.offset + length)));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  }
}

/** Puts the cheaper methods on kafkajs's Encoder (idempotent); returns a function that puts kafkajs's back (tests). */
export function patchEncoder(): () => void {
  Encoder.prototype.writeUVarInt = writeUVarInt;
  Encoder.prototype.writeVarLong = writeVarLong;
  Encoder.prototype.ensureAvailable = ensureAvailable;
  Encoder.sizeOfVarLong = sizeOfVarLong;
  Encoder.nextPowerOfTwo = emptyFirstBuffer;
  return () => {
    Encoder.prototype.writeUVarInt = original.writeUVarInt;
    Encoder.prototype.writeVarLong = original.writeVarLong;
    Encoder.prototype.ensureAvailable = original.ensureAvailable;
    Encoder.sizeOfVarLong = original.sizeOfVarLong;
    Encoder.nextPowerOfTwo = original.nextPowerOfTwo;
  };
}

/** Whether kafkajs's Encoder has the cheaper methods now (checked by a test). */
export function encoderPatched(): boolean {
  return Encoder.prototype.writeUVarInt === writeUVarInt && Encoder.sizeOfVarLong === sizeOfVarLong && Encoder.nextPowerOfTwo === emptyFirstBuffer;
}

patchEncoder();
