/**
 * One decoded record as one JSON line, for `--stdout` and `tail`:
 * {"event": "<topic>", ...fields in schema order}. BigInt longs print as JSON
 * numbers when they are safe integers and as strings otherwise, so no reader
 * silently loses precision; enums are already symbols in decoded values.
 */
import type { RegisteredSchema } from '../../schemas/registry.ts';

const MAX = BigInt(Number.MAX_SAFE_INTEGER);
const MIN = BigInt(Number.MIN_SAFE_INTEGER);

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v <= MAX && v >= MIN ? Number(v) : v.toString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  return v;
}

/** No trailing newline. */
export function toJsonLine(schema: RegisteredSchema, value: Readonly<Record<string, unknown>>): string {
  return JSON.stringify({ event: schema.topic, ...value }, replacer);
}
