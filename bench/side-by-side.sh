#!/usr/bin/env bash
# side-by-side.sh - one command that measures mailgw beside Postfix, Haraka and smtp-sink in the
# same run (issue 3 and issue 4 "Measure"), with /work/shared/bench-peers/smtp-bench.sh driving
# every server with Postfix's smtp-source on loopback, and prints a Markdown table for
# docs/benchmarks.md.
#
#   ingress (accept side; each peer acknowledges only after its own durable step):
#     mailgw archive    compiled dist/mailgw serve, default action archive, DATA_DIR on the disk
#     postfix discard   Postfix 127.0.0.1:2627 (queue fsync, then discard(8))
#     haraka discard    Haraka 127.0.0.1:2829 (queue/discard, no fsync at all)
#     smtp-sink         Postfix smtp-sink 127.0.0.1:2727 (no storage: the ceiling)
#   end to end (accepted → queued → relayed into smtp-sink 127.0.0.1:2727, timed until the sink
#   has every accepted message; the sink's session counter gives the relay connections used):
#     mailgw forward    every message matched by a forward rule, RELAY_SMTP_SECURE=none
#     postfix relay     Postfix 127.0.0.1:2626 relaying to the same sink
#     haraka forward    Haraka 127.0.0.1:2828, queue/smtp_forward to the same sink
#
# usage: bench/side-by-side.sh [--quick] [--ingress "a-4k ..."] [--e2e "a-4k b-4k"]
#                              [--peers "mailgw postfix haraka sink"] [--count N] [--runs N]
#                              [--warmup N] [--port 2545] [--binary PATH] [--out DIR]
#   workloads (SIZE-SHAPE; shapes as in issue 3):
#     a-4k a-100k   (a) 20 sessions kept open (smtp-source -d, smtp-bench -P 0)
#     b-4k b-100k   (b) 100 sessions, about 10 messages each (-P 10)
#     c20-4k c20-100k c100-4k c100-100k   (c) one message per connection, 20 / 100 sessions (-P 1)
#   --ingress LIST  ingress workloads (default: all eight; "" = none)
#   --e2e LIST      end-to-end workloads (default: "a-4k b-4k"; "" = none)
#   --peers LIST    which servers to measure (default: all four; sink takes part in ingress only)
#   --count N       messages per measured run for 4 KB (100 KB workloads use N/2); default 2000
#   --runs N        measured runs per peer and workload, medians reported; default 3
#   --warmup N      unmeasured warm-up messages before the runs; default 200
#   --quick         2-minute smoke run: ingress "a-4k b-4k c20-4k", e2e "a-4k b-4k",
#                   --count 400 --runs 1 --warmup 100 (later flags still override)
#   --binary PATH   measure this mailgw executable instead of building one
#   --log-level L   mailgw LOG_LEVEL (default info: one JSON line per session, as shipped)
#   --out DIR       results directory (default bench/results/side-by-side-<UTC time>)
# Needs root (Postfix start/stop) and the peers set up once: bench-peers/postfix-peer.sh setup,
# bench-peers/haraka-peer.sh setup. mailgw runs from a copy built by `npm run build -- --outfile`
# in a mktemp dir with its own .env, on --port (default 2545, not mailgw's 2525, so it can run
# beside another mailgw), and is stopped at the end. Everything listens on loopback only.
# Output: DIR/ingress.csv and DIR/e2e.csv (smtp-bench rows), DIR/checks.csv (archived files,
# sink messages and sessions per peer and workload), DIR/table.md (paste into
# docs/benchmarks.md), DIR/detail.md (bench-peers lib/summarize.py), DIR/logs/.
# On failure: a peer that fails to start ends the script (non-zero) after stopping what it
# started; a run that did not complete is kept and marked ⚠ in the table.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PEERS="${BENCH_PEERS:-/work/shared/bench-peers}"
SINK_PORT=2727                 # fixed: the Postfix and Haraka peer configs relay to it
MAILGW_START_TIMEOUT_S=30      # the executable opens SQLite, migrates, loads rules: seconds at most
MAILGW_STOP_TIMEOUT_S=20       # graceful stop finishes sessions in flight; then SIGKILL
ARCHIVE_SETTLE_TIMEOUT_S=20    # archive files written after the 250 may trail the last reply
RUN_TIMEOUT_S=300              # smtp-bench hard limit per run and per delivery wait

