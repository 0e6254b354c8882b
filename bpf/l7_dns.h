/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * l7_dns.h: DNS over UDP recognised and paired in the kernel (issue 10,
 * docs/design/l7-in-kernel.md §2.3 and slice 3). Included by l7.bpf.c after
 * its pending map and HTTP/1 pairing, whose shape it follows: a query waits in
 * rf_l7_pending, its answer completes it and ONE struct rf_l7_exchange
 * (app RF_L7_APP_DNS) goes out per lookup and observed end, instead of a
 * capture record per datagram.
 *
 *   query (QR 0)     pending key (conn_id, id, peer address + port): one UDP
 *                    socket talks to several resolvers (a server to many
 *                    clients), and ids are only unique per peer. The head is
 *                    the datagram's first bytes (header + question), up to
 *                    rf_l7_head_bytes; req_body_bytes its size.
 *   same key again   a retransmit: retries + 1, the first send time kept. One
 *                    exchange from the first query to the answer is what the
 *                    resolver's user waited (today's FIFO pairing in user
 *                    space made two spans of it).
 *   answer (QR 1)    status = RCODE, the head its first bytes (RESP_HEAD_CUT
 *                    when longer), resp_body_bytes its size: emitted and
 *                    deleted as rf_l7_x_emit does (copy, delete, submit only
 *                    if the delete won against the collector's sweep).
 *   answer, no query RESP_ONLY (query before capture, claimed by the sweep as
 *                    REQ_ONLY already, a second answer): spans.ts pairs it by
 *                    seq with a REQ_ONLY, as for HTTP/1.
 *
 * Unanswered queries are not flushed at close() (their ids are not a range to
 * walk): the collector's sweep reports them REQ_ONLY after --l7-handover.
 *
 * Only datagrams with port 53 on either side are taken (a resolver's stub,
 * its upstream, a server): the other DNS-looking ones the gate passes stay
 * RAW capture records, judged in user space by looksLikeDns's full check, so
 * that a look-alike protocol never fills the pending table with queries that
 * are never answered.
 */
#ifndef RINGFLOW_L7_DNS_H
#define RINGFLOW_L7_DNS_H

#define RF_L7_DNS_HEADER 12
/* the header, the root name (1 byte), QTYPE and QCLASS: the smallest message with a question */
#define RF_L7_DNS_MIN    17

/*
 * The plausibility check of OBI's dns_header_is_plausible and dns.ts's
 * looksLikeDns, on the header alone (the datagram's first bytes in h, n of
 * them): OPCODE 0 (QUERY), Z clear, QDCOUNT 1 (RFC 9619); a query also has
 * RCODE 0 and no answer or authority records.
 */
static __always_inline bool rf_l7_dns_plausible(const __u8 *h, __u64 n)
{
	if (n < RF_L7_DNS_MIN)
		return false;
	if ((h[2] & 0x78) || (h[3] & 0x40) || h[4] || h[5] != 1)
		return false;
	if (h[2] & 0x80)
		return true;
	return !(h[3] & 0x0f) && !h[6] && !h[7] && !h[8] && !h[9];
}

/*
 * Sends the exchange of key k and deletes it, or (staged) the response-only
 * one built in rf_l7_pend_stage. As rf_l7_x_emit: the entry is copied into
 * the ring record first, then deleted, and submitted only if this delete won;
 * if the sweep claimed the query meanwhile (it went out REQ_ONLY), the
 * record goes out RESP_ONLY with the same seq instead, so the answer is not
 * lost. A global function: verified once.
 */
__noinline int rf_l7_dns_emit(struct rf_l7_pkey *k, int staged)
{
	struct rf_l7_pend *p;
	struct bpf_dynptr dp;
	__u32 zero = 0;
	__u8 out;
	__u64 rl, sl;

	if (!k)
		return 0;
	p = staged ? bpf_map_lookup_elem(&rf_l7_pend_stage, &zero) : bpf_map_lookup_elem(&rf_l7_pending, k);
	if (!p) {
		/* claimed by the sweep between the answer's lookup and here */
		rf_l7_parse_count(RF_L7_P_RESP_ORPHAN);
		return 0;
	}
	rf_fill_current(&p->x.hdr, RF_EV_L7_EXCHANGE, bpf_ktime_get_ns());
	p->x.outcome = staged ? RF_L7_OUT_RESP_ONLY : RF_L7_OUT_RESPONDED;
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
		if (!staged)
			bpf_map_delete_elem(&rf_l7_pending, k);
		rf_l7_parse_count(RF_L7_P_EXCHANGES);
		rf_count_drop(RF_EV_L7_EXCHANGE);
		return 0;
	}
	bpf_dynptr_write(&dp, 0, &p->x, sizeof(p->x), 0);
	bpf_dynptr_write(&dp, sizeof(p->x), p->head, rl, 0);
	bpf_dynptr_write(&dp, sizeof(p->x) + rl, p->head + RF_L7_PEND_HEAD, sl, 0);
	/* copied: p is not read after the delete */
	if (!staged && bpf_map_delete_elem(&rf_l7_pending, k)) {
		out = RF_L7_OUT_RESP_ONLY;
		bpf_dynptr_write(&dp, __builtin_offsetof(struct rf_l7_exchange, outcome), &out, 1, 0);
	}
	rf_l7_parse_count(RF_L7_P_EXCHANGES);
	bpf_ringbuf_submit_dynptr(&dp, rf_wakeup_flags(sizeof(p->x) + rl + sl));
	return 0;
}

