/**
 * Parsed L7 messages -> `ringflow.l7.v1` records (schemas/l7.avsc), keyed by
 * the connection's two ends so both directions, from both hosts, share a
 * partition.
 *
 * Two shapes of record:
 *   REQUEST / RESPONSE  one message each (`encode({ msg, ctx })`); the
 *                       processor pairs them again (processor/spans.ts).
 *   EXCHANGE            a request and its response already paired (HTTP/1 in
 *                       the kernel: bpf/events.h struct rf_l7_exchange), one
 *                       record (`encodeExchange`, or `encode` of an output
 *                       with `exchange` set). Half the Kafka messages and Avro
 *                       encodes of the pair (design l7-in-kernel §4, slice 4).
 *                       The request's values fill the fields the pair shares,
 *                       the response's the response-only ones (status,
 *                       grpc_status, dns_rcode, dns_answers) and resp_*.
 *
 * Both shapes are written field by field into one scratch buffer
 * (schemas/avro-writer.ts): no value object for avsc, no schema walk (avsc's
 * encode was ~1/3 of the exchange path). The bytes are avsc's, proved by
 * test/unit/l7-exchange-writer.test.ts against `encodeRecord`; avsc still
 * encodes when the schema is not the one this writer was written for
 * (L7_WRITER_FINGERPRINT: a changed l7.avsc falls back, and that test fails
 * until the writer follows it) or when asked (`avsc: true`).
 */
import { schemaRegistry, encodeRecord, singleObjectFormat, type RegisteredSchema, type WireFormat } from '../../schemas/index.ts';
import { AvroWriter, enumIndex } from '../../schemas/avro-writer.ts';
import { l7Key, type L7Context, type L7Output } from './tracker.ts';
import type { L7Message } from './types.ts';

export const L7_SCHEMA_ID = 'l7';

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** Bytes of the buffer EXCHANGE and REQUEST/RESPONSE records are written into, one after another (~300 bytes each). */
const SLAB = 16 * 1024;
/** The response fields of a record without one: three nulls, an empty map, false, ''. */
const NO_RESPONSE = Uint8Array.of(0, 0, 0, 0, 0, 0);

/**
 * How an exchange ended (schemas/l7.avsc L7Outcome; bpf/events.h enum
 * rf_l7_outcome less RESP_ONLY: a response whose request is unknown is a
 * RESPONSE record, `encode({ msg: response, ctx })`).
 */
export type L7Outcome = 'RESPONDED' | 'CLOSED' | 'LOST' | 'REQ_ONLY';

/** What makes an L7Output one EXCHANGE record: its `msg` is the request, this its response and end. */
export interface L7ExchangeParts {
  response: L7Message | null;
  outcome: L7Outcome;
}

/** An L7Output of the tracker, or one exchange (`exchange` set, `msg` the request). */
export type L7EncoderInput = L7Output & { readonly exchange?: L7ExchangeParts };

/** bpf/events.h enum rf_l7_outcome, by C value. */
const C_OUTCOMES = ['RESPONDED', 'CLOSED', 'RESP_ONLY', 'LOST', 'REQ_ONLY'] as const;

/**
 * The kernel exchange path's switch to EXCHANGE records: the outputs of one
 * exchange record (its request and/or response with their contexts, as
 * collector/l7/exchange.ts gives them; `outcome` its name or its C value)
 * become ONE output that `encode` turns into one EXCHANGE record when the
 * request is known and the outcome fits; otherwise they stay as they are
 * (REQUEST/RESPONSE records, as before): a response whose request is
 * unknown (RESP_ONLY), a RESPONDED exchange whose response head did not
 * parse (the request alone), an outcome this collector does not know.
 * The record carries the request's context (the task that moved its first byte).
 */
export function asExchangeRecord(outputs: readonly L7Output[], outcome: L7Outcome | 'RESP_ONLY' | number): L7Output[] {
  const name = typeof outcome === 'number' ? C_OUTCOMES[outcome] : outcome;
  const request = outputs.find((o) => o.msg.kind === 'REQUEST');
  const response = outputs.find((o) => o.msg.kind === 'RESPONSE')?.msg ?? null;
  const paired = request !== undefined && outputs.length <= 2 && name !== undefined && name !== 'RESP_ONLY' &&
    (response !== null ? name === 'RESPONDED' || name === 'LOST' : name !== 'RESPONDED' && outputs.length === 1);
  if (!paired) return [...outputs];
  const o: L7EncoderInput = { msg: request.msg, ctx: request.ctx, exchange: { response, outcome: name } };
  return [o];
}

