/* SPDX-License-Identifier: MIT */
/*
 * internal.h - the worker's state and the internal (rl__) interfaces between
 * the core's files. Nothing here is part of the public API.
 */
#ifndef RL_INTERNAL_H
#define RL_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ringline.h"
#include "userdata.h"

#define RL_HIDDEN __attribute__((visibility("hidden")))

/* Kernel UAPI values newer than liburing 2.3's headers, in one place. */
#define RL_IORING_OP_FIXED_FD_INSTALL 54
#define RL_IORING_OP_WAITID 50
/* A plain listener out of descriptors tries again after this long when no
 * connection of its worker closes first. */
#define RL_ACCEPT_RETRY_S 0.1
/* How long a released hand-off member keeps its listener for passes the
 * acceptor submitted before the member left: their arrivals (a completion
 * the kernel may post to the member's ring only later, by task work) are
 * then served, not reset. */
#define RL_MEMBER_LINGER_S 0.5
/* max_connections = 0 (the default): this many, or fewer to fit the hard
 * RLIMIT_NOFILE (worker.c); RL_NOFILE_MARGIN descriptors are kept for the
 * rest (listeners, ring, eventfd, resolver, the script's files). */
#define RL_AUTO_MAX_CONNECTIONS 16000u
#define RL_NOFILE_MARGIN 64u

/* ---- provided buffer ring (bufring.c) ---- */
struct rl_bufring {
	struct io_uring_buf_ring *br;
	uint8_t *base;       /* backing store: bid i at base + i * size */
	size_t ring_bytes;   /* mmap length of br */
	uint32_t count;
	uint32_t size;
	uint32_t mask;
	uint32_t pending;    /* bids added since the last tail publish */
	uint16_t bgid;
	int registered;
};

RL_HIDDEN int rl__bufring_init(struct rl_bufring *b, struct io_uring *ring, uint32_t count,
			       uint32_t size, uint16_t bgid);
RL_HIDDEN void rl__bufring_fini(struct rl_bufring *b, struct io_uring *ring);
RL_HIDDEN uint8_t *rl__bufring_addr(struct rl_bufring *b, uint16_t bid);
/* Queue a bid for return to the kernel; rl__bufring_publish makes it visible. */
RL_HIDDEN void rl__bufring_recycle(struct rl_bufring *b, uint16_t bid);
RL_HIDDEN uint32_t rl__bufring_publish(struct rl_bufring *b);

/* ---- send chunks and the copy pool (sendpool.c) ---- */
struct rl_chunk {
	struct rl_chunk *next;
	uint8_t *data;
	uint32_t cap;
	uint32_t len;        /* bytes filled */
	uint32_t off;        /* bytes the kernel has taken */
	int32_t pool_slot;   /* index in the pool, or -1 for a heap chunk */
	struct rl_slab_entry *zc; /* non-NULL: this queue node is a slab entry */
	struct rl_sendfile *sf;   /* non-NULL: this queue node is a sendfile (sendfile.c) */
};

struct rl_sendpool {
	struct rl_chunk *slots;
	uint8_t *mem;
	uint32_t *free_stack;
	uint32_t nfree;
	uint32_t count;
	uint32_t slot_size;
	uint64_t heap_chunks; /* live heap chunks */
	uint64_t heap_bytes;  /* their capacity */
};

RL_HIDDEN int rl__sendpool_init(struct rl_sendpool *p, uint32_t count, uint32_t slot_size);
RL_HIDDEN void rl__sendpool_fini(struct rl_sendpool *p);
/* A chunk with room for at least min(want, a slot): a pool slot when one is
 * free, else a heap chunk sized to want (bounded). NULL only on ENOMEM. */
RL_HIDDEN struct rl_chunk *rl__chunk_get(struct rl_sendpool *p, size_t want);
RL_HIDDEN void rl__chunk_put(struct rl_sendpool *p, struct rl_chunk *c);
RL_HIDDEN uint32_t rl__sendpool_used(const struct rl_sendpool *p);
/* Release the free slots' pages (rl_worker_trim). */
RL_HIDDEN void rl__sendpool_trim(struct rl_sendpool *p);

/* ---- the in-flight send slab (sendslab.c) ---- */
#define RL_SLAB_IOVS 16
#define RL_SLAB_GUARDS 8
#define RL_IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#define RL_IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)

/* One scatter-gather send: the iovecs and msghdr the kernel reads, the copy
 * chunk holding its copied parts, and its guards. Released only when its
 * operation is final and every notification arrived. */
struct rl_slab_entry {
	struct iovec iov[RL_SLAB_IOVS];
	struct msghdr msg;
	struct rl_chunk node;        /* its place in the connection's send queue */
	struct rl_chunk *copy;       /* bytes of the copied parts, or NULL */
	uint32_t tokens[RL_SLAB_GUARDS];
	int32_t regions[RL_SLAB_GUARDS];
	uint32_t index;
	uint32_t gen;
	uint32_t slot;               /* owning connection */
	uint32_t conn_gen;           /* owning connection's generation */
	uint32_t notifs;             /* notifications still due */
	uint32_t next_free;
	uint8_t niov;
	uint8_t iov_first;           /* first iovec not fully sent */
	uint8_t nguards;
	uint8_t used;
	uint8_t zc;                  /* sent with SENDMSG_ZC (has guards) */
	uint8_t op_final;            /* no more operations will be submitted */
	uint8_t queued;              /* still in the connection's queue */
	double zc_at;                /* its SENDMSG_ZC first submitted (loop clock), 0: not yet */
};

struct rl_slab {
	struct rl_slab_entry *e;
	uint32_t count;
	uint32_t used;
	uint32_t free_head;
	uint8_t want;          /* rl_worker_want_slab: RL_EV_SLAB at the next free */
};

