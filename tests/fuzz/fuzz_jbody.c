/* fuzz-sources: proxy/jbody.c proxy/redact.c proxy/fmt.c */
/* fuzz-libs: -levent_core */
/*
 * fuzz_jbody.c — libFuzzer target for jbody_scan.
 *
 * The input is a request body.  It is scanned with and without output, with
 * and without redaction and fingerprints, and these must hold (abort if not):
 * - the verdict, the reason and struct jbody do not depend on the output;
 * - JBODY_OBJECT accepts exactly the accepted bodies whose value is an object;
 * - every copy is valid JSON (a second jbody_scan) with the same top-level
 *   shape and nonce; the unredacted copy is a fixed point (copying it again
 *   gives the same bytes); redacting a redacted copy changes nothing;
 * - an accepted object, spliced with a nonce member, is valid JSON that has
 *   a top-level nonce;
 * - jbody_quote of the raw input, whatever its bytes, is a valid JSON string;
 * - noting the redacted values (JBODY_NOTE) changes nothing of the scan and
 *   keeps at most JBODY_ECHO_MAX texts of JBODY_ECHO_MIN bytes or more; the
 *   copy that hides them is a fixed point of hiding them again (every string
 *   or number holding one is "[REDACTED]"), and the input echoed as a string,
 *   as test-signature does ({"receivedBody":"<input>"}), is hidden whole as
 *   soon as one text was kept.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "jbody.h"
#include "redact.h"

#define FUZZ_DEPTH	64

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct redact_set *fuzz_rs, *fuzz_rs_fp;

/* A fingerprint that depends on every byte of the value. */
static void
fuzz_fp(void *arg, const unsigned char *val, size_t len, char hex16[17])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned long long	 h = 0xcbf29ce484222325ULL;
	size_t			 i;

	(void)arg;
	for (i = 0; i < len; i++)
		h = (h ^ val[i]) * 0x100000001b3ULL;
	for (i = 0; i < 16; i++, h >>= 4)
		hex16[i] = hex[h & 0xf];
	hex16[16] = '\0';
}

/* Build the redaction sets once. */
static void
fuzz_init(void)
{
	char	*cause;

	if (fuzz_rs != NULL)
		return;
	fuzz_rs = redact_set_new("password, secret, signature, requestHeaders,"
	    " requestBody, a, nonce", &cause);
	fuzz_rs_fp = redact_set_new("password, secret, a, nonce", &cause);
	if (fuzz_rs == NULL || fuzz_rs_fp == NULL)
		abort();
	redact_set_fingerprint(fuzz_rs_fp, fuzz_fp, NULL);
}

/* Are two scans' results the same? */
static int
fuzz_same(const struct jbody *a, const struct jbody *b)
{
	return a->has_nonce == b->has_nonce && a->empty == b->empty &&
	    a->is_object == b->is_object && (!a->is_object || a->open == b->open) &&
	    a->nonce_kind == b->nonce_kind &&
	    (a->nonce_kind != JBODY_NONCE_INT || a->nonce_num == b->nonce_num) &&
	    (a->nonce_kind != JBODY_NONCE_STRING || (a->nonce_at == b->nonce_at &&
	    a->nonce_len == b->nonce_len));
}

/* Scan with output, hiding e's values, into a flat copy (malloc'd, *n bytes). */
static int
fuzz_copy_echo(const char *buf, size_t len, const struct redact_set *rs,
    struct jbody_echo *e, struct jbody *jb, const char **why, char **out, size_t *n)
{
	struct evbuffer	*ev;
	int		 rc;

	if ((ev = evbuffer_new()) == NULL)
		abort();
	rc = jbody_scan_echo(buf, len, 0, FUZZ_DEPTH, rs, ev, jb, why, e);
	*n = evbuffer_get_length(ev);
	if ((*out = malloc(*n + 1)) == NULL)
		abort();
	evbuffer_remove(ev, *out, *n);
	evbuffer_free(ev);
	return rc;
}

/* Scan with output into a flat copy (malloc'd, *n bytes); rc as jbody_scan. */
static int
fuzz_copy(const char *buf, size_t len, const struct redact_set *rs,
    struct jbody *jb, const char **why, char **out, size_t *n)
{
	return fuzz_copy_echo(buf, len, rs, NULL, jb, why, out, n);
}

