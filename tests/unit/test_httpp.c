/*
 * Unit tests for httpp: request and response heads (accept and reject
 * tables, one rule per row), derived fields, header lookup and the chunked
 * decoder fed with every split of a few bodies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpp.h"
#include "unit.h"

#define R(s)	(s), sizeof(s) - 1

struct head_case {
	const char	*in;
	size_t		 len;
	const char	*why;	/* NULL when the head must be accepted */
};

static const struct head_case requests[] = {
	/* accepted */
	{ R("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.0\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\n\r\n"), NULL },	/* Host is the caller's call */
	{ R("POST /v1/x?a=b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
	    NULL },
	{ R("M-S.E_A!#$%&'*+^`|~ / HTTP/1.1\r\n\r\n"), NULL },
	{ R("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n"), NULL },
	{ R("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nX:\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nX: \t \r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nX: a\tb \xc3\xa9\xff\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nContent-Length: 000000000000000012\r\n\r\n"),
	    NULL },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: ChUnKeD\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nConnection: ,, close ,\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nConnection: a\r\nConnection: b\r\n\r\n"), NULL },
	/* line endings, NUL, termination */
	{ R("GET / HTTP/1.1\nHost: a\r\n\r\n"), "bare LF in head" },
	{ R("GET / HTTP/1.1\r\nHost: a\n\r\n"), "bare LF in head" },
	{ R("GET / HTTP/1.1\r\nHost: a\r\n\n"), "bare LF in head" },
	{ R("GET / HTTP/1.1\rHost: a\r\n\r\n"), "bare CR in head" },
	{ R("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), "bare CR in head" },
	{ R("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), "NUL in head" },
	{ R("GET /\0 HTTP/1.1\r\n\r\n"), "NUL in head" },
	{ R("GET / HTTP/1.1\r\nHost: a\r\n"), "head not terminated" },
	{ R("GET / HTTP/1.1\r\nHost: a\r\n\r"), "head not terminated" },
	{ R(""), "head not terminated" },
	{ R("GET / HTTP/1.1\r\n\r\nGET"), "data after head" },
	{ R("\r\nGET / HTTP/1.1\r\n\r\n"), "bad method" },
	/* request line */
	{ R("GET  / HTTP/1.1\r\n\r\n"), "bad request target" },
	{ R("GET /  HTTP/1.1\r\n\r\n"), "bad HTTP version" },
	{ R("GET / HTTP/1.1 \r\n\r\n"), "bad HTTP version" },
	{ R(" GET / HTTP/1.1\r\n\r\n"), "bad method" },
	{ R("GET\t/ HTTP/1.1\r\n\r\n"), "bad method" },
	{ R("G(T / HTTP/1.1\r\n\r\n"), "bad method" },
	{ R("GET\r\n\r\n"), "bad method" },
	{ R("GET /\x7f HTTP/1.1\r\n\r\n"), "bad request target" },
	{ R("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), "bad request target" },
	{ R("GET /a\tb HTTP/1.1\r\n\r\n"), "bad request target" },
	{ R("GET /\r\n\r\n"), "bad request target" },
	{ R("GET / HTTP/1.2\r\n\r\n"), "bad HTTP version" },
	{ R("GET / HTTP/2.0\r\n\r\n"), "bad HTTP version" },
	{ R("GET / http/1.1\r\n\r\n"), "bad HTTP version" },
	{ R("GET / HTTP/1.10\r\n\r\n"), "bad HTTP version" },
	{ R("GET / HTTP/1\r\n\r\n"), "bad HTTP version" },
	{ R("GET / \r\n\r\n"), "bad HTTP version" },
	/* header lines */
	{ R("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), "whitespace before colon" },
	{ R("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), "whitespace before colon" },
	{ R("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), "obsolete line folding" },
	{ R("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), "obsolete line folding" },
	{ R("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), "obsolete line folding" },
	{ R("GET / HTTP/1.1\r\n: a\r\n\r\n"), "bad header name" },
	{ R("GET / HTTP/1.1\r\nHost\r\n\r\n"), "bad header name" },
	{ R("GET / HTTP/1.1\r\nX(y): a\r\n\r\n"), "bad header name" },
	{ R("GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n"), "bad header name" },
	{ R("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), "bad header value" },
	{ R("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), "bad header value" },
	{ R("GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n"), "bad header value" },
	/* Content-Length */
	{ R("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
	    "duplicate Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n"),
	    "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"),
	    "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length:\r\n\r\n"), "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n"),
	    "bad Content-Length" },
	{ R("GET / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n"),
	    "bad Content-Length" },
	/* Transfer-Encoding */
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), "duplicate Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"),
	    "both Content-Length and Transfer-Encoding" },
	{ R("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 3\r\n\r\n"),
	    "both Content-Length and Transfer-Encoding" },
	{ R("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    "Transfer-Encoding in HTTP/1.0" },
	/* Host, Connection */
	{ R("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), "duplicate Host" },
	{ R("GET / HTTP/1.1\r\nHost:\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"), NULL },
	{ R("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), "bad Host" },
	{ R("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), "bad Host" },
	{ R("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), "bad Host" },
	{ R("GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n"), "bad Host" },
	{ R("GET / HTTP/1.1\r\nConnection: close keep-alive\r\n\r\n"),
	    "bad Connection header" },
	{ R("GET / HTTP/1.1\r\nConnection: \"close\"\r\n\r\n"),
	    "bad Connection header" },
};

static const struct head_case responses[] = {
	{ R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), NULL },
	{ R("HTTP/1.1 200\r\n\r\n"), NULL },
	{ R("HTTP/1.1 200 \r\n\r\n"), NULL },
	{ R("HTTP/1.0 404 Not  Found \xc3\xa9\r\n\r\n"), NULL },
	{ R("HTTP/1.1 100 Continue\r\n\r\n"), NULL },
	{ R("HTTP/1.1 599 x\r\n\r\n"), NULL },
	{ R("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n"), NULL },
	{ R("HTTP/1.1 099 x\r\n\r\n"), "bad status code" },
	{ R("HTTP/1.1 600 x\r\n\r\n"), "bad status code" },
	{ R("HTTP/1.1 2x0 OK\r\n\r\n"), "bad status code" },
	{ R("HTTP/1.1 2000 OK\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.1 20 OK\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.1 20\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.1 2/0 OK\r\n\r\n"), "bad status code" },
	{ R("HTTP/1.1  200 OK\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.2 200 OK\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.1\t200 OK\r\n\r\n"), "bad status line" },
	{ R("HTTP/1.1 200 O\x01K\r\n\r\n"), "bad reason phrase" },
	{ R("HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n"), "bare LF in head" },
	{ R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n"),
	    "duplicate Content-Length" },
	{ R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"),
	    "both Content-Length and Transfer-Encoding" },
	{ R("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    "Transfer-Encoding in HTTP/1.0" },
	{ R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
	    "unsupported Transfer-Encoding" },
	{ R("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), "obsolete line folding" },
};

/* Parse one row; 1 when it behaves as the table says. */
static int
row_ok(const struct head_case *t, int request)
{
	struct httpp_msg	 m;
	const char		*why = NULL;
	int			 r;

	r = request ? httpp_parse_request(t->in, t->len, &m, &why) :
	    httpp_parse_response(t->in, t->len, &m, &why);
	if (t->why == NULL && r == 0)
		return 1;
	if (t->why != NULL && r == -1 && why != NULL && strcmp(why, t->why) == 0)
		return 1;
	fprintf(stderr, "%s \"%.*s\": got %d \"%s\", want \"%s\"\n",
	    request ? "request" : "response", (int)strcspn(t->in, "\r\n"),
	    t->in, r, why ? why : "", t->why ? t->why : "ok");
	return 0;
}

/* One check per table row. */
static void
test_tables(void)
{
	size_t	i;

	for (i = 0; i < sizeof requests / sizeof requests[0]; i++)
		CHECK(row_ok(&requests[i], 1));
	for (i = 0; i < sizeof responses / sizeof responses[0]; i++)
		CHECK(row_ok(&responses[i], 0));
}

/* Length of a head inside a longer buffer. */
static void
test_head_len(void)
{
	const char	*s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
	size_t		 i, n = strlen(s);

	CHECK(httpp_head_len(s, n) == n - 4);
	for (i = 0; i < n - 4; i++) {
		if (httpp_head_len(s, i) != 0)
			break;
	}
	CHECK(i == n - 4);
	CHECK(httpp_head_len(R("\r\n\r\n")) == 4);
	CHECK(httpp_head_len(R("GET / HTTP/1.1\r\n\r")) == 0);
	/* an invalid byte ends the head early so the parser can refuse it */
	CHECK(httpp_head_len(R("GET / HTTP/1.1\n\nxx")) == 15);
	CHECK(httpp_head_len(R("GET / HTTP/1.1\r\nX: \rY\r\n\r\n")) == 21);
	CHECK(httpp_head_len(R("GET\0 / HTTP/1.1\r\n\r\n")) == 4);
	CHECK(httpp_head_len(R("\n")) == 1);
}

/* A head scanned as it arrives, a piece at a time, ends where a one-shot scan does. */
static void
test_head_scan(void)
{
	static const char *const heads[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
		"POST /x HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n",
		"GET / HTTP/1.1\n\nxx",
		"GET / HTTP/1.1\r\nX: \rY\r\n\r\n",
		"GET / HTTP/1.1\r\n\r",
		"\r\n\r\n",
	};
	size_t	i, step, cut, len, from, got, whole;

	for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		len = strlen(heads[i]);
		whole = httpp_head_len(heads[i], len);
		for (step = 1; step <= len; step++) {
			from = got = 0;
			for (cut = step; got == 0; cut += step) {
				if (cut > len)
					cut = len;
				got = httpp_head_scan(heads[i], cut, &from);
				if (got == 0)
					CHECK(from == cut);
				if (cut == len)
					break;
			}
			CHECK(got == whole);
		}
	}
	/* a byte scanned once is not looked at again: a CR at the end of a piece */
	from = 0;
	CHECK(httpp_head_scan(R("GET / HTTP/1.1\r"), &from) == 0 && from == 15);
	CHECK(httpp_head_scan(R("GET / HTTP/1.1\rX"), &from) == 16);
}

/* Fields of an accepted request. */
static void
test_request_fields(void)
{
	static const char	 h[] = "PUT /a/b?c HTTP/1.1\r\n"
	    "Host:  api.example:443 \t\r\n"
	    "Content-Length: 42\r\n"
	    "Expect: 100-Continue\r\n"
	    "X-Empty:\r\n\r\n";
	struct httpp_msg	 m;
	const char		*why = NULL;
	const struct httpp_header *x;

	CHECK(httpp_parse_request(h, sizeof h - 1, &m, &why) == 0);
	CHECK(m.method_len == 3 && memcmp(m.method, "PUT", 3) == 0);
	CHECK(m.target_len == 6 && memcmp(m.target, "/a/b?c", 6) == 0);
	CHECK(m.minor == 1);
	CHECK(m.nhdr == 4);
	CHECK(m.content_length == 42);
	CHECK(m.chunked == 0);
	CHECK(m.keepalive == 1);
	CHECK(m.expect_continue == 1);
	CHECK(m.host != NULL && m.host_len == 15 &&
	    memcmp(m.host, "api.example:443", 15) == 0);
	x = httpp_find(&m, "x-EMPTY");
	CHECK(x != NULL && x->value_len == 0 && x == &m.hdr[3]);
	CHECK(httpp_find(&m, "content-length") == &m.hdr[1]);
	CHECK(httpp_find(&m, "Content-Lengt") == NULL);
	CHECK(httpp_find(&m, "Content-Length2") == NULL);
	CHECK(httpp_find(&m, "") == NULL);
}

/* httpp_find returns the first of repeated headers. */
static void
test_find_first(void)
{
	struct httpp_msg	 m;

	CHECK(httpp_parse_request(R("GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n"),
	    &m, NULL) == 0);
	CHECK(httpp_find(&m, "A") == &m.hdr[0]);
	CHECK(httpp_find(&m, "a")->value[0] == '1');
	CHECK(httpp_parse_request(R("GET / HTTP/1.1\r\nA : 1\r\n\r\n"), &m,
	    NULL) == -1);
}

/* Chunked and Expect outside HTTP/1.1, no-length defaults. */
static void
test_derived(void)
{
	struct httpp_msg	 m;

	CHECK(httpp_parse_request(R("POST / HTTP/1.1\r\n"
	    "Transfer-Encoding:  chunked \r\n\r\n"), &m, NULL) == 0);
	CHECK(m.chunked == 1 && m.content_length == -1 && m.host == NULL);
	CHECK(httpp_parse_request(R("POST / HTTP/1.0\r\n"
	    "Expect: 100-continue\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.expect_continue == 0);
	CHECK(httpp_parse_request(R("POST / HTTP/1.1\r\n"
	    "Expect: 100-continue, foo\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.expect_continue == 0);
	CHECK(httpp_parse_request(R("GET / HTTP/1.1\r\n"
	    "Content-Length: 999999999999999999\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.content_length == 999999999999999999LL);
}

struct ka_case {
	const char	*in;
	int		 keepalive;
};

static const struct ka_case kas[] = {
	{ "GET / HTTP/1.1\r\n\r\n", 1 },
	{ "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nConnection: te, Close\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n", 0 },
	{ "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", 1 },
	{ "GET / HTTP/1.1\r\nConnection: clase\r\n\r\n", 1 },
	{ "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 1 },
	{ "GET / HTTP/1.1\r\nX: close\r\n\r\n", 1 },
	{ "GET / HTTP/1.0\r\n\r\n", 0 },
	{ "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1 },
	{ "GET / HTTP/1.0\r\nConnection: foo ,keep-alive\r\n\r\n", 1 },
	{ "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0 },
	{ "GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", 0 },
};

/* Persistence per HTTP version and Connection tokens. */
static void
test_keepalive(void)
{
	struct httpp_msg	 m;
	size_t			 i;

	for (i = 0; i < sizeof kas / sizeof kas[0]; i++) {
		CHECK(httpp_parse_request(kas[i].in, strlen(kas[i].in), &m,
		    NULL) == 0 && m.keepalive == kas[i].keepalive);
	}
	CHECK(httpp_parse_response(R("HTTP/1.0 200 OK\r\n"
	    "Connection: keep-alive\r\n\r\n"), &m, NULL) == 0 && m.keepalive);
	CHECK(httpp_parse_response(R("HTTP/1.1 200 OK\r\n"
	    "Connection: close\r\n\r\n"), &m, NULL) == 0 && !m.keepalive);
}

/* Fields of accepted responses. */
static void
test_response_fields(void)
{
	struct httpp_msg	 m;

	CHECK(httpp_parse_response(R("HTTP/1.1 503 Service Unavailable\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.status == 503 && m.minor == 1 && m.chunked == 1);
	CHECK(m.reason_len == 19 && memcmp(m.reason, "Service Unavailable",
	    19) == 0);
	CHECK(m.method == NULL && m.target == NULL);
	CHECK(httpp_parse_response(R("HTTP/1.0 204\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.status == 204 && m.minor == 0 && m.reason_len == 0 &&
	    m.content_length == -1 && !m.keepalive);
	/* Host and Expect are request headers: not interpreted here */
	CHECK(httpp_parse_response(R("HTTP/1.1 200 OK\r\nHost: a\r\n"
	    "Expect: 100-continue\r\n\r\n"), &m, NULL) == 0);
	CHECK(m.host == NULL && m.expect_continue == 0);
	/* a request line is not a status line and vice versa */
	CHECK(httpp_parse_response(R("GET / HTTP/1.1\r\n\r\n"), &m, NULL) == -1);
	CHECK(httpp_parse_request(R("HTTP/1.1 200 OK\r\n\r\n"), &m, NULL) == -1);
}

/* Exactly HTTPP_MAX_HEADERS headers pass, one more fails. */
static void
test_max_headers(void)
{
	char			 buf[4096];
	struct httpp_msg	 m;
	const char		*why = NULL;
	size_t			 n;
	int			 i;

	n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTPP_MAX_HEADERS; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "X%d: v\r\n", i);
	memcpy(buf + n, "\r\n", 2);
	CHECK(httpp_parse_request(buf, n + 2, &m, &why) == 0);
	CHECK(m.nhdr == HTTPP_MAX_HEADERS);
	n += (size_t)snprintf(buf + n, sizeof buf - n, "Y: v\r\n\r\n");
	CHECK(httpp_parse_request(buf, n, &m, &why) == -1);
	CHECK_STREQ(why, "too many headers");
}

/* Output collected from the chunked decoder. */
struct sink {
	char	buf[8192];
	size_t	n;
	int	overflow;
	int	calls;
};

/* emit callback: append to the sink. */
static void
sink_emit(void *arg, const char *p, size_t n)
{
	struct sink	*s = arg;

	s->calls++;
	if (n == 0 || n > sizeof s->buf - s->n) {
		s->overflow = 1;
		return;
	}
	memcpy(s->buf + s->n, p, n);
	s->n += n;
}

/*
 * Feed in[0..len) in pieces cut at the offsets in cuts[0..ncuts), ascending.
 * Returns total bytes consumed, or -1; *why, *done and the sink as left.
 */
static long
feed_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
    struct sink *s, int *done, const char **why)
{
	struct httpp_chunked	 c;
	size_t			 start = 0, end, k;
	ssize_t			 r;
	long			 total = 0;

	httpp_chunked_init(&c);
	memset(s, 0, sizeof *s);
	*done = 0;
	for (k = 0; k <= ncuts; k++) {
		end = k < ncuts ? cuts[k] : len;
		r = httpp_chunked_feed(&c, in + start, end - start, sink_emit, s,
		    done, why);
		if (r == -1)
			return -1;
		total += r;
		if (*done)
			return total;
		if ((size_t)r != end - start)
			return -2;	/* stopped early without being done */
		start = end;
	}
	return total;
}

struct chunk_case {
	const char	*in;
	size_t		 len;
	const char	*out;	/* decoded body; NULL when it must fail */
	size_t		 body;	/* bytes of in that belong to the body */
	const char	*why;
};

static const struct chunk_case chunks[] = {
	{ R("0\r\n\r\n"), "", 5, NULL },
	{ R("5\r\nhello\r\n0\r\n\r\n"), "hello", 15, NULL },
	{ R("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n"),
	    "hello world", 26, NULL },
	{ R("a\r\n0123456789\r\nA\r\nabcdefghij\r\n000\r\n\r\n"),
	    "0123456789abcdefghij", 37, NULL },
	{ R("0000000000000003\r\nabc\r\n0\r\n\r\n"), "abc", 28, NULL },
	{ R("3;name=val;q=\"a;\\\"b\\\\\" ; x ;y = z\r\nabc\r\n0;last\r\n\r\n"),
	    "abc", 50, NULL },
	{ R("2\r\n\r\n\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\nnext"), "\r\n", 26, NULL },
	{ R("1 ;a\r\nx\r\n0\r\nT: \xc3\xa9\t\r\n\r\n"), "x", 22, NULL },
	{ R("1 \t; a = b ;c=\"\"\r\nx\r\n0\r\n\r\n"), "x", 26, NULL },
	/* malformed */
	{ R("\r\n"), NULL, 0, "bad chunk size" },
	{ R("g\r\n"), NULL, 0, "bad chunk size" },
	{ R("-1\r\n"), NULL, 0, "bad chunk size" },
	{ R("0x5\r\n"), NULL, 0, "bad chunk size" },
	{ R("5\nhello\r\n0\r\n\r\n"), NULL, 0, "bad chunk size" },
	{ R("5\r\r\nhello"), NULL, 0, "bare CR in chunk size line" },
	{ R("10000000000000000\r\n"), NULL, 0, "chunk size too long" },
	{ R("00000000000000001\r\nx"), NULL, 0, "chunk size too long" },
	{ R("ffffffffffffffff0\r\n"), NULL, 0, "chunk size too long" },
	{ R("5\r\nhelloX\r\n0\r\n\r\n"), NULL, 0, "missing CRLF after chunk data" },
	{ R("5\r\nhello\n0\r\n\r\n"), NULL, 0, "missing CRLF after chunk data" },
	{ R("5\r\nhello\rX0\r\n\r\n"), NULL, 0, "missing CRLF after chunk data" },
	{ R("5\r\nhello0\r\n\r\n"), NULL, 0, "missing CRLF after chunk data" },
	{ R("1 \r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=\"b\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=b c\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a b\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=\"b\"c\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=b\"c\"\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;;a\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a \r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a  \t=b\r\nx\r\n0\r\n\r\n"), "x", 18, NULL },
	{ R("1;a=\"\\\x01\"\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a\x01\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("1;a=\"\x7f\"\r\nx\r\n0\r\n\r\n"), NULL, 0, "bad chunk extension" },
	{ R("0\r\nX: a\nY: b\r\n\r\n"), NULL, 0, "bad trailer" },
	{ R("0\r\nX: a\r\n b\r\n\r\n"), NULL, 0, "obsolete line folding in trailer" },
	{ R("0\r\nX : a\r\n\r\n"), NULL, 0, "bad trailer" },
	{ R("0\r\n: a\r\n\r\n"), NULL, 0, "bad trailer" },
	{ R("0\r\nX: a\0\r\n\r\n"), NULL, 0, "bad trailer" },
	{ R("0\r\n\rX"), NULL, 0, "bad trailer" },
	{ R("0\r\nX: a\rY: b\r\n\r\n"), NULL, 0, "bad trailer" },
	{ R("0\r\n\n"), NULL, 0, "bad trailer" },
};

/* Check one case whole, byte by byte and at every two-part split. */
static int
chunk_case_bad(const struct chunk_case *t)
{
	struct sink	 s;
	const char	*why;
	size_t		 cuts[1], *all, i, nbad = 0;
	long		 r;
	int		 done;

	all = malloc(t->len * sizeof *all + 1);
	for (i = 0; i < t->len; i++)
		all[i] = i + 1;
	for (i = 0; i <= t->len + 1; i++) {
		why = NULL;
		if (i == t->len + 1)
			r = feed_cuts(t->in, t->len, all, t->len ? t->len - 1 : 0,
			    &s, &done, &why);
		else {
			cuts[0] = i;
			r = feed_cuts(t->in, t->len, cuts, 1, &s, &done, &why);
		}
		if (t->out != NULL && (r != (long)t->body || !done ||
		    s.overflow || s.n != strlen(t->out) ||
		    memcmp(s.buf, t->out, s.n) != 0))
			nbad++;
		if (t->out == NULL && (r != -1 || why == NULL ||
		    strcmp(why, t->why) != 0))
			nbad++;
	}
	free(all);
	return nbad != 0;
}

/* The decoder tables: one check per case, each fed every way. */
static void
test_chunked_table(void)
{
	size_t	i;

	for (i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		if (chunk_case_bad(&chunks[i]))
			fprintf(stderr, "chunk case %zu failed\n", i);
		CHECK(!chunk_case_bad(&chunks[i]));
	}
}

/* Incomplete input is not an error; errors are sticky; done is final. */
static void
test_chunked_state(void)
{
	struct httpp_chunked	 c;
	struct sink		 s;
	const char		*why = NULL;
	int			 done = 1;

	memset(&s, 0, sizeof s);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, R("5\r\nhel"), sink_emit, &s, &done,
	    &why) == 6 && !done && s.n == 3);
	CHECK(httpp_chunked_feed(&c, R(""), sink_emit, &s, &done, &why) == 0 &&
	    !done);
	CHECK(httpp_chunked_feed(&c, R("lo\r\n0\r\n\r\nrest"), NULL, NULL,
	    &done, &why) == 9 && done && s.n == 3);
	CHECK(httpp_chunked_feed(&c, R("rest"), sink_emit, &s, &done,
	    &why) == 0 && done);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, R("z"), sink_emit, &s, &done, &why) == -1);
	why = NULL;
	CHECK(httpp_chunked_feed(&c, R("0\r\n\r\n"), sink_emit, &s, &done,
	    &why) == -1 && !done);
	CHECK_STREQ(why, "bad chunk size");
	/* 16 digits of f is the largest size and does not overflow */
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, R("ffffffffffffffff\r\nab"), NULL, NULL,
	    &done, &why) == 20 && c.remaining == 0xfffffffffffffffdULL);
}

/* Size lines and trailer lines are bounded. */
static void
test_chunked_limits(void)
{
	static char		 buf[3 * HTTPP_CHUNK_LINE_MAX];
	struct httpp_chunked	 c;
	const char		*why = NULL;
	size_t			 n;
	int			 done;

	/* "1;" + name up to exactly the limit with CRLF, then one more */
	n = HTTPP_CHUNK_LINE_MAX - 2;
	memcpy(buf, "1;", 2);
	memset(buf + 2, 'a', n - 2);
	memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, buf, n + 10, NULL, NULL, &done,
	    &why) == (ssize_t)n + 10 && done);
	memcpy(buf + n, "a\r\nx\r\n0\r\n\r\n", 11);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, buf, n + 11, NULL, NULL, &done,
	    &why) == -1);
	CHECK_STREQ(why, "chunk size line too long");
	/* one trailer line over the limit */
	memcpy(buf, "0\r\nX:", 5);
	memset(buf + 5, 'v', HTTPP_TRAILER_LINE_MAX);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, buf, 5 + HTTPP_TRAILER_LINE_MAX, NULL,
	    NULL, &done, &why) == -1);
	CHECK_STREQ(why, "trailer line too long");
	/* too many trailer lines */
	memcpy(buf, "0\r\n", 3);
	for (n = 3; n < 3 + 5 * (HTTPP_MAX_TRAILERS + 1); n += 5)
		memcpy(buf + n, "X:\t\r\n", 5);
	httpp_chunked_init(&c);
	CHECK(httpp_chunked_feed(&c, buf, n, NULL, NULL, &done, &why) == -1);
	CHECK_STREQ(why, "too many trailers");
}

int
main(void)
{
	test_tables();
	test_head_len();
	test_head_scan();
	test_request_fields();
	test_find_first();
	test_derived();
	test_keepalive();
	test_response_fields();
	test_max_headers();
	test_chunked_table();
	test_chunked_state();
	test_chunked_limits();
	UNIT_END("test_httpp");
}
