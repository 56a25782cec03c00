#!/usr/bin/env bash
# `make bench`: ocp-proxy against the reference peers a user would otherwise run (issue 5).
# Usage: bench/run.sh [BUILD]      (BUILD defaults to build; results in BUILD/bench/)
#
# Layout (2 cores): wrk and the TLS nginx upstream on core 0, the system under test alone on
# core 1, all on 127.0.0.1.  Systems: ocp-proxy (signing + redacted, hash-chained audit,
# sync = batch), plain nginx proxy_pass (SIGN=0), nginx + Lua signing without and with a redacted
# audit line, and a Node.js peer (built-ins only) with audit.  Rounds are interleaved (every round
# runs every system, in a rotating order) for the 315-byte and the 4 KB answer, so every figure
# also has a same-round ratio to nginx + Lua + audit.  Then ocp-proxy alone: 1/32/256
# connections, 150 B/4 KB/64 KB bodies, audit sync none/batch/always (and sync none with
# [audit] bodies = none: the trail's share without the fsyncs); then one profile
# (callgrind over a fixed number of requests, and perf cpu-clock samples when perf works).
#
# A benchmark, not a test: slow figures never fail it.  It exits non-zero only when something
# cannot be installed, built or started.  Every process it starts is stopped by PID on exit.
# Knobs (env): BENCH_DURATION (s per round, 3), BENCH_ROUNDS (5), BENCH_SCALE_ROUNDS (2),
# BENCH_PROFILE_REQUESTS (2000), BENCH_PROFILE=0 to skip the profile, BENCH_INSTALL=0 to not
# install packages, BENCH_KEEP=1 to keep the audit trails (GBs) and raw profiles,
# OCP_LOG_LEVEL ([log] level of ocp-proxy, warning).  Method and figures: docs/performance.md.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
out=$build/bench
run=$out/run
certs=$out/certs
peers=$top/bench/peers
DUR=${BENCH_DURATION:-3}
ROUNDS=${BENCH_ROUNDS:-5}
SCALE_ROUNDS=${BENCH_SCALE_ROUNDS:-2}
PROFILE_REQUESTS=${BENCH_PROFILE_REQUESTS:-2000}
LOG_LEVEL=${OCP_LOG_LEVEL:-warning}
CONNS=32
CLK_TCK=$(getconf CLK_TCK)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- processes, by PID only
PIDS=()
cleanup() {
	local rc=$? p i
	trap - EXIT INT TERM
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: TERM, wait up to 10 s, KILL; forget it
stop_pid() {
	local p=$1 i keep=() q
	kill -TERM "$p" 2>/dev/null
	for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- packages and build
need=()
for p in wrk nginx libnginx-mod-http-lua lua-cjson python3 openssl curl util-linux valgrind; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -gt 0 ] && [ "${BENCH_INSTALL:-1}" = 0 ] && die "missing packages: ${need[*]} (BENCH_INSTALL=0)"
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	# Never Debian's luajit package: it removes the nginx Lua module (bench/peers/README.md).
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null || die "cannot install ${need[*]}"
	apt_updated=1
fi
if ! command -v node >/dev/null 2>&1 && [ "${BENCH_INSTALL:-1}" != 0 ]; then
	# the Node peer is optional: Debian's nodejs if there is no node at all
	say "installing nodejs (optional: the Node peer)"
	{ [ -n "${apt_updated:-}" ] || apt-get update -qq; } >/dev/null 2>&1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >/dev/null 2>&1 ||
	    say "cannot install nodejs: no Node peer"
fi
for c in wrk nginx taskset python3 openssl curl; do
	command -v "$c" >/dev/null 2>&1 || die "$c is not installed"
done
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || die "the nginx Lua module is missing"
[ "$(nproc)" -ge 2 ] || say "only $(nproc) core: the pinning to cores 0 and 1 cannot hold, figures are not comparable"

say "building ocp-proxy"
make -C "$top" --no-print-directory BUILD="$build" "$build/ocp-proxy" >&2 || die "cannot build ocp-proxy"
proxy=$build/ocp-proxy

rm -rf "$run"
mkdir -p "$out" "$run/state" "$run/tmp"
"$peers/gen-certs.sh" "$certs" || die "cannot generate the bench certificates"
[ -s "$certs/chain.key" ] || { openssl rand -hex 32 >"$certs/chain.key"; chmod 600 "$certs/chain.key"; }
PUB=$(cat "$certs/ocp_public.key")
raw=$out/raw.tsv
printf 'section\tsystem\tmode\tround\tconns\tbody\tsync\trequests\tduration_us\terrors\tp50_us\tp99_us\tcpu_ticks\tclk_tck\thwm_kb\taudit_bytes\n' >"$raw"

# request bodies: the peers' 152-byte body, and 4 KB / 64 KB ones of the same shape
cp "$peers/wrk/body.json" "$run/body-152.json"
python3 - "$run" <<'EOF' || die "cannot write the request bodies"
import json, sys
base = json.load(open(sys.argv[1] + "/body-152.json"))
for size in (4096, 64000):
    b = dict(base); b["description"] = ""
    pad = size - len(json.dumps(b, separators=(",", ":")))
    b["description"] = "x" * pad
    s = json.dumps(b, separators=(",", ":"))
    assert len(s) == size, (len(s), size)
    open(f"{sys.argv[1]}/body-{size}.json", "w").write(s)
EOF

# free loopback ports
read -r P_UP P_OCP P_FLOOR P_LUA P_LUAAUDIT P_NODE < <(python3 - <<'EOF'
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
) || die "cannot find free ports"

# ---------------------------------------------------------------- starting things
# wait_http NAME PID URL [CURL ARGS...]: until a POST answers 200 (or the process dies: fail)
wait_http() {
	local name=$1 pid=$2 url=$3 i code; shift 3
	for i in $(seq 1 ${WAIT_TRIES:-100}); do
		kill -0 "$pid" 2>/dev/null || return 1
		code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H 'Content-Type: application/json' \
		    --data-binary @"$peers/wrk/body.json" "$@" "$url" 2>/dev/null)
		[ "$code" = 200 ] && return 0
		sleep 0.2
	done
	return 1
}

