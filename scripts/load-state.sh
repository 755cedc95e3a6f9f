#!/usr/bin/env bash
# Load test of stateful decisions through `verdict serve` with wrk on 127.0.0.1: a spend budget
# (`state spend { … apply commit }`, a daily and an hourly read per decision) keyed by agent, 1,000
# agents in turn, every decision approved with a hold (the write path: reads, then the hold
# recorded atomically). With STORE=redis a throwaway redis-server (no persistence) runs on the
# same machine. Prints wrk's report and a summary line for BENCHMARKS.md; checks that every
# request was answered 2xx and audited with a hold (no fail-closed decision).
#
#   scripts/load-state.sh                    # STORE=memory, 10 s, 32 connections, 2 wrk threads
#   STORE=redis scripts/load-state.sh        # the same against Redis
#   STORE=redis CONNECTIONS=64 DURATION=20s scripts/load-state.sh
#   VERDICT_BIN=/tmp/verdict scripts/load-state.sh   # another build (no cargo build)
#
# Needs wrk, curl and (for STORE=redis) redis-server (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

STORE=${STORE:-memory}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18090}
REDIS_PORT=${REDIS_PORT:-16390}

command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
command -v curl >/dev/null 2>&1 || { apt-get update && apt-get install -y curl; }
if [ "$STORE" = "redis" ]; then
    command -v redis-server >/dev/null 2>&1 || { apt-get update && apt-get install -y redis-server; }
fi

if [ -n "${VERDICT_BIN:-}" ]; then
    BIN=$VERDICT_BIN
else
    cargo build --release --locked -q -p verdict-cli
    BIN="${CARGO_TARGET_DIR:-target}/release/verdict"
fi

WORK=$(mktemp -d)
SERVER_PID=""
REDIS_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/spend.verdict" <<'VERDICT'
bundle "spend" {
  version "1.0.0"
  timezone "UTC"
  hold_ttl "10m"
  schema { amount: number, subject.id: string }
  required [amount, subject.id]
}

state spend {
  add amount
  key [subject.id]
  on [allow]
  apply commit
}

policy spend {
  default allow
  match first

  rule hourly deny {
    when spend.hour + amount > 1000000000
    reason f"Hourly budget exhausted (${spend.hour:.2f})"
  }

  rule daily deny {
    when spend.day + amount > 1000000000
    reason f"Daily budget exhausted (${spend.day:.2f})"
  }
}
VERDICT

STORE_URL=memory
if [ "$STORE" = "redis" ]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --dir "$WORK" >/dev/null 2>&1 &
    REDIS_PID=$!
    STORE_URL="redis://127.0.0.1:$REDIS_PORT/"
fi

ADMIN=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
EVAL=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)
export POLICY_ENGINE_ADMIN_TOKEN="$ADMIN" POLICY_ENGINE_EVALUATE_TOKEN="$EVAL"
AUDIT="$WORK/audit.jsonl"
RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --store "$STORE_URL" --audit "$AUDIT" \
    "$WORK/spend.verdict" 2>"$WORK/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$WORK/serve.log" 2>/dev/null && break
    sleep 0.1
done
grep -q "listening on" "$WORK/serve.log" || { cat "$WORK/serve.log"; exit 1; }

URL="http://127.0.0.1:$PORT/bundles/spend/evaluate"
got=$(curl -s -H "Authorization: Bearer $EVAL" -d '{"subject": {"id": "check"}, "data": {"amount": 1}}' "$URL")
echo "$got" | grep -q '"kind":"allow"' && echo "$got" | grep -q '"holds":\[{' \
    || { echo "sanity check: expected an approval with a hold, got $got"; exit 1; }

cat > "$WORK/spend.lua" <<LUA
local n = 0
local headers = {["Authorization"] = "Bearer $EVAL", ["Content-Type"] = "application/json"}
function request()
  n = n + 1
  local body = string.format('{"subject": {"id": "agent-%d"}, "data": {"amount": 1.25}}', n % 1000)
  return wrk.format("POST", "/bundles/spend/evaluate", headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SUMMARY requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
CPU_BEFORE=$(cpu_ticks "$SERVER_PID")
[ -n "$REDIS_PID" ] && REDIS_BEFORE=$(cpu_ticks "$REDIS_PID")
wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$WORK/spend.lua" "$URL" | tee "$WORK/wrk.out"
CPU_AFTER=$(cpu_ticks "$SERVER_PID")
[ -n "$REDIS_PID" ] && REDIS_AFTER=$(cpu_ticks "$REDIS_PID")
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=""

SUMMARY=$(grep '^SUMMARY' "$WORK/wrk.out")
val() { echo "$SUMMARY" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }
REQUESTS=$(val requests); DURATION_US=$(val duration_us); P50=$(val p50_us); P99=$(val p99_us)
ERRORS=$(val errors); NON2XX=$(val non2xx)
RPS=$((REQUESTS * 1000000 / DURATION_US))
AUDITED=$(( $(grep -c '"event":"evaluation"' "$AUDIT") - 1 ))
HOLDS=$(( $(grep -c '"holds":\[{' "$AUDIT") - 1 ))
TICK=$(getconf CLK_TCK)
per() { awk -v c="$1" -v n="$REQUESTS" -v t="$TICK" 'BEGIN { printf "%.1f", c * 1000000 / t / n }'; }

echo
echo "store: $STORE   decisions/s: $RPS   p50: ${P50} us   p99: ${P99} us   errors: $ERRORS   non-2xx: $NON2XX"
echo "server CPU: $(per $((CPU_AFTER - CPU_BEFORE))) us per decision$([ -n "$REDIS_PID" ] && echo "   redis-server CPU: $(per $((REDIS_AFTER - REDIS_BEFORE))) us per decision")   load average before: $LOAD_BEFORE"
echo "audit: $AUDITED evaluation lines ($HOLDS with holds) for $REQUESTS completed requests (+ up to $CONNECTIONS in flight)"
echo "| $(date -u +%Y-%m-%d) | $STORE | $THREADS wrk threads, $CONNECTIONS connections, $DURATION | $RPS | $P50 | $P99 | $ERRORS + $NON2XX | $AUDITED / $REQUESTS |"
[ "$ERRORS" -eq 0 ] && [ "$NON2XX" -eq 0 ] && [ "$AUDITED" -ge "$REQUESTS" ] && [ "$HOLDS" -eq "$AUDITED" ]
