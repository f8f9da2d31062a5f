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
#include <linux/fs.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/sched/signal.h>
#include <linux/tty.h>
#include <linux/tty_driver.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/rcupdate.h>

#include "rtcap_kmod.h"
#include "rtcap_compat.h"
#include "rtcap_consts.h"

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
 * Strings the new image's mm holds back to back between `start` and `end` (argv or the
 * environment), NUL-terminated and capped at RTCAP_PT_ARGV_MAX. `empty_is_fault`: an
 * empty argv means the mm could not be read, while an empty environment is legitimate.
 */
static void put_mm_strings(struct rtcap_rec *r, u8 *dst, unsigned long start,
			   unsigned long end, bool empty_is_fault)
{
	unsigned long len = end - start;

	if (len == 0 || len > (1UL << 30)) {
		if (empty_is_fault)
			put_fault(r);
		else
			param_done(r, 0);
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
 * After a successful exec the caller's pointers are gone with the old mm; the new
 * image's argv strings sit back to back between mm->arg_start and arg_end.
 */
static void put_mm_argv(struct rtcap_rec *r)
{
	struct mm_struct *mm = current->mm;
	u8 *dst = param_slot(r, RTCAP_PT_ARGV_MAX);

	if (!dst)
		return;
	if (!mm) {
		put_fault(r);
		return;
	}
	put_mm_strings(r, dst, READ_ONCE(mm->arg_start), READ_ONCE(mm->arg_end), true);
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

/* The new image's environment strings: exec copied them between env_start and env_end. */
static void put_mm_env(struct rtcap_rec *r, long ret)
{
	struct mm_struct *mm = current->mm;
	u8 *dst = param_slot(r, RTCAP_PT_ARGV_MAX);

	if (!dst)
		return;
	if (ret != 0) {
		param_done(r, 0);
		return;
	}
	if (!mm) {
		put_fault(r);
		return;
	}
	put_mm_strings(r, dst, READ_ONCE(mm->env_start), READ_ONCE(mm->env_end), false);
}

/* What the exec'd image's file says, read once per event under RCU. */
struct rtcap_exe_facts {
	u32 flags;
	u64 ino, ctime_ns, mtime_ns;
};

/* Falco's exe flags of `f` for the current task (see the exe_flags source). */
static u32 rtcap_exe_flags(struct file *f, struct inode *ino)
{
	const struct cred *cred = current_cred();
	unsigned long magic = ino->i_sb ? ino->i_sb->s_magic : 0;
	umode_t mode = READ_ONCE(ino->i_mode);
	u32 flags = 0;
	bool writable;

	/* writable as generic_permission() would judge a write: the class bit that
	 * applies (owner, group, other), or CAP_DAC_OVERRIDE */
	if (uid_eq(cred->fsuid, ino->i_uid))
		writable = mode & RTCAP_S_IWUSR;
	else if (gid_eq(cred->fsgid, ino->i_gid))
		writable = mode & RTCAP_S_IWGRP;
	else
		writable = mode & RTCAP_S_IWOTH;
	if (cap_raised(cred->cap_effective, CAP_DAC_OVERRIDE))
		writable = true;
	if (writable)
		flags |= RTCAP_EXE_WRITABLE;

	if (magic == RTCAP_OVERLAYFS_MAGIC) {
		/* struct ovl_inode is private to overlayfs; it embeds the vfs inode and
		 * keeps the upper dentry right after it, set iff there is an upper copy */
		struct dentry *upper = NULL;

		get_kernel_nofault(upper, (struct dentry **)((char *)ino + RTCAP_INODE_SIZE));
		flags |= upper ? RTCAP_EXE_UPPER_LAYER : RTCAP_EXE_LOWER_LAYER;
	} else if (magic == RTCAP_TMPFS_MAGIC || magic == RTCAP_HUGETLBFS_MAGIC) {
		const unsigned char *name = READ_ONCE(f->f_path.dentry->d_name.name);

		if (name && !strncmp(name, RTCAP_MEMFD_PREFIX, RTCAP_MEMFD_PREFIX_LEN))
			flags |= RTCAP_EXE_FROM_MEMFD;
	}
	return flags;
}

static void rtcap_exe_facts(struct rtcap_exe_facts *x, long ret)
{
	struct mm_struct *mm = current->mm;
	struct file *f;
	struct inode *ino;

	memset(x, 0, sizeof(*x));
	if (ret != 0 || !mm)
		return;
	rcu_read_lock();
	f = rcu_dereference(mm->exe_file);
	ino = f ? file_inode(f) : NULL;
	if (ino) {
		x->flags = rtcap_exe_flags(f, ino);
		x->ino = ino->i_ino;
		x->ctime_ns = (u64)RTCAP_INODE_CTIME_SEC(ino) * NSEC_PER_SEC +
			      (RTCAP_INODE_CTIME_NSEC(ino) & RTCAP_NSEC_MASK);
		x->mtime_ns = (u64)RTCAP_INODE_MTIME_SEC(ino) * NSEC_PER_SEC +
			      (RTCAP_INODE_MTIME_NSEC(ino) & RTCAP_NSEC_MASK);
	}
	rcu_read_unlock();
}

/*
 * Falco's tty number, new_encode_dev(MKDEV(major, minor_start + index)). The tty is
 * read without its lock (a hangup elsewhere may be detaching it; the module runs
 * with preemption off and may not sleep on PREEMPT_RT), so through nofault reads.
 */
static u32 rtcap_task_tty(void)
{
	struct tty_struct *tty = NULL;
	struct tty_driver *drv = NULL;
	int major = 0, minor_start = 0, index = 0;

	if (get_kernel_nofault(tty, &current->signal->tty) || !tty)
		return 0;
	if (get_kernel_nofault(drv, &tty->driver) || !drv ||
	    get_kernel_nofault(index, &tty->index) ||
	    get_kernel_nofault(major, &drv->major) ||
	    get_kernel_nofault(minor_start, &drv->minor_start))
		return 0;
	return new_encode_dev(MKDEV(major, minor_start + index));
}

static u32 rtcap_task_loginuid(void)
{
#ifdef CONFIG_AUDIT
	return from_kuid(&init_user_ns, audit_get_loginuid(current));
#else
	return RTCAP_LOGINUID_UNSET;
#endif
}

/*
 * The path of the new image's file (mm->exe_file) as /proc/<pid>/exe shows it: d_path()
 * resolves it from this task's root, appends " (deleted)" to an unlinked file and names
 * a memfd "/memfd:<name> (deleted)". The file is referenced while d_path() reads it.
 */
static void put_exe_path(struct rtcap_rec *r, long ret)
{
	struct mm_struct *mm = current->mm;
	struct file *f;
	char *p = NULL;

	if (!param_slot(r, RTCAP_PT_PATH_MAX))
		return;
	if (ret != 0) {
		param_done(r, 0);
		return;
	}
	f = mm ? rtcap_get_mm_exe_file(mm) : NULL;
	if (f) {
		p = d_path(&f->f_path, r->cpu->pathbuf, PATH_MAX);
		fput(f);
	}
	if (IS_ERR_OR_NULL(p)) {
		put_fault(r);
		return;
	}
	put_kernel_str(r, p, RTCAP_PT_PATH_MAX);
}

/* The exit params every exec event appends after its own (see events.yaml). */
static void put_exec_task_facts(struct rtcap_rec *r, long ret)
{
	const struct cred *cred = current_cred();
	struct rtcap_exe_facts x;

	rtcap_exe_facts(&x, ret);
	put_mm_env(r, ret);
	put_u32(r, x.flags);
	put_u64(r, x.ino);
	put_u64(r, x.ctime_ns);
	put_u64(r, x.mtime_ns);
	put_u64(r, RTCAP_CAP_U64(cred->cap_inheritable));
	put_u64(r, RTCAP_CAP_U64(cred->cap_permitted));
	put_u64(r, RTCAP_CAP_U64(cred->cap_effective));
	put_u32(r, task_tgid_vnr(current));
	put_u32(r, task_pid_vnr(current));
	put_u32(r, task_pgrp_vnr(current));
	put_u32(r, task_session_vnr(current));
	put_u32(r, rtcap_task_tty());
	put_u32(r, rtcap_task_loginuid());
	put_exe_path(r, ret);
}

/* The first bytes a transfer moved through user buffer `ubuf`: at most `snap`. */
static void put_io(struct rtcap_rec *r, unsigned long ubuf, long ret, u32 snap)
{
	u8 *dst = param_slot(r, snap);
	unsigned long n;

	if (!dst)
		return;
	if (ret <= 0 || !ubuf) {
		param_done(r, 0);
		return;
	}
	n = min_t(unsigned long, ret, snap);
	if (copy_from_user_nofault(dst, (const void __user *)ubuf, n)) {
		put_fault(r);
		return;
	}
	param_done(r, n);
}

/* As put_io, from the first iovec of the struct user_msghdr at `umsg`. */
static void put_io_msg(struct rtcap_rec *r, unsigned long umsg, long ret, u32 snap)
{
	unsigned long iov = 0;
	struct iovec first = { 0 };

	if (ret <= 0 || !umsg) {
		put_io(r, 0, ret, snap);
		return;
	}
	if (copy_from_user_nofault(&iov, (const void __user *)(umsg + RTCAP_MSGHDR_IOV),
				   sizeof(iov)) || !iov ||
	    copy_from_user_nofault(&first, (const void __user *)iov, sizeof(first))) {
		if (param_slot(r, 0))
			put_fault(r);
		return;
	}
	put_io(r, (unsigned long)first.iov_base, min_t(long, ret, first.iov_len), snap);
}

/* msg_name and msg_namelen of a struct user_msghdr, 0 if unreadable. */
static void rtcap_msg_name(unsigned long umsg, unsigned long *uaddr, unsigned long *ulen)
{
	struct user_msghdr m;

	*uaddr = 0;
	*ulen = 0;
	if (umsg && !copy_from_user_nofault(&m, (const void __user *)umsg, sizeof(m))) {
		*uaddr = (unsigned long)m.msg_name;
		*ulen = m.msg_namelen;
	}
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
 * is true for connect and sends (src = our end) and false for accept and receives
 * (src = the peer). A socket without a peer of its own (unconnected UDP) takes it
 * from the user sockaddr at `uaddr` when there is one (sendto's destination,
 * recvfrom's source as the kernel filled it in).
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
		if (!a_peer && !p_peer && uaddr) {
			struct sockaddr_in sin;

			if (!copy_from_user_nofault(&sin, (const void __user *)uaddr, sizeof(sin)) &&
			    sin.sin_family == AF_INET) {
				a_peer = sin.sin_addr.s_addr;
				p_peer = ntohs(sin.sin_port);
			}
		}
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

		if (!p_peer && uaddr) {
			struct sockaddr_in6 sin6;

			if (!copy_from_user_nofault(&sin6, (const void __user *)uaddr,
						    sizeof(sin6)) &&
			    sin6.sin6_family == AF_INET6) {
				a_peer = sin6.sin6_addr;
				p_peer = ntohs(sin6.sin6_port);
			}
		}
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

/* vpid, vtid: the emitting task's ids in its own pid namespace (clone's child side
 * in a container gets its namespace pid). */
static void put_task_vids(struct rtcap_rec *r)
{
	put_u32(r, task_tgid_vnr(current));
	put_u32(r, task_pid_vnr(current));
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
		put_exec_task_facts(r, ret);
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
		put_exec_task_facts(r, ret);
		break;
	case RTCAP_EVT_CLONE:
		put_u64(r, a[0]);
		put_task_vids(r);
		break;
	case RTCAP_EVT_CLONE3: {
		u64 flags = 0;	/* struct clone_args starts with the u64 flags */

		if (a[0] && !copy_from_user_nofault(&flags, (const void __user *)a[0],
						     sizeof(flags)))
			put_u64(r, flags);
		else if (param_slot(r, 0))
			put_fault(r);
		put_task_vids(r);
		break;
	}
	case RTCAP_EVT_FORK:
	case RTCAP_EVT_VFORK:
		put_task_vids(r);
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
	case RTCAP_EVT_LISTEN:
		put_fd(r, a[0]);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_SENDTO:
	case RTCAP_EVT_RECVFROM:
		put_fd(r, a[0]);
		put_u32(r, ret > 0 ? ret : 0);
		put_tuple(r, (int)a[0], type == RTCAP_EVT_SENDTO, ret >= 0 ? a[4] : 0,
			  type == RTCAP_EVT_SENDTO ? a[5] : 0);
		put_io(r, a[1], ret, RTCAP_SNAPLEN);
		break;
	case RTCAP_EVT_SENDMSG:
	case RTCAP_EVT_RECVMSG: {
		unsigned long uaddr = 0, ulen = 0;

		if (ret >= 0)
			rtcap_msg_name(a[1], &uaddr, &ulen);
		put_fd(r, a[0]);
		put_u32(r, ret > 0 ? ret : 0);
		put_tuple(r, (int)a[0], type == RTCAP_EVT_SENDMSG, uaddr, ulen);
		put_io_msg(r, a[1], ret, RTCAP_SNAPLEN);
		break;
	}
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
	case RTCAP_EVT_SETNS:
		put_fd(r, a[0]);
		put_u32(r, a[1]);
		break;
	case RTCAP_EVT_UNSHARE:
	case RTCAP_EVT_USERFAULTFD:
		put_u32(r, a[0]);
		break;
	case RTCAP_EVT_MEMFD_CREATE:
		put_user_str(r, a[0], RTCAP_PT_STRING_MAX);
		put_u32(r, a[1]);
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
