import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createKeyMemo } from '../../collector/l7/encode.ts';
import { l7Key, type L7Context } from '../../collector/l7/tracker.ts';

const ctx = (transport: 'TCP' | 'UDP', local_addr: string, local_port: number, remote_addr: string, remote_port: number) =>
  ({ transport, local_addr, local_port, remote_addr, remote_port }) as L7Context;

test('key memo: the same key as l7Key for every context (ends swapped, IPv6, UDP, ports that share a slot)', () => {
  const memo = createKeyMemo();
  const cases = [
    ctx('TCP', '127.0.0.1', 40001, '127.0.0.1', 8080),
    ctx('TCP', '127.0.0.1', 8080, '127.0.0.1', 40001), // the other end of the same connection
    ctx('UDP', '127.0.0.1', 8080, '127.0.0.1', 40001), // same ends, other transport
    ctx('TCP', '10.0.0.2', 8080, '127.0.0.1', 40001), // same ports, other address
    ctx('TCP', '127.0.0.1', 8080, '10.0.0.2', 40001),
    ctx('TCP', '::1', 443, 'fe80::1', 51234),
    ctx('TCP', '127.0.0.1', 1, '127.0.0.1', 257), // 1 ^ 257 = 256: the slot of 0 ^ 0
    ctx('TCP', '127.0.0.1', 0, '127.0.0.1', 0),
    ctx('UDP', '::1', 53, '::1', 5353),
  ];
  for (let round = 0; round < 3; round++) {
    for (const c of cases) assert.equal(memo.key(c), l7Key(c.transport, c.local_addr, c.local_port, c.remote_addr, c.remote_port), JSON.stringify(c));
  }
});

test('key memo: one key built per connection, whichever end its records come from (wrk -c8, both ends observed)', () => {
  const memo = createKeyMemo();
  for (let i = 0; i < 1000; i++) {
    const conn = i % 8;
    const server = (i >> 3) % 2 === 1;
    memo.key(server ? ctx('TCP', '127.0.0.1', 8080, '127.0.0.1', 40000 + conn) : ctx('TCP', '127.0.0.1', 40000 + conn, '127.0.0.1', 8080));
  }
  assert.equal(memo.built, 8);
});
