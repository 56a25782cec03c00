/*
 * upstream.c — kept-alive TLS connection pool and HTTP/1.1 client.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "httpp.h"
#include "log.h"
#include "upstream.h"
#include "wipe.h"

#define UP_MAX_HEAD	65536
#define UP_SPARE	64	/* finished exchanges kept for reuse */

enum conn_state { C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_IDLE, C_BUSY };
enum body_mode { B_NONE, B_LENGTH, B_CHUNKED, B_CLOSE };

struct up_conn;

struct up_xfer {
	TAILQ_ENTRY(up_xfer)	 entry;
	struct upstream		*up;
	struct up_conn		*conn;
	struct evbuffer		*req;		/* the whole request */
	size_t			 req_len;
	up_done_fn		 done;
	void			*arg;
	struct event		*timer;		/* total timeout */
	struct up_result	 res;		/* res.body is kept, emptied, for reuse */
	int			 queued;
	int			 tries;
	int			 in_send;	/* inside upstream_send: no callback yet */
	int			 finish_later;	/* finished there: call back from the loop */
};
TAILQ_HEAD(up_xferq, up_xfer);

struct up_conn {
	TAILQ_ENTRY(up_conn)	 entry;		/* upstream.all */
	TAILQ_ENTRY(up_conn)	 ientry;	/* upstream.idle */
	struct upstream		*up;
	enum conn_state		 state;
	int			 fd;
	struct event		*ev;		/* connect wait, then handshake / idle timer */
	struct evdns_getaddrinfo_request *dns;
	/*
	 * TLS straight on the socket: a persistent read event registered once
	 * for the connection's life, a one-shot write event armed only when
	 * the socket is full, so a request costs no epoll_ctl.
	 */
	SSL			*ssl;
	struct event		*rev;
	struct event		*wev;
	struct evbuffer		*in;		/* decrypted response bytes */
	size_t			 woff;		/* request bytes TLS has taken */
	int			 read_wants_write;
	int			 write_wants_read;
	struct up_xfer		*xfer;
	int			 uses;
	/* response parsing */
	int			 head_done;
	enum body_mode		 mode;
	unsigned long long	 left;
	struct httpp_chunked	 chunk;
	size_t			 got;
	int			 keepalive;
	char			 detail[128];	/* what a failure logged, for up_result */
};
TAILQ_HEAD(up_connq, up_conn);

struct upstream {
	int			 refs;
	struct event_base	*base;
	struct evdns_base	*dns;
	SSL_CTX			*ctx;
	SSL_SESSION		*session;
	char			*host;
	char			*port;
	const char		*label;		/* names the service in log lines */
	int			 host_is_ip;
	unsigned		 connect_ms, handshake_ms, total_ms, idle_ms, max_conns;
	size_t			 max_resp;
	struct up_connq		 idle;
	struct up_connq		 all;
	unsigned		 nconns;
	struct up_xferq		 waiting;
	struct up_xferq		 spare;		/* finished exchanges kept for reuse */
	unsigned		 nspare;
	int			 pumping, repump;
	struct upstream_stats	 st;
};

static void conn_free(struct up_conn *);
static void xfer_free(struct up_xfer *);
static void xfer_timeout(evutil_socket_t, short, void *);
static void pool_pump(struct upstream *);
static void conn_start_xfer(struct up_conn *, struct up_xfer *);
static int conn_write(struct up_conn *);

/* Keep the newest session for resumption on later connections. */
static int
up_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct upstream	*up = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	if (up->session != NULL)
		SSL_SESSION_free(up->session);
	up->session = sess;
	return 1;	/* we keep the reference */
}

/* A verifying TLS 1.2+ client context. */
static SSL_CTX *
up_ctx(struct upstream *up, const struct conf *c, char **cause)
{
	SSL_CTX	*ctx;
	char	 buf[256];

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_read_ahead(ctx, 1);		/* one read() per record batch */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	/* answers hold passwords and Vault secrets: no plaintext left in record buffers */
	SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (c->ca_file != NULL && *c->ca_file != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL) != 1)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		goto fail;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, up_new_session);
	SSL_CTX_set_app_data(ctx, up);
	return ctx;
