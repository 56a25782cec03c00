/*
 * request.c — one API call through the proxy: validate the body, choose the
 * profile, splice the nonce, write the write-ahead audit record, sign the
 * exact bytes, forward, relay the answer and write the outcome record.
 */
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "audit.h"
#include "fmt.h"
#include "jbody.h"
#include "keys.h"
#include "log.h"
#include "nonce.h"
#include "ocp-proxy.h"
#include "policy.h"
#include "redact.h"
#include "signer.h"
#include "upstream.h"
#include "wipe.h"

#define REQ_ID_LEN	REQUEST_ID_LEN
#define REQ_NONCE_AHEAD_MS	86400000ULL	/* caller nonces: at most a day ahead */

/* Who chose the nonce that was used (request.nonce_from). */
#define REQ_NONCE_NONE		0	/* none was used (yet) */
#define REQ_NONCE_OURS		1	/* inserted: nonce */
#define REQ_NONCE_CALLER	2	/* the caller's integer: nonce */
#define REQ_NONCE_CALLER_STR	3	/* the caller's string: jb.nonce_at (its
					   value in nonce if nonce_digits) */

struct request {
	TAILQ_ENTRY(request)	 entry;
	struct client		*cl;
	struct gen		*gen;
	struct pkey		*key;
	size_t			 profile;
	char			 id[REQ_ID_LEN];
	char			 peer[96];
	unsigned long long	 t0_ms;
	struct timespec		 t0;
	char			*method;
	char			*path;
	struct evbuffer		*body;		/* caller's body, contiguous */
	size_t			 bytes_in;
	struct jbody		 jb;
	struct jbody_echo	 echo;		/* values redacted from the body */
	char			 member[48];	/* inserted "nonce":N[,] */
	char			 sig[SIGNER_HEX_LEN];	/* masked if the answer echoes it */
	int			 has_sig;
	size_t			 member_len;
	unsigned long long	 nonce;
	int			 nonce_from;	/* REQ_NONCE_* */
	int			 nonce_digits;	/* the caller's string is digits: jb.nonce_num */
	struct up_xfer		*xfer;
	int			 waiting_audit;
	struct caller		*caller;	/* named caller, or NULL */
	int			 entered;	/* owes caller_leave() */
	char			 caller_id[POLICY_DESCRIBE_MAX];
};

/*
 * Scratch evbuffers for audit lines and redacted copies.  A request uses
 * four in turn, at most two at a time, so a few spares kept here (empty)
 * save their allocation and release per request.
 */
#define REQ_SPARE_BUFS	4
static struct evbuffer	*req_spare[REQ_SPARE_BUFS];
static int		 req_nspare;

static struct evbuffer *
request_buf_get(void)
{
	return req_nspare > 0 ? req_spare[--req_nspare] : evbuffer_new();
}

/* Give a scratch buffer back: whatever is left in it is zeroed and drained. */
static void
request_buf_put(struct evbuffer *b)
{
	if (b == NULL)
		return;
	if (req_nspare == REQ_SPARE_BUFS) {
		wipe_free(b);
		return;
	}
	wipe_drain(b, evbuffer_get_length(b));	/* a refused request's redacted copy */
	req_spare[req_nspare++] = b;
}

/* Free the spares (at exit). */
void
request_buf_release(void)
{
	while (req_nspare > 0)
		evbuffer_free(req_spare[--req_nspare]);
}

/* A request id: the process's random prefix and a sequence number. */
void
request_new_id(char *id)
{
	char	hex[FMT_UINT_MAX];
	size_t	n, h;

	/* "%s-%012llx" of the boot prefix and the sequence, cut to REQ_ID_LEN */
	n = fmt_copy(id, REQ_ID_LEN - 1, ocp->boot);
	id[n++] = '-';
	h = fmt_uint(hex, ++ocp->reqseq, 16, 12);
	if (h > REQ_ID_LEN - 1 - n)
		h = REQ_ID_LEN - 1 - n;
	memcpy(id + n, hex, h);
	id[n + h] = '\0';
}

/* The id the client already gave this request (in a 100 Continue), or a new one. */
static void
request_client_id(const struct client *cl, char *id)
{
	const char	*have = client_request_id(cl);

	if (have != NULL)
		fmt_copy(id, REQ_ID_LEN, have);
	else
		request_new_id(id);
}

