/* SPDX-License-Identifier: MIT */
/*
 * test_config - defaults are valid, every key rejects values outside its
 * range with a message naming the key and the range, power-of-two keys
 * reject other values, unknown keys are -ENOENT, and the cross-field rule
 * (low watermark <= high watermark) is enforced by validation and by
 * rl_worker_new.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int main(void)
{
	test_keys();
	test_unknown_and_cross();
	return 0;
}
