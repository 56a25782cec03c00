/* fuzz-sources: proxy/nonce.c */
/*
 * libFuzzer target for the nonce state file (nonce.c's reader) and the
 * promise built on it: a nonce handed out is strictly greater than every
 * nonce handed out or observed before, also across restarts.
 *
 * Input: the state file's bytes up to the first 0xff (no 0xff: no file at
 * all), then operations of 9 bytes each: an op byte and a little-endian
 * 64-bit value.  op % 4: 0 next(now = value), 1 observe(value),
 * 2 restart (close and reopen from the file), 3 next(now = value % 2^40).
 * Checked beyond the sanitizers:
 *   - a file is accepted exactly when it holds a decimal number no larger
 *     than 2^62, optionally followed by one newline (what nonce.c writes);
 *   - every value handed out exceeds everything handed out or observed before
 *     and the value the file held;
 *   - after each successful operation the file on disk covers what was used:
 *     a reopen resumes at or above it (what a crash at that point would see).
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy \
 *     tests/fuzz/fuzz_nonce.c proxy/nonce.c -o /tmp/fuzz_nonce
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nonce.h"
#include "fuzz.h"

#define FZ_NONCE_MAX	(1ULL << 62)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	fz_dir[64], fz_path[128];

/* Remove the state directory when the fuzzer exits. */
static void
fz_cleanup(void)
{
	char	tmp[160];

	snprintf(tmp, sizeof(tmp), "%s.tmp", fz_path);
	unlink(tmp);
	unlink(fz_path);
	rmdir(fz_dir);
}

/* A private directory for the state file, made once per process. */
static void
fz_setup(void)
{
	const char	*base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	if (fz_dir[0] != '\0')
		return;
	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz-nonce-XXXXXX", base);
	fz_assert(mkdtemp(fz_dir) != NULL, "mkdtemp");
	snprintf(fz_path, sizeof(fz_path), "%s/nonce.p", fz_dir);
	atexit(fz_cleanup);
}

/* What a state file of these bytes should be read as: 0 ok (*v set), -1 refused. */
static int
fz_expect(const uint8_t *d, size_t n, unsigned long long *v)
{
	size_t	i;

	*v = 0;
	if (n == 0 || d[0] < '0' || d[0] > '9')
		return -1;
	for (i = 0; i < n && d[i] >= '0' && d[i] <= '9'; i++) {
		if (*v > (FZ_NONCE_MAX - (d[i] - '0')) / 10)
			return -1;
		*v = *v * 10 + (d[i] - '0');
	}
	if (i < n && (d[i] != '\n' || i + 1 != n))
		return -1;
	return n < 64 ? 0 : -1;
}

/* The value a fresh reader finds in the file now (the file must be readable). */
static unsigned long long
fz_on_disk(void)
{
	struct nonce	*m;
	char		*cause = NULL;
	unsigned long long v;

	m = nonce_open(fz_dir, "p", &cause);
	fz_assert(m != NULL, "a file nonce.c wrote is readable again");
	v = nonce_last(m);
	nonce_close(m);
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t		*sep, *p, *end = data + size;
	struct nonce		*n;
	char			*cause = NULL;
	unsigned long long	 floor, want, v, arg;
	int			 i, ok, have_file;
	FILE			*f;

	fz_setup();
	unlink(fz_path);
	sep = memchr(data, 0xff, size);
	have_file = sep != NULL;
	if (have_file) {
		fz_assert((f = fopen(fz_path, "w")) != NULL, "write state file");
		fwrite(data, 1, (size_t)(sep - data), f);
		fclose(f);
		p = sep + 1;
	} else
		p = data;

	n = nonce_open(fz_dir, "p", &cause);
	if (!have_file)
		ok = 0, want = 0;
	else
		ok = fz_expect(data, (size_t)(sep - data), &want);
	if (n == NULL) {
		fz_assert(cause != NULL, "a refused file says why");
		fz_assert(ok == -1, "a valid state file is accepted");
		free(cause);
		return 0;
	}
	fz_assert(cause == NULL, "no cause on success");
	fz_assert(ok == 0, "an invalid state file is refused");
	fz_assert(nonce_last(n) == want, "the file's value is the floor");
	floor = want;

	for (i = 0; i < 64 && end - p >= 9; i++, p += 9) {
		memcpy(&arg, p + 1, 8);
		switch (p[0] % 4) {
		case 0:
		case 3:
			if (p[0] % 4 == 3)
				arg %= 1ULL << 40;
			if (nonce_next(n, arg, &v, &cause) == -1) {
				fz_assert(cause != NULL, "a failed next says why");
				free(cause);
				cause = NULL;
				fz_assert(nonce_last(n) == floor, "a failed next changes nothing");
				break;
			}
			fz_assert(v > floor, "strictly greater than everything before");
			fz_assert(v >= arg || arg > FZ_NONCE_MAX, "follows a clock ahead of it");
			fz_assert(v <= FZ_NONCE_MAX, "stays in the nonce space");
			floor = v;
			fz_assert(fz_on_disk() >= v, "the file covers the value handed out");
			break;
		case 1:
			if (nonce_observe(n, arg, &cause) == -1) {
				fz_assert(cause != NULL, "a failed observe says why");
				free(cause);
				cause = NULL;
				fz_assert(arg > floor, "only a new high value can fail");
				break;
			}
			if (arg > floor)
				floor = arg;
			fz_assert(nonce_last(n) == floor, "observe moves the floor");
			fz_assert(fz_on_disk() >= floor, "the file covers the value observed");
			break;
		case 2:
			nonce_close(n);
			n = nonce_open(fz_dir, "p", &cause);
			fz_assert(n != NULL, "restart reads the file back");
			fz_assert(nonce_last(n) >= floor, "restart resumes above everything used");
			floor = nonce_last(n);
			break;
		}
	}
	nonce_close(n);
	return 0;
}
