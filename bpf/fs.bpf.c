/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * fs.bpf.c: file-system calls on regular files (RF_EV_FS_IO, struct
 * rf_fs_event in events.h; design: docs/design/fs.md, slice 1).
 *
 * Calls: read, write, pread64, pwrite64, readv, writev, preadv(2),
 * pwritev(2), fsync, fdatasync, ftruncate, fallocate, sync_file_range,
 * openat, openat2 (rename, unlink: a later slice).
 *
 * No kprobes or fentry on this kernel (shared/KERNEL.md): specific syscall
 * tracepoints only. The enter program resolves fd -> struct file and keeps
 * the call only when the task passes the filters and the file is a regular
 * one (S_ISREG of its inode): sockets, pipes and ttys return there. A kept
 * call waits in rf_fs_inflight (per thread) until its exit, which emits one
 * record with the latency, the cache estimate (design section 4) and the
 * file's path, walked in BPF from the struct file (design section 3).
 *
 * Nothing is lost silently: a full in-flight map, an unfinished call found
 * by the thread's next enter and a missing scratch buffer are counted in
 * rf_fs_lost (per-CPU u64 by enum rf_fs_lost_reason, read like
 * rf_block_lost); a full ring is rf_drops[RF_EV_FS_IO], as for every signal.
 */
#include "common.bpf.h"
#include "fs_filter.h"

#define S_IFMT   00170000
#define S_IFREG  0100000
/* open flags: asm-generic/fcntl.h (x86); arm64 moves O_DIRECT (its 040000 is O_DIRECTORY) */
#ifdef __TARGET_ARCH_arm64
#define RF_O_DIRECT 00200000
#else
#define RF_O_DIRECT 00040000
#endif
#define RF_O_DSYNC  00010000 /* O_SYNC = __O_SYNC | O_DSYNC: this bit covers both */

/* Walk bounds (design section 3); the collector may lower them (--fs-path-depth, --fs-path-bytes). */
const volatile __u32 rf_fs_path_depth = 32;
const volatile __u32 rf_fs_path_bytes = RF_FS_PATH_MAX;

/*
 * Steps of one walk: a step copies one component or crosses one mount. Past
 * the depth or byte bound the walk goes on without copying, only to count
 * the components dropped (path_dropped); a path deeper than this is still
 * flagged cut, its dropped count then being a lower bound (saturating).
 */
#define RF_FS_WALK_STEPS 160
#define RF_FS_NAME_MAX   255
/* The walk writes the path backwards from RF_FS_BUF_END; every write stays inside buf (checked for the verifier). */
#define RF_FS_BUF        1024
#define RF_FS_BUF_END    768
#define RF_FS_NOT_CROSSED 0xffffffff

enum rf_fs_lost_reason {
	RF_FS_LOST_INFLIGHT_FULL = 0, /* rf_fs_inflight full at enter: the call is not reported */
	/*
	 * A call whose exit was missed, leaving an entry no exit takes: found by
	 * the thread's next kept enter (overwritten) or by an exit that is not
	 * its own (another syscall or fd: dropped, never a record). The loader
	 * attaches programs one by one in the object's order; with each enter
	 * before its exit, a call entered in between left one (seen), so the
	 * exits come first below. Kept for whatever else could miss an exit.
	 */
	RF_FS_LOST_UNFINISHED    = 1,
	RF_FS_LOST_NO_SCRATCH    = 2, /* the per-CPU record buffer could not be looked up (never expected) */
	RF_FS_LOST_NR            = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_FS_LOST_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_fs_lost SEC(".maps");

/* A kept call between its enter and its exit. */
struct rf_fs_inflight {
	__u64 enter_ns;
	/*
	 * struct file *, valid at the exit: the syscall holds it, and a close by
	 * another thread during the call only drops the fd (fdget took a
	 * reference when the table is shared; the last fput's __fput runs as
	 * task work on the way back to user space, after sys_exit).
	 */
	__u64 file;
	__u64 offset;
	__u64 len;
	__u64 nvcsw;       /* task->nvcsw at enter */
	__u64 read_bytes;  /* task->ioac.read_bytes at enter */
	__u32 fd;
	__s32 nr;          /* the syscall's number: an exit takes only an entry of its own syscall and fd */
	__u8  op;
	__u8  _pad[7];
};

struct {
	/* HASH, not LRU: an entry must never be evicted by others' calls (design section 2) */
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* thread id */
	__type(value, struct rf_fs_inflight);
} rf_fs_inflight SEC(".maps");

/* One record under construction (the event then its path, contiguous) and the walk's state. */
struct rf_fs_scratch {
	struct rf_fs_event ev;
	char path[RF_FS_PATH_MAX];
	char buf[RF_FS_BUF];
	struct dentry *dentry;
	struct mount *mnt;
	struct dentry *root_dentry; /* the task's root (chroot, container): the walk stops there */
	struct vfsmount *root_mnt;
	__u64 pos;     /* the path so far is buf[pos, RF_FS_BUF_END) */
	__u32 depth;   /* bounds of this walk */
	__u32 bytes;
	__u32 comps;   /* components kept */
	__u32 dropped; /* components seen past the bounds */
	__u32 below;   /* path bytes below the first mount crossed, RF_FS_NOT_CROSSED before */
	__u8  cut;
	__u8  failed;
	__u8  done;
	__u8  _pad[1];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_fs_scratch);
} rf_fs_scratch SEC(".maps");

