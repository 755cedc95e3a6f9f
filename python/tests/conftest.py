"""Shared fixtures: the repository, the `verdict` CLI binary the package is compared with, and
the vendored corpora."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFORMANCE = ROOT / "tests" / "conformance"

# A fixed evaluation time: the CLI and the package decide at the same instant. The corpus's
# effective windows lie years away from it.
NOW = "2026-06-01T12:00:00Z"


def _find_cli() -> Path | None:
    given = os.environ.get("VERDICT_BIN")
    if given:
        return Path(given)
    targets = [os.environ.get("CARGO_TARGET_DIR"), str(ROOT / "target")]
    for target in filter(None, targets):
        for profile in ("debug", "release"):
            candidate = Path(target) / profile / "verdict"
            if candidate.is_file():
                return candidate
    found = shutil.which("verdict")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def verdict_bin() -> Path:
    """The real `verdict` binary (`scripts/test.sh` builds it and sets VERDICT_BIN). Missing, it
    fails the run under CI; elsewhere the comparisons are skipped with a reason."""
    path = _find_cli()
    if path is None or not path.is_file():
        message = "the `verdict` binary is missing: build it (`cargo build -p verdict-cli`) or set VERDICT_BIN"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def seed_compat() -> list[dict[str, Any]]:
    """The reference's seed-compat corpus: one bundle with its cases per line."""
    lines = (CONFORMANCE / "seed-compat.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def card_bundles() -> list[dict[str, Any]]:
    """The bundles the reference made of Decision Cards, with their cases."""
    lines = (CONFORMANCE / "decision-cards.jsonl").read_text().splitlines()
    bundles = [v for v in (json.loads(line) for line in lines if line.strip()) if "bundle" in v]
    # An emptied corpus must fail the tests that read it, not let them pass over nothing.
    assert bundles, f"no card bundles in {CONFORMANCE / 'decision-cards.jsonl'}"
    assert all(v.get("cases") for v in bundles), "a card bundle without cases"
    return bundles


def example_dirs() -> list[Path]:
    """Every example with expected decisions (`examples/*/cases.jsonl`); never empty, so that the
    tests over the examples cannot pass (or be parametrized) over nothing."""
    dirs = sorted(p for p in EXAMPLES.iterdir() if (p / "cases.jsonl").is_file())
    assert dirs, f"no example with cases.jsonl under {EXAMPLES}"
    return dirs


def example_bundles(example: Path) -> list[Path]:
    """The bundle files of an example (`bundle.verdict`, `bundle.yaml`, …), not its policy test
    suite (`bundle.test.yaml`, read by `verdict test`)."""
    return sorted(p for p in example.glob("bundle.*") if not p.name.endswith(".test.yaml"))


def read_cases(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RedisServer:
    """A throwaway `redis-server` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        import socket
        import subprocess
        import time

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Hang guard: Redis answers within milliseconds; give it 20 s on a loaded machine.
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server():  # type: ignore[no-untyped-def]
    """A real `redis-server` (Debian's `redis-server` package; `.ci/run` installs it). Missing, it
    fails the run under CI; elsewhere the Redis tests are skipped with a reason."""
    if shutil.which("redis-server") is None:
        message = "redis-server is missing (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer()
    yield server
    server.stop()


_prefixes = iter(range(1, 1_000_000))


def fresh_prefix() -> str:
    """A key prefix no other test uses, so tests share one server without sharing state."""
    return f"pytest:{os.getpid()}:{next(_prefixes)}:"
