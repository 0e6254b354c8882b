/** One record's key work: l7Key per record (fresh string) vs the encoder's per-connection memo, then the sink's and kafkajs's partitioner lookups and kafkajs's byteLength; CPU ns per record, best of 15. */
import { keyPartitioner } from '../../collector/kafka-sink.ts';
import { l7Key } from '../../collector/l7/tracker.ts';
import { createKeyMemo } from '../../collector/l7/encode.ts';
const memo = createKeyMemo();
const ctxs = Array.from({ length: 16 }, (_, i) => ({ transport: 'TCP', local_addr: '127.0.0.1', local_port: i % 2 ? 8080 : 40000 + (i >> 1), remote_addr: '127.0.0.1', remote_port: i % 2 ? 40000 + (i >> 1) : 8080 })) as never[];
const N = 200_000;
function run(useMemo: boolean) {
  const part = keyPartitioner();
  const c0 = process.cpuUsage();
  let sum = 0;
  for (let i = 0; i < N; i++) {
    const c = ctxs[i & 15] as unknown as { transport: 'TCP'; local_addr: string; local_port: number; remote_addr: string; remote_port: number };
    const key = useMemo ? memo.key(c as never) : l7Key(c.transport, c.local_addr, c.local_port, c.remote_addr, c.remote_port);
    const r = { topic: 't', key, value: Buffer.alloc(0), type: 9 };
    sum += part(r, 6) + part(r, 6); // the sink's and kafkajs's partitioner (same kind of Map lookup)
    sum += Buffer.byteLength(key); // kafkajs sizes the key
  }
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / N;
}
let a = Infinity, b = Infinity;
for (let r = 0; r < 15; r++) { a = Math.min(a, run(false)); b = Math.min(b, run(true)); }
console.log({ per_record_ns_fresh_key: Math.round(a), per_record_ns_memo_key: Math.round(b), built: memo.built });
