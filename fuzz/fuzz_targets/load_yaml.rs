//! The YAML loader: any text is a bundle or diagnostics with spans inside it, never a panic; a
//! bundle that compiles also compiles to a program the runtime verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let compiled = compile_as(&SourceFile::new("fuzz.yaml", text), SourceKind::Yaml);
    for d in &compiled.diagnostics {
        assert!(d.span.end as usize <= text.len() && d.span.start <= d.span.end, "{d:?}");
    }
    if let Some(b) = compiled.bundle {
        let program = verdict_compiler::codegen::program(&b);
        assert!(program.verify().is_ok(), "the compiler's program verifies");
    }
});
