/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * common.bpf.h: what every ringflow BPF program shares.
 *
 * - rf_events: the one ring buffer all signals write to. Every object declares
 *   it; the native loader creates it once and hands the same fd to every object
 *   (bpf_map__reuse_fd), so one consumer thread drains all signals.
 * - rf_drops: per-CPU counters, indexed by event type, of records that could not
 *   be reserved because the ring was full. Shared the same way.
 * - load-time filters, set by user space before load (const volatile => .rodata,
 *   so the verifier prunes the branches of filters that are off).
 */
#ifndef RINGFLOW_COMMON_BPF_H
#define RINGFLOW_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024); /* overridden by the loader */
} rf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_EV_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rf_drops SEC(".maps");

/* Load-time settings. Names must match collector/signals/settings.ts. */
const volatile __u32 rf_filter_tgid = 0;          /* 0 = any process */
const volatile __u32 rf_filter_uid = 0xffffffff;  /* 0xffffffff = any user */
const volatile char  rf_filter_comm[RF_COMM_LEN] = {}; /* "" = any command */
const volatile __u64 rf_filter_cgroup_id = 0;     /* 0 = any cgroup */
const volatile __u64 rf_min_latency_ns = 0;       /* latency events below this are not emitted */
const volatile __u32 rf_self_tgid = 0;            /* the collector itself is never traced */
/*
 * Wake the consumer only once this much data is pending. A wake-up per record
 * costs ~1.6 us of kernel time (shared/KERNEL.md); the consumer also drains on a
 * short poll timeout, so low-rate events are not held back for long.
 */
const volatile __u64 rf_wakeup_bytes = 1 << 20;

static __always_inline bool rf_comm_matches(const char comm[RF_COMM_LEN])
{
	if (rf_filter_comm[0] == '\0')
		return true;
#pragma unroll
	for (int i = 0; i < RF_COMM_LEN; i++) {
		if (comm[i] != rf_filter_comm[i])
			return false;
		if (comm[i] == '\0')
			return true;
	}
	return true;
}

/* Filters that need only ids; call before any expensive work. */
static __always_inline bool rf_ids_pass(__u32 tgid, __u32 uid, __u64 cgroup_id)
{
	if (rf_self_tgid && tgid == rf_self_tgid)
		return false;
	if (rf_filter_tgid && tgid != rf_filter_tgid)
		return false;
	if (rf_filter_uid != 0xffffffff && uid != rf_filter_uid)
		return false;
	if (rf_filter_cgroup_id && cgroup_id != rf_filter_cgroup_id)
		return false;
	return true;
}

/*
 * Filters for the current task. The uid and cgroup helpers are called only
 * when their filter is on: bpf_get_current_uid_gid measured ~40 ns on the test
 * VM (it goes through the task's credentials), and l7 and fs call this on
 * every read/write of the host.
 */
static __always_inline bool rf_current_passes(void)
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

/* Fill a header from the current task. */
static __always_inline void rf_fill_current(struct rf_header *h, __u8 type, __u64 ts)
{
	__u64 id = bpf_get_current_pid_tgid();
	h->type = type;
	h->_pad0 = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = (__u32)id;
	h->tgid = id >> 32;
	h->uid = (__u32)bpf_get_current_uid_gid();
	h->ts_ns = ts;
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void rf_count_drops(__u32 type, __u64 count)
{
	__u64 *n = bpf_map_lookup_elem(&rf_drops, &type);
	if (n)
		*n += count; /* per-CPU slot: no atomics needed */
}

static __always_inline void rf_count_drop(__u32 type)
{
	rf_count_drops(type, 1);
}

/* Reserve a record; count it as dropped when the ring is full. */
static __always_inline void *rf_reserve(__u32 size, __u32 type)
{
	void *e = bpf_ringbuf_reserve(&rf_events, size, 0);
	if (!e)
		rf_count_drop(type);
	return e;
}

/*
 * The wake-up flag for a record of `size` bytes just reserved: wake the
 * consumer once, when this record takes the pending data past rf_wakeup_bytes,
 * not on every record while it stays past it. The consumer drains the ring
 * empty on each wake-up or poll timeout, so the next crossing comes after its
 * next drain; forcing a wake-up on every record while it is behind (busy
 * draining, or paused by back-pressure) cost each submit an irq_work
 * interrupt: 2.5 per HTTP request and ~5 us per L7 exit instead of ~0.45 in
 * the bench (docs/NOTES.md). Two CPUs crossing at once wake it twice; a
 * crossing hidden by a concurrent drain leaves the data to the poll timeout.
 */
static __always_inline __u64 rf_wakeup_flags(__u64 size)
{
	/* what the record occupies in the ring: an 8-byte header, 8-byte aligned */
	__u64 rec = (size + 8 + 7) & ~7ULL;
	__u64 avail = bpf_ringbuf_query(&rf_events, BPF_RB_AVAIL_DATA);
	return avail >= rf_wakeup_bytes && avail < rf_wakeup_bytes + rec ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Submit, waking the consumer only as the pending data crosses rf_wakeup_bytes. */
#define rf_submit(e) bpf_ringbuf_submit((e), rf_wakeup_flags(sizeof(*(e))))

#endif /* RINGFLOW_COMMON_BPF_H */
