/*
 * test_vault.c — vault.c: source syntax and KV v2 answer parsing (tables),
 * then the client itself, live, against build/ocp-vault-sim (started from
 * the directory of this binary, with throwaway certificates from
 * tests/gen-certs.sh): AppRole and token_file authentication, renewal,
 * refused renewal, max TTL, expired tokens, shared reads, rotation, 404,
 * sealed, outages, timeouts, policy 403, namespaces, wrong CA, bad
 * credentials, configuration errors, and no secret in the log.
 *
 * The client's log goes to a file in the run's temporary directory (kept
 * when a check fails, with OCP_KEEP_TMP=1 too); failures are echoed.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "secret.h"
#include "unit.h"
#include "upstream.h"
#include "vault.h"

/* ------------------------------------------------------------ pure parts */

static void
test_parse_source(void)
{
	static const struct {
		const char *src, *mount, *path, *field;
	} good[] = {
		{ "vault:secret/ocp/merchant#secret", "secret", "ocp/merchant", "secret" },
		{ "vault:kv/x#public_key", "kv", "x", "public_key" },
		{ "vault:kv/a b/c#f#g", "kv", "a b/c", "f#g" },
		{ "vault:m/p.q/r..s#x", "m", "p.q/r..s", "x" },
	};
	static const char *const bad[] = {
		"secret/ocp#x", "vault:", "vault:secret#x", "vault:secret/#x",
		"vault:/secret/x#f", "vault:secret/x", "vault:secret/x#", "vault:secret//x#f",
		"vault:secret/x/#f", "vault:secret/./x#f", "vault:secret/../x#f",
		"vault:secret/x/..#f", "vault:sec\nret/x#f", "vault:secret/x#f\r",
		"vault:secret/\x7f#f", "file:/x",
	};
	char	*m, *p, *f, big[VAULT_MAX_SOURCE + 64];
	size_t	 i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(vault_parse_source(good[i].src, &m, &p, &f) == 0);
		CHECK_STREQ(m, good[i].mount);
		CHECK_STREQ(p, good[i].path);
		CHECK_STREQ(f, good[i].field);
		free(m);
		free(p);
		free(f);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = vault_parse_source(bad[i], &m, &p, &f);
		if (rc != -1)
			fprintf(stderr, "accepted bad source #%zu\n", i);
		CHECK(rc == -1 && m == NULL && p == NULL && f == NULL);
	}
	memcpy(big, "vault:m/", 8);
	memset(big + 8, 'a', VAULT_MAX_SOURCE);
	strcpy(big + 8 + VAULT_MAX_SOURCE, "#f");
	CHECK(vault_parse_source(big, &m, &p, &f) == -1);
}

/* Parse text; returns the kv (or NULL) and the reason. */
static struct vault_kv *
kvp(const char *text, unsigned long long *ver, const char **why)
{
	*why = NULL;
	return vault_kv_parse(text, strlen(text), ver, why);
}

static void
test_kv_parse_good(void)
{
	struct vault_kv		*kv, *kv2;
	struct secret		*s;
	unsigned long long	 ver;
	const char		*why;

	kv = kvp("{\"request_id\":\"x\",\"data\":{\"data\":{\"secret\":\"s3cr\\u00e9t\\n\","
	    "\"public_key\":\"pub\",\"n\":5,\"o\":{\"data\":\"deep\"},\"a\":[\"x\"],\"z\":null},"
	    "\"metadata\":{\"created_time\":\"t\",\"version\":12}},\"auth\":null}", &ver, &why);
	CHECK(kv != NULL);
	if (kv == NULL)
		return;
	CHECK(ver == 12);
	CHECK(vault_kv_count(kv) == 6);
	CHECK_STREQ(vault_kv_name(kv, 0), "secret");
	CHECK(vault_kv_name(kv, 6) == NULL);
	s = vault_kv_field(kv, "secret");
	CHECK(s != NULL && s->len == 8 && memcmp(s->p, "s3cr\xc3\xa9t\n", 8) == 0);
	secret_free(s);
	s = vault_kv_field(kv, "public_key");
	CHECK(s != NULL && s->len == 3 && memcmp(s->p, "pub", 4) == 0);
	secret_free(s);
	CHECK(vault_kv_field(kv, "n") == NULL);		/* not a string */
	CHECK(vault_kv_field(kv, "o") == NULL);
	CHECK(vault_kv_field(kv, "z") == NULL);
	CHECK(vault_kv_field(kv, "missing") == NULL);
	CHECK(vault_kv_field(kv, "data") == NULL);	/* nested, not a field */
	/* same content, other order and metadata first */
	kv2 = kvp("{\"data\":{\"metadata\":{\"version\":13},\"data\":{\"z\":null,\"a\":[1],"
	    "\"o\":{},\"n\":7,\"public_key\":\"pub\",\"secret\":\"s3cr\\u00e9t\\n\"}}}", &ver, &why);
	CHECK(kv2 != NULL && ver == 13);
	CHECK(vault_kv_equal(kv, kv2));
	CHECK(vault_kv_equal(kv2, kv));
	vault_kv_free(kv2);
	kv2 = kvp("{\"data\":{\"metadata\":{\"version\":1},\"data\":{\"z\":null,\"a\":[1],"
	    "\"o\":{},\"n\":7,\"public_key\":\"pub\",\"secret\":\"s3cr\\u00e9t!\"}}}", &ver, &why);
	CHECK(kv2 != NULL && !vault_kv_equal(kv, kv2));
	vault_kv_free(kv2);
	CHECK(vault_kv_equal(NULL, NULL) && !vault_kv_equal(kv, NULL));
	vault_kv_free(kv);
	kv = kvp(" {\"data\":{\"data\":{},\"metadata\":{\"version\":1}}} \n", &ver, &why);
	CHECK(kv != NULL && vault_kv_count(kv) == 0 && ver == 1);
	vault_kv_free(kv);
	vault_kv_free(NULL);
}

