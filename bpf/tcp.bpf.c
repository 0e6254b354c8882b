/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tcp.bpf.c: TCP connect latency, accepted connections, retransmits and drops,
 * from tracepoints only (no kprobes or fentry on the target kernels):
 *
 * - RF_EV_TCP_CONNECT: sock:inet_sock_set_state, SYN_SENT -> ESTABLISHED.
 * - RF_EV_TCP_ACCEPT: syscalls:sys_enter/exit_accept(4); the returned fd and
 *   the listening fd are resolved to sockets through current->files.
 * - RF_EV_TCP_RETRANSMIT: tcp:tcp_retransmit_skb.
 * - RF_EV_TCP_DROP: tp_btf/kfree_skb (a drop reason since 5.17; consume_skb
 *   takes the non-drop frees), TCP segments only.
 *
 * Retransmits and drops mostly happen in softirq or timer context, where
 * current is whatever task the CPU interrupted. So each socket is attributed to
 * its owner in process context (rf_tcp_owners: connect() at SYN_SENT, listen()
 * at LISTEN, accept() for both the new socket and its listener; forgotten at
 * TCP_CLOSE), and a retransmit or drop of a known socket carries its owner's
 * header and passes or fails the task filters as its owner. A socket the
 * collector never saw in process context (set up before it started, or a
 * segment with no socket, such as NO_SOCKET drops) cannot be attributed: its
 * record carries the current task, is left out whenever a task filter is set,
 * and is counted in rf_tcp_unattributed either way.
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* inet_sock_set_state fires in connect() context for SYN_SENT. */
struct rf_connect_start {
	struct rf_header hdr;
	__u64 ts;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64); /* struct sock * */
	__type(value, struct rf_connect_start);
} rf_tcp_connects SEC(".maps");

/* The process a socket belongs to, recorded in process context. */
struct rf_tcp_owner {
	__u32 pid;
	__u32 tgid;
	__u32 uid;
	__u8  passes;   /* the task filters (load-time constants) let this owner through */
	__u8  _pad[3];
	__u64 cgroup_id;
	char  comm[RF_COMM_LEN];
};

/* LRU: an owner evicted on a host with more sockets than this is counted as unattributed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct rf_tcp_owner);
} rf_tcp_owners SEC(".maps");

/*
 * Retransmits (index 0) and drops (index 1) of sockets with no known owner,
 * per CPU: emitted with the current task when no task filter is set, left out
 * when one is. Read with bpftool map dump name rf_tcp_unattrib.
 */
enum rf_tcp_unattributed_index {
	RF_TCP_UNATTR_RETRANSMIT = 0,
	RF_TCP_UNATTR_DROP       = 1,
	RF_TCP_UNATTR_NR         = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_TCP_UNATTR_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_tcp_unattributed SEC(".maps");

/* Listening fd of an accept() in progress, keyed by pid_tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u32);
} rf_tcp_accepts SEC(".maps");

/* Any task filter set (the self filter aside). */
static __always_inline bool rf_task_filtered(void)
{
	return rf_filter_tgid || rf_filter_uid != 0xffffffff || rf_filter_comm[0] ||
	       rf_filter_cgroup_id;
}

/* Record current as the owner of sk; only in process context. */
static __always_inline void rf_tcp_own(__u64 sk, __u64 flags)
{
	struct rf_tcp_owner o = {};
	__u64 id = bpf_get_current_pid_tgid();

	o.pid = (__u32)id;
	o.tgid = id >> 32;
	o.uid = (__u32)bpf_get_current_uid_gid();
	o.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	o.passes = rf_ids_pass(o.tgid, o.uid, o.cgroup_id) && rf_comm_matches(o.comm);
	bpf_map_update_elem(&rf_tcp_owners, &sk, &o, flags);
}

/*
 * Who a softirq-context event of sk belongs to: its owner (NULL when unknown,
 * counted). Returns false when the event must not be emitted.
 */
static __always_inline bool rf_tcp_attribute(__u64 sk, __u32 unattr_index,
					     struct rf_tcp_owner **owner)
{
	struct rf_tcp_owner *o = sk ? bpf_map_lookup_elem(&rf_tcp_owners, &sk) : NULL;
	__u64 *n;