fail:
	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	if (asprintf(cause, "[upstream] ca_file %s: %s", c->ca_file ? c->ca_file : "", buf) == -1)
		*cause = NULL;
	SSL_CTX_free(ctx);
	return NULL;
}

/* Create the pool for conf c. */
struct upstream *
upstream_new(struct event_base *base, struct evdns_base *dns, const struct conf *c,
    char **cause)
{
	struct upstream	*up;

	*cause = NULL;
	if ((up = calloc(1, sizeof(*up))) == NULL)
		return NULL;
	up->refs = 1;
	up->label = "upstream";
	up->base = base;
	up->dns = dns;
	up->host = strdup(c->up_host);
	up->port = strdup(c->up_port);
	up->host_is_ip = c->up_host_is_ip;
	up->connect_ms = c->connect_timeout_ms;
	up->handshake_ms = c->handshake_timeout_ms;
	up->total_ms = c->timeout_ms;
	up->idle_ms = c->upstream_idle_timeout_ms;
	up->max_conns = c->upstream_max_connections;
	up->max_resp = c->max_response_bytes;
	TAILQ_INIT(&up->idle);
	TAILQ_INIT(&up->all);
	TAILQ_INIT(&up->waiting);
	TAILQ_INIT(&up->spare);
	if (up->host == NULL || up->port == NULL || (up->ctx = up_ctx(up, c, cause)) == NULL) {
		free(up->host);
		free(up->port);
		free(up);
		return NULL;
	}
	return up;
}

/* Name the service in log lines ("upstream" unless told; label is static). */
void
upstream_set_label(struct upstream *up, const char *label)
{
	up->label = label;
}

/* 1 when a reload can keep the existing pool. */
int
upstream_same(const struct conf *a, const struct conf *b)
{
	return strcmp(a->upstream_url, b->upstream_url) == 0 &&
	    strcmp(a->ca_file, b->ca_file) == 0 &&
	    a->connect_timeout_ms == b->connect_timeout_ms &&
	    a->handshake_timeout_ms == b->handshake_timeout_ms &&
	    a->timeout_ms == b->timeout_ms &&
	    a->upstream_max_connections == b->upstream_max_connections &&
	    a->upstream_idle_timeout_ms == b->upstream_idle_timeout_ms &&
	    a->max_response_bytes == b->max_response_bytes;
}

void
upstream_ref(struct upstream *up)
{
	up->refs++;
}

/* Drop a reference; the last closes every connection. */
void
upstream_unref(struct upstream *up)
{
	struct up_conn	*c;
	struct up_xfer	*x;

	if (up == NULL || --up->refs > 0)
		return;
	while ((c = TAILQ_FIRST(&up->all)) != NULL)
		conn_free(c);
	while ((x = TAILQ_FIRST(&up->spare)) != NULL) {
		TAILQ_REMOVE(&up->spare, x, entry);
		xfer_free(x);
	}
	if (up->session != NULL)
		SSL_SESSION_free(up->session);
	SSL_CTX_free(up->ctx);
	free(up->host);
	free(up->port);
	free(up);
}

void
upstream_stats(const struct upstream *up, struct upstream_stats *st)
{
	*st = up->st;
}

/* Release an exchange and what it holds. */
static void
xfer_free(struct up_xfer *x)
{
	event_free(x->timer);
	evbuffer_free(x->req);
	if (x->res.body != NULL)
		evbuffer_free(x->res.body);
	free(x);
}

/*
 * A finished exchange: its request (signature, token) and what is left of
 * the answer are cleansed, then it is kept, with its buffers and timer, for
 * the next upstream_send (up to UP_SPARE), so a request allocates none.
 */
static void
xfer_put(struct upstream *up, struct up_xfer *x)
{
	struct evbuffer	*req = x->req, *body = x->res.body;	/* body: NULL if taken */
	struct event	*timer = x->timer;

	evtimer_del(timer);
	wipe_drain(req, evbuffer_get_length(req));
	if (body != NULL)
		wipe_drain(body, evbuffer_get_length(body));
	if (up->nspare >= UP_SPARE) {
		xfer_free(x);
		return;
	}
	memset(x, 0, sizeof(*x));
	x->req = req;
	x->timer = timer;
	x->res.body = body;
	TAILQ_INSERT_HEAD(&up->spare, x, entry);
	up->nspare++;
}

