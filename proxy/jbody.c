/*
 * jbody.c — validate a JSON body, find its nonce, emit a redacted copy.
 *
 * One pass over the bytes, without allocating: jbody_grammar walks the
 * RFC 8259 grammar with an explicit container stack (no recursion), checks
 * strings for strict UTF-8 and paired surrogate escapes as it goes (plain
 * runs 8 bytes at a time), and feeds each token to the nonce, redaction and
 * copy logic.  Only a body that fails is scanned again, by jbody_lint, so
 * that its first UTF-8 or surrogate fault is named as it always was.
 * Strings are decoded only when they hold
 * escapes, into a scratch buffer that is wiped.  The copy is kept as a span
 * of the input for as long as it equals the input (no blanks, no escapes,
 * nothing replaced), so a compact body is copied in a few memcpy calls, not
 * token by token; what differs goes through a small stage, so a body costs a
 * few evbuffer_add calls.
 *
 * jbody_scan_echo also notes the values it replaced in a request body
 * (struct jbody_echo), or hides them where an answer holds them again.
 *
 * Until 2026-11 yajl did the grammar; it let an unfinished token after the
 * value through ('{"a":1}"'), which this grammar refuses.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "fmt.h"
#include "jbody.h"
#include "redact.h"

#define JBODY_LOCAL_DEPTH 512	/* container stack held in the frame */
#define JBODY_WS(c)	((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

/* What a scalar handed to jbody_scalar is. */
#define JB_LIT	0	/* true, false, null: s is its text */
#define JB_NUM	1	/* a number: s is its text */
#define JB_STR	2	/* a string without escapes: s is its raw content */
#define JB_ESC	3	/* a string with escapes: s is decoded */

struct jbody_ctx {
	const struct redact_set	*rs;
	struct jbody		*jb;
	struct jbody_sink	*cur;		/* NULL: inside a dropped value */
	unsigned		 depth;
	unsigned		 max_depth;
	unsigned		 hide;		/* depth of the value being replaced */
	int			 emit;		/* an output was asked for */
	int			 fp;		/* fingerprint mode: capture, not drop */
	int			 pending;	/* the next value is to be replaced */
	int			 at_nonce;	/* the current top-level member is "nonce" */
	int			 comma;		/* a ',' goes before the next item */
	const unsigned char	*span;		/* input bytes [span, span_end) are */
	const unsigned char	*span_end;	/* the next output of cur, unsent */
	const unsigned char	*start;		/* the input */
	const unsigned char	*end;		/* end of the input */
	const unsigned char	*hide_at;	/* where the replaced container opens */
	struct jbody_echo	*note;		/* note replaced values here, or */
	const struct jbody_echo	*find;		/* hide values found here (not empty) */
	const char		*why;
	struct jbody_sink	 out;
	struct jbody_sink	 cap;		/* a replaced value, to fingerprint */
};

static const char jbody_hex[] = "0123456789abcdef";

/* Point a sink at its stage; ev NULL makes it grow on the heap instead. */
void
jbody_sink_init(struct jbody_sink *k, struct evbuffer *ev)
{
	k->ev = ev;
	k->p = k->stage;
	k->n = 0;
	k->size = sizeof(k->stage);
	k->failed = 0;
}

/* Move staged bytes to the evbuffer; -1 if any byte was lost on the way. */
int
jbody_sink_flush(struct jbody_sink *k)
{
	if (k->n > 0 && evbuffer_add(k->ev, k->p, k->n) == -1)
		k->failed = 1;
	k->n = 0;
	return k->failed ? -1 : 0;
}

/* Zero what a heap-growing sink holds (it may be a secret) and free it. */
void
jbody_sink_wipe(struct jbody_sink *k)
{
	explicit_bzero(k->p, k->n);
	if (k->p != k->stage)
		free(k->p);
	jbody_sink_init(k, k->ev);
}

/*
 * A new heap buffer of size bytes for old (NULL: none yet), holding its first
 * keep bytes; old's first wipe bytes are zeroed before it is freed (unless it
 * is the caller's inline buffer fixed): it may hold a secret.  NULL if no
 * memory, old as it was.
 */
static void *
jbody_regrow(void *old, size_t size, size_t keep, size_t wipe, const void *fixed)
{
	void	*p;

	if ((p = malloc(size)) == NULL)
		return NULL;
	if (old == NULL)
		return p;
	if (keep > 0)
		memcpy(p, old, keep);
	explicit_bzero(old, wipe);
	if (old != fixed)
		free(old);
	return p;
}

