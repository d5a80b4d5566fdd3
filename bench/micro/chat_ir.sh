#!/bin/bash
# chat_ir.sh -- user-space instructions per routed message (callgrind), the A/B
# instrument for changes too small for the chat benchmark's ±10 % (issue 5).
#
#   BENCH_KEEP=1 BENCH_SERVERS=peyvand BENCH_SCENARIOS=chat bench/run   # once: a work dir
#   bench/micro/chat_ir.sh /tmp/pv-bench.XXXXXX [BUILD_DIR]              # BUILD_DIR: build
#
# Starts BUILD_DIR/peyvand under callgrind with the kept work dir's config and accounts,
# logs 100 users in, sends 500 messages/s, and counts instructions (Ir) only during a
# 6-second window in the middle (callgrind_control), divided by the messages routed in
# it (calls of pv_router_from_client).  Runs agree to ~0.15 % here, where
# CPU time is not; it does not see cache misses or the kernel, so a change that moves
# neither shows here and nowhere else.  Stops only what it started.
set -euo pipefail
WORK=${1:?usage: chat_ir.sh BENCH_WORK_DIR [BUILD_DIR]}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${2:-$ROOT/build}" && pwd)
OUT=$(mktemp -d /tmp/pv-chat-ir.XXXXXX)
cd "$WORK"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.out" \
	"$BUILD/peyvand" --config peyvand/peyvand.conf >"$OUT/server.log" 2>&1 &
SP=$!
trap 'kill "$SP" 2>/dev/null || true; wait "$SP" 2>/dev/null || true' EXIT
sleep 6 # valgrind's start-up
"$BUILD/peyvand-bench" --domain localhost --port 16200 --server-pid "$SP" --users 100 \
	--duration 14 --warmup 4 --rate 500 chat >"$OUT/bench.log" 2>&1 &
BP=$!
sleep 10
callgrind_control -i on "$SP" >/dev/null 2>&1
sleep 6
callgrind_control -i off "$SP" >/dev/null 2>&1
wait "$BP" || true
kill "$SP"
wait "$SP" 2>/dev/null || true
trap - EXIT
python3 - "$OUT/cg.out" <<'PY'
import re, sys
names, calls, total, cfn = {}, 0, 0, None
for line in open(sys.argv[1]):
    m = re.match(r'(c?)fn=\((\d+)\)(?: (.*))?', line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1):
            cfn = names.get(m.group(2))
        continue
    if line.startswith('calls=') and cfn == 'pv_router_from_client':
        calls += int(line.split('=')[1].split()[0])
    elif line.startswith(('summary:', 'totals:')):
        total = int(line.split()[1])
if not calls:
    sys.exit("no message was routed in the window (see the logs beside the profile)")
print(f"{total / calls:,.0f} Ir per routed message ({calls} messages, {total:,} Ir)")
PY
echo "profile: $OUT/cg.out (callgrind_annotate it); logs beside it"
