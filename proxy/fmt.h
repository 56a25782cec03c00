/*
 * fmt.h — numbers and strings formatted without printf, for the hot path
 * (audit lines, answer heads, request ids): no format string is parsed per
 * request.
 */
#ifndef FMT_H
#define FMT_H

#include <stddef.h>

#define FMT_UINT_MAX	32	/* the most digits fmt_uint writes */

/*
 * Write v in base 16 (lowercase) or 10 (any other base) to dst,
 * zero-padded to at least width
 * digits (at most FMT_UINT_MAX), without a NUL; returns the digits written.
 * dst must hold FMT_UINT_MAX bytes, or as many as v and width can need
 * (20 for any decimal, 16 for any hex, when width is below that).
 */
size_t	fmt_uint(char *dst, unsigned long long v, unsigned base, unsigned width);
/*
 * Copy the string src to dst[size] (size > 0), cut to size - 1 bytes and
 * NUL-terminated, as snprintf(dst, size, "%s", src) does; returns the bytes
 * copied.
 */
size_t	fmt_copy(char *dst, size_t size, const char *src);
/*
 * The directory part of path into dst[size] (size > 0): up to its last '/',
 * "/" for a name in the root, "." for a name without '/'; cut and terminated
 * as fmt_copy does, and then -1 (else 0).
 */
int	fmt_dirname(char *dst, size_t size, const char *path);
/* Strip blanks (spaces, tabs) around s in place; returns the first kept byte. */
char	*fmt_trim(char *s);
/* A malloc'd printf-formatted string (for messages off the hot path); NULL when out of memory. */
char	*fmt_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
