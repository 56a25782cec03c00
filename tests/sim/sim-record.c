/*
 * sim-record.c — the record trail: one JSON line per API request, appended
 * to --record and flushed before the reply is sent, and the last
 * SIM_MAX_RECORDS lines kept in memory for GET /__sim/records.
 * The x-api-signature value is never recorded (only "<present>").
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include <openssl/sha.h>
#include <event2/keyvalq_struct.h>

#include "sim.h"

#define SIM_MAX_HEADERS	256	/* distinct header names recorded */

/* Lowercase copy of a header name. */
static char *
sim_lower(const char *s)
{
	char	*d;
	size_t	 i;

	if ((d = strdup(s)) == NULL)
		return NULL;
	for (i = 0; d[i] != '\0'; i++)
		d[i] = (char)tolower((unsigned char)d[i]);
	return d;
}

/* Whether a header of kv's name comes before kv. */
static int
sim_header_seen(struct evkeyvalq *hdrs, const struct evkeyval *kv)
{
	struct evkeyval	*p;

	for (p = TAILQ_FIRST(hdrs); p != NULL && p != kv; p = TAILQ_NEXT(p, next))
		if (strcasecmp(p->key, kv->key) == 0)
			return 1;
	return 0;
}

/* Append the values of kv's name from kv on, joined by ", ", as a string. */
static void
sim_header_value(struct evbuffer *b, const struct evkeyval *kv)
{
	const struct evkeyval	*p;
	struct evbuffer		*v;
	int			 more = 0;

	if ((v = evbuffer_new()) == NULL) {
		evbuffer_add(b, "null", 4);
		return;
	}
	for (p = kv; p != NULL; p = TAILQ_NEXT(p, next)) {
		if (strcasecmp(p->key, kv->key) != 0)
			continue;
		if (more++)
			evbuffer_add(v, ", ", 2);
		evbuffer_add(v, p->value, strlen(p->value));
	}
	sim_json_str(b, evbuffer_pullup(v, -1), evbuffer_get_length(v));
	evbuffer_free(v);
}

/* Append {"lowercased-name": "value", ...}; x-api-signature is masked. */
static void
sim_record_headers(struct evbuffer *b, struct evkeyvalq *hdrs)
{
	struct evkeyval	*kv;
	char		*name;
	int		 first = 1, n = 0;

	evbuffer_add(b, "{", 1);
	TAILQ_FOREACH(kv, hdrs, next) {
		if (++n > SIM_MAX_HEADERS)
			break;
		if (sim_header_seen(hdrs, kv) || (name = sim_lower(kv->key)) == NULL)
			continue;
		if (!first)
			evbuffer_add(b, ",", 1);
		first = 0;
		sim_json_cstr(b, name);
		evbuffer_add(b, ":", 1);
		if (strcmp(name, "x-api-signature") == 0)
			evbuffer_add(b, "\"<present>\"", 11);
		else
			sim_header_value(b, kv);
		free(name);
	}
	evbuffer_add(b, "}", 1);
}

/* Keep line (ownership taken) as the newest in-memory record. */
static void
sim_ring_push(struct sim *sim, char *line)
{
	size_t	slot;

	if (sim->ring_len == SIM_MAX_RECORDS) {
		free(sim->ring[sim->ring_start]);
		sim->ring[sim->ring_start] = line;
		sim->ring_start = (sim->ring_start + 1) % SIM_MAX_RECORDS;
		return;
	}
	slot = (sim->ring_start + sim->ring_len) % SIM_MAX_RECORDS;
	sim->ring[slot] = line;
	sim->ring_len++;
}

/*
 * Record one API request.  status is what will be sent (0: no answer);
 * fault is the fault mode applied to it.
 */
void
sim_record(struct sim *sim, struct evhttp_request *req, const char *path,
    const unsigned char *body, size_t len, const struct sim_check *ck,
    int status, enum sim_fault_mode fault)
{
	struct evbuffer	*b;
	unsigned char	 md[SHA256_DIGEST_LENGTH];
	char		 hex[2 * SHA256_DIGEST_LENGTH + 1], *line;
	size_t		 n;

	if ((b = evbuffer_new()) == NULL)
		return;
	SHA256(body, len, md);
	sim_hex(md, sizeof(md), hex);
	evbuffer_add_printf(b, "{\"seq\":%llu,\"t_ms\":%lld,\"method\":\"%s\","
	    "\"path\":", (unsigned long long)++sim->seq,
	    (long long)sim_now_ms(),
	    sim_method_name(evhttp_request_get_command(req)));
	sim_json_cstr(b, path);
	evbuffer_add(b, ",\"uri\":", 7);
	sim_json_cstr(b, evhttp_request_get_uri(req));
	evbuffer_add(b, ",\"headers\":", 11);
	sim_record_headers(b, evhttp_request_get_input_headers(req));
	evbuffer_add(b, ",\"body\":", 8);
	sim_json_str(b, body, len);
	evbuffer_add_printf(b, ",\"body_len\":%zu,\"body_sha256\":\"%s\","
	    "\"nonce\":", len, hex);
	sim_json_cstr(b, ck->nonce);
	evbuffer_add(b, ",\"nonce_type\":", 14);
	sim_json_cstr(b, ck->nonce_type);
	evbuffer_add(b, ",\"public_key\":", 14);
	sim_json_cstr(b, ck->pub);
	evbuffer_add(b, ",\"result\":", 10);
	sim_json_cstr(b, ck->error != NULL ? ck->error : "ok");
	evbuffer_add_printf(b, ",\"status\":%d,\"fault\":", status);
	sim_json_cstr(b, fault == SIM_FAULT_NONE ? NULL : sim_fault_name(fault));
	evbuffer_add_printf(b, ",\"tls_session_reused\":%s}",
	    sim_session_reused(req) ? "true" : "false");

	n = evbuffer_get_length(b);
	if ((line = malloc(n + 1)) != NULL) {
		evbuffer_copyout(b, line, n);
		line[n] = '\0';
		if (sim->record != NULL) {
			fwrite(line, 1, n, sim->record);
			fputc('\n', sim->record);
			fflush(sim->record);
		}
		sim_ring_push(sim, line);
	}
	evbuffer_free(b);
}

/* Append the in-memory records as one JSON array, oldest first. */
void
sim_records_json(struct sim *sim, struct evbuffer *out)
{
	size_t	i;

	evbuffer_add(out, "[", 1);
	for (i = 0; i < sim->ring_len; i++) {
		if (i > 0)
			evbuffer_add(out, ",\n", 2);
		evbuffer_add(out, sim->ring[(sim->ring_start + i) %
		    SIM_MAX_RECORDS], strlen(sim->ring[(sim->ring_start + i) %
		    SIM_MAX_RECORDS]));
	}
	evbuffer_add(out, "]", 1);
}

/* Forget the in-memory records (the file is append-only). */
void
sim_records_clear(struct sim *sim)
{
	size_t	i;

	for (i = 0; i < sim->ring_len; i++)
		free(sim->ring[(sim->ring_start + i) % SIM_MAX_RECORDS]);
	sim->ring_start = sim->ring_len = 0;
}
