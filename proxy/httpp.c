/*
 * httpp: strict HTTP/1.1 message heads (RFC 9112 sections 2-6) and chunked
 * bodies (section 7.1).  Grammar is enforced, never repaired: whatever a
 * lenient peer could frame differently is an error.
 */
#include <stdint.h>
#include <string.h>

#include "httpp.h"

/* Bytes one httpp_chunked_feed call may consume so the count fits ssize_t. */
#define HTTPP_FEED_MAX	(SIZE_MAX / 2)

enum {
	/* chunk-size line: size, extensions, CRLF */
	CH_SIZE,
	CH_EXT_AFTER,		/* after size or value: BWS ";" or CR */
	CH_EXT_BWS,		/* BWS seen, ";" must follow */
	CH_EXT_NAME_PRE,	/* after ";": BWS then a name */
	CH_EXT_NAME,
	CH_EXT_NAME_POST,	/* BWS after a name: "=" or ";" */
	CH_EXT_VAL_PRE,		/* after "=": BWS then token or quoted */
	CH_EXT_TOKEN,
	CH_EXT_QUOTED,
	CH_EXT_QESC,		/* after a backslash in a quoted-string */
	CH_SIZE_LF,
	/* chunk-data and its CRLF */
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	/* trailer section and the final CRLF */
	CH_TR_START,
	CH_TR_NAME,
	CH_TR_VALUE,
	CH_TR_LF,
	CH_END_LF,
	CH_DONE,
	CH_ERROR
};

/*
 * Byte classes, one table lookup per byte (the parser runs on every head):
 * H_TCHAR  RFC 9110 tchar: ALPHA DIGIT !#$%&'*+-.^_`|~
 * H_FV     field-value byte: HTAB, SP, VCHAR or obs-text (not CTL, not DEL)
 * H_STOP   a byte that ends or breaks a head line: CR, LF, NUL
 * H_HOST   a byte a Host value may hold: ALPHA DIGIT -._~%!$&'()*+,;=:[]
 */
#define H_TCHAR	1
#define H_FV	2
#define H_STOP	4
#define H_HOST	8
static const unsigned char httpp_cls[256] = {
	 4,  0,  0,  0,  0,  0,  0,  0,  0,  2,  4,  0,  0,  4,  0,  0,	/* 0x00 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,	/* 0x10 */
	 2, 11,  2,  3, 11, 11, 11, 11, 10, 10, 11, 11, 10, 11, 11,  2,	/* 0x20 */
	11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10, 10,  2, 10,  2,  2,	/* 0x30 */
	 2, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,	/* 0x40 */
	11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10,  2, 10,  3, 11,	/* 0x50 */
	 3, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,	/* 0x60 */
	11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,  2,  3,  2, 11,  0,	/* 0x70 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0x80 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0x90 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xa0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xb0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xc0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xd0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xe0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,	/* 0xf0 */
};

#define httpp_tchar(c)	(httpp_cls[(unsigned char)(c)] & H_TCHAR)
#define httpp_fvchar(c)	(httpp_cls[(unsigned char)(c)] & H_FV)
#define httpp_hostchar(c) (httpp_cls[(unsigned char)(c)] & H_HOST)

/* Optional whitespace: SP or HTAB. */
static int
httpp_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* ASCII lower case, independent of the locale. */
static int
httpp_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Compare a[0..n) with b[0..n), ignoring ASCII case. */
static int
httpp_ieqn(const char *a, const char *b, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (httpp_lower(a[i]) != httpp_lower(b[i]))
			return 0;
	}
	return 1;
}

/* Compare a[0..alen) with the string b, ignoring ASCII case. */
static int
httpp_ieq(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && httpp_ieqn(a, b, alen);
}

/* The same with a string literal b: its length is known at compile time. */
#define HTTPP_IEQ(a, alen, lit) \
	((alen) == sizeof(lit) - 1 && httpp_ieqn((a), (lit), sizeof(lit) - 1))

/*
 * Find the end of the head, or the first byte that makes it invalid,
 * looking only at buf[*from..len): the bytes before were scanned by an
 * earlier call on the same head and held neither.  On 0, *from = len.
 */
