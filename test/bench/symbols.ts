/**
 * Symboliser figures (collector/symbols): addresses symbolised per second,
 * cold (a new symboliser: /proc/PID/maps, ELF tables and kallsyms read first)
 * and cached, for stacks like the profiler's: 16 user frames of this node
 * process (its own ELF, ~100 k functions) and 16 kernel frames.
 *
 *   bash scripts/with-node.sh node test/bench/symbols.ts        (prints one JSON object)
 *
 * `symbolsBench()` is exported so test/bench/bench.ts can add it as a part.
 */
import fs from 'node:fs';
import { createSymbolizer, openElf, parseMaps, readKallsyms } from '../../collector/symbols/index.ts';

function nodeFunctionAddresses(n: number): bigint[] {
  const exe = fs.readlinkSync('/proc/self/exe');
  const elf = openElf(exe);
  const maps = parseMaps(fs.readFileSync('/proc/self/maps', 'latin1')).filter((m) => m.path === exe && m.exec);
  const out: bigint[] = [];
  // addresses spread over node's executable text, each inside some function
  for (const m of maps) {
    const step = Math.max(64, Math.floor((m.end - m.start) / n));
    for (let a = m.start + 17; a < m.end && out.length < n; a += step) {
      if (elf.lookupFileOffset(a - m.start + m.pgoff)) out.push(BigInt(a));
    }
  }
  return out;
}

function kernelAddresses(n: number): bigint[] {
  const text = fs.readFileSync('/proc/kallsyms', 'latin1').split('\n').filter((l) => / [tT] /.test(l) && !l.includes('['));
  const out: bigint[] = [];
  const step = Math.max(1, Math.floor(text.length / n));
  for (let i = 0; i < text.length && out.length < n; i += step) {
    const a = BigInt(`0x${text[i]!.split(' ')[0]}`);
    if (a !== 0n) out.push(a + 3n);
  }
  return out;
}

export function symbolsBench(): Record<string, number> {
  const user = nodeFunctionAddresses(4096);
  const kernel = kernelAddresses(4096);
  const stacks = (addrs: bigint[]): bigint[][] => Array.from({ length: Math.floor(addrs.length / 16) }, (_, i) => addrs.slice(i * 16, i * 16 + 16));
  const us = stacks(user), ks = stacks(kernel);

  const t0 = process.hrtime.bigint();
  const cold = createSymbolizer();
  for (const s of us) cold.symbolize(process.pid, s, false);
  for (const s of ks) cold.symbolize(0, s, true);
  const coldS = Number(process.hrtime.bigint() - t0) / 1e9;

  const rounds = 20;
  const t1 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) for (const s of us) cold.symbolize(process.pid, s, false);
  const userS = Number(process.hrtime.bigint() - t1) / 1e9;
  const t2 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) for (const s of ks) cold.symbolize(0, s, true);
  const kernelS = Number(process.hrtime.bigint() - t2) / 1e9;
  const st = cold.stats();
  const t3 = process.hrtime.bigint();
  readKallsyms();
  const kallsymsMs = Number(process.hrtime.bigint() - t3) / 1e6;
  return {
    symbols_cold_addresses_per_s: Math.round((user.length + kernel.length) / coldS),
    symbols_cold_s: +coldS.toFixed(3),
    symbols_cached_user_addresses_per_s: Math.round((rounds * us.length * 16) / userS),
    symbols_cached_kernel_addresses_per_s: Math.round((rounds * ks.length * 16) / kernelS),
    symbols_kallsyms_parse_ms: Math.round(kallsymsMs),
    symbols_unknown_frames: st.unknown,
    symbols_bytes_held: st.bytes,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(symbolsBench(), null, 2) + '\n');
}
