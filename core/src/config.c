/* SPDX-License-Identifier: MIT */
/* config.c - defaults, the key table and validation of struct rl_config. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define KEY(field, def, min, max, pow2, doc) \
	{ #field, (uint32_t)offsetof(struct rl_config, field), def, min, max, pow2, doc }

/* Defaults follow ringline 0.0.2 where it had one; each says why. */
static const struct rl_config_key keys[] = {
	KEY(sq_entries, 256, 8, 32768, 1,
	    "submission queue entries (CQ is 4x): 256 batches a busy loop without big rings"),
	KEY(recv_buffers, 256, 1, 32768, 1,
	    "provided receive buffers in the ring, shared by all connections of a worker"),
	KEY(recv_buffer_size, 16384, 256, 1u << 20, 0,
	    "bytes per provided buffer: 16 KiB beat bigger buffers on the copy path"),
	KEY(send_slots, 1024, 1, 1u << 20, 0,
	    "send copy pool slots; heap chunks are used beyond them"),
	KEY(send_slot_size, 16384, 256, 1u << 24, 0, "bytes per send copy slot"),
	KEY(max_connections, 0, 0, 1u << 20, 0,
	    "connection slots = fixed file table entries (needs RLIMIT_NOFILE above it); "
	    "0 = 16000, or fewer to fit the hard RLIMIT_NOFILE (with a warning)"),
	KEY(recv_window, 262144, 1024, 1u << 30, 0,
	    "unconsumed received bytes per connection before receiving pauses"),
	KEY(send_high_watermark, 65536, 1, 1u << 30, 0,
	    "unsent bytes per connection above which writers wait"),
	KEY(send_low_watermark, 16384, 0, 1u << 30, 0,
	    "unsent bytes at which waiting writers resume (<= high watermark)"),
	KEY(listen_backlog, 1024, 1, 65535, 0, "listen(2) backlog"),
	KEY(max_timers, 1u << 20, 1, 1u << 20, 0, "concurrently armed timers"),
	KEY(zc_threshold, 16384, 0, 1u << 30, 0,
	    "guarded parts below this size are copied: a zero-copy send costs ~6.5 us whatever "
	    "its size, a copy ~0.5 ns a byte; measured crossover 16-32 KiB (BENCHMARKS.md)"),
	KEY(send_slab_entries, 512, 1, 1u << 20, 0,
	    "in-flight scatter-gather/zero-copy send entries per worker"),
	KEY(udp_buffers, 64, 1, 32768, 1, "provided buffers of the UDP receive ring (made on first use)"),
	KEY(udp_buffer_size, 65536, 512, 1u << 20, 0,
	    "bytes per UDP buffer: datagrams up to this size arrive whole, longer ones truncated"),
	KEY(udp_queue, 256, 1, 1u << 20, 0,
	    "datagrams queued per UDP socket; beyond it new ones are dropped and counted"),
	KEY(close_timeout, 60000, 1, 86400000, 0,
	    "ms a graceful close may go without send progress (a peer that does not read) "
	    "before it becomes a reset, freeing its queue and zero-copy entries"),
	KEY(tls_handshake_timeout, 10000, 1, 3600000, 0,
	    "ms a TLS handshake may take: a peer that stalls in it costs only its connection"),
	KEY(sqpoll, 0, 0, 1, 0,
	    "1: a kernel thread polls each worker's submission queue (IORING_SETUP_SQPOLL, idle "
	    "after 1 s): no io_uring_enter per batch, but that thread takes a CPU while traffic "
	    "flows; a kernel that refuses it gets a warning and the default setup"),
	KEY(sqpoll_cpu, RL_SQPOLL_ANY_CPU, 0, RL_SQPOLL_ANY_CPU, 0,
	    "CPU the SQPOLL thread is pinned to (65535 = not pinned)"),
};

#define NKEYS ((int)(sizeof(keys) / sizeof(keys[0])))

const struct rl_config_key *rl_config_keys(int *n)
{
	if (n)
		*n = NKEYS;
	return keys;
}

static uint32_t *field(struct rl_config *cfg, const struct rl_config_key *k)
{
	return (uint32_t *)((char *)cfg + k->offset);
}

void rl_config_init(struct rl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < NKEYS; i++)
		*field(cfg, &keys[i]) = keys[i].def;
}

static int check_key(const struct rl_config_key *k, int64_t v, char *msg, size_t msglen)
{
	if (v < (int64_t)k->min || v > (int64_t)k->max ||
	    (k->pow2 && (v & (v - 1)) != 0)) {
		if (msg)
			snprintf(msg, msglen, "%s: %lld is out of range (%u..%u%s)", k->name,
				 (long long)v, k->min, k->max, k->pow2 ? ", a power of two" : "");
		return -EINVAL;
	}
	return 0;
}

int rl_config_set(struct rl_config *cfg, const char *key, int64_t value, char *msg, size_t msglen)
{
	for (int i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].name, key) != 0)
			continue;
		int rc = check_key(&keys[i], value, msg, msglen);
		if (rc == 0)
			*field(cfg, &keys[i]) = (uint32_t)value;
		return rc;
	}
	if (msg)
		snprintf(msg, msglen, "unknown configuration key '%s'", key);
	return -ENOENT;
}

int rl_config_validate(const struct rl_config *cfg, char *msg, size_t msglen)
{
	for (int i = 0; i < NKEYS; i++) {
		int rc = check_key(&keys[i], *field((struct rl_config *)cfg, &keys[i]), msg, msglen);
		if (rc)
			return rc;
	}
	if (cfg->send_low_watermark > cfg->send_high_watermark) {
		if (msg)
			snprintf(msg, msglen,
				 "send_low_watermark: %u is above send_high_watermark (%u)",
				 cfg->send_low_watermark, cfg->send_high_watermark);
		return -EINVAL;
	}
	return 0;
}