	*owner = o;
	if (o)
		return o->passes; /* includes the collector itself (rf_ids_pass) */
	n = bpf_map_lookup_elem(&rf_tcp_unattributed, &unattr_index);
	if (n)
		*n += 1; /* per-CPU slot */
	if (rf_task_filtered())
		return false;
	return !(rf_self_tgid && (bpf_get_current_pid_tgid() >> 32) == rf_self_tgid);
}

/* Header of the socket's owner; the CPU and time are the event's. */
static __always_inline void rf_fill_owner(struct rf_header *h, const struct rf_tcp_owner *o,
					  __u8 type, __u64 ts)
{
	h->type = type;
	h->_pad0 = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = o->pid;
	h->tgid = o->tgid;
	h->uid = o->uid;
	h->ts_ns = ts;
	h->cgroup_id = o->cgroup_id;
	__builtin_memcpy(h->comm, o->comm, RF_COMM_LEN);
}

static __always_inline void rf_tuple_zero(struct rf_tcp_tuple *t)
{
	__builtin_memset(t, 0, sizeof(*t));
}

/*
 * Address arrays of a classic tracepoint record. CO-RE turns their offsets
 * into a modified ctx pointer, which the verifier refuses to dereference
 * directly: read them with bpf_probe_read_kernel instead.
 */
static __always_inline void rf_tp_addrs(struct rf_tcp_tuple *t, __u16 family,
					const __u8 *s4, const __u8 *d4,
					const __u8 *s6, const __u8 *d6)
{
	if (family == AF_INET6) {
		bpf_probe_read_kernel(t->saddr, 16, s6);
		bpf_probe_read_kernel(t->daddr, 16, d6);
	} else {
		bpf_probe_read_kernel(t->saddr, 4, s4);
		bpf_probe_read_kernel(t->daddr, 4, d4);
	}
}

SEC("tracepoint/sock/inet_sock_set_state")
int rf_tcp_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
	struct rf_connect_start *st;
	struct rf_tcp_connect_event *e;
	__u64 now;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;

	/* listen() runs in its caller's context: the listener's owner */
	if (newstate == TCP_LISTEN) {
		rf_tcp_own(sk, BPF_ANY);
		return 0;
	}
	/* the socket is gone (time-wait lives on in a socket of its own) */
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&rf_tcp_owners, &sk);

	/* connect(): filters apply to the connecting process, the socket's owner */
	if (newstate == TCP_SYN_SENT) {
		struct rf_connect_start init;

		rf_tcp_own(sk, BPF_ANY);
		if (!rf_current_passes())
			return 0;
		init.ts = bpf_ktime_get_ns();
		rf_fill_current(&init.hdr, RF_EV_TCP_CONNECT, init.ts);
		bpf_map_update_elem(&rf_tcp_connects, &sk, &init, BPF_ANY);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;

	st = bpf_map_lookup_elem(&rf_tcp_connects, &sk);
	if (!st)
		return 0;
	now = bpf_ktime_get_ns();
	if (newstate == TCP_ESTABLISHED && now - st->ts >= rf_min_latency_ns) {
		e = rf_reserve(sizeof(*e), RF_EV_TCP_CONNECT);
		if (e) {
			e->hdr = st->hdr;
			e->hdr.ts_ns = now;
			rf_tuple_zero(&e->tuple);
			e->tuple.family = ctx->family;
			e->tuple.sport = ctx->sport; /* the tracepoint already did ntohs */
			e->tuple.dport = ctx->dport;
			e->tuple.state = TCP_ESTABLISHED;
			rf_tp_addrs(&e->tuple, ctx->family, ctx->saddr, ctx->daddr,
				    ctx->saddr_v6, ctx->daddr_v6);
			e->latency_ns = now - st->ts;
			rf_submit(e);
		}
	}
	/* ESTABLISHED, CLOSE (refused, timed out) or anything else ends the attempt */
	bpf_map_delete_elem(&rf_tcp_connects, &sk);
	return 0;
}

