/*
 * nonce.c — monotonic nonces with durable range reservations.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nonce.h"

#define NONCE_MAX	(1ULL << 62)	/* far beyond any clock; keeps +RESERVE safe */

struct nonce {
	char			*dir;
	char			*path;
	unsigned long long	 last;		/* last value handed out */
	unsigned long long	 reserved;	/* durable upper bound */
};

static char *
nonce_err(const char *what, const char *path)
{
	char	*s;

	if (asprintf(&s, "%s %s: %s", what, path, strerror(errno)) == -1)
		return NULL;
	return s;
}

/* Durably replace the state file with the new bound (write, fsync, rename, fsync dir). */
static int
nonce_persist(struct nonce *n, unsigned long long hi, char **cause)
{
	char	 tmp[4096], line[32];
	int	 fd, len, dfd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", n->path);
	len = snprintf(line, sizeof(line), "%llu\n", hi);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		*cause = nonce_err("cannot write", tmp);
		return -1;
	}
	ok = write(fd, line, (size_t)len) == len && fsync(fd) == 0;
	if (!ok)
		*cause = nonce_err("cannot write", tmp);
	close(fd);
	if (!ok)
		return -1;
	if (rename(tmp, n->path) == -1) {
		*cause = nonce_err("cannot rename", tmp);
		return -1;
	}
	if ((dfd = open(n->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	n->reserved = hi;
	return 0;
}

/*
 * Read the persisted bound; a missing file means a fresh profile.  The file is
 * what nonce_persist writes: a decimal number up to NONCE_MAX and a newline.
 * Anything else (a sign, blanks, a NUL, a second line, a value beyond the
 * nonce space) is refused as corrupt rather than guessed at.
 */
static int
nonce_load(struct nonce *n, char **cause)
{
	FILE			*f;
	char			 buf[64];
	size_t			 len, i;
	unsigned long long	 v = 0;

	if ((f = fopen(n->path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		*cause = nonce_err("cannot read", n->path);
		return -1;
	}
	len = fread(buf, 1, sizeof(buf), f);
	if (ferror(f)) {
		*cause = nonce_err("cannot read", n->path);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (len == 0) {
		errno = EINVAL;
		*cause = nonce_err("empty nonce state", n->path);
		return -1;
	}
	for (i = 0; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (v > (NONCE_MAX - (unsigned)(buf[i] - '0')) / 10)
			break;
		v = v * 10 + (unsigned)(buf[i] - '0');
	}
	if (i == 0 || len == sizeof(buf) || (i < len && (buf[i] != '\n' || i + 1 != len))) {
		errno = EINVAL;
		*cause = nonce_err("corrupt nonce state", n->path);
		return -1;
	}
	n->last = n->reserved = v;
	return 0;
}

/* Open the nonce state of one profile. */
struct nonce *
nonce_open(const char *dir, const char *name, char **cause)
{
	struct nonce	*n;

	*cause = NULL;
	if ((n = calloc(1, sizeof(*n))) == NULL ||
	    (n->dir = strdup(dir)) == NULL ||
	    asprintf(&n->path, "%s/nonce.%s", dir, name) == -1) {
		if (n != NULL)
			free(n->dir);
		free(n);
		*cause = strdup("out of memory");
		return NULL;
	}
	if (nonce_load(n, cause) == -1) {
		nonce_close(n);
		return NULL;
	}
	return n;
}

/* Release the state (the reservation stays on disk). */
void
nonce_close(struct nonce *n)
{
	if (n == NULL)
		return;
	free(n->dir);
	free(n->path);
	free(n);
}

/* Make sure v is inside the durable reservation. */
static int
nonce_reserve(struct nonce *n, unsigned long long v, char **cause)
{
	if (v <= n->reserved)
		return 0;
	if (v > NONCE_MAX) {
		errno = ERANGE;
		*cause = nonce_err("nonce space exhausted for", n->path);
		return -1;
	}
	return nonce_persist(n, v + NONCE_RESERVE > NONCE_MAX ? NONCE_MAX : v + NONCE_RESERVE,
	    cause);
}

/* Hand out the next nonce. */
int
nonce_next(struct nonce *n, unsigned long long now_ms, unsigned long long *out,
    char **cause)
{
	unsigned long long	v = n->last + 1;

	*cause = NULL;
	if (now_ms > v)
		v = now_ms;
	if (nonce_reserve(n, v, cause) == -1)
		return -1;
	n->last = v;
	*out = v;
	return 0;
}

/* Account for a nonce chosen by a caller. */
int
nonce_observe(struct nonce *n, unsigned long long seen, char **cause)
{
	*cause = NULL;
	if (seen <= n->last)
		return 0;
	if (nonce_reserve(n, seen, cause) == -1)
		return -1;
	n->last = seen;
	return 0;
}

/* Last value handed out or observed. */
unsigned long long
nonce_last(const struct nonce *n)
{
	return n->last;
}

/* Raise to above every value from has handed out or reserved (durably). */
int
nonce_cover(struct nonce *to, const struct nonce *from, char **cause)
{
	*cause = NULL;
	if (from->last > to->last)
		to->last = from->last;
	if (from->reserved <= to->reserved)
		return 0;
	return nonce_persist(to, from->reserved, cause);
}

/* n continues in to's file, above both counters; to is freed. */
void
nonce_take(struct nonce *n, struct nonce *to)
{
	free(n->dir);
	free(n->path);
	n->dir = to->dir;
	n->path = to->path;
	if (to->last > n->last)
		n->last = to->last;
	n->reserved = to->reserved;
	free(to);
}