size_t
httpp_head_scan(const char *buf, size_t len, size_t *from)
{
	size_t	i = *from;

	/* a CR ended the bytes scanned before: the next byte must be LF */
	if (i > 0 && i < len && buf[i - 1] == '\r' && buf[i] != '\n')
		return i + 1;
	for (;;) {
		while (i < len && !(httpp_cls[(unsigned char)buf[i]] & H_STOP))
			i++;
		if (i >= len)
			break;
		if (buf[i] == '\0')
			return i + 1;
		if (buf[i] == '\r') {
			if (++i >= len)
				break;	/* the LF may come with the next read */
			if (buf[i] != '\n')
				return i + 1;
		} else if (i == 0 || buf[i - 1] != '\r')
			return i + 1;	/* a bare LF */
		/* buf[i] is the LF of a CRLF: an empty line before it ends the head */
		if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return i + 1;
		i++;
	}
	*from = len;
	return 0;
}

size_t
httpp_head_len(const char *buf, size_t len)
{
	size_t	from = 0;

	return httpp_head_scan(buf, len, &from);
}

/* Cut the line starting at *off, which must end with CRLF. */
static int
httpp_line(const char *buf, size_t len, size_t *off, const char **line,
    size_t *llen, const char **why)
{
	size_t	i;

	for (i = *off; i < len && !(httpp_cls[(unsigned char)buf[i]] & H_STOP); i++)
		;
	if (i < len && buf[i] == '\n') {
		*why = "bare LF in head";
		return -1;
	}
	if (i < len && buf[i] == '\0') {
		*why = "NUL in head";
		return -1;
	}
	if (i + 1 >= len) {
		*why = "head not terminated";
		return -1;
	}
	if (buf[i + 1] != '\n') {
		*why = "bare CR in head";
		return -1;
	}
	*line = buf + *off;
	*llen = i - *off;
	*off = i + 2;
	return 0;
}

/* HTTP-version: exactly "HTTP/1.0" or "HTTP/1.1". */
static int
httpp_version(const char *p, size_t n, int *minor, const char **why)
{
	if (n != 8 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1')) {
		*why = "bad HTTP version";
		return -1;
	}
	*minor = p[7] - '0';
	return 0;
}

/* request-line = method SP request-target SP HTTP-version */
static int
httpp_request_line(const char *l, size_t n, struct httpp_msg *m,
    const char **why)
{
	size_t	i = 0, t;

	while (i < n && httpp_tchar(l[i]))
		i++;
	if (i == 0 || i == n || l[i] != ' ') {
		*why = "bad method";
		return -1;
	}
	m->method = l;
	m->method_len = i;
	t = ++i;
	while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f)
		i++;
	if (i == t || i == n || l[i] != ' ') {
		*why = "bad request target";
		return -1;
	}
	m->target = l + t;
	m->target_len = i - t;
	i++;
	return httpp_version(l + i, n - i, &m->minor, why);
}

