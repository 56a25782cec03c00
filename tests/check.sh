#!/usr/bin/env bash
# make check: the unit and integration suites on the normal build, the same
# under AddressSanitizer + UndefinedBehaviorSanitizer, and the proxy's
# integration suite under valgrind memcheck, then every fuzz target replays its
# corpus once when clang is there (`make fuzz` installs it).  Sanitizer and
# valgrind reports go to log files; any report counts as a failure.  Last, the
# audit suite runs under ThreadSanitizer.  Ends with one line "N passed, N failed".
# Env: OCP_CHECK_ASAN=0 / OCP_CHECK_VALGRIND=0 / OCP_CHECK_FUZZ=0 /
# OCP_CHECK_TSAN=0 skip a stage
# (said so below).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
P=0; F=0
logs=$(mktemp -d); trap 'rm -rf "$logs"' EXIT

add() {	# add LOGFILE: take the last "N passed, N failed" line
	local line
	line=$(grep -oE '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
	if [ -z "$line" ]; then F=$((F + 1)); echo "(stage printed no summary)"; return; fi
	P=$((P + ${line%% *})); line=${line#*, }; F=$((F + ${line%% *}))
}

reports() {	# reports DIR WHAT: each non-empty report file is one failure
	local f n=0
	for f in "$1"/*; do
		[ -s "$f" ] || continue
		n=$((n + 1)); echo "== $2 report $(basename "$f"):"; head -n 40 "$f"
	done
	if [ "$n" -eq 0 ]; then P=$((P + 1)); echo "$2: no reports"; else F=$((F + n)); fi
}

t0=$(date +%s)
echo "== stage 1: unit and integration tests (build/)"
tests/run-all.sh build 2>&1 | tee "$logs/plain.log"
add "$logs/plain.log"

if [ "${OCP_CHECK_ASAN:-1}" = 1 ]; then
	echo "== stage 2: the same under ASan+UBSan (build/asan/)"
	make --no-print-directory asan-build >/dev/null || { echo "asan build failed"; F=$((F + 1)); }
	mkdir -p "$logs/asan"
	ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$logs/asan/asan" \
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/asan/ubsan" \
	OCP_SLOW=2 tests/run-all.sh build/asan 2>&1 | tee "$logs/asan.log"
	add "$logs/asan.log"
	reports "$logs/asan" "sanitizer"
	echo "(stages 1-2: $(( $(date +%s) - t0 )) s)"
else
	echo "== stage 2 skipped: OCP_CHECK_ASAN=0"
fi

if [ "${OCP_CHECK_VALGRIND:-1}" = 1 ] && command -v valgrind >/dev/null; then
	echo "== stage 3: proxy and caller integration suites under valgrind memcheck"
	mkdir -p "$logs/vg"
	: >"$logs/vg.log"
	for t in test_proxy test_callers; do
		OCP_BUILD=build OCP_SLOW=8 OCP_PROXY_WRAPPER="valgrind -q --error-exitcode=99 \
--leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
--log-file=$logs/vg/vg.%p" timeout 900 python3 "tests/integration/$t.py" \
		    >"$logs/vg.$t.log" 2>&1
		grep -vE '^ok ' "$logs/vg.$t.log"
		add "$logs/vg.$t.log"
	done
	reports "$logs/vg" "valgrind"
else
	echo "== stage 3 skipped: valgrind missing or OCP_CHECK_VALGRIND=0"
fi
if [ "${OCP_CHECK_FUZZ:-1}" = 1 ]; then
	echo "== stage 4: fuzz targets replay their corpus and regressions (tests/fuzz/run.sh --regress)"
	tests/fuzz/run.sh --regress >"$logs/fuzz.log" 2>&1
	rc=$?
	if grep -q '^fuzz: skipped' "$logs/fuzz.log"; then
		grep -A5 '^fuzz: skipped' "$logs/fuzz.log"	# says why
	else
		ok=$(grep -cE ': regress files=[0-9]+ ok$' "$logs/fuzz.log")
		bad=$(grep -c 'FAILED' "$logs/fuzz.log")
		grep -E 'regress files=|FAILED|undefined reference|error:' "$logs/fuzz.log"
		P=$((P + ok)); F=$((F + bad))
		if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then echo "fuzz: exit $rc"; F=$((F + 1)); fi
	fi
else
	echo "== stage 4 skipped: OCP_CHECK_FUZZ=0"
fi
if [ "${OCP_CHECK_TSAN:-1}" = 1 ]; then
	# the audit sync thread is the one thread besides the event loop; the audit
	# suite drives every hand-over (batches, fail-closed, reopen, SIGKILL)
	echo "== stage 5: audit integration suite under ThreadSanitizer (build/tsan/)"
	if make --no-print-directory tsan-build >"$logs/tsan-build.log" 2>&1; then
		mkdir -p "$logs/tsan"
		TSAN_OPTIONS="log_path=$logs/tsan/tsan halt_on_error=0" OCP_BUILD=build/tsan OCP_SLOW=3 \
		    timeout 600 python3 tests/integration/test_audit.py >"$logs/tsan.log" 2>&1
		grep -vE '^ok ' "$logs/tsan.log"
		add "$logs/tsan.log"
		reports "$logs/tsan" "thread sanitizer"
	else
		tail -n 20 "$logs/tsan-build.log"; echo "tsan build failed"; F=$((F + 1))
	fi
else
	echo "== stage 5 skipped: OCP_CHECK_TSAN=0"
fi
echo "(make check took $(( $(date +%s) - t0 )) s)"
echo "$P passed, $F failed"
[ "$F" -eq 0 ]
