/* SPDX-License-Identifier: MIT */
/*
 * tls.c - TLS 1.2/1.3 with OpenSSL 3, driven through memory BIOs.
 *
 * The engine never touches a socket: conn.c feeds it the ciphertext that
 * arrived in provided buffers (rl__tls_feed, into a memory BIO) and lets it
 * run the handshake or decrypt into the connection's accumulator
 * (rl__tls_handshake, rl__tls_read). The ciphertext it produces goes, as it
 * is produced, to the sink the connection gave rl__tls_new (a BIO of our
 * own whose write is the sink), which copies it into ordinary chunks of the
 * send queue: one copy, where a memory BIO took two and zeroed its buffer
 * as it grew. So the handshake is driven by completions and never blocks
 * the worker, and the caller sees plaintext through the same accumulator
 * and send calls as on a plain connection. A leaf but for the accumulator
 * (accum.c) and the sink, a function pointer it is handed.
 *
 * OpenSSL's error queue is per thread; every entry point clears it first so
 * a reason read after a failure is this connection's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "internal.h"

/* A server name and the context whose certificate answers it (SNI). */
struct sni_entry {
	char *name; /* "a.example" or "*.b.example" (one label), lower case */
	struct rl_tls_ctx *sub;
};

struct rl_tls_ctx {
	SSL_CTX *ctx;
	int refs; /* the owner's and each connection's: callbacks point here */
	int server;
	int verify;
	uint8_t *alpn; /* wire format: length-prefixed names, in preference order */
	uint32_t alpn_len;
	struct sni_entry *sni;
	uint32_t nsni;
	uint32_t handshake_ms; /* 0: the worker's tls_handshake_timeout */
};

/* A client's resumable session: a box the connection fills whenever the
 * server sends a ticket (TLS 1.3 sends it after the handshake, so the box
 * handed out at handshake end may fill later). Shared by reference. */
struct rl_tls_session {
	int refs;
	pthread_mutex_t mu;
	SSL_SESSION *sess;
};

struct rl_tls {
	SSL *ssl;
	BIO *rbio; /* ciphertext in: owned by ssl */
	BIO *wbio; /* ciphertext out, to the sink: owned by ssl */
	rl_tls_sink sink;
	void *sink_a, *sink_b;
	int sink_err; /* the sink's first failure, returned by the call that met it */
	uint8_t done;
	uint8_t verify;
	uint8_t reneg; /* server: the peer began a TLS 1.2 renegotiation */
	struct rl_tls_ctx *ctx;         /* a reference: its callbacks' argument */
	struct rl_tls_session *session; /* client: where new sessions go */
	char server_name[256];
	char error[160];
};

static int app_idx = -1; /* SSL ex_data: the struct rl_tls */
static BIO_METHOD *sink_method; /* the write side's BIO: calls the sink */
static uint8_t ticket_keys[80];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The write BIO: every write goes to the connection's sink at once. */
static int sink_write(BIO *b, const char *p, size_t n, size_t *written)
{
	struct rl_tls *t = BIO_get_data(b);
	*written = 0;
	if (n > UINT32_MAX)
		return 0;
	int rc = t->sink(t->sink_a, t->sink_b, (const uint8_t *)p, (uint32_t)n);
	if (rc < 0) {
		if (!t->sink_err)
			t->sink_err = rc;
		return 0; /* the engine sees a failed write: the connection fails */
	}
	*written = n;
	return 1;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	/* nothing is held back: a flush is done, nothing is pending */
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *make_sink_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "ringline send queue");
	if (!m || !BIO_meth_set_write_ex(m, sink_write) || !BIO_meth_set_ctrl(m, sink_ctrl))
		abort(); /* only without memory at the first TLS context */
	return m;
}

/* One set of ticket keys per process, so a ticket from one worker's
 * context resumes on another's (each worker makes its own contexts). They
 * are random at start and never rotate: a restart invalidates tickets. */
static void init_once(void)
{
	if (RAND_bytes(ticket_keys, sizeof(ticket_keys)) != 1)
		abort(); /* no entropy: nothing in TLS would be safe */
	app_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	sink_method = make_sink_method();
}

static void set_msg(char *msg, size_t msglen, const char *what, const char *path)
{
	if (!msg || !msglen)
		return;
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;
	snprintf(msg, msglen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 why ? why : "unknown error");
}

