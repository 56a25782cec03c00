/* fuzz-sources: proxy/vault.c proxy/upstream.c proxy/httpp.c proxy/secret.c proxy/log.c proxy/wipe.c proxy/fmt.c */
/* fuzz-libs: -levent_openssl -levent_core -levent_extra -lssl -lcrypto -lyajl */
/*
 * fuzz_vault.c — libFuzzer target for the parsers of vault.c.
 *
 * The input is a Vault answer for vault_kv_parse() (as is: not
 * NUL-terminated), and, as a C string, a secret source for
 * vault_parse_source().  These must hold (abort if not):
 * - an accepted answer has a version >= 1, at most VAULT_MAX_FIELDS fields,
 *   distinct names of at most VAULT_MAX_NAME bytes, string values of at most
 *   VAULT_MAX_VALUE bytes, and equals itself;
 * - parsing is deterministic: the same input gives the same verdict, reason,
 *   version and fields;
 * - a rejected answer has version 0 and a reason;
 * - an accepted source splits back into exactly the input text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"
#include "vault.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_kv(const struct vault_kv *kv, unsigned long long ver)
{
	size_t		 i, j, n = vault_kv_count(kv);
	struct secret	*s;
	const char	*name;

	if (ver == 0 || n > VAULT_MAX_FIELDS || !vault_kv_equal(kv, kv))
		abort();
	for (i = 0; i < n; i++) {
		if ((name = vault_kv_name(kv, i)) == NULL || strlen(name) > VAULT_MAX_NAME)
			abort();
		for (j = 0; j < i; j++)
			if (strcmp(name, vault_kv_name(kv, j)) == 0)
				abort();
		if ((s = vault_kv_field(kv, name)) != NULL) {
			if (s->len > VAULT_MAX_VALUE || s->p[s->len] != '\0')
				abort();
			secret_free(s);
		}
	}
	if (vault_kv_name(kv, n) != NULL)
		abort();
}

static void
fuzz_kv(const uint8_t *data, size_t size)
{
	struct vault_kv		*a, *b;
	unsigned long long	 va = 99, vb = 99;
	const char		*wa = NULL, *wb = NULL;

	a = vault_kv_parse((const char *)data, size, &va, &wa);
	b = vault_kv_parse((const char *)data, size, &vb, &wb);
	if ((a == NULL) != (b == NULL) || va != vb)
		abort();
	if (a == NULL) {
		if (va != 0 || wa == NULL || wb == NULL || strcmp(wa, wb) != 0)
			abort();
	} else {
		check_kv(a, va);
		if (!vault_kv_equal(a, b) || !vault_kv_equal(b, a))
			abort();
	}
	vault_kv_free(a);
	vault_kv_free(b);
}

static void
fuzz_source(const uint8_t *data, size_t size)
{
	char	*src, *m, *p, *f, *back;
	size_t	 n;

	if ((src = malloc(size + 1)) == NULL)
		return;
	memcpy(src, data, size);
	src[size] = '\0';
	if (vault_parse_source(src, &m, &p, &f) == 0) {
		n = 6 + strlen(m) + 1 + strlen(p) + 1 + strlen(f) + 1;
		if ((back = malloc(n)) == NULL)
			abort();
		snprintf(back, n, "vault:%s/%s#%s", m, p, f);
		if (strcmp(back, src) != 0 || strchr(m, '/') != NULL || *m == '\0' ||
		    *p == '\0' || *f == '\0')
			abort();
		free(back);
		free(m);
		free(p);
		free(f);
	} else if (m != NULL || p != NULL || f != NULL)
		abort();
	free(src);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_kv(data, size);
	fuzz_source(data, size);
	return 0;
}