/* A copy must be valid, of the same shape, and copy (with rs) onto itself. */
static void
fuzz_check_copy(const char *c, size_t n, const struct jbody *orig,
    const struct redact_set *rs)
{
	struct jbody	 jb;
	const char	*why;
	char		*again;
	size_t		 m;

	if (fuzz_copy(c, n, rs, &jb, &why, &again, &m) != 0)
		abort();
	if (jb.is_object != orig->is_object || jb.has_nonce != orig->has_nonce ||
	    jb.empty != orig->empty || (jb.is_object && jb.open != 0))
		abort();
	if (m != n || memcmp(again, c, n) != 0)
		abort();
	free(again);
}

/* Hiding e's values in c[0..n) again (with rs) must change nothing. */
static void
fuzz_check_hidden(const char *c, size_t n, const struct redact_set *rs,
    struct jbody_echo *e)
{
	struct jbody	 jb;
	const char	*why;
	char		*again;
	size_t		 m;

	if (fuzz_copy_echo(c, n, rs, e, &jb, &why, &again, &m) != 0 || m != n ||
	    memcmp(again, c, n) != 0)
		abort();
	free(again);
}

/*
 * Note the values fuzz_rs redacts from the accepted input buf (whose
 * redacted copy is red[0..rn)), then look for them in the input itself and
 * in the input echoed as a string.
 */
static void
fuzz_check_echo(const char *buf, size_t len, const struct jbody *orig,
    const char *red, size_t rn)
{
	static const char	 hidden[] = "{\"receivedBody\":\"[REDACTED]\"}";
	struct jbody_echo	 e;
	struct evbuffer		*ev;
	struct jbody		 jb;
	const char		*why;
	const unsigned char	*t;
	char			*c, *a;
	size_t			 n, an, k, texts = 0;

	memset(&e, 0, sizeof(e));
	if ((ev = evbuffer_new()) == NULL)
		abort();
	if (jbody_scan_echo(buf, len, JBODY_NOTE, FUZZ_DEPTH, fuzz_rs, ev, &jb, &why,
	    &e) != 0 || !fuzz_same(orig, &jb) || evbuffer_get_length(ev) != rn ||
	    memcmp(evbuffer_pullup(ev, -1), red, rn) != 0)
		abort();
	evbuffer_free(ev);
	for (t = e.p; e.n > 0 && t < e.p + e.len; t += k, texts++) {
		memcpy(&k, t, sizeof(k));
		t += sizeof(k);
		if (k < JBODY_ECHO_MIN || k > len || t + k > e.p + e.len)
			abort();
	}
	if (texts != e.n || e.n > JBODY_ECHO_MAX || (e.incomplete && e.n < JBODY_ECHO_MAX))
		abort();
	if (e.incomplete) {	/* nothing is promised: the proxy logs a hash */
		jbody_echo_free(&e);
		return;
	}
	/* the input as its own answer */
	if (fuzz_copy_echo(buf, len, fuzz_rs, &e, &jb, &why, &c, &n) != 0)
		abort();
	fuzz_check_hidden(c, n, fuzz_rs, &e);
	fuzz_check_hidden(c, n, NULL, &e);
	free(c);
	/* echoed as a string */
	if ((ev = evbuffer_new()) == NULL)
		abort();
	evbuffer_add(ev, "{\"receivedBody\":", 16);
	jbody_quote(ev, buf, len);
	evbuffer_add(ev, "}", 1);
	an = evbuffer_get_length(ev);
	if ((a = malloc(an)) == NULL)
		abort();
	evbuffer_remove(ev, a, an);
	evbuffer_free(ev);
	if (fuzz_copy_echo(a, an, fuzz_rs, &e, &jb, &why, &c, &n) != 0)
		abort();
	if (e.n > 0 && (n != sizeof(hidden) - 1 || memcmp(c, hidden, n) != 0))
		abort();
	free(c);
	free(a);
	jbody_echo_free(&e);
	if (e.p != NULL || e.n != 0)
		abort();
}

/* Splice a nonce into an accepted object the way the proxy does. */
static void
fuzz_check_splice(const char *buf, size_t len, const struct jbody *jb)
{
	struct jbody	 sp;
	const char	*why;
	char		 m[JBODY_NONCE_MAX], *s;
	size_t		 n;

	n = jbody_nonce_member(m, sizeof(m), 18446744073709551615ULL, jb->empty);
	if (n == 0 || (s = malloc(len + n)) == NULL)
		abort();
	memcpy(s, buf, jb->open + 1);
	memcpy(s + jb->open + 1, m, n);
	memcpy(s + jb->open + 1 + n, buf + jb->open + 1, len - jb->open - 1);
	if (jbody_scan(s, len + n, JBODY_OBJECT, FUZZ_DEPTH, NULL, NULL, &sp,
	    &why) != 0 || !sp.has_nonce || sp.empty || sp.open != jb->open)
		abort();
	free(s);
}

