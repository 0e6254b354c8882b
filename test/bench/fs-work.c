/*
 * fs-work.c: the workloads of the fs bench (test/bench/fs.ts), built by it
 * with cc at run time. Each runs for the given seconds in one thread (no
 * context switch in the loop: the cost measured is the syscalls' and the BPF
 * programs' on them) and prints one JSON line with the system calls it made;
 * the bench divides a run with `ringflow collect --signals fs` by the runs
 * without it, started the same way.
 *
 *   rw SECONDS FILE     pread 4 KiB / pwrite 4 KiB, alternating, over a 1 MiB
 *                       FILE (tmpfs: /dev/shm), no fsync: every call is
 *                       a kept one (a record each), served from the page cache
 *   pipe SECONDS        write 1 byte into a pipe, read it back, same thread:
 *                       calls the fs programs see and reject at enter (not a
 *                       regular file): what a NON-file read/write pays
 *   fsync SECONDS FILE  pwrite 4 KiB + fsync on FILE (ext4: /var/tmp):
 *                       the device's flush dominates, fs's cost is noise there
 *
 * work is the number of system calls made (pread + pwrite, write + read,
 * pwrite + fsync); cpu_s the CPU seconds (user + system) the process used.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096
#define FILE_BLOCKS 256 /* 1 MiB: stays in the page cache */
#define BATCH 256	/* calls between clock reads */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage self;

	getrusage(RUSAGE_SELF, &self);
	return self.ru_utime.tv_sec + self.ru_stime.tv_sec + (self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
}

static unsigned char buf[BLOCK];

/*
 * The bench makes the file (1 MiB, its pages cached) before it spawns this:
 * every call this process makes on it is a measured one, so records per call
 * is exactly 1 (node's own writes are not this comm's).
 */
static int open_file(const char *path)
{
	int fd = open(path, O_RDWR);

	if (fd < 0)
		perror(path);
	return fd;
}

static void report(uint64_t calls, const char *unit, double t0)
{
	printf("{\"work\":%llu,\"unit\":\"%s\",\"seconds\":%.3f,\"cpu_s\":%.3f}\n", (unsigned long long)calls, unit, now_s() - t0, cpu_s());
}

static int rw(double seconds, const char *path)
{
	uint64_t calls = 0;
	unsigned i = 0;
	int fd = open_file(path);
	double t0, end;

	if (fd < 0)
		return 2;
	t0 = now_s();
	end = t0 + seconds;
	do {
		for (int k = 0; k < BATCH; k++, i++) {
			if (pread(fd, buf, BLOCK, (off_t)(i % FILE_BLOCKS) * BLOCK) != BLOCK)
				return 3;
			if (pwrite(fd, buf, BLOCK, (off_t)((i * 7) % FILE_BLOCKS) * BLOCK) != BLOCK)
				return 3;
		}
		calls += 2 * BATCH;
	} while (now_s() < end);
	report(calls, "pread+pwrite calls", t0);
	close(fd);
	return 0;
}

static int pipe_loop(double seconds)
{
	int p[2];
	uint64_t calls = 0;
	char c = 'x';
	double t0, end;

	if (pipe(p))
		return 2;
	t0 = now_s();
	end = t0 + seconds;
	do {
		for (int k = 0; k < BATCH; k++) {
			if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
				return 3;
		}
		calls += 2 * BATCH;
	} while (now_s() < end);
	report(calls, "pipe write+read calls", t0);
	return 0;
}

static int fsync_loop(double seconds, const char *path)
{
	uint64_t calls = 0;
	unsigned i = 0;
	int fd = open_file(path);
	double t0, end;

	if (fd < 0)
		return 2;
	t0 = now_s();
	end = t0 + seconds;
	do {
		if (pwrite(fd, buf, BLOCK, (off_t)(i++ % FILE_BLOCKS) * BLOCK) != BLOCK || fsync(fd))
			return 3;
		calls += 2;
	} while (now_s() < end);
	report(calls, "pwrite+fsync calls", t0);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	memset(buf, 'r', sizeof(buf));
	if (argc == 4 && strcmp(argv[1], "rw") == 0)
		return rw(atof(argv[2]), argv[3]);
	if (argc == 3 && strcmp(argv[1], "pipe") == 0)
		return pipe_loop(atof(argv[2]));
	if (argc == 4 && strcmp(argv[1], "fsync") == 0)
		return fsync_loop(atof(argv[2]), argv[3]);
	fprintf(stderr, "usage: %s rw SECONDS FILE | pipe SECONDS | fsync SECONDS FILE\n", argv[0]);
	return 2;
}
