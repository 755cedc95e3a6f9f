"""The package against the real `verdict` binary: every example bundle and every vendored
conformance case gives the same `to_dict()` through the package (JIT, VM and interpreter, from a
dict and from JSON text, traced and not) as `verdict eval` prints; `check` and `compile` give what
`verdict check --format json` and `verdict compile` give."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import verdict
from conftest import NOW, card_bundles, example_bundles, example_dirs, read_cases, seed_compat

FIELDS = ("kind", "matched_policy_id", "matched_rule_id", "reason")


def cli_eval(
    bin: Path, bundle: Path, contexts: list[Any], tmp: Path, *, backend: str, trace: bool, exhaustive: bool = False
) -> list[Any]:
    """`verdict eval BUNDLE --contexts FILE.jsonl`: one JSON value per context."""
    lines = tmp / "contexts.jsonl"
    lines.write_text("".join(json.dumps(c) + "\n" for c in contexts))
    cmd = [str(bin), "eval", str(bundle), "--contexts", str(lines), "--backend", backend, "--now", NOW]
    if trace:
        cmd.append("--trace")
    if exhaustive:
        cmd.append("--exhaustive")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode in (0, 2), run.stderr
    out = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(out) == len(contexts), run.stderr
    return out


def dumped(value: Any) -> str:
    """JSON text with the key order kept: "identical" includes the order of the fields."""
    return json.dumps(value, ensure_ascii=False)


def engines(bundle: Path) -> dict[str, verdict.Engine]:
    artifact = verdict.compile(bundle)
    return {
        "jit": verdict.Engine.load(bundle),
        "vm": verdict.Engine.load(bundle, backend="vm"),
        "interp": verdict.Engine.load(bundle, backend="interp"),
        "vdc-jit": verdict.Engine.from_artifact(artifact),
        "vdc-vm": verdict.Engine.from_artifact(artifact, backend="vm"),
    }


def compare_bundle(bin: Path, bundle: Path, contexts: list[Any], tmp: Path) -> list[str]:
    """Every engine on every context, untraced and traced, against the CLI; the differences."""
    failures: list[str] = []
    plain = cli_eval(bin, bundle, contexts, tmp, backend="jit", trace=False)
    traced = cli_eval(bin, bundle, contexts, tmp, backend="vm", trace=True)
    for name, engine in engines(bundle).items():
        for i, ctx in enumerate(contexts):
            for trace, want in ((False, plain[i]), (True, traced[i])):
                if "error" in want:
                    message = want["error"].split(": ", 1)[1]
                    for given in (ctx, json.dumps(ctx)):
                        try:
                            engine.evaluate(given, now=NOW, trace=trace)
                            failures.append(f"{bundle.name} case {i} {name}: accepted what the CLI refuses ({message})")
                        except verdict.RequestError as e:
                            if isinstance(given, str) and str(e) != message:
                                failures.append(f"{bundle.name} case {i} {name}: refused with {e!r}, the CLI {message!r}")
                    continue
                for form, given in (("dict", ctx), ("json", json.dumps(ctx))):
                    got = engine.evaluate(given, now=NOW, trace=trace).to_dict()
                    if dumped(got) != dumped(want):
                        failures.append(
                            f"{bundle.name} case {i} {name} {form} trace={trace}:\n got {dumped(got)}\nwant {dumped(want)}"
                        )
    return failures


def compare_reference(result: dict[str, Any], expect: dict[str, Any]) -> str | None:
    """The reference's fields of a decision (as `tests/src/lib.rs::compare` checks them)."""
    for f in FIELDS:
        if f in expect.get("decision", {}) and result["decision"][f] != expect["decision"][f]:
            return f"decision.{f}: got {result['decision'][f]!r} want {expect['decision'][f]!r}"
    want = expect.get("policy_decisions")
    if want is not None:
        got = result["policy_decisions"]
        if len(got) != len(want):
            return f"policy_decisions: got {len(got)} want {len(want)}"
        for i, (x, y) in enumerate(zip(got, want)):
            for f in FIELDS:
                if f in y and x[f] != y[f]:
                    return f"policy_decisions[{i}].{f}: got {x[f]!r} want {y[f]!r}"
    return None


