/**
 * ringflow.profiles.v1 -> OTLP profiles (opentelemetry-proto
 * profiles/v1development, the alpha signal) over gRPC.
 *
 * Encoded by hand, no .proto at run time: the OTel JS SDK has no profiles
 * exporter, the alpha proto changes between releases, and the few messages
 * needed are short. Field numbers are those of the proto the Collector we
 * build speaks (pdata v1.67.0 / Collector v0.161.0, ~opentelemetry-proto
 * v1.9): the request carries one ProfilesDictionary shared by every profile
 * in it, and every table's entry 0 is the zero value (the spec's rule: index
 * 0 means "unset"). Sent with @grpc/grpc-js's generic client (bytes in,
 * bytes out) to ProfilesService/Export.
 *
 *   ExportProfilesServiceRequest { 1 resource_profiles*, 2 dictionary }
 *   ResourceProfiles { 1 resource, 2 scope_profiles* }   one per (service.name, host.name)
 *   ScopeProfiles    { 1 scope {1 name, 2 version}, 2 profiles* }
 *   Profile  { 1 sample_type, 2 samples*, 3 time_unix_nano (fixed64), 4 duration_nano,
 *              5 period_type, 6 period, 11 attribute_indices* }   one per ringflow profile
 *   Sample   { 1 stack_index, 4 values* }                           one per stack
 *   ProfilesDictionary { 1 mapping_table*, 2 location_table*, 3 function_table*,
 *              5 string_table*, 6 attribute_table*, 7 stack_table* }
 *   Mapping  { 4 filename_strindex }   Location { 1 mapping_index, 2 address, 3 lines*, 4 attribute_indices* }
 *   Line     { 1 function_index, 2 line }   Function { 1 name_strindex, 2 system_name_strindex, 3 filename_strindex }
 *   Stack    { 1 location_indices* (leaf first) }   KeyValueAndUnit { 1 key_strindex, 2 value {1 string_value} }
 *
 * Values: ONCPU sample_type samples/count with period_type cpu/nanoseconds
 * and period 1e9/sample_hz (so a backend turns samples into CPU time);
 * OFFCPU sample_type off_cpu/nanoseconds. The task state is a profile
 * attribute (ringflow.profile.state), a frame's kind a location attribute
 * (profile.frame.type: kernel, native, jit), a location's address the file
 * offset (pprof's normalised address).
 */
import type { ProfileOut } from '../processor/profiles.ts';
import type { CreatedOtlpExporter, OtlpOptions } from './otlp.ts';
import { resolveEndpoint, resolveTimeoutMs } from './otlp.ts';
import { PbWriter } from '../common/protobuf.ts';

export const PROFILES_TOPIC = 'ringflow.profiles.v1';
export const DEFAULT_PROFILES_GROUP_ID = 'ringflow-exporter-profiles';
export const PROFILES_EXPORT_PATH = '/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export';

// ---- mapping -------------------------------------------------------------------

/** Interns values into a table whose entry 0 is the zero value. */
class Table<K> {
  readonly keys: K[];
  private readonly index = new Map<string, number>();
  constructor(zero: K) {
    this.keys = [zero];
    this.index.set(JSON.stringify(zero, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)), 0);
  }
  of(k: K): number {
    const id = JSON.stringify(k, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    let i = this.index.get(id);
    if (i === undefined) {
      i = this.keys.length;
      this.keys.push(k);
      this.index.set(id, i);
    }
    return i;
  }
}

const FRAME_TYPE: Record<string, string> = { KERNEL: 'kernel', USER: 'native', JIT: 'jit' };

/**
 * Profiles -> one ExportProfilesServiceRequest (bytes). Pure. One
 * ResourceProfiles per (service, host), in first-seen order; `resource` adds
 * attributes every Resource carries (OTEL_RESOURCE_ATTRIBUTES), under ours.
 */
