/* SPDX-License-Identifier: MIT */
/*
 * watchdog.c - a thread that notices workers stuck in Lua code that never
 * yields (`while true do end` in a handler): such a worker serves none of
 * its connections and, before this, said nothing until a stop timed out.
 *
 * Each worker publishes a heartbeat in its struct rl_host_watch (rl_host.h):
 * beat odd while it waits for events (idle, never a stall), even while it
 * runs; every pass of its loop changes it. The thread looks at every slot a
 * few times per timeout: a slot whose beat stayed the same even value for
 * timeout_ms is stalled, reported once per stall (a log line with the word
 * "watchdog", the worker id and where the running task started), counted in
 * `fired` (ringline.metrics().watchdog_stalls), and with abort set the
 * process aborts (SIGABRT) so a supervisor restarts it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"
#include "rl_host.h"
#include "watch_seen.h"

/* Locations kept: each is a distinct "source:line" of some worker's task
 * functions; a program has few. Past this, reports say "?". */
#define LOC_MAX 65536
#define LOC_LEN 256


static struct rl_host_watch *watches;
static int nwatches;
static char **locs;
static uint32_t nlocs;
static pthread_mutex_t loc_lock = PTHREAD_MUTEX_INITIALIZER;

RL_HOST_API struct rl_host_watch *rl_host_watch(int id)
{
	if (!watches || id < 0 || id >= nwatches)
		return NULL;
	return &watches[id];
}

RL_HOST_API uint32_t rl_host_watch_loc(const char *where)
{
	uint32_t id = 0;
	char *s;

	if (!where)
		return 0;
	s = strndup(where, LOC_LEN - 1);
	if (!s)
		return 0;
	pthread_mutex_lock(&loc_lock);
	if (nlocs < LOC_MAX) {
		locs[nlocs++] = s;
		id = nlocs;
		s = NULL;
	}
	pthread_mutex_unlock(&loc_lock);
	free(s);
	return id;
}

/* Copies location id's text into buf (the entries never change once set). */
static void loc_text(uint32_t id, char *buf, size_t len)
{
	pthread_mutex_lock(&loc_lock);
	snprintf(buf, len, "%s", id >= 1 && id <= nlocs ? locs[id - 1] : "?");
	pthread_mutex_unlock(&loc_lock);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *watchdog_main(void *arg)
{
	struct watch_seen *seen = arg;

	for (;;) {
		double now = mono();
		/* a slot not yet watched may be soon: look again shortly */
		uint32_t tick_ms = 100;

		for (int i = 0; i < nwatches; i++) {
			struct rl_host_watch *w = &watches[i];
			uint32_t tmo = __atomic_load_n(&w->timeout_ms, __ATOMIC_RELAXED);
			uint32_t beat = __atomic_load_n(&w->beat, __ATOMIC_RELAXED);
			struct watch_seen *s = &seen[i];

			/* a few looks per timeout, not a busy poll */
			if (tmo && tmo / 4 < tick_ms)
				tick_ms = tmo / 4 > 10 ? tmo / 4 : 10;
			if (!watch_look(s, tmo, beat, now))
				continue;
			{
				char where[LOC_LEN];
				int do_abort = __atomic_load_n(&w->abort, __ATOMIC_RELAXED) != 0;

				loc_text(__atomic_load_n(&w->loc, __ATOMIC_RELAXED), where, sizeof(where));
				__atomic_add_fetch(&w->fired, 1, __ATOMIC_RELAXED);
				/* slots: a reload's generation runs in the second half */
				int wid = i % opts.workers;

				host_log(LOG_ERR, wid, "watchdog: worker %d has not turned its loop for %.1f s "
					 "(watchdog_timeout %u ms): a task that does not yield, started at %s%s",
					 wid, now - s->since, tmo, where,
					 do_abort ? "; aborting (watchdog_abort=1)" : "");
				if (do_abort)
					abort();
			}
		}
		struct timespec ts = { .tv_sec = tick_ms / 1000,
				       .tv_nsec = (long)(tick_ms % 1000) * 1000000L };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return NULL;
}

int host_watchdog_start(int workers)
{
	pthread_t th;
	pthread_attr_t attr;
	struct watch_seen *seen;
	int rc;

	watches = calloc((size_t)workers, sizeof(*watches));
	seen = calloc((size_t)workers, sizeof(*seen));
	locs = calloc(LOC_MAX, sizeof(*locs));
	if (!watches || !seen || !locs) {
		free(watches);
		free(seen);
		free(locs);
		watches = NULL;
		locs = NULL;
		return -ENOMEM;
	}
	nwatches = workers;
	/* Detached: it never ends on its own, and the process's exit ends it. */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&th, &attr, watchdog_main, seen);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return -rc;
	pthread_setname_np(th, "ringline-wdog");
	return 0;
}