/*
 * Calls under --min-latency (rf_min_latency_ns), per enum rf_fs_op: not a
 * loss (the user asked for them to go), but counted so that "how many fast
 * calls" is never silent. Per-CPU u64, read by name like rf_fs_lost (the
 * collector's summed mapCounters); the design's per-(tgid, op, fs type)
 * counts and bytes (section 6) are a later slice.
 */
#define RF_FS_OP_SLOTS 16
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_FS_OP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} rf_fs_below SEC(".maps");

/*
 * Calls that failed with no file to report, per enum rf_fs_op: an open
 * that returned an error (-ENOENT, -EACCES...) opened nothing, so there is
 * no inode, dev or path walked in BPF to put in a record (design section 2's
 * dirfd-relative user string would be a path of another kind: not in the
 * schema). Counted, not emitted, errno not kept; per-CPU u64, read by name
 * like rf_fs_below. Not subject to --path/--fs (there is no file to test).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_FS_OP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} rf_fs_failed SEC(".maps");

static __always_inline void rf_fs_count_op(void *map, __u32 op)
{
	__u64 *n = bpf_map_lookup_elem(map, &op);
	if (n)
		*n += 1; /* per-CPU slot */
}

static __always_inline void rf_fs_count_lost(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&rf_fs_lost, &reason);
	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

/* The struct file of a regular-file fd of the current task, else NULL (sockets, pipes, ttys, bad fds). */
static __always_inline struct file *rf_fs_fd_regular(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file **fds, *file;
	umode_t mode;

	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	fds = fdt->fd;
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFREG)
		return NULL;
	return file;
}

static __always_inline __u64 rf_fs_read_bytes(struct task_struct *task)
{
	if (!bpf_core_field_exists(task->ioac))
		return 0;
	return BPF_CORE_READ(task, ioac.read_bytes);
}

/*
 * The call waits for its exit in rf_fs_inflight. fd is the syscall's first
 * argument (the exit checks it is its own call's); file is NULL for an open,
 * whose file is the returned fd's, resolved at its exit.
 */
static __always_inline void rf_fs_keep(struct trace_event_raw_sys_enter *ctx, struct task_struct *task, struct file *file,
				       __u8 op, __u64 len, __u64 offset)
{
	struct rf_fs_inflight in = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	long err;

	in.file = (__u64)file;
	in.offset = offset;
	in.len = len;
	in.nvcsw = task->nvcsw;
	in.read_bytes = rf_fs_read_bytes(task);
	in.fd = (__u32)ctx->args[0];
	in.nr = ctx->id;
	in.op = op;
	in.enter_ns = bpf_ktime_get_ns(); /* last: the latency is the call's, not this program's */
	err = bpf_map_update_elem(&rf_fs_inflight, &tid, &in, BPF_NOEXIST);
	if (err == -17 /* EEXIST: the thread's previous call never reached its exit */) {
		rf_fs_count_lost(RF_FS_LOST_UNFINISHED);
		err = bpf_map_update_elem(&rf_fs_inflight, &tid, &in, BPF_EXIST);
	}
	if (err)
		rf_fs_count_lost(RF_FS_LOST_INFLIGHT_FULL);
}

