// SPDX-License-Identifier: GPL-2.0
/*
 * rtcap: syscall capture through the raw_syscalls tracepoints into per-CPU rings,
 * read by userspace from /dev/rtcap.
 *
 * One event per syscall, built at sys_exit (sys_enter only for syscalls that never
 * return), plus process exit from sched_process_exit. Each CPU owns a byte ring; the
 * producer is that CPU with preemption disabled, the consumer is read(), serialised by
 * a mutex, so each ring is single-producer/single-consumer and lock-free.
 *
 * Ring positions grow forever (u64); a record never wraps the ring's end: when it
 * would, the producer skips to the start, and marks the skipped bytes with a header of
 * type 0 when they can hold one (read() skips both).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/init.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/vmalloc.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/tracepoint.h>
#include <linux/compat.h>
#include <linux/log2.h>
#include <linux/wait.h>
#include <asm/syscall.h>

#include "rtcap_kmod.h"
#include "rtcap_compat.h"

static unsigned int ring_kb = 2048;
module_param(ring_kb, uint, 0444);
MODULE_PARM_DESC(ring_kb, "per-CPU ring size in KiB, rounded up to a power of two (min 64)");

struct rtcap_cpu **rtcap_cpus;
u32 rtcap_ring_size;

/* Hooks, found by name: not every kernel exports the tracepoint symbols to modules. */
static struct tracepoint *tp_sys_enter, *tp_sys_exit, *tp_sched_exit;

/* The filter: event type per native syscall number, 0 = not captured. */
static u8 rtcap_filter[RTCAP_MAX_SYSCALLS];
static u32 rtcap_ignore_tgid;

static DEFINE_MUTEX(rtcap_ctl_lock);	/* open/ioctl state, hook registration */
static DEFINE_MUTEX(rtcap_read_lock);	/* the single consumer of every ring */
static bool rtcap_capturing;
static bool rtcap_enter_hooked;
static atomic_t rtcap_open_count = ATOMIC_INIT(0);
static unsigned int rtcap_read_next_cpu;

struct rtcap_file {
	bool handshake_ok;
};

/* --------------------------------------------------------------------- the ring */

void rtcap_rec_commit(struct rtcap_rec *r)
{
	struct rtcap_cpu *c = r->cpu;
	struct rtcap_event_hdr *h = (struct rtcap_event_hdr *)r->buf;
	u32 size = rtcap_ring_size, mask = size - 1;
	u64 head = c->head, tail = smp_load_acquire(&c->tail);
	u32 need, pad = 0, pos;

	c->stats.n_evts++;
	if (r->bug || r->idx != r->nparams || r->off > RTCAP_SCRATCH_SIZE) {
		c->stats.n_drops_bug++;
		return;
	}
	h->len = r->off;
	need = RTCAP_ALIGN8(r->off);
	pos = head & mask;
	if (need > size - pos)
		pad = size - pos;
	if (head + pad + need - tail > size) {
		c->stats.n_drops_buffer++;
		return;
	}
	if (pad >= RTCAP_HDR_SIZE) {
		struct rtcap_event_hdr *ph = (struct rtcap_event_hdr *)(c->ring + pos);

		ph->type = 0;
		ph->len = pad;
	}
	memcpy(c->ring + ((head + pad) & mask), r->buf, r->off);
	if (h->flags & RTCAP_F_PARAM_FAULT)
		c->stats.n_partial_pf++;
	if (h->flags & RTCAP_F_TRUNCATED)
		c->stats.n_truncated++;
	/* Publish the bytes before the position that exposes them to read(). */
	smp_store_release(&c->head, head + pad + need);
}

