/*
 * vault.c — HashiCorp Vault client: token / AppRole authentication with
 * renewal, KV v2 reads shared per path, all on the event loop.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <arpa/inet.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <yajl/yajl_parse.h>

#include "conf.h"
#include "fmt.h"
#include "log.h"
#include "ocp-proxy.h"
#include "secret.h"
#include "upstream.h"
#include "vault.h"
#include "wipe.h"

#define VAULT_REQ_BYTES		(40 * 1024)	/* one request: head + body */
#define VAULT_BODY_BYTES	(20 * 1024)	/* one request body */
#define VAULT_MAX_ROLE_ID	1024
#define VAULT_MAX_NAMESPACE	256
#define VAULT_MAX_TTL_S		(10ULL * 366 * 86400)	/* clamp absurd TTLs */

/* ------------------------------------------------------------ values */

struct vault_field {
	char		*name;
	struct secret	*value;		/* NULL: present but not a string */
};

struct vault_kv {
	struct vault_field	*f;
	size_t			 n;
};

/* ------------------------------------------------------------ client state */

enum auth_state { AUTH_NONE, AUTH_BUSY, AUTH_OK, AUTH_FAILED };
enum auth_step { STEP_LOGIN, STEP_LOOKUP, STEP_RENEW };
enum auth_next { NEXT_BEGIN, NEXT_RENEW, NEXT_RELOGIN };

struct vault;
struct vreq;
typedef void (*vreq_fn)(struct vreq *, struct evbuffer *body);

/* One request to Vault; its completion always runs from the loop. */
struct vreq {
	struct vault		*v;
	struct up_xfer		*xfer;
	struct event		*ev;		/* deferred completion */
	vreq_fn			 fn;
	int			 running;	/* sent, completion not yet run */
	int			 finished;	/* upstream called back */
	unsigned long long	 token_gen;	/* the token this request carried */
	enum up_err		 err;
	int			 status;
	struct evbuffer		*body;
	char			 detail[128];	/* the OS or TLS error behind err, or "" */
};

struct vault_watch {
	TAILQ_ENTRY(vault_watch) entry;
	struct vault_path	*p;
	vault_cb		 cb;
	void			*arg;
	unsigned long long	 seen;		/* p->gen last delivered, 0 = none */
	int			 dead;
};
TAILQ_HEAD(vault_watchq, vault_watch);

/* One watched MOUNT/PATH: one read shared by all its watches. */
struct vault_path {
	TAILQ_ENTRY(vault_path)	 entry;
	struct vault		*v;
	char			*mount, *path, *url;
	struct vault_watchq	 watches;
	struct vreq		 req;
	struct event		*timer;		/* next refresh or retry */
	struct event		*kick;		/* deliver the current kv to new watches */
	struct vault_kv		*kv;		/* last good version */
	char			 detail[128];	/* behind the failure being delivered */
	unsigned long long	 version;
	unsigned long long	 gen;		/* bumped when kv changes */
	unsigned long long	 ok_ms;		/* monotonic time of the last good read */
	unsigned long long	 fail_ms;	/* first failure since then, 0 = none */
	unsigned		 backoff;
	int			 want;		/* a read waits for authentication */
	int			 reauthed;	/* a 403 already re-authenticated once */
	int			 last_ok;
	int			 fail_logged;
};
TAILQ_HEAD(vault_pathq, vault_path);

struct vault {
	struct event_base	*base;
	struct upstream		*up;
	char			*host_hdr;
	char			*ns;		/* NULL = no namespace */
	char			*token_file;	/* NULL = AppRole */
	char			*role_id;
	char			*secret_id_file;
	char			*login_url;
	unsigned		 refresh_ms, backoff_max;
	struct secret		*token;
	int			 token_fresh;	/* just read by vault_new */
	unsigned long long	 token_gen;
	unsigned long long	 expire_ms;	/* monotonic; 0 = never expires */
	int			 renewable;
	enum auth_state		 auth;
	enum auth_step		 step;
	int			 proactive;	/* auth request sent while AUTH_OK */
	struct vreq		 areq;
	struct event		*atimer;
	enum auth_next		 anext;
	unsigned		 abackoff;
	int			 afail_logged;
	struct secret		*reqbuf;	/* scratch, locked, cleansed after use */
	struct secret		*bodybuf;
	struct vault_pathq	 paths;
	int			 busy;		/* delivering to callbacks */
	int			 reap;		/* a watch died while busy */
};

static void	auth_begin(struct vault *);
static void	auth_done(struct vreq *, struct evbuffer *);
static void	path_read(struct vault_path *);
static void	path_done(struct vreq *, struct evbuffer *);
static void	vault_reap(struct vault *);

/* Monotonic milliseconds. */
static unsigned long long
mono_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ cleansing allocator */

/*
 * yajl copies strings with escapes into its own buffers; every block it
 * allocates carries its size so that it can be cleansed when freed.
 */
#define CL_HDR	16

static void *
cl_malloc(void *ctx, size_t sz)
{
	unsigned char	*p;

	if (sz > SIZE_MAX - CL_HDR || (p = malloc(sz + CL_HDR)) == NULL)
		return NULL;
	memcpy(p, &sz, sizeof(sz));
	return p + CL_HDR;
}

static void
cl_free(void *ctx, void *ptr)
{
	unsigned char	*p;
	size_t		 sz;

	if (ptr == NULL)
		return;
	p = (unsigned char *)ptr - CL_HDR;
	memcpy(&sz, p, sizeof(sz));
	OPENSSL_cleanse(p, sz + CL_HDR);
	free(p);
}

static void *
cl_realloc(void *ctx, void *ptr, size_t sz)
{
	unsigned char	*n;
	size_t		 old;

	if (ptr == NULL)
		return cl_malloc(ctx, sz);
	if ((n = cl_malloc(ctx, sz)) == NULL)
		return NULL;
	memcpy(&old, (unsigned char *)ptr - CL_HDR, sizeof(old));
	memcpy(n, ptr, old < sz ? old : sz);
	cl_free(ctx, ptr);
	return n;
}

/* ------------------------------------------------------------ JSON walker */

/*
 * A thin layer over yajl's event parser that knows, for each value, how deep
 * it sits and the member names on the way to it (first JW_LEVELS levels of
 * objects only; anything under an array has no name path).
 */
#define JW_LEVELS	3
#define JW_KEYLEN	32

enum jw_type { JW_NULL, JW_BOOL, JW_NUMBER, JW_STRING, JW_MAP, JW_ARRAY };

struct jwalk;
typedef int (*jw_value_fn)(struct jwalk *, enum jw_type, const unsigned char *, size_t);

struct jwalk {
	int		 depth;			/* containers open */
	int		 array_at;		/* depth of the outermost open array, 0 = none */
	char		 key[JW_LEVELS][JW_KEYLEN];	/* "" when too long */
	char		 name[VAULT_MAX_NAME + 1];	/* the last member name, whole */
	size_t		 namelen;
	int		 name_long;
	jw_value_fn	 value;
	void		*ctx;
	const char	*why;
};

/* 1 if the value being reported sits at depth n under members k1 (and k2). */
static int
jw_at(const struct jwalk *jw, int n, const char *k1, const char *k2)
{
	if (jw->depth != n || jw->array_at != 0)
		return 0;
	if (n >= 1 && strcmp(jw->key[0], k1) != 0)
		return 0;
	if (n >= 2 && k2 != NULL && strcmp(jw->key[1], k2) != 0)
		return 0;
	return 1;
}

static int
jw_value(struct jwalk *jw, enum jw_type t, const unsigned char *s, size_t len)
{
	if (jw->depth == 0 && t != JW_MAP) {
		jw->why = "not a JSON object";
		return 0;
	}
	return jw->value(jw, t, s, len);
}

