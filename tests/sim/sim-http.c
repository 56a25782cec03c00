/*
 * sim-http.c — the API side of the simulator: authentication (public key,
 * HMAC-SHA256 signature over the raw body), JSON and nonce checks, the
 * success/error envelopes, and the faults applied to the replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>

#include "catalogue.h"
#include "sim.h"

#define TEST_SIGNATURE_PATH	"/api-gateway/test-signature"

/* HTTP method name for the record. */
const char *
sim_method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET:	 return "GET";
	case EVHTTP_REQ_POST:	 return "POST";
	case EVHTTP_REQ_HEAD:	 return "HEAD";
	case EVHTTP_REQ_PUT:	 return "PUT";
	case EVHTTP_REQ_DELETE:	 return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE:	 return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH:	 return "PATCH";
	}
	return "UNKNOWN";
}

/* Whether the TLS session of the request's connection was resumed. */
int
sim_session_reused(struct evhttp_request *req)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;
	SSL				*ssl;

	if ((evcon = evhttp_request_get_connection(req)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return 0;
	return SSL_session_reused(ssl) ? 1 : 0;
}

/* Send status with body (may be NULL) and Content-Type ctype. */
void
sim_reply(struct evhttp_request *req, int status, const char *ctype,
    struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (ctype != NULL)
		evhttp_add_header(h, "Content-Type", ctype);
	evhttp_send_reply(req, status, NULL, body);
}

/* Append the API's error envelope. */
static void
sim_error_body(struct evbuffer *b, int status, const char *name,
    const char *message)
{
	char	id[37];

	sim_uuid(id);
	evbuffer_add_printf(b, "{\"success\":false,\"error\":{\"code\":%d,"
	    "\"name\":", status);
	sim_json_cstr(b, name);
	evbuffer_add(b, ",\"message\":", 11);
	sim_json_cstr(b, message);
	evbuffer_add_printf(b, "},\"requestId\":\"%s\"}", id);
}

/* Reply with an error envelope. */
void
sim_reply_error(struct evhttp_request *req, int status, const char *name,
    const char *message)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	sim_error_body(b, status, name, message);
	sim_reply(req, status, "application/json", b);
	evbuffer_free(b);
}

static struct sim_key *
sim_key_find(struct sim *sim, const char *pub)
{
	struct sim_key	*k;

	for (k = sim->keys; k != NULL; k = k->next)
		if (strcmp(k->pub, pub) == 0)
			return k;
	return NULL;
}

/*
 * Normalize an integral JSON number token to its decimal text without
 * leading zeros ("-0012.000" -> "-12", "1.5e3" -> "1500").  NULL when the
 * number is not an integer or is absurdly long.
 */
static char *
sim_nonce_int(const char *raw)
{
	char		 d[160];
	const char	*p = raw;
	size_t		 nd = 0, frac = 0, i;
	long		 e = 0;
	int		 neg = 0;
	char		*out;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	for (; *p >= '0' && *p <= '9' && nd < sizeof(d); p++)
		d[nd++] = *p;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9' && nd < sizeof(d); p++, frac++)
			d[nd++] = *p;
	}
	if (*p == 'e' || *p == 'E') {
		e = strtol(p + 1, NULL, 10);
		if (e > 64 || e < -64)
			return NULL;
	} else if (*p != '\0')
		return NULL;		/* too many digits */
	for (e -= (long)frac; e > 0; e--) {
		if (nd == sizeof(d))
			return NULL;
		d[nd++] = '0';
	}
	for (; e < 0 && nd > 0; e++) {
		if (d[nd - 1] != '0')
			return NULL;	/* a non-zero fraction */
		nd--;
	}
	for (i = 0; i < nd && d[i] == '0'; i++)
		;
	if (i == nd)
		return strdup("0");
	if ((out = malloc(nd - i + 2)) == NULL)
		return NULL;
	snprintf(out, nd - i + 2, "%s%.*s", neg ? "-" : "", (int)(nd - i), d + i);
	return out;
}

