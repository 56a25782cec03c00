/*
 * test_audit_verify.c — the verifier's check of where a trail ends against
 * the state dir's tail copy (audit.tail): the copy's format, where the record
 * it names lies relative to a series, and whole runs of audit_verify_trail
 * over trails written here with a fake key: a cut at a closing record, a
 * rotated file on its own (continued by another file of the trail, beside
 * the live file or beside itself), the live file, and tail copies that are
 * missing, malformed, behind or of another trail.
 */
#include <sys/uio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_verify.h"
#include "signer.h"
#include "unit.h"

static struct signer	*key;
static char		 dir[64];

/* One record as audit.c writes it; chain moves on.  phase NULL: a request. */
static void
rec(FILE *f, unsigned long long seq, const char *phase, const char *prev, char *chain)
{
	char		line[512];
	struct iovec	iov[3];
	int		n;

	if (phase == NULL)
		n = snprintf(line, sizeof(line), "{\"seq\":%llu,\"time\":\"2026-11-27T21:00:00.000Z\","
		    "\"id\":\"t-%llu\",\"phase\":\"request\"", seq, seq);
	else if (strcmp(phase, "open") == 0)
		n = snprintf(line, sizeof(line), "{\"seq\":%llu,\"time\":\"2026-11-27T21:00:00.000Z\","
		    "\"phase\":\"open\",\"reason\":\"start\",\"pid\":1,\"prev_chain\":%s%s%s,"
		    "\"chained\":true", seq, *prev ? "\"" : "", *prev ? prev : "null",
		    *prev ? "\"" : "");
	else
		n = snprintf(line, sizeof(line), "{\"seq\":%llu,\"time\":\"2026-11-27T21:00:00.000Z\","
		    "\"phase\":\"%s\",\"reason\":\"shutdown\",\"pid\":1", seq, phase);
	iov[0] = (struct iovec){ chain, strlen(chain) };
	iov[1] = (struct iovec){ line, (size_t)n };
	iov[2] = (struct iovec){ (char *)"}", 1 };
	if (signer_sign(key, iov, 3, chain) != 0)
		abort();
	fprintf(f, "%s,\"chain\":\"%s\"}\n", line, chain);
}

/*
 * A file at dir/name: an open record continuing chain at seq *seq, nreq
 * requests, a close record.  *seq and chain move on; the chain value of
 * every seq written is kept in at[seq].
 */
static void
trail_file(const char *name, unsigned long long *seq, char *chain, int nreq,
    char at[][SIGNER_HEX_LEN + 1])
{
	char		 path[128], prev[SIGNER_HEX_LEN + 1];
	FILE		*f;
	int		 i;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	memcpy(prev, chain, sizeof(prev));
	rec(f, *seq, "open", prev, chain);
	memcpy(at[(*seq)++], chain, SIGNER_HEX_LEN + 1);
	for (i = 0; i < nreq; i++) {
		rec(f, *seq, NULL, NULL, chain);
		memcpy(at[(*seq)++], chain, SIGNER_HEX_LEN + 1);
	}
	rec(f, *seq, "close", NULL, chain);
	memcpy(at[(*seq)++], chain, SIGNER_HEX_LEN + 1);
	fclose(f);
}

