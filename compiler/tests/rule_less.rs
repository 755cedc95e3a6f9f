//! A policy without rules decides its default (issue 10, item 9): a bundle-level default, in
//! every source form, on the interpreter, the VM and the JIT, and without findings from the
//! analysis. Before, it was refused (V108), and the catch-all rule written instead drew V009 and
//! V003, whose help led back to the refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as, emit};
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine};

const DSL: &str = r#"bundle b {}

policy baseline {
  default deny
}

policy reads {
  default none

  rule read allow {
    when action == "read"
  }
}
"#;

const YAML: &str = "bundle_id: b\npolicies:\n  - id: baseline\n    default_effect: deny\n    rules: []\n  - id: reads\n    default_effect: none\n    rules:\n      - {id: read, effect: allow, when: {kind: eq, field: action, value: read}}\n";

#[test]
fn a_policy_without_rules_decides_its_default() {
    let json = serde_json::to_string(&yaml_as_json(YAML)).unwrap();
    for (name, kind, text) in [
        ("b.verdict", SourceKind::Verdict, DSL.to_owned()),
        ("b.yaml", SourceKind::Yaml, YAML.to_owned()),
        ("b.json", SourceKind::Json, json),
    ] {
        let file = SourceFile::new(name, text);
        let compiled = compile_as(&file, kind);
        let bundle = compiled.bundle.unwrap_or_else(|| panic!("{name}: {:?}", compiled.diagnostics));
        assert!(compiled.diagnostics.is_empty(), "{name}: {:?}", compiled.diagnostics);
        assert_eq!(bundle.policies[0].rules.len(), 0);
        // The analysis is fine with it: no dead default, no redundancy, no gap.
        let findings = verdict_compiler::analysis::analyze(&bundle);
        assert!(findings.is_empty(), "{name}: {findings:?}");
        // Every backend decides the default; the trace shows the policy with no rules.
        let interp = Interpreter::new(&bundle).unwrap();
        let program = verdict_compiler::codegen::program(&bundle);
        let vm = Engine::with_backend(program.clone(), Backend::Vm).unwrap();
        let jit = Engine::with_backend(program, Backend::Jit).unwrap();
        let now = jiff::Timestamp::now();
        for (ctx, kind, policy) in
            [(r#"{"action": "read"}"#, "deny", "baseline"), (r#"{"action": "write"}"#, "deny", "baseline")]
        {
            let req = Request::from_json(ctx.as_bytes()).unwrap();
            for trace in [false, true] {
                let want = interp.evaluate(&req, now, trace).to_json();
                assert_eq!(want["decision"]["kind"], kind, "{name}: {want}");
                assert_eq!(want["decision"]["matched_policy_id"], policy, "{name}: {want}");
                assert_eq!(want["decision"]["matched_rule_id"], serde_json::Value::Null, "{name}: {want}");
                assert_eq!(vm.evaluate(&req, now, trace).to_json(), want, "{name}: the VM");
                assert_eq!(jit.evaluate(&req, now, trace).to_json(), want, "{name}: the JIT");
            }
        }
        // It converts to the DSL (the default `deny` is left out) and back to the same bundle.
        let dsl = emit::to_dsl(&bundle);
        assert!(dsl.contains("policy baseline {\n}\n"), "{dsl}");
        let again = compile_as(&SourceFile::new("again.verdict", dsl), SourceKind::Verdict);
        assert_eq!(again.bundle.map(|b| emit::fingerprint(&b)), Some(emit::fingerprint(&bundle)), "{name}");
    }
}

/// The YAML bundle as JSON, through the compiler's own emitter.
fn yaml_as_json(yaml: &str) -> serde_json::Value {
    let compiled = compile_as(&SourceFile::new("b.yaml", yaml), SourceKind::Yaml);
    emit::to_json(&compiled.bundle.unwrap())
}
