#!/bin/sh
# run.sh -- build every libFuzzer target under tests/fuzz/ and run each for a while.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (make fuzz; SECONDS defaults to 30)
#   e.g. tests/fuzz/run.sh 300 sasl jid
#
# Each target is built with clang (-fsanitize=fuzzer,address,undefined) from the sources
# it needs, linked directly (not the CMake library, so a half-finished file elsewhere
# cannot stop the fuzzers), into build-fuzz/fuzz_<name>.  It then runs for SECONDS on
#   build-fuzz/corpus/<name>/   the working corpus (grows; not committed)
#   tests/fuzz/corpus/<name>/   the committed seeds (read, never written)
# with tests/fuzz/<name>.dict as dictionary when there is one.  A crash, leak, UB report
# or failed property leaves its input in build-fuzz/artifacts/<name>/; reproduce with
#   build-fuzz/fuzz_<name> build-fuzz/artifacts/<name>/crash-...
# and commit the input as a seed once fixed.  Exits non-zero if any target failed.
set -eu

cd "$(dirname "$0")/../.."
SECS=${1:-30}
[ $# -gt 0 ] && shift
OUT=${FUZZ_BUILD:-build-fuzz}
ALL="xmlstream xmlparse jid sasl config origin tlsrec"
TARGETS=${*:-$ALL}

# clang and its libFuzzer runtime are not part of the normal build's packages.
need=""
for p in clang libclang-rt-14-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	echo "installing:$need"
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi

CC=${FUZZ_CC:-clang}
CFLAGS="-std=c17 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc -Wall -Wextra -Wno-unused-parameter
 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
UTIL="src/util/util.c src/util/log.c"
JID="src/xmpp/jid.c"
SASL="src/xmpp/sasl/sasl.c src/xmpp/sasl/scram.c src/xmpp/sasl/plain.c"

# name -> sources and libraries (pkg-config names)
srcs() {
	case $1 in
	xmlstream) echo "src/xmpp/xmlstream.c src/util/xml.c src/util/xmlparse.c src/xmpp/stanza.c $JID $UTIL" ;;
	xmlparse) echo "src/util/xmlparse.c src/util/xml.c $UTIL" ;;
	jid) echo "$JID $UTIL" ;;
	sasl) echo "$SASL $JID $UTIL" ;;
	config) echo "src/core/config.c $UTIL" ;;
	tlsrec) echo "src/net/tlsrec.c $UTIL" ;;
	origin) echo "src/xmpp/s2s_origin.c src/xmpp/s2s_auth.c src/core/config.c src/xmpp/stanza.c $JID src/util/xml.c src/util/xmlparse.c $UTIL" ;;
	*) echo "unknown fuzz target: $1" >&2; exit 2 ;;
	esac
}
libs() {
	case $1 in
	xmlstream) pkg-config --libs expat libcrypto libidn2 icu-uc ;;
	xmlparse) pkg-config --libs expat libcrypto ;;
	jid | sasl) pkg-config --libs libidn2 icu-uc libcrypto ;;
	config) pkg-config --libs yaml-0.1 libcrypto ;;
	origin) pkg-config --libs expat libssl libcrypto libidn2 icu-uc yaml-0.1 ;;
	tlsrec) pkg-config --libs libssl libcrypto ;;
	esac
}
maxlen() {
	case $1 in
	config) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

mkdir -p "$OUT"
for t in $TARGETS; do
	echo "== build fuzz_$t"
	# shellcheck disable=SC2046
	$CC $CFLAGS "tests/fuzz/fuzz_$t.c" $(srcs "$t") $(libs "$t") -lpthread -lm \
		-o "$OUT/fuzz_$t"
done

failed=""
summary=""
for t in $TARGETS; do
	mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t" "tests/fuzz/corpus/$t"
	dict=""
	[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
	echo "== run fuzz_$t for ${SECS}s"
	set +e
	# shellcheck disable=SC2086
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"$OUT/fuzz_$t" -max_total_time="$SECS" -max_len="$(maxlen "$t")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 $dict \
		-artifact_prefix="$OUT/artifacts/$t/" "$OUT/corpus/$t" "tests/fuzz/corpus/$t" \
		>"$OUT/fuzz_$t.log" 2>&1
	rc=$?
	set -e
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz_$t.log" | tail -n1)
	cov=$(grep -o 'cov: [0-9]*' "$OUT/fuzz_$t.log" | tail -n1 || true)
	line="fuzz_$t: ${SECS}s, ${runs:-?} executions, ${cov:-cov: ?}"
	if [ "$rc" != 0 ]; then
		failed="$failed $t"
		line="$line -- FAILED (exit $rc), see $OUT/fuzz_$t.log and $OUT/artifacts/$t/"
		tail -n 40 "$OUT/fuzz_$t.log"
	fi
	echo "$line"
	summary="$summary$line
"
done

echo "== summary"
printf '%s' "$summary"
if [ -n "$failed" ]; then
	echo "fuzz targets failed:$failed"
	exit 1
fi
echo "fuzz: ${SECS}s each, 0 failed"
