/*
 * catalogue.c — the OnChainPay endpoint paths (ocp-api.md §5) as data.
 * All 85 methods are POST with a JSON body; the table holds their exact
 * paths, sorted in byte order so that a lookup is a binary search.
 */
#ifndef CATALOGUE_H
#define CATALOGUE_H
#include <stddef.h>

#define CATALOGUE_PATHS	85	/* methods listed in ocp-api.md §5 */

/* The paths, sorted by strcmp(); catalogue_count entries. */
extern const char *const	catalogue_paths[];
extern const size_t		catalogue_count;

/*
 * 1 if path[0..len) is exactly one of the catalogue paths, else 0.
 * path need not be NUL-terminated and may contain any byte.
 */
int	catalogue_has(const char *path, size_t len);

#endif