/* Enter of a call on an fd: filters, the S_ISREG gate, then the call waits for its exit. use_pos: offset = f_pos. */
static __always_inline int rf_fs_enter(struct trace_event_raw_sys_enter *ctx, __u8 op, __u64 len, __u64 offset, bool use_pos)
{
	struct task_struct *task;
	struct file *file;

	if (!rf_current_passes())
		return 0;
	task = bpf_get_current_task_btf();
	file = rf_fs_fd_regular(task, (__u32)ctx->args[0]);
	if (!file || !rf_fs_type_passes(file) || !rf_fs_path_passes(file)) /* --fs, --path (fs_filter.h) */
		return 0;
	rf_fs_keep(ctx, task, file, op, len, use_pos ? BPF_CORE_READ(file, f_pos) : offset);
	return 0;
}

/* Enter of an open: only the task's filters (the file exists at the exit, if at all). */
static __always_inline int rf_fs_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	if (rf_current_passes())
		rf_fs_keep(ctx, bpf_get_current_task_btf(), NULL, RF_FS_OPEN, 0, 0);
	return 0;
}

/* kfunc (6.2+): an untrusted pointer whose field loads the verifier turns into fault-safe direct loads */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/*
 * One step of the path walk (a bpf_loop callback): at a mount's root, cross
 * to its mount point in the parent mount; else prepend "/" + the dentry's
 * name and go up. Stops at the task's root or the namespace's root mount.
 * The dentry's and mount's fields are read by direct loads through
 * bpf_rdonly_cast, not one BPF_CORE_READ helper call each: a recorded call's
 * exit went from ~650-980 to ~490-630 ns (F4's scratch build, same run).
 */

static long rf_fs_walk_step(__u32 i, void *ctx)
{
	__u32 zero = 0;
	struct rf_fs_scratch *w = bpf_map_lookup_elem(&rf_fs_scratch, &zero);
	struct dentry *d, *parent, *mnt_root, *dd;
	struct mount *m, *mp, *mm;
	const unsigned char *name;
	__u64 len, off;

	if (!w)
		return 1;
	d = w->dentry;
	m = w->mnt;
	if (!d || !m) {
		w->failed = 1;
		return 1;
	}
	if (d == w->root_dentry && &m->mnt == w->root_mnt) {
		w->done = 1;
		return 1;
	}
	dd = bpf_rdonly_cast(d, bpf_core_type_id_kernel(struct dentry));
	mm = bpf_rdonly_cast(m, bpf_core_type_id_kernel(struct mount));
	mnt_root = mm->mnt.mnt_root;
	parent = dd->d_parent;
	mp = mm->mnt_parent;
	len = dd->d_name.len;
	name = dd->d_name.name;
	if (d == parent && d != mnt_root) {
		/*
		 * A disconnected dentry, its own parent but no mount's root: a
		 * memfd_create file, shmem the kernel set up. No tree above it:
		 * its name alone ("/memfd:x", as d_path gives it, without
		 * " (deleted)"), and the walk ends after it.
		 */
		w->done = 1;
		goto name;
	}
	if (d == mnt_root || d == parent) {
		if (!mp || mp == m) { /* the namespace's root mount */
			w->done = 1;
			return 1;
		}
		if (w->below == RF_FS_NOT_CROSSED)
			w->below = RF_FS_BUF_END - w->pos;
		w->dentry = mm->mnt_mountpoint;
		w->mnt = mp;
		return 0;
	}
name:
	w->dentry = parent;
	if (w->cut || w->comps >= w->depth || (RF_FS_BUF_END - w->pos) + len + 1 > w->bytes) {
		/* past a bound: the last components are kept, the ones above only counted */
		w->cut = 1;
		w->dropped++;
		return w->done ? 1 : 0; /* 1: that was the disconnected dentry's name, the last */
	}
	if (len > RF_FS_NAME_MAX || !name) {
		w->failed = 1;
		return 1;
	}
	off = w->pos - len;
	if (off < 1 || off > RF_FS_BUF - RF_FS_NAME_MAX - 1) { /* never, by the byte bound: for the verifier */
		w->failed = 1;
		return 1;
	}
	if (bpf_probe_read_kernel(&w->buf[off], len & RF_FS_NAME_MAX, name)) {
		w->failed = 1;
		return 1;
	}
	w->buf[off - 1] = '/';
	w->pos = off - 1;
	w->comps++;
	return w->done ? 1 : 0;
}

