// SPDX-License-Identifier: GPL-2.0
/*
 * Helper of bench_syscall_overhead.py (compiled by it with cc -O2).
 *
 *   rtcap_bench loop getppid|openclose|exec ITERATIONS CPU
 *       tight syscall loop pinned to CPU; prints the mean ns per iteration. `exec`
 *       forks, execs $RTCAP_BENCH_EXE (default /bin/true) and waits for it
 *   rtcap_bench consume RING_FD RING_BYTES CPU
 *       drains a BPF ring buffer (inherited fd) until SIGTERM, pinned to CPU; prints
 *       the number of rtcap records it consumed. Plain mmap + epoll, like libbpf's consumer
 *       minus the callback, so the consumer costs what a C engine would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RB_BUSY (1U << 31)
#define RB_DISCARD (1U << 30)
#define RB_HDR 8
#define RTCAP_HDR_SIZE 80

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		perror("sched_setaffinity");
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int loop(const char *mode, long n)
{
	uint64_t t0, t1;
	long i;

	if (!strcmp(mode, "getppid")) {
		t0 = now_ns();
		for (i = 0; i < n; i++)
			syscall(SYS_getppid);
		t1 = now_ns();
	} else if (!strcmp(mode, "openclose")) {
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			int fd = open("/dev/null", O_RDONLY);

			if (fd >= 0)
				close(fd);
		}
		t1 = now_ns();
	} else if (!strcmp(mode, "exec")) {
		const char *exe = getenv("RTCAP_BENCH_EXE");
		char *const argv[] = { "true", NULL };
		char *const envp[] = { NULL };

		if (!exe)
			exe = "/bin/true";
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			pid_t pid = fork();
			int status;

			if (pid == 0) {
				execve(exe, argv, envp);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) {
				fprintf(stderr, "exec of %s failed\n", exe);
				return 1;
			}
		}
		t1 = now_ns();
	} else {
		fprintf(stderr, "unknown loop %s\n", mode);
		return 2;
	}
	printf("%.2f\n", (double)(t1 - t0) / (double)n);
	return 0;
}

static uint64_t drain(uint64_t *cons_pos, const uint64_t *prod_pos, const unsigned char *data,
		      size_t size)
{
	uint64_t cons = __atomic_load_n(cons_pos, __ATOMIC_ACQUIRE);
	uint64_t prod = __atomic_load_n(prod_pos, __ATOMIC_ACQUIRE);
	uint64_t count = 0;

	while (cons < prod) {
		const uint32_t *hdr = (const uint32_t *)(data + (cons & (size - 1)));
		uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);

		if (len & RB_BUSY)
			break;
		len &= ~(RB_BUSY | RB_DISCARD);
		if (!(*hdr & RB_DISCARD)) {
			/* a ring record holds a batch of rtcap records, each 8-aligned with its
			 * length at offset 24 of its header */
			const unsigned char *rec = (const unsigned char *)(hdr + 2);
			uint32_t pos = 0;

			while (pos + RTCAP_HDR_SIZE <= len) {
				uint32_t rlen = *(const uint32_t *)(rec + pos + 24);

				if (rlen < RTCAP_HDR_SIZE)
					break;
				count++;
				pos += (rlen + 7) & ~7u;
			}
		}
		cons += (len + RB_HDR + 7) & ~7ull;
	}
	__atomic_store_n(cons_pos, cons, __ATOMIC_RELEASE);
	return count;
}

static int consume(int fd, size_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	struct epoll_event ev = { .events = EPOLLIN }, out;
	int ep = epoll_create1(0);
	uint64_t count = 0;
	void *c, *p;

	c = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	p = mmap(NULL, page + 2 * size, PROT_READ, MAP_SHARED, fd, page);
	if (c == MAP_FAILED || p == MAP_FAILED || ep < 0) {
		perror("mmap/epoll");
		return 1;
	}
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	/* Wait for the probe's wakeup (it batches them) before each drain instead of
	 * chasing the producer record by record: chasing makes every record's cache
	 * line bounce between the two CPUs while it is being written. */
	while (!stop) {
		epoll_wait(ep, &out, 1, 10);
		count += drain(c, p, (const unsigned char *)p + page, size);
	}
	count += drain(c, p, (const unsigned char *)p + page, size); /* what is left */
	printf("%llu\n", (unsigned long long)count);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "loop")) {
		pin(atoi(argv[4]));
		return loop(argv[2], atol(argv[3]));
	}
	if (argc == 5 && !strcmp(argv[1], "consume")) {
		signal(SIGTERM, on_term);
		pin(atoi(argv[4]));
		return consume(atoi(argv[2]), strtoull(argv[3], NULL, 0));
	}
	fprintf(stderr, "usage: %s loop getppid|openclose N CPU | consume FD BYTES CPU\n", argv[0]);
	return 2;
}
