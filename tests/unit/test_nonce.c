/*
 * test_nonce.c — nonces never repeat or go backwards, across restarts and clock steps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "nonce.h"
#include "unit.h"

int
main(void)
{
	char			 dir[] = "/tmp/ocp-nonce-XXXXXX", path[256], *cause = NULL;
	struct nonce		*n;
	unsigned long long	 v, prev, first;
	int			 i, mono = 1;
	FILE			*f;

	CHECK(mkdtemp(dir) != NULL);
	n = nonce_open(dir, "merchant", &cause);
	CHECK(n != NULL && cause == NULL);
	CHECK(nonce_next(n, 1000, &v, &cause) == 0 && v == 1000);
	first = v;
	/* same millisecond: strictly increasing */
	CHECK(nonce_next(n, 1000, &v, &cause) == 0 && v == 1001);
	/* clock steps back: still increasing */
	CHECK(nonce_next(n, 10, &v, &cause) == 0 && v == 1002);
	/* clock jumps forward: follows the clock */
	CHECK(nonce_next(n, 5000, &v, &cause) == 0 && v == 5000);
	prev = v;
	for (i = 0; i < 300000; i++) {	/* crosses several reservations */
		if (nonce_next(n, 5000, &v, &cause) != 0 || v <= prev)
			mono = 0;
		prev = v;
	}
	CHECK(mono);
	/* a caller-chosen nonce above ours moves the floor */
	CHECK(nonce_observe(n, prev + 50, &cause) == 0);
	CHECK(nonce_next(n, 0, &v, &cause) == 0 && v == prev + 51);
	prev = v;
	nonce_close(n);

	/* restart in the same millisecond, clock behind: resumes above everything used */
	n = nonce_open(dir, "merchant", &cause);
	CHECK(n != NULL);
	CHECK(nonce_next(n, first, &v, &cause) == 0 && v > prev);
	nonce_close(n);

	/* another profile has its own sequence */
	n = nonce_open(dir, "partner", &cause);
	CHECK(n != NULL && nonce_next(n, 7, &v, &cause) == 0 && v == 7);
	nonce_close(n);

	/* a corrupt state file is refused, not silently reset */
	snprintf(path, sizeof(path), "%s/nonce.bad", dir);
	f = fopen(path, "w");
	fputs("garbage\n", f);
	fclose(f);
	n = nonce_open(dir, "bad", &cause);
	CHECK(n == NULL && cause != NULL);
	free(cause);
	cause = NULL;

	/*
	 * Only what nonce.c writes is read back: a sign, blanks, a second line, a
	 * NUL or a value past the nonce space (2^62) is corruption.  "-1" used to
	 * read as 2^64-1, and the next nonce wrapped round to the clock.
	 */
	{
		static const struct { const char *text; size_t len; int ok; } st[] = {
			{ "-1\n", 3, 0 }, { "+5\n", 3, 0 }, { " 5\n", 3, 0 },
			{ "5 \n", 3, 0 }, { "5\n6\n", 4, 0 }, { "5\0x\n", 4, 0 },
			{ "18446744073709551615\n", 21, 0 },
			{ "4611686018427387905\n", 20, 0 }, { "", 0, 0 },
			{ "4611686018427387904\n", 20, 1 }, { "42", 2, 1 },
			{ "0042\n", 5, 1 },
		};
		size_t	k;
		int	all = 1;

		snprintf(path, sizeof(path), "%s/nonce.st", dir);
		for (k = 0; k < sizeof(st) / sizeof(st[0]); k++) {
			f = fopen(path, "w");
			fwrite(st[k].text, 1, st[k].len, f);
			fclose(f);
			n = nonce_open(dir, "st", &cause);
			if ((n != NULL) != st[k].ok) {
				fprintf(stderr, "state file %zu: %s\n", k,
				    n != NULL ? "accepted" : "refused");
				all = 0;
			}
			free(cause);
			cause = NULL;
			nonce_close(n);
		}
		CHECK(all);
		/* at the end of the nonce space: nothing more is handed out */
		n = nonce_open(dir, "st", &cause);	/* the last file, 42 */
		CHECK(n != NULL && nonce_last(n) == 42);
		nonce_close(n);
		f = fopen(path, "w");
		fputs("4611686018427387904\n", f);
		fclose(f);
		n = nonce_open(dir, "st", &cause);
		CHECK(n != NULL && nonce_next(n, 5, &v, &cause) == -1 && cause != NULL);
		free(cause);
		cause = NULL;
		nonce_close(n);
	}

	/*
	 * A move to another state dir: the new file covers the old reservation
	 * (also when it held a smaller stale bound), a higher stale bound there
	 * raises the counter, and after the move a restart reading only the new
	 * dir continues above every value handed out before.
	 */
	{
		char			 dir2[] = "/tmp/ocp-nonce-XXXXXX";
		struct nonce		*to;
		unsigned long long	 hi;

		CHECK(mkdtemp(dir2) != NULL);
		n = nonce_open(dir, "mv", &cause);
		CHECK(n != NULL && nonce_next(n, 9000, &v, &cause) == 0 && v == 9000);
		CHECK(nonce_observe(n, 20000, &cause) == 0);
		snprintf(path, sizeof(path), "%s/nonce.mv", dir2);
		f = fopen(path, "w");
		fputs("50\n", f);
		fclose(f);
		to = nonce_open(dir2, "mv", &cause);
		CHECK(to != NULL && nonce_cover(to, n, &cause) == 0);
		nonce_take(n, to);
		CHECK(nonce_next(n, 0, &v, &cause) == 0 && v == 20001);
		hi = v;
		nonce_close(n);
		n = nonce_open(dir2, "mv", &cause);	/* the restart */
		CHECK(n != NULL && nonce_next(n, 0, &v, &cause) == 0 && v > hi);
		nonce_close(n);

		f = fopen(path, "w");			/* a higher stale bound */
		fputs("7000000\n", f);
		fclose(f);
		n = nonce_open(dir, "mv", &cause);
		to = nonce_open(dir2, "mv", &cause);
		CHECK(n != NULL && to != NULL && nonce_cover(to, n, &cause) == 0);
		nonce_take(n, to);
		CHECK(nonce_next(n, 0, &v, &cause) == 0 && v == 7000001);
		nonce_close(n);
		snprintf(path, sizeof(path), "rm -rf %s", dir2);
		CHECK(system(path) == 0);
	}

	/* an unwritable state dir: no nonce is handed out */
	n = nonce_open("/nonexistent-ocp-dir", "x", &cause);
	CHECK(n != NULL);
	CHECK(nonce_next(n, 1, &v, &cause) == -1 && cause != NULL);
	free(cause);
	nonce_close(n);

	snprintf(path, sizeof(path), "rm -rf %s", dir);
	CHECK(system(path) == 0);
	UNIT_END("test_nonce");
}
