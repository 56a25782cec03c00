/*
 * test_jbody.c — jbody_scan (validation, nonce detection, splice offsets,
 * redacted audit copy), jbody_scan_echo (a request's redacted values hidden
 * in its answer), jbody_nonce_member, jbody_quote, the staging writer
 * (jbody_sink) and redact_set.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "jbody.h"
#include "redact.h"
#include "unit.h"

#define DEPTH	32
#define L(s)	(s), (sizeof(s) - 1)	/* literal with its length (NULs kept) */

static struct redact_set *audit_rs;	/* the SPEC's example list */

/* Drain an evbuffer into a malloc'd NUL-terminated string. */
static char *
drain(struct evbuffer *ev)
{
	size_t	 n = evbuffer_get_length(ev);
	char	*s = malloc(n + 1);

	evbuffer_remove(ev, s, n);
	s[n] = '\0';
	return s;
}

/* Scan buf with output; the copy (malloc'd) or NULL on error. */
static char *
copy(const char *buf, size_t len, const struct redact_set *rs,
    const char **why)
{
	struct evbuffer	*ev = evbuffer_new();
	struct jbody	 jb;
	char		*s = NULL;

	if (jbody_scan(buf, len, 0, DEPTH, rs, ev, &jb, why) == 0)
		s = drain(ev);
	evbuffer_free(ev);
	return s;
}

/* Does the text (NUL-terminated) scan as one JSON value? */
static int
valid(const char *s)
{
	struct jbody	 jb;
	const char	*why;

	return jbody_scan(s, strlen(s), 0, DEPTH, NULL, NULL, &jb, &why) == 0;
}

/* Build the body the proxy sends upstream (malloc'd), as it would, or NULL. */
static char *
splice(const char *buf, size_t len, unsigned long long nonce)
{
	struct jbody	 jb;
	const char	*why;
	char		 m[JBODY_NONCE_MAX], *s;
	size_t		 n;

	if (len == 0) {
		buf = "{}";
		len = 2;
	}
	if (jbody_scan(buf, len, JBODY_OBJECT, DEPTH, NULL, NULL, &jb,
	    &why) == -1)
		return NULL;
	n = jb.has_nonce ? 0 : jbody_nonce_member(m, sizeof(m), nonce, jb.empty);
	s = malloc(len + n + 1);
	memcpy(s, buf, jb.open + 1);
	memcpy(s + jb.open + 1, m, n);
	memcpy(s + jb.open + 1 + n, buf + jb.open + 1, len - jb.open - 1);
	s[len + n] = '\0';
	return s;
}

/* Compare a spliced body with what is expected (NULL: must be refused). */
static void
check_splice(const char *in, const char *want)
{
	char	*got = splice(in, strlen(in), 5);

	if (want == NULL)
		CHECK(got == NULL);
	else {
		CHECK_STREQ(got, want);
		CHECK(got != NULL && valid(got));
	}
	free(got);
}

static void
test_splice(void)
{
	check_splice("", "{\"nonce\":5}");
	check_splice("{}", "{\"nonce\":5}");
	check_splice("{ }", "{\"nonce\":5 }");
	check_splice("{\n}\n", "{\"nonce\":5\n}\n");
	check_splice("  {\"a\":1}", "  {\"nonce\":5,\"a\":1}");
	check_splice("\r\n\t {\"a\":1}\r\n", "\r\n\t {\"nonce\":5,\"a\":1}\r\n");
	check_splice("{\"x\":{\"nonce\":1}}", "{\"nonce\":5,\"x\":{\"nonce\":1}}");
	check_splice("{\"l\":[{\"nonce\":1}]}", "{\"nonce\":5,\"l\":[{\"nonce\":1}]}");
	check_splice("{\"nonce\":\"dbe834b7-aa27-4554-9c25-95cd542a7efe\"}",
	    "{\"nonce\":\"dbe834b7-aa27-4554-9c25-95cd542a7efe\"}");
	check_splice("{\"from\":\"ETH\",\"nonce\":1717000000000.0}",
	    "{\"from\":\"ETH\",\"nonce\":1717000000000.0}");
	check_splice("{\"\\u006eonce\":1}", "{\"\\u006eonce\":1}");
	check_splice("{\"Nonce\":1}", "{\"nonce\":5,\"Nonce\":1}");
	check_splice("{\"nonce \":1}", "{\"nonce\":5,\"nonce \":1}");
	check_splice("{\"a\":123456789012345678901234567890,\"b\":1e400,"
	    "\"c\":-0.0,\"d\":1E-7,\"e\":0.10}",
	    "{\"nonce\":5,\"a\":123456789012345678901234567890,\"b\":1e400,"
	    "\"c\":-0.0,\"d\":1E-7,\"e\":0.10}");
	check_splice("{\"s\":\"\\u00e9\",\"t\":\"\xc3\xa9\",\"e\":\"\\ud83d\\ude00\","
	    "\"p\":\"a\\/b\",\"q\":\"\\\"\"}",
	    "{\"nonce\":5,\"s\":\"\\u00e9\",\"t\":\"\xc3\xa9\",\"e\":\"\\ud83d\\ude00\","
	    "\"p\":\"a\\/b\",\"q\":\"\\\"\"}");
	check_splice("{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } }",
	    "{\"nonce\":5, \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } }");
	check_splice("[1]", NULL);
	check_splice("\"{}\"", NULL);
	check_splice("{} {}", NULL);
}

static void
test_jbody_fields(void)
{
	struct jbody	 jb;
	const char	*why;

	CHECK(jbody_scan(L("  {\"nonce\":1,\"a\":2}"), JBODY_OBJECT, DEPTH,
	    NULL, NULL, &jb, &why) == 0);
	CHECK(jb.has_nonce == 1 && jb.is_object == 1 && jb.empty == 0 &&
	    jb.open == 2 && why == NULL);
	CHECK(jbody_scan(L("{\"nonce\":1,\"nonce\":2}"), JBODY_OBJECT, DEPTH,
	    NULL, NULL, &jb, &why) == 0 && jb.has_nonce == 1);
	CHECK(jbody_scan(L("{\"non\\u0000ce\":1}"), JBODY_OBJECT, DEPTH, NULL,
	    NULL, &jb, &why) == 0 && jb.has_nonce == 0);
	CHECK(jbody_scan(L("{\"a\":\"nonce\"}"), JBODY_OBJECT, DEPTH, NULL,
	    NULL, &jb, &why) == 0 && jb.has_nonce == 0);
	CHECK(jbody_scan(L("{ }"), JBODY_OBJECT, DEPTH, NULL, NULL, &jb,
	    &why) == 0 && jb.empty == 1 && jb.open == 0);
	CHECK(jbody_scan(L("{\"a\":{}}"), JBODY_OBJECT, DEPTH, NULL, NULL, &jb,
	    &why) == 0 && jb.empty == 0);
	CHECK(jbody_scan(L(" [{\"nonce\":1}]"), 0, DEPTH, NULL, NULL, &jb,
	    &why) == 0 && jb.is_object == 0 && jb.has_nonce == 0);
	CHECK(jbody_scan(L("12"), 0, 0, NULL, NULL, &jb, &why) == 0 &&
	    jb.is_object == 0);
	CHECK(jbody_scan(L("\"x\""), 0, DEPTH, NULL, NULL, &jb, &why) == 0);
}

