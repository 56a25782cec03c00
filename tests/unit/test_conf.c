/*
 * test_conf.c — config parsing and validation (conf_load_string, conf_load,
 * conf_route) as a table of config texts with the value or the error each
 * must give, then secret_load over every source kind.  Every error line must
 * read "NAME:LINE: ..." (or "NAME: ..." for whole-file problems) and no error
 * may carry a secret value: the secrets used here are obviously fake.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "secret.h"
#include "unit.h"

#define NAME		"t.ini"
#define FAKE_SECRET	"FAKE-secret-for-tests-0123456789"	/* never in a message */
#define FAKE_SECRET2	"FAKE-second-secret-9876543210"

/* A valid profile; four lines. */
#define PROF	"[profile.main]\npublic_key = pk_test_fake\n" \
		"secret = env:OCP_TEST_SECRET\nroutes = /api/v1\n"
/* A second profile with routes R. */
#define PROF2(R) "[profile.partner]\npublic_key = pk_test_partner\n" \
		"secret = file:/etc/ocp-proxy/partner.key\nroutes = " R "\n"

enum vtype { V_NONE, V_UINT, V_SIZE, V_INT, V_STR };

struct ccase {
	const char	*what;
	const char	*text;
	const char	*err;	/* NULL: must load; else a substring of an error */
	int		 line;	/* err is on this line; 0: a whole-file error */
	enum vtype	 vt;	/* when it loads: the field to check */
	size_t		 off;
	unsigned long long n;
	const char	*s;
};

#define U(f, v)		.vt = V_UINT, .off = offsetof(struct conf, f), .n = (v)
#define Z(f, v)		.vt = V_SIZE, .off = offsetof(struct conf, f), .n = (v)
#define I(f, v)		.vt = V_INT, .off = offsetof(struct conf, f), .n = (v)
#define S(f, v)		.vt = V_STR, .off = offsetof(struct conf, f), .s = (v)
#define E(msg, l)	.err = (msg), .line = (l)

