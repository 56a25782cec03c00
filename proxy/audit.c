/*
 * audit.c — group-committed, hash-chained JSON lines audit writer.
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "audit.h"
#include "audit_verify.h"
#include "fmt.h"
#include "log.h"
#include "secret.h"
#include "signer.h"

#define AUDIT_TAIL_READ		65536	/* enough for the last line */
#define AUDIT_CHECK_MS		1000	/* how often the path is checked */
#define AUDIT_NO_CHAIN		"null"
#define AUDIT_BATCH_LINES	256	/* hand a batch over at once from this size ... */
#define AUDIT_BATCH_MS		2	/* ... or once its first line waited this long */
#define AUDIT_CACHE_KEEP	(8 << 20)	/* newest synced bytes left in the page cache */
#define AUDIT_CACHE_STEP	(4 << 20)	/* drop older ones each time this much is added */

struct audit_entry {
	size_t			 len;	/* bytes of this line incl. newline */
	audit_done_fn		 cb;
	void			*arg;
	unsigned long long	 seq;	/* chain state after this line */
	char			 chain[SIGNER_HEX_LEN + 1];
};

struct audit {
	struct event_base	*base;
	char			*path;
	int			 fd;
	off_t			 size;		/* end of the last complete line */
	enum conf_sync		 sync;
	const struct signer	*key;
	/* chain state of the last queued line and of the last durable one */
	unsigned long long	 seq, dseq;
	char			 chain[SIGNER_HEX_LEN + 1], dchain[SIGNER_HEX_LEN + 1];
	struct evbuffer		*queue;
	struct audit_entry	*ent;
	size_t			 nent, cap;
	struct event		*flush_ev;
	struct event		*idle_ev;	/* lowest priority: the loop has no work */
	int			 idle_armed;
	unsigned long long	 first_ms;	/* when the oldest queued line was sealed */
	struct event		*check_ev;
	char			*tail_path;
	int			 failed;
	int			 scheduled;
	off_t			 drop_end;	/* loop's syncs: end when pages were last dropped */
	int			 sync_all;	/* own records: always synced */
	/*
	 * batch mode: a worker thread takes everything queued when it starts a
	 * batch, writes it and runs one fdatasync for it, off the event loop.
	 * With th_on, queue/ent/nent/cap are shared with it under mu.
	 */
	pthread_t		 th;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	int			 th_on, th_job, th_done, th_err, th_stop;
	const char		*th_what;	/* what failed: write, sync, removed */
	int			 efd;
	struct event		*done_ev;
	struct evbuffer		*wbuf;		/* the worker's batch being written */
	struct audit_entry	*sent;		/* taken by the worker */
	size_t			 nsent, sent_bytes;
	int			 syncing;	/* a batch is handed over, not settled */
	dev_t			 busy_dev;	/* the file at path another writer holds */
	ino_t			 busy_ino;	/* (reopen refused, already logged) */
};

static void audit_flush_cb(evutil_socket_t, short, void *);
static void audit_idle_cb(evutil_socket_t, short, void *);
static void audit_sync_settle(struct audit *);
static int audit_worker_start(struct audit *);
static void audit_check_cb(evutil_socket_t, short, void *);
static int audit_start_file(struct audit *, const char *reason, const char *note);

static int
audit_openfd(const char *path, off_t *size, char **cause)
{
	struct stat	st;
	int		fd;

	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
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

/*
 * One writer per trail: a second one (another instance with the same
 * [audit] path) would repeat seq, break the chain and could cut the first
 * one's line in half while recovering a "torn" tail.  An exclusive flock on
 * fd, taken before anything is read or written; it belongs to the open file
 * description, so the worker's dup of fd shares it and only closing every
 * copy releases it.  Where the file system has no locks, warn and go on.
 * Returns 1 when another process holds the lock (*cause set), else 0.
 */
static int
audit_lockfd(int fd, const char *path, char **cause)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno != EWOULDBLOCK) {
		log_warn("audit: cannot lock %s: %s; not protected against a second writer",
		    path, strerror(errno));
		return 0;
	}
	if (asprintf(cause, "%s: in use by another process (it holds the lock): "
	    "one ocp-proxy per audit file", path) == -1)
		*cause = NULL;
	return 1;
}