/* The form of the top-level nonce: kind (and value, or token) as scanned. */
static void
check_nonce(const char *in, int kind, unsigned long long num, const char *tok)
{
	struct jbody	 jb;
	const char	*why;

	CHECK(jbody_scan(in, strlen(in), JBODY_OBJECT, DEPTH, NULL, NULL, &jb,
	    &why) == 0);
	if (jb.nonce_kind != kind)
		fprintf(stderr, "nonce kind of %s: %d, expected %d\n", in,
		    jb.nonce_kind, kind);
	CHECK(jb.nonce_kind == kind);
	CHECK(jb.has_nonce == (kind != JBODY_NONCE_NONE));
	if (kind == JBODY_NONCE_INT)
		CHECK(jb.nonce_num == num);
	if (kind == JBODY_NONCE_STRING)
		CHECK(jb.nonce_len == strlen(tok) &&
		    memcmp(in + jb.nonce_at, tok, jb.nonce_len) == 0);
}

static void
test_nonce_kind(void)
{
	check_nonce("{}", JBODY_NONCE_NONE, 0, NULL);
	check_nonce("{\"a\":{\"nonce\":1.5},\"b\":[{\"nonce\":-1}]}",
	    JBODY_NONCE_NONE, 0, NULL);
	check_nonce("{\"nonce\":0}", JBODY_NONCE_INT, 0, NULL);
	check_nonce("{ \"a\":1, \"nonce\" : 1795000000000 }", JBODY_NONCE_INT,
	    1795000000000ULL, NULL);
	check_nonce("{\"non\\u0063e\":42}", JBODY_NONCE_INT, 42, NULL);
	check_nonce("{\"nonce\":18446744073709551615}", JBODY_NONCE_INT,
	    18446744073709551615ULL, NULL);
	check_nonce("{\"nonce\":18446744073709551616}", JBODY_NONCE_BIG, 0, NULL);
	check_nonce("{\"nonce\":99999999999999999999999}", JBODY_NONCE_BIG, 0,
	    NULL);
	check_nonce("{\"nonce\":99999999999999999999999.5}", JBODY_NONCE_OTHER,
	    0, NULL);
	check_nonce("{\"nonce\":1795000000000.5}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":1795000000000.0}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":1795000000e3}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":1E0}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":-1}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":-0}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":true}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":null}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":{\"n\":1}}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":[1]}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":[],\"a\":\"x\"}", JBODY_NONCE_OTHER, 0, NULL);
	check_nonce("{\"nonce\":\"u-1\",\"a\":2}", JBODY_NONCE_STRING, 0,
	    "\"u-1\"");
	check_nonce("{\"a\":1, \"nonce\":\"\\u00e9\\\"\"}", JBODY_NONCE_STRING,
	    0, "\"\\u00e9\\\"\"");
	check_nonce("{\"nonce\":\"\"}", JBODY_NONCE_STRING, 0, "\"\"");
	check_nonce("{\"nonce\":1,\"nonce\":2}", JBODY_NONCE_DUP, 0, NULL);
	check_nonce("{\"nonce\":1,\"a\":{},\"nonce\":\"x\"}", JBODY_NONCE_DUP, 0,
	    NULL);
	check_nonce("{\"nonce\":\"x\",\"nonce\":1}", JBODY_NONCE_DUP, 0, NULL);
}

/* A string nonce's raw token read as digits: kind, and value if INT. */
static void
check_digits(const char *tok, int kind, unsigned long long num)
{
	unsigned long long	v = 12345;
	int			got = jbody_nonce_digits(tok, strlen(tok), &v);

	if (got != kind)
		fprintf(stderr, "digits kind of %s: %d, expected %d\n", tok, got,
		    kind);
	CHECK(got == kind);
	if (kind == JBODY_NONCE_INT)
		CHECK(v == num);
}

static void
test_nonce_digits(void)
{
	struct jbody	 jb;
	const char	*why, *in;
	unsigned long long v = 0;

	check_digits("\"1795000000000\"", JBODY_NONCE_INT, 1795000000000ULL);
	check_digits("\"0\"", JBODY_NONCE_INT, 0);
	check_digits("\"7\"", JBODY_NONCE_INT, 7);
	check_digits("\"000042\"", JBODY_NONCE_INT, 42);	/* leading zeros: the value */
	check_digits("\"18446744073709551615\"", JBODY_NONCE_INT,
	    18446744073709551615ULL);
	check_digits("\"00000000000000000001\"", JBODY_NONCE_INT, 1);	/* 20 digits */
	check_digits("\"000000000000000000001\"", JBODY_NONCE_BIG, 0);	/* 21 */
	check_digits("\"18446744073709551616\"", JBODY_NONCE_BIG, 0);
	check_digits("\"99999999999999999999999\"", JBODY_NONCE_BIG, 0);
	check_digits("\"\"", JBODY_NONCE_STRING, 0);
	check_digits("\"-1\"", JBODY_NONCE_STRING, 0);
	check_digits("\"+1\"", JBODY_NONCE_STRING, 0);
	check_digits("\" 1\"", JBODY_NONCE_STRING, 0);
	check_digits("\"1 \"", JBODY_NONCE_STRING, 0);
	check_digits("\"1.0\"", JBODY_NONCE_STRING, 0);
	check_digits("\"1e3\"", JBODY_NONCE_STRING, 0);
	check_digits("\"0x10\"", JBODY_NONCE_STRING, 0);
	/* a digit written as an escape is a digit to any JSON reader */
	check_digits("\"\\u0031\"", JBODY_NONCE_INT, 1);
	check_digits("\"1\\u0030\"", JBODY_NONCE_INT, 10);
	check_digits("\"\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039"
	    "\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\\u0039\"",
	    JBODY_NONCE_INT, 9999999999999999999ULL);		/* 19 escaped */
	check_digits("\"1\\u00300000000000000000000\"", JBODY_NONCE_BIG, 0);	/* 21 decoded */
	check_digits("\"99999999999999999\\u0039\\u0039\\u0039\"", JBODY_NONCE_BIG, 0);
	check_digits("\"\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030"
	    "\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0030\\u0031\"",
	    JBODY_NONCE_BIG, 0);				/* 21 escaped: longer than 20 */
	check_digits("\"\\u003A\"", JBODY_NONCE_STRING, 0);	/* ':' */
	check_digits("\"\\u002f\"", JBODY_NONCE_STRING, 0);	/* '/' */
	check_digits("\"\\u0661\"", JBODY_NONCE_STRING, 0);	/* ARABIC-INDIC ONE */
	check_digits("\"1\\n\"", JBODY_NONCE_STRING, 0);
	check_digits("\"\\u003\"", JBODY_NONCE_STRING, 0);	/* cut short */
	check_digits("\"\\\\u0031\"", JBODY_NONCE_STRING, 0);	/* a backslash, then text */
	check_digits("\"\\U0031\"", JBODY_NONCE_STRING, 0);
	check_digits("\"9999999999999999999999x\"", JBODY_NONCE_STRING, 0);
	check_digits("\"dbe834b7-aa27-4554-9c25-95cd542a7efe\"", JBODY_NONCE_STRING, 0);
	check_digits("\"\xd9\xa1\"", JBODY_NONCE_STRING, 0);	/* ARABIC-INDIC ONE */
	check_digits("\"", JBODY_NONCE_STRING, 0);
	check_digits("", JBODY_NONCE_STRING, 0);
	check_digits("12", JBODY_NONCE_STRING, 0);	/* not a string token */
	/* on the token jbody_scan points at */
	in = "{\"a\":1, \"nonce\" : \"1795000000001\" }";
	CHECK(jbody_scan(in, strlen(in), JBODY_OBJECT, DEPTH, NULL, NULL, &jb, &why) == 0);
	CHECK(jb.nonce_kind == JBODY_NONCE_STRING);
	CHECK(jbody_nonce_digits(in + jb.nonce_at, jb.nonce_len, &v) == JBODY_NONCE_INT &&
	    v == 1795000000001ULL);
}

