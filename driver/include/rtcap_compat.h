/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences the rtcap module and probes meet between 5.10 and 7.x, in one
 * place. Their .c files never test LINUX_VERSION_CODE (or probe for a field) themselves.
 *
 * Included three ways: by the module (everything), by the per-kernel probe
 * (RTCAP_PROBE: field names only, no inline kernel code) and by the CO-RE probe
 * (RTCAP_CORE: the same facts as relocations the running kernel's BTF decides).
 *
 * Thresholds: where the change landed between two kernels we build for (6.12 and 7.2),
 * the version given is the mainline release that carried it; the Debian kernels we
 * test sit on both sides of it, so a wrong guess would fail the build, not run wrong.
 */
#ifndef RTCAP_COMPAT_H
#define RTCAP_COMPAT_H

/*
 * Multigrain timestamps (6.13) keep a flag in bit 31 of i_ctime_nsec (I_CTIME_QUERIED);
 * nanoseconds never reach bit 30, so masking is right on every kernel.
 */
#define RTCAP_NSEC_MASK 0x3fffffffU

#ifdef RTCAP_CORE
/*
 * struct inode's timestamps: timespec64 i_ctime/i_mtime up to 6.5, __i_ctime from 6.6,
 * __i_mtime from 6.7, and split i_{c,m}time_sec/_nsec since 6.11. The vmlinux.h we
 * compile against may be any of these, so each layout is a "flavor" (libbpf matches
 * the name before ___) and the running kernel's BTF says which fields exist.
 */
struct inode___rtcap_ts511 {
	struct timespec64 i_ctime;
	struct timespec64 i_mtime;
} __attribute__((preserve_access_index));
struct inode___rtcap_ts607 {
	struct timespec64 __i_ctime;
	struct timespec64 __i_mtime;
} __attribute__((preserve_access_index));
struct inode___rtcap_ts611 {
	long long i_ctime_sec;
	long long i_mtime_sec;
	unsigned int i_ctime_nsec;
	unsigned int i_mtime_nsec;
} __attribute__((preserve_access_index));
#define RTCAP_FIELD_EXISTS 2
#define rtcap_field_exists(f) __builtin_preserve_field_info(f, RTCAP_FIELD_EXISTS)

/* ctime (mtime = 0) or mtime (mtime = 1) of an inode, in ns since the epoch. */
static __rtcap_inline __u64 rtcap_inode_time_ns(struct inode *ino, int mtime)
{
	struct inode___rtcap_ts611 *t611 = (void *)ino;
	struct inode___rtcap_ts607 *t607 = (void *)ino;
	struct inode___rtcap_ts511 *t511 = (void *)ino;
	__s64 sec = 0;
	__u32 nsec = 0;

	if (rtcap_field_exists(t611->i_ctime_sec)) {
		sec = mtime ? rd(t611->i_mtime_sec) : rd(t611->i_ctime_sec);
		nsec = mtime ? rd(t611->i_mtime_nsec) : rd(t611->i_ctime_nsec);
	} else {
		struct timespec64 ts;

		if (mtime)
			ts = rtcap_field_exists(t607->__i_mtime) ? rd(t607->__i_mtime)
								 : rd(t511->i_mtime);
		else
			ts = rtcap_field_exists(t607->__i_ctime) ? rd(t607->__i_ctime)
								 : rd(t511->i_ctime);
		sec = ts.tv_sec;
		nsec = ts.tv_nsec;
	}
	return (__u64)sec * 1000000000ULL + (nsec & RTCAP_NSEC_MASK);
}

/* Size of struct inode on the running kernel (overlayfs keeps its upper dentry
 * right after the inode it embeds). */
#define RTCAP_TYPE_SIZE 1
#define RTCAP_INODE_SIZE __builtin_preserve_type_info(*(struct inode *)0, RTCAP_TYPE_SIZE)

#else /* module and per-kernel probe */

#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 8, 0)
#error "rtcap needs Linux 5.8 or later (copy_from_user_nofault)"
#endif

/*
 * struct inode's timestamps (see the CO-RE flavors above for the history). Plain
 * field expressions, so the module reads them directly and the probe through rd().
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
#define RTCAP_INODE_CTIME_SEC(i) ((i)->i_ctime_sec)
#define RTCAP_INODE_CTIME_NSEC(i) ((i)->i_ctime_nsec)
#define RTCAP_INODE_MTIME_SEC(i) ((i)->i_mtime_sec)
#define RTCAP_INODE_MTIME_NSEC(i) ((i)->i_mtime_nsec)
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
#define RTCAP_INODE_CTIME_SEC(i) ((i)->__i_ctime.tv_sec)
#define RTCAP_INODE_CTIME_NSEC(i) ((i)->__i_ctime.tv_nsec)
#define RTCAP_INODE_MTIME_SEC(i) ((i)->__i_mtime.tv_sec)
#define RTCAP_INODE_MTIME_NSEC(i) ((i)->__i_mtime.tv_nsec)
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
#define RTCAP_INODE_CTIME_SEC(i) ((i)->__i_ctime.tv_sec)
#define RTCAP_INODE_CTIME_NSEC(i) ((i)->__i_ctime.tv_nsec)
#define RTCAP_INODE_MTIME_SEC(i) ((i)->i_mtime.tv_sec)
#define RTCAP_INODE_MTIME_NSEC(i) ((i)->i_mtime.tv_nsec)
#else
#define RTCAP_INODE_CTIME_SEC(i) ((i)->i_ctime.tv_sec)
#define RTCAP_INODE_CTIME_NSEC(i) ((i)->i_ctime.tv_nsec)
#define RTCAP_INODE_MTIME_SEC(i) ((i)->i_mtime.tv_sec)
#define RTCAP_INODE_MTIME_NSEC(i) ((i)->i_mtime.tv_nsec)
#endif
#define RTCAP_INODE_SIZE sizeof(struct inode)

/* kernel_cap_t: u32 cap[2] up to 6.2, one u64 `val` since 6.3. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define RTCAP_CAP_U64(c) ((u64)(c).val)
#else
#define RTCAP_CAP_U64(c) (((u64)(c).cap[1] << 32) | (c).cap[0])
#endif

#ifndef RTCAP_PROBE
#include <linux/fs_struct.h>
#include <linux/seqlock.h>
#include <linux/sched.h>
#include <linux/mm_types.h>
#include <linux/fs.h>
#include <linux/rcupdate.h>

/*
 * sched_process_exit gained a `bool group_dead` argument in 6.16. A probe's prototype
 * must match the tracepoint's exactly (kCFI kernels check indirect calls).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define RTCAP_SCHED_EXIT_PROTO void *data, struct task_struct *p, bool group_dead
#else
#define RTCAP_SCHED_EXIT_PROTO void *data, struct task_struct *p
#endif

/*
 * fs_struct->seq: seqcount_spinlock_t up to 6.15, a seqlock_t since 6.16. We only
 * need its raw sequence number: the probes run with preemption disabled, and on
 * PREEMPT_RT (the rt-amd64 flavor) every locking reader of either type may take a
 * sleeping lock, so we read the counter ourselves and give up on an odd value.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define RTCAP_FS_SEQ(fs) (&(fs)->seq.seqcount.seqcount.sequence)
#else
#define RTCAP_FS_SEQ(fs) (&(fs)->seq.seqcount.sequence)
#endif

/*
 * A counted reference to mm->exe_file, or NULL: what get_mm_exe_file() does, which 5.10
 * exports to modules and the 6.x kernels no longer do. get_file_rcu() takes the file
 * (a macro over f_count) up to 6.6, and since 6.7 the address of the RCU pointer,
 * retrying while it changes. The caller drops the reference with fput(), which may be
 * called in atomic context (and is never the last one here: the mm holds its own).
 */
static inline struct file *rtcap_get_mm_exe_file(struct mm_struct *mm)
{
	struct file *f;

	rcu_read_lock();
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	f = get_file_rcu(&mm->exe_file);
#else
	f = rcu_dereference(mm->exe_file);
	if (f && !get_file_rcu(f))
		f = NULL;
#endif
	rcu_read_unlock();
	return f;
}

/* Snapshot current's cwd without taking fs->lock; false if a writer was active. */
static inline bool rtcap_snapshot_pwd(struct fs_struct *fs, struct path *out)
{
	unsigned int seq = READ_ONCE(*RTCAP_FS_SEQ(fs));

	if (seq & 1)
		return false;
	smp_rmb();
	*out = fs->pwd;
	smp_rmb();
	return READ_ONCE(*RTCAP_FS_SEQ(fs)) == seq;
}

#endif /* !RTCAP_PROBE */
#endif /* !RTCAP_CORE */

#endif /* RTCAP_COMPAT_H */
