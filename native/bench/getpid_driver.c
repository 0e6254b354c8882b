/* SPDX-License-Identifier: Apache-2.0 */
/*
 * getpid_driver: the load generator shared by both drain benchmarks and the
 * native tests. Usage: getpid_driver N
 *
 * It waits for one byte on stdin (so the consumer can load bench.bpf.o with
 * bench_tgid = our pid first), then makes N getpid syscalls in a tight loop and
 * exits 0. syscall(2) directly: glibc must not cache or skip the call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char go;
	long n;

	if (argc != 2 || (n = strtol(argv[1], NULL, 10)) < 0) {
		fprintf(stderr, "usage: getpid_driver N\n");
		return 2;
	}
	if (read(STDIN_FILENO, &go, 1) != 1)
		return 3; /* the consumer went away before starting us */
	for (long i = 0; i < n; i++)
		syscall(SYS_getpid);
	return 0;
}