ingress="a-4k a-100k b-4k b-100k c20-4k c20-100k c100-4k c100-100k"; e2e="a-4k b-4k"; peers="mailgw postfix haraka sink"
count=2000; runs=3; warmup=200; cooldown=2; port=2545; binary=""; log_level=info
out="$HERE/results/side-by-side-$(date -u +%Y%m%dT%H%M%SZ)"; argv="$(printf '%q ' "$@")"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) ingress="a-4k b-4k c20-4k"; e2e="a-4k b-4k"; count=400; runs=1; warmup=100; cooldown=1; shift ;;
    --ingress) ingress="$2"; shift 2 ;;
    --e2e) e2e="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --binary) binary="$(realpath "$2")"; shift 2 ;;
    --log-level) log_level="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "side-by-side: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "side-by-side: $*" >&2; exit 1; }
has_peer() { [[ " $peers " == *" $1 "* ]]; }
[[ -x "$PEERS/smtp-bench.sh" ]] || die "$PEERS/smtp-bench.sh not found (set BENCH_PEERS)"
[[ "$port" =~ ^[0-9]+$ && "$port" != "$SINK_PORT" ]] || die "--port must be a free port other than $SINK_PORT"
if has_peer postfix; then
  [[ "$(id -u)" == 0 ]] || die "Postfix start/stop needs root (or leave postfix out of --peers)"
  [[ "$(postconf -h relayhost 2>/dev/null)" == "[127.0.0.1]:$SINK_PORT" ]] \
    || die "Postfix is not configured for the benchmark: run $PEERS/postfix-peer.sh setup (as root)"
fi
if has_peer haraka; then
  [[ -x "${HARAKA_DIR:-/tmp/haraka-bench}/node_modules/.bin/haraka" ]] || die "Haraka missing: run $PEERS/haraka-peer.sh setup"
fi
mkdir -p "$out/logs"; out="$(cd "$out" && pwd)"
work="$(mktemp -d /var/tmp/mailgw-side-by-side-XXXXXX)"   # /var/tmp: on the disk, never a tmpfs

