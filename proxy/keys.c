/*
 * keys.c — per-profile key slots: loading, swapping, staleness.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "fmt.h"
#include "keys.h"
#include "log.h"
#include "ocp-proxy.h"
#include "secret.h"
#include "signer.h"
#include "vault.h"

struct keyslot {
	char			*name;
	struct pkey		*cur;
	int			 from_vault;
	unsigned		 max_stale_ms;
	struct vault_watch	*watch;
	char			*watch_src;	/* mount/path the watch reads */
	char			*sec_field;
	char			*pub_field;	/* NULL: public key not from Vault */
	char			*pub_literal;
	unsigned long long	 version;
	char			*local_src;	/* the sources cur was read from (not Vault) */
	struct pkey		*staged;	/* read on SIGHUP, installed if it is accepted */
	char			*staged_src;
	struct conf_profile	 staged_vault;	/* secret, public_key: a new watch on SIGHUP */
	struct vault		*staged_v;
	int			 checking;	/* -t: the first Vault answer decides */
	int			 checked;	/* ... and it came */
	int			 check_ok;	/* ... with a usable key */
	char			*check_cause;	/* ... or why not (NULL: out of memory) */
	char			*check_pub;	/* -t: the public key read (not secret) */
};

static struct keyslot	*slots[CONF_MAX_PROFILES * 2];
static size_t		 nslots;
static struct event_base *check_base;	/* -t: the loop keys_check_wait() runs */

/* Drop a key reference; the last one cleanses it. */
void
pkey_unref(struct pkey *k)
{
	if (k == NULL || --k->refs > 0)
		return;
	signer_free(k->signer);
	secret_free(k->secret);
	free(k->public_key);
	free(k);
}

/* A key from its parts; takes sec. */
struct pkey *
pkey_new(const char *pub, size_t publen, struct secret *sec, char **cause)
{
	struct pkey	*k;
	unsigned char	 md[32];

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		secret_free(sec);
		return NULL;
	}
	k->refs = 1;
	k->secret = sec;
	if ((k->public_key = strndup(pub, publen)) == NULL || publen == 0 ||
	    strpbrk(k->public_key, "\r\n") != NULL) {
		*cause = strdup("public key must be one non-empty line of text");
		pkey_unref(k);
		return NULL;
	}
	if ((k->signer = signer_new(sec->p, sec->len)) == NULL) {
		*cause = strdup("cannot prepare the HMAC key");
		pkey_unref(k);
		return NULL;
	}
	secret_guard_add(sec);
	EVP_Digest(k->public_key, publen, md, NULL, EVP_sha256(), NULL);
	signer_hex(md, 8, k->fp);
	return k;
}

/* The slot of a profile. */
struct keyslot *
keys_slot(const char *profile)
{
	size_t	i;

	for (i = 0; i < nslots; i++)
		if (strcmp(slots[i]->name, profile) == 0)
			return slots[i];
	if (nslots == sizeof(slots) / sizeof(slots[0]) ||
	    (slots[nslots] = calloc(1, sizeof(struct keyslot))) == NULL)
		return NULL;
	slots[nslots]->name = strdup(profile);
	return slots[nslots++];
}

/* Swap in a new key, logging the change by fingerprint. */
static void
keys_swap(struct keyslot *s, struct pkey *k, const char *why)
{
	if (s->cur != NULL && strcmp(s->cur->fp, k->fp) == 0 && s->cur->secret->len ==
	    k->secret->len && memcmp(s->cur->secret->p, k->secret->p, k->secret->len) == 0)
		log_info("profile %s: key %s unchanged (%s)", s->name, k->fp, why);
	else if (s->cur != NULL && strcmp(s->cur->fp, k->fp) == 0)	/* fp: of the public key */
		log_info("profile %s: secret changed, public key %s unchanged (%s)", s->name,
		    k->fp, why);
	else if (s->cur != NULL)
		log_info("profile %s: key changed %s -> %s (%s)", s->name, s->cur->fp, k->fp, why);
	else
		log_info("profile %s: key %s loaded (%s)", s->name, k->fp, why);
	pkey_unref(s->cur);
	s->cur = k;
}

