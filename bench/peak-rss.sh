#!/usr/bin/env bash
# peak-rss.sh - peak RSS and rate of one mailgw executable under one ingress workload, started
# the way bench/side-by-side.sh starts it (archive, its own .env, fresh data dir), driven by
# bench-peers' smtp-bench.sh with RSS sampled every 50 ms. For A/B runs of heap and buffer
# changes, list builds alternately; extra VAR=VALUE words go into the server's environment
# (e.g. MIMALLOC_PURGE_DELAY=0).
#
# usage: bench/peak-rss.sh [--workload a|b|c] [--size 100k] [--count 1000] [--port 2645]
#                          BINARY [VAR=VALUE ...] [-- BINARY [VAR=VALUE ...] ...]
#   a: 20 sessions kept open; b: 100 sessions × ~10 messages; c: 100 sessions, one per connection
# Prints per run: median msg/s of 3 runs (after 200 warm-up), peak RSS (sampled) and the
# server's VmHWM, and its CPU seconds. Loopback only; the data dir is removed afterwards.
set -euo pipefail
PEERS="${BENCH_PEERS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench-peers}"
workload=b size=100k count=1000 port=2645
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workload) workload="$2"; shift 2 ;; --size) size="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;; --port) port="$2"; shift 2 ;;
    *) break ;;
  esac
done
case "$workload" in a) s=20 p=0 ;; b) s=100 p=10 ;; c) s=100 p=1 ;; *) echo "unknown workload $workload" >&2; exit 2 ;; esac
[[ -x "$PEERS/smtp-bench.sh" ]] || { echo "peak-rss: $PEERS/smtp-bench.sh not found (set BENCH_PEERS)" >&2; exit 2; }

run_one() { # BINARY [VAR=VALUE ...]
  local bin="$1"; shift
  local dir; dir="$(mktemp -d "${TMPDIR:-/tmp}/peak-rss.XXXX")"; mkdir -p "$dir/data"
  printf '%s\n' 'domains: [company.com]' 'default: { action: archive, category: default }' 'rules: []' > "$dir/rules.yaml"
  printf '%s\n' SMTP_HOST=127.0.0.1 "SMTP_PORT=$port" SMTP_HOSTNAME=mx.bench.invalid HTTP_HOST=127.0.0.1 HTTP_PORT=0 \
    RATE_LIMIT_MAX=1000000000 DATA_DIR=./data DATABASE_URL=file:./data/mail-gateway.db RULES_FILE=./rules.yaml LOG_FORMAT=json > "$dir/.env"
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin HOME="$dir" "$@" "$bin" serve > serve.log 2>&1) &
  local pid=$!
  for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
  "$PEERS/smtp-bench.sh" -t "127.0.0.1:$port" -n mailgw -l "$size" -s "$s" -P "$p" -m "$count" -r 3 -w 200 --cooldown 2 \
    --pid "$pid" --no-pss --interval 0.05 --logdir "$dir/logs" > "$dir/bench.txt" 2>&1 || true
  local hwm; hwm="$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(basename "$bin") $* | $(sed -n 's/.*MEDIAN of 3: accept \([0-9.]*\) msg.*peak RSS \([0-9.]*\) MB.*server CPU \([0-9.]*\)s.*/\1 msg\/s, peak RSS \2 MB, server CPU \3 s/p' "$dir/bench.txt"), VmHWM $hwm MB"
  rm -rf "$dir"
}
args=()
for a in "$@" --; do
  if [[ "$a" == -- ]]; then (( ${#args[@]} )) && run_one "${args[@]}"; args=(); else args+=("$a"); fi
done
