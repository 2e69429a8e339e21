/* SPDX-License-Identifier: MIT */
/*
 * ringline.h - the one public header of libringline, the C core of
 * ringline-lua: an io_uring network runtime with one event loop per worker
 * thread.
 *
 * The model in one screen
 * -----------------------
 * A worker (struct rl_worker) owns one io_uring and everything the kernel may
 * touch: the fixed file table, a provided-buffer ring for receives, a pool of
 * copy slots for sends, and the connection table. It is used from exactly one
 * thread. The caller drives it by pulling events:
 *
 *     n = rl_worker_poll(w, events, max, timeout_ms);
 *
 * which submits what was queued, waits (bounded by the nearest timer), reaps
 * completions, does all kernel bookkeeping in C and writes at most `max`
 * compact events into the caller's array. The core never calls back into the
 * caller: no callbacks, ever. This keeps a LuaJIT caller on compiled FFI paths
 * and keeps the core testable from plain C.
 *
 * Conventions
 * -----------
 * - Every function returning int returns >= 0 on success and a negative errno
 *   on failure. errno is never a side channel.
 * - A connection is named by (slot, gen). A slot is reused after close; the
 *   generation is bumped on every reuse, so a call with a stale (slot, gen)
 *   returns -ESTALE and a late completion for a previous occupant is dropped.
 * - Everything the kernel may read or write lives in worker-owned arrays that
 *   are never moved while an operation is in flight.
 *
 * Ownership and lifecycle of a connection (numbered steps)
 * --------------------------------------------------------
 * 1. RL_EV_ACCEPTED / RL_EV_CONNECTED hands the caller (slot, gen). The
 *    connection's receive state is at rl_conn_io(w, slot): a struct the core
 *    keeps up to date and the caller reads directly.
 * 2. Received bytes accumulate in the connection's buffer. io->rdata/io->rlen
 *    describe the unconsumed bytes; the pointer is valid until the next call
 *    on that connection. rl_conn_consume() drops bytes from the front. Ring
 *    buffers are recycled as soon as their bytes are copied, so an idle
 *    connection holds no ring buffer.
 * 3. When unconsumed bytes reach the receive window (cfg recv_window or the
 *    amount the caller asked for with rl_conn_want_recv, whichever is larger)
 *    the core stops receiving (backpressure) and resumes when the caller
 *    consumes. Unconsumed bytes never exceed the window plus one provided
 *    buffer (recv_buffer_size).
 * 4. rl_conn_send() copies bytes into the connection's send queue (copy-pool
 *    slots, heap chunks when the pool is empty); the caller's buffer is free
 *    as soon as it returns. Bytes reach the wire in the order they were
 *    queued; partial sends are resubmitted by the core. io->unsent counts
 *    bytes not yet accepted by the kernel.
 * 5. rl_conn_close(): queued sends drain, the armed receive is cancelled, the
 *    fixed file is closed, and only then the slot is freed and RL_EV_CLOSED
 *    is emitted. After RL_EV_CLOSED the (slot, gen) is dead. A connection the
 *    peer reset still needs rl_conn_close() from the caller: the core never
 *    frees a slot the caller still names.
 *
 * Events are produced only when asked for, so a busy connection costs no
 * events nobody waits on: RL_EV_RECV once after rl_conn_want_recv(),
 * RL_EV_SEND once after rl_conn_want_send(), RL_EV_FD after rl_conn_fd()
 * returned -EAGAIN. ACCEPTED, CONNECTED, CLOSED and TIMER are always emitted.
 */
#ifndef RINGLINE_H
#define RINGLINE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RL_VERSION_STRING "0.1.0"

#pragma GCC visibility push(default)

/* RL_FFI_BEGIN: everything up to RL_FFI_END is fed to LuaJIT's ffi.cdef
 * (bindings/cdef.lua is generated from it). Plain declarations only: no
 * macros, no structs by value, no varargs, no bitfields. */

struct rl_worker;

/* Tuning. Each field has a default (rl_config_init), a validated range and a
 * line in rl_config_keys(); rl_config_set() is the checked way to change one. */
struct rl_config {
	uint32_t sq_entries;          /* SQ ring size; CQ is 4x */
	uint32_t recv_buffers;        /* provided buffers in the recv ring */
	uint32_t recv_buffer_size;    /* bytes per provided buffer */
	uint32_t send_slots;          /* send copy pool slots */
	uint32_t send_slot_size;      /* bytes per send copy slot */
	uint32_t max_connections;     /* connection slots = fixed file entries */
	uint32_t recv_window;         /* unconsumed bytes before recv pauses */
	uint32_t send_high_watermark; /* unsent bytes above which writers wait */
	uint32_t send_low_watermark;  /* unsent bytes at which waiting writers resume */
	uint32_t listen_backlog;      /* listen(2) backlog */
	uint32_t max_timers;          /* concurrently armed timers */
	uint32_t zc_threshold;        /* guarded parts below this many bytes are copied */
	uint32_t send_slab_entries;   /* in-flight scatter-gather / zero-copy sends */
	uint32_t udp_buffers;         /* provided buffers of the UDP receive ring */
	uint32_t udp_buffer_size;     /* bytes per UDP buffer: the largest datagram kept whole */
	uint32_t udp_queue;           /* datagrams queued per UDP socket before new ones are dropped */
	uint32_t close_timeout;       /* ms a graceful close may go without send progress
	                                 before it becomes a reset */
	uint32_t tls_handshake_timeout; /* ms from rl_conn_tls_start to a finished handshake */
	uint32_t sqpoll;              /* 1: a kernel thread polls the SQ (IORING_SETUP_SQPOLL) */
	uint32_t sqpoll_cpu;          /* the CPU that thread is pinned to; RL_SQPOLL_ANY_CPU: none */
};

struct rl_config_key {
	const char *name;
	uint32_t offset;   /* byte offset of the field in struct rl_config */
	uint32_t def;
	uint32_t min;
	uint32_t max;
	uint32_t pow2;     /* 1: the value must be a power of two */
	const char *doc;
};

/* The errno values the core returns (negated) that callers test for by
 * name: Linux's, the same on every architecture ringline runs on, so the
 * FFI side reads them from here (C.RL_ETIMEDOUT) instead of copying numbers.
 * event.c checks each against <errno.h> at compile time. */
enum rl_errno {
	RL_EPERM = 1,
	RL_ENOENT = 2,
	RL_ESRCH = 3,
	RL_EINTR = 4,
	RL_E2BIG = 7,
	RL_EBADF = 9,
	RL_EAGAIN = 11,
	RL_ENOMEM = 12,
	RL_EBUSY = 16,
	RL_ENODEV = 19,
	RL_EINVAL = 22,
	RL_ENOTTY = 25,
	RL_ENOSPC = 28,
	RL_EPIPE = 32,
	RL_EPROTO = 71,
	RL_EBADMSG = 74,
	RL_EDESTADDRREQ = 89,
	RL_EMSGSIZE = 90,
	RL_EPROTONOSUPPORT = 93,
	RL_EOPNOTSUPP = 95,
	RL_EAFNOSUPPORT = 97,
	RL_ECONNABORTED = 103,
	RL_ECONNRESET = 104,
	RL_ENOBUFS = 105,
	RL_ENOTCONN = 107,
	RL_ESHUTDOWN = 108,
	RL_ETIMEDOUT = 110,
	RL_ECONNREFUSED = 111,
	RL_ESTALE = 116,
	RL_ECANCELED = 125,
	RL_ENODATA = 61,    /* sendfile: the file ended before count bytes (truncated) */
	RL_EISDIR = 21,
	RL_EEXIST = 17,
	RL_ERANGE = 34,
};

