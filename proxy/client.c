/*
 * client.c — one inbound HTTP/1.1 connection from a local caller: reads a
 * request head and body under strict limits and timeouts, hands complete
 * requests to request.c one at a time, and writes responses.
 *
 * The socket is driven directly (no bufferevent): a persistent read event
 * registered once for the connection's life, carrying the idle timeout
 * while the connection waits for a request; answers are written at once,
 * and a write event is armed only for what the socket did not take.  A
 * read is one read() (a bufferevent adds an ioctl(FIONREAD) to each).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "fmt.h"
#include "httpp.h"
#include "jbody.h"
#include "log.h"
#include "ocp-proxy.h"
#include "policy.h"
#include "wipe.h"

enum client_state { CL_HEAD, CL_BODY, CL_BUSY, CL_CLOSING };

#define CLIENT_LINGER_MS	2000		/* lingering close: time ... */
#define CLIENT_LINGER_BYTES	(4U << 20)	/* ... and bytes discarded at most */
#define CLIENT_EMPTY_LINES_MAX	4		/* CRLFs ignored before a request line */
#define CLIENT_READ_MAX		16384		/* bytes asked of one read() */

struct client {
	TAILQ_ENTRY(client)	 entry;
	struct proxy		*px;
	int			 fd;
	struct event		*rev;		/* persistent read (+ idle timeout) */
	struct event		*wev;		/* armed while an answer remains */
	struct evbuffer		*in;
	struct evbuffer		*out;
	int			 want_read;	/* reading is on (as the state asks) */
	int			 reading;	/* rev is added */
	unsigned		 read_ms;	/* idle timeout while reading, 0: none */
	unsigned		 rev_ms;	/* the timeout rev was added with */
	size_t			 read_high;	/* pause reading with this much input */
	enum client_state	 state;
	char			 peer[96];
	char			 listen[64];	/* the address it connected to ("unix:..." cut) */
	char			*method;
	char			*target;
	int			 keepalive;
	int			 head;		/* a HEAD request: answers carry no body */
	int			 chunked;
	unsigned long long	 left;		/* Content-Length bytes still to read */
	struct httpp_chunked	 chunk;
	struct evbuffer		*body;
	size_t			 body_len;
	size_t			 max_body;
	int			 too_large;
	char			 reqid[REQUEST_ID_LEN];	/* given early (100 Continue), or "" */
	int			 skip;		/* refused by its head: the body is dropped */
	int			 skip_status;	/* ... and then this refusal answered */
	const char		*skip_name;
	const char		*skip_msg;
	struct request		*req;
	int			 served;
	struct event		*deadline;	/* absolute head / body deadline */
	size_t			 head_len;	/* parsed head still in the input */
	struct policy_peer	 cred;		/* kernel's peer credentials (unix) */
	struct gen		*gen;		/* config the current request is held to */
	const char		*profile;	/* whose route the path is on (in gen), or NULL */
	struct caller		*caller;	/* named caller, or NULL */
	int			 entered;	/* counted in caller's max_concurrent */
	char			 caller_id[POLICY_DESCRIBE_MAX];
	unsigned		 retry_after;	/* next response: Retry-After (429) */
	int			 www_auth;	/* next response: WWW-Authenticate (401) */
	int			 lingering;	/* answered, write side shut, draining input */
	size_t			 drained;
	int			 head_started;
	struct timespec		 t0;		/* ... at this time: the request's start */
	int			 empty_lines;	/* CRLFs ignored before this request line */
	size_t			 head_scanned;	/* bytes of the head scanned so far */
};

static void client_input(struct client *);
static void client_written(struct client *);
static void client_gone(struct client *);
static void client_free(struct client *);
static void client_refuse(struct client *, int, const char *, const char *, int);

/* The peer as shown in logs and the audit trail. */
const char *
client_peer(const struct client *cl)
{
	return cl->peer;
}

/*
 * Make the read event match what the state asks: on (want_read) unless
 * pending input reached read_high (pipelined data waits to be consumed),
 * with the idle timeout read_ms.  A change of timeout on an added event is
 * a timer operation only: no epoll_ctl.
 */
static void
client_read_sync(struct client *cl)
{
	struct timeval	tv;
	int		on = cl->want_read && evbuffer_get_length(cl->in) < cl->read_high;

	if (!on) {
		if (cl->reading)
			event_del(cl->rev);
		cl->reading = 0;
		return;
	}
	if (cl->reading && cl->rev_ms == cl->read_ms)
		return;
	if (cl->read_ms > 0) {
		log_ms_tv(cl->read_ms, &tv);
		event_add(cl->rev, &tv);
	} else if (cl->reading)
		event_remove_timer(cl->rev);
	else
		event_add(cl->rev, NULL);
	cl->reading = 1;
	cl->rev_ms = cl->read_ms;
}

