//! No input makes the front end panic. Property tests feed (a) arbitrary bytes and token soups to
//! every entry point that reads text, and (b) mutated copies of valid bundles (the examples and a
//! few conformance bundles, in all three source forms) to the compiler in all three forms; a
//! mutant that still compiles is also emitted and evaluated.
//!
//! Besides "no panic", every diagnostic's span must lie inside the text it was reported on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use verdict_compiler::diagnostic::Diagnostic;
use verdict_compiler::interp::Interpreter;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, emit};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// How many conformance bundles join the mutation corpus.
const SEED_BUNDLES: usize = 6;

const KINDS: [SourceKind; 3] = [SourceKind::Verdict, SourceKind::Yaml, SourceKind::Json];

/// Fragments that steer random input towards the interesting corners of the three syntaxes.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    ".",
    "=",
    "\"",
    "'",
    "r\"",
    "\\",
    "\n",
    "\t",
    " ",
    "  ",
    "- ",
    "#",
    "//",
    "bundle ",
    "policy ",
    "rule ",
    "let ",
    "when ",
    "not ",
    " and ",
    " or ",
    " in ",
    " not in ",
    " contains ",
    " matches ",
    " starts_with ",
    "exists(",
    "missing(",
    "input.",
    "==",
    "!=",
    "<",
    ">=",
    "true",
    "false",
    "null",
    "~",
    "0",
    "-1",
    "1.5",
    "1e999",
    "99999999999999999999999",
    "0x7fffffffffffffff",
    "0o",
    ".inf",
    ".nan",
    "subject.role",
    "resource.tags",
    "a.0.1",
    "x[0]",
    "x[\"k\"]",
    "\"admin\"",
    "\"(?=x)\"",
    "\"[\"",
    "\"\\u{d800}\"",
    "\"\\u12\"",
    "\"é€😀\"",
    "allow",
    "deny",
    "none",
    "bundle_id: b\n",
    "policies:\n",
    "rules:\n",
    "id: ",
    "effect: ",
    "when: ",
    "kind: ",
    "field: ",
    "value: ",
    "matchers: ",
    "matcher: ",
    "all_of",
    "any_of",
    "regex",
    "priority: ",
    "match: priority",
    "default_effect: ",
    "effects: [a, b]",
    "schema: {x: list<string>}",
    "definitions: {d: \"x == 1\"}",
    "effective_from: \"2020-01-01T00:00:00Z\"",
    "card_scope: ",
    "obligations: ",
    "&a ",
    "*a",
    "!!str ",
    "!!map ",
    "!custom ",
    "? ",
    "---\n",
    "...\n",
    "|\n",
    ">-\n",
    "\"bundle_id\": ",
    "\"policies\": ",
    "\u{feff}",
    "\r\n",
    "\u{0}",
];

struct Corpus {
    /// Valid bundle texts (every one compiles as its form).
    texts: Vec<(SourceKind, String)>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut texts = Vec::new();
        let examples = Path::new(ROOT).join("examples");
        let mut dirs: Vec<_> = fs::read_dir(&examples).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        for dir in dirs {
            for name in ["bundle.yaml", "bundle.yml", "bundle.json", "bundle.verdict"] {
                if let Ok(t) = fs::read_to_string(dir.join(name)) {
                    texts.push((SourceKind::detect(name, &t), t));
                }
            }
        }
        let seeds = fs::read_to_string(Path::new(ROOT).join("tests/conformance/seed-compat.jsonl")).unwrap();
        let lines: Vec<&str> = seeds.lines().filter(|l| !l.trim().is_empty()).collect();
        let step = (lines.len() / SEED_BUNDLES).max(1);
        for line in lines.iter().step_by(step).take(SEED_BUNDLES) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let json = serde_json::to_string_pretty(&v["bundle"]).unwrap();
            let file = SourceFile::new("seed.json", json.clone());
            let compiled = verdict_compiler::compile_as(&file, SourceKind::Json);
            if let Some(b) = compiled.bundle {
                texts.push((SourceKind::Verdict, emit::to_dsl(&b)));
                texts.push((SourceKind::Yaml, emit::yaml(&emit::to_json(&b))));
            }
            texts.push((SourceKind::Json, json));
        }
        for (kind, t) in &texts {
            let file = SourceFile::new("corpus", t.clone());
            let c = verdict_compiler::compile_as(&file, *kind);
            assert!(c.bundle.is_some(), "corpus text does not compile: {:?}\n{t}", c.diagnostics);
        }
        Corpus { texts }
    })
}

