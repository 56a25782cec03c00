/*
 * httpp: a strict HTTP/1.1 message-head parser and chunked-body decoder.
 *
 * Pure C and libc, no allocation, no libevent, so it can be unit-tested and
 * fuzzed alone.  It sits on a security boundary: anything two HTTP
 * implementations could read differently (bare LF, obsolete line folding,
 * duplicate or conflicting framing headers, ...) is refused with -1 and a
 * short static reason rather than repaired.
 */
#ifndef HTTPP_H
#define HTTPP_H

#include <stddef.h>
#include <sys/types.h>

#define HTTPP_MAX_HEADERS	64	/* header lines per head */
#define HTTPP_CL_DIGITS		18	/* Content-Length digits, fits long long */
#define HTTPP_CHUNK_DIGITS	16	/* chunk-size hex digits, fits 64 bits */
#define HTTPP_CHUNK_LINE_MAX	4096	/* chunk-size line (with extensions) */
#define HTTPP_TRAILER_LINE_MAX	4096	/* one trailer field line */
#define HTTPP_MAX_TRAILERS	HTTPP_MAX_HEADERS

struct httpp_header {
	const char	*name;
	size_t		 name_len;
	const char	*value;		/* optional whitespace trimmed */
	size_t		 value_len;
};

struct httpp_msg {
	/* request line (requests) */
	const char	*method;
	size_t		 method_len;
	const char	*target;
	size_t		 target_len;
	/* status line (responses) */
	int		 status;
	const char	*reason;	/* may be empty; NULL in requests */
	size_t		 reason_len;
	int		 minor;		/* HTTP/1.<minor>, 0 or 1 */
	struct httpp_header hdr[HTTPP_MAX_HEADERS];
	size_t		 nhdr;
	/* derived from headers */
	long long	 content_length;	/* -1 when absent */
	int		 chunked;	/* Transfer-Encoding: chunked */
	int		 keepalive;	/* HTTP/1.0/1.1 default + Connection */
	int		 expect_continue; /* Expect: 100-continue, HTTP/1.1 only */
	const char	*host;		/* Host header value or NULL */
	size_t		 host_len;
};

/*
 * Find the end of the head in buf[0..len): returns its length including the
 * final CRLFCRLF, or 0 when it is not complete yet.  When a byte that makes
 * the head invalid (NUL, bare LF, CR not followed by LF) is seen first, the
 * length up to and including that byte is returned instead, so the caller
 * hands it to the parser, which refuses it, rather than waiting for more.
 */
size_t	httpp_head_len(const char *, size_t);
/*
 * The same, resumable for a head that arrives in pieces: scanning starts at
 * *from (0 for a new head) and, while the head is incomplete, *from is moved
 * to len, so each byte is looked at once however the head is split.
 */
size_t	httpp_head_scan(const char *, size_t, size_t *);

/*
 * Parse a complete request head buf[0..len), len as returned by
 * httpp_head_len (the head must end exactly at len with CRLFCRLF).
 * Returns 0, or -1 with *why set to a static string (why may be NULL).
 * Pointers in m point into buf.  m is reset first; after a failure its
 * contents mean nothing.  A repeated Host, or one holding bytes a host and
 * port cannot, is refused; a missing Host is not: host is NULL and the
 * caller decides.  Expect: 100-continue counts only in HTTP/1.1.
 */
int	httpp_parse_request(const char *, size_t, struct httpp_msg *,
	    const char **);

/*
 * Same for a response head.  Host and Expect are not interpreted.  Whether
 * the body is close-delimited (no length, not chunked) or absent (1xx, 204,
 * 304, HEAD) is for the caller to decide.
 */
int	httpp_parse_response(const char *, size_t, struct httpp_msg *,
	    const char **);

/* Case-insensitive header lookup: the first match, or NULL. */
const struct httpp_header *httpp_find(const struct httpp_msg *, const char *);

/*
 * Chunked body decoder (RFC 9112 section 7.1), fed incrementally with
 * arbitrary splits.  Lines end with CRLF exactly.  A chunk-size has at most
 * HTTPP_CHUNK_DIGITS hex digits (so up to 2^64-1: the caller bounds the body
 * by counting what emit receives); its line, extensions included, at most
 * HTTPP_CHUNK_LINE_MAX bytes.  Extensions are checked against the grammar
 * and ignored.  Trailer fields (at most HTTPP_MAX_TRAILERS lines of
 * HTTPP_TRAILER_LINE_MAX bytes, no folding) are checked and discarded.
 */
struct httpp_chunked {
	int		 state;
	unsigned long long remaining;	/* chunk-size, then bytes left */
	size_t		 line;		/* bytes in the current size/trailer line */
	size_t		 digits;	/* chunk-size digits seen */
	size_t		 ntrailers;	/* trailer lines seen */
	const char	*why;		/* sticky error */
};

/* Prepare c for a new body. */
void	httpp_chunked_init(struct httpp_chunked *);

/*
 * Consume in[0..len).  For each run of body bytes calls emit(arg, ptr, n),
 * n > 0 and ptr inside in (emit may be NULL to discard).  Returns the bytes
 * consumed: all of len, or fewer when the body ended (it stops right after
 * the CRLF closing the trailer section; the rest belongs to the next
 * message).  *done is set to 1 when the body is complete, 0 otherwise.
 * Returns -1 with *why on malformed input; the error is sticky.  Feeding a
 * completed decoder consumes nothing and sets *done to 1.
 */
ssize_t	httpp_chunked_feed(struct httpp_chunked *, const char *, size_t,
	    void (*)(void *, const char *, size_t), void *, int *,
	    const char **);

#endif