/* Reading on (with an idle timeout of ms, 0: none) or off. */
static void
client_read_set(struct client *cl, int on, unsigned ms)
{
	cl->want_read = on;
	cl->read_ms = ms;
	client_read_sync(cl);
}

/* Keep reading, without the idle timeout (a request is under way). */
static void
client_read_untimed(struct client *cl)
{
	client_read_set(cl, cl->want_read, 0);
}

/* Wait for the socket to take the rest of the output (idle_timeout_ms at most). */
static void
client_write_arm(struct client *cl)
{
	struct timeval	tv;

	log_ms_tv(cl->px->gen->conf->idle_timeout_ms, &tv);
	event_add(cl->wev, &tv);
}

/* Slow senders: the head and the body each get an absolute deadline. */
static void
client_deadline_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct client	*cl = arg;

	if (cl->lingering) {
		client_free(cl);
		return;
	}
	log_info("%s: request %s not received within %s", cl->peer,
	    cl->state == CL_BODY ? "body" : "head",
	    cl->state == CL_BODY ? "body_timeout_ms" : "header_timeout_ms");
	if (cl->state == CL_BODY) {	/* tell the caller; audited with the answer */
		cl->keepalive = 0;
		client_refuse(cl, 408, "PROXY_BODY_TIMEOUT",
		    "the request body was not received within body_timeout_ms", 1);
		return;
	}
	client_free(cl);
}

static void
client_deadline(struct client *cl, unsigned ms)
{
	struct timeval	tv;

	if (ms == 0) {
		evtimer_del(cl->deadline);
		return;
	}
	log_ms_tv(ms, &tv);
	evtimer_add(cl->deadline, &tv);
}

/* Release everything of the current request's parse state. */
static void
client_reset(struct client *cl)
{
	free(cl->method);
	free(cl->target);
	cl->method = cl->target = NULL;
	wipe_free(cl->body);
	cl->body = NULL;
	cl->body_len = 0;
	cl->left = 0;
	cl->head = 0;
	cl->chunked = 0;
	cl->too_large = 0;
	cl->skip = 0;
	cl->reqid[0] = '\0';
	cl->head_started = 0;
	cl->empty_lines = 0;
	cl->head_scanned = 0;
	if (cl->entered)
		caller_leave(cl->caller);
	cl->entered = 0;
	cl->caller = NULL;
	cl->caller_id[0] = '\0';
	cl->profile = NULL;
	if (cl->gen != NULL)
		gen_unref(cl->gen);
	cl->gen = NULL;
}

/* The one teardown of a connection. */
static void
client_free(struct client *cl)
{
	struct proxy	*px = cl->px;

	if (cl->req != NULL)
		request_client_gone(cl->req);
	cl->req = NULL;
	client_reset(cl);
	if (cl->deadline != NULL)
		event_free(cl->deadline);
	event_free(cl->rev);
	event_free(cl->wev);
	wipe_free(cl->in);
	wipe_free(cl->out);
	close(cl->fd);
	TAILQ_REMOVE(&px->clients, cl, entry);
	px->nclients--;
	free(cl);
	proxy_maybe_done(px);
}

/* The socket is readable, or the idle timeout passed. */
static void
client_io_read(evutil_socket_t fd, short what, void *arg)
{
	struct client	*cl = arg;
	unsigned char	 buf[CLIENT_READ_MAX];
	ssize_t		 n;
	int		 failed;

	if (what & EV_TIMEOUT) {
		client_gone(cl);
		return;
	}
	/*
	 * Read into the frame, then copy what came: the input buffer then
	 * grows by what arrived (a chain sized to a 300-byte request), not by
	 * a 32 KB chain reserved in advance that an idle connection would keep.
	 */
	if ((n = read(fd, buf, sizeof(buf))) <= 0) {
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		client_gone(cl);	/* EOF or error */
		return;
	}
	failed = evbuffer_add(cl->in, buf, (size_t)n) == -1;
	explicit_bzero(buf, (size_t)n);
	if (failed) {
		client_gone(cl);	/* out of memory */
		return;
	}
	if (evbuffer_get_length(cl->in) >= cl->read_high)
		client_read_sync(cl);	/* pause; consuming the input resumes */
	client_input(cl);
}