# ---------- cleanup: stop only what this script started ----------
mailgw_pid=""; started_sink=0; started_postfix=0; haraka_running=""
stop_mailgw() {
  [[ -n "$mailgw_pid" ]] || return 0
  kill -TERM "$mailgw_pid" 2>/dev/null || true
  for _ in $(seq 1 $((MAILGW_STOP_TIMEOUT_S * 10))); do kill -0 "$mailgw_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$mailgw_pid" 2>/dev/null || true
  wait "$mailgw_pid" 2>/dev/null || true; mailgw_pid=""
}
stop_postfix() {
  (( started_postfix )) || return 0
  for _ in $(seq 1 600); do "$PEERS/postfix-peer.sh" idle && break; sleep 0.5; done
  postfix stop >/dev/null 2>&1 || true; started_postfix=0
}
stop_haraka() { [[ -z "$haraka_running" ]] || "$PEERS/haraka-peer.sh" stop "$haraka_running" >/dev/null; haraka_running=""; }
cleanup() {
  stop_mailgw; stop_haraka; stop_postfix
  if (( started_sink )); then "$PEERS/sink.sh" stop "$SINK_PORT" >/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "side-by-side: interrupted" >&2; exit 130' INT TERM

# ---------- mailgw: build once, run from the temp dir with its own .env ----------
if [[ -z "$binary" ]]; then
  echo "== building mailgw (npm run build -- --outfile $work/mailgw)"
  (cd "$REPO" && npm run --silent build -- --outfile "$work/mailgw") || die "build failed"
  binary="$work/mailgw"
fi
[[ -x "$binary" ]] || die "$binary is not an executable"
mailgw_version="$("$binary" --version 2>/dev/null | head -1 || echo unknown)"

write_rules() { # $1 = archive | forward
  if [[ "$1" == archive ]]; then
    printf '%s\n' 'domains: [company.com]' 'default: { action: archive, category: default }' 'rules: []'
  else
    printf '%s\n' 'domains: [company.com]' 'default: { action: archive, category: default }' 'rules:' \
      '  - name: relay-all' '    priority: 1' '    category: bench' '    action: forward' \
      '    forward_to: [sink@example.net]' '    conditions:' '      - { field: size, operator: gt, value: 0 }'
  fi
}
# A fresh data dir per workload, all deleted only at exit: on a file system without a journal,
# creating files soon after an `rm -rf` of thousands (the previous workload's) makes the kernel
# scan the freed inodes on every create, which would be measured as mailgw's CPU.
run_seq=0; run_dir=""
start_mailgw() { # $1 = archive | forward
  run_seq=$((run_seq + 1)); run_dir="$work/run-$run_seq"
  local dir="$run_dir"; mkdir -p "$dir"
  write_rules "$1" > "$dir/rules.yaml"
  {
    echo "SMTP_HOST=127.0.0.1"; echo "SMTP_PORT=$port"; echo "SMTP_HOSTNAME=mx.bench.invalid"
    echo "HTTP_HOST=127.0.0.1"; echo "HTTP_PORT=0"; echo "RATE_LIMIT_MAX=1000000000"
    echo "DATA_DIR=./data"; echo "DATABASE_URL=file:./data/mail-gateway.db"; echo "RULES_FILE=./rules.yaml"
    echo "LOG_FORMAT=json"; echo "LOG_LEVEL=$log_level"
    if [[ "$1" == forward ]]; then echo "RELAY_SMTP_HOST=127.0.0.1"; echo "RELAY_SMTP_PORT=$SINK_PORT"; echo "RELAY_SMTP_SECURE=none"; fi
  } > "$dir/.env"
  ss -Hltn "sport = :$port" | grep -q . && die "port $port is already in use"
  # env -i: only the .env configures it (process variables would override the file)
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin HOME="$dir" "$binary" serve >"$dir/serve.log" 2>&1) &
  mailgw_pid=$!
  for _ in $(seq 1 $((MAILGW_START_TIMEOUT_S * 10))); do
    ss -Hltn "sport = :$port" | grep -q . && return 0
    kill -0 "$mailgw_pid" 2>/dev/null || { tail -5 "$dir/serve.log" >&2; die "mailgw exited at start"; }
    sleep 0.1
  done
  die "mailgw did not listen on $port within ${MAILGW_START_TIMEOUT_S}s"
}
archived_files() { find "$run_dir/data/archive" -name '*.eml' 2>/dev/null | wc -l; }

# ---------- peers ----------
sink_field() { # sess | mesg: the sink's running counter (0 before its first session)
  tail -c 256 "$("$PEERS/sink.sh" file "$SINK_PORT")" | tr '\r' '\n' | grep -o "$1=[0-9]*" | tail -1 | cut -d= -f2 | grep . || echo 0
}
if [[ -z "$("$PEERS/sink.sh" pid "$SINK_PORT" 2>/dev/null)" ]]; then
  "$PEERS/sink.sh" start "$SINK_PORT" >/dev/null || die "could not start smtp-sink on $SINK_PORT"; started_sink=1
else
  echo "side-by-side: warning: reusing an smtp-sink already on $SINK_PORT; anything else sending to it spoils the counts" >&2
fi
start_postfix() {
  postfix status >/dev/null 2>&1 && { (( started_postfix )) || die "Postfix is already running: stop it first"; return 0; }
  "$PEERS/postfix-peer.sh" start >/dev/null; started_postfix=1
}
start_haraka() { stop_haraka; "$PEERS/haraka-peer.sh" start "$1" >/dev/null; haraka_running="$1"; }