/* What happened. `slot`/`gen` name a connection unless said otherwise. */
enum rl_event_type {
	RL_EV_ACCEPTED = 1,  /* new inbound connection; data = listener id, aux = its generation */
	RL_EV_RECV = 2,      /* want_recv satisfied: enough bytes, EOF or error */
	RL_EV_SEND = 3,      /* want_send satisfied: unsent <= threshold, or send error */
	RL_EV_CLOSED = 4,    /* slot freed; res = 0 or the -errno that ended it */
	RL_EV_CONNECTED = 5, /* outbound connect done; data = caller token; res = 0 or -errno
	                        (on failure slot/gen are 0 and nothing needs closing) */
	RL_EV_TIMER = 6,     /* timer fired; slot = timer id, data = token */
	RL_EV_FD = 7,        /* a descriptor for the connection is ready (rl_conn_fd); res = fd or -errno */
	RL_EV_LISTENER = 8,  /* listener stopped accepting for good; slot = listener id, res = -errno */
	RL_EV_UDP = 11,      /* datagrams wait on UDP socket `slot` (after rl_udp_want), or it failed: res < 0 */
	RL_EV_MESSAGE = 10,  /* the inbox has messages: take them with rl_worker_take_message */
	RL_EV_GUARD = 9,     /* a guarded part is released for good: data = its token,
	                        slot = its region id (or RL_PART_PINNED as uint32) */
	RL_EV_SLAB = 12,     /* a send slab entry came free after rl_worker_want_slab;
	                        data = entries free now */
	RL_EV_PENDING = 13,  /* rl_conn_probe's answer: res = 1 (unread bytes wait in the
	                        kernel), 0 (none) or -errno */
	RL_EV_TLS = 14,      /* the handshake rl_conn_tls_start began ended: res = 0
	                        (established), -EPROTO (failed: rl_conn_tls_info says why),
	                        -ETIMEDOUT (tls_handshake_timeout) or the connection's
	                        -errno; emitted once, unless the caller closed it first */
	RL_EV_EXIT = 15,     /* a process of rl_proc_spawn ended and was reaped: slot = its
	                        id, gen = its generation, data = token; res = its wait
	                        status (as waitpid's) or -errno; exactly once per process */
	RL_EV_NVME = 16,     /* an NVMe passthrough command of rl_nvme_submit completed:
	                        slot = device id, data = token, res = 0, the NVMe status
	                        (> 0: status code and type) or -errno; aux = the
	                        completion's result dword (low 32 bits) */
	RL_EV_FILE = 20,     /* a file operation (rl_fs_*, rl_file_*) ended: data = its token,
	                        slot = its id, res = the result or -errno (-ECANCELED when
	                        rl_fs_cancel stopped it), aux = rl_fs_listdir's size needed */
};

/* One part of a scatter-gather send (rl_conn_sendv). */
struct rl_part {
	const void *ptr;
	uint32_t len;
	int32_t region;  /* RL_PART_COPY, RL_PART_PINNED, or a region id */
	uint32_t token;  /* guarded parts: returned by RL_EV_GUARD on release */
	uint32_t pad;
};

enum rl_part_kind {
	RL_PART_COPY = -1,   /* copied before rl_conn_sendv returns */
	RL_PART_PINNED = -2, /* caller-owned memory kept alive until RL_EV_GUARD
	                        (e.g. an immutable Lua string); not registered */
};

struct rl_event {
	uint32_t type;  /* enum rl_event_type */
	int32_t res;
	uint32_t slot;
	uint32_t gen;
	uint32_t data;
	uint32_t aux;   /* RL_EV_ACCEPTED: the listener's generation (an event
	                   left from an earlier listener with the same id has
	                   another); 0 otherwise */
};

/* The state of one connection slot, kept current by the core and read in
 * place by the caller (never written by it). */
struct rl_conn_io {
	const uint8_t *rdata; /* first unconsumed received byte; NULL while none is
	                         buffered (an emptied buffer goes back to the worker) */
	uint32_t rlen;        /* unconsumed bytes */
	uint32_t gen;         /* generation of the current occupant */
	int32_t rerr;         /* 0, or -errno that ended receiving */
	uint32_t reof;        /* 1 once the peer's FIN arrived (after rlen bytes) */
	int32_t serr;         /* 0, or -errno that ended sending */
	uint32_t unsent;      /* bytes queued but not yet taken by the kernel */
	uint32_t state;       /* enum rl_conn_state */
	uint32_t pad;
};

enum rl_conn_state {
	RL_CONN_FREE = 0,
	RL_CONN_OPEN = 1,
	RL_CONN_CLOSING = 2,  /* close requested; draining / cancelling */
};

enum rl_close_how {
	RL_CLOSE_GRACEFUL = 0, /* after queued data */
	RL_CLOSE_RESET = 1,    /* abort: queued data dropped, RST to the peer */
};

enum rl_listen_flags {
	RL_LISTEN_REUSEPORT = 1,
	RL_LISTEN_NODELAY = 2,   /* TCP_NODELAY, inherited by accepted sockets */
	RL_LISTEN_MODE = 4,      /* unix sockets: the file's permissions are
	                            (flags >> RL_LISTEN_MODE_SHIFT) & 0777, set
	                            between bind(2) and listen(2) */
	RL_LISTEN_MODE_SHIFT = 16,
};

enum rl_sockopt {
	RL_OPT_NODELAY = 1,
	RL_OPT_KEEPALIVE = 2,
	RL_OPT_SNDBUF = 3,
	RL_OPT_RCVBUF = 4,
};

/* Per-worker counters. "in use" gauges return to their idle values when the
 * load is gone; the rest only grow. Read in place via rl_worker_metrics(). */
struct rl_metrics {
	uint64_t conns_open;         /* gauge */
	uint64_t conns_accepted;
	uint64_t conns_connected;
	uint64_t conns_closed;
	uint64_t conns_refused;      /* peers refused: the connection table full, no hand-off
	                                member could take one, or out of descriptors */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t send_slots_used;    /* gauge */
	uint64_t send_heap_chunks;   /* gauge: chunks taken from the heap when the pool was empty */
	uint64_t send_bytes_queued;  /* gauge: unsent bytes over all connections */
	uint64_t recv_buffers_free;  /* gauge: provided buffers owned by the kernel */
	uint64_t recv_pauses;        /* backpressure: recv stopped on a full window */
	uint64_t recv_enobufs;       /* a recv ended on an empty buffer ring */
	uint64_t accum_bytes;        /* gauge: bytes allocated for receive accumulators */
	uint64_t timers_active;      /* gauge */
	uint64_t ops_inflight;       /* gauge: SQEs the kernel has not completed */
	uint64_t sqes_submitted;
	uint64_t cqes_reaped;
	uint64_t loop_iterations;
	uint64_t stale_cqes;         /* completions for a previous occupant, dropped */
	uint64_t accept_errors;      /* transient accept failures (re-armed) */
	uint64_t slab_used;          /* gauge: send slab entries in use */
	uint64_t guards_outstanding; /* gauge: guarded parts not yet released */
	uint64_t zc_sends;           /* SENDMSG_ZC operations submitted */
	uint64_t zc_notifs;          /* zero-copy notifications received */
	uint64_t zc_copied;          /* notifications saying the kernel copied anyway */
	uint64_t zc_bytes;           /* bytes sent by zero-copy operations */
	uint64_t zc_fallbacks;       /* guarded parts rl_conn_sendv copied because the slab was
				      * full (rl_conn_sendv_upto stops there instead) */
	uint64_t udp_in;             /* datagrams received */
	uint64_t udp_out;            /* datagrams sent */
	uint64_t udp_dropped;        /* received datagrams dropped: the socket's queue was full */
	uint64_t udp_truncated;      /* received datagrams larger than udp_buffer_size */
	uint64_t udp_open;           /* gauge: UDP sockets */
	uint64_t handoffs;           /* acceptor: connections passed to a member */
	uint64_t handoff_errors;     /* acceptor: passes that failed (a member's table full, its
				      * ring gone, no SQE); most are retried on the next member */
	uint64_t udp_send_errors;    /* datagrams the kernel refused to send (e.g. EACCES: a
				      * broadcast without SO_BROADCAST); sends never wait, so
				      * the caller was told only that it was queued */
	uint64_t send_heap_bytes;    /* gauge: bytes of the heap chunks (send_heap_chunks) */
	uint64_t slab_waits;         /* rl_conn_sendv_upto calls that stopped at a full slab */
	uint64_t close_resets;       /* graceful closes reset after close_timeout without send
				      * progress (a peer that does not read) */
	uint64_t tls_handshakes;     /* TLS handshakes completed */
	uint64_t tls_failures;       /* TLS handshakes failed or timed out, and records refused
	                                after one (garbage, oversized, renegotiation) */
	uint64_t procs_running;      /* gauge: processes of rl_proc_spawn not yet reaped */
	uint64_t procs_started;      /* processes rl_proc_spawn started */
	uint64_t nvme_inflight;      /* gauge: NVMe passthrough commands the kernel holds */
	uint64_t fs_ops;             /* file operations completed through the ring */
	uint64_t fs_pool_ops;        /* file operations run by the fallback thread pool */
	uint64_t fs_inflight;        /* gauge: file operations not yet completed */
	uint64_t sendfile_pipes;     /* gauge: pipes held for sendfile (in use and cached) */
	uint64_t sendfile_fills;     /* sendfile splices file -> pipe run by the ring (bytes not
				      * in the page cache, or no RL_FEAT_CACHESTAT) */
};

