/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF-side compatibility layer: the same probe source builds two ways.
 *
 *   RTCAP_CORE defined    CO-RE object: kernel types come from vmlinux.h (bpftool dump
 *                         of BTF) and every kernel field access is relocated by libbpf
 *                         at load time, so one object loads on any BTF kernel >= 5.8.
 *   RTCAP_CORE undefined  per-kernel object: kernel types come from that kernel's own
 *                         headers tree, so field offsets are fixed at compile time and
 *                         the object needs no BTF on the target.
 *
 * Helpers are declared here from the kernel's own enum bpf_func_id (present in both
 * vmlinux.h and uapi/linux/bpf.h) instead of libbpf's bpf_helpers.h, so the build
 * containers need clang and the kernel headers only.
 */
#ifndef RTCAP_BPF_H
#define RTCAP_BPF_H

#ifdef RTCAP_CORE
#include "vmlinux.h"
#else
#include <linux/types.h>
#include <uapi/linux/bpf.h>
#include <linux/sched.h>
#include <linux/fs_struct.h>
#include <linux/dcache.h>
#include <linux/mount.h>
#include <linux/fdtable.h>
#include <linux/mm_types.h>
#include <linux/net.h>
#include <net/sock.h>
#include <linux/fs.h>
#include <linux/cred.h>
#include <linux/pid.h>
#include <linux/sched/signal.h>
#include <linux/tty.h>
#include <linux/tty_driver.h>
#include <asm/ptrace.h>
/* rtcap_compat.h: field names only, none of the module's inline kernel code */
#define RTCAP_PROBE
#endif

#define SEC(name) __attribute__((section(name), used))
#define __rtcap_inline inline __attribute__((always_inline))

/* BTF-defined map declarations (what libbpf's __uint/__type expand to). */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) =
	(void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)BPF_FUNC_get_current_pid_tgid;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)BPF_FUNC_get_current_uid_gid;
static long (*bpf_get_current_comm)(void *buf, __u32 size) =
	(void *)BPF_FUNC_get_current_comm;
static __u64 (*bpf_get_current_task)(void) = (void *)BPF_FUNC_get_current_task;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)BPF_FUNC_get_current_cgroup_id;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)BPF_FUNC_get_smp_processor_id;
static __u64 (*bpf_ktime_get_boot_ns)(void) = (void *)BPF_FUNC_ktime_get_boot_ns;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_user;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_kernel;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_user_str;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) =
	(void *)BPF_FUNC_probe_read_kernel_str;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) =
	(void *)BPF_FUNC_ringbuf_reserve;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_submit;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)BPF_FUNC_ringbuf_query;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) =
	(void *)BPF_FUNC_ringbuf_output;

#ifdef RTCAP_CORE
/* Kernels >= 5.11 hand out current as a typed pointer that can be dereferenced
 * directly (exception-guarded loads, no helper call per field). Whether the running
 * kernel has the helper is a CO-RE relocation, so older kernels take the probe-read
 * path and the verifier never sees the unknown helper. */
static struct task_struct *(*bpf_get_current_task_btf)(void) =
	(void *)BPF_FUNC_get_current_task_btf;
#define RTCAP_ENUMVAL_EXISTS 0
#define rtcap_have_task_btf()                                                        \
	__builtin_preserve_enum_value(*(enum bpf_func_id *)BPF_FUNC_get_current_task_btf, \
				      RTCAP_ENUMVAL_EXISTS)
#endif

/*
 * rd(expr): read one kernel value. In CO-RE builds the address is computed with
 * __builtin_preserve_access_index, so libbpf rewrites the offsets to the running
 * kernel's layout; per-kernel builds use the offsets of the headers they compiled
 * against. A fault leaves the value zeroed, which every caller treats as "absent".
 */
#ifdef RTCAP_CORE
#define rtcap_addr(expr) __builtin_preserve_access_index(&(expr))
#else
#define rtcap_addr(expr) (&(expr))
#endif
#define rd(expr)                                                             \
	({                                                                   \
		__typeof__(expr) __rv;                                       \
		__builtin_memset((void *)&__rv, 0, sizeof(__rv));            \
		bpf_probe_read_kernel((void *)&__rv, sizeof(__rv), rtcap_addr(expr)); \
		__rv;                                                        \
	})
