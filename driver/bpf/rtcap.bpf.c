// SPDX-License-Identifier: GPL-2.0
/*
 * rtcap eBPF probe: one event per syscall, emitted at sys_exit with its arguments and
 * return value, in the record layout of rtcap_schema.h. Built as the CO-RE object and
 * as per-kernel objects from this one file (see rtcap_bpf.h).
 *
 * Hot path, in order: syscall number -> filter byte (a global, no helper call) -> out
 * if not captured. Everything else happens only for captured syscalls.
 *
 * Records are staged per CPU and handed to the ring buffer several at a time: one ring
 * record holds a batch of 8-byte aligned rtcap records (the stream layout of
 * rtcap_schema.h). Each ring reserve/commit takes the ring's spinlock and costs about
 * as much as filling a record, so batching pays it once per batch. Fixed-size records
 * are written straight into the stage; variable-size ones are assembled in the scratch
 * area and copied in (or, if larger than a batch, output on their own after the stage
 * is flushed, so a CPU's records stay in order).
 *
 * Latency stays bounded: a batch goes out when full, when its first record is older
 * than batch_age_us at the next record, and on a quiet CPU when userspace runs
 * rtcap_flush there (BPF_PROG_TEST_RUN on that CPU) for a batch it sees waiting.
 */
#include "rtcap_bpf.h"
#include "rtcap_schema.h"

char LICENSE[] SEC("license") = "GPL";

/* Its own section so the loader can read it at offset 0 and refuse a stale probe. */
const volatile __u64 rtcap_schema_hash SEC(".rodata.rtcap_meta") = RTCAP_SCHEMA_HASH;

/*
 * Control block: a global, so reading it costs a load and no helper call; userspace
 * rewrites it whole (a map update of this data section) whenever a setting changes.
 * The filter comes first so the hot-path lookup is one load at a constant base.
 */
struct rtcap_ctl {
	struct rtcap_filter filter;
	__u32 capture;      /* 0 = emit nothing (filtered syscalls are still counted) */
	__u32 ignore_tgid;  /* the consumer's own tgid, 0 = none */
	__u32 wakeup_mask;  /* 0 = the kernel's adaptive wakeups; else see wakeup_flags() */
	__u32 procexit;     /* emit procexit from sched_process_exit */
	__u32 count_filtered; /* count filtered-out syscalls in n_filtered */
	__u32 wakeup_bytes; /* wake the consumer once this much data is waiting */
	__u32 batch_bytes;  /* flush a CPU's stage past this many bytes; 0 = every record */
	__u32 batch_age_us; /* flush at the next record once the oldest waited this long */
};
struct rtcap_ctl rtcap_ctl SEC(".data.rtcap_ctl") = {
	.capture = 0,
	.count_filtered = 1,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* the loader sets the real size */
} rtcap_ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rtcap_stats);
} rtcap_stats_map SEC(".maps");

/*
 * Scratch for variable-size records. Offsets are masked to SCRATCH_HALF - 1 and no
 * single write exceeds RTCAP_PT_*_MAX (4 KiB), so every write stays inside the value:
 * that is what lets the verifier accept variable offsets. Indexed by CPU; the loader
 * sizes max_entries to the possible CPUs.
 *
 * The running offset and flags of a variable record live here too, not on the stack:
 * the verifier does not track map memory, so after each param every path continues
 * from the same "unknown but masked" offset and the paths prune into one. Kept on the
 * stack, each string's possible lengths would multiply with the next param's.
 */
#define SCRATCH_SIZE 65536
#define SCRATCH_HALF 32768
#define OFF(x) ((x) & (SCRATCH_HALF - 1))
#define PATH_MAX_DEPTH 40
#define DELETED_LEN 10 /* " (deleted)" */
struct rtcap_scratch {
	char buf[SCRATCH_SIZE];
	__u64 names[64]; /* path walk: dentry name per level, leaf first */
	__u32 off;
	__u32 flags;
	__u32 depth;
	__u32 used;
	__u32 deleted;
	__u32 pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct rtcap_scratch);
} rtcap_scratch_map SEC(".maps");

_Static_assert(RTCAP_MAX_RECORD_SIZE < SCRATCH_HALF, "scratch too small for a record");

/*
 * Per-CPU stage of the batch being collected. Userspace maps this array
 * (BPF_F_MMAPABLE) to see which CPUs hold a batch and since when, without a syscall;
 * the leading fields are read there at fixed offsets (runtime/driver/probe.py).
 * Appends start below STAGE_HALF and are smaller than STAGE_HALF, so masked offsets
 * keep every write inside buf. `busy` is set while a program works on the stage: the
 * flush program may interrupt one on the same CPU (it runs from an IPI) and must then
 * leave the stage alone.
 */
#define STAGE_HALF 4096
#define STAGE_SLOT 256 /* room kept for the next fixed-size record */
struct rtcap_stage {
	__u64 first_ts;   /* ts of the oldest staged record */
	__u32 pend;       /* staged bytes, 8-aligned, < STAGE_HALF */
	__u32 nevts;      /* staged records */
	__u32 busy;
	__u32 since_wake; /* records output since the consumer was last woken */
	__u64 reserved[5];
	char buf[2 * STAGE_HALF];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256); /* the loader sets the possible CPUs */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct rtcap_stage);
} rtcap_stage_map SEC(".maps");

_Static_assert(__builtin_offsetof(struct rtcap_stage, buf) == 64, "stage header");
_Static_assert(RTCAP_EVT_GENERIC_MAX_SIZE + 8 <= STAGE_SLOT, "fixed records fit a slot");
_Static_assert(RTCAP_PT_PATH_MAX <= SCRATCH_SIZE - SCRATCH_HALF, "scratch tail");
_Static_assert(PATH_MAX_DEPTH <= 64, "names[] too small");

#define ARGV_MAX_ARGS 64
#define NAME_CAP 256

/* Everything a param source may need, gathered once per event. */
struct rtcap_ctx {
	__u64 a[6];
	__s64 ret;
	__u64 pid_tgid;
	struct rtcap_stats *st;
	struct rtcap_stage *stg;
};

/* rd() must not see our own structs in its access chain (CO-RE would try to relocate
 * them), so the task pointer is handed over through a call. Fetched where needed: the
 * hot path (fixed-size events) reads the task through the BTF pointer instead. */
static __rtcap_inline struct task_struct *TASK(struct rtcap_ctx *c __attribute__((unused)))
{
	return (struct task_struct *)bpf_get_current_task();
}