# ---------- one measurement ----------
shape() { # workload name -> "SIZE SESSIONS PER_SESSION COUNT"
  local size="${1##*-}" n="$count" s p
  case "${1%-*}" in a) s=20; p=0 ;; b) s=100; p=10 ;; c20) s=20; p=1 ;; c100) s=100; p=1 ;; *) die "unknown workload $1" ;; esac
  [[ "$size" == 4k || "$size" == 100k ]] || die "unknown size in $1 (4k or 100k)"
  [[ "$size" == 100k ]] && n=$(( count / 2 ))
  echo "$size $s $p $n"
}
echo "section,label,workload,size,sessions,per_session,accepted_total,archived_files,sink_messages,sink_sessions" > "$out/checks.csv"
ck=()   # the measurement waiting for record_checks: section label workload size sessions per log
ck_m0=0; ck_s0=0
bench() { # section label workload csv smtp-bench-args... ; run smtp-bench; record_checks follows the server's stop
  local section="$1" label="$2" w="$3" csv="$4"; shift 4
  local size s p n log
  read -r size s p n <<<"$(shape "$w")"
  log="$out/logs/$section-$w-${label// /-}"
  ck=("$section" "$label" "$w" "$size" "$s" "$p" "$log"); ck_m0="$(sink_field mesg)"; ck_s0="$(sink_field sess)"
  "$PEERS/smtp-bench.sh" "$@" -n "$label" -l "$size" -s "$s" -P "$p" -m "$n" -r "$runs" -w "$warmup" \
    --cooldown "$cooldown" --timeout "$RUN_TIMEOUT_S" --logdir "$log" --csv "$csv" 2>&1 | tee "$log.txt" || true
  if [[ "$label" == "mailgw archive" ]]; then   # count archive files while the data dir still exists
    local acc archived=0
    acc="$(accepted_total "$log.txt")"
    for _ in $(seq 1 $((ARCHIVE_SETTLE_TIMEOUT_S * 10))); do archived="$(archived_files)"; (( archived >= acc )) && break; sleep 0.1; done
    ck+=("$archived")
  fi
}
accepted_total() { # warm-up + measured runs, from smtp-bench's output
  sed -n 's/.*warm-up: \([0-9]*\)\/.*/\1/p; s/.*run [0-9]*: accepted \([0-9]*\)\/.*/\1/p' "$1" | awk '{s+=$1} END{print s+0}'
}
record_checks() { # after the server stopped: smtp-sink counts a session when it ends (pooled relay connections)
  local section="${ck[0]}" label="${ck[1]}" sm="" ss=""
  if [[ "$section" == e2e ]]; then
    sleep 1   # the sink's counter line for the last QUITs; late duplicates would show as sink > accepted
    sm=$(( $(sink_field mesg) - ck_m0 )); ss=$(( $(sink_field sess) - ck_s0 ))
  fi
  echo "$section,$label,${ck[2]},${ck[3]},${ck[4]},${ck[5]},$(accepted_total "${ck[6]}.txt"),${ck[7]:-},$sm,$ss" >> "$out/checks.csv"
}

