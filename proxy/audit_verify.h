/*
 * audit_verify.c — checks an audit file or a rotated series (oldest first)
 * against its hash chain: every line's "seq" and "chain", every file's
 * opening record against the previous file's last chain value, and a
 * closing record at the end.
 */
#ifndef AUDIT_VERIFY_H
#define AUDIT_VERIFY_H
#include <stdio.h>

struct signer;

/*
 * Verify files[0..n) in order with the chain key.  Prints "OK ..." to out and
 * returns 0, or prints the first problem ("FILE:LINE: edited|removed|inserted
 * or reordered ...", or "FILE: tail truncated ...") and returns 1.
 */
int	audit_verify_files(const struct signer *key, char *const *files, int n, FILE *out);

/*
 * What the config says of the trail, for checking where the verified files
 * end: live is [audit] path, tail the state dir's copy of the trail's last
 * seq and chain value ([state] dir/audit.tail); either may be NULL.
 */
struct audit_verify_trail {
	const char	*live;
	const char	*tail;
};

/*
 * audit_verify_files, and then the end of the last file against the tail
 * copy, read before the files: when it names a record after that end, the
 * file was cut ("FILE: tail truncated: ... names seq N ..."), exit 1, unless
 * the file is not the one at live and another file of the trail (named
 * basename(live)* beside live or beside the file) opens by continuing it
 * (a rotated file verified on its own).  A tail copy that is missing,
 * unreadable, older than the files or of another trail only adds a note.
 */
int	audit_verify_trail(const struct signer *key, char *const *files, int n,
	    const struct audit_verify_trail *trail, FILE *out);

/* Where a tail copy's record lies relative to a verified series. */
enum audit_tail_rel {
	AUDIT_TAIL_END,		/* its last record */
	AUDIT_TAIL_EARLIER,	/* an earlier one, or the one the series continues */
	AUDIT_TAIL_BEFORE,	/* before the record the series continues */
	AUDIT_TAIL_OTHER,	/* a seq of the series, with another chain value */
	AUDIT_TAIL_AFTER	/* after its last record: missing, or in a later file */
};

/*
 * The tail copy names (tseq, tchain); the series holds seq first..last and
 * continues the chain value of seq first - 1; at is the series' chain value
 * at tseq ("" for null) or NULL when it has none there.
 */
enum audit_tail_rel audit_tail_relation(unsigned long long tseq, const char *tchain,
	    unsigned long long first, unsigned long long last, const char *at);

/*
 * Parse a tail copy, "SEQ CHAIN\n" as audit.c writes it (CHAIN: 64 lowercase
 * hex, or null, stored as ""); chain has room for 65 bytes.  0, or -1 if
 * malformed.
 */
int	audit_tail_parse(const char *buf, size_t len, unsigned long long *seq, char *chain);

/* Keyed fingerprint "hmac-sha256:<16 hex>" of a value into out[29]. */
void	audit_verify_fingerprint(const struct signer *key, const void *val, size_t len,
	    char *out);

#endif
