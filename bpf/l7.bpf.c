/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * l7.bpf.c: the kernel half of L7 capture. Payload bytes of socket I/O
 * syscalls on TCP and UDP sockets (AF_INET/AF_INET6), one record
 * (struct rf_l7_capture + payload, RF_EV_L7_CAPTURE) per call that moved data;
 * HTTP/1, HTTP/2/gRPC and DNS are parsed from them in user space.
 *
 * Syscall tracepoints only (no kprobes/fentry on the target kernels):
 * - data: read, write, readv, writev, recvfrom, sendto, recvmsg, sendmsg,
 *   recvmmsg, sendmmsg. sys_enter resolves the fd to a socket (CO-RE walk of
 *   current->files) and parks the arguments per thread; sys_exit records,
 *   because only then is the byte count known and a read's buffer filled.
 * - lifecycle: connect (role client) and accept/accept4 (role server) start a
 *   tracked connection; close of a tracked one emits a close record.
 *
 * Connections are keyed by (tgid, fd). A connection first seen at a data call
 * (set up before loading, or a socket never connect()ed) is tracked from then
 * on with role unknown and RF_L7_F_MIDSTREAM. Each connection counts the bytes
 * seen per direction so user space can spot lost records (offset gaps).
 *
 * Needs kernel 5.19+ (ring buffer dynptrs; task storage and BTF-typed current
 * from tracepoint programs are older). Measured on the 6.18 test VM, per
 * syscall hook, on top of the ~55 ns an empty program costs there: ~25 ns when
 * the process filters reject it; ~140 ns at sys_enter for a non-socket fd of
 * a traced process; ~330 ns at sys_enter and ~800 ns (64 bytes) to ~1.4 us
 * (4 KiB) at sys_exit for a captured call.
 *
 * Protocol gate (rf_l7_detect_records = N, default 4; 0 turns it off and
 * everything is captured as before). User space only parses HTTP/1, HTTP/2
 * and DNS, so the rest (a Kafka broker's, a database's traffic) is not copied
 * to the ring past its first records:
 * - A TCP connection starts undecided. Its data records are emitted (user
 *   space needs the first bytes: an HTTP/2 server writes its binary SETTINGS
 *   frame before it reads the client preface), and each one's first bytes
 *   (<= 16, from the copy in the scratch buffer) are matched against cheap
 *   signatures: an HTTP/1 request method and SP (the methods
 *   collector/l7/http1.ts sniffs), 'HTTP/1.', the HTTP/2 preface
 *   'PRI * HTTP/2.0', or port 53 on either side (DNS over TCP). A match
 *   accepts the connection: everything is captured from then on. After N
 *   data records without a match (both directions count, including one that
 *   had no bytes to look at) it is rejected: that Nth record is the last one.
 *   A rejected connection emits nothing more, not even its close record (user
 *   space gave up on it at N records anyway, and its offsets stop mattering);
 *   its state stays (LRU) only so that the decision sticks, and sys_enter
 *   looks it up and parks nothing for it, so its calls skip the exit work and
 *   the copy. close() deletes it as before.
 * - UDP is decided per datagram, like user space does: one is captured when
 *   either port is 53 or its first 12 bytes pass a DNS header check (QDCOUNT
 *   = 1 big-endian at bytes 4-5, opcode 0 in byte 2 bits 3-6), which needs
 *   only a 12-byte copy before the full one. Skipped datagrams still count in
 *   the socket's offsets, so its close record's totals include them (offsets
 *   of UDP records may jump; user space does not use them for UDP).
 * Decisions are counted per CPU in rf_l7_gate (enum rf_l7_gate_counter), not
 * in rf_drops: nothing is lost that user space would have kept. A connection
 * first seen mid-stream (before loading) is judged by whatever its first
 * records hold, so e.g. HTTP/1 caught inside a long body may be rejected.
 * Measured on the 6.18 test VM (64-byte send/recv on loopback, bpf_stats):
 * a rejected connection costs ~430 ns at sys_enter (the lookup adds ~25 ns
 * over an ungated one) and ~125 ns at sys_exit, against ~850 ns at sys_exit
 * and a ring record when captured.
 *
 * HTTP/1 in the kernel (rf_l7_kernel_parse, issue 10,
 * docs/design/l7-in-kernel.md): a TCP connection the gate accepts by an
 * HTTP/1 start line becomes RF_L7_APP_HTTP1 from that very record. Its bytes
 * then go through the framing machine of l7_h1.h (one per direction, in
 * rf_l7_conns; heads scanned in the copied window, bodies skipped by length)
 * and each request is kept in rf_l7_pending, keyed (conn_id, ordinal), with
 * its head bytes, until its response ends: then ONE struct rf_l7_exchange
 * record (+ both heads) goes out per exchange and observed end, and no
 * capture record (rf_l7_dual = 1: both). close() completes a response read
 * until close and sends the requests still waiting as CLOSED. Give-ups are
 * counted in rf_l7_parse (enum rf_l7_parse_counter) and the side looks for a
 * syscall that starts with a start line. HTTP/2, DNS over TCP and undecided
 * connections stay RAW (capture records) as before.
 *
 * DNS over UDP in the kernel (same switch, bpf/l7_dns.h): a datagram with
 * port 53 on either side and a plausible DNS header is paired by
 * (conn_id, id, peer) in rf_l7_pending and reported as ONE exchange record
 * (app RF_L7_APP_DNS) per lookup and observed end, retransmits counted in it.
 *
 * HTTP/2 in the kernel (same switch, bpf/l7_h2.h, l7_h2_walk.h): a TCP
 * connection the gate accepts by the client preface keeps capture records
 * (streams are multiplexed; HPACK stays in user space), but each direction
 * is framed here across syscalls and only frame headers and the payloads
 * user space parses are copied: DATA, PING, WINDOW_UPDATE and PRIORITY
 * payloads are listed as cuts in the record (struct rf_l7_cut), never read.
 * Framing lost: the direction goes out uncut until a call starts a chain of
 * plausible frames (counted in rf_l7_h2).
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>

/* l7_h1.h reads the copied window (rf_l7_scratch.data) through this: the mask keeps every index in it. */
#define RF_H1_BYTE(buf, i) ((buf)[(i) & (2 * RF_L7_MAX_CAPTURE - 1)])
/*
 * Eight bytes at i: the window's bytes are below RF_L7_MAX_CAPTURE, so a word
 * that starts there is in the buffer (2 * MAX) whole; one that would start
 * past it holds no window byte, and the mask only keeps it in bounds.
 */
#define RF_H1_U64(buf, i) (*(const __u64 *)((buf) + ((i) & (RF_L7_MAX_CAPTURE - 1))))
/*
 * l7_h1.h's line scans as open-coded iterators (kernel 6.4+; design §4:
 * they converge in a few passes where a bounded loop is walked step by step).
 * The iterator is destroyed however the loop is left (cleanup attribute).
 */
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;
#define RF_H1_FOR(j, end)                                                                          \
	for (struct bpf_iter_num ___it __attribute__((aligned(8), cleanup(bpf_iter_num_destroy))), \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (end)),                  \
					      (void)bpf_iter_num_destroy, (void *)0);               \
	     ({                                                                                    \
		     int *___t = bpf_iter_num_next(&___it);                                        \
		     (___t && ((j) = *___t, (j) >= 0 && (j) < (end)));                             \
	     });)
#include "l7_h1.h"
#include "l7_h2.h"

#define AF_INET    2
#define AF_INET6   10
#define S_IFMT     00170000
#define S_IFSOCK   0140000
#define MSG_PEEK   0x2
#define MSG_TRUNC  0x20
#define EINPROGRESS 115

/*
 * iovecs walked per call: UIO_MAXIOV, the most a readv/writev/sendmsg/recvmsg
 * takes (a bpf_loop: the walk's length does not multiply the program, but the
 * verifier re-walks the callback until the state it is entered with converges,
 * ~64 k of the 1 M instruction budget per exit program here, and over it when
 * built with -mcpu=v3: docs/design/l7-in-kernel.md); messages per
 * recvmmsg/sendmmsg: a bounded loop (those past it are counted as drops).
 */
#define RF_L7_MAX_IOV  1024
#define RF_L7_MAX_MMSG 8

/* internal pseudo-syscall for the parked connect() arguments */
#define RF_L7_SYS_CONNECT 100

/* Load-time settings of this object (set by user space like common.bpf.h's). */
const volatile __u32 rf_l7_capture_bytes = RF_L7_DEFAULT_CAPTURE; /* clamped to RF_L7_MAX_CAPTURE */
const volatile __u16 rf_filter_port = 0; /* 0 = any; else the local or the remote port */
/* Protocol gate: data records a TCP connection gets to be recognised in; 0 = no gate. */
const volatile __u8 rf_l7_detect_records = 4;
/*
 * In-kernel HTTP/1 (issue 10): a TCP connection the gate accepts by an HTTP/1
 * start line is framed and paired here and reported as one exchange record
 * per request (struct rf_l7_exchange) instead of a capture record per
 * syscall. On by default (the collector decodes them: collector/l7/exchange.ts);
 * 0 (collect --l7-kernel-parse off): every connection stays RAW, capture
 * records parsed in user space, as before.
 */
const volatile __u8 rf_l7_kernel_parse = 1;
/* 1: HTTP1 connections also emit today's capture records (differential tests). */
const volatile __u8 rf_l7_dual = 0;
/* Head bytes an exchange record carries per side (clamped to RF_L7_MAX_HEAD). */
const volatile __u32 rf_l7_head_bytes = RF_L7_DEFAULT_HEAD;

#define RF_L7_DNS_PORT 53

/* rf_l7_conn.gate */
enum rf_l7_gate_state {
	RF_L7_GATE_UNDECIDED = 0,
	RF_L7_GATE_ACCEPTED  = 1,
	RF_L7_GATE_REJECTED  = 2,
};

