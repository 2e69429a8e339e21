/* SPDX-License-Identifier: MIT */
/*
 * test_shdict - shared dictionaries: values of every type, the store
 * operations' rules, expiry on an injected clock (no sleeps), get_stale,
 * flush_all/flush_expired, LRU eviction with forcible and safe_set's "no
 * memory", lists, keys, the allocator giving every byte back, the
 * registry and size parsing, and incr from two threads summing exactly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

static double fake_now = 1000.0;
static double fake_clock(void) { return fake_now; }
static double (*real_clock)(void);

static struct rl_shdict_value sval(const char *s)
{
	struct rl_shdict_value v = { 0 };
	v.type = RL_SHDICT_STRING;
	v.len = strlen(s);
	return v;
}

static struct rl_shdict_value nval(double n)
{
	struct rl_shdict_value v = { 0 };
	v.type = RL_SHDICT_NUMBER;
	v.num = n;
	return v;
}

static int store_s(struct rl_shdict *d, int op, const char *k, const char *s, double ttl)
{
	struct rl_shdict_value v = sval(s);
	return rl_shdict_store(d, op, k, strlen(k), &v, s, ttl);
}

/* get as a string: 1 and buf filled, or the get's result. */
static int get_s(struct rl_shdict *d, const char *k, char *buf, size_t n)
{
	struct rl_shdict_value v;
	int rc = rl_shdict_get(d, k, strlen(k), 0, &v, buf, n - 1);
	if (rc == 1) {
		CHECK_EQ(v.type, RL_SHDICT_STRING);
		buf[v.len] = 0;
	}
	return rc;
}

static void test_values(void)
{
	struct rl_shdict *d;
	struct rl_shdict_value v;
	char buf[64];

	CHECK_EQ(rl__shdict_new("t", 64 << 10, &d), 0);
	size_t empty = rl_shdict_free_space(d);
	CHECK_EQ(empty, 64 << 10);
	CHECK_EQ(rl_shdict_capacity(d), 64 << 10);

	CHECK_EQ(store_s(d, RL_SHDICT_SET, "a", "hello", 0), 0);
	CHECK_EQ(get_s(d, "a", buf, sizeof(buf)), 1);
	CHECK(strcmp(buf, "hello") == 0);
	/* a buffer too small: the size needed, nothing lost */
	CHECK_EQ(rl_shdict_get(d, "a", 1, 0, &v, buf, 3), -ENOBUFS);
	CHECK_EQ(v.len, 5);
	v = nval(3.5);
	v.flags = 7;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "n", 1, &v, NULL, 0), 0);
	CHECK_EQ(rl_shdict_get(d, "n", 1, 0, &v, NULL, 0), 1);
	CHECK_EQ(v.type, RL_SHDICT_NUMBER);
	ASSERT(v.num == 3.5, "num %f", v.num);
	CHECK_EQ(v.flags, 7);
	v.type = RL_SHDICT_BOOLEAN;
	v.num = 5;
	v.flags = 0;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "b", 1, &v, NULL, 0), 0);
	CHECK_EQ(rl_shdict_get(d, "b", 1, 0, &v, NULL, 0), 1);
	CHECK_EQ(v.type, RL_SHDICT_BOOLEAN);
	ASSERT(v.num == 1, "boolean %f", v.num);

	/* add, replace */
	CHECK_EQ(store_s(d, RL_SHDICT_ADD, "a", "x", 0), -EEXIST);
	CHECK_EQ(store_s(d, RL_SHDICT_REPLACE, "zz", "x", 0), -ENOENT);
	CHECK_EQ(store_s(d, RL_SHDICT_REPLACE, "a", "a much longer value than before", 0), 0);
	CHECK_EQ(get_s(d, "a", buf, sizeof(buf)), 1);
	CHECK(strcmp(buf, "a much longer value than before") == 0);
	CHECK_EQ(store_s(d, RL_SHDICT_ADD, "c", "new", 0), 0);
	/* delete */
	v.type = RL_SHDICT_NIL;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "c", 1, &v, NULL, 0), 0);
	CHECK_EQ(get_s(d, "c", buf, sizeof(buf)), 0);
	/* bad keys and types */
	CHECK_EQ(rl_shdict_get(d, "", 0, 0, &v, buf, 8), -EINVAL);
	v.type = 99;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "x", 1, &v, NULL, 0), -EINVAL);

	/* incr */
	CHECK_EQ(rl_shdict_incr(d, "cnt", 3, 1, 0, 0, 0, &v), -ENOENT);
	CHECK_EQ(rl_shdict_incr(d, "cnt", 3, 2, 1, 10, 0, &v), 0);
	ASSERT(v.num == 12, "incr %f", v.num);
	CHECK_EQ(rl_shdict_incr(d, "cnt", 3, -0.5, 1, 100, 0, &v), 0);
	ASSERT(v.num == 11.5, "incr %f", v.num);
	CHECK_EQ(rl_shdict_incr(d, "a", 1, 1, 0, 0, 0, &v), -EINVAL);

	/* keys: every unexpired one, max bounds them */
	char kb[256];
	int nk;
	int64_t need = rl_shdict_keys(d, 0, kb, sizeof(kb), &nk);
	CHECK_EQ(nk, 4);             /* a, n, b, cnt */
	CHECK_EQ(need, 4 * 4 + 1 + 1 + 1 + 3);
	CHECK_EQ(rl_shdict_keys(d, 2, kb, sizeof(kb), &nk), 4 * 2 + 3 + 1);   /* most recent first: cnt, b */
	CHECK_EQ(nk, 2);
	CHECK_EQ(rl_shdict_keys(d, 0, kb, 3, &nk), need);
	CHECK_EQ(nk, 0);

	/* everything deleted: the arena is whole again (blocks merged) */
	const char *keys[] = { "a", "n", "b", "cnt" };
	for (int i = 0; i < 4; i++) {
		v.type = RL_SHDICT_NIL;
		CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, keys[i], strlen(keys[i]), &v, NULL, 0), 0);
	}
	CHECK_EQ(rl_shdict_free_space(d), empty);
	rl__shdict_free(d);
}

