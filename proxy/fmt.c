/*
 * fmt.c — numbers and strings formatted without printf.
 */
#include <string.h>

#include "fmt.h"

/* v in base 10 or 16, zero-padded to width digits; no NUL. */
size_t
fmt_uint(char *dst, unsigned long long v, unsigned base, unsigned width)
{
	static const char	digits[] = "0123456789abcdef";
	char			d[FMT_UINT_MAX];
	size_t			i = sizeof(d);

	if (base < 2 || base > 16)
		base = 10;
	if (width > sizeof(d))
		width = sizeof(d);
	do {
		d[--i] = digits[v % base];
		v /= base;
	} while (v != 0);
	while (sizeof(d) - i < width)
		d[--i] = '0';
	memcpy(dst, d + i, sizeof(d) - i);
	return sizeof(d) - i;
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
