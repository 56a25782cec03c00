/*
 * vsim-control.c — the /__vault/ control plane of ocp-vault-sim (no
 * authentication, unaffected by seal and outages), its counters, and the
 * JSON helpers shared with vsim-api.c.
 *
 *   POST /__vault/kv            {"mount","path","data":{...}}  -> {"version":N}
 *   POST /__vault/kv-delete     {"mount","path"}               -> {"deleted":B}
 *   POST /__vault/seal, /__vault/unseal                        -> {"sealed":B}
 *   POST /__vault/down          {"ms":N[,"mode":"close"|"hang"]} close (or hold
 *                               and then close) every API request for N ms
 *   POST /__vault/up            end an outage now
 *   POST /__vault/expire-tokens                                -> {"expired":N}
 *   POST /__vault/token         {["ttl_ms":N][,"renewable":B][,"id":S]}
 *                               -> {"token":S,"lease_duration":N}
 *   POST /__vault/config        {["token_ttl_ms"],["token_max_ttl_ms"],
 *                               ["no_renew"],["role_id"],["secret_id"]}
 *   POST /__vault/deny          {"mount","path"[,"deny":B]}  reads answer 403
 *   GET  /__vault/stats         counters (never a secret)
 *   POST /__vault/reset-stats
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <yajl/yajl_gen.h>

#include "vsim.h"

/* ------------------------------------------------------------ JSON helpers */

void
vsim_reply(struct evhttp_request *req, int status, struct evbuffer *body)
{
	const char	*reason;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control",
	    "no-store");
	switch (status) {
	case 200: reason = "OK"; break;
	case 204: reason = "No Content"; break;
	case 400: reason = "Bad Request"; break;
	case 403: reason = "Forbidden"; break;
	case 404: reason = "Not Found"; break;
	case 405: reason = "Method Not Allowed"; break;
	case 503: reason = "Service Unavailable"; break;
	default: reason = "Error"; break;
	}
	evhttp_send_reply(req, status, reason, body);
}

/* {"errors":[msg]} or {"errors":[]}. */
void
vsim_error(struct evhttp_request *req, int status, const char *msg)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "{\"errors\":[");
	if (msg != NULL)
		vsim_json_str(b, msg);
	evbuffer_add_printf(b, "]}");
	vsim_reply(req, status, b);
	evbuffer_free(b);
}

