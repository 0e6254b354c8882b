/**
 * Load-time settings of the BPF programs: the `const volatile` globals declared
 * in bpf/common.bpf.h, encoded as the bytes the native loader writes into each
 * object's .rodata before load. Names and sizes must match common.bpf.h; the
 * loader rejects a name or size it does not find.
 */
export interface Filters {
  /** Only this process (tgid). */
  pid?: number;
  uid?: number;
  comm?: string;
  /** cgroup v2 id (the inode number of the cgroup's directory). */
  cgroupId?: bigint;
  /** Latency events shorter than this are not emitted. */
  minLatencyNs?: bigint;
}

export interface LoadSettings extends Filters {
  /** The collector's own tgid: its own scheduling and I/O are never traced. */
  selfTgid: number;
  /** Wake the consumer when this much data is pending (default 1 MiB). */
  wakeupBytes?: number;
}

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

/** L7 capture settings: globals only bpf/l7.bpf.c declares. */
export interface L7Settings {
  /** Payload bytes copied per syscall (default 4096; at most RF_L7_MAX_CAPTURE). */
  captureBytes?: number;
  /** Only sockets with this local or remote port (0 = any). */
  port?: number;
  /**
   * In-kernel protocol gate: data records a TCP connection gets to show
   * HTTP/1, the HTTP/2 preface or port 53 before it is no longer captured;
   * UDP only DNS. Default 4; 0 turns the gate off (everything captured).
   */
  detectRecords?: number;
  /**
   * HTTP/1 framed and paired in BPF, one exchange record per request and
   * response (rf_l7_kernel_parse, default on); off: every connection is
   * captured per syscall and parsed here, as before (the A/B switch, and the
   * way out should a kernel refuse the parsing code).
   */
  kernelParse?: boolean;
  /**
   * Tests only: BPF emits both the capture records and the exchange records
   * of HTTP/1 connections (rf_l7_dual, default off), for a differential test
   * that decodes them itself; the collector would report each message twice.
   */
  dual?: boolean;
  /** Head bytes of each message an exchange record carries (rf_l7_head_bytes, default 512, at most RF_L7_MAX_HEAD). */
  headBytes?: number;
  /**
   * Not a BPF global: the collector's sweep claims a request BPF holds with
   * no response for this long and reports it alone (REQ_ONLY; default 2 s).
   */
  handoverNs?: bigint;
}

/**
 * The l7 object's globals. The in-kernel parsing ones are written only when
 * set: left out, the object's own defaults hold (on, not dual, 512 head
 * bytes), and an object built before they existed still loads (the loader
 * refuses a global it does not find).
 */
export function encodeL7Settings(s: L7Settings): Record<string, Buffer> {
  const port = Buffer.alloc(2);
  port.writeUInt16LE(s.port ?? 0);
  return {
    rf_l7_capture_bytes: u32(s.captureBytes ?? 4096),
    rf_filter_port: port,
    rf_l7_detect_records: Buffer.from([Math.min(255, Math.max(0, s.detectRecords ?? 4))]),
    ...(s.kernelParse === undefined ? {} : { rf_l7_kernel_parse: Buffer.from([s.kernelParse ? 1 : 0]) }),
    ...(s.dual === undefined ? {} : { rf_l7_dual: Buffer.from([s.dual ? 1 : 0]) }),
    ...(s.headBytes === undefined ? {} : { rf_l7_head_bytes: u32(s.headBytes) }),
  };
}

export function encodeSettings(s: LoadSettings): Record<string, Buffer> {
  const comm = Buffer.alloc(16);
  if (s.comm) comm.write(s.comm, 'utf8');
  return {
    rf_filter_tgid: u32(s.pid ?? 0),
    rf_filter_uid: u32(s.uid ?? 0xffffffff),
    rf_filter_comm: comm,
    rf_filter_cgroup_id: u64(s.cgroupId ?? 0n),
    rf_min_latency_ns: u64(s.minLatencyNs ?? 0n),
    rf_self_tgid: u32(s.selfTgid),
    rf_wakeup_bytes: u64(BigInt(s.wakeupBytes ?? 1 << 20)),
  };
}

/** Profiling settings: globals only bpf/prof_maps.bpf.h (profile, offcpu) and bpf/offcpu.bpf.c declare. */
export interface ProfileSettings {
  /** Counts per thread (pid) instead of per process (rf_prof_per_thread, default off). */
  perThread?: boolean;
  /** Off-CPU blocks shorter than this are not counted (rf_offcpu_min_ns, default 1 ms; offcpu only). */
  offcpuMinNs?: bigint;
}

/** The globals of the profile (`offcpu: false`) or offcpu object. */
export function encodeProfileSettings(s: ProfileSettings, offcpu: boolean): Record<string, Buffer> {
  return {
    rf_prof_per_thread: Buffer.from([s.perThread ? 1 : 0]),
    ...(offcpu ? { rf_offcpu_min_ns: u64(s.offcpuMinNs ?? 1_000_000n) } : {}),
  };
}
