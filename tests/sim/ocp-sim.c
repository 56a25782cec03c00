/*
 * ocp-sim.c — start-up and teardown of the OnChainPay simulator.
 *
 * usage: ocp-sim --listen 127.0.0.1:0 --cert server.pem --key server.key
 *            --keys keys.txt [--port-file FILE] [--record FILE.jsonl]
 *            [--timeout SECONDS]
 *
 * keys.txt: one "PUBLIC_KEY SECRET" pair per line, # comments.  Once
 * listening the bound port is written to --port-file (atomically, decimal
 * and a newline) and "ocp-sim: listening on 127.0.0.1:PORT" to stderr.
 * --timeout sets evhttp's read/write/idle timeout (default
 * SIM_HTTP_TIMEOUT_S); a small value lets tests see idle keep-alive
 * connections closed by the server.  SIGTERM/SIGINT stop the loop;
 * everything is freed before exit.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "sim.h"

struct sim	*sim_global;

struct sim_opts {
	const char	*listen, *cert, *key, *keys, *port_file, *record;
	int		 timeout;
};

static void
usage(void)
{
	fprintf(stderr, "usage: ocp-sim --listen 127.0.0.1:PORT --cert PEM "
	    "--key PEM --keys FILE [--port-file FILE] [--record FILE] "
	    "[--timeout SECONDS]\n");
	exit(2);
}

static void
sim_keys_free(struct sim *sim)
{
	struct sim_key	*k, *next;

	for (k = sim->keys; k != NULL; k = next) {
		next = k->next;
		sim_nonce_clear(k);
		OPENSSL_clear_free(k->secret, k->secret_len);
		free(k->pub);
		free(k);
	}
	sim->keys = NULL;
}

/* Add one key pair; -1 on a duplicate or allocation failure. */
static int
sim_key_add(struct sim *sim, const char *pub, const char *secret)
{
	struct sim_key	*k;

	for (k = sim->keys; k != NULL; k = k->next)
		if (strcmp(k->pub, pub) == 0)
			return -1;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return -1;
	k->pub = strdup(pub);
	k->secret_len = strlen(secret);
	k->secret = malloc(k->secret_len + 1);
	if (k->pub == NULL || k->secret == NULL) {
		free(k->pub);
		free(k->secret);
		free(k);
		return -1;
	}
	memcpy(k->secret, secret, k->secret_len + 1);
	k->next = sim->keys;
	sim->keys = k;
	return 0;
}

/* Load keys.txt.  Errors name the line, never the secret. */
static int
sim_keys_load(struct sim *sim, const char *path)
{
	FILE	*f;
	char	*line = NULL, *save, *pub, *secret, *extra;
	size_t	 cap = 0;
	int	 lineno = 0, rc = 0;

	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "ocp-sim: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && getline(&line, &cap, f) != -1) {
		lineno++;
		if ((pub = strtok_r(line, " \t\r\n", &save)) == NULL ||
		    pub[0] == '#')
			continue;
		secret = strtok_r(NULL, " \t\r\n", &save);
		extra = strtok_r(NULL, " \t\r\n", &save);
		if (secret == NULL || extra != NULL) {
			fprintf(stderr, "ocp-sim: %s:%d: expected PUBLIC_KEY "
			    "SECRET\n", path, lineno);
			rc = -1;
		} else if (sim_key_add(sim, pub, secret) == -1) {
			fprintf(stderr, "ocp-sim: %s:%d: duplicate key or out "
			    "of memory\n", path, lineno);
			rc = -1;
		}
	}
	if (line != NULL)
		OPENSSL_clear_free(line, cap);
	fclose(f);
	return rc;
}

/* Count each completed handshake once, and whether it resumed a session. */
static void
sim_info_cb(const SSL *ssl, int where, int ret)
{
	struct sim_tls	*t;

	if (!(where & SSL_CB_HANDSHAKE_DONE) || sim_global == NULL)
		return;
	t = SSL_get_ex_data(ssl, sim_global->ssl_idx);
	if (t == NULL || t->counted)
		return;
	t->counted = 1;
	sim_global->stats.handshakes++;
	if (SSL_session_reused(ssl))
		sim_global->stats.resumed++;
}

/* ex_data destructor for struct sim_tls. */
static void
sim_tls_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

static SSL_CTX *
sim_tls_init(const char *cert, const char *key)
{
	static const unsigned char	sid[] = "ocp-sim";
	SSL_CTX				*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1) != 1) {
		ERR_print_errors_fp(stderr);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* server-side cache and tickets, so client resumption is visible */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, 1024);
	SSL_CTX_set_timeout(ctx, 3600);
	SSL_CTX_set_info_callback(ctx, sim_info_cb);
	return ctx;
}

/* evhttp asks for each accepted connection's bufferevent: wrap it in TLS. */
static struct bufferevent *
sim_bevcb(struct event_base *base, void *arg)
{
	struct sim		*sim = arg;
	struct bufferevent	*bev;
	struct sim_tls		*t;
	SSL			*ssl;

	sim->stats.connections++;
	if ((ssl = SSL_new(sim->ssl_ctx)) == NULL)
		return NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    SSL_set_ex_data(ssl, sim->ssl_idx, t) != 1) {
		free(t);
		SSL_free(ssl);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	else
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static void
sim_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	event_base_loopexit(base, NULL);
}

/* Split "HOST:PORT"; only loopback hosts are accepted. */
static int
sim_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char	*colon = strrchr(s, ':');
	char		*end;
	unsigned long	 p;

	if (colon == NULL || (size_t)(colon - s) >= hostlen)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	p = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || colon[1] == '\0' || p > 65535)
		return -1;
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (strncmp(host, "127.", 4) != 0)
		return -1;
	*port = (unsigned)p;
	return 0;
}