/* The socket takes more output, or it took none for idle_timeout_ms. */
static void
client_io_write(evutil_socket_t fd, short what, void *arg)
{
	struct client	*cl = arg;

	if (what & EV_TIMEOUT) {
		client_gone(cl);
		return;
	}
	if (wipe_write(cl->out, fd) == -1) {
		if (errno != EAGAIN && errno != EINTR)
			client_gone(cl);
		return;
	}
	if (evbuffer_get_length(cl->out) > 0)
		return;
	event_del(cl->wev);
	client_written(cl);
}

/* Accept a connection handed over by the listener. */
void
client_accept(struct proxy *px, int fd, const char *peer, const struct policy_peer *cred)
{
	const struct conf *c = px->gen->conf;
	struct client	*cl;
	int		 one = 1;

	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		close(fd);
		return;
	}
	cl->fd = fd;
	if ((cl->in = evbuffer_new()) == NULL || (cl->out = evbuffer_new()) == NULL ||
	    (cl->rev = event_new(px->base, fd, EV_READ | EV_PERSIST, client_io_read, cl)) == NULL ||
	    (cl->wev = event_new(px->base, fd, EV_WRITE | EV_PERSIST, client_io_write, cl)) == NULL ||
	    (cl->deadline = evtimer_new(px->base, client_deadline_cb, cl)) == NULL) {
		if (cl->rev != NULL)
			event_free(cl->rev);
		if (cl->wev != NULL)
			event_free(cl->wev);
		if (cl->in != NULL)
			evbuffer_free(cl->in);
		if (cl->out != NULL)
			evbuffer_free(cl->out);
		close(fd);
		free(cl);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cl->px = px;
	cl->cred = *cred;
	fmt_copy(cl->peer, sizeof(cl->peer), peer);
	/* a reload may move the listener: this connection keeps the Host it was made for */
	fmt_copy(cl->listen, sizeof(cl->listen), px->lsock.desc);
	TAILQ_INSERT_TAIL(&px->clients, cl, entry);
	px->nclients++;
	/* pipelined input beyond one full request waits until it is consumed */
	cl->read_high = c->max_header_bytes + c->max_body_bytes + 65536;
	client_read_set(cl, 1, c->idle_timeout_ms);
}

static const char *
client_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* RFC 9110 8.6, 15.3.5, 15.4.5: a 1xx, 204 or 304 has no body. */
static int
client_status_bodiless(int status)
{
	return status < 200 || status == 204 || status == 304;
}

/* The body bytes client_respond sends of len: none to a HEAD or with a bodiless status. */
size_t
client_body_len(const struct client *cl, int status, size_t len)
{
	return cl->head || client_status_bodiless(status) ? 0 : len;
}

/*
 * Write a complete response; body is moved out.  No Content-Type header
 * when ctype is NULL or empty: an upstream answer without one is relayed
 * without one, not labelled as JSON it may not be.  RFC 9110 9.3.2: the
 * answer to a HEAD carries the head it would have had, Content-Length
 * included, and no body.  RFC 9110 8.6, 15.3.5, 15.4.5: a 1xx, 204 or 304
 * has neither body nor Content-Length (a 304's would be the
 * representation's, which the proxy does not know).  A body not sent is
 * drained (zeroed), so the connection stays in step.
 */
