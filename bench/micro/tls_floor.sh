#!/bin/sh
# tls_floor.sh -- build and run bench/micro/tls_floor.c: the server CPU of a bare TLS 1.3
# handshake (and of a bare TCP connection) with peyvand's TLS settings, the floor under
# the CPU-per-login target (issue 5).  The server runs on core 1, the clients on core 0,
# as bench/run pins with BENCH_PIN=1.
#
#   bench/micro/tls_floor.sh [HANDSHAKES] [CLIENTS]     (defaults 6000 and 2)
#
# Prints one JSON line per mode.  Compare server_cpu_ms_per_conn with the login
# scenario's server_cpu_ms_per_login of a run on the same machine.
set -eu
cd "$(dirname "$0")/../.."
OUT=${TLS_FLOOR_OUT:-/tmp/pv-tls-floor}
CC=${CC:-cc}
# shellcheck disable=SC2046
$CC -std=c17 -O2 -DNDEBUG -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
	-Iinclude -Isrc bench/micro/tls_floor.c src/net/tls.c src/net/conn.c src/net/tlsrec.c src/util/util.c src/util/log.c \
	$(pkg-config --libs libssl libcrypto libuv) -lpthread -lm -o "$OUT"
PIN1=
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN1="taskset -c 1"
	export TLS_FLOOR_CLIENT_CPU=0
fi
for mode in tcp tls; do
	$PIN1 "$OUT" "$mode" "${1:-6000}" "${2:-2}"
done
