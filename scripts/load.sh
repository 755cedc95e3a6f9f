#!/usr/bin/env bash
# Load test of `verdict serve` on the W52 workload (../shared/notes/PERFORMANCE.md) with wrk, on
# 127.0.0.1, bounded in time. Prints wrk's report, a summary line for BENCHMARKS.md, and checks
# the goals of issues 7 and 10: >= MIN_RPS decisions/s, p99 <= MAX_P99_MS, 0 errors, and at least
# one audit line per completed request (each line is written before its answer leaves; at most one
# more per connection in flight at the end).
#
#   scripts/load.sh                      # 10 s, 32 connections, 2 wrk threads
#   DURATION=30s CONNECTIONS=64 scripts/load.sh
#   FSYNC=1 scripts/load.sh              # --audit-fsync: each batch of audit lines synced to disk
#   RELOAD=1 scripts/load.sh             # rewrite the bundle (good and bad versions) during the run
#   SERVE_ARGS="--eval-threads 1" scripts/load.sh   # more flags for verdict serve
#   REPORT_ONLY=1 scripts/load.sh        # exit 0 even when a goal is missed
#   VERDICT_BIN=/tmp/verdict-main scripts/load.sh   # another build (no cargo build)
#
# Needs wrk (installed with apt-get when missing) and curl; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18089}
MIN_RPS=${MIN_RPS:-50000}
MAX_P99_MS=${MAX_P99_MS:-2}

if ! command -v wrk >/dev/null 2>&1; then
    apt-get update && apt-get install -y wrk
fi
command -v curl >/dev/null 2>&1 || { apt-get update && apt-get install -y curl; }

# VERDICT_BIN: an already built binary (to compare builds); otherwise the release build.
if [ -n "${VERDICT_BIN:-}" ]; then
    BIN=$VERDICT_BIN
else
    cargo build --release --locked -q -p verdict-cli
    BIN="${CARGO_TARGET_DIR:-target}/release/verdict"
fi

WORK=$(mktemp -d)
SERVER_PID=""
RELOADER_PID=""
cleanup() {
    [ -n "$RELOADER_PID" ] && kill "$RELOADER_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The W52 bundle: the quickstart's admin writes, 50 filler rules, a locked-resource deny.
w52() {
    local version=$1
    cat <<YAML
bundle_id: w52
version: "$version"
policies:
  - id: writes
    default_effect: deny
    rules:
      - id: admin-writes
        effect: allow
        when:
          kind: all_of
          matchers:
            - {kind: in, field: action, value: [create, update, delete]}
            - {kind: eq, field: subject.role, value: admin}
YAML
    for i in $(seq 0 49); do
        cat <<YAML
      - id: filler-$i
        effect: allow
        when:
          kind: all_of
          matchers:
            - {kind: eq, field: action, value: act$i}
            - {kind: eq, field: subject.role, value: viewer}
YAML
    done
    cat <<YAML
  - id: locked
    default_effect: allow
    rules:
      - id: locked
        effect: deny
        when: {kind: contains, field: resource.tags, value: locked}
YAML
}
mkdir -p "$WORK/bundles"
w52 1.0.0 > "$WORK/bundles/w52.yaml"

ADMIN=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
EVAL=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
export POLICY_ENGINE_ADMIN_TOKEN="$ADMIN" POLICY_ENGINE_EVALUATE_TOKEN="$EVAL"
AUDIT="$WORK/audit.jsonl"
EXTRA=()
[ "${FSYNC:-0}" = "1" ] && EXTRA+=(--audit-fsync)
# shellcheck disable=SC2206 # word splitting of SERVE_ARGS is wanted
[ -n "${SERVE_ARGS:-}" ] && EXTRA+=(${SERVE_ARGS})
RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --watch "$WORK/bundles" --poll-ms 200 \
    --audit "$AUDIT" "${EXTRA[@]}" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$WORK/serve.log" || { cat "$WORK/serve.log"; exit 1; }

REQ1='{"subject": {"id": "u-1", "role": "admin"}, "action": "update", "resource": {"id": "r-1", "tags": ["term-2"]}}'
REQ2='{"subject": {"id": "u-2", "role": "viewer"}, "action": "read", "resource": {"id": "r-2", "tags": ["locked"]}}'
REQ3='{"subject": {"id": "u-3", "role": "viewer"}, "action": "act49", "resource": {"id": "r-3", "tags": []}}'
URL="http://127.0.0.1:$PORT/bundles/w52/evaluate"
# The three W52 requests decide allow (first rule), deny (scans everything), allow (last filler).
for pair in "allow|$REQ1" "deny|$REQ2" "allow|$REQ3"; do
    want=${pair%%|*}
    got=$(curl -s -H "Authorization: Bearer $EVAL" -d "${pair#*|}" "$URL" | grep -o '"decision":{"kind":"[a-z_]*"' | cut -d'"' -f6)
    [ "$got" = "$want" ] || { echo "W52 sanity check: expected $want, got '$got'"; exit 1; }
done

cat > "$WORK/w52.lua" <<LUA
local bodies = {
  [[$REQ1]],
  [[$REQ2]],
  [[$REQ3]],
}
local requests = {}
local n = 0
function init(args)
  for i, b in ipairs(bodies) do
    requests[i] = wrk.format("POST", "/bundles/w52/evaluate",
      {["Authorization"] = "Bearer $EVAL", ["Content-Type"] = "application/json"}, b)
  end
end
function request()
  n = n + 1
  return requests[(n % 3) + 1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SUMMARY requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA

if [ "${RELOAD:-0}" = "1" ]; then
    (
        i=0
        while true; do
            i=$((i + 1))
            case $((i % 3)) in
                0) w52 1.0.0 > "$WORK/bundles/.w52.tmp" ;;
                1) w52 2.0.0 > "$WORK/bundles/.w52.tmp" ;;
                2) w52 9.9.9 | sed 's/^policies:$/policies: 7\nbroken:/' > "$WORK/bundles/.w52.tmp" ;;
            esac
            mv "$WORK/bundles/.w52.tmp" "$WORK/bundles/w52.yaml"
            kill -HUP "$SERVER_PID" 2>/dev/null || true
            sleep 0.05
        done
    ) &
    RELOADER_PID=$!
