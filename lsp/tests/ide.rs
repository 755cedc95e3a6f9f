//! Hover, definition, references, outline, completion and formatting on small documents; `$0`
//! marks the cursor (after rust-analyzer's fixtures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use verdict_compiler::diagnostic::Severity;
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
    assert_eq!(labels, ["bundle", "let", "state", "extern", "policy"]);
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

// ---- state, externs, functions, time fields and templates (LANGUAGE.md §5) ---------------------

const STATEFUL: &str = r#"bundle budget {
  timezone "Europe/Berlin"
  hold_ttl "5m"
  schema { amount: number, vendor: string, subject.id: string }
}

state spend {
  add amount
  key [subject.id]
  on [allow]
  apply commit
}

state denials {
  add 1
  on [deny]
}

extern no_pii(string) -> bool

extern risk(string, number) -> number

let over_day = spend.day + amount > 200

policy gate {
  default allow

  rule daily deny {
    when over_day
    reason f"Daily budget exhausted (${spend.day:.2f} / $200.00)"
  }

  rule burst deny {
    when spend.last("1h") > 100 and now.hour < 9
    reason f"Spent {spend.last(\"1h\"):.2f} in the last hour at {now.hour}"
  }

  rule vendor deny {
    when lower(vendor) contains "casino" or not no_pii(vendor) or risk(subject.id, amount) > 0.8
  }

  rule sizes deny {
    when len(vendor) > 40 or abs(amount) > 1000 or upper(vendor) == "X"
  }
}
"#;

/// A document with `|` in `before` replaced by the cursor: the database, the file, the offset and
/// the text without the marker.
fn open_at(doc: &str, name: &str, lang: Lang, before: &str) -> (Database, SourceInput, u32, String) {
    let plain = before.replacen('|', "", 1);
    let marked = doc.replacen(&plain, &before.replacen('|', "$0", 1), 1);
    assert_ne!(marked, doc, "`{before}` is in the document");
    let (text, offset) = cursor(&marked);
    let db = Database::default();
    let file = SourceInput::new(&db, name.into(), text.clone(), lang);
    (db, file, offset, text)
}

fn stateful(before: &str) -> (Database, SourceInput, u32, String) {
    open_at(STATEFUL, "budget.verdict", Lang::Verdict, before)
}

/// The hover at the cursor and the text it is about.
fn hover_at(at: (Database, SourceInput, u32, String)) -> (String, String) {
    let (db, file, offset, text) = at;
    let (md, span) = ide::hover(&db, file, offset).expect("a hover");
    (md, text[span.range()].to_owned())
}

fn definition_at(at: (Database, SourceInput, u32, String)) -> Vec<(String, usize)> {
    let (db, file, offset, text) = at;
    ide::definition(&db, file, offset).iter().map(|s| (text[s.range()].to_owned(), s.start as usize)).collect()
}

#[test]
fn the_stateful_document_has_no_errors() {
    let db = Database::default();
    let file = SourceInput::new(&db, "budget.verdict".into(), STATEFUL.into(), Lang::Verdict);
    let diags = verdict_lsp::db::file_diagnostics(&db, file);
    assert!(!verdict_lsp::db::has_errors(diags), "{diags:#?}");
}

#[test]
fn hover_on_a_state_read_says_the_window_and_shows_the_declaration() {
    let (md, at) = hover_at(stateful("let over_day = spend.d|ay"));
    assert_eq!(at, "spend.day");
    for part in [
        "```verdict\nspend.day\n```",
        "**state read**",
        "the calendar day containing now, in the bundle's timezone `Europe/Berlin`",
        "**state** `spend`",
        "- add: `amount`",
        "- key: `[subject.id]`",
        "- on: `[allow]`",
        "- apply: `commit`",
        "after `hold_ttl` `5m`",
        "read 4 times",
        "- `let over_day`",
        "- `gate` / `daily`",
        "- `gate` / `burst`",
    ] {
        assert!(md.contains(part), "`{part}` in {md}");
    }
    let (md, at) = hover_at(stateful("when spend.la|st(\"1h\") > 100"));
    assert_eq!(at, "spend.last(\"1h\")");
    assert!(
        md.contains("over the last 1 hour (a sliding window: the updates with time in (now − 3600 s, now]"),
        "{md}"
    );
    // A state that leaves members out: the defaults.
    let (md, at) = hover_at(stateful("state denia|ls"));
    assert_eq!(at, "denials");
    for part in
        ["- key: `[]` (the default): one series", "- on: `[deny]`", "- apply: `commit` (the default)", "read 0 times"]
    {
        assert!(md.contains(part), "`{part}` in {md}");
    }
}