/* Milliseconds since t0 (CLOCK_MONOTONIC). */
static double
request_ms_since(const struct timespec *t0)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static double
request_ms(const struct request *r)
{
	return request_ms_since(&r->t0);
}

/*
 * Audit lines and the upstream head are assembled from short pieces in a
 * jbody_sink (a stack stage, one evbuffer_add per 512 bytes).  Strings put
 * as they are (not quoted) are only our own safe text.
 */

/* Append ,"key":<unsigned> */
static void
put_kv_u64(struct jbody_sink *k, const char *key, unsigned long long v)
{
	jbody_put_str(k, key);
	jbody_put_uint(k, v);
}

/* Append ,"duration_ms":N.NNN (ms with 3 decimals) without printf */
static void
put_duration(struct jbody_sink *k, double ms)
{
	unsigned long long us = ms > 0 ? (unsigned long long)(ms * 1000.0 + 0.5) : 0;
	char frac[4] = { '.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10),
	    (char)('0' + us % 10) };

	put_kv_u64(k, ",\"duration_ms\":", us / 1000);
	jbody_put(k, frac, sizeof(frac));
}

/* The error envelope of the API, for errors made by the proxy itself. */
static struct evbuffer *
request_envelope(int status, const char *name, const char *msg, const char *id)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL)
		return NULL;
	evbuffer_add_printf(b, "{\"success\":false,\"error\":{\"code\":%d,\"name\":\"%s\","
	    "\"message\":", status, name);
	jbody_quote(b, msg, strlen(msg));
	evbuffer_add_printf(b, "},\"requestId\":\"%s\"}", id);
	return b;
}

/*
 * Start an audit line with the fields every record carries: a new evbuffer,
 * with k staging into it.  The caller adds the rest through k (flushing k
 * before it writes to the evbuffer itself) and hands it to audit_line_end.
 */
static struct evbuffer *
audit_line_begin(struct jbody_sink *k, const char *phase, const char *id,
    unsigned long long t_ms, const char *peer, const char *cname, const char *cid,
    const char *method, const char *path, const char *profile)
{
	struct evbuffer	*b = request_buf_get();
	char		 ts[32];

	if (b == NULL)
		return NULL;
	jbody_sink_init(k, b);
	log_time(ts, t_ms);
	JBODY_PUT_LIT(k, "{\"time\":\"");
	jbody_put_str(k, ts);
	JBODY_PUT_LIT(k, "\",\"id\":\"");
	jbody_put_str(k, id);
	JBODY_PUT_LIT(k, "\",\"phase\":\"");
	jbody_put_str(k, phase);
	JBODY_PUT_LIT(k, "\",\"caller\":");
	jbody_sink_quote(k, peer, strlen(peer));
	if (cname != NULL) {
		JBODY_PUT_LIT(k, ",\"caller_name\":\"");
		jbody_put_str(k, cname);
		JBODY_PUT_LIT(k, "\"");
	}
	if (cid != NULL && *cid != '\0') {
		JBODY_PUT_LIT(k, ",\"caller_id\":\"");
		jbody_put_str(k, cid);
		JBODY_PUT_LIT(k, "\"");
	}
	JBODY_PUT_LIT(k, ",\"method\":");
	jbody_sink_quote(k, method, strlen(method));
	JBODY_PUT_LIT(k, ",\"path\":");
	jbody_sink_quote(k, path, strlen(path));
	if (profile != NULL) {
		JBODY_PUT_LIT(k, ",\"profile\":\"");
		jbody_put_str(k, profile);
		JBODY_PUT_LIT(k, "\"");
	} else
		JBODY_PUT_LIT(k, ",\"profile\":null");
	return b;
}

/*
 * Close the line with "}" and queue it (cb as for audit_append); a line that
 * lost bytes to an allocation failure is not queued: cb gets -1, and the
 * return is -1.
 */
static int
audit_line_end(struct jbody_sink *k, struct evbuffer *line, audit_done_fn cb, void *arg)
{
	int	 rc = 0;

	JBODY_PUT_LIT(k, "}");
	if (jbody_sink_flush(k) == 0)
		audit_append(ocp->audit, line, cb, arg);
	else {
		rc = -1;
		if (cb != NULL)
			cb(arg, -1);
	}
	request_buf_put(line);
	return rc;
}

/*
 * An outcome record that could not be built: the answer has gone (or is
 * going) to the caller, so the request's trail lacks its end.  Say so on
 * stderr with the request ID, so the gap can be matched to the request.
 */