fi

# The server's CPU time (user + system, in clock ticks), to report its cost per decision: a figure
# less sensitive than throughput to what else runs on the machine.
cpu_ticks() { sed 's/^.*) //' "/proc/$SERVER_PID/stat" | awk '{print $12 + $13}'; }
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
CPU_BEFORE=$(cpu_ticks)
wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$WORK/w52.lua" "$URL" | tee "$WORK/wrk.out"
CPU_AFTER=$(cpu_ticks)

if [ -n "$RELOADER_PID" ]; then kill "$RELOADER_PID"; wait "$RELOADER_PID" 2>/dev/null || true; RELOADER_PID=""; fi
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=""

SUMMARY=$(grep '^SUMMARY' "$WORK/wrk.out")
val() { echo "$SUMMARY" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }
REQUESTS=$(val requests); DURATION_US=$(val duration_us); P50=$(val p50_us); P99=$(val p99_us)
ERRORS=$(val errors); NON2XX=$(val non2xx)
RPS=$((REQUESTS * 1000000 / DURATION_US))
AUDITED=$(( $(grep -c '"event":"evaluation"' "$AUDIT") - 3 ))
REJECTED=$(grep -c '"event":"bundle_rejected"' "$AUDIT" || true)
RELOADED=$(grep -c '"event":"bundle_reloaded"' "$AUDIT" || true)

echo
CPU_US=$(( (CPU_AFTER - CPU_BEFORE) * 1000000 / $(getconf CLK_TCK) ))
echo "decisions/s: $RPS   p50: ${P50} us   p99: ${P99} us   errors: $ERRORS   non-2xx: $NON2XX"
echo "server CPU: $(awk -v c="$CPU_US" -v n="$REQUESTS" 'BEGIN { printf "%.1f", c / n }') us per decision (user + system)   load average before: $LOAD_BEFORE"
echo "audit: $AUDITED evaluation lines for $REQUESTS completed requests (+ up to $CONNECTIONS in flight at the end)"
[ "${RELOAD:-0}" = "1" ] && echo "reloads during the run: $RELOADED good versions swapped in, $REJECTED bad versions refused"
LABEL="$THREADS wrk threads, $CONNECTIONS connections, $DURATION"
[ "${FSYNC:-0}" = "1" ] && LABEL="$LABEL, --audit-fsync"
[ -n "${SERVE_ARGS:-}" ] && LABEL="$LABEL, $SERVE_ARGS"
[ "${RELOAD:-0}" = "1" ] && LABEL="$LABEL, reloading"
echo "| $(date -u +%Y-%m-%d) | $LABEL | $RPS | $P50 | $P99 | $ERRORS + $NON2XX | $AUDITED / $REQUESTS |"

FAIL=0
[ "$RPS" -ge "$MIN_RPS" ] || { echo "MISSED: $RPS decisions/s < $MIN_RPS"; FAIL=1; }
[ "$P99" -le $((MAX_P99_MS * 1000)) ] || { echo "MISSED: p99 ${P99} us > ${MAX_P99_MS} ms"; FAIL=1; }
[ "$ERRORS" -eq 0 ] && [ "$NON2XX" -eq 0 ] || { echo "MISSED: $ERRORS errors, $NON2XX non-2xx answers"; FAIL=1; }
[ "$AUDITED" -ge "$REQUESTS" ] && [ "$AUDITED" -le $((REQUESTS + CONNECTIONS)) ] \
    || { echo "MISSED: $AUDITED audit lines for $REQUESTS requests"; FAIL=1; }
[ "$FAIL" = 0 ] && echo "all goals met"
[ "${REPORT_ONLY:-0}" = "1" ] && exit 0
exit "$FAIL"
