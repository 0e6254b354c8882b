/** ringflow.profile.stacks.v1 records for the renderer tests (folded, pprof, flamegraph). */
import type { ProfileStackRecord } from '../../collector/profile/records.ts';

type F = ProfileStackRecord['frames'][number];

/** A user frame of /bin/app named fn (or unnamed when fn is ''). */
export const u = (fn: string, address = 0x401000n, module = '/bin/app', offset = address - 0x400000n): F =>
  ({ address, module, offset, function: fn, file: null, line: null, kind: 'USER' });
export const k = (fn: string, address = -0x7e000000n): F =>
  ({ address, module: '[kernel.kallsyms]', offset: 0x1000n, function: fn, file: null, line: null, kind: 'KERNEL' });
export const j = (fn: string, file: string, line: number, address = 0x7f0000001000n): F =>
  ({ address, module: '[jit]', offset: 0x1000n, function: fn, file, line, kind: 'JIT' });

/** leaf first, as records carry frames */
export function rec(frames: F[], value: bigint, over: Partial<ProfileStackRecord> = {}): ProfileStackRecord {
  return {
    kind: 'ONCPU', window_start_ns: 0n, window_end_ns: 1_000_000_000n, pid: 0, tgid: 42, comm: 'app', process_name: 'app',
    value, sample_hz: 99, state: 'RUNNING', user_stack: 'OK', kernel_stack: frames.some((f) => f.kind === 'KERNEL') ? 'OK' : 'NONE',
    frames, ...over,
  };
}
