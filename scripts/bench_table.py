#!/usr/bin/env python3
"""Prints criterion's latest estimates as a markdown table with ratios to the VM on a prepared
request. Run after `cargo bench -p verdict-bench --bench decide`."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for est in sorted(root.glob("*/*/new/estimates.json")):
    meta = json.loads((est.parent / "benchmark.json").read_text())
    group = meta["group_id"]
    engine, _, request = meta["function_id"].partition("/")
    ns = json.loads(est.read_text())["median"]["point_estimate"]
    rows.setdefault((group, request), {})[engine] = ns
engines = ["vm-prepared", "vm-request", "vm-json", "vm-json-full", "vm-trace", "interp"]
print("| workload | request | " + " | ".join(f"{e} (ns)" for e in engines) + " | interp / vm-prepared | trace / untraced |")
print("|---|---|" + "---|" * (len(engines) + 2))
for (group, request), r in sorted(rows.items()):
    cells = [f"{r[e]:.0f}" if e in r else "" for e in engines]
    ratio = f"{r['interp'] / r['vm-prepared']:.1f}×" if "interp" in r and "vm-prepared" in r else ""
    trace = f"{r['vm-trace'] / r['vm-request']:.1f}×" if "vm-trace" in r and "vm-request" in r else ""
    print(f"| {group} | {request} | " + " | ".join(cells) + f" | {ratio} | {trace} |")
