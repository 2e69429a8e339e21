/* SPDX-License-Identifier: MIT */
/*
 * ring.c - io_uring setup with feature probing, SQE acquisition and submit.
 *
 * Setup asks for the best flags first (SINGLE_ISSUER + DEFER_TASKRUN: task
 * work runs only when this thread waits, no IPIs) and falls back step by step
 * on kernels that refuse them, so an older 6.x kernel still runs.
 *
 * RINGLINE_DISABLE_FEATURES makes the worker act as if the kernel lacked
 * some of what it probes (a comma-separated list of defer_taskrun,
 * single_issuer, sendmsg_zc, zc_report_usage, fd_install, msg_ring, sendto,
 * recv_limit, ktls, waitid, fs_ring, splice, sqpoll, cachestat, or "all"): the tests run
 * the fallbacks with it, and it reproduces an older kernel's behaviour.
 */
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

double rl__clock_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint32_t rl__disabled_features(void)
{
	static const struct {
		const char *name;
		uint32_t feat;
	} names[] = {
		{ "defer_taskrun", RL_FEAT_DEFER_TASKRUN }, { "single_issuer", RL_FEAT_SINGLE_ISSUER },
		{ "sendmsg_zc", RL_FEAT_SENDMSG_ZC },       { "fd_install", RL_FEAT_FD_INSTALL },
		{ "msg_ring", RL_FEAT_MSG_RING },           { "zc_report_usage", RL_FEAT_ZC_REPORT_USAGE },
		{ "sendto", RL_FEAT_SENDTO },               { "recv_limit", RL_FEAT_RECV_LIMIT },
		{ "ktls", RL_FEAT_KTLS },                   { "waitid", RL_FEAT_WAITID },
		{ "fs_ring", RL_FEAT_FS_RING },                 { "splice", RL_FEAT_SPLICE },
		{ "sqpoll", RL_FEAT_SQPOLL },               { "cachestat", RL_FEAT_CACHESTAT },
	};
	static int warned;
	const char *env = getenv("RINGLINE_DISABLE_FEATURES");
	uint32_t off = 0;

	if (!env)
		return 0;
	for (const char *p = env; *p;) {
		size_t n = strcspn(p, ",");
		int known = n == 0;
		if (n == 3 && strncmp(p, "all", 3) == 0) {
			off = ~0u;
			known = 1;
		}
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0) {
				off |= names[i].feat;
				known = 1;
			}
		}
		/* A misspelt name would silently test nothing: say so, once per
		 * process (every worker parses the variable). */
		if (!known && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			fprintf(stderr, "ringline: RINGLINE_DISABLE_FEATURES: unknown feature '%.*s' "
				"ignored (valid: defer_taskrun, single_issuer, sendmsg_zc, "
				"zc_report_usage, fd_install, msg_ring, sendto, recv_limit, ktls, waitid, fs_ring, splice, sqpoll, cachestat, all)\n", (int)n, p);
		p += n + (p[n] == ',');
	}
	return off;
}

static const struct {
	unsigned flags;
	uint32_t feats;
} setups[] = {
	{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	  RL_FEAT_SINGLE_ISSUER | RL_FEAT_DEFER_TASKRUN },
	{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
	  RL_FEAT_SINGLE_ISSUER | RL_FEAT_COOP_TASKRUN },
	{ IORING_SETUP_COOP_TASKRUN, RL_FEAT_COOP_TASKRUN },
	{ 0, 0 },
};

/*
 * Some features are arguments the opcode probe cannot see: the kernel
 * either accepts them or fails the request with -EINVAL while preparing
 * it. So ask once on the fresh ring, on descriptor -1: a request that fails
 * with -EBADF got past preparation (anything else, -EINVAL above all, is
 * taken as a refusal). The SQE is prepared by the caller; nonzero when the
 * kernel accepted it.
 */
static int accepts(struct rl_worker *w, struct io_uring_sqe *sqe)
{
	struct io_uring_cqe *cqe;
	int res = -EINVAL, more = 0;

	io_uring_sqe_set_data64(sqe, 1);
	if (io_uring_submit_and_wait(&w->ring, 1) < 1)
		return 0;
	/* the result, then any notification it promised with F_MORE */
	do {
		if (io_uring_wait_cqe(&w->ring, &cqe) < 0)
			return 0;
		if (!(cqe->flags & IORING_CQE_F_NOTIF)) {
			res = cqe->res;
			more = cqe->flags & IORING_CQE_F_MORE;
		} else {
			more = 0;
		}
		io_uring_cqe_seen(&w->ring, cqe);
	} while (more);
	return res == -EBADF;
}

