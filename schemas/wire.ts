/**
 * How a record's schema travels with its Avro body on a Kafka topic.
 *
 * Avro single-object encoding (Avro spec, "Single-object encoding"):
 *
 *   message     = marker fingerprint body
 *   marker      = %xC3 %x01                      ; 2 bytes, format version 1
 *   fingerprint = 8OCTET                         ; CRC-64-AVRO of the writer schema's
 *                                                ; Parsing Canonical Form, little-endian
 *   body        = *OCTET                         ; Avro binary encoding of the record
 *
 * A Confluent Schema Registry framing (magic 0x00, 4-byte big-endian schema id)
 * fits the same WireFormat interface; it is not implemented here.
 */
import type avro from 'avsc';
import { schemaRegistry, type HistorySchema, type RegisteredSchema, type SchemaRegistry } from './registry.ts';

export type WireErrorCode = 'BAD_MAGIC' | 'UNKNOWN_SCHEMA' | 'TRUNCATED' | 'BAD_BODY';

export class WireError extends Error {
  readonly code: WireErrorCode;
  /** Retrying the same bytes cannot succeed. */
  readonly retriable = false;
  constructor(code: WireErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WireError';
    this.code = code;
  }
}

export interface Framed {
  readonly schema: RegisteredSchema;
  /** The Avro body: a view into the input, not a copy. */
  readonly body: Buffer;
}

export interface WireFormat {
  readonly name: string;
  /** Bytes the header for this schema takes. */
  headerSize(schema: RegisteredSchema): number;
  /** Writes the header at offset; returns the offset just past it. */
  writeHeader(schema: RegisteredSchema, buf: Buffer, offset: number): number;
  /** Splits a framed message; throws WireError (BAD_MAGIC, UNKNOWN_SCHEMA, TRUNCATED). */
  decode(buf: Buffer): Framed;
}

export const SINGLE_OBJECT_MAGIC = Buffer.from([0xc3, 0x01]);
const SINGLE_OBJECT_HEADER = 10;

export class SingleObjectFormat implements WireFormat {
  readonly name = 'avro-single-object';
  readonly #registry: SchemaRegistry;

  constructor(registry: SchemaRegistry = schemaRegistry()) {
    this.#registry = registry;
  }

  headerSize(_schema: RegisteredSchema): number {
    return SINGLE_OBJECT_HEADER;
  }

  writeHeader(schema: RegisteredSchema, buf: Buffer, offset: number): number {
    if (offset + SINGLE_OBJECT_HEADER > buf.length) throw new RangeError('buffer too small for the single-object header');
    buf[offset] = 0xc3;
    buf[offset + 1] = 0x01;
    schema.fingerprintBytes.copy(buf, offset + 2);
    return offset + SINGLE_OBJECT_HEADER;
  }

  decode(buf: Buffer): Framed {
    if (buf.length < 2) throw new WireError('TRUNCATED', `single-object message of ${buf.length} bytes`);
    if (buf[0] !== 0xc3 || buf[1] !== 0x01) {
      throw new WireError('BAD_MAGIC', `not an Avro single-object message (starts ${buf.subarray(0, 2).toString('hex')})`);
    }
    if (buf.length < SINGLE_OBJECT_HEADER) throw new WireError('TRUNCATED', `single-object header cut at ${buf.length} bytes`);
    const fp = buf.readBigUInt64LE(2);
    const schema = this.#registry.byFingerprint(fp);
    if (!schema) throw new WireError('UNKNOWN_SCHEMA', `no schema with fingerprint ${fp.toString(16).padStart(16, '0')}`);
    return { schema, body: buf.subarray(SINGLE_OBJECT_HEADER) };
  }
}

let defaultFormat: SingleObjectFormat | undefined;

/** Single-object encoding over the default registry. */
export function singleObjectFormat(): SingleObjectFormat {
  defaultFormat ??= new SingleObjectFormat();
  return defaultFormat;
}

/** Avro body -> value with the writer's own type; any avsc failure becomes WireError BAD_BODY or TRUNCATED. */
function decodeBody(type: avro.Type, body: Buffer, resolver?: avro.Resolver): unknown {
  try {
    return type.fromBuffer(body, resolver);
  } catch (err) {
    const truncated = err instanceof Error && /truncated/.test(err.message);
    throw new WireError(truncated ? 'TRUNCATED' : 'BAD_BODY', `cannot decode ${type.name ?? 'record'}: ${(err as Error).message}`, { cause: err });
  }
}

