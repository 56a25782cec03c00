/*
 * test_yarena.c — the yajl parse arena: blocks are distinct and aligned, the
 * last block grows in place, what does not fit goes to the heap and is freed,
 * every byte handed out is zero after yarena_done, and yajl parses through it
 * (escaped strings longer than the arena, deep nesting) with no heap block left.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>
#include "yarena.h"
#include "unit.h"

static int
all_zero(const unsigned char *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

struct seen {
	size_t	strings, longest, depth, maxdepth;
};

static int
cb_string(void *ctx, const unsigned char *s, size_t len)
{
	struct seen	*v = ctx;

	v->strings++;
	if (len > v->longest)
		v->longest = len;
	return 1;
}

static int
cb_open(void *ctx)
{
	struct seen	*v = ctx;

	if (++v->depth > v->maxdepth)
		v->maxdepth = v->depth;
	return 1;
}

static int
cb_key(void *ctx, const unsigned char *s, size_t len)
{
	return 1;
}

static int
cb_close(void *ctx)
{
	((struct seen *)ctx)->depth--;
	return 1;
}

static const yajl_callbacks cbs = {
	NULL, NULL, NULL, NULL, NULL, cb_string, cb_open, cb_key, cb_close, cb_open, cb_close
};

/* Parse text through an arena; returns 1 when yajl accepted it. */
static int
parse(struct yarena *ya, const char *text, size_t len, struct seen *v)
{
	yajl_handle	h;
	int		ok;

	memset(v, 0, sizeof(*v));
	yarena_init(ya);
	if ((h = yajl_alloc(&cbs, &ya->funcs, v)) == NULL)
		return 0;
	ok = yajl_parse(h, (const unsigned char *)text, len) == yajl_status_ok &&
	    yajl_complete_parse(h) == yajl_status_ok;
	yajl_free(h);
	return ok;
}

int
main(void)
{
	static struct yarena	 ya;
	struct seen		 v;
	unsigned char		*a, *b, *c, *d;
	char			*big;
	const char		*txt;
	size_t			 i, n, high;

	/* raw allocator behaviour */
	yarena_init(&ya);
	a = ya.funcs.malloc(ya.funcs.ctx, 10);
	b = ya.funcs.malloc(ya.funcs.ctx, 100);
	CHECK(a != NULL && b != NULL && a != b);
	CHECK(((uintptr_t)a & 15) == 0 && ((uintptr_t)b & 15) == 0);
	CHECK(b >= a + 10);
	memset(a, 'A', 10);
	memset(b, 'B', 100);
	/* the last block grows in place and keeps its bytes */
	c = ya.funcs.realloc(ya.funcs.ctx, b, 1000);
	CHECK(c == b && c[0] == 'B' && c[99] == 'B');
	/* a block that is not the last moves, with its bytes */
	d = ya.funcs.realloc(ya.funcs.ctx, a, 50);
	CHECK(d != NULL && d != a && memcmp(d, "AAAAAAAAAA", 10) == 0);
	/* too big for what is left: heap, counted, freed (and wiped) */
	a = ya.funcs.malloc(ya.funcs.ctx, 2 * YARENA_SIZE);
	CHECK(a != NULL && ya.heap == 1 && ((uintptr_t)a & 15) == 0);
	memset(a, 'H', 2 * YARENA_SIZE);
	a = ya.funcs.realloc(ya.funcs.ctx, a, 3 * YARENA_SIZE);
	CHECK(a != NULL && ya.heap == 1 && a[2 * YARENA_SIZE - 1] == 'H');
	ya.funcs.free(ya.funcs.ctx, a);
	CHECK(ya.heap == 0);
	/* an arena block that outgrows the arena moves to the heap */
	c = ya.funcs.realloc(ya.funcs.ctx, c, 4 * YARENA_SIZE);
	CHECK(c != NULL && ya.heap == 1 && c[0] == 'B' && c[99] == 'B');
	ya.funcs.free(ya.funcs.ctx, c);
	ya.funcs.free(ya.funcs.ctx, d);
	ya.funcs.free(ya.funcs.ctx, NULL);
	CHECK(ya.heap == 0);
	/* shrink the last block: its old tail is still wiped at the end */
	b = ya.funcs.malloc(ya.funcs.ctx, 512);
	memset(b, 'S', 512);
	b = ya.funcs.realloc(ya.funcs.ctx, b, 16);
	CHECK(b != NULL);
	high = ya.high;
	CHECK(high > ya.used);
	yarena_done(&ya);
	CHECK(ya.used == 0 && ya.high == 0 && all_zero(ya.buf, sizeof(ya.buf)));

	/* yajl through the arena: a small object fits, nothing on the heap */
	txt = "{\"password\":\"pa\\u0073s\",\"a\":[1,2,{\"b\":\"c\"}]}";
	CHECK(parse(&ya, txt, strlen(txt), &v));
	CHECK(v.strings == 2 && ya.heap == 0 && ya.used > 0);
	high = ya.high;
	CHECK(!all_zero(ya.buf, high));
	yarena_done(&ya);
	CHECK(all_zero(ya.buf, sizeof(ya.buf)));

	/* an escaped string far longer than the arena: the decode buffer goes to the heap */
	n = 40000;
	big = malloc(n + 16);
	CHECK(big != NULL);
	if (big != NULL) {
		strcpy(big, "{\"k\":\"");
		for (i = 6; i < n - 2; i += 2)
			memcpy(big + i, "\\n", 2);
		memcpy(big + i, "\"}", 3);
		CHECK(parse(&ya, big, strlen(big), &v));
		CHECK(v.strings == 1 && v.longest == (n - 8) / 2);
		CHECK(ya.heap == 0);	/* every heap block was freed by yajl_free */
		yarena_done(&ya);
		CHECK(all_zero(ya.buf, sizeof(ya.buf)));
		free(big);
	}

	/* deep nesting grows the byte stack past the arena */
	n = 20000;
	big = malloc(2 * n + 1);
	CHECK(big != NULL);
	if (big != NULL) {
		memset(big, '[', n);
		memset(big + n, ']', n);
		CHECK(parse(&ya, big, 2 * n, &v));
		CHECK(v.maxdepth == n && v.depth == 0 && ya.heap == 0);
		yarena_done(&ya);
		free(big);
	}

	/* invalid JSON: still no heap block left, arena wiped */
	txt = "{\"password\":\"s3cr\\u0065t\",";
	CHECK(!parse(&ya, txt, strlen(txt), &v));
	CHECK(ya.heap == 0);
	yarena_done(&ya);
	CHECK(all_zero(ya.buf, sizeof(ya.buf)));
	UNIT_END("yarena");
}
