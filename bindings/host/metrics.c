/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - what the metrics endpoint (metrics_http.c) serves: the
 * Prometheus text exposition 0.0.4 of every worker's counters and
 * histograms, and the registry of the scripts' own metrics
 * (ringline.metric).
 *
 * Nothing of it runs on a worker: a scrape reads each worker's counters and histograms in place
 * (aligned 64-bit words the worker writes with plain stores; a value read
 * mid-update is the old or the new one, never torn) under the registry's
 * lock, which only the worker's register/unregister also take. The workers'
 * hot paths are unchanged by a scrape: no message, no wake, no lock they
 * wait on (bench/metrics_ab.sh measures it).
 *
 * The scripts' metrics: a family (name, help, type, label names, buckets)
 * is registered once per process (every worker runs the script and asks
 * for it again: the same definition gets the same id). Each worker writes
 * its own cell of each label set (doubles, plain stores, never freed until
 * the process ends); a scrape sums the cells of the workers and prints each
 * worker's too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "host.h"
#include "rl_host.h"

/* Families and label sets a script may create: a bound on the memory a
 * label with unbounded values (a URL path, a peer address) can take. */
#define FAMILIES_MAX 1024
#define SERIES_MAX 10000
#define BUCKETS_MAX 64

/* ---- the scripts' metrics ---- */

struct series {
	struct series *next;
	char *labels;            /* rendered: k="v",k2="v2" (escaped by the Lua side), or "" */
	double **cells;          /* [workers], NULL until that worker writes it */
};

struct family {
	char *name, *help, *labelnames;
	int type;                /* RL_HOST_METRIC_* */
	int nbuckets;
	double buckets[BUCKETS_MAX];
	int nseries;
	struct series *head, *tail;
};

static struct family *families[FAMILIES_MAX];
static int nfamilies;
static pthread_mutex_t fam_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *log_drops;      /* [workers]: lines dropped on a full buffer */
static struct rl_host_stats *stats;   /* [workers] */
/* The last counters of each slot's worker that ended (host_slots). */
static struct final {
	int valid;
	struct rl_metrics m;
	struct rl_latency lat;
} *finals;
static pthread_mutex_t finals_lock = PTHREAD_MUTEX_INITIALIZER;

