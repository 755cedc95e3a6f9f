//! Hover, definition, references, outline, completion and formatting on small documents; `$0`
//! marks the cursor (after rust-analyzer's fixtures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use verdict_lsp::db::{Database, Lang, SourceInput};
use verdict_lsp::ide::{self, CompletionKind, OutlineKind};

const DOC: &str = r#"bundle demo {
  effects [deny, review, allow]
  schema { subject.role: string, subject.level: number, resource.tags: list<string> }
}

let is_admin = subject.role == "admin"

policy writes {
  default deny
  match first

  rule "admin-writes" allow {
    when is_admin and subject.level > 2
    reason "admins may write"
  }

  rule "tagged" review {
    when resource.tags contains "locked"
  }
}

policy reads {
  default none
  rule "admin-writes" allow {
    when is_admin
  }
}
"#;

/// The document with the cursor marker removed, and the cursor's offset.
fn cursor(marked: &str) -> (String, u32) {
    let at = marked.find("$0").expect("a $0 marker");
    (marked.replacen("$0", "", 1), u32::try_from(at).unwrap())
}

fn with_cursor(before: &str) -> (Database, SourceInput, u32, String) {
    let plain = before.replacen('|', "", 1);
    let marked = DOC.replacen(&plain, &before.replacen('|', "$0", 1), 1);
    assert_ne!(marked, DOC, "`{before}` is in the document");
    let (text, offset) = cursor(&marked);
    let db = Database::default();
    let file = SourceInput::new(&db, "demo.verdict".into(), text.clone(), Lang::Verdict);
    (db, file, offset, text)
}

fn texts(text: &str, spans: &[verdict_grammar::ast::Span]) -> Vec<String> {
    spans.iter().map(|s| text[s.range()].to_owned()).collect()
}

#[test]
fn hover_on_a_path_shows_its_type_and_uses() {
    let (db, file, offset, _) = with_cursor("subject.le|vel > 2");
    let (md, _) = ide::hover(&db, file, offset).expect("a hover");
    assert!(md.contains("`subject.level`"), "{md}");
    assert!(md.contains("type: `number` (from the schema)"), "{md}");
    assert!(md.contains("used 1 time"), "{md}");
    assert!(md.contains("`writes` / `admin-writes`"), "{md}");
    let (db, file, offset, _) = with_cursor("resource.ta|gs contains");
    let (md, _) = ide::hover(&db, file, offset).unwrap();
    assert!(md.contains("list<string>"), "{md}");
}

#[test]
fn hover_on_a_rule_shows_its_effect_and_place() {
    let (db, file, offset, _) = with_cursor("rule \"tag|ged\"");
    let (md, _) = ide::hover(&db, file, offset).unwrap();
    assert!(md.contains("**rule** `tagged` → effect `review`"), "{md}");
    assert!(md.contains("in policy `writes` (match `first`), rule 2 of 2"), "{md}");
}

#[test]
fn hover_on_a_let_shows_its_definition() {
    let (db, file, offset, _) = with_cursor("when is_ad|min and");
    let (md, span) = ide::hover(&db, file, offset).unwrap();
    assert!(md.contains("let is_admin = subject.role == \"admin\""), "{md}");
    assert!(md.contains("used 2 times"), "{md}");
    assert_eq!(span.end - span.start, "is_admin".len() as u32);
}

#[test]
fn hover_on_an_effect_and_a_policy() {
    let (db, file, offset, _) = with_cursor("\"tagged\" rev|iew");
    let (md, _) = ide::hover(&db, file, offset).unwrap();
    assert!(md.contains("**effect** `review`: 2 of 3"), "{md}");
    let (db, file, offset, _) = with_cursor("policy re|ads");
    let (md, _) = ide::hover(&db, file, offset).unwrap();
    assert!(md.contains("default: `none`"), "{md}");
}

#[test]
fn definition_of_a_let_use_an_effect_and_a_path() {
    let (db, file, offset, text) = with_cursor("when is_ad|min\n");
    let defs = ide::definition(&db, file, offset);
    assert_eq!(texts(&text, &defs), ["is_admin"]);
    assert!(defs[0].start < u32::try_from(text.find("policy").unwrap()).unwrap(), "the `let` line");
    let (db, file, offset, text) = with_cursor("\"tagged\" rev|iew");
    let defs = ide::definition(&db, file, offset);
    assert_eq!(texts(&text, &defs), ["review"]);
    assert!(defs[0].start < 60, "in the `effects` list");
    let (db, file, offset, text) = with_cursor("resource.ta|gs contains");
    assert_eq!(texts(&text, &ide::definition(&db, file, offset)), ["resource.tags"]);
}

#[test]
fn references_of_a_let_and_a_rule_id() {
    let (db, file, offset, text) = with_cursor("let is_ad|min");
    let refs = ide::references(&db, file, offset, true);
    assert_eq!(texts(&text, &refs), ["is_admin", "is_admin", "is_admin"]);
    assert_eq!(ide::references(&db, file, offset, false).len(), 2);
    let (db, file, offset, text) = with_cursor("rule \"admin-wr|ites\" allow {\n    when is_admin and");
    let refs = ide::references(&db, file, offset, true);
    assert_eq!(texts(&text, &refs), ["\"admin-writes\"", "\"admin-writes\""]);
}