static void
put(const char *name, const char *text)
{
	char	path[128];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

/* The first n lines of dir/from into dir/to. */
static void
head_lines(const char *from, const char *to, int n)
{
	char	 a[128], b[128], *line = NULL;
	size_t	 cap = 0;
	FILE	*in, *out;

	snprintf(a, sizeof(a), "%s/%s", dir, from);
	snprintf(b, sizeof(b), "%s/%s", dir, to);
	if ((in = fopen(a, "r")) == NULL || (out = fopen(b, "w")) == NULL)
		abort();
	while (n-- > 0 && getline(&line, &cap, in) != -1)
		fputs(line, out);
	free(line);
	fclose(in);
	fclose(out);
}

static void
tail_says(unsigned long long seq, const char *chain)
{
	char	text[128];

	snprintf(text, sizeof(text), "%llu %s\n", seq, *chain ? chain : "null");
	put("audit.tail", text);
}

static char	report[8192];

/* audit_verify_trail over dir/names (NULL-ended), live dir/live_name. */
static int
verify(const char *live_name, const char *tail_name, const char *const *names)
{
	char			 paths[4][128], live[128], tail[128], *files[4];
	struct audit_verify_trail t = { NULL, NULL };
	FILE			*out;
	int			 n, rc;

	for (n = 0; names[n] != NULL; n++) {
		snprintf(paths[n], sizeof(paths[n]), "%s/%s", dir, names[n]);
		files[n] = paths[n];
	}
	if (live_name != NULL) {
		snprintf(live, sizeof(live), "%s/%s", dir, live_name);
		t.live = live;
	}
	if (tail_name != NULL) {
		snprintf(tail, sizeof(tail), "%s/%s", dir, tail_name);
		t.tail = tail;
	}
	if ((out = fmemopen(report, sizeof(report), "w")) == NULL)
		abort();
	rc = audit_verify_trail(key, files, n, &t, out);
	fclose(out);
	return rc;
}

#define FILES(...)	((const char *const []){ __VA_ARGS__, NULL })

static void
test_parse(void)
{
	unsigned long long	seq = 0;
	char			chain[SIGNER_HEX_LEN + 1], hex[SIGNER_HEX_LEN + 1], buf[128];

	memset(hex, 'a', SIGNER_HEX_LEN);
	hex[SIGNER_HEX_LEN] = '\0';
	snprintf(buf, sizeof(buf), "42 %s\n", hex);
	CHECK(audit_tail_parse(buf, strlen(buf), &seq, chain) == 0 && seq == 42);
	CHECK_STREQ(chain, hex);
	CHECK(audit_tail_parse(buf, strlen(buf) - 1, &seq, chain) == 0);	/* no newline */
	CHECK(audit_tail_parse("0 null\n", 7, &seq, chain) == 0 && seq == 0 && chain[0] == '\0');
	CHECK(audit_tail_parse("", 0, &seq, chain) == -1);
	CHECK(audit_tail_parse("\n", 1, &seq, chain) == -1);
	CHECK(audit_tail_parse("42\n", 3, &seq, chain) == -1);
	CHECK(audit_tail_parse("42 \n", 4, &seq, chain) == -1);
	CHECK(audit_tail_parse(" 42 null\n", 9, &seq, chain) == -1);
	CHECK(audit_tail_parse("-1 null\n", 8, &seq, chain) == -1);
	CHECK(audit_tail_parse("42 nul\n", 7, &seq, chain) == -1);
	CHECK(audit_tail_parse("42 null\n\n", 9, &seq, chain) == -1);
	CHECK(audit_tail_parse("42  null\n", 9, &seq, chain) == -1);
	CHECK(audit_tail_parse("99999999999999999999 null\n", 26, &seq, chain) == -1);
	CHECK(audit_tail_parse("18446744073709551615 null", 25, &seq, chain) == 0 &&
	    seq == 18446744073709551615ULL);
	hex[5] = 'A';		/* upper case is not what audit.c writes */
	snprintf(buf, sizeof(buf), "42 %s\n", hex);
	CHECK(audit_tail_parse(buf, strlen(buf), &seq, chain) == -1);
	hex[5] = 'g';
	snprintf(buf, sizeof(buf), "42 %s\n", hex);
	CHECK(audit_tail_parse(buf, strlen(buf), &seq, chain) == -1);
	snprintf(buf, sizeof(buf), "42 %sa\n", hex);	/* 65 characters */
	CHECK(audit_tail_parse(buf, strlen(buf), &seq, chain) == -1);
	snprintf(buf, sizeof(buf), "42 %.63s\n", hex);	/* 63 */
	CHECK(audit_tail_parse(buf, strlen(buf), &seq, chain) == -1);
	/* not NUL-terminated: only len bytes are read */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "7 ", 2);
	CHECK(audit_tail_parse(buf, 2 + SIGNER_HEX_LEN, &seq, chain) == 0 && seq == 7);
}

