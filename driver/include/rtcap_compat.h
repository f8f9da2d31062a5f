/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences the rtcap module meets between 5.10 and 7.x, in one place.
 * The module's .c files never test LINUX_VERSION_CODE themselves.
 *
 * Thresholds: where the change landed between two kernels we build for (6.12 and 7.2),
 * the version given is the mainline release that carried it; the Debian kernels we
 * test sit on both sides of it, so a wrong guess would fail the build, not run wrong.
 */
#ifndef RTCAP_COMPAT_H
#define RTCAP_COMPAT_H

#include <linux/version.h>
#include <linux/fs_struct.h>
#include <linux/seqlock.h>
#include <linux/sched.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 8, 0)
#error "rtcap needs Linux 5.8 or later (copy_from_user_nofault)"
#endif

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

#endif /* RTCAP_COMPAT_H */
