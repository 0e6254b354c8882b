/**
 * network.protocol.version of HTTP/1 end to end on real parts short of the
 * kernel: captured bytes through the HTTP/1 parser (collector/l7/http1.ts),
 * the l7 record's protocol_version (collector/l7/encode.ts, schemas/l7.avsc),
 * the span attribute (processor/spans.ts) and the RED metrics' dimension
 * (processor/aggregate.ts); an l7 record of the previous schema version reads
 * with '' and its span has no version rather than a wrong one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCurrent, decodeRecord, encodeRecord } from '../../schemas/wire.ts';
import { schemaRegistry } from '../../schemas/index.ts';
import { createHttp1Connection } from '../../collector/l7/http1.ts';
import { createL7Encoder } from '../../collector/l7/encode.ts';
import type { L7Output } from '../../collector/l7/tracker.ts';
import type { L7Message } from '../../collector/l7/types.ts';
import { SpanCorrelator, type L7Record, type Span } from '../../processor/spans.ts';
import { METRICS, spanEvent } from '../../processor/aggregate.ts';

const S = 1_000_000_000n;
const BOOT = 1_764_000_000n * S;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function ctx(role: 'CLIENT' | 'SERVER'): L7Output['ctx'] {
  const [local, remote]: [[string, number], [string, number]] = role === 'SERVER' ? [['10.0.0.2', 8080], ['10.0.0.1', 40000]] : [['10.0.0.1', 40000], ['10.0.0.2', 8080]];
  return {
    pid: 7, tgid: 7, uid: 0, comm: 'node', process_name: 'traffic', cgroup_id: 1n, conn_id: 3n, role, transport: 'TCP',
    local_addr: local[0], local_port: local[1], remote_addr: remote[0], remote_port: remote[1],
  } as L7Output['ctx'];
}

/** One exchange's bytes -> parser -> l7 records -> span. */
function exchange(role: 'CLIENT' | 'SERVER', request: string, response: string): { records: L7Record[]; span: Span } {
  const conn = createHttp1Connection();
  const msgs: L7Message[] = [...conn.requests.push(bytes(request), 10n * S), ...conn.responses.push(bytes(response), 10n * S + 3_000_000n), ...conn.responses.end(10n * S + 4_000_000n)];
  assert.equal(msgs.length, 2, 'one request, one response');
  const enc = createL7Encoder({ host: 'h1', bootTimeNs: BOOT });
  const records = msgs.map((msg) => decodeRecord(enc.encode({ msg, ctx: ctx(role) }).value).value as unknown as L7Record);
  const c = new SpanCorrelator({ timeoutNs: 10n * S, linkDelayNs: 0n, latenessNs: 0n });
  records.forEach((r, i) => c.add(r, BigInt(i)));
  const spans = [...c.advance(), ...c.advance(BOOT + 1_000n * S)];
  assert.equal(spans.length, 1);
  return { records, span: spans[0]! };
}

const dimension = (metric: string, span: Span): string | undefined => {
  const m = METRICS.find((x) => x.name === metric)!;
  const ev = spanEvent(span as unknown as Record<string, unknown>);
  assert.ok(m.accept === undefined || m.accept(ev as never), `${metric} takes the span`);
  return m.dimensions.find((d) => d.key === 'network.protocol.version')!.get(ev as never) as string | undefined;
};

// [role, request line, status line (+ headers), record versions, span attribute and RED dimension]
const cases: ['CLIENT' | 'SERVER', string, string, [string, string], string][] = [
  ['SERVER', 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', ['1.1', '1.1'], '1.1'],
  // what curl --http1.0 gets from node:http: a 1.1 status line, the exchange is 1.0
  ['SERVER', 'GET /a HTTP/1.0\r\nHost: x\r\n\r\n', 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok', ['1.0', '1.1'], '1.0'],
  ['CLIENT', 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n', ['1.1', '1.0'], '1.0'],
];

for (const [role, request, response, versions, want] of cases) {
  test(`protocol version: ${role} ${request.split('\r\n')[0]} / ${response.split('\r\n')[0]} -> ${want}`, () => {
    const { records, span } = exchange(role, request, response);
    assert.deepEqual(records.map((r) => r.protocol_version), versions, 'l7 records');
    assert.equal(span.attributes['network.protocol.version'], want, 'span');
    assert.equal(dimension(role === 'SERVER' ? 'http.server.request.duration' : 'http.client.request.duration', span), want, 'RED dimension');
  });
}

test('protocol version: an l7 record of the previous schema version reads with \'\' and its span has none', () => {
  const v0 = schemaRegistry().history.find((h) => h.id === 'l7.v0');
  assert.ok(v0, 'schemas/history/l7.v0.avsc');
  assert.ok(!v0.schema.fields.some((f) => f.name === 'protocol_version'), 'v0 has no protocol_version');
  const { records } = exchange('SERVER', 'GET /a HTTP/1.1\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  const old = records.map((r) => {
    const { protocol_version: _v, container_id: _c, ...rest } = r as unknown as Record<string, unknown>;
    return decodeCurrent(encodeRecord(v0, rest)).value as unknown as L7Record;
  });
  assert.deepEqual(old.map((r) => r.protocol_version), ['', '']);
  const c = new SpanCorrelator({ timeoutNs: 10n * S, linkDelayNs: 0n, latenessNs: 0n });
  old.forEach((r, i) => c.add(r, BigInt(i)));
  const spans = [...c.advance(), ...c.advance(BOOT + 1_000n * S)];
  assert.equal(spans.length, 1);
  assert.equal(spans[0]!.attributes['network.protocol.version'], undefined);
  assert.equal(dimension('http.server.request.duration', spans[0]!), undefined);
});