static const struct ccase cases[] = {
	/* defaults */
	{ "default address", PROF, S(listen_address, "127.0.0.1:8780") },
	{ "default socket_mode", PROF, U(socket_mode, 0660) },
	{ "default allow_non_loopback", PROF, I(allow_non_loopback, 0) },
	{ "default max_body_bytes", PROF, Z(max_body_bytes, 1048576) },
	{ "default max_header_bytes", PROF, Z(max_header_bytes, 16384) },
	{ "default max_json_depth", PROF, U(max_json_depth, 64) },
	{ "default max_connections", PROF, U(max_connections, 1024) },
	{ "default upstream timeout", PROF, U(timeout_ms, 30000) },
	{ "default max_response_bytes", PROF, Z(max_response_bytes, 16777216) },
	{ "default url", PROF, S(upstream_url, "https://ocp.onchainpay.io") },
	{ "default up_host", PROF, S(up_host, "ocp.onchainpay.io") },
	{ "default up_port", PROF, S(up_port, "443") },
	{ "default ca_file", PROF, S(ca_file, "") },
	{ "default audit path", PROF, S(audit_path, "/var/log/ocp-proxy/audit.jsonl") },
	{ "default bodies", PROF, I(audit_bodies, BODIES_REDACTED) },
	{ "default sync", PROF, I(audit_sync, SYNC_BATCH) },
	{ "default log level", PROF, S(log_level, "info") },

	/* integers */
	{ "uint min", "[listen]\nmax_json_depth = 1\n" PROF, U(max_json_depth, 1) },
	{ "uint max", "[listen]\nmax_json_depth = 512\n" PROF, U(max_json_depth, 512) },
	{ "uint below min", "[listen]\nmax_json_depth = 0\n" PROF,
	  E("[listen] max_json_depth: must be an integer in range", 2) },
	{ "uint above max", "[listen]\nmax_json_depth = 513\n" PROF,
	  E("[listen] max_json_depth: must be an integer in range", 2) },
	{ "uint negative", "[listen]\nmax_connections = -1\n" PROF,
	  E("[listen] max_connections: must be an integer", 2) },
	{ "uint trailing junk", "[listen]\nmax_connections = 12abc\n" PROF,
	  E("[listen] max_connections: must be an integer", 2) },
	{ "uint empty", "[listen]\nmax_connections =\n" PROF,
	  E("[listen] max_connections: must be an integer", 2) },
	{ "uint overflow", "[listen]\nmax_connections = 99999999999999999999999\n" PROF,
	  E("[listen] max_connections: must be an integer", 2) },
	{ "uint hex", "[listen]\nmax_connections = 0x10\n" PROF,
	  E("[listen] max_connections: must be an integer", 2) },
	{ "zero allowed", "[listen]\nshutdown_timeout_ms = 0\n" PROF, U(shutdown_timeout_ms, 0) },
	{ "size max", "[listen]\nmax_body_bytes = 67108864\n" PROF, Z(max_body_bytes, 64 << 20) },
	{ "size above max", "[listen]\nmax_body_bytes = 67108865\n" PROF,
	  E("[listen] max_body_bytes: must be an integer in range", 2) },
	{ "size below min", "[upstream]\nmax_response_bytes = 1023\n" PROF,
	  E("[upstream] max_response_bytes: must be an integer in range", 2) },
	{ "size 1 GiB", "[upstream]\nmax_response_bytes = 1073741824\n" PROF,
	  Z(max_response_bytes, 1ULL << 30) },
	{ "inline comment", "[listen]\nmax_json_depth = 32 ; deeper is refused\n" PROF,
	  U(max_json_depth, 32) },

	/* octal socket_mode */
	{ "octal 0600", "[listen]\nsocket_mode = 0600\n" PROF, U(socket_mode, 0600) },
	{ "octal without 0", "[listen]\nsocket_mode = 640\n" PROF, U(socket_mode, 0640) },
	{ "octal bad digit", "[listen]\nsocket_mode = 0689\n" PROF,
	  E("[listen] socket_mode: must be an octal mode", 2) },
	{ "octal above 0777", "[listen]\nsocket_mode = 01660\n" PROF,
	  E("[listen] socket_mode: must be an octal mode", 2) },
	{ "octal symbolic", "[listen]\nsocket_mode = rw-rw----\n" PROF,
	  E("[listen] socket_mode: must be an octal mode", 2) },

	/* booleans */
	{ "bool yes", "[listen]\nallow_non_loopback = yes\n" PROF, I(allow_non_loopback, 1) },
	{ "bool true", "[listen]\nallow_non_loopback = true\n" PROF, I(allow_non_loopback, 1) },
	{ "bool 1", "[listen]\nallow_non_loopback = 1\n" PROF, I(allow_non_loopback, 1) },
	{ "bool no", "[listen]\nallow_non_loopback = no\n" PROF, I(allow_non_loopback, 0) },
	{ "bool false", "[listen]\nallow_non_loopback = false\n" PROF, I(allow_non_loopback, 0) },
	{ "bool maybe", "[listen]\nallow_non_loopback = maybe\n" PROF,
	  E("[listen] allow_non_loopback: must be yes or no", 2) },
	{ "bool empty", "[listen]\nallow_non_loopback =\n" PROF,
	  E("[listen] allow_non_loopback: must be yes or no", 2) },

	/* enums */
	{ "bodies none", "[audit]\nbodies = none\n" PROF, I(audit_bodies, BODIES_NONE) },
	{ "bodies redacted", "[audit]\nbodies = redacted\n" PROF, I(audit_bodies, BODIES_REDACTED) },
	{ "bodies full", "[audit]\nbodies = full\n" PROF,
	  E("[audit] bodies: not one of the allowed values", 2) },
	{ "bodies prefix", "[audit]\nbodies = redact\n" PROF,
	  E("[audit] bodies: not one of the allowed values", 2) },
	{ "bodies both", "[audit]\nbodies = redacted|none\n" PROF,
	  E("[audit] bodies: not one of the allowed values", 2) },
	{ "sync always", "[audit]\nsync = always\n" PROF, I(audit_sync, SYNC_ALWAYS) },
	{ "sync none", "[audit]\nsync = none\n" PROF, I(audit_sync, SYNC_NONE) },
	{ "sync batch", "[audit]\nsync = batch\n" PROF, I(audit_sync, SYNC_BATCH) },
	{ "sync fsync", "[audit]\nsync = fsync\n" PROF,
	  E("[audit] sync: not one of the allowed values", 2) },
	{ "log level debug", "[log]\nlevel = debug\n" PROF, S(log_level, "debug") },
	{ "log level verbose", "[log]\nlevel = verbose\n" PROF,
	  E("[log] level: must be error, warning, info or debug", 2) },
	{ "audit redact", "[audit]\nredact = password, apiKey\n" PROF,
	  S(audit_redact, "password, apiKey") },
	{ "audit redact empty item", "[audit]\nredact = password, , secret\n" PROF,
	  E("[audit] redact: ", 2) },
	{ "audit redact trailing comma", "[audit]\nredact = password,\n" PROF,
	  E("empty name", 2) },
	{ "audit path relative", "[audit]\npath = audit.jsonl\n" PROF,
	  E("[audit] path: must be an absolute path", 2) },

	{ "default chain_key", PROF, S(audit_chain_key, "") },
	{ "default redact_mode", PROF, I(audit_redact_mode, REDACT_MODE_MASK) },
	{ "chain_key source", "[audit]\nchain_key = credential:chain\n" PROF,
	  S(audit_chain_key, "credential:chain") },
	{ "chain_key literal", "[audit]\nchain_key = " FAKE_SECRET "\n" PROF,
	  E("[audit] chain_key: must be a secret source", 2) },
	{ "fingerprint", "[audit]\nredact_mode = fingerprint\nchain_key = env:K\n" PROF,
	  I(audit_redact_mode, REDACT_MODE_FINGERPRINT) },
	{ "fingerprint needs chain_key", "[audit]\nredact_mode = fingerprint\n" PROF,
	  E("[audit] redact_mode: fingerprint needs chain_key", 2) },
	{ "redact_mode bogus", "[audit]\nredact_mode = hash\n" PROF,
	  E("[audit] redact_mode: not one of the allowed values", 2) },

	/* sections, keys and lines */
	{ "unknown section", "[listen]\naddress = 127.0.0.1:1\n[bogus]\nkey = 1\n" PROF,
	  E("[bogus]: unknown section", 3) },
	{ "key before any section", "stray = 1\n" PROF,
	  E("stray: key before the first [section] header", 1) },
	{ "unknown key", "[listen]\nadress = 127.0.0.1:1\n" PROF,
	  E("[listen] adress: unknown key", 2) },
	{ "key of another section", "[audit]\nurl = https://x\n" PROF,
	  E("[audit] url: unknown key", 2) },
	{ "duplicate key", "[listen]\naddress = 127.0.0.1:1\naddress = 127.0.0.1:2\n" PROF,
	  E("[listen] address: duplicate key", 3) },
	{ "duplicate across sections", "[log]\nlevel = info\n[listen]\nmax_json_depth = 2\n"
	  "[log]\nlevel = debug\n" PROF, E("[log] level: duplicate key", 6) },
	{ "continuation line is a duplicate", "[listen]\nmax_json_depth = 2\n  3\n" PROF,
	  E("[listen] max_json_depth: duplicate key", 3) },
	{ "syntax error", "[listen]\nthis line has no equals sign\n" PROF,
	  E("syntax error", 2) },
	{ "unterminated section", "[listen\n" PROF, E("syntax error", 1) },
	{ "CRLF and BOM", "\xef\xbb\xbf[listen]\r\nmax_json_depth = 7\r\n" PROF,
	  U(max_json_depth, 7) },
	{ "comment lines", "; a comment\n# another\n\n[listen]\nmax_json_depth = 9\n" PROF,
	  U(max_json_depth, 9) },

	/* sections without keys are checked too (inih reports keys only) */
	{ "empty unknown section", PROF "[bogus]\n", E("[bogus]: unknown section", 5) },
	{ "empty misspelt section", PROF "[audti]\n[log]\nlevel = info\n",
	  E("[audti]: unknown section", 5) },
	{ "empty section, inline comment", PROF "[nosuch] ; empty\n",
	  E("[nosuch]: unknown section", 5) },
	{ "empty known section", PROF "[audit]\n", Z(nprofiles, 1) },
	{ "empty profile section", PROF "[profile.third]\n",
	  E("[profile.third] public_key: missing", 5) },
	{ "empty profile section: secret", PROF "[profile.third]\n",
	  E("[profile.third] secret: missing", 5) },
	{ "empty profile section: routes", PROF "[profile.third]\n",
	  E("[profile.third] routes: missing", 5) },
	{ "empty profile section with a bad name", PROF "[profile.a b]\n",
	  E("[profile.a b]: profile names use letters", 5) },
	{ "indented [x] after a key is more value", "[listen]\nmax_json_depth = 2\n  [x]\n"
	  PROF, E("[listen] max_json_depth: duplicate key", 3) },
	{ "section name whole, not cut like inih", PROF "[0123456789012345678901234567890123456789"
	  "0123456789]\n", E("[01234567890123456789012345678901234567890123456789]: "
	  "unknown section", 5) },

	/* inih ignores what follows the ']': only blanks and a ';' comment may */
	{ "text after a header", "[listen]junk\n" PROF,
	  E("[listen]: text after the section header", 1) },
	{ "word after a header", "[listen] trailing\nmax_json_depth = 3\n" PROF,
	  E("[listen]: text after the section header", 1) },
	{ "second header after a header", "[profile.main] [profile.evil]\n"
	  "public_key = pk\nsecret = env:X\nroutes = /a\n",
	  E("[profile.main]: text after the section header", 1) },
	{ "']' after a header", "[listen]]\n" PROF, E("[listen]: text after the section", 1) },
	{ "'#' after a header is no comment", PROF "[log] # verbose\nlevel = debug\n",
	  E("[log]: text after the section header", 5) },
	{ "';' comment after a header", "[listen] ; the front\nmax_json_depth = 3\n" PROF,
	  U(max_json_depth, 3) },
	{ "';' right after a header", "[listen];front\nmax_json_depth = 4\n" PROF,
	  U(max_json_depth, 4) },
	{ "blanks after a header", "[listen] \t \nmax_json_depth = 5\n" PROF,
	  U(max_json_depth, 5) },
	{ "text after an empty section's header", PROF "[audit] x\n",
	  E("[audit]: text after the section header", 5) },

	/* post-parse problems carry the key's line */
	{ "url line", "[listen]\naddress = 127.0.0.1:1\n\n[upstream]\nca_file =\n"
	  "url = http://h.test\n" PROF, E("[upstream] url: must start with https://", 6) },
	{ "secret with an unknown scheme", "[profile.main]\npublic_key = pk\n"
	  "secret = foo:bar\nroutes = /a\n", E("[profile.main] secret: must be a secret", 3) },
	{ "vault public_key needs [vault]", "[profile.b]\npublic_key = vault:kv/o#p\n"
	  "secret = env:B\nroutes = /b\n",
	  E("[profile.b] public_key: a vault: source needs [vault] address", 2) },
	{ "vault auth exclusive", "[vault]\naddress = https://127.0.0.1:8200\n"
	  "token_file = /t\nrole_id = r\n" PROF, E("[vault] role_id: token_file and role_id", 4) },

	/* profiles */
	{ "literal secret", "[profile.main]\npublic_key = pk\nsecret = " FAKE_SECRET
	  "\nroutes = /api\n", E("[profile.main] secret: must be a secret source", 3) },
	{ "literal secret: not also missing", "[profile.main]\npublic_key = pk\nsecret = "
	  FAKE_SECRET2 "\nroutes = /api\n", E("[profile.main] secret: must be a secret", 3) },
	{ "empty secret", "[profile.main]\npublic_key = pk\nsecret =\nroutes = /api\n",
	  E("[profile.main] secret: must be a secret source", 3) },
	{ "every source kind", "[profile.a]\npublic_key = env:PK\nsecret = credential:a\n"
	  "routes = /a\n[profile.b]\npublic_key = b\nsecret = vault:kv/ocp#secret\n"
	  "routes = /b\n[profile.c]\npublic_key = c\nsecret = env:C\nroutes = /c\n"
	  "[vault]\naddress = https://127.0.0.1:8200\ntoken_file = /etc/vault.token\n",
	  Z(nprofiles, 3) },
	{ "vault source needs [vault]", "[profile.b]\npublic_key = b\nsecret = vault:kv/ocp#s\n"
	  "routes = /b\n", E("[profile.b] secret: a vault: source needs [vault] address", 3) },
	{ "vault needs an auth method", "[vault]\naddress = https://127.0.0.1:8200\n" PROF,
	  E("[vault]: set token_file, or role_id and secret_id_file", 1) },
	{ "vault address https only", "[vault]\naddress = http://127.0.0.1:8200\n"
	  "token_file = /t\n" PROF, E("[vault] address: must start with https://", 2) },
	{ "missing public_key", "[profile.main]\nsecret = env:X\nroutes = /api\n",
	  E("[profile.main] public_key: missing", 1) },
	{ "empty public_key", "[profile.main]\npublic_key =\nsecret = env:X\nroutes = /api\n",
	  E("[profile.main] public_key: must not be empty", 2) },
	{ "missing secret", "[profile.main]\npublic_key = pk\nroutes = /api\n",
	  E("[profile.main] secret: missing", 1) },
	{ "missing routes", "[profile.main]\npublic_key = pk\nsecret = env:X\n",
	  E("[profile.main] routes: missing", 1) },
	{ "empty routes", "[profile.main]\npublic_key = pk\nsecret = env:X\nroutes = , ,\n",
	  E("[profile.main] routes: needs at least one route", 4) },
	{ "route without slash", "[profile.main]\npublic_key = pk\nsecret = env:X\n"
	  "routes = api/v1\n", E("[profile.main] routes: each route must be a path prefix", 4) },
	{ "route with dotdot", "[profile.main]\npublic_key = pk\nsecret = env:X\n"
	  "routes = /api/../admin\n", E("routes: each route must be a path prefix", 4) },
	{ "route with query", "[profile.main]\npublic_key = pk\nsecret = env:X\n"
	  "routes = /api?x=1\n", E("routes: each route must be a path prefix", 4) },
	{ "route with percent", "[profile.main]\npublic_key = pk\nsecret = env:X\n"
	  "routes = /api%2f\n", E("routes: each route must be a path prefix", 4) },
	{ "too many routes", "[profile.main]\npublic_key = pk\nsecret = env:X\nroutes = "
	  "/1,/2,/3,/4,/5,/6,/7,/8,/9,/10,/11,/12,/13,/14,/15,/16,/17\n",
	  E("[profile.main] routes: too many routes", 4) },
	{ "sixteen routes", "[profile.main]\npublic_key = pk\nsecret = env:X\nroutes = "
	  "/1,/2,/3,/4,/5,/6,/7,/8,/9,/10,/11,/12,/13,/14,/15,/16\n", Z(nprofiles, 1) },
	{ "routes list", PROF PROF2("/api/v1/partner, /api/v2 ,/x"), Z(nprofiles, 2) },
	{ "same literal public key", PROF "[profile.partner]\npublic_key = pk_test_fake\n"
	  "secret = env:P\nroutes = /p\n", E("[profile.partner] public_key: the same public key "
	  "as [profile.main]: one section serves one API key pair", 6) },
	{ "same public key source", "[profile.a]\npublic_key = file:/etc/ocp/pk\nsecret = env:A\n"
	  "routes = /a\n[profile.b]\nsecret = env:B\npublic_key = file:/etc/ocp/pk\n"
	  "routes = /b\n", E("[profile.b] public_key: the same public key as [profile.a]", 7) },
	{ "same public key: the first earlier profile", PROF PROF2("/p") "[profile.c]\n"
	  "public_key = pk_test_partner\nsecret = env:C\nroutes = /c\n",
	  E("[profile.c] public_key: the same public key as [profile.partner]", 10) },
	{ "bare empty routes", "[profile.main]\npublic_key = pk\nsecret = env:X\nroutes =\n",
	  E("[profile.main] routes: needs at least one route", 4) },
	{ "empty routes with a comment", "[profile.main]\npublic_key = pk\nsecret = env:X\n"
	  "routes =   ; none yet\n", E("[profile.main] routes: needs at least one route", 4) },
	{ "duplicate route", PROF PROF2("/api/v2, /api/v1"),
	  E("[profile.partner] routes: /api/v1 is also a route of profile main", 8) },
	{ "duplicate profile key", "[profile.main]\npublic_key = pk\npublic_key = pk2\n"
	  "secret = env:X\nroutes = /a\n", E("[profile.main] public_key: duplicate key", 3) },
	{ "unknown profile key", "[profile.main]\npubkey = pk\n",
	  E("[profile.main] pubkey: unknown key", 2) },
	{ "profile name with space", "[profile.bad name]\npublic_key = pk\n",
	  E("[profile.bad name]: profile names use letters", 1) },
	{ "profile name with dot", "[profile.a.b]\npublic_key = pk\n",
	  E("[profile.a.b]: profile names use letters", 1) },
	{ "empty profile name", "[profile.]\npublic_key = pk\n",
	  E("[profile.]: profile names use letters", 1) },
	{ "profile name with slash", "[profile.../x]\npublic_key = pk\n",
	  E("profile names use letters", 1) },
	{ "no profile", "[listen]\nmax_json_depth = 2\n",
	  E("no [profile.NAME] section: nothing to sign with", 0) },

	/* upstream url */
	{ "url with port", "[upstream]\nurl = https://api.example.test:8443\n" PROF,
	  S(up_port, "8443") },
	{ "url host", "[upstream]\nurl = https://api.example.test:8443\n" PROF,
	  S(up_host, "api.example.test") },
	{ "url trailing slash", "[upstream]\nurl = https://api.example.test/\n" PROF,
	  S(up_host, "api.example.test") },
	{ "url hostname is not ip", "[upstream]\nurl = https://api.example.test\n" PROF,
	  I(up_host_is_ip, 0) },
	{ "url ipv4", "[upstream]\nurl = https://192.0.2.7:443\n" PROF, I(up_host_is_ip, 1) },
	{ "url ipv6 host", "[upstream]\nurl = https://[::1]:8443\n" PROF, S(up_host, "::1") },
	{ "url ipv6 port", "[upstream]\nurl = https://[::1]:8443\n" PROF, S(up_port, "8443") },
	{ "url ipv6 is ip", "[upstream]\nurl = https://[::1]:8443/\n" PROF, I(up_host_is_ip, 1) },
	{ "url ipv6 default port", "[upstream]\nurl = https://[2001:db8::1]\n" PROF,
	  S(up_port, "443") },
	{ "url http", "[upstream]\nurl = http://api.example.test\n" PROF,
	  E("[upstream] url: must start with https://", 2) },
	{ "url no scheme", "[upstream]\nurl = api.example.test\n" PROF,
	  E("[upstream] url: must start with https://", 2) },
	{ "url no host", "[upstream]\nurl = https://\n" PROF, E("[upstream] url: missing host", 2) },
	{ "url port only", "[upstream]\nurl = https://:443\n" PROF,
	  E("[upstream] url: missing host", 2) },
	{ "url port 0", "[upstream]\nurl = https://h.test:0\n" PROF,
	  E("[upstream] url: invalid port", 2) },
	{ "url port 65536", "[upstream]\nurl = https://h.test:65536\n" PROF,
	  E("[upstream] url: invalid port", 2) },
	{ "url port empty", "[upstream]\nurl = https://h.test:\n" PROF,
	  E("[upstream] url: invalid port", 2) },
	{ "url port name", "[upstream]\nurl = https://h.test:https\n" PROF,
	  E("[upstream] url: invalid port", 2) },
	{ "url path", "[upstream]\nurl = https://h.test/api/v1\n" PROF,
	  E("[upstream] url: must not carry a path", 2) },
	{ "url port and path", "[upstream]\nurl = https://h.test:8443/api\n" PROF,
	  E("[upstream] url: must not carry a path", 2) },
	{ "url query", "[upstream]\nurl = https://h.test?x=1\n" PROF,
	  E("[upstream] url: must not carry a path", 2) },
	{ "url ipv6 path", "[upstream]\nurl = https://[::1]:8443/api\n" PROF,
	  E("[upstream] url: must not carry a path", 2) },
	{ "url ipv6 junk", "[upstream]\nurl = https://[::1]x\n" PROF,
	  E("[upstream] url: must not carry a path", 2) },
	{ "url ipv6 unterminated", "[upstream]\nurl = https://[::1:8443\n" PROF,
	  E("[upstream] url: unterminated IPv6 address", 2) },

	/* listen address */
	{ "listen loopback", "[listen]\naddress = 127.0.0.2:9000\n" PROF,
	  S(listen_address, "127.0.0.2:9000") },
	{ "listen localhost", "[listen]\naddress = localhost:9000\n" PROF,
	  S(listen_address, "localhost:9000") },
	{ "listen ipv6 loopback", "[listen]\naddress = [::1]:9000\n" PROF,
	  S(listen_address, "[::1]:9000") },
	{ "listen any", "[listen]\naddress = 0.0.0.0:8780\n" PROF,
	  E("[listen] address: 0.0.0.0:8780 is not a loopback address", 2) },
	{ "listen ipv6 any", "[listen]\naddress = [::]:8780\n" PROF,
	  E("is not a loopback address (set allow_non_loopback = yes", 2) },
	{ "listen lan", "[listen]\naddress = 192.168.1.5:8780\n" PROF,
	  E("is not a loopback address", 2) },
	{ "listen any allowed", "[listen]\naddress = 0.0.0.0:8780\nallow_non_loopback = yes\n"
	  PROF "[caller.reports]\ntoken_sha256 = "
	  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
	  S(listen_address, "0.0.0.0:8780") },
	{ "listen any needs named callers", "[listen]\naddress = 0.0.0.0:8780\n"
	  "allow_non_loopback = yes\n" PROF,
	  E("without [caller.*] sections the proxy serves only loopback", 2) },
	{ "caller unknown key", "[caller.billing]\nuid = 1001\ncolour = red\n" PROF,
	  E("[caller.billing] colour: unknown key", 3) },
	{ "caller empty section", "[caller.billing]\n" PROF, E("[caller.billing]", 1) },
	{ "caller unknown profile", "[caller.billing]\nuid = 1001\nprofiles = nosuch\n" PROF,
	  E("[caller.billing]: profiles: no [profile.nosuch] section", 3) },
	{ "listen no port", "[listen]\naddress = 127.0.0.1\n" PROF,
	  E("[listen] address: expected HOST:PORT or unix:/path", 2) },
	{ "listen unix", "[listen]\naddress = unix:/run/ocp-proxy/sock\n" PROF,
	  S(listen_address, "unix:/run/ocp-proxy/sock") },
	{ "listen unix ignores loopback rule", "[listen]\naddress = unix:/run/s\n"
	  "socket_mode = 0664\n" PROF, U(socket_mode, 0664) },
	{ "listen unix relative", "[listen]\naddress = unix:run/sock\n" PROF,
	  E("[listen] address: unix socket path must be absolute", 2) },
	{ "listen unix world-writable", "[listen]\naddress = unix:/run/s\nsocket_mode = 0666\n"
	  PROF, E("[listen] socket_mode: world-writable socket modes are refused", 3) },
	{ "listen unix 0777", "[listen]\naddress = unix:/run/s\nsocket_mode = 777\n" PROF,
	  E("world-writable socket modes are refused", 3) },
	{ "listen unix 0602", "[listen]\naddress = unix:/run/s\nsocket_mode = 0602\n" PROF,
	  E("world-writable socket modes are refused", 3) },

	/* state dir set in the file */
	{ "state dir", "[state]\ndir = /srv/ocp\n" PROF, S(state_dir, "/srv/ocp") },
	{ "state dir relative", "[state]\ndir = var/ocp\n" PROF,
	  E("[state] dir: must be an absolute path", 2) },
};