/* Scan in must fail with the reason want, with and without output. */
static void
check_bad(const char *in, size_t len, int flags, unsigned depth,
    const char *want)
{
	struct evbuffer	*ev = evbuffer_new();
	struct jbody	 jb;
	const char	*why = NULL, *why2 = NULL;

	CHECK(jbody_scan(in, len, flags, depth, NULL, NULL, &jb, &why) == -1);
	CHECK_STREQ(why, want);
	CHECK(jbody_scan(in, len, flags, depth, audit_rs, ev, &jb, &why2) == -1);
	CHECK_STREQ(why2, want);
	evbuffer_free(ev);
}

static void
test_invalid(void)
{
	check_bad("", 0, JBODY_OBJECT, DEPTH, "empty body");
	check_bad("", 0, 0, DEPTH, "empty body");
	check_bad(L(" \r\n"), 0, DEPTH, "invalid JSON");
	check_bad(L("[1,2]"), JBODY_OBJECT, DEPTH, "not a JSON object");
	check_bad(L(" \"{}\""), JBODY_OBJECT, DEPTH, "not a JSON object");
	check_bad(L("null"), JBODY_OBJECT, DEPTH, "not a JSON object");
	check_bad(L("{}{}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{} 1"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("1 2"), 0, DEPTH, "invalid JSON");
	/* an unfinished token after the value (yajl 2.1 let these through) */
	check_bad(L("{\"a\":1}\""), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":1} \"abc"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("true\""), 0, DEPTH, "invalid JSON");
	check_bad(L("\"a\"\":1"), 0, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":1,}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("[1,]"), 0, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":1"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\"}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{'a':1}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{a:1}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":01}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":1.}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":.5}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":+1}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":NaN}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":tru}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":1 /* c */}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("// c\n{}"), 0, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":\"x\ny\"}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":\"\\x\"}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\"a\":\"\\u12g4\"}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{\v}"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{}\f"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("{}\0"), JBODY_OBJECT, DEPTH, "invalid JSON");
	check_bad(L("\xef\xbb\xbf{}"), 0, DEPTH, "invalid JSON");	/* BOM */
	/* strict UTF-8: bad byte, overlong, encoded surrogate, > U+10FFFF, cut */
	check_bad(L("{\"a\":\"\xff\"}"), JBODY_OBJECT, DEPTH, "invalid UTF-8");
	check_bad(L("{\"a\":\"\xc0\xaf\"}"), JBODY_OBJECT, DEPTH, "invalid UTF-8");
	check_bad(L("{\"a\":\"\xe0\x80\xaf\"}"), JBODY_OBJECT, DEPTH,
	    "invalid UTF-8");
	check_bad(L("{\"a\":\"\xed\xa0\x80\"}"), JBODY_OBJECT, DEPTH,
	    "invalid UTF-8");
	check_bad(L("{\"a\":\"\xf4\x90\x80\x80\"}"), JBODY_OBJECT, DEPTH,
	    "invalid UTF-8");
	check_bad(L("{\"a\":\"\xe2\x82\"}"), JBODY_OBJECT, DEPTH, "invalid UTF-8");
	check_bad(L("{\"\xe9t\xe9\":1}"), JBODY_OBJECT, DEPTH, "invalid UTF-8");
	/* surrogate escapes must pair: lone high, lone low, reversed, high+BMP */
	check_bad(L("{\"a\":\"\\ud800\"}"), JBODY_OBJECT, DEPTH,
	    "unpaired surrogate escape");
	check_bad(L("{\"a\":\"\\uDC00\"}"), JBODY_OBJECT, DEPTH,
	    "unpaired surrogate escape");
	check_bad(L("{\"a\":\"\\ude00\\ud83d\"}"), JBODY_OBJECT, DEPTH,
	    "unpaired surrogate escape");
	check_bad(L("{\"a\":\"\\ud800\\u0041\"}"), JBODY_OBJECT, DEPTH,
	    "unpaired surrogate escape");
	check_bad(L("{\"\\ud800x\":1}"), JBODY_OBJECT, DEPTH,
	    "unpaired surrogate escape");
	/* depth: "{}" is 1 */
	check_bad(L("{\"a\":{\"b\":{\"c\":{}}}}"), JBODY_OBJECT, 3,
	    "nesting too deep");
	check_bad(L("[[[[]]]]"), 0, 3, "nesting too deep");
	check_bad(L("{\"a\":[]}"), JBODY_OBJECT, 1, "nesting too deep");
	check_bad(L("{}"), JBODY_OBJECT, 0, "nesting too deep");
}

static void
test_accepted_edges(void)
{
	struct jbody	 jb;
	const char	*why;
	char		*deep;
	size_t		 i;

	CHECK(jbody_scan(L("{\"a\":{\"b\":{}}}"), JBODY_OBJECT, 3, NULL, NULL,
	    &jb, &why) == 0);
	CHECK(jbody_scan(L("[[[]]]"), 0, 3, NULL, NULL, &jb, &why) == 0);
	CHECK(valid("{\"a\":\"\\uD83D\\uDE00\"}"));	/* upper-case pair */
	CHECK(valid("{\"a\":\"\\\\ud800\"}"));		/* escaped backslash */
	CHECK(valid("{\"a\":\"\xf4\x8f\xbf\xbf\xef\xbf\xbf\x7f\"}"));
	CHECK(valid("{\"a\":\"\\u0000\"}"));
	CHECK(valid(" {\"a\" :\t[ true ,false, null ,-1.5e+3 ] }\n"));
	/* a million brackets stop at the limit, long before the end */
	deep = malloc(1000000);
	for (i = 0; i < 1000000; i++)
		deep[i] = i < 500000 ? '[' : ']';
	CHECK(jbody_scan(deep, 1000000, 0, 64, NULL, NULL, &jb, &why) == -1);
	CHECK_STREQ(why, "nesting too deep");
	free(deep);
}