static int
jw_null(void *ctx)
{
	return jw_value(ctx, JW_NULL, NULL, 0);
}

static int
jw_bool(void *ctx, int b)
{
	return jw_value(ctx, JW_BOOL, (const unsigned char *)(b ? "true" : "false"), b ? 4 : 5);
}

static int
jw_number(void *ctx, const char *s, size_t len)
{
	return jw_value(ctx, JW_NUMBER, (const unsigned char *)s, len);
}

static int
jw_string(void *ctx, const unsigned char *s, size_t len)
{
	return jw_value(ctx, JW_STRING, s, len);
}

/* A container opens: report it as a value, then go one level down. */
static int
jw_open(struct jwalk *jw, enum jw_type t)
{
	if (jw_value(jw, t, NULL, 0) == 0)
		return 0;
	if (jw->depth >= VAULT_MAX_JSON_DEPTH) {
		jw->why = "nesting too deep";
		return 0;
	}
	jw->depth++;
	if (t == JW_ARRAY && jw->array_at == 0)
		jw->array_at = jw->depth;
	if (jw->depth <= JW_LEVELS)
		jw->key[jw->depth - 1][0] = '\0';
	return 1;
}

static int
jw_start_map(void *ctx)
{
	return jw_open(ctx, JW_MAP);
}

static int
jw_start_array(void *ctx)
{
	return jw_open(ctx, JW_ARRAY);
}

static int
jw_close(void *ctx)
{
	struct jwalk	*jw = ctx;

	if (jw->array_at == jw->depth)
		jw->array_at = 0;
	jw->depth--;
	return 1;
}

static int
jw_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct jwalk	*jw = ctx;

	if (jw->depth <= JW_LEVELS) {
		if (len < JW_KEYLEN && memchr(s, '\0', len) == NULL) {
			memcpy(jw->key[jw->depth - 1], s, len);
			jw->key[jw->depth - 1][len] = '\0';
		} else
			jw->key[jw->depth - 1][0] = '\0';
	}
	jw->name_long = len > VAULT_MAX_NAME || memchr(s, '\0', len) != NULL;
	jw->namelen = jw->name_long ? 0 : len;
	memcpy(jw->name, s, jw->namelen);
	jw->name[jw->namelen] = '\0';
	return 1;
}

static const yajl_callbacks jw_callbacks = {
	jw_null, jw_bool, NULL, NULL, jw_number, jw_string,
	jw_start_map, jw_map_key, jw_close, jw_start_array, jw_close,
};

/* Walk json[0..len) through value(); 0, or -1 with *why. */
static int
jw_parse(const char *json, size_t len, jw_value_fn value, void *ctx, const char **why)
{
	yajl_alloc_funcs	 af = { cl_malloc, cl_realloc, cl_free, NULL };
	struct jwalk		*jw;
	yajl_handle		 h;
	yajl_status		 st;
	int			 rc = -1;

	if (json == NULL || len == 0)
		return (*why = "invalid JSON", -1);
	if ((jw = cl_malloc(NULL, sizeof(*jw))) == NULL)
		return (*why = "out of memory", -1);
	memset(jw, 0, sizeof(*jw));
	jw->value = value;
	jw->ctx = ctx;
	if ((h = yajl_alloc(&jw_callbacks, &af, jw)) == NULL) {
		*why = "out of memory";
		goto out;
	}
	st = yajl_parse(h, (const unsigned char *)json, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st == yajl_status_ok)
		rc = 0;
	else
		*why = jw->why != NULL ? jw->why : "invalid JSON";
	yajl_free(h);
out:
	cl_free(NULL, jw);		/* cleanses the last member name */
	return rc;
}

/* Strict decimal unsigned integer; -1 when not one or above max. */
static int
jw_uint(const unsigned char *s, size_t len, unsigned long long max, unsigned long long *out)
{
	unsigned long long	n = 0;
	size_t			i;

	if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (n > (ULLONG_MAX - (unsigned)(s[i] - '0')) / 10)
			return -1;
		n = n * 10 + (unsigned)(s[i] - '0');
	}
	if (n > max)
		return -1;
	*out = n;
	return 0;
}

/* ------------------------------------------------------------ KV v2 answers */

struct kvparse {
	struct vault_kv		*kv;
	size_t			 cap;
	unsigned long long	 version;
	int			 has_version;
	int			 has_data;
};

/* Add one member of data.data. */
static int
kv_add(struct jwalk *jw, struct kvparse *kp, enum jw_type t, const unsigned char *s,
    size_t len)
{
	struct vault_kv		*kv = kp->kv;
	struct vault_field	*f;
	size_t			 i;

	if (jw->name_long)
		return (jw->why = "field too long", 0);
	for (i = 0; i < kv->n; i++)
		if (strcmp(kv->f[i].name, jw->name) == 0)
			return (jw->why = "duplicate field", 0);
	if (kv->n == VAULT_MAX_FIELDS)
		return (jw->why = "too many fields", 0);
	if (t == JW_STRING && len > VAULT_MAX_VALUE)
		return (jw->why = "field too long", 0);
	if (kv->n == kp->cap) {
		size_t ncap = kp->cap ? kp->cap * 2 : 8;
		if ((f = realloc(kv->f, ncap * sizeof(*f))) == NULL)
			return (jw->why = "out of memory", 0);
		kv->f = f;
		kp->cap = ncap;
	}
	f = &kv->f[kv->n];
	f->value = NULL;
	if ((f->name = strdup(jw->name)) == NULL)
		return (jw->why = "out of memory", 0);
	if (t == JW_STRING && (f->value = secret_from(s, len)) == NULL) {
		free(f->name);
		return (jw->why = "out of memory", 0);
	}
	kv->n++;
	return 1;
}

static int
kv_value(struct jwalk *jw, enum jw_type t, const unsigned char *s, size_t len)
{
	struct kvparse	*kp = jw->ctx;

	if (jw_at(jw, 2, "data", "data")) {
		if (t != JW_MAP)
			return 1;		/* "data": null -> no data */
		if (kp->has_data++)
			return (jw->why = "duplicate field", 0);
		return 1;
	}
	if (jw_at(jw, 3, "data", "data"))
		return kv_add(jw, kp, t, s, len);
	if (jw_at(jw, 3, "data", "metadata") && strcmp(jw->name, "version") == 0 &&
	    !jw->name_long) {
		if (kp->has_version)
			return (jw->why = "duplicate field", 0);
		if (t == JW_NUMBER && jw_uint(s, len, ULLONG_MAX, &kp->version) == 0)
			kp->has_version = 1;
	}
	return 1;
}