/* Kernel features found by the start-up probe (rl_worker_features). */
enum rl_feature {
	RL_FEAT_DEFER_TASKRUN = 1,
	RL_FEAT_COOP_TASKRUN = 2,
	RL_FEAT_SINGLE_ISSUER = 4,
	RL_FEAT_SENDMSG_ZC = 8,
	RL_FEAT_FD_INSTALL = 16,   /* IORING_OP_FIXED_FD_INSTALL (6.8) */
	RL_FEAT_MSG_RING = 32,
	RL_FEAT_ZC_REPORT_USAGE = 64, /* notifications say when the kernel copied (6.2) */
	RL_FEAT_SENDTO = 128,      /* SEND takes a destination address (6.1): UDP sendto */
	RL_FEAT_RECV_LIMIT = 256,  /* multishot RECV stops after a byte limit (6.17): the
	                              receive keeps one multishot within the window */
	RL_FEAT_KTLS = 512,        /* the kernel's "tls" ULP attaches to TCP sockets
	                              (probed only: the record layer stays in userspace) */
	RL_FEAT_WAITID = 1024,     /* IORING_OP_WAITID (6.7): a process is reaped by the ring;
	                              without it, a POLL_ADD on its pidfd, then waitid(2) */
	RL_FEAT_FS_RING = 2048,    /* every file operation but listdir runs through the ring
	                              (OPENAT, READ(V), WRITE(V), READ/WRITE_FIXED, FSYNC, STATX,
	                              UNLINKAT, RENAMEAT, MKDIRAT, CLOSE); without it those the
	                              probe lacks run on the fallback thread pool */
	RL_FEAT_SPLICE = 4096,     /* IORING_OP_SPLICE: rl_conn_sendfile */
	RL_FEAT_SQPOLL = 8192,     /* the ring has an SQ polling thread (sqpoll=1 and the
	                              kernel accepted it) */
	RL_FEAT_CACHESTAT = 16384, /* cachestat(2) (6.5): rl_conn_sendfile sends what the page
	                              cache holds by sendfile(2) from the worker; without it
	                              every byte goes by IORING_OP_SPLICE (io-wq threads) */
};

/* sqpoll_cpu's default: the SQPOLL thread is not pinned. */
enum rl_sqpoll_cpu { RL_SQPOLL_ANY_CPU = 65535 };

/* -- configuration -- */
void rl_config_init(struct rl_config *cfg);
/* Set one key with validation; on failure writes a message naming the key
 * and the allowed range into msg and returns -EINVAL (-ENOENT: unknown key). */
int rl_config_set(struct rl_config *cfg, const char *key, int64_t value, char *msg, size_t msglen);
/* Check the whole config (cross-field rules too); same message convention. */
int rl_config_validate(const struct rl_config *cfg, char *msg, size_t msglen);
/* The table of keys; *n receives the count. Static storage. */
const struct rl_config_key *rl_config_keys(int *n);

/* -- worker -- */
/* Create a worker for the calling thread. cfg may be NULL for defaults. On
 * -EINVAL a message is in msg (when msg is not NULL). */
int rl_worker_new(const struct rl_config *cfg, struct rl_worker **out, char *msg, size_t msglen);
/* Tear down. Closes listeners and UDP sockets, resets and closes every open
 * connection, waits for every in-flight operation and zero-copy
 * notification, then frees. Returns 0 when the caller had closed everything
 * it opened, -EBUSY when something (a connection, listener, timer, UDP
 * socket or pending connect) was still live - it was cleaned up, but the
 * caller leaked it - and -ETIMEDOUT when the kernel did not give everything
 * back within 10 s (then the memory is kept, never freed under the kernel). */
int rl_worker_destroy(struct rl_worker *w);
/* Submit, wait up to timeout_ms (-1: forever, 0: never) but no later than
 * the nearest timer, reap, fill events. Returns the number of events. */
int rl_worker_poll(struct rl_worker *w, struct rl_event *events, int max, int timeout_ms);
/* Wake a worker blocked in rl_worker_poll from any thread. */
int rl_worker_wake(struct rl_worker *w);
/* Post a message into a worker's inbox from any thread: the bytes are
 * copied, then the worker is woken and its next poll raises RL_EV_MESSAGE.
 * `from` and `kind` are the caller's (the host uses kind for signals). When
 * `via` is the calling thread's own worker, the doorbell is a MSG_RING
 * submitted with via's next batch instead of an eventfd write. */
int rl_worker_post(struct rl_worker *to, uint32_t from, uint32_t kind, const void *data, size_t len,
		   struct rl_worker *via);
/* Message kinds the core and host use; user messages use RL_MSG_USER and up. */
enum rl_msg_kind {
	RL_MSG_RESOLVED = 1, /* rl_resolve result: from = token; payload = addresses,
	                        one per line, or "!" + the resolver's error text */
	RL_MSG_SIGNAL = 2,   /* from the host: from = signal number */
	RL_MSG_USER = 16,
};
/* Take the oldest message: returns its length and copies it into buf when
 * it fits (else -EMSGSIZE and it stays), -EAGAIN when the inbox is empty. */
int rl_worker_take_message(struct rl_worker *w, void *buf, size_t cap, uint32_t *from, uint32_t *kind);
struct rl_metrics *rl_worker_metrics(struct rl_worker *w);
uint32_t rl_worker_features(const struct rl_worker *w);
/* The configuration in effect: the one given, with max_connections resolved
 * when it was 0 (sized to RLIMIT_NOFILE). */
const struct rl_config *rl_worker_config(const struct rl_worker *w);
/* Monotonic loop time in seconds, cached at the last poll. */
double rl_worker_now(const struct rl_worker *w);
/* Connections, listeners, timers, UDP sockets and pending connects or
 * socket installs still alive (0 = idle; operations in flight are in
 * rl_worker_metrics()->ops_inflight). */
int rl_worker_live(const struct rl_worker *w);
/* Give memory the worker and the process no longer use back to the system:
 * the spare receive buffers, the free send-pool slots' pages, then the C
 * allocator's free pages (glibc's
 * malloc_trim; elsewhere only the spares). For after a burst of
 * connections ended; not a hot-path call (it walks the allocator's free
 * lists). Returns 1 when the allocator released pages, else 0. */
int rl_worker_trim(struct rl_worker *w);

/* -- listeners -- */
/* addr: "host:port", "[v6]:port", ":port", "port" or "unix:/path"; numeric
 * hosts or names resolved once here (blocking, at start-up). Returns the
 * listener id. */
int rl_listen(struct rl_worker *w, const char *addr, uint32_t flags);
/* The bound port (0 for unix sockets). */
int rl_listener_port(struct rl_worker *w, int id);
/* The generation of listener id into *gen (RL_EV_LISTENER carries it: an
 * event for an earlier listener with the same id has another one).
 * Returns 0, or -ENOENT for an id not in use. */
int rl_listener_gen(struct rl_worker *w, int id, uint32_t *gen);
/* Stops accepting. A hand-off listener (rl_listen_handoff) leaves its
 * group first: no connection is handed to it after this returns. */
int rl_listener_close(struct rl_worker *w, int id);
/* A listener on fd, a listening stream socket made elsewhere (a socket
 * passed by systemd, by the process that exec'd us, or kept by the host
 * across a reload). flags: RL_LISTEN_NODELAY is applied to it; the others
 * were the creator's business. Takes fd on success (closed with the
 * listener); on failure the caller still owns it. -ENOTSOCK / -EINVAL when
 * fd is not a listening stream socket. */
int rl_listen_fd(struct rl_worker *w, int fd, uint32_t flags);
/* The socket rl_listen would make (bound, listening, close-on-exec), as a
 * plain descriptor the caller owns: for a host that keeps it across
 * workers (rl_listen_fd on a dup in each). Returns the fd or -errno. */