/* The index of the first error line containing want, or -1. */
static int
errs_find(const struct conf_errs *e, const char *want)
{
	size_t	i;

	for (i = 0; i < e->n; i++)
		if (strstr(e->line[i], want) != NULL)
			return (int)i;
	return -1;
}

/* 1 if every error line starts with "NAME:" and none holds a fake secret. */
static int
errs_clean(const struct conf_errs *e)
{
	size_t	i;

	for (i = 0; i < e->n; i++) {
		if (strncmp(e->line[i], NAME ":", sizeof(NAME)) != 0 ||
		    strstr(e->line[i], FAKE_SECRET) != NULL ||
		    strstr(e->line[i], FAKE_SECRET2) != NULL)
			return 0;
	}
	return 1;
}

/* Print every error line (when a case failed). */
static void
errs_print(const struct conf_errs *e)
{
	size_t	i;

	for (i = 0; i < e->n; i++)
		fprintf(stderr, "    | %s\n", e->line[i]);
}

/* Check that the loaded conf holds the case's value. */
static void
case_value(const struct ccase *t, const struct conf *c)
{
	const char	*f = (const char *)c + t->off;

	switch (t->vt) {
	case V_UINT:
		CHECK(*(const unsigned *)(const void *)f == t->n);
		break;
	case V_SIZE:
		CHECK(*(const size_t *)(const void *)f == t->n);
		break;
	case V_INT:
		CHECK(*(const int *)(const void *)f == (int)t->n);
		break;
	case V_STR:
		CHECK_STREQ(*(char *const *)(const void *)f, t->s);
		break;
	case V_NONE:
		break;
	}
}

