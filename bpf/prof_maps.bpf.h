/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * prof_maps.bpf.h: the in-kernel aggregation shared by bpf/profile.bpf.c
 * (on-CPU samples) and bpf/offcpu.bpf.c (off-CPU time). Each object declares
 * its own set, named by RF_PROF_PREFIX (rf_prof / rf_offcpu), so the two
 * signals load, run and drain independently; the native drain
 * (rf_session_profile_drain) finds a set by that prefix:
 *
 *   <P>_ctl      ARRAY[1] of struct rf_prof_ctl: generation and stack epoch (events.h explains the scheme)
 *   <P>_counts   HASH struct rf_prof_key -> __u64 (samples or ns)
 *   <P>_stacks0..2  STACK_TRACE: one per stack epoch % 3, user and kernel stacks
 *   <P>_comm     LRU_HASH tgid -> process comm (group leader's), written once per tgid
 *   <P>_lost     PERCPU_ARRAY of __u64 by enum rf_prof_lost_reason
 *
 * Counts are added with an atomic add to the existing value (no record per
 * sample, as bcc profile/offcputime and the Parca agent aggregate).
 */
#ifndef RINGFLOW_PROF_MAPS_BPF_H
#define RINGFLOW_PROF_MAPS_BPF_H

#include "common.bpf.h"

#ifndef RF_PROF_PREFIX
#error "define RF_PROF_PREFIX before including prof_maps.bpf.h"
#endif
#ifndef RF_PROF_STACK_ENTRIES
#define RF_PROF_STACK_ENTRIES 4096
#endif
#ifndef RF_PROF_COUNT_ENTRIES
#define RF_PROF_COUNT_ENTRIES 16384
#endif

#define RF_PASTE2(a, b) a##b
#define RF_PASTE(a, b) RF_PASTE2(a, b)
#define RF_PM(name) RF_PASTE(RF_PROF_PREFIX, name)

#define EEXIST 17
#define EFAULT 14

/* Per-thread keys (pid set) instead of per-process (pid 0). */
const volatile __u8 rf_prof_per_thread = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_prof_ctl);
} RF_PM(_ctl) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RF_PROF_COUNT_ENTRIES);
	__type(key, struct rf_prof_key);
	__type(value, __u64);
} RF_PM(_counts) SEC(".maps");

#define RF_PROF_STACK_MAP(n)                                              \
	struct {                                                          \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                   \
		__uint(max_entries, RF_PROF_STACK_ENTRIES);               \
		__uint(key_size, sizeof(__u32));                          \
		__uint(value_size, RF_PROF_MAX_FRAMES * sizeof(__u64));   \
	} RF_PM(_stacks##n) SEC(".maps")
RF_PROF_STACK_MAP(0);
RF_PROF_STACK_MAP(1);
RF_PROF_STACK_MAP(2);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, char[RF_COMM_LEN]);
} RF_PM(_comm) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_PROF_L_NR);
	__type(key, __u32);
	__type(value, __u64);
} RF_PM(_lost) SEC(".maps");

static __always_inline void rf_prof_lose(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&RF_PM(_lost), &reason);
	if (n)
		*n += 1; /* per-CPU slot */
}

/*
 * The current generation and stack epoch (0, 0 if the map cannot be read: it
 * always can, an array). User space rewrites the struct while programs run:
 * any mix of old and new values is safe (events.h), each is read once.
 */
static __always_inline void rf_prof_now(__u64 *gen, __u64 *epoch)
{
	__u32 zero = 0;
	struct rf_prof_ctl *c = bpf_map_lookup_elem(&RF_PM(_ctl), &zero);

	*gen = c ? *(volatile __u64 *)&c->generation : 0;
	*epoch = c ? *(volatile __u64 *)&c->stack_epoch : 0;
}

/*
 * The stack of current (user with BPF_F_USER_STACK, else kernel) in the stack
 * map of stack epoch % 3 == m. A task without that kind of stack (-EFAULT: a
 * kernel thread's user stack, a sample taken in user mode's kernel stack) is
 * RF_PROF_STACK_NONE; a failure is counted and RF_PROF_STACK_LOST (the sample
 * or block is kept, without that stack).
 */
static __always_inline __s32 rf_prof_stackid(void *ctx, __u32 m, __u64 flags)
{
	long id;

	if (m == 0)
		id = bpf_get_stackid(ctx, &RF_PM(_stacks0), flags);
	else if (m == 1)
		id = bpf_get_stackid(ctx, &RF_PM(_stacks1), flags);
	else
		id = bpf_get_stackid(ctx, &RF_PM(_stacks2), flags);
	if (id >= 0)
		return id;
	if (id == -EFAULT)
		return RF_PROF_STACK_NONE;
	if (id == -EEXIST)
		rf_prof_lose(flags & BPF_F_USER_STACK ? RF_PROF_L_USTACK_COLLISION : RF_PROF_L_KSTACK_COLLISION);
	else
		rf_prof_lose(RF_PROF_L_STACK_MAP_FULL);
	return RF_PROF_STACK_LOST;
}

/*
 * counts[key] += delta, creating the entry; a full map is counted. True when
 * this call created the entry (the first of its key in this generation):
 * what needs doing once per key, not per sample, hangs on it.
 */
static __always_inline bool rf_prof_add(struct rf_prof_key *key, __u64 delta)
{
	__u64 *v = bpf_map_lookup_elem(&RF_PM(_counts), key);
	long err;

	if (v) {
		__sync_fetch_and_add(v, delta);
		return false;
	}
	err = bpf_map_update_elem(&RF_PM(_counts), key, &delta, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* another CPU created it between the lookup and the update */
		v = bpf_map_lookup_elem(&RF_PM(_counts), key);
		if (v) {
			__sync_fetch_and_add(v, delta);
			return false;
		}
	}
	if (err)
		rf_prof_lose(RF_PROF_L_COUNTS_FULL);
	return err == 0;
}

/* The process's command (its group leader's comm), kept once per tgid. */
static __always_inline void rf_prof_note_comm(__u32 tgid, struct task_struct *t)
{
	char comm[RF_COMM_LEN];

	if (bpf_map_lookup_elem(&RF_PM(_comm), &tgid))
		return;
	BPF_CORE_READ_STR_INTO(&comm, t, group_leader, comm);
	bpf_map_update_elem(&RF_PM(_comm), &tgid, &comm, BPF_NOEXIST);
}

#endif /* RINGFLOW_PROF_MAPS_BPF_H */
