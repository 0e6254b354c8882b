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
 */
import { schemaRegistry, encodeRecord, type RegisteredSchema, type WireFormat } from '../../schemas/index.ts';
import { l7Key, type L7Context, type L7Output } from './tracker.ts';
import type { L7Message } from './types.ts';

export const L7_SCHEMA_ID = 'l7';

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

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

/** containerId: container.id of a process by tgid (collector/process-identity.ts); '' when none. */
export function createL7Encoder(opts: { host: string; bootTimeNs: bigint; format?: WireFormat; containerId?: (tgid: number) => string }): L7Encoder {
  const schema = schemaRegistry().byId(L7_SCHEMA_ID);
  if (!schema) throw new Error(`schemas/${L7_SCHEMA_ID}.avsc is missing`);

  // One object literal for both shapes: every field set (avsc then looks up no
  // default) and one hidden class for V8, the record encoded once by encodeRecord.
  const record = (m: L7Message, r: L7Message | null, outcome: L7Outcome | null, c: L7Context): { key: string; value: Buffer } => {
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
      host: opts.host,
      boot_time_ns: opts.bootTimeNs,
    };
    return {
      key: l7Key(c.transport, c.local_addr, c.local_port, c.remote_addr, c.remote_port),
      value: encodeRecord(schema, value, opts.format),
    };
  };

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
    encode(o) {
      return o.exchange === undefined ? record(o.msg, null, null, o.ctx) : encodeExchange(o.msg, o.exchange.response, o.ctx, o.exchange.outcome);
    },
    encodeExchange,
  };
}

