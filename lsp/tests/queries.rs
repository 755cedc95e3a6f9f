//! The salsa queries: the per-item diagnostics equal the whole-file compile's, edits re-check only
//! the policy they touch, and spans follow the text when items move.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use salsa::Setter;
use verdict_compiler::analysis::analyze;
use verdict_compiler::diagnostic::{Code, Diagnostic};
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};
use verdict_lsp::db::{Database, Lang, SourceInput, file_diagnostics};

fn open(db: &Database, name: &str, text: &str) -> SourceInput {
    SourceInput::new(db, name.to_owned(), text.to_owned(), Lang::detect("", name))
}

fn key(d: &Diagnostic) -> (u32, u32, &'static str, String) {
    (d.span.start, d.span.end, d.code.as_str(), d.message.clone())
}

fn sorted(mut v: Vec<Diagnostic>) -> Vec<Diagnostic> {
    v.sort_by(|a, b| key(a).cmp(&key(b)));
    v
}

/// The language server's diagnostics of `text` are exactly `verdict check`'s (the whole-file
/// compile and the rule analysis), labels, help and rule attribution included. With syntax errors, only those are
/// compared: the server then reports the other findings of items that parsed, which the CLI
/// suppresses.
fn check_equivalent(name: &str, text: &str) {
    let db = Database::default();
    let file = SourceInput::new(&db, name.to_owned(), text.to_owned(), Lang::Verdict);
    let ours = sorted(file_diagnostics(&db, file).clone());
    let compiled = compile_as(&SourceFile::new(name, text), SourceKind::Verdict);
    let mut theirs = compiled.diagnostics;
    if theirs.iter().any(|d| d.code == Code::Syntax) {
        let syntax = |v: &[Diagnostic]| v.iter().filter(|d| d.code == Code::Syntax).cloned().collect::<Vec<_>>();
        assert_eq!(syntax(&ours), syntax(&theirs), "syntax errors of {name}:\n{text}");
        return;
    }
    match &compiled.bundle {
        // `verdict check` analyses a bundle that compiles; the server also analyses the
        // policies that compile in a file with errors elsewhere, which the CLI cannot.
        None => {
            let ours: Vec<Diagnostic> = ours.into_iter().filter(|d| !is_analysis(d.code)).collect();
            assert_eq!(ours, sorted(theirs), "diagnostics of {name}:\n{text}");
        }
        Some(bundle) => {
            theirs.extend(analyze(bundle));
            let ours: Vec<Diagnostic> = ours.into_iter().map(claim).collect();
            let theirs: Vec<Diagnostic> = sorted(theirs).into_iter().map(claim).collect();
            assert_eq!(ours, theirs, "diagnostics of {name}:\n{text}");
        }
    }
}

/// A finding as what it claims. The server analyses each policy on its own, the CLI the whole
/// bundle: the claims are the same, but which of several covering rules a V001 or V003 names
/// (its labels and help), and which request a witness shows, may differ.
fn claim(mut d: Diagnostic) -> Diagnostic {
    if is_analysis(d.code) {
        d.labels.clear();
        d.help = None;
        d.witness = d.witness.map(|_| serde_json::Value::Null);
    }
    d
}

fn is_analysis(code: Code) -> bool {
    matches!(code.as_str(), "V001" | "V002" | "V003" | "V004" | "V005" | "V009" | "V010" | "V110")
}

fn corpus() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Each fixture directory with the fewest `.verdict` files it must hold (it holds more): an
    // emptied or moved directory fails the test instead of shrinking what it checks.
    for (dir, at_least) in [("examples", 8), ("cli/tests/malformed", 12)] {
        let mut paths: Vec<_> = walk(&root.join(dir));
        paths.sort();
        let before = out.len();
        for p in paths {
            if p.extension().is_some_and(|e| e == "verdict") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
        let found = out.len() - before;
        assert!(found >= at_least, "{found} `.verdict` files under {dir}, expected at least {at_least}");
    }
    // The conformance bundles, printed as `.verdict`.
    let before = out.len();
    for (i, line) in include_str!("../../tests/conformance/seed-compat.jsonl").lines().enumerate().step_by(7) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let json = v["bundle"].to_string();
        if let Some(b) = compile_as(&SourceFile::new("b.json", json), SourceKind::Json).bundle {
            out.push((format!("seed-compat line {}", i + 1), verdict_compiler::emit::to_dsl(&b)));
        }
    }
    let found = out.len() - before;
    assert!(found >= 50, "{found} seed-compat bundles printed, expected at least 50");
    out
}