/* Copy whole records of one CPU's ring to `ubuf`; returns bytes copied or -EFAULT. */
static ssize_t rtcap_drain_cpu(struct rtcap_cpu *c, char __user *ubuf, size_t room)
{
	u32 size = rtcap_ring_size, mask = size - 1;
	u64 head = smp_load_acquire(&c->head), tail = c->tail;
	size_t copied = 0;

	while (tail != head) {
		u32 pos = tail & mask, left = size - pos;
		struct rtcap_event_hdr *h;
		u32 len, need;

		if (left < RTCAP_HDR_SIZE) {
			tail += left;
			continue;
		}
		h = (struct rtcap_event_hdr *)(c->ring + pos);
		if (h->type == 0) {	/* padding always runs to the ring's end */
			tail += left;
			continue;
		}
		len = h->len;
		need = RTCAP_ALIGN8(len);
		if (unlikely(len < RTCAP_HDR_SIZE || need > left || need > head - tail)) {
			/* Cannot happen unless the producer is broken: discard, never loop. */
			c->stats.n_drops_bug++;
			tail = head;
			break;
		}
		/* The stream keeps 8-byte alignment: copy the padding too. */
		if (need > room - copied)
			break;
		if (copy_to_user(ubuf + copied, h, need)) {
			smp_store_release(&c->tail, tail);
			return -EFAULT;
		}
		copied += need;
		tail += need;
	}
	smp_store_release(&c->tail, tail);
	return copied;
}

static ssize_t rtcap_read(struct file *f, char __user *ubuf, size_t len, loff_t *ppos)
{
	ssize_t total = 0;
	unsigned int n, cpu;

	if (len < RTCAP_ALIGN8(RTCAP_MAX_RECORD_SIZE))
		return -EINVAL;	/* a buffer that may not fit one record could never progress */
	for (;;) {
		if (mutex_lock_interruptible(&rtcap_read_lock))
			return -ERESTARTSYS;
		/* Round-robin start, so a busy CPU cannot starve the others' rings. */
		cpu = rtcap_read_next_cpu;
		for (n = 0; n < nr_cpu_ids; n++, cpu = (cpu + 1) % nr_cpu_ids) {
			ssize_t got;

			if (!cpu_possible(cpu))
				continue;
			got = rtcap_drain_cpu(rtcap_cpus[cpu], ubuf + total, len - total);
			if (got < 0) {
				mutex_unlock(&rtcap_read_lock);
				return total ? total : got;
			}
			total += got;
		}
		rtcap_read_next_cpu = (rtcap_read_next_cpu + 1) % nr_cpu_ids;
		mutex_unlock(&rtcap_read_lock);
		if (total || (f->f_flags & O_NONBLOCK))
			return total ? total : -EAGAIN;
		/*
		 * Producers never wake us: a wake-up per event would cost more than the event.
		 * Blocking readers poll every 10 ms instead.
		 */
		schedule_timeout_interruptible(msecs_to_jiffies(10));
		if (signal_pending(current))
			return -ERESTARTSYS;
	}
}

/* ------------------------------------------------------------------- the probes */

static inline struct rtcap_cpu *rtcap_this_cpu(void)
{
	return rtcap_cpus[smp_processor_id()];
}

static void rtcap_emit_syscall(struct pt_regs *regs, long nr, long ret, bool at_enter)
{
	struct rtcap_cpu *c;
	struct rtcap_rec rec;
	unsigned long args[6];
	u16 type;

	/* ia32/x32 syscalls have other numbers than the native table the filter uses. */
	if (nr < 0 || nr >= RTCAP_MAX_SYSCALLS || in_compat_syscall())
		return;
	/*
	 * Since 6.14 the syscall tracepoints may call us preemptible; the per-CPU ring
	 * and scratch need the CPU to stay ours until the record is committed.
	 */
	preempt_disable();
	c = rtcap_this_cpu();
	type = READ_ONCE(rtcap_filter[nr]);
	if (!type || rtcap_event_at_enter(type) != at_enter) {
		if (!at_enter)
			c->stats.n_filtered++;
		goto out;
	}
	if (rtcap_ignore_tgid && current->tgid == READ_ONCE(rtcap_ignore_tgid)) {
		c->stats.n_ignored_self++;
		goto out;
	}
	syscall_get_arguments(current, regs, args);
	rtcap_rec_begin(&rec, c, type, rtcap_event_nparams(type), nr, ret);
	rtcap_fill_syscall(&rec, type, args, ret);
	rtcap_rec_commit(&rec);
out:
	preempt_enable();
}