int host_metrics_fail(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (msg && len) {
		va_start(ap, fmt);
		vsnprintf(msg, len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Cells of a family's series: one double for a counter or gauge; the
 * buckets (not cumulative; the last is +Inf) and the sum for a histogram. */
static size_t cell_len(const struct family *f)
{
	return f->type == RL_HOST_METRIC_HISTOGRAM ? (size_t)f->nbuckets + 2 : 1;
}

RL_HOST_API int rl_host_metric_family(const char *name, const char *help, int type,
				      const char *labelnames, const double *buckets, int nbuckets,
				      char *msg, size_t msglen)
{
	struct family *f;
	int id = -1;

	if (!name || !help || !labelnames || type < RL_HOST_METRIC_COUNTER ||
	    type > RL_HOST_METRIC_HISTOGRAM || nbuckets < 0 || nbuckets > BUCKETS_MAX ||
	    (nbuckets && !buckets))
		return host_metrics_fail(msg, msglen, "bad arguments");
	pthread_mutex_lock(&fam_lock);
	for (int i = 0; i < nfamilies; i++) {
		f = families[i];
		if (strcmp(f->name, name) != 0)
			continue;
		if (f->type != type || strcmp(f->labelnames, labelnames) != 0 ||
		    f->nbuckets != nbuckets ||
		    (nbuckets && memcmp(f->buckets, buckets, sizeof(double) * (size_t)nbuckets))) {
			pthread_mutex_unlock(&fam_lock);
			host_metrics_fail(msg, msglen, "'%s' is registered already with another type, labels "
			     "or buckets", name);
			return -EEXIST;
		}
		pthread_mutex_unlock(&fam_lock);
		return i;
	}
	if (nfamilies == FAMILIES_MAX) {
		pthread_mutex_unlock(&fam_lock);
		host_metrics_fail(msg, msglen, "too many metrics (%d)", FAMILIES_MAX);
		return -ENOSPC;
	}
	f = calloc(1, sizeof(*f));
	if (f) {
		f->name = strdup(name);
		f->help = strdup(help);
		f->labelnames = strdup(labelnames);
	}
	if (!f || !f->name || !f->help || !f->labelnames) {
		if (f) {
			free(f->name);
			free(f->help);
			free(f->labelnames);
		}
		free(f);
		pthread_mutex_unlock(&fam_lock);
		host_metrics_fail(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	f->type = type;
	f->nbuckets = nbuckets;
	if (nbuckets)
		memcpy(f->buckets, buckets, sizeof(double) * (size_t)nbuckets);
	id = nfamilies;
	families[nfamilies++] = f;
	pthread_mutex_unlock(&fam_lock);
	return id;
}

RL_HOST_API double *rl_host_metric_cell(int family, int worker, const char *labels, char *msg,
					size_t msglen)
{
	struct family *f;
	struct series *s;
	double *cell = NULL;

	if (family < 0 || worker < 0 || worker >= host_slots() || !labels) {
		host_metrics_fail(msg, msglen, "bad arguments");
		return NULL;
	}
	pthread_mutex_lock(&fam_lock);
	if (family >= nfamilies) {
		pthread_mutex_unlock(&fam_lock);
		host_metrics_fail(msg, msglen, "no such metric");
		return NULL;
	}
	f = families[family];
	for (s = f->head; s; s = s->next)
		if (strcmp(s->labels, labels) == 0)
			break;
	if (!s) {
		if (f->nseries == SERIES_MAX) {
			pthread_mutex_unlock(&fam_lock);
			host_metrics_fail(msg, msglen, "%s: too many label sets (%d)", f->name, SERIES_MAX);
			return NULL;
		}
		s = calloc(1, sizeof(*s));
		if (s) {
			s->labels = strdup(labels);
			s->cells = calloc((size_t)host_slots(), sizeof(*s->cells));
		}
		if (!s || !s->labels || !s->cells) {
			if (s) {
				free(s->labels);
				free(s->cells);
			}
			free(s);
			pthread_mutex_unlock(&fam_lock);
			host_metrics_fail(msg, msglen, "out of memory");
			return NULL;
		}
		if (f->tail)
			f->tail->next = s;
		else
			f->head = s;
		f->tail = s;
		f->nseries++;
	}
	if (!s->cells[worker])
		s->cells[worker] = calloc(cell_len(f), sizeof(double));
	cell = s->cells[worker];
	pthread_mutex_unlock(&fam_lock);
	if (!cell)
		host_metrics_fail(msg, msglen, "out of memory");
	return cell;
}

RL_HOST_API struct rl_host_stats *rl_host_stats(int id)
{
	if (!stats || id < 0 || id >= host_slots())
		return NULL;
	return &stats[id];
}

void host_metrics_log_dropped(int id)
{
	if (log_drops && id >= 0 && id < host_slots())
		__atomic_add_fetch(&log_drops[id], 1, __ATOMIC_RELAXED);
}

uint64_t host_metrics_log_drops(int id)
{
	if (!log_drops || id < 0 || id >= host_slots())
		return 0;
	return __atomic_load_n(&log_drops[id], __ATOMIC_RELAXED);
}

int host_metrics_init(void)
{
	log_drops = calloc((size_t)host_slots(), sizeof(*log_drops));
	stats = calloc((size_t)host_slots(), sizeof(*stats));
	finals = calloc((size_t)host_slots(), sizeof(*finals));
	return log_drops && stats && finals ? 0 : -ENOMEM;
}

/* ---- the text exposition ---- */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

__attribute__((format(printf, 2, 3)))
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 65536;
		while (cap <= b->len + (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* HELP text escaped as the format wants (backslash and newline). */
static void put_help(struct buf *b, const char *name, const char *help, const char *type)
{
	put(b, "# HELP %s ", name);
	for (const char *c = help; *c; c++) {
		if (*c == '\\')
			put(b, "\\\\");
		else if (*c == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *c);
	}
	put(b, "\n# TYPE %s %s\n", name, type);
}

/* The core's counters: name, help, and whether it is a gauge. */
#define C_(f, gauge, help) { #f, offsetof(struct rl_metrics, f), gauge, help }
static const struct core_metric {
	const char *name;
	size_t off;
	int gauge;
	const char *help;
} core_metrics[] = {
	C_(conns_open, 1, "Connections open."),
	C_(conns_accepted, 0, "Connections accepted."),
	C_(conns_connected, 0, "Outbound connections established."),
	C_(conns_closed, 0, "Connections closed."),
	C_(conns_refused, 0, "Peers refused: connection table full, no hand-off member, or out of descriptors."),
	C_(bytes_in, 0, "Bytes received."),
	C_(bytes_out, 0, "Bytes sent."),
	C_(send_slots_used, 1, "Send pool slots in use."),
	C_(send_heap_chunks, 1, "Send chunks taken from the heap when the pool was empty."),
	C_(send_bytes_queued, 1, "Unsent bytes over all connections."),
	C_(recv_buffers_free, 1, "Provided receive buffers owned by the kernel."),
	C_(recv_pauses, 0, "Receives stopped on a full window (backpressure)."),
	C_(recv_enobufs, 0, "Receives ended on an empty buffer ring."),
	C_(accum_bytes, 1, "Bytes allocated for receive accumulators."),
	C_(timers_active, 1, "Timers armed."),
	C_(ops_inflight, 1, "Submitted operations the kernel has not completed."),
	C_(sqes_submitted, 0, "Submission queue entries submitted."),
	C_(cqes_reaped, 0, "Completions reaped."),
	C_(loop_iterations, 0, "Event loop iterations (polls)."),
	C_(stale_cqes, 0, "Completions for a previous occupant, dropped."),
	C_(accept_errors, 0, "Transient accept failures (re-armed)."),
	C_(slab_used, 1, "Send slab entries in use."),
	C_(guards_outstanding, 1, "Guarded send parts not yet released."),
	C_(zc_sends, 0, "Zero-copy send operations submitted."),
	C_(zc_notifs, 0, "Zero-copy notifications received."),
	C_(zc_copied, 0, "Zero-copy notifications saying the kernel copied anyway."),
	C_(zc_bytes, 0, "Bytes sent by zero-copy operations."),
	C_(zc_fallbacks, 0, "Guarded parts copied because the slab was full."),
	C_(udp_in, 0, "Datagrams received."),
	C_(udp_out, 0, "Datagrams sent."),
	C_(udp_dropped, 0, "Received datagrams dropped: the socket's queue was full."),
	C_(udp_truncated, 0, "Received datagrams larger than udp_buffer_size."),
	C_(udp_open, 1, "UDP sockets open."),
	C_(handoffs, 0, "Connections the acceptor passed to a member."),
	C_(handoff_errors, 0, "Acceptor hand-offs that failed."),
	C_(udp_send_errors, 0, "Datagrams the kernel refused to send."),
	C_(send_heap_bytes, 1, "Bytes of the heap send chunks."),
	C_(slab_waits, 0, "Sends that stopped at a full slab."),
	C_(close_resets, 0, "Graceful closes reset after close_timeout without send progress."),
	C_(tls_handshakes, 0, "TLS handshakes completed."),
	C_(tls_failures, 0, "TLS handshakes failed or timed out, and records refused after one."),
	C_(procs_running, 1, "Processes ringline.exec started and not yet reaped."),
	C_(procs_started, 0, "Processes ringline.exec started."),
	C_(nvme_inflight, 1, "NVMe passthrough commands the kernel holds."),
	C_(fs_ops, 0, "File operations completed through the ring."),
	C_(fs_pool_ops, 0, "File operations run by the fallback thread pool."),
	C_(fs_inflight, 1, "File operations not yet completed."),
	C_(sendfile_pipes, 1, "Pipes held for sendfile (in use and cached)."),
	C_(sendfile_fills, 0, "Sendfile splices file to pipe run by the ring (bytes not in the page cache)."),
};
#undef C_
/* every counter of struct rl_metrics has a row (all are uint64_t) */
_Static_assert(sizeof(core_metrics) / sizeof(core_metrics[0]) ==
	       sizeof(struct rl_metrics) / sizeof(uint64_t),
	       "a counter of struct rl_metrics has no row in core_metrics");

/* What a scrape sees of the workers: a copy per slot (the last one seen
 * for a worker that has ended, so its counters do not go back; its gauges
 * count as 0: live says whether a worker runs in the slot now). */
struct sample {
	int live;
	struct rl_metrics m;
	struct rl_latency lat;
	struct rl_host_stats st;
	uint64_t stalls, drops;
};

static struct sample *samples;


void host_metrics_worker_ending(int id, struct rl_worker *w)
{
	if (!finals || id < 0 || id >= host_slots())
		return;
	pthread_mutex_lock(&finals_lock);
	rl_worker_metrics_read(w, &finals[id].m);
	finals[id].lat = *rl_worker_latency(w);
	finals[id].valid = 1;
	pthread_mutex_unlock(&finals_lock);
}

static void take_samples(void)
{
	for (int i = 0; i < host_slots(); i++) {
		struct sample *s = &samples[i];
		struct rl_host_watch *wd = rl_host_watch(i);

		s->live = host_worker_sample(i, &s->m, &s->lat) == 0;
		if (!s->live) {
			/* ended before this scrape (maybe before any): its last values */
			pthread_mutex_lock(&finals_lock);
			if (finals[i].valid) {
				s->m = finals[i].m;
				s->lat = finals[i].lat;
			}
			pthread_mutex_unlock(&finals_lock);
		}
		s->st = stats[i];
		s->stalls = wd ? wd->fired : 0;
		s->drops = host_metrics_log_drops(i);
	}
}

static uint64_t u64_at(const struct sample *s, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)&s->m + off, sizeof(v));
	return v;
}

static void put_u64_family(struct buf *b, const char *base, int gauge, const char *help,
			   uint64_t (*get)(const struct sample *, const void *), const void *arg)
{
	char name[128];
	uint64_t total = 0;

	snprintf(name, sizeof(name), "ringline_%s%s", base, gauge ? "" : "_total");
	put_help(b, name, help, gauge ? "gauge" : "counter");
	for (int i = 0; i < opts.workers; i++) {
		uint64_t v = 0;

		/* the worker's slots: a gauge only of a running worker */
		for (int s = i; s < host_slots(); s += opts.workers)
			if (!gauge || samples[s].live)
				v += get(&samples[s], arg);
		total += v;
		put(b, "%s{worker=\"%d\"} %llu\n", name, i, (unsigned long long)v);
	}
	put(b, "%s %llu\n", name, (unsigned long long)total);
}

static uint64_t get_core(const struct sample *s, const void *arg)
{
	return u64_at(s, ((const struct core_metric *)arg)->off);
}

static uint64_t get_stalls(const struct sample *s, const void *arg)
{
	(void)arg;
	return s->stalls;
}

static uint64_t get_drops(const struct sample *s, const void *arg)
{
	(void)arg;
	return s->drops;
}

static uint64_t get_stat(const struct sample *s, const void *arg)
{
	double v;

	memcpy(&v, (const char *)&s->st + (size_t)(uintptr_t)arg, sizeof(v));
	return v > 0 ? (uint64_t)v : 0;
}

static void put_core_hist(struct buf *b, const char *name, const char *help, size_t off)
{
	struct rl_hist total;

	memset(&total, 0, sizeof(total));
	put_help(b, name, help, "histogram");
	for (int i = 0; i < opts.workers; i++) {
		struct rl_hist h;
		char lbl[32];
		uint64_t cum = 0;

		memset(&h, 0, sizeof(h));
		for (int s = i; s < host_slots(); s += opts.workers) {
			struct rl_hist one;

			memcpy(&one, (const char *)&samples[s].lat + off, sizeof(one));
			for (int k = 0; k < RL_HIST_BUCKETS; k++)
				h.buckets[k] += one.buckets[k];
			h.sum_ns += one.sum_ns;
		}
		for (int k = 0; k < RL_HIST_BUCKETS; k++)
			total.buckets[k] += h.buckets[k];
		total.sum_ns += h.sum_ns;
		snprintf(lbl, sizeof(lbl), "worker=\"%d\",", i);
		for (int k = 0; k < RL_HIST_BUCKETS - 1; k++) {
			cum += h.buckets[k];
			put(b, "%s_bucket{%sle=\"%.9g\"} %llu\n", name, lbl,
			    (double)(1ull << (k + RL_HIST_SHIFT)) / 1e9, (unsigned long long)cum);
		}
		cum += h.buckets[RL_HIST_BUCKETS - 1];
		put(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, lbl, (unsigned long long)cum);
		put(b, "%s_sum{worker=\"%d\"} %.9g\n", name, i, (double)h.sum_ns / 1e9);
		put(b, "%s_count{worker=\"%d\"} %llu\n", name, i, (unsigned long long)cum);
	}
	{
		uint64_t cum = 0;

		for (int k = 0; k < RL_HIST_BUCKETS - 1; k++) {
			cum += total.buckets[k];
			put(b, "%s_bucket{le=\"%.9g\"} %llu\n", name,
			    (double)(1ull << (k + RL_HIST_SHIFT)) / 1e9, (unsigned long long)cum);
		}
		cum += total.buckets[RL_HIST_BUCKETS - 1];
		put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
		put(b, "%s_sum %.9g\n", name, (double)total.sum_ns / 1e9);
		put(b, "%s_count %llu\n", name, (unsigned long long)cum);
	}
}

/* The shortest of %.15g..%.17g that reads back as v (0.1, not 0.10000000000000001). */
static void fmt_double(char *out, size_t cap, double v)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, cap, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* One line of a script's series: labels = the series' own plus the worker's. */
static void put_sample(struct buf *b, const char *name, const char *suffix, const char *labels,
		       int worker, const char *extra, double v)
{
	int any = labels[0] || worker >= 0 || extra;

	put(b, "%s%s", name, suffix);
	if (any) {
		put(b, "{%s", labels);
		if (worker >= 0)
			put(b, "%sworker=\"%d\"", labels[0] ? "," : "", worker);
		if (extra)
			put(b, "%s%s", labels[0] || worker >= 0 ? "," : "", extra);
		put(b, "}");
	}
	char num[40];

	fmt_double(num, sizeof(num), v);
	put(b, " %s\n", num);
}

static void put_script_family(struct buf *b, const struct family *f)
{
	char name[300];
	size_t n = cell_len(f);
	double *sum = calloc(n, sizeof(double)), *one = calloc(n, sizeof(double));

	if (!sum || !one) {
		free(sum);
		free(one);
		b->oom = 1;
		return;
	}
	snprintf(name, sizeof(name), "%s", f->name);
	put_help(b, name, f->help, f->type == RL_HOST_METRIC_COUNTER ? "counter" :
		 f->type == RL_HOST_METRIC_GAUGE ? "gauge" : "histogram");
	for (const struct series *s = f->head; s; s = s->next) {
		memset(sum, 0, n * sizeof(double));
		for (int w = 0; w <= opts.workers; w++) {
			int wid = w < opts.workers ? w : -1;
			const double *c = sum;
			int any = 0;

			if (wid >= 0) {
				/* the worker's slots (a gauge only of a running worker) */
				memset(one, 0, n * sizeof(double));
				for (int sl = wid; sl < host_slots(); sl += opts.workers) {
					const double *cell = s->cells[sl];

					if (!cell || (f->type == RL_HOST_METRIC_GAUGE && !samples[sl].live))
						continue;
					any = 1;
					for (size_t k = 0; k < n; k++)
						one[k] += cell[k];
				}
				if (!any)
					continue;
				for (size_t k = 0; k < n; k++)
					sum[k] += one[k];
				c = one;
			}
			if (f->type != RL_HOST_METRIC_HISTOGRAM) {
				put_sample(b, name, "", s->labels, wid, NULL, c[0]);
				continue;
			}
			double cum = 0;
			char le[64], num[40];

			for (int k = 0; k < f->nbuckets; k++) {
				cum += c[k];
				fmt_double(num, sizeof(num), f->buckets[k]);
				snprintf(le, sizeof(le), "le=\"%s\"", num);
				put_sample(b, name, "_bucket", s->labels, wid, le, cum);
			}
			cum += c[f->nbuckets];
			put_sample(b, name, "_bucket", s->labels, wid, "le=\"+Inf\"", cum);
			put_sample(b, name, "_sum", s->labels, wid, NULL, c[f->nbuckets + 1]);
			put_sample(b, name, "_count", s->labels, wid, NULL, cum);
		}
	}
	free(one);
	free(sum);
}

#define STAT(f) ((const void *)(uintptr_t)offsetof(struct rl_host_stats, f))

static void render(struct buf *b)
{
	take_samples();
	for (size_t i = 0; i < sizeof(core_metrics) / sizeof(core_metrics[0]); i++)
		put_u64_family(b, core_metrics[i].name, core_metrics[i].gauge, core_metrics[i].help,
			       get_core, &core_metrics[i]);
	put_u64_family(b, "tasks", 1, "Lua tasks alive.", get_stat, STAT(tasks));
	put_u64_family(b, "listeners", 1, "Listeners open.", get_stat, STAT(listeners));
	put_u64_family(b, "tasks_refused", 0, "Spawns and accepts refused at max_tasks.",
		       get_stat, STAT(tasks_refused));
	put_u64_family(b, "conns_refused_per_ip", 0,
		       "Accepts reset by max_connections_per_ip.", get_stat, STAT(conns_refused_per_ip));
	put_u64_family(b, "conns_shed", 0, "Idle connections reset by shed_idle to make room.",
		       get_stat, STAT(conns_shed));
	put_u64_family(b, "watchdog_stalls", 0, "Loop stalls the watchdog reported.",
		       get_stalls, NULL);
	put_u64_family(b, "log_dropped", 0, "Log lines dropped because the log buffer was full.",
		       get_drops, NULL);
	put_core_hist(b, "ringline_loop_seconds",
		      "Time a loop iteration worked: from one poll's return to the next poll.",
		      offsetof(struct rl_latency, loop));
	put_core_hist(b, "ringline_accept_first_byte_seconds",
		      "Time from accepting a connection to its first received bytes.",
		      offsetof(struct rl_latency, first_byte));
	put_core_hist(b, "ringline_guard_hold_seconds",
		      "Time from a zero-copy send's submission to the notification releasing its guards.",
		      offsetof(struct rl_latency, guard_hold));
	pthread_mutex_lock(&fam_lock);
	for (int i = 0; i < nfamilies; i++)
		put_script_family(b, families[i]);
	pthread_mutex_unlock(&fam_lock);
}

char *host_metrics_text(size_t *len)
{
	struct buf b = { 0 };

	render(&b);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

int host_metrics_prepare(void)
{
	if (!samples)
		samples = calloc((size_t)host_slots(), sizeof(*samples));
	if (!samples || (!stats && host_metrics_init() < 0))
		return -ENOMEM;
	return 0;
}
