/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sched.bpf.c: run-queue latency (RF_EV_RUNQ_LATENCY) and off-CPU time per
 * context switch (RF_EV_CTX_SWITCH), from tp_btf/sched_wakeup(_new) and
 * tp_btf/sched_switch.
 *
 * One LRU hash keyed by pid holds, per task, when it left the CPU and when it
 * became runnable; the next switch-in of that pid emits both events. Headers
 * describe the task that waited, read from its task_struct with CO-RE: at
 * sched_switch, current is still prev.
 *
 * sched_switch's prev_state argument exists since 5.18 (commit fa2c3254d7cf,
 * "sched/tracing: Don't re-read p->state when emitting sched_switch event");
 * this object targets those kernels.
 */
#include "common.bpf.h"

#define TASK_RUNNING 0

struct rf_sched_state {
	__u64 off_ts;    /* switched out at; 0 = not seen leaving */
	__u64 runq_ts;   /* became runnable at; 0 = not waiting */
	__u8  runq_kind; /* enum rf_runq_kind */
	__u8  voluntary;
	__u8  _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct rf_sched_state);
} rf_sched_tasks SEC(".maps");

/* cgroup v2 id, the value bpf_get_current_cgroup_id() gives for current. */
static __always_inline __u64 rf_task_cgroup_id(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

/* The load-time filters, applied to any task; reads only what a set filter needs. */
static __always_inline bool rf_task_passes(struct task_struct *t)
{
	__u32 tgid = BPF_CORE_READ(t, tgid);
	__u32 uid = 0;
	__u64 cg = 0;

	if (rf_filter_uid != 0xffffffff)
		uid = BPF_CORE_READ(t, cred, uid.val);
	if (rf_filter_cgroup_id)
		cg = rf_task_cgroup_id(t);
	if (!rf_ids_pass(tgid, uid, cg))
		return false;
	if (rf_filter_comm[0]) {
		char comm[RF_COMM_LEN];
		BPF_CORE_READ_STR_INTO(&comm, t, comm);
		return rf_comm_matches(comm);
	}
	return true;
}

static __always_inline void rf_fill_task(struct rf_header *h, __u8 type, __u64 ts,
					 struct task_struct *t)
{
	h->type = type;
	h->_pad0 = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = BPF_CORE_READ(t, pid);
	h->tgid = BPF_CORE_READ(t, tgid);
	h->uid = BPF_CORE_READ(t, cred, uid.val);
	h->ts_ns = ts;
	h->cgroup_id = rf_task_cgroup_id(t);
	BPF_CORE_READ_STR_INTO(&h->comm, t, comm);
}

/* A wake-up starts the run-queue wait; keep whatever switch-out time is stored. */
static __always_inline int rf_on_wakeup(struct task_struct *p, __u8 kind)
{
	__u32 pid = BPF_CORE_READ(p, pid);
	struct rf_sched_state *s, init = {};
	__u64 now;

	if (!pid || !rf_task_passes(p))
		return 0;
	now = bpf_ktime_get_ns();
	s = bpf_map_lookup_elem(&rf_sched_tasks, &pid);
	if (s) {
		s->runq_ts = now;
		s->runq_kind = kind;
		return 0;
	}
	init.runq_ts = now;
	init.runq_kind = kind;
	bpf_map_update_elem(&rf_sched_tasks, &pid, &init, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rf_sched_wakeup, struct task_struct *p)
{
	return rf_on_wakeup(p, RF_RUNQ_WAKEUP);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rf_sched_wakeup_new, struct task_struct *p)
{
	return rf_on_wakeup(p, RF_RUNQ_WAKEUP_NEW);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rf_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u32 prev_pid = BPF_CORE_READ(prev, pid);
	__u32 next_pid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();
	struct rf_sched_state *s;

	/*
	 * prev leaves the CPU. A preempted task stays on the run queue even when
	 * its state was already set to sleep (__schedule only dequeues when
	 * !preempt && prev_state), so it is involuntary and waits from now.
	 */
	if (prev_pid && rf_task_passes(prev)) {
		bool runnable = preempt || prev_state == TASK_RUNNING;
		struct rf_sched_state st = {
			.off_ts = now,
			.runq_ts = runnable ? now : 0,
			.runq_kind = RF_RUNQ_PREEMPTED,
			.voluntary = !runnable,
		};
		bpf_map_update_elem(&rf_sched_tasks, &prev_pid, &st, BPF_ANY);
	}

	/* next comes back: only tasks that passed the filters have an entry */
	if (!next_pid)
		return 0;
	s = bpf_map_lookup_elem(&rf_sched_tasks, &next_pid);
	if (!s)
		return 0;

	if (s->runq_ts && now - s->runq_ts >= rf_min_latency_ns) {
		struct rf_runq_event *e = rf_reserve(sizeof(*e), RF_EV_RUNQ_LATENCY);
		if (e) {
			rf_fill_task(&e->hdr, RF_EV_RUNQ_LATENCY, now, next);
			e->latency_ns = now - s->runq_ts;
			e->prev_pid = prev_pid;
			e->kind = s->runq_kind;
			e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
			rf_submit(e);
		}
	}
	if (s->off_ts && now - s->off_ts >= rf_min_latency_ns) {
		struct rf_ctx_switch_event *e = rf_reserve(sizeof(*e), RF_EV_CTX_SWITCH);
		if (e) {
			rf_fill_task(&e->hdr, RF_EV_CTX_SWITCH, now, next);
			e->off_cpu_ns = now - s->off_ts;
			e->prev_pid = prev_pid;
			e->voluntary = s->voluntary;
			e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
			rf_submit(e);
		}
	}
	/* consumed: a later wake-up or switch-out starts a new interval */
	s->runq_ts = 0;
	s->off_ts = 0;
	return 0;
}