void
client_respond(struct client *cl, int status, const char *ctype, struct evbuffer *body,
    const char *reqid, int close_after)
{
	struct evbuffer	*out = cl->out;
	size_t		 len = body ? evbuffer_get_length(body) : 0;
	int		 was_empty = evbuffer_get_length(out) == 0;
	int		 nolen = client_status_bodiless(status);
	struct jbody_sink k;
	char		 num[FMT_UINT_MAX];

	if (cl->px->stopping)
		close_after = 1;
	if (!cl->keepalive)
		close_after = 1;
	/* pieces with their lengths, staged on the stack: one evbuffer_add */
	jbody_sink_init(&k, out);
	JBODY_PUT_LIT(&k, "HTTP/1.1 ");
	jbody_put(&k, num, fmt_uint(num, (unsigned)(status % 1000), 10, 3));
	JBODY_PUT_LIT(&k, " ");
	jbody_put_str(&k, client_reason(status));
	if (ctype != NULL && *ctype != '\0') {
		JBODY_PUT_LIT(&k, "\r\nContent-Type: ");
		jbody_put_str(&k, ctype);
	}
	if (!nolen) {
		JBODY_PUT_LIT(&k, "\r\nContent-Length: ");
		jbody_put_uint(&k, len);
	}
	JBODY_PUT_LIT(&k, "\r\nX-Request-Id: ");
	jbody_put_str(&k, reqid);
	JBODY_PUT_LIT(&k, "\r\n");
	if (status == 405)
		JBODY_PUT_LIT(&k, "Allow: POST\r\n");
	if (close_after)
		JBODY_PUT_LIT(&k, "Connection: close\r\n");
	if (cl->retry_after > 0) {
		JBODY_PUT_LIT(&k, "Retry-After: ");
		jbody_put_uint(&k, cl->retry_after);
		JBODY_PUT_LIT(&k, "\r\n");
	}
	if (cl->www_auth)
		JBODY_PUT_LIT(&k, "WWW-Authenticate: Bearer\r\n");
	JBODY_PUT_LIT(&k, "\r\n");
	jbody_sink_flush(&k);
	cl->retry_after = 0;
	cl->www_auth = 0;
	if (body != NULL && client_body_len(cl, status, len) == 0)
		wipe_drain(body, len);
	else if (body != NULL)
		evbuffer_add_buffer(out, body);
	cl->served++;
	if (close_after) {
		cl->state = CL_CLOSING;
		client_read_set(cl, 0, 0);
	} else if (was_empty) {
		/*
		 * Kept-alive answer: write it now.  It nearly always fits the
		 * socket buffer, so the write event (two epoll_ctl calls) is
		 * armed only for a remainder; an error is left to the write
		 * event too, as the caller of this function still holds cl.
		 */
		(void)wipe_write(out, cl->fd);	/* written bytes are zeroed: answers hold secrets */
		if (evbuffer_get_length(out) == 0)
			return;
	}
	client_write_arm(cl);
}

/* request.c is finished with this client: read the next request. */
void
client_request_done(struct client *cl)
{
	cl->req = NULL;
	if (cl->state == CL_CLOSING)
		return;
	client_reset(cl);
	cl->state = CL_HEAD;
	client_read_set(cl, 1, cl->px->gen->conf->idle_timeout_ms);
	if (evbuffer_get_length(cl->in) > 0)
		client_input(cl);
}

/* Close every connection that is not inside a request (shutdown). */
void
client_close_idle(struct proxy *px)
{
	struct client	*cl, *next;

	for (cl = TAILQ_FIRST(&px->clients); cl != NULL; cl = next) {
		next = TAILQ_NEXT(cl, entry);
		if (cl->state == CL_HEAD && evbuffer_get_length(cl->in) == 0)
			client_free(cl);
	}
}

/* 1 if a Host header names this proxy (loopback names or the listen host). */
static int
client_host_ok(const struct client *cl, const char *h, size_t len)
{
	static const char *const names[] = { "localhost", "127.0.0.1", "[::1]" };
	const char	*listen = cl->listen, *colon;
	size_t		 i, hl = len;

	if (len > 0 && h[len - 1] != ']' && (colon = memrchr(h, ':', len)) != NULL) {
		for (i = (size_t)(colon - h) + 1; i < len; i++)
			if (h[i] < '0' || h[i] > '9')
				return 0;
		hl = (size_t)(colon - h);
	}
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == hl && strncasecmp(names[i], h, hl) == 0)
			return 1;
	if (strncmp(listen, "unix:", 5) != 0 && (colon = strrchr(listen, ':')) != NULL &&
	    (size_t)(colon - listen) == hl && strncasecmp(listen, h, hl) == 0)
		return 1;
	return 0;
}

/*
 * Answer a refusal of the request being read (its head and body are dropped).
 * A request already refused by its head (cl->skip) keeps that refusal
 * whatever else ends the reading of its body (timeout, bad chunking, too
 * large): the caller learns the first fault.
 */
static void
client_refuse(struct client *cl, int status, const char *name, const char *msg, int close_after)
{
	if (cl->skip) {
		status = cl->skip_status;
		name = cl->skip_name;
		msg = cl->skip_msg;
	}
	client_deadline(cl, 0);
	cl->state = CL_BUSY;
	client_read_set(cl, 0, 0);
	if (cl->head_len > 0) {	/* the parsed head is not needed any more */
		wipe_drain(cl->in, cl->head_len);	/* may hold a bearer token */
		cl->head_len = 0;
	}
	request_reject(cl, cl->method ? cl->method : "-", cl->target ? cl->target : "-",
	    cl->body_len, status, name, msg, close_after);
}

