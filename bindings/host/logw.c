/* SPDX-License-Identifier: MIT */
/*
 * logw.c - where log lines go: --log-file PATH (else stderr), written by a
 * host thread so that logging never blocks a worker.
 *
 * Each worker slot (host_slots) has a bounded byte ring (RINGLINE_LOG_BUFFER bytes, default
 * 256 KiB) it alone appends whole lines to (rl_host_log, from ringline.log);
 * the writer thread alone takes from it and writes to the log descriptor.
 * A line that does not fit is dropped and counted
 * (ringline_log_dropped_total of that worker): a slow disk or a full pipe
 * stalls the writer, never a worker. Lines of the other threads (main,
 * acceptor, watchdog, metrics: host_log) go through one more ring under a
 * mutex. The writer sleeps on an eventfd; a producer writes it only when the
 * writer said it sleeps (a flag checked after the append), so a busy log
 * costs no syscall per line.
 *
 * SIGUSR1 (the main thread's signalfd) asks the writer to reopen the file:
 * once per signal for the process (logrotate's convention: rename, then
 * USR1; the next line goes to a new file at PATH).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "rl_host.h"

#define RING_DEFAULT (256u << 10)
#define RING_MIN 256u
#define RING_MAX (64u << 20)
#define LINE_MAX_HOST 1024

struct ring {
	char *buf;
	uint32_t cap;            /* power of two */
	uint64_t head;           /* written by the producer (release) */
	uint64_t tail;           /* written by the writer (release) */
};

static struct ring *rings;       /* [workers + 1]: the last one is the host's */
static int nrings;
static pthread_mutex_t host_ring_lock = PTHREAD_MUTEX_INITIALIZER;
static int wake_fd = -1;
static int log_fd = STDERR_FILENO;
static int own_fd;               /* log_fd is a file we opened */
static int sleeping, stop_req, reopen_req;
static pthread_t writer;
static int writer_up;
static uint64_t host_drops;

/* A host thread that never takes a signal: they reach the process only
 * through the main thread's signalfd (a thread started before the workers
 * block them would otherwise get SIGTERM's default action). */
int host_thread_create(pthread_t *t, void *(*fn)(void *))
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static const char *const level_names[] = { "error", "warn", "notice", "info", "debug" };

int host_log_threshold = LOG_INFO;

/* A level name (any case) or 4..8; -1 otherwise. */
int host_log_parse_level(const char *s)
{
	static const char *names[] = { "ERR", "WARN", "NOTICE", "INFO", "DEBUG" };
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	v = strtol(s, &end, 10);
	if (!*end)
		return v >= LOG_ERR && v <= LOG_DEBUG ? (int)v : -1;
	for (int i = 0; i < 5; i++)
		if (strcasecmp(s, names[i]) == 0)
			return LOG_ERR + i;
	if (strcasecmp(s, "error") == 0)
		return LOG_ERR;
	return -1;
}

static uint32_t ring_size(void)
{
	const char *env = getenv("RINGLINE_LOG_BUFFER");   /* a test hook, and a knob */
	unsigned long v;
	uint32_t cap = RING_MIN;

	if (!env || !*env)
		return RING_DEFAULT;
	v = strtoul(env, NULL, 10);
	if (v < RING_MIN)
		v = RING_MIN;
	if (v > RING_MAX)
		v = RING_MAX;
	while (cap < v)
		cap <<= 1;
	return cap;
}

static void wake_writer(void)
{
	uint64_t one = 1;

	/* after the append (seq_cst): either the writer sees the line when it
	 * re-checks, or we see its flag and wake it */
	if (__atomic_load_n(&sleeping, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&sleeping, 0, __ATOMIC_SEQ_CST)) {
		if (write(wake_fd, &one, sizeof(one)) < 0) {
			/* the eventfd counter cannot overflow at one write per sleep */
		}
	}
}

/* Append a whole line or nothing; 0 or -ENOBUFS. One producer per ring. */
static int ring_put(struct ring *r, const char *p, size_t n)
{
	uint64_t head = r->head;
	uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
	uint32_t off, first;

	if (n > r->cap - (head - tail))
		return -ENOBUFS;
	off = (uint32_t)(head & (r->cap - 1));
	first = r->cap - off;
	if (first > n)
		first = (uint32_t)n;
	memcpy(r->buf + off, p, first);
	memcpy(r->buf, p + first, n - first);
	__atomic_store_n(&r->head, head + n, __ATOMIC_RELEASE);
	return 0;
}

