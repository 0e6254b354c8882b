/**
 * exporter/otlp-profiles.ts: ringflow.profiles.v1 values -> the bytes of an
 * OTLP ExportProfilesServiceRequest (profiles/v1development). Decoded here
 * with a small independent protobuf reader and checked field by field: the
 * Resource per (service, host), samples -> stacks -> locations -> functions
 * -> strings resolving to the right names leaf first, values, period from
 * sample_hz, the zero entry 0 of every dictionary table. The Collector's
 * acceptance of these bytes is test/integration/profiles-otlp.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { partialSuccessOf, toProfilesRequest, toProfilesRequests } from '../../exporter/otlp-profiles.ts';
import { PbWriter } from '../../common/protobuf.ts';
import { ProfileWindow, type StackRecordIn } from '../../processor/profiles.ts';

type Field = { n: number; wire: number; v: bigint | Buffer };

/** Every field of one message, in order (varints as BigInt, fixed64 as BigInt, lengths as bytes). */
function fields(b: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let x = 0n;
    let shift = 0n;
    for (;;) {
      const c = b[i++]!;
      x |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return x;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const tag = Number(varint());
    const wire = tag & 7;
    if (wire === 0) out.push({ n: tag >> 3, wire, v: varint() });
    else if (wire === 1) { out.push({ n: tag >> 3, wire, v: b.readBigUInt64LE(i) }); i += 8; }
    else if (wire === 2) { const len = Number(varint()); out.push({ n: tag >> 3, wire, v: b.subarray(i, i + len) }); i += len; }
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}
const all = (b: Buffer, n: number) => fields(b).filter((f) => f.n === n).map((f) => f.v);
const one = (b: Buffer, n: number) => all(b, n)[0];
const int = (b: Buffer, n: number) => Number((one(b, n) as bigint | undefined) ?? 0n);
const msgs = (b: Buffer, n: number) => all(b, n) as Buffer[];
const packed = (b: Buffer, n: number) => msgs(b, n).flatMap(unpack);
function unpack(p: Buffer): number[] {
  const out: number[] = [];
  let i = 0;
  while (i < p.length) {
    let x = 0n;
    let shift = 0n;
    for (;;) {
      const c = p[i++]!;
      x |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) break;
      shift += 7n;
    }
    out.push(Number(x));
  }
  return out;
}

test('PbWriter: varints, negative int64, fixed64, packed, as protoc encodes them', () => {
  const cases: [string, PbWriter, string][] = [
    ['int 150 (the spec example)', new PbWriter().int(1, 150), '089601'],
    ['zero left out', new PbWriter().int(1, 0), ''],
    ['int64 -1: ten bytes', new PbWriter().int(2, -1n), '10ffffffffffffffffff01'],
    ['fixed64', new PbWriter().fixed64(3, 1n), '190100000000000000'],
    ['string', new PbWriter().string(2, 'testing'), '120774657374696e67'],
    ['empty string kept when asked', new PbWriter().string(5, '', true), '2a00'],
    ['packed [3, 270, 86942]', new PbWriter().packed(4, [3, 270, 86942]), '2206038e029ea705'],
  ];
  for (const [name, w, hex] of cases) assert.equal(w.finish().toString('hex'), hex, name);
});

const fn = (name: string, offset: number) => ({ module: '/opt/spin', offset: BigInt(offset), function: name, file: null, line: null, kind: 'USER' as const });
const base: Omit<StackRecordIn, 'value' | 'frames'> = {
  kind: 'ONCPU', window_start_ns: 0n, window_end_ns: 10n, tgid: 1n, comm: 'spin', process_name: 'checkout', sample_hz: 19,
  state: 'RUNNING', user_stack: 'OK', kernel_stack: 'NONE', host: 'h1', boot_time_ns: 0n,
};

