#!/usr/bin/env python3
"""Prints the latest `cargo bench -p verdict-bench --bench peers` estimates (criterion medians) as
the markdown tables BENCHMARKS.md keeps: ns per decision for every engine, and each engine's
ratio to Verdict's JIT. Usage: scripts/peers_table.py [CRITERION_DIR] (default target/criterion)."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows, loads = {}, {}
for est in sorted(root.glob("peers-*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    group = meta["group_id"].removeprefix("peers-")
    engine, _, request = meta["function_id"].partition("/")
    ns = json.loads(est.read_text())["median"]["point_estimate"]
    if not request:
        loads[(group, engine)] = ns
    else:
        rows.setdefault((group, request), {})[engine] = ns


def fmt(ns):
    if ns is None:
        return "—"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def ratio(a, b):
    if a is None or not b:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r < 1 else f"{r:,.1f}×"


def table(title, engines, base):
    print(f"**{title}** (ns per decision; ratio = engine ÷ `{base}`)\n")
    print("| workload | request | " + " | ".join(f"`{e}`" for e in engines) + " | " + " | ".join(f"{e} ÷ {base}" for e in engines if e != base) + " |")
    print("|---|---|" + "---:|" * (2 * len(engines) - 1))
    for (group, request), r in sorted(rows.items(), key=lambda kv: (kv[0][0] != "w52", kv[0])):
        b = r.get(base)
        cells = [fmt(r.get(e)) for e in engines]
        ratios = [ratio(r.get(e), b) for e in engines if e != base]
        print(f"| {group} | {request} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()


table("Prepared request", ["jit-prepared", "hand-prepared", "vm-prepared", "interp", "cedar-prepared",
                           "regorus-prepared", "rvm-prepared"], "jit-prepared")
table("From JSON bytes", ["jit-json", "hand-json", "vm-json", "cedar-json", "rvm-json"], "jit-json")
table("Full result, trace off and on", ["jit-full", "jit-trace"], "jit-full")
if loads:
    print("| workload | load + JIT (ms) | load + VM (ms) |")
    print("|---|---:|---:|")
    for group in sorted({g for g, _ in loads}):
        j, v = loads.get((group, "load-jit")), loads.get((group, "load-vm"))
        print(f"| {group} | {j / 1e6:.0f} | {v / 1e6:.0f} |" if j and v else f"| {group} | — | — |")