static void test_expiry(void)
{
	struct rl_shdict *d;
	struct rl_shdict_value v;
	char buf[64];
	double ttl;

	rl__shdict_clock = fake_clock;
	CHECK_EQ(rl__shdict_new("e", 64 << 10, &d), 0);
	CHECK_EQ(store_s(d, RL_SHDICT_SET, "k", "v", 2), 0);
	CHECK_EQ(rl_shdict_ttl(d, "k", 1, &ttl), 1);
	ASSERT(ttl == 2, "ttl %f", ttl);
	fake_now += 1.5;
	CHECK_EQ(get_s(d, "k", buf, sizeof(buf)), 1);
	CHECK_EQ(rl_shdict_ttl(d, "k", 1, &ttl), 1);
	ASSERT(ttl > 0.49 && ttl < 0.51, "ttl %f", ttl);
	fake_now += 0.5;                       /* exactly at the deadline: gone */
	CHECK_EQ(get_s(d, "k", buf, sizeof(buf)), 0);
	CHECK_EQ(rl_shdict_ttl(d, "k", 1, &ttl), 0);
	CHECK_EQ(rl_shdict_expire(d, "k", 1, 10), 0);
	/* stale */
	CHECK_EQ(rl_shdict_get(d, "k", 1, 1, &v, buf, sizeof(buf)), 1);
	CHECK_EQ(v.stale, 1);
	CHECK_EQ(v.len, 1);
	/* expired counts as absent for add and replace */
	CHECK_EQ(store_s(d, RL_SHDICT_REPLACE, "k", "w", 0), -ENOENT);
	CHECK_EQ(store_s(d, RL_SHDICT_ADD, "k", "w", 0), 0);
	CHECK_EQ(rl_shdict_ttl(d, "k", 1, &ttl), 1);
	ASSERT(ttl == 0, "ttl %f", ttl);
	CHECK_EQ(rl_shdict_expire(d, "k", 1, 5), 1);
	fake_now += 4.9;
	CHECK_EQ(get_s(d, "k", buf, sizeof(buf)), 1);
	fake_now += 0.2;
	CHECK_EQ(get_s(d, "k", buf, sizeof(buf)), 0);
	/* incr on an expired key starts again from init, with init_ttl */
	CHECK_EQ(rl_shdict_incr(d, "c", 1, 1, 1, 0, 3, &v), 0);
	CHECK_EQ(rl_shdict_incr(d, "c", 1, 1, 1, 0, 3, &v), 0);
	ASSERT(v.num == 2, "incr %f", v.num);
	fake_now += 3;
	CHECK_EQ(rl_shdict_incr(d, "c", 1, 1, 0, 0, 0, &v), -ENOENT);
	CHECK_EQ(rl_shdict_incr(d, "c", 1, 1, 1, 40, 0, &v), 0);
	ASSERT(v.num == 41, "incr %f", v.num);

	/* flush_all: everything stale; flush_expired frees it */
	CHECK_EQ(store_s(d, RL_SHDICT_SET, "x", "1", 0), 0);
	rl_shdict_flush_all(d);
	CHECK_EQ(get_s(d, "x", buf, sizeof(buf)), 0);
	CHECK_EQ(rl_shdict_get(d, "x", 1, 1, &v, buf, sizeof(buf)), 1);
	CHECK_EQ(v.stale, 1);
	int nk;
	CHECK_EQ(rl_shdict_keys(d, 0, buf, sizeof(buf), &nk), 0);
	CHECK_EQ(rl_shdict_flush_expired(d, 1), 1);
	CHECK_EQ(rl_shdict_flush_expired(d, 0), 1);   /* c and x (k went when c was made) */
	CHECK_EQ(rl_shdict_flush_expired(d, 0), 0);
	CHECK_EQ(rl_shdict_free_space(d), 64 << 10);
	rl__shdict_free(d);
	rl__shdict_clock = real_clock;
}

