/* SPDX-License-Identifier: Apache-2.0 */
/*
 * c_consumer: the baseline for the drain benchmark, a plain libbpf consumer
 * with no batching, no copies and no JS. It does what native/bench/addon_drain.ts
 * does with the addon, step for step:
 *
 *   1. start getpid_driver N (it waits for a byte on stdin);
 *   2. open bench.bpf.o, size rf_events to RING bytes, set bench_tgid = driver pid, load, attach;
 *   3. write the start byte; consume with ring_buffer__poll(10 ms) + ring_buffer__consume
 *      (the BPF side wakes us only when >= 1 MiB is pending) and count records;
 *   4. when the driver has exited, drain once more and stop the clock;
 *   5. print {"events":N,"seconds":S,"events_per_s":X,"drops":D,"cpu_s":C} (drops: rf_drops
 *      summed; cpu_s: this consumer's CPU time over the run, the driver's excluded).
 *
 * Usage: c_consumer [--edge] N [RING_BYTES] [BENCH_OBJ] [DRIVER]
 * --edge: epoll the ring edge-triggered, as the addon does by default
 * (libbpf's own registration is level-triggered; see native/README.md).
 * Defaults: 16 MiB, bpf/.output/bench.bpf.o and native/build/bench/getpid_driver,
 * found relative to this binary (native/build/bench/c_consumer).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "events.h"

static unsigned long long records;

static int on_sample(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	records++;
	return 0;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) this process has used. */
static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, int err)
{
	if (err < 0)
		err = -err;
	fprintf(stderr, "c_consumer: %s: %s (errno %d)\n", what, strerror(err), err);
	exit(1);
}

/* Write a u32 const volatile global into the object's .rodata image (via its BTF DATASEC). */
static void set_rodata_u32(struct bpf_object *obj, const char *name, __u32 value)
{
	const struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map, *rodata = NULL;
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	size_t size;
	int id;

	bpf_object__for_each_map(map, obj) {
		const char *nm = bpf_map__name(map);
		size_t l = strlen(nm);
		if (bpf_map__is_internal(map) && l >= 7 && strcmp(nm + l - 7, ".rodata") == 0)
			rodata = map;
	}
	id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;
	if (!rodata || id < 0)
		die("find .rodata", ENOENT);
	sec = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
			continue;
		const void *init = bpf_map__initial_value(rodata, &size);
		char *img = malloc(size);
		if (!img || vs->size != sizeof(value) || vs->offset + sizeof(value) > size)
			die(name, EINVAL);
		memcpy(img, init, size);
		memcpy(img + vs->offset, &value, sizeof(value));
		if (bpf_map__set_initial_value(rodata, img, size))
			die("bpf_map__set_initial_value", errno);
		free(img);
		return;
	}
	die(name, ENOENT);
}

int main(int argc, char **argv)
{
	char self[PATH_MAX], dir[PATH_MAX], obj_path[PATH_MAX + 64], drv_path[PATH_MAX + 64];
	unsigned long long n;
	unsigned long ring;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *events_map, *drops_map;
	struct ring_buffer *rb;
	int pipefd[2], status, err, ncpus;
	pid_t child;
	double t0, t1, c0, c1;
	__u64 drops = 0;

	int edge = 0;
	if (argc > 1 && strcmp(argv[1], "--edge") == 0) {
		edge = 1;
		argv++;
		argc--;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: c_consumer [--edge] N [RING_BYTES] [BENCH_OBJ] [DRIVER]\n");
		return 2;
	}
	n = strtoull(argv[1], NULL, 10);
	ring = argc > 2 ? strtoul(argv[2], NULL, 0) : 16ul << 20;
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl < 0)
		die("readlink /proc/self/exe", errno);
	self[sl] = '\0';
	snprintf(dir, sizeof(dir), "%s", dirname(self));
	if (argc > 3)
		snprintf(obj_path, sizeof(obj_path), "%s", argv[3]);
	else
		snprintf(obj_path, sizeof(obj_path), "%s/../../../bpf/.output/bench.bpf.o", dir);
	if (argc > 4)
		snprintf(drv_path, sizeof(drv_path), "%s", argv[4]);
	else
		snprintf(drv_path, sizeof(drv_path), "%s/getpid_driver", dir);

	libbpf_set_print(quiet);

	/* 1. the driver, parked on its stdin */
	if (pipe(pipefd))
		die("pipe", errno);
	child = fork();
	if (child < 0)
		die("fork", errno);
	if (child == 0) {
		char nbuf[32];
		dup2(pipefd[0], STDIN_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		snprintf(nbuf, sizeof(nbuf), "%llu", n);
		execl(drv_path, "getpid_driver", nbuf, (char *)NULL);
		_exit(127);
	}
	close(pipefd[0]);

	/* 2. load bench.bpf.o for that pid */
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj)
		die(obj_path, errno);
	events_map = bpf_object__find_map_by_name(obj, "rf_events");
	drops_map = bpf_object__find_map_by_name(obj, "rf_drops");
	if (!events_map || !drops_map)
		die("find rf_events/rf_drops", ENOENT);
	if ((err = bpf_map__set_max_entries(events_map, (__u32)ring)))
		die("bpf_map__set_max_entries", err);
	set_rodata_u32(obj, "bench_tgid", (__u32)child);
	if ((err = bpf_object__load(obj)))
		die("bpf_object__load", err);
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__attach(prog))
			die("bpf_program__attach", errno);
	}
	rb = ring_buffer__new(bpf_map__fd(events_map), on_sample, NULL, NULL);
	if (!rb)
		die("ring_buffer__new", errno);
	if (edge) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.fd = 0 };
		if (epoll_ctl(ring_buffer__epoll_fd(rb), EPOLL_CTL_MOD, bpf_map__fd(events_map), &ev))
			die("epoll_ctl", errno);
	}

	/* 3. go */
	t0 = now();
	c0 = cpu_now();
	if (write(pipefd[1], "g", 1) != 1)
		die("write start byte", errno);
	for (;;) {
		err = ring_buffer__poll(rb, 10);
		if (err < 0 && err != -EINTR)
			die("ring_buffer__poll", err);
		ring_buffer__consume(rb);
		pid_t w = waitpid(child, &status, WNOHANG);
		if (w == child)
			break;
	}
	/* 4. the driver is done: whatever it produced is in the ring now */
	ring_buffer__consume(rb);
	t1 = now();
	c1 = cpu_now();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "c_consumer: driver exited with status %d\n", status);

	ncpus = libbpf_num_possible_cpus();
	{
		__u64 vals[ncpus];
		for (__u32 k = 0; k < RF_EV_MAX; k++) {
			if (bpf_map_lookup_elem(bpf_map__fd(drops_map), &k, vals))
				die("bpf_map_lookup_elem rf_drops", errno);
			for (int c = 0; c < ncpus; c++)
				drops += vals[c];
		}
	}

	/* 5. report */
	printf("{\"events\":%llu,\"seconds\":%.6f,\"events_per_s\":%.0f,\"drops\":%llu,\"cpu_s\":%.3f}\n",
	       records, t1 - t0, (double)records / (t1 - t0), (unsigned long long)drops, c1 - c0);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
