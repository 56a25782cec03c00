/*
 * conf.c — configuration schema, parsing and validation.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ini.h>

#include "conf.h"
#include "fmt.h"
#include "policy.h"
#include "redact.h"
#include "secret.h"

enum conf_type { T_STR, T_UINT, T_SIZE, T_BOOL, T_OCTAL, T_ENUM };

struct conf_key {
	const char	*section;
	const char	*name;
	enum conf_type	 type;
	size_t		 off;
	unsigned long long min, max;
	const char	*def;		/* default as text, NULL = none */
	const char	*choices;	/* T_ENUM: "a|b|c", index stored as int */
	const char	*help;
};

#define O(f)	offsetof(struct conf, f)
static const struct conf_key conf_schema[] = {
	{ "listen", "address", T_STR, O(listen_address), 0, 0, "127.0.0.1:8780", NULL,
	  "HOST:PORT (loopback unless allow_non_loopback) or unix:/path" },
	{ "listen", "socket_mode", T_OCTAL, O(socket_mode), 0, 0777, "0660", NULL,
	  "permissions of a unix socket; world-writable modes are refused" },
	{ "listen", "socket_group", T_STR, O(socket_group), 0, 0, "", NULL,
	  "group owning a unix socket (with socket_mode 0660: who may connect); empty = ours" },
	{ "listen", "allow_non_loopback", T_BOOL, O(allow_non_loopback), 0, 1, "no", NULL,
	  "permit a TCP address that is not loopback" },
	{ "listen", "max_body_bytes", T_SIZE, O(max_body_bytes), 2, 64ULL << 20, "1048576", NULL,
	  "largest request body accepted (413 above)" },
	{ "listen", "max_header_bytes", T_SIZE, O(max_header_bytes), 1024, 65536, "16384", NULL,
	  "largest request line plus headers (400 above)" },
	{ "listen", "max_json_depth", T_UINT, O(max_json_depth), 1, 512, "64", NULL,
	  "deepest JSON nesting accepted in a body (400 above)" },
	{ "listen", "max_connections", T_UINT, O(max_connections), 1, 1000000, "1024", NULL,
	  "concurrent client connections; further ones wait in the kernel backlog" },
	{ "listen", "header_timeout_ms", T_UINT, O(header_timeout_ms), 100, 3600000, "10000", NULL,
	  "time allowed to send the request line and headers (from their first byte)" },
	{ "listen", "body_timeout_ms", T_UINT, O(body_timeout_ms), 100, 3600000, "30000", NULL,
	  "time allowed to receive the whole request body" },
	{ "listen", "idle_timeout_ms", T_UINT, O(idle_timeout_ms), 100, 86400000, "60000", NULL,
	  "keep-alive idle time before a client connection is closed" },
	{ "listen", "shutdown_timeout_ms", T_UINT, O(shutdown_timeout_ms), 0, 3600000, "30000", NULL,
	  "on SIGTERM, how long in-flight requests may finish" },
	{ "upstream", "url", T_STR, O(upstream_url), 0, 0, "https://ocp.onchainpay.io", NULL,
	  "https://HOST[:PORT] of the OnChainPay API (no path)" },
	{ "upstream", "ca_file", T_STR, O(ca_file), 0, 0, "", NULL,
	  "PEM CA bundle to verify the upstream; empty = system trust store" },
	{ "upstream", "connect_timeout_ms", T_UINT, O(connect_timeout_ms), 1, 600000, "5000", NULL,
	  "TCP connect timeout (504 when exceeded)" },
	{ "upstream", "handshake_timeout_ms", T_UINT, O(handshake_timeout_ms), 1, 600000, "5000", NULL,
	  "TLS handshake timeout (504 when exceeded)" },
	{ "upstream", "timeout_ms", T_UINT, O(timeout_ms), 1, 3600000, "30000", NULL,
	  "total time for one upstream exchange (504); KYT calls take >15 s" },
	{ "upstream", "max_connections", T_UINT, O(upstream_max_connections), 1, 10000, "64", NULL,
	  "kept-alive TLS connections to the upstream; more requests queue" },
	{ "upstream", "idle_timeout_ms", T_UINT, O(upstream_idle_timeout_ms), 100, 3600000, "30000", NULL,
	  "an idle upstream connection is closed after this" },
	{ "upstream", "max_response_bytes", T_SIZE, O(max_response_bytes), 1024, 1ULL << 30, "16777216", NULL,
	  "largest upstream answer relayed (502 above, nothing partial)" },
	{ "state", "dir", T_STR, O(state_dir), 0, 0, NULL, NULL,
	  "directory for nonce reservations; default $STATE_DIRECTORY or /var/lib/ocp-proxy" },
	{ "audit", "path", T_STR, O(audit_path), 0, 0, "/var/log/ocp-proxy/audit.jsonl", NULL,
	  "append-only JSON lines audit trail" },
	{ "audit", "bodies", T_ENUM, O(audit_bodies), 0, 0, "redacted", "redacted|none",
	  "log request and response bodies redacted, or not at all" },
	{ "audit", "redact", T_STR, O(audit_redact), 0, 0,
	  "password, secret, signature, requestHeaders, requestBody", NULL,
	  "JSON keys whose values are replaced at any depth" },
	{ "audit", "sync", T_ENUM, O(audit_sync), 0, 0, "batch", "batch|always|none",
	  "fsync before forwarding: grouped (batch), per request (always), never (none)" },
	{ "audit", "chain_key", T_STR, O(audit_chain_key), 0, 0, "", NULL,
	  "secret source of the key for the tamper-evident chain and fingerprints" },
	{ "audit", "redact_mode", T_ENUM, O(audit_redact_mode), 0, 0, "mask", "mask|fingerprint",
	  "replace redacted values by \"[REDACTED]\" or a keyed fingerprint" },
	{ "vault", "address", T_STR, O(vault_address), 0, 0, "", NULL,
	  "https://HOST:PORT of HashiCorp Vault, needed by vault: secret sources" },
	{ "vault", "ca_file", T_STR, O(vault_ca_file), 0, 0, "", NULL,
	  "PEM CA bundle to verify Vault; empty = system trust store" },
	{ "vault", "namespace", T_STR, O(vault_namespace), 0, 0, "", NULL,
	  "X-Vault-Namespace sent with every request (Vault Enterprise), empty = none" },
	{ "vault", "token_file", T_STR, O(vault_token_file), 0, 0, "", NULL,
	  "file holding a Vault token (mode 0600); or use role_id + secret_id_file" },
	{ "vault", "role_id", T_STR, O(vault_role_id), 0, 0, "", NULL,
	  "AppRole role_id (not secret)" },
	{ "vault", "secret_id_file", T_STR, O(vault_secret_id_file), 0, 0, "", NULL,
	  "file holding the AppRole secret_id (mode 0600)" },
	{ "vault", "approle_mount", T_STR, O(vault_approle_mount), 0, 0, "approle", NULL,
	  "mount path of the AppRole auth method" },
	{ "vault", "refresh_ms", T_UINT, O(vault_refresh_ms), 1000, 86400000, "60000", NULL,
	  "how often each Vault secret is re-read (new versions take effect)" },
	{ "vault", "max_stale_ms", T_UINT, O(vault_max_stale_ms), 0, 604800000, "3600000", NULL,
	  "how long the last good key serves while Vault is unreachable (then 503)" },
	{ "vault", "timeout_ms", T_UINT, O(vault_timeout_ms), 100, 600000, "10000", NULL,
	  "timeout of one Vault request" },
	{ "log", "level", T_STR, O(log_level), 0, 0, "info", NULL,
	  "error, warning, info (one line per request) or debug" },
};
#undef O
#define NKEYS	(sizeof(conf_schema) / sizeof(conf_schema[0]))
_Static_assert(NKEYS <= CONF_MAX_KEYS, "raise CONF_MAX_KEYS");

