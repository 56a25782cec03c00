/*
 * audit_verify.c — offline verification of the audit chain.
 */
#include <sys/stat.h>
#include <sys/uio.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "audit_verify.h"
#include "fmt.h"
#include "signer.h"

struct av_state {
	const struct signer	*key;
	char			 prev[SIGNER_HEX_LEN + 1];	/* "" = none yet */
	unsigned long long	 seq;				/* next expected */
	int			 have_seq;
	int			 closed;	/* last line seen was a close record */
	unsigned long long	 lines;
	size_t			 file_lines;	/* lines of the file read last */
	char			 start[SIGNER_HEX_LEN + 1];	/* first file's prev_chain */
	unsigned long long	 first;		/* seq of the first record */
	/* for the comparison with the state dir's tail copy */
	int			 want;		/* a tail copy names tseq */
	unsigned long long	 tseq;
	int			 found;		/* the series has a chain value at tseq: */
	char			 at[SIGNER_HEX_LEN + 1];
	const char		*live;		/* [audit] path, or NULL */
	int			 is_live;	/* the last file is the one at live */
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

/* The frame every chained record has; NULL with *seq set, or what is wrong. */
static const char *
av_shape(const char *line, size_t len, unsigned long long *seq)
{
	char	*end;

	if (len < AUDIT_CHAIN_SUFFIX_LEN + 10 || strncmp(line, "{\"seq\":", 7) != 0 ||
	    memcmp(line + len - AUDIT_CHAIN_SUFFIX_LEN, ",\"chain\":\"", 10) != 0 ||
	    memcmp(line + len - 2, "\"}", 2) != 0)
		return "not a chained audit record (edited, or written without chain_key)";
	if (line[7] < '0' || line[7] > '9')
		return "malformed seq (edited)";
	*seq = strtoull(line + 7, &end, 10);
	if (*end != ',')
		return "malformed seq (edited)";
	return NULL;
}

/* The line's chain value into mac (given the previous one); 1 if it matches. */
static int
av_mac_ok(const struct av_state *st, const char *prev, const char *line, size_t len,
    char *mac)
{
	if (av_expected(st, prev, line, len, mac) == -1)
		return -1;
	return memcmp(mac, line + len - AUDIT_CHAIN_SUFFIX_LEN + 10, SIGNER_HEX_LEN) == 0;
}

/* Keep the chain value at the seq the tail copy names. */
static void
av_mark(struct av_state *st, unsigned long long seq, const char *chain)
{
	if (st->want && seq == st->tseq) {
		st->found = 1;
		memcpy(st->at, chain, sizeof(st->at));
	}
}

/* Check one line; returns NULL or a description of the problem. */
static const char *
av_line(struct av_state *st, char *line, size_t len, int first_of_file, int first_file,
    char *detail, size_t dlen)
{
	char			 mac[SIGNER_HEX_LEN + 1], prevc[SIGNER_HEX_LEN + 1];
	const char		*prev = st->prev, *why;
	unsigned long long	 seq;
	int			 ok;

	if ((why = av_shape(line, len, &seq)) != NULL)
		return why;
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
	if ((ok = av_mac_ok(st, prev, line, len, mac)) == -1)
		return "cannot compute HMAC";
	if (!ok) {
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
	if (!st->have_seq) {	/* the chain value this series continues */
		st->first = seq;
		if (seq > 0)
			av_mark(st, seq - 1, prev);	/* the first file's prev_chain */
	}
	av_mark(st, seq, mac);
	memcpy(st->prev, mac, sizeof(mac));
	st->seq = seq + 1;
	st->have_seq = 1;
	st->lines++;
	return NULL;
}

/* Verify one file; 0 ok, 1 problem reported.  last: note whether it is live. */
static int
av_file(struct av_state *st, const char *path, int first_file, int last, FILE *out)
{
	FILE		*f;
	struct stat	 mine, sl;
	char		*line = NULL, detail[96];
	size_t		 cap = 0, lineno = 0;
	ssize_t		 n;
	const char	*why;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(out, "%s: cannot open\n", path);
		return 1;
	}
	/* the same file as the one at [audit] path, when this was opened */
	if (last && st->live != NULL && fstat(fileno(f), &mine) == 0 &&
	    stat(st->live, &sl) == 0)
		st->is_live = mine.st_dev == sl.st_dev && mine.st_ino == sl.st_ino;
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
	st->file_lines = lineno;
	free(line);
	fclose(f);
	return 0;
bad:
	free(line);
	fclose(f);
	return 1;
}

/* Parse a tail copy: "SEQ CHAIN\n", CHAIN 64 lowercase hex or null. */
int
audit_tail_parse(const char *buf, size_t len, unsigned long long *seq, char *chain)
{
	size_t	d = 0, c;

	if (len > 0 && buf[len - 1] == '\n')
		len--;
	while (d < len && d < 21 && buf[d] >= '0' && buf[d] <= '9')
		d++;
	if (d == 0 || d > 20 || d >= len || buf[d] != ' ')
		return -1;
	c = len - d - 1;
	if (c == 4 && memcmp(buf + d + 1, "null", 4) == 0)
		chain[0] = '\0';
	else if (c == SIGNER_HEX_LEN) {
		memcpy(chain, buf + d + 1, c);
		chain[c] = '\0';
		if (strspn(chain, "0123456789abcdef") != c)
			return -1;
	} else
		return -1;
	errno = 0;
	*seq = strtoull(buf, NULL, 10);
	return errno == ERANGE ? -1 : 0;
}

enum audit_tail_rel
audit_tail_relation(unsigned long long tseq, const char *tchain, unsigned long long first,
    unsigned long long last, const char *at)
{
	if (tseq > last)
		return AUDIT_TAIL_AFTER;
	if (tseq + 1 < first)
		return AUDIT_TAIL_BEFORE;
	if (at == NULL || strcmp(at, tchain) != 0)
		return AUDIT_TAIL_OTHER;
	return tseq == last ? AUDIT_TAIL_END : AUDIT_TAIL_EARLIER;
}

/* The tail copy, read before the files (see audit_verify_trail). */
struct av_tail {
	int			 state;		/* AV_T_* */
	int			 err;		/* AV_T_UNREADABLE: errno */
	unsigned long long	 seq;
	char			 chain[SIGNER_HEX_LEN + 1];
};
#define AV_T_NONE	0	/* no tail copy configured */
#define AV_T_MISSING	1
#define AV_T_UNREADABLE	2
#define AV_T_MALFORMED	3
#define AV_T_OK		4

static void
av_tail_read(const char *path, struct av_tail *t)
{
	char	buf[128];
	ssize_t	n;
	int	fd;

	memset(t, 0, sizeof(*t));
	if (path == NULL)
		return;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		t->state = errno == ENOENT ? AV_T_MISSING : AV_T_UNREADABLE;
		t->err = errno;
		return;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n == -1) {
		t->state = AV_T_UNREADABLE;
		t->err = errno;
	} else if (audit_tail_parse(buf, (size_t)n, &t->seq, t->chain) == -1)
		t->state = AV_T_MALFORMED;
	else
		t->state = AV_T_OK;
}

