/* fuzz-sources: proxy/policy.c proxy/catalogue.c proxy/yarena.c proxy/fmt.c */
/* fuzz-libs: -lyajl -lcrypto */
/*
 * libFuzzer target for policy.c.  Each input is used four ways:
 * - as a request body for policy_check_fields under a fixed policy (a
 *   withdrawal with field_max and field_in, and a path with several rules);
 *   the verdict must be deterministic, name a known rule, and the detail
 *   must be one of the sentences the config allows (never input bytes);
 * - as config lines "[NAME.]KEY=VALUE" for policy_conf_key (split at the
 *   first '='), then policy_validate and every run-time call on the result;
 * - as two decimals "A B" for policy_decimal_cmp, checked against a
 *   reference that pads both to fixed width, and for antisymmetry;
 * - as an Authorization header value for policy_bearer.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy \
 *     tests/fuzz/fuzz_policy.c proxy/policy.c proxy/catalogue.c -lyajl -lcrypto
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define WD	"/api-gateway/make-withdrawal"
#define MO	"/api-gateway/make-order"
#define FZ_PAD	(POLICY_MAX_DIGITS + 2)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct policy	*fz_policy;
static const struct caller *fz_payouts;

static const char *const fz_rules[] = {
	POLICY_R_BODY, POLICY_R_DUP, POLICY_R_MISSING, POLICY_R_DECIMAL, POLICY_R_MAX,
	POLICY_R_IN, POLICY_R_NOMEM
};

/* Abort unless cond: the fuzzer reports it as a crash. */
static void
fz_assert(int cond)
{
	if (!cond)
		abort();
}

/* The fixed policy of the body checks. */
static void
fz_init(void)
{
	static const char *const kv[][2] = {
		{ "uid", "1002" },
		{ "allow", WD ", " MO },
		{ "field_max", WD ":amount=1000.00, " MO ":amount=-0.5, " MO ":fee=0" },
		{ "field_in", WD ":currency=USDT|USDC, " MO ":memo=a|b|\\u0041" },
	};
	const char	*why;
	size_t		 i;

	if (fz_policy != NULL)
		return;
	fz_policy = policy_new();
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		fz_assert(policy_conf_key(fz_policy, "payouts", kv[i][0], kv[i][1], 1,
		    &why) == 0);
	fz_assert(policy_validate(fz_policy, NULL, NULL, NULL, 0) == 0);
	fz_payouts = policy_caller(fz_policy, 0);
}

