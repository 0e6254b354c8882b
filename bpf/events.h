/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * events.h: the wire contract between the BPF programs and user space.
 *
 * Every ring buffer record is one of the structs below and starts with
 * struct rf_header, whose first byte is the event type. Each struct is
 * mirrored field for field (same names, same order, _pad fields left out)
 * by schemas/<signal>.<event>.avsc; test/unit/layout.test.ts compiles this
 * header with gcc and checks every offset and size against the schema's
 * "c" annotations, so the two cannot drift apart.
 *
 * Rules that keep the layout identical for clang -target bpf and gcc x86_64:
 * natural alignment, explicit _pad fields, no packed structs, no bitfields.
 * Build with -Wpadded -Werror (see bpf/Makefile) so implicit padding fails.
 *
 * Adding an event: add its type below, its struct, its .avsc, and register
 * it in collector/signals/registry.ts.
 */
#ifndef RINGFLOW_EVENTS_H
#define RINGFLOW_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define RF_COMM_LEN 16

/* Must line up with EventType in collector/events/types.ts. */
enum rf_event_type {
	RF_EV_RUNQ_LATENCY   = 1, /* sched: wake-up or preemption -> switched in */
	RF_EV_CTX_SWITCH     = 2, /* sched: task switched back in after off-CPU time */
	RF_EV_BLOCK_RQ       = 3, /* block: request issue -> complete */
	RF_EV_TCP_CONNECT    = 4, /* tcp: SYN_SENT -> ESTABLISHED */
	RF_EV_TCP_ACCEPT     = 5, /* tcp: accept()/accept4() returned a connection */
	RF_EV_TCP_RETRANSMIT = 6, /* tcp: tcp:tcp_retransmit_skb */
	RF_EV_TCP_DROP       = 7, /* tcp: skb:kfree_skb of a TCP segment */
	RF_EV_BENCH          = 8, /* bench only: fixed-size record for drain benchmarks */
	RF_EV_FS_IO          = 11, /* fs: one file syscall on a regular file, enter -> exit (9, 10: L7, below) */
	RF_EV_MAX            = 16, /* size of the per-type drop counter array */
};

/* Common header, 48 bytes. */
struct rf_header {
	__u8  type;       /* enum rf_event_type */
	__u8  _pad0;
	__u16 cpu;        /* CPU the event was recorded on */
	__u32 pid;        /* kernel pid = thread id */
	__u32 tgid;       /* kernel tgid = process id */
	__u32 uid;
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;  /* cgroup v2 id of the task */
	char  comm[RF_COMM_LEN];
};

/* How a task came to wait on the run queue. */
enum rf_runq_kind {
	RF_RUNQ_WAKEUP     = 0, /* sched_wakeup */
	RF_RUNQ_WAKEUP_NEW = 1, /* sched_wakeup_new (fork) */
	RF_RUNQ_PREEMPTED  = 2, /* switched out while still runnable */
};

/* Header describes the task that waited; emitted when it is switched in. */
struct rf_runq_event {
	struct rf_header hdr;
	__u64 latency_ns;  /* enqueue (wake-up/preemption) -> on CPU */
	__u32 prev_pid;    /* task it replaced on the CPU */
	__u8  kind;        /* enum rf_runq_kind */
	__u8  _pad[3];
};

/* Header describes the task switched back in; emitted at that switch-in. */
struct rf_ctx_switch_event {
	struct rf_header hdr;
	__u64 off_cpu_ns;  /* switched out -> switched back in */
	__u32 prev_pid;    /* task it replaced on the CPU */
	__u8  voluntary;   /* 1 if it left the CPU blocked (prev_state != TASK_RUNNING) */
	__u8  _pad[3];
};

enum rf_block_op {
	RF_BLOCK_READ    = 0,
	RF_BLOCK_WRITE   = 1,
	RF_BLOCK_FLUSH   = 2,
	RF_BLOCK_DISCARD = 3,
	RF_BLOCK_OTHER   = 4,
};

/* Header describes the task that submitted the request (block_io_start), else the one that first issued it. */
struct rf_block_event {
	struct rf_header hdr;
	__u64 latency_ns;   /* block_rq_issue -> block_rq_complete */
	__u64 sector;
	__u32 bytes;        /* request size at issue */
	__u32 dev_major;
	__u32 dev_minor;
	__u32 queue_depth;  /* requests in flight on the device at issue, this one included */
	__s32 error;        /* blk_status_t at completion, 0 = ok */
	__u8  op;           /* enum rf_block_op */
	__u8  _pad[3];
};