#[test]
fn terms_inside_reason_templates_have_exact_spans() {
    let (md, at) = hover_at(stateful("(${spend.d|ay:.2f}"));
    assert_eq!(at, "spend.day");
    assert!(md.contains("**state read**"), "{md}");
    // Through the escapes of the literal: the span is the term as written.
    let (md, at) = hover_at(stateful("Spent {spend.la|st"));
    assert_eq!(at, r#"spend.last(\"1h\")"#);
    assert!(md.contains("the last 1 hour"), "{md}");
    let (md, at) = hover_at(stateful("at {now.ho|ur}"));
    assert_eq!(at, "now.hour");
    assert!(md.contains("**time field**"), "{md}");
    // Definition from inside a template: the `state` item.
    let defs = definition_at(stateful("(${spend.d|ay:.2f}"));
    assert_eq!(defs, [("spend".to_owned(), STATEFUL.find("state spend").unwrap() + "state ".len())]);
}

#[test]
fn definition_and_references_of_states_and_externs() {
    let state_at = STATEFUL.find("state spend").unwrap() + "state ".len();
    for before in ["let over_day = spend.d|ay", "when spe|nd.last", "state sp|end"] {
        assert_eq!(definition_at(stateful(before)), [("spend".to_owned(), state_at)], "{before}");
    }
    let extern_at = STATEFUL.find("extern no_pii").unwrap() + "extern ".len();
    assert_eq!(definition_at(stateful("not no_p|ii(vendor)")), [("no_pii".to_owned(), extern_at)]);
    // Built in: declared nowhere.
    assert_eq!(definition_at(stateful("when low|er(vendor)")), []);
    assert_eq!(definition_at(stateful("now.ho|ur < 9")), []);

    let (db, file, offset, text) = stateful("state sp|end");
    assert_eq!(texts(&text, &ide::references(&db, file, offset, true)), ["spend"; 5]);
    assert_eq!(ide::references(&db, file, offset, false).len(), 4);
    let (db, file, offset, text) = stateful("not no_p|ii(vendor)");
    assert_eq!(texts(&text, &ide::references(&db, file, offset, true)), ["no_pii", "no_pii"]);
    let (db, file, offset, text) = stateful("now.ho|ur < 9");
    assert_eq!(texts(&text, &ide::references(&db, file, offset, true)), ["now.hour", "now.hour"]);
}

#[test]
fn hover_on_externs_shows_the_signature() {
    let (md, at) = hover_at(stateful("not no_p|ii(vendor)"));
    assert_eq!(at, "no_pii");
    for part in
        ["```verdict\nextern no_pii(string) -> bool\n```", "**extern**", "the policy decides `deny`", "called 1 time"]
    {
        assert!(md.contains(part), "`{part}` in {md}");
    }
    let (md, at) = hover_at(stateful("extern ri|sk"));
    assert_eq!(at, "risk");
    assert!(md.contains("extern risk(string, number) -> number"), "{md}");
    assert!(md.contains("result that is not `number`"), "{md}");
}

#[test]
fn hover_on_functions_and_time_fields_comes_from_the_vocabulary() {
    for f in verdict_vocab::Func::ALL {
        let (md, at) = hover_at(stateful(&format!("{}|(", f.name())));
        assert_eq!(at, f.name());
        assert!(md.contains(f.info().signature) && md.contains(f.info().doc), "{md}");
        assert!(md.contains("**function** (built in)"), "{md}");
    }
    let (md, at) = hover_at(stateful("and now.ho|ur < 9"));
    assert_eq!(at, "now.hour");
    assert!(md.contains(verdict_vocab::NowField::Hour.info().doc), "{md}");
    assert!(md.contains("in the bundle's timezone `Europe/Berlin`"), "{md}");
}

#[test]
fn completion_of_windows_time_fields_states_externs_and_functions() {
    let complete = |doc: String| {
        let (text, offset) = cursor(&doc);
        let db = Database::default();
        let file = SourceInput::new(&db, "budget.verdict".into(), text, Lang::Verdict);
        ide::completions(&db, file, offset)
    };
    let items = complete(STATEFUL.replacen("when over_day\n", "when spend.$0\n", 1));
    let labels: Vec<&str> = items.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["hour", "day", "week", "month", "year", "total", "last(\"…\")"]);
    assert!(items.iter().all(|c| c.kind == CompletionKind::Window));
    assert_eq!(items.last().unwrap().insert.as_deref(), Some("last(\"1h\")"));
    // Typing on: the same list (the client filters).
    assert_eq!(complete(STATEFUL.replacen("when over_day\n", "when spend.da$0\n", 1)).len(), 7);

    let items = complete(STATEFUL.replacen("when over_day\n", "when now.$0\n", 1));
    let labels: Vec<&str> = items.iter().map(|c| c.label.as_str()).collect();
    let fields: Vec<&str> = verdict_vocab::NowField::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(labels, fields);

    // In a `when`: states, externs, functions (with their signatures) and `now`.
    let items = complete(STATEFUL.replacen("when over_day\n", "when $0\n", 1));
    let has = |label: &str, kind: CompletionKind, detail: Option<&str>| {
        items.iter().any(|c| c.label == label && c.kind == kind && (detail.is_none() || c.detail.as_deref() == detail))
    };
    assert!(has("spend", CompletionKind::State, None), "{items:?}");
    assert!(has("denials", CompletionKind::State, None), "{items:?}");
    assert!(has("no_pii", CompletionKind::Extern, Some("extern no_pii(string) -> bool")), "{items:?}");
    for f in verdict_vocab::Func::ALL {
        assert!(has(f.name(), CompletionKind::Function, Some(f.info().signature)), "{items:?}");
    }
    assert!(has("now", CompletionKind::Keyword, None), "{items:?}");
    assert!(has("over_day", CompletionKind::Let, None), "{items:?}");
    // In a `let` body too; in a `state` block its members.
    let items = complete(STATEFUL.replacen("spend.day + amount > 200", "$0", 1));
    assert!(items.iter().any(|c| c.label == "spend" && c.kind == CompletionKind::State), "{items:?}");
    let items = complete(STATEFUL.replacen("  add 1\n", "  add 1\n  $0\n", 1));
    for word in ["key", "apply", "commit", "decision"] {
        assert!(items.iter().any(|c| c.label == word && c.kind == CompletionKind::Keyword), "{items:?}");
    }
}

