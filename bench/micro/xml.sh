#!/bin/sh
# bench.sh -- build and run bench/micro/xml_bench.c (CPU and allocations per stanza on the tree path,
# issue 5).  Compiles the sources it needs directly with the release flags, like
# tests/fuzz/run.sh, so it does not depend on the CMake tree.
#
#   bench/micro/xml.sh [STANZAS] [CHUNK]     (defaults 200000 and 4096)
#
# The binary goes to ${XML_BENCH_OUT:-/tmp/pv-xml-bench}.  Run it a few times and take
# the best: on a shared machine the slowest runs measure the neighbours.
set -eu
cd "$(dirname "$0")/../.."
OUT=${XML_BENCH_OUT:-/tmp/pv-xml-bench}
CC=${CC:-cc}
# shellcheck disable=SC2046
$CC -std=c17 -O3 -DNDEBUG -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
	-Iinclude -Isrc bench/micro/xml_bench.c src/util/xml.c src/util/xmlparse.c src/xmpp/xmlstream.c \
	src/xmpp/stanza.c src/xmpp/jid.c src/util/util.c src/util/log.c \
	$(pkg-config --libs expat libidn2 icu-uc libcrypto) -lpthread -lm -o "$OUT"
exec "$OUT" "$@"
