/* SPDX-License-Identifier: MIT */
/*
 * test_watchdog: the watchdog's judgement of a worker's slot (watch_look)
 * at chosen times: a stall is reported once, after its timeout, counted
 * from when the watchdog first saw the slot watched; waiting and beating
 * are never stalls.
 */
#include <stdio.h>
#include <string.h>

#include "watch_seen.h"

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                            \
		}                                                              \
	} while (0)

/* The thread's first look comes after the worker published (a busy
 * machine): the clock starts at that look, not at the monotonic epoch. */
static void first_look_late(void)
{
	struct watch_seen s;

	memset(&s, 0, sizeof(s));
	CHECK(!watch_look(&s, 5000, 0, 1639.0));   /* beat 0, running */
	CHECK(!watch_look(&s, 5000, 0, 1640.0));
	CHECK(!watch_look(&s, 5000, 0, 1643.9));
	CHECK(watch_look(&s, 5000, 0, 1644.1));    /* 5.1 s without a turn */
}

static void once_per_stall(void)
{
	struct watch_seen s;

	memset(&s, 0, sizeof(s));
	CHECK(!watch_look(&s, 100, 2, 10.0));
	CHECK(watch_look(&s, 100, 2, 10.2));
	CHECK(!watch_look(&s, 100, 2, 10.4));      /* the same stall: said once */
	CHECK(!watch_look(&s, 100, 4, 10.5));      /* it turned */
	CHECK(watch_look(&s, 100, 4, 10.7));       /* a new stall */
}

static void waiting_is_not_a_stall(void)
{
	struct watch_seen s;

	memset(&s, 0, sizeof(s));
	for (double t = 0; t < 10; t += 0.5)
		CHECK(!watch_look(&s, 100, 7, t));     /* odd: in poll */
}

static void unwatched_then_watched(void)
{
	struct watch_seen s;

	memset(&s, 0, sizeof(s));
	CHECK(!watch_look(&s, 100, 2, 1.0));
	CHECK(!watch_look(&s, 0, 2, 2.0));         /* the run ended */
	CHECK(!watch_look(&s, 100, 2, 50.0));      /* a new run, same beat */
	CHECK(!watch_look(&s, 100, 2, 50.05));
	CHECK(watch_look(&s, 100, 2, 50.2));
}

int main(void)
{
	first_look_late();
	once_per_stall();
	waiting_is_not_a_stall();
	unwatched_then_watched();
	if (failures) {
		fprintf(stderr, "test_watchdog: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_watchdog: ok\n");
	return 0;
}