/* Check that the error is present, on the right line, in NAME:LINE: form. */
static void
case_error(const struct ccase *t, const struct conf_errs *e)
{
	char	prefix[64];
	int	i;

	CHECK((i = errs_find(e, t->err)) >= 0);
	if (i < 0)
		return;
	if (t->line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", NAME, t->line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", NAME);
	CHECK(strncmp(e->line[i], prefix, strlen(prefix)) == 0);
}

/* Run the table. */
static void
test_cases(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;
	size_t			 i;
	int			 failed;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ccase *t = &cases[i];

		failed = unit_failed;
		c = conf_load_string(t->text, NAME, &e);
		if (t->err == NULL) {
			CHECK(c != NULL && e.n == 0);
			if (c != NULL)
				case_value(t, c);
		} else {
			CHECK(c == NULL && e.n > 0);
			case_error(t, &e);
		}
		CHECK(errs_clean(&e));
		if (unit_failed != failed) {
			fprintf(stderr, "  in case \"%s\"\n", t->what);
			errs_print(&e);
		}
		conf_free(c);
		conf_errs_clear(&e);
	}
}

/* Lines inih would split are refused with their number, not truncated. */
static void
test_long_lines(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;
	char			 text[1024], pad[400];

	/* 198 characters is the longest line taken whole */
	memset(pad, 'x', 196);
	pad[196] = '\0';
	snprintf(text, sizeof(text), "; %s\n" PROF, pad);
	CHECK(strlen(text) - strlen(PROF) == 199);
	c = conf_load_string(text, NAME, &e);
	CHECK(c != NULL && e.n == 0);
	conf_free(c);
	conf_errs_clear(&e);

	/* 199 is one too many, even in a comment */
	snprintf(text, sizeof(text), "; x%s\n" PROF, pad);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(e.n == 1 && strcmp(e.line[0], NAME ":1: line longer than 198 characters") == 0);
	conf_free(c);
	conf_errs_clear(&e);

	/* a long value is not applied truncated: only the length error */
	memset(pad, 'a', 300);
	pad[300] = '\0';
	snprintf(text, sizeof(text), "[audit]\nredact = password,%s\n" PROF, pad);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(e.n == 1 && strncmp(e.line[0], NAME ":2: line longer than", 20) == 0);
	conf_free(c);
	conf_errs_clear(&e);

	/* the last line, without a newline, too; following lines keep their numbers */
	snprintf(text, sizeof(text), PROF "[listen]\nbogus = 1\n; %s", pad);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 2);
	CHECK(errs_find(&e, NAME ":6: [listen] bogus: unknown key") == 0);
	CHECK(errs_find(&e, NAME ":7: line longer than 198") == 1);
	conf_free(c);
	conf_errs_clear(&e);
}