#[test]
fn outline_holds_states_and_externs() {
    let db = Database::default();
    let file = SourceInput::new(&db, "budget.verdict".into(), STATEFUL.into(), Lang::Verdict);
    let outline = ide::outline(&db, file);
    let names: Vec<(&str, OutlineKind)> = outline[0].children.iter().map(|c| (c.name.as_str(), c.kind)).collect();
    assert_eq!(
        names,
        [
            ("spend", OutlineKind::State),
            ("denials", OutlineKind::State),
            ("no_pii", OutlineKind::Extern),
            ("risk", OutlineKind::Extern),
            ("over_day", OutlineKind::Let),
            ("gate", OutlineKind::Policy)
        ]
    );
}

#[test]
fn mistakes_in_terms_are_diagnosed_and_explained_where_they_are() {
    let broken = STATEFUL
        .replacen(
            "when over_day\n",
            "when spend.days > 1 or no_pii(vendor, 1) or foo(vendor) > 1 or now.hours > 1\n",
            1,
        )
        .replacen("(${spend.day:.2f}", "(${spend.dya:.2f}", 1);
    let db = Database::default();
    let file = SourceInput::new(&db, "budget.verdict".into(), broken.clone(), Lang::Verdict);
    let diags = verdict_lsp::db::file_diagnostics(&db, file);
    let at: Vec<&str> =
        diags.iter().filter(|d| d.severity == Severity::Error).map(|d| &broken[d.span.range()]).collect();
    for term in ["spend.days", "no_pii(vendor, 1)", "foo(vendor)", "now.hours", "spend.dya"] {
        assert!(at.contains(&term), "an error at `{term}`: {at:?}");
    }
    let hover = |before: &str| hover_at(open_at(&broken, "budget.verdict", Lang::Verdict, before)).0;
    assert!(hover("when spend.da|ys").contains("`spend.days` is not a state read: the windows of `spend` are"));
    assert!(hover("(${spend.d|ya").contains("`spend.dya` is not a state read"));
    assert!(hover("or no_p|ii(vendor, 1)").contains("**this call has 2 arguments**: `no_pii` takes 1"));
    assert!(hover("or fo|o(vendor)").contains("`foo` is neither a function nor a declared extern"));
    assert!(hover("or now.hou|rs").contains("`now.hours` is not a time field"));
}

const STATEFUL_YAML: &str = r#"bundle_id: budget
timezone: UTC
schema: {amount: number, vendor: string, subject.id: string}
state:
  spend:
    add: amount
    key: [subject.id]
    on: [allow]
    apply: commit
  denials: {add: 1, key: [subject.id], on: [deny], apply: decision}
externs:
  no_pii: {params: [string], returns: bool}
policies:
  - id: gate
    default_effect: allow
    rules:
      - id: daily
        effect: deny
        when: "spend.day + amount > 200 and not no_pii(vendor)"
        reason_template: "Daily budget exhausted (${spend.day:.2f} / $200.00)"
      - id: burst
        effect: deny
        when: "denials.last(\"1h\") > 3 and lower(vendor) == 'x'"
        reason_template: 'Denied {denials.last("1h")} times, it''s {now.hour}h'