/* Offset just after the last '\n' before end, or 0: reads backwards in blocks. */
static off_t
audit_last_newline(int fd, off_t end)
{
	char	buf[AUDIT_TAIL_READ], *nl;
	off_t	from;
	size_t	n;

	while (end > 0) {
		from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
		n = (size_t)(end - from);
		if (pread(fd, buf, n, from) != (ssize_t)n)
			return -1;
		if ((nl = memrchr(buf, '\n', n)) != NULL)
			return from + (nl - buf) + 1;
		end = from;
	}
	return 0;
}

/*
 * Recover seq and chain from the end of an existing file, however long its
 * lines.  A torn last line (no newline: the machine died inside a write) is
 * cut off and reported.
 */
static off_t
audit_recover(struct audit *a)
{
	char	 head[48], tail[AUDIT_CHAIN_SUFFIX_LEN + 1];
	off_t	 good, start, torn = 0;
	size_t	 len;

	if (a->size == 0)
		return 0;
	if ((good = audit_last_newline(a->fd, a->size)) == -1)
		return 0;
	if (good < a->size) {
		torn = a->size - good;
		if (ftruncate(a->fd, good) == 0)
			a->size = good;
	}
	if (a->size == 0 || (start = audit_last_newline(a->fd, a->size - 1)) == -1)
		return torn;
	len = (size_t)(a->size - 1 - start);		/* the last line, without '\n' */
	memset(head, 0, sizeof(head));
	if (pread(a->fd, head, len < sizeof(head) - 1 ? len : sizeof(head) - 1, start) < 0)
		return torn;
	if (len >= AUDIT_CHAIN_SUFFIX_LEN && pread(a->fd, tail, AUDIT_CHAIN_SUFFIX_LEN,
	    a->size - 1 - AUDIT_CHAIN_SUFFIX_LEN) == AUDIT_CHAIN_SUFFIX_LEN) {
		tail[AUDIT_CHAIN_SUFFIX_LEN] = '\0';
		if (strncmp(head, "{\"seq\":", 7) == 0)
			a->seq = strtoull(head + 7, NULL, 10);
		if (memcmp(tail, ",\"chain\":\"", 10) == 0) {
			memcpy(a->chain, tail + 10, SIGNER_HEX_LEN);
			a->chain[SIGNER_HEX_LEN] = '\0';
		}
	} else if (strncmp(head, "{\"seq\":", 7) == 0)
		a->seq = strtoull(head + 7, NULL, 10);
	return torn;
}

/* The state-directory copy of the trail's tail: "SEQ CHAIN\n". */
static void
audit_tail_save(const struct audit *a)
{
	char	tmp[4096], line[128];
	int	fd, n;

	if (a->tail_path == NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->tail_path);
	n = snprintf(line, sizeof(line), "%llu %s\n", a->dseq, a->dchain);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		return;
	if (write(fd, line, (size_t)n) == n && fsync(fd) == 0)
		(void)rename(tmp, a->tail_path);
	close(fd);
}

/* Write the tail copy at tail_path from now on (and at once). */
void
audit_set_tail(struct audit *a, const char *tail_path)
{
	char	*p;

	if ((p = strdup(tail_path)) == NULL)
		return;
	free(a->tail_path);
	a->tail_path = p;
	audit_tail_save(a);
}

/*
 * A new or empty trail continues the chain saved in the state directory.
 * The copy is read by the same rules as audit-verify reads it
 * (audit_tail_parse); a malformed one is ignored.
 */
static void
audit_tail_load(struct audit *a)
{
	unsigned long long	 seq;
	char			 buf[128], chain[SIGNER_HEX_LEN + 1];
	ssize_t			 n;
	int			 fd;

	if (a->tail_path == NULL || (fd = open(a->tail_path, O_RDONLY | O_CLOEXEC)) == -1)
		return;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n > 0 && audit_tail_parse(buf, (size_t)n, &seq, chain) == 0) {
		a->seq = seq;
		fmt_copy(a->chain, sizeof(a->chain), *chain ? chain : AUDIT_NO_CHAIN);
	}
}

