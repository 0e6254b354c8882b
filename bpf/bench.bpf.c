/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * bench.bpf.c: one fixed-size record per getpid() of one process, for the
 * drain benchmark (test/bench). Both the addon and the plain C consumer drain
 * this same program, driven the same way, so their ratio measures the addon.
 */
#include "common.bpf.h"

const volatile __u32 bench_tgid = 0; /* 0: match rf_filter_comm instead */

SEC("tracepoint/syscalls/sys_enter_getpid")
int rf_bench_getpid(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct rf_bench_event *e;
	static __u64 seq;

	/* one driver by tgid (drain benchmark), or every driver by rf_filter_comm (e2e, many keys) */
	if (bench_tgid ? (id >> 32) != bench_tgid : (!rf_filter_comm[0] || !rf_current_passes()))
		return 0;
	e = rf_reserve(sizeof(*e), RF_EV_BENCH);
	if (!e)
		return 0;
	rf_fill_current(&e->hdr, RF_EV_BENCH, bpf_ktime_get_ns());
	e->seq = __sync_fetch_and_add(&seq, 1);
	e->_pad[0] = 0;
	rf_submit(e);
	return 0;
}
