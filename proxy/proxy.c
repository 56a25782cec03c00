/*
 * proxy.c — the daemon's runtime: configuration generations and their keys,
 * the listener, signals, reload and graceful shutdown.
 */
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "audit.h"
#include "audit_verify.h"
#include "fmt.h"
#include "keys.h"
#include "log.h"
#include "nonce.h"
#include "notify.h"
#include "ocp-proxy.h"
#include "policy.h"
#include "redact.h"
#include "secret.h"
#include "signer.h"
#include "upstream.h"
#include "vault.h"

struct proxy	*ocp;

/*
 * Nonce state outlives generations: one per profile name, all of them in the
 * state dir locked (a reload that moves it moves them all; one refused drops
 * what it opened).
 */
#define NONCE_TAB_MAX	(CONF_MAX_PROFILES * 2)
static struct {
	char		*name;
	struct nonce	*n;
} nonce_tab[NONCE_TAB_MAX];
static size_t nnonce;

/* The nonce state of a profile, opened once per process. */
static struct nonce *
proxy_nonce(const char *dir, const char *name, char **cause)
{
	size_t	i;

	for (i = 0; i < nnonce; i++)
		if (strcmp(nonce_tab[i].name, name) == 0)
			return nonce_tab[i].n;
	if (nnonce == sizeof(nonce_tab) / sizeof(nonce_tab[0])) {
		*cause = strdup("too many profiles over the process lifetime");
		return NULL;
	}
	if ((nonce_tab[nnonce].n = nonce_open(dir, name, cause)) == NULL)
		return NULL;
	nonce_tab[nnonce].name = strdup(name);
	return nonce_tab[nnonce++].n;
}

/* Close the nonce states from mark on (a refused reload opened them). */
static void
proxy_nonces_trim(size_t mark)
{
	while (nnonce > mark) {
		nnonce--;
		nonce_close(nonce_tab[nnonce].n);
		free(nonce_tab[nnonce].name);
	}
}

/* Close every nonce state (exit). */
void
proxy_nonces_close(void)
{
	proxy_nonces_trim(0);
}

/*
 * A reload moves the state dir (its lock is held): open the state of every
 * profile known before this reload (those below mark) in the new dir, durably
 * covering all it handed out or reserved, so that a restart there continues
 * above.  Those from mark on were opened there by gen_load.  Nothing is
 * switched yet: see proxy_nonces_commit; on failure the caller closes to[].
 */
static int
proxy_nonces_stage(const struct conf *c, size_t mark, struct nonce **to,
    struct conf_errs *errs)
{
	char	*cause = NULL;
	size_t	 i;

	for (i = 0; i < mark; i++) {
		if ((to[i] = nonce_open(c->state_dir, nonce_tab[i].name, &cause)) == NULL ||
		    nonce_cover(to[i], nonce_tab[i].n, &cause) == -1) {
			conf_errs_key(errs, c, "state", "dir", "%s",
			    cause ? cause : "out of memory");
			free(cause);
			return -1;
		}
	}
	return 0;
}

/* The reload is taken: every profile continues in its staged file. */
static void
proxy_nonces_commit(size_t mark, struct nonce **to)
{
	size_t	i;

	for (i = 0; i < mark; i++) {
		nonce_take(nonce_tab[i].n, to[i]);
		to[i] = NULL;
	}
}

/* Drop a generation reference. */
void
gen_unref(struct gen *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	if (g->up != NULL)
		upstream_unref(g->up);
	redact_set_free(g->redact);
	if (!g->keep_conf)
		conf_free(g->conf);
	free(g);
}

/* Keyed fingerprint of a redacted value (redact_mode = fingerprint). */
static void
proxy_fp(void *arg, const unsigned char *val, size_t len, char hex16[17])
{
	char	out[32];

	audit_verify_fingerprint(arg, val, len, out);
	memcpy(hex16, out + 12, 17);
}

/* Load the audit chain key; it lives as long as the process. */
int
proxy_load_audit_key(struct proxy *px, const struct conf *c, struct conf_errs *errs)
{
	char	*cause = NULL;

	if (*c->audit_chain_key == '\0')
		return 0;
	if ((px->audit_secret = secret_load(c->audit_chain_key, &cause)) == NULL ||
	    (px->audit_key = signer_new(px->audit_secret->p, px->audit_secret->len)) == NULL) {
		conf_errs_key(errs, c, "audit", "chain_key", "cannot load key: %s",
		    cause ? cause : "out of memory");
		free(cause);
		proxy_free_audit_key(px);
		return -1;
	}
	secret_guard_add(px->audit_secret);
	return 0;
}

void
proxy_free_audit_key(struct proxy *px)
{
	signer_free(px->audit_key);
	secret_free(px->audit_secret);
	px->audit_key = NULL;
	px->audit_secret = NULL;
}

