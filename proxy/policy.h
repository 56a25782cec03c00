/*
 * policy.c — who may call what: the [caller.NAME] sections of the config.
 *
 * A pure module (libc, yajl, OpenSSL's SHA-256; no libevent, no globals) so
 * it can be unit-tested and fuzzed alone.  The config loader hands it every
 * key of every [caller.NAME] section (policy_conf_key), then checks the whole
 * (policy_validate).  Per request the daemon asks, in this order:
 *
 *	policy_identify		who is it?			NULL -> 401
 *	policy_check_request	may it use this profile, path?	-1   -> 403
 *	policy_check_fields	does the body keep the limits?	-1   -> 403
 *	caller_enter		under max_concurrent?		-1   -> 429
 *	caller_rate_take	a token in its bucket?		-1   -> 429 + Retry-After
 *	... forward ...
 *	caller_leave		(once, when the request is freed, iff entered)
 *
 * With no caller at all (policy_ncallers() == 0) the daemon does not consult
 * the policy: any local process may call (the documented open default).
 *
 * Decisions (docs/callers.md explains them to operators):
 * - On a unix socket a caller is identified only by the kernel's peer
 *   credentials (SO_PEERCRED uid and primary gid); a bearer token sent there
 *   is ignored.  On TCP only by a bearer token; uid/gid callers never match.
 *   Several unix callers may match one peer: uid+gid beats uid beats gid.
 * - An allow item is an exact path, or a prefix when it ends in '*': the
 *   text before the '*' is compared as plain bytes, so "/api-gateway/orders*"
 *   matches "/api-gateway/orders", "/api-gateway/orders/x" and
 *   "/api-gateway/orders-list".  '*' anywhere else is a config error.
 * - The path is compared as forwarded: "/api-gateway/make-withdrawal/" is
 *   another path than "/api-gateway/make-withdrawal" (and not in the
 *   catalogue).
 * - Catalogue rule: a path outside the API catalogue (catalogue_has) is
 *   refused unless an allow item names it exactly, or is a prefix that covers
 *   no catalogue path at all (a prefix dedicated to non-catalogue endpoints,
 *   e.g. "/api-gateway/beta/" + '*').  A prefix that covers any catalogue
 *   path ('/' + '*', "/api-gateway/" + '*', "/api-gateway/orders*") only
 *   ever grants catalogue paths.  No allow key = every catalogue path.
 * - Field limits look at top-level members only, on the caller's body (the
 *   bytes that are signed, apart from a spliced "nonce", which no rule may
 *   name).  When a path has rules, a body with any duplicated top-level
 *   member name (after unescaping) is refused as ambiguous.
 * - field_max accepts a JSON number or a JSON string holding
 *   -?(0|[1-9][0-9]*)(\.[0-9]+)?, at most POLICY_MAX_DIGITS digits: no
 *   exponent, no '+', no leading zeros ("0010"), no "10." or ".5", no blanks.
 *   Compared exactly as decimals ("10.50" == "10.5").  It is an upper bound
 *   only: "-5" passes a bound of 1000.
 * - field_in accepts a JSON string equal byte for byte to a set member.
 * - Rate: rate_per_s may have up to 3 decimals (0.5 = one call per 2 s);
 *   burst defaults to rate_per_s rounded up (at least 1); the bucket starts
 *   full.  Bucket and concurrency state live in the caller, so they start
 *   afresh on reload unless policy_inherit() carries the buckets over;
 *   requests in flight keep counting against the caller they entered.
 */
#ifndef POLICY_H
#define POLICY_H
#include <stddef.h>