/*
 * A record being written. Fixed-size events go straight into a ring reservation and
 * keep their offset in `off`: a compile-time constant on every path once inlined, so
 * even old verifiers (which lose 32-bit values spilled to the stack) see exact
 * bounds. Variable-size events keep offset and flags in the scratch map (see struct
 * rtcap_scratch). `var` is a constant at every call site; nothing here takes the
 * address of a field, so the compiler keeps the struct in registers.
 */
struct rtcap_wr {
	char *b;
	struct rtcap_scratch *s;
	__u64 off;
	__u32 flags;
	__u32 i;
	__u32 cpu;
	int var;
};

static __rtcap_inline __u32 cur(struct rtcap_wr *w)
{
	/* volatile: the compiler must not carry the value forward in a register, or
	 * the verifier would again track every possible offset */
	if (w->var)
		return OFF(*(volatile __u32 *)&w->s->off);
	return w->off;
}

_Static_assert(RTCAP_MAX_NPARAMS <= 32, "length table index mask");

static __rtcap_inline void set_len(struct rtcap_wr *w, __u32 len)
{
	*(__u16 *)(w->b + RTCAP_HDR_SIZE + 2 * (w->i & 31)) = len;
	if (w->var)
		w->s->off = cur(w) + len;
	else
		w->off += len;
	w->i++;
}

static __rtcap_inline void flag(struct rtcap_wr *w, __u32 f)
{
	if (w->var)
		w->s->flags |= f;
	else
		w->flags |= f;
}

static __rtcap_inline void put_u32(struct rtcap_wr *w, __u32 v)
{
	*(__u32 *)(w->b + cur(w)) = v;
	set_len(w, 4);
}

static __rtcap_inline void put_u64(struct rtcap_wr *w, __u64 v)
{
	*(__u64 *)(w->b + cur(w)) = v;
	set_len(w, 8);
}

static __rtcap_inline void put_empty(struct rtcap_wr *w, __u32 fault)
{
	if (fault)
		flag(w, RTCAP_F_PARAM_FAULT);
	set_len(w, 0);
}

/* A user string; NULL is an empty param, a fault is an empty param plus the flag. */
static __rtcap_inline void put_user_str(struct rtcap_wr *w, __u64 uptr, __u32 cap)
{
	long n;

	if (!uptr) {
		put_empty(w, 0);
		return;
	}
	n = bpf_probe_read_user_str(w->b + cur(w), cap, (const void *)uptr);
	if (n <= 0) {
		put_empty(w, 1);
		return;
	}
	if (n >= cap)
		flag(w, RTCAP_F_TRUNCATED);
	set_len(w, n & (2 * cap - 1));
}

static __rtcap_inline void put_user_bytes(struct rtcap_wr *w, __u64 uptr, __u64 len, __u32 cap)
{
	if (!uptr || !len) {
		put_empty(w, 0);
		return;
	}
	if (len > cap) {
		len = cap;
		flag(w, RTCAP_F_TRUNCATED);
	}
	/* When the caller already bounded len (a snaplen), the compiler drops the mask as
	 * redundant and passes a value whose bound lives only in a compare on a spilled
	 * copy, which verifiers before 6.12 do not carry over: the barrier keeps the mask */
	rtcap_barrier_var(len);
	if (bpf_probe_read_user(w->b + cur(w), len & (2 * cap - 1), (const void *)uptr)) {
		put_empty(w, 1);
		return;
	}
	set_len(w, len & (2 * cap - 1));
}

/* argv of a failed exec: the caller's pointer array is still mapped. */
static __rtcap_inline void put_user_argv(struct rtcap_wr *w, __u64 uargv)
{
	__u32 base = cur(w), used = 0;
	int k;

	if (!uargv) {
		put_empty(w, 0);
		return;
	}
	for (k = 0; k < ARGV_MAX_ARGS; k++) {
		__u64 p = 0;
		__u32 room;
		long n;

		if (bpf_probe_read_user(&p, sizeof(p), (const void *)(uargv + 8 * k))) {
			flag(w, RTCAP_F_PARAM_FAULT);
			break;
		}
		if (!p)
			break;
		if (used >= RTCAP_PT_ARGV_MAX - 1) {
			flag(w, RTCAP_F_TRUNCATED);
			break;
		}
		/* the mask changes nothing (used < ARGV_MAX here) but gives the verifier an
		 * upper bound it can trust whatever register width the compiler compared;
		 * the barrier keeps the compiler from dropping it as redundant */
		room = RTCAP_PT_ARGV_MAX - used;
		rtcap_barrier_var(room);
		n = bpf_probe_read_user_str(w->b + OFF(base + used),
					    room & (2 * RTCAP_PT_ARGV_MAX - 1), (const void *)p);
		if (n <= 0)
			break;
		used += n;
	}
	if (k == ARGV_MAX_ARGS)
		flag(w, RTCAP_F_TRUNCATED);
	set_len(w, used & (2 * RTCAP_PT_ARGV_MAX - 1));
}

/*
 * After a successful exec the old argv is gone, but the new image's mm records where
 * the kernel copied it (arg_start..arg_end) and the filename sits right above the
 * environment strings (env_end, the AT_EXECFN the loader sees).
 */
static __rtcap_inline void put_exec_filename(struct rtcap_wr *w, struct rtcap_ctx *c, int arg)
{
	if (c->ret == 0) {
		struct mm_struct *mm = rd(TASK(c)->mm);

		put_user_str(w, mm ? rd(mm->env_end) : 0, RTCAP_PT_PATH_MAX);
	} else {
		put_user_str(w, c->a[arg & 7], RTCAP_PT_PATH_MAX);
	}
}

static __rtcap_inline void put_exec_argv(struct rtcap_wr *w, struct rtcap_ctx *c, int arg)
{
	if (c->ret == 0) {
		struct mm_struct *mm = rd(TASK(c)->mm);
		__u64 start, end;

		if (!mm) {
			put_empty(w, 1);
			return;
		}
		start = rd(mm->arg_start);
		end = rd(mm->arg_end);
		put_user_bytes(w, start, end > start ? end - start : 0, RTCAP_PT_ARGV_MAX);
	} else {
		put_user_argv(w, c->a[arg & 7]);
	}
}