@pytest.mark.parametrize("example", example_dirs(), ids=lambda p: p.name)
def test_examples_match_the_cli(verdict_bin: Path, example: Path, tmp_path: Path) -> None:
    cases = read_cases(example / "cases.jsonl")
    assert cases, example
    contexts = [c["context"] for c in cases]
    bundles = example_bundles(example)
    assert bundles, example
    failures: list[str] = []
    for bundle in bundles:
        failures += compare_bundle(verdict_bin, bundle, contexts, tmp_path)
        engine = verdict.Engine.load(bundle)
        for i, case in enumerate(cases):
            problem = compare_reference(engine.evaluate(case["context"], now=NOW).to_dict(), case["expect"])
            if problem:
                failures.append(f"{bundle} case {i}: {problem}")
        # Exhaustive results (every matching rule, how many conditions were evaluated).
        want = cli_eval(verdict_bin, bundle, contexts, tmp_path, backend="jit", trace=False, exhaustive=True)
        for name, e in engines(bundle).items():
            for i, (ctx, w) in enumerate(zip(contexts, want)):
                if "error" in w:
                    continue
                got = e.evaluate(ctx, now=NOW, exhaustive=True)
                if dumped(got.to_dict()) != dumped(w):
                    failures.append(f"{bundle.name} case {i} {name} exhaustive:\n got {dumped(got.to_dict())}\nwant {dumped(w)}")
                if (got.matches, got.rules_evaluated) != (w["matches"], w["rules_evaluated"]):
                    failures.append(f"{bundle.name} case {i} {name}: matches/rules_evaluated attributes differ")
    assert not failures, "\n".join(failures[:10])


def test_seed_compat_matches_the_cli(verdict_bin: Path, tmp_path: Path) -> None:
    corpus = seed_compat()
    failures: list[str] = []
    total = 0
    for n, line in enumerate(corpus, 1):
        bundle = tmp_path / f"b{n}.json"
        bundle.write_text(json.dumps(line["bundle"]))
        contexts = [c["context"] for c in line["cases"]]
        total += len(contexts)
        failures += compare_bundle(verdict_bin, bundle, contexts, tmp_path)
        engine = verdict.Engine.load(bundle)
        for i, case in enumerate(line["cases"]):
            problem = compare_reference(engine.evaluate(case["context"], now=NOW).to_dict(), case["expect"])
            if problem:
                failures.append(f"line {n} case {i}: {problem}")
    assert total > 2900
    assert not failures, f"{len(failures)} differences:\n" + "\n".join(failures[:10])


def test_decision_card_bundles_match_the_cli(verdict_bin: Path, tmp_path: Path) -> None:
    failures: list[str] = []
    compared = 0
    for n, line in enumerate(card_bundles(), 1):
        bundle = tmp_path / f"card{n}.json"
        bundle.write_text(json.dumps(line["bundle"]))
        contexts = [c["context"] for c in line["cases"]]
        failures += compare_bundle(verdict_bin, bundle, contexts, tmp_path)
        compared += len(contexts)
    assert compared > 0, "no card bundle case compared"
    assert not failures, "\n".join(failures[:10])


def cli_check(bin: Path, path: Path) -> list[dict[str, Any]]:
    run = subprocess.run([str(bin), "check", "--format", "json", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode in (0, 1), run.stderr
    return json.loads(run.stdout)


MALFORMED = {
    "syntax.verdict": 'policy p {\n  rule r allow {\n    when subject.role == \n  }\n}\n',
    "unknown-key.yaml": "bundle_id: b\npolicies:\n  - id: p\n    rulez: []\n",
    "bad-effect.json": '{"bundle_id": "b", "policies": [{"id": "p", "rules": [{"id": "r", "effect": "maybe"}]}]}',
}


def test_check_matches_the_cli(verdict_bin: Path, tmp_path: Path) -> None:
    paths = [b for d in example_dirs() for b in example_bundles(d)]
    assert paths, "no example bundle"
    for name, text in MALFORMED.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    for path in paths:
        want = cli_check(verdict_bin, path)
        assert verdict.check(path) == want, path
        assert verdict.check(str(path)) == want, path
    # Text: the same diagnostics under the name `<source>`.
    text = MALFORMED["syntax.verdict"]
    want = [dict(d, file="<source>") for d in cli_check(verdict_bin, tmp_path / "syntax.verdict")]
    assert verdict.check(text, form="verdict") == want
    assert verdict.check(text) == want


def test_compile_matches_the_cli(verdict_bin: Path, tmp_path: Path) -> None:
    bundles = [b for d in example_dirs() for b in example_bundles(d)]
    assert bundles, "no example bundle to compile"
    for bundle in bundles:
        assert bundle.is_file(), bundle
        out = tmp_path / "out.vdc"
        out.unlink(missing_ok=True)
        subprocess.run([str(verdict_bin), "compile", str(bundle), "-o", str(out)], check=True, timeout=120)
        artifact = out.read_bytes()
        assert artifact, bundle
        assert verdict.compile(bundle) == artifact, bundle
        assert verdict.compile(bundle.read_text(), form=bundle.suffix.lstrip(".")) == artifact, bundle