/* Open the trail, recover its chain state and write the "open" record. */
struct audit *
audit_open(struct event_base *base, const char *path, enum conf_sync sync,
    const struct signer *key, const char *tail_path, char **cause)
{
	struct audit	*a;
	struct timeval	 tv = { AUDIT_CHECK_MS / 1000, (AUDIT_CHECK_MS % 1000) * 1000 };
	char		 note[64] = "";
	off_t		 torn;

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
	a->key = key;
	a->efd = -1;
	a->tail_path = tail_path ? strdup(tail_path) : NULL;
	strcpy(a->chain, AUDIT_NO_CHAIN);
	if ((a->fd = audit_openfd(path, &a->size, cause)) == -1) {
		audit_close(a);
		return NULL;
	}
	if (audit_lockfd(a->fd, path, cause)) {
		close(a->fd);	/* not ours: no closing record, not even a flush */
		a->fd = -1;
		audit_close(a);
		return NULL;
	}
	if ((torn = audit_recover(a)) > 0) {
		log_warn("audit: %s ended in a torn line (%lld bytes, never acknowledged); cut off",
		    path, (long long)torn);
		snprintf(note, sizeof(note), ",\"torn_bytes_removed\":%lld", (long long)torn);
	}
	if (a->size == 0)
		audit_tail_load(a);	/* rotated while we were stopped */
	a->dseq = a->seq;
	memcpy(a->dchain, a->chain, sizeof(a->chain));
	if (base != NULL) {
		a->flush_ev = event_new(base, -1, 0, audit_flush_cb, a);
		a->idle_ev = event_new(base, -1, 0, audit_idle_cb, a);
		if (a->idle_ev != NULL && event_priority_set(a->idle_ev, 2) == -1) {
			event_free(a->idle_ev);	/* a loop without priorities */
			a->idle_ev = NULL;
		}
		a->check_ev = event_new(base, -1, EV_PERSIST, audit_check_cb, a);
		event_add(a->check_ev, &tv);
		if (audit_worker_start(a) == -1)
			log_warn("audit: no sync thread; fdatasync runs on the event loop");
	}
	if (audit_start_file(a, "start", note) == -1) {
		if (asprintf(cause, "%s: cannot write the opening record", path) == -1)
			*cause = NULL;
		close(a->fd);	/* no close record after an open record that failed */
		a->fd = -1;
		audit_close(a);
		return NULL;
	}
	return a;
}

/* Write a record made by the writer itself, synchronously. */
static int
audit_own_record(struct audit *a, const char *phase, const char *reason, const char *extra)
{
	struct evbuffer	*line = evbuffer_new();
	char		 ts[32];

	if (line == NULL)
		return -1;
	log_time(ts, log_now_ms());
	evbuffer_add_printf(line, "{\"time\":\"%s\",\"phase\":\"%s\",\"reason\":\"%s\","
	    "\"pid\":%ld%s}", ts, phase, reason, (long)getpid(), extra);
	audit_append(a, line, NULL, NULL);
	evbuffer_free(line);
	a->sync_all = 1;
	audit_flush(a);
	a->sync_all = 0;
	return a->failed ? -1 : 0;
}

/* The first record of a file names the chain value it continues. */
static int
audit_start_file(struct audit *a, const char *reason, const char *note)
{
	char	extra[160];

	snprintf(extra, sizeof(extra), ",\"prev_chain\":%s%s%s,\"chained\":%s%s",
	    strcmp(a->chain, AUDIT_NO_CHAIN) ? "\"" : "", a->chain,
	    strcmp(a->chain, AUDIT_NO_CHAIN) ? "\"" : "", a->key ? "true" : "false", note);
	return audit_own_record(a, "open", reason, extra);
}

/*
 * Reopen by path (log rotation): close the old file, open the new one.  A new
 * file another process holds locked is refused: the old one stays in use.
 */