/* Client: the server sent a session (ticket); keep the newest in the box. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct rl_tls *t = SSL_get_ex_data(ssl, app_idx);
	if (!t || !t->session || !SSL_SESSION_is_resumable(sess))
		return 0;
	struct rl_tls_session *b = t->session;
	pthread_mutex_lock(&b->mu);
	SSL_SESSION *old = b->sess;
	b->sess = sess; /* the reference OpenSSL hands us (return 1) */
	pthread_mutex_unlock(&b->mu);
	SSL_SESSION_free(old);
	return 1;
}

static SSL_CTX *ctx_base(int server)
{
	pthread_once(&once, init_once);
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
		/* Resumption by stateless tickets only (no server-side cache to
		 * bound); one ticket per full handshake is enough for a client
		 * that reconnects once at a time. The tickets go out with the
		 * handshake's last flight. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_num_tickets(ctx, 1);
		SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_keys, sizeof(ticket_keys));
		/* required for resumption when client certificates are verified */
		static const unsigned char sid[] = "ringline";
		SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session);
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
	t->refs = 1;
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
	t->refs = 1;
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
	if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (uint32_t i = 0; i < t->nsni; i++) {
		free(t->sni[i].name);
		rl_tls_ctx_free(t->sni[i].sub);
	}
	free(t->sni);
	free(t->alpn);
	SSL_CTX_free(t->ctx); /* connections hold their own reference (SSL_new) */
	free(t);
}

/* Server: the first of our names (in our order) the client offers. No
 * overlap is a fatal no_application_protocol alert (RFC 7301 3.2). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	struct rl_tls_ctx *t = arg;
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int valid_alpn(const uint8_t *p, uint32_t n)
{
	if (n == 0 || n > 65535)
		return 0;
	for (uint32_t i = 0; i < n; i += 1u + p[i])
		if (p[i] == 0 || i + 1u + p[i] > n)
			return 0;
	return 1;
}

int rl_tls_ctx_set_alpn(struct rl_tls_ctx *t, const uint8_t *wire, uint32_t len)
{
	if (!t || !wire || !valid_alpn(wire, len))
		return -EINVAL;
	uint8_t *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, wire, len);
	if (!t->server && SSL_CTX_set_alpn_protos(t->ctx, copy, len) != 0) {
		free(copy);
		return -ENOMEM;
	}
	free(t->alpn);
	t->alpn = copy;
	t->alpn_len = len;
	if (t->server)
		SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, t);
	return 0;
}

int rl_tls_ctx_set_protocols(struct rl_tls_ctx *t, int min_version, int max_version)
{
	static const int v[] = { [12] = TLS1_2_VERSION, [13] = TLS1_3_VERSION };
	if (!t || min_version < 12 || max_version > 13 || min_version > max_version)
		return -EINVAL;
	if (SSL_CTX_set_min_proto_version(t->ctx, v[min_version]) != 1 ||
	    SSL_CTX_set_max_proto_version(t->ctx, v[max_version]) != 1)
		return -EINVAL;
	return 0;
}

int rl_tls_ctx_set_handshake_timeout(struct rl_tls_ctx *t, uint32_t ms)
{
	if (!t || ms > 3600000)
		return -EINVAL;
	t->handshake_ms = ms;
	return 0;
}

uint32_t rl__tls_ctx_handshake_ms(const struct rl_tls_ctx *t, uint32_t dflt)
{
	return t->handshake_ms ? t->handshake_ms : dflt;
}

int rl_tls_ctx_set_ciphers(struct rl_tls_ctx *t, const char *list, char *msg, size_t msglen)
{
	if (!t || !list)
		return -EINVAL;
	ERR_clear_error();
	size_t n = strlen(list);
	char *v12 = calloc(1, n + 1), *v13 = calloc(1, n + 1);
	int rc = -ENOMEM;
	if (!v12 || !v13)
		goto out;
	/* TLS 1.3 suites (TLS_*) and the TLS 1.2 cipher list are set apart in
	 * OpenSSL; one colon-separated list here, each name to its own. A
	 * version none of the names is for keeps its defaults. */
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, ":");
		if (k) {
			char *dst = strncmp(p, "TLS_", 4) == 0 ? v13 : v12;
			if (*dst)
				strcat(dst, ":");
			strncat(dst, p, k);
		}
		p += k + (p[k] == ':');
	}
	rc = -EINVAL;
	if (!*v12 && !*v13) {
		snprintf(msg, msglen, "ciphers: empty list");
		goto out;
	}
	if (*v12 && SSL_CTX_set_cipher_list(t->ctx, v12) != 1) {
		set_msg(msg, msglen, "ciphers", v12);
		goto out;
	}
	if (*v13 && SSL_CTX_set_ciphersuites(t->ctx, v13) != 1) {
		set_msg(msg, msglen, "ciphers", v13);
		goto out;
	}
	rc = 0;
