//! A policy without rules decides its default (issue 10, item 9): a bundle-level default, in
//! every source form, without findings from the analysis (the backends are run on it by
//! `cli/tests/cli.rs`). Before, it was refused (V108), and the catch-all rule written instead drew V009 and
//! V003, whose help led back to the refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as, emit};

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
        // Every backend decides the default: `cli/tests/cli.rs` runs `verdict eval` on each.
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