RL_HIDDEN int rl__slab_init(struct rl_slab *s, uint32_t count);
RL_HIDDEN void rl__slab_fini(struct rl_slab *s);
RL_HIDDEN struct rl_slab_entry *rl__slab_alloc(struct rl_slab *s);
RL_HIDDEN void rl__slab_free(struct rl_slab *s, struct rl_slab_entry *e);
/* Advance the entry's iovecs past n sent bytes (partial send). */
RL_HIDDEN void rl__slab_advance(struct rl_slab_entry *e, uint32_t n);

/* ---- registered regions (region.c) ---- */
#define RL_MAX_REGIONS 64
struct rl_region {
	void *ptr;
	size_t size;
	uint32_t inflight;
	uint8_t used;
	uint8_t registered;
};

/* ---- receive accumulator (accum.c) ---- */
struct rl_accum {
	uint8_t *buf;
	uint32_t off;
	uint32_t len;
	uint32_t cap;
};

/* Keep at most this much capacity once emptied; bigger buffers are freed so
 * an idle connection costs little. */
#define RL_ACCUM_KEEP 16384u

/* The most bytes an accumulator holds (rl_conn_io.rlen is 32-bit), and its
 * largest capacity: a uint32_t holds both, their doubling is never stored. */
#define RL_ACCUM_MAX_LEN (UINT32_MAX / 2)
#define RL_ACCUM_MAX_CAP (RL_ACCUM_MAX_LEN + 1ull)

/* Emptied accumulators' buffers the worker keeps for the next connection
 * that receives: an idle connection holds no buffer (its bytes were all
 * consumed), yet a busy one does not malloc and free one per message. At
 * most RL_ACCUM_SPARES buffers of at most RL_ACCUM_KEEP bytes, not counted
 * in accum_bytes (which counts what connections hold). */
#define RL_ACCUM_SPARES 32u
struct rl_accum_spares {
	uint8_t *buf[RL_ACCUM_SPARES];
	uint32_t cap[RL_ACCUM_SPARES];
	uint32_t n;
};

/* An accumulator without a buffer takes a spare one (before an append). */
RL_HIDDEN void rl__accum_prime(struct rl_accum *a, struct rl_accum_spares *s, uint64_t *bytes_gauge);
/* An empty accumulator gives its buffer back: to the spares, or freed. */
RL_HIDDEN void rl__accum_shed(struct rl_accum *a, struct rl_accum_spares *s, uint64_t *bytes_gauge);
RL_HIDDEN void rl__accum_spares_fini(struct rl_accum_spares *s);

/* Append n bytes. hint: the most the owner expects to hold (0: no hint),
 * which bounds growth (accum.c). -ENOBUFS past RL_ACCUM_MAX_LEN, -ENOMEM. */
RL_HIDDEN int rl__accum_append(struct rl_accum *a, const uint8_t *p, uint32_t n, uint64_t hint,
			       uint64_t *bytes_gauge);
/* The capacity growing from cap to hold need bytes, at most max(need,
 * limit rounded to a page) when limit is nonzero; 0 when need is past
 * RL_ACCUM_MAX_LEN. Pure arithmetic, for the tests too. */
RL_HIDDEN uint64_t rl__accum_grow_cap(uint64_t cap, uint64_t need, uint64_t limit);
RL_HIDDEN void rl__accum_consume(struct rl_accum *a, uint32_t n, uint64_t *bytes_gauge);
RL_HIDDEN void rl__accum_free(struct rl_accum *a, uint64_t *bytes_gauge);

/* ---- connections (conntab.c, conn.c) ---- */
/* Where a connection's close stands: rl__conn_close_step is a switch on it.
 * The phases come in this order; a graceful close starts at DRAIN, a reset
 * at RESET, and a graceful close made a reset later (close_timeout,
 * teardown) goes back to RESET from any phase before CLOSE. */
enum rl_conn_phase {
	RL_PHASE_OPEN = 0, /* not closing */
	RL_PHASE_RESET,    /* reset: the send in flight cancelled, the queue dropped, a plain
			      descriptor fetched for SO_LINGER 0 */
	RL_PHASE_DRAIN,    /* the send queue empties (sent; on a reset or error dropped) */
	RL_PHASE_CANCEL,   /* the receive and a connect cancelled; every op completes */
	RL_PHASE_NOTIFS,   /* graceful: the zero-copy notifications of its sends come in */
	RL_PHASE_CLOSE,    /* the fixed file's close submitted: freed on its completion */
};

/* struct rl_conn's flag word (as libuv's handle flags): one bit per fact
 * about a connection's operations and what its caller asked for. */
