#!/usr/bin/env bash
# thread-cpu.sh - CPU per message of each thread of `mailgw serve` (event loop, spool writer,
# delivery thread, parse workers, JIT, GC helpers), read from /proc/<pid>/task/*/stat before and
# after one smtp-source run; for A/B runs of two builds, alternated. End to end (every message
# matched by a `forward` rule relayed to Postfix's smtp-sink) or ingress only (`archive`).
#
# usage: bench/thread-cpu.sh [--mode forward|archive] [--sessions 20] [--per 0] [--count 8000]
#                            [--size 4096] [--port 25940] [--sink-port 27840] [--pause 35]
#                            BINARY [BINARY ...]
#   --per 0    sessions kept open (smtp-source -d: each sends until --count is reached, so
#              --sessions 100 --count 1000 is ~10 per session); --per 1: one message per connection
# A/B: list the builds alternately, e.g. `bench/thread-cpu.sh old new old new old new`.
#   --pause S  seconds to wait before each run: on an ext4 without a journal, creating files
#              within ~30 s of thousands of unlinks costs extra (see docs/benchmarks.md), so a
#              run right after another measures the previous run's deletes
# Prints, per binary and run: msg/s as smtp-source saw it, then µs of CPU per message for each
# thread that used more than a trace, with its user-space part in parentheses (the rest is
# kernel time: syscalls, loopback TCP, file system), e.g. `Worker=160(u45)` (threads named by /proc comm: the binary's name is the
# event loop; "Worker" threads in start order: spool writer, parse workers, delivery thread),
# and the server's peak RSS (VmHWM, warm-up included).
# Loopback only; a fresh mktemp data dir per run (kept under $TMPDIR, removed at the end).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="${BENCH_PEERS:-/work/shared/bench-peers}"

mode=forward; sessions=20; per=0; count=8000; size=4096; port=25940; sink_port=27840; pause=35
bins=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    --sessions) sessions="$2"; shift 2 ;;
    --per) per="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --sink-port) sink_port="$2"; shift 2 ;;
    --pause) pause="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "thread-cpu: unknown argument $1" >&2; exit 2 ;;
    *) bins+=("$(realpath "$1")"); shift ;;
  esac
done
[[ ${#bins[@]} -gt 0 ]] || { echo "thread-cpu: give at least one mailgw executable" >&2; exit 2; }
command -v smtp-source >/dev/null || { echo "thread-cpu: smtp-source not found (apt-get install postfix)" >&2; exit 2; }
[[ "$mode" == forward || "$mode" == archive ]] || { echo "thread-cpu: --mode forward|archive" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/mailgw-thread-cpu-XXXXXX")"
server=""; started_sink=0
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
  if [[ $started_sink == 1 ]]; then "$PEERS/sink.sh" stop "$sink_port" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [[ "$mode" == forward ]]; then
  if ! "$PEERS/sink.sh" pid "$sink_port" >/dev/null 2>&1; then "$PEERS/sink.sh" start "$sink_port" >/dev/null; started_sink=1; fi
  action="forward"; extra="forward_to: [sink@example.net]"
else
  action="archive"; extra=""
fi
cat > "$work/rules.yaml" <<EOF
domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: bench
    priority: 1
    category: bench
    action: $action
    $extra
    conditions:
      - { field: size, operator: gt, value: 0 }
EOF

source_args() { # sessions, messages
  if [[ "$per" == 1 ]]; then echo "-s $1 -m $2"; else echo "-s $1 -d -m $2"; fi
}

run_one() { # binary
  local bin="$1" data; data="$(mktemp -d "$work/data-XXXX")"
  env SMTP_HOST=127.0.0.1 SMTP_PORT="$port" HTTP_HOST=127.0.0.1 HTTP_PORT=0 DATA_DIR="$data" DATABASE_URL="file:$data/mail-gateway.db" \
    SMTP_HOSTNAME=mx.bench RATE_LIMIT_MAX=1000000000 LOG_FORMAT=json LOG_LEVEL=warn \
    RULES_FILE="$work/rules.yaml" RELAY_SMTP_HOST=127.0.0.1 RELAY_SMTP_PORT="$sink_port" RELAY_SMTP_SECURE=none \
    "$bin" serve >"$data.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
  # Warm-up, not measured.
  smtp-source $(source_args "$sessions" 300) -l "$size" -f a@b.example -t x@company.com "127.0.0.1:$port"
  sleep 1
  declare -A before=()
  local t
  declare -A ubefore=()
  for t in /proc/$server/task/*; do before[$t]=$(awk '{print $14+$15}' "$t/stat"); ubefore[$t]=$(awk '{print $14}' "$t/stat"); done
  local n="$count"
  local t0 t1; t0=$(date +%s.%N)
  smtp-source $(source_args "$sessions" "$n") -l "$size" -f a@b.example -t x@company.com "127.0.0.1:$port"
  t1=$(date +%s.%N)
  sleep 1.5 # the delivery thread drains what is still queued
  local hz; hz=$(getconf CLK_TCK)
  local line total=0 c d
  line="$(basename "$bin") rate $(echo "$n / ($t1 - $t0)" | bc) msg/s; µs/msg:"
  for t in /proc/$server/task/*; do
    c=$(awk '{print $14+$15}' "$t/stat"); d=$((c - ${before[$t]:-0})); total=$((total + d))
    u=$(( $(awk '{print $14}' "$t/stat") - ${ubefore[$t]:-0} ))
    [[ $d -gt 2 ]] && line+=" $(cat "$t/comm")=$((d * 1000000 / hz / n))(u$((u * 1000000 / hz / n)))"
  done
  echo "$line total=$((total * 1000000 / hz / n)); peak RSS $(awk '/VmHWM/ {printf "%d MB", $2 / 1024}' "/proc/$server/status")"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
}

echo "# mode=$mode sessions=$sessions per=$per count=$count size=$size; load $(cut -d' ' -f1-3 /proc/loadavg)"
for bin in "${bins[@]}"; do
  sleep "$pause"
  run_one "$bin"
done