/* Parse a KV v2 read answer. */
struct vault_kv *
vault_kv_parse(const char *json, size_t len, unsigned long long *version, const char **why)
{
	struct kvparse	kp;

	memset(&kp, 0, sizeof(kp));
	*version = 0;
	if ((kp.kv = calloc(1, sizeof(*kp.kv))) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	if (jw_parse(json, len, kv_value, &kp, why) == -1)
		goto fail;
	if (!kp.has_data) {
		*why = "no data in the answer";
		goto fail;
	}
	if (!kp.has_version || kp.version == 0) {
		*why = "no version in the answer";
		goto fail;
	}
	*version = kp.version;
	return kp.kv;
fail:
	vault_kv_free(kp.kv);
	return NULL;
}

/* Cleanse and free a parsed secret; accepts NULL. */
void
vault_kv_free(struct vault_kv *kv)
{
	size_t	i;

	if (kv == NULL)
		return;
	for (i = 0; i < kv->n; i++) {
		free(kv->f[i].name);
		secret_free(kv->f[i].value);
	}
	free(kv->f);
	free(kv);
}

static const struct vault_field *
kv_find(const struct vault_kv *kv, const char *name)
{
	size_t	i;

	for (i = 0; kv != NULL && i < kv->n; i++)
		if (strcmp(kv->f[i].name, name) == 0)
			return &kv->f[i];
	return NULL;
}

/* A locked copy of one string field. */
struct secret *
vault_kv_field(const struct vault_kv *kv, const char *field)
{
	const struct vault_field	*f = kv_find(kv, field);

	if (f == NULL || f->value == NULL)
		return NULL;
	return secret_from(f->value->p, f->value->len);
}

size_t
vault_kv_count(const struct vault_kv *kv)
{
	return kv == NULL ? 0 : kv->n;
}

const char *
vault_kv_name(const struct vault_kv *kv, size_t i)
{
	return kv == NULL || i >= kv->n ? NULL : kv->f[i].name;
}

/* Same fields, same values. */
int
vault_kv_equal(const struct vault_kv *a, const struct vault_kv *b)
{
	const struct vault_field	*g;
	size_t				 i;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++) {
		if ((g = kv_find(b, a->f[i].name)) == NULL)
			return 0;
		if ((a->f[i].value == NULL) != (g->value == NULL))
			return 0;
		if (g->value == NULL)
			continue;
		if (g->value->len != a->f[i].value->len ||
		    CRYPTO_memcmp(g->value->p, a->f[i].value->p, g->value->len) != 0)
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------ token answers */

/* What a login, lookup-self or renew-self answer says about the token. */
struct tokinfo {
	const char		*section;	/* "auth" or "data" */
	const char		*ttl_key;	/* "lease_duration" or "ttl" */
	struct secret		*token;		/* auth.client_token */
	unsigned long long	 ttl;
	int			 has_ttl;
	int			 renewable;
};

static int
tok_value(struct jwalk *jw, enum jw_type t, const unsigned char *s, size_t len)
{
	struct tokinfo	*ti = jw->ctx;

	if (!jw_at(jw, 2, ti->section, NULL) || jw->name_long)
		return 1;
	if (strcmp(jw->name, ti->ttl_key) == 0 && t == JW_NUMBER) {
		if (jw_uint(s, len, ULLONG_MAX, &ti->ttl) == -1)
			return (jw->why = "invalid TTL", 0);
		if (ti->ttl > VAULT_MAX_TTL_S)
			ti->ttl = VAULT_MAX_TTL_S;
		ti->has_ttl = 1;
	} else if (strcmp(jw->name, "renewable") == 0 && t == JW_BOOL)
		ti->renewable = len == 4;
	else if (strcmp(jw->name, "client_token") == 0 && t == JW_STRING &&
	    strcmp(ti->section, "auth") == 0) {
		if (ti->token != NULL)
			return (jw->why = "duplicate field", 0);
		if (len == 0 || len > VAULT_MAX_VALUE)
			return (jw->why = "invalid token", 0);
		if ((ti->token = secret_from(s, len)) == NULL)
			return (jw->why = "out of memory", 0);
	}
	return 1;
}

/* ------------------------------------------------------------ small helpers */

/* 1 if s[0..len) is printable ASCII; spaces allowed only when sp. */
static int
printable(const unsigned char *s, size_t len, int sp)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (s[i] > 0x7e || s[i] < (sp ? 0x20 : 0x21))
			return 0;
	return 1;
}

/* 1 if s is a usable path: no empty, "." or ".." segment, no control byte. */
static int
path_ok(const char *s, size_t len)
{
	size_t	i, seg = 0;

	if (len == 0)
		return 0;
	for (i = 0; i <= len; i++) {
		if (i == len || s[i] == '/') {
			if (i == seg || (i - seg == 1 && s[seg] == '.') ||
			    (i - seg == 2 && s[seg] == '.' && s[seg + 1] == '.'))
				return 0;
			seg = i + 1;
		} else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	}
	return 1;
}

/* Split "vault:MOUNT/PATH#FIELD". */
int
vault_parse_source(const char *src, char **mount, char **path, char **field)
{
	const char	*s, *hash, *slash;
	size_t		 i, len;

	*mount = *path = *field = NULL;
	if (strncmp(src, "vault:", 6) != 0)
		return -1;
	s = src + 6;
	if ((len = strlen(s)) > VAULT_MAX_SOURCE || (hash = strchr(s, '#')) == NULL)
		return -1;
	if ((slash = memchr(s, '/', (size_t)(hash - s))) == NULL)
		return -1;
	if (!path_ok(s, (size_t)(hash - s)) || hash[1] == '\0')
		return -1;
	for (i = 1; hash[i] != '\0'; i++)
		if ((unsigned char)hash[i] < 0x20 || hash[i] == 0x7f)
			return -1;
	*mount = strndup(s, (size_t)(slash - s));
	*path = strndup(slash + 1, (size_t)(hash - slash - 1));
	*field = strdup(hash + 1);
	if (*mount == NULL || *path == NULL || *field == NULL) {
		free(*mount);
		free(*path);
		free(*field);
		*mount = *path = *field = NULL;
		return -1;
	}
	return 0;
}

/* Append s percent-encoded (unreserved characters and '/' kept) to out. */
static int
url_escape(char *out, size_t outlen, size_t *at, const char *s)
{
	static const char	hex[] = "0123456789ABCDEF";
	unsigned char		c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (*at + 4 > outlen)
			return -1;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c) != NULL)
			out[(*at)++] = (char)c;
		else {
			out[(*at)++] = '%';
			out[(*at)++] = hex[c >> 4];
			out[(*at)++] = hex[c & 15];
		}
	}
	out[*at] = '\0';
	return 0;
}

/* "/v1/" + escaped a + mid + escaped b; NULL when too long. */
static char *
url_make(const char *a, const char *mid, const char *b)
{
	char	buf[4 * VAULT_MAX_SOURCE + 64];
	size_t	at = 0;

	memcpy(buf, "/v1/", 4);
	at = 4;
	if (url_escape(buf, sizeof(buf), &at, a) == -1 ||
	    at + strlen(mid) + 1 > sizeof(buf))
		return NULL;
	memcpy(buf + at, mid, strlen(mid) + 1);
	at += strlen(mid);
	if (url_escape(buf, sizeof(buf), &at, b) == -1)
		return NULL;
	return strdup(buf);
}

/* A bounded writer into locked scratch memory. */
struct wbuf {
	unsigned char	*p;
	size_t		 cap, len;
	int		 over;
};

static void wb_printf(struct wbuf *, const char *, ...) __attribute__((format(printf, 2, 3)));

static void
wb_printf(struct wbuf *w, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (w->over)
		return;
	va_start(ap, fmt);
	n = vsnprintf((char *)w->p + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= w->cap - w->len)
		w->over = 1;
	else
		w->len += (size_t)n;
}

static void
wb_add(struct wbuf *w, const void *p, size_t n)
{
	if (w->over || n >= w->cap - w->len) {
		w->over = 1;
		return;
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
	w->p[w->len] = '\0';
}

/* Append s as a JSON string (s is printable ASCII). */
static void
wb_json(struct wbuf *w, const unsigned char *s, size_t len)
{
	size_t	i;

	wb_add(w, "\"", 1);
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			wb_add(w, "\\", 1);
		wb_add(w, &s[i], 1);
	}
	wb_add(w, "\"", 1);
}

/* A zeroed scratch buffer in locked memory. */
static struct secret *
scratch_new(size_t len)
{
	struct secret	*s;
	unsigned char	*z;

	if ((z = calloc(1, len)) == NULL)
		return NULL;
	s = secret_from(z, len);
	free(z);
	return s;
}

