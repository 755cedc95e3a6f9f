//! docs/DIAGNOSTICS.md cannot drift: every section's first `verdict` example, compiled (and
//! analysed when it compiles), produces the section's code.
#![allow(clippy::panic, clippy::unwrap_used, reason = "test failures")]

use verdict_compiler::source::SourceFile;

#[test]
fn every_documented_example_produces_its_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DIAGNOSTICS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut checked = 0;
    for section in text.split("\n### ").skip(1) {
        let code = section.get(..4).unwrap_or_default();
        let Some(start) = section.find("```verdict\n") else { continue };
        let body = &section[start + "```verdict\n".len()..];
        let example = &body[..body.find("```").unwrap()];
        let file = SourceFile::new(format!("{code}.verdict"), example);
        let compiled = verdict_compiler::compile(&file);
        let mut codes: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code.as_str()).collect();
        let analysed = compiled.bundle.as_ref().map(verdict_compiler::analysis::analyze).unwrap_or_default();
        codes.extend(analysed.iter().map(|d| d.code.as_str()));
        assert!(codes.contains(&code), "the example of {code} gives {codes:?}:\n{example}");
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} examples");
}