/* The new image's environment strings, which exec copied right after its argv. */
static __rtcap_inline void put_exec_env(struct rtcap_wr *w, struct rtcap_ctx *c)
{
	struct mm_struct *mm;
	__u64 start, end;

	if (c->ret != 0) {
		put_empty(w, 0);
		return;
	}
	mm = rd(TASK(c)->mm);
	if (!mm) {
		put_empty(w, 1);
		return;
	}
	start = rd(mm->env_start);
	end = rd(mm->env_end);
	put_user_bytes(w, start, end > start ? end - start : 0, RTCAP_PT_ARGV_MAX);
}

/* mm->exe_file of the task after a successful exec, else 0. */
static __rtcap_inline struct file *exec_file(struct rtcap_ctx *c)
{
	struct mm_struct *mm;

	if (c->ret != 0)
		return 0;
	mm = rd(TASK(c)->mm);
	return mm ? rd(mm->exe_file) : 0;
}

/* A kernel_cap_t as a u64: one u64 since 6.3, u32[2] (low word first) before, which on
 * our little-endian arches is the same 8 bytes. */
static __rtcap_inline __u64 cred_caps(const struct cred *cred, int which)
{
	__u64 v = 0;

	if (which == 0)
		bpf_probe_read_kernel(&v, sizeof(v), rtcap_addr(cred->cap_inheritable));
	else if (which == 1)
		bpf_probe_read_kernel(&v, sizeof(v), rtcap_addr(cred->cap_permitted));
	else
		bpf_probe_read_kernel(&v, sizeof(v), rtcap_addr(cred->cap_effective));
	return v;
}

/* Falco's exe flags: who may write the exe, overlayfs layer, memfd origin. */
static __rtcap_inline __u32 exe_flags(struct rtcap_ctx *c)
{
	struct file *f = exec_file(c);
	struct inode *ino;
	struct super_block *sb;
	struct cred *cred; /* not const: rd() copies of its fields must be writable */
	__u32 flags = 0, mode, fsuid, fsgid;
	unsigned long magic;

	if (!f)
		return 0;
	ino = rd(f->f_inode);
	if (!ino)
		return 0;
	/* writable as generic_permission() would judge a write by this task: the owner,
	 * group or other class bit that applies, or CAP_DAC_OVERRIDE */
	cred = (struct cred *)rd(TASK(c)->cred);
	mode = rd(ino->i_mode);
	fsuid = rd(cred->fsuid.val);
	fsgid = rd(cred->fsgid.val);
	if (fsuid == rd(ino->i_uid.val))
		flags |= (mode & RTCAP_S_IWUSR) ? RTCAP_EXE_WRITABLE : 0;
	else if (fsgid == rd(ino->i_gid.val))
		flags |= (mode & RTCAP_S_IWGRP) ? RTCAP_EXE_WRITABLE : 0;
	else
		flags |= (mode & RTCAP_S_IWOTH) ? RTCAP_EXE_WRITABLE : 0;
	if ((cred_caps(cred, 2) >> RTCAP_CAP_DAC_OVERRIDE) & 1)
		flags |= RTCAP_EXE_WRITABLE;

	sb = rd(ino->i_sb);
	magic = sb ? rd(sb->s_magic) : 0;
	if (magic == RTCAP_OVERLAYFS_MAGIC) {
		/* struct ovl_inode (private to overlayfs) embeds the vfs inode and keeps
		 * the upper dentry right after it: set iff the file has an upper copy */
		const void *upper = 0;

		bpf_probe_read_kernel(&upper, sizeof(upper), (char *)ino + RTCAP_INODE_SIZE);
		flags |= upper ? RTCAP_EXE_UPPER_LAYER : RTCAP_EXE_LOWER_LAYER;
	} else if (magic == RTCAP_TMPFS_MAGIC || magic == RTCAP_HUGETLBFS_MAGIC) {
		/* f_path is const in 7.x: read the pointer as rd_ptr() does */
		struct dentry *d = (struct dentry *)rd_ptr(f->f_path.dentry);
		const char *want = RTCAP_MEMFD_PREFIX;
		char name[8] = {};
		int k, same = 1;

		if (d)
			bpf_probe_read_kernel_str(name, sizeof(name), rd_ptr(d->d_name.name));
		/* byte by byte: a memcmp() could become a libc call BPF cannot make */
		for (k = 0; k < RTCAP_MEMFD_PREFIX_LEN; k++)
			same &= name[k] == want[k];
		if (same)
			flags |= RTCAP_EXE_FROM_MEMFD;
	}
	return flags;
}

/* sub 0: inode number; 1: ctime; 2: mtime (ns since the epoch). */
static __rtcap_inline __u64 exe_inode_value(struct rtcap_ctx *c, int which)
{
	struct file *f = exec_file(c);
	struct inode *ino = f ? rd(f->f_inode) : 0;

	if (!ino)
		return 0;
	if (which == 0)
		return rd(ino->i_ino);
#ifdef RTCAP_CORE
	return rtcap_inode_time_ns(ino, which == 2);
#else
	if (which == 1)
		return (__u64)rd(RTCAP_INODE_CTIME_SEC(ino)) * 1000000000ULL +
		       (rd(RTCAP_INODE_CTIME_NSEC(ino)) & RTCAP_NSEC_MASK);
	return (__u64)rd(RTCAP_INODE_MTIME_SEC(ino)) * 1000000000ULL +
	       (rd(RTCAP_INODE_MTIME_NSEC(ino)) & RTCAP_NSEC_MASK);
#endif
}

/* The number of `p` at pid namespace `level` (struct upid numbers[], one per level
 * from the root); 0 when p is not visible that deep. */
static __rtcap_inline __u32 pid_nr_at(struct pid *p, __u32 level)
{
	int nr = 0;

	if (!p || rd(p->level) < level)
		return 0;
	/* numbers[] is indexed at run time, which CO-RE cannot relocate as one access:
	 * relocate its start, then step by struct upid (int nr first, then the ns) */
	bpf_probe_read_kernel(&nr, sizeof(nr),
			      (char *)rtcap_addr(p->numbers[0]) + (level & 63) * sizeof(struct upid));
	return nr;
}