/* status-line = HTTP-version SP 3DIGIT [ SP reason-phrase ] */
static int
httpp_status_line(const char *l, size_t n, struct httpp_msg *m,
    const char **why)
{
	size_t	i;

	if (n < 12 || httpp_version(l, 8, &m->minor, why) == -1 ||
	    l[8] != ' ' || (n > 12 && l[12] != ' ')) {
		*why = "bad status line";
		return -1;
	}
	for (i = 9; i < 12; i++) {
		if (l[i] < '0' || l[i] > '9') {
			*why = "bad status code";
			return -1;
		}
		m->status = m->status * 10 + (l[i] - '0');
	}
	if (m->status < 100 || m->status > 599) {
		*why = "bad status code";
		return -1;
	}
	m->reason = l + (n > 12 ? 13 : 12);
	m->reason_len = n > 12 ? n - 13 : 0;
	for (i = 0; i < m->reason_len; i++) {
		if (!httpp_fvchar(m->reason[i])) {
			*why = "bad reason phrase";
			return -1;
		}
	}
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS */
static int
httpp_header_line(const char *l, size_t n, struct httpp_msg *m,
    const char **why)
{
	struct httpp_header	*h;
	size_t			 i = 0, v, e;

	if (httpp_ows(l[0])) {
		*why = "obsolete line folding";
		return -1;
	}
	while (i < n && httpp_tchar(l[i]))
		i++;
	if (i < n && httpp_ows(l[i])) {
		*why = "whitespace before colon";
		return -1;
	}
	if (i == 0 || i == n || l[i] != ':') {
		*why = "bad header name";
		return -1;
	}
	for (v = i + 1; v < n; v++) {
		if (!httpp_fvchar(l[v])) {
			*why = "bad header value";
			return -1;
		}
	}
	if (m->nhdr == HTTPP_MAX_HEADERS) {
		*why = "too many headers";
		return -1;
	}
	for (v = i + 1; v < n && httpp_ows(l[v]); v++)
		;
	for (e = n; e > v && httpp_ows(l[e - 1]); e--)
		;
	h = &m->hdr[m->nhdr++];
	h->name = l;
	h->name_len = i;
	h->value = l + v;
	h->value_len = e - v;
	return 0;
}

/* Header lines up to the empty line, which must end the head exactly. */
static int
httpp_headers(const char *buf, size_t len, size_t off, struct httpp_msg *m,
    const char **why)
{
	const char	*l;
	size_t		 n;

	for (;;) {
		if (httpp_line(buf, len, &off, &l, &n, why) == -1)
			return -1;
		if (n == 0)
			break;
		if (httpp_header_line(l, n, m, why) == -1)
			return -1;
	}
	if (off != len) {
		*why = "data after head";
		return -1;
	}
	return 0;
}

/* Content-Length = 1*DIGIT, once. */
static int
httpp_content_length(const struct httpp_header *h, struct httpp_msg *m,
    const char **why)
{
	long long	v = 0;
	size_t		i;

	if (m->content_length != -1) {
		*why = "duplicate Content-Length";
		return -1;
	}
	if (h->value_len == 0 || h->value_len > HTTPP_CL_DIGITS) {
		*why = "bad Content-Length";
		return -1;
	}
	for (i = 0; i < h->value_len; i++) {
		if (h->value[i] < '0' || h->value[i] > '9') {
			*why = "bad Content-Length";
			return -1;
		}
		v = v * 10 + (h->value[i] - '0');
	}
	m->content_length = v;
	return 0;
}

/* Transfer-Encoding: exactly "chunked", once. */
static int
httpp_transfer_encoding(const struct httpp_header *h, struct httpp_msg *m,
    const char **why)
{
	if (m->chunked) {
		*why = "duplicate Transfer-Encoding";
		return -1;
	}
	if (!HTTPP_IEQ(h->value, h->value_len, "chunked")) {
		*why = "unsupported Transfer-Encoding";
		return -1;
	}
	m->chunked = 1;
	return 0;
}

/* Look at one Connection list element [s, e), already trimmed. */
static int
httpp_connection_token(const char *s, const char *e, int *cl, int *ka,
    const char **why)
{
	const char	*p;

	for (p = s; p < e; p++) {
		if (!httpp_tchar(*p)) {
			*why = "bad Connection header";
			return -1;
		}
	}
	if (HTTPP_IEQ(s, (size_t)(e - s), "close"))
		*cl = 1;
	else if (HTTPP_IEQ(s, (size_t)(e - s), "keep-alive"))
		*ka = 1;
	return 0;
}

/* Connection = #connection-option; empty elements are allowed. */
static int
httpp_connection(const struct httpp_header *h, int *cl, int *ka,
    const char **why)
{
	const char	*p = h->value, *end = p + h->value_len, *s, *e;

	for (;;) {
		for (s = p; p < end && *p != ','; p++)
			;
		for (e = p; s < e && httpp_ows(*s); s++)
			;
		for (; e > s && httpp_ows(e[-1]); e--)
			;
		if (httpp_connection_token(s, e, cl, ka, why) == -1)
			return -1;
		if (p == end)
			return 0;
		p++;
	}
}

/* Host, at most once, with only the bytes a host and port may hold (RFC 3986
 * reg-name or IP literal, and a port). */
static int
httpp_host(const struct httpp_header *h, struct httpp_msg *m,
    const char **why)
{
	size_t	i;

	if (m->host != NULL) {
		*why = "duplicate Host";
		return -1;
	}
	for (i = 0; i < h->value_len; i++) {
		if (!httpp_hostchar(h->value[i])) {
			*why = "bad Host";
			return -1;
		}
	}
	m->host = h->value;
	m->host_len = h->value_len;
	return 0;
}

/* Interpret one header that affects framing or connection handling. */
static int
httpp_derive_one(const struct httpp_header *h, struct httpp_msg *m,
    int request, int *cl, int *ka, const char **why)
{
	if (HTTPP_IEQ(h->name, h->name_len, "content-length"))
		return httpp_content_length(h, m, why);
	if (HTTPP_IEQ(h->name, h->name_len, "transfer-encoding"))
		return httpp_transfer_encoding(h, m, why);
	if (HTTPP_IEQ(h->name, h->name_len, "connection"))
		return httpp_connection(h, cl, ka, why);
	if (!request)
		return 0;
	if (HTTPP_IEQ(h->name, h->name_len, "host"))
		return httpp_host(h, m, why);
	if (HTTPP_IEQ(h->name, h->name_len, "expect") &&
	    HTTPP_IEQ(h->value, h->value_len, "100-continue") && m->minor == 1)
		m->expect_continue = 1;
	return 0;
}

/* Fill the derived fields and refuse conflicting framing. */
static int
httpp_derive(struct httpp_msg *m, int request, const char **why)
{
	size_t	i;
	int	cl = 0, ka = 0;

	for (i = 0; i < m->nhdr; i++) {
		if (httpp_derive_one(&m->hdr[i], m, request, &cl, &ka,
		    why) == -1)
			return -1;
	}
	if (m->chunked && m->content_length != -1) {
		*why = "both Content-Length and Transfer-Encoding";
		return -1;
	}
	if (m->chunked && m->minor == 0) {
		*why = "Transfer-Encoding in HTTP/1.0";
		return -1;
	}
	m->keepalive = m->minor == 1 ? !cl : ka && !cl;
	return 0;
}

/* Reset m before parsing. */
static void
httpp_msg_init(struct httpp_msg *m)
{
	memset(m, 0, sizeof *m);
	m->method = m->target = m->reason = m->host = NULL;
	m->content_length = -1;
}

/* Parse a request head. */
int
httpp_parse_request(const char *buf, size_t len, struct httpp_msg *m,
    const char **why)
{
	const char	*dummy, *l;
	size_t		 off = 0, n;

	if (why == NULL)
		why = &dummy;
	httpp_msg_init(m);
	if (httpp_line(buf, len, &off, &l, &n, why) == -1 ||
	    httpp_request_line(l, n, m, why) == -1 ||
	    httpp_headers(buf, len, off, m, why) == -1 ||
	    httpp_derive(m, 1, why) == -1)
		return -1;
	return 0;
}

/* Parse a response head. */
int
httpp_parse_response(const char *buf, size_t len, struct httpp_msg *m,
    const char **why)
{
	const char	*dummy, *l;
	size_t		 off = 0, n;

	if (why == NULL)
		why = &dummy;
	httpp_msg_init(m);
	if (httpp_line(buf, len, &off, &l, &n, why) == -1 ||
	    httpp_status_line(l, n, m, why) == -1 ||
	    httpp_headers(buf, len, off, m, why) == -1 ||
	    httpp_derive(m, 0, why) == -1)
		return -1;
	return 0;
}

/* First header named name, ignoring case. */
const struct httpp_header *
httpp_find(const struct httpp_msg *m, const char *name)
{
	size_t	i;

	for (i = 0; i < m->nhdr; i++) {
		if (httpp_ieq(m->hdr[i].name, m->hdr[i].name_len, name))
			return &m->hdr[i];
	}
	return NULL;
}

/* Make the decoder fail for good with reason why. */
static int
httpp_chunked_fail(struct httpp_chunked *c, const char *why)
{
	c->state = CH_ERROR;
	c->why = why;
	return -1;
}

/* Value of a hex digit, or -1. */
static int
httpp_hex(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* qdtext / quoted-pair byte: what a quoted-string may hold (RFC 9110 5.6.4). */
static int
httpp_qdtext(unsigned char ch)
{
	return httpp_fvchar(ch) && ch != '"' && ch != '\\';
}

/* Prepare c for a new body. */
void
httpp_chunked_init(struct httpp_chunked *c)
{
	memset(c, 0, sizeof *c);
	c->state = CH_SIZE;
	c->why = NULL;
}

/* Where a size or extension value may end: BWS ";" or CR. */
static int
httpp_chunked_after(struct httpp_chunked *c, unsigned char ch)
{
	if (httpp_ows(ch))
		c->state = CH_EXT_BWS;
	else if (ch == ';')
		c->state = CH_EXT_NAME_PRE;
	else if (ch == '\r')
		c->state = CH_SIZE_LF;
	else
		return httpp_chunked_fail(c, "bad chunk extension");
	return 0;
}

/* Next state after a byte in a name or its BWS: ";", "=" or CR. */
static int
httpp_chunked_name_end(unsigned char ch, int cr_ok)
{
	if (ch == ';')
		return CH_EXT_NAME_PRE;
	if (ch == '=')
		return CH_EXT_VAL_PRE;
	if (ch == '\r' && cr_ok)
		return CH_SIZE_LF;
	return CH_ERROR;
}

/* Next state after a byte inside a quoted-string (escape included). */
static int
httpp_chunked_quoted(int st, unsigned char ch)
{
	if (st == CH_EXT_QESC)
		return httpp_fvchar(ch) ? CH_EXT_QUOTED : CH_ERROR;
	if (ch == '"')
		return CH_EXT_AFTER;
	if (ch == '\\')
		return CH_EXT_QESC;
	return httpp_qdtext(ch) ? CH_EXT_QUOTED : CH_ERROR;
}

/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted ) ] ) */
static int
httpp_chunked_ext(struct httpp_chunked *c, unsigned char ch)
{
	int	ws = httpp_ows(ch), tc = httpp_tchar(ch), next = CH_ERROR;

	switch (c->state) {
	case CH_EXT_AFTER:
		return httpp_chunked_after(c, ch);
	case CH_EXT_BWS:
		next = ws ? CH_EXT_BWS : ch == ';' ? CH_EXT_NAME_PRE : CH_ERROR;
		break;
	case CH_EXT_NAME_PRE:
		next = ws ? CH_EXT_NAME_PRE : tc ? CH_EXT_NAME : CH_ERROR;
		break;
	case CH_EXT_NAME:
		next = tc ? CH_EXT_NAME : ws ? CH_EXT_NAME_POST :
		    httpp_chunked_name_end(ch, 1);
		break;
	case CH_EXT_NAME_POST:
		next = ws ? CH_EXT_NAME_POST : httpp_chunked_name_end(ch, 0);
		break;
	case CH_EXT_VAL_PRE:
		next = ws ? CH_EXT_VAL_PRE : tc ? CH_EXT_TOKEN :
		    ch == '"' ? CH_EXT_QUOTED : CH_ERROR;
		break;
	case CH_EXT_TOKEN:
		if (!tc)
			return httpp_chunked_after(c, ch);
		next = CH_EXT_TOKEN;
		break;
	case CH_EXT_QUOTED:
	case CH_EXT_QESC:
		next = httpp_chunked_quoted(c->state, ch);
		break;
	}
	if (next == CH_ERROR)
		return httpp_chunked_fail(c, "bad chunk extension");
	c->state = next;
	return 0;
}

