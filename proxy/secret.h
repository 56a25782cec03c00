/*
 * secret.c — secret material: loading from a source string, locked memory
 * that is excluded from core dumps and cleansed on free, and the leak guard.
 *
 * Sources: "file:/path" (must not be readable or writable by group/other,
 * one trailing newline dropped), "credential:NAME" ($CREDENTIALS_DIRECTORY/NAME,
 * same rules), "env:VAR" (read, then wiped and removed from the environment),
 * "vault:MOUNT/PATH#FIELD" (not yet supported: reported as such).
 */
#ifndef SECRET_H
#define SECRET_H
#include <stddef.h>

struct secret {
	unsigned char	*p;	/* len bytes + NUL, in locked, no-dump memory */
	size_t		 len;
	size_t		 maplen;
};

/* 1 if s names a secret source (file:, credential:, env:, vault:). */
int	 secret_is_source(const char *s);
/*
 * Load a secret from src.  Returns NULL and sets *cause (malloc'd, never
 * containing secret bytes) on failure.  The result must be freed with
 * secret_free(), which cleanses it.
 */
struct secret	*secret_load(const char *src, char **cause);
/* Copy bytes into a new secret buffer. */
struct secret	*secret_from(const void *p, size_t len);
void	 secret_free(struct secret *);

/*
 * The leak guard: every secret the process holds is registered; text about
 * to leave the process (log lines, audit lines, error bodies) is scrubbed of
 * any registered value (replaced by '*' of the same length).  Registrations
 * hold a pointer to the secret, so unregister before freeing.
 */
void	 secret_guard_add(const struct secret *);
void	 secret_guard_del(const struct secret *);
/* Scrub buf in place; returns the number of matches replaced. */
size_t	 secret_guard_scrub(char *buf, size_t len);
unsigned long long secret_guard_hits(void);
/* Make the process non-dumpable and without core files. */
void	 secret_harden_process(void);

#endif