load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# side-by-side $(date -Is) mailgw=$mailgw_version port=$port ingress=[$ingress] e2e=[$e2e] peers=[$peers] count=$count runs=$runs warmup=$warmup load=[$load] out=$out"
for w in $ingress; do
  shape "$w" >/dev/null
  if has_peer mailgw; then
    start_mailgw archive
    bench ingress "mailgw archive" "$w" "$out/ingress.csv" -t "127.0.0.1:$port" --pid "$mailgw_pid"
    stop_mailgw; record_checks
  fi
  if has_peer postfix; then
    start_postfix
    bench ingress "postfix discard" "$w" "$out/ingress.csv" -t 127.0.0.1:2627 --pid "$("$PEERS/postfix-peer.sh" pid)" \
      --idle-cmd "$PEERS/postfix-peer.sh idle" --drain-cmd "$PEERS/postfix-peer.sh idle"
    stop_postfix; record_checks
  fi
  if has_peer haraka; then
    start_haraka discard
    bench ingress "haraka discard" "$w" "$out/ingress.csv" -t 127.0.0.1:2829 --pid "$("$PEERS/haraka-peer.sh" pid discard)"
    stop_haraka; record_checks
  fi
  if has_peer sink; then
    bench ingress "smtp-sink" "$w" "$out/ingress.csv" -t "127.0.0.1:$SINK_PORT" --pid "$("$PEERS/sink.sh" pid "$SINK_PORT")" \
      --sink-port "$SINK_PORT"
    record_checks
  fi
done
for w in $e2e; do
  shape "$w" >/dev/null
  if has_peer mailgw; then
    start_mailgw forward
    bench e2e "mailgw forward" "$w" "$out/e2e.csv" -t "127.0.0.1:$port" --pid "$mailgw_pid" --sink-port "$SINK_PORT"
    stop_mailgw; record_checks
  fi
  if has_peer postfix; then
    start_postfix
    bench e2e "postfix relay" "$w" "$out/e2e.csv" -t 127.0.0.1:2626 --pid "$("$PEERS/postfix-peer.sh" pid)" \
      --sink-port "$SINK_PORT" --idle-cmd "$PEERS/postfix-peer.sh idle"
    stop_postfix; record_checks
  fi
  if has_peer haraka; then
    start_haraka forward
    bench e2e "haraka forward" "$w" "$out/e2e.csv" -t 127.0.0.1:2828 --pid "$("$PEERS/haraka-peer.sh" pid forward)" \
      --sink-port "$SINK_PORT"
    stop_haraka; record_checks
  fi
done

# ---------- tables ----------
elapsed=$SECONDS   # since the script started, build included
head_sha="$(git -C "$REPO" rev-parse --short HEAD)"
dirty=""; [[ -n "$(git -C "$REPO" status --porcelain -- src 2>/dev/null)" ]] && dirty=" (plus uncommitted changes under src/)"
{
  for f in ingress e2e; do [[ -s "$out/$f.csv" ]] && { echo "## $f"; echo; python3 "$PEERS/lib/summarize.py" "$out/$f.csv"; }; done
} > "$out/detail.md" 2>&1 || true
META="mailgw $mailgw_version, built from $head_sha$dirty; $(nproc) CPUs, load average at start $load; runs=$runs (medians), count=$count per run (100 KB: $((count / 2))), warm-up $warmup; ${elapsed}s wall; command: bench/side-by-side.sh ${argv% }" \
python3 - "$out" > "$out/table.md" <<'PY'
import csv, os, statistics, sys
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    return list(csv.DictReader(open(p))) if os.path.exists(p) else []
def num(v):
    try: return float(v)
    except (TypeError, ValueError): return None
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
SHAPE = {("20", "all"): "a", ("100", "10"): "b", ("20", "1"): "c20", ("100", "1"): "c100"}
DESC = {"a": "(a) 20 sessions kept open", "b": "(b) 100 sessions × ~10", "c20": "(c) 1 msg/connection, 20 sessions",
        "c100": "(c) 1 msg/connection, 100 sessions"}
def group(rs):
    g = {}
    for r in rs:
        if r["run"] == "median": continue
        w = SHAPE.get((r["sessions"], r["per_session"]), "?") + "-" + f'{int(r["size_b"]) // 1024}k'
        g.setdefault(w, {}).setdefault(r["label"], []).append(r)
    return g