/* One byte of a chunk-size line: 1*HEXDIG [ chunk-ext ] CRLF. */
static int
httpp_chunked_size(struct httpp_chunked *c, unsigned char ch)
{
	int	v;

	if (++c->line > HTTPP_CHUNK_LINE_MAX)
		return httpp_chunked_fail(c, "chunk size line too long");
	if (c->state == CH_SIZE_LF) {
		if (ch != '\n')
			return httpp_chunked_fail(c, "bare CR in chunk size line");
		c->state = c->remaining == 0 ? CH_TR_START : CH_DATA;
		c->line = 0;
		return 0;
	}
	if (c->state != CH_SIZE)
		return httpp_chunked_ext(c, ch);
	if ((v = httpp_hex(ch)) != -1) {
		if (++c->digits > HTTPP_CHUNK_DIGITS)
			return httpp_chunked_fail(c, "chunk size too long");
		c->remaining = c->remaining << 4 | (unsigned int)v;
		return 0;
	}
	if (c->digits == 0 || (!httpp_ows(ch) && ch != ';' && ch != '\r'))
		return httpp_chunked_fail(c, "bad chunk size");
	return httpp_chunked_after(c, ch);
}

/* The CRLF that must follow chunk-data. */
static int
httpp_chunked_data_end(struct httpp_chunked *c, unsigned char ch)
{
	if (c->state == CH_DATA_CR && ch == '\r')
		c->state = CH_DATA_LF;
	else if (c->state == CH_DATA_LF && ch == '\n') {
		c->state = CH_SIZE;
		c->remaining = 0;
		c->digits = 0;
		c->line = 0;
	} else
		return httpp_chunked_fail(c, "missing CRLF after chunk data");
	return 0;
}