/*
 * inih's section buffer (MAX_SECTION): it cuts longer names to 49 bytes, so
 * the reader keeps the whole name of the header it saw (a line holds at most
 * 198 characters) and the handler only matches inih's cut form against it.
 */
#define CONF_INI_SECTION	50
#define CONF_SECT_NAME		256
_Static_assert(CONF_MAX_PROFILE_NAME <= POLICY_NAME_MAX, "a caller's profiles item must fit");

static const struct {
	const char *name, *help;
} conf_profile_keys[] = {
	{ "public_key", "the API public key: literal text or a secret source" },
	{ "secret", "file:/path, credential:NAME, env:VAR or vault:MOUNT/PATH#FIELD" },
	{ "routes", "comma-separated path prefixes served with this key pair" },
};

struct conf_parse {
	struct conf	*c;
	struct conf_errs *errs;
	const char	*name;
	FILE		*f;
	const char	*str;		/* when parsing a string */
	int		 lineno;
	int		 toolong;
	int		 prev_key;	/* inih would take an indented line as more value */
	/* the section keys now go to, as inih names it (cut), and whole */
	char		 sect[CONF_INI_SECTION];
	char		 sect_name[CONF_SECT_NAME];
	int		 sect_seen;	/* 0 before the first header */
	int		 sect_ok;	/* its header passed: take its keys */
	size_t		 sect_prof;	/* [profile.NAME]: the profile */
};

/* Append one problem line. */
void
conf_errs_add(struct conf_errs *e, const char *fmt, ...)
{
	va_list	  ap;
	char	 *s, **n;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	va_end(ap);
	if (s == NULL || (n = realloc(e->line, (e->n + 1) * sizeof(*n))) == NULL) {
		free(s);
		return;
	}
	e->line = n;
	e->line[e->n++] = s;
}

/* 1 if schema entry i is [section] key (key NULL: any key of section). */
static int
conf_schema_is(size_t i, const char *section, const char *key)
{
	return strcmp(conf_schema[i].section, section) == 0 &&
	    (key == NULL || strcmp(conf_schema[i].name, key) == 0);
}

/* The schema entry of [section] key (key NULL: the first of section), or -1. */
static int
conf_schema_find(const char *section, const char *key)
{
	size_t	i;

	for (i = 0; i < NKEYS; i++)
		if (conf_schema_is(i, section, key))
			return (int)i;
	return -1;
}

/* The index of a [profile.NAME] key, or -1. */
static int
conf_profile_key_find(const char *key)
{
	int	k;

	for (k = 0; k < 3; k++)
		if (key != NULL && strcmp(key, conf_profile_keys[k].name) == 0)
			return k;
	return -1;
}

