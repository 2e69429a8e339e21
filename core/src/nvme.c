/* SPDX-License-Identifier: MIT */
/*
 * nvme.c - NVMe passthrough through IORING_OP_URING_CMD.
 *
 * The command block (struct rl_nvme_cmd, the layout of the kernel's
 * struct nvme_uring_cmd) is built by pure functions: READ 0x02, WRITE 0x01
 * and FLUSH 0x00 are I/O commands for the namespace's generic device
 * (/dev/ngXnY); IDENTIFY 0x06 is an admin command, which only the
 * controller's device (/dev/nvmeX) takes. The starting LBA is split over
 * CDW10 (low) and CDW11 (high); CDW12 bits 0-15 hold the block count less
 * one (NLB is 0-based); IDENTIFY's CNS is CDW10 bits 0-7.
 *
 * Why a ring of its own: the command is 72 bytes and must sit in the SQE
 * (IORING_SETUP_SQE128), its result dword comes in the CQE
 * (IORING_SETUP_CQE32). Those flags apply to a whole ring; setting them on
 * the worker's ring would double every SQE and CQE of the network path for
 * a feature most workers never use. So the worker makes a small second
 * ring on the first rl_nvme_open, registers its own wake-up eventfd with
 * it (a completion there wakes the poll on the main ring) and reaps it on
 * every poll. Commands are submitted at once (one io_uring_enter each).
 *
 * Nothing of this has run against a device: the machines the tests run on
 * have none (docs/core.md says exactly what is tested).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/nvme_ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define RL_MAX_NVME 16
#define RL_NVME_RING_ENTRIES 64

struct rl_nvme_dev {
	int fd;        /* the namespace's generic device: I/O commands */
	int admin_fd;  /* its controller's: admin commands, or -1 */
	uint32_t nsid;
	uint32_t inflight;
	uint8_t used;
};

struct rl_nvme {
	struct io_uring ring;
	struct rl_nvme_dev dev[RL_MAX_NVME];
};

/* ---- command blocks (pure) ---- */

int rl_nvme_cmd_rw(struct rl_nvme_cmd *c, int opcode, uint32_t nsid, uint64_t lba,
		   uint32_t nblocks, void *buf, uint32_t len)
{
	if (!c || (opcode != RL_NVME_READ && opcode != RL_NVME_WRITE) || nblocks == 0 ||
	    nblocks > RL_NVME_MAX_BLOCKS || (!buf && len))
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->opcode = (uint8_t)opcode;
	c->nsid = nsid;
	c->addr = (uint64_t)(uintptr_t)buf;
	c->data_len = len;
	c->cdw10 = (uint32_t)lba;
	c->cdw11 = (uint32_t)(lba >> 32);
	c->cdw12 = (nblocks - 1) & 0xffff;
	return 0;
}

int rl_nvme_cmd_flush(struct rl_nvme_cmd *c, uint32_t nsid)
{
	if (!c)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->opcode = RL_NVME_FLUSH;
	c->nsid = nsid;
	return 0;
}

int rl_nvme_cmd_identify(struct rl_nvme_cmd *c, uint32_t nsid, uint32_t cns, void *buf)
{
	if (!c || !buf || cns > 0xff)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->opcode = RL_NVME_IDENTIFY;
	c->nsid = nsid;
	c->addr = (uint64_t)(uintptr_t)buf;
	c->data_len = RL_NVME_IDENTIFY_SIZE;
	c->cdw10 = cns;
	return 0;
}

/* ---- the ring ---- */

static int nvme_setup(struct rl_worker *w)
{
	if (w->nvme)
		return 0;
	struct rl_nvme *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	int rc = io_uring_queue_init_params(RL_NVME_RING_ENTRIES, &n->ring, &p);
	if (rc) {
		free(n);
		return rc == -EINVAL ? -EOPNOTSUPP : rc; /* a kernel before 5.19 */
	}
	rc = io_uring_register_eventfd(&n->ring, w->wake_fd);
	if (rc) {
		io_uring_queue_exit(&n->ring);
		free(n);
		return rc;
	}
	for (int i = 0; i < RL_MAX_NVME; i++)
		n->dev[i].fd = n->dev[i].admin_fd = -1;
	w->nvme = n;
	return 0;
}

static int dev_add(struct rl_worker *w, int fd, int admin_fd, uint32_t nsid)
{
	int rc = nvme_setup(w);
	if (rc)
		return rc;
	for (int i = 0; i < RL_MAX_NVME; i++) {
		struct rl_nvme_dev *d = &w->nvme->dev[i];
		if (!d->used) {
			d->used = 1;
			d->fd = fd;
			d->admin_fd = admin_fd;
			d->nsid = nsid;
			d->inflight = 0;
			return i;
		}
	}
	return -EMFILE;
}

int rl_nvme_open_fd(struct rl_worker *w, int fd, int admin_fd, uint32_t nsid)
{
	if (fd < 0)
		return -EBADF;
	return dev_add(w, fd, admin_fd, nsid);
}

