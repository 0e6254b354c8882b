/*
 * slowfuse: a FUSE file system with a known delay, for test/native/fs.test.ts
 * (design docs/design/fs.md section 8: no dm-delay or null_blk on this
 * kernel, but CONFIG_FUSE_FS=y). It speaks the kernel's protocol on
 * /dev/fuse itself (linux/fuse.h, no libfuse: nothing to install), serves
 * one file, /slow.dat (64 KiB of 'f'), opened FOPEN_DIRECT_IO so that every
 * read reaches it, and sleeps DELAY_MS in each READ and FSYNC before it
 * answers. Single-threaded: requests are answered one after another.
 *
 *   slowfuse MOUNTPOINT DELAY_MS
 *
 * Mounts, answers INIT, prints "ready", serves until the file system is
 * unmounted (read on /dev/fuse then fails with ENODEV), exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_INO  2
#define FILE_SIZE (64 * 1024)
#define BUFSZ     (1 << 20)

static int fd;
static long delay_ms;
static char out[BUFSZ];

static void reply(uint64_t unique, int error, const void *body, size_t len)
{
	struct fuse_out_header *h = (struct fuse_out_header *)out;
	h->len = sizeof(*h) + len;
	h->error = error;
	h->unique = unique;
	if (len)
		memcpy(out + sizeof(*h), body, len);
	/* ENOENT here: the request was interrupted and is gone, nothing to do */
	if (write(fd, out, h->len) < 0 && errno != ENOENT)
		perror("slowfuse: write reply");
}

static void attr_of(uint64_t ino, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->nlink = ino == FUSE_ROOT_ID ? 2 : 1;
	a->mode = ino == FUSE_ROOT_ID ? (S_IFDIR | 0755) : (S_IFREG | 0644);
	a->size = ino == FUSE_ROOT_ID ? 0 : FILE_SIZE;
	a->blocks = a->size / 512;
	a->blksize = 4096;
}

static void pause_ms(void)
{
	struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	static char in[BUFSZ];
	static char data[FILE_SIZE];
	char opts[128];

	if (argc != 3) {
		fprintf(stderr, "usage: slowfuse MOUNTPOINT DELAY_MS\n");
		return 2;
	}
	delay_ms = atol(argv[2]);
	memset(data, 'f', sizeof(data));
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror("slowfuse: /dev/fuse");
		return 2;
	}
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
	if (mount("slowfuse", argv[1], "fuse", MS_NOSUID | MS_NODEV, opts)) {
		perror("slowfuse: mount");
		return 2;
	}
	for (;;) {
		ssize_t n = read(fd, in, sizeof(in));
		struct fuse_in_header *h = (struct fuse_in_header *)in;
		void *arg = in + sizeof(*h);

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
				continue;
			if (errno == ENODEV) /* unmounted */
				return 0;
			perror("slowfuse: read");
			return 1;
		}
		if ((size_t)n < sizeof(*h))
			continue;
		switch (h->opcode) {
		case FUSE_INIT: {
			struct fuse_init_in *ii = arg;
			struct fuse_init_out o = { 0 };
			o.major = FUSE_KERNEL_VERSION;
			o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
			o.max_readahead = ii->max_readahead;
			o.max_write = 128 * 1024;
			o.time_gran = 1;
			o.max_background = 16;
			o.congestion_threshold = 12;
			reply(h->unique, 0, &o, sizeof(o));
			printf("ready\n");
			fflush(stdout);
			break;
		}
		case FUSE_LOOKUP: {
			struct fuse_entry_out o = { 0 };
			if (h->nodeid != FUSE_ROOT_ID || strcmp((char *)arg, "slow.dat")) {
				reply(h->unique, -ENOENT, NULL, 0);
				break;
			}
			o.nodeid = FILE_INO;
			o.entry_valid = 3600;
			o.attr_valid = 3600;
			attr_of(FILE_INO, &o.attr);
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case FUSE_GETATTR: {
			struct fuse_attr_out o = { 0 };
			o.attr_valid = 3600;
			attr_of(h->nodeid, &o.attr);
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case FUSE_OPEN: {
			struct fuse_open_out o = { 0 };
			o.fh = 1;
			o.open_flags = FOPEN_DIRECT_IO; /* every read comes here, none from the page cache */
			reply(h->unique, 0, &o, sizeof(o));
			break;
		}
		case FUSE_READ: {
			struct fuse_read_in *r = arg;
			size_t len = 0;
			if (r->offset < FILE_SIZE)
				len = FILE_SIZE - r->offset < r->size ? FILE_SIZE - r->offset : r->size;
			pause_ms();
			reply(h->unique, 0, data + (r->offset < FILE_SIZE ? r->offset : 0), len);
			break;
		}
		case FUSE_FSYNC:
			pause_ms();
			reply(h->unique, 0, NULL, 0);
			break;
		case FUSE_FLUSH:
		case FUSE_RELEASE:
			reply(h->unique, 0, NULL, 0);
			break;
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:
			break; /* no reply to these */
		case FUSE_DESTROY:
			reply(h->unique, 0, NULL, 0);
			return 0;
		default:
			reply(h->unique, -ENOSYS, NULL, 0);
			break;
		}
	}
}