/* Walks the file's path into w->path; sets ev's path_len, mnt_len, path_dropped and path flags. */
static __always_inline void rf_fs_walk(struct rf_fs_scratch *w, struct file *file, struct task_struct *task)
{
	struct rf_fs_event *ev = &w->ev;
	struct vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
	__u64 plen;

	w->dentry = BPF_CORE_READ(file, f_path.dentry);
	w->mnt = (struct mount *)((void *)vm - bpf_core_field_offset(struct mount, mnt));
	w->root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	w->root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	w->pos = RF_FS_BUF_END;
	w->depth = rf_fs_path_depth;
	w->bytes = rf_fs_path_bytes < RF_FS_PATH_MAX ? rf_fs_path_bytes : RF_FS_PATH_MAX;
	w->comps = 0;
	w->dropped = 0;
	w->below = RF_FS_NOT_CROSSED;
	w->cut = 0;
	w->failed = 0;
	w->done = 0;
	if (!vm || !w->dentry) {
		w->failed = 1;
	} else {
		bpf_loop(RF_FS_WALK_STEPS, rf_fs_walk_step, NULL, 0);
		if (!w->done && !w->failed) { /* deeper than the walk's steps: cut, dropped a lower bound */
			w->cut = 1;
			w->dropped++;
		}
	}
	if (w->failed) {
		ev->flags |= RF_FS_F_PATH_FAILED;
		ev->path_len = 0;
		ev->mnt_len = 0;
		return;
	}
	plen = RF_FS_BUF_END - w->pos;
	if (plen == 0) { /* the root itself */
		w->path[0] = '/';
		plen = 1;
	} else {
		if (plen > RF_FS_PATH_MAX || w->pos > RF_FS_BUF_END) /* never: for the verifier */
			plen = 0;
		if (bpf_probe_read_kernel(w->path, plen & (RF_FS_BUF - 1), &w->buf[w->pos & (RF_FS_BUF - 1)])) {
			ev->flags |= RF_FS_F_PATH_FAILED;
			plen = 0;
		}
	}
	ev->path_len = plen;
	if (w->below == RF_FS_NOT_CROSSED)
		ev->mnt_len = w->cut ? 0 : 1; /* on the root mount: "/" (unknown when cut) */
	else if (plen > w->below)
		ev->mnt_len = plen - w->below;
	else
		ev->mnt_len = w->cut ? 0 : 1; /* mounted on "/" (or its prefix cut away) */
	if (w->cut) {
		ev->flags |= RF_FS_F_PATH_CUT;
		ev->path_dropped = w->dropped > 255 ? 255 : w->dropped;
	}
}

/* Takes the thread's kept call into *in, if there is one and it is this exit's own call; *now = its exit time. */
static __always_inline bool rf_fs_take(struct trace_event_raw_sys_exit *ctx, struct task_struct *task, struct rf_fs_inflight *in, __u64 *now)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rf_fs_inflight *inp = bpf_map_lookup_elem(&rf_fs_inflight, &tid);

	if (!inp)
		return false;
	*now = bpf_ktime_get_ns();
	*in = *inp;
	bpf_map_delete_elem(&rf_fs_inflight, &tid);
	/*
	 * Only this call's own entry: an entry left by a call whose exit was
	 * missed (RF_FS_LOST_UNFINISHED) must not become a record with another
	 * call's return (seen: a socket read's exit took a file write's entry). The syscall's number is the tracepoint's; its
	 * fd is read back from the registers the syscall was entered with.
	 */
	if (in->nr != ctx->id ||
	    in->fd != (__u32)PT_REGS_PARM1_CORE_SYSCALL((struct pt_regs *)bpf_task_pt_regs(task))) {
		rf_fs_count_lost(RF_FS_LOST_UNFINISHED);
		return false;
	}
	return true;
}

/* One record for a kept call on file (fd: the record's), unless it is under --min-latency. */
static __always_inline int rf_fs_emit(struct trace_event_raw_sys_exit *ctx, struct task_struct *task, struct rf_fs_inflight *inp,
				      struct file *file, __u32 fd, __u64 now)
{
	struct rf_fs_inflight in = *inp;
	long ret = ctx->ret;
	struct rf_fs_scratch *w;
	struct rf_fs_event *ev;
	struct inode *inode;
	__u64 storage = 0, size;
	__u32 zero = 0, fl;
	bool slept;

