//! The JSON bundle loader (strict: duplicate keys refused): diagnostics with spans inside the
//! text, never a panic; what compiles round-trips through the reference JSON form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let compiled = compile_as(&SourceFile::new("fuzz.json", text), SourceKind::Json);
    for d in &compiled.diagnostics {
        assert!(d.span.end as usize <= text.len() && d.span.start <= d.span.end, "{d:?}");
    }
    if let Some(b) = compiled.bundle {
        let json = verdict_compiler::emit::to_json(&b).to_string();
        let again = compile_as(&SourceFile::new("again.json", json), SourceKind::Json);
        let again = again.bundle.map(|b| verdict_compiler::emit::fingerprint(&b));
        assert_eq!(again, Some(verdict_compiler::emit::fingerprint(&b)), "the JSON form round-trips");
    }
});
