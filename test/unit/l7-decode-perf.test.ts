import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeL7Exchange, L7_EXCHANGE_OFFSETS as X } from '../../collector/l7/exchange.ts';
import { batch } from '../bench/l7-exchange-path.ts';

test("exchange records of one batch: the batch's ArrayBuffer asked for once, not 5 times per record (a V8 runtime call on a native batch)", () => {
  const first = batch(10);
  for (let i = 0; i < 10; i++) decodeL7Exchange(first.buf, first.offs[i]!, first.lens[i]!); // command names seen (their cache is not what is measured)
  const { offs, lens } = first;
  const buf = Buffer.from(first.buf); // the next batch: its own ArrayBuffer
  const proto = Object.getPrototypeOf(Uint8Array.prototype) as object;
  const desc = Object.getOwnPropertyDescriptor(proto, 'buffer')!;
  let calls = 0;
  Object.defineProperty(proto, 'buffer', { ...desc, get(this: Uint8Array) {
    calls++;
    return desc.get!.call(this);
  } });
  const seqs: number[] = [];
  try {
    for (let i = 0; i < 10; i++) seqs.push(decodeL7Exchange(buf, offs[i]!, lens[i]!)!.seq);
  } finally {
    Object.defineProperty(proto, 'buffer', desc);
  }
  assert.equal(calls, 1);
  assert.deepEqual(seqs, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
});

test('exchange records: each batch is read through its own view (switching batches back and forth)', () => {
  const a = batch(4);
  const copy = Buffer.from(a.buf); // another batch, another ArrayBuffer
  copy.writeBigUInt64LE(123456789n, a.offs[2]! + X.ts_ns);
  copy.writeUInt16LE(404, a.offs[2]! + X.status);
  const before = decodeL7Exchange(a.buf, a.offs[2]!, a.lens[2]!)!;
  const other = decodeL7Exchange(copy, a.offs[2]!, a.lens[2]!)!;
  const again = decodeL7Exchange(a.buf, a.offs[2]!, a.lens[2]!)!;
  assert.equal(other.ts_ns, 123456789n);
  assert.equal(other.status, 404);
  assert.notEqual(before.ts_ns, 123456789n);
  assert.deepEqual(again, before);
  // the heads are views of their own batch
  assert.equal(other.req_head.buffer, copy.buffer);
  assert.equal(again.req_head.buffer, a.buf.buffer);
});