/* Synchronous sources: file:, credential:, env: (and a literal public key). */
static struct pkey *
keys_read_local(const struct conf_profile *p, char **cause)
{
	struct secret	*pub = NULL, *sec;
	struct pkey	*k;

	if (secret_is_source(p->public_key) && (pub = secret_load(p->public_key, cause)) == NULL) {
		char *why = *cause;	/* say which of the two sources failed */
		*cause = fmt_alloc("public_key: %s", why ? why : "out of memory");
		free(why);
		return NULL;
	}
	if ((sec = secret_load(p->secret, cause)) == NULL) {
		secret_free(pub);
		return NULL;
	}
	if (pub != NULL)
		k = pkey_new((char *)pub->p, pub->len, sec, cause);
	else
		k = pkey_new(p->public_key, strlen(p->public_key), sec, cause);
	secret_free(pub);
	return k;
}

/*
 * The key in one version of a Vault secret, or NULL with *cause (malloc'd,
 * never a value; it starts "public_key: " when the public key is at fault).
 */
static struct pkey *
keys_from_kv(const struct keyslot *s, const struct vault_kv *kv, unsigned long long version,
    char **cause)
{
	struct secret	*sec, *pub = NULL;
	struct pkey	*k;
	char		*why = NULL;

	if ((sec = vault_kv_field(kv, s->sec_field)) == NULL) {
		*cause = fmt_alloc("Vault secret version %llu lacks field %s", version,
		    s->sec_field);
		return NULL;
	}
	if (s->pub_field != NULL && (pub = vault_kv_field(kv, s->pub_field)) == NULL) {
		*cause = fmt_alloc("public_key: Vault secret version %llu lacks field %s",
		    version, s->pub_field);
		secret_free(sec);
		return NULL;
	}
	if (sec->len == 0) {
		*cause = fmt_alloc("Vault secret version %llu: field %s is empty", version,
		    s->sec_field);
		secret_free(sec);
		secret_free(pub);
		return NULL;
	}
	k = pub ? pkey_new((char *)pub->p, pub->len, sec, &why) :
	    pkey_new(s->pub_literal, strlen(s->pub_literal), sec, &why);
	secret_free(pub);
	if (k == NULL) {
		*cause = fmt_alloc("%sVault secret version %llu: %s",
		    why != NULL && strncmp(why, "public key", 10) == 0 ? "public_key: " : "",
		    version, why ? why : "unusable");
		free(why);
	}
	return k;
}

/* -t: whether a Vault key keys_load() started still awaits its answer. */
static int
keys_check_pending(void)
{
	size_t	i;

	for (i = 0; i < nslots; i++)
		if (slots[i]->checking && !slots[i]->checked)
			return 1;
	return 0;
}

/* -t: the first answer for a checked slot; stop the loop once every one came. */
static void
keys_check_done(struct keyslot *s, int ok, char *cause)
{
	s->checked = 1;
	s->check_ok = ok;
	s->check_cause = cause;
	if (!keys_check_pending() && check_base != NULL)
		event_base_loopbreak(check_base);
}

/* -t: the public key a checked source gave (for keys_pending_public). */
static void
keys_check_public(struct keyslot *s, const struct pkey *k)
{
	free(s->check_pub);
	s->check_pub = strdup(k->public_key);
}

/*
 * The name of another profile of the running generation whose key has the
 * public key pub, or NULL: a Vault version that would make two profiles
 * share one pair (each with nonces of its own) is refused.
 */
static const char *
keys_same_public(const struct keyslot *s, const char *pub)
{
	const struct gen	*g = ocp != NULL ? ocp->gen : NULL;
	const struct keyslot	*o;
	size_t			 i;

	for (i = 0; g != NULL && i < g->conf->nprofiles; i++) {
		o = g->slots[i];
		if (o != NULL && o != s && o->cur != NULL && strcmp(o->cur->public_key, pub) == 0)
			return o->name;
	}
	return NULL;
}