static void rtcap_probe_sys_exit(void *data, struct pt_regs *regs, long ret)
{
	rtcap_emit_syscall(regs, syscall_get_nr(current, regs), ret, false);
}

static void rtcap_probe_sys_enter(void *data, struct pt_regs *regs, long id)
{
	rtcap_emit_syscall(regs, id, 0, true);
}

static void rtcap_probe_sched_exit(RTCAP_SCHED_EXIT_PROTO)
{
	struct rtcap_cpu *c;
	struct rtcap_rec rec;

	preempt_disable();
	c = rtcap_this_cpu();
	if (rtcap_ignore_tgid && p->tgid == READ_ONCE(rtcap_ignore_tgid)) {
		c->stats.n_ignored_self++;
	} else {
		rtcap_rec_begin(&rec, c, RTCAP_EVT_PROCEXIT, RTCAP_EVT_PROCEXIT_NPARAMS, -1, 0);
		rtcap_fill_procexit(&rec, p);
		rtcap_rec_commit(&rec);
	}
	preempt_enable();
}

static void rtcap_find_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sys_enter"))
		tp_sys_enter = tp;
	else if (!strcmp(tp->name, "sys_exit"))
		tp_sys_exit = tp;
	else if (!strcmp(tp->name, "sched_process_exit"))
		tp_sched_exit = tp;
}

static bool rtcap_filter_needs_enter(void)
{
	int nr;

	for (nr = 0; nr < RTCAP_MAX_SYSCALLS; nr++)
		if (rtcap_filter[nr] && rtcap_event_at_enter(rtcap_filter[nr]))
			return true;
	return false;
}

/* sys_enter is hooked only while the filter holds an at-enter event: it costs every call. */
static int rtcap_sync_enter_hook(void)
{
	bool want = rtcap_capturing && rtcap_filter_needs_enter();
	int err = 0;

	if (want && !rtcap_enter_hooked)
		err = tracepoint_probe_register(tp_sys_enter, rtcap_probe_sys_enter, NULL);
	else if (!want && rtcap_enter_hooked)
		err = tracepoint_probe_unregister(tp_sys_enter, rtcap_probe_sys_enter, NULL);
	if (!err)
		rtcap_enter_hooked = want;
	return err;
}

static void rtcap_reset_rings(void)
{
	unsigned int cpu;

	for_each_possible_cpu(cpu) {
		struct rtcap_cpu *c = rtcap_cpus[cpu];

		c->head = 0;
		c->tail = 0;
		memset(&c->stats, 0, sizeof(c->stats));
	}
}

static int rtcap_start(void)
{
	int err;

	if (rtcap_capturing)
		return 0;
	/* No probe runs now (never registered, or unregistered and synchronised). */
	mutex_lock(&rtcap_read_lock);
	rtcap_reset_rings();
	mutex_unlock(&rtcap_read_lock);
	err = tracepoint_probe_register(tp_sys_exit, rtcap_probe_sys_exit, NULL);
	if (err)
		return err;
	err = tracepoint_probe_register(tp_sched_exit, rtcap_probe_sched_exit, NULL);
	if (err)
		goto undo_exit;
	rtcap_capturing = true;
	err = rtcap_sync_enter_hook();
	if (err)
		goto undo_sched;
	return 0;
undo_sched:
	rtcap_capturing = false;
	tracepoint_probe_unregister(tp_sched_exit, rtcap_probe_sched_exit, NULL);
undo_exit:
	tracepoint_probe_unregister(tp_sys_exit, rtcap_probe_sys_exit, NULL);
	tracepoint_synchronize_unregister();
	return err;
}