int
audit_reopen(struct audit *a, char **cause)
{
	struct stat	st, mine;
	off_t		size;
	int		fd, same;

	*cause = NULL;
	audit_flush(a);
	if ((fd = audit_openfd(a->path, &size, cause)) == -1)
		return -1;
	/*
	 * Still our file (SIGHUP, no rotation): keep the descriptor that holds
	 * the lock; locking a second open of it would conflict with ourselves.
	 */
	same = fstat(fd, &st) == 0 && fstat(a->fd, &mine) == 0 &&
	    st.st_dev == mine.st_dev && st.st_ino == mine.st_ino;
	if (same)
		close(fd);
	else if (audit_lockfd(fd, a->path, cause)) {
		a->busy_dev = st.st_dev;
		a->busy_ino = st.st_ino;
		close(fd);
		return -1;
	}
	(void)audit_own_record(a, "close", "rotate", "");
	audit_tail_save(a);
	if (same) {
		/* the file's end now, after our closing record */
		if (fstat(a->fd, &mine) == 0)
			a->size = mine.st_size;
	} else {
		/* the worker is idle (flushed above) and its dups are closed or about to be */
		close(a->fd);
		a->fd = fd;
		a->size = size;
	}
	if (audit_start_file(a, "rotate", "") == -1) {
		if (asprintf(cause, "%s: cannot write the opening record", a->path) == -1)
			*cause = NULL;
		return -1;
	}
	return 0;
}

/* The file at our path was removed or replaced behind our back. */
static void
audit_check_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct audit	*a = arg;
	struct stat	 st, mine;
	char		*cause = NULL;

	if (fstat(a->fd, &mine) == -1)
		return;
	if (stat(a->path, &st) == 0 && ((st.st_dev == mine.st_dev && st.st_ino == mine.st_ino) ||
	    (st.st_dev == a->busy_dev && st.st_ino == a->busy_ino)))
		return;		/* ours, or another writer's: refused and logged once */
	log_warn("audit: %s was removed or replaced; starting a new file there", a->path);
	if (audit_reopen(a, &cause) == -1) {
		log_err("audit: %s", cause ? cause : "cannot reopen");
		if (mine.st_nlink > 0 && stat(a->path, &st) == 0 &&
		    st.st_dev == a->busy_dev && st.st_ino == a->busy_ino)
			log_warn("audit: records go on to the file that was at %s; "
			    "SIGHUP tries the path again", a->path);
		else
			a->failed = 1;
	}
	free(cause);
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

unsigned long long
audit_seq(const struct audit *a)
{
	return a->seq;
}