enum rl_conn_flag {
	/* receive */
	RL_CONN_F_RECV_ARMED = 1u << 0,      /* a recv is in the kernel */
	RL_CONN_F_RECV_MULTI = 1u << 1,      /* the armed recv is a limited multishot */
	RL_CONN_F_RECV_CANCEL = 1u << 2,     /* an ASYNC_CANCEL for the recv is in flight */
	RL_CONN_F_RECV_PAUSED = 1u << 3,     /* window full, no recv armed (counted once) */
	RL_CONN_F_RECV_IDLE = 1u << 4,       /* the last recv drained the socket: poll first */
	RL_CONN_F_STARVED = 1u << 5,         /* on the re-arm list (no buffer or no SQE) */
	/* send */
	RL_CONN_F_SEND_INFLIGHT = 1u << 6,   /* the queue head's send is in the kernel */
	RL_CONN_F_SEND_CANCEL = 1u << 7,     /* reset: that send is cancelled, drop the queue */
	RL_CONN_F_SHUT_PENDING = 1u << 8,    /* SHUT_WR requested, not yet submitted */
	RL_CONN_F_SHUT_INFLIGHT = 1u << 9,   /* SHUT_WR in the kernel */
	/* events the caller asked for: one each */
	RL_CONN_F_WANT_RECV = 1u << 10,      /* RL_EV_RECV at want_recv_min bytes */
	RL_CONN_F_WANT_SEND = 1u << 11,      /* RL_EV_SEND at want_send_thresh unsent */
	RL_CONN_F_WANT_SEND_ERR = 1u << 12,  /* ... on a send error only */
	RL_CONN_F_WANT_FD = 1u << 13,        /* RL_EV_FD when the install completes */
	/* other operations */
	RL_CONN_F_FD_PENDING = 1u << 14,     /* a FIXED_FD_INSTALL is in flight */
	RL_CONN_F_PROBE_INFLIGHT = 1u << 15, /* an rl_conn_probe peek is in flight */
	RL_CONN_F_CONNECTING = 1u << 16,     /* outbound: its CONNECT is in flight */
	RL_CONN_F_CONNECT_CANCEL = 1u << 17, /* closing while connecting: CONNECT cancelled */
	/* close */
	RL_CONN_F_RESET = 1u << 18,          /* the close is a reset (else graceful) */
	RL_CONN_F_LINGER_TRIED = 1u << 19,   /* reset: the descriptor install was tried */
	RL_CONN_F_SILENT = 1u << 20,         /* freed without RL_EV_CLOSED (failed connect) */
	/* TLS */
	RL_CONN_F_TLS_PENDING = 1u << 21,    /* handshake running: RL_EV_TLS still due */
	/* sendfile */
	RL_CONN_F_RAW_NB = 1u << 22,         /* the plain descriptor was made non-blocking */
	RL_CONN_F_NO_RAWFD = 1u << 23,       /* its install failed: sendfile by ring splices */
};

struct rl_conn {
	struct rl_conn_io io;      /* what the caller reads in place */
	struct rl_accum acc;
	struct rl_chunk *sq_head;  /* send queue; head may be in flight */
	struct rl_chunk *sq_tail;
	uint32_t slot;
	uint32_t ops;              /* SQEs of this connection not yet completed */
	uint32_t flags;            /* enum rl_conn_flag */
	uint8_t phase;             /* enum rl_conn_phase */
	uint32_t want_recv_min;
	uint32_t want_send_thresh;
	int rawfd;                 /* plain descriptor, -1 until installed */
	int32_t close_res;         /* reason reported with RL_EV_CLOSED */
	int32_t connreq;           /* outbound: request index until connected, else -1 */
	uint32_t next_starved;     /* link in the re-arm list */
	uint32_t zc_notifs;        /* zero-copy notifications still due for its sends:
	                              a graceful close keeps the socket until they came */
	uint32_t close_timer;      /* its close deadline's timer id + 1 (0: none) */
	double close_progress;     /* closing: when its send side last moved */
	uint32_t token;            /* outbound: the caller's connect token */
	struct rl_tls *tls;        /* the record layer (tls.c), or NULL: plaintext */
	uint32_t tls_timer;        /* its handshake deadline's timer id + 1 (0: none) */
	double accepted_at;        /* accepted, no byte received yet: when (loop clock), else 0 */
};

/* Closing: from rl__conn_begin_close until the slot is freed. */
static inline int rl__conn_closing(const struct rl_conn *c)
{
	return c->phase != RL_PHASE_OPEN;
}

struct rl_conntab {
	struct rl_conn *conns;
	uint32_t count;
	uint32_t open;
};

RL_HIDDEN int rl__conntab_init(struct rl_conntab *t, uint32_t count);
RL_HIDDEN void rl__conntab_fini(struct rl_conntab *t);
/* The slot the kernel allocated becomes live; -EEXIST if it is not free. */
RL_HIDDEN struct rl_conn *rl__conntab_open(struct rl_conntab *t, uint32_t slot);
/* Free a slot: bump the generation, reset the state. */
RL_HIDDEN void rl__conntab_free(struct rl_conntab *t, struct rl_conn *c);
/* The live connection named by (slot, gen), or NULL. */
RL_HIDDEN struct rl_conn *rl__conntab_get(struct rl_conntab *t, uint32_t slot, uint32_t gen);

/* ---- timers (timer.c): a binary min-heap over a record pool ---- */
struct rl_timer_rec {
	double deadline;
	uint32_t token;
	uint32_t gen;
	int32_t heap_pos;     /* -1 when not armed (free) */
	uint32_t next_free;
};

struct rl_timers {
	struct rl_timer_rec *recs;
	uint32_t *heap;       /* record indexes ordered by deadline */
	uint32_t nheap;
	uint32_t cap;
	uint32_t max;
	uint32_t free_head;
};

#define RL_TIMER_IDX_BITS 20
#define RL_TIMER_IDX_MASK ((1u << RL_TIMER_IDX_BITS) - 1)

RL_HIDDEN int rl__timers_init(struct rl_timers *t, uint32_t max);
RL_HIDDEN void rl__timers_fini(struct rl_timers *t);
RL_HIDDEN int rl__timers_add(struct rl_timers *t, double deadline, uint32_t token);
RL_HIDDEN int rl__timers_cancel(struct rl_timers *t, int id);
/* Earliest deadline, or a negative number when none is armed. */
RL_HIDDEN double rl__timers_next(const struct rl_timers *t);
/* Pop one timer due at `now`; returns its id and token, or -1. */
RL_HIDDEN int rl__timers_pop_due(struct rl_timers *t, double now, uint32_t *token);

/* ---- listeners (listener.c) ---- */
#define RL_MAX_LISTENERS 64

