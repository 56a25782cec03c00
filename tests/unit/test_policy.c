/*
 * test_policy.c — the caller policy engine as decision tables: config keys,
 * whole-policy validation, identification, profile/path rules, field limits
 * on strings and decimals, token buckets on a fake clock, concurrency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "unit.h"

#define WD	"/api-gateway/make-withdrawal"
#define TOKEN_REPORTS	"rep-7Hq2vX9kLm3Np8Rt5Yw1Zc4Bd6Fg0Js"
#define TOKEN_BATCH	"bat-Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0X"

static const char *const profiles[] = { "merchant", "partner" };

struct kv {
	const char	*caller, *key, *value;
};

/* The policy most tests run against (the examples of docs/callers.md). */
static const struct kv standard[] = {
	{ "billing", "uid", "1001" },
	{ "billing", "profiles", "merchant" },
	{ "billing", "allow", "/api-gateway/make-invoice, /api-gateway/get-invoice, "
	    "/api-gateway/orders*" },
	{ "billing", "rate_per_s", "20" },
	{ "billing", "burst", "40" },
	{ "billing", "max_concurrent", "8" },
	{ "payouts", "uid", "1002" },
	{ "payouts", "allow", WD },
	{ "payouts", "field_max", WD ":amount=1000.00" },
	{ "payouts", "field_in", WD ":currency=USDT|USDC" },
	{ "ops", "gid", "50" },
	{ "opsadmin", "uid", "1003" },
	{ "opsadmin", "gid", "50" },
	{ "reports", "token_sha256", NULL },	/* filled in: SHA-256(TOKEN_REPORTS) */
	{ "reports", "allow", "/api-gateway/get-invoices, /api-gateway/orders, "
	    "/api-gateway/beta/*, /api-gateway/custom-thing" },
	{ "batch", "token_sha256", NULL },	/* SHA-256(TOKEN_BATCH) */
	{ "batch", "rate_per_s", "0.5" },
	{ "wide", "uid", "1004" },
	{ "wide", "allow", "/*" },
};

static int	nerrs;
static char	lasterr[512];

/* policy_validate's callback: count and keep the last message. */
static void
err_cb(void *arg, int line, const char *caller, const char *msg)
{
	(void)arg;
	nerrs++;
	snprintf(lasterr, sizeof(lasterr), "%d [caller.%s] %s", line, caller, msg);
}

/* Problems found by policy_validate (messages in lasterr). */
static int
validate(const struct policy *p)
{
	nerrs = 0;
	lasterr[0] = '\0';
	return policy_validate(p, err_cb, NULL, profiles, 2);
}

static struct policy *
load_standard(void)
{
	struct policy	*p = policy_new();
	const char	*why = NULL, *v;
	char		 rep[65], bat[65];
	size_t		 i;
	int		 bad = 0;

	policy_token_sha256(TOKEN_REPORTS, strlen(TOKEN_REPORTS), rep);
	policy_token_sha256(TOKEN_BATCH, strlen(TOKEN_BATCH), bat);
	for (i = 0; i < sizeof(standard) / sizeof(standard[0]); i++) {
		v = standard[i].value;
		if (v == NULL)
			v = strcmp(standard[i].caller, "reports") == 0 ? rep : bat;
		if (policy_conf_key(p, standard[i].caller, standard[i].key, v, (int)i + 1,
		    &why) != 0) {
			fprintf(stderr, "standard %s %s: %s\n", standard[i].caller,
			    standard[i].key, why);
			bad = 1;
		}
	}
	CHECK(bad == 0);
	return p;
}

/* policy_conf_key on a scratch caller: the return code (why kept in *why). */
static int
key1(const char *key, const char *value, const char **why)
{
	struct policy	*p = policy_new();
	int		 rc;

	*why = NULL;
	rc = policy_conf_key(p, "t", key, value, 1, why);
	policy_free(p);
	return rc;
}