/* Write n queued bytes, retrying short writes; they leave the queue whatever happens. */
static int
audit_write(struct audit *a, size_t n)
{
	size_t	done = 0;
	int	w, err;

	while (done < n) {
		w = evbuffer_write_atmost(a->queue, a->fd, (ev_ssize_t)(n - done));
		if (w <= 0) {
			if (w == -1 && errno == EINTR)
				continue;
			err = w == 0 ? EIO : errno;
			evbuffer_drain(a->queue, n - done);
			errno = err;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

/*
 * Writing failed (what: "write", "sync" or "removed"): refuse requests.  A
 * file still in place is cut back to its last durable line; a removed one
 * is replaced at the path at once.
 */
static void
audit_failed(struct audit *a, int err, const char *what)
{
	if (strcmp(what, "removed") == 0) {
		if (a->check_ev != NULL)
			event_active(a->check_ev, 0, 0);	/* reopen at the path now */
		if (!a->failed)
			log_err("audit: %s was removed; refusing requests until it is recreated",
			    a->path);
		a->failed = 1;
		return;
	}
	if (ftruncate(a->fd, a->size) == -1)
		log_err("audit: cannot truncate %s: %s", a->path, strerror(errno));
	if (!a->failed)
		log_err("audit: cannot %s %s: %s; refusing requests until it works", what,
		    a->path, strerror(err));
	a->failed = 1;
}

/*
 * Synced lines stay in the page cache, where nothing reads them again: every
 * AUDIT_CACHE_STEP bytes, drop all but the newest AUDIT_CACHE_KEEP (a reader
 * that follows the file still finds those in memory).  A busy trail then
 * recycles a few MB of cache instead of filling memory with clean pages (and,
 * on a VM, paying for fresh guest memory on every write).  end: the file's
 * size, all of it durable; *last: the end at the previous drop, per writer.
 * Returns how much to drop from the start of the file (0: nothing yet).
 */
static off_t
audit_drop_due(off_t end, off_t *last)
{
	if (end < *last)	/* a new file at the path */
		*last = 0;
	if (end <= AUDIT_CACHE_KEEP || end - *last < AUDIT_CACHE_STEP)
		return 0;
	*last = end;
	return end - AUDIT_CACHE_KEEP;	/* drop [0, this) */
}

static void
audit_drop_cache(int fd, off_t len)
{
	if (len > 0)
		(void)posix_fadvise(fd, 0, len, POSIX_FADV_DONTNEED);
}

/* Write n queued bytes without syncing; -1 when the trail failed. */
static int
audit_write_only(struct audit *a, size_t n)
{
	struct stat	st;

	if (fstat(a->fd, &st) == 0 && st.st_nlink == 0) {
		/* the file was removed: lines written now would be lost with it */
		evbuffer_drain(a->queue, n);
		audit_failed(a, ENOENT, "removed");
		return -1;
	}
	if (audit_write(a, n) == -1) {
		audit_failed(a, errno, "write");
		return -1;
	}
	return 0;
}

/* Write and (if need_sync) sync n queued bytes; -1 when the trail failed. */
static int
audit_commit(struct audit *a, size_t n, int need_sync)
{
	if (audit_write_only(a, n) == -1)
		return -1;
	if (need_sync && fdatasync(a->fd) == -1) {
		audit_failed(a, errno, "sync");
		return -1;
	}
	a->size += (off_t)n;
	if (need_sync)
		audit_drop_cache(a->fd, audit_drop_due(a->size, &a->drop_end));
	if (a->failed)
		log_info("audit: writing %s works again", a->path);
	a->failed = 0;
	return 0;
}

/* Write everything queued now and run the callbacks. */
void
audit_flush(struct audit *a)
{
	struct audit_entry	*ent;
	size_t			 i, start, n, nent;
	int			 rc = 0;

	if (a->syncing)		/* blocking flush: let the worker finish first */
		audit_sync_settle(a);
	ent = a->ent;
	nent = a->nent;
	a->scheduled = 0;
	if (nent == 0)
		return;
	a->ent = NULL;
	a->nent = a->cap = 0;
	for (start = 0; start < nent; start = i) {
		int waiter = 0;
		n = 0;
		i = start;
		do {
			waiter |= ent[i].cb != NULL;
			n += ent[i++].len;
		} while ((a->sync != SYNC_ALWAYS || rc == -1) && i < nent);
		/*
		 * batch: only a batch holding a write-ahead line (someone waits for
		 * it) pays for fdatasync; outcome lines ride along with the next.
		 */
		if (rc == -1)		/* an earlier chunk failed: these chain on it */
			evbuffer_drain(a->queue, n);
		else if ((rc = audit_commit(a, n, a->sync == SYNC_ALWAYS ||
		    (a->sync == SYNC_BATCH && (waiter || a->sync_all)))) == 0) {
			a->dseq = ent[i - 1].seq;
			memcpy(a->dchain, ent[i - 1].chain, sizeof(a->dchain));
		}
	}
	if (rc == -1) {		/* later lines chain from the last durable one */
		a->seq = a->dseq;
		memcpy(a->chain, a->dchain, sizeof(a->chain));
	}
	for (i = 0; i < nent; i++)	/* durable iff its chunk was committed */
		if (ent[i].cb != NULL)
			ent[i].cb(ent[i].arg, ent[i].seq <= a->dseq ? 0 : -1);
	free(ent);
}

/*
 * The batch worker.  It takes every line queued at the moment it starts, so
 * the lines sealed while it waited for the CPU or for the previous sync join
 * the batch: one write and one fdatasync for all of them.  It never logs or
 * touches the event loop; audit_sync_settle() reports on the loop.
 */
static void *
audit_worker(void *arg)
{
	struct audit		*a = arg;
	struct stat		 st;
	uint64_t		 one = 1;
	size_t			 i, n;
	off_t			 drop_end = 0, drop;	/* this thread's, for audit_drop_due */
	int			 fd, err, w, need_sync, have_st, drop_fd;
	const char		*what;

	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->th_job && !a->th_stop)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->th_stop)
			break;
		a->th_job = 0;
		fd = a->fd;
		/* in flight: audit_forget() may still clear callbacks, under mu */
		a->sent = a->ent;
		a->nsent = a->nent;
		a->ent = NULL;
		a->nent = a->cap = 0;
		evbuffer_add_buffer(a->wbuf, a->queue);
		need_sync = a->sync_all;
		for (i = 0; i < a->nsent; i++)	/* only a write-ahead line needs the sync */
			need_sync |= a->sent[i].cb != NULL;
		pthread_mutex_unlock(&a->mu);

		n = evbuffer_get_length(a->wbuf);
		err = 0;
		what = NULL;
		drop_fd = -1;
		if ((have_st = fstat(fd, &st) == 0) && st.st_nlink == 0) {
			err = ENOENT;	/* lines written now would be lost with the file */
			what = "removed";
		}
		while (err == 0 && evbuffer_get_length(a->wbuf) > 0) {
			if ((w = evbuffer_write(a->wbuf, fd)) <= 0 && !(w == -1 && errno == EINTR)) {
				err = w == 0 ? EIO : errno;
				what = "write";
			}
		}
		if (err == 0 && need_sync && fdatasync(fd) == -1) {
			err = errno;
			what = "sync";
		} else if (err == 0 && need_sync && have_st &&	/* O_APPEND, one writer */
		    (drop = audit_drop_due(st.st_size + (off_t)n, &drop_end)) > 0)
			/* dropped after the batch is reported; the loop may close fd */
			drop_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		evbuffer_drain(a->wbuf, evbuffer_get_length(a->wbuf));

		pthread_mutex_lock(&a->mu);
		a->sent_bytes = n;
		a->th_err = err;
		a->th_what = what;
		a->th_done = 1;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		/* wake the loop only after unlocking: it takes the mutex next */
		(void)!write(a->efd, &one, sizeof(one));
		if (drop_fd != -1) {	/* off the batch's path: its requests go on */
			audit_drop_cache(drop_fd, drop);
			close(drop_fd);
		}
		pthread_mutex_lock(&a->mu);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* The worker's batch is written and durable (or not): settle its callbacks. */
static void
audit_sync_settle(struct audit *a)
{
	struct audit_entry	*ent, *queued;
	size_t			 i, nent, nqueued = 0;
	const char		*what;
	int			 err;

	pthread_mutex_lock(&a->mu);
	while (!a->th_done)
		pthread_cond_wait(&a->cv, &a->mu);
	a->th_done = 0;
	err = a->th_err;
	what = a->th_what;
	ent = a->sent;
	nent = a->nsent;
	a->sent = NULL;
	a->nsent = 0;
	queued = NULL;
	if (err != 0) {		/* lines queued meanwhile chain from the lost batch */
		queued = a->ent;
		nqueued = a->nent;
		a->ent = NULL;
		a->nent = a->cap = 0;
		evbuffer_drain(a->queue, evbuffer_get_length(a->queue));
	}
	pthread_mutex_unlock(&a->mu);
	a->syncing = 0;
	if (err == 0) {
		a->size += (off_t)a->sent_bytes;
		if (nent > 0) {
			a->dseq = ent[nent - 1].seq;
			memcpy(a->dchain, ent[nent - 1].chain, sizeof(a->dchain));
		}
		if (a->failed)
			log_info("audit: writing %s works again", a->path);
		a->failed = 0;
	} else {
		audit_failed(a, err, what);
		a->seq = a->dseq;
		memcpy(a->chain, a->dchain, sizeof(a->chain));
	}
	for (i = 0; i < nent; i++)
		if (ent[i].cb != NULL)
			ent[i].cb(ent[i].arg, err == 0 ? 0 : -1);
	free(ent);
	for (i = 0; i < nqueued; i++)
		if (queued[i].cb != NULL)
			queued[i].cb(queued[i].arg, -1);
	free(queued);
}

static void
audit_done_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct audit	*a = arg;
	uint64_t	 v;

	(void)!read(a->efd, &v, sizeof(v));
	if (!a->syncing)
		return;
	audit_sync_settle(a);
	if (a->nent > 0)
		audit_flush_cb(-1, 0, a);
}

/* Start the worker (batch mode on an event loop); -1: stay synchronous. */
static int
audit_worker_start(struct audit *a)
{
	if (a->base == NULL || (a->wbuf = evbuffer_new()) == NULL)
		return -1;
	if ((a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		evbuffer_free(a->wbuf);
		a->wbuf = NULL;
		return -1;
	}
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->done_ev = event_new(a->base, a->efd, EV_READ | EV_PERSIST, audit_done_cb, a);
	if (a->done_ev == NULL || event_add(a->done_ev, NULL) == -1 ||
	    pthread_create(&a->th, NULL, audit_worker, a) != 0) {
		if (a->done_ev != NULL)
			event_free(a->done_ev);
		a->done_ev = NULL;
		close(a->efd);
		a->efd = -1;
		evbuffer_free(a->wbuf);
		a->wbuf = NULL;
		return -1;
	}
	/* "ocp-audit-sync" in top -H, ps -L and the bench's per-thread figures */
	(void)pthread_setname_np(a->th, "ocp-audit-sync");
	a->th_on = 1;
	return 0;
}

/* Give the worker the job of writing and syncing everything queued. */
static void
audit_handoff(struct audit *a)
{
	a->syncing = 1;
	pthread_mutex_lock(&a->mu);
	a->th_job = 1;
	pthread_mutex_unlock(&a->mu);
	/*
	 * Signal after unlocking: the worker, woken on this core, would
	 * otherwise preempt the loop only to block on the mutex it still holds.
	 */
	pthread_cond_signal(&a->cv);
}

/*
 * Group commit (batch mode).  A batch is handed to the worker when the
 * event loop has nothing else to do (a lowest-priority event runs only in a
 * loop pass without other work), so every request whose line can still be
 * sealed before the loop would wait joins it; under sustained load it is
 * handed over at AUDIT_BATCH_LINES lines or AUDIT_BATCH_MS of age.  The
 * worker takes everything queued when it starts; lines sealed while it
 * writes and syncs form the next batch.  A batch without a write-ahead line
 * (nobody waits) is written but not synced on its own.
 */
static void
audit_flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct audit	*a = arg;

	if (!a->th_on || a->sync != SYNC_BATCH) {
		audit_flush(a);
		return;
	}
	a->scheduled = 0;
	if (a->syncing || a->nent == 0)	/* worker idle: only the loop changes nent */
		return;		/* audit_done_cb hands over what is queued */
	if (a->idle_ev == NULL || a->nent >= AUDIT_BATCH_LINES ||
	    log_now_ms() - a->first_ms >= AUDIT_BATCH_MS)
		audit_handoff(a);
	else if (!a->idle_armed) {
		a->idle_armed = 1;
		event_active(a->idle_ev, 0, 0);
	}
}

/* The loop ran out of other work: start the batch now. */
static void
audit_idle_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct audit	*a = arg;

	a->idle_armed = 0;
	if (a->syncing || a->nent == 0)	/* nent is the worker's while syncing */
		return;
	if (a->th_on && a->sync == SYNC_BATCH)
		audit_handoff(a);
	else
		audit_flush_cb(-1, 0, a);
}