declare -A PORT MAINPID AUDIT
AUDIT[ocp]=$run/ocp-audit.jsonl; AUDIT[luaaudit]=$run/lua-audit.jsonl; AUDIT[node]=$run/node-audit.jsonl
start_upstream() {
	RUN=$run UPSTREAM_PORT=$P_UP CERTS=$certs taskset -c 0 "$peers/upstream/start.sh" \
	    >"$run/upstream.out" 2>&1 &
	UPPID=$!; PIDS+=("$UPPID")
	wait_http upstream "$UPPID" "https://127.0.0.1:$P_UP/api-gateway/price-rate" --cacert "$certs/ca.pem" ||
	    { cat "$run/upstream.out" "$run/upstream.error.log" >&2 2>/dev/null; die "the upstream did not start"; }
	curl -s -m 5 -X POST --cacert "$certs/ca.pem" -d '{}' "https://127.0.0.1:$P_UP/large/x" >"$run/large.out"
	say "upstream https://127.0.0.1:$P_UP (pid $UPPID): $(wc -c <"$run/large.out") B large answer"
}

# start_peer_a SYS NAME SIGN AUDIT_LOG
start_peer_a() {
	local sys=$1 port=${PORT[$1]}
	SIGN=$3 AUDIT_LOG=$4 NAME=$2 RUN=$run LISTEN_PORT=$port UPSTREAM_URL="https://127.0.0.1:$P_UP" \
	    UPSTREAM_CA=$certs/ca.pem OCP_PUBLIC_KEY=$PUB OCP_KEY_FILE=$certs/ocp_private.key \
	    taskset -c 1 "$peers/peer-a/start.sh" >"$run/$2.out" 2>&1 &
	MAINPID[$sys]=$!; PIDS+=("$!")
	wait_http "$sys" "${MAINPID[$sys]}" "http://127.0.0.1:$port/api-gateway/price-rate" ||
	    { cat "$run/$2.out" "$run/$2.error.log" >&2 2>/dev/null; die "$sys (nginx) did not start"; }
}

