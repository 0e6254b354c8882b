/**
 * A pprof profile (github.com/google/pprof proto/profile.proto), gzipped,
 * as `go tool pprof` reads it, from ringflow.profile.stacks.v1 records.
 *
 *   Profile { sample_type=1 sample=2 mapping=3 location=4 function=5 string_table=6
 *             time_nanos=9 duration_nanos=10 period_type=11 period=12 comment=13 default_sample_type=14 }
 *   ValueType { type=1 unit=2 }                       (string table indexes)
 *   Sample   { location_id=1 (packed, leaf first) value=2 (packed) label=3 }
 *   Label    { key=1 str=2 num=3 num_unit=4 }
 *   Mapping  { id=1 memory_start=2 memory_limit=3 file_offset=4 filename=5 build_id=6 has_functions=7 }
 *   Location { id=1 mapping_id=2 address=3 line=4 }  Line { function_id=1 line=2 }
 *   Function { id=1 name=2 system_name=3 filename=4 }
 *
 * Sample types: on-CPU records give samples/count and cpu/nanoseconds (a
 * sample is 1e9/hz ns, the period), off-CPU records offcpu/nanoseconds; a
 * profile with both has all three and each sample zeros in the others'.
 * Labels: comm, pid (the tgid), tid when counted per thread, state.
 *
 * Mappings: the records carry a user frame's file and file offset but not
 * the mapping's range or build id; `mappingOf` (the CLI reads them from
 * /proc/PID/maps and the symboliser while the process lives) supplies them.
 * Without it a mapping is its file alone. Kernel frames share one mapping
 * ([kernel.kallsyms]), JIT frames theirs. Every location is symbolised
 * already (has_functions), so pprof never tries to symbolise it again; a
 * frame we could not name gets a function named as in folded output
 * ("[libc.so.6]") so that `-top` still says where the time went. Stacks the
 * kernel could not keep whole end (at the root) in a pseudo-frame saying so.
 */
import { gzipSync } from 'node:zlib';
import { PbWriter } from '../../common/protobuf.ts';
import { frameName, type ProfileStackRecord } from './stacks.ts';

export interface MappingInfo {
  start: bigint;
  limit: bigint;
  /** file offset of `start` */
  offset: bigint;
  buildId: string;
}

export interface PprofOptions {
  /** CLOCK_REALTIME ns of the profile's start */
  timeNanos: bigint;
  durationNanos: bigint;
  /** a user frame's mapping in process tgid, when known */
  mappingOf?: (tgid: number, module: string, address: bigint) => MappingInfo | undefined;
  comments?: string[];
}

const U64 = (v: bigint) => BigInt.asUintN(64, v);