static void rtcap_stop(void)
{
	if (!rtcap_capturing)
		return;
	rtcap_capturing = false;
	rtcap_sync_enter_hook();
	tracepoint_probe_unregister(tp_sched_exit, rtcap_probe_sched_exit, NULL);
	tracepoint_probe_unregister(tp_sys_exit, rtcap_probe_sys_exit, NULL);
	/* After this no probe is still running on any CPU: rings and module may go. */
	tracepoint_synchronize_unregister();
}

/* ----------------------------------------------------------------- the device */

static int rtcap_open(struct inode *inode, struct file *f)
{
	struct rtcap_file *rf;

	/* One consumer at a time: the rings have a single tail each. */
	if (atomic_cmpxchg(&rtcap_open_count, 0, 1) != 0)
		return -EBUSY;
	rf = kzalloc(sizeof(*rf), GFP_KERNEL);
	if (!rf) {
		atomic_set(&rtcap_open_count, 0);
		return -ENOMEM;
	}
	f->private_data = rf;
	return 0;
}

static int rtcap_release(struct inode *inode, struct file *f)
{
	mutex_lock(&rtcap_ctl_lock);
	rtcap_stop();
	memset(rtcap_filter, 0, sizeof(rtcap_filter));
	rtcap_ignore_tgid = 0;
	mutex_unlock(&rtcap_ctl_lock);
	kfree(f->private_data);
	atomic_set(&rtcap_open_count, 0);
	return 0;
}

static long rtcap_set_filter(const void __user *uarg)
{
	struct rtcap_filter *flt;
	long err = 0;
	int nr;

	flt = kmalloc(sizeof(*flt), GFP_KERNEL);
	if (!flt)
		return -ENOMEM;
	if (copy_from_user(flt, uarg, sizeof(*flt))) {
		err = -EFAULT;
		goto out;
	}
	for (nr = 0; nr < RTCAP_MAX_SYSCALLS; nr++) {
		u8 t = flt->evt_type[nr];

		/* procexit has no syscall; any other id must be one the schema defines. */
		if (t && (t == RTCAP_EVT_PROCEXIT || rtcap_event_nparams(t) == 0xff)) {
			err = -EINVAL;
			goto out;
		}
	}
	for (nr = 0; nr < RTCAP_MAX_SYSCALLS; nr++)
		WRITE_ONCE(rtcap_filter[nr], flt->evt_type[nr]);
	err = rtcap_sync_enter_hook();
out:
	kfree(flt);
	return err;
}

static long rtcap_get_stats(void __user *uarg)
{
	struct rtcap_stats_query q;

	if (copy_from_user(&q, uarg, sizeof(q)))
		return -EFAULT;
	if (q.reserved || q.cpu >= nr_cpu_ids || !cpu_possible(q.cpu))
		return -EINVAL;
	/* u64 loads are atomic on 64-bit: a racy snapshot, never a torn counter. */
	q.stats = rtcap_cpus[q.cpu]->stats;
	if (copy_to_user(uarg, &q, sizeof(q)))
		return -EFAULT;
	return 0;
}

static long rtcap_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct rtcap_file *rf = f->private_data;
	void __user *uarg = (void __user *)arg;
	long err = 0;

	if (cmd == RTCAP_IOCTL_GET_API_VERSION) {
		u64 hash = RTCAP_SCHEMA_HASH;

		if (copy_to_user(uarg, &hash, sizeof(hash)))
			return -EFAULT;
		rf->handshake_ok = true;
		return 0;
	}
	if (cmd == RTCAP_IOCTL_GET_NCPUS) {
		u32 n = nr_cpu_ids;

		return copy_to_user(uarg, &n, sizeof(n)) ? -EFAULT : 0;
	}
	if (cmd == RTCAP_IOCTL_GET_STATS)
		return rtcap_get_stats(uarg);
	/*
	 * Nothing that changes capture before the client has read our schema hash: a
	 * client built from another schema would misparse every record.
	 */
	if (!rf->handshake_ok)
		return -EPROTO;

	mutex_lock(&rtcap_ctl_lock);
	switch (cmd) {
	case RTCAP_IOCTL_START:
		err = rtcap_start();
		break;
	case RTCAP_IOCTL_STOP:
		rtcap_stop();
		break;
	case RTCAP_IOCTL_SET_FILTER:
		err = rtcap_set_filter(uarg);
		break;
	case RTCAP_IOCTL_SET_IGNORE_TGID: {
		u32 tgid;

		if (copy_from_user(&tgid, uarg, sizeof(tgid)))
			err = -EFAULT;
		else
			WRITE_ONCE(rtcap_ignore_tgid, tgid);
		break;
	}
	default:
		err = -ENOTTY;
	}
	mutex_unlock(&rtcap_ctl_lock);
	return err;
}

