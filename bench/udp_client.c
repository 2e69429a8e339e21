/* udp_client.c: UDP echo load generator for bench/udp.sh.
 *
 *   udp_client [-H host] [-p port] [-s size] [-c sockets] [-w window]
 *              [-d seconds] [-t timeout_ms] [-P tries]
 *
 * Defaults come from the environment (BENCH_HOST, PORT, SIZE, SOCKETS,
 * WINDOW, DURATION, TIMEOUT_MS), then 127.0.0.1, 8082, 64 B, 4 sockets,
 * 16 datagrams outstanding per socket, 5 s, 200 ms. Each socket is
 * connected to the server from its own ephemeral port, so the server sees
 * several peers. One thread polls all sockets; an echo frees its window
 * slot, which is refilled at once with a new sequence number, and a slot
 * unanswered for the timeout counts as lost and is refilled too, so one
 * drop never stalls a socket.
 *
 * Every datagram carries a header (magic, socket, slot, sequence number)
 * and a body fixed per socket and slot; an echo must match the slot's last
 * datagram byte for byte. An echo of a datagram already counted lost is
 * "late"; anything else that does not match is an error.
 *
 * Prints one line at the end:
 *   dgrams_per_s=N ok=N sent=N lost=N late=N errors=N refused=N elapsed_s=X
 * -P tries: readiness probe instead: one socket sends a datagram up to
 * `tries` times, 50 ms apart, and exits 0 at the first correct echo.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x726c7564u /* "rlud" */
#define HDR 16            /* magic u32, socket u16, slot u16, seq u64 */
#define SCAN_NS 10000000  /* look for timed-out slots every 10 ms */

struct slot {
	uint64_t seq;     /* sequence number of the datagram in flight */
	uint64_t sent_ns; /* when it was sent */
	unsigned char *buf; /* its bytes: header + the slot's fixed body */
};

struct sock {
	int fd;
	struct slot *slots;
};

static struct {
	const char *host, *port;
	size_t size;
	int nsock, window, timeout_ms, probe;
	double duration;
} opt;

static uint64_t next_seq = 1;
static uint64_t n_ok, n_sent, n_lost, n_late, n_err, n_refused;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int open_socket(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai;
	int rc = getaddrinfo(opt.host, opt.port, &hints, &ai);
	if (rc) {
		fprintf(stderr, "udp_client: %s:%s: %s\n", opt.host, opt.port, gai_strerror(rc));
		exit(1);
	}
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	/* connect: the kernel picks a source port per socket, send() needs no
	 * address, and only the server's datagrams come back */
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	freeaddrinfo(ai);
	return fd;
}

/* The header is rewritten for each send; the body stays as made here. */
static void fill_body(unsigned char *buf, int s, int k)
{
	for (size_t i = HDR; i < opt.size; i++)
		buf[i] = (unsigned char)(s * 131 + k * 17 + i);
}

static void stamp(unsigned char *buf, int s, int k, uint64_t seq)
{
	uint32_t magic = MAGIC;
	uint16_t s16 = (uint16_t)s, k16 = (uint16_t)k;
	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &s16, 2);
	memcpy(buf + 6, &k16, 2);
	memcpy(buf + 8, &seq, 8);
}

/* Send the slots listed in ks[0..n) of socket s with fresh sequence
 * numbers. A datagram the kernel refuses stays in its slot as if sent: it
 * times out and counts as lost, which is what the server saw of it. */