/* Gate decisions, per CPU (summed by whoever reads them, e.g. bpftool map dump name rf_l7_gate). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_L7_GATE_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_l7_gate SEC(".maps");

static __always_inline void rf_l7_gate_count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&rf_l7_gate, &which);

	if (n)
		*n += 1;
}

/*
 * User-space ABI structs (LP64), read with bpf_probe_read_user. Declared here
 * rather than taken from vmlinux.h so they carry no CO-RE relocations: their
 * layout is the syscall ABI, not a kernel internal.
 */
struct rf_uiovec {
	__u64 base;
	__u64 len;
};

struct rf_umsghdr {
	__u64 name;
	__s32 namelen;
	__u32 _pad;
	__u64 iov;
	__u64 iovlen;
	__u64 control;
	__u64 controllen;
	__u32 flags;
	__u32 _pad2;
};

struct rf_ummsghdr {
	struct rf_umsghdr hdr;
	__u32 len; /* bytes sent/received for this message */
	__u32 _pad;
};

/* sockaddr_in and sockaddr_in6 overlaid: family and port first in both */
struct rf_usockaddr {
	__u16 family;
	__u16 port;     /* network byte order */
	__u32 addr4;    /* sockaddr_in: the address; sockaddr_in6: flowinfo */
	__u8  addr6[16];
	__u32 scope_id;
};

/* Arguments parked at sys_enter for the thread's sys_exit. */
struct rf_l7_args {
	__u64 sk;      /* struct sock * the fd resolved to */
	__u64 buf;     /* buffer, iovec array, msghdr, or mmsghdr array */
	__u64 count;   /* buffer length, iovec count, or vlen */
	__u64 addr;    /* recvfrom/sendto: sockaddr */
	__u64 addrlen; /* sendto: the length; recvfrom: int * (read at exit) */
	__u64 enter_ns; /* bpf_ktime_get_ns() at sys_enter: the record's enter_ns */
	__u32 fd;
	__u8  sys;     /* enum rf_l7_syscall or RF_L7_SYS_CONNECT */
	__u8  protocol;
	__u8  nocopy;  /* TCP recv with MSG_TRUNC: the bytes were discarded, not copied */
	__u8  _pad;
};

/*
 * Task-local storage, not a hash keyed by pid_tgid: found through the task
 * itself (no hashing, no bucket lock), and freed with the task.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rf_l7_args);
} rf_l7_args SEC(".maps");

struct rf_l7_key {
	__u32 tgid;
	__u32 fd;
};

/* A socket's addresses as struct rf_l7_capture reports them. */
struct rf_l7_tuple {
	__u8  laddr[16];
	__u8  raddr[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
	__u8  protocol;
	__u8  _pad;
};

/*
 * The tuple is read from the socket once, when the connection is first seen:
 * connect() and accept() have bound both ends by the time they return (a
 * connect() in progress included), and a re-connect() starts a new connection.
 */
struct rf_l7_conn {
	__u64 id;
	__u64 sk;    /* detects an fd reused for another socket without a close() seen */
	__u64 tx;    /* bytes egress so far */
	__u64 rx;    /* bytes ingress so far */
	struct rf_l7_tuple t;
	__u8  role;  /* enum rf_l7_role */
	__u8  flags; /* RF_L7_F_MIDSTREAM */
	__u8  gate;  /* enum rf_l7_gate_state (TCP) */
	__u8  looked; /* TCP data records seen while undecided */
	__u8  app;   /* enum rf_l7_app: RAW (capture records) or HTTP1 (framed here, exchange records) */
	__u8  req_dir; /* HTTP1: the direction (enum rf_l7_direction) requests move in */
	__u8  xfl[2]; /* HTTP1, per h1[] side: enum rf_l7_xflag bits for that side's next message (RESYNCED) */
	/* HTTP1: [0] the requests side, [1] the responses side (bpf/l7_h1.h) */
	struct rf_h1 h1[2];
	/* HTTP/2 frame state per direction (enum rf_l7_direction; bpf/l7_h2.h): RF_H2_NONE unless the gate saw a preface */
	struct rf_h2dir h2[2];
};

/*
 * LRU: a process that exits without close() leaves its entries behind (the
 * kernel closes its fds without a syscall); they age out here.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rf_l7_key);
	__type(value, struct rf_l7_conn);
} rf_l7_conns SEC(".maps");

/*
 * Payload bytes are copied here first: the record's length is only known after
 * the copy, and a ring buffer reservation of a variable size is a dynptr,
 * which user memory cannot be read into directly before kernel 6.16
 * (bpf_probe_read_user_dynptr). Twice the maximum so that "offset < MAX,
 * length <= MAX" is provably in bounds; 32 KiB is also the largest per-CPU
 * value the kernel allows, which is why the record header is not in here.
 */
struct rf_l7_scratch {
	__u8 data[2 * RF_L7_MAX_CAPTURE];
};

/*
 * rf_l7_emit's record header and tuple, off the stack: the verifier adds the
 * stack of a global function to its caller's, and 512 bytes for both together
 * is tight (recvmmsg's loop plus rf_l7_emit measured 544 on kernel 6.18.44).
 */
struct rf_l7_emit_scratch {
	struct rf_l7_capture r;
	struct rf_l7_tuple t;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_emit_scratch);
} rf_l7_emit_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_scratch);
} rf_l7_scratch SEC(".maps");

/* low half of connection ids; the high half is random per connection */
__u64 rf_l7_conn_seq = 0;

/* What one record describes and where its payload is. */
struct rf_l7_call {
	__u64 sk;
	__u64 bytes;   /* the return value, or one message's msg_len */
	__u64 addr;    /* user sockaddr of the call, 0 if none */
	__s64 addrlen; /* its length as the kernel left it */
	__u64 buf;     /* the payload: a buffer of buflen bytes when iovcnt == 0 ... */
	__u64 buflen;
	__u64 iov;     /* ... else an array of iovcnt iovecs */
	__u64 iovcnt;
	__u64 enter_ns; /* the call's sys_enter time */
	__u32 fd;
	__u8  sys;
	__u8  protocol;
	__u8  direction;
	__u8  nocopy;  /* the user buffer does not hold the bytes: capture none */
	__u32 captured; /* set by rf_l7_emit for rf_l7_h1_feed: bytes of the call in the window ... */
	__u32 base;    /* ... from this offset of the call's bytes on */
	__u64 now;     /* ... and the call's exit time */
};

/* A pointer read as a number, typed for direct (fault-safe, read-only) loads; kernel 6.2+. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* The struct sock of an inet TCP/UDP socket fd of the current task, else NULL. */
static __always_inline struct sock *rf_l7_fd_sock(__u32 fd, __u8 *protocol)
{
	/*
	 * Direct loads through the BTF pointer of current (fault-safe PROBE_MEM
	 * loads, no helper call): this runs on every read/write of a traced
	 * process, sockets or not, so each hop saved counts.
	 */
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file **fds, *file, *f;
	struct socket *sock;
	struct sock *sk, *ks;
	__u16 family, proto;
	umode_t mode;

	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/*
	 * From here direct loads again: bpf_rdonly_cast (which the verifier
	 * turns into a move) gives the read pointers a BTF type, where a
	 * BPF_CORE_READ is a helper call per hop (5 of them, ~0.1 us at every
	 * enter). sk itself stays the value read by a helper: it is parked in
	 * task storage as a number.
	 */
	f = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));
	/* only a socket's file has an S_IFSOCK inode and a struct socket in private_data */
	mode = f->f_inode->i_mode;
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = f->private_data;
	if (!sock)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	ks = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct sock));
	family = ks->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	/* MPTCP, SCTP, UDP-Lite, raw... are left out */
	proto = ks->sk_protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	*protocol = proto;
	return sk;
}

static __always_inline bool rf_l7_port_ok(__u16 lport, __u16 rport)
{
	return !rf_filter_port || lport == rf_filter_port || rport == rf_filter_port;
}

/* At enter: TCP ports are final; UDP's remote may come from the call's sockaddr (checked at exit). */
static __always_inline bool rf_l7_port_maybe(struct sock *sk, __u8 protocol)
{
	if (!rf_filter_port || protocol == IPPROTO_UDP)
		return true;
	return rf_l7_port_ok(BPF_CORE_READ(sk, __sk_common.skc_num),
			     bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport)));
}

static __always_inline __u64 rf_l7_new_id(void)
{
	/* XADD without a fetch: -mcpu=v1 cannot return the old value, so read first */
	__u64 seq = rf_l7_conn_seq;

	__sync_fetch_and_add(&rf_l7_conn_seq, 1);
	return ((__u64)bpf_get_prandom_u32() << 32) | (__u32)seq;
}

/* Parks a data syscall's arguments when filters pass and fd is a tracked kind of socket. */
static __always_inline int rf_l7_enter(__u32 fd, __u8 sys, __u64 buf, __u64 count,
				       __u64 addr, __u64 addrlen, __u64 msg_flags)
{
	struct rf_l7_args a = {}, *p;
	struct sock *sk;
	__u8 protocol = 0;

	/* ids and comm first: the cheapest rejection for untraced processes */
	if (!rf_current_passes())
		return 0;
	sk = rf_l7_fd_sock(fd, &protocol);
	/* connect(): the ports are known at exit, where they are checked */
	if (!sk || (sys != RF_L7_SYS_CONNECT && !rf_l7_port_maybe(sk, protocol)))
		return 0;
	/* a rejected TCP connection: nothing to park, its exit has nothing to do */
	if (rf_l7_detect_records && protocol == IPPROTO_TCP && sys != RF_L7_SYS_CONNECT) {
		struct rf_l7_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd };
		struct rf_l7_conn *st = bpf_map_lookup_elem(&rf_l7_conns, &k);

		if (st && st->sk == (__u64)sk && st->gate == RF_L7_GATE_REJECTED)
			return 0;
	}
	a.sk = (__u64)sk;
	a.buf = buf;
	a.count = count;
	a.addr = addr;
	a.addrlen = addrlen;
	a.fd = fd;
	a.sys = sys;
	a.protocol = protocol;
	/* TCP with MSG_TRUNC discards what it returns (UDP's is the datagram's full length) */
	a.nocopy = protocol == IPPROTO_TCP && (msg_flags & MSG_TRUNC);
	/*
	 * After the filters (untraced calls pay no clock read), still before the
	 * call moves a byte: a send's bytes cannot reach the peer before this
	 * time, which is what puts a server span inside its client span.
	 */
	a.enter_ns = bpf_ktime_get_ns();
	p = bpf_task_storage_get(&rf_l7_args, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (p)
		*p = a;
	return 0;
}

