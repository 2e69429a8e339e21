/* SPDX-License-Identifier: MIT */
/* helpers.c - the shared fixture of the core's C tests (see helpers.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

void t_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: FAIL: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

double t_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t t_rand(uint64_t *s)
{
	/* xorshift64*: reproducible runs from a fixed seed */
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* One 64-bit word of the stream per 8 bytes: no short period, so a
 * duplicated, dropped or reordered chunk of any size is caught. */
static uint64_t pattern_word(uint32_t seed, uint64_t word)
{
	uint64_t x = word ^ ((uint64_t)seed * 0x9e3779b97f4a7c15ull);
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint8_t pattern_byte(uint32_t seed, uint64_t pos, uint64_t *cache_word, uint64_t *cache)
{
	uint64_t wi = pos >> 3;
	if (wi != *cache_word) {
		*cache_word = wi;
		*cache = pattern_word(seed, wi);
	}
	return (uint8_t)(*cache >> ((pos & 7) * 8));
}

void t_pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t off)
{
	uint64_t cw = UINT64_MAX, c = 0;
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_byte(seed, off + i, &cw, &c);
}

long long t_pattern_find_bad(const uint8_t *buf, size_t len, uint32_t seed, uint64_t off)
{
	uint64_t cw = UINT64_MAX, c = 0;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != pattern_byte(seed, off + i, &cw, &c))
			return (long long)i;
	return -1;
}

/* ---- the worker fixture ---- */

void t_config_small(struct rl_config *cfg)
{
	rl_config_init(cfg);
	cfg->sq_entries = 64;
	cfg->recv_buffers = 64;
	cfg->recv_buffer_size = 4096;
	cfg->send_slots = 64;
	cfg->send_slot_size = 4096;
	cfg->max_connections = 64;
	cfg->max_timers = 1024;
}

void t_init(struct t_ctx *t, const struct rl_config *cfg)
{
	char msg[256] = "";
	memset(t, 0, sizeof(*t));
	t->lid = -1;
	if (cfg)
		t->cfg = *cfg;
	else
		t_config_small(&t->cfg);
	int rc = rl_worker_new(&t->cfg, &t->w, msg, sizeof(msg));
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "skip: io_uring unavailable: %s\n", msg);
		exit(T_SKIP);
	}
	ASSERT(rc == 0, "rl_worker_new: %s (%s)", rl_strerror(rc), msg);
}

int t_listen(struct t_ctx *t, const char *addr)
{
	int id = rl_listen(t->w, addr ? addr : "127.0.0.1:0", 0);
	ASSERT(id >= 0, "rl_listen %s: %s", addr ? addr : "127.0.0.1:0", rl_strerror(id));
	t->lid = id;
	t->port = rl_listener_port(t->w, id);
	if (!addr || strncmp(addr, "unix:", 5) != 0)
		ASSERT(t->port > 0, "rl_listener_port: %d", t->port);
	return id;
}

int t_step(struct t_ctx *t, int timeout_ms)
{
	int max = t->maxev > 0 && t->maxev < T_MAX_EV ? t->maxev : T_MAX_EV;
	int n = rl_worker_poll(t->w, t->ev, max, timeout_ms);
	ASSERT(n >= 0 && n <= max, "rl_worker_poll: %d (%s)", n, rl_strerror(n));
	for (int i = 0; i < n; i++) {
		const struct rl_event *e = &t->ev[i];
		ASSERT(e->type >= RL_EV_ACCEPTED && (e->type <= RL_EV_NVME || e->type == RL_EV_FILE), "bad event type %u",
		       e->type);
		t->nevents[e->type]++;
		if (t->nlog == t->logcap) {
			t->logcap = t->logcap ? t->logcap * 2 : 256;
			t->log = realloc(t->log, t->logcap * sizeof(*t->log));
			CHECK(t->log != NULL);
		}
		t->log[t->nlog++] = *e;
		if (t->on_event)
			t->on_event(t, e);
	}
	return n;
}

static int matches(const struct rl_event *e, uint32_t type, uint32_t slot, uint32_t gen)
{
	return e->type == type && (slot == T_ANY || e->slot == slot) &&
	       (gen == T_ANY || e->gen == gen);
}

int t_count(const struct t_ctx *t, uint32_t type, uint32_t slot, uint32_t gen)
{
	int n = 0;
	for (size_t i = 0; i < t->nlog; i++)
		n += matches(&t->log[i], type, slot, gen);
	return n;
}