/* SENDMSG_ZC came in 6.1 but IORING_SEND_ZC_REPORT_USAGE only in 6.2, and
 * 6.1 fails every send that asks for it. */
static int zc_report_usage_ok(struct rl_worker *w)
{
	struct msghdr m;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe)
		return 0;
	memset(&m, 0, sizeof(m));
	io_uring_prep_sendmsg_zc(sqe, -1, &m, 0);
	sqe->ioprio |= RL_IORING_SEND_ZC_REPORT_USAGE;
	return accepts(w, sqe);
}

/* SEND with a destination address (sendto) came in 6.1; before, a SEND
 * with addr2 set fails. */
static int sendto_ok(struct rl_worker *w)
{
	struct sockaddr_in sin;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe)
		return 0;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	io_uring_prep_send(sqe, -1, NULL, 0, 0);
	io_uring_prep_send_set_addr(sqe, (const struct sockaddr *)&sin, sizeof(sin));
	return accepts(w, sqe);
}

/* A multishot RECV with a total byte limit (the SQE word newer UAPI calls
 * optlen) came in 6.17; before, RECV refuses that word (it is file_index
 * there) with -EINVAL while preparing. */
/* Kernel TLS: the "tls" ULP is listed and attaches to a connected TCP
 * socket (TCP_ULP needs one: a loopback pair made for the probe). Only
 * probed: the record layer is OpenSSL's in userspace either way, and this
 * bit says whether a kernel data path could be used. Once per process. */
static int ktls_probe(void)
{
	char buf[256] = { 0 };
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	int listed = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
		listed |= strcmp(tok, "tls") == 0;
	if (!listed)
		return 0;
	int ok = 0;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	if (l >= 0 && c >= 0 && bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    listen(l, 1) == 0 && getsockname(l, (struct sockaddr *)&a, &alen) == 0 &&
	    connect(c, (struct sockaddr *)&a, sizeof(a)) == 0)
		ok = setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
	if (c >= 0)
		close(c);
	if (l >= 0)
		close(l);
	return ok;
}

static int ktls_ok(void)
{
	static int cached = -1; /* racing workers compute the same answer */
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		v = ktls_probe();
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

static int recv_limit_ok(struct rl_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe)
		return 0;
	io_uring_prep_recv_multishot(sqe, -1, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	rl__sqe_set_recv_limit(sqe, 1);
	return accepts(w, sqe);
}

/* Operations the worker cannot run without, with the kernel that added them. */
static const struct {
	int op;
	const char *name;
} required_ops[] = {
	{ IORING_OP_ACCEPT, "ACCEPT" },   { IORING_OP_RECV, "RECV" },
	{ IORING_OP_SEND, "SEND" },       { IORING_OP_CLOSE, "CLOSE" },
	{ IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" }, { IORING_OP_CONNECT, "CONNECT" },
	{ IORING_OP_SHUTDOWN, "SHUTDOWN" }, { IORING_OP_FILES_UPDATE, "FILES_UPDATE" },
	{ IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT" }, { IORING_OP_READ, "READ" },
};

/* With SQPOLL the kernel refuses DEFER_TASKRUN and COOP_TASKRUN (its
 * thread runs the task work), so only SINGLE_ISSUER is asked for. */
static const struct {
	unsigned flags;
	uint32_t feats;
} sqpoll_setups[] = {
	{ IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER, RL_FEAT_SQPOLL | RL_FEAT_SINGLE_ISSUER },
	{ IORING_SETUP_SQPOLL, RL_FEAT_SQPOLL },
};

/* The SQ thread sleeps after this long without submissions (the original
 * runtime's sqpoll_idle_ms); the next submit wakes it with one syscall. */
#define RL_SQPOLL_IDLE_MS 1000

/* sqpoll=1, or RINGLINE_SQPOLL=1 in the environment (so a test suite can
 * run every worker with it, as RINGLINE_DISABLE_FEATURES does the reverse). */
static int sqpoll_wanted(const struct rl_worker *w)
{
	const char *env = getenv("RINGLINE_SQPOLL");
	return w->cfg.sqpoll || (env && strcmp(env, "1") == 0);
}

/* Try the SQPOLL setups: 0 and the ring made, or the last error. A kernel
 * that refuses (-EPERM in a sandbox, -EINVAL for a CPU the process may not
 * use) is reported once per process; the caller then makes the default
 * ring: sqpoll=1 is a tuning, not a requirement (RL_FEAT_SQPOLL says which
 * the worker got). */
static int sqpoll_setup(struct rl_worker *w, uint32_t off)
{
	static int warned;
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof(sqpoll_setups) / sizeof(sqpoll_setups[0]); i++) {
		struct io_uring_params p;
		if (sqpoll_setups[i].feats & off & ~RL_FEAT_SQPOLL)
			continue;
		memset(&p, 0, sizeof(p));
		p.flags = sqpoll_setups[i].flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
		p.cq_entries = w->cfg.sq_entries * 4;
		p.sq_thread_idle = RL_SQPOLL_IDLE_MS;
		if (w->cfg.sqpoll_cpu != RL_SQPOLL_ANY_CPU) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = w->cfg.sqpoll_cpu;
		}
		rc = io_uring_queue_init_params(w->cfg.sq_entries, &w->ring, &p);
		if (rc == 0) {
			if (p.features & IORING_FEAT_EXT_ARG) {
				w->features = sqpoll_setups[i].feats;
				return 0;
			}
			io_uring_queue_exit(&w->ring);
			rc = -EOPNOTSUPP;
			break;
		}
		if (rc != -EINVAL)
			break;
	}
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED)) {
		if (w->cfg.sqpoll_cpu != RL_SQPOLL_ANY_CPU)
			fprintf(stderr, "ringline: sqpoll=1 (sqpoll_cpu=%u) refused by the kernel: %s; "
				"running without SQPOLL\n", w->cfg.sqpoll_cpu, strerror(-rc));
		else
			fprintf(stderr, "ringline: sqpoll=1 refused by the kernel: %s; running "
				"without SQPOLL\n", strerror(-rc));
	}
	return rc;
}