/* The answer as one NUL-free view; NULL (and len 0) when empty. */
static const char *
body_view(struct evbuffer *b, size_t *len)
{
	*len = b == NULL ? 0 : evbuffer_get_length(b);
	if (*len == 0)
		return NULL;
	return (const char *)wipe_pullup(b);	/* a plain pullup frees uncleared copies */
}

/* A loggable reason for a transport failure. */
static const char *
transport_why(enum up_err e)
{
	switch (e) {
	case UP_OK:
		break;
	case UP_CONNECT:
		return "cannot connect to vault";
	case UP_TLS:
		return "TLS handshake with vault failed";
	case UP_PROTOCOL:
		return "bad or missing answer from vault";
	case UP_TIMEOUT:
		return "vault did not answer in time";
	}
	return "vault request failed";
}

/* A loggable reason for an HTTP status that is not a success. */
static const char *
status_why(int status)
{
	switch (status) {
	case 400:
		return "vault rejected the request";
	case 403:
		return "permission denied by vault";
	case 404:
		return "secret not found";
	case 429:
		return "vault is rate limiting";
	case 503:
		return "vault sealed or unavailable";
	}
	return status >= 500 ? "vault server error" : "unexpected answer from vault";
}

/* ------------------------------------------------------------ requests */

static void
vreq_event(evutil_socket_t fd, short what, void *arg)
{
	struct vreq	*r = arg;
	struct evbuffer	*body = r->body;

	r->body = NULL;
	r->running = 0;
	r->fn(r, body);		/* may free r */
	wipe_free(body);
}

/* upstream.c is done with the exchange (maybe from inside upstream_send). */
static void
vreq_upstream_done(void *arg, struct up_result *res)
{
	struct vreq	*r = arg;

	r->xfer = NULL;
	r->finished = 1;
	r->err = res->err;
	r->status = res->err == UP_OK ? res->status : 0;
	memcpy(r->detail, res->detail, sizeof(r->detail));
	r->detail[sizeof(r->detail) - 1] = '\0';
	r->body = res->body;
	res->body = NULL;
	event_active(r->ev, EV_TIMEOUT, 1);
}

static int
vreq_init(struct vreq *r, struct vault *v, vreq_fn fn, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->v = v;
	r->fn = fn;
	r->ev = event_new(v->base, -1, 0, vreq_event, arg);
	return r->ev == NULL ? -1 : 0;
}

/* Abandon a request: no completion will run. */
static void
vreq_cancel(struct vreq *r)
{
	if (r->xfer != NULL)
		upstream_cancel(r->xfer);
	r->xfer = NULL;
	if (r->ev != NULL)
		event_del(r->ev);
	wipe_free(r->body);
	r->body = NULL;
	r->running = 0;
}

static void
vreq_clear(struct vreq *r)
{
	vreq_cancel(r);
	if (r->ev != NULL)
		event_free(r->ev);
	r->ev = NULL;
}

/*
 * Send one request, built in locked scratch memory: the token header when
 * with_token, the namespace header when configured, body[0..blen) as JSON
 * when body != NULL.  -1 when it cannot be queued (nothing will run).
 */
static int
vreq_send(struct vreq *r, const char *method, const char *url, const unsigned char *body,
    size_t blen, int with_token)
{
	struct vault	*v = r->v;
	struct wbuf	 w = { v->reqbuf->p, v->reqbuf->len, 0, 0 };
	struct iovec	 iov;
	struct up_xfer	*x;

	wb_printf(&w, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ocp-proxy/%s\r\n"
	    "Accept: application/json\r\nX-Vault-Request: true\r\n", method, url,
	    v->host_hdr, OCP_VERSION);
	if (with_token) {
		wb_add(&w, "X-Vault-Token: ", 15);
		wb_add(&w, v->token->p, v->token->len);
		wb_add(&w, "\r\n", 2);
	}
	if (v->ns != NULL)
		wb_printf(&w, "X-Vault-Namespace: %s\r\n", v->ns);
	if (body != NULL)
		wb_printf(&w, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
	wb_add(&w, "\r\n", 2);
	if (body != NULL)
		wb_add(&w, body, blen);
	if (w.over) {
		OPENSSL_cleanse(w.p, w.cap);
		return -1;
	}
	iov.iov_base = w.p;
	iov.iov_len = w.len;
	r->running = 1;
	r->finished = 0;
	r->detail[0] = '\0';
	r->token_gen = v->token_gen;
	x = upstream_send(v->up, &iov, 1, vreq_upstream_done, r);
	OPENSSL_cleanse(w.p, w.len);
	if (!r->finished) {
		if (x == NULL) {
			r->running = 0;
			return -1;
		}
		r->xfer = x;
	}
	return 0;
}

/* ------------------------------------------------------------ delivery */

/* Call every live watch of p: the current kv (where not yet seen) or err. */
static void
path_deliver(struct vault_path *p, const char *err)
{
	struct vault		*v = p->v;
	struct vault_watch	*w;

	v->busy++;
	TAILQ_FOREACH(w, &p->watches, entry) {
		if (w->dead)
			continue;
		if (err != NULL)
			w->cb(w->arg, NULL, 0, err);
		else if (p->kv != NULL && w->seen != p->gen) {
			w->seen = p->gen;
			w->cb(w->arg, p->kv, p->version, NULL);
		}
	}
	if (--v->busy == 0 && v->reap)
		vault_reap(v);
}

static void
path_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	path_deliver(arg, NULL);
}

/* Cancel and free a path and its watches. */
static void
path_free(struct vault_path *p)
{
	struct vault_watch	*w;

	while ((w = TAILQ_FIRST(&p->watches)) != NULL) {
		TAILQ_REMOVE(&p->watches, w, entry);
		free(w);
	}
	vreq_clear(&p->req);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->kick != NULL)
		event_free(p->kick);
	vault_kv_free(p->kv);
	free(p->mount);
	free(p->path);
	free(p->url);
	free(p);
}

/* Drop dead watches and paths nobody watches any more. */
static void
vault_reap(struct vault *v)
{
	struct vault_path	*p, *pn;
	struct vault_watch	*w, *wn;

	v->reap = 0;
	for (p = TAILQ_FIRST(&v->paths); p != NULL; p = pn) {
		pn = TAILQ_NEXT(p, entry);
		for (w = TAILQ_FIRST(&p->watches); w != NULL; w = wn) {
			wn = TAILQ_NEXT(w, entry);
			if (w->dead) {
				TAILQ_REMOVE(&p->watches, w, entry);
				free(w);
			}
		}
		if (TAILQ_EMPTY(&p->watches)) {
			TAILQ_REMOVE(&v->paths, p, entry);
			path_free(p);
		}
	}
}

/* ------------------------------------------------------------ reads */

static void
path_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	path_read(arg);
}

/* Schedule p's next read in ms. */
static void
path_schedule(struct vault_path *p, unsigned long long ms)
{
	struct timeval	tv;

	log_ms_tv(ms, &tv);
	evtimer_add(p->timer, &tv);
}

/* The next retry delay after a failure: doubling, capped. */
static unsigned
backoff_next(unsigned *b, unsigned max)
{
	*b = *b == 0 ? VAULT_BACKOFF_MIN_MS : (*b > max / 2 ? max : *b * 2);
	if (*b > max)
		*b = max;
	return *b;
}

/*
 * A read failed: tell the watches; retry later unless waiting for auth.
 * detail: the OS, TLS or HTTP error behind why ("" or NULL: none).
 */
