/*
 * test_fmt.c — fmt_uint against snprintf over edge values, widths and bases;
 * fmt_copy cuts and terminates as snprintf("%s") does; fmt_dirname.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include "fmt.h"
#include "unit.h"

/* fmt_uint(v, base, width) must print what snprintf(fmt) prints. */
static void
check_uint(unsigned long long v, unsigned base, unsigned width, const char *want)
{
	char	got[FMT_UINT_MAX + 1];
	size_t	n;

	memset(got, 'x', sizeof(got));
	n = fmt_uint(got, v, base, width);
	CHECK(n <= FMT_UINT_MAX && got[n] == 'x');	/* nothing past the digits */
	got[n < FMT_UINT_MAX ? n : FMT_UINT_MAX] = '\0';
	CHECK_STREQ(got, want);
}

static void
against_printf(unsigned long long v)
{
	char	want[80];

	snprintf(want, sizeof(want), "%llu", v);
	check_uint(v, 10, 0, want);
	snprintf(want, sizeof(want), "%03llu", v);
	check_uint(v, 10, 3, want);
	snprintf(want, sizeof(want), "%llx", v);
	check_uint(v, 16, 0, want);
	snprintf(want, sizeof(want), "%012llx", v);
	check_uint(v, 16, 12, want);
}

int
main(void)
{
	static const unsigned long long	vals[] = { 0, 1, 9, 10, 99, 100, 255, 256, 999, 1000,
	    4294967295ULL, 4294967296ULL, 9999999999999999999ULL, 10000000000000000000ULL,
	    ULLONG_MAX - 1, ULLONG_MAX };
	char				buf[8];
	size_t				i;
	unsigned long long		v;

	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		against_printf(vals[i]);
	for (v = 1; v != 0 && v < ULLONG_MAX / 7; v = v * 7 + 3)	/* every digit count */
		against_printf(v);
	check_uint(0, 10, 0, "0");
	check_uint(42, 10, 1, "42");
	check_uint(17, 2, 0, "17");		/* a base other than 16 counts as 10 */
	check_uint(7, 8, 2, "07");
	check_uint(1, 10, 1000, "00000000000000000000000000000001");	/* width cut to 32 */

	CHECK(fmt_copy(buf, sizeof(buf), "abc") == 3 && strcmp(buf, "abc") == 0);
	CHECK(fmt_copy(buf, sizeof(buf), "abcdefgh") == 7 && strcmp(buf, "abcdefg") == 0);
	CHECK(fmt_copy(buf, sizeof(buf), "") == 0 && buf[0] == '\0');
	CHECK(fmt_copy(buf, 1, "abc") == 0 && buf[0] == '\0');
	buf[0] = 'z';
	CHECK(fmt_copy(buf, 0, "abc") == 0 && buf[0] == 'z');

	/* fmt_dirname: up to the last '/', "/" in the root, "." for none; -1 when cut */
	CHECK(fmt_dirname(buf, sizeof(buf), "/a/b") == 0 && strcmp(buf, "/a") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "/a") == 0 && strcmp(buf, "/") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "a/") == 0 && strcmp(buf, "a") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "name") == 0 && strcmp(buf, ".") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "") == 0 && strcmp(buf, ".") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "/abcdef/x") == 0 && strcmp(buf, "/abcdef") == 0);
	CHECK(fmt_dirname(buf, sizeof(buf), "/abcdefg/x") == -1 && strcmp(buf, "/abcdef") == 0);
	CHECK(fmt_dirname(buf, 1, "name") == -1 && buf[0] == '\0');
	CHECK(fmt_dirname(buf, 2, "/a") == 0 && strcmp(buf, "/") == 0);

	/* fmt_trim: blanks (space, tab) only, both ends, in place */
	{
		char	t1[] = " \t a b \t ", t2[] = "ab", t3[] = " \t ", t4[] = "\na\r";

		CHECK(strcmp(fmt_trim(t1), "a b") == 0);
		CHECK(fmt_trim(t2) == t2 && strcmp(t2, "ab") == 0);
		CHECK(strcmp(fmt_trim(t3), "") == 0);
		CHECK(strcmp(fmt_trim(t4), "\na\r") == 0);	/* not line ends */
	}
	UNIT_END("test_fmt");
}