/* A spare exchange, or a new one. */
static struct up_xfer *
xfer_get(struct upstream *up)
{
	struct up_xfer	*x;

	if ((x = TAILQ_FIRST(&up->spare)) != NULL) {
		TAILQ_REMOVE(&up->spare, x, entry);
		up->nspare--;
		return x;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	if ((x->req = evbuffer_new()) == NULL ||
	    (x->timer = evtimer_new(up->base, xfer_timeout, x)) == NULL) {
		if (x->req != NULL)
			evbuffer_free(x->req);
		free(x);
		return NULL;
	}
	return x;
}

/* Finish an exchange: detach it everywhere, then run its callback. */
static void
xfer_finish(struct up_xfer *x)
{
	struct upstream	*up = x->up;

	if (x->queued) {
		TAILQ_REMOVE(&up->waiting, x, entry);
		x->queued = 0;
	}
	if (x->conn != NULL)
		x->conn->xfer = NULL;
	x->conn = NULL;
	if (x->in_send) {	/* the caller does not hold x yet: call back soon */
		x->finish_later = 1;
		evtimer_del(x->timer);
		event_active(x->timer, EV_TIMEOUT, 1);
		return;
	}
	if (x->done != NULL)
		x->done(x->arg, &x->res);
	xfer_put(up, x);
	upstream_unref(up);
}

static void
xfer_fail(struct up_xfer *x, enum up_err err, const char *why)
{
	x->res.err = err;
	x->res.why = why;
	xfer_finish(x);
}

/* Total timeout of one exchange. */
static void
xfer_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct up_xfer	*x = arg;
	struct up_conn	*c = x->conn;

	if (x->finish_later) {	/* it ended inside upstream_send */
		xfer_finish(x);
		return;
	}
	if (c != NULL) {
		c->xfer = NULL;
		x->conn = NULL;
		conn_free(c);
	}
	xfer_fail(x, UP_TIMEOUT, "upstream did not answer in time");
}

/* Queue an exchange. */
struct up_xfer *
upstream_send(struct upstream *up, const struct iovec *msg, int n, up_done_fn done,
    void *arg)
{
	struct up_xfer	*x;
	struct timeval	 tv;
	struct evbuffer_iovec v;
	size_t		 len;
	char		*p;
	int		 i;

	if ((x = xfer_get(up)) == NULL)
		return NULL;
	/* one contiguous copy: one TLS record, one segment */
	len = 0;
	for (i = 0; i < n; i++)
		len += msg[i].iov_len;
	if (evbuffer_reserve_space(x->req, (ev_ssize_t)len, &v, 1) != 1 || v.iov_len < len) {
		xfer_put(up, x);
		return NULL;
	}
	p = v.iov_base;
	for (i = 0; i < n; i++) {
		memcpy(p, msg[i].iov_base, msg[i].iov_len);
		p += msg[i].iov_len;
	}
	v.iov_len = len;
	evbuffer_commit_space(x->req, &v, 1);
	x->req_len = len;
	x->up = up;
	x->done = done;
	x->arg = arg;
	up->refs++;
	log_ms_tv(up->total_ms, &tv);
	evtimer_add(x->timer, &tv);
	TAILQ_INSERT_TAIL(&up->waiting, x, entry);
	x->queued = 1;
	x->in_send = 1;
	pool_pump(up);
	x->in_send = 0;
	return x;
}

/* Abandon an exchange without a callback. */
void
upstream_cancel(struct up_xfer *x)
{
	struct up_conn	*c = x->conn;

	if (c != NULL) {
		c->xfer = NULL;
		x->conn = NULL;
		conn_free(c);
	}
	x->done = NULL;
	xfer_finish(x);
}