/* A KV answer whose field x holds k nested arrays (total depth 3 + k). */
static char *
deep_json(size_t k)
{
	char	*d = calloc(1, 2 * k + 128);
	size_t	 n, i;

	n = (size_t)sprintf(d, "{\"data\":{\"metadata\":{\"version\":1},\"data\":{\"x\":");
	for (i = 0; i < k; i++)
		d[n++] = '[';
	for (i = 0; i < k; i++)
		d[n++] = ']';
	strcpy(d + n, "}}}");
	return d;
}

static void
test_kv_parse_bad(void)
{
	static const struct {
		const char *text, *why;
	} bad[] = {
		{ "", "invalid JSON" },
		{ "{", "invalid JSON" },
		{ "[]", "not a JSON object" },
		{ "\"x\"", "not a JSON object" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":1}}} x", "invalid JSON" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":1}}}{}", "invalid JSON" },
		{ "{\"data\":{\"metadata\":{\"version\":1}}}", "no data in the answer" },
		{ "{\"data\":{\"data\":null,\"metadata\":{\"version\":1}}}", "no data in the answer" },
		{ "{\"data\":{\"data\":[],\"metadata\":{\"version\":1}}}", "no data in the answer" },
		{ "{\"data\":{\"data\":{}}}", "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":0}}}", "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":-1}}}", "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":1.5}}}", "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":\"3\"}}}", "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":99999999999999999999}}}",
		  "no version in the answer" },
		{ "{\"data\":{\"data\":{},\"metadata\":{\"version\":1,\"version\":2}}}", "duplicate field" },
		{ "{\"data\":{\"data\":{\"a\":\"1\",\"a\":\"2\"},\"metadata\":{\"version\":1}}}",
		  "duplicate field" },
		{ "{\"data\":{\"data\":{},\"data\":{},\"metadata\":{\"version\":1}}}", "duplicate field" },
		{ "{\"data\":{\"data\":{\"a\":\"\xff\"},\"metadata\":{\"version\":1}}}", "invalid JSON" },
		{ "{\"data\":{\"data\":{'a':1},\"metadata\":{\"version\":1}}}", "invalid JSON" },
		{ "{\"data\":{\"data\":{/*c*/},\"metadata\":{\"version\":1}}}", "invalid JSON" },
	};
	unsigned long long	 ver;
	const char		*why;
	struct vault_kv		*kv;
	char			*deep, *many;
	size_t			 i, n;


	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		kv = kvp(bad[i].text, &ver, &why);
		CHECK(kv == NULL && ver == 0);
		CHECK_STREQ(why, bad[i].why);
		vault_kv_free(kv);
	}
	/* nesting: VAULT_MAX_JSON_DEPTH levels pass, one more does not */
	deep = deep_json(VAULT_MAX_JSON_DEPTH - 3);
	kv = kvp(deep, &ver, &why);
	CHECK(kv != NULL);
	vault_kv_free(kv);
	free(deep);
	deep = deep_json(VAULT_MAX_JSON_DEPTH - 2);
	kv = kvp(deep, &ver, &why);
	CHECK(kv == NULL);
	CHECK_STREQ(why, "nesting too deep");
	free(deep);
	deep = deep_json(100000);		/* far too deep: no recursion to blow up */
	CHECK(kvp(deep, &ver, &why) == NULL);
	free(deep);
	/* too many fields, too long a name, too long a value */
	many = calloc(1, 32 * (VAULT_MAX_FIELDS + 2) + VAULT_MAX_VALUE + 256);
	n = (size_t)sprintf(many, "{\"data\":{\"metadata\":{\"version\":1},\"data\":{");
	for (i = 0; i <= VAULT_MAX_FIELDS; i++)
		n += (size_t)sprintf(many + n, "%s\"f%zu\":\"v\"", i ? "," : "", i);
	strcpy(many + n, "}}}");
	CHECK(kvp(many, &ver, &why) == NULL);
	CHECK_STREQ(why, "too many fields");
	n = (size_t)sprintf(many, "{\"data\":{\"metadata\":{\"version\":1},\"data\":{\"");
	memset(many + n, 'k', VAULT_MAX_NAME + 1);
	strcpy(many + n + VAULT_MAX_NAME + 1, "\":\"v\"}}}");
	CHECK(kvp(many, &ver, &why) == NULL);
	CHECK_STREQ(why, "field too long");
	n = (size_t)sprintf(many, "{\"data\":{\"metadata\":{\"version\":1},\"data\":{\"k\":\"");
	memset(many + n, 'v', VAULT_MAX_VALUE + 1);
	strcpy(many + n + VAULT_MAX_VALUE + 1, "\"}}}");
	CHECK(kvp(many, &ver, &why) == NULL);
	CHECK_STREQ(why, "field too long");
	many[n + VAULT_MAX_VALUE] = '"';	/* exactly the limit */
	strcpy(many + n + VAULT_MAX_VALUE + 1, "}}}");
	kv = kvp(many, &ver, &why);
	CHECK(kv != NULL);
	vault_kv_free(kv);
	free(many);
	/* not NUL-terminated: only len bytes are read */
	kv = vault_kv_parse("{\"data\":{\"data\":{},\"metadata\":{\"version\":7}}}garbage", 45,
	    &ver, &why);
	CHECK(kv != NULL && ver == 7);
	vault_kv_free(kv);
	CHECK(vault_kv_parse(NULL, 0, &ver, &why) == NULL);
}