/*
 * One DNS datagram that rf_l7_emit recognised (its first captured bytes in
 * the scratch window, its tuple with the datagram's peer in
 * rf_l7_emit_scratch): a query waits for its answer, an answer completes it.
 * A global function, called after rf_l7_emit returns (their stacks do not add).
 */
__noinline int rf_l7_dns_feed(struct rf_l7_call *c)
{
	struct rf_l7_scratch *s = rf_l7_scratch_get();
	struct rf_l7_emit_scratch *e;
	struct rf_l7_exchange *x;
	struct rf_l7_conn *st;
	struct rf_l7_pend *p;
	struct rf_l7_pkey k;
	struct rf_l7_key ck;
	__u32 zero = 0;
	__u64 edge, id = bpf_get_current_pid_tgid();
	int resp, egress;

	if (!c || !s)
		return 0;
	e = bpf_map_lookup_elem(&rf_l7_emit_scratch, &zero);
	ck.tgid = id >> 32;
	ck.fd = c->fd;
	st = bpf_map_lookup_elem(&rf_l7_conns, &ck);
	if (!e || !st || st->sk != c->sk)
		return 0;
	resp = (s->data[2] & 0x80) != 0;
	egress = c->direction == RF_L7_EGRESS;
	/* messageEdgeNs: a send's bytes exist from its enter, a receive's from its exit */
	edge = egress ? c->enter_ns : c->now;
	__builtin_memset(&k, 0, sizeof(k));
	k.conn_id = st->id;
	k.seq = ((__u32)s->data[0] << 8) | s->data[1];
	k.rport = e->r.rport;
	__builtin_memcpy(k.raddr, e->r.raddr, sizeof(k.raddr));

	p = bpf_map_lookup_elem(&rf_l7_pending, &k);
	if (!resp && p) {
		/* a retransmit: the exchange keeps its first send */
		if (p->x.retries < 0xff)
			p->x.retries++;
		return 0;
	}
	if (resp && p) {
		p->x.resp_start_ns = edge;
		p->x.resp_end_ns = edge;
		p->x.resp_body_bytes = c->bytes;
		p->x.status = s->data[3] & 0x0f;
		rf_l7_head_put(p, 1, s->data, 0, c->captured);
		if (c->captured < c->bytes)
			p->x.flags |= RF_L7_X_RESP_HEAD_CUT;
		return rf_l7_dns_emit(&k, 0);
	}

	/* a new query, or an answer with none: built in the per-CPU stage */
	p = bpf_map_lookup_elem(&rf_l7_pend_stage, &zero);
	if (!p)
		return 0;
	x = &p->x;
	__builtin_memset(x, 0, sizeof(*x));
	x->hdr.type = RF_EV_L7_EXCHANGE;
	x->conn_id = st->id;
	__builtin_memcpy(x->laddr, e->r.laddr, sizeof(x->laddr));
	__builtin_memcpy(x->raddr, k.raddr, sizeof(x->raddr));
	x->seq = k.seq;
	x->fd = c->fd;
	x->lport = e->r.lport;
	x->rport = k.rport;
	x->family = e->r.family;
	x->app = RF_L7_APP_DNS;
	/* a query sent or an answer received: this end is the client */
	x->role = resp != egress ? RF_L7_ROLE_CLIENT : RF_L7_ROLE_SERVER;
	x->protocol = IPPROTO_UDP;
	p->method = 0;
	p->has_req = !resp;
	p->lost = 0;
	if (resp) {
		x->resp_start_ns = edge;
		x->resp_end_ns = edge;
		x->resp_body_bytes = c->bytes;
		x->status = s->data[3] & 0x0f;
		rf_l7_head_put(p, 1, s->data, 0, c->captured);
		if (c->captured < c->bytes)
			x->flags |= RF_L7_X_RESP_HEAD_CUT;
		return rf_l7_dns_emit(&k, 1);
	}
	x->req_start_ns = edge;
	x->req_end_ns = edge;
	x->req_body_bytes = c->bytes;
	x->req_pid = (__u32)id;
	x->req_tgid = id >> 32;
	rf_l7_head_put(p, 0, s->data, 0, c->captured);
	if (c->captured < c->bytes)
		x->flags |= RF_L7_X_REQ_HEAD_CUT;
	if (bpf_map_update_elem(&rf_l7_pending, &k, p, BPF_NOEXIST)) {
		/* another CPU put the same query there first: a retransmit too */
		p = bpf_map_lookup_elem(&rf_l7_pending, &k);
		if (p) {
			if (p->x.retries < 0xff)
				p->x.retries++;
			return 0;
		}
		/* full: its answer will go out RESP_ONLY */
		rf_l7_parse_count(RF_L7_P_PENDING_FULL);
	}
	return 0;
}

#endif /* RINGFLOW_L7_DNS_H */
