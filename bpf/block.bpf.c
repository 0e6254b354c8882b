/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * block.bpf.c: block request latency (RF_EV_BLOCK_RQ), from
 * tp_btf/block_rq_issue to tp_btf/block_rq_complete.
 *
 * Requests are keyed by their struct request pointer, which the block layer
 * reuses for every request of the same tag: an entry is only ever matched to
 * the life of the request it was made for (allocation time, end sector,
 * device), a new issue at the same address replaces an entry whose completion
 * was missed, and every such loss is counted (rf_block_lost, and in
 * rf_drops[RF_EV_BLOCK_RQ] when it passed the filters), never reported with a
 * stale start time or owner. The header and the filters are those of the
 * submitter (tp_btf/block_io_start, in the context that made the request from
 * a bio), else of the task current at the first issue.
 */
#include "common.bpf.h"

#define REQ_OP_BITS 8
#define REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)
#define REQ_OP_READ 0
#define REQ_OP_WRITE 1
#define REQ_OP_FLUSH 2
#define REQ_OP_DISCARD 3
#define MINORBITS 20

struct rf_block_start {
	struct rf_header hdr; /* submitter (or issuing context); hdr.type = 0 when filtered out */
	__u64 ts;
	/*
	 * Identity of this life of the request. Requests are preallocated per tag,
	 * so the same struct request * is reused all the time: an entry whose
	 * completion was missed must never be matched to a later request.
	 * alloc_ns is rq->start_time_ns (0 when the queue keeps no timestamps);
	 * end_sector (__sector + __data_len / 512) stays constant across partial
	 * completions, which advance __sector and shrink __data_len together.
	 */
	__u64 alloc_ns;
	__u64 end_sector;
	__u64 sector;
	__u32 bytes;
	__u32 dev;            /* MKDEV(major, minor), kernel dev_t encoding */
	__u32 queue_depth;
	__u8  op;
	__u8  requeued;       /* block_rq_requeue seen: the next issue is this request again */
	__u8  _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64); /* struct request * */
	__type(value, struct rf_block_start);
} rf_block_starts SEC(".maps");

/*
 * Submitter of a request, recorded at block_io_start (blk_account_io_start,
 * in the context that turned the bio into a request). A request is often
 * issued by another task: whoever runs the queue behind an I/O scheduler, or
 * kblockd after a plug flushed from schedule() or a driver tag that was not
 * free. The issuing task named the header and met the filters, so `--pid`
 * lost such requests and others' I/O was charged to whoever issued it (a
 * test: 4 direct writers behind mq-deadline). block_rq_insert would exist on
 * older kernels but misses requests that go to the dispatch list without an
 * insert. LRU: a lost owner only means falling back to the issuing task.
 *
 * No identity check here: start_time_ns is only set after this tracepoint
 * (blk_account_io_start), and every life of a request starts with one, which
 * replaces the owner of an earlier life that was merged away unissued. The
 * first issue takes the owner out.
 */
struct rf_block_owner {
	struct rf_header hdr; /* hdr.type = 0 when the submitter is filtered out */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64); /* struct request * */
	__type(value, struct rf_block_owner);
} rf_block_owners SEC(".maps");

/* Requests in flight per device (dev_t), counted by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __s64);
} rf_block_inflight SEC(".maps");

/*
 * Requests whose record was lost other than by a full ring, per reason (per-CPU
 * __u64; read with bpftool map dump name rf_block_lost). The ones that passed
 * the filters also count in rf_drops[RF_EV_BLOCK_RQ], so they reach the stats
 * record as kernel drops of ringflow.block.io.v1.
 */
