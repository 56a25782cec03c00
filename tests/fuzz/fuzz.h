/*
 * fuzz.h — what the libFuzzer targets in tests/fuzz/ share.
 */
#ifndef FUZZ_H
#define FUZZ_H
#include <stdio.h>
#include <stdlib.h>

/* Abort unless cond: the fuzzer reports it as a crash, with what broke. */
static inline void
fz_assert(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "invariant broken: %s\n", what);
		abort();
	}
}

#endif
