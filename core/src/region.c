/* SPDX-License-Identifier: MIT */
/*
 * region.c - memory regions for guarded sends: mapped by the core and
 * registered with the ring as fixed buffers (a sparse table sized at start).
 * A region is never unmapped while a guard on it is outstanding.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

void rl__regions_init(struct rl_worker *w)
{
	memset(w->regions, 0, sizeof(w->regions));
	w->regions_table = io_uring_register_buffers_sparse(&w->ring, RL_MAX_REGIONS) == 0;
}

static void unmap(struct rl_worker *w, int id)
{
	struct rl_region *r = &w->regions[id];
	if (r->registered) {
		struct iovec iov = { 0 };
		__u64 tag = 0;
		io_uring_register_buffers_update_tag(&w->ring, (unsigned)id, &iov, &tag, 1);
	}
	munmap(r->ptr, r->size);
	memset(r, 0, sizeof(*r));
}

void rl__regions_fini(struct rl_worker *w)
{
	for (int i = 0; i < RL_MAX_REGIONS; i++)
		if (w->regions[i].used && !w->regions[i].inflight)
			unmap(w, i);
	if (w->regions_table)
		io_uring_unregister_buffers(&w->ring);
}

int rl_region_new(struct rl_worker *w, size_t size, void **ptr)
{
	if (size == 0 || size > ((size_t)1 << 32))
		return -EINVAL;
	int id = -1;
	for (int i = 0; i < RL_MAX_REGIONS; i++) {
		if (!w->regions[i].used) {
			id = i;
			break;
		}
	}
	if (id < 0)
		return -ENOSPC;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = (size + page - 1) & ~(page - 1);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct rl_region *r = &w->regions[id];
	r->ptr = p;
	r->size = size;
	r->used = 1;
	r->inflight = 0;
	if (w->regions_table) {
		struct iovec iov = { .iov_base = p, .iov_len = len };
		__u64 tag = 0;
		r->registered =
			io_uring_register_buffers_update_tag(&w->ring, (unsigned)id, &iov, &tag, 1) >= 0;
	}
	r->size = len;
	*ptr = p;
	return id;
}

int rl_region_free(struct rl_worker *w, int id)
{
	if (id < 0 || id >= RL_MAX_REGIONS || !w->regions[id].used)
		return -ENOENT;
	if (w->regions[id].inflight)
		return -EBUSY;
	unmap(w, id);
	return 0;
}

int rl_region_inflight(struct rl_worker *w, int id)
{
	if (id < 0 || id >= RL_MAX_REGIONS || !w->regions[id].used)
		return -ENOENT;
	return (int)w->regions[id].inflight;
}

int rl__region_check(struct rl_worker *w, int id, const void *ptr, uint32_t len)
{
	if (id < 0 || id >= RL_MAX_REGIONS || !w->regions[id].used)
		return -ENOENT;
	const uint8_t *base = w->regions[id].ptr, *p = ptr;
	if (p < base || (size_t)(p - base) + len > w->regions[id].size)
		return -ERANGE;
	return 0;
}