/*
 * Refuse a request for a fault of its head alone (405, 400, 404).  Kept
 * alive, a body of known size within max_body_bytes, or chunked, is read
 * and dropped first, then the refusal answered: the connection goes on
 * with the next request, as after a 400 for a bad body.  Otherwise (no
 * keep-alive, too large, 100-continue awaited) the refusal is answered now
 * and the connection closes after it, as the body would be taken for the
 * next request.  Returns -1 if answered now, 0 to read the body.
 */
static int
client_refuse_head(struct client *cl, const struct httpp_msg *m, int status,
    const char *name, const char *msg)
{
	int	nobody = m->content_length <= 0 && !m->chunked;

	if (nobody || !cl->keepalive || cl->px->stopping || m->expect_continue ||
	    (!m->chunked && (unsigned long long)m->content_length > cl->max_body)) {
		client_refuse(cl, status, name, msg, !nobody);
		return -1;
	}
	cl->skip = 1;
	cl->skip_status = status;
	cl->skip_name = name;
	cl->skip_msg = msg;
	return 0;
}

static size_t
client_header_count(const struct httpp_msg *m, const char *name)
{
	size_t	i, n = 0, len = strlen(name);

	for (i = 0; i < m->nhdr; i++)
		if (m->hdr[i].name_len == len && strncasecmp(m->hdr[i].name, name, len) == 0)
			n++;
	return n;
}

/* Who is calling?  401 for a peer or token no [caller.*] names. */
static int
client_identify(struct client *cl, const struct httpp_msg *m, int nobody)
{
	const struct httpp_header	*auth;

	cl->cred.bearer = NULL;
	cl->cred.bearer_len = 0;
	if (client_header_count(m, "authorization") > 1) {
		client_refuse(cl, 400, "PROXY_BAD_REQUEST", "more than one Authorization header", 1);
		return -1;
	}
	if (!cl->cred.is_unix && (auth = httpp_find(m, "authorization")) != NULL)
		(void)policy_bearer(auth->value, auth->value_len, &cl->cred.bearer,
		    &cl->cred.bearer_len);
	cl->caller = policy_identify(cl->gen->conf->policy, &cl->cred);
	if (cl->caller == NULL)		/* "token=unknown"/"token=none"/"uid=..." for the audit */
		caller_describe(NULL, &cl->cred, cl->caller_id, sizeof(cl->caller_id));
	cl->cred.bearer = NULL;		/* points into the head: not kept */
	if (cl->caller == NULL) {
		log_warn("refused an unknown caller %s", cl->peer);
		cl->www_auth = !cl->cred.is_unix;
		client_refuse(cl, 401, "PROXY_UNKNOWN_CALLER", cl->cred.is_unix ?
		    "this peer (uid/gid) is not a configured caller" :
		    "a valid bearer token of a configured caller is required", !nobody);
		return -1;
	}
	caller_describe(cl->caller, &cl->cred, cl->caller_id, sizeof(cl->caller_id));
	return 0;
}

/* May the identified caller use this profile and path?  403. */
static int
client_check_caller(struct client *cl, const char *profile, int nobody)
{
	const char	*rule = NULL;
	char		 msg[160];

	if (policy_check_request(cl->caller, profile, cl->target, &rule) == -1) {
		snprintf(msg, sizeof(msg), "caller %s: %s", caller_name(cl->caller), rule);
		client_refuse(cl, 403, "PROXY_FORBIDDEN", msg, !nobody);
		return -1;
	}
	return 0;
}

/* Per-caller concurrency: 429 with Retry-After. */
static int
client_check_limits(struct client *cl, int nobody)
{
	char		 msg[128];

	if (caller_enter(cl->caller) == -1) {
		snprintf(msg, sizeof(msg), "caller %s: max_concurrent requests already in flight",
		    caller_name(cl->caller));
		cl->retry_after = 1;
		client_refuse(cl, 429, "PROXY_TOO_MANY_CONCURRENT", msg, !nobody);
		return -1;
	}
	cl->entered = 1;
	return 0;	/* the rate token is taken once the body passed its checks */
}