int rl_listen_socket(const char *addr, uint32_t flags, uint32_t backlog);
/* Stops accepting as rl_listener_close, for a socket that lives on
 * elsewhere (a dup of it accepts in another worker): a connection the
 * kernel accepted before the cancel took effect is reported with
 * RL_EV_ACCEPTED as usual instead of reset, since a peer it took off the
 * shared queue has nobody else to serve it. So are the peers queued when
 * the accept ended (up to 16, by accepts that never wait; Linux 6.10): the
 * kernel wakes one accept per peer, and a wake-up this cancelled accept
 * took left its peer queued with the other worker not woken. The listener
 * stays allocated (rl_listener_gen) until then. */
int rl_listener_release(struct rl_worker *w, int id);

/* -- hand-off: one worker accepts, the others serve --
 * A hand-off group is one listening socket shared by several workers
 * without SO_REUSEPORT's hashing: one worker (the acceptor) accepts on it
 * and passes each accepted connection, round robin, to the group's members
 * with IORING_OP_MSG_RING (IORING_MSG_SEND_FD), straight from its fixed
 * file table into the member's. A member sees RL_EV_ACCEPTED on its
 * hand-off listener as if it had accepted the connection itself. If a
 * member cannot take one (its table is full) the next one is tried. If the
 * acceptor's socket fails for good, every member's listener stops with
 * RL_EV_LISTENER.
 *
 * Kernel: the target must learn the index the kernel allocated in its
 * table, which Linux reports since 6.3 (6.2.y); rl_handoff_new probes it
 * once per process and returns -EOPNOTSUPP where it is missing.
 *
 * Threads: rl_handoff_new, rl_listen_handoff and rl_listener_close may be
 * called from any member's thread while the acceptor runs; the group's lock
 * is held only at joins, leaves and each hand-off. Lifetime: free the group
 * after the acceptor's listener is closed and every member has left (or its
 * worker was destroyed). When the last member leaves, the acceptor closes
 * its listener by itself at its next poll (unless a member joined again by
 * then), so new peers are refused by the kernel rather than accepted and
 * dropped; joins fail with -ESHUTDOWN from then on. When the acceptor's
 * listener ends otherwise (closed, its socket failed, its worker destroyed),
 * each member's listener ends with an RL_EV_LISTENER carrying why. */
struct rl_handoff;
/* Bind and listen on addr (as rl_listen; flags: RL_LISTEN_*). The group
 * owns the socket until an acceptor takes it. -EOPNOTSUPP: the kernel
 * cannot hand off (see above). */
int rl_handoff_new(const char *addr, uint32_t flags, uint32_t backlog, struct rl_handoff **out);
void rl_handoff_free(struct rl_handoff *h);
/* The bound port (0 for unix sockets). */
int rl_handoff_port(struct rl_handoff *h);
/* Members currently joined. */
int rl_handoff_members(struct rl_handoff *h);
/* 1 once the group is closed and neither an acceptor nor a member uses it
 * any more (it may be freed now, from any thread), else 0. */
int rl_handoff_finished(struct rl_handoff *h);
/* w becomes the group's acceptor: multishot accept on its socket, each
 * connection handed on. Returns w's listener id; -EBUSY if the group has
 * an acceptor already or its socket is closed, -ESHUTDOWN if it has no
 * members (its socket is then closed), -EINVAL if w is a member (a ring cannot pass a file to itself),
 * -EOPNOTSUPP without MSG_RING. */
int rl_handoff_accept(struct rl_worker *w, struct rl_handoff *h);
/* A listener of w with no socket of its own, joined to the group: the
 * connections the acceptor hands to w arrive on it. Returns its id;
 * -ESHUTDOWN once the group's socket is closed, -EINVAL if w is the
 * group's acceptor. */
int rl_listen_handoff(struct rl_worker *w, struct rl_handoff *h);

/* -- connections -- */
/* The in-place state of a slot (never NULL for slot < max_connections). */
const struct rl_conn_io *rl_conn_io(struct rl_worker *w, uint32_t slot);
int rl_conn_consume(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t n);
/* Ask for one RL_EV_RECV once rlen >= min_bytes, or EOF, or an error.
 * -EMSGSIZE when min_bytes plus one buffer is more than a connection can
 * hold (2^31 - 1 bytes). */
int rl_conn_want_recv(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t min_bytes);
/* Queue bytes (copied before return). Returns 0 or -errno (-EPIPE after the
 * send side ended, -ESTALE for a dead connection). On -ENOMEM a prefix may
 * have been queued, and is sent: io->unsent grew by its length. */
int rl_conn_send(struct rl_worker *w, uint32_t slot, uint32_t gen, const void *data, size_t len);
/* Ask for one RL_EV_SEND once unsent <= threshold (0 = fully flushed). */
int rl_conn_want_send(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t threshold);
/* Ask for one RL_EV_SEND once the send side fails (io->serr: a send error,
 * or a receive error such as the peer's reset), whatever is unsent: for a
 * writer that waits for something else (a send slab entry). Keeps a
 * threshold asked for already. 1 when it has failed already. */
int rl_conn_want_send_error(struct rl_worker *w, uint32_t slot, uint32_t gen);
/* Does the kernel hold unread bytes for this connection? One RL_EV_PENDING
 * answers, after every receive completion already posted (so what it says
 * is beyond io->rlen): 1 = yes (the receive path will bring them when asked
 * with rl_conn_want_recv), 0 = no (or the peer ended its side). A graceful
 * stop serves what arrived before it with this. -ESTALE, -EPIPE (closing). */
int rl_conn_probe(struct rl_worker *w, uint32_t slot, uint32_t gen);
/* Half-close (SHUT_WR) once the queue drains. */
int rl_conn_shutdown(struct rl_worker *w, uint32_t slot, uint32_t gen);
int rl_conn_close(struct rl_worker *w, uint32_t slot, uint32_t gen, int how);
/* A plain descriptor for the connection's socket (for getpeername, options).
 * Outbound connections have one at once; inbound ones live only in the fixed
 * table, so the first call installs one and returns -EAGAIN, then RL_EV_FD. */
int rl_conn_fd(struct rl_worker *w, uint32_t slot, uint32_t gen);
/* Outbound TCP/unix connect. addr as for rl_listen (numeric hosts only).
 * Result arrives as RL_EV_CONNECTED carrying token. timeout_ms 0 = none. */
int rl_connect(struct rl_worker *w, const char *addr, uint32_t timeout_ms, uint32_t token);
/* rl_connect from a fixed local address: bind_addr ("host:port" numeric,
 * "[v6]:port", or "unix:/path" for a unix socket; port 0 = any) is bound
 * before the connect. Bind failures return at once (-EADDRNOTAVAIL,
 * -EADDRINUSE, -EAFNOSUPPORT for another family, -EINVAL for a name other
 * than "localhost": names are resolved by the caller, never here) and no
 * RL_EV_CONNECTED follows. */
int rl_connect_from(struct rl_worker *w, const char *addr, const char *bind_addr, uint32_t timeout_ms,
		    uint32_t token);
/* Abort a connect still in progress: its RL_EV_CONNECTED then carries
 * -ECANCELED (every rl_connect gets exactly one RL_EV_CONNECTED). -ENOENT when
 * no connect with that token is in progress. */
int rl_connect_cancel(struct rl_worker *w, uint32_t token);

/* Queue a scatter-gather send of n parts, in order, as one operation where
 * possible. Guarded parts (a region id or RL_PART_PINNED, at least
 * zc_threshold bytes) are sent zero-copy: their memory must stay unchanged
 * and alive until RL_EV_GUARD returns their token, which happens exactly
 * once per guarded part, after the send's completion and every zero-copy
 * notification, on success, error, reset, close and teardown alike. Smaller
 * parts are copied. Returns 0 or -errno: then nothing was queued and no
 * guard will be reported, except for -ENOMEM, after which the parts before
 * the one that failed may be queued (and their guards reported as usual)
 * and the rest were not taken. */
int rl_conn_sendv(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts, int n);
/* As rl_conn_sendv, but a guarded part that finds every slab entry in use is
 * not copied: the call stops before it and returns how many parts were
 * queued (n when all were; fewer only for that reason). The caller waits
 * (rl_worker_want_slab) and sends the rest, parts + k, later: so memory
 * stays bounded by the slab, not by connections x body size. Errors as for
 * rl_conn_sendv. */
