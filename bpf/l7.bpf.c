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
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>

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
	__u8  _pad[4];
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
};

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
	struct file **fds, *file;
	struct socket *sock;
	struct sock *sk;
	__u16 family, proto;
	umode_t mode;

	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* only a socket's file has an S_IFSOCK inode and a struct socket in private_data */
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	/* MPTCP, SCTP, UDP-Lite, raw... are left out */
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return NULL;
	*protocol = proto;
	return sk;
}

/*
 * rf_current_passes with the uid helper called only when the uid filter is on:
 * bpf_get_current_uid_gid measured ~40 ns on the test VM (it goes through the
 * task's credentials), twice per syscall, for every process when nothing
 * filters on uid.
 */
static __always_inline bool rf_l7_current_passes(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 uid = rf_filter_uid != 0xffffffff ? (__u32)bpf_get_current_uid_gid() : 0;
	__u64 cg = rf_filter_cgroup_id ? bpf_get_current_cgroup_id() : 0;
	char comm[RF_COMM_LEN];

	if (!rf_ids_pass(tgid, uid, cg))
		return false;
	if (!rf_filter_comm[0])
		return true;
	bpf_get_current_comm(comm, sizeof(comm));
	return rf_comm_matches(comm);
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
	if (!rf_l7_current_passes())
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
	if (!rf_l7_current_passes())
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

/* A new tracked connection of the current process (replacing any state fd had). */
static __always_inline struct rf_l7_conn *rf_l7_conn_start(__u32 fd, __u64 sk, struct rf_l7_tuple *t,
							   __u8 role, __u8 flags)
{
	struct rf_l7_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd };
	struct rf_l7_conn st = {};

	st.id = rf_l7_new_id();
	st.sk = sk;
	st.t = *t;
	st.role = role;
	st.flags = flags;
	bpf_map_update_elem(&rf_l7_conns, &k, &st, BPF_ANY);
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

/*
 * One data record. Filters already passed at sys_enter, except UDP's port
 * (here). A global function, so the verifier checks it once rather than at
 * every call site: recvmmsg/sendmmsg call it in a loop.
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
	__u64 off, peer, captured;

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

	rf_fill_current(&r->hdr, RF_EV_L7_CAPTURE, bpf_ktime_get_ns());
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
	want = c->bytes < limit ? c->bytes : limit;
	if (c->nocopy)
		want = 0;
	/* MSG_TRUNC: a datagram's return value can exceed the buffer it was given */
	if (!c->iovcnt && c->buflen < want)
		want = c->buflen;
	captured = rf_l7_copy(s->data, c->buf, c->iov, c->iovcnt, want, &r->flags);
	barrier_var(captured);
	if (captured > RF_L7_MAX_CAPTURE)
		captured = RF_L7_MAX_CAPTURE;
	r->captured_len = captured;

	/* TCP undecided: this record goes out; it may decide the connection */
	if (rf_l7_detect_records && c->protocol == IPPROTO_TCP && st->gate == RF_L7_GATE_UNDECIDED) {
		__u8 h[16];

		rf_l7_head(h, s->data, captured);
		if (r->lport == RF_L7_DNS_PORT || r->rport == RF_L7_DNS_PORT || rf_l7_signature(h)) {
			st->gate = RF_L7_GATE_ACCEPTED;
			rf_l7_gate_count(RF_L7_GATE_ACCEPTED_CONNS);
		} else if (++st->looked >= rf_l7_detect_records) {
			st->gate = RF_L7_GATE_REJECTED;
			rf_l7_gate_count(RF_L7_GATE_REJECTED_CONNS);
		}
	}

	/* the reservation must be released even when it failed */
	if (bpf_ringbuf_reserve_dynptr(&rf_events, sizeof(*r) + captured, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
		rf_count_drop(RF_EV_L7_CAPTURE);
		return 0;
	}
	bpf_dynptr_write(&dp, 0, r, sizeof(*r), 0);
	bpf_dynptr_write(&dp, sizeof(*r), s->data, captured, 0);
	/* wake-up batching as in rf_submit: once, as the pending data crosses rf_wakeup_bytes */
	bpf_ringbuf_submit_dynptr(&dp, rf_wakeup_flags(sizeof(*r) + captured));
	return 0;
}

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

/* read/write/recvfrom/sendto, readv/writev, recvmsg/sendmsg: one record. */
static __always_inline int rf_l7_exit(long ret, __u8 sys)
{
	struct rf_l7_args a;
	struct rf_l7_call c;

	if (!rf_l7_take(&a, sys))
		return 0;
	if (ret <= 0) /* EOF, errors, EAGAIN: nothing moved */
		return 0;
	rf_l7_call_init(&c, &a, ret);

	switch (a.sys) {
	case RF_L7_SYS_READ:
	case RF_L7_SYS_WRITE:
		c.buf = a.buf;
		c.buflen = a.count;
		rf_l7_emit(&c);
		break;
	case RF_L7_SYS_RECVFROM: {
		int alen = 0;

		/* the kernel wrote the source address's length back through addrlen */
		if (a.addr && a.addrlen && !bpf_probe_read_user(&alen, sizeof(alen), (void *)a.addrlen)) {
			c.addr = a.addr;
			c.addrlen = alen;
		}
		c.buf = a.buf;
		c.buflen = a.count;
		rf_l7_emit(&c);
		break;
	}
	case RF_L7_SYS_SENDTO:
		c.addr = a.addr;
		c.addrlen = a.addrlen;
		c.buf = a.buf;
		c.buflen = a.count;
		rf_l7_emit(&c);
		break;
	case RF_L7_SYS_READV:
	case RF_L7_SYS_WRITEV:
		if (!a.count)
			break;
		c.iov = a.buf;
		c.iovcnt = a.count;
		rf_l7_emit(&c);
		break;
	case RF_L7_SYS_RECVMSG:
	case RF_L7_SYS_SENDMSG: {
		struct rf_umsghdr m;

		/* recvmsg wrote msg_name and msg_namelen before returning */
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a.buf) || !m.iovlen)
			return 0;
		c.addr = m.name;
		c.addrlen = m.namelen;
		c.iov = m.iov;
		c.iovcnt = m.iovlen;
		rf_l7_emit(&c);
		break;
	}
	}
	return 0;
}

