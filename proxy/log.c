/*
 * log.c — stderr logging with levels, one write(2) per line.
 */
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "log.h"

#define LOG_BUF_SIZE	65536

static const char	*log_prog = "ocp-proxy";
static char		 log_buf[LOG_BUF_SIZE];	/* info/debug lines awaiting a write */
static size_t		 log_buf_len;
static void		(*log_kick)(void);
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

enum log_level
log_get_level(void)
{
	return log_lvl;
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

void
log_ms_tv(unsigned long long ms, struct timeval *tv)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* RFC 3339 UTC with milliseconds: 2026-11-27T05:12:28.123Z (seconds part cached). */
void
log_time(char *buf, unsigned long long ms)
{
	static unsigned long long	 csec = (unsigned long long)-1;
	static char			 cached[32];
	time_t				 t = (time_t)(ms / 1000);
	struct tm			 tm;
	unsigned			 m = (unsigned)(ms % 1000);

	if (ms / 1000 == csec) {
		memcpy(buf, cached, 19);
		buf[19] = '.';
		buf[20] = (char)('0' + m / 100);
		buf[21] = (char)('0' + m / 10 % 10);
		buf[22] = (char)('0' + m % 10);
		buf[23] = 'Z';
		buf[24] = '\0';
		return;
	}
	gmtime_r(&t, &tm);
	snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
	    (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
	    (unsigned)tm.tm_mday % 100, (unsigned)tm.tm_hour % 100,
	    (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100, (unsigned)(ms % 1000));
	memcpy(cached, buf, 19);
	csec = ms / 1000;
}

/* Write the buffered info/debug lines now. */
void
log_flush(void)
{
	size_t	done = 0;
	ssize_t	w;

	while (done < log_buf_len) {
		if ((w = write(STDERR_FILENO, log_buf + done, log_buf_len - done)) <= 0)
			break;
		done += (size_t)w;
	}
	log_buf_len = 0;
}

/*
 * From now on info/debug lines are collected and written together when kick()
 * has the event loop call log_flush() (one write per loop pass instead of one
 * per request).  Errors and warnings are still written at once, in order.
 */
void
log_set_buffered(void (*kick)(void))
{
	log_kick = kick;
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
	if (log_kick != NULL && lvl >= LOG_INFO) {
		if (log_buf_len + (size_t)n > sizeof(log_buf))
			log_flush();
		if (log_buf_len == 0)
			log_kick();
		memcpy(log_buf + log_buf_len, line, (size_t)n);
		log_buf_len += (size_t)n;
		return;
	}
	if (log_buf_len > 0)
		log_flush();
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
