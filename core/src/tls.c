/* SPDX-License-Identifier: MIT */
/*
 * tls.c - TLS 1.2/1.3 with OpenSSL 3, driven through memory BIOs.
 *
 * The engine never touches a socket: conn.c feeds it the ciphertext that
 * arrived in provided buffers (rl__tls_feed), lets it run the handshake or
 * decrypt into the connection's accumulator (rl__tls_handshake,
 * rl__tls_read), and takes the ciphertext it produced (rl__tls_out_take) into
 * ordinary copy chunks of the connection's send queue. So the handshake is
 * driven by completions and never blocks the worker, and the caller sees
 * plaintext through the same accumulator and send calls as on a plain
 * connection. A leaf but for the accumulator (accum.c): it never calls
 * conn.c back.
 *
 * OpenSSL's error queue is per thread; every entry point clears it first so
 * a reason read after a failure is this connection's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"

struct rl_tls_ctx {
	SSL_CTX *ctx;
	int server;
	int verify;
};

struct rl_tls {
	SSL *ssl;
	BIO *rbio; /* ciphertext in: owned by ssl */
	BIO *wbio; /* ciphertext out: owned by ssl */
	uint8_t done;
	uint8_t verify;
	char server_name[256];
	char error[160];
};

static void set_msg(char *msg, size_t msglen, const char *what, const char *path)
{
	if (!msg || !msglen)
		return;
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;
	snprintf(msg, msglen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 why ? why : "unknown error");
}

static SSL_CTX *ctx_base(int server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Memory per idle connection: OpenSSL frees its record buffers when
	 * they are empty. Session tickets are a later step: none are sent, so
	 * no post-handshake message waits on a client that never reads. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (server) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	}
	return ctx;
}

int rl_tls_ctx_new_server(const char *cert_pem_path, const char *key_pem_path,
			  struct rl_tls_ctx **out, char *msg, size_t msglen)
{
	if (!cert_pem_path || !key_pem_path || !out)
		return -EINVAL;
	ERR_clear_error();
	struct rl_tls_ctx *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->server = 1;
	t->ctx = ctx_base(1);
	if (!t->ctx) {
		set_msg(msg, msglen, "TLS context", NULL);
		free(t);
		return -ENOMEM;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_pem_path) != 1) {
		set_msg(msg, msglen, "certificate", cert_pem_path);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_pem_path, SSL_FILETYPE_PEM) != 1) {
		set_msg(msg, msglen, "key", key_pem_path);
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		set_msg(msg, msglen, "key", key_pem_path);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	SSL_CTX_free(t->ctx);
	free(t);
	return -EINVAL;
}

int rl_tls_ctx_new_client(const char *ca_path, int verify, struct rl_tls_ctx **out, char *msg,
			  size_t msglen)
{
	if (!out)
		return -EINVAL;
	ERR_clear_error();
	struct rl_tls_ctx *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->verify = verify != 0;
	t->ctx = ctx_base(0);
	if (!t->ctx) {
		set_msg(msg, msglen, "TLS context", NULL);
		free(t);
		return -ENOMEM;
	}
	if (t->verify) {
		int ok;
		struct stat st;
		if (!ca_path)
			ok = SSL_CTX_set_default_verify_paths(t->ctx); /* the system store */
		else if (stat(ca_path, &st) == 0 && S_ISDIR(st.st_mode))
			ok = SSL_CTX_load_verify_locations(t->ctx, NULL, ca_path);
		else
			ok = SSL_CTX_load_verify_locations(t->ctx, ca_path, NULL);
		if (ok != 1) {
			set_msg(msg, msglen, "CA", ca_path ? ca_path : "(system store)");
			SSL_CTX_free(t->ctx);
			free(t);
			return -EINVAL;
		}
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	}
	*out = t;
	return 0;
}

void rl_tls_ctx_free(struct rl_tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx); /* connections hold their own reference (SSL_new) */
	free(t);
}

int rl__tls_new(struct rl_tls_ctx *ctx, const char *server_name, struct rl_tls **out)
{
	ERR_clear_error();
	struct rl_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ssl = SSL_new(ctx->ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		return -ENOMEM;
	}
	/* an empty memory BIO means "more later", not end of stream */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	t->verify = (uint8_t)ctx->verify;
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (server_name && *server_name) {
			snprintf(t->server_name, sizeof(t->server_name), "%s", server_name);
			int is_ip = 0;
			ASN1_OCTET_STRING *ip = a2i_IPADDRESS(server_name);
			if (ip) {
				is_ip = 1;
				ASN1_OCTET_STRING_free(ip);
			}
			/* SNI carries names only (RFC 6066); the check takes both */
			if (!is_ip)
				SSL_set_tlsext_host_name(t->ssl, server_name);
			if (t->verify) {
				int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl),
									       server_name)
					       : SSL_set1_host(t->ssl, server_name);
				if (ok != 1) {
					rl__tls_free(t);
					return -EINVAL;
				}
			}
		}
	}
	*out = t;
	return 0;
}

