//! Times one analysis of a generated bundle and prints its statistics (a development aid:
//! `cargo run --release -p verdict-bench --example probe -- RULES [FAMILY]`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a development aid")]

fn main() {
    let rules: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let fam = match std::env::args().nth(2).as_deref() {
        Some("abac") => verdict_tests::families::abac(1, 20, rules / 20),
        Some("rich") => verdict_tests::families::rich(1, "overrides", 8, rules / 8),
        Some("nesting") => verdict_tests::families::nesting(1, rules, 6),
        Some("strings") => verdict_tests::families::strings(1, rules),
        _ => verdict_tests::families::large(1, rules),
    };
    let file = verdict_compiler::source::SourceFile::new("large.verdict", fam.text);
    let t = std::time::Instant::now();
    let compiled = verdict_compiler::compile(&file);
    let bundle = compiled.bundle.expect("compiles");
    let t_compile = t.elapsed();
    let t = std::time::Instant::now();
    let a = verdict_compiler::analysis::analyze_with(&bundle, &verdict_compiler::analysis::Options::default());
    let t_analysis = t.elapsed();
    let mut codes = std::collections::BTreeMap::new();
    for d in &a.diagnostics {
        *codes.entry(d.code.as_str()).or_insert(0) += 1;
    }
    println!("rules {rules}: compile {t_compile:?}, analysis {t_analysis:?}; {codes:?}; {:?}", a.stats);
    println!("expected {}", fam.expect.len());
}