/// Every file under `dir`; an unreadable directory fails the test (it is not an empty one).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

/// Edits that make every kind of front-end finding, applied one at a time.
fn mutations(text: &str) -> Vec<String> {
    let mut out = vec![text.to_owned()];
    for (from, to) in [
        ("allow", "alow"),
        ("deny", "dney"),
        ("subject.role", "subjct.role"),
        (" == ", " > "),
        ("when ", "when not nonexistent_let and "),
        ("default ", "default nope_"),
        ("match first", "match sometimes"),
        ("version ", "versoin "),
        ("codes [", "codes [1, "),
        ("schema {", "schema { resource.tags: list<string>, subject.level: number, "),
        ("rule ", "rule same allow { when true }\n  rule same deny { when false }\n  rule "),
        ("obligations {", "obligations { a: 1, a: 2, "),
        ("reason ", "reason \"x\" reason "),
    ] {
        if text.contains(from) {
            out.push(text.replacen(from, to, 1));
        }
    }
    out.push(format!("let cyc_a = cyc_b\nlet cyc_b = cyc_a\n{text}"));
    out.push(format!("{text}\nbundle second {{}}\n"));
    out.push(format!("{text}\npolicy \"p-extra\" {{ default nope\n rule r allow {{ when true }} }}\n"));
    let parsed = verdict_grammar::parse_file(text);
    // Without the bundle declaration; without any policy; with the first policy twice.
    let mut no_bundle = text.to_owned();
    let mut no_policy = text.to_owned();
    let mut twice = text.to_owned();
    for item in parsed.tree.items.iter().rev() {
        match item {
            verdict_grammar::ast::Item::Bundle(b) => no_bundle.replace_range(b.span.range(), ""),
            verdict_grammar::ast::Item::Policy(p) => no_policy.replace_range(p.span.range(), ""),
            _ => {}
        }
    }
    if let Some(verdict_grammar::ast::Item::Policy(p)) =
        parsed.tree.items.iter().find(|i| matches!(i, verdict_grammar::ast::Item::Policy(_)))
    {
        twice.push('\n');
        twice.push_str(&text[p.span.range()]);
    }
    out.extend([no_bundle, no_policy, twice]);
    out
}

#[test]
fn per_item_diagnostics_equal_the_whole_file_compile() {
    let mut n = 0;
    for (name, text) in corpus() {
        for (i, m) in mutations(&text).iter().enumerate() {
            check_equivalent(&format!("{name} (mutation {i})"), m);
            n += 1;
        }
    }
    assert!(n > 300, "{n} texts checked");
}

fn count(executed: &[String], query: &str) -> usize {
    executed.iter().filter(|q| q.as_str() == query).count()
}