/*
 * A string nonce is counted (INT or BIG) exactly when it decodes to digits
 * only: each byte between the quotes a digit, or a "\\u" escape of one.
 */
static void
fuzz_check_digits(const char *tok, size_t len)
{
	unsigned long long	v, w = 0;
	size_t			i, n = 0;
	char			hex[5] = "", *end;
	int			kind = jbody_nonce_digits(tok, len, &v), digits = len > 2;
	unsigned		d;

	for (i = 1; digits && i + 1 < len; i++, n++) {
		if (tok[i] >= '0' && tok[i] <= '9') {
			d = (unsigned)(tok[i] - '0');
		} else if (tok[i] == '\\' && i + 6 < len && tok[i + 1] == 'u' &&
		    isxdigit((unsigned char)tok[i + 2]) && isxdigit((unsigned char)tok[i + 3]) &&
		    isxdigit((unsigned char)tok[i + 4]) && isxdigit((unsigned char)tok[i + 5])) {
			memcpy(hex, tok + i + 2, 4);
			d = (unsigned)strtoul(hex, &end, 16) - '0';
			digits = d <= 9;
			i += 5;
		} else {
			digits = 0;
			break;
		}
		w = w * 10 + d;	/* wraps past 20 digits; only compared below that */
	}
	if (digits != (kind != JBODY_NONCE_STRING))
		abort();
	if (kind != JBODY_NONCE_INT)
		return;
	if (n > JBODY_NONCE_DIGITS_MAX || v != w)
		abort();
}

/* Quoting any bytes must give one valid JSON string. */
static void
fuzz_check_quote(const char *buf, size_t len)
{
	struct evbuffer	*ev;
	struct jbody	 jb;
	const char	*why;
	char		*q;
	size_t		 n;

	if ((ev = evbuffer_new()) == NULL)
		abort();
	jbody_quote(ev, buf, len);
	n = evbuffer_get_length(ev);
	if ((q = malloc(n)) == NULL)
		abort();
	evbuffer_remove(ev, q, n);
	if (n < 2 + len || q[0] != '"' || jbody_scan(q, n, 0, 0, NULL, NULL, &jb,
	    &why) != 0)
		abort();
	free(q);
	evbuffer_free(ev);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*buf = (const char *)data, *why, *why2;
	const struct redact_set	*sets[3];
	struct jbody		 jb, jb2;
	char			*c;
	size_t			 n, i;
	int			 rc, rc2;

	fuzz_init();
	sets[0] = NULL;
	sets[1] = fuzz_rs;
	sets[2] = fuzz_rs_fp;
	rc = jbody_scan(buf, size, 0, FUZZ_DEPTH, NULL, NULL, &jb, &why);
	if ((rc == 0) != (why == NULL))
		abort();
	rc2 = jbody_scan(buf, size, JBODY_OBJECT, FUZZ_DEPTH, NULL, NULL, &jb2,
	    &why2);
	if ((rc2 == 0) != (rc == 0 && jb.is_object))
		abort();
	for (i = 0; i < 3; i++) {
		rc2 = fuzz_copy(buf, size, sets[i], &jb2, &why2, &c, &n);
		if (rc2 != rc || (rc == 0 && !fuzz_same(&jb, &jb2)) ||
		    (rc != 0 && strcmp(why, why2) != 0))
			abort();
		if (rc == 0)
			fuzz_check_copy(c, n, &jb, sets[i] == fuzz_rs_fp ?
			    NULL : sets[i]);
		if (rc == 0 && sets[i] == fuzz_rs)
			fuzz_check_echo(buf, size, &jb, c, n);
		free(c);
	}
	if (rc == 0 && jb.is_object && !jb.has_nonce)
		fuzz_check_splice(buf, size, &jb);
	/* a string nonce's token lies inside the input, quotes included */
	if (rc == 0 && jb.nonce_kind == JBODY_NONCE_STRING &&
	    (jb.nonce_len < 2 || jb.nonce_at + jb.nonce_len > size ||
	    buf[jb.nonce_at] != '"' || buf[jb.nonce_at + jb.nonce_len - 1] != '"'))
		abort();
	if (rc == 0 && jb.nonce_kind == JBODY_NONCE_STRING)
		fuzz_check_digits(buf + jb.nonce_at, jb.nonce_len);
	fuzz_check_quote(buf, size);
	return 0;
}