/* "{\"seq\":N," into head[40] without printf; its length. */
static int
audit_seq_head(char *head, unsigned long long seq)
{
	size_t	n;

	memcpy(head, "{\"seq\":", 7);
	n = fmt_uint(head + 7, seq, 10, 0);	/* at most 20 digits */
	head[7 + n] = ',';
	return (int)(8 + n);
}

/* Number the line, chain it and move it to the queue. */
static void
audit_seal(struct audit *a, struct evbuffer *line, size_t len, struct audit_entry *e)
{
	unsigned char	*p = evbuffer_pullup(line, (ev_ssize_t)len);
	char		 head[40], mac[SIGNER_HEX_LEN + 1];
	char		 tail[AUDIT_CHAIN_SUFFIX_LEN + 1] = ",\"chain\":\"";	/* + mac + "}\n */
	struct iovec	 iov[4];
	size_t		 before = evbuffer_get_length(a->queue);
	int		 hl;

	a->seq++;
	hl = audit_seq_head(head, a->seq);
	evbuffer_add(a->queue, head, (size_t)hl);
	evbuffer_add(a->queue, p + 1, len - 2);
	if (a->key != NULL) {
		iov[0] = (struct iovec){ a->chain, strcmp(a->chain, AUDIT_NO_CHAIN) ? SIGNER_HEX_LEN : 0 };
		iov[1] = (struct iovec){ head, (size_t)hl };
		iov[2] = (struct iovec){ p + 1, len - 2 };
		iov[3] = (struct iovec){ (char *)"}", 1 };
		if (signer_sign(a->key, iov, 4, mac) == 0) {
			memcpy(a->chain, mac, sizeof(mac));
			memcpy(tail + 10, mac, SIGNER_HEX_LEN);
			memcpy(tail + 10 + SIGNER_HEX_LEN, "\"}\n", 3);
			evbuffer_add(a->queue, tail, 10 + SIGNER_HEX_LEN + 3);
		} else
			evbuffer_add(a->queue, "}\n", 2);
	} else
		evbuffer_add(a->queue, "}\n", 2);
	evbuffer_drain(line, len);
	e->len = evbuffer_get_length(a->queue) - before;
	e->seq = a->seq;
	memcpy(e->chain, a->chain, sizeof(e->chain));
}