/* Checks on the head that need no body; 0 to go on reading. */
static int
client_check_head(struct client *cl, const struct httpp_msg *m)
{
	const struct conf	*c = cl->gen->conf;
	size_t			 idx, plen;
	int			 nobody = m->content_length <= 0 && !m->chunked, plain;

	/* m still points into the input buffer: nothing here may drain it */
	if (m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0) {
		client_refuse(cl, 405, "PROXY_METHOD_NOT_ALLOWED",
		    "CONNECT is refused: this is not an open proxy", 1);
		return -1;
	}
	if (cl->target[0] != '/') {
		client_refuse(cl, 400, "PROXY_BAD_TARGET",
		    "only origin-form targets (/path) are accepted: this is not an open proxy", 1);
		return -1;
	}
	/* RFC 9112 3.2: Host is required in HTTP/1.1; an HTTP/1.0 request may lack it */
	if (m->host == NULL ? m->minor != 0 : !client_host_ok(cl, m->host, m->host_len)) {
		client_refuse(cl, 400, "PROXY_BAD_HOST",
		    "the Host header must name this proxy (localhost or its listen address)", 1);
		return -1;
	}
	if (httpp_find(m, "origin") != NULL || httpp_find(m, "sec-fetch-site") != NULL) {
		/* only browsers send these: a web page must not get requests signed (CSRF) */
		client_refuse(cl, 403, "PROXY_FORBIDDEN",
		    "requests from a web browser (Origin or Sec-Fetch-Site header) are refused", 1);
		return -1;
	}
	/* who calls is settled first: an unknown caller learns nothing of the routes */
	if (policy_ncallers(c->policy) > 0 && client_identify(cl, m, nobody) == -1)
		return -1;
	plen = strcspn(cl->target, "?#");
	plain = cl->target[plen] == '\0' && strstr(cl->target, "//") == NULL &&
	    strstr(cl->target, "/.") == NULL && strchr(cl->target, '%') == NULL &&
	    strchr(cl->target, '\\') == NULL;
	/* routed before the method check, so that a 405 is audited with its profile */
	if (plain && conf_route(c, cl->target, plen, &idx) != NULL)
		cl->profile = c->profiles[idx].name;
	if (m->method_len != 4 || memcmp(m->method, "POST", 4) != 0)
		return client_refuse_head(cl, m, 405, "PROXY_METHOD_NOT_ALLOWED",
		    "the OnChainPay API only uses POST");
	if (!plain)
		return client_refuse_head(cl, m, 400, "PROXY_BAD_TARGET",
		    "the path must be a plain API path "
		    "(no query, fragment, percent-encoding, '//' or dot segments)");
	if (cl->profile == NULL)
		return client_refuse_head(cl, m, 404, "PROXY_NO_ROUTE",
		    "no profile serves this path");
	if (cl->caller != NULL && client_check_caller(cl, cl->profile, nobody) == -1)
		return -1;
	if (m->content_length >= 0 && (size_t)m->content_length > c->max_body_bytes) {
		client_refuse(cl, 413, "PROXY_BODY_TOO_LARGE",
		    "the request body exceeds max_body_bytes", 1);
		return -1;
	}
	if (cl->caller != NULL && client_check_limits(cl, nobody) == -1)
		return -1;
	return 0;
}

/*
 * RFC 9110 9.3.2: a head refused before it parses (malformed, too large)
 * is still a HEAD's when its request line starts with that method token,
 * and its answer gets no body either.
 */
static int
client_head_token(const char *p, size_t len)
{
	return len >= 5 && memcmp(p, "HEAD ", 5) == 0;
}