static void
audit_line_lost(const char *id)
{
	log_warn("audit: request %s: no outcome record (out of memory)", id);
}

/* One summary line per request on stderr (never bodies). */
static void
request_log(const char *id, const char *peer, const char *method, const char *path,
    const char *profile, int status, int ustatus, double ms, const char *err)
{
	log_info("req=%s caller=%s %.16s %.200s profile=%s status=%d upstream=%d ms=%.1f%s%s",
	    id, peer, method, path, profile ? profile : "-", status, ustatus, ms,
	    err ? " error=" : "", err ? err : "");
}

/* The outcome line and log line of a request that was never forwarded. */
static void
request_audit_unforwarded(struct client *cl, const char *id, const char *method,
    const char *path, size_t bytes_in, size_t bytes_out, int status, const char *name)
{
	struct jbody_sink k;
	struct evbuffer	*line;
	struct timespec	 t0;
	const char	*cname, *cid;
	double		 ms;

	client_caller_info(cl, &cname, &cid);
	client_request_t0(cl, &t0);	/* the start every record's duration counts from */
	ms = request_ms_since(&t0);
	line = audit_line_begin(&k, "outcome", id, log_now_ms(), client_peer(cl), cname, cid,
	    method, path, client_profile(cl));
	if (line != NULL) {
		put_kv_u64(&k, ",\"nonce\":null,\"status\":", (unsigned)status);
		JBODY_PUT_LIT(&k, ",\"upstream_status\":null");
		put_duration(&k, ms);
		put_kv_u64(&k, ",\"bytes_in\":", bytes_in);
		put_kv_u64(&k, ",\"bytes_out\":", bytes_out);
		JBODY_PUT_LIT(&k, ",\"error\":\"");
		jbody_put_str(&k, name);
		JBODY_PUT_LIT(&k, "\"");
	}
	if (line == NULL || audit_line_end(&k, line, NULL, NULL) == -1)
		audit_line_lost(id);
	request_log(id, client_peer(cl), method, path, client_profile(cl), status, 0, ms, name);
}

/* Answer a request refused before it had a request object. */
void
request_reject(struct client *cl, const char *method, const char *path, size_t bytes_in,
    int status, const char *name, const char *msg, int close_after)
{
	struct evbuffer	*env;
	char		 id[REQ_ID_LEN];

	request_client_id(cl, id);
	env = request_envelope(status, name, msg, id);
	request_audit_unforwarded(cl, id, method, path, bytes_in,	/* a HEAD gets no body */
	    client_body_len(cl, status, env ? evbuffer_get_length(env) : 0), status, name);
	client_respond(cl, status, "application/json", env, id, close_after);
	if (env != NULL)
		evbuffer_free(env);
	client_request_done(cl);
}

/* Audit a request whose body never completed: the caller went away or stalled. */
void
request_abandoned(struct client *cl, const char *method, const char *path, size_t bytes_in,
    int status, const char *name)
{
	char	id[REQ_ID_LEN];

	request_client_id(cl, id);
	request_audit_unforwarded(cl, id, method, path, bytes_in, 0, status, name);
}

/* Release a request; the client (if any) was already answered. */
static void
request_free(struct request *r)
{
	TAILQ_REMOVE(&ocp->requests, r, entry);
	ocp->inflight--;
	if (r->waiting_audit)
		audit_forget(ocp->audit, r);
	if (r->xfer != NULL)
		upstream_cancel(r->xfer);
	wipe_free(r->body);	/* a caller's body may hold a password */
	jbody_echo_free(&r->echo);	/* and so do its redacted values */
	if (r->key != NULL)
		pkey_unref(r->key);
	if (r->entered)
		caller_leave(r->caller);
	gen_unref(r->gen);
	if (r->has_sig)
		OPENSSL_cleanse(r->sig, sizeof(r->sig));
	free(r->method);
	free(r->path);
	free(r);
	proxy_maybe_done(ocp);
}

/*
 * The "nonce" of an audit line: the one the upstream got, or null.  A
 * caller's own is marked "nonce_from":"caller" and written as sent (a
 * string as its raw token), unless the operator listed "nonce" in redact:
 * then it gets the redact replacement, like any redacted value of the
 * body (a string's fingerprint is then of its raw text, escapes included).
 */
