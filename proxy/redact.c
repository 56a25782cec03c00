/*
 * redact.c — the set of member names whose values are redacted in logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

struct redact_name {
	const char	*s;		/* points into redact_set.text */
	size_t		 len;
};

struct redact_set {
	char			*text;		/* copy of the list, names inside */
	struct redact_name	*names;
	size_t			 n;
	unsigned long long	 lens;		/* bit len % 64 set for each name */
	redact_fp_fn		 fp;
	void			*fp_arg;
};

/* Set *cause to a malloc'd message about the 1-based item idx. */
static void
redact_set_err(char **cause, const char *what, size_t idx)
{
	char	msg[128];

	snprintf(msg, sizeof(msg), "%s (item %zu of the list)", what, idx);
	*cause = strdup(msg);
}

/* Trim spaces and tabs around s[0..*len); returns the new start. */
static const char *
redact_set_trim(const char *s, size_t *len)
{
	while (*len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return s;
}

/* Split rs->text on commas into rs->names; -1 and *cause on an empty item. */
static int
redact_set_split(struct redact_set *rs, char **cause)
{
	const char	*p = rs->text, *comma, *s;
	size_t		 len;

	for (;;) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		s = redact_set_trim(p, &len);
		if (len == 0) {
			redact_set_err(cause, "empty name", rs->n + 1);
			return -1;
		}
		rs->names[rs->n].s = s;
		rs->names[rs->n].len = len;
		rs->lens |= 1ULL << (len % 64);
		rs->n++;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/* Parse a comma-separated list of names; NULL and *cause on error. */
struct redact_set *
redact_set_new(const char *list, char **cause)
{
	struct redact_set	*rs;
	size_t			 items = 1;
	const char		*p;

	*cause = NULL;
	for (p = list; *p != '\0'; p++)
		if (*p == ',')
			items++;
	if ((rs = calloc(1, sizeof(*rs))) == NULL ||
	    (rs->text = strdup(list)) == NULL ||
	    (rs->names = calloc(items, sizeof(*rs->names))) == NULL) {
		*cause = strdup("out of memory");
		redact_set_free(rs);
		return NULL;
	}
	if (redact_set_split(rs, cause) == -1) {
		redact_set_free(rs);
		return NULL;
	}
	return rs;
}

/* Free a set; accepts NULL. */
void
redact_set_free(struct redact_set *rs)
{
	if (rs == NULL)
		return;
	free(rs->names);
	free(rs->text);
	free(rs);
}

/* Is key[0..len) one of the names?  Exact and case-sensitive. */
int
redact_set_has(const struct redact_set *rs, const unsigned char *key,
    size_t len)
{
	size_t	i;

	/* most keys of a body differ in length from every name: one test */
	if (rs == NULL || !(rs->lens >> (len % 64) & 1))
		return 0;
	for (i = 0; i < rs->n; i++) {
		if (rs->names[i].len == len &&
		    memcmp(rs->names[i].s, key, len) == 0)
			return 1;
	}
	return 0;
}

/* Turn fingerprint mode on (fn) or off (NULL). */
void
redact_set_fingerprint(struct redact_set *rs, redact_fp_fn fn, void *arg)
{
	rs->fp = fn;
	rs->fp_arg = fn != NULL ? arg : NULL;
}

/* Is the set in fingerprint mode? */
int
redact_set_fingerprints(const struct redact_set *rs)
{
	return rs != NULL && rs->fp != NULL;
}

/* Are the first 16 characters of hex lowercase hex digits? */
static int
redact_set_is_hex16(const char *hex)
{
	size_t	i;

	for (i = 0; i < 16; i++) {
		if (!((hex[i] >= '0' && hex[i] <= '9') ||
		    (hex[i] >= 'a' && hex[i] <= 'f')))
			return 0;
	}
	return 1;
}

/* Write the replacement text for the value val[0..len) to dst. */
size_t
redact_set_mask(const struct redact_set *rs, const unsigned char *val,
    size_t len, char dst[REDACT_MASK_MAX])
{
	char	hex[17];
	size_t	tag = sizeof(REDACT_FP_TAG) - 1;

	if (redact_set_fingerprints(rs)) {
		memset(hex, 0, sizeof(hex));
		rs->fp(rs->fp_arg, val, len, hex);
		if (redact_set_is_hex16(hex)) {
			memcpy(dst, REDACT_FP_TAG, tag);
			memcpy(dst + tag, hex, 16);
			dst[tag + 16] = '\0';
			return tag + 16;
		}
	}
	memcpy(dst, REDACT_MASKED, sizeof(REDACT_MASKED));
	return sizeof(REDACT_MASKED) - 1;
}