int rl__ring_setup(struct rl_worker *w, char *msg, size_t msglen)
{
	int rc = -EINVAL;
	uint32_t off = rl__disabled_features();
	int sqpoll = !(off & RL_FEAT_SQPOLL) && sqpoll_wanted(w) && sqpoll_setup(w, off) == 0;
	for (size_t i = 0; !sqpoll && i < sizeof(setups) / sizeof(setups[0]); i++) {
		struct io_uring_params p;
		if (setups[i].feats & off)
			continue;
		memset(&p, 0, sizeof(p));
		p.flags = setups[i].flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
		p.cq_entries = w->cfg.sq_entries * 4;
		rc = io_uring_queue_init_params(w->cfg.sq_entries, &w->ring, &p);
		if (rc == 0) {
			w->features = setups[i].feats;
			if (!(p.features & IORING_FEAT_EXT_ARG)) {
				io_uring_queue_exit(&w->ring);
				if (msg)
					snprintf(msg, msglen, "io_uring lacks EXT_ARG waits (kernel 5.11+ needed)");
				return -EOPNOTSUPP;
			}
			break;
		}
		if (rc != -EINVAL)
			break;
	}
	if (sqpoll)
		rc = 0;
	if (rc) {
		if (msg)
			snprintf(msg, msglen, "io_uring_setup failed: %s%s", strerror(-rc),
				 rc == -EPERM ? " (io_uring disabled by sysctl?)" : "");
		return rc;
	}
	w->ring_ok = 1;

	struct io_uring_probe *probe = io_uring_get_probe_ring(&w->ring);
	if (!probe) {
		if (msg)
			snprintf(msg, msglen, "io_uring opcode probe failed (kernel too old)");
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; i < sizeof(required_ops) / sizeof(required_ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, required_ops[i].op)) {
			if (msg)
				snprintf(msg, msglen, "kernel lacks io_uring op %s", required_ops[i].name);
			io_uring_free_probe(probe);
			return -EOPNOTSUPP;
		}
	}
	if (io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC))
		w->features |= RL_FEAT_SENDMSG_ZC;
	if (io_uring_opcode_supported(probe, IORING_OP_MSG_RING))
		w->features |= RL_FEAT_MSG_RING;
	/* File operations: each the ring lacks runs on the fallback pool
	 * (fileop.c); RL_FEAT_FS_RING says the ring has them all. */
	static const int fs_ops[RL_FSOP__COUNT] = {
		[RL_FSOP_OPEN] = IORING_OP_OPENAT,	  [RL_FSOP_READ] = IORING_OP_READ,
		[RL_FSOP_WRITE] = IORING_OP_WRITE,	  [RL_FSOP_READV] = IORING_OP_READV,
		[RL_FSOP_WRITEV] = IORING_OP_WRITEV,	  [RL_FSOP_READ_FIXED] = IORING_OP_READ_FIXED,
		[RL_FSOP_WRITE_FIXED] = IORING_OP_WRITE_FIXED, [RL_FSOP_FSYNC] = IORING_OP_FSYNC,
		[RL_FSOP_STAT] = IORING_OP_STATX,	  [RL_FSOP_UNLINK] = IORING_OP_UNLINKAT,
		[RL_FSOP_RENAME] = IORING_OP_RENAMEAT,	  [RL_FSOP_MKDIR] = IORING_OP_MKDIRAT,
		[RL_FSOP_CLOSE] = IORING_OP_CLOSE,	  [RL_FSOP_LISTDIR] = -1,
	};
	w->fs.ring_ops = 0;
	for (int i = 0; i < RL_FSOP__COUNT; i++)
		if (fs_ops[i] >= 0 && io_uring_opcode_supported(probe, fs_ops[i]))
			w->fs.ring_ops |= 1u << i;
	if (w->fs.ring_ops == (((1u << RL_FSOP__COUNT) - 1) & ~(1u << RL_FSOP_LISTDIR)))
		w->features |= RL_FEAT_FS_RING;
	if (io_uring_opcode_supported(probe, IORING_OP_SPLICE))
		w->features |= RL_FEAT_SPLICE;
	if (probe->last_op >= RL_IORING_OP_FIXED_FD_INSTALL &&
	    io_uring_opcode_supported(probe, RL_IORING_OP_FIXED_FD_INSTALL))
		w->features |= RL_FEAT_FD_INSTALL;
	if (probe->last_op >= RL_IORING_OP_WAITID &&
	    io_uring_opcode_supported(probe, RL_IORING_OP_WAITID))
		w->features |= RL_FEAT_WAITID;
	io_uring_free_probe(probe);
	if ((w->features & RL_FEAT_SENDMSG_ZC) && zc_report_usage_ok(w))
		w->features |= RL_FEAT_ZC_REPORT_USAGE;
	if (sendto_ok(w))
		w->features |= RL_FEAT_SENDTO;
	if (recv_limit_ok(w))
		w->features |= RL_FEAT_RECV_LIMIT;
	if (rl__cachestat_ok())
		w->features |= RL_FEAT_CACHESTAT;
	if (!(off & RL_FEAT_KTLS) && ktls_ok())
		w->features |= RL_FEAT_KTLS;
	w->features &= ~off;
	if (off & RL_FEAT_FS_RING)
		w->fs.ring_ops = 0; /* everything on the pool: how its tests run */
	return 0;
}

