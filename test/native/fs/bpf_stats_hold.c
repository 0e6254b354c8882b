/*
 * bpf_stats_hold: turns on the kernel's BPF run-time statistics (run_cnt,
 * run_time_ns in each program's fdinfo) for as long as it runs, with
 * BPF_ENABLE_STATS: the kernel counts holders, so unlike writing
 * kernel.bpf_stats_enabled it never turns them off under someone else.
 * Prints "ready" once they are on; exits when stdin closes.
 */
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	union bpf_attr attr;
	char c;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.enable_stats.type = BPF_STATS_RUN_TIME;
	fd = syscall(__NR_bpf, BPF_ENABLE_STATS, &attr, sizeof(attr));
	if (fd < 0) {
		perror("bpf_stats_hold: BPF_ENABLE_STATS");
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
