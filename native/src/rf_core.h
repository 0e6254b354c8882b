/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rf_core.h: the native core of ringflow, in plain C (no N-API).
 *
 * A session owns one BPF ring buffer (rf_events) and one per-CPU drop counter
 * array (rf_drops). Every BPF object added to it reuses those two maps, so one
 * poll thread drains every signal. The thread copies records into batches:
 *
 *   batch  := record*
 *   record := u32 length (LE) | u32 0 | length bytes | zero pad to 8-byte alignment
 *
 * and hands each batch to a delivery callback when it is full or the ring is
 * empty. The callback may block (that is the backpressure: a blocked thread
 * stops draining and the kernel counts drops in rf_drops).
 *
 * Threading: every function except the deliver/done callbacks is called from
 * one "owner" thread (the JS thread). Only the poll thread calls the callbacks.
 */
#ifndef RINGFLOW_RF_CORE_H
#define RINGFLOW_RF_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Size of the per-type drop array; equals RF_EV_MAX in bpf/events.h (checked in rf_core.c). */
#define RF_CORE_EV_MAX 16
/* Lines of libbpf output kept for an error's log. */
#define RF_CORE_LOG_LINES 20

/* What failed, for a JS Error: "<op>(<target>): <detail or strerror> (errno N)". */
typedef struct rf_error {
	char op[64];       /* e.g. "bpf_object__load" */
	char target[256];  /* e.g. "sched.bpf.o" or "sched.bpf.o/handle_switch" */
	char detail[256];  /* optional text used instead of strerror(err) */
	int err;           /* positive errno */
	char *log;         /* malloc'd last lines of libbpf output, or NULL; free with rf_error_clear */
} rf_error;

void rf_error_clear(rf_error *e);
/* Formats the message into buf. */
void rf_error_message(const rf_error *e, char *buf, size_t len);
/* "EPERM" etc., or "E<n>" when unknown. */
const char *rf_errno_name(int err);

typedef struct rf_options {
	uint32_t ring_bytes;       /* power of two, multiple of the page size */
	int poll_timeout_ms;
	uint32_t max_batch_bytes;
	int edge_triggered;        /* epoll the ring EPOLLET (see rf_session_start) */
} rf_options;

typedef struct rf_stats {
	uint64_t records;
	uint64_t batches;
	uint64_t bytes;    /* record bytes delivered (batch bytes, framing included) */
	uint64_t polls;    /* ring_buffer__poll calls */
	uint64_t wakeups;  /* polls that returned because the kernel woke us */
	uint64_t ring_pending; /* bytes written to the ring and not yet consumed, now (0 once stopped) */
} rf_stats;

/*
 * A batch handed to the delivery callback. Ownership passes to the callee, who
 * must give it back with rf_batch_release (from any thread, any time, even
 * after the session is destroyed).
 */
typedef struct rf_batch rf_batch;
struct rf_batch {
	uint8_t *data;
	size_t len;
	size_t cap;
	struct rf_pool *pool;
};
void rf_batch_release(rf_batch *b);

/*
 * Called on the poll thread. Returns 0 when the batch was accepted (ownership
 * taken), nonzero when delivery is closed (the core releases the batch and
 * stops delivering).
 */
typedef int (*rf_deliver_fn)(void *ctx, rf_batch *batch);
/* Called on the poll thread once, after the last batch, just before it exits. */
typedef void (*rf_done_fn)(void *ctx);

typedef struct rf_session rf_session;

/* Creates the shared maps. NULL on failure (err filled). */
rf_session *rf_session_new(const rf_options *opts, rf_error *err);

typedef struct rf_global {
	const char *name;
	const void *data;
	size_t size;
} rf_global;

/*
 * A "global" named RF_MAX_ENTRIES_PREFIX "<map>" with a 4-byte value is no
 * .rodata variable: it sets that map's max_entries before the load (sized per
 * host by the caller, e.g. the profile stack maps). An unknown map fails the
 * object (ENOENT), as an unknown global does.
 */
#define RF_MAX_ENTRIES_PREFIX "max_entries:"

/*
 * A program left out because it is optional and its hook is missing on this
 * kernel. A program is optional when its section starts with '?' (libbpf's
 * own "not loaded unless asked" mark, e.g. SEC("?tp_btf/block_io_start")):
 * the loader asks for it when its hook exists and leaves it out otherwise.
 * Programs without the mark are required: a missing hook fails the object.
 */
typedef struct rf_skipped {
	char program[64];
	char section[128];  /* without the '?' */
	char reason[160];
} rf_skipped;

typedef struct rf_object_info {
	char name[128];
	char **programs;  /* malloc'd names of attached programs */
	size_t n_programs;
	rf_skipped *skipped;  /* malloc'd optional programs left out */
	size_t n_skipped;
} rf_object_info;
void rf_object_info_clear(rf_object_info *info);

/* Opens, configures, loads and attaches one BPF object. 0 or -errno (err filled). */
int rf_session_add_object(rf_session *s, const char *path, const rf_global *globals,
			  size_t n_globals, rf_object_info *info, rf_error *err);

