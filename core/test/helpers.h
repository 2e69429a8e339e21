/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what the core's C tests share: checks that print file:line
 * and exit 1, a worker fixture with a small configuration, a loop that polls
 * until a condition holds (the deadline only bounds a failure, it never
 * synchronizes), nonblocking loopback peers pumped from that same loop, and a
 * teardown that proves the worker went back to idle and destroyed cleanly.
 *
 * Exit codes: 0 pass, 1 fail, 77 skip (the kernel or machine lacks a
 * feature the whole program needs).
 */
#ifndef RL_TEST_HELPERS_H
#define RL_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "ringline.h"

#define T_SKIP 77

/* ---- checks ---- */
__attribute__((noreturn, format(printf, 3, 4)))
void t_fail(const char *file, int line, const char *fmt, ...);

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			t_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);      \
	} while (0)

/* ASSERT(cond, fmt, ...): CHECK with a message saying what was expected. */
#define ASSERT(cond, ...)                                                    \
	do {                                                                 \
		if (!(cond))                                                 \
			t_fail(__FILE__, __LINE__, __VA_ARGS__);             \
	} while (0)

/* Integer comparisons: both sides as long long (ASSERT for doubles). */
#define T_CMP_(a, op, b)                                                     \
	do {                                                                 \
		long long a_ = (long long)(a), b_ = (long long)(b);          \
		if (!(a_ op b_))                                             \
			t_fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld", \
			       #a, #op, #b, a_, b_);                         \
	} while (0)

#define CHECK_EQ(a, b) T_CMP_(a, ==, b)
#define CHECK_NE(a, b) T_CMP_(a, !=, b)
#define CHECK_LE(a, b) T_CMP_(a, <=, b)
#define CHECK_LT(a, b) T_CMP_(a, <, b)
#define CHECK_GE(a, b) T_CMP_(a, >=, b)
#define CHECK_GT(a, b) T_CMP_(a, >, b)

/* An rl_* call that must succeed (>= 0); evaluates to its result. */
#define CHECK_RC(expr)                                                       \
	({                                                                   \
		long long rc_ = (long long)(expr);                           \
		if (rc_ < 0)                                                 \
			t_fail(__FILE__, __LINE__, "%s: %s (%lld)", #expr,   \
			       rl_strerror((int)rc_), rc_);                  \
		(int)rc_;                                                    \
	})

#define FAIL(...) t_fail(__FILE__, __LINE__, __VA_ARGS__)

/* ---- time, data ---- */
double t_now(void);
/* Deterministic bytes: byte i of stream `seed` is a function of (seed, i),
 * so a stream can be checked piecewise at any offset. */
void t_pattern(uint8_t *buf, size_t len, uint32_t seed, uint64_t off);
/* Index of the first byte that differs from the pattern, or -1. */
long long t_pattern_find_bad(const uint8_t *buf, size_t len, uint32_t seed, uint64_t off);
uint64_t t_rand(uint64_t *state);

/* ---- the worker fixture ---- */
#define T_MAX_EV 256

struct t_ctx;
typedef void (*t_event_fn)(struct t_ctx *t, const struct rl_event *ev);
typedef int (*t_pump_fn)(struct t_ctx *t);
typedef int (*t_pred_fn)(struct t_ctx *t);

struct t_ctx {
	struct rl_worker *w;
	struct rl_config cfg;
	struct rl_event ev[T_MAX_EV];
	t_event_fn on_event; /* every event polled goes here */
	t_pump_fn pump;      /* drives the test's own sockets; returns progress */
	void *ud;
	int maxev;           /* events per poll (0: T_MAX_EV) */
	int lid;             /* the fixture's listener, -1 when none */
	int port;
	uint64_t nevents[RL_EV_FILE + 1]; /* by type; RL_EV_FILE is the highest (then RL_EV_NVME) */
	struct rl_event *log; /* every event polled so far, in order */
	size_t nlog, logcap;
};

#define T_ANY UINT32_MAX
/* Events in the log of `type` for (slot, gen); T_ANY matches anything. */
int t_count(const struct t_ctx *t, uint32_t type, uint32_t slot, uint32_t gen);
/* The latest such event, or NULL. */
const struct rl_event *t_last(const struct t_ctx *t, uint32_t type, uint32_t slot, uint32_t gen);

/* 64 recv buffers x 4 KiB, 64 send slots x 4 KiB, 64 connections. */
void t_config_small(struct rl_config *cfg);
/* cfg NULL: t_config_small. Fails the test if the worker cannot start;
 * exits 77 only when io_uring itself is unavailable. */
void t_init(struct t_ctx *t, const struct rl_config *cfg);
/* Listen on addr (NULL: "127.0.0.1:0") as the fixture's listener. */
int t_listen(struct t_ctx *t, const char *addr);
/* One poll with dispatch to on_event; returns the number of events. */
int t_step(struct t_ctx *t, int timeout_ms);
/* Poll (pumping the peers in between) until pred holds; fails after secs. */
void t_wait_(struct t_ctx *t, t_pred_fn pred, double secs, const char *what, const char *file,
	     int line);
#define T_WAIT(t, pred, secs) t_wait_(t, pred, secs, #pred, __FILE__, __LINE__)
/* Close the fixture's listener, wait until nothing is live or in flight,
 * check every gauge is at idle, and require a clean rl_worker_destroy. */
void t_finish(struct t_ctx *t);
/* The gauges at idle (the fixture's listener, if open, holds one op). */
void t_check_idle(struct t_ctx *t);

/* echo.c's logic: send back what arrived, close after EOF. */
void t_echo(struct rl_worker *w, uint32_t slot, uint32_t gen);
/* An echo server's event handler: t_echo on ACCEPTED and RECV, a CLOSED
 * must be clean, any other event fails. */
void t_echo_event(struct t_ctx *t, const struct rl_event *e);
/* The server end of a peer that writes stream `seed`: consume what arrived
 * on (slot, gen), checked at stream offset *recvd (advanced), close
 * gracefully after EOF (a receive error fails), else wait for more. */
void t_consume_stream(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t seed,
		      uint64_t *recvd);

/* ---- loopback peers (the test process itself is the peer) ---- */
/* A TCP socket connected to host:port (blocking connect: loopback handshakes
 * complete in the kernel without the worker), then nonblocking if asked. */
int t_tcp_connect(const char *host, int port, int nonblock);
/* The same, with SO_RCVBUF set before connecting (0: leave it). */
int t_tcp_connect_rcvbuf(const char *host, int port, int nonblock, int rcvbuf);
void t_set_nonblock(int fd);
int t_local_port(int fd);
/* The most a TCP socket's send buffer may grow to (tcp_wmem max), so a
 * test can size a payload the kernel cannot swallow whole. */
size_t t_tcp_wmem_max(void);
/* SO_LINGER {1, 0} then close: the peer gets an RST. */
void t_close_reset(int fd);
/* A TCP socket bound to 127.0.0.1 on a free port, listening with backlog
 * when backlog >= 0 (backlog 0 plus one queued connection: further SYNs
 * are dropped; not listening: SYNs are answered with RST). */
int t_tcp_bound(int backlog);

struct t_peer {
	int fd;
	const uint8_t *out;   /* bytes to write */
	size_t outlen, outoff;
	uint8_t *in;          /* received bytes land here (NULL: counted only) */
	size_t incap, inlen;
	uint32_t in_seed;     /* with in == NULL and check_in: pattern check */
	int check_in;
	int no_read;          /* a peer that does not read */
	size_t read_limit;    /* stop reading at this many bytes (0: no limit) */
	int shut_wr;          /* shutdown(SHUT_WR) once out is written */
	int shut_done;
	int eof;              /* read returned 0 */
	int err;              /* errno of a failed read or write */
	int write_blocked;    /* the last write attempt got EAGAIN */
};

void t_peer_init(struct t_peer *p, int fd);
/* Write what is pending and read what is there, never blocking; returns the
 * bytes moved. Fails the test on a pattern mismatch. */
size_t t_peer_pump(struct t_peer *p);
/* t_peer_pump on peers[0..n); returns whether any of them moved bytes. */
int t_peers_pump(struct t_peer *peers, int n);

#endif
