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
if [ "$only" = all ] || [ "$only" = unit ]; then
	for t in "$build"/test_*; do
		[ -x "$t" ] || continue
		n=$(basename "$t")
		"$t" >"$tmp/$n.log" 2>&1; rc=$?
		grep -v -E 'passed, [0-9]+ failed' "$tmp/$n.log" | head -n 50
		tally "$n" "$tmp/$n.log" "$rc"
	done
fi
if [ "$only" = all ] || [ "$only" = integration ]; then
	for t in "$top"/tests/integration/test_*.py; do
		[ -f "$t" ] || continue
		n=$(basename "$t" .py)
		OCP_BUILD="$build" timeout 600 python3 "$t" >"$tmp/$n.log" 2>&1; rc=$?
		cat "$tmp/$n.log" | grep -v -E '^ok ' | tail -n 60
		tally "$n" "$tmp/$n.log" "$rc"
	done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
