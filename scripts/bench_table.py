#!/usr/bin/env python3
"""Prints criterion's latest estimates as a markdown table with ratios to the VM on a prepared
request. Run after `cargo bench -p verdict-bench --bench decide`."""
import json, pathlib, sys

# Criterion groups of other benchmarks that share the output directory: `stateful`
# (bench/benches/stateful.rs, reported in its own table of BENCHMARKS.md) is not a decide workload.
EXCLUDED_GROUPS = {"stateful"}
engines = ["vm-prepared", "vm-request", "vm-json", "vm-json-full", "vm-trace", "interp"]

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for est in sorted(root.glob("*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    group = meta["group_id"]
    engine, _, request = meta["function_id"].partition("/")
    # Only the decide benchmark's functions (`<engine>/<request>`) make rows of this table.
    if group in EXCLUDED_GROUPS or engine not in engines:
        continue
    ns = json.loads(est.read_text())["median"]["point_estimate"]
    rows.setdefault((group, request), {})[engine] = ns
print("| workload | request | " + " | ".join(f"{e} (ns)" for e in engines) + " | interp / vm-prepared | trace / untraced |")
print("|---|---|" + "---|" * (len(engines) + 2))
for (group, request), r in sorted(rows.items()):
    cells = [f"{r[e]:.0f}" if e in r else "" for e in engines]
    ratio = f"{r['interp'] / r['vm-prepared']:.1f}×" if "interp" in r and "vm-prepared" in r else ""
    trace = f"{r['vm-trace'] / r['vm-request']:.1f}×" if "vm-trace" in r and "vm-request" in r else ""
    print(f"| {group} | {request} | " + " | ".join(cells) + f" | {ratio} | {trace} |")