int rl_conn_sendv_upto(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		       int n);
/* Free send slab entries now (> 0); 0 when none is free: then one
 * RL_EV_SLAB is emitted when the next entry is freed. */
int rl_worker_want_slab(struct rl_worker *w);

/* -- regions: memory registered with the ring for guarded sends -- */
/* Map and register size bytes; *ptr receives the address. Returns the id. */
int rl_region_new(struct rl_worker *w, size_t size, void **ptr);
/* -EBUSY while any guard on it is outstanding; then nothing is freed. */
int rl_region_free(struct rl_worker *w, int id);
/* Guards on the region not yet released, or -ENOENT. */
int rl_region_inflight(struct rl_worker *w, int id);

/* -- UDP -- */
/* A UDP socket bound to addr ("host:port", "[v6]:port"; port 0 = any).
 * Receives run all the time into a bounded per-socket queue (multishot
 * RECVMSG from their own provided buffer group); datagrams are never merged
 * or split. Returns the socket id. */
int rl_udp_open(struct rl_worker *w, const char *bind_addr);
/* Fix the default destination (connect(2)); only its datagrams are received. */
int rl_udp_connect(struct rl_worker *w, int id, const char *addr);
/* Send one datagram (copied) to addr, or to the connected peer when addr is
 * NULL. Returns 0 once it is queued, or -errno (-EAFNOSUPPORT: an IPv6
 * address for an IPv4 socket). A datagram the kernel then refuses is lost
 * and counted in udp_send_errors. */
int rl_udp_sendto(struct rl_worker *w, int id, const char *addr, const void *data, size_t len);
/* Ask for one RL_EV_UDP once a datagram is queued; 1 if one already is. */
int rl_udp_want(struct rl_worker *w, int id);
/* Take the oldest datagram: copies at most cap bytes (the rest of the
 * datagram is discarded), writes the sender's address text and meta[0] =
 * port, meta[1] = 1 when the datagram did not fit (the kernel's buffer or
 * cap). Returns the bytes copied, or -EAGAIN when none is queued. */
int rl_udp_take(struct rl_worker *w, int id, void *buf, size_t cap, char *host, size_t hostlen,
		int32_t *meta);
/* The bound port, or -errno. */
int rl_udp_port(struct rl_worker *w, int id);
int rl_udp_close(struct rl_worker *w, int id);

/* Adopt fd, a connected stream socket the caller made (one end of a
 * socketpair, say), as a connection: it is installed into the fixed table
 * and, as for rl_connect, one RL_EV_CONNECTED carrying token follows
 * (res = 0 with its slot and gen, or -errno). The core owns fd from the
 * call on, on failure too (it is closed). rl_connect_cancel(token) aborts
 * an adoption still installing. Adopted connections count as connected. */
int rl_conn_adopt(struct rl_worker *w, int fd, uint32_t token);

/* -- processes --
 * rl_proc_spawn starts a program with posix_spawn, its signal mask empty
 * and every signal at its default disposition (but those ignored when the
 * process started, see rl_proc_sigdefault), holds a pidfd for it and keeps
 * one wait armed in the ring (IORING_OP_WAITID, or a poll on the pidfd
 * then waitid(2)), so the child is reaped as soon as it exits whatever the
 * caller does: never a zombie. RL_EV_EXIT reports it. A worker destroyed
 * with processes still running kills them (SIGKILL) and reaps them first. */
enum rl_proc_stdio {
	RL_PROC_INHERIT = 0, /* the worker's own descriptor */
	RL_PROC_NULL = 1,    /* /dev/null */
	RL_PROC_PIPE = 2,    /* a socketpair: the caller gets the other end */
	RL_PROC_STDOUT = 3,  /* stderr only: wherever stdout goes */
	RL_PROC_STDIN_SHIFT = 0,
	RL_PROC_STDOUT_SHIFT = 2,
	RL_PROC_STDERR_SHIFT = 4,
};
struct rl_proc_info {
	int32_t id;      /* names the process with gen in rl_proc_kill and RL_EV_EXIT */
	uint32_t gen;
	int32_t pid;
	int32_t fds[3];  /* the caller's ends of the RL_PROC_PIPE streams (stdin, stdout,
	                    stderr: close-on-exec, the caller's to close or adopt), else -1 */
};
/* argv[0] is searched in PATH when it has no slash. envp NULL: the
 * worker's environment. cwd NULL: the worker's. stdio: an rl_proc_stdio per
 * stream, shifted by RL_PROC_*_SHIFT. Returns 0 and fills *out, or -errno
 * with nothing left behind (-ENOENT: no such program, or no such cwd). */
int rl_proc_spawn(struct rl_worker *w, const char *const *argv, const char *const *envp,
		  const char *cwd, uint32_t stdio, uint32_t token, struct rl_proc_info *out);
/* Send sig through the pidfd. -ESRCH once the process was reaped (its
 * RL_EV_EXIT is out: the id is stale). */
int rl_proc_kill(struct rl_worker *w, int id, uint32_t gen, int sig);

/* -- NVMe passthrough (IORING_OP_URING_CMD) --
 * Commands go to the NVMe generic character device of a namespace
 * (/dev/ngXnY; I/O commands) or of its controller (/dev/nvmeX; admin
 * commands, which the namespace device refuses) through a second ring of
 * the worker, made on first use with IORING_SETUP_SQE128 | CQE32 (the
 * 64-byte command lives in the big SQE, the result dword in the big CQE):
 * the worker's own ring keeps 64-byte SQEs. That ring posts into the
 * worker's wake-up eventfd, so its completions wake the poll and are
 * reaped with the rest as RL_EV_NVME. The command block is built by the
 * pure rl_nvme_cmd_* functions: the layout of struct nvme_uring_cmd
 * (linux/nvme_ioctl.h), which test_nvme checks field by field. */
struct rl_nvme_cmd {
	uint8_t opcode;
	uint8_t flags;
	uint16_t rsvd1;
	uint32_t nsid;
	uint32_t cdw2;
	uint32_t cdw3;
	uint64_t metadata;
	uint64_t addr;
	uint32_t metadata_len;
	uint32_t data_len;
	uint32_t cdw10;
	uint32_t cdw11;
	uint32_t cdw12;
	uint32_t cdw13;
	uint32_t cdw14;
	uint32_t cdw15;
	uint32_t timeout_ms;
	uint32_t rsvd2;
};
enum rl_nvme_opcode {
	RL_NVME_FLUSH = 0x00,    /* I/O */
	RL_NVME_WRITE = 0x01,    /* I/O */
	RL_NVME_READ = 0x02,     /* I/O */
	RL_NVME_IDENTIFY = 0x06, /* admin */
	RL_NVME_CNS_NAMESPACE = 0x00,
	RL_NVME_CNS_CONTROLLER = 0x01,
	RL_NVME_IDENTIFY_SIZE = 4096,
	RL_NVME_MAX_BLOCKS = 65536, /* NLB is a 16-bit count less one */
};
/* READ or WRITE of nblocks (1..65536) logical blocks from lba, len bytes
 * at buf (the caller's: nblocks times the LBA size). -EINVAL otherwise. */
int rl_nvme_cmd_rw(struct rl_nvme_cmd *c, int opcode, uint32_t nsid, uint64_t lba,
		   uint32_t nblocks, void *buf, uint32_t len);
int rl_nvme_cmd_flush(struct rl_nvme_cmd *c, uint32_t nsid);
/* IDENTIFY with cns (RL_NVME_CNS_*; nsid 0 for the controller) into buf,
 * RL_NVME_IDENTIFY_SIZE bytes. */
int rl_nvme_cmd_identify(struct rl_nvme_cmd *c, uint32_t nsid, uint32_t cns, void *buf);
struct rl_nvme_info {
	int32_t id;
	uint32_t nsid;     /* the namespace's id (NVME_IOCTL_ID) */
	int32_t admin;     /* 1 when its controller's device opened too (admin commands) */
	int32_t pad;
};
/* Open a namespace's generic device (O_RDWR) and, for admin commands, its
 * controller's (/dev/ngXnY -> /dev/nvmeX; without it, admin commands
 * fail with -ENODEV). -ENOTTY: not an NVMe device. Returns 0 and *out. */
int rl_nvme_open(struct rl_worker *w, const char *path, struct rl_nvme_info *out);
/* Take descriptors the caller opened (a privileged helper may pass them):
 * fd for I/O commands, admin_fd for admin ones (-1: none), nsid the
 * namespace's. Nothing is checked: any file with a uring_cmd handler is
 * taken (the tests use /dev/null). The core closes them with the device;
 * on failure they stay the caller's. Returns the id. */
