/*
 * ocp-vault-sim — a HashiCorp Vault stand-in for the ocp-proxy tests.
 *
 * It implements the documented Vault HTTP API for what ocp-proxy uses, over
 * HTTPS on loopback with one libevent loop:
 *   GET  /v1/sys/health
 *   POST /v1/auth/<approle mount>/login       {"role_id","secret_id"}
 *   GET  /v1/auth/token/lookup-self
 *   POST /v1/auth/token/renew-self
 *   GET  /v1/<mount>/data/<path>              KV v2 read (data.data, data.metadata.version)
 *   POST /v1/<mount>/data/<path>              KV v2 write {"data":{...}}
 * with X-Vault-Token (or Authorization: Bearer) and X-Vault-Namespace
 * checks, token TTLs, 403/404/503 like Vault.  A control plane under
 * /__vault/ (no authentication) writes versions, seals, simulates outages,
 * expires tokens and reports counters.  Nothing secret goes to stderr.
 *
 * Files: ocp-vault-sim.c (main, TLS, listener, outages), vsim-api.c (/v1/),
 * vsim-control.c (/__vault/, JSON helpers, stats).
 */
#ifndef VSIM_H
#define VSIM_H
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <yajl/yajl_tree.h>

#define VSIM_MAX_BODY		(1024 * 1024)	/* request body cap */
#define VSIM_MAX_HEADERS	(64 * 1024)
#define VSIM_MAX_TOKENS		4096		/* live tokens kept */
#define VSIM_HTTP_TIMEOUT_S	120
#define VSIM_TOKEN_MAX		64		/* bytes of a token id */
#define VSIM_VERSION		"1.15.0+ocp-vault-sim"

struct vsim_token {
	struct vsim_token	*next;
	char			 id[VSIM_TOKEN_MAX + 1];	/* "hvs." + 32 hex */
	char			 accessor[25];
	const char		*how;		/* "root", "approle", "control" */
	int64_t			 created_ms;	/* monotonic */
	int64_t			 created_wall;	/* wall clock, ms */
	int64_t			 ttl_ms;	/* 0: never expires */
	int64_t			 expire_ms;	/* monotonic, 0: never */
	int64_t			 max_ms;	/* monotonic cap, 0: none */
	int			 renewable;
	int			 revoked;
};

/* One KV v2 secret: its latest version. */
struct vsim_secret {
	struct vsim_secret	*next;
	char			*mount, *path;
	unsigned long long	 version;
	char			*data;		/* JSON object text */
	int64_t			 created_wall;
	int			 deleted;	/* latest version deleted: 404 */
};

/* A per-path counter. */
struct vsim_count {
	struct vsim_count	*next;
	char			*key;
	uint64_t		 n;
};

struct vsim_stats {
	uint64_t		 requests;	/* /v1/ requests */
	uint64_t		 connections;
	uint64_t		 logins, login_failures;
	uint64_t		 lookups, renewals, renew_refused;
	uint64_t		 reads, read_not_found, writes;
	uint64_t		 denied;	/* 403 answers */
	uint64_t		 sealed;	/* 503 answers while sealed */
	uint64_t		 dropped;	/* connections closed while down */
	uint64_t		 namespace_rejects;
	uint64_t		 tokens_issued;
	struct vsim_count	*reads_by_path;
};

/* A request held without an answer ("hang" outage). */
struct vsim_held {
	struct vsim_held	*next;
	struct evhttp_request	*req;
};

struct vsim {
	struct event_base	*base;
	struct evhttp		*http;
	SSL_CTX			*ssl_ctx;
	char			*ns;		/* required namespace, NULL = none */
	char			*approle_mount;
	char			*role_id, *secret_id;
	int64_t			 token_ttl_ms;
	int64_t			 token_max_ttl_ms;
	int			 no_renew;
	int			 sealed;
	int64_t			 down_until;	/* monotonic ms; 0 = up */
	int			 down_hang;	/* hold requests instead of closing */
	struct event		*down_timer;
	struct vsim_held	*held;
	struct vsim_token	*tokens;
	unsigned		 ntokens;
	struct vsim_secret	*secrets;
	struct vsim_count	*denied_paths;	/* "mount/path" answered 403 */
	struct vsim_stats	 st;
};

/* ocp-vault-sim.c */
int64_t	vsim_now_ms(void);		/* monotonic */
int64_t	vsim_wall_ms(void);
void	vsim_down(struct vsim *, int64_t ms, int hang);
void	vsim_drop(struct vsim *, struct evhttp_request *);

/* vsim-api.c */
void	vsim_api(struct vsim *, struct evhttp_request *, const char *path);
struct vsim_token *vsim_token_issue(struct vsim *, const char *how, const char *id,
	    int64_t ttl_ms, int renewable);
unsigned vsim_tokens_expire(struct vsim *);
void	vsim_tokens_free(struct vsim *);
int	vsim_kv_write(struct vsim *, const char *mount, const char *path,
	    const yajl_val data, unsigned long long *version);
int	vsim_kv_delete(struct vsim *, const char *mount, const char *path);
void	vsim_secrets_free(struct vsim *);

/* vsim-control.c */
void	vsim_control(struct vsim *, struct evhttp_request *, const char *path);
void	vsim_reply(struct evhttp_request *, int status, struct evbuffer *body);
void	vsim_error(struct evhttp_request *, int status, const char *msg);
void	vsim_json_str(struct evbuffer *, const char *s);
void	vsim_time(struct evbuffer *, int64_t wall_ms);
char	*vsim_json_gen(const yajl_val);		/* malloc'd compact JSON */
yajl_val vsim_body_json(struct evhttp_request *, char *err, size_t errlen);
void	vsim_count(struct vsim_count **, const char *key);
int	vsim_denied(struct vsim *, const char *key);
void	vsim_counts_free(struct vsim_count **);

#endif