static void
test_conf_keys(void)
{
	static const struct {
		const char	*key, *value;
		int		 ok;
	} t[] = {
		{ "uid", "1001", 1 }, { "uid", "0", 1 }, { "uid", "4294967294", 1 },
		{ "uid", "4294967295", 0 }, { "uid", "-1", 0 }, { "uid", "+5", 0 },
		{ "uid", "abc", 0 }, { "uid", "1001x", 0 }, { "uid", "", 0 },
		{ "uid", "99999999999999999999999", 0 }, { "gid", "50", 1 },
		{ "gid", "5 0", 0 },
		{ "token_sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 1 },
		{ "token_sha256", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", 0 },
		{ "token_sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", 0 },
		{ "token_sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", 0 },
		{ "token_sha256", TOKEN_REPORTS, 0 },
		{ "profiles", "merchant, partner", 1 }, { "profiles", "merchant,merchant", 0 },
		{ "profiles", "bad name!", 0 }, { "profiles", "merchant,,partner,", 1 },
		{ "profiles", " , ", 0 },
		{ "allow", "/api-gateway/orders*, /api-gateway/make-order", 1 },
		{ "allow", "/*", 1 }, { "allow", "orders", 0 }, { "allow", "*", 0 },
		{ "allow", "/a*b", 0 }, { "allow", "/a**", 0 }, { "allow", "/a//b", 0 },
		{ "allow", "/a/../b", 0 }, { "allow", "/a/%2e", 0 }, { "allow", "/a?b=1", 0 },
		{ "allow", "/a#b", 0 }, { "allow", "/a b", 0 }, { "allow", "/a, ,/b", 1 },
		{ "allow", "/a,", 1 }, { "allow", ",", 0 }, { "allow", "/a,/a", 0 },
		{ "allow", "/a,/a*", 1 }, { "allow", "/a,/b*,/c", 1 },
		{ "rate_per_s", "20", 1 }, { "rate_per_s", "0.5", 1 }, { "rate_per_s", "0.001", 1 },
		{ "rate_per_s", "20.000", 1 }, { "rate_per_s", "100000", 1 },
		{ "rate_per_s", "0", 0 }, { "rate_per_s", "0.0001", 0 },
		{ "rate_per_s", "100001", 0 }, { "rate_per_s", "1e3", 0 },
		{ "rate_per_s", "-1", 0 }, { "burst", "40", 1 }, { "burst", "0", 0 },
		{ "burst", "1000001", 0 }, { "max_concurrent", "8", 1 },
		{ "max_concurrent", "0", 0 }, { "max_concurrent", "100001", 0 },
		{ "field_max", WD ":amount=1000.00", 1 },
		{ "field_max", WD ":amount=5, /api-gateway/make-order:amount=6", 1 },
		{ "field_max", WD ":amount=-1", 1 },
		{ "field_max", WD ":amount", 0 }, { "field_max", "api:amount=5", 0 },
		{ "field_max", WD ":=5", 0 }, { "field_max", WD ":amount=", 0 },
		{ "field_max", WD ":amount=abc", 0 }, { "field_max", WD ":amount=1e3", 0 },
		{ "field_max", WD ":amount=0010", 0 }, { "field_max", WD ":nonce=5", 0 },
		{ "field_max", WD "*:amount=5", 0 }, { "field_max", WD ":a.b=5", 0 },
		{ "field_max", WD ":amount=5," WD ":amount=6", 0 },
		{ "field_in", WD ":currency=USDT|USDC", 1 }, { "field_in", WD ":currency=USDT", 1 },
		{ "field_in", WD ":currency=", 0 }, { "field_in", WD ":currency=A||B", 0 },
		{ "field_in", WD ":currency=A|", 0 }, { "field_in", WD ":currency=A|A", 0 },
		{ "field_in", WD ":currency=A B", 0 }, { "field_in", "/x", 0 },
		{ "uidd", "1", 0 }, { "token", "abc", 0 },
	};
	const char	*why;
	size_t		 i;
	int		 rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = key1(t[i].key, t[i].value, &why);
		/* a refusal has a reason, and the reason never quotes the value */
		if ((rc == 0) == t[i].ok && (rc == 0 || (why != NULL &&
		    (strlen(t[i].value) < 8 || strstr(why, t[i].value) == NULL))))
			unit_passed++;
		else {
			unit_failed++;
			fprintf(stderr, "FAIL conf key %s = \"%s\": rc %d (%s)\n", t[i].key,
			    t[i].value, rc, why ? why : "-");
		}
	}
	CHECK(key1("uidd", "1", &why) == -1 && strcmp(why, "unknown key") == 0);
	CHECK(key1("uid", "1", &why) == 0 && why == NULL);
}

static void
test_conf_duplicates(void)
{
	struct policy	*p = policy_new();
	const char	*why = NULL, *rule;

	CHECK(policy_conf_key(p, "a", "uid", "1", 1, &why) == 0);
	CHECK(policy_conf_key(p, "a", "uid", "1", 2, &why) == -1);
	CHECK(why != NULL && strcmp(why, "duplicate key") == 0);
	CHECK(policy_conf_key(p, "a", "rate_per_s", "1", 3, &why) == 0);
	CHECK(policy_conf_key(p, "a", "rate_per_s", "2", 4, &why) == -1);
	/* a failed key still counts as given: a second line is a duplicate */
	CHECK(policy_conf_key(p, "b", "gid", "x", 5, &why) == -1);
	CHECK(policy_conf_key(p, "b", "gid", "5", 6, &why) == -1);
	CHECK(policy_ncallers(p) == 2);

	/* list keys add up over lines (repeated, or inih continuation lines) */
	CHECK(policy_conf_key(p, "a", "allow", "/api-gateway/make-order,", 7, &why) == 0);
	CHECK(policy_conf_key(p, "a", "allow", "/api-gateway/orders", 8, &why) == 0);
	CHECK(policy_conf_key(p, "a", "allow", "/api-gateway/orders", 9, &why) == -1);
	CHECK(why != NULL && strcmp(why, "a path is listed twice") == 0);
	/* a failed line keeps nothing, earlier lines stay */
	CHECK(policy_conf_key(p, "a", "allow", "/api-gateway/order, bad", 10, &why) == -1);
	CHECK(policy_check_request(policy_caller(p, 0), "m", "/api-gateway/orders", &rule) == 0);
	CHECK(policy_check_request(policy_caller(p, 0), "m", "/api-gateway/make-order",
	    &rule) == 0);
	CHECK(policy_check_request(policy_caller(p, 0), "m", "/api-gateway/order", &rule) == -1);
	CHECK(policy_conf_key(p, "a", "field_max", "/api-gateway/make-order:amount=5", 11,
	    &why) == 0);
	CHECK(policy_conf_key(p, "a", "field_max", "/api-gateway/orders:limit=5", 12, &why) == 0);
	CHECK(policy_conf_key(p, "a", "field_max", "/api-gateway/make-order:amount=6", 13,
	    &why) == -1);
	CHECK(policy_conf_key(p, "a", "field_in", "/api-gateway/make-order:currency=A", 14,
	    &why) == 0);
	CHECK(policy_conf_key(p, "a", "profiles", "merchant", 15, &why) == 0);
	CHECK(policy_conf_key(p, "a", "profiles", "partner", 16, &why) == 0);
	CHECK(policy_conf_key(p, "a", "profiles", "merchant", 17, &why) == -1);
	CHECK(policy_check_request(policy_caller(p, 0), "partner", "/api-gateway/orders",
	    &rule) == 0);
	CHECK(validate(p) == 1);	/* b has no identity; a is fine */
	policy_free(p);
}

static void
test_validate(void)
{
	struct policy	*p = load_standard();
	const char	*why;
	char		 h[65];

	CHECK(validate(p) == 0);
	CHECK(policy_ncallers(p) == 7);
	CHECK_STREQ(caller_name(policy_caller(p, 0)), "billing");
	CHECK(policy_caller(p, 7) == NULL);
	policy_free(p);

	p = policy_new();
	CHECK(policy_conf_key(p, "noid", "allow", "/api-gateway/orders", 3, &why) == 0);
	CHECK(validate(p) == 1 && strstr(lasterr, "no identity") != NULL);
	CHECK(strncmp(lasterr, "3 [caller.noid]", 15) == 0);
	policy_free(p);

	p = policy_new();	/* a value that failed is no identity either */
	CHECK(policy_conf_key(p, "bad", "uid", "abc", 1, &why) == -1);
	CHECK(validate(p) == 1 && strstr(lasterr, "no identity") != NULL);
	policy_free(p);

	p = policy_new();	/* an empty section is reported, not ignored */
	CHECK(policy_conf_section(p, "empty", 7, &why) == 0);
	CHECK(policy_ncallers(p) == 1);
	CHECK(validate(p) == 1 && strncmp(lasterr, "7 [caller.empty] no identity", 28) == 0);
	policy_free(p);

	policy_token_sha256("t", 1, h);
	p = policy_new();
	policy_conf_key(p, "mixed", "uid", "5", 1, &why);
	policy_conf_key(p, "mixed", "token_sha256", h, 2, &why);
	CHECK(validate(p) == 1 && strstr(lasterr, "cannot be combined") != NULL);
	policy_free(p);

	p = policy_new();
	policy_conf_key(p, "a", "uid", "5", 1, &why);
	policy_conf_key(p, "b", "uid", "5", 2, &why);
	policy_conf_key(p, "c", "uid", "5", 3, &why);
	policy_conf_key(p, "c", "gid", "9", 4, &why);	/* more specific: fine */
	policy_conf_key(p, "d", "gid", "9", 5, &why);	/* gid only: fine */
	policy_conf_key(p, "e", "uid", "5", 6, &why);
	policy_conf_key(p, "e", "gid", "9", 7, &why);	/* same pair as c */
	policy_conf_key(p, "f", "token_sha256", h, 8, &why);
	policy_conf_key(p, "g", "token_sha256", h, 9, &why);
	CHECK(validate(p) == 3);
	CHECK(strstr(lasterr, "[caller.g] same identity as [caller.f]") != NULL);
	policy_free(p);

	p = policy_new();
	policy_conf_key(p, "bad.name", "uid", "5", 1, &why);
	policy_conf_key(p, "x", "uid", "6", 2, &why);
	policy_conf_key(p, "x", "profiles", "merchant, nosuch", 3, &why);
	policy_conf_key(p, "x", "burst", "5", 4, &why);
	CHECK(validate(p) == 3);
	CHECK(strstr(lasterr, "burst: needs rate_per_s") != NULL);
	policy_free(p);

	p = policy_new();	/* field rules must name paths the caller may call */
	policy_conf_key(p, "x", "uid", "6", 1, &why);
	policy_conf_key(p, "x", "allow", "/api-gateway/make-order", 2, &why);
	policy_conf_key(p, "x", "field_max", "/api-gateway/make-order:amount=5", 3, &why);
	policy_conf_key(p, "x", "field_max", WD ":amount=5", 4, &why);
	CHECK(validate(p) == 1 && strstr(lasterr, "field_max: " WD " is not a path") != NULL);
	CHECK(strncmp(lasterr, "4 [caller.x]", 12) == 0);	/* the rule's own line */
	policy_free(p);
	p = policy_new();
	policy_conf_key(p, "x", "uid", "6", 1, &why);
	policy_conf_key(p, "x", "field_in", "/api-gateway/nosuch:currency=A", 3, &why);
	CHECK(validate(p) == 1 && strstr(lasterr, "API catalogue") != NULL);
	policy_free(p);
}

/* The (mutable) caller of a unix uid, or of a bearer token when uid is 0. */
static struct caller *
find(struct policy *p, unsigned uid, const char *token)
{
	struct policy_peer	peer = { uid != 0, uid, uid, 1, token,
	    token ? strlen(token) : 0 };

	return policy_identify(p, &peer);
}

/* The caller a peer is identified as ("" = none). */
static const char *
who(struct policy *p, int is_unix, unsigned uid, unsigned gid, const char *bearer)
{
	struct policy_peer	 peer = { is_unix, uid, gid, 4242, bearer,
	    bearer ? strlen(bearer) : 0 };
	struct caller		*c = policy_identify(p, &peer);

	return c ? caller_name(c) : "";
}

static void
test_identify(void)
{
	struct policy		*p = load_standard(), *empty = policy_new();
	struct policy_peer	 peer;
	const char		*tok;
	char			 buf[80], longer[80];
	size_t			 toklen;

	CHECK_STREQ(who(p, 1, 1001, 1001, NULL), "billing");
	CHECK_STREQ(who(p, 1, 1002, 7, NULL), "payouts");
	CHECK_STREQ(who(p, 1, 1005, 50, NULL), "ops");		/* by gid */
	CHECK_STREQ(who(p, 1, 1003, 50, NULL), "opsadmin");	/* uid+gid beats gid */
	CHECK_STREQ(who(p, 1, 1003, 51, NULL), "");		/* needs both */
	CHECK_STREQ(who(p, 1, 9999, 9999, NULL), "");
	CHECK_STREQ(who(p, 1, 0, 0, NULL), "");
	CHECK_STREQ(who(p, 1, 1001, 1001, TOKEN_REPORTS), "billing");	/* token ignored */
	CHECK_STREQ(who(p, 1, 9999, 9999, TOKEN_REPORTS), "");	/* no token on unix */
	CHECK_STREQ(who(p, 0, 0, 0, TOKEN_REPORTS), "reports");
	CHECK_STREQ(who(p, 0, 0, 0, TOKEN_BATCH), "batch");
	CHECK_STREQ(who(p, 0, 0, 0, "rep-wrong"), "");
	CHECK_STREQ(who(p, 0, 0, 0, TOKEN_REPORTS "\n"), "");
	CHECK_STREQ(who(p, 0, 0, 0, NULL), "");
	CHECK_STREQ(who(p, 0, 0, 0, ""), "");
	CHECK_STREQ(who(p, 0, 1001, 1001, NULL), "");		/* uid means nothing on TCP */
	CHECK_STREQ(who(empty, 1, 1001, 1001, NULL), "");
	CHECK(policy_identify(p, NULL) == NULL);
	CHECK(caller_is_token(find(p, 0, TOKEN_REPORTS)) == 1);
	CHECK(caller_is_token(find(p, 1001, NULL)) == 0);

	/* the token need not be NUL-terminated */
	snprintf(longer, sizeof(longer), "%sXYZ", TOKEN_REPORTS);
	peer = (struct policy_peer){ 0, 0, 0, 0, longer, strlen(TOKEN_REPORTS) };
	CHECK(policy_identify(p, &peer) != NULL);
	peer.bearer_len++;
	CHECK(policy_identify(p, &peer) == NULL);

	peer = (struct policy_peer){ 1, 1005, 50, 77, NULL, 0 };
	caller_describe(policy_identify(p, &peer), &peer, buf, sizeof(buf));
	CHECK_STREQ(buf, "gid=50,uid=1005");
	peer.uid = 1003;
	caller_describe(policy_identify(p, &peer), &peer, buf, sizeof(buf));
	CHECK_STREQ(buf, "uid=1003,gid=50");
	peer = (struct policy_peer){ 1, 1001, 1001, 77, NULL, 0 };
	caller_describe(policy_identify(p, &peer), &peer, buf, sizeof(buf));
	CHECK_STREQ(buf, "uid=1001");
	caller_describe(NULL, &peer, buf, sizeof(buf));
	CHECK_STREQ(buf, "uid=1001,gid=1001");
	peer = (struct policy_peer){ 0, 0, 0, 0, TOKEN_REPORTS, strlen(TOKEN_REPORTS) };
	caller_describe(policy_identify(p, &peer), &peer, buf, sizeof(buf));
	policy_token_sha256(TOKEN_REPORTS, strlen(TOKEN_REPORTS), longer);
	CHECK(strncmp(buf, "token=", 6) == 0 && strlen(buf) == 22 &&
	    strncmp(buf + 6, longer, 16) == 0);
	peer.bearer = "nope";
	caller_describe(NULL, &peer, buf, sizeof(buf));
	CHECK_STREQ(buf, "token=unknown");	/* an unknown token is not fingerprinted */
	caller_describe(policy_caller(p, 0), NULL, buf, 5);
	CHECK_STREQ(buf, "uid=");		/* truncated, terminated */

	policy_token_sha256("abc", 3, buf);
	CHECK_STREQ(buf, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	CHECK(policy_bearer("Bearer abc", 10, &tok, &toklen) == 0 && toklen == 3 &&
	    memcmp(tok, "abc", 3) == 0);
	CHECK(policy_bearer("bearer   a.b-c_d~e+f/g==", 24, &tok, &toklen) == 0 &&
	    toklen == 15);
	CHECK(policy_bearer("Basic YWxhZGRpbjpvcGVuc2VzYW1l", 30, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearer", 6, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearer ", 7, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearer abc def", 14, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearer a=b", 10, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearerabc", 9, &tok, &toklen) == -1);
	CHECK(policy_bearer("Bearer ab\0c", 11, &tok, &toklen) == -1);
	CHECK(policy_token_valid(TOKEN_REPORTS, strlen(TOKEN_REPORTS)) == 1);
	CHECK(policy_token_valid("abc==", 5) == 1);
	CHECK(policy_token_valid("==", 2) == 0);
	CHECK(policy_token_valid("", 0) == 0);
	CHECK(policy_token_valid("abc\n", 4) == 0);
	CHECK(policy_token_valid("a b", 3) == 0);
	{
		char	big[POLICY_BEARER_MAX + 1];

		memset(big, 'a', sizeof(big));
		CHECK(policy_token_valid(big, POLICY_BEARER_MAX) == 1);
		CHECK(policy_token_valid(big, POLICY_BEARER_MAX + 1) == 0);
	}
	policy_free(p);
	policy_free(empty);
}

/* The rule refusing (caller, profile, path), or "ok". */
static const char *
path_rule(struct policy *p, const char *caller, const char *profile, const char *path)
{
	const struct caller	*c = NULL;
	const char		*rule = NULL;
	size_t			 i;

	for (i = 0; i < policy_ncallers(p); i++)
		if (strcmp(caller_name(policy_caller(p, i)), caller) == 0)
			c = policy_caller(p, i);
	if (c == NULL)
		return "no such caller";
	if (policy_check_request(c, profile, path, &rule) == 0)
		return rule == NULL ? "ok" : "rule set on success";
	return rule;
}

static void
test_paths(void)
{
	static const struct {
		const char	*caller, *profile, *path, *want;
	} t[] = {
		{ "billing", "merchant", "/api-gateway/make-invoice", "ok" },
		{ "billing", "merchant", "/api-gateway/get-invoice", "ok" },
		{ "billing", "partner", "/api-gateway/make-invoice", POLICY_R_PROFILE },
		{ "billing", NULL, "/api-gateway/make-invoice", POLICY_R_PROFILE },
		{ "billing", "merchant", "/api-gateway/orders", "ok" },
		{ "billing", "merchant", "/api-gateway/orders-list", POLICY_R_CATALOGUE },
		{ "billing", "merchant", "/api-gateway/orders/x", POLICY_R_CATALOGUE },
		{ "billing", "merchant", "/api-gateway/order", POLICY_R_ALLOW },
		{ "billing", "merchant", "/api-gateway/get-invoices", POLICY_R_ALLOW },
		{ "billing", "merchant", WD, POLICY_R_ALLOW },
		{ "payouts", "merchant", WD, "ok" },
		{ "payouts", "partner", WD, "ok" },		/* no profiles key: any */
		{ "payouts", NULL, WD, "ok" },
		{ "payouts", "merchant", WD "/", POLICY_R_ALLOW },	/* another path */
		{ "payouts", "merchant", WD "-async", POLICY_R_ALLOW },
		{ "payouts", "merchant", "/API-GATEWAY/MAKE-WITHDRAWAL", POLICY_R_ALLOW },
		{ "ops", "merchant", "/partner/api/get-users", "ok" },	/* no allow: catalogue */
		{ "ops", "merchant", WD, "ok" },
		{ "ops", "merchant", WD "/", POLICY_R_CATALOGUE },
		{ "ops", "merchant", "/api-gateway/nosuch", POLICY_R_CATALOGUE },
		{ "ops", "merchant", "/", POLICY_R_CATALOGUE },
		{ "reports", "merchant", "/api-gateway/get-invoices", "ok" },
		{ "reports", "merchant", "/api-gateway/get-invoice", POLICY_R_ALLOW },
		{ "reports", "merchant", "/api-gateway/custom-thing", "ok" },	/* named exactly */
		{ "reports", "merchant", "/api-gateway/custom-thing2", POLICY_R_ALLOW },
		{ "reports", "merchant", "/api-gateway/beta/report", "ok" },	/* dedicated prefix */
		{ "reports", "merchant", "/api-gateway/beta/", "ok" },
		{ "reports", "merchant", "/api-gateway/beta", POLICY_R_ALLOW },
		{ "wide", "merchant", "/api-gateway/make-order", "ok" },
		{ "wide", "partner", "/partner/api/create-user", "ok" },
		{ "wide", "merchant", "/api-gateway/nosuch", POLICY_R_CATALOGUE },	/* a catch-all */
		{ "wide", "merchant", WD "/", POLICY_R_CATALOGUE },
		{ "wide", "merchant", "/api-gateway//orders", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/./orders", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/../api-gateway/orders", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/%6frders", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/orders?x=1", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/orders#f", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/orders\\", POLICY_R_CANON },
		{ "wide", "merchant", "/api-gateway/or ders", POLICY_R_CANON },
		{ "wide", "merchant", "api-gateway/orders", POLICY_R_CANON },
		{ "wide", "merchant", "", POLICY_R_CANON },
	};
	struct policy	*p = load_standard();
	const char	*rule = NULL;
	size_t		 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *got = path_rule(p, t[i].caller, t[i].profile, t[i].path);
		if (strcmp(got, t[i].want) == 0)
			unit_passed++;
		else {
			unit_failed++;
			fprintf(stderr, "FAIL path %s %s %s: got \"%s\", want \"%s\"\n",
			    t[i].caller, t[i].profile ? t[i].profile : "(none)", t[i].path,
			    got, t[i].want);
		}
	}
	CHECK(policy_check_request(policy_caller(p, 0), "merchant", NULL, &rule) == -1);
	policy_free(p);
}

/* The rule refusing body on WD for payouts ("ok" if allowed); detail checked. */
static const char *
fields(struct policy *p, const char *path, const char *body, size_t len)
{
	static char	 last[256];
	const char	*rule = NULL;
	char		*detail = NULL;
	int		 rc;

	rc = policy_check_fields(policy_caller(p, 1), path, body, len, &rule, &detail);
	snprintf(last, sizeof(last), "%s", detail ? detail : "");
	free(detail);
	if (rc == 0)
		return rule == NULL && last[0] == '\0' ? "ok" : "rule or detail on success";
	return last[0] != '\0' ? rule : "no detail";
}

#define F(body)	fields(p, WD, (body), strlen(body))

/* A withdrawal body whose amount is pre, n times ch, post (in buf[256]). */
static const char *
digits(char *buf, const char *pre, char ch, int n, const char *post)
{
	int	len;

	len = snprintf(buf, 256, "{\"currency\":\"USDT\",\"amount\":%s", pre);
	memset(buf + len, ch, (size_t)n);
	snprintf(buf + len + n, (size_t)(256 - len - n), "%s}", post);
	return buf;
}

static void
test_fields(void)
{
	static const struct {
		const char	*amount;	/* JSON text of the member's value */
		const char	*want;
	} amounts[] = {
		{ "\"10.50\"", "ok" }, { "\"10.5\"", "ok" }, { "10.5", "ok" },
		{ "\"1000.00\"", "ok" }, { "\"1000\"", "ok" }, { "1000", "ok" },
		{ "1000.0000000", "ok" }, { "\"0\"", "ok" }, { "\"0.5\"", "ok" },
		{ "\"-5\"", "ok" }, { "-5", "ok" }, { "\"-0\"", "ok" }, { "-0.0", "ok" },
		{ "\"999.999999999999999999999999999999\"", "ok" },
		{ "\"1000.001\"", POLICY_R_MAX }, { "1000.001", POLICY_R_MAX },
		{ "\"1000.01\"", POLICY_R_MAX }, { "\"1001\"", POLICY_R_MAX },
		{ "\"10000\"", POLICY_R_MAX }, { "1000.0000000000000000000000000001", POLICY_R_MAX },
		{ "1e3", POLICY_R_DECIMAL }, { "\"1e3\"", POLICY_R_DECIMAL },
		{ "1E3", POLICY_R_DECIMAL }, { "1.5e-3", POLICY_R_DECIMAL },
		{ "\"0010\"", POLICY_R_DECIMAL }, { "\"\"", POLICY_R_DECIMAL },
		{ "\"10.\"", POLICY_R_DECIMAL }, { "\".5\"", POLICY_R_DECIMAL },
		{ "\"+5\"", POLICY_R_DECIMAL }, { "\" 5\"", POLICY_R_DECIMAL },
		{ "\"5 \"", POLICY_R_DECIMAL }, { "\"0x10\"", POLICY_R_DECIMAL },
		{ "\"1,000\"", POLICY_R_DECIMAL }, { "\"--5\"", POLICY_R_DECIMAL },
		{ "\"-\"", POLICY_R_DECIMAL }, { "\"NaN\"", POLICY_R_DECIMAL },
		{ "\"Infinity\"", POLICY_R_DECIMAL }, { "\"\\u0031\"", "ok" },
		{ "true", POLICY_R_DECIMAL }, { "null", POLICY_R_DECIMAL },
		{ "{}", POLICY_R_DECIMAL }, { "[\"5\"]", POLICY_R_DECIMAL },
		{ "{\"amount\":\"5\"}", POLICY_R_DECIMAL },
	};
	struct policy	*p = load_standard();
	char		 body[256];
	size_t		 i;
	const char	*got;

	for (i = 0; i < sizeof(amounts) / sizeof(amounts[0]); i++) {
		snprintf(body, sizeof(body), "{\"currency\":\"USDT\",\"amount\":%s,"
		    "\"address\":\"T9yD\"}", amounts[i].amount);
		got = F(body);
		if (strcmp(got, amounts[i].want) == 0)
			unit_passed++;
		else {
			unit_failed++;
			fprintf(stderr, "FAIL amount %s: got \"%s\", want \"%s\"\n",
			    amounts[i].amount, got, amounts[i].want);
		}
	}
	/* at most POLICY_MAX_DIGITS digits, however they are split */
	CHECK_STREQ(F(digits(body, "\"", '9', POLICY_MAX_DIGITS, "\"")), POLICY_R_MAX);
	CHECK_STREQ(F(digits(body, "\"", '9', POLICY_MAX_DIGITS + 1, "\"")), POLICY_R_DECIMAL);
	CHECK_STREQ(F(digits(body, "0.", '0', POLICY_MAX_DIGITS - 2, "1")), "ok");
	CHECK_STREQ(F(digits(body, "0.", '0', POLICY_MAX_DIGITS - 1, "1")), POLICY_R_DECIMAL);
	CHECK_STREQ(F(digits(body, "-", '9', POLICY_MAX_DIGITS, "")), "ok");

	/* the detail names the field and the configured bound, never the value */
	CHECK_STREQ(F("{\"amount\":\"1000.001\",\"currency\":\"USDT\"}"), POLICY_R_MAX);
	{
		const char	*rule;
		char		*detail = NULL;

		const char	*b1 = "{\"amount\":\"7777.5\",\"currency\":\"USDT\","
		    "\"memo\":\"secret-memo\"}";
		const char	*b2 = "{\"amount\":\"5\",\"currency\":\"XRP-secret\"}";

		CHECK(policy_check_fields(policy_caller(p, 1), WD, b1, strlen(b1), &rule,
		    &detail) == -1);
		CHECK_STREQ(detail, "amount exceeds 1000.00");
		free(detail);
		detail = NULL;
		CHECK(policy_check_fields(policy_caller(p, 1), WD, b2, strlen(b2), &rule,
		    &detail) == -1);
		CHECK_STREQ(detail, "currency must be a string, one of USDT|USDC");
		free(detail);
		detail = NULL;
		b2 = "{\"amount\":\"5\",\"currency\":\"USDT\",\"amount\":\"50000\"}";
		CHECK(policy_check_fields(policy_caller(p, 1), WD, b2, strlen(b2), &rule,
		    &detail) == -1);
		CHECK_STREQ(rule, POLICY_R_DUP);
		CHECK_STREQ(detail, "the body names a top-level member more than once");
		free(detail);
	}

	CHECK_STREQ(F("{\"currency\":\"USDT\"}"), POLICY_R_MISSING);
	CHECK_STREQ(F("{\"amount\":\"5\"}"), POLICY_R_MISSING);
	CHECK_STREQ(F("{}"), POLICY_R_MISSING);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDC\"}"), "ok");
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"usdt\"}"), POLICY_R_IN);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT \"}"), POLICY_R_IN);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"BTC\"}"), POLICY_R_IN);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":5}"), POLICY_R_IN);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":[\"USDT\"]}"), POLICY_R_IN);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"US\\u0044T\"}"), "ok");
	/* duplicates are ambiguous: the ruled field, or any other top-level member */
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\",\"amount\":\"5000\"}"),
	    POLICY_R_DUP);
	CHECK_STREQ(F("{\"amount\":\"5000\",\"currency\":\"USDT\",\"amount\":\"5\"}"),
	    POLICY_R_DUP);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\",\"am\\u006funt\":\"5\"}"),
	    POLICY_R_DUP);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\",\"a\":1,\"a\":2}"), POLICY_R_DUP);
	CHECK_STREQ(F("{\"am\\u006funt\":\"5000\",\"currency\":\"USDT\"}"), POLICY_R_MAX);
	/* only top-level members count */
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\",\"meta\":{\"amount\":\"9999\","
	    "\"amount\":1,\"currency\":\"BTC\"}}"), "ok");
	CHECK_STREQ(F("{\"meta\":{\"amount\":\"5\",\"currency\":\"USDT\"}}"), POLICY_R_MISSING);
	CHECK_STREQ(F("{\"list\":[{\"amount\":\"5\"}],\"amount\":\"6\",\"currency\":\"USDT\"}"),
	    "ok");
	/* what is not one object */
	CHECK_STREQ(F("[{\"amount\":\"5\",\"currency\":\"USDT\"}]"), POLICY_R_BODY);
	CHECK_STREQ(F("\"amount\""), POLICY_R_BODY);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\""), POLICY_R_BODY);
	CHECK_STREQ(F("{\"amount\":\"5\",\"currency\":\"USDT\"} {}"), POLICY_R_BODY);
	CHECK_STREQ(F(""), POLICY_R_BODY);
	CHECK_STREQ(fields(p, WD, "{\"amount\":\"5\",\"currency\":\"USDT\"}", 25),
	    POLICY_R_BODY);		/* length, not NUL, ends the body */
	/* no rule for the path: not even parsed */
	CHECK_STREQ(fields(p, "/api-gateway/get-invoice", "not json", 8), "ok");
	CHECK_STREQ(fields(p, WD "/", "not json", 8), "ok");
	CHECK_STREQ(fields(p, NULL, "{}", 2), "ok");
	policy_free(p);
}

