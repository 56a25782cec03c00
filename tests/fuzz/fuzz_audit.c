/* fuzz-sources: proxy/audit_verify.c proxy/signer.c proxy/fmt.c */
/* fuzz-libs: -lcrypto */
/*
 * libFuzzer target for the audit verifier (`ocp-proxy audit-verify`), which
 * reads files an attacker may have edited.  The first input byte picks a mode:
 *
 * even: the rest is split at 0xff into up to three files, verified as a
 *   rotated series, and what follows a third 0xff is the state dir's tail
 *   copy (audit.tail; none without it).  Beyond the sanitizers: the answer is
 *   0 or 1, and the report's first line is "OK: ..." exactly when the answer
 *   is 0, otherwise it names one of the files; with the tail copy compared
 *   (the last file taken as the live one, or not) the answer is never OK
 *   where it was not without it.
 * odd: the rest, split at '\n', gives the payloads of up to 24 records.  The
 *   target writes a trail the way docs/audit.md describes it (an open record
 *   with prev_chain, chained records, a close record; chain = HMAC-SHA256(key,
 *   previous chain || line without its chain member, closed with "}")), split
 *   into one or two files, and checks that the verifier accepts it.  Then it
 *   tampers with it as the input's last bytes say (one byte changed, one line
 *   removed, the tail cut at a line end, two lines swapped, a line repeated)
 *   and checks that the verifier refuses the result.  With a tail copy naming
 *   the trail's last record it is accepted, with one naming a record after
 *   it the last file is reported cut.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy tests/fuzz/fuzz_audit.c \
 *     proxy/audit_verify.c proxy/signer.c -lcrypto -o /tmp/fuzz_audit
 */
#include <sys/uio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_verify.h"
#include "signer.h"
#include "fuzz.h"

#define FZ_FILES	3
#define FZ_RECORDS	24

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char		 fz_dir[64], fz_path[FZ_FILES][128], fz_tail[128], fz_live[128];
static struct signer	*fz_key;

/* Remove the files and their directory when the fuzzer exits. */
static void
fz_cleanup(void)
{
	int	i;

	for (i = 0; i < FZ_FILES; i++)
		unlink(fz_path[i]);
	unlink(fz_tail);
	rmdir(fz_dir);
	signer_free(fz_key);
}

static void
fz_setup(void)
{
	static const char	key[] = "fake-audit-chain-key-for-fuzzing";
	const char		*base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	int			 i;

	if (fz_key != NULL)
		return;
	snprintf(fz_dir, sizeof(fz_dir), "%s/fuzz-audit-XXXXXX", base);
	fz_assert(mkdtemp(fz_dir) != NULL, "mkdtemp");
	for (i = 0; i < FZ_FILES; i++)
		snprintf(fz_path[i], sizeof(fz_path[i]), "%s/audit.jsonl.%d", fz_dir, i);
	snprintf(fz_tail, sizeof(fz_tail), "%s/audit.tail", fz_dir);
	snprintf(fz_live, sizeof(fz_live), "%s/audit.jsonl", fz_dir);	/* never made */
	fz_key = signer_new((const unsigned char *)key, sizeof(key) - 1);
	fz_assert(fz_key != NULL, "signer_new");
	atexit(fz_cleanup);
}

static void
fz_write(int i, const void *p, size_t n)
{
	FILE	*f = fopen(fz_path[i], "w");

	fz_assert(f != NULL, "create a file");
	fz_assert(fwrite(p, 1, n, f) == n || n == 0, "write a file");
	fclose(f);
}

/* The tail copy: len bytes of p, or none (p NULL). */
static void
fz_tail_write(const void *p, size_t len)
{
	FILE	*f;

	if (p == NULL) {
		unlink(fz_tail);
		return;
	}
	fz_assert((f = fopen(fz_tail, "w")) != NULL, "create the tail copy");
	fz_assert(fwrite(p, 1, len, f) == len || len == 0, "write the tail copy");
	fclose(f);
}

/*
 * Verify files 0..n (with the tail copy and live as [audit] path when live
 * is not NULL); returns the answer and checks the report's shape.
 */
static int
fz_verify_with(int n, const char *live)
{
	struct audit_verify_trail trail = { live, fz_tail };
	char	*out = NULL, *files[FZ_FILES];
	size_t	 outlen = 0;
	FILE	*f;
	int	 rc, i, named = 0;

	for (i = 0; i < n; i++)
		files[i] = fz_path[i];
	fz_assert((f = open_memstream(&out, &outlen)) != NULL, "open_memstream");
	if (live != NULL)
		rc = audit_verify_trail(fz_key, files, n, &trail, f);
	else
		rc = audit_verify_files(fz_key, files, n, f);
	fclose(f);
	fz_assert(rc == 0 || rc == 1, "the answer is 0 or 1");
	fz_assert(outlen > 0 && out[outlen - 1] == '\n', "a report is printed");
	for (i = 0; i < n; i++)
		if (strncmp(out, fz_path[i], strlen(fz_path[i])) == 0)
			named = 1;
	if (rc == 0)
		fz_assert(strncmp(out, "OK: ", 4) == 0, "a good answer says OK");
	else
		fz_assert(named, "a bad answer names the file");
	free(out);
	return rc;
}

