/*
 * test_wipe.c — evbuffer helpers that zero bytes before libevent frees them:
 * contents survive each operation unchanged, and the bytes a copy leaves in
 * a chain that stays alive (the part of a chain wipe_move copied, the head
 * wipe_drain dropped, what wipe_write wrote) read as zero afterwards.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "wipe.h"
#include "unit.h"

/* A buffer of three chains holding "AAAA..." "BBBB..." "CCCC..." (n each). */
static struct evbuffer *
three_chains(size_t n)
{
	struct evbuffer	*b = evbuffer_new(), *part;
	char		 c;
	char		*p = malloc(n);

	for (c = 'A'; c <= 'C'; c++) {
		part = evbuffer_new();
		memset(p, c, n);
		evbuffer_add(part, p, n);
		evbuffer_add_buffer(b, part);	/* moves the chain: one per letter */
		evbuffer_free(part);
	}
	free(p);
	return b;
}

static int
all(const unsigned char *p, size_t n, unsigned char c)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (p[i] != c)
			return 0;
	return 1;
}

int
main(void)
{
	struct evbuffer		*b, *to;
	struct evbuffer_iovec	 v[4];
	unsigned char		*p, *mid, got[4096];
	int			 fds[2];
	ssize_t			 w;

	/* wipe_move: one whole chain moves, half of the next is copied */
	b = three_chains(1000);
	to = evbuffer_new();
	CHECK(evbuffer_peek(b, -1, NULL, v, 4) == 3);
	mid = v[1].iov_base;
	CHECK(wipe_move(b, to, 1500) == 0);
	CHECK(evbuffer_get_length(to) == 1500 && evbuffer_get_length(b) == 1500);
	evbuffer_copyout(to, got, 1500);
	CHECK(all(got, 1000, 'A') && all(got + 1000, 500, 'B'));
	CHECK(all(mid, 500, 0));	/* the copied half, left in a live chain: zeroed */
	evbuffer_copyout(b, got, 1500);
	CHECK(all(got, 500, 'B') && all(got + 500, 1000, 'C'));
	CHECK(wipe_move(b, to, 0) == 0 && evbuffer_get_length(b) == 1500);
	CHECK(wipe_move(b, to, 1500) == 0 && evbuffer_get_length(b) == 0 &&
	    evbuffer_get_length(to) == 3000);
	evbuffer_free(b);
	evbuffer_free(to);

	/* wipe_drain: the dropped head of a live chain is zeroed */
	b = three_chains(100);
	CHECK(evbuffer_peek(b, -1, NULL, v, 4) == 3);
	mid = v[1].iov_base;
	wipe_drain(b, 150);
	CHECK(evbuffer_get_length(b) == 150 && all(mid, 50, 0));
	evbuffer_copyout(b, got, 150);
	CHECK(all(got, 50, 'B') && all(got + 50, 100, 'C'));
	wipe_drain(b, 1000);	/* more than held: everything */
	CHECK(evbuffer_get_length(b) == 0);
	evbuffer_free(b);

	/* wipe_pullup: one chain, same bytes; a single chain is not copied */
	b = three_chains(100);
	p = wipe_pullup(b);
	CHECK(p != NULL && evbuffer_peek(b, -1, NULL, NULL, 0) == 1);
	CHECK(all(p, 100, 'A') && all(p + 100, 100, 'B') && all(p + 200, 100, 'C'));
	CHECK(wipe_pullup(b) == p);
	wipe_evbuffer(b);
	CHECK(evbuffer_get_length(b) == 300 && all(p, 300, 0));
	evbuffer_free(b);
	b = evbuffer_new();
	CHECK(wipe_pullup(b) == NULL);
	evbuffer_free(b);

	/* wipe_write: what the pipe took is drained (and zeroed), in order */
	CHECK(pipe(fds) == 0);
	b = three_chains(1000);
	w = wipe_write(b, fds[1]);
	CHECK(w == 3000 && evbuffer_get_length(b) == 0);
	CHECK(read(fds[0], got, sizeof(got)) == 3000);
	CHECK(all(got, 1000, 'A') && all(got + 1000, 1000, 'B') && all(got + 2000, 1000, 'C'));
	CHECK(wipe_write(b, fds[1]) == 0);
	close(fds[0]);
	close(fds[1]);
	evbuffer_free(b);
	UNIT_END("test_wipe");
}