static void
request_put_nonce(struct jbody_sink *k, const struct request *r)
{
	const unsigned char	*v;
	char			 num[FMT_UINT_MAX], m[REDACT_MASK_MAX];
	size_t			 n;

	if (r->nonce_from == REQ_NONCE_NONE) {
		JBODY_PUT_LIT(k, ",\"nonce\":null");
		return;
	}
	if (r->nonce_from == REQ_NONCE_OURS) {
		put_kv_u64(k, ",\"nonce\":", r->nonce);
		return;
	}
	if (r->nonce_from == REQ_NONCE_CALLER) {
		n = fmt_uint(num, r->nonce, 10, 0);
		v = (const unsigned char *)num;
	} else {	/* the body is unchanged and contiguous since request_prepare */
		v = evbuffer_pullup(r->body, -1) + r->jb.nonce_at;
		n = r->jb.nonce_len;
	}
	JBODY_PUT_LIT(k, ",\"nonce\":");
	if (redact_set_has(r->gen->redact, (const unsigned char *)"nonce", 5)) {
		if (r->nonce_from == REQ_NONCE_CALLER_STR) {	/* without the quotes */
			v++;
			n -= 2;
		}
		n = redact_set_mask(r->gen->redact, v, n, m);
		JBODY_PUT_LIT(k, "\"");
		jbody_put(k, m, n);
		JBODY_PUT_LIT(k, "\"");
	} else
		jbody_put(k, v, n);
	JBODY_PUT_LIT(k, ",\"nonce_from\":\"caller\"");
}

/*
 * Mask this request's signature wherever the redacted answer still holds it:
 * the API's test-signature endpoint echoes it, under "signature" (in the
 * default redact list, but an operator may shorten the list) or inside other
 * text.  The audit trail must never hold a signature (SPEC).  '*'s keep the
 * JSON valid and the line's length.  Returns the number of copies masked.
 */
static size_t
request_mask_sig(struct evbuffer *b, const char *sig)
{
	struct evbuffer_iovec	 v[8];
	struct evbuffer_ptr	 at;
	unsigned char		*p, *end;
	size_t			 hits = 0, left, m;
	int			 i, n;

	if (evbuffer_peek(b, -1, NULL, v, 1) == 1) {	/* one chain: the usual case */
		p = v[0].iov_base;
		end = p + v[0].iov_len;
		while ((size_t)(end - p) >= SIGNER_HEX_LEN &&
		    (p = memmem(p, (size_t)(end - p), sig, SIGNER_HEX_LEN)) != NULL) {
			memset(p, '*', SIGNER_HEX_LEN);
			p += SIGNER_HEX_LEN;
			hits++;
		}
		return hits;
	}
	at = evbuffer_search(b, sig, SIGNER_HEX_LEN, NULL);
	while (at.pos != -1) {	/* a copy may span chains */
		n = evbuffer_peek(b, SIGNER_HEX_LEN, &at, v, 8);
		for (i = 0, left = SIGNER_HEX_LEN; i < n && i < 8 && left > 0; i++) {
			m = v[i].iov_len < left ? v[i].iov_len : left;
			memset(v[i].iov_base, '*', m);
			left -= m;
		}
		hits++;
		at = evbuffer_search(b, sig, SIGNER_HEX_LEN, &at);
	}
	return hits;
}

/*
 * The outcome record: status, duration, sizes, the redacted answer.  An
 * answer may echo the request (test-signature's receivedBody): strings that
 * hold a value redacted from the request are hidden too (jbody_scan_echo);
 * if there were too many such values to keep, the answer is logged like a
 * non-JSON one, by size and SHA-256.
 */
static void
request_audit_outcome(struct request *r, int status, int ustatus, const char *err,
    struct evbuffer *resp, size_t bytes_out, double ms)
{
	const struct conf *c = r->gen->conf;
	struct jbody_sink k;
	struct evbuffer	*line, *red = NULL;
	struct jbody	 jb;
	const char	*why;
	unsigned char	 md[32];
	char		 hex[65];
	size_t		 len = resp ? evbuffer_get_length(resp) : 0;
	char		*p;