void rl__tls_free(struct rl_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* and both BIOs */
	free(t);
}

int rl__tls_feed(struct rl_tls *t, const uint8_t *p, uint32_t n)
{
	if (n == 0)
		return 0;
	/* a memory BIO grows as needed: a short write is only ENOMEM */
	return BIO_write(t->rbio, p, (int)n) == (int)n ? 0 : -ENOMEM;
}

int rl__tls_done(const struct rl_tls *t)
{
	return t->done;
}

void rl__tls_set_error(struct rl_tls *t, const char *why)
{
	snprintf(t->error, sizeof(t->error), "%s", why);
}

/* Why the last call failed, into t->error: a certificate check says which. */
static int fail(struct rl_tls *t, int sslerr, const char *prefix)
{
	long vr = SSL_get_verify_result(t->ssl);
	unsigned long e = ERR_peek_last_error();
	if (vr != X509_V_OK && !SSL_is_server(t->ssl)) {
		const char *what = X509_verify_cert_error_string(vr);
		if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
			snprintf(t->error, sizeof(t->error),
				 "certificate verify failed: %s (not valid for %.64s)", what,
				 t->server_name);
		else
			snprintf(t->error, sizeof(t->error), "certificate verify failed: %s", what);
	} else if (e) {
		const char *why = ERR_reason_error_string(e);
		snprintf(t->error, sizeof(t->error), "%s: %s", prefix, why ? why : "unknown");
	} else {
		snprintf(t->error, sizeof(t->error), "%s: %s", prefix,
			 sslerr == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "protocol error");
	}
	ERR_clear_error();
	return -EPROTO;
}

int rl__tls_handshake(struct rl_tls *t)
{
	if (t->done)
		return 1;
	ERR_clear_error();
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->done = 1;
		return 1;
	}
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	return fail(t, e, "handshake failed");
}

int rl__tls_read(struct rl_tls *t, struct rl_accum *a, uint64_t hint, uint64_t *gauge)
{
	uint8_t buf[16384];
	ERR_clear_error();
	for (;;) {
		size_t n = 0;
		int r = SSL_read_ex(t->ssl, buf, sizeof(buf), &n);
		if (r == 1) {
			int rc = rl__accum_append(a, buf, (uint32_t)n, hint, gauge);
			if (rc)
				return rc;
			continue;
		}
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN)
			return 1; /* close_notify: the peer's end of stream */
		return fail(t, e, "protocol error");
	}
}

int rl__tls_write(struct rl_tls *t, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	ERR_clear_error();
	size_t w = 0;
	/* into a memory BIO a write is whole or fails */
	if (SSL_write_ex(t->ssl, p, n, &w) != 1 || w != n)
		return -EPROTO;
	return 0;
}

void rl__tls_close_notify(struct rl_tls *t)
{
	if (!t->done)
		return;
	ERR_clear_error();
	SSL_shutdown(t->ssl); /* queues the alert; the peer's is not awaited */
	ERR_clear_error();
}

size_t rl__tls_out_pending(struct rl_tls *t)
{
	return BIO_ctrl_pending(t->wbio);
}

uint32_t rl__tls_out_take(struct rl_tls *t, uint8_t *dst, uint32_t cap)
{
	int r = BIO_read(t->wbio, dst, (int)(cap > INT32_MAX ? INT32_MAX : cap));
	return r > 0 ? (uint32_t)r : 0;
}

void rl__tls_info(const struct rl_tls *t, struct rl_tls_info *out)
{
	memset(out, 0, sizeof(*out));
	out->established = t->done;
	snprintf(out->error, sizeof(out->error), "%s", t->error);
	const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	snprintf(out->server_name, sizeof(out->server_name), "%s",
		 sni ? sni : t->server_name);
	if (!t->done)
		return;
	snprintf(out->protocol, sizeof(out->protocol), "%s", SSL_get_version(t->ssl));
	snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_get_cipher_name(t->ssl));
	out->resumed = SSL_session_reused(t->ssl);
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	if (peer) {
		X509_NAME_oneline(X509_get_subject_name(peer), out->peer_subject,
				  (int)sizeof(out->peer_subject));
		out->peer_verified = SSL_get_verify_result(t->ssl) == X509_V_OK && t->verify;
	}
}
