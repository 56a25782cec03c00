/*
 * sim-control.c — the control plane under /__sim/ (no auth, never recorded):
 *   POST /__sim/fault   {"mode":..., "ms":N, "bytes":N, "count":N}
 *   GET  /__sim/fault   the current fault
 *   GET  /__sim/records JSON array of the in-memory records
 *   POST /__sim/reset   clear records, nonce state, fault and stats
 *   GET  /__sim/stats   {"requests","connections","handshakes","resumed"}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "sim.h"

static const char *const sim_fault_names[] = {
	[SIM_FAULT_NONE] = "none",
	[SIM_FAULT_DELAY] = "delay",
	[SIM_FAULT_CLOSE] = "close",
	[SIM_FAULT_CLOSE_MID] = "close_mid",
	[SIM_FAULT_STATUS500] = "status500",
	[SIM_FAULT_GARBAGE] = "garbage",
	[SIM_FAULT_HUGE] = "huge",
	[SIM_FAULT_NO_CTYPE] = "no_ctype",
	[SIM_FAULT_STATUS204] = "status204",
	[SIM_FAULT_STATUS304] = "status304",
};

#define SIM_NFAULTS	(sizeof(sim_fault_names) / sizeof(sim_fault_names[0]))

const char *
sim_fault_name(enum sim_fault_mode m)
{
	return (size_t)m < SIM_NFAULTS ? sim_fault_names[m] : "?";
}

/* Reply 200 with a JSON body. */
static void
sim_control_json(struct evhttp_request *req, struct evbuffer *b)
{
	sim_reply(req, 200, "application/json", b);
}

static void
sim_fault_json(struct sim *sim, struct evbuffer *b)
{
	evbuffer_add_printf(b, "{\"mode\":\"%s\",\"ms\":%ld,\"bytes\":%zu,"
	    "\"count\":%ld}", sim_fault_name(sim->fault.mode), sim->fault.ms,
	    sim->fault.bytes, sim->fault.count);
}

/* Integer member name of obj in [0, max]; -1 if absent, -2 if invalid. */
static long long
sim_member_int(yajl_val obj, const char *name, long long max)
{
	const char	*path[] = { name, NULL };
	yajl_val	 v = yajl_tree_get(obj, path, yajl_t_any);

	if (v == NULL || YAJL_IS_NULL(v))
		return -1;
	if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 ||
	    YAJL_GET_INTEGER(v) > max)
		return -2;
	return YAJL_GET_INTEGER(v);
}

/* Parse a fault request; NULL on success, else the reason. */
static const char *
sim_fault_parse(const char *text, struct sim_fault *f)
{
	const char	*mpath[] = { "mode", NULL };
	char		 err[128];
	yajl_val	 root, mode;
	long long	 ms, bytes, count;
	size_t		 i;
	const char	*why = NULL, *name = NULL;

	memset(f, 0, sizeof(*f));
	if ((root = yajl_tree_parse(text, err, sizeof(err))) == NULL)
		return "body is not JSON";
	if ((mode = yajl_tree_get(root, mpath, yajl_t_string)) != NULL)
		name = YAJL_GET_STRING(mode);
	ms = sim_member_int(root, "ms", 3600 * 1000);
	bytes = sim_member_int(root, "bytes", SIM_HUGE_MAX);
	count = sim_member_int(root, "count", 1000000000);
	if (!YAJL_IS_OBJECT(root) || name == NULL)
		why = "\"mode\" (a string) is required";
	else if (ms == -2 || bytes == -2 || count == -2)
		why = "ms, bytes and count must be non-negative integers";
	else {
		why = "unknown mode";
		for (i = 0; i < SIM_NFAULTS; i++)
			if (strcmp(name, sim_fault_names[i]) == 0) {
				f->mode = (enum sim_fault_mode)i;
				why = NULL;
			}
	}
	f->ms = ms > 0 ? (long)ms : 0;
	f->bytes = bytes > 0 ? (size_t)bytes : 0;
	f->count = count > 0 ? (long)count : 0;
	if (why == NULL && f->mode == SIM_FAULT_HUGE && f->bytes == 0)
		f->bytes = SIM_HUGE_DEFAULT;
	yajl_tree_free(root);
	return why;
}

static void
sim_control_fault(struct sim *sim, struct evhttp_request *req,
    struct evbuffer *b)
{
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	struct sim_fault	 f;
	size_t			 len = evbuffer_get_length(in);
	const char		*why;
	char			*text;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
		sim_fault_json(sim, b);
		sim_control_json(req, b);
		return;
	}
	if ((text = malloc(len + 1)) == NULL) {
		sim_reply_error(req, 500, "INTERNAL_ERROR", "out of memory");
		return;
	}
	evbuffer_copyout(in, text, len);
	text[len] = '\0';
	why = strlen(text) != len ? "NUL in body" : sim_fault_parse(text, &f);
	free(text);
	if (why != NULL) {
		sim_reply_error(req, 400, "BAD_FAULT", why);
		return;
	}
	sim->fault = f;
	sim_fault_json(sim, b);
	sim_control_json(req, b);
}

/* POST /__sim/reset */
static void
sim_control_reset(struct sim *sim, struct evhttp_request *req,
    struct evbuffer *b)
{
	struct sim_key	*k;

	sim_records_clear(sim);
	for (k = sim->keys; k != NULL; k = k->next)
		sim_nonce_clear(k);
	memset(&sim->fault, 0, sizeof(sim->fault));
	memset(&sim->stats, 0, sizeof(sim->stats));
	evbuffer_add(b, "{\"reset\":true}", 14);
	sim_control_json(req, b);
}

/* Dispatch a /__sim/ request. */
void
sim_control(struct sim *sim, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type	 m = evhttp_request_get_command(req);
	struct evbuffer		*b;
	int			 get = m == EVHTTP_REQ_GET, post = m == EVHTTP_REQ_POST;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (strcmp(path, "/__sim/fault") == 0 && (get || post))
		sim_control_fault(sim, req, b);
	else if (strcmp(path, "/__sim/reset") == 0 && post)
		sim_control_reset(sim, req, b);
	else if (strcmp(path, "/__sim/records") == 0 && get) {
		sim_records_json(sim, b);
		sim_control_json(req, b);
	} else if (strcmp(path, "/__sim/stats") == 0 && get) {
		evbuffer_add_printf(b, "{\"requests\":%llu,\"connections\":%llu,"
		    "\"handshakes\":%llu,\"resumed\":%llu}",
		    (unsigned long long)sim->stats.requests,
		    (unsigned long long)sim->stats.connections,
		    (unsigned long long)sim->stats.handshakes,
		    (unsigned long long)sim->stats.resumed);
		sim_control_json(req, b);
	} else if (strcmp(path, "/__sim/fault") == 0 ||
	    strcmp(path, "/__sim/reset") == 0 ||
	    strcmp(path, "/__sim/records") == 0 ||
	    strcmp(path, "/__sim/stats") == 0)
		sim_reply_error(req, 405, "METHOD_NOT_ALLOWED",
		    "Wrong method for this control path.");
	else
		sim_reply_error(req, 404, "NOT_FOUND", "Unknown control path.");
	evbuffer_free(b);
}
