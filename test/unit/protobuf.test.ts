/** common/protobuf.ts: the one wire writer of pprof and OTLP profiles, against protoc's bytes. */
import test from 'node:test';
import assert from 'node:assert/strict';
import { PbWriter } from '../../common/protobuf.ts';

test('PbWriter: fields in order, empty left out unless always (table)', () => {
  const cases: [string, () => PbWriter, string][] = [
    ['int 150 (the spec example)', () => new PbWriter().int(1, 150), '089601'],
    ['bool false left out, true is 1', () => new PbWriter().bool(1, false).bool(2, true), '1001'],
    ['varints around bytes keep their order', () => new PbWriter().int(1, 1).bytes(2, Buffer.from([0xaa])).int(3, 2), '080112' + '01aa' + '1802'],
    ['empty message left out', () => new PbWriter().message(1, new PbWriter()), ''],
    ['empty message kept when asked', () => new PbWriter().message(1, () => {}, true), '0a00'],
    ['message built in place', () => new PbWriter().message(1, (m) => m.int(1, 150)), '0a03089601'],
    ['nested writer', () => new PbWriter().message(3, new PbWriter().string(2, 'testing')), '1a09120774657374696e67'],
    ['empty string left out, kept when asked', () => new PbWriter().string(1, '').string(2, '', true), '1200'],
    ['fixed64 -1', () => new PbWriter().fixed64(1, -1n), '09ffffffffffffffff'],
    ['packed empty: nothing', () => new PbWriter().packed(4, []), ''],
  ];
  for (const [name, build, hex] of cases) assert.equal(build().finish().toString('hex'), hex, name);
});

test('PbWriter: finish twice gives the same bytes', () => {
  const w = new PbWriter().int(1, 7).string(2, 'x');
  assert.equal(w.finish().toString('hex'), w.finish().toString('hex'));
});
