// SPDX-License-Identifier: GPL-2.0
/*
 * Event fillers: turn a syscall's registers (at sys_exit, or sys_enter for the events
 * the schema marks at-enter) into the params the schema lists for its event type.
 *
 * Every user-memory read uses the *_nofault accessors: the probes run with preemption
 * disabled, so a page that is not resident is reported as a fault (the param is left
 * empty and RTCAP_F_PARAM_FAULT is set) instead of being paged in.
 */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/mm_types.h>
#include <linux/uaccess.h>
#include <linux/cred.h>
#include <linux/cgroup.h>
#include <linux/dcache.h>
#include <linux/fs_struct.h>
#include <linux/net.h>
#include <linux/file.h>
#include <linux/socket.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/un.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>

#include "rtcap_kmod.h"
#include "rtcap_compat.h"

static const u8 rtcap_nparams[RTCAP_EVT_MAX] = {
#define RTCAP_NP(name, id, np, enter) [id] = np,
	RTCAP_EVENT_LIST(RTCAP_NP)
#undef RTCAP_NP
};

static const u8 rtcap_at_enter[RTCAP_EVT_MAX] = {
#define RTCAP_AE(name, id, np, enter) [id] = enter,
	RTCAP_EVENT_LIST(RTCAP_AE)
#undef RTCAP_AE
};

/* 0xff marks ids the schema does not define; a filter naming one is refused. */
u16 rtcap_event_nparams(u16 type)
{
	static const u8 known[RTCAP_EVT_MAX] = {
#define RTCAP_KN(name, id, np, enter) [id] = 1,
		RTCAP_EVENT_LIST(RTCAP_KN)
#undef RTCAP_KN
	};

	if (type >= RTCAP_EVT_MAX || !known[type])
		return 0xff;
	return rtcap_nparams[type];
}

bool rtcap_event_at_enter(u16 type)
{
	return type < RTCAP_EVT_MAX && rtcap_at_enter[type];
}

void rtcap_rec_begin(struct rtcap_rec *r, struct rtcap_cpu *cpu, u16 type, u16 nparams,
		     s32 syscall_nr, s64 ret)
{
	struct rtcap_event_hdr *h = (struct rtcap_event_hdr *)cpu->scratch;
	struct task_struct *task = current;
	const struct cred *cred = current_cred();

	r->cpu = cpu;
	r->buf = cpu->scratch;
	r->lens = (u16 *)(cpu->scratch + RTCAP_HDR_SIZE);
	r->off = RTCAP_HDR_SIZE + 2 * nparams;
	r->nparams = nparams;
	r->idx = 0;
	r->bug = false;

	h->ts = ktime_get_boottime_ns();
	h->ret = ret;
	h->len = 0;
	h->type = type;
	h->nparams = nparams;
	h->syscall_nr = syscall_nr;
	h->cpu = smp_processor_id();
	h->pid = task->tgid;
	h->tid = task->pid;
	h->uid = from_kuid_munged(&init_user_ns, cred->uid);
	h->gid = from_kgid_munged(&init_user_ns, cred->gid);
	h->flags = 0;
	memcpy(h->comm, task->comm, sizeof(h->comm));
	h->comm[sizeof(h->comm) - 1] = '\0';

	rcu_read_lock();
	h->ppid = rcu_dereference(task->real_parent)->tgid;
#ifdef CONFIG_CGROUPS
	h->cgroup_id = cgroup_id(task_dfl_cgroup(task));
#else
	h->cgroup_id = 0;
#endif
	rcu_read_unlock();
}

static inline struct rtcap_event_hdr *rec_hdr(struct rtcap_rec *r)
{
	return (struct rtcap_event_hdr *)r->buf;
}

/* Reserve room for the next param; NULL (and a bug) if the schema count is exceeded. */
static u8 *param_slot(struct rtcap_rec *r, u32 max_len)
{
	if (r->idx >= r->nparams || r->off + max_len > RTCAP_SCRATCH_SIZE) {
		r->bug = true;
		return NULL;
	}
	return r->buf + r->off;
}

static void param_done(struct rtcap_rec *r, u32 len)
{
	r->lens[r->idx++] = len;
	r->off += len;
}