int rl_nvme_open_fd(struct rl_worker *w, int fd, int admin_fd, uint32_t nsid);
/* Submit one command (admin != 0: to the controller). The memory at
 * cmd->addr must stay valid until its RL_EV_NVME. Returns 0 or -errno
 * (then no event follows). */
int rl_nvme_submit(struct rl_worker *w, int id, const struct rl_nvme_cmd *cmd, int admin,
		   uint32_t token);
/* Close the device once its commands completed (-EBUSY while some are in
 * flight: nothing is closed then). */
int rl_nvme_close(struct rl_worker *w, int id);

/* -- name resolution -- */
/* Resolve host (a name or numeric address) off the loop, on the worker's
 * resolver thread (started on first use); the result arrives as an inbox
 * message of kind RL_MSG_RESOLVED with from = token. family: 0 any, 4, 6.
 * Returns 0 or -errno. */
int rl_resolve(struct rl_worker *w, const char *host, int family, uint32_t token);

/* -- descriptors (helpers around a plain socket fd) -- */
/* Writes the address text into host, returns the port (0 for unix) or -errno. */
int rl_fd_name(int fd, int peer, char *host, size_t hostlen);
int rl_fd_setoption(int fd, int opt, int value);

/* -- timers -- */
/* Fire RL_EV_TIMER(slot = id, data = token) after delay seconds. Returns the
 * timer id (>= 0). */
int rl_timer_add(struct rl_worker *w, double delay, uint32_t token);
/* 0 if cancelled, -ENOENT if it already fired or never existed. */
int rl_timer_cancel(struct rl_worker *w, int id);

/* -- TLS (OpenSSL 3, in userspace) --
 * A connection becomes TLS with rl_conn_tls_start: from then on the core
 * runs the record layer. Ciphertext arriving in provided buffers is
 * decrypted into the accumulator (io->rdata/rlen are plaintext, the window
 * counts plaintext), rl_conn_send encrypts into copy chunks of the same
 * ordered send queue (io->unsent counts ciphertext), and rl_conn_sendv
 * encrypts guarded parts at once and releases their guards then (no zero
 * copy through a userspace record layer). The handshake is driven by
 * completions and ends with one RL_EV_TLS; sends before it return
 * -ENOTCONN. The peer's close_notify reads as EOF (io->reof);
 * rl_conn_shutdown and a graceful rl_conn_close send one first. A context
 * is shared by any number of connections and workers; freeing it while
 * connections use it is safe (each holds a reference). */
struct rl_tls_ctx;
/* A server context from PEM files (the certificate file may hold the
 * chain). -EINVAL with the reason in msg. TLS 1.2 and 1.3. */
int rl_tls_ctx_new_server(const char *cert_pem_path, const char *key_pem_path,
			  struct rl_tls_ctx **out, char *msg, size_t msglen);
/* A client context. verify != 0: the peer's chain is checked against
 * ca_path (a PEM file or a hashed directory), or the system store when
 * ca_path is NULL, and its name against rl_conn_tls_start's server_name. */
int rl_tls_ctx_new_client(const char *ca_path, int verify, struct rl_tls_ctx **out, char *msg,
			  size_t msglen);
void rl_tls_ctx_free(struct rl_tls_ctx *ctx);
/* Configure a context before its first connection (not after: OpenSSL
 * contexts are not safe to change while in use). -EINVAL with the reason
 * in msg where there is one. */
/* ALPN names in wire format (each prefixed by its length byte), in order of
 * preference. A client offers them; a server picks its first the client
 * offers, and refuses a client offering only others (a fatal
 * no_application_protocol alert, RFC 7301). */
int rl_tls_ctx_set_alpn(struct rl_tls_ctx *ctx, const uint8_t *wire, uint32_t len);
/* The versions allowed: 12 (TLS 1.2) and/or 13 (TLS 1.3), min <= max. */
int rl_tls_ctx_set_protocols(struct rl_tls_ctx *ctx, int min_version, int max_version);
/* One colon-separated OpenSSL list: TLS_* names are TLS 1.3 suites, the rest
 * the TLS 1.2 cipher list; a version none of the names is for keeps its
 * defaults. */
int rl_tls_ctx_set_ciphers(struct rl_tls_ctx *ctx, const char *list, char *msg, size_t msglen);
/* The handshakes of this context end within ms (1..3600000) instead of
 * the worker's tls_handshake_timeout; 0 restores that default. */
int rl_tls_ctx_set_handshake_timeout(struct rl_tls_ctx *ctx, uint32_t ms);
/* Server: request a client certificate and require it to verify against
 * ca_path (a PEM file or hashed directory). */
int rl_tls_ctx_set_client_ca(struct rl_tls_ctx *ctx, const char *ca_path, char *msg,
			     size_t msglen);
/* Client: the certificate and key presented when a server asks. */
int rl_tls_ctx_use_cert(struct rl_tls_ctx *ctx, const char *cert_pem_path,
			const char *key_pem_path, char *msg, size_t msglen);
/* Server: answer SNI name ("a.example", or "*.b.example" for one label)
 * with sub's certificate; exact names before wildcards, no match: ctx's
 * own pair. ctx keeps a reference to sub. Configure sub like ctx (ALPN,
 * client_ca): after the switch OpenSSL consults sub for them. */
int rl_tls_ctx_add_sni(struct rl_tls_ctx *ctx, const char *name, struct rl_tls_ctx *sub);
/* A client's resumable session: a reference-counted box. A client
 * connection fills its box each time the server sends a session ticket
 * (TLS 1.3 sends tickets after the handshake: the box may fill on a later
 * read). Passed to rl_conn_tls_start, the handshake offers its session. */
struct rl_tls_session;
int rl_tls_session_new(struct rl_tls_session **out);
void rl_tls_session_free(struct rl_tls_session *s);
/* 1 when the box holds a session to offer, else 0. */
int rl_tls_session_ready(struct rl_tls_session *s);
/* Begin the handshake on an open connection (client or server by the
 * context); bytes already received and not consumed are taken as the
 * peer's first ciphertext. server_name (client): SNI and the name
 * checked (a numeric address is checked, not sent), NULL for none.
 * session (client, may be NULL): the box to resume from and to fill; NULL
 * makes a new box (rl_conn_tls_session returns it).
 * -ESTALE, -EPIPE (closing), -ENOTCONN (still connecting), -EALREADY. */
int rl_conn_tls_start(struct rl_worker *w, uint32_t slot, uint32_t gen, struct rl_tls_ctx *ctx,
		      const char *server_name, struct rl_tls_session *session);
/* A new reference to a client connection's session box (free it with
 * rl_tls_session_free). -ENOENT: not a TLS client connection. */
int rl_conn_tls_session(struct rl_worker *w, uint32_t slot, uint32_t gen,
			struct rl_tls_session **out);
struct rl_tls_info {
	char protocol[16];     /* "TLSv1.3" */
	char cipher[64];
	char server_name[256]; /* client: the name asked for; server: the SNI received */
	char peer_subject[256];
	char error[160];       /* why the handshake or a record failed, else "" */
	char alpn[32];         /* the protocol ALPN chose, else "" */
	int32_t established;
	int32_t peer_verified; /* the peer's certificate was checked and passed */
	int32_t resumed;
	int32_t pad;
};
/* -ENOENT when the connection is not TLS. */
int rl_conn_tls_info(struct rl_worker *w, uint32_t slot, uint32_t gen, struct rl_tls_info *out);

/* -- HTTP/1.x request heads: ringline.http's parser (a pure function) --
 * rl_http_head_parse looks for a complete head in p[0, len), at most lim
 * bytes, and checks it byte by byte against RFC 9112: it returns the
 * head's length (its CRLFCRLF included) and fills h, 0 when the head is
 * not complete yet, -EMSGSIZE when lim bytes hold no complete head (431),
 * -E2BIG when it has more than h->max_fields fields (431), -EBADMSG when
 * it breaks the grammar (400: a bad method, target or version, an empty
 * or bad field name, obs-fold, a bare LF or NUL in a value) and
 * -EPROTONOSUPPORT for a version other than 1.0 and 1.1 (505). It never
 * reads past the head. The method starts at offset 0. The caller gives
 * fields (room for max_fields) and lower (lim bytes), where each field's
 * name is copied lower-cased at its own offset. */