/* A new version of a Vault secret (or a failed read). */
static void
keys_vault_cb(void *arg, const struct vault_kv *kv, unsigned long long version, const char *err)
{
	struct keyslot	*s = arg;
	struct pkey	*k;
	const char	*detail, *other;
	char		*cause = NULL, why[48];
	int		 pub;

	if (s->checking && s->checked)
		return;
	if (kv == NULL) {
		if (s->checking) {
			detail = vault_watch_detail(s->watch);
			keys_check_done(s, 0, fmt_alloc("vault:%s: %s%s%s%s", s->watch_src,
			    err ? err : "error", *detail ? " (" : "", detail, *detail ? ")" : ""));
			return;
		}
		log_debug("profile %s: Vault read failed: %s%s", s->name, err ? err : "error",
		    s->cur ? "; serving the last good key" : "");
		return;
	}
	/* called only for a new version or new content: a re-created secret may
	 * repeat a version number with another pair */
	if ((k = keys_from_kv(s, kv, version, &cause)) == NULL) {
		if (s->checking) {	/* name the secret, after "public_key: " if any */
			pub = cause != NULL && strncmp(cause, "public_key: ", 12) == 0;
			keys_check_done(s, 0, fmt_alloc("%svault:%s: %s", pub ? "public_key: " : "",
			    s->watch_src, cause ? cause + (pub ? 12 : 0) : "out of memory"));
			free(cause);
			return;
		}
		log_err("profile %s: %s", s->name, cause ? cause + (strncmp(cause,
		    "public_key: ", 12) == 0 ? 12 : 0) : "out of memory");
		free(cause);
		return;
	}
	if (s->checking) {
		keys_check_public(s, k);
		pkey_unref(k);
		keys_check_done(s, 1, NULL);
		return;
	}
	if ((other = keys_same_public(s, k->public_key)) != NULL) {
		log_err("profile %s: Vault secret version %llu has the same public key as "
		    "profile %s: one section serves one API key pair; %s%s", s->name, version,
		    other, s->cur ? "keeping key " : "no key loaded", s->cur ? s->cur->fp : "");
		pkey_unref(k);
		return;
	}
	s->version = version;
	snprintf(why, sizeof(why), "Vault version %llu", version);
	keys_swap(s, k, why);
}

/*
 * Point the slot at a Vault secret (watch), replacing an older watch.  With
 * v NULL nothing changes: the sources are only checked, and *changed says
 * whether applying them would replace the watch.
 */
static int
keys_watch(struct keyslot *s, const struct conf_profile *p, struct vault *v, int *changed,
    char **cause)
{
	char	*mount = NULL, *path = NULL, *field = NULL, *pm = NULL, *pp = NULL, *pf = NULL;
	char	*src = NULL;
	int	 rc = -1;

	if (vault_parse_source(p->secret, &mount, &path, &field) == -1) {
		*cause = strdup("secret: expected vault:MOUNT/PATH#FIELD");
		goto out;
	}
	if (strncmp(p->public_key, "vault:", 6) == 0) {
		if (vault_parse_source(p->public_key, &pm, &pp, &pf) == -1 ||
		    strcmp(pm, mount) != 0 || strcmp(pp, path) != 0) {
			*cause = strdup("public_key from Vault must name the same secret "
			    "(vault:MOUNT/PATH#FIELD) as the secret, so both come from one version");
			goto out;
		}
	} else if (secret_is_source(p->public_key)) {
		*cause = strdup("with a Vault secret, public_key must be literal or from the same "
		    "Vault secret");
		goto out;
	}
	if (asprintf(&src, "%s/%s", mount, path) == -1)
		goto out;
	if (s->watch != NULL && strcmp(s->watch_src, src) == 0 && strcmp(s->sec_field, field) == 0 &&
	    ((pf == NULL && s->pub_field == NULL) || (pf && s->pub_field && strcmp(pf, s->pub_field) == 0)) &&
	    (pf != NULL || strcmp(s->pub_literal, p->public_key) == 0)) {
		rc = 0;		/* same watch: keep it */
		goto out;
	}
	*changed = 1;
	if (v == NULL) {
		rc = 0;
		goto out;
	}
	if (s->watch != NULL)
		vault_unwatch(s->watch);
	free(s->watch_src);
	free(s->sec_field);
	free(s->pub_field);
	free(s->pub_literal);
	s->watch_src = src;
	s->sec_field = field;
	s->pub_field = pf;
	s->pub_literal = pf ? NULL : strdup(p->public_key);
	src = field = pf = NULL;
	s->version = 0;
	s->from_vault = 1;
	if ((s->watch = vault_watch(v, mount, path, keys_vault_cb, s)) == NULL) {
		*cause = strdup("cannot start the Vault watch");
		goto out;
	}
	rc = 0;
out:
	free(mount);
	free(path);
	free(field);
	free(pm);
	free(pp);
	free(pf);
	free(src);
	return rc;
}

/* The sources a local key is read from, to tell a changed config from a re-read. */
static char *
keys_local_src(const struct conf_profile *p)
{
	char	*src;

	if (asprintf(&src, "%s\n%s", p->secret, p->public_key) == -1)
		return NULL;
	return src;
}