static void put_fixed(struct rtcap_rec *r, const void *val, u32 size)
{
	u8 *dst = param_slot(r, size);

	if (!dst)
		return;
	memcpy(dst, val, size);
	param_done(r, size);
}

static void put_u32(struct rtcap_rec *r, u32 v) { put_fixed(r, &v, sizeof(v)); }
static void put_u64(struct rtcap_rec *r, u64 v) { put_fixed(r, &v, sizeof(v)); }
static void put_s64(struct rtcap_rec *r, s64 v) { put_fixed(r, &v, sizeof(v)); }
/* fds are C ints in the syscall ABI: sign-extend so AT_FDCWD reads -100. */
static void put_fd(struct rtcap_rec *r, unsigned long v) { put_s64(r, (s64)(int)v); }

static void put_fault(struct rtcap_rec *r)
{
	rec_hdr(r)->flags |= RTCAP_F_PARAM_FAULT;
	param_done(r, 0);
}

/*
 * strncpy_from_user_nofault() is not exported to modules, so: copy in small chunks that
 * never cross a page (a fault is per page, so a string ending just before an unmapped
 * page still reads), stopping at the NUL. Same contract as the kernel's: the length
 * including the NUL, `max` when cut (dst still NUL-terminated), or -EFAULT.
 */
static long rtcap_strncpy_user(char *dst, unsigned long uaddr, long max)
{
	long done = 0;

	while (done < max) {
		unsigned long addr = uaddr + done;
		long chunk = min_t(long, 64, max - done);
		char *nul;

		chunk = min_t(long, chunk, PAGE_SIZE - (addr & ~PAGE_MASK));
		if (copy_from_user_nofault(dst + done, (const void __user *)addr, chunk))
			return -EFAULT;
		nul = memchr(dst + done, '\0', chunk);
		if (nul)
			return nul - dst + 1;
		done += chunk;
	}
	dst[max - 1] = '\0';
	return max;
}

/* A NUL-terminated user string, capped at `max` bytes including the NUL. */
static void put_user_str(struct rtcap_rec *r, unsigned long uptr, u32 max)
{
	u8 *dst = param_slot(r, max);
	long n;

	if (!dst)
		return;
	if (!uptr) {
		put_fault(r);
		return;
	}
	n = rtcap_strncpy_user((char *)dst, uptr, max);
	if (n <= 0) {
		put_fault(r);
		return;
	}
	if (n >= max) {
		dst[max - 1] = '\0';
		n = max;
		rec_hdr(r)->flags |= RTCAP_F_TRUNCATED;
	}
	param_done(r, n);
}

static void put_kernel_str(struct rtcap_rec *r, const char *s, u32 max)
{
	u8 *dst = param_slot(r, max);
	size_t n;

	if (!dst)
		return;
	if (!s) {
		put_fault(r);
		return;
	}
	n = strnlen(s, max - 1);
	memcpy(dst, s, n);
	dst[n] = '\0';
	if (n == max - 1 && s[n] != '\0')
		rec_hdr(r)->flags |= RTCAP_F_TRUNCATED;
	param_done(r, n + 1);
}

static void put_user_bytes(struct rtcap_rec *r, unsigned long uptr, unsigned long len, u32 max)
{
	u8 *dst = param_slot(r, max);

	if (!dst)
		return;
	if (len > max) {
		len = max;
		rec_hdr(r)->flags |= RTCAP_F_TRUNCATED;
	}
	if (!uptr || copy_from_user_nofault(dst, (const void __user *)uptr, len)) {
		put_fault(r);
		return;
	}
	param_done(r, len);
}