	line = audit_line_begin(&k, "outcome", r->id, log_now_ms(), r->peer,
	    r->caller ? caller_name(r->caller) : NULL, r->caller_id, r->method, r->path,
	    c->profiles[r->profile].name);
	if (line == NULL) {
		audit_line_lost(r->id);
		return;
	}
	request_put_nonce(&k, r);
	put_kv_u64(&k, ",\"status\":", (unsigned)status);
	JBODY_PUT_LIT(&k, ",\"upstream_status\":");
	if (ustatus > 0)
		jbody_put_uint(&k, (unsigned)ustatus);
	else
		JBODY_PUT_LIT(&k, "null");
	put_duration(&k, ms);
	put_kv_u64(&k, ",\"bytes_in\":", r->bytes_in);
	put_kv_u64(&k, ",\"bytes_out\":", bytes_out);
	JBODY_PUT_LIT(&k, ",\"error\":");
	if (err != NULL) {
		JBODY_PUT_LIT(&k, "\"");
		jbody_put_str(&k, err);
		JBODY_PUT_LIT(&k, "\"");
	} else
		JBODY_PUT_LIT(&k, "null");
	if (c->audit_bodies == BODIES_REDACTED && resp != NULL) {
		p = (char *)wipe_pullup(resp);	/* answers hold passwords: no uncleared copy */
		if (len > 0 && p == NULL)
			put_kv_u64(&k, ",\"response_bytes\":", len);	/* no memory */
		else if (len > 0 && !r->echo.incomplete && (red = request_buf_get()) != NULL &&
		    jbody_scan_echo(p, len, 0, c->max_json_depth, r->gen->redact, red, &jb, &why,
		    r->echo.n > 0 ? &r->echo : NULL) == 0) {
			if (r->has_sig && request_mask_sig(red, r->sig) > 0)
				log_warn("%s: the answer holds this request's signature; masked "
				    "in the audit record", r->id);
			JBODY_PUT_LIT(&k, ",\"response\":");
			jbody_sink_flush(&k);	/* line's own bytes come before red's */
			evbuffer_add_buffer(line, red);
		} else {
			if (len > 0 && r->echo.incomplete)
				log_warn("%s: more values redacted from the request than can be "
				    "looked for in the answer; it is logged by size and SHA-256",
				    r->id);
			EVP_Digest(p, len, md, NULL, EVP_sha256(), NULL);
			signer_hex(md, sizeof(md), hex);
			put_kv_u64(&k, ",\"response_bytes\":", len);
			JBODY_PUT_LIT(&k, ",\"response_sha256\":\"");
			jbody_put_str(&k, hex);
			JBODY_PUT_LIT(&k, "\"");
		}
		request_buf_put(red);
	}
	if (audit_line_end(&k, line, NULL, NULL) == -1)
		audit_line_lost(r->id);
}

/* Answer the caller (if still connected), audit the outcome, free. */
static void
request_finish(struct request *r, int status, int ustatus, const char *ctype,
    struct evbuffer *body, const char *err)
{
	double	 ms = request_ms(r);
	size_t	 out = body ? evbuffer_get_length(body) : 0;

	request_audit_outcome(r, status, ustatus, err, err == NULL || ustatus > 0 ? body : NULL,
	    out, ms);
	request_log(r->id, r->peer, r->method, r->path, r->gen->conf->profiles[r->profile].name,
	    status, ustatus, ms, err);
	if (r->cl != NULL) {
		client_respond(r->cl, status, ctype, body, r->id, 0);
		client_request_done(r->cl);
		r->cl = NULL;
	}
	request_free(r);
}

/* Finish with an error envelope made by the proxy. */
static void
request_fail(struct request *r, int status, const char *name, const char *msg)
{
	struct evbuffer	*env = request_envelope(status, name, msg, r->id);

	request_finish(r, status, 0, "application/json", env, name);
	if (env != NULL)
		evbuffer_free(env);
}

/* The upstream answered, failed or timed out. */
static void
request_upstream_done(void *arg, struct up_result *res)
{
	struct request	*r = arg;

	r->xfer = NULL;
	switch (res->err) {
	case UP_OK:
		request_finish(r, res->status, res->status, res->content_type, res->body, NULL);
		return;
	case UP_TIMEOUT:
		request_fail(r, 504, "PROXY_UPSTREAM_TIMEOUT", res->why);
		return;
	case UP_CONNECT:
		request_fail(r, 502, "PROXY_UPSTREAM_CONNECT_FAILED", res->why);
		return;
	case UP_TLS:
		request_fail(r, 502, "PROXY_UPSTREAM_TLS_FAILED", res->why);
		return;
	case UP_PROTOCOL:
		request_fail(r, 502, "PROXY_UPSTREAM_BAD_RESPONSE", res->why);
		return;
	}
}

