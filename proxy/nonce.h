/*
 * nonce.c — per-profile nonces that never repeat and never go backwards.
 *
 * next = max(last + 1, now_ms).  Before a nonce above the persisted
 * reservation is handed out, a new upper bound (next + NONCE_RESERVE) is
 * written durably to DIR/nonce.NAME; after a restart counting resumes above
 * that bound, so neither a restart in the same millisecond nor a clock step
 * back can reuse a value.
 */
#ifndef NONCE_H
#define NONCE_H

#define NONCE_RESERVE	100000ULL	/* values reserved per durable write */

struct nonce;

/* Open (or create) the state of profile name in dir.  NULL + *cause on error. */
struct nonce	*nonce_open(const char *dir, const char *name, char **cause);
void		 nonce_close(struct nonce *);
/*
 * The next nonce given the current time in ms.  -1 (and *cause, malloc'd)
 * when the reservation could not be made durable: no nonce is handed out.
 */
int		 nonce_next(struct nonce *, unsigned long long now_ms,
		    unsigned long long *out, char **cause);
/* A caller supplied its own numeric nonce: later ones must exceed it. */
int		 nonce_observe(struct nonce *, unsigned long long seen, char **cause);
unsigned long long nonce_last(const struct nonce *);
/*
 * A move of the state directory, in two steps: nonce_cover makes the durable
 * reservation of to (the state opened in the new directory) cover everything
 * from has handed out or reserved; nonce_take then makes n (the state in use,
 * whose address others hold) continue in to's file, and frees to.
 */
int		 nonce_cover(struct nonce *to, const struct nonce *from, char **cause);
void		 nonce_take(struct nonce *n, struct nonce *to);

#endif
