/*
 * audit.c — group-committed JSON lines audit writer.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "audit.h"
#include "log.h"
#include "secret.h"

struct audit_entry {
	size_t		 len;		/* bytes of this line incl. newline */
	audit_done_fn	 cb;
	void		*arg;
};

struct audit {
	struct event_base	*base;
	char			*path;
	int			 fd;
	off_t			 size;		/* end of the last complete line */
	enum conf_sync		 sync;
	struct evbuffer		*queue;
	struct audit_entry	*ent;
	size_t			 nent, cap;
	struct event		*flush_ev;
	int			 failed;
	int			 scheduled;
};

static int
audit_openfd(const char *path, off_t *size, char **cause)
{
	struct stat	st;
	int		fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd == -1 || fstat(fd, &st) == -1) {
		if (asprintf(cause, "%s: %s", path, strerror(errno)) == -1)
			*cause = NULL;
		if (fd != -1)
			close(fd);
		return -1;
	}
	*size = st.st_size;
	return fd;
}

static void audit_flush_cb(evutil_socket_t, short, void *);

/* Open the trail for appending. */
struct audit *
audit_open(struct event_base *base, const char *path, enum conf_sync sync, char **cause)
{
	struct audit	*a;

	*cause = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL || (a->path = strdup(path)) == NULL ||
	    (a->queue = evbuffer_new()) == NULL) {
		if (a != NULL)
			free(a->path);
		free(a);
		*cause = strdup("out of memory");
		return NULL;
	}
	a->base = base;
	a->sync = sync;
	if ((a->fd = audit_openfd(path, &a->size, cause)) == -1) {
		evbuffer_free(a->queue);
		free(a->path);
		free(a);
		return NULL;
	}
	if (base != NULL)
		a->flush_ev = event_new(base, -1, 0, audit_flush_cb, a);
	return a;
}

/* Reopen by path, for log rotation. */
int
audit_reopen(struct audit *a, char **cause)
{
	off_t	size;
	int	fd;

	audit_flush(a);
	if ((fd = audit_openfd(a->path, &size, cause)) == -1)
		return -1;
	close(a->fd);
	a->fd = fd;
	a->size = size;
	return 0;
}

/* Change the durability mode (reload). */
void
audit_set_sync(struct audit *a, enum conf_sync sync)
{
	a->sync = sync;
}

/* 0 while writing works. */
int
audit_healthy(const struct audit *a)
{
	return a->failed ? -1 : 0;
}

/* Write n bytes from the queue; on failure cut the file back to its last line. */
static int
audit_write(struct audit *a, size_t n)
{
	size_t	done = 0;
	int	w;

	while (done < n) {
		w = evbuffer_write_atmost(a->queue, a->fd, (ev_ssize_t)(n - done));
		if (w <= 0) {
			if (w == -1 && errno == EINTR)
				continue;
			if (w == 0)
				errno = EIO;
			evbuffer_drain(a->queue, n - done);
			if (ftruncate(a->fd, a->size) == -1)
				log_err("audit: cannot truncate %s after a failed write: %s",
				    a->path, strerror(errno));
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

static void
audit_fail(struct audit *a, int err)
{
	if (!a->failed)
		log_err("audit: cannot write %s: %s; refusing requests until it works",
		    a->path, strerror(err));
	a->failed = 1;
}

/* Write (and sync) entries [0, k) totalling n bytes; returns 0 or -1. */
static int
audit_commit(struct audit *a, size_t n)
{
	int	err;

	if (audit_write(a, n) == -1 || (a->sync != SYNC_NONE && fdatasync(a->fd) == -1)) {
		err = errno;
		if (ftruncate(a->fd, a->size) == -1)
			log_err("audit: cannot truncate %s: %s", a->path, strerror(errno));
		audit_fail(a, err);
		return -1;
	}
	a->size += (off_t)n;
	if (a->failed)
		log_info("audit: writing %s works again", a->path);
	a->failed = 0;
	return 0;
}

/* Write everything queued now and run the callbacks. */
void
audit_flush(struct audit *a)
{
	struct audit_entry	*ent = a->ent;
	size_t			 i, start, n, nent = a->nent;
	int			 rc = 0;

	a->scheduled = 0;
	if (nent == 0)
		return;
	a->ent = NULL;
	a->nent = a->cap = 0;
	for (start = 0; start < nent; start = i) {
		n = 0;
		i = start;
		do
			n += ent[i++].len;
		while (a->sync != SYNC_ALWAYS && i < nent);
		rc = audit_commit(a, n);
		for (; start < i; start++)
			if (ent[start].cb != NULL)
				ent[start].cb(ent[start].arg, rc);
	}
	free(ent);
}

static void
audit_flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	audit_flush(arg);
}

/* Queue one line; the callback runs after the group commit. */
void
audit_append(struct audit *a, struct evbuffer *line, audit_done_fn cb, void *arg)
{
	struct audit_entry	*n;
	size_t			 len;
	unsigned char		*p;

	len = evbuffer_get_length(line);
	evbuffer_add(line, "\n", 1);
	len++;
	if ((p = evbuffer_pullup(line, -1)) != NULL)
		secret_guard_scrub((char *)p, len);
	if (a->nent == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		if ((n = realloc(a->ent, cap * sizeof(*n))) == NULL) {
			evbuffer_drain(line, len);
			if (cb != NULL)
				cb(arg, -1);
			return;
		}
		a->ent = n;
		a->cap = cap;
	}
	a->ent[a->nent++] = (struct audit_entry){ len, cb, arg };
	evbuffer_remove_buffer(line, a->queue, len);
	if (!a->scheduled && a->flush_ev != NULL) {
		a->scheduled = 1;
		event_active(a->flush_ev, 0, 0);
	} else if (a->flush_ev == NULL)
		audit_flush(a);
}

/* A queued line's request went away: keep the line, drop the callback. */
void
audit_forget(struct audit *a, void *arg)
{
	size_t	i;

	for (i = 0; i < a->nent; i++)
		if (a->ent[i].arg == arg)
			a->ent[i].cb = NULL;
}

/* Flush and close. */
void
audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	audit_flush(a);
	if (a->sync != SYNC_NONE)
		(void)fsync(a->fd);
	close(a->fd);
	if (a->flush_ev != NULL)
		event_free(a->flush_ev);
	evbuffer_free(a->queue);
	free(a->path);
	free(a);
}