/* Connection addresses. IPv4 addresses use the first 4 bytes of saddr/daddr. */
struct rf_tcp_tuple {
	__u8  saddr[16];
	__u8  daddr[16];
	__u16 sport;        /* host byte order */
	__u16 dport;        /* host byte order */
	__u16 family;       /* AF_INET (2) or AF_INET6 (10) */
	__u8  state;        /* TCP state (include/net/tcp_states.h), see each event */
	__u8  _pad;
};

/* Header describes the process that called connect(). state = ESTABLISHED. */
struct rf_tcp_connect_event {
	struct rf_header hdr;
	struct rf_tcp_tuple tuple;
	__u64 latency_ns;   /* SYN_SENT -> ESTABLISHED */
};

/* Header describes the process that accepted. saddr/sport = local side. */
struct rf_tcp_accept_event {
	struct rf_header hdr;
	struct rf_tcp_tuple tuple;
	__u32 backlog;      /* sk_ack_backlog of the listener after accept */
	__u32 max_backlog;  /* sk_max_ack_backlog of the listener */
};

/*
 * Header describes the socket's owner (the process that connected, listened or
 * accepted it) when known, else whatever task was current (often softirq
 * context; see bpf/tcp.bpf.c). state = connection state.
 */
struct rf_tcp_retransmit_event {
	struct rf_header hdr;
	struct rf_tcp_tuple tuple;
};

/*
 * Header describes the socket's owner when known, else whatever task was
 * current (see bpf/tcp.bpf.c); state = 0 when the socket is unknown.
 */
struct rf_tcp_drop_event {
	struct rf_header hdr;
	struct rf_tcp_tuple tuple;
	__u32 reason;       /* enum skb_drop_reason */
	__u32 _pad2;
};

/* Benchmarks only: the same size as a typical record, emitted per getpid() of one tgid. */
struct rf_bench_event {
	struct rf_header hdr;
	__u64 seq;
	__u64 _pad[1];
};

/*
 * File-system calls on regular files (issue 12; bpf/fs.bpf.c; design:
 * docs/design/fs.md). Syscall tracepoints only (no kprobes here): the enter
 * program keeps a call only if its fd is a regular file (S_ISREG of the
 * inode) and the task passes the filters; the exit program emits one record.
 *
 * Record = struct rf_fs_event + path_len bytes of the file's path (no NUL),
 * resolved in BPF from the struct file: the dentry chain up to the mount's
 * root, then across mounts up to the task's namespace root, last components
 * kept when it is longer than the walk's bound (RF_FS_F_PATH_CUT,
 * path_dropped components lost at the front; never silently).
 */
enum rf_fs_op {
	RF_FS_READ            = 0,
	RF_FS_WRITE           = 1,
	RF_FS_PREAD           = 2,  /* pread64 */
	RF_FS_PWRITE          = 3,  /* pwrite64 */
	RF_FS_READV           = 4,
	RF_FS_WRITEV          = 5,
	RF_FS_PREADV          = 6,  /* preadv, preadv2 */
	RF_FS_PWRITEV         = 7,  /* pwritev, pwritev2 */
	RF_FS_FSYNC           = 8,
	RF_FS_FDATASYNC       = 9,
	RF_FS_SYNC_FILE_RANGE = 10,
	RF_FS_OPEN            = 11, /* openat, openat2: the file is the returned fd's */
	RF_FS_FTRUNCATE       = 12,
	RF_FS_FALLOCATE       = 13,
	RF_FS_RENAME          = 14, /* rename, renameat, renameat2 */
	RF_FS_UNLINK          = 15, /* unlink, unlinkat */
	RF_FS_OP_NR           = 16,
};

/* Whether the call was served without blocking: an estimate from the task's own counters (docs/design/fs.md section 4). */
enum rf_fs_cache {
	RF_FS_CACHE_UNKNOWN = 0, /* a counter it needs is missing on this kernel */
	RF_FS_CACHED        = 1, /* never slept (nvcsw unchanged): page cache, or dirty page cache for writes */
	RF_FS_BLOCKED_IO    = 2, /* slept and ioac.read_bytes grew: read from storage (storage_bytes) */
	RF_FS_BLOCKED_OTHER = 3, /* slept without storage reads: a lock, writeback throttling, a sync */
};

