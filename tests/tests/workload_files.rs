//! The W52 files under `bench/w52/` (what `verdict bench` is run on for BENCHMARKS.md) are the
//! workload the criterion benchmarks measure: the same source and the same requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use verdict_tests::workloads;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/w52");

#[test]
fn the_w52_files_are_the_benchmark_workload() {
    let source = std::fs::read_to_string(format!("{DIR}/bundle.verdict")).unwrap();
    assert_eq!(source, workloads::w52_source());
    let requests = std::fs::read_to_string(format!("{DIR}/requests.jsonl")).unwrap();
    let lines: Vec<&str> = requests.lines().collect();
    let expected: Vec<&str> = workloads::w52_requests().iter().map(|(_, c)| *c).collect();
    assert_eq!(lines, expected);
}