export function toProfilesRequest(profiles: readonly ProfileOut[], resource: Readonly<Record<string, string>> = {}): Buffer {
  const strings = new Table<string>('');
  const s = (x: string) => strings.of(x);
  const mappings = new Table<number>(0); // filename strindex
  const functions = new Table<[number, number]>([0, 0]); // name, filename
  const locations = new Table<[number, string, number, number, number]>([0, '0', 0, 0, 0]); // mapping, address, function, line, attribute
  const attributes = new Table<[number, string]>([0, '']);
  const stacks = new Table<number[]>([]);
  const resources = new Map<string, { service: string; host: string; profiles: PbWriter[] }>();
  for (const p of profiles) {
    const rk = JSON.stringify([p.service, p.host]);
    let r = resources.get(rk);
    if (!r) resources.set(rk, (r = { service: p.service, host: p.host, profiles: [] }));
    const locOf = p.frames.map((f) => {
      const fnIdx = functions.of([s(f.function), f.file ? s(f.file) : 0]);
      const mapIdx = f.module === '' ? 0 : mappings.of(s(f.module));
      const attr = attributes.of([s('profile.frame.type'), FRAME_TYPE[f.kind] ?? 'native']);
      return locations.of([mapIdx, String(f.offset), fnIdx, f.line ?? 0, attr]);
    });
    const w = new PbWriter();
    const oncpu = p.kind === 'ONCPU';
    w.message(1, new PbWriter().int(1, s(oncpu ? 'samples' : 'off_cpu')).int(2, s(oncpu ? 'count' : 'nanoseconds')));
    for (const st of p.stacks) {
      const stackIdx = stacks.of(st.frames.map((i) => locOf[i]!));
      w.message(2, new PbWriter().int(1, stackIdx).packed(4, [BigInt(st.value)]), true);
    }
    w.fixed64(3, BigInt(p.window_start_ns));
    w.int(4, BigInt(p.window_end_ns) - BigInt(p.window_start_ns));
    if (oncpu && p.sample_hz > 0) {
      w.message(5, new PbWriter().int(1, s('cpu')).int(2, s('nanoseconds')));
      w.int(6, Math.round(1e9 / p.sample_hz));
    }
    w.packed(11, [attributes.of([s('ringflow.profile.state'), p.state])]);
    r.profiles.push(w);
  }
  const req = new PbWriter();
  for (const r of resources.values()) {
    const res = new PbWriter();
    const attrs: [string, string][] = [...Object.entries(resource).filter(([k]) => k !== 'service.name' && k !== 'host.name'), ['service.name', r.service], ['host.name', r.host]];
    for (const [k, v] of attrs) res.message(1, new PbWriter().string(1, k).message(2, new PbWriter().string(1, v, true), true));
    const scope = new PbWriter().message(1, new PbWriter().string(1, 'ringflow'));
    for (const p of r.profiles) scope.message(2, p, true);
    req.message(1, new PbWriter().message(1, res).message(2, scope, true), true);
  }
  const dict = new PbWriter();
  for (const m of mappings.keys) dict.message(1, new PbWriter().int(4, m), true);
  for (const [mapIdx, address, fnIdx, line, attr] of locations.keys) {
    const loc = new PbWriter().int(1, mapIdx).int(2, BigInt(address));
    if (fnIdx !== 0) loc.message(3, new PbWriter().int(1, fnIdx).int(2, line), true);
    loc.packed(4, attr === 0 ? [] : [attr]);
    dict.message(2, loc, true);
  }
  for (const [name, file] of functions.keys) dict.message(3, new PbWriter().int(1, name).int(2, name).int(3, file), true);
  for (const x of strings.keys) dict.string(5, x, true);
  for (const [key, value] of attributes.keys) dict.message(6, key === 0 ? new PbWriter() : new PbWriter().int(1, key).message(2, new PbWriter().string(1, value, true), true), true);
  for (const st of stacks.keys) dict.message(7, new PbWriter().packed(1, st), true);
  req.message(2, dict, true);
  return req.finish();
}

/**
 * A gRPC server refuses a message over its limit (the Collector's OTLP
 * receiver: 4 MiB by default) with RESOURCE_EXHAUSTED, which we retry: a
 * request that is too large would be retried forever. Requests stay under
 * this many bytes.
 */
export const MAX_REQUEST_BYTES = 2 * 1024 * 1024;

/**
 * Profiles -> requests of at most maxBytes each (halving the profiles until
 * they fit; a single profile over it goes alone: a profile is bounded by
 * its top-N, so that means an extraordinary frame table). items = profiles in it.
 */
export function toProfilesRequests(profiles: readonly ProfileOut[], resource: Readonly<Record<string, string>> = {}, maxBytes = MAX_REQUEST_BYTES): { items: number; payload: Buffer }[] {
  if (profiles.length === 0) return [];
  const payload = toProfilesRequest(profiles, resource);
  if (payload.length <= maxBytes || profiles.length === 1) return [{ items: profiles.length, payload }];
  const half = Math.ceil(profiles.length / 2);
  return [...toProfilesRequests(profiles.slice(0, half), resource, maxBytes), ...toProfilesRequests(profiles.slice(half), resource, maxBytes)];
}

// ---- the response ---------------------------------------------------------------

