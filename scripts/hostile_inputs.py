#!/usr/bin/env python3
"""Writes the hostile inputs of issue 10 (item 8) into a directory, for timing `verdict` on them
(BENCHMARKS.md, "Hostile inputs"). Usage: scripts/hostile_inputs.py DIR"""
import pathlib, sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/verdict-hostile")
out.mkdir(parents=True, exist_ok=True)

def write(name, text):
    (out / name).write_text(text)
    print(f"{len(text.encode()):>11,} bytes  {out / name}")

# Obligations nested 30,000 deep (objects) and 50,000 deep (lists).
rule = 'bundle b {{}}\npolicy p {{\n  rule r allow {{\n    when true\n    obligations {}\n  }}\n}}\n'
write("deep-objects.verdict", rule.format("{a:" * 30000 + "1" + "}" * 30000))
write("deep-lists.verdict", rule.format("{a: " + "[" * 50000 + "]" * 50000 + "}"))

# One mapping of 80,000 keys, in each form.
keys = range(80000)
write("keys80k.json", '{"bundle_id": "b", "policies": [{"id": "p", "rules": [{"id": "r", "effect": "allow", '
      '"when": {"kind": "always"}, "obligations": {' + ", ".join(f'"k{i}": {i}' for i in keys) + "}}]}]}\n")
write("keys80k.yaml", "bundle_id: b\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: allow\n"
      "        when: {kind: always}\n        obligations:\n" + "".join(f"          k{i}: {i}\n" for i in keys))
write("keys80k.verdict", rule.format("{" + ", ".join(f"k{i}: {i}" for i in keys) + "}"))

# A 60 KB string aliased 16^4 times (8.8 GB expanded).
bomb = 'bundle_id: b\nx0: &a0 "' + "x" * 60000 + '"\n'
for k in range(1, 5):
    bomb += f"x{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 16) + "]\n"
write("bomb62k.yaml", bomb + "policies: [{id: p, rules: [{id: r, effect: allow, when: {kind: always}}]}]\n")

# A 50 MB JSON bundle (over the 16 MiB limit) and a 15 MB one (under it).
policies = []
size = 0
while size < 50_000_000:
    i = len(policies)
    p = f'{{"id": "p{i}", "rules": [{{"id": "r", "effect": "allow", "when": {{"kind": "eq", "field": "action", "value": "a{i}"}}}}]}}'
    policies.append(p)
    size += len(p) + 2
write("big50.json", '{"bundle_id": "b", "policies": [' + ", ".join(policies) + "]}\n")
write("big15.json", '{"bundle_id": "b", "policies": [' + ", ".join(policies[: len(policies) * 3 // 10]) + "]}\n")

# A schema of 40,000 paths and a condition over each.
n = 40000
write("schema40k.verdict", "bundle b {\n  schema {" + ", ".join(f"x{i}: number" for i in range(n)) + "}\n}\n"
      "policy p {\n  rule r allow {\n    when " + " or ".join(f"x{i} > 1" for i in range(n)) + "\n  }\n}\n")

# `verdict_lsp::workload::many_rules(9000, 10)`: 11 MB for the language server.
head = ('bundle big {\n  effects [deny, review, allow]\n  schema { subject.role: string, subject.level: number, '
        'action: string }\n}\n\nlet is_admin = subject.role == "admin"\n\n')
parts = [head]
for p in range(9000):
    parts.append(f'policy "p{p}" {{\n  default deny\n')
    for r in range(10):
        parts.append(f'  rule "p{p}-r{r}" allow {{\n    when action == "act{r}" and subject.level >= {p} and not is_admin\n'
                     f'    reason "rule {r}"\n  }}\n')
    parts.append("}\n\n")
write("lsp11m.verdict", "".join(parts))