/* policy_decimal_cmp as a sign, or 9 for "not a decimal". */
static int
dcmp(const char *a, const char *b)
{
	int	c;

	if (policy_decimal_cmp(a, strlen(a), b, strlen(b), &c) == -1)
		return 9;
	return c < 0 ? -1 : c > 0;
}

static void
test_decimals(void)
{
	CHECK(dcmp("10.50", "10.5") == 0);
	CHECK(dcmp("1000.00", "1000") == 0);
	CHECK(dcmp("1000.001", "1000.00") == 1);
	CHECK(dcmp("999.9999", "1000") == -1);
	CHECK(dcmp("0.1", "0.09") == 1);
	CHECK(dcmp("0.09", "0.1") == -1);
	CHECK(dcmp("123", "45") == 1);
	CHECK(dcmp("-5", "0") == -1);
	CHECK(dcmp("-0", "0") == 0);
	CHECK(dcmp("-0.000", "0.0") == 0);
	CHECK(dcmp("-10", "-9.99") == -1);
	CHECK(dcmp("-9.99", "-10") == 1);
	CHECK(dcmp("-1", "-1.0") == 0);
	CHECK(dcmp("1e3", "1") == 9);
	CHECK(dcmp("1", "") == 9);
	CHECK(dcmp("00", "0") == 9);
}