enum rl_listener_kind {
	RL_LISTENER_LOCAL = 0,   /* accepts and serves its connections */
	RL_LISTENER_ACCEPTOR,    /* accepts and hands each to a group member */
	RL_LISTENER_MEMBER,      /* no socket: serves what the acceptor hands it */
};

struct rl_listener {
	int fd;                  /* -1 for a member */
	int port;
	uint32_t gen;
	struct rl_handoff *h;    /* acceptor and member: the group */
	uint8_t kind;
	uint8_t used;
	uint8_t armed;
	uint8_t closing;
	uint8_t released;        /* rl_listener_release: late accepts are served */
	uint8_t sweeps;          /* released: DONTWAIT accepts of stranded peers made */
	uint32_t installs;       /* plain accepts being installed (old kernels) */
	double linger_until;     /* a released member: freed then (RL_MEMBER_LINGER_S) */
};

/* socket + bind + listen; returns the descriptor, *port the bound port. */
RL_HIDDEN int rl__listen_socket(const char *addr, uint32_t flags, uint32_t backlog, int *port);
/* Take a listener slot for fd (-1 for a member) and arm its accept. On
 * failure the caller still owns fd. */
RL_HIDDEN int rl__listener_add(struct rl_worker *w, int fd, int port, int kind,
			       struct rl_handoff *h);
/* The listener of slot id if it is used and still has generation gen. */
RL_HIDDEN struct rl_listener *rl__listener_get(struct rl_worker *w, uint32_t id, uint32_t gen);
/* A connection the kernel put at fixed index slot for listener id becomes
 * live (or is closed, when the listener is going away); rawfd: its plain
 * descriptor when it has one (then the connection owns it), else -1. */
RL_HIDDEN void rl__listener_adopt(struct rl_worker *w, struct rl_listener *l, uint32_t id,
				  uint32_t slot, int rawfd);
/* An inbound install of listener l (rl__install_inbound) completed: a
 * closed listener waiting for it is freed now. */
RL_HIDDEN void rl__listener_install_done(struct rl_worker *w, struct rl_listener *l);
RL_HIDDEN void rl__listener_close_slot(struct rl_worker *w, uint32_t slot);
/* Free the released members whose linger ended (all of them while the
 * worker is destroyed), and set w->linger_until to the next end. */
RL_HIDDEN void rl__listeners_linger_end(struct rl_worker *w);
/* A unix listening socket refuses new peers from now (SHUT_RD), before its
 * close completes; other sockets are left alone. */
RL_HIDDEN void rl__listener_refuse(struct rl_listener *l);
/* sqe becomes the close of fixed index slot, an unowned op. */
RL_HIDDEN void rl__prep_close_slot(struct rl_worker *w, struct io_uring_sqe *sqe, uint32_t slot);
/* A connection closed: arm plain listeners that ran out of descriptors. */
RL_HIDDEN void rl__listeners_fd_freed(struct rl_worker *w);

/* ---- hand-off groups (handoff.c) ---- */
/* Acceptor listener lid: pass the connection at fixed index slot to the
 * next member (to the ones after it if that fails). */