/* The redacted copy of in (NUL-terminated) must be want. */
static void
check_copy(const struct redact_set *rs, const char *in, const char *want)
{
	const char	*why;
	char		*got = copy(in, strlen(in), rs, &why);

	CHECK_STREQ(got, want);
	CHECK(got != NULL && valid(got));
	free(got);
}

/* The redacted copy of in must not contain secret anywhere. */
static void
check_hidden(const char *in, const char *secret)
{
	const char	*why;
	char		*got = copy(in, strlen(in), audit_rs, &why);

	CHECK(got != NULL && strstr(got, secret) == NULL);
	free(got);
}

static void
test_copy(void)
{
	/* compact, numbers verbatim, strings re-escaped minimally */
	check_copy(NULL, " { \"a\" : [ 1 , 2.50 , -0.0 , 1e400 ] ,\n\"b\":{} }\n",
	    "{\"a\":[1,2.50,-0.0,1e400],\"b\":{}}");
	check_copy(NULL, "{\"n\":123456789012345678901234567890}",
	    "{\"n\":123456789012345678901234567890}");
	check_copy(NULL, "{\"s\":\"x\\\"y\\\\z\\u0001\\n\\/\\u00e9\\ud83d\\ude00\"}",
	    "{\"s\":\"x\\\"y\\\\z\\u0001\\n/\xc3\xa9\xf0\x9f\x98\x80\"}");
	check_copy(NULL, "{\"\\u0000\":\"\\b\\f\\r\\t\\u001f\\u007f\"}",
	    "{\"\\u0000\":\"\\b\\f\\r\\t\\u001f\x7f\"}");
	check_copy(NULL, "[]", "[]");
	check_copy(NULL, " \"top\" ", "\"top\"");
	check_copy(NULL, "[null,true,false,{},[[]]]", "[null,true,false,{},[[]]]");
}

static void
test_redact(void)
{
	check_copy(audit_rs, "{\"password\":\"hunter2\",\"x\":1}",
	    "{\"password\":\"[REDACTED]\",\"x\":1}");
	check_copy(audit_rs, "{\"secret\":12345}", "{\"secret\":\"[REDACTED]\"}");
	check_copy(audit_rs, "{\"secret\":null,\"signature\":true}",
	    "{\"secret\":\"[REDACTED]\",\"signature\":\"[REDACTED]\"}");
	check_copy(audit_rs, "{\"requestHeaders\":{\"a\":\"b\",\"c\":[1,2]},\"k\":\"v\"}",
	    "{\"requestHeaders\":\"[REDACTED]\",\"k\":\"v\"}");
	check_copy(audit_rs, "{\"signature\":[1,{\"x\":\"y\"}],\"n\":[]}",
	    "{\"signature\":\"[REDACTED]\",\"n\":[]}");
	check_copy(audit_rs, "{\"secret\":{},\"password\":[]}",
	    "{\"secret\":\"[REDACTED]\",\"password\":\"[REDACTED]\"}");
	check_copy(audit_rs, "{\"success\":true,\"response\":{\"keys\":["
	    "{\"id\":1,\"secret\":\"S3CR3T\"},{\"id\":2,\"secret\":\"T0P\"}]}}",
	    "{\"success\":true,\"response\":{\"keys\":["
	    "{\"id\":1,\"secret\":\"[REDACTED]\"},{\"id\":2,\"secret\":\"[REDACTED]\"}]}}");
	check_copy(audit_rs, "[{\"password\":\"p\"},[{\"a\":{\"password\":1}}]]",
	    "[{\"password\":\"[REDACTED]\"},[{\"a\":{\"password\":\"[REDACTED]\"}}]]");
	check_copy(audit_rs, "{\"secret\":{\"password\":\"x\"},\"b\":2}",
	    "{\"secret\":\"[REDACTED]\",\"b\":2}");
	check_copy(audit_rs, "{\"a\":\"password\",\"l\":[\"secret\"]}",
	    "{\"a\":\"password\",\"l\":[\"secret\"]}");
	check_copy(audit_rs, "{\"Password\":\"x\",\"secret_\":\"y\"}",
	    "{\"Password\":\"x\",\"secret_\":\"y\"}");
	check_copy(audit_rs, "{\"pass\\u0077ord\":\"x\"}",
	    "{\"password\":\"[REDACTED]\"}");
	check_copy(audit_rs, "{\"password\":\"a\",\"password\":\"b\"}",
	    "{\"password\":\"[REDACTED]\",\"password\":\"[REDACTED]\"}");
	check_hidden("{\"password\":\"hunter2\"}", "hunter2");
	check_hidden("{\"password\":\"hun\\u0074er2\"}", "hun");
	check_hidden("{\"secret\":98765}", "98765");
	check_hidden("{\"requestBody\":\"{\\\"k\\\":\\\"SeKrEt\\\"}\"}", "SeKrEt");
	check_hidden("{\"requestHeaders\":{\"x-api-signature\":\"abcdef0123\"}}",
	    "abcdef0123");
	check_hidden("[[{\"z\":[{\"signature\":[\"deadbeef\"]}]}]]", "deadbeef");
}

static char	fp_seen[256];	/* the last value handed to test_fp */
static size_t	fp_seen_len;
static int	fp_calls;

/* A test fingerprint: FNV-1a 64, as hex; records its input. */
static void
test_fp(void *arg, const unsigned char *val, size_t len, char hex16[17])
{
	unsigned long long	h = 0xcbf29ce484222325ULL;
	size_t			i;

	(void)arg;
	fp_calls++;
	fp_seen_len = len < sizeof(fp_seen) ? len : sizeof(fp_seen);
	memcpy(fp_seen, val, fp_seen_len);
	for (i = 0; i < len; i++)
		h = (h ^ val[i]) * 0x100000001b3ULL;
	snprintf(hex16, 17, "%016llx", h);
}

/* A broken fingerprint that writes no hex. */
static void
test_fp_bad(void *arg, const unsigned char *val, size_t len, char hex16[17])
{
	(void)arg;
	(void)val;
	(void)len;
	memcpy(hex16, "ZZZZZZZZZZZZZZZ\"", 17);
}

/* In fingerprint mode the value handed to fn must be want. */
static void
check_fp(const struct redact_set *rs, const char *in, const char *want,
    const char *want_out)
{
	const char	*why;
	char		*got;

	fp_calls = 0;
	got = copy(in, strlen(in), rs, &why);
	CHECK(fp_calls == 1);
	CHECK(fp_seen_len == strlen(want) && memcmp(fp_seen, want,
	    fp_seen_len) == 0);
	if (want_out != NULL)
		CHECK_STREQ(got, want_out);
	CHECK(got != NULL && valid(got) && strstr(got, "hmac-sha256:") != NULL);
	free(got);
}

