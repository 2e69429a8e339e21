/* SPDX-License-Identifier: MIT */
/*
 * metrics_http.c - the metrics endpoint (--metrics ADDR,
 * ringline.configure{ metrics = ADDR }): a thread of its own serves
 * HTTP/1.0-style requests one at a time on a blocking socket: GET /metrics
 * (the text metrics.c renders) and GET /healthz (200, or 503 once the
 * process drains). A scraper that stalls holds it IO_TIMEOUT_S at most.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

#define IO_TIMEOUT_S 2      /* a scraper that stalls holds the endpoint this long */
#define REQ_MAX 4096

volatile int host_draining;

static int listen_fd = -1;
static int stop_fd = -1;
static pthread_t thread;
static int started;
static char bound[128];          /* the address as given, for a second configure */
static char shown_addr[192];     /* the address bound (the port chosen for :0) */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int head_only;   /* the request being answered is a HEAD */

static void respond(int fd, int code, const char *reason, const char *ctype, const char *body,
		    size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", code, reason, ctype, len);

	if (write_all(fd, head, (size_t)n) == 0 && len && !head_only)
		write_all(fd, body, len);
}

static void serve_one(int fd)
{
	char req[REQ_MAX + 1];
	size_t got = 0;
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	char method[8], path[256];

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < REQ_MAX) {
		ssize_t r = recv(fd, req + got, REQ_MAX - got, 0);

		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return;
		}
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	head_only = 0;
	if (!strstr(req, "\r\n\r\n") && !strstr(req, "\n\n")) {
		respond(fd, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10);
		return;
	}
	if (sscanf(req, "%7s %255s", method, path) != 2) {
		respond(fd, 400, "Bad Request", "text/plain", "bad request\n", 12);
		return;
	}
	{
		char *q = strchr(path, '?');   /* Prometheus may add parameters */

		if (q)
			*q = '\0';
	}
	head_only = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head_only) {
		respond(fd, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		size_t len = 0;
		char *text = host_metrics_text(&len);

		if (!text)
			respond(fd, 500, "Internal Server Error", "text/plain", "out of memory\n", 14);
		else
			respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
		free(text);
	} else if (strcmp(path, "/healthz") == 0) {
		if (host_draining)
			respond(fd, 503, "Service Unavailable", "text/plain", "draining\n", 9);
		else
			respond(fd, 200, "OK", "text/plain", "ok\n", 3);
	} else {
		respond(fd, 404, "Not Found", "text/plain", "not found\n", 10);
	}
}

/* Close after the peer has read the answer: a request we did not read to
 * its end (too large) would otherwise turn the close into a reset that
 * can destroy the answer in flight. Bounded by the I/O timeout and 64 KiB. */
static void linger_close(int fd)
{
	char sink[4096];
	size_t total = 0;

	shutdown(fd, SHUT_WR);
	while (total < (64u << 10)) {
		ssize_t r = recv(fd, sink, sizeof(sink), 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		total += (size_t)r;
	}
	close(fd);
}

static void *metrics_main(void *arg)
{
	struct pollfd pf[2] = { { .fd = listen_fd, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };

	(void)arg;
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (pf[0].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (fd < 0)
				continue;
			serve_one(fd);
			linger_close(fd);
		}
	}
	return NULL;
}

/* "host:port", "[v6]:port", ":port" or "port" into a bound listening socket. */
static int bind_addr(const char *addr, char *msg, size_t msglen, char *shown, size_t shownlen)
{
	char host[128] = "", port[16];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = { 0 }, *res = NULL;
	int fd = -1, rc, one = 1;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host))
			return host_metrics_fail(msg, msglen, "'%s': expected host:port, [v6]:port or port", addr);
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		colon = end + 1;
	} else if (colon) {
		if ((size_t)(colon - addr) >= sizeof(host))
			return host_metrics_fail(msg, msglen, "'%s': host too long", addr);
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
	}
	{
		const char *p = colon ? colon + 1 : addr;
		char *end;
		long v = strtol(p, &end, 10);

		if (!*p || *end || v < 0 || v > 65535)
			return host_metrics_fail(msg, msglen, "'%s': expected host:port, [v6]:port or port", addr);
		snprintf(port, sizeof(port), "%ld", v);
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0)
		return host_metrics_fail(msg, msglen, "'%s': %s", addr, gai_strerror(rc));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		host_metrics_fail(msg, msglen, "'%s': %s", addr, strerror(e));
		return -e;
	}
	freeaddrinfo(res);
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char h[INET6_ADDRSTRLEN] = "?";
		int p = 0;

		getsockname(fd, (struct sockaddr *)&ss, &sl);
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof(h));
			p = ntohs(s6->sin6_port);
			snprintf(shown, shownlen, "[%s]:%d", h, p);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, h, sizeof(h));
			p = ntohs(s4->sin_port);
			snprintf(shown, shownlen, "%s:%d", h, p);
		}
	}
	return fd;
}