/* trailer-section = *( field-line CRLF ), then the final CRLF. */
static int
httpp_chunked_trailer(struct httpp_chunked *c, unsigned char ch)
{
	int	st = c->state;

	if (++c->line > HTTPP_TRAILER_LINE_MAX)
		return httpp_chunked_fail(c, "trailer line too long");
	if (st == CH_TR_START && ch == '\r')
		c->state = CH_END_LF;
	else if (st == CH_TR_START && httpp_ows(ch))
		return httpp_chunked_fail(c, "obsolete line folding in trailer");
	else if (st == CH_TR_START && httpp_tchar(ch)) {
		if (++c->ntrailers > HTTPP_MAX_TRAILERS)
			return httpp_chunked_fail(c, "too many trailers");
		c->state = CH_TR_NAME;
	} else if (st == CH_TR_NAME && (httpp_tchar(ch) || ch == ':'))
		c->state = ch == ':' ? CH_TR_VALUE : CH_TR_NAME;
	else if (st == CH_TR_VALUE && (httpp_fvchar(ch) || ch == '\r'))
		c->state = ch == '\r' ? CH_TR_LF : CH_TR_VALUE;
	else if (st == CH_TR_LF && ch == '\n') {
		c->state = CH_TR_START;
		c->line = 0;
	} else if (st == CH_END_LF && ch == '\n')
		c->state = CH_DONE;
	else
		return httpp_chunked_fail(c, "bad trailer");
	return 0;
}

