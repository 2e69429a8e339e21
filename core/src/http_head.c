/* SPDX-License-Identifier: MIT */
/*
 * http_head.c - the byte-level half of ringline.http's request-head parser:
 * finds the head's end, checks every byte against RFC 9112's grammar and
 * records where the method, target, version and each field lie. The Lua
 * half (lua/ringline/http_parse.lua) makes the strings and applies the
 * field semantics (Content-Length, Transfer-Encoding, Connection, ...).
 *
 * It is here, not in Lua, because it is the per-request cost of every
 * HTTP server: in Lua each scan was a call to libc's strspn, which builds
 * a 256-byte table from its character-set string on every call (14% of a
 * pipelined hello server's CPU), and byte loops nested in the field loop
 * made the JIT split the parser into several traces. Here each scan is a
 * loop over a constant table.
 *
 * Every scan stops at a byte its set excludes, and a CR (in no set but the
 * value's, whose scan is memchr bounded by the head's end) comes before
 * the head's final CRLFCRLF, so nothing past it is read.
 */
#include <errno.h>
#include <string.h>

#include "ringline.h"

enum { CR = 13, LF = 10, SP = 32, HT = 9 };

/* tchar of RFC 9110 (method and field-name bytes) */
static const uint8_t tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
	['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
	['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* The fields whose meaning the parser applies, by their lower-case name. */
static const struct {
	const char *name;
	uint8_t len, kind;
} known[] = {
	{ "host", 4, RL_HTTP_HOST },
	{ "expect", 6, RL_HTTP_EXPECT },
	{ "connection", 10, RL_HTTP_CONNECTION },
	{ "content-length", 14, RL_HTTP_CONTENT_LENGTH },
	{ "transfer-encoding", 17, RL_HTTP_TRANSFER_ENCODING },
};

static uint8_t kind_of(const uint8_t *lower, uint32_t n)
{
	/* by length first: most fields are none of these, and no two share one */
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
		if (known[k].len == n)
			return memcmp(known[k].name, lower, n) == 0 ? known[k].kind : RL_HTTP_OTHER;
	return RL_HTTP_OTHER;
}

/* Index just past the first CRLFCRLF in p[0, n), or 0. A scan from CR to
 * CR (memchr) beats memmem's set-up for the short heads most requests
 * have. */
static size_t head_end(const uint8_t *p, size_t n)
{
	const uint8_t *q = p, *end = p + n;
	while (end - q >= 4) {
		q = memchr(q, '\r', (size_t)(end - q) - 3);
		if (!q)
			return 0;
		if (q[1] == '\n' && q[2] == '\r' && q[3] == '\n')
			return (size_t)(q - p) + 4;
		q++;
	}
	return 0;
}

int rl_http_head_parse(const uint8_t *p, size_t len, size_t lim, struct rl_http_head *h)
{
	if (!p || !h || !h->fields || !h->lower)
		return -EINVAL;
	size_t n = len < lim ? len : lim;
	size_t e = head_end(p, n);
	if (!e)
		return len >= lim ? -EMSGSIZE : 0;

	/* request line: method SP target SP HTTP/d.d CRLF */
	size_t i = 0;
	while (tchar[p[i]])
		i++;
	if (i == 0 || p[i] != SP)
		return -EBADMSG;
	h->method_len = (uint32_t)i;
	size_t t = ++i;
	while (p[i] > SP && p[i] < 127) /* VCHAR */
		i++;
	if (i == t || p[i] != SP)
		return -EBADMSG;
	h->target_off = (uint32_t)t;
	h->target_len = (uint32_t)(i - t);
	i++;
	if (i + 10 > e || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.' ||
	    p[i + 8] != CR || p[i + 9] != LF)
		return -EBADMSG;
	int major = p[i + 5] - '0', minor = p[i + 7] - '0';
	if (major < 0 || major > 9 || minor < 0 || minor > 9)
		return -EBADMSG;
	if (major != 1 || minor > 1)
		return -EPROTONOSUPPORT;
	h->minor = (uint8_t)minor;
	i += 10;

	/* fields: name ":" OWS value OWS CRLF, until the empty line */
	uint32_t nf = 0;
	while (i < e - 2) {
		size_t ns = i;
		/* the lower-case copy of the name, at the same offset */
		while (tchar[p[i]]) {
			uint8_t c = p[i];
			h->lower[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
			i++;
		}
		/* an empty name is also how obs-fold (a line starting SP/HT) shows */
		if (i == ns || p[i] != ':')
			return -EBADMSG;
		size_t ne = i++;
		while (p[i] == SP || p[i] == HT)
			i++;
		size_t vs = i;
		/* the head ends in CRLFCRLF: a CR comes before e */
		const uint8_t *cr = memchr(p + i, CR, e - i);
		size_t c = (size_t)(cr - p);
		if (p[c + 1] != LF)
			return -EBADMSG;
		if (c > vs && (memchr(p + vs, LF, c - vs) || memchr(p + vs, 0, c - vs)))
			return -EBADMSG;
		size_t ve = c;
		while (ve > vs && (p[ve - 1] == SP || p[ve - 1] == HT))
			ve--;
		if (nf == h->max_fields)
			return -E2BIG;
		struct rl_http_field *f = &h->fields[nf++];
		f->name_off = (uint32_t)ns;
		f->name_len = (uint32_t)(ne - ns);
		f->value_off = (uint32_t)vs;
		f->value_len = (uint32_t)(ve - vs);
		f->kind = kind_of(h->lower + ns, f->name_len);
		i = c + 2;
	}
	h->nfields = nf;
	h->len = (uint32_t)e;
	return (int)e;
}