/*
 * Takes the arguments this thread parked at the enter of syscall sys; false
 * when there are none (not a traced socket, or filtered out).
 */
static __always_inline bool rf_l7_take(struct rf_l7_args *a, __u8 sys)
{
	struct rf_l7_args *p;

	/* a filtered-out process parked nothing: skip the lookup */
	if (!rf_current_passes())
		return false;
	p = bpf_task_storage_get(&rf_l7_args, bpf_get_current_task_btf(), 0, 0);
	if (!p || !p->sys)
		return false;
	*a = *p;
	p->sys = 0;
	/* only the exit of the syscall that parked them takes them */
	return a->sys == sys;
}

/* Local and remote address of the socket; the remote is zero for unconnected UDP. */
static __always_inline void rf_l7_sock_tuple(struct rf_l7_tuple *t, struct sock *sk, __u8 protocol)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(t, 0, sizeof(*t));
	/* explicit sizes: BPF_CORE_READ_INTO would copy sizeof(*t->laddr) = 1 byte */
	if (family == AF_INET) {
		bpf_core_read(t->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(t->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	t->family = family;
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->protocol = protocol;
}

static __always_inline void rf_l7_put_tuple(struct rf_l7_capture *r, struct rf_l7_tuple *t)
{
	__builtin_memcpy(r->laddr, t->laddr, sizeof(r->laddr));
	__builtin_memcpy(r->raddr, t->raddr, sizeof(r->raddr));
	r->lport = t->lport;
	r->rport = t->rport;
	r->family = t->family;
	r->protocol = t->protocol;
}

/*
 * UDP: the remote address of this datagram from the call's sockaddr
 * (sendto dest_addr, recvfrom src_addr, msg_name). An AF_INET sockaddr on a
 * dual-stack AF_INET6 socket becomes v4-mapped, so family describes both.
 */
static __always_inline void rf_l7_msg_addr(struct rf_l7_capture *r, __u64 uaddr, __s64 len)
{
	struct rf_usockaddr sa = {};

	if (!uaddr || len < 16)
		return;
	if (bpf_probe_read_user(&sa, len >= (__s64)sizeof(sa) ? sizeof(sa) : 16, (void *)uaddr))
		return;
	if (sa.family == AF_INET && r->family == AF_INET) {
		__builtin_memset(r->raddr, 0, sizeof(r->raddr));
		__builtin_memcpy(r->raddr, &sa.addr4, 4);
	} else if (sa.family == AF_INET && r->family == AF_INET6) {
		__builtin_memset(r->raddr, 0, sizeof(r->raddr));
		r->raddr[10] = 0xff;
		r->raddr[11] = 0xff;
		__builtin_memcpy(r->raddr + 12, &sa.addr4, 4);
	} else if (sa.family == AF_INET6 && r->family == AF_INET6 && len >= (__s64)sizeof(sa)) {
		__builtin_memcpy(r->raddr, sa.addr6, 16);
	} else {
		return;
	}
	r->rport = bpf_ntohs(sa.port);
	r->flags |= RF_L7_F_ADDR_MSG;
}

/* The state of one iovec walk, on the caller's stack, shared with its bpf_loop callback. */
struct rf_l7_iov_walk {
	__u8 *data;
	__u64 iov;
	__u64 copied;
	__u64 want;
	__u8 flags;
	__u8 _pad[7];
};

/*
 * One iovec of a walk (a bpf_loop callback): copies what is still wanted of
 * iovec i. Returns 1 to stop the walk (enough copied, or a read failed).
 */
static long rf_l7_iov_step(__u32 i, void *ctx)
{
	struct rf_l7_iov_walk *w = ctx;
	struct rf_uiovec v;
	__u64 n, off;

	if (w->copied >= w->want)
		return 1;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)(w->iov + (__u64)i * sizeof(v)))) {
		w->flags |= RF_L7_F_COPY_FAILED;
		return 1;
	}
	n = w->want - w->copied;
	if (v.len < n)
		n = v.len;
	/* copied < want <= RF_L7_MAX_CAPTURE, a power of two: the mask only informs the verifier */
	off = w->copied & (RF_L7_MAX_CAPTURE - 1);
	barrier_var(n);
	if (n > RF_L7_MAX_CAPTURE)
		n = RF_L7_MAX_CAPTURE;
	if (bpf_probe_read_user(w->data + off, n, (void *)v.base)) {
		w->flags |= RF_L7_F_COPY_FAILED;
		return 1;
	}
	w->copied += n;
	return 0;
}

/*
 * Copies want bytes from a user buffer, or from an iovec array when iovcnt > 0.
 * The iovecs are walked with bpf_loop, so that every one of them (up to
 * UIO_MAXIOV, what the kernel itself accepts) counts, not just a fixed first
 * few: gRPC C-core (Python grpcio) sends the preface, SETTINGS, HEADERS and
 * DATA in one sendmsg of ~28 iovecs, and a walk of the first 16 cut its
 * HEADERS block short, which desynced HPACK for the rest of the connection.
 * Returns the bytes copied.
 */
static __always_inline __u32 rf_l7_copy(__u8 *data, __u64 buf, __u64 iov, __u64 iovcnt,
					__u32 want, __u8 *flags)
{
	struct rf_l7_iov_walk w = {};
	__u64 n;

	if (!iovcnt) {
		n = want;
		/* 64-bit and behind a barrier, so the bound the verifier sees is on what is passed */
		barrier_var(n);
		if (n > RF_L7_MAX_CAPTURE)
			n = RF_L7_MAX_CAPTURE;
		if (bpf_probe_read_user(data, n, (void *)buf)) {
			*flags |= RF_L7_F_COPY_FAILED;
			return 0;
		}
		return n;
	}
	w.data = data;
	w.iov = iov;
	w.want = want;
	n = iovcnt < RF_L7_MAX_IOV ? iovcnt : RF_L7_MAX_IOV;
	bpf_loop(n, rf_l7_iov_step, &w, 0);
	*flags |= w.flags;
	if (w.copied < want && !(w.flags & RF_L7_F_COPY_FAILED))
		*flags |= RF_L7_F_IOV_LIMIT;
	return w.copied;
}

static __always_inline struct rf_l7_scratch *rf_l7_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rf_l7_scratch, &zero);
}

/* A new connection's value is built here: with its HTTP/1 state it is too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_conn);
} rf_l7_conn_stage SEC(".maps");

/* A new tracked connection of the current process (replacing any state fd had). */
static __always_inline struct rf_l7_conn *rf_l7_conn_start(__u32 fd, __u64 sk, struct rf_l7_tuple *t,
							   __u8 role, __u8 flags)
{
	struct rf_l7_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd };
	struct rf_l7_conn *st;
	__u32 zero = 0;

	st = bpf_map_lookup_elem(&rf_l7_conn_stage, &zero);
	if (!st)
		return NULL;
	__builtin_memset(st, 0, sizeof(*st));
	st->id = rf_l7_new_id();
	st->sk = sk;
	st->t = *t;
	st->role = role;
	st->flags = flags;
	bpf_map_update_elem(&rf_l7_conns, &k, st, BPF_ANY);
	return bpf_map_lookup_elem(&rf_l7_conns, &k);
}

/* Do the first n bytes of h (zero-padded) start with the n characters of p? */
static __always_inline bool rf_l7_has_prefix(const __u8 *h, const char *p, int n)
{
	__u8 d = 0;

	/* no early exit, so that it unrolls: n is a constant at every call */
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < n)
			d |= h[i] ^ (__u8)p[i];
	return !d;
}

#define RF_L7_PREFIX(h, lit) rf_l7_has_prefix(h, lit, sizeof(lit) - 1)

/*
 * The gate's TCP signatures on a record's first bytes (zero-padded to 16, so
 * a short record cannot match past its end): an HTTP/1 request method and SP
 * (collector/l7/http1.ts's SNIFF_METHODS), an HTTP/1 status line, the HTTP/2
 * client preface.
 */
static __always_inline bool rf_l7_signature(const __u8 *h)
{
	switch (h[0]) {
	case 'G':
		return RF_L7_PREFIX(h, "GET ");
	case 'H':
		return RF_L7_PREFIX(h, "HEAD ") || RF_L7_PREFIX(h, "HTTP/1.");
	case 'P':
		return RF_L7_PREFIX(h, "POST ") || RF_L7_PREFIX(h, "PUT ") || RF_L7_PREFIX(h, "PATCH ") ||
		       RF_L7_PREFIX(h, "PRI * HTTP/2.0") || RF_L7_PREFIX(h, "PROPFIND ") ||
		       RF_L7_PREFIX(h, "PROPPATCH ") || RF_L7_PREFIX(h, "PURGE ");
	case 'D':
		return RF_L7_PREFIX(h, "DELETE ");
	case 'O':
		return RF_L7_PREFIX(h, "OPTIONS ");
	case 'C':
		return RF_L7_PREFIX(h, "CONNECT ") || RF_L7_PREFIX(h, "COPY ");
	case 'T':
		return RF_L7_PREFIX(h, "TRACE ");
	case 'M':
		return RF_L7_PREFIX(h, "MKCOL ") || RF_L7_PREFIX(h, "MOVE ");
	case 'L':
		return RF_L7_PREFIX(h, "LOCK ");
	case 'U':
		return RF_L7_PREFIX(h, "UNLOCK ");
	case 'S':
		return RF_L7_PREFIX(h, "SEARCH ");
	case 'R':
		return RF_L7_PREFIX(h, "REPORT ");
	}
	return false;
}