/* ------------------------------------------------------------ live: helpers */

/* Like CHECK_STREQ, but never prints the values (they stand for secrets). */
#define CHECK_SAME(a, b) do {						\
	if (strcmp((a), (b)) == 0)					\
		unit_passed++;						\
	else {								\
		unit_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s is not the expected value\n", \
		    __FILE__, __LINE__, #a);				\
	}								\
} while (0)

#define ROLE_ID		"ocp-test-role"
#define SECRET_ID	"fake-secret-id-live-0123456789"
#define ROOT_TOKEN	"hvs.fake-root-token-live-0123456789"
#define MERCHANT_V1	"merchant-secret-value-1"
#define MERCHANT_V2	"merchant-secret-value-2"
#define MERCHANT_V3	"merchant-secret-value-3"
#define PARTNER_V1	"partner-secret-value-1"

static struct event_base	*base;
static char			 tmp[64], ca[PATH_MAX], other_ca[PATH_MAX];
static char			 cert[PATH_MAX], key[PATH_MAX], simbin[PATH_MAX + 32];
static char			 issued[8][128];	/* tokens to look for in the log */
static int			 nissued;

struct sim {
	pid_t			 pid;
	unsigned		 port;
	char			 url[64];
	struct upstream		*ctl;
};

/* The configuration structs hold char *; the tests pass constants. */
static char *
unconst(const char *s)
{
	return (char *)(uintptr_t)s;
}

static unsigned long long
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* Run the loop for about ms. */
static void
spin(unsigned ms)
{
	struct timeval	tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

#define RUN_UNTIL(cond, ms) do {					\
	unsigned long long d_ = now_ms() + (ms);			\
	while (!(cond) && now_ms() < d_)				\
		spin(10);						\
} while (0)

static void
write_text(const char *path, const char *text, mode_t mode)
{
	int	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fprintf(stderr, "cannot write %s\n", path);
	if (fd != -1) {
		(void)fchmod(fd, mode);
		close(fd);
	}
}

/* Where this binary lives: build/, build/asan/ ... */
static int
find_tools(const char *argv0)
{
	static const char *const rel[] = { "tests/gen-certs.sh", "../tests/gen-certs.sh",
	    "../../tests/gen-certs.sh", "../../../tests/gen-certs.sh" };
	char	dir[PATH_MAX], gen[PATH_MAX * 2], cmd[PATH_MAX * 4];
	char	*slash;
	size_t	i;

	snprintf(dir, sizeof(dir), "%s", argv0);
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	else
		strcpy(dir, ".");
	snprintf(simbin, sizeof(simbin), "%s/ocp-vault-sim", dir);
	if (access(simbin, X_OK) != 0)
		return -1;
	gen[0] = '\0';
	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(gen, sizeof(gen), "%s%s%s", i == 0 ? "" : dir, i == 0 ? "" : "/", rel[i]);
		if (access(gen, R_OK) == 0)
			break;
		gen[0] = '\0';
	}
	if (gen[0] == '\0')
		return -1;
	snprintf(tmp, sizeof(tmp), "/tmp/ocp-test-vault-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(cmd, sizeof(cmd), "sh '%s' '%s/certs' >/dev/null 2>&1", gen, tmp);
	if (system(cmd) != 0)
		return -1;
	snprintf(ca, sizeof(ca), "%s/certs/ca.pem", tmp);
	snprintf(other_ca, sizeof(other_ca), "%s/certs/other-ca.pem", tmp);
	snprintf(cert, sizeof(cert), "%s/certs/server.pem", tmp);
	snprintf(key, sizeof(key), "%s/certs/server.key", tmp);
	return 0;
}

/* A pool conf for address url with the CA file cafile. */
static void
pool_conf(struct conf *c, const char *host, const char *port, const char *cafile)
{
	memset(c, 0, sizeof(*c));
	c->upstream_url = unconst("https://x");
	c->ca_file = unconst(cafile);
	c->up_host = unconst(host);
	c->up_port = unconst(port);
	c->up_host_is_ip = 1;
	c->connect_timeout_ms = c->handshake_timeout_ms = c->timeout_ms = 5000;
	c->upstream_max_connections = 2;
	c->upstream_idle_timeout_ms = 30000;
	c->max_response_bytes = 1 << 20;
}

/* Start ocp-vault-sim with extra arguments (NULL-terminated). */
static int
sim_start(struct sim *s, const char *const *extra)
{
	char		 portf[PATH_MAX + 16], errf[PATH_MAX + 16], rootf[PATH_MAX + 16];
	char		 approle[128], buf[32], pstr[16], *cause = NULL;
	const char	*argv[32];
	struct conf	 c;
	int		 n = 0, fd;
	static int	 seq;
	unsigned long long deadline;

	memset(s, 0, sizeof(*s));
	seq++;
	snprintf(portf, sizeof(portf), "%s/port%d", tmp, seq);
	snprintf(errf, sizeof(errf), "%s/sim%d.log", tmp, seq);
	snprintf(rootf, sizeof(rootf), "%s/root-token", tmp);
	snprintf(approle, sizeof(approle), "%s:%s", ROLE_ID, SECRET_ID);
	write_text(rootf, ROOT_TOKEN "\n", 0600);
	argv[n++] = simbin;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--cert";
	argv[n++] = cert;
	argv[n++] = "--key";
	argv[n++] = key;
	argv[n++] = "--port-file";
	argv[n++] = portf;
	argv[n++] = "--root-token-file";
	argv[n++] = rootf;
	argv[n++] = "--approle";
	argv[n++] = approle;
	while (extra != NULL && *extra != NULL && n < 30)
		argv[n++] = *extra++;
	argv[n] = NULL;
	if ((s->pid = fork()) == 0) {
		if ((fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600)) != -1)
			dup2(fd, 2);
		execv(simbin, (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		FILE *f = fopen(portf, "r");
		if (f != NULL) {
			if (fgets(buf, sizeof(buf), f) != NULL && strchr(buf, '\n') != NULL)
				s->port = (unsigned)atoi(buf);
			fclose(f);
		}
		if (s->port != 0)
			break;
		usleep(20000);
	}
	if (s->port == 0)
		return -1;
	snprintf(s->url, sizeof(s->url), "https://127.0.0.1:%u", s->port);
	snprintf(pstr, sizeof(pstr), "%u", s->port);
	pool_conf(&c, "127.0.0.1", pstr, ca);
	s->ctl = upstream_new(base, NULL, &c, &cause);
	free(cause);
	return s->ctl == NULL ? -1 : 0;
}

static void
sim_stop(struct sim *s)
{
	int	status;

	if (s->ctl != NULL)
		upstream_unref(s->ctl);
	s->ctl = NULL;
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	s->pid = 0;
}

struct ctl_result {
	int	done, status;
	char	body[4096];
};

static void
ctl_done(void *arg, struct up_result *res)
{
	struct ctl_result	*r = arg;
	size_t			 n = 0;

	r->done = 1;
	r->status = res->err == UP_OK ? res->status : -1;
	if (res->body != NULL)
		n = evbuffer_remove(res->body, r->body, sizeof(r->body) - 1);
	r->body[n] = '\0';
}

/* One control request (GET when json == NULL); the status, body in out. */
static int
ctl(struct sim *s, const char *path, const char *json, char *out, size_t outlen)
{
	struct ctl_result	 r;
	struct evbuffer		*head = evbuffer_new();
	struct iovec		 iov[2];
	unsigned long long	 deadline = now_ms() + 10000;

	memset(&r, 0, sizeof(r));
	evbuffer_add_printf(head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", json ? "POST" : "GET",
	    path, s->port);
	if (json != NULL)
		evbuffer_add_printf(head, "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n", strlen(json));
	evbuffer_add_printf(head, "\r\n");
	iov[0].iov_len = evbuffer_get_length(head);
	iov[0].iov_base = evbuffer_pullup(head, -1);
	iov[1].iov_base = (void *)(uintptr_t)(json ? json : "");
	iov[1].iov_len = json ? strlen(json) : 0;
	if (upstream_send(s->ctl, iov, 2, ctl_done, &r) == NULL)
		r.status = -1, r.done = 1;
	evbuffer_free(head);
	while (!r.done && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	if (out != NULL)
		snprintf(out, outlen, "%s", r.body);
	return r.status;
}

/* A number member "key": N of the stats. */
static long long
stat_of(struct sim *s, const char *name)
{
	char	body[4096], pat[256], *p;

	if (ctl(s, "/__vault/stats", NULL, body, sizeof(body)) != 200)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", name);
	if ((p = strstr(body, pat)) == NULL)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

static int
kv_write(struct sim *s, const char *path, const char *data)
{
	char	json[1024], body[256], *p;

	snprintf(json, sizeof(json), "{\"mount\":\"secret\",\"path\":\"%s\",\"data\":%s}",
	    path, data);
	if (ctl(s, "/__vault/kv", json, body, sizeof(body)) != 200 ||
	    (p = strstr(body, "\"version\":")) == NULL)
		return -1;
	return atoi(p + 10);
}

/* Issue a token through the control plane into out (remembered for the log scan). */
static int
new_token(struct sim *s, unsigned ttl_ms, char *out, size_t outlen)
{
	char	json[128], body[512], *p, *q;

	snprintf(json, sizeof(json), "{\"ttl_ms\":%u}", ttl_ms);
	if (ctl(s, "/__vault/token", json, body, sizeof(body)) != 200 ||
	    (p = strstr(body, "\"token\":\"")) == NULL || (q = strchr(p + 9, '"')) == NULL ||
	    (size_t)(q - p - 9) >= outlen)
		return -1;
	memcpy(out, p + 9, (size_t)(q - p - 9));
	out[q - p - 9] = '\0';
	if (nissued < 8)
		snprintf(issued[nissued++], sizeof(issued[0]), "%s", out);
	return 0;
}

/* A [vault] configuration for AppRole against s. */
static struct conf *
vconf(struct sim *s, const char *cafile)
{
	static char	sidf[PATH_MAX + 16];
	struct conf	*c = calloc(1, sizeof(*c));

	snprintf(sidf, sizeof(sidf), "%s/secret-id", tmp);
	c->vault_address = s->url;
	c->vault_ca_file = unconst(cafile);
	c->vault_namespace = unconst("");
	c->vault_token_file = unconst("");
	c->vault_role_id = (char *)ROLE_ID;
	c->vault_secret_id_file = sidf;
	c->vault_approle_mount = unconst("approle");
	c->vault_refresh_ms = 1000;
	c->vault_max_stale_ms = 0;
	c->vault_timeout_ms = 2000;
	return c;
}

/* What a watch has seen. */
struct rec {
	const char		*field;
	struct vault_watch	*w;
	int			 calls, oks, errs, unwatch_self;
	unsigned long long	 version;
	char			 value[128];
	const char		*err;
};

static void
rec_cb(void *arg, const struct vault_kv *kv, unsigned long long version, const char *err)
{
	struct rec	*r = arg;
	struct secret	*s;

	r->calls++;
	if (kv != NULL) {
		r->oks++;
		r->version = version;
		r->err = NULL;
		r->value[0] = '\0';
		if ((s = vault_kv_field(kv, r->field)) != NULL) {
			snprintf(r->value, sizeof(r->value), "%s", (const char *)s->p);
			secret_free(s);
		}
	} else {
		r->errs++;
		r->err = err;
	}
	if (r->unwatch_self) {
		vault_unwatch(r->w);
		r->w = NULL;
	}
}

/* ------------------------------------------------------------ live: scenarios */

/* AppRole: shared reads, rotation, refresh, renewal, re-login, faults. */
static void
live_approle(struct sim *s)
{
	struct rec		 m1 = { .field = "secret" }, m2 = { .field = "public_key" };
	struct rec		 p1 = { .field = "secret" }, m4 = { .field = "secret" };
	struct rec		 miss = { .field = "x" }, self = { .field = "secret" };
	struct conf		*c = vconf(s, ca);
	struct vault		*v;
	char			*cause = NULL;
	long long		 logins;
	int			 e;

	write_text(c->vault_secret_id_file, SECRET_ID "\n", 0600);
	CHECK(kv_write(s, "ocp/merchant", "{\"public_key\":\"pub-merchant\",\"secret\":\""
	    MERCHANT_V1 "\"}") == 1);
	CHECK(kv_write(s, "ocp/partner", "{\"secret\":\"" PARTNER_V1 "\"}") == 1);
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL && cause == NULL);
	if (v == NULL) {
		fprintf(stderr, "vault_new: %s\n", cause ? cause : "?");
		free(cause);
		free(c);
		return;
	}
	m1.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m1);
	m2.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m2);
	p1.w = vault_watch(v, "secret", "ocp/partner", rec_cb, &p1);
	CHECK(m1.w != NULL && m2.w != NULL && p1.w != NULL);
	CHECK(vault_watch(v, "sec/ret", "x", rec_cb, &miss) == NULL);
	CHECK(vault_watch(v, "secret", "a//b", rec_cb, &miss) == NULL);
	CHECK(m1.calls == 0 && !vault_healthy(v));	/* nothing from inside the calls */
	CHECK(vault_watch_age_ms(m1.w) == -1 && vault_watch_failing_ms(m1.w) == 0);

	/* first load: one login, one read per path, both fields from version 1 */
	RUN_UNTIL(m1.oks && m2.oks && p1.oks, 5000);
	CHECK(m1.version == 1 && m2.version == 1 && p1.version == 1);
	CHECK_SAME(m1.value, MERCHANT_V1);
	CHECK_SAME(m2.value, "pub-merchant");
	CHECK_SAME(p1.value, PARTNER_V1);
	CHECK(vault_healthy(v));
	CHECK(vault_watch_age_ms(m1.w) >= 0 && vault_watch_age_ms(m1.w) < 1000);
	CHECK(stat_of(s, "logins") == 1);
	CHECK(stat_of(s, "secret/ocp/merchant") == 1);

	/* rotation: a new version reaches both watches at once; partner is quiet */
	CHECK(kv_write(s, "ocp/merchant", "{\"public_key\":\"pub-merchant-2\",\"secret\":\""
	    MERCHANT_V2 "\"}") == 2);
	vault_refresh_all(v);
	RUN_UNTIL(m1.version == 2 && m2.version == 2, 3000);
	CHECK(m1.version == 2 && m2.version == 2 && m1.oks == 2 && m2.oks == 2);
	CHECK_SAME(m1.value, MERCHANT_V2);
	CHECK_SAME(m2.value, "pub-merchant-2");
	CHECK(p1.oks == 1);

	/* the periodic refresh finds version 3 by itself */
	CHECK(kv_write(s, "ocp/merchant", "{\"public_key\":\"pub-merchant-3\",\"secret\":\""
	    MERCHANT_V3 "\"}") == 3);
	RUN_UNTIL(m1.version == 3, 3000);
	CHECK(m1.version == 3 && m1.errs == 0);

	/* a late watch of a path already read gets the current version */
	m4.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m4);
	CHECK(m4.calls == 0);
	RUN_UNTIL(m4.oks, 1000);
	CHECK(m4.oks == 1 && m4.version == 3);
	CHECK_SAME(m4.value, MERCHANT_V3);
	vault_unwatch(m4.w);

	/* renewal at half the 3 s TTL keeps the one token */
	spin(3500);
	CHECK(stat_of(s, "renewals") >= 1);
	CHECK(stat_of(s, "logins") == 1);
	CHECK(vault_healthy(v) && m1.errs == 0);

	/* renewal refused: log in again, no read fails */
	logins = stat_of(s, "logins");
	CHECK(ctl(s, "/__vault/config", "{\"no_renew\":true}", NULL, 0) == 200);
	RUN_UNTIL(stat_of(s, "logins") > logins && stat_of(s, "renew_refused") >= 1, 4000);
	CHECK(stat_of(s, "logins") > logins && stat_of(s, "renew_refused") >= 1);
	CHECK(ctl(s, "/__vault/config", "{\"no_renew\":false}", NULL, 0) == 200);
	spin(300);
	CHECK(vault_healthy(v) && m1.errs == 0);

	/* every token revoked: the 403 on a read logs in again and retries */
	logins = stat_of(s, "logins");
	CHECK(ctl(s, "/__vault/expire-tokens", "{}", NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(stat_of(s, "logins") > logins && vault_healthy(v), 4000);
	CHECK(stat_of(s, "logins") > logins && vault_healthy(v));
	CHECK(m1.errs == 0 && p1.errs == 0);

	/* max TTL: renewals stop extending, so it logs in again ahead of expiry */
	CHECK(ctl(s, "/__vault/config", "{\"token_max_ttl_ms\":4000}", NULL, 0) == 200);
	CHECK(ctl(s, "/__vault/expire-tokens", "{}", NULL, 0) == 200);
	vault_refresh_all(v);
	logins = stat_of(s, "logins");
	spin(6000);
	CHECK(stat_of(s, "logins") >= logins + 1);
	CHECK(m1.errs == 0 && vault_healthy(v));
	CHECK(ctl(s, "/__vault/config", "{\"token_max_ttl_ms\":0}", NULL, 0) == 200);
	CHECK(ctl(s, "/__vault/expire-tokens", "{}", NULL, 0) == 200);	/* no capped token left */
	vault_refresh_all(v);
	spin(200);
	RUN_UNTIL(vault_healthy(v), 4000);
	CHECK(m1.errs == 0 && vault_healthy(v));

	/* a missing path: "secret not found"; unwatching it restores health */
	miss.w = vault_watch(v, "secret", "ocp/missing", rec_cb, &miss);
	RUN_UNTIL(miss.errs > 0, 3000);
	CHECK_STREQ(miss.err, "secret not found");
	CHECK(!vault_healthy(v));
	vault_unwatch(miss.w);
	CHECK(vault_healthy(v));

	/* sealed: every watch hears it; unsealed: back by itself, no new version */
	e = m1.errs;
	CHECK(ctl(s, "/__vault/seal", "{}", NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(m1.errs > e && p1.errs > 0, 3000);
	CHECK_STREQ(m1.err, "vault sealed or unavailable");
	CHECK(m2.errs > 0 && !vault_healthy(v) && vault_watch_age_ms(m1.w) >= 0);
	spin(300);
	CHECK(vault_watch_failing_ms(m1.w) >= 250 && vault_watch_failing_ms(m2.w) >= 250);
	CHECK(vault_watch_age_ms(m1.w) >= vault_watch_failing_ms(m1.w));
	CHECK(ctl(s, "/__vault/unseal", "{}", NULL, 0) == 200);
	RUN_UNTIL(vault_healthy(v), 4000);
	CHECK(vault_healthy(v) && m1.oks == 3 && vault_watch_age_ms(m1.w) < 2000);
	CHECK(vault_watch_failing_ms(m1.w) == 0);

	/* unreachable (connections closed) for 1.5 s, then back by itself */
	e = m1.errs;
	CHECK(ctl(s, "/__vault/down", "{\"ms\":1500}", NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(m1.errs > e, 3000);
	CHECK(m1.errs > e && m1.err != NULL);
	RUN_UNTIL(vault_healthy(v), 5000);
	CHECK(vault_healthy(v));

	/* hanging: the request times out (timeout_ms 2000), the loop keeps going */
	e = m1.errs;
	CHECK(ctl(s, "/__vault/down", "{\"ms\":2500,\"mode\":\"hang\"}", NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(m1.errs > e, 4000);
	CHECK_STREQ(m1.err, "vault did not answer in time");
	RUN_UNTIL(vault_healthy(v), 6000);
	CHECK(vault_healthy(v));

	/* policy 403: one re-authentication, then "permission denied by vault" */
	logins = stat_of(s, "logins");
	e = p1.errs;
	CHECK(ctl(s, "/__vault/deny", "{\"mount\":\"secret\",\"path\":\"ocp/partner\"}",
	    NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(p1.errs > e, 3000);
	CHECK_STREQ(p1.err, "permission denied by vault");
	CHECK(stat_of(s, "logins") == logins + 1);
	CHECK(ctl(s, "/__vault/deny", "{\"mount\":\"secret\",\"path\":\"ocp/partner\","
	    "\"deny\":false}", NULL, 0) == 200);
	RUN_UNTIL(vault_healthy(v), 4000);
	CHECK(vault_healthy(v) && p1.oks == 1);

	/* a watch that unwatches itself from its callback is never called again */
	self.unwatch_self = 1;
	self.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &self);
	RUN_UNTIL(self.calls > 0, 2000);
	CHECK(kv_write(s, "ocp/merchant", "{\"secret\":\"merchant-secret-value-4\"}") == 4);
	vault_refresh_all(v);
	RUN_UNTIL(m1.version == 4, 3000);
	CHECK(m1.version == 4 && self.calls == 1);
	CHECK(m2.oks == 4 && m2.value[0] == '\0');	/* public_key gone in v4 */

	vault_unwatch(m1.w);
	vault_unwatch(p1.w);
	vault_free(v);			/* m2 is still watched: freed with the client */
	free(c);
}

/* token_file: lookup-self, renewal, revoked token, new token in the file. */
static void
live_token_file(struct sim *s)
{
	struct rec	 m = { .field = "secret" };
	struct conf	*c = vconf(s, ca);
	char		 tf[PATH_MAX + 16], tok[128], *cause = NULL;
	struct vault	*v;
	long long	 lookups;

	snprintf(tf, sizeof(tf), "%s/token", tmp);
	CHECK(new_token(s, 3000, tok, sizeof(tok)) == 0);
	write_text(tf, tok, 0600);
	c->vault_token_file = tf;
	c->vault_role_id = unconst("");
	c->vault_secret_id_file = unconst("");
	lookups = stat_of(s, "lookups");
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v == NULL) {
		free(cause);
		free(c);
		return;
	}
	m.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m);
	RUN_UNTIL(m.oks > 0, 3000);
	CHECK(m.oks == 1 && vault_healthy(v));
	CHECK(stat_of(s, "lookups") == lookups + 1);
	spin(2500);
	CHECK(stat_of(s, "renewals") >= 1 && m.errs == 0);

	/* revoked: re-read the file (same token) and fail; a new token recovers */
	CHECK(ctl(s, "/__vault/expire-tokens", "{}", NULL, 0) == 200);
	vault_refresh_all(v);
	RUN_UNTIL(m.errs > 0, 3000);
	CHECK_STREQ(m.err, "vault refused the token from token_file");
	CHECK(!vault_healthy(v));
	CHECK(new_token(s, 3000, tok, sizeof(tok)) == 0);
	write_text(tf, tok, 0600);
	RUN_UNTIL(vault_healthy(v), 4000);
	CHECK(vault_healthy(v));

	/* SIGHUP: a token replaced in the file is picked up at once */
	lookups = stat_of(s, "lookups");
	CHECK(new_token(s, 3000, tok, sizeof(tok)) == 0);
	write_text(tf, tok, 0600);
	vault_refresh_all(v);
	RUN_UNTIL(stat_of(s, "lookups") > lookups, 2000);
	CHECK(stat_of(s, "lookups") == lookups + 1);
	spin(300);
	CHECK(vault_healthy(v));
	vault_free(v);
	free(c);
}

/* Wrong secret_id, then the right one in the file: recovers by itself. */
static void
live_bad_secret_id(struct sim *s)
{
	struct rec	 m = { .field = "secret" };
	struct conf	*c = vconf(s, ca);
	char		*cause = NULL;
	struct vault	*v;

	write_text(c->vault_secret_id_file, "wrong-secret-id-0000000000\n", 0600);
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v == NULL) {
		free(cause);
		free(c);
		return;
	}
	m.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m);
	RUN_UNTIL(m.errs > 0, 3000);
	CHECK_STREQ(m.err, "vault refused the AppRole login (role_id or secret_id)");
	write_text(c->vault_secret_id_file, SECRET_ID "\n", 0600);
	RUN_UNTIL(vault_healthy(v), 4000);
	CHECK(vault_healthy(v) && m.oks == 1);
	vault_free(v);
	free(c);
}

/* A CA that did not sign the server: refused. */
static void
live_wrong_ca(struct sim *s)
{
	struct rec	 m = { .field = "secret" };
	struct conf	*c = vconf(s, other_ca);
	char		*cause = NULL;
	struct vault	*v;

	write_text(c->vault_secret_id_file, SECRET_ID "\n", 0600);
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v != NULL) {
		m.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m);
		RUN_UNTIL(m.errs > 0, 3000);
		CHECK_STREQ(m.err, "TLS handshake with vault failed");
		CHECK(!vault_healthy(v) && m.oks == 0);
		vault_free(v);
	}
	free(cause);
	free(c);
}

/* Namespaces: the right one works, none gets no AppRole mount. */
static void
live_namespace(void)
{
	static const char *const extra[] = { "--namespace", "team-a", NULL };
	struct rec	 ok = { .field = "secret" }, bad = { .field = "secret" };
	struct conf	*c;
	struct sim	 s;
	char		*cause = NULL;
	struct vault	*v;

	if (sim_start(&s, extra) == -1) {
		fprintf(stderr, "FAIL: the namespace sim did not start\n");
		unit_failed++;
		sim_stop(&s);
		return;
	}
	CHECK(kv_write(&s, "ocp/merchant", "{\"secret\":\"" MERCHANT_V1 "\"}") == 1);
	c = vconf(&s, ca);
	write_text(c->vault_secret_id_file, SECRET_ID "\n", 0600);
	c->vault_namespace = unconst("team-a");
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v != NULL) {
		ok.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &ok);
		RUN_UNTIL(ok.oks > 0, 3000);
		CHECK(ok.oks == 1 && vault_healthy(v));
		CHECK_SAME(ok.value, MERCHANT_V1);
		vault_free(v);
	}
	c->vault_namespace = unconst("");
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v != NULL) {
		bad.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &bad);
		RUN_UNTIL(bad.errs > 0, 3000);
		CHECK_STREQ(bad.err, "no AppRole auth method at approle_mount");
		vault_free(v);
	}
	free(cause);
	free(c);
	sim_stop(&s);
}

