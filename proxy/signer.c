/*
 * signer.c — HMAC-SHA256 (RFC 2104) with precomputed pad states.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "signer.h"

#define HMAC_BLOCK	64
#define HMAC_OUT	32

struct signer {
	EVP_MD_CTX	*inner;		/* SHA-256 state after (K ^ ipad) */
	EVP_MD_CTX	*outer;		/* SHA-256 state after (K ^ opad) */
};

/* Release a signer; OpenSSL cleanses the digest states. */
void
signer_free(struct signer *s)
{
	if (s == NULL)
		return;
	EVP_MD_CTX_free(s->inner);
	EVP_MD_CTX_free(s->outer);
	free(s);
}

static EVP_MD_CTX *
signer_pad_state(const unsigned char *k, unsigned char pad)
{
	unsigned char	 block[HMAC_BLOCK];
	EVP_MD_CTX	*c;
	size_t		 i;
	int		 ok;

	if ((c = EVP_MD_CTX_new()) == NULL)
		return NULL;
	for (i = 0; i < HMAC_BLOCK; i++)
		block[i] = k[i] ^ pad;
	ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(c, block, sizeof(block));
	OPENSSL_cleanse(block, sizeof(block));
	if (!ok) {
		EVP_MD_CTX_free(c);
		return NULL;
	}
	return c;
}

/* Prepare the pad states for a key; keys longer than a block are hashed first. */
struct signer *
signer_new(const unsigned char *key, size_t len)
{
	struct signer	*s;
	unsigned char	 k[HMAC_BLOCK];
	unsigned int	 dlen;

	memset(k, 0, sizeof(k));
	if (len > HMAC_BLOCK) {
		if (!EVP_Digest(key, len, k, &dlen, EVP_sha256(), NULL))
			return NULL;
	} else
		memcpy(k, key, len);
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		OPENSSL_cleanse(k, sizeof(k));
		return NULL;
	}
	s->inner = signer_pad_state(k, 0x36);
	s->outer = signer_pad_state(k, 0x5c);
	OPENSSL_cleanse(k, sizeof(k));
	if (s->inner == NULL || s->outer == NULL) {
		signer_free(s);
		return NULL;
	}
	return s;
}

/* Raw HMAC-SHA256 over the iovecs. */
int
signer_mac(const struct signer *s, const struct iovec *iov, int n,
    unsigned char *out)
{
	/* one scratch context per thread, reused: no allocation per signature */
	static __thread EVP_MD_CTX *c;
	unsigned char	 ih[HMAC_OUT];
	unsigned int	 len;
	int		 i, ok = 0;

	if (c == NULL && (c = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (!EVP_MD_CTX_copy_ex(c, s->inner))
		goto done;
	for (i = 0; i < n; i++)
		if (iov[i].iov_len > 0 && !EVP_DigestUpdate(c, iov[i].iov_base, iov[i].iov_len))
			goto done;
	if (!EVP_DigestFinal_ex(c, ih, &len) || !EVP_MD_CTX_copy_ex(c, s->outer) ||
	    !EVP_DigestUpdate(c, ih, sizeof(ih)) || !EVP_DigestFinal_ex(c, out, &len))
		goto done;
	ok = 1;
done:
	OPENSSL_cleanse(ih, sizeof(ih));
	EVP_MD_CTX_reset(c);	/* cleanses the digest state */
	return ok ? 0 : -1;
}

/* Lowercase hex encoding. */
void
signer_hex(const unsigned char *in, size_t n, char *out)
{
	static const char	digits[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* Lowercase hex HMAC-SHA256 over the iovecs. */
int
signer_sign(const struct signer *s, const struct iovec *iov, int n, char *hex)
{
	unsigned char	mac[HMAC_OUT];

	if (signer_mac(s, iov, n, mac) == -1)
		return -1;
	signer_hex(mac, sizeof(mac), hex);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}
