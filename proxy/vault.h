/*
 * vault.c — a HashiCorp Vault client for "vault:MOUNT/PATH#FIELD" secret
 * sources: KV version 2 reads over the verified, kept-alive TLS pool of
 * upstream.c, non-blocking on the caller's event loop.
 *
 * Authentication is a token file (read at start and again whenever the
 * token is refused or cannot be renewed: an operator or an agent may have
 * replaced it) or AppRole (role_id plus a secret_id file read at each
 * login).  The token is looked up (token file) to learn its TTL, renewed at
 * half of it, and replaced by a new login / a re-read of the file when a
 * renewal is refused or no longer extends it.  Every request carries
 * X-Vault-Token and, when configured, X-Vault-Namespace.
 *
 * Each watched MOUNT/PATH is read once authenticated, then every
 * [vault] refresh_ms; a failed read is retried sooner (backoff from
 * VAULT_BACKOFF_MIN_MS up to refresh_ms).  Watches of the same MOUNT/PATH
 * share one read, so the fields of one secret always come from one version.
 * A 403 on a read re-authenticates once and retries.
 *
 * Secret hygiene: tokens and secret_ids live in struct secret (locked,
 * no-dump, cleansed on free) and are registered with the leak guard; values
 * read from Vault are only held in struct secret; JSON answers are parsed
 * with a yajl whose every allocation is cleansed on free, and the answer
 * buffers are cleansed after parsing; requests are built in locked memory.
 * Log lines and error reasons never contain a token, a secret_id or a value.
 *
 * Threading: single-threaded, everything runs on the event_base given to
 * vault_new().  No callback runs from inside a vault_* call: results are
 * delivered from the event loop.
 */
#ifndef VAULT_H
#define VAULT_H
#include <stddef.h>

#define VAULT_MAX_RESPONSE	(1024 * 1024)	/* bytes of one Vault answer */
#define VAULT_MAX_JSON_DEPTH	32		/* nesting of an answer */
#define VAULT_MAX_FIELDS	256		/* members of one KV secret */
#define VAULT_MAX_NAME		256		/* bytes of one field name */
#define VAULT_MAX_VALUE		8192		/* bytes of one field value */
#define VAULT_MAX_SOURCE	1024		/* bytes of MOUNT/PATH#FIELD */
#define VAULT_MAX_CONNECTIONS	4		/* pool size towards Vault */
#define VAULT_IDLE_MS		60000		/* keep-alive of an idle connection */
#define VAULT_BACKOFF_MIN_MS	500		/* first retry after a failure */
#define VAULT_BACKOFF_MAX_MS	30000		/* ... doubling up to this (and refresh_ms) */
#define VAULT_RENEW_FLOOR_MS	250		/* never renew / re-check sooner */
#define VAULT_RENEW_MIN_MS	1000		/* a renewal must extend the TTL this much */

struct event_base;
struct evdns_base;
struct conf;
struct secret;
struct vault;
struct vault_watch;
struct vault_kv;	/* one read version: field -> value (struct secret) */

/*
 * kv != NULL: a successful read; called for the first read of a watch and
 * for every later read whose version (or content) differs from the last one
 * delivered to that watch.  kv is only valid during the call: copy what is
 * needed with vault_kv_field().  kv == NULL: a read (or the authentication
 * it needed) failed; err is a short static reason, safe to log, never a
 * secret; version is 0.  Called again on every failed attempt.
 * A callback may call vault_unwatch() (any watch) and vault_watch(), but
 * not vault_free().
 */
typedef void (*vault_cb)(void *arg, const struct vault_kv *kv,
		    unsigned long long version, const char *err);

/*
 * Start a client for c's [vault] section (vault_address must be set).  Checks
 * the settings and reads token_file (or checks secret_id_file) at once, so a
 * misconfiguration is reported here; nothing is sent until the loop runs.
 * NULL with *cause (malloc'd, no secret) on failure.
 */
struct vault	*vault_new(struct event_base *, struct evdns_base *,
		    const struct conf *c, char **cause);
