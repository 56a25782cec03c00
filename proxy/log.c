/*
 * log.c — stderr logging with levels, one write(2) per line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "log.h"

static const char	*log_prog = "ocp-proxy";
static enum log_level	 log_lvl = LOG_INFO;
static log_scrub_fn	 log_scrub;
static const char *const log_names[] = { "error", "warning", "info", "debug" };

/* Remember the program name used as the line prefix. */
void
log_init(const char *progname)
{
	if (progname != NULL)
		log_prog = progname;
}

/* Set the most verbose level written. */
void
log_set_level(enum log_level lvl)
{
	log_lvl = lvl;
}

/* Parse "error", "warning", "info" or "debug". */
int
log_level_parse(const char *s, enum log_level *out)
{
	size_t	i;

	for (i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Install the leak guard's scrubber. */
void
log_set_scrub(log_scrub_fn fn)
{
	log_scrub = fn;
}

/* Milliseconds since the epoch from the real-time clock. */
unsigned long long
log_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* RFC 3339 UTC with milliseconds: 2026-11-27T05:12:28.123Z. */
void
log_time(char *buf, unsigned long long ms)
{
	time_t		t = (time_t)(ms / 1000);
	struct tm	tm;

	gmtime_r(&t, &tm);
	snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
	    (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
	    (unsigned)tm.tm_mday % 100, (unsigned)tm.tm_hour % 100,
	    (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100, (unsigned)(ms % 1000));
}

static void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char	line[2048], ts[32];
	int	n, m;

	log_time(ts, log_now_ms());
	n = snprintf(line, sizeof(line), "%s %s[%ld]: %s: ", ts, log_prog,
	    (long)getpid(), log_names[lvl]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	line[n] = '\0';
	if (log_scrub != NULL)
		log_scrub(line, (size_t)n);
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

/* Write one line at the given level. */
void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list	ap;

	if (lvl > log_lvl)
		return;
	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

/* Log an error and exit 1: only for start-up and broken invariants. */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

static void
log_event_cb(int severity, const char *msg)
{
	log_msg(severity >= EVENT_LOG_ERR ? LOG_ERR :
	    severity == EVENT_LOG_WARN ? LOG_WARN : LOG_DEBUG, "libevent: %s", msg);
}

/* Route libevent's own messages through log_msg. */
void
log_libevent(void)
{
	event_set_log_callback(log_event_cb);
}
