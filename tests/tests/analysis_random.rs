//! Random bundles against the interpreter: hundreds of seeded bundles over every atom kind —
//! numbers at their edges, strings with prefixes, suffixes, substrings and regexes, containers,
//! paths inside values, path-vs-path comparisons, card scopes — under every matching and
//! combining mode. Whatever the analysis reports must hold: every witness is confirmed by the
//! interpreter and every universal claim survives 1,000 random requests (the bundles are many
//! and small; the planted corpora use 10,000). Nothing here is planted; the point is that no
//! construction the generator can think of leads the analysis to a false claim.
#![allow(clippy::panic, reason = "test failures")]

use std::collections::BTreeMap;
use verdict_compiler::analysis::analyze;
use verdict_compiler::diagnostic::Severity;
use verdict_compiler::source::SourceFile;
use verdict_tests::analysis::{Rng, check_universal, verify_witnesses};

const PATHS: [&str; 12] = ["x", "y", "s", "a", "a.b", "l", "l.0", "l.1", "o", "o.k", "action", "subject.role"];
const NUMBERS: [&str; 9] = ["0", "1", "1.0", "1.5", "-1", "2", "0.1", "9007199254740993", "9007199254740992.0"];
const STRINGS: [&str; 9] = ["\"\"", "\"a\"", "\"ab\"", "\"b\"", "\"abc\"", "\"é\"", "\"x-1\"", "\"A\"", "\"read\""];
const OTHERS: [&str; 10] =
    ["true", "false", "null", "[]", "[1]", "[\"a\"]", "[1, \"a\"]", "[[1]]", "{\"k\": 1}", "{\"b\": 1}"];
const REGEXES: [&str; 8] = ["^a", "b$", "[0-9]", "^(a|b)+$", "(?i)^A", "^$", "x{2,3}", "é"];

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items.get(rng.below(items.len())).copied().unwrap_or("x")
}

fn value(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => pick(rng, &NUMBERS).to_owned(),
        1 => pick(rng, &STRINGS).to_owned(),
        _ => pick(rng, &OTHERS).to_owned(),
    }
}

/// Atoms over terms (LANGUAGE.md §5): arithmetic, functions and time (which never fault), state
/// reads and extern calls (which may). The claims must hold in every world the host can be.
fn term_atom(rng: &mut Rng) -> String {
    let p = pick(rng, &PATHS);
    match rng.below(9) {
        0 => format!("{p} * 2 > {}", pick(rng, &NUMBERS)),
        1 => format!("len({p}) >= {}", 1 + rng.below(2)),
        2 => format!("now.hour >= {}", rng.below(24)),
        3 => format!("ok({p})"),
        4 => format!("not ok({p})"),
        5 => format!("risk({p}) > 0.8"),
        6 => format!("calls.day > {}", rng.below(3)),
        7 => format!("spend.last(\"1h\") + {p} > 100"),
        _ => format!("lower({p}) == \"a\""),
    }
}

fn atom(rng: &mut Rng) -> String {
    if rng.chance(12) {
        return term_atom(rng);
    }
    let p = pick(rng, &PATHS);
    match rng.below(16) {
        0 => format!("{p} == {}", value(rng)),
        1 => format!("{p} != {}", value(rng)),
        2 => format!("{p} < {}", if rng.chance(50) { pick(rng, &NUMBERS) } else { pick(rng, &STRINGS) }),
        3 => format!("{p} >= {}", if rng.chance(50) { pick(rng, &NUMBERS) } else { pick(rng, &STRINGS) }),
        4 => format!("{p} in [{}, {}]", value(rng), value(rng)),
        5 => format!("{p} not in [{}]", value(rng)),
        6 => format!("{p} contains {}", value(rng)),
        7 => format!("{p} matches \"{}\"", pick(rng, &REGEXES)),
        8 => format!("{p} starts_with {}", pick(rng, &STRINGS)),
        9 => format!("{p} ends_with {}", pick(rng, &STRINGS)),
        10 => format!("exists({p})"),
        11 => format!("missing({p})"),
        12 => format!("{p} == {}", pick(rng, &PATHS)),
        13 => format!("{p} < {}", pick(rng, &PATHS)),
        14 => format!("{p} in {}", pick(rng, &PATHS)),
        _ => format!("{p} contains {}", pick(rng, &PATHS)),
    }
}

fn formula(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(35) {
        return atom(rng);
    }
    match rng.below(3) {
        0 => format!("not ({})", formula(rng, depth - 1)),
        1 => format!("({} and {})", formula(rng, depth - 1), formula(rng, depth - 1)),
        _ => format!("({} or {})", formula(rng, depth - 1), formula(rng, depth - 1)),
    }
}

const EFFECTS: [&str; 3] = ["deny", "review", "allow"];

fn bundle(rng: &mut Rng) -> String {
    let mut out = String::from("bundle \"random\" {\n  effects [deny, review, allow]\n");
    out.push_str(if rng.chance(50) { "  combine overrides\n" } else { "  combine first\n" });
    if rng.chance(15) {
        out.push_str("  card_scope { vendor_id: \"v\", allowed_actions: [\"read\", \"use\"] }\n");
    }
    out.push_str("}\n");
    out.push_str("extern ok(any) -> bool\nextern risk(any) -> number\n");
    out.push_str("state calls { add 1 }\nstate spend { add 1  key [subject.role] }\n");
    if rng.chance(30) {
        out.push_str(&format!("let d = {}\n", formula(rng, 2)));
    }
    let has_let = out.contains("let d");
    for p in 0..1 + rng.below(3) {
        let default = if rng.chance(40) { "none" } else { pick(rng, &EFFECTS) };
        out.push_str(&format!("policy p{p} {{\n  default {default}\n"));
        if rng.chance(40) {
            out.push_str("  match priority\n");
        }
        for r in 0..1 + rng.below(5) {
            let mut when = formula(rng, 3);
            if has_let && rng.chance(30) {
                when = format!("d and {when}");
            }
            if rng.chance(15) {
                when = "true".to_owned();
            }
            out.push_str(&format!(
                "  rule r{r} {} {{\n    when {when}\n    priority {}\n  }}\n",
                pick(rng, &EFFECTS),
                rng.below(3)
            ));
        }
        out.push_str("}\n");
    }
    out
}

#[test]
fn random_bundles_get_only_true_findings() {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut analysed = 0;
    // More with `VERDICT_RANDOM_BUNDLES=20000 cargo test --release -p verdict-tests --test analysis_random`.
    let n: u64 = std::env::var("VERDICT_RANDOM_BUNDLES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    for seed in 0..n {
        let mut rng = Rng(seed);
        let text = bundle(&mut rng);
        let file = SourceFile::new("random.verdict", text.clone());
        let compiled = verdict_compiler::compile(&file);
        let Some(b) = compiled.bundle.filter(|_| !compiled.diagnostics.iter().any(|d| d.severity == Severity::Error))
        else {
            continue;
        };
        analysed += 1;
        let diags = analyze(&b);
        for d in &diags {
            *counts.entry(d.code.as_str()).or_default() += 1;
        }
        verify_witnesses(&b, &diags).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        check_universal(&b, &diags, 1_000, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
    }
    eprintln!("{analysed} random bundles analysed; findings {counts:?}");
    assert!(analysed * 4 > n as usize * 3, "only {analysed} random bundles compiled");
    for code in ["V001", "V002", "V003", "V004", "V005", "V009", "V010"] {
        assert!(counts.get(code).copied().unwrap_or(0) > 0, "no {code} among random bundles: {counts:?}");
    }
}
