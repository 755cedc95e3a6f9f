//! Times the analysis of rules that each own a distinct numeric range on one path (a
//! development aid: `cargo run --release -p verdict-bench --example unique_ranges -- RULES`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a development aid")]
use std::fmt::Write as _;

fn main() {
    let rules: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mut text = String::from("bundle \"u\" {}\npolicy p {\n  default deny\n");
    for k in 0..rules {
        let _ = writeln!(
            text,
            "  rule r{k} allow {{ when action == \"a{}\" and amount >= {} and amount < {} and id == \"i{k}\" }}",
            k % 64,
            k * 10,
            k * 10 + 10
        );
    }
    text.push_str("}\n");
    let file = verdict_compiler::source::SourceFile::new("u.verdict", text);
    let bundle = verdict_compiler::compile(&file).bundle.expect("compiles");
    let t = std::time::Instant::now();
    let d = verdict_compiler::analysis::domain::Domain::build(
        &[&bundle],
        &verdict_compiler::analysis::Options::default().domain_limits(),
    );
    println!("domain {:?} ({} paths)", t.elapsed(), d.paths.len());
    let t = std::time::Instant::now();
    let a = verdict_compiler::analysis::analyze_with(&bundle, &verdict_compiler::analysis::Options::default());
    println!("{rules} rules: {:?}, {} findings, {:?}", t.elapsed(), a.diagnostics.len(), a.stats.regions);
}
