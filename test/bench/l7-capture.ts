/**
 * The kernel side of `collect --signals l7` alone, for the benchmark's
 * http_overhead_capture_ratio: loads bpf/l7.bpf.o through the addon and drains
 * its ring on the native thread, counting records and discarding them (no
 * parsing, no Avro, no Kafka). What the traced server loses with this running
 * is the cost of the syscall tracepoints, the payload copies and the ring;
 * the rest of http_overhead_ratio is the collector's user space and the broker.
 * Spawned by l7.ts; prints "capturing" when attached and, on SIGINT, one JSON
 * line {records, kernel_drops}.
 */
import { Session, countRecords } from '../../native/index.ts';
import { encodeSettings, encodeL7Settings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { L7_CAPTURE_TYPE } from '../../collector/l7/capture.ts';

const session = new Session({});
session.addObject(objectPath('l7'), { ...encodeSettings({ selfTgid: process.pid }), ...encodeL7Settings({}) });
let records = 0;
session.start((batch) => {
  records += countRecords(batch);
});
process.stderr.write('capturing\n');
process.once('SIGINT', () => {
  void session.stop().then(() => {
    process.stdout.write(`${JSON.stringify({ records, kernel_drops: Number(session.drops()[L7_CAPTURE_TYPE] ?? 0n) })}\n`);
    process.exit(0);
  });
});