/* Make room for len more bytes in a heap-growing sink. */
static int
jbody_sink_grow(struct jbody_sink *k, size_t len)
{
	size_t	 size = k->size;
	char	*p;

	while (size - k->n < len) {
		if (size > SIZE_MAX / 2)
			goto fail;
		size *= 2;
	}
	if ((p = jbody_regrow(k->p, size, k->n, k->n, k->stage)) == NULL)
		goto fail;
	k->p = p;
	k->size = size;
	return 0;
fail:
	k->failed = 1;
	return -1;
}

/* Slow path of jbody_put: the stage is full. */
void
jbody_sink_spill(struct jbody_sink *k, const void *s, size_t len)
{
	if (k->ev != NULL) {
		jbody_sink_flush(k);
		if (len > k->size) {
			if (evbuffer_add(k->ev, s, len) == -1)
				k->failed = 1;
			return;
		}
	} else if (jbody_sink_grow(k, len) == -1)
		return;
	memcpy(k->p + k->n, s, len);
	k->n += len;
}

void
jbody_put_uint(struct jbody_sink *k, unsigned long long v)
{
	char	d[FMT_UINT_MAX];

	jbody_put(k, d, fmt_uint(d, v, 10, 0));
}

/* Wipe and free the noted texts; e is empty again. */
void
jbody_echo_free(struct jbody_echo *e)
{
	if (e->p != NULL) {
		explicit_bzero(e->p, e->len);
		free(e->p);
	}
	memset(e, 0, sizeof(*e));
}

/* Does s[0..len) hold one of e's texts? */
static int
jbody_echo_in(const struct jbody_echo *e, const void *s, size_t len)
{
	const unsigned char	*t = e->p, *end;
	size_t			 n;

	if (len < JBODY_ECHO_MIN || e->n == 0)
		return 0;
	end = t + e->len;
	while (t < end) {
		memcpy(&n, t, sizeof(n));
		t += sizeof(n);
		if (n <= len && memmem(s, len, t, n) != NULL)
			return 1;
		t += n;
	}
	return 0;
}

/*
 * Keep the text t[0..n) of a redacted value: not if shorter than
 * JBODY_ECHO_MIN or if it holds a text already kept; incomplete if it
 * cannot be kept.  The buffer grows by copying, the old one wiped.
 */
static void
jbody_echo_add(struct jbody_echo *e, const void *t, size_t n)
{
	unsigned char	*p;
	size_t		 need, size;

	if (n < JBODY_ECHO_MIN || e->incomplete || jbody_echo_in(e, t, n))
		return;
	if (e->n == JBODY_ECHO_MAX || n > SIZE_MAX / 2 - sizeof(n) - e->len) {
		e->incomplete = 1;
		return;
	}
	need = e->len + sizeof(n) + n;
	if (need > e->size) {
		size = e->size > 0 ? e->size : 256;
		while (size < need)
			size *= 2;
		if ((p = jbody_regrow(e->p, size, e->len, e->len, NULL)) == NULL) {
			e->incomplete = 1;
			return;
		}
		e->p = p;
		e->size = size;
	}
	memcpy(e->p + e->len, &n, sizeof(n));
	memcpy(e->p + e->len + sizeof(n), t, n);
	e->len = need;
	e->n++;
}

/* Note the scalar value a redaction replaced (s, raw as for jbody_scalar). */
static void
jbody_note(struct jbody_echo *e, int kind, const void *s, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	switch (kind) {
	case JB_NUM:
		jbody_echo_add(e, s, len);
		break;
	case JB_ESC:
		jbody_echo_add(e, s, len);
		/* FALLTHROUGH */
	case JB_STR:
		jbody_echo_add(e, raw + 1, rawlen - 2);	/* as sent, between the quotes */
		break;
	}
}

/* Send the pending span of input to the current sink. */
static void
jbody_span_flush(struct jbody_ctx *c)
{
	if (c->span != c->span_end)
		jbody_put(c->cur, c->span, (size_t)(c->span_end - c->span));
	c->span = c->span_end = NULL;
}

/* Emit input bytes p[0..n), which are their own output. */
static void
jbody_raw(struct jbody_ctx *c, const unsigned char *p, size_t n)
{
	if (c->cur == NULL)
		return;
	if (p != c->span_end) {
		jbody_span_flush(c);
		c->span = p;
	}
	c->span_end = p + n;
}

/* Emit the byte ch; it extends the span when the input goes on with ch. */
static void
jbody_emit(struct jbody_ctx *c, char ch)
{
	if (c->cur == NULL)
		return;
	if (c->span_end != NULL && c->span_end < c->end && *c->span_end == (unsigned char)ch) {
		c->span_end++;
		return;
	}
	jbody_span_flush(c);
	jbody_put(c->cur, &ch, 1);
}

/* Point output at sink k (NULL drops), sending what is pending first. */
static void
jbody_switch(struct jbody_ctx *c, struct jbody_sink *k)
{
	if (c->cur != NULL)
		jbody_span_flush(c);
	c->cur = k;
}

