/* SPDX-License-Identifier: GPL-2.0 */
/* Internal interfaces between the rtcap module's device/ring code and its event fillers. */
#ifndef RTCAP_KMOD_H
#define RTCAP_KMOD_H

#include <linux/types.h>
#include <linux/ptrace.h>
#include <linux/limits.h>
#include <linux/ioctl.h>

#include "rtcap_schema.h"

/* Records are built in a per-CPU scratch area, then copied into the ring whole. */
#define RTCAP_SCRATCH_SIZE (RTCAP_ALIGN8(RTCAP_MAX_RECORD_SIZE) + 64)

/* Everything one CPU owns. Only that CPU writes it, with preemption disabled. */
struct rtcap_cpu {
	u64 head;		/* bytes ever produced; written by the producer only */
	u64 tail;		/* bytes ever consumed; written by read() only */
	u8 *ring;		/* rtcap_ring_size bytes, a power of two */
	u8 *scratch;		/* RTCAP_SCRATCH_SIZE */
	char *pathbuf;		/* PATH_MAX, for d_path() */
	struct rtcap_stats stats;
};

extern struct rtcap_cpu **rtcap_cpus;
extern u32 rtcap_ring_size;

/* Builds one record in the CPU's scratch area: header, length table, then params. */
struct rtcap_rec {
	struct rtcap_cpu *cpu;
	u8 *buf;
	u16 *lens;
	u32 off;
	u16 nparams;
	u16 idx;
	bool bug;		/* a filler broke an invariant: drop, count as a bug */
};

void rtcap_rec_begin(struct rtcap_rec *r, struct rtcap_cpu *cpu, u16 type, u16 nparams,
		     s32 syscall_nr, s64 ret);
/* Commits the record to the CPU's ring, or counts why it could not. */
void rtcap_rec_commit(struct rtcap_rec *r);

/* Fill the params of syscall event `type` from the syscall's registers. */
void rtcap_fill_syscall(struct rtcap_rec *r, u16 type, const unsigned long *args, long ret);
void rtcap_fill_procexit(struct rtcap_rec *r, struct task_struct *p);
u16 rtcap_event_nparams(u16 type);
bool rtcap_event_at_enter(u16 type);

#endif /* RTCAP_KMOD_H */