/* Close a connection; an exchange on it must already be detached. */
static void
conn_free(struct up_conn *c)
{
	struct upstream	*up = c->up;

	if (c->state == C_IDLE)
		TAILQ_REMOVE(&up->idle, c, ientry);
	TAILQ_REMOVE(&up->all, c, entry);
	up->nconns--;
	if (c->dns != NULL)
		evdns_getaddrinfo_cancel(c->dns);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->ssl != NULL) {
		if (c->state == C_IDLE)		/* polite close_notify, never waited for */
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	wipe_free(c->in);
	if (c->fd != -1)
		close(c->fd);
	free(c);
}

/* A failed connection takes the oldest waiting exchange with it. */
static void
conn_fail(struct up_conn *c, enum up_err err, const char *why)
{
	struct upstream	*up = c->up;
	struct up_xfer	*x = c->xfer;

	c->xfer = NULL;
	if (x == NULL && c->state != C_IDLE && c->state != C_BUSY)
		x = TAILQ_FIRST(&up->waiting);
	if (x != NULL)
		memcpy(x->res.detail, c->detail, sizeof(x->res.detail));
	conn_free(c);
	if (x != NULL) {
		x->conn = NULL;
		up->refs++;
		xfer_fail(x, err, why);
		pool_pump(up);
		upstream_unref(up);
	}
}

/* The connection is ready: take the next exchange or go idle. */
static void
conn_ready(struct up_conn *c)
{
	struct upstream	*up = c->up;
	struct up_xfer	*x;
	struct timeval	 tv;

	if ((x = TAILQ_FIRST(&up->waiting)) != NULL) {
		TAILQ_REMOVE(&up->waiting, x, entry);
		x->queued = 0;
		conn_start_xfer(c, x);
		return;
	}
	c->state = C_IDLE;
	TAILQ_INSERT_HEAD(&up->idle, c, ientry);
	log_ms_tv(up->idle_ms, &tv);
	evtimer_add(c->ev, &tv);
}

/* Reset the per-response parser state. */
static void
conn_reset_parse(struct up_conn *c)
{
	c->head_done = 0;
	c->mode = B_NONE;
	c->left = 0;
	c->got = 0;
	c->keepalive = 0;
}

/* Put an exchange on a ready connection. */
static void
conn_start_xfer(struct up_conn *c, struct up_xfer *x)
{
	c->state = C_BUSY;
	c->xfer = x;
	x->conn = c;
	x->tries++;
	x->res.reused = c->uses > 0;
	if (c->uses > 0)
		c->up->st.reused++;
	c->uses++;
	conn_reset_parse(c);
	evtimer_del(c->ev);
	c->woff = 0;
	conn_write(c);
}

/* Append decoded chunk bytes to the response body. */
static void
conn_chunk_emit(void *arg, const char *p, size_t n)
{
	struct up_conn	*c = arg;

	c->got += n;
	if (c->got <= c->up->max_resp)
		evbuffer_add(c->xfer->res.body, p, n);
}

/* Parse the response head; -1 on a protocol error (why set). */
static int
conn_parse_head(struct up_conn *c, struct evbuffer *in, const char **why)
{
	struct evbuffer_ptr	 pos;
	struct httpp_msg	 m;
	const struct httpp_header *ct;
	size_t			 hl;
	char			*p;

	pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (pos.pos < 0) {
		if (evbuffer_get_length(in) > UP_MAX_HEAD)
			return (*why = "upstream response head too large", -1);
		return 0;
	}
	hl = (size_t)pos.pos + 4;
	if (hl > UP_MAX_HEAD)
		return (*why = "upstream response head too large", -1);
	p = (char *)evbuffer_pullup(in, (ev_ssize_t)hl);
	if (httpp_parse_response(p, hl, &m, why) == -1)
		return -1;
	if (m.status < 200) {		/* interim 1xx: skip it */
		evbuffer_drain(in, hl);
		return 0;
	}
	struct up_result *r = &c->xfer->res;
	r->status = m.status;
	r->content_type[0] = '\0';
	if ((ct = httpp_find(&m, "content-type")) != NULL && ct->value_len < sizeof(r->content_type)) {
		memcpy(r->content_type, ct->value, ct->value_len);
		r->content_type[ct->value_len] = '\0';
	}
	c->keepalive = m.keepalive;
	if (m.status == 204 || m.status == 304)
		c->mode = B_NONE;
	else if (m.chunked) {
		c->mode = B_CHUNKED;
		httpp_chunked_init(&c->chunk);
	} else if (m.content_length >= 0) {
		if ((unsigned long long)m.content_length > c->up->max_resp)
			return (*why = "upstream response larger than max_response_bytes", -1);
		c->mode = m.content_length > 0 ? B_LENGTH : B_NONE;
		c->left = (unsigned long long)m.content_length;
	} else {
		c->mode = B_CLOSE;
		c->keepalive = 0;
	}
	evbuffer_drain(in, hl);
	c->head_done = 1;
	return 0;
}

