#!/usr/bin/env bash
# `make demo`: ocp-proxy in front of the project's OnChainPay simulator, on loopback.
# Usage: tests/demo.sh BUILD
#
# In a temporary directory: a throwaway CA and server certificate, two fake key
# pairs (never printed), build/ocp-sim on a free port, conf/demo.ini rendered and
# checked with `ocp-proxy -t`, then two calls through the proxy with curl and the
# audit trail they left.  Both processes are stopped and the directory removed on exit.
set -euo pipefail

build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build=$top/$build ;; esac
proxy=$build/ocp-proxy
sim=$build/ocp-sim
for b in "$proxy" "$sim"; do
	[ -x "$b" ] || { echo "demo: $b is missing; run make first" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/ocp-demo.XXXXXX")
sim_pid=""
proxy_pid=""
cleanup() {
	local rc=$?
	set +e
	[ -n "$proxy_pid" ] && kill -TERM "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
	[ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	rm -rf "$dir"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
pretty() { python3 -m json.tool; }

# Wait until FILE contains "listening on ADDR" or PID exits; prints ADDR.
wait_listen() {	# wait_listen PID LOGFILE
	local i addr
	for i in $(seq 1 100); do
		addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$2" | head -n 1)
		if [ -n "$addr" ]; then echo "$addr"; return 0; fi
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

step "workspace $dir"
umask 077
"$top/tests/gen-certs.sh" "$dir"
mkdir "$dir/state"
# 88-character base64 keys like the real ones; written to files, never printed.
merchant_secret=$(openssl rand -base64 66 | tr -d '\n')
partner_secret=$(openssl rand -base64 66 | tr -d '\n')
printf '%s\n' "$merchant_secret" >"$dir/merchant.secret"
printf '%s\n' "$partner_secret" >"$dir/partner.secret"
printf 'pub-demo-merchant %s\npub-demo-partner %s\n' "$merchant_secret" "$partner_secret" \
    >"$dir/keys.txt"
openssl rand -hex 32 >"$dir/audit-chain.key"
chmod 600 "$dir/merchant.secret" "$dir/partner.secret" "$dir/keys.txt" "$dir/audit-chain.key"
echo "test CA, server certificate, two fake key pairs and an audit chain key written (mode 600)"

step "starting the OnChainPay simulator (build/ocp-sim)"
"$sim" --listen 127.0.0.1:0 --cert "$dir/server.pem" --key "$dir/server.key" \
    --keys "$dir/keys.txt" --port-file "$dir/sim.port" --record "$dir/sim.jsonl" \
    2>"$dir/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do
	[ -s "$dir/sim.port" ] && break
	kill -0 "$sim_pid" 2>/dev/null || { cat "$dir/sim.log" >&2; die "the simulator did not start"; }
	sleep 0.1
done
[ -s "$dir/sim.port" ] || die "the simulator did not report its port"
sim_port=$(tr -d '\n' <"$dir/sim.port")
echo "simulator listening on https://127.0.0.1:$sim_port"

render() {	# render LISTEN_ADDRESS
	sed -e "s|@DIR@|$dir|g" -e "s|@SIM_PORT@|$sim_port|g" \
	    -e "s|^address = 127.0.0.1:8780\$|address = $1|" \
	    "$top/conf/demo.ini" >"$dir/demo.ini"
}

step "checking the configuration: ocp-proxy -t -c demo.ini"
render 127.0.0.1:8780
"$proxy" -t -c "$dir/demo.ini"

step "starting ocp-proxy"
"$proxy" -c "$dir/demo.ini" 2>"$dir/proxy.log" &
proxy_pid=$!
if ! addr=$(wait_listen "$proxy_pid" "$dir/proxy.log"); then
	if grep -q 'bind 127.0.0.1:8780' "$dir/proxy.log"; then
		wait "$proxy_pid" 2>/dev/null || true
		proxy_pid=""
		echo "127.0.0.1:8780 is in use; using a free port instead"
		render 127.0.0.1:0
		"$proxy" -c "$dir/demo.ini" 2>"$dir/proxy.log" &
		proxy_pid=$!
		addr=$(wait_listen "$proxy_pid" "$dir/proxy.log") || {
			cat "$dir/proxy.log" >&2; die "ocp-proxy did not start"; }
	else
		cat "$dir/proxy.log" >&2
		die "ocp-proxy did not start"
	fi
fi
echo "ocp-proxy listening on http://$addr (pid $proxy_pid)"

step "POST /api-gateway/test-signature  body {\"hello\":\"world\"}  (the app sends no key, nonce or signature)"
echo "\$ curl -s -X POST http://$addr/api-gateway/test-signature -H 'Content-Type: application/json' -d '{\"hello\":\"world\"}'"
curl -sS -X POST "http://$addr/api-gateway/test-signature" \
    -H 'Content-Type: application/json' -d '{"hello":"world"}' \
    -D "$dir/h1" -o "$dir/r1"
grep -i '^x-request-id' "$dir/h1" | tr -d '\r'
pretty <"$dir/r1"
python3 - "$dir/r1" <<'EOF' || die "the signature was not accepted"
import json, sys
r = json.load(open(sys.argv[1]))["response"]
assert r["checkSignatureResult"] is True, r
body = json.loads(r["receivedBody"])
assert body.get("hello") == "world" and isinstance(body.get("nonce"), int), body
print("-> signature accepted; the simulator received", r["receivedBody"])
print("   (the proxy inserted the nonce and signed exactly these bytes)")
EOF

step "POST /partner/api/create-user  (partner profile: the other key pair)"
echo "\$ curl -s -X POST http://$addr/partner/api/create-user -H 'Content-Type: application/json' -d '{\"email\":\"demo@example.test\"}'"
curl -sS -X POST "http://$addr/partner/api/create-user" \
    -H 'Content-Type: application/json' -d '{"email":"demo@example.test"}' \
    -D "$dir/h2" -o "$dir/r2"
grep -i '^x-request-id' "$dir/h2" | tr -d '\r'
pretty <"$dir/r2"
password=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["response"]["password"])' \
    "$dir/r2") || die "no password in the create-user answer"
echo "-> the caller gets the generated password unchanged: $password"

step "stopping ocp-proxy (SIGTERM: finish in-flight requests, flush the audit trail)"
kill -TERM "$proxy_pid"
rc=0; wait "$proxy_pid" || rc=$?
proxy_pid=""
echo "exit status $rc"
sed -e 's/^/  /' "$dir/proxy.log"

step "audit trail $dir/audit.jsonl: an \"open\" record, then per call a write-ahead \"request\" line and an \"outcome\" line, then a \"close\" record"
while IFS= read -r line; do
	printf '%s\n' "$line" | pretty
done <"$dir/audit.jsonl"

step "checking the chain: ocp-proxy -c demo.ini audit-verify audit.jsonl"
"$proxy" -c "$dir/demo.ini" audit-verify "$dir/audit.jsonl"

step "what never reaches the audit trail or the log"
if grep -qF -- "$password" "$dir/audit.jsonl" "$dir/proxy.log"; then
	die "the password appears in the audit trail or the log"
fi
signature=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["response"]["signature"])' \
    "$dir/r1")
chain_key=$(cat "$dir/audit-chain.key")
if grep -qF -e "$merchant_secret" -e "$partner_secret" -e "$chain_key" -e "$signature" \
    "$dir/audit.jsonl" "$dir/proxy.log"; then
	die "a secret key or a signature appears in the audit trail or the log"
fi
echo "- the create-user password is \"[REDACTED]\" in the outcome line; the caller got it above"
echo "- the \"signature\" in the test-signature answer (the same HMAC the proxy sent as"
echo "  x-api-signature) is \"[REDACTED]\" too: \"signature\" is in [audit] redact"
echo "- no secret key (API or chain key) and no signature appears in the audit trail or the log (checked)"
echo
echo "demo OK"
