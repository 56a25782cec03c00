#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c with clang's libFuzzer into build/fuzz/ and
# either fuzzes each for SECONDS (default 30) or replays known inputs.
#
# Usage: tests/fuzz/run.sh [SECONDS]     fuzz each target; one line per target:
#                                        NAME: execs=N cov=N ft=N crashes=N
#        tests/fuzz/run.sh --regress     run every target once over every file in
#                                        tests/fuzz/corpus/*/ and tests/fuzz/regress/*/
#
# A target declares what it links in its first lines:
#     /* fuzz-sources: proxy/httpp.c */
#     /* fuzz-libs: -levent_core -lyajl */       (optional)
# Fuzzing works on build/fuzz/corpus-NAME, seeded from tests/fuzz/corpus/NAME and
# kept between runs (rm -rf build/fuzz to start over), so the repo corpus stays
# small.  Crash, leak, timeout and OOM inputs are saved as
# tests/fuzz/crashes/NAME-crash-SHA1 (etc.); once fixed, move the reproducer to
# tests/fuzz/regress/NAME/ so --regress keeps replaying it.
# Exit: 0 all clean (or clang unavailable: skipped), 1 a crash or a build failure.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1

mode=fuzz secs=30
case "${1:-}" in
--regress)	mode=regress ;;
'')		;;
*[!0-9]*)	echo "usage: $0 [SECONDS] | --regress" >&2; exit 2 ;;
*)		secs=$((10#$1)) ;;
esac
if [ "$secs" -eq 0 ]; then	# libFuzzer would take 0 as "no limit"
	echo "usage: $0 [SECONDS] | --regress (SECONDS > 0)" >&2
	exit 2
fi

out=build/fuzz
crashes=tests/fuzz/crashes
CFLAGS_FUZZ="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iproxy"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Find a clang that can link libFuzzer, or skip.
clang=""
for c in ${CLANG:-} clang clang-14; do
	command -v "$c" >/dev/null 2>&1 && { clang=$c; break; }
done
if [ -z "$clang" ]; then
	echo "fuzz: skipped: clang not found (apt-get install clang-14, or set CLANG=)"
	exit 0
fi
mkdir -p "$out" || exit 1
probe=$out/.probe
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$probe.c"
if ! "$clang" -fsanitize=fuzzer,address,undefined -o "$probe" "$probe.c" >"$probe.log" 2>&1; then
	echo "fuzz: skipped: $clang cannot build a libFuzzer target:"
	sed 's/^/    /' "$probe.log" | head -n 5
	exit 0
fi
rm -f "$probe" "$probe.c" "$probe.log"

# The value of "/* fuzz-KEY: ... */" among the first lines of a target.
meta() {
	sed -n "1,5s|^/\\* fuzz-$2: \\(.*\\) \\*/\$|\\1|p" "$1" | head -n 1
}

# Build build/fuzz/fuzz_NAME from SRC when it is missing or older than a source.
build() {
	local src=$1 bin=$2 srcs libs f stale=0
	srcs=$(meta "$src" sources)
	libs=$(meta "$src" libs)
	if [ -z "$srcs" ]; then
		echo "$src: no /* fuzz-sources: ... */ line at the top" >&2
		return 1
	fi
	for f in "$src" $srcs proxy/*.h tests/fuzz/*.h; do
		if [ ! -f "$f" ]; then
			echo "$src: fuzz-sources names $f, which does not exist" >&2
			return 1
		fi
		[ "$f" -nt "$bin" ] && stale=1
	done
	[ -x "$bin" ] && [ $stale -eq 0 ] && return 0
	# shellcheck disable=SC2086  # word splitting of the lists is intended
	"$clang" $CFLAGS_FUZZ -o "$bin" "$src" $srcs $libs
}

# The last "cov: N ft: N" of a libFuzzer log, as "COV FT".
covft() {
	grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -n 1 | awk '{ print $2, $4 }'
}

# Fuzz one target for $secs seconds; prints its summary line.
fuzz_one() {
	local name=$1 bin=$2
	local corpus=$out/corpus-$name log=$out/$name.log
	local before after new rc execs cf
	mkdir -p "$corpus" "$crashes"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp -n "tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null
	fi
	before=$(ls "$crashes")
	timeout -k 10 $((secs + 300)) "$bin" -max_total_time="$secs" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/$name-" \
	    "$corpus" >"$log" 2>&1
	rc=$?
	after=$(ls "$crashes")
	new=$(comm -13 <(sort <<<"$before") <(sort <<<"$after") | grep -c .)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	[ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
	cf=$(covft "$log")
	echo "$name: execs=${execs:-0} cov=${cf% *} ft=${cf#* } crashes=$new"
	if [ "$new" -gt 0 ]; then
		comm -13 <(sort <<<"$before") <(sort <<<"$after") | sed "s|^|    saved $crashes/|"
		grep -m 1 -E 'ERROR: |SUMMARY: |runtime error' "$log" | sed 's/^/    /'
		return 1
	fi
	if [ "$rc" -ne 0 ]; then
		echo "    exit $rc without a saved input; see $log"
		return 1
	fi
	return 0
}

# Replay every known input once through one target.
regress_one() {
	local name=$1 bin=$2
	local log=$out/$name.regress.log rc
	shift 2
	"$bin" -timeout=10 -rss_limit_mb=2048 "$@" >"$log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "$name: regress FAILED (exit $rc), last input run: $(grep -oE '^Running: .*' "$log" | tail -n 1 |
		    cut -d' ' -f2-); see $log"
		grep -m 1 -E 'ERROR: |SUMMARY: |runtime error' "$log" | sed 's/^/    /'
		return 1
	fi
	echo "$name: regress files=$# ok"
}

shopt -s nullglob
inputs=()
if [ "$mode" = regress ]; then
	for f in tests/fuzz/corpus/*/* tests/fuzz/regress/*/*; do
		[ -f "$f" ] && inputs+=("$f")
	done
	if [ ${#inputs[@]} -eq 0 ]; then
		echo "fuzz: no inputs under tests/fuzz/corpus/*/ or tests/fuzz/regress/*/"
		exit 1
	fi
fi

fail=0 n=0
for src in tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin=$out/fuzz_$name
	if ! build "$src" "$bin"; then
		echo "$name: build FAILED"
		fail=1
		continue
	fi
	n=$((n + 1))
	if [ "$mode" = regress ]; then
		regress_one "$name" "$bin" "${inputs[@]}" || fail=1
	else
		fuzz_one "$name" "$bin" || fail=1
	fi
done
if [ $n -eq 0 ] && [ $fail -eq 0 ]; then
	echo "fuzz: no tests/fuzz/fuzz_*.c targets"
	exit 1
fi
exit $fail