/* Write the port to path atomically (temp file + rename). */
static int
sim_write_port(const char *path, unsigned port)
{
	char	tmp[4096];
	FILE	*f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp) ||
	    (f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

/* Bind evhttp to the listen address; the bound port into *port. */
static int
sim_listen(struct sim *sim, const char *spec, char *host, size_t hostlen,
    unsigned *port)
{
	struct evhttp_bound_socket	*h;
	struct sockaddr_in		 sin;
	socklen_t			 slen = sizeof(sin);

	if (sim_parse_listen(spec, host, hostlen, port) == -1) {
		fprintf(stderr, "ocp-sim: --listen must be 127.x.x.x:PORT\n");
		return -1;
	}
	if ((h = evhttp_bind_socket_with_handle(sim->http, host,
	    (ev_uint16_t)*port)) == NULL) {
		fprintf(stderr, "ocp-sim: cannot bind %s\n", spec);
		return -1;
	}
	{	/* accepted sockets inherit it: no 40 ms Nagle/delayed-ACK stalls */
		int one = 1;
		(void)setsockopt(evhttp_bound_socket_get_fd(h), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
	}
	if (getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sin,
	    &slen) == -1)
		return -1;
	*port = ntohs(sin.sin_port);
	return 0;
}

static void
sim_parse_args(int argc, char **argv, struct sim_opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "keys", required_argument, NULL, 'K' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "record", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "nonce-window", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	char	*end;
	long	 t;
	int	 ch;

	memset(o, 0, sizeof(*o));
	o->listen = "127.0.0.1:0";
	o->timeout = SIM_HTTP_TIMEOUT_S;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': o->listen = optarg; break;
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 'K': o->keys = optarg; break;
		case 'p': o->port_file = optarg; break;
		case 'r': o->record = optarg; break;
		case 'w':
			sim_nonce_window = (unsigned)strtoul(optarg, NULL, 10);
			if (sim_nonce_window > SIM_WINDOW_MAX)
				sim_nonce_window = SIM_WINDOW_MAX;
			break;
		case 't':
			t = strtol(optarg, &end, 10);
			if (*end != '\0' || t < 1 || t > 86400)
				usage();
			o->timeout = (int)t;
			break;
		default: usage();
		}
	}
	if (optind != argc || o->cert == NULL || o->key == NULL ||
	    o->keys == NULL)
		usage();
}

/* Configure evhttp on the loop. */
static int
sim_http_init(struct sim *sim, int timeout)
{
	if ((sim->http = evhttp_new(sim->base)) == NULL)
		return -1;
	evhttp_set_bevcb(sim->http, sim_bevcb, sim);
	evhttp_set_gencb(sim->http, sim_http_cb, sim);
	/* every answer names its type; the no_ctype fault must be able not to */
	evhttp_set_default_content_type(sim->http, NULL);
	evhttp_set_allowed_methods(sim->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(sim->http, SIM_MAX_BODY_BYTES);
	evhttp_set_max_headers_size(sim->http, SIM_MAX_HEADER_BYTES);
	evhttp_set_timeout(sim->http, timeout);
	return 0;
}

/* Free everything (safe on a partly built sim). */
static void
sim_teardown(struct sim *sim, struct event *sigs[2])
{
	int	i;

	sim_pending_flush_all(sim);
	if (sim->http != NULL)
		evhttp_free(sim->http);
	for (i = 0; i < 2; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	sim_records_clear(sim);
	sim_keys_free(sim);
	if (sim->record != NULL)
		fclose(sim->record);
	if (sim->ssl_ctx != NULL)
		SSL_CTX_free(sim->ssl_ctx);
	if (sim->base != NULL)
		event_base_free(sim->base);
	sim_global = NULL;
	free(sim);
	libevent_global_shutdown();
}

int
main(int argc, char **argv)
{
	struct sim_opts	 o;
	struct sim	*sim;
	struct event	*sigs[2] = { NULL, NULL };
	unsigned	 port = 0;
	char		 host[64];
	int		 rc = 1;

	sim_parse_args(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	if ((sim = calloc(1, sizeof(*sim))) == NULL)
		return 1;
	sim_global = sim;
	sim->ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, sim_tls_free);
	if (sim_responses_check() != 0 || sim_keys_load(sim, o.keys) == -1 ||
	    (sim->ssl_ctx = sim_tls_init(o.cert, o.key)) == NULL)
		goto out;
	if (o.record != NULL && (sim->record = fopen(o.record, "a")) == NULL) {
		fprintf(stderr, "ocp-sim: %s: %s\n", o.record, strerror(errno));
		goto out;
	}
	if ((sim->base = event_base_new()) == NULL ||
	    sim_http_init(sim, o.timeout) == -1 ||
	    sim_listen(sim, o.listen, host, sizeof(host), &port) == -1)
		goto out;
	sigs[0] = evsignal_new(sim->base, SIGTERM, sim_signal_cb, sim->base);
	sigs[1] = evsignal_new(sim->base, SIGINT, sim_signal_cb, sim->base);
	if (sigs[0] == NULL || sigs[1] == NULL || evsignal_add(sigs[0], NULL) ||
	    evsignal_add(sigs[1], NULL))
		goto out;
	if (o.port_file != NULL && sim_write_port(o.port_file, port) == -1) {
		fprintf(stderr, "ocp-sim: cannot write %s\n", o.port_file);
		goto out;
	}
	fprintf(stderr, "ocp-sim: listening on %s:%u\n", host, port);
	if (event_base_dispatch(sim->base) == 0)
		rc = 0;
	fprintf(stderr, "ocp-sim: stopping\n");
out:
	sim_teardown(sim, sigs);
	return rc;
}