/* argv from a user array of string pointers (the caller's, when execve failed). */
static void put_user_argv(struct rtcap_rec *r, unsigned long uargv)
{
	u8 *dst = param_slot(r, RTCAP_PT_ARGV_MAX);
	u32 used = 0;
	int i;

	if (!dst)
		return;
	if (!uargv) {
		param_done(r, 0);
		return;
	}
	for (i = 0; used < RTCAP_PT_ARGV_MAX; i++) {
		unsigned long p;
		long n;

		if (copy_from_user_nofault(&p, (const void __user *)(uargv + i * sizeof(p)),
					   sizeof(p))) {
			rec_hdr(r)->flags |= RTCAP_F_PARAM_FAULT;
			break;
		}
		if (!p)
			break;
		n = rtcap_strncpy_user((char *)dst + used, p, RTCAP_PT_ARGV_MAX - used);
		if (n <= 0) {
			rec_hdr(r)->flags |= RTCAP_F_PARAM_FAULT;
			break;
		}
		if (n >= RTCAP_PT_ARGV_MAX - used) {
			dst[RTCAP_PT_ARGV_MAX - 1] = '\0';
			used = RTCAP_PT_ARGV_MAX;
			rec_hdr(r)->flags |= RTCAP_F_TRUNCATED;
			break;
		}
		used += n;
	}
	param_done(r, used);
}

/*
 * After a successful exec the caller's pointers are gone with the old mm; the new
 * image's argv strings sit back to back between mm->arg_start and arg_end.
 */
static void put_mm_argv(struct rtcap_rec *r)
{
	struct mm_struct *mm = current->mm;
	u8 *dst = param_slot(r, RTCAP_PT_ARGV_MAX);
	unsigned long start, len;

	if (!dst)
		return;
	if (!mm) {
		put_fault(r);
		return;
	}
	start = READ_ONCE(mm->arg_start);
	len = READ_ONCE(mm->arg_end) - start;
	if (len == 0 || len > (1UL << 30)) {
		put_fault(r);
		return;
	}
	if (len > RTCAP_PT_ARGV_MAX) {
		len = RTCAP_PT_ARGV_MAX;
		rec_hdr(r)->flags |= RTCAP_F_TRUNCATED;
	}
	if (copy_from_user_nofault(dst, (const void __user *)start, len)) {
		put_fault(r);
		return;
	}
	dst[len - 1] = '\0';
	param_done(r, len);
}

/*
 * The exec'd filename as the caller passed it: exec copies it to the very top of the
 * new stack (AT_EXECFN), right after the environment strings, i.e. at mm->env_end.
 */
static void put_mm_execfn(struct rtcap_rec *r)
{
	struct mm_struct *mm = current->mm;

	if (!mm) {
		if (param_slot(r, 0))
			put_fault(r);
		return;
	}
	put_user_str(r, READ_ONCE(mm->env_end), RTCAP_PT_PATH_MAX);
}

static void put_cwd(struct rtcap_rec *r)
{
	struct fs_struct *fs = current->fs;
	struct path pwd;
	char *p = NULL;

	rcu_read_lock();
	if (fs && rtcap_snapshot_pwd(fs, &pwd))
		p = d_path(&pwd, r->cpu->pathbuf, PATH_MAX);
	rcu_read_unlock();
	if (IS_ERR_OR_NULL(p)) {
		if (param_slot(r, 0))
			put_fault(r);
		return;
	}
	put_kernel_str(r, p, RTCAP_PT_PATH_MAX);
}

/*
 * tuple: u8 family, then INET src4 sport2 dst4 dport2 / INET6 src16 sport2 dst16
 * dport2 / UNIX path. Addresses in network order, ports in host order. `local_first`
 * is true for connect (src = our end) and false for accept (src = the peer).
 */
