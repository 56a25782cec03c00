/*
 * sim-json.c — JSON helpers: string escaping, the body scanner that finds the
 * top-level nonce, and random ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <yajl/yajl_parse.h>

#include "sim.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not valid. */
static size_t
sim_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char	c = s[0];
	size_t		need, i;
	unsigned long	cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2; cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3; cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4; cp = c & 0x07;
	} else
		return 0;
	if (n < need)
		return 0;
	for (i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return need;
}

/*
 * Append s[0..len) as a JSON string.  Valid UTF-8 is copied as-is so that a
 * JSON decoder gives back the exact bytes; a byte that is not part of valid
 * UTF-8 becomes \u00XX (records also carry a SHA-256 for exactness).
 */
void
sim_json_str(struct evbuffer *out, const void *sv, size_t len)
{
	const unsigned char	*s = sv;
	size_t			 i = 0, run = 0, ul;
	char			 esc[8];

	evbuffer_add(out, "\"", 1);
	while (i < len) {
		unsigned char c = s[i];

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80 && (ul = sim_utf8_len(s + i, len - i)) != 0) {
			i += ul;
			continue;
		}
		evbuffer_add(out, s + run, i - run);
		switch (c) {
		case '"':  evbuffer_add(out, "\\\"", 2); break;
		case '\\': evbuffer_add(out, "\\\\", 2); break;
		case '\n': evbuffer_add(out, "\\n", 2); break;
		case '\r': evbuffer_add(out, "\\r", 2); break;
		case '\t': evbuffer_add(out, "\\t", 2); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			evbuffer_add(out, esc, 6);
		}
		run = ++i;
	}
	evbuffer_add(out, s + run, len - run);
	evbuffer_add(out, "\"", 1);
}

/* Append a NUL-terminated string as JSON, or null. */
void
sim_json_cstr(struct evbuffer *out, const char *s)
{
	if (s == NULL)
		evbuffer_add(out, "null", 4);
	else
		sim_json_str(out, s, strlen(s));
}

/* State of one scan: is the document one object, and what is its nonce. */
struct sim_scan {
	int		 depth;
	int		 object;	/* the top-level value is an object */
	int		 want;		/* the next depth-1 value is "nonce" */
	int		 has;
	char		*nonce;
	const char	*type;
};

/* Note a value; at depth 1 after the "nonce" key it is the nonce. */
static int
sim_scan_value(struct sim_scan *sc, const char *type, const void *txt,
    size_t len)
{
	if (sc->depth == 0)
		return 0;		/* top level is not an object */
	if (sc->depth == 1 && sc->want) {
		sc->want = 0;
		sc->has = 1;
		sc->type = type;
		free(sc->nonce);
		sc->nonce = NULL;
		if (txt != NULL && (sc->nonce = strndup(txt, len)) == NULL)
			return 0;
	}
	return 1;
}

static int
sim_scan_null(void *ctx)
{
	return sim_scan_value(ctx, "null", NULL, 0);
}

static int
sim_scan_bool(void *ctx, int b)
{
	return sim_scan_value(ctx, "boolean", b ? "true" : "false", b ? 4 : 5);
}

static int
sim_scan_number(void *ctx, const char *s, size_t len)
{
	return sim_scan_value(ctx, "number", s, len);
}

static int
sim_scan_string(void *ctx, const unsigned char *s, size_t len)
{
	struct sim_scan *sc = ctx;

	/* a nonce string with an escaped NUL would be cut short: refuse it */
	if (sc->depth == 1 && sc->want && memchr(s, 0, len) != NULL)
		return sim_scan_value(ctx, "string-with-nul", NULL, 0);
	return sim_scan_value(ctx, "string", s, len);
}

static int
sim_scan_open(struct sim_scan *sc, const char *type)
{
	if (sc->depth == 0) {
		if (strcmp(type, "object") != 0 || sc->object)
			return 0;
		sc->object = 1;
	} else if (!sim_scan_value(sc, type, NULL, 0))
		return 0;
	if (++sc->depth > SIM_MAX_JSON_DEPTH)
		return 0;
	return 1;
}

static int
sim_scan_start_map(void *ctx)
{
	return sim_scan_open(ctx, "object");
}

static int
sim_scan_start_array(void *ctx)
{
	return sim_scan_open(ctx, "array");
}

static int
sim_scan_end(void *ctx)
{
	struct sim_scan *sc = ctx;

	sc->depth--;
	return 1;
}

static int
sim_scan_key(void *ctx, const unsigned char *k, size_t len)
{
	struct sim_scan *sc = ctx;

	if (sc->depth == 1)
		sc->want = (len == 5 && memcmp(k, "nonce", 5) == 0);
	return 1;
}

static const yajl_callbacks sim_scan_callbacks = {
	sim_scan_null, sim_scan_bool, NULL, NULL, sim_scan_number,
	sim_scan_string, sim_scan_start_map, sim_scan_key, sim_scan_end,
	sim_scan_start_array, sim_scan_end,
};

/*
 * Check that body is exactly one JSON object (strict JSON, valid UTF-8,
 * nesting at most SIM_MAX_JSON_DEPTH).  On success (0) report its last
 * top-level "nonce": *has_nonce, its raw text (number token or decoded
 * string; NULL for objects/arrays/null) in malloc'd *nonce, its type.
 * -1 if it is not one object.
 */
int
sim_json_scan(const unsigned char *body, size_t len, char **nonce,
    const char **nonce_type, int *has_nonce)
{
	struct sim_scan	 sc;
	yajl_handle	 h;
	int		 ok;

	memset(&sc, 0, sizeof(sc));
	*nonce = NULL;
	*nonce_type = NULL;
	*has_nonce = 0;
	if ((h = yajl_alloc(&sim_scan_callbacks, NULL, &sc)) == NULL)
		return -1;
	ok = yajl_parse(h, body, len) == yajl_status_ok &&
	    yajl_complete_parse(h) == yajl_status_ok && sc.object;
	yajl_free(h);
	if (!ok) {
		free(sc.nonce);
		return -1;
	}
	*nonce = sc.nonce;
	*nonce_type = sc.type;
	*has_nonce = sc.has;
	return 0;
}

/* Lowercase hex of in[0..n) into out[2n+1]. */
void
sim_hex(const unsigned char *in, size_t n, char *out)
{
	static const char	digits[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* nbytes random bytes as hex into out[2*nbytes+1]. */
void
sim_hex_rand(char *out, size_t nbytes)
{
	unsigned char	buf[64];

	if (nbytes > sizeof(buf))
		nbytes = sizeof(buf);
	if (RAND_bytes(buf, (int)nbytes) != 1)
		memset(buf, 0x5a, nbytes);
	sim_hex(buf, nbytes, out);
}

/* A random version-4 UUID as text. */
void
sim_uuid(char out[37])
{
	unsigned char	b[16];
	char		h[33];

	if (RAND_bytes(b, sizeof(b)) != 1)
		memset(b, 0xa5, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	sim_hex(b, sizeof(b), h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12,
	    h + 16, h + 20);
}

/* Wall-clock time in milliseconds since the epoch. */
int64_t
sim_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