#[test]
fn an_edit_in_one_rule_rechecks_only_its_policy() {
    let mut db = Database::default();
    let text = verdict_lsp::workload::many_rules(200, 10);
    let file = open(&db, "big.verdict", &text);
    db.enable_execution_log();
    assert!(file_diagnostics(&db, file).is_empty(), "{:?}", file_diagnostics(&db, file));
    let first = db.take_executed();
    assert_eq!(count(&first, "check_policy"), 200, "{first:?}");
    assert_eq!(count(&first, "analyze_policy"), 200, "{first:?}");

    // Edit one rule of policy 117: its effect becomes unknown.
    let (edited, _) = verdict_lsp::workload::with_rule_effect(&text, 117, 4, "alow").unwrap();
    file.set_text(&mut db).to(edited.clone());
    let diags = file_diagnostics(&db, file).clone();
    let executed = db.take_executed();
    assert_eq!(count(&executed, "check_policy"), 1, "only the edited policy is re-checked: {executed:?}");
    assert_eq!(count(&executed, "analyze_policy"), 1, "only the edited policy is re-analysed: {executed:?}");
    assert_eq!(count(&executed, "check_context"), 0, "the context did not change: {executed:?}");
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, Code::UnknownEffect);
    assert_eq!(&edited[diags[0].span.range()], "alow");
    assert_eq!(diags[0].policy.as_deref(), Some("p117"));
    assert_eq!(diags[0].rule.as_deref(), Some("p117-r4"));

    // Text inserted in the first policy moves every later policy: none is re-checked, and the
    // finding moves with its text.
    let mut moved = edited.clone();
    let at = moved.find("policy \"p0\" {\n").unwrap() + "policy \"p0\" {\n".len();
    moved.insert_str(at, "  // a comment that moves everything below\n");
    file.set_text(&mut db).to(moved.clone());
    let diags = file_diagnostics(&db, file).clone();
    let executed = db.take_executed();
    assert_eq!(count(&executed, "check_policy"), 1, "only p0, whose text changed: {executed:?}");
    assert_eq!(count(&executed, "analyze_policy"), 1, "only p0, whose text changed: {executed:?}");
    assert_eq!(diags.len(), 1);
    assert_eq!(&moved[diags[0].span.range()], "alow");

    // A change to the context (a new `let`) compiles every policy again (the broken one's
    // findings come out equal, so what depends on them is not redone).
    file.set_text(&mut db).to(format!("let unused = true\n{moved}"));
    let _ = file_diagnostics(&db, file);
    let executed = db.take_executed();
    assert_eq!(count(&executed, "compile_policy"), 200, "{executed:?}");
    assert_eq!(count(&executed, "analyze_policy"), 199, "{executed:?}");
}

#[test]
fn yaml_and_json_bundles_and_other_files() {
    let db = Database::default();
    let yaml = open(
        &db,
        "b.yaml",
        "bundle_id: b\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: alow\n        when: {kind: always}\n",
    );
    let d = file_diagnostics(&db, yaml);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, Code::UnknownEffect);
    let json = open(&db, "b.json", "{\"bundle_id\": \"b\", \"policies\": [");
    assert_eq!(file_diagnostics(&db, json)[0].code, Code::Syntax);
    // A request context, a README: not bundles, no diagnostics.
    let ctx = open(&db, "ctx.json", "{\"subject\": {\"role\": \"admin\"}, \"action\": \"update\"");
    assert!(file_diagnostics(&db, ctx).is_empty());
    let readme = open(&db, "README.md", "# policies\nbundle_id");
    assert!(file_diagnostics(&db, readme).is_empty());
}

#[test]
fn cross_policy_findings_come_from_the_whole_bundle() {
    let db = Database::default();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart/bundle.verdict")).unwrap();
    let file = open(&db, "q.verdict", &text);
    let b = verdict_lsp::db::bundle_ir(&db, file).expect("the quickstart compiles");
    assert_eq!(b.id, "edu-gate");
    // The quickstart's allow and deny policies overlap on purpose: a V004 note, with the partner
    // rule as a related location and a witness, exactly as `verdict check` reports it.
    let ours = verdict_lsp::db::analysis_diagnostics(&db, file);
    let theirs: Vec<Diagnostic> = analyze(&b).into_iter().filter(|d| d.code == Code::Conflict).collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, &theirs);
    assert!(ours.iter().all(|d| d.witness.is_some() && !d.labels.is_empty()));
}

#[test]
fn yaml_bundles_are_analysed_whole() {
    let db = Database::default();
    let yaml = "bundle_id: b\npolicies:\n  - id: p\n    rules:\n      - id: broad\n        effect: allow\n        when: \"subject.role == 'admin'\"\n      - id: narrow\n        effect: deny\n        when: \"subject.role == 'admin' and action == 'delete'\"\n";
    let file = open(&db, "b.yaml", yaml);
    let d = file_diagnostics(&db, file);
    assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), [Code::Unreachable], "{d:?}");
    assert_eq!(yaml[d[0].span.range()].lines().next().unwrap().trim(), "id: narrow");
    assert_eq!(d[0].labels.len(), 1);
}
