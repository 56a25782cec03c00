/*
 * wipe.c — evbuffers that may hold secrets, handled so that no freed byte
 * keeps one.  libevent frees a chain without clearing it: after a drain,
 * after a pullup (which copies into a new chain and frees the old ones), and
 * after evbuffer_remove_buffer copied part of a chain and drained it.  These
 * helpers clear the bytes first.  Used for request bodies (a caller may send
 * a password), answers (the API returns passwords and API-key secrets),
 * signed requests and Vault traffic.
 */
#ifndef WIPE_H
#define WIPE_H
#include <stddef.h>
#include <sys/types.h>

struct evbuffer;

/* Zero every byte of b in place, chain by chain (nothing copied). */
void		 wipe_evbuffer(struct evbuffer *b);
/* Zero every byte of b, then free it; NULL is ignored. */
void		 wipe_free(struct evbuffer *b);
/* Zero the first n bytes of b, then drain them. */
void		 wipe_drain(struct evbuffer *b, size_t n);
/* Move n bytes from one buffer to another; what a copy leaves behind is zeroed. */
int		 wipe_move(struct evbuffer *from, struct evbuffer *to, size_t n);
/* b made contiguous without freeing an uncleared copy; NULL if empty or no memory. */
unsigned char	*wipe_pullup(struct evbuffer *b);
/* writev of b's bytes to fd; what was written is zeroed and drained. As writev. */
ssize_t		 wipe_write(struct evbuffer *b, int fd);

#endif
