/* SPDX-License-Identifier: MIT */
/*
 * event.c - the event sink: every resource reports what Lua (or a C caller)
 * must hear as an rl_event here, into the caller's array during a poll or,
 * outside one or past its end, into a pending queue the next poll drains.
 * A leaf: it calls no other file of the core, so resources can report
 * without calling back up into worker.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

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
		uint32_t cap = w->pending_cap ? w->pending_cap * 2 : 64;
		struct rl_event *p = realloc(w->pending_ev, cap * sizeof(*p));
		if (!p) {
			fprintf(stderr, "ringline: out of memory queueing an event\n");
			abort();
		}
		w->pending_ev = p;
		w->pending_cap = cap;
	}
	w->pending_ev[w->npending++] = e;
}
