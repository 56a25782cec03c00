/*
 * Minimal unit-test harness shared by tests/unit/test_*.c.
 * Each binary counts checks and ends with one line "NAME: N passed, N failed";
 * tests/run-all.sh sums those lines.  A failed check prints file:line and the
 * expression (never a secret: tests only use obviously fake keys).
 */
#ifndef UNIT_H
#define UNIT_H
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(cond) do {						\
	if (cond)							\
		unit_passed++;						\
	else {								\
		unit_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	}								\
} while (0)

#define CHECK_STREQ(a, b) do {						\
	const char *ua_ = (a), *ub_ = (b);				\
	if (ua_ != NULL && ub_ != NULL && strcmp(ua_, ub_) == 0)	\
		unit_passed++;						\
	else {								\
		unit_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", \
		    __FILE__, __LINE__, #a, #b, ua_ ? ua_ : "(null)",	\
		    ub_ ? ub_ : "(null)");				\
	}								\
} while (0)

#define UNIT_END(name) do {						\
	printf("%s: %d passed, %d failed\n", (name), unit_passed, unit_failed); \
	return unit_failed ? 1 : 0;					\
} while (0)

#endif