#define POLICY_MAX_CALLERS	256	/* [caller.*] sections */
#define POLICY_NAME_MAX		64	/* caller name bytes */
#define POLICY_MAX_ALLOW	128	/* allow items per caller */
#define POLICY_MAX_PROFILES	32	/* profiles items per caller */
#define POLICY_MAX_RULES	64	/* field_max + field_in items per caller */
#define POLICY_MAX_SET		64	/* values of one field_in item */
#define POLICY_MAX_ITEM		256	/* bytes of a path, field or set value */
#define POLICY_MAX_DIGITS	36	/* digits of a field_max decimal */
#define POLICY_BEARER_MAX	1024	/* longest bearer token considered */
#define POLICY_RATE_MAX		100000	/* rate_per_s upper bound */
#define POLICY_BURST_MAX	1000000	/* burst upper bound */
#define POLICY_CONC_MAX		100000	/* max_concurrent upper bound */
#define POLICY_DESCRIBE_MAX	64	/* a caller_describe buffer that always fits */

/* Stable rule names (the envelope and the audit record carry them). */
#define POLICY_R_PROFILE	"profile not allowed"
#define POLICY_R_ALLOW		"path not in allow list"
#define POLICY_R_CATALOGUE	"path not in the API catalogue"
#define POLICY_R_CANON		"path not canonical"
#define POLICY_R_BODY		"body not a JSON object"
#define POLICY_R_DUP		"duplicated member"
#define POLICY_R_MISSING	"field missing"
#define POLICY_R_DECIMAL	"field not a plain decimal"
#define POLICY_R_MAX		"field above field_max"
#define POLICY_R_IN		"field not in field_in"
#define POLICY_R_NOMEM		"out of memory"

struct policy;		/* every [caller.*] section */
struct caller;		/* one named caller; owned by its policy */

struct policy	*policy_new(void);
/* Free a policy and its callers; accepts NULL. */
void		 policy_free(struct policy *);

/*
 * One key of a [caller.NAME] section, as inih hands it over (value already
 * trimmed); line is kept for policy_validate's messages.  Returns 0, or -1
 * with *why a static reason that never quotes the value.  Keys:
 *   uid, gid		decimal 0..4294967294
 *   token_sha256	64 lowercase hex digits (SHA-256 of the token; never a token)
 *   profiles		comma list of profile names
 *   allow		comma list of paths; a final '*' makes a prefix
 *   rate_per_s		0.001..POLICY_RATE_MAX, up to 3 decimals
 *   burst		1..POLICY_BURST_MAX (needs rate_per_s)
 *   max_concurrent	1..POLICY_CONC_MAX
 *   field_max		comma list of PATH:FIELD=DECIMAL
 *   field_in		comma list of PATH:FIELD=A|B|C
 * The list keys (profiles, allow, field_max, field_in) add up when repeated,
 * so a long list can span several lines: inih lines hold at most 198
 * characters, and an indented continuation line reaches the handler as the
 * same key again.  Empty list items are skipped (a trailing comma is fine).
 * Any other key given twice for one caller is an error ("duplicate key").
 * On error nothing of that line is kept.  The caller name is checked by
 * policy_validate, once.
 */
int		 policy_conf_key(struct policy *, const char *caller_name, const char *key,
		    const char *value, int line, const char **why);
/*
 * Declare a [caller.NAME] section seen at line even if it holds no key (inih
 * only reports keys), so that an empty section is reported by policy_validate
 * instead of silently leaving the proxy open.  0, or -1 (*why) when full.
 */
int		 policy_conf_section(struct policy *, const char *caller_name, int line,
		    const char **why);
/*
 * Whole-policy checks once every line is in: caller names, exactly one kind
 * of identity per caller, identities unique, profiles that exist, field rules
 * on paths the caller may call, burst only with rate_per_s.  err is called
 * once per problem; msg is only valid during the call.  Returns the number of
 * problems.
 */
int		 policy_validate(const struct policy *,
		    void (*err)(void *arg, int line, const char *caller, const char *msg),
		    void *arg, const char *const *profile_names, size_t nprofiles);
size_t		 policy_ncallers(const struct policy *);
/* The i-th caller in config order (i < policy_ncallers), for start-up logs. */
const struct caller *policy_caller(const struct policy *, size_t i);
/*
 * Carry each token bucket of old over to the caller of the same name in
 * policy (clamped to its new burst), so a reload does not refill buckets.
 */
void		 policy_inherit(struct policy *, const struct policy *old);