/*
 * 1 if path's first line is an opening record that continues the series
 * (seq st->seq, prev_chain st->prev) with a valid chain value.
 */
static int
av_continues(const struct av_state *st, const char *path)
{
	struct stat		 sb;
	char			 line[4096], prevc[SIGNER_HEX_LEN + 1], mac[SIGNER_HEX_LEN + 1];
	char			*nl;
	unsigned long long	 seq;
	ssize_t			 n;
	int			 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1)
		return 0;
	n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ?
	    pread(fd, line, sizeof(line) - 1, 0) : -1;
	close(fd);
	if (n <= 0 || (nl = memchr(line, '\n', (size_t)n)) == NULL)
		return 0;
	*nl = '\0';
	return av_shape(line, (size_t)(nl - line), &seq) == NULL && seq == st->seq &&
	    av_own_phase(line, "open") && av_field_hex(line, "\"prev_chain\":", prevc) == 0 &&
	    strcmp(prevc, st->prev) == 0 &&
	    av_mac_ok(st, prevc, line, (size_t)(nl - line), mac) == 1;
}

/*
 * The file of the trail that continues the series: one named prefix* in
 * dir whose first line continues it.  Its path into found; 0, or -1.
 */
static int
av_successor_in(const struct av_state *st, const char *dir, const char *prefix,
    char *found, size_t len)
{
	DIR		*d;
	struct dirent	*e;
	int		 rc = -1;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while (rc == -1 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
		    (size_t)snprintf(found, len, "%s/%s", dir, e->d_name) >= len)
			continue;
		if (av_continues(st, found))
			rc = 0;
	}
	closedir(d);
	return rc;
}

/* The last component of path ("" for NULL). */
static const char *
av_base(const char *path)
{
	const char	*slash;

	if (path == NULL)
		return "";
	return (slash = strrchr(path, '/')) != NULL ? slash + 1 : path;
}

/*
 * Another file of the trail continues the series: one named like the live
 * file, beside it or beside the last verified file.  0 with its path.
 */
static int
av_successor(const struct av_state *st, const char *lastfile, char *found, size_t len)
{
	char		 d1[4096], d2[4096];
	const char	*prefix;
	struct stat	 s1, s2;

	if (st->live == NULL)
		return -1;
	prefix = av_base(st->live);
	(void)fmt_dirname(d1, sizeof(d1), st->live);
	(void)fmt_dirname(d2, sizeof(d2), lastfile);
	if (*prefix != '\0' && av_successor_in(st, d1, prefix, found, len) == 0)
		return 0;
	if (stat(d1, &s1) == 0 && stat(d2, &s2) == 0 && s1.st_dev == s2.st_dev &&
	    s1.st_ino == s2.st_ino)
		return -1;	/* the same directory */
	return *prefix != '\0' ? av_successor_in(st, d2, prefix, found, len) : -1;
}