static const struct file_operations rtcap_fops = {
	.owner = THIS_MODULE,
	.open = rtcap_open,
	.release = rtcap_release,
	.read = rtcap_read,
	.unlocked_ioctl = rtcap_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice rtcap_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "rtcap",
	.fops = &rtcap_fops,
	.mode = 0600,
};

/* ------------------------------------------------------------ init and exit */

static void rtcap_free_cpus(void)
{
	unsigned int cpu;

	if (!rtcap_cpus)
		return;
	for_each_possible_cpu(cpu) {
		struct rtcap_cpu *c = rtcap_cpus[cpu];

		if (!c)
			continue;
		vfree(c->ring);
		kfree(c->scratch);
		kfree(c->pathbuf);
		kfree(c);
	}
	kfree(rtcap_cpus);
	rtcap_cpus = NULL;
}

static int rtcap_alloc_cpus(void)
{
	unsigned int cpu;

	rtcap_cpus = kcalloc(nr_cpu_ids, sizeof(*rtcap_cpus), GFP_KERNEL);
	if (!rtcap_cpus)
		return -ENOMEM;
	for_each_possible_cpu(cpu) {
		struct rtcap_cpu *c = kzalloc_node(sizeof(*c), GFP_KERNEL, cpu_to_node(cpu));

		if (!c)
			return -ENOMEM;
		rtcap_cpus[cpu] = c;
		c->ring = vmalloc_node(rtcap_ring_size, cpu_to_node(cpu));
		c->scratch = kmalloc_node(RTCAP_SCRATCH_SIZE, GFP_KERNEL, cpu_to_node(cpu));
		c->pathbuf = kmalloc_node(PATH_MAX, GFP_KERNEL, cpu_to_node(cpu));
		if (!c->ring || !c->scratch || !c->pathbuf)
			return -ENOMEM;
	}
	return 0;
}

static int __init rtcap_init(void)
{
	int err;

	for_each_kernel_tracepoint(rtcap_find_tracepoint, NULL);
	if (!tp_sys_enter || !tp_sys_exit || !tp_sched_exit) {
		pr_err("rtcap: raw_syscalls/sched tracepoints not found (CONFIG_HAVE_SYSCALL_TRACEPOINTS?)\n");
		return -ENOENT;
	}
	rtcap_ring_size = roundup_pow_of_two(max(ring_kb, 64U) * 1024UL);
	err = rtcap_alloc_cpus();
	if (err)
		goto fail;
	err = misc_register(&rtcap_dev);
	if (err)
		goto fail;
	pr_info("rtcap: api %d schema %llx, %u KiB ring per CPU\n", RTCAP_API_VERSION,
		(unsigned long long)RTCAP_SCHEMA_HASH, rtcap_ring_size / 1024);
	return 0;
fail:
	rtcap_free_cpus();
	return err;
}

static void __exit rtcap_exit(void)
{
	misc_deregister(&rtcap_dev);
	/* release() already stopped capture; stop again in case init-time state leaked. */
	mutex_lock(&rtcap_ctl_lock);
	rtcap_stop();
	mutex_unlock(&rtcap_ctl_lock);
	rtcap_free_cpus();
}

module_init(rtcap_init);
module_exit(rtcap_exit);

MODULE_LICENSE("GPL v2");
MODULE_DESCRIPTION("rtcap syscall capture: raw_syscalls tracepoints to per-CPU rings");
MODULE_AUTHOR("driverkit-py authors");