	if (now - in.enter_ns < rf_min_latency_ns) {
		/* under the threshold: counted, never walked nor emitted */
		rf_fs_count_op(&rf_fs_below, in.op);
		return 0;
	}
	w = bpf_map_lookup_elem(&rf_fs_scratch, &zero);
	if (!w) {
		rf_fs_count_lost(RF_FS_LOST_NO_SCRATCH);
		return 0;
	}
	ev = &w->ev;
	rf_fill_current(&ev->hdr, RF_EV_FS_IO, now);
	ev->latency_ns = now - in.enter_ns;
	ev->offset = in.offset;
	ev->len = in.len;
	ev->ret = ret;
	ev->fd = fd;
	ev->op = in.op;
	ev->flags = 0;
	ev->path_dropped = 0;

	/* the cache estimate (design section 4): storage reads first, then whether the call slept */
	slept = task->nvcsw != in.nvcsw;
	if (bpf_core_field_exists(task->ioac)) {
		storage = rf_fs_read_bytes(task) - in.read_bytes;
		ev->cache = storage ? RF_FS_BLOCKED_IO : slept ? RF_FS_BLOCKED_OTHER : RF_FS_CACHED;
	} else {
		ev->cache = RF_FS_CACHE_UNKNOWN;
	}
	ev->storage_bytes = storage;

	inode = BPF_CORE_READ(file, f_inode);
	ev->ino = BPF_CORE_READ(inode, i_ino);
	ev->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	__builtin_memset(ev->fs_type, 0, sizeof(ev->fs_type));
	bpf_probe_read_kernel_str(ev->fs_type, sizeof(ev->fs_type), BPF_CORE_READ(inode, i_sb, s_type, name));
	fl = BPF_CORE_READ(file, f_flags);
	if (fl & RF_O_DIRECT)
		ev->flags |= RF_FS_F_DIRECT;
	if (fl & RF_O_DSYNC)
		ev->flags |= RF_FS_F_SYNC;
	{
		/* d_unlinked(): unhashed and not a root */
		struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
		if (d && !BPF_CORE_READ(d, d_hash.pprev) && BPF_CORE_READ(d, d_parent) != d)
			ev->flags |= RF_FS_F_DELETED;
	}

	rf_fs_walk(w, file, task);

	size = sizeof(*ev) + ev->path_len;
	if (size > sizeof(*ev) + RF_FS_PATH_MAX) /* never: for the verifier */
		size = sizeof(*ev);
	if (bpf_ringbuf_output(&rf_events, ev, size, rf_wakeup_flags(size)))
		rf_count_drop(RF_EV_FS_IO);
	return 0;
}

/* Exit of a call on an fd: one record for a kept call. */
static __always_inline int rf_fs_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct rf_fs_inflight in;
	__u64 now;

	if (!rf_fs_take(ctx, task, &in, &now))
		return 0;
	return rf_fs_emit(ctx, task, &in, (struct file *)in.file, in.fd, now);
}

/*
 * Exit of an open: the file is the returned fd's, and gets the enter's
 * gates here (S_ISREG, --fs, --path): opens of directories, devices,
 * FIFOs are left out, uncounted, as other calls on them are. A failed open
 * opened no file: counted in rf_fs_failed, not emitted. The open's flags
 * (O_DIRECT, O_SYNC) are the file's f_flags, as for every record; O_CREAT
 * and O_TRUNC are not kept in f_flags by the kernel (not reported).
 */
static __always_inline int rf_fs_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct rf_fs_inflight in;
	struct file *file;
	long ret = ctx->ret;
	__u64 now;

	if (!rf_fs_take(ctx, task, &in, &now))
		return 0;
	if (ret < 0) {
		rf_fs_count_op(&rf_fs_failed, RF_FS_OPEN);
		return 0;
	}
	file = rf_fs_fd_regular(task, (__u32)ret);
	if (!file || !rf_fs_type_passes(file) || !rf_fs_path_passes(file))
		return 0;
	return rf_fs_emit(ctx, task, &in, file, (__u32)ret, now);
}

/*
 * ---- the syscalls (specific tracepoints, never raw_syscalls) ----
 *
 * Every exit is defined before every enter: the loader attaches programs in
 * the object's order, one by one, so each exit is live before its enter and
 * no call can be entered without its exit (RF_FS_LOST_UNFINISHED stays for
 * what else could leave one). Detaching goes in the same order; the entries
 * left then die with the session's maps.
 */

