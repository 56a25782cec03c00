/* fuzz-sources: proxy/conf.c proxy/redact.c proxy/secret.c proxy/policy.c proxy/catalogue.c proxy/yarena.c proxy/fmt.c */
/* fuzz-libs: -linih -lcrypto -lyajl */
/*
 * fuzz_conf.c — libFuzzer target for the config parser: the input is config
 * text for conf_load_string(), then conf_free() (leaks are crashes too).
 * Beyond the sanitizers it checks (abort if not):
 * - a conf comes back exactly when no problem was reported;
 * - every problem line starts with "NAME:" (the file name);
 * - a loaded conf is whole: 1..CONF_MAX_PROFILES profiles, each with a
 *   public key, a secret that is a secret source and 1..CONF_MAX_ROUTES
 *   routes starting with '/'; upstream host and port set, port 1..65535;
 * - conf_route() of every route selects the profile that owns it (routes
 *   are unique across profiles, and a route is its own longest prefix).
 *
 * tests/fuzz/run.sh builds and runs it; by hand:
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy tests/fuzz/fuzz_conf.c \
 *     proxy/conf.c proxy/redact.c proxy/secret.c -linih -lcrypto -o /tmp/fuzz_conf
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "secret.h"

#define FUZZ_NAME	"fuzz.ini"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Abort unless cond: the fuzzer reports it as a crash. */
static void
fuzz_assert(int cond)
{
	if (!cond)
		abort();
}

/* A loaded conf must be complete and self-consistent. */
static void
fuzz_check_conf(const struct conf *c)
{
	const struct conf_profile	*pr;
	size_t				 i, j, idx;
	long				 port;
	char				*end;

	fuzz_assert(c->nprofiles >= 1 && c->nprofiles <= CONF_MAX_PROFILES);
	fuzz_assert(c->up_host != NULL && *c->up_host != '\0' && c->up_port != NULL);
	port = strtol(c->up_port, &end, 10);
	fuzz_assert(*end == '\0' && port >= 1 && port <= 65535);
	fuzz_assert(c->state_dir != NULL && c->state_dir[0] == '/');
	for (i = 0; i < c->nprofiles; i++) {
		pr = &c->profiles[i];
		fuzz_assert(pr->name != NULL && *pr->name != '\0');
		fuzz_assert(pr->public_key != NULL && *pr->public_key != '\0');
		fuzz_assert(pr->secret != NULL && secret_is_source(pr->secret));
		fuzz_assert(pr->nroutes >= 1 && pr->nroutes <= CONF_MAX_ROUTES);
		for (j = 0; j < pr->nroutes; j++) {
			fuzz_assert(pr->routes[j][0] == '/');
			idx = (size_t)-1;
			fuzz_assert(conf_route(c, pr->routes[j], strlen(pr->routes[j]),
			    &idx) == pr && idx == i);
		}
	}
}

/* Same answer whatever the environment the fuzzer was started in. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	unsetenv("STATE_DIRECTORY");
	return 0;
}

/* One input: parse it as a config file, check the result, free everything. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errs	 errs = { NULL, 0 };
	struct conf		*c;
	char			*text;
	size_t			 i;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';	/* the text ends at the first NUL, like a C string */
	c = conf_load_string(text, FUZZ_NAME, &errs);
	fuzz_assert((c != NULL) == (errs.n == 0));
	for (i = 0; i < errs.n; i++)
		fuzz_assert(strncmp(errs.line[i], FUZZ_NAME ":", sizeof(FUZZ_NAME)) == 0);
	if (c != NULL)
		fuzz_check_conf(c);
	conf_free(c);
	conf_errs_clear(&errs);
	free(text);
	return 0;
}
