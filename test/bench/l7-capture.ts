/**
 * The kernel side of `collect --signals l7` alone, for the benchmark's
 * http_overhead_capture_ratio: loads bpf/l7.bpf.o through the addon and drains
 * its ring on the native thread, counting records and discarding them (no
 * parsing, no Avro, no Kafka). What the traced server loses with this running
 * is the cost of the syscall tracepoints, the payload copies and the ring;
 * the rest of http_overhead_ratio is the collector's user space and the broker.
 * Spawned by l7.ts; prints "capturing" when attached and, on SIGINT, one JSON
 * line {records, kernel_drops}.
 *
 * For l7.ts's wakeupCost only (unset: as above):
 *   L7_CAPTURE_US_PER_RECORD  busy-wait this long per record in the batch
 *                             callback: a consumer that lags as the collector does
 *   L7_CAPTURE_WAKEUP_BYTES   rf_wakeup_bytes (the addon's default: a quarter of
 *                             the ring, at most 1 MiB, as the collector runs it)
 */
import { Session, countRecords, u64 } from '../../native/index.ts';
import { encodeSettings, encodeL7Settings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { L7_CAPTURE_TYPE } from '../../collector/l7/capture.ts';

const usPerRecord = Number(process.env.L7_CAPTURE_US_PER_RECORD ?? 0);
const wakeup = process.env.L7_CAPTURE_WAKEUP_BYTES;
const session = new Session({});
session.addObject(objectPath('l7'), {
  ...encodeSettings({ selfTgid: process.pid }), ...encodeL7Settings({}),
  ...(wakeup === undefined ? {} : { rf_wakeup_bytes: u64(BigInt(wakeup)) }),
});
let records = 0;
session.start((batch) => {
  const n = countRecords(batch);
  records += n;
  if (usPerRecord > 0) {
    const t = performance.now();
    while (performance.now() - t < (n * usPerRecord) / 1000);
  }
});
process.stderr.write('capturing\n');
process.once('SIGINT', () => {
  void session.stop().then(() => {
    process.stdout.write(`${JSON.stringify({ records, kernel_drops: Number(session.drops()[L7_CAPTURE_TYPE] ?? 0n) })}\n`);
    process.exit(0);
  });
});
