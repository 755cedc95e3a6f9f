#!/usr/bin/env bash
# Every test of the repository, Rust and Python: `cargo test`, then the Python package
# (`python/`) built and installed into a virtualenv and its pytest suite, which compares the
# package with the `verdict` binary that `cargo test` built. Needs a Rust 1.95 toolchain and a
# CPython >= 3.11 with the venv module (`PYTHON=...` picks another interpreter). A missing Python
# is a failure: this command runs every test or says why it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
cargo test --locked
echo "test.sh: cargo test took $((SECONDS - start)) s"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: the Python tests need CPython >= 3.11 as \`$python\` (Debian: python3)" >&2
    exit 1
fi
# Debian's python3 has `venv` but not `ensurepip` without python3-venv, and `-m venv` then fails.
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "error: the Python tests need the venv and ensurepip modules in \`$python\` (Debian: apt-get install python3-venv)" >&2
    exit 1
fi

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# The build backend runs the venv's `maturin` executable.
export PATH="$venv/bin:$PATH"
# Build and test tools, pinned to a major version (maturin is the package's PEP 517 backend).
start=$SECONDS
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.16,<2" "pytest>=8,<10"
echo "test.sh: the virtualenv took $((SECONDS - start)) s"

# The CLI the tests compare with (already built by `cargo test`, whose CLI tests run it).
cargo build --locked --quiet -p verdict-cli
export VERDICT_BIN="$target/debug/verdict"

# `pip install ./python` as a user runs it, with the dev profile so that the crates `cargo test`
# compiled are reused (a release build of Cranelift alone takes minutes); the build backend is
# the venv's maturin.
start=$SECONDS
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    --force-reinstall --no-deps --config-settings=build-args="--profile dev" ./python
echo "test.sh: the Python package built and installed in $((SECONDS - start)) s"
# Last, so that its closing line (with its duration) ends the output.
"$venv/bin/python" -m pytest python/tests -q
