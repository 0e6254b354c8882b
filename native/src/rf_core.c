/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rf_core.c: libbpf calls, the poll thread and batching (see rf_core.h).
 *
 * Why poll + consume: the BPF side (common.bpf.h rf_submit) wakes the consumer
 * only when >= rf_wakeup_bytes are pending, because a wake-up per record costs
 * ~1.6 us of kernel time (shared/KERNEL.md). So ring_buffer__poll usually returns
 * on its timeout with records still in the ring, and we drain them with
 * ring_buffer__consume. libbpf 1.1 has no ring_buffer__consume_n, so a pause
 * cuts a drain short by returning an error from the sample callback (libbpf
 * still advances past the record that was copied).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rf_core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <linux/perf_event.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "../../bpf/events.h"

_Static_assert(RF_CORE_EV_MAX == RF_EV_MAX, "RF_CORE_EV_MAX must equal RF_EV_MAX (bpf/events.h)");
_Static_assert(sizeof(struct rf_prof_key) == 24, "rf_profile_drain hands counts over as 24 + 8 bytes (rf_core.h)");

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)
#define REC_HDR 8u
/* Our sample callback's "stop draining now" code; never a libbpf error. */
#define RF_CANCEL (-ECANCELED)
#define POOL_KEEP 16

/* ---------------------------------------------------------------- errors */

void rf_error_clear(rf_error *e)
{
	free(e->log);
	memset(e, 0, sizeof(*e));
}

const char *rf_errno_name(int err)
{
	static __thread char buf[16];
	const char *n = err > 0 ? strerrorname_np(err) : NULL;
	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", err);
	return buf;
}

void rf_error_message(const rf_error *e, char *buf, size_t len)
{
	char sbuf[128];
	const char *text = e->detail[0] ? e->detail : strerror_r(e->err, sbuf, sizeof(sbuf));
	if (e->target[0])
		snprintf(buf, len, "%s(%s): %s (errno %d)", e->op, e->target, text, e->err);
	else
		snprintf(buf, len, "%s: %s (errno %d)", e->op, text, e->err);
}

static int set_err(rf_error *e, const char *op, const char *target, int err, const char *detail, ...)
	__attribute__((format(printf, 5, 6)));

static int set_err(rf_error *e, const char *op, const char *target, int err, const char *detail, ...)
{
	if (err < 0)
		err = -err;
	if (err == 0)
		err = EINVAL;
	if (e) {
		free(e->log);
		memset(e, 0, sizeof(*e));
		snprintf(e->op, sizeof(e->op), "%s", op);
		snprintf(e->target, sizeof(e->target), "%s", target ? target : "");
		e->err = err;
		if (detail) {
			va_list ap;
			va_start(ap, detail);
			vsnprintf(e->detail, sizeof(e->detail), detail, ap);
			va_end(ap);
		}
	}
	return -err;
}

/* ------------------------------------------------------- libbpf log capture */

/*
 * libbpf_set_print is process-wide: keep the last lines of warnings and info in
 * a ring so a failed load can attach them to its error, and print nothing.
 * RINGFLOW_LIBBPF_LOG=1 also echoes them to stderr (=debug: debug level too).
 */
#define LOG_RING 64
#define LOG_LINE 512
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_ring[LOG_RING][LOG_LINE];
static uint64_t log_seq; /* lines ever appended */
static int log_echo;     /* 0 off, 1 info+warn, 2 debug too */
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static int rf_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char small[1024], *text = small;
	va_list ap2;
	int n;

	if (level == LIBBPF_DEBUG && log_echo < 2)
		return 0;
	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n >= (int)sizeof(small)) {
		/* verifier logs arrive in one call and can be long */
		text = malloc((size_t)n + 1);
		if (text)
			vsnprintf(text, (size_t)n + 1, fmt, ap2);
		else
			text = small;
	}
	va_end(ap2);
	if (log_echo)
		fputs(text, stderr);

	pthread_mutex_lock(&log_mu);
	for (char *p = text; *p;) {
		char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (l > 0) {
			char *dst = log_ring[log_seq % LOG_RING];
			size_t c = l < LOG_LINE - 1 ? l : LOG_LINE - 1;
			memcpy(dst, p, c);
			dst[c] = '\0';
			log_seq++;
		}
		p += l;
		if (*p == '\n')
			p++;
	}
	pthread_mutex_unlock(&log_mu);
	if (text != small)
		free(text);
	return 0;
}

static void log_init(void)
{
	const char *v = getenv("RINGFLOW_LIBBPF_LOG");
	if (v && *v && strcmp(v, "0") != 0)
		log_echo = strcmp(v, "debug") == 0 ? 2 : 1;
	libbpf_set_print(rf_libbpf_print);
}

static uint64_t log_mark(void)
{
	uint64_t m;
	pthread_once(&log_once, log_init);
	pthread_mutex_lock(&log_mu);
	m = log_seq;
	pthread_mutex_unlock(&log_mu);
	return m;
}

/* Attach the last RF_CORE_LOG_LINES lines printed since mark to e->log. */
static void log_attach(rf_error *e, uint64_t mark)
{
	size_t len = 0;
	pthread_mutex_lock(&log_mu);
	uint64_t from = mark;
	if (log_seq - from > RF_CORE_LOG_LINES)
		from = log_seq - RF_CORE_LOG_LINES;
	if (log_seq - from > LOG_RING)
		from = log_seq - LOG_RING;
	for (uint64_t i = from; i < log_seq; i++)
		len += strlen(log_ring[i % LOG_RING]) + 1;
	if (len > 0 && (e->log = malloc(len + 1))) {
		char *p = e->log;
		for (uint64_t i = from; i < log_seq; i++) {
			size_t l = strlen(log_ring[i % LOG_RING]);
			memcpy(p, log_ring[i % LOG_RING], l);
			p += l;
			*p++ = '\n';
		}
		p[-1] = '\0';
	}
	pthread_mutex_unlock(&log_mu);
}

/* ------------------------------------------------------------ batch pool */

/*
 * Batches go to JS without a copy (as external Buffers) and come back here when
 * JS lets go of them; the pool keeps a few so the steady state allocates nothing
 * and touches no new pages. It outlives its session while batches are out.
 */
struct rf_pool {
	pthread_mutex_t mu;
	size_t cap;
	int refs; /* the session + every batch not yet released */
	int closed;
	int n_free;
	rf_batch *free_list[POOL_KEEP];
};

static struct rf_pool *pool_new(size_t cap)
{
	struct rf_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->mu, NULL);
	p->cap = cap;
	p->refs = 1;
	return p;
}

static void pool_unref_locked_and_maybe_free(struct rf_pool *p)
{
	int last = --p->refs == 0;
	pthread_mutex_unlock(&p->mu);
	if (last) {
		pthread_mutex_destroy(&p->mu);
		free(p);
	}
}

static rf_batch *pool_get(struct rf_pool *p, size_t need)
{
	rf_batch *b = NULL;
	size_t cap = need > p->cap ? need : p->cap;

	pthread_mutex_lock(&p->mu);
	if (cap == p->cap && p->n_free > 0)
		b = p->free_list[--p->n_free];
	p->refs++;
	pthread_mutex_unlock(&p->mu);
	if (b) {
		b->len = 0;
		return b;
	}
	b = malloc(sizeof(*b));
	if (b)
		b->data = malloc(cap);
	if (!b || !b->data) {
		free(b);
		pthread_mutex_lock(&p->mu);
		pool_unref_locked_and_maybe_free(p);
		return NULL;
	}
	b->len = 0;
	b->cap = cap;
	b->pool = p;
	return b;
}

void rf_batch_release(rf_batch *b)
{
	struct rf_pool *p;
	if (!b)
		return;
	p = b->pool;
	pthread_mutex_lock(&p->mu);
	if (!p->closed && b->cap == p->cap && p->n_free < POOL_KEEP) {
		p->free_list[p->n_free++] = b;
		b = NULL;
	}
	pool_unref_locked_and_maybe_free(p);
	if (b) {
		free(b->data);
		free(b);
	}
}

static void pool_close(struct rf_pool *p)
{
	rf_batch *keep[POOL_KEEP];
	int n;
	pthread_mutex_lock(&p->mu);
	p->closed = 1;
	n = p->n_free;
	memcpy(keep, p->free_list, sizeof(keep[0]) * (size_t)n);
	p->n_free = 0;
	pool_unref_locked_and_maybe_free(p);
	for (int i = 0; i < n; i++) {
		free(keep[i]->data);
		free(keep[i]);
	}
}

/* --------------------------------------------------------------- session */

