/*
 * upstream.c — the HTTPS client side: a pool of kept-alive, verified TLS
 * connections to the OnChainPay API, with TLS session resumption.
 *
 * upstream_send() queues one exchange; the pool hands it to an idle
 * connection, or opens a new one (up to max_connections), and calls done
 * exactly once with the result, unless the exchange was cancelled first.
 * A request is written at most once: it is only retried (on a fresh
 * connection) when a reused connection failed before TLS took any byte of
 * it.  The done callback never runs inside upstream_send().
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H
#include <sys/uio.h>
#include "conf.h"

struct event_base;
struct evdns_base;
struct evbuffer;
struct upstream;
struct up_xfer;

enum up_err {
	UP_OK = 0,
	UP_CONNECT,	/* DNS or TCP connect failed (502) */
	UP_TLS,		/* handshake or certificate verification failed (502) */
	UP_PROTOCOL,	/* closed early, malformed or oversized answer (502) */
	UP_TIMEOUT,	/* connect, handshake or total timeout (504) */
};

struct up_result {
	enum up_err	 err;
	const char	*why;		/* static text for logs */
	int		 status;	/* upstream HTTP status when err == UP_OK */
	char		 content_type[128];
	struct evbuffer	*body;		/* owned by the exchange; move it out if needed */
	int		 reused;	/* ran on a kept-alive connection */
	char		 detail[128];	/* the OS or TLS error behind err ("" if none), as logged */
};

typedef void (*up_done_fn)(void *arg, struct up_result *);

struct upstream	*upstream_new(struct event_base *, struct evdns_base *,
		    const struct conf *, char **cause);
/* Name the service in log lines: "upstream" by default; label must be static. */
void		 upstream_set_label(struct upstream *, const char *label);
void		 upstream_ref(struct upstream *);
/* Drop a reference; the last one closes idle connections and frees. */
void		 upstream_unref(struct upstream *);
/* Queue an exchange: the request is msg[0..n) (head, then body), copied
 * (the caller cleanses its own copy).  NULL on ENOMEM. */
struct up_xfer	*upstream_send(struct upstream *, const struct iovec *msg, int n,
		    up_done_fn, void *arg);
/* Abandon an exchange: no callback will run; its connection is closed. */
void		 upstream_cancel(struct up_xfer *);
/* 1 if both configs point the pool at the same place in the same way. */
int		 upstream_same(const struct conf *, const struct conf *);
/* Counters for logs and tests. */
struct upstream_stats {
	unsigned long long connects, handshakes, resumed, reused, retried;
};
void		 upstream_stats(const struct upstream *, struct upstream_stats *);

#endif