/*
 * Does a syscall whose first bytes are h (zero-padded to 16) start an HTTP/1
 * message of this side: a response 'HTTP/1.', a request a method and SP?
 * rf_h1_sig of l7_h1.h says the same (the host test uses it); this one is
 * built on the gate's branch-free prefix tests, which the verifier walks in a
 * few paths (rf_h1_sig's byte loop multiplied them: ~180 k instructions).
 */
static __always_inline bool rf_l7_h1_sig(const __u8 *h, int resp)
{
	bool status = RF_L7_PREFIX(h, "HTTP/1.");

	if (resp)
		return status;
	return !status && rf_l7_signature(h) && !RF_L7_PREFIX(h, "PRI * HTTP/2.0");
}

/* The first min(n, 16) bytes of data, zero-padded to 16: bounded, fixed-size reads only. */
static __always_inline void rf_l7_head(__u8 *h, const __u8 *data, __u64 n)
{
#pragma unroll
	for (int i = 0; i < 16; i++)
		h[i] = i < n ? data[i] : 0;
}

/*
 * The gate's UDP check: the first 12 bytes of the datagram (copied into data,
 * a 12-byte copy rather than the whole payload) as a DNS header with
 * QDCOUNT 1 and opcode 0 (query).
 */
static __always_inline bool rf_l7_dns_header(__u8 *data, struct rf_l7_call *c)
{
	__u32 want = 12;
	__u8 flags = 0, h[16];

	if (c->bytes < want || (!c->iovcnt && c->buflen < want))
		return false;
	if (rf_l7_copy(data, c->buf, c->iov, c->iovcnt, want, &flags) < want)
		return false;
	rf_l7_head(h, data, 12);
	return (h[2] & 0x78) == 0 && h[4] == 0 && h[5] == 1;
}

/* ---- HTTP/1 in the kernel: framing (l7_h1.h), pairing, exchange records ---- */

/* Parsing counters (enum rf_l7_parse_counter), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_L7_P_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_l7_parse SEC(".maps");

static __always_inline void rf_l7_parse_count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&rf_l7_parse, &which);

	if (n)
		*n += 1;
}

/*
 * HTTP/1: (conn_id, ordinal), the peer fields zero. DNS (l7_dns.h):
 * (conn_id, message id, the datagram's peer), since one UDP socket talks to
 * several resolvers or clients. Mirrored by native/src/rf_core.c (the sweep).
 */
struct rf_l7_pkey {
	__u64 conn_id;
	__u32 seq;
	__u16 rport;     /* DNS: the peer's port */
	__u16 _pad;
	__u8  raddr[16]; /* DNS: the peer's address */
};

/*
 * An exchange being built, from its request's first byte (or its response's,
 * when the request is unknown) to its emission. The heads are appended as
 * their bytes go by (a head may be split over syscalls), through a dynptr
 * over head[] (rf_l7_head_put): its bounds are checked when it runs, so the
 * value needs no slack for the verifier to prove "offset < H, length <= H"
 * inside it (a third RF_L7_PEND_HEAD it had, copied in at every insert).
 */
/*
 * Head bytes kept per side in a pending entry: rf_l7_head_bytes is clamped
 * to this too. The entry's size is what each exchange costs (copied in at
 * the request's start, allocated and freed): with 2 KiB heads (6 KiB values)
 * the map cost ~24 us per request, ~10x all the rest; raising it means
 * sizing the map's value at load (bpf_map__set_value_size), not here.
 */
#define RF_L7_PEND_HEAD 512

struct rf_l7_pend {
	struct rf_l7_exchange x;
	__u8 method;   /* enum rf_h1_method of the request: a response to HEAD/CONNECT is framed by it */
	__u8 has_req;  /* the request was seen (else the exchange is RESP_ONLY) */
	__u8 lost;     /* framing was lost during it: LOST */
	__u8 _pad[5];
	__u8 head[2 * RF_L7_PEND_HEAD]; /* [0, H): request head; [H, 2 H): response head */
};

/*
 * A HASH, not an LRU: an LRU would drop a waiting request silently. Not
 * preallocated: 16 k entries of 6 KiB would pin ~100 MiB for what is mostly
 * empty. An insert that fails is counted (RF_L7_P_PENDING_FULL) and the
 * response then goes out as RESP_ONLY.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct rf_l7_pkey);
	__type(value, struct rf_l7_pend);
} rf_l7_pending SEC(".maps");

/* The staging copy of a new pending entry (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_pend);
} rf_l7_pend_stage SEC(".maps");

/*
 * One syscall's walk over its bytes, per CPU rather than on the stack: the
 * bpf_loop callback that carries these values is then re-walked by the
 * verifier with unknown scalars, which converge at once (design §4).
 */
struct rf_l7_h1_walk {
	__u64 edge;    /* this syscall's edge time: a send's enter, a recv's exit */
	__u32 pos;     /* next byte of the syscall */
	__u32 n;       /* bytes it moved */
	__u32 have;    /* bytes of them in the window (rf_l7_scratch.data) */
	__u32 hstart;  /* offset in the call where the current head's bytes (in the window) start */
	__u32 base;    /* offset in the call of the window's first byte */
	__u32 upos;    /* where the last step began (a START step's message begins there) */
	__u64 buf;     /* the call's user buffer, to copy a later window from (0: iovecs, or a copy failed) */
	__u32 seq0;    /* the side's seq before the current step */
	__u32 fd;
	__u8  resp;    /* 1: the responses side */
	__u8  _pad[7];
	__u8  h[16];   /* the syscall's first bytes, zero-padded (gate and resync), off the stack */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_h1_walk);
} rf_l7_h1_walk SEC(".maps");

/* rf_l7_h1_unit: the window is used up with bytes to read (not an l7_h1.h event). */
#define RF_L7_H1_EV_REFILL 16

/* What the walk's callback needs: pointers only, the same at every step. */
struct rf_l7_h1_ctx {
	struct rf_l7_h1_walk *w;
	struct rf_l7_conn *st;
	struct rf_l7_scratch *s;
};

static __always_inline __u32 rf_l7_head_cap(void)
{
	return rf_l7_head_bytes < RF_L7_PEND_HEAD ? rf_l7_head_bytes : RF_L7_PEND_HEAD;
}

static __always_inline struct rf_l7_pend *rf_l7_pend_get(__u64 conn_id, __u32 seq)
{
	struct rf_l7_pkey k = { .conn_id = conn_id, .seq = seq };

	return bpf_map_lookup_elem(&rf_l7_pending, &k);
}

/*
 * A new pending entry for message seq of the connection: the request half
 * when has_req, else a response whose request is unknown; xfl its first
 * flags. Everything the start of a message sets is set in the staged copy,
 * so the entry is not looked up again after the insert (a lookup saved per
 * exchange). Non-zero when the table is full (counted).
 */
static __always_inline int rf_l7_pend_new(struct rf_l7_conn *st, __u32 seq, __u32 fd,
					  __u8 has_req, __u64 start_ns, __u8 xfl)
{
	struct rf_l7_pkey k = { .conn_id = st->id, .seq = seq };
	struct rf_l7_pend *p;
	struct rf_l7_exchange *x;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0;

	p = bpf_map_lookup_elem(&rf_l7_pend_stage, &zero);
	if (!p)
		return 1;
	x = &p->x;
	__builtin_memset(x, 0, sizeof(*x));
	x->hdr.type = RF_EV_L7_EXCHANGE;
	x->conn_id = st->id;
	if (has_req) {
		x->req_start_ns = start_ns;
		x->req_pid = (__u32)id;
		x->req_tgid = id >> 32;
	} else {
		x->resp_start_ns = start_ns;
	}
	__builtin_memcpy(x->laddr, st->t.laddr, sizeof(x->laddr));
	__builtin_memcpy(x->raddr, st->t.raddr, sizeof(x->raddr));
	x->seq = seq;
	x->fd = fd;
	x->lport = st->t.lport;
	x->rport = st->t.rport;
	x->family = st->t.family;
	x->app = RF_L7_APP_HTTP1;
	/*
	 * No connect()/accept() seen (tracked from mid-stream): the side that
	 * sends the requests is the client, as tracker.ts infers it from
	 * capture records.
	 */
	x->role = st->role != RF_L7_ROLE_UNKNOWN ? st->role :
		  st->req_dir == RF_L7_EGRESS ? RF_L7_ROLE_CLIENT : RF_L7_ROLE_SERVER;
	x->protocol = st->t.protocol;
	x->flags = ((st->flags & RF_L7_F_MIDSTREAM) ? RF_L7_X_MIDSTREAM : 0) | xfl;
	p->method = RF_H1_M_NONE;
	p->has_req = has_req;
	p->lost = 0;
	if (bpf_map_update_elem(&rf_l7_pending, &k, p, BPF_ANY)) {
		rf_l7_parse_count(has_req ? RF_L7_P_PENDING_FULL : RF_L7_P_RESP_ORPHAN);
		return 1;
	}
	return 0;
}

/* Appends window bytes [from, to) to a head of p, up to the head cap; past it, flags the cut. */
static __always_inline void rf_l7_head_put(struct rf_l7_pend *p, int resp, const __u8 *data, __u32 from, __u32 to)
{
	__u32 cap = rf_l7_head_cap();
	__u32 cur = resp ? p->x.resp_head_len : p->x.req_head_len;
	struct bpf_dynptr hd;
	__u64 n, off;

	if (to <= from)
		return;
	if (cur >= cap) {
		p->x.flags |= resp ? RF_L7_X_RESP_HEAD_CUT : RF_L7_X_REQ_HEAD_CUT;
		return;
	}
	n = to - from;
	if (n > cap - cur) {
		n = cap - cur;
		p->x.flags |= resp ? RF_L7_X_RESP_HEAD_CUT : RF_L7_X_REQ_HEAD_CUT;
	}
	/* the source's bounds for the verifier: n <= H, from < 2 * MAX_CAPTURE (the window); the head's: the dynptr's */
	off = (cur & (RF_L7_PEND_HEAD - 1)) + (resp ? RF_L7_PEND_HEAD : 0);
	barrier_var(n);
	if (n > RF_L7_PEND_HEAD)
		n = RF_L7_PEND_HEAD;
	if (bpf_dynptr_from_mem(p->head, sizeof(p->head), 0, &hd) ||
	    bpf_dynptr_write(&hd, off, (void *)(data + (from & (RF_L7_MAX_CAPTURE - 1))), n, 0))
		return;
	if (resp)
		p->x.resp_head_len = cur + n;
	else
		p->x.req_head_len = cur + n;
}

