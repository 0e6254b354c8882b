/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * profile.bpf.c: on-CPU stack sampling (issue 11). A perf_event program on the
 * software cpu-clock event of every online CPU (user space opens the events,
 * at --profile-hz, and attaches: native rf_session_attach_perf_event); each
 * sample adds 1 to rf_prof_counts[{tgid, pid or 0, user stack id, kernel
 * stack id}] (prof_maps.bpf.h, events.h for generations and epochs). No record per
 * sample: user space drains the counts every interval.
 *
 * Frame pointers only: bpf_get_stackid walks the user stack by frame
 * pointers, so code built without them (Debian's libc, most distro libraries)
 * ends its user stack early (shared/KERNEL.md).
 */
#define RF_PROF_PREFIX rf_prof
#define RF_PROF_STACK_ENTRIES 4096
#include "prof_maps.bpf.h"

SEC("perf_event")
int rf_prof_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct rf_prof_key key = {};
	__u64 gen, epoch;

	/* the idle task: a CPU with nothing to run is not a stack to report */
	if ((__u32)id == 0)
		return 0;
	/* filters, and never the collector itself (rf_self_tgid) unless asked */
	if (!rf_current_passes())
		return 0;
	rf_prof_now(&gen, &epoch);
	key.tgid = id >> 32;
	key.pid = rf_prof_per_thread ? (__u32)id : 0;
	key.kind = RF_PROF_ONCPU;
	key.slot = gen & 1;
	key.stack_map = epoch % 3;
	key.state = RF_PROF_ST_RUNNING;
	key.user_stack_id = rf_prof_stackid(ctx, key.stack_map, BPF_F_USER_STACK);
	key.kernel_stack_id = rf_prof_stackid(ctx, key.stack_map, 0);
	rf_prof_add(&key, 1);
	rf_prof_note_comm(key.tgid, (struct task_struct *)bpf_get_current_task());
	return 0;
}