/*
 * recvmmsg/sendmmsg: ret messages, one record each (the first RF_L7_MAX_MMSG);
 * the messages past them are not captured and are counted as kernel drops of
 * the L7 capture, never left out silently (glibc's resolver sends 2, DNS
 * servers batching replies may send more).
 */
static __always_inline int rf_l7_exit_mmsg(long ret, __u8 sys)
{
	struct rf_l7_args a;

	if (!rf_l7_take(&a, sys))
		return 0;
	if (ret <= 0)
		return 0;
	if (ret > RF_L7_MAX_MMSG)
		rf_count_drops(RF_EV_L7_CAPTURE, ret - RF_L7_MAX_MMSG);
	for (int i = 0; i < RF_L7_MAX_MMSG; i++) {
		struct rf_ummsghdr m;
		struct rf_l7_call c;

		if (i >= ret)
			break;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)(a.buf + i * sizeof(m))))
			break;
		if (!m.len || !m.hdr.iovlen)
			continue;
		rf_l7_call_init(&c, &a, m.len);
		c.addr = m.hdr.name;
		c.addrlen = m.hdr.namelen;
		c.iov = m.hdr.iov;
		c.iovcnt = m.hdr.iovlen;
		rf_l7_emit(&c);
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

	if (ret < 0 || !rf_l7_current_passes())
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

	if (!rf_l7_current_passes())
		return 0;
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.fd = ctx->args[0];
	st = bpf_map_lookup_elem(&rf_l7_conns, &k);
	if (!st)
		return 0;
	/* a rejected connection's records stopped at its Nth: no close record either */
	if (st->gate == RF_L7_GATE_REJECTED)
		goto out;
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
	rf_submit(r);
out:
	bpf_map_delete_elem(&rf_l7_conns, &k);
	return 0;
}