/* Queue one line; the callback runs after the group commit. */
void
audit_append(struct audit *a, struct evbuffer *line, audit_done_fn cb, void *arg)
{
	struct audit_entry	*n;
	size_t			 len = evbuffer_get_length(line), hits;
	unsigned char		*p;

	if (len < 3 || (p = evbuffer_pullup(line, -1)) == NULL || p[0] != '{' || p[len - 1] != '}') {
		if (cb != NULL)
			cb(arg, -1);
		return;
	}
	if ((hits = secret_guard_scrub((char *)p, len)) > 0)
		log_warn("leak guard: replaced %zu occurrence(s) of a held secret in an audit "
		    "record", hits);
	if (a->th_on)
		pthread_mutex_lock(&a->mu);
	if (a->nent == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		if ((n = realloc(a->ent, cap * sizeof(*n))) == NULL) {
			if (a->th_on)
				pthread_mutex_unlock(&a->mu);
			evbuffer_drain(line, len);
			if (cb != NULL)
				cb(arg, -1);
			return;
		}
		a->ent = n;
		a->cap = cap;
	}
	if (a->nent == 0)
		a->first_ms = log_now_ms();
	n = &a->ent[a->nent++];
	n->cb = cb;
	n->arg = arg;
	audit_seal(a, line, len, n);
	if (a->th_on)
		pthread_mutex_unlock(&a->mu);
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

	if (a->th_on)
		pthread_mutex_lock(&a->mu);
	for (i = 0; i < a->nent; i++)
		if (a->ent[i].arg == arg)
			a->ent[i].cb = NULL;
	for (i = 0; i < a->nsent; i++)	/* taken by the worker, not settled yet */
		if (a->sent[i].arg == arg)
			a->sent[i].cb = NULL;
	if (a->th_on)
		pthread_mutex_unlock(&a->mu);
}