/*
 * Sends exchange seq of connection conn_id, entry p (its struct, then its
 * request head, then its response head) and deletes it. Inlined in
 * rf_l7_h1_on, which has just looked p up (no second lookup per exchange),
 * and in rf_l7_x_emit (close()).
 *
 * The collector's sweep claims entries older than --l7-handover with
 * bpf_map_lookup_and_delete_elem (design §2.7: REQ_ONLY), so the entry is
 * copied into the ring record first, then deleted, and the record is
 * submitted only if this delete succeeded: exactly one of the two reports it.
 * A response that starts after the claim finds no entry and goes out
 * RESP_ONLY with the same seq.
 */
static __always_inline int rf_l7_x_send(struct rf_l7_pend *p, __u64 conn_id, __u32 seq, __u32 outcome)
{
	struct rf_l7_pkey k = { .conn_id = conn_id, .seq = seq };
	struct bpf_dynptr dp;
	__u64 rl, sl;

	rf_fill_current(&p->x.hdr, RF_EV_L7_EXCHANGE, bpf_ktime_get_ns());
	p->x.outcome = p->lost ? RF_L7_OUT_LOST : !p->has_req ? RF_L7_OUT_RESP_ONLY : outcome;
	rl = p->x.req_head_len;
	sl = p->x.resp_head_len;
	barrier_var(rl);
	barrier_var(sl);
	if (rl > RF_L7_PEND_HEAD)
		rl = RF_L7_PEND_HEAD;
	if (sl > RF_L7_PEND_HEAD)
		sl = RF_L7_PEND_HEAD;
	if (bpf_ringbuf_reserve_dynptr(&rf_events, sizeof(p->x) + rl + sl, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
		/* claimed by the sweep meanwhile: reported there, not a drop */
		if (bpf_map_delete_elem(&rf_l7_pending, &k) == 0) {
			rf_l7_parse_count(RF_L7_P_EXCHANGES);
			rf_count_drop(RF_EV_L7_EXCHANGE);
		}
		return 0;
	}
	bpf_dynptr_write(&dp, 0, &p->x, sizeof(p->x), 0);
	bpf_dynptr_write(&dp, sizeof(p->x), p->head, rl, 0);
	bpf_dynptr_write(&dp, sizeof(p->x) + rl, p->head + RF_L7_PEND_HEAD, sl, 0);
	/* copied, now ours only if the delete is: p is not read after it */
	if (bpf_map_delete_elem(&rf_l7_pending, &k)) {
		bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
		return 0;
	}
	rf_l7_parse_count(RF_L7_P_EXCHANGES);
	bpf_ringbuf_submit_dynptr(&dp, rf_wakeup_flags(sizeof(p->x) + rl + sl));
	return 0;
}

/* rf_l7_x_send by key: a global function, verified once; close()'s requests still waiting. */
__noinline int rf_l7_x_emit(__u64 conn_id, __u32 seq, __u32 outcome)
{
	struct rf_l7_pkey k = { .conn_id = conn_id, .seq = seq };
	struct rf_l7_pend *p = bpf_map_lookup_elem(&rf_l7_pending, &k);

	if (!p)
		return 0;
	return rf_l7_x_send(p, conn_id, seq, outcome);
}

/* rf_l7_h1_event's answer: exchange seq, entry p, is complete, to be sent with outcome out. */
#define RF_L7_X_READY(p_, seq_, out_) ({ *xp = (p_); *xseq = (seq_); *xout = (out_); 1; })

/*
 * One framing event of the walk w on side w->resp of connection st
 * (window in s). Returns 1 when an exchange is complete (RF_L7_X_READY:
 * its entry, as looked up here, in *xp): rf_l7_h1_on sends it once, at
 * its one exit.
 */
static __always_inline int rf_l7_h1_event(struct rf_l7_h1_walk *w, struct rf_l7_conn *st, struct rf_l7_scratch *s,
					  int ev, struct rf_l7_pend **xp, __u32 *xseq, __u32 *xout)
{
	struct rf_l7_pend *p;
	struct rf_h1 *d;
	int resp;

	resp = w->resp;
	d = resp ? &st->h1[1] : &st->h1[0];

	if (ev == RF_H1_EV_START) {
		w->hstart = w->upos;
		if (!resp) {
			if (!rf_l7_pend_new(st, d->seq, w->fd, 1, d->first_ns, st->xfl[0]))
				st->xfl[0] = 0;
			return 0;
		}
		p = rf_l7_pend_get(st->id, d->seq);
		if (p) {
			/* a 1xx before it: the final response starts here */
			p->x.resp_start_ns = d->first_ns;
			p->x.resp_head_len = 0;
			p->x.flags &= ~RF_L7_X_RESP_HEAD_CUT;
			p->x.flags |= st->xfl[1];
			st->xfl[1] = 0;
		} else if (!rf_l7_pend_new(st, d->seq, w->fd, 0, d->first_ns, st->xfl[1])) {
			st->xfl[1] = 0;
		}
		return 0;
	}

	if (ev == RF_H1_EV_HEAD) {
		__u32 seq = d->seq;

		p = rf_l7_pend_get(st->id, seq);
		if (p) {
			rf_l7_head_put(p, resp, s->data, w->hstart - w->base, w->pos - w->base);
			if (resp)
				p->x.status = d->status;
			else
				p->method = d->method;
		}
		ev = rf_h1_frame(d, resp, resp && p ? p->method : d->method);
		if (ev == RF_H1_EV_INFO || ev == RF_H1_EV_NONE)
			return 0;
		if (ev == RF_H1_EV_GIVEUP) {
			rf_l7_parse_count(d->why);
			if (p) {
				p->lost = 1;
				if (!resp)
					p->x.req_end_ns = d->last_ns;
			}
			if (p && resp) {
				p->x.resp_end_ns = d->last_ns;
				return RF_L7_X_READY(p, seq, RF_L7_OUT_LOST);
			}
			return 0;
		}
		/* END: no body */
		if (d->state == RF_H1_TUNNEL) {
			/* both directions carry another protocol from here on */
			st->h1[0].state = RF_H1_TUNNEL;
			st->h1[1].state = RF_H1_TUNNEL;
			rf_l7_parse_count(RF_L7_P_H1_UPGRADE);
			if (p)
				p->x.flags |= RF_L7_X_UPGRADE;
		}
		if (!p)
			return 0;
		if (!resp) {
			p->x.req_end_ns = d->last_ns;
			return 0;
		}
		p->x.resp_end_ns = d->last_ns;
		return RF_L7_X_READY(p, seq, RF_L7_OUT_RESPONDED);
	}

	if (ev == RF_H1_EV_END) {
		p = rf_l7_pend_get(st->id, d->seq - 1);
		if (!p) {
			if (resp)
				rf_l7_parse_count(RF_L7_P_RESP_ORPHAN);
			return 0;
		}
		if (!resp) {
			p->x.req_end_ns = d->last_ns;
			p->x.req_body_bytes = d->body;
			return 0;
		}
		p->x.resp_end_ns = d->last_ns;
		p->x.resp_body_bytes = d->body;
		return RF_L7_X_READY(p, d->seq - 1, RF_L7_OUT_RESPONDED);
	}

	if (ev == RF_H1_EV_GIVEUP) {
		rf_l7_parse_count(d->why);
		/* the message in progress, if one was: what is known of it goes with its exchange */
		if (d->seq == w->seq0)
			return 0;
		p = rf_l7_pend_get(st->id, w->seq0);
		if (!p)
			return 0;
		p->lost = 1;
		if (!resp) {
			rf_l7_head_put(p, 0, s->data, w->hstart - w->base, (w->pos < w->have ? w->pos : w->have) - w->base);
			p->x.req_end_ns = d->last_ns;
			return 0;
		}
		rf_l7_head_put(p, 1, s->data, w->hstart - w->base, (w->pos < w->have ? w->pos : w->have) - w->base);
		p->x.resp_end_ns = d->last_ns;
		return RF_L7_X_READY(p, w->seq0, RF_L7_OUT_LOST);
	}
	return 0;
}

/*
 * One framing event (rf_l7_h1_event), and the exchange it completes sent
 * with the entry it looked up. A global function: verified once, not at
 * every step of the callback.
 */
__noinline int rf_l7_h1_on(struct rf_l7_h1_walk *w, struct rf_l7_conn *st, struct rf_l7_scratch *s, int ev)
{
	struct rf_l7_pend *p = NULL;
	__u32 seq = 0, out = 0;

	if (!w || !st || !s)
		return 0;
	if (!rf_l7_h1_event(w, st, s, ev, &p, &seq, &out) || !p)
		return 0;
	return rf_l7_x_send(p, st->id, seq, out);
}

/*
 * One unit of the walk on side d (a byte, or a body skipped): a global
 * function, so that its many paths are verified once with d unknown, not
 * at every re-walk of the bpf_loop callback (which then converges at once).
 */
__noinline int rf_l7_h1_unit(struct rf_h1 *d, struct rf_l7_h1_walk *w, struct rf_l7_scratch *s)
{
	__u32 pos;
	int ev;

	if (!d || !w || !s)
		return RF_H1_EV_NONE;
	/* bytes to read past the window: the caller copies the next one first */
	if (w->pos >= w->have && w->pos < w->n && w->buf && d->state != RF_H1_BODY &&
	    d->state != RF_H1_CHUNK_DATA && d->state != RF_H1_CLOSE && d->state != RF_H1_SEEK &&
	    d->state != RF_H1_TUNNEL)
		return RF_L7_H1_EV_REFILL;
	w->seq0 = d->seq;
	pos = w->pos;
	w->upos = pos;
	ev = rf_h1_unit(d, s->data, w->base, &pos, w->n, w->have, w->resp, w->edge);
	w->pos = pos;
	return ev;
}

/*
 * The walk reached the end of the window with bytes of a head (or chunk
 * line) still to read: what the window holds of the head goes to its
 * pending entry, then the window is refilled from the call's buffer at the
 * walk's position (pipelined messages after a body larger than the window,
 * in one call). Iovecs are not walked again: w->buf is 0 and the next step
 * gives up as before.
 */
__noinline int rf_l7_h1_refill(struct rf_l7_h1_walk *w, struct rf_l7_conn *st, struct rf_l7_scratch *s)
{
	struct rf_l7_pend *p;
	struct rf_h1 *d;
	__u64 n;
	__u32 limit = rf_l7_capture_bytes;

	if (!w || !st || !s)
		return 0;
	d = w->resp ? &st->h1[1] : &st->h1[0];
	if (d->state == RF_H1_RLINE || d->state == RF_H1_SLINE || d->state == RF_H1_HEAD) {
		p = rf_l7_pend_get(st->id, d->seq);
		if (p)
			rf_l7_head_put(p, w->resp, s->data, w->hstart - w->base, w->have - w->base);
	}
	if (limit > RF_L7_MAX_CAPTURE)
		limit = RF_L7_MAX_CAPTURE;
	n = w->n - w->pos;
	if (n > limit)
		n = limit;
	barrier_var(n);
	if (n > RF_L7_MAX_CAPTURE)
		n = RF_L7_MAX_CAPTURE;
	if (bpf_probe_read_user(s->data, n, (void *)(w->buf + w->pos))) {
		w->buf = 0;
		return 0;
	}
	w->base = w->pos;
	w->have = w->pos + n;
	w->hstart = w->pos;
	return 0;
}

/* One step of a syscall's walk (a bpf_loop callback). */
static long rf_l7_h1_step(__u32 i, void *ctx)
{
	struct rf_l7_h1_ctx *x = ctx;
	struct rf_l7_h1_walk *w = x->w;
	struct rf_l7_conn *st = x->st;
	int ev;

	if (w->pos >= w->n)
		return 1;
	ev = rf_l7_h1_unit(&st->h1[w->resp & 1], w, x->s);
	if (ev == RF_L7_H1_EV_REFILL) {
		rf_l7_h1_refill(w, st, x->s);
		return 0;
	}
	if (ev != RF_H1_EV_NONE)
		rf_l7_h1_on(w, st, x->s, ev);
	return 0;
}

/*
 * The bytes of one syscall of an HTTP1 connection (captured of them in
 * s->data), through its side's framing. Heads are scanned byte by byte in
 * the window; a body is skipped by its length, never read or copied.
 */
__noinline int rf_l7_h1_feed(struct rf_l7_call *c)
{
	struct rf_l7_h1_ctx x;
	struct rf_l7_h1_walk *w;
	struct rf_l7_scratch *s;
	struct rf_l7_conn *st;
	struct rf_h1 *d;
	struct rf_l7_pend *p;
	struct rf_l7_key k;
	__u32 zero = 0, steps, captured;
	__u64 now;
	int resp;

	if (!c)
		return 0;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.fd = c->fd;
	st = bpf_map_lookup_elem(&rf_l7_conns, &k);
	s = rf_l7_scratch_get();
	if (!st || !s || st->sk != c->sk || st->app != RF_L7_APP_HTTP1)
		return 0;
	captured = c->captured;
	now = c->now;
	resp = c->direction != st->req_dir;
	w = bpf_map_lookup_elem(&rf_l7_h1_walk, &zero);
	if (!w)
		return 0;
	d = resp ? &st->h1[1] : &st->h1[0];
	/* a tunnel, or framing lost (rf_l7_emit looked for a start line first) */
	if (d->state == RF_H1_TUNNEL || d->state == RF_H1_SEEK)
		return 0;
	w->edge = c->direction == RF_L7_EGRESS ? c->enter_ns : now;
	/* the window holds bytes [base, base + captured) of the call (rf_l7_emit skipped a body's bytes) */
	w->pos = 0;
	w->n = c->bytes > 0xffffffffULL ? 0xffffffff : c->bytes;
	w->base = c->base;
	w->have = c->base + captured;
	w->hstart = c->base;
	w->buf = c->iovcnt || c->nocopy ? 0 : c->buf;
	w->fd = c->fd;
	w->resp = resp;
	x.w = w;
	x.st = st;
	x.s = s;
	/*
	 * A step reads a byte or a run, skips a body, or refills the window: the
	 * walk ends at the call's end, long before this bound (heads are capped
	 * at 16 KiB, and every refill is followed by a byte read).
	 */
	steps = 1 << 18;
	bpf_loop(steps, rf_l7_h1_step, &x, 0);
	/* a head that goes on in the next syscall: keep its bytes so far */
	if (d->state == RF_H1_RLINE || d->state == RF_H1_SLINE || d->state == RF_H1_HEAD) {
		p = rf_l7_pend_get(st->id, d->seq);
		if (p)
			rf_l7_head_put(p, resp, s->data, w->hstart - w->base, (w->pos < w->have ? w->pos : w->have) - w->base);
	}
	return 0;
}

/* The requests close() finds unanswered: [from, to) of conn_id. */
struct rf_l7_h1_flush {
	__u64 conn_id;
	__u32 from;
	__u32 to;
};

static long rf_l7_h1_flush_one(__u32 i, void *ctx)
{
	struct rf_l7_h1_flush *f = ctx;

	if (f->from + i >= f->to)
		return 1;
	rf_l7_x_emit(f->conn_id, f->from + i, RF_L7_OUT_CLOSED);
	return 0;
}

/*
 * close() of an HTTP1 connection: a response read until close is complete;
 * requests still waiting go out CLOSED (up to RF_L7_MAX_CLOSED of them, a
 * bpf_loop; pipelining deeper than that is not seen in practice).
 */
#define RF_L7_MAX_CLOSED 1024
__noinline int rf_l7_h1_close(struct rf_l7_conn *st)
{
	struct rf_l7_h1_flush f;
	struct rf_l7_pend *p;
	struct rf_h1 *q, *r;
	__u32 n;

	if (!st)
		return 0;
	q = &st->h1[0];
	r = &st->h1[1];
	if (rf_h1_eof(r) == RF_H1_EV_END) {
		p = rf_l7_pend_get(st->id, r->seq - 1);
		if (p) {
			p->x.resp_end_ns = r->last_ns;
			p->x.resp_body_bytes = r->body;
			rf_l7_x_emit(st->id, r->seq - 1, RF_L7_OUT_RESPONDED);
		}
	}
	f.conn_id = st->id;
	f.from = r->seq;
	f.to = q->seq + (q->state != RF_H1_START && q->state != RF_H1_SEEK && q->state != RF_H1_TUNNEL);
	if (f.to <= f.from)
		return 0;
	n = f.to - f.from;
	bpf_loop(n < RF_L7_MAX_CLOSED ? n : RF_L7_MAX_CLOSED, rf_l7_h1_flush_one, &f, 0);
	return 0;
}

#include "l7_dns.h"

#include "l7_h2_walk.h"

/* Bytes at the start of a call of n bytes that side d will not read: the rest of a body. */
static __always_inline __u64 rf_l7_h1_skip_bytes(struct rf_h1 *d, __u64 n)
{
	if (d->state == RF_H1_BODY || d->state == RF_H1_CHUNK_DATA)
		return d->left < n ? d->left : n;
	if (d->state == RF_H1_CLOSE || d->state == RF_H1_TUNNEL)
		return n;
	return 0;
}

/*
 * One data record. Filters already passed at sys_enter, except UDP's port
 * (here). A global function, so the verifier checks it once rather than at
 * every call site: recvmmsg/sendmmsg call it in a loop. Returns 1 when the
 * call's bytes are for rf_l7_h1_feed (an HTTP1 connection), which the caller
 * runs next on the same window.
 */
__noinline int rf_l7_emit(struct rf_l7_call *c)
{
	struct rf_l7_scratch *s = rf_l7_scratch_get();
	struct rf_l7_emit_scratch *e;
	struct rf_l7_capture *r;
	struct rf_l7_tuple *t;
	struct bpf_dynptr dp;
	struct rf_l7_key k;
	struct rf_l7_conn *st;
	__u32 zero = 0;
	__u32 limit = rf_l7_capture_bytes, want;
	__u64 off, peer, captured, skip;
	bool dns;

	e = bpf_map_lookup_elem(&rf_l7_emit_scratch, &zero);
	if (!c || !s || !e)
		return 0;
	r = &e->r;
	t = &e->t;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.fd = c->fd;
	st = bpf_map_lookup_elem(&rf_l7_conns, &k);
	/* first sight, or fd now names another socket: a new connection */
	if (st && st->sk != c->sk)
		st = NULL;
	if (st)
		*t = st->t;
	else
		rf_l7_sock_tuple(t, (struct sock *)c->sk, c->protocol);
	rf_l7_put_tuple(r, t);
	r->flags = 0;
	if (c->protocol == IPPROTO_UDP)
		rf_l7_msg_addr(r, c->addr, c->addrlen);
	if (!rf_l7_port_ok(r->lport, r->rport))
		return 0;
	if (!st)
		st = rf_l7_conn_start(c->fd, c->sk, t, RF_L7_ROLE_UNKNOWN, RF_L7_F_MIDSTREAM);
	if (!st)
		return 0;
	/* rejected since sys_enter parked the call (another thread decided), or one of several mmsg messages */
	if (rf_l7_detect_records && c->protocol == IPPROTO_TCP && st->gate == RF_L7_GATE_REJECTED)
		return 0;
	if (c->direction == RF_L7_EGRESS) {
		off = st->tx;
		peer = st->rx;
		__sync_fetch_and_add(&st->tx, c->bytes);
	} else {
		off = st->rx;
		peer = st->tx;
		__sync_fetch_and_add(&st->rx, c->bytes);
	}
	/* UDP: DNS datagrams only (counted in the offsets above all the same) */
	if (rf_l7_detect_records && c->protocol == IPPROTO_UDP && r->lport != RF_L7_DNS_PORT &&
	    r->rport != RF_L7_DNS_PORT && !rf_l7_dns_header(s->data, c)) {
		rf_l7_gate_count(RF_L7_GATE_UDP_SKIPPED);
		return 0;
	}

	/* the rest of the header (pid, comm, cgroup: 5 helper calls) only for a record that goes out, below */
	r->hdr.ts_ns = bpf_ktime_get_ns();
	r->conn_id = st->id;
	r->offset = off;
	r->peer_offset = peer;
	r->fd = c->fd;
	r->total_len = c->bytes;
	r->direction = c->direction;
	r->syscall = c->sys;
	r->role = st->role;
	r->kind = RF_L7_KIND_DATA;
	r->flags |= st->flags;
	r->enter_ns = c->enter_ns;

	if (limit > RF_L7_MAX_CAPTURE)
		limit = RF_L7_MAX_CAPTURE;
	/*
	 * HTTP1 (without capture records): the bytes of a body are never read,
	 * so the window starts after them: a call inside a known-length body
	 * copies nothing, and a head that follows a body's end in the same call
	 * is in the window whatever the body's size. Iovecs (walked from their
	 * first byte) skip only a call that is all body.
	 */
	skip = 0;
	if (st->app == RF_L7_APP_HTTP1 && !rf_l7_dual) {
		skip = rf_l7_h1_skip_bytes(c->direction != st->req_dir ? &st->h1[1] : &st->h1[0], c->bytes);
		/* iovecs are copied from their first byte: skipped only when the whole call is body */
		if (c->iovcnt && skip < c->bytes)
			skip = 0;
	}
	want = c->bytes - skip < limit ? c->bytes - skip : limit;
	if (c->nocopy)
		want = 0;
	/* HTTP/2 with its frames known: rf_l7_h2_feed copies what is kept, nothing else is read */
	if (st->h2[c->direction & 1].state == RF_H2_FRAMES)
		want = 0;
	/* MSG_TRUNC: a datagram's return value can exceed the buffer it was given */
	if (!c->iovcnt && c->buflen < want)
		want = c->buflen;
	c->base = skip;
	captured = rf_l7_copy(s->data, c->buf + skip, c->iov, c->iovcnt, want, &r->flags);
	barrier_var(captured);
	if (captured > RF_L7_MAX_CAPTURE)
		captured = RF_L7_MAX_CAPTURE;
	r->captured_len = captured;

	/* TCP undecided: this record goes out; it may decide the connection */
	if (rf_l7_detect_records && c->protocol == IPPROTO_TCP && st->gate == RF_L7_GATE_UNDECIDED) {
		struct rf_l7_h1_walk *hw = bpf_map_lookup_elem(&rf_l7_h1_walk, &zero);
		__u8 *h;
		bool dns = r->lport == RF_L7_DNS_PORT || r->rport == RF_L7_DNS_PORT;

		if (!hw)
			return 0;
		h = hw->h;
		rf_l7_head(h, s->data, captured);
		if (dns || rf_l7_signature(h)) {
			st->gate = RF_L7_GATE_ACCEPTED;
			rf_l7_gate_count(RF_L7_GATE_ACCEPTED_CONNS);
			/*
			 * An HTTP/1 start line: framed here from this very byte on
			 * (HTTP/2's preface and DNS over TCP stay RAW). The start
			 * line says which direction carries the requests, whatever
			 * the role (a connection seen mid-stream has none).
			 */
			if (rf_l7_kernel_parse && !dns) {
				if (rf_l7_h1_sig(h, 0)) {
					st->app = RF_L7_APP_HTTP1;
					st->req_dir = c->direction;
				} else if (rf_l7_h1_sig(h, 1)) {
					st->app = RF_L7_APP_HTTP1;
					st->req_dir = c->direction == RF_L7_EGRESS ? RF_L7_INGRESS : RF_L7_EGRESS;
				} else if (RF_L7_PREFIX(h, "PRI * HTTP/2.0")) {
					rf_l7_h2_start(st, c->direction);
				}
			}
		} else if (++st->looked >= rf_l7_detect_records) {
			st->gate = RF_L7_GATE_REJECTED;
			rf_l7_gate_count(RF_L7_GATE_REJECTED_CONNS);
		}
	}
	/* DNS on port 53 (l7_dns.h): paired here, one exchange record per lookup instead of these */
	dns = rf_l7_kernel_parse && c->protocol == IPPROTO_UDP &&
	      (r->lport == RF_L7_DNS_PORT || r->rport == RF_L7_DNS_PORT) && rf_l7_dns_plausible(s->data, captured);
	/* HTTP/2 (l7_h2_walk.h): frame headers and the payloads user space parses go out, the rest as cuts */
	r->ncuts = 0;
	if (st->h2[c->direction & 1].state != RF_H2_NONE) {
		r->captured_len = captured;
		captured = (__u32)rf_l7_h2_feed(c, r, st, bpf_map_lookup_elem(&rf_l7_h2_walk, &zero));
		barrier_var(captured);
		if (captured > RF_L7_MAX_CAPTURE)
			captured = RF_L7_MAX_CAPTURE;
		r->captured_len = captured;
	}
	/* HTTP1: one exchange record per request instead of this capture record (both with rf_l7_dual) */
	if ((st->app != RF_L7_APP_HTTP1 && !dns) || rf_l7_dual) {
		struct rf_l7_h2_walk *hw = bpf_map_lookup_elem(&rf_l7_h2_walk, &zero);
		__u32 cl = r->ncuts;

		/* the cuts (HTTP/2) between the struct and the kept bytes */
		if (cl > RF_L7_MAX_CUTS || !hw)
			cl = 0;
		r->ncuts = cl;
		cl *= sizeof(struct rf_l7_cut);
		rf_fill_current(&r->hdr, RF_EV_L7_CAPTURE, r->hdr.ts_ns);
		/* the reservation must be released even when it failed */
		if (bpf_ringbuf_reserve_dynptr(&rf_events, sizeof(*r) + cl + captured, 0, &dp)) {
			bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
			rf_count_drop(RF_EV_L7_CAPTURE);
		} else {
			bpf_dynptr_write(&dp, 0, r, sizeof(*r), 0);
			if (cl && hw)
				bpf_dynptr_write(&dp, sizeof(*r), hw->cuts, cl, 0);
			bpf_dynptr_write(&dp, sizeof(*r) + cl, s->data, captured, 0);
			/* wake-up batching as in rf_submit: once, as the pending data crosses rf_wakeup_bytes */
			bpf_ringbuf_submit_dynptr(&dp, rf_wakeup_flags(sizeof(*r) + cl + captured));
		}
	}
	if (dns) {
		c->captured = captured;
		c->now = r->hdr.ts_ns;
		return 2;
	}
	/*
	 * Last, with nothing after it: the paths of the signature test below
	 * would multiply the verifier's walk of anything that followed.
	 */
	if (st->app == RF_L7_APP_HTTP1) {
		int resp = c->direction != st->req_dir;
		struct rf_h1 *d = resp ? &st->h1[1] : &st->h1[0];

		/* framing was lost on this side: it starts again at a syscall that begins with a start line */
		if (d->state == RF_H1_SEEK) {
			struct rf_l7_h1_walk *hw = bpf_map_lookup_elem(&rf_l7_h1_walk, &zero);

			if (!hw)
				return 0;
			rf_l7_head(hw->h, s->data, captured);
			if (!rf_l7_h1_sig(hw->h, resp))
				return 0;
			d->state = RF_H1_START;
			rf_l7_parse_count(RF_L7_P_H1_RESYNCED);
			st->xfl[resp ? 1 : 0] |= RF_L7_X_RESYNCED;
		}
		/* the caller feeds the window to the framing: its frames then do not add to this one's */
		c->captured = captured;
		c->now = r->hdr.ts_ns;
		return 1;
	}
	return 0;
}

/* The call rf_l7_emit describes, off the exit programs' stack (their frame adds to rf_l7_emit's and its callees'). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_call);
} rf_l7_call_scratch SEC(".maps");

static __always_inline __u8 rf_l7_direction(__u8 sys)
{
	switch (sys) {
	case RF_L7_SYS_READ:
	case RF_L7_SYS_READV:
	case RF_L7_SYS_RECVFROM:
	case RF_L7_SYS_RECVMSG:
	case RF_L7_SYS_RECVMMSG:
		return RF_L7_INGRESS;
	default:
		return RF_L7_EGRESS;
	}
}

static __always_inline void rf_l7_call_init(struct rf_l7_call *c, struct rf_l7_args *a, __u64 bytes)
{
	c->sk = a->sk;
	c->bytes = bytes;
	c->addr = 0;
	c->addrlen = 0;
	c->buf = 0;
	c->buflen = 0;
	c->iov = 0;
	c->iovcnt = 0;
	c->enter_ns = a->enter_ns;
	c->fd = a->fd;
	c->sys = a->sys;
	c->protocol = a->protocol;
	c->direction = rf_l7_direction(a->sys);
	c->nocopy = a->nocopy;
}

/* One call's record (or, HTTP1, its bytes through the framing; DNS, its datagram through the pairing). */
static __always_inline void rf_l7_emit_feed(struct rf_l7_call *c)
{
	int kind = rf_l7_emit(c);

	if (kind == 1)
		rf_l7_h1_feed(c);
	else if (kind == 2)
		rf_l7_dns_feed(c);
}

/* read/write/recvfrom/sendto, readv/writev, recvmsg/sendmsg: one record. */
static __always_inline int rf_l7_exit(long ret, __u8 sys)
{
	struct rf_l7_args a;
	struct rf_l7_call *cp;
	__u32 zero = 0;

	if (!rf_l7_take(&a, sys))
		return 0;
	if (ret <= 0) /* EOF, errors, EAGAIN: nothing moved */
		return 0;
	cp = bpf_map_lookup_elem(&rf_l7_call_scratch, &zero);
	if (!cp)
		return 0;
	rf_l7_call_init(cp, &a, ret);

	switch (a.sys) {
	case RF_L7_SYS_READ:
	case RF_L7_SYS_WRITE:
		cp->buf = a.buf;
		cp->buflen = a.count;
		rf_l7_emit_feed(cp);
		break;
	case RF_L7_SYS_RECVFROM: {
		int alen = 0;

		/* the kernel wrote the source address's length back through addrlen */
		if (a.addr && a.addrlen && !bpf_probe_read_user(&alen, sizeof(alen), (void *)a.addrlen)) {
			cp->addr = a.addr;
			cp->addrlen = alen;
		}
		cp->buf = a.buf;
		cp->buflen = a.count;
		rf_l7_emit_feed(cp);
		break;
	}
	case RF_L7_SYS_SENDTO:
		cp->addr = a.addr;
		cp->addrlen = a.addrlen;
		cp->buf = a.buf;
		cp->buflen = a.count;
		rf_l7_emit_feed(cp);
		break;
	case RF_L7_SYS_READV:
	case RF_L7_SYS_WRITEV:
		if (!a.count)
			break;
		cp->iov = a.buf;
		cp->iovcnt = a.count;
		rf_l7_emit_feed(cp);
		break;
	case RF_L7_SYS_RECVMSG:
	case RF_L7_SYS_SENDMSG: {
		struct rf_umsghdr m;

		/* recvmsg wrote msg_name and msg_namelen before returning */
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a.buf) || !m.iovlen)
			return 0;
		cp->addr = m.name;
		cp->addrlen = m.namelen;
		cp->iov = m.iov;
		cp->iovcnt = m.iovlen;
		rf_l7_emit_feed(cp);
		break;
	}
	}
	return 0;
}