/* Length of the strict UTF-8 (RFC 3629) sequence at p, 0 if invalid. */
static size_t
jbody_utf8_len(const unsigned char *p, size_t len)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	if (p[0] < 0xe0)
		n = 2;
	else if (p[0] < 0xf0) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (p[0] == 0xed)
			hi = 0x9f;	/* surrogates */
	} else {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;	/* overlong */
		else if (p[0] == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	}
	if (len < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

/* Read four hex digits at p into *v. */
static int
jbody_hex4(const unsigned char *p, size_t len, unsigned *v)
{
	size_t	i;

	if (len < 4)
		return -1;
	*v = 0;
	for (i = 0; i < 4; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			*v = (*v << 4) | (unsigned)(p[i] - '0');
		else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')
			*v = (*v << 4) | (unsigned)((p[i] | 0x20) - 'a' + 10);
		else
			return -1;
	}
	return 0;
}

/*
 * Bytes taken by the escape at p (p[0] == '\\'); 0 for a surrogate escape
 * that is not a high+low pair.  Malformed escapes are left to the grammar.
 */
static size_t
jbody_escape_len(const unsigned char *p, size_t len)
{
	unsigned	hi, lo;

	if (len < 2 || p[1] != 'u')
		return len < 2 ? 1 : 2;
	if (jbody_hex4(p + 2, len - 2, &hi) == -1)
		return 2;
	if (hi < 0xd800 || hi > 0xdfff)
		return 6;
	if (hi > 0xdbff || len < 12 || p[6] != '\\' || p[7] != 'u' ||
	    jbody_hex4(p + 8, len - 8, &lo) == -1 || lo < 0xdc00 || lo > 0xdfff)
		return 0;
	return 12;
}

/*
 * Word-at-a-time tests on 8 bytes (exact: a borrow only ever starts at a byte
 * that matches): a byte >= 0x80, a byte below n (n <= 0x80), a byte equal to c.
 */
#define W_ONES		0x0101010101010101ULL
#define W_HIGHS		0x8080808080808080ULL
#define W_BELOW(w, n)	(((w) - W_ONES * (n)) & ~(w) & W_HIGHS)
#define W_HAS(w, c)	W_BELOW((w) ^ (W_ONES * (unsigned char)(c)), 1)

/* Does byte c end a run: for the lint (non-ASCII, '\\', '\v', '\f'), or for quoting? */
#define LINT_STOP(c)	((c) >= 0x80 || (c) == '\\' || (c) == '\v' || (c) == '\f')
#define QUOTE_STOP(c)	((c) < 0x20 || (c) >= 0x80 || (c) == '"' || (c) == '\\')

/*
 * Length of the run at p of bytes that need no look: for the lint, or (quote)
 * bytes a quoted string takes as they are.  8 bytes at a time, then bytewise.
 * On a little-endian machine the lowest flagged byte of a word is the first
 * stop (each test is exact up to its first match), so the run ends there
 * without a bytewise look.
 */
static inline size_t
jbody_run(const unsigned char *p, size_t len, int quote)
{
	uint64_t	w, m;
	size_t		i = 0;

	while (len - i >= 8) {
		memcpy(&w, p + i, 8);
		m = (w & W_HIGHS) | W_HAS(w, '\\') | (quote ?
		    W_BELOW(w, 0x20) | W_HAS(w, '"') :
		    W_HAS(w, '\v') | W_HAS(w, '\f'));
		if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)(__builtin_ctzll(m) >> 3);
#else
			break;
#endif
		}
		i += 8;
	}
	while (i < len && !(quote ? QUOTE_STOP(p[i]) : LINT_STOP(p[i])))
		i++;
	return i;
}

/*
 * The reason given for a body the grammar refused: the first invalid UTF-8
 * sequence, unpaired surrogate escape, \v or \f anywhere in it, as a
 * separate pass before the grammar reported them before 2026-11 (so a body
 * with two faults still gets the same message).  Backslashes only occur in
 * strings of a valid text, each starting one escape, so scanning without
 * tracking strings is exact.  0 when it finds none of these.
 */
static int
jbody_lint(const unsigned char *p, size_t len, const char **why)
{
	size_t	i = 0, n;

	while (i < len) {
		i += jbody_run(p + i, len - i, 0);
		if (i >= len)
			break;
		if (p[i] >= 0x80) {
			if ((n = jbody_utf8_len(p + i, len - i)) == 0) {
				*why = "invalid UTF-8";
				return -1;
			}
		} else if (p[i] == '\\') {
			if ((n = jbody_escape_len(p + i, len - i)) == 0) {
				*why = "unpaired surrogate escape";
				return -1;
			}
		} else if (p[i] == '\v' || p[i] == '\f') {
			*why = "invalid JSON";
			return -1;
		} else
			n = 1;
		i += n;
	}
	return 0;
}