export interface L7Encoder {
  readonly schema: RegisteredSchema;
  /** One REQUEST or RESPONSE record; one EXCHANGE record when `o.exchange` is set. */
  encode(o: L7EncoderInput): { key: string; value: Buffer };
  /**
   * One EXCHANGE record of `request` (kind REQUEST) and `response` (kind
   * RESPONSE, or null: the request got none). `outcome` defaults to RESPONDED
   * with a response and CLOSED without. Throws on a mismatch (a response for
   * CLOSED/REQ_ONLY, none for RESPONDED, kinds swapped): the caller counts it.
   */
  encodeExchange(request: L7Message, response: L7Message | null, ctx: L7Context, outcome?: L7Outcome): { key: string; value: Buffer };
}

/**
 * CRC-64-AVRO of the l7.avsc this file's writer follows (field order, types,
 * defaults). Another schema is encoded by avsc until the writer is updated.
 */
export const L7_WRITER_FINGERPRINT = 0x0f6bae29a3a9db77n;

function enumSymbols(schema: RegisteredSchema, field: string): ReadonlyMap<string, number> {
  const f = (schema.schema.fields as readonly { name: string; type: unknown }[]).find((x) => x.name === field);
  let t = f?.type as { type?: string; symbols?: string[] } | readonly unknown[] | undefined;
  if (Array.isArray(t)) t = t.find((b) => typeof b === 'object' && b !== null) as { symbols?: string[] } | undefined;
  const symbols = (t as { symbols?: string[] } | undefined)?.symbols;
  if (!symbols) throw new Error(`schemas/${L7_SCHEMA_ID}.avsc: ${field} is not an enum`);
  return enumIndex(symbols);
}

/**
 * containerId: container.id of a process by tgid (collector/process-identity.ts); '' when none.
 * avsc: encode with avsc (encodeRecord) instead of the direct writer (tests compare the two).
 */
/**
 * The Kafka key of a record's connection (tracker.ts l7Key), built once per
 * connection instead of once per record: the same string object for every
 * record of a connection, so its hash (taken by the sink's partitioner and
 * kafkajs's, both Map lookups by key) is computed once, and no key string per
 * record to collect. Both ends of a connection share a key (l7Key orders
 * the two ends), so either orientation hits. Direct-mapped by the ports;
 * the address strings come from exchange.ts's and tracker.ts's caches (the
 * same objects for one address), so a hit is a few compares.
 */
export interface KeyMemo {
  key(c: L7Context): string;
  /** Keys built (misses), for tests. */
  readonly built: number;
}

const KEY_SLOTS = 256;

export function createKeyMemo(): KeyMemo {
  const slots: ({ t: string; a: string; pa: number; b: string; pb: number; key: string } | undefined)[] = new Array(KEY_SLOTS);
  let built = 0;
  return {
    key(c) {
      const i = (c.local_port ^ c.remote_port) & (KEY_SLOTS - 1);
      const s = slots[i];
      if (s !== undefined && s.t === c.transport) {
        if (s.pa === c.local_port && s.pb === c.remote_port && s.a === c.local_addr && s.b === c.remote_addr) return s.key;
        if (s.pa === c.remote_port && s.pb === c.local_port && s.a === c.remote_addr && s.b === c.local_addr) return s.key;
      }
      built++;
      const key = l7Key(c.transport, c.local_addr, c.local_port, c.remote_addr, c.remote_port);
      slots[i] = { t: c.transport, a: c.local_addr, pa: c.local_port, b: c.remote_addr, pb: c.remote_port, key };
      return key;
    },
    get built() {
      return built;
    },
  };
}

