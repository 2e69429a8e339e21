/* SPDX-License-Identifier: MIT */
/*
 * test_nvme_device - NVMe passthrough against a real device: IDENTIFY the
 * controller (admin, CNS 1) and the namespace (CNS 0: the LBA size), READ
 * block 0, FLUSH; WRITE then READ back only at the block named by
 * RINGLINE_NVME_WRITE_LBA (it overwrites that block: never by default).
 * The device is RINGLINE_NVME_DEVICE, else /dev/ng0n1. Without one the
 * test exits 77 (ctest: skipped), saying why on its first line.
 *
 * It has never run: no machine the project is tested on has an NVMe
 * device (docs/core.md, "NVMe passthrough: what ran where").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static uint8_t idbuf[4096] __attribute__((aligned(4096)));
static uint8_t data[1 << 16] __attribute__((aligned(4096)));
static uint8_t back[1 << 16] __attribute__((aligned(4096)));
static uint32_t want_tok;

static int done(struct t_ctx *t)
{
	const struct rl_event *e = t_last(t, RL_EV_NVME, T_ANY, T_ANY);
	return e && e->data == want_tok;
}

static int run(struct t_ctx *t, int id, const struct rl_nvme_cmd *c, int admin, const char *what)
{
	want_tok++;
	CHECK_RC(rl_nvme_submit(t->w, id, c, admin, want_tok));
	T_WAIT(t, done, 30);
	int res = t_last(t, RL_EV_NVME, T_ANY, T_ANY)->res;
	ASSERT(res == 0, "%s: %s%d", what, res < 0 ? "errno " : "NVMe status 0x",
	       res < 0 ? -res : res);
	return res;
}

int main(void)
{
	const char *dev = getenv("RINGLINE_NVME_DEVICE");
	if (!dev || !*dev)
		dev = "/dev/ng0n1";
	if (access(dev, F_OK) != 0) {
		printf("SKIP: no NVMe generic device %s on this machine (set RINGLINE_NVME_DEVICE); "
		       "command blocks and the ring path are checked without one by test_nvme\n",
		       dev);
		return T_SKIP;
	}
	struct t_ctx t;
	struct rl_nvme_info info;
	struct rl_nvme_cmd c;

	t_init(&t, NULL);
	int rc = rl_nvme_open(t.w, dev, &info);
	if (rc == -EACCES || rc == -EPERM) {
		printf("SKIP: %s: %s (passthrough needs CAP_SYS_ADMIN or write access)\n", dev,
		       rl_strerror(rc));
		return T_SKIP;
	}
	CHECK_RC(rc);
	ASSERT(info.admin, "the controller device of %s did not open", dev);

	CHECK_EQ(rl_nvme_cmd_identify(&c, 0, RL_NVME_CNS_CONTROLLER, idbuf), 0);
	run(&t, info.id, &c, 1, "identify controller");
	uint16_t vid = (uint16_t)(idbuf[0] | idbuf[1] << 8);
	ASSERT(vid != 0, "identify controller: vendor id 0");
	printf("controller: vid %04x model %.40s\n", vid, (const char *)idbuf + 24);

	CHECK_EQ(rl_nvme_cmd_identify(&c, info.nsid, RL_NVME_CNS_NAMESPACE, idbuf), 0);
	run(&t, info.id, &c, 1, "identify namespace");
	unsigned flbas = (idbuf[26] & 0x0f) | ((idbuf[26] >> 1) & 0x30);
	unsigned lbads = idbuf[128 + 4 * flbas + 2];
	ASSERT(lbads >= 9 && lbads <= 16, "LBA data size 2^%u", lbads);
	uint32_t bs = 1u << lbads;
	printf("namespace %u: %u-byte blocks\n", info.nsid, bs);

	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, info.nsid, 0, 1, back, bs), 0);
	run(&t, info.id, &c, 0, "read block 0");
	CHECK_EQ(rl_nvme_cmd_flush(&c, info.nsid), 0);
	run(&t, info.id, &c, 0, "flush");

	const char *wl = getenv("RINGLINE_NVME_WRITE_LBA");
	if (wl && *wl) {
		uint64_t lba = strtoull(wl, NULL, 0);
		t_pattern(data, bs, 14, lba);
		CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_WRITE, info.nsid, lba, 1, data, bs), 0);
		run(&t, info.id, &c, 0, "write");
		memset(back, 0, bs);
		CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, info.nsid, lba, 1, back, bs), 0);
		run(&t, info.id, &c, 0, "read back");
		CHECK(memcmp(data, back, bs) == 0);
	}
	CHECK_EQ(rl_nvme_close(t.w, info.id), 0);
	t_finish(&t);
	printf("ok\n");
	return 0;
}