/* Make a key read from local sources (src) the slot's key; takes both. */
static void
keys_install(struct keyslot *s, struct pkey *k, char *src, const char *why)
{
	if (s->watch != NULL) {
		vault_unwatch(s->watch);
		s->watch = NULL;
	}
	s->from_vault = 0;
	keys_swap(s, k, why);
	free(s->local_src);
	s->local_src = src;
}

/* Forget a Vault source staged by a reload. */
static void
keys_unstage_vault(struct keyslot *s)
{
	free(s->staged_vault.secret);
	free(s->staged_vault.public_key);
	s->staged_vault.secret = s->staged_vault.public_key = NULL;
	s->staged_v = NULL;
}

/* (Re)load one profile's key into its slot. */
int
keys_load(struct keyslot *s, const struct conf_profile *p, int check_only, int reload,
    struct vault *v, unsigned max_stale_ms, char **cause)
{
	struct pkey	*k;
	char		*src;
	int		 changed = 0;

	*cause = NULL;
	s->max_stale_ms = max_stale_ms;
	if (strncmp(p->secret, "vault:", 6) == 0) {
		if (v == NULL && !check_only) {
			/* the Vault client is made at start: a reload cannot add one */
			*cause = strdup(reload ? "vault: no Vault client: [vault] was not set at "
			    "start, and adding it needs a restart" :
			    "vault: source needs [vault] address");
			return -1;
		}
		if (!reload && !check_only)
			return keys_watch(s, p, v, &changed, cause);
		if (check_only && v != NULL) {	/* -t: fetched, decided by keys_check_wait() */
			if (keys_watch(s, p, v, &changed, cause) == -1)
				return -1;
			s->checking = 1;
			return 0;
		}
		/* -t: checked, not fetched; reload: applied by keys_commit_staged once accepted */
		if (keys_watch(s, p, NULL, &changed, cause) == -1) {
			if (*cause == NULL)
				*cause = strdup("out of memory");
			return -1;
		}
		if (!changed || check_only)
			return 0;
		keys_unstage_vault(s);
		if ((s->staged_vault.secret = strdup(p->secret)) == NULL ||
		    (s->staged_vault.public_key = strdup(p->public_key)) == NULL) {
			keys_unstage_vault(s);
			*cause = strdup("out of memory");
			return -1;
		}
		s->staged_v = v;
		return 0;
	}
	if (reload && s->cur != NULL && !s->from_vault && strncmp(p->secret, "env:", 4) == 0 &&
	    !secret_is_source(p->public_key)) {
		/* the variable was wiped after the first read: nothing to re-read */
		log_info("profile %s: env: secret read once at start; keeping key %s", s->name,
		    s->cur->fp);
		return 0;
	}
	if ((src = keys_local_src(p)) == NULL) {
		*cause = strdup("out of memory");
		return -1;
	}
	if ((k = keys_read_local(p, cause)) == NULL) {
		/*
		 * The same sources as the running key: a re-read during a rotation
		 * (a file being replaced), so the old key stays.  New sources that
		 * cannot be read make a bad config: the caller refuses the reload.
		 */
		if (reload && s->cur != NULL && !s->from_vault && s->local_src != NULL &&
		    strcmp(s->local_src, src) == 0) {
			log_err("profile %s: cannot read the new key (%s); keeping key %s", s->name,
			    *cause ? *cause : "error", s->cur->fp);
			free(*cause);
			*cause = NULL;
			free(src);
			return 0;
		}
		free(src);
		return -1;
	}
	if (check_only) {
		keys_check_public(s, k);
		pkey_unref(k);
		free(src);
		return 0;
	}
	if (reload) {		/* installed by keys_commit_staged once the reload is accepted */
		pkey_unref(s->staged);
		free(s->staged_src);
		s->staged = k;
		s->staged_src = src;
		return 0;
	}
	keys_install(s, k, src, "start");
	return 0;
}

static void
keys_check_deadline(evutil_socket_t fd, short what, void *base)
{
	event_base_loopbreak(base);
}

/* -t: run base until every Vault key keys_load() started has its answer, or ms pass. */
void
keys_check_wait(struct event_base *base, unsigned long long ms)
{
	struct event	*deadline;
	struct timeval	 tv;
	size_t		 i;

	if (!keys_check_pending())
		return;
	if ((deadline = evtimer_new(base, keys_check_deadline, base)) == NULL)
		return;
	log_ms_tv(ms, &tv);
	evtimer_add(deadline, &tv);
	check_base = base;
	event_base_dispatch(base);
	check_base = NULL;
	event_free(deadline);
	for (i = 0; i < nslots; i++)
		if (slots[i]->checking && !slots[i]->checked) {
			slots[i]->checked = 1;
			slots[i]->check_cause = fmt_alloc("vault:%s: no answer from vault within %llu ms",
			    slots[i]->watch_src, ms);
		}
}

