#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, from the committed seeds, with cargo-fuzz
# on the stable toolchain (`--sanitizer none`: Rust code is memory-safe outside the JIT module,
# and the targets check the properties that matter: no panic, spans in range, backends agree).
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   SECONDS_EACH=600 scripts/fuzz.sh load_artifact
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Crashes are written to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
EACH=${SECONDS_EACH:-60}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(parse_verdict load_yaml load_json load_card load_artifact request_json)
fi
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t (${EACH}s)"
    cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- -max_total_time="$EACH" 2>&1 | tail -2
done
