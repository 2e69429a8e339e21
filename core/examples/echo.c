/* SPDX-License-Identifier: MIT */
/*
 * echo.c - an echo server on the C API of libringline, one worker.
 *
 *   rl_echo [host:port]      (default 127.0.0.1:$PORT or 127.0.0.1:7000)
 *
 * Everything received is queued back; the loop asks for RL_EV_RECV only when
 * a connection has nothing buffered, so a busy connection costs no events.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringline.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void echo(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	const struct rl_conn_io *io = rl_conn_io(w, slot);
	for (;;) {
		if (io->gen != gen)
			return;
		if (io->rlen) {
			/* the bytes are copied by send, then consumed */
			if (rl_conn_send(w, slot, gen, io->rdata, io->rlen) < 0) {
				rl_conn_close(w, slot, gen, RL_CLOSE_RESET);
				return;
			}
			rl_conn_consume(w, slot, gen, io->rlen);
		}
		if (io->reof || io->rerr) {
			rl_conn_close(w, slot, gen, io->rerr ? RL_CLOSE_RESET : RL_CLOSE_GRACEFUL);
			return;
		}
		if (rl_conn_want_recv(w, slot, gen, 1) == 0)
			return; /* an RL_EV_RECV will come */
	}
}

int main(int argc, char **argv)
{
	char addr[128];
	const char *port = getenv("PORT");
	const char *host = getenv("BENCH_HOST");
	snprintf(addr, sizeof(addr), "%s:%s", host ? host : "127.0.0.1", port ? port : "7000");
	if (argc > 1)
		snprintf(addr, sizeof(addr), "%s", argv[1]);

	struct rl_worker *w;
	char msg[256] = "";
	int rc = rl_worker_new(NULL, &w, msg, sizeof(msg));
	if (rc) {
		fprintf(stderr, "rl_echo: %s\n", msg[0] ? msg : rl_strerror(rc));
		return 1;
	}
	int lid = rl_listen(w, addr, RL_LISTEN_NODELAY);
	if (lid < 0) {
		fprintf(stderr, "rl_echo: listen %s: %s\n", addr, rl_strerror(lid));
		rl_worker_destroy(w);
		return 1;
	}
	printf("rl_echo: listening on %s (port %d)\n", addr, rl_listener_port(w, lid));
	fflush(stdout);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	struct rl_event ev[256];
	while (!stop) {
		int n = rl_worker_poll(w, ev, 256, -1);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == RL_EV_ACCEPTED || ev[i].type == RL_EV_RECV)
				echo(w, ev[i].slot, ev[i].gen);
		}
	}
	rl_listener_close(w, lid);
	/* connections still open are reset by the teardown */
	rl_worker_destroy(w);
	return 0;
}
