/* SPDX-License-Identifier: MIT */
/*
 * test_nvme - NVMe passthrough without a device:
 *  - struct rl_nvme_cmd is the kernel's struct nvme_uring_cmd
 *    (linux/nvme_ioctl.h): same size, every field at the same offset;
 *  - each command block (READ 0x02, WRITE 0x01, FLUSH 0x00, IDENTIFY 0x06
 *    with CNS) equals one filled in here through the kernel's own struct,
 *    field by field, and the builders refuse what the format cannot carry;
 *  - the ring path: a command submitted on a descriptor that is no NVMe
 *    device (/dev/null stands in through rl_nvme_open_fd; recent kernels
 *    complete its passthrough commands with 0, older ones refuse them) goes
 *    through the SQE128/CQE32 ring, wakes the worker's poll through its
 *    eventfd and comes back as one RL_EV_NVME each; the gauges return
 *    to idle; rl_nvme_open refuses what is not an NVMe generic device.
 * What needs a device is test_nvme_device (skipped where there is none).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/nvme_ioctl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define SAME(f)                                                                              \
	_Static_assert(offsetof(struct rl_nvme_cmd, f) == offsetof(struct nvme_uring_cmd, f), \
		       #f);                                                                  \
	_Static_assert(sizeof(((struct rl_nvme_cmd *)0)->f) ==                               \
			       sizeof(((struct nvme_uring_cmd *)0)->f),                      \
		       #f " size")
SAME(opcode); SAME(flags); SAME(rsvd1); SAME(nsid); SAME(cdw2); SAME(cdw3);
SAME(metadata); SAME(addr); SAME(metadata_len); SAME(data_len); SAME(cdw10);
SAME(cdw11); SAME(cdw12); SAME(cdw13); SAME(cdw14); SAME(cdw15); SAME(timeout_ms);
SAME(rsvd2);
_Static_assert(sizeof(struct rl_nvme_cmd) == sizeof(struct nvme_uring_cmd), "size");
_Static_assert(sizeof(struct rl_nvme_cmd) == 72, "72 bytes: fits a 128-byte SQE's 80");

static void same(const struct rl_nvme_cmd *c, const struct nvme_uring_cmd *k)
{
	ASSERT(memcmp(c, k, sizeof(*k)) == 0, "command block differs from the kernel's");
}

static void blocks(void)
{
	static uint8_t buf[8192];
	struct rl_nvme_cmd c;
	struct nvme_uring_cmd k;
	uint64_t lba = 0x123456789abcull;

	/* READ: opcode 0x02, LBA over CDW10/11, NLB 0-based in CDW12 */
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, 1, lba, 2, buf, 8192), 0);
	memset(&k, 0, sizeof(k));
	k.opcode = 0x02;
	k.nsid = 1;
	k.addr = (uint64_t)(uintptr_t)buf;
	k.data_len = 8192;
	k.cdw10 = 0x56789abc;
	k.cdw11 = 0x1234;
	k.cdw12 = 1;
	same(&c, &k);

	/* WRITE: opcode 0x01, the most blocks one command carries */
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_WRITE, 7, 0, 65536, buf, 4096), 0);
	memset(&k, 0, sizeof(k));
	k.opcode = 0x01;
	k.nsid = 7;
	k.addr = (uint64_t)(uintptr_t)buf;
	k.data_len = 4096;
	k.cdw12 = 0xffff;
	same(&c, &k);

	/* FLUSH: opcode 0x00, no data */
	memset(&c, 0xff, sizeof(c));
	CHECK_EQ(rl_nvme_cmd_flush(&c, 3), 0);
	memset(&k, 0, sizeof(k));
	k.opcode = 0x00;
	k.nsid = 3;
	same(&c, &k);

	/* IDENTIFY (admin 0x06), CNS 1: the controller, 4096 bytes, nsid 0 */
	CHECK_EQ(rl_nvme_cmd_identify(&c, 0, RL_NVME_CNS_CONTROLLER, buf), 0);
	memset(&k, 0, sizeof(k));
	k.opcode = 0x06;
	k.addr = (uint64_t)(uintptr_t)buf;
	k.data_len = 4096;
	k.cdw10 = 1;
	same(&c, &k);
	/* CNS 0: a namespace */
	CHECK_EQ(rl_nvme_cmd_identify(&c, 5, RL_NVME_CNS_NAMESPACE, buf), 0);
	k.nsid = 5;
	k.cdw10 = 0;
	same(&c, &k);

	/* what the format cannot carry */
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, 1, 0, 0, buf, 0), -EINVAL);
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, 1, 0, 65537, buf, 4096), -EINVAL);
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_FLUSH, 1, 0, 1, buf, 4096), -EINVAL);
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, 1, 0, 1, NULL, 4096), -EINVAL);
	CHECK_EQ(rl_nvme_cmd_identify(&c, 0, 256, buf), -EINVAL);
	CHECK_EQ(rl_nvme_cmd_identify(&c, 0, 1, NULL), -EINVAL);
}