fn check_spans(what: &str, text: &str, diags: &[Diagnostic]) {
    for d in diags {
        for span in std::iter::once(d.span).chain(d.labels.iter().map(|l| l.span)) {
            assert!(
                span.start <= span.end && span.end as usize <= text.len(),
                "{what}: span {span:?} outside the text ({} bytes): {d:?}\ntext: {text:?}",
                text.len()
            );
        }
    }
}

/// Every entry point that reads text.
fn read_everything(text: &str) {
    let parsed = verdict_grammar::parse_file(text);
    for e in &parsed.errors {
        assert!(e.span.start <= e.span.end && e.span.end as usize <= text.len(), "parse_file span {e:?}");
    }
    let parsed = verdict_grammar::parse_expr(text);
    for e in &parsed.errors {
        assert!(e.span.start <= e.span.end && e.span.end as usize <= text.len(), "parse_expr span {e:?}");
    }
    for (what, r) in
        [("load_yaml", verdict_compiler::yaml::load_yaml(text)), ("load_json", verdict_compiler::yaml::load_json(text))]
    {
        if let Err(d) = r {
            check_spans(what, text, &[d]);
        }
    }
    let _ = verdict_compiler::format::format_verdict(text);
    let _ = Request::from_json(text.as_bytes());
    compile_all_forms(text);
}

/// Compiles `text` as each source form; whatever compiles is emitted and evaluated.
fn compile_all_forms(text: &str) {
    let file = SourceFile::new("input", text);
    for kind in KINDS {
        let compiled = verdict_compiler::compile_as(&file, kind);
        check_spans(&format!("{kind:?}"), text, &compiled.diagnostics);
        if let Some(bundle) = compiled.bundle {
            let _ = emit::to_dsl(&bundle);
            let _ = emit::fingerprint(&bundle);
            let _ = emit::yaml(&emit::to_json(&bundle));
            if let Ok(interp) = Interpreter::new(&bundle) {
                let result = interp.evaluate(&Request::default(), &Env::at(jiff::Timestamp::now()), Mode::TRACE);
                let _ = result.to_json();
                let req = Request::from_json(
                    br#"{"subject": {"id": "u-1", "role": "admin"}, "action": "read", "resource": {"tags": ["locked"], "id": "r"}, "data": {"risk_score": 0.9}}"#,
                )
                .unwrap();
                let _ = interp.evaluate(&req, &Env::at(jiff::Timestamp::now()), Mode::PLAIN);
            }
        }
    }
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..48).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(Index, Index),
    Duplicate(Index, Index),
    InsertBytes(Index, Vec<u8>),
    InsertToken(Index, &'static str),
    ReplaceByte(Index, u8),
    SwapWords(Index, Index),
    ReplaceWord(Index, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Mutation::InsertBytes(a, b)),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Mutation::InsertToken(a, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(a, b)| Mutation::ReplaceByte(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapWords(a, b)),
        (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Mutation::ReplaceWord(a, t)),
    ]
}

/// A short range starting at `at`: mutations mostly touch a token or two, sometimes a line.
fn range(bytes: &[u8], at: &Index, len: &Index) -> std::ops::Range<usize> {
    let start = at.index(bytes.len() + 1);
    let max = (bytes.len() - start).min(64);
    start..start + len.index(max + 1)
}