/* sub 0: tgid; 1: tid; 2: process group; 3: session; in the task's own pid ns. */
static __rtcap_inline __u32 task_ns_id(struct rtcap_ctx *c, int which)
{
	struct task_struct *t = TASK(c);
	struct pid *own = rd(t->thread_pid);
	__u32 level = own ? rd(own->level) : 0;
	struct signal_struct *sig;

	if (!own)
		return 0;
	if (which == 1)
		return pid_nr_at(own, level);
	if (which == 0) {
		struct task_struct *leader = rd(t->group_leader);

		return pid_nr_at(leader ? rd(leader->thread_pid) : 0, level);
	}
	sig = rd(t->signal);
	if (!sig)
		return 0;
	if (which == 2)
		return pid_nr_at(rd(sig->pids[RTCAP_PIDTYPE_PGID]), level);
	return pid_nr_at(rd(sig->pids[RTCAP_PIDTYPE_SID]), level);
}

/* Falco's tty number: new_encode_dev(MKDEV(major, minor_start + index)). */
static __rtcap_inline __u32 task_tty(struct rtcap_ctx *c)
{
	struct signal_struct *sig = rd(TASK(c)->signal);
	struct tty_struct *tty = sig ? rd(sig->tty) : 0;
	struct tty_driver *drv;
	__u32 major, minor;

	if (!tty)
		return 0;
	drv = rd(tty->driver);
	if (!drv)
		return 0;
	major = rd(drv->major);
	minor = rd(drv->minor_start) + rd(tty->index);
	return (minor & 0xff) | (major << 8) | ((minor & ~0xffU) << 12);
}

static __rtcap_inline __u32 task_loginuid(struct rtcap_ctx *c)
{
#ifdef RTCAP_CORE
	if (rtcap_field_exists(TASK(c)->loginuid))
		return rd(TASK(c)->loginuid.val);
#elif IS_ENABLED(CONFIG_AUDIT)
	return rd(TASK(c)->loginuid.val);
#endif
	return RTCAP_LOGINUID_UNSET;
}

/* The first bytes of a transfer: at most `snap`, at most what the call moved. */
static __rtcap_inline void put_io(struct rtcap_wr *w, struct rtcap_ctx *c, __u64 uptr,
				  __u32 snap)
{
	__u64 n;

	if (c->ret <= 0 || !uptr) {
		put_empty(w, 0);
		return;
	}
	n = (__u64)c->ret < snap ? (__u64)c->ret : snap;
	/* the type's cap, not snap: put_user_bytes bounds the length with a mask of its
	 * cap, which must be a power of two (n is already within snap) */
	put_user_bytes(w, uptr, n, RTCAP_PT_BYTES_MAX);
}

/* The first iovec of a struct user_msghdr, as put_io takes it. */
static __rtcap_inline void put_io_msg(struct rtcap_wr *w, struct rtcap_ctx *c, __u64 umsg,
				      __u32 snap)
{
	__u64 iov = 0, base = 0, len = 0;

	if (c->ret <= 0 || !umsg) {
		put_empty(w, 0);
		return;
	}
	if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(umsg + RTCAP_MSGHDR_IOV)) ||
	    !iov ||
	    bpf_probe_read_user(&base, sizeof(base), (const void *)(iov + RTCAP_IOVEC_BASE)) ||
	    bpf_probe_read_user(&len, sizeof(len), (const void *)(iov + RTCAP_IOVEC_LEN))) {
		put_empty(w, 1);
		return;
	}
	if (len > (__u64)c->ret)
		len = c->ret;
	put_user_bytes(w, base, len < snap ? len : snap, RTCAP_PT_BYTES_MAX);
}

/* The sockaddr pointer of a msghdr (msg_name), 0 if none or unreadable. */
static __rtcap_inline __u64 msg_name(__u64 umsg)
{
	__u64 p = 0;

	if (umsg)
		bpf_probe_read_user(&p, sizeof(p), (const void *)(umsg + RTCAP_MSGHDR_NAME));
	return p;
}

/*
 * A path as d_path() prints it for this task: walk dentries up to the task's root
 * directory (or, for a file outside it, the root mount of its namespace), hopping to
 * the parent mount at each mount root; names are collected leaf first, then written
 * root first. As d_path() does, an unlinked file (unhashed, not its own parent) gets
 * " (deleted)" appended, and a file that never had a place in any directory (made by
 * alloc_file_pseudo(): a memfd, whose dentry is its own parent below its mount's root)
 * is "/<name> (deleted)", which is what simple_dname() prints for it.
 * Counters that index memory go through map memory (volatile) on purpose: the verifier
 * then sees one unknown-but-bounded value per loop iteration instead of following
 * every count the walk could have reached, which would exceed its complexity limits.
 */
static __rtcap_inline void put_dpath(struct rtcap_wr *w, struct fs_struct *fs,
				     struct dentry *d, struct vfsmount *vm)
{
	struct rtcap_scratch *s = w->s;
	struct dentry *root_d = 0, *parent;
	struct vfsmount *root_vm = 0;
	struct rtcap_mount *m, *pm;
	__u32 base = cur(w), used, n, k;

	if (!s || !d || !vm) {
		put_empty(w, 1);
		return;
	}
	if (fs) {
		root_d = rd(fs->root.dentry);
		root_vm = rd(fs->root.mnt);
	}
	m = rtcap_container_of(vm, struct rtcap_mount, mnt);
	s->depth = 0;
	parent = rd(d->d_parent);
	s->deleted = parent && parent != d && !rd(d->d_hash.pprev);
	for (k = 0; k < PATH_MAX_DEPTH; k++) {
		if (d == root_d && vm == root_vm)
			break;
		if (d == rd(vm->mnt_root)) {
			pm = rd(m->mnt_parent);
			if (!pm || pm == m)
				break;
			d = rd(m->mnt_mountpoint);
			m = pm;
			vm = &pm->mnt;
			continue;
		}
		parent = rd(d->d_parent);
		if (!parent)
			break;
		n = *(volatile __u32 *)&s->depth;
		if (parent == d) {
			/* escaped the tree: only a pseudo file's own dentry names anything */
			if (k == 0) {
				s->names[0] = (__u64)rd_ptr(d->d_name.name);
				s->depth = 1;
				s->deleted = 1;
			}
			break;
		}
		s->names[n & 63] = (__u64)rd_ptr(d->d_name.name);
		s->depth = (n + 1) & 63;
		d = parent;
	}
	if (k == PATH_MAX_DEPTH)
		flag(w, RTCAP_F_TRUNCATED);
	s->used = 0;
	for (k = 0; k < PATH_MAX_DEPTH; k++) {
		long r;

		n = *(volatile __u32 *)&s->depth;
		if (k >= n)
			break;
		used = *(volatile __u32 *)&s->used & (RTCAP_PT_PATH_MAX - 1);
		/* room for this name and the " (deleted)" that may follow */
		if (used >= RTCAP_PT_PATH_MAX - NAME_CAP - 2 - DELETED_LEN) {
			flag(w, RTCAP_F_TRUNCATED);
			break;
		}
		w->b[OFF(base + used)] = '/';
		r = bpf_probe_read_kernel_str(w->b + OFF(base + used + 1), NAME_CAP,
					      (const void *)s->names[(n - 1 - k) & 63]);
		if (r <= 0)
			break;
		s->used = used + r; /* '/' + name; the next '/' overwrites this NUL */
	}
	used = *(volatile __u32 *)&s->used & (RTCAP_PT_PATH_MAX - 1);
	if (!used) {
		w->b[OFF(base)] = '/';
		used = 1;
	}
	if (*(volatile __u32 *)&s->deleted) {
		/* byte by byte: a string constant could become a .rodata load */
		w->b[OFF(base + used)] = ' ';
		w->b[OFF(base + used + 1)] = '(';
		w->b[OFF(base + used + 2)] = 'd';
		w->b[OFF(base + used + 3)] = 'e';
		w->b[OFF(base + used + 4)] = 'l';
		w->b[OFF(base + used + 5)] = 'e';
		w->b[OFF(base + used + 6)] = 't';
		w->b[OFF(base + used + 7)] = 'e';
		w->b[OFF(base + used + 8)] = 'd';
		w->b[OFF(base + used + 9)] = ')';
		used += DELETED_LEN;
	}
	w->b[OFF(base + used)] = 0;
	set_len(w, (used + 1) & (2 * RTCAP_PT_PATH_MAX - 1));
}