/* Pass on as much of the current chunk-data as in[0..len) holds. */
static size_t
httpp_chunked_data(struct httpp_chunked *c, const char *in, size_t len,
    void (*emit)(void *, const char *, size_t), void *arg)
{
	size_t	n = len;

	if (c->remaining < n)
		n = (size_t)c->remaining;
	if (emit != NULL)
		emit(arg, in, n);
	c->remaining -= n;
	if (c->remaining == 0)
		c->state = CH_DATA_CR;
	return n;
}

/* Consume in[0..len), passing body bytes to emit. */
ssize_t
httpp_chunked_feed(struct httpp_chunked *c, const char *in, size_t len,
    void (*emit)(void *, const char *, size_t), void *arg, int *done,
    const char **why)
{
	const char	*dummy;
	size_t		 i = 0;
	int		 r;

	if (why == NULL)
		why = &dummy;
	*done = 0;
	if (len > HTTPP_FEED_MAX)
		len = HTTPP_FEED_MAX;
	while (i < len && c->state != CH_DONE && c->state != CH_ERROR) {
		if (c->state == CH_DATA) {
			i += httpp_chunked_data(c, in + i, len - i, emit, arg);
			continue;
		}
		if (c->state <= CH_SIZE_LF)
			r = httpp_chunked_size(c, in[i]);
		else if (c->state <= CH_DATA_LF)
			r = httpp_chunked_data_end(c, in[i]);
		else
			r = httpp_chunked_trailer(c, in[i]);
		if (r == -1)
			break;
		i++;
	}
	if (c->state == CH_ERROR) {
		*why = c->why;
		return -1;
	}
	*done = c->state == CH_DONE;
	return (ssize_t)i;
}
