//! `verdict check`: compile (parse, lower, type-check), then — when the bundle compiled without
//! errors — the rule-graph analysis (`verdict_compiler::check_as`), whose findings are
//! rendered like any other diagnostic (labels as related locations, the witness as a note).

use crate::Format;
use crate::render;
use verdict_compiler::diagnostic::Severity;

pub fn run(paths: &[std::path::PathBuf], format: Format, deny_warnings: bool) -> u8 {
    let mut all_json = Vec::new();
    let mut worst = 0u8;
    let mut human = Vec::new();
    let color = render::color_stderr();
    for path in paths {
        let file = match render::read(path) {
            Ok(f) => f,
            Err(code) => {
                worst = worst.max(code);
                continue;
            }
        };
        let kind = verdict_compiler::SourceKind::detect(&file.name, &file.text);
        let diagnostics = verdict_compiler::check_as(&file, kind);
        for d in &diagnostics {
            let counts = d.severity == Severity::Error || (deny_warnings && d.severity == Severity::Warning);
            if counts {
                worst = worst.max(1);
            }
            match format {
                Format::Json => all_json.push(verdict_compiler::diagnostic::to_json(&file, d)),
                Format::Human => render::human(&file, d, color, &mut human),
            }
        }
    }
    match format {
        Format::Json => {
            if let Err(code) = render::stdout_line(&serde_json::Value::Array(all_json).to_string()) {
                return code;
            }
        }
        Format::Human => eprint!("{}", String::from_utf8_lossy(&human)),
    }
    worst
}
