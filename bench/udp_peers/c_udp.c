/* c_udp.c: the baseline peer of bench/udp.sh: a plain UDP echo, one
 * thread, one blocking socket, recvfrom then sendto. No batching
 * (recvmmsg) and no io_uring, so it shows what one syscall per datagram
 * each way costs on this kernel.
 *
 *   PORT=18090 BENCH_HOST=127.0.0.1 ./c_udp      (SIGTERM stops it)
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	const char *host = getenv("BENCH_HOST"), *port = getenv("PORT");
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE }, *ai;
	int rc = getaddrinfo(host && *host ? host : "127.0.0.1", port && *port ? port : "8082",
			     &hints, &ai);
	if (rc) {
		fprintf(stderr, "c_udp: %s\n", gai_strerror(rc));
		return 1;
	}
	int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		perror("c_udp: bind");
		return 1;
	}
	printf("c udp echo listening on %s:%s\n", host ? host : "127.0.0.1", port ? port : "8082");
	fflush(stdout);

	static char buf[65536]; /* no datagram is larger: none is cut */
	for (;;) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			continue; /* EINTR, or an ICMP error from an earlier send */
		/* a failed send (a full buffer) is a drop, as it would be on a wire */
		(void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
	}
}
