//! `verdict convert`: a bundle between source forms, by the output's extension.

use crate::render;
use std::path::Path;
use verdict_compiler::emit;

pub fn run(input: &Path, output: &Path) -> u8 {
    let file = match render::read(input) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let compiled = verdict_compiler::compile(&file);
    render::eprint_all(&file, &compiled.diagnostics);
    let Some(bundle) = compiled.bundle else {
        return 1;
    };
    let name = output.to_string_lossy().to_ascii_lowercase();
    let text = if name.ends_with(".verdict") {
        emit::to_dsl(&bundle)
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        emit::yaml(&emit::to_json(&bundle))
    } else if name.ends_with(".json") {
        let mut t = serde_json::to_string_pretty(&emit::to_json(&bundle)).unwrap_or_default();
        t.push('\n');
        t
    } else {
        eprintln!("error: cannot tell the output form of {}: use .verdict, .yaml, .yml or .json", output.display());
        return 2;
    };
    match std::fs::write(output, text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            2
        }
    }
}
