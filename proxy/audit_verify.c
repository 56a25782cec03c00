/*
 * audit_verify.c — offline verification of the audit chain.
 */
#include <sys/uio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "audit_verify.h"
#include "signer.h"

struct av_state {
	const struct signer	*key;
	char			 prev[SIGNER_HEX_LEN + 1];	/* "" = none yet */
	unsigned long long	 seq;				/* next expected */
	int			 have_seq;
	int			 closed;	/* last line seen was a close record */
	unsigned long long	 lines;
	char			 start[SIGNER_HEX_LEN + 1];	/* first file's prev_chain */
};

/* The chain value a line should carry, given the previous one. */
static int
av_expected(const struct av_state *st, const char *prev, const char *line, size_t len,
    char *mac)
{
	struct iovec	iov[3];

	iov[0] = (struct iovec){ (void *)(uintptr_t)prev, strlen(prev) };
	iov[1] = (struct iovec){ (void *)(uintptr_t)line, len - AUDIT_CHAIN_SUFFIX_LEN };
	iov[2] = (struct iovec){ (char *)"}", 1 };
	return signer_sign(st->key, iov, 3, mac);
}

/*
 * The phase of a record the writer made itself ("open", "close"): those start
 * {"seq":N,"time":"...","phase":"...".  Request records carry an "id" before
 * their phase, so a body that happens to hold "phase":"close" is not taken
 * for one.  Returns 1 when line is such a record of that phase.
 */
static int
av_own_phase(const char *line, const char *phase)
{
	const char	*p = line + 7;		/* after {"seq": */
	size_t		 n = strlen(phase);

	p += strspn(p, "0123456789");
	if (strncmp(p, ",\"time\":\"", 9) != 0)
		return 0;
	p += 9;
	p += strcspn(p, "\"\\");
	if (strncmp(p, "\",\"phase\":\"", 11) != 0)
		return 0;
	p += 11;
	return strncmp(p, phase, n) == 0 && p[n] == '"';
}

/* Read the quoted 64-hex value following key in line, or "" for null. */
static int
av_field_hex(const char *line, const char *key, char *out)
{
	const char	*p = strstr(line, key);

	out[0] = '\0';
	if (p == NULL)
		return -1;
	p += strlen(key);
	if (strncmp(p, "null", 4) == 0)
		return 0;
	if (*p != '"' || strspn(p + 1, "0123456789abcdef") != SIGNER_HEX_LEN || p[65] != '"')
		return -1;
	memcpy(out, p + 1, SIGNER_HEX_LEN);
	out[SIGNER_HEX_LEN] = '\0';
	return 0;
}

/* Check one line; returns NULL or a description of the problem. */
static const char *
av_line(struct av_state *st, char *line, size_t len, int first_of_file, int first_file,
    char *detail, size_t dlen)
{
	char			 mac[SIGNER_HEX_LEN + 1], prevc[SIGNER_HEX_LEN + 1];
	const char		*prev = st->prev;
	unsigned long long	 seq;
	char			*end;

	if (len < AUDIT_CHAIN_SUFFIX_LEN + 10 || strncmp(line, "{\"seq\":", 7) != 0 ||
	    memcmp(line + len - AUDIT_CHAIN_SUFFIX_LEN, ",\"chain\":\"", 10) != 0 ||
	    memcmp(line + len - 2, "\"}", 2) != 0)
		return "not a chained audit record (edited, or written without chain_key)";
	if (line[7] < '0' || line[7] > '9')
		return "malformed seq (edited)";
	seq = strtoull(line + 7, &end, 10);
	if (*end != ',')
		return "malformed seq (edited)";
	st->closed = av_own_phase(line, "close");
	if (first_of_file) {
		if (!av_own_phase(line, "open"))
			return "file does not start with an opening record "
			    "(lines removed from the start)";
		if (av_field_hex(line, "\"prev_chain\":", prevc) == -1)
			return "malformed prev_chain (edited)";
		if (first_file)
			memcpy(st->start, prevc, sizeof(st->start));
		if (!first_file && strcmp(prevc, st->prev) != 0)
			return "opening record does not continue the previous file "
			    "(files missing, reordered or edited)";
		prev = prevc;
	}
	if (av_expected(st, prev, line, len, mac) == -1)
		return "cannot compute HMAC";
	if (memcmp(mac, line + len - AUDIT_CHAIN_SUFFIX_LEN + 10, SIGNER_HEX_LEN) != 0) {
		if (!st->have_seq || seq == st->seq)
			return "edited (chain value does not match the line)";
		if (seq > st->seq) {
			snprintf(detail, dlen, "%llu line(s) removed before this line",
			    seq - st->seq);
			return detail;
		}
		return "inserted or reordered (sequence goes backwards)";
	}
	if (st->have_seq && seq != st->seq)
		return seq > st->seq ? "lines removed before this line" :
		    "inserted or reordered (sequence goes backwards)";
	memcpy(st->prev, mac, sizeof(mac));
	st->seq = seq + 1;
	st->have_seq = 1;
	st->lines++;
	return NULL;
}

/* Verify one file; 0 ok, 1 problem reported. */
static int
av_file(struct av_state *st, const char *path, int first_file, FILE *out)
{
	FILE		*f;
	char		*line = NULL, detail[96];
	size_t		 cap = 0, lineno = 0;
	ssize_t		 n;
	const char	*why;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(out, "%s: cannot open\n", path);
		return 1;
	}
	while ((n = getline(&line, &cap, f)) != -1) {
		lineno++;
		if (n == 0 || line[n - 1] != '\n') {
			fprintf(out, "%s:%zu: incomplete last line (tail truncated)\n", path, lineno);
			goto bad;
		}
		line[--n] = '\0';
		why = av_line(st, line, (size_t)n, lineno == 1, first_file, detail, sizeof(detail));
		if (why != NULL) {
			fprintf(out, "%s:%zu: %s\n", path, lineno, why);
			goto bad;
		}
	}
	if (lineno == 0) {
		fprintf(out, "%s: empty file (truncated)\n", path);
		goto bad;
	}
	free(line);
	fclose(f);
	return 0;
bad:
	free(line);
	fclose(f);
	return 1;
}

/* Verify a file or a rotated series, oldest first. */
int
audit_verify_files(const struct signer *key, char *const *files, int n, FILE *out)
{
	struct av_state	st;
	int		i;

	memset(&st, 0, sizeof(st));
	st.key = key;
	for (i = 0; i < n; i++)
		if (av_file(&st, files[i], i == 0, out) != 0)
			return 1;
	if (!st.closed) {
		fprintf(out, "%s: tail truncated: no closing record after line %llu "
		    "(or the proxy is still writing, or it crashed)\n", files[n - 1], st.lines);
		return 1;
	}
	fprintf(out, "OK: %llu records in %d file(s), chain intact, closed cleanly; "
	    "last chain %s\n", st.lines, n, st.prev);
	if (st.start[0] != '\0')
		fprintf(out, "note: %s continues chain %s: earlier files were not checked "
		    "(give them too, oldest first, to check the whole trail)\n", files[0], st.start);
	return 0;
}

/* "hmac-sha256:" and the first 16 hex of the keyed MAC of a value. */
void
audit_verify_fingerprint(const struct signer *key, const void *val, size_t len, char *out)
{
	unsigned char	mac[32];
	struct iovec	iov = { (void *)(uintptr_t)val, len };

	memcpy(out, "hmac-sha256:", 12);
	if (signer_mac(key, &iov, 1, mac) == -1) {
		strcpy(out + 12, "error");
		return;
	}
	signer_hex(mac, 8, out + 12);
}
