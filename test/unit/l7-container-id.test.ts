/**
 * container.id of an observed process from the collector to the span and its
 * RED metric: the l7 record's container_id (collector/l7/encode.ts, filled
 * from collector/process-identity.ts), the span's container.id attribute
 * (processor/spans.ts) and the RED dimension the exporter lifts to the
 * Resource; records written before the field existed (schemas/history/l7.v0)
 * read with ''.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCurrent, decodeRecord, encodeRecord } from '../../schemas/wire.ts';
import { schemaRegistry } from '../../schemas/index.ts';
import { createL7Encoder } from '../../collector/l7/encode.ts';
import type { L7Output } from '../../collector/l7/tracker.ts';
import { SpanCorrelator, type L7Record } from '../../processor/spans.ts';
import { METRICS, spanEvent } from '../../processor/aggregate.ts';

const S = 1_000_000_000n;
const BOOT = 1_764_000_000n * S;
const ID = 'a3f1c2d4e5b6978812345678901234567890abcdefabcdefabcdefabcdef0123';

function out(kind: 'REQUEST' | 'RESPONSE', tgid: number, at: bigint): L7Output {
  return {
    msg: {
      protocol: 'HTTP1', kind, start_ns: at, end_ns: at + 1000n, stream_id: 0, method: kind === 'REQUEST' ? 'GET' : null, path: kind === 'REQUEST' ? '/x' : null,
      status: kind === 'RESPONSE' ? 200 : null, headers: {}, grpc_service: null, grpc_method: null, grpc_status: null,
      dns_name: null, dns_type: null, dns_rcode: null, dns_answers: null, body_bytes: 0n, truncated: false,
    } as unknown as L7Output['msg'],
    ctx: {
      pid: tgid, tgid, uid: 0, comm: 'python3', process_name: 'server', cgroup_id: 1n, conn_id: 5n, role: 'SERVER', transport: 'TCP',
      local_addr: '10.0.0.2', local_port: 8080, remote_addr: '10.0.0.1', remote_port: 40000,
    },
  };
}

test('container.id: the l7 record carries it, the span and its RED metric name it', () => {
  const enc = createL7Encoder({ host: 'h1', bootTimeNs: BOOT, containerId: (tgid) => (tgid === 77 ? ID : '') });
  const records = [out('REQUEST', 77, 10n * S), out('RESPONSE', 77, 10n * S + 5_000_000n)].map((o) => decodeRecord(enc.encode(o).value).value as unknown as L7Record);
  assert.equal(records[0]!.container_id, ID);
  const c = new SpanCorrelator({ timeoutNs: 10n * S, linkDelayNs: 0n, latenessNs: 0n });
  records.forEach((r, i) => c.add(r, BigInt(i)));
  const spans = [...c.advance(), ...c.advance(BOOT + 1_000n * S)];
  assert.equal(spans.length, 1);
  assert.equal(spans[0]!.attributes['container.id'], ID);
  const red = METRICS.find((m) => m.name === 'http.server.request.duration')!;
  const ev = spanEvent({ ...spans[0]!, end_ns: spans[0]!.end_ns } as unknown as Record<string, unknown>);
  assert.equal(red.dimensions.find((d) => d.key === 'container.id')!.get(ev as never), ID);
  assert.equal(red.dimensions.find((d) => d.key === 'process.pid'), undefined, 'no process.pid dimension');

  // a process in no container: no attribute at all
  const plain = createL7Encoder({ host: 'h1', bootTimeNs: BOOT, containerId: () => '' });
  const rs = [out('REQUEST', 78, 10n * S), out('RESPONSE', 78, 10n * S + 1_000_000n)].map((o) => decodeRecord(plain.encode(o).value).value as unknown as L7Record);
  const c2 = new SpanCorrelator({ timeoutNs: 10n * S, linkDelayNs: 0n, latenessNs: 0n });
  rs.forEach((r, i) => c2.add(r, BigInt(i)));
  const s2 = [...c2.advance(), ...c2.advance(BOOT + 1_000n * S)];
  assert.equal(s2[0]!.attributes['container.id'], undefined);
});

test('container.id: an l7 record of the previous schema version reads with container_id empty', () => {
  const registry = schemaRegistry();
  const v0 = registry.history.find((h) => h.id === 'l7.v0');
  assert.ok(v0, 'schemas/history/l7.v0.avsc');
  const enc = createL7Encoder({ host: 'h1', bootTimeNs: BOOT });
  const now = decodeRecord(enc.encode(out('REQUEST', 9, S)).value).value as Record<string, unknown>;
  const { container_id: _dropped, ...old } = now;
  const got = decodeCurrent(encodeRecord(v0, old)).value as Record<string, unknown>;
  assert.equal(got.container_id, '');
  assert.equal(got.process_name, 'server');
});
