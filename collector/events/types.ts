/**
 * Event type ids: must line up with enum rf_event_type in bpf/events.h
 * (test/unit/layout.test.ts compiles the header and checks every value).
 */
export const EventType = {
  RUNQ_LATENCY: 1,
  CTX_SWITCH: 2,
  BLOCK_RQ: 3,
  TCP_CONNECT: 4,
  TCP_ACCEPT: 5,
  TCP_RETRANSMIT: 6,
  TCP_DROP: 7,
  /** Drain benchmarks only: has no schema, so the transcoder counts it as unknown. */
  BENCH: 8,
  /** fs: one file syscall on a regular file (struct rf_fs_event + path bytes; 9 and 10 are L7's, outside this table). */
  FS_IO: 11,
  /** Size of the per-type drop counter array. */
  MAX: 16,
} as const;

export type EventTypeId = (typeof EventType)[keyof typeof EventType];

/** Bytes of the length prefix in front of each record of a native batch: [u32 length LE][u32 0]. */
export const BATCH_RECORD_PREFIX = 8;
/** Records in a native batch start on this alignment. */
export const BATCH_RECORD_ALIGN = 8;
