/*
 * audit.c — the audit trail writer: JSON lines appended to one file.
 *
 * Lines queued during one pass of the event loop are written with one
 * write(2) and, unless sync = none, made durable with one fdatasync (group
 * commit); sync = always syncs each line on its own.  A write-ahead line
 * carries a callback that runs once the line is durable (ok = 0) or could not
 * be written (ok = -1): the request is only forwarded after ok = 0.
 * On a failed write the file is truncated back to its last complete line and
 * the trail reports itself unavailable until a later write succeeds.
 *
 * Every line gets a "seq" (first member) continuing across files and
 * restarts, and, with a chain key, a final "chain" member:
 *   chain = hex HMAC-SHA256(key, previous chain hex || line without chain)
 * where "line without chain" is the line with the member removed, i.e. the
 * bytes up to ',"chain":' followed by '}'.  Each file starts with an "open"
 * record naming the previous chain value ("prev_chain"); a clean shutdown or
 * rotation writes a "close" record, so truncation is visible.
 */
#ifndef AUDIT_H
#define AUDIT_H
#include "conf.h"

struct event_base;
struct evbuffer;
struct audit;

typedef void (*audit_done_fn)(void *arg, int ok);

struct signer;

/* chain may be NULL (no chain values); the audit keeps a pointer to it. */
/*
 * tail_path (may be NULL): a small file in the state directory holding the
 * last seq and chain value, written with every closing record, so that a
 * trail rotated while the proxy was stopped still continues the chain.
 */
struct audit	*audit_open(struct event_base *, const char *path, enum conf_sync,
		    const struct signer *chain, const char *tail_path, char **cause);
/* Write the closing record, flush everything queued (blocking) and close. */
int		 audit_close(struct audit *);	/* -1: the close record is missing */
/* Recovered or fresh sequence number and chain value of the trail's tail. */
unsigned long long audit_seq(const struct audit *);
/* Reopen the file by path (log rotation); keeps the old fd on failure. */
int		 audit_reopen(struct audit *, char **cause);
void		 audit_set_sync(struct audit *, enum conf_sync);
/* The state directory moved: keep the tail copy at tail_path from now on. */
void		 audit_set_tail(struct audit *, const char *tail_path);
/* Queue one line (without newline); its bytes are moved out of line. */
void		 audit_append(struct audit *, struct evbuffer *line, audit_done_fn, void *arg);
/* Drop the callback of a queued line whose request went away. */
void		 audit_forget(struct audit *, void *arg);
/* 0 while writing works, -1 after a failure until the next success. */
int		 audit_healthy(const struct audit *);
/* Write and sync everything queued now (blocking). */
void		 audit_flush(struct audit *);

#define AUDIT_CHAIN_SUFFIX_LEN	(10 + 64 + 2)	/* ,"chain":"<64 hex>"} */

#endif