/* 0 if dir is a directory the proxy may write in; else -1 and why. */
static int
proxy_dir_writable(const char *dir, char *why, size_t len)
{
	struct stat	st;

	errno = 0;	/* a directory that is not one: no stale cause */
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		fmt_copy(why, len, errno ? strerror(errno) : "not a directory");
		return -1;
	}
	if (access(dir, W_OK) == -1) {
		snprintf(why, len, "not writable: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Check the state directory is usable. */
static int
gen_check_state(const struct conf *c, struct conf_errs *errs)
{
	char	why[256];

	if (proxy_dir_writable(c->state_dir, why, sizeof(why)) == -1) {
		conf_errs_key(errs, c, "state", "dir", "%s: %s", c->state_dir, why);
		return -1;
	}
	return 0;
}

/*
 * -t: check the audit file could be opened for appending, as start-up does
 * (it is not opened: a running instance holds its lock).  An existing path
 * must be a regular file the proxy may write; a missing one needs a
 * directory it may create the file in.
 */
static int
gen_check_audit(const struct conf *c, struct conf_errs *errs)
{
	const char	*path = c->audit_path;
	char		 dir[4096], why[256];
	struct stat	 st;

	if (stat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			conf_errs_key(errs, c, "audit", "path", "%s: not a regular file", path);
			return -1;
		}
		if (access(path, W_OK) == -1) {
			conf_errs_key(errs, c, "audit", "path", "%s: not writable: %s", path,
			    strerror(errno));
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		conf_errs_key(errs, c, "audit", "path", "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fmt_dirname(dir, sizeof(dir), path) == -1) {
		conf_errs_key(errs, c, "audit", "path", "%s: path too long", path);
		return -1;
	}
	if (proxy_dir_writable(dir, why, sizeof(why)) == -1) {
		conf_errs_key(errs, c, "audit", "path", "%s: cannot be created: %s: %s", path,
		    dir, why);
		return -1;
	}
	return 0;
}

/* DIR/NAME into buf; -1 if it does not fit. */
static int
proxy_state_file(const char *dir, const char *name, char *buf, size_t len)
{
	return (size_t)snprintf(buf, len, "%s/%s", dir, name) >= len ? -1 : 0;
}

/*
 * One instance per state directory: its nonce reservations and audit tail
 * must have a single writer, or nonces repeat.  An exclusive flock on
 * DIR/ocp-proxy.lock, taken before anything is written and held until exit
 * (or until a reload moves to another dir); the kernel drops it with the
 * process (also on a crash), so a file left behind never blocks a start, and
 * the file is never removed: an unlink between another starter's open and
 * flock would let two instances lock two files.  The pid in it is only for
 * the message.  Returns the locked fd, or -1 with a line in errs.
 */
static int
proxy_lock_state(const struct conf *c, struct conf_errs *errs)
{
	char	 path[4096], buf[24], *end;
	ssize_t	 n;
	long	 pid;
	int	 fd, len;

	if (gen_check_state(c, errs) == -1)
		return -1;
	if (proxy_state_file(c->state_dir, OCP_STATE_LOCK, path, sizeof(path)) == -1) {
		conf_errs_key(errs, c, "state", "dir", "%s: path too long", c->state_dir);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd == -1) {
		conf_errs_key(errs, c, "state", "dir", "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			conf_errs_key(errs, c, "state", "dir", "%s: cannot lock: %s", path,
			    strerror(errno));
		} else {
			/* the holder may not have written its pid yet */
			n = pread(fd, buf, sizeof(buf) - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			pid = strtol(buf, &end, 10);
			if (pid > 0 && end != buf && *end == '\n')
				conf_errs_key(errs, c, "state", "dir", "%s is in use by another "
				    "ocp-proxy (pid %ld holds %s): one instance per state directory",
				    c->state_dir, pid, OCP_STATE_LOCK);
			else
				conf_errs_key(errs, c, "state", "dir", "%s is in use by another "
				    "ocp-proxy (it holds %s): one instance per state directory",
				    c->state_dir, OCP_STATE_LOCK);
		}
		close(fd);
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)len, 0) != len)
		log_warn("%s: cannot write the pid: %s", path, strerror(errno));
	return fd;	/* held until exit, or until a reload moves the state dir */
}

/*
 * Whether c names another state dir than the one locked.  The same dir
 * spelled otherwise holds the very lock file we have open: locking it again
 * would conflict with ourselves.
 */
static int
proxy_state_moved(const struct proxy *px, const struct conf *c)
{
	struct stat	held, st;
	char		path[4096];

	if (strcmp(c->state_dir, px->gen->conf->state_dir) == 0)
		return 0;
	if (proxy_state_file(c->state_dir, OCP_STATE_LOCK, path, sizeof(path)) == -1)
		return 1;	/* proxy_lock_state says why */
	return fstat(px->state_lock, &held) == -1 || stat(path, &st) == -1 ||
	    held.st_dev != st.st_dev || held.st_ino != st.st_ino;
}

/*
 * The key of a profile a keys_load() cause is about: keys.c starts it so when
 * the public key failed ("public_key: SOURCE...", "public key must...",
 * "with a Vault secret, public_key must..."); anything else is the secret's.
 * Only the start counts: a path may hold any words.
 */
static const char *
gen_key_blame(const char **cause)
{
	if (strncmp(*cause, "public_key: ", 12) == 0)
		return (*cause += 12, "public_key");
	if (strncmp(*cause, "secret: ", 8) == 0)
		return (*cause += 8, "secret");
	if (strncmp(*cause, "public key ", 11) == 0 || strncmp(*cause, "public_key ", 11) == 0 ||
	    strncmp(*cause, "with a Vault secret, public_key ", 32) == 0)
		return "public_key";
	return "secret";
}

/*
 * -t: fetch the Vault keys keys_load() started, on the private loop, each
 * bounded by the client's own timeouts (every step: login or token lookup,
 * read, and one re-authentication and re-read after a 403), and report each
 * one that fails at its profile's line.  The client's log lines are held
 * back: the problem line carries the cause.
 */
static void
gen_check_vault_keys(struct proxy *px, const struct conf *c, struct gen *g,
    struct conf_errs *errs)
{
	enum log_level		 lvl = log_get_level();
	unsigned long long	 t = c->vault_timeout_ms ? c->vault_timeout_ms : 10000;
	const char		*why, *key;
	char			*cause;
	size_t			 i;

	log_set_level(LOG_ERR);
	keys_check_wait(px->base, 4 * t + 1000);
	log_set_level(lvl);
	for (i = 0; i < c->nprofiles; i++) {
		if (g->slots[i] == NULL || keys_check_result(g->slots[i], &cause) == 0)
			continue;
		why = cause ? cause : "out of memory";
		key = gen_key_blame(&why);
		conf_errs_profile(errs, c, &c->profiles[i], key, "cannot load key: %s", why);
		free(cause);
	}
}

/*
 * Two profiles whose sources gave one public key (conf.c refused equal text):
 * each would count nonces of its own, and the API refuses a nonce used twice.
 * Reported at the later profile's public_key; the keys are never printed.
 */
static void
gen_check_same_keys(const struct conf *c, const struct gen *g, struct conf_errs *errs)
{
	const char	*a, *b;
	size_t		 i, j;

	for (i = 1; i < c->nprofiles; i++) {
		if (g->slots[i] == NULL || (b = keys_pending_public(g->slots[i])) == NULL)
			continue;
		for (j = 0; j < i; j++) {
			if (g->slots[j] == NULL || (a = keys_pending_public(g->slots[j])) == NULL ||
			    strcmp(a, b) != 0)
				continue;
			conf_errs_profile(errs, c, &c->profiles[i], "public_key",
			    CONF_SAME_PUBLIC_KEY, c->profiles[j].name);
			break;
		}
	}
}

/*
 * Build a generation from a parsed conf: keys, nonces, redaction, pool.
 * With -t the conf may hold refused keys (conf_load_check): what depends on
 * one is skipped, the rest still checked.
 */
struct gen *
gen_load(struct proxy *px, struct conf *c, int check_only, struct conf_errs *errs)
{
	struct gen	*g;
	char		*cause = NULL;
	const char	*why, *key;
	size_t		 i, before = errs->n;
	int		 key_gate, state_ok = conf_key_ok(c, "state", "dir");

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->refs = 1;
	g->conf = c;
	if (!conf_key_ok(c, "audit", "redact"))
		;	/* reported */
	else if ((g->redact = redact_set_new(c->audit_redact, &cause)) == NULL) {
		conf_errs_key(errs, c, "audit", "redact", "%s", cause ? cause : "out of memory");
		free(cause);
	} else if (c->audit_redact_mode == REDACT_MODE_FINGERPRINT && px->audit_key != NULL)
		redact_set_fingerprint(g->redact, proxy_fp, px->audit_key);
	if (state_ok)
		(void)gen_check_state(c, errs);
	for (i = 0; i < c->nprofiles && errs->n == before && state_ok; i++) {
		if ((g->nonces[i] = proxy_nonce(c->state_dir, c->profiles[i].name, &cause)) == NULL) {
			conf_errs_key(errs, c, "state", "dir", "%s", cause ? cause : "out of memory");
			free(cause);
		}
	}
	if (check_only && conf_key_ok(c, "audit", "path"))
		(void)gen_check_audit(c, errs);
	if (errs->n == before && !check_only) {
		if (px->gen != NULL && upstream_same(px->gen->conf, c)) {
			g->up = px->gen->up;
			upstream_ref(g->up);
		} else if ((g->up = upstream_new(px->base, px->dns, c, &cause)) == NULL) {
			conf_errs_cause(errs, c, "upstream", cause ? cause : "out of memory");
			free(cause);
		}
	} else if (conf_key_ok(c, "upstream", NULL)) {	/* -t: independent of the above */
		struct upstream *up = upstream_new(NULL, NULL, c, &cause);
		if (up == NULL) {
			conf_errs_cause(errs, c, "upstream", cause ? cause : "out of memory");
			free(cause);
		}
		upstream_unref(up);
	}
	key_gate = errs->n != before && !check_only;	/* -t reports every problem */
	/* keys last: a reload refused above leaves every key as it was */
	for (i = 0; i < c->nprofiles && !key_gate; i++) {
		cause = NULL;
		if (c->profiles[i].bad)
			continue;	/* -t: its config was refused, reported */
		if ((g->slots[i] = keys_slot(c->profiles[i].name)) == NULL ||
		    keys_load(g->slots[i], &c->profiles[i], check_only, px->gen != NULL,
		    px->vault, c->vault_max_stale_ms, &cause) == -1) {
			why = cause ? cause : "out of memory";
			key = gen_key_blame(&why);
			conf_errs_profile(errs, c, &c->profiles[i], key, "cannot load key: %s", why);
			g->slots[i] = NULL;
		}
		free(cause);
	}
	if (check_only && px->vault != NULL)
		gen_check_vault_keys(px, c, g, errs);
	if (!key_gate)
		gen_check_same_keys(c, g, errs);
	if (errs->n != before) {
		g->conf = NULL;		/* the caller still owns c */
		gen_unref(g);
		return NULL;
	}
	return g;
}

/* "IP:port", "[IPv6]:port" or "unix:PATH" of a socket address. */
static void
proxy_sockaddr_desc(const struct sockaddr *sa, char *desc, size_t len)
{
	char	h[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_UNIX) {
		snprintf(desc, len, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, h, sizeof(h));
		snprintf(desc, len, "[%s]:%u", h, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, h, sizeof(h));
		snprintf(desc, len, "%s:%u", h, ntohs(((const struct sockaddr_in *)sa)->sin_port));
	}
}

/* Accepting resumes after a pause for EMFILE or the connection limit. */
static void
proxy_accept_resume(evutil_socket_t fd, short ev, void *arg)
{
	struct proxy	*px = arg;

	if (px->listener != NULL && !px->stopping &&
	    px->nclients < px->gen->conf->max_connections)
		evconnlistener_enable(px->listener);
}

/* A new connection from the listener. */
static void
proxy_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct proxy	*px = arg;
	char		 peer[96];
	struct ucred	 uc;
	socklen_t	 len = sizeof(uc);
	struct policy_peer cred;

	memset(&cred, 0, sizeof(cred));
	if (sa->sa_family == AF_UNIX) {
		cred.is_unix = 1;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
			snprintf(peer, sizeof(peer), "unix:uid=%u,gid=%u,pid=%d",
			    (unsigned)uc.uid, (unsigned)uc.gid, (int)uc.pid);
			cred.uid = (unsigned)uc.uid;
			cred.gid = (unsigned)uc.gid;
			cred.pid = (int)uc.pid;
		} else {	/* unknown peer: an impossible uid that matches no caller */
			snprintf(peer, sizeof(peer), "unix:unknown");
			cred.uid = cred.gid = (unsigned)-1;
		}
	} else
		proxy_sockaddr_desc(sa, peer, sizeof(peer));
	client_accept(px, fd, peer, &cred);
	if (px->nclients >= px->gen->conf->max_connections)
		evconnlistener_disable(l);	/* the kernel backlog holds the rest */
}