/* -t: 0 when the slot's Vault key loaded (or it has none to fetch), else -1 with *cause. */
int
keys_check_result(const struct keyslot *s, char **cause)
{
	*cause = NULL;
	if (!s->checking)
		return 0;
	if (s->check_ok)
		return 0;
	*cause = s->check_cause != NULL ? strdup(s->check_cause) : NULL;
	return -1;
}

/* The reload was accepted: every key read for it becomes the slot's key. */
void
keys_commit_staged(void)
{
	struct keyslot	*s;
	char		*cause = NULL;
	size_t		 i;
	int		 changed = 0;

	for (i = 0; i < nslots; i++) {
		s = slots[i];
		if (s->staged_vault.secret != NULL) {
			if (keys_watch(s, &s->staged_vault, s->staged_v, &changed, &cause) == -1) {
				log_err("profile %s: %s", s->name, cause ? cause : "out of memory");
				free(cause);
				cause = NULL;
			}
			keys_unstage_vault(s);
		}
		if (s->staged == NULL)
			continue;
		keys_install(s, s->staged, s->staged_src, "reload");
		s->staged = NULL;
		s->staged_src = NULL;
	}
}

/* The reload was refused: every key read for it is dropped (and cleansed). */
void
keys_drop_staged(void)
{
	size_t	i;

	for (i = 0; i < nslots; i++) {
		pkey_unref(slots[i]->staged);
		free(slots[i]->staged_src);
		slots[i]->staged = NULL;
		slots[i]->staged_src = NULL;
		keys_unstage_vault(slots[i]);
	}
}

/* The public key the slot will serve once the load just made is taken, or NULL. */
const char *
keys_pending_public(const struct keyslot *s)
{
	if (s->check_pub != NULL)
		return s->check_pub;
	if (s->staged != NULL)
		return s->staged->public_key;
	if (s->staged_vault.secret != NULL)
		return NULL;	/* a new Vault source: known once fetched */
	return s->cur != NULL ? s->cur->public_key : NULL;
}

/* 1 if the slot's key may be served now. */
static int
keys_servable(const struct keyslot *s)
{
	long long	age;

	if (s->cur == NULL)
		return 0;
	if (!s->from_vault)
		return 1;
	/* how long the reads of this secret have been failing (0 while they work) */
	if (s->watch == NULL || vault_watch_age_ms(s->watch) < 0)
		return 0;
	age = vault_watch_failing_ms(s->watch);
	return age >= 0 && (unsigned long long)age <= s->max_stale_ms;
}

/* A reference to the current key for a new request. */
struct pkey *
keys_acquire(struct keyslot *s, const char **why)
{
	if (s->cur == NULL) {
		*why = s->from_vault ? "the key of this profile has not been read from Vault yet" :
		    "the key of this profile is not loaded";
		return NULL;
	}
	if (!keys_servable(s)) {
		*why = "the key of this profile is stale: Vault unreachable beyond max_stale_ms";
		return NULL;
	}
	s->cur->refs++;
	return s->cur;
}

const char *
keys_fp(const struct keyslot *s)
{
	return s->cur ? s->cur->fp : "-";
}

/* 1 when every slot can serve. */
int
keys_all_ready(void)
{
	size_t	i;

	for (i = 0; i < nslots; i++)
		if (!keys_servable(slots[i]))
			return 0;
	return 1;
}

/* Release every slot (exit). */
void
keys_free_all(void)
{
	size_t	i;

	for (i = 0; i < nslots; i++) {
		if (slots[i]->watch != NULL)
			vault_unwatch(slots[i]->watch);
		pkey_unref(slots[i]->cur);
		pkey_unref(slots[i]->staged);
		free(slots[i]->staged_src);
		free(slots[i]->local_src);
		keys_unstage_vault(slots[i]);
		free(slots[i]->name);
		free(slots[i]->watch_src);
		free(slots[i]->sec_field);
		free(slots[i]->pub_field);
		free(slots[i]->pub_literal);
		free(slots[i]->check_cause);
		free(slots[i]->check_pub);
		free(slots[i]);
	}
	nslots = 0;
}