RL_HOST_API int rl_host_log(int id, const char *line, size_t len)
{
	if (!rings || id < 0 || id >= nrings - 1 || (!line && len))
		return -EINVAL;
	if (ring_put(&rings[id], line, len) < 0) {
		host_metrics_log_dropped(id);
		return -ENOBUFS;
	}
	wake_writer();
	return 0;
}

RL_HOST_API int rl_host_log_config(char *format, size_t cap)
{
	snprintf(format, cap, "%s", opts.log_json ? "json" : "text");
	return host_log_threshold;
}

/* The writer: everything buffered to the descriptor. */
static int drain(void)
{
	int moved = 0;

	for (int i = 0; i < nrings; i++) {
		struct ring *r = &rings[i];
		uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		uint64_t tail = r->tail;

		while (tail != head) {
			uint32_t off = (uint32_t)(tail & (r->cap - 1));
			uint64_t n = head - tail;
			struct iovec iov[2];
			int niov = 1;
			ssize_t w;

			iov[0].iov_base = r->buf + off;
			iov[0].iov_len = r->cap - off < n ? r->cap - off : (size_t)n;
			if (iov[0].iov_len < n) {
				iov[1].iov_base = r->buf;
				iov[1].iov_len = (size_t)n - iov[0].iov_len;
				niov = 2;
			}
			w = writev(log_fd, iov, niov);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				w = (ssize_t)n;   /* a broken log: lose the bytes, never spin */
			tail += (uint64_t)w;
			__atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
			moved = 1;
		}
	}
	return moved;
}

static void reopen(void)
{
	int fd;

	if (!opts.log_file)
		return;
	fd = open(opts.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		char msg[512];
		int n = snprintf(msg, sizeof(msg), "%s: cannot reopen the log file %s: %s; "
				 "writing to the old one\n", progname, opts.log_file, strerror(errno));

		if (write(STDERR_FILENO, msg, (size_t)n) < 0) {
			/* nothing more to tell */
		}
		return;
	}
	/* the same descriptor number now names the new file (dup3 swaps it
	 * atomically and keeps it close-on-exec): a thread writing an error
	 * line at this moment writes to one file or the other, never to a
	 * closed descriptor */
	if (own_fd && dup3(fd, log_fd, O_CLOEXEC) >= 0) {
		close(fd);
		return;
	}
	log_fd = fd;
	own_fd = 1;
}

static void *writer_main(void *arg)
{
	struct pollfd pf = { .fd = wake_fd, .events = POLLIN };

	(void)arg;
	for (;;) {
		uint64_t v;

		if (__atomic_exchange_n(&reopen_req, 0, __ATOMIC_ACQ_REL)) {
			drain();   /* what was logged before the signal goes to the old file */
			reopen();
		}
		drain();
		if (__atomic_load_n(&stop_req, __ATOMIC_ACQUIRE)) {
			drain();
			break;
		}
		__atomic_store_n(&sleeping, 1, __ATOMIC_SEQ_CST);
		if (drain() || __atomic_load_n(&reopen_req, __ATOMIC_SEQ_CST) ||
		    __atomic_load_n(&stop_req, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&sleeping, 0, __ATOMIC_SEQ_CST);
			continue;
		}
		/* the timeout is a backstop only: every append checks the flag */
		poll(&pf, 1, 1000);
		__atomic_store_n(&sleeping, 0, __ATOMIC_SEQ_CST);
		if (read(wake_fd, &v, sizeof(v)) < 0) {
			/* EAGAIN: woken by the timeout */
		}
	}
	return NULL;
}

