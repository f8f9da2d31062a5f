/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel constants the module and both probes need, spelled out once: the CO-RE probe
 * sees no kernel headers (vmlinux.h has types, not #defines), and these values are
 * ABI, stable across every kernel we support.
 */
#ifndef RTCAP_CONSTS_H
#define RTCAP_CONSTS_H

/* Falco's exe flags (PPM_EXE_* in falcosecurity/libs), the `flags` param of execve and
 * execveat; the bits are documented with the exe_flags source in events.yaml. */
#define RTCAP_EXE_WRITABLE 1
#define RTCAP_EXE_UPPER_LAYER 2
#define RTCAP_EXE_FROM_MEMFD 4
#define RTCAP_EXE_LOWER_LAYER 8

/* A memfd's dentry name is "memfd:<name>" (mm/memfd.c). */
#define RTCAP_MEMFD_PREFIX "memfd:"
#define RTCAP_MEMFD_PREFIX_LEN 6

/* super block magics (uapi/linux/magic.h) */
#define RTCAP_TMPFS_MAGIC 0x01021994
#define RTCAP_HUGETLBFS_MAGIC 0x958458f6
#define RTCAP_OVERLAYFS_MAGIC 0x794c7630

/* mode bits and the capability that overrides them (uapi/linux/stat.h, capability.h) */
#define RTCAP_S_IWUSR 00200
#define RTCAP_S_IWGRP 00020
#define RTCAP_S_IWOTH 00002
#define RTCAP_CAP_DAC_OVERRIDE 1

/* enum pid_type: the pid of a process group and of a session in signal->pids[] */
#define RTCAP_PIDTYPE_PGID 2
#define RTCAP_PIDTYPE_SID 3

/* The unset audit loginuid, (uid_t)-1 */
#define RTCAP_LOGINUID_UNSET 0xffffffffU

/* offsets in struct user_msghdr and struct iovec (64-bit ABI) */
#define RTCAP_MSGHDR_NAME 0
#define RTCAP_MSGHDR_IOV 16
#define RTCAP_IOVEC_BASE 0
#define RTCAP_IOVEC_LEN 8

#endif /* RTCAP_CONSTS_H */