/*
 * Closing record, flush and close.  -1 (logged) when the close record could
 * not be written or synced: the trail then ends without it.
 */
int
audit_close(struct audit *a)
{
	int	rc = 0;

	if (a == NULL)
		return 0;
	if (a->fd != -1 && a->queue != NULL) {
		audit_flush(a);
		if (audit_own_record(a, "close", "shutdown", "") == -1) {
			log_err("audit: %s: the close record could not be written: the trail "
			    "ends without it (audit-verify will say so)", a->path);
			rc = -1;
		} else if (a->sync != SYNC_NONE && fsync(a->fd) == -1) {
			log_err("audit: %s: cannot sync the close record: %s", a->path,
			    strerror(errno));
			rc = -1;
		}
		audit_tail_save(a);	/* names the last record the file holds */
	}
	if (a->th_on) {
		pthread_mutex_lock(&a->mu);
		a->th_stop = 1;
		pthread_cond_signal(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->th, NULL);
		evbuffer_free(a->wbuf);
		event_free(a->done_ev);
		close(a->efd);
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cv);
	}
	if (a->fd > 0)
		close(a->fd);
	if (a->flush_ev != NULL)
		event_free(a->flush_ev);
	if (a->idle_ev != NULL)
		event_free(a->idle_ev);
	if (a->check_ev != NULL)
		event_free(a->check_ev);
	if (a->queue != NULL)
		evbuffer_free(a->queue);
	free(a->tail_path);
	free(a->path);
	free(a);
	return rc;
}