/* Every problem is reported, not just the first. */
static void
test_collects_all(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;

	c = conf_load_string("[listen]\nmax_json_depth = 0\nsocket_mode = 9\n"
	    "[upstream]\nurl = http://x\n[profile.main]\npublic_key = pk\n"
	    "secret = " FAKE_SECRET "\nroutes = nope\n", NAME, &e);
	CHECK(c == NULL);
	CHECK(e.n == 5);	/* one line per problem */
	CHECK(errs_find(&e, NAME ":2: [listen] max_json_depth") >= 0);
	CHECK(errs_find(&e, NAME ":3: [listen] socket_mode") >= 0);
	CHECK(errs_find(&e, NAME ":8: [profile.main] secret: must be") >= 0);
	CHECK(errs_find(&e, NAME ":9: [profile.main] routes") >= 0);
	CHECK(errs_find(&e, NAME ":5: [upstream] url") >= 0);
	CHECK(errs_find(&e, "secret: missing") == -1);	/* refused, not also missing */
	CHECK(errs_clean(&e));
	conf_errs_clear(&e);
	CHECK(e.n == 0 && e.line == NULL);
}

/* Exactly one line per problem, "FILE:LINE: [section] key: message". */
static void
test_one_line_each(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;

	/* an unknown section's keys are not reported again, one by one */
	c = conf_load_string(PROF "[bogus]\na = 1\nb = 2\n", NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(e.n == 1 && strcmp(e.line[0], NAME ":5: [bogus]: unknown section") == 0);
	conf_errs_clear(&e);

	/* a refused secret is not also "missing" */
	c = conf_load_string("[profile.main]\npublic_key = pk\nsecret = foo:bar\n"
	    "routes = /a\n", NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(e.n == 1 && strncmp(e.line[0], NAME ":3: [profile.main] secret: must be", 34) == 0);
	conf_errs_clear(&e);

	/* an empty profile: each missing key, at the header */
	c = conf_load_string(PROF "\n[profile.third]\n", NAME, &e);
	CHECK(c == NULL && e.n == 3);
	CHECK(errs_find(&e, NAME ":6: [profile.third] public_key: missing") == 0);
	CHECK(errs_find(&e, NAME ":6: [profile.third] secret: missing") == 1);
	CHECK(errs_find(&e, NAME ":6: [profile.third] routes: missing") == 2);
	conf_errs_clear(&e);
}

/* A key not in the file: the line of its section header, or none and say so. */
static void
test_default_lines(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;

	setenv("STATE_DIRECTORY", "relative/dir", 1);
	c = conf_load_string("[log]\nlevel = info\n[state]\n" PROF, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(errs_find(&e, NAME ":3: [state] dir: must be an absolute path") == 0);
	conf_errs_clear(&e);
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(e.n == 1 && strcmp(e.line[0], NAME ": [state] dir: must be an absolute path "
	    "(the file has no [state] section: the default applies)") == 0);
	conf_errs_clear(&e);
	unsetenv("STATE_DIRECTORY");
}

/* More than CONF_MAX_PROFILES profiles; over-long profile names. */
static void
test_profile_limits(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;
	char			*text, *p, name[80];
	size_t			 i, cap = (CONF_MAX_PROFILES + 1) * 128;

	if ((text = malloc(cap)) == NULL)
		abort();
	p = text;
	for (i = 0; i <= CONF_MAX_PROFILES; i++)
		p += snprintf(p, cap - (size_t)(p - text), "[profile.p%zu]\npublic_key = pk%zu\n"
		    "secret = env:S%zu\nroutes = /r%zu\n", i, i, i, i);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL);
	CHECK(errs_find(&e, "[profile.p32]: too many profiles (max 32)") >= 0);
	CHECK(errs_find(&e, NAME ":129: [profile.p32]: too many") >= 0);
	conf_errs_clear(&e);

	/* exactly the maximum loads */
	*strstr(text, "[profile.p32]") = '\0';
	c = conf_load_string(text, NAME, &e);
	CHECK(c != NULL && c->nprofiles == CONF_MAX_PROFILES);
	conf_free(c);
	conf_errs_clear(&e);

	/*
	 * Two long names with a common start are never merged into one profile
	 * (inih cuts section names at 49 bytes; the reader keeps them whole).
	 */
	memset(name, 'n', 65);
	name[65] = '\0';
	snprintf(text, cap, "[profile.%s1]\npublic_key = pk1\nsecret = env:X\nroutes = /a\n"
	    "[profile.%s2]\npublic_key = pk2\nsecret = env:Y\nroutes = /b\n", name + 20,
	    name + 20);
	c = conf_load_string(text, NAME, &e);
	CHECK(c != NULL && c->nprofiles == 2);
	if (c != NULL && c->nprofiles == 2) {
		CHECK(strlen(c->profiles[0].name) == 46 && c->profiles[0].name[45] == '1');
		CHECK(strlen(c->profiles[1].name) == 46 && c->profiles[1].name[45] == '2');
	}
	conf_free(c);
	conf_errs_clear(&e);

	/* names of profiles and callers: at most 64 characters, as documented */
	name[64] = '\0';
	snprintf(text, cap, "[profile.%s]\npublic_key = pk\nsecret = env:X\nroutes = /a\n"
	    "[caller.%s]\nuid = 1001\nprofiles = %s\n", name, name, name);
	c = conf_load_string(text, NAME, &e);
	CHECK(c != NULL && e.n == 0 && c->nprofiles == 1 &&
	    strlen(c->profiles[0].name) == CONF_MAX_PROFILE_NAME);
	conf_free(c);
	conf_errs_clear(&e);
	snprintf(text, cap, PROF "[profile.%sx]\npublic_key = pk\nsecret = env:X\nroutes = /a\n",
	    name);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(errs_find(&e, NAME ":5: [profile.") == 0 &&
	    errs_find(&e, "x]: profile names use letters, digits, '-' and '_' only, at most 64") == 0);
	conf_free(c);
	conf_errs_clear(&e);
	snprintf(text, cap, PROF "[caller.%sx]\nuid = 1001\n", name);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 1);
	CHECK(errs_find(&e, NAME ":5: [caller.") == 0 &&
	    errs_find(&e, "x]: caller names use letters, digits, '-' and '_' only (at most 64)") == 0);
	conf_free(c);
	conf_errs_clear(&e);
	/* 128: not cut to inih's 42 and taken */
	memset(name, 'c', 64);
	name[64] = '\0';
	snprintf(text, cap, PROF "[caller.%s%s]\nuid = 1001\n", name, name);
	c = conf_load_string(text, NAME, &e);
	CHECK(c == NULL && e.n == 1 && errs_find(&e, "caller names use letters") == 0);
	conf_free(c);
	conf_errs_clear(&e);
	free(text);
}

/* [state] dir defaults to the first entry of $STATE_DIRECTORY. */
static void
test_state_dir(void)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;

	unsetenv("STATE_DIRECTORY");
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/var/lib/ocp-proxy") == 0);
	conf_free(c);

	setenv("STATE_DIRECTORY", "/var/lib/ocp-test", 1);
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/var/lib/ocp-test") == 0);
	conf_free(c);

	setenv("STATE_DIRECTORY", "/var/lib/first:/var/lib/second", 1);
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/var/lib/first") == 0);
	conf_free(c);

	/* an empty dir in the file means "use the default" */
	c = conf_load_string("[state]\ndir =\n" PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/var/lib/first") == 0);
	conf_free(c);

	/* the file wins over the environment */
	c = conf_load_string("[state]\ndir = /srv/x\n" PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/srv/x") == 0);
	conf_free(c);

	setenv("STATE_DIRECTORY", "", 1);
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c != NULL && strcmp(c->state_dir, "/var/lib/ocp-proxy") == 0);
	conf_free(c);
	CHECK(e.n == 0);

	setenv("STATE_DIRECTORY", "relative/dir", 1);
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c == NULL && errs_find(&e, NAME ": [state] dir: must be an absolute path") == 0);
	conf_errs_clear(&e);
	unsetenv("STATE_DIRECTORY");
}