/* Compare two normalized integers: <0, 0, >0. */
static int
sim_int_cmp(const char *a, const char *b)
{
	int	na = a[0] == '-', nb = b[0] == '-', c;
	size_t	la, lb;

	if (na != nb)
		return na ? -1 : 1;
	a += na;
	b += nb;
	la = strlen(a);
	lb = strlen(b);
	c = la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
	return na ? -c : c;
}

static size_t
sim_bucket(const char *s, size_t len)
{
	uint32_t	h = 2166136261u;
	size_t		i;

	for (i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h % SIM_NONCE_BUCKETS;
}

static struct sim_seen *
sim_seen_find(struct sim_key *k, const char *s, size_t len)
{
	struct sim_seen	*e;

	for (e = k->seen[sim_bucket(s, len)]; e != NULL; e = e->next)
		if (e->len == len && memcmp(e->s, s, len) == 0)
			return e;
	return NULL;
}

/* Forget every nonce used with k. */
void
sim_nonce_clear(struct sim_key *k)
{
	struct sim_seen	*e, *next;
	size_t		 i;

	free(k->last_num);
	k->last_num = NULL;
	free(k->floor);
	k->floor = NULL;
	for (i = 0; i < k->nrecent; i++)
		free(k->recent[i]);
	k->nrecent = k->rpos = 0;
	for (i = 0; i < SIM_NONCE_BUCKETS; i++) {
		for (e = k->seen[i]; e != NULL; e = next) {
			next = e->next;
			free(e->s);
			free(e);
		}
		k->seen[i] = NULL;
	}
}

unsigned sim_nonce_window;

/*
 * With --nonce-window N, numeric nonces are checked like an anti-replay
 * window: the last N accepted are remembered, and a nonce is fresh if it is
 * not among them and above every nonce that has left the ring (the floor).
 * Requests sent in nonce order over parallel connections may arrive
 * slightly out of order; a replay is still refused, however late.
 * N = 0: strictly increasing, as documented.
 */
static int
sim_nonce_in_window(const struct sim_key *k, const char *n)
{
	size_t	i;

	if (k->floor != NULL && sim_int_cmp(n, k->floor) <= 0)
		return 0;
	for (i = 0; i < k->nrecent; i++)
		if (k->recent[i] != NULL && sim_int_cmp(n, k->recent[i]) == 0)
			return 0;	/* reused */
	return 1;
}

static void
sim_nonce_remember(struct sim_key *k, const char *n)
{
	char	*old;

	if (k->nrecent < sim_nonce_window) {
		k->recent[k->nrecent++] = strdup(n);
		return;
	}
	old = k->recent[k->rpos];
	if (old != NULL && (k->floor == NULL || sim_int_cmp(old, k->floor) > 0)) {
		free(k->floor);
		k->floor = old;
	} else
		free(old);
	k->recent[k->rpos] = strdup(n);
	k->rpos = (k->rpos + 1) % k->nrecent;
}

/*
 * Check the nonce of an authenticated request against k's history and, if
 * it is fresh, remember it.  Returns the error name or NULL.
 */
static const char *
sim_nonce_use(struct sim_key *k, const struct sim_check *ck)
{
	struct sim_seen	*e;
	char		*n;
	size_t		 len;

	if (strcmp(ck->nonce_type, "number") == 0) {
		if ((n = sim_nonce_int(ck->nonce)) == NULL)
			return "INVALID_NONCE";
		if (sim_nonce_window == 0 ? (k->last_num != NULL &&
		    sim_int_cmp(n, k->last_num) <= 0) : !sim_nonce_in_window(k, n)) {
			free(n);
			return "NONCE_REUSED";
		}
		if (sim_nonce_window > 0)
			sim_nonce_remember(k, n);
		if (k->last_num == NULL || sim_int_cmp(n, k->last_num) > 0) {
			free(k->last_num);
			k->last_num = n;
		} else
			free(n);
		return NULL;
	}
	if (strcmp(ck->nonce_type, "string") != 0 || ck->nonce == NULL)
		return "INVALID_NONCE";
	len = strlen(ck->nonce);
	if (sim_seen_find(k, ck->nonce, len) != NULL)
		return "NONCE_REUSED";
	if ((e = calloc(1, sizeof(*e))) != NULL) {
		if ((e->s = strdup(ck->nonce)) == NULL) {
			free(e);
			return NULL;
		}
		e->len = len;
		e->next = k->seen[sim_bucket(e->s, len)];
		k->seen[sim_bucket(e->s, len)] = e;
	}
	return NULL;
}

static void
sim_fail(struct sim_check *ck, int status, const char *name, const char *msg)
{
	ck->status = status;
	ck->error = name;
	ck->message = msg;
}

/*
 * Authenticate and validate an API request in the real API's order: key,
 * signature, JSON, nonce.  An accepted request consumes its nonce.
 */
static void
sim_check(struct sim *sim, struct evhttp_request *req,
    const unsigned char *body, size_t len, struct sim_check *ck)
{
	struct evkeyvalq	*h = evhttp_request_get_input_headers(req);
	const char		*sig, *err;
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	int			 json_ok, has = 0;

	ck->pub = evhttp_find_header(h, "x-api-public-key");
	sig = evhttp_find_header(h, "x-api-signature");
	json_ok = memchr(body, 0, len) == NULL &&
	    sim_json_scan(body, len, &ck->nonce, &ck->nonce_type, &has) == 0;
	if (ck->pub == NULL || ck->pub[0] == '\0') {
		sim_fail(ck, 401, "NO_PUBLIC_KEY", "No public key passed.");
		return;
	}
	if ((ck->key = sim_key_find(sim, ck->pub)) == NULL) {
		sim_fail(ck, 401, "INVALID_PUBLIC_KEY", "Invalid public key.");
		return;
	}
	if (HMAC(EVP_sha256(), ck->key->secret, (int)ck->key->secret_len,
	    body, len, md, &mdlen) == NULL || mdlen != 32) {
		sim_fail(ck, 500, "INTERNAL_ERROR", "HMAC failed.");
		return;
	}
	sim_hex(md, mdlen, ck->sig_hex);
	OPENSSL_cleanse(md, sizeof(md));
	ck->sig_ok = sig != NULL && strlen(sig) == 64 &&
	    CRYPTO_memcmp(sig, ck->sig_hex, 64) == 0;
	if (!ck->sig_ok)
		sim_fail(ck, 401, "INVALID_SIGNATURE", "Invalid signature.");
	else if (!json_ok)
		sim_fail(ck, 400, "INVALID_JSON",
		    "The request body must be a JSON object.");
	else if (!has)
		sim_fail(ck, 400, "NONCE_REQUIRED", "Nonce is required.");
	else if ((err = sim_nonce_use(ck->key, ck)) != NULL)
		sim_fail(ck, 400, err, strcmp(err, "NONCE_REUSED") == 0 ?
		    "Nonce has already been used or is not greater than the "
		    "previous one." : "Nonce must be an integer or a string.");
}

/* The test-signature reply: 200 whatever the outcome, as the real API. */
static void
sim_test_signature(struct evbuffer *b, const struct sim_check *ck,
    const unsigned char *body, size_t len)
{
	evbuffer_add(b, "{\"success\":true,\"response\":{\"errors\":[", 38);
	if (ck->error != NULL)
		sim_json_cstr(b, ck->message);
	evbuffer_add_printf(b, "],\"checkSignatureResult\":%s,",
	    ck->sig_ok ? "true" : "false");
	if (ck->sig_hex[0] != '\0')
		evbuffer_add_printf(b, "\"signature\":\"%s\",", ck->sig_hex);
	evbuffer_add(b, "\"receivedBody\":", 15);
	sim_json_str(b, body, len);
	evbuffer_add(b, "}}", 2);
}

/* Take the current fault for one API request, counting it down. */
static struct sim_fault
sim_fault_take(struct sim *sim)
{
	struct sim_fault f = sim->fault;

	if (sim->fault.mode != SIM_FAULT_NONE && sim->fault.count > 0 &&
	    --sim->fault.count == 0)
		sim->fault.mode = SIM_FAULT_NONE;
	return f;
}

/* A body of exactly n bytes (when n allows) that is one JSON object. */
static void
sim_huge_body(struct evbuffer *b, size_t n)
{
	static const char	head[] = "{\"success\":true,\"response\":{\"padding\":\"";
	static const char	tail[] = "\"}}";
	char			chunk[4096];
	size_t			pad, k;

	memset(chunk, 'x', sizeof(chunk));
	pad = n > sizeof(head) + sizeof(tail) - 2 ?
	    n - (sizeof(head) + sizeof(tail) - 2) : 0;
	evbuffer_add(b, head, sizeof(head) - 1);
	evbuffer_expand(b, pad + sizeof(tail));
	for (; pad > 0; pad -= k) {
		k = pad < sizeof(chunk) ? pad : sizeof(chunk);
		evbuffer_add(b, chunk, k);
	}
	evbuffer_add(b, tail, sizeof(tail) - 1);
}

static void
sim_pending_unlink(struct sim_pending *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		p->sim->pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
}

static void
sim_pending_free(struct sim_pending *p)
{
	sim_pending_unlink(p);
	if (p->timer != NULL)
		event_free(p->timer);
	evbuffer_free(p->body);
	free(p);
}

/* The "delay" timer: answer now. */
static void
sim_pending_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sim_pending *p = arg;

	sim_reply(p->req, p->status, p->ctype, p->body);
	sim_pending_free(p);
}