void
vsim_json_str(struct evbuffer *b, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;

	evbuffer_add(b, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			evbuffer_add_printf(b, "\\u%04x", *p);
		else
			evbuffer_add(b, p, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* A quoted RFC 3339 UTC time. */
void
vsim_time(struct evbuffer *b, int64_t wall_ms)
{
	time_t		t = (time_t)(wall_ms / 1000);
	struct tm	tm;
	char		buf[40];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	evbuffer_add_printf(b, "\"%s.%03dZ\"", buf, (int)(wall_ms % 1000));
}

static int
gen_value(yajl_gen g, yajl_val v)
{
	size_t	i;

	if (YAJL_IS_STRING(v))
		return yajl_gen_string(g, (const unsigned char *)v->u.string,
		    strlen(v->u.string));
	if (YAJL_IS_NUMBER(v))
		return yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
	if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
		return yajl_gen_bool(g, YAJL_IS_TRUE(v));
	if (YAJL_IS_NULL(v))
		return yajl_gen_null(g);
	if (YAJL_IS_OBJECT(v)) {
		yajl_gen_map_open(g);
		for (i = 0; i < v->u.object.len; i++) {
			yajl_gen_string(g, (const unsigned char *)v->u.object.keys[i],
			    strlen(v->u.object.keys[i]));
			if (gen_value(g, v->u.object.values[i]) != yajl_gen_status_ok)
				return -1;
		}
		return yajl_gen_map_close(g);
	}
	if (YAJL_IS_ARRAY(v)) {
		yajl_gen_array_open(g);
		for (i = 0; i < v->u.array.len; i++)
			if (gen_value(g, v->u.array.values[i]) != yajl_gen_status_ok)
				return -1;
		return yajl_gen_array_close(g);
	}
	return -1;
}

/* Compact JSON text of v (malloc'd), NULL on failure. */
char *
vsim_json_gen(const yajl_val v)
{
	yajl_gen		 g;
	const unsigned char	*buf;
	size_t			 len;
	char			*out = NULL;

	if ((g = yajl_gen_alloc(NULL)) == NULL)
		return NULL;
	if (gen_value(g, v) == yajl_gen_status_ok &&
	    yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok &&
	    (out = malloc(len + 1)) != NULL) {
		memcpy(out, buf, len);
		out[len] = '\0';
	}
	yajl_gen_free(g);
	return out;
}

/* The request body parsed as JSON (NULL if empty, too big or invalid). */
yajl_val
vsim_body_json(struct evhttp_request *req, char *err, size_t errlen)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	size_t		 len = evbuffer_get_length(in);
	char		*text;
	yajl_val	 v;

	if (len == 0 || len > VSIM_MAX_BODY || (text = malloc(len + 1)) == NULL)
		return NULL;
	evbuffer_copyout(in, text, len);
	text[len] = '\0';
	v = strlen(text) == len ? yajl_tree_parse(text, err, errlen) : NULL;
	OPENSSL_clear_free(text, len + 1);
	return v;
}

void
vsim_count(struct vsim_count **head, const char *key)
{
	struct vsim_count	*c;

	for (c = *head; c != NULL; c = c->next)
		if (strcmp(c->key, key) == 0) {
			c->n++;
			return;
		}
	if ((c = calloc(1, sizeof(*c))) == NULL || (c->key = strdup(key)) == NULL) {
		free(c);
		return;
	}
	c->n = 1;
	c->next = *head;
	*head = c;
}

void
vsim_counts_free(struct vsim_count **head)
{
	struct vsim_count	*c;

	while ((c = *head) != NULL) {
		*head = c->next;
		free(c->key);
		free(c);
	}
}

/* 1 if reads of key ("mount/path") are denied by policy. */
int
vsim_denied(struct vsim *vs, const char *key)
{
	struct vsim_count	*c;

	for (c = vs->denied_paths; c != NULL; c = c->next)
		if (strcmp(c->key, key) == 0)
			return 1;
	return 0;
}

/* ------------------------------------------------------------ control */

static const char *
obj_str(yajl_val o, const char *key)
{
	const char	*path[] = { key, NULL };
	yajl_val	 v = yajl_tree_get(o, path, yajl_t_string);

	return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

/* An integer member >= 0, or dflt when absent; -2 when present but invalid. */
static long long
obj_int(yajl_val o, const char *key, long long dflt)
{
	const char	*path[] = { key, NULL };
	yajl_val	 v = yajl_tree_get(o, path, yajl_t_any);

	if (v == NULL)
		return dflt;
	if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0)
		return -2;
	return YAJL_GET_INTEGER(v);
}

/* A boolean member, or dflt when absent. */
static int
obj_bool(yajl_val o, const char *key, int dflt)
{
	const char	*path[] = { key, NULL };
	yajl_val	 v = yajl_tree_get(o, path, yajl_t_any);

	if (v == NULL || !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
		return dflt;
	return YAJL_IS_TRUE(v);
}

static void
reply_printf(struct evhttp_request *, const char *, ...) __attribute__((format(printf, 2, 3)));

static void
reply_printf(struct evhttp_request *req, const char *fmt, ...)
{
	struct evbuffer	*b = evbuffer_new();
	va_list		 ap;

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	va_start(ap, fmt);
	evbuffer_add_vprintf(b, fmt, ap);
	va_end(ap);
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

static void
ctl_kv(struct vsim *vs, struct evhttp_request *req, yajl_val body, int del)
{
	const char		*dp[] = { "data", NULL };
	const char		*mount = obj_str(body, "mount"), *path = obj_str(body, "path");
	yajl_val		 data = yajl_tree_get(body, dp, yajl_t_object);
	unsigned long long	 version;

	if (mount == NULL || path == NULL || *mount == '\0' || *path == '\0' ||
	    strchr(mount, '/') != NULL) {
		vsim_error(req, 400, "want mount (one segment) and path");
		return;
	}
	if (del) {
		reply_printf(req, "{\"deleted\":%s}",
		    vsim_kv_delete(vs, mount, path) == 0 ? "true" : "false");
		return;
	}
	if (data == NULL || vsim_kv_write(vs, mount, path, data, &version) == -1) {
		vsim_error(req, 400, "want data (an object)");
		return;
	}
	vs->st.writes--;	/* count API writes only */
	reply_printf(req, "{\"version\":%llu}", version);
}

static void
ctl_down(struct vsim *vs, struct evhttp_request *req, yajl_val body)
{
	long long	 ms = obj_int(body, "ms", -2);
	const char	*mode = obj_str(body, "mode");

	if (ms < 0 || ms > 3600000 || (mode != NULL && strcmp(mode, "close") != 0 &&
	    strcmp(mode, "hang") != 0)) {
		vsim_error(req, 400, "want ms (0..3600000) and mode close|hang");
		return;
	}
	vsim_down(vs, ms, mode != NULL && strcmp(mode, "hang") == 0);
	reply_printf(req, "{\"down_ms\":%lld}", ms);
}

static void
ctl_token(struct vsim *vs, struct evhttp_request *req, yajl_val body)
{
	long long		 ttl = obj_int(body, "ttl_ms", vs->token_ttl_ms);
	const char		*id = obj_str(body, "id");
	struct vsim_token	*t;
	struct evbuffer		*b;

	if (ttl < 0 || (t = vsim_token_issue(vs, "control", id, ttl,
	    obj_bool(body, "renewable", 1))) == NULL || (b = evbuffer_new()) == NULL) {
		vsim_error(req, 400, "want ttl_ms >= 0, renewable, id (1..64 bytes)");
		return;
	}
	evbuffer_add_printf(b, "{\"token\":");
	vsim_json_str(b, t->id);
	evbuffer_add_printf(b, ",\"lease_duration\":%lld}", (long long)(t->ttl_ms / 1000));
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

static void
ctl_config(struct vsim *vs, struct evhttp_request *req, yajl_val body)
{
	long long	 ttl = obj_int(body, "token_ttl_ms", vs->token_ttl_ms);
	long long	 max = obj_int(body, "token_max_ttl_ms", vs->token_max_ttl_ms);
	const char	*rid = obj_str(body, "role_id"), *sid = obj_str(body, "secret_id");

	if (ttl < 0 || max < 0) {
		vsim_error(req, 400, "want token_ttl_ms, token_max_ttl_ms >= 0");
		return;
	}
	vs->token_ttl_ms = ttl;
	vs->token_max_ttl_ms = max;
	vs->no_renew = obj_bool(body, "no_renew", vs->no_renew);
	if (rid != NULL) {
		free(vs->role_id);
		vs->role_id = strdup(rid);
	}
	if (sid != NULL) {
		if (vs->secret_id != NULL)
			OPENSSL_clear_free(vs->secret_id, strlen(vs->secret_id));
		vs->secret_id = strdup(sid);
	}
	reply_printf(req, "{\"token_ttl_ms\":%lld,\"token_max_ttl_ms\":%lld,"
	    "\"no_renew\":%s}", ttl, max, vs->no_renew ? "true" : "false");
}

static void
ctl_deny(struct vsim *vs, struct evhttp_request *req, yajl_val body)
{
	const char		*mount = obj_str(body, "mount"), *path = obj_str(body, "path");
	struct vsim_count	**pp, *c;
	char			 key[2048];

	if (mount == NULL || path == NULL) {
		vsim_error(req, 400, "want mount and path");
		return;
	}
	snprintf(key, sizeof(key), "%s/%s", mount, path);
	if (obj_bool(body, "deny", 1)) {
		if (!vsim_denied(vs, key))
			vsim_count(&vs->denied_paths, key);
	} else
		for (pp = &vs->denied_paths; (c = *pp) != NULL; pp = &c->next)
			if (strcmp(c->key, key) == 0) {
				*pp = c->next;
				free(c->key);
				free(c);
				break;
			}
	reply_printf(req, "{\"denied\":%s}", vsim_denied(vs, key) ? "true" : "false");
}

static void
ctl_stats(struct vsim *vs, struct evhttp_request *req)
{
	struct vsim_stats	*st = &vs->st;
	struct vsim_count	*c;
	struct evbuffer		*b = evbuffer_new();

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "{\"requests\":%llu,\"connections\":%llu,\"logins\":%llu,"
	    "\"login_failures\":%llu,\"lookups\":%llu,\"renewals\":%llu,"
	    "\"renew_refused\":%llu,\"reads\":%llu,\"read_not_found\":%llu,"
	    "\"writes\":%llu,\"denied\":%llu,\"sealed_refusals\":%llu,\"dropped\":%llu,"
	    "\"namespace_rejects\":%llu,\"tokens_issued\":%llu,\"sealed\":%s,"
	    "\"down\":%s,\"reads_by_path\":{",
	    (unsigned long long)st->requests, (unsigned long long)st->connections,
	    (unsigned long long)st->logins, (unsigned long long)st->login_failures,
	    (unsigned long long)st->lookups, (unsigned long long)st->renewals,
	    (unsigned long long)st->renew_refused, (unsigned long long)st->reads,
	    (unsigned long long)st->read_not_found, (unsigned long long)st->writes,
	    (unsigned long long)st->denied, (unsigned long long)st->sealed,
	    (unsigned long long)st->dropped, (unsigned long long)st->namespace_rejects,
	    (unsigned long long)st->tokens_issued, vs->sealed ? "true" : "false",
	    vs->down_until != 0 && vsim_now_ms() < vs->down_until ? "true" : "false");
	for (c = st->reads_by_path; c != NULL; c = c->next) {
		vsim_json_str(b, c->key);
		evbuffer_add_printf(b, ":%llu%s", (unsigned long long)c->n, c->next ? "," : "");
	}
	evbuffer_add_printf(b, "}}");
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

static void
ctl_reset_stats(struct vsim *vs)
{
	uint64_t	conns = vs->st.connections;

	vsim_counts_free(&vs->st.reads_by_path);
	memset(&vs->st, 0, sizeof(vs->st));
	vs->st.connections = conns;
}

/* POST handlers that take a JSON body ({} when empty). */
static void
ctl_post(struct vsim *vs, struct evhttp_request *req, const char *what, yajl_val body)
{
	if (strcmp(what, "kv") == 0)
		ctl_kv(vs, req, body, 0);
	else if (strcmp(what, "kv-delete") == 0)
		ctl_kv(vs, req, body, 1);
	else if (strcmp(what, "seal") == 0 || strcmp(what, "unseal") == 0) {
		vs->sealed = what[0] == 's';
		reply_printf(req, "{\"sealed\":%s}", vs->sealed ? "true" : "false");
	} else if (strcmp(what, "down") == 0)
		ctl_down(vs, req, body);
	else if (strcmp(what, "up") == 0) {
		vsim_down(vs, 0, 0);
		reply_printf(req, "{\"down_ms\":0}");
	} else if (strcmp(what, "expire-tokens") == 0)
		reply_printf(req, "{\"expired\":%u}", vsim_tokens_expire(vs));
	else if (strcmp(what, "token") == 0)
		ctl_token(vs, req, body);
	else if (strcmp(what, "config") == 0)
		ctl_config(vs, req, body);
	else if (strcmp(what, "deny") == 0)
		ctl_deny(vs, req, body);
	else if (strcmp(what, "reset-stats") == 0) {
		ctl_reset_stats(vs);
		reply_printf(req, "{}");
	} else
		vsim_error(req, 404, "no such control");
}

/* Everything under /__vault/. */
void
vsim_control(struct vsim *vs, struct evhttp_request *req, const char *path)
{
	const char	*what = path + 9;
	yajl_val	 body = NULL;
	char		 err[128];

	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
		if (strcmp(what, "stats") == 0)
			ctl_stats(vs, req);
		else
			vsim_error(req, 404, "no such control");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		vsim_error(req, 405, NULL);
		return;
	}
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0 &&
	    ((body = vsim_body_json(req, err, sizeof(err))) == NULL || !YAJL_IS_OBJECT(body))) {
		yajl_tree_free(body);
		vsim_error(req, 400, "body must be a JSON object");
		return;
	}
	if (body == NULL) {
		char empty[] = "{}";
		body = yajl_tree_parse(empty, err, sizeof(err));
	}
	ctl_post(vs, req, what, body);
	yajl_tree_free(body);
}
