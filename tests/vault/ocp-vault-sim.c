/*
 * ocp-vault-sim.c — start-up, TLS, listener and outages of the Vault stand-in.
 *
 * usage: ocp-vault-sim --listen 127.0.0.1:0 --cert server.pem --key server.key
 *            [--port-file F] [--namespace NS] [--token-ttl-ms N]
 *            [--token-max-ttl-ms N] [--no-renew] [--root-token-file F]
 *            [--approle ROLE_ID:SECRET_ID] [--approle-mount NAME]
 *            [--timeout SECONDS]
 *
 * --token-ttl-ms is the TTL of every token issued, the root token included
 * (0, the default: tokens never expire, like a Vault root token);
 * --token-max-ttl-ms caps how far renewals extend a token; --no-renew makes
 * renew-self answer 403.  Once listening the bound port is written to
 * --port-file (atomically) and "ocp-vault-sim: listening on HOST:PORT" to
 * stderr.  SIGTERM/SIGINT stop the loop; everything is freed before exit.
 * No token, secret_id or KV value is ever written to stderr.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "vsim.h"

struct vsim_opts {
	const char	*listen, *cert, *key, *port_file, *root_token_file, *approle;
	int		 timeout;
};

static void
usage(void)
{
	fprintf(stderr, "usage: ocp-vault-sim --listen 127.0.0.1:PORT --cert PEM --key PEM "
	    "[--port-file F] [--namespace NS] [--token-ttl-ms N] [--token-max-ttl-ms N] "
	    "[--no-renew] [--root-token-file F] [--approle ROLE_ID:SECRET_ID] "
	    "[--approle-mount NAME] [--timeout SECONDS]\n");
	exit(2);
}

int64_t
vsim_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
vsim_wall_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Close a request's connection without answering it. */
void
vsim_drop(struct vsim *vs, struct evhttp_request *req)
{
	struct evhttp_connection	*evcon = evhttp_request_get_connection(req);
	struct bufferevent		*bev;
	evutil_socket_t			 fd;

	vs->st.dropped++;
	if (evcon != NULL && (bev = evhttp_connection_get_bufferevent(evcon)) != NULL &&
	    (fd = bufferevent_getfd(bev)) >= 0)
		(void)shutdown(fd, SHUT_RDWR);
	/* the write fails on the dead socket, which frees the connection */
	evhttp_send_reply(req, 503, "Down", NULL);
}

/* The outage is over: close what was held. */
static void
vsim_release(struct vsim *vs)
{
	struct vsim_held	*h;

	vs->down_until = 0;
	vs->down_hang = 0;
	while ((h = vs->held) != NULL) {
		vs->held = h->next;
		vsim_drop(vs, h->req);
		free(h);
	}
}

static void
vsim_down_cb(evutil_socket_t fd, short what, void *arg)
{
	vsim_release(arg);
}

/* Start (ms > 0) or end (ms == 0) an outage. */
void
vsim_down(struct vsim *vs, int64_t ms, int hang)
{
	struct timeval	tv;

	evtimer_del(vs->down_timer);
	if (ms <= 0) {
		vsim_release(vs);
		return;
	}
	vs->down_until = vsim_now_ms() + ms;
	vs->down_hang = hang;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	evtimer_add(vs->down_timer, &tv);
}

/* Hold a request until the outage ends. */
static void
vsim_hold(struct vsim *vs, struct evhttp_request *req)
{
	struct vsim_held	*h;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		vsim_drop(vs, req);
		return;
	}
	h->req = req;
	h->next = vs->held;
	vs->held = h;
}

/* Every request: control plane, outage, or the Vault API. */
static void
vsim_http_cb(struct evhttp_request *req, void *arg)
{
	struct vsim		*vs = arg;
	const struct evhttp_uri	*u = evhttp_request_get_evhttp_uri(req);
	const char		*raw = u != NULL ? evhttp_uri_get_path(u) : NULL;
	char			*path;

	if (raw == NULL || (path = evhttp_uridecode(raw, 0, NULL)) == NULL) {
		vsim_error(req, 400, "bad request");
		return;
	}
	if (strncmp(path, "/__vault/", 9) == 0)
		vsim_control(vs, req, path);
	else if (vs->down_until != 0 && vsim_now_ms() < vs->down_until) {
		if (vs->down_hang)
			vsim_hold(vs, req);
		else
			vsim_drop(vs, req);
	} else
		vsim_api(vs, req, path);
	free(path);
}