#[test]
fn outline_is_bundle_then_policies_then_rules() {
    let db = Database::default();
    let file = SourceInput::new(&db, "demo.verdict".into(), DOC.into(), Lang::Verdict);
    let outline = ide::outline(&db, file);
    assert_eq!(outline.len(), 1);
    let bundle = &outline[0];
    assert_eq!((bundle.name.as_str(), bundle.kind), ("demo", OutlineKind::Bundle));
    let names: Vec<(&str, OutlineKind)> = bundle.children.iter().map(|c| (c.name.as_str(), c.kind)).collect();
    assert_eq!(
        names,
        [("is_admin", OutlineKind::Let), ("writes", OutlineKind::Policy), ("reads", OutlineKind::Policy)]
    );
    let rules: Vec<&str> = bundle.children[1].children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(rules, ["admin-writes", "tagged"]);
    for child in &bundle.children {
        assert!(bundle.span.start <= child.span.start && child.span.end <= bundle.span.end);
    }
}

#[test]
fn completion_of_paths_keywords_effects_and_lets() {
    let (db, file, offset, _) = with_cursor("when resource.tags contains \"locked\"\n|");
    let items = ide::completions(&db, file, offset);
    let has = |label: &str, kind: CompletionKind| items.iter().any(|c| c.label == label && c.kind == kind);
    assert!(has("when", CompletionKind::Keyword), "{items:?}");
    assert!(has("is_admin", CompletionKind::Let), "{items:?}");
    assert!(has("review", CompletionKind::Effect), "{items:?}");
    assert!(has("subject.level", CompletionKind::Path), "{items:?}");

    // After `subject.`: the known continuations, with their types.
    let db = Database::default();
    let (text, offset) = cursor(&DOC.replacen("when is_admin\n", "when subject.$0\n", 1));
    let file = SourceInput::new(&db, "demo.verdict".into(), text, Lang::Verdict);
    let items = ide::completions(&db, file, offset);
    let labels: Vec<(&str, Option<&str>)> = items.iter().map(|c| (c.label.as_str(), c.detail.as_deref())).collect();
    assert_eq!(labels, [("role", Some("string")), ("level", Some("number"))]);

    // At the top level: items.
    let (db, file, _, text) = with_cursor("bundle| demo");
    let top = ide::completions(&db, file, u32::try_from(text.len()).unwrap());
    let labels: Vec<&str> = top.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["bundle", "let", "policy"]);
}

#[test]
fn formatting_gives_the_canonical_text() {
    let db = Database::default();
    let messy = "bundle   demo{\n}\npolicy p { rule r allow { when   true } }\n";
    let file = SourceInput::new(&db, "m.verdict".into(), messy.into(), Lang::Verdict);
    let formatted = ide::format(&db, file).expect("a change");
    assert_eq!(formatted, verdict_compiler::format::format_verdict(messy).unwrap());
    // Already canonical, broken, or not `.verdict`: nothing to do.
    let canonical = SourceInput::new(&db, "c.verdict".into(), formatted, Lang::Verdict);
    assert_eq!(ide::format(&db, canonical), None);
    let broken = SourceInput::new(&db, "b.verdict".into(), "policy p {".into(), Lang::Verdict);
    assert_eq!(ide::format(&db, broken), None);
    let yaml = SourceInput::new(&db, "b.yaml".into(), "bundle_id: x\npolicies: []\n".into(), Lang::Yaml);
    assert_eq!(ide::format(&db, yaml), None);
}

#[test]
fn yaml_bundles_have_symbols_too() {
    let text = "bundle_id: b\neffects: [deny, allow]\ndefinitions:\n  admin: \"subject.role == 'admin'\"\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: allow\n        when: \"admin and action == 'read'\"\n      - id: s\n        effect: deny\n        when: {kind: eq, field: resource.owner, value: x}\n";
    let db = Database::default();
    let file = SourceInput::new(&db, "b.yaml".into(), text.into(), Lang::Yaml);
    let outline = ide::outline(&db, file);
    assert_eq!(outline[0].name, "b");
    let names: Vec<&str> = outline[0].children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["admin", "p"]);
    let at = u32::try_from(text.find("admin and").unwrap() + 2).unwrap();
    let defs = ide::definition(&db, file, at);
    assert_eq!(texts(text, &defs), ["admin"]);
    let at = u32::try_from(text.find("resource.owner").unwrap() + 3).unwrap();
    let (md, span) = ide::hover(&db, file, at).unwrap();
    assert!(md.contains("`resource.owner`"), "{md}");
    assert_eq!(&text[span.range()], "resource.owner");
}

#[test]
fn nothing_out_of_range_or_outside_bundles() {
    let db = Database::default();
    let file = SourceInput::new(&db, "demo.verdict".into(), DOC.into(), Lang::Verdict);
    for offset in [u32::MAX, u32::try_from(DOC.len()).unwrap() + 1] {
        assert!(ide::hover(&db, file, offset).is_none());
        assert!(ide::definition(&db, file, offset).is_empty());
        assert!(ide::references(&db, file, offset, true).is_empty());
        assert!(ide::completions(&db, file, offset).is_empty());
    }
    let other = SourceInput::new(&db, "notes.txt".into(), DOC.into(), Lang::Other);
    assert!(ide::hover(&db, other, 10).is_none());
    assert!(ide::outline(&db, other).is_empty());
    assert!(ide::completions(&db, other, 10).is_empty());
}