/*
 * Check c's [vault] settings (address syntax, one auth method, absolute file
 * paths, namespace and role_id characters) without reading a file or
 * connecting: for config validation and -n.  0, or -1 with *cause.
 */
int		 vault_conf_check(const struct conf *c, char **cause);
/* Cancel every request and timer, cleanse and free the tokens.  Accepts NULL. */
void		 vault_free(struct vault *);

/*
 * Split "vault:MOUNT/PATH#FIELD" (MOUNT = the first segment) into malloc'd
 * parts.  -1 on a syntax error: missing prefix, mount, path or field, an
 * empty, "." or ".." segment, a control byte, or longer than
 * VAULT_MAX_SOURCE.
 */
int		 vault_parse_source(const char *src, char **mount, char **path,
		    char **field);

/*
 * Watch MOUNT/PATH: read as soon as authenticated, then every refresh_ms.
 * A new watch of a path already read gets the current version from the
 * loop.  NULL when mount holds a '/' or mount/path is not a valid path (see
 * vault_parse_source), or on allocation failure.
 */
struct vault_watch *vault_watch(struct vault *, const char *mount, const char *path,
		    vault_cb, void *arg);
/* Stop a watch: its callback is never called again.  Accepts NULL. */
void		 vault_unwatch(struct vault_watch *);
/*
 * SIGHUP: re-read every watched path now, retry a failing authentication now,
 * and (token_file) pick up a new token from the file.  Ignored when called
 * from inside a vault_cb.
 */
void		 vault_refresh_all(struct vault *);
/*
 * 1 if a client made for a's [vault] section serves b's unchanged (reload:
 * keep the client and its watches).  max_stale_ms is not the client's.
 */
int		 vault_conf_same(const struct conf *a, const struct conf *b);
/*
 * Staleness, for [vault] max_stale_ms (the client itself keeps no deadline):
 * vault_watch_failing_ms() is how long reads of w's path have been failing
 * (from the first failed attempt after the last good read; 0 while the last
 * attempt succeeded or none has finished), so a key is still usable while
 * failing_ms <= max_stale_ms.  vault_watch_age_ms() is the time since the
 * last good read (whatever its version), -1 if there was none.
 */
long long	 vault_watch_failing_ms(const struct vault_watch *);
/*
 * What lies behind the failure just delivered to w's callback (kv == NULL):
 * the OS or TLS error ("connect: Connection refused", "certificate
 * verification failed: ..."), "HTTP 404", or "" when nothing more is known.
 * Never secret; valid until the next read of w's path.
 */
const char	*vault_watch_detail(const struct vault_watch *);
long long	 vault_watch_age_ms(const struct vault_watch *);
/* 1 when authenticated and the last read of every watched path succeeded. */
int		 vault_healthy(const struct vault *);

/*
 * A copy of one field's value in locked memory (free with secret_free()),
 * or NULL if the field is absent or not a JSON string (or out of memory).
 */
struct secret	*vault_kv_field(const struct vault_kv *, const char *field);
/* Number of fields, and the name of field i (for logs: names are not secret). */
size_t		 vault_kv_count(const struct vault_kv *);
const char	*vault_kv_name(const struct vault_kv *, size_t i);

/*
 * Parse a KV v2 read answer, {"data":{"data":{...},"metadata":{"version":N}}},
 * from json[0..len) (not NUL-terminated; hostile input).  String members of
 * data.data become fields; other members are recorded as present but not
 * strings.  *version gets metadata.version.  NULL with *why a static reason
 * ("invalid JSON", "not a JSON object", "nesting too deep", "no data in the
 * answer", "no version in the answer", "duplicate field", "too many fields",
 * "field too long", "out of memory").  Free with vault_kv_free() (cleanses;
 * accepts NULL).
 */
struct vault_kv	*vault_kv_parse(const char *json, size_t len,
		    unsigned long long *version, const char **why);
void		 vault_kv_free(struct vault_kv *);
/* 1 if both hold the same fields with the same values (constant time per value). */
int		 vault_kv_equal(const struct vault_kv *, const struct vault_kv *);

#endif