static int
fz_verify(int n)
{
	return fz_verify_with(n, NULL);
}

/* A growing text: the trail being built or tampered with. */
struct fz_text {
	char	*p;
	size_t	 n, cap;
};

static void
fz_add(struct fz_text *t, const void *p, size_t n)
{
	if (t->n + n + 1 > t->cap) {
		t->cap = (t->n + n + 1) * 2;
		fz_assert((t->p = realloc(t->p, t->cap)) != NULL, "realloc");
	}
	memcpy(t->p + t->n, p, n);
	t->n += n;
	t->p[t->n] = '\0';
}

/* Append one record: head + body, its chain value, a newline; chain moves on. */
static void
fz_record(struct fz_text *t, unsigned long long seq, const char *phase,
    const char *extra, const void *body, size_t blen, char *chain)
{
	struct fz_text	line = { 0 };
	struct iovec	iov[3];
	char		head[200];

	if (strcmp(phase, "request") == 0)	/* as request.c writes them: an id first */
		snprintf(head, sizeof(head), "{\"seq\":%llu,\"time\":\"2026-11-27T21:00:00.%03lluZ\","
		    "\"id\":\"fz-%llu\",\"phase\":\"%s\"%s", seq, seq % 1000, seq, phase, extra);
	else			/* as audit.c writes its own records */
		snprintf(head, sizeof(head), "{\"seq\":%llu,\"time\":\"2026-11-27T21:00:00.%03lluZ\","
		    "\"phase\":\"%s\"%s", seq, seq % 1000, phase, extra);
	fz_add(&line, head, strlen(head));
	if (blen > 0) {
		fz_add(&line, ",\"x\":\"", 6);
		fz_add(&line, body, blen);
		fz_add(&line, "\"", 1);
	}
	iov[0] = (struct iovec){ chain, strlen(chain) };
	iov[1] = (struct iovec){ line.p, line.n };
	iov[2] = (struct iovec){ (char *)"}", 1 };
	fz_assert(signer_sign(fz_key, iov, 3, chain) == 0, "signer_sign");
	fz_add(t, line.p, line.n);
	fz_add(t, ",\"chain\":\"", 10);
	fz_add(t, chain, SIGNER_HEX_LEN);
	fz_add(t, "\"}\n", 3);
	free(line.p);
}

/* Offsets of the line starts of t (and t->n at the end); returns the count. */
static size_t
fz_lines(const struct fz_text *t, size_t *at, size_t max)
{
	size_t	i, k = 0;

	at[k++] = 0;
	for (i = 0; i < t->n && k < max; i++)
		if (t->p[i] == '\n')
			at[k++] = i + 1;
	return k - 1;
}

