/*
 * yarena.c — a bump allocator for one yajl parse, wiped when the parse ends.
 *
 * Every block starts with a 16-byte header holding its size, so realloc can
 * copy and free can wipe a heap block.  Arena blocks are never reused within
 * a parse; the last one grows in place, which is what yajl's byte stack and
 * decode buffer do as they fill.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "yarena.h"

#define HDR		16
#define ROUND(n)	(((n) + 15) & ~(size_t)15)
#define HEAP_BIT	((size_t)1 << (sizeof(size_t) * 8 - 1))

struct hdr {
	size_t	size;		/* bytes asked for; HEAP_BIT if from malloc */
	size_t	pad;
};

static int
in_arena(const struct yarena *a, const void *p)
{
	const unsigned char	*q = p;

	return q >= a->buf && q < a->buf + sizeof(a->buf);
}

static void *
ya_malloc(void *ctx, size_t size)
{
	struct yarena	*a = ctx;
	struct hdr	*h;
	size_t		 need;

	if (size > SIZE_MAX / 2 - HDR - 15)
		return NULL;
	need = HDR + ROUND(size);
	if (need <= sizeof(a->buf) - a->used) {
		h = (struct hdr *)(void *)(a->buf + a->used);
		a->used += need;
		if (a->used > a->high)
			a->high = a->used;
		h->size = size;
		return (unsigned char *)h + HDR;
	}
	if ((h = malloc(HDR + size)) == NULL)
		return NULL;
	h->size = size | HEAP_BIT;
	a->heap++;
	return (unsigned char *)h + HDR;
}

static void
ya_free(void *ctx, void *p)
{
	struct yarena	*a = ctx;
	struct hdr	*h;

	if (p == NULL || in_arena(a, p))
		return;		/* wiped by yarena_done */
	h = (struct hdr *)(void *)((unsigned char *)p - HDR);
	explicit_bzero(h, HDR + (h->size & ~HEAP_BIT));
	free(h);
	a->heap--;
}

static void *
ya_realloc(void *ctx, void *p, size_t size)
{
	struct yarena	*a = ctx;
	struct hdr	*h;
	unsigned char	*q;
	size_t		 old, off;

	if (p == NULL)
		return ya_malloc(ctx, size);
	h = (struct hdr *)(void *)((unsigned char *)p - HDR);
	old = h->size & ~HEAP_BIT;
	if (in_arena(a, p)) {
		off = (size_t)((unsigned char *)p - a->buf);
		/* the last block grows (or shrinks) in place while it fits */
		if (off + ROUND(old) == a->used && size <= sizeof(a->buf) - off) {
			a->used = off + ROUND(size);
			if (a->used > a->high)
				a->high = a->used;
			h->size = size;
			return p;
		}
	}
	if ((q = ya_malloc(ctx, size)) == NULL)
		return NULL;
	memcpy(q, p, old < size ? old : size);
	ya_free(ctx, p);
	return q;
}

void
yarena_init(struct yarena *a)
{
	a->funcs.malloc = ya_malloc;
	a->funcs.realloc = ya_realloc;
	a->funcs.free = ya_free;
	a->funcs.ctx = a;
	a->used = a->high = 0;
	a->heap = 0;
}

void
yarena_done(struct yarena *a)
{
	explicit_bzero(a->buf, a->high);
	a->used = a->high = 0;
}