export function createL7Encoder(opts: { host: string; bootTimeNs: bigint; format?: WireFormat; containerId?: (tgid: number) => string; avsc?: boolean }): L7Encoder & { readonly direct: boolean } {
  const schema = schemaRegistry().byId(L7_SCHEMA_ID);
  if (!schema) throw new Error(`schemas/${L7_SCHEMA_ID}.avsc is missing`);
  const format = opts.format ?? singleObjectFormat();
  const direct = opts.avsc !== true && schema.fingerprint === L7_WRITER_FINGERPRINT;

  // One object literal for both shapes: every field set (avsc then looks up no
  // default) and one hidden class for V8, the record encoded once by encodeRecord.
  const viaAvsc = (m: L7Message, r: L7Message | null, outcome: L7Outcome | null, c: L7Context): Buffer => {
    const s = r ?? m; // the response-only fields: the response's in an exchange, else the message's own
    const value = {
      ts_ns: m.start_ns,
      end_ns: m.end_ns,
      pid: c.pid,
      tgid: c.tgid,
      uid: c.uid,
      comm: c.comm,
      process_name: c.process_name,
      container_id: opts.containerId?.(c.tgid) ?? '',
      cgroup_id: c.cgroup_id,
      conn_id: BigInt.asIntN(64, c.conn_id),
      role: c.role,
      transport: c.transport,
      local_addr: c.local_addr,
      local_port: c.local_port,
      remote_addr: c.remote_addr,
      remote_port: c.remote_port,
      protocol: m.protocol,
      kind: outcome === null ? m.kind : 'EXCHANGE',
      stream_id: m.stream_id,
      method: m.method,
      path: m.path,
      status: s.status,
      headers: m.headers,
      grpc_service: m.grpc_service ?? r?.grpc_service ?? null,
      grpc_method: m.grpc_method ?? r?.grpc_method ?? null,
      grpc_status: s.grpc_status,
      dns_name: m.dns_name,
      dns_type: m.dns_type,
      dns_rcode: s.dns_rcode,
      dns_answers: s.dns_answers,
      body_bytes: m.body_bytes,
      truncated: m.truncated,
      protocol_version: m.protocol_version ?? '',
      resp_start_ns: r === null ? null : r.start_ns,
      resp_end_ns: r === null ? null : r.end_ns,
      resp_body_bytes: r === null ? null : r.body_bytes,
      resp_headers: r === null ? NO_HEADERS : r.headers,
      resp_truncated: r !== null && r.truncated,
      resp_protocol_version: r?.protocol_version ?? '',
      outcome,
      dns_retries: m.dns_retries ?? null,
      host: opts.host,
      boot_time_ns: opts.bootTimeNs,
    };
    return encodeRecord(schema, value, format);
  };

  // The direct writer: the same fields in schema order, each written as avsc
  // writes the value viaAvsc builds for it. A field with a schema default
  // takes it when the value is undefined, as avsc's record writer does (the
  // nullable ones: `?? null`; a null where null is no branch still throws).
  const ROLE = enumSymbols(schema, 'role');
  const TRANSPORT = enumSymbols(schema, 'transport');
  const PROTOCOL = enumSymbols(schema, 'protocol');
  const KIND = enumSymbols(schema, 'kind');
  const OUTCOME = enumSymbols(schema, 'outcome');
  const envelope = (() => { // host and boot_time_ns: constant for the run, encoded once
    const e = new AvroWriter(64 + 3 * opts.host.length);
    e.start(0);
    e.string(opts.host, 'host');
    e.long(opts.bootTimeNs, 'boot_time_ns');
    return e.copy();
  })();
  const w = new AvroWriter(SLAB);
  const fields = (m: L7Message, r: L7Message | null, outcome: L7Outcome | null, c: L7Context, containerId: string): void => {
    const s = r ?? m;
    w.long(m.start_ns, 'ts_ns');
    w.long(m.end_ns, 'end_ns');
    w.long(c.pid, 'pid');
    w.long(c.tgid, 'tgid');
    w.long(c.uid, 'uid');
    w.string(c.comm, 'comm');
    w.string(c.process_name === undefined ? '' : c.process_name, 'process_name');
    w.string(containerId, 'container_id');
    w.long(c.cgroup_id, 'cgroup_id');
    w.u64(c.conn_id, 'conn_id'); // BigInt.asIntN(64, c.conn_id), as viaAvsc
    w.enumOf(ROLE, c.role, 'role');
    w.enumOf(TRANSPORT, c.transport, 'transport');
    w.string(c.local_addr, 'local_addr');
    w.int(c.local_port, 'local_port');
    w.string(c.remote_addr, 'remote_addr');
    w.int(c.remote_port, 'remote_port');
    w.enumOf(PROTOCOL, m.protocol, 'protocol');
    w.enumOf(KIND, outcome === null ? m.kind : 'EXCHANGE', 'kind');
    w.long(m.stream_id, 'stream_id');
    w.nullableString(m.method ?? null, 'method');
    w.nullableString(m.path ?? null, 'path');
    w.nullableInt(s.status ?? null, 'status');
    w.stringMap(m.headers === undefined ? NO_HEADERS : m.headers, 'headers');
    w.nullableString(m.grpc_service ?? r?.grpc_service ?? null, 'grpc_service');
    w.nullableString(m.grpc_method ?? r?.grpc_method ?? null, 'grpc_method');
    w.nullableInt(s.grpc_status ?? null, 'grpc_status');
    w.nullableString(m.dns_name ?? null, 'dns_name');
    w.nullableString(m.dns_type ?? null, 'dns_type');
    w.nullableString(s.dns_rcode ?? null, 'dns_rcode');
    w.nullableInt(s.dns_answers ?? null, 'dns_answers');
    w.long(m.body_bytes, 'body_bytes');
    w.bool(m.truncated, 'truncated');
    w.string(m.protocol_version ?? '', 'protocol_version');
    if (r === null) {
      // resp_start_ns, resp_end_ns, resp_body_bytes null; resp_headers {}; resp_truncated false; resp_protocol_version ''
      w.bytes(NO_RESPONSE);
    } else {
      w.nullableLong(r.start_ns ?? null, 'resp_start_ns');
      w.nullableLong(r.end_ns ?? null, 'resp_end_ns');
      w.nullableLong(r.body_bytes ?? null, 'resp_body_bytes');
      w.stringMap(r.headers === undefined ? NO_HEADERS : r.headers, 'resp_headers');
      w.bool(r.truncated === undefined ? false : r.truncated, 'resp_truncated');
      w.string(r.protocol_version ?? '', 'resp_protocol_version');
    }
    w.nullableEnum(OUTCOME, outcome, 'outcome');
    w.nullableInt(m.dns_retries ?? null, 'dns_retries');
    w.bytes(envelope);
  };
  // Records are written one after another into a slab and handed out as views
  // of it, as transcode.ts hands out a batch's (kafkajs may hold them long
  // after): no copy per record. A slab is left to the records that view it
  // when the next one might not fit; a record larger than a slab gets one of its own.
  const headerRoom = format.headerSize(schema) + 64;
  let at = 0; // where the next record starts in w.buf
  const viaWriter = (m: L7Message, r: L7Message | null, outcome: L7Outcome | null, c: L7Context): Buffer => {
    const containerId = opts.containerId?.(c.tgid) ?? '';
    for (let tries = 1; ; tries++) {
      if (w.buf.length - at < headerRoom) {
        w.fresh(SLAB);
        at = 0;
      }
      w.start(format.writeHeader(schema, w.buf, at));
      fields(m, r, outcome, c, containerId);
      if (w.fits()) {
        const value = w.buf.subarray(at, w.pos);
        at = w.pos;
        return value;
      }
      // it ran past the slab's end: once more at the start of a new one that holds it
      // (a record's size does not change between tries: a third try would be a bug, not a retry)
      if (tries === 2) throw new Error(`l7 record of ${w.pos - at} bytes did not fit ${w.buf.length}`);
      w.fresh(Math.max(SLAB, 2 * (w.pos - at)));
      at = 0;
    }
  };

  const keys = createKeyMemo();
  const record = (m: L7Message, r: L7Message | null, outcome: L7Outcome | null, c: L7Context): { key: string; value: Buffer } => ({
    key: keys.key(c),
    value: direct ? viaWriter(m, r, outcome, c) : viaAvsc(m, r, outcome, c),
  });

  const encodeExchange = (request: L7Message, response: L7Message | null, ctx: L7Context, outcome: L7Outcome = response ? 'RESPONDED' : 'CLOSED') => {
    if (request.kind !== 'REQUEST') throw new Error(`encodeExchange: the request is a ${request.kind}`);
    if (response !== null && response.kind !== 'RESPONSE') throw new Error(`encodeExchange: the response is a ${response.kind}`);
    if ((outcome === 'RESPONDED') !== (response !== null) && outcome !== 'LOST') {
      throw new Error(`encodeExchange: outcome ${outcome} ${response ? 'with' : 'without'} a response`);
    }
    return record(request, response, outcome, ctx);
  };

  return {
    schema,
    direct,
    encode(o) {
      return o.exchange === undefined ? record(o.msg, null, null, o.ctx) : encodeExchange(o.msg, o.exchange.response, o.ctx, o.exchange.outcome);
    },
    encodeExchange,
  };
}