/* Consume body bytes; 1 when the response is complete, -1 on error. */
static int
conn_parse_body(struct up_conn *c, struct evbuffer *in, const char **why)
{
	struct evbuffer	*body = c->xfer->res.body;
	size_t		 n = evbuffer_get_length(in);
	int		 done = 0;

	switch (c->mode) {
	case B_NONE:
		return 1;
	case B_LENGTH:
		if (n > c->left)
			n = (size_t)c->left;
		if (wipe_move(in, body, n) == -1)
			return (*why = "out of memory", -1);
		c->left -= n;
		return c->left == 0;
	case B_CLOSE:
		c->got += n;
		if (c->got > c->up->max_resp)
			return (*why = "upstream response larger than max_response_bytes", -1);
		if (wipe_move(in, body, n) == -1)
			return (*why = "out of memory", -1);
		return 0;
	case B_CHUNKED:
		while (!done && evbuffer_get_length(in) > 0) {
			struct evbuffer_iovec v;
			ssize_t used;

			if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
				break;
			used = httpp_chunked_feed(&c->chunk, v.iov_base, v.iov_len,
			    conn_chunk_emit, c, &done, why);
			if (used < 0)
				return -1;
			wipe_drain(in, (size_t)used);
			if (c->got > c->up->max_resp)
				return (*why = "upstream response larger than max_response_bytes", -1);
		}
		return done;
	}
	return -1;
}

/* The response is complete: recycle or close the connection, report. */
static void
conn_complete(struct up_conn *c)
{
	struct up_xfer	*x = c->xfer;
	struct upstream	*up = c->up;
	int		 reuse = c->keepalive && evbuffer_get_length(c->in) == 0 &&
			     !SSL_has_pending(c->ssl);

	c->xfer = NULL;
	x->conn = NULL;
	x->res.err = UP_OK;
	up->refs++;
	if (reuse)
		conn_ready(c);
	else
		conn_free(c);
	xfer_finish(x);
	pool_pump(up);
	upstream_unref(up);
}

/* Parse what arrived; 1: the exchange finished (c may be gone or busy again). */
static int
conn_input(struct up_conn *c)
{
	const char	*why = NULL;
	int		 r;

	if (c->xfer->res.body == NULL && (c->xfer->res.body = evbuffer_new()) == NULL) {
		conn_fail(c, UP_PROTOCOL, "out of memory");
		return 1;
	}
	while (!c->head_done) {
		size_t before = evbuffer_get_length(c->in);
		if (conn_parse_head(c, c->in, &why) == -1) {
			conn_fail(c, UP_PROTOCOL, why);
			return 1;
		}
		if (!c->head_done && evbuffer_get_length(c->in) == before)
			return 0;	/* need more */
	}
	if ((r = conn_parse_body(c, c->in, &why)) == -1) {
		conn_fail(c, UP_PROTOCOL, why);
		return 1;
	}
	if (r == 1) {
		conn_complete(c);
		return 1;
	}
	return 0;
}

/* Log why a handshake failed (certificate or TLS error). */
static void
conn_log_tls_failure(struct up_conn *c, unsigned long e)
{
	long	vr = SSL_get_verify_result(c->ssl);
	char	buf[256];

	if (vr != X509_V_OK) {
		snprintf(c->detail, sizeof(c->detail), "certificate verification failed: %s",
		    X509_verify_cert_error_string(vr));
		log_warn("%s %s: %s", c->up->label, c->up->host, c->detail);
	} else if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(c->detail, sizeof(c->detail), "TLS handshake failed: %.100s", buf);
		log_warn("%s %s: TLS handshake failed: %s", c->up->label, c->up->host, buf);
	}
}