/** The uncompressed profile.proto message. */
export function encodePprofMessage(records: readonly ProfileStackRecord[], opts: PprofOptions): Buffer {
  const strings = new Map<string, number>([['', 0]]);
  const str = (s: string) => {
    let i = strings.get(s);
    if (i === undefined) strings.set(s, (i = strings.size));
    return i;
  };
  const on = records.some((r) => r.kind === 'ONCPU');
  const off = records.some((r) => r.kind === 'OFFCPU');
  const hz = records.find((r) => r.kind === 'ONCPU' && r.sample_hz > 0)?.sample_hz ?? 0;
  const period = hz > 0 ? BigInt(Math.round(1e9 / hz)) : 0n;
  const types: [string, string][] = [];
  if (on || !off) types.push(['samples', 'count'], ['cpu', 'nanoseconds']);
  if (off) types.push(['offcpu', 'nanoseconds']);

  type Mapping = { id: number; start: bigint; limit: bigint; offset: bigint; file: string; buildId: string };
  const mappings = new Map<string, Mapping>();
  const mappingFor = (key: string, m: Omit<Mapping, 'id'>): number => {
    let e = mappings.get(key);
    if (!e) mappings.set(key, (e = { id: mappings.size + 1, ...m }));
    return e.id;
  };
  const functions = new Map<string, { id: number; name: string; system: string; file: string }>();
  const functionFor = (name: string, system: string, file: string) => {
    const key = `${name}\0${file}`;
    let f = functions.get(key);
    if (!f) functions.set(key, (f = { id: functions.size + 1, name, system, file }));
    return f.id;
  };
  const locations = new Map<string, { id: number; mapping: number; address: bigint; fn: number; line: number }>();
  const locationFor = (mapping: number, address: bigint, fn: number, line: number) => {
    const key = `${mapping}/${address}/${fn}/${line}`;
    let l = locations.get(key);
    if (!l) locations.set(key, (l = { id: locations.size + 1, mapping, address, fn, line }));
    return l.id;
  };
  const pseudo = (name: string) => locationFor(0, 0n, functionFor(name, name, ''), 0);

  const samples = new Map<string, { locs: number[]; values: bigint[]; labels: [string, string | number][] }>();
  for (const r of records) {
    if (r.value <= 0n) continue;
    const locs: number[] = [];
    for (const f of r.frames) {
      const addr = U64(f.address);
      let mapping: number;
      if (f.kind === 'KERNEL') mapping = mappingFor(`k:${f.module}`, { start: 0n, limit: 0n, offset: 0n, file: f.module || '[kernel.kallsyms]', buildId: '' });
      else if (f.kind === 'JIT') mapping = mappingFor(`j:${f.module}`, { start: 0n, limit: 0n, offset: 0n, file: f.module || '[jit]', buildId: '' });
      else {
        const m = f.module !== '' ? opts.mappingOf?.(r.tgid, f.module, addr) : undefined;
        mapping = m
          ? mappingFor(`u:${f.module}:${m.start}`, { start: m.start, limit: m.limit, offset: m.offset, file: f.module, buildId: m.buildId })
          : mappingFor(`u:${f.module}`, { start: 0n, limit: 0n, offset: 0n, file: f.module || '[unknown]', buildId: '' });
      }
      const name = frameName({ ...f, kind: 'USER' });
      const fn = functionFor(name, f.function || name, f.file ?? (f.kind === 'USER' ? f.module : ''));
      locs.push(locationFor(mapping, addr, fn, f.line ?? 0));
    }
    for (const [which, st] of [['user', r.user_stack], ['kernel', r.kernel_stack]] as const) {
      if (st === 'LOST' || st === 'EXPIRED' || st === 'MISSING') locs.push(pseudo(`[${which} stack ${st}]`));
    }
    const values = types.map(([t]) => {
      if (t === 'samples') return r.kind === 'ONCPU' ? r.value : 0n;
      if (t === 'cpu') return r.kind === 'ONCPU' ? r.value * period : 0n;
      return r.kind === 'OFFCPU' ? r.value : 0n;
    });
    const labels: [string, string | number][] = [['comm', r.comm], ['pid', r.tgid]];
    if (r.pid !== 0) labels.push(['tid', r.pid]);
    labels.push(['state', r.state]);
    const key = `${locs.join(',')}|${JSON.stringify(labels)}`;
    const s = samples.get(key);
    if (s) s.values.forEach((v, i) => (s.values[i] = v + values[i]!));
    else samples.set(key, { locs, values, labels });
  }
  // a location with mapping 0 (pseudo frames) needs a mapping of its own: pprof wants every id resolvable
  let pseudoMapping = 0;
  for (const l of locations.values()) {
    if (l.mapping === 0) l.mapping = pseudoMapping ||= mappingFor('p:', { start: 0n, limit: 0n, offset: 0n, file: '[ringflow]', buildId: '' });
  }

  const w = new PbWriter();
  for (const [t, u] of types) w.message(1, (m) => m.int(1, str(t)).int(2, str(u)));
  for (const s of samples.values()) {
    w.message(2, (m) => {
      m.packed(1, s.locs).packed(2, s.values);
      for (const [k, v] of s.labels) m.message(3, (l) => (typeof v === 'number' ? l.int(1, str(k)).int(3, v) : l.int(1, str(k)).int(2, str(v))));
    });
  }
  for (const m of mappings.values()) {
    w.message(3, (x) => x.int(1, m.id).int(2, m.start).int(3, m.limit).int(4, m.offset).int(5, str(m.file)).int(6, str(m.buildId)).bool(7, true));
  }
  for (const l of locations.values()) {
    w.message(4, (x) => x.int(1, l.id).int(2, l.mapping).int(3, l.address).message(4, (ln) => ln.int(1, l.fn).int(2, l.line)));
  }
  for (const f of functions.values()) w.message(5, (x) => x.int(1, f.id).int(2, str(f.name)).int(3, str(f.system)).int(4, str(f.file)));
  const comments = (opts.comments ?? []).map(str);
  const defaultType = str(on || !off ? 'cpu' : 'offcpu');
  const periodType = on || !off ? [str('cpu'), str('nanoseconds')] : [str('offcpu'), str('nanoseconds')];
  // the string table last: every index above is taken by now
  for (const s of strings.keys()) w.string(6, s, true);
  w.int(9, opts.timeNanos).int(10, opts.durationNanos);
  w.message(11, (m) => m.int(1, periodType[0]!).int(2, periodType[1]!));
  w.int(12, on || !off ? period : 1n);
  w.packed(13, comments);
  w.int(14, defaultType);
  return w.finish();
}

/** The gzipped profile, as pprof files are written. */
export function renderPprof(records: readonly ProfileStackRecord[], opts: PprofOptions): Buffer {
  return gzipSync(encodePprofMessage(records, opts));
}