/* Longest-prefix route selection. */
static void
test_route(void)
{
	struct conf_errs		 e = { NULL, 0 };
	const struct conf_profile	*pr;
	struct conf			*c;
	size_t				 idx = 99;

	c = conf_load_string(PROF PROF2("/api/v1/partner, /api/v1/partner/create-user")
	    "[profile.fallback]\npublic_key = pk\nsecret = env:F\nroutes = /\n", NAME, &e);
	CHECK(c != NULL && c->nprofiles == 3);
	if (c == NULL) {
		errs_print(&e);
		conf_errs_clear(&e);
		return;
	}
	CHECK(c->profiles[1].nroutes == 2);
	CHECK_STREQ(c->profiles[1].routes[1], "/api/v1/partner/create-user");
	pr = conf_route(c, "/api/v1/orders", 14, &idx);
	CHECK(pr != NULL && idx == 0 && strcmp(pr->name, "main") == 0);
	pr = conf_route(c, "/api/v1/partner/create-user", 27, &idx);
	CHECK(pr != NULL && idx == 1 && strcmp(pr->name, "partner") == 0);
	pr = conf_route(c, "/api/v1/partner/list", 20, &idx);
	CHECK(pr != NULL && idx == 1);
	pr = conf_route(c, "/api/v2/x", 9, &idx);
	CHECK(pr != NULL && idx == 2 && strcmp(pr->name, "fallback") == 0);
	/* only len bytes of path count: "/api/v1/partner" cut to "/api/v1" */
	pr = conf_route(c, "/api/v1/partner/x", 7, &idx);
	CHECK(pr != NULL && idx == 0);
	pr = conf_route(c, "/api", 4, &idx);
	CHECK(pr != NULL && idx == 2);
	conf_free(c);

	/* without a catch-all, an unrouted path has no profile */
	c = conf_load_string(PROF, NAME, &e);
	CHECK(c != NULL);
	idx = 99;
	CHECK(c != NULL && conf_route(c, "/other", 6, &idx) == NULL && idx == 99);
	CHECK(c != NULL && conf_route(c, "", 0, &idx) == NULL);
	conf_free(c);
	conf_free(NULL);
}

