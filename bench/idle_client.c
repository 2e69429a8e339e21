/* SPDX-License-Identifier: MIT */
/*
 * idle_client - open N TCP connections to an echo server, make each do one
 * line round trip (so its handler ran and went back to waiting), hold them
 * idle until stdin closes (or says anything), then close them all.
 *
 *   idle_client HOST PORT N [NSRC [FIRST]]
 *
 * NSRC source addresses 127.0.0.FIRST .. 127.0.0.(FIRST+NSRC-1) (FIRST
 * default 1) share the connections
 * (one address has ~28k ephemeral ports towards one server port); default
 * enough for N. Prints "ready N" once every connection echoed its line,
 * "closed N" after closing. Batches of BATCH connections in flight at once
 * keep the server's accept queue within its backlog.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 512
#define PER_SRC 20000

static void die(const char *what, int n)
{
	fprintf(stderr, "idle_client: %s (connection %d): %s\n", what, n, strerror(errno));
	exit(1);
}

/* Wait until every fd of the batch has `events`; returns when all did. */
static void wait_all(int *fds, int n, short events, int base)
{
	struct pollfd p[BATCH];
	int left = n;
	for (int i = 0; i < n; i++) {
		p[i].fd = fds[i];
		p[i].events = events;
	}
	while (left > 0) {
		int r = poll(p, (nfds_t)n, 10000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("poll timed out", base);
		for (int i = 0; i < n; i++) {
			if (p[i].fd >= 0 && p[i].revents) {
				if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL))
					die("connection failed", base + i);
				p[i].fd = -p[i].fd - 1; /* done: poll ignores negative fds */
				left--;
			}
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: idle_client HOST PORT N [NSRC [FIRST]]\n");
		return 2;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]);
	int n = atoi(argv[3]);
	int nsrc = argc > 4 ? atoi(argv[4]) : (n + PER_SRC - 1) / PER_SRC;
	if (nsrc < 1)
		nsrc = 1;
	uint32_t first = argc > 5 ? (uint32_t)atoi(argv[5]) : 1;
	int *fds = calloc((size_t)n, sizeof(int));
	if (!fds)
		die("calloc", 0);
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
		fprintf(stderr, "idle_client: bad host %s\n", host);
		return 2;
	}
	for (int b = 0; b < n; b += BATCH) {
		int m = n - b < BATCH ? n - b : BATCH;
		for (int i = 0; i < m; i++) {
			int k = b + i;
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fd < 0)
				die("socket", k);
			int one = 1;
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
			struct sockaddr_in src = { .sin_family = AF_INET };
			src.sin_addr.s_addr = htonl(0x7f000000u + first + (uint32_t)(k % nsrc));
			if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
				die("bind", k);
			if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
				die("connect", k);
			fds[k] = fd;
		}
		wait_all(fds + b, m, POLLOUT, b);
		/* one line each; the echo back says the handler ran */
		for (int i = 0; i < m; i++)
			if (write(fds[b + i], "ping\n", 5) != 5)
				die("write", b + i);
		for (int i = 0; i < m; i++) {
			char buf[8];
			int got = 0;
			while (got < 5) {
				struct pollfd p = { .fd = fds[b + i], .events = POLLIN };
				if (poll(&p, 1, 10000) <= 0)
					die("no echo", b + i);
				ssize_t r = read(fds[b + i], buf + got, sizeof(buf) - (size_t)got);
				if (r <= 0)
					die("read", b + i);
				got += (int)r;
			}
		}
	}
	printf("ready %d\n", n);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) < 0 && errno == EINTR)
		;
	for (int i = 0; i < n; i++)
		close(fds[i]);
	printf("closed %d\n", n);
	fflush(stdout);
	return 0;
}
