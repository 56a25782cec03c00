/*
 * ocp-sim — an OnChainPay API simulator for the ocp-proxy tests.
 *
 * One libevent loop serves HTTPS on loopback: the API paths of the catalogue
 * (signature, nonce and envelope as the real API) and a control plane under
 * /__sim/ (faults, records, stats, reset).  Signatures are verified with
 * OpenSSL's HMAC(), never with the proxy's signer.
 *
 * Files: ocp-sim.c (main, keys, TLS, listener), sim-http.c (request
 * dispatch, auth, nonce, faults), sim-control.c (/__sim/), sim-record.c
 * (record trail), sim-json.c (JSON helpers), sim-responses.c (success bodies).
 */
#ifndef SIM_H
#define SIM_H
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>

#define SIM_MAX_BODY_BYTES	(64u * 1024 * 1024)	/* evhttp request body cap */
#define SIM_MAX_HEADER_BYTES	(64u * 1024)
#define SIM_MAX_RECORDS		4096	/* kept in memory for /__sim/records */
#define SIM_MAX_JSON_DEPTH	256	/* deeper bodies are INVALID_JSON */
#define SIM_HUGE_DEFAULT	(8u * 1024 * 1024)
#define SIM_HUGE_MAX		(512u * 1024 * 1024)
#define SIM_NONCE_BUCKETS	1024	/* string-nonce hash buckets per key */
#define SIM_HTTP_TIMEOUT_S	120	/* default evhttp idle/read timeout */

enum sim_fault_mode {
	SIM_FAULT_NONE = 0,
	SIM_FAULT_DELAY,
	SIM_FAULT_CLOSE,
	SIM_FAULT_CLOSE_MID,
	SIM_FAULT_STATUS500,
	SIM_FAULT_GARBAGE,
	SIM_FAULT_HUGE,
	SIM_FAULT_NO_CTYPE,
	SIM_FAULT_STATUS204,
	SIM_FAULT_STATUS304,
};

struct sim_fault {
	enum sim_fault_mode	mode;
	long			ms;	/* delay */
	size_t			bytes;	/* huge */
	long			count;	/* requests left; 0 = until changed */
};

/* A string nonce already used with a key. */
struct sim_seen {
	struct sim_seen	*next;
	char		*s;
	size_t		 len;
};

/* One API key pair from keys.txt and its nonce state. */
#define SIM_WINDOW_MAX	256
/* --nonce-window: out-of-order numeric nonces tolerated (0 = strictly increasing). */
extern unsigned sim_nonce_window;

struct sim_key {
	struct sim_key	*next;
	char		*pub;
	unsigned char	*secret;
	size_t		 secret_len;
	char		*last_num;	/* normalized integer text, NULL = none */
	char		*recent[SIM_WINDOW_MAX];	/* --nonce-window ring */
	char		*floor;		/* highest nonce evicted from the ring */
	size_t		 nrecent, rpos;
	struct sim_seen	*seen[SIM_NONCE_BUCKETS];
};

/* A reply held back by the "delay" fault. */
struct sim_pending {
	struct sim_pending	*next, *prev;
	struct sim		*sim;
	struct event		*timer;
	struct evhttp_request	*req;
	int			 status;
	const char		*ctype;
	struct evbuffer		*body;
};

struct sim_stats {
	uint64_t	requests;	/* API (non-control) requests */
	uint64_t	connections;	/* TCP connections accepted */
	uint64_t	handshakes;	/* TLS handshakes completed */
	uint64_t	resumed;	/* ... of which resumed a session */
};

struct sim {
	struct event_base	*base;
	struct evhttp		*http;
	SSL_CTX			*ssl_ctx;
	int			 ssl_idx;	/* ex_data slot: struct sim_tls */
	struct sim_key		*keys;
	struct sim_fault	 fault;
	struct sim_stats	 stats;
	struct sim_pending	*pending;
	FILE			*record;
	uint64_t		 seq;
	char			*ring[SIM_MAX_RECORDS];	/* JSON lines */
	size_t			 ring_start, ring_len;
};

/* Per-TLS-connection flags (ex_data of the SSL object). */
struct sim_tls {
	int	counted;
};

/* The result of checking an API request, for the record and the reply. */
struct sim_check {
	const char	*pub;		/* x-api-public-key or NULL */
	struct sim_key	*key;
	const char	*error;		/* error name, NULL = accepted */
	int		 status;	/* HTTP status of that error */
	const char	*message;
	int		 sig_ok;
	char		 sig_hex[65];	/* server-computed; "" = no key */
	char		*nonce;		/* raw nonce text (malloc) or NULL */
	const char	*nonce_type;	/* "number", "string", other or NULL */
};

/* ocp-sim.c */
extern struct sim	*sim_global;	/* for the OpenSSL info callback */

/* sim-http.c */
void	sim_http_cb(struct evhttp_request *, void *);
void	sim_reply(struct evhttp_request *, int status, const char *ctype,
	    struct evbuffer *body);
void	sim_reply_error(struct evhttp_request *, int status, const char *name,
	    const char *message);
void	sim_pending_flush_all(struct sim *);
void	sim_nonce_clear(struct sim_key *);
const char *sim_method_name(enum evhttp_cmd_type);
int	sim_session_reused(struct evhttp_request *);

/* sim-control.c */
void	sim_control(struct sim *, struct evhttp_request *, const char *path);
const char *sim_fault_name(enum sim_fault_mode);

/* sim-record.c */
void	sim_record(struct sim *, struct evhttp_request *, const char *path,
	    const unsigned char *body, size_t len, const struct sim_check *,
	    int status, enum sim_fault_mode);
void	sim_records_json(struct sim *, struct evbuffer *);
void	sim_records_clear(struct sim *);

/* sim-json.c */
void	sim_json_str(struct evbuffer *, const void *s, size_t len);
void	sim_json_cstr(struct evbuffer *, const char *s);	/* NULL -> null */
int	sim_json_scan(const unsigned char *body, size_t len, char **nonce,
	    const char **nonce_type, int *has_nonce);
void	sim_uuid(char out[37]);
void	sim_hex_rand(char *out, size_t nbytes);	/* out[2*nbytes+1] */
void	sim_hex(const unsigned char *in, size_t n, char *out);
int64_t	sim_now_ms(void);

/* sim-responses.c */
int	sim_response(struct evbuffer *, const char *path, const char *pub);
int	sim_responses_check(void);

#endif