enum rf_fs_flag {
	RF_FS_F_PATH_CUT    = 1,  /* the path is longer than the walk's bound: its last components are kept */
	RF_FS_F_DIRECT      = 2,  /* O_DIRECT on the file */
	RF_FS_F_SYNC        = 4,  /* O_SYNC or O_DSYNC on the file */
	RF_FS_F_DELETED     = 8,  /* the file was unlinked (d_unlinked): the path is the one it had (d_path would add " (deleted)") */
	RF_FS_F_PATH_FAILED = 16, /* reading the dentry chain failed: path_len = 0 */
};

#define RF_FS_TYPE_LEN 16
#define RF_FS_PATH_MAX 512 /* default and hard maximum of path bytes per record */

/* Header describes the task that made the call; ts_ns = syscall exit. */
struct rf_fs_event {
	struct rf_header hdr;
	__u64 latency_ns;      /* sys_enter -> sys_exit of the call */
	__u64 offset;          /* file offset the call started at (p*: the argument; else f_pos at enter; 0 for sync/open/unlink) */
	__u64 len;             /* bytes asked for (count, iovec sum when known, range length), 0 when none */
	__s64 ret;             /* the syscall's return: bytes moved, the new fd, 0, or -errno */
	__u64 ino;             /* the file's inode number */
	__u64 storage_bytes;   /* growth of the task's ioac.read_bytes across the call (bytes read from storage) */
	__u32 dev;             /* the file system's s_dev (kernel encoding: major << 20 | minor) */
	__u32 fd;              /* the fd the call used (OPEN: the returned one) */
	__u16 path_len;        /* path bytes that follow the struct */
	__u16 mnt_len;         /* the path's first mnt_len bytes are its mount point ("/" = 1) */
	__u8  op;              /* enum rf_fs_op */
	__u8  cache;           /* enum rf_fs_cache */
	__u8  flags;           /* enum rf_fs_flag bits */
	__u8  path_dropped;    /* components dropped at the front when RF_FS_F_PATH_CUT (saturating) */
	char  fs_type[RF_FS_TYPE_LEN]; /* s_type->name: ext4, xfs, tmpfs, overlay, fuse... NUL-padded */
};

/*
 * L7 capture (bpf/l7.bpf.c): one record per socket read/write syscall that
 * moved data, and one when a tracked connection is closed. Unlike the *_event
 * structs above, these are not transcoded field by field to Avro: user space
 * decodes them (collector/l7/capture.ts) and feeds the payload to the L7
 * parsers, whose output is what is produced. So the type is a constant of its
 * own, outside enum rf_event_type (which lists the schema-backed events), and
 * the struct is not named rf_*_event; it still indexes rf_drops.
 */
#define RF_EV_L7_CAPTURE      9
/* Hard maximum of captured payload bytes per record (rf_l7_capture_bytes is clamped to it). */
#define RF_L7_MAX_CAPTURE     16384
/* Default of rf_l7_capture_bytes. */
#define RF_L7_DEFAULT_CAPTURE 4096

/*
 * These constants and enums line up with collector/l7/capture.ts (L7Kind,
 * L7Direction, L7Role, L7Syscall, L7_FLAG), checked by test/unit/layout.test.ts.
 */
enum rf_l7_kind {
	RF_L7_KIND_DATA  = 0, /* a syscall moved total_len bytes; payload follows */
	RF_L7_KIND_CLOSE = 1, /* close() of a tracked connection; captured_len = 0 */
};

enum rf_l7_direction {
	RF_L7_EGRESS  = 0, /* the process wrote/sent */
	RF_L7_INGRESS = 1, /* the process read/received */
};

enum rf_l7_role {
	RF_L7_ROLE_UNKNOWN = 0, /* set up before capture started, or never connect()ed (unconnected UDP) */
	RF_L7_ROLE_CLIENT  = 1, /* the process connect()ed the socket */
	RF_L7_ROLE_SERVER  = 2, /* the socket came from accept()/accept4() */
};

enum rf_l7_syscall {
	RF_L7_SYS_READ     = 1,
	RF_L7_SYS_WRITE    = 2,
	RF_L7_SYS_READV    = 3,
	RF_L7_SYS_WRITEV   = 4,
	RF_L7_SYS_RECVFROM = 5, /* also recv() */
	RF_L7_SYS_SENDTO   = 6, /* also send() */
	RF_L7_SYS_RECVMSG  = 7,
	RF_L7_SYS_SENDMSG  = 8,
	RF_L7_SYS_RECVMMSG = 9,  /* one record per message received */
	RF_L7_SYS_SENDMMSG = 10, /* one record per message sent */
	RF_L7_SYS_CLOSE    = 11,
};

