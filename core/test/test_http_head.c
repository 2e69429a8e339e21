/* SPDX-License-Identifier: MIT */
/*
 * test_http_head - rl_http_head_parse, ringline.http's byte-level parser:
 * the offsets and kinds it records, each refusal with the status the Lua
 * side turns it into, every proper prefix of a head read as incomplete,
 * and no read past the head: each input sits at the very end of its own
 * heap block, so a byte read beyond it trips AddressSanitizer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static struct rl_http_field fields[8];
static uint8_t lower[8192];

/* Parses the first n bytes of s from a block of exactly n bytes. */
static int parse_n(const char *s, size_t n, size_t lim, struct rl_http_head *h)
{
	uint8_t *b = malloc(n ? n : 1);
	CHECK(b);
	memcpy(b, s, n);
	memset(h, 0, sizeof *h);
	h->fields = fields;
	h->lower = lower;
	h->max_fields = 8;
	int rc = rl_http_head_parse(b, n, lim, h);
	free(b);
	return rc;
}

static int parse(const char *s, struct rl_http_head *h)
{
	return parse_n(s, strlen(s), sizeof lower, h);
}

static int field_is(const char *s, const struct rl_http_field *f, const char *name,
		    const char *value)
{
	return f->name_len == strlen(name) && memcmp(lower + f->name_off, name, f->name_len) == 0 &&
	       f->value_len == strlen(value) && memcmp(s + f->value_off, value, f->value_len) == 0;
}

int main(void)
{
	struct rl_http_head h;
	const char *ok = "PATCH /a?b=1 HTTP/1.0\r\nHost: x\r\nContent-LENGTH:\t 12 \r\n"
			 "X-Empty:\r\nTransfer-Encoding: chunked\r\nexpect: 100-continue\r\n"
			 "Connection: close\r\n\r\nBODY";
	size_t head = strlen(ok) - 4;
	CHECK_EQ(parse(ok, &h), (long long)head);
	CHECK_EQ(h.len, (long long)head);
	CHECK_EQ(h.method_len, 5);
	CHECK_EQ(h.target_off, 6);
	CHECK_EQ(h.target_len, 6);
	CHECK_EQ(h.minor, 0);
	CHECK_EQ(h.nfields, 6);
	CHECK(field_is(ok, &h.fields[0], "host", "x"));
	CHECK_EQ(h.fields[0].kind, RL_HTTP_HOST);
	CHECK(field_is(ok, &h.fields[1], "content-length", "12"));
	CHECK_EQ(h.fields[1].kind, RL_HTTP_CONTENT_LENGTH);
	CHECK(field_is(ok, &h.fields[2], "x-empty", ""));
	CHECK_EQ(h.fields[2].kind, RL_HTTP_OTHER);
	CHECK_EQ(h.fields[3].kind, RL_HTTP_TRANSFER_ENCODING);
	CHECK_EQ(h.fields[4].kind, RL_HTTP_EXPECT);
	CHECK_EQ(h.fields[5].kind, RL_HTTP_CONNECTION);

	/* every proper prefix is incomplete, never an error */
	for (size_t n = 0; n < head; n++)
		CHECK_EQ(parse_n(ok, n, sizeof lower, &h), 0);
	/* a head with no field: the request line and the empty line */
	CHECK_EQ(parse("GET / HTTP/1.1\r\n\r\n", &h), 18);
	CHECK_EQ(h.nfields, 0);
	CHECK_EQ(h.minor, 1);

	/* refusals */
	CHECK_EQ(parse(" / HTTP/1.1\r\n\r\n", &h), -EBADMSG);             /* no method */
	CHECK_EQ(parse("G(T / HTTP/1.1\r\n\r\n", &h), -EBADMSG);          /* not a tchar */
	CHECK_EQ(parse("GET  HTTP/1.1\r\n\r\n", &h), -EBADMSG);           /* empty target */
	CHECK_EQ(parse("GET /\x01 HTTP/1.1\r\n\r\n", &h), -EBADMSG);      /* control in target */
	CHECK_EQ(parse("GET / HTTQ/1.1\r\n\r\n", &h), -EBADMSG);
	CHECK_EQ(parse("GET / HTTP/1.x\r\n\r\n", &h), -EBADMSG);
	CHECK_EQ(parse("GET / HTTP/2.0\r\n\r\n", &h), -EPROTONOSUPPORT);
	CHECK_EQ(parse("GET / HTTP/1.2\r\n\r\n", &h), -EPROTONOSUPPORT);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", &h), -EBADMSG); /* obs-fold */
	CHECK_EQ(parse("GET / HTTP/1.1\r\n: b\r\n\r\n", &h), -EBADMSG);   /* empty name */
	CHECK_EQ(parse("GET / HTTP/1.1\r\nA b: c\r\n\r\n", &h), -EBADMSG);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nA: b\nc\r\n\r\n", &h), -EBADMSG); /* bare LF */
	CHECK_EQ(parse_n("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 26, sizeof lower, &h), -EBADMSG);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", &h), -EBADMSG); /* bare CR */
	/* past max_fields */
	CHECK_EQ(parse("GET / HTTP/1.1\r\na:1\r\nb:1\r\nc:1\r\nd:1\r\ne:1\r\nf:1\r\ng:1\r\nh:1\r\n"
		   "i:1\r\n\r\n", &h), -E2BIG);
	/* no end within lim: 431; within len but past lim: still 431 */
	const char *big = "GET / HTTP/1.1\r\nA: 0123456789\r\n\r\n";
	CHECK_EQ(parse_n(big, strlen(big), 20, &h), -EMSGSIZE);
	CHECK_EQ(parse_n(big, 19, 20, &h), 0);
	CHECK_EQ(parse_n(big, strlen(big), strlen(big), &h), (long long)strlen(big));
	/* bad arguments */
	CHECK_EQ(rl_http_head_parse(NULL, 0, 10, &h), -EINVAL);
	return 0;
}
