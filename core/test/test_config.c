/* SPDX-License-Identifier: MIT */
/*
 * test_config - defaults are valid, every key rejects values outside its
 * range with a message naming the key and the range, power-of-two keys
 * reject other values, unknown keys are -ENOENT, and the cross-field rule
 * (low watermark <= high watermark) is enforced by validation and by
 * rl_worker_new. max_connections 0 (the default) fits a low hard
 * RLIMIT_NOFILE with one warning line; an explicit value that does not fit
 * is still refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static uint32_t get(const struct rl_config *cfg, const struct rl_config_key *k)
{
	uint32_t v;
	memcpy(&v, (const char *)cfg + k->offset, sizeof(v));
	return v;
}

static void set_raw(struct rl_config *cfg, const struct rl_config_key *k, uint32_t v)
{
	memcpy((char *)cfg + k->offset, &v, sizeof(v));
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* The message must name the key and show the allowed range. */
static void check_msg(const struct rl_config_key *k, const char *msg)
{
	char range[64];
	snprintf(range, sizeof(range), "%u..%u", k->min, k->max);
	ASSERT(strstr(msg, k->name) != NULL, "message for %s lacks the key: '%s'", k->name, msg);
	ASSERT(strstr(msg, range) != NULL, "message for %s lacks the range %s: '%s'", k->name,
	       range, msg);
	if (k->pow2)
		ASSERT(strstr(msg, "power of two") != NULL,
		       "message for %s lacks the power-of-two rule: '%s'", k->name, msg);
}

static void reject(struct rl_config *cfg, const struct rl_config_key *k, int64_t v)
{
	char msg[256] = "";
	uint32_t before = get(cfg, k);
	int rc = rl_config_set(cfg, k->name, v, msg, sizeof(msg));
	ASSERT(rc == -EINVAL, "%s = %lld: expected -EINVAL, got %d", k->name, (long long)v, rc);
	check_msg(k, msg);
	ASSERT(get(cfg, k) == before, "%s changed by a rejected set", k->name);
}

static void accept_value(struct rl_config *cfg, const struct rl_config_key *k, int64_t v)
{
	char msg[256] = "";
	int rc = rl_config_set(cfg, k->name, v, msg, sizeof(msg));
	ASSERT(rc == 0, "%s = %lld: expected 0, got %d (%s)", k->name, (long long)v, rc, msg);
	CHECK_EQ(get(cfg, k), v);
}