static void
path_fail(struct vault_path *p, const char *why, const char *detail, int retry)
{
	struct vault	*v = p->v;

	p->last_ok = 0;
	p->reauthed = 0;
	if (p->fail_ms == 0)
		p->fail_ms = mono_ms();
	if (!p->fail_logged) {
		log_warn("vault: reading %s/%s failed: %s", p->mount, p->path, why);
		p->fail_logged = 1;
	} else
		log_debug("vault: reading %s/%s failed again: %s", p->mount, p->path, why);
	if (retry)
		path_schedule(p, backoff_next(&p->backoff, v->backoff_max));
	snprintf(p->detail, sizeof(p->detail), "%s", detail != NULL ? detail : "");
	path_deliver(p, why);
}

/* A read succeeded. */
static void
path_good(struct vault_path *p, struct vault_kv *kv, unsigned long long version)
{
	struct vault	*v = p->v;

	if (p->fail_logged)
		log_info("vault: reading %s/%s works again", p->mount, p->path);
	p->last_ok = 1;
	p->fail_logged = 0;
	p->reauthed = 0;
	p->backoff = 0;
	p->ok_ms = mono_ms();
	p->fail_ms = 0;
	if (p->kv == NULL || version != p->version || !vault_kv_equal(kv, p->kv)) {
		log_info("vault: %s/%s version %llu (%zu fields)", p->mount, p->path,
		    version, kv->n);
		vault_kv_free(p->kv);
		p->kv = kv;
		p->version = version;
		p->gen++;
	} else
		vault_kv_free(kv);
	path_schedule(p, v->refresh_ms);
	path_deliver(p, NULL);
}

/* 1 if the token's TTL has run out. */
static int
token_expired(const struct vault *v)
{
	return v->expire_ms != 0 && mono_ms() >= v->expire_ms;
}

/* Start reading p now, or note that it waits for authentication. */
static void
path_read(struct vault_path *p)
{
	struct vault	*v = p->v;

	evtimer_del(p->timer);
	if (p->req.running)
		return;
	if (v->auth == AUTH_OK && token_expired(v)) {
		log_info("vault: the token expired; authenticating again");
		auth_begin(v);
	}
	if (v->auth != AUTH_OK) {
		p->want = 1;
		return;
	}
	p->want = 0;
	if (vreq_send(&p->req, "GET", p->url, NULL, 0, 1) == -1) {
		log_warn("vault: cannot send a read of %s/%s (out of memory)", p->mount, p->path);
		path_schedule(p, backoff_next(&p->backoff, v->backoff_max));
	}
}

/* The answer to a KV read. */
static void
path_done(struct vreq *r, struct evbuffer *body)
{
	struct vault_path	*p = (struct vault_path *)((char *)r -
				    offsetof(struct vault_path, req));
	struct vault		*v = p->v;
	struct vault_kv		*kv;
	unsigned long long	 version;
	const char		*why, *json;
	size_t			 len;

	if (r->err != UP_OK) {
		path_fail(p, transport_why(r->err), r->detail, 1);
		return;
	}
	if (r->status == 403 && !p->reauthed) {
		p->reauthed = 1;
		p->want = 1;
		if (r->token_gen != v->token_gen) {	/* a new token came meanwhile */
			path_read(p);
			return;
		}
		if (v->auth == AUTH_OK) {
			log_info("vault: reading %s/%s was refused; authenticating again",
			    p->mount, p->path);
			auth_begin(v);
		}
		return;
	}
	if (r->status != 200) {
		snprintf(r->detail, sizeof(r->detail), "HTTP %d", r->status);
		path_fail(p, status_why(r->status), r->detail, 1);
		return;
	}
	json = body_view(body, &len);
	if ((kv = vault_kv_parse(json, len, &version, &why)) == NULL) {
		log_warn("vault: the answer for %s/%s is not a KV v2 secret: %s",
		    p->mount, p->path, why);
		path_fail(p, "bad KV answer from vault (is the mount KV version 2?)", why, 1);
		return;
	}
	path_good(p, kv, version);
}

/* ------------------------------------------------------------ authentication */

/* Replace the token (cleansing the old one). */
static void
token_set(struct vault *v, struct secret *t)
{
	secret_free(v->token);		/* also leaves the leak guard */
	v->token = t;
	v->token_gen++;
	secret_guard_add(t);
}

static void
atimer_set(struct vault *v, enum auth_next next, unsigned long long ms)
{
	struct timeval	tv;

	v->anext = next;
	log_ms_tv(ms, &tv);
	evtimer_add(v->atimer, &tv);
}

/* Read the token file; NULL with a logged reason. */
static struct secret *
token_file_read(struct vault *v)
{
	struct secret	*t;
	char		*src, *cause = NULL;

	if ((src = fmt_alloc("file:%s", v->token_file)) == NULL)
		return NULL;
	t = secret_load(src, &cause);
	free(src);
	if (t == NULL) {
		log_warn("vault: token_file %s", cause ? cause : "out of memory");
		free(cause);
		return NULL;
	}
	if (!printable(t->p, t->len, 0)) {
		log_warn("vault: token_file %s: the token holds a space or a control byte",
		    v->token_file);
		secret_free(t);
		return NULL;
	}
	return t;
}

/* POST the AppRole login; -1 (reason logged) when it could not be sent. */
static int
auth_send_login(struct vault *v)
{
	struct secret	*sid;
	struct wbuf	 w = { v->bodybuf->p, v->bodybuf->len, 0, 0 };
	char		*src, *cause = NULL;
	int		 rc;

	if ((src = fmt_alloc("file:%s", v->secret_id_file)) == NULL)
		return -1;
	sid = secret_load(src, &cause);
	free(src);
	if (sid == NULL) {
		log_warn("vault: secret_id_file %s", cause ? cause : "out of memory");
		free(cause);
		return -1;
	}
	secret_guard_add(sid);
	if (!printable(sid->p, sid->len, 1)) {
		log_warn("vault: secret_id_file %s: the secret_id holds a control byte",
		    v->secret_id_file);
		secret_free(sid);
		return -1;
	}
	wb_add(&w, "{\"role_id\":", 11);
	wb_json(&w, (const unsigned char *)v->role_id, strlen(v->role_id));
	wb_add(&w, ",\"secret_id\":", 13);
	wb_json(&w, sid->p, sid->len);
	wb_add(&w, "}", 1);
	secret_free(sid);
	v->step = STEP_LOGIN;
	rc = w.over ? -1 : vreq_send(&v->areq, "POST", v->login_url, w.p, w.len, 0);
	OPENSSL_cleanse(w.p, w.cap);
	return rc;
}

/*
 * Send the request that gets (AppRole) or checks (token file, re-read unless
 * vault_new just read it) a token.  -1 with *why when it could not be sent.
 */
static int
auth_send(struct vault *v, const char **why)
{
	struct secret	*t;

	if (v->token_file == NULL) {
		*why = "cannot send the AppRole login (see the log)";
		return auth_send_login(v);
	}
	if (!v->token_fresh) {
		if ((t = token_file_read(v)) == NULL) {
			*why = "cannot read token_file";
			return -1;
		}
		if (v->token != NULL && t->len == v->token->len &&
		    CRYPTO_memcmp(t->p, v->token->p, t->len) == 0)
			secret_free(t);		/* unchanged: only learn its TTL */
		else {
			token_set(v, t);
			if (v->proactive) {	/* a new token is checked before use */
				v->proactive = 0;
				v->auth = AUTH_BUSY;
			}
		}
	}
	v->token_fresh = 0;
	v->step = STEP_LOOKUP;
	*why = "out of memory";
	return vreq_send(&v->areq, "GET", "/v1/auth/token/lookup-self", NULL, 0, 1);
}