/* Parse a complete head; 1 if a body phase starts, 0 if more input needed, -1 if refused. */
static int
client_read_head(struct client *cl, struct evbuffer *in)
{
	const struct conf	*c = cl->px->gen->conf;
	struct httpp_msg	 m;
	const char		*why = NULL;
	size_t			 hl, avail;
	char			*p;

	if (!cl->head_started && evbuffer_get_length(in) > 0) {
		cl->head_started = 1;
		clock_gettime(CLOCK_MONOTONIC, &cl->t0);	/* every record's duration */
		client_read_untimed(cl);	/* the head deadline takes over */
		client_deadline(cl, c->header_timeout_ms);
	}
	/*
	 * RFC 9112 2.2: ignore empty lines before the request line (a client
	 * may send a CRLF after a body); a few, then the parser refuses them.
	 */
	while (cl->empty_lines < CLIENT_EMPTY_LINES_MAX && evbuffer_get_length(in) >= 2 &&
	    memcmp(evbuffer_pullup(in, 2), "\r\n", 2) == 0) {
		evbuffer_drain(in, 2);
		cl->empty_lines++;
		cl->head_scanned = 0;
	}
	/*
	 * httpp_head_scan stops early at a byte no head may hold (bare LF or CR,
	 * NUL), so such a request is refused now instead of waiting for a
	 * CRLFCRLF that never comes.
	 */
	if ((avail = evbuffer_get_length(in)) == 0)
		return 0;	/* only empty lines so far */
	if (avail > c->max_header_bytes + 1)
		avail = c->max_header_bytes + 1;
	/* contiguous without freeing uncleared copies (a body may follow the head) */
	if ((p = (char *)wipe_pullup(in)) == NULL) {
		client_free(cl);	/* out of memory */
		return -1;
	}
	/* a trickled head: only the bytes that came since the last read are new */
	if ((hl = httpp_head_scan(p, avail, &cl->head_scanned)) == 0 &&
	    avail <= c->max_header_bytes)
		return 0;	/* not complete yet */
	if (hl == 0 || hl > c->max_header_bytes) {
		cl->keepalive = 0;
		cl->head = client_head_token(p, avail);
		client_refuse(cl, 400, "PROXY_HEADERS_TOO_LARGE",
		    "request line and headers exceed max_header_bytes", 1);
		return -1;
	}
	if (httpp_parse_request(p, hl, &m, &why) == -1) {
		cl->keepalive = 0;
		cl->head = client_head_token(p, hl);
		log_info("refused a malformed request from %s: %s", cl->peer, why);
		client_refuse(cl, 400, "PROXY_BAD_REQUEST", why, 1);
		return -1;
	}
	cl->gen = cl->px->gen;
	cl->gen->refs++;
	cl->method = strndup(m.method, m.method_len);
	cl->target = strndup(m.target, m.target_len);
	cl->keepalive = m.keepalive;
	cl->head = m.method_len == 4 && memcmp(m.method, "HEAD", 4) == 0;
	cl->chunked = m.chunked;
	cl->left = m.content_length > 0 ? (unsigned long long)m.content_length : 0;
	cl->max_body = c->max_body_bytes;
	if (cl->method == NULL || cl->target == NULL || (cl->body = evbuffer_new()) == NULL) {
		client_free(cl);
		return -1;
	}
	if (cl->chunked)
		httpp_chunked_init(&cl->chunk);
	cl->head_len = hl;	/* drained by client_refuse or below */
	if (client_check_head(cl, &m) == -1)
		return -1;
	wipe_drain(in, hl);	/* may hold a bearer token */
	cl->head_len = 0;
	if (m.expect_continue) {	/* every response carries the request's id (SPEC) */
		request_new_id(cl->reqid);
		evbuffer_add_printf(cl->out, "HTTP/1.1 100 Continue\r\nX-Request-Id: %s\r\n\r\n",
		    cl->reqid);
		client_write_arm(cl);
	}
	cl->state = CL_BODY;
	client_deadline(cl, c->body_timeout_ms);
	return 1;
}

static void
client_chunk_emit(void *arg, const char *p, size_t n)
{
	struct client	*cl = arg;

	cl->body_len += n;
	if (cl->body_len > cl->max_body)
		cl->too_large = 1;
	else if (!cl->skip)
		evbuffer_add(cl->body, p, n);
}

/* Move body bytes; 1 when the body is complete, 0 for more, -1 if refused. */
static int
client_read_body(struct client *cl, struct evbuffer *in)
{
	struct evbuffer_iovec	 v;
	const char		*why = NULL;
	ssize_t			 used;
	size_t			 n;
	int			 done = 0;

	if (!cl->chunked) {
		n = evbuffer_get_length(in);
		if (n > cl->left)
			n = (size_t)cl->left;
		if (cl->skip)
			wipe_drain(in, n);
		else if (wipe_move(in, cl->body, n) == -1) {
			client_refuse(cl, 503, "PROXY_OVERLOADED", "out of memory", 1);
			return -1;
		}
		cl->left -= n;
		cl->body_len += n;
		return cl->left == 0;
	}
	while (!done && evbuffer_get_length(in) > 0) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		used = httpp_chunked_feed(&cl->chunk, v.iov_base, v.iov_len,
		    client_chunk_emit, cl, &done, &why);
		if (used < 0) {
			client_refuse(cl, 400, "PROXY_BAD_REQUEST", why, 1);
			return -1;
		}
		wipe_drain(in, (size_t)used);
		if (cl->too_large) {
			client_refuse(cl, 413, "PROXY_BODY_TOO_LARGE",
			    "the request body exceeds max_body_bytes", 1);
			return -1;
		}
	}
	return done;
}