static void send_slots(struct sock *so, int s, const int *ks, int n, uint64_t now)
{
	struct mmsghdr msgs[n];
	struct iovec iov[n];
	for (int i = 0; i < n; i++) {
		struct slot *sl = &so->slots[ks[i]];
		sl->seq = next_seq++;
		sl->sent_ns = now;
		stamp(sl->buf, s, ks[i], sl->seq);
		iov[i] = (struct iovec){ sl->buf, opt.size };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	int done = 0;
	while (done < n) {
		int r = sendmmsg(so->fd, msgs + done, (unsigned)(n - done), 0);
		if (r > 0) {
			done += r;
			continue;
		}
		if (r < 0 && (errno == ECONNREFUSED || errno == ECONNRESET)) {
			n_refused++; /* an earlier ICMP error; the next try may go */
			continue;
		}
		break; /* EAGAIN/ENOBUFS: the rest will time out */
	}
	n_sent += (uint64_t)done;
}

/* Check one echo on socket s; returns the slot to refill, or -1. */
static int check_echo(struct sock *so, int s, const unsigned char *p, size_t len, int flags)
{
	uint32_t magic;
	uint16_t s16, k16;
	uint64_t seq;
	if (len < HDR || (flags & MSG_TRUNC)) {
		n_err++;
		return -1;
	}
	memcpy(&magic, p, 4);
	memcpy(&s16, p + 4, 2);
	memcpy(&k16, p + 6, 2);
	memcpy(&seq, p + 8, 8);
	if (magic != MAGIC || s16 != s || k16 >= opt.window || len != opt.size) {
		n_err++;
		return -1;
	}
	struct slot *sl = &so->slots[k16];
	if (seq < sl->seq) {
		n_late++; /* its slot already timed out and was refilled */
		return -1;
	}
	if (seq != sl->seq || memcmp(p, sl->buf, opt.size) != 0) {
		n_err++;
		return -1;
	}
	n_ok++;
	return k16;
}

/* Take every queued echo of socket s and refill the slots they free. */
static void drain(struct sock *so, int s, unsigned char *rbuf, size_t rcap)
{
	int w = opt.window;
	struct mmsghdr msgs[w];
	struct iovec iov[w];
	int refill[w];
	for (;;) {
		for (int i = 0; i < w; i++) {
			iov[i] = (struct iovec){ rbuf + (size_t)i * rcap, rcap };
			msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
		}
		int r = recvmmsg(so->fd, msgs, (unsigned)w, MSG_DONTWAIT, NULL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == ECONNREFUSED || errno == ECONNRESET || errno == EINTR) {
				n_refused += errno != EINTR;
				continue; /* the pending error is cleared; read on */
			}
			die("recvmmsg");
		}
		int n = 0;
		for (int i = 0; i < r; i++) {
			int k = check_echo(so, s, iov[i].iov_base, msgs[i].msg_len, msgs[i].msg_hdr.msg_flags);
			if (k >= 0)
				refill[n++] = k;
		}
		if (n)
			send_slots(so, s, refill, n, now_ns());
		if (r < w)
			return;
	}
}

/* Slots unanswered for the timeout: count them lost and send again. */
static void expire(struct sock *so, int s, uint64_t now)
{
	uint64_t limit = (uint64_t)opt.timeout_ms * 1000000u;
	int refill[opt.window], n = 0;
	for (int k = 0; k < opt.window; k++)
		if (now - so->slots[k].sent_ns >= limit)
			refill[n++] = k;
	n_lost += (uint64_t)n;
	if (n)
		send_slots(so, s, refill, n, now);
}