/* Append the JSON escape for byte c (a quote, backslash, control or invalid byte). */
static void
jbody_escape(struct jbody_sink *k, unsigned char c)
{
	char	u[6] = { '\\', 'u', '0', '0', '0', '0' };

	switch (c) {
	case '"':
		jbody_put(k, "\\\"", 2);
		return;
	case '\\':
		jbody_put(k, "\\\\", 2);
		return;
	case '\b':
		jbody_put(k, "\\b", 2);
		return;
	case '\f':
		jbody_put(k, "\\f", 2);
		return;
	case '\n':
		jbody_put(k, "\\n", 2);
		return;
	case '\r':
		jbody_put(k, "\\r", 2);
		return;
	case '\t':
		jbody_put(k, "\\t", 2);
		return;
	}
	if (c >= 0x80) {
		jbody_put(k, "\\ufffd", 6);
		return;
	}
	u[4] = jbody_hex[c >> 4];
	u[5] = jbody_hex[c & 0xf];
	jbody_put(k, u, sizeof(u));
}

/* Append s[0..len) to k as a quoted JSON string, copying safe runs whole. */
void
jbody_sink_quote(struct jbody_sink *k, const char *str, size_t len)
{
	const unsigned char	*s = (const unsigned char *)str;
	size_t			 i = 0, run = 0, n;

	if (k == NULL)
		return;
	jbody_put(k, "\"", 1);
	while (i < len) {
		i += jbody_run(s + i, len - i, 1);
		if (i >= len)
			break;
		if (s[i] >= 0x80 && (n = jbody_utf8_len(s + i, len - i)) != 0) {
			i += n;
			continue;
		}
		jbody_put(k, s + run, i - run);
		jbody_escape(k, s[i]);
		run = ++i;
	}
	jbody_put(k, s + run, i - run);
	jbody_put(k, "\"", 1);
}

/* Append s[0..len) to out as a quoted JSON string. */
void
jbody_quote(struct evbuffer *out, const char *s, size_t len)
{
	struct jbody_sink	k;

	jbody_sink_init(&k, out);
	jbody_sink_quote(&k, s, len);
	jbody_sink_flush(&k);
}

/* Emit m[0..n), which needs no escape, as a string. */
static void
jbody_put_mask(struct jbody_ctx *c, const char *m, size_t n)
{
	if (c->cur == NULL)
		return;
	jbody_span_flush(c);
	jbody_put(c->cur, "\"", 1);
	jbody_put(c->cur, m, n);
	jbody_put(c->cur, "\"", 1);
}

/* Emit the replacement string of the redacted value val[0..len). */
static void
jbody_masked(struct jbody_ctx *c, const void *val, size_t len)
{
	char	m[REDACT_MASK_MAX];

	jbody_put_mask(c, m, redact_set_mask(c->rs, val, len, m));
}

/* Start a value: 1 if it is to be replaced, else emit its separator. */
static int
jbody_value(struct jbody_ctx *c)
{
	if (c->pending) {
		c->pending = 0;
		return 1;
	}
	if (c->comma)
		jbody_emit(c, ',');
	return 0;
}

/*
 * Emit a token: raw[0..rawlen) is its input, quotes included, when that is
 * also its output, else NULL: a string that held escapes is quoted anew
 * from its decoded bytes s[0..len).
 */
static void
jbody_token(struct jbody_ctx *c, const void *s, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	if (raw != NULL)
		jbody_raw(c, raw, rawlen);
	else if (c->cur != NULL) {
		jbody_span_flush(c);
		jbody_sink_quote(c->cur, s, len);
	}
}

/*
 * The two rare turns of jbody_scalar, out of line so that the common one
 * (copy the token) stays short: a value replaced by name (noted if asked),
 * and a value that holds one noted from the request.
 */
static __attribute__((noinline)) void
jbody_replace(struct jbody_ctx *c, int kind, const void *s, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	if (c->note != NULL)
		jbody_note(c->note, kind, s, len, raw, rawlen);
	jbody_masked(c, s, len);
}

static __attribute__((noinline)) void
jbody_find(struct jbody_ctx *c, int kind, const void *s, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	if (kind != JB_LIT && c->hide == 0 && jbody_echo_in(c->find, s, len))
		jbody_put_mask(c, REDACT_MASKED, sizeof(REDACT_MASKED) - 1);
	else
		jbody_token(c, s, len, kind == JB_ESC ? NULL : raw, rawlen);
}

