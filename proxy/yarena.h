/*
 * yarena.h — a bump allocator for one yajl parse, wiped when the parse ends.
 *
 * Used for the policy field scan (policy.c).  yajl allocates its handle,
 * lexer, byte stack and decode buffer for every parse (five to seven malloc
 * calls), and its decode buffer holds unescaped string values, which may be
 * passwords or keys, then frees them unwiped.
 * A yarena lives in the parsing function's frame: yajl allocates from it,
 * falls back to the heap only for what does not fit (long escaped strings,
 * deep nesting), and yarena_done() zeroes every byte yajl was given, heap
 * blocks included, so a parse leaves neither allocations nor plaintext.
 */
#ifndef YARENA_H
#define YARENA_H
#include <stddef.h>
#include <yajl/yajl_common.h>

#define YARENA_SIZE	6144	/* a handle, lexer, stack and 2 KB decode buffer fit */

struct yarena {
	yajl_alloc_funcs	funcs;		/* pass &funcs to yajl_alloc */
	size_t			used;		/* bytes of buf handed out */
	size_t			high;		/* most ever handed out: what to wipe */
	size_t			heap;		/* heap blocks still live (for tests) */
	_Alignas(16) unsigned char buf[YARENA_SIZE];
};

/* Make an empty arena; its funcs point back at it. */
void	yarena_init(struct yarena *);
/* After yajl_free(): zero what the arena handed out. */
void	yarena_done(struct yarena *);

#endif
