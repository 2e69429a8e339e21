/* SPDX-License-Identifier: MIT */
/*
 * watch_seen.h - the watchdog's judgement of one worker's slot, apart from
 * the thread (watchdog.c) so a test can drive it with chosen times.
 */
#ifndef RL_HOST_WATCH_SEEN_H
#define RL_HOST_WATCH_SEEN_H

#include <stdint.h>

/* What the watchdog last saw of a worker's slot. Zeroed = never seen. */
struct watch_seen {
	int valid;          /* beat and since hold a sighting of a watched slot */
	uint32_t beat;
	double since;       /* when beat took that value (or the worker went idle) */
	int reported;       /* this stall was reported */
};

/*
 * One look at a slot at time now (seconds, monotonic): tmo its
 * timeout_ms (0 = not watched), beat its heartbeat (odd = waiting for
 * events). Returns 1 when a stall is to be reported now (once per stall),
 * else 0.
 *
 * A slot first seen watched starts its clock at that look, whatever its
 * beat: the thread may first run after a worker has published (on a busy
 * machine), and a zeroed record would date the beat to the clock's epoch.
 */
static inline int watch_look(struct watch_seen *s, uint32_t tmo, uint32_t beat, double now)
{
	if (!tmo || (beat & 1) || !s->valid || beat != s->beat) {
		s->valid = tmo != 0;
		s->beat = beat;
		s->since = now;
		s->reported = 0;
		return 0;
	}
	if (s->reported || now - s->since < tmo / 1000.0)
		return 0;
	s->reported = 1;
	return 1;
}

#endif