/*
 * A value of the kind JB_*: s[0..len) as that says, raw[0..rawlen) its
 * input (a string's quotes included).  Replaced by name; or hidden because
 * it holds a noted value of the request; or copied.  Inlined in the
 * grammar: a call with six arguments cost every value of every body about
 * 13 instructions (callgrind) for turns that are rarely taken.
 */
static inline __attribute__((always_inline)) int
jbody_scalar(struct jbody_ctx *c, int kind, const void *s, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	if (!c->emit)
		return 1;
	if (jbody_value(c))
		jbody_replace(c, kind, s, len, raw, rawlen);
	else if (c->find != NULL)
		jbody_find(c, kind, s, len, raw, rawlen);
	else
		jbody_token(c, s, len, kind == JB_ESC ? NULL : raw, rawlen);
	c->comma = 1;
	return 1;
}

/*
 * Note the form of the top-level nonce's value.  A second nonce member
 * stays a duplicate whatever its value: which of the two an API reads is
 * its parser's choice.
 */
static void
jbody_nonce_kind(struct jbody_ctx *c, int kind)
{
	if (c->depth == 1 && c->at_nonce && c->jb->nonce_kind != JBODY_NONCE_DUP)
		c->jb->nonce_kind = kind;
}

/* The form of the valid JSON number s[0..len) as a nonce; *v its value if INT. */
static int
jbody_nonce_number(const char *s, size_t len, unsigned long long *v)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return JBODY_NONCE_OTHER;	/* '-', '.', 'e' or 'E' */
	*v = 0;
	for (i = 0; i < len; i++) {
		if (*v > (ULLONG_MAX - (unsigned)(s[i] - '0')) / 10)
			return JBODY_NONCE_BIG;
		*v = *v * 10 + (unsigned)(s[i] - '0');
	}
	return JBODY_NONCE_INT;
}

/* Enter an object or array at at; a redacted one is dropped or captured. */
static int
jbody_open(struct jbody_ctx *c, char brace, const unsigned char *at)
{
	if (c->depth >= c->max_depth) {
		c->why = "nesting too deep";
		return 0;
	}
	jbody_nonce_kind(c, JBODY_NONCE_OTHER);
	c->depth++;
	if (!c->emit)
		return 1;
	if (jbody_value(c)) {
		c->hide = c->depth;
		c->hide_at = at;
		jbody_switch(c, c->fp ? &c->cap : NULL);
	}
	jbody_emit(c, brace);
	c->comma = 0;
	return 1;
}

/* Leave an object or array (input up to end); replace it if it was redacted. */
static int
jbody_close(struct jbody_ctx *c, char brace, const unsigned char *end)
{
	if (c->emit) {
		jbody_emit(c, brace);
		c->comma = 1;
		if (c->hide == c->depth) {
			c->hide = 0;
			if (c->note != NULL)	/* its text as sent */
				jbody_echo_add(c->note, c->hide_at, (size_t)(end - c->hide_at));
			jbody_switch(c, &c->out);
			jbody_masked(c, c->cap.p, c->cap.n);
			jbody_sink_wipe(&c->cap);
		}
	}
	c->depth--;
	return 1;
}

/* A number, as its literal text (never converted); notes a top-level nonce. */
static int
jbody_number(struct jbody_ctx *c, const char *s, size_t len)
{
	unsigned long long	 v = 0;

	if (c->depth == 1 && c->at_nonce) {
		jbody_nonce_kind(c, jbody_nonce_number(s, len, &v));
		c->jb->nonce_num = v;
	}
	return jbody_scalar(c, JB_NUM, s, len, (const unsigned char *)s, len);
}

/* '{' at at. */
static int
jbody_start_map(struct jbody_ctx *c, const unsigned char *at)
{
	if (!jbody_open(c, '{', at))
		return 0;
	if (c->depth == 1) {
		c->jb->is_object = 1;
		c->jb->empty = 1;
	}
	return 1;
}

/* A member name, unescaped (raw as for jbody_token); notes nonce and redaction. */
static int
jbody_map_key(struct jbody_ctx *c, const unsigned char *key, size_t len,
    const unsigned char *raw, size_t rawlen)
{
	if (c->depth == 1) {
		c->jb->empty = 0;
		c->at_nonce = len == 5 && memcmp(key, "nonce", 5) == 0;
		if (c->at_nonce && c->jb->has_nonce)
			c->jb->nonce_kind = JBODY_NONCE_DUP;
		if (c->at_nonce)
			c->jb->has_nonce = 1;
	}
	if (!c->emit)
		return 1;
	if (c->comma)
		jbody_emit(c, ',');
	jbody_token(c, key, len, raw, rawlen);
	jbody_emit(c, ':');
	c->comma = 0;
	if (c->hide == 0 && redact_set_has(c->rs, key, len))
		c->pending = 1;
	return 1;
}

