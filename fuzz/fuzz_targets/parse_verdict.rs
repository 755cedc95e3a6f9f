//! The `.verdict` parser and the compiler behind it: any text gives a tree and diagnostics (with
//! spans inside the text), never a panic or a stack overflow; the formatter is idempotent on what
//! it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = verdict_grammar::parse_file(text);
    for e in &parsed.errors {
        assert!(e.span.end as usize <= text.len() && e.span.start <= e.span.end, "{e:?}");
    }
    let compiled = compile_as(&SourceFile::new("fuzz.verdict", text), SourceKind::Verdict);
    for d in &compiled.diagnostics {
        assert!(d.span.end as usize <= text.len() && d.span.start <= d.span.end, "{d:?}");
    }
    if let Ok(once) = verdict_compiler::format::format_verdict(text) {
        let twice = verdict_compiler::format::format_verdict(&once);
        assert_eq!(twice.as_deref().ok(), Some(once.as_str()), "fmt is idempotent");
    }
});
