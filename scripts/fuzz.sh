#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_EACH (default 60) seconds, from the committed seeds and the
# corpus of earlier runs, with cargo-fuzz on the stable toolchain (`--sanitizer none`: Rust code
# is memory-safe outside the JIT module, and the targets check the properties that matter: no
# panic, spans in range, the VM, the JIT and the traced VM agree, no unbounded work).
#
#   scripts/fuzz.sh                                  # every target, 60 s each
#   SECONDS_EACH=600 scripts/fuzz.sh load_artifact   # one target, longer
#   SECONDS_EACH=3600 scripts/fuzz.sh                # the nightly run
#
# An input that takes longer than TIMEOUT (default 20) seconds is a failure (libFuzzer
# `-timeout`): every target's work must be bounded. The artifact seeds are compiled from the
# examples first, with this toolchain (so a format version bump never leaves them stale), one of
# them signed with the key the `load_artifact` target trusts.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler (libFuzzer).
# Crashes are written to fuzz/artifacts/TARGET/; reproduce one with
# `cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-…`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
EACH=${SECONDS_EACH:-60}
TIMEOUT=${TIMEOUT:-20}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(parse_verdict load_yaml load_json load_card load_artifact request_json hostile_program)
fi

# Artifact seeds from the examples, as this toolchain writes them.
mkdir -p fuzz/corpus/load_artifact
key=$(mktemp)
trap 'rm -f "$key"' EXIT
# The base64 of the seed [7; 32] (`load_artifact` trusts its public key).
echo "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" >"$key"
for src in examples/*/bundle.verdict; do
    name=$(basename "$(dirname "$src")")
    cargo run -q -p verdict-cli -- compile "$src" -o "fuzz/corpus/load_artifact/seed-$name.vdc" >/dev/null 2>&1 ||
        echo "note: $src does not compile; no artifact seed from it"
done
cargo run -q -p verdict-cli -- compile examples/quickstart/bundle.verdict --sign "$key" \
    -o fuzz/corpus/load_artifact/seed-quickstart-signed.vdc

for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    echo "== $t (${EACH}s)"
    log=$(mktemp)
    if cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$EACH" -timeout="$TIMEOUT" -rss_limit_mb=4096 >"$log" 2>&1; then
        tail -2 "$log"
        rm -f "$log"
    else
        tail -60 "$log"
        rm -f "$log"
        echo "fuzz target $t failed (the input is in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
done