def stat(rs):
    peak = [max([x for x in (num(r["peak_tree_rss_kb"]), num(r["root_vmhwm_kb"])) if x] or [0]) / 1024 for r in rs]
    return {"acc": med([num(r["accept_mps"]) for r in rs]), "e2e": med([num(r["e2e_mps"]) for r in rs]),
            "rss": med(peak), "pss": med([(num(r["peak_tree_pss_kb"]) or 0) / 1024 for r in rs]),
            "procs": med([num(r["peak_nprocs"]) for r in rs]),
            "bad": sum(1 for r in rs if r["complete"] != "1"), "rej": sum(int(num(r["rejected"]) or 0) for r in rs)}
def f0(v): return "–" if v is None else f"{v:,.0f}"
def label_w(w):
    shape, size = w.rsplit("-", 1)
    return f"{DESC.get(shape, shape)}, {size.upper().replace('K', ' KB')}"
checks = {(c["section"], c["label"], c["workload"]): c for c in rows("checks.csv")}
print(f"_{os.environ.get('META', '')}_\n")
ing = group(rows("ingress.csv"))
if ing:
    peers = [p for p in ("mailgw archive", "postfix discard", "haraka discard", "smtp-sink") if any(p in v for v in ing.values())]
    print("Ingress, accepted msg/s (median) and peak RSS of the server (MB; Postfix: PSS over its processes):\n")
    print("| workload | " + " | ".join(peers) + " | mailgw ÷ Postfix | mailgw archived = accepted |")
    print("|---|" + "---:|" * len(peers) + "---:|---|")
    for w, by in ing.items():
        cells = []
        for p in peers:
            if p not in by: cells.append(""); continue
            s = stat(by[p]); mem = s["pss"] if (s["procs"] or 1) > 2 else s["rss"]
            cells.append(f"{f0(s['acc'])} ({f0(mem)} MB)" + (f" ⚠{s['bad']} incomplete" if s["bad"] else "")
                         + (f" {s['rej']} rejected" if s["rej"] else ""))
        m = stat(by["mailgw archive"])["acc"] if "mailgw archive" in by else None
        pf = stat(by["postfix discard"])["acc"] if "postfix discard" in by else None
        ratio = f"{m / pf:.2f}×" if m and pf else "–"
        c = checks.get(("ingress", "mailgw archive", w))
        ok = "–" if not c else (f"yes ({c['archived_files']})" if c["archived_files"] == c["accepted_total"]
                                 else f"**no**: {c['archived_files']} files for {c['accepted_total']} accepted")
        print(f"| {label_w(w)} | " + " | ".join(cells) + f" | {ratio} | {ok} |")
    print()
e2e = group(rows("e2e.csv"))
if e2e:
    print("End to end into smtp-sink 127.0.0.1:2727 (4 KB), medians:\n")
    print("| workload | server | accepted msg/s | delivered msg/s | sink received / accepted (incl. warm-up) | relay sessions seen by the sink | peak RSS MB |")
    print("|---|---|---:|---:|---|---:|---:|")
    for w, by in e2e.items():
        for p in ("mailgw forward", "postfix relay", "haraka forward"):
            if p not in by: continue
            s = stat(by[p]); mem = s["pss"] if (s["procs"] or 1) > 2 else s["rss"]
            c = checks.get(("e2e", p, w), {})
            got, acc = c.get("sink_messages", ""), c.get("accepted_total", "")
            if got == acc: verdict = f"{got} / {acc}: equal"
            elif (num(got) or 0) < (num(acc) or 0): verdict = f"{got} / {acc}: **lost {int(num(acc) - (num(got) or 0))}**"
            else: verdict = f"{got} / {acc}: {int(num(got) - (num(acc) or 0))} duplicates"
            bad = f" ⚠{s['bad']} incomplete" if s["bad"] else ""
            print(f"| {label_w(w)} | {p} | {f0(s['acc'])} | {f0(s['e2e'])}{bad} | {verdict} | {c.get('sink_sessions', '–')} | {f0(mem)} |")
    print()
PY
cat "$out/table.md"
echo "results: $out (table.md, detail.md, ingress.csv, e2e.csv, checks.csv, logs/); ${elapsed}s"
