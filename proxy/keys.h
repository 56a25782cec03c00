/*
 * keys.c — the key pair of every profile, kept across reloads in a slot.
 *
 * A slot holds the current key (a reference-counted struct pkey): a request
 * takes a reference when it starts and signs with that key even if a reload
 * or a Vault rotation swaps the slot's key meanwhile.  File, credential and
 * env sources are read synchronously (start, SIGHUP); Vault sources arrive
 * from a watch on the event loop.  A reload that cannot read a key keeps the
 * old one.  A Vault key older than max_stale_ms since its last good read is
 * not served (503).
 */
#ifndef KEYS_H
#define KEYS_H
#include "conf.h"

struct pkey;
struct secret;
struct vault;
struct keyslot;

/* The slot of a profile, created on first use; lives until keys_free_all(). */
struct keyslot	*keys_slot(const char *profile);
/*
 * (Re)load profile p into its slot.  check_only: load and drop (for -t);
 * a vault: source is checked, and with v also fetched: keys_check_wait()
 * waits for the answer, keys_check_result() tells it.  reload: a key read from file:,
 * credential: or env: (or a new vault: source to watch) is staged, to be
 * installed by keys_commit_staged() once the whole reload is accepted or
 * dropped by keys_drop_staged(); when the sources are those of the running
 * key and the re-read fails, the old key stays (logged) and 0 is returned,
 * while new sources that cannot be read fail.  Vault sources need v (NULL:
 * reported as an error).  Returns 0 or -1 with *cause (malloc'd, never secret).
 */
int		 keys_load(struct keyslot *, const struct conf_profile *p, int check_only,
		    int reload, struct vault *v, unsigned max_stale_ms, char **cause);
void		 keys_commit_staged(void);
struct event_base;
/*
 * -t: run base until every Vault fetch keys_load() started has its first
 * answer (a key, or why not), or ms have passed (then: no answer).
 */
void		 keys_check_wait(struct event_base *, unsigned long long ms);
/*
 * -t: 0 when the slot's Vault key was fetched and passes every check the
 * daemon makes (or the slot has no Vault fetch), else -1 with *cause
 * (malloc'd, never secret; "public_key: ..." when that key is at fault).
 */
int		 keys_check_result(const struct keyslot *, char **cause);
void		 keys_drop_staged(void);
/*
 * The public key the slot serves once the load just made is taken: the one
 * -t read or fetched, a staged one, else the current one; NULL while not
 * known (a Vault key not fetched yet).  To refuse two profiles with one pair.
 */
const char	*keys_pending_public(const struct keyslot *);
/* A reference to the key for a new request, or NULL with *why (503). */
struct pkey	*keys_acquire(struct keyslot *, const char **why);
/* Fingerprint of the current key for logs ("-" when none). */
const char	*keys_fp(const struct keyslot *);
/* 1 when every slot has a servable key. */
int		 keys_all_ready(void);
void		 keys_free_all(void);
/* Build a key from a public key text and a secret (takes ownership of sec). */
/* Drop a key reference; the last one cleanses it. */
void		 pkey_unref(struct pkey *);
struct pkey	*pkey_new(const char *public_key, size_t publen, struct secret *sec, char **cause);

#endif
