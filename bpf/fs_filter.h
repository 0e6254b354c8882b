/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * fs_filter.h: the fs signal's own in-kernel filters (docs/design/fs.md
 * section 5), applied at enter to a regular file of a passing task, before
 * the call is kept (so a filtered call costs no in-flight entry, no walk).
 *
 *   --fs TYPE     rf_fs_types: s_type->name, up to RF_FS_MAX_TYPES of them
 *   --path DIR    rf_fs_prefixes: (s_dev, i_ino) of each directory, resolved
 *                 by the collector at start (realpath + stat; dev in the
 *                 kernel's encoding, major << 20 | minor)
 *
 * "Under DIR" is "DIR's inode is an ancestor of the file's dentry": the
 * walk goes up d_parent to the file system's root, then crosses to the
 * mount point in the parent mount, and so on up to the namespace's root
 * mount. Whatever path reached the file (a symlink resolved at start, a bind
 * mount, a relative openat dirfd) its dentry's ancestors are the same. Going
 * up to the file system's root, not just the mount's, also finds DIR above
 * a bind mount of one of its subdirectories.
 *
 * Globals, not maps: the set is fixed for the session, and the loader
 * writes .rodata by name (no map-update API in the addon).
 */
#ifndef RF_FS_FILTER_H
#define RF_FS_FILTER_H

#define RF_FS_MAX_TYPES    8
#define RF_FS_MAX_PREFIXES 64
#define RF_FS_ANC_STEPS    160 /* ancestors looked at: a deeper file is not "under" a prefix above that (not expected) */

struct rf_fs_prefix {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

const volatile __u32 rf_fs_types_n = 0;                          /* 0 = every fs type */
const volatile __u64 rf_fs_types[RF_FS_MAX_TYPES][2] = {};        /* names, NUL-padded to 16 bytes */
const volatile __u32 rf_fs_prefixes_n = 0;                       /* 0 = every path */
const volatile struct rf_fs_prefix rf_fs_prefixes[RF_FS_MAX_PREFIXES] = {};

static __always_inline bool rf_fs_type_passes(struct file *file)
{
	__u64 name[2] = {};
	__u32 i;

	if (!rf_fs_types_n)
		return true;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_inode, i_sb, s_type, name));
	for (i = 0; i < RF_FS_MAX_TYPES; i++) {
		if (i >= rf_fs_types_n)
			break;
		if (name[0] == rf_fs_types[i][0] && name[1] == rf_fs_types[i][1])
			return true;
	}
	return false;
}

struct rf_fs_anc {
	struct dentry *d;
	struct mount *m;
	__u8 hit;
};

static __always_inline bool rf_fs_is_prefix(__u32 dev, __u64 ino)
{
	__u32 j;

	for (j = 0; j < RF_FS_MAX_PREFIXES; j++) {
		if (j >= rf_fs_prefixes_n)
			break;
		if (rf_fs_prefixes[j].ino == ino && rf_fs_prefixes[j].dev == dev)
			return true;
	}
	return false;
}

/* One ancestor (a bpf_loop callback): checked, then up one dentry, or across to the mount point at a file system's root. */
static long rf_fs_anc_step(__u32 i, void *ctx)
{
	struct rf_fs_anc *a = ctx;
	struct dentry *d = a->d, *parent;
	struct mount *m = a->m, *mp; /* locals: BPF_CORE_READ(a->m, ...) would relocate a's own field */

	if (!d || !m)
		return 1;
	if (rf_fs_is_prefix(BPF_CORE_READ(d, d_sb, s_dev), BPF_CORE_READ(d, d_inode, i_ino))) {
		a->hit = 1;
		return 1;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (parent && parent != d) {
		a->d = parent;
		return 0;
	}
	mp = BPF_CORE_READ(m, mnt_parent);
	if (!mp || mp == m) /* the namespace's root mount */
		return 1;
	a->d = BPF_CORE_READ(m, mnt_mountpoint);
	a->m = mp;
	return 0;
}

static __always_inline bool rf_fs_path_passes(struct file *file)
{
	struct rf_fs_anc a = {};
	struct vfsmount *vm;

	if (!rf_fs_prefixes_n)
		return true;
	vm = BPF_CORE_READ(file, f_path.mnt);
	a.d = BPF_CORE_READ(file, f_path.dentry);
	a.m = vm ? (struct mount *)((void *)vm - bpf_core_field_offset(struct mount, mnt)) : NULL;
	bpf_loop(RF_FS_ANC_STEPS, rf_fs_anc_step, &a, 0);
	return a.hit;
}

#endif /* RF_FS_FILTER_H */