/* flags: bits */
enum rf_l7_flag {
	RF_L7_F_MIDSTREAM   = 1, /* no connect()/accept() seen: tracked from its first data call, offsets count from there */
	RF_L7_F_ADDR_MSG    = 2, /* remote address from the call's sockaddr (UDP sendto/recvfrom/msg_name) */
	RF_L7_F_COPY_FAILED = 4, /* reading the user buffer failed: captured_len is what was copied before */
	RF_L7_F_IOV_LIMIT   = 8, /* more iovecs than are walked: captured_len < min(total_len, limit) */
};

/*
 * Header describes the calling task. Addresses are the socket's: laddr/lport
 * local, raddr/rport remote (for unconnected UDP the remote is the call's
 * sockaddr, flag RF_L7_F_ADDR_MSG). IPv4 uses the first 4 bytes of each.
 * captured_len payload bytes follow the struct (the record is
 * sizeof(struct rf_l7_capture) + captured_len bytes long). A close record has
 * kind RF_L7_KIND_CLOSE, direction egress, and the byte totals in
 * offset (egress) and peer_offset (ingress).
 */
struct rf_l7_capture {
	struct rf_header hdr;
	__u64 conn_id;      /* unique per (tgid, fd) connection lifetime: random << 32 | sequence */
	__u64 offset;       /* bytes seen in this direction before this call; close: total egress */
	__u64 peer_offset;  /* bytes seen in the other direction so far; close: total ingress */
	__u8  laddr[16];
	__u8  raddr[16];
	__u32 fd;
	__u32 total_len;    /* the syscall's return value (bytes moved); 0 for close */
	__u32 captured_len; /* payload bytes that follow: <= min(total_len, rf_l7_capture_bytes) */
	__u16 lport;        /* host byte order */
	__u16 rport;        /* host byte order */
	__u16 family;       /* AF_INET (2) or AF_INET6 (10) */
	__u8  direction;    /* enum rf_l7_direction */
	__u8  syscall;      /* enum rf_l7_syscall */
	__u8  role;         /* enum rf_l7_role */
	__u8  protocol;     /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8  kind;         /* enum rf_l7_kind */
	__u8  flags;        /* enum rf_l7_flag bits */
	/*
	 * bpf_ktime_get_ns() at the call's sys_enter; hdr.ts_ns is its sys_exit.
	 * Span edges need both: bytes sent exist from the send's enter on (a peer
	 * can receive them before the send returns), bytes received only from the
	 * recv's exit (a recv blocks at its enter until they arrive). Close: = ts_ns.
	 */
	__u64 enter_ns;
	/*
	 * HTTP/2 framed in BPF (bpf/l7_h2.h): ncuts struct rf_l7_cut follow the
	 * struct, then the captured_len kept bytes. A cut is a frame payload
	 * (DATA, PING, WINDOW_UPDATE, PRIORITY) that did not leave the kernel;
	 * the call's bytes are kept, cut, kept... in order, and what is past the
	 * last cut and the kept bytes was not captured (as without cuts). 0 for
	 * every other record.
	 */
	__u16 ncuts;
	__u16 _pad2[3];
};

/* One cut of a capture record: len bytes from position at of the call's bytes (ascending, disjoint). */
struct rf_l7_cut {
	__u32 at;
	__u32 len;
};

/* Most cuts per record (RF_L7_H2_CUT_LIMIT counts a call that had more: the rest is kept up to the capture size). */
#define RF_L7_MAX_CUTS 256

/*
 * HTTP/2 framing in BPF (bpf/l7_h2.h): indexes of the per-CPU counter array
 * rf_l7_h2 (__u64 per CPU). None is a loss by itself: a record whose framing
 * was lost goes out uncut (as before), and what user space then misses it
 * counts itself (collector/l7/http2.ts). Lines up with L7_H2 in
 * collector/l7/capture.ts.
 */
