#!/usr/bin/env bash
# Runs the unit binaries and the integration suite found in BUILD, sums every
# "N passed, N failed" line they print, and ends with one such summary line.
# Usage: tests/run-all.sh BUILD [unit|integration]
set -u
build=${1:-build}; only=${2:-all}
top=$(cd "$(dirname "$0")/.." && pwd)
passed=0; failed=0; broken=0
tally() {  # tally NAME LOGFILE RC
	local line p f
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
	if [ -z "$line" ]; then
		echo "$1: no summary line (exit $3)"; broken=$((broken + 1)); failed=$((failed + 1)); return
	fi
	p=$(grep -oE '[0-9]+ passed, [0-9]+ failed' <<<"$line" | tail -n 1 | cut -d' ' -f1)
	f=$(grep -oE '[0-9]+ passed, [0-9]+ failed' <<<"$line" | tail -n 1 | cut -d' ' -f3)
	passed=$((passed + p)); failed=$((failed + f))
	if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); echo "$1: exit $3"; fi
	echo "$line"
}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# run NAME CMD...: NAME's output and exit code into $tmp
run() {
	local n=$1; shift
	"$@" >"$tmp/$n.log" 2>&1
	echo $? >"$tmp/$n.rc"
}
units=(); suites=()
if [ "$only" = all ] || [ "$only" = unit ]; then
	for t in "$build"/test_*; do [ -x "$t" ] && units+=("$t"); done
fi
if [ "$only" = all ] || [ "$only" = integration ]; then
	for t in "$top"/tests/integration/test_*.py; do [ -f "$t" ] && suites+=("$t"); done
fi
# The Vault suites spend most of their time waiting for refresh and expiry
# timers, so with OCP_TEST_JOBS=2 (the default) they run beside the others;
# OCP_TEST_JOBS=1 runs everything one after the other.
lane=()
for t in "${suites[@]}"; do
	case "$(basename "$t")" in
	test_vault_*) [ "${OCP_TEST_JOBS:-2}" -gt 1 ] && lane+=("$t") ;;
	esac
done
inlane() { local x; for x in "${lane[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }
suite() { run "$(basename "$1" .py)" env OCP_BUILD="$build" timeout 600 python3 "$1"; }
pid=""
if [ "${#lane[@]}" -gt 0 ]; then
	( for t in "${lane[@]}"; do suite "$t"; done ) &
	pid=$!
fi
for t in "${units[@]}"; do run "$(basename "$t")" "$t"; done
for t in "${suites[@]}"; do inlane "$t" || suite "$t"; done
[ -n "$pid" ] && wait "$pid"
# report in the usual order, whichever lane ran it
for t in "${units[@]}"; do
	n=$(basename "$t")
	grep -v -E 'passed, [0-9]+ failed' "$tmp/$n.log" | head -n 50
	tally "$n" "$tmp/$n.log" "$(cat "$tmp/$n.rc")"
done
for t in "${suites[@]}"; do
	n=$(basename "$t" .py)
	grep -v -E '^ok ' "$tmp/$n.log" | tail -n 60
	tally "$n" "$tmp/$n.log" "$(cat "$tmp/$n.rc")"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
