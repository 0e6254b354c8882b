/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * offcpu.bpf.c: time blocked per (process, stack, task state) (issue 11), the
 * "why did it switch" that sched.cswitch cannot say. tp_btf/sched_switch, as
 * bcc offcputime:
 *
 * - switch-out (prev == current): stamp the time, the task's state and its
 *   user and kernel stacks (bpf_get_stackid takes current's stack; at
 *   switch-in current is the other task) in rf_offcpu_tasks[pid];
 * - switch-in (next): the blocked time, if at least rf_offcpu_min_ns, is
 *   added to rf_offcpu_counts[{tgid, pid or 0, stacks, state}].
 *
 * State from sched_switch's prev_state (5.18+, commit fa2c3254d7cf): a task
 * switched out by preemption or still TASK_RUNNING waited for a CPU
 * (preempted); TASK_INTERRUPTIBLE is S (sleep, futex, socket, pipe),
 * TASK_UNINTERRUPTIBLE D (disk I/O, some kernel locks); TASK_NOLOAD (kernel
 * threads' idle waits, TASK_IDLE) and the rest are "other".
 */
#define RF_PROF_PREFIX rf_offcpu
#define RF_PROF_STACK_ENTRIES 8192
#include "prof_maps.bpf.h"

#define TASK_RUNNING 0x0
#define TASK_INTERRUPTIBLE 0x1
#define TASK_UNINTERRUPTIBLE 0x2
#define TASK_NOLOAD 0x400

/*
 * Blocks shorter than this are not counted (default 1 ms): most switches are
 * short lock hand-overs and wake-ups that do not explain a latency a user
 * sees, and at 100 k switches/s they would dominate the map updates
 * (collector/profile documents the --offcpu-min flag).
 */
const volatile __u64 rf_offcpu_min_ns = 1000000;

struct rf_offcpu_task {
	__u64 off_ts;  /* switched out at */
	__u64 epoch;   /* stack epoch whose stack map holds the ids */
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	__u8  state;   /* enum rf_prof_state */
	__u8  _pad[7];
};

/* LRU: entries of tasks that exited while off-CPU go away by themselves (as sched.bpf.c's) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct rf_offcpu_task);
} rf_offcpu_tasks SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(rf_offcpu_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u32 prev_pid = BPF_CORE_READ(prev, pid);
	__u32 next_pid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();
	struct rf_offcpu_task *s;
	__u64 gen, epoch;

	/* prev leaves the CPU; it is current here, so its stacks can be taken */
	if (prev_pid && rf_current_passes()) {
		struct rf_offcpu_task st = {};

		rf_prof_now(&gen, &epoch);
		st.off_ts = now;
		st.epoch = epoch;
		if (preempt || prev_state == TASK_RUNNING)
			st.state = RF_PROF_ST_PREEMPTED;
		else if (prev_state & TASK_NOLOAD)
			st.state = RF_PROF_ST_OTHER;
		else if (prev_state & TASK_INTERRUPTIBLE)
			st.state = RF_PROF_ST_SLEEPING;
		else if (prev_state & TASK_UNINTERRUPTIBLE)
			st.state = RF_PROF_ST_DISK;
		else
			st.state = RF_PROF_ST_OTHER;
		st.user_stack_id = rf_prof_stackid(ctx, epoch % 3, BPF_F_USER_STACK);
		st.kernel_stack_id = rf_prof_stackid(ctx, epoch % 3, 0);
		bpf_map_update_elem(&rf_offcpu_tasks, &prev_pid, &st, BPF_ANY);
	}

	/* next comes back: only tasks that passed the filters have an entry */
	if (!next_pid)
		return 0;
	s = bpf_map_lookup_elem(&rf_offcpu_tasks, &next_pid);
	if (!s)
		return 0;
	if (now - s->off_ts >= rf_offcpu_min_ns) {
		struct rf_prof_key key = {};

		rf_prof_now(&gen, &epoch);
		key.tgid = BPF_CORE_READ(next, tgid);
		key.pid = rf_prof_per_thread ? next_pid : 0;
		key.kind = RF_PROF_OFFCPU;
		key.slot = gen & 1;
		key.state = s->state;
		if (s->epoch == epoch || s->epoch + 1 == epoch) {
			/* the stack map of epoch s->epoch is cleared only as epoch s->epoch + 3 begins */
			key.stack_map = s->epoch % 3;
			key.user_stack_id = s->user_stack_id;
			key.kernel_stack_id = s->kernel_stack_id;
		} else {
			key.stack_map = epoch % 3;
			key.user_stack_id = RF_PROF_STACK_EXPIRED;
			key.kernel_stack_id = RF_PROF_STACK_EXPIRED;
			rf_prof_lose(RF_PROF_L_OFFCPU_EXPIRED);
		}
		rf_prof_add(&key, now - s->off_ts);
		rf_prof_note_comm(key.tgid, next);
	}
	bpf_map_delete_elem(&rf_offcpu_tasks, &next_pid);
	return 0;
}
