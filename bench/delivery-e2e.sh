#!/usr/bin/env bash
# delivery-e2e.sh - end-to-end throughput of `mailgw serve`: receive (fsync before 250) → queue
# → relay (pooled nodemailer) into Postfix's smtp-sink on loopback, driven by smtp-source through
# /work/shared/bench-peers/smtp-bench.sh, which times each run until the sink has received every
# accepted message. Optionally Postfix relaying the same load to the same sink, in the same run.
# Also prints the SMTP sessions the sink saw per run (relay connection reuse).
#
# usage: bench/delivery-e2e.sh [--binary] [--postfix] [--count N] [--runs N] [--size 4k]
#                              [--workloads "20:0 100:10"] [--port 2525] [--sink-port 2727] [--csv FILE]
#   --binary    run dist/mailgw (bun run build first) instead of `bun src/main.ts`
#   --postfix   also measure Postfix (bench-peers postfix-peer.sh; `setup` done once, as root);
#               Postfix relays to 127.0.0.1:2727, so keep --sink-port 2727 for a fair comparison
# Workloads are SESSIONS:PER_SESSION: 20:0 = (a) 20 sessions kept open, 100:10 = (b) 100
# sessions × ~10 messages. Loopback only; a fresh mktemp data dir per workload.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PEERS="${BENCH_PEERS:-/work/shared/bench-peers}"
BUN="${BUN:-$REPO/node_modules/.bin/bun}"

binary=0; postfix=0; count=5000; runs=3; size=4k; workloads="20:0 100:10"; port=2525; sink_port=2727
csv="$HERE/results/delivery-e2e-$(date -u +%Y%m%dT%H%M%SZ).csv"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=1; shift ;;
    --postfix) postfix=1; shift ;;
    --count) count="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --workloads) workloads="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --sink-port) sink_port="$2"; shift 2 ;;
    --csv) csv="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "delivery-e2e: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$PEERS/smtp-bench.sh" ]] || { echo "delivery-e2e: $PEERS/smtp-bench.sh not found (set BENCH_PEERS)" >&2; exit 2; }
mkdir -p "$(dirname "$csv")"

work="$(mktemp -d /tmp/mailgw-bench-e2e-XXXXXX)"
cat > "$work/rules.yaml" <<'YAML'
domains: [company.com]
default: { action: archive, category: default }
rules:
  - name: relay-all
    priority: 1
    category: bench
    action: forward
    forward_to: [sink@example.net]
    conditions:
      - { field: size, operator: gt, value: 0 }
YAML
server_pid=""; started_sink=0
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  [[ $started_sink -eq 1 ]] && "$PEERS/sink.sh" stop "$sink_port" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! "$PEERS/sink.sh" pid "$sink_port" >/dev/null 2>&1; then
  "$PEERS/sink.sh" start "$sink_port" >/dev/null; started_sink=1
fi
sink_file="$("$PEERS/sink.sh" file "$sink_port")"
sink_sessions() { tail -c 256 "$sink_file" | tr '\r' '\n' | grep -o 'sess=[0-9]*' | tail -1 | cut -d= -f2; }

start_mailgw() {
  rm -rf "$work/data"
  local cmd=("$BUN" "$REPO/src/main.ts" serve)
  [[ $binary -eq 1 ]] && cmd=("$REPO/dist/mailgw" serve)
  (cd "$work" && exec env SMTP_HOST=127.0.0.1 SMTP_PORT="$port" HTTP_HOST=127.0.0.1 HTTP_PORT=0 \
      SMTP_HOSTNAME=mx.bench RATE_LIMIT_MAX=1000000000 LOG_FORMAT=json LOG_LEVEL="${LOG_LEVEL:-warn}" \
      RELAY_SMTP_HOST=127.0.0.1 RELAY_SMTP_PORT="$sink_port" RELAY_SMTP_SECURE=none \
      "${cmd[@]}" >"$work/serve.log" 2>&1) &
  server_pid=$!
  for _ in $(seq 1 100); do
    ss -Hltn "sport = :$port" | grep -q . && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "delivery-e2e: mailgw did not start" >&2; exit 1
}
stop_mailgw() { kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

for w in $workloads; do
  sessions="${w%%:*}"; per="${w##*:}"
  start_mailgw
  before="$(sink_sessions || echo 0)"
  "$PEERS/smtp-bench.sh" -t "127.0.0.1:$port" -n "mailgw-e2e-$w" --pid "$server_pid" --sink-counter "$sink_file" \
    -l "$size" -s "$sessions" -P "$per" -m "$count" -r "$runs" -w 300 --csv "$csv"
  after="$(sink_sessions || echo 0)"
  echo "mailgw $w: the sink saw $((after - before)) SMTP sessions for $(( (runs * count) + 300 )) messages (warm-up included)"
  left="$(grep -c '"msg":"failed"' "$work/serve.log" || true)"
  echo "mailgw $w: failed deliveries logged: $left"
  stop_mailgw
  if [[ $postfix -eq 1 ]]; then
    "$PEERS/postfix-peer.sh" start >/dev/null
    before="$(sink_sessions || echo 0)"
    "$PEERS/smtp-bench.sh" -t 127.0.0.1:2626 -n "postfix-e2e-$w" --pid "$("$PEERS/postfix-peer.sh" pid)" \
      --sink-counter "$sink_file" --idle-cmd "$PEERS/postfix-peer.sh idle" \
      -l "$size" -s "$sessions" -P "$per" -m "$count" -r "$runs" -w 300 --csv "$csv"
    after="$(sink_sessions || echo 0)"
    echo "postfix $w: the sink saw $((after - before)) SMTP sessions"
    "$PEERS/postfix-peer.sh" stop >/dev/null
  fi
done
python3 "$PEERS/lib/summarize.py" "$csv"
echo "results: $csv"