test('a request: Resource per service and host, stacks resolve to their function names leaf first, values and period', () => {
  const w = new ProfileWindow();
  w.add({ ...base, value: 3n, frames: [fn('spin_a', 0x10), fn('main', 0x20)] });
  w.add({ ...base, value: 1n, frames: [fn('spin_b', 0x30), fn('main', 0x20)] });
  w.add({ ...base, process_name: 'search', kind: 'OFFCPU', state: 'SLEEPING', sample_hz: 0, value: 5_000_000n, frames: [fn('read', 0x40)] });
  const start = 1_700_000_000_000_000_000n;
  const req = toProfilesRequest(w.finish(start, start + 2_000_000_000n), { 'deployment.environment': 'test', 'service.name': 'ignored' });

  const dict = one(req, 2) as Buffer;
  const strings = (all(dict, 5) as Buffer[]).map((b) => b.toString());
  const functions = msgs(dict, 3);
  const locations = msgs(dict, 2);
  const stacks = msgs(dict, 7);
  const attrs = msgs(dict, 6);
  // entry 0 of every table is the zero value
  assert.equal(strings[0], '');
  for (const t of [1, 2, 3, 6, 7]) assert.equal(msgs(dict, t)[0]!.length, 0, `table ${t} entry 0`);

  const fnName = (loc: number) => strings[int(functions[int(msgs(locations[loc]!, 3)[0]!, 1)]!, 1)]!;
  const attr = (i: number) => [strings[int(attrs[i]!, 1)], (one(one(attrs[i]!, 2) as Buffer, 1) as Buffer).toString()];
  const got = msgs(req, 1).map((rp) => {
    const resource = msgs(one(rp, 1) as Buffer, 1).map((kv) => [(one(kv, 1) as Buffer).toString(), (one(one(kv, 2) as Buffer, 1) as Buffer).toString()]);
    const scope = one(rp, 2) as Buffer;
    return {
      resource,
      scope: (one(one(scope, 1) as Buffer, 1) as Buffer).toString(),
      profiles: msgs(scope, 2).map((p) => ({
        sampleType: [strings[int(one(p, 1) as Buffer, 1)], strings[int(one(p, 1) as Buffer, 2)]],
        time: one(p, 3), duration: int(p, 4), period: int(p, 6),
        periodType: one(p, 5) ? [strings[int(one(p, 5) as Buffer, 1)], strings[int(one(p, 5) as Buffer, 2)]] : null,
        attrs: packed(p, 11).map(attr),
        samples: msgs(p, 2).map((s) => [unpack(msgs(stacks[int(s, 1)]!, 1)[0]!).map(fnName).join(';'), unpack(msgs(s, 4)[0]!)[0]]),
      })),
    };
  });
  assert.deepEqual(got, [
    {
      resource: [['deployment.environment', 'test'], ['service.name', 'checkout'], ['host.name', 'h1']], scope: 'ringflow',
      profiles: [{ sampleType: ['samples', 'count'], time: start, duration: 2_000_000_000, period: 52_631_579, periodType: ['cpu', 'nanoseconds'], attrs: [['ringflow.profile.state', 'RUNNING']], samples: [['spin_a;main', 3], ['spin_b;main', 1]] }],
    },
    {
      resource: [['deployment.environment', 'test'], ['service.name', 'search'], ['host.name', 'h1']], scope: 'ringflow',
      profiles: [{ sampleType: ['off_cpu', 'nanoseconds'], time: start, duration: 2_000_000_000, period: 0, periodType: null, attrs: [['ringflow.profile.state', 'SLEEPING']], samples: [['read', 5_000_000]] }],
    },
  ]);
  // the shared frame main is one location; a location's address is the file offset
  assert.equal(locations.length, 1 + 4);
  assert.deepEqual(locations.slice(1).map((l) => int(l, 2)), [0x10, 0x20, 0x30, 0x40]);
});

test('partialSuccessOf: the ExportProfilesServiceResponse a backend answers', () => {
  const reply = (rejected: number, message: string) => new PbWriter().message(1, new PbWriter().int(1, rejected).string(2, message)).finish();
  const cases: [string, Buffer, ReturnType<typeof partialSuccessOf>][] = [
    ['empty reply: full success', Buffer.alloc(0), null],
    ['empty partial_success: full success', new PbWriter().message(1, new PbWriter(), true).finish(), null],
    ['2 rejected with a reason', reply(2, 'bad stack'), { rejected: 2, message: 'bad stack' }],
    ['a warning alone (0 rejected)', reply(0, 'deprecated field'), { rejected: 0, message: 'deprecated field' }],
    ['unknown fields skipped', Buffer.concat([new PbWriter().int(9, 5).string(10, 'x').finish(), reply(1, '')]), { rejected: 1, message: '' }],
    ['truncated: not a reason to resend', reply(3, 'cut').subarray(0, 4), null],
  ];
  for (const [name, b, want] of cases) assert.deepEqual(partialSuccessOf(b), want, name);
});

test('toProfilesRequests: cut under the byte limit, every profile in exactly one request', () => {
  const w = new ProfileWindow();
  for (let i = 0; i < 40; i++) w.add({ ...base, process_name: `svc${i}`, value: BigInt(i + 1), frames: [fn(`f${i}`, 0x100 + i), fn('main', 0x20)] });
  const profiles = w.finish(0n, 2_000_000_000n);
  const whole = toProfilesRequest(profiles).length;
  const cases: [string, number, number][] = [['fits: one request', whole, 1], ['a third of it', Math.ceil(whole / 3), 4], ['below one profile: one each', 10, 40]];
  for (const [name, max, requests] of cases) {
    const rs = toProfilesRequests(profiles, {}, max);
    assert.equal(rs.length, requests, name);
    assert.equal(rs.reduce((a, r) => a + r.items, 0), profiles.length, name);
    if (requests < profiles.length) for (const r of rs) assert.ok(r.payload.length <= max, `${name}: ${r.payload.length} <= ${max}`);
    // each request's Resources in order: every service once over all requests
    const services = rs.flatMap((r) => msgs(r.payload, 1).map((rp) => msgs(one(rp, 1) as Buffer, 1).map((kv) => (one(one(kv, 2) as Buffer, 1) as Buffer).toString())[0]));
    assert.deepEqual(services, profiles.map((p) => p.service), name);
  }
});