enum rf_l7_h2_counter {
	RF_L7_H2_RECORDS     = 0, /* capture records of framed HTTP/2 directions (with or without cuts) */
	RF_L7_H2_CUT_BYTES   = 1, /* payload bytes that did not leave the kernel */
	RF_L7_H2_CUT_LIMIT   = 2, /* calls with more than RF_L7_MAX_CUTS cuts: the rest kept up to the capture size */
	RF_L7_H2_KEPT_OVER   = 3, /* calls whose kept bytes exceeded the capture size: the rest not captured */
	RF_L7_H2_FRAME_LOST  = 4, /* a frame header failed the check (or the walk could not go on): the direction seeks */
	RF_L7_H2_RESYNCED    = 5, /* a seeking direction found a chain of plausible frames at a call's start */
	RF_L7_H2_NR          = 8,
};

/*
 * Protocol gate of bpf/l7.bpf.c (rf_l7_detect_records): indexes of its per-CPU
 * counter array rf_l7_gate (__u64 per CPU). Not drops: what the gate keeps out
 * of the ring is what user space would have thrown away. Lines up with
 * L7_GATE in collector/l7/capture.ts.
 */
enum rf_l7_gate_counter {
	RF_L7_GATE_ACCEPTED_CONNS = 0, /* TCP connections recognised (HTTP/1, HTTP/2 preface, port 53) */
	RF_L7_GATE_REJECTED_CONNS = 1, /* TCP connections given up on after rf_l7_detect_records data records */
	RF_L7_GATE_UDP_SKIPPED    = 2, /* UDP datagrams neither on port 53 nor with a DNS-like header */
	RF_L7_GATE_NR             = 3,
};

/*
 * L7 exchange (bpf/l7.bpf.c, issue 10, docs/design/l7-in-kernel.md): an
 * HTTP/1.x connection is framed and paired in BPF, and ONE record per
 * request/response exchange reaches user space instead of one capture record
 * per syscall. BPF does what needs every byte of the stream (message
 * boundaries: start line, end of head, Content-Length, chunked, no-body
 * rules; the pairing by ordinal; the edge times); user space does what needs
 * one exchange (the heads' method, target, version, status and captured
 * header values: collector/l7/exchange.ts, with http1.ts's head parser).
 * Like rf_l7_capture it is decoded by hand, not transcoded: a constant of its
 * own outside enum rf_event_type; it indexes rf_drops.
 *
 * Record = struct rf_l7_exchange + req_head_len bytes of the request head +
 * resp_head_len bytes of the response head (each from its message's first
 * byte, at most rf_l7_head_bytes, cut flagged).
 */
#define RF_EV_L7_EXCHANGE     10
/* Hard maximum of head bytes per side of an exchange record. */
#define RF_L7_MAX_HEAD        2048
/* Head bytes kept per side by default (rf_l7_head_bytes). */
#define RF_L7_DEFAULT_HEAD    512

/* What the connection's bytes are parsed as in BPF (rf_l7_conn). */
enum rf_l7_app {
	RF_L7_APP_RAW   = 0, /* not parsed in BPF: capture records, as before (HTTP/2, DNS, undecided, kernel parsing off) */
	RF_L7_APP_HTTP1 = 1, /* framed and paired in BPF: exchange records */
	RF_L7_APP_DNS   = 2, /* a DNS/UDP datagram on port 53, paired in BPF by (conn, id, peer): exchange records (bpf/l7_dns.h) */
};

/* How an exchange ended. Lines up with L7Outcome in collector/l7/exchange.ts. */
enum rf_l7_outcome {
	RF_L7_OUT_RESPONDED = 0, /* the request and its response */
	RF_L7_OUT_CLOSED    = 1, /* the request got no response before close(): request fields only */
	RF_L7_OUT_RESP_ONLY = 2, /* a response whose request is unknown (pending table full, request before capture) */
	RF_L7_OUT_LOST      = 3, /* framing was lost mid-exchange: what was known is reported */
	RF_L7_OUT_REQ_ONLY  = 4, /* no response yet after the hand-over time: request fields only (the response, if it comes, is RESP_ONLY) */
};

/* flags: bits. Lines up with L7_XFLAG in collector/l7/exchange.ts. */
enum rf_l7_xflag {
	RF_L7_X_REQ_HEAD_CUT     = 1,  /* the request head is longer than the bytes that follow */
	RF_L7_X_RESP_HEAD_CUT    = 2,  /* the same for the response head */
	RF_L7_X_RESP_END_UNKNOWN = 4,  /* the response's end was not framed (emitted at the end of its head): resp_end_ns is that time */
	RF_L7_X_RESYNCED         = 8,  /* first exchange after framing was lost and found again */
	RF_L7_X_MIDSTREAM        = 16, /* the connection was tracked from mid-stream (no connect()/accept() seen) */
	RF_L7_X_UPGRADE          = 32, /* CONNECT or Upgrade: the connection is a tunnel after this exchange */
	RF_L7_X_COPY_FAILED      = 64, /* reading a user buffer failed during the exchange */
};

