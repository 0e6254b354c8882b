/** Avro schemas of every topic, their fingerprints, and the wire format. */
export { schemaRegistry, loadRegistry, createRegistry, registerSchema, registerHistory, isHistory, parseType, bigLong, SCHEMA_DIR } from './registry.ts';
export type { SchemaRegistry, RegisteredSchema, HistorySchema, RecordSchema, FieldSchema, CAnnotation, CKind, TrailerAnnotation, KeyKind, RingflowAttr } from './registry.ts';
export { SingleObjectFormat, singleObjectFormat, WireError, decodeRecord, decodeCurrent, decodeAs, encodeRecord, resolve, SINGLE_OBJECT_MAGIC } from './wire.ts';
export type { WireFormat, WireErrorCode, Framed, Decoded, DecodedCurrent, Resolution } from './wire.ts';
export { fingerprint64, fingerprintBytes, parsingCanonicalForm } from './rabin.ts';
