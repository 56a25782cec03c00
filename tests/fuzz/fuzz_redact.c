/* fuzz-sources: proxy/redact.c */
/*
 * fuzz_redact.c — libFuzzer target for the [audit] redact list parser
 * (redact_set_new on the input as text) and for redact_set_mask.  The list
 * parser is small, but what it accepts decides which values reach the audit
 * trail unmasked, so beyond the sanitizers it checks (abort if not):
 * - the list is accepted exactly when no comma-separated item is blank
 *   (spaces and tabs only), and a refusal always carries a cause;
 * - every item, trimmed of spaces and tabs, is then a member, and neither
 *   its untrimmed form (when different) nor an empty key is;
 * - redact_set_mask gives "hmac-sha256:" and 16 lowercase hex digits when
 *   the fingerprint function wrote those, "[REDACTED]" whatever else it
 *   wrote (here: the first 16 input bytes), always NUL-terminated and
 *   shorter than REDACT_MASK_MAX.
 *
 * tests/fuzz/run.sh builds and runs it; by hand:
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy tests/fuzz/fuzz_redact.c \
 *     proxy/redact.c -o /tmp/fuzz_redact
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Abort unless cond: the fuzzer reports it as a crash. */
static void
fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

/* A fingerprint function that writes whatever arg holds (16 bytes + NUL). */
static void
fuzz_fp(void *arg, const unsigned char *val, size_t len, char hex16[17])
{
	(void)val;
	(void)len;
	memcpy(hex16, arg, 17);
}

/* 1 if s[0..16) is 16 lowercase hex digits. */
static int
fuzz_is_hex16(const char *s)
{
	size_t	i;

	for (i = 0; i < 16; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* Check every item of list (accepted as rs) is a member, trimmed. */
static void
fuzz_check_items(const struct redact_set *rs, const char *list)
{
	const char	*p = list, *comma, *s;
	size_t		 len, tl;

	for (;;) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		s = p;
		tl = len;
		while (tl > 0 && (*s == ' ' || *s == '\t'))
			s++, tl--;
		while (tl > 0 && (s[tl - 1] == ' ' || s[tl - 1] == '\t'))
			tl--;
		fuzz_assert(tl > 0);
		fuzz_assert(redact_set_has(rs, (const unsigned char *)s, tl));
		/* no member starts or ends with a space or tab */
		if (tl != len)
			fuzz_assert(!redact_set_has(rs, (const unsigned char *)p, len));
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	fuzz_assert(!redact_set_has(rs, (const unsigned char *)"", 0));
}

/* 1 if some comma-separated item of list is blank. */
static int
fuzz_has_blank_item(const char *list)
{
	const char	*p = list;
	int		 blank = 1;

	for (; *p != '\0'; p++) {
		if (*p == ',') {
			if (blank)
				return 1;
			blank = 1;
		} else if (*p != ' ' && *p != '\t')
			blank = 0;
	}
	return blank;
}

/* The replacement text must follow the header's contract. */
static void
fuzz_check_mask(struct redact_set *rs, const uint8_t *data, size_t size)
{
	char	wrote[17], dst[REDACT_MASK_MAX];
	size_t	n, tag = sizeof(REDACT_FP_TAG) - 1;

	memset(wrote, 0, sizeof(wrote));
	memcpy(wrote, data, size < 16 ? size : 16);
	memset(dst, 'Z', sizeof(dst));
	n = redact_set_mask(rs, data, size, dst);
	fuzz_assert(n == sizeof(REDACT_MASKED) - 1 && strcmp(dst, REDACT_MASKED) == 0);

	redact_set_fingerprint(rs, fuzz_fp, wrote);
	fuzz_assert(redact_set_fingerprints(rs));
	memset(dst, 'Z', sizeof(dst));
	n = redact_set_mask(rs, data, size, dst);
	fuzz_assert(n < REDACT_MASK_MAX && strlen(dst) == n);
	if (fuzz_is_hex16(wrote))
		fuzz_assert(n == tag + 16 && memcmp(dst, REDACT_FP_TAG, tag) == 0 &&
		    memcmp(dst + tag, wrote, 16) == 0);
	else
		fuzz_assert(strcmp(dst, REDACT_MASKED) == 0);
	redact_set_fingerprint(rs, NULL, wrote);
	fuzz_assert(!redact_set_fingerprints(rs));
}

/* One input: parse it as a redact list, check membership and masking. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char		 unset[] = "unset";
	struct redact_set	*rs;
	char			*list, *cause = unset;

	if ((list = malloc(size + 1)) == NULL)
		return 0;
	memcpy(list, data, size);
	list[size] = '\0';
	rs = redact_set_new(list, &cause);
	fuzz_assert(cause != unset);	/* always set, NULL on success */
	if (fuzz_has_blank_item(list))
		fuzz_assert(rs == NULL && cause != NULL);
	else {
		fuzz_assert(rs != NULL && cause == NULL);
		fuzz_check_items(rs, list);
		fuzz_check_mask(rs, data, size);
	}
	redact_set_free(rs);
	free(cause);
	free(list);
	return 0;
}