SEC("tracepoint/syscalls/sys_exit_read")
int rf_fs_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_write")
int rf_fs_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_pread64")
int rf_fs_exit_pread64(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_pwrite64")
int rf_fs_exit_pwrite64(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_fsync")
int rf_fs_exit_fsync(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_fdatasync")
int rf_fs_exit_fdatasync(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int rf_fs_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int rf_fs_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_preadv")
int rf_fs_exit_preadv(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_pwritev")
int rf_fs_exit_pwritev(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_preadv2")
int rf_fs_exit_preadv2(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_pwritev2")
int rf_fs_exit_pwritev2(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_ftruncate")
int rf_fs_exit_ftruncate(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_fallocate")
int rf_fs_exit_fallocate(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_sync_file_range")
int rf_fs_exit_sync_file_range(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rf_fs_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int rf_fs_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return rf_fs_exit_open(ctx);
}

/*
 * Vectored calls: len is 0 (the iovec sum is not read: the exit's return is
 * the bytes moved). preadv/pwritev's offset is pos_l (64-bit: pos_h is
 * shifted out by the kernel's pos_from_hilo); preadv2/pwritev2 take -1 as
 * "at the file position", which is then read from f_pos as for readv.
 */
SEC("tracepoint/syscalls/sys_enter_read")
int rf_fs_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_READ, ctx->args[2], 0, true);
}

SEC("tracepoint/syscalls/sys_enter_write")
int rf_fs_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_WRITE, ctx->args[2], 0, true);
}

SEC("tracepoint/syscalls/sys_enter_pread64")
int rf_fs_enter_pread64(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_PREAD, ctx->args[2], ctx->args[3], false);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int rf_fs_enter_pwrite64(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_PWRITE, ctx->args[2], ctx->args[3], false);
}

SEC("tracepoint/syscalls/sys_enter_fsync")
int rf_fs_enter_fsync(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_FSYNC, 0, 0, false);
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int rf_fs_enter_fdatasync(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_FDATASYNC, 0, 0, false);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int rf_fs_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_READV, 0, 0, true);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int rf_fs_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_WRITEV, 0, 0, true);
}

SEC("tracepoint/syscalls/sys_enter_preadv")
int rf_fs_enter_preadv(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_PREADV, 0, ctx->args[3], false);
}

SEC("tracepoint/syscalls/sys_enter_pwritev")
int rf_fs_enter_pwritev(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_PWRITEV, 0, ctx->args[3], false);
}

SEC("tracepoint/syscalls/sys_enter_preadv2")
int rf_fs_enter_preadv2(struct trace_event_raw_sys_enter *ctx)
{
	__s64 pos = (__s64)ctx->args[3];
	return rf_fs_enter(ctx, RF_FS_PREADV, 0, pos, pos == -1);
}

SEC("tracepoint/syscalls/sys_enter_pwritev2")
int rf_fs_enter_pwritev2(struct trace_event_raw_sys_enter *ctx)
{
	__s64 pos = (__s64)ctx->args[3];
	return rf_fs_enter(ctx, RF_FS_PWRITEV, 0, pos, pos == -1);
}

/*
 * Calls on an fd that move no bytes: len and offset are their arguments'.
 * ftruncate(fd, length): len = the new length, offset 0 (it has none).
 * fallocate(fd, mode, offset, len): the range (the mode is not kept).
 * sync_file_range(fd, offset, nbytes, flags): the range (nbytes 0 = to the
 * end of the file, as the caller passed it).
 */
SEC("tracepoint/syscalls/sys_enter_ftruncate")
int rf_fs_enter_ftruncate(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_FTRUNCATE, ctx->args[1], 0, false);
}

SEC("tracepoint/syscalls/sys_enter_fallocate")
int rf_fs_enter_fallocate(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_FALLOCATE, ctx->args[3], ctx->args[2], false);
}

SEC("tracepoint/syscalls/sys_enter_sync_file_range")
int rf_fs_enter_sync_file_range(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter(ctx, RF_FS_SYNC_FILE_RANGE, ctx->args[2], ctx->args[1], false);
}

/* openat(dirfd, path, flags, mode), openat2(dirfd, path, how, size): len and offset 0; the fd is the returned one. */
SEC("tracepoint/syscalls/sys_enter_openat")
int rf_fs_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter_open(ctx);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int rf_fs_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	return rf_fs_enter_open(ctx);
}