/* Starts the poll thread. 0 or -errno. */
int rf_session_start(rf_session *s, rf_deliver_fn deliver, rf_done_fn done, void *ctx,
		     rf_error *err);
void rf_session_pause(rf_session *s);
void rf_session_resume(rf_session *s);
int rf_session_running(const rf_session *s);

/*
 * Graceful stop, part 1 (owner thread, never blocks): detaches every program so
 * no new records arrive, then asks the poll thread to drain the ring, deliver
 * what is left, call done() and exit. Returns 1 if a thread was asked to stop
 * (wait for done), 0 if none was running.
 */
int rf_session_request_stop(rf_session *s);
/* Graceful stop, part 2: join the thread (after done() was called) and free everything but s. */
void rf_session_finish(rf_session *s);
/*
 * Hard stop (process or worker exit): the thread exits without delivering more.
 * The caller must first make a blocked deliver() return (e.g. abort the queue).
 */
void rf_session_abort(rf_session *s);
void rf_session_free(rf_session *s);

/* Per-type drop counts summed over all possible CPUs (last values once stopped). */
int rf_session_drops(rf_session *s, uint64_t out[RF_CORE_EV_MAX], rf_error *err);
void rf_session_stats(const rf_session *s, rf_stats *out);

/* Entries of one counter map read by rf_session_map_counters. */
#define RF_CORE_COUNTERS_MAX 64
/*
 * Per-index counts of a counter map (BPF_MAP_TYPE_ARRAY or PERCPU_ARRAY of
 * __u64 keyed by __u32, e.g. rf_block_lost) of any object in the session,
 * per-CPU values summed. Once stopped, the last values of each map read at
 * least once before (read again as the objects close). Count of entries
 * written to out (at most max), or -errno: -ENOENT when no object has it.
 */
int rf_session_map_counters(rf_session *s, const char *map, uint64_t *out, size_t max, rf_error *err);

typedef struct rf_enum_entry {
	int64_t value;
	const char *name;  /* points into the cached vmlinux BTF */
} rf_enum_entry;
/* Values of a kernel enum from /sys/kernel/btf/vmlinux. *out is malloc'd. Count or -errno. */
int rf_kernel_enum(const char *name, rf_enum_entry **out, rf_error *err);

/*
 * Profiling (issue 11, bpf/profile.bpf.c and bpf/offcpu.bpf.c).
 *
 * rf_session_attach_perf_event opens the software cpu-clock perf event of
 * every online CPU at freq_hz (frequency mode) and attaches the perf_event
 * program `program` of a loaded object to each (rf_session_add_object leaves
 * perf_event programs unattached). Count of CPUs attached, or -errno.
 * Called again, it keeps the events that run and (re)opens those of CPUs
 * online now without a running one (came online after the last call, or
 * went offline and back: the kernel never restarts such an event); the
 * count is of the CPUs attached by this call, 0 when nothing changed.
 */
int rf_session_attach_perf_event(rf_session *s, const char *program, uint64_t freq_hz, rf_error *err);

/*
 * One drain of a profiling map set <prefix>_{ctl,counts,stacks0..2,comm}
 * (bpf/prof_maps.bpf.h): moves to the next generation (and to the next stack
 * epoch once every epoch_drains drains: an off-CPU block keeps its stack if it
 * ends before the epoch after next), waits until no program
 * still runs with the old one, then takes every count of the old one out
 * (read and deleted: each increment is read exactly once; bpf/events.h says
 * why) with the frames of the stacks they name. Three malloc'd arrays:
 *
 *   counts := (struct rf_prof_key, __u64 value)*                 n_counts x 32 bytes
 *   stacks := (u32 stack_map, u32 id, u32 n, u32 0, u64 ip[n])*  stacks_len bytes
 *   comms  := (u32 tgid, char comm[16])*                         n_comms x 20 bytes
 *
 * Runs on the calling thread; blocks for one RCU grace period (ms).
 */
typedef struct rf_profile_drain {
	uint64_t generation; /* the generation drained */
	void *counts;
	size_t n_counts;
	void *stacks;
	size_t stacks_len;
	void *comms;
	size_t n_comms;
} rf_profile_drain;
int rf_session_profile_drain(rf_session *s, const char *prefix, uint32_t epoch_drains, rf_profile_drain *out,
			     rf_error *err);
void rf_profile_drain_clear(rf_profile_drain *d);

/*
 * The hand-over sweep of in-kernel HTTP/1 (docs/design/l7-in-kernel.md §2.7):
 * claims (bpf_map_lookup_and_delete_elem) each rf_l7_pending entry whose
 * request has had no response for handover_ns, and any other entry idle for
 * stale_ns (a response under way in a process that exited without close()).
 * *out: malloc'd records in the ring batch format (u32 size, u32 0, record,
 * padded to 8) as rf_l7_x_emit would send them, outcome REQ_ONLY (RESP_ONLY
 * or LOST as BPF would say). Count claimed, or -errno (-ENOENT: no such map).
 */
int rf_session_l7_claim(rf_session *s, uint64_t handover_ns, uint64_t stale_ns, void **out, size_t *out_len,
			rf_error *err);

#ifdef __cplusplus
}
#endif

#endif /* RINGFLOW_RF_CORE_H */