struct rf_l7_exchange {
	struct rf_header hdr;   /* the task that completed the exchange; ts_ns = emit time */
	__u64 conn_id;          /* as rf_l7_capture's */
	__u64 req_start_ns;     /* edge of the syscall that moved the request's first byte (send: enter, recv: exit) */
	__u64 req_end_ns;       /* edge of the syscall that moved its last byte */
	__u64 resp_start_ns;    /* the same for the response; 0 when there is none */
	__u64 resp_end_ns;
	__u64 req_body_bytes;   /* body bytes as framed (Content-Length, chunk sizes), copied or not; DNS: the datagram's size */
	__u64 resp_body_bytes;
	__u8  laddr[16];
	__u8  raddr[16];
	__u32 seq;              /* ordinal of the request on its connection from capture start (0, 1, 2...); DNS: the message id */
	__u32 req_pid;          /* thread / process that moved the request's first byte */
	__u32 req_tgid;
	__u32 fd;
	__u16 lport;            /* host byte order */
	__u16 rport;
	__u16 family;           /* AF_INET (2) or AF_INET6 (10) */
	__u16 status;           /* status code from the response's start line, 0 if none; DNS: the header's RCODE */
	__u16 req_head_len;     /* request head bytes that follow the struct */
	__u16 resp_head_len;    /* response head bytes that follow those */
	__u8  app;              /* enum rf_l7_app */
	__u8  role;             /* enum rf_l7_role */
	__u8  protocol;         /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8  outcome;          /* enum rf_l7_outcome */
	__u8  flags;            /* enum rf_l7_xflag bits */
	__u8  retries;          /* DNS: queries sent again with the same key (saturating); the exchange starts at the first */
	__u8  _pad[6];
};

/*
 * In-kernel parsing counters: indexes of the per-CPU array rf_l7_parse
 * (__u64 per CPU). Lines up with L7_PARSE in collector/l7/exchange.ts. The
 * ones marked (loss) are data not reported, and reach ringflow.dropped and
 * ringflow.collector.losses through the stats record's kernel_losses.
 */
enum rf_l7_parse_counter {
	RF_L7_P_EXCHANGES       = 0,  /* exchange records emitted (all outcomes) */
	RF_L7_P_H1_HEAD_TOO_LONG = 1, /* a head over 16 KiB: the direction re-synchronises (loss) */
	RF_L7_P_H1_BAD_START    = 2,  /* a message start that is no request/status line (loss) */
	RF_L7_P_H1_BAD_FRAMING  = 3,  /* unparsable or conflicting Content-Length/Transfer-Encoding, bad chunk line (loss) */
	RF_L7_P_H1_UPGRADE      = 4,  /* connections that became tunnels (CONNECT, 101): no longer parsed */
	RF_L7_P_H1_RESYNCED     = 5,  /* directions that found a start line again after a loss */
	RF_L7_P_H1_END_UNKNOWN  = 6,  /* responses whose end was not framed (RF_L7_X_RESP_END_UNKNOWN) */
	RF_L7_P_PENDING_FULL    = 7,  /* requests not kept for pairing (pending table full): their response goes out RESP_ONLY (loss) */
	RF_L7_P_RESP_ORPHAN     = 8,  /* responses with no request to pair and nothing to report (loss) */
	RF_L7_P_CONCURRENT      = 9,  /* two threads moving bytes in one direction at once: framing dropped (loss) */
	RF_L7_P_MMSG_OVER_LIMIT = 10, /* recvmmsg/sendmmsg messages past the first RF_L7_MAX_MMSG of a call: not seen (loss) */
	RF_L7_P_NR              = 16,
};

