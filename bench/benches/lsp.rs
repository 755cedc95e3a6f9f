//! The language server after an edit: the time from setting a document's new text to having its
//! diagnostics as LSP `publishDiagnostics` parameters, on a 2,000-rule file (200 policies × 10
//! rules). Target: ≤ 100 ms for an edit inside one rule (TOOLCHAIN.md: re-analysis proportional
//! to the edit).
//!
//! `cargo bench -p verdict-bench --bench lsp`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use salsa::Setter;
use std::hint::black_box;
use verdict_lsp::db::{Database, Lang, SourceInput};
use verdict_lsp::server::publish_params;
use verdict_lsp::workload::{many_rules, with_rule_effect};

fn benches(c: &mut Criterion) {
    let uri: lsp_types::Uri = "file:///bench/many.verdict".parse().unwrap_or_else(|e| unreachable!("{e}"));
    let text = many_rules(200, 10);
    // Two versions of one rule, alternated so that every iteration is a real change.
    let versions: Vec<String> = ["allow", "review"]
        .iter()
        .map(|e| with_rule_effect(&text, 117, 4, e).map(|(t, _)| t).unwrap_or_else(|| unreachable!()))
        .collect();
    let mut group = c.benchmark_group("lsp-2000-rules");

    let mut db = Database::default();
    let file = SourceInput::new(&db, "many.verdict".into(), text.clone(), Lang::Verdict);
    let _ = publish_params(&db, file, &uri, None);
    let mut i = 0usize;
    group.bench_function("edit-one-rule", |b| {
        b.iter(|| {
            i += 1;
            let next = versions.get(i % 2).cloned().unwrap_or_default();
            file.set_text(&mut db).to(next);
            black_box(publish_params(&db, file, &uri, None).diagnostics.len())
        })
    });

    // The worst edit: the context (a `let`) changes, so every policy is checked again.
    let with_let = format!("let unused = true\n{text}");
    let mut j = 0usize;
    group.bench_function("edit-context", |b| {
        b.iter(|| {
            j += 1;
            let next = if j.is_multiple_of(2) { text.clone() } else { with_let.clone() };
            file.set_text(&mut db).to(next);
            black_box(publish_params(&db, file, &uri, None).diagnostics.len())
        })
    });

    group.bench_function("open", |b| {
        b.iter_batched(
            Database::default,
            |db| {
                let file = SourceInput::new(&db, "many.verdict".into(), text.clone(), Lang::Verdict);
                black_box(publish_params(&db, file, &uri, None).diagnostics.len())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = lsp;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(lsp);