export interface Decoded {
  readonly schema: RegisteredSchema;
  readonly value: Record<string, unknown>;
}

/**
 * Header and body are written into this buffer, then copied out once: avsc's
 * toBuffer allocates a zero-filled buffer per value and framing it copied it
 * again (with the L7 collector's ~45 k messages/s, ~1/10 of its CPU). Grows
 * to the largest record seen.
 */
let scratch = Buffer.allocUnsafe(4096);

/** Value -> framed bytes (header + Avro body), via avsc: for records built in JS such as collector.stats. */
export function encodeRecord(schema: RegisteredSchema, value: unknown, format: WireFormat = singleObjectFormat()): Buffer {
  let end = schema.type.encode(value, scratch, format.writeHeader(schema, scratch, 0));
  if (end < 0) {
    // avsc returns minus the bytes it lacked
    scratch = Buffer.allocUnsafe(2 * (scratch.length - end));
    end = schema.type.encode(value, scratch, format.writeHeader(schema, scratch, 0));
  }
  return Buffer.from(scratch.subarray(0, end));
}

/** Framed bytes -> writer schema and the value decoded with it (longs as BigInt, enums as symbols). */
export function decodeRecord(buf: Buffer, format: WireFormat = singleObjectFormat()): Decoded {
  const { schema, body } = format.decode(buf);
  return { schema, value: decodeBody(schema.type, body) as Record<string, unknown> };
}

export interface Resolution {
  readonly reader: avro.Type;
  readonly writer: avro.Type;
  /** Decodes a body written with the writer schema into the reader's shape. */
  decode(body: Buffer): Record<string, unknown>;
}

const resolutions = new WeakMap<avro.Type, WeakMap<avro.Type, Resolution>>();

function typeOf(s: avro.Type | RegisteredSchema): avro.Type {
  return 'canonical' in s && 'topic' in s ? s.type : s;
}

/**
 * Reader-side schema evolution (Avro spec, "Schema Resolution"): fields the
 * writer lacks take the reader's default, unknown enum symbols the reader's
 * enum default. Both types must come from registry.parseType (BigInt longs).
 * Cached per (reader, writer) pair.
 */
export function resolve(reader: avro.Type | RegisteredSchema, writer: avro.Type | RegisteredSchema): Resolution {
  const r = typeOf(reader);
  const w = typeOf(writer);
  let byWriter = resolutions.get(r);
  if (!byWriter) resolutions.set(r, byWriter = new WeakMap());
  let res = byWriter.get(w);
  if (!res) {
    const resolver = r.createResolver(w);
    res = { reader: r, writer: w, decode: (body: Buffer) => decodeBody(r, body, resolver) as Record<string, unknown> };
    byWriter.set(w, res);
  }
  return res;
}

export interface DecodedCurrent extends Decoded {
  /** The writer schema the header names: `schema` itself, or a history version of it. */
  readonly writer: RegisteredSchema;
}

/**
 * Framed bytes -> the CURRENT schema and the value in its shape. A record of
 * a current schema decodes as decodeRecord does (no resolution); one written
 * with an older version (schemas/history/) is resolved into the current
 * shape, fields it lacks taking their defaults (resolvers cached).
 */
export function decodeCurrent(buf: Buffer, format: WireFormat = singleObjectFormat()): DecodedCurrent {
  const { schema, body } = format.decode(buf);
  const current = (schema as Partial<HistorySchema>).current;
  if (current === undefined) return { schema, writer: schema, value: decodeBody(schema.type, body) as Record<string, unknown> };
  return { schema: current, writer: schema, value: resolve(current, schema).decode(body) };
}

/** Framed bytes -> value in the reader's shape, whatever registered writer schema the header names. */
export function decodeAs(reader: avro.Type | RegisteredSchema, buf: Buffer, format: WireFormat = singleObjectFormat()): Decoded {
  const { schema, body } = format.decode(buf);
  return { schema, value: resolve(reader, schema).decode(body) };
}