/*
 * CPU profiling and off-CPU stacks (issue 11; bpf/profile.bpf.c). Not ring
 * buffer records: counts are aggregated in the kernel in the hash
 * rf_prof_counts (struct rf_prof_key -> __u64 samples or blocked ns) and
 * drained by user space every interval (native rf_session_profile_drain).
 *
 * Generations and epochs: <P>_ctl[0] (struct rf_prof_ctl) holds a
 * generation g that user space increments at every drain, and a stack epoch e
 * that it increments every few drains (one for profile, several for offcpu).
 * Counts go to keys with slot = g & 1, stacks to the stack map
 * <P>_stacks<e % 3>. A drain that starts epoch e + 1 first clears the stack
 * map of e + 1 (= e - 2: no key still to be read names it); every drain moves
 * to g + 1, waits until no program can still be running with g (membarrier:
 * synchronize_rcu), then reads and deletes every key of slot g & 1 with the
 * frames of the stack maps they name. Nothing writes those keys any more and
 * the maps they name are not cleared before the next epoch, so no increment
 * is lost or counted twice. An off-CPU block names the stack map of the epoch
 * it started in; one that lasted into the epoch after next finds that map
 * cleared, and its time is counted without a stack (RF_PROF_STACK_EXPIRED,
 * and RF_PROF_L_OFFCPU_EXPIRED). Lines up with collector/profile/drain.ts.
 */
struct rf_prof_ctl {
	__u64 generation;  /* count slot = generation & 1 */
	__u64 stack_epoch; /* stack map = stack_epoch % 3 */
	__u64 epoch_since; /* generation at which stack_epoch last moved (user space only) */
};

enum rf_prof_kind {
	RF_PROF_ONCPU  = 0, /* value = samples of the cpu-clock event */
	RF_PROF_OFFCPU = 1, /* value = ns blocked */
};

/* Task state at switch-out (sched_switch prev_state), off-CPU only. */
enum rf_prof_state {
	RF_PROF_ST_RUNNING  = 0, /* on-CPU samples */
	RF_PROF_ST_PREEMPTED = 1, /* switched out while runnable: waited for a CPU */
	RF_PROF_ST_SLEEPING = 2, /* S, TASK_INTERRUPTIBLE: a lock, futex, socket, sleep */
	RF_PROF_ST_DISK     = 3, /* D, TASK_UNINTERRUPTIBLE: I/O, some kernel locks */
	RF_PROF_ST_OTHER    = 4, /* anything else (stopped, traced, parked...) */
};

/* Stack id values that are not ids (>= 0 is an id in the slot's stack map). */
#define RF_PROF_STACK_NONE    (-1) /* no stack of that kind (kernel thread: no user stack; sample in user mode: no kernel stack) */
#define RF_PROF_STACK_LOST    (-2) /* bpf_get_stackid failed: counted in rf_prof_lost */
#define RF_PROF_STACK_EXPIRED (-3) /* off-CPU block that outlived its stack epoch and the next: its stack map was cleared */

#define RF_PROF_MAX_FRAMES 127 /* PERF_MAX_STACK_DEPTH: a stack map value is __u64[127] */

struct rf_prof_key {
	__u32 tgid;
	__u32 pid;              /* thread id when per-thread counts are asked for, else 0 */
	__s32 user_stack_id;    /* id in rf_prof_stacks<stack_map>, or RF_PROF_STACK_* */
	__s32 kernel_stack_id;
	__u8  kind;             /* enum rf_prof_kind */
	__u8  slot;             /* generation & 1 of the count */
	__u8  stack_map;        /* 0..2: stack epoch % 3 of the stacks */
	__u8  state;            /* enum rf_prof_state */
	__u8  _pad[4];
};

/* Indexes of the per-CPU counter array rf_prof_lost (__u64); reach kernel_losses. */
enum rf_prof_lost_reason {
	RF_PROF_L_USTACK_COLLISION = 0, /* bpf_get_stackid -EEXIST for a user stack: the sample kept, its stack lost */
	RF_PROF_L_KSTACK_COLLISION = 1, /* the same for a kernel stack */
	RF_PROF_L_STACK_MAP_FULL   = 2, /* bpf_get_stackid -ENOMEM (or any other error) */
	RF_PROF_L_COUNTS_FULL      = 3, /* rf_prof_counts full: the sample or block lost */
	RF_PROF_L_OFFCPU_EXPIRED   = 4, /* off-CPU time reported without its stack (RF_PROF_STACK_EXPIRED) */
	RF_PROF_L_OFFCPU_UNTRACKED = 5, /* a switch-out whose task entry could not be made (task storage: no memory, or busy on this CPU): that block not counted */
	RF_PROF_L_NR               = 8,
};

#endif /* RINGFLOW_EVENTS_H */