static void
test_fingerprint(void)
{
	struct redact_set	*rs;
	char			*cause, *got;
	const char		*why;

	rs = redact_set_new("password, secret", &cause);
	CHECK(redact_set_fingerprints(rs) == 0);
	redact_set_fingerprint(rs, test_fp, NULL);
	CHECK(redact_set_fingerprints(rs) == 1);
	/* FNV-1a 64 of "hunter2" */
	check_fp(rs, "{\"password\":\"hunter2\"}", "hunter2",
	    "{\"password\":\"hmac-sha256:4db147a54908e973\"}");
	check_fp(rs, "{\"password\":\"hun\\u0074er2\"}", "hunter2",
	    "{\"password\":\"hmac-sha256:4db147a54908e973\"}");
	check_fp(rs, "{\"secret\":12.50}", "12.50", NULL);
	check_fp(rs, "{\"secret\":null}", "null", NULL);
	check_fp(rs, "{\"secret\":false}", "false", NULL);
	check_fp(rs, "{\"secret\":\"a\\u00e9\"}", "a\xc3\xa9", NULL);
	check_fp(rs, "{\"x\":[{\"secret\": { \"a\" : [1, \"x\\/\"], \"b\":{} } }]}",
	    "{\"a\":[1,\"x/\"],\"b\":{}}", NULL);
	check_fp(rs, "{\"secret\":{\"password\":\"p\"}}", "{\"password\":\"p\"}",
	    NULL);
	check_fp(rs, "{\"secret\":[]}", "[]", NULL);
	/* a captured value larger than the stage grows on the heap */
	got = malloc(5000);
	memcpy(got, "{\"secret\":[", 11);
	memset(got + 11, '1', 4000);
	memcpy(got + 4011, "]}", 3);
	fp_calls = 0;
	free(copy(got, strlen(got), rs, &why));
	CHECK(fp_calls == 1 && why == NULL);
	free(got);
	redact_set_fingerprint(rs, test_fp_bad, NULL);
	check_copy(rs, "{\"secret\":\"x\"}", "{\"secret\":\"[REDACTED]\"}");
	redact_set_fingerprint(rs, NULL, NULL);
	check_copy(rs, "{\"secret\":\"x\"}", "{\"secret\":\"[REDACTED]\"}");
	redact_set_free(rs);
}

/*
 * The values redacted from a request, found again in its answer
 * (jbody_scan_echo): noted from req (which must scan), then the answer's
 * copy with them hidden.
 */
static void
note(const char *req, struct jbody_echo *e)
{
	struct evbuffer	*ev = evbuffer_new(), *plain = evbuffer_new();
	struct jbody	 jb;
	const char	*why;
	char		*a, *b;

	memset(e, 0, sizeof(*e));
	CHECK(jbody_scan_echo(req, strlen(req), JBODY_OBJECT | JBODY_NOTE, DEPTH,
	    audit_rs, ev, &jb, &why, e) == 0);
	/* noting does not change the request's own copy */
	CHECK(jbody_scan(req, strlen(req), JBODY_OBJECT, DEPTH, audit_rs, plain, &jb,
	    &why) == 0);
	a = drain(ev);
	b = drain(plain);
	CHECK_STREQ(a, b);
	free(a);
	free(b);
	evbuffer_free(ev);
	evbuffer_free(plain);
}

/* The answer's copy with e's values hidden (malloc'd), or NULL. */
static char *
hide(const char *resp, const struct redact_set *rs, struct jbody_echo *e)
{
	struct evbuffer	*ev = evbuffer_new();
	struct jbody	 jb;
	const char	*why;
	char		*s = NULL;

	if (jbody_scan_echo(resp, strlen(resp), 0, DEPTH, rs, ev, &jb, &why, e) == 0)
		s = drain(ev);
	evbuffer_free(ev);
	return s;
}

/* Noting req, the answer resp must be copied as want (and be valid). */
static void
check_echo(const char *req, const char *resp, const char *want)
{
	struct jbody_echo	 e;
	char			*got;

	note(req, &e);
	got = hide(resp, audit_rs, &e);
	CHECK_STREQ(got, want);
	CHECK(got != NULL && valid(got));
	CHECK(!e.incomplete);
	free(got);
	jbody_echo_free(&e);
	CHECK(e.p == NULL && e.n == 0 && e.len == 0);
}

/* How many texts noting req keeps. */
static unsigned
noted(const char *req)
{
	struct jbody_echo	 e;
	unsigned		 n;

	note(req, &e);
	n = e.incomplete ? 999 : e.n;
	jbody_echo_free(&e);
	return n;
}