static void
test_rate(void)
{
	struct policy	*p = load_standard();
	struct caller	*billing = find(p, 1001, NULL);
	struct caller	*payouts = find(p, 1002, NULL);
	struct caller	*batch = find(p, 0, TOKEN_BATCH);
	struct policy	*p2;
	unsigned	 ra = 0;
	int		 i, ok = 0;

	/* billing: 20/s, burst 40; the bucket starts full */
	for (i = 0; i < 40; i++)
		ok += caller_rate_take(billing, 1000, &ra) == 0;
	CHECK(ok == 40);
	CHECK(caller_rate_take(billing, 1000, &ra) == -1 && ra == 1);
	CHECK(caller_rate_take(billing, 1049, &ra) == -1);
	CHECK(caller_rate_take(billing, 1050, &ra) == 0);	/* 1 token per 50 ms */
	CHECK(caller_rate_take(billing, 1050, &ra) == -1);
	CHECK(caller_rate_take(billing, 900, &ra) == -1);	/* clock went back: no refill */
	for (i = 0, ok = 0; i < 50; i++)			/* long idle: capped at burst */
		ok += caller_rate_take(billing, 1000000000ULL, &ra) == 0;
	CHECK(ok == 40);

	/* batch: 0.5/s, burst defaults to 1 */
	CHECK(caller_rate_take(batch, 5000, &ra) == 0);
	CHECK(caller_rate_take(batch, 5000, &ra) == -1 && ra == 2);
	CHECK(caller_rate_take(batch, 6001, &ra) == -1 && ra == 1);
	CHECK(caller_rate_take(batch, 6999, &ra) == -1 && ra == 1);
	CHECK(caller_rate_take(batch, 7000, &ra) == 0);

	/* no rate_per_s: unlimited */
	for (i = 0, ok = 0; i < 1000; i++)
		ok += caller_rate_take(payouts, 0, &ra) == 0;
	CHECK(ok == 1000);

	/* a reload carries the bucket over instead of refilling it */
	p2 = load_standard();
	policy_inherit(p2, p);
	CHECK(caller_rate_take(find(p2, 0, TOKEN_BATCH), 7000, &ra) == -1);
	CHECK(caller_rate_take(find(p2, 1001, NULL), 1000000000ULL, &ra) == -1);
	CHECK(caller_rate_take(find(p2, 1001, NULL), 1000000050ULL, &ra) == 0);
	policy_free(p2);
	policy_free(p);
}

static void
test_concurrency(void)
{
	struct policy	*p = load_standard();
	struct caller	*billing = find(p, 1001, NULL);
	struct caller	*payouts = find(p, 1002, NULL);
	int		 i, ok = 0;

	for (i = 0; i < 8; i++)
		ok += caller_enter(billing) == 0;
	CHECK(ok == 8 && caller_active(billing) == 8);
	CHECK(caller_enter(billing) == -1 && caller_active(billing) == 8);
	caller_leave(billing);
	CHECK(caller_enter(billing) == 0);
	CHECK(caller_enter(billing) == -1);
	for (i = 0; i < 20; i++)
		caller_leave(billing);
	CHECK(caller_active(billing) == 0);
	for (i = 0, ok = 0; i < 1000; i++)
		ok += caller_enter(payouts) == 0;
	CHECK(ok == 1000);
	policy_free(p);
}

int
main(void)
{
	test_conf_keys();
	test_conf_duplicates();
	test_validate();
	test_identify();
	test_paths();
	test_fields();
	test_decimals();
	test_rate();
	test_concurrency();
	UNIT_END("test_policy");
}
