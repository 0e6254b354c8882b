/**
 * Tests that read ringflow.l7.v1 see HTTP/1 exchanges framed in the kernel as
 * one EXCHANGE record (schemas/l7.avsc) where capture records give a REQUEST
 * and a RESPONSE. expandL7Records turns each EXCHANGE back into those two
 * views (the request's fields; the response's from status and the resp_
 * fields, with the record's context: the request's task), so one assertion
 * holds for both paths. Other records pass through.
 */
export type L7Value = Record<string, unknown>;

export function expandL7Records(values: readonly L7Value[]): L7Value[] {
  return values.flatMap((v) => {
    if (v.kind !== 'EXCHANGE') return [v];
    const request: L7Value = { ...v, kind: 'REQUEST', status: null };
    if (v.resp_end_ns === null || v.resp_end_ns === undefined) return [request];
    const response: L7Value = {
      ...v, kind: 'RESPONSE', method: null, path: null, ts_ns: v.resp_start_ns, end_ns: v.resp_end_ns, body_bytes: v.resp_body_bytes,
      headers: v.resp_headers, truncated: v.resp_truncated, protocol_version: v.resp_protocol_version,
    };
    return [request, response];
  });
}