/* Authentication failed (detail: as for path_fail): tell the waiting reads, retry later. */
static void
auth_fail(struct vault *v, const char *why, const char *detail)
{
	struct vault_path	*p;

	v->auth = AUTH_FAILED;
	if (!v->afail_logged)
		log_warn("vault: authentication failed: %s; retrying", why);
	else
		log_debug("vault: authentication failed again: %s", why);
	v->afail_logged = 1;
	atimer_set(v, NEXT_BEGIN, backoff_next(&v->abackoff, v->backoff_max));
	v->busy++;
	TAILQ_FOREACH(p, &v->paths, entry)
		if (p->want && !TAILQ_EMPTY(&p->watches))
			path_fail(p, why, detail, 0);
	if (--v->busy == 0 && v->reap)
		vault_reap(v);
}

/*
 * New credentials are needed: reads wait until they come.  The work runs
 * from the loop so that no vault_* call ever calls back.
 */
static void
auth_begin(struct vault *v)
{
	vreq_cancel(&v->areq);
	v->auth = AUTH_BUSY;
	v->proactive = 0;
	atimer_set(v, NEXT_BEGIN, 0);
}

/* Authenticated: schedule renewal, start the reads that waited. */
static void
auth_ok(struct vault *v, unsigned long long ttl, int renewable)
{
	struct vault_path	*p;
	unsigned long long	 half = ttl * 500;
	int			 was = v->auth;

	if (was != AUTH_OK || v->afail_logged)
		log_info("vault: authenticated (%s; token ttl %llus%s)",
		    v->token_file ? "token_file" : "AppRole", ttl,
		    ttl == 0 ? ", no expiry" : renewable ? ", renewable" : "");
	v->auth = AUTH_OK;
	v->afail_logged = 0;
	v->abackoff = 0;
	v->renewable = renewable;
	v->expire_ms = ttl ? mono_ms() + ttl * 1000 : 0;
	if (ttl != 0)
		atimer_set(v, renewable ? NEXT_RENEW : NEXT_RELOGIN,
		    half < VAULT_RENEW_FLOOR_MS ? VAULT_RENEW_FLOOR_MS : half);
	else
		evtimer_del(v->atimer);
	TAILQ_FOREACH(p, &v->paths, entry)
		if (p->want && !p->req.running)
			path_read(p);
}

/* A renewal or ahead-of-expiry login failed while the token still works. */
static void
auth_retry_proactive(struct vault *v, enum auth_next next, const char *why)
{
	unsigned long long	now = mono_ms(), d;

	v->proactive = 0;
	if (token_expired(v)) {
		auth_begin(v);
		return;
	}
	log_warn("vault: %s the token failed: %s; retrying while it lasts",
	    next == NEXT_RENEW ? "renewing" : "replacing", why);
	d = backoff_next(&v->abackoff, v->backoff_max);
	if (v->expire_ms != 0 && now + d > v->expire_ms)
		d = v->expire_ms - now;
	atimer_set(v, next, d);
}

/* The answer to a renew-self. */
static void
auth_renewed(struct vault *v, const struct tokinfo *ti)
{
	unsigned long long	 old = v->expire_ms, now = mono_ms();
	const char		*why;

	if (ti->ttl == 0 || now + ti->ttl * 1000 < old + VAULT_RENEW_MIN_MS) {
		log_info("vault: renewal no longer extends the token (max TTL?); "
		    "authenticating again ahead of expiry");
		v->expire_ms = now + ti->ttl * 1000;
		v->proactive = 1;
		if (auth_send(v, &why) == -1)
			auth_retry_proactive(v, NEXT_RELOGIN, why);
		return;
	}
	log_debug("vault: token renewed (ttl %llus)", ti->ttl);
	auth_ok(v, ti->ttl, ti->renewable);
}

/* Parse a token answer into ti; -1 with *why. */
static int
auth_parse(struct evbuffer *body, struct tokinfo *ti, const char **why)
{
	const char	*json;
	size_t		 len;

	json = body_view(body, &len);
	if (jw_parse(json, len, tok_value, ti, why) == -1)
		return -1;
	if (!ti->has_ttl)
		return (*why = "no TTL in the answer", -1);
	return 0;
}

/* Why an authentication answer with this status failed. */
static const char *
auth_status_why(enum auth_step step, int status)
{
	if (status == 503)
		return "vault sealed or unavailable";
	if (step == STEP_LOGIN && (status == 400 || status == 403))
		return "vault refused the AppRole login (role_id or secret_id)";
	if (step == STEP_LOGIN && status == 404)
		return "no AppRole auth method at approle_mount";
	if (step == STEP_LOOKUP && status == 403)
		return "vault refused the token from token_file";
	if (step == STEP_RENEW && status == 403)
		return "vault refused to renew the token";
	return status_why(status);
}

/* The answer to a login, lookup-self or renew-self. */
static void
auth_done(struct vreq *r, struct evbuffer *body)
{
	struct vault	*v = r->v;
	struct tokinfo	 ti;
	const char	*why = NULL;
	int		 proactive = v->proactive;

	memset(&ti, 0, sizeof(ti));
	ti.section = v->step == STEP_LOOKUP ? "data" : "auth";
	ti.ttl_key = v->step == STEP_LOOKUP ? "ttl" : "lease_duration";
	if (r->err != UP_OK)
		why = transport_why(r->err);
	else if (r->status != 200) {
		why = auth_status_why(v->step, r->status);
		snprintf(r->detail, sizeof(r->detail), "HTTP %d", r->status);
	} else if (auth_parse(body, &ti, &why) == -1)
		;
	else if (v->step == STEP_LOGIN && (ti.token == NULL ||
	    !printable(ti.token->p, ti.token->len, 0)))
		why = "no usable client_token in the answer";
	v->proactive = 0;
	if (why != NULL) {
		secret_free(ti.token);
		if (v->step == STEP_RENEW && r->status >= 400 && r->status < 500) {
			log_info("vault: renewal refused (HTTP %d); authenticating again",
			    r->status);
			auth_begin(v);
		} else if (v->step == STEP_LOOKUP && r->status >= 400 && r->status < 500)
			auth_fail(v, why, r->detail);	/* the token in use is refused */
		else if (proactive)
			auth_retry_proactive(v, v->step == STEP_RENEW ? NEXT_RENEW :
			    NEXT_RELOGIN, why);
		else
			auth_fail(v, why, r->detail);
		return;
	}
	switch (v->step) {
	case STEP_LOGIN:
		token_set(v, ti.token);
		auth_ok(v, ti.ttl, ti.renewable);
		break;
	case STEP_LOOKUP:
		auth_ok(v, ti.ttl, ti.renewable);
		break;
	case STEP_RENEW:
		secret_free(ti.token);
		auth_renewed(v, &ti);
		break;
	}
}

/* Time to authenticate, renew or replace the token. */
static void
atimer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vault	*v = arg;
	const char	*why = "out of memory";

	if (v->areq.running)
		return;
	switch (v->anext) {
	case NEXT_BEGIN:
		v->auth = AUTH_BUSY;
		v->proactive = 0;
		if (auth_send(v, &why) == -1)
			auth_fail(v, why, NULL);
		break;
	case NEXT_RENEW:
		v->proactive = 1;
		v->step = STEP_RENEW;
		if (vreq_send(&v->areq, "POST", "/v1/auth/token/renew-self",
		    (const unsigned char *)"{}", 2, 1) == -1)
			auth_retry_proactive(v, NEXT_RENEW, why);
		break;
	case NEXT_RELOGIN:
		v->proactive = 1;
		if (auth_send(v, &why) == -1)
			auth_retry_proactive(v, NEXT_RELOGIN, why);
		break;
	}
}