static void put_tuple(struct rtcap_rec *r, long fd, bool local_first, unsigned long uaddr,
		      unsigned long ulen)
{
	u8 *dst = param_slot(r, RTCAP_PT_TUPLE_MAX);
	struct socket *sock;
	struct sock *sk;
	u32 len = 0;
	int err = 0;

	if (!dst)
		return;
	if (fd < 0) {
		put_fault(r);
		return;
	}
	sock = sockfd_lookup(fd, &err);
	if (!sock) {
		put_fault(r);
		return;
	}
	sk = sock->sk;
	if (!sk)
		goto out;
	dst[0] = sk->sk_family;
	len = 1;
	switch (sk->sk_family) {
	case AF_INET: {
		struct inet_sock *inet = inet_sk(sk);
		__be32 a_local = READ_ONCE(inet->inet_saddr), a_peer = READ_ONCE(inet->inet_daddr);
		u16 p_local = ntohs(READ_ONCE(inet->inet_sport));
		u16 p_peer = ntohs(READ_ONCE(inet->inet_dport));

		if (!a_local)
			a_local = READ_ONCE(inet->inet_rcv_saddr);
		memcpy(dst + 1, local_first ? &a_local : &a_peer, 4);
		memcpy(dst + 5, local_first ? &p_local : &p_peer, 2);
		memcpy(dst + 7, local_first ? &a_peer : &a_local, 4);
		memcpy(dst + 11, local_first ? &p_peer : &p_local, 2);
		len = 13;
		break;
	}
#if IS_ENABLED(CONFIG_IPV6)
	case AF_INET6: {
		struct inet_sock *inet = inet_sk(sk);
		struct in6_addr a_local = sk->sk_v6_rcv_saddr, a_peer = sk->sk_v6_daddr;
		u16 p_local = ntohs(READ_ONCE(inet->inet_sport));
		u16 p_peer = ntohs(READ_ONCE(inet->inet_dport));

		memcpy(dst + 1, local_first ? &a_local : &a_peer, 16);
		memcpy(dst + 17, local_first ? &p_local : &p_peer, 2);
		memcpy(dst + 19, local_first ? &a_peer : &a_local, 16);
		memcpy(dst + 35, local_first ? &p_peer : &p_local, 2);
		len = 37;
		break;
	}
#endif
	case AF_UNIX: {
		/* The peer's path is the one the caller named; sun_path follows sun_family. */
		unsigned long off = offsetof(struct sockaddr_un, sun_path);
		long n;

		if (uaddr && ulen > off) {
			n = rtcap_strncpy_user((char *)dst + 1, uaddr + off,
					       min_t(unsigned long, ulen - off,
						     RTCAP_PT_TUPLE_MAX - 1));
			if (n > 0)
				len = 1 + n;
		}
		break;
	}
	default:
		break;
	}
out:
	sockfd_put(sock);
	param_done(r, len);
}