/*
 * The grammar (RFC 8259, strict: strings are strict UTF-8 and their
 * surrogate escapes pairs; \v and \f are not blanks), in one pass.
 */
struct jbody_parse {
	const unsigned char	*p;		/* next byte */
	const unsigned char	*end;
	unsigned char		*dec;		/* decoded strings with escapes (wiped) */
	size_t			 dsize;
	unsigned char		*stack;		/* '{' or '[' per open container */
	unsigned char		 local[JBODY_LOCAL_DEPTH];
};

static void
jbody_ws(struct jbody_parse *s)
{
	while (s->p < s->end && JBODY_WS(*s->p))
		s->p++;
}

/* Append code point v as UTF-8 at d; the bytes written. */
static size_t
jbody_utf8(unsigned char *d, unsigned v)
{
	if (v < 0x80) {
		d[0] = (unsigned char)v;
		return 1;
	}
	if (v < 0x800) {
		d[0] = (unsigned char)(0xc0 | v >> 6);
		d[1] = (unsigned char)(0x80 | (v & 0x3f));
		return 2;
	}
	if (v < 0x10000) {
		d[0] = (unsigned char)(0xe0 | v >> 12);
		d[1] = (unsigned char)(0x80 | (v >> 6 & 0x3f));
		d[2] = (unsigned char)(0x80 | (v & 0x3f));
		return 3;
	}
	d[0] = (unsigned char)(0xf0 | v >> 18);
	d[1] = (unsigned char)(0x80 | (v >> 12 & 0x3f));
	d[2] = (unsigned char)(0x80 | (v >> 6 & 0x3f));
	d[3] = (unsigned char)(0x80 | (v & 0x3f));
	return 4;
}