int host_log_start(char *msg, size_t msglen)
{
	uint32_t cap = ring_size();

	if (opts.log_file) {
		log_fd = open(opts.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (log_fd < 0) {
			snprintf(msg, msglen, "cannot open %s: %s", opts.log_file, strerror(errno));
			log_fd = STDERR_FILENO;
			return -1;
		}
		own_fd = 1;
	}
	nrings = host_slots() + 1;
	rings = calloc((size_t)nrings, sizeof(*rings));
	wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!rings || wake_fd < 0) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	for (int i = 0; i < nrings; i++) {
		rings[i].cap = cap;
		rings[i].buf = malloc(cap);
		if (!rings[i].buf) {
			snprintf(msg, msglen, "out of memory for the log buffers");
			return -1;
		}
	}
	if (host_thread_create(&writer, writer_main) != 0) {
		snprintf(msg, msglen, "cannot start the log writer thread");
		return -1;
	}
	pthread_setname_np(writer, "ringline-log");
	writer_up = 1;
	/* os.exit in a script ends the process from a worker: what it logged
	 * before still reaches the log */
	atexit(host_log_stop);
	return 0;
}

void host_log_reopen(void)
{
	uint64_t one = 1;

	if (!writer_up)
		return;
	__atomic_store_n(&reopen_req, 1, __ATOMIC_SEQ_CST);
	if (write(wake_fd, &one, sizeof(one)) < 0) {
		/* the backstop timeout picks it up */
	}
}

/* After the workers: what is buffered reaches the log, within a bound (a
 * log on a pipe nobody reads must not hold the exit). */
void host_log_stop(void)
{
	uint64_t one = 1;
	struct timespec ts;

	static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;

	/* one joiner: main's return and exit() from workers may race here */
	pthread_mutex_lock(&stop_lock);
	if (writer_up) {
		__atomic_store_n(&stop_req, 1, __ATOMIC_SEQ_CST);
		if (write(wake_fd, &one, sizeof(one)) < 0) {
			/* the backstop timeout picks it up */
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 2;
		if (pthread_timedjoin_np(writer, NULL, &ts) == 0)
			writer_up = 0;
	}
	pthread_mutex_unlock(&stop_lock);
}

/* ---- the host's own lines ---- */

static void json_string(char *out, size_t cap, size_t *n, const char *s)
{
	for (; *s && *n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[(*n)++] = '\\';
			out[(*n)++] = (char)c;
		} else if (c < 0x20) {
			*n += (size_t)snprintf(out + *n, cap - *n, c == '\n' ? "\\n" : "\\u%04x", c);
		} else {
			out[(*n)++] = (char)c;
		}
	}
}

void host_log_v(int level, int id, const char *fmt, va_list ap)
{
	char text[LINE_MAX_HOST], line[LINE_MAX_HOST * 2 + 256];
	const char *who = id >= 0 ? "worker" : id == -1 ? "acceptor" : "host";
	size_t n = 0;
	struct timespec ts;
	struct tm tm;

	if (level > host_log_threshold)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (opts.log_json) {
		char when[32];

		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", gmtime_r(&ts.tv_sec, &tm));
		n = (size_t)snprintf(line, sizeof(line),
				     "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"worker\":%d,\"msg\":\"",
				     when, ts.tv_nsec / 1000000, level_names[level - LOG_ERR], id);
		json_string(line, sizeof(line), &n, text);
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"caller\":\"ringline-lua %s\"}\n",
				      who);
	} else {
		char when[32];

		strftime(when, sizeof(when), "%Y/%m/%d %H:%M:%S", localtime_r(&ts.tv_sec, &tm));
		if (id >= 0)
			n = (size_t)snprintf(line, sizeof(line), "%s [%s] ringline worker %d: %s\n",
					     when, level_names[level - LOG_ERR], id, text);
		else
			n = (size_t)snprintf(line, sizeof(line), "%s [%s] ringline %s: %s\n", when,
					     level_names[level - LOG_ERR], who, text);
	}
	if (n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* The host's errors are written at once, by this thread: the process
	 * may end right after one (the watchdog's abort). They are rare and
	 * never from a worker's loop. */
	if (!writer_up || level <= LOG_ERR) {
		if (write(log_fd, line, n) < 0) {
			/* nowhere else to say it */
		}
		return;
	}
	pthread_mutex_lock(&host_ring_lock);
	if (ring_put(&rings[nrings - 1], line, n) < 0)
		host_drops++;
	pthread_mutex_unlock(&host_ring_lock);
	wake_writer();
}