"#;

fn yaml(before: &str) -> (Database, SourceInput, u32, String) {
    open_at(STATEFUL_YAML, "budget.yaml", Lang::Yaml, before)
}

#[test]
fn yaml_states_externs_and_templates() {
    let db = Database::default();
    let file = SourceInput::new(&db, "budget.yaml".into(), STATEFUL_YAML.into(), Lang::Yaml);
    let diags = verdict_lsp::db::file_diagnostics(&db, file);
    assert!(!verdict_lsp::db::has_errors(diags), "{diags:#?}");

    let (md, at) = hover_at(yaml("when: \"spend.d|ay"));
    assert_eq!(at, "spend.day");
    for part in [
        "the calendar day containing now, in the bundle's timezone `UTC`",
        "- add: `amount`",
        "- key: `[subject.id]`",
        "read 2 times",
    ] {
        assert!(md.contains(part), "`{part}` in {md}");
    }
    // Through the escapes of a double-quoted and a single-quoted scalar.
    let (md, at) = hover_at(yaml("when: \"denials.la|st"));
    assert_eq!(at, r#"denials.last(\"1h\")"#);
    assert!(md.contains("- apply: `decision`: recorded at once"), "{md}");
    let (_, at) = hover_at(yaml("'Denied {denials.la|st"));
    assert_eq!(at, r#"denials.last("1h")"#);
    let (md, at) = hover_at(yaml("it''s {now.ho|ur}"));
    assert_eq!(at, "now.hour");
    assert!(md.contains("**time field**"), "{md}");
    let (md, at) = hover_at(yaml("(${spend.d|ay:.2f}"));
    assert_eq!(at, "spend.day");
    assert!(md.contains("**state read**"), "{md}");

    let (md, at) = hover_at(yaml("not no_p|ii(vendor)"));
    assert_eq!(at, "no_pii");
    assert!(md.contains("extern no_pii(string) -> bool"), "{md}");
    let (md, _) = hover_at(yaml("lowe|r(vendor)"));
    assert!(md.contains(verdict_vocab::Func::Lower.info().doc), "{md}");

    let spend_at = STATEFUL_YAML.find("  spend:").unwrap() + 2;
    assert_eq!(definition_at(yaml("(${spend.d|ay:.2f}")), [("spend".to_owned(), spend_at)]);
    let pii_at = STATEFUL_YAML.find("  no_pii:").unwrap() + 2;
    assert_eq!(definition_at(yaml("not no_p|ii(vendor)")), [("no_pii".to_owned(), pii_at)]);
    let (db, file, offset, text) = yaml("  denia|ls: {");
    assert_eq!(texts(&text, &ide::references(&db, file, offset, true)), ["denials"; 3]);

    // Completion inside an expression string.
    let (text, offset) = cursor(&STATEFUL_YAML.replacen("when: \"spend.day + ", "when: \"spend.$0 + ", 1));
    let db = Database::default();
    let file = SourceInput::new(&db, "budget.yaml".into(), text, Lang::Yaml);
    let labels: Vec<String> = ide::completions(&db, file, offset).into_iter().map(|c| c.label).collect();
    assert_eq!(labels, ["hour", "day", "week", "month", "year", "total", "last(\"…\")"]);
    let (text, offset) = cursor(&STATEFUL_YAML.replacen("when: \"spend.day + ", "when: \"$0spend.day + ", 1));
    let file = SourceInput::new(&db, "budget2.yaml".into(), text, Lang::Yaml);
    let items = ide::completions(&db, file, offset);
    for (label, kind) in
        [("spend", CompletionKind::State), ("no_pii", CompletionKind::Extern), ("len", CompletionKind::Function)]
    {
        assert!(items.iter().any(|c| c.label == label && c.kind == kind), "{label}: {items:?}");
    }
}

#[test]
fn json_expression_strings_are_placed_through_their_escapes() {
    let text = r#"{"bundle_id": "b", "state": {"n": {"add": 1, "apply": "decision"}},
 "policies": [{"id": "p", "rules": [{"id": "r", "effect": "deny", "when": "n.last(\"1h\") > 3 and lower(x) == \"\u00e9\" and n.total > 1"}]}]}"#;
    let (md, at) = hover_at(open_at(text, "b.json", Lang::Json, "and n.to|tal"));
    assert_eq!(at, "n.total");
    assert!(md.contains("over all time"), "{md}");
    let (_, at) = hover_at(open_at(text, "b.json", Lang::Json, "\"when\": \"n.la|st"));
    assert_eq!(at, r#"n.last(\"1h\")"#);
}