/* Write len bytes to dir/name with mode; returns the path in buf. */
static const char *
put_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode,
    char *buf, size_t bufsz)
{
	int	fd;

	snprintf(buf, bufsz, "%s/%s", dir, name);
	if ((fd = open(buf, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) == -1 || close(fd) == -1) {
		fprintf(stderr, "cannot write %s: %s\n", buf, strerror(errno));
		abort();
	}
	return buf;
}

/* conf_load reads a file and names it in errors. */
static void
test_conf_file(const char *dir)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;
	char			 path[512], want[600];

	put_file(dir, "ok.ini", PROF, strlen(PROF), 0644, path, sizeof(path));
	c = conf_load(path, &e);
	CHECK(c != NULL && e.n == 0 && strcmp(c->path, path) == 0);
	conf_free(c);
	unlink(path);

	put_file(dir, "bad.ini", "[listen]\nnope = 1\n" PROF, strlen(PROF) + 18, 0644, path,
	    sizeof(path));
	c = conf_load(path, &e);
	snprintf(want, sizeof(want), "%s:2: [listen] nope: unknown key", path);
	CHECK(c == NULL && e.n == 1 && strcmp(e.line[0], want) == 0);
	conf_errs_clear(&e);
	unlink(path);

	snprintf(path, sizeof(path), "%s/missing.ini", dir);
	c = conf_load(path, &e);
	snprintf(want, sizeof(want), "%s: No such file", path);
	CHECK(c == NULL && e.n == 1 && strncmp(e.line[0], want, strlen(want)) == 0);
	conf_errs_clear(&e);
}

/* -t: conf_load_check keeps the conf and marks what was refused. */
static void
test_load_check(const char *dir)
{
	struct conf_errs	 e = { NULL, 0 };
	struct conf		*c;
	char			 path[512];
	const char		*text = "[upstream]\nurl = http://h.test\nca_file = /x.pem\n"
	    "[audit]\npath = rel\n" PROF "[profile.b]\npublic_key = b\nsecret = x\n"
	    "routes = /b\n";

	put_file(dir, "check.ini", text, strlen(text), 0644, path, sizeof(path));
	c = conf_load(path, &e);
	CHECK(c == NULL && e.n == 3);
	conf_errs_clear(&e);
	c = conf_load_check(path, &e);
	CHECK(c != NULL && e.n == 3);
	if (c == NULL) {
		conf_errs_clear(&e);
		unlink(path);
		return;
	}
	CHECK(!conf_key_ok(c, "upstream", "url") && !conf_key_ok(c, "upstream", NULL));
	CHECK(conf_key_ok(c, "upstream", "ca_file") && !conf_key_ok(c, "audit", "path"));
	CHECK(conf_key_ok(c, "state", "dir") && conf_key_ok(c, "audit", "chain_key"));
	CHECK(c->nprofiles == 2 && !c->profiles[0].bad && c->profiles[1].bad);
	conf_errs_clear(&e);
	/* the messages of later stages (proxy.c) find the key's line too */
	conf_errs_key(&e, c, "upstream", "ca_file", "cannot load %s", "it");
	conf_errs_cause(&e, c, "upstream", "[upstream] ca_file /x.pem: no such file");
	conf_errs_cause(&e, c, "upstream", "[upstream] out of memory");
	conf_errs_profile(&e, c, &c->profiles[0], "secret", "cannot load key: %s", "gone");
	conf_errs_key(&e, c, "vault", "token_file", "unreadable");
	CHECK(e.n == 5);
	if (e.n == 5) {
		CHECK(strcmp(e.line[0] + strlen(path), ":3: [upstream] ca_file: cannot load it") == 0);
		CHECK(strcmp(e.line[1] + strlen(path), ":3: [upstream] ca_file: /x.pem: no such "
		    "file") == 0);
		CHECK(strcmp(e.line[2] + strlen(path), ":1: [upstream]: out of memory") == 0);
		CHECK(strcmp(e.line[3] + strlen(path), ":8: [profile.main] secret: cannot load "
		    "key: gone") == 0);
		CHECK(strcmp(e.line[4] + strlen(path), ": [vault] token_file: unreadable (the "
		    "file has no [vault] section: the default applies)") == 0);
	}
	conf_free(c);
	conf_errs_clear(&e);
	unlink(path);
}