enum rl_http_kind {
	RL_HTTP_OTHER = 0,
	RL_HTTP_HOST = 1,
	RL_HTTP_EXPECT = 2,
	RL_HTTP_CONNECTION = 3,
	RL_HTTP_CONTENT_LENGTH = 4,
	RL_HTTP_TRANSFER_ENCODING = 5,
};
struct rl_http_field {
	uint32_t name_off, name_len;   /* in p and in lower */
	uint32_t value_off, value_len; /* OWS around it left out */
	uint32_t kind;                 /* enum rl_http_kind, by name */
};
struct rl_http_head {
	struct rl_http_field *fields; /* in */
	uint8_t *lower;               /* in */
	uint32_t max_fields;          /* in */
	uint32_t len;                 /* out: bytes of the head */
	uint32_t method_len;
	uint32_t target_off, target_len;
	uint32_t minor;               /* HTTP/1.minor */
	uint32_t nfields;
};
int rl_http_head_parse(const uint8_t *p, size_t len, size_t lim, struct rl_http_head *h);

/* -- files (fileop.c) --
 * Each call queues one operation on the worker's ring and returns its id
 * (>= 0), or -errno at once (then nothing was queued and no event follows;
 * -EBUSY: RL_MAX_FILE_OPS are in flight). Exactly one RL_EV_FILE with the
 * caller's token reports its result. Memory the call names (buf, parts'
 * ptr, out) must stay valid until that event, even after rl_fs_cancel;
 * paths are copied. Operations the kernel's ring lacks (the probe at
 * start, or RINGLINE_DISABLE_FEATURES=fs_ring) and listdir run on a small
 * thread pool of the worker and report the same way. Descriptors are plain
 * (not fixed files); offset -1 = the file position. */
struct rl_stat {
	uint64_t size;
	uint64_t blocks;      /* 512-byte blocks allocated */
	uint64_t ino;
	uint64_t dev;         /* major << 32 | minor */
	int64_t mtime_sec;
	int64_t atime_sec;
	int64_t ctime_sec;
	uint32_t mtime_nsec;
	uint32_t atime_nsec;
	uint32_t ctime_nsec;
	uint32_t mode;        /* type and permission bits, as st_mode */
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
	uint32_t blksize;
	uint32_t dio_mem_align;    /* direct I/O: buffer alignment (0: unknown or none) */
	uint32_t dio_offset_align; /* direct I/O: offset and length alignment */
};
/* rl_fs_open's flags: the core's own bits (O_DIRECT differs between
 * architectures), mapped to open(2)'s; O_CLOEXEC is always added. */
enum rl_open_flag {
	RL_O_RDONLY = 0,
	RL_O_WRONLY = 1,
	RL_O_RDWR = 2,
	RL_O_CREAT = 4,
	RL_O_EXCL = 8,
	RL_O_TRUNC = 16,
	RL_O_APPEND = 32,
	RL_O_DIRECT = 64,
	RL_O_DIRECTORY = 128,
	RL_O_NOFOLLOW = 256,
};
/* flags: RL_O_*; res = the descriptor. -EINVAL for unknown bits. */
int rl_fs_open(struct rl_worker *w, const char *path, int flags, uint32_t mode, uint32_t token);
/* The open now, when the ring would have done it at once: openat2(2) with
 * RESOLVE_CACHED, which succeeds only when the whole path is in the dentry
 * cache (no I/O, no revalidation), as the ring's own first try of OPENAT.
 * The descriptor, a definite -errno (-ENOENT from a cached negative
 * entry, -EACCES, ...), or -EAGAIN: use rl_fs_open (a create or truncate,
 * a path not cached, a kernel without RESOLVE_CACHED, a ring without
 * OPENAT). Saves the round trip through the event loop. */
int rl_fs_open_now(struct rl_worker *w, const char *path, int flags);
/* Read or write len bytes at offset. region >= 0: buf lies in that region
 * (rl_region_new) and the ring's READ_FIXED / WRITE_FIXED are used: the
 * memory is registered, as direct I/O wants. res = bytes moved (a short
 * read: end of file). */
int rl_file_read(struct rl_worker *w, int fd, void *buf, uint32_t len, int64_t offset, int region,
		 uint32_t token);
int rl_file_write(struct rl_worker *w, int fd, const void *buf, uint32_t len, int64_t offset,
		  int region, uint32_t token);
/* Vectored: parts' ptr/len only (at most 1024 parts; copied). */
int rl_file_readv(struct rl_worker *w, int fd, const struct rl_part *parts, int n, int64_t offset,
		  uint32_t token);
int rl_file_writev(struct rl_worker *w, int fd, const struct rl_part *parts, int n, int64_t offset,
		   uint32_t token);
/* datasync != 0: fdatasync. */
int rl_file_fsync(struct rl_worker *w, int fd, int datasync, uint32_t token);
int rl_file_stat(struct rl_worker *w, int fd, struct rl_stat *out, uint32_t token);
/* statx(2) of an open file now, off the ring: an open file's attributes
 * are in memory on a local filesystem (IORING_OP_STATX always runs on an
 * io-wq thread, a thread hop per call); a network filesystem may ask its
 * server. 0 or -errno. */
int rl_file_stat_now(int fd, struct rl_stat *out);
int rl_file_close(struct rl_worker *w, int fd, uint32_t token);
/* close(2) now, off the ring (a file object collected without close). */
int rl_file_close_now(int fd);
/* nofollow != 0: a symlink is described itself. */
int rl_fs_stat(struct rl_worker *w, const char *path, int nofollow, struct rl_stat *out,
	       uint32_t token);
/* rmdir != 0: remove a directory (AT_REMOVEDIR). */
int rl_fs_unlink(struct rl_worker *w, const char *path, int rmdir, uint32_t token);
int rl_fs_rename(struct rl_worker *w, const char *from, const char *to, uint32_t token);
int rl_fs_mkdir(struct rl_worker *w, const char *path, uint32_t mode, uint32_t token);
/* The entries of a directory but "." and "..", each as one type byte
 * ('f' file, 'd' directory, 'l' symlink, '?' other) followed by the name
 * and a NUL, into buf: res = bytes written, or -ERANGE when cap is too
 * small (the event's aux = the bytes needed). Always on the pool: there
 * is no ring operation for getdents. */
int rl_fs_listdir(struct rl_worker *w, const char *path, void *buf, uint32_t cap, uint32_t token);
/* Stop operation id (token must match): its RL_EV_FILE still comes, with
 * -ECANCELED when it was stopped in time, else its result. -ENOENT when it
 * has completed already. */
int rl_fs_cancel(struct rl_worker *w, int id, uint32_t token);
/* Send count bytes of file fd from offset in order on the connection's
 * send queue, never through userspace: what the page cache holds by
 * sendfile(2) from the worker on the connection's plain descriptor, made
 * non-blocking (RL_FEAT_CACHESTAT; the first sendfile of an accepted
 * connection installs one), what it does not by IORING_OP_SPLICE file ->
 * pipe on an io-wq thread; without RL_FEAT_CACHESTAT everything by linked
 * splices file -> pipe -> socket. When nothing is queued, the bytes go out
 * from the call itself as far as they can; the rest is queued, with the
 * descriptor duplicated (the caller may close fd at once). io->unsent
 * grows by what is queued and falls as it goes out, so watermarks and
 * flushing work as for rl_conn_send. A file that ends before count bytes
 * fails the connection's send side with -ENODATA (the peer has part of
 * it: close). -EOPNOTSUPP on a TLS connection (userspace records: read and
 * rl_conn_send instead) or without RL_FEAT_SPLICE; -ENOBUFS past 2^32 - 1
 * unsent bytes; a send error found now is returned (and kept as the send
 * side's, as a queued send's would be). */
int rl_conn_sendfile(struct rl_worker *w, uint32_t slot, uint32_t gen, int fd, int64_t offset,
		     uint32_t count);
/* The same with prefix_len bytes (copied) sent before the file: a
 * response's head, which then leaves in the same packets as the body's
 * start (MSG_MORE) and from the same call. */
int rl_conn_sendfile_with(struct rl_worker *w, uint32_t slot, uint32_t gen, const void *prefix,
			  uint32_t prefix_len, int fd, int64_t offset, uint32_t count);
