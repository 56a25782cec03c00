/*
 * secret.c — loading secrets and keeping them out of every output.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "fmt.h"
#include "secret.h"

#define SECRET_MAX_BYTES	8192
#define GUARD_MAX		64
#define GUARD_MIN_LEN		8	/* shorter values would scrub ordinary text */

static const struct secret	*guard[GUARD_MAX];
static size_t			 nguard;
static unsigned long long	 guard_hits;

/* 1 if s names a secret source. */
int
secret_is_source(const char *s)
{
	return strncmp(s, "file:", 5) == 0 || strncmp(s, "credential:", 11) == 0 ||
	    strncmp(s, "env:", 4) == 0 || strncmp(s, "vault:", 6) == 0;
}

/* A buffer of len+1 bytes in its own pages: locked, not dumped. */
static struct secret *
secret_alloc(size_t len)
{
	struct secret	*s;
	long		 pg = sysconf(_SC_PAGESIZE);
	size_t		 maplen = ((len + 1 + (size_t)pg - 1) / (size_t)pg) * (size_t)pg;
	void		*p;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		free(s);
		return NULL;
	}
	(void)madvise(p, maplen, MADV_DONTDUMP);
	(void)mlock(p, maplen);		/* best effort: RLIMIT_MEMLOCK may forbid */
	s->p = p;
	s->len = len;
	s->maplen = maplen;
	return s;
}

/* Copy bytes into a new secret buffer. */
struct secret *
secret_from(const void *p, size_t len)
{
	struct secret	*s;

	if ((s = secret_alloc(len)) == NULL)
		return NULL;
	memcpy(s->p, p, len);
	s->p[len] = '\0';
	return s;
}

/* Cleanse and release a secret; accepts NULL. */
void
secret_free(struct secret *s)
{
	if (s == NULL)
		return;
	secret_guard_del(s);
	OPENSSL_cleanse(s->p, s->maplen);
	munlock(s->p, s->maplen);
	munmap(s->p, s->maplen);
	free(s);
}

/* Read a key file that only its owner may read; drop one trailing newline. */
static struct secret *
secret_read_file(const char *path, char **cause)
{
	struct stat	 st;
	struct secret	*s = NULL;
	unsigned char	 buf[SECRET_MAX_BYTES + 1];
	ssize_t		 n;
	size_t		 len = 0;
	int		 fd;

	/* O_NONBLOCK: a FIFO must be refused below, not block start-up in open() */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) == -1) {
		*cause = fmt_alloc("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		*cause = fmt_alloc("%s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		*cause = fmt_alloc("%s: %s", path, "secret file must not be accessible "
		    "by group or others (chmod 600)");
		goto out;
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			*cause = fmt_alloc("%s: %s", path, strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	if (len > SECRET_MAX_BYTES) {
		*cause = fmt_alloc("%s: %s", path, "secret file too large");
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		*cause = fmt_alloc("%s: %s", path, "secret file is empty");
		goto out;
	}
	if ((s = secret_from(buf, len)) == NULL)
		*cause = fmt_alloc("%s: %s", path, "out of memory");
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return s;
}

/* Read and then wipe an environment variable. */
static struct secret *
secret_read_env(const char *var, char **cause)
{
	char		*v = getenv(var);
	struct secret	*s;
	size_t		 len;

	if (v == NULL || *v == '\0') {
		*cause = fmt_alloc(v == NULL ? "environment variable %s is not set" :
		    "environment variable %s is empty", var);
		return NULL;
	}
	len = strlen(v);
	s = secret_from(v, len);
	OPENSSL_cleanse(v, len);	/* the environ string itself */
	unsetenv(var);
	if (s == NULL)
		*cause = fmt_alloc("%s: out of memory", var);
	return s;
}

/* Load a secret from a source string. */
struct secret *
secret_load(const char *src, char **cause)
{
	const char	*dir, *name;
	char		 path[4096];

	*cause = NULL;
	if (strncmp(src, "file:", 5) == 0) {
		if (src[5] != '/') {
			*cause = fmt_alloc("%s: path must be absolute", src);
			return NULL;
		}
		return secret_read_file(src + 5, cause);
	}
	if (strncmp(src, "credential:", 11) == 0) {
		name = src + 11;
		if (*name == '\0' || strchr(name, '/') != NULL || strcmp(name, "..") == 0) {
			*cause = fmt_alloc("%s: invalid credential name", src);
			return NULL;
		}
		if ((dir = getenv("CREDENTIALS_DIRECTORY")) == NULL || *dir == '\0') {
			*cause = fmt_alloc("%s: $CREDENTIALS_DIRECTORY is not set "
			    "(use LoadCredential= in the unit)", src);
			return NULL;
		}
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
			*cause = fmt_alloc("%s: path too long", src);
			return NULL;
		}
		return secret_read_file(path, cause);
	}
	if (strncmp(src, "env:", 4) == 0)
		return secret_read_env(src + 4, cause);
	if (strncmp(src, "vault:", 6) == 0) {
		*cause = fmt_alloc("the vault: secret source is not yet supported");
		return NULL;
	}
	*cause = fmt_alloc("unknown secret source (use file:, credential:, env: or vault:)");
	return NULL;
}

/* Register a secret with the leak guard. */
void
secret_guard_add(const struct secret *s)
{
	if (s == NULL || s->len < GUARD_MIN_LEN || nguard == GUARD_MAX)
		return;
	guard[nguard++] = s;
}

/* Forget a secret (before it is freed). */
void
secret_guard_del(const struct secret *s)
{
	size_t	i;

	for (i = 0; i < nguard; i++) {
		if (guard[i] == s) {
			guard[i] = guard[--nguard];
			return;
		}
	}
}

/* Replace every registered secret found in buf by '*'s. */
size_t
secret_guard_scrub(char *buf, size_t len)
{
	size_t	 i, hits = 0;
	char	*p, *end = buf + len;

	for (i = 0; i < nguard; i++) {
		const struct secret *s = guard[i];

		p = buf;
		while ((size_t)(end - p) >= s->len &&
		    (p = memmem(p, (size_t)(end - p), s->p, s->len)) != NULL) {
			memset(p, '*', s->len);
			p += s->len;
			hits++;
		}
	}
	guard_hits += hits;
	return hits;
}

/* Number of replacements made since start. */
unsigned long long
secret_guard_hits(void)
{
	return guard_hits;
}

/* No core dumps, no ptrace by other uids: memory holds keys. */
void
secret_harden_process(void)
{
	struct rlimit	rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