/* secret_load must fail with a cause that contains what and not the secret. */
static void
secret_fails(const char *src, const char *what)
{
	struct secret	*s;
	char		*cause = NULL;

	s = secret_load(src, &cause);
	CHECK(s == NULL && cause != NULL);
	if (cause == NULL)
		return;
	if (strstr(cause, what) == NULL || strstr(cause, FAKE_SECRET) != NULL) {
		unit_failed++;
		fprintf(stderr, "FAIL secret_load(%s): cause \"%s\", wanted \"%s\"\n", src,
		    cause, what);
	} else
		unit_passed++;
	secret_free(s);
	free(cause);
}

/* secret_load must give exactly want. */
static void
secret_gives(const char *src, const char *want)
{
	struct secret	*s;
	char		*cause = NULL;

	s = secret_load(src, &cause);
	CHECK(s != NULL && cause == NULL);
	CHECK(s != NULL && s->len == strlen(want) && memcmp(s->p, want, s->len) == 0 &&
	    s->p[s->len] == '\0');
	secret_free(s);
	free(cause);
}

/* file: and credential: sources. */
static void
test_secret_files(const char *dir)
{
	char	path[512], src[600], big[8194];

	CHECK(secret_is_source("file:/x") && secret_is_source("credential:x") &&
	    secret_is_source("env:X") && secret_is_source("vault:kv/x#y"));
	CHECK(!secret_is_source(FAKE_SECRET) && !secret_is_source("") &&
	    !secret_is_source("File:/x") && !secret_is_source("env"));

	put_file(dir, "k-nl", FAKE_SECRET "\n", sizeof(FAKE_SECRET), 0600, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_gives(src, FAKE_SECRET);
	put_file(dir, "k-crlf", FAKE_SECRET "\r\n", sizeof(FAKE_SECRET) + 1, 0600, path,
	    sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_gives(src, FAKE_SECRET);
	put_file(dir, "k-bare", FAKE_SECRET, sizeof(FAKE_SECRET) - 1, 0400, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_gives(src, FAKE_SECRET);
	put_file(dir, "k-2nl", FAKE_SECRET "\n\n", sizeof(FAKE_SECRET) + 1, 0600, path,
	    sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_gives(src, FAKE_SECRET "\n");	/* only one newline is dropped */

	put_file(dir, "k-640", FAKE_SECRET "\n", sizeof(FAKE_SECRET), 0640, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "must not be accessible by group or others");
	put_file(dir, "k-644", FAKE_SECRET "\n", sizeof(FAKE_SECRET), 0644, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "must not be accessible by group or others");
	put_file(dir, "k-604", FAKE_SECRET "\n", sizeof(FAKE_SECRET), 0604, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "(chmod 600)");
	put_file(dir, "k-620", FAKE_SECRET "\n", sizeof(FAKE_SECRET), 0620, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "must not be accessible");

	put_file(dir, "k-empty", "", 0, 0600, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "secret file is empty");
	put_file(dir, "k-nlonly", "\n", 1, 0600, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "secret file is empty");

	memset(big, 'k', sizeof(big));
	put_file(dir, "k-8192", big, 8192, 0600, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	big[8192] = '\0';
	secret_gives(src, big);
	put_file(dir, "k-8193", big, 8193, 0600, path, sizeof(path));
	snprintf(src, sizeof(src), "file:%s", path);
	secret_fails(src, "secret file too large");

	snprintf(src, sizeof(src), "file:%s/does-not-exist", dir);
	secret_fails(src, "No such file or directory");
	snprintf(src, sizeof(src), "file:%s", dir);
	secret_fails(src, "not a regular file");
	secret_fails("file:relative/key", "path must be absolute");
	secret_fails("file:", "path must be absolute");

	/* credential: NAME inside $CREDENTIALS_DIRECTORY */
	unsetenv("CREDENTIALS_DIRECTORY");
	secret_fails("credential:k-nl", "$CREDENTIALS_DIRECTORY is not set");
	setenv("CREDENTIALS_DIRECTORY", "", 1);
	secret_fails("credential:k-nl", "$CREDENTIALS_DIRECTORY is not set");
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	secret_gives("credential:k-nl", FAKE_SECRET);
	secret_gives("credential:k-crlf", FAKE_SECRET);
	secret_fails("credential:k-644", "must not be accessible");
	secret_fails("credential:absent", "No such file");
	secret_fails("credential:", "invalid credential name");
	secret_fails("credential:..", "invalid credential name");
	secret_fails("credential:../etc/passwd", "invalid credential name");
	secret_fails("credential:sub/k", "invalid credential name");
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* env:, vault: and unknown sources. */
static void
test_secret_env(void)
{
	struct secret	*s;
	char		*cause = NULL;

	setenv("OCP_TEST_SECRET", FAKE_SECRET, 1);
	s = secret_load("env:OCP_TEST_SECRET", &cause);
	CHECK(s != NULL && cause == NULL);
	CHECK(s != NULL && s->len == strlen(FAKE_SECRET) &&
	    memcmp(s->p, FAKE_SECRET, s->len) == 0);
	CHECK(getenv("OCP_TEST_SECRET") == NULL);	/* removed from the environment */
	secret_free(s);
	free(cause);
	/* once read it is gone: a second load fails */
	secret_fails("env:OCP_TEST_SECRET", "environment variable OCP_TEST_SECRET is not set");
	setenv("OCP_TEST_EMPTY", "", 1);
	secret_fails("env:OCP_TEST_EMPTY", "environment variable OCP_TEST_EMPTY is empty");
	unsetenv("OCP_TEST_EMPTY");
	secret_fails("env:", "is not set");

	secret_fails("vault:secret/ocp#api_secret", "vault: secret source is not yet supported");
	secret_fails(FAKE_SECRET, "unknown secret source");
	secret_fails("", "unknown secret source");
}

/* Config table and edge cases first, then secrets in a temporary directory. */
int
main(void)
{
	char	dir[] = "/tmp/ocp-conf-XXXXXX", path[600];
	const char *names[] = { "k-nl", "k-crlf", "k-bare", "k-2nl", "k-640", "k-644",
	    "k-604", "k-620", "k-empty", "k-nlonly", "k-8192", "k-8193" };
	size_t	i;

	unsetenv("STATE_DIRECTORY");
	unsetenv("CREDENTIALS_DIRECTORY");
	umask(022);
	test_cases();
	test_long_lines();
	test_collects_all();
	test_one_line_each();
	test_default_lines();
	test_profile_limits();
	test_state_dir();
	test_route();

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_conf_file(dir);
	test_load_check(dir);
	test_secret_files(dir);
	test_secret_env();
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		CHECK(unlink(path) == 0);
	}
	CHECK(rmdir(dir) == 0);
	UNIT_END("test_conf");
}
