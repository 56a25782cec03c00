/*
 * redact.c — the set of object member names whose values never reach a log.
 *
 * SPEC "Audit trail" and ocp-api.md §7: with bodies = redacted, the value of
 * every member named in [audit] redact (at any depth, of any type) is
 * replaced.  A name matches the member's *unescaped* key exactly, bytes and
 * case, so "pass\u0077ord" is caught as "password" and "Password" is not.
 */
#ifndef REDACT_H
#define REDACT_H

#include <stddef.h>

#define REDACT_MASKED	"[REDACTED]"	/* replacement without fingerprints */
#define REDACT_FP_TAG	"hmac-sha256:"	/* prefix of a fingerprint replacement */
#define REDACT_MASK_MAX	32		/* room for any replacement text + NUL */

struct redact_set;

/*
 * Writes 16 lowercase hex characters and a NUL to hex16 that identify
 * val[0..len) without revealing it (a keyed MAC, truncated).  Must not fail.
 */
typedef void (*redact_fp_fn)(void *arg, const unsigned char *val, size_t len,
		    char hex16[17]);

/*
 * Parse a comma-separated list of names ("password, secret, signature").
 * Spaces and tabs around each name are trimmed; an empty name (",,", a
 * leading or trailing comma, an empty or blank list) is an error: use no set
 * (NULL) to redact nothing.  NULL and *cause (malloc'd) on error.
 */
struct redact_set	*redact_set_new(const char *list, char **cause);
/* Free a set; accepts NULL. */
void			 redact_set_free(struct redact_set *rs);
/* 1 when key[0..len) is one of the names (exact, case-sensitive); 0 for NULL rs. */
int			 redact_set_has(const struct redact_set *rs,
			    const unsigned char *key, size_t len);
/*
 * Fingerprint mode: a redacted value becomes "hmac-sha256:<16 hex>" from
 * fn(arg, value, len, hex16) instead of "[REDACTED]".  value is the unescaped
 * string for strings, the literal text for numbers/true/false/null, and the
 * compact (unredacted) re-serialisation for objects and arrays.  fn NULL
 * turns the mode off.  arg is borrowed.
 */
void			 redact_set_fingerprint(struct redact_set *rs,
			    redact_fp_fn fn, void *arg);
/* 1 when the set is in fingerprint mode. */
int			 redact_set_fingerprints(const struct redact_set *rs);
/*
 * Write the text (unquoted, NUL-terminated, plain ASCII needing no JSON
 * escape) that replaces the value val[0..len); returns its length.  Falls
 * back to "[REDACTED]" if fn wrote anything but 16 lowercase hex digits.
 */
size_t			 redact_set_mask(const struct redact_set *rs,
			    const unsigned char *val, size_t len,
			    char dst[REDACT_MASK_MAX]);

#endif
