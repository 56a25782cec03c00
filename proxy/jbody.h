/*
 * jbody.c — one pass over a caller's JSON request body.
 *
 * The pass validates the text, says whether the top-level object already
 * has a "nonce" member and where it opens, and can emit a compact, redacted
 * copy for the audit log.  The body sent upstream is never re-serialised
 * (ocp-api.md §2, §12.1): the proxy splices the nonce member in as bytes,
 *
 *	upstream = buf[0..open+1) + jbody_nonce_member() + buf[open+1..len)
 *
 * so "  {\"a\":1}" becomes "  {\"nonce\":5,\"a\":1}" and "{ }" "{\"nonce\":5 }".
 * Only the audit copy is re-serialised.
 *
 * What is accepted: exactly one RFC 8259 value, optionally surrounded by
 * space, tab, CR or LF.  Strict: strings must be strict
 * UTF-8 (RFC 3629: no overlongs, no encoded surrogates, nothing above
 * U+10FFFF); \uXXXX escapes of surrogates must form a high+low pair (a lone
 * or reversed surrogate escape is REJECTED, as RFC 7493 I-JSON does, because
 * it names no character); \v and \f are not whitespace; no comments, no byte
 * order mark, no trailing garbage.
 */
#ifndef JBODY_H
#define JBODY_H

#include <stddef.h>
#include <string.h>

struct evbuffer;
struct redact_set;

#define JBODY_STAGE	512	/* bytes staged before an evbuffer_add */

/*
 * A staging writer: small pieces are copied into the stage and reach the
 * evbuffer ev in one evbuffer_add per JBODY_STAGE bytes, so text built from
 * many short pieces (an audit line, an answer head) costs a memcpy each
 * instead of an evbuffer_add each.  jbody_scan uses one for its output.
 */
struct jbody_sink {
	struct evbuffer	*ev;
	char		*p;		/* stage, or a heap buffer once grown */
	size_t		 n;
	size_t		 size;
	int		 failed;	/* an allocation failed: output is short */
	char		 stage[JBODY_STAGE];
};

/* ev NULL: keep everything, contiguous at p[0..n), growing onto the heap. */
void	 jbody_sink_init(struct jbody_sink *, struct evbuffer *ev);
/* Zero what an ev NULL sink holds (it may be a secret), free it, init again. */
void	 jbody_sink_wipe(struct jbody_sink *);
/* Hand the staged bytes to ev; -1 if any byte was lost since init. */
int	 jbody_sink_flush(struct jbody_sink *);
void	 jbody_sink_spill(struct jbody_sink *, const void *, size_t);
/* Append s[0..len) as a quoted JSON string (as jbody_quote). */
void	 jbody_sink_quote(struct jbody_sink *, const char *s, size_t len);

/* Append s[0..len) to k; a NULL sink drops it. */
static inline void
jbody_put(struct jbody_sink *k, const void *s, size_t len)
{
	if (k == NULL || len == 0)
		return;
	if (len > k->size - k->n) {
		jbody_sink_spill(k, s, len);
		return;
	}
	memcpy(k->p + k->n, s, len);
	k->n += len;
}

/* Append a string literal, a C string (both as they are), an unsigned decimal. */
#define JBODY_PUT_LIT(k, s)	jbody_put((k), (s), sizeof(s) - 1)

static inline void
jbody_put_str(struct jbody_sink *k, const char *s)
{
	jbody_put(k, s, strlen(s));
}

void	 jbody_put_uint(struct jbody_sink *, unsigned long long);

#define JBODY_OBJECT	0x01	/* the top-level value must be an object */
#define JBODY_NOTE	0x02	/* jbody_scan_echo: note what is redacted */
#define JBODY_NONCE_MAX	32	/* dst size that fits any jbody_nonce_member */
#define JBODY_NONCE_DIGITS_MAX	20	/* digits of 2^64 - 1 */

/*
 * What the top-level nonce's value is (jbody.nonce_kind).  Only the form is
 * told here; which forms a caller may send is request.c's policy.
 */
#define JBODY_NONCE_NONE	0	/* no top-level nonce member */
#define JBODY_NONCE_INT		1	/* digits only, value in nonce_num */
#define JBODY_NONCE_BIG		2	/* digits only, above 2^64 - 1 */
#define JBODY_NONCE_STRING	3	/* a string: raw token at nonce_at */
#define JBODY_NONCE_OTHER	4	/* a sign, fraction, exponent, literal, object, array */
#define JBODY_NONCE_DUP		5	/* more than one top-level nonce member */

struct jbody {
	int	has_nonce;	/* a top-level member whose unescaped key is "nonce" */
	size_t	open;		/* offset of the top-level '{' (when is_object) */
	int	empty;		/* the top-level object has no members */
	int	is_object;	/* the top-level value is an object */
	int	nonce_kind;	/* JBODY_NONCE_* */
	unsigned long long nonce_num;	/* the value (JBODY_NONCE_INT) */
	size_t	nonce_at;	/* offset and length of the string token, */
	size_t	nonce_len;	/* quotes included (JBODY_NONCE_STRING) */
};