/*
 * recvmmsg/sendmmsg: ret messages, one record each (the first RF_L7_MAX_MMSG);
 * the messages past them are not seen and are counted in rf_l7_parse
 * (RF_L7_P_MMSG_OVER_LIMIT, a loss in kernel_losses), never left out silently
 * (glibc's resolver sends 2, DNS servers batching replies may send more).
 * Not as capture drops: a DNS message past the limit would have been an
 * exchange record, not a capture record.
 */
static __always_inline int rf_l7_exit_mmsg(long ret, __u8 sys)
{
	struct rf_l7_args a;

	if (!rf_l7_take(&a, sys))
		return 0;
	if (ret <= 0)
		return 0;
	if (ret > RF_L7_MAX_MMSG) {
		__u32 over = RF_L7_P_MMSG_OVER_LIMIT;
		__u64 *n = bpf_map_lookup_elem(&rf_l7_parse, &over);

		if (n)
			*n += ret - RF_L7_MAX_MMSG;
	}
	for (int i = 0; i < RF_L7_MAX_MMSG; i++) {
		struct rf_ummsghdr m;
		struct rf_l7_call *cp;
		__u32 zero = 0;

		if (i >= ret)
			break;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(a.buf + i * sizeof(m))))
			break;
		if (!m.len || !m.hdr.iovlen)
			continue;
		cp = bpf_map_lookup_elem(&rf_l7_call_scratch, &zero);
		if (!cp)
			break;
		rf_l7_call_init(cp, &a, m.len);
		cp->addr = m.hdr.name;
		cp->addrlen = m.hdr.namelen;
		cp->iov = m.hdr.iov;
		cp->iovcnt = m.hdr.iovlen;
		rf_l7_emit_feed(cp);
	}
	return 0;
}

