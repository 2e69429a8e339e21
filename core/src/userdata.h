/* SPDX-License-Identifier: MIT */
/*
 * userdata.h - the layout of the 64-bit io_uring user_data, and the only
 * helpers that pack and unpack it.
 *
 *   63      56 55                    32 31                               0
 *  +----------+------------------------+----------------------------------+
 *  |   tag    |   index (24 bits)      |       generation (32 bits)       |
 *  +----------+------------------------+----------------------------------+
 *
 * tag:   which operation this is (enum rl_op).
 * index: the connection slot for per-connection operations, the listener id
 *        for accepts, the connect-request index for the socket install.
 * gen:   the generation of the owner when the SQE was prepared. A completion
 *        whose generation differs from the owner's current one belongs to a
 *        previous occupant of a reused slot and is dropped (after returning
 *        any provided buffer it carries).
 */
#ifndef RL_USERDATA_H
#define RL_USERDATA_H

#include <stdint.h>

enum rl_op {
	RL_OP_NONE = 0,
	RL_OP_ACCEPT,      /* index = listener id */
	RL_OP_RECV,        /* single-shot recv of a connection */
	RL_OP_SEND,        /* copy send of the queue head */
	RL_OP_CLOSE,       /* close of the fixed file */
	RL_OP_CANCEL,      /* an ASYNC_CANCEL's own completion (ignored) */
	RL_OP_SHUTDOWN,    /* shutdown(SHUT_WR) */
	RL_OP_FD_INSTALL,  /* fixed file -> plain descriptor */
	RL_OP_SOCK_INSTALL,/* outbound socket into the fixed table; index = request */
	RL_OP_CONNECT,
	RL_OP_LINK_TIMEOUT,
	RL_OP_WAKE,        /* eventfd read for cross-thread wake-ups */
	RL_OP_UNOWNED,     /* an op whose completion only counts: a listener's accept
	                      cancel, the wake read's cancel, a stray accept's close */
	RL_OP_INBOX,       /* MSG_RING doorbell from another worker (target side),
	                      or the sender's own completion of it (index 1) */
	RL_OP_UDP_RECV,    /* multishot RECVMSG; index = UDP socket */
	RL_OP_UDP_SEND,    /* the one exception to the layout: bits 55..0 hold the
	                      address of the send's own record (user pointers fit
	                      in 47 bits), which says which socket it belongs to */
	RL_OP_UDP_CANCEL,  /* cancel of a UDP socket's receive */
	RL_OP_SEND_SLAB,   /* SENDMSG(_ZC) of a slab entry and its notifications;
	                      index = entry, gen = the entry's generation */
	RL_OP_HANDOFF,     /* acceptor: the MSG_RING passing the connection at
	                      fixed index `index` to a group member */
	RL_OP_HANDIN,      /* member: a connection arrived; index = listener id,
	                      gen = its generation, res = the fixed index */
	RL_OP_PROBE,       /* rl_conn_probe: a non-blocking MSG_PEEK recv */
	RL_OP_PROC,        /* a process's wait (WAITID, or POLL_ADD on its pidfd);
	                      index = process id */
	RL_OP_FILE,        /* a file operation (fileop.c); index = request, gen = its gen */
	RL_OP_SPLICE,      /* a sendfile node's splice (file -> pipe, pipe -> socket) */
	RL_OP__COUNT
};

#define RL_UD_INDEX_BITS 24
#define RL_UD_INDEX_MAX ((1u << RL_UD_INDEX_BITS) - 1)

static inline uint64_t rl_ud_pack(enum rl_op op, uint32_t index, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(index & RL_UD_INDEX_MAX) << 32) | gen;
}

static inline enum rl_op rl_ud_op(uint64_t ud)
{
	return (enum rl_op)(ud >> 56);
}

static inline uint32_t rl_ud_index(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & RL_UD_INDEX_MAX;
}

static inline uint32_t rl_ud_gen(uint64_t ud)
{
	return (uint32_t)ud;
}

#endif