static void
test_echo(void)
{
	struct jbody_echo	 e;
	struct redact_set	*fp;
	char			*cause, *got, *big;
	size_t			 i, n;
	const char		*why, *answers[] = {
		"{\"success\":true,\"response\":{\"errors\":[],\"receivedBody\":"
		    "\"{\\\"note\\\":\\\"x\\\"}\"}}",
		" [ 1 , \"a\\u00e9\" , {\"password\" : \"p\"}, null ] ",
		"{\"k\":\"v\\/\\n\",\"n\":-1.5e3}",
	};

	/* the defect: test-signature echoes the body, as a string */
	check_echo("{\"password\":\"hunter22\",\"note\":\"x\"}",
	    "{\"success\":true,\"response\":{\"errors\":[],\"checkSignatureResult\":true,"
	    "\"receivedBody\":\"{\\\"nonce\\\":1,\\\"password\\\":\\\"hunter22\\\","
	    "\\\"note\\\":\\\"x\\\"}\"}}",
	    "{\"success\":true,\"response\":{\"errors\":[],\"checkSignatureResult\":true,"
	    "\"receivedBody\":\"[REDACTED]\"}}");
	/* raw form: the value inside a longer string, alone, escaped or not */
	check_echo("{\"password\":\"hunter22\"}",
	    "{\"a\":\"your password is hunter22.\",\"b\":\"hunter22\",\"c\":\"hunter2\","
	    "\"d\":\"hun\\u0074er22\",\"e\":\"\\n\"}",
	    "{\"a\":\"[REDACTED]\",\"b\":\"[REDACTED]\",\"c\":\"hunter2\","
	    "\"d\":\"[REDACTED]\",\"e\":\"\\n\"}");
	/* sent with escapes: found decoded (plain in the answer) and as sent (an echo) */
	CHECK(noted("{\"password\":\"hun\\u0074er\\\"22\"}") == 2);
	check_echo("{\"password\":\"hun\\u0074er\\\"22\"}",
	    "{\"a\":\"hunter\\\"22\",\"b\":\"{\\\"password\\\":\\\"hun\\\\u0074er"
	    "\\\\\\\"22\\\"}\",\"c\":\"hunter22\",\"d\":\"hun\\\\u0074er\"}",
	    "{\"a\":\"[REDACTED]\",\"b\":\"[REDACTED]\",\"c\":\"hunter22\","
	    "\"d\":\"hun\\\\u0074er\"}");
	/* non-ASCII: sent as \u00e4, answered as UTF-8 (and the other way) */
	check_echo("{\"password\":\"p\\u00e4ssw\"}",
	    "{\"a\":\"p\xc3\xa4ssw\"}", "{\"a\":\"[REDACTED]\"}");
	check_echo("{\"password\":\"p\xc3\xa4ssw\"}",
	    "{\"a\":\"p\\u00e4ssw\"}", "{\"a\":\"[REDACTED]\"}");
	/* below JBODY_ECHO_MIN bytes: not looked for; 4 bytes are */
	CHECK(noted("{\"password\":\"abc\",\"secret\":\"\\u00e9\"}") == 1);
	check_echo("{\"password\":\"abc\"}", "{\"a\":\"abc\",\"b\":\"xabcx\"}",
	    "{\"a\":\"abc\",\"b\":\"xabcx\"}");
	check_echo("{\"password\":\"abcd\"}", "{\"a\":\"abc\",\"b\":\"xabcdx\"}",
	    "{\"a\":\"abc\",\"b\":\"[REDACTED]\"}");
	/* no redacted value: nothing kept, the copy is jbody_scan's, byte for byte */
	CHECK(noted("{\"a\":\"hunter22\",\"l\":[1,{\"b\":\"passwords\"}]}") == 0);
	note("{\"nonce\":1,\"from\":\"ETH\",\"to\":\"USDT\"}", &e);
	CHECK(e.n == 0 && e.p == NULL && e.len == 0 && !e.incomplete);
	for (i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		char *plain = copy(answers[i], strlen(answers[i]), audit_rs, &why);

		got = hide(answers[i], audit_rs, &e);
		CHECK(plain != NULL);
		CHECK_STREQ(got, plain);
		free(got);
		free(plain);
	}
	got = hide(answers[0], audit_rs, NULL);
	CHECK(got != NULL && strstr(got, "receivedBody\":\"{") != NULL);
	free(got);
	jbody_echo_free(&e);
	/* at any depth, found at any depth; member names are not rewritten */
	check_echo("{\"a\":[{\"b\":{\"secret\":\"s3cr3tval\"}}],\"c\":1}",
	    "[{\"x\":[{\"y\":\"..s3cr3tval..\"}]},\"s3cr3tval\",{\"s3cr3tval\":[\"ok\"]}]",
	    "[{\"x\":[{\"y\":\"[REDACTED]\"}]},\"[REDACTED]\",{\"s3cr3tval\":[\"ok\"]}]");
	/* a number: its text, in a string or as a number */
	check_echo("{\"secret\":12345678}",
	    "{\"n\":12345678,\"m\":-12345678.5,\"s\":\"id 12345678\",\"t\":1234567}",
	    "{\"n\":\"[REDACTED]\",\"m\":\"[REDACTED]\",\"s\":\"[REDACTED]\",\"t\":1234567}");
	CHECK(noted("{\"secret\":123}") == 0);
	/* an object or array: its text as sent, blanks included */
	check_echo("{\"requestHeaders\":{\"k\": \"v1\"},\"secret\":[1, 2]}",
	    "{\"echo\":\"{\\\"requestHeaders\\\":{\\\"k\\\": \\\"v1\\\"}}\","
	    "\"l\":\"[1, 2]\",\"k\":\"v1\"}",
	    "{\"echo\":\"[REDACTED]\",\"l\":\"[REDACTED]\",\"k\":\"v1\"}");
	/* only the outer value of a nested redaction is kept */
	CHECK(noted("{\"secret\":{\"password\":\"inner-pw\"}}") == 1);
	/* true, false, null are not kept; a string "null" is, and leaves null alone */
	CHECK(noted("{\"secret\":true,\"password\":null,\"signature\":false}") == 0);
	check_echo("{\"password\":\"null\"}", "{\"a\":null,\"b\":\"nullable\",\"null\":1}",
	    "{\"a\":null,\"b\":\"[REDACTED]\",\"null\":1}");
	/* answers' own redaction by name still applies, and comes first */
	check_echo("{\"password\":\"hunter22\"}",
	    "{\"password\":\"hunter22\",\"secret\":{\"x\":\"hunter22\"},\"y\":\"hunter22\"}",
	    "{\"password\":\"[REDACTED]\",\"secret\":\"[REDACTED]\",\"y\":\"[REDACTED]\"}");
	/* kept once: a repeat, or a text that holds one kept already */
	CHECK(noted("{\"password\":\"hunter22\",\"secret\":\"hunter22\","
	    "\"signature\":\"xhunter22x\",\"requestBody\":\"unter\"}") == 2);
	/* fingerprint mode: by name a fingerprint, a string holding a value [REDACTED] */
	fp = redact_set_new("password, secret", &cause);
	redact_set_fingerprint(fp, test_fp, NULL);
	note("{\"password\":\"hunter22\"}", &e);
	got = hide("{\"password\":\"hunter22\",\"b\":\"is hunter22\",\"c\":[\"x\"]}", fp, &e);
	CHECK(got != NULL && strstr(got, "\"password\":\"hmac-sha256:") != NULL &&
	    strstr(got, "\"b\":\"[REDACTED]\",\"c\":[\"x\"]}") != NULL && valid(got));
	free(got);
	/* a bad answer fails as it would without e */
	got = hide("{\"b\":\"hunter22\"", audit_rs, &e);
	CHECK(got == NULL);
	jbody_echo_free(&e);
	redact_set_free(fp);
	/* at most JBODY_ECHO_MAX texts; past that the set is incomplete */
	big = malloc(64 * (JBODY_ECHO_MAX + 2));
	for (n = JBODY_ECHO_MAX; n <= JBODY_ECHO_MAX + 1; n++) {
		size_t	 o = 0;

		o += (size_t)sprintf(big + o, "{\"l\":[");
		for (i = 0; i < n; i++)
			o += (size_t)sprintf(big + o, "%s{\"password\":\"value-%03zu\"}",
			    i ? "," : "", i);
		sprintf(big + o, "]}");
		note(big, &e);
		CHECK(e.n == JBODY_ECHO_MAX && e.incomplete == (n > JBODY_ECHO_MAX));
		jbody_echo_free(&e);
	}
	free(big);
}

/*
 * The copy is kept as a span of the input while it equals the input; these
 * break the span (blanks, escapes, replaced values) and resume it, at the
 * start, in the middle and at the end, also past the 512-byte stage.
 */
