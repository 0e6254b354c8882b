/*
 * profile-work.c: the workloads of the profile bench (test/bench/profile.ts),
 * built by it with cc at run time. Each prints one JSON line with the work it
 * did in the given seconds; the bench divides a run with ringflow by the runs
 * without it, started the same way.
 *
 *   spin N SECONDS      N processes, each hashing a fixed 64 KiB buffer over
 *                       and over (CPU-bound, no system call in the loop): the
 *                       on-CPU profiler's sampling interrupts are its cost
 *   pingpong SECONDS    two processes passing one byte back and forth over two
 *                       pipes: a context switch per hop, each block a few us
 *                       (never reaches --offcpu-min): off-CPU's per-switch cost
 *
 * PROFILE_WORK_PARK=1 makes it wait for a byte on stdin before it starts.
 * Built with frame pointers so the profiler walks whole user stacks, as it
 * would for code that keeps them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * CPU seconds of this process and its waited-for children: work per CPU
 * second is what the bench compares when other load on a shared machine
 * makes the wall-clock rates drift.
 */
static double cpu_s(void)
{
	struct rusage self, kids;

	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec +
	       (self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) / 1e6;
}

static unsigned char buf[64 * 1024];

/* FNV-1a of the buffer: a few stack frames deep so samples have a stack */
__attribute__((noinline)) static uint64_t hash_block(const unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

__attribute__((noinline)) static uint64_t hash_buffer(uint64_t h)
{
	for (size_t off = 0; off < sizeof(buf); off += 4096)
		h = hash_block(buf + off, 4096, h);
	return h;
}

static void write_all(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != (ssize_t)n)
		_exit(3);
}

static int spin(int n, double seconds)
{
	int out[2];
	uint64_t total = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	if (pipe(out))
		return 2;
	for (int k = 0; k < n; k++) {
		pid_t pid = fork();

		if (pid < 0)
			return 2;
		if (pid == 0) {
			double end = now_s() + seconds;
			uint64_t passes = 0, h = 0xcbf29ce484222325ull;

			while (now_s() < end) {
				h = hash_buffer(h);
				passes++;
			}
			/* h is printed nowhere but kept live so the loop is not optimised away */
			passes += (h == 42);
			write_all(out[1], &passes, sizeof(passes));
			_exit(0);
		}
	}
	close(out[1]);
	for (int k = 0; k < n; k++) {
		uint64_t p;

		if (read(out[0], &p, sizeof(p)) != sizeof(p))
			return 2;
		total += p;
	}
	while (wait(NULL) > 0)
		;
	printf("{\"work\":%llu,\"unit\":\"64KiB hashes\",\"seconds\":%.3f,\"cpu_s\":%.3f}\n", (unsigned long long)total, seconds, cpu_s());
	return 0;
}

static int pingpong(double seconds)
{
	int ab[2], ba[2];
	uint64_t trips = 0;
	char c = 0;
	pid_t pid;
	double t0, end;

	if (pipe(ab) || pipe(ba))
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		close(ab[1]);
		close(ba[0]);
		/* echoes until the other side closes its end */
		while (read(ab[0], &c, 1) == 1)
			write_all(ba[1], &c, 1);
		_exit(0);
	}
	close(ab[0]);
	close(ba[1]);
	t0 = now_s();
	end = t0 + seconds;
	for (;;) {
		for (int i = 0; i < 256; i++) {
			write_all(ab[1], &c, 1);
			if (read(ba[0], &c, 1) != 1)
				return 2;
		}
		trips += 256;
		if (now_s() >= end)
			break;
	}
	close(ab[1]);
	waitpid(pid, NULL, 0);
	printf("{\"work\":%llu,\"unit\":\"round trips\",\"seconds\":%.3f,\"cpu_s\":%.3f}\n", (unsigned long long)trips, now_s() - t0, cpu_s());
	return 0;
}

int main(int argc, char **argv)
{
	/* a test sets its pid filter first (test/native/offcpu-lazy.test.ts): wait for a byte on stdin */
	if (getenv("PROFILE_WORK_PARK")) {
		char c;

		if (read(0, &c, 1) != 1)
			return 2;
	}
	if (argc == 4 && strcmp(argv[1], "spin") == 0)
		return spin(atoi(argv[2]), atof(argv[3]));
	if (argc == 3 && strcmp(argv[1], "pingpong") == 0)
		return pingpong(atof(argv[2]));
	fprintf(stderr, "usage: %s spin N SECONDS | pingpong SECONDS\n", argv[0]);
	return 2;
}