static int got_event(struct t_ctx *t)
{
	return t->nevents[RL_EV_NVME] == 2;
}

static void ring_path(void)
{
	struct t_ctx t;
	static uint8_t buf[4096];
	struct rl_nvme_cmd c;
	struct rl_nvme_info info;

	t_init(&t, NULL);
	CHECK_EQ(rl_nvme_open(t.w, "/nonexistent/ng0n1", &info), -ENOENT);
	CHECK_EQ(rl_nvme_open(t.w, "/dev/null", &info), -ENOTTY);  /* no NVME_IOCTL_ID */
	CHECK_EQ(rl_nvme_open(t.w, "/etc/hostname", &info), -ENOTTY); /* not a device */

	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	int id = CHECK_RC(rl_nvme_open_fd(t.w, fd, -1, 1));
	CHECK_EQ(rl_nvme_cmd_rw(&c, RL_NVME_READ, 1, 0, 1, buf, sizeof(buf)), 0);
	CHECK_EQ(rl_nvme_submit(t.w, id, &c, 0, 41), 0);
	CHECK_EQ(rl_nvme_submit(t.w, id, &c, 0, 42), 0);
	CHECK_EQ(rl_nvme_submit(t.w, id, &c, 1, 43), -ENODEV); /* no controller device */
	CHECK_EQ(rl_nvme_submit(t.w, id + 1, &c, 0, 44), -ENOENT);
	CHECK_EQ(rl_worker_metrics(t.w)->nvme_inflight, 2);
	CHECK_EQ(rl_nvme_close(t.w, id), -EBUSY);
	/* the completions wake polls that would otherwise sleep 10 s each
	 * (nothing else is armed: the worker's ring has only its wake read) */
	double t0 = t_now();
	while (!got_event(&t) && t_now() - t0 < 5)
		t_step(&t, 10000);
	ASSERT(got_event(&t) && t_now() - t0 < 2.0, "the NVMe ring's completion did not wake the poll");
	for (uint32_t tok = 41; tok <= 42; tok++) {
		const struct rl_event *e = NULL;
		for (size_t i = 0; i < t.nlog; i++)
			if (t.log[i].type == RL_EV_NVME && t.log[i].data == tok)
				e = &t.log[i];
		CHECK(e != NULL);
		CHECK_EQ(e->slot, (uint32_t)id);
		/* /dev/null completes passthrough commands with 0 where it
		 * implements uring_cmd (for exactly this kind of test), else
		 * the kernel refuses them */
		ASSERT(e->res == 0 || e->res == -EOPNOTSUPP || e->res == -ENOTTY || e->res == -EINVAL,
		       "res %d (%s)", e->res, rl_strerror(e->res));
	}
	CHECK_EQ(rl_worker_metrics(t.w)->nvme_inflight, 0);
	CHECK_EQ(rl_nvme_close(t.w, id), 0);
	CHECK_EQ(rl_nvme_close(t.w, id), -ENOENT);
	t_finish(&t);
}

int main(void)
{
	blocks();
	ring_path();
	printf("ok (no NVMe device used: see test_nvme_device)\n");
	return 0;
}