/*
 * The connection ended (EOF, a TLS or socket error, or a timeout) while
 * busy or idle.
 */
static void
conn_closed(struct up_conn *c, int timeout)
{
	struct up_xfer	*x = c->xfer;
	struct upstream	*up = c->up;

	if (c->state == C_IDLE) {	/* closed or timed out while idle */
		conn_free(c);
		return;
	}
	/* busy: EOF may complete a close-delimited body */
	if (x != NULL && !timeout && c->head_done && c->mode == B_CLOSE) {
		const char *why = NULL;
		if (conn_parse_body(c, c->in, &why) == -1)
			conn_fail(c, UP_PROTOCOL, why);
		else {
			c->keepalive = 0;
			conn_complete(c);
		}
		return;
	}
	if (x != NULL && x->res.reused && !c->head_done && x->tries == 1 && c->woff == 0 &&
	    (x->res.body == NULL || evbuffer_get_length(x->res.body) == 0)) {
		/* a kept-alive connection died before TLS took any of this request */
		c->xfer = NULL;
		x->conn = NULL;
		conn_free(c);
		up->st.retried++;
		TAILQ_INSERT_HEAD(&up->waiting, x, entry);
		x->queued = 1;
		pool_pump(up);
		return;
	}
	conn_fail(c, timeout ? UP_TIMEOUT : UP_PROTOCOL,
	    c->head_done ? "upstream closed the connection in the middle of the answer" :
	    "upstream closed the connection without answering");
}

/* Write what is left of the request; -1 when the connection is gone. */
static int
conn_write(struct up_conn *c)
{
	struct up_xfer	*x = c->xfer;
	const char	*p;
	int		 n;

	c->write_wants_read = 0;
	if (x == NULL || c->woff >= x->req_len)
		return 0;
	p = (const char *)evbuffer_pullup(x->req, -1);
	while (c->woff < x->req_len) {
		ERR_clear_error();
		n = SSL_write(c->ssl, p + c->woff, (int)(x->req_len - c->woff));
		if (n > 0) {
			c->woff += (size_t)n;
			continue;
		}
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_WRITE:
			event_add(c->wev, NULL);
			return 0;
		case SSL_ERROR_WANT_READ:	/* the read event retries */
			c->write_wants_read = 1;
			return 0;
		default:
			conn_closed(c, 0);
			return -1;
		}
	}
	return 0;
}

/* Drive the handshake; the read event is always on, the write one on demand. */
static void
conn_handshake(struct up_conn *c)
{
	struct upstream	*up = c->up;
	int		 r;

	ERR_clear_error();
	if ((r = SSL_connect(c->ssl)) == 1) {
		up->st.handshakes++;
		if (SSL_session_reused(c->ssl))
			up->st.resumed++;
		evtimer_del(c->ev);
		conn_ready(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return;
	case SSL_ERROR_WANT_WRITE:
		event_add(c->wev, NULL);
		return;
	default:
		conn_log_tls_failure(c, ERR_peek_last_error());
		conn_fail(c, UP_TLS, "TLS handshake with the upstream failed");
	}
}

/* Read every decrypted byte available; parse as it comes. */
static void
conn_read(struct up_conn *c)
{
	struct evbuffer_iovec	 v;
	int			 n, err;

	c->read_wants_write = 0;
	for (;;) {
		if (evbuffer_reserve_space(c->in, 16384, &v, 1) < 1) {
			conn_fail(c, UP_PROTOCOL, "out of memory");
			return;
		}
		ERR_clear_error();
		n = SSL_read(c->ssl, v.iov_base, (int)v.iov_len);
		if (n <= 0) {
			evbuffer_commit_space(c->in, NULL, 0);
			break;
		}
		v.iov_len = (size_t)n;
		evbuffer_commit_space(c->in, &v, 1);
		if (c->xfer == NULL) {	/* data on an idle connection: not ours */
			conn_free(c);
			return;
		}
		if (conn_input(c) == 1)
			return;		/* finished: c is gone or serving the next one */
		if (!SSL_has_pending(c->ssl))
			return;		/* level-triggered: the socket tells us of more */
	}
	switch ((err = SSL_get_error(c->ssl, n))) {
	case SSL_ERROR_WANT_READ:
		return;
	case SSL_ERROR_WANT_WRITE:
		c->read_wants_write = 1;
		event_add(c->wev, NULL);
		return;
	default:		/* EOF (clean or not) or an error */
		conn_closed(c, 0);
	}
}

/* Socket readiness. */
static void
conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct up_conn	*c = arg;

	if (c->state == C_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if (((what & EV_WRITE) || c->write_wants_read) && c->state == C_BUSY &&
	    conn_write(c) == -1)
		return;
	if ((what & EV_READ) || c->read_wants_write)
		conn_read(c);
}

/* Handshake or idle timer. */
static void
conn_timer_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct up_conn	*c = arg;

	if (c->state == C_HANDSHAKE) {
		snprintf(c->detail, sizeof(c->detail), "TLS handshake: no answer within %u ms",
		    c->up->handshake_ms);
		conn_fail(c, UP_TIMEOUT, "TLS handshake with the upstream timed out");
	} else
		conn_closed(c, 1);
}