RL_HOST_API int rl_host_metrics_listen(const char *addr, char *msg, size_t msglen)
{
	char shown[192];
	int rc;

	if (!addr || !*addr)
		return host_metrics_fail(msg, msglen, "expected an address (host:port, [v6]:port or port)");
	if (strlen(addr) >= sizeof(bound))
		return host_metrics_fail(msg, msglen, "address too long");
	pthread_mutex_lock(&start_lock);
	if (started) {
		/* every worker runs the script: the same address again is no change */
		rc = strcmp(bound, addr) == 0 ? 0 :
		     host_metrics_fail(msg, msglen, "already serving metrics on %s", bound);
		pthread_mutex_unlock(&start_lock);
		return rc;
	}
	if (host_metrics_prepare() < 0) {
		pthread_mutex_unlock(&start_lock);
		return host_metrics_fail(msg, msglen, "out of memory");
	}
	/* a binary upgrade passes the socket on (listeners.c): the address
	 * is the old process's until it exits */
	listen_fd = host_listeners_take_own(addr);
	if (listen_fd >= 0)
		snprintf(shown, sizeof(shown), "%s", addr);
	else
		listen_fd = bind_addr(addr, msg, msglen, shown, sizeof(shown));
	if (listen_fd >= 0)
		host_listeners_keep_own(addr, listen_fd);
	if (listen_fd < 0) {
		rc = listen_fd;
		listen_fd = -1;
		pthread_mutex_unlock(&start_lock);
		return rc;
	}
	stop_fd = eventfd(0, EFD_CLOEXEC);
	rc = stop_fd < 0 ? errno : host_thread_create(&thread, metrics_main);
	if (rc != 0) {
		close(listen_fd);
		listen_fd = -1;
		if (stop_fd >= 0)
			close(stop_fd);
		stop_fd = -1;
		pthread_mutex_unlock(&start_lock);
		return host_metrics_fail(msg, msglen, "cannot start the metrics thread: %s", strerror(rc));
	}
	pthread_setname_np(thread, "ringline-metric");
	snprintf(bound, sizeof(bound), "%s", addr);
	snprintf(shown_addr, sizeof(shown_addr), "%s", shown);
	started = 1;
	pthread_mutex_unlock(&start_lock);
	host_log(LOG_NOTICE, -2, "metrics on http://%s/metrics", shown);
	return 0;
}

RL_HOST_API int rl_host_metrics_address(char *out, size_t cap)
{
	int n = 0;

	pthread_mutex_lock(&start_lock);
	if (started && out && cap)
		n = snprintf(out, cap, "%s", shown_addr);
	pthread_mutex_unlock(&start_lock);
	return n < 0 || (size_t)n >= cap ? 0 : n;
}

void host_metrics_stop(void)
{
	uint64_t one = 1;

	pthread_mutex_lock(&start_lock);
	if (started) {
		if (write(stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(thread, NULL);
		close(listen_fd);
		close(stop_fd);
		started = 0;
	}
	pthread_mutex_unlock(&start_lock);
}