/* ---- data syscalls ---- */

SEC("tracepoint/syscalls/sys_enter_read")
int rf_l7_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_READ, ctx->args[1], ctx->args[2], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_read")
int rf_l7_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_READ);
}

SEC("tracepoint/syscalls/sys_enter_write")
int rf_l7_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_WRITE, ctx->args[1], ctx->args[2], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_write")
int rf_l7_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int rf_l7_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_READV, ctx->args[1], ctx->args[2], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int rf_l7_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_READV);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int rf_l7_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_WRITEV, ctx->args[1], ctx->args[2], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int rf_l7_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_WRITEV);
}

/* recvfrom(fd, buf, len, flags, src_addr, addrlen); recv() is recvfrom on x86_64 */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int rf_l7_enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	/* MSG_PEEK leaves the data queued: it is recorded when actually read */
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_RECVFROM, ctx->args[1], ctx->args[2],
			   ctx->args[4], ctx->args[5], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int rf_l7_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_RECVFROM);
}

/* sendto(fd, buf, len, flags, dest_addr, addrlen); send() is sendto on x86_64 */
SEC("tracepoint/syscalls/sys_enter_sendto")
int rf_l7_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_SENDTO, ctx->args[1], ctx->args[2],
			   ctx->args[4], ctx->args[5], 0);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int rf_l7_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_SENDTO);
}

