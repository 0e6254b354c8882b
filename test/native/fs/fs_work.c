/*
 * fs_work: known file work for test/native/fs.test.ts, with exact syscalls
 * (libc's pread/pwrite/fsync are the syscalls of the same name). Each
 * argument is one job "<kind>:<path>:<count>"; every file is made and primed
 * first, then the program prints "ready" and waits for a byte on stdin (the
 * test attaches its programs meanwhile), then does the jobs and exits 0.
 * With --now first, it does not wait: the jobs run while the test attaches.
 *
 *   w:P:N  N pwrite(4 KiB at i*4096) + fsync pairs on P (created)
 *   y:P:N  N pwrite(4 KiB at i*4096) + fdatasync pairs on P
 *   r:P:N  N pread(4 KiB at i*4096) of P, read once before (page cache)
 *   d:P:N  N pread(4 KiB at i*4096) of P opened O_DIRECT (4 KiB aligned buffer)
 *   R:P:N  lseek(P, 4096), then N read(4 KiB) (offset = f_pos)
 *   W:P:N  lseek(P, 8192), then N write(4 KiB)
 *   v:P:N  N preadv(2 x 2 KiB at i*4096)        V:P:N  N pwritev(2 x 2 KiB at i*4096)
 *   u:P:N  lseek(P, 4096), N preadv2(offset -1: at f_pos)
 *   U:P:N  N pwritev2(2 x 2 KiB at i*4096, flags 0)
 *   x:P:N  lseek(P, 4096), N readv            X:P:N  lseek(P, 8192), N writev
 *   S:P:N  N pwrite(4 KiB at i*4096) on P opened O_SYNC
 *   D:P:N  N pread(4 KiB at i*4096) of P unlinked after it was opened
 *   F:P:N  N pread(4 KiB at i*4096) + fsync pairs on P, an existing file opened read-only (slowfuse)
 *   L:P:N  N rounds of lseek(P, 0) + write(4 KiB) and a socketpair's write + read of 1 byte
 *   M:NAME:N  N pwrite(4 KiB at i*4096) on memfd_create(NAME): a file of no mount's tree
 *   s:-:N  N read()s of a socketpair (1 byte each)
 *   p:-:N  N read()s of a pipe (1 byte each)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BS 4096
#define MAXJ 32

struct job { char kind; int fd; int wfd; int sock; int n; };

static void die(const char *what, const char *path)
{
	perror(what);
	fprintf(stderr, "fs_work: %s %s\n", what, path);
	exit(2);
}

int main(int argc, char **argv)
{
	struct job jobs[MAXJ];
	int nj = 0;
	char *buf;
	char c;

	if (posix_memalign((void **)&buf, BS, BS))
		die("posix_memalign", "");
	memset(buf, 'x', BS);
	int now = argc > 1 && !strcmp(argv[1], "--now");
	for (int a = 1 + now; a < argc && nj < MAXJ; a++) {
		char *spec = strdup(argv[a]);
		char kind = spec[0];
		char *path = spec + 2;
		char *n = strrchr(spec, ':');
		struct job *j = &jobs[nj++];
		*n = 0;
		j->kind = kind;
		j->n = atoi(n + 1);
		j->fd = j->wfd = -1;
		if (kind == 'L') {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
				die("socketpair", path);
			j->fd = open(path, O_RDWR | O_CREAT, 0644);
			if (j->fd < 0)
				die("open", path);
			j->wfd = sv[0];
			j->sock = sv[1];
			continue;
		}
		if (kind == 'M') {
			j->fd = memfd_create(path, 0);
			if (j->fd < 0)
				die("memfd_create", path);
			continue;
		}
		if (kind == 's' || kind == 'p') {
			int sv[2];
			if (kind == 's' ? socketpair(AF_UNIX, SOCK_STREAM, 0, sv) : pipe(sv))
				die("socketpair/pipe", path);
			j->fd = sv[0];
			j->wfd = sv[1];
			/* one write: a unix socket charges each small write a whole skb, 5000 of them block */
			char *z = malloc(j->n + 1);
			if (!z)
				die("malloc", "socket/pipe");
			memset(z, 'z', j->n + 1);
			if (write(j->wfd, z, j->n) != j->n)
				die("write", "socket/pipe");
			free(z);
			continue;
		}
		int fd = kind == 'F' ? open(path, O_RDONLY) : open(path, O_RDWR | O_CREAT, 0644);
		if (fd < 0)
			die("open", path);
		if (kind != 'w' && kind != 'y' && kind != 'S' && kind != 'V' && kind != 'U' && kind != 'F') { /* files read back: their bytes exist and are on disk */
			for (int i = 0; i < (j->n > 0 ? j->n : 1) + 2; i++)
				if (pwrite(fd, buf, BS, (off_t)i * BS) != BS)
					die("pwrite", path);
			if (fsync(fd))
				die("fsync", path);
			for (int i = 0; i < j->n + 2; i++) /* primes the page cache */
				if (pread(fd, buf, BS, (off_t)i * BS) != BS)
					die("pread", path);
		}
		if (kind == 'd') {
			close(fd);
			fd = open(path, O_RDONLY | O_DIRECT);
			if (fd < 0)
				die("open O_DIRECT", path);
		}
		if (kind == 'S') {
			close(fd);
			fd = open(path, O_WRONLY | O_SYNC);
			if (fd < 0)
				die("open O_SYNC", path);
		}
		if (kind == 'D' && unlink(path))
			die("unlink", path);
		if ((kind == 'u' || kind == 'x') && lseek(fd, BS, SEEK_SET) != BS)
			die("lseek", path);
		if (kind == 'X' && lseek(fd, 2 * BS, SEEK_SET) != 2 * BS)
			die("lseek", path);
		if (kind == 'R' && lseek(fd, BS, SEEK_SET) != BS)
			die("lseek", path);
		if (kind == 'W' && lseek(fd, 2 * BS, SEEK_SET) != 2 * BS)
			die("lseek", path);
		j->fd = fd;
	}
	printf("ready\n");
	fflush(stdout);
	if (!now && read(0, &c, 1) != 1)
		return 3;
	for (int k = 0; k < nj; k++) {
		struct job *j = &jobs[k];
		for (int i = 0; i < j->n; i++) {
			off_t off = (off_t)i * BS;
			struct iovec iov[2] = { { buf, BS / 2 }, { buf + BS / 2, BS / 2 } };
			switch (j->kind) {
			case 'v':
				if (preadv(j->fd, iov, 2, off) != BS)
					die("preadv", "v");
				break;
			case 'V':
				if (pwritev(j->fd, iov, 2, off) != BS)
					die("pwritev", "V");
				break;
			case 'u':
				if (preadv2(j->fd, iov, 2, -1, 0) != BS)
					die("preadv2", "u");
				break;
			case 'U':
				if (pwritev2(j->fd, iov, 2, off, 0) != BS)
					die("pwritev2", "U");
				break;
			case 'x':
				if (readv(j->fd, iov, 2) != BS)
					die("readv", "x");
				break;
			case 'X':
				if (writev(j->fd, iov, 2) != BS)
					die("writev", "X");
				break;
			case 'S':
			case 'M':
				if (pwrite(j->fd, buf, BS, off) != BS)
					die("pwrite", "S/M");
				break;
			case 'w':
			case 'y':
				if (pwrite(j->fd, buf, BS, off) != BS)
					die("pwrite", "w");
				if (j->kind == 'w' ? fsync(j->fd) : fdatasync(j->fd))
					die("fsync", "w");
				break;
			case 'r':
			case 'd':
			case 'D':
				if (pread(j->fd, buf, BS, off) != BS)
					die("pread", "r/d");
				break;
			case 'F':
				if (pread(j->fd, buf, BS, off) != BS)
					die("pread", "F");
				if (fsync(j->fd))
					die("fsync", "F");
				break;
			case 'L':
				if (lseek(j->fd, 0, SEEK_SET) != 0 || write(j->fd, buf, BS) != BS)
					die("write", "L");
				if (write(j->wfd, "z", 1) != 1 || read(j->sock, &c, 1) != 1)
					die("socket", "L");
				break;
			case 'R':
				if (read(j->fd, buf, BS) != BS)
					die("read", "R");
				break;
			case 'W':
				if (write(j->fd, buf, BS) != BS)
					die("write", "W");
				break;
			case 's':
			case 'p':
				if (read(j->fd, &c, 1) != 1)
					die("read", "s/p");
				break;
			}
		}
	}
	return 0;
}