start_node() {
	LISTEN_PORT=${PORT[node]} UPSTREAM_URL="https://127.0.0.1:$P_UP" UPSTREAM_CA=$certs/ca.pem \
	    OCP_PUBLIC_KEY=$PUB OCP_KEY_FILE=$certs/ocp_private.key AUDIT_LOG=${AUDIT[node]} \
	    taskset -c 1 node "$peers/node-peer.js" >"$run/node.out" 2>&1 &
	MAINPID[node]=$!; PIDS+=("$!")
	wait_http node "${MAINPID[node]}" "http://127.0.0.1:${PORT[node]}/api-gateway/price-rate" ||
	    { cat "$run/node.out" >&2; die "the Node peer did not start"; }
}

# ocp_conf SYNC FILE: the bench configuration of ocp-proxy
ocp_conf() {
	cat >"$2" <<EOF
; ocp-proxy bench configuration (written by bench/run.sh)
[listen]
address = 127.0.0.1:${PORT[ocp]}
max_connections = 1024

[upstream]
url = https://127.0.0.1:$P_UP
ca_file = $certs/ca.pem
max_connections = 64

[state]
dir = $run/state

[audit]
path = ${AUDIT[ocp]}
bodies = ${bench_bodies:-redacted}
redact = password, secret, signature, requestHeaders, requestBody
sync = $1
chain_key = file:$certs/chain.key

[log]
level = $LOG_LEVEL

[profile.bench]
public_key = $PUB
secret = file:$certs/ocp_private.key
routes = /api-gateway/, /large/
EOF
}

# start_ocp SYNC [WRAPPER...]: ocp-proxy on core 1 (a wrapper such as valgrind goes inside taskset)
start_ocp() {
	local sync=$1; shift
	ocp_conf "$sync" "$run/ocp-$sync.ini"
	"$proxy" -t -c "$run/ocp-$sync.ini" >"$run/ocp-check.out" 2>&1 ||
	    { cat "$run/ocp-check.out" >&2; die "ocp-proxy -t refused the bench configuration"; }
	taskset -c 1 "$@" "$proxy" -c "$run/ocp-$sync.ini" >>"$run/ocp.out" 2>&1 &
	MAINPID[ocp]=$!; PIDS+=("$!")
	wait_http ocp "${MAINPID[ocp]}" "http://127.0.0.1:${PORT[ocp]}/api-gateway/price-rate" ||
	    { tail -n 30 "$run/ocp.out" >&2; die "ocp-proxy did not start"; }
}

# pids_of SYS: the process(es) whose CPU counts: nginx master + workers, else the one process
pids_of() {
	local m=${MAINPID[$1]}
	echo "$m"
	pgrep -P "$m" 2>/dev/null || true
}
ticks_of() {	# utime + stime (clock ticks) summed over PIDs
	local t=0 p s
	for p in "$@"; do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }	# fields after "comm": state is field 3
		set -- $s
		t=$((t + ${12} + ${13}))	# fields 14 and 15
	done
	echo "$t"
}
hwm_of() {	# VmHWM (kB) summed over PIDs
	local h=0 p v
	for p in "$@"; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		h=$((h + ${v:-0}))
	done
	echo "$h"
}

# sync_tid PID: the thread of ocp-proxy that writes and syncs audit batches (none: nothing)
sync_tid() {
	local t
	for t in /proc/"$1"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = ocp-audit-sync ] && { echo "${t##*/}"; return; }
	done
}
# Can perf count a tracepoint here (fdatasync calls per round)?  Probed once.
PERF_SYSCALLS=0
command -v perf >/dev/null 2>&1 &&
    perf stat -x, -e syscalls:sys_enter_fdatasync -o /dev/null true >/dev/null 2>&1 && PERF_SYSCALLS=1
[ "$PERF_SYSCALLS" = 1 ] ||
    say "perf cannot count system calls here (package linux-perf, tracefs): no 'requests per fdatasync'"