/**
 * ExportProfilesServiceResponse { 1 partial_success { 1 rejected_profiles
 * (int64), 2 error_message } }: what the backend refused of an accepted
 * request. Pure; null for a full success or bytes it cannot read (a reply
 * we cannot parse is not a reason to resend what was accepted).
 */
export function partialSuccessOf(b: Buffer): { rejected: number; message: string } | null {
  try {
    const ps = readFields(b).find((f) => f.n === 1 && Buffer.isBuffer(f.v))?.v as Buffer | undefined;
    if (!ps) return null;
    const fs = readFields(ps);
    const rejected = Number((fs.find((f) => f.n === 1 && typeof f.v === 'bigint')?.v as bigint | undefined) ?? 0n);
    const message = (fs.find((f) => f.n === 2 && Buffer.isBuffer(f.v))?.v as Buffer | undefined)?.toString('utf8') ?? '';
    return rejected === 0 && message === '' ? null : { rejected, message };
  } catch {
    return null;
  }
}

/** The fields of one message: varints (and fixed64) as BigInt, length-delimited as bytes. Throws on a truncated message. */
function readFields(b: Buffer): { n: number; v: bigint | Buffer }[] {
  const out: { n: number; v: bigint | Buffer }[] = [];
  let i = 0;
  const varint = (): bigint => {
    let x = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= b.length || shift > 63n) throw new RangeError('truncated varint');
      const c = b[i++]!;
      x |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return x;
    }
  };
  while (i < b.length) {
    const tag = varint();
    const n = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) out.push({ n, v: varint() });
    else if (wire === 1 || wire === 5) {
      const w = wire === 1 ? 8 : 4;
      if (i + w > b.length) throw new RangeError('truncated fixed');
      out.push({ n, v: wire === 1 ? b.readBigUInt64LE(i) : BigInt(b.readUInt32LE(i)) });
      i += w;
    } else if (wire === 2) {
      const len = Number(varint());
      if (i + len > b.length) throw new RangeError('truncated bytes');
      out.push({ n, v: b.subarray(i, i + len) });
      i += len;
    } else throw new RangeError(`wire type ${wire}`);
  }
  return out;
}

// ---- the gRPC exporter -----------------------------------------------------------

/** An OtlpExporterLike of request bytes: one unary ProfilesService/Export call per request. */
export async function createOtlpProfilesExporter(opts: OtlpOptions = {}): Promise<CreatedOtlpExporter<Buffer>> {
  const grpc = await import('@grpc/grpc-js');
  const { ExportResultCode } = await import('@opentelemetry/core');
  const { diag } = await import('@opentelemetry/api');
  const endpoint = resolveEndpoint(opts, 'PROFILES');
  const { ms: timeoutMs, warnings } = resolveTimeoutMs(opts, 'PROFILES');
  const target = endpoint.url.replace(/^https?:\/\//i, '').replace(/\/+$/, '');
  const client = new grpc.Client(target, endpoint.insecure ? grpc.credentials.createInsecure() : grpc.credentials.createSsl());
  const headers = { ...parseHeaders(process.env.OTEL_EXPORTER_OTLP_HEADERS), ...parseHeaders(process.env.OTEL_EXPORTER_OTLP_PROFILES_HEADERS), ...opts.headers };
  const id = (b: Buffer): Buffer => b;
  return {
    endpoint,
    timeoutMs,
    warnings,
    exporter: {
      export(data, done) {
        const md = new grpc.Metadata();
        for (const [k, v] of Object.entries(headers)) md.set(k, v);
        client.makeUnaryRequest(PROFILES_EXPORT_PATH, id, id, data, md, { deadline: Date.now() + timeoutMs }, (err, reply) => {
          if (err) return done({ code: ExportResultCode.FAILED, error: err });
          // a partial success goes where the SDK exporters put theirs (exporter/otlp.ts exportOnce reads it
          // off the diag logger), so the delivery path counts and logs refused profiles as it does points
          const ps = reply ? partialSuccessOf(reply) : null;
          if (ps) diag.warn('Received Partial Success response:', JSON.stringify({ rejectedDataPoints: ps.rejected, errorMessage: ps.message }));
          done({ code: ExportResultCode.SUCCESS });
        });
      },
      async shutdown() {
        client.close();
      },
    },
  };
}

/** OTEL_EXPORTER_OTLP_HEADERS: k=v pairs, comma-separated, URL-encoded. */
function parseHeaders(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (raw ?? '').split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    try {
      out[decodeURIComponent(part.slice(0, i).trim()).toLowerCase()] = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      // a malformed pair is skipped, as the SDK does
    }
  }
  return out;
}