/* accept(2) failed: back off on descriptor exhaustion instead of spinning. */
static void
proxy_accept_error(struct evconnlistener *l, void *arg)
{
	struct proxy	*px = arg;
	struct timeval	 tv = { OCP_ACCEPT_BACKOFF_MS / 1000, (OCP_ACCEPT_BACKOFF_MS % 1000) * 1000 };
	int		 err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		log_warn("accept: %s; pausing new connections for %d ms", strerror(err),
		    OCP_ACCEPT_BACKOFF_MS);
		evconnlistener_disable(l);
		evtimer_add(px->accept_pause, &tv);
		return;
	}
	log_warn("accept: %s", strerror(err));
}

/*
 * Whether a process listens on the unix socket at sun: a connect that
 * succeeds or finds the backlog full (EAGAIN) says so; ECONNREFUSED is a
 * socket file left behind by a process gone, ENOENT one removed meanwhile.
 * Anything else (EACCES: not ours to connect to) cannot tell: -1; no socket
 * to try with: -2 (errno says why for both).
 */
static int
proxy_unix_live(const struct sockaddr_un *sun)
{
	int	fd, rc, err;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return -2;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		rc = 1;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		rc = 0;
	else
		rc = -1;
	err = errno;
	close(fd);
	errno = err;	/* the cause for rc -1 */
	return rc;
}