/* One problem line placed at line (0: neither the key nor its section is in the file). */
static void
conf_errs_vat(struct conf_errs *e, const char *file, int line, const char *section,
    const char *pname, const char *key, const char *fmt, va_list ap)
{
	char	*msg, sect[128];

	if (vasprintf(&msg, fmt, ap) == -1)
		return;
	snprintf(sect, sizeof(sect), "%s%s", section, pname ? pname : "");
	if (line > 0)
		conf_errs_add(e, "%s:%d: [%s]%s%s: %s", file ? file : "?", line, sect,
		    key ? " " : "", key ? key : "", msg);
	else
		conf_errs_add(e, "%s: [%s]%s%s: %s (the file has no [%s] section: %s)",
		    file ? file : "?", sect, key ? " " : "", key ? key : "", msg, sect,
		    key ? "the default applies" : "defaults apply");
	free(msg);
}

/* The line of [section] key: the key's own, else its section header's. */
static int
conf_key_line(const struct conf *c, const char *section, const char *key)
{
	int	i;

	if ((i = conf_schema_find(section, key)) == -1)
		return 0;
	return key != NULL && c->key_line[i] > 0 ? c->key_line[i] : c->sect_line[i];
}

static void
conf_errs_vkey(struct conf_errs *e, const struct conf *c, const char *section,
    const char *key, const char *fmt, va_list ap)
{
	conf_errs_vat(e, c->path, conf_key_line(c, section, key), section, NULL, key, fmt, ap);
}

static void
conf_errs_vprofile(struct conf_errs *e, const struct conf *c, const struct conf_profile *pr,
    const char *key, const char *fmt, va_list ap)
{
	int	k = conf_profile_key_find(key);

	conf_errs_vat(e, c->path, k >= 0 && pr->key_line[k] > 0 ? pr->key_line[k] : pr->line,
	    "profile.", pr->name, key, fmt, ap);
}

/* A problem with [section] key, at its line. */
void
conf_errs_key(struct conf_errs *e, const struct conf *c, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	conf_errs_vkey(e, c, section, key, fmt, ap);
	va_end(ap);
}

/* A problem with a key of [profile.NAME], at its line. */
void
conf_errs_profile(struct conf_errs *e, const struct conf *c, const struct conf_profile *pr,
    const char *key, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	conf_errs_vprofile(e, c, pr, key, fmt, ap);
	va_end(ap);
}