/* /dev/ngXnY -> /dev/nvmeX: the controller of a namespace's generic
 * device. 0, or -EINVAL when the name is not of that form. */
static int controller_path(const char *path, char *out, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	unsigned ctrl, ns;
	char tail;
	if (sscanf(base, "ng%un%u%c", &ctrl, &ns, &tail) != 2)
		return -EINVAL;
	snprintf(out, len, "/dev/nvme%u", ctrl);
	return 0;
}

int rl_nvme_open(struct rl_worker *w, const char *path, struct rl_nvme_info *out)
{
	if (!path || !out)
		return -EINVAL;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
		close(fd);
		return -ENOTTY;
	}
	/* a namespace device answers with its namespace id */
	int nsid = ioctl(fd, NVME_IOCTL_ID);
	if (nsid <= 0) {
		close(fd);
		return -ENOTTY;
	}
	char cpath[64];
	int admin_fd = -1;
	if (controller_path(path, cpath, sizeof(cpath)) == 0)
		admin_fd = open(cpath, O_RDWR | O_CLOEXEC);
	int id = dev_add(w, fd, admin_fd, (uint32_t)nsid);
	if (id < 0) {
		close(fd);
		if (admin_fd >= 0)
			close(admin_fd);
		return id;
	}
	out->id = id;
	out->nsid = (uint32_t)nsid;
	out->admin = admin_fd >= 0;
	out->pad = 0;
	return 0;
}

static struct rl_nvme_dev *dev_get(struct rl_worker *w, int id)
{
	if (!w->nvme || id < 0 || id >= RL_MAX_NVME || !w->nvme->dev[id].used)
		return NULL;
	return &w->nvme->dev[id];
}

int rl_nvme_submit(struct rl_worker *w, int id, const struct rl_nvme_cmd *cmd, int admin,
		   uint32_t token)
{
	struct rl_nvme_dev *d = dev_get(w, id);
	if (!d)
		return -ENOENT;
	if (!cmd)
		return -EINVAL;
	int fd = admin ? d->admin_fd : d->fd;
	if (fd < 0)
		return -ENODEV;
	struct io_uring *ring = &w->nvme->ring;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
		if (!sqe)
			return -EBUSY;
	}
	memset(sqe, 0, 2 * sizeof(*sqe)); /* a 128-byte SQE */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = admin ? NVME_URING_CMD_ADMIN : NVME_URING_CMD_IO;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	sqe->user_data = ((uint64_t)(uint32_t)id << 32) | token;
	int rc = io_uring_submit(ring);
	if (rc < 0) {
		/* not taken: the SQE stays queued; make it a no-op so it cannot
		 * run later with memory the caller then frees */
		io_uring_prep_nop(sqe);
		sqe->user_data = UINT64_MAX;
		d->inflight++;
		w->m.nvme_inflight++;
		w->m.ops_inflight++;
		return rc;
	}
	d->inflight++;
	w->m.nvme_inflight++;
	w->m.ops_inflight++;
	return 0;
}

void rl__nvme_reap(struct rl_worker *w)
{
	struct rl_nvme *n = w->nvme;
	if (!n)
		return;
	/* a NOP left queued by a failed submission (rl_nvme_submit) */
	if (io_uring_sq_ready(&n->ring))
		io_uring_submit(&n->ring);
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&n->ring, head, cqe) {
		seen++;
		w->m.nvme_inflight--;
		w->m.ops_inflight--;
		uint32_t id = (uint32_t)(cqe->user_data >> 32);
		if (id < RL_MAX_NVME && n->dev[id].inflight)
			n->dev[id].inflight--;
		if (cqe->user_data == UINT64_MAX)
			continue; /* a command whose submission failed, as a NOP */
		rl__emit_aux(w, RL_EV_NVME, cqe->res, id, 0, (uint32_t)cqe->user_data,
			     (uint32_t)cqe->big_cqe[0]);
	}
	io_uring_cq_advance(&n->ring, seen);
}

int rl_nvme_close(struct rl_worker *w, int id)
{
	struct rl_nvme_dev *d = dev_get(w, id);
	if (!d)
		return -ENOENT;
	if (d->inflight)
		return -EBUSY;
	close(d->fd);
	if (d->admin_fd >= 0)
		close(d->admin_fd);
	d->fd = d->admin_fd = -1;
	d->used = 0;
	return 0;
}

void rl__nvme_fini(struct rl_worker *w)
{
	struct rl_nvme *n = w->nvme;
	if (!n)
		return;
	for (int i = 0; i < RL_MAX_NVME; i++) {
		if (n->dev[i].used) {
			close(n->dev[i].fd);
			if (n->dev[i].admin_fd >= 0)
				close(n->dev[i].admin_fd);
		}
	}
	io_uring_queue_exit(&n->ring);
	free(n);
	w->nvme = NULL;
}