/* Hold the reply back for ms milliseconds; takes ownership of body. */
static void
sim_delay(struct sim *sim, struct evhttp_request *req, long ms, int status,
    const char *ctype, struct evbuffer *body)
{
	struct sim_pending	*p;
	struct timeval		 tv;

	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->timer = evtimer_new(sim->base, sim_pending_cb, p)) == NULL) {
		free(p);
		sim_reply(req, status, ctype, body);
		evbuffer_free(body);
		return;
	}
	p->sim = sim;
	p->req = req;
	p->status = status;
	p->ctype = ctype;
	p->body = body;
	if ((p->next = sim->pending) != NULL)
		p->next->prev = p;
	sim->pending = p;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
}

/*
 * At shutdown: drop delayed replies.  Requests still attached to a
 * connection are freed with it by evhttp_free(); detached ones are ours.
 */
void
sim_pending_flush_all(struct sim *sim)
{
	while (sim->pending != NULL) {
		if (evhttp_request_get_connection(sim->pending->req) == NULL)
			evhttp_request_free(sim->pending->req);
		sim_pending_free(sim->pending);
	}
}

/* Write-complete callback of close_mid: drop the connection. */
static void
sim_close_after_flush(struct evhttp_connection *evcon, void *arg)
{
	evhttp_connection_free(evcon);
}