/* conf.c's own problems also mark the key, so that -t checks only sound ones further. */
static void
conf_problem(struct conf_errs *e, struct conf *c, const char *section, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void
conf_problem(struct conf_errs *e, struct conf *c, const char *section, const char *key,
    const char *fmt, ...)
{
	va_list	ap;
	size_t	i;

	for (i = 0; i < NKEYS; i++)
		if (conf_schema_is(i, section, key))
			c->key_bad[i] = 1;
	va_start(ap, fmt);
	conf_errs_vkey(e, c, section, key, fmt, ap);
	va_end(ap);
}

static void
conf_pproblem(struct conf_errs *e, struct conf *c, struct conf_profile *pr, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void
conf_pproblem(struct conf_errs *e, struct conf *c, struct conf_profile *pr, const char *key,
    const char *fmt, ...)
{
	va_list	ap;

	pr->bad = 1;
	va_start(ap, fmt);
	conf_errs_vprofile(e, c, pr, key, fmt, ap);
	va_end(ap);
}

/* A cause that names its key ("[upstream] ca_file PATH: ...") goes to that key's line. */
void
conf_errs_cause(struct conf_errs *e, const struct conf *c, const char *section,
    const char *cause)
{
	char	 key[32];
	size_t	 n = strlen(section), k;

	if (cause[0] == '[' && strncmp(cause + 1, section, n) == 0 && cause[n + 1] == ']') {
		cause += n + 2;
		cause += strspn(cause, " ");
	}
	k = strspn(cause, "abcdefghijklmnopqrstuvwxyz_");
	if (k > 0 && k < sizeof(key)) {
		memcpy(key, cause, k);
		key[k] = '\0';
		if (conf_schema_find(section, key) != -1) {
			cause += k;
			cause += strspn(cause, ": ");
			conf_errs_key(e, c, section, key, "%s", cause);
			return;
		}
	}
	conf_errs_key(e, c, section, NULL, "%s", cause);
}

/* 1 unless a problem was reported for [section] key (key NULL: for any of its keys). */
int
conf_key_ok(const struct conf *c, const char *section, const char *key)
{
	size_t	i;

	for (i = 0; i < NKEYS; i++)
		if (c->key_bad[i] && conf_schema_is(i, section, key))
			return 0;
	return 1;
}

/* Free every problem line. */
void
conf_errs_clear(struct conf_errs *e)
{
	size_t	i;

	for (i = 0; i < e->n; i++)
		free(e->line[i]);
	free(e->line);
	e->line = NULL;
	e->n = 0;
}

/* Parse an unsigned decimal (or octal) integer within [min, max]. */
static int
conf_number(const char *v, int base, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
	char			*end;
	unsigned long long	 n;

	if (*v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoull(v, &end, base);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return -1;
	*out = n;
	return 0;
}

static int
conf_enum(const char *choices, const char *v)
{
	const char	*p = choices, *bar;
	size_t		 len = strlen(v);
	int		 i = 0;

	for (;;) {
		bar = strchr(p, '|');
		if ((size_t)((bar ? bar : p + strlen(p)) - p) == len && strncmp(p, v, len) == 0)
			return i;
		if (bar == NULL)
			return -1;
		p = bar + 1;
		i++;
	}
}

/* Store one value according to its schema entry. */
static int
conf_set(struct conf *c, const struct conf_key *k, const char *v, const char **why)
{
	void			*field = (char *)c + k->off;
	unsigned long long	 n;
	int			 e;

	switch (k->type) {
	case T_STR:
		free(*(char **)field);
		if ((*(char **)field = strdup(v)) == NULL)
			return (*why = "out of memory", -1);
		return 0;
	case T_UINT:
	case T_SIZE:
		if (conf_number(v, 10, k->min, k->max, &n) == -1) {
			*why = "must be an integer in range";
			return -1;
		}
		if (k->type == T_UINT)
			*(unsigned *)field = (unsigned)n;
		else
			*(size_t *)field = (size_t)n;
		return 0;
	case T_OCTAL:
		if (conf_number(v, 8, k->min, k->max, &n) == -1)
			return (*why = "must be an octal mode such as 0660", -1);
		*(unsigned *)field = (unsigned)n;
		return 0;
	case T_BOOL:
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			*(int *)field = 0;
		else
			return (*why = "must be yes or no", -1);
		return 0;
	case T_ENUM:
		if ((e = conf_enum(k->choices, v)) == -1)
			return (*why = "not one of the allowed values", -1);
		*(int *)field = e;
		return 0;
	}
	return -1;
}

static int
conf_profile_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > CONF_MAX_PROFILE_NAME)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static struct conf_profile *
conf_profile_get(struct conf_parse *p, const char *name, size_t *idx, int line)
{
	struct conf	*c = p->c;
	size_t		 i;

	for (i = 0; i < c->nprofiles; i++)
		if (strcmp(c->profiles[i].name, name) == 0)
			return (*idx = i, &c->profiles[i]);
	if (c->nprofiles == CONF_MAX_PROFILES)
		return NULL;
	i = c->nprofiles++;
	c->profiles[i].name = strdup(name);
	c->profiles[i].line = line;
	*idx = i;
	return &c->profiles[i];
}

/* Split "a, b, c" into routes. */
static int
conf_routes(struct conf_profile *pr, const char *v, const char **why)
{
	char	*copy, *tok, *save = NULL, *t;

	if ((copy = strdup(v)) == NULL)
		return (*why = "out of memory", -1);
	for (tok = strtok_r(copy, ", \t", &save); tok != NULL; tok = strtok_r(NULL, ", \t", &save)) {
		t = fmt_trim(tok);
		if (*t != '/' || strstr(t, "..") != NULL || strpbrk(t, "?#%") != NULL) {
			free(copy);
			return (*why = "each route must be a path prefix starting with '/'", -1);
		}
		if (pr->nroutes == CONF_MAX_ROUTES) {
			free(copy);
			return (*why = "too many routes", -1);
		}
		pr->routes[pr->nroutes++] = strdup(t);
	}
	free(copy);
	if (pr->nroutes == 0)
		return (*why = "needs at least one route", -1);
	return 0;
}

/* One key of a [profile.NAME] section whose header was fine. */
static void
conf_profile_key(struct conf_parse *p, struct conf_profile *pr, const char *name,
    const char *v)
{
	const char	*why = NULL;
	int		 k;

	if ((k = conf_profile_key_find(name)) == -1) {
		pr->bad = 1;
		conf_errs_add(p->errs, "%s:%d: [profile.%s] %s: unknown key", p->name,
		    p->lineno, pr->name, name);
		return;
	}
	if (pr->key_line[k] != 0) {
		pr->bad = 1;
		conf_errs_add(p->errs, "%s:%d: [profile.%s] %s: duplicate key", p->name,
		    p->lineno, pr->name, name);
		return;
	}
	pr->key_line[k] = p->lineno;
	if (k == 0)
		pr->public_key = strdup(v);
	else if (k == 1) {
		if (!secret_is_source(v))
			why = "must be a secret source: file:, credential:, env: or vault: "
			    "(the secret itself never goes in the config)";
		else
			pr->secret = strdup(v);
	} else
		(void)conf_routes(pr, v, &why);
	if (why != NULL)
		conf_pproblem(p->errs, p->c, pr, name, "%s", why);
}

/*
 * A section starts.  Called by the reader for every header line, keys or
 * not, and by the handler should inih name a section the reader did not
 * see: one check of the name against the schema, one problem line per
 * header, and the keys of a refused section are not reported again.
 */
static void
conf_section(struct conf_parse *p, const char *name, int line)
{
	const char	*why = NULL;
	size_t		 i;

	snprintf(p->sect, sizeof(p->sect), "%s", name);		/* cut as inih does */
	snprintf(p->sect_name, sizeof(p->sect_name), "%s", name);
	p->sect_seen = 1;
	p->sect_ok = 0;
	if (strncmp(name, "profile.", 8) == 0) {
		if (!conf_profile_name_ok(name + 8))
			conf_errs_add(p->errs, "%s:%d: [%s]: profile names use letters, digits, "
			    "'-' and '_' only, at most %d of them", p->name, line, name,
			    CONF_MAX_PROFILE_NAME);
		else if (conf_profile_get(p, name + 8, &p->sect_prof, line) == NULL)
			conf_errs_add(p->errs, "%s:%d: [%s]: too many profiles (max %d)",
			    p->name, line, name, CONF_MAX_PROFILES);
		else
			p->sect_ok = 1;
		return;
	}
	if (strncmp(name, "caller.", 7) == 0) {
		if (p->c->policy == NULL)
			return;		/* reported by conf_validate */
		if (policy_conf_section(p->c->policy, name + 7, line, &why) == -1)
			conf_errs_add(p->errs, "%s:%d: [%s]: %s", p->name, line, name, why);
		else
			p->sect_ok = 1;
		return;
	}
	for (i = 0; i < NKEYS; i++)
		if (conf_schema_is(i, name, NULL)) {
			p->sect_ok = 1;
			if (p->c->sect_line[i] == 0)
				p->c->sect_line[i] = line;
		}
	if (!p->sect_ok)
		conf_errs_add(p->errs, "%s:%d: [%s]: unknown section", p->name, line, name);
}

/* inih handler: fills the schema, reports the line. */
static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct conf_parse	*p = user;
	const char		*why = NULL;
	int			 i;

	if (p->toolong)
		return 1;	/* already reported by the reader */
	if (!p->sect_seen && *section == '\0') {
		conf_errs_add(p->errs, "%s:%d: %s: key before the first [section] header",
		    p->name, p->lineno, name);
		return 1;
	}
	if (!p->sect_seen || strcmp(section, p->sect) != 0)
		conf_section(p, section, p->lineno);
	if (!p->sect_ok)
		return 1;	/* the header's problem is reported */
	section = p->sect_name;		/* inih's may be cut */
	if (strncmp(section, "profile.", 8) == 0) {
		conf_profile_key(p, &p->c->profiles[p->sect_prof], name, value);
		return 1;
	}
	if (strncmp(section, "caller.", 7) == 0) {
		if (policy_conf_key(p->c->policy, section + 7, name, value, p->lineno,
		    &why) == -1)
			conf_errs_add(p->errs, "%s:%d: [%s] %s: %s", p->name, p->lineno, section,
			    name, why);
		return 1;
	}
	if ((i = conf_schema_find(section, name)) == -1)
		conf_errs_add(p->errs, "%s:%d: [%s] %s: unknown key", p->name, p->lineno,
		    section, name);
	else if (p->c->key_line[i] != 0) {
		p->c->key_bad[i] = 1;
		conf_errs_add(p->errs, "%s:%d: [%s] %s: duplicate key", p->name,
		    p->lineno, section, name);
	} else {
		p->c->key_line[i] = p->lineno;
		if (conf_set(p->c, &conf_schema[i], value, &why) == -1) {
			p->c->key_bad[i] = 1;
			conf_errs_add(p->errs, "%s:%d: [%s] %s: %s", p->name, p->lineno,
			    section, name, why);
		}
	}
	return 1;
}

/*
 * inih's find_chars_or_comment(): the first of chars, or of an inline ';'
 * comment (after a space), or the end.
 */
static const char *
conf_ini_find(const char *s, const char *chars)
{
	int	was_space = 0;

	while (*s != '\0' && strchr(chars, *s) == NULL && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

/*
 * See section headers as inih does (inih calls the handler for keys only,
 * so an empty section would pass unseen): skip a BOM and blanks, comments
 * and indented value continuations; "[NAME]" whole (inih cuts it to 49
 * bytes).  inih ignores what follows the ']': only blanks and a ';' comment
 * may, as after a value ('#' starts a comment only at the start of a line).
 */
static void
conf_reader_line(struct conf_parse *p, const char *line)
{
	const char	*s = line, *end, *rest;
	char		 name[CONF_SECT_NAME];
	size_t		 n;

	if (p->lineno == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (p->prev_key && s > line)
		return;		/* more of the previous value */
	if (*s != '[') {
		end = conf_ini_find(s, "=:");
		if (*end == '=' || *end == ':')
			p->prev_key = 1;
		return;
	}
	if (*(end = conf_ini_find(s + 1, "]")) != ']')
		return;		/* a syntax error, reported from inih's answer */
	if ((n = (size_t)(end - s - 1)) >= sizeof(name))
		n = sizeof(name) - 1;
	memcpy(name, s + 1, n);
	name[n] = '\0';
	p->prev_key = 0;
	conf_section(p, name, p->lineno);
	for (rest = end + 1; isspace((unsigned char)*rest); rest++)
		;
	if (*rest != '\0' && *rest != ';')
		conf_errs_add(p->errs, "%s:%d: [%s]: text after the section header (only a "
		    "';' comment may follow the ']')", p->name, p->lineno, name);
}

/* inih reader: counts lines and refuses lines inih would split. */
static char *
conf_reader(char *str, int num, void *stream)
{
	struct conf_parse	*p = stream;
	size_t			 len = 0;
	int			 ch;

	p->toolong = 0;
	for (;;) {
		if (p->str != NULL)
			ch = *p->str != '\0' ? (unsigned char)*p->str++ : EOF;
		else
			ch = getc(p->f);
		if (ch == EOF) {
			if (len == 0)
				return NULL;
			break;
		}
		if (len + 2 < (size_t)num)
			str[len++] = (char)ch;
		else if (ch != '\n')
			p->toolong = 1;
		if (ch == '\n')
			break;
	}
	str[len] = '\0';
	p->lineno++;
	if (p->toolong) {
		conf_errs_add(p->errs, "%s:%d: line longer than %d characters", p->name,
		    p->lineno, num - 2);
		str[0] = '\0';	/* inih sees an empty line */
	} else
		conf_reader_line(p, str);
	return str;
}

static void
conf_defaults(struct conf *c)
{
	const char	*why;
	size_t		 i;

	for (i = 0; i < sizeof(conf_schema) / sizeof(conf_schema[0]); i++)
		if (conf_schema[i].def != NULL)
			(void)conf_set(c, &conf_schema[i], conf_schema[i].def, &why);
	c->policy = policy_new();
}

struct conf_perr {
	struct conf_errs	*errs;
	const char		*name;
};

static void
conf_policy_err(void *arg, int line, const char *caller, const char *msg)
{
	struct conf_perr	*pe = arg;

	if (line > 0)
		conf_errs_add(pe->errs, "%s:%d: [caller.%s]: %s", pe->name, line, caller, msg);
	else
		conf_errs_add(pe->errs, "%s: [caller.%s]: %s", pe->name, caller, msg);
}

/* Split https://HOST[:PORT] into host and port. */
static int
conf_url(struct conf *c, const char **why)
{
	const char	*u = c->upstream_url, *h, *colon, *end;
	unsigned long long port;
	unsigned char	 buf[16];

	if (strncmp(u, "https://", 8) != 0)
		return (*why = "must start with https://", -1);
	h = u + 8;
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL)
			return (*why = "unterminated IPv6 address", -1);
		c->up_host = strndup(h + 1, (size_t)(end - h - 1));
		colon = end[1] == ':' ? end + 1 : NULL;
		end++;
		if (*end != '\0' && *end != ':' && strcmp(end, "/") != 0)
			return (*why = "must not carry a path", -1);
	} else {
		end = h + strcspn(h, ":/?#");
		c->up_host = strndup(h, (size_t)(end - h));
		colon = *end == ':' ? end : NULL;
	}
	if (c->up_host == NULL || *c->up_host == '\0')
		return (*why = "missing host", -1);
	if (colon != NULL) {
		char port_s[8];
		size_t n = strcspn(colon + 1, "/");
		if (n == 0 || n >= sizeof(port_s))
			return (*why = "invalid port", -1);
		memcpy(port_s, colon + 1, n);
		port_s[n] = '\0';
		if (conf_number(port_s, 10, 1, 65535, &port) == -1)
			return (*why = "invalid port", -1);
		end = colon + 1 + n;
		c->up_port = strdup(port_s);
	} else
		c->up_port = strdup("443");
	if (*end != '\0' && strcmp(end, "/") != 0)
		return (*why = "must not carry a path, query or fragment", -1);
	c->up_host_is_ip = inet_pton(AF_INET, c->up_host, buf) == 1 ||
	    inet_pton(AF_INET6, c->up_host, buf) == 1;
	return 0;
}

/*
 * 1 if the TCP listen address is a loopback one: a literal in 127.0.0.0/8,
 * [::1], or localhost.  A name that only starts like one ("127.example.net")
 * would be resolved by getaddrinfo() and could bind anywhere.
 */
static int
conf_is_loopback(const char *addr)
{
	const char	*colon = strrchr(addr, ':');
	char		 host[INET6_ADDRSTRLEN + 2];
	unsigned char	 a[16];
	size_t		 n;

	if (colon == NULL || (n = (size_t)(colon - addr)) >= sizeof(host))
		return 0;
	memcpy(host, addr, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
		host[n - 1] = '\0';
		return inet_pton(AF_INET6, host + 1, a) == 1 &&
		    memcmp(a, &in6addr_loopback, sizeof(a)) == 0;
	}
	return 0;
}

/* 0 if the TCP listen address ends in ":PORT" with PORT 0..65535. */
static int
conf_listen_port(const char *addr)
{
	const char		*colon = strrchr(addr, ':');
	unsigned long long	 port;

	if (colon == NULL || colon == addr)
		return -1;
	return conf_number(colon + 1, 10, 0, 65535, &port);
}

/* Whole-config checks once every line is in; each problem at its key's line. */
static void
conf_validate(struct conf *c, struct conf_errs *errs, const char *name)
{
	const char	*why = NULL, *dir;
	struct redact_set *rs;
	char		*cause = NULL;
	size_t		 i, j, k, l;

	if (conf_url(c, &why) == -1)
		conf_problem(errs, c, "upstream", "url", "%s", why);
	if (strncmp(c->listen_address, "unix:", 5) == 0) {
		if (c->listen_address[5] != '/')
			conf_problem(errs, c, "listen", "address",
			    "unix socket path must be absolute");
		if (c->socket_mode & 0002)
			conf_problem(errs, c, "listen", "socket_mode",
			    "world-writable socket modes are refused");
	} else if (conf_listen_port(c->listen_address) == -1)
		conf_problem(errs, c, "listen", "address",
		    "expected HOST:PORT or unix:/path (PORT 0-65535)");
	else if (!c->allow_non_loopback && !conf_is_loopback(c->listen_address))
		conf_problem(errs, c, "listen", "address", "%s is not a loopback address "
		    "(set allow_non_loopback = yes to permit it)", c->listen_address);
	if (c->state_dir != NULL && *c->state_dir == '\0') {
		free(c->state_dir);
		c->state_dir = NULL;
	}
	if (c->state_dir == NULL) {
		dir = getenv("STATE_DIRECTORY");
		c->state_dir = strdup(dir != NULL && *dir != '\0' ? dir : "/var/lib/ocp-proxy");
		if (c->state_dir != NULL && strchr(c->state_dir, ':') != NULL)
			c->state_dir[strcspn(c->state_dir, ":")] = '\0';
	}
	if (c->state_dir == NULL || c->state_dir[0] != '/')
		conf_problem(errs, c, "state", "dir", "must be an absolute path");
	if (c->audit_path[0] != '/')
		conf_problem(errs, c, "audit", "path", "must be an absolute path");
	if ((rs = redact_set_new(c->audit_redact, &cause)) == NULL) {
		conf_problem(errs, c, "audit", "redact", "%s", cause ? cause : "invalid");
		free(cause);
	}
	redact_set_free(rs);
	if (*c->vault_address != '\0') {
		if (strncmp(c->vault_address, "https://", 8) != 0)
			conf_problem(errs, c, "vault", "address", "must start with https://");
		if (*c->vault_token_file == '\0' &&
		    (*c->vault_role_id == '\0' || *c->vault_secret_id_file == '\0'))
			conf_problem(errs, c, "vault", NULL, "set token_file, or role_id and "
			    "secret_id_file (AppRole)");
		if (*c->vault_token_file != '\0' && *c->vault_role_id != '\0')
			conf_problem(errs, c, "vault", "role_id", "token_file and role_id "
			    "exclude each other: choose one auth method");
	}
	if (strncmp(c->audit_chain_key, "vault:", 6) == 0)
		conf_problem(errs, c, "audit", "chain_key", "use file:, credential: or env: "
		    "(the chain key is needed before Vault is reachable)");
	else if (*c->audit_chain_key != '\0' && !secret_is_source(c->audit_chain_key))
		conf_problem(errs, c, "audit", "chain_key", "must be a secret source: file:, "
		    "credential:, env: or vault:");
	if (c->audit_redact_mode == REDACT_MODE_FINGERPRINT && *c->audit_chain_key == '\0')
		conf_problem(errs, c, "audit", "redact_mode", "fingerprint needs chain_key");
	if (c->nprofiles == 0)
		conf_errs_add(errs, "%s: no [profile.NAME] section: nothing to sign with", name);
	if (c->policy == NULL)
		conf_errs_add(errs, "%s: out of memory", name);
	else {
		const char *pn[CONF_MAX_PROFILES];
		struct conf_perr pe = { errs, name };
		for (i = 0; i < c->nprofiles; i++)
			pn[i] = c->profiles[i].name;
		(void)policy_validate(c->policy, conf_policy_err, &pe, pn, c->nprofiles);
		if (policy_ncallers(c->policy) == 0 && c->allow_non_loopback &&
		    strncmp(c->listen_address, "unix:", 5) != 0 &&
		    !conf_is_loopback(c->listen_address))
			conf_problem(errs, c, "listen", "address", "without [caller.*] sections "
			    "the proxy serves only loopback or a unix socket (any local process "
			    "may call it); name the callers to listen elsewhere");
	}
	for (i = 0; i < c->nprofiles; i++) {
		struct conf_profile *p = &c->profiles[i];
		/* a key that is there but refused was reported already */
		for (k = 0; k < 3; k++)
			if (p->key_line[k] == 0)
				conf_pproblem(errs, c, p, conf_profile_keys[k].name, "missing");
		if (p->public_key != NULL && *p->public_key == '\0')
			conf_pproblem(errs, c, p, "public_key", "must not be empty");
		if (*c->vault_address == '\0') {
			if (p->secret && strncmp(p->secret, "vault:", 6) == 0)
				conf_pproblem(errs, c, p, "secret", "a vault: source needs "
				    "[vault] address");
			else if (p->public_key && strncmp(p->public_key, "vault:", 6) == 0)
				conf_pproblem(errs, c, p, "public_key", "a vault: source needs "
				    "[vault] address");
		}
		/* equal text, literal or the same source: the same key (loaded ones: gen_load) */
		for (j = 0; j < i && p->public_key != NULL && *p->public_key != '\0'; j++)
			if (c->profiles[j].public_key != NULL &&
			    strcmp(p->public_key, c->profiles[j].public_key) == 0) {
				conf_pproblem(errs, c, p, "public_key", CONF_SAME_PUBLIC_KEY,
				    c->profiles[j].name);
				break;
			}
		for (j = 0; j < i; j++)
			for (k = 0; k < p->nroutes; k++)
				for (l = 0; l < c->profiles[j].nroutes; l++)
					if (strcmp(p->routes[k], c->profiles[j].routes[l]) == 0)
						conf_pproblem(errs, c, p, "routes", "%s is also "
						    "a route of profile %s", p->routes[k],
						    c->profiles[j].name);
	}
	if (c->log_level != NULL && strcmp(c->log_level, "error") != 0 &&
	    strcmp(c->log_level, "warning") != 0 && strcmp(c->log_level, "info") != 0 &&
	    strcmp(c->log_level, "debug") != 0)
		conf_problem(errs, c, "log", "level", "must be error, warning, info or debug");
}

/* Parse and validate; keep: return the conf even with problems (-t). */
static struct conf *
conf_parse(struct conf_parse *p, int keep)
{
	size_t	before = p->errs->n;
	int	rc;

	if ((p->c = calloc(1, sizeof(*p->c))) == NULL)
		return NULL;
	conf_defaults(p->c);
	if ((p->c->path = strdup(p->name)) == NULL) {
		conf_free(p->c);
		return NULL;
	}
	rc = ini_parse_stream(conf_reader, p, conf_handler, p);
	if (rc > 0)
		conf_errs_add(p->errs, "%s:%d: syntax error (expected [section] or key = value)",
		    p->name, rc);
	else if (rc < 0)
		conf_errs_add(p->errs, "%s: cannot parse", p->name);
	conf_validate(p->c, p->errs, p->name);
	if (p->errs->n != before && !keep) {
		conf_free(p->c);
		return NULL;
	}
	return p->c;
}

static struct conf *
conf_load_file(const char *path, struct conf_errs *errs, int keep)
{
	struct conf_parse	 p;
	struct conf		*c;

	memset(&p, 0, sizeof(p));
	p.errs = errs;
	p.name = path;
	if ((p.f = fopen(path, "re")) == NULL) {
		conf_errs_add(errs, "%s: %s", path, strerror(errno));
		return NULL;
	}
	c = conf_parse(&p, keep);
	fclose(p.f);
	return c;
}

/* Parse and validate a config file. */
struct conf *
conf_load(const char *path, struct conf_errs *errs)
{
	return conf_load_file(path, errs, 0);
}

/* -t: parse and validate, and keep what was read for the checks that follow. */
struct conf *
conf_load_check(const char *path, struct conf_errs *errs)
{
	return conf_load_file(path, errs, 1);
}

/* Parse and validate config text. */
struct conf *
conf_load_string(const char *text, const char *name, struct conf_errs *errs)
{
	struct conf_parse	p;

	memset(&p, 0, sizeof(p));
	p.errs = errs;
	p.name = name;
	p.str = text;
	return conf_parse(&p, 0);
}

/* Free a conf; accepts NULL. */
void
conf_free(struct conf *c)
{
	size_t	i, j;

	if (c == NULL)
		return;
	for (i = 0; i < sizeof(conf_schema) / sizeof(conf_schema[0]); i++)
		if (conf_schema[i].type == T_STR)
			free(*(char **)((char *)c + conf_schema[i].off));
	for (i = 0; i < c->nprofiles; i++) {
		free(c->profiles[i].name);
		free(c->profiles[i].public_key);
		free(c->profiles[i].secret);
		for (j = 0; j < c->profiles[i].nroutes; j++)
			free(c->profiles[i].routes[j]);
	}
	policy_free(c->policy);
	free(c->path);
	free(c->up_host);
	free(c->up_port);
	free(c);
}

/* Longest-prefix route lookup. */
const struct conf_profile *
conf_route(const struct conf *c, const char *path, size_t len, size_t *index)
{
	const struct conf_profile	*best = NULL;
	size_t				 i, j, rl, bestlen = 0;

	for (i = 0; i < c->nprofiles; i++) {
		for (j = 0; j < c->profiles[i].nroutes; j++) {
			rl = strlen(c->profiles[i].routes[j]);
			if (rl <= len && rl > bestlen &&
			    memcmp(path, c->profiles[i].routes[j], rl) == 0) {
				best = &c->profiles[i];
				bestlen = rl;
				*index = i;
			}
		}
	}
	return best;
}

/* Print the schema: every key, its default and its help. */
void
conf_dump_schema(void)
{
	const char	*last = "";
	size_t		 i;

	for (i = 0; i < sizeof(conf_schema) / sizeof(conf_schema[0]); i++) {
		const struct conf_key *k = &conf_schema[i];
		if (strcmp(last, k->section) != 0)
			printf("%s[%s]\n", i ? "\n" : "", k->section);
		last = k->section;
		printf("; %s\n%s = %s\n", k->help, k->name, k->def ? k->def : "");
	}
	printf("\n[profile.NAME]\n");
	for (i = 0; i < 3; i++)
		printf("; %s\n%s =\n", conf_profile_keys[i].help, conf_profile_keys[i].name);
	printf("\n[caller.NAME]\t; see docs/callers.md\n"
	    "; unix socket peer: uid and/or gid; TCP: token_sha256 (ocp-proxy hash-token)\n"
	    "uid =\ngid =\ntoken_sha256 =\n"
	    "; profiles this caller may use (default: all)\nprofiles =\n"
	    "; exact API paths, or prefixes ending in '*' (default: the whole API catalogue)\n"
	    "allow =\n"
	    "; token bucket: requests per second and burst; requests in flight\n"
	    "rate_per_s =\nburst =\nmax_concurrent =\n"
	    "; PATH:FIELD=DECIMAL upper bounds and PATH:FIELD=A|B sets on the body\n"
	    "field_max =\nfield_in =\n");
}
