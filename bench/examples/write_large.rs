//! Writes the benchmark bundle of `RULES` rules to a file, to time `verdict check` on it (a
//! development aid: `cargo run --release -p verdict-bench --example write_large -- 10000 out.verdict`).
#![allow(clippy::unwrap_used, reason = "a development aid")]

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let out = args.next().unwrap_or_else(|| "large.verdict".to_owned());
    std::fs::write(&out, verdict_tests::families::large(1, rules).text).unwrap();
}
