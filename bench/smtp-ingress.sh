#!/usr/bin/env bash
# smtp-ingress.sh - accept-side throughput of `mailgw serve` (fsync before every 250, archive
# action) driven by Postfix's smtp-source through /work/shared/bench-peers/smtp-bench.sh, with
# the issue's workloads; optionally Postfix (bench-peers postfix-peer.sh, discard port 2627)
# measured in the same run for a side-by-side table.
#
# usage: bench/smtp-ingress.sh [--binary] [--postfix] [--count N] [--runs N] [--sizes "4k 100k"]
#                              [--workloads "20:0 100:10 20:1 100:1"] [--port 2525] [--csv FILE]
#   --binary    run dist/mailgw (build it first: bun run build) instead of `bun src/main.ts`
#   --postfix   also measure Postfix (needs `postfix-peer.sh setup` done once, as root)
# Workloads are SESSIONS:PER_SESSION (see smtp-bench.sh -s/-P): 20:0 = (a) 20 sessions kept open,
# 100:10 = (b) 100 sessions ~10 messages each, 20:1 and 100:1 = (c) one message per connection.
# Everything listens on loopback only. Each workload gets a fresh data dir (DATA_DIR) in one
# mktemp directory; they are all removed only at exit, never between workloads: on ext4
# without a journal (this bench host), creating a file skips every inode freed in the last
# ~30 s (dirty_expire_centisecs), so the thousands of files an `rm -rf` frees made the NEXT
# workload's spool-file creations cost ~40% more server CPU (profiled: openat in the kernel).
# Run nothing that deletes many files (another peer's cleanup) within 30 s before a measurement.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PEERS="${BENCH_PEERS:-/work/shared/bench-peers}"
BUN="${BUN:-$REPO/node_modules/.bin/bun}"

binary=0; postfix=0; count=3000; runs=3; sizes="4k 100k"; workloads="20:0 100:10 20:1 100:1"; port=2525
csv="$HERE/results/smtp-ingress-$(date -u +%Y%m%dT%H%M%SZ).csv"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=1; shift ;;
    --postfix) postfix=1; shift ;;
    --count) count="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;;
    --workloads) workloads="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --csv) csv="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "smtp-ingress: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$PEERS/smtp-bench.sh" ]] || { echo "smtp-ingress: $PEERS/smtp-bench.sh not found (set BENCH_PEERS)" >&2; exit 2; }
mkdir -p "$(dirname "$csv")"

work="$(mktemp -d /tmp/mailgw-bench-XXXXXX)"
cat > "$work/rules.yaml" <<'YAML'
domains: [company.com]
default: { action: archive, category: default }
rules: []
YAML
server_pid=""
data_runs=0
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start_mailgw() {
  data_runs=$((data_runs + 1))
  data_dir="$work/data-$data_runs"
  local cmd=("$BUN" "$REPO/src/main.ts" serve)
  [[ $binary -eq 1 ]] && cmd=("$REPO/dist/mailgw" serve)
  (cd "$work" && exec env SMTP_HOST=127.0.0.1 SMTP_PORT="$port" HTTP_HOST=127.0.0.1 HTTP_PORT=0 \
      DATA_DIR="$data_dir" DATABASE_URL="file:$data_dir/mail-gateway.db" SMTP_HOSTNAME=mx.bench RATE_LIMIT_MAX=1000000000 LOG_FORMAT=json LOG_LEVEL="${LOG_LEVEL:-info}" \
      "${cmd[@]}" >"$work/serve.log" 2>&1) &
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q '"mailgw serve started"' "$work/serve.log" 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "smtp-ingress: mailgw did not start" >&2; exit 1
}

stop_mailgw() {
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

for size in $sizes; do
  for w in $workloads; do
    sessions="${w%%:*}"; per="${w##*:}"
    start_mailgw
    "$PEERS/smtp-bench.sh" -t "127.0.0.1:$port" -n "mailgw" --pid "$server_pid" -l "$size" -s "$sessions" -P "$per" \
      -m "$count" -r "$runs" -w 300 --csv "$csv"
    stop_mailgw
    if [[ $postfix -eq 1 ]]; then
      "$PEERS/postfix-peer.sh" start >/dev/null
      "$PEERS/smtp-bench.sh" -t 127.0.0.1:2627 -n "postfix-discard" --pid "$("$PEERS/postfix-peer.sh" pid)" \
        --idle-cmd "$PEERS/postfix-peer.sh idle" -l "$size" -s "$sessions" -P "$per" -m "$count" -r "$runs" -w 300 --csv "$csv"
      "$PEERS/postfix-peer.sh" stop >/dev/null
    fi
  done
done
python3 "$PEERS/lib/summarize.py" "$csv"
echo "results: $csv"