static int probe(void)
{
	struct sock so = { .fd = open_socket() };
	struct slot sl = { .buf = calloc(1, opt.size) };
	unsigned char *rbuf = malloc(opt.size + 1);
	if (!sl.buf || !rbuf)
		die("malloc");
	so.slots = &sl;
	opt.window = 1;
	fill_body(sl.buf, 0, 0);
	for (int t = 0; t < opt.probe; t++) {
		int k = 0;
		send_slots(&so, 0, &k, 1, now_ns());
		struct pollfd pfd = { so.fd, POLLIN, 0 };
		uint64_t until = now_ns() + 50000000u;
		for (uint64_t now; (now = now_ns()) < until;) {
			if (poll(&pfd, 1, (int)((until - now) / 1000000u) + 1) <= 0)
				continue;
			ssize_t r = recv(so.fd, rbuf, opt.size + 1, MSG_DONTWAIT);
			if (r < 0)
				break; /* refused: nobody listens yet; wait out the 50 ms */
			if (check_echo(&so, 0, rbuf, (size_t)r, 0) == 0)
				return 0;
		}
		uint64_t now = now_ns();
		if (now < until) {
			struct timespec ts = { 0, (long)(until - now) };
			nanosleep(&ts, NULL);
		}
	}
	return 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: udp_client [-H host] [-p port] [-s size] [-c sockets] [-w window]\n"
			"                  [-d seconds] [-t timeout_ms] [-P probe_tries]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	opt.host = env_or("BENCH_HOST", "127.0.0.1");
	opt.port = env_or("PORT", "8082");
	opt.size = strtoul(env_or("SIZE", "64"), NULL, 10);
	opt.nsock = atoi(env_or("SOCKETS", "4"));
	opt.window = atoi(env_or("WINDOW", "16"));
	opt.duration = atof(env_or("DURATION", "5"));
	opt.timeout_ms = atoi(env_or("TIMEOUT_MS", "200"));
	for (int c; (c = getopt(argc, argv, "H:p:s:c:w:d:t:P:")) != -1;) {
		switch (c) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = optarg; break;
		case 's': opt.size = strtoul(optarg, NULL, 10); break;
		case 'c': opt.nsock = atoi(optarg); break;
		case 'w': opt.window = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 't': opt.timeout_ms = atoi(optarg); break;
		case 'P': opt.probe = atoi(optarg); break;
		default: usage();
		}
	}
	/* the header must fit; 65507 is the largest IPv4 UDP payload */
	if (opt.size < HDR || opt.size > 65507 || opt.nsock < 1 || opt.nsock > 1024 ||
	    opt.window < 1 || opt.window > 1024 || opt.duration <= 0 || opt.timeout_ms < 1)
		usage();
	if (opt.probe > 0)
		return probe();

	struct sock *socks = calloc((size_t)opt.nsock, sizeof *socks);
	struct pollfd *pfds = calloc((size_t)opt.nsock, sizeof *pfds);
	size_t rcap = opt.size + 1; /* one byte more: a longer echo shows */
	unsigned char *rbuf = malloc(rcap * (size_t)opt.window);
	if (!socks || !pfds || !rbuf)
		die("malloc");
	for (int s = 0; s < opt.nsock; s++) {
		socks[s].fd = open_socket();
		socks[s].slots = calloc((size_t)opt.window, sizeof(struct slot));
		if (!socks[s].slots)
			die("malloc");
		for (int k = 0; k < opt.window; k++) {
			if (!(socks[s].slots[k].buf = malloc(opt.size)))
				die("malloc");
			fill_body(socks[s].slots[k].buf, s, k);
		}
		pfds[s] = (struct pollfd){ socks[s].fd, POLLIN, 0 };
	}

	uint64_t start = now_ns(), last_scan = start;
	uint64_t end = start + (uint64_t)(opt.duration * 1e9);
	int all[opt.window];
	for (int k = 0; k < opt.window; k++)
		all[k] = k;
	for (int s = 0; s < opt.nsock; s++)
		send_slots(&socks[s], s, all, opt.window, start);

	uint64_t now = start;
	while (now < end) {
		int r = poll(pfds, (nfds_t)opt.nsock, 10);
		if (r < 0 && errno != EINTR)
			die("poll");
		for (int s = 0; r > 0 && s < opt.nsock; s++)
			if (pfds[s].revents)
				drain(&socks[s], s, rbuf, rcap);
		now = now_ns();
		if (now - last_scan >= SCAN_NS) {
			for (int s = 0; s < opt.nsock; s++)
				expire(&socks[s], s, now);
			last_scan = now;
		}
	}
	/* datagrams still in flight at the end are neither answered nor lost */
	double elapsed = (double)(now - start) / 1e9;
	printf("dgrams_per_s=%.0f ok=%llu sent=%llu lost=%llu late=%llu errors=%llu refused=%llu elapsed_s=%.3f\n",
	       (double)n_ok / elapsed, (unsigned long long)n_ok, (unsigned long long)n_sent,
	       (unsigned long long)n_lost, (unsigned long long)n_late, (unsigned long long)n_err,
	       (unsigned long long)n_refused, elapsed);
	return 0;
}