/* A detail may only be built from the config: field names, bounds, sets. */
static int
fz_detail_ok(const char *d)
{
	static const char *const starts[] = {
		"the body ", "amount ", "currency ", "fee ", "memo ", "out of memory"
	};
	size_t	i;

	for (i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
		if (strncmp(d, starts[i], strlen(starts[i])) == 0)
			return strlen(d) < 200;
	return 0;
}

/* Body checks on one path; deterministic, known rule, config-only detail. */
static void
fz_fields(const char *path, const char *buf, size_t len)
{
	const char	*rule, *rule2;
	char		*detail, *detail2;
	size_t		 i;
	int		 rc, rc2;

	rc = policy_check_fields(fz_payouts, path, buf, len, &rule, &detail);
	rc2 = policy_check_fields(fz_payouts, path, buf, len, &rule2, &detail2);
	fz_assert(rc == rc2);
	if (rc == 0) {
		fz_assert(rule == NULL && detail == NULL && rule2 == NULL && detail2 == NULL);
		return;
	}
	fz_assert(rc == -1 && rule != NULL && rule2 != NULL && strcmp(rule, rule2) == 0);
	for (i = 0; i < sizeof(fz_rules) / sizeof(fz_rules[0]); i++)
		if (strcmp(rule, fz_rules[i]) == 0)
			break;
	fz_assert(i < sizeof(fz_rules) / sizeof(fz_rules[0]));
	fz_assert(detail != NULL && detail2 != NULL && strcmp(detail, detail2) == 0);
	fz_assert(fz_detail_ok(detail));
	free(detail);
	free(detail2);
}

/* Reference decimal: sign and fixed-width digits, or -1 (same grammar). */
static int
fz_ref_parse(const char *s, size_t len, int *neg, char ip[FZ_PAD + 1], char fp[FZ_PAD + 1])
{
	size_t	i = 0, il, fl = 0, dot;

	*neg = len > 0 && s[0] == '-';
	i = (size_t)*neg;
	dot = i;
	while (dot < len && s[dot] >= '0' && s[dot] <= '9')
		dot++;
	il = dot - i;
	if (il == 0 || (il > 1 && s[i] == '0'))
		return -1;
	if (dot < len) {
		if (s[dot] != '.')
			return -1;
		for (fl = 0; dot + 1 + fl < len; fl++)
			if (s[dot + 1 + fl] < '0' || s[dot + 1 + fl] > '9')
				return -1;
		if (fl == 0)
			return -1;
	}
	if (il + fl > POLICY_MAX_DIGITS)
		return -1;
	memset(ip, '0', FZ_PAD);
	memset(fp, '0', FZ_PAD);
	ip[FZ_PAD] = fp[FZ_PAD] = '\0';
	memcpy(ip + FZ_PAD - il, s + i, il);
	if (fl > 0)
		memcpy(fp, s + dot + 1, fl);
	if (strspn(ip, "0") == FZ_PAD && strspn(fp, "0") == FZ_PAD)
		*neg = 0;
	return 0;
}

/* policy_decimal_cmp against the reference, plus antisymmetry. */
static void
fz_decimals(const char *a, size_t alen, const char *b, size_t blen)
{
	char	ai[FZ_PAD + 1], af[FZ_PAD + 1], bi[FZ_PAD + 1], bf[FZ_PAD + 1];
	int	an, bn, ra, rb, c, c2, ref;

	ra = fz_ref_parse(a, alen, &an, ai, af);
	rb = fz_ref_parse(b, blen, &bn, bi, bf);
	if (policy_decimal_cmp(a, alen, b, blen, &c) == -1) {
		fz_assert(ra == -1 || rb == -1);
		return;
	}
	fz_assert(ra == 0 && rb == 0);
	if (an != bn)
		ref = an ? -1 : 1;
	else {
		ref = strcmp(ai, bi);
		if (ref == 0)
			ref = strcmp(af, bf);
		ref = ref < 0 ? -1 : ref > 0;
		if (an)
			ref = -ref;
	}
	fz_assert((c < 0 ? -1 : c > 0) == ref);
	fz_assert(policy_decimal_cmp(b, blen, a, alen, &c2) == 0);
	fz_assert((c2 < 0 ? -1 : c2 > 0) == -ref);
	fz_assert(policy_decimal_cmp(a, alen, a, alen, &c2) == 0 && c2 == 0);
}

/* Validation callback: messages must be short, printable lines. */
static void
fz_err(void *arg, int line, const char *caller, const char *msg)
{
	(void)line;
	(*(int *)arg)++;
	fz_assert(caller != NULL && msg != NULL && strlen(msg) < 512);
}

/* Exercise everything a loaded (possibly invalid) policy offers. */
static void
fz_use_policy(struct policy *p, const char *tok, size_t toklen)
{
	static const char *const paths[] = { WD, WD "/", "/api-gateway/orders", "/x/y" };
	static const char *const pnames[] = { "merchant", "partner" };
	struct policy_peer	 peer = { 1, 1001, 50, 1, NULL, 0 };
	struct caller		*c;
	const char		*rule;
	char			*detail, d[POLICY_DESCRIBE_MAX];
	unsigned		 ra;
	size_t			 i, j;
	int			 n = 0;

	fz_assert(policy_validate(p, fz_err, &n, pnames, 2) == n);
	for (i = 0; i < 3; i++) {
		peer.is_unix = i < 2;
		peer.uid = i == 0 ? 1001 : 0;
		peer.bearer = tok;
		peer.bearer_len = toklen;
		if ((c = policy_identify(p, &peer)) == NULL)
			continue;
		caller_describe(c, &peer, d, sizeof(d));
		fz_assert(strlen(d) < sizeof(d));
		for (j = 0; j < sizeof(paths) / sizeof(paths[0]); j++) {
			if (policy_check_request(c, "merchant", paths[j], &rule) == -1)
				fz_assert(rule != NULL);
			if (policy_check_fields(c, paths[j], "{\"amount\":\"5\"}", 14, &rule,
			    &detail) == -1)
				fz_assert(rule != NULL);
			free(detail);
		}
		if (caller_rate_take(c, 1000, &ra) == -1)
			fz_assert(ra >= 1);
		if (caller_enter(c) == 0)
			caller_leave(c);
	}
	for (i = 0; i < policy_ncallers(p); i++) {
		caller_describe(policy_caller(p, i), NULL, d, sizeof(d));
		fz_assert(strlen(d) < sizeof(d));
	}
}

/* Feed "[NAME.]KEY=VALUE" lines to policy_conf_key. */
static void
fz_conf(char *text)
{
	struct policy	*p = policy_new();
	const char	*why;
	char		*line, *next, *eq, *key, *name, *dot;
	int		 n = 0;

	fz_assert(p != NULL);
	for (line = text; line != NULL; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((eq = strchr(line, '=')) == NULL)
			continue;
		*eq = '\0';
		key = line;
		name = "fz";
		if ((dot = strchr(line, '.')) != NULL) {
			*dot = '\0';
			name = line;
			key = dot + 1;
		}
		why = NULL;
		if (policy_conf_key(p, name, key, eq + 1, ++n, &why) == -1)
			fz_assert(why != NULL && strstr(why, "\n") == NULL);
	}
	fz_use_policy(p, text, strlen(text));
	policy_free(p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*buf = (const char *)data, *sp, *tok;
	char		*text;
	size_t		 toklen;

	fz_init();
	fz_fields(WD, buf, size);
	fz_fields(MO, buf, size);
	fz_fields("/api-gateway/get-invoice", buf, size);
	if ((sp = memchr(buf, ' ', size)) != NULL)
		fz_decimals(buf, (size_t)(sp - buf), sp + 1, size - (size_t)(sp - buf) - 1);
	else
		fz_decimals(buf, size, "1000.00", 7);
	if (policy_bearer(buf, size, &tok, &toklen) == 0)
		fz_assert(toklen > 0 && tok >= buf && tok + toklen == buf + size);
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, buf, size);
	text[size] = '\0';
	fz_conf(text);
	free(text);
	return 0;
}