/* rd() of a pointer field declared `T *const` (qstr.name in 7.x kernels): a copy of
 * its type would be a const object written by the read, which clang 21 warns about. */
#define rd_ptr(expr)                                                         \
	({                                                                   \
		const void *__rp = 0;                                        \
		bpf_probe_read_kernel((void *)&__rp, sizeof(__rp), rtcap_addr(expr)); \
		__rp;                                                        \
	})

/* Kernel-version differences, as field macros (per-kernel) or relocations (CO-RE). */
#include "rtcap_compat.h"
#include "rtcap_consts.h"

/*
 * Tracepoint context and register access. The CO-RE object attaches as BTF raw
 * tracepoints (tp_btf), whose pt_regs argument is a typed kernel pointer the
 * verifier lets us dereference directly: no helper call on the hot path. Per-kernel
 * objects attach as plain raw tracepoints and must copy registers with a probe read.
 * Both contexts are an array of u64 tracepoint arguments.
 */
#ifdef RTCAP_CORE
#define RTCAP_TP(name) SEC("tp_btf/" name)
#define REG(regs, field) ((regs)->field)
#else
#define RTCAP_TP(name) SEC("raw_tracepoint/" name)
#define REG(regs, field) rd((regs)->field)
#endif

#if defined(__TARGET_ARCH_x86)
#define REG_SYSCALL_NR(r) REG(r, orig_ax)
#define REG_ARG0(r) REG(r, di)
#define REG_ARG1(r) REG(r, si)
#define REG_ARG2(r) REG(r, dx)
#define REG_ARG3(r) REG(r, r10)
#define REG_ARG4(r) REG(r, r8)
#define REG_ARG5(r) REG(r, r9)
/* An ia32 task's syscall numbers are another table; its code segment gives it away. */
#define RTCAP_USER64_CS 0x33
#define REG_IS_NATIVE(r) (REG(r, cs) == RTCAP_USER64_CS)
#elif defined(__TARGET_ARCH_arm64)
#define REG_SYSCALL_NR(r) REG(r, syscallno)
/* x0 holds the return value by the time sys_exit runs; the kernel keeps arg0 here. */
#define REG_ARG0(r) REG(r, orig_x0)
#define REG_ARG1(r) REG(r, regs[1])
#define REG_ARG2(r) REG(r, regs[2])
#define REG_ARG3(r) REG(r, regs[3])
#define REG_ARG4(r) REG(r, regs[4])
#define REG_ARG5(r) REG(r, regs[5])
#define REG_IS_NATIVE(r) (!(REG(r, pstate) & 0x10)) /* PSR_MODE32_BIT: AArch32 task */
#else
#error "define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/*
 * struct mount (fs/mount.h) is private to fs/ and absent from header packages. Its
 * first members have been, in this order, since 3.x: the hash node, the parent
 * mount, the mountpoint dentry, then the embedded vfsmount. CO-RE builds use the real
 * type from BTF instead.
 */
#ifdef RTCAP_CORE
#define rtcap_mount mount
#else
struct rtcap_mount {
	struct hlist_node mnt_hash;
	struct rtcap_mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};
#endif

/* Makes the compiler forget what it knows about x, so a bounds mask the verifier
 * needs is not optimised away as redundant. */
#define rtcap_barrier_var(x) __asm__ __volatile__("" : "+r"(x))

#define rtcap_container_of(ptr, type, member) \
	((type *)((char *)(ptr) - __builtin_offsetof(type, member)))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define rtcap_ntohs(x) __builtin_bswap16(x)
#else
#define rtcap_ntohs(x) (x)
#endif

#define RTCAP_AF_UNIX 1
#define RTCAP_AF_INET 2
#define RTCAP_AF_INET6 10
#define RTCAP_EINPROGRESS 115

#endif /* RTCAP_BPF_H */