/// Byte ranges of the whitespace-separated words of `bytes`.
fn words(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..bytes.len());
    }
    out
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Delete(a, l) => {
            let r = range(&bytes, a, l);
            bytes.drain(r);
        }
        Mutation::Duplicate(a, l) => {
            let r = range(&bytes, a, l);
            let copy: Vec<u8> = bytes[r.clone()].to_vec();
            bytes.splice(r.end..r.end, copy);
        }
        Mutation::InsertBytes(a, ins) => {
            let at = a.index(bytes.len() + 1);
            bytes.splice(at..at, ins.iter().copied());
        }
        Mutation::InsertToken(a, t) => {
            let at = a.index(bytes.len() + 1);
            bytes.splice(at..at, t.bytes());
        }
        Mutation::ReplaceByte(a, b) => {
            if !bytes.is_empty() {
                let at = a.index(bytes.len());
                bytes[at] = *b;
            }
        }
        Mutation::SwapWords(a, b) => {
            let ws = words(&bytes);
            if ws.len() >= 2 {
                let (mut x, mut y) = (ws[a.index(ws.len())].clone(), ws[b.index(ws.len())].clone());
                if x.start > y.start {
                    std::mem::swap(&mut x, &mut y);
                }
                if x.end <= y.start {
                    let mut out = bytes[..x.start].to_vec();
                    out.extend_from_slice(&bytes[y.clone()]);
                    out.extend_from_slice(&bytes[x.end..y.start]);
                    out.extend_from_slice(&bytes[x.clone()]);
                    out.extend_from_slice(&bytes[y.end..]);
                    bytes = out;
                }
            }
        }
        Mutation::ReplaceWord(a, t) => {
            let ws = words(&bytes);
            if !ws.is_empty() {
                let w = ws[a.index(ws.len())].clone();
                bytes.splice(w, t.bytes());
            }
        }
    }
    bytes
}

/// Inputs nested 100,000 deep, in every form, on the test thread's small stack.
#[test]
fn deep_inputs() {
    const N: usize = 100_000;
    let rule = |cond: &str| format!("bundle demo {{}}\npolicy p {{\n  rule r allow {{\n    when {cond}\n  }}\n}}\n");
    let yaml_rule = |when: &str| {
        format!("bundle_id: b\npolicies:\n- id: p\n  rules:\n  - id: r\n    effect: allow\n    when: {when}\n")
    };
    let nots = format!("{}true", "not ".repeat(N));
    let texts = [
        (SourceKind::Verdict, rule(&nots)),
        (SourceKind::Verdict, rule(&format!("{}true{}", "(".repeat(N), ")".repeat(N)))),
        (SourceKind::Verdict, rule(&format!("x in {}1{}", "[".repeat(N), "]".repeat(N)))),
        (SourceKind::Verdict, rule(&format!("x == {}1{}", "{a: ".repeat(N), "}".repeat(N)))),
        (SourceKind::Verdict, format!("let a = {nots}\n{}", rule("a"))),
        (SourceKind::Verdict, format!("bundle demo {{ version {}1{} }}\n", "[".repeat(N), "]".repeat(N))),
        (SourceKind::Yaml, yaml_rule(&format!("\"{nots}\""))),
        (SourceKind::Yaml, yaml_rule(&format!("{}{}", "[".repeat(N), "]".repeat(N)))),
        (SourceKind::Yaml, yaml_rule(&format!("\n      {}x", "- ".repeat(N)))),
        (
            SourceKind::Json,
            format!(
                r#"{{"bundle_id": "b", "policies": [{{"id": "p", "rules": [{{"id": "r", "effect": "allow", "when": {}{{"kind": "always"}}{}}}]}}]}}"#,
                r#"{"kind": "not", "matcher": "#.repeat(N),
                "}".repeat(N)
            ),
        ),
    ];
    for (kind, text) in &texts {
        read_everything(text);
        let c = verdict_compiler::compile_as(&SourceFile::new("deep", text.clone()), *kind);
        let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
        assert!(codes.contains(&"V107"), "{kind:?} input nested {N} deep: {codes:?}\n{}…", &text[..200]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_everything(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soups(text in token_soup()) {
        read_everything(&text);
    }

    #[test]
    fn mutated_bundles(pick in any::<Index>(), mutations in prop::collection::vec(mutation(), 1..5)) {
        let texts = &corpus().texts;
        let mut bytes = texts[pick.index(texts.len())].1.as_bytes().to_vec();
        for m in &mutations {
            bytes = apply(bytes, m);
        }
        compile_all_forms(&String::from_utf8_lossy(&bytes));
    }
}