static void
test_relation(void)
{
	/* the series holds 10..20 and continues "p" (seq 9) */
	CHECK(audit_tail_relation(20, "x", 10, 20, "x") == AUDIT_TAIL_END);
	CHECK(audit_tail_relation(15, "x", 10, 20, "x") == AUDIT_TAIL_EARLIER);
	CHECK(audit_tail_relation(9, "p", 10, 20, "p") == AUDIT_TAIL_EARLIER);
	CHECK(audit_tail_relation(8, "q", 10, 20, NULL) == AUDIT_TAIL_BEFORE);
	CHECK(audit_tail_relation(0, "", 10, 20, NULL) == AUDIT_TAIL_BEFORE);
	CHECK(audit_tail_relation(15, "x", 10, 20, "y") == AUDIT_TAIL_OTHER);
	CHECK(audit_tail_relation(20, "x", 10, 20, "y") == AUDIT_TAIL_OTHER);
	CHECK(audit_tail_relation(15, "x", 10, 20, NULL) == AUDIT_TAIL_OTHER);
	CHECK(audit_tail_relation(21, "x", 10, 20, NULL) == AUDIT_TAIL_AFTER);
	/* a brand-new trail: seq 1 continues null (""), named "0 null" */
	CHECK(audit_tail_relation(0, "", 1, 4, "") == AUDIT_TAIL_EARLIER);
}

/* dir/a renamed dir/b */
static void
mv(const char *a, const char *b)
{
	char	pa[128], pb[128];

	snprintf(pa, sizeof(pa), "%s/%s", dir, a);
	snprintf(pb, sizeof(pb), "%s/%s", dir, b);
	CHECK(rename(pa, pb) == 0);
}

/* dir/a and dir/b, one after the other, into dir/to */
static void
cat(const char *a, const char *b, const char *to)
{
	char	 path[128], buf[4096];
	size_t	 n;
	FILE	*in, *out;
	const char *const from[] = { a, b };
	int	 i;

	snprintf(path, sizeof(path), "%s/%s", dir, to);
	if ((out = fopen(path, "w")) == NULL)
		abort();
	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, from[i]);
		if ((in = fopen(path, "r")) == NULL)
			abort();
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, n, out);
		fclose(in);
		unlink(path);
	}
	fclose(out);
}

/* A rotated series: audit.jsonl.1 (seq 1-4), audit.jsonl (5-9) continuing it. */
static void
test_series(void)
{
	static char		 at[64][SIGNER_HEX_LEN + 1];
	unsigned long long	 seq = 1;
	char			 chain[SIGNER_HEX_LEN + 1] = "", zero[SIGNER_HEX_LEN + 1];
	char			 want[512], path[128], buf[4096], *p;
	FILE			*f;
	size_t			 n;

	memset(zero, '0', SIGNER_HEX_LEN);
	zero[SIGNER_HEX_LEN] = '\0';
	trail_file("audit.jsonl.1", &seq, chain, 2, at);
	trail_file("audit.jsonl", &seq, chain, 3, at);
	CHECK(seq == 10);

	/* no trail config: as before (no note) */
	CHECK(verify(NULL, NULL, FILES("audit.jsonl.1")) == 0);
	CHECK(strncmp(report, "OK: 4 records", 13) == 0 && strstr(report, "tail") == NULL);

	/* the tail copy names the last record */
	tail_says(9, at[9]);
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl.1", "audit.jsonl")) == 0);
	CHECK(strstr(report, "note: the end is the record the tail copy") != NULL);
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "(seq 9)") != NULL);

	/* a rotated file on its own: audit.jsonl continues it */
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 0);
	snprintf(want, sizeof(want), "goes on in %s/audit.jsonl,", dir);
	CHECK(strstr(report, want) != NULL);
	/* ... and the live file may not be excused that way */
	CHECK(verify("audit.jsonl.1", "audit.tail", FILES("audit.jsonl.1")) == 1);
	CHECK(strstr(report, "records 5 to 9 are missing (it is the live file") != NULL);
	/* the live file while the proxy writes it: as before */
	head_lines("audit.jsonl", "running", 2);
	CHECK(verify("running", "audit.tail", FILES("audit.jsonl.1", "running")) == 1);
	CHECK(strstr(report, "no closing record") != NULL && strstr(report, "audit.tail") == NULL);

	/* the next file moved away: nothing continues audit.jsonl.1 */
	mv("audit.jsonl", "moved-away");
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 1);
	CHECK(strstr(report, "tail truncated") != NULL &&
	    strstr(report, "no other file of the trail, audit.jsonl* beside it") != NULL);
	/* a file of the trail beside the verified one, not beside the live one */
	mv("moved-away", "audit.jsonl-20261127");
	CHECK(verify("elsewhere/audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 0);
	CHECK(strstr(report, "audit.jsonl-20261127") != NULL);
	/* a file not named like the trail is not looked at */
	mv("audit.jsonl-20261127", "other.jsonl");
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 1);
	mv("other.jsonl", "audit.jsonl");

	/* a continuation with a forged chain value is not one */
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	if ((f = fopen(path, "r")) == NULL)
		abort();
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*strchr(buf, '\n') = '\0';		/* its opening record */
	p = strstr(buf, ",\"chain\":\"") + 10;
	*p = *p == '0' ? '1' : '0';
	strcat(buf, "\n");
	put("audit.jsonl.2", buf);
	CHECK(verify("elsewhere/audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 0);
	mv("audit.jsonl", "moved-away");
	CHECK(verify("elsewhere/audit.jsonl", "audit.tail", FILES("audit.jsonl.1")) == 1);
	mv("moved-away", "audit.jsonl");
	snprintf(path, sizeof(path), "%s/audit.jsonl.2", dir);
	unlink(path);

	/* tail copies that say nothing about this end: notes, exit 0 */
	CHECK(verify("audit.jsonl", "no-such-tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "note: no tail copy ") != NULL &&
	    strstr(report, "checked by its closing record only") != NULL);
	put("audit.tail", "garbage\n");
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "malformed") != NULL);
	tail_says(7, zero);
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "another chain value") != NULL);
	tail_says(7, at[7]);
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "an earlier record") != NULL);
	tail_says(4, at[4]);		/* the record the live file continues */
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "an earlier record") != NULL);
	tail_says(2, at[2]);
	CHECK(verify("audit.jsonl", "audit.tail", FILES("audit.jsonl")) == 0);
	CHECK(strstr(report, "before these files") != NULL);
	unlink(path);
	snprintf(path, sizeof(path), "%s/audit.jsonl.1", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	unlink(path);
}