static void test_keys(void)
{
	int n = -1;
	const struct rl_config_key *keys = rl_config_keys(&n);
	CHECK(keys != NULL);
	/* one key per field of struct rl_config */
	CHECK_EQ(n, sizeof(struct rl_config) / sizeof(uint32_t));

	struct rl_config cfg;
	rl_config_init(&cfg);
	char msg[256] = "";
	ASSERT(rl_config_validate(&cfg, msg, sizeof(msg)) == 0, "defaults invalid: %s", msg);

	for (int i = 0; i < n; i++) {
		const struct rl_config_key *k = &keys[i];
		ASSERT(k->name && *k->name && k->doc && *k->doc, "key %d lacks a name or doc", i);
		CHECK_LE(k->offset + sizeof(uint32_t), sizeof(struct rl_config));
		for (int j = 0; j < i; j++) {
			CHECK(strcmp(keys[j].name, k->name) != 0);
			CHECK_NE(keys[j].offset, k->offset);
		}
		/* the default is what rl_config_init wrote, and inside the range */
		CHECK_EQ(get(&cfg, k), k->def);
		ASSERT(k->def >= k->min && k->def <= k->max, "%s default out of range", k->name);
		CHECK_LE(k->min, k->max);
		if (k->pow2) {
			CHECK(is_pow2(k->def));
			CHECK(is_pow2(k->min));
			CHECK(is_pow2(k->max));
		}

		struct rl_config c2 = cfg;
		accept_value(&c2, k, k->min);
		accept_value(&c2, k, k->max);
		accept_value(&c2, k, k->def);
		if (k->min > 0)
			reject(&c2, k, (int64_t)k->min - 1);
		reject(&c2, k, (int64_t)k->max + 1);
		reject(&c2, k, -1);
		reject(&c2, k, (int64_t)1 << 40);           /* never truncated to 32 bits */
		reject(&c2, k, ((int64_t)1 << 32) + k->def); /* would wrap onto the default */
		reject(&c2, k, INT64_MIN);
		reject(&c2, k, INT64_MAX);
		if (k->pow2) {
			/* every non power of two in range is refused */
			for (uint64_t v = k->min + 1; v < k->max && v < 5000; v++)
				if (!is_pow2(v))
					reject(&c2, k, (int64_t)v);
			reject(&c2, k, (int64_t)k->max - 1);
			reject(&c2, k, (int64_t)k->def + 1);
		}

		/* validate catches a field written directly */
		if (k->max < UINT32_MAX) {
			struct rl_config c3 = cfg;
			set_raw(&c3, k, k->max + 1);
			msg[0] = 0;
			CHECK_EQ(rl_config_validate(&c3, msg, sizeof(msg)), -EINVAL);
			check_msg(k, msg);
		}
		if (k->min > 0) {
			struct rl_config c3 = cfg;
			set_raw(&c3, k, k->min - 1);
			msg[0] = 0;
			CHECK_EQ(rl_config_validate(&c3, msg, sizeof(msg)), -EINVAL);
			check_msg(k, msg);
		}
	}
}

