"""The Engine API: loading every form, backends, evaluation arguments, results."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pytest
import verdict
from conftest import EXAMPLES, NOW

QUICKSTART = EXAMPLES / "quickstart"
ADMIN_UPDATE = {"subject": {"id": "u-1", "role": "admin"}, "action": "update", "resource": {"tags": []}}

W = """
bundle "w" {
  version "3"
  effects [block, require_review, allow]
}

policy main {
  default block

  rule ok allow {
    when subject.role == "admin"
    reason "admins pass"
    codes ["ADMIN"]
    obligations { audit: true, level: 2 }
  }

  rule review require_review {
    when subject.role == "intern"
  }
}
"""


def test_load_every_source_form_and_the_artifact(tmp_path: Path) -> None:
    want = None
    for name in ("bundle.verdict", "bundle.yaml"):
        engine = verdict.Engine.load(QUICKSTART / name)
        got = engine.evaluate(ADMIN_UPDATE, now=NOW).to_dict()
        want = want or got
        assert got == want
    # JSON: the YAML bundle as JSON text.
    engine = verdict.Engine.from_source(json.dumps(_yaml_as_json()), form="json")
    assert engine.evaluate(ADMIN_UPDATE, now=NOW).kind == "allow"
    # A .vdc is recognised by its header, whatever its name.
    artifact = tmp_path / "not-a-vdc-name.bin"
    artifact.write_bytes(verdict.compile(QUICKSTART / "bundle.verdict"))
    assert verdict.Engine.load(artifact).evaluate(ADMIN_UPDATE, now=NOW).to_dict() == want
    assert verdict.Engine.load(str(artifact), backend="vm").evaluate(ADMIN_UPDATE, now=NOW).to_dict() == want


def _yaml_as_json() -> dict:
    return {
        "bundle_id": "q",
        "policies": [{"id": "p", "default_effect": "deny", "rules": [{"id": "r", "effect": "allow", "when": "subject.role == 'admin'"}]}],
    }


def test_from_source_forms_and_detection() -> None:
    text = (QUICKSTART / "bundle.verdict").read_text()
    for form in ("verdict", None):
        assert verdict.Engine.from_source(text, form=form).evaluate(ADMIN_UPDATE).allowed
    yaml = (QUICKSTART / "bundle.yaml").read_text()
    for form in ("yaml", "yml", None):
        assert verdict.Engine.from_source(yaml, form).evaluate(ADMIN_UPDATE).allowed
    with pytest.raises(ValueError, match="form must be"):
        verdict.Engine.from_source(text, form="toml")


def test_backends() -> None:
    for backend in ("jit", "vm", "interp"):
        engine = verdict.Engine.from_source(W, backend=backend)
        assert engine.backend == backend
        assert engine.jit_fallback is None
        assert engine.evaluate({"subject": {"role": "admin"}}).kind == "allow"
    with pytest.raises(ValueError, match="backend must be"):
        verdict.Engine.from_source(W, backend="fast")
    artifact = verdict.compile(W, form="verdict")
    with pytest.raises(verdict.VerdictError, match="interpreter needs the bundle's source"):
        verdict.Engine.from_artifact(artifact, backend="interp")


def test_result_attributes() -> None:
    engine = verdict.Engine.from_source(W)
    assert (engine.bundle_id, engine.bundle_version, engine.effects) == ("w", "3", ("block", "require_review", "allow"))
    assert engine.fingerprint.startswith("sha256:")
    r = engine.evaluate({"subject": {"role": "admin"}})
    assert (r.kind, r.allowed, r.policy_id, r.rule_id, r.reason) == ("allow", True, "main", "ok", "admins pass")
    assert (r.codes, r.obligations) == (["ADMIN"], {"audit": True, "level": 2})
    assert (r.bundle_id, r.bundle_version, r.fingerprint) == ("w", "3", engine.fingerprint)
    assert r.trace is None
    [p] = r.policy_decisions
    assert (p.kind, p.allowed, p.policy_id, p.rule_id, p.reason, p.codes, p.obligations) == (
        "allow", True, "main", "ok", "admins pass", ["ADMIN"], {"audit": True, "level": 2}
    )
    assert p.to_dict() == r.to_dict()["policy_decisions"][0]
    assert list(r.to_dict()) == ["bundle_id", "bundle_version", "fingerprint", "decision", "policy_decisions"]
    assert "kind=\"allow\"" in repr(r) and "rule_id=\"ok\"" in repr(p)
    review = engine.evaluate({"subject": {"role": "intern"}})
    assert (review.kind, review.allowed, review.rule_id) == ("require_review", False, "review")
    default = engine.evaluate({})
    assert (default.kind, default.rule_id, default.reason) == ("block", None, "no rule matched; policy default_effect='block'")


def test_trace() -> None:
    engine = verdict.Engine.from_source(W)
    r = engine.evaluate({"subject": {"role": "intern"}}, trace=True)
    assert r.to_dict()["trace"] == r.trace
    [policy] = r.trace
    assert [rule["rule"] for rule in policy["rules"]] == ["ok", "review"]
    assert policy["rules"][0]["atoms"][0]["read"] == [{"path": "subject.role", "value": "intern"}]


def test_now() -> None:
    windowed = (
        'bundle b {\n  effective_from "2026-01-01T00:00:00Z"\n  effective_until "2027-01-01T00:00:00Z"\n}\n'
        'policy p {\n  default allow\n\n  rule never deny {\n    when action == "never"\n  }\n}\n'
    )
    engine = verdict.Engine.from_source(windowed)
    inside = [
        "2026-06-01T00:00:00Z",
        "2026-06-01T02:00:00+02:00",
        dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 6, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ]
    for now in inside:
        assert engine.evaluate({}, now=now).kind == "allow", now
    # The offset counts: 2026-12-31T23:30-01:00 is 2027-01-01T00:30Z, outside the window.
    late = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert engine.evaluate({}, now=late).kind == "deny"
    assert engine.evaluate({}, now="2025-12-31T23:59:59Z").kind == "deny"
    # Default: the current time.
    assert engine.evaluate({}).kind == ("allow" if dt.datetime.now(dt.timezone.utc).year == 2026 else "deny")


def test_the_clock_is_read_when_a_decision_depends_on_it() -> None:
    # A `now.*` term: without `now`, the current year decides (the clock is read).
    dated = 'bundle b {}\npolicy p {\n  default allow\n\n  rule old deny {\n    when now.year < 2000\n  }\n}\n'
    for backend in ("jit", "vm", "interp"):
        engine = verdict.Engine.from_source(dated, backend=backend)
        assert engine.evaluate({}).kind == "allow", backend
        assert engine.evaluate({}, now="1999-06-01T00:00:00Z").kind == "deny", backend
    # A bundle that does not depend on the time decides the same with or without it, and a
    # `now` given is still checked.
    engine = verdict.Engine.from_source(W)
    assert engine.evaluate(ADMIN_UPDATE).to_dict() == engine.evaluate(ADMIN_UPDATE, now=NOW).to_dict()
    with pytest.raises(verdict.RequestError):
        engine.evaluate(ADMIN_UPDATE, now=dt.datetime(2026, 1, 1))


def test_jit_fallback_is_reported_and_evaluation_goes_on() -> None:
    # Nothing here makes the JIT unavailable on this machine: the attribute says so.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = verdict.Engine.from_source(W)
    assert engine.backend == "jit" and engine.jit_fallback is None


def test_compile_errors_carry_the_diagnostics(tmp_path: Path) -> None:
    bad = 'bundle b { version "1" }\npolicy p {\n  rule r allow {\n    when subject.role == \n  }\n}\n'
    with pytest.raises(verdict.CompileError) as e:
        verdict.Engine.from_source(bad)
    assert "does not compile: V100 at line 5 column 3" in str(e.value)
    [d] = e.value.diagnostics
    assert (d["code"], d["severity"], d["line"], d["column"], d["file"]) == ("V100", "error", 5, 3, "<source>")
    path = tmp_path / "bad.verdict"
    path.write_text(bad)
    with pytest.raises(verdict.CompileError) as e:
        verdict.Engine.load(path)
    assert e.value.diagnostics[0]["file"] == str(path)
    with pytest.raises(verdict.CompileError):
        verdict.compile(path)
    assert isinstance(e.value, verdict.VerdictError)


def test_paths_and_texts(tmp_path: Path) -> None:
    source = tmp_path / "w.txt"
    source.write_text(W)
    # A one-line str naming a file is a path, whatever its extension, with or without a form.
    assert verdict.check(str(source), form="verdict") == verdict.check(W, form="verdict")
    assert verdict.compile(str(source), form="verdict") == verdict.compile(W, form="verdict")
    assert verdict.compile(source, form="verdict") == verdict.compile(W, form="verdict")
    # With a form, a one-line str naming no file is text.
    [d] = [d for d in verdict.check("missing.yaml", form="verdict") if d["severity"] == "error"][:1]
    assert d["file"] == "<source>"


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verdict.Engine.load(tmp_path / "missing.verdict")
    with pytest.raises(FileNotFoundError):
        verdict.check("missing.yaml")
    binary = tmp_path / "binary.verdict"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(verdict.VerdictError, match="not UTF-8"):
        verdict.Engine.load(binary)
    with pytest.raises(verdict.VerdictError):
        verdict.Engine.from_artifact(b"\x7fVERDICT garbage")
    tampered = bytearray(verdict.compile(W, form="verdict"))
    tampered[-40] ^= 1
    with pytest.raises(verdict.VerdictError):
        verdict.Engine.from_artifact(bytes(tampered))
    with pytest.raises(verdict.VerdictError, match="compiled artifact"):
        verdict.check(_artifact_file(tmp_path))
    with pytest.raises(TypeError):
        verdict.check(42)  # type: ignore[arg-type]


def _artifact_file(tmp_path: Path) -> Path:
    path = tmp_path / "a.vdc"
    path.write_bytes(verdict.compile(W, form="verdict"))
    return path


def test_engines_cannot_be_built_directly() -> None:
    with pytest.raises(TypeError):
        verdict.Engine()  # type: ignore[call-arg]


def test_version() -> None:
    assert verdict.__version__.count(".") == 2