/* close_mid: head with the full Content-Length, half the body, close. */
static void
sim_close_mid(struct evhttp_request *req, int status, struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	struct evbuffer		*part;
	size_t			 full = evbuffer_get_length(body);
	char			 cl[32];

	snprintf(cl, sizeof(cl), "%zu", full + 64);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Content-Length", cl);
	evhttp_send_reply_start(req, status, NULL);
	if ((part = evbuffer_new()) == NULL)
		return;
	evbuffer_remove_buffer(body, part, full / 2 > 0 ? full / 2 : 1);
	evhttp_send_reply_chunk_with_cb(req, part, sim_close_after_flush, NULL);
	evbuffer_free(part);
}

/* Replace the planned reply by the fault's, where the fault says so. */
static void
sim_fault_body(const struct sim_fault *f, int *status, const char **ctype,
    struct evbuffer *b)
{
	evbuffer_drain(b, evbuffer_get_length(b));
	switch (f->mode) {
	case SIM_FAULT_STATUS500:
		*status = 500;
		*ctype = "application/json";
		sim_error_body(b, 500, "INTERNAL_ERROR",
		    "Internal server error (simulated).");
		break;
	case SIM_FAULT_STATUS204:
	case SIM_FAULT_STATUS304:
		/* no body, no Content-Type; evhttp adds no Content-Length */
		*status = f->mode == SIM_FAULT_STATUS204 ? 204 : 304;
		*ctype = NULL;
		break;
	case SIM_FAULT_GARBAGE:
		*status = 200;
		*ctype = "text/html";
		evbuffer_add(b, "<html>upstream garbage</html>", 29);
		break;
	default:	/* SIM_FAULT_HUGE */
		*status = 200;
		*ctype = "application/json";
		sim_huge_body(b, f->bytes != 0 ? f->bytes : SIM_HUGE_DEFAULT);
	}
}