void rtcap_fill_syscall(struct rtcap_rec *r, u16 type, const unsigned long *a, long ret)
{
	switch (type) {
	case RTCAP_EVT_GENERIC: {
		int i;

		for (i = 0; i < 6; i++)
			put_u64(r, a[i]);
		break;
	}
	case RTCAP_EVT_EXECVE:
		if (ret == 0) {
			put_mm_execfn(r);
			put_mm_argv(r);
		} else {
			put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
			put_user_argv(r, a[1]);
		}
		put_cwd(r);
		break;
	case RTCAP_EVT_EXECVEAT:
		put_fd(r, a[0]);
		if (ret == 0) {
			put_mm_execfn(r);
			put_mm_argv(r);
		} else {
			put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
			put_user_argv(r, a[2]);
		}
		put_cwd(r);
		put_u32(r, a[4]);
		break;
	case RTCAP_EVT_CLONE:
		put_u64(r, a[0]);
		break;
	case RTCAP_EVT_CLONE3: {
		u64 flags = 0;	/* struct clone_args starts with the u64 flags */

		if (a[0] && !copy_from_user_nofault(&flags, (const void __user *)a[0],
						     sizeof(flags)))
			put_u64(r, flags);
		else if (param_slot(r, 0))
			put_fault(r);
		break;
	}
	case RTCAP_EVT_FORK:
	case RTCAP_EVT_VFORK:
		break;
	case RTCAP_EVT_EXIT:
		put_s64(r, (s64)(int)a[0]);
		break;
	case RTCAP_EVT_OPEN:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_u32(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_OPENAT:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_u32(r, a[2]);
		put_u32(r, a[3]);
		break;
	case RTCAP_EVT_OPENAT2: {
		u64 how[3] = { 0, 0, 0 };	/* struct open_how: flags, mode, resolve */
		bool ok = a[2] && a[3] >= sizeof(how) &&
			  !copy_from_user_nofault(how, (const void __user *)a[2], sizeof(how));

		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		if (!ok)
			rec_hdr(r)->flags |= RTCAP_F_PARAM_FAULT;
		put_u64(r, how[0]);
		put_u64(r, how[1]);
		put_u64(r, how[2]);
		break;
	}
	case RTCAP_EVT_CREAT:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_CLOSE:
	case RTCAP_EVT_DUP:
	case RTCAP_EVT_FCHDIR:
		put_fd(r, a[0]);
		break;
	case RTCAP_EVT_DUP2:
		put_fd(r, a[0]);
		put_fd(r, a[1]);
		break;
	case RTCAP_EVT_DUP3:
		put_fd(r, a[0]);
		put_fd(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_CHDIR:
	case RTCAP_EVT_UNLINK:
	case RTCAP_EVT_RMDIR:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		break;
	case RTCAP_EVT_UNLINKAT:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_RENAME:
	case RTCAP_EVT_SYMLINK:
	case RTCAP_EVT_LINK:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		break;
	case RTCAP_EVT_RENAMEAT:
	case RTCAP_EVT_RENAMEAT2:
	case RTCAP_EVT_LINKAT:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_fd(r, a[2]);
		put_user_str(r, a[3], RTCAP_PT_PATH_MAX);
		if (type != RTCAP_EVT_RENAMEAT)
			put_u32(r, a[4]);
		break;
	case RTCAP_EVT_MKDIR:
	case RTCAP_EVT_CHMOD:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_MKDIRAT:
	case RTCAP_EVT_FCHMODAT:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_FCHMOD:
		put_fd(r, a[0]);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_CHOWN:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_u32(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_FCHOWN:
		put_fd(r, a[0]);
		put_u32(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_FCHOWNAT:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_u32(r, a[2]);
		put_u32(r, a[3]);
		put_u32(r, a[4]);
		break;
	case RTCAP_EVT_SYMLINKAT:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_fd(r, a[1]);
		put_user_str(r, a[2], RTCAP_PT_PATH_MAX);
		break;
	case RTCAP_EVT_SOCKET:
		put_u32(r, a[0]);
		put_u32(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_CONNECT:
		put_fd(r, a[0]);
		put_tuple(r, (int)a[0], true, a[1], a[2]);
		put_user_bytes(r, a[1], a[2], RTCAP_PT_SOCKADDR_MAX);
		break;
	case RTCAP_EVT_ACCEPT:
	case RTCAP_EVT_ACCEPT4:
		put_tuple(r, ret, false, 0, 0);
		if (type == RTCAP_EVT_ACCEPT4)
			put_u32(r, a[3]);
		break;
	case RTCAP_EVT_SETUID:
	case RTCAP_EVT_SETGID:
		put_u32(r, a[0]);
		break;
	case RTCAP_EVT_SETREUID:
	case RTCAP_EVT_SETREGID:
		put_u32(r, a[0]);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_SETRESUID:
	case RTCAP_EVT_SETRESGID:
		put_u32(r, a[0]);
		put_u32(r, a[1]);
		put_u32(r, a[2]);
		break;
	case RTCAP_EVT_PTRACE:
		put_u32(r, a[0]);
		put_s64(r, (s64)(int)a[1]);
		put_u64(r, a[2]);
		put_u64(r, a[3]);
		break;
	case RTCAP_EVT_MOUNT:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_user_str(r, a[1], RTCAP_PT_PATH_MAX);
		put_user_str(r, a[2], RTCAP_PT_STRING_MAX);
		put_u64(r, a[3]);
		break;
	case RTCAP_EVT_UMOUNT2:
		put_user_str(r, a[0], RTCAP_PT_PATH_MAX);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_BPF:
		put_s64(r, (s64)(int)a[0]);
		break;
	case RTCAP_EVT_INIT_MODULE:
		put_u64(r, a[1]);
		put_user_str(r, a[2], RTCAP_PT_STRING_MAX);
		break;
	case RTCAP_EVT_FINIT_MODULE:
		put_fd(r, a[0]);
		put_user_str(r, a[1], RTCAP_PT_STRING_MAX);
		put_u32(r, a[2]);
		break;
	default:
		r->bug = true;
		break;
	}
}

void rtcap_fill_procexit(struct rtcap_rec *r, struct task_struct *p)
{
	int code = p->exit_code;

	put_s64(r, code);
	put_u32(r, code & 0x7f);
	put_u32(r, (code & 0x80) ? 1 : 0);
}