/* One file of two start/stop sessions (one.jsonl), cut after the first. */
static void
test_cut(void)
{
	static char		 at[64][SIGNER_HEX_LEN + 1];
	unsigned long long	 seq = 1;
	char			 chain[SIGNER_HEX_LEN + 1] = "";

	trail_file("s1", &seq, chain, 2, at);		/* seq 1-4 */
	trail_file("s2", &seq, chain, 3, at);		/* 5-9 */
	cat("s1", "s2", "one.jsonl");
	tail_says(9, at[9]);
	CHECK(verify("one.jsonl", "audit.tail", FILES("one.jsonl")) == 0);
	CHECK(strstr(report, "note: the end is the record") != NULL);
	/* head -4 one.jsonl > cut: closed cleanly, but the tail copy names seq 9 */
	head_lines("one.jsonl", "cut", 4);
	CHECK(verify("one.jsonl", "audit.tail", FILES("cut")) == 1);
	CHECK(strstr(report, "/cut: tail truncated: the state dir's tail copy ") != NULL &&
	    strstr(report, "names seq 9 (chain ") != NULL &&
	    strstr(report, "the file ends at seq 4: records 5 to 9 are missing") != NULL &&
	    strstr(report, "no other file of the trail, one.jsonl*") != NULL);
	CHECK(strstr(report, "OK") == NULL);
	/* the cut copy named like the trail, beside it: the same */
	head_lines("one.jsonl", "one.jsonl.cut", 4);
	CHECK(verify("one.jsonl", "audit.tail", FILES("one.jsonl.cut")) == 1);
	/* the live file cut in place */
	head_lines("one.jsonl.cut", "one.jsonl", 4);
	CHECK(verify("one.jsonl", "audit.tail", FILES("one.jsonl")) == 1);
	CHECK(strstr(report, "it is the live file") != NULL);
	/* one record missing */
	tail_says(5, at[5]);
	CHECK(verify("one.jsonl", "audit.tail", FILES("one.jsonl")) == 1);
	CHECK(strstr(report, "ends at seq 4: record 5 is missing") != NULL);
	/* without the tail copy the cut cannot be seen: a note says so */
	CHECK(verify("one.jsonl", "no-such-tail", FILES("cut")) == 0);
	CHECK(strstr(report, "note: no tail copy") != NULL);
}

int
main(void)
{
	static const char	k[] = "fake-audit-chain-key-for-unit-tests";
	const char		*base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char			 cmd[128];

	key = signer_new((const unsigned char *)k, sizeof(k) - 1);
	snprintf(dir, sizeof(dir), "%s/test-audit-verify-XXXXXX", base);
	if (key == NULL || mkdtemp(dir) == NULL)
		return 1;
	test_parse();
	test_relation();
	test_series();
	test_cut();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	signer_free(key);
	UNIT_END("test_audit_verify");
}