static int enter_retry(struct rl_worker *w)
{
	/* bounded: a CQ the kernel cannot overflow any further stays full
	 * until the caller reaps, which only the next poll does */
	for (int tries = 0; tries < 64; tries++) {
		int rc = io_uring_submit(&w->ring);
		if (rc >= 0) {
			w->m.sqes_submitted += (uint64_t)rc;
			return rc;
		}
		if (rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
			return rc;
		if (rc == -EBUSY || rc == -EAGAIN) {
			/* CQ is backed up: the kernel wants completions reaped
			 * first. Run task work so they become visible; the caller's
			 * next poll reaps them. */
			io_uring_get_events(&w->ring);
			if (io_uring_sq_space_left(&w->ring))
				return 0;
		}
	}
	return -EBUSY;
}

int rl__submit(struct rl_worker *w)
{
	return enter_retry(w);
}

unsigned rl__sq_room(struct rl_worker *w, unsigned n)
{
	if (io_uring_sq_space_left(&w->ring) < n)
		enter_retry(w);
	if (w->features & RL_FEAT_SQPOLL) {
		/* the kernel's thread consumes the SQ on its own time, and may
		 * have gone idle after the submit looked: submit again (that
		 * wakes it), then wait for room; bounded */
		double give_up = rl__clock_now() + 1.0;
		while (io_uring_sq_space_left(&w->ring) < n && rl__clock_now() < give_up) {
			io_uring_submit(&w->ring);
			io_uring_sqring_wait(&w->ring);
		}
	}
	return io_uring_sq_space_left(&w->ring);
}

void rl__sq_drain(struct rl_worker *w)
{
	if (!(w->features & RL_FEAT_SQPOLL))
		return;
	/* The thread was woken by the submit (or is polling): it reads the
	 * ring within microseconds; submit again in case it went idle.
	 * Bounded (a thread that never reads is a kernel failure the caller
	 * sees as SQEs still ready) so the worker cannot hang here. */
	double give_up = rl__clock_now() + 1.0;
	while (io_uring_sq_ready(&w->ring) > 0 && rl__clock_now() < give_up) {
		io_uring_submit(&w->ring);
		sched_yield();
	}
}

struct io_uring_sqe *rl__sqe(struct rl_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (sqe)
		return sqe;
	/* SQ full: hand the batch to the kernel, never drop an SQE. With
	 * SQPOLL the submit only wakes the kernel's thread, which consumes
	 * the SQ on its own time: wait until it made room. */
	rl__sq_room(w, 1);
	return io_uring_get_sqe(&w->ring);
}
