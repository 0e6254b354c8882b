/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * block.bpf.c: block request latency (RF_EV_BLOCK_RQ), from
 * tp_btf/block_rq_issue to tp_btf/block_rq_complete.
 *
 * Requests are keyed by their struct request pointer. The header is the task
 * current at issue: often the submitter (plug flush), but a kworker when
 * kblockd or a requeue dispatches the request.
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
	struct rf_header hdr; /* issuing context; hdr.type = 0 when filtered out */
	__u64 ts;
	__u64 sector;
	__u32 bytes;
	__u32 dev;            /* MKDEV(major, minor), kernel dev_t encoding */
	__u32 queue_depth;
	__u8  op;
	__u8  _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64); /* struct request * */
	__type(value, struct rf_block_start);
} rf_block_starts SEC(".maps");

/* Requests in flight per device (dev_t), counted by this program. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __s64);
} rf_block_inflight SEC(".maps");

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

SEC("tp_btf/block_rq_issue")
int BPF_PROG(rf_block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq;
	struct rf_block_start st = {};
	__s64 one = 1, *n;

	/*
	 * A requeued request is issued again without completing: keep its first
	 * issue and do not count it twice in the queue depth.
	 */
	if (bpf_map_lookup_elem(&rf_block_starts, &key))
		return 0;

	st.ts = bpf_ktime_get_ns();
	st.dev = rf_rq_dev(rq);

	/* depth counts every request on the device, filtered or not */
	n = bpf_map_lookup_elem(&rf_block_inflight, &st.dev);
	if (n) {
		st.queue_depth = (__u32)(__sync_fetch_and_add(n, 1) + 1);
	} else {
		bpf_map_update_elem(&rf_block_inflight, &st.dev, &one, BPF_NOEXIST);
		st.queue_depth = 1;
	}

	/* filtered-out requests still need an entry to decrement at completion */
	if (rf_current_passes()) {
		rf_fill_current(&st.hdr, RF_EV_BLOCK_RQ, st.ts);
		st.sector = BPF_CORE_READ(rq, __sector);
		st.bytes = BPF_CORE_READ(rq, __data_len);
		st.op = rf_rq_op(rq);
	}
	bpf_map_update_elem(&rf_block_starts, &key, &st, BPF_ANY);
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
	__s64 *n;

	st = bpf_map_lookup_elem(&rf_block_starts, &key);
	if (!st)
		return 0; /* issued before we attached, or a partial completion already seen */

	/* clamp at 0: a racing issue/complete pair may cross */
	n = bpf_map_lookup_elem(&rf_block_inflight, &st->dev);
	if (n && __sync_fetch_and_add(n, -1) <= 0)
		__sync_fetch_and_add(n, 1);

	if (st->hdr.type && now - st->ts >= rf_min_latency_ns) {
		e = rf_reserve(sizeof(*e), RF_EV_BLOCK_RQ);
		if (e) {
			/* header of the issuing context, stamped at completion */
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