enum rf_block_lost_reason {
	/* an entry of an earlier life of the request (its completion was missed) */
	RF_BLOCK_LOST_ORPHANED  = 0,
	/* a completion of a request allocated after we started whose issue was not seen */
	RF_BLOCK_LOST_UNTRACKED = 1,
	/* rf_block_starts was full at issue */
	RF_BLOCK_LOST_MAP_FULL  = 2,
	/*
	 * Not a loss: a request with data allocated after our first event
	 * whose block_io_start was not seen, so the task current at issue
	 * names it (and meets the filters) in place of its submitter.
	 */
	RF_BLOCK_LOST_UNOWNED   = 3,
	RF_BLOCK_LOST_NR        = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_BLOCK_LOST_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_block_lost SEC(".maps");

/* bpf_ktime_get_ns() of the first block event seen: requests allocated before it are not ours to miss. */
__u64 rf_block_t0 = 0;

/* Any task filter set: a request nobody saw issued cannot be told in or out. */
static __always_inline bool rf_task_filtered(void)
{
	return rf_filter_tgid || rf_filter_uid != 0xffffffff || rf_filter_comm[0] ||
	       rf_filter_cgroup_id;
}

static __always_inline void rf_block_count_lost(__u32 reason, bool drop)
{
	__u64 *n = bpf_map_lookup_elem(&rf_block_lost, &reason);

	if (n)
		*n += 1; /* per-CPU slot */
	if (drop)
		rf_count_drop(RF_EV_BLOCK_RQ);
}

static __always_inline void rf_block_seen(__u64 now)
{
	if (!rf_block_t0)
		__sync_val_compare_and_swap(&rf_block_t0, 0, now);
}

/* Before 5.16 (commit f3fa33acca9f) the disk hung off the request itself. */
struct request___old {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline __u32 rf_rq_dev(struct request *rq)
{
	struct gendisk *disk;

