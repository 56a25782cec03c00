/*
 * policy.c — caller identity and per-caller policy ([caller.NAME] sections).
 *
 * Everything a caller section says is parsed once into struct caller; a
 * request then costs an identity lookup, a few string compares and, only for
 * paths with field rules, one yajl pass over the body.  Decimals are compared
 * as digit strings, never as floating point.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yajl/yajl_parse.h>

#include "catalogue.h"
#include "fmt.h"
#include "policy.h"
#include "yarena.h"

#define POLICY_UTOKEN	1000000ULL	/* one bucket token in micro-tokens */

enum policy_key {
	K_UID, K_GID, K_TOKEN, K_PROFILES, K_ALLOW, K_RATE, K_BURST, K_CONC,
	K_FMAX, K_FIN, K_NKEYS
};

static const char *const policy_keys[K_NKEYS] = {
	"uid", "gid", "token_sha256", "profiles", "allow", "rate_per_s", "burst",
	"max_concurrent", "field_max", "field_in"
};

#define HAS(c, k)	(((c)->have >> (k)) & 1U)

struct allow_item {
	char		*text;		/* without the final '*' */
	size_t		 len;
	int		 prefix;	/* ended in '*' */
	int		 covers_cat;	/* a prefix of some catalogue path */
};

enum rule_kind { RULE_MAX, RULE_IN };

struct field_rule {
	enum rule_kind	 kind;
	char		*path;
	char		*field;
	size_t		 field_len;
	char		*value;		/* the bound, or the set as "A|B|C" */
	char		**set;		/* RULE_IN: the members */
	size_t		 nset;
	int		 line;
};

struct caller {
	char		*name;
	int		 line;		/* first line of the section */
	unsigned	 seen;		/* keys given (bit per enum policy_key) */
	unsigned	 have;		/* keys given with a valid value */
	int		 key_line[K_NKEYS];	/* first line of each key */
	int		 cur_line;		/* line being parsed */
	unsigned	 uid, gid;
	unsigned char	 token[32];
	char		 token_hex[65];
	char		**profiles;
	size_t		 nprofiles;
	struct allow_item *allow;
	size_t		 nallow;
	unsigned long long rate_milli;	/* tokens per 1000 s */
	unsigned	 burst;
	unsigned	 max_conc;
	struct field_rule *rules;
	size_t		 nrules;
	/* run-time state */
	unsigned long long tokens_u;	/* micro-tokens in the bucket */
	unsigned long long last_ms;
	int		 bucket_started;
	unsigned	 active;
};

struct policy {
	struct caller	**c;
	size_t		  n;
};

/* A decimal split into sign, integer and fraction digits, normalised. */
struct pdec {
	int		 neg;
	const char	*ip;		/* integer digits without leading zeros */
	size_t		 il;
	const char	*fp;		/* fraction digits without trailing zeros */
	size_t		 fl;
};

/* Allocate an empty policy. */
struct policy *
policy_new(void)
{
	return calloc(1, sizeof(struct policy));
}

/* Free a vector of strings. */
static void
policy_strv_free(char **v, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Free one field rule's members. */
static void
policy_rule_clear(struct field_rule *r)
{
	free(r->path);
	free(r->field);
	free(r->value);
	policy_strv_free(r->set, r->nset);
}

/* Drop the field rules from index n on (those a failed line added). */
static void
policy_rules_truncate(struct caller *c, size_t n)
{
	while (c->nrules > n)
		policy_rule_clear(&c->rules[--c->nrules]);
}

/* Drop the allow items from index n on. */
static void
policy_allow_truncate(struct caller *c, size_t n)
{
	while (c->nallow > n)
		free(c->allow[--c->nallow].text);
}

/* Drop the profiles from index n on. */
static void
policy_profiles_truncate(struct caller *c, size_t n)
{
	while (c->nprofiles > n)
		free(c->profiles[--c->nprofiles]);
}

/* Free a caller; accepts NULL. */
static void
caller_free(struct caller *c)
{
	if (c == NULL)
		return;
	free(c->name);
	policy_strv_free(c->profiles, c->nprofiles);
	policy_allow_truncate(c, 0);
	free(c->allow);
	policy_rules_truncate(c, 0);
	free(c->rules);
	OPENSSL_cleanse(c->token, sizeof(c->token));
	free(c);
}

/* Free a policy; accepts NULL. */
void
policy_free(struct policy *p)
{
	size_t	i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++)
		caller_free(p->c[i]);
	free(p->c);
	free(p);
}

/* Number of callers (0: the open default applies). */
size_t
policy_ncallers(const struct policy *p)
{
	return p != NULL ? p->n : 0;
}

/* The i-th caller in config order, or NULL. */
const struct caller *
policy_caller(const struct policy *p, size_t i)
{
	return p != NULL && i < p->n ? p->c[i] : NULL;
}

/* The NAME of [caller.NAME]. */
const char *
caller_name(const struct caller *c)
{
	return c->name;
}

/* 1 for a token caller, 0 for a unix peer caller. */
int
caller_is_token(const struct caller *c)
{
	return HAS(c, K_TOKEN) ? 1 : 0;
}

/* The caller of that name, created at line if new; NULL when full. */
static struct caller *
policy_get(struct policy *p, const char *name, int line, const char **why)
{
	struct caller	*c, **v;
	size_t		 i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->c[i]->name, name) == 0)
			return p->c[i];
	if (p->n == POLICY_MAX_CALLERS) {
		*why = "too many [caller.*] sections";
		return NULL;
	}
	if ((v = realloc(p->c, (p->n + 1) * sizeof(*v))) == NULL)
		goto nomem;
	p->c = v;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	if ((c->name = strdup(name)) == NULL) {
		free(c);
		goto nomem;
	}
	c->line = line;
	p->c[p->n++] = c;
	return c;
