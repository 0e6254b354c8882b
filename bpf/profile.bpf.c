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
 *
 * Cost (measured on the 2-vCPU VM, kernel 6.18, bpf_stats and per-part
 * bpf_ktime_get_ns histograms in a scratch build): 7-22 us per sample at
 * 19-99 Hz, 3.9 us for the same program at 9999 Hz: at low rates every
 * sample starts with cold caches. Of that, the user stack walk is 1-16 us:
 * the kernel's frame-pointer walker reads one frame past the last one
 * (fp = NULL for a clean chain, libc's unrelated rbp otherwise) and takes a
 * page fault in kernel mode on every sample (perf stat
 * exceptions:page_fault_kernel == samples, also for a libc-free binary);
 * one such fault costs 0.5-2 us here. A sample in kernel mode (5-10 % of a
 * CPU-bound load) walks the kernel stack by ORC: 4-32 us. Neither is ours
 * to cut without our own unwinder; what is: no kernel stack asked for a
 * user-mode sample, and the comm noted once per key and drain.
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
	/*
	 * A sample taken in user mode has no kernel stack (bpf_get_stackid
	 * would say -EFAULT): not asking saves its cold callchain buffer.
	 * Kernel addresses are the top half on x86-64 and arm64; regs.cs is
	 * refused by the verifier (shared/KERNEL.md).
	 */
	key.kernel_stack_id = ctx->regs.ip >> 63 ? rf_prof_stackid(ctx, key.stack_map, 0) : RF_PROF_STACK_NONE;
	/* the comm is wanted once per tgid and drain: noted when a count is created, not per sample */
	if (rf_prof_add(&key, 1))
		rf_prof_note_comm(key.tgid, (struct task_struct *)bpf_get_current_task());
	return 0;
}