const struct rl_event *t_last(const struct t_ctx *t, uint32_t type, uint32_t slot, uint32_t gen)
{
	for (size_t i = t->nlog; i-- > 0;)
		if (matches(&t->log[i], type, slot, gen))
			return &t->log[i];
	return NULL;
}

void t_wait_(struct t_ctx *t, t_pred_fn pred, double secs, const char *what, const char *file,
	     int line)
{
	double deadline = t_now() + secs;
	for (;;) {
		if (pred(t))
			return;
		if (t_now() > deadline)
			t_fail(file, line, "timed out after %.1f s waiting for %s", secs, what);
		int progress = t->pump ? t->pump(t) : 0;
		/* Peers in this process make progress only between polls, so
		 * poll briefly while they have work and at once after progress. */
		t_step(t, progress ? 0 : t->pump ? 1 : 10);
	}
}

static int idle_pred(struct t_ctx *t)
{
	return rl_worker_live(t->w) == 0 && rl_worker_metrics(t->w)->ops_inflight == 0;
}

void t_check_idle(struct t_ctx *t)
{
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	CHECK_EQ(m->conns_open, 0);
	CHECK_EQ(m->send_slots_used, 0);
	CHECK_EQ(m->send_heap_chunks, 0);
	CHECK_EQ(m->send_bytes_queued, 0);
	CHECK_EQ(m->accum_bytes, 0);
	CHECK_EQ(m->recv_buffers_free, t->cfg.recv_buffers);
	CHECK_EQ(m->timers_active, 0);
	CHECK_EQ(m->slab_used, 0);
	CHECK_EQ(m->guards_outstanding, 0);
	CHECK_EQ(m->udp_open, 0);
	CHECK_EQ(m->procs_running, 0);
	CHECK_EQ(m->fs_inflight, 0);
	/* an open listener keeps exactly its multishot accept in flight */
	CHECK_EQ(m->ops_inflight, t->lid >= 0 ? 1 : 0);
}

void t_finish(struct t_ctx *t)
{
	if (t->lid >= 0) {
		CHECK_RC(rl_listener_close(t->w, t->lid));
		t->lid = -1;
	}
	double deadline = t_now() + 10.0;
	while (!idle_pred(t)) {
		if (t_now() > deadline) {
			const struct rl_metrics *m = rl_worker_metrics(t->w);
			FAIL("worker not idle after 10 s: live %d, conns_open %llu, ops %llu",
			     rl_worker_live(t->w), (unsigned long long)m->conns_open,
			     (unsigned long long)m->ops_inflight);
		}
		if (t->pump)
			t->pump(t);
		t_step(t, t->pump ? 1 : 10);
	}
	t_check_idle(t);
	int rc = rl_worker_destroy(t->w);
	ASSERT(rc == 0, "rl_worker_destroy: %s (%d)", rl_strerror(rc), rc);
	t->w = NULL;
	free(t->log);
	t->log = NULL;
	t->nlog = t->logcap = 0;
}

void t_echo(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	const struct rl_conn_io *io = rl_conn_io(w, slot);
	for (;;) {
		if (io->gen != gen)
			return;
		if (io->rlen) {
			if (rl_conn_send(w, slot, gen, io->rdata, io->rlen) < 0) {
				rl_conn_close(w, slot, gen, RL_CLOSE_RESET);
				return;
			}
			CHECK_RC(rl_conn_consume(w, slot, gen, io->rlen));
		}
		if (io->reof || io->rerr) {
			CHECK_RC(rl_conn_close(w, slot, gen,
					       io->rerr ? RL_CLOSE_RESET : RL_CLOSE_GRACEFUL));
			return;
		}
		if (CHECK_RC(rl_conn_want_recv(w, slot, gen, 1)) == 0)
			return;
	}
}

void t_echo_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
	case RL_EV_RECV:
		t_echo(t->w, e->slot, e->gen);
		break;
	case RL_EV_CLOSED:
		ASSERT(e->res == 0, "connection closed with %s", rl_strerror(e->res));
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