struct rf_obj {
	struct bpf_object *obj;
	struct bpf_link **links;
	size_t n_links;
	char file[128];
};

/*
 * One CPU's cpu-clock event of a perf_event program (rf_session_attach_perf_event).
 * An event whose CPU goes offline stops for good: the kernel does not restart
 * it when the CPU comes back (seen on 6.18: its count and time enabled
 * freeze), so a later call tells a live event, enabled all the time since the
 * last call, from one that stopped in between.
 */
struct rf_perf_cpu {
	const struct bpf_program *prog;
	size_t obj;             /* index in s->objs (which may move) */
	int cpu;
	struct bpf_link *link;  /* also in objs[obj].links (destroyed with them on stop) */
	int fd;                 /* a dup of the event's fd (the link owns the other), read for its enabled time */
	uint64_t enabled;       /* its time enabled (ns) at the last call */
	uint64_t at;            /* CLOCK_MONOTONIC (ns) then */
};

struct rf_session {
	rf_options o;
	int ring_fd;
	int drops_fd;
	/* read-only views of the ring's consumer and producer positions, for ring_pending */
	const unsigned long *cons_pos;
	const unsigned long *prod_pos;
	size_t page_size;
	int ncpus;
	struct rf_obj *objs;
	size_t n_objs;

	struct ring_buffer *rb;
	pthread_t thread;
	int thread_started;
	int thread_joined;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int paused;  /* atomics: written by the owner, read by the thread */
	int stopping;
	int aborting;

	rf_deliver_fn deliver;
	rf_done_fn done;
	void *ctx;

	/* poll thread only */
	struct rf_pool *pool;
	rf_batch *cur;
	uint64_t cur_records;
	int closed;

	struct rf_perf_cpu *perf; /* owner thread only */
	size_t n_perf;

	rf_stats st; /* written by the thread with relaxed atomics */
	uint64_t last_drops[RF_CORE_EV_MAX];
	/* counter maps read so far, with their last values (what is answered once stopped) */
	struct rf_counters {
		char name[64];
		uint64_t vals[RF_CORE_COUNTERS_MAX];
		size_t n;
	} *counters;
	size_t n_counters;
	int released; /* maps and objects gone */
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

static void unmap_positions(rf_session *s)
{
	if (s->cons_pos)
		munmap((void *)s->cons_pos, s->page_size);
	if (s->prod_pos)
		munmap((void *)s->prod_pos, s->page_size);
	s->cons_pos = s->prod_pos = NULL;
}

rf_session *rf_session_new(const rf_options *opts, rf_error *err)
{
	uint64_t mark = log_mark();
	long page = sysconf(_SC_PAGESIZE);
	rf_session *s;
	uint32_t rb = opts->ring_bytes;

	if (rb < (uint32_t)page || (rb & (rb - 1)) != 0) {
		set_err(err, "rf_session_new", "rf_events", EINVAL,
			"ringBytes must be a power of two >= %ld, got %u", page, rb);
		return NULL;
	}
	if (opts->max_batch_bytes < 4096) {
		set_err(err, "rf_session_new", NULL, EINVAL, "maxBatchBytes must be >= 4096, got %u",
			opts->max_batch_bytes);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		set_err(err, "rf_session_new", NULL, ENOMEM, NULL);
		return NULL;
	}
	s->o = *opts;
	s->ring_fd = s->drops_fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);

	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		set_err(err, "libbpf_num_possible_cpus", NULL, s->ncpus, NULL);
		goto fail;
	}
	s->ring_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "rf_events", 0, 0, rb, NULL);
	if (s->ring_fd < 0) {
		set_err(err, "bpf_map_create", "rf_events", errno, NULL);
		log_attach(err, mark);
		goto fail;
	}
	/*
	 * The first page of a ringbuf map is the consumer position, the second the
	 * producer's; both may be mapped read-only. libbpf 1.1 has no
	 * ring__avail_data_size (1.3+), so we read the positions ourselves.
	 */
	s->page_size = (size_t)sysconf(_SC_PAGESIZE);
	{
		void *c = mmap(NULL, s->page_size, PROT_READ, MAP_SHARED, s->ring_fd, 0);
		void *p = mmap(NULL, s->page_size, PROT_READ, MAP_SHARED, s->ring_fd, (off_t)s->page_size);
		if (c == MAP_FAILED || p == MAP_FAILED) {
			set_err(err, "mmap", "rf_events positions", errno, NULL);
			if (c != MAP_FAILED)
				munmap(c, s->page_size);
			if (p != MAP_FAILED)
				munmap(p, s->page_size);
			goto fail;
		}
		s->cons_pos = c;
		s->prod_pos = p;
	}
	s->drops_fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "rf_drops", sizeof(uint32_t),
				     sizeof(uint64_t), RF_EV_MAX, NULL);
	if (s->drops_fd < 0) {
		set_err(err, "bpf_map_create", "rf_drops", errno, NULL);
		log_attach(err, mark);
		goto fail;
	}
	s->pool = pool_new(opts->max_batch_bytes);
	if (!s->pool) {
		set_err(err, "rf_session_new", NULL, ENOMEM, NULL);
		goto fail;
	}
	return s;
fail:
	unmap_positions(s);
	if (s->ring_fd >= 0)
		close(s->ring_fd);
	if (s->drops_fd >= 0)
		close(s->drops_fd);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	return NULL;
}

void rf_object_info_clear(rf_object_info *info)
{
	for (size_t i = 0; i < info->n_programs; i++)
		free(info->programs[i]);
	free(info->programs);
	free(info->skipped);
	memset(info, 0, sizeof(*info));
}

static void obj_destroy(struct rf_obj *o)
{
	for (size_t i = 0; i < o->n_links; i++)
		bpf_link__destroy(o->links[i]);
	free(o->links);
	o->links = NULL;
	o->n_links = 0;
	bpf_object__close(o->obj);
	o->obj = NULL;
}

static const struct btf_var_secinfo *rodata_var(const struct btf *btf, const struct btf_type *sec,
						 const char *name)
{
	const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
	for (int k = 0; k < btf_vlen(sec); k++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), name) == 0)
			return vs;
	}
	return NULL;
}

static int rodata_has(struct bpf_object *obj, const char *name, size_t size)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_var_secinfo *vs;
	int id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -ENOENT;
	if (id < 0)
		return 0;
	vs = rodata_var(btf, btf__type_by_id(btf, (uint32_t)id), name);
	return vs && vs->size == size;
}

/* Write globals into a copy of the object's .rodata image, found through its BTF DATASEC. */
static int set_globals(struct bpf_object *obj, const char *file, const rf_global *g, size_t n,
		       rf_error *err)
{
	struct bpf_map *map, *rodata = NULL;
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *sec;
	const void *init;
	size_t size;
	uint8_t *img;
	int id, r;

	bpf_object__for_each_map(map, obj) {
		const char *nm = bpf_map__name(map);
		size_t l = strlen(nm);
		if (bpf_map__is_internal(map) && l >= 7 && strcmp(nm + l - 7, ".rodata") == 0) {
			rodata = map;
			break;
		}
	}
	id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -ENOENT;
	if (!rodata || id < 0)
		return set_err(err, "set_global", file, ENOENT,
			       "no const volatile global '%s': object has no .rodata%s", g[0].name,
			       btf ? "" : " BTF");
	sec = btf__type_by_id(btf, (uint32_t)id);
	init = bpf_map__initial_value(rodata, &size);
	if (!init)
		return set_err(err, "bpf_map__initial_value", file, ENOENT, NULL);
	img = malloc(size);
	if (!img)
		return set_err(err, "set_global", file, ENOMEM, NULL);
	memcpy(img, init, size);

	for (size_t i = 0; i < n; i++) {
		const struct btf_var_secinfo *hit = rodata_var(btf, sec, g[i].name);
		if (!hit) {
			free(img);
			return set_err(err, "set_global", file, ENOENT,
				       "no const volatile global '%s' in .rodata", g[i].name);
		}
		if (hit->size != g[i].size) {
			free(img);
			return set_err(err, "set_global", file, EINVAL,
				       "global '%s' is %u bytes, got a Buffer of %zu", g[i].name,
				       hit->size, g[i].size);
		}
		if ((size_t)hit->offset + hit->size > size) {
			free(img);
			return set_err(err, "set_global", file, EINVAL,
				       "global '%s' lies outside .rodata (%u+%u > %zu)", g[i].name,
				       hit->offset, hit->size, size);
		}
		memcpy(img + hit->offset, g[i].data, g[i].size);
	}
	r = bpf_map__set_initial_value(rodata, img, size);
	free(img);
	if (r)
		return set_err(err, "bpf_map__set_initial_value", file, r, NULL);
	return 0;
}