/*
 * Validate buf[0..len) as described above and fill *jb.  Objects plus arrays
 * nested deeper than max_depth are an error ("{}" is depth 1, so 0 allows
 * only a scalar).  With JBODY_OBJECT the value must be an object.
 *
 * If out != NULL, append a compact re-serialisation in which the value of
 * every member whose key is in rs (at any depth, any type, whole objects and
 * arrays included) is replaced by a string (see redact_set_mask); members
 * inside a replaced value are not visited.  Numbers are copied verbatim,
 * strings are re-escaped (jbody_quote), so the copy is always valid JSON.
 * rs may be NULL.
 *
 * Returns 0, or -1 with *why a static reason: "empty body" (len 0; the caller
 * treats that as "{}"), "not a JSON object", "invalid JSON", "invalid UTF-8",
 * "unpaired surrogate escape", "nesting too deep", "out of memory".  On error
 * out may hold partial data, which the caller discards.
 */
int	 jbody_scan(const char *buf, size_t len, int flags, unsigned max_depth,
	    const struct redact_set *rs, struct evbuffer *out, struct jbody *jb,
	    const char **why);
/*
 * The values redaction replaced in a request body, to be recognised again in
 * the answer: an API may echo the request (test-signature returns it whole,
 * as the string receivedBody), and a redacted value must not reach the log
 * inside that string (SPEC "Audit trail").
 *
 * A text is kept for each value replaced (any depth, any type): a string's
 * bytes between the quotes as sent (escapes as they are) and, if it holds
 * escapes, its decoded bytes as well; a number's or an object's or array's
 * text as sent.  true, false and null are not kept (every record holds them),
 * nor texts shorter than JBODY_ECHO_MIN bytes: they occur in any text.  A
 * text that holds one already kept is not kept again (a string holding it
 * holds the kept one).  At most JBODY_ECHO_MAX texts are kept; past that, or
 * if memory runs out, incomplete is set and nothing can be promised: the
 * caller must then not log the answer verbatim.
 *
 * A zeroed struct is empty and owns nothing, so a request without redacted
 * values costs nothing; jbody_echo_free wipes the texts (they are passwords)
 * and frees them.
 */
/*
 * 4: a text of 1 to 3 bytes ("abc", "12") is in almost any string, and
 * hiding each would blank the record.  64: a call carries a few secrets, not
 * dozens; each string of the answer costs one memmem per text kept.
 */
#define JBODY_ECHO_MIN	4	/* shorter values are not searched for */
#define JBODY_ECHO_MAX	64	/* texts kept per request */

struct jbody_echo {
	unsigned char	*p;		/* per text: its length (a size_t), its bytes */
	size_t		 len;
	size_t		 size;
	unsigned	 n;		/* texts kept */
	int		 incomplete;	/* a text could not be kept */
};

void	 jbody_echo_free(struct jbody_echo *);

/*
 * jbody_scan with the request's redacted values.  With JBODY_NOTE in flags,
 * every value replaced in the copy is noted in echo (only when out != NULL).
 * Without it the copy hides echo's values: every string value (decoded) and
 * every number whose text holds one of echo's texts becomes "[REDACTED]"
 * as a whole (in fingerprint mode too: it is not the value itself), outside
 * the values replaced by name.  Member names are copied as they are.  echo
 * NULL, or empty, is jbody_scan.
 */
int	 jbody_scan_echo(const char *buf, size_t len, int flags, unsigned max_depth,
	    const struct redact_set *rs, struct evbuffer *out, struct jbody *jb,
	    const char **why, struct jbody_echo *echo);
/*
 * The form of a string nonce as an API that reads numeric strings as
 * numbers would see it.  tok[0..len) is the raw token, quotes included
 * (jbody.nonce_at, nonce_len).  JBODY_NONCE_INT, with *v its value, if
 * the string decodes to 1 to JBODY_NONCE_DIGITS_MAX ASCII digits (leading
 * zeros allowed, a digit may be written as an escape such as "\u0031"; no
 * sign or blank) and the value fits in 64 bits; JBODY_NONCE_BIG if only
 * digits but more of them or a larger value; else JBODY_NONCE_STRING (*v
 * undefined).
 */
int	 jbody_nonce_digits(const char *tok, size_t len, unsigned long long *v);
/*
 * The member spliced in right after the top-level '{' when the caller sent
 * no nonce: "\"nonce\":N", followed by ',' unless the object is empty.
 * Writes NUL-terminated text to dst and returns its length, or 0 (dst
 * untouched) if dstlen < JBODY_NONCE_MAX.
 */
size_t	 jbody_nonce_member(char *dst, size_t dstlen, unsigned long long nonce,
	    int empty);
/*
 * Append s[0..len) to out as a quoted JSON string: '"' and '\\' escaped,
 * control characters as \n \r \t \b \f or \u00XX, '/' and DEL as is, each
 * byte of an invalid UTF-8 sequence as \ufffd.  Always valid JSON.
 */
void	 jbody_quote(struct evbuffer *out, const char *s, size_t len);

#endif
