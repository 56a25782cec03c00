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