/* ------------------------------------------------------------ kernel BTF */

static pthread_mutex_t vmlinux_mu = PTHREAD_MUTEX_INITIALIZER;
static struct btf *vmlinux_btf; /* loaded once, kept for the process */

static int load_vmlinux_btf(rf_error *err, uint64_t mark)
{
	int r = 0;

	pthread_mutex_lock(&vmlinux_mu);
	if (!vmlinux_btf) {
		vmlinux_btf = btf__load_vmlinux_btf();
		if (!vmlinux_btf) {
			r = set_err(err, "btf__load_vmlinux_btf", "/sys/kernel/btf/vmlinux", errno, NULL);
			log_attach(err, mark);
		}
	}
	pthread_mutex_unlock(&vmlinux_mu);
	return r;
}

/*
 * Whether the hook of an optional program exists, decided before the load
 * where the load itself would fail: a tp_btf program's target is resolved at
 * load time (libbpf looks up the typedef btf_trace_<name> in the kernel's
 * BTF), so one missing tracepoint would fail the whole object. Other kinds
 * (tracepoint/, raw_tp/) load anywhere and fail at attach, where an optional
 * one is left out on ENOENT. Module BTF is not searched: an optional tp_btf
 * program on a module's tracepoint is left out (and reported) rather than
 * risk the object. 1 = present (or not decidable here), 0 = missing.
 */
static int optional_hook_present(const char *section, char *reason, size_t len)
{
	const char *name;
	char tn[160];
	rf_error ignored = { 0 };

	if (strncmp(section, "tp_btf/", 7) != 0)
		return 1;
	name = section + 7;
	if (load_vmlinux_btf(&ignored, log_mark())) {
		rf_error_clear(&ignored);
		snprintf(reason, len, "no kernel BTF to find tracepoint '%s' in", name);
		return 0;
	}
	snprintf(tn, sizeof(tn), "btf_trace_%s", name);
	if (btf__find_by_name_kind(vmlinux_btf, tn, BTF_KIND_TYPEDEF) >= 0)
		return 1;
	snprintf(reason, len, "this kernel has no tracepoint '%s'", name);
	return 0;
}

static int add_skipped(rf_object_info *info, struct bpf_program *prog, const char *reason)
{
	rf_skipped *ns = realloc(info->skipped, sizeof(*ns) * (info->n_skipped + 1));
	rf_skipped *k;

	if (!ns)
		return -ENOMEM;
	info->skipped = ns;
	k = &ns[info->n_skipped++];
	memset(k, 0, sizeof(*k));
	snprintf(k->program, sizeof(k->program), "%s", bpf_program__name(prog));
	snprintf(k->section, sizeof(k->section), "%s", bpf_program__section_name(prog));
	snprintf(k->reason, sizeof(k->reason), "%s", reason);
	return 0;
}

/*
 * libbpf forgets the '?' of a section name once it has opened the object: all
 * that is left of it is autoload off. Nothing else turns autoload off before
 * the load, so the programs that have it off right after the open are the
 * optional ones; they are remembered here before the loader turns it on.
 */
struct optional_set {
	const struct bpf_program **progs;
	size_t n;
};

static int is_optional(const struct optional_set *o, const struct bpf_program *prog)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->progs[i] == prog)
			return 1;
	return 0;
}

/* A map's size set by the caller before the load (RF_MAX_ENTRIES_PREFIX in rf_core.h). */
static int set_max_entries(struct bpf_object *obj, const char *file, const char *map_name, const rf_global *g,
			   rf_error *err)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, map_name);
	uint32_t n;
	int r;

	if (!m)
		return set_err(err, "set_max_entries", file, ENOENT, "no map '%s' to size", map_name);
	if (g->size != sizeof(n))
		return set_err(err, "set_max_entries", file, EINVAL, "max_entries of '%s' must be 4 bytes, got %zu",
			       map_name, g->size);
	memcpy(&n, g->data, sizeof(n));
	if (n == 0)
		return set_err(err, "set_max_entries", file, EINVAL, "max_entries of '%s' must be > 0", map_name);
	r = bpf_map__set_max_entries(m, n);
	if (r)
		return set_err(err, "bpf_map__set_max_entries", file, r, "%s = %u", map_name, n);
	return 0;
}