/* Input from the caller. */
static void
client_input(struct client *cl)
{
	struct evbuffer	*in = cl->in;
	struct evbuffer	*body;
	char		*method, *target;
	int		 r;

	if (cl->state == CL_CLOSING) {	/* lingering: discard, bounded */
		cl->drained += evbuffer_get_length(in);
		wipe_drain(in, evbuffer_get_length(in));
		if (cl->drained > CLIENT_LINGER_BYTES)
			client_free(cl);
		return;
	}
	if (cl->state == CL_HEAD) {
		if (cl->px->stopping) {
			client_free(cl);
			return;
		}
		if ((r = client_read_head(cl, in)) <= 0) {
			if (r == 0)
				client_read_sync(cl);
			return;
		}
	}
	if (cl->state != CL_BODY)
		return;
	if ((r = client_read_body(cl, in)) <= 0) {
		if (r == 0)
			client_read_sync(cl);
		return;
	}
	if (cl->skip) {		/* the body of a refused request was read past */
		client_refuse(cl, 0, NULL, NULL, 0);	/* its refusal, kept alive */
		return;
	}
	cl->state = CL_BUSY;
	client_deadline(cl, 0);
	/*
	 * Reading stays on (no epoll_ctl per request): a pipelined next request
	 * waits in the input buffer, bounded by read_high, and a caller that
	 * hangs up is noticed at once.
	 */
	client_read_untimed(cl);
	body = cl->body;
	method = cl->method;
	target = cl->target;
	cl->body = NULL;
	cl->method = cl->target = NULL;
	request_start(cl, method, target, body, 1);
}

/* The output left (the write event is disarmed): close if asked to. */
static void
client_written(struct client *cl)
{
	if (cl->state != CL_CLOSING)	/* a remainder left: back to direct writes */
		return;
	if (cl->req != NULL || cl->lingering)
		return;
	/*
	 * Lingering close: the caller may still be sending a body we refused
	 * to read; closing now would reset the connection and lose the answer
	 * it has not read yet.  Shut our side and discard its input for a while.
	 */
	cl->lingering = 1;
	if (shutdown(cl->fd, SHUT_WR) == -1) {
		client_free(cl);
		return;
	}
	wipe_drain(cl->in, evbuffer_get_length(cl->in));
	client_deadline(cl, CLIENT_LINGER_MS);
	client_read_set(cl, 1, cl->px->gen->conf->idle_timeout_ms);
}

/* EOF, errors and timeouts. */
static void
client_gone(struct client *cl)
{
	if (cl->state == CL_BODY && cl->skip) {	/* refused by its head: audited as such */
		request_abandoned(cl, cl->method, cl->target, cl->body_len, cl->skip_status,
		    cl->skip_name);
		cl->state = CL_CLOSING;
	} else if (cl->state == CL_BODY) {	/* the head arrived, the body never did */
		request_abandoned(cl, cl->method, cl->target, cl->body_len, 499,
		    "PROXY_CLIENT_CLOSED");
		cl->state = CL_CLOSING;
	}
	client_free(cl);	/* EOF, error, or idle/write timeout */
}

/* Remember the request that runs on this client. */
void
client_set_request(struct client *cl, struct request *r)
{
	cl->req = r;
}

/* Release every connection (exit). */
void
client_free_all(struct proxy *px)
{
	struct client	*cl;

	while ((cl = TAILQ_FIRST(&px->clients)) != NULL)
		client_free(cl);
}

/* Hand the request's generation and caller over to request.c. */
struct gen *
client_take(struct client *cl, struct caller **caller, int *entered, const char **id)
{
	struct gen	*g = cl->gen;

	*caller = cl->caller;
	*entered = cl->entered;
	*id = cl->caller_id;
	cl->gen = NULL;
	cl->profile = NULL;	/* it pointed into the generation handed over */
	cl->entered = 0;
	return g;
}

/* The profile whose route the request's path is on, or NULL (not routed yet, or none). */
const char *
client_profile(const struct client *cl)
{
	return cl->profile;
}

/*
 * When the current request started: the proxy read its first byte (for a
 * pipelined one, began reading it after the answer before).  Every audit
 * record's duration_ms counts from here.
 */
void
client_request_t0(const struct client *cl, struct timespec *t0)
{
	if (cl->head_started)
		*t0 = cl->t0;
	else
		clock_gettime(CLOCK_MONOTONIC, t0);
}

/* The id given to the request being read (in its 100 Continue), or NULL. */
const char *
client_request_id(const struct client *cl)
{
	return cl->reqid[0] != '\0' ? cl->reqid : NULL;
}

/* Name and identity of the caller for an audit line. */
void
client_caller_info(const struct client *cl, const char **name, const char **id)
{
	*name = cl->caller ? caller_name(cl->caller) : NULL;
	*id = cl->caller_id[0] != '\0' ? cl->caller_id : NULL;
}

void
client_set_retry_after(struct client *cl, unsigned seconds)
{
	cl->retry_after = seconds;
}
