/**
 * `--stdout`: a record that cannot be printed loses only itself; a stream
 * that fails (EPIPE once `| head` has gone) is reported once and ends
 * nothing by itself; both counted by reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createStdoutSink } from '../../collector/stdout-sink.ts';
import type { OutRecord } from '../../collector/sink.ts';

const rec = (s: string, type = 1): OutRecord => ({ topic: 't', key: 'k', type, value: Buffer.from(s) });

test('stdout sink: a record whose line cannot be made is skipped and counted; its batch is printed', () => {
  let text = '';
  const out = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb(); } });
  const lines: string[] = [];
  const sink = createStdoutSink(out, (r) => {
    if (r.value.toString() === 'bad') throw new Error('no schema with fingerprint 0x00');
    return r.value.toString();
  }, { log: (l) => lines.push(l) });
  assert.doesNotThrow(() => sink.enqueue([rec('a'), rec('bad', 2), rec('b'), rec('bad', 2)]));
  assert.equal(text, 'a\nb\n');
  assert.deepEqual(Object.fromEntries(sink.counters.drops!), { format_error: 2 });
  assert.deepEqual(Object.fromEntries(sink.counters.lost!), { 2: 2 });
  assert.equal(sink.counters.produced.get(1), 2);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /could not be printed.*format_error/);
});

test('stdout sink: EPIPE is reported once; later records are counted as output_error; flush says false', async () => {
  const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  const out = new Writable({ highWaterMark: 4, write(_chunk, _enc, cb) { setImmediate(() => cb(epipe)); } });
  const errors: Error[] = [];
  const sink = createStdoutSink(out, (r) => r.value.toString(), { onError: (e) => errors.push(e) });
  sink.enqueue([rec('first line, more than the high-water mark')]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as { code?: string }).code, 'EPIPE');
  assert.equal(sink.pending(), 0, 'nothing held: the collector is not left paused');
  sink.enqueue([rec('x'), rec('y', 3)]);
  assert.deepEqual(Object.fromEntries(sink.counters.drops!), { output_error: 2 });
  assert.equal(await sink.flush(1000), false);
  assert.equal(errors.length, 1);
});