/* ---- shared dictionaries (ngx.shared.DICT; shdict.c) ----
 * Process-wide key/value stores every worker thread sees: one fixed arena
 * per dictionary (allocated when it is opened, never grown), a hash table,
 * an LRU list, expiry per key, values of type string, number, boolean or
 * list, and a mutex per dictionary around every call. Dictionaries live
 * until the process ends (workers keep pointers to them). Keys are 1 to
 * 65535 bytes. Times are seconds (fractions allowed): exptime 0 = never. */
struct rl_shdict;
enum {
	RL_SHDICT_NIL = 0,
	RL_SHDICT_BOOLEAN = 1,
	RL_SHDICT_NUMBER = 3,
	RL_SHDICT_STRING = 4,
	RL_SHDICT_LIST = 5
};
/* store operations */
enum {
	RL_SHDICT_SET = 0,      /* evicts LRU items when full (forcible) */
	RL_SHDICT_SAFE_SET = 1, /* never evicts an unexpired item: -ENOMEM */
	RL_SHDICT_ADD = 2,      /* -EEXIST when the key holds an unexpired value */
	RL_SHDICT_SAFE_ADD = 3,
	RL_SHDICT_REPLACE = 4   /* -ENOENT when it does not */
};
/* A value in or out. In: type, num (NUMBER; BOOLEAN 0/1), len (STRING,
 * the bytes passed beside it), flags. Out: the same, plus stale (get with
 * stale_ok: the item had expired) and forcible (a store or push evicted
 * unexpired items to make room). */
struct rl_shdict_value {
	double num;
	size_t len;
	uint32_t flags;
	int32_t type;
	int32_t stale;
	int32_t forcible;
};
/* The dictionary `name` (1-63 of [A-Za-z0-9_]) of `size` bytes (16 KiB ..
 * 64 GiB), created on first call; later calls with the same size return
 * the same one. -EINVAL bad name or size, -EEXIST it exists with another
 * size, -ENOSPC too many dictionaries (64), -ENOMEM. */
int rl_shdict_open(const char *name, size_t size, struct rl_shdict **out);
struct rl_shdict *rl_shdict_find(const char *name);
/* The dictionaries opened so far, in order of creation (index 0 .. count-1). */
int rl_shdict_count(void);
struct rl_shdict *rl_shdict_at(int i);
const char *rl_shdict_name(const struct rl_shdict *d);
/* "10m", "512k", "1g", "65536": bytes. -EINVAL bad text, -ERANGE too big. */
int rl_shdict_parse_size(const char *text, size_t *out);
/* 1 found (v filled; a STRING copied into buf), 0 not found or expired
 * (with stale_ok an expired item is returned with v->stale = 1), -ENOBUFS
 * when buflen < v->len (nothing else changed: call again with more). A
 * LIST is returned as its type only. */
int rl_shdict_get(struct rl_shdict *d, const char *key, size_t klen, int stale_ok,
		  struct rl_shdict_value *v, char *buf, size_t buflen);
/* op: RL_SHDICT_SET..REPLACE; v->type NIL deletes. 0, -EEXIST, -ENOENT,
 * -ENOMEM (no room without evicting, or the value cannot fit at all),
 * -EINVAL (bad key or type). */
int rl_shdict_store(struct rl_shdict *d, int op, const char *key, size_t klen,
		    struct rl_shdict_value *v, const char *str, double exptime);
/* Adds by to a NUMBER (its expiry kept); a missing or expired key becomes
 * init + by with init_ttl when has_init. 0 (v->num the new value), -ENOENT
 * (missing, no init), -EINVAL (not a number), -ENOMEM. */
int rl_shdict_incr(struct rl_shdict *d, const char *key, size_t klen, double by, int has_init,
		   double init, double init_ttl, struct rl_shdict_value *v);
/* Pushes a STRING or NUMBER at the head (left) or tail of the LIST key
 * (created when missing or expired). The new length, -EINVAL (the key
 * holds another type, or a bad value type), -ENOMEM. */
int rl_shdict_push(struct rl_shdict *d, const char *key, size_t klen, int left,
		   struct rl_shdict_value *v, const char *str);
/* Pops from the head (left) or tail: 1 (v filled, a STRING in buf), 0
 * empty or missing, -EINVAL not a list, -ENOBUFS (buflen < v->len; nothing
 * popped). A list left empty is removed. */
int rl_shdict_pop(struct rl_shdict *d, const char *key, size_t klen, int left,
		  struct rl_shdict_value *v, char *buf, size_t buflen);
/* The length of the LIST key (0 missing or expired), -EINVAL not a list. */
int rl_shdict_llen(struct rl_shdict *d, const char *key, size_t klen);
/* 1 and *ttl (seconds left, 0 for never), or 0 missing or expired. */
int rl_shdict_ttl(struct rl_shdict *d, const char *key, size_t klen, double *ttl);
/* 1 (the key now expires exptime from now; 0 never), 0 missing or expired. */
int rl_shdict_expire(struct rl_shdict *d, const char *key, size_t klen, double exptime);
/* Marks every item expired (get_stale still sees them until reused). */
void rl_shdict_flush_all(struct rl_shdict *d);
/* Frees up to max expired items (max <= 0: all); how many. */
int rl_shdict_flush_expired(struct rl_shdict *d, int max);
/* Unexpired keys, at most max (max <= 0: all), each written to buf as a
 * 4-byte length (host order) and its bytes; *nkeys of them. Returns the
 * bytes needed: when more than buflen, nothing was written past buflen
 * and *nkeys is 0 (call again with a bigger buffer). */
int64_t rl_shdict_keys(struct rl_shdict *d, int max, char *buf, size_t buflen, int *nkeys);
size_t rl_shdict_capacity(const struct rl_shdict *d);
/* Bytes of the arena not allocated (free blocks of every size). */
size_t rl_shdict_free_space(struct rl_shdict *d);

const char *rl_strerror(int err);
const char *rl_version(void);

/* RL_FFI_END */

/* The signals a child starts with at their default disposition: every one
 * but those ignored when the process started (under nohup, SIGHUP stays
 * ignored), recorded when the library was loaded, before a host changed
 * any. rl_proc_spawn uses it; so does the host's system/popen. */
void rl_proc_sigdefault(sigset_t *set);

/*
 * Latency histograms of a worker's loop (not in the FFI: the host's metrics
 * endpoint reads them). Fixed log2 buckets in nanoseconds: bucket 0 counts
 * values below 2^RL_HIST_SHIFT ns (about 1 us), bucket i values below
 * 2^(i + RL_HIST_SHIFT) ns, the last one everything longer. The worker
 * writes them with plain stores, no lock; another thread may read them at
 * any time (aligned 64-bit words: a reader sees each word whole, and a
 * count a little behind, never torn). Timestamps are the loop's cached
 * clock (rl_worker_now): no clock read per event.
 */
#define RL_HIST_SHIFT 10
#define RL_HIST_BUCKETS 25     /* 24 finite bounds (1.024 us .. 8.6 s) and +Inf */
struct rl_hist {
	uint64_t buckets[RL_HIST_BUCKETS];
	uint64_t sum_ns;
};
struct rl_latency {
	struct rl_hist loop;        /* a loop iteration's work: from one poll's return to
	                               the next poll (the caller's handling of the batch) */
	struct rl_hist first_byte;  /* an accepted connection's first received bytes */
	struct rl_hist guard_hold;  /* a zero-copy send's submission to its notification
	                               releasing the guards */
};
/* A copy of w's counters with the gauges computed, for a thread other than
 * w's: it only reads w (rl_worker_metrics refreshes the gauges in place,
 * which only w's own thread may do). Values are those of about now. */
void rl_worker_metrics_read(const struct rl_worker *w, struct rl_metrics *out);
/* The histograms of w, in place (valid until rl_worker_destroy). */
const struct rl_latency *rl_worker_latency(const struct rl_worker *w);
/* Add one value (nanoseconds) to h. */
static inline void rl_hist_observe(struct rl_hist *h, uint64_t ns)
{
	uint64_t b = ns >> RL_HIST_SHIFT;
	unsigned i = b ? 64u - (unsigned)__builtin_clzll(b) : 0u;

	if (i >= RL_HIST_BUCKETS)
		i = RL_HIST_BUCKETS - 1;
	h->buckets[i]++;
	h->sum_ns += ns;
}

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
