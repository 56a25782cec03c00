/*
 * log.c — the daemon's own log lines on stderr (never the audit trail).
 * Every line: "<RFC 3339 UTC ms> ocp-proxy[pid]: <level>: <message>".
 * Messages never carry secret material: callers pass names, sizes and
 * fingerprints only; the leak guard (secret.c) scrubs as a second line of defence.
 */
#ifndef LOG_H
#define LOG_H
#include <stdarg.h>

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void	log_init(const char *progname);
void	log_set_level(enum log_level);
enum log_level log_get_level(void);
int	log_level_parse(const char *, enum log_level *);
void	log_msg(enum log_level, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
#define log_err(...)	log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_DEBUG, __VA_ARGS__)
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
/* Format the current time as RFC 3339 UTC with milliseconds into buf[32]. */
void	log_time(char *buf, unsigned long long ms);
unsigned long long log_now_ms(void);
struct timeval;
/* A timeout of ms milliseconds as a timeval (for event_add). */
void	log_ms_tv(unsigned long long ms, struct timeval *tv);
/* Collect info/debug lines; kick() must arrange a log_flush() soon. */
void	log_set_buffered(void (*kick)(void));
void	log_flush(void);
/* Route libevent's own warnings through log_msg. */
void	log_libevent(void);
/* Hook to scrub a formatted line before it is written (installed by secret.c). */
typedef void (*log_scrub_fn)(char *line, size_t len);
void	log_set_scrub(log_scrub_fn);

#endif