static void test_eviction(void)
{
	struct rl_shdict *d;
	struct rl_shdict_value v;
	char key[32], val[200], buf[256];
	int i, stored = 0, forced = 0;

	rl__shdict_clock = fake_clock;
	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = 0;
	CHECK_EQ(rl__shdict_new("ev", 16 << 10, &d), 0);
	/* 16 KiB, items of 256+ bytes: a few dozen fit; then SET evicts */
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		v = sval(val);
		CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, key, strlen(key), &v, val, 0), 0);
		stored++;
		forced += v.forcible;
	}
	ASSERT(forced > 100, "forcible %d of %d", forced, stored);
	/* the newest is there, the oldest evicted */
	CHECK_EQ(get_s(d, "k199", buf, sizeof(buf)), 1);
	CHECK_EQ(get_s(d, "k000", buf, sizeof(buf)), 0);
	/* a get makes an item recent: it survives the next eviction */
	int oldest = -1;
	for (i = 0; i < 200 && oldest < 0; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		if (get_s(d, key, buf, sizeof(buf)) == 1)
			oldest = i;
	}
	CHECK_GE(oldest, 0);
	v = sval(val);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "new1", 4, &v, val, 0), 0);
	CHECK_EQ(v.forcible, 1);
	snprintf(key, sizeof(key), "k%03d", oldest);
	CHECK_EQ(get_s(d, key, buf, sizeof(buf)), 1);
	/* safe_set and safe_add never evict */
	v = sval(val);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SAFE_SET, "new2", 4, &v, val, 0), -ENOMEM);
	CHECK_EQ(v.forcible, 0);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SAFE_ADD, "new2", 4, &v, val, 0), -ENOMEM);
	/* but they take the room of expired items */
	rl_shdict_flush_all(d);
	v = sval(val);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SAFE_SET, "new2", 4, &v, val, 0), 0);
	CHECK_EQ(v.forcible, 0);
	/* a value bigger than the arena: no memory, nothing evicted */
	static char big[32 << 10];
	memset(big, 'b', sizeof(big));
	v.type = RL_SHDICT_STRING;
	v.len = sizeof(big);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "big", 3, &v, big, 0), -ENOMEM);
	CHECK_EQ(get_s(d, "new2", buf, sizeof(buf)), 1);
	/* one as big as the arena's largest block: everything else goes */
	v.len = (16 << 10) - 200;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "big", 3, &v, big, 0), 0);
	CHECK_EQ(v.forcible, 1);
	CHECK_EQ(get_s(d, "new2", buf, sizeof(buf)), 0);
	CHECK_EQ(rl_shdict_free_space(d), 0);
	rl__shdict_free(d);
	rl__shdict_clock = real_clock;
}

