/**
 * processor/semconv.ts: address normalisation, the OTEL_SEMCONV_STABILITY_OPT_IN
 * choice of RPC metric conventions, gRPC status names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attributeAddress, grpcStatusName, rpcConventions } from '../../processor/semconv.ts';

test('semconv: IPv4-mapped IPv6 addresses become IPv4, others are unchanged', () => {
  const cases: [string, string][] = [
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['::ffff:7f00:1', '127.0.0.1'], // hex form
    ['::ffff:a01:203', '10.1.2.3'],
    ['10.0.0.1', '10.0.0.1'],
    ['::1', '::1'],
    ['fd00::ffff:10.0.0.1', 'fd00::ffff:10.0.0.1'], // not the mapped prefix
    ['::ffff:0:10.0.0.1', '::ffff:0:10.0.0.1'], // IPv4-translated (RFC 6052 style), not mapped
    ['2001:db8::1', '2001:db8::1'],
    ['', ''],
  ];
  for (const [input, want] of cases) assert.equal(attributeAddress(input), want, input);
});

test('semconv: OTEL_SEMCONV_STABILITY_OPT_IN selects the RPC metric conventions', () => {
  const cases: [string | undefined, { stable: boolean; old: boolean }][] = [
    [undefined, { stable: true, old: false }],
    ['', { stable: true, old: false }],
    ['rpc', { stable: true, old: false }],
    ['rpc/dup', { stable: true, old: true }],
    ['http, rpc/dup', { stable: true, old: true }],
    ['rpc,rpc/dup', { stable: true, old: true }], // rpc/dup wins over rpc
    ['http/dup,database', { stable: true, old: false }],
    ['RPC/DUP', { stable: true, old: true }],
  ];
  for (const [env, want] of cases) assert.deepEqual(rpcConventions(env), want, String(env));
});

test('semconv: gRPC status codes by name for rpc.response.status_code', () => {
  const cases: [string | undefined, string | undefined][] = [['0', 'OK'], ['4', 'DEADLINE_EXCEEDED'], ['16', 'UNAUTHENTICATED'], ['17', '17'], [undefined, undefined]];
  for (const [code, want] of cases) assert.equal(grpcStatusName(code), want, String(code));
});
