/*
 * conf.c — the configuration: a schema table of every key (type, range,
 * default, help), parsed with inih into a fresh struct conf, validated as a
 * whole, and only then handed to the daemon.  Problems are collected, one
 * line each, "FILE:LINE: [section] key: message"; secrets are never printed.
 */
#ifndef CONF_H
#define CONF_H
#include <stddef.h>

struct policy;

#define CONF_DEFAULT_PATH	"/etc/ocp-proxy/ocp-proxy.ini"
#define CONF_MAX_PROFILES	32
#define CONF_MAX_ROUTES		16
/* bytes of NAME in [profile.NAME]: as for [caller.NAME] (POLICY_NAME_MAX) */
#define CONF_MAX_PROFILE_NAME	64
#define CONF_MAX_KEYS		48	/* schema keys outside [profile.*] and [caller.*] */

enum conf_bodies { BODIES_REDACTED, BODIES_NONE };
enum conf_sync { SYNC_BATCH, SYNC_ALWAYS, SYNC_NONE };
enum conf_redact_mode { REDACT_MODE_MASK, REDACT_MODE_FINGERPRINT };

struct conf_profile {
	char		*name;
	char		*public_key;		/* literal text or a secret source */
	char		*secret;		/* a secret source */
	char		*routes[CONF_MAX_ROUTES];
	size_t		 nroutes;
	int		 line;			/* of the section header */
	int		 key_line[3];		/* public_key, secret, routes; 0 = absent */
	int		 bad;			/* a problem was reported for it */
};

struct conf {
	char		*path;
	/* [listen] */
	char		*listen_address;
	unsigned	 socket_mode;
	char		*socket_group;		/* "" = the daemon's group */
	int		 allow_non_loopback;
	size_t		 max_body_bytes;
	size_t		 max_header_bytes;
	unsigned	 max_json_depth;
	unsigned	 max_connections;
	unsigned	 header_timeout_ms;
	unsigned	 body_timeout_ms;
	unsigned	 idle_timeout_ms;
	unsigned	 shutdown_timeout_ms;
	/* [upstream] */
	char		*upstream_url;
	char		*ca_file;
	unsigned	 connect_timeout_ms;
	unsigned	 handshake_timeout_ms;
	unsigned	 timeout_ms;
	unsigned	 upstream_max_connections;
	unsigned	 upstream_idle_timeout_ms;
	size_t		 max_response_bytes;
	/* derived from upstream_url */
	char		*up_host;
	char		*up_port;
	int		 up_host_is_ip;
	/* [state] */
	char		*state_dir;
	/* [audit] */
	char		*audit_path;
	enum conf_bodies audit_bodies;
	char		*audit_redact;
	enum conf_sync	 audit_sync;
	char		*audit_chain_key;	/* a secret source, "" = no chain */
	enum conf_redact_mode audit_redact_mode;
	/* [vault] */
	char		*vault_address;		/* "" = no Vault */
	char		*vault_ca_file;
	char		*vault_namespace;
	char		*vault_token_file;
	char		*vault_role_id;
	char		*vault_secret_id_file;
	char		*vault_approle_mount;
	unsigned	 vault_refresh_ms;
	unsigned	 vault_max_stale_ms;
	unsigned	 vault_timeout_ms;
	/* [log] */
	char		*log_level;
	/* [profile.*] */
	struct conf_profile profiles[CONF_MAX_PROFILES];
	size_t		 nprofiles;
	/* [caller.*] */
	struct policy	*policy;
	/* where each schema key was set (0 = not in the file), its section header */
	int		 key_line[CONF_MAX_KEYS];
	int		 sect_line[CONF_MAX_KEYS];
	unsigned char	 key_bad[CONF_MAX_KEYS];	/* a problem was reported for it */
};

struct conf_errs {
	char		**line;
	size_t		  n;
};

/*
 * Parse and validate path into a new conf.  Returns NULL when there was any
 * problem; every problem is appended to errs.
 */
struct conf	*conf_load(const char *path, struct conf_errs *errs);
/* Same from a string (tests, fuzzing); name is used in messages. */
struct conf	*conf_load_string(const char *text, const char *name, struct conf_errs *errs);
/*
 * For -t only: like conf_load, but the conf comes back even with problems
 * (NULL only when the file cannot be read), so that later checks can run on
 * what is sound: see conf_key_ok() and conf_profile.bad.  Never run it.
 */
struct conf	*conf_load_check(const char *path, struct conf_errs *errs);
/* 1 unless a problem was reported for [section] key (key NULL: any key of it). */
int		 conf_key_ok(const struct conf *, const char *section, const char *key);
void		 conf_free(struct conf *);
void		 conf_errs_add(struct conf_errs *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
void		 conf_errs_clear(struct conf_errs *);
/*
 * Append "FILE:LINE: [section] key: message" (key NULL: "[section]: ..."),
 * LINE that of the key, else of its section header; with neither in the
 * file the line is left out and the message says so.
 */
void		 conf_errs_key(struct conf_errs *, const struct conf *, const char *section,
		    const char *key, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));
/* The same for a key of [profile.NAME]. */
void		 conf_errs_profile(struct conf_errs *, const struct conf *,
		    const struct conf_profile *, const char *key, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));
/* A cause "[section] key ..." (upstream.c, vault.c) placed at that key's line. */
void		 conf_errs_cause(struct conf_errs *, const struct conf *, const char *section,
		    const char *cause);
/*
 * Two profiles with one key pair would each count nonces of their own, and
 * the API refuses the second use of a nonce: the message (%s: the earlier
 * profile) for the later profile's public_key, also used by gen_load().
 */
#define CONF_SAME_PUBLIC_KEY	"the same public key as [profile.%s]: one section serves " \
				"one API key pair (list several routes prefixes in one profile instead)"
/* The profile whose routes hold the longest prefix of path, or NULL. */
const struct conf_profile *conf_route(const struct conf *, const char *path, size_t len,
		    size_t *index);
/* Print every key with its default and help (for docs and -h). */
void		 conf_dump_schema(void);

#endif
