/**
 * Parsed L7 messages -> `ringflow.l7.v1` records (schemas/l7.avsc), keyed by
 * the connection's two ends so both directions, from both hosts, share a
 * partition.
 */
import { schemaRegistry, encodeRecord, type RegisteredSchema, type WireFormat } from '../../schemas/index.ts';
import { l7Key, type L7Output } from './tracker.ts';

export const L7_SCHEMA_ID = 'l7';

export interface L7Encoder {
  readonly schema: RegisteredSchema;
  encode(o: L7Output): { key: string; value: Buffer };
}

/** containerId: container.id of a process by tgid (collector/process-identity.ts); '' when none. */
export function createL7Encoder(opts: { host: string; bootTimeNs: bigint; format?: WireFormat; containerId?: (tgid: number) => string }): L7Encoder {
  const schema = schemaRegistry().byId(L7_SCHEMA_ID);
  if (!schema) throw new Error(`schemas/${L7_SCHEMA_ID}.avsc is missing`);
  return {
    schema,
    encode({ msg: m, ctx: c }) {
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
        kind: m.kind,
        stream_id: m.stream_id,
        method: m.method,
        path: m.path,
        status: m.status,
        headers: m.headers,
        grpc_service: m.grpc_service,
        grpc_method: m.grpc_method,
        grpc_status: m.grpc_status,
        dns_name: m.dns_name,
        dns_type: m.dns_type,
        dns_rcode: m.dns_rcode,
        dns_answers: m.dns_answers,
        body_bytes: m.body_bytes,
        truncated: m.truncated,
        protocol_version: m.protocol_version ?? '',
        host: opts.host,
        boot_time_ns: opts.bootTimeNs,
      };
      return {
        key: l7Key(c.transport, c.local_addr, c.local_port, c.remote_addr, c.remote_port),
        value: encodeRecord(schema, value, opts.format),
      };
    },
  };
}
