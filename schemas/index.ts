/** Avro schemas of every topic, their fingerprints, and the wire format. */
export { schemaRegistry, loadRegistry, createRegistry, registerSchema, parseType, bigLong, SCHEMA_DIR } from './registry.ts';
export type { SchemaRegistry, RegisteredSchema, RecordSchema, FieldSchema, CAnnotation, CKind, KeyKind, RingflowAttr } from './registry.ts';
export { SingleObjectFormat, singleObjectFormat, WireError, decodeRecord, decodeAs, encodeRecord, resolve, SINGLE_OBJECT_MAGIC } from './wire.ts';
export type { WireFormat, WireErrorCode, Framed, Decoded, Resolution } from './wire.ts';
export { fingerprint64, fingerprintBytes, parsingCanonicalForm } from './rabin.ts';