/* Decode the escaped string raw[0..n) (valid, checked) into s->dec; its length or -1. */
static ssize_t
jbody_unescape(struct jbody_parse *s, const unsigned char *raw, size_t n)
{
	unsigned char	*d;
	unsigned	 v, lo;
	size_t		 i = 0, o = 0;

	if (n > s->dsize) {	/* decoded text is never longer than raw; none is kept */
		if ((d = jbody_regrow(s->dec, n, 0, s->dsize, NULL)) == NULL)
			return -1;
		s->dec = d;
		s->dsize = n;
	}
	d = s->dec;
	while (i < n) {
		if (raw[i] != '\\') {
			d[o++] = raw[i++];
			continue;
		}
		switch (raw[i + 1]) {
		case 'b': d[o++] = '\b'; break;
		case 'f': d[o++] = '\f'; break;
		case 'n': d[o++] = '\n'; break;
		case 'r': d[o++] = '\r'; break;
		case 't': d[o++] = '\t'; break;
		case 'u':
			(void)jbody_hex4(raw + i + 2, 4, &v);
			if (v >= 0xd800 && v <= 0xdbff) {	/* jbody_string paired it */
				(void)jbody_hex4(raw + i + 8, 4, &lo);
				v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			o += jbody_utf8(d + o, v);
			i += 6;
			continue;
		default: d[o++] = raw[i + 1]; break;	/* '"', '\\', '/' */
		}
		i += 2;
	}
	return (ssize_t)o;
}

/*
 * The string after an opening quote: its bytes, decoded when it holds
 * escapes.  Returns 0 (the bytes are the input's), 1 (decoded), -1 if invalid.
 */
static int
jbody_string(struct jbody_parse *s, const unsigned char **out, size_t *len)
{
	const unsigned char	*q = s->p, *end = s->end;
	int			 esc = 0;
	ssize_t			 n;

	for (;;) {
		q += jbody_run(q, (size_t)(end - q), 1);
		if (q >= end)
			return -1;
		if (*q == '"')
			break;
		if (*q >= 0x80) {
			if ((n = (ssize_t)jbody_utf8_len(q, (size_t)(end - q))) == 0)
				return -1;
			q += n;
			continue;
		}
		if (*q < 0x20 || end - q < 2)	/* a raw control byte, or cut */
			return -1;
		esc = 1;
		switch (q[1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			q += 2;
			break;
		case 'u':	/* 6 bytes, or 12 for a surrogate pair; less: invalid */
			if ((n = (ssize_t)jbody_escape_len(q, (size_t)(end - q))) < 6)
				return -1;
			q += n;
			break;
		default:
			return -1;
		}
	}
	*out = s->p;
	*len = (size_t)(q - s->p);
	s->p = q + 1;
	if (esc) {
		if ((n = jbody_unescape(s, *out, *len)) == -1)
			return -1;
		*out = s->dec;
		*len = (size_t)n;
	}
	return esc;
}

/* A number at s->p: its length, 0 if the grammar does not allow it. */
static size_t
jbody_number_len(const unsigned char *p, const unsigned char *end)
{
	const unsigned char	*q = p;

#define DIGIT(q)	((q) < end && *(q) >= '0' && *(q) <= '9')
	if (q < end && *q == '-')
		q++;
	if (q < end && *q == '0')
		q++;
	else if (DIGIT(q))
		while (DIGIT(q))
			q++;
	else
		return 0;
	if (q < end && *q == '.') {
		q++;
		if (!DIGIT(q))
			return 0;
		while (DIGIT(q))
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (!DIGIT(q))
			return 0;
		while (DIGIT(q))
			q++;
	}
#undef DIGIT
	return (size_t)(q - p);
}

/* Does s->p start with the literal lit? */
static int
jbody_literal(struct jbody_parse *s, const char *lit, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return 0;
	s->p += n;
	return 1;
}

/* One JSON text, callbacks in document order; 0, or -1 (c->why may say why). */
static int
jbody_grammar(struct jbody_ctx *c, struct jbody_parse *s)
{
	const unsigned char	*str, *raw;
	const char		*lit;
	size_t			 len, top = 0;
	int			 esc;

value:
	jbody_ws(s);
	if (s->p >= s->end)
		return -1;
	switch (*s->p) {
	case '{':
		s->p++;
		if (!jbody_start_map(c, s->p - 1))
			return -1;
		s->stack[top++] = '{';
		jbody_ws(s);
		if (s->p < s->end && *s->p == '}')
			goto close;
		goto key;
	case '[':
		s->p++;
		if (!jbody_open(c, '[', s->p - 1))
			return -1;
		s->stack[top++] = '[';
		jbody_ws(s);
		if (s->p < s->end && *s->p == ']')
			goto close;
		goto value;
	case '"':
		raw = s->p++;
		if ((esc = jbody_string(s, &str, &len)) == -1 ||
		    !jbody_scalar(c, esc ? JB_ESC : JB_STR, str, len, raw, (size_t)(s->p - raw)))
			return -1;
		if (c->at_nonce && c->depth == 1) {
			jbody_nonce_kind(c, JBODY_NONCE_STRING);
			c->jb->nonce_at = (size_t)(raw - c->start);
			c->jb->nonce_len = (size_t)(s->p - raw);
		}
		goto after;
	case 't':
	case 'f':
	case 'n':
		lit = *s->p == 't' ? "true" : *s->p == 'f' ? "false" : "null";
		len = strlen(lit);
		if (!jbody_literal(s, lit, len) || !jbody_scalar(c, JB_LIT, lit, len, s->p - len, len))
			return -1;
		jbody_nonce_kind(c, JBODY_NONCE_OTHER);
		goto after;
	default:
		if ((len = jbody_number_len(s->p, s->end)) == 0 ||
		    !jbody_number(c, (const char *)s->p, len))
			return -1;
		s->p += len;
		goto after;
	}
key:
	jbody_ws(s);
	if (s->p >= s->end || *s->p != '"')
		return -1;
	raw = s->p++;
	if ((esc = jbody_string(s, &str, &len)) == -1 ||
	    !jbody_map_key(c, str, len, esc ? NULL : raw, (size_t)(s->p - raw)))
		return -1;
	jbody_ws(s);
	if (s->p >= s->end || *s->p != ':')
		return -1;
	s->p++;
	goto value;
after:
	jbody_ws(s);
	if (top == 0)
		return s->p == s->end ? 0 : -1;
	if (s->p >= s->end)
		return -1;
	if (*s->p == ',') {
		s->p++;
		if (s->stack[top - 1] == '{')
			goto key;
		goto value;
	}
	if (*s->p != (s->stack[top - 1] == '{' ? '}' : ']'))
		return -1;
close:
	s->p++;
	if (!jbody_close(c, s->stack[--top] == '{' ? '}' : ']', s->p))
		return -1;
	goto after;
}

/* The cheap checks before the grammar; *first = offset of the first non-blank. */
static int
jbody_precheck(const char *buf, size_t len, int flags, size_t *first,
    const char **why)
{
	size_t	i = 0;

	if (len == 0) {
		*why = "empty body";
		return -1;
	}
	while (i < len && JBODY_WS(buf[i]))
		i++;
	if ((flags & JBODY_OBJECT) && i < len && buf[i] != '{') {
		*why = "not a JSON object";
		return -1;
	}
	*first = i;
	return 0;
}

/* Set up the state of one pass. */
static void
jbody_ctx_init(struct jbody_ctx *c, int flags, unsigned max_depth,
    const struct redact_set *rs, struct evbuffer *out, struct jbody *jb,
    struct jbody_echo *echo)
{
	memset(c, 0, offsetof(struct jbody_ctx, out));
	c->rs = rs;
	c->jb = jb;
	c->max_depth = max_depth;
	c->emit = out != NULL;
	c->fp = redact_set_fingerprints(rs);
	if (echo != NULL && (flags & JBODY_NOTE))
		c->note = echo;
	else if (echo != NULL && echo->n > 0)
		c->find = echo;
	c->cur = &c->out;
	jbody_sink_init(&c->out, out);
	jbody_sink_init(&c->cap, NULL);
}

/* Validate buf[0..len), fill *jb and optionally emit a redacted copy to out. */
int
jbody_scan(const char *buf, size_t len, int flags, unsigned max_depth,
    const struct redact_set *rs, struct evbuffer *out, struct jbody *jb,
    const char **why)
{
	return jbody_scan_echo(buf, len, flags & ~JBODY_NOTE, max_depth, rs, out, jb,
	    why, NULL);
}

/* jbody_scan that notes (JBODY_NOTE) or hides the values of echo. */
int
jbody_scan_echo(const char *buf, size_t len, int flags, unsigned max_depth,
    const struct redact_set *rs, struct evbuffer *out, struct jbody *jb,
    const char **why, struct jbody_echo *echo)
{
	struct jbody_ctx	c;
	struct jbody_parse	s;
	size_t			first = 0;
	int			rc = -1;

	memset(jb, 0, sizeof(*jb));
	*why = NULL;
	if (jbody_precheck(buf, len, flags, &first, why) == -1)
		return -1;
	jbody_ctx_init(&c, flags, max_depth, rs, out, jb, echo);
	s.p = c.start = (const unsigned char *)buf;
	s.end = c.end = s.p + len;
	s.dec = NULL;
	s.dsize = 0;
	s.stack = s.local;	/* jbody_open stops at max_depth containers */
	if (max_depth > sizeof(s.local) && (s.stack = malloc(max_depth)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	if (jbody_grammar(&c, &s) == -1) {
		if (jbody_lint((const unsigned char *)buf, len, why) == 0)
			*why = c.why != NULL ? c.why : "invalid JSON";
	} else {
		if (c.emit) {
			jbody_span_flush(&c);
			jbody_sink_flush(&c.out);
		}
		if (c.out.failed || c.cap.failed)
			*why = "out of memory";
		else
			rc = 0;
	}
	if (s.dec != NULL) {
		explicit_bzero(s.dec, s.dsize);
		free(s.dec);
	}
	if (s.stack != s.local)
		free(s.stack);
	jbody_sink_wipe(&c.cap);
	if (jb->is_object)
		jb->open = first;
	return rc;
}

/*
 * The form of a string nonce's raw token tok[0..len) read as a number: its
 * text as a JSON reader decodes it, so a digit written as an escape
 * ("\u0039") is a digit too.
 */
int
jbody_nonce_digits(const char *tok, size_t len, unsigned long long *v)
{
	const unsigned char	*p, *end;
	char			 dig[JBODY_NONCE_DIGITS_MAX];
	size_t			 n = 0;
	unsigned		 u;
	int			 kind;

	if (len < 3 || tok[0] != '"' || tok[len - 1] != '"')
		return JBODY_NONCE_STRING;	/* "" or not a token */
	p = (const unsigned char *)tok + 1;
	end = (const unsigned char *)tok + len - 1;
	while (p < end) {
		if (*p >= '0' && *p <= '9')
			u = *p++;
		else if (*p == '\\' && end - p >= 6 && p[1] == 'u' &&
		    jbody_hex4(p + 2, 4, &u) == 0 && u >= '0' && u <= '9')
			p += 6;
		else
			return JBODY_NONCE_STRING;	/* a non-digit, as sent or decoded */
		if (n < sizeof(dig))
			dig[n] = (char)u;
		n++;
	}
	if (n > JBODY_NONCE_DIGITS_MAX)
		return JBODY_NONCE_BIG;		/* zero-padded past 20 digits too */
	kind = jbody_nonce_number(dig, n, v);
	return kind == JBODY_NONCE_OTHER ? JBODY_NONCE_STRING : kind;
}

/* Write "\"nonce\":N" (plus ',' unless empty) to dst; returns its length. */
size_t
jbody_nonce_member(char *dst, size_t dstlen, unsigned long long nonce,
    int empty)
{
	size_t	len = sizeof("\"nonce\":") - 1;

	if (dst == NULL || dstlen < JBODY_NONCE_MAX)
		return 0;
	memcpy(dst, "\"nonce\":", len);
	len += fmt_uint(dst + len, nonce, 10, 0);	/* at most 20 digits */
	if (!empty)
		dst[len++] = ',';
	dst[len] = '\0';
	return len;
}