/* ------------------------------------------------------------ set-up */

/* Split https://HOST[:PORT][/] into uc's up_host, up_port, up_host_is_ip. */
static int
vault_addr(const char *u, struct conf *uc, const char **why)
{
	const char	*h, *end, *port = "443";
	unsigned char	 buf[16];
	size_t		 plen = 3, i;

	if (strncmp(u, "https://", 8) != 0)
		return (*why = "must start with https:// (Vault is only reached over TLS)", -1);
	h = u + 8;
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL)
			return (*why = "unterminated IPv6 address", -1);
		uc->up_host = strndup(h + 1, (size_t)(end - h - 1));
		end++;
	} else {
		end = h + strcspn(h, ":/?#");
		uc->up_host = strndup(h, (size_t)(end - h));
	}
	if (uc->up_host == NULL || *uc->up_host == '\0')
		return (*why = "missing host", -1);
	if (*end == ':') {
		port = end + 1;
		plen = strcspn(port, "/?#");
		for (i = 0; i < plen; i++)
			if (port[i] < '0' || port[i] > '9')
				return (*why = "invalid port", -1);
		if (plen == 0 || plen > 5 || atoi(port) < 1 || atoi(port) > 65535)
			return (*why = "invalid port", -1);
		end = port + plen;
	}
	if (*end != '\0' && strcmp(end, "/") != 0)
		return (*why = "must not carry a path, query or fragment", -1);
	if ((uc->up_port = strndup(port, plen)) == NULL)
		return (*why = "out of memory", -1);
	uc->up_host_is_ip = inet_pton(AF_INET, uc->up_host, buf) == 1 ||
	    inet_pton(AF_INET6, uc->up_host, buf) == 1;
	return 0;
}

static const char *
nz(const char *s)
{
	return s != NULL && *s != '\0' ? s : NULL;
}

/* Check the auth settings and copy them; -1 with *cause. */
static int
vault_conf_auth(struct vault *v, const struct conf *c, char **cause)
{
	const char	*tf = nz(c->vault_token_file), *rid = nz(c->vault_role_id);
	const char	*sf = nz(c->vault_secret_id_file), *mnt = nz(c->vault_approle_mount);
	char		*login;

	if (tf != NULL && (rid != NULL || sf != NULL))
		return (*cause = fmt_alloc("[vault] set either token_file or role_id + "
		    "secret_id_file, not both"), -1);
	if (tf == NULL && (rid == NULL || sf == NULL))
		return (*cause = fmt_alloc("[vault] needs token_file, or role_id and "
		    "secret_id_file (AppRole)"), -1);
	if ((tf != NULL && tf[0] != '/') || (sf != NULL && sf[0] != '/'))
		return (*cause = fmt_alloc("[vault] %s: path must be absolute",
		    tf ? "token_file" : "secret_id_file"), -1);
	if (rid != NULL && (strlen(rid) > VAULT_MAX_ROLE_ID ||
	    !printable((const unsigned char *)rid, strlen(rid), 0)))
		return (*cause = fmt_alloc("[vault] role_id: must be printable ASCII "
		    "without spaces"), -1);
	if (mnt == NULL)
		mnt = "approle";
	if (!path_ok(mnt, strlen(mnt)) || strlen(mnt) > VAULT_MAX_SOURCE)
		return (*cause = fmt_alloc("[vault] approle_mount: invalid path"), -1);
	if (tf != NULL)
		v->token_file = strdup(tf);
	else {
		v->role_id = strdup(rid);
		v->secret_id_file = strdup(sf);
		v->login_url = url_make("auth", "/", mnt);
		if (v->role_id == NULL || v->secret_id_file == NULL || v->login_url == NULL ||
		    (login = fmt_alloc("%s/login", v->login_url)) == NULL)
			return (*cause = fmt_alloc("[vault] out of memory"), -1);
		free(v->login_url);
		v->login_url = login;
	}
	if (tf != NULL && v->token_file == NULL)
		return (*cause = fmt_alloc("[vault] out of memory"), -1);
	return 0;
}

/* Read the credentials once now, so that a bad file is reported at start. */
static int
vault_conf_creds(struct vault *v, char **cause)
{
	struct secret	*s;
	char		*src, *why = NULL;

	if (v->token_file != NULL) {
		if ((s = token_file_read(v)) == NULL)
			return (*cause = fmt_alloc("[vault] token_file %s: cannot be "
			    "used (see the log)", v->token_file), -1);
		token_set(v, s);
		v->token_fresh = 1;
		return 0;
	}
	if ((src = fmt_alloc("file:%s", v->secret_id_file)) == NULL)
		return (*cause = NULL, -1);
	s = secret_load(src, &why);
	free(src);
	if (s == NULL) {
		*cause = fmt_alloc("[vault] secret_id_file %s", why ? why : "out of memory");
		free(why);
		return -1;
	}
	secret_free(s);
	return 0;
}

/* The Host header value: [v6]:port, port omitted when 443. */
static char *
host_header(const struct conf *uc)
{
	int	v6 = strchr(uc->up_host, ':') != NULL;

	if (strcmp(uc->up_port, "443") == 0)
		return fmt_alloc("%s%s%s", v6 ? "[" : "", uc->up_host, v6 ? "]" : "");
	return fmt_alloc("%s%s%s:%s", v6 ? "[" : "", uc->up_host, v6 ? "]" : "",
	    uc->up_port);
}

/* Build the TLS pool towards Vault; -1 with *cause. */
static int
vault_conf_pool(struct vault *v, struct event_base *base, struct evdns_base *dns,
    const struct conf *c, char **cause)
{
	struct conf	 uc;
	const char	*why;
	char		*ucause = NULL;
	unsigned	 t = c->vault_timeout_ms ? c->vault_timeout_ms : 10000;
	int		 rc = -1;

	memset(&uc, 0, sizeof(uc));
	uc.upstream_url = c->vault_address;
	uc.ca_file = c->vault_ca_file != NULL ? c->vault_ca_file : "";
	uc.connect_timeout_ms = uc.handshake_timeout_ms = uc.timeout_ms = t;
	uc.upstream_max_connections = VAULT_MAX_CONNECTIONS;
	uc.upstream_idle_timeout_ms = VAULT_IDLE_MS;
	uc.max_response_bytes = VAULT_MAX_RESPONSE;
	if (vault_addr(c->vault_address, &uc, &why) == -1) {
		*cause = fmt_alloc("[vault] address %s: %s", c->vault_address, why);
		goto out;
	}
	if ((v->host_hdr = host_header(&uc)) == NULL) {
		*cause = fmt_alloc("[vault] out of memory");
		goto out;
	}
	if ((v->up = upstream_new(base, dns, &uc, &ucause)) == NULL) {
		*cause = fmt_alloc("[vault] ca_file %s: cannot be loaded%s%s",
		    *uc.ca_file ? uc.ca_file : "(system store)",
		    ucause ? ": " : "", ucause ? ucause : "");
		goto out;
	}
	upstream_set_label(v->up, "vault");
	rc = 0;
out:
	free(ucause);
	free(uc.up_host);
	free(uc.up_port);
	return rc;
}

