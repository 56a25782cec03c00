/*
 * main.c — command line of ocp-proxy.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "ocp-proxy.h"
#include "secret.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: ocp-proxy [-c FILE]            run in the foreground, log to stderr\n"
	    "       ocp-proxy -t [-c FILE]         check the config and load every key\n"
	    "       ocp-proxy -V | -h | --schema   version | this help | every config key\n"
	    "default config: %s\n", CONF_DEFAULT_PATH);
}

int
main(int argc, char **argv)
{
	struct proxy	 px;
	const char	*conf = CONF_DEFAULT_PATH;
	int		 ch, check = 0, rc;

	log_init("ocp-proxy");
	if (argc == 2 && strcmp(argv[1], "--schema") == 0) {
		conf_dump_schema();
		return 0;
	}
	while ((ch = getopt(argc, argv, "c:thV")) != -1) {
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
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	secret_harden_process();
	memset(&px, 0, sizeof(px));
	log_libevent();
	if (!check) {
		if ((px.base = event_base_new()) == NULL)
			fatalx("cannot create the event loop");
		px.dns = evdns_base_new(px.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (px.dns == NULL)
			px.dns = evdns_base_new(px.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	}
	if (proxy_init(&px, conf, check) == -1) {
		if (check)
			fprintf(stderr, "%s: configuration check failed\n", conf);
		return 1;
	}
	if (check) {
		printf("%s: configuration OK, %zu profile(s), every key loaded\n", conf,
		    px.gen->conf->nprofiles);
		gen_unref(px.gen);
		proxy_nonces_close();
		return 0;
	}
	proxy_run(&px);
	rc = proxy_exit_code(&px);
	gen_unref(px.gen);
	proxy_nonces_close();
	if (px.dns != NULL)
		evdns_base_free(px.dns, 0);
	event_base_free(px.base);
	return rc;
}
