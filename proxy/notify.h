/*
 * notify.c — the systemd notification protocol (sd_notify(3)) without
 * libsystemd: one datagram per state change to $NOTIFY_SOCKET.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

/* Send "READY=1", "STOPPING=1", "RELOADING=1", ...; no-op outside systemd. */
void	notify_send(const char *state);
/* Watchdog interval in ms requested by the unit ($WATCHDOG_USEC), 0 if none. */
unsigned long long notify_watchdog_ms(void);

#endif