/* Sign the exact bytes and hand them to the upstream pool. */
static void
request_forward(struct request *r)
{
	const struct conf *c = r->gen->conf;
	struct jbody_sink k;
	struct iovec	 iov[4];	/* the head, then the body in 1 or 3 pieces */
	char		*p = (char *)wipe_pullup(r->body);	/* one chain already */
	size_t		 len = evbuffer_get_length(r->body), cut;
	char		 sig[SIGNER_HEX_LEN + 1];
	int		 n;

	if (r->member_len > 0) {
		cut = r->jb.open + 1;
		iov[1] = (struct iovec){ p, cut };
		iov[2] = (struct iovec){ r->member, r->member_len };
		iov[3] = (struct iovec){ p + cut, len - cut };
		n = 3;
	} else {
		iov[1] = (struct iovec){ p, len };
		n = 1;
	}
	if (signer_sign(r->key->signer, iov + 1, n, sig) == -1) {
		request_fail(r, 503, "PROXY_KEY_UNAVAILABLE", "signing failed");
		return;
	}
	/* pieces with their lengths, staged on the stack (the heap past 512 bytes) */
	jbody_sink_init(&k, NULL);
	JBODY_PUT_LIT(&k, "POST ");
	jbody_put_str(&k, r->path);
	JBODY_PUT_LIT(&k, " HTTP/1.1\r\nHost: ");
	if (strchr(c->up_host, ':') != NULL) {
		JBODY_PUT_LIT(&k, "[");
		jbody_put_str(&k, c->up_host);
		JBODY_PUT_LIT(&k, "]");
	} else
		jbody_put_str(&k, c->up_host);
	if (strcmp(c->up_port, "443") != 0) {
		JBODY_PUT_LIT(&k, ":");
		jbody_put_str(&k, c->up_port);
	}
	put_kv_u64(&k, "\r\nContent-Type: application/json\r\nContent-Length: ",
	    len + r->member_len);
	JBODY_PUT_LIT(&k, "\r\nAccept: application/json\r\nUser-Agent: ocp-proxy/" OCP_VERSION
	    "\r\nx-api-public-key: ");
	jbody_put_str(&k, r->key->public_key);
	JBODY_PUT_LIT(&k, "\r\nx-api-signature: ");
	jbody_put(&k, sig, SIGNER_HEX_LEN);
	JBODY_PUT_LIT(&k, "\r\n\r\n");
	if (r->gen->conf->audit_bodies == BODIES_REDACTED) {	/* for request_mask_sig */
		memcpy(r->sig, sig, sizeof(r->sig));
		r->has_sig = 1;
	}
	OPENSSL_cleanse(sig, sizeof(sig));
	iov[0] = (struct iovec){ k.p, k.n };
	r->xfer = k.failed ? NULL :
	    upstream_send(r->gen->up, iov, n + 1, request_upstream_done, r);
	jbody_sink_wipe(&k);	/* the head holds the signature */
	if (r->xfer == NULL)
		request_fail(r, 502, "PROXY_UPSTREAM_CONNECT_FAILED", "out of memory");
}

/* The write-ahead record is durable (ok == 0) or could not be written. */
static void
request_audited(void *arg, int ok)
{
	struct request	*r = arg;

	r->waiting_audit = 0;
	if (ok != 0) {
		request_fail(r, 503, "PROXY_AUDIT_UNAVAILABLE",
		    "the audit trail cannot be written; nothing was sent");
		return;
	}
	if (r->cl == NULL) {
		request_fail(r, 499, "PROXY_CLIENT_CLOSED",
		    "the caller went away before forwarding; nothing was sent");
		return;
	}
	request_forward(r);
}

/* The write-ahead record: who, what, which key and nonce, the redacted body. */
static void
request_audit_ahead(struct request *r, struct evbuffer *redacted)
{
	const struct conf *c = r->gen->conf;
	struct jbody_sink k;
	struct evbuffer	*line;

	line = audit_line_begin(&k, "request", r->id, r->t0_ms, r->peer,
	    r->caller ? caller_name(r->caller) : NULL, r->caller_id, r->method, r->path,
	    c->profiles[r->profile].name);
	if (line == NULL) {	/* out of memory: no write-ahead record, no forwarding */
		request_audited(r, -1);
		return;
	}
	JBODY_PUT_LIT(&k, ",\"key\":\"");
	jbody_put_str(&k, r->key->fp);
	JBODY_PUT_LIT(&k, "\"");
	request_put_nonce(&k, r);
	put_kv_u64(&k, ",\"bytes_in\":", r->bytes_in);
	if (redacted != NULL) {
		JBODY_PUT_LIT(&k, ",\"request\":");
		jbody_sink_flush(&k);	/* line's own bytes come before redacted's */
		evbuffer_add_buffer(line, redacted);
	}
	r->waiting_audit = 1;
	audit_line_end(&k, line, request_audited, r);
}

