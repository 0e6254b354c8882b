/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * offcpu.bpf.c: time blocked per (process, stack, task state) (issue 11), the
 * "why did it switch" that sched.cswitch cannot say. As bcc offcputime, but
 * the stacks are walked only for blocks that turn out long enough:
 *
 * - switch-out (tp_btf/sched_switch, prev == current): stamp the time and
 *   the task's state in its rf_offcpu_tasks slot, no stack;
 * - back on the CPU (tp_btf/sched_exit_tp, the end of __schedule(), run by
 *   the task that was switched back in, so current is the blocked task
 *   again and its kernel and user stacks are still the ones it blocked
 *   with: it has not left schedule() yet): if it was off for at least
 *   rf_offcpu_min_ns, take its stacks now and add the time to
 *   rf_offcpu_counts[{tgid, pid or 0, stacks, state}].
 *
 * Most switches are short (a pipe ping-pong's hops take microseconds): they
 * used to cost two stack walks each at switch-out, whatever the block turned
 * out to last (a ping-pong ran at 0.3-0.5x); now they cost a map update and a
 * lookup. bpf_get_stackid takes only current's stacks (at switch-in, in
 * sched_switch, current is the other task), hence the second hook.
 *
 * sched_exit_tp is a bare tracepoint (6.16+, for the RV monitors). On a
 * kernel without it rf_offcpu_back is left out ('?' section: the loader
 * says so) and rf_offcpu_lazy stays 0: every switch-out walks its stacks
 * and the switch-in, in sched_switch, counts the block, as before.
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
	__u64 epoch;   /* stack epoch whose stack map holds the ids (has_stacks) */
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	__u8  state;   /* enum rf_prof_state */
	__u8  has_stacks; /* walked at switch-out (no rf_offcpu_back on this kernel) */
	__u8  _pad[6];
};

/*
 * Task-local storage (as l7.bpf.c's rf_l7_args, and the kernel's runqslower in
 * sched_switch): found through the task itself, no hashing and no bucket lock
 * on every switch, no capacity (an LRU hash of 16384 dropped the oldest blocked
 * tasks' entries unseen past that many), freed with the task. off_ts == 0:
 * nothing pending.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rf_offcpu_task);
} rf_offcpu_tasks SEC(".maps");

/*
 * Set by rf_offcpu_back the first time it runs: from then on switch-outs
 * leave the stacks to it. Only ever goes 0 -> 1; an entry stamped before
 * carries its stacks (has_stacks) and is counted at its switch-in as before,
 * so no block is counted twice or missed across the change.
 */
volatile __u8 rf_offcpu_lazy = 0;

/* A task leaving for good (do_task_dead) never comes back: nothing to stamp. */
#define TASK_DEAD 0x80

/* Adds the block of `t` (tid pid) that ended at `now`, stacks from `s` or, without, from current. */
static __always_inline void rf_offcpu_count(void *ctx, struct task_struct *t, __u32 pid,
					    struct rf_offcpu_task *s, __u64 now)
{
	struct rf_prof_key key = {};
	__u64 gen, epoch;

	rf_prof_now(&gen, &epoch);
	key.tgid = BPF_CORE_READ(t, tgid);
	key.pid = rf_prof_per_thread ? pid : 0;
	key.kind = RF_PROF_OFFCPU;
	key.slot = gen & 1;
	key.state = s->state;
	if (!s->has_stacks) {
		/* current is the task itself, still inside schedule(): its stacks are the blocked ones */
		key.stack_map = epoch % 3;
		key.user_stack_id = rf_prof_stackid(ctx, epoch % 3, BPF_F_USER_STACK);
		key.kernel_stack_id = rf_prof_stackid(ctx, epoch % 3, 0);
	} else if (s->epoch == epoch || s->epoch + 1 == epoch) {
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
	rf_prof_note_comm(key.tgid, t);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rf_offcpu_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u32 prev_pid = BPF_CORE_READ(prev, pid);
	__u32 next_pid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();
	struct rf_offcpu_task *s;
	__u8 lazy = rf_offcpu_lazy;

	/* prev leaves the CPU; it is current here, so its stacks could be taken */
	if (prev_pid && !(prev_state & TASK_DEAD) && rf_current_passes()) {
		struct rf_offcpu_task st = {};

		/* never 0, which means nothing pending (1 ns off at most) */
		st.off_ts = now | 1;
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
		if (!lazy) {
			__u64 gen, epoch;

			rf_prof_now(&gen, &epoch);
			st.epoch = epoch;
			st.has_stacks = 1;
			st.user_stack_id = rf_prof_stackid(ctx, epoch % 3, BPF_F_USER_STACK);
			st.kernel_stack_id = rf_prof_stackid(ctx, epoch % 3, 0);
		}
		s = bpf_task_storage_get(&rf_offcpu_tasks, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (s)
			*s = st;
		else
			rf_prof_lose(RF_PROF_L_OFFCPU_UNTRACKED); /* never silent: its block goes uncounted */
	}

	/* the block of next is counted by rf_offcpu_back, in next's own context */
	if (lazy || !next_pid)
		return 0;
	/* next comes back: only tasks that passed the filters have an entry */
	s = bpf_task_storage_get(&rf_offcpu_tasks, next, 0, 0);
	if (!s || !s->off_ts || !s->has_stacks)
		return 0;
	if (now - s->off_ts >= rf_offcpu_min_ns)
		rf_offcpu_count(ctx, next, next_pid, s, now);
	s->off_ts = 0;
	return 0;
}

/* RF_OFFCPU_NO_BACK: built without it, as a kernel before 6.16 loads it (test/native/offcpu-lazy.test.ts) */
#ifndef RF_OFFCPU_NO_BACK
SEC("?tp_btf/sched_exit_tp")
int BPF_PROG(rf_offcpu_back)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	struct rf_offcpu_task *s;
	struct task_struct *t;
	__u64 now;

	if (!rf_offcpu_lazy)
		rf_offcpu_lazy = 1;
	/* every return from __schedule(): only tasks stamped at their switch-out have an entry */
	if (!pid)
		return 0;
	t = bpf_get_current_task_btf();
	s = bpf_task_storage_get(&rf_offcpu_tasks, t, 0, 0);
	if (!s || !s->off_ts)
		return 0;
	/* the clock only for a task stamped at its switch-out (runs at every __schedule() return) */
	now = bpf_ktime_get_ns();
	if (now - s->off_ts >= rf_offcpu_min_ns)
		rf_offcpu_count(ctx, t, pid, s, now);
	s->off_ts = 0;
	return 0;
}
#endif