/* Verify a file or a rotated series, oldest first. */
int
audit_verify_files(const struct signer *key, char *const *files, int n, FILE *out)
{
	return audit_verify_trail(key, files, n, NULL, out);
}

/*
 * The tail copy is read before the files.  The proxy writes a record to the
 * trail before it names it in the tail copy (at every rotation and clean
 * shutdown) and the trail only grows, so what the copy names is in the files
 * when they are read, unless it was cut out: a running proxy can leave the
 * copy behind what the files hold (a note), never ahead of it.
 */
int
audit_verify_trail(const struct signer *key, char *const *files, int n,
    const struct audit_verify_trail *trail, FILE *out)
{
	struct av_state	 st;
	struct av_tail	 t;
	char		 next[4096];
	const char	*last = files[n - 1];
	int		 i;
	enum audit_tail_rel rel = AUDIT_TAIL_END;

	memset(&st, 0, sizeof(st));
	st.key = key;
	av_tail_read(trail != NULL ? trail->tail : NULL, &t);
	st.live = trail != NULL ? trail->live : NULL;
	if (t.state == AV_T_OK) {
		st.want = 1;
		st.tseq = t.seq;
	}
	for (i = 0; i < n; i++)
		if (av_file(&st, files[i], i == 0, i == n - 1, out) != 0)
			return 1;
	if (!st.closed) {
		fprintf(out, "%s: tail truncated: no closing record after line %zu "
		    "(or the proxy is still writing, or it crashed)\n", last, st.file_lines);
		return 1;
	}
	if (t.state == AV_T_OK) {
		rel = audit_tail_relation(t.seq, t.chain, st.first, st.seq - 1,
		    st.found ? st.at : NULL);
		if (rel == AUDIT_TAIL_AFTER &&
		    (st.is_live || av_successor(&st, last, next, sizeof(next)) == -1)) {
			fprintf(out, "%s: tail truncated: the state dir's tail copy %s names seq %llu "
			    "(chain %s), the file ends at seq %llu: ", last, trail->tail, t.seq,
			    t.chain[0] ? t.chain : "null", st.seq - 1);
			if (t.seq == st.seq)
				fprintf(out, "record %llu is missing", t.seq);
			else
				fprintf(out, "records %llu to %llu are missing", st.seq, t.seq);
			if (st.is_live)
				fprintf(out, " (it is the live file, at [audit] path: no file "
				    "comes after it)\n");
			else
				fprintf(out, " (no other file of the trail, %s* beside it or "
				    "beside [audit] path, continues it)\n", av_base(st.live));
			return 1;
		}
	}
	fprintf(out, "OK: %llu records in %d file(s), chain intact, closed cleanly; "
	    "last chain %s\n", st.lines, n, st.prev);
	if (st.start[0] != '\0')
		fprintf(out, "note: %s continues chain %s: earlier files were not checked "
		    "(give them too, oldest first, to check the whole trail)\n", files[0], st.start);
	switch (t.state) {
	case AV_T_MISSING:
		fprintf(out, "note: no tail copy %s: the end was checked by its closing record "
		    "only\n", trail->tail);
		break;
	case AV_T_UNREADABLE:
		fprintf(out, "note: tail copy %s: %s: the end was checked by its closing record "
		    "only\n", trail->tail, strerror(t.err));
		break;
	case AV_T_MALFORMED:
		fprintf(out, "note: tail copy %s: malformed: the end was checked by its closing "
		    "record only\n", trail->tail);
		break;
	case AV_T_OK:
		if (rel == AUDIT_TAIL_END)
			fprintf(out, "note: the end is the record the tail copy %s names (seq %llu)\n",
			    trail->tail, t.seq);
		else if (rel == AUDIT_TAIL_EARLIER)
			fprintf(out, "note: the tail copy %s names seq %llu, an earlier record: it "
			    "was saved before the last records (at a rotation or clean shutdown; "
			    "a crash or a failed save leaves it behind)\n", trail->tail, t.seq);
		else if (rel == AUDIT_TAIL_BEFORE)
			fprintf(out, "note: the tail copy %s names seq %llu, before these files: "
			    "not compared\n", trail->tail, t.seq);
		else if (rel == AUDIT_TAIL_OTHER)
			fprintf(out, "note: the tail copy %s names seq %llu with another chain value: "
			    "it follows another trail; not compared\n", trail->tail, t.seq);
		else
			fprintf(out, "note: the tail copy %s names seq %llu, after this file; the "
			    "trail goes on in %s, which continues it (give the later files too, "
			    "oldest first, to check them)\n", trail->tail, t.seq, next);
		break;
	}
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