static void
test_copy_spans(void)
{
	struct redact_set	*rs;
	char			*in, *want, *cause, *p, *q;
	size_t			 i;

	check_copy(NULL, "{\"a\":\"x\",\"b\":\"y\\u0041\",\"c\":[1,2],\"d\":\"z\"}",
	    "{\"a\":\"x\",\"b\":\"yA\",\"c\":[1,2],\"d\":\"z\"}");
	check_copy(NULL, "{\"\\u0061\":1,\"b\" :2, \"c\":3 ,\"d\":[ ]}",
	    "{\"a\":1,\"b\":2,\"c\":3,\"d\":[]}");
	check_copy(NULL, "[\"\\/\"]", "[\"/\"]");
	check_copy(NULL, "[true,false,null,\"\\t\",true]", "[true,false,null,\"\\t\",true]");
	check_copy(audit_rs, "{\"a\":1,\"password\":\"p\",\"b\":{\"c\":\"d\"}}",
	    "{\"a\":1,\"password\":\"[REDACTED]\",\"b\":{\"c\":\"d\"}}");
	check_copy(audit_rs, "{\"secret\":[1,{\"x\":2}],\"z\":[3]}",
	    "{\"secret\":\"[REDACTED]\",\"z\":[3]}");
	check_copy(audit_rs, "[{\"secret\":{}},{\"password\":\"q\"}]",
	    "[{\"secret\":\"[REDACTED]\"},{\"password\":\"[REDACTED]\"}]");
	/* 4000 compact bytes, an escaped string, 4000 more, a blank, a secret */
	in = malloc(9000);
	want = malloc(9000);
	p = in;
	q = want;
	p += sprintf(p, "{\"l\":[");
	q += sprintf(q, "{\"l\":[");
	for (i = 0; i < 500; i++) {
		p += sprintf(p, "%s\"%04zu\"", i ? "," : "", i);
		q += sprintf(q, "%s\"%04zu\"", i ? "," : "", i);
	}
	p += sprintf(p, "],\"e\":\"\\u00e9\",\"m\":[");
	q += sprintf(q, "],\"e\":\"\xc3\xa9\",\"m\":[");
	for (i = 0; i < 500; i++) {
		p += sprintf(p, "%s%zu", i ? "," : "", 1000 + i);
		q += sprintf(q, "%s%zu", i ? "," : "", 1000 + i);
	}
	sprintf(p, "], \"password\":\"hunter2\",\"t\":true}");
	sprintf(q, "],\"password\":\"[REDACTED]\",\"t\":true}");
	check_copy(audit_rs, in, want);
	free(in);
	free(want);
	/* a captured (fingerprinted) value copied as a span, then the span resumes */
	rs = redact_set_new("secret", &cause);
	redact_set_fingerprint(rs, test_fp, NULL);
	check_fp(rs, "{\"a\":0,\"secret\":{\"a\":[1,\"x\"],\"b\":{}},\"z\":1}",
	    "{\"a\":[1,\"x\"],\"b\":{}}", NULL);
	check_fp(rs, "{\"secret\":{\"a\":\"\\u0078\",\"b\":[ ]},\"z\":1}",
	    "{\"a\":\"x\",\"b\":[]}", NULL);
	redact_set_free(rs);
}

/* redact_set_new(list) must fail. */
static void
check_bad_list(const char *list)
{
	char	*cause = NULL;

	CHECK(redact_set_new(list, &cause) == NULL);
	CHECK(cause != NULL && strstr(cause, "empty") != NULL);
	free(cause);
}

static void
test_redact_set(void)
{
	struct redact_set	*rs;
	char			*cause = NULL;

	rs = redact_set_new(" password,secret ,\tsignature\t, a b ", &cause);
	CHECK(rs != NULL && cause == NULL);
	CHECK(redact_set_has(rs, (const unsigned char *)"password", 8));
	CHECK(redact_set_has(rs, (const unsigned char *)"secret", 6));
	CHECK(redact_set_has(rs, (const unsigned char *)"signature", 9));
	CHECK(redact_set_has(rs, (const unsigned char *)"a b", 3));
	CHECK(!redact_set_has(rs, (const unsigned char *)"Secret", 6));
	CHECK(!redact_set_has(rs, (const unsigned char *)"secret ", 7));
	CHECK(!redact_set_has(rs, (const unsigned char *)"secre", 5));
	CHECK(!redact_set_has(rs, (const unsigned char *)"", 0));
	CHECK(!redact_set_has(NULL, (const unsigned char *)"secret", 6));
	redact_set_free(rs);
	rs = redact_set_new("x", &cause);
	CHECK(rs != NULL && redact_set_has(rs, (const unsigned char *)"x", 1));
	redact_set_free(rs);
	/* lengths 64 apart share a bit of the length filter; 64 and 0 too */
	{
		char	 list[256], k70[135], k6[7] = "abcdef", k64[65];

		memset(k70, 'k', 134);
		k70[70] = '\0';		/* 70 k's, and 134 readable bytes */
		memset(k64, 'q', 64);
		k64[64] = '\0';
		snprintf(list, sizeof(list), "%s,%s", k70, k64);
		rs = redact_set_new(list, &cause);
		CHECK(rs != NULL && cause == NULL);
		CHECK(redact_set_has(rs, (const unsigned char *)k70, 70));
		CHECK(redact_set_has(rs, (const unsigned char *)k64, 64));
		CHECK(!redact_set_has(rs, (const unsigned char *)k6, 6));	/* same bit as 70 */
		CHECK(!redact_set_has(rs, (const unsigned char *)k70, 69));
		CHECK(!redact_set_has(rs, (const unsigned char *)"", 0));	/* same bit as 64 */
		k70[70] = 'k';
		CHECK(!redact_set_has(rs, (const unsigned char *)k70, 134));	/* 70 + 64 */
		redact_set_free(rs);
	}
	check_bad_list("");
	check_bad_list("  ");
	check_bad_list("a,,b");
	check_bad_list(",a");
	check_bad_list("a,");
	check_bad_list("a, \t ,b");
	redact_set_free(NULL);
}

static void
test_nonce_member(void)
{
	char	m[JBODY_NONCE_MAX];

	CHECK(jbody_nonce_member(m, sizeof(m), 5, 1) == 9);
	CHECK_STREQ(m, "\"nonce\":5");
	CHECK(jbody_nonce_member(m, sizeof(m), 1643881172430ULL, 0) == 22);
	CHECK_STREQ(m, "\"nonce\":1643881172430,");
	CHECK(jbody_nonce_member(m, sizeof(m), 0, 1) == 9);
	CHECK_STREQ(m, "\"nonce\":0");
	CHECK(jbody_nonce_member(m, sizeof(m), ULLONG_MAX, 0) == 29);
	CHECK_STREQ(m, "\"nonce\":18446744073709551615,");
	CHECK(jbody_nonce_member(m, 8, 5, 1) == 0);
}

/* jbody_quote(s) must be want and valid JSON. */
static void
check_quote(const char *s, size_t len, const char *want)
{
	struct evbuffer	*ev = evbuffer_new();
	char		*got;

	jbody_quote(ev, s, len);
	got = drain(ev);
	CHECK_STREQ(got, want);
	CHECK(valid(got));
	free(got);
	evbuffer_free(ev);
}