out:
	free(v12);
	free(v13);
	return rc;
}

static int load_ca(SSL_CTX *ctx, const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return SSL_CTX_load_verify_locations(ctx, NULL, path);
	return SSL_CTX_load_verify_locations(ctx, path, NULL);
}

int rl_tls_ctx_set_client_ca(struct rl_tls_ctx *t, const char *ca_path, char *msg, size_t msglen)
{
	if (!t || !ca_path || !t->server)
		return -EINVAL;
	ERR_clear_error();
	if (load_ca(t->ctx, ca_path) != 1) {
		set_msg(msg, msglen, "client_ca", ca_path);
		return -EINVAL;
	}
	/* the names sent in the CertificateRequest, so a client with several
	 * certificates picks one these CAs signed (a file only) */
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_path);
	if (names)
		SSL_CTX_set_client_CA_list(t->ctx, names);
	ERR_clear_error();
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	t->verify = 1;
	return 0;
}

int rl_tls_ctx_use_cert(struct rl_tls_ctx *t, const char *cert_pem_path, const char *key_pem_path,
			char *msg, size_t msglen)
{
	if (!t || !cert_pem_path || !key_pem_path)
		return -EINVAL;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_pem_path) != 1) {
		set_msg(msg, msglen, "certificate", cert_pem_path);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_pem_path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1) {
		set_msg(msg, msglen, "key", key_pem_path);
		return -EINVAL;
	}
	return 0;
}

/* "*.b.example" matches "x.b.example", not "b.example" nor "y.x.b.example". */
static int name_match(const char *pat, const char *name)
{
	if (pat[0] == '*' && pat[1] == '.') {
		const char *dot = strchr(name, '.');
		return dot && dot != name && strcasecmp(dot, pat + 1) == 0;
	}
	return strcasecmp(pat, name) == 0;
}

/* Server: choose the certificate by the name the client asked for; exact
 * names before wildcards; none matching: the default pair. */
static int servername(SSL *ssl, int *al, void *arg)
{
	(void)al;
	struct rl_tls_ctx *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!name)
		return SSL_TLSEXT_ERR_OK;
	struct rl_tls_ctx *hit = NULL;
	for (uint32_t i = 0; i < t->nsni && !hit; i++)
		if (t->sni[i].name[0] != '*' && name_match(t->sni[i].name, name))
			hit = t->sni[i].sub;
	for (uint32_t i = 0; i < t->nsni && !hit; i++)
		if (t->sni[i].name[0] == '*' && name_match(t->sni[i].name, name))
			hit = t->sni[i].sub;
	if (hit)
		SSL_set_SSL_CTX(ssl, hit->ctx);
	return SSL_TLSEXT_ERR_OK;
}

int rl_tls_ctx_add_sni(struct rl_tls_ctx *t, const char *name, struct rl_tls_ctx *sub)
{
	if (!t || !sub || !name || !*name || !t->server || !sub->server || sub == t ||
	    (name[0] == '*' && (name[1] != '.' || !name[2])) || strchr(name + 1, '*'))
		return -EINVAL;
	struct sni_entry *e = realloc(t->sni, (t->nsni + 1) * sizeof(*e));
	if (!e)
		return -ENOMEM;
	t->sni = e;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	__atomic_add_fetch(&sub->refs, 1, __ATOMIC_ACQ_REL);
	t->sni[t->nsni].name = copy;
	t->sni[t->nsni].sub = sub;
	t->nsni++;
	SSL_CTX_set_tlsext_servername_callback(t->ctx, servername);
	SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
	return 0;
}