/* TCP is up: start TLS on the socket. */
static void
conn_start_tls(struct up_conn *c)
{
	struct upstream	*up = c->up;
	struct timeval	 tv;
	SSL		*ssl;
	X509_VERIFY_PARAM *vp;

	if ((ssl = SSL_new(up->ctx)) == NULL) {
		conn_fail(c, UP_TLS, "cannot create a TLS session");
		return;
	}
	vp = SSL_get0_param(ssl);
	if (up->host_is_ip)
		X509_VERIFY_PARAM_set1_ip_asc(vp, up->host);
	else {
		SSL_set_tlsext_host_name(ssl, up->host);
		SSL_set1_host(ssl, up->host);
	}
	if (up->session != NULL)
		SSL_set_session(ssl, up->session);
	c->ssl = ssl;
	event_free(c->ev);
	c->ev = NULL;
	if (SSL_set_fd(ssl, c->fd) != 1 || (c->in = evbuffer_new()) == NULL ||
	    (c->rev = event_new(up->base, c->fd, EV_READ | EV_PERSIST, conn_io_cb, c)) == NULL ||
	    (c->wev = event_new(up->base, c->fd, EV_WRITE, conn_io_cb, c)) == NULL ||
	    (c->ev = evtimer_new(up->base, conn_timer_cb, c)) == NULL ||
	    event_add(c->rev, NULL) == -1) {
		conn_fail(c, UP_TLS, "cannot create a TLS connection");
		return;
	}
	c->state = C_HANDSHAKE;
	log_ms_tv(up->handshake_ms, &tv);
	evtimer_add(c->ev, &tv);
	conn_handshake(c);
}

/*
 * Connected to itself: with nothing listening on a loopback port of the
 * ephemeral range, the kernel may pick that very port as the source, and the
 * connect "succeeds" against itself (a TCP simultaneous open).  The TLS
 * handshake would then read our own ClientHello, and the socket would keep
 * the port from the server that comes up on it.
 */
static int
conn_is_self(int fd)
{
	struct sockaddr_storage	a, b;
	socklen_t		alen = sizeof(a), blen = sizeof(b);

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	if (getsockname(fd, (struct sockaddr *)&a, &alen) == -1 ||
	    getpeername(fd, (struct sockaddr *)&b, &blen) == -1)
		return 0;
	return alen == blen && memcmp(&a, &b, alen) == 0;
}

/* The non-blocking connect finished, failed or timed out. */
static void
conn_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct up_conn	*c = arg;
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (what & EV_TIMEOUT) {
		snprintf(c->detail, sizeof(c->detail), "connect: no answer within %u ms",
		    c->up->connect_ms);
		conn_fail(c, UP_TIMEOUT, "connecting to the upstream timed out");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
		snprintf(c->detail, sizeof(c->detail), "connect: %s", strerror(err ? err : errno));
		log_warn("%s %s port %s: %s", c->up->label, c->up->host, c->up->port, c->detail);
		conn_fail(c, UP_CONNECT, "cannot connect to the upstream");
		return;
	}
	if (conn_is_self(fd)) {
		snprintf(c->detail, sizeof(c->detail), "connect: nothing listens there");
		log_warn("%s %s port %s: connect: connected to itself (nothing listens there)",
		    c->up->label, c->up->host, c->up->port);
		conn_fail(c, UP_CONNECT, "cannot connect to the upstream");
		return;
	}
	conn_start_tls(c);
}