/* The caller's field limits on the exact body that will be signed: 403. */
static int
request_check_fields(struct request *r, const char *body, size_t len)
{
	const char	*rule = NULL;
	char		*detail = NULL, msg[256];

	if (policy_check_fields(r->caller, r->path, body, len, &rule, &detail) == 0)
		return 0;
	snprintf(msg, sizeof(msg), "caller %s: %s%s%s", caller_name(r->caller), rule,
	    detail ? ": " : "", detail ? detail : "");
	free(detail);
	request_fail(r, 403, "PROXY_FORBIDDEN", msg);
	return -1;
}

/* The caller's token bucket, once the request passed every other check: 429. */
static int
request_take_rate(struct request *r)
{
	struct timespec	ts;
	unsigned	retry = 0;
	char		msg[128];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (caller_rate_take(r->caller, (unsigned long long)ts.tv_sec * 1000 +
	    (unsigned long long)ts.tv_nsec / 1000000, &retry) == 0)
		return 0;
	snprintf(msg, sizeof(msg), "caller %s: rate_per_s exceeded", caller_name(r->caller));
	if (r->cl != NULL)
		client_set_retry_after(r->cl, retry);
	request_fail(r, 429, "PROXY_RATE_LIMITED", msg);
	return -1;
}

/*
 * A caller's own top-level nonce goes upstream as sent, so it must be one
 * this profile's counter can account for: a JSON integer (digits only) that
 * fits in 64 bits and is at most a day ahead of the clock in ms (it raises
 * the counter), or a string.  A string of digits only, as sent, is held to
 * the integer's rules and counted like one: an API may read it as that
 * number.  Other strings (a UUID) have no order to keep.  Anything else
 * (1.5, 17e11, -1, true, a second nonce member) the API may read as a
 * number the counter never saw: 400.
 */
static int
request_check_nonce(struct request *r, const char *body)
{
	int	kind = r->jb.nonce_kind;

	if (kind == JBODY_NONCE_STRING &&
	    (kind = jbody_nonce_digits(body + r->jb.nonce_at, r->jb.nonce_len,
	    &r->jb.nonce_num)) == JBODY_NONCE_INT)
		r->nonce_digits = 1;
	switch (kind) {
	case JBODY_NONCE_STRING:
		return 0;
	case JBODY_NONCE_INT:
		if (r->jb.nonce_num <= log_now_ms() + REQ_NONCE_AHEAD_MS)
			return 0;
		/* FALLTHROUGH */
	case JBODY_NONCE_BIG:
		/* it would push this profile's nonces (here and upstream) out of reach */
		request_fail(r, 400, "PROXY_NONCE_TOO_LARGE",
		    "a caller-chosen nonce may be at most one day ahead of the clock in ms");
		return -1;
	case JBODY_NONCE_DUP:
		request_fail(r, 400, "PROXY_NONCE_INVALID",
		    "the body has more than one top-level nonce member");
		return -1;
	default:
		request_fail(r, 400, "PROXY_NONCE_INVALID", "a caller-chosen nonce must be a "
		    "JSON integer (digits only) or a string; leave it out to get one inserted");
		return -1;
	}
}

/* The nonce state could not be written (cause malloc'd or NULL): 503, returns -1. */
static int
request_nonce_unavailable(struct request *r, char *cause)
{
	log_err("profile %s: %s", r->gen->conf->profiles[r->profile].name,
	    cause ? cause : "cannot reserve nonces");
	free(cause);
	request_fail(r, 503, "PROXY_NONCE_UNAVAILABLE",
	    "nonce state cannot be written; nothing was sent");
	return -1;
}

