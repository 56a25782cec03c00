/*
 * wipe.c — evbuffers that may hold secrets: every byte is zeroed before
 * libevent could free it.
 */
#include <sys/uio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "wipe.h"

#define WIPE_IOV	16	/* chains looked at per call */

void
wipe_evbuffer(struct evbuffer *b)
{
	struct evbuffer_iovec	 stack[WIPE_IOV], *v = stack;
	int			 i, n;

	if ((n = evbuffer_peek(b, -1, NULL, NULL, 0)) <= 0)
		return;
	if (n > WIPE_IOV && (v = calloc((size_t)n, sizeof(*v))) == NULL) {
		v = stack;
		n = WIPE_IOV;	/* out of memory: clear what fits */
	}
	n = evbuffer_peek(b, -1, NULL, v, n);
	for (i = 0; i < n; i++)
		explicit_bzero(v[i].iov_base, v[i].iov_len);
	if (v != stack)
		free(v);
}

void
wipe_free(struct evbuffer *b)
{
	if (b == NULL)
		return;
	wipe_evbuffer(b);
	evbuffer_free(b);
}

void
wipe_drain(struct evbuffer *b, size_t n)
{
	struct evbuffer_iovec	 v[WIPE_IOV];
	size_t			 left = n, k;
	int			 i, m;

	while (left > 0 && (m = evbuffer_peek(b, (ev_ssize_t)left, NULL, v, WIPE_IOV)) > 0) {
		if (m > WIPE_IOV)
			m = WIPE_IOV;
		for (i = 0, k = 0; i < m && k < left; i++) {
			size_t len = v[i].iov_len < left - k ? v[i].iov_len : left - k;

			explicit_bzero(v[i].iov_base, len);
			k += len;
		}
		evbuffer_drain(b, k);
		left -= k;
	}
}

int
wipe_move(struct evbuffer *from, struct evbuffer *to, size_t n)
{
	struct evbuffer_iovec	 v[WIPE_IOV];
	size_t			 whole = 0;
	int			 i, m;

	/* whole chains move without a copy; the part of a chain is copied */
	m = evbuffer_peek(from, (ev_ssize_t)n, NULL, v, WIPE_IOV);
	if (m > WIPE_IOV)
		m = WIPE_IOV;
	for (i = 0; i < m && whole + v[i].iov_len <= n; i++)
		whole += v[i].iov_len;
	if (whole > 0 && evbuffer_remove_buffer(from, to, whole) != (int)whole)
		return -1;
	while (whole < n) {
		size_t left = n - whole, k;

		if (evbuffer_peek(from, -1, NULL, v, 1) < 1)
			return -1;
		k = v[0].iov_len < left ? v[0].iov_len : left;
		if (evbuffer_add(to, v[0].iov_base, k) == -1)
			return -1;
		wipe_drain(from, k);
		whole += k;
	}
	return 0;
}

unsigned char *
wipe_pullup(struct evbuffer *b)
{
	struct evbuffer		*tmp;
	struct evbuffer_iovec	 v;
	size_t			 len = evbuffer_get_length(b);

	if (len == 0)
		return NULL;
	if (evbuffer_peek(b, -1, NULL, NULL, 0) <= 1)
		return evbuffer_pullup(b, -1);	/* one chain: nothing is copied */
	if ((tmp = evbuffer_new()) == NULL)
		return NULL;
	if (evbuffer_reserve_space(tmp, (ev_ssize_t)len, &v, 1) != 1 || v.iov_len < len) {
		evbuffer_free(tmp);
		return NULL;
	}
	evbuffer_copyout(b, v.iov_base, len);
	v.iov_len = len;
	evbuffer_commit_space(tmp, &v, 1);
	wipe_drain(b, len);
	evbuffer_add_buffer(b, tmp);	/* moves the one chain */
	evbuffer_free(tmp);
	return evbuffer_pullup(b, -1);
}

ssize_t
wipe_write(struct evbuffer *b, int fd)
{
	struct evbuffer_iovec	 v[WIPE_IOV];
	struct iovec		 iov[WIPE_IOV];
	ssize_t			 w;
	int			 i, n;

	if ((n = evbuffer_peek(b, -1, NULL, v, WIPE_IOV)) <= 0)
		return 0;
	if (n > WIPE_IOV)
		n = WIPE_IOV;
	for (i = 0; i < n; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	if ((w = writev(fd, iov, n)) > 0)
		wipe_drain(b, (size_t)w);
	return w;
}