/* Start a non-blocking connect to one address. */
static void
conn_connect(struct up_conn *c, const struct sockaddr *sa, socklen_t salen)
{
	struct upstream	*up = c->up;
	struct timeval	 tv;
	int		 one = 1;

	c->state = C_CONNECTING;
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_fail(c, UP_CONNECT, "cannot create a socket");
		return;
	}
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	up->st.connects++;
	if (connect(c->fd, sa, salen) == -1 && errno != EINPROGRESS) {
		snprintf(c->detail, sizeof(c->detail), "connect: %s", strerror(errno));
		log_warn("%s %s port %s: %s", up->label, up->host, up->port, c->detail);
		conn_fail(c, UP_CONNECT, "cannot connect to the upstream");
		return;
	}
	c->ev = event_new(up->base, c->fd, EV_WRITE, conn_connect_cb, c);
	log_ms_tv(up->connect_ms, &tv);
	event_add(c->ev, &tv);
}

/* Name resolution finished. */
static void
conn_dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct up_conn	*c = arg;

	c->dns = NULL;
	if (result != 0 || ai == NULL) {
		if (result == EVUTIL_EAI_CANCEL)
			return;
		snprintf(c->detail, sizeof(c->detail), "cannot resolve %s: %s", c->up->host,
		    evutil_gai_strerror(result));
		log_warn("%s %s: cannot resolve: %s", c->up->label, c->up->host,
		    evutil_gai_strerror(result));
		conn_fail(c, UP_CONNECT, "cannot resolve the upstream host");
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	conn_connect(c, ai->ai_addr, ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
}

/* Open one more connection. */
static void
conn_new(struct upstream *up)
{
	struct up_conn		*c;
	struct evutil_addrinfo	 hints;
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	int			 port = atoi(up->port);

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->up = up;
	c->fd = -1;
	c->state = C_RESOLVING;
	TAILQ_INSERT_TAIL(&up->all, c, entry);
	up->nconns++;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, up->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		conn_connect(c, (struct sockaddr *)sin, sizeof(*sin));
		return;
	}
	if (inet_pton(AF_INET6, up->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		conn_connect(c, (struct sockaddr *)sin6, sizeof(*sin6));
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	c->dns = evdns_getaddrinfo(up->dns, up->host, up->port, &hints, conn_dns_cb, c);
}

/* Match waiting exchanges with idle connections; open more if allowed. */
static void
pool_pump(struct upstream *up)
{
	struct up_conn	*c;
	struct up_xfer	*x;
	unsigned	 opening, waiting;

	if (up->pumping) {	/* a synchronous failure below re-entered */
		up->repump = 1;
		return;
	}
	up->pumping = 1;
	do {
		up->repump = 0;
		while ((x = TAILQ_FIRST(&up->waiting)) != NULL &&
		    (c = TAILQ_FIRST(&up->idle)) != NULL) {
			TAILQ_REMOVE(&up->idle, c, ientry);
			TAILQ_REMOVE(&up->waiting, x, entry);
			x->queued = 0;
			conn_start_xfer(c, x);
		}
		if (TAILQ_EMPTY(&up->waiting) || up->nconns >= up->max_conns)
			continue;	/* the common case: nothing to count */
		opening = waiting = 0;
		TAILQ_FOREACH(c, &up->all, entry)
			if (c->state < C_IDLE)
				opening++;
		TAILQ_FOREACH(x, &up->waiting, entry)
			waiting++;
		while (waiting > opening && up->nconns < up->max_conns && !up->repump) {
			conn_new(up);
			opening++;
		}
	} while (up->repump);
	up->pumping = 0;
}