/* Remove our socket file, unless someone else's has replaced it meanwhile. */
static void
proxy_lsock_unlink(const struct lsock *ls)
{
	struct stat	st;

	if (ls->unix_path != NULL && lstat(ls->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == ls->unix_dev && st.st_ino == ls->unix_ino)
		unlink(ls->unix_path);
}

/* Close a listening socket (free its listener first) and remove its file if ours. */
static void
proxy_lsock_close(struct lsock *ls)
{
	if (ls->fd != -1)
		close(ls->fd);
	proxy_lsock_unlink(ls);
	free(ls->desc);
	free(ls->unix_path);
	memset(ls, 0, sizeof(*ls));
	ls->fd = -1;
}

/* A listening socket could not be made: undo what was, -1 with the cause (errno kept). */
static int
proxy_lsock_fail(struct lsock *ls, char **cause, const char *fmt, ...)
{
	va_list	ap;
	int	err = errno;

	va_start(ap, fmt);
	if (vasprintf(cause, fmt, ap) == -1)
		*cause = NULL;
	va_end(ap);
	proxy_lsock_close(ls);
	errno = err;
	return -1;
}

/*
 * Give a unix socket file socket_group (when set; else gid, -1: as it is)
 * and socket_mode.  -1 with the cause.
 */
static int
proxy_unix_perms(const char *path, const struct conf *c, gid_t gid, char **cause)
{
	struct group	*gr;
	struct stat	 st;
	char		*end;

	if (*c->socket_group != '\0') {
		gr = getgrnam(c->socket_group);
		gid = gr ? gr->gr_gid : (gid_t)strtoul(c->socket_group, &end, 10);
		if (gr == NULL && (*end != '\0' || end == c->socket_group))
			return (*cause = fmt_alloc("[listen] socket_group: no group %s",
			    c->socket_group), -1);
	}
	/*
	 * A reload that changes both: narrow the mode to what the old and the
	 * new one both allow first, so the new group never gets the old rights.
	 */
	if (gid != (gid_t)-1 && (stat(path, &st) == -1 ||
	    chmod(path, st.st_mode & (mode_t)c->socket_mode & 0777) == -1 ||
	    chown(path, (uid_t)-1, gid) == -1))
		return (*cause = fmt_alloc("[listen] socket_group: chown %s: %s", path,
		    strerror(errno)), -1);
	if (chmod(path, (mode_t)c->socket_mode) == -1)
		return (*cause = fmt_alloc("listen %s: %s", path, strerror(errno)), -1);
	return 0;
}

/*
 * Bind a unix socket with no window in which it is more open than
 * configured.  -1 with the cause, and nothing left behind.
 */
static int
proxy_listen_unix(const struct conf *c, struct lsock *ls, char **cause)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = c->listen_address + 5;
	mode_t			 old;
	int			 rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return proxy_lsock_fail(ls, cause, "[listen] address: unix socket path too long");
	strcpy(sun.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return proxy_lsock_fail(ls, cause, "[listen] address: %s exists and is "
			    "not a socket", path);
		/* never take over a live instance's socket: it would lose its callers */
		if ((rc = proxy_unix_live(&sun)) == 1)
			return proxy_lsock_fail(ls, cause, "[listen] address: unix:%s: another "
			    "process is listening on it", path);
		if (rc == -1)
			return proxy_lsock_fail(ls, cause, "[listen] address: unix:%s: cannot "
			    "tell whether another process is listening on it: %s", path,
			    strerror(errno));
		if (rc == -2)
			return proxy_lsock_fail(ls, cause, "socket: %s", strerror(errno));
		unlink(path);
	}
	if ((ls->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
		return proxy_lsock_fail(ls, cause, "socket: %s", strerror(errno));
	old = umask((mode_t)(~c->socket_mode & 0777));
	rc = bind(ls->fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1)
		return proxy_lsock_fail(ls, cause, "bind %s: %s", path, strerror(errno));
	if (lstat(path, &st) == -1)
		return proxy_lsock_fail(ls, cause, "listen %s: %s", path, strerror(errno));
	if ((ls->unix_path = strdup(path)) == NULL) {
		unlink(path);	/* just bound: ours */
		return proxy_lsock_fail(ls, cause, "out of memory");
	}
	ls->unix_dev = st.st_dev;
	ls->unix_ino = st.st_ino;
	ls->unix_gid = st.st_gid;
	if (proxy_unix_perms(path, c, (gid_t)-1, cause) == -1) {
		proxy_lsock_close(ls);
		return -1;
	}
	if (listen(ls->fd, OCP_LISTEN_BACKLOG) == -1)
		return proxy_lsock_fail(ls, cause, "listen %s: %s", path, strerror(errno));
	if ((ls->desc = strdup(c->listen_address)) == NULL)
		return proxy_lsock_fail(ls, cause, "out of memory");
	return 0;
}

/*
 * The first directory of path's chain (each prefix of path that ends before
 * a '/', and path itself) that everyone may write to without the sticky bit:
 * its name into bad, its mode into *mode, 1.  0 when there is none.  A
 * prefix that cannot be examined is left to bind to report.
 */
static int
proxy_dir_chain_unsafe(const char *path, char *bad, size_t badlen, mode_t *mode)
{
	struct stat	 st;
	size_t		 i, n = strlen(path);

	for (i = 0; i <= n; i++) {
		if (i < n && path[i] != '/')
			continue;
		if (i == 0)	/* the root of an absolute path */
			snprintf(bad, badlen, "/");
		else if (path[i - 1] == '/')
			continue;	/* "//", or the root again */
		else if (i < badlen)
			snprintf(bad, badlen, "%.*s", (int)i, path);
		else
			return 0;
		if (stat(bad, &st) == -1 || !S_ISDIR(st.st_mode))
			return 0;
		if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0) {
			*mode = st.st_mode;
			return 1;
		}
	}
	return 0;
}

/*
 * Refuse a unix socket where another local user could replace it: in a
 * directory, or below one, that everyone may write to without the sticky
 * bit (whoever may rename an ancestor may put a directory of their own in
 * its place).  Both the path as written (a symbolic link's own directory)
 * and the directories it resolves to are examined.  -1 with the error
 * recorded in errs.
 */
static int
proxy_unix_dir_check(const struct conf *c, struct conf_errs *errs)
{
	const char	*path = c->listen_address + 5;
	char		 dir[sizeof(((struct sockaddr_un *)0)->sun_path)], bad[PATH_MAX];
	char		*real;
	mode_t		 mode = 0;
	int		 unsafe;

	if (fmt_dirname(dir, sizeof(dir), path) == -1)
		return 0;	/* too long: proxy_listen_unix says so */
	unsafe = proxy_dir_chain_unsafe(dir, bad, sizeof(bad), &mode);
	if (!unsafe && (real = realpath(dir, NULL)) != NULL) {
		unsafe = proxy_dir_chain_unsafe(real, bad, sizeof(bad), &mode);
		free(real);
	}
	if (!unsafe)
		return 0;	/* or unreadable: bind says what is wrong */
	conf_errs_key(errs, c, "listen", "address", "unix:%s: the directory %s is writable "
	    "by everyone without the sticky bit (mode %04o): any local user could replace the "
	    "socket; use a directory only the service may write, such as /run/ocp-proxy",
	    path, bad, (unsigned)(mode & 07777));
	return -1;
}

/*
 * Bind a TCP socket and learn the port actually bound (port 0 in tests).
 * -1 with the cause (errno of a failed bind kept), nothing left open.
 */
static int
proxy_listen_tcp(const struct conf *c, struct lsock *ls, char **cause)
{
	struct addrinfo		 hints, *ai;
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	char			*host, *port, desc[128];
	int			 one = 1, rc, err;

	if ((host = strdup(c->listen_address)) == NULL)
		return proxy_lsock_fail(ls, cause, "out of memory");
	port = strrchr(host, ':');	/* conf.c checked there is one */
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &ai);
	free(host);
	if (rc != 0)
		return proxy_lsock_fail(ls, cause, "[listen] address %s: %s", c->listen_address,
		    gai_strerror(rc));
	if ((ls->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		err = errno;
		freeaddrinfo(ai);
		return proxy_lsock_fail(ls, cause, "socket: %s", strerror(err));
	}
	setsockopt(ls->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	rc = bind(ls->fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(ls->fd, OCP_LISTEN_BACKLOG) == -1 ? -1 : 0;
	err = errno;
	freeaddrinfo(ai);
	errno = err;
	if (rc == -1)
		return proxy_lsock_fail(ls, cause, "bind %s: %s", c->listen_address, strerror(err));
	getsockname(ls->fd, (struct sockaddr *)&ss, &sl);
	proxy_sockaddr_desc((struct sockaddr *)&ss, desc, sizeof(desc));
	if ((ls->desc = strdup(desc)) == NULL)
		return proxy_lsock_fail(ls, cause, "out of memory");
	return 0;
}

/* Bind [listen] address into ls: 0, or -1 with the cause and nothing left behind. */
static int
proxy_lsock_open(const struct conf *c, struct lsock *ls, char **cause)
{
	memset(ls, 0, sizeof(*ls));
	ls->fd = -1;
	*cause = NULL;
	if (strncmp(c->listen_address, "unix:", 5) == 0)
		return proxy_listen_unix(c, ls, cause);
	return proxy_listen_tcp(c, ls, cause);
}

/* 1 for a unix socket or a loopback address (127/8, ::1, ::ffff:127/104). */
static int
proxy_sockaddr_local(const struct sockaddr *sa)
{
	const struct sockaddr_in6	*s6 = (const struct sockaddr_in6 *)sa;
	const unsigned char		*b = s6->sin6_addr.s6_addr;

	if (sa->sa_family == AF_UNIX)
		return 1;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return 0;
	if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
		return 1;
	return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && b[12] == 127;
}

/*
 * The rule conf.c applies to [listen] address, for a socket systemd passed
 * (ListenStream= may name any interface): not loopback needs
 * allow_non_loopback and named callers, or this would be an open signer.
 */
static int
proxy_exposure_check(const struct proxy *px, const struct conf *c, const char **why)
{
	if (!px->listen_exposed)
		return 0;
	if (!c->allow_non_loopback)
		*why = "is not a loopback address (set [listen] allow_non_loopback = yes "
		    "to permit it)";
	else if (policy_ncallers(c->policy) == 0)
		*why = "is not loopback: without [caller.*] sections the proxy serves only "
		    "loopback or a unix socket; name the callers to listen elsewhere";
	else
		return 0;
	return -1;
}

/* Take the socket passed by systemd (ocp-proxy.socket) into px->lsock; -1 if none. */
static int
proxy_activated_fd(struct proxy *px, const struct conf *c)
{
	const char		*pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	char			 desc[160];
	const char		*why;
	int			 fd = 3;	/* SD_LISTEN_FDS_START */

	if (pid == NULL || fds == NULL || strtol(pid, NULL, 10) != (long)getpid() ||
	    strtol(fds, NULL, 10) < 1)
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		fatalx("LISTEN_FDS: fd 3 is not a socket");
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	px->listen_activated = 1;
	px->listen_exposed = !proxy_sockaddr_local((struct sockaddr *)&ss);
	proxy_sockaddr_desc((struct sockaddr *)&ss, desc, sizeof(desc));
	px->lsock.fd = fd;
	if ((px->lsock.desc = strdup(desc)) == NULL)
		fatalx("out of memory");
	if (proxy_exposure_check(px, c, &why) == -1)
		fatalx("socket activation: the socket passed by systemd, %s, %s", desc, why);
	log_info("using the socket passed by systemd (socket activation)");
	return fd;
}

/* A listener accepting on fd for px (the caller keeps the fd); NULL if none. */
static struct evconnlistener *
proxy_listener_new(struct proxy *px, int fd, unsigned flags)
{
	struct evconnlistener	*l;

	l = evconnlistener_new(px->base, proxy_accept_cb, px, LEV_OPT_CLOSE_ON_EXEC | flags,
	    -1, fd);
	if (l != NULL)
		evconnlistener_set_error_cb(l, proxy_accept_error);
	return l;
}

/* Stop listening: no more accepts, the socket closed and its file removed if ours. */
static void
proxy_listen_close(struct proxy *px)
{
	if (px->listener != NULL)
		evconnlistener_free(px->listener);
	px->listener = NULL;
	proxy_lsock_close(&px->lsock);
}

/* Set up the listener (or take a socket-activated one); start-up fails here. */
static void
proxy_listen(struct proxy *px, const struct conf *c)
{
	char	*cause = NULL;

	if (proxy_activated_fd(px, c) == -1 && proxy_lsock_open(c, &px->lsock, &cause) == -1)
		fatalx("%s", cause ? cause : "out of memory");
	if ((px->listener = proxy_listener_new(px, px->lsock.fd, 0)) == NULL)
		fatalx("cannot listen on %s", px->lsock.desc);
	px->accept_pause = evtimer_new(px->base, proxy_accept_resume, px);
	log_info("listening on %s", px->lsock.desc);
}

/*
 * What a reload prepares for [listen] before it is taken: the socket of a
 * changed address, or the former mode and group of the socket file whose
 * socket_mode / socket_group it changed.  Dropped (undone) if it is refused.
 */
struct listen_stage {
	struct lsock		 ls;
	struct evconnlistener	*l;		/* on ls, disabled until taken */
	int			 perms;		/* the file had these: */
	mode_t			 mode;
	gid_t			 gid;
};

/* The port of a "HOST:PORT" address; 0 for a unix one. */
static unsigned long
proxy_addr_port(const char *addr)
{
	const char	*colon = strrchr(addr, ':');

	if (strncmp(addr, "unix:", 5) == 0 || colon == NULL)
		return 0;
	return strtoul(colon + 1, NULL, 10);
}

/* A reload's [listen] problem at the key its cause names, else at address. */
static void
proxy_listen_blame(struct conf_errs *errs, const struct conf *c, const char *cause,
    const char *hint)
{
	if (cause == NULL)
		conf_errs_key(errs, c, "listen", "address", "out of memory");
	else if (strncmp(cause, "[listen] ", 9) == 0)
		conf_errs_cause(errs, c, "listen", cause);
	else
		conf_errs_key(errs, c, "listen", "address", "%s%s", cause, hint);
}

/* Give the socket file back the mode and group it had before the reload. */
static void
proxy_perms_undo(const struct proxy *px, struct listen_stage *st)
{
	const char	*path = px->lsock.unix_path;

	if (!st->perms)
		return;
	st->perms = 0;
	if (chown(path, (uid_t)-1, st->gid) == -1 || chmod(path, st->mode) == -1)
		log_warn("unix:%s: cannot restore its mode and group: %s", path, strerror(errno));
}

/*
 * Reload, same unix socket: apply a changed socket_mode or socket_group to
 * its file now (undone if the reload is refused); empty socket_group is the
 * group the file was made with.  -1 with a line in errs.
 */
static int
proxy_perms_stage(struct proxy *px, const struct conf *c, struct listen_stage *st,
    struct conf_errs *errs)
{
	const struct conf	*o = px->gen->conf;
	const struct lsock	*ls = &px->lsock;
	struct stat		 sb;
	char			*cause = NULL;

	if (ls->unix_path == NULL || (c->socket_mode == o->socket_mode &&
	    strcmp(c->socket_group, o->socket_group) == 0))
		return 0;
	if (lstat(ls->unix_path, &sb) == -1 || !S_ISSOCK(sb.st_mode) ||
	    sb.st_dev != ls->unix_dev || sb.st_ino != ls->unix_ino) {
		log_warn("[listen] socket_mode, socket_group: unix:%s is not the socket this "
		    "proxy made any more: left as it is", ls->unix_path);
		return 0;
	}
	st->perms = 1;
	st->mode = sb.st_mode & 07777;
	st->gid = sb.st_gid;
	if (proxy_unix_perms(ls->unix_path, c, ls->unix_gid, &cause) == 0)
		return 0;
	proxy_perms_undo(px, st);
	proxy_listen_blame(errs, c, cause, "");
	free(cause);
	return -1;
}

/*
 * Whether c's unix: address names the socket file this proxy bound, in
 * another spelling ("/./", "//", a symlinked directory): the same file
 * (lstat: a symlink in place of the socket is another file) is the listener
 * in use, not another process's.
 */
static int
proxy_unix_same(const struct proxy *px, const struct conf *c)
{
	const struct lsock	*ls = &px->lsock;
	struct stat		 sb;

	if (ls->unix_path == NULL || strncmp(c->listen_address, "unix:", 5) != 0)
		return 0;
	return lstat(c->listen_address + 5, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
	    sb.st_dev == ls->unix_dev && sb.st_ino == ls->unix_ino;
}

/*
 * Reload: bind a changed [listen] address now, before the reload is taken,
 * so that a refusal leaves the running listener as it is (a socket passed by
 * systemd stays).  0 (st->l made, or nothing to bind), or -1 with a line in
 * errs and nothing left behind.
 */
static int
proxy_listen_stage(struct proxy *px, const struct conf *c, struct listen_stage *st,
    struct conf_errs *errs)
{
	char		*cause = NULL;
	unsigned long	 port = proxy_addr_port(c->listen_address);
	int		 err;

	if (px->listener == NULL || px->listen_activated)	/* stopping, or systemd's */
		return 0;
	if (strcmp(c->listen_address, px->gen->conf->listen_address) == 0)
		return proxy_perms_stage(px, c, st, errs);
	if (proxy_unix_same(px, c)) {
		log_info("[listen] address %s is the socket in use, %s: kept",
		    c->listen_address, px->lsock.desc);
		return proxy_perms_stage(px, c, st, errs);
	}
	if (strncmp(c->listen_address, "unix:", 5) == 0 && proxy_unix_dir_check(c, errs) == -1)
		return -1;
	if (proxy_lsock_open(c, &st->ls, &cause) == -1) {
		err = errno;	/* in use by our own socket?  (SO_REUSEPORT would split callers) */
		proxy_listen_blame(errs, c, cause, err == EADDRINUSE && port != 0 &&
		    port == proxy_addr_port(px->lsock.desc) ? " (the running listener holds that "
		    "port: a move to an address that overlaps it needs a restart)" : "");
		free(cause);
		return -1;
	}
	if ((st->l = proxy_listener_new(px, st->ls.fd, LEV_OPT_DISABLED)) == NULL) {
		conf_errs_key(errs, c, "listen", "address", "cannot listen on %s", st->ls.desc);
		proxy_lsock_close(&st->ls);
		return -1;
	}
	return 0;
}

/*
 * Accept what waits in the old socket's queue before it is closed: those
 * callers have connected already (up to max_connections).
 */
static void
proxy_accept_queued(struct proxy *px)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	int			 fd;

	while (px->nclients < px->gen->conf->max_connections) {
		sl = sizeof(ss);
		fd = accept4(px->lsock.fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			break;
		proxy_accept_cb(px->listener, fd, (struct sockaddr *)&ss, (int)sl, px);
	}
}

/*
 * The reload is taken: a new listener replaces the running one (enabled by
 * proxy_maybe_done unless accepting is paused).  Connections accepted on the
 * old one are served on until they close.
 */
static void
proxy_listen_commit(struct proxy *px, struct listen_stage *st)
{
	st->perms = 0;
	if (st->l == NULL)
		return;
	proxy_accept_queued(px);
	log_info("listening on %s (was %s)", st->ls.desc, px->lsock.desc);
	proxy_listen_close(px);
	px->lsock = st->ls;
	px->listener = st->l;
	st->l = NULL;
}

/* The reload is refused: drop what proxy_listen_stage made or changed. */
static void
proxy_listen_unstage(struct proxy *px, struct listen_stage *st)
{
	if (st->l != NULL)
		evconnlistener_free(st->l);
	st->l = NULL;
	proxy_lsock_close(&st->ls);
	proxy_perms_undo(px, st);
}

/* Say at every start and reload who may call. */
static void
proxy_log_callers(const struct proxy *px, const struct conf *c)
{
	size_t	i, n = policy_ncallers(c->policy);
	char	id[POLICY_DESCRIBE_MAX];

	if (n == 0) {	/* the address bound (also one a reload moved to) */
		log_warn(OCP_NO_CALLERS, px->lsock.desc ? px->lsock.desc : c->listen_address);
		return;
	}
	for (i = 0; i < n; i++) {
		caller_describe(policy_caller(c->policy, i), NULL, id, sizeof(id));
		log_info("caller %s: %s", caller_name(policy_caller(c->policy, i)), id);
	}
}

/*
 * Re-read the config and keys; keep the old ones if anything is wrong.  A
 * new [state] dir is locked before anything in it is read, and every nonce
 * reservation is written there before the reload is taken; only then is the
 * old dir's lock released.
 */
void
proxy_reload(struct proxy *px)
{
	struct conf_errs	 errs = { NULL, 0 };
	struct conf		*c;
	struct gen		*g = NULL, *old;
	struct nonce		*moved[NONCE_TAB_MAX];
	struct listen_stage	 lst;
	enum log_level		 lvl;
	char			*cause = NULL, tail[4096];
	const char		*why;
	size_t			 i, mark = nnonce;
	int			 lock = -1, new_trail = 0;

	if (px->ready_sent)	/* before that, systemd still waits for the first READY=1 */
		notify_send("RELOADING=1");
	log_info("reloading %s", px->conf_path);
	/* restart-only keys: compared with what is in effect, the values read at start */
	if ((c = conf_load(px->conf_path, &errs)) != NULL && px->listen_activated &&
	    strcmp(c->listen_address, px->start_conf->listen_address) != 0)
		log_warn("[listen] address changed: the socket passed by systemd stays in use");
	if (c != NULL && !vault_conf_same(c, px->start_conf))
		log_warn("[vault] connection settings changed: take effect only after a restart");
	if (c != NULL && strcmp(c->audit_chain_key, px->start_conf->audit_chain_key) != 0)
		log_warn("[audit] chain_key changed: takes effect only after a restart");
	if (c != NULL && proxy_exposure_check(px, c, &why) == -1) {
		conf_errs_add(&errs, "%s: [listen]: the socket passed by systemd, %s, %s", c->path,
		    px->lsock.desc, why);
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && c->audit_redact_mode == REDACT_MODE_FINGERPRINT && px->audit_key == NULL) {
		conf_errs_add(&errs, "%s: [audit] redact_mode: fingerprint needs the chain key "
		    "loaded at start; restart to enable it", c->path);
		conf_free(c);
		c = NULL;
	}
	memset(moved, 0, sizeof(moved));
	memset(&lst, 0, sizeof(lst));
	lst.ls.fd = -1;
	if (c != NULL && proxy_state_moved(px, c) &&
	    (lock = proxy_lock_state(c, &errs)) == -1) {
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && (g = gen_load(px, c, 0, &errs)) == NULL)
		conf_free(c);
	if (g != NULL && ((lock != -1 && proxy_nonces_stage(c, mark, moved, &errs) == -1) ||
	    proxy_listen_stage(px, c, &lst, &errs) == -1)) {
		gen_unref(g);
		g = NULL;
	}
	if (g == NULL) {
		for (i = 0; i < errs.n; i++)
			log_err("%s", errs.line[i]);
		log_err("reload refused: keeping the running configuration");
		conf_errs_clear(&errs);
		goto refused;
	}
	if (px->vault != NULL)
		vault_refresh_all(px->vault);
	if (strcmp(g->conf->audit_path, px->gen->conf->audit_path) != 0) {
		struct audit *a = audit_open(px->base, g->conf->audit_path, g->conf->audit_sync,
		    px->audit_key, NULL, &cause);
		if (a == NULL) {
			log_err("reload refused: audit: %s", cause ? cause : "cannot open");
			free(cause);
			gen_unref(g);
			goto refused;
		}
		(void)audit_close(px->audit);	/* a failure is logged; the new trail goes on */
		px->audit = a;
		new_trail = 1;
	} else if (audit_reopen(px->audit, &cause) == -1) {
		log_err("audit: cannot reopen: %s; keeping the open file", cause ? cause : "");
		free(cause);
	}
	if (lock != -1)		/* taken: the old dir is left as at exit */
		proxy_nonces_commit(mark, moved);
	/* the state dir's copy of the tail follows the trail written now */
	if ((lock != -1 || new_trail) &&
	    proxy_state_file(g->conf->state_dir, OCP_STATE_TAIL, tail, sizeof(tail)) == 0)
		audit_set_tail(px->audit, tail);
	if (lock != -1) {
		close(px->state_lock);
		px->state_lock = lock;
		log_info("[state] dir: now %s (the lock on %s released)", g->conf->state_dir,
		    px->gen->conf->state_dir);
	}
	audit_set_sync(px->audit, g->conf->audit_sync);
	if (log_level_parse(g->conf->log_level, &lvl) == 0)
		log_set_level(lvl);
	proxy_listen_commit(px, &lst);
	old = px->gen;
	policy_inherit(g->conf->policy, old->conf->policy);
	proxy_log_callers(px, g->conf);
	keys_commit_staged();
	px->gen = g;
	gen_unref(old);		/* requests in flight keep theirs */
	proxy_maybe_done(px);	/* a new listener, a higher max_connections */
	log_info("reloaded %s", px->conf_path);
	if (px->ready_sent)
		notify_send("READY=1");
	return;

refused:
	proxy_listen_unstage(px, &lst);
	keys_drop_staged();
	for (i = 0; i < mark; i++)
		nonce_close(moved[i]);
	proxy_nonces_trim(mark);
	if (lock != -1)
		close(lock);	/* the new dir is free again */
	if (px->ready_sent)
		notify_send("READY=1");
}

/* Exit the loop once stopping and nothing is left to finish. */
void
proxy_maybe_done(struct proxy *px)
{
	if (!px->stopping) {
		if (px->listener != NULL && px->nclients < px->gen->conf->max_connections &&
		    !evtimer_pending(px->accept_pause, NULL))
			evconnlistener_enable(px->listener);
		return;
	}
	if (px->inflight == 0 && px->nclients == 0)
		event_base_loopexit(px->base, NULL);
}

/* Shutdown deadline reached: cut what is left. */
static void
proxy_drain_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct proxy	*px = arg;

	struct timeval	 grace = { 1, 0 };

	if (px->inflight > 0)
		log_warn("shutdown: %u request(s) still running after shutdown_timeout_ms; "
		    "cutting them", px->inflight);
	request_cut_all(px);
	client_close_idle(px);
	/* let the 503 answers leave; then stop whatever is left */
	event_base_loopexit(px->base, &grace);
	proxy_maybe_done(px);
}

/* SIGTERM/SIGINT: stop accepting, let requests finish (bounded). */
static void
proxy_stop(struct proxy *px)
{
	struct timeval	tv;
	unsigned	ms = px->gen->conf->shutdown_timeout_ms;

	if (px->stopping)
		return;
	px->stopping = 1;
	notify_send("STOPPING=1");
	log_info("shutting down: %u request(s) in flight", px->inflight);
	proxy_listen_close(px);
	client_close_idle(px);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	px->drain_timer = evtimer_new(px->base, proxy_drain_timeout, px);
	evtimer_add(px->drain_timer, &tv);
	proxy_maybe_done(px);
}

static struct event *log_flush_ev;

static void
proxy_log_flush_cb(evutil_socket_t fd, short ev, void *arg)
{
	log_flush();
}

/* A buffered log line is waiting: write it at the end of this loop pass. */
static void
proxy_log_kick(void)
{
	if (log_flush_ev != NULL)
		event_active(log_flush_ev, 0, 0);
}

/* systemd watchdog keep-alive, from the event loop so a hang stops it. */
static void
proxy_watchdog_cb(evutil_socket_t fd, short ev, void *arg)
{
	notify_send("WATCHDOG=1");
}

/*
 * Tell systemd and the log when a profile's key becomes (un)available.
 * READY=1 is sent once, the first time every profile has a key: until then
 * (Vault unreachable at start) the service reports not ready, while it
 * serves the profiles it can and 503 for the others.  Checked every 50 ms
 * until then (a healthy start reads Vault in milliseconds), then every second.
 */
static void
proxy_status_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct proxy	*px = arg;
	struct timeval	 tv = { 1, 0 };
	int		 ready = keys_all_ready();

	if (ready != px->keys_ready) {
		px->keys_ready = ready;
		if (ready) {
			log_info("every profile has a servable key");
			notify_send("STATUS=ready: every profile has a key");
		} else {
			log_warn("not ready: a profile has no servable key (503 "
			    "PROXY_KEY_UNAVAILABLE for it; other profiles keep working)");
			notify_send(px->ready_sent ? "STATUS=degraded: a profile has no servable key" :
			    "STATUS=starting: waiting for a profile's key (503 for it until then)");
		}
	}
	if (ready && !px->ready_sent) {
		px->ready_sent = 1;
		notify_send("READY=1");
		event_add(px->status_ev, &tv);
	}
}

static void
proxy_signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	struct proxy	*px = arg;

	if (sig == SIGHUP)
		proxy_reload(px);
	else
		proxy_stop(px);
}

/* -t: what vault_new() would refuse at start ([vault] settings, the credential file). */
static int
proxy_check_vault(const struct conf *c, char **cause)
{
	const char	*f = *c->vault_token_file ? c->vault_token_file : c->vault_secret_id_file;
	struct secret	*s;
	char		*src, *why = NULL;

	if (vault_conf_check(c, cause) == -1)
		return -1;
	if (asprintf(&src, "file:%s", f) == -1)
		return (*cause = NULL, -1);
	s = secret_load(src, &why);
	free(src);
	if (s == NULL) {
		if (asprintf(cause, "[vault] %s %s", *c->vault_token_file ? "token_file" :
		    "secret_id_file", why ? why : "out of memory") == -1)
			*cause = NULL;
		free(why);
		return -1;
	}
	secret_free(s);
	return 0;
}

/*
 * -t: a Vault client on a private loop, so that keys_load() fetches every
 * vault: key with the daemon's own code (gen_check_vault_keys() runs it).
 */
static int
proxy_check_vault_client(struct proxy *px, const struct conf *c, char **cause)
{
	if (proxy_base_new(px) == -1)
		return (*cause = NULL, -1);
	if ((px->vault = vault_new(px->base, px->dns, c, cause)) == NULL)
		return -1;
	return 0;
}

/* The event loop and resolver of the daemon, and of -t's Vault client. */
int
proxy_base_new(struct proxy *px)
{
	/* 3 priorities: work at 1 (the default), "the loop is idle" at 2 */
	if ((px->base = event_base_new()) == NULL ||
	    event_base_priority_init(px->base, 3) == -1)
		return -1;
	px->dns = evdns_base_new(px->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (px->dns == NULL)
		px->dns = evdns_base_new(px->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	return 0;
}

/* Free what proxy_init (and proxy_run) leave: after a stop, a -t, a refused start. */
void
proxy_free(struct proxy *px)
{
	if (px->gen != NULL)
		gen_unref(px->gen);
	px->gen = NULL;
	conf_free(px->start_conf);
	px->start_conf = NULL;
	proxy_nonces_close();
	proxy_free_audit_key(px);
	keys_free_all();	/* its Vault watches before the client */
	vault_free(px->vault);
	px->vault = NULL;
	if (px->dns != NULL)
		evdns_base_free(px->dns, 0);
	px->dns = NULL;
	if (px->base != NULL)
		event_base_free(px->base);
	px->base = NULL;
}

/* Start-up in a fixed order: config, keys, audit, sockets, loop. */
int
proxy_init(struct proxy *px, const char *conf_path, int check_only)
{
	struct conf_errs	 errs = { NULL, 0 };
	struct conf		*c;
	unsigned char		 rnd[4];
	enum log_level		 lvl;
	char			*cause = NULL;
	size_t			 i;
	static const int	 sigs[] = { SIGHUP, SIGTERM, SIGINT };
	unsigned long long	 wd;
	char			 tail[4096];

	ocp = px;
	TAILQ_INIT(&px->clients);
	TAILQ_INIT(&px->requests);
	px->lsock.fd = -1;
	px->conf_path = conf_path;
	/* -t goes on past a refused key, to report every problem in one run */
	c = check_only ? conf_load_check(conf_path, &errs) : conf_load(conf_path, &errs);
	if (c != NULL && conf_key_ok(c, "listen", "address") &&
	    strncmp(c->listen_address, "unix:", 5) == 0 &&
	    proxy_unix_dir_check(c, &errs) == -1 && !check_only) {
		conf_free(c);
		c = NULL;
	}
	/* before anything is written or fetched; not -t, run beside the service */
	if (c != NULL && !check_only && (px->state_lock = proxy_lock_state(c, &errs)) == -1) {
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && !check_only && *c->vault_address != '\0' &&
	    (px->vault = vault_new(px->base, px->dns, c, &cause)) == NULL) {
		conf_errs_cause(&errs, c, "vault", cause ? cause : "cannot start");
		free(cause);
		cause = NULL;
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && check_only && *c->vault_address != '\0' &&
	    conf_key_ok(c, "vault", NULL) && (proxy_check_vault(c, &cause) == -1 ||
	    proxy_check_vault_client(px, c, &cause) == -1)) {
		conf_errs_cause(&errs, c, "vault", cause ? cause : "out of memory");
		free(cause);
		cause = NULL;
	}
	if (c != NULL && conf_key_ok(c, "audit", "chain_key") &&
	    proxy_load_audit_key(px, c, &errs) == -1 && !check_only) {
		conf_free(c);
		c = NULL;
	}
	if (c != NULL && (px->gen = gen_load(px, c, check_only, &errs)) == NULL)
		conf_free(c);
	if (px->gen != NULL && errs.n > 0) {	/* -t: a problem of an earlier stage */
		gen_unref(px->gen);
		px->gen = NULL;
	}
	if (px->gen == NULL) {
		if (errs.n == 0)	/* nothing said why: an allocation failed */
			conf_errs_add(&errs, "%s: out of memory", conf_path);
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.line[i]);
		conf_errs_clear(&errs);
		return -1;
	}
	if (check_only)
		return 0;
	/* kept for the keys a reload cannot change: what is in effect is what started */
	px->start_conf = px->gen->conf;
	px->gen->keep_conf = 1;
	if (log_level_parse(px->gen->conf->log_level, &lvl) == 0)
		log_set_level(lvl);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		fatalx("no randomness");
	signer_hex(rnd, sizeof(rnd), px->boot);
	px->audit = audit_open(px->base, px->gen->conf->audit_path, px->gen->conf->audit_sync,
	    px->audit_key, proxy_state_file(px->gen->conf->state_dir, OCP_STATE_TAIL, tail,
	    sizeof(tail)) == 0 ? tail : NULL, &cause);
	if (px->audit == NULL)
		fatalx("audit: %s", cause ? cause : "cannot open");
	if (px->audit_key == NULL)
		log_warn("[audit] chain_key is not set: audit records carry no chain values "
		    "and cannot be verified");
	if (px->gen->conf->audit_sync == SYNC_NONE)
		log_warn("[audit] sync = none: audit records are not made durable before "
		    "forwarding (development only)");
	proxy_listen(px, px->gen->conf);
	proxy_log_callers(px, px->gen->conf);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		px->sig[i] = evsignal_new(px->base, sigs[i], proxy_signal_cb, px);
		evsignal_add(px->sig[i], NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	log_flush_ev = event_new(px->base, -1, 0, proxy_log_flush_cb, NULL);
	log_set_buffered(proxy_log_kick);
	px->keys_ready = -1;
	px->status_ev = event_new(px->base, -1, EV_PERSIST, proxy_status_cb, px);
	{
		struct timeval tv50 = { 0, 50000 };	/* 1 s once READY=1 is sent */
		event_add(px->status_ev, &tv50);
	}
	if ((wd = notify_watchdog_ms()) > 0) {
		struct timeval tv = { (time_t)(wd / 2000), (suseconds_t)((wd / 2) % 1000) * 1000 };
		px->watchdog = event_new(px->base, -1, EV_PERSIST, proxy_watchdog_cb, px);
		event_add(px->watchdog, &tv);
		log_info("systemd watchdog: keep-alive every %llu ms", wd / 2);
	}
	return 0;
}

/* Run until shut down, then release everything. */
void
proxy_run(struct proxy *px)
{
	size_t	i;

	proxy_status_cb(-1, 0, px);	/* READY=1 now, or once the keys are there */
	event_base_dispatch(px->base);
	if (px->inflight > 0)
		request_cut_all(px);
	px->audit_unclosed = audit_close(px->audit) == -1;
	px->audit = NULL;
	request_buf_release();
	if (px->cut > 0)
		log_warn("stopped: %d request(s) were cut at shutdown_timeout_ms "
		    "(answered 503 PROXY_SHUTTING_DOWN, audited)", px->cut);
	else
		log_info("stopped");
	for (i = 0; i < sizeof(px->sig) / sizeof(px->sig[0]); i++)
		if (px->sig[i] != NULL)
			event_free(px->sig[i]);
	proxy_listen_close(px);
	if (px->accept_pause != NULL)
		event_free(px->accept_pause);
	if (px->drain_timer != NULL)
		event_free(px->drain_timer);
	if (px->watchdog != NULL)
		event_free(px->watchdog);
	if (px->status_ev != NULL)
		event_free(px->status_ev);
	log_set_buffered(NULL);
	log_flush();
	if (log_flush_ev != NULL)
		event_free(log_flush_ev);
	log_flush_ev = NULL;
	client_free_all(px);
}