/*
 * Who is calling.  On a unix socket: the peer credentials (is_unix = 1, uid,
 * gid, pid from SO_PEERCRED), bearer ignored.  On TCP (is_unix = 0): bearer
 * is the token of "Authorization: Bearer <token>" (bearer_len bytes, need not
 * be NUL-terminated) or NULL; its SHA-256 is compared in constant time with
 * every token_sha256.  Returns the caller, or NULL (answer 401).
 */
struct policy_peer {
	int		 is_unix;
	unsigned	 uid, gid;
	int		 pid;
	const char	*bearer;
	size_t		 bearer_len;
};
struct caller	*policy_identify(struct policy *, const struct policy_peer *);
/*
 * The token of an Authorization header value: "Bearer" (any case), one or
 * more spaces, then a token68 (RFC 9110 §11.2).  0 with *tok, *toklen
 * pointing into value, or -1 for another scheme or a malformed value.
 */
int		 policy_bearer(const char *value, size_t len, const char **tok,
		    size_t *toklen);
const char	*caller_name(const struct caller *);
/* 1 for a token_sha256 caller (TCP only), 0 for a uid/gid one (unix socket only). */
int		 caller_is_token(const struct caller *);
/*
 * The identity for logs and the audit record, NUL-terminated in buf (at most
 * len bytes; POLICY_DESCRIBE_MAX always fits): "uid=1001", "uid=1001,gid=50",
 * "gid=50,uid=1005" (a gid caller: the peer's uid is added) or
 * "token=<first 16 hex of token_sha256>".  peer may be NULL: the configured
 * identity.
 */
void		 caller_describe(const struct caller *, const struct policy_peer *, char *buf,
		    size_t len);

/*
 * May the caller use this profile (NULL: none chosen) and path (origin form,
 * as forwarded)?  0, or -1 with *rule one of POLICY_R_PROFILE, _ALLOW,
 * _CATALOGUE, _CANON (a path holding "//", "/.", '%', '?', '#', '\\',
 * blanks or control bytes: never forwarded anyway).
 */
int		 policy_check_request(const struct caller *, const char *profile, const char *path,
		    const char **rule);
/*
 * The caller's field rules for path on body[0..len) (no rule for the path:
 * 0 without parsing).  0 with *detail NULL, or -1 with *rule one of
 * POLICY_R_BODY, _DUP, _MISSING, _DECIMAL, _MAX, _IN, _NOMEM and *detail a
 * malloc'd sentence for the caller (e.g. "amount exceeds 1000.00"; may be
 * NULL when out of memory) built only from the config, never from the body.
 * The caller frees *detail.
 */
int		 policy_check_fields(const struct caller *, const char *path, const char *body,
		    size_t len, const char **rule, char **detail);
/*
 * Take one token from the caller's bucket at now_ms (monotonic): 0, or -1
 * with *retry_after_s (>= 1) the whole seconds until a token is there.
 * No rate_per_s: always 0.
 */
int		 caller_rate_take(struct caller *, unsigned long long now_ms,
		    unsigned *retry_after_s);
/* One more request in flight: 0, or -1 (nothing counted) at max_concurrent. */
int		 caller_enter(struct caller *);
/* A request that entered is done. */
void		 caller_leave(struct caller *);
/* Requests in flight (tests, logs). */
unsigned	 caller_active(const struct caller *);

/*
 * 1 if token[0..len) can be sent as a bearer token: a token68 (letters,
 * digits, "-._~+/", then optional '=' padding) of 1..POLICY_BEARER_MAX
 * bytes.  For ocp-proxy hash-token, so that no unusable token is hashed.
 */
int		 policy_token_valid(const char *token, size_t len);
/* Lowercase hex SHA-256 of token[0..len) into out[65]. */
void		 policy_token_sha256(const char *token, size_t len, char out[65]);
/*
 * Compare two plain decimals (the field_max grammar): 0 with *cmp < 0, 0 or
 * > 0, or -1 when either is not one.
 */
int		 policy_decimal_cmp(const char *a, size_t alen, const char *b, size_t blen,
		    int *cmp);

#endif
