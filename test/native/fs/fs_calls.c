/*
 * fs_calls: known fs calls other than reads and writes, for
 * test/native/fs-calls.test.ts, with exact syscalls (syscall(2) where libc
 * could pick another one). Each argument is one job "<kind>:<path>:<count>";
 * files are made first (4 pages of 'x'), then it prints "ready" and waits
 * for a byte on stdin (the test attaches meanwhile), does the jobs, exits 0.
 *
 *   t:P:N  N ftruncate(P, (i+1)*4096) on P opened O_RDWR
 *   T:P:N  N ftruncate(P, 4096) on P opened O_RDONLY: each fails (-EINVAL)
 *   a:P:N  N fallocate(P, 0, (i+4)*4096, 4096) (past the end: grows it)
 *   s:P:N  N sync_file_range(P, i*4096, 4096, WAIT_BEFORE|WRITE|WAIT_AFTER)
 *   o:P:N  N openat(AT_FDCWD, P, O_RDONLY) + close
 *   O:P:N  N openat(AT_FDCWD, P, O_RDONLY) of P, which does not exist: each fails (-ENOENT)
 *   q:P:N  N openat2(AT_FDCWD, P, {O_RDONLY}) + close
 *   d:P:N  N openat(AT_FDCWD, P, O_RDONLY | O_DIRECT | O_SYNC) + close
 *   p:-:N  N openat of a pipe's /proc/self/fd link + close (not a regular file)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BS 4096
#define MAXJ 32

struct job { char kind; char *path; int fd; int n; };

static void die(const char *what, const char *path)
{
	perror(what);
	fprintf(stderr, "fs_calls: %s %s\n", what, path);
	exit(2);
}

int main(int argc, char **argv)
{
	struct job jobs[MAXJ];
	int nj = 0;
	char buf[BS];
	char c;

	memset(buf, 'x', BS);
	for (int a = 1; a < argc && nj < MAXJ; a++) {
		char *spec = strdup(argv[a]);
		struct job *j = &jobs[nj++];
		char *n = strrchr(spec, ':');
		*n = 0;
		j->kind = spec[0];
		j->path = spec + 2;
		j->n = atoi(n + 1);
		j->fd = -1;
		if (j->kind == 'O') {
			if (unlink(j->path) && errno != ENOENT)
				die("unlink", j->path);
			continue;
		}
		if (j->kind == 'p') {
			int pv[2];
			if (pipe(pv))
				die("pipe", "");
			j->path = malloc(64);
			snprintf(j->path, 64, "/proc/self/fd/%d", pv[0]);
			continue;
		}
		int fd = open(j->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("open", j->path);
		for (int i = 0; i < 4; i++)
			if (pwrite(fd, buf, BS, (off_t)i * BS) != BS)
				die("pwrite", j->path);
		if (j->kind == 'T') {
			close(fd);
			fd = open(j->path, O_RDONLY);
			if (fd < 0)
				die("open O_RDONLY", j->path);
		}
		if (j->kind == 'o' || j->kind == 'q' || j->kind == 'd')
			close(fd);
		else
			j->fd = fd;
	}
	printf("ready\n");
	fflush(stdout);
	if (read(0, &c, 1) != 1)
		return 3;
	for (int k = 0; k < nj; k++) {
		struct job *j = &jobs[k];
		for (int i = 0; i < j->n; i++) {
			off_t off = (off_t)i * BS;
			long r;
			switch (j->kind) {
			case 't':
				if (syscall(SYS_ftruncate, j->fd, (off_t)(i + 1) * BS))
					die("ftruncate", j->path);
				break;
			case 'T':
				r = syscall(SYS_ftruncate, j->fd, (off_t)BS);
				if (r != -1 || errno != EINVAL)
					die("ftruncate (read-only: EINVAL expected)", j->path);
				break;
			case 'a':
				if (syscall(SYS_fallocate, j->fd, 0, off + 4 * BS, (off_t)BS))
					die("fallocate", j->path);
				break;
			case 's':
				if (syscall(SYS_sync_file_range, j->fd, off, (off_t)BS, 7))
					die("sync_file_range", j->path);
				break;
			case 'o':
			case 'p':
				r = syscall(SYS_openat, AT_FDCWD, j->path, O_RDONLY);
				if (r < 0)
					die("openat", j->path);
				close((int)r);
				break;
			case 'd':
				r = syscall(SYS_openat, AT_FDCWD, j->path, O_RDONLY | O_DIRECT | O_SYNC);
				if (r < 0)
					die("openat O_DIRECT|O_SYNC", j->path);
				close((int)r);
				break;
			case 'O':
				r = syscall(SYS_openat, AT_FDCWD, j->path, O_RDONLY);
				if (r != -1 || errno != ENOENT)
					die("openat (missing: ENOENT expected)", j->path);
				break;
			case 'q': {
				struct open_how how = { .flags = O_RDONLY };
				r = syscall(SYS_openat2, AT_FDCWD, j->path, &how, sizeof(how));
				if (r < 0)
					die("openat2", j->path);
				close((int)r);
				break;
			}
			}
		}
	}
	return 0;
}
