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
/* Keyed fingerprint "hmac-sha256:<16 hex>" of a value into out[29]. */
void	audit_verify_fingerprint(const struct signer *key, const void *val, size_t len,
	    char *out);

#endif