static void
fz_chained(const uint8_t *data, size_t size)
{
	struct fz_text	 a = { 0 }, b = { 0 }, m = { 0 };
	const uint8_t	*p = data, *end, *nl, *tail;
	char		 chain[SIGNER_HEX_LEN + 1] = "", open[128], body[256];
	size_t		 blen, at[FZ_RECORDS + 8], nlines, i, k, split;
	unsigned long long seq;
	uint32_t	 t0 = 0, t1 = 0;
	int		 nrec = 0, rotate;

	if (size < 9)
		return;
	/* the last 9 bytes steer the trail and the tampering */
	tail = data + size - 9;
	end = tail;
	memcpy(&t0, tail + 1, 4);
	memcpy(&t1, tail + 5, 4);
	rotate = tail[0] & 1;
	seq = tail[0] >> 1;
	snprintf(open, sizeof(open), ",\"reason\":\"start\",\"prev_chain\":null");
	fz_record(&a, seq++, "open", open, NULL, 0, chain);
	while (p < end && nrec < FZ_RECORDS) {
		nl = memchr(p, '\n', (size_t)(end - p));
		blen = (size_t)((nl ? nl : end) - p);
		if (blen > sizeof(body))
			blen = sizeof(body);
		memcpy(body, p, blen);
		fz_record(&a, seq++, "request", "", body, blen, chain);
		nrec++;
		p = nl ? nl + 1 : end;
	}
	/* rotation: file 1 opens by naming file 0's last chain value */
	if (rotate && nrec > 0) {
		snprintf(open, sizeof(open), ",\"reason\":\"rotate\",\"prev_chain\":\"%s\"",
		    chain);
		fz_record(&b, seq++, "open", open, NULL, 0, chain);
	}
	fz_record(rotate && nrec > 0 ? &b : &a, seq++, "close", "", NULL, 0, chain);
	rotate = rotate && nrec > 0;
	fz_write(0, a.p, a.n);
	if (rotate)
		fz_write(1, b.p, b.n);
	fz_assert(fz_verify(rotate ? 2 : 1) == 0, "an intact trail verifies");
	{	/* against the tail copy: its last record, then one after it */
		char	t[128];
		int	n = snprintf(t, sizeof(t), "%llu %s\n", seq - 1, chain);

		fz_tail_write(t, (size_t)n);
		fz_assert(fz_verify_with(rotate ? 2 : 1, fz_path[rotate ? 1 : 0]) == 0,
		    "an intact trail ending where the tail copy says verifies");
		n = snprintf(t, sizeof(t), "%llu %s\n", seq, chain);
		fz_tail_write(t, (size_t)n);
		fz_assert(fz_verify_with(rotate ? 2 : 1, fz_path[rotate ? 1 : 0]) == 1,
		    "a live file ending before the tail copy's record is refused");
		fz_tail_write(NULL, 0);
	}

	/* tamper with one file of the trail (all lines of both, seen as one text) */
	fz_add(&m, a.p, a.n);
	split = a.n;
	if (rotate)
		fz_add(&m, b.p, b.n);
	nlines = fz_lines(&m, at, sizeof(at) / sizeof(at[0]));
	switch (t0 % 5) {
	case 0:		/* one byte changed */
		k = t1 % m.n;
		m.p[k] ^= (char)(((t1 >> 24) & 0xff) | 1);
		break;
	case 1:		/* one line removed */
		if (nlines < 2)
			goto out;
		i = t1 % nlines;
		memmove(m.p + at[i], m.p + at[i + 1], m.n - at[i + 1]);
		m.n -= at[i + 1] - at[i];
		if (split > at[i])
			split -= at[i + 1] - at[i];
		break;
	case 2:		/* the tail cut at a line end (at least one line kept) */
		i = 1 + t1 % nlines;
		if (i == nlines)
			goto out;
		m.n = at[i];
		if (split > m.n)
			split = m.n;
		break;
	case 3:		/* two neighbouring lines swapped */
		if (nlines < 2)
			goto out;
		i = t1 % (nlines - 1);
		{
			size_t	l1 = at[i + 1] - at[i], l2 = at[i + 2] - at[i + 1];
			char	*tmp = malloc(l1);

			fz_assert(tmp != NULL, "malloc");
			memcpy(tmp, m.p + at[i], l1);
			memmove(m.p + at[i], m.p + at[i + 1], l2);
			memcpy(m.p + at[i] + l2, tmp, l1);
			free(tmp);
			if (split == at[i + 1])	/* the swap crossed the files' border */
				split = at[i] + l2;
		}
		break;
	case 4:		/* a line repeated */
		i = t1 % nlines;
		{
			size_t	l = at[i + 1] - at[i];
			char	*tmp = malloc(l);

			fz_assert(tmp != NULL, "malloc");
			memcpy(tmp, m.p + at[i], l);
			fz_add(&m, tmp, l);	/* room, then shift */
			memmove(m.p + at[i + 1] + l, m.p + at[i + 1], m.n - l - at[i + 1]);
			memcpy(m.p + at[i + 1], tmp, l);
			free(tmp);
			if (split >= at[i + 1])
				split += l;
		}
		break;
	}
	if (rotate && split > 0 && split < m.n) {
		fz_write(0, m.p, split);
		fz_write(1, m.p + split, m.n - split);
		fz_assert(fz_verify(2) == 1, "a tampered trail is refused");
	} else {
		fz_write(0, m.p, m.n);
		fz_assert(fz_verify(1) == 1, "a tampered trail is refused");
	}
out:
	free(a.p);
	free(b.p);
	free(m.p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*p, *end, *sep;
	int		 n = 0, rc;

	fz_setup();
	if (size == 0)
		return 0;
	if (data[0] & 1) {
		fz_chained(data + 1, size - 1);
		return 0;
	}
	p = data + 1;
	end = data + size;
	sep = NULL;
	while (n < FZ_FILES) {
		sep = memchr(p, 0xff, (size_t)(end - p));
		fz_write(n++, p, (size_t)((sep ? sep : end) - p));
		if (sep == NULL)
			break;
		p = sep + 1;
	}
	/* after the third file's 0xff: the tail copy */
	fz_tail_write(n == FZ_FILES && sep != NULL ? sep + 1 : NULL,
	    n == FZ_FILES && sep != NULL ? (size_t)(end - sep - 1) : 0);
	rc = fz_verify(n);
	fz_assert(fz_verify_with(n, fz_live) >= rc, "the tail copy never excuses a fault");
	fz_assert(fz_verify_with(n, fz_path[n - 1]) >= rc, "nor for the live file");
	return 0;
}
