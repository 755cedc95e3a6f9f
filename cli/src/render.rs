//! Rendering diagnostics: ariadne reports for people (the JSON form for tools is
//! `verdict_compiler::diagnostic::to_json`).

use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use std::io::IsTerminal;
use verdict_compiler::diagnostic::{Diagnostic, Severity};
use verdict_compiler::source::{MAX_SOURCE_BYTES, SourceFile, too_large};

/// Writes one diagnostic as an ariadne report with its source excerpt.
pub fn human(file: &SourceFile, d: &Diagnostic, color: bool, out: &mut Vec<u8>) {
    let kind = match d.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
        Severity::Info => ReportKind::Advice,
    };
    let name = file.name.as_str();
    let len = file.text.len();
    let range = |s: verdict_grammar::ast::Span| {
        let start = (s.start as usize).min(len);
        start..(s.end as usize).clamp(start, len)
    };
    let mut report = Report::build(kind, (name, range(d.span)))
        .with_config(Config::default().with_index_type(IndexType::Byte).with_color(color))
        .with_code(d.code.as_str())
        .with_message(&d.message)
        .with_label(Label::new((name, range(d.span))).with_message(label_text(d)));
    for l in &d.labels {
        report = report.with_label(Label::new((name, range(l.span))).with_message(&l.message));
    }
    if let Some(h) = &d.help {
        report = report.with_help(h);
    }
    if let Some(w) = &d.witness {
        report = report.with_note(format!("witness request: {w}"));
    }
    if report.finish().write((name, Source::from(file.text.as_str())), &mut *out).is_err() {
        out.extend_from_slice(format!("{}: {}\n", d.code.as_str(), d.message).as_bytes());
    }
}

fn label_text(d: &Diagnostic) -> String {
    match (&d.policy, &d.rule) {
        (Some(p), Some(r)) => format!("in rule `{r}` of policy `{p}`"),
        _ => d.code.summary().to_owned(),
    }
}

/// Whether to colour output written to standard error.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints every diagnostic of a file to standard error for people.
pub fn eprint_all(file: &SourceFile, diags: &[Diagnostic]) {
    let color = color_stderr();
    let mut out = Vec::new();
    for d in diags {
        human(file, d, color, &mut out);
    }
    eprint!("{}", String::from_utf8_lossy(&out));
}

/// Reads a source file; an I/O problem, or a file over the size limit
/// ([`verdict_compiler::source::MAX_SOURCE_BYTES`], checked before reading), is reported and
/// mapped to exit code 2.
pub fn read(path: &std::path::Path) -> Result<SourceFile, u8> {
    let bytes = read_limited(path, MAX_SOURCE_BYTES).map_err(|e| report(path, e))?;
    text(path, bytes)
}

/// The source file of bytes read from `path`; bytes that are not UTF-8 are reported and mapped
/// to exit code 2.
pub fn text(path: &std::path::Path, bytes: Vec<u8>) -> Result<SourceFile, u8> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
        Err(e) => {
            eprintln!(
                "error: {}: not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            );
            Err(2)
        }
    }
}

/// Reports why a source file was not read (a file over the limit as V112); the exit code, 2.
pub fn report(path: &std::path::Path, e: ReadError) -> u8 {
    match e {
        ReadError::Io(e) => eprintln!("error: cannot read {}: {e}", path.display()),
        ReadError::TooLarge(len) => {
            let message = too_large(len).map_or_else(String::new, |d| d.message);
            eprintln!("error[V112]: {}: {message}", path.display());
        }
    }
    2
}

/// Why a file was not read.
pub enum ReadError {
    Io(std::io::Error),
    /// Over the limit: the file's size (at least `limit + 1` when it could not be known).
    TooLarge(usize),
}

/// Reads at most `limit` bytes of a file: a regular file is refused by its size before it is
/// read, and anything else (a pipe, a device, a file growing) stops being read past the limit.
pub fn read_limited(path: &std::path::Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    read_rest(file, Vec::new(), limit)
}

/// [`read_limited`] of a file already opened, of which `bytes` were read.
pub fn read_rest(file: std::fs::File, mut bytes: Vec<u8>, limit: usize) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit as u64
    {
        return Err(ReadError::TooLarge(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
    }
    let left = (limit as u64 + 1).saturating_sub(bytes.len() as u64);
    file.take(left).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() > limit {
        return Err(ReadError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Writes a line to standard output. A closed pipe (`verdict eval … | head`) is not a crash:
/// the write error is returned and the caller exits with code 2.
pub fn stdout_line(text: &str) -> Result<(), u8> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|_| 2)
}