static SSL_CTX *
vsim_tls_init(const char *cert, const char *key)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_print_errors_fp(stderr);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* evhttp asks for each accepted connection's bufferevent: wrap it in TLS. */
static struct bufferevent *
vsim_bevcb(struct event_base *base, void *arg)
{
	struct vsim		*vs = arg;
	struct bufferevent	*bev;
	SSL			*ssl;

	vs->st.connections++;
	if ((ssl = SSL_new(vs->ssl_ctx)) == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	else
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static void
vsim_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

/* Split "HOST:PORT"; loopback only. */
static int
vsim_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port)
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

static int
vsim_write_port(const char *path, unsigned port)
{
	char	 tmp[4096];
	FILE	*f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp) ||
	    (f = fopen(tmp, "w")) == NULL)
		return -1;
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

static int
vsim_listen(struct vsim *vs, const char *spec, char *host, size_t hostlen, unsigned *port)
{
	struct evhttp_bound_socket	*h;
	struct sockaddr_in		 sin;
	socklen_t			 slen = sizeof(sin);

	if (vsim_parse_listen(spec, host, hostlen, port) == -1) {
		fprintf(stderr, "ocp-vault-sim: --listen must be 127.x.x.x:PORT\n");
		return -1;
	}
	if ((h = evhttp_bind_socket_with_handle(vs->http, host, (ev_uint16_t)*port)) == NULL) {
		fprintf(stderr, "ocp-vault-sim: cannot bind %s\n", spec);
		return -1;
	}
	if (getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sin, &slen) == -1)
		return -1;
	*port = ntohs(sin.sin_port);
	return 0;
}

static int64_t
vsim_ms_arg(const char *s)
{
	char	*end;
	long long v = strtoll(s, &end, 10);

	if (*end != '\0' || *s == '\0' || v < 0 || v > 86400000LL * 366)
		usage();
	return v;
}

static void
vsim_parse_args(int argc, char **argv, struct vsim *vs, struct vsim_opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "token-ttl-ms", required_argument, NULL, 't' },
		{ "token-max-ttl-ms", required_argument, NULL, 'm' },
		{ "no-renew", no_argument, NULL, 'R' },
		{ "root-token-file", required_argument, NULL, 'r' },
		{ "approle", required_argument, NULL, 'a' },
		{ "approle-mount", required_argument, NULL, 'M' },
		{ "timeout", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int	ch;

	memset(o, 0, sizeof(*o));
	o->listen = "127.0.0.1:0";
	o->timeout = VSIM_HTTP_TIMEOUT_S;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': o->listen = optarg; break;
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 'p': o->port_file = optarg; break;
		case 'n': vs->ns = strdup(optarg); break;
		case 't': vs->token_ttl_ms = vsim_ms_arg(optarg); break;
		case 'm': vs->token_max_ttl_ms = vsim_ms_arg(optarg); break;
		case 'R': vs->no_renew = 1; break;
		case 'r': o->root_token_file = optarg; break;
		case 'a': o->approle = optarg; break;
		case 'M': free(vs->approle_mount); vs->approle_mount = strdup(optarg); break;
		case 'T':
			o->timeout = (int)vsim_ms_arg(optarg);
			if (o->timeout < 1 || o->timeout > 86400)
				usage();
			break;
		default: usage();
		}
	}
	if (optind != argc || o->cert == NULL || o->key == NULL)
		usage();
}

/* --approle ROLE_ID:SECRET_ID (split at the first colon). */
static int
vsim_approle(struct vsim *vs, const char *spec)
{
	const char	*colon = strchr(spec, ':');

	if (colon == NULL || colon == spec || colon[1] == '\0') {
		fprintf(stderr, "ocp-vault-sim: --approle wants ROLE_ID:SECRET_ID\n");
		return -1;
	}
	vs->role_id = strndup(spec, (size_t)(colon - spec));
	vs->secret_id = strdup(colon + 1);
	return vs->role_id != NULL && vs->secret_id != NULL ? 0 : -1;
}