int rf_session_add_object(rf_session *s, const char *path, const rf_global *globals,
			  size_t n_globals, rf_object_info *info, rf_error *err)
{
	uint64_t mark = log_mark();
	struct rf_obj o = { 0 };
	struct optional_set optional = { 0 };
	struct bpf_program *prog;
	struct bpf_map *map;
	const char *base = strrchr(path, '/');
	char target[512];
	int r;

	memset(info, 0, sizeof(*info));
	base = base ? base + 1 : path;
	snprintf(o.file, sizeof(o.file), "%s", base);
	if (s->released || LOAD(s->stopping))
		return set_err(err, "addObject", o.file, ESHUTDOWN, "session is stopped");

	o.obj = bpf_object__open_file(path, NULL);
	if (!o.obj) {
		r = set_err(err, "bpf_object__open_file", path, errno, NULL);
		log_attach(err, mark);
		return r;
	}
	bpf_object__for_each_map(map, o.obj) {
		const char *nm = bpf_map__name(map);
		int fd = strcmp(nm, "rf_events") == 0 ? s->ring_fd
		       : strcmp(nm, "rf_drops") == 0  ? s->drops_fd
						      : -1;
		if (fd < 0)
			continue;
		r = bpf_map__reuse_fd(map, fd);
		if (r) {
			snprintf(target, sizeof(target), "%s/%s", o.file, nm);
			r = set_err(err, "bpf_map__reuse_fd", target, r, NULL);
			log_attach(err, mark);
			goto fail;
		}
	}
	{
		/*
		 * rf_wakeup_bytes (common.bpf.h) defaults to 1 MiB: with a smaller ring
		 * the BPF side would never wake us and the ring would overflow between
		 * poll timeouts. Unless the caller sets it, wake at a quarter of the ring.
		 */
		uint64_t wake = s->o.ring_bytes / 4 < (1u << 20) ? s->o.ring_bytes / 4 : (1u << 20);
		rf_global all[n_globals + 1];
		size_t n = 0;
		int have = 0;
		const size_t pl = strlen(RF_MAX_ENTRIES_PREFIX);
		for (size_t i = 0; i < n_globals; i++) {
			if (strncmp(globals[i].name, RF_MAX_ENTRIES_PREFIX, pl) == 0) {
				r = set_max_entries(o.obj, o.file, globals[i].name + pl, &globals[i], err);
				if (r)
					goto fail;
				continue;
			}
			all[n++] = globals[i];
			have |= strcmp(globals[i].name, "rf_wakeup_bytes") == 0;
		}
		if (!have && rodata_has(o.obj, "rf_wakeup_bytes", sizeof(wake)))
			all[n++] = (rf_global){ "rf_wakeup_bytes", &wake, sizeof(wake) };
		if (n > 0) {
			r = set_globals(o.obj, o.file, all, n, err);
			if (r)
				goto fail;
		}
	}
	/* optional programs ('?' sections) are asked for when their hook exists (rf_core.h rf_skipped) */
	bpf_object__for_each_program(prog, o.obj) {
		const struct bpf_program **np;
		char reason[160];

		if (bpf_program__autoload(prog))
			continue;
		np = realloc(optional.progs, sizeof(*np) * (optional.n + 1));
		if (!np) {
			r = set_err(err, "addObject", o.file, ENOMEM, NULL);
			goto fail;
		}
		optional.progs = np;
		np[optional.n++] = prog;
		if (optional_hook_present(bpf_program__section_name(prog), reason, sizeof(reason))) {
			bpf_program__set_autoload(prog, true);
		} else if (add_skipped(info, prog, reason)) {
			r = set_err(err, "addObject", o.file, ENOMEM, NULL);
			goto fail;
		}
	}
	/*
	 * The verifier gives up with EAGAIN whenever a signal is pending for this
	 * thread, and libbpf retries only a few times: under a profiler (V8's
	 * --cpu-prof sends SIGPROF every millisecond) loading l7.bpf.o never
	 * succeeded. Signals stay blocked for the load and are delivered after it
	 * (Ctrl-C during a load takes effect when it ends).
	 */
	{
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		r = bpf_object__load(o.obj);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (r) {
		r = set_err(err, "bpf_object__load", o.file, r, NULL);
		log_attach(err, mark);
		goto fail;
	}

	bpf_object__for_each_program(prog, o.obj) {
		struct bpf_link *link, **nl;
		const char *pn = bpf_program__name(prog);
		char **np;

		if (!bpf_program__autoload(prog))
			continue;
		/* no auto-attach: opened per CPU by rf_session_attach_perf_event; listed as loaded */
		if (strcmp(bpf_program__section_name(prog), "perf_event") == 0) {
			np = realloc(info->programs, sizeof(*np) * (info->n_programs + 1));
			if (np)
				info->programs = np;
			if (!np || !(np[info->n_programs] = strdup(pn))) {
				r = set_err(err, "addObject", o.file, ENOMEM, NULL);
				goto fail;
			}
			info->n_programs++;
			continue;
		}
		link = bpf_program__attach(prog);
		if (!link && errno == ENOENT && is_optional(&optional, prog)) {
			/* a classic or raw tracepoint this kernel lacks: the object works without it */
			char reason[160];

			snprintf(reason, sizeof(reason), "attach: %s", strerror(ENOENT));
			if (add_skipped(info, prog, reason)) {
				r = set_err(err, "addObject", o.file, ENOMEM, NULL);
				goto fail;
			}
			continue;
		}
		if (!link) {
			int e = errno;
			snprintf(target, sizeof(target), "%s/%s", o.file, pn);
			if (e == EOPNOTSUPP)
				r = set_err(err, "bpf_program__attach", target, e,
					    "section '%s' cannot be auto-attached",
					    bpf_program__section_name(prog));
			else
				/* the section names the tracepoint: what a user must look for
				 * on their kernel (the program name does not) */
				r = set_err(err, "bpf_program__attach", target, e,
					    "section '%s': %s",
					    bpf_program__section_name(prog), strerror(e));
			log_attach(err, mark);
			goto fail;
		}
		nl = realloc(o.links, sizeof(*nl) * (o.n_links + 1));
		np = realloc(info->programs, sizeof(*np) * (info->n_programs + 1));
		if (nl)
			o.links = nl;
		if (np)
			info->programs = np;
		if (!nl || !np || !(np[info->n_programs] = strdup(pn))) {
			bpf_link__destroy(link);
			r = set_err(err, "addObject", o.file, ENOMEM, NULL);
			goto fail;
		}
		info->n_programs++;
		o.links[o.n_links++] = link;
	}

	{
		struct rf_obj *no = realloc(s->objs, sizeof(*no) * (s->n_objs + 1));
		if (!no) {
			r = set_err(err, "addObject", o.file, ENOMEM, NULL);
			goto fail;
		}
		s->objs = no;
		s->objs[s->n_objs++] = o;
	}
	/* "sched.bpf.o" -> "sched" */
	snprintf(info->name, sizeof(info->name), "%s", o.file);
	{
		char *dot = strstr(info->name, ".bpf.o");
		if (!dot)
			dot = strrchr(info->name, '.');
		if (dot && dot != info->name)
			*dot = '\0';
	}
	free(optional.progs);
	return 0;
fail:
	free(optional.progs);
	obj_destroy(&o);
	rf_object_info_clear(info);
	return r;
}

/* ------------------------------------------------------------ poll thread */

static void flush(rf_session *s)
{
	rf_batch *b = s->cur;
	if (!b)
		return;
	s->cur = NULL;
	if (b->len == 0) {
		rf_batch_release(b);
		return;
	}
	ADD(s->st.records, s->cur_records);
	ADD(s->st.batches, 1);
	ADD(s->st.bytes, b->len);
	s->cur_records = 0;
	if (s->closed || s->deliver(s->ctx, b) != 0) {
		s->closed = 1;
		rf_batch_release(b);
	}
}

static int on_sample(void *ctx, void *data, size_t size)
{
	rf_session *s = ctx;
	size_t need = REC_HDR + ALIGN8(size);
	uint8_t *p;

	if (s->cur && s->cur->len + need > s->cur->cap)
		flush(s);
	if (!s->cur) {
		s->cur = pool_get(s->pool, need);
		if (!s->cur)
			return 0; /* out of memory: the record is lost, keep draining */
	}
	p = s->cur->data + s->cur->len;
	((uint32_t *)p)[0] = (uint32_t)size; /* x86_64/arm64: little-endian */
	((uint32_t *)p)[1] = 0;
	memcpy(p + REC_HDR, data, size);
	if (ALIGN8(size) != size)
		memset(p + REC_HDR + size, 0, ALIGN8(size) - size);
	s->cur->len += need;
	s->cur_records++;
	if (LOAD(s->paused) || LOAD(s->aborting))
		return RF_CANCEL;
	return 0;
}

static void *poll_main(void *arg)
{
	rf_session *s = arg;
	int n;

	while (!LOAD(s->stopping) && !LOAD(s->aborting)) {
		if (LOAD(s->paused)) {
			flush(s);
			pthread_mutex_lock(&s->mu);
			while (LOAD(s->paused) && !LOAD(s->stopping) && !LOAD(s->aborting))
				pthread_cond_wait(&s->cv, &s->mu);
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		n = ring_buffer__poll(s->rb, s->o.poll_timeout_ms);
		ADD(s->st.polls, 1);
		if (n > 0)
			ADD(s->st.wakeups, 1);
		if (n >= 0 || n == -EINTR)
			ring_buffer__consume(s->rb);
		else if (n != RF_CANCEL) /* epoll failed: do not spin, the next poll retries */
			usleep(1000 * (unsigned)(s->o.poll_timeout_ms > 0 ? s->o.poll_timeout_ms : 1));
		/* the ring is empty (or we are pausing): hand over the partial batch */
		flush(s);
	}
	if (!LOAD(s->aborting)) {
		/* final drain: programs are already detached, so this terminates */
		while (ring_buffer__consume(s->rb) == RF_CANCEL && !LOAD(s->aborting))
			;
		flush(s);
		if (s->done)
			s->done(s->ctx);
	} else {
		rf_batch_release(s->cur);
		s->cur = NULL;
	}
	return NULL;
}

int rf_session_start(rf_session *s, rf_deliver_fn deliver, rf_done_fn done, void *ctx,
		     rf_error *err)
{
	int r;
	if (s->released || LOAD(s->stopping))
		return set_err(err, "start", NULL, ESHUTDOWN, "session is stopped");
	if (s->thread_started)
		return set_err(err, "start", NULL, EALREADY, "session already started");
	s->deliver = deliver;
	s->done = done;
	s->ctx = ctx;
	s->rb = ring_buffer__new(s->ring_fd, on_sample, s, NULL);
	if (!s->rb)
		return set_err(err, "ring_buffer__new", "rf_events", errno, NULL);
	if (s->o.edge_triggered) {
		/*
		 * libbpf registers the ring level-triggered: once woken, every later
		 * epoll_wait returns at once while any byte is pending, so under load the
		 * thread spins on tiny drains (~20 records each) and steals CPU from the
		 * producers. Edge-triggered, we sleep until the BPF side's next wake-up
		 * (>= rf_wakeup_bytes pending) or the poll timeout, then drain it all.
		 * data.fd = 0 is the ring's index in libbpf's ring_buffer.
		 */
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.fd = 0 };
		if (epoll_ctl(ring_buffer__epoll_fd(s->rb), EPOLL_CTL_MOD, s->ring_fd, &ev)) {
			r = set_err(err, "epoll_ctl", "rf_events", errno, NULL);
			ring_buffer__free(s->rb);
			s->rb = NULL;
			return r;
		}
	}
	r = pthread_create(&s->thread, NULL, poll_main, s);
	if (r) {
		ring_buffer__free(s->rb);
		s->rb = NULL;
		return set_err(err, "pthread_create", "rf_poll", r, NULL);
	}
	pthread_setname_np(s->thread, "rf_poll");
	s->thread_started = 1;
	return 0;
}

int rf_session_running(const rf_session *s)
{
	return s->thread_started && !s->thread_joined;
}

void rf_session_pause(rf_session *s)
{
	pthread_mutex_lock(&s->mu);
	STORE(s->paused, 1);
	pthread_mutex_unlock(&s->mu);
}

void rf_session_resume(rf_session *s)
{
	pthread_mutex_lock(&s->mu);
	STORE(s->paused, 0);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void detach_all(rf_session *s)
{
	for (size_t i = 0; i < s->n_objs; i++) {
		struct rf_obj *o = &s->objs[i];
		for (size_t k = 0; k < o->n_links; k++)
			bpf_link__destroy(o->links[k]);
		o->n_links = 0;
	}
}

static void read_drops(rf_session *s, uint64_t out[RF_CORE_EV_MAX], int *errp)
{
	uint64_t vals[s->ncpus];
	*errp = 0;
	for (uint32_t k = 0; k < RF_EV_MAX; k++) {
		uint64_t sum = 0;
		if (bpf_map_lookup_elem(s->drops_fd, &k, vals)) {
			*errp = errno;
			return;
		}
		for (int c = 0; c < s->ncpus; c++)
			sum += vals[c];
		out[k] = sum;
	}
}

/* Sums of a counter map's entries into c (see rf_session_map_counters). 0 or -errno. */
static int read_counters(rf_session *s, struct rf_counters *c, rf_error *err)
{
	const struct bpf_map *m = NULL;
	uint64_t vals[s->ncpus > 0 ? s->ncpus : 1];
	enum bpf_map_type t;
	uint32_t n;
	int fd, percpu;

	for (size_t i = 0; i < s->n_objs && !m; i++)
		m = bpf_object__find_map_by_name(s->objs[i].obj, c->name);
	if (!m)
		return set_err(err, "rf_session_map_counters", c->name, ENOENT,
			       "no map '%s' in the session's objects", c->name);
	t = bpf_map__type(m);
	percpu = t == BPF_MAP_TYPE_PERCPU_ARRAY;
	if ((t != BPF_MAP_TYPE_ARRAY && !percpu) || bpf_map__key_size(m) != 4 || bpf_map__value_size(m) != 8)
		return set_err(err, "rf_session_map_counters", c->name, EINVAL,
			       "map '%s' is not an array of __u64 counters", c->name);
	fd = bpf_map__fd(m);
	n = bpf_map__max_entries(m);
	if (n > RF_CORE_COUNTERS_MAX)
		n = RF_CORE_COUNTERS_MAX;
	for (uint32_t k = 0; k < n; k++) {
		uint64_t sum = 0;
		if (bpf_map_lookup_elem(fd, &k, vals))
			return set_err(err, "bpf_map_lookup_elem", c->name, errno, NULL);
		for (int cpu = 0; cpu < (percpu ? s->ncpus : 1); cpu++)
			sum += vals[cpu];
		c->vals[k] = sum;
	}
	c->n = n;
	return 0;
}

int rf_session_map_counters(rf_session *s, const char *map, uint64_t *out, size_t max, rf_error *err)
{
	struct rf_counters *c = NULL;
	int r;

	for (size_t i = 0; i < s->n_counters && !c; i++)
		if (strcmp(s->counters[i].name, map) == 0)
			c = &s->counters[i];
	if (!c && s->released)
		return set_err(err, "rf_session_map_counters", map, ENOENT,
			       "session is stopped and map '%s' was never read", map);
	if (!c) {
		struct rf_counters *nc;

		if (strlen(map) >= sizeof(nc->name))
			return set_err(err, "rf_session_map_counters", map, ENAMETOOLONG, NULL);
		nc = realloc(s->counters, sizeof(*nc) * (s->n_counters + 1));
		if (!nc)
			return set_err(err, "rf_session_map_counters", map, ENOMEM, NULL);
		s->counters = nc;
		c = &nc[s->n_counters];
		memset(c, 0, sizeof(*c));
		snprintf(c->name, sizeof(c->name), "%s", map);
		r = read_counters(s, c, err);
		if (r)
			return r; /* not kept: the next call looks again */
		s->n_counters++;
	} else if (!s->released) {
		r = read_counters(s, c, err);
		if (r)
			return r;
	}
	if (max > c->n)
		max = c->n;
	memcpy(out, c->vals, max * sizeof(*out));
	return (int)max;
}

/* Free everything but the struct; the thread must be gone. */
static void release_all(rf_session *s)
{
	int e;
	if (s->released)
		return;
	if (s->rb)
		ring_buffer__free(s->rb);
	s->rb = NULL;
	detach_all(s);
	/* the events' dups: open, they would keep each event's timer firing until the session is freed */
	for (size_t i = 0; i < s->n_perf; i++)
		close(s->perf[i].fd);
	s->n_perf = 0;
	read_drops(s, s->last_drops, &e);
	/* the counters' last values, for reads after stop (as drops) */
	for (size_t i = 0; i < s->n_counters; i++) {
		rf_error ignored = { 0 };
		read_counters(s, &s->counters[i], &ignored);
		rf_error_clear(&ignored);
	}
	s->released = 1;
	for (size_t i = 0; i < s->n_objs; i++)
		obj_destroy(&s->objs[i]);
	free(s->objs);
	s->objs = NULL;
	s->n_objs = 0;
	unmap_positions(s);
	close(s->ring_fd);
	close(s->drops_fd);
	s->ring_fd = s->drops_fd = -1;
	pool_close(s->pool);
	s->pool = NULL;
}

int rf_session_request_stop(rf_session *s)
{
	if (s->released)
		return 0;
	detach_all(s);
	pthread_mutex_lock(&s->mu);
	STORE(s->stopping, 1);
	STORE(s->paused, 0);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return rf_session_running(s);
}

void rf_session_finish(rf_session *s)
{
	if (rf_session_running(s)) {
		pthread_join(s->thread, NULL);
		s->thread_joined = 1;
	}
	release_all(s);
}

void rf_session_abort(rf_session *s)
{
	detach_all(s);
	pthread_mutex_lock(&s->mu);
	STORE(s->aborting, 1);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	rf_session_finish(s);
}

void rf_session_free(rf_session *s)
{
	if (!s)
		return;
	rf_session_abort(s);
	for (size_t i = 0; i < s->n_perf; i++)
		close(s->perf[i].fd);
	free(s->perf);
	free(s->counters);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

int rf_session_drops(rf_session *s, uint64_t out[RF_CORE_EV_MAX], rf_error *err)
{
	int e;
	if (s->released) {
		memcpy(out, s->last_drops, sizeof(s->last_drops));
		return 0;
	}
	read_drops(s, out, &e);
	if (e)
		return set_err(err, "bpf_map_lookup_elem", "rf_drops", e, NULL);
	return 0;
}

void rf_session_stats(const rf_session *s, rf_stats *out)
{
	out->records = __atomic_load_n(&s->st.records, __ATOMIC_RELAXED);
	out->batches = __atomic_load_n(&s->st.batches, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&s->st.bytes, __ATOMIC_RELAXED);
	out->polls = __atomic_load_n(&s->st.polls, __ATOMIC_RELAXED);
	out->wakeups = __atomic_load_n(&s->st.wakeups, __ATOMIC_RELAXED);
	out->ring_pending = 0;
	if (s->cons_pos && s->prod_pos) {
		/*
		 * Consumer first: the poll thread moves it up to the producer position
		 * it saw, so a producer position read after it is never behind it.
		 * Read the other way round, the consumer could pass the producer
		 * snapshot and prod - cons wrapped to ~2^64 (issue 9, crash 1). The
		 * clamp keeps that true even if the kernel's order ever differs.
		 */
		unsigned long cons = __atomic_load_n(s->cons_pos, __ATOMIC_ACQUIRE);
		unsigned long prod = __atomic_load_n(s->prod_pos, __ATOMIC_ACQUIRE);
		out->ring_pending = prod > cons ? prod - cons : 0;
	}
}

/* ------------------------------------------------------------ kernel enums */

int rf_kernel_enum(const char *name, rf_enum_entry **out, rf_error *err)
{
	uint64_t mark = log_mark();
	const struct btf_type *t;
	rf_enum_entry *v;
	int id, n, r;

	*out = NULL;
	r = load_vmlinux_btf(err, mark);
	if (r)
		return r;

	id = btf__find_by_name_kind(vmlinux_btf, name, BTF_KIND_ENUM);
	if (id < 0)
		id = btf__find_by_name_kind(vmlinux_btf, name, BTF_KIND_ENUM64);
	if (id < 0)
		return set_err(err, "btf__find_by_name_kind", "vmlinux", ENOENT,
			       "no enum '%s' in kernel BTF", name);
	t = btf__type_by_id(vmlinux_btf, (uint32_t)id);
	n = btf_vlen(t);
	v = calloc((size_t)n + 1, sizeof(*v));
	if (!v)
		return set_err(err, "rf_kernel_enum", name, ENOMEM, NULL);
	for (int i = 0; i < n; i++) {
		if (btf_is_enum(t)) {
			const struct btf_enum *e = btf_enum(t) + i;
			v[i].value = btf_kflag(t) ? (int64_t)(int32_t)e->val : (int64_t)(uint32_t)e->val;
			v[i].name = btf__name_by_offset(vmlinux_btf, e->name_off);
		} else {
			const struct btf_enum64 *e = btf_enum64(t) + i;
			v[i].value = (int64_t)btf_enum64_value(e);
			v[i].name = btf__name_by_offset(vmlinux_btf, e->name_off);
		}
	}
	*out = v;
	return n;
}

/* ------------------------------------------------- profiling (issue 11) */

static struct bpf_program *find_program(rf_session *s, const char *name, struct rf_obj **owner)
{
	for (size_t i = 0; i < s->n_objs; i++) {
		struct bpf_program *p = bpf_object__find_program_by_name(s->objs[i].obj, name);
		if (p) {
			*owner = &s->objs[i];
			return p;
		}
	}
	return NULL;
}

static struct bpf_map *find_map(rf_session *s, const char *name)
{
	for (size_t i = 0; i < s->n_objs; i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(s->objs[i].obj, name);
		if (m)
			return m;
	}
	return NULL;
}

/* Online CPUs from /sys/devices/system/cpu/online ("0-1,4"); marks into on[ncpus]. */
static int online_cpus(int ncpus, char *on)
{
	char buf[1024];
	FILE *f = fopen("/sys/devices/system/cpu/online", "re");
	char *p, *save = NULL;

	memset(on, 0, (size_t)ncpus);
	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	for (p = strtok_r(buf, ",\n", &save); p; p = strtok_r(NULL, ",\n", &save)) {
		int a, b;
		int n = sscanf(p, "%d-%d", &a, &b);
		if (n == 1)
			b = a;
		else if (n != 2)
			return -EINVAL;
		for (int c = a; c <= b && c < ncpus; c++)
			if (c >= 0)
				on[c] = 1;
	}
	return 0;
}

/* The event's time enabled (ns; PERF_FORMAT_TOTAL_TIME_ENABLED); 0 when it cannot be read. */
static uint64_t perf_enabled_ns(int fd)
{
	uint64_t v[2] = { 0, 0 }; /* value, time enabled */

	if (read(fd, v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v[1];
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Forgets s->perf[i]: its link destroyed (and taken out of its object's), its fd closed. */
static void perf_cpu_drop(rf_session *s, size_t i)
{
	struct rf_perf_cpu *p = &s->perf[i];
	struct rf_obj *o = &s->objs[p->obj];

	for (size_t k = 0; k < o->n_links; k++) {
		if (o->links[k] == p->link) {
			o->links[k] = o->links[--o->n_links];
			break;
		}
	}
	bpf_link__destroy(p->link);
	close(p->fd);
	s->perf[i] = s->perf[--s->n_perf];
}

int rf_session_attach_perf_event(rf_session *s, const char *program, uint64_t freq_hz, rf_error *err)
{
	uint64_t mark = log_mark();
	struct rf_obj *o = NULL;
	struct bpf_program *prog;
	char on[s->ncpus > 0 ? s->ncpus : 1];
	char have[s->ncpus > 0 ? s->ncpus : 1];
	char target[256];
	size_t oi;
	int attached = 0, r;

	if (s->released || LOAD(s->stopping))
		return set_err(err, "attachPerfEvent", program, ESHUTDOWN, "session is stopped");
	prog = find_program(s, program, &o);
	if (!prog)
		return set_err(err, "attachPerfEvent", program, ENOENT, "no program '%s' in the session's objects", program);
	if (bpf_program__type(prog) != BPF_PROG_TYPE_PERF_EVENT)
		return set_err(err, "attachPerfEvent", program, EINVAL, "program '%s' is not a perf_event program", program);
	if (freq_hz == 0 || freq_hz > 100000)
		return set_err(err, "attachPerfEvent", program, EINVAL, "frequency %llu Hz out of range (1..100000)",
			       (unsigned long long)freq_hz);
	r = online_cpus(s->ncpus, on);
	if (r)
		return set_err(err, "attachPerfEvent", "/sys/devices/system/cpu/online", -r, NULL);
	oi = (size_t)(o - s->objs);
	snprintf(target, sizeof(target), "%s/%s", o->file, program);
	/*
	 * Called again (the collector does, every interval), the events already
	 * open are kept while they run; one whose CPU is offline, or went offline
	 * since (its time enabled fell behind the clock), is dropped and, its CPU online again,
	 * opened anew below: a CPU that came online after the start is sampled.
	 */
	memset(have, 0, sizeof(have));
	for (size_t i = 0; i < s->n_perf;) {
		struct rf_perf_cpu *p = &s->perf[i];
		uint64_t en, now, wall;

		if (p->prog != prog) {
			i++;
			continue;
		}
		en = perf_enabled_ns(p->fd);
		now = monotonic_ns();
		wall = now - p->at;
		/*
		 * Enabled all along, within 5 ms + 10 %: the two reads of each call
		 * (the event's time, then the clock) can be apart by a preemption of
		 * this thread on a busy host, and a live event must not be dropped
		 * and opened again for it (a false hot-plug line). A dead event's
		 * time never moves again, so one that slips through this bound
		 * (its CPU offline briefly late in the interval) fails en > enabled
		 * at the next call.
		 */
		if (on[p->cpu] && en > p->enabled && en - p->enabled + 5000000 + wall / 10 >= wall) {
			p->enabled = en;
			p->at = now;
			have[p->cpu] = 1;
			i++;
			continue;
		}
		perf_cpu_drop(s, i);
	}
	for (int cpu = 0; cpu < s->ncpus; cpu++) {
		/*
		 * The software cpu-clock event: the one sampling clock this kind of
		 * machine has (no hardware PMU, shared/KERNEL.md), in frequency mode so
		 * the kernel keeps the rate whatever the tick.
		 */
		struct perf_event_attr attr = {
			.type = PERF_TYPE_SOFTWARE,
			.config = PERF_COUNT_SW_CPU_CLOCK,
			.size = sizeof(attr),
			.freq = 1,
			.sample_freq = freq_hz,
			.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED,
		};
		struct bpf_link *link, **nl;
		struct rf_perf_cpu *np;
		int fd, keep;

		if (!on[cpu] || have[cpu])
			continue;
		fd = (int)syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0) {
			r = errno;
			if (r == ENODEV)
				continue; /* went offline since we read the list */
			set_err(err, "perf_event_open", target, r, "cpu-clock on CPU %d: %s", cpu, strerror(r));
			goto fail;
		}
		keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (keep < 0) {
			r = errno;
			close(fd);
			set_err(err, "attachPerfEvent", target, r, "dup of the CPU %d event: %s", cpu, strerror(r));
			goto fail;
		}
		link = bpf_program__attach_perf_event(prog, fd); /* takes the fd: closed with the link */
		if (!link) {
			r = errno;
			close(fd);
			close(keep);
			set_err(err, "bpf_program__attach_perf_event", target, r, NULL);
			log_attach(err, mark);
			goto fail;
		}
		nl = realloc(o->links, sizeof(*nl) * (o->n_links + 1));
		np = nl ? realloc(s->perf, sizeof(*np) * (s->n_perf + 1)) : NULL;
		if (nl)
			o->links = nl;
		if (np)
			s->perf = np;
		if (!nl || !np) {
			bpf_link__destroy(link);
			close(keep);
			set_err(err, "attachPerfEvent", target, ENOMEM, NULL);
			goto fail;
		}
		o->links[o->n_links++] = link;
		s->perf[s->n_perf++] = (struct rf_perf_cpu){ prog, oi, cpu, link, keep, perf_enabled_ns(keep), monotonic_ns() };
		attached++;
	}
	return attached;
fail:
	/* the links attached so far stay with the object and go with it (detach_all) */
	return -err->err;
}

void rf_profile_drain_clear(rf_profile_drain *d)
{
	free(d->counts);
	free(d->stacks);
	free(d->comms);
	memset(d, 0, sizeof(*d));
}

/* Deletes every entry of a stack map (nothing writes it: see the scheme in bpf/events.h). */
static int clear_stack_map(int fd, uint32_t max, rf_error *err, const char *name)
{
	uint32_t *keys = malloc(sizeof(*keys) * (max ? max : 1));
	uint32_t n = 0, k, *prev = NULL;

	if (!keys)
		return set_err(err, "rf_session_profile_drain", name, ENOMEM, NULL);
	/* all keys first: deleting while walking makes get_next_key start over */
	while (n < max && bpf_map_get_next_key(fd, prev, &k) == 0) {
		keys[n] = k;
		prev = &keys[n++];
	}
	for (uint32_t i = 0; i < n; i++)
		if (bpf_map_delete_elem(fd, &keys[i]) && errno != ENOENT) {
			int e = errno;
			free(keys);
			return set_err(err, "bpf_map_delete_elem", name, e, NULL);
		}
	free(keys);
	return 0;
}

/*
 * Waits until every BPF program that may have read the previous generation
 * has returned. perf_event and tp_btf programs run with preemption disabled,
 * which is an RCU read-side section, and MEMBARRIER_CMD_GLOBAL is
 * synchronize_rcu() (kernel/sched/membarrier.c). Where membarrier is refused
 * (nohz_full), sleep 20 ms: far longer than any program runs (microseconds).
 */
static void wait_programs(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0)
		usleep(20000);
}

int rf_session_profile_drain(rf_session *s, const char *prefix, uint32_t epoch_drains, rf_profile_drain *out,
			     rf_error *err)
{
	char name[5][64];
	struct bpf_map *ctl, *counts, *comm, *stacks[3];
	uint32_t zero = 0, max, ksz;
	struct rf_prof_ctl c, next;
	uint64_t gen;
	void *keys = NULL, *vals = NULL, *dels = NULL;
	uint32_t got = 0, n_del = 0;
	size_t stack_cap = 0, comm_cap = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if (s->released)
		return set_err(err, "profileDrain", prefix, ESHUTDOWN, "session is stopped");
	if (strlen(prefix) > 40)
		return set_err(err, "profileDrain", prefix, ENAMETOOLONG, NULL);
	snprintf(name[0], 64, "%s_ctl", prefix);
	snprintf(name[1], 64, "%s_counts", prefix);
	snprintf(name[2], 64, "%s_comm", prefix);
	ctl = find_map(s, name[0]);
	counts = find_map(s, name[1]);
	comm = find_map(s, name[2]);
	for (int i = 0; i < 3; i++) {
		snprintf(name[3], 64, "%s_stacks%d", prefix, i);
		stacks[i] = find_map(s, name[3]);
		if (!stacks[i])
			return set_err(err, "profileDrain", name[3], ENOENT, "no map '%s' in the session's objects", name[3]);
	}
	if (!ctl || !counts || !comm)
		return set_err(err, "profileDrain", prefix, ENOENT, "no map set '%s_*' in the session's objects", prefix);
	ksz = bpf_map__key_size(counts);
	if (ksz != sizeof(struct rf_prof_key) || bpf_map__value_size(counts) != 8)
		return set_err(err, "profileDrain", name[1], EINVAL, "key %u bytes, want %zu", ksz, sizeof(struct rf_prof_key));
	if (bpf_map__value_size(ctl) != sizeof(struct rf_prof_ctl))
		return set_err(err, "profileDrain", name[0], EINVAL, "value %u bytes, want %zu", bpf_map__value_size(ctl),
			       sizeof(struct rf_prof_ctl));
	if (epoch_drains == 0)
		epoch_drains = 1;

	if (bpf_map_lookup_elem(bpf_map__fd(ctl), &zero, &c))
		return set_err(err, "bpf_map_lookup_elem", name[0], errno, NULL);
	gen = c.generation;
	next = c;
	next.generation = gen + 1;
	if (gen + 1 - c.epoch_since >= epoch_drains) {
		/* 1. a new stack epoch: its map (that of epoch - 2) is named by no key still to be read */
		uint32_t m = (uint32_t)((c.stack_epoch + 1) % 3);

		snprintf(name[3], 64, "%s_stacks%u", prefix, m);
		r = clear_stack_map(bpf_map__fd(stacks[m]), bpf_map__max_entries(stacks[m]), err, name[3]);
		if (r)
			return r;
		next.stack_epoch = c.stack_epoch + 1;
		next.epoch_since = gen + 1;
	}
	/* 2. move on; 3. wait for programs still running with gen */
	if (bpf_map_update_elem(bpf_map__fd(ctl), &zero, &next, BPF_ANY))
		return set_err(err, "bpf_map_update_elem", name[0], errno, NULL);
	wait_programs();
	out->generation = gen;

	/* 4. every key of slot gen & 1, then delete them: nothing writes them any more */
	max = bpf_map__max_entries(counts);
	keys = malloc((size_t)ksz * max);
	vals = malloc(8u * max);
	dels = malloc((size_t)ksz * max);
	out->counts = malloc((size_t)(ksz + 8) * max);
	if (!keys || !vals || !dels || !out->counts) {
		r = set_err(err, "profileDrain", name[1], ENOMEM, NULL);
		goto fail;
	}
	{
		/* one batch for the whole map: a hash batch call never splits a bucket, and the buffers hold every entry */
		uint8_t in_batch[8], out_batch[8];
		void *in = NULL;
		for (;;) {
			uint32_t cnt = max - got;
			DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, bo);
			if (cnt == 0)
				break;
			r = bpf_map_lookup_batch(bpf_map__fd(counts), in, out_batch, (uint8_t *)keys + (size_t)got * ksz,
						 (uint8_t *)vals + (size_t)got * 8, &cnt, &bo);
			int e = errno;
			got += cnt;
			if (r && e == ENOENT)
				break; /* the end of the map */
			if (r) {
				r = set_err(err, "bpf_map_lookup_batch", name[1], e, NULL);
				goto fail;
			}
			memcpy(in_batch, out_batch, sizeof(in_batch));
			in = in_batch;
		}
	}
	for (uint32_t i = 0; i < got; i++) {
		const struct rf_prof_key *k = (const void *)((uint8_t *)keys + (size_t)i * ksz);
		if (k->slot != (gen & 1))
			continue;
		memcpy((uint8_t *)out->counts + out->n_counts * (ksz + 8), k, ksz);
		memcpy((uint8_t *)out->counts + out->n_counts * (ksz + 8) + ksz, (uint8_t *)vals + (size_t)i * 8, 8);
		memcpy((uint8_t *)dels + (size_t)n_del * ksz, k, ksz);
		out->n_counts++;
		n_del++;
	}
	for (uint32_t i = 0; i < n_del; i++)
		if (bpf_map_delete_elem(bpf_map__fd(counts), (uint8_t *)dels + (size_t)i * ksz) && errno != ENOENT) {
			/* the entry stays and would be read again at the next drain of its slot: say so */
			r = set_err(err, "bpf_map_delete_elem", name[1], errno, NULL);
			goto fail;
		}

	/* 5. the frames of every stack these keys name, and the comm of every process */
	for (size_t i = 0; i < out->n_counts; i++) {
		const struct rf_prof_key *k = (const void *)((uint8_t *)out->counts + i * (ksz + 8));
		int32_t ids[2] = { k->user_stack_id, k->kernel_stack_id };
		uint32_t tg = k->tgid;
		int seen = 0;

		for (int j = 0; j < 2; j++) {
			uint64_t frames[RF_PROF_MAX_FRAMES];
			uint32_t nf = 0, id = (uint32_t)ids[j];
			size_t need;

			if (ids[j] < 0 || k->stack_map > 2)
				continue;
			/* already out? (linear: a drain holds hundreds of stacks) */
			seen = 0;
			for (size_t off = 0; off < out->stacks_len && !seen;) {
				const uint32_t *h = (const void *)((uint8_t *)out->stacks + off);
				seen = h[0] == k->stack_map && h[1] == id;
				off += 16 + (size_t)h[2] * 8;
			}
			if (seen)
				continue;
			memset(frames, 0, sizeof(frames));
			if (bpf_map_lookup_elem(bpf_map__fd(stacks[k->stack_map]), &id, frames) == 0)
				while (nf < RF_PROF_MAX_FRAMES && frames[nf])
					nf++;
			/* not found (nf 0): the key keeps the id, its stack reads as empty */
			need = out->stacks_len + 16 + (size_t)nf * 8;
			if (need > stack_cap) {
				size_t cap = stack_cap ? stack_cap * 2 : 65536;
				void *p;
				while (cap < need)
					cap *= 2;
				p = realloc(out->stacks, cap);
				if (!p) {
					r = set_err(err, "profileDrain", prefix, ENOMEM, NULL);
					goto fail;
				}
				out->stacks = p;
				stack_cap = cap;
			}
			{
				uint32_t h[4] = { k->stack_map, id, nf, 0 };
				memcpy((uint8_t *)out->stacks + out->stacks_len, h, 16);
				memcpy((uint8_t *)out->stacks + out->stacks_len + 16, frames, (size_t)nf * 8);
				out->stacks_len = need;
			}
		}
		seen = 0;
		for (size_t c = 0; c < out->n_comms && !seen; c++)
			seen = memcmp((uint8_t *)out->comms + c * 20, &tg, 4) == 0;
		if (seen)
			continue;
		if (out->n_comms == comm_cap) {
			size_t cap = comm_cap ? comm_cap * 2 : 256;
			void *p = realloc(out->comms, cap * 20);
			if (!p) {
				r = set_err(err, "profileDrain", prefix, ENOMEM, NULL);
				goto fail;
			}
			out->comms = p;
			comm_cap = cap;
		}
		{
			uint8_t *rec = (uint8_t *)out->comms + out->n_comms * 20;
			memset(rec, 0, 20);
			memcpy(rec, &tg, 4);
			/* absent (the LRU evicted it): an empty comm, the collector falls back to /proc */
			bpf_map_lookup_elem(bpf_map__fd(comm), &tg, rec + 4);
			out->n_comms++;
		}
	}
	free(keys);
	free(vals);
	free(dels);
	return 0;
fail:
	free(keys);
	free(vals);
	free(dels);
	rf_profile_drain_clear(out);
	return r;
}

/*
 * Pending HTTP/1 exchanges (bpf/l7.bpf.c rf_l7_pending): the same layout as
 * struct rf_l7_pend there; the value size is checked against the map's.
 */
#define RF_L7_PEND_HEAD_U 512
struct rf_l7_pkey_u {
	uint64_t conn_id;
	uint32_t seq;
	uint16_t rport; /* DNS: the peer (bpf/l7.bpf.c struct rf_l7_pkey) */
	uint16_t _pad;
	uint8_t raddr[16];
};
struct rf_l7_pend_u {
	struct rf_l7_exchange x;
	uint8_t method;
	uint8_t has_req;
	uint8_t lost;
	uint8_t _pad[5];
	uint8_t head[2 * RF_L7_PEND_HEAD_U];
};

/*
 * A DNS query is handed over later than an HTTP request: resolvers send it
 * again after their timeout (glibc and dig: 5 s), and a retransmit folds into
 * the waiting exchange (bpf/l7_dns.h: retries, from the first send) only while
 * the entry is still in the map. 11 s covers two retransmits and stays well
 * under the spans stage's 30 s. A hand-over of 0 (the collector stopping)
 * still claims everything.
 */
#define RF_L7_DNS_HANDOVER_NS 11000000000ull

static uint64_t pend_last_ns(const struct rf_l7_exchange *x)
{
	uint64_t t = x->req_start_ns;

	if (x->req_end_ns > t)
		t = x->req_end_ns;
	if (x->resp_start_ns > t)
		t = x->resp_start_ns;
	if (x->resp_end_ns > t)
		t = x->resp_end_ns;
	return t;
}

/* Room for one more record of the largest size, before its entry is claimed: nothing claimed is dropped. */
static int claim_room(uint8_t **buf, size_t len, size_t *cap)
{
	size_t need = REC_HDR + ALIGN8(sizeof(struct rf_l7_exchange) + 2 * RF_L7_PEND_HEAD_U), nc;
	uint8_t *o;

	if (len + need <= *cap)
		return 0;
	nc = *cap ? *cap * 2 : 16384;
	while (nc < len + need)
		nc *= 2;
	o = realloc(*buf, nc);
	if (!o)
		return -ENOMEM;
	*buf = o;
	*cap = nc;
	return 0;
}

/* Appends one claimed entry as a ring-style record (u32 size, u32 0, record, padded to 8). */
static int claim_append(uint8_t **buf, size_t *len, size_t *cap, const struct rf_l7_pend_u *p, uint64_t now)
{
	struct rf_l7_exchange x = p->x;
	size_t rl = x.req_head_len > RF_L7_PEND_HEAD_U ? RF_L7_PEND_HEAD_U : x.req_head_len;
	size_t sl = x.resp_head_len > RF_L7_PEND_HEAD_U ? RF_L7_PEND_HEAD_U : x.resp_head_len;
	size_t size = sizeof(x) + rl + sl, need = REC_HDR + ALIGN8(size);
	uint8_t *o;
	char path[64];
	FILE *f;

	if (*len + need > *cap)
		return -ENOMEM; /* claim_room was not called */
	/* as rf_l7_x_emit would have: the task is the request's, the time the claim's */
	memset(&x.hdr, 0, sizeof(x.hdr));
	x.hdr.type = RF_EV_L7_EXCHANGE;
	x.hdr.pid = x.req_pid;
	x.hdr.tgid = x.req_tgid;
	x.hdr.ts_ns = now;
	snprintf(path, sizeof(path), "/proc/%u/comm", x.req_tgid);
	f = x.req_tgid ? fopen(path, "re") : NULL;
	if (f) {
		if (fgets(x.hdr.comm, sizeof(x.hdr.comm), f))
			x.hdr.comm[strcspn(x.hdr.comm, "\n")] = 0;
		fclose(f);
	}
	x.req_head_len = (uint16_t)rl;
	x.resp_head_len = (uint16_t)sl;
	x.outcome = p->lost ? RF_L7_OUT_LOST : !p->has_req ? RF_L7_OUT_RESP_ONLY : RF_L7_OUT_REQ_ONLY;
	o = *buf + *len;
	((uint32_t *)o)[0] = (uint32_t)size;
	((uint32_t *)o)[1] = 0;
	memcpy(o + REC_HDR, &x, sizeof(x));
	memcpy(o + REC_HDR + sizeof(x), p->head, rl);
	memcpy(o + REC_HDR + sizeof(x) + rl, p->head + RF_L7_PEND_HEAD_U, sl);
	memset(o + REC_HDR + size, 0, ALIGN8(size) - size);
	*len += need;
	return 0;
}

int rf_session_l7_claim(rf_session *s, uint64_t handover_ns, uint64_t stale_ns, void **out, size_t *out_len,
			rf_error *err)
{
	const struct bpf_map *m = NULL;
	struct rf_l7_pkey_u key, next, *keys = NULL;
	struct rf_l7_pend_u *p = NULL;
	size_t nkeys = 0, capkeys = 0, len = 0, cap = 0;
	uint8_t *buf = NULL;
	struct timespec ts;
	uint64_t now;
	int fd, r = 0, n = 0, first = 1;

	*out = NULL;
	*out_len = 0;
	if (s->released)
		return 0;
	for (size_t i = 0; i < s->n_objs && !m; i++)
		m = bpf_object__find_map_by_name(s->objs[i].obj, "rf_l7_pending");
	if (!m)
		return set_err(err, "rf_session_l7_claim", "rf_l7_pending", ENOENT, "no map rf_l7_pending in the session");
	if (bpf_map__key_size(m) != sizeof(key) || bpf_map__value_size(m) != sizeof(*p))
		return set_err(err, "rf_session_l7_claim", "rf_l7_pending", EINVAL,
			       "rf_l7_pending's key/value sizes (%u/%u) are not this build's (%zu/%zu)",
			       bpf_map__key_size(m), bpf_map__value_size(m), sizeof(key), sizeof(*p));
	fd = bpf_map__fd(m);
	p = malloc(sizeof(*p));
	if (!p)
		return set_err(err, "rf_session_l7_claim", NULL, ENOMEM, NULL);
	/* the old ones' keys first: deleting while walking would restart the walk */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	while (bpf_map_get_next_key(fd, first ? NULL : &key, &next) == 0) {
		uint64_t last, wait;

		first = 0;
		key = next;
		if (bpf_map_lookup_elem(fd, &key, p))
			continue; /* gone meanwhile (BPF emitted it) */
		last = pend_last_ns(&p->x);
		/*
		 * A request without a response after the hand-over time; anything
		 * else (a response under way) only once stale: its process may
		 * have exited without close().
		 */
		wait = handover_ns;
		if (p->x.app == RF_L7_APP_DNS && wait && wait < RF_L7_DNS_HANDOVER_NS)
			wait = RF_L7_DNS_HANDOVER_NS;
		if (!(p->x.resp_start_ns == 0 ? last + wait <= now : last + stale_ns <= now))
			continue;
		if (nkeys == capkeys) {
			size_t nc = capkeys ? capkeys * 2 : 64;
			struct rf_l7_pkey_u *k2 = realloc(keys, nc * sizeof(*keys));
			if (!k2) {
				r = set_err(err, "rf_session_l7_claim", NULL, ENOMEM, NULL);
				goto out;
			}
			keys = k2;
			capkeys = nc;
		}
		keys[nkeys++] = key;
	}
	for (size_t i = 0; i < nkeys; i++) {
		if (claim_room(&buf, len, &cap))
			break; /* the rest stay in the map for the next sweep */
		/* exactly one of this and BPF's delete succeeds: the loser reports nothing */
		if (bpf_map_lookup_and_delete_elem(fd, &keys[i], p))
			continue;
		claim_append(&buf, &len, &cap, p, now);
		n++;
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
	r = n;
out:
	free(buf);
	free(keys);
	free(p);
	return r;
}