/* Checks that need the body; returns 0 when the request may go on. */
static int
request_prepare(struct request *r, struct evbuffer *redacted)
{
	const struct conf *c = r->gen->conf;
	const char	*why = NULL;
	char		*p, *cause = NULL;
	size_t		 len;

	if (evbuffer_get_length(r->body) == 0)
		evbuffer_add(r->body, "{}", 2);		/* an empty body counts as {} */
	len = evbuffer_get_length(r->body);
	if ((p = (char *)wipe_pullup(r->body)) == NULL) {
		request_fail(r, 503, "PROXY_OVERLOADED", "out of memory");
		return -1;
	}
	if (jbody_scan_echo(p, len, JBODY_OBJECT | JBODY_NOTE, c->max_json_depth, r->gen->redact,
	    redacted, &r->jb, &why, &r->echo) == -1) {
		request_fail(r, 400, "PROXY_INVALID_JSON", why ? why : "the body is not one JSON object");
		return -1;
	}
	if (r->jb.has_nonce && request_check_nonce(r, p) == -1)
		return -1;
	if (r->caller != NULL && (request_check_fields(r, p, len) == -1 ||
	    request_take_rate(r) == -1))
		return -1;
	if ((r->key = keys_acquire(r->gen->slots[r->profile], &why)) == NULL) {
		request_fail(r, 503, "PROXY_KEY_UNAVAILABLE", why);
		return -1;
	}
	if (r->jb.nonce_kind == JBODY_NONCE_INT || r->nonce_digits) {
		/* raise the counter, so that later inserted nonces stay above the caller's */
		if (nonce_observe(r->gen->nonces[r->profile], r->jb.nonce_num, &cause) == -1)
			return request_nonce_unavailable(r, cause);
		r->nonce = r->jb.nonce_num;
		r->nonce_from = r->nonce_digits ? REQ_NONCE_CALLER_STR : REQ_NONCE_CALLER;
	} else if (r->jb.nonce_kind == JBODY_NONCE_STRING)
		r->nonce_from = REQ_NONCE_CALLER_STR;	/* no order to keep: nothing to count */
	else {
		if (nonce_next(r->gen->nonces[r->profile], log_now_ms(), &r->nonce, &cause) == -1)
			return request_nonce_unavailable(r, cause);
		r->nonce_from = REQ_NONCE_OURS;
		r->member_len = jbody_nonce_member(r->member, sizeof(r->member), r->nonce,
		    r->jb.empty);
	}
	return 0;
}

/* A complete request from a caller. */
void
request_start(struct client *cl, char *method, char *path,
    struct evbuffer *body, int body_ok)
{
	struct request	*r;
	struct evbuffer	*redacted = NULL;
	const struct conf_profile *pr;
	const char	*cid;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		size_t len = evbuffer_get_length(body);

		wipe_free(body);	/* a caller's body may hold a password */
		request_reject(cl, method, path, len, 503, "PROXY_OVERLOADED", "out of memory", 1);
		free(method);
		free(path);
		return;
	}
	r->method = method;
	r->path = path;
	TAILQ_INSERT_TAIL(&ocp->requests, r, entry);
	ocp->inflight++;
	r->cl = cl;
	client_set_request(cl, r);
	fmt_copy(r->peer, sizeof(r->peer), client_peer(cl));
	r->gen = client_take(cl, &r->caller, &r->entered, &cid);
	fmt_copy(r->caller_id, sizeof(r->caller_id), cid);
	r->body = body;
	r->bytes_in = evbuffer_get_length(body);
	r->t0_ms = log_now_ms();
	client_request_t0(cl, &r->t0);	/* duration_ms counts from the first byte */
	request_client_id(cl, r->id);
	pr = conf_route(r->gen->conf, path, strlen(path), &r->profile);
	if (pr == NULL) {	/* a reload removed the route meanwhile */
		r->profile = 0;
		request_fail(r, 404, "PROXY_NO_ROUTE", "no profile serves this path");
		return;
	}
	/* no copy, nothing noted: an answer that echoes the request is logged by hash */
	if (r->gen->conf->audit_bodies == BODIES_REDACTED &&
	    (redacted = request_buf_get()) == NULL)
		r->echo.incomplete = 1;
	if (request_prepare(r, redacted) == 0)
		request_audit_ahead(r, redacted);
	request_buf_put(redacted);
}

/* The caller's connection closed: finish without it. */
void
request_client_gone(struct request *r)
{
	r->cl = NULL;
}

/* Shutdown deadline: cut every request still running. */
void
request_cut_all(struct proxy *px)
{
	struct request	*r;

	while ((r = TAILQ_FIRST(&px->requests)) != NULL) {
		px->cut++;
		if (r->xfer != NULL) {
			upstream_cancel(r->xfer);
			r->xfer = NULL;
		}
		request_fail(r, 503, "PROXY_SHUTTING_DOWN",
		    "the proxy stopped before the upstream answered");
	}
}