/* The root token: the first line of the file. */
static int
vsim_root_token(struct vsim *vs, const char *path)
{
	FILE	*f;
	char	 line[256];
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "ocp-vault-sim: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0 || n > 64) {
		fprintf(stderr, "ocp-vault-sim: %s: want one token of 1 to 64 bytes\n", path);
		OPENSSL_cleanse(line, sizeof(line));
		return -1;
	}
	if (vsim_token_issue(vs, "root", line, vs->token_ttl_ms, vs->token_ttl_ms > 0) == NULL) {
		OPENSSL_cleanse(line, sizeof(line));
		return -1;
	}
	OPENSSL_cleanse(line, sizeof(line));
	return 0;
}

static int
vsim_http_init(struct vsim *vs, int timeout)
{
	if ((vs->http = evhttp_new(vs->base)) == NULL)
		return -1;
	evhttp_set_bevcb(vs->http, vsim_bevcb, vs);
	evhttp_set_gencb(vs->http, vsim_http_cb, vs);
	evhttp_set_allowed_methods(vs->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
	evhttp_set_max_body_size(vs->http, VSIM_MAX_BODY);
	evhttp_set_max_headers_size(vs->http, VSIM_MAX_HEADERS);
	evhttp_set_timeout(vs->http, timeout);
	return 0;
}

static void
vsim_teardown(struct vsim *vs, struct event *sigs[2])
{
	struct vsim_held	*h;
	int			 i;

	while ((h = vs->held) != NULL) {	/* evhttp_free frees the requests */
		vs->held = h->next;
		free(h);
	}
	if (vs->http != NULL)
		evhttp_free(vs->http);
	for (i = 0; i < 2; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (vs->down_timer != NULL)
		event_free(vs->down_timer);
	vsim_tokens_free(vs);
	vsim_secrets_free(vs);
	vsim_counts_free(&vs->st.reads_by_path);
	vsim_counts_free(&vs->denied_paths);
	if (vs->ssl_ctx != NULL)
		SSL_CTX_free(vs->ssl_ctx);
	if (vs->base != NULL)
		event_base_free(vs->base);
	free(vs->ns);
	free(vs->approle_mount);
	free(vs->role_id);
	if (vs->secret_id != NULL)
		OPENSSL_clear_free(vs->secret_id, strlen(vs->secret_id));
	free(vs);
	libevent_global_shutdown();
}

int
main(int argc, char **argv)
{
	struct vsim_opts o;
	struct vsim	*vs;
	struct event	*sigs[2] = { NULL, NULL };
	unsigned	 port = 0;
	char		 host[64];
	int		 rc = 1;

	signal(SIGPIPE, SIG_IGN);
	if ((vs = calloc(1, sizeof(*vs))) == NULL)
		return 1;
	vs->approle_mount = strdup("approle");
	vsim_parse_args(argc, argv, vs, &o);
	if ((vs->ssl_ctx = vsim_tls_init(o.cert, o.key)) == NULL)
		goto out;
	if (o.approle != NULL && vsim_approle(vs, o.approle) == -1)
		goto out;
	if (o.root_token_file != NULL && vsim_root_token(vs, o.root_token_file) == -1)
		goto out;
	if ((vs->base = event_base_new()) == NULL ||
	    (vs->down_timer = evtimer_new(vs->base, vsim_down_cb, vs)) == NULL ||
	    vsim_http_init(vs, o.timeout) == -1 ||
	    vsim_listen(vs, o.listen, host, sizeof(host), &port) == -1)
		goto out;
	sigs[0] = evsignal_new(vs->base, SIGTERM, vsim_signal_cb, vs->base);
	sigs[1] = evsignal_new(vs->base, SIGINT, vsim_signal_cb, vs->base);
	if (sigs[0] == NULL || sigs[1] == NULL || evsignal_add(sigs[0], NULL) ||
	    evsignal_add(sigs[1], NULL))
		goto out;
	if (o.port_file != NULL && vsim_write_port(o.port_file, port) == -1) {
		fprintf(stderr, "ocp-vault-sim: cannot write %s\n", o.port_file);
		goto out;
	}
	fprintf(stderr, "ocp-vault-sim: listening on %s:%u%s%s\n", host, port,
	    vs->ns ? " namespace " : "", vs->ns ? vs->ns : "");
	if (event_base_dispatch(vs->base) == 0)
		rc = 0;
	fprintf(stderr, "ocp-vault-sim: stopping\n");
out:
	vsim_teardown(vs, sigs);
	return rc;
}
