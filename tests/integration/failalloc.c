/*
 * failalloc.c — LD_PRELOAD fault injection for integration tests: the first
 * call of one allocator made from given functions of the main program
 * fails, as it would when memory runs out there.
 *
 *   OCP_FAIL_FN  evbuffer_new or calloc
 *   OCP_FAIL_IN  OFF:SIZE[,OFF:SIZE...]  the functions' offsets and sizes in
 *                the executable, hex (`nm -S`); the caller's return address
 *                must lie in one of them
 *
 * Built by the test that uses it: cc -shared -fPIC -o failalloc.so failalloc.c -ldl
 * (with -DFAIL_CALLOC for calloc).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct evbuffer;

static uintptr_t	 fa_base;
static int		 fa_done;

static int
fa_first(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	*(uintptr_t *)arg = (uintptr_t)info->dlpi_addr;
	return 1;	/* the first entry is the main program */
}

static void __attribute__((constructor))
fa_init(void)
{
	dl_iterate_phdr(fa_first, &fa_base);
}

/* Fail this call?  Only the first one of fn from inside the listed functions. */
static int
fa_fail(const char *fn, void *ra)
{
	const char	*want = getenv("OCP_FAIL_FN"), *in = getenv("OCP_FAIL_IN");
	uintptr_t	 off, lo, len;
	char		*end;

	if (fa_done || fa_base == 0 || want == NULL || in == NULL || strcmp(want, fn) != 0)
		return 0;
	off = (uintptr_t)ra - fa_base;
	while (*in != '\0') {
		lo = strtoul(in, &end, 16);
		if (*end != ':')
			return 0;
		len = strtoul(end + 1, &end, 16);
		if (off >= lo && off < lo + len)
			return fa_done = 1;
		if (*end != ',')
			return 0;
		in = end + 1;
	}
	return 0;
}

struct evbuffer *
evbuffer_new(void)
{
	static struct evbuffer *(*real)(void);

	if (fa_fail("evbuffer_new", __builtin_return_address(0)))
		return NULL;
	if (real == NULL)
		real = (struct evbuffer *(*)(void))dlsym(RTLD_NEXT, "evbuffer_new");
	return real();
}

#ifdef FAIL_CALLOC	/* built only for calloc: ASan has its own, which this would bypass */
extern void	*__libc_calloc(size_t, size_t);

void *
calloc(size_t n, size_t size)
{
	if (fa_fail("calloc", __builtin_return_address(0)))
		return NULL;
	return __libc_calloc(n, size);
}
#endif
