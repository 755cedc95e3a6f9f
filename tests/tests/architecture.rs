//! The dependency rules of ARCHITECTURE.md, checked on every crate's `Cargo.toml` (after
//! rust-analyzer's `tidy`): `runtime` depends on neither `grammar` nor `compiler`; `grammar`
//! depends on no other Verdict crate but the vocabulary, which depends on nothing; only `cli`
//! parses flags (clap); only `lsp` speaks LSP and hosts the salsa database; only `cli` depends on
//! the service crate `server`.

use std::path::Path;

/// The names in a manifest's `[dependencies]` table.
fn dependencies(krate: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.to_owned());
            }
        }
    }
    assert!(!text.is_empty(), "{} is readable", path.display());
    out
}

#[test]
fn runtime_links_neither_grammar_nor_compiler() {
    let deps = dependencies("runtime");
    assert!(!deps.iter().any(|d| d == "verdict-grammar" || d == "verdict-compiler"), "{deps:?}");
}

#[test]
fn grammar_depends_on_no_verdict_crate_but_the_vocabulary() {
    let deps = dependencies("grammar");
    assert!(!deps.iter().any(|d| d.starts_with("verdict-") && d != "verdict-vocab"), "{deps:?}");
    assert!(dependencies("vocab").is_empty(), "the vocabulary depends on nothing");
    for krate in ["grammar", "runtime"] {
        assert!(dependencies(krate).iter().any(|d| d == "verdict-vocab"), "{krate} derives from the vocabulary");
    }
}

#[test]
fn only_cli_parses_flags_and_only_lsp_speaks_lsp() {
    for krate in ["grammar", "compiler", "runtime", "lsp", "server"] {
        assert!(!dependencies(krate).iter().any(|d| d == "clap"), "{krate} must not depend on clap");
    }
    for krate in ["grammar", "compiler", "runtime", "cli"] {
        let deps = dependencies(krate);
        assert!(
            !deps.iter().any(|d| d.starts_with("lsp-") || d == "tower-lsp" || d == "salsa"),
            "{krate} must not speak LSP nor host the salsa database: {deps:?}"
        );
    }
    let lsp = dependencies("lsp");
    assert!(lsp.iter().any(|d| d == "salsa") && lsp.iter().any(|d| d == "lsp-server"), "{lsp:?}");
}

#[test]
fn the_example_service_links_only_the_runtime() {
    let deps = dependencies("examples/service");
    assert!(deps.iter().any(|d| d == "verdict-runtime"), "{deps:?}");
    assert!(!deps.iter().any(|d| d == "verdict-compiler" || d == "verdict-grammar"), "{deps:?}");
}

#[test]
fn only_cli_links_the_service() {
    // The Python package reaches Redis through `store-redis`, a thin layer: neither links HTTP.
    for krate in ["grammar", "compiler", "runtime", "lsp", "python", "store-redis"] {
        let deps = dependencies(krate);
        assert!(!deps.iter().any(|d| d == "verdict-server"), "{krate} must not depend on the server: {deps:?}");
        assert!(
            !deps.iter().any(|d| d == "axum" || d == "tokio"),
            "{krate} must not depend on the HTTP stack: {deps:?}"
        );
    }
    let server = dependencies("server");
    assert!(server.iter().any(|d| d == "verdict-runtime") && server.iter().any(|d| d == "verdict-compiler"));
}