/* Build the planned reply for an API request into b. */
static int
sim_plan(struct evhttp_request *req, const char *path, struct sim_check *ck,
    const unsigned char *body, size_t len, struct evbuffer *b,
    struct sim *sim)
{
	if (!catalogue_has(path, strlen(path))) {
		sim_fail(ck, 404, "NOT_FOUND", "Unknown API method.");
	} else if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		sim_fail(ck, 405, "METHOD_NOT_ALLOWED", "Only POST is allowed.");
	} else {
		sim_check(sim, req, body, len, ck);
		if (strcmp(path, TEST_SIGNATURE_PATH) == 0) {
			sim_test_signature(b, ck, body, len);
			return 200;
		}
		if (ck->error == NULL) {
			if (sim_response(b, path, ck->pub) == 0)
				return 200;
			sim_fail(ck, 500, "INTERNAL_ERROR", "No template.");
		}
	}
	sim_error_body(b, ck->status, ck->error, ck->message);
	return ck->status;
}

/* An API request: check, record, then answer (or misbehave). */
static void
sim_api(struct sim *sim, struct evhttp_request *req, const char *path)
{
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	struct evbuffer		*b;
	struct sim_check	 ck;
	struct sim_fault	 f;
	const unsigned char	*body;
	const char		*ctype = "application/json";
	size_t			 len = evbuffer_get_length(in);
	int			 status;

	memset(&ck, 0, sizeof(ck));
	sim->stats.requests++;
	body = len > 0 ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	status = sim_plan(req, path, &ck, body, len, b, sim);
	f = sim_fault_take(sim);
	if (f.mode == SIM_FAULT_STATUS500 || f.mode == SIM_FAULT_GARBAGE ||
	    f.mode == SIM_FAULT_HUGE || f.mode == SIM_FAULT_STATUS204 ||
	    f.mode == SIM_FAULT_STATUS304)
		sim_fault_body(&f, &status, &ctype, b);
	if (f.mode == SIM_FAULT_NO_CTYPE)
		ctype = NULL;	/* the planned answer, without a Content-Type header */
	sim_record(sim, req, path, body, len, &ck,
	    f.mode == SIM_FAULT_CLOSE ? 0 : status, f.mode);
	free(ck.nonce);
	OPENSSL_cleanse(ck.sig_hex, sizeof(ck.sig_hex));
	switch (f.mode) {
	case SIM_FAULT_DELAY:
		sim_delay(sim, req, f.ms, status, ctype, b);
		return;		/* b now belongs to the pending reply */
	case SIM_FAULT_CLOSE:
		evhttp_connection_free(evhttp_request_get_connection(req));
		break;
	case SIM_FAULT_CLOSE_MID:
		sim_close_mid(req, status, b);
		break;
	default:
		sim_reply(req, status, ctype, b);
	}
	evbuffer_free(b);
}

/* evhttp's generic callback: control plane or API. */
void
sim_http_cb(struct evhttp_request *req, void *arg)
{
	struct sim			*sim = arg;
	const struct evhttp_uri		*uri = evhttp_request_get_evhttp_uri(req);
	const char			*path = NULL;

	if (uri != NULL)
		path = evhttp_uri_get_path(uri);
	if (path == NULL || *path == '\0')
		path = "/";
	if (strncmp(path, "/__sim/", 7) == 0)
		sim_control(sim, req, path);
	else
		sim_api(sim, req, path);
}
