/*
 * ocp-proxy.h — the daemon's shared state and module prototypes.
 * Pure modules (conf, signer, nonce, jbody, redact, httpp, catalogue) have
 * their own headers so they can be unit-tested and fuzzed alone.
 */
#ifndef OCP_PROXY_H
#define OCP_PROXY_H
#include <sys/queue.h>
#include <sys/types.h>
#include <time.h>
#include "conf.h"

#define OCP_VERSION		"0.1.0"
#define OCP_LISTEN_BACKLOG	511
#define OCP_ACCEPT_BACKOFF_MS	1000	/* pause accepting after EMFILE */
#define OCP_STATE_LOCK		"ocp-proxy.lock"	/* in [state] dir: one instance per dir */
#define OCP_STATE_TAIL		"audit.tail"	/* in [state] dir: the audit trail's tail */
#define OCP_EXIT_CUT		2	/* stopped, but requests were cut at shutdown_timeout_ms */
#define OCP_EXIT_AUDIT		3	/* stopped, but the audit trail's close record is missing */

struct event_base;
struct evdns_base;
struct event;
struct evconnlistener;
struct bufferevent;
struct evbuffer;
struct secret;
struct signer;
struct nonce;
struct upstream;
struct redact_set;
struct audit;
struct request;
struct keyslot;
struct vault;

/* One loaded key pair; requests in flight hold a reference. */
struct pkey {
	int		 refs;
	char		*public_key;
	struct secret	*secret;
	struct signer	*signer;
	char		 fp[17];	/* first 16 hex of SHA-256(public key) */
};

/* One configuration generation: swapped whole on reload. */
struct gen {
	int		 refs;
	struct conf	*conf;
	struct keyslot	*slots[CONF_MAX_PROFILES];	/* key slots, shared across gens */
	struct nonce	*nonces[CONF_MAX_PROFILES];	/* owned by the nonce table */
	struct upstream	*up;
	struct redact_set *redact;
	int		 keep_conf;	/* conf is proxy.start_conf: not freed with the gen */
};

/* A listening socket: one the proxy bound, or the one systemd passed. */
struct lsock {
	int		 fd;		/* -1: none */
	char		*desc;		/* "127.0.0.1:8780" or "unix:/path" */
	char		*unix_path;	/* the socket file we bound, or NULL */
	dev_t		 unix_dev;	/* only that file is removed: another */
	ino_t		 unix_ino;	/* may have replaced it meanwhile */
	gid_t		 unix_gid;	/* its group as bound (empty socket_group) */
};

struct client;
TAILQ_HEAD(clientq, client);
TAILQ_HEAD(requestq, request);

struct proxy {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct gen		*gen;
	struct conf		*start_conf;	/* the config read at start: restart-only keys */
	struct audit		*audit;
	struct secret		*audit_secret;	/* [audit] chain_key */
	struct signer		*audit_key;
	const char		*conf_path;
	struct evconnlistener	*listener;	/* accepts on lsock (which owns the fd) */
	struct lsock		 lsock;
	int			 listen_activated;	/* lsock was passed by systemd */
	int			 listen_exposed;	/* ... and is not loopback */
	struct event		*accept_pause;
	struct clientq		 clients;
	struct requestq		 requests;
	unsigned		 nclients;
	unsigned		 inflight;	/* requests not yet answered */
	int			 stopping;
	int			 cut;		/* requests cut at shutdown */
	int			 audit_unclosed;	/* the trail's close record is missing */
	struct event		*sig[4];
	struct event		*drain_timer;
	struct event		*watchdog;
	struct event		*status_ev;
	int			 keys_ready;
	int			 ready_sent;	/* READY=1 told systemd: keys were all up once */
	struct vault		*vault;
	int			 state_lock;	/* fd of OCP_STATE_LOCK in the running [state] dir */
	unsigned long long	 reqseq;
	char			 boot[9];	/* random per process: request id prefix */
};

extern struct proxy	*ocp;

/* proxy.c */
/* The warning when no [caller.*] is configured (%s: the address), in the log and -t. */
#define OCP_NO_CALLERS	"no [caller.*] section: any local process that can reach %s may " \
			"call every profile"
int		 proxy_base_new(struct proxy *);
int		 proxy_init(struct proxy *, const char *conf_path, int check_only);
void		 proxy_run(struct proxy *);
void		 proxy_free(struct proxy *);
struct gen	*gen_load(struct proxy *, struct conf *, int check_only,
		    struct conf_errs *);
void		 gen_unref(struct gen *);
void		 proxy_reload(struct proxy *);
void		 proxy_maybe_done(struct proxy *);
void		 proxy_nonces_close(void);
/* Load [audit] chain_key into px (no-op when unset); -1 with a line in errs. */
int		 proxy_load_audit_key(struct proxy *, const struct conf *, struct conf_errs *);
void		 proxy_free_audit_key(struct proxy *);

/* client.c */
struct policy_peer;
struct caller;
void		 client_accept(struct proxy *, int fd, const char *peer,
		    const struct policy_peer *cred);
/*
 * Who is calling, for request.c: the generation the request was checked
 * against (a reference moves to the caller of this function), the named
 * caller or NULL, whether it entered the caller's concurrency count (the
 * duty to caller_leave moves too), and its description for the audit.
 */
struct gen	*client_take(struct client *, struct caller **, int *entered, const char **id);
/* The profile whose route the path is on, for an audit line (NULL if none). */
const char	*client_profile(const struct client *);
const char	*client_request_id(const struct client *);
/* When the current request's first byte was read (CLOCK_MONOTONIC). */
void		 client_request_t0(const struct client *, struct timespec *);
size_t		 client_body_len(const struct client *, int status, size_t len);
/* The caller's name and identity for an audit line ("-" / NULL if none). */
void		 client_caller_info(const struct client *, const char **name, const char **id);
/* Ask for a Retry-After / WWW-Authenticate header on the next response. */
void		 client_set_retry_after(struct client *, unsigned seconds);
/* Send a complete response on a client (no Content-Type if ctype is NULL or ""). */
void		 client_respond(struct client *, int status, const char *ctype,
		    struct evbuffer *body, const char *reqid, int close_after);
void		 client_request_done(struct client *);
void		 client_set_request(struct client *, struct request *);
void		 client_close_idle(struct proxy *);
/* Release every connection (after the loop ended). */
void		 client_free_all(struct proxy *);
const char	*client_peer(const struct client *);

/* request.c */
/* A complete request; takes ownership of method, path and body (heap). */
void		 request_start(struct client *, char *method, char *path,
		    struct evbuffer *body, int body_ok);
/* Answer with a proxy error before any request object exists. */
void		 request_reject(struct client *, const char *method, const char *path,
		    size_t bytes_in, int status, const char *name, const char *msg,
		    int close_after);
void		 request_client_gone(struct request *);
/* Audit a request whose head arrived but whose body never did (no answer). */
void		 request_abandoned(struct client *, const char *method, const char *path,
		    size_t bytes_in, int status, const char *name);
#define REQUEST_ID_LEN	24	/* a request id with its NUL */
void		 request_new_id(char *id);
/* Shutdown deadline: answer 503 to every request still running. */
void		 request_cut_all(struct proxy *);
/* Free the scratch buffers kept between requests (at exit). */
void		 request_buf_release(void);

#endif
