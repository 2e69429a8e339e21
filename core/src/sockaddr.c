/* SPDX-License-Identifier: MIT */
/* sockaddr.c - address text to sockaddr, and descriptor helpers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int parse_port(const char *s, int *port)
{
	char *end;
	if (!*s)
		return -EINVAL;
	long v = strtol(s, &end, 10);
	if (*end || v < 0 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

int rl__parse_addr(const char *addr, int passive, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *port_s;
	int port;

	memset(ss, 0, sizeof(*ss));
	if (!addr)
		return -EINVAL;
	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;
		size_t n = strlen(addr + 5);
		if (n == 0 || n >= sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, addr + 5, n + 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		return 0;
	}
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr + 1, (size_t)(close - addr - 1));
		host[close - addr - 1] = 0;
		port_s = close + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon) {
			host[0] = 0;
			port_s = addr;
		} else {
			if ((size_t)(colon - addr) >= sizeof(host))
				return -EINVAL;
			memcpy(host, addr, (size_t)(colon - addr));
			host[colon - addr] = 0;
			port_s = colon + 1;
		}
	}
	if (parse_port(port_s, &port))
		return -EINVAL;

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (!host[0] || strcmp(host, "*") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		sin->sin_addr.s_addr = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	/* Digits and dots, or any colon, that inet_pton refused: a malformed
	 * numeric address (300.1.1.1, [::zz]), never a name. Said as such
	 * (-EINVAL, "invalid address" in the Lua API) rather than handed to the
	 * resolver, whose failure would read as a routing problem. */
	if (host[strspn(host, "0123456789.")] == '\0' || strchr(host, ':'))
		return -EINVAL;
	if (!passive && strcmp(host, "localhost") != 0)
		return -EAFNOSUPPORT; /* names: resolved by the upper layer, never here */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host, NULL, &hints, &res);
	if (gai != 0 || !res) {
		if (res)
			freeaddrinfo(res);
		/* a name that does not resolve is not an address to bind; only a
		 * resolver that could not answer now is worth trying again */
		return gai == EAI_AGAIN ? -EHOSTUNREACH : -EINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	if (ss->ss_family == AF_INET)
		sin->sin_port = htons((uint16_t)port);
	else
		sin6->sin6_port = htons((uint16_t)port);
	return 0;
}

int rl__format_addr(const struct sockaddr_storage *ss, socklen_t len, char *host, size_t hostlen)
{
	if (hostlen)
		host[0] = 0;
	switch (ss->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		if (hostlen)
			inet_ntop(AF_INET, &s->sin_addr, host, (socklen_t)hostlen);
		return ntohs(s->sin_port);
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		if (hostlen)
			inet_ntop(AF_INET6, &s->sin6_addr, host, (socklen_t)hostlen);
		return ntohs(s->sin6_port);
	}
	case AF_UNIX: {
		const struct sockaddr_un *s = (const struct sockaddr_un *)ss;
		if (hostlen && len > offsetof(struct sockaddr_un, sun_path))
			snprintf(host, hostlen, "unix:%s", s->sun_path);
		return 0;
	}
	default:
		return -EAFNOSUPPORT;
	}
}

int rl_fd_name(int fd, int peer, char *host, size_t hostlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
		      : getsockname(fd, (struct sockaddr *)&ss, &len);
	if (rc < 0)
		return -errno;
	return rl__format_addr(&ss, len, host, hostlen);
}

int rl_fd_setoption(int fd, int opt, int value)
{
	int level, name;
	switch (opt) {
	case RL_OPT_NODELAY: level = IPPROTO_TCP; name = TCP_NODELAY; break;
	case RL_OPT_KEEPALIVE: level = SOL_SOCKET; name = SO_KEEPALIVE; break;
	case RL_OPT_SNDBUF: level = SOL_SOCKET; name = SO_SNDBUF; break;
	case RL_OPT_RCVBUF: level = SOL_SOCKET; name = SO_RCVBUF; break;
	default: return -EINVAL;
	}
	if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
		return -errno;
	return 0;
}
