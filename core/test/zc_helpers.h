/* SPDX-License-Identifier: MIT */
/*
 * zc_helpers.h - what the guarded-send tests (test_zc, test_zc_close,
 * test_zc_limits) share: a loopback stream checked byte for byte, and the
 * accounting of every guard handed to rl_conn_sendv.
 *
 * Every byte a server connection sends is byte i of a deterministic stream
 * (t_pattern with the connection's seed), whatever part kind carried it:
 * copied parts (RL_PART_COPY), slices of a registered region and
 * RL_PART_PINNED heap buffers. The peer checks the stream piecewise as it
 * reads, so a dropped, duplicated or reordered byte fails at once.
 *
 * Guards are tracked per token: each must come back as RL_EV_GUARD exactly
 * once (a second one, or one for a token never handed out or rejected,
 * fails in the event handler; a missing one fails the wait). A guarded part
 * at least zc_threshold long is held: right after rl_conn_sendv it counts in
 * guards_outstanding and rl_region_inflight, rl_region_free says -EBUSY, and
 * when its guard comes back the kernel has taken its bytes (unsent shows it)
 * and a zero-copy notification arrived since it was queued. A smaller one is
 * copied and its guard is delivered by the very next poll. Released memory
 * is poisoned at once, and copied parts are poisoned as soon as
 * rl_conn_sendv returns, so a core still reading either shows in the stream.
 *
 * No completion may arrive for an entry already released (stale_cqes stays
 * 0, see check_guards_idle): that is what releasing before a notification
 * that is still due looks like on loopback, where the kernel copies anyway.
 */
#ifndef RL_TEST_ZC_HELPERS_H
#define RL_TEST_ZC_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "helpers.h"

#define THR 4096u       /* zc_threshold used by every worker here */
#define MAXTOK 8192
#define TOK0 1000u      /* tokens start here: 0 never names a guard */
#define MAXPARTS 64
#define T_REGIONS 64

enum { K_COPY, K_REGION, K_PINNED, K_BAD };

/* K_BAD: a pinned part at this address, which the kernel cannot read */
extern uint8_t *bad_ptr;

struct spec {
	int kind;
	uint32_t len;
};

struct reg {
	int id;
	uint8_t *base;
	size_t size; /* what was asked for */
	size_t off;  /* next free byte for a part */
	int held;    /* held guards on it the test has not seen released */
};

struct sconn {
	uint32_t slot, gen;
	uint64_t queued; /* stream bytes handed to the core */
	uint32_t seed;
	struct t_peer peer;
};

struct guard {
	uint8_t used;    /* handed out and accepted by rl_conn_sendv */
	uint8_t zc;      /* held by the core (not copied) */
	uint8_t check;   /* no error on its connection: check the release order */
	uint8_t heap;    /* pinned: malloc'd by the test */
	int seen;
	int32_t region;
	uint8_t *ptr;
	uint32_t len;
	struct sconn *conn;
	uint32_t gen;
	uint64_t end;       /* stream offset just past its bytes */
	uint64_t notifs_at; /* zc_notifs when it was queued */
};

extern struct guard guards[MAXTOK];
extern uint32_t next_tok;
extern uint32_t issued, released;  /* guards accepted / seen back */
extern uint32_t held_outstanding; /* held guards not yet seen back */
extern struct reg *regs[T_REGIONS];
extern struct sconn *cur; /* the connection the predicates look at */

/* A worker on cfg (NULL: t_config_small with zc_threshold THR) with the
 * guard-checking event handler and pump, listening on loopback. Exits 77
 * when the kernel has no IORING_OP_SENDMSG_ZC. */
void zc_start(struct t_ctx *t, const struct rl_config *cfg);

void region_new(struct t_ctx *t, struct reg *r, size_t size);
/* Free a region the test is done with: only once nothing is in flight. */
void region_free(struct t_ctx *t, struct reg *r);

/* Pumps cur's peer. */
int pump(struct t_ctx *t);
/* A loopback peer on the worker's listener and its accepted side; it
 * becomes cur. rcvbuf: the peer's SO_RCVBUF (0: the default). */
void conn_open(struct t_ctx *t, struct sconn *c, uint32_t seed, int rcvbuf);
/* Predicates on cur. */
int server_closed(struct t_ctx *t);
int delivered(struct t_ctx *t);

/*
 * rl_conn_sendv of the parts `s` on connection c, each filled with its
 * stream bytes. Region parts take the next bytes of r. check: the
 * connection is healthy, so held guards must come back in order (see
 * on_guard). may_fall_back: the slab may be full (test_zc_limits); each send
 * then has at most one guarded part, so the zc_fallbacks delta names it.
 * Returns rl_conn_sendv's result; on success everything is accounted.
 */
int sendv(struct t_ctx *t, struct sconn *c, struct reg *r, const struct spec *s, int n,
	  uint32_t gen, int check, int may_fall_back);
/* Copied guards are reported by the very next poll. */
void poll_immediate(struct t_ctx *t);
/* Every guard handed out came back exactly once, nothing is held. */
void check_guards_idle(struct t_ctx *t);

/* The region bytes the parts `s` need (at least 1). */
size_t region_bytes(const struct spec *s, int n);
/* k parts totalling `total` bytes: random kinds, small copied parts and
 * small (copied) guarded parts, the rest shared by held guarded parts. */
int plan(struct spec *s, int k, size_t total, uint64_t *rs);

#endif
