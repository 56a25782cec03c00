/*
 * fmt.c — numbers and strings formatted without printf.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fmt.h"

/* v in base 10 or 16, zero-padded to width digits; no NUL. */
size_t
fmt_uint(char *dst, unsigned long long v, unsigned base, unsigned width)
{
	static const char	digits[] = "0123456789abcdef";
	char			d[FMT_UINT_MAX];
	size_t			i = sizeof(d);

	if (width > sizeof(d))
		width = sizeof(d);
	if (base == 16)		/* constant divisors: shifts and multiplies, no div */
		do {
			d[--i] = digits[v & 0xf];
			v >>= 4;
		} while (v != 0);
	else
		do {
			d[--i] = digits[v % 10];
			v /= 10;
		} while (v != 0);
	while (sizeof(d) - i < width)
		d[--i] = '0';
	memcpy(dst, d + i, sizeof(d) - i);
	return sizeof(d) - i;
}

/* vasprintf, NULL when out of memory. */
char *
fmt_alloc(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	va_end(ap);
	return s;
}

/* snprintf(dst, size, "%s", src) without the format; the bytes copied. */
size_t
fmt_copy(char *dst, size_t size, const char *src)
{
	size_t	n;

	if (size == 0)
		return 0;
	n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
	return n;
}

/* The directory part of path (paths in the config); -1 when cut. */
int
fmt_dirname(char *dst, size_t size, const char *path)
{
	const char	*slash = strrchr(path, '/');
	size_t		 n;

	if (slash == NULL)
		return fmt_copy(dst, size, ".") == 1 ? 0 : -1;
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= size) {
		fmt_copy(dst, size, path);	/* cut within the directory part */
		return -1;
	}
	memcpy(dst, path, n);
	dst[n] = '\0';
	return 0;
}

/* Strip blanks around s in place (config values and list items). */
char *
fmt_trim(char *s)
{
	char	*e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}