/* Nobody listens: "cannot connect", then a server comes up there. */
static void
live_unreachable(void)
{
	struct rec	 m = { .field = "secret" };
	struct sim	 s;
	struct conf	*c;
	char		*cause = NULL;
	struct vault	*v;

	if (sim_start(&s, NULL) == -1) {
		fprintf(stderr, "FAIL: the sim did not start\n");
		unit_failed++;
		return;
	}
	c = vconf(&s, ca);
	write_text(c->vault_secret_id_file, SECRET_ID "\n", 0600);
	sim_stop(&s);			/* the port is now closed */
	v = vault_new(base, NULL, c, &cause);
	CHECK(v != NULL);
	if (v != NULL) {
		m.w = vault_watch(v, "secret", "ocp/merchant", rec_cb, &m);
		RUN_UNTIL(m.errs > 0, 3000);
		CHECK_STREQ(m.err, "cannot connect to vault");
		CHECK(!vault_healthy(v) && vault_watch_age_ms(m.w) == -1);
		spin(100);
		CHECK(vault_watch_failing_ms(m.w) >= 100);
		vault_free(v);
	}
	free(cause);
	free(c);
}

/* Settings vault_new refuses, with a reason and no secret in it. */
static void
live_conf_errors(struct sim *s)
{
	struct conf	*c = vconf(s, ca);
	char		 tf[PATH_MAX + 16], *cause;
	struct vault	*v;
	int		 i;

	snprintf(tf, sizeof(tf), "%s/token-open", tmp);
	write_text(tf, ROOT_TOKEN, 0644);
	for (i = 0; i < 10; i++) {
		struct conf	 d = *c;

		switch (i) {
		case 0: d.vault_address = unconst(""); break;
		case 1: d.vault_address = unconst("http://127.0.0.1:8200"); break;
		case 2: d.vault_address = unconst("https://127.0.0.1:8200/v1"); break;
		case 3: d.vault_token_file = tf; break;		/* both methods */
		case 4: d.vault_role_id = unconst(""); break;	/* neither */
		case 5: d.vault_secret_id_file = unconst("relative/path"); break;
		case 6: d.vault_secret_id_file = unconst("/nonexistent/secret-id"); break;
		case 7: d.vault_role_id = unconst(""); d.vault_secret_id_file = unconst("");
			d.vault_token_file = tf; break;		/* mode 0644 */
		case 8: d.vault_namespace = unconst("bad ns"); break;
		case 9: d.vault_ca_file = unconst("/nonexistent/ca.pem"); break;
		}
		cause = NULL;
		CHECK(vault_conf_check(&d, &cause) == (i == 6 || i == 7 || i == 9 ? 0 : -1));
		CHECK((cause == NULL) == (i == 6 || i == 7 || i == 9));
		free(cause);
		cause = NULL;
		v = vault_new(base, NULL, &d, &cause);
		CHECK(v == NULL && cause != NULL && strncmp(cause, "[vault] ", 8) == 0);
		if (v != NULL || cause == NULL)
			fprintf(stderr, "vault_new accepted bad settings #%d\n", i);
		CHECK(cause == NULL || strstr(cause, ROOT_TOKEN) == NULL);
		vault_free(v);
		free(cause);
	}
	vault_free(NULL);
	cause = NULL;
	CHECK(vault_conf_check(c, &cause) == 0 && cause == NULL);
	{
		struct conf	 d = *c;

		CHECK(vault_conf_same(c, &d));
		d.vault_refresh_ms = 2000;
		CHECK(!vault_conf_same(c, &d));
		d = *c;
		d.vault_namespace = NULL;		/* NULL and "" are the same */
		CHECK(vault_conf_same(c, &d));
		d.vault_role_id = unconst("other");
		CHECK(!vault_conf_same(c, &d));
	}
	free(c);
}

