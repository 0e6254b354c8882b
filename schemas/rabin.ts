/**
 * Schema identity per the Avro specification ("Schema Fingerprints" and
 * "Parsing Canonical Form for Schemas"): CRC-64-AVRO, a 64-bit Rabin
 * fingerprint, over the schema's Parsing Canonical Form (PCF).
 *
 * The single-object encoding carries this fingerprint, so readers in any
 * language identify our records only if both halves match the spec exactly;
 * test/unit/wire.test.ts pins them with the vectors of the Avro project's
 * share/test/data/schema-tests.txt.
 */

/** The Rabin polynomial's "empty" value from the spec. */
const EMPTY = 0xc15d213aa4d7a795n;
const MASK64 = 0xffffffffffffffffn;

const TABLE: bigint[] = (() => {
  const t: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & (-(fp & 1n) & MASK64));
    t.push(fp);
  }
  return t;
})();

/** CRC-64-AVRO of the bytes (UTF-8 for a string), as an unsigned 64-bit value. */
export function fingerprint64(data: string | Uint8Array): bigint {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fp = EMPTY;
  for (let i = 0; i < bytes.length; i++) {
    fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(bytes[i] as number)) & 0xffn)]!;
  }
  return fp;
}

/** The fingerprint as the 8 little-endian bytes that single-object encoding puts on the wire. */
export function fingerprintBytes(fp: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(fp & MASK64);
  return b;
}

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/**
 * Parsing Canonical Form of a schema given as parsed JSON (or JSON text).
 * Applies the spec's transformations: PRIMITIVES, FULLNAMES, STRIP, ORDER,
 * STRINGS, INTEGERS, WHITESPACE; a named type seen before becomes its full name.
 */
export function parsingCanonicalForm(schema: unknown): string {
  const root = (typeof schema === 'string' && /^\s*[[{"]/.test(schema) ? JSON.parse(schema) : schema) as Json;
  const seen = new Set<string>();
  return canon(root, '', seen);
}

function fullName(name: string, namespace: string): string {
  if (name.includes('.') || PRIMITIVES.has(name) || namespace === '') return name;
  return `${namespace}.${name}`;
}

function canon(s: Json, ns: string, seen: Set<string>): string {
  if (typeof s === 'string') {
    const n = fullName(s, ns);
    return JSON.stringify(n);
  }
  if (Array.isArray(s)) return `[${s.map((b) => canon(b, ns, seen)).join(',')}]`;
  if (s === null || typeof s !== 'object') throw new Error(`not a schema: ${JSON.stringify(s)}`);
  const type = s.type;
  if (typeof type !== 'string') return canon(type as Json, ns, seen); // {"type": {...}} or {"type": [...]}
  if (PRIMITIVES.has(type)) return JSON.stringify(type); // also drops logicalType and other attributes
  if (type === 'record' || type === 'error' || type === 'enum' || type === 'fixed') {
    const rawName = s.name;
    if (typeof rawName !== 'string') throw new Error(`named type without a name: ${JSON.stringify(s)}`);
    const ownNs = rawName.includes('.')
      ? rawName.slice(0, rawName.lastIndexOf('.'))
      : typeof s.namespace === 'string' ? s.namespace : ns;
    const name = rawName.includes('.') || ownNs === '' ? rawName : `${ownNs}.${rawName}`;
    if (seen.has(name)) return JSON.stringify(name);
    seen.add(name);
    const parts = [`"name":${JSON.stringify(name)}`, `"type":${JSON.stringify(type)}`];
    if (type === 'enum') {
      parts.push(`"symbols":${JSON.stringify(s.symbols)}`);
    } else if (type === 'fixed') {
      parts.push(`"size":${JSON.stringify(s.size)}`);
    } else {
      const fields = (s.fields as Json[]).map((f) => {
        const fo = f as { [k: string]: Json };
        return `{"name":${JSON.stringify(fo.name)},"type":${canon(fo.type as Json, ownNs, seen)}}`;
      });
      parts.push(`"fields":[${fields.join(',')}]`);
    }
    return `{${parts.join(',')}}`;
  }
  if (type === 'array') return `{"type":"array","items":${canon(s.items as Json, ns, seen)}}`;
  if (type === 'map') return `{"type":"map","values":${canon(s.values as Json, ns, seen)}}`;
  // A reference to a named type written as {"type": "Name"}.
  return JSON.stringify(fullName(type, ns));
}