void t_consume_stream(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t seed,
		      uint64_t *recvd)
{
	const struct rl_conn_io *io = rl_conn_io(w, slot);
	for (;;) {
		if (io->gen != gen)
			return;
		if (io->rlen) {
			long long bad = t_pattern_find_bad(io->rdata, io->rlen, seed, *recvd);
			ASSERT(bad < 0, "server: stream byte %llu wrong",
			       (unsigned long long)*recvd + (unsigned long long)bad);
			*recvd += io->rlen;
			CHECK_EQ(rl_conn_consume(w, slot, gen, io->rlen), 0);
		}
		if (io->reof || io->rerr) {
			CHECK_EQ(io->rerr, 0);
			CHECK_EQ(rl_conn_close(w, slot, gen, RL_CLOSE_GRACEFUL), 0);
			return;
		}
		if (CHECK_RC(rl_conn_want_recv(w, slot, gen, 1)) == 0)
			return;
	}
}

/* ---- loopback peers ---- */

void t_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	CHECK(fl >= 0);
	CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

int t_tcp_connect_rcvbuf(const char *host, int port, int nonblock, int rcvbuf)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		CHECK(inet_pton(AF_INET6, host, &s6->sin6_addr) == 1);
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		CHECK(inet_pton(AF_INET, host, &s4->sin_addr) == 1);
		len = sizeof(*s4);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(fd >= 0, "socket: %s", strerror(errno));
	if (rcvbuf > 0)
		CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
	int rc;
	do
		rc = connect(fd, (struct sockaddr *)&ss, len);
	while (rc < 0 && errno == EINTR);
	ASSERT(rc == 0, "connect %s:%d: %s", host, port, strerror(errno));
	if (nonblock)
		t_set_nonblock(fd);
	return fd;
}

int t_tcp_connect(const char *host, int port, int nonblock)
{
	return t_tcp_connect_rcvbuf(host, port, nonblock, 0);
}

int t_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

size_t t_tcp_wmem_max(void)
{
	unsigned long lo, def, hi = 4u << 20;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
	if (f) {
		if (fscanf(f, "%lu %lu %lu", &lo, &def, &hi) != 3)
			hi = 4u << 20;
		fclose(f);
	}
	return hi;
}

void t_close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	CHECK(close(fd) == 0);
}

int t_tcp_bound(int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT(fd >= 0, "socket: %s", strerror(errno));
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	if (backlog >= 0)
		CHECK(listen(fd, backlog) == 0);
	return fd;
}

void t_peer_init(struct t_peer *p, int fd)
{
	memset(p, 0, sizeof(*p));
	p->fd = fd;
}

static uint8_t scratch[1 << 16];

size_t t_peer_pump(struct t_peer *p)
{
	size_t moved = 0;
	if (p->fd < 0)
		return 0;
	while (p->outoff < p->outlen && !p->err) {
		ssize_t n = send(p->fd, p->out + p->outoff, p->outlen - p->outoff, MSG_NOSIGNAL);
		if (n > 0) {
			p->outoff += (size_t)n;
			moved += (size_t)n;
			p->write_blocked = 0;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			p->write_blocked = 1;
			break;
		} else {
			p->err = errno;
		}
	}
	if (p->shut_wr && !p->shut_done && p->outoff == p->outlen && !p->err) {
		CHECK(shutdown(p->fd, SHUT_WR) == 0);
		p->shut_done = 1;
	}
	while (!p->no_read && !p->eof && !p->err) {
		uint8_t *dst = scratch;
		size_t room = sizeof(scratch);
		int flags = 0;
		if (p->in) {
			dst = p->in + p->inlen;
			room = p->incap - p->inlen;
			if (!room) {
				/* all expected bytes are in: only EOF may follow */
				dst = scratch;
				room = 1;
				flags = MSG_PEEK;
			}
		}
		if (p->read_limit) {
			if (p->inlen >= p->read_limit)
				break;
			if (room > p->read_limit - p->inlen)
				room = p->read_limit - p->inlen;
		}
		ssize_t n = recv(p->fd, dst, room, flags);
		if (n > 0) {
			ASSERT(!flags, "peer fd %d: more than the %zu bytes expected", p->fd,
			       p->incap);
			if (p->check_in) {
				long long bad =
					t_pattern_find_bad(dst, (size_t)n, p->in_seed, p->inlen);
				ASSERT(bad < 0, "peer fd %d: stream byte %llu is wrong", p->fd,
				       (unsigned long long)(p->inlen + (size_t)bad));
			}
			p->inlen += (size_t)n;
			moved += (size_t)n;
		} else if (n == 0) {
			p->eof = 1;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			p->err = errno;
		}
	}
	return moved;
}

int t_peers_pump(struct t_peer *peers, int n)
{
	size_t moved = 0;
	for (int i = 0; i < n; i++)
		moved += t_peer_pump(&peers[i]);
	return moved > 0;
}