static void test_unknown_and_cross(void)
{
	struct rl_config cfg;
	rl_config_init(&cfg);
	struct rl_config before = cfg;
	char msg[256] = "";
	CHECK_EQ(rl_config_set(&cfg, "no_such_key", 1, msg, sizeof(msg)), -ENOENT);
	ASSERT(strstr(msg, "no_such_key") != NULL, "unknown-key message: '%s'", msg);
	CHECK_EQ(rl_config_set(&cfg, "", 1, msg, sizeof(msg)), -ENOENT);
	CHECK_EQ(rl_config_set(&cfg, "SQ_ENTRIES", 256, msg, sizeof(msg)), -ENOENT);
	CHECK_EQ(rl_config_set(&cfg, "sq_entries_", 256, msg, sizeof(msg)), -ENOENT);
	CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
	/* a NULL message buffer is allowed */
	CHECK_EQ(rl_config_set(&cfg, "no_such_key", 1, NULL, 0), -ENOENT);
	CHECK_EQ(rl_config_set(&cfg, "sq_entries", 3, NULL, 0), -EINVAL);
	/* a short buffer is truncated, not overrun (ASan watches) */
	char tiny[8];
	CHECK_EQ(rl_config_set(&cfg, "sq_entries", 3, tiny, sizeof(tiny)), -EINVAL);
	CHECK_EQ(strlen(tiny), sizeof(tiny) - 1);

	/* low watermark above the high one */
	CHECK_EQ(rl_config_set(&cfg, "send_high_watermark", 1000, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_config_set(&cfg, "send_low_watermark", 1001, msg, sizeof(msg)), 0);
	msg[0] = 0;
	CHECK_EQ(rl_config_validate(&cfg, msg, sizeof(msg)), -EINVAL);
	ASSERT(strstr(msg, "send_low_watermark") && strstr(msg, "send_high_watermark"),
	       "watermark message: '%s'", msg);
	struct rl_worker *w = NULL;
	msg[0] = 0;
	CHECK_EQ(rl_worker_new(&cfg, &w, msg, sizeof(msg)), -EINVAL);
	CHECK(w == NULL);
	ASSERT(strstr(msg, "send_low_watermark") != NULL, "rl_worker_new message: '%s'", msg);
	/* equal watermarks are fine */
	CHECK_EQ(rl_config_set(&cfg, "send_low_watermark", 1000, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_config_validate(&cfg, msg, sizeof(msg)), 0);

	/* rl_worker_new refuses an out-of-range field with the same message */
	rl_config_init(&cfg);
	cfg.sq_entries = 100;
	msg[0] = 0;
	CHECK_EQ(rl_worker_new(&cfg, &w, msg, sizeof(msg)), -EINVAL);
	ASSERT(strstr(msg, "sq_entries") && strstr(msg, "power of two"), "message: '%s'", msg);
}

/* In a child whose hard RLIMIT_NOFILE is 4096 and whose stderr is a pipe
 * (lowering a hard limit cannot be undone without privileges). */
static void auto_max_child(void)
{
	struct rlimit rl = { .rlim_cur = 1024, .rlim_max = 4096 };
	struct rl_config cfg;
	struct rl_worker *w1 = NULL, *w2 = NULL, *w3 = NULL;
	char msg[256] = "";

	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		exit(T_SKIP);   /* the hard limit is below 4096 already */
	rl_config_init(&cfg);
	CHECK_EQ(cfg.max_connections, 0);
	/* the default fits: 4096 - 64 slots, in two workers, warned once */
	CHECK_EQ(rl_worker_new(&cfg, &w1, msg, sizeof(msg)), 0);
	CHECK(rl_conn_io(w1, 4031) != NULL);
	CHECK(rl_conn_io(w1, 4032) == NULL);
	CHECK_EQ(rl_worker_new(&cfg, &w2, msg, sizeof(msg)), 0);
	CHECK(rl_conn_io(w2, 4032) == NULL);
	/* an explicit value that cannot fit is refused, saying why */
	cfg.max_connections = 16000;
	CHECK_EQ(rl_worker_new(&cfg, &w3, msg, sizeof(msg)), -EMFILE);
	ASSERT(strstr(msg, "max_connections: 16000 needs RLIMIT_NOFILE >= 16064"), "message: '%s'", msg);
	CHECK(w3 == NULL);
	/* one that fits is taken as it is */
	cfg.max_connections = 100;
	CHECK_EQ(rl_worker_new(&cfg, &w3, msg, sizeof(msg)), 0);
	CHECK(rl_conn_io(w3, 100) == NULL);
	CHECK_EQ(rl_worker_destroy(w3), 0);
	CHECK_EQ(rl_worker_destroy(w2), 0);
	CHECK_EQ(rl_worker_destroy(w1), 0);
	/* a hard limit with no room: refused (explicitly, not a zero-sized table) */
	rl.rlim_cur = rl.rlim_max = 100;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	cfg.max_connections = 0;
	msg[0] = 0;
	CHECK_EQ(rl_worker_new(&cfg, &w1, msg, sizeof(msg)), -EMFILE);
	ASSERT(strstr(msg, "no room for connections"), "message: '%s'", msg);
	fflush(stderr);
	exit(0);
}

static void test_auto_max_connections(void)
{
	int fds[2], status;
	char out[4096];
	size_t n = 0;
	ssize_t got;

	CHECK_EQ(pipe(fds), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		auto_max_child();
	}
	close(fds[1]);
	while (n < sizeof(out) - 1 && (got = read(fds[0], out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)got;
	out[n] = 0;
	close(fds[0]);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP) {
		printf("skip: the hard RLIMIT_NOFILE is below 4096\n");
		return;
	}
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %s", out);
	/* exactly one warning line, saying what it chose and why */
	const char *line = strstr(out, "max_connections: 4032 per worker (not 16000)");
	ASSERT(line && strstr(out, "RLIMIT_NOFILE is 4096"), "warning: '%s'", out);
	ASSERT(strstr(line + 1, "max_connections: 4032") == NULL, "warned twice: '%s'", out);
	int lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += out[i] == '\n';
	ASSERT(lines == 1, "expected one line on stderr, got: '%s'", out);
}

int main(void)
{
	test_keys();
	test_unknown_and_cross();
	test_auto_max_connections();
	return 0;
}