nomem:
	*why = "out of memory";
	return NULL;
}

/* Declare a section (even an empty one). */
int
policy_conf_section(struct policy *p, const char *name, int line, const char **why)
{
	return policy_get(p, name != NULL ? name : "", line, why) == NULL ? -1 : 0;
}

/* An ASCII decimal digit (no locale). */
static int
policy_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* An unsigned decimal integer in [min, max], digits only. */
static int
policy_uint(const char *v, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long	n = 0;
	size_t			i;

	if (*v == '\0')
		return -1;
	for (i = 0; v[i] != '\0'; i++) {
		if (!policy_digit(v[i]) || n > (max - (unsigned)(v[i] - '0')) / 10)
			return -1;
		n = n * 10 + (unsigned)(v[i] - '0');
	}
	if (n < min)
		return -1;
	*out = n;
	return 0;
}

/* Parse s[0..len) as a plain decimal (see policy.h) into *d. */
static int
pdec_parse(const char *s, size_t len, struct pdec *d)
{
	size_t	i = 0;

	memset(d, 0, sizeof(*d));
	if (len > 0 && s[0] == '-') {
		d->neg = 1;
		i++;
	}
	d->ip = s + i;
	while (i < len && policy_digit(s[i]))
		i++;
	d->il = (size_t)(s + i - d->ip);
	if (d->il == 0 || (d->il > 1 && d->ip[0] == '0'))
		return -1;
	d->fp = s + i;
	if (i < len && s[i] == '.') {
		d->fp = s + ++i;
		while (i < len && policy_digit(s[i]))
			i++;
		if ((d->fl = (size_t)(s + i - d->fp)) == 0)
			return -1;
	}
	if (i != len || d->il + d->fl > POLICY_MAX_DIGITS)
		return -1;
	if (d->il == 1 && d->ip[0] == '0')
		d->il = 0;
	while (d->fl > 0 && d->fp[d->fl - 1] == '0')
		d->fl--;
	if (d->il == 0 && d->fl == 0)
		d->neg = 0;	/* -0 is 0 */
	return 0;
}

/* Compare the magnitudes of two normalised decimals. */
static int
pdec_mag(const struct pdec *a, const struct pdec *b)
{
	size_t	n = a->fl < b->fl ? a->fl : b->fl;
	int	r;

	if (a->il != b->il)
		return a->il < b->il ? -1 : 1;
	if (a->il > 0 && (r = memcmp(a->ip, b->ip, a->il)) != 0)
		return r < 0 ? -1 : 1;
	if (n > 0 && (r = memcmp(a->fp, b->fp, n)) != 0)
		return r < 0 ? -1 : 1;
	if (a->fl != b->fl)	/* the longer one has a non-zero digit more */
		return a->fl < b->fl ? -1 : 1;
	return 0;
}

/* Compare two normalised decimals: -1, 0 or 1. */
static int
pdec_cmp(const struct pdec *a, const struct pdec *b)
{
	int	m;

	if (a->neg != b->neg)
		return a->neg ? -1 : 1;
	m = pdec_mag(a, b);
	return a->neg ? -m : m;
}

/* Compare two plain decimals. */
int
policy_decimal_cmp(const char *a, size_t alen, const char *b, size_t blen, int *cmp)
{
	struct pdec	da, db;

	if (a == NULL || b == NULL || pdec_parse(a, alen, &da) == -1 ||
	    pdec_parse(b, blen, &db) == -1)
		return -1;
	*cmp = pdec_cmp(&da, &db);
	return 0;
}

/*
 * A path as the proxy forwards it: '/' then visible ASCII, without what
 * client.c refuses ("//", "/.", '%', '?', '#', '\\').  star: a final '*'
 * is allowed (an allow prefix); elsewhere '*' is refused.
 */
static int
policy_path_ok(const char *s, size_t len, int star)
{
	size_t	i;

	if (len == 0 || len > POLICY_MAX_ITEM || s[0] != '/')
		return 0;
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f ||
		    strchr("%?#\\", s[i]) != NULL)
			return 0;
		if (s[i] == '*' && !(star && i == len - 1))
			return 0;
		if (s[i] == '/' && i + 1 < len && (s[i + 1] == '/' || s[i + 1] == '.'))
			return 0;
	}
	return 1;
}

