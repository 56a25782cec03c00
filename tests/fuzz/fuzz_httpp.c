/* fuzz-sources: proxy/httpp.c */
/*
 * libFuzzer target for httpp: the input is parsed as a request head and as
 * a response head, then decoded as a chunked body (all of it, and what
 * follows the head), whole and in pieces.  Beyond the sanitizers it checks
 * invariants: accepted heads are exactly what httpp_head_len finds, every
 * pointer stays inside the input, accepted names and values hold only legal
 * bytes, and the chunked decoder gives the same answer however it is fed.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy \
 *     tests/fuzz/fuzz_httpp.c proxy/httpp.c -o /tmp/fuzz_httpp
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpp.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Decoded body and how the decoder ended. */
struct fz_out {
	char		*buf;
	size_t		 n, cap;
	long		 consumed;	/* -1 on error */
	int		 done;
	const char	*why;
};

/* Abort unless cond: the fuzzer reports it as a crash. */
static void
fz_assert(int cond)
{
	if (!cond)
		abort();
}

/* p[0..n) lies inside buf[0..len). */
static int
fz_inside(const char *buf, size_t len, const char *p, size_t n)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

/* Every byte of p[0..n) is a legal field-value byte. */
static int
fz_value_ok(const char *p, size_t n)
{
	size_t		i;
	unsigned char	c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c != '\t' && (c < 0x20 || c == 0x7f))
			return 0;
	}
	return 1;
}

/* httpp_find on h's own name gives h or an earlier header. */
static void
fz_find(const struct httpp_msg *m, const struct httpp_header *h)
{
	const struct httpp_header	*f;
	char				*name;

	name = malloc(h->name_len + 1);
	fz_assert(name != NULL);
	memcpy(name, h->name, h->name_len);
	name[h->name_len] = '\0';
	f = httpp_find(m, name);
	fz_assert(f != NULL && f <= h && f->name_len == h->name_len);
	free(name);
}

/* Invariants of an accepted head. */
static void
fz_check_msg(const char *buf, size_t len, const struct httpp_msg *m)
{
	const struct httpp_header	*h;
	size_t				 i;

	fz_assert(httpp_head_len(buf, len) == len);
	fz_assert(m->minor == 0 || m->minor == 1);
	fz_assert(m->nhdr <= HTTPP_MAX_HEADERS);
	fz_assert(m->content_length >= -1);
	fz_assert(!(m->chunked && m->content_length != -1));
	fz_assert(!(m->chunked && m->minor == 0));
	for (i = 0; i < m->nhdr; i++) {
		h = &m->hdr[i];
		fz_assert(h->name_len > 0 && fz_inside(buf, len, h->name,
		    h->name_len) && fz_inside(buf, len, h->value, h->value_len));
		fz_assert(memchr(h->name, ':', h->name_len) == NULL);
		fz_assert(fz_value_ok(h->value, h->value_len));
		fz_find(m, h);
	}
	if (m->host != NULL)
		fz_assert(fz_inside(buf, len, m->host, m->host_len));
}

/* Parse buf[0..len) both ways; accepted heads must check out. */
static void
fz_heads(const char *buf, size_t len)
{
	struct httpp_msg	 m;
	const char		*why = NULL;

	if (httpp_parse_request(buf, len, &m, &why) == 0) {
		fz_check_msg(buf, len, &m);
		fz_assert(fz_inside(buf, len, m.method, m.method_len));
		fz_assert(fz_inside(buf, len, m.target, m.target_len));
		fz_assert(m.method_len > 0 && m.target_len > 0);
	} else
		fz_assert(why != NULL);
	why = NULL;
	if (httpp_parse_response(buf, len, &m, &why) == 0) {
		fz_check_msg(buf, len, &m);
		fz_assert(m.status >= 100 && m.status <= 599);
		fz_assert(fz_inside(buf, len, m.reason, m.reason_len));
		fz_assert(m.host == NULL && !m.expect_continue);
	} else
		fz_assert(why != NULL);
}

/* emit callback: append to the output, which cannot outgrow the input. */
static void
fz_emit(void *arg, const char *p, size_t n)
{
	struct fz_out	*o = arg;

	fz_assert(n > 0 && n <= o->cap - o->n);
	memcpy(o->buf + o->n, p, n);
	o->n += n;
}

/* Decode in[0..len) in pieces of step bytes (0: all at once). */
static void
fz_decode(const char *in, size_t len, size_t step, struct fz_out *o)
{
	struct httpp_chunked	 c;
	size_t			 off = 0, n;
	ssize_t			 r;

	o->n = 0;
	o->consumed = 0;
	o->done = 0;
	o->why = NULL;
	httpp_chunked_init(&c);
	do {
		n = step == 0 || len - off < step ? len - off : step;
		r = httpp_chunked_feed(&c, in + off, n, fz_emit, o, &o->done,
		    &o->why);
		if (r == -1) {
			fz_assert(o->why != NULL && !o->done);
			o->consumed = -1;
			return;
		}
		fz_assert((size_t)r == n || (o->done && (size_t)r < n));
		off += (size_t)r;
	} while (!o->done && off < len);
	o->consumed = (long)off;
}

/* Whole, byte-at-a-time and uneven feeds must agree. */
static void
fz_chunked(const char *in, size_t len)
{
	struct fz_out	a, b;
	size_t		step;

	a.cap = b.cap = len;
	a.buf = malloc(len + 1);
	b.buf = malloc(len + 1);
	fz_assert(a.buf != NULL && b.buf != NULL);
	fz_decode(in, len, 0, &a);
	for (step = 1; step <= 7; step += 6) {
		fz_decode(in, len, step, &b);
		fz_assert(a.consumed == b.consumed && a.done == b.done &&
		    a.why == b.why && a.n == b.n &&
		    memcmp(a.buf, b.buf, a.n) == 0);
	}
	free(a.buf);
	free(b.buf);
}

/* A head scanned as it arrives, in pieces, ends where the one-shot scan says. */
static void
fz_head_pieces(const char *in, size_t size, size_t whole)
{
	size_t	from = 0, got = 0, cut, step = size > 0 ? (unsigned char)in[0] % 7 + 1 : 1;

	for (cut = step < size ? step : size; got == 0; cut += step) {
		if (cut > size)
			cut = size;
		got = httpp_head_scan(in, cut, &from);
		fz_assert(got != 0 || from == cut);
		if (cut == size)
			break;
	}
	fz_assert(got == whole);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*in = (const char *)data;
	size_t		 h;

	h = httpp_head_len(in, size);
	fz_assert(h <= size);
	fz_head_pieces(in, size, h);
	fz_heads(in, size);
	if (h > 0 && h < size)
		fz_heads(in, h);
	fz_chunked(in, size);
	if (h > 0)
		fz_chunked(in + h, size - h);
	return 0;
}
