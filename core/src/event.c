/* SPDX-License-Identifier: MIT */
/*
 * event.c - the event sink: every resource reports what Lua (or a C caller)
 * must hear as an rl_event here, into the caller's array during a poll or,
 * outside one or past its end, into a pending queue the next poll drains.
 * A leaf: it calls no other file of the core, so resources can report
 * without calling back up into worker.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* enum rl_errno copies numbers for the FFI: they must be the real ones. */
_Static_assert(RL_EPERM == EPERM, "RL_EPERM");
_Static_assert(RL_ENOENT == ENOENT, "RL_ENOENT");
_Static_assert(RL_ESRCH == ESRCH, "RL_ESRCH");
_Static_assert(RL_ENODEV == ENODEV, "RL_ENODEV");
_Static_assert(RL_ENOTTY == ENOTTY, "RL_ENOTTY");
_Static_assert(RL_EINTR == EINTR, "RL_EINTR");
_Static_assert(RL_E2BIG == E2BIG, "RL_E2BIG");
_Static_assert(RL_EBADMSG == EBADMSG, "RL_EBADMSG");
_Static_assert(RL_EPROTONOSUPPORT == EPROTONOSUPPORT, "RL_EPROTONOSUPPORT");
_Static_assert(RL_EBADF == EBADF, "RL_EBADF");
_Static_assert(RL_EAGAIN == EAGAIN, "RL_EAGAIN");
_Static_assert(RL_ENOMEM == ENOMEM, "RL_ENOMEM");
_Static_assert(RL_EBUSY == EBUSY, "RL_EBUSY");
_Static_assert(RL_EINVAL == EINVAL, "RL_EINVAL");
_Static_assert(RL_ENOSPC == ENOSPC, "RL_ENOSPC");
_Static_assert(RL_EPIPE == EPIPE, "RL_EPIPE");
_Static_assert(RL_EPROTO == EPROTO, "RL_EPROTO");
_Static_assert(RL_EDESTADDRREQ == EDESTADDRREQ, "RL_EDESTADDRREQ");
_Static_assert(RL_EMSGSIZE == EMSGSIZE, "RL_EMSGSIZE");
_Static_assert(RL_EOPNOTSUPP == EOPNOTSUPP, "RL_EOPNOTSUPP");
_Static_assert(RL_EAFNOSUPPORT == EAFNOSUPPORT, "RL_EAFNOSUPPORT");
_Static_assert(RL_ECONNABORTED == ECONNABORTED, "RL_ECONNABORTED");
_Static_assert(RL_ECONNRESET == ECONNRESET, "RL_ECONNRESET");
_Static_assert(RL_ENOBUFS == ENOBUFS, "RL_ENOBUFS");
_Static_assert(RL_ENOTCONN == ENOTCONN, "RL_ENOTCONN");
_Static_assert(RL_ESHUTDOWN == ESHUTDOWN, "RL_ESHUTDOWN");
_Static_assert(RL_ETIMEDOUT == ETIMEDOUT, "RL_ETIMEDOUT");
_Static_assert(RL_ECONNREFUSED == ECONNREFUSED, "RL_ECONNREFUSED");
_Static_assert(RL_ESTALE == ESTALE, "RL_ESTALE");
_Static_assert(RL_ECANCELED == ECANCELED, "RL_ECANCELED");
_Static_assert(RL_ENODATA == ENODATA, "RL_ENODATA");
_Static_assert(RL_EISDIR == EISDIR, "RL_EISDIR");
_Static_assert(RL_EEXIST == EEXIST, "RL_EEXIST");
_Static_assert(RL_ERANGE == ERANGE, "RL_ERANGE");

void rl__emit(struct rl_worker *w, uint32_t type, int32_t res, uint32_t slot, uint32_t gen,
	      uint32_t data)
{
	rl__emit_aux(w, type, res, slot, gen, data, 0);
}

void rl__emit_aux(struct rl_worker *w, uint32_t type, int32_t res, uint32_t slot, uint32_t gen,
		  uint32_t data, uint32_t aux)
{
	struct rl_event e = { .type = type, .res = res, .slot = slot, .gen = gen, .data = data,
			      .aux = aux };
	if (w->ev && w->nev < w->maxev) {
		w->ev[w->nev++] = e;
		return;
	}
	/* Outside a poll, or the caller's array is full: keep it for the next
	 * poll. Events are never dropped. */
	if (w->npending == w->pending_cap) {
		/* 64-bit: a doubled uint32_t capacity would wrap to 0 at 2^31 */
		uint64_t cap = w->pending_cap ? (uint64_t)w->pending_cap * 2 : 64;
		struct rl_event *p = cap > UINT32_MAX ? NULL
				     : realloc(w->pending_ev, (size_t)cap * sizeof(*p));
		if (!p) {
			fprintf(stderr, "ringline: out of memory queueing an event\n");
			abort();
		}
		w->pending_ev = p;
		w->pending_cap = (uint32_t)cap;
	}
	w->pending_ev[w->npending++] = e;
}
