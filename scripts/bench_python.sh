#!/usr/bin/env bash
# The Python package's benchmark (BENCHMARKS.md, "Python package"): W52 from a dict through
# `verdict` (a release build) against policy-as-code-engine 0.2.1, rulegate 0.3.0 and cedarpy,
# in one run. The peers are installed here only, in their own virtualenv, never for the tests.
# rulegate needs CPython >= 3.12: PYTHON, else the first 3.12 or 3.13 found (pyenv's included).
# Arguments go to python/bench/w52.py (`--budget SECONDS`, `--json FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
    candidates=(python3.12 python3.13)
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/3.1[23].*/bin/python)
    fi
    candidates+=(python3)
    for c in "${candidates[@]}"; do
        # pyenv's shims exist for versions that are not selected: they fail, quietly here.
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            python=$c
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "error: rulegate 0.3.0 needs CPython >= 3.12: set PYTHON" >&2
    exit 1
fi

venv=${CARGO_TARGET_DIR:-target}/python-bench-venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "policy-as-code-engine==0.2.1" "rulegate==0.3.0" "cedarpy==4.12.2"
# The package as users install it: a release build.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
"$venv/bin/python" python/bench/w52.py "$@"
