/*
 * signer.c — HMAC-SHA256 request signatures, the only code that uses a key.
 * The key's inner and outer pad states are prepared once; signing a body
 * then costs two SHA-256 context copies and the body's own hashing.
 * The key bytes are the secret text as-is (never base64-decoded).
 */
#ifndef SIGNER_H
#define SIGNER_H
#include <stddef.h>
#include <sys/uio.h>

#define SIGNER_HEX_LEN	64

struct signer;

/* Prepare a signer for key[0..len).  NULL on allocation failure. */
struct signer	*signer_new(const unsigned char *key, size_t len);
void		 signer_free(struct signer *);	/* cleanses; accepts NULL */
/*
 * Lowercase hex HMAC-SHA256 over the concatenation of iov[0..n) into
 * hex[SIGNER_HEX_LEN + 1].  0 on success, -1 on a library failure.
 */
int		 signer_sign(const struct signer *, const struct iovec *iov, int n,
		    char *hex);
/* HMAC-SHA256 into raw out[32] (for audit chains and fingerprints). */
int		 signer_mac(const struct signer *, const struct iovec *iov, int n,
		    unsigned char *out);
/* Lowercase hex of n bytes into out[2n+1]. */
void		 signer_hex(const unsigned char *in, size_t n, char *out);

#endif