RL_HIDDEN void rl__handoff_pass(struct rl_worker *w, uint32_t lid, uint32_t slot);
RL_HIDDEN void rl__handoff_on_pass(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Member: a connection arrived through MSG_RING. */
RL_HIDDEN void rl__handoff_on_arrival(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Member listener closing: no hand-off targets it once this returns. */
RL_HIDDEN void rl__handoff_leave(struct rl_handoff *h, struct rl_worker *w, int id);
/* Acceptor listener freed (err: its accept failed for good, else 0): the
 * group is closed; members still in it stop at their next poll. */
RL_HIDDEN void rl__handoff_acceptor_gone(struct rl_handoff *h, int err);
/* On a wake-up: an acceptor closes listeners whose group has no members
 * left; a member stops listeners whose acceptor failed (RL_EV_LISTENER). */
RL_HIDDEN void rl__handoff_reap(struct rl_worker *w);

/* ---- outbound connect requests (connect.c) ---- */
struct rl_connreq {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int fds[1];             /* in: raw fd; out: the fixed index the kernel chose */
	int rawfd;
	struct __kernel_timespec ts;
	uint32_t timeout_ms;
	uint32_t token;
	uint32_t gen;
	uint32_t pending;       /* CQEs still to come for this request */
	int32_t slot;           /* the connection once installed, else -1 */
	int32_t listener;       /* inbound (see rl__install_inbound): its listener, else -1 */
	uint32_t lgen;          /* and that listener's generation */
	uint32_t idx;           /* its place in w->reqs, fixed */
	uint8_t used;
	uint8_t cancel;         /* canceled before the install completed */
	uint8_t adopt;          /* rl_conn_adopt: connected already, no CONNECT */
};

/* ---- processes (proc.c) ---- */
struct rl_proc {
	siginfo_t si;           /* WAITID writes the child's end here */
	int pidfd;
	int32_t pid;
	uint32_t gen;
	uint32_t token;
	uint32_t idx;           /* its place in w->procs, fixed */
	uint8_t used;
};

RL_HIDDEN void rl__proc_on_cqe(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Teardown: SIGKILL every process still running (their armed waits then
 * complete and reap them), and free the records once nothing is in flight. */
RL_HIDDEN void rl__proc_kill_all(struct rl_worker *w);
RL_HIDDEN void rl__proc_fini(struct rl_worker *w);

/* ---- NVMe passthrough (nvme.c) ---- */
struct rl_nvme;
/* Reap the NVMe ring's completions as RL_EV_NVME (each poll). */
RL_HIDDEN void rl__nvme_reap(struct rl_worker *w);
/* Teardown, once nothing is in flight: close the devices and the ring. */
RL_HIDDEN void rl__nvme_fini(struct rl_worker *w);


/* ---- the inbox (inbox.c): messages from other threads ---- */
struct rl_msg {
	struct rl_msg *next;
	uint32_t from;
	uint32_t kind;
	uint32_t len;
	uint8_t data[];
};

struct rl_inbox {
	pthread_mutex_t lock;
	struct rl_msg *head;
	struct rl_msg *tail;
	uint32_t count;
	int ready;
};

RL_HIDDEN int rl__inbox_init(struct rl_inbox *in);
RL_HIDDEN void rl__inbox_fini(struct rl_inbox *in);
/* On a doorbell: raise RL_EV_MESSAGE when something is waiting. */
RL_HIDDEN void rl__inbox_ring(struct rl_worker *w);

/* ---- UDP sockets (udp.c) ---- */
#define RL_MAX_UDP 1024
#define RL_UDP_BGID 1

struct rl_dgram {
	struct rl_dgram *next;
	struct sockaddr_storage addr;
	socklen_t alen;
	uint32_t len;
	uint8_t trunc;
	uint8_t data[];
};

struct rl_udp_send {
	struct msghdr msg;
	struct iovec iov;
	struct sockaddr_storage addr;
	uint32_t sock;
	uint32_t gen;
	uint8_t data[];
};

struct rl_udp {
	struct msghdr rmsg;          /* template of the multishot RECVMSG */
	struct rl_dgram *qhead;
	struct rl_dgram *qtail;
	uint32_t qlen;
	uint32_t sends;              /* sends in flight */
	uint32_t gen;
	int fd;
	sa_family_t family;          /* of the bound address */
	uint8_t used;
	uint8_t armed;
	uint8_t cancel_sent;
	uint8_t closing;
	uint8_t want;
};

RL_HIDDEN void rl__udp_on_recv(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__udp_on_send(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__udp_on_cancel(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__udp_close_all(struct rl_worker *w);
RL_HIDDEN void rl__udp_fini(struct rl_worker *w);

/* ---- the resolver thread (resolve.c) ---- */
struct rl_resolver;
RL_HIDDEN void rl__resolver_stop(struct rl_worker *w);

/* ---- TLS (tls.c): a leaf but for the accumulator ---- */
struct rl_tls;
/* Where the engine's ciphertext goes as it is produced (a, b: the
 * caller's): 0, or a negative errno that fails the engine's call. */
typedef int (*rl_tls_sink)(void *a, void *b, const uint8_t *p, uint32_t n);
RL_HIDDEN int rl__tls_new(struct rl_tls_ctx *ctx, const char *server_name,
			  struct rl_tls_session *resume, rl_tls_sink sink, void *sink_a,
			  void *sink_b, struct rl_tls **out);
RL_HIDDEN struct rl_tls_session *rl__tls_session_ref(struct rl_tls_session *b);
/* The client connection's session box (not a new reference), else NULL. */
RL_HIDDEN struct rl_tls_session *rl__tls_session(struct rl_tls *t);
RL_HIDDEN void rl__tls_free(struct rl_tls *t);
/* ms a handshake on ctx may take: its own limit, else dflt (the config's). */
RL_HIDDEN uint32_t rl__tls_ctx_handshake_ms(const struct rl_tls_ctx *t, uint32_t dflt);
/* Ciphertext in. */
RL_HIDDEN int rl__tls_feed(struct rl_tls *t, const uint8_t *p, uint32_t n);
/* 1: established, 0: needs more from the peer, -EPROTO: failed (the reason
 * is in rl__tls_info's error). */
RL_HIDDEN int rl__tls_handshake(struct rl_tls *t);
RL_HIDDEN int rl__tls_done(const struct rl_tls *t);
RL_HIDDEN void rl__tls_set_error(struct rl_tls *t, const char *why);
/* Decrypt everything fed so far into a: 0, 1 (the peer's close_notify) or
 * -errno (-EPROTO: a bad record). */
RL_HIDDEN int rl__tls_read(struct rl_tls *t, struct rl_accum *a, uint64_t hint, uint64_t *gauge);
/* Encrypt n bytes into the sink: 0, the sink's error, or -EPROTO. */
RL_HIDDEN int rl__tls_write(struct rl_tls *t, const void *p, size_t n);
RL_HIDDEN void rl__tls_close_notify(struct rl_tls *t);
RL_HIDDEN void rl__tls_info(const struct rl_tls *t, struct rl_tls_info *out);

/* ---- files (fileop.c; its thread pool fspool.c; sendfile's pipes pipecache.c) ---- */
enum rl_fsop {
	RL_FSOP_OPEN = 0, RL_FSOP_READ, RL_FSOP_WRITE, RL_FSOP_READV, RL_FSOP_WRITEV,
	RL_FSOP_READ_FIXED, RL_FSOP_WRITE_FIXED, RL_FSOP_FSYNC, RL_FSOP_STAT, RL_FSOP_UNLINK,
	RL_FSOP_RENAME, RL_FSOP_MKDIR, RL_FSOP_CLOSE, RL_FSOP_LISTDIR, RL_FSOP__COUNT
};
/* File operations in flight per worker; requests are allocated on demand. */
#define RL_MAX_FILE_OPS 4096u
#define RL_FS_THREADS 2
#define RL_FILE_MAX_IOV 1024
#define RL_PIPE_CACHE 4
struct rl_fsreq;
struct rl_fspool;

/* A sendfile queue node: its own descriptor (a dup) and pipe. */
struct rl_sendfile {
	struct rl_chunk node;   /* len = count, off = bytes sent */
	int fd;
	int pipe[2];
	int64_t off;            /* next file offset to splice into the pipe */
	uint32_t left;          /* bytes not yet spliced into the pipe */
	uint32_t inpipe;        /* bytes in the pipe not yet sent */
	uint32_t pipe_size;
	uint8_t filling;        /* the splice in flight is file -> pipe */
	uint8_t link_broken;    /* the linked fill came short: its drain comes cancelled */
	uint32_t linked;        /* a fill of this many bytes went with its drain linked */
	int32_t fill_res;       /* a broken link's fill result */
	uint8_t inl;            /* inline (sendfile.c): plain calls, the ring fills and waits */
	uint8_t step;           /* inline: the operation in flight (enum rl_sf_step) */
};

/* An inline sendfile node's operation in flight; RL_SF_STOP_FILL is
 * rl__sendfile_push's "fill the pipe first". */
enum rl_sf_step { RL_SF_KICK = 1, RL_SF_POLL, RL_SF_FILL };
enum { RL_SF_STOP_FILL = 1 };

struct rl_fs {
	struct rl_fsreq **reqs;
	uint32_t nreqs;
	uint32_t *free;         /* indexes of free requests, a stack */
	uint32_t nfree;
	uint32_t live;          /* requests in flight */
	uint32_t ring_ops;      /* bit (1 << RL_FSOP_*) set: the ring runs it */
	uint8_t no_open_now;    /* openat2 with RESOLVE_CACHED is missing: rl_fs_open_now off */
	struct rl_fspool *pool; /* started on first use */
	int pipes[RL_PIPE_CACHE][2];
	uint32_t npipes;        /* cached, empty */
	uint32_t pipe_size;
};

RL_HIDDEN void rl__fs_on_cqe(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Deliver what the pool finished (called by every poll). */
RL_HIDDEN void rl__fs_pool_reap(struct rl_worker *w);
RL_HIDDEN void rl__fs_fini(struct rl_worker *w);
/* A pipe for a sendfile node (cached or new), and back: a pipe that still
 * holds bytes is closed, not cached. */
RL_HIDDEN int rl__pipe_get(struct rl_worker *w, int p[2], uint32_t *size);
RL_HIDDEN void rl__pipe_put(struct rl_worker *w, int p[2], int dirty);
RL_HIDDEN void rl__pipe_fini(struct rl_worker *w);

/* ---- the worker ---- */
struct rl_worker {
	struct io_uring ring;
	struct rl_config cfg;
	uint32_t features;
	int ring_ok;
	struct rl_bufring bufs;
	struct rl_sendpool pool;
	struct rl_conntab conns;
	struct rl_timers timers;
	struct rl_timers close_timers; /* graceful closes' no-progress deadlines (token: slot) */
	struct rl_timers tls_timers;   /* TLS handshake deadlines (token: slot) */
	struct rl_slab slab;
	struct rl_accum_spares spares; /* emptied accumulators' buffers (accum.c) */
	struct rl_region regions[RL_MAX_REGIONS];
	int regions_table;         /* sparse buffer table registered */
	struct rl_udp *udp;        /* RL_MAX_UDP sockets, allocated on first use */
	struct rl_bufring ubufs;   /* UDP receive ring (group RL_UDP_BGID), on first use */
	uint32_t udp_live;
	struct rl_listener listeners[RL_MAX_LISTENERS];
	uint32_t acceptors;        /* listeners of kind RL_LISTENER_ACCEPTOR */
	uint32_t members;          /* listeners of kind RL_LISTENER_MEMBER */
	struct rl_connreq **reqs;  /* connect/install requests (connect.c) */
	uint32_t nreqs;
	uint32_t *reqfree;         /* indexes of the free ones, a stack */
	uint32_t nreqfree;         /* in use: nreqs - nreqfree */
	struct rl_proc **procs;    /* processes (proc.c); records never move */
	uint32_t nprocs;
	uint32_t procs_live;
	struct rl_nvme *nvme;      /* the NVMe ring and devices, on first use */
	uint32_t starved_head;     /* ENOBUFS re-arm list (slot+1, 0 = end) */
	int wake_fd;
	int spare_fd;              /* /dev/null held in reserve (plain accepts, listener.c) */
	double linger_until;       /* the first released member's linger end, 0: none */
	double accept_retry_at;    /* a plain listener waits for a descriptor: when to try
				    * again if no connection of ours closes first (0: none) */
	uint32_t nofile_share;     /* what it added to the process's RLIMIT_NOFILE want */
	uint64_t wake_buf;
	uint8_t probe_byte;          /* where rl_conn_probe peeks land (never read) */
	int wake_armed;
	struct rl_inbox inbox;
	int inbox_ok;
	struct rl_resolver *resolver;
	double now;
	/* event sink of the current poll */
	struct rl_event *ev;
	int nev;
	int maxev;
	/* events raised outside a poll, delivered by the next one */
	struct rl_event *pending_ev;
	uint32_t npending;
	uint32_t pending_cap;
	struct rl_metrics m;
	struct rl_latency lat;     /* rl_worker_latency */
	double poll_returned;      /* when the last poll returned (loop histogram), 0: none */
	struct rl_fs fs;
	int destroying;
};

/* ring.c */
RL_HIDDEN int rl__ring_setup(struct rl_worker *w, char *msg, size_t msglen);
/* RL_FEAT_* bits RINGLINE_DISABLE_FEATURES says to act as if missing. */
RL_HIDDEN uint32_t rl__disabled_features(void);
/* An SQE, flushing the SQ to the kernel when it is full. NULL only if the
 * kernel refuses submissions (then the caller reports -EBUSY). */
RL_HIDDEN struct io_uring_sqe *rl__sqe(struct rl_worker *w);
/* A multishot RECV's total byte limit (RL_FEAT_RECV_LIMIT): newer UAPI
 * headers call the word optlen; liburing 2.3's, file_index. The kernel ends
 * the multishot (no IORING_CQE_F_MORE) once that many bytes arrived. */
static inline void rl__sqe_set_recv_limit(struct io_uring_sqe *sqe, uint32_t bytes)
{
	sqe->file_index = bytes;
}
RL_HIDDEN int rl__submit(struct rl_worker *w);
/* At least n free SQEs if the kernel makes room (a submit; with SQPOLL,
 * waiting for its thread, bounded): returns the free SQEs. */
RL_HIDDEN unsigned rl__sq_room(struct rl_worker *w, unsigned n);
/* With SQPOLL, after rl__submit: wait until the kernel's SQ thread has read
 * every SQE submitted (what must not outlive a lock, as a hand-off's target
 * ring descriptor); without SQPOLL the submit read them already. */
RL_HIDDEN void rl__sq_drain(struct rl_worker *w);
RL_HIDDEN double rl__clock_now(void);

/* worker.c */
RL_HIDDEN void rl__emit(struct rl_worker *w, uint32_t type, int32_t res, uint32_t slot, uint32_t gen,
			uint32_t data);
RL_HIDDEN void rl__emit_aux(struct rl_worker *w, uint32_t type, int32_t res, uint32_t slot,
			    uint32_t gen, uint32_t data, uint32_t aux);

/* conn.c */
RL_HIDDEN void rl__conn_start(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_on_recv(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__conn_on_send(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__conn_on_close(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__conn_on_simple(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Bytes the peer's socket took (n > 0): the queue's and the worker's
 * counters, the close's progress. */
RL_HIDDEN void rl__conn_send_account(struct rl_worker *w, struct rl_conn *c, int n);
/* The head's operation completed (its node already advanced or removed):
 * account, then what the queue does next (submit, drop, shutdown, close). */
RL_HIDDEN void rl__conn_send_done(struct rl_worker *w, struct rl_conn *c, int res);
/* conn_sendfile.c: an RL_OP_SPLICE completion, a sendfile node's step */
RL_HIDDEN void rl__conn_on_splice(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__conn_rearm_starved(struct rl_worker *w);
/* Reset the graceful closes whose send side made no progress for
 * close_timeout (due at w->now). */
RL_HIDDEN void rl__conn_close_deadlines(struct rl_worker *w);
/* Fail the TLS handshakes past tls_handshake_timeout (due at w->now). */
RL_HIDDEN void rl__conn_tls_deadlines(struct rl_worker *w);
RL_HIDDEN void rl__conn_close_step(struct rl_worker *w, struct rl_conn *c);
/* conn.c's (and conn_ops.c's) steps that the public calls of conn_api.c start. */
RL_HIDDEN void rl__conn_set_ud(struct io_uring_sqe *sqe, enum rl_op op, const struct rl_conn *c);
RL_HIDDEN void rl__conn_sync_io(struct rl_conn *c);
RL_HIDDEN uint64_t rl__conn_window(const struct rl_worker *w, const struct rl_conn *c);
RL_HIDDEN void rl__conn_recv_update(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_send_submit(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_shutdown_submit(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_fd_install_submit(struct rl_worker *w, struct rl_conn *c);
/* conn_queue.c: building the send queue (conn.c sends it). The tail chunk
 * with room for copied bytes, else a new one appended (NULL: ENOMEM). */
RL_HIDDEN struct rl_chunk *rl__conn_tail_room(struct rl_worker *w, struct rl_conn *c, size_t want);
/* The TLS engine's sink (a = the worker, b = the connection). */
RL_HIDDEN int rl__conn_tls_sink(void *a, void *b, const uint8_t *p, uint32_t n);
/* sendfile.c: a sendfile node's steps. Ring splices only: the next
 * splice (or linked pair) into sqe. Inline: push bytes with plain calls on
 * the connection's non-blocking descriptor, returning how many moved, with
 * *stop 0 (all sent), -EAGAIN (the socket is full: prep_wait), RL_SF_STOP_FILL
 * (the next bytes are not in the page cache: prep_fill) or an error
 * (-ENODATA: the file ended early). And the node's release. */
RL_HIDDEN void rl__conn_splice_prep(struct rl_worker *w, struct io_uring_sqe *sqe,
				    struct rl_conn *c, struct rl_sendfile *sf);
RL_HIDDEN int rl__cachestat_ok(void);
RL_HIDDEN int rl__sendfile_nonblock(int sock);
RL_HIDDEN int rl__sendfile_push(int sock, struct rl_sendfile *sf, int *stop);
RL_HIDDEN void rl__sendfile_prep_fill(struct rl_worker *w, struct io_uring_sqe *sqe,
				      struct rl_sendfile *sf);
RL_HIDDEN void rl__sendfile_prep_wait(struct io_uring_sqe *sqe, const struct rl_conn *c,
				      struct rl_sendfile *sf);
RL_HIDDEN void rl__sendfile_free(struct rl_worker *w, struct rl_sendfile *sf);
RL_HIDDEN void rl__conn_tls_flush(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_tls_fail(struct rl_worker *w, struct rl_conn *c, int err);
RL_HIDDEN void rl__conn_tls_progress(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN int rl__conn_begin_close(struct rl_worker *w, struct rl_conn *c, int how, int32_t reason);

/* conn_ops.c: op accounting, a completion's connection, cancels */
RL_HIDDEN void rl__conn_op_start(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_op_done(struct rl_worker *w, struct rl_conn *c);
/* Cancel the operation with user_data target (or c's op of kind target):
 * no SQE left means it completes on its own or at teardown. */
RL_HIDDEN void rl__conn_cancel_ud(struct rl_worker *w, struct rl_conn *c, uint64_t target);
RL_HIDDEN void rl__conn_cancel_op(struct rl_worker *w, struct rl_conn *c, enum rl_op target);
/* RL_EV_RECV / RL_EV_SEND to a caller waiting, when its condition holds. */
RL_HIDDEN void rl__conn_maybe_emit_recv(struct rl_worker *w, struct rl_conn *c);
RL_HIDDEN void rl__conn_maybe_emit_send(struct rl_worker *w, struct rl_conn *c);
/* The live connection a completion belongs to, or NULL (counted as stale). */
RL_HIDDEN struct rl_conn *rl__conn_of_cqe(struct rl_worker *w, const struct io_uring_cqe *cqe);
/* conn.c, the send queue's entry points for sendv.c. The connection if it
 * may queue sends now, else NULL with *err set. */
RL_HIDDEN struct rl_conn *rl__conn_sendable(struct rl_worker *w, uint32_t slot, uint32_t gen,
					    int *err);
/* Push a node (a sealed slab entry's) onto the queue; submits it when the
 * queue was idle. From then on only the queue pops, submits or drops it. */
RL_HIDDEN void rl__conn_enqueue(struct rl_worker *w, struct rl_conn *c, struct rl_chunk *node);

/* sendslab.c: slab entries (a leaf: the copy pool and the event sink only).
 * Building an entry from parts (sendv.c): does one more guarded part fit,
 * add it; does a copied part of len bytes fit, copy it in (-ENOMEM when
 * the entry's copy chunk cannot be had). */
RL_HIDDEN int rl__slab_guard_fits(const struct rl_slab_entry *e);
RL_HIDDEN void rl__slab_add_guarded(struct rl_worker *w, struct rl_slab_entry *e,
				    const struct rl_part *p);
RL_HIDDEN int rl__slab_copy_fits(const struct rl_slab_entry *e, uint32_t len);
RL_HIDDEN int rl__slab_add_copy(struct rl_worker *w, struct rl_slab_entry *e, const void *ptr,
				uint32_t len);
/* No more parts: the queue node to push for connection (slot, conn_gen), or
 * NULL when the entry is empty (it is released at once). */
RL_HIDDEN struct rl_chunk *rl__slab_seal(struct rl_worker *w, struct rl_slab_entry *e,
					 uint32_t slot, uint32_t conn_gen);
/* The msghdr over the entry's unsent iovecs, for the queue's next SENDMSG. */
RL_HIDDEN struct msghdr *rl__slab_msg(struct rl_slab_entry *e);
/* What an RL_OP_SEND_SLAB completion means, with its entry in *e (the slab's
 * own counts are kept here; the caller does the rest):
 * STALE: no live entry (counted), ignore it. SENT: the operation of the
 * entry (still queued) completed with cqe->res; SENT_MORE: the same, and
 * one notification is now due for it. NOTIF: one notification arrived;
 * rl__slab_release then frees the entry if that was all it waited for. */
enum rl_slab_cqe { RL_SLAB_STALE, RL_SLAB_SENT, RL_SLAB_SENT_MORE, RL_SLAB_NOTIF };
RL_HIDDEN int rl__slab_cqe(struct rl_worker *w, const struct io_uring_cqe *cqe,
			   struct rl_slab_entry **e);
/* Release the entry, its guards reported as RL_EV_GUARD, if nothing holds
 * it any more (the queue is done with it, no notification is due); the
 * caller must not touch it after this. */
RL_HIDDEN void rl__slab_release(struct rl_worker *w, struct rl_slab_entry *e);
/* The queue is done with the entry (sent whole, failed or dropped): no
 * operation will be submitted for it again. Released now or when its last
 * notification arrives; the caller must not touch it after this. */
RL_HIDDEN void rl__slab_dequeued(struct rl_worker *w, struct rl_slab_entry *e);

/* region.c */
RL_HIDDEN void rl__regions_init(struct rl_worker *w);
RL_HIDDEN void rl__regions_fini(struct rl_worker *w);
RL_HIDDEN int rl__region_check(struct rl_worker *w, int id, const void *ptr, uint32_t len);

/* listener.c */
RL_HIDDEN void rl__listener_on_accept(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__listeners_close_all(struct rl_worker *w);

/* connect.c */
RL_HIDDEN void rl__connect_on_install(struct rl_worker *w, struct io_uring_cqe *cqe);
/* Without FIXED_FD_INSTALL an inbound connection is accepted as a plain
 * descriptor (which it keeps, for names, options and SO_LINGER) and
 * installed into the fixed table like an outbound socket. */
RL_HIDDEN void rl__install_inbound(struct rl_worker *w, uint32_t lid, uint32_t lgen, int fd);
RL_HIDDEN void rl__connect_on_connect(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__connect_on_timeout(struct rl_worker *w, struct io_uring_cqe *cqe);
RL_HIDDEN void rl__connect_fini(struct rl_worker *w);

/* sockaddr.c: parse "host:port", "[v6]:port", ":port", "port", "unix:/path" */
RL_HIDDEN int rl__parse_addr(const char *addr, int passive, struct sockaddr_storage *ss,
			     socklen_t *len);
/* Address text into host (when hostlen > 0); returns the port, 0 for unix. */
RL_HIDDEN int rl__format_addr(const struct sockaddr_storage *ss, socklen_t len, char *host,
			      size_t hostlen);

/* shdict.c: a dictionary outside the registry (tests), freed with
 * rl__shdict_free; the clock of expiry (seconds; tests replace it). */
RL_HIDDEN int rl__shdict_new(const char *name, size_t size, struct rl_shdict **out);
RL_HIDDEN void rl__shdict_free(struct rl_shdict *d);
extern RL_HIDDEN double (*rl__shdict_clock)(void);

#endif
