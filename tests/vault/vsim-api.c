/*
 * vsim-api.c — the Vault HTTP API of ocp-vault-sim: AppRole login, token
 * lookup-self and renew-self, KV v2 read and write, sys/health.
 *
 * Answers follow Vault's shapes: errors as {"errors":[...]}, 403 "permission
 * denied" for a missing, unknown, expired or out-of-namespace token, 404 with
 * {"errors":[]} for a missing secret, 503 "Vault is sealed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "vsim.h"

/* n random bytes as lowercase hex into out[2n+1]. */
static void
vsim_hex_rand(char *out, size_t n)
{
	static const char	hex[] = "0123456789abcdef";
	unsigned char		b[32];
	size_t			i;

	if (n > sizeof(b))
		n = sizeof(b);
	if (RAND_bytes(b, (int)n) != 1)
		abort();
	for (i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* A request id in UUID form. */
static void
vsim_uuid(struct evbuffer *out)
{
	char	h[33];

	vsim_hex_rand(h, 16);
	evbuffer_add_printf(out, "\"%.8s-%.4s-%.4s-%.4s-%.12s\"", h, h + 8, h + 12,
	    h + 16, h + 20);
}

/* ------------------------------------------------------------ tokens */

static int
token_dead(const struct vsim_token *t, int64_t now)
{
	return t->revoked || (t->expire_ms != 0 && now >= t->expire_ms);
}

/* Drop dead tokens, and the oldest ones beyond VSIM_MAX_TOKENS. */
static void
vsim_tokens_prune(struct vsim *vs)
{
	struct vsim_token	**pp = &vs->tokens, *t;
	int64_t			  now = vsim_now_ms();
	unsigned		  kept = 0;

	while ((t = *pp) != NULL) {
		if (token_dead(t, now) || kept >= VSIM_MAX_TOKENS - 1) {
			*pp = t->next;
			OPENSSL_cleanse(t, sizeof(*t));
			free(t);
			vs->ntokens--;
		} else {
			kept++;
			pp = &t->next;
		}
	}
}

/* Issue a token (id NULL: a random "hvs." one). */
struct vsim_token *
vsim_token_issue(struct vsim *vs, const char *how, const char *id, int64_t ttl_ms,
    int renewable)
{
	struct vsim_token	*t;
	int64_t			 now = vsim_now_ms();

	if (id != NULL && (strlen(id) == 0 || strlen(id) > VSIM_TOKEN_MAX))
		return NULL;
	vsim_tokens_prune(vs);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if (id != NULL)
		memcpy(t->id, id, strlen(id) + 1);
	else {
		memcpy(t->id, "hvs.", 4);
		vsim_hex_rand(t->id + 4, 16);
	}
	vsim_hex_rand(t->accessor, 12);
	t->how = how;
	t->created_ms = now;
	t->created_wall = vsim_wall_ms();
	t->ttl_ms = ttl_ms;
	t->renewable = ttl_ms > 0 && renewable;
	t->expire_ms = ttl_ms > 0 ? now + ttl_ms : 0;
	t->max_ms = ttl_ms > 0 && vs->token_max_ttl_ms > 0 ? now + vs->token_max_ttl_ms : 0;
	if (t->max_ms != 0 && t->expire_ms > t->max_ms)
		t->expire_ms = t->max_ms;
	t->next = vs->tokens;
	vs->tokens = t;
	vs->ntokens++;
	vs->st.tokens_issued++;
	return t;
}

/* Revoke every token; returns how many were live. */
unsigned
vsim_tokens_expire(struct vsim *vs)
{
	struct vsim_token	*t;
	int64_t			 now = vsim_now_ms();
	unsigned		 n = 0;

	for (t = vs->tokens; t != NULL; t = t->next) {
		if (!token_dead(t, now))
			n++;
		t->revoked = 1;
	}
	return n;
}

void
vsim_tokens_free(struct vsim *vs)
{
	struct vsim_token	*t;

	while ((t = vs->tokens) != NULL) {
		vs->tokens = t->next;
		OPENSSL_cleanse(t, sizeof(*t));
		free(t);
	}
	vs->ntokens = 0;
}

/* Seconds left (at least 1 while alive), 0 for a token without TTL. */
static long long
token_left_s(const struct vsim_token *t)
{
	int64_t	left;

	if (t->expire_ms == 0)
		return 0;
	left = t->expire_ms - vsim_now_ms();
	return left < 1000 ? 1 : (long long)(left / 1000);
}

/*
 * The lease_duration of a login or renewal: the granted TTL in whole seconds,
 * as Vault reports it (the remaining time, rounded down, once capped by the
 * max TTL).
 */
static long long
token_lease_s(const struct vsim_token *t, int capped)
{
	if (t->expire_ms == 0)
		return 0;
	return capped ? token_left_s(t) : (long long)(t->ttl_ms / 1000);
}

/* The namespace of a request matches the server's (none = none or "root"). */
static int
ns_ok(struct vsim *vs, struct evhttp_request *req)
{
	const char	*h = evhttp_find_header(evhttp_request_get_input_headers(req),
			    "X-Vault-Namespace");
	size_t		 len;

	if (h == NULL)
		h = "";
	while (*h == '/')
		h++;
	len = strlen(h);
	while (len > 0 && h[len - 1] == '/')
		len--;
	if (len == 4 && strncmp(h, "root", 4) == 0)
		len = 0;
	if (vs->ns == NULL)
		return len == 0;
	return len == strlen(vs->ns) && strncmp(h, vs->ns, len) == 0;
}

/* The request's live token, or NULL after answering 403. */
static struct vsim_token *
vsim_auth(struct vsim *vs, struct evhttp_request *req)
{
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	const char		*id = evhttp_find_header(in, "X-Vault-Token");
	const char		*authz = evhttp_find_header(in, "Authorization");
	struct vsim_token	*t = NULL;
	int64_t			 now = vsim_now_ms();

	if (id == NULL && authz != NULL && strncmp(authz, "Bearer ", 7) == 0)
		id = authz + 7;
	if (!ns_ok(vs, req))
		vs->st.namespace_rejects++;
	else if (id != NULL)
		for (t = vs->tokens; t != NULL; t = t->next)
			if (strcmp(t->id, id) == 0 && !token_dead(t, now))
				break;
	if (t == NULL) {
		vs->st.denied++;
		vsim_error(req, 403, "permission denied");
	}
	return t;
}

/* "auth" member of a login / renew answer. */
static void
auth_json(struct evbuffer *b, const struct vsim_token *t, const char *warning)
{
	long long	lease = token_lease_s(t, warning != NULL ||
			    (t->max_ms != 0 && t->expire_ms == t->max_ms));

	evbuffer_add_printf(b, "{\"request_id\":");
	vsim_uuid(b);
	evbuffer_add_printf(b, ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
	    "\"data\":null,\"wrap_info\":null,\"warnings\":");
	if (warning != NULL) {
		evbuffer_add_printf(b, "[");
		vsim_json_str(b, warning);
		evbuffer_add_printf(b, "]");
	} else
		evbuffer_add_printf(b, "null");
	evbuffer_add_printf(b, ",\"auth\":{\"client_token\":");
	vsim_json_str(b, t->id);
	evbuffer_add_printf(b, ",\"accessor\":\"%s\",\"policies\":[\"default\",\"ocp\"],"
	    "\"token_policies\":[\"default\",\"ocp\"],\"metadata\":{\"role_name\":\"ocp\"},"
	    "\"lease_duration\":%lld,\"renewable\":%s,\"entity_id\":\"\","
	    "\"token_type\":\"service\",\"orphan\":true,\"mfa_requirement\":null,"
	    "\"num_uses\":0}}", t->accessor, lease, t->renewable ? "true" : "false");
}

/* A string member of a JSON object, or NULL. */
static const char *
obj_str(yajl_val o, const char *key)
{
	const char	*path[] = { key, NULL };
	yajl_val	 v = yajl_tree_get(o, path, yajl_t_string);

	return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

/* POST /v1/auth/<mount>/login */
static void
api_login(struct vsim *vs, struct evhttp_request *req)
{
	struct vsim_token	*t;
	struct evbuffer		*b;
	yajl_val		 body;
	const char		*rid, *sid;
	char			 err[128];

	if (!ns_ok(vs, req)) {
		vs->st.namespace_rejects++;
		vsim_error(req, 404, "no handler for route \"auth/approle/login\". "
		    "route entry not found.");
		return;
	}
	if ((body = vsim_body_json(req, err, sizeof(err))) == NULL ||
	    !YAJL_IS_OBJECT(body)) {
		yajl_tree_free(body);
		vsim_error(req, 400, "failed to parse JSON input");
		return;
	}
	rid = obj_str(body, "role_id");
	sid = obj_str(body, "secret_id");
	if (rid == NULL || *rid == '\0') {
		vs->st.login_failures++;
		vsim_error(req, 400, "missing role_id");
	} else if (vs->role_id == NULL || sid == NULL || strcmp(rid, vs->role_id) != 0 ||
	    strlen(sid) != strlen(vs->secret_id) ||
	    CRYPTO_memcmp(sid, vs->secret_id, strlen(sid)) != 0) {
		vs->st.login_failures++;
		vsim_error(req, 400, "invalid role or secret ID");
	} else if ((t = vsim_token_issue(vs, "approle", NULL, vs->token_ttl_ms, 1)) == NULL ||
	    (b = evbuffer_new()) == NULL)
		vsim_error(req, 500, "out of memory");
	else {
		vs->st.logins++;
		auth_json(b, t, NULL);
		vsim_reply(req, 200, b);
		evbuffer_free(b);
	}
	yajl_tree_free(body);
}

/* GET /v1/auth/token/lookup-self */
static void
api_lookup_self(struct vsim *vs, struct evhttp_request *req)
{
	struct vsim_token	*t;
	struct evbuffer		*b;

	if ((t = vsim_auth(vs, req)) == NULL)
		return;
	if ((b = evbuffer_new()) == NULL) {
		vsim_error(req, 500, "out of memory");
		return;
	}
	vs->st.lookups++;
	evbuffer_add_printf(b, "{\"request_id\":");
	vsim_uuid(b);
	evbuffer_add_printf(b, ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
	    "\"data\":{\"accessor\":\"%s\",\"creation_time\":%lld,\"creation_ttl\":%lld,"
	    "\"display_name\":\"%s\",\"entity_id\":\"\",\"expire_time\":", t->accessor,
	    (long long)(t->created_wall / 1000), (long long)(t->ttl_ms / 1000),
	    strcmp(t->how, "approle") == 0 ? "approle" : "token");
	if (t->expire_ms != 0)
		vsim_time(b, vsim_wall_ms() + (t->expire_ms - vsim_now_ms()));
	else
		evbuffer_add_printf(b, "null");
	evbuffer_add_printf(b, ",\"explicit_max_ttl\":0,\"id\":");
	vsim_json_str(b, t->id);
	evbuffer_add_printf(b, ",\"issue_time\":");
	vsim_time(b, t->created_wall);
	evbuffer_add_printf(b, ",\"meta\":null,\"num_uses\":0,\"orphan\":true,\"path\":\"%s\","
	    "\"policies\":[\"default\",\"ocp\"],\"renewable\":%s,\"ttl\":%lld,"
	    "\"type\":\"service\"},\"wrap_info\":null,\"warnings\":null,\"auth\":null}",
	    strcmp(t->how, "root") == 0 ? "auth/token/root" : strcmp(t->how, "approle") == 0 ?
	    "auth/approle/login" : "auth/token/create", t->renewable ? "true" : "false",
	    token_left_s(t));
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

/* POST /v1/auth/token/renew-self */
static void
api_renew_self(struct vsim *vs, struct evhttp_request *req)
{
	struct vsim_token	*t;
	struct evbuffer		*b;
	int64_t			 now = vsim_now_ms(), exp;
	const char		*warning = NULL;

	if ((t = vsim_auth(vs, req)) == NULL)
		return;
	if (vs->no_renew) {
		vs->st.renew_refused++;
		vs->st.denied++;
		vsim_error(req, 403, "permission denied");
		return;
	}
	if (!t->renewable) {
		vs->st.renew_refused++;
		vsim_error(req, 400, "lease is not renewable");
		return;
	}
	exp = now + t->ttl_ms;
	if (t->max_ms != 0 && exp > t->max_ms) {
		exp = t->max_ms;
		warning = "TTL of the token exceeded the effective max_ttl; TTL value is capped";
	}
	t->expire_ms = exp;
	if ((b = evbuffer_new()) == NULL) {
		vsim_error(req, 500, "out of memory");
		return;
	}
	vs->st.renewals++;
	auth_json(b, t, warning);
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

/* ------------------------------------------------------------ KV v2 */

static struct vsim_secret *
kv_find(struct vsim *vs, const char *mount, const char *path)
{
	struct vsim_secret	*s;

	for (s = vs->secrets; s != NULL; s = s->next)
		if (strcmp(s->mount, mount) == 0 && strcmp(s->path, path) == 0)
			return s;
	return NULL;
}

/* Write a new version of mount/path; data must be an object. */
int
vsim_kv_write(struct vsim *vs, const char *mount, const char *path, const yajl_val data,
    unsigned long long *version)
{
	struct vsim_secret	*s;
	char			*text;

	if (!YAJL_IS_OBJECT(data) || *mount == '\0' || *path == '\0' ||
	    (text = vsim_json_gen(data)) == NULL)
		return -1;
	if ((s = kv_find(vs, mount, path)) == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL ||
		    (s->mount = strdup(mount)) == NULL || (s->path = strdup(path)) == NULL) {
			if (s != NULL)
				free(s->mount);
			free(s);
			free(text);
			return -1;
		}
		s->next = vs->secrets;
		vs->secrets = s;
	}
	if (s->data != NULL)
		OPENSSL_clear_free(s->data, strlen(s->data));
	s->data = text;
	s->version++;
	s->deleted = 0;
	s->created_wall = vsim_wall_ms();
	vs->st.writes++;
	*version = s->version;
	return 0;
}

/* Delete the latest version (reads then answer 404); -1 if none. */
int
vsim_kv_delete(struct vsim *vs, const char *mount, const char *path)
{
	struct vsim_secret	*s = kv_find(vs, mount, path);

	if (s == NULL || s->deleted)
		return -1;
	s->deleted = 1;
	return 0;
}

void
vsim_secrets_free(struct vsim *vs)
{
	struct vsim_secret	*s;

	while ((s = vs->secrets) != NULL) {
		vs->secrets = s->next;
		if (s->data != NULL)
			OPENSSL_clear_free(s->data, strlen(s->data));
		free(s->mount);
		free(s->path);
		free(s);
	}
}

/* The metadata member of a read / write answer. */
static void
kv_metadata(struct evbuffer *b, const struct vsim_secret *s)
{
	evbuffer_add_printf(b, "{\"created_time\":");
	vsim_time(b, s->created_wall);
	evbuffer_add_printf(b, ",\"custom_metadata\":null,\"deletion_time\":\"\","
	    "\"destroyed\":false,\"version\":%llu}", s->version);
}

/* GET /v1/<mount>/data/<path> */
static void
api_kv_read(struct vsim *vs, struct evhttp_request *req, const char *mount,
    const char *path)
{
	struct vsim_secret	*s;
	struct evbuffer		*b;
	char			 key[2048];

	if (vsim_auth(vs, req) == NULL)
		return;
	snprintf(key, sizeof(key), "%s/%s", mount, path);
	if (vsim_denied(vs, key)) {
		vs->st.denied++;
		vsim_error(req, 403, "permission denied");
		return;
	}
	vs->st.reads++;
	vsim_count(&vs->st.reads_by_path, key);
	if ((s = kv_find(vs, mount, path)) == NULL || s->deleted) {
		vs->st.read_not_found++;
		vsim_error(req, 404, NULL);
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		vsim_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "{\"request_id\":");
	vsim_uuid(b);
	evbuffer_add_printf(b, ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
	    "\"data\":{\"data\":%s,\"metadata\":", s->data);
	kv_metadata(b, s);
	evbuffer_add_printf(b, "},\"wrap_info\":null,\"warnings\":null,\"auth\":null,"
	    "\"mount_type\":\"kv\"}");
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

/* POST /v1/<mount>/data/<path> {"data":{...}} */
static void
api_kv_write(struct vsim *vs, struct evhttp_request *req, const char *mount,
    const char *path)
{
	const char		*dp[] = { "data", NULL };
	struct evbuffer		*b;
	yajl_val		 body, data;
	unsigned long long	 version;
	char			 err[128];

	if (vsim_auth(vs, req) == NULL)
		return;
	if ((body = vsim_body_json(req, err, sizeof(err))) == NULL ||
	    (data = yajl_tree_get(body, dp, yajl_t_object)) == NULL) {
		yajl_tree_free(body);
		vsim_error(req, 400, "no data provided");
		return;
	}
	if (vsim_kv_write(vs, mount, path, data, &version) == -1 ||
	    (b = evbuffer_new()) == NULL) {
		yajl_tree_free(body);
		vsim_error(req, 500, "out of memory");
		return;
	}
	yajl_tree_free(body);
	evbuffer_add_printf(b, "{\"request_id\":");
	vsim_uuid(b);
	evbuffer_add_printf(b, ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,"
	    "\"data\":");
	kv_metadata(b, kv_find(vs, mount, path));
	evbuffer_add_printf(b, ",\"wrap_info\":null,\"warnings\":null,\"auth\":null}");
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

/* /v1/<mount>/data/<path>: split and dispatch on the method. */
static void
api_kv(struct vsim *vs, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type	 m = evhttp_request_get_command(req);
	const char		*slash = strchr(rest, '/');
	char			 mount[256];

	if (slash == NULL || slash == rest || (size_t)(slash - rest) >= sizeof(mount) ||
	    strncmp(slash, "/data/", 6) != 0 || slash[6] == '\0' ||
	    strlen(slash + 6) > 1024) {
		vsim_error(req, 404, NULL);
		return;
	}
	memcpy(mount, rest, (size_t)(slash - rest));
	mount[slash - rest] = '\0';
	if (!ns_ok(vs, req)) {		/* the token is not valid there */
		vs->st.namespace_rejects++;
		vs->st.denied++;
		vsim_error(req, 403, "permission denied");
	} else if (m == EVHTTP_REQ_GET)
		api_kv_read(vs, req, mount, slash + 6);
	else if (m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT)
		api_kv_write(vs, req, mount, slash + 6);
	else
		vsim_error(req, 405, NULL);
}

static void
api_health(struct vsim *vs, struct evhttp_request *req)
{
	struct evbuffer	*b = evbuffer_new();

	if (b == NULL) {
		vsim_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "{\"initialized\":true,\"sealed\":false,\"standby\":false,"
	    "\"performance_standby\":false,\"server_time_utc\":%lld,\"version\":\"%s\","
	    "\"cluster_name\":\"ocp-vault-sim\"}", (long long)(vsim_wall_ms() / 1000),
	    VSIM_VERSION);
	vsim_reply(req, 200, b);
	evbuffer_free(b);
}

/* 1 if the request uses one of the methods. */
static int
method_is(struct evhttp_request *req, int mask)
{
	return (evhttp_request_get_command(req) & mask) != 0;
}

/* Everything under /v1/. */
void
vsim_api(struct vsim *vs, struct evhttp_request *req, const char *path)
{
	char	login[300];

	vs->st.requests++;
	snprintf(login, sizeof(login), "/v1/auth/%s/login", vs->approle_mount);
	if (vs->sealed) {
		vs->st.sealed++;
		vsim_error(req, 503, "Vault is sealed");
	} else if (strcmp(path, "/v1/sys/health") == 0)
		api_health(vs, req);
	else if (strcmp(path, login) == 0)
		method_is(req, EVHTTP_REQ_POST | EVHTTP_REQ_PUT) ? api_login(vs, req) :
		    vsim_error(req, 405, NULL);
	else if (strcmp(path, "/v1/auth/token/lookup-self") == 0)
		method_is(req, EVHTTP_REQ_GET | EVHTTP_REQ_POST) ? api_lookup_self(vs, req) :
		    vsim_error(req, 405, NULL);
	else if (strcmp(path, "/v1/auth/token/renew-self") == 0)
		method_is(req, EVHTTP_REQ_POST | EVHTTP_REQ_PUT) ? api_renew_self(vs, req) :
		    vsim_error(req, 405, NULL);
	else if (strncmp(path, "/v1/", 4) == 0 && strncmp(path, "/v1/auth/", 9) != 0 &&
	    strncmp(path, "/v1/sys/", 8) != 0)
		api_kv(vs, req, path + 4);
	else
		vsim_error(req, 404, NULL);
}