/* 1 if the file holds s. */
static int
file_has(const char *path, const char *s)
{
	FILE	*f = fopen(path, "r");
	char	*buf;
	size_t	 n;
	int	 found = 0;

	if (f == NULL || (buf = calloc(1, 1 << 22)) == NULL) {
		if (f != NULL)
			fclose(f);
		return 0;
	}
	n = fread(buf, 1, (1 << 22) - 1, f);
	buf[n] = '\0';
	found = strstr(buf, s) != NULL;
	free(buf);
	fclose(f);
	return found;
}

static void
test_live(const char *argv0)
{
	static const char *const ttl[] = { "--token-ttl-ms", "3000", NULL };
	static const char *const secrets[] = { SECRET_ID, ROOT_TOKEN, MERCHANT_V1, MERCHANT_V2,
	    MERCHANT_V3, PARTNER_V1, "merchant-secret-value-4", "wrong-secret-id-0000000000" };
	char		 logf[PATH_MAX + 16], line[1024], cmd[PATH_MAX + 32];
	struct sim	 s;
	int		 saved, fd, failed0 = unit_failed;
	size_t		 i;
	FILE		*f;

	if (find_tools(argv0) == -1) {
		printf("test_vault: live client checks skipped: no ocp-vault-sim or "
		    "gen-certs.sh next to %s\n", argv0);
		return;
	}
	if ((base = event_base_new()) == NULL)
		return;
	snprintf(logf, sizeof(logf), "%s/client.log", tmp);
	saved = dup(2);
	if ((fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600)) != -1) {
		dup2(fd, 2);
		close(fd);
	}
	log_init("test_vault");
	log_set_level(LOG_DEBUG);
	if (sim_start(&s, ttl) == -1) {
		fprintf(stderr, "FAIL: ocp-vault-sim did not start\n");
		unit_failed++;
	} else {
		live_approle(&s);
		live_token_file(&s);
		live_bad_secret_id(&s);
		live_wrong_ca(&s);
		live_conf_errors(&s);
	}
	sim_stop(&s);
	live_namespace();
	live_unreachable();
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		CHECK(!file_has(logf, secrets[i]));
	for (i = 0; i < (size_t)nissued; i++)
		CHECK(!file_has(logf, issued[i]));
	CHECK(file_has(logf, "vault: authenticated"));
	event_base_free(base);
	dup2(saved, 2);
	close(saved);
	if (unit_failed > failed0 && (f = fopen(logf, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (strncmp(line, "FAIL", 4) == 0 || strstr(line, "accepted") != NULL ||
			    strstr(line, "vault_new: ") != NULL)
				fputs(line, stderr);
		fclose(f);
		fprintf(stderr, "test_vault: client log kept in %s\n", logf);
	} else if (getenv("OCP_KEEP_TMP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		(void)!system(cmd);
	}
}

int
main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	test_parse_source();
	test_kv_parse_good();
	test_kv_parse_bad();
	test_live(argv[0]);
	UNIT_END("test_vault");
}