/* current->files->fdt->fd[fd]->private_data->sk; NULL when fd is out of range. */
static __always_inline struct sock *rf_fd_to_sock(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file;
	struct socket *sock;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* accept() only returns socket fds, so private_data is a struct socket */
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* Tuple as the socket sees it: saddr/sport = local side. */
static __always_inline bool rf_sock_tuple(struct sock *sk, struct rf_tcp_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	rf_tuple_zero(t);
	/* explicit sizes: BPF_CORE_READ_INTO would copy sizeof(*t->saddr) = 1 byte */
	if (family == AF_INET) {
		bpf_core_read(t->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->daddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(t->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		return false;
	}
	t->family = family;
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	return true;
}

/*
 * Remember the listening fd of every accept(), filtered or not: the accepted
 * socket gets its owner at exit; filters apply to the accept record there.
 */
static __always_inline int rf_accept_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 fd = (__u32)ctx->args[0];

	if (rf_self_tgid && (id >> 32) == rf_self_tgid)
		return 0;
	bpf_map_update_elem(&rf_tcp_accepts, &id, &fd, BPF_ANY);
	return 0;
}

static __always_inline int rf_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct rf_tcp_accept_event *e;
	struct sock *sk, *lsk;
	__u32 *lfd, listen_fd;
	long ret = ctx->ret;

	lfd = bpf_map_lookup_elem(&rf_tcp_accepts, &id);
	if (!lfd)
		return 0;
	listen_fd = *lfd;
	bpf_map_delete_elem(&rf_tcp_accepts, &id);
	if (ret < 0)
		return 0;

	task = bpf_get_current_task_btf();
	sk = rf_fd_to_sock(task, (__u32)ret);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0; /* unix, sctp, mptcp... */
	lsk = rf_fd_to_sock(task, listen_fd);

	/* the accepted socket is the acceptor's; a listener set up before we started is too */
	rf_tcp_own((__u64)sk, BPF_ANY);
	if (lsk)
		rf_tcp_own((__u64)lsk, BPF_NOEXIST);
	if (!rf_current_passes())
		return 0;

	e = rf_reserve(sizeof(*e), RF_EV_TCP_ACCEPT);
	if (!e)
		return 0;
	if (!rf_sock_tuple(sk, &e->tuple)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	rf_fill_current(&e->hdr, RF_EV_TCP_ACCEPT, bpf_ktime_get_ns());
	/* the accepted socket's own backlog is always 0: report the listener's */
	e->backlog = lsk ? BPF_CORE_READ(lsk, sk_ack_backlog) : 0;
	e->max_backlog = lsk ? BPF_CORE_READ(lsk, sk_max_ack_backlog) : 0;
	rf_submit(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int rf_tcp_enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return rf_accept_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int rf_tcp_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return rf_accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_enter_accept")
int rf_tcp_enter_accept(struct trace_event_raw_sys_enter *ctx)
{
	return rf_accept_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int rf_tcp_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return rf_accept_exit(ctx);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int rf_tcp_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	struct rf_tcp_retransmit_event *e;
	struct rf_tcp_owner *o;

	/* the owner's filters and header: see the top of the file */
	if (!rf_tcp_attribute((__u64)ctx->skaddr, RF_TCP_UNATTR_RETRANSMIT, &o))
		return 0;
	e = rf_reserve(sizeof(*e), RF_EV_TCP_RETRANSMIT);
	if (!e)
		return 0;
	if (o)
		rf_fill_owner(&e->hdr, o, RF_EV_TCP_RETRANSMIT, bpf_ktime_get_ns());
	else
		rf_fill_current(&e->hdr, RF_EV_TCP_RETRANSMIT, bpf_ktime_get_ns());
	rf_tuple_zero(&e->tuple);
	e->tuple.family = ctx->family;
	e->tuple.sport = ctx->sport; /* ntohs done by the tracepoint */
	e->tuple.dport = ctx->dport;
	e->tuple.state = ctx->state;
	rf_tp_addrs(&e->tuple, ctx->family, ctx->saddr, ctx->daddr,
		    ctx->saddr_v6, ctx->daddr_v6);
	rf_submit(e);
	return 0;
}

/*
 * Addresses and ports as they appear in the packet. The network header offset
 * is only meaningful for IP skbs: skb->protocol says so on receive and after
 * ip_output; before that (local TCP output) the owning socket's family does.
 */
static __always_inline bool rf_skb_tcp_tuple(struct sk_buff *skb, struct rf_tcp_tuple *t)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	struct sock *sk = BPF_CORE_READ(skb, sk);
	__u16 ports[2];
	__u8 ver;

	if (proto != ETH_P_IP && proto != ETH_P_IPV6) {
		__u16 fam;

		if (proto || !sk)
			return false;
		fam = BPF_CORE_READ(sk, __sk_common.skc_family);
		if (fam != AF_INET && fam != AF_INET6)
			return false;
	}
	if (nh == (__u16)~0U || bpf_probe_read_kernel(&ver, 1, head + nh))
		return false;
	ver >>= 4;

	rf_tuple_zero(t);
	if (ver == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return false;
		if (ip.protocol != IPPROTO_TCP)
			return false;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		t->family = AF_INET;
		/* ihl: low nibble of the first byte */
		if (th == (__u16)~0U || th == nh)
			th = nh + (*(__u8 *)&ip & 0xf) * 4;
	} else if (ver == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return false;
		if (ip6.nexthdr != IPPROTO_TCP) /* extension headers are not walked */
			return false;
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		t->family = AF_INET6;
		if (th == (__u16)~0U || th == nh)
			th = nh + sizeof(ip6);
	} else {
		return false;
	}
	/* struct tcphdr starts with source then dest port */
	if (!bpf_probe_read_kernel(ports, sizeof(ports), head + th)) {
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
	}
	if (sk)
		t->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	return true;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(rf_tcp_kfree_skb, struct sk_buff *skb, void *location,
	     enum skb_drop_reason reason)
{
	struct rf_tcp_tuple t;
	struct rf_tcp_drop_event *e;
	struct rf_tcp_owner *o;
	__u64 sk;

	if (!rf_skb_tcp_tuple(skb, &t))
		return 0;
	/*
	 * The socket: the skb's owner on output; on input the socket it was
	 * looked up to, which newer kernels pass to kfree_skb as rx_sk. The
	 * argument and the classic event's rx_sk field came in together:
	 * where the field is missing the check is 0 and ctx[3] is never read.
	 */
	sk = (__u64)BPF_CORE_READ(skb, sk);
	if (!sk && bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
		sk = ctx[3];
	/* the owner's filters and header: see the top of the file */
	if (!rf_tcp_attribute(sk, RF_TCP_UNATTR_DROP, &o))
		return 0;
	e = rf_reserve(sizeof(*e), RF_EV_TCP_DROP);
	if (!e)
		return 0;
	if (o)
		rf_fill_owner(&e->hdr, o, RF_EV_TCP_DROP, bpf_ktime_get_ns());
	else
		rf_fill_current(&e->hdr, RF_EV_TCP_DROP, bpf_ktime_get_ns());
	e->tuple = t;
	e->reason = reason;
	e->_pad2 = 0;
	rf_submit(e);
	return 0;
}
