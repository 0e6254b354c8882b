/**
 * The fs native tests' reading of fs.bpf.o's ring records: struct rf_fs_event
 * (bpf/events.h, 128 bytes after the 48-byte header's start) + path_len path
 * bytes, decoded by offset (these tests check the kernel side alone, not the
 * collector's schema-driven transcoder).
 */
import { forEachRecord } from '../../../native/index.ts';

export const RF_EV_FS_IO = 11;
/** enum rf_fs_flag */
export const F = { PATH_CUT: 1, DIRECT: 2, SYNC: 4, DELETED: 8, PATH_FAILED: 16 } as const;
const HEADER = 48;
/** sizeof(struct rf_fs_event) */
export const EVENT = 128;

export interface FsRecord {
  tgid: number; comm: string; latencyNs: bigint; offset: bigint; len: bigint; ret: bigint; ino: bigint;
  storageBytes: bigint; dev: number; fd: number; pathLen: number; mntLen: number; op: number; cache: number;
  flags: number; pathDropped: number; fsType: string; path: string; length: number;
}

/** Appends every fs record of a native batch to out. */
export function decodeFsRecords(batch: Buffer, out: FsRecord[]): void {
  forEachRecord(batch, (o, length) => {
    if (batch[o] !== RF_EV_FS_IO) return;
    const pathLen = batch.readUInt16LE(o + HEADER + 56);
    out.push({
      tgid: batch.readUInt32LE(o + 8),
      comm: batch.subarray(o + 32, o + 48).toString('latin1').replace(/\0.*$/s, ''),
      latencyNs: batch.readBigUInt64LE(o + HEADER),
      offset: batch.readBigUInt64LE(o + HEADER + 8),
      len: batch.readBigUInt64LE(o + HEADER + 16),
      ret: batch.readBigInt64LE(o + HEADER + 24),
      ino: batch.readBigUInt64LE(o + HEADER + 32),
      storageBytes: batch.readBigUInt64LE(o + HEADER + 40),
      dev: batch.readUInt32LE(o + HEADER + 48),
      fd: batch.readUInt32LE(o + HEADER + 52),
      pathLen,
      mntLen: batch.readUInt16LE(o + HEADER + 58),
      op: batch[o + HEADER + 60]!,
      cache: batch[o + HEADER + 61]!,
      flags: batch[o + HEADER + 62]!,
      pathDropped: batch[o + HEADER + 63]!,
      fsType: batch.subarray(o + HEADER + 64, o + EVENT).toString('latin1').replace(/\0.*$/s, ''),
      path: batch.subarray(o + EVENT, o + EVENT + pathLen).toString('latin1'),
      length,
    });
  });
}