/* Letters, digits, '-' and '_' (profile and caller names, field names). */
static int
policy_name_ok(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > POLICY_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    policy_digit(s[i]) || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

typedef int (*policy_item_fn)(struct caller *, char *item, const char **why);

/*
 * Call fn for each comma-separated item of v, trimmed.  Empty items are
 * skipped (a trailing comma before an inih continuation line is natural),
 * but a line must hold at least one item.
 */
static int
policy_each(struct caller *c, const char *v, policy_item_fn fn, const char **why)
{
	char	*copy, *item, *comma;
	int	 rc = 0, n = 0;

	if ((copy = strdup(v)) == NULL)
		return (*why = "out of memory", -1);
	for (item = copy; rc == 0; item = comma + 1) {
		if ((comma = strchr(item, ',')) != NULL)
			*comma = '\0';
		item = fmt_trim(item);
		if (*item != '\0') {
			rc = fn(c, item, why);
			n++;
		}
		if (comma == NULL)
			break;
	}
	free(copy);
	if (rc == 0 && n == 0)
		return (*why = "empty list", -1);
	return rc;
}

/* One name of "profiles". */
static int
policy_profile_item(struct caller *c, char *item, const char **why)
{
	char	**v;
	size_t	  i;

	if (!policy_name_ok(item, strlen(item)))
		return (*why = "profile names use letters, digits, '-' and '_' only", -1);
	for (i = 0; i < c->nprofiles; i++)
		if (strcmp(c->profiles[i], item) == 0)
			return (*why = "a profile is named twice", -1);
	if (c->nprofiles == POLICY_MAX_PROFILES)
		return (*why = "too many profiles", -1);
	if ((v = realloc(c->profiles, (c->nprofiles + 1) * sizeof(*v))) == NULL)
		return (*why = "out of memory", -1);
	c->profiles = v;
	if ((v[c->nprofiles] = strdup(item)) == NULL)
		return (*why = "out of memory", -1);
	c->nprofiles++;
	return 0;
}

/* 1 if some catalogue path starts with s[0..len). */
static int
policy_covers_catalogue(const char *s, size_t len)
{
	size_t	i;

	for (i = 0; i < catalogue_count; i++)
		if (strncmp(catalogue_paths[i], s, len) == 0)
			return 1;
	return 0;
}

/* One path of "allow". */
static int
policy_allow_item(struct caller *c, char *item, const char **why)
{
	struct allow_item	*v, *a;
	size_t			 len = strlen(item), i;

	if (!policy_path_ok(item, len, 1))
		return (*why = "each item must be a path starting with '/' (a final '*' "
		    "makes it a prefix; no '//', '/.', '%', '?', '#', blanks)", -1);
	if (c->nallow == POLICY_MAX_ALLOW)
		return (*why = "too many allow items", -1);
	for (i = 0; i < c->nallow; i++)
		if (c->allow[i].len + (size_t)c->allow[i].prefix == len &&
		    strncmp(c->allow[i].text, item, c->allow[i].len) == 0 &&
		    c->allow[i].prefix == (item[len - 1] == '*'))
			return (*why = "a path is listed twice", -1);
	if ((v = realloc(c->allow, (c->nallow + 1) * sizeof(*v))) == NULL)
		return (*why = "out of memory", -1);
	c->allow = v;
	a = &v[c->nallow];
	a->prefix = item[len - 1] == '*';
	a->len = len - (size_t)a->prefix;
	if ((a->text = strndup(item, a->len)) == NULL)
		return (*why = "out of memory", -1);
	a->covers_cat = a->prefix && policy_covers_catalogue(a->text, a->len);
	c->nallow++;
	return 0;
}

/* Split "PATH:FIELD=VALUE" in place; 0 or -1. */
static int
policy_rule_split(char *item, char **path, char **field, char **value, const char **why)
{
	char	*colon, *eq;

	if ((colon = strchr(item, ':')) == NULL || (eq = strchr(colon, '=')) == NULL)
		return (*why = "each item must look like /path:field=value", -1);
	*colon = *eq = '\0';
	*path = fmt_trim(item);
	*field = fmt_trim(colon + 1);
	*value = fmt_trim(eq + 1);
	if (!policy_path_ok(*path, strlen(*path), 0))
		return (*why = "the path of a field rule must be an exact path "
		    "(no '*', '//', '/.', '%', '?', '#', blanks)", -1);
	if (!policy_name_ok(*field, strlen(*field)))
		return (*why = "field names use letters, digits, '-' and '_' only", -1);
	if (strcmp(*field, "nonce") == 0)
		return (*why = "the nonce is the proxy's: no field rule may name it", -1);
	if (**value == '\0')
		return (*why = "a field rule needs a value after '='", -1);
	return 0;
}

/* Split a field_in set "A|B|C" into r->set. */
static int
policy_rule_set(struct field_rule *r, const char **why)
{
	const char	*s = r->value, *bar;
	size_t		 n, i, j;

	for (;;) {
		bar = strchr(s, '|');
		n = bar != NULL ? (size_t)(bar - s) : strlen(s);
		if (n == 0 || n > POLICY_MAX_ITEM)
			return (*why = "field_in values must be non-empty, separated by '|'", -1);
		for (i = 0; i < n; i++)
			if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
				return (*why = "field_in values are visible ASCII without blanks", -1);
		for (j = 0; j < r->nset; j++)
			if (strlen(r->set[j]) == n && memcmp(r->set[j], s, n) == 0)
				return (*why = "a field_in value is listed twice", -1);
		if (r->nset == POLICY_MAX_SET)
			return (*why = "too many field_in values", -1);
		if ((r->set[r->nset] = strndup(s, n)) == NULL)
			return (*why = "out of memory", -1);
		r->nset++;
		if (bar == NULL)
			return 0;
		s = bar + 1;
	}
}

/* One item of field_max (kind RULE_MAX) or field_in. */
static int
policy_rule_item(struct caller *c, char *item, enum rule_kind kind, const char **why)
{
	struct field_rule	*v, *r;
	struct pdec		 d;
	char			*path, *field, *value;
	size_t			 i;

	if (policy_rule_split(item, &path, &field, &value, why) == -1)
		return -1;
	if (kind == RULE_MAX && pdec_parse(value, strlen(value), &d) == -1)
		return (*why = "the bound must be a plain decimal such as 1000.00", -1);
	for (i = 0; i < c->nrules; i++)
		if (c->rules[i].kind == kind && strcmp(c->rules[i].path, path) == 0 &&
		    strcmp(c->rules[i].field, field) == 0)
			return (*why = "a path:field is given twice", -1);
	if (c->nrules == POLICY_MAX_RULES)
		return (*why = "too many field rules", -1);
	if ((v = realloc(c->rules, (c->nrules + 1) * sizeof(*v))) == NULL)
		return (*why = "out of memory", -1);
	c->rules = v;
	r = &v[c->nrules++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->line = c->cur_line;
	r->field_len = strlen(field);
	if ((r->path = strdup(path)) == NULL || (r->field = strdup(field)) == NULL ||
	    (r->value = strdup(value)) == NULL ||
	    (kind == RULE_IN && (r->set = calloc(POLICY_MAX_SET, sizeof(char *))) == NULL))
		return (*why = "out of memory", -1);
	if (kind == RULE_IN)
		return policy_rule_set(r, why);
	return 0;
}

/* One item of field_max. */
static int
policy_fmax_item(struct caller *c, char *item, const char **why)
{
	return policy_rule_item(c, item, RULE_MAX, why);
}

/* One item of field_in. */
static int
policy_fin_item(struct caller *c, char *item, const char **why)
{
	return policy_rule_item(c, item, RULE_IN, why);
}

/* token_sha256: 64 lowercase hex digits. */
static int
policy_token_key(struct caller *c, const char *v, const char **why)
{
	size_t	i;
	int	hi, lo;

	for (i = 0; i < 64; i++)
		if (!policy_digit(v[i]) && !(v[i] >= 'a' && v[i] <= 'f'))
			break;
	if (i != 64 || v[64] != '\0')
		return (*why = "must be 64 lowercase hex digits: the SHA-256 of the token "
		    "from ocp-proxy hash-token, never the token itself", -1);
	for (i = 0; i < 32; i++) {
		hi = policy_digit(v[2 * i]) ? v[2 * i] - '0' : v[2 * i] - 'a' + 10;
		lo = policy_digit(v[2 * i + 1]) ? v[2 * i + 1] - '0' : v[2 * i + 1] - 'a' + 10;
		c->token[i] = (unsigned char)(hi << 4 | lo);
	}
	memcpy(c->token_hex, v, 65);
	return 0;
}

/* rate_per_s: a decimal with at most 3 fraction digits, kept in thousandths. */
static int
policy_rate_key(struct caller *c, const char *v, const char **why)
{
	struct pdec		d;
	unsigned long long	n = 0;
	size_t			i;

	if (pdec_parse(v, strlen(v), &d) == -1 || d.neg || d.fl > 3 || d.il > 6)
		goto bad;
	for (i = 0; i < d.il; i++)
		n = n * 10 + (unsigned)(d.ip[i] - '0');
	for (i = 0; i < 3; i++)
		n = n * 10 + (i < d.fl ? (unsigned)(d.fp[i] - '0') : 0);
	if (n < 1 || n > POLICY_RATE_MAX * 1000ULL)
		goto bad;
	c->rate_milli = n;
	return 0;
bad:
	*why = "must be a number of requests per second from 0.001 to 100000 "
	    "(at most 3 decimals)";
	return -1;
}

/* An integer key: uid, gid, burst or max_concurrent. */
static int
policy_int_key(struct caller *c, enum policy_key k, const char *v, const char **why)
{
	unsigned long long	n;

	switch (k) {
	case K_UID:
	case K_GID:
		if (policy_uint(v, 0, 4294967294ULL, &n) == -1)
			return (*why = "must be a numeric id from 0 to 4294967294", -1);
		*(k == K_UID ? &c->uid : &c->gid) = (unsigned)n;
		return 0;
	case K_BURST:
		if (policy_uint(v, 1, POLICY_BURST_MAX, &n) == -1)
			return (*why = "must be an integer from 1 to 1000000", -1);
		c->burst = (unsigned)n;
		return 0;
	default:
		if (policy_uint(v, 1, POLICY_CONC_MAX, &n) == -1)
			return (*why = "must be an integer from 1 to 100000", -1);
		c->max_conc = (unsigned)n;
		return 0;
	}
}

/* Store one valid value; on error leave nothing of this line behind. */
static int
policy_set(struct caller *c, enum policy_key k, const char *v, const char **why)
{
	size_t	n;
	int	rc;

	switch (k) {
	case K_TOKEN:
		return policy_token_key(c, v, why);
	case K_RATE:
		return policy_rate_key(c, v, why);
	case K_PROFILES:
		n = c->nprofiles;
		if ((rc = policy_each(c, v, policy_profile_item, why)) == -1)
			policy_profiles_truncate(c, n);
		return rc;
	case K_ALLOW:
		n = c->nallow;
		if ((rc = policy_each(c, v, policy_allow_item, why)) == -1)
			policy_allow_truncate(c, n);
		return rc;
	case K_FMAX:
	case K_FIN:
		n = c->nrules;
		rc = policy_each(c, v, k == K_FMAX ? policy_fmax_item : policy_fin_item, why);
		if (rc == -1)
			policy_rules_truncate(c, n);
		return rc;
	default:
		return policy_int_key(c, k, v, why);
	}
}

/* List keys add up over repeated lines (inih continuation lines included). */
#define POLICY_LIST_KEYS	((1U << K_PROFILES) | (1U << K_ALLOW) | (1U << K_FMAX) | \
				    (1U << K_FIN))

/* One key of a [caller.NAME] section. */
int
policy_conf_key(struct policy *p, const char *name, const char *key, const char *value,
    int line, const char **why)
{
	struct caller	*c;
	unsigned	 k;

	if (name == NULL || key == NULL || value == NULL)
		return (*why = "missing name, key or value", -1);
	if ((c = policy_get(p, name, line, why)) == NULL)
		return -1;
	for (k = 0; k < K_NKEYS; k++)
		if (strcmp(key, policy_keys[k]) == 0)
			break;
	if (k == K_NKEYS)
		return (*why = "unknown key", -1);
	if ((c->seen & (1U << k)) && !(POLICY_LIST_KEYS & (1U << k)))
		return (*why = "duplicate key", -1);
	if (!(c->seen & (1U << k)))
		c->key_line[k] = line;
	c->seen |= 1U << k;
	c->cur_line = line;
	if (*value == '\0')
		return (*why = "empty value", -1);
	if (policy_set(c, (enum policy_key)k, value, why) == -1)
		return -1;
	c->have |= 1U << k;
	return 0;
}

typedef void (*policy_err_fn)(void *, int, const char *, const char *);

static int
policy_report(policy_err_fn err, void *arg, int line, const struct caller *c,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Report one problem through the callback; returns 1 (one problem). */
static int
policy_report(policy_err_fn err, void *arg, int line, const struct caller *c,
    const char *fmt, ...)
{
	char	msg[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err != NULL)
		err(arg, line, c->name, msg);
	return 1;
}

/* Do two callers claim the same identity? */
static int
policy_same_identity(const struct caller *a, const struct caller *b)
{
	unsigned	ids = (1U << K_UID) | (1U << K_GID) | (1U << K_TOKEN);

	if ((a->have & ids) != (b->have & ids) || (a->have & ids) == 0)
		return 0;
	if (HAS(a, K_TOKEN))
		return memcmp(a->token, b->token, sizeof(a->token)) == 0;
	return (!HAS(a, K_UID) || a->uid == b->uid) && (!HAS(a, K_GID) || a->gid == b->gid);
}

/* Identity checks of caller i. */
static int
policy_validate_identity(const struct policy *p, size_t i, policy_err_fn err, void *arg)
{
	const struct caller	*c = p->c[i];
	int			 n = 0;
	size_t			 j;

	if (!HAS(c, K_UID) && !HAS(c, K_GID) && !HAS(c, K_TOKEN))
		n += policy_report(err, arg, c->line, c, "no identity: set uid and/or gid "
		    "(unix socket peers) or token_sha256 (bearer token on TCP)");
	else if (HAS(c, K_TOKEN) && (HAS(c, K_UID) || HAS(c, K_GID)))
		n += policy_report(err, arg, c->key_line[K_TOKEN], c, "token_sha256: cannot "
		    "be combined with uid or gid (a caller is a unix peer or a token holder)");
	for (j = 0; j < i; j++)
		if (policy_same_identity(c, p->c[j]))
			n += policy_report(err, arg, c->line, c, "same identity as "
			    "[caller.%s]", p->c[j]->name);
	return n;
}

/* May c call path (allow list and catalogue rule)?  0 or -1 with *rule. */
static int
policy_path_allowed(const struct caller *c, const char *path, size_t len, const char **rule)
{
	const struct allow_item	*a;
	int			 incat = catalogue_has(path, len), matched = 0, named = 0;
	size_t			 i;

	if (!HAS(c, K_ALLOW)) {
		if (!incat)
			return (*rule = POLICY_R_CATALOGUE, -1);
		return 0;
	}
	for (i = 0; i < c->nallow; i++) {
		a = &c->allow[i];
		if (a->prefix ? (a->len <= len && memcmp(a->text, path, a->len) == 0) :
		    (a->len == len && memcmp(a->text, path, len) == 0)) {
			matched = 1;
			if (!a->prefix || !a->covers_cat)
				named = 1;
		}
	}
	if (!matched)
		return (*rule = POLICY_R_ALLOW, -1);
	if (!incat && !named)
		return (*rule = POLICY_R_CATALOGUE, -1);
	return 0;
}

/* Profiles, field rules and rate keys of one caller. */
static int
policy_validate_keys(const struct caller *c, policy_err_fn err, void *arg,
    const char *const *pnames, size_t np)
{
	const char	*rule;
	size_t		 i, j;
	int		 n = 0;

	for (i = 0; i < c->nprofiles; i++) {
		for (j = 0; j < np; j++)
			if (pnames[j] != NULL && strcmp(pnames[j], c->profiles[i]) == 0)
				break;
		if (j == np)
			n += policy_report(err, arg, c->key_line[K_PROFILES], c,
			    "profiles: no [profile.%s] section", c->profiles[i]);
	}
	for (i = 0; i < c->nrules; i++)
		if (policy_path_allowed(c, c->rules[i].path, strlen(c->rules[i].path),
		    &rule) == -1)
			n += policy_report(err, arg, c->rules[i].line, c,
			    "%s: %s is not a path this caller may call (%s)",
			    c->rules[i].kind == RULE_MAX ? "field_max" : "field_in",
			    c->rules[i].path, rule);
	if (HAS(c, K_BURST) && !HAS(c, K_RATE))
		n += policy_report(err, arg, c->key_line[K_BURST], c,
		    "burst: needs rate_per_s");
	return n;
}

/* Whole-policy checks. */
int
policy_validate(const struct policy *p, policy_err_fn err, void *arg,
    const char *const *pnames, size_t np)
{
	const struct caller	*c;
	size_t			 i;
	int			 n = 0;

	for (i = 0; p != NULL && i < p->n; i++) {
		c = p->c[i];
		if (!policy_name_ok(c->name, strlen(c->name)))
			n += policy_report(err, arg, c->line, c, "caller names use letters, "
			    "digits, '-' and '_' only (at most %d)", POLICY_NAME_MAX);
		n += policy_validate_identity(p, i, err, arg);
		n += policy_validate_keys(c, err, arg, pnames, np);
	}
	return n;
}

/* Carry token buckets over a reload. */
void
policy_inherit(struct policy *p, const struct policy *old)
{
	struct caller		*c;
	const struct caller	*o;
	size_t			 i, j;

	for (i = 0; p != NULL && old != NULL && i < p->n; i++) {
		c = p->c[i];
		for (j = 0; j < old->n; j++) {
			o = old->c[j];
			if (strcmp(o->name, c->name) != 0 || !o->bucket_started ||
			    !HAS(c, K_RATE))
				continue;
			c->bucket_started = 1;
			c->last_ms = o->last_ms;
			c->tokens_u = o->tokens_u;
		}
	}
}

/* Lowercase hex SHA-256 of a token. */
void
policy_token_sha256(const char *token, size_t len, char out[65])
{
	static const char	hex[] = "0123456789abcdef";
	unsigned char		md[32];
	size_t			i;

	if (EVP_Digest(token, len, md, NULL, EVP_sha256(), NULL) != 1)
		memset(md, 0, sizeof(md));	/* matches no configured token */
	for (i = 0; i < sizeof(md); i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[64] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
}

/* The token caller whose token_sha256 is SHA-256(bearer), or NULL. */
static struct caller *
policy_identify_token(struct policy *p, const char *bearer, size_t len)
{
	struct caller	*found = NULL;
	unsigned char	 md[32];
	unsigned int	 mdlen = 0;
	size_t		 i;

	if (bearer == NULL || len == 0 || len > POLICY_BEARER_MAX ||
	    EVP_Digest(bearer, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return NULL;
	for (i = 0; i < p->n; i++)	/* every one is compared: no early exit */
		if (HAS(p->c[i], K_TOKEN) &&
		    CRYPTO_memcmp(md, p->c[i]->token, sizeof(md)) == 0)
			found = p->c[i];
	OPENSSL_cleanse(md, sizeof(md));
	return found;
}

/* The most specific unix caller matching the peer's uid and gid, or NULL. */
static struct caller *
policy_identify_unix(struct policy *p, unsigned uid, unsigned gid)
{
	struct caller	*c, *best = NULL;
	int		 score, best_score = 0;
	size_t		 i;

	for (i = 0; i < p->n; i++) {
		c = p->c[i];
		if ((!HAS(c, K_UID) && !HAS(c, K_GID)) || HAS(c, K_TOKEN) ||
		    (HAS(c, K_UID) && c->uid != uid) || (HAS(c, K_GID) && c->gid != gid))
			continue;
		score = HAS(c, K_UID) * 2 + HAS(c, K_GID);
		if (score > best_score) {
			best = c;
			best_score = score;
		}
	}
	return best;
}

/* Who is calling. */
struct caller *
policy_identify(struct policy *p, const struct policy_peer *peer)
{
	if (p == NULL || peer == NULL)
		return NULL;
	if (peer->is_unix)
		return policy_identify_unix(p, peer->uid, peer->gid);
	return policy_identify_token(p, peer->bearer, peer->bearer_len);
}

/* A token68 character other than the final '=' padding. */
static int
policy_token68(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || policy_digit(ch) ||
	    ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

/* Is t[0..len) a token68 that fits POLICY_BEARER_MAX? */
int
policy_token_valid(const char *t, size_t len)
{
	size_t	i = 0;

	if (t == NULL || len == 0 || len > POLICY_BEARER_MAX)
		return 0;
	while (i < len && policy_token68(t[i]))
		i++;
	if (i == 0)
		return 0;
	while (i < len && t[i] == '=')
		i++;
	return i == len;
}

/* The token of "Authorization: Bearer <token68>". */
int
policy_bearer(const char *v, size_t len, const char **tok, size_t *toklen)
{
	size_t	i = 6;

	if (v == NULL || len < 8 || strncasecmp(v, "Bearer", 6) != 0 || v[6] != ' ')
		return -1;
	while (i < len && v[i] == ' ')
		i++;
	if (!policy_token_valid(v + i, len - i))
		return -1;
	*tok = v + i;
	*toklen = len - i;
	return 0;
}

/* The identity for logs and the audit record. */
void
caller_describe(const struct caller *c, const struct policy_peer *peer, char *buf,
    size_t len)
{
	if (len == 0)
		return;
	if (c == NULL && peer != NULL && peer->is_unix)
		snprintf(buf, len, "uid=%u,gid=%u", peer->uid, peer->gid);
	else if (c == NULL)
		snprintf(buf, len, "token=%s", peer != NULL && peer->bearer != NULL ?
		    "unknown" : "none");
	else if (HAS(c, K_TOKEN))
		snprintf(buf, len, "token=%.16s", c->token_hex);
	else if (HAS(c, K_UID) && HAS(c, K_GID))
		snprintf(buf, len, "uid=%u,gid=%u", c->uid, c->gid);
	else if (HAS(c, K_UID))
		snprintf(buf, len, "uid=%u", c->uid);
	else if (peer != NULL && peer->is_unix)
		snprintf(buf, len, "gid=%u,uid=%u", c->gid, peer->uid);
	else
		snprintf(buf, len, "gid=%u", c->gid);
}

/* Profile and path. */
int
policy_check_request(const struct caller *c, const char *profile, const char *path,
    const char **rule)
{
	size_t	i, len;

	if (path == NULL || !policy_path_ok(path, len = strlen(path), 0))
		return (*rule = POLICY_R_CANON, -1);
	if (HAS(c, K_PROFILES)) {
		for (i = 0; profile != NULL && i < c->nprofiles; i++)
			if (strcmp(c->profiles[i], profile) == 0)
				break;
		if (profile == NULL || i == c->nprofiles)
			return (*rule = POLICY_R_PROFILE, -1);
	}
	return policy_path_allowed(c, path, len, rule);
}

/* ------------------------------------------------------------------ */
/* Field rules: one yajl pass over the body.                           */

enum fval { FV_STRING, FV_NUMBER, FV_OTHER };

struct fscan {
	const struct caller	*c;
	const char		*path;
	unsigned char		 applies[POLICY_MAX_RULES];	/* rule is for path */
	unsigned char		 pending[POLICY_MAX_RULES];	/* for the current key */
	unsigned char		 seen[POLICY_MAX_RULES];
	const char		*verdict[POLICY_MAX_RULES];	/* NULL: value passed */
	unsigned		 depth;
	int			 not_object;
	int			 nomem;
	struct fkey {
		char	*s;
		size_t	 n;
	}			*keys;		/* every top-level member name */
	size_t			 nkeys, capkeys;
};

/* The verdict of rule r on one top-level value. */
static const char *
fscan_judge(const struct field_rule *r, enum fval t, const char *s, size_t len)
{
	struct pdec	v, b;
	size_t		i;

	if (r->kind == RULE_MAX) {
		if (t == FV_OTHER || pdec_parse(s, len, &v) == -1)
			return POLICY_R_DECIMAL;
		if (pdec_parse(r->value, strlen(r->value), &b) == -1 || pdec_cmp(&v, &b) > 0)
			return POLICY_R_MAX;
		return NULL;
	}
	if (t != FV_STRING)
		return POLICY_R_IN;
	for (i = 0; i < r->nset; i++)
		if (strlen(r->set[i]) == len && memcmp(r->set[i], s, len) == 0)
			return NULL;
	return POLICY_R_IN;
}

/* A value at depth 1: judge it by every rule pending for its key. */
static void
fscan_value(struct fscan *f, enum fval t, const char *s, size_t len)
{
	size_t	i;

	for (i = 0; i < f->c->nrules; i++) {
		if (!f->pending[i])
			continue;
		f->pending[i] = 0;
		if (f->seen[i] < 2)
			f->seen[i]++;
		if (f->verdict[i] == NULL)
			f->verdict[i] = fscan_judge(&f->c->rules[i], t, s, len);
	}
}

/* A scalar: only depth 1 (inside the top-level object) matters. */
static int
fscan_scalar(struct fscan *f, enum fval t, const char *s, size_t len)
{
	if (f->depth == 0) {
		f->not_object = 1;
		return 0;
	}
	if (f->depth == 1)
		fscan_value(f, t, s, len);
	return 1;
}

/* yajl: null. */
static int
fscan_null(void *ctx)
{
	return fscan_scalar(ctx, FV_OTHER, "", 0);
}

/* yajl: true or false. */
static int
fscan_boolean(void *ctx, int v)
{
	(void)v;
	return fscan_scalar(ctx, FV_OTHER, "", 0);
}

/* yajl: a number, as its literal text. */
static int
fscan_number(void *ctx, const char *s, size_t len)
{
	return fscan_scalar(ctx, FV_NUMBER, s, len);
}

/* yajl: a string, unescaped. */
static int
fscan_string(void *ctx, const unsigned char *s, size_t len)
{
	return fscan_scalar(ctx, FV_STRING, (const char *)s, len);
}

/* '{' or '[': the top level must be an object; nested values are "other". */
static int
fscan_open(struct fscan *f, int is_map)
{
	if (f->depth == 0 && !is_map) {
		f->not_object = 1;
		return 0;
	}
	if (f->depth == 1)
		fscan_value(f, FV_OTHER, "", 0);
	f->depth++;
	return 1;
}

/* yajl: '{'. */
static int
fscan_start_map(void *ctx)
{
	return fscan_open(ctx, 1);
}

/* yajl: '['. */
static int
fscan_start_array(void *ctx)
{
	return fscan_open(ctx, 0);
}

/* yajl: '}' or ']'. */
static int
fscan_close(void *ctx)
{
	struct fscan	*f = ctx;

	f->depth--;
	return 1;
}

/* A member name: remember top-level ones, mark the rules that name it. */
static int
fscan_map_key(void *ctx, const unsigned char *key, size_t len)
{
	struct fscan	*f = ctx;
	struct fkey	*v;
	size_t		 i, cap;

	if (f->depth != 1)
		return 1;
	if (f->nkeys == f->capkeys) {
		cap = f->capkeys ? f->capkeys * 2 : 16;
		if ((v = realloc(f->keys, cap * sizeof(*v))) == NULL)
			return (f->nomem = 1, 0);
		f->keys = v;
		f->capkeys = cap;
	}
	if ((f->keys[f->nkeys].s = malloc(len + 1)) == NULL)
		return (f->nomem = 1, 0);
	memcpy(f->keys[f->nkeys].s, key, len);
	f->keys[f->nkeys++].n = len;
	for (i = 0; i < f->c->nrules; i++)
		f->pending[i] = f->applies[i] && f->c->rules[i].field_len == len &&
		    memcmp(f->c->rules[i].field, key, len) == 0;
	return 1;
}

static const yajl_callbacks fscan_callbacks = {
	fscan_null,
	fscan_boolean,
	NULL,			/* numbers come as text: fscan_number */
	NULL,
	fscan_number,
	fscan_string,
	fscan_start_map,
	fscan_map_key,
	fscan_close,
	fscan_start_array,
	fscan_close
};

/* Order member names for the duplicate check. */
static int
fkey_cmp(const void *a, const void *b)
{
	const struct fkey	*x = a, *y = b;
	size_t			 n = x->n < y->n ? x->n : y->n;
	int			 r = memcmp(x->s, y->s, n);

	if (r != 0)
		return r;
	return x->n < y->n ? -1 : x->n > y->n;
}

/* 1 if two top-level members share a name. */
static int
fscan_has_dup(struct fscan *f)
{
	size_t	i;

	if (f->nkeys < 2)
		return 0;
	qsort(f->keys, f->nkeys, sizeof(*f->keys), fkey_cmp);
	for (i = 1; i < f->nkeys; i++)
		if (fkey_cmp(&f->keys[i - 1], &f->keys[i]) == 0)
			return 1;
	return 0;
}

/* Parse the body; 0, or -1 with *rule for a body that is not an object. */
static int
fscan_run(struct fscan *f, const char *body, size_t len, const char **rule)
{
	struct yarena	ya;
	yajl_handle	h;
	int		ok;

	yarena_init(&ya);
	if ((h = yajl_alloc(&fscan_callbacks, &ya.funcs, f)) == NULL)
		return (*rule = POLICY_R_NOMEM, -1);
	ok = yajl_parse(h, (const unsigned char *)body, len) == yajl_status_ok &&
	    yajl_complete_parse(h) == yajl_status_ok;
	yajl_free(h);
	yarena_done(&ya);
	if (f->nomem)
		return (*rule = POLICY_R_NOMEM, -1);
	if (!ok || f->not_object || len == 0)
		return (*rule = POLICY_R_BODY, -1);
	return 0;
}

/* The sentence for a refused field, built from the config only (NULL: no memory). */
static char *
fscan_detail(const char *rule, const struct field_rule *r)
{
	char	*s;
	int	 n;

	if (strcmp(rule, POLICY_R_BODY) == 0)
		return strdup("the body must be one JSON object");
	if (strcmp(rule, POLICY_R_DUP) == 0)	/* no field rule behind it */
		return strdup("the body names a top-level member more than once");
	if (r == NULL)
		return strdup("out of memory");
	if (strcmp(rule, POLICY_R_MISSING) == 0)
		n = asprintf(&s, "%s is required", r->field);
	else if (strcmp(rule, POLICY_R_DECIMAL) == 0)
		n = asprintf(&s, "%s must be a plain decimal (digits with an optional '-' "
		    "and '.', at most %d digits, no exponent)", r->field, POLICY_MAX_DIGITS);
	else if (strcmp(rule, POLICY_R_MAX) == 0)
		n = asprintf(&s, "%s exceeds %s", r->field, r->value);
	else
		n = asprintf(&s, "%s must be a string, one of %s", r->field, r->value);
	return n == -1 ? NULL : s;
}

/* The first refusal, in config order: -1 with *rule and *r, or 0. */
static int
fscan_verdict(struct fscan *f, const char **rule, const struct field_rule **r)
{
	size_t	i;

	if (fscan_has_dup(f))
		return (*rule = POLICY_R_DUP, -1);
	for (i = 0; i < f->c->nrules; i++) {
		if (!f->applies[i])
			continue;
		*r = &f->c->rules[i];
		if (f->seen[i] == 0)
			return (*rule = POLICY_R_MISSING, -1);
		if (f->verdict[i] != NULL)
			return (*rule = f->verdict[i], -1);
	}
	return 0;
}

/* Field rules of the caller for path on the body. */
int
policy_check_fields(const struct caller *c, const char *path, const char *body, size_t len,
    const char **rule, char **detail)
{
	struct fscan		*f;
	const struct field_rule	*r = NULL;
	size_t			 i, n = 0;
	int			 rc = -1;

	*detail = NULL;
	*rule = NULL;
	for (i = 0; path != NULL && i < c->nrules; i++)
		n += strcmp(c->rules[i].path, path) == 0;
	if (n == 0)
		return 0;
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		*rule = POLICY_R_NOMEM;
		return -1;
	}
	f->c = c;
	f->path = path;
	for (i = 0; i < c->nrules; i++)
		f->applies[i] = strcmp(c->rules[i].path, path) == 0;
	if (body != NULL && fscan_run(f, body, len, rule) == 0)
		rc = fscan_verdict(f, rule, &r);
	else if (body == NULL)
		*rule = POLICY_R_BODY;
	if (rc == -1)
		*detail = fscan_detail(*rule, r);
	for (i = 0; i < f->nkeys; i++)
		free(f->keys[i].s);
	free(f->keys);
	free(f);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Rate and concurrency.                                               */

/* Take one token: 0, or -1 with the seconds until one is there. */
int
caller_rate_take(struct caller *c, unsigned long long now, unsigned *retry_after_s)
{
	unsigned long long	cap, el, need, ms;
	unsigned		burst;

	if (!HAS(c, K_RATE))
		return 0;
	burst = HAS(c, K_BURST) ? c->burst : (unsigned)((c->rate_milli + 999) / 1000);
	cap = (unsigned long long)burst * POLICY_UTOKEN;
	if (!c->bucket_started) {
		c->bucket_started = 1;
		c->tokens_u = cap;
		c->last_ms = now;
	} else if (now > c->last_ms) {
		el = now - c->last_ms;
		if (el > cap / c->rate_milli)
			c->tokens_u = cap;
		else
			c->tokens_u += el * c->rate_milli;
		c->last_ms = now;
	}
	if (c->tokens_u > cap)		/* inherited from a larger burst */
		c->tokens_u = cap;
	if (c->tokens_u >= POLICY_UTOKEN) {
		c->tokens_u -= POLICY_UTOKEN;
		return 0;
	}
	need = POLICY_UTOKEN - c->tokens_u;
	ms = (need + c->rate_milli - 1) / c->rate_milli;
	*retry_after_s = (unsigned)((ms + 999) / 1000);
	if (*retry_after_s == 0)
		*retry_after_s = 1;
	return -1;
}

/* One more request in flight, unless at max_concurrent. */
int
caller_enter(struct caller *c)
{
	if (HAS(c, K_CONC) && c->active >= c->max_conc)
		return -1;
	c->active++;
	return 0;
}

/* A request that entered is done. */
void
caller_leave(struct caller *c)
{
	if (c->active > 0)
		c->active--;
}

/* Requests in flight. */
unsigned
caller_active(const struct caller *c)
{
	return c->active;
}