int rl_tls_session_new(struct rl_tls_session **out)
{
	struct rl_tls_session *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->refs = 1;
	pthread_mutex_init(&b->mu, NULL);
	*out = b;
	return 0;
}

struct rl_tls_session *rl__tls_session_ref(struct rl_tls_session *b)
{
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
	return b;
}

void rl_tls_session_free(struct rl_tls_session *b)
{
	if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	SSL_SESSION_free(b->sess);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

int rl_tls_session_ready(struct rl_tls_session *b)
{
	pthread_mutex_lock(&b->mu);
	int r = b->sess != NULL;
	pthread_mutex_unlock(&b->mu);
	return r;
}

struct rl_tls_session *rl__tls_session(struct rl_tls *t)
{
	return t->session;
}

/* Server: a handshake starting after the first is a TLS 1.2 client's
 * renegotiation (TLS 1.3 reports its post-handshake messages this way too:
 * not those). SSL_OP_NO_RENEGOTIATION answers it with a warning alert and
 * goes on; the client may then linger or not, so the connection is ended
 * here instead, the same way whatever the client does. */
static void info_cb(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if (!(where & SSL_CB_HANDSHAKE_START) || SSL_version(ssl) >= TLS1_3_VERSION)
		return;
	struct rl_tls *t = SSL_get_ex_data(ssl, app_idx);
	if (t && t->done)
		t->reneg = 1;
}

int rl__tls_new(struct rl_tls_ctx *ctx, const char *server_name, struct rl_tls_session *resume,
		rl_tls_sink sink, void *sink_a, void *sink_b, struct rl_tls **out)
{
	ERR_clear_error();
	struct rl_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->sink = sink;
	t->sink_a = sink_a;
	t->sink_b = sink_b;
	t->ssl = SSL_new(ctx->ctx); /* the context made sink_method (init_once) */
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(sink_method);
	if (!t->ssl || !t->rbio || !t->wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		return -ENOMEM;
	}
	/* an empty memory BIO means "more later", not end of stream */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_data(t->wbio, t);
	BIO_set_init(t->wbio, 1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	t->verify = (uint8_t)ctx->verify;
	t->ctx = ctx;
	__atomic_add_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL);
	SSL_set_ex_data(t->ssl, app_idx, t);
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
		SSL_set_info_callback(t->ssl, info_cb);
	} else {
		SSL_set_connect_state(t->ssl);
		/* the session box: the one to resume from, else a new one */
		if (resume) {
			t->session = rl__tls_session_ref(resume);
			pthread_mutex_lock(&resume->mu);
			if (resume->sess)
				SSL_set_session(t->ssl, resume->sess); /* takes its own ref */
			pthread_mutex_unlock(&resume->mu);
		} else if (rl_tls_session_new(&t->session)) {
			rl__tls_free(t);
			return -ENOMEM;
		}
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
	rl_tls_session_free(t->session);
	rl_tls_ctx_free(t->ctx);
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
	if (vr != X509_V_OK && (t->verify || !SSL_is_server(t->ssl))) {
		const char *what = X509_verify_cert_error_string(vr);
		if (!SSL_is_server(t->ssl) &&
		    (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH))
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
		if (t->reneg) {
			snprintf(t->error, sizeof(t->error), "renegotiation refused");
			ERR_clear_error();
			return -EPROTO;
		}
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
	/* into the sink a write is whole or fails */
	if (SSL_write_ex(t->ssl, p, n, &w) != 1 || w != n) {
		int rc = t->sink_err ? t->sink_err : -EPROTO;
		t->sink_err = 0;
		return rc;
	}
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
	const unsigned char *alpn = NULL;
	unsigned int alen = 0;
	SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
	if (alpn && alen < sizeof(out->alpn)) {
		memcpy(out->alpn, alpn, alen);
		out->alpn[alen] = 0;
	}
	X509 *peer = SSL_get0_peer_certificate(t->ssl);
	if (peer) {
		X509_NAME_oneline(X509_get_subject_name(peer), out->peer_subject,
				  (int)sizeof(out->peer_subject));
		out->peer_verified = SSL_get_verify_result(t->ssl) == X509_V_OK && t->verify;
	}
}
