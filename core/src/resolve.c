/* SPDX-License-Identifier: MIT */
/*
 * resolve.c - name resolution off the loop. getaddrinfo blocks (DNS can take
 * seconds), so each worker gets one resolver thread on first use; requests
 * go to it through a mutex-protected queue and results come back as inbox
 * messages, which wake the worker like any other completion.
 *
 * The thread may still be inside getaddrinfo when the worker is destroyed.
 * It therefore never touches the worker after rl__resolver_stop: the shared
 * state is reference-counted, `w` is cleared under the lock, and whoever
 * drops the last reference frees it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct rl_resolve_req {
	struct rl_resolve_req *next;
	uint32_t token;
	int family;
	char host[];
};

struct rl_resolver {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rl_resolve_req *head;
	struct rl_resolve_req *tail;
	struct rl_worker *w;  /* NULL once the worker is gone */
	int refs;
	int stop;
};

static void unref(struct rl_resolver *r)
{
	pthread_mutex_lock(&r->lock);
	int last = --r->refs == 0;
	pthread_mutex_unlock(&r->lock);
	if (!last)
		return;
	struct rl_resolve_req *q = r->head;
	while (q) {
		struct rl_resolve_req *next = q->next;
		free(q);
		q = next;
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Addresses one per line, numeric, without duplicates. */
static size_t format(struct addrinfo *res, char *out, size_t cap)
{
	size_t n = 0;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		char txt[INET6_ADDRSTRLEN];
		const void *src = a->ai_family == AF_INET
					  ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
					  : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
		if (!inet_ntop(a->ai_family, src, txt, sizeof(txt)))
			continue;
		size_t l = strlen(txt);
		int dup = 0;
		for (const char *p = out; p < out + n;) {
			const char *e = memchr(p, '\n', (size_t)(out + n - p));
			size_t pl = e ? (size_t)(e - p) : (size_t)(out + n - p);
			if (pl == l && memcmp(p, txt, l) == 0)
				dup = 1;
			p += pl + 1;
		}
		if (dup || n + l + 1 >= cap)
			continue;
		if (n)
			out[n++] = '\n';
		memcpy(out + n, txt, l);
		n += l;
	}
	return n;
}

static void *run(void *arg)
{
	struct rl_resolver *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		while (!r->head && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		struct rl_resolve_req *q = r->head;
		r->head = q->next;
		if (!r->head)
			r->tail = NULL;
		pthread_mutex_unlock(&r->lock);

		struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
		hints.ai_family = q->family == 4 ? AF_INET : q->family == 6 ? AF_INET6 : AF_UNSPEC;
		struct addrinfo *res = NULL;
		char out[1024];
		size_t n;
		int rc = getaddrinfo(q->host, NULL, &hints, &res);
		if (rc == 0) {
			n = format(res, out, sizeof(out));
			freeaddrinfo(res);
			if (n == 0)
				n = (size_t)snprintf(out, sizeof(out), "!no address");
		} else {
			n = (size_t)snprintf(out, sizeof(out), "!%s", gai_strerror(rc));
		}
		/* post under the lock: the worker cannot be destroyed meanwhile */
		pthread_mutex_lock(&r->lock);
		if (r->w)
			rl_worker_post(r->w, q->token, RL_MSG_RESOLVED, out, n, NULL);
		pthread_mutex_unlock(&r->lock);
		free(q);
	}
	unref(r);
	return NULL;
}

int rl_resolve(struct rl_worker *w, const char *host, int family, uint32_t token)
{
	if (!host || !*host || strlen(host) > 253 || (family != 0 && family != 4 && family != 6))
		return -EINVAL;
	if (!w->resolver) {
		struct rl_resolver *r = calloc(1, sizeof(*r));
		if (!r)
			return -ENOMEM;
		pthread_mutex_init(&r->lock, NULL);
		pthread_cond_init(&r->cond, NULL);
		r->w = w;
		r->refs = 2; /* the worker's and the thread's */
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		int rc = pthread_create(&t, &attr, run, r);
		pthread_attr_destroy(&attr);
		if (rc) {
			pthread_cond_destroy(&r->cond);
			pthread_mutex_destroy(&r->lock);
			free(r);
			return -rc;
		}
		w->resolver = r;
	}
	size_t len = strlen(host);
	struct rl_resolve_req *q = malloc(sizeof(*q) + len + 1);
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->token = token;
	q->family = family;
	memcpy(q->host, host, len + 1);
	struct rl_resolver *r = w->resolver;
	pthread_mutex_lock(&r->lock);
	if (r->tail)
		r->tail->next = q;
	else
		r->head = q;
	r->tail = q;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

void rl__resolver_stop(struct rl_worker *w)
{
	struct rl_resolver *r = w->resolver;
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->w = NULL;
	r->stop = 1;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	w->resolver = NULL;
	unref(r);
}
