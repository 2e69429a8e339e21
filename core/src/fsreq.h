/* SPDX-License-Identifier: MIT */
/*
 * fsreq.h - a file operation's request record, shared by the ring side
 * (fileop.c) and the thread pool that runs what the ring lacks
 * (fspool.c). Private to those two files.
 */
#ifndef RL_FSREQ_H
#define RL_FSREQ_H

#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "internal.h"

/* glibc takes struct statx from <linux/stat.h> when the kernel headers
 * have it (then STATX_DIOALIGN and the fields exist); its own older copy
 * ends in padding where the kernel puts them, after stx_mnt_id. */
#ifdef STATX_DIOALIGN
#define RL_STX_DIO(x, a) ((a)[0] = (x)->stx_dio_mem_align, (a)[1] = (x)->stx_dio_offset_align)
#else
#define STATX_DIOALIGN 0x00002000U
#define RL_STX_DIO(x, a) memcpy((a), (const uint8_t *)&(x)->__statx_pad2[1], 2 * sizeof(uint32_t))
#endif

struct rl_fsreq {
	struct rl_fsreq *next;  /* pool queue / done list */
	uint32_t idx;
	uint32_t gen;
	uint32_t token;
	uint8_t op;             /* enum rl_fsop */
	uint8_t used;
	uint8_t pooled;         /* on the pool (else in the ring) */
	uint8_t cancel;         /* rl_fs_cancel asked (pool: skip it if not started) */
	int fd;
	int flags;
	uint32_t mode;
	char *path;
	char *path2;
	void *buf;
	uint32_t len;
	int region;
	int64_t off;
	struct iovec *iov;
	uint32_t niov;
	struct rl_stat *out;
	struct statx stx;
	int32_t res;
	uint32_t aux;
};


/* The pool (fspool.c), started on first use. Submit: the request runs on
 * a pool thread (0) or could not be handed to one (negative errno). Take:
 * the finished requests in completion order, linked by next, for the
 * worker to finish. Stop: the threads run what is queued and are joined.
 * Free: after stop and a last take. */
RL_HIDDEN int rl__fspool_submit(struct rl_worker *w, struct rl_fsreq *r);
RL_HIDDEN struct rl_fsreq *rl__fspool_take(struct rl_worker *w);
RL_HIDDEN void rl__fspool_stop(struct rl_worker *w);
RL_HIDDEN void rl__fspool_free(struct rl_worker *w);

#endif
