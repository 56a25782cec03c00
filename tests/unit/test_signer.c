/*
 * test_signer.c — HMAC-SHA256 known-answer vectors, including ocp-api.md §2.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "signer.h"
#include "unit.h"

static void
sign_str(const char *key, const char *msg, char *hex)
{
	struct signer	*s = signer_new((const unsigned char *)key, strlen(key));
	struct iovec	 iov = { (void *)(uintptr_t)msg, strlen(msg) };

	CHECK(s != NULL);
	CHECK(signer_sign(s, &iov, 1, hex) == 0);
	signer_free(s);
}

int
main(void)
{
	char		 hex[SIGNER_HEX_LEN + 1];
	struct signer	*s;
	struct iovec	 iov[3];
	static const char key[] = "RbWMG0rT6NSDQPKXs44gau/97OTsMW1+EakuQA8gb+IwjIUAdx56Fl3Oa7a8dw5L3soWK/o6UFfqlzh/6LXPDA==";
	static const char body[] = "{\"from\":\"ETH\",\"to\":\"USDT\",\"nonce\":1643881172430}";

	/* ocp-api.md §2: the documentation's example key (88 chars, > one block) used as-is */
	sign_str(key, body, hex);
	CHECK_STREQ(hex, "eeb0b30750aec75f89ea5f74e71bfdb5a678fbba7d626e1081d82172b2110ce7");
	CHECK(strncmp(hex, "41bf1f51", 8) != 0);	/* not the base64-decoded key */

	/* RFC 4231 test case 2: short key */
	sign_str("Jefe", "what do ya want for nothing?", hex);
	CHECK_STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	/* RFC 4231 test case 6: 131-byte key, hashed first */
	{
		char big[132];
		memset(big, 0xaa, 131);
		big[131] = '\0';
		sign_str(big, "Test Using Larger Than Block-Size Key - Hash Key First", hex);
		CHECK_STREQ(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	}
	/* exactly one block (64 bytes) is used unhashed */
	sign_str("0123456789012345678901234567890123456789012345678901234567890123", "x", hex);
	CHECK(strlen(hex) == 64);

	/* the spliced body signed in three parts equals the whole */
	s = signer_new((const unsigned char *)key, strlen(key));
	iov[0] = (struct iovec){ (void *)(uintptr_t)body, 1 };
	iov[1] = (struct iovec){ (void *)(uintptr_t)(body + 1), 20 };
	iov[2] = (struct iovec){ (void *)(uintptr_t)(body + 21), strlen(body) - 21 };
	CHECK(signer_sign(s, iov, 3, hex) == 0);
	CHECK_STREQ(hex, "eeb0b30750aec75f89ea5f74e71bfdb5a678fbba7d626e1081d82172b2110ce7");
	/* a signer is reusable: same answer twice, different for another body */
	CHECK(signer_sign(s, iov, 3, hex) == 0);
	CHECK_STREQ(hex, "eeb0b30750aec75f89ea5f74e71bfdb5a678fbba7d626e1081d82172b2110ce7");
	iov[0].iov_len = 0;
	CHECK(signer_sign(s, iov, 3, hex) == 0);
	CHECK(strcmp(hex, "eeb0b30750aec75f89ea5f74e71bfdb5a678fbba7d626e1081d82172b2110ce7") != 0);
	signer_free(s);
	signer_free(NULL);
	UNIT_END("test_signer");
}
