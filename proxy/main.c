/*
 * main.c — command line of ocp-proxy.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_verify.h"
#include "conf.h"
#include "log.h"
#include "ocp-proxy.h"
#include "policy.h"
#include "secret.h"
#include "signer.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: ocp-proxy [-c FILE]            run in the foreground, log to stderr\n"
	    "       ocp-proxy -t [-c FILE]         check the config and load every key\n"
	    "       ocp-proxy -c FILE audit-verify AUDIT...  verify an audit file or a rotated\n"
	    "                                    series (oldest first) against its chain\n"
	    "       ocp-proxy -c FILE audit-fingerprint      keyed fingerprint of the value on stdin\n"
	    "       ocp-proxy hash-token           token on stdin -> token_sha256 line for a caller\n"
	    "       ocp-proxy -V | -h | --schema   version | this help | every config key\n"
	    "                                    (also --version, --help, --config FILE)\n"
	    "default config: %s\n", CONF_DEFAULT_PATH);
}

static void
scrub_log_line(char *line, size_t len)
{
	(void)secret_guard_scrub(line, len);
}

/* Load the config and its audit chain key only (offline commands). */
static struct conf *
load_for_audit(struct proxy *px, const char *path)
{
	struct conf_errs	 errs = { NULL, 0 };
	struct conf		*c;
	size_t			 i;

	if ((c = conf_load(path, &errs)) != NULL && proxy_load_audit_key(px, c, &errs) == -1) {
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && px->audit_key == NULL) {
		conf_errs_add(&errs, "%s: [audit] chain_key: not set", path);
		conf_free(c);
		c = NULL;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.line[i]);
	conf_errs_clear(&errs);
	return c;
}

/* ocp-proxy -c CONF audit-verify FILE... */
static int
cmd_audit_verify(struct proxy *px, const char *path, int argc, char **argv)
{
	struct audit_verify_trail trail;
	struct conf	*c;
	char		 tail[4096];
	int		 rc;

	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if ((c = load_for_audit(px, path)) == NULL)
		return 2;
	/* where the files end is checked against the state dir's tail copy */
	trail.live = c->audit_path;
	trail.tail = (size_t)snprintf(tail, sizeof(tail), "%s/%s", c->state_dir,
	    OCP_STATE_TAIL) < sizeof(tail) ? tail : NULL;
	rc = audit_verify_trail(px->audit_key, argv, argc, &trail, stdout);
	proxy_free_audit_key(px);
	conf_free(c);
	return rc;
}

/* ocp-proxy -c CONF audit-fingerprint < value */
static int
cmd_audit_fingerprint(struct proxy *px, const char *path)
{
	struct conf	*c;
	struct secret	*v;
	char		 buf[65536], out[32];
	size_t		 n;

	if ((c = load_for_audit(px, path)) == NULL)
		return 2;
	n = fread(buf, 1, sizeof(buf), stdin);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	v = secret_from(buf, n);
	explicit_bzero(buf, sizeof(buf));
	if (v == NULL)
		return 2;
	audit_verify_fingerprint(px->audit_key, v->p, v->len, out);
	printf("%s\n", out);
	secret_free(v);
	proxy_free_audit_key(px);
	conf_free(c);
	return 0;
}

/* ocp-proxy hash-token < token: the line to paste into a [caller.NAME] section. */
static int
cmd_hash_token(void)
{
	char	buf[POLICY_BEARER_MAX + 2], hex[65];
	size_t	n = fread(buf, 1, sizeof(buf), stdin);

	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (!policy_token_valid(buf, n)) {
		explicit_bzero(buf, sizeof(buf));
		fprintf(stderr, "hash-token: the token must be 1-%d characters of letters, digits "
		    "and -._~+/ (then optional '=' padding)\n", POLICY_BEARER_MAX);
		return 1;
	}
	policy_token_sha256(buf, n, hex);
	explicit_bzero(buf, sizeof(buf));
	printf("token_sha256 = %s\n", hex);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	struct proxy	 px;
	const char	*conf = CONF_DEFAULT_PATH;
	int		 ch, check = 0, rc;

	log_init("ocp-proxy");
	if (argc == 2 && strcmp(argv[1], "--schema") == 0) {
		conf_dump_schema();
		return 0;
	}
	while ((ch = getopt_long(argc, argv, "+c:thV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("ocp-proxy %s\n", OCP_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	secret_harden_process();
	log_set_scrub(scrub_log_line);
	signal(SIGXFSZ, SIG_IGN);	/* RLIMIT_FSIZE: get EFBIG, fail closed */
	memset(&px, 0, sizeof(px));
	if (optind < argc && strcmp(argv[optind], "audit-verify") == 0)
		return cmd_audit_verify(&px, conf, argc - optind - 1, argv + optind + 1);
	if (optind < argc && strcmp(argv[optind], "hash-token") == 0)
		return cmd_hash_token();
	if (optind < argc && strcmp(argv[optind], "audit-fingerprint") == 0)
		return cmd_audit_fingerprint(&px, conf);
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	log_libevent();
	if (!check && proxy_base_new(&px) == -1)
		fatalx("cannot create the event loop");
	if (proxy_init(&px, conf, check) == -1) {	/* one line per problem printed */
		proxy_free(&px);
		return 1;
	}
	if (check) {
		size_t nvault = 0, i;

		for (i = 0; i < px.gen->conf->nprofiles; i++)
			if (strncmp(px.gen->conf->profiles[i].secret, "vault:", 6) == 0)
				nvault++;
		/* every key was read, those from Vault too (fetched and checked) */
		if (nvault == 0)
			printf("%s: configuration OK, %zu profile(s), every key loaded\n", conf,
			    px.gen->conf->nprofiles);
		else
			printf("%s: configuration OK, %zu profile(s), %zu key(s) loaded, %zu of "
			    "them from Vault\n", conf, px.gen->conf->nprofiles,
			    px.gen->conf->nprofiles, nvault);
		if (policy_ncallers(px.gen->conf->policy) == 0)
			printf(OCP_NO_CALLERS "\n", px.gen->conf->listen_address);
		else
			printf("%zu named caller(s); every other process is refused (401)\n",
			    policy_ncallers(px.gen->conf->policy));
		proxy_free(&px);
		return 0;
	}
	proxy_run(&px);
	/*
	 * A requested stop exits 0 when every request finished, and 2 when some
	 * were still running at shutdown_timeout_ms and had to be cut (each was
	 * answered 503 PROXY_SHUTTING_DOWN and audited; the log says how many):
	 * the exit status tells a supervisor or a script that the drain was not
	 * clean.  3 when the audit trail could not be closed (its close record
	 * or the last sync failed; logged): that outranks a cut.
	 */
	rc = px.audit_unclosed ? OCP_EXIT_AUDIT : px.cut > 0 ? OCP_EXIT_CUT : 0;
	proxy_free(&px);
	return rc;
}