# measure SECTION SYS MODE ROUND CONNS BODY SYNC [DURATION]: one wrk round, one line in raw.tsv
measure() {
	local section=$1 sys=$2 mode=$3 round=$4 conns=$5 body=$6 sync=$7 dur=${8:-$DUR}
	local path=/api-gateway/price-rate pids t0 t1 j f a0 a1 alog=${AUDIT[$sys]:-}
	local tid="" st0=0 st1=0 syncs=-1 pst="" pspid=""
	[ "$mode" = large ] && path=/large/api-gateway/price-rate
	pids=$(pids_of "$sys")
	[ "$sys" = ocp ] && tid=$(sync_tid "${MAINPID[ocp]}")
	a0=0; [ -n "$alog" ] && a0=$(stat -c %s "$alog" 2>/dev/null || echo 0)
	if [ "$sys" = ocp ] && [ "$PERF_SYSCALLS" = 1 ] && [ "$section" != warmup ]; then
		# counts ocp-proxy's fdatasync calls until wrk is done (a tracepoint: no sampling)
		pst=$run/perf-stat.out
		perf stat -x, -e syscalls:sys_enter_fdatasync -p "${MAINPID[ocp]}" -o "$pst" >/dev/null 2>&1 &
		pspid=$!; PIDS+=("$pspid")
		sleep 0.2
	fi
	[ -n "$tid" ] && st0=$(ticks_of "${MAINPID[ocp]}/task/$tid")
	t0=$(ticks_of $pids)
	f=$run/wrk-$section-$sys-$mode-$round-$conns-$body-$sync.out
	WRK_PATH=$path WRK_BODY_FILE=$run/body-$body.json timeout $((dur + 30)) \
	    taskset -c 0 wrk -t1 -c"$conns" -d"${dur}s" --latency -s "$peers/wrk/post.lua" \
	    "http://127.0.0.1:${PORT[$sys]}" >"$f" 2>&1
	t1=$(ticks_of $pids)
	[ -n "$tid" ] && st1=$(ticks_of "${MAINPID[ocp]}/task/$tid")
	if [ -n "$pspid" ]; then
		kill -INT "$pspid" 2>/dev/null; wait "$pspid" 2>/dev/null; stop_pid "$pspid"
		syncs=$(awk -F, '/sys_enter_fdatasync/ && $1 ~ /^[0-9]+$/ {print $1}' "$pst" 2>/dev/null)
		[ -n "$syncs" ] || syncs=-1
	fi
	a1=0; [ -n "$alog" ] && { sleep 0.05; a1=$(stat -c %s "$alog" 2>/dev/null || echo 0); }
	[ "$section" = warmup ] && return 0
	j=$(sed -n 's/^WRKJSON //p' "$f" | tail -n 1)
	python3 - "$j" "$section" "$sys" "$mode" "$round" "$conns" "$body" "$sync" \
	    $((t1 - t0)) "$CLK_TCK" "$(hwm_of $pids)" $((a1 - a0)) \
	    "$([ -n "$tid" ] && echo $((st1 - st0)) || echo -1)" "$syncs" >>"$raw" <<'EOF'
import json, sys
a = sys.argv
try:
    j = json.loads(a[1])
except Exception:
    j = dict(requests=0, duration_us=0, err_connect=0, err_read=0, err_write=0, err_status=0,
             err_timeout=0, p50_us=0, p99_us=0)
    j["err_connect"] = 1  # wrk printed nothing usable: count the round as an error
errs = sum(j[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
print("\t".join(str(x) for x in a[2:9] + [j["requests"], j["duration_us"], errs, j["p50_us"],
      j["p99_us"]] + a[9:15]))
EOF
	awk -F'\t' 'END { printf "   %-6s %-8s %-5s r%s c%-3s b%-5s %-6s %7.0f req/s  p99 %6.2f ms  %5.1f us/req CPU  err %s\n",
	    $1, $2, $3, $4, $5, $6, $7, ($9 > 0 ? $8 / ($9 / 1e6) : 0), $12 / 1000,
	    ($8 > 0 ? $13 / $14 / $8 * 1e6 : 0), $10 }' "$raw" >&2
}

# ---------------------------------------------------------------- the comparison
PORT[ocp]=$P_OCP; PORT[floor]=$P_FLOOR; PORT[lua]=$P_LUA; PORT[luaaudit]=$P_LUAAUDIT; PORT[node]=$P_NODE
start_t=$(date +%s)
start_upstream
start_ocp batch
start_peer_a floor floor 0 ""
start_peer_a lua lua 1 ""
start_peer_a luaaudit luaaudit 1 "${AUDIT[luaaudit]}"
systems=(ocp floor lua luaaudit)
node_label=""
if command -v node >/dev/null 2>&1; then
	start_node
	systems+=(node)
	node_label="Node.js $(node -v) (http/https keep-alive Agent/crypto) signing + audit"
else
	say "node is not installed: no Node peer"
fi
say "systems on core 1: ${systems[*]} (ocp-proxy pid ${MAINPID[ocp]})"

for mode in small large; do
	say "answer $mode: warm-up, then $ROUNDS interleaved rounds of ${DUR}s"
	for s in "${systems[@]}"; do measure warmup "$s" "$mode" 0 $CONNS 152 - 1; done
	for r in $(seq 1 "$ROUNDS"); do
		n=${#systems[@]}
		for i in $(seq 0 $((n - 1))); do
			s=${systems[$(((i + r - 1) % n))]}
			sync=-; [ "$s" = ocp ] && sync=batch
			measure cmp "$s" "$mode" "$r" $CONNS 152 "$sync"
		done
	done
done

# the peers are done: only the upstream and ocp-proxy stay
for s in "${systems[@]}"; do [ "$s" = ocp ] || stop_pid "${MAINPID[$s]}"; done
[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "${AUDIT[luaaudit]}" "${AUDIT[node]}"	# GBs by now

# ---------------------------------------------------------------- scaling: ocp-proxy alone
say "scaling: ocp-proxy alone, a fresh process per setting (so its peak RSS is its own), $SCALE_ROUNDS rounds of ${DUR}s"
stop_pid "${MAINPID[ocp]}"
# CONNS BODY SYNC: connections 1/32/256, bodies 150 B/4 KB/64 KB, sync batch/none/always
# (plus sync none at 1 connection and with 64 KB bodies: what the fsyncs cost there; and sync none
# with [audit] bodies = none: what the redacted bodies in the trail cost, without the fsyncs)
for setting in "1 152 batch" "32 152 batch" "256 152 batch" "32 4096 batch" "32 64000 batch" \
    "1 152 none" "32 152 none" "32 64000 none" "32 152 always" "32 152 none none"; do
	set -- $setting
	label=$3; [ -n "${4:-}" ] && label="$3,bodies=$4"
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "${AUDIT[ocp]}"	# bound the disk use (a restart starts a new file)
	bench_bodies=${4:-redacted} start_ocp "$3"
	measure warmup ocp small 0 "$1" "$2" "$label" 1
	for r in $(seq 1 "$SCALE_ROUNDS"); do measure scale ocp small "$r" "$1" "$2" "$label"; done
	stop_pid "${MAINPID[ocp]}"
done

# ---------------------------------------------------------------- profile
# wrk_count N OUTFILE: 32 connections against ocp-proxy until N answers (bench/count.lua), at most 5 min
wrk_count() {
	local done=$run/wrk-count.done wpid i
	rm -f "$done"
	WRK_PATH=/api-gateway/price-rate WRK_COUNT=$1 WRK_DONE_FILE=$done WRK_BODY_FILE=$run/body-152.json \
	    taskset -c 0 wrk -t1 -c$CONNS -d300s --timeout 10s -s "$top/bench/count.lua" \
	    "http://127.0.0.1:${PORT[ocp]}" >"$2" 2>&1 &
	wpid=$!; PIDS+=("$wpid")
	for i in $(seq 1 3000); do
		[ -e "$done" ] && break
		kill -0 "$wpid" 2>/dev/null || break
		sleep 0.1
	done
	kill -INT "$wpid" 2>/dev/null	# wrk prints its summary on SIGINT
	for i in $(seq 1 50); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
	stop_pid "$wpid"
}
prof=$out/profile
rm -rf "$prof"; mkdir -p "$prof"
if [ "${BENCH_PROFILE:-1}" != 0 ]; then
	# perf with software sampling (hardware counters are often missing in VMs): where the CPU goes,
	# kernel included, under the same load as a comparison round.
	if command -v perf >/dev/null 2>&1 && perf record -q -e cpu-clock -o "$prof/probe.data" true >/dev/null 2>&1; then
		say "profile: perf cpu-clock samples of ocp-proxy under ${DUR}s of load"
		start_ocp batch
		measure warmup ocp small 0 $CONNS 152 batch 1
		perf record -q -e cpu-clock -F 4999 -g -p "${MAINPID[ocp]}" -o "$prof/perf.data" \
		    -- sleep "$DUR" >"$prof/perf-record.out" 2>&1 &
		perfpid=$!; PIDS+=("$perfpid")
		measure profile ocp small 0 $CONNS 152 batch
		wait "$perfpid" 2>/dev/null; stop_pid "$perfpid"	# it ends by itself after the sleep
		perf report -i "$prof/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
		    grep -v '^#' | grep -v '^$' | head -n 15 >"$prof/perf-dso.txt"
		perf report -i "$prof/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
		    grep -v '^#' | grep -v '^$' | head -n 40 >"$prof/perf-sym.txt"
		# user-space entries with their children: the syscall wrappers show what the kernel time is for
		perf report -i "$prof/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
		    grep -F '[.]' | head -n 40 >"$prof/perf-children.txt"
		stop_pid "${MAINPID[ocp]}"
	else
		say "profile: perf does not work here; callgrind only"
	fi
	rm -f "$prof/probe.data"
	if command -v valgrind >/dev/null 2>&1; then
		say "profile: callgrind over $PROFILE_REQUESTS requests (32 connections)"
		WAIT_TRIES=300 start_ocp batch valgrind --tool=callgrind --callgrind-out-file="$prof/callgrind.out" \
		    --dump-instr=no --collect-jumps=no
		wrk_count 200 "$prof/wrk-warmup.out"
		callgrind_control -z "${MAINPID[ocp]}" >/dev/null 2>&1 || say "callgrind_control -z failed"
		wrk_count "$PROFILE_REQUESTS" "$prof/wrk.out"
		callgrind_control -d "${MAINPID[ocp]}" >/dev/null 2>&1 || say "callgrind_control -d failed"
		stop_pid "${MAINPID[ocp]}"
		# the explicit dump after the zeroing covers exactly the counted requests
		cg=$(ls -t "$prof"/callgrind.out.* 2>/dev/null | tail -n 1)
		[ -n "$cg" ] || cg=$prof/callgrind.out
		if [ -s "$cg" ]; then
			n=$(sed -n 's/^WRKJSON .*"requests":\([0-9]*\).*/\1/p' "$prof/wrk.out")
			python3 "$top/bench/cgtop.py" "$cg" "${n:-0}" 30 >"$prof/callgrind-top.txt" 2>&1
		fi
	fi
fi

# ---------------------------------------------------------------- report
{
	echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), kernel $(uname -r)."
	echo "ocp-proxy $(git -C "$top" describe --always --dirty 2>/dev/null || echo '?'), $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk -t1 -c$CONNS, ${DUR}s rounds, 152-byte request; wrk + upstream on core 0, system under test on core 1."
	[ -n "$node_label" ] && echo "node-label: $node_label"
} >"$out/info.txt"
python3 "$top/bench/report.py" "$raw" "$out/info.txt" >"$out/results.md" || die "cannot write the report"
{
	for f in callgrind-top perf-dso perf-sym perf-children; do
		[ -s "$prof/$f.txt" ] || continue
		printf '\n### %s (%s)\n\n```\n' "$f" "$prof/$f.txt"
		head -n 80 "$prof/$f.txt"
		printf '```\n'
	done
} >"$out/profile.md"
[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$run"/*.jsonl "$prof"/callgrind.out "$prof"/perf.data
echo
cat "$out/results.md"
say "bench done in $(( $(date +%s) - start_t ))s: $out/results.md, raw rounds $raw, profile $prof/"
exit 0