/* The working directory. */
static __rtcap_inline void put_cwd(struct rtcap_wr *w, struct rtcap_ctx *c)
{
	struct fs_struct *fs = rd(TASK(c)->fs);

	if (!fs) {
		put_empty(w, 0);
		return;
	}
	put_dpath(w, fs, rd(fs->pwd.dentry), rd(fs->pwd.mnt));
}

/* The file the new image runs from (mm->exe_file), as /proc/<pid>/exe shows it. */
static __rtcap_inline void put_exe_path(struct rtcap_wr *w, struct rtcap_ctx *c)
{
	struct file *f = exec_file(c);

	if (!f) {
		put_empty(w, 0);
		return;
	}
	/* f_path is const in 7.x: read the pointers as rd_ptr() does */
	put_dpath(w, rd(TASK(c)->fs), (struct dentry *)rd_ptr(f->f_path.dentry),
		  (struct vfsmount *)rd_ptr(f->f_path.mnt));
}

static __rtcap_inline struct sock *sock_of_fd(struct task_struct *task, __s64 fd)
{
	struct files_struct *files = rd(task->files);
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = 0;
	struct socket *so;

	if (!files || fd < 0)
		return 0;
	fdt = rd(files->fdt);
	if (!fdt || fd >= rd(fdt->max_fds))
		return 0;
	fds = rd(fdt->fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	so = rd(f->private_data);
	return so ? rd(so->sk) : 0;
}

/*
 * Socket tuple; `local_first` for connect and sends (we are the source), peer first
 * for accept and receives. An unconnected socket (UDP) has no peer of its own: then
 * the peer is the user sockaddr at `uaddr` when there is one (sendto's destination,
 * recvfrom's source as the kernel filled it in).
 */
static __rtcap_inline void put_tuple(struct rtcap_wr *w, struct rtcap_ctx *c, __s64 fd,
				     int local_first, __u64 uaddr)
{
	struct sock *sk = sock_of_fd(TASK(c), fd);
	char *p = w->b + cur(w);
	__u16 family, lport, rport;

	if (!sk) {
		put_empty(w, 0);
		return;
	}
	family = rd(sk->__sk_common.skc_family);
	lport = rd(sk->__sk_common.skc_num);
	rport = rtcap_ntohs(rd(sk->__sk_common.skc_dport));
	p[0] = (char)family;
	if (family == RTCAP_AF_INET) {
		__u32 laddr = rd(sk->__sk_common.skc_rcv_saddr);
		__u32 raddr = rd(sk->__sk_common.skc_daddr);
		__u16 ufamily = 0;

		if (!raddr && !rport && uaddr &&
		    !bpf_probe_read_user(&ufamily, sizeof(ufamily), (const void *)uaddr) &&
		    ufamily == RTCAP_AF_INET) {
			bpf_probe_read_user(&rport, sizeof(rport), (const void *)(uaddr + 2));
			rport = rtcap_ntohs(rport);
			bpf_probe_read_user(&raddr, sizeof(raddr), (const void *)(uaddr + 4));
		}
		*(__u32 *)(p + 1) = local_first ? laddr : raddr;
		*(__u16 *)(p + 5) = local_first ? lport : rport;
		*(__u32 *)(p + 7) = local_first ? raddr : laddr;
		*(__u16 *)(p + 11) = local_first ? rport : lport;
		set_len(w, 13);
		return;
	}
#ifndef RTCAP_CORE
#if !IS_ENABLED(CONFIG_IPV6)
#define RTCAP_NO_IPV6
#endif
#endif
#ifndef RTCAP_NO_IPV6
	if (family == RTCAP_AF_INET6) {
		struct in6_addr la = rd(sk->__sk_common.skc_v6_rcv_saddr);
		struct in6_addr ra = rd(sk->__sk_common.skc_v6_daddr);
		__u16 ufamily = 0;

		if (!rport && uaddr &&
		    !bpf_probe_read_user(&ufamily, sizeof(ufamily), (const void *)uaddr) &&
		    ufamily == RTCAP_AF_INET6) {
			bpf_probe_read_user(&rport, sizeof(rport), (const void *)(uaddr + 2));
			rport = rtcap_ntohs(rport);
			bpf_probe_read_user(&ra, sizeof(ra), (const void *)(uaddr + 8));
		}
		__builtin_memcpy(p + 1, local_first ? &la : &ra, 16);
		*(__u16 *)(p + 17) = local_first ? lport : rport;
		__builtin_memcpy(p + 19, local_first ? &ra : &la, 16);
		*(__u16 *)(p + 35) = local_first ? rport : lport;
		set_len(w, 37);
		return;
	}
#endif
	set_len(w, 1); /* family only (AF_UNIX and others): the sockaddr param has the rest */
}

static __rtcap_inline void put_exit_code(struct rtcap_wr *w, struct rtcap_ctx *c, int src)
{
	__s64 code = (__s64)rd(TASK(c)->exit_code);

	if (src == RTCAP_SRC_EXIT_STATUS)
		put_u64(w, (__u64)code);
	else if (src == RTCAP_SRC_EXIT_SIG)
		put_u32(w, code & 0x7f);
	else
		put_u32(w, (code & 0x80) ? 1 : 0);
}

/* A fixed-size value from a syscall argument, converted as events.yaml says. */
static __rtcap_inline __u64 arg_value(int type, __u64 v)
{
	if (type == RTCAP_PT_FD || type == RTCAP_PT_S64 || type == RTCAP_PT_S32)
		return (__u64)(__s64)(int)v;
	return v;
}

static __rtcap_inline int type_size(int type)
{
	switch (type) {
	case RTCAP_PT_U32: case RTCAP_PT_S32: case RTCAP_PT_UID: case RTCAP_PT_GID:
	case RTCAP_PT_MODE: case RTCAP_PT_FLAGS32:
		return 4;
	case RTCAP_PT_U64: case RTCAP_PT_S64: case RTCAP_PT_FD: case RTCAP_PT_FLAGS64:
		return 8;
	default:
		return 0;
	}
}

/* One param. All of type/src/arg/sub are constants after inlining, so this folds
 * down to the few instructions its source needs. */
static __rtcap_inline void put_param(struct rtcap_wr *w, struct rtcap_ctx *c, int type, int src,
				     int arg, int sub)
{
	switch (src) {
	case RTCAP_SRC_ARG:
		if (type == RTCAP_PT_PATH || type == RTCAP_PT_STRING)
			put_user_str(w, c->a[arg & 7], RTCAP_PT_PATH_MAX);
		else if (type == RTCAP_PT_SOCKADDR)
			put_user_bytes(w, c->a[arg & 7], (__u32)c->a[sub & 7], RTCAP_PT_SOCKADDR_MAX);
		else if (type_size(type) == 4)
			put_u32(w, (__u32)c->a[arg & 7]);
		else
			put_u64(w, arg_value(type, c->a[arg & 7]));
		break;
	case RTCAP_SRC_EXE_FILENAME:
		put_exec_filename(w, c, arg);
		break;
	case RTCAP_SRC_EXE_ARGV:
		put_exec_argv(w, c, arg);
		break;
	case RTCAP_SRC_CWD:
		put_cwd(w, c);
		break;
	case RTCAP_SRC_EXE_PATH:
		put_exe_path(w, c);
		break;
	case RTCAP_SRC_SOCK_FD_ARG:
		if (c->ret == 0 || c->ret == -RTCAP_EINPROGRESS)
			put_tuple(w, c, (__s64)(int)c->a[arg & 7], 1, 0);
		else
			put_empty(w, 0);
		break;
	case RTCAP_SRC_SOCK_FD_RET:
		if (c->ret >= 0)
			put_tuple(w, c, c->ret, 0, 0);
		else
			put_empty(w, 0);
		break;
	case RTCAP_SRC_SOCK_OUT:
	case RTCAP_SRC_SOCK_IN:
		put_tuple(w, c, (__s64)(int)c->a[arg & 7], src == RTCAP_SRC_SOCK_OUT,
			  c->ret >= 0 ? c->a[sub & 7] : 0);
		break;
	case RTCAP_SRC_SOCK_OUT_MSG:
	case RTCAP_SRC_SOCK_IN_MSG:
		put_tuple(w, c, (__s64)(int)c->a[arg & 7], src == RTCAP_SRC_SOCK_OUT_MSG,
			  c->ret >= 0 ? msg_name(c->a[sub & 7]) : 0);
		break;
	case RTCAP_SRC_EXE_ENV:
		put_exec_env(w, c);
		break;
	case RTCAP_SRC_EXE_FLAGS:
		put_u32(w, exe_flags(c));
		break;
	case RTCAP_SRC_EXE_INODE:
		put_u64(w, exe_inode_value(c, sub));
		break;
	case RTCAP_SRC_TASK_CAPS:
		put_u64(w, cred_caps(rd(TASK(c)->cred), sub));
		break;
	case RTCAP_SRC_TASK_NS_ID:
		put_u32(w, task_ns_id(c, sub));
		break;
	case RTCAP_SRC_TASK_TTY:
		put_u32(w, task_tty(c));
		break;
	case RTCAP_SRC_TASK_LOGINUID:
		put_u32(w, task_loginuid(c));
		break;
	case RTCAP_SRC_RET_SIZE:
		put_u32(w, c->ret > 0 ? (__u32)c->ret : 0);
		break;
	case RTCAP_SRC_IO_BUF:
		put_io(w, c, c->a[arg & 7], sub);
		break;
	case RTCAP_SRC_IO_MSG:
		put_io_msg(w, c, c->a[arg & 7], sub);
		break;
	case RTCAP_SRC_USER_U64: {
		__u64 v = 0;

		if (!c->a[arg & 7] ||
		    bpf_probe_read_user(&v, sizeof(v), (const void *)(c->a[arg & 7] + 8 * sub)))
			put_empty(w, 1);
		else
			put_u64(w, v);
		break;
	}
	case RTCAP_SRC_EXIT_STATUS:
	case RTCAP_SRC_EXIT_SIG:
	case RTCAP_SRC_EXIT_CORE:
		put_exit_code(w, c, src);
		break;
	default:
		put_empty(w, 0);
	}
}

static __rtcap_inline __u32 current_ppid(struct rtcap_ctx *c)
{
	struct task_struct *parent = rd(TASK(c)->real_parent);

	return parent ? rd(parent->tgid) : 0;
}

/*
 * Where the kernel hands out current as a typed pointer (>= 5.11, a CO-RE relocation
 * decides), the task's fields are plain loads: one helper call instead of one per
 * field, and comm is two 8-byte loads instead of a string copy (the kernel keeps comm
 * NUL-padded). Older kernels and per-kernel objects take the helpers. Saves ~20 ns
 * per event on the bench host (6.18).
 */
static __rtcap_inline __u64 current_pid_tgid(void)
{
#ifdef RTCAP_CORE
	if (rtcap_have_task_btf()) {
		struct task_struct *t = bpf_get_current_task_btf();

		return ((__u64)(__u32)t->tgid << 32) | (__u32)t->pid;
	}
#endif
	return bpf_get_current_pid_tgid();
}

static __rtcap_inline void fill_task_fields(struct rtcap_event_hdr *h, struct rtcap_ctx *c)
{
	__u64 uid_gid;

#ifdef RTCAP_CORE
	if (rtcap_have_task_btf()) {
		struct task_struct *t = bpf_get_current_task_btf();
		const struct cred *cred = t->cred;

		h->ppid = t->real_parent->tgid;
		/* what bpf_get_current_cgroup_id() reads: the default hierarchy's cgroup */
		h->cgroup_id = t->cgroups->dfl_cgrp->kn->id;
		h->uid = cred->uid.val;
		h->gid = cred->gid.val;
		*(__u64 *)&h->comm[0] = *(__u64 *)&t->comm[0];
		*(__u64 *)&h->comm[8] = *(__u64 *)&t->comm[8];
		return;
	}
#endif
	uid_gid = bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->ppid = current_ppid(c);
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __rtcap_inline void fill_header(struct rtcap_event_hdr *h, struct rtcap_ctx *c,
				       __u32 type, __u32 nparams, __s32 nr, __u32 cpu)
{
	__u64 pid_tgid = c->pid_tgid;

	h->ts = bpf_ktime_get_boot_ns();
	h->ret = c->ret;
	h->type = type;
	h->nparams = nparams;
	h->syscall_nr = nr;
	h->cpu = cpu;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	fill_task_fields(h, c);
}

/*
 * A wakeup is an irq_work (an IPI, a VM exit under virtualisation): far dearer than
 * writing a batch. So by default the consumer is woken once at least wakeup_mask + 1
 * records went out on this CPU since its last wakeup, or sooner when the ring fills
 * past wakeup_bytes; it polls with a timeout for the stragglers of a quiet period.
 */
static __rtcap_inline __u64 wakeup_flags(struct rtcap_stage *stg, __u32 n)
{
	__u32 mask = rtcap_ctl.wakeup_mask;
	__u32 since = stg->since_wake + n;

	if (!mask)
		return 0;
	if (since > mask ||
	    bpf_ringbuf_query(&rtcap_ringbuf, BPF_RB_AVAIL_DATA) >= rtcap_ctl.wakeup_bytes) {
		stg->since_wake = 0;
		return BPF_RB_FORCE_WAKEUP;
	}
	stg->since_wake = since;
	return BPF_RB_NO_WAKEUP;
}

/* Hand the staged batch to the ring as one record; a full ring drops all of it. */
static __rtcap_inline void flush(struct rtcap_stage *stg, struct rtcap_stats *st)
{
	__u32 len = stg->pend & (2 * STAGE_HALF - 1);
	__u32 n = stg->nevts;

	if (!len)
		return;
	if (bpf_ringbuf_output(&rtcap_ringbuf, stg->buf, len, wakeup_flags(stg, n)))
		st->n_drops_buffer += n;
	stg->pend = 0;
	stg->nevts = 0;
}

/* Only this CPU ever touches its stage, so ordering against the compiler is enough:
 * the flush program interrupts a producer on the same CPU, it never runs alongside. */
static __rtcap_inline void stage_claim(struct rtcap_stage *stg)
{
	*(volatile __u32 *)&stg->busy = 1;
	__asm__ __volatile__("" ::: "memory");
}

static __rtcap_inline void stage_release(struct rtcap_stage *stg)
{
	__asm__ __volatile__("" ::: "memory");
	*(volatile __u32 *)&stg->busy = 0;
}

static __rtcap_inline __u32 batch_bytes(void)
{
	__u32 bb = rtcap_ctl.batch_bytes;

	return bb > STAGE_HALF ? STAGE_HALF : bb;
}

/* Fixed-size events are written in the stage at its current end; variable-size ones
 * in the scratch area. `variable` is a constant at every call site: the verifier must
 * know on each path which kind of memory w->b is, so it cannot come from a runtime
 * field. On success the stage is ours (busy) until finish(). */
static __rtcap_inline int begin(struct rtcap_wr *w, struct rtcap_ctx *c, __u32 type,
				__u32 nparams, __s32 nr, int variable, __u32 max_size)
{
	__u32 start = RTCAP_HDR_SIZE + 2 * nparams;
	__u32 cpu = bpf_get_smp_processor_id();
	struct rtcap_stage *stg = bpf_map_lookup_elem(&rtcap_stage_map, &cpu);

	/* busy here would mean two programs nested on one CPU, which tracepoints with
	 * preemption off never do; counted rather than risk a torn batch */
	if (!stg || stg->busy) {
		c->st->n_drops_bug++;
		return 0;
	}
	/* claimed before its end offset is read, or a flush from an IPI landing in
	 * between would leave this record written where the emptied batch ended */
	stage_claim(stg);
	c->stg = stg;
	w->cpu = cpu;
	w->i = 0;
	w->s = 0;
	w->var = variable;
	w->off = start;
	w->flags = 0;
	if (variable) {
		w->s = bpf_map_lookup_elem(&rtcap_scratch_map, &cpu);
		if (!w->s) {
			c->st->n_drops_bug++;
			stage_release(stg);
			return 0;
		}
		w->b = w->s->buf;
		w->s->off = start;
		w->s->flags = 0;
	} else {
		if (max_size > STAGE_SLOT) {
			c->st->n_drops_bug++;
			stage_release(stg);
			return 0;
		}
		w->b = stg->buf + (stg->pend & (STAGE_HALF - 1));
	}
	fill_header((struct rtcap_event_hdr *)w->b, c, type, nparams, nr, w->cpu);
	return 1;
}

static __rtcap_inline void finish(struct rtcap_wr *w, struct rtcap_ctx *c, int variable)
{
	struct rtcap_event_hdr *h = (struct rtcap_event_hdr *)w->b;
	struct rtcap_stage *stg = c->stg;
	__u32 len = variable ? w->s->off : w->off;
	__u32 flags = variable ? w->s->flags : w->flags;
	__u32 bb = batch_bytes(), alen = RTCAP_ALIGN8(len), pend;
	__u64 ts = h->ts;

	h->len = len;
	h->flags = flags;
	if (flags & RTCAP_F_PARAM_FAULT)
		c->st->n_partial_pf++;
	if (flags & RTCAP_F_TRUNCATED)
		c->st->n_truncated++;
	if (variable) {
		if (len > RTCAP_MAX_RECORD_SIZE) {
			c->st->n_drops_bug++;
			goto out;
		}
		if (stg->pend && stg->pend + alen > bb)
			flush(stg, c->st);
		if (alen > bb || alen >= STAGE_HALF) {
			/* larger than a batch: straight from scratch, the stage is empty */
			if (bpf_ringbuf_output(&rtcap_ringbuf, w->b, len, wakeup_flags(stg, 1)))
				c->st->n_drops_buffer++;
			goto out;
		}
		pend = stg->pend & (STAGE_HALF - 1);
		/* As in the argv loop: the mask is the bound the verifier trusts, and the
		 * barrier keeps the compiler from dropping it after the check above (clang 21
		 * did, and the verifier then saw a copy of up to a whole record). */
		rtcap_barrier_var(alen);
		/* both copies are in map memory of this CPU and cannot fault */
		bpf_probe_read_kernel(stg->buf + pend, alen & (STAGE_HALF - 1), w->b);
	}
	if (!stg->nevts)
		stg->first_ts = ts;
	stg->pend += alen;
	stg->nevts++;
	if (stg->pend + STAGE_SLOT > bb ||
	    ts - stg->first_ts >= (__u64)rtcap_ctl.batch_age_us * 1000)
		flush(stg, c->st);
out:
	stage_release(stg);
}

#define PUT_PARAM(type, src, arg, sub) put_param(&w, cx, type, src, arg, sub);
#define EMIT_CASE(NAME, ID, NPARAMS, AT_ENTER)                                       \
	case ID: {                                                                   \
		struct rtcap_wr w;                                                   \
		if (begin(&w, cx, ID, NPARAMS, nr, RTCAP_EVT_##NAME##_VARIABLE,       \
			  RTCAP_EVT_##NAME##_MAX_SIZE)) {                            \
			RTCAP_PARAMS_##NAME(PUT_PARAM)                               \
			finish(&w, cx, RTCAP_EVT_##NAME##_VARIABLE);                                            \
		}                                                                    \
		break;                                                               \
	}

static __rtcap_inline void emit(struct rtcap_ctx *cx, __u32 evt, __s32 nr)
{
	switch (evt) {
		RTCAP_EVENT_LIST(EMIT_CASE)
	default:
		cx->st->n_drops_bug++;
	}
}

static __rtcap_inline struct rtcap_stats *stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rtcap_stats_map, &zero);
}

/* Common gate after the filter matched: capture on, not our own consumer. */
static __rtcap_inline int admit(struct rtcap_ctx *c)
{
	__u32 self = rtcap_ctl.ignore_tgid;

	c->st = stats();
	if (!c->st || !rtcap_ctl.capture)
		return 0;
	c->pid_tgid = current_pid_tgid();
	if (self && (c->pid_tgid >> 32) == self) {
		c->st->n_ignored_self++;
		return 0;
	}
	c->st->n_evts++;
	return 1;
}

static __rtcap_inline void load_args(struct rtcap_ctx *c, struct pt_regs *regs)
{
	c->a[0] = REG_ARG0(regs);
	c->a[1] = REG_ARG1(regs);
	c->a[2] = REG_ARG2(regs);
	c->a[3] = REG_ARG3(regs);
	c->a[4] = REG_ARG4(regs);
	c->a[5] = REG_ARG5(regs);
}

static __rtcap_inline void count_filtered(void)
{
	struct rtcap_stats *st;

	if (!rtcap_ctl.count_filtered)
		return;
	st = stats();
	if (st)
		st->n_filtered++;
}

RTCAP_TP("sys_exit")
int rtcap_sys_exit(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	struct rtcap_ctx c;
	__u64 nr = REG_SYSCALL_NR(regs);
	__u32 evt;

	if (nr >= RTCAP_MAX_SYSCALLS)
		return 0;
	evt = rtcap_ctl.filter.evt_type[nr];
	if (!evt) {
		count_filtered();
		return 0;
	}
	if (evt == RTCAP_EVT_EXIT || !REG_IS_NATIVE(regs))
		return 0;
	if (!admit(&c))
		return 0;
	c.ret = (__s64)ctx[1];
	load_args(&c, regs);
	emit(&c, evt, (__s32)nr);
	return 0;
}

/* Only exit/exit_group are emitted here: they never reach sys_exit. The loader
 * attaches this program only when one of them is in the filter. */
RTCAP_TP("sys_enter")
int rtcap_sys_enter(__u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	struct rtcap_ctx c, *cx = &c;
	__u64 nr = ctx[1];
	struct rtcap_wr w;

	if (nr >= RTCAP_MAX_SYSCALLS || rtcap_ctl.filter.evt_type[nr] != RTCAP_EVT_EXIT)
		return 0;
	if (!REG_IS_NATIVE(regs) || !admit(&c))
		return 0;
	c.ret = 0;
	load_args(&c, regs);
	if (begin(&w, &c, RTCAP_EVT_EXIT, RTCAP_EVT_EXIT_NPARAMS, (__s32)nr, 0,
		  RTCAP_EVT_EXIT_MAX_SIZE)) {
		RTCAP_PARAMS_EXIT(PUT_PARAM)
		finish(&w, &c, 0);
	}
	return 0;
}

RTCAP_TP("sched_process_exit")
int rtcap_sched_process_exit(__u64 *ctx __attribute__((unused)))
{
	struct rtcap_ctx c, *cx = &c;
	struct rtcap_wr w;

	if (!rtcap_ctl.procexit || !admit(&c))
		return 0;
	c.ret = (__s64)(rd(TASK(&c)->exit_code) >> 8) & 0xff;
	if (begin(&w, &c, RTCAP_EVT_PROCEXIT, RTCAP_EVT_PROCEXIT_NPARAMS, -1, 0,
		  RTCAP_EVT_PROCEXIT_MAX_SIZE)) {
		RTCAP_PARAMS_PROCEXIT(PUT_PARAM)
		finish(&w, &c, 0);
	}
	return 0;
}

/*
 * Userspace runs this on one CPU (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU) when
 * that CPU has held a batch for a while with no record to push it out. Returns 1 when
 * it found the stage in use (it interrupted a producer, which will flush by itself or
 * at the next try), 0 otherwise.
 */
SEC("raw_tp")
int rtcap_flush(void *ctx __attribute__((unused)))
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct rtcap_stage *stg = bpf_map_lookup_elem(&rtcap_stage_map, &cpu);
	struct rtcap_stats *st = stats();

	if (!stg || !st)
		return 0;
	if (stg->busy)
		return 1;
	stage_claim(stg);
	flush(stg, st);
	stage_release(stg);
	return 0;
}