	if (bpf_core_field_exists(rq->q->disk))
		disk = BPF_CORE_READ(rq, q, disk);
	else
		disk = BPF_CORE_READ((struct request___old *)rq, rq_disk);
	if (!disk)
		return 0;
	/* whole-disk dev_t, as the block tracepoints print it */
	return ((__u32)BPF_CORE_READ(disk, major) << MINORBITS) |
	       (__u32)BPF_CORE_READ(disk, first_minor);
}

static __always_inline __u8 rf_rq_op(struct request *rq)
{
	__u32 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;

	switch (op) {
	case REQ_OP_READ:    return RF_BLOCK_READ;
	case REQ_OP_WRITE:   return RF_BLOCK_WRITE;
	case REQ_OP_FLUSH:   return RF_BLOCK_FLUSH;
	case REQ_OP_DISCARD: return RF_BLOCK_DISCARD;
	default:             return RF_BLOCK_OTHER;
	}
}

static __always_inline void rf_block_depth_dec(__u32 dev)
{
	__s64 *n = bpf_map_lookup_elem(&rf_block_inflight, &dev);

	/* clamp at 0: a racing issue/complete pair may cross */
	if (n && __sync_fetch_and_add(n, -1) <= 0)
		__sync_fetch_and_add(n, 1);
}

static __always_inline __u64 rf_rq_end_sector(struct request *rq)
{
	return BPF_CORE_READ(rq, __sector) + (BPF_CORE_READ(rq, __data_len) >> 9);
}

/* optional: block_io_start is new in 6.5; without it the task current at issue names a request (RF_BLOCK_LOST_UNOWNED) */
SEC("?tp_btf/block_io_start")
int BPF_PROG(rf_block_io_start, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct rf_block_owner o = {};
	__u64 now = bpf_ktime_get_ns();

	rf_block_seen(now);
	if (rf_current_passes())
		rf_fill_current(&o.hdr, RF_EV_BLOCK_RQ, now);
	bpf_map_update_elem(&rf_block_owners, &key, &o, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_requeue")
int BPF_PROG(rf_block_rq_requeue, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct rf_block_start *st = bpf_map_lookup_elem(&rf_block_starts, &key);

	if (st)
		st->requeued = 1;
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(rf_block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct rf_block_start st = {}, *old;
	struct rf_block_owner *o;
	__s64 one = 1, *n;

	st.ts = bpf_ktime_get_ns();
	rf_block_seen(st.ts);
	st.alloc_ns = BPF_CORE_READ(rq, start_time_ns);
	st.end_sector = rf_rq_end_sector(rq);
	st.dev = rf_rq_dev(rq);

	old = bpf_map_lookup_elem(&rf_block_starts, &key);
	if (old) {
		/*
		 * A requeued request is issued again without completing: keep its
		 * first issue and do not count it twice in the queue depth. Known
		 * by block_rq_requeue, or by its allocation time when the queue
		 * keeps one (a requeue we did not see).
		 */
		if (old->alloc_ns == st.alloc_ns && old->end_sector == st.end_sector &&
		    old->dev == st.dev && (old->requeued || st.alloc_ns)) {
			old->requeued = 0;
			return 0;
		}
		/*
		 * Anything else is an earlier request at this address whose
		 * completion never reached us: replace it, never report it. Seen
		 * here under load: 8 direct writers, 0 to 250 of 16000
		 * completions missing, with no recursion miss on the program
		 * and a second program on the tracepoint missing the same ones.
		 * The old code took the entry for a requeue and reported the
		 * next request with this one's start time and process.
		 */
		rf_block_count_lost(RF_BLOCK_LOST_ORPHANED, old->hdr.type != 0);
		rf_block_depth_dec(old->dev);
	}

	/* depth counts every request on the device, filtered or not */
	n = bpf_map_lookup_elem(&rf_block_inflight, &st.dev);
	if (n) {
		st.queue_depth = (__u32)(__sync_fetch_and_add(n, 1) + 1);
	} else {
		bpf_map_update_elem(&rf_block_inflight, &st.dev, &one, BPF_NOEXIST);
		st.queue_depth = 1;
	}

	/* the submitter if block_io_start saw this life of the request, else current */
	o = bpf_map_lookup_elem(&rf_block_owners, &key);
	if (o) {
		st.hdr = o->hdr;
		st.hdr.ts_ns = st.ts;
	} else {
		if (rf_block_t0 && st.alloc_ns > rf_block_t0 && BPF_CORE_READ(rq, __data_len))
			rf_block_count_lost(RF_BLOCK_LOST_UNOWNED, false);
		if (rf_current_passes())
			rf_fill_current(&st.hdr, RF_EV_BLOCK_RQ, st.ts);
	}
	if (o)
		bpf_map_delete_elem(&rf_block_owners, &key);
	/* filtered-out requests still need an entry to decrement at completion */
	if (st.hdr.type) {
		st.sector = BPF_CORE_READ(rq, __sector);
		st.bytes = BPF_CORE_READ(rq, __data_len);
		st.op = rf_rq_op(rq);
	}
	if (bpf_map_update_elem(&rf_block_starts, &key, &st, BPF_ANY)) {
		/*
		 * Full: its completion will be untracked. Without task filters
		 * that completion counts the drop; with them only this side
		 * knows whether the request was wanted.
		 */
		rf_block_count_lost(RF_BLOCK_LOST_MAP_FULL,
				    st.hdr.type && rf_task_filtered());
		rf_block_depth_dec(st.dev);
	}
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(rf_block_rq_complete, struct request *rq, blk_status_t error,
	     unsigned int nr_bytes)
{
	__u64 key = (__u64)rq;
	struct rf_block_start *st;
	struct rf_block_event *e;
	__u64 now = bpf_ktime_get_ns();
	__u64 alloc_ns = BPF_CORE_READ(rq, start_time_ns);
	__u64 t0 = rf_block_t0;

	st = bpf_map_lookup_elem(&rf_block_starts, &key);
	if (st && (st->alloc_ns != alloc_ns || st->end_sector != rf_rq_end_sector(rq) ||
		   st->dev != rf_rq_dev(rq))) {
		/* an earlier life of this request: its completion was missed */
		rf_block_count_lost(RF_BLOCK_LOST_ORPHANED, st->hdr.type != 0);
		rf_block_depth_dec(st->dev);
		bpf_map_delete_elem(&rf_block_starts, &key);
		st = NULL;
	}
	if (!st) {
		/*
		 * Issued before we attached (not ours to miss), or its issue was
		 * not seen. Only a request allocated after our first event tells.
		 * A completion without data is not a request we could miss: the
		 * flush machinery ends a PREFLUSH/FUA request a second time after
		 * its data completed (blk_flush_complete_seq), and ends an empty
		 * PREFLUSH without issuing it (its flush_rq is issued instead).
		 */
		if (t0 && alloc_ns > t0 && BPF_CORE_READ(rq, __data_len))
			rf_block_count_lost(RF_BLOCK_LOST_UNTRACKED, !rf_task_filtered());
		return 0;
	}
	/* a partial completion (the request goes on with the rest): wait for the last */
	if (nr_bytes < BPF_CORE_READ(rq, __data_len))
		return 0;

	rf_block_depth_dec(st->dev);

	if (st->hdr.type && now - st->ts >= rf_min_latency_ns) {
		e = rf_reserve(sizeof(*e), RF_EV_BLOCK_RQ);
		if (e) {
			/* header of the submitting context, stamped at completion */
			e->hdr = st->hdr;
			e->hdr.ts_ns = now;
			e->latency_ns = now - st->ts;
			e->sector = st->sector;
			e->bytes = st->bytes;
			e->dev_major = st->dev >> MINORBITS;
			e->dev_minor = st->dev & ((1U << MINORBITS) - 1);
			e->queue_depth = st->queue_depth;
			e->error = error;
			e->op = st->op;
			e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
			rf_submit(e);
		}
	}
	bpf_map_delete_elem(&rf_block_starts, &key);
	return 0;
}