static void test_lists(void)
{
	struct rl_shdict *d;
	struct rl_shdict_value v;
	char buf[64];

	CHECK_EQ(rl__shdict_new("l", 64 << 10, &d), 0);
	CHECK_EQ(rl_shdict_llen(d, "q", 1), 0);
	v = sval("b");
	CHECK_EQ(rl_shdict_push(d, "q", 1, 1, &v, "b"), 1);
	v = sval("a");
	CHECK_EQ(rl_shdict_push(d, "q", 1, 1, &v, "a"), 2);
	v = nval(3);
	CHECK_EQ(rl_shdict_push(d, "q", 1, 0, &v, NULL), 3);
	CHECK_EQ(rl_shdict_llen(d, "q", 1), 3);
	/* a list is not a string */
	CHECK_EQ(rl_shdict_get(d, "q", 1, 0, &v, buf, sizeof(buf)), 1);
	CHECK_EQ(v.type, RL_SHDICT_LIST);
	CHECK_EQ(rl_shdict_incr(d, "q", 1, 1, 0, 0, 0, &v), -EINVAL);
	/* pops from both ends; a small buffer pops nothing */
	CHECK_EQ(rl_shdict_pop(d, "q", 1, 1, &v, buf, 0), -ENOBUFS);
	CHECK_EQ(rl_shdict_llen(d, "q", 1), 3);
	CHECK_EQ(rl_shdict_pop(d, "q", 1, 1, &v, buf, sizeof(buf)), 1);
	CHECK_EQ(v.type, RL_SHDICT_STRING);
	CHECK(v.len == 1 && buf[0] == 'a');
	CHECK_EQ(rl_shdict_pop(d, "q", 1, 0, &v, buf, sizeof(buf)), 1);
	CHECK_EQ(v.type, RL_SHDICT_NUMBER);
	ASSERT(v.num == 3, "pop %f", v.num);
	CHECK_EQ(rl_shdict_pop(d, "q", 1, 0, &v, buf, sizeof(buf)), 1);
	CHECK(v.len == 1 && buf[0] == 'b');
	/* empty: removed */
	CHECK_EQ(rl_shdict_pop(d, "q", 1, 0, &v, buf, sizeof(buf)), 0);
	CHECK_EQ(rl_shdict_get(d, "q", 1, 1, &v, buf, sizeof(buf)), 0);
	/* a string is not a list */
	CHECK_EQ(store_s(d, RL_SHDICT_SET, "s", "x", 0), 0);
	v = sval("y");
	CHECK_EQ(rl_shdict_push(d, "s", 1, 1, &v, "y"), -EINVAL);
	CHECK_EQ(rl_shdict_pop(d, "s", 1, 1, &v, buf, sizeof(buf)), -EINVAL);
	CHECK_EQ(rl_shdict_llen(d, "s", 1), -EINVAL);
	v.type = RL_SHDICT_BOOLEAN;
	CHECK_EQ(rl_shdict_push(d, "q", 1, 1, &v, NULL), -EINVAL);
	/* a list overwritten by set, and a long list deleted: all room back */
	for (int i = 0; i < 100; i++) {
		v = nval(i);
		CHECK_EQ(rl_shdict_push(d, "q", 1, 0, &v, NULL), i + 1);
	}
	CHECK_EQ(store_s(d, RL_SHDICT_SET, "q", "flat", 0), 0);
	CHECK_EQ(get_s(d, "q", buf, sizeof(buf)), 1);
	v.type = RL_SHDICT_NIL;
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "q", 1, &v, NULL, 0), 0);
	CHECK_EQ(rl_shdict_store(d, RL_SHDICT_SET, "s", 1, &v, NULL, 0), 0);
	CHECK_EQ(rl_shdict_free_space(d), 64 << 10);
	/* pushing into a full dictionary evicts others, never the list itself */
	for (int i = 0; i < 500; i++) {
		v = nval(i);
		CHECK_EQ(rl_shdict_push(d, "q", 1, 0, &v, NULL), i + 1);
	}
	CHECK_EQ(store_s(d, RL_SHDICT_SET, "other", "x", 0), 0);
	int n = 0;
	for (;;) {
		v = nval(0);
		int rc = rl_shdict_push(d, "q", 1, 0, &v, NULL);
		if (rc < 0) {
			CHECK_EQ(rc, -ENOMEM);
			break;
		}
		n++;
		CHECK_LT(n, 10000);
	}
	CHECK_EQ(get_s(d, "other", buf, sizeof(buf)), 0);
	CHECK_GT(rl_shdict_llen(d, "q", 1), 900);   /* ~1000 64-byte blocks */
	rl__shdict_free(d);
}