static void
test_quote(void)
{
	char	big[3000], *got;
	struct evbuffer *ev;

	check_quote(L("plain/text"), "\"plain/text\"");
	check_quote(L(""), "\"\"");
	check_quote(L("\"\\\n\r\t\b\f\x01\x1f\x7f"),
	    "\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
	check_quote(L("a\0b"), "\"a\\u0000b\"");
	check_quote(L("\xc3\xa9\xf0\x9f\x98\x80"), "\"\xc3\xa9\xf0\x9f\x98\x80\"");
	check_quote(L("x\xffy"), "\"x\\ufffdy\"");
	check_quote(L("\xc3"), "\"\\ufffd\"");
	check_quote(L("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
	check_quote(L("\xc0\xaf\xf5"), "\"\\ufffd\\ufffd\\ufffd\"");
	memset(big, '\n', sizeof(big));
	ev = evbuffer_new();
	jbody_quote(ev, big, sizeof(big));
	CHECK(evbuffer_get_length(ev) == 2 + 2 * sizeof(big));
	got = drain(ev);
	CHECK(valid(got));
	free(got);
	evbuffer_free(ev);
}

/* Reference quoting, one byte at a time, for the word-at-a-time jbody_quote. */
static size_t
ref_quote(const unsigned char *s, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t	i = 0, o = 0, n;

	out[o++] = '"';
	while (i < len) {
		unsigned char c = s[i];

		n = 0;
		if (c >= 0xc2 && c <= 0xdf && i + 1 < len && (s[i + 1] & 0xc0) == 0x80)
			n = 2;		/* the alphabet below has only 2-byte UTF-8 */
		if (n > 0) {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
			continue;
		}
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c != 0 && strchr("\b\f\n\r\t", c) != NULL) {
			out[o++] = '\\';
			out[o++] = "bfnrt"[strchr("\b\f\n\r\t", c) - "\b\f\n\r\t"];
		} else if (c >= 0x80) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
		} else if (c < 0x20) {
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 0xf];
			o += 6;
		} else
			out[o++] = (char)c;
		i++;
	}
	out[o++] = '"';
	return o;
}

/*
 * The 8-bytes-at-a-time scans (quoting and the UTF-8/escape lint) against
 * byte-at-a-time references, with every special byte at every offset of
 * strings longer than a word.
 */
static void
test_word_scans(void)
{
	static const unsigned char alpha[] = { 'a', 'Z', '0', ' ', '~', '"', '\\', '\n',
	    '\t', 0x01, 0x1f, 0x7f, 0xc3, 0xa9, 0x80, 0xff, '\v', '\f' };
	unsigned char	 in[40];
	char		 want[40 * 6 + 3], body[64], *got;
	struct evbuffer	*ev = evbuffer_new();
	unsigned	 seed = 12345;
	size_t		 len, i, wl, gl;
	int		 t, quote_ok = 1, lint_ok = 1, pos, sp;

	for (t = 0; t < 20000; t++) {
		len = (size_t)(t % 40);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			/* mostly plain bytes, so runs cross word boundaries */
			in[i] = (seed >> 16) % 4 ? (unsigned char)('a' + (seed >> 20) % 26) :
			    alpha[(seed >> 20) % sizeof(alpha)];
		}
		wl = ref_quote(in, len, want);
		jbody_quote(ev, (const char *)in, len);
		gl = evbuffer_get_length(ev);
		got = drain(ev);
		if (gl != wl || memcmp(got, want, wl) != 0)
			quote_ok = 0;
		free(got);
	}
	CHECK(quote_ok);
	/* one bad byte (or a good one) at every offset of a 30-byte string */
	for (sp = 0; sp < 4; sp++) {
		for (pos = 0; pos < 30; pos++) {
			memset(body, 0, sizeof(body));
			memcpy(body, "{\"k\":\"", 6);
			memset(body + 6, 'x', 30);
			memcpy(body + 36, "\"}", 2);
			switch (sp) {
			case 0:	body[6 + pos] = '\v'; break;		/* refused */
			case 1:	body[6 + pos] = (char)0xc0; break;	/* overlong lead: refused */
			case 2:	body[6 + pos] = (char)0xff; break;	/* refused */
			case 3:	memcpy(body + 6 + (pos < 29 ? pos : 28), "\xc3\xa9", 2); break;
			}
			if (valid(body) != (sp == 3))
				lint_ok = 0;
		}
	}
	/* \v, \f between tokens: yajl would take them as whitespace, the lint must not */
	for (pos = 0; pos < 60; pos++) {
		memset(body, 0, sizeof(body));
		memcpy(body, "{\"k\":", 5);
		memset(body + 5, ' ', 30);
		memcpy(body + 35, "1}", 2);
		body[5 + pos % 30] = pos < 30 ? '\v' : '\f';
		if (valid(body))
			lint_ok = 0;
		body[5 + pos % 30] = '\t';
		if (!valid(body))
			lint_ok = 0;
	}
	CHECK(lint_ok);
	evbuffer_free(ev);
}

/* The staging writer: order kept across the stage's edge, big pieces, heap mode. */
static void
test_sink(void)
{
	struct evbuffer		*ev = evbuffer_new();
	struct jbody_sink	 k;
	char			 want[4 * JBODY_STAGE], big[3 * JBODY_STAGE], *got;
	size_t			 i, n = 0;

	memset(big, 'b', sizeof(big));
	jbody_sink_init(&k, ev);
	for (i = 0; i < 3 * JBODY_STAGE / 7; i++) {	/* short pieces over the edge */
		jbody_put(&k, "abcdefg", 7);
		memcpy(want + n, "abcdefg", 7);
		n += 7;
	}
	CHECK(evbuffer_get_length(ev) > 0 && evbuffer_get_length(ev) < n);	/* flushed by stages */
	jbody_put(&k, big, sizeof(big));	/* larger than the stage: straight through */
	jbody_sink_quote(&k, L("q\"\n"));
	jbody_put(&k, NULL, 0);
	jbody_put(NULL, "x", 1);		/* a NULL sink drops it */
	CHECK(jbody_sink_flush(&k) == 0);
	CHECK(evbuffer_get_length(ev) == n + sizeof(big) + 7);
	got = drain(ev);
	CHECK(memcmp(got, want, n) == 0);
	CHECK(memcmp(got + n, big, sizeof(big)) == 0);
	CHECK(memcmp(got + n + sizeof(big), "\"q\\\"\\n\"", 7) == 0);
	free(got);
	CHECK(jbody_sink_flush(&k) == 0 && evbuffer_get_length(ev) == 0);	/* nothing staged */

	/* ev NULL: everything stays contiguous, onto the heap past the stage */
	jbody_sink_init(&k, NULL);
	jbody_put(&k, "head:", 5);
	CHECK(k.p == k.stage && k.n == 5);
	jbody_put(&k, big, sizeof(big));
	CHECK(k.p != k.stage && k.n == 5 + sizeof(big) && k.size >= k.n);
	CHECK(memcmp(k.p, "head:", 5) == 0 && memcmp(k.p + 5, big, sizeof(big)) == 0);
	jbody_sink_wipe(&k);
	CHECK(k.p == k.stage && k.n == 0 && !k.failed);
	jbody_put(&k, "s3cr3t", 6);
	jbody_sink_wipe(&k);		/* the stage is zeroed too */
	CHECK(memcmp(k.stage, "\0\0\0\0\0\0", 6) == 0);
	evbuffer_free(ev);
}

int
main(void)
{
	char	*cause;

	audit_rs = redact_set_new(
	    "password, secret, signature, requestHeaders, requestBody", &cause);
	CHECK(audit_rs != NULL);
	test_splice();
	test_jbody_fields();
	test_nonce_kind();
	test_nonce_digits();
	test_invalid();
	test_accepted_edges();
	test_copy();
	test_copy_spans();
	test_redact();
	test_fingerprint();
	test_echo();
	test_redact_set();
	test_nonce_member();
	test_quote();
	test_sink();
	test_word_scans();
	redact_set_free(audit_rs);
	UNIT_END("test_jbody");
}
