/**
 * Small pure pieces of the OpenTelemetry semantic conventions shared by the
 * spans stage (processor/spans.ts) and the RED metrics (processor/aggregate.ts).
 */

export { attributeAddress } from '../common/address.ts';

/** Which RPC metric conventions to emit (OTEL_SEMCONV_STABILITY_OPT_IN). */
export interface RpcConventions {
  /** rpc.{server,client}.call.duration in s with rpc.system.name, rpc.method (Service/Method), rpc.response.status_code. */
  readonly stable: boolean;
  /** rpc.{server,client}.duration in ms with rpc.system, rpc.service, rpc.method, rpc.grpc.status_code (v1.37). */
  readonly old: boolean;
}

/**
 * The RPC conventions selected by OTEL_SEMCONV_STABILITY_OPT_IN (a
 * comma-separated list, values trimmed): `rpc/dup` emits both the v1.37 and
 * the stable metrics (it wins over `rpc` when both are given, as the
 * conventions say); anything else, `rpc` or nothing, the stable ones only.
 * The conventions ask existing instrumentations to keep the old names by
 * default; ringflow's RED metrics follow issue 10 instead (stable by
 * default, the old names only for whoever opts in to both).
 */
export function rpcConventions(optIn: string | undefined): RpcConventions {
  const values = new Set((optIn ?? '').split(',').map((v) => v.trim().toLowerCase()).filter((v) => v !== ''));
  return { stable: true, old: values.has('rpc/dup') };
}

/** gRPC status code names (grpc/doc/statuscodes.md): rpc.response.status_code and error.type. */
export const GRPC_CODES: readonly string[] = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

/** rpc.response.status_code of a numeric gRPC status as text (the code's name; the number when it has none). */
export function grpcStatusName(code: string | undefined): string | undefined {
  if (code === undefined || !/^\d+$/.test(code)) return code;
  return GRPC_CODES[Number(code)] ?? code;
}