static void test_registry(void)
{
	struct rl_shdict *a, *b;
	size_t sz;

	CHECK_EQ(rl_shdict_parse_size("10m", &sz), 0);
	CHECK_EQ(sz, 10u << 20);
	CHECK_EQ(rl_shdict_parse_size("512K", &sz), 0);
	CHECK_EQ(sz, 512u << 10);
	CHECK_EQ(rl_shdict_parse_size("65536", &sz), 0);
	CHECK_EQ(sz, 65536);
	CHECK_EQ(rl_shdict_parse_size("10x", &sz), -EINVAL);
	CHECK_EQ(rl_shdict_parse_size("", &sz), -EINVAL);
	CHECK_EQ(rl_shdict_parse_size("m", &sz), -EINVAL);
	CHECK_EQ(rl_shdict_parse_size("99999999999g", &sz), -ERANGE);

	int before = rl_shdict_count();
	CHECK_EQ(rl_shdict_open("cache", 1 << 20, &a), 0);
	CHECK_EQ(rl_shdict_open("cache", 1 << 20, &b), 0);
	CHECK(a == b);
	CHECK_EQ(rl_shdict_open("cache", 2 << 20, &b), -EEXIST);
	CHECK_EQ(rl_shdict_open("bad name", 1 << 20, &b), -EINVAL);
	CHECK_EQ(rl_shdict_open("", 1 << 20, &b), -EINVAL);
	CHECK_EQ(rl_shdict_open("tiny", 1024, &b), -EINVAL);
	CHECK_EQ(rl_shdict_count(), before + 1);
	CHECK(rl_shdict_at(before) == a);
	CHECK(rl_shdict_find("cache") == a);
	CHECK(rl_shdict_find("nope") == NULL);
	CHECK(strcmp(rl_shdict_name(a), "cache") == 0);
	/* an odd size: its binary decomposition is all usable */
	CHECK_EQ(rl_shdict_open("odd", (1 << 20) + (1 << 16) + 64, &b), 0);
	CHECK_EQ(rl_shdict_free_space(b), (1 << 20) + (1 << 16) + 64);
}

/* ---- two threads incrementing one key ---- */

#define NINCR 200000

static struct rl_shdict *shared;
static pthread_barrier_t start_line;

static void *incr_thread(void *arg)
{
	struct rl_shdict_value v;

	(void)arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < NINCR; i++)
		if (rl_shdict_incr(shared, "hits", 4, 1, 1, 0, 0, &v) != 0)
			return (void *)1;
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[2];
	void *r;
	struct rl_shdict_value v;

	CHECK_EQ(rl__shdict_new("th", 64 << 10, &shared), 0);
	CHECK_EQ(pthread_barrier_init(&start_line, NULL, 2), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, incr_thread, NULL), 0);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(pthread_join(t[i], &r), 0);
		CHECK(r == NULL);
	}
	CHECK_EQ(rl_shdict_get(shared, "hits", 4, 0, &v, NULL, 0), 1);
	ASSERT(v.num == 2.0 * NINCR, "sum %f", v.num);
	pthread_barrier_destroy(&start_line);
	rl__shdict_free(shared);
}

int main(void)
{
	real_clock = rl__shdict_clock;
	test_values();
	test_expiry();
	test_eviction();
	test_lists();
	test_registry();
	test_threads();
	printf("test_shdict: ok\n");
	return 0;
}