/* recvmsg(fd, msg, flags) */
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int rf_l7_enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[2] & MSG_PEEK)
		return 0;
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_RECVMSG, ctx->args[1], 0, 0, 0, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int rf_l7_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_RECVMSG);
}

/* sendmsg(fd, msg, flags) */
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int rf_l7_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_SENDMSG, ctx->args[1], 0, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int rf_l7_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit(ctx->ret, RF_L7_SYS_SENDMSG);
}

/* recvmmsg(fd, msgvec, vlen, flags, timeout) */
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int rf_l7_enter_recvmmsg(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[3] & MSG_PEEK)
		return 0;
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_RECVMMSG, ctx->args[1], ctx->args[2], 0, 0, ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int rf_l7_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit_mmsg(ctx->ret, RF_L7_SYS_RECVMMSG);
}

/* sendmmsg(fd, msgvec, vlen, flags): glibc's resolver sends A and AAAA queries with it */
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int rf_l7_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_SENDMMSG, ctx->args[1], ctx->args[2], 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int rf_l7_exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_exit_mmsg(ctx->ret, RF_L7_SYS_SENDMMSG);
}

/* ---- lifecycle ---- */

/* connect(fd, addr, addrlen) */
SEC("tracepoint/syscalls/sys_enter_connect")
int rf_l7_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return rf_l7_enter(ctx->args[0], RF_L7_SYS_CONNECT, 0, 0, 0, 0, 0);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int rf_l7_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct rf_l7_args a;
	struct rf_l7_tuple t;
	long ret = ctx->ret;

	if (!rf_l7_take(&a, RF_L7_SYS_CONNECT))
		return 0;
	/* a non-blocking TCP connect is under way: the connection is this socket's from now */
	if (ret != 0 && ret != -EINPROGRESS)
		return 0;
	/* both ends are bound once connect() returns, even while SYN_SENT */
	rf_l7_sock_tuple(&t, (struct sock *)a.sk, a.protocol);
	if (!rf_l7_port_ok(t.lport, t.rport))
		return 0;
	rf_l7_conn_start(a.fd, a.sk, &t, RF_L7_ROLE_CLIENT, 0);
	return 0;
}

/* The accepted fd is the return value: nothing to park at enter. */
static __always_inline int rf_l7_accepted(long ret)
{
	struct rf_l7_tuple t;
	struct sock *sk;
	__u8 protocol;

	if (ret < 0 || !rf_current_passes())
		return 0;
	sk = rf_l7_fd_sock(ret, &protocol);
	if (!sk)
		return 0;
	rf_l7_sock_tuple(&t, sk, protocol);
	if (!rf_l7_port_ok(t.lport, t.rport))
		return 0;
	rf_l7_conn_start(ret, (__u64)sk, &t, RF_L7_ROLE_SERVER, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int rf_l7_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int rf_l7_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return rf_l7_accepted(ctx->ret);
}

/*
 * close(fd) of a tracked connection: a close record with the byte totals and
 * the connection's tuple, and the state goes. At enter: a close that fails
 * (EBADF) finds no state; one interrupted still releases the fd.
 */
SEC("tracepoint/syscalls/sys_enter_close")
int rf_l7_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct rf_l7_key k;
	struct rf_l7_conn *st;
	struct rf_l7_capture *r;

	if (!rf_current_passes())
		return 0;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.fd = ctx->args[0];
	st = bpf_map_lookup_elem(&rf_l7_conns, &k);
	if (!st)
		return 0;
	/* a rejected connection's records stopped at its Nth: no close record either */
	if (st->gate == RF_L7_GATE_REJECTED)
		goto out;
	/*
	 * UDP: user space reads nothing from a close record (tracker.ts parses
	 * datagrams one by one), and with DNS paired here it would be the one
	 * record per lookup besides the exchange (glibc opens a socket per lookup)
	 */
	if (rf_l7_kernel_parse && st->t.protocol == IPPROTO_UDP && !rf_l7_dual)
		goto out;
	/* HTTP1: what close() completes or leaves unanswered goes out as exchanges */
	if (st->app == RF_L7_APP_HTTP1) {
		rf_l7_h1_close(st);
		if (!rf_l7_dual)
			goto out;
	}
	r = rf_reserve(sizeof(*r), RF_EV_L7_CAPTURE);
	if (!r)
		goto out;
	rf_fill_current(&r->hdr, RF_EV_L7_CAPTURE, bpf_ktime_get_ns());
	rf_l7_put_tuple(r, &st->t);
	r->conn_id = st->id;
	r->offset = st->tx;
	r->peer_offset = st->rx;
	r->fd = k.fd;
	r->total_len = 0;
	r->captured_len = 0;
	r->direction = RF_L7_EGRESS;
	r->syscall = RF_L7_SYS_CLOSE;
	r->role = st->role;
	r->kind = RF_L7_KIND_CLOSE;
	r->flags = st->flags;
	r->enter_ns = r->hdr.ts_ns;
	r->ncuts = 0;
	rf_submit(r);
out:
	bpf_map_delete_elem(&rf_l7_conns, &k);
	return 0;
}