/* Check c's [vault] settings without touching files or the network. */
int
vault_conf_check(const struct conf *c, char **cause)
{
	struct vault	 v;
	struct conf	 uc;
	const char	*ns = nz(c->vault_namespace), *why;
	int		 rc = -1;

	*cause = NULL;
	memset(&v, 0, sizeof(v));
	memset(&uc, 0, sizeof(uc));
	if (nz(c->vault_address) == NULL)
		*cause = fmt_alloc("[vault] address is not set");
	else if (vault_addr(c->vault_address, &uc, &why) == -1)
		*cause = fmt_alloc("[vault] address %s: %s", c->vault_address, why);
	else if (ns != NULL && (strlen(ns) > VAULT_MAX_NAMESPACE ||
	    !printable((const unsigned char *)ns, strlen(ns), 0)))
		*cause = fmt_alloc("[vault] namespace: must be printable ASCII without spaces");
	else if (vault_conf_auth(&v, c, cause) == 0)
		rc = 0;
	if (rc == -1 && *cause == NULL)
		*cause = fmt_alloc("[vault] out of memory");
	free(uc.up_host);
	free(uc.up_port);
	free(v.token_file);
	free(v.role_id);
	free(v.secret_id_file);
	free(v.login_url);
	return rc;
}

/* Start a client. */
struct vault *
vault_new(struct event_base *base, struct evdns_base *dns, const struct conf *c,
    char **cause)
{
	struct vault	*v;
	const char	*ns = nz(c->vault_namespace);

	if (vault_conf_check(c, cause) == -1)
		return NULL;
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		*cause = fmt_alloc("[vault] out of memory");
		return NULL;
	}
	TAILQ_INIT(&v->paths);
	v->base = base;
	v->refresh_ms = c->vault_refresh_ms ? c->vault_refresh_ms : 60000;
	v->backoff_max = v->refresh_ms < VAULT_BACKOFF_MAX_MS ? v->refresh_ms :
	    VAULT_BACKOFF_MAX_MS;
	if (ns != NULL && (v->ns = strdup(ns)) == NULL)
		goto fail;
	if (vault_conf_auth(v, c, cause) == -1 ||
	    vault_conf_pool(v, base, dns, c, cause) == -1)
		goto fail;
	if ((v->reqbuf = scratch_new(VAULT_REQ_BYTES)) == NULL ||
	    (v->bodybuf = scratch_new(VAULT_BODY_BYTES)) == NULL ||
	    (v->atimer = evtimer_new(base, atimer_cb, v)) == NULL ||
	    vreq_init(&v->areq, v, auth_done, &v->areq) == -1)
		goto fail;
	if (vault_conf_creds(v, cause) == -1)
		goto fail;
	v->auth = AUTH_NONE;
	atimer_set(v, NEXT_BEGIN, 0);
	return v;
fail:
	if (*cause == NULL)
		*cause = fmt_alloc("[vault] out of memory");
	vault_free(v);
	return NULL;
}

/* Cancel everything and cleanse the tokens. */
void
vault_free(struct vault *v)
{
	struct vault_path	*p;

	if (v == NULL)
		return;
	while ((p = TAILQ_FIRST(&v->paths)) != NULL) {
		TAILQ_REMOVE(&v->paths, p, entry);
		path_free(p);
	}
	vreq_clear(&v->areq);
	if (v->atimer != NULL)
		event_free(v->atimer);
	secret_free(v->token);
	secret_free(v->reqbuf);
	secret_free(v->bodybuf);
	if (v->up != NULL)
		upstream_unref(v->up);
	free(v->host_hdr);
	free(v->ns);
	free(v->token_file);
	free(v->role_id);
	free(v->secret_id_file);
	free(v->login_url);
	free(v);
}

/* ------------------------------------------------------------ watches */

static struct vault_path *
path_new(struct vault *v, const char *mount, const char *path)
{
	struct vault_path	*p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->v = v;
	TAILQ_INIT(&p->watches);
	p->mount = strdup(mount);
	p->path = strdup(path);
	p->url = url_make(mount, "/data/", path);
	p->timer = evtimer_new(v->base, path_timer_cb, p);
	p->kick = event_new(v->base, -1, 0, path_kick_cb, p);
	if (p->mount == NULL || p->path == NULL || p->url == NULL || p->timer == NULL ||
	    p->kick == NULL || vreq_init(&p->req, v, path_done, &p->req) == -1) {
		path_free(p);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&v->paths, p, entry);
	return p;
}

/* Watch MOUNT/PATH. */
struct vault_watch *
vault_watch(struct vault *v, const char *mount, const char *path, vault_cb cb, void *arg)
{
	struct vault_path	*p;
	struct vault_watch	*w;
	int			 fresh = 0;

	if (strchr(mount, '/') != NULL || !path_ok(mount, strlen(mount)) ||
	    !path_ok(path, strlen(path)) || strlen(mount) + strlen(path) > VAULT_MAX_SOURCE)
		return NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	TAILQ_FOREACH(p, &v->paths, entry)
		if (strcmp(p->mount, mount) == 0 && strcmp(p->path, path) == 0)
			break;
	if (p == NULL) {
		if ((p = path_new(v, mount, path)) == NULL) {
			free(w);
			return NULL;
		}
		fresh = 1;
	}
	w->p = p;
	w->cb = cb;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&p->watches, w, entry);
	if (fresh)
		path_read(p);
	else if (p->kv != NULL)
		event_active(p->kick, EV_TIMEOUT, 1);
	return w;
}

/* Stop a watch (deferred while callbacks run). */
void
vault_unwatch(struct vault_watch *w)
{
	struct vault	*v;

	if (w == NULL || w->dead)
		return;
	v = w->p->v;
	w->dead = 1;
	if (v->busy > 0)
		v->reap = 1;
	else
		vault_reap(v);
}

/*
 * Re-read everything now; retry a failing authentication now; with a token
 * file, check the file for a new token.  Ignored from inside a callback (a
 * failure callback that refreshes would otherwise spin).
 */
void
vault_refresh_all(struct vault *v)
{
	struct vault_path	*p;

	if (v->busy)
		return;
	if (v->auth == AUTH_FAILED)
		auth_begin(v);
	else if (v->auth == AUTH_OK && v->token_file != NULL && !v->areq.running)
		atimer_set(v, NEXT_RELOGIN, 0);
	TAILQ_FOREACH(p, &v->paths, entry)
		if (!p->req.running)
			path_read(p);
}

static int
streq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* 1 if a client built for a serves b's [vault] section unchanged. */
int
vault_conf_same(const struct conf *a, const struct conf *b)
{
	return streq(a->vault_address, b->vault_address) &&
	    streq(a->vault_ca_file, b->vault_ca_file) &&
	    streq(a->vault_namespace, b->vault_namespace) &&
	    streq(a->vault_token_file, b->vault_token_file) &&
	    streq(a->vault_role_id, b->vault_role_id) &&
	    streq(a->vault_secret_id_file, b->vault_secret_id_file) &&
	    streq(a->vault_approle_mount, b->vault_approle_mount) &&
	    a->vault_refresh_ms == b->vault_refresh_ms &&
	    a->vault_timeout_ms == b->vault_timeout_ms;
}

const char *
vault_watch_detail(const struct vault_watch *w)
{
	return w == NULL ? "" : w->p->detail;
}

long long
vault_watch_age_ms(const struct vault_watch *w)
{
	if (w == NULL || w->p->ok_ms == 0)
		return -1;
	return (long long)(mono_ms() - w->p->ok_ms);
}

long long
vault_watch_failing_ms(const struct vault_watch *w)
{
	if (w == NULL || w->p->fail_ms == 0)
		return 0;
	return (long long)(mono_ms() - w->p->fail_ms);
}

/* Authenticated and every watched path's last read succeeded. */
int
vault_healthy(const struct vault *v)
{
	const struct vault_path	*p;

	if (v == NULL || v->auth != AUTH_OK || token_expired(v))
		return 0;
	TAILQ_FOREACH(p, &v->paths, entry)
		if (!p->last_ok)
			return 0;
	return 1;
}
